/*
 * campaign: see campaign.h for the states and their moves.
 *
 * Names are table lookups (the enum value is the index), parses compare lengths first: the
 * receipts worker parses a status per receipt and builds a move per log, ~500 per batch, so
 * nothing here allocates beyond the caller's BSON.
 */
#include "campaign.h"

#include "hmac.h"
#include "timeutil.h"

#include <assert.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

static const char *const CAMPAIGN_NAMES[CAMPAIGN_STATUS_COUNT] = {
    [CAMPAIGN_QUEUED] = "QUEUED",       [CAMPAIGN_SENDING] = "SENDING",
    [CAMPAIGN_COMPLETED] = "COMPLETED", [CAMPAIGN_SCHEDULED] = "SCHEDULED",
    [CAMPAIGN_PAUSED] = "PAUSED",       [CAMPAIGN_CANCELLED] = "CANCELLED",
};

static const char *const LOG_NAMES[CAMPAIGN_LOG_STATUS_COUNT] = {
    [CAMPAIGN_LOG_PENDING] = "PENDING",
    [CAMPAIGN_LOG_SENT] = "SENT",
    [CAMPAIGN_LOG_FAILED] = "FAILED",
    [CAMPAIGN_LOG_CANCELLED] = "CANCELLED",
};

static const char *const MOVE_NAMES[CAMPAIGN_MOVE_COUNT] = {
    [CAMPAIGN_MOVE_PAUSE] = "pause",
    [CAMPAIGN_MOVE_RESUME] = "resume",
    [CAMPAIGN_MOVE_CANCEL] = "cancel",
    [CAMPAIGN_MOVE_RESCHEDULE] = "reschedule",
};

/* The legal operator moves: LEGAL[move][from]. Everything not listed is a 409. */
static const bool LEGAL[CAMPAIGN_MOVE_COUNT][CAMPAIGN_STATUS_COUNT] = {
    [CAMPAIGN_MOVE_PAUSE] =
        {[CAMPAIGN_QUEUED] = true, [CAMPAIGN_SENDING] = true, [CAMPAIGN_PAUSED] = true},
    [CAMPAIGN_MOVE_RESUME] = {[CAMPAIGN_PAUSED] = true},
    [CAMPAIGN_MOVE_CANCEL] = {[CAMPAIGN_SCHEDULED] = true,
                              [CAMPAIGN_QUEUED] = true,
                              [CAMPAIGN_SENDING] = true,
                              [CAMPAIGN_PAUSED] = true,
                              [CAMPAIGN_CANCELLED] = true},
    [CAMPAIGN_MOVE_RESCHEDULE] = {[CAMPAIGN_SCHEDULED] = true},
};

/* Index of s (len bytes) in names[0..n), or -1. */
static int lookup(const char *const *names, int n, const char *s, size_t len)
{
    if (!s)
        return -1;
    for (int i = 0; i < n; i++)
        if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
            return i;
    return -1;
}

const char *campaign_status_name(campaign_status st)
{
    assert(st >= 0 && st < CAMPAIGN_STATUS_COUNT);
    return CAMPAIGN_NAMES[st];
}

int campaign_status_parse(const char *s, size_t len, campaign_status *out)
{
    int i = lookup(CAMPAIGN_NAMES, CAMPAIGN_STATUS_COUNT, s, len);
    if (i < 0)
        return -1;
    *out = (campaign_status)i;
    return 0;
}

bool campaign_status_final(campaign_status st)
{
    return st == CAMPAIGN_COMPLETED || st == CAMPAIGN_CANCELLED;
}

const char *campaign_log_status_name(campaign_log_status st)
{
    assert(st >= 0 && st < CAMPAIGN_LOG_STATUS_COUNT);
    return LOG_NAMES[st];
}

int campaign_log_status_parse(const char *s, size_t len, campaign_log_status *out)
{
    int i = lookup(LOG_NAMES, CAMPAIGN_LOG_STATUS_COUNT, s, len);
    if (i < 0)
        return -1;
    *out = (campaign_log_status)i;
    return 0;
}

bool campaign_log_status_final(campaign_log_status st)
{
    return st == CAMPAIGN_LOG_SENT || st == CAMPAIGN_LOG_FAILED || st == CAMPAIGN_LOG_CANCELLED;
}

/* ---- campaign moves ------------------------------------------------------------------- */

static void append_state(bson_t *doc, campaign_status st)
{
    bson_t cp;
    BSON_APPEND_UTF8(doc, "status", CAMPAIGN_NAMES[st]);
    BSON_APPEND_INT64(doc, "total", 0);
    BSON_APPEND_INT64(doc, "pending", 0);
    BSON_APPEND_INT64(doc, "sent", 0);
    BSON_APPEND_INT64(doc, "failed", 0);
    BSON_APPEND_INT64(doc, "cancelled", 0);
    BSON_APPEND_INT64(doc, "bounced", 0);
    BSON_APPEND_INT64(doc, "complained", 0);
    BSON_APPEND_INT64(doc, "opened", 0);
    BSON_APPEND_INT64(doc, "clicked", 0);
    BSON_APPEND_DOCUMENT_BEGIN(doc, "checkpoint", &cp);
    BSON_APPEND_NULL(&cp, "last_customer_id");
    BSON_APPEND_INT64(&cp, "written", 0);
    bson_append_document_end(doc, &cp);
}

void campaign_append_new_state(bson_t *doc)
{
    append_state(doc, CAMPAIGN_QUEUED);
}

void campaign_append_new_scheduled(bson_t *doc, int64_t send_at)
{
    append_state(doc, CAMPAIGN_SCHEDULED);
    BSON_APPEND_DATE_TIME(doc, "send_at", send_at);
}

/* One guarded updateOne; 0 or -1 (e filled). Destroys sel and upd. */
static int update_one(mongoc_collection_t *camps, bson_t *sel, bson_t *upd, bson_error_t *e)
{
    bool ok = mongoc_collection_update_one(camps, sel, upd, NULL, NULL, e);
    bson_destroy(sel);
    bson_destroy(upd);
    return ok ? 0 : -1;
}

/* Append $push {events_due: {to, at}} to upd: the move to `to` made at `at` has an event to
 * publish (lib/campevents). Written by the move's own update, so the record and the move happen
 * together or not at all. */
static void append_event_due(bson_t *upd, campaign_status to, int64_t at)
{
    bson_t push, ev;
    BSON_APPEND_DOCUMENT_BEGIN(upd, "$push", &push);
    BSON_APPEND_DOCUMENT_BEGIN(&push, CAMPAIGN_EVENTS_DUE, &ev);
    BSON_APPEND_UTF8(&ev, "to", CAMPAIGN_NAMES[to]);
    BSON_APPEND_INT64(&ev, "at", at);
    bson_append_document_end(&push, &ev);
    bson_append_document_end(upd, &push);
}

/* One guarded updateOne; *n gets the reply's `field` ("matchedCount" or "modifiedCount"; 0 on
 * error). 0 or -1 (e filled). Destroys sel and upd. */
static int update_one_count(mongoc_collection_t *camps, bson_t *sel, bson_t *upd, const char *field,
                            int64_t *n, bson_error_t *e)
{
    bson_t reply;
    bool ok = mongoc_collection_update_one(camps, sel, upd, NULL, &reply, e);
    bson_iter_t it;
    *n = ok && bson_iter_init_find(&it, &reply, field) ? bson_iter_as_int64(&it) : 0;
    bson_destroy(&reply);
    bson_destroy(sel);
    bson_destroy(upd);
    return ok ? 0 : -1;
}

/* One guarded updateOne that reports whether it moved the campaign (*moved, may be NULL).
 * 0 or -1 (e filled). Destroys sel and upd. */
static int update_one_moved(mongoc_collection_t *camps, bson_t *sel, bson_t *upd, bool *moved,
                            bson_error_t *e)
{
    int64_t n;
    int rc = update_one_count(camps, sel, upd, "modifiedCount", &n, e);
    if (moved)
        *moved = n > 0;
    return rc;
}

int campaign_mark_sending(mongoc_collection_t *camps, const bson_oid_t *cid, int64_t now,
                          bson_error_t *e)
{
    return campaign_mark_sending_moved(camps, cid, now, NULL, e);
}

int campaign_mark_sending_moved(mongoc_collection_t *camps, const bson_oid_t *cid, int64_t now,
                                bool *moved, bson_error_t *e)
{
    bson_t *sel = BCON_NEW("_id", BCON_OID(cid), "status", "{", "$in", "[",
                           BCON_UTF8(CAMPAIGN_NAMES[CAMPAIGN_QUEUED]),
                           BCON_UTF8(CAMPAIGN_NAMES[CAMPAIGN_SCHEDULED]), "]", "}");
    bson_t *upd = BCON_NEW("$set", "{", "status", BCON_UTF8(CAMPAIGN_NAMES[CAMPAIGN_SENDING]),
                           "startedAt", BCON_DATE_TIME(now), "updatedAt", BCON_DATE_TIME(now), "}");
    append_event_due(upd, CAMPAIGN_SENDING, now);
    return update_one_moved(camps, sel, upd, moved, e);
}

int campaign_send_at_check(const char *s, int64_t now, int64_t *out, char *err, size_t errlen)
{
    size_t n = s ? strlen(s) : 0;
    const char *t = s ? strchr(s, 'T') : NULL;
    bool zoned = t && n > 6 &&
                 (s[n - 1] == 'Z' ||
                  ((s[n - 6] == '+' || s[n - 6] == '-') && s[n - 3] == ':' && s + n - 6 > t));
    int64_t ms;
    if (!zoned || time_parse_iso8601(s, &ms) != 0) {
        snprintf(err, errlen,
                 "send_at must be an ISO 8601 date-time with a zone or Z "
                 "(e.g. 2026-12-24T18:00:00Z)");
        return -1;
    }
    if (ms <= now) {
        snprintf(err, errlen, "send_at must be in the future");
        return -1;
    }
    if (ms - now > CAMPAIGN_SEND_AT_MAX_AHEAD_MS) {
        snprintf(err, errlen, "send_at must be at most one year ahead");
        return -1;
    }
    *out = ms;
    return 0;
}

int campaign_expire_scheduled(mongoc_collection_t *camps, const bson_oid_t *cid, const char *reason,
                              int64_t now, bson_error_t *e)
{
    bson_t *sel =
        BCON_NEW("_id", BCON_OID(cid), "status", BCON_UTF8(CAMPAIGN_NAMES[CAMPAIGN_SCHEDULED]));
    bson_t *upd = BCON_NEW("$set", "{", "status", BCON_UTF8(CAMPAIGN_NAMES[CAMPAIGN_CANCELLED]),
                           "cancelReason", BCON_UTF8(reason), "cancelledAt", BCON_DATE_TIME(now),
                           "updatedAt", BCON_DATE_TIME(now), "}");
    append_event_due(upd, CAMPAIGN_CANCELLED, now);
    return update_one(camps, sel, upd, e);
}

int campaign_cancel_unsendable(mongoc_collection_t *camps, const bson_oid_t *cid,
                               const char *reason, int64_t now, bson_error_t *e)
{
    bson_t *sel =
        BCON_NEW("_id", BCON_OID(cid), "status", BCON_UTF8(CAMPAIGN_NAMES[CAMPAIGN_QUEUED]));
    bson_t *upd = BCON_NEW("$set", "{", "status", BCON_UTF8(CAMPAIGN_NAMES[CAMPAIGN_CANCELLED]),
                           "cancelReason", BCON_UTF8(reason), "cancelledAt", BCON_DATE_TIME(now),
                           "updatedAt", BCON_DATE_TIME(now), "}");
    append_event_due(upd, CAMPAIGN_CANCELLED, now);
    return update_one(camps, sel, upd, e);
}

int campaign_mark_fanout_done(mongoc_collection_t *camps, const bson_oid_t *cid, int64_t now,
                              bson_error_t *e)
{
    bson_t *sel = BCON_NEW("_id", BCON_OID(cid));
    bson_t *upd = BCON_NEW("$set", "{", "fanout_done", BCON_BOOL(true), "updatedAt",
                           BCON_DATE_TIME(now), "}");
    return update_one(camps, sel, upd, e);
}

int campaign_try_complete(mongoc_collection_t *camps, const bson_oid_t *cid, bson_error_t *e)
{
    return campaign_try_complete_moved(camps, cid, NULL, e);
}

int campaign_try_complete_moved(mongoc_collection_t *camps, const bson_oid_t *cid, bool *moved,
                                bson_error_t *e)
{
    int64_t now = time_now_ms();
    bson_t *sel =
        BCON_NEW("_id", BCON_OID(cid), "status", BCON_UTF8(CAMPAIGN_NAMES[CAMPAIGN_SENDING]),
                 "fanout_done", BCON_BOOL(true), "pending", "{", "$lte", BCON_INT64(0), "}");
    bson_t *upd =
        BCON_NEW("$set", "{", "status", BCON_UTF8(CAMPAIGN_NAMES[CAMPAIGN_COMPLETED]),
                 "completedAt", BCON_DATE_TIME(now), "updatedAt", BCON_DATE_TIME(now), "}");
    append_event_due(upd, CAMPAIGN_COMPLETED, now);
    return update_one_moved(camps, sel, upd, moved, e);
}

/* ---- operator moves ------------------------------------------------------------------- */

const char *campaign_move_name(campaign_move m)
{
    assert(m >= 0 && m < CAMPAIGN_MOVE_COUNT);
    return MOVE_NAMES[m];
}

int campaign_move_parse(const char *s, campaign_move *out)
{
    int i = lookup(MOVE_NAMES, CAMPAIGN_MOVE_COUNT, s, s ? strlen(s) : 0);
    if (i < 0)
        return -1;
    *out = (campaign_move)i;
    return 0;
}

bool campaign_move_legal(campaign_move m, campaign_status from)
{
    return m >= 0 && m < CAMPAIGN_MOVE_COUNT && from >= 0 && from < CAMPAIGN_STATUS_COUNT &&
           LEGAL[m][from];
}

/* Read the state of cid: 1 found (*st, *started, *done filled), 0 not found, -1 error. */
static int read_state(mongoc_collection_t *camps, const bson_oid_t *cid, campaign_status *st,
                      bool *started, bool *done, bson_error_t *e)
{
    bson_t *f = BCON_NEW("_id", BCON_OID(cid));
    bson_t *o = BCON_NEW("projection", "{", "status", BCON_INT32(1), "startedAt", BCON_INT32(1),
                         "fanout_done", BCON_INT32(1), "}");
    mongoc_cursor_t *c = mongoc_collection_find_with_opts(camps, f, o, NULL);
    bson_destroy(f);
    bson_destroy(o);
    const bson_t *doc;
    int rc = 0;
    if (mongoc_cursor_next(c, &doc)) {
        bson_iter_t it;
        uint32_t len = 0;
        const char *s = bson_iter_init_find(&it, doc, "status") && BSON_ITER_HOLDS_UTF8(&it)
                            ? bson_iter_utf8(&it, &len)
                            : NULL;
        *st = CAMPAIGN_QUEUED;
        if (s && campaign_status_parse(s, len, st) != 0) {
            bson_set_error(e, 0, 0, "campaign has an unknown status");
            rc = -1;
        } else {
            *started = bson_iter_init_find(&it, doc, "startedAt");
            *done = bson_iter_init_find(&it, doc, "fanout_done") && BSON_ITER_HOLDS_BOOL(&it) &&
                    bson_iter_bool(&it);
            rc = 1;
        }
    } else if (mongoc_cursor_error(c, e)) {
        rc = -1;
    }
    mongoc_cursor_destroy(c);
    return rc;
}

int campaign_move_apply(mongoc_collection_t *camps, const bson_oid_t *cid, campaign_move m,
                        const char *reason, int64_t now, campaign_status *from, campaign_status *to,
                        bool *fanout_done, bson_error_t *e)
{
    assert(m != CAMPAIGN_MOVE_RESCHEDULE); /* campaign_reschedule carries the new send_at */
    for (int attempt = 0; attempt < 5; attempt++) {
        bool started = false, done = false;
        int rc = read_state(camps, cid, from, &started, &done, e);
        if (rc <= 0)
            return rc < 0 ? -1 : CAMPAIGN_NOT_FOUND;
        if (fanout_done)
            *fanout_done = done;
        if (!campaign_move_legal(m, *from))
            return CAMPAIGN_ILLEGAL;
        *to = m == CAMPAIGN_MOVE_PAUSE    ? CAMPAIGN_PAUSED
              : m == CAMPAIGN_MOVE_CANCEL ? CAMPAIGN_CANCELLED
              : started                   ? CAMPAIGN_SENDING
                                          : CAMPAIGN_QUEUED;
        bson_t *sel = BCON_NEW("_id", BCON_OID(cid), "status", BCON_UTF8(CAMPAIGN_NAMES[*from]));
        bson_t *upd = bson_new(), set;
        BSON_APPEND_DOCUMENT_BEGIN(upd, "$set", &set);
        BSON_APPEND_UTF8(&set, "status", CAMPAIGN_NAMES[*to]);
        BSON_APPEND_DATE_TIME(&set, "updatedAt", now);
        if (*from != *to) {
            BSON_APPEND_DATE_TIME(&set,
                                  m == CAMPAIGN_MOVE_PAUSE    ? "pausedAt"
                                  : m == CAMPAIGN_MOVE_CANCEL ? "cancelledAt"
                                                              : "resumedAt",
                                  now);
            if (m == CAMPAIGN_MOVE_CANCEL)
                BSON_APPEND_UTF8(&set, "cancelReason",
                                 reason ? reason : "cancelled by an operator");
        }
        bson_append_document_end(upd, &set);
        if (*from != *to && (*to == CAMPAIGN_PAUSED || *to == CAMPAIGN_CANCELLED))
            append_event_due(upd, *to, now);
        int64_t matched;
        if (update_one_count(camps, sel, upd, "matchedCount", &matched, e) != 0)
            return -1;
        if (matched == 1)
            return CAMPAIGN_MOVED;
        /* The state changed between the read and the update (the fan-out started, or the
         * campaign completed): read it again. */
    }
    bson_set_error(e, 0, 0, "campaign state keeps changing");
    return -1;
}

int campaign_reschedule(mongoc_collection_t *camps, const bson_oid_t *cid, int64_t send_at,
                        int64_t now, campaign_status *from, bson_error_t *e)
{
    bool started = false, done = false;
    int rc = read_state(camps, cid, from, &started, &done, e);
    if (rc <= 0)
        return rc < 0 ? -1 : CAMPAIGN_NOT_FOUND;
    if (!campaign_move_legal(CAMPAIGN_MOVE_RESCHEDULE, *from))
        return CAMPAIGN_ILLEGAL;
    bson_t *sel = BCON_NEW("_id", BCON_OID(cid), "status", BCON_UTF8(CAMPAIGN_NAMES[*from]));
    bson_t *upd = BCON_NEW("$set", "{", "send_at", BCON_DATE_TIME(send_at), "rules_now",
                           BCON_DATE_TIME(send_at), "updatedAt", BCON_DATE_TIME(now), "}");
    return update_one(camps, sel, upd, e) == 0 ? CAMPAIGN_MOVED : -1;
}

int campaign_cancel_logs(mongoc_collection_t *logs, const bson_oid_t *cid, const bson_oid_t *keep,
                         size_t nkeep, int64_t now, int64_t *modified, bson_error_t *e)
{
    bson_t *sel = bson_new(), nin, arr;
    BSON_APPEND_OID(sel, "campaign_id", cid);
    campaign_log_match_pending(sel);
    if (nkeep) {
        BSON_APPEND_DOCUMENT_BEGIN(sel, "_id", &nin);
        BSON_APPEND_ARRAY_BEGIN(&nin, "$nin", &arr);
        char key[16];
        for (size_t i = 0; i < nkeep; i++) {
            const char *k;
            bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
            BSON_APPEND_OID(&arr, k, &keep[i]);
        }
        bson_append_array_end(&nin, &arr);
        bson_append_document_end(sel, &nin);
    }
    bson_t *upd = BCON_NEW("$set", "{", "status", BCON_UTF8(LOG_NAMES[CAMPAIGN_LOG_CANCELLED]),
                           "updatedAt", BCON_DATE_TIME(now), "}");
    bson_t reply;
    bool ok = mongoc_collection_update_many(logs, sel, upd, NULL, &reply, e);
    bson_iter_t it;
    if (modified)
        *modified =
            ok && bson_iter_init_find(&it, &reply, "modifiedCount") ? bson_iter_as_int64(&it) : 0;
    bson_destroy(&reply);
    bson_destroy(sel);
    bson_destroy(upd);
    return ok ? 0 : -1;
}

/* Count the logs of cid (with status st, or all when st < 0). 0 or -1. */
static int count_logs(mongoc_collection_t *logs, const bson_oid_t *cid, int st, int64_t *n,
                      bson_error_t *e)
{
    bson_t *f = BCON_NEW("campaign_id", BCON_OID(cid));
    if (st >= 0)
        BSON_APPEND_UTF8(f, "status", LOG_NAMES[st]);
    *n = mongoc_collection_count_documents(logs, f, NULL, NULL, NULL, e);
    bson_destroy(f);
    return *n < 0 ? -1 : 0;
}

int campaign_cancel_recount(mongoc_collection_t *camps, mongoc_collection_t *logs,
                            const bson_oid_t *cid, bson_error_t *e)
{
    for (int attempt = 0; attempt < 20; attempt++) {
        bson_t *f = BCON_NEW("_id", BCON_OID(cid));
        mongoc_cursor_t *c = mongoc_collection_find_with_opts(camps, f, NULL, NULL);
        bson_destroy(f);
        const bson_t *doc;
        int64_t t0 = 0, c0 = 0;
        bool has_c0 = false, found = mongoc_cursor_next(c, &doc);
        if (found) {
            bson_iter_t it;
            if (bson_iter_init_find(&it, doc, "total"))
                t0 = bson_iter_as_int64(&it);
            if (bson_iter_init_find(&it, doc, "cancelled")) {
                c0 = bson_iter_as_int64(&it);
                has_c0 = true;
            }
        }
        bool err = !found && mongoc_cursor_error(c, e);
        mongoc_cursor_destroy(c);
        if (err)
            return -1;
        if (!found)
            return 0;
        int64_t t1, c1;
        if (count_logs(logs, cid, -1, &t1, e) != 0 ||
            count_logs(logs, cid, CAMPAIGN_LOG_CANCELLED, &c1, e) != 0)
            return -1;
        if (t1 == t0 && c1 == c0 && has_c0)
            return 0;
        /* A campaign from before the cancelled field: match its absence. */
        bson_t *sel = has_c0 ? BCON_NEW("_id", BCON_OID(cid), "total", BCON_INT64(t0), "cancelled",
                                        BCON_INT64(c0))
                             : BCON_NEW("_id", BCON_OID(cid), "total", BCON_INT64(t0), "cancelled",
                                        "{", "$exists", BCON_BOOL(false), "}");
        bson_t *upd =
            BCON_NEW("$inc", "{", "total", BCON_INT64(t1 - t0), "cancelled", BCON_INT64(c1 - c0),
                     "pending", BCON_INT64((t1 - t0) - (c1 - c0)), "}");
        int64_t matched;
        if (update_one_count(camps, sel, upd, "matchedCount", &matched, e) != 0)
            return -1;
        if (matched == 1)
            return 0;
    }
    bson_set_error(e, 0, 0, "cancel recount: the counters keep moving");
    return -1;
}

/* ---- logs ----------------------------------------------------------------------------- */

void campaign_log_id(const bson_oid_t *campaign, const bson_oid_t *customer, bson_oid_t *out)
{
    unsigned char in[24], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    memcpy(in, campaign->bytes, 12);
    memcpy(in + 12, customer->bytes, 12);
    EVP_Digest(in, sizeof in, md, &mdlen, EVP_sha256(), NULL);
    memcpy(out->bytes, md, 12);
}

void campaign_log_append_new(bson_t *doc, const bson_oid_t *lid, const bson_oid_t *cid,
                             const bson_oid_t *uid, const char *message, int64_t now)
{
    BSON_APPEND_OID(doc, "_id", lid);
    BSON_APPEND_OID(doc, "campaign_id", cid);
    BSON_APPEND_OID(doc, "customer_id", uid);
    BSON_APPEND_UTF8(doc, "message", message);
    BSON_APPEND_UTF8(doc, "status", LOG_NAMES[CAMPAIGN_LOG_PENDING]);
    BSON_APPEND_NULL(doc, "vendorMsgId");
    BSON_APPEND_INT32(doc, "resends", 0);
    BSON_APPEND_DATE_TIME(doc, "createdAt", now);
    BSON_APPEND_DATE_TIME(doc, "updatedAt", now);
}

void campaign_log_append_transactional(bson_t *doc, const bson_oid_t *lid, const bson_oid_t *uid,
                                       const char *message, int64_t now)
{
    BSON_APPEND_OID(doc, "_id", lid);
    BSON_APPEND_NULL(doc, "campaign_id");
    BSON_APPEND_UTF8(doc, "kind", CAMPAIGN_LOG_KIND_TRANSACTIONAL);
    BSON_APPEND_OID(doc, "customer_id", uid);
    BSON_APPEND_UTF8(doc, "message", message);
    BSON_APPEND_UTF8(doc, "status", LOG_NAMES[CAMPAIGN_LOG_PENDING]);
    BSON_APPEND_NULL(doc, "vendorMsgId");
    BSON_APPEND_INT32(doc, "resends", 0);
    BSON_APPEND_DATE_TIME(doc, "createdAt", now);
    BSON_APPEND_DATE_TIME(doc, "updatedAt", now);
}

void campaign_log_match_pending(bson_t *sel)
{
    BSON_APPEND_UTF8(sel, "status", LOG_NAMES[CAMPAIGN_LOG_PENDING]);
}

void campaign_log_append_final(bson_t *set, campaign_log_status to, const char *vmid, int64_t at,
                               int64_t now, const char *reason)
{
    assert(campaign_log_status_final(to));
    BSON_APPEND_UTF8(set, "status", LOG_NAMES[to]);
    if (vmid)
        BSON_APPEND_UTF8(set, "vendorMsgId", vmid);
    BSON_APPEND_DATE_TIME(set, "deliveredAt", at);
    BSON_APPEND_DATE_TIME(set, "updatedAt", now);
    if (to == CAMPAIGN_LOG_FAILED && reason)
        BSON_APPEND_UTF8(set, "failureReason", reason);
}

void campaign_log_append_bounce(bson_t *set)
{
    BSON_APPEND_BOOL(set, "bounced", true);
}

static const char *const EV_FIELDS[CAMPAIGN_LOG_EV_COUNT] = {"openedAt", "clickedAt",
                                                             "complainedAt"};
static const char *const EV_TOKENS[CAMPAIGN_LOG_EV_COUNT] = {"otok", "cltok", "cptok"};

const char *campaign_log_event_field(campaign_log_event ev)
{
    assert((unsigned)ev < CAMPAIGN_LOG_EV_COUNT);
    return EV_FIELDS[ev];
}

const char *campaign_log_event_token(campaign_log_event ev)
{
    assert((unsigned)ev < CAMPAIGN_LOG_EV_COUNT);
    return EV_TOKENS[ev];
}

void campaign_log_match_event_unset(bson_t *sel, campaign_log_event ev)
{
    bson_t ex;
    BSON_APPEND_DOCUMENT_BEGIN(sel, campaign_log_event_field(ev), &ex);
    BSON_APPEND_BOOL(&ex, "$exists", false);
    bson_append_document_end(sel, &ex);
}

void campaign_log_append_event(bson_t *set, campaign_log_event ev, int64_t at, const char *tok)
{
    BSON_APPEND_DATE_TIME(set, campaign_log_event_field(ev), at);
    BSON_APPEND_UTF8(set, campaign_log_event_token(ev), tok);
}

void campaign_vendor_msg_id(const char *secret, const char *log_hex,
                            char out[CAMPAIGN_VMID_LEN + 1])
{
    char mac[HMAC_HEX_LEN + 1];
    hmac_sha256_hex(secret, strlen(secret), log_hex, strlen(log_hex), mac);
    snprintf(out, CAMPAIGN_VMID_LEN + 1, "msg_%.24s", mac);
}
