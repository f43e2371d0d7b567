/*
 * test_rate: vendor rate limits (issue 15.1) with the real programs on private redis-server and
 * minicrm-devdb, and TWO vendor simulators sharing the limits (lib/throttle, lib/pacer).
 *
 *   - kill9_rate_limited_vendor (written first): vendor.rate_per_s = 100, a 1,000-message
 *     campaign; one simulator is killed -9 mid-campaign and started again: every log ends SENT
 *     or FAILED, the counters equal the logs, and no one-second window went above the bound.
 *   - global_window_bound: vendor.rate_per_s = 100, 1,000 messages: the campaign takes about
 *     10 s, both simulators hand sends, the most sends handed in any wall-clock second (summed
 *     over both simulators' vendor.handed lines) is at most 110 (the 550 at 500/s), and
 *     every message reaches SENT/FAILED with exact counters; a one-off message posted
 *     mid-campaign (priority lane, same global limiter, served first) is final within 1.5 s.
 *   - campaign_rate: POST /api/campaigns refuses a rate_per_s that is not a positive number
 *     (400 with the message), stores a good one; a campaign at 50/s does not hold back another
 *     campaign without a rate (it completes while the slow one is still sending), the slow
 *     one takes as long as its rate says, and its jobs beyond what a simulator may hold were
 *     deferred in the queue (stats "deferred").
 *   - vendor_429_pause_and_retry: vendor_sim.fake_429_above_per_s = 100, no limit of ours: the
 *     simulators are answered 429, pause for Retry-After and hand the sends again: every log
 *     SENT (success_rate 1), none FAILED, counters exact, 429s were answered.
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
#include <sys/stat.h>

#define NCUST 1000

static pipeh h;
static char key[200];
static pid_t vendor_b;
static long off_a, off_b; /* where this test's lines start in the two simulators' logs */

static const char *log_b(void)
{
    static char p[400];
    snprintf(p, sizeof p, "%s/vendor-b.log", h.env.dir);
    return p;
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

static void stop_vendors(void);

/* Start both simulators (A through the harness, B by hand) with the environment as set (any
 * left running by a test that failed are stopped first). */
static int start_vendors(void)
{
    stop_vendors();
    off_a = file_size(pipeh_logfile(&h, PH_VENDOR));
    off_b = file_size(log_b());
    if (pipeh_spawn(&h, PH_VENDOR, (const char *const[]){"--name", "vs-a", NULL}) != 0)
        return -1;
    char *argv[] = {(char *)testenv_bin("minicrm-vendor-sim"), "--name", "vs-b", NULL};
    vendor_b = testenv_spawn(argv, log_b());
    return vendor_b > 0 ? 0 : -1;
}

static void kill_b(int sig)
{
    if (vendor_b > 0) {
        kill(-vendor_b, sig);
        testenv_kill_wait(vendor_b, sig, 15000);
        vendor_b = 0;
    }
}

static void stop_vendors(void)
{
    pipeh_kill(&h, PH_VENDOR, SIGTERM);
    kill_b(SIGTERM);
}

/* Sum the vendor.handed lines (second=S sends=N) of a log from offset `off` into per-second
 * counts (secs[k] = S, cnt[k] = N summed). Returns the number of distinct seconds. */
enum { MAXSEC = 4096 };
static int add_handed(const char *path, long off, long long *secs, long *cnt, int n, long *per_file)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return n;
    fseek(f, off, SEEK_SET);
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "vendor.handed");
        const char *ps = p ? strstr(p, "second=") : NULL;
        const char *pn = p ? strstr(p, "sends=") : NULL;
        if (!ps || !pn)
            continue;
        long long s = strtoll(ps + 7, NULL, 10);
        long c = strtol(pn + 6, NULL, 10);
        *per_file += c;
        int k = 0;
        while (k < n && secs[k] != s)
            k++;
        if (k == n && n < MAXSEC) {
            secs[n] = s;
            cnt[n++] = 0;
        }
        if (k < MAXSEC)
            cnt[k] += c;
    }
    fclose(f);
    return n;
}

/* The largest per-second sum over both simulators since start_vendors; per instance totals. */
static long worst_second(long *a, long *b)
{
    static long long secs[MAXSEC];
    static long cnt[MAXSEC];
    *a = *b = 0;
    int n = add_handed(pipeh_logfile(&h, PH_VENDOR), off_a, secs, cnt, 0, a);
    n = add_handed(log_b(), off_b, secs, cnt, n, b);
    long worst = 0;
    for (int k = 0; k < n; k++)
        if (cnt[k] > worst)
            worst = cnt[k];
    return worst;
}

static int count_in_log(const char *path, long off, const char *what)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    fseek(f, off, SEEK_SET);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, what) != NULL;
    fclose(f);
    return n;
}

/* Every log final and the counters equal to them. */
static void check_exact(const bson_oid_t *cid, long long n, ph_campaign *c)
{
    long long by[4];
    CHECK_INT_EQ(pipeh_count_logs(&h, cid, by), n);
    CHECK_INT_EQ(by[0], 0);
    CHECK_INT_EQ(by[1] + by[2], n);
    CHECK_INT_EQ(c->total, n);
    CHECK_INT_EQ(c->sent, by[1]);
    CHECK_INT_EQ(c->failed, by[2]);
    CHECK_INT_EQ(c->pending, 0);
}

TEST(kill9_rate_limited_vendor)
{
    setenv("MINICRM_VENDOR_RATE_PER_S", "100", 1);
    CHECK(pipeh_start_all(&h) == 0);
    pipeh_kill(&h, PH_VENDOR, SIGTERM);
    CHECK(start_vendors() == 0);
    bson_oid_t cid;
    CHECK(pipeh_campaign(&h, "rate-kill", "{}", &cid) == 0);
    ph_campaign c;
    int64_t t0 = time_mono_ms();
    while ((pipeh_read(&h, &cid, &c) != 0 || c.sent + c.failed < 300) &&
           time_mono_ms() - t0 < 30000)
        pipeh_sleep_ms(20);
    CHECK_MSG(c.sent + c.failed >= 300 && c.sent + c.failed < NCUST, "applied %lld",
              (long long)(c.sent + c.failed));
    long a, b, worst = worst_second(&a, &b);
    CHECK_MSG(b > 0, "the simulator to kill has handed nothing yet");
    kill_b(SIGKILL); /* holding claimed, half-handed jobs */
    pipeh_sleep_ms(500);
    char *argv[] = {(char *)testenv_bin("minicrm-vendor-sim"), "--name", "vs-b", NULL};
    vendor_b = testenv_spawn(argv, log_b());
    CHECK(vendor_b > 0);
    CHECK_INT_EQ(pipeh_wait_completed(&h, &cid, 90000, &c), 0);
    check_exact(&cid, NCUST, &c);
    int64_t until = time_mono_ms() + 5000;
    while ((worst = worst_second(&a, &b), a + b < NCUST) && time_mono_ms() < until)
        pipeh_sleep_ms(100);
    fprintf(stderr,
            "  kill -9: handed a=%ld b=%ld (repeats of the killed one's jobs included), "
            "worst second %ld\n",
            a, b, worst);
    CHECK_MSG(worst <= 110, "a second with %ld sends", worst);
    stop_vendors();
}

TEST(global_window_bound)
{
    setenv("MINICRM_VENDOR_RATE_PER_S", "100", 1);
    CHECK(pipeh_start_all(&h) == 0);
    pipeh_kill(&h, PH_VENDOR, SIGTERM);
    CHECK(start_vendors() == 0);
    bson_oid_t cid;
    int64_t t0 = time_mono_ms();
    CHECK(pipeh_campaign(&h, "rate-global", "{}", &cid) == 0);
    ph_campaign c;
    /* Mid-campaign, a one-off message: the priority lane takes from the same global limiter
     * but is served first, so it does not wait behind the campaign's paced sends. */
    while ((pipeh_read(&h, &cid, &c) != 0 || c.sent + c.failed < 200) &&
           time_mono_ms() - t0 < 30000)
        pipeh_sleep_ms(20);
    pipeh_answer ans;
    int64_t tp = time_mono_ms();
    CHECK_INT_EQ(pipeh_post(&h, "/api/messages", key,
                            "{\"email\":\"c5@c.example\",\"message\":\"code 1\"}", NULL, 10000L,
                            &ans),
                 202);
    json_error_t je;
    json_t *j = json_loads(ans.body, 0, &je);
    const char *lhex = json_string_value(json_object_get(j, "log_id"));
    CHECK(lhex && strlen(lhex) == 24);
    bson_oid_t lid;
    bson_oid_init_from_string(&lid, lhex);
    json_decref(j);
    char st[16];
    CHECK_INT_EQ(pipeh_wait_log_final(&h, &lid, 10000, st), 0);
    int64_t prio_ms = time_mono_ms() - tp;
    CHECK(pipeh_read(&h, &cid, &c) == 0);
    fprintf(stderr, "  one-off message final in %lld ms; campaign then at %lld of %d\n",
            (long long)prio_ms, (long long)(c.sent + c.failed), NCUST);
    CHECK_MSG(c.sent + c.failed < NCUST - 100, "the campaign was nearly done: proves nothing");
    CHECK_MSG(prio_ms < 1500, "one-off message took %lld ms", (long long)prio_ms);
    CHECK_INT_EQ(pipeh_wait_completed(&h, &cid, 60000, &c), 0);
    int64_t took = time_mono_ms() - t0;
    check_exact(&cid, NCUST, &c);
    long a, b, worst;
    /* The last second's line is written once that second is over: poll for it. */
    int64_t until = time_mono_ms() + 5000;
    while ((worst = worst_second(&a, &b), a + b < NCUST + 1) && time_mono_ms() < until)
        pipeh_sleep_ms(100);
    fprintf(stderr, "  100/s, %d messages, 2 simulators: %lld ms, worst second %ld, a=%ld b=%ld\n",
            NCUST, (long long)took, worst, a, b);
    CHECK_INT_EQ(a + b, NCUST + 1); /* the campaign and the one-off message */
    CHECK(a > 0 && b > 0);
    CHECK_MSG(worst <= 110, "a second with %ld sends", worst);
    CHECK_MSG(took >= 9500, "took %lld ms: faster than the limit", (long long)took);
    stop_vendors();
}

/* POST /api/campaigns with body; the status (answer in *a). */
static long post_campaign(const char *body, pipeh_answer *a)
{
    return pipeh_post(&h, "/api/campaigns", key, body, NULL, 10000L, a);
}

static int answer_campaign_id(const pipeh_answer *a, bson_oid_t *out, double *rate)
{
    json_error_t je;
    json_t *j = json_loads(a->body, 0, &je);
    json_t *camp = json_object_get(j, "campaign");
    const char *id = json_string_value(json_object_get(camp, "_id"));
    *rate = json_number_value(json_object_get(camp, "rate_per_s"));
    int rc = id && strlen(id) == 24 ? 0 : -1;
    if (rc == 0)
        bson_oid_init_from_string(out, id);
    json_decref(j);
    return rc;
}

TEST(campaign_rate)
{
    unsetenv("MINICRM_VENDOR_RATE_PER_S");
    CHECK(pipeh_start_all(&h) == 0);
    pipeh_kill(&h, PH_VENDOR, SIGTERM);
    CHECK(start_vendors() == 0);
    pipeh_answer a;
    static const char *const bad[] = {"0", "-5", "\"10\"", "\"NaN\"", "true", "[]", "{}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"name\":\"bad\",\"rules\":{},\"rate_per_s\":%s}", bad[i]);
        CHECK_INT_EQ(post_campaign(body, &a), 400);
        CHECK_STR_CONTAINS(a.body, "rate_per_s must be a positive number");
    }
    /* The slow one: every customer at 50/s (20 s): more than 500 of its sends would wait in a
     * simulator, so its later jobs are deferred in the queue instead. */
    long long nslow = NCUST;
    int64_t t0 = time_mono_ms();
    CHECK_INT_EQ(post_campaign("{\"name\":\"slow\",\"rules\":{},\"rate_per_s\":50}", &a), 201);
    bson_oid_t slow, fast;
    double rate = 0;
    CHECK(answer_campaign_id(&a, &slow, &rate) == 0);
    CHECK(rate == 50);
    CHECK_INT_EQ(post_campaign("{\"name\":\"fast\",\"rules\":{}}", &a), 201);
    CHECK(answer_campaign_id(&a, &fast, &rate) == 0);
    CHECK(rate == 0);
    ph_campaign cf, cs;
    CHECK_INT_EQ(pipeh_wait_completed(&h, &fast, 60000, &cf), 0);
    int64_t fast_ms = time_mono_ms() - t0;
    CHECK(pipeh_read(&h, &slow, &cs) == 0);
    fprintf(stderr, "  fast campaign (%d) done in %lld ms; slow one then at %lld of %lld\n", NCUST,
            (long long)fast_ms, (long long)(cs.sent + cs.failed), nslow);
    CHECK_MSG(cs.sent + cs.failed < nslow, "the slow campaign was not slow");
    check_exact(&fast, NCUST, &cf);
    CHECK_INT_EQ(pipeh_wait_completed(&h, &slow, 60000, &cs), 0);
    int64_t slow_ms = time_mono_ms() - t0;
    check_exact(&slow, nslow, &cs);
    redisReply *r = rconn_command(h.rc, "HGET %s{sends}:stats deferred", h.env.prefix);
    long long deferred = r && r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
    if (r)
        freeReplyObject(r);
    fprintf(stderr, "  slow campaign (%lld at 50/s) done in %lld ms, %lld jobs deferred\n", nslow,
            (long long)slow_ms, deferred);
    CHECK_MSG(slow_ms >= (nslow - 3) * 1000 / 50, "slow campaign took %lld ms", (long long)slow_ms);
    CHECK(deferred > 0);
    stop_vendors();
}

TEST(vendor_429_pause_and_retry)
{
    unsetenv("MINICRM_VENDOR_RATE_PER_S");
    setenv("MINICRM_VENDOR_SIM_FAKE_429_ABOVE_PER_S", "100", 1);
    setenv("MINICRM_VENDOR_SIM_SUCCESS_RATE", "1", 1);
    CHECK(pipeh_start_all(&h) == 0);
    pipeh_kill(&h, PH_VENDOR, SIGTERM);
    CHECK(start_vendors() == 0);
    bson_oid_t cid;
    int64_t t0 = time_mono_ms();
    /* 500 customers: total_spend >= 5000. */
    long long n = 0;
    for (int i = 0; i < NCUST; i++)
        n += pipeh_spend(i) >= 5000;
    CHECK(pipeh_campaign(&h, "rate-429", "{\"min_spend\":5000}", &cid) == 0);
    ph_campaign c;
    CHECK_INT_EQ(pipeh_wait_completed(&h, &cid, 60000, &c), 0);
    int64_t took = time_mono_ms() - t0;
    check_exact(&cid, n, &c);
    CHECK_INT_EQ(c.failed, 0);
    CHECK_INT_EQ(c.sent, n);
    int r429 = count_in_log(pipeh_logfile(&h, PH_VENDOR), off_a, "vendor.answered_429") +
               count_in_log(log_b(), off_b, "vendor.answered_429");
    long a, b, worst;
    int64_t until = time_mono_ms() + 5000;
    while ((worst = worst_second(&a, &b), a + b < n) && time_mono_ms() < until)
        pipeh_sleep_ms(100);
    fprintf(stderr,
            "  429 above 100/s: %lld messages in %lld ms, %d 429 answers, worst second "
            "%ld\n",
            n, (long long)took, r429, worst);
    CHECK(r429 > 0);
    CHECK_INT_EQ(a + b, n);
    CHECK_MSG(worst <= 100, "the fake vendor accepted %ld in a second", worst);
    stop_vendors();
    unsetenv("MINICRM_VENDOR_SIM_FAKE_429_ABOVE_PER_S");
    unsetenv("MINICRM_VENDOR_SIM_SUCCESS_RATE");
}

static const test_case cases[] = {TEST_ENTRY(kill9_rate_limited_vendor),
                                  TEST_ENTRY(global_window_bound), TEST_ENTRY(campaign_rate),
                                  TEST_ENTRY(vendor_429_pause_and_retry)};

int main(int argc, char **argv)
{
    if (pipeh_start(&h) != 0) {
        fprintf(stderr, "test_rate: cannot start services\n");
        pipeh_stop(&h);
        return 1;
    }
    setenv("MINICRM_TEST_DIR", h.env.dir, 1);
    /* The sweeper must not re-send logs that only wait for their turn (the slowest campaign
     * here lasts 20 s, the harness's vendor timeout). */
    setenv("MINICRM_RECEIPTS_VENDOR_TIMEOUT_S", "120", 1);
    /* Jobs of 50 sends, claims of about 100: both simulators get a share of a campaign. */
    setenv("MINICRM_WORKERS_BATCH_SIZE", "50", 1);
    setenv("MINICRM_VENDOR_SIM_BATCH_SIZE", "100", 1);
    if (pipeh_seed(&h, NCUST) != 0 || pipeh_make_key(&h, "staff", "rate", key, sizeof key) != 0) {
        fprintf(stderr, "test_rate: cannot seed or make a staff key\n");
        pipeh_stop(&h);
        return 1;
    }
    int rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    if (rc != 0)
        fprintf(stderr, "logs of the programs: %s\n", h.env.dir);
    kill_b(SIGTERM);
    pipeh_stop(&h);
    return rc;
}
