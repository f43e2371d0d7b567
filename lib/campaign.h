/*
 * campaign: the campaign domain, the one owner of the states of a campaign and of its
 * communication logs, and of every move between them.
 *
 * A campaign (collection campaigns1):
 *
 *     QUEUED --(fan-out starts: campaign_mark_sending)--> SENDING
 *     SENDING --(fanout_done && pending == 0: campaign_try_complete)--> COMPLETED
 *
 *   QUEUED     created by the API (campaign_append_new_state), one job on the campaigns queue.
 *   SENDING    a fan-out worker took it: logs and sends are being written (checkpoint, total,
 *              pending move together), receipts are being counted (sent, failed, -pending).
 *              `fanout_done` (campaign_mark_fanout_done) is a flag inside SENDING, not a state:
 *              it says every log has been written.
 *   COMPLETED  final: every log written and final. Whoever sees the last condition become true
 *              (the fan-out worker at its end, or the receipts worker counting the last log)
 *              makes the move; the guarded update makes it happen once.
 *   Nothing leaves COMPLETED. There is no failed campaign: a log that cannot be delivered is a
 *   FAILED log and is counted, its campaign still completes.
 *
 * A communication log (collection communication_logs1), one per (campaign, customer), or one
 * per one-off message (campaign_id null, kind "transactional": POST /api/messages), with the
 * same states and moves:
 *
 *     PENDING --(a receipt says SENT)--> SENT
 *     PENDING --(a receipt says FAILED, or the sweeper gives up)--> FAILED
 *
 *   PENDING    written by the fan-out (campaign_log_append_new) with a deterministic _id
 *              (campaign_log_id), so a re-run writes no duplicate.
 *   SENT, FAILED  final; a log moves once (every move is guarded by status == PENDING:
 *              campaign_log_match_pending), a repeated receipt is a no-op.
 *
 * New states and moves (pause, cancel, schedule) go here: one enum value, its name, the moves
 * in the comments above, one function per move.
 *
 * The functions that issue a move take the caller's collection handle (not thread-safe, as the
 * handle is not) and return 0, or -1 with e filled. The append helpers write into caller-owned
 * BSON (no allocation beyond the caller's document), for the hot paths that build hundreds of
 * statements per batch.
 */
#ifndef MINICRM_CAMPAIGN_H
#define MINICRM_CAMPAIGN_H

#include <bson/bson.h>
#include <mongoc/mongoc.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- campaign states ------------------------------------------------------------------ */

typedef enum {
    CAMPAIGN_QUEUED = 0,
    CAMPAIGN_SENDING,
    CAMPAIGN_COMPLETED,
    CAMPAIGN_STATUS_COUNT
} campaign_status;

/* The stored name ("QUEUED", ...). st must be a valid value. */
const char *campaign_status_name(campaign_status st);
/* Parse a stored name (len bytes). 0, or -1 if s names no campaign state. */
int campaign_status_parse(const char *s, size_t len, campaign_status *out);
/* True for a state nothing leaves. */
bool campaign_status_final(campaign_status st);

/* ---- log states ----------------------------------------------------------------------- */

typedef enum {
    CAMPAIGN_LOG_PENDING = 0,
    CAMPAIGN_LOG_SENT,
    CAMPAIGN_LOG_FAILED,
    CAMPAIGN_LOG_STATUS_COUNT
} campaign_log_status;

const char *campaign_log_status_name(campaign_log_status st);
int campaign_log_status_parse(const char *s, size_t len, campaign_log_status *out);
bool campaign_log_status_final(campaign_log_status st);

/* ---- campaign moves ------------------------------------------------------------------- */

/* Append the state of a new campaign to doc: status QUEUED, counters total/pending/sent/failed
 * 0, checkpoint {last_customer_id: null, written: 0}. */
void campaign_append_new_state(bson_t *doc);

/* QUEUED -> SENDING (startedAt = now); a no-op for a campaign already past QUEUED. */
int campaign_mark_sending(mongoc_collection_t *camps, const bson_oid_t *cid, int64_t now,
                          bson_error_t *e);

/* Every log of the campaign is written: $set fanout_done (stays SENDING). */
int campaign_mark_fanout_done(mongoc_collection_t *camps, const bson_oid_t *cid, int64_t now,
                              bson_error_t *e);

/* SENDING && fanout_done && pending <= 0 -> COMPLETED (completedAt); a no-op otherwise. */
int campaign_try_complete(mongoc_collection_t *camps, const bson_oid_t *cid, bson_error_t *e);

/* ---- logs ----------------------------------------------------------------------------- */

/* The deterministic log id of (campaign, customer): the first 12 bytes of
 * SHA-256(campaign 12 bytes || customer 12 bytes). */
void campaign_log_id(const bson_oid_t *campaign, const bson_oid_t *customer, bson_oid_t *out);

/* The vendorMsgId minicrm assigns when it hands a single message to the vendor itself
 * (POST /api/vendor/send, and the sweeper's re-send of any log): "msg_" + the first 24 hex of
 * HMAC-SHA256(secret, log_id hex). Deterministic, so the id the route answered is the id a
 * re-send of the same log carries and the vendor reports. out must hold CAMPAIGN_VMID_LEN + 1. */
#define CAMPAIGN_VMID_LEN 28
void campaign_vendor_msg_id(const char *secret, const char *log_hex,
                            char out[CAMPAIGN_VMID_LEN + 1]);

/* Append a new PENDING log to doc (empty, caller-owned): _id, campaign_id, customer_id, message,
 * status, vendorMsgId null, resends 0, createdAt/updatedAt now. */
void campaign_log_append_new(bson_t *doc, const bson_oid_t *lid, const bson_oid_t *cid,
                             const bson_oid_t *uid, const char *message, int64_t now);

/* The `kind` of a log written outside any campaign (POST /api/messages). */
#define CAMPAIGN_LOG_KIND_TRANSACTIONAL "transactional"

/* Append a new PENDING one-off log to doc (empty, caller-owned): as campaign_log_append_new,
 * with campaign_id null and kind "transactional". It counts in no campaign's counters. */
void campaign_log_append_transactional(bson_t *doc, const bson_oid_t *lid, const bson_oid_t *uid,
                                       const char *message, int64_t now);

/* Append {status: PENDING} to a selector: the guard of every log move. */
void campaign_log_match_pending(bson_t *sel);

/* Append the $set fields of the move PENDING -> to (SENT or FAILED) to set: status,
 * vendorMsgId (when vmid is not NULL), deliveredAt = at, updatedAt = now, failureReason (FAILED,
 * when reason is not NULL). The caller guards the statement with campaign_log_match_pending. */
void campaign_log_append_final(bson_t *set, campaign_log_status to, const char *vmid, int64_t at,
                               int64_t now, const char *reason);

#endif
