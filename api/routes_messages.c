/*
 * routes_messages: one-off (transactional) messages through the priority lane.
 *
 *   POST /api/messages  (staff)  {customer_id, message} or {email, message}
 *        -> 202 {"ok": true, "log_id", "customer_id", "vendorMsgId", "status": "PENDING",
 *           "queued": true}; 400 naming the field (neither or both of customer_id and email,
 *           no message); 404 no such customer; 409 {"error": "EMAIL is suppressed (REASON)"}
 *           when the customer's address is on the suppression list (lib/suppress). Idempotency-Key
 * as POST /api/campaigns (api/idempotency: the first answer is replayed, nothing is sent twice).
 *        Writes the log (lib/campaign: campaign_id null, kind "transactional", PENDING, a fresh
 *        _id) and pushes ONE send job (lib/jobs) onto the priority queue (QUEUE_PRIORITY),
 *        which every sends consumer drains before the bulk sends of campaigns (lib/consumer),
 *        so the message goes out while a million-recipient campaign is draining. The
 *        vendorMsgId answered travels in the job (campaign_vendor_msg_id, as /api/vendor/send)
 *        and is the one the log ends with; the receipt comes back through the receipts worker
 *        like any other and counts in no campaign.
 *        If the job cannot be pushed, the log is removed again and the answer is 503 (a retry
 *        starts over). A crash between the two leaves a PENDING log that the receipts
 *        worker's sweeper sends after receipts.vendor_timeout_s (through the bulk queue).
 */
#include "apiutil.h"
#include "campaign.h"
#include "idempotency.h"
#include "jobs.h"
#include "jsonx.h"
#include "log.h"
#include "queue.h"
#include "routes.h"
#include "suppress.h"
#include "timeutil.h"
#include "unsub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MESSAGE_MAX_LEN 8192

/* The customer's _id (and stored e-mail into addr) by customer_id or e-mail (stored
 * lower-cased). 1 found, 0 not, -1 error. */
static int find_customer(mongoc_collection_t *custs, const char *customer_id, const char *email,
                         bson_oid_t *out, char addr[SUPPRESS_EMAIL_MAX + 1], bson_error_t *e)
{
    bson_t *f;
    char lower[256];
    if (customer_id) {
        bson_oid_init_from_string(out, customer_id);
        f = BCON_NEW("_id", BCON_OID(out));
    } else {
        f = BCON_NEW("email", BCON_UTF8(api_lower(email, lower, sizeof lower)));
    }
    bson_t *opts = BCON_NEW("projection", "{", "_id", BCON_INT32(1), "email", BCON_INT32(1), "}",
                            "limit", BCON_INT64(1));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(custs, f, opts, NULL);
    const bson_t *doc;
    bson_iter_t it;
    int rc = 0;
    addr[0] = '\0';
    if (mongoc_cursor_next(cur, &doc) && bson_iter_init_find(&it, doc, "_id") &&
        BSON_ITER_HOLDS_OID(&it)) {
        bson_oid_copy(bson_iter_oid(&it), out);
        rc = 1;
        uint32_t n;
        if (bson_iter_init_find(&it, doc, "email") && BSON_ITER_HOLDS_UTF8(&it) &&
            bson_iter_utf8(&it, &n) && n <= SUPPRESS_EMAIL_MAX)
            memcpy(addr, bson_iter_utf8(&it, NULL), n + 1);
    }
    if (mongoc_cursor_error(cur, e))
        rc = -1;
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    bson_destroy(f);
    return rc;
}

/* The work of a new request: *status and *answer (malloc'd JSON text, the caller frees). */
static void send_message(api_ctx *app, http_request *req, const char *customer_id,
                         const char *email, const char *message, int *status, char **answer)
{
    mongoc_client_t *cl = dbpool_pop(app->db);
    mongoc_collection_t *custs = dbpool_collection(app->db, cl, DB_CUSTOMERS);
    mongoc_collection_t *logs = dbpool_collection(app->db, cl, DB_LOGS);
    mongoc_collection_t *supps = dbpool_collection(app->db, cl, DB_SUPPRESSIONS);
    bson_error_t e;
    bson_oid_t uid, lid;
    json_t *body = NULL;
    jsonx_buf job = {0};
    char addr[SUPPRESS_EMAIL_MAX + 1];
    int found = find_customer(custs, customer_id, email, &uid, addr, &e);
    if (found < 0) {
        *status = api_db_status(req, &e, "find customer");
        body = http_error_json(*status == 503 ? "database unavailable" : "internal error");
        goto out;
    }
    if (found == 0) {
        *status = 404;
        body = http_error_json("customer not found");
        goto out;
    }
    /* A suppressed address gets no message, priority or not (the suppressions collection is
     * the truth here: one indexed read, not the customer's derived flag). */
    bool suppressed = false;
    suppress_reason why = SUPPRESS_MANUAL;
    if (addr[0] && suppress_find(supps, addr, &suppressed, &why, &e) != 0) {
        *status = api_db_status(req, &e, "find suppression");
        body = http_error_json(*status == 503 ? "database unavailable" : "internal error");
        goto out;
    }
    if (suppressed) {
        char msg[SUPPRESS_EMAIL_MAX + 64];
        snprintf(msg, sizeof msg, "%s is suppressed (%s)", addr, suppress_reason_name(why));
        *status = 409;
        body = http_error_json(msg);
        goto out;
    }
    bson_oid_init(&lid, NULL);
    char lhex[25], uhex[25], vid[CAMPAIGN_VMID_LEN + 1];
    bson_oid_to_string(&lid, lhex);
    bson_oid_to_string(&uid, uhex);
    campaign_vendor_msg_id(app->cfg->receipts.vendor_secret, lhex, vid);
    bson_t doc = BSON_INITIALIZER;
    campaign_log_append_transactional(&doc, &lid, &uid, message, time_now_ms());
    bool ok = mongoc_collection_insert_one(logs, &doc, NULL, NULL, &e);
    bson_destroy(&doc);
    if (!ok) {
        *status = api_db_status(req, &e, "insert transactional log");
        body = http_error_json(*status == 503 ? "database unavailable" : "internal error");
        goto out;
    }
    char uurl[UNSUB_URL_MAX + 1];
    const unsub_signer *us = unsub_signer_get(app->cfg);
    jobs_send s = {.log_id = lhex,
                   .customer_id = uhex,
                   .message = message,
                   .vendor_msg_id = vid,
                   .unsubscribe_url =
                       us && unsub_url(us, lhex, uurl, sizeof uurl) > 0 ? uurl : NULL};
    bool encoded = jobs_send_encode(&job, &s) == 0;
    const char *jobs[1] = {job.data};
    size_t lens[1] = {job.len};
    if (!encoded || api_push_jobs(req, QUEUE_PRIORITY, jobs, lens, 1) != 0) {
        /* Not queued: take the log back so that a retry starts over (best effort; a log left
         * behind is sent by the sweeper). */
        bson_t *sel = BCON_NEW("_id", BCON_OID(&lid));
        campaign_log_match_pending(sel);
        mongoc_collection_delete_one(logs, sel, NULL, NULL, NULL);
        bson_destroy(sel);
        *status = 503;
        body = http_error_json("queue unavailable");
        goto out;
    }
    *status = 202;
    body = json_pack("{s:b,s:s,s:s,s:s,s:s,s:b}", "ok", 1, "log_id", lhex, "customer_id", uhex,
                     "vendorMsgId", vid, "status", campaign_log_status_name(CAMPAIGN_LOG_PENDING),
                     "queued", 1);
out:
    jsonx_buf_free(&job);
    mongoc_collection_destroy(custs);
    mongoc_collection_destroy(logs);
    mongoc_collection_destroy(supps);
    dbpool_push(app->db, cl);
    *answer = body ? jsonx_dumps(body) : NULL;
    json_decref(body);
}

static void h_message(api_ctx *app, http_request *req)
{
    json_t *body = api_body_object(req, " {customer_id | email, message}");
    if (!body)
        return;
    const char *customer_id, *email, *message;
    bson_oid_t oid;
    if (api_field_str(req, body, "customer_id", false, 24, &customer_id) ||
        (customer_id && api_parse_oid(req, "customer_id", customer_id, &oid)) ||
        api_field_str(req, body, "email", false, 254, &email) ||
        api_field_str(req, body, "message", true, MESSAGE_MAX_LEN, &message))
        return;
    if (!customer_id == !email) {
        http_error(req, 400, "give exactly one of customer_id and email");
        return;
    }
    if (email && !suppress_email_valid(email)) {
        http_error(req, 400, "email must be a valid e-mail address");
        return;
    }
    idem im;
    if (idem_begin(app, req, "messages", &im) != 1)
        return;
    int status = 500;
    char *answer = NULL;
    send_message(app, req, customer_id, email, message, &status, &answer);
    if (!answer) {
        status = 503;
        answer = strdup("{\"error\":\"out of memory\"}");
    }
    if (answer)
        idem_finish(app, req, &im, status, answer);
    free(answer);
}

int routes_messages_register(router *r)
{
    return router_add(r, HTTP_POST, "/api/messages", h_message, ROUTE_AUTH, AUTH_ROLE_STAFF);
}
