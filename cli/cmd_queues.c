/*
 * minicrm queues [--watch [SECONDS]] [--json]: depth, in-flight, delayed and dead counts and the
 * recent throughput of every minicrm queue (lib/queue queue_stats_get), read straight from
 * Redis. --watch redraws every SECONDS (default 2) until interrupted; --json prints one JSON
 * object (the same shape GET /api/queues returns, plus sends.held). Held: the send jobs of
 * paused campaigns, kept apart from ready until a resume (lib/campctl).
 */
#include "campctl.h"
#include "commands.h"
#include "queue.h"
#include "rconn.h"
#include "signals.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int print_once(rconn *r, const minicrm_config *cfg, bool as_json)
{
    queue_stats st[QUEUE_COUNT];
    char err[256];
    for (size_t i = 0; i < QUEUE_COUNT; i++) {
        if (queue_stats_get(r, cfg->redis.prefix, queue_names[i], &st[i], err, sizeof err) != 0) {
            fprintf(stderr, "minicrm queues: %s\n", err);
            return 1;
        }
    }
    /* Send jobs of paused campaigns wait in their held lists, apart from ready (lib/campctl). */
    long long held = campctl_held_jobs(r, cfg->redis.prefix);
    if (held < 0) {
        fprintf(stderr, "minicrm queues: cannot count held sends: %s\n", rconn_error(r));
        return 1;
    }
    if (as_json) {
        json_t *o = json_object();
        for (size_t i = 0; i < QUEUE_COUNT; i++)
            json_object_set_new(
                o, st[i].name,
                json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "ready",
                          (json_int_t)st[i].ready, "inflight", (json_int_t)st[i].inflight,
                          "delayed", (json_int_t)st[i].delayed, "dead", (json_int_t)st[i].dead,
                          "consumers", (json_int_t)st[i].alive, "pushed", (json_int_t)st[i].pushed,
                          "acked", (json_int_t)st[i].acked, "items", (json_int_t)st[i].items,
                          "retried", (json_int_t)st[i].retried, "requeued",
                          (json_int_t)st[i].requeued, "reaped", (json_int_t)st[i].reaped,
                          "rate_per_s", st[i].rate_1m));
        json_object_set_new(json_object_get(o, QUEUE_SENDS), "held",
                            json_integer((json_int_t)held));
        char *s = json_dumps(o, JSON_COMPACT);
        printf("%s\n", s ? s : "{}");
        free(s);
        json_decref(o);
        return 0;
    }
    /* Jobs are counted in READY..ACKED; ITEMS and ITEMS/S count what they carried (a fan-out
     * batch of sends, one POST of receipts), i.e. messages. */
    printf("%-17s %9s %9s %9s %9s %9s %11s %11s %11s %11s\n", "QUEUE", "READY", "INFLIGHT",
           "DELAYED", "DEAD", "CONSUMERS", "PUSHED", "ACKED", "ITEMS", "ITEMS/S(1m)");
    for (size_t i = 0; i < QUEUE_COUNT; i++)
        printf("%-17s %9lld %9lld %9lld %9lld %4lld/%-4lld %11lld %11lld %11lld %11.1f\n",
               st[i].name, st[i].ready, st[i].inflight, st[i].delayed, st[i].dead, st[i].alive,
               st[i].consumers, st[i].pushed, st[i].acked, st[i].items, st[i].rate_1m);
    printf("%-17s %9lld (send jobs of paused campaigns, not in READY)\n", "held", held);
    fflush(stdout);
    return 0;
}

int cmd_queues(cli_ctx *ctx)
{
    bool watch = false, as_json = false;
    int every = 2;
    for (int i = 1; i < ctx->argc; i++) {
        if (!strcmp(ctx->argv[i], "--watch")) {
            watch = true;
            if (i + 1 < ctx->argc && ctx->argv[i + 1][0] != '-') {
                char *end;
                long v = strtol(ctx->argv[++i], &end, 10);
                if (*end || v < 1 || v > 3600) {
                    fprintf(stderr, "minicrm queues: --watch takes seconds from 1 to 3600\n");
                    return 2;
                }
                every = (int)v;
            }
        } else if (!strcmp(ctx->argv[i], "--json")) {
            as_json = true;
        } else {
            fprintf(stderr, "minicrm queues: unknown argument '%s'\n", ctx->argv[i]);
            return 2;
        }
    }
    if (ctx->help) {
        printf("usage: minicrm queues [--watch [SECONDS]] [--json]\n"
               "Depth (ready), in-flight (claimed), delayed (waiting for a retry) and dead\n"
               "(dead-letter) counts of every queue (in jobs), the work items the acked jobs "
               "carried (sends, receipts) and\n"
               "items acked per second over the last minute.\n");
        return 0;
    }
    char err[256];
    rconn *r = rconn_new(ctx->cfg->redis.url, ctx->cfg->redis.timeout_ms, err, sizeof err);
    if (!r) {
        fprintf(stderr, "minicrm queues: %s\n", err);
        return 1;
    }
    int rc;
    if (watch)
        signals_install();
    for (;;) {
        if (watch && !as_json)
            printf("\033[H\033[2J");
        rc = print_once(r, ctx->cfg, as_json);
        if (!watch || rc != 0 || signals_sleep_ms(every * 1000))
            break;
    }
    rconn_free(r);
    return rc;
}
