/*
 * Limits of MongoDB 4.4 that devdb reproduces so that code which would fail on a real server
 * fails in our tests first (devdb/README.md, "Where devdb differs from MongoDB 4.4"):
 *
 *   - find's blocking sort is held to internalQueryMaxBlockingSortMemoryUsageBytes (100 MiB by
 *     default, setParameter at run time): QueryExceededMemoryLimitNoDiskUseAllowed 292 unless
 *     allowDiskUse; a sort an index serves never fails; a top-k sort holds skip + limit docs;
 *   - maxTimeMS on find, count and aggregate: MaxTimeMSExpired 50, for a real slow scan and
 *     under the fail point maxTimeAlwaysTimeOut (configureFailPoint);
 *   - writeConcern {j: true} waits for the journal's fdatasync even with --sync never.
 *
 * Runs against a private devdb (testenv); the checks that need devdb's own knobs skip on an
 * external MongoDB.
 */
#include "test.h"
#include "testenv.h"

#include <mongoc/mongoc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static testenv env;
static char uri[600];

static mongoc_client_t *client(void)
{
    mongoc_client_t *cl = mongoc_client_new(uri);
    if (cl)
        mongoc_client_set_error_api(cl, MONGOC_ERROR_API_VERSION_2);
    return cl;
}

/* Runs a command given as JSON on database db; true on ok: 1. reply may be NULL. */
static bool cmdj(mongoc_client_t *cl, const char *db, const char *json, bson_t *reply,
                 bson_error_t *err)
{
    bson_t *cmd = bson_new_from_json((const uint8_t *)json, -1, err);
    if (!cmd) {
        if (reply)
            bson_init(reply);
        return false;
    }
    bson_t tmp;
    bool ok = mongoc_client_command_simple(cl, db, cmd, NULL, reply ? reply : &tmp, err);
    if (!reply)
        bson_destroy(&tmp);
    bson_destroy(cmd);
    return ok;
}

static void set_sort_limit(mongoc_client_t *cl, int64_t bytes)
{
    char j[200];
    bson_error_t err;
    snprintf(j, sizeof j,
             "{\"setParameter\": 1, \"internalQueryMaxBlockingSortMemoryUsageBytes\": "
             "{\"$numberLong\": \"%lld\"}}",
             (long long)bytes);
    CHECK_MSG(cmdj(cl, "admin", j, NULL, &err), "setParameter: %s", err.message);
}

/* Runs find with filter/opts (JSON) on coll, reads every document; returns the count, or -1
 * with err. */
static long find_all(mongoc_client_t *cl, const char *coll, const char *filter_json,
                     const char *opts_json, bson_error_t *err)
{
    mongoc_collection_t *c = mongoc_client_get_collection(cl, env.db_name, coll);
    bson_t *f = bson_new_from_json((const uint8_t *)filter_json, -1, err);
    bson_t *o = opts_json ? bson_new_from_json((const uint8_t *)opts_json, -1, err) : NULL;
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, f, o, NULL);
    const bson_t *d;
    long n = 0;
    while (mongoc_cursor_next(cur, &d))
        n++;
    if (mongoc_cursor_error(cur, err))
        n = -1;
    mongoc_cursor_destroy(cur);
    bson_destroy(f);
    if (o)
        bson_destroy(o);
    mongoc_collection_destroy(c);
    return n;
}

static void create_index(mongoc_client_t *cl, const char *coll, const char *key, const char *name)
{
    char j[400];
    bson_error_t err;
    snprintf(j, sizeof j,
             "{\"createIndexes\": \"%s\", \"indexes\": [{\"key\": %s, \"name\": \"%s\"}]}", coll,
             key, name);
    CHECK_MSG(cmdj(cl, env.db_name, j, NULL, &err), "createIndexes: %s", err.message);
}

#define SORT_MSG_100MB                                                                             \
    "Executor error during find command :: caused by :: Sort exceeded memory limit of 104857600 "  \
    "bytes, but did not opt in to external sorting."

TEST(blocking_sort_over_100mb_fails_unless_index_or_allow_disk_use)
{
    mongoc_client_t *cl = client();
    bson_error_t err;
    bson_t reply;
    CHECK_MSG(cmdj(cl, "admin",
                   "{\"getParameter\": 1, \"internalQueryMaxBlockingSortMemoryUsageBytes\": 1}",
                   &reply, &err),
              "%s", err.message);
    bson_iter_t it;
    CHECK(bson_iter_init_find(&it, &reply, "internalQueryMaxBlockingSortMemoryUsageBytes"));
    CHECK_INT_EQ(bson_iter_as_int64(&it), 104857600);
    bson_destroy(&reply);

    /* 7 documents of 15 MB: 105 MB, over the default limit, in seven inserts. */
    mongoc_collection_t *c = mongoc_client_get_collection(cl, env.db_name, "big");
    size_t len = 15u * 1024 * 1024;
    char *pad = malloc(len + 1);
    CHECK(pad != NULL);
    memset(pad, 'x', len);
    pad[len] = '\0';
    for (int i = 0; i < 7; i++) {
        bson_t d = BSON_INITIALIZER;
        BSON_APPEND_INT32(&d, "_id", i);
        BSON_APPEND_INT32(&d, "k", 7 - i);
        BSON_APPEND_UTF8(&d, "pad", pad);
        CHECK_MSG(mongoc_collection_insert_one(c, &d, NULL, NULL, &err), "%s", err.message);
        bson_destroy(&d);
    }
    free(pad);
    mongoc_collection_destroy(c);
    const char *proj = "{\"sort\": {\"k\": 1}, \"projection\": {\"k\": 1}";
    char opts[200];

    /* No index on k: a blocking sort of 105 MB. */
    snprintf(opts, sizeof opts, "%s}", proj);
    CHECK_INT_EQ(find_all(cl, "big", "{}", opts, &err), -1);
    CHECK_INT_EQ(err.code, 292);
    CHECK_STR_EQ(err.message, SORT_MSG_100MB);
    /* allowDiskUse opts in (4.4's find option). */
    snprintf(opts, sizeof opts, "%s, \"allowDiskUse\": true}", proj);
    CHECK_INT_EQ(find_all(cl, "big", "{}", opts, &err), 7);
    /* A top-k sort holds only skip + limit documents. */
    snprintf(opts, sizeof opts, "%s, \"limit\": 2}", proj);
    CHECK_INT_EQ(find_all(cl, "big", "{}", opts, &err), 2);
    /* A sort on _id is served by the _id index. */
    CHECK_INT_EQ(
        find_all(cl, "big", "{}", "{\"sort\": {\"_id\": -1}, \"projection\": {\"k\": 1}}", &err),
        7);
    /* The same sort through a matching index holds nothing. */
    create_index(cl, "big", "{\"k\": 1}", "k_1");
    snprintf(opts, sizeof opts, "%s}", proj);
    CHECK_INT_EQ(find_all(cl, "big", "{}", opts, &err), 7);
    CHECK_MSG(cmdj(cl, env.db_name, "{\"drop\": \"big\"}", NULL, &err), "%s", err.message);
    mongoc_client_destroy(cl);
}

TEST(lowered_sort_limit_tells_index_served_sorts_apart)
{
    if (env.devdb_port == 0)
        TEST_SKIP("external MongoDB: setParameter may not be permitted there");
    mongoc_client_t *cl = client();
    bson_error_t err;
    mongoc_collection_t *c = mongoc_client_get_collection(cl, env.db_name, "lim");
    char pad[1000];
    memset(pad, 'y', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    for (int i = 0; i < 200; i++) {
        bson_t d = BSON_INITIALIZER;
        BSON_APPEND_INT32(&d, "_id", i);
        BSON_APPEND_INT32(&d, "a", i % 2);
        BSON_APPEND_INT32(&d, "b", 1000 - i);
        BSON_APPEND_INT32(&d, "c", i % 7);
        BSON_APPEND_INT32(&d, "u", i * 3 % 200);
        BSON_APPEND_UTF8(&d, "pad", pad);
        CHECK_MSG(mongoc_collection_insert_one(c, &d, NULL, NULL, &err), "%s", err.message);
        bson_destroy(&d);
    }
    mongoc_collection_destroy(c);
    /* {a, c} first: an equality on a ties both compound indexes; the one that also gives the
     * sort order must win (MongoDB's plan ranking avoids the blocking sort). */
    create_index(cl, "lim", "{\"a\": 1, \"c\": 1}", "a_1_c_1");
    create_index(cl, "lim", "{\"a\": 1, \"b\": 1}", "a_1_b_1");
    set_sort_limit(cl, 64 * 1024); /* 200 documents of ~1 KB: 200 KB */

    CHECK_INT_EQ(find_all(cl, "lim", "{}", "{\"sort\": {\"u\": 1}}", &err), -1);
    CHECK_INT_EQ(err.code, 292);
    CHECK(strstr(err.message, "Sort exceeded memory limit of 65536 bytes") != NULL);
    CHECK_INT_EQ(find_all(cl, "lim", "{}", "{\"sort\": {\"u\": 1}, \"limit\": 10}", &err), 10);
    /* skip counts: the top-k sort keeps skip + limit documents */
    CHECK_INT_EQ(
        find_all(cl, "lim", "{}", "{\"sort\": {\"u\": 1}, \"skip\": 150, \"limit\": 10}", &err),
        -1);
    CHECK_INT_EQ(err.code, 292);
    CHECK_INT_EQ(find_all(cl, "lim", "{\"a\": 1}", "{\"sort\": {\"a\": 1, \"b\": 1}}", &err), 100);
    CHECK_INT_EQ(find_all(cl, "lim", "{}", "{\"sort\": {\"_id\": -1}, \"skip\": 150}", &err), 50);
    set_sort_limit(cl, 104857600);
    CHECK_INT_EQ(find_all(cl, "lim", "{}", "{\"sort\": {\"u\": 1}}", &err), 200);
    mongoc_client_destroy(cl);
}

/* find, count and aggregate with maxTimeMS under the fail point, and a fail point refused. */
TEST(max_time_ms_fail_point)
{
    if (env.devdb_port == 0)
        TEST_SKIP("external MongoDB: configureFailPoint needs enableTestCommands there");
    mongoc_client_t *cl = client();
    bson_error_t err;
    bson_t reply;
    CHECK_MSG(
        cmdj(cl, env.db_name, "{\"insert\": \"mt\", \"documents\": [{\"_id\": 1}]}", NULL, &err),
        "%s", err.message);
    CHECK_MSG(cmdj(cl, "admin",
                   "{\"configureFailPoint\": \"maxTimeAlwaysTimeOut\", \"mode\": \"alwaysOn\"}",
                   NULL, &err),
              "%s", err.message);
    static const char *const cmds[] = {
        "{\"find\": \"mt\", \"filter\": {}, \"maxTimeMS\": 5000}",
        "{\"count\": \"mt\", \"query\": {\"_id\": 1}, \"maxTimeMS\": 5000}",
        "{\"aggregate\": \"mt\", \"pipeline\": [], \"cursor\": {}, \"maxTimeMS\": 5000}",
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        CHECK(!cmdj(cl, env.db_name, cmds[i], &reply, &err));
        CHECK_INT_EQ(err.code, 50);
        CHECK_STR_EQ(err.message, "operation exceeded time limit");
        bson_iter_t it;
        CHECK(bson_iter_init_find(&it, &reply, "codeName"));
        CHECK_STR_EQ(bson_iter_utf8(&it, NULL), "MaxTimeMSExpired");
        bson_destroy(&reply);
    }
    /* without maxTimeMS the fail point does nothing */
    CHECK_MSG(cmdj(cl, env.db_name, "{\"find\": \"mt\", \"filter\": {}}", NULL, &err), "%s",
              err.message);
    CHECK_MSG(cmdj(cl, "admin",
                   "{\"configureFailPoint\": \"maxTimeAlwaysTimeOut\", \"mode\": \"off\"}", NULL,
                   &err),
              "%s", err.message);
    CHECK_MSG(cmdj(cl, env.db_name, cmds[0], NULL, &err), "%s", err.message);
    CHECK(!cmdj(cl, "admin", "{\"configureFailPoint\": \"noSuchPoint\", \"mode\": \"alwaysOn\"}",
                NULL, &err));
    CHECK(!cmdj(cl, env.db_name, "{\"find\": \"mt\", \"maxTimeMS\": -1}", NULL, &err));
    CHECK_INT_EQ(err.code, 2);
    mongoc_client_destroy(cl);
}

/* A real scan that outlives its maxTimeMS stops with 50; the same query without one answers. */
TEST(max_time_ms_stops_a_slow_scan)
{
    mongoc_client_t *cl = client();
    bson_error_t err;
    mongoc_collection_t *c = mongoc_client_get_collection(cl, env.db_name, "slow");
    enum { N = 200000, BATCH = 1000 };
    for (int i = 0; i < N / BATCH; i++) {
        bson_t *docs[BATCH];
        for (int j = 0; j < BATCH; j++) {
            docs[j] = bson_new();
            BSON_APPEND_INT32(docs[j], "_id", i * BATCH + j);
            BSON_APPEND_UTF8(docs[j], "name", "somebody with a rather long name");
        }
        CHECK_MSG(mongoc_collection_insert_many(c, (const bson_t **)docs, BATCH, NULL, NULL, &err),
                  "%s", err.message);
        for (int j = 0; j < BATCH; j++)
            bson_destroy(docs[j]);
    }
    mongoc_collection_destroy(c);
    const char *filter = "{\"name\": {\"$regex\": \"n.*o.*b.*o.*d.*y.*z\"}}";
    CHECK_INT_EQ(find_all(cl, "slow", filter, "{\"maxTimeMS\": 1}", &err), -1);
    CHECK_INT_EQ(err.code, 50);
    CHECK_STR_EQ(err.message, "operation exceeded time limit");
    char cnt[300];
    snprintf(cnt, sizeof cnt, "{\"count\": \"slow\", \"query\": %s, \"maxTimeMS\": 1}", filter);
    CHECK(!cmdj(cl, env.db_name, cnt, NULL, &err));
    CHECK_INT_EQ(err.code, 50);
    CHECK_INT_EQ(find_all(cl, "slow", filter, "{\"maxTimeMS\": 60000}", &err), 0);
    CHECK_INT_EQ(find_all(cl, "slow", filter, NULL, &err), 0);
    CHECK_MSG(cmdj(cl, env.db_name, "{\"drop\": \"slow\"}", NULL, &err), "%s", err.message);
    mongoc_client_destroy(cl);
}

static int64_t commit_syncs(mongoc_client_t *cl)
{
    bson_t reply;
    bson_error_t err;
    int64_t v = -1;
    if (cmdj(cl, "admin", "{\"serverStatus\": 1}", &reply, &err)) {
        bson_iter_t it, sub;
        if (bson_iter_init(&it, &reply) &&
            bson_iter_find_descendant(&it, "devdb.journalCommitSyncs", &sub))
            v = bson_iter_as_int64(&sub);
    }
    bson_destroy(&reply);
    return v;
}

/* With --sync never nothing waits for the disk, except a write whose concern says j: true. */
TEST(journal_write_concern_waits_for_fsync)
{
    if (env.devdb_port == 0)
        TEST_SKIP("MongoDB is external (MINICRM_TEST_MONGO_URI): no devdb of ours");
    char dir[600], portbuf[16], log[700];
    snprintf(dir, sizeof dir, "%s/jdata", env.dir);
    int port = testenv_free_port();
    snprintf(portbuf, sizeof portbuf, "%d", port);
    snprintf(log, sizeof log, "%s/devdb-j.log", env.dir);
    char *argv[] = {(char *)testenv_bin("minicrm-devdb"),
                    "--port",
                    portbuf,
                    "--bind",
                    "127.0.0.1",
                    "--dbpath",
                    dir,
                    "--sync",
                    "never",
                    NULL};
    pid_t pid = testenv_spawn(argv, log);
    CHECK(pid > 0);
    CHECK(testenv_wait_port(port, 10000) == 0);
    char saved[600];
    snprintf(saved, sizeof saved, "%s", uri);
    snprintf(uri, sizeof uri, "mongodb://127.0.0.1:%d/%s", port, env.db_name);
    mongoc_client_t *cl = client();
    bson_error_t err;
    int64_t s0 = commit_syncs(cl);
    CHECK(s0 >= 0);
    CHECK_MSG(
        cmdj(cl, env.db_name, "{\"insert\": \"j\", \"documents\": [{\"_id\": 1}]}", NULL, &err),
        "%s", err.message);
    CHECK_MSG(
        cmdj(cl, env.db_name,
             "{\"insert\": \"j\", \"documents\": [{\"_id\": 2}], \"writeConcern\": {\"w\": 1}}",
             NULL, &err),
        "%s", err.message);
    CHECK_INT_EQ(commit_syncs(cl), s0);
    CHECK_MSG(cmdj(cl, env.db_name,
                   "{\"insert\": \"j\", \"documents\": [{\"_id\": 3}], \"writeConcern\": {\"j\": "
                   "true}}",
                   NULL, &err),
              "%s", err.message);
    CHECK_INT_EQ(commit_syncs(cl), s0 + 1);
    CHECK_MSG(cmdj(cl, env.db_name,
                   "{\"update\": \"j\", \"updates\": [{\"q\": {\"_id\": 3}, \"u\": {\"$set\": "
                   "{\"x\": 1}}}], \"writeConcern\": {\"w\": \"majority\", \"j\": true}}",
                   NULL, &err),
              "%s", err.message);
    CHECK_INT_EQ(commit_syncs(cl), s0 + 2);
    /* w: "majority" alone syncs too, as on a standalone mongod; with j: false it does not */
    CHECK_MSG(cmdj(cl, env.db_name,
                   "{\"insert\": \"j\", \"documents\": [{\"_id\": 4}], \"writeConcern\": {\"w\": "
                   "\"majority\"}}",
                   NULL, &err),
              "%s", err.message);
    CHECK_INT_EQ(commit_syncs(cl), s0 + 3);
    CHECK_MSG(cmdj(cl, env.db_name,
                   "{\"insert\": \"j\", \"documents\": [{\"_id\": 5}], \"writeConcern\": {\"w\": "
                   "\"majority\", \"j\": false}}",
                   NULL, &err),
              "%s", err.message);
    CHECK_INT_EQ(commit_syncs(cl), s0 + 3);
    /* a read with a j: true concern has nothing to sync */
    CHECK_MSG(cmdj(cl, env.db_name, "{\"find\": \"j\", \"filter\": {}}", NULL, &err), "%s",
              err.message);
    CHECK_INT_EQ(commit_syncs(cl), s0 + 3);
    mongoc_client_destroy(cl);
    testenv_kill_wait(pid, SIGTERM, 10000);
    snprintf(uri, sizeof uri, "%s", saved);
    /* in memory, j: true is accepted (nothing to wait for) */
    cl = client();
    CHECK_MSG(cmdj(cl, env.db_name,
                   "{\"insert\": \"j\", \"documents\": [{\"_id\": 1}], \"writeConcern\": {\"j\": "
                   "true}}",
                   NULL, &err),
              "%s", err.message);
    mongoc_client_destroy(cl);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        TEST_ENTRY(blocking_sort_over_100mb_fails_unless_index_or_allow_disk_use),
        TEST_ENTRY(lowered_sort_limit_tells_index_served_sorts_apart),
        TEST_ENTRY(max_time_ms_fail_point),
        TEST_ENTRY(max_time_ms_stops_a_slow_scan),
        TEST_ENTRY(journal_write_concern_waits_for_fsync),
    };
    if (testenv_start(&env, TESTENV_DEVDB) != 0)
        return 1;
    mongoc_init();
    snprintf(uri, sizeof uri, "%s", env.mongo_uri);
    int rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    mongoc_cleanup();
    testenv_stop(&env);
    return rc;
}
