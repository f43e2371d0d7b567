/*
 * test_queue_shards: lib/queue with queue.shards > 1 (a sharded queue handle owning S shard
 * key sets), against a private redis-server, or, built with QS_CLUSTER, against a local Redis
 * Cluster (tests/cluster, label cluster) where every shard's scripts must stay in one slot.
 * Covers: S = 1 keeps today's key names; pushes spread round robin; a consumer claims from
 * every shard, fairly, and a blocked consumer sees a job pushed to another shard; acks,
 * retries and dead letters go to the job's own shard; the reaper returns a dead consumer's
 * jobs from every shard; stats and the dead-letter operations cover every shard; jobs left in
 * the unsharded list (before the change of queue.shards) are still drained.
 */
#include "queue.h"
#include "rconn.h"
#include "test.h"
#include "timeutil.h"
#include "shardtarget.h"
#ifdef QS_CLUSTER
#include "rcluster.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *url;
static rconn *rc;
static char prefix[96];

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A fresh key prefix per test case, so cases do not see each other's jobs. */
static void new_prefix(const char *tc)
{
    snprintf(prefix, sizeof prefix, "qs_%d_%s:", (int)getpid(), tc);
}

static queue *open_q(const char *consumer, int shards)
{
    queue_opts o;
    queue_opts_default(&o);
    o.max_attempts = 2;
    o.backoff_base_ms = 20;
    o.backoff_max_ms = 40;
    o.heartbeat_ttl_s = 1;
    o.reap_interval_ms = 50;
    o.shards = shards;
    char err[256];
    queue *q = queue_open(rc, prefix, QUEUE_SENDS, consumer, &o, err, sizeof err);
    if (!q)
        fprintf(stderr, "queue_open: %s\n", err);
    return q;
}

static long long llen(const char *key)
{
    redisReply *r = rconn_command(rc, "LLEN %s", key);
    long long n = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r)
        freeReplyObject(r);
    return n;
}

static long long shard_ready(int i)
{
    char k[300];
    snprintf(k, sizeof k, "%s{sends:%d}:ready", prefix, i);
    return llen(k);
}

TEST(one_shard_keeps_todays_keys)
{
    new_prefix("one");
    queue *p = open_q(NULL, 1);
    CHECK(p);
    CHECK_INT_EQ(queue_nshards(p), 1);
    char k[300], want[300];
    snprintf(want, sizeof want, "%s{sends}:ready", prefix);
    CHECK_STR_EQ(queue_key(p, "ready", k, sizeof k), want);
    CHECK_INT_EQ(queue_push(p, "{\"n\":1}", 7), 0);
    CHECK_INT_EQ(llen(want), 1);
    queue_close(p);
    /* receipts is sharded too; campaigns never is */
    CHECK(queue_is_sharded(QUEUE_RECEIPTS));
    CHECK(!queue_is_sharded(QUEUE_CAMPAIGNS));
    queue_opts o;
    queue_opts_default(&o);
    o.shards = 6;
    CHECK_INT_EQ(queue_shards_for(QUEUE_SENDS, &o), 6);
    CHECK_INT_EQ(queue_shards_for(QUEUE_PRIORITY, &o), 1);
}

TEST(pushes_spread_and_claims_cover_every_shard)
{
    new_prefix("spread");
    enum { S = 4, N = 40 };
    queue *p = open_q(NULL, S), *c = open_q("c1", S);
    CHECK(p && c);
    CHECK_INT_EQ(queue_nshards(p), S + 1);
    for (int i = 0; i < N; i++) {
        char j[32];
        snprintf(j, sizeof j, "{\"n\":%d}", i);
        CHECK_INT_EQ(queue_push(p, j, strlen(j)), 0);
    }
    for (int i = 0; i < S; i++)
        CHECK_INT_EQ(shard_ready(i), N / S);
    CHECK_INT_EQ(queue_register(c), 0);
    /* Claims of 3 rotate over the shards: the first S claims touch S different shards. */
    int seen[S + 1] = {0};
    queue_batch b = {0};
    for (int k = 0; k < S; k++) {
        size_t before = b.n;
        CHECK_INT_EQ(queue_claim(c, 3, 0, &b), 3);
        CHECK(b.jobs[before].shard >= 1 && b.jobs[before].shard <= S);
        seen[b.jobs[before].shard - 1]++;
        for (size_t i = before; i < b.n; i++)
            CHECK_INT_EQ(b.jobs[i].shard, b.jobs[before].shard);
    }
    for (int i = 0; i < S; i++)
        CHECK_INT_EQ(seen[i], 1);
    int got = (int)b.n;
    int n;
    while ((n = queue_claim_fresh(c, 7, 0, &b)) > 0)
        got += n;
    CHECK_INT_EQ(n, 0);
    CHECK_INT_EQ(got, N);
    queue_stats st;
    char err[256];
    queue_opts o;
    queue_opts_default(&o);
    CHECK_INT_EQ(queue_stats_get(rc, prefix, QUEUE_SENDS, &st, err, sizeof err), 0);
    /* queue_stats_get follows the process's queue.shards (1 here): it sees only the
     * unsharded keys, which hold nothing. */
    CHECK_INT_EQ(st.pushed, 0);
    CHECK_INT_EQ(queue_ack_items(c, b.jobs, b.n, 2 * N), 0);
    for (int i = 0; i < S; i++) {
        char k[300];
        queue_shard_key(c, i, "processing:c1", k, sizeof k);
        CHECK_INT_EQ(llen(k), 0);
        /* one ack over jobs of every shard: the items are shared out by jobs, summing exactly */
        queue_shard_key(c, i, "stats", k, sizeof k);
        redisReply *r = rconn_command(rc, "HGET %s items", k);
        CHECK(r && r->type == REDIS_REPLY_STRING);
        CHECK_INT_EQ(strtoll(r->str, NULL, 10), 2 * N / S);
        freeReplyObject(r);
    }
    queue_batch_release(&b);
    queue_close(p);
    queue_close(c);
}

TEST(stats_and_dead_letters_cover_every_shard)
{
    new_prefix("stats");
    enum { S = 3 };
    minicrm_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.queue.shards = S;
    queue_use_config(&cfg); /* what the API and the CLI do at start */
    queue *p = open_q(NULL, S), *c = open_q("c1", S);
    CHECK(p && c);
    for (int i = 0; i < 6; i++)
        CHECK_INT_EQ(queue_push(p, "{\"x\":1}", 7), 0);
    CHECK_INT_EQ(queue_register(c), 0);
    queue_batch b = {0};
    int got = 0, n;
    while ((n = queue_claim_fresh(c, 100, 0, &b)) > 0)
        got += n;
    CHECK_INT_EQ(got, 6);
    /* dead-letter one job per shard, retry (to delayed) the rest */
    int dead = 0;
    bool shard_done[S + 1] = {false};
    for (size_t i = 0; i < b.n; i++) {
        int s = b.jobs[i].shard;
        if (!shard_done[s]) {
            shard_done[s] = true;
            CHECK_INT_EQ(queue_dead(c, &b.jobs[i], "poison"), 0);
            dead++;
        } else {
            CHECK_INT_EQ(queue_retry(c, &b.jobs[i], "later"), 0);
        }
    }
    CHECK_INT_EQ(dead, S);
    queue_stats st;
    char err[256];
    CHECK_INT_EQ(queue_stats_get(rc, prefix, QUEUE_SENDS, &st, err, sizeof err), 0);
    CHECK_INT_EQ(st.pushed, 6);
    CHECK_INT_EQ(st.dead, S);
    CHECK_INT_EQ(st.delayed, 6 - S);
    CHECK_INT_EQ(st.consumers, 1);
    CHECK_INT_EQ(st.alive, 1);
    CHECK_INT_EQ(queue_dlq_len(p), S);
    char **list = NULL;
    CHECK_INT_EQ(queue_dlq_list(p, 1, 10, &list), S - 1);
    for (int i = 0; i < S - 1; i++) {
        CHECK(strstr(list[i], "poison") != NULL);
        free(list[i]);
    }
    free(list);
    /* the delayed jobs come back from their own shards */
    int64_t deadline = time_mono_ms() + 3000;
    int back = 0;
    queue_batch r = {0};
    while (back < 6 - S && time_mono_ms() < deadline) {
        queue_maintain(c);
        n = queue_claim_fresh(c, 100, 50, &r);
        CHECK(n >= 0);
        back += n;
    }
    CHECK_INT_EQ(back, 6 - S);
    CHECK_INT_EQ(queue_ack(c, r.jobs, r.n), 0);
    /* requeue one dead letter by index, then all */
    CHECK_INT_EQ(queue_dlq_requeue(p, 1), 1);
    CHECK_INT_EQ(queue_dlq_len(p), S - 1);
    CHECK_INT_EQ(queue_dlq_requeue(p, -1), S - 1);
    CHECK_INT_EQ(queue_dlq_len(p), 0);
    queue_batch_release(&b);
    queue_batch_release(&r);
    got = 0;
    while ((n = queue_claim_fresh(c, 100, 0, &b)) > 0)
        got += n;
    CHECK_INT_EQ(got, S);
    CHECK_INT_EQ(queue_ack(c, b.jobs, b.n), 0);
    CHECK_INT_EQ(queue_stats_get(rc, prefix, QUEUE_SENDS, &st, err, sizeof err), 0);
    CHECK_INT_EQ(st.inflight, 0);
    CHECK_INT_EQ(st.ready + st.delayed + st.dead, 0);
    queue_batch_release(&b);
    cfg.queue.shards = 1;
    queue_use_config(&cfg);
    queue_close(p);
    queue_close(c);
}

TEST(reaper_returns_jobs_from_every_shard)
{
    new_prefix("reap");
    enum { S = 3 };
    queue *p = open_q(NULL, S), *dead = open_q("dead", S), *live = open_q("live", S);
    CHECK(p && dead && live);
    for (int i = 0; i < 9; i++)
        CHECK_INT_EQ(queue_push(p, "{\"r\":1}", 7), 0);
    CHECK_INT_EQ(queue_register(dead), 0);
    queue_batch b = {0};
    int got = 0, n;
    while ((n = queue_claim_fresh(dead, 2, 0, &b)) > 0)
        got += n;
    CHECK_INT_EQ(got, 9);
    queue_batch_release(&b);
    /* `dead` stops beating; after its heartbeat expires the live consumer's reaper returns
     * every job, from every shard, and claims them */
    CHECK_INT_EQ(queue_register(live), 0);
    int64_t deadline = time_mono_ms() + 5000;
    got = 0;
    while (got < 9 && time_mono_ms() < deadline) {
        CHECK(queue_maintain(live) == 0);
        n = queue_claim_fresh(live, 100, 50, &b);
        CHECK(n >= 0);
        got += n;
        sleep_ms(20);
    }
    CHECK_INT_EQ(got, 9);
    CHECK_INT_EQ(queue_ack(live, b.jobs, b.n), 0);
    queue_batch_release(&b);
    queue_close(p);
    queue_close(dead);
    queue_close(live);
}

TEST(blocked_consumer_sees_any_shard_and_old_list_drains)
{
    new_prefix("block");
    enum { S = 4 };
    /* a job pushed before the change to shards: in the unsharded list */
    queue *old = open_q(NULL, 1), *p = open_q(NULL, S), *c = open_q("c1", S);
    CHECK(old && p && c);
    CHECK_INT_EQ(queue_push(old, "{\"old\":1}", 9), 0);
    CHECK_INT_EQ(queue_register(c), 0);
    queue_batch b = {0};
    int64_t deadline = time_mono_ms() + 3000;
    int n = 0;
    while (n == 0 && time_mono_ms() < deadline)
        n = queue_claim(c, 10, 100, &b);
    CHECK_INT_EQ(n, 1);
    CHECK_STR_EQ(b.jobs[0].data, "{\"old\":1}");
    CHECK_INT_EQ(b.jobs[0].shard, S + 1);
    CHECK_INT_EQ(queue_ack(c, b.jobs, b.n), 0);
    queue_batch_release(&b);
    /* now one job on each shard in turn while the consumer waits: it gets each within a
     * rotation (S x 200 ms), with its claim blocking, not spinning */
    for (int k = 0; k < S; k++) {
        CHECK_INT_EQ(queue_push(p, "{\"b\":1}", 7), 0);
        int64_t t0 = time_mono_ms();
        n = 0;
        int calls = 0;
        while (n == 0 && time_mono_ms() - t0 < 3000) {
            n = queue_claim(c, 10, 1000, &b);
            calls++;
        }
        CHECK_INT_EQ(n, 1);
        CHECK(calls <= S + 2);
        CHECK_INT_EQ(queue_ack(c, b.jobs, b.n), 0);
        queue_batch_release(&b);
    }
    /* an idle consumer blocks: a claim with nothing anywhere takes its wait */
    int64_t t0 = time_mono_ms();
    CHECK_INT_EQ(queue_claim(c, 10, 1000, &b), 0);
    CHECK(time_mono_ms() - t0 >= 150);
    queue_close(old);
    queue_close(p);
    queue_close(c);
}

TEST(push_once_replay_meets_its_token)
{
    new_prefix("once");
    queue *p = open_q(NULL, 5);
    CHECK(p);
    const char *jobs[] = {"{\"o\":1}"};
    CHECK_INT_EQ(queue_push_once(p, "sig-abc", 60, jobs, NULL, 1), 1);
    for (int i = 0; i < 6; i++)
        CHECK_INT_EQ(queue_push_once(p, "sig-abc", 60, jobs, NULL, 1), 0);
    long long total = 0;
    for (int i = 0; i < 5; i++)
        total += shard_ready(i);
    CHECK_INT_EQ(total, 1);
    queue_close(p);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        TEST_ENTRY(one_shard_keeps_todays_keys),
        TEST_ENTRY(pushes_spread_and_claims_cover_every_shard),
        TEST_ENTRY(stats_and_dead_letters_cover_every_shard),
        TEST_ENTRY(reaper_returns_jobs_from_every_shard),
        TEST_ENTRY(blocked_consumer_sees_any_shard_and_old_list_drains),
        TEST_ENTRY(push_once_replay_meets_its_token),
    };
#ifdef QS_CLUSTER
    const bool on_cluster = true;
#else
    const bool on_cluster = false;
#endif
    return shardtarget_run(on_cluster, __FILE__, cases, sizeof cases / sizeof *cases, argc, argv,
                           &rc, &url);
}
