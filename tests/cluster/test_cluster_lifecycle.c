/*
 * test_cluster_lifecycle: pause, resume and cancel (lib/campctl) on a local Redis Cluster of
 * 3 masters and 3 replicas with queue.shards=6, with the real programs (minicrm-api,
 * minicrm-worker --procs 2, minicrm-receipts, minicrm-vendor-sim) over the real HTTP routes and
 * minicrm-devdb:
 *
 *   - pause mid-send: 200 PAUSED; the vendor holds the campaign's claimed send jobs in the held
 *     lists of the shards they came from (one slot per script), `minicrm queues --json` counts
 *     them; the worker and the vendor simulator are SIGKILLed and restarted while paused:
 *     nothing more becomes final; resume: every customer exactly one final log, counters exact,
 *     COMPLETED, nothing held and no flag left in any shard;
 *   - a second campaign cancelled mid-send: 200 CANCELLED, pending reaches 0 with
 *     sent + failed + cancelled == total == logs, and no job of it is left in any list or set
 *     of any shard (ready, processing, delayed, held) of sends or receipts.
 */
#include "campctl.h"
#include "clusterenv.h"
#include "pipeharness.h"
#include "test.h"
#include "timeutil.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define NCUST  5000
#define SHARDS 6

static clusterenv cenv;
static pipeh h;
static char admin_key[200];

/* POST /api/campaigns/<id>/<move> with the admin key: the HTTP status, the answer in *a. */
static long post_move(const bson_oid_t *cid, const char *move, pipeh_answer *a)
{
    return pipeh_post_move(&h, admin_key, cid, move, 30000L, a);
}

/* Held send jobs of the campaign in every shard's held list (and the unsharded one). */
static long long held_jobs(const bson_oid_t *cid)
{
    char hex[25];
    bson_oid_to_string(cid, hex);
    long long total = 0;
    for (int i = -1; i < SHARDS; i++) {
        char key[300];
        if (i < 0)
            snprintf(key, sizeof key, "%s{sends}:held:%s", h.env.prefix, hex);
        else
            snprintf(key, sizeof key, "%s{sends:%d}:held:%s", h.env.prefix, i, hex);
        redisReply *r = rconn_command(h.rc, "LLEN %s", key);
        long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
        if (r)
            freeReplyObject(r);
        if (v < 0)
            return -1;
        if (v > 0)
            fprintf(stderr, "    %s: %lld\n", key, v);
        total += v;
    }
    return total;
}

/* How many of the flag sets (every shard's and the unsharded ones) name the campaign. */
static int flags_left(const bson_oid_t *cid, const char *set)
{
    char hex[25];
    bson_oid_to_string(cid, hex);
    int n = 0;
    for (int i = -1; i < SHARDS; i++) {
        char key[300];
        if (i < 0)
            snprintf(key, sizeof key, "%s{sends}:%s", h.env.prefix, set);
        else
            snprintf(key, sizeof key, "%s{sends:%d}:%s", h.env.prefix, i, set);
        redisReply *r = rconn_command(h.rc, "SISMEMBER %s %s", key, hex);
        n += r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        if (r)
            freeReplyObject(r);
    }
    return n;
}

/* Jobs mentioning the campaign in any list or sorted set under the test's prefix (every
 * master: KEYS reaches all of them), the keys that hold them named on stderr. -1 on error. */
static long long jobs_left(const bson_oid_t *cid)
{
    char hex[25], pat[300];
    bson_oid_to_string(cid, hex);
    snprintf(pat, sizeof pat, "%s*", h.env.prefix);
    redisReply *keys = rconn_command(h.rc, "KEYS %s", pat);
    if (!keys || keys->type != REDIS_REPLY_ARRAY) {
        if (keys)
            freeReplyObject(keys);
        return -1;
    }
    long long n = 0;
    for (size_t i = 0; i < keys->elements; i++) {
        const char *k = keys->element[i]->str;
        redisReply *t = rconn_command(h.rc, "TYPE %s", k);
        const char *cmd = NULL;
        if (t && t->type == REDIS_REPLY_STATUS && !strcmp(t->str, "list"))
            cmd = "LRANGE %s 0 -1";
        else if (t && t->type == REDIS_REPLY_STATUS && !strcmp(t->str, "zset"))
            cmd = "ZRANGE %s 0 -1";
        if (t)
            freeReplyObject(t);
        if (!cmd || strstr(k, ":dead") || strstr(k, "{events}") || strstr(k, "{webhooks}"))
            continue;
        redisReply *r = rconn_command(h.rc, cmd, k);
        long long here = 0;
        for (size_t j = 0; r && r->type == REDIS_REPLY_ARRAY && j < r->elements; j++)
            here += r->element[j]->type == REDIS_REPLY_STRING && strstr(r->element[j]->str, hex);
        if (r)
            freeReplyObject(r);
        if (here)
            fprintf(stderr, "    %s: %lld jobs of the campaign\n", k, here);
        n += here;
    }
    freeReplyObject(keys);
    return n;
}

#define CHECK_COUNTERS(c_)                                                                         \
    CHECK_MSG((c_).sent + (c_).failed + (c_).cancelled + (c_).pending == (c_).total,               \
              "counters: total=%lld sent=%lld failed=%lld cancelled=%lld pending=%lld",            \
              (long long)(c_).total, (long long)(c_).sent, (long long)(c_).failed,                 \
              (long long)(c_).cancelled, (long long)(c_).pending)

TEST(pause_kill9_resume_exact_on_shards)
{
    CHECK(pipeh_start_all(&h) == 0);
    bson_oid_t cid;
    CHECK(pipeh_campaign(&h, "cluster-pause", "{}", &cid) == 0);
    CHECK_MSG(pipeh_wait_mid_flight(&h, &cid, 200, 30000) == 0,
              "campaign finished before the pause");
    pipeh_answer a;
    char st[16];
    long code = post_move(&cid, "pause", &a);
    CHECK_MSG(code == 200, "pause: %ld %s", code, a.body);
    CHECK_STR_EQ(pipeh_answer_status(&a, st), "PAUSED");
    long long f0 = pipeh_final_logs(&h, &cid);
    fprintf(stderr, "  pause took %lld ms\n", pipeh_answer_took_ms(&a));

    /* The worker and the vendor simulator die while paused and come back. */
    pipeh_kill(&h, PH_WORKER, SIGKILL);
    pipeh_kill(&h, PH_VENDOR, SIGKILL);
    CHECK(pipeh_start_all(&h) == 0);
    /* What the vendor had before the 200 gets its receipts (delay <= 1.5 s; a restarted vendor
     * holds its handed-back jobs): then the count stands still. */
    pipeh_sleep_ms(4000);
    long long f1 = pipeh_final_logs(&h, &cid);
    pipeh_sleep_ms(3000);
    long long f2 = pipeh_final_logs(&h, &cid);
    fprintf(stderr, "  final logs: %lld at the 200, %lld after 4 s, %lld after 7 s\n", f0, f1, f2);
    CHECK_INT_EQ(f2, f1);
    ph_campaign c;
    CHECK(pipeh_read(&h, &cid, &c) == 0);
    CHECK_STR_EQ(c.status, "PAUSED");
    CHECK(c.sent + c.failed < NCUST);
    CHECK_COUNTERS(c);
    long long held = held_jobs(&cid);
    fprintf(stderr, "  held send jobs while paused: %lld\n", held);
    CHECK(held > 0);
    CHECK_INT_EQ(flags_left(&cid, "paused"), SHARDS + 1); /* every shard and {sends} */
    char out[8192];
    CHECK_INT_EQ(pipeh_run_cli("queues --json", out, sizeof out, false), 0);
    json_error_t je;
    json_t *q = json_loads(out, 0, &je);
    long long cli_held = json_integer_value(json_object_get(json_object_get(q, "sends"), "held"));
    json_decref(q);
    CHECK_MSG(cli_held == held, "queues --json held %lld != %lld; output: %.600s", cli_held, held,
              out);

    code = post_move(&cid, "resume", &a);
    CHECK_MSG(code == 200, "resume: %ld %s", code, a.body);
    fprintf(stderr, "  resume took %lld ms\n", pipeh_answer_took_ms(&a));
    CHECK_MSG(pipeh_wait_completed(&h, &cid, 120000, &c) == 0, "not COMPLETED: %s pending=%lld",
              c.status, (long long)c.pending);
    long long by[4];
    CHECK_INT_EQ(pipeh_count_logs(&h, &cid, by), NCUST);
    CHECK_INT_EQ(by[0], 0);
    CHECK_INT_EQ(by[3], 0);
    CHECK_INT_EQ(c.total, NCUST);
    CHECK_INT_EQ(c.pending, 0);
    CHECK_INT_EQ(c.sent, by[1]);
    CHECK_INT_EQ(c.failed, by[2]);
    CHECK_INT_EQ(held_jobs(&cid), 0);
    CHECK_INT_EQ(flags_left(&cid, "paused"), 0);
}

TEST(cancel_mid_send_nothing_left_in_any_shard)
{
    CHECK(pipeh_start_all(&h) == 0);
    bson_oid_t cid;
    CHECK(pipeh_campaign(&h, "cluster-cancel", "{}", &cid) == 0);
    CHECK_MSG(pipeh_wait_mid_flight(&h, &cid, 200, 30000) == 0,
              "campaign finished before the cancel");
    pipeh_answer a;
    char st[16];
    long code = post_move(&cid, "cancel", &a);
    CHECK_MSG(code == 200, "cancel: %ld %s", code, a.body);
    CHECK_STR_EQ(pipeh_answer_status(&a, st), "CANCELLED");
    fprintf(stderr, "  cancel took %lld ms\n", pipeh_answer_took_ms(&a));
    ph_campaign c;
    CHECK(pipeh_read(&h, &cid, &c) == 0);
    CHECK_COUNTERS(c);
    long long final_at_cancel = c.sent + c.failed, pending_at_cancel = c.pending;
    int64_t deadline = time_mono_ms() + 60000;
    while (time_mono_ms() < deadline) {
        CHECK(pipeh_read(&h, &cid, &c) == 0);
        CHECK_COUNTERS(c);
        if (c.pending == 0)
            break;
        pipeh_sleep_ms(50);
    }
    if (c.pending != 0) { /* what is stuck where, for the failure below */
        long long bys[4];
        char out[8192];
        if (pipeh_count_logs(&h, &cid, bys) >= 0)
            fprintf(stderr, "  logs: pending=%lld sent=%lld failed=%lld cancelled=%lld\n", bys[0],
                    bys[1], bys[2], bys[3]);
        if (pipeh_run_cli("queues --json", out, sizeof out, false) == 0)
            fprintf(stderr, "  queues: %s\n", out);
        fprintf(stderr, "  jobs of the campaign left in the queues: %lld\n", jobs_left(&cid));
    }
    CHECK_INT_EQ(c.pending, 0);
    CHECK_STR_EQ(c.status, "CANCELLED");
    CHECK(c.cancelled > 0);
    CHECK(c.sent + c.failed <= final_at_cancel + pending_at_cancel);
    long long by[4];
    CHECK_INT_EQ(pipeh_count_logs(&h, &cid, by), c.total);
    CHECK_INT_EQ(by[0], 0);
    CHECK_INT_EQ(by[1], c.sent);
    CHECK_INT_EQ(by[2], c.failed);
    CHECK_INT_EQ(by[3], c.cancelled);
    fprintf(stderr, "  after cancel: total=%lld sent=%lld failed=%lld cancelled=%lld\n",
            (long long)c.total, (long long)c.sent, (long long)c.failed, (long long)c.cancelled);
    /* The vendor acks a job just after its last receipt: poll until no job of the campaign is
     * left anywhere. */
    long long left = -1;
    deadline = time_mono_ms() + 20000;
    while (time_mono_ms() < deadline && (left = jobs_left(&cid)) != 0)
        pipeh_sleep_ms(200);
    CHECK_INT_EQ(left, 0);
    CHECK_INT_EQ(held_jobs(&cid), 0);
    CHECK_INT_EQ(flags_left(&cid, "cancelled"), SHARDS + 1);
    /* Still nothing sent a while later. */
    pipeh_sleep_ms(2000);
    ph_campaign c2;
    CHECK(pipeh_read(&h, &cid, &c2) == 0);
    CHECK_INT_EQ(c2.sent + c2.failed, c.sent + c.failed);
}

int main(int argc, char **argv)
{
    if (clusterenv_start(&cenv) != 0)
        return test_skip_program("no local Redis Cluster could be started");
    int rc = 1;
    if (pipeh_start_on_cluster(&h, cenv.url, SHARDS) != 0) {
        fprintf(stderr, "test_cluster_lifecycle: cannot start services\n");
        goto out;
    }
    /* Small fan-out batches and a vendor window of 1000 messages (the pause bound): most of
     * the campaign waits in the shards' lists when it is paused. */
    setenv("MINICRM_WORKERS_BATCH_SIZE", "200", 1);
    setenv("MINICRM_VENDOR_SIM_MAX_INFLIGHT", "1000", 1);
    if (pipeh_seed(&h, NCUST) != 0)
        goto out;
    if (pipeh_make_key(&h, "admin", "cluster-lifecycle", admin_key, sizeof admin_key) != 0) {
        fprintf(stderr, "test_cluster_lifecycle: keys create failed\n");
        goto out;
    }
    static const test_case cases[] = {
        TEST_ENTRY(pause_kill9_resume_exact_on_shards),
        TEST_ENTRY(cancel_mid_send_nothing_left_in_any_shard),
    };
    rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    if (rc != 0)
        fprintf(stderr, "logs of the programs: %s\n", h.env.dir);
out:
    pipeh_stop(&h);
    clusterenv_stop(&cenv);
    return rc;
}
