/*
 * test_devdb_index: devdb's ordered index (storage/index.c, a B+tree) checked against a sorted
 * reference: random inserts and deletes over mixed key types (the inline-prefix types ObjectId,
 * date and string with long shared prefixes, plus numbers that take the generic comparison),
 * ascending and descending patterns, forward and backward walks, first-field seeks, duplicate
 * keys, unique violations (with undo of a multikey document), sparse documents, and emptying a
 * large index completely. Partial indexes: membership through store_replace_ex's re-keying
 * (a document leaving the filter is only removed, one entering only added, an update of other
 * fields skips the index although the filter's fields are consulted) and partial_implied_by. The
 * reference order is bv_key_compare then record id, computed independently of the index's own fast
 * paths.
 */
#include "base/bsonval.h"
#include "storage/index.h"
#include "storage/partial.h"
#include "storage/store.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

static uint32_t rng_state = 12345;

static uint32_t rnd(void)
{
    uint32_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rng_state = x;
}

static store_index *make_index(const char *pattern_json, bool unique, bool sparse)
{
    bson_error_t e;
    bson_t *key = bson_new_from_json((const uint8_t *)pattern_json, -1, &e);
    if (!key)
        abort();
    bson_t spec = BSON_INITIALIZER;
    BSON_APPEND_DOCUMENT(&spec, "key", key);
    BSON_APPEND_BOOL(&spec, "unique", unique);
    BSON_APPEND_BOOL(&spec, "sparse", sparse);
    store_index *ix = index_new(&spec, &e);
    bson_destroy(&spec);
    bson_destroy(key);
    return ix;
}

/* A value for field "a", drawn from several types with colliding prefixes. */
static void append_random_a(bson_t *d, uint32_t r)
{
    char s[64];
    bson_oid_t oid;
    uint8_t ob[12] = {0x65, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0, 0, 0, 0};
    switch (r % 6) {
    case 0: /* ObjectIds sharing their first 8 bytes half of the time */
        if (r & 64)
            ob[2] = (uint8_t)(r >> 8);
        ob[9] = (uint8_t)(r >> 12);
        ob[11] = (uint8_t)(r >> 16);
        bson_oid_init_from_data(&oid, ob);
        BSON_APPEND_OID(d, "a", &oid);
        break;
    case 1: /* dates on both sides of the epoch */
        BSON_APPEND_DATE_TIME(d, "a", (int64_t)(r % 2000) - 1000);
        break;
    case 2: /* strings with a long shared prefix, and short ones */
        snprintf(s, sizeof s, (r & 32) ? "prefix__%u" : "%u", (r >> 8) % 300);
        BSON_APPEND_UTF8(d, "a", s);
        break;
    case 3:
        BSON_APPEND_INT32(d, "a", (int32_t)((r >> 8) % 50) - 25);
        break;
    case 4:
        BSON_APPEND_DOUBLE(d, "a", ((double)((r >> 8) % 100)) / 4.0 - 10);
        break;
    default: /* the empty string and a string with an embedded NUL */
        if (r & 128)
            bson_append_utf8(d, "a", 1, "ab\0c", 4);
        else
            BSON_APPEND_UTF8(d, "a", (r & 256) ? "" : "ab");
        break;
    }
}

typedef struct {
    bson_t *doc;
    bson_t *key;
    uint64_t rid;
} ref_entry;

static const store_index *cmp_ix;

static int ref_cmp(const void *pa, const void *pb)
{
    const ref_entry *a = pa, *b = pb;
    int c = bv_key_compare(a->key, b->key, cmp_ix->dirs, cmp_ix->nfields);
    if (c)
        return c;
    return a->rid < b->rid ? -1 : a->rid > b->rid;
}

static int key_cb(const bson_t *key, void *ctx)
{
    bson_t **out = ctx;
    *out = bson_copy(key);
    return 0;
}

static bson_t *doc_key(const store_index *ix, const bson_t *doc)
{
    bson_t *k = NULL;
    bool mk = false;
    bson_error_t e;
    if (bv_index_keys(doc, ix->key, key_cb, &k, &mk, &e) != 0 || !k)
        abort();
    return k;
}

static bool same_key(const index_node *n, const bson_t *k)
{
    bson_t nk;
    index_node_key(n, &nk);
    return nk.len == k->len && memcmp(bson_get_data(&nk), bson_get_data(k), k->len) == 0;
}

/* First value of key k. */
static const bson_value_t *first_value(const bson_t *k, bson_iter_t *it)
{
    if (!bson_iter_init(it, k) || !bson_iter_next(it))
        abort();
    return bson_iter_value(it);
}

/* Walks both ways and seeks; returns false (after printing) on the first mismatch. */
static bool verify(const store_index *ix, ref_entry *ref, size_t n)
{
    cmp_ix = ix;
    qsort(ref, n, sizeof *ref, ref_cmp);
    if (ix->count != n) {
        fprintf(stderr, "  count %zu, reference %zu\n", ix->count, n);
        return false;
    }
    size_t i = 0;
    for (const index_node *nd = index_first(ix); nd; nd = index_next(nd), i++) {
        if (i >= n || index_node_rid(nd) != ref[i].rid || !same_key(nd, ref[i].key)) {
            fprintf(stderr, "  forward walk differs at %zu\n", i);
            return false;
        }
    }
    if (i != n)
        return false;
    for (const index_node *nd = index_last(ix); nd; nd = index_prev(nd)) {
        i--;
        if (index_node_rid(nd) != ref[i].rid || !same_key(nd, ref[i].key)) {
            fprintf(stderr, "  backward walk differs at %zu\n", i);
            return false;
        }
    }
    if (i != 0)
        return false;
    /* Seeks on the first field, with values present and absent. */
    for (int s = 0; s < 40; s++) {
        bson_t probe = BSON_INITIALIZER;
        append_random_a(&probe, rnd());
        bson_iter_t pit;
        const bson_value_t *v = first_value(&probe, &pit);
        bool after = s & 1;
        size_t want = 0;
        while (want < n) {
            bson_iter_t it;
            int c = bv_compare(first_value(ref[want].key, &it), v);
            c = ix->dirs[0] < 0 ? -c : c;
            if (c > 0 || (c == 0 && !after))
                break;
            want++;
        }
        const index_node *nd = index_seek_first_field(ix, v, after);
        bool ok = want == n ? nd == NULL : nd && index_node_rid(nd) == ref[want].rid;
        if (ok && nd) {
            int c = index_cmp_first_field(ix, nd, v);
            ok = after ? c > 0 : c >= 0;
        }
        bson_destroy(&probe);
        if (!ok) {
            fprintf(stderr, "  seek %d (after %d) differs: want position %zu of %zu\n", s, after,
                    want, n);
            return false;
        }
    }
    return true;
}

static void ref_drop(ref_entry *e)
{
    bson_destroy(e->doc);
    bson_destroy(e->key);
}

/* Random inserts and deletes on a non-unique index, checked against the reference. With
 * `few_keys`, a has three values and b two (long runs of byte-identical keys, which share one
 * key allocation: removal must free each exactly once, separators must outlive their entry). */
static bool random_run_ex(const char *pattern, int ops, bool few_keys)
{
    store_index *ix = make_index(pattern, false, false);
    if (!ix)
        return false;
    ref_entry *ref = calloc((size_t)ops, sizeof *ref);
    size_t n = 0;
    uint64_t next_rid = 1;
    bool ok = true;
    for (int op = 0; op < ops && ok; op++) {
        if (n == 0 || rnd() % 3 != 0) {
            bson_t *d = bson_new();
            if (few_keys) {
                static const char *const st[] = {"PENDING", "SENT", "FAILED"};
                const char *a = st[rnd() % 3];
                BSON_APPEND_UTF8(d, "a", a);
                BSON_APPEND_INT32(d, "b", (int32_t)(rnd() % 2));
            } else {
                append_random_a(d, rnd());
                BSON_APPEND_INT32(d, "b", (int32_t)(rnd() % 5));
            }
            /* Record ids mostly ascending, sometimes reused below the maximum. */
            uint64_t rid = rnd() % 4 ? next_rid++ : rnd() % next_rid + 1000000;
            bool dup = false;
            for (size_t i = 0; i < n && !dup; i++)
                dup = ref[i].rid == rid;
            if (dup) {
                bson_destroy(d);
                continue;
            }
            bson_t dk = BSON_INITIALIZER;
            bson_error_t e;
            if (index_add(ix, d, rid, &dk, &e) != 0) {
                ok = false;
                bson_destroy(d);
            } else {
                ref[n].doc = d;
                ref[n].key = doc_key(ix, d);
                ref[n].rid = rid;
                n++;
            }
            bson_destroy(&dk);
        } else {
            size_t i = rnd() % n;
            index_remove(ix, ref[i].doc, ref[i].rid);
            ref_drop(&ref[i]);
            ref[i] = ref[--n];
        }
        if (op % 1500 == 0 || op == ops - 1)
            ok = ok && verify(ix, ref, n);
    }
    /* Drain in random order. */
    while (ok && n > 0) {
        size_t i = rnd() % n;
        index_remove(ix, ref[i].doc, ref[i].rid);
        ref_drop(&ref[i]);
        ref[i] = ref[--n];
        if (n % 1000 == 0)
            ok = verify(ix, ref, n);
    }
    ok = ok && index_first(ix) == NULL && index_last(ix) == NULL && ix->count == 0;
    for (size_t i = 0; i < n; i++)
        ref_drop(&ref[i]);
    free(ref);
    index_free(ix);
    return ok;
}

static bool random_run(const char *pattern, int ops)
{
    return random_run_ex(pattern, ops, false);
}

TEST(few_distinct_keys)
{
    CHECK(random_run_ex("{\"a\": 1, \"b\": 1}", 20000, true));
    CHECK(random_run_ex("{\"a\": -1}", 20000, true));
}

TEST(random_ascending_compound)
{
    CHECK(random_run("{\"a\": 1, \"b\": -1}", 12000));
}

TEST(random_descending)
{
    CHECK(random_run("{\"a\": -1}", 40000));
}

static bson_t *doc_int(const char *field, int64_t v)
{
    bson_t *d = bson_new();
    BSON_APPEND_INT64(d, field, v);
    return d;
}

TEST(duplicates_and_bulk)
{
    /* 50,000 ascending keys (append path, full leaves), each key three times; then all removed
     * in a scrambled order, then reinserted descending. */
    store_index *ix = make_index("{\"k\": 1}", false, false);
    CHECK(ix);
    const int nkeys = 50000;
    bson_error_t e;
    for (int rep = 0; rep < 2; rep++) {
        for (int i = 0; i < nkeys; i++) {
            int k = rep == 0 ? i : nkeys - 1 - i;
            bson_t *d = doc_int("k", k);
            for (uint64_t c = 0; c < 3; c++)
                CHECK_INT_EQ(index_add(ix, d, (uint64_t)k * 3 + (rep ? 2 - c : c), NULL, &e), 0);
            bson_destroy(d);
        }
        CHECK_INT_EQ(ix->count, (size_t)nkeys * 3);
        uint64_t expect = 0;
        for (const index_node *nd = index_first(ix); nd; nd = index_next(nd))
            CHECK_INT_EQ(index_node_rid(nd), expect++);
        CHECK_INT_EQ(expect, (uint64_t)nkeys * 3);
        for (const index_node *nd = index_last(ix); nd; nd = index_prev(nd))
            CHECK_INT_EQ(index_node_rid(nd), --expect);
        /* A seek lands on the first duplicate. */
        bson_t *p = doc_int("k", 777);
        bson_iter_t it;
        const bson_value_t *v = first_value(p, &it);
        const index_node *nd = index_seek_first_field(ix, v, false);
        CHECK(nd && index_node_rid(nd) == 777 * 3);
        nd = index_seek_first_field(ix, v, true);
        CHECK(nd && index_node_rid(nd) == 778 * 3);
        bson_destroy(p);
        /* Remove everything, multiplicative scramble (7919 is prime, coprime to nkeys). */
        for (int i = 0; i < nkeys; i++) {
            int k = (int)(((int64_t)i * 7919) % nkeys);
            bson_t *d = doc_int("k", k);
            for (uint64_t c = 0; c < 3; c++)
                index_remove(ix, d, (uint64_t)k * 3 + c);
            bson_destroy(d);
        }
        CHECK_INT_EQ(ix->count, 0);
        CHECK(index_first(ix) == NULL && index_last(ix) == NULL);
    }
    index_free(ix);
}

TEST(unique_violations)
{
    store_index *ix = make_index("{\"a\": 1}", true, false);
    CHECK(ix);
    bson_error_t e;
    for (int i = 0; i < 2000; i++) {
        bson_t *d = doc_int("a", i * 2);
        CHECK_INT_EQ(index_add(ix, d, (uint64_t)i + 1, NULL, &e), 0);
        bson_destroy(d);
    }
    /* A taken key from another record: 1 with the key, index unchanged. */
    bson_t *d = doc_int("a", 1000);
    bson_t dk = BSON_INITIALIZER;
    CHECK_INT_EQ(index_add(ix, d, 9999, &dk, &e), 1);
    bson_iter_t it;
    CHECK(bson_iter_init_find(&it, &dk, "") && bson_iter_as_int64(&it) == 1000);
    bson_destroy(&dk);
    CHECK_INT_EQ(ix->count, 2000);
    bson_init(&dk);
    CHECK_INT_EQ(index_check(ix, d, 9999, &dk, &e), 1);
    bson_destroy(&dk);
    CHECK_INT_EQ(index_check(ix, d, 501, NULL, &e), 0); /* its own record */
    /* A multikey document whose second element is taken: the first one is undone. */
    bson_t *m = bson_new_from_json((const uint8_t *)"{\"a\": [1, 1000, 3]}", -1, &e);
    CHECK_INT_EQ(index_add(ix, m, 8888, NULL, &e), 1);
    CHECK_INT_EQ(ix->count, 2000);
    bson_t *one = doc_int("a", 1);
    CHECK_INT_EQ(index_check(ix, one, 0, NULL, &e), 0);
    /* After removing the holder, the key is free. */
    index_remove(ix, d, 501);
    CHECK_INT_EQ(ix->count, 1999);
    CHECK_INT_EQ(index_add(ix, m, 8888, NULL, &e), 0);
    CHECK_INT_EQ(ix->count, 2002);
    CHECK(ix->multikey);
    CHECK_INT_EQ(index_check(ix, one, 0, NULL, &e), 1);
    bson_destroy(one);
    bson_destroy(m);
    bson_destroy(d);
    index_free(ix);
}

TEST(sparse_and_missing)
{
    store_index *sp = make_index("{\"a\": 1}", false, true);
    store_index *ns = make_index("{\"a\": 1}", false, false);
    CHECK(sp && ns);
    bson_error_t e;
    bson_t *none = doc_int("z", 1), *has = doc_int("a", 5);
    CHECK_INT_EQ(index_add(sp, none, 1, NULL, &e), 0);
    CHECK_INT_EQ(index_add(sp, has, 2, NULL, &e), 0);
    CHECK_INT_EQ(index_add(ns, none, 1, NULL, &e), 0);
    CHECK_INT_EQ(index_add(ns, has, 2, NULL, &e), 0);
    CHECK_INT_EQ(sp->count, 1);
    CHECK_INT_EQ(ns->count, 2);
    /* The missing field sorts as null, before 5. */
    CHECK_INT_EQ(index_node_rid(index_first(ns)), 1);
    CHECK_INT_EQ(index_node_rid(index_last(ns)), 2);
    bson_destroy(none);
    bson_destroy(has);
    index_free(sp);
    index_free(ns);
}

/* store_replace_ex's `touched` callback: records the paths asked about, says yes only for the
 * paths in ctx (a NULL-terminated list, what the update changed). */
typedef struct {
    const char *const *changed;
    bool asked_status, asked_updated;
} touch_rec;

static bool touched_cb(const char *path, void *ctx)
{
    touch_rec *t = ctx;
    t->asked_status |= strcmp(path, "status") == 0;
    t->asked_updated |= strcmp(path, "updatedAt") == 0;
    for (size_t i = 0; t->changed[i]; i++)
        if (strcmp(path, t->changed[i]) == 0)
            return true;
    return false;
}

static bson_t *log_doc(int id, const char *status, int64_t t, int other)
{
    return BCON_NEW("_id", BCON_INT32(id), "status", BCON_UTF8(status), "updatedAt",
                    BCON_DATE_TIME(t), "other", BCON_INT32(other));
}

TEST(partial_rekey_through_store)
{
    store *st = store_new();
    bson_error_t e;
    store_coll *c = st ? store_coll_create(st, "db", "logs", NULL, &e) : NULL;
    CHECK(c);
    bson_t *spec = bson_new_from_json(
        (const uint8_t *)"{\"key\": {\"updatedAt\": 1}, \"name\": \"up\", "
                         "\"partialFilterExpression\": {\"status\": \"PENDING\"}}",
        -1, &e);
    store_index *ix = store_index_create(c, spec, &e, NULL);
    CHECK_MSG(ix, "%s", e.message);
    bson_destroy(spec);
    for (int i = 0; i < 4; i++) {
        bson_t *d = log_doc(i, i < 2 ? "PENDING" : "SENT", 100 + i, 0);
        CHECK_INT_EQ(store_insert(c, d, NULL, &e, NULL), 0);
        bson_destroy(d);
    }
    CHECK_INT_EQ(ix->count, 2);
    /* keys_same reports membership of both sides */
    bson_t *a = log_doc(0, "PENDING", 100, 0), *b = log_doc(0, "DELIVERED", 900, 0);
    bool in_a = false, in_b = true;
    CHECK_INT_EQ(index_keys_same(ix, a, b, &in_a, &in_b, &e), 0);
    CHECK(in_a && !in_b);
    CHECK_INT_EQ(index_keys_same(ix, b, b, &in_a, &in_b, &e), 1);
    CHECK(!in_a && !in_b);
    bson_destroy(a);
    bson_destroy(b);
    /* an update of `other` only: the filter's fields are asked about, the index is skipped */
    const char *other[] = {"other", NULL};
    touch_rec t = {.changed = other};
    uint64_t rid;
    bson_value_t id = {.value_type = BSON_TYPE_INT32, .value.v_int32 = 0};
    CHECK(store_find_id(c, &id, &rid));
    bson_t *d = log_doc(0, "PENDING", 100, 1);
    CHECK_INT_EQ(store_replace_ex(c, rid, d, touched_cb, &t, &e, NULL), 0);
    bson_destroy(d);
    CHECK(t.asked_status && t.asked_updated);
    CHECK_INT_EQ(ix->count, 2);
    /* leaving PENDING (delivery receipt): removed, nothing added */
    const char *both[] = {"status", "updatedAt", NULL};
    t = (touch_rec){.changed = both};
    d = log_doc(0, "DELIVERED", 5000, 1);
    CHECK_INT_EQ(store_replace_ex(c, rid, d, touched_cb, &t, &e, NULL), 0);
    bson_destroy(d);
    CHECK_INT_EQ(ix->count, 1);
    CHECK_INT_EQ(index_node_rid(index_first(ix)), 1);
    /* entering PENDING: added with its new key */
    id.value.v_int32 = 3;
    CHECK(store_find_id(c, &id, &rid));
    d = log_doc(3, "PENDING", 50, 0);
    CHECK_INT_EQ(store_replace_ex(c, rid, d, touched_cb, &t, &e, NULL), 0);
    bson_destroy(d);
    CHECK_INT_EQ(ix->count, 2);
    CHECK_INT_EQ(index_node_rid(index_first(ix)), rid);
    /* delete of a non-member and of a member */
    id.value.v_int32 = 2;
    CHECK(store_find_id(c, &id, &rid));
    CHECK_INT_EQ(store_delete(c, rid, &e), 0);
    CHECK_INT_EQ(ix->count, 2);
    id.value.v_int32 = 1;
    CHECK(store_find_id(c, &id, &rid));
    CHECK_INT_EQ(store_delete(c, rid, &e), 0);
    CHECK_INT_EQ(ix->count, 1);
    store_free(st);
}

static bool implied(const char *filter_json, const char *query_json)
{
    bson_error_t e;
    bson_t *f = bson_new_from_json((const uint8_t *)filter_json, -1, &e);
    bson_t *q = bson_new_from_json((const uint8_t *)query_json, -1, &e);
    if (!f || !q)
        abort();
    bson_value_t fv = {.value_type = BSON_TYPE_DOCUMENT};
    fv.value.v_doc.data = (uint8_t *)bson_get_data(f);
    fv.value.v_doc.data_len = f->len;
    partial_filter *p = partial_new(&fv, false, &e);
    if (!p)
        abort();
    bool r = partial_implied_by(p, q);
    partial_free(p);
    bson_destroy(f);
    bson_destroy(q);
    return r;
}

TEST(partial_implication_rules)
{
    const char *pend = "{\"status\": \"PENDING\"}";
    CHECK(implied(pend, "{\"status\": \"PENDING\", \"updatedAt\": {\"$lt\": 5}}"));
    CHECK(implied(pend, "{\"status\": {\"$eq\": \"PENDING\"}}"));
    CHECK(implied(pend, "{\"$and\": [{\"a\": 1}, {\"$and\": [{\"status\": \"PENDING\"}]}]}"));
    CHECK(!implied(pend, "{\"status\": \"SENT\"}"));
    CHECK(!implied(pend, "{\"status\": {\"$in\": [\"PENDING\"]}}"));
    CHECK(!implied(pend, "{\"$or\": [{\"status\": \"PENDING\"}]}"));
    CHECK(!implied(pend, "{\"status\": {\"$gte\": \"PENDING\"}}"));
    CHECK(!implied(pend, "{\"status.x\": \"PENDING\"}"));
    CHECK(!implied(pend, "{}"));
    CHECK(implied("{}", "{}"));
    const char *lt = "{\"n\": {\"$lt\": 10}}";
    CHECK(implied(lt, "{\"n\": {\"$lt\": 10}}"));
    CHECK(implied(lt, "{\"n\": {\"$lte\": 9.5}}"));
    CHECK(implied(lt, "{\"n\": 3}"));
    CHECK(!implied(lt, "{\"n\": {\"$lte\": 10}}"));
    CHECK(!implied(lt, "{\"n\": 10}"));
    CHECK(!implied(lt, "{\"n\": {\"$gt\": 1}}"));
    CHECK(!implied(lt, "{\"n\": {\"$lt\": \"a\"}}"));
    CHECK(!implied(lt, "{\"n\": {\"$lt\": {\"$numberDouble\": \"NaN\"}}}"));
    CHECK(implied("{\"n\": {\"$gte\": 2, \"$lt\": 10}}", "{\"n\": {\"$gt\": 2, \"$lt\": 4}}"));
    CHECK(!implied("{\"n\": {\"$gte\": 2, \"$lt\": 10}}", "{\"n\": {\"$lt\": 4}}"));
    const char *ex = "{\"n\": {\"$exists\": true}}";
    CHECK(implied(ex, "{\"n\": {\"$exists\": 1}}"));
    CHECK(implied(ex, "{\"n\": 5}"));
    CHECK(implied(ex, "{\"n\": {\"$gt\": 5}}"));
    CHECK(!implied(ex, "{\"n\": null}"));
    CHECK(!implied(ex, "{\"n\": {\"$exists\": false}}"));
    CHECK(!implied(ex, "{\"n\": {\"$ne\": 5}}"));
}

TEST_MAIN(TEST_ENTRY(few_distinct_keys), TEST_ENTRY(random_ascending_compound),
          TEST_ENTRY(random_descending), TEST_ENTRY(duplicates_and_bulk),
          TEST_ENTRY(unique_violations), TEST_ENTRY(sparse_and_missing),
          TEST_ENTRY(partial_rekey_through_store), TEST_ENTRY(partial_implication_rules))
