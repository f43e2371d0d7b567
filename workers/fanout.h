/*
 * fanout: turns one campaign job into one PENDING log per matched customer and one send job per
 * log (the work of each minicrm-worker process).
 *
 * Guarantees:
 *  - Memory does not grow with the audience: customers are streamed with a cursor in _id order,
 *    workers.batch_size at a time.
 *  - Per batch: insert the logs (unordered insert_many; E11000 = already written by an earlier
 *    run), push the sends (one pipelined round trip), then advance the checkpoint
 *    {last_customer_id, written} and $inc total/pending by the batch size in ONE campaign update
 *    guarded by the previous checkpoint. A crash anywhere re-runs at most the current batch: log
 *    ids are deterministic (campaign_log_id), so the re-run writes no duplicate and its re-pushed
 *    sends carry the right log_id (the vendor is idempotent); counters stay exact because they
 *    move only together with the checkpoint.
 *  - Campaign status QUEUED -> SENDING (first run) -> COMPLETED (fan-out finished and every log
 *    final; whoever sees the last condition become true sets it: fan-out or receipts worker).
 *    Every move is a lib/campaign function; the send jobs are written by lib/jobs.
 *  - Pause and cancel (lib/campctl): the fan-out holds a lease in Redis while it runs and, in
 *    the same script, reads the campaign's flags: before it loads the campaign and after every
 *    batch it wrote. A flag stops it at that batch boundary (checkpoint written, FANOUT_HALTED),
 *    then the lease is dropped, which is what the API's pause waits for. A campaign found
 *    PAUSED, CANCELLED or SCHEDULED in MongoDB is not fanned out (the job is acked; resume and
 *    the schedule enqueue it again). A crashed worker's lease expires with its heartbeat TTL.
 *    The checkpoint update does not check the status: a batch whose lease expired during it
 *    (a slow insert) can land after a cancel, its logs PENDING and total/pending moved;
 *    fanout_finish_cancels cancels those logs and recounts within seconds.
 *
 * Not thread-safe: one fanout_ctx per process.
 */
#ifndef MINICRM_WORKERS_FANOUT_H
#define MINICRM_WORKERS_FANOUT_H

#include "config.h"
#include "dbpool.h"
#include "queue.h"
#include "rconn.h"

#include <bson/bson.h>

typedef enum {
    FANOUT_DONE = 0, /* fan-out finished (or the campaign was already final) */
    FANOUT_STOPPED,  /* a stop was requested; checkpoint saved, job should be handed back */
    FANOUT_LOST,     /* the checkpoint moved under us: retry the job, it resumes from there */
    FANOUT_UNKNOWN,  /* no such campaign (or unusable rules): dead-letter the job */
    FANOUT_RETRY,    /* MongoDB/Redis trouble: retry the job later */
    FANOUT_HALTED,   /* the campaign was paused or cancelled: checkpoint saved, ack the job (a
                      * resume enqueues it again) */
} fanout_result;

typedef struct fanout_ctx {
    const minicrm_config *cfg; /* not owned */
    dbpool *db;                /* not owned */
    queue *campaigns;          /* consumer handle (heartbeat during long fan-outs) */
    queue *sends;              /* producer handle */
    rconn *rc;                 /* the connection of both handles (lib/campctl's flags, lease) */
    const char *owner;         /* this worker's consumer id (the fan-out lease's value) */
    long long written;         /* logs written by this process (progress logs) */
    int64_t next_repair_ms;    /* when fanout_repair_flags runs next (monotonic) */
    int64_t finish_after_ms;   /* fanout_finish_cancels' next page: cancelledAt after this */
    bool schedule_rebuilt;     /* fanout_schedule_rebuild ran since this process started */
} fanout_ctx;

/* Repair the pause/cancel flags in Redis from MongoDB (campctl_repair_begin/add/finish): flags
 * Redis lost, and the flag of a campaign whose resume was interrupted after its MongoDB write.
 * Streams every PAUSED campaign and those CANCELLED within CAMPCTL_CANCEL_REPAIR_WINDOW_MS in
 * chunks (no cap; memory: one chunk plus 25 bytes per PAUSED campaign); the worker runs it at
 * most every 3 s. Returns the number of changes, or -1. */
int fanout_repair_flags(fanout_ctx *x);

/* Rescue campaigns left without a job: QUEUED or SENDING in MongoDB, fan-out not done, not
 * changed for campaigns.rescue_after_s, and no fan-out holding their lease (the API died between
 * a create's or a resume's MongoDB write and its enqueue, or Redis lost the job). Each gets its
 * campaign job again, at most once per 2 x rescue_after_s across every worker (queue_push_once);
 * a job that was only waiting in a long queue is then run twice, which the fan-out's checkpoint
 * makes harmless. Returns the number queued, or -1. */
int fanout_rescue_stalled(fanout_ctx *x);

/* Finish cancels left unfinished: CANCELLED campaigns with pending > 0, cancelled within
 * CAMPCTL_CANCEL_REPAIR_WINDOW_MS, at most FANOUT_FINISH_CANCELS_BATCH per pass in cancelledAt
 * order (a pass goes on after the previous one's last, so none starves). Each one whose fan-out
 * holds no lease and whose Redis side is quiet (cancelled flag in every key set, every live sends
 * consumer acked the current epoch: no send of it can still reach the vendor unseen) gets
 * campctl_at_vendor, campaign_cancel_logs (every PENDING log not at the vendor -> CANCELLED) and
 * campaign_cancel_recount, as the API's cancel does. This covers the cancel's windows: a job
 * the snapshot saw in a sends consumer's processing list that the consumer then dropped (its
 * logs were kept PENDING), a fan-out batch that landed after the cancel (its lease expired
 * during a slow batch: its logs PENDING, total/pending moved by its checkpoint), an API killed
 * between the MongoDB move and the bulk. Idempotent; any number of workers may run it. Returns
 * the number of campaigns whose logs moved, or -1. */
#define FANOUT_FINISH_CANCELS_BATCH 20
int fanout_finish_cancels(fanout_ctx *x);

/* Publish the webhook events of campaign moves whose publication a crash interrupted
 * (lib/campevents: entries older than FANOUT_EVENTS_RESCUE_MS in a campaign's events_due).
 * Returns the number published, or -1. */
#define FANOUT_EVENTS_RESCUE_MS 5000
int fanout_rescue_events(fanout_ctx *x);

/* The schedule (lib/campctl): promote the due campaign jobs to the campaigns queue (one script,
 * one promotion even with many workers) and cancel, with the reason, those whose send_at is
 * older than campaigns.schedule_expiry_s. Returns the number promoted, or -1. */
int fanout_schedule_tick(fanout_ctx *x);
/* Re-add every SCHEDULED campaign of MongoDB to the schedule (ZADD NX): Redis may have lost
 * it. Run at worker start. Returns the number added, or -1. */
int fanout_schedule_rebuild(fanout_ctx *x);

/* Fan out campaign `campaign_hex`. On FANOUT_RETRY/FANOUT_UNKNOWN a reason is written to why. */
fanout_result fanout_run(fanout_ctx *x, const char *campaign_hex, char *why, size_t whylen);

#endif
