/*
 * test_engine_fuzz: randomized robustness and property checks of the document engine.
 *
 * A deterministic generator (fixed seeds) builds random documents, filters, updates and sort
 * specs, including malformed ones. Properties checked:
 *   - a filter either compiles or fails with a MongoDB code; {$nor: [f]} matches exactly the
 *     documents f does not match;
 *   - an update either fails with a code or produces valid BSON whose _id is unchanged;
 *   - sortspec_sort leaves documents ordered by sortspec_compare;
 *   - projections and pipelines never crash (run under ASan/UBSan in CI).
 */
#include "engine/aggregate.h"

#include <math.h>
#include "base/bsonval.h"
#include "engine_util.h"
#include "base/errors.h"
#include "engine/match.h"
#include "engine/project.h"
#include "engine/sortspec.h"
#include "test.h"
#include "engine/update.h"

#include <math.h>

static uint64_t rng_state;

/* Iterations per test: 3000 by default (fast in CI); MINICRM_FUZZ_ITERS runs longer locally. */
static int iters(void)
{
    const char *e = getenv("MINICRM_FUZZ_ITERS");
    long n = e ? strtol(e, NULL, 10) : 0;
    return n > 0 && n < 100000000 ? (int)n : 3000;
}

static uint32_t rnd(uint32_t n)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)((rng_state >> 33) % n);
}

static const char *const FIELDS[] = {"a", "b", "a.b", "a.0", "c.d.e", "a.1.b", "_id", "tags"};
static const char *const NAMES[] = {"a", "b", "c", "d", "e", "tags"};

/* Functions rather than the BSON_APPEND_* macros, which may evaluate arguments twice (each
 * rnd() call must happen exactly once). */
static void app_utf8(bson_t *b, const char *key, const char *val)
{
    bson_append_utf8(b, key, -1, val, -1);
}

static void app_i32(bson_t *b, const char *key, int32_t v)
{
    bson_append_int32(b, key, -1, v);
}

static void random_value(bson_t *b, const char *key, int depth);

static void random_doc_body(bson_t *b, int depth)
{
    int n = (int)rnd(4);
    for (int i = 0; i < n; i++)
        random_value(b, NAMES[rnd(6)], depth + 1);
}

static void random_value(bson_t *b, const char *key, int depth)
{
    uint32_t t = rnd(depth > 3 ? 8 : 11);
    bson_t sub;
    switch (t) {
    case 0:
        app_i32(b, key, (int32_t)rnd(5) - 2);
        break;
    case 1:
        BSON_APPEND_INT64(b, key, (int64_t)rnd(5) - 2);
        break;
    case 2:
        bson_append_double(b, key, -1, rnd(10) == 0 ? NAN : (double)rnd(9) / 2 - 2);
        break;
    case 3:
        app_utf8(b, key, rnd(2) ? "x" : "Xy");
        break;
    case 4:
        BSON_APPEND_NULL(b, key);
        break;
    case 5:
        bson_append_bool(b, key, -1, rnd(2));
        break;
    case 6:
        bson_append_date_time(b, key, -1, rnd(3));
        break;
    case 7:
        app_utf8(b, key, "$a");
        break;
    case 8:
    case 9:
        bson_append_document_begin(b, key, -1, &sub);
        random_doc_body(&sub, depth);
        bson_append_document_end(b, &sub);
        break;
    default: {
        bson_append_array_begin(b, key, -1, &sub);
        int n = (int)rnd(4);
        for (int i = 0; i < n; i++) {
            char k[8];
            snprintf(k, sizeof k, "%d", i);
            random_value(&sub, k, depth + 1);
        }
        bson_append_array_end(b, &sub);
    }
    }
}

static const char *const OPS[] = {"$eq",  "$ne",        "$gt",     "$gte",  "$lt",   "$lte",
                                  "$in",  "$nin",       "$exists", "$type", "$size", "$all",
                                  "$not", "$elemMatch", "$regex",  "$mod",  "$foo"};

static void random_filter(bson_t *f, int depth)
{
    int n = 1 + (int)rnd(3);
    for (int i = 0; i < n; i++) {
        uint32_t kind = rnd(depth > 2 ? 3 : 5);
        if (kind == 3 || kind == 4) {
            static const char *const LOG[] = {"$and", "$or", "$nor"};
            bson_t arr, sub;
            bson_append_array_begin(f, LOG[rnd(3)], -1, &arr);
            int m = (int)rnd(3); /* 0 elements: an error case */
            for (int j = 0; j < m; j++) {
                char k[8];
                snprintf(k, sizeof k, "%d", j);
                bson_append_document_begin(&arr, k, -1, &sub);
                random_filter(&sub, depth + 1);
                bson_append_document_end(&arr, &sub);
            }
            bson_append_array_end(f, &arr);
            continue;
        }
        const char *field = FIELDS[rnd(8)];
        if (kind == 0) {
            random_value(f, field, 2);
            continue;
        }
        bson_t ops;
        bson_append_document_begin(f, field, -1, &ops);
        const char *op = OPS[rnd(sizeof OPS / sizeof OPS[0])];
        if (strcmp(op, "$in") == 0 || strcmp(op, "$nin") == 0 || strcmp(op, "$all") == 0 ||
            strcmp(op, "$mod") == 0) {
            bson_t arr;
            bson_append_array_begin(&ops, op, -1, &arr);
            int m = (int)rnd(3);
            for (int j = 0; j < m; j++) {
                char k[8];
                snprintf(k, sizeof k, "%d", j);
                random_value(&arr, k, 3);
            }
            bson_append_array_end(&ops, &arr);
        } else if (strcmp(op, "$not") == 0 || strcmp(op, "$elemMatch") == 0) {
            bson_t sub;
            bson_append_document_begin(&ops, op, -1, &sub);
            if (rnd(2))
                app_i32(&sub, OPS[rnd(6)], (int32_t)rnd(3));
            else
                random_filter(&sub, depth + 1);
            bson_append_document_end(&ops, &sub);
        } else if (strcmp(op, "$regex") == 0) {
            app_utf8(&ops, op, rnd(4) ? "^x" : "(");
            if (rnd(2))
                app_utf8(&ops, "$options", rnd(4) ? "i" : "q");
        } else if (strcmp(op, "$type") == 0) {
            if (rnd(2))
                app_utf8(&ops, op, rnd(2) ? "number" : "string");
            else
                app_i32(&ops, op, (int32_t)rnd(20));
        } else {
            random_value(&ops, op, 3);
        }
        bson_append_document_end(f, &ops);
    }
}

static bson_t *random_document(int id)
{
    bson_t *d = bson_new();
    app_i32(d, "_id", id);
    random_doc_body(d, 0);
    return d;
}

TEST(filters_compile_or_fail_and_nor_inverts)
{
    rng_state = 42;
    bson_t *docs[40];
    for (int i = 0; i < 40; i++)
        docs[i] = random_document(i);
    int compiled = 0, failed = 0;
    for (int iter = 0, n_iter = iters(); iter < n_iter; iter++) {
        bson_t f = BSON_INITIALIZER;
        random_filter(&f, 0);
        bson_error_t err;
        matcher *m = matcher_new(&f, &err);
        if (!m) {
            failed++;
            CHECK_MSG(err.domain == MDB_ERROR_DOMAIN && err.code != 0 && err.message[0],
                      "error without code for %s", JS(&f));
            bson_destroy(&f);
            continue;
        }
        compiled++;
        bson_t nor = BSON_INITIALIZER, arr;
        bson_append_array_begin(&nor, "$nor", 4, &arr);
        bson_append_document(&arr, "0", 1, &f);
        bson_append_array_end(&nor, &arr);
        matcher *mn = matcher_new(&nor, &err);
        CHECK(mn);
        for (int i = 0; i < 40; i++)
            CHECK_MSG(matcher_matches(m, docs[i]) != matcher_matches(mn, docs[i]),
                      "$nor does not invert %s", JS(&f));
        match_bounds b;
        (void)matcher_field_bounds(m, "a", iter % 2, &b);
        matcher_free(mn);
        matcher_free(m);
        bson_destroy(&nor);
        bson_destroy(&f);
    }
    for (int i = 0; i < 40; i++)
        bson_destroy(docs[i]);
    /* The generator must exercise both outcomes, or this test checks nothing. */
    CHECK(compiled > 500 && failed > 100);
}

static const char *const UOPS[] = {"$set",  "$unset", "$inc",      "$mul",    "$min", "$max",
                                   "$push", "$pull",  "$addToSet", "$rename", "$pop", "$bad"};

TEST(updates_valid_or_error)
{
    rng_state = 7;
    int applied = 0, failed = 0;
    for (int iter = 0, n_iter = iters(); iter < n_iter; iter++) {
        bson_t *doc = random_document(iter);
        bson_t u = BSON_INITIALIZER, args;
        int nops = 1 + (int)rnd(2);
        for (int k = 0; k < nops; k++) {
            const char *op = UOPS[rnd(sizeof UOPS / sizeof UOPS[0])];
            bson_append_document_begin(&u, op, -1, &args);
            const char *field = FIELDS[rnd(8)];
            if (strcmp(op, "$rename") == 0) {
                /* One rnd() call: the macro may evaluate its value argument twice. */
                const char *to = NAMES[rnd(6)];
                app_utf8(&args, field, to);
            } else
                random_value(&args, field, 3);
            bson_append_document_end(&u, &args);
        }
        bson_error_t err;
        updater *up = updater_new(&u, &err);
        if (up) {
            bson_t out;
            bson_init(&out);
            bool mod;
            if (updater_apply(up, doc, rnd(2), &out, &mod, &err) == 0) {
                applied++;
                size_t off;
                CHECK_MSG(bson_validate(&out, BSON_VALIDATE_NONE, &off), "invalid BSON from %s",
                          JS(&u));
                bson_iter_t a, b;
                CHECK(bson_iter_init_find(&a, doc, "_id") && bson_iter_init_find(&b, &out, "_id"));
                CHECK(bv_equal(bson_iter_value(&a), bson_iter_value(&b)));
            } else {
                failed++;
                CHECK(err.domain == MDB_ERROR_DOMAIN && err.code != 0);
            }
            bson_destroy(&out);
        } else {
            failed++;
            CHECK(err.domain == MDB_ERROR_DOMAIN && err.code != 0);
        }
        updater_free(up);
        bson_destroy(&u);
        bson_destroy(doc);
    }
    CHECK(applied > 500 && failed > 100);
}

typedef struct {
    const bson_t **docs;
    size_t n, pos;
} array_src;

static int array_next(void *ctx, const bson_t **doc, bson_error_t *err)
{
    array_src *s = ctx;
    (void)err;
    if (s->pos == s->n)
        return 0;
    *doc = s->docs[s->pos++];
    return 1;
}

TEST(sort_orders_and_pipelines_survive)
{
    rng_state = 99;
    const bson_t *ptrs[200];
    bson_t *docs[200];
    for (int i = 0; i < 200; i++)
        ptrs[i] = docs[i] = random_document(i);
    for (int iter = 0; iter < 50; iter++) {
        bson_t spec = BSON_INITIALIZER;
        app_i32(&spec, FIELDS[rnd(8)], rnd(2) ? 1 : -1);
        if (rnd(2))
            app_i32(&spec, NAMES[rnd(6)], rnd(2) ? 1 : -1);
        bson_error_t err;
        sortspec *s = sortspec_new(&spec, false, &err);
        CHECK(s);
        CHECK_INT_EQ(sortspec_sort(s, ptrs, 200, &err), 0);
        for (int i = 0; i + 1 < 200; i++)
            CHECK_MSG(sortspec_compare(s, ptrs[i], ptrs[i + 1]) <= 0, "unsorted at %d for %s", i,
                      JS(&spec));
        sortspec_free(s);

        /* Projections and a pipeline over the same documents must not crash. */
        bson_t proj = BSON_INITIALIZER;
        app_i32(&proj, FIELDS[rnd(8)], (int32_t)rnd(2));
        if (rnd(2))
            app_utf8(&proj, "z", "$a.b");
        projection *p = projection_new(&proj, &err);
        for (int i = 0; p && i < 200; i++) {
            bson_t out;
            bson_init(&out);
            projection_apply(p, ptrs[i], &out);
            bson_destroy(&out);
        }
        projection_free(p);
        bson_destroy(&proj);
        bson_destroy(&spec);
    }
    /* $unwind (preserving) then $group: the group counts add up to the unwound documents. */
    bson_t *pipe = J("{'0': {'$unwind': {'path': '$tags', 'preserveNullAndEmptyArrays': true}},"
                     " '1': {'$group': {'_id': '$a', 'n': {'$sum': 1}, 's': {'$sum': '$b'},"
                     " 'm': {'$max': '$c'}, 'p': {'$addToSet': '$d'}}},"
                     " '2': {'$sort': {'n': -1, '_id': 1}}}");
    bson_error_t err;
    agg_pipeline *ap = agg_pipeline_new(pipe, &err);
    CHECK(ap);
    array_src src = {ptrs, 200, 0};
    agg_input in = {.next = array_next, .ctx = &src};
    bson_t **res = NULL;
    size_t nres = 0;
    CHECK_INT_EQ(agg_pipeline_collect(ap, &in, 0, &res, &nres, &err), 0);
    int64_t expect = 0, got = 0;
    for (int i = 0; i < 200; i++) {
        bson_iter_t it;
        uint32_t k = 0;
        if (bson_iter_init_find(&it, ptrs[i], "tags") && BSON_ITER_HOLDS_ARRAY(&it)) {
            bson_t arr;
            uint32_t len;
            const uint8_t *data;
            bson_iter_array(&it, &len, &data);
            bson_init_static(&arr, data, len);
            k = bson_count_keys(&arr);
        }
        expect += k ? k : 1;
    }
    for (size_t i = 0; i < nres; i++) {
        bson_iter_t it;
        CHECK(bson_iter_init_find(&it, res[i], "n"));
        got += bson_iter_as_int64(&it);
    }
    CHECK_INT_EQ(got, expect);
    agg_pipeline_free(ap);
    bson_destroy(pipe);
    agg_results_free(res, nres);
    for (int i = 0; i < 200; i++)
        bson_destroy(docs[i]);
}

TEST_MAIN(TEST_ENTRY(filters_compile_or_fail_and_nor_inverts), TEST_ENTRY(updates_valid_or_error),
          TEST_ENTRY(sort_orders_and_pipelines_survive))
