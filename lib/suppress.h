/*
 * suppress: the suppression list, the addresses minicrm must never mail again, and the one
 * owner of every write to it and of the derived flag it keeps on customers.
 *
 * Collection `suppressions` (DB_SUPPRESSIONS), one document per address:
 *
 *     {_id: ObjectId, email: "<lower case>", reason: "unsubscribed"|"bounced"|"complained"|
 *      "manual", at: Date, source: "<24 hex log id>" | null, notify?: true}
 *
 *   email is unique (index email_1, built by minicrm-api at start with the other indexes).
 *   The first suppression of an address wins: adding it again (another reason, another log)
 *   changes nothing and reports created = false, so every writer is idempotent.
 *   notify: true marks a suppression whose webhook event (contact.unsubscribed, for reason
 *   unsubscribed) may not have been pushed yet; suppress_notify_pending() pushes those and
 *   clears the mark (index notify_1_at_1, partial on notify: true, so it holds only those).
 *
 * The derived flag. Customers (customer1) whose address is suppressed carry `suppressed: true`;
 * lib/rules adds `suppressed: {$ne: true}` to every audience filter, so previews and the
 * fan-out skip them inside the audience query itself (no extra round trip per message). The
 * suppressions collection is the source of truth; the flag is written
 *
 *   - by suppress_add:    upsert the suppression, THEN update_many {email} $set suppressed;
 *   - by customer writers: insert the customer, THEN suppress_flag_customer (reads the
 *                          suppression, sets the flag if there is one);
 *   - by suppress_remove: delete the suppression, THEN update_many {email} $unset suppressed,
 *                          THEN re-read the suppression and set the flag again if one came back.
 *
 * Each writer writes its own document first and reads the other's second, so when a customer is
 * inserted while its address is being suppressed at least one of the two sees the other's write
 * and the flag ends set (both may set it: harmless). suppress_rebuild_flags() recomputes every
 * flag from the suppressions collection (after a restore, a bulk import that bypassed this
 * module, or an interrupted remove): `minicrm suppressions rebuild`.
 *
 * Crash points of suppress_add: after the upsert, before the flag: the address is suppressed
 * but its customer may still be mailed until the add is retried (every caller retries on error:
 * the API answers 5xx, the receipts worker retries its batch) or the flags are rebuilt; the
 * retried add finds the suppression (created = false) and still sets the flag.
 *
 * Functions take the caller's collection handles (not thread-safe, as the handles are not) and
 * return 0, or -1 with e filled (an invalid email or reason: domain 0, code 0, message).
 */
#ifndef MINICRM_SUPPRESS_H
#define MINICRM_SUPPRESS_H

#include <bson/bson.h>
#include <mongoc/mongoc.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DB_SUPPRESSIONS    "suppressions"
#define SUPPRESS_EMAIL_MAX 254 /* bytes of an address; buffers need SUPPRESS_EMAIL_MAX + 1 */

typedef enum {
    SUPPRESS_UNSUBSCRIBED = 0, /* the recipient asked (one-click unsubscribe, /u/<token>) */
    SUPPRESS_BOUNCED,          /* a hard bounce receipt */
    SUPPRESS_COMPLAINED,       /* a spam complaint receipt */
    SUPPRESS_MANUAL,           /* an operator (API, CLI, import) */
    SUPPRESS_REASON_COUNT
} suppress_reason;

/* "unsubscribed", "bounced", "complained", "manual". */
const char *suppress_reason_name(suppress_reason r);
/* Parse a reason name (NUL-terminated, exact). 0, or -1. */
int suppress_reason_parse(const char *s, suppress_reason *out);

/* True if s (may be NULL) is an e-mail address: local@domain.tld, at most 64 bytes of printable
 * local part without specials, a dotted domain of letters, digits and inner hyphens, at most
 * SUPPRESS_EMAIL_MAX bytes in all. The one check for addresses (API customers, messages too). */
bool suppress_email_valid(const char *s);
/* Check an e-mail address (suppress_email_valid) and write it lower-cased into out. 0, or -1
 * if it is not one. */
int suppress_email_norm(const char *in, char out[SUPPRESS_EMAIL_MAX + 1]);

/* Suppress `email` (normalised here) for `why`, from log source_log_hex (24 hex) or NULL, at
 * now (ms): idempotent upsert, then the customer flag. *created (may be NULL) = true when this
 * call made the suppression. A suppression for reason unsubscribed is created with notify:
 * true (see above). */
int suppress_add(mongoc_collection_t *supps, mongoc_collection_t *custs, const char *email,
                 suppress_reason why, const char *source_log_hex, int64_t now, bool *created,
                 bson_error_t *e);

/* Suppress n addresses at once (an import): emails[i] already normalised (suppress_email_norm),
 * why[i] its reason, source null; one ordered bulk of upserts, then one update_many of the
 * customer flags, per call (callers pass at most a few thousand). *added / *existing (may be
 * NULL) count new suppressions and addresses already suppressed (a repeat inside the batch
 * counts as existing). */
int suppress_add_batch(mongoc_collection_t *supps, mongoc_collection_t *custs,
                       const char *const *emails, const suppress_reason *why, size_t n, int64_t now,
                       int64_t *added, int64_t *existing, bson_error_t *e);

/* Remove the suppression of `email`, then the customer flag. *removed (may be NULL) = whether
 * there was one. */
int suppress_remove(mongoc_collection_t *supps, mongoc_collection_t *custs, const char *email,
                    bool *removed, bson_error_t *e);

/* Look `email` up: *found, and *why when found (why may be NULL). */
int suppress_find(mongoc_collection_t *supps, const char *email, bool *found, suppress_reason *why,
                  bson_error_t *e);

/* Call after inserting a customer: set its flag if its address is suppressed. *suppressed (may
 * be NULL) = whether it is. */
int suppress_flag_customer(mongoc_collection_t *supps, mongoc_collection_t *custs,
                           const char *email, bool *suppressed, bson_error_t *e);

/* Recompute every customer flag from the suppressions collection: set it on the customers of
 * every suppression (update_many by batches of addresses), clear it on flagged customers whose
 * address has none. *set / *cleared (may be NULL) count the customers changed. */
int suppress_rebuild_flags(mongoc_collection_t *supps, mongoc_collection_t *custs, int64_t *set,
                           int64_t *cleared, bson_error_t *e);

/* The audience clause itself ({suppressed: {$ne: true}}) is lib/rules' (rules_filter,
 * RULES_SUPPRESSED_FIELD): audiences depend on the flag, not on this module. */

/* ---- events of new suppressions -------------------------------------------------------- */

struct queue;

/* Push the contact.unsubscribed event of `email` (suppressed at `at`, ms) on `events` (the
 * QUEUE_EVENTS queue), then clear its notify mark. The event id is deterministic per address,
 * so a repeated push is the same event. 0 or -1. */
int suppress_notify(mongoc_collection_t *supps, struct queue *events, const char *email, int64_t at,
                    bson_error_t *e);

/* Recovery: push the event of every suppression still marked notify whose `at` is older than
 * older_than (ms; a writer that has just added one is still pushing it), at most `max` of them.
 * *pushed (may be NULL) counts them. Run periodically (minicrm-api does); a crash between a
 * suppression and its push is recovered here. 0 or -1. */
int suppress_notify_pending(mongoc_collection_t *supps, struct queue *events, int64_t older_than,
                            int max, int *pushed, bson_error_t *e);

#endif
