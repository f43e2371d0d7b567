/*
 * commands_write.c: insert, update, delete and findAndModify.
 *
 * Each write command first prepares its whole batch without any lock (statements parsed,
 * matchers and updaters compiled, insert documents brought to stored form and depth-checked;
 * "statement preparation" below), then takes the exclusive store lock once for the batch (a
 * batch of 1000 inserts costs one lock round trip) and applies its statements in order through
 * store.h's mutation functions, so writers serialise only on the work that touches the store.
 * findAndModify compiles its query, sort, projection and update before the lock too. Per-statement
 * failures become writeErrors entries exactly as MongoDB reports them ({index, code, [keyPattern,
 * keyValue,] errmsg}); an ordered batch stops at the first failure, an unordered one carries on. n
 * / nModified / upserted count what happened.
 *
 * Multi-document updates and deletes first collect the matching record ids and only then
 * modify, so an update can never see (and re-update) a document it has just moved.
 */
#include "base/bsonval.h"
#include "commands/commands_int.h"
#include "commands/commands_plan.h"
#include "base/errors.h"
#include "engine/match.h"
#include "engine/project.h"
#include "engine/sortspec.h"
#include "engine/update.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---- shared helpers
 * ------------------------------------------------------------------------------ */

typedef struct {
    bson_t errors; /* array being built */
    uint32_t n;
} werrs;

static void werr_add(werrs *w, int32_t index, const bson_error_t *e, const bson_t *dup_info)
{
    bson_t d = BSON_INITIALIZER;
    BSON_APPEND_INT32(&d, "index", index);
    int code = e->domain == MDB_ERROR_DOMAIN ? (int)e->code : MDB_BAD_VALUE;
    BSON_APPEND_INT32(&d, "code", code);
    if (dup_info && !bson_empty(dup_info))
        bson_concat(&d, dup_info);
    BSON_APPEND_UTF8(&d, "errmsg", e->message);
    char ib[16];
    const char *ik;
    size_t il = bson_uint32_to_string(w->n++, &ik, ib, sizeof ib);
    bson_append_document(&w->errors, ik, (int)il, &d);
    bson_destroy(&d);
}

static void werr_finish(werrs *w, bson_t *reply)
{
    if (w->n > 0)
        BSON_APPEND_ARRAY(reply, "writeErrors", &w->errors);
    bson_destroy(&w->errors);
}

/*
 * Brings a document to its stored form: _id first (moved there if elsewhere, a new ObjectId if
 * missing), _id of a legal type, no $-prefixed top-level field. *out is either `in` itself
 * (already in stored form; *built false) or `tmp`, which the caller destroys when *built.
 */
static int prepare_doc(const bson_t *in, bson_t *tmp, bool *built, const bson_t **out,
                       bson_error_t *err)
{
    bson_iter_t it;
    bool first = true, id_first = false;
    const bson_value_t *id = NULL;
    *built = false;
    if (in->len > 16 * 1024 * 1024)
        return mdb_error(err, 10334,
                         "object to insert too large. size in bytes: %u, max size: "
                         "16777216",
                         in->len);
    bson_iter_init(&it, in);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "_id") == 0) {
            if (!id) {
                id = bson_iter_value(&it);
                id_first = first;
            }
        } else if (k[0] == '$') {
            return mdb_error(err, MDB_BAD_VALUE, "Document can't have $ prefixed field names: %s",
                             k);
        }
        first = false;
    }
    if (id) {
        bson_type_t t = id->value_type;
        if (t == BSON_TYPE_ARRAY)
            return mdb_error(err, MDB_INVALID_ID_FIELD, "can't use an array for _id");
        if (t == BSON_TYPE_REGEX)
            return mdb_error(err, MDB_INVALID_ID_FIELD, "can't use a regex for _id");
        if (t == BSON_TYPE_UNDEFINED)
            return mdb_error(err, MDB_INVALID_ID_FIELD, "can't use a undefined for _id");
    }
    if (id && id_first) {
        *out = in;
        return 0;
    }
    bson_init(tmp);
    *built = true;
    if (id) {
        bson_append_value(tmp, "_id", 3, id);
    } else {
        bson_oid_t oid;
        bson_oid_init(&oid, NULL);
        BSON_APPEND_OID(tmp, "_id", &oid);
    }
    bson_iter_init(&it, in);
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), "_id") != 0)
            bson_append_iter(tmp, NULL, 0, &it);
    }
    *out = tmp;
    return 0;
}

/* MongoDB 4.4 refuses to store a document nested deeper than 180 levels (the document itself is
 * level 1), with code 15 Overflow: inserts say "cannot insert document because it exceeds 180
 * levels of nesting" (ops/insert.cpp), updates "Document exceeds maximum nesting depth of 180"
 * (update/storage_validation.cpp). Every nesting level costs at least 7 bytes (type, empty
 * name, 5-byte empty document), so a shorter document cannot be too deep and skips the walk. */
static int depth_check(const bson_t *doc, bool insert, bson_error_t *err)
{
    if (doc->len < 5 + 7 * (uint32_t)BV_MAX_NESTING || bv_depth_ok(doc, BV_MAX_NESTING))
        return 0;
    if (insert)
        return mdb_error(err, MDB_OVERFLOW,
                         "cannot insert document because it exceeds %d levels of nesting",
                         BV_MAX_NESTING);
    return mdb_error(err, MDB_OVERFLOW, "Document exceeds maximum nesting depth of %d",
                     BV_MAX_NESTING);
}

/* Inserts a document after prepare_doc; copies its _id into id_out if non-NULL. Used by the
 * upserts, which build their document under the lock (it depends on what the query found). */
static int insert_one(store_coll *c, const bson_t *doc, bson_value_t *id_out, bson_error_t *err,
                      bson_t *dup_info)
{
    bson_t tmp;
    bool built;
    const bson_t *d;
    if (prepare_doc(doc, &tmp, &built, &d, err) != 0)
        return -1;
    int rc = depth_check(d, true, err);
    if (rc == 0)
        rc = store_insert(c, d, NULL, err, dup_info);
    if (rc == 0 && id_out) {
        bson_iter_t it;
        bson_iter_init_find(&it, d, "_id");
        bson_value_copy(bson_iter_value(&it), id_out);
    }
    if (built)
        bson_destroy(&tmp);
    return rc;
}

/* Builds the document an upsert inserts. `out` caller-initialised. */
static int upsert_doc(const bson_t *filter, const updater *up, bson_t *out, bson_error_t *err)
{
    bson_t seed = BSON_INITIALIZER;
    bool modified;
    int rc = update_upsert_seed(filter, &seed, err);
    if (rc == 0)
        rc = updater_apply(up, &seed, true, out, &modified, err);
    bson_destroy(&seed);
    return rc;
}

/* ---- statement preparation ---------------------------------------------------------------------
 *
 * A write batch runs in two phases. Phase 1, without the store lock, parses every statement
 * and compiles what does not depend on the data: matchers, updaters, documents in stored form
 * (_id first, a new ObjectId if missing), the nesting-depth check. A statement that fails there
 * keeps its error (an index into prep_errs). Phase 2, under the exclusive lock, walks the
 * statements in order and either reports the kept error or applies the statement. Because the
 * errors are reported in statement order in phase 2, the reply is the one a single pass gives:
 * an ordered batch whose statement k fails to parse still applies statements < k and stops at
 * k; one whose statement j < k fails while applying stops at j, and k's parse error is never
 * reported. Phase 1 of an ordered batch stops at its first parse error, since nothing after it
 * can run. */

typedef struct {
    bson_error_t *a;
    size_t n, cap;
} prep_errs;

/* Keeps e; returns its index, or -1 if out of memory (the caller reports InternalError). */
static int32_t prep_err_keep(prep_errs *pe, const bson_error_t *e)
{
    if (pe->n == pe->cap) {
        size_t ncap = pe->cap ? pe->cap * 2 : 8;
        bson_error_t *na = realloc(pe->a, ncap * sizeof *na);
        if (!na)
            return -1;
        pe->a = na;
        pe->cap = ncap;
    }
    pe->a[pe->n] = *e;
    return (int32_t)pe->n++;
}

/* Records a phase-1 failure of a statement in *slot (the kept error's index). Returns 0, or -1
 * with err set when even the error cannot be kept. */
static int prep_fail(prep_errs *pe, int32_t *slot, const bson_error_t *e, bson_error_t *err)
{
    *slot = prep_err_keep(pe, e);
    if (*slot < 0)
        return mdb_error(err, MDB_INTERNAL_ERROR, "out of memory preparing a write batch");
    return 0;
}

/* Number of statements in a batch array (its keys are "0".."n-1"). */
static size_t batch_count(const bson_t *arr)
{
    bson_iter_t it;
    size_t n = 0;
    bson_iter_init(&it, arr);
    while (bson_iter_next(&it))
        n++;
    return n;
}

/* Updaters compiled earlier in one update command, tried as templates for the next statement
 * (updater_rebind): the receipts worker's 500 statements share two or three shapes ("SENT",
 * "FAILED" with failureReason, ...), so a few recent ones catch nearly all of them. The
 * templates belong to their statements, which live until the command ends. */
#define UPD_SHAPES 4
typedef struct {
    const updater *recent[UPD_SHAPES];
    unsigned next;
} upd_shapes;

/* A statement kind driven by run_batch: update and delete share the two phases and differ only
 * in how one statement is prepared, applied and released. */
typedef struct batch_kind {
    const char *field;   /* the command's statement array ("updates") */
    const char *missing; /* FailedToParse message when that field is absent */
    size_t size;         /* of one prepared statement */
    size_t err_off;      /* offsetof(statement, err): int32_t, -1 or a prep_errs index */
    /* Phase 1 of one statement (no lock): 0, or -1 with e set. shapes: the command's
     * compiled-shape cache (starts zeroed). */
    int (*prepare)(const bson_iter_t *it, void *stmt, upd_shapes *shapes, bson_error_t *e);
    /* Phase 2 of one statement (store lock held; may create the collection in *pc): 0, or -1
     * with e (and dup, for duplicate keys) set. totals is the caller's accumulator. */
    int (*apply)(cmd_ctx *x, store_coll **pc, int32_t index, const void *stmt, void *totals,
                 bson_error_t *e, bson_t *dup);
    /* Frees what prepare compiled (also for statements whose prepare failed). */
    void (*release)(void *stmt);
} batch_kind;

/* Runs the statements of kind k in x->cmd through both phases (see above). On 0 the lock is
 * released, totals updated and *w holds the write errors for werr_finish; on -1 (a malformed
 * command or out of memory) err is set and nothing was applied. */
static int run_batch(cmd_ctx *x, const batch_kind *k, void *totals, werrs *w, bson_error_t *err)
{
    if (cmd_need_coll(x, err) != 0)
        return -1;
    bson_t stmts;
    bool present;
    if (cmd_arg_array(x->cmd, k->field, &stmts, &present, err) != 0)
        return -1;
    if (!present)
        return mdb_error(err, MDB_FAILED_TO_PARSE, "%s", k->missing);
    bool ordered = cmd_arg_bool(x->cmd, "ordered", true);
    int rc = -1;
    prep_errs pe = {0};
    upd_shapes shapes = {{NULL}, 0};
    size_t np = 0, cnt = batch_count(&stmts);
    char *ps = calloc(cnt ? cnt : 1, k->size);
    if (!ps)
        return mdb_error(err, MDB_INTERNAL_ERROR, "out of memory preparing a write batch");
#define STMT(i)     ((void *)(ps + (i)*k->size))
#define STMT_ERR(i) ((int32_t *)(ps + (i)*k->size + k->err_off))

    /* Phase 1: parse and compile, without the lock. */
    bson_iter_t it;
    bson_iter_init(&it, &stmts);
    while (np < cnt && bson_iter_next(&it)) {
        bson_error_t e;
        size_t i = np++;
        *STMT_ERR(i) = -1;
        if (k->prepare(&it, STMT(i), &shapes, &e) != 0) {
            if (prep_fail(&pe, STMT_ERR(i), &e, err) != 0)
                goto out;
            if (ordered)
                break;
        }
    }

    /* Phase 2: the store, errors reported in statement order. */
    w->n = 0;
    bson_init(&w->errors);
    store_wrlock(x->env->st);
    store_coll *c = store_coll_find(x->env->st, x->db, x->coll);
    for (size_t i = 0; i < np; i++) {
        bson_t dup = BSON_INITIALIZER;
        bson_error_t e;
        int r;
        if (*STMT_ERR(i) >= 0) {
            werr_add(w, (int32_t)i, &pe.a[*STMT_ERR(i)], NULL);
            r = -1;
        } else if ((r = k->apply(x, &c, (int32_t)i, STMT(i), totals, &e, &dup)) != 0) {
            werr_add(w, (int32_t)i, &e, &dup);
        }
        bson_destroy(&dup);
        if (r != 0 && ordered)
            break;
    }
    store_unlock(x->env->st);
    rc = 0;
out:
    for (size_t i = 0; i < np; i++)
        k->release(STMT(i));
#undef STMT
#undef STMT_ERR
    free(ps);
    free(pe.a);
    return rc;
}

/* ---- insert ------------------------------------------------------------------------------------
 */

/* One document of an insert batch after phase 1: its stored form (pointing into the command,
 * or owned when prepare_doc had to build it), or the index of its error. */
typedef struct {
    const uint8_t *data;
    uint32_t len;
    bool owned;  /* data is a bson_malloc'ed buffer */
    int32_t err; /* -1: none */
} ins_doc;

/* Phase 1 of insert for one document. */
static void ins_prepare(const bson_iter_t *it, ins_doc *p, bson_error_t *e)
{
    bson_t d, tmp;
    bool built = false;
    const bson_t *out = NULL;
    p->err = -1;
    if (!BSON_ITER_HOLDS_DOCUMENT(it) || !bv_as_doc(bson_iter_value((bson_iter_t *)it), &d)) {
        mdb_error(e, MDB_TYPE_MISMATCH,
                  "BSON field 'insert.documents' must be an array of objects");
        p->err = 0;
        return;
    }
    if (prepare_doc(&d, &tmp, &built, &out, e) != 0 || depth_check(out, true, e) != 0) {
        if (built)
            bson_destroy(&tmp);
        p->err = 0;
        return;
    }
    if (built) {
        p->data = bson_destroy_with_steal(&tmp, true, &p->len);
        p->owned = true;
    } else {
        p->data = bson_get_data(out);
        p->len = out->len;
    }
}

int cmd_insert(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    if (cmd_need_coll(x, err) != 0)
        return -1;
    bson_t docs;
    bool present;
    if (cmd_arg_array(x->cmd, "documents", &docs, &present, err) != 0)
        return -1;
    if (!present)
        return mdb_error(err, MDB_FAILED_TO_PARSE,
                         "BSON field 'insert.documents' is missing but a required field");
    bool ordered = cmd_arg_bool(x->cmd, "ordered", true);
    int rc = -1;
    prep_errs pe = {0};
    size_t np = 0, cnt = batch_count(&docs);
    ins_doc *ps = calloc(cnt ? cnt : 1, sizeof *ps);
    if (!ps)
        return mdb_error(err, MDB_INTERNAL_ERROR, "out of memory preparing a write batch");

    /* Phase 1: documents in stored form, without the lock. */
    bson_iter_t it;
    bson_iter_init(&it, &docs);
    while (np < cnt && bson_iter_next(&it)) {
        bson_error_t e;
        ins_doc *p = &ps[np++];
        ins_prepare(&it, p, &e);
        if (p->err >= 0) {
            if (prep_fail(&pe, &p->err, &e, err) != 0)
                goto out;
            if (ordered)
                break;
        }
    }

    /* Phase 2: the store. */
    werrs w = {.n = 0};
    bson_init(&w.errors);
    int32_t n = 0;
    store_wrlock(x->env->st);
    store_coll *c = store_coll_get_or_create(x->env->st, x->db, x->coll, NULL, err);
    if (!c) {
        store_unlock(x->env->st);
        bson_destroy(&w.errors);
        goto out;
    }
    for (size_t i = 0; i < np; i++) {
        bson_t d, dup = BSON_INITIALIZER;
        bson_error_t e;
        const bson_error_t *pe_e = &e;
        int r;
        if (ps[i].err >= 0) {
            pe_e = &pe.a[ps[i].err];
            r = -1;
        } else {
            bson_init_static(&d, ps[i].data, ps[i].len);
            r = store_insert(c, &d, NULL, &e, &dup);
        }
        if (r == 0)
            n++;
        else
            werr_add(&w, (int32_t)i, pe_e, &dup);
        bson_destroy(&dup);
        if (r != 0 && ordered)
            break;
    }
    store_unlock(x->env->st);
    __atomic_add_fetch(&x->env->st->n_insert, (uint64_t)n, __ATOMIC_RELAXED);
    BSON_APPEND_INT32(reply, "n", n);
    werr_finish(&w, reply);
    rc = 0;
out:
    for (size_t i = 0; i < np; i++)
        if (ps[i].owned)
            bson_free((void *)ps[i].data);
    free(ps);
    free(pe.a);
    return rc;
}

/* store_touch_fn over an updater. */
static bool upd_touches(const char *path, void *ctx)
{
    return updater_may_touch(ctx, path);
}

/* ---- update -----------------------------------------------------------------------------------
 */

typedef struct {
    int64_t n, modified;
    bson_t upserted; /* array of {index, _id} */
    uint32_t nup;
} upd_totals;

/* One update statement after phase 1. q points into the command (kept for the upsert seed);
 * hint is a shallow copy of the command's value (its pointers point into the command). */
typedef struct {
    matcher *m;
    updater *up;
    const uint8_t *q_data;
    uint32_t q_len;
    bool multi, upsert, has_hint;
    bson_value_t hint;
    int32_t err; /* -1: none */
} upd_stmt;

/* The updater of u: re-bound from a recent one of the same shape, else compiled (and then
 * remembered as a template). */
static updater *upd_compile(const bson_t *u, upd_shapes *sh, bson_error_t *e)
{
    for (unsigned i = 0; i < UPD_SHAPES && sh->recent[i]; i++) {
        updater *up = updater_rebind(sh->recent[i], u);
        if (up)
            return up;
    }
    updater *up = updater_new(u, e);
    if (up) {
        sh->recent[sh->next] = up;
        sh->next = (sh->next + 1) % UPD_SHAPES;
    }
    return up;
}

/* Phase 1 of one update statement: parse and compile. 0, or -1 with e set. */
static int upd_prepare(const bson_iter_t *sit, upd_stmt *p, upd_shapes *sh, bson_error_t *e)
{
    bson_t stmt, q, u;
    bool has_q, has_u;
    if (!BSON_ITER_HOLDS_DOCUMENT(sit) || !bv_as_doc(bson_iter_value((bson_iter_t *)sit), &stmt))
        return mdb_error(e, MDB_TYPE_MISMATCH,
                         "BSON field 'update.updates' must be an array of objects");
    if (cmd_arg_doc(&stmt, "q", &q, &has_q, e) != 0)
        return -1;
    bson_iter_t it;
    if (bson_iter_init_find(&it, &stmt, "u") && BSON_ITER_HOLDS_ARRAY(&it))
        return mdb_error(e, MDB_COMMAND_NOT_SUPPORTED,
                         "pipeline-style updates are not supported by devdb");
    if (cmd_arg_doc(&stmt, "u", &u, &has_u, e) != 0)
        return -1;
    if (!has_q)
        return mdb_error(e, MDB_FAILED_TO_PARSE,
                         "BSON field 'update.updates.q' is missing but a required field");
    if (!has_u)
        return mdb_error(e, MDB_FAILED_TO_PARSE,
                         "BSON field 'update.updates.u' is missing but a required field");
    p->multi = cmd_arg_bool(&stmt, "multi", false);
    p->upsert = cmd_arg_bool(&stmt, "upsert", false);
    const bson_value_t *hint = cmd_arg_value(&stmt, "hint", &it);
    if (hint) {
        p->hint = *hint;
        p->has_hint = true;
    }
    p->q_data = bson_get_data(&q);
    p->q_len = q.len;
    if (!(p->m = matcher_new(&q, e)) || !(p->up = upd_compile(&u, sh, e)))
        return -1;
    if (p->multi && updater_is_replacement(p->up))
        return mdb_error(e, MDB_FAILED_TO_PARSE,
                         "multi update is not supported for replacement-style update");
    return 0;
}

/* Phase 2 of one update statement (store lock held). Returns 0 or -1 with e (and dup) set. */
static int upd_apply(cmd_ctx *x, store_coll **pc, int32_t index, const upd_stmt *p, upd_totals *t,
                     bson_error_t *e, bson_t *dup)
{
    int rc = -1;
    uint64_t *rids = NULL;
    size_t nr = 0;
    plan_req pq = {.m = p->m, .hint = p->has_hint ? &p->hint : NULL, .limit = p->multi ? 0 : 1};
    store_coll *c = *pc;
    if (plan_run(x->env->st, c, &pq, &rids, &nr, e) != 0)
        goto out;
    for (size_t i = 0; i < nr; i++) {
        bson_t d, nd = BSON_INITIALIZER;
        bool modified = false;
        if (!store_doc(c, rids[i], &d)) {
            bson_destroy(&nd);
            continue;
        }
        if (updater_apply(p->up, &d, false, &nd, &modified, e) != 0 ||
            (modified && (depth_check(&nd, false, e) != 0 ||
                          store_replace_ex(c, rids[i], &nd, upd_touches, p->up, e, dup) != 0))) {
            bson_destroy(&nd);
            goto out;
        }
        bson_destroy(&nd);
        t->n++;
        t->modified += modified;
    }
    if (nr == 0 && p->upsert) {
        bson_t q, nd = BSON_INITIALIZER;
        bson_value_t id = {0};
        bson_init_static(&q, p->q_data, p->q_len);
        /* Like MongoDB, only an upsert that inserts creates a missing collection. */
        if (!c && !(c = *pc = store_coll_get_or_create(x->env->st, x->db, x->coll, NULL, e))) {
            bson_destroy(&nd);
            goto out;
        }
        if (upsert_doc(&q, p->up, &nd, e) != 0 || insert_one(c, &nd, &id, e, dup) != 0) {
            bson_destroy(&nd);
            goto out;
        }
        bson_destroy(&nd);
        bson_t ue = BSON_INITIALIZER;
        BSON_APPEND_INT32(&ue, "index", index);
        BSON_APPEND_VALUE(&ue, "_id", &id);
        char ib[16];
        const char *ik;
        size_t il = bson_uint32_to_string(t->nup++, &ik, ib, sizeof ib);
        bson_append_document(&t->upserted, ik, (int)il, &ue);
        bson_destroy(&ue);
        bson_value_destroy(&id);
        t->n++;
    }
    rc = 0;
out:
    free(rids);
    return rc;
}

/* batch_kind adapters for update (see run_batch). */
static int upd_prepare_any(const bson_iter_t *it, void *stmt, upd_shapes *sh, bson_error_t *e)
{
    return upd_prepare(it, stmt, sh, e);
}

static int upd_apply_any(cmd_ctx *x, store_coll **pc, int32_t index, const void *stmt, void *totals,
                         bson_error_t *e, bson_t *dup)
{
    return upd_apply(x, pc, index, stmt, totals, e, dup);
}

static void upd_release(void *stmt)
{
    upd_stmt *p = stmt;
    updater_free(p->up);
    matcher_free(p->m);
}

static const batch_kind UPDATE_BATCH = {
    "updates",        "BSON field 'update.updates' is missing but a required field",
    sizeof(upd_stmt), offsetof(upd_stmt, err),
    upd_prepare_any,  upd_apply_any,
    upd_release};

int cmd_update(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    upd_totals t = {0};
    bson_init(&t.upserted);
    werrs w;
    if (run_batch(x, &UPDATE_BATCH, &t, &w, err) != 0) {
        bson_destroy(&t.upserted);
        return -1;
    }
    __atomic_add_fetch(&x->env->st->n_update, (uint64_t)(t.n > 0 ? t.n : 0), __ATOMIC_RELAXED);
    BSON_APPEND_INT32(reply, "n", (int32_t)t.n);
    BSON_APPEND_INT32(reply, "nModified", (int32_t)t.modified);
    if (t.nup > 0)
        BSON_APPEND_ARRAY(reply, "upserted", &t.upserted);
    bson_destroy(&t.upserted);
    werr_finish(&w, reply);
    return 0;
}

/* ---- delete -------------------------------------------------------------------------------------
 */

/* One delete statement after phase 1 (hint as in upd_stmt). */
typedef struct {
    matcher *m;
    int64_t limit;
    bool has_hint;
    bson_value_t hint;
    int32_t err; /* -1: none */
} del_stmt;

/* Phase 1 of one delete statement: parse and compile. 0, or -1 with e set. */
static int del_prepare(const bson_iter_t *sit, del_stmt *p, bson_error_t *e)
{
    bson_t stmt, q;
    bool has_q;
    if (!BSON_ITER_HOLDS_DOCUMENT(sit) || !bv_as_doc(bson_iter_value((bson_iter_t *)sit), &stmt))
        return mdb_error(e, MDB_TYPE_MISMATCH,
                         "BSON field 'delete.deletes' must be an array of objects");
    if (cmd_arg_doc(&stmt, "q", &q, &has_q, e) != 0)
        return -1;
    if (!has_q)
        return mdb_error(e, MDB_FAILED_TO_PARSE,
                         "BSON field 'delete.deletes.q' is missing but a required field");
    p->limit = 0;
    if (cmd_arg_int64(&stmt, "limit", &p->limit, e) != 0)
        return -1;
    if (p->limit != 0 && p->limit != 1)
        return mdb_error(e, MDB_FAILED_TO_PARSE,
                         "The limit field in delete objects must be 0 or 1. Got %lld",
                         (long long)p->limit);
    bson_iter_t it;
    const bson_value_t *hint = cmd_arg_value(&stmt, "hint", &it);
    if (hint) {
        p->hint = *hint;
        p->has_hint = true;
    }
    if (!(p->m = matcher_new(&q, e)))
        return -1;
    return 0;
}

/* Phase 2 of one delete statement (store lock held). */
static int del_apply(cmd_ctx *x, store_coll *c, const del_stmt *p, int64_t *n, bson_error_t *e)
{
    uint64_t *rids = NULL;
    size_t nr = 0;
    const bson_value_t *hint = p->has_hint ? &p->hint : NULL;
    plan_req pq = {.m = p->m, .hint = hint, .limit = p->limit};
    int rc = c ? plan_run(x->env->st, c, &pq, &rids, &nr, e)
               : plan_check_hint(NULL, hint, &(store_index *){NULL}, e);
    for (size_t i = 0; rc == 0 && i < nr; i++) {
        rc = store_delete(c, rids[i], e);
        if (rc == 0)
            (*n)++;
    }
    free(rids);
    return rc;
}

/* batch_kind adapters for delete (see run_batch); totals is the int64_t count. */
static int del_prepare_any(const bson_iter_t *it, void *stmt, upd_shapes *sh, bson_error_t *e)
{
    (void)sh;
    return del_prepare(it, stmt, e);
}

static int del_apply_any(cmd_ctx *x, store_coll **pc, int32_t index, const void *stmt, void *totals,
                         bson_error_t *e, bson_t *dup)
{
    (void)index;
    (void)dup;
    return del_apply(x, *pc, stmt, totals, e);
}

static void del_release(void *stmt)
{
    matcher_free(((del_stmt *)stmt)->m);
}

static const batch_kind DELETE_BATCH = {
    "deletes",        "BSON field 'delete.deletes' is missing but a required field",
    sizeof(del_stmt), offsetof(del_stmt, err),
    del_prepare_any,  del_apply_any,
    del_release};

int cmd_delete(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    int64_t n = 0;
    werrs w;
    if (run_batch(x, &DELETE_BATCH, &n, &w, err) != 0)
        return -1;
    __atomic_add_fetch(&x->env->st->n_delete, (uint64_t)n, __ATOMIC_RELAXED);
    BSON_APPEND_INT32(reply, "n", (int32_t)n);
    werr_finish(&w, reply);
    return 0;
}

/* ---- findAndModify ------------------------------------------------------------------------------
 */

static void append_projected(bson_t *reply, const char *key, const bson_t *doc,
                             const projection *pj)
{
    if (!pj || projection_is_identity(pj)) {
        BSON_APPEND_DOCUMENT(reply, key, doc);
        return;
    }
    bson_t out = BSON_INITIALIZER;
    projection_apply(pj, doc, &out);
    BSON_APPEND_DOCUMENT(reply, key, &out);
    bson_destroy(&out);
}

int cmd_findandmodify(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    if (cmd_need_coll(x, err) != 0)
        return -1;
    bson_t q, sort, fields, u;
    bool has_sort, has_fields, has_u;
    if (cmd_arg_doc(x->cmd, "query", &q, NULL, err) != 0 ||
        cmd_arg_doc(x->cmd, "sort", &sort, &has_sort, err) != 0 ||
        cmd_arg_doc(x->cmd, "fields", &fields, &has_fields, err) != 0)
        return -1;
    bson_iter_t it;
    if (bson_iter_init_find(&it, x->cmd, "update") && BSON_ITER_HOLDS_ARRAY(&it))
        return mdb_error(err, MDB_COMMAND_NOT_SUPPORTED,
                         "pipeline-style updates are not supported by devdb");
    if (cmd_arg_doc(x->cmd, "update", &u, &has_u, err) != 0)
        return -1;
    bool remove = cmd_arg_bool(x->cmd, "remove", false);
    bool want_new = cmd_arg_bool(x->cmd, "new", false);
    bool upsert = cmd_arg_bool(x->cmd, "upsert", false);
    if (!remove && !has_u)
        return mdb_error(err, MDB_FAILED_TO_PARSE,
                         "Either an update or remove=true must be "
                         "specified");
    if (remove && has_u)
        return mdb_error(err, MDB_FAILED_TO_PARSE,
                         "Cannot specify both an update and "
                         "remove=true");
    if (remove && upsert)
        return mdb_error(err, MDB_FAILED_TO_PARSE,
                         "Cannot specify both upsert=true and "
                         "remove=true");
    if (remove && want_new)
        return mdb_error(err, MDB_FAILED_TO_PARSE,
                         "Cannot specify both new=true and remove=true; 'remove' always returns "
                         "the deleted document");
    const bson_value_t *hint = cmd_arg_value(x->cmd, "hint", &it);

    int rc = -1;
    matcher *m = NULL;
    sortspec *ss = NULL;
    projection *pj = NULL;
    updater *up = NULL;
    uint64_t *rids = NULL;
    size_t nr = 0;
    bson_t dup = BSON_INITIALIZER;
    bson_t leo = BSON_INITIALIZER; /* lastErrorObject */
    bson_t val = BSON_INITIALIZER; /* {value: ...} */
    bool locked = false;
    if (!(m = matcher_new(&q, err)))
        goto out;
    if (has_sort && !bson_empty(&sort) && !(ss = sortspec_new(&sort, false, err)))
        goto out;
    if (has_fields && !(pj = projection_new(&fields, err)))
        goto out;
    if (has_u && !(up = updater_new(&u, err)))
        goto out;

    store_wrlock(x->env->st);
    locked = true;
    store_coll *c = store_coll_find(x->env->st, x->db, x->coll);
    if (!c && upsert && !(c = store_coll_get_or_create(x->env->st, x->db, x->coll, NULL, err)))
        goto out;
    plan_req pq = {.m = m, .sort = ss, .hint = hint, .limit = 1};
    if (plan_run(x->env->st, c, &pq, &rids, &nr, err) != 0)
        goto out;
    bson_t d;
    if (nr > 0 && store_doc(c, rids[0], &d)) {
        if (remove) {
            append_projected(&val, "value", &d, pj);
            if (store_delete(c, rids[0], err) != 0)
                goto out;
            __atomic_add_fetch(&x->env->st->n_delete, 1, __ATOMIC_RELAXED);
            BSON_APPEND_INT32(&leo, "n", 1);
        } else {
            bson_t nd = BSON_INITIALIZER;
            bool modified = false;
            if (updater_apply(up, &d, false, &nd, &modified, err) != 0) {
                bson_destroy(&nd);
                goto out;
            }
            if (!want_new)
                append_projected(&val, "value", &d, pj);
            if (modified && (depth_check(&nd, false, err) != 0 ||
                             store_replace_ex(c, rids[0], &nd, upd_touches, up, err, &dup) != 0)) {
                bson_destroy(&nd);
                goto out;
            }
            if (want_new)
                append_projected(&val, "value", &nd, pj);
            bson_destroy(&nd);
            __atomic_add_fetch(&x->env->st->n_update, 1, __ATOMIC_RELAXED);
            BSON_APPEND_INT32(&leo, "n", 1);
            BSON_APPEND_BOOL(&leo, "updatedExisting", true);
        }
    } else if (upsert) {
        bson_t nd = BSON_INITIALIZER;
        bson_value_t id = {0};
        if (upsert_doc(&q, up, &nd, err) != 0 || insert_one(c, &nd, &id, err, &dup) != 0) {
            bson_destroy(&nd);
            goto out;
        }
        bson_destroy(&nd);
        BSON_APPEND_INT32(&leo, "n", 1);
        BSON_APPEND_BOOL(&leo, "updatedExisting", false);
        BSON_APPEND_VALUE(&leo, "upserted", &id);
        if (want_new) {
            /* Read back the stored form (with _id first). */
            store_coll *cc = c;
            bson_t sd;
            if (store_doc(cc, cc->nrec - 1, &sd))
                append_projected(&val, "value", &sd, pj);
        } else {
            BSON_APPEND_NULL(&val, "value");
        }
        bson_value_destroy(&id);
    } else {
        BSON_APPEND_INT32(&leo, "n", 0);
        if (!remove)
            BSON_APPEND_BOOL(&leo, "updatedExisting", false);
        BSON_APPEND_NULL(&val, "value");
    }
    if (bson_empty(&val))
        BSON_APPEND_NULL(&val, "value");
    BSON_APPEND_DOCUMENT(reply, "lastErrorObject", &leo);
    bson_concat(reply, &val);
    rc = 0;
out:
    if (locked)
        store_unlock(x->env->st);
    if (rc != 0 && !bson_empty(&dup)) {
        /* DuplicateKey as a command error still carries keyPattern/keyValue. */
        bson_concat(reply, &dup);
    }
    bson_destroy(&dup);
    bson_destroy(&leo);
    bson_destroy(&val);
    free(rids);
    matcher_free(m);
    sortspec_free(ss);
    projection_free(pj);
    updater_free(up);
    return rc;
}
