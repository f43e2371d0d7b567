/*
 * routes_delivery: the vendor send endpoint and the delivery-receipt webhook.
 *
 *   POST /api/vendor/send        {log_id, customer_id?, campaign_id?, message}
 *        -> 200 {"ok": true, "vendorMsgId": "...", "queued": true}; 400 without a valid log_id.
 *        Pushes one job onto the sends queue. The vendorMsgId is derived from the log id
 *        (HMAC with the vendor secret), so a repeated send names the same message, as the
 *        vendor simulator's per-log idempotency expects; it travels in the job (lib/jobs) and
 *        the vendor reports it, so it is the id the log ends with.
 *
 *   POST /api/receipts/delivery  one receipt {log_id, vendorMsgId, status, event_id?|id?}, an
 *        array of up to receipts.max_batch of them, or {"receipts": [...]} (the same array in an
 *        object). A receipt's status names what happened: SENT, FAILED, BOUNCED (the log moves),
 *        COMPLAINED, OPENED, CLICKED (events recorded on the log), PENDING (nothing). The event
 *        id is carried along; a repeated event is a no-op through the log-level guards (a log
 *        moves once, each event is recorded once per log), not through a store of ids.
 *        Order of checks (cheapest and safest first):
 *          1. X-Signature (401 missing/wrong): hex HMAC-SHA256 with VENDOR_SECRET over the raw
 *             body, or over `X-Timestamp "." body` when X-Timestamp is present; a timestamp more
 *             than receipts.max_skew_s away is rejected (401), and receipts.require_timestamp
 *             makes it mandatory. Compared in constant time, before any parsing.
 *          2. Content-Type and JSON (415 / 400), batch size (413 over max_batch, 400 empty).
 *          3. Each receipt validated (400 naming receipts[i].field). In a batch, an element whose
 *             status is a string naming no known event (a vendor's newer event type) does not
 *             sink the batch: it travels on in the job as it was posted, and the receipts
 *             worker dead-letters it with the reason; the answer counts it as "unknown". A
 *             batch of nothing but unknown events is a 400.
 *          4. A single receipt: its log is looked up by _id (indexed): 404 unknown; already
 *             final (for an event: the event already recorded) -> 200 {"ok": true,
 *             "updated": false} (a repeat is a no-op). Events for unknown logs in a batch are
 *             dead-lettered by the receipts worker, with the reason.
 *          5. All receipts with a final status (SENT/FAILED) are pushed onto the receipts queue
 *             (the priority receipts queue with ?lane=priority; the receipt events queue when
 *             the POST holds no delivery receipt (SENT, FAILED, BOUNCED) at all, only events:
 *             the receipts worker applies those after every delivery receipt ready, so events
 *             never delay a delivery) as ONE job ({"receipts":
 * [...]} for an array, the receipt itself for a single one; an optional campaign_id is passed on)
 * -> 202 {"ok": true, "accepted": N, "ignored": K}; a single receipt that will change its log ->
 * 202 {"ok": true, "updated": true, "queued": true, "accepted": 1}, so `updated` tells a first
 * receipt from a repeat. PENDING receipts are valid but change nothing (ignored). The receipts
 * worker applies the queued receipts (only PENDING -> SENT|FAILED, exactly once).
 */
#include "apiutil.h"
#include "hmac.h"
#include "campaign.h"
#include "jobs.h"
#include "jscan.h"
#include "jsonx.h"
#include "log.h"
#include "queue.h"
#include "ratelimit.h"
#include "routes.h"
#include "timeutil.h"
#include "unsub.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    char vid[CAMPAIGN_VMID_LEN + 1];
    campaign_vendor_msg_id(app->cfg->receipts.vendor_secret, log_id, vid);
    /* The id answered here travels in the send job: the vendor reports it for this log. */
    char uurl[UNSUB_URL_MAX + 1];
    const unsub_signer *us = unsub_signer_get(app->cfg);
    jobs_send send = {.log_id = log_id,
                      .campaign_id = campaign_id,
                      .customer_id = customer_id,
                      .message = message,
                      .vendor_msg_id = vid,
                      .unsubscribe_url =
                          us && unsub_url(us, log_id, uurl, sizeof uurl) > 0 ? uurl : NULL};
    jsonx_buf job = {0};
    if (jobs_send_encode(&job, &send) != 0) {
        jsonx_buf_free(&job);
        http_error(req, 503, "out of memory");
        return;
    }
    const char *jobs[1] = {job.data};
    size_t lens[1] = {job.len};
    if (api_enqueue(req, QUEUE_SENDS, jobs, lens, 1) == 0)
        http_send_json(req, 200,
                       json_pack("{s:b,s:s,s:b}", "ok", 1, "vendorMsgId", vid, "queued", 1));
    jsonx_buf_free(&job);
}

/* ------------------------------------------------------------------------------------------ */
/* POST /api/receipts/delivery                                                                */
/* ------------------------------------------------------------------------------------------ */

/* Step 1. Returns 0 if the signature is good (want = the expected signature, lower-case hex,
 * the batch's replay token), else answers 401 and returns -1. */
static int verify_signature(api_ctx *app, http_request *req, char want[HMAC_HEX_LEN + 1])
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

/* Scan flags of the receipts body: the counterparts of the jansson flags every other route
 * parses with (http_json_body), so the answers are the same: a repeated key is a 400, a scalar
 * body gets "must be a receipt object", "\u0000" reaches the field checks. */
#define RECEIPTS_SCAN_FLAGS (JSCAN_REJECT_DUPLICATES | JSCAN_ALLOW_NUL | JSCAN_DECODE_ANY)

/* A member of receipt object o that must be a 24-hex id when present; absent/null -> out "".
 * 0 or -1 (answered 400). */
static int receipt_id(http_request *req, const jscan *js, int o, const char *key, bool required,
                      const char *pfx, char out[25])
{
    int t = jscan_get(js, o, key);
    out[0] = '\0';
    if (!required && (t < 0 || js->t[t].type == JSCAN_NULL))
        return 0;
    if (t < 0 || jscan_str_copy(js, t, out, 25) != 24 || !oid_is_valid_hex(out)) {
        out[0] = '\0';
        http_error(req, 400, "%s%s must be a 24-hex id", pfx, key);
        return -1;
    }
    return 0;
}

/* Step 3 for element token o number i (or the single object when i < 0) into out. 0 or -1
 * (answered 400). In a batch, a status naming no known event sets *unknown (the element is
 * passed on raw, for its dead letter) and returns 0. */
static int validate_receipt(http_request *req, const jscan *js, int o, long i, jobs_receipt *out,
                            bool *unknown)
{
    *unknown = false;
    char pfx[32] = "";
    if (js->t[o].type != JSCAN_OBJECT) {
        if (i >= 0)
            http_error(req, 400, "receipts[%ld] must be an object", i);
        else
            http_error(req, 400, "body must be a receipt object or an array of them");
        return -1;
    }
    if (i >= 0)
        snprintf(pfx, sizeof pfx, "receipts[%ld].", i);
    if (receipt_id(req, js, o, "log_id", true, pfx, out->log_id) != 0)
        return -1;
    char st[16];
    int t = jscan_get(js, o, "status");
    size_t n = t >= 0 ? jscan_str_copy(js, t, st, sizeof st) : (size_t)-1;
    if (n != (size_t)-1 && jobs_receipt_status_parse(st, n, &out->status, &out->kind) != 0 &&
        i >= 0) {
        *unknown = true; /* the receipts worker dead-letters it, with the reason */
        return 0;
    }
    if (n == (size_t)-1 || jobs_receipt_status_parse(st, n, &out->status, &out->kind) != 0) {
        http_error(req, 400,
                   "%sstatus must be one of PENDING, SENT, FAILED, BOUNCED, COMPLAINED, OPENED, "
                   "CLICKED",
                   pfx);
        return -1;
    }
    out->event_id[0] = '\0';
    const char *ek = "event_id";
    t = jscan_get(js, o, ek);
    if (t < 0)
        t = jscan_get(js, o, ek = "id");
    if (t >= 0 && js->t[t].type != JSCAN_NULL) {
        n = jscan_str_copy(js, t, out->event_id, sizeof out->event_id);
        if (n == (size_t)-1 || n == 0 || memchr(out->event_id, '\0', n)) {
            out->event_id[0] = '\0';
            http_error(req, 400, "%s%s must be a string of 1-%d characters (no NUL)", pfx, ek,
                       JOBS_RECEIPT_EVENT_ID_MAX);
            return -1;
        }
    }
    out->vendor_msg_id[0] = '\0';
    t = jscan_get(js, o, "vendorMsgId");
    if (t >= 0 && js->t[t].type != JSCAN_NULL) {
        /* (A NUL inside, "\u0000", would not survive the trip through the receipts queue
         * and MongoDB's C strings: refused like a wrong length.) */
        n = jscan_str_copy(js, t, out->vendor_msg_id, sizeof out->vendor_msg_id);
        if (n == (size_t)-1 || n == 0 || memchr(out->vendor_msg_id, '\0', n)) {
            out->vendor_msg_id[0] = '\0';
            http_error(req, 400, "%svendorMsgId must be a string of 1-%d characters (no NUL)", pfx,
                       JOBS_VENDOR_MSG_ID_MAX);
            return -1;
        }
    }
    if (receipt_id(req, js, o, "campaign_id", false, pfx, out->campaign_id) != 0)
        return -1;
    out->reason[0] = '\0';
    return 0;
}

/* Step 4: what receipt r would do to its log: 1 something (the log is PENDING, or the event is
 * not recorded yet), 0 nothing (final already / event recorded), 2 unknown log, -1 error
 * (answered). */
static int log_state(api_ctx *app, http_request *req, const jobs_receipt *r)
{
    const char *hex = r->log_id;
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
    if (r->kind != JOBS_RCPT_DELIVERY && r->kind != JOBS_RCPT_BOUNCED) {
        campaign_log_event ev = r->kind == JOBS_RCPT_OPENED    ? CAMPAIGN_LOG_EV_OPENED
                                : r->kind == JOBS_RCPT_CLICKED ? CAMPAIGN_LOG_EV_CLICKED
                                                               : CAMPAIGN_LOG_EV_COMPLAINED;
        rc = json_object_get(doc, campaign_log_event_field(ev)) ? 0 : 1;
        json_decref(doc);
        return rc;
    }
    json_t *st = json_object_get(doc, "status");
    campaign_log_status ls;
    rc = json_is_string(st) &&
                 campaign_log_status_parse(json_string_value(st), json_string_length(st), &ls) ==
                     0 &&
                 campaign_log_status_final(ls)
             ? 0
             : 1;
    json_decref(doc);
    return rc;
}

typedef struct job_list {
    char **s;
    size_t *len;
    size_t n, cap;
} job_list;

/* Move the finished batch job of b (or the single receipt in one) into l. 0, or -1 after
 * answering 503. */
static int close_job(http_request *req, job_list *l, jobs_receipt_batch *b, jsonx_buf *one)
{
    if (l->n == l->cap) {
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
    int rc = l->n == l->cap ? -1 : 0;
    if (rc == 0 && one) {
        rc = jsonx_buf_ok(one) ? 0 : -1;
        if (rc == 0) {
            l->s[l->n] = one->data;
            l->len[l->n++] = one->len;
            *one = (jsonx_buf){0};
        }
    } else if (rc == 0) {
        rc = jobs_receipt_batch_take(b, &l->s[l->n], &l->len[l->n]) == 0 ? 0 : -1;
        if (rc == 0)
            l->n++;
    }
    if (rc != 0)
        http_error(req, 503, "out of memory");
    return rc;
}

static void h_receipts(api_ctx *app, http_request *req)
{
    /* Its own limit, apart from the user-facing api.rate_limit_per_min (which exempts this
     * route): checked before the HMAC so a flood costs no hashing. */
    int retry_after;
    char peer[64], sig[HMAC_HEX_LEN + 1];
    if (app->receipts_ratelimit &&
        !ratelimit_allow(app->receipts_ratelimit, http_peer(req, peer, sizeof peer), time_now_ms(),
                         &retry_after)) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", retry_after);
        http_add_header(req, "Retry-After", ra);
        http_error(req, 429, "rate limit exceeded: at most %d receipt posts per minute per client",
                   app->cfg->receipts.rate_limit_per_min);
        return;
    }
    if (verify_signature(app, req, sig) != 0)
        return;
    /* One parser: lib/jscan with jansson's rules (RECEIPTS_SCAN_FLAGS), no tree per receipt. */
    if (http_require_json(req) != 0)
        return;
    jscan js = {0};
    if (jscan_parse_opts(&js, req->body, req->body_len, RECEIPTS_SCAN_FLAGS) != 0) {
        http_error(req, 400, "malformed JSON: %s", js.err);
        jscan_release(&js);
        return;
    }
    /* An array, or {"receipts": [...]}, is a batch; any other object is one receipt. */
    int top = 0;
    if (js.t[0].type == JSCAN_OBJECT) {
        int rt = jscan_get(&js, 0, "receipts");
        if (rt >= 0 && js.t[rt].type == JSCAN_ARRAY)
            top = rt;
    }
    bool batch = js.t[top].type == JSCAN_ARRAY;
    size_t n = batch ? js.t[top].count : 1;
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
    jobs_receipt *rs = calloc(n, sizeof *rs);
    int *etok = calloc(n, sizeof *etok); /* each element's token (an unknown one goes raw) */
    bool *unk = calloc(n, sizeof *unk);
    jobs_receipt_batch job = {0};
    jsonx_buf one = {0};
    job_list jobs = {0};
    size_t accepted = 0, ignored = 0, unknown = 0, deliveries = 0;
    if (!rs || !etok || !unk) {
        http_error(req, 503, "out of memory");
        goto out;
    }
    int tok = batch ? jscan_child(&js, top) : 0;
    for (size_t i = 0; i < n; i++, tok = (int)js.t[tok].next) {
        etok[i] = tok;
        if (validate_receipt(req, &js, tok, batch ? (long)i : -1, &rs[i], &unk[i]) != 0)
            goto out;
        unknown += unk[i];
    }
    if (unknown == n) {
        http_error(req, 400,
                   "receipts: no element names a known event (status must be one of PENDING, "
                   "SENT, FAILED, BOUNCED, COMPLAINED, OPENED, CLICKED)");
        goto out;
    }
    if (!batch) {
        int st = log_state(app, req, &rs[0]);
        if (st < 0)
            goto out;
        if (st == 2) {
            http_error(req, 404, "log not found: %s", rs[0].log_id);
            goto out;
        }
        if (st == 0 || (rs[0].kind == JOBS_RCPT_DELIVERY && rs[0].status == CAMPAIGN_LOG_PENDING)) {
            http_send_json(req, 200, json_pack("{s:b,s:b}", "ok", 1, "updated", 0));
            goto out;
        }
    }
    /* One job for the whole request (lib/jobs): a single receipt as itself, an array as
     * {"receipts": [...]} (the receipts worker applies it as one bulk update), cut into a few
     * jobs only when it would pass JOBS_RECEIPTS_PER_JOB receipts or JOBS_RECEIPT_JOB_BYTES. */
    int64_t at = time_now_ms();
    for (size_t i = 0; i < n; i++) {
        if (unk[i]) {
            const jscan_tok *et = &js.t[etok[i]];
            int r = jobs_receipt_batch_add_raw(&job, req->body + et->start, et->len);
            if (r != 0 && close_job(req, &jobs, &job, NULL) != 0)
                goto out;
            continue;
        }
        if (rs[i].kind == JOBS_RCPT_DELIVERY && rs[i].status == CAMPAIGN_LOG_PENDING) {
            ignored++;
            continue;
        }
        rs[i].at = at;
        accepted++;
        deliveries += rs[i].kind == JOBS_RCPT_DELIVERY || rs[i].kind == JOBS_RCPT_BOUNCED;
        if (!batch) {
            jobs_receipt_encode(&one, &rs[i]);
            if (close_job(req, &jobs, NULL, &one) != 0)
                goto out;
            continue;
        }
        int r = jobs_receipt_batch_add(&job, &rs[i]);
        if (r != 0 && close_job(req, &jobs, &job, NULL) != 0) /* full (or out of memory) */
            goto out;
    }
    if (job.n && close_job(req, &jobs, &job, NULL) != 0)
        goto out;
    /* A signed batch is accepted once: its signature is its token on the receipts queue for
     * as long as its timestamp could pass the skew check (queue_push_once sets the token and
     * pushes in one script, so a crash in between loses nothing and lets no replay through).
     * A repeat is answered 200 "duplicate" with nothing queued: the vendor's own retry of a
     * post whose answer it lost stops there, and a replay changes nothing.
     * ?lane=priority: the receipts of one-off messages (POST /api/messages), which the vendor
     * posts apart, take the priority receipts queue, drained first; a POST of events only
     * takes the receipt events queue, drained last. */
    const char *lane = http_query(req, "lane");
    bool prio = lane && !strcmp(lane, "priority");
    const char *qname = deliveries == 0 ? QUEUE_RECEIPT_EVENTS
                        : prio          ? QUEUE_PRIORITY_RECEIPTS
                                        : QUEUE_RECEIPTS;
    if (jobs.n > 0) {
        int pushed = api_enqueue_once(req, qname, sig, 2 * app->cfg->receipts.max_skew_s + 1,
                                      (const char *const *)jobs.s, jobs.len, jobs.n);
        if (pushed < 0)
            goto out;
        if (pushed == 0) {
            http_send_json(
                req, 200,
                json_pack("{s:b,s:b,s:I}", "ok", 1, "duplicate", 1, "accepted", (json_int_t)0));
            goto out;
        }
    }
    if (batch && unknown)
        http_send_json(req, 202,
                       json_pack("{s:b,s:I,s:I,s:I}", "ok", 1, "accepted", (json_int_t)accepted,
                                 "ignored", (json_int_t)ignored, "unknown", (json_int_t)unknown));
    else if (batch)
        http_send_json(req, 202,
                       json_pack("{s:b,s:I,s:I}", "ok", 1, "accepted", (json_int_t)accepted,
                                 "ignored", (json_int_t)ignored));
    else
        http_send_json(req, 202,
                       json_pack("{s:b,s:b,s:b,s:I}", "ok", 1, "updated", 1, "queued", 1,
                                 "accepted", (json_int_t)accepted));
out:
    jscan_release(&js);
    jobs_receipt_batch_release(&job);
    jsonx_buf_free(&one);
    for (size_t i = 0; i < jobs.n; i++)
        free(jobs.s[i]);
    free(jobs.s);
    free(jobs.len);
    free(rs);
    free(etok);
    free(unk);
}

int routes_delivery_register(router *r)
{
    if (router_add(r, HTTP_POST, "/api/vendor/send", h_vendor_send, ROUTE_AUTH, AUTH_ROLE_STAFF) ||
        router_add(r, HTTP_POST, "/api/receipts/delivery", h_receipts, ROUTE_PUBLIC,
                   AUTH_ROLE_NONE))
        return -1;
    return 0;
}
