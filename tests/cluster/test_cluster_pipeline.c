/*
 * test_cluster_pipeline: the delivery pipeline (minicrm-api, minicrm-worker, minicrm-receipts,
 * minicrm-vendor-sim, the real programs through tests/pipeline's harness) on a local Redis
 * Cluster of 3 masters and 3 replicas with queue.shards=6, and minicrm-devdb:
 *   - a campaign completes with exact results, and every shard of sends and receipts carried
 *     part of it;
 *   - each program is SIGKILLed in turn mid-campaign and restarted: exact results;
 *   - one master is SIGKILLed mid-campaign (its replica takes over after the cluster's node
 *     timeout): exact results;
 *   - the slot of a sends shard and of a receipts shard move to another master mid-campaign
 *     (IMPORTING/MIGRATING, MIGRATE in small batches, SETSLOT NODE: the programs meet ASK and
 *     MOVED in flight): exact results.
 * The audit is test_pipeline's: COMPLETED, one log per customer, every log final, counters equal
 * to the counts by status, no dead letters.
 */
#include "clusterenv.h"
#include "pipeharness.h"
#include "rcluster.h"
#include "test.h"
#include "timeutil.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NCUST  3000
#define SHARDS 6

static clusterenv cenv;
static pipeh h;

static int shard_stats(const char *qname, queue_stats *out)
{
    char err[256];
    for (int i = 0; i < 3; i++)
        if (queue_stats_get(h.rc, h.env.prefix, qname, out, err, sizeof err) == 0)
            return 0;
    fprintf(stderr, "  queue_stats_get %s: %s\n", qname, err);
    return -1;
}

static long long dead_letters(const char *qname)
{
    queue_stats st;
    return shard_stats(qname, &st) == 0 ? st.dead : -1;
}

#define CHECK_FINAL(cid, expected)                                                                 \
    do {                                                                                           \
        ph_campaign c_;                                                                            \
        int w_ = pipeh_wait_completed(&h, &(cid), 120000, &c_);                                    \
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
        CHECK_INT_EQ(dead_letters(QUEUE_RECEIPTS), 0);                                             \
        CHECK_INT_EQ(dead_letters(QUEUE_SENDS), 0);                                                \
        CHECK_INT_EQ(dead_letters(QUEUE_CAMPAIGNS), 0);                                            \
    } while (0)

/* The port of the master serving key's slot (the harness's client map). */
static int owner_of(const char *key)
{
    char buf[300];
    unsigned slot = rcluster_key_slot(key, strlen(key));
    if (!rcluster_slot_owner(rconn_cluster(h.rc), slot, buf, sizeof buf))
        return -1;
    return (int)strtol(strrchr(buf, ':') + 1, NULL, 10);
}

TEST(campaign_exact_with_six_shards)
{
    CHECK(pipeh_start_all(&h) == 0);
    queue_stats s0, r0;
    CHECK(shard_stats(QUEUE_SENDS, &s0) == 0 && shard_stats(QUEUE_RECEIPTS, &r0) == 0);
    bson_oid_t cid;
    CHECK(pipeh_campaign(&h, "cluster-exact", "{}", &cid) == 0);
    CHECK_FINAL(cid, NCUST);
    /* every shard carried part of the campaign (round robin per batch job) */
    for (int i = 0; i < SHARDS; i++) {
        char k[300];
        snprintf(k, sizeof k, "%s{sends:%d}:stats", h.env.prefix, i);
        redisReply *r = rconn_command(h.rc, "HGET %s pushed", k);
        CHECK(r && r->type == REDIS_REPLY_STRING && strtoll(r->str, NULL, 10) > 0);
        freeReplyObject(r);
    }
    /* Sends and receipts items count messages: one each per log (the vendor acks a send job
     * just after its last POST: poll). */
    int64_t deadline = time_mono_ms() + 10000;
    queue_stats s1, r1;
    do {
        CHECK(shard_stats(QUEUE_SENDS, &s1) == 0 && shard_stats(QUEUE_RECEIPTS, &r1) == 0);
        if (s1.items - s0.items >= NCUST)
            break;
        pipeh_sleep_ms(20);
    } while (time_mono_ms() < deadline);
    CHECK_INT_EQ(s1.items - s0.items, NCUST);
    CHECK_INT_EQ(r1.items - r0.items, NCUST);
}

/* The master master_killed_mid_campaign killed (0: none yet): it stays down. */
static int killed_port;

TEST(master_killed_mid_campaign)
{
    CHECK(pipeh_start_all(&h) == 0);
    bson_oid_t cid;
    CHECK(pipeh_campaign(&h, "cluster-failover", "{}", &cid) == 0);
    CHECK_MSG(pipeh_wait_mid_flight(&h, &cid, 1, 30000) == 0, "campaign finished before the kill");
    char key[200];
    snprintf(key, sizeof key, "%s{sends:0}:ready", h.env.prefix);
    int port = owner_of(key);
    CHECK(port > 0);
    pid_t pid = clusterenv_pid(&cenv, port);
    CHECK(pid > 0);
    fprintf(stderr, "  SIGKILL master %d (owner of {sends:0})\n", port);
    CHECK_INT_EQ(kill(pid, SIGKILL), 0);
    killed_port = port;
    CHECK_FINAL(cid, NCUST);
    CHECK_INT_EQ(clusterenv_wait_ok(&cenv, port, 20000), 0);
}

/* kill -9 each program in turn mid-campaign (and restart it), with shards on the cluster:
 * held and claimed jobs of every shard come back through the reaper. */
TEST(kill9_each_program_mid_campaign)
{
    CHECK(pipeh_start_all(&h) == 0);
    bson_oid_t cid;
    CHECK(pipeh_campaign(&h, "cluster-chaos", "{}", &cid) == 0);
    CHECK_MSG(pipeh_wait_mid_flight(&h, &cid, 1, 30000) == 0,
              "campaign finished before the first kill");
    const int victims[] = {PH_WORKER, PH_VENDOR, PH_RECEIPTS, PH_API};
    int mid = 0;
    for (int k = 0; k < 4; k++) {
        ph_campaign c;
        if (pipeh_read(&h, &cid, &c) == 0 && strcmp(c.status, "COMPLETED") != 0)
            mid++;
        pipeh_kill(&h, victims[k], SIGKILL);
        pipeh_sleep_ms(100);
        CHECK(pipeh_start_all(&h) == 0);
        pipeh_sleep_ms(150);
    }
    fprintf(stderr, "  kills while the campaign was running: %d of 4\n", mid);
    CHECK(mid >= 2);
    CHECK_FINAL(cid, NCUST);
}

/* Move `slot` from its master to another one while the programs use it. */
static int move_slot(unsigned slot, int pace_ms)
{
    char buf[300];
    if (!rcluster_slot_owner(rconn_cluster(h.rc), slot, buf, sizeof buf))
        return -1;
    int src = (int)strtol(strrchr(buf, ':') + 1, NULL, 10), dst = -1;
    for (int i = 0; i < 6 && dst < 0; i++) {
        char role[4096];
        const char *a[] = {"ROLE", NULL};
        if (cenv.ports[i] != src &&
            clusterenv_cli(&cenv, cenv.ports[i], role, sizeof role, a) == 0 &&
            !strncmp(role, "master", 6))
            dst = cenv.ports[i];
    }
    char sid[64], did[64];
    if (dst < 0 || clusterenv_node_id(&cenv, src, sid, sizeof sid) != 0 ||
        clusterenv_node_id(&cenv, dst, did, sizeof did) != 0)
        return -1;
    struct timeval tv = {5, 0};
    redisContext *s = redisConnectWithTimeout("127.0.0.1", src, tv);
    redisContext *d = redisConnectWithTimeout("127.0.0.1", dst, tv);
    int rc = -1;
    if (!s || s->err || !d || d->err)
        goto out;
    redisReply *r = redisCommand(d, "CLUSTER SETSLOT %u IMPORTING %s", slot, sid);
    freeReplyObject(r);
    r = redisCommand(s, "CLUSTER SETSLOT %u MIGRATING %s", slot, did);
    freeReplyObject(r);
    int moved = 0;
    /* A MIGRATE that keeps failing (the cluster down, a node gone) must end the test with a
     * failure, not spin until ctest's timeout. */
    int64_t until = time_mono_ms() + 60000;
    for (;;) {
        if (time_mono_ms() > until) {
            fprintf(stderr, "  slot %u: keys still not moved after 60 s\n", slot);
            goto out;
        }
        redisReply *keys = redisCommand(s, "CLUSTER GETKEYSINSLOT %u 2", slot);
        if (!keys || keys->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(keys);
            goto out;
        }
        size_t n = keys->elements;
        for (size_t i = 0; i < n; i++) {
            redisReply *m =
                redisCommand(s, "MIGRATE 127.0.0.1 %d %s 0 5000", dst, keys->element[i]->str);
            if (m && m->type == REDIS_REPLY_ERROR)
                fprintf(stderr, "  MIGRATE %s: %s\n", keys->element[i]->str, m->str);
            freeReplyObject(m);
            moved++;
        }
        freeReplyObject(keys);
        if (n == 0)
            break;
        pipeh_sleep_ms(pace_ms); /* pacing: the move stays in flight while the campaign runs */
    }
    for (int i = 0; i < 6; i++) {
        const char *a[] = {"CLUSTER", "SETSLOT", NULL, "NODE", did, NULL};
        char sb[16];
        snprintf(sb, sizeof sb, "%u", slot);
        a[2] = sb;
        char out[256];
        clusterenv_cli(&cenv, cenv.ports[i], out, sizeof out, a);
    }
    fprintf(stderr, "  slot %u moved %d -> %d (%d keys)\n", slot, src, dst, moved);
    rc = 0;
out:
    if (s)
        redisFree(s);
    if (d)
        redisFree(d);
    return rc;
}

TEST(slots_move_mid_campaign)
{
    /* The failover of an earlier case must have settled on every node before slots move. */
    CHECK_INT_EQ(clusterenv_wait_ok(&cenv, killed_port, 20000), 0);
    CHECK(pipeh_start_all(&h) == 0);
    bson_oid_t cid;
    CHECK(pipeh_campaign(&h, "cluster-reshard", "{}", &cid) == 0);
    CHECK_MSG(pipeh_wait_mid_flight(&h, &cid, 1, 30000) == 0, "campaign finished before the move");
    CHECK_INT_EQ(move_slot(rcluster_key_slot("sends:1", 7), 20), 0);
    CHECK_INT_EQ(move_slot(rcluster_key_slot("receipts:2", 10), 20), 0);
    CHECK_FINAL(cid, NCUST);
}

int main(int argc, char **argv)
{
    if (clusterenv_start(&cenv) != 0)
        return test_skip_program("no local Redis Cluster could be started");
    int rc = 1;
    if (pipeh_start_on_cluster(&h, cenv.url, SHARDS) != 0) {
        fprintf(stderr, "test_cluster_pipeline: cannot start services\n");
        goto out;
    }
    if (pipeh_seed(&h, NCUST) != 0)
        goto out;
    static const test_case cases[] = {
        TEST_ENTRY(campaign_exact_with_six_shards),
        TEST_ENTRY(kill9_each_program_mid_campaign),
        TEST_ENTRY(master_killed_mid_campaign),
        TEST_ENTRY(slots_move_mid_campaign),
    };
    rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    if (rc != 0)
        fprintf(stderr, "logs of the programs: %s\n", h.env.dir);
out:
    pipeh_stop(&h);
    clusterenv_stop(&cenv);
    return rc;
}
