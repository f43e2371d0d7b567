/*
 * events: `GET /api/events`, the dashboard's live updates as Server-Sent Events (issue 16
 * point 4).
 *
 * One ticker thread per API process reads, once a second while someone watches, the figures
 * every viewer gets: the campaigns that are SENDING, PAUSED, QUEUED or SCHEDULED and
 * those that changed in the last 10 minutes (COMPLETED, CANCELLED), with their counters (one
 * MongoDB find, projected), and every queue's ready / inflight / delayed / dead / rate plus the
 * held sends of paused campaigns (lib/queue statistics, one Redis connection). It renders them
 * once into a frame; viewers share that frame (reference-counted), so 100 viewers cost one
 * Redis read and one MongoDB find per second, not 100.
 *
 * The stream (text/event-stream):
 *   retry: 3000                  first, once (the browser's reconnection delay)
 *   event: history               second, once, without an id: messages per second over the
 *   data: {"ts","step_ms":1000,  last EVENTS_HISTORY_S seconds, oldest first, the last one
 *          "messages":[n,...]}   the second of "ts" (ms, so far), so a chart is full at once
 *   id: <n>                      increasing per API process
 *   event: tick
 *   data: {"ts","campaigns":[{"_id","name","status","total","pending","sent","failed",
 *          "cancelled","bounced","complained","opened","clicked",...dates}],
 *          "queues":[{"name","ready","inflight","delayed","dead","consumers","alive",
 *          "rate_1m"}],"held","redis":"ok|down","mongodb":"ok|down"}
 * An event is sent when the figures changed since the last one (so an idle system sends
 * nothing), and a comment line `: keepalive` every EVENTS_HEARTBEAT_S otherwise. A new viewer
 * gets the latest event at once. A stream ends after EVENTS_MAX_LIFE_S (the browser reconnects
 * and is authenticated again, so a revoked key or ended session stops its streams within that
 * time) and at shutdown (main.c calls events_hub_stop before waiting for requests in flight).
 *
 * No thread per viewer: a stream's content reader (an MHD callback) writes what is new; with
 * nothing new it suspends its connection (MHD_suspend_connection, daemon started with
 * MHD_ALLOW_SUSPEND_RESUME) and returns 0; the ticker resumes every suspended stream after
 * publishing a frame or a heartbeat. A suspended connection costs no CPU and never times out
 * (libmicrohttpd), so heartbeats are what find dead peers. At most api.events_max_streams
 * streams at once (503 above; they also count against api.max_conns_per_ip).
 *
 * The history. Each read of the campaigns is also a sample: the messages that reached an end
 * (sent + failed) since the previous read, summed over the campaigns both reads hold (a campaign
 * created since counts from 0; any other newcomer, and every campaign at start, is only a
 * baseline), added to the slot of the current wall-clock second in a ring of EVENTS_HISTORY_S
 * slots. So the ticker reads the campaigns (only: no Redis) once a second even while nobody
 * watches; a new stream's history event is rendered from the ring (shared by the viewers that
 * join within the same second and sample). The history is per API process and starts empty
 * at its start.
 *
 * Threads: the hub's mutex guards the frame, the viewer list and each viewer's state; it is
 * taken by the ticker, by content readers (MHD worker threads) and by the free callback.
 * Lock order: hub mutex, then MHD's own (suspend/resume are called under the hub mutex).
 */
#ifndef MINICRM_API_EVENTS_H
#define MINICRM_API_EVENTS_H

#include "router.h"

#define EVENTS_TICK_MS       1000
#define EVENTS_FORCE_GAP_MS  200 /* joins bring a tick forward, at most this often */
#define EVENTS_HEARTBEAT_S   15
#define EVENTS_MAX_LIFE_S    300
#define EVENTS_RECENT_S      600 /* finished campaigns shown this long after their last change */
#define EVENTS_MAX_CAMPAIGNS 100
#define EVENTS_HISTORY_S     600 /* seconds of messages per second kept for a new viewer */

typedef struct events_hub events_hub;

/* Start the ticker (it sleeps while nobody watches). NULL when out of memory or the thread
 * cannot start. */
events_hub *events_hub_new(api_ctx *app);
/* End every stream (each ends with a comment and its request completes) and stop the ticker.
 * Idempotent. */
void events_hub_stop(events_hub *h);
/* Stop (if not yet) and free. NULL-safe. */
void events_hub_free(events_hub *h);

/* GET /api/events (staff). */
int events_register(router *r);

#endif
