/*
 * commands_read.c: find, getMore, killCursors, count, distinct and aggregate.
 *
 * Reads run under the shared store lock. find computes the complete ordered list of matching
 * record ids (commands_plan.c), sends the first batch and parks the rest in a CURSOR_RIDS
 * cursor; getMore re-reads those records, so a cursor costs 8 bytes per pending result and a
 * document deleted in between is simply skipped (MongoDB gives no stronger guarantee without a
 * snapshot). Aggregation results are materialised into a CURSOR_DOCS cursor.
 *
 * Batches: the first batch defaults to 101 documents, getMore batches to "as many as fit";
 * every batch stops at about 16 MiB so a reply always fits in one message.
 *
 * Limits MongoDB 4.4 puts on reads, so code that would fail there fails here first: find's
 * blocking sort is held to internalQueryMaxBlockingSortMemoryUsageBytes (100 MiB, settable
 * with setParameter) unless allowDiskUse (QueryExceededMemoryLimitNoDiskUseAllowed 292);
 * find, count and aggregate stop at their maxTimeMS (MaxTimeMSExpired 50).
 */
#include "base/bsonval.h"
#include "commands/commands_int.h"
#include "commands/commands_plan.h"
#include "base/errors.h"
#include "engine/match.h"
#include "engine/aggregate.h"
#include "engine/project.h"
#include "engine/sortspec.h"

#include <stdlib.h>
#include <string.h>

static uint32_t doc_len(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void arr_append(bson_t *arr, uint32_t k, const bson_t *d)
{
    char ib[16];
    const char *ik;
    size_t il = bson_uint32_to_string(k, &ik, ib, sizeof ib);
    bson_append_document(arr, ik, (int)il, d);
}

/* Appends up to max_docs documents of record-id cursor `cur` to arr (projected). Caller holds
 * the store lock; c is the cursor's collection. */
static void batch_rids(store_coll *c, cursor *cur, size_t max_docs, bson_t *arr)
{
    size_t bytes = 0;
    uint32_t k = 0;
    while (cur->pos < cur->n && k < max_docs) {
        bson_t d;
        if (!store_doc(c, cur->rids[cur->pos], &d)) {
            cur->pos++;
            continue;
        }
        if (cur->proj && !projection_is_identity(cur->proj)) {
            bson_t out = BSON_INITIALIZER;
            projection_apply(cur->proj, &d, &out);
            if (k > 0 && bytes + out.len > CMD_BATCH_BYTES) {
                bson_destroy(&out);
                break;
            }
            arr_append(arr, k++, &out);
            bytes += out.len;
            bson_destroy(&out);
        } else {
            if (k > 0 && bytes + d.len > CMD_BATCH_BYTES)
                break;
            arr_append(arr, k++, &d);
            bytes += d.len;
        }
        cur->pos++;
    }
}

static void batch_docs(cursor *cur, size_t max_docs, bson_t *arr)
{
    size_t bytes = 0;
    uint32_t k = 0;
    while (cur->pos < cur->n && k < max_docs) {
        uint32_t len = doc_len(cur->docs[cur->pos]);
        if (k > 0 && bytes + len > CMD_BATCH_BYTES)
            break;
        bson_t d;
        bson_init_static(&d, cur->docs[cur->pos], len);
        arr_append(arr, k++, &d);
        bytes += len;
        cur->pos++;
    }
}

static void ns_of(cmd_ctx *x, char *buf, size_t n)
{
    snprintf(buf, n, "%s.%s", x->db, x->coll);
}

/* ---- find
 * ---------------------------------------------------------------------------------------- */

int cmd_find(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    if (cmd_need_coll(x, err) != 0)
        return -1;
    bson_t filter, sort, proj;
    bool has_sort, has_proj;
    int64_t skip = 0, limit = 0, batch = -1;
    if (cmd_arg_doc(x->cmd, "filter", &filter, NULL, err) != 0 ||
        cmd_arg_doc(x->cmd, "sort", &sort, &has_sort, err) != 0 ||
        cmd_arg_doc(x->cmd, "projection", &proj, &has_proj, err) != 0 ||
        cmd_arg_int64(x->cmd, "skip", &skip, err) != 0 ||
        cmd_arg_int64(x->cmd, "limit", &limit, err) != 0 ||
        cmd_arg_int64(x->cmd, "batchSize", &batch, err) != 0)
        return -1;
    if (skip < 0)
        return mdb_error(err, 51024, "BSON field 'skip' value must be >= 0, actual value '%lld'",
                         (long long)skip);
    if (batch < -1 || (batch == -1 && bson_has_field(x->cmd, "batchSize")))
        return mdb_error(err, 51024,
                         "BSON field 'batchSize' value must be >= 0, actual value '%lld'",
                         (long long)batch);
    bool single = cmd_arg_bool(x->cmd, "singleBatch", false);
    if (limit < 0) {
        /* Legacy negative limit: one batch of at most |limit| documents. */
        limit = -limit;
        single = true;
    }
    bson_iter_t hit;
    const bson_value_t *hint = cmd_arg_value(x->cmd, "hint", &hit);
    /* MongoDB 4.4: a blocking sort over internalQueryMaxBlockingSortMemoryUsageBytes fails
     * unless allowDiskUse (devdb then simply sorts in memory). */
    int64_t sort_mem =
        cmd_arg_bool(x->cmd, "allowDiskUse", false) ? 0 : commands_sort_mem_limit(x->env);
    int64_t deadline;
    if (plan_deadline(x->cmd, &deadline, err) != 0)
        return -1;

    int rc = -1;
    matcher *m = NULL;
    sortspec *ss = NULL;
    projection *pj = NULL;
    cursor *cur = NULL;
    if (!(m = matcher_new(&filter, err)))
        goto out;
    if (has_sort && !bson_empty(&sort) && !(ss = sortspec_new(&sort, false, err)))
        goto out;
    if (has_proj && !(pj = projection_new(&proj, err)))
        goto out;
    if (!(cur = cursor_new(CURSOR_RIDS, x->db, x->coll)))
        goto oom;
    cur->proj = pj;
    pj = NULL;

    __atomic_add_fetch(&x->env->st->n_query, 1, __ATOMIC_RELAXED);
    store_rdlock(x->env->st);
    store_coll *c = store_coll_find(x->env->st, x->db, x->coll);
    plan_req q = {.m = m,
                  .sort = ss,
                  .hint = hint,
                  .skip = skip,
                  .limit = limit,
                  .sort_mem_limit = sort_mem,
                  .deadline_ms = deadline};
    if (plan_run(x->env->st, c, &q, &cur->rids, &cur->n, err) != 0) {
        store_unlock(x->env->st);
        goto out;
    }
    cur->incarnation = c ? c->incarnation : 0;
    bson_t cd, arr;
    BSON_APPEND_DOCUMENT_BEGIN(reply, "cursor", &cd);
    BSON_APPEND_ARRAY_BEGIN(&cd, "firstBatch", &arr);
    size_t first = batch >= 0 ? (size_t)batch : CMD_DEFAULT_FIRST_BATCH;
    if (single && limit > 0 && (size_t)limit > first && batch < 0)
        first = (size_t)limit;
    if (c)
        batch_rids(c, cur, first, &arr);
    store_unlock(x->env->st);
    bson_append_array_end(&cd, &arr);
    int64_t id = 0;
    if (cur->pos < cur->n && !single) {
        id = cursor_table_add(x->env->cursors, cur);
        cur = NULL;
    }
    BSON_APPEND_INT64(&cd, "id", id);
    char ns[STORE_NS_MAX + 2];
    ns_of(x, ns, sizeof ns);
    BSON_APPEND_UTF8(&cd, "ns", ns);
    bson_append_document_end(reply, &cd);
    rc = 0;
    goto out;
oom:
    mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
out:
    cursor_free(cur);
    matcher_free(m);
    sortspec_free(ss);
    projection_free(pj);
    return rc;
}

/* ---- getMore / killCursors --------------------------------------------------------------------
 */

int cmd_getmore(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    bson_iter_t it;
    bson_iter_init(&it, x->cmd);
    bson_iter_next(&it);
    if (!BSON_ITER_HOLDS_INT64(&it) && !BSON_ITER_HOLDS_INT32(&it))
        return mdb_error(err, MDB_TYPE_MISMATCH,
                         "BSON field 'getMore.getMore' is the wrong type, expected type 'long'");
    int64_t id = bson_iter_as_int64(&it);
    const char *coll = NULL;
    if (bson_iter_init_find(&it, x->cmd, "collection") && BSON_ITER_HOLDS_UTF8(&it))
        coll = bson_iter_utf8(&it, NULL);
    if (!coll)
        return mdb_error(err, MDB_FAILED_TO_PARSE,
                         "BSON field 'getMore.collection' is missing but a required field");
    int64_t batch = -1;
    if (cmd_arg_int64(x->cmd, "batchSize", &batch, err) != 0)
        return -1;
    if (batch < -1 || (batch == -1 && bson_has_field(x->cmd, "batchSize")))
        return mdb_error(err, MDB_BAD_VALUE,
                         "Batch size for getMore must be positive, but "
                         "received: %lld",
                         (long long)batch);
    __atomic_add_fetch(&x->env->n_getmore, 1, __ATOMIC_RELAXED);
    cursor *cur = cursor_table_take(x->env->cursors, id);
    if (!cur)
        return mdb_error(err, MDB_CURSOR_NOT_FOUND, "cursor id %lld not found", (long long)id);
    if (strcmp(cur->db, x->db) != 0 || strcmp(cur->coll, coll) != 0) {
        mdb_error(err, 13,
                  "Requested getMore on namespace '%s.%s', but cursor belongs to a different "
                  "namespace %s",
                  x->db, coll, cur->ns);
        cursor_table_put(x->env->cursors, cur);
        return -1;
    }
    size_t max = batch > 0 ? (size_t)batch : SIZE_MAX;
    bson_t cd, arr;
    BSON_APPEND_DOCUMENT_BEGIN(reply, "cursor", &cd);
    BSON_APPEND_ARRAY_BEGIN(&cd, "nextBatch", &arr);
    if (cur->kind == CURSOR_DOCS) {
        batch_docs(cur, max, &arr);
    } else {
        store_rdlock(x->env->st);
        store_coll *c = store_coll_find(x->env->st, cur->db, cur->coll);
        if (!c || c->incarnation != cur->incarnation) {
            store_unlock(x->env->st);
            cursor_free(cur);
            return mdb_error(err, 175, "collection dropped");
        }
        batch_rids(c, cur, max, &arr);
        store_unlock(x->env->st);
    }
    bson_append_array_end(&cd, &arr);
    int64_t next = 0;
    if (cur->pos < cur->n) {
        next = cur->id;
        cursor_table_put(x->env->cursors, cur);
    } else {
        BSON_APPEND_INT64(&cd, "id", 0);
        BSON_APPEND_UTF8(&cd, "ns", cur->ns);
        cursor_free(cur);
        bson_append_document_end(reply, &cd);
        return 0;
    }
    BSON_APPEND_INT64(&cd, "id", next);
    char ns[600];
    snprintf(ns, sizeof ns, "%s.%s", x->db, coll);
    BSON_APPEND_UTF8(&cd, "ns", ns);
    bson_append_document_end(reply, &cd);
    return 0;
}

int cmd_killcursors(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    bson_t ids;
    bool present;
    if (cmd_arg_array(x->cmd, "cursors", &ids, &present, err) != 0)
        return -1;
    if (!present)
        return mdb_error(err, MDB_FAILED_TO_PARSE,
                         "BSON field 'killCursors.cursors' is missing but a required field");
    bson_t killed, missing, a;
    BSON_APPEND_ARRAY_BEGIN(reply, "cursorsKilled", &killed);
    bson_t nf = BSON_INITIALIZER;
    bson_iter_t it;
    bson_iter_init(&it, &ids);
    uint32_t nk = 0, nn = 0;
    while (bson_iter_next(&it)) {
        if (!BSON_ITER_HOLDS_INT64(&it) && !BSON_ITER_HOLDS_INT32(&it))
            continue;
        int64_t id = bson_iter_as_int64(&it);
        char ib[16];
        const char *ik;
        if (cursor_table_kill(x->env->cursors, id)) {
            size_t il = bson_uint32_to_string(nk++, &ik, ib, sizeof ib);
            bson_append_int64(&killed, ik, (int)il, id);
        } else {
            size_t il = bson_uint32_to_string(nn++, &ik, ib, sizeof ib);
            bson_append_int64(&nf, ik, (int)il, id);
        }
    }
    bson_append_array_end(reply, &killed);
    BSON_APPEND_ARRAY_BEGIN(reply, "cursorsNotFound", &missing);
    bson_concat(&missing, &nf);
    bson_append_array_end(reply, &missing);
    bson_destroy(&nf);
    BSON_APPEND_ARRAY_BEGIN(reply, "cursorsAlive", &a);
    bson_append_array_end(reply, &a);
    BSON_APPEND_ARRAY_BEGIN(reply, "cursorsUnknown", &a);
    bson_append_array_end(reply, &a);
    return 0;
}

/* ---- count / distinct ---------------------------------------------------------------------------
 */

int cmd_count(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    if (cmd_need_coll(x, err) != 0)
        return -1;
    bson_t filter;
    int64_t skip = 0, limit = 0;
    if (cmd_arg_doc(x->cmd, "query", &filter, NULL, err) != 0 ||
        cmd_arg_int64(x->cmd, "skip", &skip, err) != 0 ||
        cmd_arg_int64(x->cmd, "limit", &limit, err) != 0)
        return -1;
    if (skip < 0)
        return mdb_error(err, MDB_BAD_VALUE, "skip value is negative in count query");
    if (limit < 0)
        limit = -limit;
    bson_iter_t hit;
    const bson_value_t *hint = cmd_arg_value(x->cmd, "hint", &hit);
    int64_t deadline;
    if (plan_deadline(x->cmd, &deadline, err) != 0)
        return -1;
    matcher *m = matcher_new(&filter, err);
    if (!m)
        return -1;
    store_rdlock(x->env->st);
    store_coll *c = store_coll_find(x->env->st, x->db, x->coll);
    int64_t n = 0;
    int rc = 0;
    if (c && matcher_is_empty(m) && !hint) {
        n = (int64_t)c->nlive - skip;
        if (n < 0)
            n = 0;
        if (limit > 0 && n > limit)
            n = limit;
    } else if (!hint && (rc = plan_count(c, m, deadline, x->env->st, &n, err)) != 0) {
        /* answered from an index alone (or failed) */
        if (rc > 0) {
            rc = 0;
            n = n > skip ? n - skip : 0;
            if (limit > 0 && n > limit)
                n = limit;
        }
    } else {
        uint64_t *rids;
        size_t cnt;
        plan_req q = {.m = m, .hint = hint, .skip = skip, .limit = limit, .deadline_ms = deadline};
        rc = plan_run(x->env->st, c, &q, &rids, &cnt, err);
        if (rc == 0) {
            n = (int64_t)cnt;
            free(rids);
        }
    }
    store_unlock(x->env->st);
    matcher_free(m);
    if (rc != 0)
        return -1;
    if (n <= INT32_MAX)
        BSON_APPEND_INT32(reply, "n", (int32_t)n);
    else
        BSON_APPEND_INT64(reply, "n", n);
    return 0;
}

typedef struct {
    bson_value_t *a;
    size_t n, cap;
    bool oom;
} valvec;

static bool collect_value(const bson_value_t *v, void *ctx)
{
    valvec *vv = ctx;
    if (v->value_type == BSON_TYPE_EOD)
        return false;
    if (vv->n == vv->cap) {
        size_t ncap = vv->cap ? vv->cap * 2 : 64;
        bson_value_t *na = realloc(vv->a, ncap * sizeof *na);
        if (!na) {
            vv->oom = true;
            return true;
        }
        vv->a = na;
        vv->cap = ncap;
    }
    vv->a[vv->n++] = *v;
    return false;
}

static int cmp_values(const void *a, const void *b)
{
    return bv_compare(a, b);
}

int cmd_distinct(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    if (cmd_need_coll(x, err) != 0)
        return -1;
    bson_iter_t it;
    if (!bson_iter_init_find(&it, x->cmd, "key") || !BSON_ITER_HOLDS_UTF8(&it))
        return mdb_error(err, MDB_TYPE_MISMATCH,
                         "BSON field 'distinct.key' is missing or is not a string");
    const char *key = bson_iter_utf8(&it, NULL);
    bson_t filter;
    if (cmd_arg_doc(x->cmd, "query", &filter, NULL, err) != 0)
        return -1;
    bson_iter_t hit;
    const bson_value_t *hint = cmd_arg_value(x->cmd, "hint", &hit);
    matcher *m = matcher_new(&filter, err);
    if (!m)
        return -1;
    store_rdlock(x->env->st);
    store_coll *c = store_coll_find(x->env->st, x->db, x->coll);
    uint64_t *rids = NULL;
    size_t n = 0;
    plan_req q = {.m = m, .hint = hint};
    int rc = plan_run(x->env->st, c, &q, &rids, &n, err);
    valvec vv = {0};
    for (size_t i = 0; rc == 0 && i < n && !vv.oom; i++) {
        bson_t d;
        if (store_doc(c, rids[i], &d))
            bv_path_visit(&d, key, BV_PATH_EXPAND_LEAF | BV_PATH_NO_LEAF_ARRAY, collect_value, &vv);
    }
    if (rc == 0 && vv.oom)
        rc = mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
    if (rc == 0) {
        if (vv.n > 1)
            qsort(vv.a, vv.n, sizeof *vv.a, cmp_values);
        bson_t arr;
        BSON_APPEND_ARRAY_BEGIN(reply, "values", &arr);
        uint32_t k = 0;
        for (size_t i = 0; i < vv.n; i++) {
            if (i > 0 && bv_compare(&vv.a[i], &vv.a[i - 1]) == 0)
                continue;
            char ib[16];
            const char *ik;
            size_t il = bson_uint32_to_string(k++, &ik, ib, sizeof ib);
            bson_append_value(&arr, ik, (int)il, &vv.a[i]);
        }
        bson_append_array_end(reply, &arr);
        if (reply->len > 16 * 1024 * 1024)
            rc = mdb_error(err, 17217, "distinct too big, 16mb cap");
    }
    store_unlock(x->env->st);
    free(vv.a);
    free(rids);
    matcher_free(m);
    return rc;
}

/* ---- aggregate ----------------------------------------------------------------------------------
 */

typedef struct {
    store *st;
    const char *db;
    store_coll *c;
    uint64_t *rids;
    size_t n, pos;
    bson_t cur;
} agg_src;

static int agg_next(void *ctx, const bson_t **doc, bson_error_t *err)
{
    agg_src *s = ctx;
    while (s->c && s->pos < s->n) {
        if (store_doc(s->c, s->rids[s->pos++], &s->cur)) {
            *doc = &s->cur;
            return 1;
        }
    }
    return 0;
}

static int agg_foreign(void *ctx, const char *coll, const matcher *m, agg_emit_fn emit,
                       void *emit_ctx, bson_error_t *err)
{
    agg_src *s = ctx;
    store_coll *fc = store_coll_find(s->st, s->db, coll);
    if (!fc)
        return 0;
    uint64_t *rids;
    size_t n;
    plan_req q = {.m = m};
    if (plan_run(s->st, fc, &q, &rids, &n, err) != 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        bson_t d;
        if (store_doc(fc, rids[i], &d))
            rc = emit(emit_ctx, &d, err);
    }
    free(rids);
    return rc;
}

static int agg_collect(void *ctx, const bson_t *doc, bson_error_t *err)
{
    if (cursor_push_doc(ctx, doc) != 0)
        return mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
    return 0;
}

int cmd_aggregate(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    bson_iter_t it;
    bson_iter_init(&it, x->cmd);
    bson_iter_next(&it);
    bool collectionless = !BSON_ITER_HOLDS_UTF8(&it);
    if (!collectionless && cmd_need_coll(x, err) != 0)
        return -1;
    bson_t pipeline;
    bool present;
    if (cmd_arg_array(x->cmd, "pipeline", &pipeline, &present, err) != 0)
        return -1;
    if (!present)
        return mdb_error(err, MDB_FAILED_TO_PARSE,
                         "BSON field 'aggregate.pipeline' is missing but a required field");
    if (cmd_arg_bool(x->cmd, "explain", false))
        return mdb_error(err, MDB_COMMAND_NOT_SUPPORTED, "explain is not supported by devdb");
    if (!bson_has_field(x->cmd, "cursor"))
        return mdb_error(err, MDB_FAILED_TO_PARSE,
                         "The 'cursor' option is required, except for "
                         "aggregate with the explain argument");
    int64_t bs;
    if (cmd_cursor_batch_size(x->cmd, &bs, err) != 0)
        return -1;
    bson_iter_t hit;
    const bson_value_t *hint = cmd_arg_value(x->cmd, "hint", &hit);
    int64_t deadline;
    if (plan_deadline(x->cmd, &deadline, err) != 0)
        return -1;
    agg_pipeline *p = agg_pipeline_new(&pipeline, err);
    if (!p)
        return -1;
    cursor *cur = cursor_new(CURSOR_DOCS, x->db, collectionless ? "$cmd.aggregate" : x->coll);
    if (!cur) {
        agg_pipeline_free(p);
        return mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
    }
    int rc = -1;
    matcher *all = NULL;
    agg_src src = {.st = x->env->st, .db = x->db};
    store_rdlock(x->env->st);
    src.c = collectionless ? NULL : store_coll_find(x->env->st, x->db, x->coll);
    const matcher *lead = agg_pipeline_leading_match(p);
    if (!lead) {
        all = matcher_new(NULL, err);
        lead = all;
    }
    if (lead) {
        plan_req q = {.m = lead, .hint = hint, .deadline_ms = deadline};
        if (plan_run(x->env->st, src.c, &q, &src.rids, &src.n, err) == 0) {
            agg_input in = {.next = agg_next, .foreign = agg_foreign, .ctx = &src};
            rc = agg_pipeline_run(p, &in, agg_collect, cur, err);
        }
    }
    store_unlock(x->env->st);
    free(src.rids);
    matcher_free(all);
    agg_pipeline_free(p);
    if (rc != 0) {
        cursor_free(cur);
        return -1;
    }
    cmd_reply_docs_cursor(x, cur, bs, false, reply);
    return 0;
}
