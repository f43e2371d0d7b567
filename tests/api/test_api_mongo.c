/*
 * test_api_mongo: what minicrm-api must do so that it behaves on a real MongoDB 4.4 as it does
 * on devdb (issue "Real MongoDB: what devdb cannot show yet"). A real minicrm-api on private
 * redis-server + devdb (apitest), MongoDB's own knobs on devdb to make the failures cheap:
 *
 *   list_sorts_are_index_served        with the blocking-sort limit lowered to 1 byte
 *                                      (internalQueryMaxBlockingSortMemoryUsageBytes), every list
 *                                      route still answers: each sort is served by an index;
 *                                      without the orders index the same route fails
 *   read_past_max_time_is_504          under the fail point maxTimeAlwaysTimeOut every API read
 *                                      (lists, counts, by id) answers a JSON 504
 *   counts_say_what_they_are           /communication's total is marked inexact; an audience
 *                                      of every customer is counted exactly
 *   index_builder_tries_every_index    a second minicrm-api on a database with duplicate
 *                                      emails (11000) and two conflicting indexes (85, 86):
 *                                      every other index exists, each failure is logged once
 *                                      with its reason, nothing is retried, the superseded
 *                                      index is dropped; customers stored without an e-mail
 *                                      domain get theirs from the start-up back-fill
 *   durable_write_concern_modes        mongo.write_concern resolution (in process)
 */
#include "apitest.h"
#include "dbpool.h"
#include "test.h"

#include <mongoc/mongoc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static apitest T;

static int req(apitest_resp *r, const char *method, const char *path, const char *body)
{
    const char *h[] = {apitest_admin_auth(&T), NULL};
    return apitest_request(&T, method, path, h, body, body ? strlen(body) : 0, r);
}

/* Status of one admin request; the body's JSON (if any) into *json when json is non-NULL
 * (caller decrefs). */
static long call(const char *method, const char *path, const char *body, json_t **json)
{
    apitest_resp r;
    if (req(&r, method, path, body) != 0)
        return -1;
    long st = r.status;
    if (json) {
        *json = r.json;
        r.json = NULL;
    }
    apitest_resp_release(&r);
    return st;
}

static mongoc_client_t *client_for(const char *uri)
{
    mongoc_client_t *cl = mongoc_client_new(uri);
    if (cl)
        mongoc_client_set_error_api(cl, MONGOC_ERROR_API_VERSION_2);
    return cl;
}

static bool cmdj(mongoc_client_t *cl, const char *db, const char *json, bson_error_t *err)
{
    bson_t *cmd = bson_new_from_json((const uint8_t *)json, -1, err);
    if (!cmd)
        return false;
    bson_t reply;
    bool ok = mongoc_client_command_simple(cl, db, cmd, NULL, &reply, err);
    bson_destroy(&reply);
    bson_destroy(cmd);
    return ok;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static bool has_index(mongoc_client_t *cl, const char *db, const char *coll, const char *name)
{
    mongoc_collection_t *c = mongoc_client_get_collection(cl, db, coll);
    mongoc_cursor_t *cur = mongoc_collection_find_indexes_with_opts(c, NULL);
    const bson_t *doc;
    bool found = false;
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, doc, "name") && BSON_ITER_HOLDS_UTF8(&it) &&
            !strcmp(bson_iter_utf8(&it, NULL), name))
            found = true;
    }
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(c);
    return found;
}

/* Poll until the API built its indexes (the campaigns one comes last). */
static bool wait_index(mongoc_client_t *cl, const char *db, const char *coll, const char *name)
{
    for (int i = 0; i < 400; i++) {
        if (has_index(cl, db, coll, name))
            return true;
        sleep_ms(50);
    }
    return false;
}

static void set_sort_limit(mongoc_client_t *cl, long long bytes)
{
    char j[200];
    bson_error_t err;
    snprintf(j, sizeof j,
             "{\"setParameter\": 1, \"internalQueryMaxBlockingSortMemoryUsageBytes\": "
             "{\"$numberLong\": \"%lld\"}}",
             bytes);
    CHECK_MSG(cmdj(cl, "admin", j, &err), "setParameter: %s", err.message);
}

static size_t array_len(json_t *j, const char *field)
{
    json_t *a = field ? json_object_get(j, field) : j;
    return json_is_array(a) ? json_array_size(a) : (size_t)-1;
}

/* Seeds 3 customers, 3 orders, 2 campaigns and 3 logs through the API (logs directly: no
 * worker runs here). Writes the first campaign's hex id to camp. */
static void seed(mongoc_client_t *cl, char camp[25])
{
    char cust[3][25], body[300];
    for (int i = 0; i < 3; i++) {
        json_t *j = NULL;
        snprintf(body, sizeof body, "{\"name\": \"C%d\", \"email\": \"c%d-%d@example.com\"}", i, i,
                 (int)getpid());
        CHECK_INT_EQ(call("POST", "/customers", body, &j), 201);
        const char *id = json_string_value(json_object_get(json_object_get(j, "customer"), "_id"));
        CHECK(id != NULL);
        snprintf(cust[i], 25, "%s", id);
        json_decref(j);
        snprintf(body, sizeof body, "{\"customer_id\": \"%s\", \"amount\": %d}", cust[i], 10 + i);
        CHECK_INT_EQ(call("POST", "/orders", body, NULL), 201);
    }
    for (int i = 0; i < 2; i++) {
        json_t *j = NULL;
        snprintf(body, sizeof body, "{\"name\": \"camp %d\", \"rules\": {}}", i);
        CHECK_INT_EQ(call("POST", "/api/campaigns", body, &j), 201);
        const char *id = json_string_value(json_object_get(json_object_get(j, "campaign"), "_id"));
        CHECK(id != NULL);
        if (i == 0)
            snprintf(camp, 25, "%s", id);
        json_decref(j);
    }
    mongoc_collection_t *logs =
        mongoc_client_get_collection(cl, T.env.db_name, "communication_logs1");
    bson_oid_t cid;
    bson_oid_init_from_string(&cid, camp);
    for (int i = 0; i < 3; i++) {
        bson_oid_t cu;
        bson_oid_init_from_string(&cu, cust[i]);
        bson_t *d = BCON_NEW("campaign_id", BCON_OID(&cid), "customer_id", BCON_OID(&cu), "status",
                             BCON_UTF8("PENDING"), "message", BCON_UTF8("hi"), "createdAt",
                             BCON_DATE_TIME(1700000000000 + i), "updatedAt",
                             BCON_DATE_TIME(1700000000000 + i));
        bson_error_t err;
        CHECK_MSG(mongoc_collection_insert_one(logs, d, NULL, NULL, &err), "%s", err.message);
        bson_destroy(d);
    }
    mongoc_collection_destroy(logs);
}

TEST(list_sorts_are_index_served)
{
    CHECK(apitest_ensure(&T, NULL) == 0);
    if (T.env.devdb_port == 0)
        TEST_SKIP("external MongoDB: lowering its sort limit would disturb other users");
    mongoc_client_t *cl = client_for(T.env.mongo_uri);
    CHECK(wait_index(cl, T.env.db_name, "campaigns1", "createdAt_-1__id_-1"));
    char camp[25], path[200];
    seed(cl, camp);
    /* Every blocking sort now fails (292): only index-served sorts answer. */
    set_sort_limit(cl, 1);
    json_t *j = NULL;
    CHECK_INT_EQ(call("GET", "/orders?limit=2&page=2", NULL, &j), 200);
    CHECK_INT_EQ(array_len(j, NULL), 1);
    json_decref(j);
    CHECK_INT_EQ(call("GET", "/communication?limit=2&page=1", NULL, &j), 200);
    CHECK_INT_EQ(array_len(j, "logs"), 2);
    json_decref(j);
    CHECK_INT_EQ(call("GET", "/api/campaigns?limit=1&page=2", NULL, &j), 200);
    CHECK_INT_EQ(array_len(j, NULL), 1);
    json_decref(j);
    CHECK_INT_EQ(call("GET", "/api/campaigns?tag=camp", NULL, &j), 200);
    CHECK_INT_EQ(array_len(j, NULL), 2);
    json_decref(j);
    snprintf(path, sizeof path, "/api/campaigns/%s/logs?limit=2&page=2", camp);
    CHECK_INT_EQ(call("GET", path, NULL, &j), 200);
    CHECK_INT_EQ(array_len(j, NULL), 1);
    json_decref(j);
    CHECK_INT_EQ(call("GET", "/customers?limit=2&page=2", NULL, &j), 200);
    CHECK_INT_EQ(array_len(j, NULL), 1);
    json_decref(j);
    /* The check can fail: without its index, /orders sorts in memory and MongoDB refuses. */
    bson_error_t err;
    CHECK_MSG(cmdj(cl, T.env.db_name,
                   "{\"dropIndexes\": \"orders1\", \"index\": \"createdAt_-1__id_-1\"}", &err),
              "%s", err.message);
    CHECK_INT_EQ(call("GET", "/orders", NULL, NULL), 500);
    CHECK_MSG(cmdj(cl, T.env.db_name,
                   "{\"createIndexes\": \"orders1\", \"indexes\": [{\"key\": {\"createdAt\": -1, "
                   "\"_id\": -1}, \"name\": \"createdAt_-1__id_-1\"}]}",
                   &err),
              "%s", err.message);
    CHECK_INT_EQ(call("GET", "/orders", NULL, NULL), 200);
    set_sort_limit(cl, 104857600);
    mongoc_client_destroy(cl);
}

TEST(read_past_max_time_is_504)
{
    CHECK(apitest_ensure(&T, NULL) == 0);
    if (T.env.devdb_port == 0)
        TEST_SKIP("external MongoDB: configureFailPoint needs enableTestCommands");
    mongoc_client_t *cl = client_for(T.env.mongo_uri);
    bson_error_t err;
    json_t *j = NULL;
    CHECK_INT_EQ(call("GET", "/orders?limit=1", NULL, &j), 200);
    const char *oid = json_string_value(
        json_object_get(json_object_get(json_array_get(j, 0), "customer_id"), "_id"));
    char path[100];
    snprintf(path, sizeof path, "/customers/%s", oid ? oid : "000000000000000000000000");
    bool had_oid = oid != NULL;
    json_decref(j);
    CHECK_MSG(cmdj(cl, "admin",
                   "{\"configureFailPoint\": \"maxTimeAlwaysTimeOut\", \"mode\": \"alwaysOn\"}",
                   &err),
              "%s", err.message);
    static const char *const paths[] = {"/orders", "/customers", "/communication",
                                        "/api/campaigns"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        j = NULL;
        CHECK_INT_EQ(call("GET", paths[i], NULL, &j), 504);
        const char *e = json_string_value(json_object_get(j, "error"));
        CHECK_MSG(e && strstr(e, "timed out"), "%s: %s", paths[i], e ? e : "(no error)");
        json_decref(j);
    }
    CHECK_INT_EQ(call("GET", path, NULL, NULL), 504);
    CHECK_INT_EQ(call("POST", "/api/campaigns/preview", "{\"rules\": {}}", NULL), 504);
    CHECK_MSG(cmdj(cl, "admin",
                   "{\"configureFailPoint\": \"maxTimeAlwaysTimeOut\", \"mode\": \"off\"}", &err),
              "%s", err.message);
    CHECK_INT_EQ(call("GET", "/orders", NULL, NULL), 200);
    long st = call("GET", path, NULL, NULL);
    CHECK_MSG(st == 200 || (st == 404 && !had_oid), "%ld", st);
    mongoc_client_destroy(cl);
}

TEST(counts_say_what_they_are)
{
    CHECK(apitest_ensure(&T, NULL) == 0);
    json_t *j = NULL;
    CHECK_INT_EQ(call("GET", "/communication", NULL, &j), 200);
    CHECK(json_is_false(json_object_get(j, "total_exact")));
    CHECK(json_is_integer(json_object_get(j, "total")));
    json_decref(j);
    mongoc_client_t *cl = client_for(T.env.mongo_uri);
    mongoc_collection_t *c = mongoc_client_get_collection(cl, T.env.db_name, "customer1");
    bson_error_t err;
    bson_t all = BSON_INITIALIZER;
    int64_t n = mongoc_collection_count_documents(c, &all, NULL, NULL, NULL, &err);
    mongoc_collection_destroy(c);
    mongoc_client_destroy(cl);
    CHECK_MSG(n >= 0, "%s", err.message);
    CHECK_INT_EQ(call("POST", "/api/campaigns/preview", "{\"rules\": {}}", &j), 200);
    CHECK_INT_EQ(json_integer_value(json_object_get(j, "audience_size")), n);
    json_decref(j);
}

/* Lines of `path` containing `needle`. */
static int count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}

static bool log_has(const char *path, const char *a, const char *b)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, a) && strstr(line, b);
    fclose(f);
    return found;
}

TEST(index_builder_tries_every_index)
{
    CHECK(apitest_ensure(&T, NULL) == 0);
    char db[64], uri[700], log[400], port[16];
    snprintf(db, sizeof db, "%s_idx", T.env.db_name);
    /* the env's URI with the other database */
    snprintf(uri, sizeof uri, "%s", T.env.mongo_uri);
    char *slash = strrchr(uri, '/');
    CHECK(slash != NULL);
    snprintf(slash + 1, sizeof uri - (size_t)(slash + 1 - uri), "%s", db);
    mongoc_client_t *cl = client_for(uri);
    bson_error_t err;
    /* duplicate emails: the unique email_1 cannot exist (11000) */
    CHECK_MSG(cmdj(cl, db,
                   "{\"insert\": \"customer1\", \"documents\": [{\"email\": \"same@x.io\"}, "
                   "{\"email\": \"same@x.io\"}]}",
                   &err),
              "%s", err.message);
    /* orders: the name customer_id_1 taken by other keys (86) */
    CHECK_MSG(cmdj(cl, db,
                   "{\"createIndexes\": \"orders1\", \"indexes\": [{\"key\": {\"customer_id\": "
                   "-1}, \"name\": \"customer_id_1\"}]}",
                   &err),
              "%s", err.message);
    /* logs: {campaign_id, status} under another name with other options (85) */
    CHECK_MSG(cmdj(cl, db,
                   "{\"createIndexes\": \"communication_logs1\", \"indexes\": [{\"key\": "
                   "{\"campaign_id\": 1, \"status\": 1}, \"name\": \"cs\", \"sparse\": true}]}",
                   &err),
              "%s", err.message);
    /* campaigns: the index of an older version, superseded by {createdAt: -1, _id: -1} */
    CHECK_MSG(cmdj(cl, db,
                   "{\"createIndexes\": \"campaigns1\", \"indexes\": [{\"key\": {\"createdAt\": "
                   "-1}, \"name\": \"createdAt_-1\"}]}",
                   &err),
              "%s", err.message);

    snprintf(log, sizeof log, "%s/api-idx.log", T.env.dir);
    snprintf(port, sizeof port, "%d", testenv_free_port());
    setenv("MONGO_URI", uri, 1);
    setenv("PORT", port, 1);
    char *argv[] = {(char *)testenv_bin("minicrm-api"), NULL};
    pid_t pid = testenv_spawn(argv, log);
    setenv("MONGO_URI", T.env.mongo_uri, 1);
    CHECK(pid > 0);
    bool done = false;
    for (int i = 0; i < 300 && !done; i++) {
        done = count_lines(log, "indexes_incomplete") > 0;
        if (!done)
            sleep_ms(50);
    }
    CHECK_MSG(done, "no indexes_incomplete in %s", log);
    /* One more retry period: nothing is tried again. */
    sleep_ms(2500);
    /* The customers stored without an e-mail domain (by an older version) got theirs. */
    bool filled = false;
    for (int i = 0; i < 200 && !filled; i++) {
        filled = log_has(log, "domain_backfill_done", "customers=2");
        if (!filled)
            sleep_ms(50);
    }
    testenv_kill_wait(pid, SIGTERM, 10000);
    CHECK_MSG(filled, "no domain_backfill_done customers=2 in %s", log);
    {
        mongoc_collection_t *custs = mongoc_client_get_collection(cl, db, "customer1");
        bson_t *q = BCON_NEW("email_domain", BCON_UTF8("x.io"));
        CHECK_INT_EQ(mongoc_collection_count_documents(custs, q, NULL, NULL, NULL, &err), 2);
        bson_destroy(q);
        mongoc_collection_destroy(custs);
    }

    CHECK_INT_EQ(count_lines(log, "index_failed"), 3);
    CHECK(log_has(log, "name=email_1", "code=11000 retry=no"));
    CHECK(log_has(log, "name=customer_id_1", "code=86 retry=no"));
    CHECK(log_has(log, "name=campaign_id_1_status_1", "code=85 retry=no"));
    /* every other index exists: the unique logs index and the sweeper's partial one too */
    static const char *const ok[][2] = {
        {"customer1", "total_spend_1"},
        {"customer1", "last_visit_date_1"},
        {"customer1", "createdAt_1"},
        {"customer1", "email_domain_1"},
        {"customer1", "suppressed_1_true"},
        {"orders1", "createdAt_-1__id_-1"},
        {"communication_logs1", "campaign_id_1_customer_id_1_campaigns"},
        {"communication_logs1", "updatedAt_1_pending"},
        {"communication_logs1", "createdAt_-1__id_-1"},
        {"campaigns1", "createdAt_-1__id_-1"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        CHECK_MSG(has_index(cl, db, ok[i][0], ok[i][1]), "%s.%s missing", ok[i][0], ok[i][1]);
    CHECK(!has_index(cl, db, "customer1", "email_1"));
    CHECK(!has_index(cl, db, "campaigns1", "createdAt_-1"));
    CHECK(cmdj(cl, db, "{\"dropDatabase\": 1}", &err));
    mongoc_client_destroy(cl);
}

TEST(durable_write_concern_modes)
{
    static const struct {
        const char *uri, *mode, *name;
        bool journal;
        int w;
    } cases[] = {
        {"mongodb://127.0.0.1:1/x", "auto", "journal", true, 1},
        {"mongodb://127.0.0.1:1/x?replicaSet=rs0", "auto", "majority", false,
         MONGOC_WRITE_CONCERN_W_MAJORITY},
        {"mongodb://127.0.0.1:1/x?w=majority", "auto", "uri", false, 0},
        {"mongodb://127.0.0.1:1/x?journal=true", "auto", "uri", false, 0},
        {"mongodb://127.0.0.1:1/x?replicaSet=rs0", "journal", "journal", true, 1},
        {"mongodb://127.0.0.1:1/x", "majority", "majority", false, MONGOC_WRITE_CONCERN_W_MAJORITY},
        {"mongodb://127.0.0.1:1/x", "acknowledged", "acknowledged", false, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[200];
        dbpool *p = dbpool_new(cases[i].uri, 2, 1000, "t", err, sizeof err);
        CHECK_MSG(p != NULL, "%s", err);
        CHECK_MSG(dbpool_set_durable_wc(p, cases[i].mode, err, sizeof err) == 0, "%s", err);
        CHECK_STR_EQ(dbpool_durable_wc_name(p), cases[i].name);
        if (cases[i].w != 0) {
            mongoc_client_t *cl = dbpool_pop(p);
            mongoc_collection_t *c = dbpool_durable_collection(p, cl, "c");
            const mongoc_write_concern_t *wc = mongoc_collection_get_write_concern(c);
            CHECK_INT_EQ(mongoc_write_concern_get_w(wc), cases[i].w);
            CHECK_INT_EQ(mongoc_write_concern_get_journal(wc), cases[i].journal);
            mongoc_collection_destroy(c);
            dbpool_push(p, cl);
        }
        dbpool_free(p);
    }
    char err[200];
    dbpool *p = dbpool_new("mongodb://127.0.0.1:1/x", 2, 1000, "t", err, sizeof err);
    CHECK(p != NULL);
    CHECK(dbpool_set_durable_wc(p, "sometimes", err, sizeof err) != 0);
    CHECK(strstr(err, "mongo.write_concern") != NULL);
    dbpool_free(p);
}

/* The production connection string's options reach the driver unchanged: a replica set's seed
 * list and name, readPreference, retryWrites, w and journal (dbpool only adds timeouts the URI
 * does not set). */
TEST(uri_options_reach_the_driver)
{
    char err[200];
    dbpool *p = dbpool_new("mongodb://db1:27017,db2:27018,db3:27019/crm?replicaSet=rs0"
                           "&readPreference=secondaryPreferred&retryWrites=true&w=majority"
                           "&journal=true&socketTimeoutMS=12345",
                           2, 1000, "t", err, sizeof err);
    CHECK_MSG(p != NULL, "%s", err);
    CHECK_STR_EQ(dbpool_db_name(p), "crm");
    CHECK_INT_EQ(dbpool_socket_timeout_ms(p), 12345);
    mongoc_client_t *cl = dbpool_pop(p);
    const mongoc_uri_t *u = mongoc_client_get_uri(cl);
    int nhosts = 0;
    for (const mongoc_host_list_t *h = mongoc_uri_get_hosts(u); h; h = h->next)
        nhosts++;
    CHECK_INT_EQ(nhosts, 3);
    CHECK_STR_EQ(mongoc_uri_get_replica_set(u), "rs0");
    CHECK(mongoc_uri_get_option_as_bool(u, MONGOC_URI_RETRYWRITES, false));
    CHECK_INT_EQ(mongoc_read_prefs_get_mode(mongoc_client_get_read_prefs(cl)),
                 MONGOC_READ_SECONDARY_PREFERRED);
    const mongoc_write_concern_t *wc = mongoc_client_get_write_concern(cl);
    CHECK_INT_EQ(mongoc_write_concern_get_w(wc), MONGOC_WRITE_CONCERN_W_MAJORITY);
    CHECK(mongoc_write_concern_get_journal(wc));
    /* durable writes then use the URI's own concern ("uri") */
    CHECK_INT_EQ(dbpool_set_durable_wc(p, "auto", err, sizeof err), 0);
    CHECK_STR_EQ(dbpool_durable_wc_name(p), "uri");
    dbpool_push(p, cl);
    dbpool_free(p);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        TEST_ENTRY(uri_options_reach_the_driver),    TEST_ENTRY(list_sorts_are_index_served),
        TEST_ENTRY(read_past_max_time_is_504),       TEST_ENTRY(counts_say_what_they_are),
        TEST_ENTRY(index_builder_tries_every_index), TEST_ENTRY(durable_write_concern_modes),
    };
    /* Holds libmongoc's initialisation (dbpool counts its users) for the whole run. */
    char err[200];
    dbpool *keep = dbpool_new("mongodb://127.0.0.1:1/x", 1, 1000, "t", err, sizeof err);
    if (!keep)
        return 1;
    int rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    dbpool_free(keep);
    return rc;
}
