/*
 * decide: the vendor simulator's delivery decision for one log id, derived, not stored.
 *
 * A real vendor answers a repeated send (same idempotency key) with the same message id and
 * outcome. Instead of storing every decision in Redis (one key per message: ~40 us of Redis CPU
 * per message at 1,000,000 keys), the decision is a pure function of the log id:
 *
 *     h = HMAC-SHA256(key = receipts.vendor_secret, "minicrm-vendor-decision|" seed "|" log_id)
 *     vendorMsgId = "vm-" + hex(h[0..8))
 *     status      = SENT if (h[8..16) as uint64 >> 11) / 2^53 < success_rate, else FAILED
 *     delay_ms    = min_delay_ms + h[16..24) mod (max_delay_ms - min_delay_ms + 1)
 *
 * With receipt events set (decider_set_events), also:
 *     bounced     = (h[24..32) as uint64 >> 11) / 2^53 < bounce_rate: a BOUNCED receipt instead
 *                   of SENT/FAILED (status FAILED)
 *   and, for a SENT message, from x = SHA-256(h) (one more compression, only then):
 *     opened      = u(x[0..8)) < max(open_rate, click_rate); clicked = u(x[0..8)) < click_rate
 *                   (the same draw: every click is an open)
 *     complained  = u(x[8..16)) < complaint_rate
 *     open_ms, click_ms, complaint_ms: each event's delay after the SENT receipt, in
 *                   [min_delay_ms, max_delay_ms] from x[16..20), x[20..24), x[24..28)
 *                   (a click comes after its open: click_ms >= open_ms)
 * With every event rate 0 the decisions are exactly the ones without events.
 *
 * so every simulator instance of a deployment (same secret and vendor_sim.seed), before and after
 * any restart, gives a log id the same vendorMsgId, outcome and delay. The due time (first
 * decision + delay) is made durable by the caller's schedule ZSET, as before.
 *
 * A decider holds one OpenSSL MAC context: not thread-safe (one per thread); the simulator is
 * single-threaded.
 */
#ifndef MINICRM_VENDOR_DECIDE_H
#define MINICRM_VENDOR_DECIDE_H

#include "campaign.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct decider decider;

typedef struct decision {
    char vmid[20];              /* "vm-" + 16 hex digits */
    campaign_log_status status; /* CAMPAIGN_LOG_SENT or CAMPAIGN_LOG_FAILED */
    int64_t delay_ms;           /* in [min_delay_ms, max_delay_ms] */
    bool bounced;               /* a hard bounce: BOUNCED instead of SENT/FAILED (status FAILED) */
    bool opened, clicked, complained;        /* later events of a SENT message */
    int64_t open_ms, click_ms, complaint_ms; /* their delays after the SENT receipt */
} decision;

/* A decider for one deployment. secret: the HMAC key (copied); seed: vendor_sim.seed;
 * success_rate in [0, 1]; 0 <= min_delay_ms <= max_delay_ms. NULL on bad arguments or when
 * OpenSSL cannot set up HMAC-SHA256. Free with decider_free. */
decider *decider_new(const char *secret, long seed, double success_rate, int min_delay_ms,
                     int max_delay_ms);
/* Receipt events (see above): every rate in [0, 1]. 0, or -1 on a bad rate (nothing changed). */
int decider_set_events(decider *d, double bounce_rate, double complaint_rate, double open_rate,
                       double click_rate);
/* NULL-safe. */
void decider_free(decider *d);

/* The decision for `log_id` (any bytes, len of them). 0, or -1 if OpenSSL fails. */
int decider_decide(decider *d, const char *log_id, size_t len, decision *out);

#endif
