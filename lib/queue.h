/*
 * queue: minicrm's reliable job queue on Redis lists; the one implementation every program uses
 * (the API pushes campaign jobs, sends and receipts; workers, vendor-sim and the receipts worker
 * consume them).
 *
 * Guarantees: at-least-once delivery. A job leaves Redis only when a consumer acknowledges it, is
 * dead-lettered, or an operator purges the dead-letter list; nothing is trimmed away silently.
 * Consumers must therefore make processing idempotent (every minicrm consumer is).
 *
 * Keys of queue NAME with prefix P (redis.prefix, default "minicrm:"); the {NAME} hash tag puts
 * all keys of one queue in one Redis Cluster slot, so the Lua scripts below stay valid when Redis
 * is sharded:
 *
 *   P{NAME}:ready              LIST   waiting jobs; producers LPUSH, consumers take from the right
 *   P{NAME}:processing:CID     LIST   jobs claimed by consumer CID (BLMOVE/LMOVE ready -> here)
 *   P{NAME}:hb:CID             STRING heartbeat of consumer CID, expires after heartbeat_ttl_s
 *   P{NAME}:consumers          SET    consumer ids that may own a processing list
 *   P{NAME}:delayed            ZSET   jobs waiting for a retry, scored by due time (ms since epoch)
 *   P{NAME}:dead               LIST   dead letters (newest first), JSON described below
 *   P{NAME}:stats              HASH   counters: pushed, acked, items, retried, dead, requeued,
 *                                     reaped, deferred (items: work items of the acked jobs, see
 *                                     queue_ack_items)
 *   P{NAME}:rate:SLOT          STRING items acked in the 10-second slot SLOT (expires after 120 s)
 *   P{NAME}:once:TOKEN         STRING a producer's token already pushed (queue_push_once;
 *                                     expires after the producer's ttl)
 *
 * Sharded queues (queue.shards = S > 1, for the queues queue_is_sharded names: sends and
 * receipts, the ones carrying per-message work): one queue is S queues of the layout above
 * with their own tags, P{NAME:0}: ... P{NAME:S-1}:, each its own slot and so spread over a
 * cluster's masters. One handle owns all S ("shards"); callers do not change:
 *   - producers: each push (one batch job, or one call of queue_push_many) goes to the next
 *     shard round robin; queue_push_once picks the shard by its token, so a replay meets its
 *     own token;
 *   - consumers register and beat in every shard and claim from one shard per call, starting
 *     where the last claim left off (fair: a busy shard cannot starve the others), after one
 *     pipelined LLEN per shard says which shards have work (an empty shard costs no script); with
 * nothing ready anywhere they block in BLMOVE on one shard for at most 200 ms and rotate, so an
 *     idle consumer costs a few commands a second, and a job waits at most one rotation;
 *   - a claimed job remembers its shard (queue_job.shard), so ack/retry/dead go to it;
 *   - the reaper, due retries, stats, and the dead letters cover every shard (the dead lists
 *     read as one list: shard 0's, then shard 1's, ...);
 *   - the unsharded keys P{NAME}: are drained too (a new consumer, and every consumer once per
 *     reap_interval_ms, claims from them until they are empty; the reaper and the operator
 *     commands cover them) but never pushed to: jobs queued before a change of
 *     queue.shards, and held sends of the unsharded lists that campctl gives back to
 *     P{sends}:ready after a pause, are not stranded. Shard i's keys are only ever used by scripts
 * with shard i's keys. With S = 1 the keys are exactly the unsharded ones above.
 *
 * Job payloads are JSON text (objects), pushed and delivered byte for byte. On a retry the queue
 * adds three bookkeeping members to the object: "_attempts" (failed attempts so far),
 * "_first_at" (ms of the first failure) and "_error" (last error). A dead letter is
 *   {"queue":NAME,"job":<payload object, or the raw text as a string if it was not JSON>,
 *    "error":"...","attempts":N,"first_at":ms,"failed_at":ms}
 *
 * Job life: READY -(claim)-> CLAIMED -(ack)-> gone
 *                              CLAIMED -(retry, attempts < max)-> DELAYED -(due)-> READY
 *                              CLAIMED -(defer: not now, untouched)-> DELAYED
 *                              CLAIMED -(retry at max / dead)-> DEAD -(requeue)-> READY
 *                              CLAIMED -(consumer heartbeat expired: reap)-> READY
 * Every move between two keys is one atomic Redis operation (Lua script or MULTI).
 *
 * Threads and processes: a queue handle wraps an rconn it does not own; like the rconn it is not
 * thread-safe and must not cross fork(). Many handles (in many processes and hosts) may share one
 * queue; each consumer handle must have a consumer id unique among live consumers.
 *
 * Memory: strings inside a queue_batch are owned by the batch (queue_batch_release frees them).
 * Errors: functions return 0 (or a count) on success, -1 on failure with queue_error() set.
 */
#ifndef MINICRM_QUEUE_H
#define MINICRM_QUEUE_H

#include "config.h"
#include "rconn.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Queue names used by minicrm. */
#define QUEUE_CAMPAIGNS "campaigns"
#define QUEUE_SENDS     "sends"
#define QUEUE_RECEIPTS  "receipts"
#define QUEUE_AI        "ai" /* AI tags and message drafts (minicrm-ai, lib/ai.h) */
/* One-off (transactional) sends of POST /api/messages: the same single-send jobs as the sends
 * queue, drained before it by every sends consumer (lib/consumer's priority queue). */
#define QUEUE_PRIORITY "priority"
/* The receipts of those sends (POST /api/receipts/delivery?lane=priority), drained before the
 * receipts queue by every receipts consumer. */
#define QUEUE_PRIORITY_RECEIPTS "priority-receipts"
/* Receipt events (OPENED, CLICKED, COMPLAINED: a POST to /api/receipts/delivery holding no
 * delivery receipt), drained after the receipts queue by every receipts consumer, so a
 * delivery receipt never waits behind them. */
#define QUEUE_RECEIPT_EVENTS "receipt-events"

/* What happened (lib/jobs jobs_event: campaign moves, failed/bounced messages, suppressed
 * contacts), pushed by whoever made it happen; the webhooks worker delivers each event to the
 * endpoints subscribed to its type. */
#define QUEUE_EVENTS "events"
/* One delivery of one event to one webhook endpoint (lib/jobs jobs_delivery), made from the
 * events queue by minicrm-webhooks, retried on its own schedule, dead-lettered at its end. */
#define QUEUE_WEBHOOKS "webhooks"

/* Every queue above, in the order operators see them (`minicrm queues`, `minicrm dlq`,
 * /api/queues, the dead-letter routes, the dashboard's stream): the one list to extend when a
 * queue is added. */
#define QUEUE_COUNT 9
extern const char *const queue_names[QUEUE_COUNT];
/* true if name is one of queue_names (NULL: false). */
bool queue_name_known(const char *name);

/* Largest accepted job payload: a batch job (a fan-out batch of sends, one POST's receipts)
 * carries up to a thousand items. */
#define QUEUE_MAX_JOB_BYTES (1024 * 1024)
/* Longest queue name and consumer id. */
#define QUEUE_MAX_NAME     64
#define QUEUE_MAX_CONSUMER 128

typedef struct queue_opts {
    int max_attempts;     /* a retry after this many failed attempts dead-letters the job */
    int backoff_base_ms;  /* first retry delay; doubles each attempt, full jitter */
    int backoff_max_ms;   /* cap of the retry delay */
    int heartbeat_ttl_s;  /* a consumer silent this long is dead; its jobs are returned */
    int reap_interval_ms; /* queue_maintain does its work at most this often */
    int shards;           /* lists of a sharded queue (queue_is_sharded); 0 or 1 = one */
} queue_opts;

typedef struct queue queue;

/* One claimed job. `data` is NUL-terminated (len excludes the NUL). */
typedef struct queue_job {
    char *data;
    size_t len;
    int shard; /* 1 + the shard it was claimed from; 0 = unknown (settles search every shard) */
} queue_job;

/* A claimed batch; init with {0} or queue_batch_init. */
typedef struct queue_batch {
    queue_job *jobs;
    size_t n;
    size_t cap;
} queue_batch;

/* Depth and counters of one queue (queue_stats_get). */
typedef struct queue_stats {
    char name[QUEUE_MAX_NAME];
    long long ready;     /* LLEN ready */
    long long inflight;  /* sum of LLEN processing:* of registered consumers */
    long long delayed;   /* ZCARD delayed */
    long long dead;      /* LLEN dead */
    long long consumers; /* registered consumers */
    long long alive;     /* of which with a live heartbeat */
    long long pushed, acked, retried, dead_total, requeued, reaped; /* stats hash */
    long long items; /* work items of the acked jobs (a batch job counts as its items) */
    double rate_1m;  /* items acked per second over the last minute */
} queue_stats;

/* ---- Options ------------------------------------------------------------------------------ */

/* The queue.* settings of cfg. */
void queue_opts_from_config(queue_opts *o, const minicrm_config *cfg);
/* Defaults equal to the config defaults (for tools and tests); shards is the process's
 * queue.shards as the last queue_opts_from_config saw it (1 before any). */
void queue_opts_default(queue_opts *o);
/* Make cfg's queue.shards this process's default (what handles opened with NULL opts and
 * queue_stats_get use); queue_opts_from_config does it too. Programs call one of them at
 * start, before any thread opens a queue. */
void queue_use_config(const minicrm_config *cfg);
/* Whether queue `name` is split by queue.shards (sends and receipts). */
bool queue_is_sharded(const char *name);
/* The shards queue `name` has under opts o (NULL: queue_opts_default): 1 for the rest. */
int queue_shards_for(const char *name, const queue_opts *o);

/* ---- Handles ------------------------------------------------------------------------------ */

/* Open queue `name` on connection c (not owned; must outlive the handle) with key prefix
 * `prefix` (e.g. cfg->redis.prefix). `consumer` is NULL for a producer-only handle; otherwise
 * the consumer id (letters, digits, '.', '-', '_', ':'), e.g. from queue_consumer_id(). Opening
 * a consumer does not contact Redis; call queue_register() before claiming.
 * Returns NULL with a message in err on a bad name or out of memory. */
queue *queue_open(rconn *c, const char *prefix, const char *name, const char *consumer,
                  const queue_opts *o, char *err, size_t errlen);
/* Close the handle (claimed jobs stay claimed; see queue_release_claimed). NULL-safe. */
void queue_close(queue *q);
/* Last error message of this handle. */
const char *queue_error(const queue *q);
const char *queue_name(const queue *q);
/* The consumer id of the handle ("" for a producer handle). */
const char *queue_consumer(const queue *q);
/* Build "ROLE:HOST:PID" (the default consumer id) into buf. Returns buf. */
char *queue_consumer_id(const char *role, char *buf, size_t n);
/* Full key name for a suffix ("ready", "dead", "processing:CID"...) into buf; for tools. On a
 * sharded queue: shard 0's key (see queue_shard_key). */
const char *queue_key(const queue *q, const char *suffix, char *buf, size_t n);
/* Number of shard key sets a handle covers: 1 unsharded, else S + 1 (the S shards, then the
 * drained unsharded keys). */
int queue_nshards(const queue *q);
/* The key of shard i (0 .. queue_nshards-1) for suffix into buf. */
const char *queue_shard_key(const queue *q, int i, const char *suffix, char *buf, size_t n);
/* The key for suffix in the shard `job` was claimed from (shard 0 if unknown), e.g. the
 * processing list a claimed job sits in. */
const char *queue_job_key(const queue *q, const queue_job *job, const char *suffix, char *buf,
                          size_t n);

/* ---- Producing ---------------------------------------------------------------------------- */

/* Push one job (JSON text of len bytes, at most QUEUE_MAX_JOB_BYTES). */
int queue_push(queue *q, const char *json, size_t len);
/* Push n jobs in one pipelined round trip (LPUSH with many values, in chunks of 1000 values).
 * lens may be NULL (strlen is used). All-or-error: on -1 some chunks may already be queued, so
 * callers retry the whole call (duplicates are harmless under at-least-once). */
int queue_push_many(queue *q, const char *const *jobs, const size_t *lens, size_t n);

/* Push n jobs (at most QUEUE_PUSH_ONCE_MAX) only if `once` (a short token such as a request's
 * signature, at most 128 bytes) was not seen on this queue in the last ttl_s seconds: one Lua
 * script sets P{N}:once:TOKEN (NX, EX ttl_s) and pushes, so either both happen or neither, and a
 * crash between them cannot lose the jobs or let a replay through. Returns 1 pushed, 0 already
 * seen (nothing pushed), -1 error (nothing pushed). */
#define QUEUE_PUSH_ONCE_MAX 64
int queue_push_once(queue *q, const char *once, int ttl_s, const char *const *jobs,
                    const size_t *lens, size_t n);

/* ---- Consuming ---------------------------------------------------------------------------- */

/* Add the consumer to the consumers set and write its heartbeat. Call once after opening and
 * again whenever queue_heartbeat reports that the consumer was reaped. */
int queue_register(queue *q);
/* Refresh the heartbeat (SET PX). Returns 1 if the consumer had been presumed dead (its jobs
 * were reaped; it re-registered itself), 0 normally, -1 on error. */
int queue_heartbeat(queue *q);
/* Whether consumer `cid` of this queue has a live heartbeat (P{NAME}:hb:CID exists): 1 alive,
 * 0 expired or never registered (or cid is not a valid consumer id), -1 on error. Lets a
 * program take over what a dead consumer left outside the queue (the receipts worker's counter
 * tokens) as soon as the reaper would take its jobs. */
int queue_consumer_alive(queue *q, const char *cid);
/* Claim up to `max` jobs into this consumer's processing list and append them to `out`.
 * Jobs this consumer claimed earlier and has not settled (ack, retry, dead) are delivered again
 * first: a consumer settles every job of a batch before claiming again, so anything still held
 * is left over from an error (e.g. Redis restarted mid-batch) and must not be stranded. Takes
 * what is ready at once (one Lua script moving up to max jobs); if nothing is ready, blocks up
 * to block_ms (BLMOVE; 0 = do not block) for the first job and then takes the rest at once.
 * Returns the number claimed (0 on timeout), or -1. */
int queue_claim(queue *q, size_t max, int block_ms, queue_batch *out);
/* queue_claim for a consumer that keeps jobs claimed across claims (the vendor simulator holds
 * a send job until every receipt of it is posted): only jobs from ready, never the ones this
 * consumer still holds. Held jobs come back through queue_release_claimed (at start-up) or the
 * reaper, never through this call. */
int queue_claim_fresh(queue *q, size_t max, int block_ms, queue_batch *out);
/* Acknowledge jobs (remove them from the processing list) in one pipelined round trip. */
int queue_ack(queue *q, const queue_job *jobs, size_t n);
/* queue_ack for batch jobs: `items` is the number of work items (sends, receipts) the jobs
 * carried, counted in the stats and the throughput instead of one per job, so that
 * `minicrm queues` reports messages per second whatever the batch size. */
int queue_ack_items(queue *q, const queue_job *jobs, size_t n, long long items);
/* Record a failed attempt: the job moves atomically from processing to the delayed set, due
 * after d/2 + random(0 .. d/2) ms with d = min(backoff_max, backoff_base * 2^(attempt-1))
 * (exponential backoff with "equal jitter"), or to the dead-letter list if this was attempt
 * max_attempts. A job no longer in the processing list (reaped meanwhile) is left alone.
 * Returns 0 (delayed or already gone), 1 (dead-lettered), -1 on error. */
int queue_retry(queue *q, const queue_job *job, const char *error);
/* queue_retry with the caller's own delay instead of the queue's backoff (a schedule of its
 * own, e.g. the webhooks worker's; a Retry-After): due after exactly delay_ms. The attempt count
 * and the dead-lettering at max_attempts are the same as queue_retry's. */
int queue_retry_after(queue *q, const queue_job *job, const char *error, long long delay_ms);
/* Put a claimed job aside untouched until due_ms (ms since the epoch): it moves atomically from
 * processing to the delayed set, byte for byte (not an attempt: no bookkeeping members, counted
 * as "deferred" in the stats). For a consumer that cannot take the job now (the vendor's
 * consumer holding a rate-limited campaign's sends). Returns 0 (moved, or already gone), -1. */
int queue_defer(queue *q, const queue_job *job, int64_t due_ms);
/* Move the job straight to the dead-letter list with `reason` (poison / malformed / unknown). */
int queue_dead(queue *q, const queue_job *job, const char *reason);
/* Dead-letter parts of a claimed batch job (one malformed receipt of a POSTed array, a send
 * without a log_id inside a fan-out batch) without settling the job: each part becomes its own
 * dead letter ({"queue", "job": the part, "error": its reason, "attempts": 1, ...}), so
 * `minicrm dlq requeue` brings back exactly that part as a job of its own. One round trip
 * (MULTI); the caller acks or retries the job itself afterwards. A crash between the two
 * redelivers the job and may dead-letter a part twice (never zero times). Returns 0 or -1. */
int queue_dead_parts(queue *q, const char *const *parts, const size_t *lens,
                     const char *const *reasons, size_t n);
/* Periodic housekeeping, cheap to call in every loop iteration: at most once per
 * reap_interval_ms it refreshes the heartbeat, moves due delayed jobs back to ready (Lua, atomic,
 * up to 1000 per call) and reaps consumers whose heartbeat expired (Lua, atomic per consumer).
 * Pipelined reads first say where there is anything to do (ZCOUNT of due jobs, the consumers,
 * EXISTS of their heartbeats, for every shard at once), so a pass with nothing due and every
 * consumer alive runs no script. Returns 0 or -1. Producer handles may call it too (delayed +
 * reap only). */
int queue_maintain(queue *q);
/* Promote due delayed jobs now (ignores the interval). Returns the number moved, or -1. */
int queue_promote_due(queue *q);
/* Reap dead consumers now. Returns the number of jobs returned to ready, or -1. */
int queue_reap(queue *q);
/* Hand back every job this consumer has claimed (to the front of ready) and unregister; used at
 * shutdown and at start-up (a restarted consumer with the same id takes back its old jobs).
 * Returns the number of jobs returned, or -1. */
int queue_release_claimed(queue *q);

void queue_batch_init(queue_batch *b);
/* Free the jobs and reset to empty (keeps nothing). NULL-safe. */
void queue_batch_release(queue_batch *b);

/* ---- Inspection and operators ------------------------------------------------------------- */

/* Depths and counters of queue `name` (no handle needed). 0 or -1 with err. */
int queue_stats_get(rconn *c, const char *prefix, const char *name, queue_stats *out, char *err,
                    size_t errlen);
/* Dead letters [start, start+count) (0 = newest) as malloc'd JSON strings into *out (caller
 * frees each and the array). Returns the number, or -1. */
int queue_dlq_list(queue *q, long start, long count, char ***out);
/* Total dead letters, or -1. */
long long queue_dlq_len(queue *q);
/* Requeue dead letter at index (0 = newest; -1 = all): its original job goes back to ready with
 * bookkeeping members removed, atomically with its removal from the dead list. Returns the
 * number requeued, or -1. */
long long queue_dlq_requeue(queue *q, long index);
/* Delete dead letter at index (-1 = all). Returns the number deleted, or -1. */
long long queue_dlq_purge(queue *q, long index);

#endif
