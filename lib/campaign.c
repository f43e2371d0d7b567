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
    [CAMPAIGN_QUEUED] = "QUEUED",
    [CAMPAIGN_SENDING] = "SENDING",
    [CAMPAIGN_COMPLETED] = "COMPLETED",
};

static const char *const LOG_NAMES[CAMPAIGN_LOG_STATUS_COUNT] = {
    [CAMPAIGN_LOG_PENDING] = "PENDING",
    [CAMPAIGN_LOG_SENT] = "SENT",
    [CAMPAIGN_LOG_FAILED] = "FAILED",
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
    return st == CAMPAIGN_COMPLETED;
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
    return st == CAMPAIGN_LOG_SENT || st == CAMPAIGN_LOG_FAILED;
}

/* ---- campaign moves ------------------------------------------------------------------- */

void campaign_append_new_state(bson_t *doc)
{
    bson_t cp;
    BSON_APPEND_UTF8(doc, "status", CAMPAIGN_NAMES[CAMPAIGN_QUEUED]);
    BSON_APPEND_INT64(doc, "total", 0);
    BSON_APPEND_INT64(doc, "pending", 0);
    BSON_APPEND_INT64(doc, "sent", 0);
    BSON_APPEND_INT64(doc, "failed", 0);
    BSON_APPEND_DOCUMENT_BEGIN(doc, "checkpoint", &cp);
    BSON_APPEND_NULL(&cp, "last_customer_id");
    BSON_APPEND_INT64(&cp, "written", 0);
    bson_append_document_end(doc, &cp);
}

/* One guarded updateOne; 0 or -1 (e filled). Destroys sel and upd. */
static int update_one(mongoc_collection_t *camps, bson_t *sel, bson_t *upd, bson_error_t *e)
{
    bool ok = mongoc_collection_update_one(camps, sel, upd, NULL, NULL, e);
    bson_destroy(sel);
    bson_destroy(upd);
    return ok ? 0 : -1;
}

int campaign_mark_sending(mongoc_collection_t *camps, const bson_oid_t *cid, int64_t now,
                          bson_error_t *e)
{
    bson_t *sel =
        BCON_NEW("_id", BCON_OID(cid), "status", BCON_UTF8(CAMPAIGN_NAMES[CAMPAIGN_QUEUED]));
    bson_t *upd = BCON_NEW("$set", "{", "status", BCON_UTF8(CAMPAIGN_NAMES[CAMPAIGN_SENDING]),
                           "startedAt", BCON_DATE_TIME(now), "updatedAt", BCON_DATE_TIME(now), "}");
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
    int64_t now = time_now_ms();
    bson_t *sel =
        BCON_NEW("_id", BCON_OID(cid), "status", BCON_UTF8(CAMPAIGN_NAMES[CAMPAIGN_SENDING]),
                 "fanout_done", BCON_BOOL(true), "pending", "{", "$lte", BCON_INT64(0), "}");
    bson_t *upd =
        BCON_NEW("$set", "{", "status", BCON_UTF8(CAMPAIGN_NAMES[CAMPAIGN_COMPLETED]),
                 "completedAt", BCON_DATE_TIME(now), "updatedAt", BCON_DATE_TIME(now), "}");
    return update_one(camps, sel, upd, e);
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

void campaign_vendor_msg_id(const char *secret, const char *log_hex,
                            char out[CAMPAIGN_VMID_LEN + 1])
{
    char mac[HMAC_HEX_LEN + 1];
    hmac_sha256_hex(secret, strlen(secret), log_hex, strlen(log_hex), mac);
    snprintf(out, CAMPAIGN_VMID_LEN + 1, "msg_%.24s", mac);
}
