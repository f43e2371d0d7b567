/*
 * routes_campaigns: campaigns1 and its logs.
 *
 *   POST /api/campaigns               {name, rules, selectedTags?, message?, send_at?, rate_per_s?}
 *        rate_per_s (a positive number, at most RATE_PER_S_MAX; else 400): the campaign's own
 *        send rate, stored on the campaign and carried by its send jobs (lib/throttle).
 *        send_at (ISO 8601 with a zone, future, at most a year ahead; else 400 naming send_at):
 *        the campaign is stored SCHEDULED (rules judged at send_at) and its job goes to the
 *        schedule (a Redis ZSET, lib/campctl) instead of the queue; a worker promotes it.
 *        validate -> count the audience (one count with the rules filter) -> store the campaign
 *        (status QUEUED, counters 0, rules_now fixed) -> enqueue ONE job {"campaign_id"} on the
 *        campaigns queue -> 201 {"message", "campaign", "logs_count": audience size}.
 *        The request never touches the audience beyond the count: the fan-out worker writes the
 *        logs and sends, so the answer is quick whatever the audience size. If the job cannot
 *        be enqueued the campaign is removed again and the answer is 503 (a retry starts over).
 *        Idempotency-Key (api/idempotency, unscoped key {prefix}idem:{user}:{key}): the first
 *        answer (status + body) is kept in Redis for api.idempotency_ttl_s with a hash of the
 *        body; a retry with the same body gets it back (header Idempotent-Replayed: true) and
 *        creates nothing; the same key with another body -> 409; while the first is still
 *        running -> 409. 5xx answers are not kept (the client may retry).
 *   POST /api/campaigns/preview       {rules} -> 200 {"audience_size": N, "rules": {...}}
 *        The audience count (here and in POST /api/campaigns, api_count_audience): with any
 *        rule exact, from the rules' indexes alone; with no rule ({}) the customers
 *        collection's metadata count minus the suppressed customers (O(1) on MongoDB, which
 *        keeps that count; exact except after an unclean MongoDB shutdown, until it recounts).
 *   POST /api/campaigns/suggest-tags  {name, rules} -> 200 {"tags": [...]} (the auto tags);
 *        with AI configured also "ai" and an id, and the AI tags once cached (api/aiseam.c).
 *   GET  /api/campaigns/suggest-tags/:id   the AI suggestion's state (api/aiseam.c).
 *   GET  /api/campaigns?tag=          newest first; tag is a case-insensitive fuzzy match
 *        (spaces, '-' and '_' interchangeable) on tags and name; ?limit=, ?page= (at most
 *        api.max_skip documents deep) or ?after= (the keyset of api_after_newest).
 *   GET  /api/campaigns/:id           the campaign (counters total, pending, sent, failed,
 *        cancelled) plus "progress" from those counters: one find by _id, whatever the
 *        audience ("cancelled" only when some log is). ?verify=1: the exact counts of its logs
 *        instead (one indexed count per log state on {campaign_id, status}: O(audience), slow).
 *   The moves (pause, resume, cancel) are in routes_campaign_moves.c.
 *   GET  /api/campaigns/:id/logs      its logs, customer populated {_id, name, email}, in
 *        customer order (index {campaign_id, customer_id}); ?limit=, ?page= (at most
 *        api.max_skip documents deep) or ?after=<cust id>;
 *        ?status=PENDING|SENT|FAILED|CANCELLED keeps one status (400 for any other).
 *        404 for an unknown campaign, looked up only when the page is empty (logs exist only
 *        for a stored campaign): a page with logs costs its query and the customers' query.
 *
 * AI (OPENAI_API_KEY set): the request path makes NO outbound call. ai_seam_request() records
 * on the campaign what minicrm-ai should do ("ai": {"status": "requested", ...}) and, once the
 * campaign is stored and queued, aiseam_request_campaign() puts its job on the ai queue.
 */
#include "aiseam.h"
#include "apiutil.h"
#include "campaign.h"
#include "campctl.h"
#include "idempotency.h"
#include "jobs.h"
#include "jsonx.h"
#include "log.h"
#include "queue.h"
#include "routes.h"
#include "rpool.h"
#include "rules.h"
#include "template.h"
#include "timeutil.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NAME_MAX_LEN   200
#define TAG_MAX_LEN    50
#define MAX_AUTO_TAGS  3
#define MAX_TAGS       5
#define RATE_PER_S_MAX 1000000 /* as vendor.rate_per_s */

/* ------------------------------------------------------------------------------------------ */
/* Auto tags (contract, "Campaigns")                                                          */
/* ------------------------------------------------------------------------------------------ */

/* Bookkeeping of the receipts worker (the tokens of the batches it counted, see
 * workers/receipts.c): kept in the document, never shown to clients. */
static const char *const CAMPAIGN_INTERNAL[] = {"ctoks", CAMPAIGN_EVENTS_DUE, NULL};

static bool has_tag(const json_t *tags, const char *t)
{
    size_t i;
    json_t *v;
    json_array_foreach(tags, i, v) if (strcasecmp(json_string_value(v), t) == 0) return true;
    return false;
}

/* Append t unless present or the array already holds `max` tags. */
static void add_tag(json_t *tags, const char *t, size_t max)
{
    if (json_array_size(tags) < max && !has_tag(tags, t))
        json_array_append_new(tags, json_string(t));
}

/* A word character as in a JavaScript \\b (the original's regex): letters, digits, '_'. */
static bool is_word_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/* True if lower-cased `name` contains `word` as a whole word. */
static bool has_word(const char *name, const char *word)
{
    size_t wl = strlen(word);
    for (const char *p = name; (p = strstr(p, word)) != NULL; p++) {
        bool left = p == name || !is_word_char(p[-1]);
        bool right = !is_word_char(p[wl]);
        if (left && right)
            return true;
    }
    return false;
}

/* The contract's auto tags (at most 3), in priority order. */
static json_t *auto_tags(const char *name, const rules *r, int64_t audience)
{
    json_t *tags = json_array();
    char lower[NAME_MAX_LEN + 1];
    api_lower(name ? name : "", lower, sizeof lower);
    if ((r->has & RULE_INACTIVE_DAYS) && r->inactive_days >= 30) {
        add_tag(tags, "Win-back", MAX_AUTO_TAGS);
        add_tag(tags, "Reactivation", MAX_AUTO_TAGS);
    }
    if ((r->has & RULE_MIN_SPEND) && r->min_spend >= 4000) {
        add_tag(tags, "High value customers", MAX_AUTO_TAGS);
        add_tag(tags, "Loyalty", MAX_AUTO_TAGS);
    }
    if (has_word(lower, "vip") || has_word(lower, "elite") || has_word(lower, "prime"))
        add_tag(tags, "Loyalty", MAX_AUTO_TAGS);
    static const char *const seasonal[] = {"festival", "diwali",    "pongal", "christmas", "xmas",
                                           "eoy",      "clearance", "sale",   "offer"};
    for (size_t i = 0; i < sizeof seasonal / sizeof seasonal[0]; i++)
        if (strstr(lower, seasonal[i])) {
            add_tag(tags, "Seasonal", MAX_AUTO_TAGS);
            add_tag(tags, "Promotion", MAX_AUTO_TAGS);
            break;
        }
    if (audience == 0)
        add_tag(tags, "Narrow audience", MAX_AUTO_TAGS);
    return tags;
}

/* ------------------------------------------------------------------------------------------ */
/* Shared pieces                                                                              */
/* ------------------------------------------------------------------------------------------ */

/* Parse body.rules (answers 400). A missing `rules` is an error when required. */
static int body_rules(http_request *req, json_t *body, bool required, rules *out)
{
    json_t *jr = json_object_get(body, "rules");
    if (!jr || json_is_null(jr)) {
        if (required) {
            http_error(req, 400, "rules is required (an object; {} matches everyone)");
            return -1;
        }
        memset(out, 0, sizeof *out);
        return 0;
    }
    char err[256];
    if (rules_parse_json(jr, out, err, sizeof err) != 0) {
        http_error(req, 400, "%s", err);
        return -1;
    }
    return 0;
}

/* Count customers matching r at now. 0, or -1 (answered). */
static int count_audience(api_ctx *app, http_request *req, const rules *r, int64_t now, int64_t *n)
{
    bson_t filter = BSON_INITIALIZER;
    rules_filter(r, now, &filter);
    mongoc_client_t *cl = dbpool_pop(app->db);
    mongoc_collection_t *coll = dbpool_collection(app->db, cl, DB_CUSTOMERS);
    bson_error_t e;
    int rc = api_count_audience(coll, &filter, n, &e);
    mongoc_collection_destroy(coll);
    dbpool_push(app->db, cl);
    bson_destroy(&filter);
    if (rc != 0)
        return api_db_fail(req, &e, "counting the audience");
    return 0;
}

/* AI seam: see the file comment. Never calls out; only marks the campaign for a worker. */
static void ai_seam_request(const minicrm_config *cfg, bool has_message, bson_t *doc)
{
    if (!cfg->openai.api_key || !*cfg->openai.api_key)
        return;
    bson_t ai;
    BSON_APPEND_DOCUMENT_BEGIN(doc, "ai", &ai);
    BSON_APPEND_UTF8(&ai, "status", "requested");
    BSON_APPEND_BOOL(&ai, "tags", true);
    BSON_APPEND_BOOL(&ai, "message", !has_message);
    bson_append_document_end(doc, &ai);
}

/* ------------------------------------------------------------------------------------------ */
/* POST /api/campaigns                                                                        */
/* ------------------------------------------------------------------------------------------ */

/* The answer of a creation, built before sending so it can be kept for Idempotency-Key. */
typedef struct answer {
    int status;
    json_t *body; /* owned */
} answer;

static void set_error(answer *a, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_error(answer *a, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_decref(a->body);
    a->status = status;
    a->body = http_error_json(msg);
}

/* Validate, count, store, enqueue. Never answers the request itself. */
static void create_campaign(api_ctx *app, http_request *req, json_t *body, answer *a)
{
    rules r;
    char err[256];
    const char *name;
    if (api_check_str(body, "name", true, NAME_MAX_LEN, &name, err, sizeof err) != 0)
        return set_error(a, 400, "%s", err);

    json_t *jr = json_object_get(body, "rules");
    if (!jr || json_is_null(jr))
        return set_error(a, 400, "rules is required (an object; {} matches everyone)");
    if (rules_parse_json(jr, &r, err, sizeof err) != 0)
        return set_error(a, 400, "%s", err);

    const char *message = NULL;
    json_t *jm = json_object_get(body, "message");
    if (jm && !json_is_null(jm)) {
        if (!json_is_string(jm))
            return set_error(a, 400, "message must be a string");
        message = json_string_value(jm);
        if (strlen(message) != json_string_length(jm))
            return set_error(a, 400, "message must not contain NUL characters");
        if (template_validate(message, err, sizeof err) != 0)
            return set_error(a, 400, "%s", err);
    }

    json_t *sel = json_object_get(body, "selectedTags");
    if (sel && !json_is_null(sel)) {
        if (!json_is_array(sel))
            return set_error(a, 400, "selectedTags must be an array of strings");
        if (json_array_size(sel) > MAX_TAGS)
            return set_error(a, 400, "selectedTags: at most %d tags", MAX_TAGS);
        size_t i;
        json_t *t;
        json_array_foreach(sel, i, t)
        {
            if (!json_is_string(t) || json_string_length(t) == 0 ||
                json_string_length(t) > TAG_MAX_LEN ||
                strlen(json_string_value(t)) != json_string_length(t) ||
                strspn(json_string_value(t), " \t\r\n") == json_string_length(t))
                return set_error(a, 400,
                                 "selectedTags[%zu] must be a non-blank string of 1-%d characters",
                                 i, TAG_MAX_LEN);
        }
    }

    /* The campaign's own send rate (optional; lib/throttle enforces it where sends are handed
     * to the vendor). JSON has no NaN or Infinity, so "a positive number" is a finite one. */
    double rate_per_s = 0;
    json_t *jrate = json_object_get(body, "rate_per_s");
    if (jrate && !json_is_null(jrate)) {
        rate_per_s = json_is_number(jrate) ? json_number_value(jrate) : 0;
        if (!(rate_per_s > 0) || !isfinite(rate_per_s))
            return set_error(a, 400, "rate_per_s must be a positive number");
        if (rate_per_s > RATE_PER_S_MAX)
            return set_error(a, 400, "rate_per_s must be at most %d", RATE_PER_S_MAX);
    }

    int64_t now = time_now_ms(), send_at = 0;
    json_t *jsa = json_object_get(body, "send_at");
    bool scheduled = jsa && !json_is_null(jsa);
    if (scheduled &&
        (!json_is_string(jsa) ||
         campaign_send_at_check(json_string_value(jsa), now, &send_at, err, sizeof err) != 0))
        return set_error(a, 400, "%s",
                         json_is_string(jsa) ? err : "send_at must be a string (ISO 8601)");
    bson_t filter = BSON_INITIALIZER;
    rules_filter(&r, now, &filter);
    mongoc_client_t *cl = dbpool_pop(app->db);
    mongoc_collection_t *customers = dbpool_collection(app->db, cl, DB_CUSTOMERS);
    mongoc_collection_t *campaigns = dbpool_durable_collection(app->db, cl, DB_CAMPAIGNS);
    bson_t doc = BSON_INITIALIZER;
    json_t *tags = NULL;
    bson_error_t e;
    int64_t audience = 0;
    if (api_count_audience(customers, &filter, &audience, &e) != 0) {
        int st = api_db_status(req, &e, "counting the audience");
        set_error(a, st, st == 503 ? "database unavailable, retry later" : "database error");
        goto out;
    }

    /* Tags: up to 3 automatic ones, then the user's, 5 in all. */
    tags = auto_tags(name, &r, audience);
    if (sel) {
        size_t i;
        json_t *t;
        json_array_foreach(sel, i, t) add_tag(tags, json_string_value(t), MAX_TAGS);
    }

    bson_oid_t oid;
    bson_oid_init(&oid, NULL);
    char hex[25];
    bson_oid_to_string(&oid, hex);
    BSON_APPEND_OID(&doc, "_id", &oid);
    BSON_APPEND_UTF8(&doc, "name", name);
    bson_t sub;
    BSON_APPEND_DOCUMENT_BEGIN(&doc, "rules", &sub);
    rules_append_bson(&r, &sub);
    bson_append_document_end(&doc, &sub);
    if (message)
        BSON_APPEND_UTF8(&doc, "message", message);
    else
        BSON_APPEND_NULL(&doc, "message");
    BSON_APPEND_ARRAY_BEGIN(&doc, "tags", &sub);
    for (size_t i = 0; i < json_array_size(tags); i++) {
        char k[16];
        const char *kp;
        bson_uint32_to_string((uint32_t)i, &kp, k, sizeof k);
        bson_append_utf8(&sub, kp, -1, json_string_value(json_array_get(tags, i)), -1);
    }
    bson_append_array_end(&doc, &sub);
    BSON_APPEND_DATE_TIME(&doc, "tagUpdatedAt", now);
    BSON_APPEND_INT64(&doc, "audience_size", audience);
    if (rate_per_s > 0)
        BSON_APPEND_DOUBLE(&doc, "rate_per_s", rate_per_s);
    if (scheduled)
        campaign_append_new_scheduled(&doc, send_at);
    else
        campaign_append_new_state(&doc);
    BSON_APPEND_UTF8(&doc, "created_by", req->who.email[0] ? req->who.email : req->who.user_id);
    /* A scheduled campaign's rules (inactive_days, recent_signup) are judged at send_at. */
    BSON_APPEND_DATE_TIME(&doc, "rules_now", scheduled ? send_at : now);
    ai_seam_request(app->cfg, message != NULL, &doc);
    BSON_APPEND_DATE_TIME(&doc, "createdAt", now);
    BSON_APPEND_DATE_TIME(&doc, "updatedAt", now);
    if (!mongoc_collection_insert_one(campaigns, &doc, NULL, NULL, &e)) {
        int st = api_db_status(req, &e, "storing the campaign");
        set_error(a, st, st == 503 ? "database unavailable, retry later" : "database error");
        goto out;
    }

    char job[JOBS_CAMPAIGN_BYTES];
    int jl = jobs_campaign_encode(hex, job, sizeof job);
    const char *jobs[1] = {job};
    size_t lens[1] = {jl > 0 ? (size_t)jl : 0};
    int qrc = -1;
    if (jl > 0 && !scheduled) {
        qrc = api_push_jobs(req, QUEUE_CAMPAIGNS, jobs, lens, 1);
    } else if (jl > 0) {
        /* Scheduled: the job waits in the schedule until a worker promotes it (lib/campctl). */
        rconn *rc = rpool_get(app->redis);
        qrc =
            rc && campctl_schedule_add(rc, app->cfg->redis.prefix, job, (size_t)jl, send_at, 0) >= 0
                ? 0
                : -1;
        rpool_put(app->redis, rc);
    }
    if (qrc != 0) {
        /* Not enqueued: remove the campaign so nothing is left QUEUED forever. */
        bson_t del = BSON_INITIALIZER;
        BSON_APPEND_OID(&del, "_id", &oid);
        if (!mongoc_collection_delete_one(campaigns, &del, NULL, NULL, &e))
            log_error("campaign_orphaned", "rid=%s campaign=%s", req->request_id, hex);
        bson_destroy(&del);
        set_error(a, 503, "redis unavailable, retry later");
    }
    if (qrc != 0)
        goto out;

    if (aiseam_enabled(app->cfg))
        aiseam_request_campaign(app, req, hex);
    log_info("campaign_created", "rid=%s campaign=%s audience=%lld", req->request_id, hex,
             (long long)audience);
    json_decref(a->body);
    a->status = 201;
    a->body = json_pack("{s:s,s:o,s:I}", "message",
                        scheduled ? "Campaign created and scheduled"
                                  : "Campaign created and queued for delivery",
                        "campaign", jsonx_from_bson(&doc), "logs_count", (json_int_t)audience);
out:
    json_decref(tags);
    bson_destroy(&doc);
    bson_destroy(&filter);
    mongoc_collection_destroy(customers);
    mongoc_collection_destroy(campaigns);
    dbpool_push(app->db, cl);
}

static void h_create(api_ctx *app, http_request *req)
{
    json_t *body = api_body_object(req, NULL);
    if (!body)
        return;
    idem im;
    if (idem_begin(app, req, NULL, &im) != 1) /* NULL: the route's original unscoped key */
        return;
    answer a = {0, NULL};
    create_campaign(app, req, body, &a);
    char *text = a.body ? jsonx_dumps(a.body) : NULL;
    json_decref(a.body);
    if (!text) {
        a.status = 503;
        text = strdup("{\"error\":\"out of memory\"}");
    }
    if (text)
        idem_finish(app, req, &im, a.status, text);
    free(text);
}

/* ------------------------------------------------------------------------------------------ */
/* Preview, suggest-tags                                                                      */
/* ------------------------------------------------------------------------------------------ */

static void h_preview(api_ctx *app, http_request *req)
{
    json_t *body = api_body_object(req, NULL);
    rules r;
    int64_t n;
    if (!body || body_rules(req, body, false, &r) != 0 ||
        count_audience(app, req, &r, time_now_ms(), &n) != 0)
        return;
    http_send_json(
        req, 200,
        json_pack("{s:I,s:o}", "audience_size", (json_int_t)n, "rules", rules_to_json(&r)));
}

static void h_suggest_tags(api_ctx *app, http_request *req)
{
    json_t *body = api_body_object(req, NULL);
    if (!body)
        return;
    const char *name;
    rules r;
    int64_t n;
    if (api_field_str(req, body, "name", false, NAME_MAX_LEN, &name) ||
        body_rules(req, body, false, &r) != 0 ||
        count_audience(app, req, &r, time_now_ms(), &n) != 0)
        return;
    if (name && aiseam_enabled(app->cfg))
        return aiseam_suggest(app, req, name, &r, auto_tags(name, &r, n));
    http_send_json(req, 200, json_pack("{s:o}", "tags", auto_tags(name, &r, n)));
}

/* ------------------------------------------------------------------------------------------ */
/* Listing and reading                                                                        */
/* ------------------------------------------------------------------------------------------ */

/* The fuzzy tag pattern: lower case, runs of space/-/_ -> "[-_ ]+", metacharacters escaped. */
static void fuzzy_pattern(const char *tag, char *out, size_t n)
{
    size_t k = 0;
    for (const char *p = tag; *p && k + 8 < n; p++) {
        char ch = (char)tolower((unsigned char)*p);
        if (ch == ' ' || ch == '-' || ch == '_') {
            while (p[1] == ' ' || p[1] == '-' || p[1] == '_')
                p++;
            memcpy(out + k, "[-_ ]+", 6);
            k += 6;
            continue;
        }
        if (strchr(".^$*+?()[]{}|\\/", ch))
            out[k++] = '\\';
        out[k++] = ch;
    }
    out[k] = '\0';
}

static void h_list(api_ctx *app, http_request *req)
{
    long limit, page, skip = 0;
    if (api_paging(req, 100, &limit, &page) != 0)
        return;
    const char *tag = http_query(req, "tag");
    if (tag && strlen(tag) > 100) {
        http_error(req, 400, "tag must be at most 100 characters");
        return;
    }
    if (tag && !http_utf8_valid(tag, strlen(tag))) {
        /* it becomes a $regex, which the database rejects (a 500) when it is not UTF-8 */
        http_error(req, 400, "tag must be valid UTF-8");
        return;
    }
    bson_t filter = BSON_INITIALIZER, arr, el, rx;
    if (tag && *tag) {
        char pat[1024];
        fuzzy_pattern(tag, pat, sizeof pat);
        BSON_APPEND_ARRAY_BEGIN(&filter, "$or", &arr);
        const char *fields[2] = {"tags", "name"};
        for (int i = 0; i < 2; i++) {
            bson_append_document_begin(&arr, i == 0 ? "0" : "1", 1, &el);
            BSON_APPEND_DOCUMENT_BEGIN(&el, fields[i], &rx);
            BSON_APPEND_UTF8(&rx, "$regex", pat);
            BSON_APPEND_UTF8(&rx, "$options", "i");
            bson_append_document_end(&el, &rx);
            bson_append_document_end(&arr, &el);
        }
        bson_append_array_end(&filter, &arr);
    }
    if (api_newest_position(req, page, limit, &filter, &skip) == 0) {
        api_query q = {.coll = DB_CAMPAIGNS,
                       .filter = &filter,
                       .sort = API_SORT_NEWEST,
                       .limit = limit,
                       .skip = skip,
                       .exclude = CAMPAIGN_INTERNAL};
        api_send_query(app, req, &q, API_CURSOR_NEWEST, "listing campaigns");
    }
    bson_destroy(&filter);
}

/* Load campaign `oid` as JSON: 1 found, 0 not found (answered 404), -1 error (answered). */
static int load_campaign(api_ctx *app, http_request *req, mongoc_client_t *cl,
                         const bson_oid_t *oid, json_t **out)
{
    bson_error_t e;
    int rc = api_find_by_id(app, cl, DB_CAMPAIGNS, oid, out, &e);
    for (const char *const *f = CAMPAIGN_INTERNAL; rc == 1 && *f; f++)
        json_object_del(*out, *f);
    if (rc < 0)
        api_db_fail(req, &e, "reading the campaign");
    else if (rc == 0)
        http_error(req, 404, "campaign not found");
    return rc;
}

/* Counters of the campaign document shown in "progress" as they are, when the document has
 * them (counters other modules add, e.g. delivery events, appear without a change here). */
static const char *const PROGRESS_EXTRA[] = {"bounced", "complained", "opened", "clicked", NULL};

/* The campaign document's counter of the logs in each state (lib/campaign.h, "Counters"). */
static const char *const COUNTER_OF[CAMPAIGN_LOG_STATUS_COUNT] = {
    [CAMPAIGN_LOG_PENDING] = "pending",
    [CAMPAIGN_LOG_SENT] = "sent",
    [CAMPAIGN_LOG_FAILED] = "failed",
    [CAMPAIGN_LOG_CANCELLED] = "cancelled"};

/* The exact counts of the campaign's logs by state: one indexed count per state on
 * {campaign_id, status}, O(audience). Only for ?verify=1. 0, or -1 after answering. */
static int count_logs(api_ctx *app, http_request *req, mongoc_client_t *cl, const bson_oid_t *oid,
                      int64_t counts[CAMPAIGN_LOG_STATUS_COUNT])
{
    mongoc_collection_t *logs = dbpool_collection(app->db, cl, DB_LOGS);
    bson_error_t e;
    int rc = 0;
    for (int i = 0; i < CAMPAIGN_LOG_STATUS_COUNT && rc == 0; i++) {
        bson_t f = BSON_INITIALIZER;
        BSON_APPEND_OID(&f, "campaign_id", oid);
        BSON_APPEND_UTF8(&f, "status", campaign_log_status_name((campaign_log_status)i));
        rc = api_count(logs, &f, &counts[i], &e);
        bson_destroy(&f);
    }
    mongoc_collection_destroy(logs);
    if (rc != 0)
        api_db_fail(req, &e, "counting logs");
    return rc;
}

/* GET /api/campaigns/:id: the campaign and its "progress". By default the progress is the
 * campaign document's counters (lib/campaign: total/pending move with the fan-out's checkpoint,
 * sent/failed/-pending with the receipts worker's guarded $inc, cancelled with the cancel
 * recount), so a read costs one find by _id whatever the audience. Between a fan-out batch's
 * sends and its checkpoint, receipts of that batch may be counted before the batch's logs are:
 * "logs" is then at least sent + failed + cancelled (pending never below 0), and catches up
 * with the checkpoint. ?verify=1 counts the logs themselves instead (exact at that instant,
 * O(audience): slow on large campaigns). Same shape either way. */
static void h_get(api_ctx *app, http_request *req)
{
    bson_oid_t oid;
    if (api_parse_oid(req, "id", http_param(req, "id"), &oid) != 0)
        return;
    const char *verify = http_query(req, "verify");
    bool exact = verify && (!strcmp(verify, "1") || !strcmp(verify, "true"));
    mongoc_client_t *cl = dbpool_pop(app->db);
    json_t *camp = NULL;
    int64_t counts[CAMPAIGN_LOG_STATUS_COUNT] = {0};
    if (load_campaign(app, req, cl, &oid, &camp) == 1 &&
        (!exact || count_logs(app, req, cl, &oid, counts) == 0)) {
        if (!exact)
            for (int i = 0; i < CAMPAIGN_LOG_STATUS_COUNT; i++)
                counts[i] = jsonx_int(camp, COUNTER_OF[i], 0);
        int64_t pending = counts[CAMPAIGN_LOG_PENDING], sent = counts[CAMPAIGN_LOG_SENT],
                failed = counts[CAMPAIGN_LOG_FAILED], cancelled = counts[CAMPAIGN_LOG_CANCELLED];
        if (pending < 0)
            pending = 0;
        int64_t written = pending + sent + failed + cancelled;
        json_int_t audience = (json_int_t)jsonx_int(camp, "audience_size", 0);
        const char *status = jsonx_str(camp, "status", "");
        campaign_status cs;
        bool completed =
            campaign_status_parse(status, strlen(status), &cs) == 0 && cs == CAMPAIGN_COMPLETED;
        json_t *p =
            json_pack("{s:I,s:I,s:I,s:I,s:I,s:b}", "audience_size", audience, "logs",
                      (json_int_t)written, "pending", (json_int_t)pending, "sent", (json_int_t)sent,
                      "failed", (json_int_t)failed, "complete", completed && pending == 0);
        /* Only once a log was cancelled, so the shape of a campaign that never was stays as it
         * was. */
        if (cancelled)
            json_object_set_new(p, "cancelled", json_integer((json_int_t)cancelled));
        for (const char *const *f = PROGRESS_EXTRA; *f; f++)
            if (json_is_integer(json_object_get(camp, *f)))
                json_object_set(p, *f, json_object_get(camp, *f));
        json_object_set_new(camp, "progress", p);
        http_send_json(req, 200, camp);
    } else {
        json_decref(camp);
    }
    dbpool_push(app->db, cl);
}

static void h_logs(api_ctx *app, http_request *req)
{
    bson_oid_t oid, after_oid;
    long limit, page;
    long skip = 0;
    if (api_parse_oid(req, "id", http_param(req, "id"), &oid) != 0 ||
        api_paging(req, 100, &limit, &page) != 0)
        return;
    const char *after = http_query(req, "after");
    if (after ? api_parse_oid(req, "after", after, &after_oid) != 0
              : api_page_skip(req, page, limit, &skip) != 0)
        return;
    /* ?status= keeps the logs of one status (the dashboard's filter); empty means all. */
    const char *status = http_query(req, "status");
    campaign_log_status ls;
    if (status && *status && campaign_log_status_parse(status, strlen(status), &ls) != 0) {
        http_error(req, 400, "status: must be PENDING, SENT, FAILED or CANCELLED");
        return;
    }
    bson_t filter = BSON_INITIALIZER, sub;
    BSON_APPEND_OID(&filter, "campaign_id", &oid);
    if (after) {
        BSON_APPEND_DOCUMENT_BEGIN(&filter, "customer_id", &sub);
        BSON_APPEND_OID(&sub, "$gt", &after_oid);
        bson_append_document_end(&filter, &sub);
    }
    if (status && *status)
        BSON_APPEND_UTF8(&filter, "status", campaign_log_status_name(ls));
    /* index {campaign_id, customer_id}: the cursor is the last customer id */
    static const char *const by_customer[] = {"campaign_id", "customer_id", NULL};
    static const api_ref refs[] = {{"customer_id", DB_CUSTOMERS, API_CUSTOMER_REF_FIELDS},
                                   {NULL, NULL, NULL}};
    api_query q = {.coll = DB_LOGS,
                   .filter = &filter,
                   .sort = by_customer,
                   .limit = limit,
                   .skip = skip,
                   .refs = refs};
    /* Logs are written only for a stored campaign (the fan-out reads it first) and campaigns
     * are never deleted once queued: a page with logs answers for the campaign, and only an
     * empty page costs the look-up that tells 404 from []. */
    mongoc_client_t *cl = dbpool_pop(app->db);
    jsonx_buf b = {0};
    char cursor[API_CURSOR_MAX];
    bson_error_t e;
    int found = 1;
    if (api_query_text(app, cl, &q, &b, "customer_id", cursor, &e) != 0)
        found = api_db_fail(req, &e, "listing logs");
    else if (b.len == 2) { /* [] */
        json_t *camp = NULL;
        found = load_campaign(app, req, cl, &oid, &camp); /* 404 for an unknown campaign */
        json_decref(camp);
    }
    dbpool_push(app->db, cl);
    if (found == 1) {
        if (cursor[0])
            http_add_header(req, "X-Next-Cursor", cursor);
        http_send_owned(req, 200, "application/json; charset=utf-8", b.data, b.len);
        b.data = NULL; /* MHD's now */
    }
    jsonx_buf_free(&b);
    bson_destroy(&filter);
}

int routes_campaigns_register(router *r)
{
    if (router_add(r, HTTP_POST, "/api/campaigns", h_create, ROUTE_AUTH, AUTH_ROLE_STAFF) ||
        router_add(r, HTTP_POST, "/api/campaigns/preview", h_preview, ROUTE_AUTH,
                   AUTH_ROLE_STAFF) ||
        router_add(r, HTTP_POST, "/api/campaigns/suggest-tags", h_suggest_tags, ROUTE_AUTH,
                   AUTH_ROLE_STAFF) ||
        aiseam_register(r) ||
        router_add(r, HTTP_GET, "/api/campaigns", h_list, ROUTE_AUTH, AUTH_ROLE_STAFF) ||
        router_add(r, HTTP_GET, "/api/campaigns/:id", h_get, ROUTE_AUTH, AUTH_ROLE_STAFF) ||
        router_add(r, HTTP_GET, "/api/campaigns/:id/logs", h_logs, ROUTE_AUTH, AUTH_ROLE_STAFF))
        return -1;
    return 0;
}
