/*
 * minicrm-ai: the consumer of the ai queue (AI tags and message drafts, issue 18).
 *
 * A program of its own rather than a thread of minicrm-worker: its work is a slow outbound
 * HTTP call (seconds, rate-limited by the provider) where the worker's is fast database
 * fan-out; it runs only when AI is configured (`minicrm up` starts it when openai.api_key is
 * set), it alone holds the key, and a stuck or paused model server must never slow down
 * campaign delivery. One process makes one call at a time, which is what a per-key rate limit
 * wants; run more processes (any host) for more throughput: they share the queue.
 *
 * Loop (lib/consumer): claim one job, blocking up to 1 s (at most half the Redis timeout)
 * when idle; ai_handle_job (workers/aitask.c) settles it. After a 429/503 with Retry-After, want()
 * claims nothing until that time has passed (tick waits in short interruptible steps) while the
 * queue housekeeping goes on. The ai queue retries a job openai.max_attempts times (queue.backoff_*
 * between attempts) before its dead letter.
 *
 * SIGTERM/SIGINT: the current call finishes (at most openai.timeout_ms), then the job is
 * settled, nothing more is claimed, and the process exits 0.
 */
#include "aitask.h"
#include "consumer.h"
#include "dbpool.h"
#include "log.h"
#include "openai.h"
#include "progargs.h"
#include "queue.h"
#include "rconn.h"
#include "signals.h"
#include "timeutil.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>

static const progargs_flag flags[] = {
    {"--redis", "redis.url", "Redis URL"},
    {"--mongo", "mongo.uri", "MongoDB URI"},
    {"--base-url", "openai.base_url", "OpenAI-compatible API root (.../v1)"},
    {"--model", "openai.model", "model name"},
};

static size_t ai_want(void *arg, int *block_ms)
{
    ai_ctx *x = arg;
    (void)block_ms;
    return time_mono_ms() < x->pause_until_ms ? 0 : 1;
}

static consumer_result ai_handle(void *arg, queue_batch *b)
{
    ai_ctx *x = arg;
    for (size_t i = 0; i < b->n; i++)
        if (ai_handle_job(x, &b->jobs[i]) != 0)
            return CONSUMER_BACKOFF;
    return CONSUMER_OK;
}

static void ai_tick(void *arg, bool claimed)
{
    ai_ctx *x = arg;
    int64_t left = x->pause_until_ms - time_mono_ms();
    if (!claimed && left > 0)
        signals_sleep_ms(left > 200 ? 200 : (int)left);
}

static void ai_progress(void *arg, char *buf, size_t n)
{
    ai_ctx *x = arg;
    snprintf(buf, n, "calls=%lld done=%lld retried=%lld failed=%lld tokens=%lld", x->calls, x->done,
             x->retried, x->failed, x->tokens);
}

static const consumer_ops ai_ops = {
    .want = ai_want, .handle = ai_handle, .tick = ai_tick, .progress = ai_progress};

int main(int argc, char **argv)
{
    minicrm_config cfg;
    progargs pa;
    int st = prog_start("minicrm-ai", "[--base-url URL] [--model NAME]", argc, argv, flags,
                        sizeof flags / sizeof flags[0], false, &cfg, &pa);
    if (st != 0)
        return st == 1 ? 0 : st;
    int rc = 1;
    char err[256], cid[QUEUE_MAX_CONSUMER];
    dbpool *db = NULL;
    rconn *r = NULL;
    queue *q = NULL;
    openai_client *oc = NULL;
    bool curl_up = false;
    if (!cfg.openai.api_key || !*cfg.openai.api_key) {
        fprintf(stderr, "minicrm-ai: openai.api_key (OPENAI_API_KEY) is not set; "
                        "a local model server takes any non-empty value\n");
        rc = 2;
        goto out;
    }
    if (signals_install() != 0) {
        fprintf(stderr, "minicrm-ai: cannot install signal handlers\n");
        goto out;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "minicrm-ai: cannot initialise libcurl\n");
        goto out;
    }
    curl_up = true;
    db = dbpool_new(cfg.mongo.uri, 2, cfg.mongo.timeout_ms, "minicrm-ai", err, sizeof err);
    r = db ? rconn_new(cfg.redis.url, cfg.redis.timeout_ms, err, sizeof err) : NULL;
    queue_opts qo;
    queue_opts_from_config(&qo, &cfg);
    qo.max_attempts = cfg.openai.max_attempts;
    q = r ? queue_open(r, cfg.redis.prefix, QUEUE_AI, queue_consumer_id("ai", cid, sizeof cid), &qo,
                       err, sizeof err)
          : NULL;
    oc = q ? openai_client_new(&cfg) : NULL;
    if (!oc) {
        if (q)
            snprintf(err, sizeof err, "out of memory");
        log_error("ai.start_failed", "detail=\"%s\"", err);
        fprintf(stderr, "minicrm-ai: %s\n", err);
        goto out;
    }
    ai_ctx x = {.cfg = &cfg, .rc = r, .db = db, .q = q, .oc = oc};
    consumer c;
    consumer_init(&c, &(consumer_opts){.name = "ai",
                                       .q = q,
                                       .ops = &ai_ops,
                                       .arg = &x,
                                       /* a blocking claim must end well inside the
                                        * Redis command timeout */
                                       .block_ms = cfg.redis.timeout_ms / 2 < 1000
                                                       ? cfg.redis.timeout_ms / 2
                                                       : 1000,
                                       .backoff_min_ms = 100,
                                       .backoff_max_ms = 5000,
                                       .progress_ms = 10000});
    if (consumer_start(&c) == 0) {
        /* the base URL is not a secret; the key is never logged */
        char m[600];
        log_info("ai.started", "consumer=%s model=%s base_url=%s max_attempts=%d", cid,
                 cfg.openai.model, log_quote(m, sizeof m, cfg.openai.base_url),
                 cfg.openai.max_attempts);
        consumer_run(&c);
    }
    log_info("ai.stopped", "consumer=%s calls=%lld done=%lld failed=%lld tokens=%lld", cid, x.calls,
             x.done, x.failed, x.tokens);
    consumer_release(&c);
    rc = 0;
out:
    openai_client_free(oc);
    queue_close(q);
    rconn_free(r);
    dbpool_free(db);
    if (curl_up)
        curl_global_cleanup();
    cfg_release(&cfg);
    progargs_release(&pa);
    return rc;
}
