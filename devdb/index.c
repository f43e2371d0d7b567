/*
 * index.c: devdb's ordered index, a skiplist of (key tuple, record id) entries (see index.h).
 *
 * Layout of one entry, a single allocation:
 *
 *   +---------+---------+--------+-------+-----------------+----------------------+
 *   | rid u64 | prev *  | keylen | level | next[level] *   | key bytes (BSON doc) |
 *   +---------+---------+--------+-------+-----------------+----------------------+
 *
 * Order: bv_key_compare(key, dirs) then rid, so equal keys of a non-unique index sit together
 * ordered by record id and every entry is unique, which makes removal exact. Levels are drawn
 * with p = 1/4 (about 1.33 forward pointers per node); level 0 is doubly linked so reverse
 * scans (descending sorts) are as cheap as forward ones.
 *
 * Mutations (add/remove) run under the store's exclusive lock; the random-level generator
 * state therefore needs no lock of its own.
 */
#include "index.h"

#include "bsonval.h"
#include "errors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct index_node {
    uint64_t rid;
    index_node *prev;
    uint32_t keylen;
    uint8_t level;
    index_node *next[];
};

static uint8_t *node_key_bytes(const index_node *n)
{
    return (uint8_t *)&n->next[n->level];
}

static void node_key(const index_node *n, bson_t *out)
{
    bson_init_static(out, node_key_bytes(n), n->keylen);
}

static index_node *node_new(int level, const bson_t *key, uint64_t rid)
{
    size_t sz = sizeof(index_node) + (size_t)level * sizeof(index_node *) + key->len;
    index_node *n = malloc(sz);
    if (!n)
        return NULL;
    n->rid = rid;
    n->prev = NULL;
    n->keylen = key->len;
    n->level = (uint8_t)level;
    for (int i = 0; i < level; i++)
        n->next[i] = NULL;
    memcpy(node_key_bytes(n), bson_get_data(key), key->len);
    return n;
}

static int random_level(store_index *ix)
{
    int lvl = 1;
    for (;;) {
        /* xorshift32 */
        uint32_t x = ix->rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        ix->rng = x;
        if ((x & 3) != 0 || lvl >= INDEX_MAX_LEVEL)
            return lvl;
        lvl++;
    }
}

/* Where the value of the key element at p starts (after type byte and name), NULL if the key
 * ends first. */
static const uint8_t *elem_value(const uint8_t *p, const uint8_t *end)
{
    const uint8_t *z = p + 1 < end ? memchr(p + 1, '\0', (size_t)(end - (p + 1))) : NULL;
    return z ? z + 1 : NULL;
}

/*
 * Compares two keys field by field straight from their bytes while both fields are ObjectIds
 * (12 bytes, compared as bytes), dates (int64) or strings (bytes, then length), the fields of
 * the pipeline's hot indexes (_id, campaign_id + customer_id, createdAt, status + updatedAt). Sets
 * *out and returns true when that decides the order (or all fields were compared); returns false as
 * soon as a field has another type, and the caller falls back to bv_key_compare, which agrees on
 * these types.
 */
static bool key_cmp_fast(const uint8_t *a, uint32_t la, const uint8_t *b, uint32_t lb,
                         const int *dirs, size_t nfields, int *out)
{
    const uint8_t *pa = a + 4, *ea = a + la, *pb = b + 4, *eb = b + lb;
    for (size_t i = 0; i < nfields; i++) {
        if (pa >= ea || pb >= eb || *pa != *pb)
            return false;
        uint8_t t = *pa;
        const uint8_t *va = elem_value(pa, ea), *vb = elem_value(pb, eb);
        int c;
        if (t == BSON_TYPE_OID && va && vb && ea - va >= 12 && eb - vb >= 12) {
            c = memcmp(va, vb, 12);
            pa = va + 12;
            pb = vb + 12;
        } else if (t == BSON_TYPE_DATE_TIME && va && vb && ea - va >= 8 && eb - vb >= 8) {
            int64_t x, y;
            memcpy(&x, va, 8);
            memcpy(&y, vb, 8);
            x = (int64_t)BSON_UINT64_FROM_LE((uint64_t)x);
            y = (int64_t)BSON_UINT64_FROM_LE((uint64_t)y);
            c = (x > y) - (x < y);
            pa = va + 8;
            pb = vb + 8;
        } else if (t == BSON_TYPE_UTF8 && va && vb && ea - va >= 5 && eb - vb >= 5) {
            /* int32 length (with the NUL), bytes, NUL: compared as bv_compare does, bytes
             * then length. */
            int32_t na, nb;
            memcpy(&na, va, 4);
            memcpy(&nb, vb, 4);
            na = (int32_t)BSON_UINT32_FROM_LE((uint32_t)na);
            nb = (int32_t)BSON_UINT32_FROM_LE((uint32_t)nb);
            if (na < 1 || nb < 1 || ea - (va + 4) < na || eb - (vb + 4) < nb)
                return false;
            size_t m = (size_t)(na < nb ? na : nb) - 1;
            c = m ? memcmp(va + 4, vb + 4, m) : 0;
            if (!c)
                c = (na > nb) - (na < nb);
            pa = va + 4 + na;
            pb = vb + 4 + nb;
        } else {
            return false;
        }
        if (c) {
            c = c < 0 ? -1 : 1;
            *out = dirs[i] < 0 ? -c : c;
            return true;
        }
    }
    if (pa >= ea || pb >= eb || *pa != 0 || *pb != 0)
        return false; /* more elements than the pattern has fields: let the generic path say */
    *out = 0;
    return true;
}

/* bv_key_compare(a, b) in ix's directions, through the byte fast paths when they apply. */
static int ix_key_cmp(const store_index *ix, const bson_t *a, const bson_t *b)
{
    int c;
    if (a->len == b->len && memcmp(bson_get_data(a), bson_get_data(b), a->len) == 0)
        return 0;
    if (key_cmp_fast(bson_get_data(a), a->len, bson_get_data(b), b->len, ix->dirs, ix->nfields, &c))
        return c;
    return bv_key_compare(a, b, ix->dirs, ix->nfields);
}

/* Compare a node against (key, rid). */
static int node_cmp(const store_index *ix, const index_node *n, const bson_t *key, uint64_t rid)
{
    /* Byte-identical keys are equal whatever their types: the common case on low-cardinality
     * indexes ({status: 1, ...}), where the search otherwise walks both documents each step. */
    bson_t nk;
    node_key(n, &nk);
    int c = ix_key_cmp(ix, &nk, key);
    if (c)
        return c;
    return n->rid < rid ? -1 : n->rid > rid ? 1 : 0;
}

/* Fills update[] with, per level, the last node < (key, rid). Returns the level-0 successor. */
static index_node *find_pred(const store_index *ix, const bson_t *key, uint64_t rid,
                             index_node **update)
{
    index_node *x = ix->head;
    for (int i = ix->level - 1; i >= 0; i--) {
        while (x->next[i] && node_cmp(ix, x->next[i], key, rid) < 0)
            x = x->next[i];
        if (update)
            update[i] = x;
    }
    return x->next[0];
}

/* Links n after the per-level predecessors in update[]. */
static void link_at(store_index *ix, index_node *n, index_node **update)
{
    if (n->level > ix->level) {
        for (int i = ix->level; i < n->level; i++)
            update[i] = ix->head;
        ix->level = n->level;
    }
    for (int i = 0; i < n->level; i++) {
        n->next[i] = update[i]->next[i];
        update[i]->next[i] = n;
        if (!n->next[i])
            ix->lastl[i] = n;
    }
    n->prev = update[0] == ix->head ? NULL : update[0];
    if (n->next[0])
        n->next[0]->prev = n;
    else
        ix->tail = n;
    ix->count++;
}

/*
 * Inserts node n. Keys that arrive in ascending order (ObjectIds, counters, timestamps) are
 * appended after the tail with a single comparison; others take an O(log n) search. On a
 * unique index an entry with an equal key and another record id is a violation: returns 1
 * and leaves n unlinked.
 */
static int insert_node(store_index *ix, index_node *n, bson_t *dup_key)
{
    index_node *update[INDEX_MAX_LEVEL];
    bson_t key;
    node_key(n, &key);
    if (ix->tail) {
        bson_t tk;
        node_key(ix->tail, &tk);
        int kc = ix_key_cmp(ix, &tk, &key);
        if (kc < 0 || (kc == 0 && !ix->unique && ix->tail->rid < n->rid)) {
            for (int i = 0; i < INDEX_MAX_LEVEL; i++)
                update[i] = ix->lastl[i] ? ix->lastl[i] : ix->head;
            link_at(ix, n, update);
            return 0;
        }
    }
    if (ix->unique) {
        for (index_node *s = find_pred(ix, &key, 0, update); s; s = s->next[0]) {
            bson_t sk;
            node_key(s, &sk);
            if (ix_key_cmp(ix, &sk, &key) != 0)
                break;
            if (s->rid != n->rid) {
                if (dup_key)
                    bson_concat(dup_key, &sk);
                return 1;
            }
        }
    } else {
        find_pred(ix, &key, n->rid, update);
    }
    link_at(ix, n, update);
    return 0;
}

static void unlink_key(store_index *ix, const bson_t *key, uint64_t rid)
{
    index_node *update[INDEX_MAX_LEVEL];
    index_node *n = find_pred(ix, key, rid, update);
    if (!n || node_cmp(ix, n, key, rid) != 0)
        return;
    for (int i = 0; i < n->level; i++) {
        if (update[i]->next[i] == n)
            update[i]->next[i] = n->next[i];
        if (ix->lastl[i] == n)
            ix->lastl[i] = update[i] == ix->head ? NULL : update[i];
    }
    if (n->next[0])
        n->next[0]->prev = n->prev;
    else
        ix->tail = n->prev;
    while (ix->level > 1 && ix->head->next[ix->level - 1] == NULL)
        ix->level--;
    ix->count--;
    free(n);
}

/* ---- construction ------------------------------------------------------------------------ */

static store_index *index_alloc(void)
{
    store_index *ix = calloc(1, sizeof *ix);
    if (!ix)
        return NULL;
    size_t sz = sizeof(index_node) + INDEX_MAX_LEVEL * sizeof(index_node *);
    ix->head = calloc(1, sz);
    if (!ix->head) {
        free(ix);
        return NULL;
    }
    ix->head->level = INDEX_MAX_LEVEL;
    ix->level = 1;
    ix->rng = 0x9e3779b9u;
    ix->key = bson_new();
    ix->spec = bson_new();
    return ix;
}

void index_free(store_index *ix)
{
    if (!ix)
        return;
    index_node *n = ix->head->next[0];
    while (n) {
        index_node *nx = n->next[0];
        free(n);
        n = nx;
    }
    free(ix->head);
    for (size_t i = 0; i < ix->nfields; i++)
        free(ix->paths[i]);
    free(ix->name);
    bson_destroy(ix->key);
    bson_destroy(ix->spec);
    free(ix);
}

/* Default name: fields and directions joined by '_' ({a: 1, b: -1} -> "a_1_b_-1"). */
static int default_name(const bson_t *key, char *buf, size_t n)
{
    bson_iter_t it;
    size_t off = 0;
    buf[0] = '\0';
    bson_iter_init(&it, key);
    while (bson_iter_next(&it)) {
        const bson_value_t *v = bson_iter_value(&it);
        char num[64];
        if (v->value_type == BSON_TYPE_INT32)
            snprintf(num, sizeof num, "%d", v->value.v_int32);
        else if (v->value_type == BSON_TYPE_INT64)
            snprintf(num, sizeof num, "%lld", (long long)v->value.v_int64);
        else
            snprintf(num, sizeof num, "%g", bv_as_double(v));
        int w = snprintf(buf + off, n - off, "%s%s_%s", off ? "_" : "", bson_iter_key(&it), num);
        if (w < 0 || (size_t)w >= n - off)
            return -1;
        off += (size_t)w;
    }
    return 0;
}

store_index *index_new(const bson_t *spec, bson_error_t *err)
{
    store_index *ix = index_alloc();
    if (!ix) {
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
        return NULL;
    }
    bson_iter_t it;
    bool have_key = false;
    const char *name = NULL;
    bson_iter_init(&it, spec);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "key") == 0) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
                mdb_error(err, MDB_TYPE_MISMATCH, "The field 'key' must be an object");
                goto fail;
            }
            uint32_t dl;
            const uint8_t *dd;
            bson_iter_document(&it, &dl, &dd);
            bson_t kd;
            bson_init_static(&kd, dd, dl);
            bson_destroy(ix->key);
            ix->key = bson_copy(&kd);
            have_key = true;
        } else if (strcmp(k, "name") == 0) {
            if (!BSON_ITER_HOLDS_UTF8(&it)) {
                mdb_error(err, MDB_TYPE_MISMATCH, "The field 'name' must be a string");
                goto fail;
            }
            name = bson_iter_utf8(&it, NULL);
        } else if (strcmp(k, "unique") == 0) {
            ix->unique = bson_iter_as_bool(&it);
        } else if (strcmp(k, "sparse") == 0) {
            ix->sparse = bson_iter_as_bool(&it);
        }
    }
    if (!have_key) {
        mdb_error(err, MDB_FAILED_TO_PARSE,
                  "The 'key' field is a required property of an "
                  "index specification");
        goto fail;
    }
    if (bson_count_keys(ix->key) == 0) {
        mdb_error(err, MDB_CANNOT_CREATE_INDEX, "Index keys cannot be empty.");
        goto fail;
    }
    int n = bv_pattern_dirs(ix->key, ix->dirs, INDEX_MAX_FIELDS);
    if (n < 0) {
        mdb_error(err, MDB_CANNOT_CREATE_INDEX, "Index key pattern has too many fields");
        goto fail;
    }
    bson_iter_init(&it, ix->key);
    while (bson_iter_next(&it)) {
        const bson_value_t *v = bson_iter_value(&it);
        if (!bv_is_number(v->value_type) || bv_as_double(v) == 0) {
            if (v->value_type == BSON_TYPE_UTF8)
                mdb_error(err, MDB_CANNOT_CREATE_INDEX, "Unknown index plugin '%s'",
                          v->value.v_utf8.str);
            else
                mdb_error(err, MDB_CANNOT_CREATE_INDEX,
                          "Values in the index key pattern can only be numbers or strings");
            goto fail;
        }
        if (bson_iter_key_len(&it) == 0) {
            mdb_error(err, MDB_CANNOT_CREATE_INDEX, "Index keys cannot be an empty field");
            goto fail;
        }
        ix->paths[ix->nfields++] = strdup(bson_iter_key(&it));
    }
    char nbuf[1024];
    if (!name) {
        if (default_name(ix->key, nbuf, sizeof nbuf) != 0) {
            mdb_error(err, MDB_CANNOT_CREATE_INDEX, "index name too long");
            goto fail;
        }
        name = nbuf;
    }
    if (!*name) {
        mdb_error(err, MDB_CANNOT_CREATE_INDEX, "The index name cannot be empty");
        goto fail;
    }
    ix->name = strdup(name);
    if (strcmp(ix->name, "_id_") == 0)
        ix->unique = true;
    /* Spec as listIndexes shows it: v, key, name first, then the remaining options. */
    BSON_APPEND_INT32(ix->spec, "v", 2);
    BSON_APPEND_DOCUMENT(ix->spec, "key", ix->key);
    BSON_APPEND_UTF8(ix->spec, "name", ix->name);
    bson_iter_init(&it, spec);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "key") && strcmp(k, "name") && strcmp(k, "v") && strcmp(k, "ns") &&
            !(strcmp(k, "unique") == 0 && strcmp(ix->name, "_id_") == 0))
            bson_append_value(ix->spec, k, -1, bson_iter_value(&it));
    }
    return ix;
fail:
    index_free(ix);
    return NULL;
}

store_index *index_new_id(void)
{
    bson_t spec;
    bson_init(&spec);
    bson_t key;
    BSON_APPEND_DOCUMENT_BEGIN(&spec, "key", &key);
    BSON_APPEND_INT32(&key, "_id", 1);
    bson_append_document_end(&spec, &key);
    BSON_APPEND_UTF8(&spec, "name", "_id_");
    store_index *ix = index_new(&spec, NULL);
    bson_destroy(&spec);
    return ix;
}

bool index_pattern_equal(const store_index *ix, const bson_t *pattern)
{
    int dirs[INDEX_MAX_FIELDS];
    int n = bv_pattern_dirs(pattern, dirs, INDEX_MAX_FIELDS);
    if (n < 0 || (size_t)n != ix->nfields)
        return false;
    bson_iter_t it;
    bson_iter_init(&it, pattern);
    for (size_t i = 0; i < ix->nfields && bson_iter_next(&it); i++) {
        if (strcmp(bson_iter_key(&it), ix->paths[i]) != 0 || dirs[i] != ix->dirs[i])
            return false;
    }
    return true;
}

/* ---- key maintenance ---------------------------------------------------------------------- */

/* Nodes built for one document before they are linked (so a failure changes nothing). */
typedef struct {
    store_index *ix;
    uint64_t rid;
    index_node *inl[8];
    index_node **a;
    size_t n, cap;
} pending;

static int collect_key(const bson_t *key, void *ctx)
{
    pending *p = ctx;
    if (p->n == p->cap) {
        size_t ncap = p->cap * 2;
        index_node **na = malloc(ncap * sizeof *na);
        if (!na)
            return 2;
        memcpy(na, p->a, p->n * sizeof *na);
        if (p->a != p->inl)
            free(p->a);
        p->a = na;
        p->cap = ncap;
    }
    index_node *nd = node_new(random_level(p->ix), key, p->rid);
    if (!nd)
        return 2;
    p->a[p->n++] = nd;
    return 0;
}

static void pending_free(pending *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->a[i]);
    if (p->a != p->inl)
        free(p->a);
}

static bool path_present_cb(const bson_value_t *v, void *ctx)
{
    (void)ctx;
    return v->value_type != BSON_TYPE_EOD;
}

/* Sparse indexes skip documents that have none of the indexed fields. */
static bool sparse_skips(const store_index *ix, const bson_t *doc)
{
    if (!ix->sparse)
        return false;
    for (size_t i = 0; i < ix->nfields; i++) {
        if (bv_path_visit(doc, ix->paths[i], 0, path_present_cb, NULL))
            return false;
    }
    return true;
}

/* Is there an entry with key `key` and a record id other than rid? */
static bool key_taken(const store_index *ix, const bson_t *key, uint64_t rid)
{
    index_node *n = find_pred(ix, key, 0, NULL);
    for (; n; n = n->next[0]) {
        bson_t nk;
        node_key(n, &nk);
        if (ix_key_cmp(ix, &nk, key) != 0)
            return false;
        if (n->rid != rid)
            return true;
    }
    return false;
}

static int gen_keys(store_index *ix, const bson_t *doc, pending *p, bool *multikey,
                    bson_error_t *err)
{
    p->ix = ix;
    p->a = p->inl;
    p->cap = sizeof p->inl / sizeof p->inl[0];
    p->n = 0;
    int rc = bv_index_keys(doc, ix->key, collect_key, p, multikey, err);
    if (rc == 2)
        return mdb_error(err, MDB_INTERNAL_ERROR, "out of memory building index keys");
    return rc == 0 ? 0 : -1;
}

int index_check(const store_index *ix, const bson_t *doc, uint64_t rid, bson_t *dup_key,
                bson_error_t *err)
{
    if (!ix->unique || sparse_skips(ix, doc))
        return 0;
    pending p = {.rid = rid};
    bool mk = false;
    if (gen_keys((store_index *)ix, doc, &p, &mk, err) != 0) {
        pending_free(&p);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < p.n && rc == 0; i++) {
        bson_t k;
        node_key(p.a[i], &k);
        if (key_taken(ix, &k, rid)) {
            if (dup_key)
                bson_concat(dup_key, &k);
            rc = 1;
        }
    }
    pending_free(&p);
    return rc;
}

int index_add(store_index *ix, const bson_t *doc, uint64_t rid, bson_t *dup_key, bson_error_t *err)
{
    if (sparse_skips(ix, doc))
        return 0;
    pending p = {.rid = rid};
    bool mk = false;
    if (gen_keys(ix, doc, &p, &mk, err) != 0) {
        pending_free(&p);
        return -1;
    }
    for (size_t i = 0; i < p.n; i++) {
        if (insert_node(ix, p.a[i], dup_key) != 0) {
            /* Undo this document's keys linked so far; free the rest. */
            for (size_t j = 0; j < i; j++) {
                bson_t k;
                node_key(p.a[j], &k);
                bson_t copy;
                bson_copy_to(&k, &copy);
                unlink_key(ix, &copy, rid);
                bson_destroy(&copy);
            }
            for (size_t j = i; j < p.n; j++)
                free(p.a[j]);
            p.n = 0;
            pending_free(&p);
            return 1;
        }
    }
    p.n = 0;
    pending_free(&p);
    if (mk)
        ix->multikey = true;
    return 0;
}

void index_remove(store_index *ix, const bson_t *doc, uint64_t rid)
{
    pending p = {.rid = rid};
    bool mk;
    bson_error_t err;
    if (gen_keys(ix, doc, &p, &mk, &err) == 0) {
        for (size_t i = 0; i < p.n; i++) {
            bson_t k;
            node_key(p.a[i], &k);
            unlink_key(ix, &k, rid);
        }
    }
    pending_free(&p);
}

/* Key bytes of one document, concatenated (each key is a BSON document, so its own length
 * prefix delimits it). Small inline buffer; the heap only for multikey documents. */
typedef struct {
    uint8_t inl[256];
    uint8_t *p;
    size_t n, cap;
    bool skipped; /* sparse index, document not indexed */
} keybuf;

static int keybuf_add(const bson_t *key, void *ctx)
{
    keybuf *kb = ctx;
    if (kb->n + key->len > kb->cap) {
        size_t ncap = kb->cap * 2 > kb->n + key->len ? kb->cap * 2 : kb->n + key->len;
        uint8_t *np = malloc(ncap);
        if (!np)
            return 2;
        memcpy(np, kb->p, kb->n);
        if (kb->p != kb->inl)
            free(kb->p);
        kb->p = np;
        kb->cap = ncap;
    }
    memcpy(kb->p + kb->n, bson_get_data(key), key->len);
    kb->n += key->len;
    return 0;
}

static int keybuf_fill(const store_index *ix, const bson_t *doc, keybuf *kb, bson_error_t *err)
{
    kb->p = kb->inl;
    kb->cap = sizeof kb->inl;
    kb->n = 0;
    kb->skipped = sparse_skips(ix, doc);
    if (kb->skipped)
        return 0;
    bool mk = false;
    int rc = bv_index_keys(doc, ix->key, keybuf_add, kb, &mk, err);
    if (rc == 2)
        return mdb_error(err, MDB_INTERNAL_ERROR, "out of memory building index keys");
    return rc == 0 ? 0 : -1;
}

int index_keys_same(const store_index *ix, const bson_t *a, const bson_t *b, bson_error_t *err)
{
    keybuf ka, kb;
    int rc = -1;
    if (keybuf_fill(ix, a, &ka, err) != 0) {
        if (ka.p != ka.inl)
            free(ka.p);
        return -1;
    }
    if (keybuf_fill(ix, b, &kb, err) == 0)
        rc = ka.skipped == kb.skipped && ka.n == kb.n && memcmp(ka.p, kb.p, ka.n) == 0;
    if (ka.p != ka.inl)
        free(ka.p);
    if (kb.p != kb.inl)
        free(kb.p);
    return rc;
}

/* ---- ordered access ------------------------------------------------------------------------ */

const index_node *index_first(const store_index *ix)
{
    return ix->head->next[0];
}

const index_node *index_last(const store_index *ix)
{
    return ix->tail;
}

const index_node *index_next(const index_node *n)
{
    return n->next[0];
}

const index_node *index_prev(const index_node *n)
{
    return n->prev;
}

uint64_t index_node_rid(const index_node *n)
{
    return n->rid;
}

void index_node_key(const index_node *n, bson_t *out)
{
    node_key(n, out);
}

/* If the key's first element is an ObjectId, its 12 bytes; else NULL. A key is a BSON document:
 * int32 length, then type byte, field name (cstring), value. */
static const uint8_t *key_first_oid(const index_node *n)
{
    const uint8_t *p = node_key_bytes(n), *end = p + n->keylen;
    if (n->keylen < 5 + 1 + 12 || p[4] != BSON_TYPE_OID)
        return NULL;
    const uint8_t *q = memchr(p + 5, '\0', (size_t)(end - (p + 5)));
    return q && end - (q + 1) >= 12 ? q + 1 : NULL;
}

int index_cmp_first_field(const store_index *ix, const index_node *n, const bson_value_t *v)
{
    if (v->value_type == BSON_TYPE_OID) {
        /* ObjectId against ObjectId is a byte comparison (bv_compare agrees): the _id point
         * lookup of every update by _id comes through here. */
        const uint8_t *o = key_first_oid(n);
        if (o) {
            int c = memcmp(o, v->value.v_oid.bytes, 12);
            c = c < 0 ? -1 : c > 0;
            return ix->dirs[0] < 0 ? -c : c;
        }
    }
    bson_t nk;
    bson_iter_t it;
    node_key(n, &nk);
    if (!bson_iter_init(&it, &nk) || !bson_iter_next(&it))
        return -1;
    int c = bv_compare(bson_iter_value(&it), v);
    return ix->dirs[0] < 0 ? -c : c;
}

const index_node *index_seek_first_field(const store_index *ix, const bson_value_t *v, bool after)
{
    const index_node *x = ix->head;
    for (int i = ix->level - 1; i >= 0; i--) {
        while (x->next[i]) {
            int c = index_cmp_first_field(ix, x->next[i], v);
            if (c < 0 || (after && c == 0))
                x = x->next[i];
            else
                break;
        }
    }
    return x->next[0];
}

/* ---- messages ------------------------------------------------------------------------------ */

static void fmt_value(const bson_value_t *v, char *buf, size_t n)
{
    switch (v->value_type) {
    case BSON_TYPE_UTF8:
        snprintf(buf, n, "\"%.*s\"", (int)(v->value.v_utf8.len > 200 ? 200 : v->value.v_utf8.len),
                 v->value.v_utf8.str);
        break;
    case BSON_TYPE_INT32:
        snprintf(buf, n, "%d", v->value.v_int32);
        break;
    case BSON_TYPE_INT64:
        snprintf(buf, n, "%lld", (long long)v->value.v_int64);
        break;
    case BSON_TYPE_DOUBLE:
        snprintf(buf, n, "%.17g", v->value.v_double);
        break;
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
        snprintf(buf, n, "null");
        break;
    case BSON_TYPE_BOOL:
        snprintf(buf, n, "%s", v->value.v_bool ? "true" : "false");
        break;
    case BSON_TYPE_OID: {
        char hex[25];
        bson_oid_to_string(&v->value.v_oid, hex);
        snprintf(buf, n, "ObjectId('%s')", hex);
        break;
    }
    case BSON_TYPE_DATE_TIME:
        snprintf(buf, n, "new Date(%lld)", (long long)v->value.v_datetime);
        break;
    default: {
        bson_t tmp;
        bson_init(&tmp);
        bson_append_value(&tmp, "v", 1, v);
        char *js = bson_as_relaxed_extended_json(&tmp, NULL);
        /* {"v" : X } -> X */
        const char *p = js ? strchr(js, ':') : NULL;
        if (p) {
            size_t l = strlen(p + 2);
            snprintf(buf, n, "%.*s", (int)(l >= 2 ? l - 2 : l), p + 2);
        } else {
            snprintf(buf, n, "?");
        }
        bson_free(js);
        bson_destroy(&tmp);
    }
    }
}

void index_format_key(const store_index *ix, const bson_t *key, char *buf, size_t buflen,
                      bson_t *key_value)
{
    size_t off = 0;
    bson_iter_t it;
    int w = snprintf(buf, buflen, "{ ");
    off = w > 0 ? (size_t)w : 0;
    bson_iter_init(&it, key);
    for (size_t i = 0; i < ix->nfields && bson_iter_next(&it) && off < buflen; i++) {
        char vb[300];
        fmt_value(bson_iter_value(&it), vb, sizeof vb);
        w = snprintf(buf + off, buflen - off, "%s%s: %s", i ? ", " : "", ix->paths[i], vb);
        if (w > 0)
            off += (size_t)w;
        if (key_value)
            bson_append_value(key_value, ix->paths[i], -1, bson_iter_value(&it));
    }
    if (off < buflen)
        snprintf(buf + off, buflen - off, " }");
}
