/*
 * receipts: applying vendor delivery receipts to communication logs and campaign counters
 * (minicrm-receipts), plus the sweeper for logs whose receipt never came.
 *
 * Guarantees:
 *  - A log moves only PENDING -> SENT | FAILED, once; a repeated receipt is a no-op. A BOUNCED
 *    receipt is that move to FAILED (reason "bounced", bounced: true); COMPLAINED, OPENED and
 *    CLICKED record complainedAt / openedAt / clickedAt once per log, whatever its status (an
 *    event that arrives before the log's SENT is kept; the SENT still moves the log).
 *  - Counters bounced (also in failed), complained, opened, clicked change exactly once per log
 *    and event, under the same token as sent/failed (each event has its own token field on the
 *    log: otok, cltok, cptok; the recovery counts what a crashed batch recorded).
 *  - The address of a bounce or a complaint is suppressed (lib/suppress, the log as source), by
 *    the batch that recorded it, or by the recovery of a batch that died first.
 *  - Webhook events (lib/jobs, QUEUE_EVENTS): message.failed for every log a batch moved to
 *    FAILED (not a bounce), message.bounced for a bounce, contact.complained for a complaint,
 *    pushed before the token is forgotten, and again by the recovery of a crashed batch (their
 *    ids are deterministic per log: a repeat is the same event).
 *  - Campaign counters (sent, failed, pending) change exactly once per log, even if the process
 *    dies at any point: every batch carries a fresh token written into the logs it moves
 *    (`ctok`) and remembered in Redis (P{receipts}:ctoks, with its owner consumer id) until the
 *    campaign update that counts those logs has run; that update is guarded by the token
 *    ({ctoks: {$ne: tok}} + $push), so the token recovery (receipts_recover) can redo it
 *    safely after a crash, as soon as the owner's heartbeat has expired.
 *  - MongoDB errors -> every receipt of the batch is retried with backoff (lib/queue); after
 *    the last attempt it is dead-lettered with the error. Malformed receipts and receipts for
 *    unknown logs are dead-lettered at once with the reason.
 *  - The sweeper (one at a time across all receipts workers, via a Redis lock) re-sends logs
 *    PENDING longer than receipts.vendor_timeout_s and, after receipts.max_resends re-sends,
 *    fails them by pushing a synthetic FAILED receipt, so that the same exactly-once path counts
 *    them. The timeout only runs once nothing waits in the sends and priority queues (a log
 *    waiting for its turn behind a rate limit is not late; receipts.c, "sweeper"), and a re-send
 *    carries its campaign's rate_per_s.
 *
 * Not thread-safe: one receipts_ctx per process (single-threaded loop).
 */
#ifndef MINICRM_WORKERS_RECEIPTS_H
#define MINICRM_WORKERS_RECEIPTS_H

#include "config.h"
#include "dbpool.h"
#include "queue.h"
#include "rconn.h"

#include <stdint.h>

typedef struct receipts_ctx {
    const minicrm_config *cfg;    /* not owned */
    rconn *rc;                    /* not owned */
    dbpool *db;                   /* not owned */
    queue *q;                     /* receipts consumer (owned by caller) */
    queue *sends;                 /* sends producer, for re-sends (owned by caller) */
    queue *events;                /* webhook events producer (QUEUE_EVENTS; owned by caller;
                                     NULL: no events are emitted) */
    int64_t applied, noops, dead; /* totals, for logs and tests */
    size_t last_receipts;         /* receipts in the jobs of the last batch (sizes claims) */
} receipts_ctx;

/* Apply one claimed batch (jobs of one receipt or {"receipts": [...]} each): settles every job of
 * `b` (ack, retry or dead-letter). Returns 0, or -1 if Redis failed part-way (the jobs stay
 * claimed; the caller calls again with the same batch after a pause). */
int receipts_apply_batch(receipts_ctx *x, const queue_batch *b);

/* Redo the counter updates of tokens left by a crashed batch: every token whose owner (the
 * consumer that registered it, P{receipts}:ctok-owners) has no live heartbeat any more, and
 * every token older than `min_age_ms` (a token without an owner, or a live consumer's that was
 * left behind). Safe against a live owner still applying the batch (the fence, receipts.c).
 * Returns the number of tokens settled, or -1. */
int receipts_recover(receipts_ctx *x, int64_t min_age_ms);

/* One sweep (if this process wins the sweep lock). Returns the number of logs re-sent or
 * failed, or -1. */
int receipts_sweep(receipts_ctx *x);

#endif
