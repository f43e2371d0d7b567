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
 *
 * Not thread-safe: one fanout_ctx per process.
 */
#ifndef MINICRM_WORKERS_FANOUT_H
#define MINICRM_WORKERS_FANOUT_H

#include "config.h"
#include "dbpool.h"
#include "queue.h"

#include <bson/bson.h>

typedef enum {
    FANOUT_DONE = 0, /* fan-out finished (or the campaign was already final) */
    FANOUT_STOPPED,  /* a stop was requested; checkpoint saved, job should be handed back */
    FANOUT_LOST,     /* the checkpoint moved under us: retry the job, it resumes from there */
    FANOUT_UNKNOWN,  /* no such campaign (or unusable rules): dead-letter the job */
    FANOUT_RETRY,    /* MongoDB/Redis trouble: retry the job later */
} fanout_result;

typedef struct fanout_ctx {
    const minicrm_config *cfg; /* not owned */
    dbpool *db;                /* not owned */
    queue *campaigns;          /* consumer handle (heartbeat during long fan-outs) */
    queue *sends;              /* producer handle */
    long long written;         /* logs written by this process (progress logs) */
} fanout_ctx;

/* Fan out campaign `campaign_hex`. On FANOUT_RETRY/FANOUT_UNKNOWN a reason is written to why. */
fanout_result fanout_run(fanout_ctx *x, const char *campaign_hex, char *why, size_t whylen);

#endif
