/* test_engine_bsonval: MongoDB value order, paths, sort keys and index keys (devdb/bsonval). */
#include "base/bsonval.h"
#include "engine_util.h"
#include "base/errors.h"
#include "test.h"

/* Compares the values of fields "a" and "b" of a JSON document. */
static int cmp_ab(const char *json)
{
    bson_t *d = J(json);
    bson_iter_t ia, ib;
    if (!bson_iter_init_find(&ia, d, "a") || !bson_iter_init_find(&ib, d, "b"))
        abort();
    int c = bv_compare(bson_iter_value(&ia), bson_iter_value(&ib));
    bson_destroy(d);
    return c;
}

TEST(cross_type_order)
{
    /* Each value is below the next one. */
    static const char *order[] = {
        "{'$minKey': 1}",
        "null",
        "{'$numberDouble': 'NaN'}",
        "-5",
        "1",
        "{'$numberLong': '2'}",
        "2.5",
        "''",
        "'a'",
        "'b'",
        "{}",
        "{'a': 1}",
        "[]",
        "[1]",
        "{'$binary': {'base64': '', 'subType': '00'}}",
        "{'$oid': '000000000000000000000000'}",
        "false",
        "true",
        "{'$date': {'$numberLong': '0'}}",
        "{'$timestamp': {'t': 1, 'i': 1}}",
        "{'$regularExpression': {'pattern': 'a', 'options': ''}}",
        "{'$maxKey': 1}",
    };
    size_t n = sizeof order / sizeof order[0];
    for (size_t i = 0; i + 1 < n; i++) {
        char json[512];
        snprintf(json, sizeof json, "{'a': %s, 'b': %s}", order[i], order[i + 1]);
        CHECK_MSG(cmp_ab(json) < 0, "%s < %s", order[i], order[i + 1]);
        snprintf(json, sizeof json, "{'a': %s, 'b': %s}", order[i + 1], order[i]);
        CHECK_MSG(cmp_ab(json) > 0, "%s > %s", order[i + 1], order[i]);
    }
}

TEST(numbers_compare_across_types)
{
    CHECK_INT_EQ(cmp_ab("{'a': 1, 'b': 1.0}"), 0);
    CHECK_INT_EQ(cmp_ab("{'a': {'$numberLong': '1'}, 'b': 1.0}"), 0);
    CHECK_INT_EQ(cmp_ab("{'a': {'$numberLong': '1'}, 'b': 1}"), 0);
    CHECK(cmp_ab("{'a': 1, 'b': 1.5}") < 0);
    /* 2^53 + 1 as int64 is above 2^53 as double: no rounding through double. */
    CHECK(cmp_ab("{'a': {'$numberLong': '9007199254740993'}, 'b': 9007199254740992.0}") > 0);
    CHECK(cmp_ab("{'a': {'$numberDouble': '-Infinity'}, 'b': -1e308}") < 0);
    CHECK(cmp_ab("{'a': {'$numberDouble': 'NaN'}, 'b': {'$numberDouble': '-Infinity'}}") < 0);
    CHECK_INT_EQ(cmp_ab("{'a': {'$numberDouble': 'NaN'}, 'b': {'$numberDouble': 'NaN'}}"), 0);
    CHECK_INT_EQ(cmp_ab("{'a': {'$numberDecimal': '2.50'}, 'b': 2.5}"), 0);
    CHECK(cmp_ab("{'a': {'$numberDecimal': '3'}, 'b': 2.5}") > 0);
}

TEST(documents_and_arrays)
{
    CHECK_INT_EQ(cmp_ab("{'a': {'x': 1, 'y': 'z'}, 'b': {'x': 1.0, 'y': 'z'}}"), 0);
    CHECK(cmp_ab("{'a': {'x': 1}, 'b': {'y': 1}}") < 0);         /* field name */
    CHECK(cmp_ab("{'a': {'x': 'a'}, 'b': {'x': 1}}") > 0);       /* type before name/value */
    CHECK(cmp_ab("{'a': {'x': 1}, 'b': {'x': 1, 'y': 0}}") < 0); /* prefix is smaller */
    CHECK(cmp_ab("{'a': [1, 2], 'b': [1, 3]}") < 0);
    CHECK(cmp_ab("{'a': [2], 'b': [1, 3]}") > 0);
    CHECK_INT_EQ(cmp_ab("{'a': 'abc', 'b': 'abc'}"), 0);
    CHECK(cmp_ab("{'a': 'ab', 'b': 'abc'}") < 0);
    CHECK(cmp_ab("{'a': 'B', 'b': 'a'}") < 0); /* bytewise */
    CHECK(cmp_ab("{'a': {'$binary': {'base64': 'AAAA', 'subType': '00'}}, "
                 "'b': {'$binary': {'base64': 'AA==', 'subType': '05'}}}") > 0); /* length first */
}

typedef struct {
    char out[1024];
} collect;

static bool collect_cb(const bson_value_t *v, void *ctx)
{
    collect *c = ctx;
    char item[200];
    if (v->value_type == BSON_TYPE_EOD) {
        snprintf(item, sizeof item, "MISSING ");
    } else {
        bson_t *d = bson_new();
        bson_append_value(d, "v", 1, v);
        char *s = bson_as_relaxed_extended_json(d, NULL);
        snprintf(item, sizeof item, "%s ", s);
        bson_free(s);
        bson_destroy(d);
    }
    size_t used = strlen(c->out);
    snprintf(c->out + used, sizeof c->out - used, "%s", item);
    return false;
}

static const char *visit(const char *json, const char *path, int flags)
{
    static collect c;
    c.out[0] = '\0';
    bson_t *d = J(json);
    bv_path_visit(d, path, flags, collect_cb, &c);
    bson_destroy(d);
    return c.out;
}

TEST(path_visit)
{
    int all = BV_PATH_EXPAND_LEAF | BV_PATH_REPORT_MISSING;
    CHECK_STR_EQ(visit("{'a': {'b': 1}}", "a.b", all), "{ \"v\" : 1 } ");
    CHECK_STR_EQ(visit("{'a': {'b': 1}}", "a.c", all), "MISSING ");
    CHECK_STR_EQ(visit("{'a': 5}", "a.c", all), "MISSING ");
    CHECK_STR_EQ(visit("{'a': [{'b': 1}, {'b': 2}, {'c': 3}, 7]}", "a.b", all),
                 "{ \"v\" : 1 } { \"v\" : 2 } MISSING ");
    CHECK_STR_EQ(visit("{'a': [1, 2]}", "a", all),
                 "{ \"v\" : [ 1, 2 ] } { \"v\" : 1 } { \"v\" : 2 } ");
    CHECK_STR_EQ(visit("{'a': [1, 2]}", "a", BV_PATH_EXPAND_LEAF | BV_PATH_NO_LEAF_ARRAY),
                 "{ \"v\" : 1 } { \"v\" : 2 } ");
    CHECK_STR_EQ(visit("{'a': [1, 2]}", "a", 0), "{ \"v\" : [ 1, 2 ] } ");
    /* Numeric component selects the element. */
    CHECK_STR_EQ(visit("{'a': [{'b': 1}, {'b': 2}]}", "a.1.b", all), "{ \"v\" : 2 } ");
    CHECK_STR_EQ(visit("{'a': [10, 20]}", "a.0", all), "{ \"v\" : 10 } ");
    /* Nested arrays are not traversed implicitly. */
    CHECK_STR_EQ(visit("{'a': [[{'b': 1}]]}", "a.b", all), "MISSING ");

    bson_value_t v;
    bson_t *d = J("{'a': {'b': [5, {'c': 'x'}]}}");
    CHECK(bv_path_get(d, "a.b.1.c", &v));
    CHECK(v.value_type == BSON_TYPE_UTF8 && strcmp(v.value.v_utf8.str, "x") == 0);
    CHECK(!bv_path_get(d, "a.b.c", &v));
    CHECK(!bv_path_get(d, "a.x", &v));
    bson_destroy(d);
}

static const char *sortkey(const char *json, const char *path, int dir)
{
    static char out[256];
    bson_t *d = J(json);
    bson_value_t v;
    bv_sort_key(d, path, dir, &v);
    bson_t *k = bson_new();
    bv_append(k, "k", 1, &v);
    if (v.value_type == BSON_TYPE_UNDEFINED)
        snprintf(out, sizeof out, "undefined");
    else
        snprintf(out, sizeof out, "%s", JS(k));
    bson_destroy(k);
    bson_destroy(d);
    return out;
}

TEST(sort_keys)
{
    CHECK_STR_EQ(sortkey("{'a': [3, 1, 2]}", "a", 1), "{'k':1}");
    CHECK_STR_EQ(sortkey("{'a': [3, 1, 2]}", "a", -1), "{'k':3}");
    CHECK_STR_EQ(sortkey("{'x': 1}", "a", 1), "{'k':null}");
    CHECK_STR_EQ(sortkey("{'a': []}", "a", 1), "undefined");
    CHECK_STR_EQ(sortkey("{'a': [{'b': 5}, {'b': 'x'}]}", "a.b", -1), "{'k':'x'}");
    CHECK_STR_EQ(sortkey("{'a': [{'b': 5}, {'c': 1}]}", "a.b", 1), "{'k':null}");
}

typedef struct {
    char out[1024];
} keys_ctx;

static int key_cb(const bson_t *key, void *ctx)
{
    keys_ctx *k = ctx;
    size_t used = strlen(k->out);
    snprintf(k->out + used, sizeof k->out - used, "%s", JS(key));
    return 0;
}

TEST(index_keys)
{
    keys_ctx k = {""};
    bson_error_t err;
    bool mk;
    bson_t *pat = J("{'a': 1, 'b': -1}");
    bson_t *d = J("{'a': [3, 1, 3], 'b': 'x'}");
    CHECK_INT_EQ(bv_index_keys(d, pat, key_cb, &k, &mk, &err), 0);
    CHECK(mk);
    CHECK_STR_EQ(k.out, "{'':1,'':'x'}{'':3,'':'x'}");
    bson_destroy(d);

    k.out[0] = '\0';
    d = J("{'b': 2}");
    CHECK_INT_EQ(bv_index_keys(d, pat, key_cb, &k, &mk, &err), 0);
    CHECK(!mk);
    CHECK_STR_EQ(k.out, "{'':null,'':2}");
    bson_destroy(d);

    d = J("{'a': [1], 'b': [2]}");
    CHECK_INT_EQ(bv_index_keys(d, pat, key_cb, &k, &mk, &err), -1);
    CHECK_INT_EQ(err.code, MDB_CANNOT_INDEX_PARALLEL_ARRAYS);
    CHECK_STR_EQ(err.message, "cannot index parallel arrays [b] [a]");
    bson_destroy(d);
    bson_destroy(pat);

    int dirs[4];
    pat = J("{'a': 1, 'b': -1}");
    CHECK_INT_EQ(bv_pattern_dirs(pat, dirs, 4), 2);
    CHECK_INT_EQ(dirs[1], -1);
    bson_t *k1 = J("{'': 1, '': 5}"), *k2 = J("{'': 1, '': 7}");
    CHECK(bv_key_compare(k1, k2, NULL, 0) < 0);
    CHECK(bv_key_compare(k1, k2, dirs, 2) > 0);
    bson_destroy(k1);
    bson_destroy(k2);
    bson_destroy(pat);
}

/* {a: {a: {... {a: leaf} ...}}} nested `depth` levels, built in linear time. */
static bson_t *deep_doc(int depth, int leaf)
{
    /* One block of bson_t with the 128-byte alignment libbson declares for it. */
    size_t n = (size_t)depth + 1;
    bson_t *level = aligned_alloc(128, n * sizeof *level);
    bson_init(&level[0]);
    for (int i = 1; i <= depth; i++)
        bson_append_document_begin(&level[i - 1], "a", 1, &level[i]);
    BSON_APPEND_INT32(&level[depth], "a", leaf);
    for (int i = depth; i >= 1; i--)
        bson_append_document_end(&level[i - 1], &level[i]);
    bson_t *root = bson_copy(&level[0]);
    bson_destroy(&level[0]);
    free(level);
    return root;
}

TEST(hostile_nesting_does_not_recurse_unbounded)
{
    /* 100,000 levels: comparing must neither overflow the stack nor call them equal. */
    bson_t *x = deep_doc(100000, 1), *y = deep_doc(100000, 2);
    CHECK(bv_compare_docs(x, y) < 0);
    CHECK(bv_compare_docs(x, x) == 0);
    bson_destroy(x);
    bson_destroy(y);
}

TEST(depth_limit)
{
    /* deep_doc(n) nests n documents below the root: n + 1 levels. */
    bson_t *ok = deep_doc(BV_MAX_NESTING - 1, 1), *over = deep_doc(BV_MAX_NESTING, 1);
    CHECK(bv_depth_ok(ok, BV_MAX_NESTING));
    CHECK(!bv_depth_ok(over, BV_MAX_NESTING));
    CHECK(bv_depth_ok(over, BV_MAX_NESTING + 1));
    bson_destroy(ok);
    bson_destroy(over);
    /* Far beyond the limit: refused without walking (or recursing) all the way down. */
    bson_t *hostile = deep_doc(100000, 1);
    CHECK(!bv_depth_ok(hostile, BV_MAX_NESTING));
    bson_destroy(hostile);
    /* Arrays count as levels; siblings do not add up; a flat document is depth 1. */
    bson_t *arr = J("{'a': [[1]], 'b': {'c': 1}, 'd': 2}");
    CHECK(bv_depth_ok(arr, 3));
    CHECK(!bv_depth_ok(arr, 2));
    bson_destroy(arr);
    bson_t *flat = J("{'a': 1}"), empty = BSON_INITIALIZER;
    CHECK(bv_depth_ok(flat, 1));
    CHECK(bv_depth_ok(&empty, 1));
    CHECK(!bv_depth_ok(flat, 0));
    bson_destroy(flat);
    /* Malformed BSON (an embedded document whose length runs past its parent) is refused. */
    bson_t *nested = J("{'a': {'b': 1}}");
    uint8_t bytes[64];
    memcpy(bytes, bson_get_data(nested), nested->len);
    bytes[4 + 1 + 2] = 0x7f; /* the embedded document's length: type byte, "a\0", then length */
    bson_t bad;
    CHECK(bson_init_static(&bad, bytes, nested->len));
    CHECK(!bv_depth_ok(&bad, BV_MAX_NESTING));
    bson_destroy(nested);
}

/* Value of field "v" of a JSON document (points into it). */
static bson_value_t vfield(const bson_t *d)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, d, "v"))
        abort();
    return *bson_iter_value(&it);
}

TEST(numeric_helpers)
{
    static const struct {
        const char *json;
        int rc;
        int64_t want;
    } whole[] = {
        {"{'v': 5}", 0, 5},
        {"{'v': {'$numberLong': '-9223372036854775808'}}", 0, INT64_MIN},
        {"{'v': 3.0}", 0, 3},
        {"{'v': {'$numberDecimal': '7'}}", 0, 7},
        {"{'v': 2.5}", -2, 0},
        {"{'v': 1e19}", -2, 0},
        {"{'v': {'$numberDouble': 'NaN'}}", -2, 0},
        {"{'v': 'x'}", -1, 0},
    };
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++) {
        bson_t *d = J(whole[i].json);
        bson_value_t v = vfield(d);
        int64_t got = 0;
        int rc = bv_whole_int64(&v, &got);
        bson_destroy(d);
        CHECK_MSG(rc == whole[i].rc && (rc != 0 || got == whole[i].want),
                  "bv_whole_int64(%s) = %d, %" PRId64, whole[i].json, rc, got);
    }
    bson_value_t a = {.value_type = BSON_TYPE_INT32}, b = {.value_type = BSON_TYPE_INT32}, r;
    a.value.v_int32 = INT32_MAX;
    b.value.v_int32 = 1;
    CHECK(bv_int_arith(BV_ADD, &a, &b, &r));
    CHECK(r.value_type == BSON_TYPE_INT64 && r.value.v_int64 == (int64_t)INT32_MAX + 1);
    b.value.v_int32 = -3;
    CHECK(bv_int_arith(BV_MUL, &a, &b, &a)); /* out aliases a */
    CHECK(a.value_type == BSON_TYPE_INT64 && a.value.v_int64 == (int64_t)INT32_MAX * -3);
    a.value_type = BSON_TYPE_INT32;
    a.value.v_int32 = -6;
    CHECK(bv_int_arith(BV_MUL, &a, &b, &r));
    CHECK(r.value_type == BSON_TYPE_INT32 && r.value.v_int32 == 18);
    a.value_type = BSON_TYPE_INT64;
    a.value.v_int64 = INT64_MAX;
    r.value_type = BSON_TYPE_NULL;
    CHECK(!bv_int_arith(BV_MUL, &a, &b, &r));
    CHECK(r.value_type == BSON_TYPE_NULL); /* untouched on overflow */
    CHECK_STR_EQ(bv_type_name(BSON_TYPE_EOD), "missing");
    CHECK_STR_EQ(bv_type_name(BSON_TYPE_INT64), "long");
    CHECK_STR_EQ(bv_type_name(BSON_TYPE_CODEWSCOPE), "javascriptWithScope");
    bson_t *d = J("{'v': {'x': [1, 'y']}}");
    bson_value_t v = vfield(d);
    char buf[64];
    CHECK_STR_EQ(bv_render_json(&v, buf, sizeof buf), "{ \"x\" : [ 1, \"y\" ] }");
    CHECK_STR_EQ(bv_render_json(&v, buf, 5), "{ \"x");
    bson_destroy(d);
}

TEST(code_names)
{
    CHECK_STR_EQ(mdb_code_name(11000), "DuplicateKey");
    CHECK_STR_EQ(mdb_code_name(2), "BadValue");
    CHECK_STR_EQ(mdb_code_name(59), "CommandNotFound");
    CHECK_STR_EQ(mdb_code_name(40324), "Location40324");
    bson_error_t err;
    CHECK_INT_EQ(mdb_error(&err, 14, "x %d", 5), -1);
    CHECK_INT_EQ(err.code, 14);
    CHECK_STR_EQ(err.message, "x 5");
}

TEST_MAIN(TEST_ENTRY(cross_type_order), TEST_ENTRY(numbers_compare_across_types),
          TEST_ENTRY(documents_and_arrays), TEST_ENTRY(path_visit), TEST_ENTRY(sort_keys),
          TEST_ENTRY(index_keys), TEST_ENTRY(hostile_nesting_does_not_recurse_unbounded),
          TEST_ENTRY(depth_limit), TEST_ENTRY(numeric_helpers), TEST_ENTRY(code_names))
