/*
 * fake429: the simulator's stand-in for a vendor's own rate limit
 * (vendor_sim.fake_429_above_per_s).
 *
 * Real vendors cap an account's sends per second and answer what is above the cap with
 * 429 Too Many Requests and a Retry-After header. This module answers like one: a fixed window
 * per wall-clock second, shared by every simulator instance of the deployment (the account),
 *
 *   P{rate:vendor-sim:429}:SECOND   STRING  sends accepted in that second (expires after 5 s)
 *
 * A hand-over of n sends is accepted up to what is left of the second's cap; the rest gets
 * "429, Retry-After: 1" (whole seconds, as the header is), which the consumer obeys before
 * handing them again (lib/pacer). One INCRBY per hand-over, only when the switch is on.
 *
 * Not thread-safe; borrows the rconn.
 */
#ifndef MINICRM_VENDOR_FAKE429_H
#define MINICRM_VENDOR_FAKE429_H

#include "rconn.h"

#include <stddef.h>
#include <stdint.h>

typedef struct fake429 {
    rconn *rc;
    char prefix[128];
    double above_per_s; /* 0: never answer 429 */
    long long answered; /* sends answered 429 so far */
} fake429;

/* Fill f (prefix copied, rc borrowed). */
void fake429_init(fake429 *f, rconn *rc, const char *prefix, double above_per_s);
/* The vendor's answer to n sends handed at now_ms (wall clock): *accepted of them (a prefix)
 * taken, the rest answered 429 with Retry-After *retry_after_s. 0, or -1 (Redis error: nothing
 * accepted). */
int fake429_offer(fake429 *f, int64_t now_ms, size_t n, size_t *accepted, int *retry_after_s);

#endif
