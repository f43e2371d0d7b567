/*
 * test_devdb_count: the count an index answers alone (MongoDB's COUNT_SCAN; devdb's
 * plan_count) against a private minicrm-devdb through libmongoc.
 *
 *   covered_counts_equal_the_scan
 *        documents whose field v holds numbers (int32, int64, double, NaN, +-Infinity), strings,
 *        dates, null, or nothing, behind an ascending and a descending index on v (in two
 *        collections): for every filter of comparisons on v the `count` command equals the
 *        number of documents a collection scan (find with hint $natural) returns, with skip and
 *        limit too, and examines no document (serverStatus' scannedObjects stays put).
 *   compound_index_counts_its_fields
 *        a filter on both fields of a compound index {v: 1, i: 1} is counted from its keys alone,
 *        equal to the scan.
 *   other_filters_still_read_documents
 *        a filter on two fields, a $ne, $exists, a NaN operand, or a field without an index is
 *        counted by reading documents (the ordinary plan), with the same result as the scan.
 */
#include "test.h"
#include "testenv.h"

#include <math.h>
#include <mongoc/mongoc.h>

static testenv env;
static mongoc_client_t *cl;

static int64_t scanned_objects(void)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    BSON_APPEND_INT32(&cmd, "serverStatus", 1);
    int64_t n = -1;
    bson_iter_t it;
    if (mongoc_client_command_simple(cl, "admin", &cmd, NULL, &reply, NULL) &&
        bson_iter_init(&it, &reply) &&
        bson_iter_find_descendant(&it, "metrics.queryExecutor.scannedObjects", &it))
        n = bson_iter_as_int64(&it);
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return n;
}

/* The count command's n for filter (JSON) on coll, or -1. */
static int64_t count_cmd(const char *coll, const char *filter_json, int skip, int limit)
{
    bson_error_t e;
    bson_t *q = bson_new_from_json((const uint8_t *)filter_json, -1, &e);
    if (!q)
        return -1;
    bson_t cmd = BSON_INITIALIZER, reply;
    BSON_APPEND_UTF8(&cmd, "count", coll);
    BSON_APPEND_DOCUMENT(&cmd, "query", q);
    if (skip)
        BSON_APPEND_INT32(&cmd, "skip", skip);
    if (limit)
        BSON_APPEND_INT32(&cmd, "limit", limit);
    int64_t n = -1;
    bson_iter_t it;
    if (mongoc_client_command_simple(cl, env.db_name, &cmd, NULL, &reply, &e) &&
        bson_iter_init_find(&it, &reply, "n"))
        n = bson_iter_as_int64(&it);
    else
        fprintf(stderr, "count %s: %s\n", filter_json, e.message);
    bson_destroy(&reply);
    bson_destroy(&cmd);
    bson_destroy(q);
    return n;
}

/* The documents a collection scan returns for filter, or -1. */
static int64_t scan_count(const char *coll, const char *filter_json)
{
    bson_error_t e;
    bson_t *q = bson_new_from_json((const uint8_t *)filter_json, -1, &e);
    if (!q)
        return -1;
    mongoc_collection_t *c = mongoc_client_get_collection(cl, env.db_name, coll);
    bson_t *opts = BCON_NEW("hint", "{", "$natural", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, q, opts, NULL);
    const bson_t *d;
    int64_t n = 0;
    while (mongoc_cursor_next(cur, &d))
        n++;
    if (mongoc_cursor_error(cur, &e))
        n = -1;
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    mongoc_collection_destroy(c);
    bson_destroy(q);
    return n;
}

/* coll: 2000 documents over every kind of value of v, and an index on v in direction dir. */
static int fill(const char *coll, int dir)
{
    mongoc_collection_t *c = mongoc_client_get_collection(cl, env.db_name, coll);
    int rc = 0;
    for (int i = 0; i < 2000 && rc == 0; i++) {
        bson_t *d = bson_new();
        BSON_APPEND_INT32(d, "i", i);
        switch (i % 10) {
        case 0:
            BSON_APPEND_INT32(d, "v", i % 97);
            break;
        case 1:
            BSON_APPEND_INT64(d, "v", (int64_t)(i % 89) - 20);
            break;
        case 2:
            BSON_APPEND_DOUBLE(d, "v", (double)(i % 83) + 0.5);
            break;
        case 3:
            BSON_APPEND_DOUBLE(d, "v", i % 3 == 0 ? NAN : (i % 3 == 1 ? INFINITY : -INFINITY));
            break;
        case 4: {
            char s[16];
            snprintf(s, sizeof s, "s%03d", i % 50);
            BSON_APPEND_UTF8(d, "v", s);
            break;
        }
        case 5:
            BSON_APPEND_DATE_TIME(d, "v", (int64_t)(i % 40) * 86400000);
            break;
        case 6:
            BSON_APPEND_NULL(d, "v");
            break;
        case 7:
            break; /* missing */
        default:
            BSON_APPEND_DOUBLE(d, "v", (double)(i % 50));
            break;
        }
        if (!mongoc_collection_insert_one(c, d, NULL, NULL, NULL))
            rc = -1;
        bson_destroy(d);
    }
    char name[16];
    snprintf(name, sizeof name, "v_%d", dir);
    bson_t *cmd = BCON_NEW("createIndexes", BCON_UTF8(coll), "indexes", "[", "{", "key", "{", "v",
                           BCON_INT32(dir), "}", "name", BCON_UTF8(name), "}", "]");
    bson_t reply;
    bson_error_t e;
    if (rc == 0 && !mongoc_client_command_simple(cl, env.db_name, cmd, NULL, &reply, &e)) {
        fprintf(stderr, "createIndexes: %s\n", e.message);
        rc = -1;
    }
    bson_destroy(&reply);
    bson_destroy(cmd);
    mongoc_collection_destroy(c);
    return rc;
}

static const char *const k_covered[] = {
    "{\"v\": 5}",
    "{\"v\": 5.0}",
    "{\"v\": null}",
    "{\"v\": \"s007\"}",
    "{\"v\": {\"$gte\": 10}}",
    "{\"v\": {\"$gt\": 10, \"$lte\": 40}}",
    "{\"v\": {\"$lt\": 3}}",
    "{\"v\": {\"$lte\": 0}}",
    "{\"v\": {\"$gte\": -1e308}}",
    "{\"v\": {\"$gt\": \"s010\"}}",
    "{\"v\": {\"$lt\": \"s020\"}}",
    "{\"v\": {\"$gte\": {\"$date\": {\"$numberLong\": \"864000000\"}}}}",
    "{\"v\": {\"$in\": [1, 2, 3, \"s001\", null]}}",
    "{\"v\": {\"$gte\": 5, \"$lt\": \"z\"}}",
    "{\"$and\": [{\"v\": {\"$gte\": 5}}, {\"v\": {\"$lt\": 30}}]}",
    "{\"v\": {\"$lte\": {\"$numberDouble\": \"Infinity\"}}}",
    NULL};

TEST(covered_counts_equal_the_scan)
{
    const char *colls[2] = {"asc", "desc"};
    for (int c = 0; c < 2; c++) {
        for (int i = 0; k_covered[i]; i++) {
            int64_t want = scan_count(colls[c], k_covered[i]);
            int64_t before = scanned_objects();
            int64_t got = count_cmd(colls[c], k_covered[i], 0, 0);
            int64_t got_sl = count_cmd(colls[c], k_covered[i], 3, 7);
            int64_t after = scanned_objects();
            if (got != want)
                fprintf(stderr, "%s %s: count %lld, scan %lld\n", colls[c], k_covered[i],
                        (long long)got, (long long)want);
            CHECK(want >= 0);
            CHECK_INT_EQ(got, want);
            int64_t sl = want - 3 < 0 ? 0 : (want - 3 > 7 ? 7 : want - 3);
            CHECK_INT_EQ(got_sl, sl);
            CHECK_INT_EQ(after, before); /* no document read */
        }
    }
}

/* A filter on several fields an index holds (compound {v: 1, i: 1}): counted from its keys,
 * every key inside the first field's bounds tested. */
TEST(compound_index_counts_its_fields)
{
    static const char *const f[] = {
        "{\"v\": {\"$gte\": 10}, \"i\": {\"$lt\": 500}}",
        "{\"v\": 5, \"i\": {\"$gte\": 100}}",
        "{\"v\": {\"$in\": [1, 2, \"s001\", null]}, \"i\": {\"$gt\": 1000}}",
        "{\"v\": null, \"i\": {\"$lt\": 50}}",
        "{\"$and\": [{\"v\": {\"$lt\": \"s030\"}}, {\"i\": {\"$gte\": 300, \"$lte\": 1700}}]}",
        NULL};
    for (int i = 0; f[i]; i++) {
        int64_t want = scan_count("comp", f[i]);
        int64_t before = scanned_objects();
        int64_t got = count_cmd("comp", f[i], 0, 0);
        if (got != want)
            fprintf(stderr, "comp %s: count %lld, scan %lld\n", f[i], (long long)got,
                    (long long)want);
        CHECK(want >= 0);
        CHECK_INT_EQ(got, want);
        CHECK_INT_EQ(scanned_objects(), before);
    }
}

TEST(other_filters_still_read_documents)
{
    static const char *const other[] = {"{\"v\": {\"$gte\": 10}, \"i\": {\"$lt\": 500}}",
                                        "{\"v\": {\"$ne\": 5}}", "{\"i\": {\"$lt\": 100}}",
                                        "{\"v\": {\"$exists\": false}}",
                                        /* only NaN is >= NaN: not a half-line of the numbers */
                                        "{\"v\": {\"$gte\": {\"$numberDouble\": \"NaN\"}}}", NULL};
    for (int i = 0; other[i]; i++) {
        int64_t want = scan_count("asc", other[i]);
        int64_t before = scanned_objects();
        CHECK_INT_EQ(count_cmd("asc", other[i], 0, 0), want);
        CHECK(scanned_objects() > before);
    }
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {TEST_ENTRY(covered_counts_equal_the_scan),
                                      TEST_ENTRY(compound_index_counts_its_fields),
                                      TEST_ENTRY(other_filters_still_read_documents)};
    if (testenv_start(&env, TESTENV_DEVDB) != 0)
        return 1;
    mongoc_init();
    cl = mongoc_client_new(env.mongo_uri);
    int rc = 1;
    bson_t *comp =
        BCON_NEW("createIndexes", BCON_UTF8("comp"), "indexes", "[", "{", "key", "{", "v",
                 BCON_INT32(1), "i", BCON_INT32(1), "}", "name", BCON_UTF8("v_i"), "}", "]");
    if (cl && fill("asc", 1) == 0 && fill("desc", -1) == 0 && fill("comp", 1) == 0 &&
        mongoc_client_command_simple(cl, env.db_name, comp, NULL, NULL, NULL))
        rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    bson_destroy(comp);
    mongoc_client_destroy(cl);
    mongoc_cleanup();
    testenv_stop(&env);
    return rc;
}
