/*
 * routes_ops: operational endpoints.
 *   GET /healthz     200 {"status":"ok"} while the process serves requests (no dependency).
 *   GET /readyz      200 when Redis (PING) and MongoDB (ping) both answer; else 503 naming
 *                    the dependency that is down.
 *   GET /metrics     Prometheus text: requests by route and status, latency histograms,
 *                    queue depths (LLEN/ZCARD of each queue's keys).
 *   GET /api/queues  (admin) the queue statistics as JSON.
 */
#include "apiutil.h"
#include "log.h"
#include "metrics.h"
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

/* ---- queue depths ---- */

static const char *const k_queues[] = {"campaigns", "sends", "receipts"};

/* Depth of each queue: ready, processing (sum over consumers is the pipeline's business;
 * we report ready, delayed and dead, which are single keys). One pipelined round trip.
 * Returns 0 and fills out[q][3], or -1. */
static int queue_depths(api_ctx *app, long long out[3][3])
{
    rconn *c = rpool_get(app->redis);
    if (!c)
        return -1;
    int rc = 0;
    char k[256];
    for (int q = 0; q < 3; q++) {
        rconn_append(c, "LLEN %s", api_key(app, k, sizeof k, "{%s}:ready", k_queues[q]));
        rconn_append(c, "ZCARD %s", api_key(app, k, sizeof k, "{%s}:delayed", k_queues[q]));
        rconn_append(c, "LLEN %s", api_key(app, k, sizeof k, "{%s}:dead", k_queues[q]));
    }
    for (int q = 0; q < 3; q++)
        for (int j = 0; j < 3; j++) {
            redisReply *r = NULL;
            if (rconn_get_reply(c, &r) != 0) {
                rc = -1;
                goto out;
            }
            out[q][j] = (r && r->type == REDIS_REPLY_INTEGER) ? r->integer : 0;
            freeReplyObject(r);
        }
out:
    rpool_put(app->redis, c);
    return rc;
}

static void h_metrics(api_ctx *app, http_request *req)
{
    mbuf b = {.max = 4 << 20};
    metrics_render(app->metrics, &b);
    long long d[3][3];
    mbuf_printf(&b, "# HELP minicrm_queue_depth Jobs per queue and state.\n"
                    "# TYPE minicrm_queue_depth gauge\n");
    if (queue_depths(app, d) == 0) {
        static const char *const states[] = {"ready", "delayed", "dead"};
        for (int q = 0; q < 3; q++)
            for (int j = 0; j < 3; j++)
                mbuf_printf(&b, "minicrm_queue_depth{queue=\"%s\",state=\"%s\"} %lld\n",
                            k_queues[q], states[j], d[q][j]);
    }
    mbuf_printf(&b,
                "# HELP minicrm_up_redis Redis reachable at the last scrape.\n"
                "# TYPE minicrm_up_redis gauge\nminicrm_up_redis %d\n",
                queue_depths(app, d) == 0);
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
    long long d[3][3];
    if (queue_depths(app, d) != 0) {
        http_error(req, 503, "redis unavailable, retry later");
        return;
    }
    json_t *o = json_object();
    for (int q = 0; q < 3; q++)
        json_object_set_new(o, k_queues[q],
                            json_pack("{s:I,s:I,s:I}", "ready", (json_int_t)d[q][0], "delayed",
                                      (json_int_t)d[q][1], "dead", (json_int_t)d[q][2]));
    http_send_json(req, 200, json_pack("{s:o}", "queues", o));
}

int routes_ops_register(router *r)
{
    if (router_add(r, HTTP_GET, "/healthz", h_healthz, ROUTE_PUBLIC, ROLE_NONE) ||
        router_add(r, HTTP_GET, "/readyz", h_readyz, ROUTE_PUBLIC, ROLE_NONE) ||
        router_add(r, HTTP_GET, "/metrics", h_metrics, ROUTE_PUBLIC, ROLE_NONE) ||
        router_add(r, HTTP_GET, "/api/queues", h_queues, ROUTE_AUTH, ROLE_ADMIN))
        return -1;
    return 0;
}
