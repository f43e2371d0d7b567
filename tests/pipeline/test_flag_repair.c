/*
 * test_flag_repair: minicrm-worker's repair of the pause/cancel flags (workers/fanout.c
 * fanout_repair_flags, lib/campctl's streamed repair) with more campaigns than one chunk of
 * the repair holds, against a private redis-server and devdb. The campaigns are written
 * straight into MongoDB and flagged with lib/campctl as the API's moves do.
 *
 *   - 300 PAUSED campaigns, one with held sends: a repair keeps every paused flag in every key
 *     set and the held sends stay held (it used to read only 256 and drop the flags of the
 *     rest, moving their held sends back);
 *   - a paused flag lost in Redis comes back (proof a repair ran);
 *   - a campaign whose resume stopped after its MongoDB write (SENDING in MongoDB, still
 *     flagged paused in Redis, a held job) loses its flag and its held job goes back to ready:
 *     the drop still happens, with MongoDB's complete list;
 *   - 300 CANCELLED campaigns cancelled an hour ago: the lost cancelled flags of those beyond
 *     the first 256 come back; one cancelled 30 days ago (beyond campctl's window) does not;
 *   - kill -9 of the worker, flags lost again, a new worker: all back, nothing dropped.
 * test_flag_repair_shards6 runs the same with queue.shards=6 (every key set checked).
 */
#include "campctl.h"
#include "dbpool.h"
#include "pipeharness.h"
#include "test.h"
#include "timeutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NPAUSED = 300, NCANCELLED = 300, LOST_FROM = 260 };

static pipeh h;
static char paused[NPAUSED][25], cancelled[NCANCELLED][25], resumed[25], old_cancel[25];

/* The key sets: shards 0 .. S-1, then the unsharded one (-1). */
static int nsets(void)
{
    int s = queue_shards_for(QUEUE_SENDS, NULL);
    return s > 1 ? s + 1 : 1;
}

static void setkey(char *buf, size_t n, int i, const char *suffix)
{
    int s = queue_shards_for(QUEUE_SENDS, NULL);
    if (s > 1 && i < s)
        snprintf(buf, n, "%s{sends:%d}:%s", h.env.prefix, i, suffix);
    else
        snprintf(buf, n, "%s{sends}:%s", h.env.prefix, suffix);
}

static long long int_cmd(const char *fmt, const char *a, const char *b)
{
    return testenv_redis_int(h.rc, fmt, a, b);
}

/* In how many key sets `set` ("paused", "cancelled") names cid. */
static int flagged(const char *set, const char *cid)
{
    int n = 0;
    char k[300];
    for (int i = 0; i < nsets(); i++) {
        setkey(k, sizeof k, i, set);
        n += int_cmd("SISMEMBER %s %s", k, cid) == 1;
    }
    return n;
}

/* Remove cid from `set` in every key set (Redis lost it). */
static void lose(const char *set, const char *cid)
{
    char k[300];
    for (int i = 0; i < nsets(); i++) {
        setkey(k, sizeof k, i, set);
        int_cmd("SREM %s %s", k, cid);
    }
}

/* Insert a campaign document in `status` (cancelledAt when cancelled_at > 0); its id into hex. */
static int insert(const char *status, int64_t cancelled_at, char hex[25])
{
    bson_oid_t oid;
    bson_oid_init(&oid, NULL);
    int64_t now = time_now_ms();
    bson_t *doc = BCON_NEW("_id", BCON_OID(&oid), "name", BCON_UTF8("repair"), "rules", "{",
                           "min_spend", BCON_INT32(1), "}", "message", BCON_NULL, "tags", "[", "]",
                           "status", BCON_UTF8(status), "total", BCON_INT64(0), "pending",
                           BCON_INT64(0), "sent", BCON_INT64(0), "failed", BCON_INT64(0),
                           "createdAt", BCON_DATE_TIME(now), "updatedAt", BCON_DATE_TIME(now));
    if (cancelled_at > 0)
        BSON_APPEND_DATE_TIME(doc, "cancelledAt", cancelled_at);
    mongoc_collection_t *c = pipeh_coll(&h, DB_CAMPAIGNS);
    bson_error_t e;
    bool ok = mongoc_collection_insert_one(c, doc, NULL, NULL, &e);
    mongoc_collection_destroy(c);
    bson_destroy(doc);
    if (!ok)
        fprintf(stderr, "test_flag_repair: insert: %s\n", e.message);
    bson_oid_to_string(&oid, hex);
    return ok ? 0 : -1;
}

static long long llen(const char *suffix)
{
    char k[300];
    snprintf(k, sizeof k, "%s{sends}:%s", h.env.prefix, suffix);
    return int_cmd("LLEN %s", k, NULL);
}

/* Poll (50 ms) until every key set names cid in `set`, at most timeout_ms. */
static bool wait_flagged(const char *set, const char *cid, int timeout_ms)
{
    int64_t end = time_mono_ms() + timeout_ms;
    while (flagged(set, cid) != nsets()) {
        if (time_mono_ms() > end)
            return false;
        pipeh_sleep_ms(50);
    }
    return true;
}

/* Every paused flag in every set, the held job of paused[NPAUSED-1] still held. */
static void check_paused_kept(void)
{
    int missing = 0;
    for (int i = 0; i < NPAUSED; i++)
        missing += flagged("paused", paused[i]) != nsets();
    CHECK_MSG(missing == 0, "%d of %d PAUSED campaigns lost a paused flag; see %s", missing,
              NPAUSED, pipeh_logfile(&h, PH_WORKER));
    char held[100];
    snprintf(held, sizeof held, "held:%s", paused[NPAUSED - 1]);
    CHECK_INT_EQ(llen(held), 1);
}

TEST(repair_streams_every_paused_and_recent_cancelled)
{
    char err[256], k[300];
    long long ep;
    int64_t now = time_now_ms();
    CHECK(insert("CANCELLED", now - 30LL * 24 * 3600 * 1000, old_cancel) == 0);
    for (int i = 0; i < NPAUSED; i++) {
        CHECK(insert("PAUSED", 0, paused[i]) == 0);
        CHECK_INT_EQ(campctl_pause(h.rc, h.env.prefix, paused[i], &ep, err, sizeof err), 0);
    }
    for (int i = 0; i < NCANCELLED; i++) {
        CHECK(insert("CANCELLED", now - 3600 * 1000, cancelled[i]) == 0);
        CHECK_INT_EQ(campctl_cancel(h.rc, h.env.prefix, cancelled[i], &ep, NULL, err, sizeof err),
                     0);
    }
    CHECK_INT_EQ(campctl_cancel(h.rc, h.env.prefix, old_cancel, &ep, NULL, err, sizeof err), 0);
    /* A resume that stopped after MongoDB: SENDING there, still paused here with a held job. */
    CHECK(insert("SENDING", 0, resumed) == 0);
    CHECK_INT_EQ(campctl_pause(h.rc, h.env.prefix, resumed, &ep, err, sizeof err), 0);
    char held[100];
    snprintf(held, sizeof held, "held:%s", resumed);
    setkey(k, sizeof k, nsets() - 1, held);
    CHECK_INT_EQ(int_cmd("LPUSH %s %s", k, "{\"resumed\":1}"), 1);
    snprintf(held, sizeof held, "held:%s", paused[NPAUSED - 1]);
    setkey(k, sizeof k, nsets() - 1, held);
    CHECK_INT_EQ(int_cmd("LPUSH %s %s", k, "{\"paused\":1}"), 1);
    long long ready0 = llen("ready");

    /* Redis loses flags: a paused one among the first, the cancelled ones beyond 256 and the
     * one cancelled long ago. */
    lose("paused", paused[5]);
    for (int i = LOST_FROM; i < NCANCELLED; i++)
        lose("cancelled", cancelled[i]);
    lose("cancelled", old_cancel);

    static const char *const procs[] = {"--procs", "1", NULL};
    CHECK(pipeh_spawn(&h, PH_WORKER, procs) == 0);
    CHECK_MSG(wait_flagged("paused", paused[5], 20000), "no repair ran; see %s",
              pipeh_logfile(&h, PH_WORKER));
    check_paused_kept();
    /* The interrupted resume: flag dropped everywhere, its held job back in ready. */
    int64_t end = time_mono_ms() + 10000;
    while (flagged("paused", resumed) > 0 && time_mono_ms() < end)
        pipeh_sleep_ms(50);
    CHECK_INT_EQ(flagged("paused", resumed), 0);
    snprintf(held, sizeof held, "held:%s", resumed);
    CHECK_INT_EQ(llen(held), 0);
    CHECK_INT_EQ(llen("ready") - ready0, 1);
    for (int i = LOST_FROM; i < NCANCELLED; i++)
        CHECK_MSG(wait_flagged("cancelled", cancelled[i], 10000),
                  "cancelled flag of campaign %d (of %d) not restored", i, NCANCELLED);
    CHECK_INT_EQ(flagged("cancelled", old_cancel), 0);

    /* kill -9 of the worker, Redis loses flags again, a new worker repairs them. */
    pipeh_kill(&h, PH_WORKER, SIGKILL);
    lose("paused", paused[NPAUSED - 1]);
    lose("paused", paused[0]);
    lose("cancelled", cancelled[NCANCELLED - 1]);
    CHECK(pipeh_spawn(&h, PH_WORKER, procs) == 0);
    CHECK(wait_flagged("paused", paused[NPAUSED - 1], 20000));
    CHECK(wait_flagged("paused", paused[0], 10000));
    CHECK(wait_flagged("cancelled", cancelled[NCANCELLED - 1], 10000));
    check_paused_kept();
    CHECK_INT_EQ(flagged("paused", resumed), 0);
    CHECK_INT_EQ(llen("ready") - ready0, 1);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        TEST_ENTRY(repair_streams_every_paused_and_recent_cancelled),
    };
    /* MINICRM_QUEUE_SHARDS (the worker reads it too): this process's key sets. */
    pipeh_use_shards_env();
    if (pipeh_start(&h) != 0) {
        pipeh_stop(&h);
        return 1;
    }
    int rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    pipeh_stop(&h);
    return rc;
}
