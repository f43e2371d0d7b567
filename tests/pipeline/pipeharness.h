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
 * The scenario tests also share small helpers: pipeh_start_all() (every program not running),
 * pipeh_request() / pipeh_post() / pipeh_get() (an HTTP request with a key, through libcurl),
 * pipeh_make_key() (an API key made the way an operator does, with `minicrm keys create`),
 * pipeh_wait_log_final() and pipeh_sleep_ms() (only for pacing and polling, never as
 * synchronisation), pipeh_post_move() and the readers of its answer, pipeh_final_logs(), and
 * pipeh_use_shards() / pipeh_start_on_cluster() for the runs with queue.shards > 1.
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
    int64_t bounced, complained, opened, clicked; /* receipt events' counters */
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

/* Start every program whose pid is not set: the API, minicrm-worker --procs 2, the receipts
 * worker and the vendor simulator, in that order. 0 or -1. */
int pipeh_start_all(pipeh *h);
/* Sleep ms milliseconds (pacing and poll intervals). */
void pipeh_sleep_ms(int ms);
/* A pseudo-random int in [lo, hi] from the test's own state (a fixed seed gives the same
 * sequence every run: kill moments are varied, yet reproducible). */
int pipeh_rand(unsigned *state, int lo, int hi);

/* An HTTP answer, owned by the caller: the status (0: no answer), the body (truncated to fit,
 * NUL-terminated), the Content-Type value ("" when none) and whether the answer carried
 * Idempotent-Replayed. */
typedef struct pipeh_answer {
    long status;
    char body[16384];
    size_t n;
    bool replayed;
    char ctype[128];
} pipeh_answer;

/* One request: method ("GET", "POST", "DELETE", ...) to the API's path (e.g. "/api/campaigns")
 * or to a full http:// URL, with `Authorization: Bearer key` (key may be NULL: none). A
 * non-NULL body is sent with Content-Type ctype (NULL: application/json); a POST without a body
 * sends an empty one without a content type. header (NULL: none) is one more request header
 * line. Returns the HTTP status (also in a->status), 0 when no answer came within timeout_ms;
 * the answer in *a (reset first). */
long pipeh_request(pipeh *h, const char *method, const char *path_or_url, const char *key,
                   const char *body, const char *ctype, const char *header, long timeout_ms,
                   pipeh_answer *a);

/* POST body (JSON, may be NULL) to the API's path: pipeh_request with method "POST". */
long pipeh_post(pipeh *h, const char *path, const char *key, const char *body, const char *header,
                long timeout_ms, pipeh_answer *a);

/* GET path from the API with `Authorization: Bearer key` (key may be NULL); as pipeh_post. */
long pipeh_get(pipeh *h, const char *path, const char *key, long timeout_ms, pipeh_answer *a);

/* Create an API key with `minicrm keys create --role ROLE --name NAME` (stderr appended to
 * cli.log in the env directory); the key into out (size n). 0 when the command succeeded and
 * printed an "mck_" key, else -1. */
int pipeh_make_key(pipeh *h, const char *role, const char *name, char *out, size_t n);

/* Poll the log lid until it exists with a status other than PENDING, or timeout_ms passed; the
 * last status seen into status ("PENDING" when none). 0 when final, -1 on timeout. */
int pipeh_wait_log_final(pipeh *h, const bson_oid_t *lid, int timeout_ms, char status[16]);

/* Poll the campaign until at least min_final of its receipts were applied (sent + failed) while
 * it is not COMPLETED, so a disruption hits it mid-flight. 0, or -1 if it completed first or
 * timeout_ms passed. */
int pipeh_wait_mid_flight(pipeh *h, const bson_oid_t *cid, long long min_final, int timeout_ms);

/* Counter tokens of campaign cid left stale (the receipts worker must be dead): registered in
 * P{receipts}:ctoks, with logs among the ids stored with the token that the token moved, and
 * not yet counted (the token is not in the campaign's ctoks). moved_by appends to the logs
 * filter the condition "this log was moved by tok" (e.g. {ctok: tok}). Returns how many, or
 * -1. */
long long pipeh_stale_tokens(pipeh *h, const bson_oid_t *cid,
                             void (*moved_by)(bson_t *filter, const char *tok));

/* POST /api/campaigns/<cid>/<move> ("pause", "resume", "cancel") without a body, with
 * `Authorization: Bearer key`: pipeh_post's status (0: no answer), the answer in *a. */
long pipeh_post_move(pipeh *h, const char *key, const bson_oid_t *cid, const char *move,
                     long timeout_ms, pipeh_answer *a);
/* The "status" string of a JSON answer into out ("" when the body is not JSON); returns out. */
const char *pipeh_answer_status(const pipeh_answer *a, char out[16]);
/* "transition.took_ms" of a move's answer (the API's own measure of the move), or -1. */
long long pipeh_answer_took_ms(const pipeh_answer *a);
/* Logs of the campaign that are final (SENT or FAILED), or -1. */
long long pipeh_final_logs(pipeh *h, const bson_oid_t *cid);

/* This process's queue.shards (what lib/queue and lib/campctl read here: held counts, stats and
 * key sets then cover every shard). */
void pipeh_use_shards(int shards);
/* pipeh_use_shards(MINICRM_QUEUE_SHARDS) when that variable is set (the programs read it too);
 * nothing otherwise. */
void pipeh_use_shards_env(void);
/* pipeh_start() on the Redis Cluster at cluster_url with queue.shards = shards for this process
 * and the programs, then the settings the cluster runs share: MINICRM_TEST_DIR, a Redis timeout
 * that rides out a failover (8 s) and a vendor delay of at most 1.5 s. 0 or -1 (message on
 * stderr); on -1 the caller still calls pipeh_stop(). */
int pipeh_start_on_cluster(pipeh *h, const char *cluster_url, int shards);

/* Run the shell command line `minicrm ARGS` (ARGS a shell word list; " 2>&1" appended when
 * with_stderr, else stderr goes to the test's own): testenv_run_cmd's result. */
int pipeh_run_cli(const char *args, char *out, size_t n, bool with_stderr);

#endif
