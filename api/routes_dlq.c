/*
 * routes_dlq: the dead-letter lists of the queues over HTTP (admin), what `minicrm dlq` does on
 * the command line, for the dashboard's queues page.
 *
 *   GET  /api/queues/:name/dead?page=&limit=   200 {"queue","total","page","limit","dead":[
 *                                              {"index","attempts","failed_at","error","job"}]}
 *                                              newest first (index 0 = newest, as in the CLI)
 *   POST /api/queues/:name/dead/:index/requeue 200 {"queue","requeued":n}  (:index or "all")
 *   POST /api/queues/:name/dead/:index/purge   200 {"queue","purged":n}    (:index or "all")
 *
 * :name is one of the queues of /api/queues (404 otherwise); a bad :index is a 400, an index
 * past the end a 404. Every operation is one lib/queue call (queue_dlq_list, queue_dlq_requeue,
 * queue_dlq_purge), atomic in Redis. Indexes shift when a new job dies between a list and an
 * action on it; the dashboard shows the list again after each action.
 */
#include "apiutil.h"
#include "queue.h"
#include "routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parse ?name= as an integer in [lo, hi]; an absent or empty value gives def. 0, or -1 (400
 * sent). */
static int query_long(http_request *req, const char *name, long lo, long hi, long def, long *out)
{
    const char *s = http_query(req, name);
    if (!s || !*s) {
        *out = def;
        return 0;
    }
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < lo || v > hi) {
        http_error(req, 400, "%s: must be an integer in %ld..%ld", name, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* Open the queue named by :name on a pooled connection. The handle and *conn are the caller's
 * (queue_close, then rpool_put). NULL with the answer (404 / 503) sent. */
static queue *open_queue(api_ctx *app, http_request *req, rconn **conn)
{
    const char *name = http_param(req, "name");
    if (!queue_name_known(name)) {
        http_error(req, 404,
                   "queue: unknown queue (campaigns, sends, receipts, ai, priority, "
                   "priority-receipts, receipt-events, events or webhooks)");
        return NULL;
    }
    *conn = rpool_get(app->redis);
    if (!*conn) {
        http_error(req, 503, "redis unavailable, retry later");
        return NULL;
    }
    char err[256];
    queue *q = queue_open(*conn, app->cfg->redis.prefix, name, NULL, NULL, err, sizeof err);
    if (!q) {
        rpool_put(app->redis, *conn);
        *conn = NULL;
        http_error(req, 503, "redis unavailable, retry later");
    }
    return q;
}

static void h_list(api_ctx *app, http_request *req)
{
    long page, limit;
    if (query_long(req, "page", 1, 1000000, 1, &page) ||
        query_long(req, "limit", 1, app->cfg->api.max_page_size, 20, &limit))
        return;
    rconn *c = NULL;
    queue *q = open_queue(app, req, &c);
    if (!q)
        return;
    char **items = NULL;
    long long total = queue_dlq_len(q);
    long start = (page - 1) * limit;
    int n = total < 0 ? -1 : queue_dlq_list(q, start, limit, &items);
    if (n < 0) {
        queue_close(q);
        rpool_put(app->redis, c);
        http_error(req, 503, "redis unavailable, retry later");
        return;
    }
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        json_t *d = json_loads(items[i], JSON_DECODE_ANY, NULL);
        json_t *o = json_object();
        json_object_set_new(o, "index", json_integer(start + i));
        json_object_set(o, "attempts",
                        json_object_get(d, "attempts") ? json_object_get(d, "attempts")
                                                       : json_integer(0));
        json_object_set(o, "failed_at",
                        json_object_get(d, "failed_at") ? json_object_get(d, "failed_at")
                                                        : json_null());
        json_object_set(o, "error",
                        json_object_get(d, "error") ? json_object_get(d, "error") : json_null());
        /* The job as the queue holds it; a dead letter that is not JSON shows as its text. */
        json_object_set_new(o, "job",
                            d && json_object_get(d, "job") ? json_incref(json_object_get(d, "job"))
                                                           : json_string(items[i]));
        json_decref(d);
        json_array_append_new(arr, o);
        free(items[i]);
    }
    free(items);
    queue_close(q);
    rpool_put(app->redis, c);
    http_send_json(req, 200,
                   json_pack("{s:s,s:I,s:I,s:I,s:o}", "queue", http_param(req, "name"), "total",
                             (json_int_t)total, "page", (json_int_t)page, "limit",
                             (json_int_t)limit, "dead", arr));
}

/* requeue (true) or purge (false) the dead letter :index ("all": every one). */
static void act(api_ctx *app, http_request *req, bool requeue)
{
    const char *s = http_param(req, "index");
    long index = -1;
    if (!s || strcmp(s, "all") != 0) {
        char *end;
        index = s ? strtol(s, &end, 10) : -1;
        if (!s || !*s || *end || index < 0 || index > 100000000) {
            http_error(req, 400, "index: must be a dead letter's index (0 = newest) or \"all\"");
            return;
        }
    }
    rconn *c = NULL;
    queue *q = open_queue(app, req, &c);
    if (!q)
        return;
    long long n = requeue ? queue_dlq_requeue(q, index) : queue_dlq_purge(q, index);
    queue_close(q);
    rpool_put(app->redis, c);
    if (n < 0) {
        http_error(req, 503, "redis unavailable, retry later");
        return;
    }
    if (n == 0 && index >= 0) {
        http_error(req, 404, "index: no dead letter %ld in %s", index, http_param(req, "name"));
        return;
    }
    http_send_json(req, 200,
                   json_pack("{s:s,s:I}", "queue", http_param(req, "name"),
                             requeue ? "requeued" : "purged", (json_int_t)n));
}

static void h_requeue(api_ctx *app, http_request *req)
{
    act(app, req, true);
}

static void h_purge(api_ctx *app, http_request *req)
{
    act(app, req, false);
}

int routes_dlq_register(router *r)
{
    if (router_add(r, HTTP_GET, "/api/queues/:name/dead", h_list, ROUTE_AUTH, AUTH_ROLE_ADMIN) ||
        router_add(r, HTTP_POST, "/api/queues/:name/dead/:index/requeue", h_requeue, ROUTE_AUTH,
                   AUTH_ROLE_ADMIN) ||
        router_add(r, HTTP_POST, "/api/queues/:name/dead/:index/purge", h_purge, ROUTE_AUTH,
                   AUTH_ROLE_ADMIN))
        return -1;
    return 0;
}
