/*
 * pacer: the consumer-side half of the send-rate limits. It holds, in the consumer's memory, the
 * sends that are claimed but not yet allowed out (lib/throttle said wait), and hands them to the
 * vendor, through the caller's hand function, as fast as the limits and the vendor allow. The
 * vendor simulator uses it today; a real vendor connector uses the same one.
 *
 * A run (pacer_run) goes over the waiting groups, the priority lane's first (one-off messages:
 * served first, from the global limiter only), then the bulk ones in claim order. For each group
 * that is not waiting on its campaign, one throttle_take_sends asks for everything it still holds;
 * what is granted is handed at once (a batch of sends takes many tokens in one call), the rest
 * waits:
 *   - refused by its campaign's limiter: that campaign's groups sleep for the wait they were
 *     given, and the run goes on with the other campaigns (a slow campaign never holds another
 *     one's sends back: no head-of-line blocking inside a consumer);
 *   - refused by the global limiter: the whole pacer sleeps for the wait (every campaign shares
 *     that limit, nothing else could go anyway);
 *   - the vendor answered 429 for part of a hand-over: the pacer sleeps for its Retry-After and
 *     the refused sends are handed again afterwards (never failed because of a 429).
 * Sleeps are at least PACER_MIN_WAIT_MS, so each wake-up hands a few tokens' worth at once
 * instead of one call per token. Nothing polls: pacer_next_ms tells the consumer loop when to
 * run again.
 *
 * Crash safety is the caller's: the pacer only holds copies of sends whose job stays claimed in
 * Redis until every send of it was handed and reported, so a kill -9 loses nothing (the job is
 * handed back and sent again; the vendor's idempotency and the receipts worker absorb repeats).
 *
 * Ownership: pacer_add takes over the sends array (malloc'd); `owner` is carried to the hand
 * function, never dereferenced. Not thread-safe; the throttle handle is borrowed.
 */
#ifndef MINICRM_PACER_H
#define MINICRM_PACER_H

#include "jobs.h"
#include "throttle.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Shortest sleep after a limiter said wait, ms. */
#define PACER_MIN_WAIT_MS 10

/* Hand sends[0..n) of `owner` to the vendor. *accepted: how many of them (a prefix) the vendor
 * took; the rest it refused with 429 and Retry-After *retry_after_ms. 0, or -1 (nothing
 * accepted; the pacer tries again after a short pause). */
typedef int (*pacer_hand_fn)(void *arg, void *owner, const jobs_send_in *sends, size_t n,
                             size_t *accepted, int64_t *retry_after_ms);

typedef struct pacer pacer;

/* Figures for progress lines (totals since pacer_new). */
typedef struct pacer_stats {
    long long handed;     /* sends handed to the vendor */
    long long waits;      /* times a limiter said wait */
    long long refused429; /* sends the vendor answered 429 (handed again later) */
} pacer_stats;

/* A pacer taking from t (borrowed) at the global rate (vendor.rate_per_s; 0 = none), handing
 * through fn(arg, ...). NULL on out of memory. */
pacer *pacer_new(throttle *t, double global_rate, pacer_hand_fn fn, void *arg);
/* Frees what is still waiting (the sends; never the owners). NULL-safe. */
void pacer_free(pacer *p);

/* Queue n sends of owner (campaign_hex: 24 hex or "", its own rate or 0) for handing; takes
 * over `sends` (also on failure). 0, or -1 out of memory. */
int pacer_add(pacer *p, void *owner, bool priority, const char *campaign_hex, double campaign_rate,
              jobs_send_in *sends, size_t n);
/* Hand what the limits allow now (see above). Returns the number handed, or -1 if Redis or the
 * hand function failed (the pacer pauses briefly; nothing is lost). */
long pacer_run(pacer *p, int64_t now_ms);
/* When pacer_run has something to do next (ms, time_mono_ms clock); INT64_MAX when nothing
 * waits. */
int64_t pacer_next_ms(const pacer *p, int64_t now_ms);
/* Sends waiting, in all / of one campaign. */
size_t pacer_waiting(const pacer *p);
size_t pacer_waiting_campaign(const pacer *p, const char *campaign_hex);
/* Sends waiting that are not asleep on their campaign's limiter (what the global limiter and
 * the vendor decide): a consumer claims more only while this is small, so several consumers
 * share a campaign instead of the first one holding all of it. */
size_t pacer_waiting_ready(const pacer *p, int64_t now_ms);
void pacer_get_stats(const pacer *p, pacer_stats *out);

#endif
