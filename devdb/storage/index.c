/*
 * index.c: devdb's ordered index, a B+tree of (key tuple, record id) entries (see index.h).
 *
 * Why a B+tree: the skiplist it replaces cost ~25 cache misses per search (one per node
 * visited, each node a separate allocation) and a full key comparison per step. Here a search
 * visits height + 1 nodes (3-4 for millions of entries) and binary-searches each one over
 * contiguous 32-byte slots whose inline 8-byte prefix decides most comparisons without
 * touching the key bytes.
 *
 * Layout:
 *
 *   leaf (LEAF_BYTES, aligned to LEAF_BYTES):
 *     +------+------+---+--------------------------------------------+
 *     | prev | next | n | slot[0] ... slot[LEAF_CAP - 1]              |
 *     +------+------+---+--------------------------------------------+
 *   slot (struct index_node, 32 bytes):
 *     | pfx u64 | rid u64 | key * (BSON key doc, refcounted, shared) | keylen u32 | ptype u8 |
 *   inner:
 *     | n (children) | sep[INNER_CAP - 1] (slots with their own key copies) | kid[INNER_CAP] |
 *
 * Order: bv_key_compare(key, dirs) then rid, so equal keys of a non-unique index sit together
 * ordered by record id and every entry is unique, which makes removal exact.
 *
 * Prefix: when the first key field is an ObjectId, a date or a string, `ptype` is its BSON type
 * and `pfx` an order-preserving 64-bit image of its first bytes (inverted for a descending
 * first field). Two slots with the same ptype and different pfx are ordered by pfx alone
 * (bv_compare agrees on these types); anything else falls back to the byte fast paths and
 * then bv_key_compare.
 *
 * Invariants: the entries under inner->kid[i] are >= sep[i-1] and < sep[i]. Separators are
 * copies (holding their own reference to the key allocation) of the entry that started the right
 * half when a node split, so they stay valid bounds after that entry is deleted. No leaf is empty
 * except the root leaf of an empty index. Deletion does not merge underfull nodes (it frees a leaf
 * only when it becomes empty and collapses a one-child root), which keeps removal simple and cheap;
 * splits of the rightmost leaf/inner node at its end keep the left node full, so ascending
 * inserts (ObjectIds, timestamps) pack leaves completely.
 *
 * Positions: an index_node pointer is a leaf slot; the leaf is found by masking the pointer
 * (leaves are LEAF_BYTES-aligned). Any mutation may move slots, so positions are only walked
 * under the store lock between mutations (the planner collects record ids).
 *
 * Mutations (add/remove) run under the store's exclusive lock; every allocation a mutation
 * needs is made before the tree is changed, so out-of-memory leaves the index as it was.
 */
#include "storage/index.h"

#include "base/bsonval.h"
#include "base/errors.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct index_node {
    uint64_t pfx;
    uint64_t rid;
    uint8_t *key; /* BSON document of "" fields; a reference held by the slot (key_alloc) */
    uint32_t keylen;
    uint8_t ptype; /* BSON type of the first key field when pfx is valid, else 0 */
};

#define LEAF_BYTES 2048u
#define LEAF_HDR   32u
#define LEAF_CAP   ((LEAF_BYTES - LEAF_HDR) / sizeof(index_node))
#define INNER_CAP  64u

struct index_leaf {
    index_leaf *prev, *next;
    uint32_t n;
    uint8_t pad[LEAF_HDR - 2 * sizeof(void *) - sizeof(uint32_t)];
    index_node s[LEAF_CAP];
};

typedef struct ix_inner {
    uint32_t n; /* children */
    index_node sep[INNER_CAP - 1];
    void *kid[INNER_CAP];
} ix_inner;

_Static_assert(sizeof(index_node) == 32, "slot is 32 bytes");
_Static_assert(sizeof(index_leaf) <= LEAF_BYTES, "leaf fits its alignment");

static index_leaf *leaf_of(const index_node *n)
{
    return (index_leaf *)((uintptr_t)n & ~(uintptr_t)(LEAF_BYTES - 1));
}

static index_leaf *leaf_new(void)
{
    index_leaf *l = aligned_alloc(LEAF_BYTES, LEAF_BYTES);
    if (l) {
        l->prev = l->next = NULL;
        l->n = 0;
    }
    return l;
}

/* ---- key allocations ---------------------------------------------------------------------
 *
 * A key's bytes live in one allocation behind a 4-byte reference count. Entries whose keys are
 * byte-identical to a neighbour's share that neighbour's allocation (tree_insert), and
 * separators share the key of the entry they were taken from. A low-cardinality index
 * ({campaign_id: 1, status: 1}: one key for a whole campaign's PENDING logs) then holds a
 * handful of key allocations instead of one per entry, and comparing two entries that share a
 * key is a pointer comparison that touches no key memory. */

static uint8_t *key_alloc(uint32_t len)
{
    uint8_t *p = malloc(sizeof(uint32_t) + len);
    if (!p)
        return NULL;
    uint32_t one = 1;
    memcpy(p, &one, sizeof one);
    return p + sizeof(uint32_t);
}

static void key_ref(uint8_t *k)
{
    uint32_t r;
    memcpy(&r, k - sizeof r, sizeof r);
    r++;
    memcpy(k - sizeof r, &r, sizeof r);
}

static void key_unref(uint8_t *k)
{
    if (!k)
        return;
    uint32_t r;
    memcpy(&r, k - sizeof r, sizeof r);
    if (--r == 0) {
        free(k - sizeof r);
        return;
    }
    memcpy(k - sizeof r, &r, sizeof r);
}

/* If neighbour n holds a key byte-identical to s's, s takes a reference to n's allocation and
 * drops its own. */
static void key_share(index_node *s, const index_node *n)
{
    /* Different prefixes (random _ids) rule it out without touching either key. */
    if (n->ptype && n->ptype == s->ptype && n->pfx != s->pfx)
        return;
    if (n->key == s->key || n->keylen != s->keylen || memcmp(n->key, s->key, s->keylen) != 0)
        return;
    key_ref(n->key);
    key_unref(s->key);
    s->key = n->key;
}

/* ---- keys and comparisons ---------------------------------------------------------------- */

/* Where the value of the key element at p starts (after type byte and name), NULL if the key
 * ends first. */
static const uint8_t *elem_value(const uint8_t *p, const uint8_t *end)
{
    const uint8_t *z = p + 1 < end ? memchr(p + 1, '\0', (size_t)(end - (p + 1))) : NULL;
    return z ? z + 1 : NULL;
}

static uint64_t be_prefix(const uint8_t *p, size_t n)
{
    uint64_t x = 0;
    for (size_t i = 0; i < 8; i++)
        x = (x << 8) | (i < n ? p[i] : 0);
    return x;
}

/* The order-preserving prefix of a first-field value of type t whose bytes start at v (at
 * most `avail` bytes). Returns t, or 0 when the type has no prefix. */
static uint8_t value_prefix(uint8_t t, const uint8_t *v, size_t avail, int dir, uint64_t *pfx)
{
    uint64_t x;
    if (t == BSON_TYPE_OID && avail >= 12) {
        x = be_prefix(v, 8);
    } else if (t == BSON_TYPE_DATE_TIME && avail >= 8) {
        uint64_t u;
        memcpy(&u, v, 8);
        x = BSON_UINT64_FROM_LE(u) ^ (UINT64_C(1) << 63);
    } else if (t == BSON_TYPE_UTF8 && avail >= 5) {
        /* Strings order by bytes then length; zero padding keeps a proper prefix first. */
        int32_t n;
        memcpy(&n, v, 4);
        n = (int32_t)BSON_UINT32_FROM_LE((uint32_t)n);
        if (n < 1 || (size_t)n > avail - 4)
            return 0;
        x = be_prefix(v + 4, (size_t)n - 1);
    } else {
        return 0;
    }
    *pfx = dir < 0 ? ~x : x;
    return t;
}

static void slot_set_prefix(const store_index *ix, index_node *s)
{
    s->ptype = 0;
    s->pfx = 0;
    if (s->keylen < 7)
        return;
    const uint8_t *end = s->key + s->keylen, *v = elem_value(s->key + 4, end);
    if (v)
        s->ptype = value_prefix(s->key[4], v, (size_t)(end - v), ix->dirs[0], &s->pfx);
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
static int key_cmp(const store_index *ix, const uint8_t *a, uint32_t la, const uint8_t *b,
                   uint32_t lb)
{
    int c;
    /* Byte-identical keys are equal whatever their types: the common case on low-cardinality
     * indexes ({status: 1, ...}). */
    if (la == lb && memcmp(a, b, la) == 0)
        return 0;
    if (key_cmp_fast(a, la, b, lb, ix->dirs, ix->nfields, &c))
        return c;
    bson_t ka, kb;
    bson_init_static(&ka, a, la);
    bson_init_static(&kb, b, lb);
    return bv_key_compare(&ka, &kb, ix->dirs, ix->nfields);
}

/* Key order only (record ids ignored). */
static int slot_key_cmp(const store_index *ix, const index_node *a, const index_node *b)
{
    if (a->key == b->key)
        return 0; /* a shared key allocation */
    if (a->ptype && a->ptype == b->ptype && a->pfx != b->pfx)
        return a->pfx < b->pfx ? -1 : 1;
    return key_cmp(ix, a->key, a->keylen, b->key, b->keylen);
}

/* Full entry order: key, then record id. */
static int slot_cmp(const store_index *ix, const index_node *a, const index_node *b)
{
    int c = slot_key_cmp(ix, a, b);
    if (c)
        return c;
    return a->rid < b->rid ? -1 : a->rid > b->rid ? 1 : 0;
}

/* If the key's first element is an ObjectId, its 12 bytes; else NULL. */
static const uint8_t *key_first_oid(const index_node *n)
{
    const uint8_t *p = n->key, *end = p + n->keylen;
    if (n->keylen < 5 + 1 + 12 || p[4] != BSON_TYPE_OID)
        return NULL;
    const uint8_t *q = memchr(p + 5, '\0', (size_t)(end - (p + 5)));
    return q && end - (q + 1) >= 12 ? q + 1 : NULL;
}

/* A first-field probe value with its prefix precomputed. */
typedef struct {
    const bson_value_t *v;
    uint64_t pfx;
    uint8_t ptype;
} fvalue;

static void fvalue_init(const store_index *ix, const bson_value_t *v, fvalue *f)
{
    f->v = v;
    f->ptype = 0;
    f->pfx = 0;
    uint64_t x;
    int dir = ix->dirs[0];
    if (v->value_type == BSON_TYPE_OID) {
        x = be_prefix(v->value.v_oid.bytes, 8);
    } else if (v->value_type == BSON_TYPE_DATE_TIME) {
        x = (uint64_t)v->value.v_datetime ^ (UINT64_C(1) << 63);
    } else if (v->value_type == BSON_TYPE_UTF8) {
        x = be_prefix((const uint8_t *)v->value.v_utf8.str, v->value.v_utf8.len);
    } else {
        return;
    }
    f->pfx = dir < 0 ? ~x : x;
    f->ptype = (uint8_t)v->value_type;
}

static int cmp_first_field(const store_index *ix, const index_node *n, const fvalue *f)
{
    if (f->ptype && n->ptype == f->ptype && n->pfx != f->pfx)
        return n->pfx < f->pfx ? -1 : 1;
    const bson_value_t *v = f->v;
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
    bson_init_static(&nk, n->key, n->keylen);
    if (!bson_iter_init(&it, &nk) || !bson_iter_next(&it))
        return -1;
    int c = bv_compare(bson_iter_value(&it), v);
    return ix->dirs[0] < 0 ? -c : c;
}

/* ---- searching ---------------------------------------------------------------------------- */

/* What a descent looks for: the first slot that is not "before" the probe. A probe is either
 * an entry (before: < entry, or <= entry with `le`), a first-field value or a key prefix
 * (before: < value, or <= value with `after`). The predicate is monotone over the index order. */
typedef struct {
    const index_node *t;
    const fvalue *f;
    const bson_value_t *const *pv; /* a key prefix of pn values (index_seek_prefix) */
    size_t pn;
    bool le;
} probe;

/* Compares the node's first pn key fields with pv[0..pn) in index order (directions applied). */
static int cmp_prefix(const store_index *ix, const index_node *n, const bson_value_t *const *pv,
                      size_t pn)
{
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, n->key, n->keylen))
        return -1;
    for (size_t i = 0; i < pn; i++) {
        if (!bson_iter_next(&it))
            return -1;
        int c = bv_compare(bson_iter_value(&it), pv[i]);
        if (c)
            return ix->dirs[i] < 0 ? -c : c;
    }
    return 0;
}

static bool before(const store_index *ix, const index_node *s, const probe *p)
{
    int c = p->t    ? slot_cmp(ix, s, p->t)
            : p->pv ? cmp_prefix(ix, s, p->pv, p->pn)
                    : cmp_first_field(ix, s, p->f);
    return p->le ? c <= 0 : c < 0;
}

/* Number of slots in a[0..n) that are before the probe (binary search). */
static size_t count_before(const store_index *ix, const index_node *a, size_t n, const probe *p)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (before(ix, &a[mid], p))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Walks from the root to the leaf that holds the first slot not before the probe (or whose
 * end is followed by it), recording the inner nodes and child indexes per level when asked. */
static index_leaf *descend(const store_index *ix, const probe *p, ix_inner **path, uint32_t *pidx)
{
    void *x = ix->root;
    for (int h = ix->height - 1; h >= 0; h--) {
        ix_inner *in = x;
        size_t j = count_before(ix, in->sep, in->n - 1, p);
        if (path) {
            path[h] = in;
            pidx[h] = (uint32_t)j;
        }
        x = in->kid[j];
    }
    return x;
}

/* First slot not before the probe, NULL if none. */
static const index_node *lower_bound(const store_index *ix, const probe *p)
{
    const index_leaf *l = descend(ix, p, NULL, NULL);
    size_t i = count_before(ix, l->s, l->n, p);
    if (i < l->n)
        return &l->s[i];
    return l->next ? &l->next->s[0] : NULL;
}

static const index_node *slot_next(const index_node *n)
{
    const index_leaf *l = leaf_of(n);
    size_t i = (size_t)(n - l->s);
    if (i + 1 < l->n)
        return &l->s[i + 1];
    return l->next ? &l->next->s[0] : NULL;
}

/* ---- insertion ---------------------------------------------------------------------------- */

/* Is `in` (at level h of path) the rightmost node of its level? */
static bool path_rightmost(const store_index *ix, ix_inner **path, const uint32_t *pidx, int h)
{
    for (int g = h + 1; g < ix->height; g++) {
        if (pidx[g] != path[g]->n - 1)
            return false;
    }
    return true;
}

/* An entry with s's key and another record id, found from the position s would take (pos in
 * lf): such entries sit right before it (smaller record ids) or right after it (larger ones),
 * so the walk stops at the first different key on each side. NULL if there is none. */
static const index_node *dup_near(const store_index *ix, const index_leaf *lf, size_t pos,
                                  const index_node *s)
{
    const index_leaf *l = lf;
    size_t i = pos;
    while (l) {
        if (i == 0) {
            if ((l = l->prev))
                i = l->n;
            continue;
        }
        const index_node *n = &l->s[i - 1];
        if (slot_key_cmp(ix, n, s) != 0)
            break;
        if (n->rid != s->rid)
            return n;
        i--;
    }
    for (l = lf, i = pos; l;) {
        if (i >= l->n) {
            l = l->next;
            i = 0;
            continue;
        }
        const index_node *n = &l->s[i];
        if (slot_key_cmp(ix, n, s) != 0)
            break;
        if (n->rid != s->rid)
            return n;
        i++;
    }
    return NULL;
}

/* With `unique`: returns 1 (copying the taken key into dup_key, if not NULL) and changes
 * nothing when an entry with s's key and another record id exists. */
static int dup_found(const store_index *ix, bool unique, const index_leaf *lf, size_t pos,
                     const index_node *s, bson_t *dup_key)
{
    const index_node *d = unique ? dup_near(ix, lf, pos, s) : NULL;
    if (!d)
        return 0;
    if (dup_key) {
        bson_t k;
        bson_init_static(&k, d->key, d->keylen);
        bson_concat(dup_key, &k);
    }
    return 1;
}

/*
 * Links entry s (its key reference now owned by the tree) in order. When a neighbour's key is
 * byte-identical, s->key is switched to that neighbour's allocation (key_share), so the caller
 * sees the key the tree holds. With `unique`, an entry with an equal key and another record id
 * is a violation, found at the insert position (one descent for check and insert): returns 1,
 * the key copied into dup_key, nothing changed. Returns 0, or -1 when out of memory (tree
 * unchanged, the reference in s->key still the caller's).
 */
static int tree_insert(store_index *ix, index_node *s, bool unique, bson_t *dup_key)
{
    ix_inner *path[INDEX_MAX_HEIGHT];
    uint32_t pidx[INDEX_MAX_HEIGHT];
    index_leaf *lf = ix->last;
    size_t pos;
    /* Ascending keys (ObjectIds, counters, timestamps) append to the last leaf after one
     * comparison. */
    if (lf->n > 0 && lf->n < LEAF_CAP && slot_cmp(ix, &lf->s[lf->n - 1], s) < 0) {
        if (dup_found(ix, unique, lf, lf->n, s, dup_key))
            return 1;
        key_share(s, &lf->s[lf->n - 1]);
        lf->s[lf->n++] = *s;
        ix->count++;
        return 0;
    }
    probe p = {.t = s, .le = true};
    lf = descend(ix, &p, path, pidx);
    pos = count_before(ix, lf->s, lf->n, &p);
    if (dup_found(ix, unique, lf, pos, s, dup_key))
        return 1;
    if (pos > 0)
        key_share(s, &lf->s[pos - 1]);
    if (pos < lf->n)
        key_share(s, &lf->s[pos]);
    if (lf->n < LEAF_CAP) {
        memmove(&lf->s[pos + 1], &lf->s[pos], (lf->n - pos) * sizeof *s);
        lf->s[pos] = *s;
        lf->n++;
        ix->count++;
        return 0;
    }

    /* Split: allocate everything first (new leaf, separator key, one inner node per full
     * ancestor, maybe a new root), so failure changes nothing. */
    int nsplit = 0;
    while (nsplit < ix->height && path[nsplit]->n == INNER_CAP)
        nsplit++;
    bool new_root = nsplit == ix->height;
    if (new_root && ix->height >= INDEX_MAX_HEIGHT)
        return -1;
    void *mem[INDEX_MAX_HEIGHT + 2];
    int nmem = 0;
    bool oom = false;
    index_leaf *nl = leaf_new();
    oom |= !nl;
    for (int i = 0; i < nsplit + (new_root ? 1 : 0) && !oom; i++) {
        mem[nmem] = malloc(sizeof(ix_inner));
        oom |= !mem[nmem++];
    }
    /* The separator is the first entry of the right leaf; which one that is depends on the
     * split point, so copy after splitting, into a buffer reserved now. */
    size_t old_n = lf->n;
    size_t mid = (lf == ix->last && pos == old_n) ? old_n : old_n / 2;
    const index_node *first_right = pos == mid ? s : &lf->s[mid];
    index_node sep = *first_right;
    if (oom) {
        free(nl);
        for (int i = 0; i < nmem; i++)
            free(mem[i]);
        return -1;
    }
    key_ref(sep.key); /* the separator shares the entry's key allocation */

    memcpy(nl->s, &lf->s[mid], (old_n - mid) * sizeof *s);
    nl->n = (uint32_t)(old_n - mid);
    lf->n = (uint32_t)mid;
    if (pos < mid) {
        memmove(&lf->s[pos + 1], &lf->s[pos], (mid - pos) * sizeof *s);
        lf->s[pos] = *s;
        lf->n++;
    } else {
        size_t q = pos - mid;
        memmove(&nl->s[q + 1], &nl->s[q], (nl->n - q) * sizeof *s);
        nl->s[q] = *s;
        nl->n++;
    }
    nl->prev = lf;
    nl->next = lf->next;
    if (lf->next)
        lf->next->prev = nl;
    else
        ix->last = nl;
    lf->next = nl;
    ix->count++;

    /* Push (sep, kid) into the ancestors. */
    void *kid = nl;
    int used = 0;
    for (int h = 0;; h++) {
        if (h == ix->height) {
            ix_inner *r = mem[used++];
            r->n = 2;
            r->kid[0] = ix->root;
            r->kid[1] = kid;
            r->sep[0] = sep;
            ix->root = r;
            ix->height++;
            return 0;
        }
        ix_inner *in = path[h];
        size_t j = pidx[h]; /* kid is the new right sibling of in->kid[j] */
        if (in->n < INNER_CAP) {
            memmove(&in->sep[j + 1], &in->sep[j], (in->n - 1 - j) * sizeof sep);
            memmove(&in->kid[j + 2], &in->kid[j + 1], (in->n - 1 - j) * sizeof kid);
            in->sep[j] = sep;
            in->kid[j + 1] = kid;
            in->n++;
            return 0;
        }
        /* Full: lay out the INNER_CAP + 1 children and INNER_CAP separators, then split. */
        void *ak[INNER_CAP + 1];
        index_node as[INNER_CAP];
        size_t nk = INNER_CAP + 1;
        memcpy(ak, in->kid, (j + 1) * sizeof kid);
        ak[j + 1] = kid;
        memcpy(&ak[j + 2], &in->kid[j + 1], (INNER_CAP - 1 - j) * sizeof kid);
        memcpy(as, in->sep, j * sizeof sep);
        as[j] = sep;
        memcpy(&as[j + 1], &in->sep[j], (INNER_CAP - 1 - j) * sizeof sep);
        /* Left keeps m children; as[m - 1] moves up. */
        size_t m = (j + 1 == nk - 1 && path_rightmost(ix, path, pidx, h)) ? nk - 1 : nk / 2;
        ix_inner *right = mem[used++];
        in->n = (uint32_t)m;
        memcpy(in->kid, ak, m * sizeof kid);
        memcpy(in->sep, as, (m - 1) * sizeof sep);
        right->n = (uint32_t)(nk - m);
        memcpy(right->kid, &ak[m], (nk - m) * sizeof kid);
        memcpy(right->sep, &as[m], (nk - m - 1) * sizeof sep);
        sep = as[m - 1];
        kid = right;
    }
}

/* ---- removal ------------------------------------------------------------------------------ */

/* Removes the entry equal to t (key and rid) and frees its key; false if there is none. */
static bool tree_remove(store_index *ix, const index_node *t)
{
    ix_inner *path[INDEX_MAX_HEIGHT];
    uint32_t pidx[INDEX_MAX_HEIGHT];
    probe ple = {.t = t, .le = true}, plt = {.t = t, .le = false};
    index_leaf *lf = descend(ix, &ple, path, pidx);
    size_t i = count_before(ix, lf->s, lf->n, &plt);
    if (i >= lf->n || slot_cmp(ix, &lf->s[i], t) != 0)
        return false;
    key_unref(lf->s[i].key);
    memmove(&lf->s[i], &lf->s[i + 1], (lf->n - i - 1) * sizeof *t);
    lf->n--;
    ix->count--;
    if (lf->n > 0 || ix->height == 0)
        return true;

    /* The leaf is empty: unlink it and drop it from its parent, cascading through parents
     * left without children. */
    if (lf->prev)
        lf->prev->next = lf->next;
    else
        ix->first = lf->next;
    if (lf->next)
        lf->next->prev = lf->prev;
    else
        ix->last = lf->prev;
    free(lf);
    for (int h = 0; h < ix->height; h++) {
        ix_inner *in = path[h];
        size_t j = pidx[h];
        if (in->n > 1) {
            size_t sj = j > 0 ? j - 1 : 0;
            key_unref(in->sep[sj].key);
            memmove(&in->sep[sj], &in->sep[sj + 1], (in->n - 2 - sj) * sizeof in->sep[0]);
        }
        memmove(&in->kid[j], &in->kid[j + 1], (in->n - 1 - j) * sizeof in->kid[0]);
        in->n--;
        if (in->n > 0)
            break;
        assert(h < ix->height - 1); /* the root has >= 2 children, see below */
        free(in);
    }
    while (ix->height > 0 && ((ix_inner *)ix->root)->n == 1) {
        ix_inner *r = ix->root;
        ix->root = r->kid[0];
        free(r);
        ix->height--;
    }
    return true;
}

/* ---- construction ------------------------------------------------------------------------ */

static store_index *index_alloc(void)
{
    store_index *ix = calloc(1, sizeof *ix);
    if (!ix)
        return NULL;
    index_leaf *l = leaf_new();
    if (!l) {
        free(ix);
        return NULL;
    }
    ix->root = ix->first = ix->last = l;
    ix->key = bson_new();
    ix->spec = bson_new();
    return ix;
}

static void inner_free(void *x, int h)
{
    if (h == 0)
        return; /* leaves are freed through the leaf list */
    ix_inner *in = x;
    for (uint32_t i = 0; i < in->n; i++)
        inner_free(in->kid[i], h - 1);
    for (uint32_t i = 0; i + 1 < in->n; i++)
        key_unref(in->sep[i].key);
    free(in);
}

void index_free(store_index *ix)
{
    if (!ix)
        return;
    inner_free(ix->root, ix->height);
    for (index_leaf *l = ix->first; l;) {
        index_leaf *nx = l->next;
        for (uint32_t i = 0; i < l->n; i++)
            key_unref(l->s[i].key);
        free(l);
        l = nx;
    }
    for (size_t i = 0; i < ix->nfields; i++)
        free(ix->paths[i]);
    free(ix->name);
    partial_free(ix->partial);
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
    bool have_key = false, have_partial = false;
    bson_value_t partial_v = {0}; /* points into spec */
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
        } else if (strcmp(k, "partialFilterExpression") == 0) {
            partial_v = *bson_iter_value(&it);
            have_partial = true;
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
    ix->toplevel = true;
    for (size_t i = 0; i < ix->nfields; i++) {
        size_t pl = ix->paths[i] ? strlen(ix->paths[i]) : 0;
        if (!ix->paths[i] || pl > BV_PATH_MAX || memchr(ix->paths[i], '.', pl))
            ix->toplevel = false;
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
    if (have_partial) {
        if (!(ix->partial = partial_new(&partial_v, ix->sparse, err)))
            goto fail;
        if (ix->nfields == 1 && strcmp(ix->paths[0], "_id") == 0) {
            mdb_error(err, MDB_CANNOT_CREATE_INDEX, "_id index cannot be a partial index");
            goto fail;
        }
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

/* Entries built for one document before they are linked (so a failure changes nothing). */
typedef struct {
    store_index *ix;
    uint64_t rid;
    index_node inl[8];
    index_node *a;
    size_t n, cap;
} pending;

static int collect_key(const bson_t *key, void *ctx)
{
    pending *p = ctx;
    if (p->n == p->cap) {
        size_t ncap = p->cap * 2;
        index_node *na = malloc(ncap * sizeof *na);
        if (!na)
            return 2;
        memcpy(na, p->a, p->n * sizeof *na);
        if (p->a != p->inl)
            free(p->a);
        p->a = na;
        p->cap = ncap;
    }
    index_node *s = &p->a[p->n];
    s->key = key_alloc(key->len);
    if (!s->key)
        return 2;
    memcpy(s->key, bson_get_data(key), key->len);
    s->keylen = key->len;
    s->rid = p->rid;
    slot_set_prefix(p->ix, s);
    p->n++;
    return 0;
}

/* Frees the keys of entries [from, n) and the array. */
static void pending_free(pending *p, size_t from)
{
    for (size_t i = from; i < p->n; i++)
        key_unref(p->a[i].key);
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

bool index_covers(const store_index *ix, const bson_t *doc)
{
    if (sparse_skips(ix, doc))
        return false;
    return !ix->partial || partial_matches(ix->partial, doc);
}

/* Is there an entry with s's key and a record id other than rid? */
static bool key_taken(const store_index *ix, const index_node *s, uint64_t rid)
{
    index_node t = *s;
    t.rid = 0;
    probe p = {.t = &t, .le = false};
    for (const index_node *n = lower_bound(ix, &p); n; n = slot_next(n)) {
        if (slot_key_cmp(ix, n, s) != 0)
            return false;
        if (n->rid != rid)
            return true;
    }
    return false;
}

/*
 * Key generation fast path for an index whose paths are all top-level field names (ix->toplevel):
 * one pass over the document's top-level fields finds every indexed value, and the key is
 * written straight into a stack buffer. It handles the scalar types whose key bytes are the
 * value's own BSON bytes (ObjectId, string, date, int32, int64, double, bool, null, embedded
 * document) and a missing field (null), giving exactly bv_index_keys' single key; any other
 * type (arrays, which make the index multikey, included) or a key over the buffer returns 1 and
 * the caller takes bv_index_keys' general path. Otherwise returns what cb returns (0 to go on).
 */
#define TOPLEVEL_KEY_MAX 512

static uint32_t rd_le32(const uint8_t *p)
{
    uint32_t x;
    memcpy(&x, p, 4);
    return BSON_UINT32_FROM_LE(x);
}

/* The value of an element of a type toplevel_keys handles, from its vs raw bytes at v; false
 * for any other type or malformed bytes. */
static bool raw_value(uint8_t t, const uint8_t *v, size_t vs, bson_value_t *out)
{
    uint64_t u;
    out->value_type = (bson_type_t)t;
    switch (t) {
    case BSON_TYPE_NULL:
        return true;
    case BSON_TYPE_BOOL:
        if (v[0] > 1)
            return false;
        out->value.v_bool = v[0] == 1;
        return true;
    case BSON_TYPE_INT32:
        out->value.v_int32 = (int32_t)rd_le32(v);
        return true;
    case BSON_TYPE_DOUBLE:
        memcpy(&out->value.v_double, v, 8);
        out->value.v_double = BSON_DOUBLE_FROM_LE(out->value.v_double);
        return true;
    case BSON_TYPE_DATE_TIME:
    case BSON_TYPE_INT64:
        memcpy(&u, v, 8);
        u = BSON_UINT64_FROM_LE(u);
        if (t == BSON_TYPE_INT64)
            out->value.v_int64 = (int64_t)u;
        else
            out->value.v_datetime = (int64_t)u;
        return true;
    case BSON_TYPE_OID:
        memcpy(out->value.v_oid.bytes, v, 12);
        return true;
    case BSON_TYPE_UTF8:
        if (vs < 5 || v[vs - 1] != 0)
            return false;
        out->value.v_utf8.str = (char *)(v + 4);
        out->value.v_utf8.len = (uint32_t)(vs - 5);
        return true;
    case BSON_TYPE_DOCUMENT:
        if (vs < 5 || v[vs - 1] != 0)
            return false;
        out->value.v_doc.data = (uint8_t *)v;
        out->value.v_doc.data_len = (uint32_t)vs;
        return true;
    default:
        out->value_type = BSON_TYPE_EOD;
        return false;
    }
}

static int toplevel_keys(const store_index *ix, const bson_t *doc, bv_key_cb cb, void *ctx)
{
    bson_value_t vals[INDEX_MAX_FIELDS];
    size_t nf = ix->nfields, left = nf;
    for (size_t f = 0; f < nf; f++)
        vals[f].value_type = BSON_TYPE_EOD;
    /* A raw walk over the top-level elements (cheaper than bson_iter_next's checks, and the
     * document is a stored, validated one); anything unexpected gives up (1). */
    const uint8_t *db = bson_get_data(doc), *end = db + doc->len - 1, *q = db + 4;
    if (doc->len < 5 || *end != 0)
        return 1;
    while (left > 0 && q < end) {
        uint8_t t = *q;
        const char *k = (const char *)q + 1;
        const uint8_t *z = memchr(k, 0, (size_t)(end - (const uint8_t *)k));
        if (!z)
            return 1;
        const uint8_t *v = z + 1;
        size_t avail = (size_t)(end - v), vs = bv_raw_value_size(t, v, avail);
        if (vs == SIZE_MAX)
            return 1;
        for (size_t f = 0; f < nf; f++) {
            /* The first field of a name counts, as bson_iter_find does. */
            if (vals[f].value_type == BSON_TYPE_EOD && strcmp(k, ix->paths[f]) == 0) {
                if (!raw_value(t, v, vs, &vals[f]))
                    return 1;
                left--;
            }
        }
        q = v + vs;
    }
    uint8_t buf[TOPLEVEL_KEY_MAX];
    size_t n = 4;
    for (size_t f = 0; f < nf; f++) {
        const bson_value_t *v = &vals[f];
        uint8_t t = (uint8_t)v->value_type, tmp[8];
        const uint8_t *src = tmp;
        size_t len;
        switch (v->value_type) {
        case BSON_TYPE_EOD: /* missing: null */
            t = BSON_TYPE_NULL;
            len = 0;
            break;
        case BSON_TYPE_NULL:
            len = 0;
            break;
        case BSON_TYPE_OID:
            src = v->value.v_oid.bytes;
            len = 12;
            break;
        case BSON_TYPE_DATE_TIME: {
            uint64_t u = BSON_UINT64_TO_LE((uint64_t)v->value.v_datetime);
            memcpy(tmp, &u, 8);
            len = 8;
            break;
        }
        case BSON_TYPE_INT64: {
            uint64_t u = BSON_UINT64_TO_LE((uint64_t)v->value.v_int64);
            memcpy(tmp, &u, 8);
            len = 8;
            break;
        }
        case BSON_TYPE_INT32: {
            uint32_t u = BSON_UINT32_TO_LE((uint32_t)v->value.v_int32);
            memcpy(tmp, &u, 4);
            len = 4;
            break;
        }
        case BSON_TYPE_DOUBLE: {
            double d = BSON_DOUBLE_TO_LE(v->value.v_double);
            memcpy(tmp, &d, 8);
            len = 8;
            break;
        }
        case BSON_TYPE_BOOL:
            tmp[0] = v->value.v_bool ? 1 : 0;
            len = 1;
            break;
        case BSON_TYPE_UTF8:
            /* int32 length with the NUL, the bytes, the NUL: written below. */
            src = (const uint8_t *)v->value.v_utf8.str;
            len = v->value.v_utf8.len;
            break;
        case BSON_TYPE_DOCUMENT:
            src = v->value.v_doc.data;
            len = v->value.v_doc.data_len;
            break;
        default:
            return 1;
        }
        size_t need = 2 + len + (t == BSON_TYPE_UTF8 ? 5 : 0);
        if (n + need + 1 > sizeof buf)
            return 1;
        buf[n++] = t;
        buf[n++] = 0; /* the empty field name */
        if (t == BSON_TYPE_UTF8) {
            uint32_t sl = BSON_UINT32_TO_LE((uint32_t)len + 1);
            memcpy(buf + n, &sl, 4);
            n += 4;
        }
        if (len)
            memcpy(buf + n, src, len);
        n += len;
        if (t == BSON_TYPE_UTF8)
            buf[n++] = 0;
    }
    buf[n++] = 0;
    uint32_t tl = BSON_UINT32_TO_LE((uint32_t)n);
    memcpy(buf, &tl, 4);
    bson_t key;
    if (!bson_init_static(&key, buf, n))
        return 1;
    int rc = cb(&key, ctx);
    return rc == 1 ? 2 : rc; /* 1 means "not handled" here; callbacks return 0 or 2 */
}

/* bv_index_keys for ix, through the top-level fast path when it applies. */
static int ix_keys(const store_index *ix, const bson_t *doc, bv_key_cb cb, void *ctx, bool *mk,
                   bson_error_t *err)
{
    if (ix->toplevel) {
        int rc = toplevel_keys(ix, doc, cb, ctx);
        if (rc != 1) {
            *mk = false;
            return rc;
        }
    }
    return bv_index_keys(doc, ix->key, cb, ctx, mk, err);
}

static int gen_keys(store_index *ix, const bson_t *doc, pending *p, bool *multikey,
                    bson_error_t *err)
{
    p->ix = ix;
    p->a = p->inl;
    p->cap = sizeof p->inl / sizeof p->inl[0];
    p->n = 0;
    int rc = ix_keys(ix, doc, collect_key, p, multikey, err);
    if (rc == 2)
        return mdb_error(err, MDB_INTERNAL_ERROR, "out of memory building index keys");
    return rc == 0 ? 0 : -1;
}

int index_check(const store_index *ix, const bson_t *doc, uint64_t rid, bson_t *dup_key,
                bson_error_t *err)
{
    if (!ix->unique || !index_covers(ix, doc))
        return 0;
    return index_check_covered(ix, doc, rid, dup_key, err);
}

static int keyset_fill(const store_index *ix, const bson_t *doc, index_keyset *ks,
                       bool covered_known, bson_error_t *err);

int index_check_covered(const store_index *ix, const bson_t *doc, uint64_t rid, bson_t *dup_key,
                        bson_error_t *err)
{
    if (!ix->unique)
        return 0;
    index_keyset ks;
    int rc = keyset_fill(ix, doc, &ks, true, err);
    if (rc == 0)
        rc = index_check_keyset(ix, &ks, rid, dup_key);
    index_keyset_free(&ks);
    return rc;
}

/*
 * Inserts entry s. On a unique index an entry with an equal key and another record id is a
 * violation: returns 1 (copying that key into dup_key) and leaves s unlinked. -1: out of
 * memory, s unlinked. 0: linked, the tree owns s's key.
 */
static int insert_entry(store_index *ix, index_node *s, bson_t *dup_key)
{
    return tree_insert(ix, s, ix->unique, dup_key);
}

int index_add(store_index *ix, const bson_t *doc, uint64_t rid, bson_t *dup_key, bson_error_t *err)
{
    if (!index_covers(ix, doc))
        return 0;
    return index_add_covered(ix, doc, rid, dup_key, err);
}

/* Links the entries of p (keys owned by p) for one document: all or none. On a unique
 * violation returns 1 (dup_key filled), -1 with err when out of memory, 0 when linked. p's
 * keys end up owned by the tree or freed. */
static int link_pending(store_index *ix, pending *p, bool mk, bson_t *dup_key, bson_error_t *err)
{
    for (size_t i = 0; i < p->n; i++) {
        int rc = insert_entry(ix, &p->a[i], dup_key);
        if (rc != 0) {
            /* Undo this document's entries linked so far (removal drops their keys); free
             * the rest. */
            for (size_t j = 0; j < i; j++)
                tree_remove(ix, &p->a[j]);
            pending_free(p, i);
            if (rc < 0)
                return mdb_error(err, MDB_INTERNAL_ERROR, "out of memory adding index keys");
            return 1;
        }
    }
    pending_free(p, p->n);
    if (mk)
        ix->multikey = true;
    return 0;
}

int index_add_covered(store_index *ix, const bson_t *doc, uint64_t rid, bson_t *dup_key,
                      bson_error_t *err)
{
    pending p = {.rid = rid};
    bool mk = false;
    if (gen_keys(ix, doc, &p, &mk, err) != 0) {
        pending_free(&p, 0);
        return -1;
    }
    return link_pending(ix, &p, mk, dup_key, err);
}

void index_remove(store_index *ix, const bson_t *doc, uint64_t rid)
{
    /* A document the partial filter rejects was never added: no tree descent for it. */
    if (ix->partial && !partial_matches(ix->partial, doc))
        return;
    index_remove_covered(ix, doc, rid);
}

void index_remove_covered(store_index *ix, const bson_t *doc, uint64_t rid)
{
    index_keyset ks;
    bson_error_t err;
    if (keyset_fill(ix, doc, &ks, true, &err) == 0)
        index_remove_keyset(ix, &ks, rid);
    index_keyset_free(&ks);
}

/* ---- keysets: a document's entries generated once ---------------------------------------- */

void index_keyset_free(index_keyset *ks)
{
    if (ks->p && ks->p != ks->inl)
        free(ks->p);
    ks->p = ks->inl;
    ks->n = 0;
}

static int keyset_add(const bson_t *key, void *ctx)
{
    index_keyset *ks = ctx;
    if (ks->n + key->len > ks->cap) {
        size_t ncap = ks->cap * 2 > ks->n + key->len ? ks->cap * 2 : ks->n + key->len;
        uint8_t *np = malloc(ncap);
        if (!np)
            return 2;
        memcpy(np, ks->p, ks->n);
        if (ks->p != ks->inl)
            free(ks->p);
        ks->p = np;
        ks->cap = ncap;
    }
    memcpy(ks->p + ks->n, bson_get_data(key), key->len);
    ks->n += key->len;
    return 0;
}

/* index_keyset_fill; with covered_known the caller knows index_covers is true. */
static int keyset_fill(const store_index *ix, const bson_t *doc, index_keyset *ks,
                       bool covered_known, bson_error_t *err)
{
    ks->p = ks->inl;
    ks->cap = sizeof ks->inl;
    ks->n = 0;
    ks->multikey = false;
    ks->covered = covered_known || index_covers(ix, doc);
    if (!ks->covered)
        return 0;
    int rc = ix_keys(ix, doc, keyset_add, ks, &ks->multikey, err);
    if (rc == 2)
        return mdb_error(err, MDB_INTERNAL_ERROR, "out of memory building index keys");
    return rc == 0 ? 0 : -1;
}

int index_keyset_fill(const store_index *ix, const bson_t *doc, index_keyset *ks, bson_error_t *err)
{
    return keyset_fill(ix, doc, ks, false, err);
}

bool index_keysets_same(const index_keyset *a, const index_keyset *b)
{
    return a->covered == b->covered && a->n == b->n && memcmp(a->p, b->p, a->n) == 0;
}

/* The next key of ks at *off as a probe slot whose key points into ks (not an allocation of
 * the tree: never freed, never shared). False at the end. */
static bool keyset_next(const store_index *ix, const index_keyset *ks, size_t *off, uint64_t rid,
                        index_node *t)
{
    if (*off + 5 > ks->n)
        return false;
    uint32_t len;
    memcpy(&len, ks->p + *off, 4);
    len = BSON_UINT32_FROM_LE(len);
    if (len < 5 || len > ks->n - *off)
        return false;
    t->key = ks->p + *off;
    t->keylen = len;
    t->rid = rid;
    slot_set_prefix(ix, t);
    *off += len;
    return true;
}

int index_check_keyset(const store_index *ix, const index_keyset *ks, uint64_t rid, bson_t *dup_key)
{
    if (!ix->unique || !ks->covered)
        return 0;
    index_node t;
    for (size_t off = 0; keyset_next(ix, ks, &off, rid, &t);) {
        if (key_taken(ix, &t, rid)) {
            if (dup_key) {
                bson_t k;
                bson_init_static(&k, t.key, t.keylen);
                bson_concat(dup_key, &k);
            }
            return 1;
        }
    }
    return 0;
}

void index_remove_keyset(store_index *ix, const index_keyset *ks, uint64_t rid)
{
    if (!ks->covered)
        return;
    index_node t;
    for (size_t off = 0; keyset_next(ix, ks, &off, rid, &t);)
        tree_remove(ix, &t);
}

int index_add_keyset(store_index *ix, const index_keyset *ks, uint64_t rid, bson_t *dup_key,
                     bson_error_t *err)
{
    if (!ks->covered)
        return 0;
    pending p = {.ix = ix, .rid = rid};
    p.a = p.inl;
    p.cap = sizeof p.inl / sizeof p.inl[0];
    index_node t;
    for (size_t off = 0; keyset_next(ix, ks, &off, rid, &t);) {
        bson_t k;
        bson_init_static(&k, t.key, t.keylen);
        if (collect_key(&k, &p) != 0) {
            pending_free(&p, 0);
            return mdb_error(err, MDB_INTERNAL_ERROR, "out of memory adding index keys");
        }
    }
    return link_pending(ix, &p, ks->multikey, dup_key, err);
}

int index_keys_same(const store_index *ix, const bson_t *a, const bson_t *b, bool *in_a, bool *in_b,
                    bson_error_t *err)
{
    index_keyset ka, kb;
    int rc = -1;
    if (index_keyset_fill(ix, a, &ka, err) == 0) {
        if (index_keyset_fill(ix, b, &kb, err) == 0) {
            rc = index_keysets_same(&ka, &kb);
            if (in_a)
                *in_a = ka.covered;
            if (in_b)
                *in_b = kb.covered;
        }
        index_keyset_free(&kb);
    }
    index_keyset_free(&ka);
    return rc;
}

/* ---- ordered access ------------------------------------------------------------------------ */

const index_node *index_first(const store_index *ix)
{
    return ix->first->n ? &ix->first->s[0] : NULL;
}

const index_node *index_last(const store_index *ix)
{
    return ix->last->n ? &ix->last->s[ix->last->n - 1] : NULL;
}

const index_node *index_next(const index_node *n)
{
    return slot_next(n);
}

const index_node *index_prev(const index_node *n)
{
    const index_leaf *l = leaf_of(n);
    size_t i = (size_t)(n - l->s);
    if (i > 0)
        return &l->s[i - 1];
    return l->prev ? &l->prev->s[l->prev->n - 1] : NULL;
}

uint64_t index_node_rid(const index_node *n)
{
    return n->rid;
}

void index_node_key(const index_node *n, bson_t *out)
{
    bson_init_static(out, n->key, n->keylen);
}

const uint8_t *index_node_key_data(const index_node *n, uint32_t *len)
{
    *len = n->keylen;
    return n->key;
}

void index_node_prefetch(const index_node *n)
{
    if (n)
        __builtin_prefetch(n->key);
}

int index_cmp_first_field(const store_index *ix, const index_node *n, const bson_value_t *v)
{
    fvalue f;
    fvalue_init(ix, v, &f);
    return cmp_first_field(ix, n, &f);
}

const index_node *index_seek_first_field(const store_index *ix, const bson_value_t *v, bool after)
{
    fvalue f;
    fvalue_init(ix, v, &f);
    probe p = {.f = &f, .le = after};
    return lower_bound(ix, &p);
}

const index_node *index_seek_prefix(const store_index *ix, const bson_value_t *const *vals,
                                    size_t n, bool after)
{
    if (n == 0 || n > ix->nfields)
        return after ? NULL : index_first(ix);
    probe p = {.pv = vals, .pn = n, .le = after};
    return lower_bound(ix, &p);
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
