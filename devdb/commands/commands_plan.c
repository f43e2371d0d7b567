/*
 * commands_plan.c: access-path selection and execution (see commands_plan.h).
 *
 * Execution is a producer/consumer over record ids: an access path (natural scan, index
 * range scan over match bounds, or a full index walk) produces candidate rids in its order;
 * `consider` fetches each document, counts it as examined, runs the matcher and keeps the
 * matches. When the access path already yields the requested sort order the scan stops as
 * soon as skip + limit matches are kept; otherwise all matches are kept, sorted by precomputed
 * sort keys (bv_sort_key, stable), and then skipped/limited.
 *
 * A multikey index can yield a record more than once (one key per array element); such scans
 * collect candidates first and deduplicate them, in rid order.
 */
#include "commands/commands_plan.h"

#include "base/bsonval.h"
#include "base/errors.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    uint64_t *a;
    size_t n, cap;
} ridvec;

static int rv_push(ridvec *v, uint64_t r)
{
    if (v->n == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 64;
        uint64_t *na = realloc(v->a, ncap * sizeof *na);
        if (!na)
            return -1;
        v->a = na;
        v->cap = ncap;
    }
    v->a[v->n++] = r;
    return 0;
}

typedef struct {
    store_coll *c;
    const matcher *m;
    ridvec out;
    size_t want; /* stop after this many matches (ordered scans); SIZE_MAX otherwise */
    uint64_t examined, keys;
    uint64_t bytes;      /* BSON bytes of the matches (what a blocking sort would hold) */
    int64_t deadline_ms; /* 0: none */
    bool oom, expired;
} scan;

int64_t plan_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int plan_deadline(const bson_t *cmd, int64_t *deadline_ms, bson_error_t *err)
{
    *deadline_ms = 0;
    bson_iter_t it;
    if (!bson_iter_init_find(&it, cmd, "maxTimeMS"))
        return 0;
    int64_t v;
    if (BSON_ITER_HOLDS_INT32(&it) || BSON_ITER_HOLDS_INT64(&it)) {
        v = bson_iter_as_int64(&it);
    } else if (BSON_ITER_HOLDS_DOUBLE(&it) &&
               bson_iter_double(&it) == (double)(int64_t)bson_iter_double(&it)) {
        v = (int64_t)bson_iter_double(&it);
    } else {
        return mdb_error(err, MDB_BAD_VALUE, "maxTimeMS must be a number");
    }
    if (v < 0 || v > INT32_MAX)
        return mdb_error(err, MDB_BAD_VALUE, "%lld value for maxTimeMS is out of range [0, %d]",
                         (long long)v, INT32_MAX);
    if (v > 0)
        *deadline_ms = plan_now_ms() + v;
    return 0;
}

/* Every 256 documents or keys, is the deadline past? Sets s->expired (the scan then stops). */
static bool over_time(scan *s)
{
    if (!s->deadline_ms || ((s->examined + s->keys) & 255) != 0)
        return false;
    if (plan_now_ms() < s->deadline_ms)
        return false;
    s->expired = true;
    return true;
}

/* Returns true to stop the scan. */
static bool consider(scan *s, uint64_t rid)
{
    bson_t d;
    if (!store_doc(s->c, rid, &d))
        return false;
    s->examined++;
    if (over_time(s))
        return true;
    if (!matcher_matches(s->m, &d))
        return false;
    if (rv_push(&s->out, rid) != 0) {
        s->oom = true;
        return true;
    }
    s->bytes += d.len;
    return s->out.n >= s->want;
}

/* ---- access paths ---------------------------------------------------------------------------- */

/* Produces the rids of index entries within the bounds, in index order, into `sink`
 * (when collecting) or through consider(). */
typedef struct {
    scan *s;
    ridvec *collect; /* non-NULL: collect candidates instead of considering them */
} sink;

static bool emit(sink *k, uint64_t rid)
{
    k->s->keys++;
    if (over_time(k->s))
        return true;
    if (k->collect) {
        if (rv_push(k->collect, rid) != 0) {
            k->s->oom = true;
            return true;
        }
        return false;
    }
    return consider(k->s, rid);
}

static void scan_points(const store_index *ix, const match_bounds *b, sink *k)
{
    for (size_t j = 0; j < b->n_points; j++) {
        /* Points are ascending; a descending index stores them in reverse order. */
        const bson_value_t *p = b->points[ix->dirs[0] < 0 ? b->n_points - 1 - j : j];
        for (const index_node *nd = index_seek_first_field(ix, p, false);
             nd && index_cmp_first_field(ix, nd, p) == 0; nd = index_next(nd)) {
            if (emit(k, index_node_rid(nd)))
                return;
        }
    }
}

static void scan_range(const store_index *ix, const match_bounds *b, bool reverse, sink *k)
{
    /* Translate value bounds into index order: on a descending first field, hi comes first. */
    bool asc = ix->dirs[0] > 0;
    bool has_s = asc ? b->has_lo : b->has_hi, has_e = asc ? b->has_hi : b->has_lo;
    const bson_value_t *sv = asc ? &b->lo : &b->hi, *ev = asc ? &b->hi : &b->lo;
    bool s_incl = asc ? b->lo_inclusive : b->hi_inclusive;
    bool e_incl = asc ? b->hi_inclusive : b->lo_inclusive;
    if (!reverse) {
        const index_node *nd = has_s ? index_seek_first_field(ix, sv, !s_incl) : index_first(ix);
        for (; nd; nd = index_next(nd)) {
            if (has_e) {
                int c = index_cmp_first_field(ix, nd, ev);
                if (c > 0 || (c == 0 && !e_incl))
                    break;
            }
            if (emit(k, index_node_rid(nd)))
                return;
        }
    } else {
        /* Last node inside the end bound, walking backwards to the start bound. */
        const index_node *nd;
        if (has_e) {
            nd = index_seek_first_field(ix, ev, e_incl);
            nd = nd ? index_prev(nd) : index_last(ix);
        } else {
            nd = index_last(ix);
        }
        for (; nd; nd = index_prev(nd)) {
            if (has_s) {
                int c = index_cmp_first_field(ix, nd, sv);
                if (c < 0 || (c == 0 && !s_incl))
                    break;
            }
            if (emit(k, index_node_rid(nd)))
                return;
        }
    }
}

static void scan_all(const store_index *ix, bool reverse, sink *k)
{
    for (const index_node *nd = reverse ? index_last(ix) : index_first(ix); nd;
         nd = reverse ? index_prev(nd) : index_next(nd)) {
        if (emit(k, index_node_rid(nd)))
            return;
    }
}

/* ---- selection ----------------------------------------------------------------------------------
 */

int plan_check_hint(store_coll *c, const bson_value_t *hint, store_index **out, bson_error_t *err)
{
    *out = NULL;
    if (!hint)
        return 0;
    store_index *ix = NULL;
    if (hint->value_type == BSON_TYPE_UTF8) {
        ix = c ? store_index_by_name(c, hint->value.v_utf8.str) : NULL;
    } else if (hint->value_type == BSON_TYPE_DOCUMENT) {
        bson_t pat;
        if (!bv_as_doc(hint, &pat))
            return mdb_error(err, MDB_BAD_VALUE, "invalid hint");
        bson_iter_t it;
        if (bson_iter_init_find(&it, &pat, "$natural"))
            return 0;
        if (bson_empty(&pat))
            return 0;
        ix = c ? store_index_by_pattern(c, &pat) : NULL;
    } else {
        return mdb_error(err, MDB_FAILED_TO_PARSE, "hint must be a string or an object");
    }
    if (!ix && c)
        return mdb_error(err, MDB_BAD_VALUE,
                         "error processing query: planner returned error :: caused by :: hint "
                         "provided does not correspond to an existing index");
    *out = ix;
    return 0;
}

/* +1: index walked forward gives the sort order; -1: walked backward; 0: neither. */
static int sort_match(const store_index *ix, const sortspec *s)
{
    size_t nk = s ? sortspec_nkeys(s) : 0;
    if (nk == 0 || nk > ix->nfields || ix->multikey || ix->sparse)
        return 0;
    int way = 0;
    for (size_t i = 0; i < nk; i++) {
        if (strcmp(sortspec_path(s, i), ix->paths[i]) != 0)
            return 0;
        int w = sortspec_dir(s, i) == ix->dirs[i] ? 1 : -1;
        if (way && w != way)
            return 0;
        way = w;
    }
    return way;
}

/* The best bounds_score: a single-point lookup on a unique single-field index. */
#define SCORE_MAX 14

/* How selective are these bounds on ix? Unique point lookup 14 (several points 12), other
 * points 10 / 8, two-sided range 4, one-sided 2. An index with a partial filter the query
 * implies (`partial`) holds only documents that already satisfy part of the query, like an
 * equality point in front of its bounds (the sweeper's {status: "PENDING", updatedAt: {$lt: t}}
 * on {updatedAt: 1} with filter {status: "PENDING"}): it ranks above a plain point index but
 * below a unique point lookup. */
static int bounds_score(const store_index *ix, const match_bounds *b, bool partial)
{
    int sc;
    if (b->n_points > 0)
        sc = (ix->unique && ix->nfields == 1 ? 12 : 8) + 2 * (b->n_points == 1);
    else
        sc = b->has_lo && b->has_hi ? 4 : 2;
    if (partial) {
        sc += 9;
        if (sc > 13)
            sc = 13;
    }
    return sc;
}

/* May the planner pick ix for this query without a hint? A sparse index misses documents
 * without its fields; a partial index misses the documents its filter rejects, so it may only
 * answer queries that imply the filter (then every matching document is in it). *filtered
 * tells whether ix is a partial index with a non-empty filter that the query implies. */
static bool index_usable(const store_index *ix, const matcher *m, bool *filtered)
{
    *filtered = false;
    if (ix->sparse)
        return false;
    if (!ix->partial)
        return true;
    bson_t f;
    matcher_filter(m, &f);
    if (!partial_implied_by(ix->partial, &f))
        return false;
    *filtered = partial_npaths(ix->partial) > 0;
    return true;
}

/* ---- sorting
 * -------------------------------------------------------------------------------------- */

typedef struct {
    const bson_value_t *keys; /* n * nk */
    const int *dirs;
    size_t nk;
} sort_ctx;
static _Thread_local const sort_ctx *tl_sort;

static int cmp_idx(const void *pa, const void *pb)
{
    size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
    const sort_ctx *s = tl_sort;
    for (size_t k = 0; k < s->nk; k++) {
        int c = bv_compare(&s->keys[a * s->nk + k], &s->keys[b * s->nk + k]);
        if (c)
            return s->dirs[k] < 0 ? -c : c;
    }
    return a < b ? -1 : a > b;
}

static int sort_rids(store_coll *c, const sortspec *sp, ridvec *v, bson_error_t *err)
{
    size_t nk = sortspec_nkeys(sp);
    if (v->n < 2 || nk == 0)
        return 0;
    int dirs[SORTSPEC_MAX_KEYS];
    bson_value_t *keys = malloc(v->n * nk * sizeof *keys);
    size_t *ord = malloc(v->n * sizeof *ord);
    uint64_t *sorted = malloc(v->n * sizeof *sorted);
    if (!keys || !ord || !sorted) {
        free(keys);
        free(ord);
        free(sorted);
        return mdb_error(err, MDB_INTERNAL_ERROR, "out of memory sorting %zu documents", v->n);
    }
    for (size_t k = 0; k < nk; k++)
        dirs[k] = sortspec_dir(sp, k);
    for (size_t i = 0; i < v->n; i++) {
        bson_t d;
        store_doc(c, v->a[i], &d);
        for (size_t k = 0; k < nk; k++)
            bv_sort_key(&d, sortspec_path(sp, k), dirs[k], &keys[i * nk + k]);
        ord[i] = i;
    }
    sort_ctx sc = {keys, dirs, nk};
    tl_sort = &sc;
    qsort(ord, v->n, sizeof *ord, cmp_idx);
    tl_sort = NULL;
    for (size_t i = 0; i < v->n; i++)
        sorted[i] = v->a[ord[i]];
    free(v->a);
    v->a = sorted;
    v->cap = v->n;
    free(keys);
    free(ord);
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- run ----------------------------------------------------------------------------------------
 */

int plan_run(store *st, store_coll *c, const plan_req *q, uint64_t **rids, size_t *n,
             bson_error_t *err)
{
    *rids = NULL;
    *n = 0;
    if (!c)
        return plan_check_hint(NULL, q->hint, &(store_index *){NULL}, err);
    store_index *hinted = NULL;
    if (plan_check_hint(c, q->hint, &hinted, err) != 0)
        return -1;
    bool natural_hint = q->hint && !hinted;

    /* 2 x 8 KiB on the stack (connection threads have 2 MiB): no allocation per statement. */
    match_bounds bufs[2], *b = &bufs[0], *tmp = &bufs[1];
    store_index *ix = NULL;
    bool bounded = false;
    int best = 0;
    if (hinted) {
        /* As MongoDB 4.4 does, a hint is obeyed even for a sparse or partial index the query
         * does not imply (SERVER-26413): the result is then what that index holds. */
        ix = hinted;
        bounded = matcher_field_bounds(q->m, ix->paths[0], ix->multikey, b);
    } else if (!natural_hint && !matcher_is_empty(q->m)) {
        for (size_t i = 0; i < c->nidx; i++) {
            store_index *cand = c->idx[i];
            bool filtered;
            if (!index_usable(cand, q->m, &filtered) ||
                !matcher_field_bounds(q->m, cand->paths[0], cand->multikey, tmp))
                continue;
            int sc = bounds_score(cand, tmp, filtered);
            /* Equal bounds: the index that also gives the sort order wins, as MongoDB's plan
             * ranking prefers a plan without a blocking sort ({campaign_id, customer_id} over
             * {campaign_id, status} for a campaign's logs sorted by customer). */
            bool sorts = sc == best && q->sort && sort_match(cand, q->sort) != 0 &&
                         sort_match(ix, q->sort) == 0;
            if (sc > best || sorts) {
                best = sc;
                ix = cand;
                match_bounds *sw = b;
                b = tmp;
                tmp = sw;
                /* Nothing later can beat it (ties keep the earlier index): an update by _id
                 * (the _id_ index comes first) plans without asking the other indexes. */
                if (sc >= SCORE_MAX)
                    break;
            }
        }
        bounded = ix != NULL;
    }
    int way = 0;
    if (ix) {
        way = sort_match(ix, q->sort);
    } else if (!natural_hint) {
        /* No bounds: an index that yields the sort order (the smallest one: a partial index
         * the query implies holds fewer entries); else a partial index the query implies,
         * walked in full, which examines only documents that satisfy its filter. */
        bool filtered;
        for (size_t i = 0; q->sort && i < c->nidx; i++) {
            store_index *cand = c->idx[i];
            int w;
            if (index_usable(cand, q->m, &filtered) && (w = sort_match(cand, q->sort)) != 0 &&
                (!ix || cand->count < ix->count)) {
                ix = cand;
                way = w;
            }
        }
        for (size_t i = 0; !ix && i < c->nidx; i++) {
            if (index_usable(c->idx[i], q->m, &filtered) && filtered)
                ix = c->idx[i];
        }
    }
    /* Point scans only run forward: a reversed order is produced by sorting. */
    if (bounded && b->n_points > 0 && way < 0)
        way = 0;
    /* A sorted query with a limit whose bounded index does not give the order (the sweeper's
     * {status: "PENDING"} sorted by updatedAt, with {status: 1} beside the partial index on
     * updatedAt): a partial index the query implies that gives the order is walked instead,
     * unless the bounds are a unique point lookup; the walk stops after skip + limit matches
     * and examines only documents that satisfy its filter. */
    if (bounded && way == 0 && best < 11 && q->sort && q->limit > 0 && !hinted) {
        for (size_t i = 0; i < c->nidx; i++) {
            bool filtered;
            int w;
            if (index_usable(c->idx[i], q->m, &filtered) && filtered &&
                (w = sort_match(c->idx[i], q->sort)) != 0) {
                ix = c->idx[i];
                way = w;
                bounded = false;
                break;
            }
        }
    }
    bool need_sort = q->sort && sortspec_nkeys(q->sort) > 0 && way == 0;

    scan s = {.c = c, .m = q->m, .want = SIZE_MAX, .deadline_ms = q->deadline_ms};
    if (!need_sort && q->limit > 0)
        s.want = (size_t)(q->skip + q->limit);
    int rc = 0;
    if (!ix) {
        for (uint64_t r = 0; r < c->nrec; r++) {
            if (consider(&s, r))
                break;
        }
    } else {
        ridvec cand = {0};
        sink k = {&s, ix->multikey ? &cand : NULL};
        if (bounded && b->n_points > 0)
            scan_points(ix, b, &k);
        else if (bounded)
            scan_range(ix, b, way < 0, &k);
        else
            scan_all(ix, way < 0, &k);
        if (k.collect) {
            qsort(cand.a, cand.n, sizeof *cand.a, cmp_u64);
            for (size_t i = 0; i < cand.n && !s.expired; i++) {
                if (i > 0 && cand.a[i] == cand.a[i - 1])
                    continue;
                if (consider(&s, cand.a[i]))
                    break;
            }
            free(cand.a);
        }
    }
    __atomic_add_fetch(&st->docs_examined, s.examined, __ATOMIC_RELAXED);
    __atomic_add_fetch(&st->keys_examined, s.keys, __ATOMIC_RELAXED);
    if (s.oom) {
        free(s.out.a);
        return mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
    }
    if (s.expired) {
        free(s.out.a);
        return mdb_error(err, MDB_MAX_TIME_MS_EXPIRED, "operation exceeded time limit");
    }
    /* A blocking sort without a limit holds every match: refused before sorting, as MongoDB
     * fails while it buffers them. */
    if (need_sort && q->sort_mem_limit > 0 && q->limit == 0 &&
        s.bytes > (uint64_t)q->sort_mem_limit)
        goto sort_memory;
    if (need_sort && (rc = sort_rids(c, q->sort, &s.out, err)) != 0) {
        free(s.out.a);
        return rc;
    }
    /* With a limit MongoDB keeps only the skip + limit best documents (a top-k sort): those
     * are the ones it holds at the end. */
    if (need_sort && q->sort_mem_limit > 0 && q->limit > 0) {
        uint64_t held = 0;
        size_t k = (size_t)(q->skip + q->limit);
        for (size_t i = 0; i < s.out.n && i < k; i++) {
            bson_t d;
            if (store_doc(c, s.out.a[i], &d))
                held += d.len;
        }
        if (held > (uint64_t)q->sort_mem_limit)
            goto sort_memory;
    }
    /* skip and limit */
    size_t skip = (size_t)q->skip < s.out.n ? (size_t)q->skip : s.out.n;
    size_t cnt = s.out.n - skip;
    if (q->limit > 0 && (size_t)q->limit < cnt)
        cnt = (size_t)q->limit;
    if (skip)
        memmove(s.out.a, s.out.a + skip, cnt * sizeof *s.out.a);
    *rids = s.out.a;
    *n = cnt;
    return 0;
sort_memory:
    free(s.out.a);
    return mdb_error(err, MDB_QUERY_EXCEEDED_MEMORY_LIMIT_NO_DISK_USE_ALLOWED,
                     "Executor error during find command :: caused by :: Sort exceeded memory "
                     "limit of %lld bytes, but did not opt in to external sorting.",
                     (long long)q->sort_mem_limit);
}

/* ---- covered count ----------------------------------------------------------------------------
 */

/* Does the key of nd match m? With a key filter (the filter as bounds on every key field,
 * matcher_keyfilter_new), tested on the key's bytes; else as the document {paths[0]: key[0],
 * ...} of the index's fields through the matcher. The index is not multikey, so each key field
 * is the document's value of that path (null for a missing one, which every condition
 * plan_count accepts treats alike). */
static bool key_matches(const matcher *m, const match_keyfilter *kf, const store_index *ix,
                        const index_node *nd, bson_t *tmp)
{
    if (kf) {
        uint32_t len;
        const uint8_t *k = index_node_key_data(nd, &len);
        return matcher_keyfilter_matches(kf, k, len);
    }
    bson_t key;
    bson_iter_t it;
    index_node_key(nd, &key);
    if (!bson_iter_init(&it, &key))
        return false;
    bson_reinit(tmp);
    for (size_t i = 0; i < ix->nfields && bson_iter_next(&it); i++)
        bson_append_iter(tmp, ix->paths[i], -1, &it);
    return matcher_matches(m, tmp);
}

/* How many keys ahead of the one it tests a covered count asks the CPU to load. */
#ifndef COUNT_PREFETCH
#define COUNT_PREFETCH 16
#endif

/* How count_run tests the keys of a run. */
typedef enum {
    /* One path (matcher_single_path), the run's end is the bound's end: keys are tested until
     * one matches, and from there on every node of the run matches. The matching keys of such
     * a filter are contiguous in the key order (each condition is a point, or a range inside
     * its operand's type bracket, and brackets are contiguous), and nothing after them is
     * left inside the run: a point's run holds only keys equal to it (which all match or all
     * fail), a range's ends at its operand or at the end of the operand's type bracket. */
    RUN_TIGHT,
    /* One path, a run that may go past the matches (a range whose bracket has no end value
     * here: bools, ObjectIds, documents, ...; or a descending field): tested until one
     * matches, then until the first key that does not, which ends the count. */
    RUN_CONTIGUOUS,
    /* Several fields: the matches are not contiguous in the key order; every key is tested. */
    RUN_EVERY,
} run_mode;

/* Count one run: the nodes from nd up to (not including) end, the first node past the run's
 * bound (NULL: the index's end), found once by a seek so the walk compares nothing. Keys are
 * tested as `mode` says, on their bytes against the key filter kf (NULL: through the matcher). */
static int64_t count_run(scan *s, run_mode mode, const match_keyfilter *kf, const store_index *ix,
                         const index_node *nd, const index_node *end, bson_t *tmp)
{
    int64_t n = 0;
    bool matched = false;
    /* Each key is its own allocation, a cache miss when the walk reads it: the walk asks for
     * the key COUNT_PREFETCH nodes ahead while it tests this one, so the misses overlap
     * (without it a covered count at 1,000,000 keys waited on memory ~90% of its time). */
    const index_node *ahead = nd;
    for (int i = 0; i < COUNT_PREFETCH && ahead && ahead != end; i++) {
        index_node_prefetch(ahead);
        ahead = index_next(ahead);
    }
    for (; nd && nd != end; nd = index_next(nd)) {
        s->keys++;
        if (over_time(s))
            break;
        if (ahead && ahead != end && (mode != RUN_TIGHT || !matched)) {
            index_node_prefetch(ahead);
            ahead = index_next(ahead);
        }
        if (mode == RUN_EVERY || !matched) {
            if (!(matched = key_matches(s->m, kf, ix, nd, tmp)))
                continue;
        } else if (mode == RUN_CONTIGUOUS && !key_matches(s->m, kf, ix, nd, tmp)) {
            break;
        }
        n++;
    }
    return n;
}

/* The keys under the point p of ix's first field whose second field is inside b2 (points, or
 * a range with its bracket's ends), as MongoDB's compound index bounds narrow an IXSCAN: the
 * walk starts and stops at seeks on the (first, second) key prefix instead of walking every
 * key equal to p. Every key walked is still tested (RUN_EVERY). */
static int64_t count_point_second(scan *s, const match_keyfilter *kf, const store_index *ix,
                                  const bson_value_t *p, const match_bounds *b2, bson_t *tmp)
{
    const bson_value_t *v[2] = {p, NULL};
    int64_t n = 0;
    if (b2->n_points > 0) {
        for (size_t k = 0; k < b2->n_points && !s->expired; k++) {
            v[1] = b2->points[ix->dirs[1] < 0 ? b2->n_points - 1 - k : k];
            n += count_run(s, RUN_EVERY, kf, ix, index_seek_prefix(ix, v, 2, false),
                           index_seek_prefix(ix, v, 2, true), tmp);
        }
        return n;
    }
    bool asc = ix->dirs[1] > 0;
    bool has_s = asc ? b2->has_lo : b2->has_hi, has_e = asc ? b2->has_hi : b2->has_lo;
    bool s_incl = asc ? b2->lo_inclusive : b2->hi_inclusive;
    bool e_incl = asc ? b2->hi_inclusive : b2->lo_inclusive;
    const index_node *start, *end;
    v[1] = asc ? &b2->lo : &b2->hi;
    start = has_s ? index_seek_prefix(ix, v, 2, !s_incl) : index_seek_prefix(ix, v, 1, false);
    v[1] = asc ? &b2->hi : &b2->lo;
    end = has_e ? index_seek_prefix(ix, v, 2, e_incl) : index_seek_prefix(ix, v, 1, true);
    return count_run(s, RUN_EVERY, kf, ix, start, end, tmp);
}

/* Does every field of ix have a top-level path (the key document's names)? */
static bool plain_paths(const store_index *ix)
{
    for (size_t i = 0; i < ix->nfields; i++)
        if (strchr(ix->paths[i], '.'))
            return false;
    return true;
}

int plan_count(store_coll *c, const matcher *m, int64_t deadline_ms, store *st, int64_t *n,
               bson_error_t *err)
{
    if (!c)
        return 0;
    const char *path = matcher_single_path(m);
    store_index *ix = NULL;
    match_bounds b, tmpb;
    bool bounded = false, points = false;
    for (size_t i = 0; i < c->nidx; i++) {
        store_index *cand = c->idx[i];
        bool filtered;
        if (cand->multikey || !index_usable(cand, m, &filtered))
            continue;
        if (path) {
            /* one path: an index that starts with it (the smallest) */
            if (strcmp(cand->paths[0], path) == 0 && (!ix || cand->count < ix->count)) {
                ix = cand;
            }
            continue;
        }
        /* several paths: an index holding every one, whose first field has bounds (points
         * beat a range, then the smaller index) */
        if (!plain_paths(cand) ||
            !matcher_paths_within(m, (const char *const *)cand->paths, cand->nfields) ||
            !matcher_field_bounds(m, cand->paths[0], false, &tmpb))
            continue;
        bool p = tmpb.n_points > 0;
        if (!ix || (p && !points) || (p == points && cand->count < ix->count)) {
            ix = cand;
            points = p;
        }
    }
    if (!ix)
        return 0;
    bounded = matcher_field_bounds(m, ix->paths[0], false, &b);
    scan s = {.c = c, .m = m, .deadline_ms = deadline_ms};
    bson_t tmp = BSON_INITIALIZER;
    int64_t total = 0;
    /* NULL (out of memory): the keys go through the matcher, with the same result */
    match_keyfilter *kf =
        plain_paths(ix) ? matcher_keyfilter_new(m, (const char *const *)ix->paths, ix->nfields)
                        : NULL;
    if (kf && matcher_keyfilter_never(kf)) {
        total = 0; /* empty bounds on some field: nothing to walk */
    } else if (bounded && b.n_points > 0) {
        /* several fields: a point on the first one narrows to the second one's bounds */
        match_bounds *b2 = !path && kf && ix->nfields >= 2 ? malloc(sizeof *b2) : NULL;
        bool second = b2 && matcher_field_bounds(m, ix->paths[1], false, b2) &&
                      b2->n_points * b.n_points <= MATCH_MAX_POINTS;
        for (size_t j = 0; j < b.n_points && !s.expired; j++) {
            const bson_value_t *p = b.points[ix->dirs[0] < 0 ? b.n_points - 1 - j : j];
            if (second)
                total += count_point_second(&s, kf, ix, p, b2, &tmp);
            else
                total += count_run(&s, path ? RUN_TIGHT : RUN_EVERY, kf, ix,
                                   index_seek_first_field(ix, p, false),
                                   index_seek_first_field(ix, p, true), &tmp);
        }
        free(b2);
    } else if (bounded) {
        bool asc = ix->dirs[0] > 0;
        bool has_s = asc ? b.has_lo : b.has_hi, has_e = asc ? b.has_hi : b.has_lo;
        const bson_value_t *sv = asc ? &b.lo : &b.hi, *ev = asc ? &b.hi : &b.lo;
        bool s_incl = asc ? b.lo_inclusive : b.hi_inclusive;
        bool e_incl = asc ? b.hi_inclusive : b.lo_inclusive;
        run_mode mode = !path ? RUN_EVERY : asc && has_s && has_e ? RUN_TIGHT : RUN_CONTIGUOUS;
        total = count_run(&s, mode, kf, ix,
                          has_s ? index_seek_first_field(ix, sv, !s_incl) : index_first(ix),
                          has_e ? index_seek_first_field(ix, ev, e_incl) : NULL, &tmp);
    } else {
        total =
            count_run(&s, path ? RUN_CONTIGUOUS : RUN_EVERY, kf, ix, index_first(ix), NULL, &tmp);
    }
    matcher_keyfilter_free(kf);
    bson_destroy(&tmp);
    __atomic_add_fetch(&st->keys_examined, s.keys, __ATOMIC_RELAXED);
    if (s.expired)
        return mdb_error(err, MDB_MAX_TIME_MS_EXPIRED, "operation exceeded time limit");
    *n = total;
    return 1;
}
