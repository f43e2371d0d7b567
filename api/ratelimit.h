/*
 * ratelimit: per-client request limit of one API process (api.rate_limit_per_min; 0 = off).
 *
 * A fixed one-minute window per client address, counted in a fixed-size table (4096 slots,
 * hashed by address, striped locks): memory is bounded whatever the number of clients. Two
 * clients whose addresses share a slot take it over from each other, which can only let a
 * client through early, never refuse one wrongly. The limit is per API process; behind several
 * API instances it applies to each. Health, readiness, metrics and signed receipts are not
 * limited (the vendor posts receipts at high rates from one address; they are authenticated
 * by HMAC and batched).
 *
 * Thread-safe. ratelimit_new/ratelimit_free own the table.
 */
#ifndef MINICRM_API_RATELIMIT_H
#define MINICRM_API_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

typedef struct ratelimit ratelimit;

/* per_min 0 returns NULL (no limit); NULL is a valid limiter that allows everything. */
ratelimit *ratelimit_new(int per_min);
void ratelimit_free(ratelimit *rl);
/* Count one request from `client` at `now_ms`; true if it is allowed. *retry_after_s tells
 * when the window resets (set only when refused). */
bool ratelimit_allow(ratelimit *rl, const char *client, int64_t now_ms, int *retry_after_s);
/* True when `client` has used up its requests of the current window at `now_ms` (counts
 * nothing): lets a caller count only failures (ratelimit_allow on each) and refuse before
 * trying once they are spent. *retry_after_s as above. */
bool ratelimit_spent(ratelimit *rl, const char *client, int64_t now_ms, int *retry_after_s);
/* True for paths that are never limited. */
bool ratelimit_exempt(const char *path);

#endif
