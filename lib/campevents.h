/*
 * campevents: publishes the webhook events of campaign moves (campaign.started, .completed,
 * .paused, .cancelled) from the campaign's own outbox, so that no event is lost to a crash.
 *
 * lib/campaign writes each such move together with an entry {to, at} in the campaign's
 * `events_due` array (CAMPAIGN_EVENTS_DUE), in the move's one update. Publishing is then:
 *
 *     1. read the campaign (name, counters, events_due);
 *     2. push one jobs_event per entry onto QUEUE_EVENTS (one round trip);
 *     3. $pullAll the published entries.
 *
 * The mover calls campevents_flush right after its move (the fan-out, the receipts worker, the
 * API's pause and cancel); the worker's periodic pass calls campevents_rescue, which flushes
 * every campaign with an entry older than a few seconds. Crash points: after the move and
 * before 2, the entry stays and the rescue publishes it; between 2 and 3, the rescue publishes it
 * again with the same event id (jobs_event_id of the type and the campaign id; a pause adds its
 * time: "ID:pausedAt ms"), which minicrm-webhooks delivers once per endpoint (its push is guarded
 * by the event id) and receivers de-duplicate in any case. So an event is published at least
 * once, never zero times.
 *
 * The event's data: {"campaign_id", "name", "status" (the state moved to), "total", "sent",
 * "failed", "cancelled", "pending", "cancelReason"?} (counters as read when it is published).
 *
 * Thread-safety: none of its own; the caller's collection handle and rconn are used by the
 * calling thread only.
 */
#ifndef MINICRM_CAMPEVENTS_H
#define MINICRM_CAMPEVENTS_H

#include "rconn.h"

#include <bson/bson.h>
#include <mongoc/mongoc.h>
#include <stddef.h>
#include <stdint.h>

/* Publish and pull the due events of campaign cid. The number published, or -1 with the
 * reason in err (the entries stay; the rescue publishes them later). */
int campevents_flush(mongoc_collection_t *camps, rconn *rc, const char *prefix,
                     const bson_oid_t *cid, char *err, size_t errlen);

/* Flush every campaign with a due entry older than older_ms (at most 100 campaigns a call). The
 * number of events published, or -1 with the reason in err. */
int campevents_rescue(mongoc_collection_t *camps, rconn *rc, const char *prefix, int64_t older_ms,
                      char *err, size_t errlen);

#endif
