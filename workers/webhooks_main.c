/*
 * minicrm-webhooks: the outbound webhooks worker (workers/webhooks.h has the design).
 *
 * One process, one thread, one consumer loop (lib/consumer) over two queues: the events queue
 * (the priority queue: every event becomes its deliveries at once) and the webhooks queue
 * (deliveries, up to webhooks.max_inflight in flight on one libcurl multi handle). Run as many
 * processes, on as many hosts, as needed: they share both queues.
 *
 * SIGTERM/SIGINT: stop claiming, finish what is in flight for up to workers.shutdown_timeout_s,
 * hand back the rest (it is delivered by the next start or another process), exit 0.
 */
#include "consumer.h"
#include "dbpool.h"
#include "log.h"
#include "progargs.h"
#include "queue.h"
#include "rconn.h"
#include "signals.h"
#include "webhooks.h"

#include <curl/curl.h>
#include <stdio.h>

static const progargs_flag flags[] = {
    {"--redis", "redis.url", "Redis URL"},
    {"--mongo", "mongo.uri", "MongoDB URI"},
    {"--inflight", "webhooks.max_inflight", "deliveries in flight at once"},
};

int main(int argc, char **argv)
{
    minicrm_config cfg;
    progargs pa;
    int st = prog_start("minicrm-webhooks", "[--inflight N]", argc, argv, flags,
                        sizeof flags / sizeof flags[0], false, &cfg, &pa);
    if (st != 0)
        return st == 1 ? 0 : st;
    int rc = 1;
    char err[256], cid[QUEUE_MAX_CONSUMER];
    dbpool *db = NULL;
    rconn *r = NULL;
    queue *events = NULL, *hooks = NULL;
    webhooks_ctx *x = NULL;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (signals_install() != 0) {
        fprintf(stderr, "minicrm-webhooks: cannot install signal handlers\n");
        goto out;
    }
    db = dbpool_new(cfg.mongo.uri, 2, cfg.mongo.timeout_ms, "minicrm-webhooks", err, sizeof err);
    if (!db || dbpool_set_durable_wc(db, cfg.mongo.write_concern, err, sizeof err) != 0)
        goto fail;
    r = rconn_new(cfg.redis.url, cfg.redis.timeout_ms, err, sizeof err);
    if (!r)
        goto fail;
    queue_opts qo;
    queue_opts_from_config(&qo, &cfg);
    queue_consumer_id("webhooks", cid, sizeof cid);
    events = queue_open(r, cfg.redis.prefix, QUEUE_EVENTS, cid, &qo, err, sizeof err);
    /* The webhooks queue dead-letters by its own schedule (workers/webhooks.c), never by
     * queue.max_attempts. */
    qo.max_attempts = WEBHOOK_RETRY_MAX + 2;
    hooks =
        events ? queue_open(r, cfg.redis.prefix, QUEUE_WEBHOOKS, cid, &qo, err, sizeof err) : NULL;
    if (!hooks)
        goto fail;
    x = webhooks_new(&cfg, db, events, hooks, err, sizeof err);
    if (!x)
        goto fail;
    consumer c;
    consumer_init(&c, &(consumer_opts){.name = "webhooks",
                                       .q = hooks,
                                       .priority = events,
                                       .ops = &webhooks_ops,
                                       .arg = x,
                                       .block_ms = 500,
                                       .backoff_min_ms = 100,
                                       .backoff_max_ms = 5000,
                                       .progress_ms = 10000,
                                       .holds_jobs = true,
                                       .grace_ms = cfg.workers.shutdown_timeout_s * 1000});
    if (consumer_start(&c) == 0) {
        log_info("webhooks.started", "consumer=%s inflight=%d schedule=\"%s\"", cid,
                 cfg.webhooks.max_inflight, cfg.webhooks.retry_schedule);
        consumer_run(&c);
    }
    webhooks_stats s;
    webhooks_get_stats(x, &s);
    log_info("webhooks.stopped",
             "consumer=%s events=%lld delivered=%lld failed=%lld dead=%lld handed_back=%d", cid,
             s.events, s.delivered, s.failed, s.dead, c.handed_back);
    consumer_release(&c);
    rc = 0;
    goto out;
fail:
    log_error("webhooks.start_failed", "detail=\"%s\"", err);
    fprintf(stderr, "minicrm-webhooks: %s\n", err);
out:
    webhooks_free(x);
    queue_close(hooks);
    queue_close(events);
    rconn_free(r);
    dbpool_free(db);
    curl_global_cleanup();
    cfg_release(&cfg);
    progargs_release(&pa);
    return rc;
}
