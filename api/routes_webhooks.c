/*
 * routes_webhooks: the outbound webhook endpoints (Standard Webhooks; lib/webhook has the
 * document, the signature and the URL rules; minicrm-webhooks delivers). Admin only (403 for
 * anyone else).
 *
 *   POST   /api/webhooks           {url, events: [...], description?}
 *          -> 201 {"message", "secret": "whsec_...", "webhook": {...}}: the signing secret is in
 *          this answer only. 400 naming the field: url not http(s) or pointing at the API
 *          itself, events empty or naming an unknown type, an unknown field.
 *   GET    /api/webhooks           -> 200 [webhook...] newest first: id, url, events,
 *          description, status "enabled"|"disabled" (disabledReason, disabledAt), deliveries,
 *          failures (consecutive failed attempts), last {at, ok, status, error?}, createdAt,
 *          createdBy; never the secret.
 *   DELETE /api/webhooks/:id       -> 200 {"message", "webhook"} / 404. Deliveries still queued
 *          for it are dropped by the worker (the endpoint is gone).
 *   POST   /api/webhooks/:id/test  -> 202 {"ok", "queued", "event_id"}: one delivery of a
 *          "webhook.test" event to that endpoint only (a job on the webhooks queue, with the
 *          same signature, retries and dead letter as any other); 404 / 409 disabled.
 */
#include "apiutil.h"
#include "jobs.h"
#include "jsonx.h"
#include "log.h"
#include "queue.h"
#include "routes.h"
#include "timeutil.h"
#include "webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LIST 1000

/* The stored document as clients see it: "id" for _id, "status" for enabled, no secret. */
static json_t *public_view(const bson_t *doc)
{
    json_t *j = jsonx_from_bson(doc);
    if (!j)
        return NULL;
    json_t *id = json_object_get(j, "_id");
    if (id)
        json_object_set(j, "id", id);
    json_object_del(j, "_id");
    json_object_del(j, "secret");
    json_t *en = json_object_get(j, "enabled");
    json_object_set_new(j, "status", json_string(json_is_true(en) ? "enabled" : "disabled"));
    json_object_del(j, "enabled");
    return j;
}

/* Check body.events: a non-empty array of known event type names; appends the distinct ones to
 * arr. 0, or -1 after answering 400. */
static int check_events(http_request *req, json_t *events, bson_t *arr)
{
    if (!json_is_array(events) || json_array_size(events) == 0) {
        http_error(req, 400,
                   "events: must be a non-empty array of event types (e.g. "
                   "[\"campaign.completed\"])");
        return -1;
    }
    bool seen[JOBS_EV_COUNT] = {false};
    size_t i, n = 0;
    json_t *v;
    json_array_foreach(events, i, v)
    {
        jobs_event_type t;
        if (!json_is_string(v) ||
            jobs_event_type_parse(json_string_value(v), json_string_length(v), &t) != 0) {
            char shown[80] = "?";
            if (json_is_string(v))
                snprintf(shown, sizeof shown, "%s", json_string_value(v));
            http_error(req, 400, "events: unknown event type \"%s\" (known: %s, ...)", shown,
                       jobs_event_type_name(JOBS_EV_CAMPAIGN_STARTED));
            return -1;
        }
        if (seen[t])
            continue;
        seen[t] = true;
        char key[16];
        snprintf(key, sizeof key, "%zu", n++);
        BSON_APPEND_UTF8(arr, key, jobs_event_type_name(t));
    }
    return 0;
}

static void h_create(api_ctx *app, http_request *req)
{
    json_t *body = api_body_object(req, " {url, events, description?}");
    if (!body)
        return;
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v)
    {
        if (strcmp(k, "url") && strcmp(k, "events") && strcmp(k, "description")) {
            http_error(req, 400, "unknown field: %s", k);
            return;
        }
    }
    const char *url, *desc;
    char err[300];
    if (api_field_str(req, body, "url", true, WEBHOOK_URL_MAX, &url) ||
        api_field_str(req, body, "description", false, WEBHOOK_DESC_MAX, &desc))
        return;
    if (webhook_url_check(app->cfg, url, err, sizeof err) != 0) {
        http_error(req, 400, "%s", err);
        return;
    }
    bson_t doc = BSON_INITIALIZER, arr;
    bson_oid_t oid;
    bson_oid_init(&oid, NULL);
    BSON_APPEND_OID(&doc, "_id", &oid);
    BSON_APPEND_UTF8(&doc, "url", url);
    BSON_APPEND_ARRAY_BEGIN(&doc, "events", &arr);
    int bad = check_events(req, json_object_get(body, "events"), &arr);
    bson_append_array_end(&doc, &arr);
    if (bad) {
        bson_destroy(&doc);
        return;
    }
    char secret[WEBHOOK_SECRET_MAX + 1] = "";
    if (webhook_secret_new(secret, sizeof secret) != 0) {
        bson_destroy(&doc);
        http_error(req, 503, "no randomness for the signing secret, retry");
        return;
    }
    char by[320];
    if (req->who.kind == PRINCIPAL_SESSION)
        snprintf(by, sizeof by, "%s", req->who.email);
    else
        snprintf(by, sizeof by, "api_key:%s", req->who.user_id);
    int64_t now = time_now_ms();
    if (desc)
        BSON_APPEND_UTF8(&doc, "description", desc);
    BSON_APPEND_UTF8(&doc, "secret", secret);
    BSON_APPEND_BOOL(&doc, "enabled", true);
    BSON_APPEND_INT64(&doc, "deliveries", 0);
    BSON_APPEND_INT64(&doc, "failures", 0);
    BSON_APPEND_DATE_TIME(&doc, "createdAt", now);
    BSON_APPEND_UTF8(&doc, "createdBy", by);
    mongoc_client_t *cl = dbpool_pop(app->db);
    mongoc_collection_t *c = dbpool_durable_collection(app->db, cl, DB_WEBHOOKS);
    bson_error_t e;
    if (!mongoc_collection_insert_one(c, &doc, NULL, NULL, &e)) {
        api_db_fail(req, &e, "insert webhook");
    } else {
        char hex[25];
        bson_oid_to_string(&oid, hex);
        log_info("webhook.created", "rid=%s id=%s by=%s", req->request_id, hex, by);
        http_add_header(req, "Cache-Control", "no-store");
        http_send_json(req, 201,
                       json_pack("{s:s, s:s, s:o*}", "message",
                                 "webhook created: store the secret now, it is not shown again",
                                 "secret", secret, "webhook", public_view(&doc)));
    }
    explicit_bzero(secret, sizeof secret);
    mongoc_collection_destroy(c);
    dbpool_push(app->db, cl);
    bson_destroy(&doc);
}

static void h_list(api_ctx *app, http_request *req)
{
    mongoc_client_t *cl = dbpool_pop(app->db);
    mongoc_collection_t *c = dbpool_collection(app->db, cl, DB_WEBHOOKS);
    bson_t *f = bson_new();
    bson_t *o = BCON_NEW("sort", "{", "createdAt", BCON_INT32(-1), "}", "limit",
                         BCON_INT64(MAX_LIST), "projection", "{", "secret", BCON_INT32(0), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, f, o, NULL);
    json_t *arr = json_array();
    const bson_t *doc;
    bson_error_t e;
    while (mongoc_cursor_next(cur, &doc))
        json_array_append_new(arr, public_view(doc));
    if (mongoc_cursor_error(cur, &e)) {
        json_decref(arr);
        api_db_fail(req, &e, "list webhooks");
    } else {
        http_send_json(req, 200, arr);
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(f);
    bson_destroy(o);
    mongoc_collection_destroy(c);
    dbpool_push(app->db, cl);
}

/* The endpoint :id (without its secret) into *out. 1 found, 0 not (answered 404), -1 answered. */
static int load(api_ctx *app, http_request *req, mongoc_collection_t *c, bson_oid_t *oid,
                bson_t *out)
{
    if (api_parse_oid(req, "id", http_param(req, "id"), oid) != 0)
        return -1;
    bson_t *f = BCON_NEW("_id", BCON_OID(oid));
    bson_t *o = BCON_NEW("projection", "{", "secret", BCON_INT32(0), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, f, o, NULL);
    const bson_t *doc;
    bson_error_t e;
    int rc = 0;
    (void)app;
    if (mongoc_cursor_next(cur, &doc)) {
        bson_copy_to(doc, out);
        rc = 1;
    } else if (mongoc_cursor_error(cur, &e)) {
        api_db_fail(req, &e, "find webhook");
        rc = -1;
    } else {
        http_error(req, 404, "webhook not found");
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(f);
    bson_destroy(o);
    return rc;
}

static void h_delete(api_ctx *app, http_request *req)
{
    mongoc_client_t *cl = dbpool_pop(app->db);
    mongoc_collection_t *c = dbpool_durable_collection(app->db, cl, DB_WEBHOOKS);
    bson_oid_t oid;
    bson_t doc;
    if (load(app, req, c, &oid, &doc) == 1) {
        bson_t *sel = BCON_NEW("_id", BCON_OID(&oid));
        bson_error_t e;
        if (!mongoc_collection_delete_one(c, sel, NULL, NULL, &e)) {
            api_db_fail(req, &e, "delete webhook");
        } else {
            log_info("webhook.deleted", "rid=%s id=%s", req->request_id, http_param(req, "id"));
            http_send_json(req, 200,
                           json_pack("{s:s, s:o*}", "message", "webhook deleted", "webhook",
                                     public_view(&doc)));
        }
        bson_destroy(sel);
        bson_destroy(&doc);
    }
    mongoc_collection_destroy(c);
    dbpool_push(app->db, cl);
}

static void h_test(api_ctx *app, http_request *req)
{
    mongoc_client_t *cl = dbpool_pop(app->db);
    mongoc_collection_t *c = dbpool_collection(app->db, cl, DB_WEBHOOKS);
    bson_oid_t oid;
    bson_t doc;
    int found = load(app, req, c, &oid, &doc);
    mongoc_collection_destroy(c);
    dbpool_push(app->db, cl);
    if (found != 1)
        return;
    bson_iter_t it;
    bool enabled = bson_iter_init_find(&it, &doc, "enabled") && BSON_ITER_HOLDS_BOOL(&it) &&
                   bson_iter_bool(&it);
    bson_destroy(&doc);
    if (!enabled) {
        http_error(req, 409, "webhook is disabled: create it again to deliver to it");
        return;
    }
    /* A fresh event each time (the id of a test event is random, not derived). */
    bson_oid_t eid;
    bson_oid_init(&eid, NULL);
    char ehex[25], whex[25], data[160];
    bson_oid_to_string(&eid, ehex);
    bson_oid_to_string(&oid, whex);
    jobs_delivery d = {.at = time_now_ms()};
    snprintf(d.endpoint_id, sizeof d.endpoint_id, "%s", whex);
    snprintf(d.id, sizeof d.id, "evt_%s", ehex);
    snprintf(d.type, sizeof d.type, "%s", JOBS_DELIVERY_TEST_TYPE);
    int dl = snprintf(data, sizeof data,
                      "{\"webhook_id\":\"%s\",\"message\":\"a test event from minicrm\"}", whex);
    d.data = data;
    d.datalen = (size_t)dl;
    jsonx_buf job = {0};
    if (jobs_delivery_encode(&job, &d) != 0) {
        jsonx_buf_free(&job);
        http_error(req, 500, "cannot encode the test event");
        return;
    }
    const char *jobs[] = {job.data};
    size_t lens[] = {job.len};
    if (api_enqueue(req, QUEUE_WEBHOOKS, jobs, lens, 1) == 0)
        http_send_json(req, 202,
                       json_pack("{s:b, s:b, s:s}", "ok", 1, "queued", 1, "event_id", d.id));
    jsonx_buf_free(&job);
}

int routes_webhooks_register(router *r)
{
    return router_add(r, HTTP_POST, "/api/webhooks", h_create, ROUTE_AUTH, AUTH_ROLE_ADMIN) ||
           router_add(r, HTTP_GET, "/api/webhooks", h_list, ROUTE_AUTH, AUTH_ROLE_ADMIN) ||
           router_add(r, HTTP_DELETE, "/api/webhooks/:id", h_delete, ROUTE_AUTH, AUTH_ROLE_ADMIN) ||
           router_add(r, HTTP_POST, "/api/webhooks/:id/test", h_test, ROUTE_AUTH, AUTH_ROLE_ADMIN);
}
