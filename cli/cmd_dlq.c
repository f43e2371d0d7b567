/*
 * minicrm dlq: the dead-letter lists of the queues (lib/queue).
 *
 *   minicrm dlq list    QUEUE [--limit N]   newest first: index, attempts, failed time, error, job
 *   minicrm dlq show    QUEUE INDEX         the full dead letter as JSON
 *   minicrm dlq requeue QUEUE INDEX|--all   the original job back to ready (bookkeeping removed)
 *   minicrm dlq purge   QUEUE INDEX|--all   delete dead letters for good
 * QUEUE is campaigns, sends, receipts, ai, priority, priority-receipts, receipt-events, events
 * or webhooks.
 * Index 0 is the newest dead letter.
 */
#include "commands.h"
#include "queue.h"
#include "rconn.h"
#include "timeutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: minicrm dlq list QUEUE [--limit N]\n"
               "       minicrm dlq show QUEUE INDEX\n"
               "       minicrm dlq requeue QUEUE INDEX|--all\n"
               "       minicrm dlq purge QUEUE INDEX|--all\n"
               "QUEUE: campaigns, sends, receipts, ai, priority, priority-receipts, "
               "receipt-events, events or webhooks; INDEX 0 is the newest dead letter.\n");
}

static int parse_index(const char *s, long *out)
{
    if (!strcmp(s, "--all")) {
        *out = -1;
        return 0;
    }
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end || v < 0)
        return -1;
    *out = v;
    return 0;
}

int cmd_dlq(cli_ctx *ctx)
{
    if (ctx->help) {
        usage(stdout);
        return 0;
    }
    if (ctx->argc < 3) {
        usage(stderr);
        return 2;
    }
    const char *op = ctx->argv[1], *qname = ctx->argv[2];
    if (!queue_name_known(qname)) {
        fprintf(stderr,
                "minicrm dlq: unknown queue '%s' (campaigns, sends, receipts, ai, priority, "
                "priority-receipts, receipt-events, events or webhooks)\n",
                qname);
        return 2;
    }
    long index = 0, limit = 20;
    if (!strcmp(op, "list")) {
        if (ctx->argc == 5 && !strcmp(ctx->argv[3], "--limit")) {
            char *end;
            limit = strtol(ctx->argv[4], &end, 10);
            if (*end || limit < 1 || limit > 100000) {
                fprintf(stderr, "minicrm dlq: --limit takes 1..100000\n");
                return 2;
            }
        } else if (ctx->argc != 3) {
            usage(stderr);
            return 2;
        }
    } else if (!strcmp(op, "show") || !strcmp(op, "requeue") || !strcmp(op, "purge")) {
        if (ctx->argc != 4 || parse_index(ctx->argv[3], &index) != 0 ||
            (!strcmp(op, "show") && index < 0)) {
            usage(stderr);
            return 2;
        }
    } else {
        fprintf(stderr, "minicrm dlq: unknown operation '%s'\n", op);
        usage(stderr);
        return 2;
    }
    char err[256];
    rconn *r = rconn_new(ctx->cfg->redis.url, ctx->cfg->redis.timeout_ms, err, sizeof err);
    queue *q = r ? queue_open(r, ctx->cfg->redis.prefix, qname, NULL, NULL, err, sizeof err) : NULL;
    if (!q) {
        fprintf(stderr, "minicrm dlq: %s\n", err);
        rconn_free(r);
        return 1;
    }
    int rc = 1;
    if (!strcmp(op, "list") || !strcmp(op, "show")) {
        char **items = NULL;
        int n = queue_dlq_list(q, !strcmp(op, "show") ? index : 0, !strcmp(op, "show") ? 1 : limit,
                               &items);
        if (n < 0) {
            fprintf(stderr, "minicrm dlq: %s\n", queue_error(q));
        } else if (!strcmp(op, "show")) {
            if (n == 0) {
                fprintf(stderr, "minicrm dlq: no dead letter %ld in %s\n", index, qname);
            } else {
                json_t *j = json_loads(items[0], 0, NULL);
                char *pretty = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
                printf("%s\n", pretty ? pretty : items[0]);
                free(pretty);
                json_decref(j);
                rc = 0;
            }
        } else {
            printf("%d of %lld dead letters in %s\n", n, queue_dlq_len(q), qname);
            for (int i = 0; i < n; i++) {
                json_t *j = json_loads(items[i], 0, NULL);
                char when[32] = "?";
                json_t *fa = json_object_get(j, "failed_at");
                if (json_is_integer(fa))
                    time_format_iso8601(json_integer_value(fa), when);
                char *job = json_dumps(json_object_get(j, "job"), JSON_COMPACT | JSON_ENCODE_ANY);
                printf("%-4d attempts=%lld failed_at=%s error=\"%s\"\n     job=%.200s\n", i,
                       (long long)json_integer_value(json_object_get(j, "attempts")), when,
                       json_string_value(json_object_get(j, "error"))
                           ? json_string_value(json_object_get(j, "error"))
                           : "",
                       job ? job : items[i]);
                free(job);
                json_decref(j);
            }
            rc = 0;
        }
        for (int i = 0; i < n; i++)
            free(items[i]);
        free(items);
    } else {
        bool requeue = !strcmp(op, "requeue");
        long long n = requeue ? queue_dlq_requeue(q, index) : queue_dlq_purge(q, index);
        if (n < 0) {
            fprintf(stderr, "minicrm dlq: %s\n", queue_error(q));
        } else {
            printf("%s %lld dead letter%s of %s\n", requeue ? "requeued" : "purged", n,
                   n == 1 ? "" : "s", qname);
            rc = 0;
        }
    }
    queue_close(q);
    rconn_free(r);
    return rc;
}
