/*
 * unsubscriber: the vendor simulator's recipients who press one-click unsubscribe.
 *
 * A share vendor_sim.unsubscribe_rate of the recipients of delivered (SENT) messages
 * unsubscribes, decided per log like every other decision of the simulator (decide.h), so
 * every instance, before and after a restart, picks the same recipients:
 *
 *     h = HMAC-SHA256(receipts.vendor_secret, "minicrm-vendor-unsub|" seed "|" log_id)
 *     unsubscribes  iff  (h[0..8) as uint64 >> 11) / 2^53 < unsubscribe_rate
 *
 * and does what a mailbox provider does for RFC 8058: POST the send's unsubscribe_url with
 * the body List-Unsubscribe=One-Click (application/x-www-form-urlencoded). The URLs wait in a
 * FIFO (at most VUNSUB_MAX_WAITING; beyond that one is counted as dropped and logged) and are
 * posted a few per turn over one keep-alive libcurl handle; a transport error or 5xx keeps the
 * URL for a later turn, any other answer settles it (4xx counted as refused). A crash loses
 * the FIFO, and the re-sent jobs (the simulator's crash rule) decide the same recipients
 * again; the route is idempotent.
 *
 * Cost: nothing when the rate is 0; else one HMAC per SENT message on a MAC context set up once
 * (as decide.c does).
 *
 * Not thread-safe; one per simulator (single-threaded).
 */
#ifndef MINICRM_VENDOR_UNSUBSCRIBER_H
#define MINICRM_VENDOR_UNSUBSCRIBER_H

#include <stdbool.h>
#include <stddef.h>

#define VUNSUB_MAX_WAITING 100000

typedef struct vunsub vunsub;

/* Does the recipient of log_id (24 hex) unsubscribe? Pure (one HMAC set up per call: for
 * tests); false when rate <= 0 or HMAC fails. */
bool vunsub_decide(const char *secret, long seed, double rate, const char *log_id);

/* For the deployment's secret, seed and rate (copied). NULL on out-of-memory, libcurl or
 * OpenSSL failure. */
vunsub *vunsub_new(const char *secret, long seed, double rate, int timeout_ms);
/* vunsub_decide with the MAC context kept (one HMAC, no set-up, per message). */
bool vunsub_wants(vunsub *u, const char *log_id);
/* NULL-safe. */
void vunsub_free(vunsub *u);
/* Queue one POST to url (copied). 0, or -1 when the FIFO is full or out of memory (counted). */
int vunsub_add(vunsub *u, const char *url);
/* POST up to max waiting URLs; stops at the first transport error or 5xx (kept for later).
 * Returns how many were settled. */
int vunsub_flush(vunsub *u, int max);
/* Counters for progress lines. */
void vunsub_counts(const vunsub *u, long long *posted, long long *refused, long long *dropped,
                   size_t *waiting);

#endif
