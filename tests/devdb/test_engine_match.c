/* test_engine_match: query filters (devdb/match) against MongoDB 4.4 semantics. */
#include "engine_util.h"
#include "base/errors.h"
#include "engine/match.h"
#include "test.h"

/* 1 if `filter` matches `doc`, 0 if not, -1 if the filter does not compile. */
static int M(const char *filter, const char *doc)
{
    bson_t *f = J(filter), *d = J(doc);
    bson_error_t err;
    matcher *m = matcher_new(f, &err);
    int r = -1;
    if (m)
        r = matcher_matches(m, d) ? 1 : 0;
    matcher_free(m);
    bson_destroy(f);
    bson_destroy(d);
    return r;
}

/* Compiles `filter` expecting failure; returns the error (static). */
static bson_error_t *E(const char *filter)
{
    static bson_error_t err;
    memset(&err, 0, sizeof err);
    bson_t *f = J(filter);
    matcher *m = matcher_new(f, &err);
    if (m) {
        matcher_free(m);
        snprintf(err.message, sizeof err.message, "(compiled)");
        err.code = 0;
    }
    bson_destroy(f);
    return &err;
}

/* libbson's JSON parser reads {"$type": ...} as legacy binary, so $type filters are built from
 * the operand: {path: {$type: <operand JSON>}}. */
static bson_t *type_filter(const char *path, const char *operand)
{
    char json[256];
    snprintf(json, sizeof json, "{'t': %s}", operand);
    bson_t *t = J(json), *f = bson_new(), sub;
    bson_iter_t it;
    bson_iter_init_find(&it, t, "t");
    BSON_APPEND_DOCUMENT_BEGIN(f, path, &sub);
    bson_append_value(&sub, "$type", 5, bson_iter_value(&it));
    bson_append_document_end(f, &sub);
    bson_destroy(t);
    return f;
}

static int MT(const char *operand, const char *doc)
{
    bson_t *f = type_filter("a", operand), *d = J(doc);
    bson_error_t err;
    matcher *m = matcher_new(f, &err);
    int r = m ? (matcher_matches(m, d) ? 1 : 0) : -1;
    matcher_free(m);
    bson_destroy(f);
    bson_destroy(d);
    return r;
}

static const char *ET(const char *operand)
{
    static bson_error_t err;
    bson_t *f = type_filter("a", operand);
    matcher *m = matcher_new(f, &err);
    if (m)
        snprintf(err.message, sizeof err.message, "(compiled)");
    matcher_free(m);
    bson_destroy(f);
    return err.message;
}

TEST(equality)
{
    static const eng_int_case m_cases[] = {
        {"{}", "{'a': 1}", 1},
        {"{'a': 1}", "{'a': 1}", 1},
        {"{'a': 1}", "{'a': 1.0}", 1},
        {"{'a': 1}", "{'a': {'$numberLong': '1'}}", 1},
        {"{'a': 1}", "{'a': '1'}", 0},
        {"{'a': 1}", "{'b': 1}", 0},
        {"{'a': 1, 'b': 2}", "{'a': 1, 'b': 3}", 0},
        {"{'a': {'$eq': 2}}", "{'a': [1, 2]}", 1},
        {"{'a': [1, 2]}", "{'a': [1, 2]}", 1},
        {"{'a': [1, 2]}", "{'a': [2, 1]}", 0},
        {"{'a': [1, 2]}", "{'a': [[1, 2], 3]}", 1},
        {"{'a': {'b': 1}}", "{'a': {'b': 1.0}}", 1},
        {"{'a': {'b': 1}}", "{'a': {'b': 1, 'c': 2}}", 0},
        {"{'a.b': 1}", "{'a': {'b': 1, 'c': 2}}", 1},
        {"{'a.b': 1}", "{'a': [{'b': 0}, {'b': 1}]}", 1},
        {"{'a.b': 1}", "{'a': [{'b': [0, 1]}]}", 1},
        {"{'a.1': 5}", "{'a': [4, 5]}", 1},
        {"{'a.0': 5}", "{'a': [4, 5]}", 0},
        {"{'a.1.b': 5}", "{'a': [{'b': 4}, {'b': 5}]}", 1},
        {"{'a.b.c': 'x'}", "{'a': {'b': [{'c': 'y'}, {'c': 'x'}]}}", 1},
        {"{'_id': {'$oid': '5f0000000000000000000001'}}",
         "{'_id': {'$oid': '5f0000000000000000000001'}}", 1},
    };
    CHECK_INT_CASES(M, m_cases);
}

TEST(null_and_missing)
{
    static const eng_int_case m_cases[] = {
        {"{'a': null}", "{'b': 1}", 1},
        {"{'a': null}", "{'a': null}", 1},
        {"{'a': null}", "{'a': 0}", 0},
        {"{'a.b': null}", "{'a': {'c': 1}}", 1},
        {"{'a.b': null}", "{'a': [{'b': 1}, {'c': 1}]}", 1},
        {"{'a.b': null}", "{'a': [{'b': 1}]}", 0},
        {"{'a': {'$ne': null}}", "{'b': 1}", 0},
        {"{'a': {'$ne': null}}", "{'a': 1}", 1},
        {"{'a': {'$gte': null}}", "{'b': 1}", 1},
        {"{'a': {'$lt': null}}", "{'b': 1}", 0},
        {"{'a': {'$in': [null, 5]}}", "{'b': 1}", 1},
        {"{'a': {'$nin': [null]}}", "{'b': 1}", 0},
    };
    CHECK_INT_CASES(M, m_cases);
}

TEST(comparisons_stay_in_type_bracket)
{
    static const eng_int_case m_cases[] = {
        {"{'a': {'$gt': 5}}", "{'a': 6}", 1},
        {"{'a': {'$gt': 5}}", "{'a': 5.5}", 1},
        {"{'a': {'$gt': 5}}", "{'a': 5}", 0},
        {"{'a': {'$gte': 5}}", "{'a': {'$numberLong': '5'}}", 1},
        {"{'a': {'$gt': 5}}", "{'a': 'zzz'}", 0},
        {"{'a': {'$lt': 'b'}}", "{'a': 1}", 0},
        {"{'a': {'$lt': 'b'}}", "{'a': 'a'}", 1},
        {"{'a': {'$gt': 5}}", "{'a': {'x': 1}}", 0},
        {"{'a': {'$gt': 5}}", "{'a': [1, 7]}", 1},
        {"{'a': {'$gt': 1, '$lt': 5}}", "{'a': [0, 10]}", 1},
        {"{'a': {'$gt': 1, '$lt': 5}}", "{'a': 10}", 0},
        {"{'a': {'$lte': 5}}", "{'b': 1}", 0},
        {"{'a': {'$gt': {'$date': {'$numberLong': '1000'}}}}",
         "{'a': {'$date': {'$numberLong': '2000'}}}", 1},
        {"{'a': {'$gt': {'$minKey': 1}}}", "{'a': 'x'}", 1},
        {"{'a': {'$gt': {'$numberDouble': 'NaN'}}}", "{'a': 1}", 0},
        {"{'a': {'$gte': {'$numberDouble': 'NaN'}}}", "{'a': {'$numberDouble': 'NaN'}}", 1},
        {"{'a': {'$lt': {'$numberDouble': 'NaN'}}}", "{'a': 1}", 0},
        {"{'a': {'$gt': [1]}}", "{'a': [2]}", 1},
    };
    CHECK_INT_CASES(M, m_cases);
}

TEST(in_nin_ne)
{
    static const eng_int_case m_cases[] = {
        {"{'a': {'$in': [1, 'x']}}", "{'a': 'x'}", 1},
        {"{'a': {'$in': [1, 'x']}}", "{'a': 2}", 0},
        {"{'a': {'$in': [1, 'x']}}", "{'a': [3, 1.0]}", 1},
        {"{'a': {'$in': []}}", "{'a': 1}", 0},
        /* Long lists (binary search over a sorted copy) answer as the short ones do. */
        {"{'a': {'$in': [9, 'z', 1, 'x', 7, 3.5, true, null, 5, 2, {'$numberLong': '4'}, 8]}}",
         "{'a': 4.0}", 1},
        {"{'a': {'$in': [9, 'z', 1, 'x', 7, 3.5, true, null, 5, 2, {'$numberLong': '4'}, 8]}}",
         "{'a': 'x'}", 1},
        {"{'a': {'$in': [9, 'z', 1, 'x', 7, 3.5, true, null, 5, 2, {'$numberLong': '4'}, 8]}}",
         "{'a': 6}", 0},
        {"{'a': {'$in': [9, 'z', 1, 'x', 7, 3.5, true, null, 5, 2, {'$numberLong': '4'}, 8]}}",
         "{'b': 1}", 1},
        {"{'a': {'$in': [9, 'z', 1, 'x', 7, 3.5, true, null, 5, 2, {'$numberLong': '4'}, 8]}}",
         "{'a': [6, 'q', true]}", 1},
        {"{'a': {'$in': [9, 'z', 1, 'x', 7, 3.5, 6, 0, 5, 2, 11, 8]}}", "{'a': [12, 'q']}", 0},
        {"{'a': {'$nin': [9, 'z', 1, 'x', 7, 3.5, 6, 0, 5, 2, 11, 8]}}", "{'a': 'y'}", 1},
        {"{'a': {'$nin': [9, 'z', 1, 'x', 7, 3.5, 6, 0, 5, 2, 11, 8]}}", "{'a': 3.5}", 0},
        {"{'a': {'$in': [{'$regularExpression': {'pattern': '^ab', 'options': ''}}]}}",
         "{'a': 'abc'}", 1},
        {"{'a': {'$nin': [1, 2]}}", "{'a': 3}", 1},
        {"{'a': {'$nin': [1, 2]}}", "{'a': [3, 2]}", 0},
        {"{'a': {'$nin': [1, 2]}}", "{'b': 1}", 1},
        {"{'a': {'$ne': 1}}", "{'a': [1, 2]}", 0},
        {"{'a': {'$ne': 1}}", "{'a': [2]}", 1},
        {"{'a': {'$ne': 1}}", "{'b': 2}", 1},
    };
    CHECK_INT_CASES(M, m_cases);
    CHECK_INT_EQ(E("{'a': {'$in': 5}}")->code, MDB_BAD_VALUE);
    CHECK_STR_EQ(E("{'a': {'$in': 5}}")->message, "$in needs an array");
    CHECK_STR_EQ(E("{'a': {'$in': [{'$gt': 1}]}}")->message, "cannot nest $ under $in");
}

TEST(logical)
{
    static const eng_int_case m_cases[] = {
        {"{'$or': [{'a': 1}, {'b': 2}]}", "{'b': 2}", 1},
        {"{'$or': [{'a': 1}, {'b': 2}]}", "{'b': 3}", 0},
        {"{'$and': [{'a': 1}, {'b': 2}]}", "{'a': 1, 'b': 2}", 1},
        {"{'$and': [{'a': 1}, {'b': 2}]}", "{'a': 1}", 0},
        {"{'$nor': [{'a': 1}, {'b': 2}]}", "{'a': 2}", 1},
        {"{'$nor': [{'a': 1}, {'b': 2}]}", "{'a': 1}", 0},
        {"{'a': {'$not': {'$gt': 5}}}", "{'a': 3}", 1},
        {"{'a': {'$not': {'$gt': 5}}}", "{'a': 'x'}", 1},
        {"{'a': {'$not': {'$gt': 5}}}", "{'b': 1}", 1},
        {"{'a': {'$not': {'$gt': 5}}}", "{'a': 6}", 0},
        {"{'a': {'$not': {'$regularExpression': {'pattern': '^x', 'options': ''}}}}", "{'a': 'xy'}",
         0},
        {"{'$comment': 'hi', 'a': 1}", "{'a': 1}", 1},
    };
    CHECK_INT_CASES(M, m_cases);
    CHECK_INT_EQ(E("{'$or': []}")->code, MDB_BAD_VALUE);
    CHECK_STR_EQ(E("{'$or': []}")->message, "$and/$or/$nor must be a nonempty array");
    CHECK_STR_EQ(E("{'$or': [1]}")->message, "$or/$and/$nor entries need to be full objects");
    CHECK_STR_EQ(E("{'$foo': 1}")->message, "unknown top level operator: $foo");
    CHECK_STR_EQ(E("{'a': {'$foo': 1}}")->message, "unknown operator: $foo");
    CHECK_INT_EQ(E("{'a': {'$foo': 1}}")->code, MDB_BAD_VALUE);
    CHECK_STR_EQ(E("{'a': {'$not': {}}}")->message, "$not cannot be empty");
    CHECK_STR_EQ(E("{'a': {'$not': 5}}")->message, "$not needs a regex or a document");
}

TEST(exists_type_size_mod)
{
    static const eng_int_case m_cases[] = {
        {"{'a': {'$exists': true}}", "{'a': null}", 1},
        {"{'a': {'$exists': true}}", "{'b': 1}", 0},
        {"{'a': {'$exists': false}}", "{'b': 1}", 1},
        {"{'a': {'$exists': 0}}", "{'a': 1}", 0},
        {"{'a.b': {'$exists': true}}", "{'a': [{'c': 1}, {'b': 2}]}", 1},
    };
    CHECK_INT_CASES(M, m_cases);
    static const eng_int_case mt_cases[] = {
        {"'string'", "{'a': 'x'}", 1},
        {"2", "{'a': 'x'}", 1},
        {"'number'", "{'a': {'$numberLong': '3'}}", 1},
        {"'number'", "{'a': '3'}", 0},
        {"['int', 'string']", "{'a': 4}", 1},
        {"'double'", "{'a': 4}", 0},
        {"'array'", "{'a': []}", 1},
        {"'string'", "{'a': [1, 'x']}", 1},
        {"'null'", "{'b': 1}", 0},
        {"'minKey'", "{'a': {'$minKey': 1}}", 1},
    };
    CHECK_INT_CASES(MT, mt_cases);
    CHECK_STR_EQ(ET("'foo'"), "Unknown type name alias: foo");
    CHECK_STR_EQ(ET("100"), "Invalid numerical type code: 100");
    static const eng_int_case m_cases2[] = {
        {"{'a': {'$size': 2}}", "{'a': [1, [2, 3]]}", 1},
        {"{'a': {'$size': 0}}", "{'a': []}", 1},
        {"{'a': {'$size': 1}}", "{'a': 1}", 0},
        {"{'a': {'$size': 1}}", "{'a': [[1, 2]]}", 1},
        {"{'a.b': {'$size': 2}}", "{'a': [{'b': [1, 2]}]}", 1},
    };
    CHECK_INT_CASES(M, m_cases2);
    CHECK_STR_EQ(E("{'a': {'$size': -1}}")->message, "$size may not be negative");
    CHECK_INT_EQ(M("{'a': {'$mod': [4, 1]}}", "{'a': 9}"), 1);
    CHECK_INT_EQ(M("{'a': {'$mod': [4, 1]}}", "{'a': 10}"), 0);
}

TEST(regex)
{
    static const eng_int_case m_cases[] = {
        {"{'a': {'%regex': '^ab'}}", "{'a': 'abc'}", 1},
        {"{'a': {'%regex': '^ab'}}", "{'a': 'ABC'}", 0},
        {"{'a': {'%regex': '^ab', '%options': 'i'}}", "{'a': 'ABC'}", 1},
        {"{'a': {'$regularExpression': {'pattern': '^ab', 'options': 'i'}}}", "{'a': 'ABc'}", 1},
        {"{'a': {'%regex': '^b', '%options': 'm'}}", "{'a': 'a\\nb'}", 1},
        {"{'a': {'%regex': '^b'}}", "{'a': 'a\\nb'}", 0},
        {"{'a': {'%regex': 'a.b', '%options': 's'}}", "{'a': 'a\\nb'}", 1},
        {"{'a': {'%regex': 'a b # comment', '%options': 'x'}}", "{'a': 'ab'}", 1},
        {"{'a': {'%regex': 'x'}}", "{'a': ['y', 'zx']}", 1},
        {"{'a': {'%regex': '1'}}", "{'a': 1}", 0},
        {"{'a': {'%regex': 'é'}}", "{'a': 'café'}", 1},
        {"{'a': {'$eq': {'$regularExpression': {'pattern': 'x', 'options': ''}}}}", "{'a': 'x'}",
         0},
        {"{'a': {'$eq': {'$regularExpression': {'pattern': 'x', 'options': ''}}}}",
         "{'a': {'$regularExpression': {'pattern': 'x', 'options': ''}}}", 1},
    };
    CHECK_INT_CASES(M, m_cases);
    CHECK_INT_EQ(E("{'a': {'%regex': '('}}")->code, 51091);
    CHECK_STR_CONTAINS(E("{'a': {'%regex': '('}}")->message, "Regular expression is invalid");
    CHECK_STR_EQ(E("{'a': {'%options': 'i'}}")->message, "$options needs a $regex");
    CHECK_STR_EQ(E("{'a': {'%regex': 'a', '%options': 'q'}}")->message,
                 "invalid flag in regex options: q");
}

TEST(elem_match_and_all)
{
    static const eng_int_case m_cases[] = {
        {"{'a': {'$elemMatch': {'$gt': 1, '$lt': 5}}}", "{'a': [0, 10]}", 0},
        {"{'a': {'$elemMatch': {'$gt': 1, '$lt': 5}}}", "{'a': [0, 3]}", 1},
        {"{'a': {'$elemMatch': {'$gt': 1}}}", "{'a': 3}", 0},
        {"{'a': {'$elemMatch': {'b': 1, 'c': 2}}}", "{'a': [{'b': 1, 'c': 1}, {'b': 2, 'c': 2}]}",
         0},
        {"{'a': {'$elemMatch': {'b': 1, 'c': 2}}}", "{'a': [{'b': 1, 'c': 1}, {'b': 1, 'c': 2}]}",
         1},
        {"{'a': {'$elemMatch': {'b': {'$gte': 2}}}}", "{'a': [{'b': 1}, {'b': 3}]}", 1},
        {"{'x.a': {'$elemMatch': {'b': 1}}}", "{'x': [{'a': [{'b': 1}]}]}", 1},
        {"{'a': {'$elemMatch': {'$or': [{'b': 1}, {'c': 1}]}}}", "{'a': [{'c': 1}]}", 1},
    };
    CHECK_INT_CASES(M, m_cases);
    CHECK_STR_EQ(E("{'a': {'$elemMatch': 1}}")->message, "$elemMatch needs an Object");
    static const eng_int_case m_cases2[] = {
        {"{'a': {'$all': [1, 2]}}", "{'a': [2, 3, 1]}", 1},
        {"{'a': {'$all': [1, 2]}}", "{'a': [2, 3]}", 0},
        {"{'a': {'$all': [1]}}", "{'a': 1}", 1},
        {"{'a': {'$all': []}}", "{'a': [1]}", 0},
        {"{'a': {'$all': [[1, 2]]}}", "{'a': [1, 2]}", 1},
        {"{'a': {'$all': [{'$elemMatch': {'b': 1}}, {'$elemMatch': {'b': 2}}]}}",
         "{'a': [{'b': 1}, {'b': 2}]}", 1},
    };
    CHECK_INT_CASES(M, m_cases2);
}

static void bounds(const char *filter, const char *path, bool mk, match_bounds *b, bool *ok)
{
    bson_t *f = J(filter);
    bson_error_t err;
    matcher *m = matcher_new(f, &err);
    *ok = m && matcher_field_bounds(m, path, mk, b);
    matcher_free(m); /* values in b are not used after this except by type/scalars below */
    bson_destroy(f);
}

TEST(index_bounds)
{
    bson_t *f = J("{'a': 5, 'b': {'$gt': 1, '$lte': 9}, 'c': {'$in': [3, 1, 3]}, "
                  "'$and': [{'d': {'$gte': 'k'}}], '$or': [{'e': 1}], 'f': {'$ne': 1}}");
    bson_error_t err;
    matcher *m = matcher_new(f, &err);
    CHECK(m);
    match_bounds b;
    CHECK(matcher_field_bounds(m, "a", false, &b));
    CHECK_INT_EQ(b.n_points, 1);
    CHECK_INT_EQ(b.points[0]->value.v_int32, 5);
    CHECK(matcher_field_bounds(m, "b", false, &b));
    CHECK(b.n_points == 0 && b.has_lo && !b.lo_inclusive && b.has_hi && b.hi_inclusive);
    CHECK_INT_EQ(b.lo.value.v_int32, 1);
    CHECK_INT_EQ(b.hi.value.v_int32, 9);
    CHECK(matcher_field_bounds(m, "b", true, &b)); /* multikey: first condition only */
    CHECK(b.has_lo && b.has_hi && b.hi.value_type == BSON_TYPE_DOUBLE && b.hi_inclusive);
    CHECK(matcher_field_bounds(m, "c", false, &b));
    CHECK_INT_EQ(b.n_points, 2);
    CHECK_INT_EQ(b.points[0]->value.v_int32, 1);
    CHECK_INT_EQ(b.points[1]->value.v_int32, 3);
    CHECK(matcher_field_bounds(m, "d", false, &b));
    CHECK(b.has_lo && b.lo_inclusive && b.has_hi && !b.hi_inclusive);
    CHECK(b.hi.value_type == BSON_TYPE_DOCUMENT);
    CHECK(!matcher_field_bounds(m, "e", false, &b));
    CHECK(!matcher_field_bounds(m, "f", false, &b));
    CHECK(!matcher_field_bounds(m, "zz", false, &b));
    matcher_free(m);
    bson_destroy(f);
    bool ok;
    bounds("{'a': {'$lt': 3}}", "a", false, &b, &ok);
    CHECK(ok && b.has_lo && b.lo.value_type == BSON_TYPE_DOUBLE && b.lo_inclusive);
}

TEST(depth_cap)
{
    /* {$and: [{$and: [... {a: 1} ...]}]} nested 120 deep (built directly: too deep for JSON). */
    bson_t *f = J("{'a': 1}");
    for (int i = 0; i < 120; i++) {
        bson_t *w = bson_new(), arr;
        bson_append_array_begin(w, "$and", 4, &arr);
        bson_append_document(&arr, "0", 1, f);
        bson_append_array_end(w, &arr);
        bson_destroy(f);
        f = w;
    }
    bson_error_t err;
    matcher *m = matcher_new(f, &err);
    bson_destroy(f);
    CHECK(m == NULL);
    CHECK_INT_EQ(err.code, MDB_BAD_VALUE);
    CHECK_STR_EQ(err.message, "exceeded maximum query tree depth of 100");
}

TEST_MAIN(TEST_ENTRY(equality), TEST_ENTRY(null_and_missing),
          TEST_ENTRY(comparisons_stay_in_type_bracket), TEST_ENTRY(in_nin_ne), TEST_ENTRY(logical),
          TEST_ENTRY(exists_type_size_mod), TEST_ENTRY(regex), TEST_ENTRY(elem_match_and_all),
          TEST_ENTRY(index_bounds), TEST_ENTRY(depth_cap))
