/*
 * aiseam: suggest-tags with AI, campaign AI jobs and the poll route (see aiseam.h).
 *
 * Suggest-tags in one or two Redis round trips: GET the entry; if there is none, SET NX
 * {"status":"queued"} (AI_QUEUED_TTL_S) and, only for the caller that created it, push the
 * job, so any number of identical requests make one model call. A push that fails deletes the
 * entry again so the next request tries anew.
 */
#include "aiseam.h"

#include "ai.h"
#include "apiutil.h"
#include "jobs.h"
#include "jsonx.h"
#include "log.h"
#include "queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define AI_ANSWER_MAX_TAGS 6 /* rule tags (3) + AI tags (3) */

bool aiseam_enabled(const minicrm_config *cfg)
{
    return cfg->openai.api_key && *cfg->openai.api_key;
}

/* Push one ai job. 0, or -1 (logged). */
static int push_job(api_ctx *app, http_request *req, rconn *c, const jobs_ai *j)
{
    char err[256] = "out of memory";
    jsonx_buf text = {0};
    queue *q = NULL;
    int rc = -1;
    if (jobs_ai_encode(&text, j) == 0) {
        q = queue_open(c, app->cfg->redis.prefix, QUEUE_AI, NULL, NULL, err, sizeof err);
        rc = q ? queue_push(q, text.data, text.len) : -1;
    }
    if (rc != 0) {
        char m[300];
        log_warn("enqueue_failed", "rid=%s queue=ai err=%s", req->request_id,
                 log_quote(m, sizeof m, q ? queue_error(q) : err));
    }
    queue_close(q);
    jsonx_buf_free(&text);
    return rc;
}

/* The cache entry of `id` as a new JSON object, NULL when absent; *redis_err on trouble. */
static json_t *entry_get(api_ctx *app, rconn *c, const char *id, bool *redis_err)
{
    char key[256];
    ai_suggest_key(app->cfg->redis.prefix, id, key, sizeof key);
    redisReply *r = rconn_command(c, "GET %s", key);
    *redis_err = !r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL);
    json_t *o = NULL;
    if (r && r->type == REDIS_REPLY_STRING) {
        o = json_loadb(r->str, r->len, 0, NULL);
        if (o && !json_is_object(o)) {
            json_decref(o);
            o = NULL;
        }
    }
    if (r)
        freeReplyObject(r);
    return o;
}

/* Answer with the entry's status: ai "done" merges its tags (case-insensitively new ones). */
static void answer(http_request *req, json_t *tags, const char *id, json_t *entry,
                   const char *status)
{
    json_t *out = json_object();
    if (entry && !strcmp(status, "done")) {
        json_t *ai_tags = json_object_get(entry, "tags");
        size_t i, k;
        json_t *t, *have;
        json_array_foreach(ai_tags, i, t)
        {
            bool dup = !json_is_string(t);
            json_array_foreach(tags, k, have) if (!dup && !strcasecmp(json_string_value(have),
                                                                      json_string_value(t))) dup =
                true;
            if (!dup && json_array_size(tags) < AI_ANSWER_MAX_TAGS)
                json_array_append(tags, t);
        }
        json_object_set(out, "ai_tags", ai_tags ? ai_tags : json_array());
        json_t *d = json_object_get(entry, "message_draft"), *m = json_object_get(entry, "model");
        if (d)
            json_object_set(out, "message_draft", d);
        if (m)
            json_object_set(out, "model", m);
    } else if (entry && !strcmp(status, "failed") && json_object_get(entry, "error")) {
        json_object_set(out, "error", json_object_get(entry, "error"));
    }
    json_object_set_new(out, "tags", tags);
    json_object_set_new(out, "ai", json_string(status));
    if (id)
        json_object_set_new(out, "id", json_string(id));
    http_send_json(req, 200, out);
}

void aiseam_suggest(api_ctx *app, http_request *req, const char *name, const rules *r,
                    json_t *rule_tags)
{
    char id[AI_ID_LEN + 1], key[256];
    if (ai_suggest_id(name, r, id) != 0)
        return answer(req, rule_tags, NULL, NULL, "unavailable");
    rconn *c = rpool_get(app->redis);
    if (!c)
        return answer(req, rule_tags, NULL, NULL, "unavailable");
    bool rerr = false;
    json_t *entry = entry_get(app, c, id, &rerr);
    if (!entry && !rerr) {
        ai_suggest_key(app->cfg->redis.prefix, id, key, sizeof key);
        redisReply *rp =
            rconn_command(c, "SET %s %s NX EX %d", key, "{\"status\":\"queued\"}", AI_QUEUED_TTL_S);
        bool created = rp && rp->type == REDIS_REPLY_STATUS;
        rerr = !rp || rp->type == REDIS_REPLY_ERROR;
        if (rp)
            freeReplyObject(rp);
        if (created) {
            jobs_ai j = {.kind = JOBS_AI_SUGGEST};
            memcpy(j.id, id, sizeof id);
            snprintf(j.name, sizeof j.name, "%s", name);
            json_t *jr = rules_to_json(r);
            char *rt = jr ? json_dumps(jr, JSON_COMPACT) : NULL;
            json_decref(jr);
            if (rt && strlen(rt) < sizeof j.rules)
                memcpy(j.rules, rt, strlen(rt) + 1);
            free(rt);
            if (!j.rules[0] || push_job(app, req, c, &j) != 0) {
                rp = rconn_command(c, "DEL %s", key);
                if (rp)
                    freeReplyObject(rp);
                rerr = true;
            }
        }
        entry = rerr ? NULL : json_pack("{s:s}", "status", "queued");
    }
    rpool_put(app->redis, c);
    if (rerr || !entry) {
        json_decref(entry);
        return answer(req, rule_tags, NULL, NULL, "unavailable");
    }
    const char *st = jsonx_str(entry, "status", "queued");
    answer(req, rule_tags, id, entry,
           !strcmp(st, "done")     ? "done"
           : !strcmp(st, "failed") ? "failed"
                                   : "queued");
    json_decref(entry);
}

void aiseam_request_campaign(api_ctx *app, http_request *req, const char *hex)
{
    jobs_ai j = {.kind = JOBS_AI_CAMPAIGN};
    snprintf(j.campaign_id, sizeof j.campaign_id, "%s", hex);
    rconn *c = rpool_get(app->redis);
    int rc = c ? push_job(app, req, c, &j) : -1;
    rpool_put(app->redis, c);
    if (rc == 0)
        return;
    /* Not queued: say so on the campaign instead of leaving it "requested" for ever. */
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, hex);
    bson_t *filter = BCON_NEW("_id", BCON_OID(&oid));
    bson_t *update = BCON_NEW("$set", "{", "ai.status", BCON_UTF8("failed"), "ai.error",
                              BCON_UTF8("not queued: redis unavailable"), "}");
    mongoc_client_t *cl = dbpool_pop(app->db);
    mongoc_collection_t *coll = dbpool_collection(app->db, cl, DB_CAMPAIGNS);
    bson_error_t e;
    if (!mongoc_collection_update_one(coll, filter, update, NULL, NULL, &e))
        log_error("ai_request_lost", "rid=%s campaign=%s", req->request_id, hex);
    mongoc_collection_destroy(coll);
    dbpool_push(app->db, cl);
    bson_destroy(filter);
    bson_destroy(update);
}

static void h_poll(api_ctx *app, http_request *req)
{
    const char *id = http_param(req, "id");
    if (!ai_suggest_id_valid(id)) {
        http_error(req, 400, "id must be the 64 hex characters suggest-tags answered");
        return;
    }
    rconn *c = api_redis(req);
    if (!c)
        return;
    bool rerr = false;
    json_t *entry = entry_get(app, c, id, &rerr);
    if (rerr) {
        api_redis_fail(req, c, "reading a suggestion");
        rpool_put(app->redis, c);
        return;
    }
    rpool_put(app->redis, c);
    if (!entry) {
        http_error(req, 404, "no such suggestion (unknown or expired)");
        return;
    }
    json_object_set_new(entry, "id", json_string(id));
    http_send_json(req, 200, entry);
}

int aiseam_register(router *r)
{
    return router_add(r, HTTP_GET, "/api/campaigns/suggest-tags/:id", h_poll, ROUTE_AUTH,
                      AUTH_ROLE_STAFF);
}
