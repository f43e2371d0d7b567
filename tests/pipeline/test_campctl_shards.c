/*
 * test_campctl_shards: lib/campctl's key sets with queue.shards > 1, against a private
 * redis-server, or, built with CC_CLUSTER, against a local Redis Cluster (tests/cluster, label
 * cluster), where a script over two slots fails: every script must stay in one.
 * Covers: queue.shards = 1 keeps today's key names; pause/cancel flag every shard set and the
 * unsharded one; a hold works on the key set of the processing list's own shard; resume puts
 * each held job back in its own shard's ready list; the held counts sum every set; the
 * workers' repair completes a pause or a resume a crash interrupted between two sets, drops a
 * paused flag MongoDB no longer confirms (held jobs back to their shards), and leaves a set
 * alone when a move touched it after the mark.
 */
#include "campctl.h"
#include "queue.h"
#include "rconn.h"
#include "test.h"
#include "testenv.h"
#include "shardtarget.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S 6

static rconn *rc;
static char prefix[96];

static const char CID[] = "65f000000000000000000001";
static const char CID2[] = "65f000000000000000000002";

/* A fresh key prefix per case and this process's queue.shards (what campctl reads). */
static void setup(const char *tc, int shards)
{
    snprintf(prefix, sizeof prefix, "cc_%d_%s:", (int)getpid(), tc);
    minicrm_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.queue.shards = shards;
    queue_use_config(&cfg);
}

/* A key of shard set i (-1: the unsharded set {sends}). */
static const char *k(char *buf, int i, const char *suffix)
{
    if (i < 0)
        snprintf(buf, 300, "%s{sends}:%s", prefix, suffix);
    else
        snprintf(buf, 300, "%s{sends:%d}:%s", prefix, i, suffix);
    return buf;
}

static long long int_cmd(const char *cmd, const char *key, const char *arg)
{
    return testenv_redis_int(rc, cmd, key, arg);
}

/* In how many of the S + 1 sets `set` ("paused", "cancelled") names cid. */
static int flagged(const char *set, const char *cid)
{
    int n = 0;
    char b[300];
    for (int i = -1; i < S; i++)
        n += int_cmd("SISMEMBER %s %s", k(b, i, set), cid) == 1;
    return n;
}

/* The job of shard i: "{\"campaign_id\":CID,\"shard\":i}", claimed into shard i's processing
 * list of consumer c1. */
static void claim_one(int i, const char *cid, char *job, size_t n)
{
    char b[300];
    snprintf(job, n, "{\"campaign_id\":\"%s\",\"shard\":%d}", cid, i);
    int_cmd("LPUSH %s %s", k(b, i, "processing:c1"), job);
}

static int hold(int i, const char *cid, const char *job)
{
    char b[300];
    return campctl_hold(rc, prefix, k(b, i, "processing:c1"), job, strlen(job), cid);
}

static long long listed(int i, const char *suffix)
{
    char b[300];
    return int_cmd("LLEN %s", k(b, i, suffix), NULL);
}

TEST(one_shard_keeps_todays_keys)
{
    setup("one", 1);
    long long ep = 0, moved = -1;
    char err[256], job[200], held[100];
    CHECK_INT_EQ(campctl_pause(rc, prefix, CID, &ep, err, sizeof err), 0);
    CHECK(ep > 0);
    char b[300];
    CHECK_INT_EQ(int_cmd("SISMEMBER %s %s", k(b, -1, "paused"), CID), 1);
    CHECK_INT_EQ(int_cmd("EXISTS %s", k(b, 0, "paused"), NULL), 0);
    claim_one(-1, CID, job, sizeof job);
    CHECK_INT_EQ(hold(-1, CID, job), CAMPCTL_PAUSED);
    snprintf(held, sizeof held, "held:%s", CID);
    CHECK_INT_EQ(listed(-1, held), 1);
    CHECK_INT_EQ(campctl_held_jobs(rc, prefix), 1);
    CHECK_INT_EQ(campctl_resume(rc, prefix, CID, &moved, err, sizeof err), 0);
    CHECK_INT_EQ(moved, 1);
    CHECK_INT_EQ(listed(-1, "ready"), 1);
    CHECK_INT_EQ(int_cmd("EXISTS %s", k(b, 0, "ready"), NULL), 0);
}

TEST(hold_resume_cancel_in_each_jobs_own_shard)
{
    setup("moves", S);
    long long ep = 0, n = -1;
    char err[256], job[S + 1][200], held[100];
    snprintf(held, sizeof held, "held:%s", CID);
    CHECK_MSG(campctl_pause(rc, prefix, CID, &ep, err, sizeof err) == 0, "pause: %s", err);
    CHECK_INT_EQ(flagged("paused", CID), S + 1);
    /* one claimed job per shard, and one from the unsharded lists: each held in its own set */
    for (int i = -1; i < S; i++) {
        claim_one(i, CID, job[i + 1], sizeof job[i + 1]);
        CHECK_INT_EQ(hold(i, CID, job[i + 1]), CAMPCTL_PAUSED);
        CHECK_INT_EQ(listed(i, held), 1);
        CHECK_INT_EQ(listed(i, "processing:c1"), 0);
    }
    CHECK_INT_EQ(campctl_held_jobs(rc, prefix), S + 1);
    CHECK_INT_EQ(campctl_held_campaign(rc, prefix, CID), S + 1);
    CHECK_MSG(campctl_resume(rc, prefix, CID, &n, err, sizeof err) == 0, "resume: %s", err);
    CHECK_INT_EQ(n, S + 1);
    CHECK_INT_EQ(flagged("paused", CID), 0);
    for (int i = -1; i < S; i++) {
        CHECK_INT_EQ(listed(i, "ready"), 1);
        CHECK_INT_EQ(listed(i, held), 0);
    }
    /* not flagged any more: a hold leaves the job to be delivered */
    claim_one(2, CID, job[0], sizeof job[0]);
    CHECK_INT_EQ(hold(2, CID, job[0]), CAMPCTL_RUN);
    CHECK_INT_EQ(listed(2, "processing:c1"), 1);
    char b[300];
    int_cmd("DEL %s", k(b, 2, "processing:c1"), NULL);

    /* cancel: held jobs dropped in every set, a later claim dropped too */
    CHECK_INT_EQ(campctl_pause(rc, prefix, CID2, &ep, err, sizeof err), 0);
    char held2[100];
    snprintf(held2, sizeof held2, "held:%s", CID2);
    for (int i = -1; i < S; i += 2) {
        claim_one(i, CID2, job[i + 1], sizeof job[i + 1]);
        CHECK_INT_EQ(hold(i, CID2, job[i + 1]), CAMPCTL_PAUSED);
    }
    CHECK_MSG(campctl_cancel(rc, prefix, CID2, &ep, &n, err, sizeof err) == 0, "cancel: %s", err);
    CHECK_INT_EQ(n, (S + 2) / 2);
    CHECK_INT_EQ(flagged("cancelled", CID2), S + 1);
    CHECK_INT_EQ(flagged("paused", CID2), 0);
    CHECK_INT_EQ(campctl_held_campaign(rc, prefix, CID2), 0);
    claim_one(4, CID2, job[0], sizeof job[0]);
    CHECK_INT_EQ(hold(4, CID2, job[0]), CAMPCTL_CANCELLED);
    CHECK_INT_EQ(listed(4, "processing:c1"), 0);
}

/* A campaign with the paused flag in sets [from, to) only, and a held job in each of them. */
static void partial_pause(const char *cid, int from, int to)
{
    char b[300], held[100];
    snprintf(held, sizeof held, "held:%s", cid);
    for (int i = from; i < to; i++) {
        int_cmd("SADD %s %s", k(b, i, "paused"), cid);
        int_cmd("LPUSH %s %s", k(b, i, held), "{\"job\":1}");
    }
}

TEST(repair_completes_interrupted_moves)
{
    setup("repair", S);
    campctl_mark m;
    const char *paused[] = {CID};
    /* A pause the API did not finish: the first three shards flagged; MongoDB says PAUSED. */
    partial_pause(CID, 0, 3);
    CHECK_INT_EQ(campctl_repair_mark(rc, prefix, &m), 0);
    CHECK(campctl_repair(rc, prefix, &m, paused, 1, NULL, 0) > 0);
    CHECK_INT_EQ(flagged("paused", CID), S + 1);
    CHECK_INT_EQ(campctl_held_campaign(rc, prefix, CID), 3); /* held jobs stay held */
    /* Steady state: nothing to change. */
    CHECK_INT_EQ(campctl_repair_mark(rc, prefix, &m), 0);
    CHECK_INT_EQ(campctl_repair(rc, prefix, &m, paused, 1, NULL, 0), 0);

    /* A move after the mark: every set is left for the next round. */
    char b[300];
    int_cmd("SREM %s %s", k(b, 4, "paused"), CID);
    CHECK_INT_EQ(campctl_repair_mark(rc, prefix, &m), 0);
    long long ep;
    char err[256];
    CHECK_INT_EQ(campctl_pause(rc, prefix, CID2, &ep, err, sizeof err), 0);
    CHECK_INT_EQ(campctl_repair(rc, prefix, &m, paused, 1, NULL, 0), 0);
    CHECK_INT_EQ(int_cmd("SISMEMBER %s %s", k(b, 4, "paused"), CID), 0);
    const char *both[] = {CID, CID2};
    CHECK_INT_EQ(campctl_repair_mark(rc, prefix, &m), 0);
    CHECK_INT_EQ(campctl_repair(rc, prefix, &m, both, 2, NULL, 0), 1);
    CHECK_INT_EQ(flagged("paused", CID), S + 1);

    /* A resume that cleared the unsharded set and shard 0 (its held job back in shard 0's
     * ready list), the rest still paused with held jobs, and MongoDB no longer says PAUSED:
     * every set drops the flag and each held job goes back to its own shard. */
    char held[100], b2[300];
    snprintf(held, sizeof held, "held:%s", CID);
    long long ready_before[S];
    for (int i = 0; i < S; i++)
        ready_before[i] = listed(i, "ready");
    int_cmd("SREM %s %s", k(b, -1, "paused"), CID);
    int_cmd("SREM %s %s", k(b, 0, "paused"), CID);
    redisReply *r = rconn_command(rc, "RPOPLPUSH %s %s", k(b, 0, held), k(b2, 0, "ready"));
    CHECK(r && r->type == REDIS_REPLY_STRING);
    freeReplyObject(r);
    CHECK_INT_EQ(campctl_repair_mark(rc, prefix, &m), 0);
    const char *only2[] = {CID2};
    CHECK(campctl_repair(rc, prefix, &m, only2, 1, NULL, 0) > 0);
    CHECK_INT_EQ(flagged("paused", CID), 0);
    CHECK_INT_EQ(flagged("paused", CID2), S + 1);
    CHECK_INT_EQ(campctl_held_campaign(rc, prefix, CID), 0);
    for (int i = 0; i < S; i++)
        CHECK_INT_EQ(listed(i, "ready") - ready_before[i], i < 3 ? 1 : 0);

    /* Cancelled in MongoDB, a flag lost in one shard: added back there. */
    CHECK_INT_EQ(campctl_cancel(rc, prefix, CID2, &ep, NULL, err, sizeof err), 0);
    int_cmd("DEL %s", k(b, 5, "cancelled"), NULL);
    const char *cancelled[] = {CID2};
    CHECK_INT_EQ(campctl_repair_mark(rc, prefix, &m), 0);
    CHECK_INT_EQ(campctl_repair(rc, prefix, &m, NULL, 0, cancelled, 1), 1);
    CHECK_INT_EQ(flagged("cancelled", CID2), S + 1);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        TEST_ENTRY(one_shard_keeps_todays_keys),
        TEST_ENTRY(hold_resume_cancel_in_each_jobs_own_shard),
        TEST_ENTRY(repair_completes_interrupted_moves),
    };
#ifdef CC_CLUSTER
    const bool on_cluster = true;
#else
    const bool on_cluster = false;
#endif
    const char *url;
    return shardtarget_run(on_cluster, __FILE__, cases, sizeof cases / sizeof *cases, argc, argv,
                           &rc, &url);
}
