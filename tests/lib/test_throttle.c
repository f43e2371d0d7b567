/* Integration tests of lib/throttle against a private redis-server: the GCRA grants, waits and
 * give-backs, the script cache lost under it, the global + per-campaign take, and two handles
 * (two connections, two threads) racing for one limiter: the grants per window are exact. */
#include "test.h"
#include "testenv.h"
#include "throttle.h"
#include "timeutil.h"

#include <pthread.h>
#include <time.h>

static testenv env;

static rconn *conn(void)
{
    char err[256];
    rconn *c = rconn_new(env.redis_url, 2000, err, sizeof err);
    if (!c)
        fprintf(stderr, "rconn_new: %s\n", err);
    return c;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

TEST(burst_then_wait)
{
    rconn *c = conn();
    CHECK(c != NULL);
    throttle *t = throttle_new(c, env.prefix);
    long g = -1;
    int64_t w = -1;
    /* 100/s: a token every 10 ms, a burst of ceil(100 * 50 / 1000) = 5. */
    int64_t t0 = time_mono_ms();
    CHECK_INT_EQ(throttle_take(t, "t1", 100, 1000, &g, &w), 0);
    CHECK_INT_EQ(g, 5);
    CHECK_MSG(w >= 9 && w <= 11, "wait %lld", (long long)w);
    /* The burst is spent: the next take gets only the tokens of the time that passed (none
     * on a quiet box; one per 10 ms when the box stalled between the two calls). */
    CHECK_INT_EQ(throttle_take(t, "t1", 100, 3, &g, &w), 0);
    int64_t passed = time_mono_ms() - t0 + 1;
    CHECK_MSG(g <= passed / 10, "granted %ld after %lld ms", g, (long long)passed);
    CHECK(g > 0 || (w > 0 && w <= 11));
    sleep_ms(w > 0 ? w : 10);
    CHECK_INT_EQ(throttle_take(t, "t1", 100, 3, &g, &w), 0);
    CHECK(g >= 1);
    /* The key lives under the prefix with its own hash tag and expires. */
    char key[200];
    snprintf(key, sizeof key, "%s{rate:t1}", env.prefix);
    redisReply *r = rconn_command(c, "PTTL %s", key);
    CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer > 0 && r->integer <= 1100);
    freeReplyObject(r);
    throttle_free(t);
    rconn_free(c);
}

TEST(give_back_and_noscript)
{
    rconn *c = conn();
    CHECK(c != NULL);
    throttle *t = throttle_new(c, env.prefix);
    long g;
    int64_t w;
    /* 2/s: a token every 500 ms, burst 1. */
    CHECK_INT_EQ(throttle_take(t, "t2", 2, 10, &g, &w), 0);
    CHECK_INT_EQ(g, 1);
    CHECK_INT_EQ(throttle_give_back(t, "t2", 2, 1), 0);
    /* The script cache is flushed under the handle: the next call loads it again. */
    redisReply *r = rconn_command(c, "SCRIPT FLUSH");
    CHECK(r && r->type != REDIS_REPLY_ERROR);
    freeReplyObject(r);
    CHECK_INT_EQ(throttle_take(t, "t2", 2, 10, &g, &w), 0);
    int64_t t0 = time_mono_ms();
    CHECK_INT_EQ(g, 1);
    CHECK_MSG(w > 0 && w <= 500, "wait %lld", (long long)w);
    /* Nothing more until 500 ms passed since that take (a stalled box may get there). */
    CHECK_INT_EQ(throttle_take(t, "t2", 2, 10, &g, &w), 0);
    int64_t passed = time_mono_ms() - t0 + 1;
    CHECK_MSG(g <= passed / 500, "granted %ld after %lld ms", g, (long long)passed);
    throttle_free(t);
    rconn_free(c);
}

TEST(no_limit_makes_no_call)
{
    /* A handle without a connection: any Redis call would fail. */
    throttle *t = throttle_new(NULL, "x:");
    long g;
    int64_t w;
    throttle_by by;
    CHECK_INT_EQ(throttle_take_sends(t, 0, "0123456789abcdef01234567", 0, 500, &g, &w, &by), 0);
    CHECK_INT_EQ(g, 500);
    CHECK_INT_EQ(w, 0);
    CHECK_INT_EQ(by, THROTTLE_NONE);
    throttle_free(t);
}

TEST(campaign_and_global)
{
    rconn *c = conn();
    CHECK(c != NULL);
    throttle *t = throttle_new(c, env.prefix);
    const char *camp = "aaaaaaaaaaaaaaaaaaaaaaaa";
    long g;
    int64_t w;
    throttle_by by;
    /* The campaign's limit binds: 20/s (burst 1) under a global 1000/s (burst 50). */
    int64_t t0 = time_mono_ms();
    CHECK_INT_EQ(throttle_take_sends(t, 1000, camp, 20, 100, &g, &w, &by), 0);
    CHECK_INT_EQ(g, 1);
    CHECK_INT_EQ(by, THROTTLE_CAMPAIGN);
    CHECK(w > 0 && w <= 50);
    /* The global one took only that one: 49 of its burst are left, plus one token per ms
     * that passed meanwhile (a loaded box), never more than the burst. */
    CHECK_INT_EQ(throttle_take(t, "vendor", 1000, 100, &g, &w), 0);
    int64_t passed = time_mono_ms() - t0 + 1;
    CHECK_MSG(g >= 49 && g <= 49 + passed && g <= 50, "granted %ld after %lld ms", g,
              (long long)passed);
    /* Now the global binds (empty): the campaign gets back what the global refused. */
    const char *camp2 = "bbbbbbbbbbbbbbbbbbbbbbbb";
    int64_t t1 = time_mono_ms();
    CHECK_INT_EQ(throttle_take_sends(t, 1000, camp2, 1000, 50, &g, &w, &by), 0);
    passed = time_mono_ms() - t1 + 1;
    CHECK_MSG(g <= passed, "granted %ld after %lld ms", g, (long long)passed);
    CHECK_INT_EQ(by, THROTTLE_GLOBAL);
    /* camp2's own bucket (burst 50) lost only the g the global let through, plus whatever
     * refilled since. */
    long g2;
    CHECK_INT_EQ(throttle_take(t, "campaign:bbbbbbbbbbbbbbbbbbbbbbbb", 1000, 100, &g2, &w), 0);
    CHECK_MSG(g2 >= 50 - g && g2 <= 50, "camp2 had %ld after %ld went out", g2, g);
    throttle_free(t);
    rconn_free(c);
}

/* Two racers on one limiter, each with its own connection, for RACE_MS. */
enum { RACE_MS = 3000, RACE_RATE = 200, RACE_MAX_GRANTS = 4096 };

typedef struct racer {
    /* Each granted token was granted (by Redis's clock) somewhere between these two local
     * times, ms: the call's start and its return. */
    int64_t lo[RACE_MAX_GRANTS], hi[RACE_MAX_GRANTS];
    long n;
    int64_t start;
    int failed;
} racer;

static void *race(void *arg)
{
    racer *rc = arg;
    char err[256];
    rconn *c = rconn_new(env.redis_url, 2000, err, sizeof err);
    throttle *t = c ? throttle_new(c, env.prefix) : NULL;
    if (!t) {
        rc->failed = 1;
        return NULL;
    }
    while (time_mono_ms() - rc->start < RACE_MS) {
        long g;
        int64_t w, before = time_mono_ms();
        if (throttle_take(t, "race", RACE_RATE, 7, &g, &w) != 0) {
            rc->failed = 1;
            break;
        }
        int64_t now = time_mono_ms();
        for (long i = 0; i < g && rc->n < RACE_MAX_GRANTS; i++) {
            rc->lo[rc->n] = before;
            rc->hi[rc->n++] = now;
        }
        if (w > 0)
            sleep_ms(w);
    }
    throttle_free(t);
    rconn_free(c);
    return NULL;
}

TEST(two_handles_racing)
{
    static racer a, b;
    a.start = b.start = time_mono_ms();
    pthread_t ta, tb;
    CHECK_INT_EQ(pthread_create(&ta, NULL, race, &a), 0);
    CHECK_INT_EQ(pthread_create(&tb, NULL, race, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(!a.failed && !b.failed);
    /* Over the whole run: at most rate * D + burst (10), and not far below the rate. */
    long total = a.n + b.n;
    long most = RACE_RATE * RACE_MS / 1000 + 10;
    /* The upper bound is the limiter's promise; the lower one only shows it is not stuck (on a
     * loaded box the racers may be descheduled for long stretches). */
    CHECK_MSG(total <= most && total >= most / 2, "granted %ld, bound %ld", total, most);
    CHECK(a.n > total / 4 && b.n > total / 4); /* both were served */
    /* Every one-second window (sliding, 10 ms steps): at most rate + burst (+ one token of
     * rounding at the window's edges). Only grants known to lie inside the window count (their
     * whole call was inside it), so a racer descheduled between Redis's answer and its clock
     * read cannot make a window look fuller than it was. */
    long worst = 0;
    for (int64_t s = a.start; s + 1000 <= a.start + RACE_MS; s += 10) {
        long in = 0;
        for (long i = 0; i < a.n; i++)
            in += a.lo[i] >= s && a.hi[i] < s + 1000;
        for (long i = 0; i < b.n; i++)
            in += b.lo[i] >= s && b.hi[i] < s + 1000;
        if (in > worst)
            worst = in;
    }
    fprintf(stderr, "racers: a=%ld b=%ld total=%ld worst 1 s window=%ld\n", a.n, b.n, total, worst);
    CHECK_MSG(worst <= RACE_RATE + 10 + 1, "worst window %ld", worst);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        TEST_ENTRY(burst_then_wait), TEST_ENTRY(give_back_and_noscript),
        TEST_ENTRY(no_limit_makes_no_call), TEST_ENTRY(campaign_and_global),
        TEST_ENTRY(two_handles_racing)};
    if (testenv_start(&env, TESTENV_REDIS) != 0)
        return 1;
    int rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    testenv_stop(&env);
    return rc;
}
