/*
 * minicrm-receipts: the delivery-receipts worker.
 *
 * receipts.consumers threads (default 3) each run one consumer loop (lib/consumer: one consumer,
 * callbacks and state per thread) with their own Redis connection and
 * queue consumer id ("receipts-N:host:pid"): claim about receipts.batch_size receipts (a job
 * holds one receipt or a whole POST of them; the claim is sized by the running average; blocking
 * a moment when idle), apply them (receipts.c), and between batches do the queue housekeeping
 * (heartbeat, due retries, reaping dead consumers). Each consumer drains the priority receipts
 * queue (one-off messages, POST /api/messages) before the receipts queue (lib/consumer's
 * priority queue), and the receipt events queue (OPENED, CLICKED, COMPLAINED: the API puts a
 * POST of nothing but events there) after it (lib/consumer's low lane: when the receipts queue
 * has no more ready work, and at least once a second), all under the same consumer id. So a
 * delivery receipt never waits behind events (with both in the receipts queue, a campaign's
 * delivery receipts queued behind the events of earlier messages: bench/README.md, "Receipt
 * events and delivery latency"). Thread 0 also runs the token recovery and
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
#include "consumer.h"
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
typedef struct consumer_thread {
    pthread_t th;
    int slot;
    const minicrm_config *cfg; /* shared, read-only */
    dbpool *db;                /* shared, thread-safe */
    int rc;
} consumer_thread;

/* What one thread's consumer callbacks work on (touched by that thread only). */
typedef struct rloop {
    receipts_ctx x;
    const minicrm_config *cfg;
    int slot;
    const char *cid;
    double per_job; /* running average of receipts per job */
    int64_t next_recover, next_sweep;
    queue *pq; /* the priority receipts queue (same consumer id) */
    queue *eq; /* the receipt events queue, drained after the receipts queue (same id) */
} rloop;

/* About batch_size receipts: a job from the API carries a whole POST of them. */
static size_t rl_want(void *arg, int *block_ms)
{
    (void)block_ms;
    rloop *l = arg;
    size_t want = (size_t)((double)l->cfg->receipts.batch_size / (l->per_job > 1 ? l->per_job : 1));
    return want ? want : 1;
}

/* Redis trouble mid-batch: the jobs are still ours; the consumer applies the same batch again
 * (every step is idempotent) until it settles. */
static consumer_result rl_handle(void *arg, queue_batch *b)
{
    rloop *l = arg;
    if (receipts_apply_batch(&l->x, b) != 0)
        return CONSUMER_AGAIN;
    l->per_job = 0.7 * l->per_job + 0.3 * ((double)l->x.last_receipts / (double)b->n);
    return CONSUMER_OK;
}

/* A batch from the priority receipts queue (one-off messages): the same apply, settled on
 * that queue. */
static consumer_result rl_handle_priority(void *arg, queue_batch *b)
{
    rloop *l = arg;
    queue *bulk = l->x.q;
    l->x.q = l->pq;
    int rc = receipts_apply_batch(&l->x, b);
    l->x.q = bulk;
    return rc != 0 ? CONSUMER_AGAIN : CONSUMER_OK;
}

/* A batch from the receipt events queue (the low lane): the same apply, settled on that
 * queue. The counter token's owner is the same consumer id, whose heartbeat on the receipts
 * queue the token recovery checks. */
static consumer_result rl_handle_events(void *arg, queue_batch *b)
{
    rloop *l = arg;
    queue *bulk = l->x.q;
    l->x.q = l->eq;
    int rc = receipts_apply_batch(&l->x, b);
    l->x.q = bulk;
    return rc != 0 ? CONSUMER_AGAIN : CONSUMER_OK;
}

/* Thread 0 also runs the token recovery and the PENDING sweeper. */
static void rl_tick(void *arg, bool claimed)
{
    (void)claimed;
    rloop *l = arg;
    if (l->slot != 0)
        return;
    int64_t now = time_mono_ms();
    if (now >= l->next_recover) {
        l->next_recover = now + 1000; /* cheap: one ZRANGE, one HMGET, one EXISTS per owner */
        receipts_recover(&l->x, (int64_t)l->cfg->receipts.recover_after_s * 1000);
    }
    if (now >= l->next_sweep) {
        l->next_sweep = now + (int64_t)l->cfg->receipts.sweep_interval_s * 1000;
        receipts_sweep(&l->x);
    }
}

static void rl_progress(void *arg, char *buf, size_t n)
{
    rloop *l = arg;
    snprintf(buf, n, "consumer=%s applied=%lld noops=%lld dead=%lld", l->cid,
             (long long)l->x.applied, (long long)l->x.noops, (long long)l->x.dead);
}

static const consumer_ops receipts_ops = {.want = rl_want,
                                          .handle = rl_handle,
                                          .handle_priority = rl_handle_priority,
                                          .handle_low = rl_handle_events,
                                          .tick = rl_tick,
                                          .progress = rl_progress};

static void *consumer_main(void *arg)
{
    consumer_thread *me = arg;
    const minicrm_config *cfg = me->cfg;
    char err[256], cid[QUEUE_MAX_CONSUMER], role[32];
    rconn *r = NULL;
    queue *q = NULL, *pq = NULL, *eq = NULL, *sends = NULL, *events = NULL;
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
    pq = q ? queue_open(r, cfg->redis.prefix, QUEUE_PRIORITY_RECEIPTS, cid, &qo, err, sizeof err)
           : NULL;
    eq = pq ? queue_open(r, cfg->redis.prefix, QUEUE_RECEIPT_EVENTS, cid, &qo, err, sizeof err)
            : NULL;
    sends = eq ? queue_open(r, cfg->redis.prefix, QUEUE_SENDS, NULL, &qo, err, sizeof err) : NULL;
    events =
        sends ? queue_open(r, cfg->redis.prefix, QUEUE_EVENTS, NULL, &qo, err, sizeof err) : NULL;
    if (!q || !pq || !eq || !sends || !events) {
        log_error("receipts.start_failed", "detail=\"%s\"", err);
        fprintf(stderr, "minicrm-receipts: %s\n", err);
        goto out;
    }
    rloop l = {.x = {.cfg = cfg, .rc = r, .db = me->db, .q = q, .sends = sends, .events = events},
               .cfg = cfg,
               .slot = me->slot,
               .cid = cid,
               .per_job = 1,
               .pq = pq,
               .eq = eq,
               .next_sweep = time_mono_ms() + 1000};
    consumer c;
    consumer_init(&c, &(consumer_opts){.name = "receipts",
                                       .q = q,
                                       .priority = pq,
                                       .low = eq,
                                       .ops = &receipts_ops,
                                       .arg = &l,
                                       .block_ms = 500,
                                       .backoff_min_ms = 100,
                                       .backoff_max_ms = 5000,
                                       .progress_ms = 10000});
    if (consumer_start(&c) == 0) {
        log_info("receipts.started", "consumer=%s batch=%d", cid, cfg->receipts.batch_size);
        consumer_run(&c);
    }
    log_info("receipts.stopped", "consumer=%s applied=%lld noops=%lld dead=%lld handed_back=%d",
             cid, (long long)l.x.applied, (long long)l.x.noops, (long long)l.x.dead, c.handed_back);
    consumer_release(&c);
    me->rc = 0;
out:
    if (me->rc != 0) /* a consumer that cannot start takes the process down, as before threads */
        signals_request_stop();
    queue_close(q);
    queue_close(pq);
    queue_close(eq);
    queue_close(sends);
    queue_close(events);
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
    consumer_thread *cs = calloc((size_t)n, sizeof *cs);
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
        cs[started] = (consumer_thread){.slot = started, .cfg = &cfg, .db = db, .rc = 1};
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
