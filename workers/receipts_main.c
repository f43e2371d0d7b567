/*
 * minicrm-receipts: the delivery-receipts worker.
 *
 * receipts.consumers threads (default 3) each run one loop with their own Redis connection and
 * queue consumer id ("receipts-N:host:pid"): claim about receipts.batch_size receipts (a job
 * holds one receipt or a whole POST of them; the claim is sized by the running average; blocking
 * a moment when idle), apply them (receipts.c), and between batches do the queue housekeeping
 * (heartbeat, due retries, reaping dead consumers). Thread 0 also runs the token recovery and
 * the PENDING sweeper. MongoDB clients come from one thread-safe pool (dbpool). Every step of
 * a batch is idempotent and counted under its own token, so concurrent consumers (threads,
 * processes or hosts) never count a log twice. Several consumers keep batches in flight while
 * one waits for MongoDB (on devdb, behind the fan-out's inserts for the store lock):
 * bench_campaign 1M, alternating runs: 2 consumers 24.1 / 25.1 s with p50 send->applied
 * 5.9 / 5.2 s (receipts fall behind the fan-out), 3 consumers 22.2 / 22.5 s with p50 0.8 / 1.0 s;
 * 4 let the receipts delay the fan-out (26.8 s), hence 3. Run as many processes, on as many
 * hosts, as needed: they share the receipts queue.
 *
 * SIGTERM/SIGINT: each thread finishes its current batch (or, if Redis is gone, hands it back
 * when it returns), releases its claims and ends; then the process exits 0.
 */
#include "dbpool.h"
#include "log.h"
#include "progargs.h"
#include "queue.h"
#include "rconn.h"
#include "receipts.h"
#include "signals.h"
#include "timeutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static const progargs_flag flags[] = {
    {"--batch", "receipts.batch_size", "receipts claimed and applied at once"},
    {"--consumers", "receipts.consumers", "consumer threads in this process"},
    {"--redis", "redis.url", "Redis URL"},
    {"--mongo", "mongo.uri", "MongoDB URI"},
};

/* One consumer thread. `rc` is its exit status: 0 after a clean stop, 1 if it could not start. */
typedef struct consumer {
    pthread_t th;
    int slot;
    const minicrm_config *cfg; /* shared, read-only */
    dbpool *db;                /* shared, thread-safe */
    int rc;
} consumer;

static void *consumer_main(void *arg)
{
    consumer *me = arg;
    const minicrm_config *cfg = me->cfg;
    char err[256], cid[QUEUE_MAX_CONSUMER], role[32];
    rconn *r = NULL;
    queue *q = NULL, *sends = NULL;
    queue_batch b = {0};
    me->rc = 1;
    r = rconn_new(cfg->redis.url, cfg->redis.timeout_ms, err, sizeof err);
    if (!r) {
        log_error("receipts.start_failed", "detail=\"%s\"", err);
        fprintf(stderr, "minicrm-receipts: %s\n", err);
        goto out;
    }
    queue_opts qo;
    queue_opts_from_config(&qo, cfg);
    snprintf(role, sizeof role, "receipts-%d", me->slot);
    q = queue_open(r, cfg->redis.prefix, QUEUE_RECEIPTS, queue_consumer_id(role, cid, sizeof cid),
                   &qo, err, sizeof err);
    sends = q ? queue_open(r, cfg->redis.prefix, QUEUE_SENDS, NULL, &qo, err, sizeof err) : NULL;
    if (!q || !sends) {
        log_error("receipts.start_failed", "detail=\"%s\"", err);
        fprintf(stderr, "minicrm-receipts: %s\n", err);
        goto out;
    }
    receipts_ctx x = {.cfg = cfg, .rc = r, .db = me->db, .q = q, .sends = sends};
    while (queue_register(q) != 0 && !signals_stop_requested()) {
        log_warn("receipts.redis_wait", "detail=\"%s\"", queue_error(q));
        signals_sleep_ms(500);
    }
    log_info("receipts.started", "consumer=%s batch=%d", cid, cfg->receipts.batch_size);
    int64_t next_recover = 0, next_sweep = time_mono_ms() + 1000, next_report = 0;
    int pause = 100;
    double per_job = 1; /* running average of receipts per job */
    while (!signals_stop_requested()) {
        if (queue_maintain(q) != 0) {
            log_warn("receipts.redis_error", "detail=\"%s\"", queue_error(q));
            signals_sleep_ms(pause);
            pause = pause * 2 > 5000 ? 5000 : pause * 2;
            continue;
        }
        /* About batch_size receipts: a job from the API carries a whole POST of them. */
        size_t want = (size_t)((double)cfg->receipts.batch_size / (per_job > 1 ? per_job : 1));
        int n = queue_claim(q, want ? want : 1, 500, &b);
        if (n < 0) {
            log_warn("receipts.redis_error", "detail=\"%s\"", queue_error(q));
            signals_sleep_ms(pause);
            pause = pause * 2 > 5000 ? 5000 : pause * 2;
            continue;
        }
        pause = 100;
        if (n > 0) {
            /* Redis trouble mid-batch: the jobs are still ours; apply the same batch again
             * (every step is idempotent) until it settles. */
            while (receipts_apply_batch(&x, &b) != 0) {
                log_warn("receipts.batch_retry", "jobs=%zu detail=\"%s\"", b.n, queue_error(q));
                if (signals_sleep_ms(pause) && pause >= 5000)
                    break;
                pause = pause * 2 > 5000 ? 5000 : pause * 2;
            }
            pause = 100;
            per_job = 0.7 * per_job + 0.3 * ((double)x.last_receipts / (double)b.n);
            queue_batch_release(&b);
        }
        int64_t now = time_mono_ms();
        if (me->slot == 0 && now >= next_recover) {
            next_recover = now + 5000;
            receipts_recover(&x, (int64_t)cfg->receipts.recover_after_s * 1000);
        }
        if (me->slot == 0 && now >= next_sweep) {
            next_sweep = now + (int64_t)cfg->receipts.sweep_interval_s * 1000;
            receipts_sweep(&x);
        }
        if (now >= next_report) {
            next_report = now + 10000;
            log_info("receipts.progress", "consumer=%s applied=%lld noops=%lld dead=%lld", cid,
                     (long long)x.applied, (long long)x.noops, (long long)x.dead);
        }
    }
    queue_batch_release(&b);
    int back = queue_release_claimed(q);
    log_info("receipts.stopped", "consumer=%s applied=%lld noops=%lld dead=%lld handed_back=%d",
             cid, (long long)x.applied, (long long)x.noops, (long long)x.dead, back);
    me->rc = 0;
out:
    if (me->rc != 0) /* a consumer that cannot start takes the process down, as before threads */
        signals_request_stop();
    queue_batch_release(&b);
    queue_close(q);
    queue_close(sends);
    rconn_free(r);
    return NULL;
}

int main(int argc, char **argv)
{
    minicrm_config cfg;
    progargs pa;
    int st = prog_start("minicrm-receipts", "[--batch N] [--consumers N]", argc, argv, flags,
                        sizeof flags / sizeof flags[0], false, &cfg, &pa);
    if (st != 0)
        return st == 1 ? 0 : st;
    int rc = 1, n = cfg.receipts.consumers, started = 0;
    char err[256];
    dbpool *db = NULL;
    consumer *cs = calloc((size_t)n, sizeof *cs);
    if (!cs) {
        fprintf(stderr, "minicrm-receipts: out of memory\n");
        goto out;
    }
    if (signals_install() != 0) {
        fprintf(stderr, "minicrm-receipts: cannot install signal handlers\n");
        goto out;
    }
    /* One client per consumer plus one spare. */
    db =
        dbpool_new(cfg.mongo.uri, n + 1, cfg.mongo.timeout_ms, "minicrm-receipts", err, sizeof err);
    if (!db || dbpool_set_durable_wc(db, cfg.mongo.write_concern, err, sizeof err) != 0) {
        fprintf(stderr, "minicrm-receipts: %s\n", err);
        goto out;
    }
    for (; started < n; started++) {
        cs[started] = (consumer){.slot = started, .cfg = &cfg, .db = db, .rc = 1};
        if (pthread_create(&cs[started].th, NULL, consumer_main, &cs[started]) != 0) {
            fprintf(stderr, "minicrm-receipts: cannot start consumer thread %d\n", started);
            signals_request_stop();
            break;
        }
    }
    rc = started == n ? 0 : 1;
    for (int i = 0; i < started; i++) {
        pthread_join(cs[i].th, NULL);
        if (cs[i].rc != 0)
            rc = 1;
    }
out:
    free(cs);
    dbpool_free(db);
    cfg_release(&cfg);
    progargs_release(&pa);
    return rc;
}
