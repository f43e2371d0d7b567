/*
 * routes_ops: operational endpoints.
 *   GET /healthz     200 {"status":"ok"} while the process serves requests (no dependency).
 *   GET /readyz      200 when Redis (PING) and MongoDB (ping) both answer; else 503 naming
 *                    the dependency that is down.
 *   GET /metrics     (admin) Prometheus text: requests by route and status, latency histograms,
 *                    queue depths (queue_stats_get of lib/queue).
 *   GET /api/queues  (admin) the queue statistics as JSON; the sends queue also has "held"
 *                    (send jobs of paused campaigns, lib/campctl).
 */
#include "apiutil.h"
#include "campctl.h"
#include "log.h"
#include "metrics.h"
#include "queue.h"
#include "routes.h"
#include "timeutil.h"

#include <stdio.h>
#include <string.h>

static void h_healthz(api_ctx *app, http_request *req)
{
    http_send_json(req, 200,
                   json_pack("{s:s,s:I}", "status", "ok", "uptime_s",
                             (json_int_t)((time_now_ms() - app->started_ms) / 1000)));
}

static void h_readyz(api_ctx *app, http_request *req)
{
    bool redis_ok = false, mongo_ok = false;
    rconn *c = rpool_get(app->redis);
    if (c) {
        redis_ok = rconn_ping(c) == 0;
        rpool_put(app->redis, c);
    }
    bson_error_t e;
    mongo_ok = dbpool_ping(app->db, &e) == 0;
    json_t *o = json_pack("{s:s,s:s}", "redis", redis_ok ? "ok" : "down", "mongodb",
                          mongo_ok ? "ok" : "down");
    if (redis_ok && mongo_ok) {
        json_object_set_new(o, "status", json_string("ready"));
        http_send_json(req, 200, o);
        return;
    }
    char msg[64];
    snprintf(msg, sizeof msg, "%s%s%s unavailable", redis_ok ? "" : "redis",
             (!redis_ok && !mongo_ok) ? " and " : "", mongo_ok ? "" : "mongodb");
    json_object_set_new(o, "status", json_string("unavailable"));
    json_object_set_new(o, "error", json_string(msg));
    http_send_json(req, 503, o);
}

/* ---- queue depths (lib/queue statistics) ---- */

/* Statistics of every queue. 0, or -1 if Redis is unreachable. */
static int queue_all_stats(api_ctx *app, queue_stats out[QUEUE_COUNT])
{
    rconn *c = rpool_get(app->redis);
    if (!c)
        return -1;
    int rc = 0;
    char err[256];
    for (int q = 0; q < QUEUE_COUNT && rc == 0; q++)
        rc = queue_stats_get(c, app->cfg->redis.prefix, queue_names[q], &out[q], err, sizeof err);
    rpool_put(app->redis, c);
    return rc;
}

static void h_metrics(api_ctx *app, http_request *req)
{
    mbuf b = {.max = 4 << 20};
    metrics_render(app->metrics, &b);
    queue_stats st[QUEUE_COUNT];
    int up = queue_all_stats(app, st) == 0;
    if (up) {
        mbuf_printf(&b, "# HELP minicrm_queue_jobs Jobs per queue and state.\n"
                        "# TYPE minicrm_queue_jobs gauge\n");
        for (int q = 0; q < QUEUE_COUNT; q++) {
            const char *n = queue_names[q];
            mbuf_printf(&b,
                        "minicrm_queue_jobs{queue=\"%s\",state=\"ready\"} %lld\n"
                        "minicrm_queue_jobs{queue=\"%s\",state=\"inflight\"} %lld\n"
                        "minicrm_queue_jobs{queue=\"%s\",state=\"delayed\"} %lld\n"
                        "minicrm_queue_jobs{queue=\"%s\",state=\"dead\"} %lld\n",
                        n, st[q].ready, n, st[q].inflight, n, st[q].delayed, n, st[q].dead);
        }
    }
    mbuf_printf(&b,
                "# HELP minicrm_redis_up Redis reachable at this scrape.\n"
                "# TYPE minicrm_redis_up gauge\nminicrm_redis_up %d\n",
                up);
    if (b.failed) {
        mbuf_release(&b);
        http_error(req, 503, "metrics too large");
        return;
    }
    http_send_raw(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data ? b.data : "",
                  b.len);
    mbuf_release(&b);
}

static void h_queues(api_ctx *app, http_request *req)
{
    queue_stats st[QUEUE_COUNT];
    if (queue_all_stats(app, st) != 0) {
        http_error(req, 503, "redis unavailable, retry later");
        return;
    }
    json_t *arr = json_array();
    for (int q = 0; q < QUEUE_COUNT; q++) {
        const queue_stats *s = &st[q];
        json_array_append_new(
            arr, json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "name",
                           queue_names[q], "ready", (json_int_t)s->ready, "inflight",
                           (json_int_t)s->inflight, "delayed", (json_int_t)s->delayed, "dead",
                           (json_int_t)s->dead, "consumers", (json_int_t)s->consumers, "alive",
                           (json_int_t)s->alive, "pushed", (json_int_t)s->pushed, "acked",
                           (json_int_t)s->acked, "items", (json_int_t)s->items, "retried",
                           (json_int_t)s->retried, "dead_total", (json_int_t)s->dead_total,
                           "requeued", (json_int_t)s->requeued, "reaped", (json_int_t)s->reaped,
                           "rate_1m", s->rate_1m));
    }
    /* Send jobs of paused campaigns wait in their held lists (lib/campctl), as in `minicrm
     * queues`: the dashboard shows them next to the sends queue. */
    rconn *c = rpool_get(app->redis);
    long long held = c ? campctl_held_jobs(c, app->cfg->redis.prefix) : -1;
    if (c)
        rpool_put(app->redis, c);
    for (int q = 0; q < QUEUE_COUNT && held >= 0; q++)
        if (strcmp(queue_names[q], QUEUE_SENDS) == 0)
            json_object_set_new(json_array_get(arr, (size_t)q), "held",
                                json_integer((json_int_t)held));
    http_send_json(req, 200, json_pack("{s:o}", "queues", arr));
}

int routes_ops_register(router *r)
{
    if (router_add(r, HTTP_GET, "/healthz", h_healthz, ROUTE_PUBLIC, AUTH_ROLE_NONE) ||
        router_add(r, HTTP_GET, "/readyz", h_readyz, ROUTE_PUBLIC, AUTH_ROLE_NONE) ||
        router_add(r, HTTP_GET, "/metrics", h_metrics, ROUTE_AUTH, AUTH_ROLE_ADMIN) ||
        router_add(r, HTTP_GET, "/api/queues", h_queues, ROUTE_AUTH, AUTH_ROLE_ADMIN))
        return -1;
    return 0;
}
