/*
 * test_queue: lib/queue against a private redis-server: push/claim/ack, batch claims, retry with
 * backoff through the delayed set, dead-lettering with reason and attempts, the reaper returning a
 * dead consumer's jobs, releasing claims, hash-tagged keys, stats and the DLQ operations, fresh
 * claims and dead-lettered parts of batch jobs; a deferred job (queue_defer) waits untouched in
 * the delayed set, is no attempt, and comes back byte for byte when due.
 */
#include "queue.h"
#include "rconn.h"
#include "test.h"
#include "testenv.h"
#include "timeutil.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static testenv env;
static rconn *rc;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static queue *open_q(const char *name, const char *consumer, int max_attempts)
{
    queue_opts o;
    queue_opts_default(&o);
    o.max_attempts = max_attempts;
    o.backoff_base_ms = 20;
    o.backoff_max_ms = 100;
    o.heartbeat_ttl_s = 1;
    o.reap_interval_ms = 50;
    char err[256];
    queue *q = queue_open(rc, env.prefix, name, consumer, &o, err, sizeof err);
    if (!q)
        fprintf(stderr, "queue_open: %s\n", err);
    return q;
}

static long long llen(const char *key)
{
    redisReply *r = rconn_command(rc, "LLEN %s", key);
    long long n = r ? r->integer : -1;
    if (r)
        freeReplyObject(r);
    return n;
}

TEST(push_claim_ack_fifo)
{
    queue *p = open_q("t1", NULL, 3), *c = open_q("t1", "c1", 3);
    CHECK(p && c);
    const char *jobs[] = {"{\"n\":1}", "{\"n\":2}", "{\"n\":3}"};
    CHECK_INT_EQ(queue_push_many(p, jobs, NULL, 3), 0);
    CHECK_INT_EQ(queue_register(c), 0);
    queue_batch b = {0};
    CHECK_INT_EQ(queue_claim(c, 2, 0, &b), 2);
    CHECK_STR_EQ(b.jobs[0].data, "{\"n\":1}");
    CHECK_STR_EQ(b.jobs[1].data, "{\"n\":2}");
    char key[300];
    queue_key(c, "processing:c1", key, sizeof key);
    char expect[300];
    snprintf(expect, sizeof expect, "%s{t1}:processing:c1", env.prefix);
    CHECK_STR_EQ(key, expect);
    CHECK_INT_EQ(llen(key), 2);
    /* Unsettled jobs are delivered again before anything new. */
    queue_batch b2 = {0};
    CHECK_INT_EQ(queue_claim(c, 5, 0, &b2), 2);
    CHECK_STR_EQ(b2.jobs[0].data, "{\"n\":1}");
    CHECK_STR_EQ(b2.jobs[1].data, "{\"n\":2}");
    queue_batch_release(&b2);
    CHECK_INT_EQ(queue_ack(c, b.jobs, b.n), 0);
    CHECK_INT_EQ(llen(key), 0);
    queue_batch_release(&b);
    /* Blocking claim returns the remaining one, then times out empty. */
    CHECK_INT_EQ(queue_claim(c, 10, 200, &b), 1);
    CHECK_STR_EQ(b.jobs[0].data, "{\"n\":3}");
    CHECK_INT_EQ(queue_ack(c, b.jobs, b.n), 0);
    queue_batch_release(&b);
    int64_t t0 = time_mono_ms();
    CHECK_INT_EQ(queue_claim(c, 10, 150, &b), 0);
    CHECK(time_mono_ms() - t0 >= 100);
    queue_stats st;
    char err[256];
    CHECK_INT_EQ(queue_stats_get(rc, env.prefix, "t1", &st, err, sizeof err), 0);
    CHECK_INT_EQ(st.pushed, 3);
    CHECK_INT_EQ(st.acked, 3);
    CHECK_INT_EQ(st.items, 3); /* one item per job unless the consumer says otherwise */
    CHECK_INT_EQ(st.ready, 0);
    CHECK_INT_EQ(st.inflight, 0);
    CHECK_INT_EQ(st.consumers, 1);
    CHECK_INT_EQ(st.alive, 1);
    CHECK(st.rate_1m > 0);
    queue_close(p);
    queue_close(c);
}

/* Acks in claim order take the one-LTRIM path, other orders and subsets the LREM loop; both
 * must remove exactly the acked jobs and leave the others claimed, in order. */
TEST(ack_in_order_out_of_order_and_partial)
{
    queue *p = open_q("t7", NULL, 3), *c = open_q("t7", "c1", 3);
    CHECK(p && c);
    char bufs[10][32];
    const char *jobs[10];
    for (int i = 0; i < 10; i++) {
        snprintf(bufs[i], sizeof bufs[i], "{\"n\":%d}", i);
        jobs[i] = bufs[i];
    }
    CHECK_INT_EQ(queue_push_many(p, jobs, NULL, 10), 0);
    CHECK_INT_EQ(queue_register(c), 0);
    char key[300];
    queue_key(c, "processing:c1", key, sizeof key);
    queue_batch a = {0}, b = {0};
    CHECK_INT_EQ(queue_claim(c, 4, 0, &a), 4); /* n0..n3 */
    /* Out of order: n2, n0. */
    queue_job sub[2] = {a.jobs[2], a.jobs[0]};
    CHECK_INT_EQ(queue_ack(c, sub, 2), 0);
    CHECK_INT_EQ(llen(key), 2);
    /* The rest of the first claim in order (n1, n3): the tail of the list. */
    queue_job rest[2] = {a.jobs[1], a.jobs[3]};
    CHECK_INT_EQ(queue_ack(c, rest, 2), 0);
    CHECK_INT_EQ(llen(key), 0);
    /* A whole batch in claim order, with another claim still held in front of it. */
    CHECK_INT_EQ(queue_claim(c, 3, 0, &b), 3); /* n4..n6 */
    queue_batch held = {0};
    CHECK_INT_EQ(queue_ack(c, b.jobs, 1), 0); /* n4: the tail */
    CHECK_INT_EQ(llen(key), 2);
    CHECK_INT_EQ(queue_claim(c, 5, 0, &held), 2); /* unsettled n5, n6 come back first */
    CHECK_STR_EQ(held.jobs[0].data, "{\"n\":5}");
    CHECK_STR_EQ(held.jobs[1].data, "{\"n\":6}");
    CHECK_INT_EQ(queue_ack(c, held.jobs, held.n), 0);
    CHECK_INT_EQ(llen(key), 0);
    queue_stats st;
    char err[256];
    CHECK_INT_EQ(queue_stats_get(rc, env.prefix, "t7", &st, err, sizeof err), 0);
    CHECK_INT_EQ(st.acked, 7);
    CHECK_INT_EQ(st.ready, 3);
    queue_batch_release(&a);
    queue_batch_release(&b);
    queue_batch_release(&held);
    queue_close(p);
    queue_close(c);
}

/* Calls of command cmd (lower case) so far, from INFO commandstats (0 if never called). */
static long long cmd_calls(const char *cmd)
{
    char pat[64];
    long long n = 0;
    snprintf(pat, sizeof pat, "cmdstat_%s:calls=", cmd);
    redisReply *r = rconn_command(rc, "INFO commandstats");
    const char *at = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, pat) : NULL;
    if (at)
        n = strtoll(at + strlen(pat), NULL, 10);
    if (r)
        freeReplyObject(r);
    return n;
}

/* Large jobs (over 256 bytes on average) are claimed by one LMOVE each inside the claim
 * script, small ones by LTRIM + LPUSH: both leave the processing list in the same order (newest
 * first), claim oldest first, and ack by the one-LTRIM path; mixed sizes pick by the average. */
TEST(large_and_small_jobs_claim_alike)
{
    queue *p = open_q("t8", NULL, 3), *c = open_q("t8", "c1", 3);
    CHECK(p && c);
    static char big[6][600];
    const char *jobs[6];
    for (int i = 0; i < 6; i++) {
        /* 0..3 large, 4 large, 5 small: the last claim (4, 5) averages over 256 bytes */
        int pad = i == 5 ? 0 : 500;
        snprintf(big[i], sizeof big[i], "{\"n\":%d,\"pad\":\"%*s\"}", i, pad, "");
        jobs[i] = big[i];
    }
    CHECK_INT_EQ(queue_push_many(p, jobs, NULL, 6), 0);
    CHECK_INT_EQ(queue_register(c), 0);
    char key[300];
    queue_key(c, "processing:c1", key, sizeof key);
    queue_batch a = {0}, b = {0};
    long long lmoves = cmd_calls("lmove");
    CHECK_INT_EQ(queue_claim(c, 4, 0, &a), 4);
    CHECK_INT_EQ(cmd_calls("lmove") - lmoves, 4); /* one per large job, run by the script */
    for (int i = 0; i < 4; i++)
        CHECK_STR_EQ(a.jobs[i].data, big[i]);
    CHECK_INT_EQ(llen(key), 4);
    redisReply *r = rconn_command(rc, "LRANGE %s 0 -1", key);
    CHECK(r && r->type == REDIS_REPLY_ARRAY && r->elements == 4);
    for (int i = 0; i < 4; i++) /* newest first, the oldest claim at the tail */
        CHECK_STR_EQ(r->element[i]->str, big[3 - i]);
    freeReplyObject(r);
    CHECK_INT_EQ(queue_ack(c, a.jobs, a.n), 0);
    CHECK_INT_EQ(llen(key), 0);
    CHECK_INT_EQ(queue_claim(c, 10, 0, &b), 2);
    CHECK_STR_EQ(b.jobs[0].data, big[4]);
    CHECK_STR_EQ(b.jobs[1].data, big[5]);
    CHECK_INT_EQ(queue_ack(c, b.jobs, b.n), 0);
    queue_stats st;
    char err[256];
    CHECK_INT_EQ(queue_stats_get(rc, env.prefix, "t8", &st, err, sizeof err), 0);
    CHECK_INT_EQ(st.acked, 6);
    CHECK_INT_EQ(st.ready, 0);
    CHECK_INT_EQ(st.inflight, 0);
    queue_batch_release(&a);
    queue_batch_release(&b);
    queue_close(p);
    queue_close(c);
}

TEST(retry_backoff_then_dead_letter)
{
    queue *p = open_q("t2", NULL, 3), *c = open_q("t2", "c1", 3);
    CHECK(p && c);
    CHECK_INT_EQ(queue_push(p, "{\"id\":\"x\"}", 10), 0);
    CHECK_INT_EQ(queue_register(c), 0);
    queue_batch b = {0};
    for (int attempt = 1; attempt <= 3; attempt++) {
        int64_t deadline = time_mono_ms() + 3000;
        int n = 0;
        while (n == 0 && time_mono_ms() < deadline) {
            CHECK(queue_promote_due(c) >= 0);
            n = queue_claim(c, 5, 50, &b);
        }
        CHECK_INT_EQ(n, 1);
        json_t *j = json_loads(b.jobs[0].data, 0, NULL);
        CHECK_STR_EQ(json_string_value(json_object_get(j, "id")), "x");
        if (attempt > 1) {
            CHECK_INT_EQ(json_integer_value(json_object_get(j, "_attempts")), attempt - 1);
            CHECK_STR_EQ(json_string_value(json_object_get(j, "_error")), "boom");
        }
        json_decref(j);
        int r = queue_retry(c, &b.jobs[0], "boom");
        CHECK_INT_EQ(r, attempt == 3 ? 1 : 0);
        queue_batch_release(&b);
    }
    CHECK_INT_EQ(queue_dlq_len(c), 1);
    char **dl;
    CHECK_INT_EQ(queue_dlq_list(c, 0, 10, &dl), 1);
    json_t *e = json_loads(dl[0], 0, NULL);
    free(dl[0]);
    free(dl);
    CHECK_STR_EQ(json_string_value(json_object_get(e, "error")), "boom");
    CHECK_INT_EQ(json_integer_value(json_object_get(e, "attempts")), 3);
    CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(e, "job"), "id")), "x");
    CHECK(json_object_get(json_object_get(e, "job"), "_attempts") == NULL);
    CHECK(json_integer_value(json_object_get(e, "first_at")) <=
          json_integer_value(json_object_get(e, "failed_at")));
    json_decref(e);
    /* Requeue brings the clean job back. */
    CHECK_INT_EQ(queue_dlq_requeue(c, -1), 1);
    CHECK_INT_EQ(queue_dlq_len(c), 0);
    CHECK_INT_EQ(queue_claim(c, 5, 0, &b), 1);
    CHECK_STR_EQ(b.jobs[0].data, "{\"id\":\"x\"}");
    /* Malformed payloads go straight to the DLQ as text. */
    queue_job bad = {.data = "not json", .len = 8};
    CHECK_INT_EQ(queue_push(p, bad.data, bad.len), 0);
    CHECK_INT_EQ(queue_ack(c, b.jobs, b.n), 0);
    queue_batch_release(&b);
    CHECK_INT_EQ(queue_claim(c, 5, 0, &b), 1);
    CHECK_INT_EQ(queue_dead(c, &b.jobs[0], "malformed"), 0);
    queue_batch_release(&b);
    CHECK_INT_EQ(queue_dlq_list(c, 0, 10, &dl), 1);
    CHECK_STR_CONTAINS(dl[0], "\"job\":\"not json\"");
    CHECK_STR_CONTAINS(dl[0], "malformed");
    free(dl[0]);
    free(dl);
    CHECK_INT_EQ(queue_dlq_purge(c, -1), 1);
    CHECK_INT_EQ(queue_dlq_len(c), 0);
    queue_close(p);
    queue_close(c);
}

TEST(reaper_returns_dead_consumers_jobs)
{
    queue *p = open_q("t3", NULL, 3), *dead = open_q("t3", "dead1", 3),
          *live = open_q("t3", "live1", 3);
    CHECK(p && dead && live);
    const char *jobs[] = {"{\"n\":1}", "{\"n\":2}", "{\"n\":3}", "{\"n\":4}"};
    CHECK_INT_EQ(queue_push_many(p, jobs, NULL, 4), 0);
    CHECK_INT_EQ(queue_register(dead), 0);
    CHECK_INT_EQ(queue_register(live), 0);
    queue_batch b = {0};
    CHECK_INT_EQ(queue_claim(dead, 3, 0, &b), 3);
    queue_batch_release(&b);
    /* While the heartbeat lives, nothing is reaped, and no script runs: the pass only reads
     * (the consumers, their heartbeats, the due retries). */
    long long scripts = cmd_calls("evalsha") + cmd_calls("eval");
    CHECK_INT_EQ(queue_reap(live), 0);
    CHECK_INT_EQ(queue_promote_due(live), 0);
    CHECK_INT_EQ(cmd_calls("evalsha") + cmd_calls("eval") - scripts, 0);
    /* Poll until the 1 s heartbeat expires and the reaper returns all three. */
    int64_t deadline = time_mono_ms() + 5000;
    int got = 0;
    while (got < 3 && time_mono_ms() < deadline) {
        int r = queue_reap(live);
        CHECK(r >= 0);
        got += r;
        if (got < 3)
            sleep_ms(50);
    }
    CHECK_INT_EQ(got, 3);
    CHECK_INT_EQ(queue_claim(live, 10, 0, &b), 4);
    CHECK_INT_EQ(queue_ack(live, b.jobs, b.n), 0);
    queue_batch_release(&b);
    /* The dead consumer comes back: its heartbeat reports it was reaped. */
    CHECK_INT_EQ(queue_heartbeat(dead), 1);
    CHECK_INT_EQ(queue_heartbeat(dead), 0);
    /* Releasing claims hands jobs back at once. */
    CHECK_INT_EQ(queue_push(p, "{\"n\":5}", 7), 0);
    CHECK_INT_EQ(queue_claim(dead, 10, 0, &b), 1);
    queue_batch_release(&b);
    CHECK_INT_EQ(queue_release_claimed(dead), 1);
    CHECK_INT_EQ(queue_claim(live, 10, 0, &b), 1);
    CHECK_INT_EQ(queue_ack(live, b.jobs, b.n), 0);
    queue_batch_release(&b);
    queue_stats st;
    char err[256];
    CHECK_INT_EQ(queue_stats_get(rc, env.prefix, "t3", &st, err, sizeof err), 0);
    CHECK_INT_EQ(st.reaped, 4);
    CHECK_INT_EQ(st.acked, 5);
    queue_close(p);
    queue_close(dead);
    queue_close(live);
}

TEST(bad_names_and_sizes)
{
    char err[256];
    CHECK(queue_open(rc, env.prefix, "a b", NULL, NULL, err, sizeof err) == NULL);
    CHECK(queue_open(rc, env.prefix, "a:b", NULL, NULL, err, sizeof err) == NULL);
    CHECK(queue_open(rc, env.prefix, "ok", "bad id", NULL, err, sizeof err) == NULL);
    queue *p = open_q("t4", NULL, 3);
    CHECK(p);
    CHECK_INT_EQ(queue_push(p, "", 0), -1);
    queue_batch b = {0};
    CHECK_INT_EQ(queue_claim(p, 1, 0, &b), -1); /* producer handle cannot claim */
    /* Big batches go in chunks. */
    enum { N = 2500 };
    static char bufs[N][32];
    const char *jobs[N];
    for (int i = 0; i < N; i++) {
        snprintf(bufs[i], sizeof bufs[i], "{\"i\":%d}", i);
        jobs[i] = bufs[i];
    }
    CHECK_INT_EQ(queue_push_many(p, jobs, NULL, N), 0);
    char key[300];
    CHECK_INT_EQ(llen(queue_key(p, "ready", key, sizeof key)), N);
    queue_close(p);
}

/* Pushes one job after a pause, from its own connection (for the blocking claim below). */
static void *push_later(void *arg)
{
    (void)arg;
    sleep_ms(150);
    char err[256];
    rconn *c2 = rconn_new(env.redis_url, 5000, err, sizeof err);
    queue *p = c2 ? queue_open(c2, env.prefix, "t5", NULL, NULL, err, sizeof err) : NULL;
    if (p)
        queue_push(p, "{\"late\":1}", 10);
    queue_close(p);
    rconn_free(c2);
    return NULL;
}

/* A job arriving while the consumer blocks is delivered once (not again as "held" by the
 * follow-up claim); queue_claim_fresh never hands back held jobs; queue_dead_parts writes one
 * dead letter per part, each requeued on its own. */
TEST(blocking_claim_fresh_claim_and_dead_parts)
{
    queue *c = open_q("t5", "c5", 3), *p = open_q("t5", NULL, 3);
    CHECK(c && p);
    CHECK_INT_EQ(queue_register(c), 0);
    pthread_t th;
    CHECK_INT_EQ(pthread_create(&th, NULL, push_later, NULL), 0);
    queue_batch b = {0};
    CHECK_INT_EQ(queue_claim(c, 10, 3000, &b), 1);
    pthread_join(th, NULL);
    CHECK_STR_EQ(b.jobs[0].data, "{\"late\":1}");
    CHECK_INT_EQ(queue_ack(c, b.jobs, b.n), 0);
    queue_batch_release(&b);
    /* Fresh claims leave held jobs alone. */
    const char *jobs[] = {"{\"f\":1}", "{\"f\":2}"};
    CHECK_INT_EQ(queue_push_many(p, jobs, NULL, 2), 0);
    CHECK_INT_EQ(queue_claim_fresh(c, 1, 0, &b), 1);
    CHECK_STR_EQ(b.jobs[0].data, "{\"f\":1}");
    CHECK_INT_EQ(queue_claim_fresh(c, 5, 0, &b), 1);
    CHECK_STR_EQ(b.jobs[1].data, "{\"f\":2}");
    CHECK_INT_EQ(queue_claim_fresh(c, 5, 0, &b), 0);
    char key[300];
    CHECK_INT_EQ(llen(queue_key(c, "processing:c5", key, sizeof key)), 2);
    /* Acking out of claim order; the second job carried 500 items (a batch job); acking it
     * again counts nothing. */
    CHECK_INT_EQ(queue_ack_items(c, &b.jobs[1], 1, 500), 0);
    CHECK_INT_EQ(queue_ack(c, &b.jobs[0], 1), 0);
    CHECK_INT_EQ(queue_ack_items(c, &b.jobs[1], 1, 500), 0);
    CHECK_INT_EQ(llen(key), 0);
    queue_batch_release(&b);
    /* Dead parts. */
    const char *parts[] = {"{\"log_id\":42}", "not json"};
    const char *why[] = {"bad log_id", "not JSON"};
    CHECK_INT_EQ(queue_dead_parts(c, parts, NULL, why, 2), 0);
    CHECK_INT_EQ(queue_dlq_len(c), 2);
    char **dl;
    CHECK_INT_EQ(queue_dlq_list(c, 0, 2, &dl), 2);
    json_t *newest = json_loads(dl[0], 0, NULL), *oldest = json_loads(dl[1], 0, NULL);
    CHECK_STR_EQ(json_string_value(json_object_get(newest, "job")), "not json");
    CHECK_STR_EQ(json_string_value(json_object_get(newest, "error")), "not JSON");
    CHECK_INT_EQ(json_integer_value(json_object_get(json_object_get(oldest, "job"), "log_id")), 42);
    CHECK_STR_EQ(json_string_value(json_object_get(oldest, "error")), "bad log_id");
    CHECK_INT_EQ(json_integer_value(json_object_get(oldest, "attempts")), 1);
    json_decref(newest);
    json_decref(oldest);
    free(dl[0]);
    free(dl[1]);
    free(dl);
    CHECK_INT_EQ(queue_dlq_requeue(c, 1), 1);
    CHECK_INT_EQ(queue_claim(c, 5, 0, &b), 1);
    CHECK_STR_EQ(b.jobs[0].data, "{\"log_id\":42}");
    CHECK_INT_EQ(queue_ack(c, b.jobs, b.n), 0);
    queue_batch_release(&b);
    queue_stats st;
    char err[256];
    CHECK_INT_EQ(queue_stats_get(rc, env.prefix, "t5", &st, err, sizeof err), 0);
    CHECK_INT_EQ(st.dead_total, 2);
    CHECK_INT_EQ(st.dead, 1);
    CHECK_INT_EQ(st.acked, 4);
    CHECK_INT_EQ(st.items, 1 + 500 + 1 + 1);
    CHECK(st.rate_1m > 500.0 / 60 - 1e-9); /* items per second over the last minute */
    queue_close(p);
    queue_close(c);
}

static int setup(void)
{
    if (testenv_start(&env, TESTENV_REDIS) != 0)
        return -1;
    char err[256];
    rc = rconn_new(env.redis_url, 5000, err, sizeof err);
    return rc ? 0 : -1;
}

TEST(defer_is_no_attempt_and_comes_back_unchanged)
{
    queue *p = open_q("tdefer", NULL, 3), *c = open_q("tdefer", "c1", 3);
    CHECK(p && c);
    const char *job = "{\"campaign_id\":\"x\",\"sends\":[1,2,3]}";
    CHECK_INT_EQ(queue_push(p, job, strlen(job)), 0);
    CHECK_INT_EQ(queue_register(c), 0);
    queue_batch b = {0};
    CHECK_INT_EQ(queue_claim(c, 1, 0, &b), 1);
    int64_t due = time_now_ms() + 300;
    CHECK_INT_EQ(queue_defer(c, &b.jobs[0], due), 0);
    queue_batch_release(&b);
    char key[300];
    queue_key(c, "processing:c1", key, sizeof key);
    CHECK_INT_EQ(llen(key), 0);
    queue_stats st;
    char err[256];
    CHECK_INT_EQ(queue_stats_get(rc, env.prefix, "tdefer", &st, err, sizeof err), 0);
    CHECK_INT_EQ(st.delayed, 1);
    CHECK_INT_EQ(st.retried, 0); /* not an attempt */
    queue_key(c, "stats", key, sizeof key);
    redisReply *r = rconn_command(rc, "HGET %s deferred", key);
    CHECK(r && r->type == REDIS_REPLY_STRING && strcmp(r->str, "1") == 0);
    if (r)
        freeReplyObject(r);
    /* Not claimable before it is due (poll the maintenance until then)... */
    while (time_now_ms() < due - 100) {
        CHECK_INT_EQ(queue_maintain(c), 0);
        CHECK_INT_EQ(queue_claim(c, 1, 0, &b), 0);
        sleep_ms(20);
    }
    /* ...and back, byte for byte, once it is. */
    int got = 0;
    for (int i = 0; i < 200 && !got; i++) {
        CHECK_INT_EQ(queue_maintain(c), 0);
        got = queue_claim(c, 1, 0, &b);
        if (!got)
            sleep_ms(20);
    }
    CHECK_INT_EQ(got, 1);
    CHECK(time_now_ms() >= due);
    CHECK_STR_EQ(b.jobs[0].data, job);
    CHECK_INT_EQ(queue_ack(c, b.jobs, b.n), 0);
    queue_batch_release(&b);
    queue_close(p);
    queue_close(c);
}

static const test_case cases[] = {TEST_ENTRY(defer_is_no_attempt_and_comes_back_unchanged),
                                  TEST_ENTRY(push_claim_ack_fifo),
                                  TEST_ENTRY(ack_in_order_out_of_order_and_partial),
                                  TEST_ENTRY(large_and_small_jobs_claim_alike),
                                  TEST_ENTRY(retry_backoff_then_dead_letter),
                                  TEST_ENTRY(reaper_returns_dead_consumers_jobs),
                                  TEST_ENTRY(bad_names_and_sizes),
                                  TEST_ENTRY(blocking_claim_fresh_claim_and_dead_parts)};

int main(int argc, char **argv)
{
    if (setup() != 0) {
        fprintf(stderr, "test_queue: cannot start redis\n");
        return 1;
    }
    int rcode = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    rconn_free(rc);
    testenv_stop(&env);
    return rcode;
}
