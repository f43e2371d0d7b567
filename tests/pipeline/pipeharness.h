/*
 * pipeharness: the whole delivery pipeline on private services, for tests/pipeline and
 * bench/campaign.
 *
 * pipeh_start() starts redis-server and minicrm-devdb (tests/support/testenv), opens a Redis and
 * a MongoDB connection, creates the indexes the pipeline relies on, and exports the environment
 * the programs read (REDIS_URL, MONGO_URI, PORT, API_BASE_URL, fast heartbeats and timeouts).
 * pipeh_spawn() starts one of the real programs (minicrm-api, minicrm-worker, minicrm-receipts,
 * minicrm-vendor-sim) with its output in the env directory; pipeh_stop() stops everything.
 *
 * Customers are seeded deterministically: customer i has total_spend (i * 37) % 10000, e-mail
 * c{i}@{a|b|c}.example (i % 3), createdAt now - i minutes, last_visit_date now - (i % 100) days,
 * so a test can compute the exact audience of a rule without asking the database.
 *
 * Not thread-safe; one harness per test process.
 */
#ifndef MINICRM_PIPEHARNESS_H
#define MINICRM_PIPEHARNESS_H

#include "queue.h"
#include "rconn.h"
#include "testenv.h"

#include <bson/bson.h>
#include <mongoc/mongoc.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum { PH_API, PH_WORKER, PH_RECEIPTS, PH_VENDOR, PH_NPROCS };

typedef struct pipeh {
    testenv env;
    int api_port;
    pid_t pid[PH_NPROCS];
    rconn *rc;
    mongoc_client_t *mc;
    int64_t seed_now; /* "now" used when seeding */
} pipeh;

typedef struct ph_campaign {
    char status[16];
    int64_t total, pending, sent, failed, cancelled;
    bool fanout_done;
} ph_campaign;

/* Start services and export the environment. 0 or -1 (message on stderr). */
int pipeh_start(pipeh *h);
void pipeh_stop(pipeh *h);
/* Start program `which` (PH_*), extra args NULL-terminated list. Returns 0 or -1. Waits for the
 * API port when starting the API. */
int pipeh_spawn(pipeh *h, int which, const char *const *extra);
/* kill(sig) the program's process group and reap it. */
void pipeh_kill(pipeh *h, int which, int sig);
/* Seed n customers (batched). 0 or -1. */
int pipeh_seed(pipeh *h, int n);
/* Customer i's total_spend and e-mail domain letter, as seeded. */
double pipeh_spend(int i);
char pipeh_domain(int i);
/* Insert a QUEUED campaign with the given rules (JSON text) as the API would, and push its job.
 * 0 or -1. */
int pipeh_campaign(pipeh *h, const char *name, const char *rules_json, bson_oid_t *out);
/* Read the campaign's status and counters. 0 or -1. */
int pipeh_read(pipeh *h, const bson_oid_t *cid, ph_campaign *out);
/* Poll until COMPLETED or timeout. 0 if completed. */
int pipeh_wait_completed(pipeh *h, const bson_oid_t *cid, int timeout_ms, ph_campaign *out);
/* Count the campaign's logs by status (out[0] PENDING, [1] SENT, [2] FAILED, [3] other);
 * returns the total, or -1. If spend_min >= 0, also counts in *bad the logs whose customer
 * does not have total_spend >= spend_min (checked against the customers collection). */
long long pipeh_count_logs(pipeh *h, const bson_oid_t *cid, long long out[4]);
mongoc_collection_t *pipeh_coll(pipeh *h, const char *name);
/* Path of a program's log file (static storage). */
const char *pipeh_logfile(pipeh *h, int which);

#endif
