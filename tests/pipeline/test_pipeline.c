/*
 * test_pipeline: the delivery pipeline end to end with the real programs (minicrm-api,
 * minicrm-worker --procs 2, minicrm-receipts, minicrm-vendor-sim) on private redis-server and
 * minicrm-devdb: exact results for a campaign, the rules selecting exactly the right customers,
 * kill -9 of each process at random moments, a Redis restart (appendonly), devdb stopped for a
 * while, a poison receipt dead-lettered then requeued with `minicrm dlq requeue`, and the
 * vendorMsgId of POST /api/vendor/send ending on the log.
 *
 * Every scenario ends with the same audit (check_final): status COMPLETED, one log per matched
 * customer and no other, every log final, campaign counters equal to the counts by status, the
 * SENT share within 6 standard deviations of the configured 0.9, and no dead letters.
 */
#include "dbpool.h"
#include "pipeharness.h"
#include "test.h"
#include "timeutil.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NCUST 3000

static pipeh h;
static unsigned rnd_state = 12345;

static long long expected_audience(double min_spend, char domain)
{
    long long n = 0;
    for (int i = 0; i < NCUST; i++)
        if (pipeh_spend(i) >= min_spend && (!domain || pipeh_domain(i) == domain))
            n++;
    return n;
}

static long long dead_letters(const char *qname)
{
    char err[256];
    queue_stats st;
    /* The first command after a Redis restart may fail on the stale socket: retry. */
    for (int i = 0; i < 3; i++)
        if (queue_stats_get(h.rc, h.env.prefix, qname, &st, err, sizeof err) == 0)
            return st.dead;
    return -1;
}

/* The audit every scenario ends with. Returns nonzero (and reports) on a failure. */
#define CHECK_FINAL(cid, expected)                                                                 \
    do {                                                                                           \
        ph_campaign c_;                                                                            \
        int w_ = pipeh_wait_completed(&h, &(cid), 90000, &c_);                                     \
        CHECK_MSG(w_ == 0,                                                                         \
                  "campaign not COMPLETED: status=%s total=%lld pending=%lld sent=%lld "           \
                  "failed=%lld",                                                                   \
                  c_.status, (long long)c_.total, (long long)c_.pending, (long long)c_.sent,       \
                  (long long)c_.failed);                                                           \
        long long by_[4];                                                                          \
        long long n_ = pipeh_count_logs(&h, &(cid), by_);                                          \
        CHECK_INT_EQ(n_, (expected));                                                              \
        CHECK_INT_EQ(by_[0], 0);                                                                   \
        CHECK_INT_EQ(by_[3], 0);                                                                   \
        CHECK_INT_EQ(c_.total, (expected));                                                        \
        CHECK_INT_EQ(c_.pending, 0);                                                               \
        CHECK_INT_EQ(c_.sent, by_[1]);                                                             \
        CHECK_INT_EQ(c_.failed, by_[2]);                                                           \
        double share_ = (double)by_[1] / (double)(n_ ? n_ : 1);                                    \
        double sd_ = 0.3 / __builtin_sqrt((double)(n_ ? n_ : 1));                                  \
        CHECK_MSG(share_ > 0.9 - 6 * sd_ && share_ < 0.9 + 6 * sd_,                                \
                  "SENT share %.4f outside 0.9 +- 6 sd (%.4f)", share_, 6 * sd_);                  \
        CHECK_INT_EQ(dead_letters(QUEUE_RECEIPTS), 0);                                             \
        CHECK_INT_EQ(dead_letters(QUEUE_SENDS), 0);                                                \
        CHECK_INT_EQ(dead_letters(QUEUE_CAMPAIGNS), 0);                                            \
    } while (0)

/* Every log's customer satisfies the rule (total_spend >= min and the domain). */
static long long logs_outside_rule(const bson_oid_t *cid, double min_spend, char domain)
{
    mongoc_collection_t *logs = pipeh_coll(&h, DB_LOGS), *custs = pipeh_coll(&h, DB_CUSTOMERS);
    bson_t *f = BCON_NEW("campaign_id", BCON_OID(cid));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(logs, f, NULL, NULL);
    const bson_t *doc;
    long long bad = 0;
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        if (!bson_iter_init_find(&it, doc, "customer_id") || !BSON_ITER_HOLDS_OID(&it)) {
            bad++;
            continue;
        }
        bson_t *cf = BCON_NEW("_id", BCON_OID(bson_iter_oid(&it)));
        mongoc_cursor_t *cc = mongoc_collection_find_with_opts(custs, cf, NULL, NULL);
        const bson_t *cd;
        if (!mongoc_cursor_next(cc, &cd)) {
            bad++;
        } else {
            bson_iter_t ci;
            double spend =
                bson_iter_init_find(&ci, cd, "total_spend") ? bson_iter_as_double(&ci) : -1;
            const char *em = bson_iter_init_find(&ci, cd, "email") ? bson_iter_utf8(&ci, NULL) : "";
            const char *at = strchr(em, '@');
            if (spend < min_spend || (domain && (!at || at[1] != domain)))
                bad++;
        }
        mongoc_cursor_destroy(cc);
        bson_destroy(cf);
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(f);
    mongoc_collection_destroy(logs);
    mongoc_collection_destroy(custs);
    return bad;
}

/* The "items" counter of a queue's stats (work items of the acked jobs). */
static long long queue_items(const char *name)
{
    queue_stats st;
    char err[256];
    return queue_stats_get(h.rc, h.env.prefix, name, &st, err, sizeof err) == 0 ? st.items : -1;
}

TEST(campaign_exact_counts_and_rules)
{
    CHECK(pipeh_start_all(&h) == 0);
    long long sends0 = queue_items(QUEUE_SENDS), receipts0 = queue_items(QUEUE_RECEIPTS);
    bson_oid_t cid;
    CHECK(pipeh_campaign(&h, "exact", "{\"min_spend\": 5000, \"email_domain\": \"b.example\"}",
                         &cid) == 0);
    long long expected = expected_audience(5000, 'b');
    CHECK(expected > 400);
    CHECK_FINAL(cid, expected);
    CHECK_INT_EQ(logs_outside_rule(&cid, 5000, 'b'), 0);
    /* Sends and receipts travel in batch jobs, but the queues count messages: one send and one
     * receipt per log. (The vendor acks a send job just after its last POST: poll for it.) */
    int64_t deadline = time_mono_ms() + 10000;
    while (queue_items(QUEUE_SENDS) - sends0 < expected && time_mono_ms() < deadline)
        pipeh_sleep_ms(20);
    CHECK_INT_EQ(queue_items(QUEUE_SENDS) - sends0, expected);
    CHECK_INT_EQ(queue_items(QUEUE_RECEIPTS) - receipts0, expected);
}

TEST(kill9_each_process_mid_campaign)
{
    CHECK(pipeh_start_all(&h) == 0);
    bson_oid_t cid;
    CHECK(pipeh_campaign(&h, "chaos", "{}", &cid) == 0);
    /* Every process in turn is killed with SIGKILL at a random moment and restarted, three
     * rounds; the campaign must still be running when each kill lands. */
    const int victims[] = {PH_WORKER, PH_VENDOR, PH_RECEIPTS};
    CHECK_MSG(pipeh_wait_mid_flight(&h, &cid, 1, 20000) == 0,
              "campaign finished before the first kill");
    int kills_mid_flight = 0;
    for (int k = 0; k < 9; k++) {
        pipeh_sleep_ms(pipeh_rand(&rnd_state, 20, 250));
        ph_campaign c;
        if (pipeh_read(&h, &cid, &c) == 0 && strcmp(c.status, "COMPLETED") != 0)
            kills_mid_flight++;
        pipeh_kill(&h, victims[k % 3], SIGKILL);
        pipeh_sleep_ms(pipeh_rand(&rnd_state, 0, 200));
        CHECK(pipeh_start_all(&h) == 0);
    }
    fprintf(stderr, "  kills while the campaign was running: %d of 9\n", kills_mid_flight);
    CHECK(kills_mid_flight >= 3);
    CHECK_FINAL(cid, NCUST);
}

TEST(vendor_sigterm_mid_flight)
{
    CHECK(pipeh_start_all(&h) == 0);
    bson_oid_t cid;
    CHECK(pipeh_campaign(&h, "vendor-stop", "{}", &cid) == 0);
    CHECK_MSG(pipeh_wait_mid_flight(&h, &cid, 1, 20000) == 0, "campaign finished before the stop");
    /* SIGTERM: the simulator stops claiming, delivers what it holds for up to
     * workers.shutdown_timeout_s (5 s here), hands back the rest and exits 0, holding nothing. */
    char key[300];
    snprintf(key, sizeof key, "%s{sends}:processing:vendor-sim:vendor-sim", h.env.prefix);
    long long held = 0;
    for (int i = 0; i < 200 && held == 0; i++) { /* it holds send jobs while they are in flight */
        redisReply *r0 = rconn_command(h.rc, "LLEN %s", key);
        held = r0 && r0->type == REDIS_REPLY_INTEGER ? r0->integer : 0;
        if (r0)
            freeReplyObject(r0);
        if (held == 0)
            pipeh_sleep_ms(5);
    }
    CHECK(held > 0);
    int64_t t0 = time_mono_ms();
    int st = testenv_kill_wait(h.pid[PH_VENDOR], SIGTERM, 15000);
    h.pid[PH_VENDOR] = 0;
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(time_mono_ms() - t0 < 8000);
    redisReply *r = rconn_command(h.rc, "LLEN %s", key);
    CHECK(r && r->type == REDIS_REPLY_INTEGER);
    CHECK_INT_EQ(r ? r->integer : -1, 0);
    if (r)
        freeReplyObject(r);
    CHECK(pipeh_start_all(&h) == 0);
    CHECK_FINAL(cid, NCUST);
}

TEST(redis_restart_mid_campaign)
{
    CHECK(pipeh_start_all(&h) == 0);
    if (h.env.redis_pid <= 0)
        TEST_SKIP("Redis is external (MINICRM_TEST_REDIS_URL): not ours to restart");
    bson_oid_t cid;
    CHECK(pipeh_campaign(&h, "redis-restart", "{\"min_spend\": 2000}", &cid) == 0);
    CHECK_MSG(pipeh_wait_mid_flight(&h, &cid, 1, 20000) == 0,
              "campaign finished before the disruption");
    /* Restart redis-server on the same port and directory: the AOF brings the queues back. */
    CHECK(testenv_kill_wait(h.env.redis_pid, SIGTERM, 10000) >= 0);
    char port[16], log[400];
    snprintf(port, sizeof port, "%d", h.env.redis_port);
    snprintf(log, sizeof log, "%s/redis.log", h.env.dir);
    char *argv[] = {"redis-server", "--port",      port,     "--bind", "127.0.0.1",
                    "--dir",        h.env.dir,     "--save", "",       "--appendonly",
                    "yes",          "--daemonize", "no",     NULL};
    pipeh_sleep_ms(300);
    h.env.redis_pid = testenv_spawn(argv, log);
    CHECK(h.env.redis_pid > 0);
    CHECK(testenv_wait_port(h.env.redis_port, 10000) == 0);
    CHECK_FINAL(cid, expected_audience(2000, 0));
}

TEST(devdb_stopped_then_back)
{
    if (h.env.devdb_pid <= 0)
        TEST_SKIP("MongoDB is external (MINICRM_TEST_MONGO_URI): not ours to stop");
    CHECK(pipeh_start_all(&h) == 0);
    bson_oid_t cid;
    CHECK(pipeh_campaign(&h, "devdb-pause", "{\"min_spend\": 3000}", &cid) == 0);
    CHECK_MSG(pipeh_wait_mid_flight(&h, &cid, 1, 20000) == 0,
              "campaign finished before the disruption");
    /* Freeze devdb until the receipts worker has seen a MongoDB call fail and scheduled a
     * retry (its socket timeout is 6 x MINICRM_MONGO_TIMEOUT_MS), at most 60 s: a fixed pause
     * could end before any call timed out on a loaded machine. */
    char err[256];
    queue_stats st = {0};
    CHECK(kill(h.env.devdb_pid, SIGSTOP) == 0);
    for (int waited = 0; waited < 60000 && st.retried == 0; waited += 100) {
        pipeh_sleep_ms(100);
        if (queue_stats_get(h.rc, h.env.prefix, QUEUE_RECEIPTS, &st, err, sizeof err) != 0)
            st.retried = 0;
    }
    CHECK(kill(h.env.devdb_pid, SIGCONT) == 0);
    fprintf(stderr, "  receipts retried during the pause: %lld\n", st.retried);
    CHECK(st.retried > 0);
    CHECK_FINAL(cid, expected_audience(3000, 0));
}

static int run_cli(const char *const *args)
{
    char *argv[12];
    int n = 0;
    argv[n++] = (char *)testenv_bin("minicrm");
    for (int i = 0; args[i] && n < 11; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    char log[400];
    snprintf(log, sizeof log, "%s/cli.log", h.env.dir);
    pid_t pid = testenv_spawn(argv, log);
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(poison_receipt_dead_letter_and_requeue)
{
    CHECK(pipeh_start_all(&h) == 0);
    char err[256];
    queue *q = queue_open(h.rc, h.env.prefix, QUEUE_RECEIPTS, NULL, NULL, err, sizeof err);
    CHECK(q);
    /* A receipt for a log that does not exist (yet) and a malformed one. */
    bson_oid_t lid, cid, uid;
    bson_oid_init(&lid, NULL);
    bson_oid_init(&cid, NULL);
    bson_oid_init(&uid, NULL);
    char hex[25], job[200];
    bson_oid_to_string(&lid, hex);
    snprintf(job, sizeof job,
             "{\"log_id\":\"%s\",\"vendorMsgId\":\"vm-poison\",\"status\":\"SENT\",\"at\":1}", hex);
    const char *jobs[] = {job, "{\"log_id\": 42, \"status\": \"SENT\"}"};
    CHECK_INT_EQ(queue_push_many(q, jobs, NULL, 2), 0);
    int64_t deadline = time_mono_ms() + 20000;
    while (queue_dlq_len(q) < 2 && time_mono_ms() < deadline)
        pipeh_sleep_ms(50);
    CHECK_INT_EQ(queue_dlq_len(q), 2);
    char **dl;
    CHECK_INT_EQ(queue_dlq_list(q, 0, 2, &dl), 2);
    bool unknown = strstr(dl[0], "unknown log_id") || strstr(dl[1], "unknown log_id");
    bool malformed = strstr(dl[0], "malformed") || strstr(dl[1], "malformed");
    for (int i = 0; i < 2; i++)
        free(dl[i]);
    free(dl);
    CHECK(unknown && malformed);
    /* The log appears (e.g. restored from a backup); purge the malformed one, requeue the
     * other with the CLI, and it is applied. */
    mongoc_collection_t *logs = pipeh_coll(&h, DB_LOGS);
    bson_t *doc = BCON_NEW("_id", BCON_OID(&lid), "campaign_id", BCON_OID(&cid), "customer_id",
                           BCON_OID(&uid), "message", BCON_UTF8("hi"), "status",
                           BCON_UTF8("PENDING"), "createdAt", BCON_DATE_TIME(time_now_ms()),
                           "updatedAt", BCON_DATE_TIME(time_now_ms()));
    bson_error_t e;
    CHECK(mongoc_collection_insert_one(logs, doc, NULL, NULL, &e));
    bson_destroy(doc);
    /* Find which index is the malformed one. */
    CHECK_INT_EQ(queue_dlq_list(q, 0, 2, &dl), 2);
    int malformed_at = strstr(dl[0], "malformed") ? 0 : 1;
    for (int i = 0; i < 2; i++)
        free(dl[i]);
    free(dl);
    char idx[8];
    snprintf(idx, sizeof idx, "%d", malformed_at);
    const char *purge[] = {"dlq", "purge", QUEUE_RECEIPTS, idx, NULL};
    CHECK_INT_EQ(run_cli(purge), 0);
    const char *list[] = {"dlq", "list", QUEUE_RECEIPTS, NULL};
    CHECK_INT_EQ(run_cli(list), 0);
    const char *requeue[] = {"dlq", "requeue", QUEUE_RECEIPTS, "--all", NULL};
    CHECK_INT_EQ(run_cli(requeue), 0);
    CHECK_INT_EQ(queue_dlq_len(q), 0);
    deadline = time_mono_ms() + 20000;
    char status[16] = "";
    while (strcmp(status, "SENT") && time_mono_ms() < deadline) {
        bson_t *f = BCON_NEW("_id", BCON_OID(&lid));
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(logs, f, NULL, NULL);
        const bson_t *d;
        bson_iter_t it;
        if (mongoc_cursor_next(cur, &d) && bson_iter_init_find(&it, d, "status"))
            snprintf(status, sizeof status, "%s", bson_iter_utf8(&it, NULL));
        mongoc_cursor_destroy(cur);
        bson_destroy(f);
        if (strcmp(status, "SENT"))
            pipeh_sleep_ms(50);
    }
    CHECK_STR_EQ(status, "SENT");
    const char *queues[] = {"queues", NULL};
    CHECK_INT_EQ(run_cli(queues), 0);
    mongoc_collection_destroy(logs);
    queue_close(q);
}

/* Insert a PENDING log of campaign cid; returns its id. */
static void insert_log(mongoc_collection_t *logs, const bson_oid_t *cid, bson_oid_t *lid)
{
    bson_oid_t uid;
    bson_oid_init(lid, NULL);
    bson_oid_init(&uid, NULL);
    int64_t now = time_now_ms();
    bson_t *doc =
        BCON_NEW("_id", BCON_OID(lid), "campaign_id", BCON_OID(cid), "customer_id", BCON_OID(&uid),
                 "message", BCON_UTF8("hi"), "status", BCON_UTF8("PENDING"), "createdAt",
                 BCON_DATE_TIME(now), "updatedAt", BCON_DATE_TIME(now));
    bson_error_t e;
    CHECK(mongoc_collection_insert_one(logs, doc, NULL, NULL, &e));
    bson_destroy(doc);
}

/* Index of the newest dead letter containing `needle`, or -1. */
static int dlq_find(queue *q, const char *needle)
{
    char **dl;
    long n = (long)queue_dlq_list(q, 0, 50, &dl);
    int at = -1;
    for (long i = 0; i < n; i++) {
        if (at < 0 && strstr(dl[i], needle))
            at = (int)i;
        free(dl[i]);
    }
    if (n > 0)
        free(dl);
    return at;
}

TEST(batch_jobs_with_poison_parts)
{
    CHECK(pipeh_start_all(&h) == 0);
    char err[256];
    queue *rq = queue_open(h.rc, h.env.prefix, QUEUE_RECEIPTS, NULL, NULL, err, sizeof err);
    queue *sq = queue_open(h.rc, h.env.prefix, QUEUE_SENDS, NULL, NULL, err, sizeof err);
    CHECK(rq && sq);
    long long rdead0 = queue_dlq_len(rq), sdead0 = queue_dlq_len(sq);
    /* A campaign whose fan-out is done, with four PENDING logs. */
    mongoc_collection_t *logs = pipeh_coll(&h, DB_LOGS), *camps = pipeh_coll(&h, DB_CAMPAIGNS);
    bson_oid_t cid, l1, l2, l3, u;
    bson_oid_init(&cid, NULL);
    int64_t now = time_now_ms();
    bson_t *cd =
        BCON_NEW("_id", BCON_OID(&cid), "name", BCON_UTF8("poison"), "status", BCON_UTF8("SENDING"),
                 "fanout_done", BCON_BOOL(true), "total", BCON_INT64(4), "pending", BCON_INT64(4),
                 "sent", BCON_INT64(0), "failed", BCON_INT64(0), "createdAt", BCON_DATE_TIME(now));
    bson_error_t e;
    CHECK(mongoc_collection_insert_one(camps, cd, NULL, NULL, &e));
    bson_destroy(cd);
    insert_log(logs, &cid, &l1);
    insert_log(logs, &cid, &l2);
    insert_log(logs, &cid, &l3);
    bson_oid_init(&u, NULL); /* a log that does not exist yet */
    char c[25], h1[25], h2[25], h3[25], hu[25], job[2048];
    bson_oid_to_string(&cid, c);
    bson_oid_to_string(&l1, h1);
    bson_oid_to_string(&l2, h2);
    bson_oid_to_string(&l3, h3);
    bson_oid_to_string(&u, hu);
    /* One batch job as the API queues it: two good receipts, a malformed one, one for an unknown
     * log, one naming a campaign that is not its log's. */
    snprintf(
        job, sizeof job,
        "{\"receipts\":["
        "{\"log_id\":\"%s\",\"status\":\"SENT\",\"vendorMsgId\":\"vm-1\",\"campaign_id\":\"%s\"},"
        "{\"log_id\":\"%s\",\"status\":\"FAILED\",\"vendorMsgId\":\"vm-2\",\"campaign_id\":\"%s\"},"
        "{\"log_id\":42,\"status\":\"SENT\"},"
        "{\"log_id\":\"%s\",\"status\":\"SENT\",\"vendorMsgId\":\"vm-u\",\"campaign_id\":\"%s\"},"
        "{\"log_id\":\"%s\",\"status\":\"SENT\",\"vendorMsgId\":\"vm-3\","
        "\"campaign_id\":\"0123456789abcdef01234567\"}]}",
        h1, c, h2, c, hu, c, h3);
    CHECK_INT_EQ(queue_push(rq, job, strlen(job)), 0);
    char st[16];
    pipeh_wait_log_final(&h, &l1, 20000, st);
    CHECK_STR_EQ(st, "SENT");
    pipeh_wait_log_final(&h, &l2, 20000, st);
    CHECK_STR_EQ(st, "FAILED");
    int64_t deadline = time_mono_ms() + 20000;
    while (queue_dlq_len(rq) < rdead0 + 3 && time_mono_ms() < deadline)
        pipeh_sleep_ms(20);
    /* Each poison receipt is a dead letter of its own, holding just that receipt. */
    CHECK_INT_EQ(queue_dlq_len(rq), rdead0 + 3);
    CHECK(dlq_find(rq, "malformed receipt: log_id") >= 0);
    CHECK(dlq_find(rq, "does not belong to the campaign") >= 0);
    int unknown_at = dlq_find(rq, "unknown log_id");
    CHECK(unknown_at >= 0);
    CHECK(dlq_find(rq, "vm-1") < 0); /* the good ones are nowhere in the DLQ */
    ph_campaign pc;
    CHECK_INT_EQ(pipeh_read(&h, &cid, &pc), 0);
    CHECK_INT_EQ(pc.sent, 1);
    CHECK_INT_EQ(pc.failed, 1);
    CHECK_INT_EQ(pc.pending, 2);
    /* The unknown log turns up: requeueing its dead letter applies it. */
    {
        int64_t t = time_now_ms();
        bson_oid_t uid;
        bson_oid_init(&uid, NULL);
        bson_t *doc =
            BCON_NEW("_id", BCON_OID(&u), "campaign_id", BCON_OID(&cid), "customer_id",
                     BCON_OID(&uid), "message", BCON_UTF8("hi"), "status", BCON_UTF8("PENDING"),
                     "createdAt", BCON_DATE_TIME(t), "updatedAt", BCON_DATE_TIME(t));
        CHECK(mongoc_collection_insert_one(logs, doc, NULL, NULL, &e));
        bson_destroy(doc);
    }
    CHECK_INT_EQ(queue_dlq_requeue(rq, unknown_at), 1);
    pipeh_wait_log_final(&h, &u, 20000, st);
    CHECK_STR_EQ(st, "SENT");
    /* The vendor gets a fan-out batch job with one unusable send: that send is dead-lettered on
     * the sends queue, the good one (l3) is delivered and its receipt (which echoes the
     * campaign) completes the campaign. */
    snprintf(job, sizeof job,
             "{\"campaign_id\":\"%s\",\"sends\":[{\"customer_id\":\"x\",\"message\":\"no id\"},"
             "{\"log_id\":\"%s\",\"customer_id\":\"x\",\"message\":\"hi\"}]}",
             c, h3);
    CHECK_INT_EQ(queue_push(sq, job, strlen(job)), 0);
    pipeh_wait_log_final(&h, &l3, 20000, st);
    CHECK(!strcmp(st, "SENT") || !strcmp(st, "FAILED"));
    deadline = time_mono_ms() + 20000;
    while (queue_dlq_len(sq) < sdead0 + 1 && time_mono_ms() < deadline)
        pipeh_sleep_ms(20);
    CHECK_INT_EQ(queue_dlq_len(sq), sdead0 + 1);
    CHECK(dlq_find(sq, "\"message\":\"no id\"") == 0);
    CHECK(dlq_find(sq, h3) < 0);
    CHECK_INT_EQ(pipeh_wait_completed(&h, &cid, 20000, &pc), 0);
    CHECK_INT_EQ(pc.sent + pc.failed, 4);
    CHECK_INT_EQ(pc.pending, 0);
    CHECK_INT_EQ(pc.failed, 1 + !strcmp(st, "FAILED"));
    mongoc_collection_destroy(logs);
    mongoc_collection_destroy(camps);
    queue_close(rq);
    queue_close(sq);
}

/* A receipts batch whose MongoDB call timed out is in doubt: the server may apply it later.
 * The recovery of its token fences the batch's still-PENDING logs first, so that a late
 * statement of that batch moves nothing (and the log waits for its retried receipt). */
TEST(late_update_after_token_recovery_is_fenced)
{
    CHECK(pipeh_start_all(&h) == 0);
    mongoc_collection_t *logs = pipeh_coll(&h, DB_LOGS), *camps = pipeh_coll(&h, DB_CAMPAIGNS);
    bson_oid_t cid, lid;
    bson_oid_init(&cid, NULL);
    bson_t *cd = BCON_NEW("_id", BCON_OID(&cid), "name", BCON_UTF8("fence"), "status",
                          BCON_UTF8("SENDING"), "fanout_done", BCON_BOOL(true), "total",
                          BCON_INT64(1), "pending", BCON_INT64(1), "sent", BCON_INT64(0), "failed",
                          BCON_INT64(0), "createdAt", BCON_DATE_TIME(time_now_ms()));
    bson_error_t e;
    CHECK(mongoc_collection_insert_one(camps, cd, NULL, NULL, &e));
    bson_destroy(cd);
    insert_log(logs, &cid, &lid);
    /* The in-doubt batch: its token and ids are in Redis, old enough to be recovered. */
    const char *tok = "0123456789abcdef0123abcd";
    char lhex[25], zset[300], idkey[300];
    bson_oid_to_string(&lid, lhex);
    snprintf(zset, sizeof zset, "%s{receipts}:ctoks", h.env.prefix);
    snprintf(idkey, sizeof idkey, "%s{receipts}:ctok:%s", h.env.prefix, tok);
    redisReply *r = rconn_command(h.rc, "SET %s %s", idkey, lhex);
    CHECK(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = rconn_command(h.rc, "ZADD %s %lld %s", zset, (long long)(time_now_ms() - 600000), tok);
    CHECK(r && r->type == REDIS_REPLY_INTEGER);
    freeReplyObject(r);
    /* The receipts worker recovers it (every 5 s) and forgets it. */
    int64_t deadline = time_mono_ms() + 30000;
    long long left = 1;
    while (left && time_mono_ms() < deadline) {
        pipeh_sleep_ms(50);
        r = rconn_command(h.rc, "ZSCORE %s %s", zset, tok);
        left = r && r->type != REDIS_REPLY_NIL;
        if (r)
            freeReplyObject(r);
    }
    CHECK_INT_EQ(left, 0);
    r = rconn_command(h.rc, "EXISTS %s", idkey);
    CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer == 0);
    freeReplyObject(r);
    /* The late statement of that batch, exactly as the receipts worker writes it. */
    bson_t *sel = BCON_NEW("_id", BCON_OID(&lid), "status", BCON_UTF8("PENDING"), "fence", "{",
                           "$ne", BCON_UTF8(tok), "}", "campaign_id", BCON_OID(&cid));
    bson_t *upd = BCON_NEW("$set", "{", "status", BCON_UTF8("SENT"), "vendorMsgId",
                           BCON_UTF8("vm-late"), "ctok", BCON_UTF8(tok), "}");
    bson_t reply;
    CHECK(mongoc_collection_update_one(logs, sel, upd, NULL, &reply, &e));
    bson_iter_t it;
    CHECK(bson_iter_init_find(&it, &reply, "matchedCount") && bson_iter_as_int64(&it) == 0);
    bson_destroy(&reply);
    bson_destroy(sel);
    bson_destroy(upd);
    /* The retried receipt (a fresh token) still applies and is counted once. */
    queue *rq = queue_open(h.rc, h.env.prefix, QUEUE_RECEIPTS, NULL, NULL, (char[64]){0}, 64);
    char job[256], c[25];
    bson_oid_to_string(&cid, c);
    snprintf(
        job, sizeof job,
        "{\"log_id\":\"%s\",\"status\":\"SENT\",\"vendorMsgId\":\"vm-1\",\"campaign_id\":\"%s\"}",
        lhex, c);
    CHECK_INT_EQ(queue_push(rq, job, strlen(job)), 0);
    ph_campaign pc;
    CHECK_INT_EQ(pipeh_wait_completed(&h, &cid, 20000, &pc), 0);
    CHECK_INT_EQ(pc.sent, 1);
    CHECK_INT_EQ(pc.pending, 0);
    char st[16];
    pipeh_wait_log_final(&h, &lid, 20000, st);
    CHECK_STR_EQ(st, "SENT");
    queue_close(rq);
    mongoc_collection_destroy(logs);
    mongoc_collection_destroy(camps);
}

/* The vendorMsgId POST /api/vendor/send answers is the one the log ends with: the send job
 * carries it, the vendor simulator reports it, the receipts worker writes it. */
TEST(vendor_send_route_id_ends_on_log)
{
    CHECK(pipeh_start_all(&h) == 0);
    /* A staff key, made the way an operator does. */
    char key[200];
    CHECK_MSG(pipeh_make_key(&h, "staff", "pipeline-send", key, sizeof key) == 0, "keys create: %s",
              key);

    mongoc_collection_t *logs = pipeh_coll(&h, DB_LOGS);
    bson_oid_t cid, lid;
    bson_oid_init(&cid, NULL);
    insert_log(logs, &cid, &lid);
    char lhex[25], chex[25], body[200];
    bson_oid_to_string(&lid, lhex);
    bson_oid_to_string(&cid, chex);
    snprintf(body, sizeof body, "{\"log_id\":\"%s\",\"campaign_id\":\"%s\",\"message\":\"hi\"}",
             lhex, chex);
    pipeh_answer answer;
    long code = pipeh_post(&h, "/api/vendor/send", key, body, NULL, 10000L, &answer);
    CHECK_MSG(code == 200, "POST /api/vendor/send: %ld %s", code, answer.body);
    json_error_t je;
    json_t *aj = json_loads(answer.body, 0, &je);
    char vid[130] = "";
    const char *av = json_string_value(json_object_get(aj, "vendorMsgId"));
    snprintf(vid, sizeof vid, "%s", av ? av : "");
    json_decref(aj);
    CHECK(vid[0] != '\0');

    char fin[16];
    pipeh_wait_log_final(&h, &lid, 20000, fin);
    CHECK_MSG(!strcmp(fin, "SENT") || !strcmp(fin, "FAILED"), "log still %s", fin);
    bson_t *f = BCON_NEW("_id", BCON_OID(&lid));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(logs, f, NULL, NULL);
    const bson_t *d;
    bson_iter_t it;
    char on_log[130] = "";
    if (mongoc_cursor_next(cur, &d) && bson_iter_init_find(&it, d, "vendorMsgId") &&
        BSON_ITER_HOLDS_UTF8(&it))
        snprintf(on_log, sizeof on_log, "%s", bson_iter_utf8(&it, NULL));
    mongoc_cursor_destroy(cur);
    bson_destroy(f);
    mongoc_collection_destroy(logs);
    CHECK_STR_EQ(on_log, vid);
}

static const test_case cases[] = {TEST_ENTRY(campaign_exact_counts_and_rules),
                                  TEST_ENTRY(kill9_each_process_mid_campaign),
                                  TEST_ENTRY(vendor_sigterm_mid_flight),
                                  TEST_ENTRY(redis_restart_mid_campaign),
                                  TEST_ENTRY(devdb_stopped_then_back),
                                  TEST_ENTRY(poison_receipt_dead_letter_and_requeue),
                                  TEST_ENTRY(batch_jobs_with_poison_parts),
                                  TEST_ENTRY(late_update_after_token_recovery_is_fenced),
                                  TEST_ENTRY(vendor_send_route_id_ends_on_log)};

int main(int argc, char **argv)
{
    if (pipeh_start(&h) != 0) {
        fprintf(stderr, "test_pipeline: cannot start services\n");
        pipeh_stop(&h);
        return 1;
    }
    /* The CLI reads the same environment as the programs. */
    setenv("MINICRM_TEST_DIR", h.env.dir, 1);
    /* Delays long enough that the disruptions land while receipts are still coming in. */
    setenv("MINICRM_VENDOR_SIM_MAX_DELAY_MS", "1500", 1);
    /* Two consumer threads in the receipts worker (the default is three): the chaos and pause
     * cases then also cover concurrent batches. */
    setenv("MINICRM_RECEIPTS_CONSUMERS", "2", 1);
    /* MongoDB calls give up after 0.5 s (socket 3 s), so the devdb pause causes real errors. */
    setenv("MINICRM_MONGO_TIMEOUT_MS", "500", 1);
    if (pipeh_seed(&h, NCUST) != 0) {
        pipeh_stop(&h);
        return 1;
    }
    int rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    if (rc != 0)
        fprintf(stderr, "logs of the programs: %s\n", h.env.dir);
    pipeh_stop(&h);
    return rc;
}
