/*
 * test_engine_keyfilter: the covered count's key test (matcher_keyfilter_*, engine/match.h)
 * against the matcher itself.
 *
 *   keyfilter_equals_the_matcher
 *        random documents over the fields a, b, c, each missing or one of: int32, int64 (also
 *        past 2^53), double (fractions, -0.0, NaN, +-Infinity), decimal128, strings, dates,
 *        null, undefined, bools, ObjectIds, embedded documents, MinKey, MaxKey; random filters
 *        of 1-4 conditions ($eq, plain values, $gt, $gte, $lt, $lte, $in, $ne, $nin, at the top
 *        level or under $and, several on one field) with operands of the same kinds (and arrays
 *        for equality). For every filter matcher_paths_within accepts over an index on (a, b,
 *        c) in some order, the key filter builds, and for every document its answer on the
 *        document's index key (bv_index_keys) equals matcher_matches on the document.
 *   keyfilter_cost
 *        prints the cost per key of the key filter and of the matcher on a small document of
 *        the key's fields (what the covered count did before), for the audience count's shape
 *        {total_spend: {$gte: 5000}, last_visit_date: {$lte: t}}. No assertion on time.
 */
#include "base/bsonval.h"
#include "engine/match.h"
#include "engine_util.h"
#include "randbson.h"
#include "test.h"

#include <math.h>
#include <time.h>

static const double k_dbl[] = {-2.5, -1.0, -0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 9007199254740992.0};
static const char *const k_str[] = {"", "a", "ab", "b", "gmail.com", "yahoo.com"};
static randbson rng = {0x9e3779b97f4a7c15ull, k_dbl, sizeof k_dbl / sizeof k_dbl[0], k_str,
                       sizeof k_str / sizeof k_str[0]};

static uint32_t rnd(void)
{
    return randbson_next(&rng);
}

/* A random value under key k of b; `operand` leaves out undefined (not a query operand). */
static void rand_value(bson_t *b, const char *k, bool operand)
{
    randbson_value(&rng, b, k, operand ? 0 : RANDBSON_UNDEFINED);
}

static const char *const k_paths[] = {"a", "b", "c"};

/* One condition on a random path into f (a top-level document or an $and member). */
static void rand_cond(bson_t *f)
{
    static const char *const ops[] = {"$eq", "$gt", "$gte", "$lt", "$lte", "$in", "$ne", "$nin"};
    const char *path = k_paths[rnd() % 3];
    if (rnd() % 6 == 0) {
        rand_value(f, path, true); /* {a: v} */
        return;
    }
    bson_t sub;
    BSON_APPEND_DOCUMENT_BEGIN(f, path, &sub);
    size_t nops = 1 + (rnd() % 3 == 0);
    for (size_t i = 0; i < nops; i++) {
        const char *op = ops[rnd() % 8];
        if (!strcmp(op, "$in") || !strcmp(op, "$nin")) {
            bson_t arr;
            BSON_APPEND_ARRAY_BEGIN(&sub, op, &arr);
            size_t n = rnd() % 5;
            for (size_t j = 0; j < n; j++) {
                char key[8];
                snprintf(key, sizeof key, "%zu", j);
                rand_value(&arr, key, true);
            }
            bson_append_array_end(&sub, &arr);
        } else if (!strcmp(op, "$eq") && rnd() % 10 == 0) {
            bson_t arr;
            BSON_APPEND_ARRAY_BEGIN(&sub, op, &arr);
            BSON_APPEND_INT32(&arr, "0", 1);
            bson_append_array_end(&sub, &arr);
        } else {
            rand_value(&sub, op, true);
        }
    }
    bson_append_document_end(f, &sub);
}

static bson_t *rand_filter(void)
{
    bson_t *f = bson_new();
    size_t n = 1 + rnd() % 4;
    if (rnd() % 3 == 0) {
        bson_t arr;
        BSON_APPEND_ARRAY_BEGIN(f, "$and", &arr);
        for (size_t i = 0; i < n; i++) {
            char key[8];
            bson_t m;
            snprintf(key, sizeof key, "%zu", i);
            BSON_APPEND_DOCUMENT_BEGIN(&arr, key, &m);
            rand_cond(&m);
            bson_append_document_end(&arr, &m);
        }
        bson_append_array_end(f, &arr);
    } else {
        for (size_t i = 0; i < n; i++)
            rand_cond(f);
    }
    return f;
}

static int copy_key(const bson_t *key, void *ctx)
{
    bson_copy_to(key, ctx);
    return 0;
}

TEST(keyfilter_equals_the_matcher)
{
    enum { NDOCS = 300, NFILTERS = 4000 };
    bson_t docs[NDOCS], keys[3][NDOCS];
    const char *order[3][3] = {{"a", "b", "c"}, {"c", "a", "b"}, {"b", "c", "a"}};
    bson_t *patterns[3];
    for (int o = 0; o < 3; o++) {
        patterns[o] = bson_new();
        for (int i = 0; i < 3; i++)
            BSON_APPEND_INT32(patterns[o], order[o][i], o == 1 && i == 1 ? -1 : 1);
    }
    for (int d = 0; d < NDOCS; d++) {
        bson_init(&docs[d]);
        for (int i = 0; i < 3; i++)
            if (rnd() % 8)
                rand_value(&docs[d], k_paths[i], false);
        for (int o = 0; o < 3; o++) {
            bson_error_t e;
            bool multikey = true;
            CHECK(bv_index_keys(&docs[d], patterns[o], copy_key, &keys[o][d], &multikey, &e) == 0);
            CHECK(!multikey);
        }
    }
    long covered = 0, checks = 0, matched = 0;
    for (int i = 0; i < NFILTERS; i++) {
        bson_t *f = rand_filter();
        bson_error_t e;
        matcher *m = matcher_new(f, &e);
        if (!m) {
            bson_destroy(f);
            continue;
        }
        for (int o = 0; o < 3; o++) {
            if (!matcher_paths_within(m, order[o], 3))
                continue;
            match_keyfilter *kf = matcher_keyfilter_new(m, order[o], 3);
            if (!kf) {
                char *js = bson_as_relaxed_extended_json(f, NULL);
                fprintf(stderr, "no key filter for %s\n", js);
                bson_free(js);
            }
            CHECK(kf != NULL);
            covered++;
            for (int d = 0; d < NDOCS && kf; d++) {
                bool want = matcher_matches(m, &docs[d]);
                bool got =
                    matcher_keyfilter_matches(kf, bson_get_data(&keys[o][d]), keys[o][d].len);
                if (got != want) {
                    char *fj = bson_as_relaxed_extended_json(f, NULL);
                    char *dj = bson_as_relaxed_extended_json(&docs[d], NULL);
                    fprintf(stderr, "filter %s doc %s: matcher %d, key filter %d\n", fj, dj, want,
                            got);
                    bson_free(fj);
                    bson_free(dj);
                }
                CHECK(got == want);
                checks++;
                matched += want;
            }
            matcher_keyfilter_free(kf);
        }
        matcher_free(m);
        bson_destroy(f);
    }
    fprintf(stderr, "%ld covered filters, %ld key checks, %ld matched\n", covered, checks, matched);
    CHECK(covered > NFILTERS / 4);
    CHECK(matched > checks / 50);
    for (int d = 0; d < NDOCS; d++) {
        bson_destroy(&docs[d]);
        for (int o = 0; o < 3; o++)
            bson_destroy(&keys[o][d]);
    }
    for (int o = 0; o < 3; o++)
        bson_destroy(patterns[o]);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

TEST(keyfilter_cost)
{
    enum { N = 4096, ROUNDS = 50 };
    const char *paths[] = {"total_spend", "last_visit_date", "createdAt"};
    bson_t *f = J("{'total_spend': {'$gte': 5000.0}, 'last_visit_date': {'$lte': {'$date': "
                  "{'$numberLong': '1700000000000'}}}}");
    bson_error_t e;
    matcher *m = matcher_new(f, &e);
    CHECK(m != NULL);
    match_keyfilter *kf = matcher_keyfilter_new(m, paths, 3);
    CHECK(kf != NULL);
    bson_t *keys = calloc(N, sizeof *keys);
    for (int i = 0; i < N; i++) {
        bson_init(&keys[i]);
        BSON_APPEND_DOUBLE(&keys[i], "", (double)(rnd() % 1000000) / 100.0);
        BSON_APPEND_DATE_TIME(&keys[i], "",
                              1700000000000ll + ((int64_t)(rnd() % 60) - 30) * 86400000);
        BSON_APPEND_DATE_TIME(&keys[i], "", 1690000000000ll);
    }
    long hits = 0;
    double t0 = now_ns();
    for (int r = 0; r < ROUNDS; r++)
        for (int i = 0; i < N; i++)
            hits += matcher_keyfilter_matches(kf, bson_get_data(&keys[i]), keys[i].len);
    double t1 = now_ns();
    bson_t tmp = BSON_INITIALIZER;
    long hits2 = 0;
    for (int r = 0; r < ROUNDS / 10; r++)
        for (int i = 0; i < N; i++) {
            bson_iter_t it;
            bson_iter_init(&it, &keys[i]);
            bson_reinit(&tmp);
            for (int j = 0; j < 3 && bson_iter_next(&it); j++)
                bson_append_iter(&tmp, paths[j], -1, &it);
            hits2 += matcher_matches(m, &tmp);
        }
    double t2 = now_ns();
    fprintf(stderr, "per key: key filter %.1f ns, document + matcher %.1f ns\n",
            (t1 - t0) / (N * ROUNDS), (t2 - t1) / (N * (ROUNDS / 10)));
    CHECK(hits == hits2 * 10);
    bson_destroy(&tmp);
    for (int i = 0; i < N; i++)
        bson_destroy(&keys[i]);
    free(keys);
    matcher_keyfilter_free(kf);
    matcher_free(m);
    bson_destroy(f);
}

TEST_MAIN(TEST_ENTRY(keyfilter_equals_the_matcher), TEST_ENTRY(keyfilter_cost))
