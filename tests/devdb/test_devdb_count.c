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
 *        equal to the scan; with points on v and bounds on i only the keys inside those
 *        compound bounds are examined (serverStatus' scanned equals the count).
 *   random_compound_counts_equal_the_scan
 *        2,000 documents whose fields a, b, c are missing or random values of every kind (int32,
 *        int64 past 2^53, doubles with NaN, +-Infinity and -0.0, decimal128, strings, dates,
 *        null, bools, ObjectIds, embedded documents, MinKey, MaxKey) behind {a: 1, b: -1, c: 1};
 *        600 random filters (a bound on a, then $eq, $gt, $gte, $lt, $lte, $in, $ne, $nin on
 *        any field, top level or under $and): each count equals the scan and reads no document
 *        (the key filter decides every key). The same filters on a collection where b is
 *        sometimes an array (the index is multikey) read documents and still equal the scan.
 *   other_filters_still_read_documents
 *        a filter on two fields, a $ne, $exists, a NaN operand, or a field without an index is
 *        counted by reading documents (the ordinary plan), with the same result as the scan.
 */
#include "randbson.h"
#include "test.h"
#include "testenv.h"

#include <math.h>
#include <mongoc/mongoc.h>

static testenv env;
static mongoc_client_t *cl;

/* serverStatus' metrics.queryExecutor.<what>: scannedObjects (documents read) or scanned
 * (index keys examined). */
static int64_t executor_metric(const char *what)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    BSON_APPEND_INT32(&cmd, "serverStatus", 1);
    int64_t n = -1;
    bson_iter_t it;
    char path[64];
    snprintf(path, sizeof path, "metrics.queryExecutor.%s", what);
    if (mongoc_client_command_simple(cl, "admin", &cmd, NULL, &reply, NULL) &&
        bson_iter_init(&it, &reply) && bson_iter_find_descendant(&it, path, &it))
        n = bson_iter_as_int64(&it);
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return n;
}

static int64_t scanned_objects(void)
{
    return executor_metric("scannedObjects");
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

/* The count command's n for filter q on coll, or -1. */
static int64_t count_bson(const char *coll, const bson_t *q)
{
    bson_error_t e;
    bson_t cmd = BSON_INITIALIZER, reply;
    BSON_APPEND_UTF8(&cmd, "count", coll);
    BSON_APPEND_DOCUMENT(&cmd, "query", q);
    int64_t n = -1;
    bson_iter_t it;
    if (mongoc_client_command_simple(cl, env.db_name, &cmd, NULL, &reply, &e) &&
        bson_iter_init_find(&it, &reply, "n"))
        n = bson_iter_as_int64(&it);
    else
        fprintf(stderr, "count: %s\n", e.message);
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return n;
}

/* The documents a collection scan returns for filter q, or -1. */
static int64_t scan_bson(const char *coll, const bson_t *q)
{
    bson_error_t e;
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
    /* A point on v and a range on i: the walk starts and ends at seeks on (v, i), as MongoDB's
     * compound bounds do, so it examines only the keys it counts (not every key with v == 5). */
    static const char *const narrow[] = {"{\"v\": 5, \"i\": {\"$gte\": 100, \"$lt\": 1500}}",
                                         "{\"v\": {\"$in\": [5, 7]}, \"i\": {\"$in\": [10, "
                                         "381, 561, 880, 3]}}",
                                         "{\"v\": 5, \"i\": {\"$lte\": 1000}}", NULL};
    for (int i = 0; narrow[i]; i++) {
        int64_t want = scan_count("comp", narrow[i]);
        int64_t keys = executor_metric("scanned");
        CHECK_INT_EQ(count_cmd("comp", narrow[i], 0, 0), want);
        CHECK(want > 0);
        CHECK_INT_EQ(executor_metric("scanned") - keys, want);
    }
}

/* ---- random documents and filters on a compound index ---- */

static const double k_dbl[] = {-2.5, -1.0, -0.0, 0.5, 1.0, 2.0, 9007199254740992.0};
static const char *const k_str[] = {"", "a", "ab", "b", "gmail.com"};
static randbson rng = {0x2545f4914f6cdd1dull, k_dbl, sizeof k_dbl / sizeof k_dbl[0], k_str,
                       sizeof k_str / sizeof k_str[0]};

static uint32_t rnd(void)
{
    return randbson_next(&rng);
}

/* A random value under key k of b. `cmp_operand`: no NaN or decimal128 (a comparison or an
 * equality with them makes the count read documents, other_filters_... covers that; $in, $ne
 * and $nin take them). */
static void rand_value(bson_t *b, const char *k, bool cmp_operand)
{
    randbson_value(&rng, b, k, cmp_operand ? RANDBSON_CMP : 0);
}

/* One condition on path into f: an operator document of 1-2 of $eq $gt $gte $lt $lte $in $ne
 * $nin, or a plain value; `bound` keeps to those that bound an index's first field. */
static void rand_cond(bson_t *f, const char *path, bool bound)
{
    static const char *const ops[] = {"$eq", "$gt", "$gte", "$lt", "$lte", "$in", "$ne", "$nin"};
    if (rnd() % 6 == 0) {
        rand_value(f, path, true);
        return;
    }
    bson_t sub;
    BSON_APPEND_DOCUMENT_BEGIN(f, path, &sub);
    size_t nops = 1 + (rnd() % 3 == 0);
    for (size_t i = 0; i < nops; i++) {
        const char *op = ops[rnd() % (bound ? 6 : 8)];
        if (!strcmp(op, "$in") || !strcmp(op, "$nin")) {
            bson_t arr;
            BSON_APPEND_ARRAY_BEGIN(&sub, op, &arr);
            size_t n = 1 + rnd() % 4;
            for (size_t j = 0; j < n; j++) {
                char key[8];
                snprintf(key, sizeof key, "%zu", j);
                rand_value(&arr, key, false);
            }
            bson_append_array_end(&sub, &arr);
        } else {
            rand_value(&sub, op, strcmp(op, "$ne") != 0);
        }
    }
    bson_append_document_end(f, &sub);
}

/* A filter with a bound on a and 0-3 more conditions on a, b, c. */
static bson_t *rand_filter(void)
{
    static const char *const paths[] = {"a", "b", "c"};
    bson_t *f = bson_new();
    size_t n = rnd() % 4;
    if (rnd() % 3 == 0) {
        bson_t arr, m;
        BSON_APPEND_ARRAY_BEGIN(f, "$and", &arr);
        for (size_t i = 0; i <= n; i++) {
            char key[8];
            snprintf(key, sizeof key, "%zu", i);
            BSON_APPEND_DOCUMENT_BEGIN(&arr, key, &m);
            rand_cond(&m, i == 0 ? "a" : paths[rnd() % 3], i == 0);
            bson_append_document_end(&arr, &m);
        }
        bson_append_array_end(f, &arr);
    } else {
        rand_cond(f, "a", true);
        for (size_t i = 0; i < n; i++)
            rand_cond(f, paths[rnd() % 3], false);
    }
    return f;
}

/* 2000 random documents in coll (b sometimes an array with `arrays`), then {a: 1, b: -1, c: 1}. */
static int fill_random(const char *coll, bool arrays)
{
    static const char *const paths[] = {"a", "b", "c"};
    mongoc_collection_t *c = mongoc_client_get_collection(cl, env.db_name, coll);
    int rc = 0;
    for (int i = 0; i < 2000 && rc == 0; i++) {
        bson_t *d = bson_new();
        for (int f = 0; f < 3; f++) {
            if (rnd() % 8 == 0)
                continue; /* missing */
            if (arrays && f == 1 && rnd() % 10 == 0) {
                bson_t arr;
                BSON_APPEND_ARRAY_BEGIN(d, "b", &arr);
                size_t n = rnd() % 3;
                for (size_t j = 0; j < n; j++)
                    rand_value(&arr, j ? "1" : "0", false);
                bson_append_array_end(d, &arr);
                continue;
            }
            rand_value(d, paths[f], false);
        }
        if (!mongoc_collection_insert_one(c, d, NULL, NULL, NULL))
            rc = -1;
        bson_destroy(d);
    }
    bson_t *cmd = BCON_NEW("createIndexes", BCON_UTF8(coll), "indexes", "[", "{", "key", "{", "a",
                           BCON_INT32(1), "b", BCON_INT32(-1), "c", BCON_INT32(1), "}", "name",
                           BCON_UTF8("a_b_c"), "}", "]");
    bson_error_t e;
    if (rc == 0 && !mongoc_client_command_simple(cl, env.db_name, cmd, NULL, NULL, &e)) {
        fprintf(stderr, "createIndexes: %s\n", e.message);
        rc = -1;
    }
    bson_destroy(cmd);
    mongoc_collection_destroy(c);
    return rc;
}

TEST(random_compound_counts_equal_the_scan)
{
    CHECK_INT_EQ(fill_random("rnd", false), 0);
    CHECK_INT_EQ(fill_random("rndmk", true), 0);
    int64_t nonzero = 0;
    for (int i = 0; i < 600; i++) {
        bson_t *f = rand_filter();
        int64_t want = scan_bson("rnd", f);
        int64_t before = scanned_objects();
        int64_t got = count_bson("rnd", f);
        int64_t read = scanned_objects() - before;
        int64_t want_mk = scan_bson("rndmk", f);
        int64_t got_mk = count_bson("rndmk", f);
        if (got != want || read != 0 || got_mk != want_mk) {
            char *js = bson_as_relaxed_extended_json(f, NULL);
            fprintf(stderr,
                    "%s: count %lld, scan %lld, documents read %lld; multikey: count "
                    "%lld, scan %lld\n",
                    js, (long long)got, (long long)want, (long long)read, (long long)got_mk,
                    (long long)want_mk);
            bson_free(js);
        }
        CHECK(want >= 0);
        CHECK_INT_EQ(got, want);
        CHECK_INT_EQ(read, 0);
        CHECK_INT_EQ(got_mk, want_mk);
        nonzero += want > 0;
        bson_destroy(f);
    }
    CHECK(nonzero > 100); /* the filters are not all empty */
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
                                      TEST_ENTRY(random_compound_counts_equal_the_scan),
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
