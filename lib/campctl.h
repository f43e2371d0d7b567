/*
 * campctl: the Redis side of steering a campaign (pause, resume, cancel): the flags the hot
 * consumers check cheaply, the held sends of a paused campaign, and the acknowledgements that
 * let the API answer only once a move took effect. MongoDB's campaign state (lib/campaign) is
 * the truth; these keys are what the fan-out and the sends consumer read between batches.
 *
 * Keys (prefix P = redis.prefix). The unsharded key set, tag {sends} (the one set when
 * queue.shards = 1: these are the key names of every deployment before sharding, unchanged):
 *
 *   P{sends}:paused          SET    campaign ids (24 hex) whose sends are held back
 *   P{sends}:cancelled       SET    campaign ids whose sends are dropped (never sent)
 *   P{sends}:held:CID        LIST   send jobs of paused campaign CID, taken out of a sends
 *                                   consumer's processing list before it handed them to the
 *                                   vendor (`minicrm queues` shows them as held)
 *   P{sends}:ctl-epoch       STRING incremented by every pause and cancel
 *   P{sends}:ctl-ack:CONS    STRING the last epoch sends consumer CONS read before a claim:
 *                                   every job it claims afterwards is checked against the flags
 *   P{sends}:fanout:CID      STRING (PX) lease of the fan-out running campaign CID (value: its
 *                                   consumer id), refreshed after every batch, deleted when the
 *                                   fan-out stops; expires with a dead worker
 *
 * Shard key sets (queue.shards = S > 1; lib/queue splits the sends queue into {sends:0} ...
 * {sends:S-1}, each its own slot): a script may touch the keys of one slot only, so the keys a
 * hold needs together with shard K's processing list live under shard K's tag:
 *
 *   P{sends:K}:paused        SET    as P{sends}:paused (every shard carries every flag)
 *   P{sends:K}:cancelled     SET    as P{sends}:cancelled
 *   P{sends:K}:held:CID      LIST   the jobs of CID held from shard K's processing lists; a
 *                                   resume moves them back to P{sends:K}:ready
 *   P{sends:K}:ctl-epoch     STRING incremented by every move and repair of shard K's sets: the
 *                                   repair's guard (below); consumers never read it
 *
 * The unsharded set stays the campaign-level view: the sends consumers' view
 * (campctl_view_sync), their acks, the epoch campctl_wait waits for, and the fan-out's lease and
 * flag check read it alone, in one slot. It is also the shard set of the unsharded lists a
 * sharded consumer still drains (jobs queued before queue.shards changed): a job claimed from
 * them is held in P{sends}:held:CID. A consumer tries to hold a job only when its view names
 * the campaign, and the hold checks the flags of the job's own shard set; so a move that sets
 * a flag (pause, cancel, a repair's additions) writes every shard set before the unsharded one,
 * and a resume clears the unsharded set first: whenever the view names a campaign, every
 * shard set does too (up to writes a failed-over master lost, which the repair restores).
 * Changing queue.shards needs no migration: held lists of the unsharded set are resumed into
 * P{sends}:ready, which sharded consumers drain; shard sets left by a larger S than the
 * current one are not read (resume or cancel such campaigns before lowering queue.shards).
 *
 *   P{campaigns}:scheduled   ZSET   campaign jobs (the text lib/jobs writes) of SCHEDULED
 *                                   campaigns, score = send_at (ms)
 *
 * The protocol (with shards, each step's script runs once per key set, in the order above):
 *   pause   the API moves the campaign to PAUSED in MongoDB, then campctl_pause (SADD paused,
 *           INCR epoch), then campctl_wait: the fan-out lease is gone (the fan-out saw the flag
 *           after a batch, its checkpoint written) and every live sends consumer acked the
 *           epoch (it read the flag set before its next claim). From then on a claimed job of
 *           the campaign is moved to its held list (campctl_hold, atomic with the flag check).
 *           Bound: only the jobs a sends consumer had claimed before its ack (at most
 *           vendor_sim.max_inflight messages plus one job per consumer) still reach the vendor.
 *   resume  campctl_resume (SREM paused and move the held list back to ready, one script per
 *           set; a crash between sets leaves MongoDB PAUSED, the next resume finishes), then
 *           MongoDB PAUSED -> SENDING|QUEUED and the campaign job again (the fan-out continues
 *           from its checkpoint).
 *   cancel  MongoDB -> CANCELLED, campctl_cancel (SADD cancelled, SREM paused, drop the held
 *           list), campctl_wait, then campctl_snapshot of the receipts queue and of the sends
 *           consumers' processing lists (campctl_at_vendor): the logs whose send the vendor
 *           already has; every other PENDING log becomes CANCELLED (lib/campaign). A worker
 *           finishes any cancel whose logs are left PENDING without a job at the vendor
 *           (workers/fanout.c fanout_finish_cancels: a job the snapshot saw claimed just
 *           before its consumer dropped it, a fan-out batch that landed after its lease
 *           expired, an interrupted API): once no fan-out lease is held and every live sends
 *           consumer acked the current epoch, the same snapshot, bulk and recount.
 *   schedule  the API stores a SCHEDULED campaign, then ZADDs its job (campctl_schedule_add);
 *           every worker, between claims, runs campctl_schedule_promote: one script moves the
 *           due jobs ZSET -> the campaigns queue (ZREM then LPUSH: one promotion even with many
 *           workers), and lists those older than campaigns.schedule_expiry_s, which the worker
 *           moves to CANCELLED in MongoDB before it removes them. A worker rebuilds the ZSET
 *           from MongoDB's SCHEDULED campaigns at start (ZADD NX).
 *   lost    if Redis lost these keys (a restart, a failed-over master), minicrm-worker re-adds
 *           the flags of every PAUSED campaign and of the recently CANCELLED ones from MongoDB
 *           at start and every few seconds, in every key set (campctl_repair_begin, then
 *           MongoDB streamed in chunks through campctl_repair_add, then campctl_repair_finish:
 *           a set whose epoch moved since the mark is left for the next round).
 *
 * Functions take the caller's rconn (not thread-safe, as it is not) and return 0 / a value
 * >= 0, or -1 with a message in err.
 */
#ifndef MINICRM_CAMPCTL_H
#define MINICRM_CAMPCTL_H

#include "rconn.h"

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>

enum { CAMPCTL_RUN = 0, CAMPCTL_PAUSED = 1, CAMPCTL_CANCELLED = 2 };

/* Flag campaign chex paused in every key set (SADD, INCR epoch). *epoch gets the new epoch of
 * the unsharded set (the one campctl_wait waits for). */
int campctl_pause(rconn *c, const char *prefix, const char *chex, long long *epoch, char *err,
                  size_t errlen);
/* Flag it cancelled in every key set (SADD cancelled, SREM paused, DEL its held list, INCR
 * epoch). *epoch as campctl_pause; *dropped gets the number of held jobs dropped in all sets. */
int campctl_cancel(rconn *c, const char *prefix, const char *chex, long long *epoch,
                   long long *dropped, char *err, size_t errlen);
/* Unflag a paused campaign and move its held jobs back to the ready list of their own shard
 * (one script per key set; bumps the epoch so sends consumers re-read the sets). *moved gets
 * the number of jobs moved. */
int campctl_resume(rconn *c, const char *prefix, const char *chex, long long *moved, char *err,
                   size_t errlen);
/* Re-add a flag (CAMPCTL_PAUSED or CAMPCTL_CANCELLED) in every key set. A flag that was missing
 * bumps that set's epoch, so sends consumers re-read the sets. */
int campctl_flag_set(rconn *c, const char *prefix, const char *chex, int flag, char *err,
                     size_t errlen);

/* The worker's repair from MongoDB, streamed: no cap on the number of campaigns, one chunk of
 * at most CAMPCTL_REPAIR_CHUNK ids per script.
 *
 *   campctl_repair_begin   reads every key set's epoch (the mark), before MongoDB is read.
 *   campctl_repair_add     (any number of calls) a chunk of campaigns MongoDB says are PAUSED
 *                          (every one of them, each once, over all calls) or CANCELLED: each key
 *                          set whose epoch is still the expected one (the mark plus this run's
 *                          own changes) gets the missing flags, one script per set. Additions are
 *                          safe chunk by chunk: a flag MongoDB confirms is never wrong to add.
 *                          The PAUSED ids are also kept in the run (25 bytes each, at most
 *                          CAMPCTL_REPAIR_PAUSED_MAX), MongoDB's complete list for the drop.
 *   campctl_repair_finish  only with that complete list: scans each set's paused flags (SSCAN)
 *                          and drops, by a script guarded by the same epoch, those MongoDB did
 *                          not confirm (a resume interrupted after its MongoDB write), moving
 *                          their held sends back to ready. Sets in the order a clearing move
 *                          uses (the unsharded set first).
 * A set whose epoch moved (a pause, resume or cancel since the mark) is left alone for the
 * rest of the run: the next round repairs it. Returns the number of changes (flags added or
 * dropped, held jobs moved), -1 on a Redis error or when the run saw more PAUSED campaigns than
 * it keeps (then nothing is dropped).
 *
 * Which CANCELLED campaigns the caller passes: those cancelled within
 * CAMPCTL_CANCEL_REPAIR_WINDOW_MS (their cancelledAt, which every move to CANCELLED writes).
 * A cancelled flag matters only while sends of the campaign can still be claimed: jobs queued
 * before the cancel (a backlog drains in hours), retries (queue.backoff_max_ms, at most a day
 * per attempt) and the fan-out's last batch. Seven days covers these with room; older
 * cancelled campaigns have nothing left to drop, and re-adding their flags would make the
 * repair's work grow with every campaign ever cancelled. (A dead letter an operator requeues
 * after the window is delivered if Redis lost its flag meanwhile.) */
#define CAMPCTL_REPAIR_CHUNK            256
#define CAMPCTL_REPAIR_PAUSED_MAX       (4 * 1024 * 1024)
#define CAMPCTL_CANCEL_REPAIR_WINDOW_MS (7LL * 24 * 3600 * 1000)
typedef struct campctl_mark {
    long long epoch[257]; /* per key set, in campctl's order (queue.shards <= 256); -1: a move
                           * touched the set since the mark, left for the next round */
    int nsets;
} campctl_mark;
typedef struct campctl_repair_run {
    campctl_mark mark;  /* the epoch each set must still have */
    char (*paused)[25]; /* MongoDB's PAUSED campaigns seen so far (owned, sorted by finish) */
    size_t npaused, cap;
    bool overflow; /* more than CAMPCTL_REPAIR_PAUSED_MAX: no drop this run */
    int changes;
} campctl_repair_run;
/* Mark (fills r; release it with campctl_repair_release). 0 or -1. */
int campctl_repair_begin(rconn *c, const char *prefix, campctl_repair_run *r);
/* flag CAMPCTL_PAUSED or CAMPCTL_CANCELLED; n <= CAMPCTL_REPAIR_CHUNK ids (24 hex). 0 or -1. */
int campctl_repair_add(rconn *c, const char *prefix, campctl_repair_run *r, int flag,
                       const char *const *ids, size_t n);
/* The drop of unconfirmed paused flags; the run's total of changes, or -1. */
int campctl_repair_finish(rconn *c, const char *prefix, campctl_repair_run *r);
/* Free the run's list. NULL-safe. */
void campctl_repair_release(campctl_repair_run *r);

/* The same in one call, for callers holding both lists: campctl_repair_mark reads the epochs,
 * campctl_repair applies paused (all of MongoDB's PAUSED campaigns) and cancelled in chunks,
 * then drops. Returns the number of changes, -1 on error. */
int campctl_repair_mark(rconn *c, const char *prefix, campctl_mark *m);
int campctl_repair(rconn *c, const char *prefix, const campctl_mark *m, const char *const *paused,
                   size_t npaused, const char *const *cancelled, size_t ncancelled);

/* Wait (polling every 5 ms, at most timeout_ms) until the fan-out of chex holds no lease and
 * every sends consumer with a live heartbeat acked `epoch`. 0 quiet, 1 timed out (err names
 * who did not answer), -1 Redis error. */
int campctl_wait(rconn *c, const char *prefix, const char *chex, long long epoch, int timeout_ms,
                 char *err, size_t errlen);

/* The logs possibly at the vendor: the raw jobs mentioning chex in the receipts queue (ready,
 * delayed, every processing list) and in the sends consumers' processing lists, read in that
 * order (a receipt leaves the vendor's list only after it is in the receipts queue). 0 with
 * two array replies (the caller decodes their jobs with lib/jobs and frees both with
 * freeReplyObject), or -1 with err. */
int campctl_snapshot(rconn *c, const char *prefix, const char *chex, redisReply **receipts,
                     redisReply **sends, char *err, size_t errlen);

/* A growing set of log ids (a owned; free it with campctl_logs_release). Zero-initialise. */
typedef struct campctl_logs {
    bson_oid_t *a;
    size_t n, cap;
} campctl_logs;
/* Free its array and empty it. NULL-safe. */
void campctl_logs_release(campctl_logs *s);
/* The logs of campaign chex whose send the vendor already has: campctl_snapshot's jobs decoded
 * with lib/jobs (receipts and sends of chex; jobs that do not decode are skipped), appended to
 * out (duplicates possible). What the cancel keeps PENDING (their receipts still count). 0, or
 * -1 with err (out may have grown; the caller still releases it). */
int campctl_at_vendor(rconn *c, const char *prefix, const char *chex, campctl_logs *out, char *err,
                      size_t errlen);

/* ---- the schedule ----------------------------------------------------------------------- */

/* ZADD the campaign job (len bytes) at send_at: mode 0 always, 'N' only if absent (the
 * rebuild), 'X' only if present (reschedule: absent means already promoted). Returns 1 if the
 * set changed or (mode 'X') the member was there, 0 if not, -1 on error. */
int campctl_schedule_add(rconn *c, const char *prefix, const char *job, size_t len,
                         long long send_at, char mode);
/* ZREM the job. 0 or -1. */
int campctl_schedule_remove(rconn *c, const char *prefix, const char *job, size_t len);
/* Promote the jobs due at now whose send_at is not older than expire_before (one script, at
 * most 100 per call): *promoted gets their number. The reply (freed by the caller) is an array
 * of the expired jobs still in the set (at most 100), or NULL on error. */
redisReply *campctl_schedule_promote(rconn *c, const char *prefix, long long now,
                                     long long expire_before, long long *promoted);

/* ---- the fan-out --------------------------------------------------------------------- */

/* Take or refresh the fan-out lease of chex for owner (ttl_ms) and read the flags in the same
 * script. CAMPCTL_RUN, CAMPCTL_PAUSED, CAMPCTL_CANCELLED, or -1. */
int campctl_fanout_beat(rconn *c, const char *prefix, const char *chex, const char *owner,
                        int ttl_ms);
/* 1 if a fan-out holds the lease of chex, 0 if none does, -1 on error. */
int campctl_fanout_leased(rconn *c, const char *prefix, const char *chex);
/* Drop the lease (if owner still holds it). 0 or -1. */
int campctl_fanout_end(rconn *c, const char *prefix, const char *chex, const char *owner);

/* ---- the sends consumer --------------------------------------------------------------- */

/* The current epoch (0 if none yet). 0 or -1. */
int campctl_epoch(rconn *c, const char *prefix, long long *out);
/* Record that consumer cons read epoch before its latest claim. 0 or -1. */
int campctl_ack(rconn *c, const char *prefix, const char *cons, long long epoch);
/* A sends consumer's view of the flags, synced once per turn. */
typedef struct campctl_view {
    long long epoch;    /* the epoch the lists below were read at (-1: never synced) */
    char (*paused)[25]; /* campaign ids */
    size_t npaused;
    char (*cancelled)[25];
    size_t ncancelled;
    int64_t synced_ms; /* when the lists were last read (monotonic) */
} campctl_view;

/* Fill v as never synced. */
void campctl_view_init(campctl_view *v);
/* Free its lists. NULL-safe. */
void campctl_view_release(campctl_view *v);
/* Read the epoch and, when it changed or a second passed, the flag sets (one round trip, one
 * script). Call before a claim; ack v->epoch after handling the claim. 0 or -1 (v unchanged). */
int campctl_view_sync(rconn *c, const char *prefix, campctl_view *v);
/* CAMPCTL_RUN, CAMPCTL_PAUSED or CAMPCTL_CANCELLED for campaign chex as v saw it. */
int campctl_view_flag(const campctl_view *v, const char *chex);
/* A claimed job of flagged campaign chex: if it is still paused, move the job from the
 * processing list proc_key to its held list (1); if cancelled, remove it (2, dropped unsent);
 * if no longer flagged, leave it (0: deliver it). One script over the key set of proc_key's
 * tag (P{sends:K}:processing:CID: shard K's; anything else: the unsharded set), so a resume
 * cannot slip between the check and the move. -1 on error. */
int campctl_hold(rconn *c, const char *prefix, const char *proc_key, const char *job, size_t len,
                 const char *chex);
/* Held jobs of every paused campaign (sum of LLEN held:* over every key set), for `minicrm
 * queues`. -1 on error. */
long long campctl_held_jobs(rconn *c, const char *prefix);
/* Held jobs of campaign chex in every key set. -1 on error. */
long long campctl_held_campaign(rconn *c, const char *prefix, const char *chex);

#endif
