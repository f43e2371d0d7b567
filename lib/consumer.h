/*
 * consumer: the one consumer loop of a queue, shared by minicrm-worker, minicrm-receipts and
 * minicrm-vendor-sim. The loop owns what every consumer does the same way; the program brings
 * what is its own as callbacks.
 *
 * The loop owns:
 *   - start: register the consumer (heartbeat + consumers set), waiting out a Redis that is
 *     not there yet; a consumer that holds jobs across turns first takes back what a previous
 *     run of the same consumer id still held (queue_release_claimed);
 *   - every turn: queue_maintain (heartbeat, due retries, reaper at queue.reap_interval_ms) of
 *     the consumed queue and of an optional second queue the program produces to;
 *   - the claim: queue_claim (or queue_claim_fresh for a consumer that holds jobs), sized and
 *     timed (blocking or not) by the program each turn;
 *   - backoff on Redis errors: backoff_min_ms doubling to backoff_max_ms, reset after a turn
 *     in which Redis answered;
 *   - stop at a batch boundary: the stop predicate is checked before every claim, never while
 *     a batch is being handled; a program that holds jobs keeps turning without claiming for
 *     up to workers.shutdown_timeout_s (the grace) until it holds none;
 *   - hand-back: at the end, every job still claimed goes back to the front of ready and the
 *     consumer unregisters (queue_release_claimed);
 *   - the progress line "<name>.progress <figures>" every progress_ms, written only when the
 *     figures changed since the last line (an idle consumer stays quiet).
 *
 * The program owns (consumer_ops): how much to claim and how long to block (want), what a
 * claimed batch means (handle: settle each job by ack, retry or dead; or, for the vendor
 * simulator, keep it held), what happens between claims (tick: timers, posts, sweeps), how many
 * jobs it still holds (held), and the figures of its progress line (progress).
 *
 * Priority: a program may consume a second queue (consumer_opts.priority: the one-off sends of
 * POST /api/messages) that is always drained first: a claim first takes what is ready
 * there without blocking (at every turn after one that found priority jobs, else at most every
 * CONSUMER_PRIORITY_POLL_MS) (handed to ops->handle_priority; also in a turn in which ops->want
 * said 0, up to CONSUMER_PRIORITY_MIN_CLAIM jobs, so a full in-flight window of bulk work does
 * not hold one-off sends back), then, unless that claim was full (as many jobs as ops->want
 * asked for: there may be more), claims from q as usual; while
 * a priority queue is set, a claim from q blocks at most CONSUMER_PRIORITY_BLOCK_MS, so a
 * priority job waits at most that long on an idle consumer and not at all on a busy one (no
 * busy polling: an idle consumer makes one more round trip per CONSUMER_PRIORITY_BLOCK_MS).
 * The priority queue is registered, maintained and handed back with q.
 *
 * Low lane: a program may also consume a third queue (consumer_opts.low: the receipt events of
 * the receipts worker, OPENED / CLICKED / COMPLAINED, which must never delay a delivery
 * receipt) that is drained after q: claimed (without blocking, as many jobs as ops->want
 * asked for; handed to ops->handle_low) in a turn whose claim from q came back empty (q has
 * no ready work, so nothing in q waits behind it; a merely short claim is common under load,
 * when each job is a large batch), and at least every low_max_wait_ms while q always has work
 * (a bounded share, so the low lane is never starved for good). While the
 * last low claim was full, the claim from q does not block (more low work is ready). The low
 * queue is registered, maintained and handed back with q. Not in a turn in which a full
 * priority claim or ops->want said 0.
 *
 * Turn:  stop? -> maintain -> [claim priority -> handle_priority] -> [claim -> handle (-> again,
 *        backing off)] -> [claim low -> handle_low] -> tick -> progress
 *
 * Events logged (name = consumer_opts.name): <name>.redis_wait (cannot register yet),
 * <name>.redis_error (maintain or claim failed; detail = queue_error), <name>.batch_retry
 * (handle asked to get the same batch again), <name>.stopping (a holding consumer entered its
 * grace period), <name>.progress. The program logs its own started/stopped lines.
 *
 * Threads: a consumer is driven by one thread at a time: consumer_run runs on the thread that
 * owns the queue handles (and their rconn), and every callback is called on that thread,
 * never concurrently with another callback of the same consumer. Several consumers in one
 * process (the receipts worker's threads) each need their own consumer, queue handles and
 * rconn; what their callbacks share across threads is the program's to make thread-safe.
 * The stop predicate defaults to signals_stop_requested(), which is safe from any thread.
 * Never carry a consumer across fork().
 *
 * Memory: the consumer holds no allocation between turns except its claim batch (reused, its
 * jobs freed after handle unless handle took them over, see consumer_ops.handle) and a
 * progress buffer; the queue handles are borrowed and must outlive it. The hot path (claim,
 * handle, tick) adds no allocation and no Redis round trip to what the program's callbacks do.
 */
#ifndef MINICRM_CONSUMER_H
#define MINICRM_CONSUMER_H

#include "queue.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest claim block on the bulk queue of a consumer that also has a priority queue. */
#define CONSUMER_PRIORITY_BLOCK_MS 50
/* A priority claim that found nothing is not repeated before this many ms (a busy consumer
 * turns far more often than that: one round trip per turn would cost the bulk throughput). */
#define CONSUMER_PRIORITY_POLL_MS 20
/* Priority jobs claimed in a turn in which ops->want said 0. */
#define CONSUMER_PRIORITY_MIN_CLAIM 16
/* Default longest wait of the low lane while the bulk queue always has work. */
#define CONSUMER_LOW_MAX_WAIT_MS 1000

/* What handle made of a claimed batch. */
typedef enum consumer_result {
    CONSUMER_OK = 0,  /* taken care of (settled, or held on purpose by the program) */
    CONSUMER_AGAIN,   /* not settled and still ours (Redis went away mid-batch): back off and
                       * call handle again with the same batch; every step must be idempotent */
    CONSUMER_BACKOFF, /* trouble: back off once, then go on (the jobs stay claimed in Redis
                       * and come back through the claim, the next start or the reaper) */
} consumer_result;

/* The program's part of the loop. `arg` is consumer_opts.arg. Only handle is required. */
typedef struct consumer_ops {
    /* Jobs to claim this turn (0: do not claim) and, in *block_ms (preset to
     * consumer_opts.block_ms), how long the claim may block when nothing is ready. NULL: claim
     * one job, blocking block_ms. */
    size_t (*want)(void *arg, int *block_ms);
    /* Handle a claimed batch (b->n >= 1). The batch's jobs are freed after the call; a handler
     * that keeps a job takes over its data and sets data to NULL in the batch. */
    consumer_result (*handle)(void *arg, queue_batch *b);
    /* Handle a batch claimed from consumer_opts.priority (same contract as handle). NULL:
     * handle. */
    consumer_result (*handle_priority)(void *arg, queue_batch *b);
    /* Handle a batch claimed from consumer_opts.low (same contract as handle). NULL: handle. */
    consumer_result (*handle_low)(void *arg, queue_batch *b);
    /* After the claim, every turn (also while a holding consumer drains on stop, and when want
     * said 0). `claimed`: a claim was made this turn (it may have blocked); a program that
     * wants to wait for its own timers does so only when it is false. NULL: nothing. */
    void (*tick)(void *arg, bool claimed);
    /* Jobs the program still holds claimed (consumer_opts.holds_jobs only): the loop stops
     * once this is 0 (or the grace has passed). NULL: 0. */
    size_t (*held)(void *arg);
    /* The progress figures as `k=v k2=v2` into buf (n bytes). NULL: no progress line. */
    void (*progress)(void *arg, char *buf, size_t n);
    /* True when the loop should stop (checked at every batch boundary). NULL:
     * signals_stop_requested(). */
    bool (*stop)(void *arg);
} consumer_ops;

typedef struct consumer_opts {
    const char *name;     /* event prefix: "worker", "receipts", "vendor" */
    queue *q;             /* the consumed queue (a consumer handle; borrowed) */
    queue *also_maintain; /* another queue to keep maintained (the one the program produces to;
                           * borrowed), or NULL */
    queue *priority;      /* a second consumed queue drained before q (a consumer handle with the
                           * same consumer id; borrowed), or NULL: see "Priority" above */
    queue *low;           /* a third consumed queue drained after q (a consumer handle with the
                           * same consumer id; borrowed), or NULL: see "Low lane" above */
    int low_max_wait_ms;  /* longest wait of the low lane while q has work (0: the default,
                           * CONSUMER_LOW_MAX_WAIT_MS) */
    const consumer_ops *ops;
    void *arg;
    int block_ms;       /* default claim block when nothing is ready */
    int backoff_min_ms; /* first pause after a Redis error */
    int backoff_max_ms; /* longest pause */
    int progress_ms;    /* how often the progress figures are looked at (0: never) */
    /* The program keeps jobs claimed across turns (the vendor simulator holds a send job until
     * every receipt of it was posted): claims use queue_claim_fresh, the start takes back what
     * a previous run of this consumer id held, and a stop drains for up to grace_ms while
     * ops->held() > 0 before handing the rest back. */
    bool holds_jobs;
    int grace_ms;
} consumer_opts;

typedef struct consumer {
    consumer_opts o;
    queue_batch batch; /* the current claim, reused */
    int pause_ms;      /* current backoff */
    bool stopping;     /* the stop predicate said so; a holding consumer is draining */
    int64_t next_progress_ms;
    int64_t next_priority_ms; /* no priority claim before this (the last one found nothing) */
    int64_t next_low_ms;      /* a low claim is due by this time even if q still has work */
    bool low_more;            /* the last low claim was full: more may be ready */
    char last_progress[512];  /* figures of the last progress line written ("" = none yet) */
    int handed_back_at_start; /* jobs a previous run held, taken back by consumer_start */
    int handed_back;          /* jobs handed back by consumer_run at its end (-1: failed) */
} consumer;

/* Fill c from o (copied; the queues, ops and arg are borrowed). Does not contact Redis. */
void consumer_init(consumer *c, const consumer_opts *o);
/* Free what c owns (its claim batch). NULL-safe. */
void consumer_release(consumer *c);

/* Register the consumer, retrying every 500 ms (logging <name>.redis_wait) while Redis is not
 * reachable. A holding consumer first takes back what its previous run held (counted in
 * c->handed_back_at_start). Returns 0 when registered, -1 if a stop came first. */
int consumer_start(consumer *c);
/* Run turns until the stop predicate (and, for a holding consumer, the drain) ends the loop,
 * then hand back what is still claimed (c->handed_back). Call after consumer_start.
 * Returns 0 (Redis errors are retried, never returned). */
int consumer_run(consumer *c);

#endif
