/*
 * minicrm-vendor-sim: the delivery vendor simulator.
 *
 * One single-threaded event loop; per iteration:
 *   1. claim up to vendor_sim.batch_size sends (while fewer than max_inflight wait), decide each
 *      one and schedule its receipt;
 *   2. fire every due timer: the receipt moves from the schedule to the outbox;
 *   3. POST outbox receipts to the API in batches (JSON array, HMAC-signed, keep-alive).
 *
 * Decisions are idempotent per log_id like a real vendor's idempotency key, without storing
 * anything: decide.c derives vendorMsgId, outcome (SENT with probability
 * vendor_sim.success_rate, else FAILED) and delay (uniform in [min_delay_ms, max_delay_ms]) from
 * HMAC-SHA256(receipts.vendor_secret, seed + log_id), so a repeated send, on any instance, before
 * or after a restart, gets the same vendorMsgId and outcome. The due time (now + delay) is made
 * durable by the schedule ZSET before the send is acked. The RNG (xorshift64*, seeded from
 * vendor_sim.seed, 0: the clock) only jitters the POST back-off.
 *
 * Crash safety (kill -9 at any moment loses nothing):
 *   - a send is acked only after its receipt is in the durable schedule
 *     P{vendor}:scheduled:NAME (ZSET, score = due ms); before that the claim is returned by
 *     queue_release_claimed at the next start (the consumer id is stable: vendor-sim:NAME);
 *   - the in-memory min-heap (timers.c) is only a cache of the schedule, reloaded at start;
 *   - a due receipt moves schedule -> outbox P{vendor}:outbox:NAME in one MULTI/EXEC;
 *   - the outbox is trimmed only after the API answered 2xx; receipts the API refuses for good
 *     (4xx other than 401/408/429) are kept in P{vendor}:rejected:NAME, never dropped.
 * Duplicates are possible after a crash (a receipt posted twice); the receipts worker treats a
 * repeat as a no-op.
 */
#include "decide.h"
#include "jsonx.h"
#include "log.h"
#include "poster.h"
#include "progargs.h"
#include "queue.h"
#include "rconn.h"
#include "signals.h"
#include "timers.h"
#include "timeutil.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct vsim {
    minicrm_config *cfg;
    rconn *rc;
    queue *q;
    poster *post;
    decider *dec;
    timers heap;
    uint64_t rng;
    char k_sched[300], k_outbox[300], k_rejected[300];
    long long outbox_n; /* receipts in the outbox (we are its only writer and reader) */
    int64_t next_post_ms;
    int post_backoff_ms;
    long long claimed, fired, posted, rejected; /* totals for progress logs */
} vsim;

static const progargs_flag flags[] = {
    {"--name", "vendor_sim.name", "instance name (unique per running simulator)"},
    {"--seed", "vendor_sim.seed", "decision seed (with receipts.vendor_secret)"},
    {"--success-rate", "vendor_sim.success_rate", "probability of SENT"},
    {"--min-delay", "vendor_sim.min_delay_ms", "shortest delay, ms"},
    {"--max-delay", "vendor_sim.max_delay_ms", "longest delay, ms"},
    {"--api", "vendor_sim.api_base_url", "API base URL receipts are posted to"},
    {"--redis", "redis.url", "Redis URL"},
};

static uint64_t rng_next(vsim *v)
{
    uint64_t x = v->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    v->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* ---- 1. sends -> decisions -> schedule -------------------------------------------------- */

/* Our own receipt document. Every value is ours (24-hex log id, "vm-" + 16 hex, a fixed status
 * word, an integer), so nothing needs escaping and snprintf writes exactly what
 * json_pack + json_dumps(JSON_COMPACT) wrote, at a fraction of the cost. */
static char *fmt_receipt(const char *log_id, const char *vmid, const char *status, int64_t at)
{
    char buf[200];
    int n =
        snprintf(buf, sizeof buf,
                 "{\"log_id\":\"%s\",\"vendorMsgId\":\"%s\",\"status\":\"%s\",\"at\":%" PRId64 "}",
                 log_id, vmid, status, at);
    return n > 0 && (size_t)n < sizeof buf ? strdup(buf) : NULL;
}

static int process_sends(vsim *v, const queue_batch *b)
{
    int rc = -1;
    char **receipts = calloc(b->n, sizeof *receipts);
    int64_t *due = calloc(b->n, sizeof *due);
    queue_job *acks = calloc(b->n, sizeof *acks);
    const char **argv = calloc(2 + 2 * b->n, sizeof *argv);
    size_t *alen = calloc(2 + 2 * b->n, sizeof *alen);
    char(*scores)[24] = calloc(b->n, sizeof *scores);
    size_t nacks = 0, argc = 0;
    if (!receipts || !due || !acks || !argv || !alen || !scores)
        goto out;
    int64_t now = time_now_ms();
    argv[argc] = "ZADD";
    alen[argc++] = 4;
    argv[argc] = v->k_sched;
    alen[argc++] = strlen(v->k_sched);
    for (size_t i = 0; i < b->n; i++) {
        char perr[64];
        json_t *s = jsonx_parse(b->jobs[i].data, b->jobs[i].len, perr, sizeof perr);
        const char *lid = jsonx_str(s, "log_id", NULL);
        if (!lid || !oid_is_valid_hex(lid)) {
            json_decref(s);
            if (queue_dead(v->q, &b->jobs[i], "malformed send: log_id must be a 24-hex id") != 0)
                goto out;
            continue;
        }
        decision dc;
        if (decider_decide(v->dec, lid, strlen(lid), &dc) != 0) {
            json_decref(s);
            log_warn("vendor.decide_failed", "detail=\"OpenSSL HMAC failed\"");
            goto out;
        }
        due[nacks] = now + dc.delay_ms;
        receipts[nacks] = fmt_receipt(lid, dc.vmid, dc.status, due[nacks]);
        json_decref(s);
        if (!receipts[nacks])
            goto out;
        snprintf(scores[nacks], sizeof scores[nacks], "%" PRId64, due[nacks]);
        argv[argc] = scores[nacks];
        alen[argc++] = strlen(scores[nacks]);
        argv[argc] = receipts[nacks];
        alen[argc++] = strlen(receipts[nacks]);
        acks[nacks++] = b->jobs[i];
    }
    /* Durable schedule, then ack. */
    if (argc > 2) {
        redisReply *r = rconn_command_argv(v->rc, (int)argc, argv, alen);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            if (r)
                freeReplyObject(r);
            goto redis_fail;
        }
        freeReplyObject(r);
    }
    if (nacks && queue_ack(v->q, acks, nacks) != 0)
        goto redis_fail;
    for (size_t i = 0; i < nacks; i++) {
        if (timers_push(&v->heap, due[i], receipts[i]) == 0)
            receipts[i] = NULL;
    }
    v->claimed += (long long)nacks;
    rc = 0;
    goto out;
redis_fail:
    log_warn("vendor.redis_error", "detail=\"%s\"", rconn_error(v->rc));
out:
    for (size_t i = 0; receipts && i < b->n; i++)
        free(receipts[i]);
    free(receipts);
    free(due);
    free(acks);
    free(argv);
    free(alen);
    free(scores);
    return rc;
}

/* ---- 2. timers -> outbox ---------------------------------------------------------------- */

static int fire_due(vsim *v)
{
    enum { MAXFIRE = 2000 };
    timer_entry e[MAXFIRE];
    size_t n = 0;
    int64_t now = time_now_ms();
    while (n < MAXFIRE && timers_pop_due(&v->heap, now, &e[n]))
        n++;
    if (n == 0)
        return 0;
    const char *argv[MAXFIRE + 2];
    size_t alen[MAXFIRE + 2];
    int ok = rconn_append(v->rc, "MULTI") == 0;
    argv[0] = "RPUSH";
    argv[1] = v->k_outbox;
    for (size_t i = 0; i < n; i++) {
        argv[2 + i] = e[i].payload;
        alen[2 + i] = strlen(e[i].payload);
    }
    alen[0] = 5;
    alen[1] = strlen(v->k_outbox);
    ok = ok && rconn_append_argv(v->rc, (int)n + 2, argv, alen) == 0;
    argv[0] = "ZREM";
    alen[0] = 4;
    argv[1] = v->k_sched;
    alen[1] = strlen(v->k_sched);
    ok = ok && rconn_append_argv(v->rc, (int)n + 2, argv, alen) == 0;
    ok = ok && rconn_append(v->rc, "EXEC") == 0;
    for (int i = 0; ok && i < 4; i++) {
        redisReply *r;
        if (rconn_get_reply(v->rc, &r) != 0) {
            ok = 0;
            break;
        }
        if (r->type == REDIS_REPLY_ERROR || (i == 3 && r->type != REDIS_REPLY_ARRAY))
            ok = 0;
        freeReplyObject(r);
    }
    if (!ok) {
        /* Still in the durable schedule: keep them in the heap and try again shortly. */
        log_warn("vendor.redis_error", "detail=\"%s\"", rconn_error(v->rc));
        for (size_t i = 0; i < n; i++)
            if (timers_push(&v->heap, now + 200, e[i].payload) != 0)
                free(e[i].payload); /* still in the schedule: reloaded at the next start */
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        free(e[i].payload);
    v->outbox_n += (long long)n;
    v->fired += (long long)n;
    return (int)n;
}

/* ---- 3. outbox -> API ------------------------------------------------------------------- */

/* One POST of up to post_batch receipts. 1 posted, 0 nothing to do / backing off, -1 error. */
static int post_some(vsim *v)
{
    if (v->outbox_n <= 0 || time_mono_ms() < v->next_post_ms)
        return 0;
    int nb = v->cfg->vendor_sim.post_batch;
    redisReply *r = rconn_command(v->rc, "LRANGE %s 0 %d", v->k_outbox, nb - 1);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        return -1;
    }
    if (r->elements == 0) {
        v->outbox_n = 0;
        freeReplyObject(r);
        return 0;
    }
    size_t len = 2;
    for (size_t i = 0; i < r->elements; i++)
        len += r->element[i]->len + 1;
    char *body = malloc(len + 1);
    if (!body) {
        freeReplyObject(r);
        return -1;
    }
    size_t o = 0;
    body[o++] = '[';
    for (size_t i = 0; i < r->elements; i++) {
        if (i)
            body[o++] = ',';
        memcpy(body + o, r->element[i]->str, r->element[i]->len);
        o += r->element[i]->len;
    }
    body[o++] = ']';
    body[o] = '\0';
    long status;
    char detail[200];
    poster_result pr = poster_post(v->post, body, o, &status, detail, sizeof detail);
    free(body);
    size_t n = r->elements;
    int rc = 1;
    if (pr == POSTER_RETRY) {
        log_warn("vendor.post_failed", "receipts=%zu detail=\"%s\" retry_in_ms=%d", n, detail,
                 v->post_backoff_ms);
        v->next_post_ms = time_mono_ms() + v->post_backoff_ms / 2 +
                          (int64_t)(rng_next(v) % (uint64_t)(v->post_backoff_ms / 2 + 1));
        v->post_backoff_ms = v->post_backoff_ms * 2 > 10000 ? 10000 : v->post_backoff_ms * 2;
        rc = 0;
    } else {
        int ok = rconn_append(v->rc, "MULTI") == 0;
        if (pr == POSTER_REJECTED) {
            log_error("vendor.post_rejected", "receipts=%zu detail=\"%s\" kept_in=%s", n, detail,
                      v->k_rejected);
            for (size_t i = 0; ok && i < n; i++)
                ok = rconn_append(v->rc, "RPUSH %s %b", v->k_rejected, r->element[i]->str,
                                  r->element[i]->len) == 0;
        }
        ok = ok && rconn_append(v->rc, "LTRIM %s %lld -1", v->k_outbox, (long long)n) == 0;
        ok = ok && rconn_append(v->rc, "EXEC") == 0;
        size_t replies = 3 + (pr == POSTER_REJECTED ? n : 0);
        for (size_t i = 0; ok && i < replies; i++) {
            redisReply *x;
            if (rconn_get_reply(v->rc, &x) != 0)
                ok = 0;
            else
                freeReplyObject(x);
        }
        if (!ok) {
            rc = -1; /* posted but not trimmed: they will be posted again (harmless repeat) */
        } else {
            v->outbox_n -= (long long)n;
            if (pr == POSTER_OK)
                v->posted += (long long)n;
            else
                v->rejected += (long long)n;
        }
        v->post_backoff_ms = 100;
    }
    freeReplyObject(r);
    return rc;
}

/* ---- start-up ---------------------------------------------------------------------------- */

/* Reload the durable schedule into the heap and count the outbox. */
static int recover(vsim *v)
{
    long long start = 0;
    for (;;) {
        redisReply *r =
            rconn_command(v->rc, "ZRANGE %s %lld %lld WITHSCORES", v->k_sched, start, start + 9999);
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            if (r)
                freeReplyObject(r);
            return -1;
        }
        size_t n = r->elements / 2;
        for (size_t i = 0; i < n; i++) {
            char *p = strndup(r->element[2 * i]->str, r->element[2 * i]->len);
            int64_t due = strtoll(r->element[2 * i + 1]->str, NULL, 10);
            if (!p || timers_push(&v->heap, due, p) != 0) {
                free(p);
                freeReplyObject(r);
                return -1;
            }
        }
        freeReplyObject(r);
        if (n < 10000)
            break;
        start += 10000;
    }
    redisReply *r = rconn_command(v->rc, "LLEN %s", v->k_outbox);
    if (!r || r->type != REDIS_REPLY_INTEGER) {
        if (r)
            freeReplyObject(r);
        return -1;
    }
    v->outbox_n = r->integer;
    freeReplyObject(r);
    return 0;
}

int main(int argc, char **argv)
{
    minicrm_config cfg;
    progargs pa;
    int st = prog_start("minicrm-vendor-sim", "[--name N] [--seed S]", argc, argv, flags,
                        sizeof flags / sizeof flags[0], false, &cfg, &pa);
    if (st != 0)
        return st == 1 ? 0 : st;
    int rc = 1;
    char err[256], cid[QUEUE_MAX_CONSUMER];
    vsim v = {.cfg = &cfg, .post_backoff_ms = 100};
    timers_init(&v.heap);
    queue_batch b = {0};
    if (cfg.vendor_sim.min_delay_ms > cfg.vendor_sim.max_delay_ms) {
        fprintf(stderr, "minicrm-vendor-sim: vendor_sim.min_delay_ms > max_delay_ms\n");
        rc = 2;
        goto out;
    }
    if (signals_install() != 0)
        goto out;
    v.rng = cfg.vendor_sim.seed ? (uint64_t)cfg.vendor_sim.seed
                                : (uint64_t)time_mono_us() ^ ((uint64_t)getpid() << 32);
    if (!v.rng)
        v.rng = 88172645463325252ULL;
    v.rc = rconn_new(cfg.redis.url, cfg.redis.timeout_ms, err, sizeof err);
    if (!v.rc) {
        fprintf(stderr, "minicrm-vendor-sim: %s\n", err);
        goto out;
    }
    snprintf(cid, sizeof cid, "vendor-sim:%s", cfg.vendor_sim.name);
    queue_opts qo;
    queue_opts_from_config(&qo, &cfg);
    v.q = queue_open(v.rc, cfg.redis.prefix, QUEUE_SENDS, cid, &qo, err, sizeof err);
    v.post = poster_new(cfg.vendor_sim.api_base_url, cfg.receipts.vendor_secret,
                        cfg.vendor_sim.post_timeout_ms);
    v.dec =
        decider_new(cfg.receipts.vendor_secret, cfg.vendor_sim.seed, cfg.vendor_sim.success_rate,
                    cfg.vendor_sim.min_delay_ms, cfg.vendor_sim.max_delay_ms);
    if (!v.q || !v.post || !v.dec) {
        fprintf(stderr, "minicrm-vendor-sim: %s\n",
                !v.q      ? err
                : !v.post ? "cannot set up libcurl"
                          : "cannot set up HMAC-SHA256");
        goto out;
    }
    snprintf(v.k_sched, sizeof v.k_sched, "%s{vendor}:scheduled:%s", cfg.redis.prefix,
             cfg.vendor_sim.name);
    snprintf(v.k_outbox, sizeof v.k_outbox, "%s{vendor}:outbox:%s", cfg.redis.prefix,
             cfg.vendor_sim.name);
    snprintf(v.k_rejected, sizeof v.k_rejected, "%s{vendor}:rejected:%s", cfg.redis.prefix,
             cfg.vendor_sim.name);
    /* Take back what a previous run of this instance had claimed, reload its schedule. */
    while (!signals_stop_requested()) {
        int back = queue_release_claimed(v.q);
        if (back >= 0 && queue_register(v.q) == 0 && recover(&v) == 0) {
            log_info("vendor.started", "name=%s handed_back=%d scheduled=%zu outbox=%lld",
                     cfg.vendor_sim.name, back, timers_count(&v.heap), v.outbox_n);
            break;
        }
        timers_release(&v.heap);
        log_warn("vendor.redis_wait", "detail=\"%s\"", rconn_error(v.rc));
        signals_sleep_ms(500);
    }
    int64_t next_report = time_mono_ms() + 10000;
    int pause = 50;
    while (!signals_stop_requested()) {
        if (queue_maintain(v.q) != 0) {
            log_warn("vendor.redis_error", "detail=\"%s\"", queue_error(v.q));
            signals_sleep_ms(pause);
            pause = pause * 2 > 2000 ? 2000 : pause * 2;
            continue;
        }
        int64_t now = time_now_ms();
        size_t inflight = timers_count(&v.heap);
        if (inflight < (size_t)cfg.vendor_sim.max_inflight) {
            int64_t wait = timers_next_due(&v.heap) - now;
            int block = v.outbox_n > 0 ? 0 : (int)(wait < 0 ? 0 : wait > 200 ? 200 : wait);
            size_t room = (size_t)cfg.vendor_sim.max_inflight - inflight;
            size_t want =
                room < (size_t)cfg.vendor_sim.batch_size ? room : (size_t)cfg.vendor_sim.batch_size;
            int n = queue_claim(v.q, want, block, &b);
            if (n < 0) {
                log_warn("vendor.redis_error", "detail=\"%s\"", queue_error(v.q));
                signals_sleep_ms(pause);
                pause = pause * 2 > 2000 ? 2000 : pause * 2;
                continue;
            }
            if (n > 0 && process_sends(&v, &b) != 0) {
                /* Not acked: the jobs stay in our processing list and the next claim delivers
                 * them again (decisions are idempotent, so redoing the batch is safe). */
                signals_sleep_ms(pause);
                pause = pause * 2 > 2000 ? 2000 : pause * 2;
            }
            queue_batch_release(&b);
        } else {
            int64_t wait = timers_next_due(&v.heap) - now;
            if (wait > 0 && v.outbox_n == 0)
                signals_sleep_ms((int)(wait > 100 ? 100 : wait));
        }
        fire_due(&v);
        for (int i = 0; i < 8 && post_some(&v) == 1; i++)
            ;
        pause = 50;
        if (time_mono_ms() >= next_report) {
            next_report = time_mono_ms() + 10000;
            log_info("vendor.progress",
                     "claimed=%lld fired=%lld posted=%lld rejected=%lld "
                     "waiting=%zu outbox=%lld",
                     v.claimed, v.fired, v.posted, v.rejected, timers_count(&v.heap), v.outbox_n);
        }
    }
    log_info("vendor.stopped", "claimed=%lld fired=%lld posted=%lld waiting=%zu outbox=%lld",
             v.claimed, v.fired, v.posted, timers_count(&v.heap), v.outbox_n);
    rc = 0;
out:
    queue_batch_release(&b);
    timers_release(&v.heap);
    poster_free(v.post);
    decider_free(v.dec);
    queue_close(v.q);
    rconn_free(v.rc);
    cfg_release(&cfg);
    progargs_release(&pa);
    return rc;
}
