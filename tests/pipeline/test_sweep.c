/*
 * test_sweep: the PENDING sweeper (workers/receipts.c receipts_sweep) against rate limits, with
 * the real programs on private redis-server and minicrm-devdb, receipts.vendor_timeout_s = 3 and
 * receipts.sweep_interval_s = 1.
 *
 *   - rate_limited_not_swept (written first): a campaign of 1,000 messages at rate_per_s 50
 *     (20 s, far beyond the 3 s vendor timeout): its logs wait PENDING for their turn, so the
 *     sweeper must neither re-send nor fail any of them. Mid-campaign the vendor simulator is
 *     killed -9 while it holds paced sends and stays down longer than the vendor timeout (its
 *     claimed jobs still count as work waiting), and the receipts worker is killed -9 and
 *     restarted (the sweeper's memory is in Redis). Every log ends final, counters exact, no
 *     log carries `resends`, no synthetic FAILED receipt, no receipts.swept line.
 *   - lost_sends_resent_at_campaign_rate: a campaign of ~100 messages at rate_per_s 20 whose
 *     send jobs are lost (deleted from the sends queue before a vendor claimed them): once
 *     nothing waits, the sweeper re-sends every log exactly once (the re-sends waiting in the
 *     vendor's pacer count as waiting work, so none is sent twice), the re-sends honour the
 *     campaign's rate (no wall-clock second above 20 + the burst), and the campaign completes
 *     with exact counters.
 *   - lost_one_off_swept_behind_a_campaign_backlog: a one-off message (POST /api/messages) whose
 *     priority job is lost while a 20 s campaign at 50/s waits in the sends queue: one-off logs
 *     wait only on the priority queue, so it is re-sent and final within seconds, long before
 *     the campaign ends, and no campaign log is re-sent.
 */
#include "dbpool.h"
#include "pipeharness.h"
#include "test.h"
#include "timeutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NCUST 1000

static pipeh h;
static char key[200];

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : 0;
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

/* Sum of the vendor.handed lines (second=S sends=N) of the simulator's log from offset off;
 * the largest one-second figure into *worst. */
static long handed(long off, long *worst)
{
    FILE *f = fopen(pipeh_logfile(&h, PH_VENDOR), "r");
    *worst = 0;
    if (!f)
        return 0;
    fseek(f, off, SEEK_SET);
    char line[1024];
    long sum = 0;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "vendor.handed");
        const char *pn = p ? strstr(p, "sends=") : NULL;
        if (!pn)
            continue;
        long c = strtol(pn + 6, NULL, 10);
        sum += c;
        if (c > *worst)
            *worst = c;
    }
    fclose(f);
    return sum;
}

/* Logs of campaign cid by their `resends` field: out[0] none, out[1] 1, out[2] more. */
static int count_resends(const bson_oid_t *cid, long long out[3])
{
    memset(out, 0, 3 * sizeof *out);
    mongoc_collection_t *c = pipeh_coll(&h, DB_LOGS);
    bson_t *f = BCON_NEW("campaign_id", BCON_OID(cid));
    bson_t *o = BCON_NEW("projection", "{", "resends", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, f, o, NULL);
    const bson_t *doc;
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        int64_t r = 0;
        if (bson_iter_init_find(&it, doc, "resends") && BSON_ITER_HOLDS_NUMBER(&it))
            r = bson_iter_as_int64(&it);
        out[r <= 0 ? 0 : r == 1 ? 1 : 2]++;
    }
    bson_error_t e;
    int rc = mongoc_cursor_error(cur, &e) ? -1 : 0;
    mongoc_cursor_destroy(cur);
    bson_destroy(f);
    bson_destroy(o);
    mongoc_collection_destroy(c);
    return rc;
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

/* POST a campaign with a rate; its id into out. */
static int post_campaign(const char *body, bson_oid_t *out)
{
    pipeh_answer a;
    if (pipeh_post(&h, "/api/campaigns", key, body, NULL, 10000L, &a) != 201)
        return -1;
    const char *p = strstr(a.body, "\"_id\":\"");
    if (!p || strlen(p + 7) < 24)
        return -1;
    char hex[25];
    memcpy(hex, p + 7, 24);
    hex[24] = '\0';
    if (!bson_oid_is_valid(hex, 24))
        return -1;
    bson_oid_init_from_string(out, hex);
    return 0;
}

TEST(rate_limited_not_swept)
{
    CHECK(pipeh_start_all(&h) == 0);
    long roff = file_size(pipeh_logfile(&h, PH_RECEIPTS));
    bson_oid_t cid;
    int64_t t0 = time_mono_ms();
    CHECK(post_campaign("{\"name\":\"slow\",\"rules\":{},\"rate_per_s\":50}", &cid) == 0);
    ph_campaign c;
    while ((pipeh_read(&h, &cid, &c) != 0 || c.sent + c.failed < 200) &&
           time_mono_ms() - t0 < 30000)
        pipeh_sleep_ms(20);
    CHECK_MSG(c.sent + c.failed >= 200 && c.sent + c.failed < 600, "applied %lld",
              (long long)(c.sent + c.failed));
    /* The vendor dies holding paced sends and stays away longer than the vendor timeout. */
    pipeh_kill(&h, PH_VENDOR, SIGKILL);
    pipeh_sleep_ms(4500);
    CHECK(pipeh_spawn(&h, PH_VENDOR, NULL) == 0);
    while ((pipeh_read(&h, &cid, &c) != 0 || c.sent + c.failed < 700) &&
           time_mono_ms() - t0 < 60000)
        pipeh_sleep_ms(20);
    pipeh_kill(&h, PH_RECEIPTS, SIGKILL);
    CHECK(pipeh_spawn(&h, PH_RECEIPTS, NULL) == 0);
    CHECK_INT_EQ(pipeh_wait_completed(&h, &cid, 90000, &c), 0);
    int64_t took = time_mono_ms() - t0;
    check_exact(&cid, NCUST, &c);
    long long rs[3];
    CHECK(count_resends(&cid, rs) == 0);
    int swept = count_in_log(pipeh_logfile(&h, PH_RECEIPTS), roff, "receipts.swept");
    int synthetic = count_in_log(pipeh_logfile(&h, PH_RECEIPTS), roff, "no delivery receipt");
    fprintf(stderr,
            "  %d messages at 50/s, vendor timeout 3 s: %lld ms; re-sent %lld, swept lines %d\n",
            NCUST, (long long)took, rs[1] + rs[2], swept);
    CHECK_MSG(took >= (NCUST - 10) * 1000 / 50, "took %lld ms: not rate limited", (long long)took);
    CHECK_INT_EQ(rs[1] + rs[2], 0);
    CHECK_INT_EQ(swept, 0);
    CHECK_INT_EQ(synthetic, 0);
}

TEST(lost_sends_resent_at_campaign_rate)
{
    CHECK(pipeh_start_all(&h) == 0);
    /* No vendor: the campaign's send jobs stay in the ready list, where they are lost. */
    pipeh_kill(&h, PH_VENDOR, SIGTERM);
    long long n = 0;
    for (int i = 0; i < NCUST; i++)
        n += pipeh_spend(i) >= 9000;
    bson_oid_t cid;
    CHECK(post_campaign("{\"name\":\"lost\",\"rules\":{\"min_spend\":9000},\"rate_per_s\":20}",
                        &cid) == 0);
    ph_campaign c;
    int64_t t0 = time_mono_ms();
    while ((pipeh_read(&h, &cid, &c) != 0 || !c.fanout_done || c.total != n) &&
           time_mono_ms() - t0 < 30000)
        pipeh_sleep_ms(20);
    CHECK_MSG(c.fanout_done && c.total == n, "fan-out of %lld logs not done", n);
    redisReply *r = rconn_command(h.rc, "DEL %s{sends}:ready", h.env.prefix);
    CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    freeReplyObject(r);
    long voff = file_size(pipeh_logfile(&h, PH_VENDOR));
    int64_t t1 = time_mono_ms();
    CHECK(pipeh_spawn(&h, PH_VENDOR, NULL) == 0);
    CHECK_INT_EQ(pipeh_wait_completed(&h, &cid, 60000, &c), 0);
    int64_t took = time_mono_ms() - t1;
    check_exact(&cid, n, &c);
    long long rs[3];
    CHECK(count_resends(&cid, rs) == 0);
    long worst = 0, sum = 0;
    int64_t until = time_mono_ms() + 5000;
    while ((sum = handed(voff, &worst)) < n && time_mono_ms() < until)
        pipeh_sleep_ms(100);
    fprintf(stderr,
            "  %lld lost sends: completed %lld ms after the vendor started; re-sent once %lld, "
            "more %lld; handed paced %ld, worst second %ld\n",
            n, (long long)took, rs[1], rs[2], sum, worst);
    CHECK_INT_EQ(rs[1], n);
    CHECK_INT_EQ(rs[2], 0);
    CHECK_INT_EQ(sum, n); /* every re-send went through the pacer: it carried the rate */
    CHECK_MSG(worst <= 22, "a second with %ld re-sends at 20/s", worst);
    CHECK_MSG(took >= 3000 + (n - 5) * 1000 / 20, "took %lld ms", (long long)took);
}

TEST(lost_one_off_swept_behind_a_campaign_backlog)
{
    CHECK(pipeh_start_all(&h) == 0);
    /* No vendor while the slow campaign fans out and the one-off message is lost. */
    pipeh_kill(&h, PH_VENDOR, SIGTERM);
    long roff = file_size(pipeh_logfile(&h, PH_RECEIPTS));
    bson_oid_t cid;
    CHECK(post_campaign("{\"name\":\"slow2\",\"rules\":{},\"rate_per_s\":50}", &cid) == 0);
    pipeh_answer ans;
    CHECK_INT_EQ(pipeh_post(&h, "/api/messages", key,
                            "{\"email\":\"c7@b.example\",\"message\":\"code 2\"}", NULL, 10000L,
                            &ans),
                 202);
    const char *p = strstr(ans.body, "\"log_id\":\"");
    CHECK(p && strlen(p + 10) >= 24);
    char lhex[25];
    memcpy(lhex, p + 10, 24);
    lhex[24] = '\0';
    CHECK(bson_oid_is_valid(lhex, 24));
    bson_oid_t lid;
    bson_oid_init_from_string(&lid, lhex);
    redisReply *r = rconn_command(h.rc, "DEL %s{priority}:ready", h.env.prefix);
    CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    freeReplyObject(r);
    int64_t t0 = time_mono_ms();
    CHECK(pipeh_spawn(&h, PH_VENDOR, NULL) == 0);
    /* The campaign's sends wait behind its rate for 20 s; the one-off log waits on nothing
     * and is re-sent after the vendor timeout (3 s) and a sweep or two. */
    char st[16];
    CHECK_INT_EQ(pipeh_wait_log_final(&h, &lid, 15000, st), 0);
    int64_t oneoff_ms = time_mono_ms() - t0;
    ph_campaign c;
    CHECK(pipeh_read(&h, &cid, &c) == 0);
    fprintf(stderr,
            "  lost one-off message final (%s) after %lld ms; campaign then at %lld of %d\n", st,
            (long long)oneoff_ms, (long long)(c.sent + c.failed), NCUST);
    CHECK_MSG(c.sent + c.failed < NCUST - 200, "the campaign was nearly done: proves nothing");
    CHECK_INT_EQ(pipeh_wait_completed(&h, &cid, 90000, &c), 0);
    check_exact(&cid, NCUST, &c);
    long long rs[3];
    CHECK(count_resends(&cid, rs) == 0);
    CHECK_INT_EQ(rs[1] + rs[2], 0);
    CHECK_INT_EQ(count_in_log(pipeh_logfile(&h, PH_RECEIPTS), roff, "resent=1 failed=0"), 1);
    CHECK_INT_EQ(count_in_log(pipeh_logfile(&h, PH_RECEIPTS), roff, "receipts.swept"), 1);
}

static const test_case cases[] = {TEST_ENTRY(rate_limited_not_swept),
                                  TEST_ENTRY(lost_sends_resent_at_campaign_rate),
                                  TEST_ENTRY(lost_one_off_swept_behind_a_campaign_backlog)};

int main(int argc, char **argv)
{
    if (pipeh_start(&h) != 0) {
        fprintf(stderr, "test_sweep: cannot start services\n");
        pipeh_stop(&h);
        return 1;
    }
    setenv("MINICRM_TEST_DIR", h.env.dir, 1);
    setenv("MINICRM_RECEIPTS_VENDOR_TIMEOUT_S", "3", 1);
    setenv("MINICRM_RECEIPTS_SWEEP_INTERVAL_S", "1", 1);
    /* Jobs of 50 sends: the paced campaign's work sits in the queue, deferred and in the
     * simulator's pacer at once. */
    setenv("MINICRM_WORKERS_BATCH_SIZE", "50", 1);
    setenv("MINICRM_VENDOR_SIM_BATCH_SIZE", "100", 1);
    if (pipeh_seed(&h, NCUST) != 0 || pipeh_make_key(&h, "staff", "sweep", key, sizeof key) != 0) {
        fprintf(stderr, "test_sweep: cannot seed or make a staff key\n");
        pipeh_stop(&h);
        return 1;
    }
    int rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    if (rc != 0)
        fprintf(stderr, "logs of the programs: %s\n", h.env.dir);
    pipeh_stop(&h);
    return rc;
}
