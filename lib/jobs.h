/*
 * jobs: the one encoder and decoder of every payload that crosses a Redis queue (lib/queue),
 * and of the receipt objects the vendor posts (disque's serializeJob/deserializeJob).
 *
 * Payloads (JSON text, readable with redis-cli; field names are the wire contract):
 *
 *   campaigns  {"campaign_id": "<24 hex>"}
 *   sends      one send   {"log_id", "campaign_id"?, "customer_id"?, "message", "vendorMsgId"?,
 *                          "resend"?, "unsubscribe_url"?}
 *              a batch    {"campaign_id", "rate_per_s"?, "sends": [{"log_id", "customer_id",
 *                         "message", "unsubscribe_url"?}, ...]} (rate_per_s: the campaign's own
 *                         send rate, for whoever hands the sends to the vendor, lib/throttle)
 *                         (at most JOBS_SENDS_PER_JOB sends, closed once past
 *                         JOBS_SEND_JOB_BYTES; a send inside may name its own campaign_id)
 *   priority   one send, as above, without campaign_id (POST /api/messages; the vendorMsgId
 *              the route answered)
 *   receipts   one receipt {"log_id", "campaign_id"?, "vendorMsgId": string|null,
 *                           "status": "SENT"|"FAILED"|"PENDING"|"BOUNCED"|"COMPLAINED"|
 *                                     "OPENED"|"CLICKED", "at": ms, "reason"?, "event_id"?}
 *                         (the status names the event: see jobs_receipt_kind; event_id is the
 *                         vendor's id of the event, read from "event_id" or "id", carried for
 *                         dead letters and logs only: the log-level guards make a repeat a
 *                         no-op, whatever its id)
 *              a batch    {"receipts": [receipt, ...]} (at most JOBS_RECEIPTS_PER_JOB receipts,
 *                         closed once past JOBS_RECEIPT_JOB_BYTES)
 *   ai         a campaign {"kind": "campaign", "campaign_id"} (its AI tags and draft)
 *              a suggestion {"kind": "suggest", "id": "<64 hex>", "name", "rules": {...}}
 *                         (POST /api/campaigns/suggest-tags; id = ai_suggest_id, lib/ai.h)
 *   events     one event  {"id": "evt_<24 hex>", "type": "campaign.started"|..., "at": ms,
 *                          "data": {...}} (what happened, for the outbound webhooks; the id is
 *                         deterministic per (type, subject), so a re-emitted event is the
 *                         same event and receivers can de-duplicate on it)
 *   webhooks   one delivery {"endpoint_id": "<24 hex>", "id": "evt_<24 hex>", "type", "at": ms,
 *                          "data": {...}} (one event for one endpoint, minicrm-webhooks; type
 *                         is an event type name or JOBS_DELIVERY_TEST_TYPE; the queue's
 *                         "_attempts" is read back as the attempts made so far)
 *
 * `vendorMsgId` in a send is the id the API's POST /api/vendor/send answered with: the vendor
 * reports that id for the log (absent: the vendor picks its own). `resend` counts the
 * sweeper's re-sends. New fields go here: one member in the struct, one line in the encoder
 * and the decoder; decoders ignore members they do not know, so old and new programs can share
 * a queue during a rolling upgrade.
 *
 * `unsubscribe_url` is the log's one-click unsubscribe link (lib/unsub: the vendor puts the
 * List-Unsubscribe and List-Unsubscribe-Post headers with it on the mail); every producer of
 * sends writes it.
 *
 * Speed: encoders write the text by hand (lib/jsonx's jsonx_buf, no JSON tree), decoders read
 * it with lib/jscan (one token array per job, reused by the caller, no tree per item): the
 * fan-out renders 500 sends, the vendor simulator and the receipts worker read thousands of
 * items per second. Encoders produce exactly what json_dumps(JSON_COMPACT) would for the
 * same members in the same order.
 *
 * Ownership: structs passed to encoders are read only; decoded items are copied into the
 * caller's struct, except `raw` pointers, which point into the job text (valid while it is).
 * A jobs_reader borrows the caller's jscan (one per thread). Not thread-safe per object.
 */
#ifndef MINICRM_JOBS_H
#define MINICRM_JOBS_H

#include "campaign.h"
#include "jscan.h"
#include "jsonx.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Caps. */
#define JOBS_CAMPAIGN_BYTES    64           /* a campaign job */
#define JOBS_SENDS_PER_JOB     500          /* sends in one batch job */
#define JOBS_SEND_JOB_BYTES    (512 * 1024) /* a batch job is closed once past this */
#define JOBS_RECEIPTS_PER_JOB  1000         /* receipts in one batch job */
#define JOBS_RECEIPT_JOB_BYTES (512 * 1024) /* a batch job is closed once past this */
#define JOBS_VENDOR_MSG_ID_MAX 128          /* bytes of a vendorMsgId */
#define JOBS_REASON_MAX        199          /* bytes of a failure reason (cut at a character) */
#define JOBS_URL_MAX           511          /* bytes of an unsubscribe_url (UNSUB_URL_MAX) */

/* ---- campaigns ------------------------------------------------------------------------- */

/* Write {"campaign_id":"HEX"} into out (cap >= JOBS_CAMPAIGN_BYTES). Its length, or -1 if
 * campaign_hex is not a 24-hex id. */
int jobs_campaign_encode(const char *campaign_hex, char *out, size_t cap);
/* Read a campaign job into campaign_hex. 0, or -1 with the reason in why. */
int jobs_campaign_decode(const char *data, size_t len, char campaign_hex[25], char *why,
                         size_t whylen);

/* ---- sends ----------------------------------------------------------------------------- */

typedef struct jobs_send {
    const char *log_id;        /* 24 hex, required */
    const char *campaign_id;   /* 24 hex or NULL (in a batch: NULL = the batch's) */
    const char *customer_id;   /* 24 hex or NULL */
    const char *message;       /* NUL-terminated UTF-8; NULL = "" */
    const char *vendor_msg_id; /* the id the API answered, or NULL (single sends only) */
    int resend;                /* re-send count; 0 = not written */

    const char *unsubscribe_url; /* lib/unsub link of the log, or NULL (not written) */
    double rate_per_s; /* single sends only: the campaign's own send rate (0 = not written; a
                          batch carries it in jobs_send_batch instead) */
} jobs_send;

/* Append one send job to out. 0, or -1 if out ran out of memory. */
int jobs_send_encode(jsonx_buf *out, const jobs_send *s);

/* A batch send job being written. Start from {0}. */
typedef struct jobs_send_batch {
    jsonx_buf buf;
    size_t n;          /* sends in buf */
    double rate_per_s; /* the campaign's own send rate, written into every job (0 = none) */
} jobs_send_batch;

/* Append s to the batch of campaign_hex (the first send opens the job). 1 if the job is now
 * full (take it before adding more), 0, -1 out of memory. */
int jobs_send_batch_add(jobs_send_batch *b, const char *campaign_hex, const jobs_send *s);
/* Close the job and hand its text over (*data malloc'd, the caller frees; b is empty after).
 * 0 taken, 1 nothing to take, -1 out of memory. */
int jobs_send_batch_take(jobs_send_batch *b, char **data, size_t *len);
/* Drop what is being written (keep the allocation) / free it. */
void jobs_send_batch_reset(jobs_send_batch *b);
void jobs_send_batch_release(jobs_send_batch *b);

/* A decoded send. */
typedef struct jobs_send_in {
    char log_id[25];
    char campaign_id[25];                           /* "" if neither send nor batch names one */
    char vendor_msg_id[JOBS_VENDOR_MSG_ID_MAX + 1]; /* "" if the send carries none */
    char unsubscribe_url[JOBS_URL_MAX + 1];         /* "" if the send carries none */
} jobs_send_in;

/* ---- receipts -------------------------------------------------------------------------- */

/* What a receipt reports. A delivery receipt moves its log (status SENT or FAILED; PENDING
 * changes nothing); the others are events about the message:
 *   BOUNCED     a hard bounce: status FAILED with reason "bounced" (the log moves like a FAILED
 *               receipt and is marked bounced), and the address is suppressed;
 *   COMPLAINED  a spam report after delivery: complainedAt is set once, the address is
 *               suppressed, the log's status is left alone;
 *   OPENED, CLICKED  engagement: openedAt / clickedAt set once, the status is left alone.
 * For COMPLAINED, OPENED and CLICKED `status` is PENDING (they move no status). */
typedef enum {
    JOBS_RCPT_DELIVERY = 0,
    JOBS_RCPT_BOUNCED,
    JOBS_RCPT_COMPLAINED,
    JOBS_RCPT_OPENED,
    JOBS_RCPT_CLICKED,
    JOBS_RCPT_KIND_COUNT
} jobs_receipt_kind;

#define JOBS_RECEIPT_EVENT_ID_MAX 128 /* bytes of a vendor's event id */
#define JOBS_BOUNCE_REASON        "bounced"

/* Parse a receipt's status name (len bytes): SENT, FAILED, PENDING (kind DELIVERY) or BOUNCED,
 * COMPLAINED, OPENED, CLICKED. 0 with *status and *kind, or -1 for an unknown name. */
int jobs_receipt_status_parse(const char *s, size_t len, campaign_log_status *status,
                              jobs_receipt_kind *kind);
/* The wire name of what r reports ("SENT", ..., "CLICKED"). */
const char *jobs_receipt_status_name(campaign_log_status status, jobs_receipt_kind kind);

typedef struct jobs_receipt {
    char log_id[25];
    campaign_log_status status;
    jobs_receipt_kind kind;                         /* DELIVERY unless an event says otherwise */
    char event_id[JOBS_RECEIPT_EVENT_ID_MAX + 1];   /* "" = none */
    char vendor_msg_id[JOBS_VENDOR_MSG_ID_MAX + 1]; /* "" = none (null) */
    char campaign_id[25];                           /* "" = not named */
    int64_t at;                                     /* delivery time, ms */
    char reason[JOBS_REASON_MAX + 1];               /* "" = none */
} jobs_receipt;

/* Append one receipt object to out. 0, or -1 if out ran out of memory. */
int jobs_receipt_encode(jsonx_buf *out, const jobs_receipt *r);

/* A batch receipts job being written. Start from {0}. */
typedef struct jobs_receipt_batch {
    jsonx_buf buf;
    size_t n;
} jobs_receipt_batch;

/* Same contract as the send batch. */
int jobs_receipt_batch_add(jobs_receipt_batch *b, const jobs_receipt *r);
/* Append an item's JSON text as it is (an event the API could not read, so that the receipts
 * worker dead-letters it with its reason instead of losing the batch around it). Same returns. */
int jobs_receipt_batch_add_raw(jobs_receipt_batch *b, const char *text, size_t len);
int jobs_receipt_batch_take(jobs_receipt_batch *b, char **data, size_t *len);
void jobs_receipt_batch_release(jobs_receipt_batch *b);

/* ---- ai ---------------------------------------------------------------------------------- */

#define JOBS_AI_NAME_MAX  255  /* bytes of a campaign name in a suggest job (the API: 200) */
#define JOBS_AI_ID_LEN    64   /* hex digits of a suggest id */
#define JOBS_AI_RULES_MAX 1024 /* bytes of the rules object's text */

typedef enum { JOBS_AI_CAMPAIGN = 1, JOBS_AI_SUGGEST = 2 } jobs_ai_kind;

/* One ai job (plain value type). */
typedef struct jobs_ai {
    jobs_ai_kind kind;
    char campaign_id[25];            /* JOBS_AI_CAMPAIGN */
    char id[JOBS_AI_ID_LEN + 1];     /* JOBS_AI_SUGGEST */
    char name[JOBS_AI_NAME_MAX + 1]; /* JOBS_AI_SUGGEST */
    /* JOBS_AI_SUGGEST: the audience rules as a JSON object's text (lib/rules; rules_to_json
     * writes it, rules_parse_json reads it; the decoder checks it with rules_parse_json) */
    char rules[JOBS_AI_RULES_MAX];
} jobs_ai;

/* Append the job to out. 0, or -1 (out of memory, or an id that is not one). */
int jobs_ai_encode(jsonx_buf *out, const jobs_ai *j);
/* Read an ai job (queue bookkeeping members are ignored). 0, or -1 with the reason in why. */
int jobs_ai_decode(const char *data, size_t len, jobs_ai *out, char *why, size_t whylen);

/* ---- events (outbound webhooks) ----------------------------------------------------------- */

/* The event types, in the Standard Webhooks naming. New types go here: one value, one name. */
typedef enum {
    JOBS_EV_CAMPAIGN_STARTED = 0, /* QUEUED | SCHEDULED -> SENDING; subject: campaign id */
    JOBS_EV_CAMPAIGN_COMPLETED,   /* -> COMPLETED; subject: campaign id */
    JOBS_EV_CAMPAIGN_PAUSED,      /* -> PAUSED; subject: campaign id + ":" + pausedAt (ms) */
    JOBS_EV_CAMPAIGN_CANCELLED,   /* -> CANCELLED; subject: campaign id */
    JOBS_EV_MESSAGE_FAILED,       /* a log became FAILED (not a bounce); subject: log id */
    JOBS_EV_MESSAGE_BOUNCED,      /* a log became FAILED with reason bounced; subject: log id */
    JOBS_EV_CONTACT_UNSUBSCRIBED, /* an address was suppressed as unsubscribed; subject: email */
    JOBS_EV_CONTACT_COMPLAINED,   /* a spam complaint suppressed an address; subject: log id */
    JOBS_EV_COUNT
} jobs_event_type;

#define JOBS_EVENT_ID_LEN   28          /* "evt_" + 24 hex */
#define JOBS_EVENT_DATA_MAX (16 * 1024) /* bytes of an event's data object */
#define JOBS_EVENT_TYPE_MAX 32          /* bytes of a type name */

/* "campaign.started", ... t must be a valid value. */
const char *jobs_event_type_name(jobs_event_type t);
/* Parse a type name (len bytes). 0, or -1 if it names no event type. */
int jobs_event_type_parse(const char *s, size_t len, jobs_event_type *out);

/* The id of the event of type t about `subject` (see the enum): "evt_" + the first 24 hex of
 * SHA-256(type name || "\0" || subject). Emitting the same event twice (a retried batch, a
 * recovery) gives the same id. out must hold JOBS_EVENT_ID_LEN + 1. */
void jobs_event_id(jobs_event_type t, const char *subject, char out[JOBS_EVENT_ID_LEN + 1]);

/* One event (plain value type for the decoder; the encoder reads `data` as given). */
typedef struct jobs_event {
    jobs_event_type type;
    char id[JOBS_EVENT_ID_LEN + 1];
    int64_t at;       /* when it happened, ms */
    const char *data; /* the data object's JSON text (an object; decoded: points into the job) */
    size_t datalen;
} jobs_event;

/* Append the event to out: {"id","type","at","data"}. 0, or -1 (out of memory, an id that is
 * not one, data that is not an object's text or longer than JOBS_EVENT_DATA_MAX). */
int jobs_event_encode(jsonx_buf *out, const jobs_event *ev);
/* Read an event job (queue bookkeeping members are ignored). out->data points into `data`.
 * 0, or -1 with the reason in why. */
int jobs_event_decode(const char *data, size_t len, jobs_event *out, char *why, size_t whylen);

/* ---- webhook deliveries ------------------------------------------------------------------- */

/* The type of the event POST /api/webhooks/:id/test sends (to that endpoint only; nobody can
 * subscribe to it). */
#define JOBS_DELIVERY_TEST_TYPE "webhook.test"

/* One delivery of an event to an endpoint (plain value type for the decoder; the encoder reads
 * `data` as given). */
typedef struct jobs_delivery {
    char endpoint_id[25];
    char id[JOBS_EVENT_ID_LEN + 1];
    char type[JOBS_EVENT_TYPE_MAX + 1]; /* an event type name or JOBS_DELIVERY_TEST_TYPE */
    int64_t at;                         /* when the event happened, ms */
    const char *data;                   /* the data object's JSON text (decoded: into the job) */
    size_t datalen;
    int attempts; /* decoded: failed attempts so far (the queue's "_attempts"; 0 first time) */
} jobs_delivery;

/* Append the delivery job to out. 0, or -1 (out of memory, a bad id, an unknown type, data
 * that is not an object's text or longer than JOBS_EVENT_DATA_MAX). */
int jobs_delivery_encode(jsonx_buf *out, const jobs_delivery *d);
/* Read a delivery job. out->data points into `data`. 0, or -1 with the reason in why. */
int jobs_delivery_decode(const char *data, size_t len, jobs_delivery *out, char *why,
                         size_t whylen);

/* ---- reading a job of one item or a batch of them --------------------------------------- */

typedef struct jobs_reader {
    jscan *js;        /* borrowed */
    const char *data; /* the job text (borrowed) */
    size_t n;         /* items in the job (1 for a single item) */
    bool batch;       /* the job is a batch form */
    const char *raw;  /* the last item's text in the job (for its dead letter) */
    size_t rawlen;
    double rate_per_s; /* the job's campaign send rate, a batch's or a single send's (0 = none) */
    /* private */
    size_t i;
    int tok;
    char campaign_id[25];
} jobs_reader;

/* Scan a sends job. 0, or -1 if the job as a whole is unusable (reason in *why, static). */
int jobs_sends_open(jobs_reader *r, jscan *js, const char *data, size_t len, const char **why);
/* The next send: 1 (out filled), 0 no more, -1 this send is malformed (reason in *why, static;
 * its text in r->raw). */
int jobs_sends_next(jobs_reader *r, jobs_send_in *out, const char **why);

/* Scan a receipts job. 0, or -1 if the job as a whole is unusable (reason in why). */
int jobs_receipts_open(jobs_reader *r, jscan *js, const char *data, size_t len, char *why,
                       size_t whylen);
/* The next receipt: 1, 0 no more, -1 malformed (reason in why, text in r->raw). A receipt
 * without "at" gets the current time; a FAILED one without "reason" gets "vendor reported
 * FAILED"; a BOUNCED one always has the reason "bounced". */
int jobs_receipts_next(jobs_reader *r, jobs_receipt *out, char *why, size_t whylen);

#endif
