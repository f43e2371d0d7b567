/*
 * routes_delivery: the vendor send endpoint and the delivery-receipt webhook.
 *
 *   POST /api/vendor/send        {log_id, customer_id?, campaign_id?, message}
 *        -> 200 {"ok": true, "vendorMsgId": "...", "queued": true}; 400 without a valid log_id.
 *        Pushes one job onto the sends queue. The vendorMsgId is derived from the log id
 *        (HMAC with the vendor secret), so a repeated send names the same message, as the
 *        vendor simulator's per-log idempotency expects; it travels in the job.
 *
 *   POST /api/receipts/delivery  one receipt {log_id, vendorMsgId, status} or an array of up to
 *        receipts.max_batch of them. Order of checks (cheapest and safest first):
 *          1. X-Signature (401 missing/wrong): hex HMAC-SHA256 with VENDOR_SECRET over the raw
 *             body, or over `X-Timestamp "." body` when X-Timestamp is present; a timestamp more
 *             than receipts.max_skew_s away is rejected (401), and receipts.require_timestamp
 *             makes it mandatory. Compared in constant time, before any parsing.
 *          2. Content-Type and JSON (415 / 400), batch size (413 over max_batch, 400 empty).
 *          3. Each receipt validated (400 naming receipts[i].field).
 *          4. A single receipt: its log is looked up by _id (indexed): 404 unknown; already
 *             final -> 200 {"ok": true, "updated": false} (a repeat is a no-op).
 *          5. All receipts with a final status (SENT/FAILED) are pushed onto the receipts queue
 *             as ONE job ({"receipts": [...]} for an array, the receipt itself for a single
 *             one; an optional campaign_id is passed on) -> 202 {"ok": true, "accepted": N,
 * "ignored": K}; a single receipt that will change its log -> 202 {"ok": true, "updated": true,
 *             "queued": true, "accepted": 1}, so `updated` tells a first receipt from a repeat.
 *             PENDING receipts are valid but change nothing (ignored). The receipts worker
 *             applies the queued receipts (only PENDING -> SENT|FAILED, exactly once).
 */
#include "apiutil.h"
#include "hmac.h"
#include "jscan.h"
#include "jsonx.h"
#include "log.h"
#include "queue.h"
#include "routes.h"
#include "timeutil.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VENDOR_MSG_ID_MAX 128

/* ------------------------------------------------------------------------------------------ */
/* POST /api/vendor/send                                                                      */
/* ------------------------------------------------------------------------------------------ */

static void h_vendor_send(api_ctx *app, http_request *req)
{
    json_t *body = api_body_object(req, NULL);
    if (!body)
        return;
    const char *log_id, *customer_id, *campaign_id, *message;
    bson_oid_t oid;
    if (api_field_str(req, body, "log_id", true, 24, &log_id) ||
        api_parse_oid(req, "log_id", log_id, &oid) ||
        api_field_str(req, body, "customer_id", false, 24, &customer_id) ||
        (customer_id && api_parse_oid(req, "customer_id", customer_id, &oid)) ||
        api_field_str(req, body, "campaign_id", false, 24, &campaign_id) ||
        (campaign_id && api_parse_oid(req, "campaign_id", campaign_id, &oid)) ||
        api_field_str(req, body, "message", false, 8192, &message))
        return;
    char mac[HMAC_HEX_LEN + 1], vid[40];
    const char *secret = app->cfg->receipts.vendor_secret;
    hmac_sha256_hex(secret, strlen(secret), log_id, strlen(log_id), mac);
    snprintf(vid, sizeof vid, "msg_%.24s", mac);
    json_t *job = json_pack("{s:s,s:s,s:s}", "log_id", log_id, "message", message ? message : "",
                            "vendorMsgId", vid);
    if (customer_id)
        json_object_set_new(job, "customer_id", json_string(customer_id));
    if (campaign_id)
        json_object_set_new(job, "campaign_id", json_string(campaign_id));
    char *s = jsonx_dumps(job);
    json_decref(job);
    if (!s) {
        http_error(req, 503, "out of memory");
        return;
    }
    const char *jobs[1] = {s};
    size_t lens[1] = {strlen(s)};
    if (api_enqueue(req, QUEUE_SENDS, jobs, lens, 1) == 0)
        http_send_json(req, 200,
                       json_pack("{s:b,s:s,s:b}", "ok", 1, "vendorMsgId", vid, "queued", 1));
    free(s);
}

/* ------------------------------------------------------------------------------------------ */
/* POST /api/receipts/delivery                                                                */
/* ------------------------------------------------------------------------------------------ */

/* Step 1. Returns 0 if the signature is good, else answers 401 and returns -1. */
static int verify_signature(api_ctx *app, http_request *req)
{
    const char *sig = http_header(req, "X-Signature");
    const char *ts = http_header(req, "X-Timestamp");
    if (!sig || !*sig) {
        http_error(req, 401, "missing X-Signature");
        return -1;
    }
    if (strncmp(sig, "sha256=", 7) == 0)
        sig += 7;
    if (ts && !*ts)
        ts = NULL;
    if (!ts && app->cfg->receipts.require_timestamp) {
        http_error(req, 401, "missing X-Timestamp (required)");
        return -1;
    }
    if (ts) {
        size_t n = strlen(ts);
        bool digits = n > 0 && n <= 12;
        for (size_t i = 0; digits && i < n; i++)
            digits = isdigit((unsigned char)ts[i]) != 0;
        if (!digits) {
            http_error(req, 401, "X-Timestamp must be Unix seconds");
            return -1;
        }
        long long t = strtoll(ts, NULL, 10);
        long long now = time_now_ms() / 1000;
        long long skew = t > now ? t - now : now - t;
        if (skew > app->cfg->receipts.max_skew_s) {
            http_error(req, 401, "X-Timestamp is %lld s away from server time (max %d)", skew,
                       app->cfg->receipts.max_skew_s);
            return -1;
        }
    }
    char want[HMAC_HEX_LEN + 1];
    if (hmac_sign_receipt(app->cfg->receipts.vendor_secret, ts, req->body, req->body_len, want) !=
        0) {
        http_error(req, 503, "cannot compute signature");
        return -1;
    }
    if (!hmac_equal_hex(want, sig)) {
        http_error(req, 401, "bad signature");
        return -1;
    }
    return 0;
}

/* A validated receipt (copies: the body's JSON may be jansson's tree or jscan's tokens). */
typedef struct receipt {
    char log_id[25];
    char status[8];
    char vmid[VENDOR_MSG_ID_MAX + 1]; /* valid UTF-8 without NUL */
    size_t vmid_len;
    bool has_vmid;
    char campaign_id[25]; /* optional: the vendor echoes the send's campaign */
    bool has_cid;
} receipt;

/* One member of a receipt as found in the body, from either parser. */
enum { F_ABSENT, F_NULL, F_STRING, F_OTHER };
typedef struct rfield {
    int kind;
    const char *s; /* F_STRING: the value (NULL if it was too long to hold) */
    size_t len;    /* F_STRING: bytes */
} rfield;
typedef struct rview {
    bool is_object;
    rfield log_id, status, vmid, campaign;
} rview;

static rfield field_json(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return (rfield){F_ABSENT, NULL, 0};
    if (json_is_null(v))
        return (rfield){F_NULL, NULL, 0};
    if (!json_is_string(v))
        return (rfield){F_OTHER, NULL, 0};
    return (rfield){F_STRING, json_string_value(v), json_string_length(v)};
}

static rview view_json(json_t *o)
{
    rview v = {.is_object = json_is_object(o)};
    if (v.is_object) {
        v.log_id = field_json(o, "log_id");
        v.status = field_json(o, "status");
        v.vmid = field_json(o, "vendorMsgId");
        v.campaign = field_json(o, "campaign_id");
    }
    return v;
}

/* For jscan: the unescaped value goes into buf (cap bytes); too long -> s NULL, len cap. */
static rfield field_scan(const jscan *js, int o, const char *key, char *buf, size_t cap)
{
    int t = jscan_get(js, o, key);
    if (t < 0)
        return (rfield){F_ABSENT, NULL, 0};
    if (js->t[t].type == JSCAN_NULL)
        return (rfield){F_NULL, NULL, 0};
    if (js->t[t].type != JSCAN_STRING)
        return (rfield){F_OTHER, NULL, 0};
    size_t n = jscan_str_copy(js, t, buf, cap);
    return n == (size_t)-1 ? (rfield){F_STRING, NULL, cap} : (rfield){F_STRING, buf, n};
}

/* Scratch space for one receipt scanned by jscan. */
typedef struct rscratch {
    char log_id[32], status[16], vmid[VENDOR_MSG_ID_MAX + 2], campaign[32];
} rscratch;

static rview view_scan(const jscan *js, int o, rscratch *sc)
{
    rview v = {.is_object = js->t[o].type == JSCAN_OBJECT};
    if (v.is_object) {
        v.log_id = field_scan(js, o, "log_id", sc->log_id, sizeof sc->log_id);
        v.status = field_scan(js, o, "status", sc->status, sizeof sc->status);
        v.vmid = field_scan(js, o, "vendorMsgId", sc->vmid, sizeof sc->vmid);
        v.campaign = field_scan(js, o, "campaign_id", sc->campaign, sizeof sc->campaign);
    }
    return v;
}

static bool is_hex_id(const rfield *f)
{
    return f->kind == F_STRING && f->s && f->len == 24 && oid_is_valid_hex(f->s);
}

/* Step 3 for element i (or the single object when i < 0). 0 or -1 (answered 400). */
static int validate_receipt(http_request *req, const rview *v, long i, receipt *out)
{
    char pfx[32] = "";
    if (!v->is_object) {
        if (i >= 0)
            http_error(req, 400, "receipts[%ld] must be an object", i);
        else
            http_error(req, 400, "body must be a receipt object or an array of them");
        return -1;
    }
    if (i >= 0)
        snprintf(pfx, sizeof pfx, "receipts[%ld].", i);
    if (!is_hex_id(&v->log_id)) {
        http_error(req, 400, "%slog_id must be a 24-hex id", pfx);
        return -1;
    }
    memcpy(out->log_id, v->log_id.s, 25);
    const rfield *st = &v->status;
    bool st_ok = st->kind == F_STRING && st->s &&
                 ((st->len == 7 && !memcmp(st->s, "PENDING", 7)) ||
                  (st->len == 4 && !memcmp(st->s, "SENT", 4)) ||
                  (st->len == 6 && !memcmp(st->s, "FAILED", 6)));
    if (!st_ok) {
        http_error(req, 400, "%sstatus must be one of PENDING, SENT, FAILED", pfx);
        return -1;
    }
    memcpy(out->status, st->s, st->len);
    out->status[st->len] = '\0';
    out->has_vmid = false;
    if (v->vmid.kind != F_ABSENT && v->vmid.kind != F_NULL) {
        /* (A NUL inside, "\u0000", would not survive the trip through the receipts queue
         * and MongoDB's C strings: refused like a wrong length.) */
        if (v->vmid.kind != F_STRING || !v->vmid.s || v->vmid.len == 0 ||
            v->vmid.len > VENDOR_MSG_ID_MAX || memchr(v->vmid.s, '\0', v->vmid.len)) {
            http_error(req, 400, "%svendorMsgId must be a string of 1-%d characters (no NUL)", pfx,
                       VENDOR_MSG_ID_MAX);
            return -1;
        }
        memcpy(out->vmid, v->vmid.s, v->vmid.len);
        out->vmid_len = v->vmid.len;
        out->has_vmid = true;
    }
    out->has_cid = false;
    if (v->campaign.kind != F_ABSENT && v->campaign.kind != F_NULL) {
        if (!is_hex_id(&v->campaign)) {
            http_error(req, 400, "%scampaign_id must be a 24-hex id", pfx);
            return -1;
        }
        memcpy(out->campaign_id, v->campaign.s, 25);
        out->has_cid = true;
    }
    return 0;
}

/* Does any object of the scanned document repeat a key? (The API parses bodies with jansson's
 * JSON_REJECT_DUPLICATES: such a body takes the jansson path and gets its error.) Keys with
 * escapes are not compared here: the document then takes the jansson path too. */
static bool scan_needs_jansson(const jscan *js)
{
    for (size_t i = 0; i < js->n; i++) {
        const jscan_tok *o = &js->t[i];
        if (o->type != JSCAN_OBJECT || o->count < 2)
            continue;
        int k = jscan_child(js, (int)i);
        for (uint32_t a = 0; a < o->count; a++, k = (int)js->t[k + 1].next) {
            const jscan_tok *ka = &js->t[k];
            if (ka->escaped)
                return true;
            int k2 = (int)js->t[k + 1].next;
            for (uint32_t b = a + 1; b < o->count; b++, k2 = (int)js->t[k2 + 1].next) {
                const jscan_tok *kb = &js->t[k2];
                if (kb->len == ka->len &&
                    !memcmp(js->buf + ka->start, js->buf + kb->start, ka->len))
                    return true;
            }
        }
    }
    return false;
}

/* Step 4: status of log `hex`: 1 pending, 0 final, 2 unknown, -1 error (answered). */
static int log_state(api_ctx *app, http_request *req, const char *hex)
{
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, hex);
    mongoc_client_t *cl = dbpool_pop(app->db);
    json_t *doc;
    bson_error_t e;
    int rc = api_find_by_id(app, cl, DB_LOGS, &oid, &doc, &e);
    dbpool_push(app->db, cl);
    if (rc < 0)
        return api_db_fail(req, &e, "looking up the log");
    if (rc == 0)
        return 2;
    const char *st = json_string_value(json_object_get(doc, "status"));
    rc = st && strcmp(st, "PENDING") != 0 ? 0 : 1;
    json_decref(doc);
    return rc;
}

/* Append the queued receipt {"log_id","status","at","vendorMsgId"[,"campaign_id"]} to out
 * (what json_pack + the compact dump produced, without building a JSON tree per receipt). */
static void receipt_job(jsonx_buf *out, const receipt *r, int64_t at)
{
    char head[160];
    snprintf(head, sizeof head,
             "{\"log_id\":\"%s\",\"status\":\"%s\",\"at\":%lld,\"vendorMsgId\":", r->log_id,
             r->status, (long long)at);
    jsonx_buf_cat(out, head);
    if (r->has_vmid)
        jsonx_buf_str(out, r->vmid, r->vmid_len);
    else
        jsonx_buf_cat(out, "null");
    if (r->has_cid) {
        jsonx_buf_cat(out, ",\"campaign_id\":\"");
        jsonx_buf_cat(out, r->campaign_id);
        jsonx_buf_cat(out, "\"");
    }
    jsonx_buf_raw(out, "}", 1);
}

/* Limits of one queued receipts job (well under QUEUE_MAX_JOB_BYTES). */
#define RECEIPTS_JOB_ITEMS 1000
#define RECEIPTS_JOB_BYTES (512 * 1024)

typedef struct job_list {
    char **s;
    size_t *len;
    size_t n, cap;
} job_list;

/* Move the finished job text of b into l (b is emptied). 0, or -1 after answering 503. */
static int close_job(http_request *req, job_list *l, jsonx_buf *b)
{
    if (jsonx_buf_ok(b) && l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 4;
        char **s = realloc(l->s, cap * sizeof *s);
        size_t *len = s ? realloc(l->len, cap * sizeof *len) : NULL;
        if (s)
            l->s = s;
        if (len) {
            l->len = len;
            l->cap = cap;
        }
    }
    if (!jsonx_buf_ok(b) || l->n == l->cap) {
        http_error(req, 503, "out of memory");
        return -1;
    }
    l->s[l->n] = b->data;
    l->len[l->n++] = b->len;
    *b = (jsonx_buf){0};
    return 0;
}

static void h_receipts(api_ctx *app, http_request *req)
{
    if (verify_signature(app, req) != 0)
        return;
    /* The body is scanned with lib/jscan (no tree per receipt). Anything jscan does not take
     * as is (invalid JSON, "\u0000", a repeated key, a bare scalar) goes through jansson, the
     * API's parser everywhere else, so the answer is the same as on every other route. */
    if (http_require_json(req) != 0)
        return;
    jscan js = {0};
    json_t *body = NULL;
    bool scanned = jscan_parse(&js, req->body, req->body_len) == 0 && !scan_needs_jansson(&js);
    if (!scanned) {
        jscan_release(&js);
        if (!(body = http_json_body(req)))
            return;
    }
    bool batch = scanned ? js.t[0].type == JSCAN_ARRAY : json_is_array(body);
    size_t n = batch ? (scanned ? js.t[0].count : json_array_size(body)) : 1;
    if (batch && n == 0) {
        http_error(req, 400, "receipts: empty array");
        jscan_release(&js);
        return;
    }
    if (n > (size_t)app->cfg->receipts.max_batch) {
        http_error(req, 413, "receipts: batch of %zu exceeds receipts.max_batch (%d)", n,
                   app->cfg->receipts.max_batch);
        jscan_release(&js);
        return;
    }
    receipt *rs = calloc(n, sizeof *rs);
    jsonx_buf job = {0};
    job_list jobs = {0};
    size_t accepted = 0, ignored = 0;
    if (!rs) {
        http_error(req, 503, "out of memory");
        goto out;
    }
    int tok = batch && scanned ? jscan_child(&js, 0) : 0;
    for (size_t i = 0; i < n; i++) {
        rscratch sc;
        rview v =
            scanned ? view_scan(&js, tok, &sc) : view_json(batch ? json_array_get(body, i) : body);
        if (validate_receipt(req, &v, batch ? (long)i : -1, &rs[i]) != 0)
            goto out;
        if (scanned && batch)
            tok = (int)js.t[tok].next;
    }
    if (!batch) {
        int st = log_state(app, req, rs[0].log_id);
        if (st < 0)
            goto out;
        if (st == 2) {
            http_error(req, 404, "log not found: %s", rs[0].log_id);
            goto out;
        }
        if (st == 0 || strcmp(rs[0].status, "PENDING") == 0) {
            http_send_json(req, 200, json_pack("{s:b,s:b}", "ok", 1, "updated", 0));
            goto out;
        }
    }
    /* One job for the whole request: a single receipt as itself, an array as
     * {"receipts": [...]} (the receipts worker applies it as one bulk update), cut into a few
     * jobs only when it would pass RECEIPTS_JOB_ITEMS receipts or RECEIPTS_JOB_BYTES. */
    int64_t at = time_now_ms();
    size_t in_job = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rs[i].status, "PENDING") == 0) {
            ignored++;
            continue;
        }
        if (batch && in_job == 0)
            jsonx_buf_cat(&job, "{\"receipts\":[");
        else if (in_job)
            jsonx_buf_raw(&job, ",", 1);
        receipt_job(&job, &rs[i], at);
        accepted++;
        in_job++;
        if (batch && (in_job == RECEIPTS_JOB_ITEMS || job.len >= RECEIPTS_JOB_BYTES)) {
            jsonx_buf_cat(&job, "]}");
            if (close_job(req, &jobs, &job) != 0)
                goto out;
            in_job = 0;
        }
    }
    if (in_job) {
        if (batch)
            jsonx_buf_cat(&job, "]}");
        if (close_job(req, &jobs, &job) != 0)
            goto out;
    }
    if (jobs.n > 0 &&
        api_enqueue(req, QUEUE_RECEIPTS, (const char *const *)jobs.s, jobs.len, jobs.n) != 0)
        goto out;
    if (batch)
        http_send_json(req, 202,
                       json_pack("{s:b,s:I,s:I}", "ok", 1, "accepted", (json_int_t)accepted,
                                 "ignored", (json_int_t)ignored));
    else
        http_send_json(req, 202,
                       json_pack("{s:b,s:b,s:b,s:I}", "ok", 1, "updated", 1, "queued", 1,
                                 "accepted", (json_int_t)accepted));
out:
    jscan_release(&js);
    jsonx_buf_free(&job);
    for (size_t i = 0; i < jobs.n; i++)
        free(jobs.s[i]);
    free(jobs.s);
    free(jobs.len);
    free(rs);
}

int routes_delivery_register(router *r)
{
    if (router_add(r, HTTP_POST, "/api/vendor/send", h_vendor_send, ROUTE_AUTH, AUTH_ROLE_STAFF) ||
        router_add(r, HTTP_POST, "/api/receipts/delivery", h_receipts, ROUTE_PUBLIC,
                   AUTH_ROLE_NONE))
        return -1;
    return 0;
}
