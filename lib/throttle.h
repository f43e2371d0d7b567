/*
 * throttle: send-rate limits shared by every process on every host, a GCRA (generic cell rate
 * algorithm, the token bucket written as one timestamp) kept in Redis and moved by one Lua
 * script, so two consumers on two hosts taking from the same limiter never both get the last
 * token.
 *
 * One limiter = one Redis string, its "theoretical arrival time" (TAT, microseconds on the Redis
 * server's clock, so the hosts' clocks do not matter):
 *
 *   P{rate:NAME}   STRING  TAT in us since the epoch; expires once it is in the past (an idle
 *                          limiter costs nothing and starts full)
 *
 * with NAME "vendor" (the global vendor.rate_per_s), "campaign:<24 hex>" (a campaign's own
 * rate_per_s) or "vendor-sim:429" (the simulator's stand-in for a vendor's own limit). The
 * {rate:NAME} hash tag gives each limiter a slot of its own, so the script (one key) stays valid
 * on a Redis Cluster.
 *
 * The model, at rate r per second: a token every T = 1/r s, and at most B = THROTTLE_BURST_MS
 * worth of tokens ahead of schedule (B = max(1, ceil(r * THROTTLE_BURST_MS / 1000))). A take of
 * n grants k = min(n, what is free now) and moves TAT by k * T; the answer is (k, the time until
 * the next token is free). So in any window of W seconds at most r * W + B tokens are granted,
 * whoever asks, and a caller never polls: it sleeps for the wait it was given.
 *
 * The script is loaded once per handle (SCRIPT LOAD) and run with EVALSHA; a NOSCRIPT answer (a
 * Redis restart, SCRIPT FLUSH) loads it again and repeats the call once.
 *
 * throttle_take_sends is the one call a consumer that hands sends to a vendor makes (the
 * vendor simulator today, a real connector later): the campaign's limiter first, then the
 * global one; what the global one refuses is given back to the campaign's. With no limit set
 * (both rates 0) it grants everything and makes no Redis call at all.
 *
 * Threads: a handle borrows an rconn and, like it, is not thread-safe and must not cross fork().
 * Errors: 0 on success, -1 with throttle_error() set.
 */
#ifndef MINICRM_THROTTLE_H
#define MINICRM_THROTTLE_H

#include "rconn.h"

#include <stdint.h>

/* Tokens a limiter may grant ahead of its schedule, as milliseconds of its rate. */
#define THROTTLE_BURST_MS 50
/* Longest limiter name (after "P{rate:"). */
#define THROTTLE_MAX_NAME 64

typedef struct throttle throttle;

/* A handle on connection c (borrowed; must outlive it) for keys under `prefix` (copied).
 * Does not contact Redis. NULL on out of memory. */
throttle *throttle_new(rconn *c, const char *prefix);
/* NULL-safe. */
void throttle_free(throttle *t);
const char *throttle_error(const throttle *t);

/* Take up to n (>= 1) tokens from limiter `name` running at rate_per_s (> 0). *granted gets
 * how many were taken (0..n), *wait_ms how long until the next one is free (0 when all n were
 * granted and another is free at once). 0, or -1 (nothing taken). */
int throttle_take(throttle *t, const char *name, double rate_per_s, long n, long *granted,
                  int64_t *wait_ms);
/* Give back n tokens just taken and not used (the TAT moves back, never before now). */
int throttle_give_back(throttle *t, const char *name, double rate_per_s, long n);

/* Which limiter held a take of sends back. */
typedef enum { THROTTLE_NONE = 0, THROTTLE_GLOBAL, THROTTLE_CAMPAIGN } throttle_by;

/* Take up to n sends of campaign `campaign_hex` (24 hex, or NULL/"" for sends of no campaign)
 * under the global rate (vendor.rate_per_s; 0 = none) and the campaign's own (0 = none).
 * *granted, *wait_ms as throttle_take; *by names the limiter that refused the rest
 * (THROTTLE_NONE when all were granted). Both rates 0: everything granted, no Redis call.
 * 0, or -1 (nothing taken). */
int throttle_take_sends(throttle *t, double global_rate, const char *campaign_hex,
                        double campaign_rate, long n, long *granted, int64_t *wait_ms,
                        throttle_by *by);

#endif
