/*
 * minicrm-receipts: the delivery-receipts worker.
 *
 * One single-threaded loop per process: claim up to receipts.batch_size receipts (blocking a
 * moment when idle), apply them (receipts.c), and between batches do the queue housekeeping
 * (heartbeat, due retries, reaping dead consumers), the token recovery and the PENDING sweeper.
 * Run as many processes, on as many hosts, as needed: they share the receipts queue.
 *
 * SIGTERM/SIGINT: the current batch is finished (or, if Redis is gone, handed back when it
 * returns), claims are released and the process exits 0.
 */
#include "dbpool.h"
#include "log.h"
#include "progargs.h"
#include "queue.h"
#include "rconn.h"
#include "receipts.h"
#include "signals.h"
#include "timeutil.h"

#include <stdio.h>

static const progargs_flag flags[] = {
    {"--batch", "receipts.batch_size", "receipts claimed and applied at once"},
    {"--redis", "redis.url", "Redis URL"},
    {"--mongo", "mongo.uri", "MongoDB URI"},
};

int main(int argc, char **argv)
{
    minicrm_config cfg;
    progargs pa;
    int st = prog_start("minicrm-receipts", "[--batch N]", argc, argv, flags,
                        sizeof flags / sizeof flags[0], false, &cfg, &pa);
    if (st != 0)
        return st == 1 ? 0 : st;
    int rc = 1;
    char err[256], cid[QUEUE_MAX_CONSUMER];
    rconn *r = NULL;
    dbpool *db = NULL;
    queue *q = NULL, *sends = NULL;
    queue_batch b = {0};
    if (signals_install() != 0) {
        fprintf(stderr, "minicrm-receipts: cannot install signal handlers\n");
        goto out;
    }
    r = rconn_new(cfg.redis.url, cfg.redis.timeout_ms, err, sizeof err);
    db = r ? dbpool_new(cfg.mongo.uri, 2, cfg.mongo.timeout_ms, "minicrm-receipts", err, sizeof err)
           : NULL;
    if (!r || !db) {
        fprintf(stderr, "minicrm-receipts: %s\n", err);
        goto out;
    }
    queue_opts qo;
    queue_opts_from_config(&qo, &cfg);
    q = queue_open(r, cfg.redis.prefix, QUEUE_RECEIPTS,
                   queue_consumer_id("receipts", cid, sizeof cid), &qo, err, sizeof err);
    sends = q ? queue_open(r, cfg.redis.prefix, QUEUE_SENDS, NULL, &qo, err, sizeof err) : NULL;
    if (!q || !sends) {
        fprintf(stderr, "minicrm-receipts: %s\n", err);
        goto out;
    }
    receipts_ctx x = {.cfg = &cfg, .rc = r, .db = db, .q = q, .sends = sends};
    while (queue_register(q) != 0 && !signals_stop_requested()) {
        log_warn("receipts.redis_wait", "detail=\"%s\"", queue_error(q));
        signals_sleep_ms(500);
    }
    log_info("receipts.started", "consumer=%s batch=%d", cid, cfg.receipts.batch_size);
    int64_t next_recover = 0, next_sweep = time_mono_ms() + 1000, next_report = 0;
    int pause = 100;
    while (!signals_stop_requested()) {
        if (queue_maintain(q) != 0) {
            log_warn("receipts.redis_error", "detail=\"%s\"", queue_error(q));
            signals_sleep_ms(pause);
            pause = pause * 2 > 5000 ? 5000 : pause * 2;
            continue;
        }
        int n = queue_claim(q, (size_t)cfg.receipts.batch_size, 500, &b);
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
            queue_batch_release(&b);
        }
        int64_t now = time_mono_ms();
        if (now >= next_recover) {
            next_recover = now + 5000;
            receipts_recover(&x, (int64_t)cfg.receipts.recover_after_s * 1000);
        }
        if (now >= next_sweep) {
            next_sweep = now + (int64_t)cfg.receipts.sweep_interval_s * 1000;
            receipts_sweep(&x);
        }
        if (now >= next_report) {
            next_report = now + 10000;
            log_info("receipts.progress", "applied=%lld noops=%lld dead=%lld", (long long)x.applied,
                     (long long)x.noops, (long long)x.dead);
        }
    }
    queue_batch_release(&b);
    int back = queue_release_claimed(q);
    log_info("receipts.stopped", "applied=%lld noops=%lld dead=%lld handed_back=%d",
             (long long)x.applied, (long long)x.noops, (long long)x.dead, back);
    rc = 0;
out:
    queue_close(q);
    queue_close(sends);
    dbpool_free(db);
    rconn_free(r);
    cfg_release(&cfg);
    progargs_release(&pa);
    return rc;
}
