/*
 * test_fanout_plan: the fan-out's audience cursor (rules filter, _id > checkpoint, sort _id)
 * never needs an in-memory sort. With devdb's blocking-sort limit lowered to 1 byte
 * (internalQueryMaxBlockingSortMemoryUsageBytes, as on MongoDB), a sort that is not
 * index-served fails with 292; the same query without the fan-out's hint is planned on
 * total_spend_1 (the rule's bounds) and does fail, the fan-out (hint {_id: 1}) writes every
 * log of the audience.
 */
#include "dbpool.h"
#include "pipeharness.h"
#include "test.h"

#include <string.h>
#include <time.h>

static pipeh h;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

TEST(audience_cursor_is_index_served)
{
    if (h.env.devdb_port == 0)
        TEST_SKIP("external MongoDB: lowering its sort limit would disturb other users");
    enum { N = 3000 };
    CHECK(pipeh_seed(&h, N) == 0);
    long long want = 0;
    for (int i = 0; i < N; i++)
        want += pipeh_spend(i) >= 5000;
    bson_error_t err;
    bson_t *cmd = BCON_NEW("setParameter", BCON_INT32(1),
                           "internalQueryMaxBlockingSortMemoryUsageBytes", BCON_INT64(1));
    CHECK_MSG(mongoc_client_command_simple(h.mc, "admin", cmd, NULL, NULL, &err), "%s",
              err.message);
    bson_destroy(cmd);

    /* The planner's own choice for the rule: bounds on total_spend_1, then a blocking sort. */
    mongoc_collection_t *c = pipeh_coll(&h, DB_CUSTOMERS);
    bson_t *f = BCON_NEW("total_spend", "{", "$gte", BCON_DOUBLE(5000), "}");
    bson_t *o = BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, f, o, NULL);
    const bson_t *d;
    while (mongoc_cursor_next(cur, &d))
        ;
    CHECK(mongoc_cursor_error(cur, &err));
    CHECK_INT_EQ(err.code, 292);
    mongoc_cursor_destroy(cur);
    bson_destroy(o);
    bson_destroy(f);
    mongoc_collection_destroy(c);

    static const char *const procs[] = {"--procs", "1", NULL};
    CHECK(pipeh_spawn(&h, PH_WORKER, procs) == 0);
    bson_oid_t cid;
    CHECK(pipeh_campaign(&h, "plan", "{\"min_spend\": 5000}", &cid) == 0);
    ph_campaign st = {0};
    for (int i = 0; i < 600 && !st.fanout_done; i++) {
        CHECK(pipeh_read(&h, &cid, &st) == 0);
        if (!st.fanout_done)
            sleep_ms(50);
    }
    CHECK_MSG(st.fanout_done, "fan-out not done (status %s, total %lld); see %s", st.status,
              (long long)st.total, pipeh_logfile(&h, PH_WORKER));
    long long by[4];
    CHECK_INT_EQ(pipeh_count_logs(&h, &cid, by), want);
    CHECK_INT_EQ(st.total, want);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        TEST_ENTRY(audience_cursor_is_index_served),
    };
    if (pipeh_start(&h) != 0)
        return 1;
    int rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    pipeh_stop(&h);
    return rc;
}
