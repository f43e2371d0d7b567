/*
 * campaign: the campaign domain, the one owner of the states of a campaign and of its
 * communication logs, and of every move between them.
 *
 * A campaign (collection campaigns1):
 *
 *     QUEUED --(fan-out starts: campaign_mark_sending)--> SENDING
 *     SENDING --(fanout_done && pending == 0: campaign_try_complete)--> COMPLETED
 *     SCHEDULED --(a worker promotes it at send_at; the fan-out starts)--> SENDING
 *     SCHEDULED --(send_at older than campaigns.schedule_expiry_s)--> CANCELLED
 *     QUEUED --(its stored rules cannot be used: campaign_cancel_unsendable)--> CANCELLED
 *     SCHEDULED --(operator: CAMPAIGN_MOVE_RESCHEDULE)--> SCHEDULED
 *     QUEUED | SENDING | PAUSED --(operator: CAMPAIGN_MOVE_PAUSE)--> PAUSED
 *     PAUSED --(operator: CAMPAIGN_MOVE_RESUME)--> SENDING (fan-out had started) | QUEUED
 *     SCHEDULED | QUEUED | SENDING | PAUSED | CANCELLED --(CAMPAIGN_MOVE_CANCEL)--> CANCELLED
 *
 *   QUEUED     created by the API (campaign_append_new_state), one job on the campaigns queue.
 *   SENDING    a fan-out worker took it: logs and sends are being written (checkpoint, total,
 *              pending move together), receipts are being counted (sent, failed, -pending).
 *              `fanout_done` (campaign_mark_fanout_done) is a flag inside SENDING, not a state:
 *              it says every log has been written.
 *   COMPLETED  final: every log written and final. Whoever sees the last condition become true
 *              (the fan-out worker at its end, or the receipts worker counting the last log)
 *              makes the move; the guarded update makes it happen once.
 *   SCHEDULED  created with a future send_at (campaign_append_new_scheduled): its job waits in
 *              a Redis sorted set (lib/campctl) until a worker promotes it; the fan-out then
 *              moves it SCHEDULED -> SENDING (campaign_mark_sending). One whose send_at passed
 *              more than campaigns.schedule_expiry_s ago (everything was down) becomes CANCELLED
 *              with the reason (campaign_expire_scheduled), never silently late.
 *              Reschedule (SCHEDULED -> SCHEDULED, campaign_reschedule) moves send_at.
 *   PAUSED     the operator stopped it: the fan-out stops at a batch boundary (checkpoint kept)
 *              and the sends consumer holds its queued sends back (lib/campctl, the Redis side);
 *              receipts of messages already at the vendor are still counted. Pausing a PAUSED
 *              campaign is legal and re-applies the Redis side (an interrupted pause finishes).
 *   CANCELLED  final for sending: no further sends; logs not yet handed to the vendor become
 *              CANCELLED in one update_many (campaign_cancel_logs), the counters are recounted
 *              (campaign_cancel_recount); receipts of messages already at the vendor still
 *              move their PENDING logs and count. Cancelling a CANCELLED campaign is legal and
 *              re-runs the bulk and the recount (an interrupted cancel finishes).
 *   The legal moves of the operator are one table (campaign_move_legal); campaign_move applies
 *   one, guarded by the state it read, and reports the current state of an illegal one (the
 *   API's 409).
 *   Counters: total = sent + failed + cancelled + pending at every read (total and pending
 *   move with the checkpoint, sent/failed/-pending with receipts, cancelled/-pending with the
 *   recount). Event counters beside them, each moved with the log event it counts (once per
 *   log): bounced (a part of failed), complained, opened, clicked.
 *   Events: the moves to SENDING (from QUEUED or SCHEDULED), COMPLETED, PAUSED (from another
 *   state) and CANCELLED (from another state) each $push {to, at} onto the campaign's
 *   `events_due` array in the same update as the move, so a crash after the move cannot lose
 *   its webhook event: lib/campevents publishes the entries (campaign.started, .completed,
 *   .paused, .cancelled) and pulls them, right after the move or in the worker's rescue pass.
 *   Nothing leaves COMPLETED. There is no failed campaign: a log that cannot be delivered is a
 *   FAILED log and is counted, its campaign still completes.
 *
 * A communication log (collection communication_logs1), one per (campaign, customer), or one
 * per one-off message (campaign_id null, kind "transactional": POST /api/messages), with the
 * same states and moves:
 *
 *     PENDING --(a receipt says SENT)--> SENT
 *     PENDING --(a receipt says FAILED, or the sweeper gives up)--> FAILED
 *     PENDING --(its campaign is cancelled and its send is not at the vendor)--> CANCELLED
 *
 *   PENDING    written by the fan-out (campaign_log_append_new) with a deterministic _id
 *              (campaign_log_id), so a re-run writes no duplicate.
 *   CANCELLED  final: its send was never handed to the vendor. A receipt never moves it (the
 *              vendor only reports sends it was handed, and those logs are not cancelled).
 *   SENT, FAILED  final; a log moves once (every move is guarded by status == PENDING:
 *              campaign_log_match_pending), a repeated receipt is a no-op. A hard bounce is the
 *              move to FAILED with failureReason "bounced" and `bounced: true`
 *              (campaign_log_append_bounce).
 *
 *   Events that move no status, each recorded once per log (guarded by the absence of its
 *   field: campaign_log_match_event_unset; one function writes it: campaign_log_append_event):
 *     openedAt     the recipient opened the message        (token field otok)
 *     clickedAt    the recipient clicked a link in it       (token field cltok)
 *     complainedAt the recipient reported it as spam       (token field cptok)
 *   They are recorded whatever the log's status, so one that reaches minicrm before the log's
 *   SENT receipt (vendors do not order their events) is kept, and counted once; the later SENT
 *   still moves the log. The token field names the receipts batch that wrote the event (the
 *   counting scheme of workers/receipts.c, like ctok for the status move).
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
    CAMPAIGN_SCHEDULED,
    CAMPAIGN_PAUSED,
    CAMPAIGN_CANCELLED,
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
    CAMPAIGN_LOG_CANCELLED,
    CAMPAIGN_LOG_STATUS_COUNT
} campaign_log_status;

const char *campaign_log_status_name(campaign_log_status st);
int campaign_log_status_parse(const char *s, size_t len, campaign_log_status *out);
bool campaign_log_status_final(campaign_log_status st);

/* ---- campaign moves ------------------------------------------------------------------- */

/* Append the state of a new campaign to doc: status QUEUED, counters
 * total/pending/sent/failed/cancelled 0, checkpoint {last_customer_id: null, written: 0}. */
void campaign_append_new_state(bson_t *doc);

/* The same for a campaign created with a future send_at (ms): status SCHEDULED, send_at. */
void campaign_append_new_scheduled(bson_t *doc, int64_t send_at);

/* Check a send_at given by a client: an ISO 8601 date-time with a zone ("Z", "+HH:MM",
 * "-HH:MM"), after now and at most CAMPAIGN_SEND_AT_MAX_AHEAD_MS ahead. 0 with *out (ms), or -1
 * with the reason (naming send_at) in err. */
#define CAMPAIGN_SEND_AT_MAX_AHEAD_MS (366LL * 24 * 3600 * 1000)
int campaign_send_at_check(const char *s, int64_t now, int64_t *out, char *err, size_t errlen);

/* SCHEDULED -> CANCELLED (cancelReason = reason): its send_at passed too long ago. A no-op for a
 * campaign no longer SCHEDULED. */
int campaign_expire_scheduled(mongoc_collection_t *camps, const bson_oid_t *cid, const char *reason,
                              int64_t now, bson_error_t *e);

/* QUEUED -> CANCELLED (cancelReason = reason): the fan-out cannot use its stored rules, so it
 * can never start (no log was written; every counter stays 0). Without this move the campaign
 * would stay QUEUED and the worker's rescue of job-less campaigns would queue it again and
 * again. A no-op for a campaign no longer QUEUED. */
int campaign_cancel_unsendable(mongoc_collection_t *camps, const bson_oid_t *cid,
                               const char *reason, int64_t now, bson_error_t *e);

/* The array of a campaign's moves whose event is not yet published: [{to: "SENDING", at: ms}]. */
#define CAMPAIGN_EVENTS_DUE "events_due"

/* QUEUED | SCHEDULED -> SENDING (startedAt = now); a no-op for a campaign past them. */
int campaign_mark_sending(mongoc_collection_t *camps, const bson_oid_t *cid, int64_t now,
                          bson_error_t *e);
/* The same, telling in *moved whether this call made the move (its event is then due). */
int campaign_mark_sending_moved(mongoc_collection_t *camps, const bson_oid_t *cid, int64_t now,
                                bool *moved, bson_error_t *e);

/* Every log of the campaign is written: $set fanout_done (stays SENDING). */
int campaign_mark_fanout_done(mongoc_collection_t *camps, const bson_oid_t *cid, int64_t now,
                              bson_error_t *e);

/* SENDING && fanout_done && pending <= 0 -> COMPLETED (completedAt); a no-op otherwise. */
int campaign_try_complete(mongoc_collection_t *camps, const bson_oid_t *cid, bson_error_t *e);
/* The same, telling in *moved whether this call made the move. */
int campaign_try_complete_moved(mongoc_collection_t *camps, const bson_oid_t *cid, bool *moved,
                                bson_error_t *e);

/* ---- operator moves ------------------------------------------------------------------- */

typedef enum {
    CAMPAIGN_MOVE_PAUSE = 0,
    CAMPAIGN_MOVE_RESUME,
    CAMPAIGN_MOVE_CANCEL,
    CAMPAIGN_MOVE_RESCHEDULE,
    CAMPAIGN_MOVE_COUNT
} campaign_move;

/* "pause", "resume", "cancel", "reschedule". */
const char *campaign_move_name(campaign_move m);
/* Parse a move name (NUL-terminated). 0, or -1. */
int campaign_move_parse(const char *s, campaign_move *out);
/* The one table of legal operator moves: may move m start from state `from`? */
bool campaign_move_legal(campaign_move m, campaign_status from);

/* Results of campaign_move. */
enum { CAMPAIGN_MOVED = 0, CAMPAIGN_ILLEGAL = 1, CAMPAIGN_NOT_FOUND = 2 };

/* Apply move m to campaign cid: read its state, check the table, update guarded by the state
 * read (retried if it changed meanwhile). CAMPAIGN_MOVED with *from and *to filled (resume goes
 * to SENDING if the fan-out had started, else QUEUED; *fanout_done tells the caller whether the
 * campaign job must run again), CAMPAIGN_ILLEGAL with *from = the current state,
 * CAMPAIGN_NOT_FOUND, or -1 with e filled. `reason` (cancel, may be NULL) is stored as
 * cancelReason. fanout_done may be NULL. */
int campaign_move_apply(mongoc_collection_t *camps, const bson_oid_t *cid, campaign_move m,
                        const char *reason, int64_t now, campaign_status *from, campaign_status *to,
                        bool *fanout_done, bson_error_t *e);

/* SCHEDULED -> SCHEDULED with a new send_at (ms), through the move table like
 * campaign_move_apply (same results; *from filled). */
int campaign_reschedule(mongoc_collection_t *camps, const bson_oid_t *cid, int64_t send_at,
                        int64_t now, campaign_status *from, bson_error_t *e);

/* The bulk cancel: every PENDING log of cid whose _id is not in keep[0..nkeep) (logs whose send
 * the vendor already has) becomes CANCELLED, in one update_many. *modified (may be NULL) gets
 * the number moved. 0 or -1. */
int campaign_cancel_logs(mongoc_collection_t *logs, const bson_oid_t *cid, const bson_oid_t *keep,
                         size_t nkeep, int64_t now, int64_t *modified, bson_error_t *e);

/* Make the counters of a cancelled campaign exact again from its logs: total = its logs,
 * cancelled = its CANCELLED logs, pending moved by the same differences (receipts keep moving
 * sent/failed/pending concurrently: the update is an $inc guarded by the total and cancelled it
 * read, retried if they moved). Idempotent; call after campaign_cancel_logs, with the fan-out
 * stopped. 0 or -1. */
int campaign_cancel_recount(mongoc_collection_t *camps, mongoc_collection_t *logs,
                            const bson_oid_t *cid, bson_error_t *e);

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

/* Mark a move to FAILED as a hard bounce: append bounced: true to the move's $set (after
 * campaign_log_append_final with reason "bounced"). */
void campaign_log_append_bounce(bson_t *set);

/* Events recorded on a log without moving its status. */
typedef enum {
    CAMPAIGN_LOG_EV_OPENED = 0,
    CAMPAIGN_LOG_EV_CLICKED,
    CAMPAIGN_LOG_EV_COMPLAINED,
    CAMPAIGN_LOG_EV_COUNT
} campaign_log_event;

/* The log field of event ev ("openedAt", "clickedAt", "complainedAt") and its token field
 * ("otok", "cltok", "cptok"). */
const char *campaign_log_event_field(campaign_log_event ev);
const char *campaign_log_event_token(campaign_log_event ev);

/* Append {<field>: {$exists: false}} to a selector: the guard of recording ev (once per log). */
void campaign_log_match_event_unset(bson_t *sel, campaign_log_event ev);

/* Append the $set fields recording ev to set: <field> = at, <token field> = tok (the writer's
 * counter token, workers/receipts.c). The caller guards with campaign_log_match_event_unset. */
void campaign_log_append_event(bson_t *set, campaign_log_event ev, int64_t at, const char *tok);

#endif
