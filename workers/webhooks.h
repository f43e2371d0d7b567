/*
 * webhooks: the work of minicrm-webhooks: turns events into deliveries and delivers them to
 * the endpoints of the `webhooks` collection (Standard Webhooks; lib/webhook has the format).
 *
 * Two queues, one consumer loop (lib/consumer), one thread:
 *
 *   events   (QUEUE_EVENTS, the consumer's priority queue) each event job becomes one delivery
 *            job per enabled endpoint subscribed to its type, pushed onto the webhooks queue
 *            with queue_push_once under the token "ev:<event id>" (kept 2 days), then acked.
 *            The endpoint list is cached for webhooks.cache_ttl_ms.
 *   webhooks (QUEUE_WEBHOOKS) deliveries, held claimed while in flight (holds_jobs): up to
 *            webhooks.max_inflight POSTs at once on one libcurl multi handle, each with a total
 *            timeout of webhooks.timeout_ms, so a slow or dead endpoint holds one slot for at
 *            most that long and never the others.
 *
 * A delivery attempt ends in one of:
 *   2xx             ack; the endpoint's deliveries + 1, failures = 0, last = {ok}.
 *   410 Gone        ack; the endpoint is disabled (enabled false, disabledReason): no more
 *                   deliveries to it (those still queued are dropped when claimed).
 *   anything else   (another status, a refused connection, a timeout) the endpoint's failures
 *                   + 1, and the job is retried after the next delay of webhooks.retry_schedule
 *                   (queue_retry_after; default 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h: about
 *                   32 h in all), or after the last one dead-lettered with the reason.
 *   a job for an endpoint that is gone or disabled is acked and counted as dropped; a malformed
 *   job is dead-lettered.
 *
 * Crash points (kill -9 anywhere):
 *   - between the push of an event's deliveries and its ack: the event comes back (the reaper,
 *     after queue.heartbeat_ttl_s) and its push is refused by the once token: no duplicate;
 *   - with deliveries in flight: their jobs are in this consumer's processing list and come back
 *     through the reaper; the endpoint may see an attempt twice, with the same webhook-id (the
 *     event id), which is what at-least-once means and what receivers de-duplicate on;
 *   - between a 2xx and the ack: the same.
 * Nothing is lost: an event leaves the events queue only after its deliveries are queued, a
 * delivery leaves the webhooks queue only by an ack after 2xx / 410 / a gone endpoint, or into
 * the dead-letter list.
 *
 * Not thread-safe: one webhooks_ctx per thread, on the thread that owns its queues and rconn.
 */
#ifndef MINICRM_WORKERS_WEBHOOKS_H
#define MINICRM_WORKERS_WEBHOOKS_H

#include "config.h"
#include "consumer.h"
#include "dbpool.h"
#include "queue.h"
#include "webhook.h"

#include <stdbool.h>
#include <stdint.h>

/* How long an event's once token is kept on the webhooks queue, seconds. */
#define WEBHOOKS_ONCE_TTL_S (2 * 86400)

typedef struct webhooks_ctx webhooks_ctx;

/* Make the context (a libcurl multi handle, the parsed retry schedule). The queues, rconn and
 * pool are borrowed and must outlive it. NULL with the reason in err. */
webhooks_ctx *webhooks_new(const minicrm_config *cfg, dbpool *db, queue *events, queue *hooks,
                           char *err, size_t errlen);
/* Abort what is in flight (its jobs stay claimed: the caller hands them back) and free. NULL-safe.
 */
void webhooks_free(webhooks_ctx *x);

/* The consumer callbacks (consumer_opts.arg = the context; q = hooks, priority = events,
 * holds_jobs). */
extern const consumer_ops webhooks_ops;

/* Counters, for the progress line and tests. */
typedef struct webhooks_stats {
    long long events, queued, delivered, failed, dead, dropped, disabled;
    size_t inflight;
} webhooks_stats;
void webhooks_get_stats(const webhooks_ctx *x, webhooks_stats *out);

#endif
