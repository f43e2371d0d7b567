/*
 * project.c: projections as a tree of path components.
 *
 * Each node is one field name at one level: INCLUDE, EXCLUDE, SUBTREE (a dotted path goes
 * deeper), EXPR (computed), SLICE or ELEMMATCH. Applying walks the document once per level in
 * document order: inclusion copies only named fields (and _id unless excluded), exclusion copies
 * everything not excluded; SUBTREE recurses into embedded documents and into the document
 * elements of arrays. Computed fields are evaluated against the whole document and appended
 * after the document's fields at their level.
 */
#include "engine/project.h"
#include "base/bsonval.h"
#include "base/errors.h"
#include "engine/expr.h"
#include "engine/match.h"

#include <stdlib.h>
#include <string.h>

typedef enum { P_INCLUDE, P_EXCLUDE, P_SUBTREE, P_EXPR, P_SLICE, P_ELEMMATCH } pkind;

typedef struct pnode pnode;
struct pnode {
    char *name;
    pkind kind;
    pnode **kids;
    size_t nkids;
    expr *ex;
    matcher *em;
    int64_t skip, limit; /* SLICE: skip may be negative (from the end) */
    bool has_skip;
    bool has_computed; /* subtree contains EXPR nodes */
};

struct projection {
    pnode root;
    bool identity;
    bool inclusion;
    bool id_excluded;
    bool id_included;
};

static void pnode_release(pnode *n)
{
    for (size_t i = 0; i < n->nkids; i++) {
        pnode_release(n->kids[i]);
        free(n->kids[i]);
    }
    free(n->kids);
    free(n->name);
    expr_free(n->ex);
    matcher_free(n->em);
}

void projection_free(projection *p)
{
    if (!p)
        return;
    pnode_release(&p->root);
    free(p);
}

bool projection_is_identity(const projection *p)
{
    return p->identity;
}

static pnode *find_kid(const pnode *n, const char *name, size_t len)
{
    for (size_t i = 0; i < n->nkids; i++)
        if (strlen(n->kids[i]->name) == len && memcmp(n->kids[i]->name, name, len) == 0)
            return n->kids[i];
    return NULL;
}

static pnode *add_kid(pnode *n, const char *name, size_t len, pkind kind, bson_error_t *err)
{
    pnode *k = calloc(1, sizeof *k);
    pnode **nk = realloc(n->kids, (n->nkids + 1) * sizeof *nk);
    if (!k || !nk) {
        free(k);
        if (nk)
            n->kids = nk;
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
        return NULL;
    }
    n->kids = nk;
    k->name = strndup(name, len);
    if (!k->name) {
        free(k);
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
        return NULL;
    }
    k->kind = kind;
    n->kids[n->nkids++] = k;
    return k;
}

/* Inserts `path` with a leaf of `kind`; returns the leaf or NULL (collision / OOM). */
static pnode *insert_path(projection *p, const char *path, pkind kind, bson_error_t *err)
{
    pnode *cur = &p->root;
    const char *s = path;
    size_t parts = 1;
    for (const char *q = path; *q; q++)
        parts += *q == '.';
    if (parts > BV_PATH_MAX_PARTS || strlen(path) > BV_PATH_MAX) {
        mdb_error(err, MDB_BAD_VALUE, "projection path too long: %.40s...", path);
        return NULL;
    }
    for (;;) {
        const char *dot = strchr(s, '.');
        size_t len = dot ? (size_t)(dot - s) : strlen(s);
        if (len == 0) {
            mdb_error(err, MDB_BAD_VALUE, "FieldPath field names may not be empty strings.");
            return NULL;
        }
        pnode *k = find_kid(cur, s, len);
        if (!dot) {
            if (k) {
                mdb_error(err, 31250, "Path collision at %s", path);
                return NULL;
            }
            return add_kid(cur, s, len, kind, err);
        }
        if (k && k->kind != P_SUBTREE) {
            mdb_error(err, 31250, "Path collision at %s remaining portion %s", path, dot + 1);
            return NULL;
        }
        if (!k && !(k = add_kid(cur, s, len, P_SUBTREE, err)))
            return NULL;
        if (kind == P_EXPR)
            k->has_computed = true;
        cur = k;
        s = dot + 1;
    }
}

static bool is_flag(const bson_value_t *v)
{
    return bv_is_number(v->value_type) || v->value_type == BSON_TYPE_BOOL;
}

static bool flag_true(const bson_value_t *v)
{
    if (v->value_type == BSON_TYPE_BOOL)
        return v->value.v_bool;
    return bv_as_double(v) != 0;
}

static projection *build(const bson_t *spec, bool stage, bson_error_t *err)
{
    projection *p = calloc(1, sizeof *p);
    bson_iter_t it;
    if (!p) {
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
        return NULL;
    }
    if (!spec || bson_empty(spec)) {
        if (stage) {
            mdb_error(err, 51272, "$project specification must have at least one field");
            projection_free(p);
            return NULL;
        }
        p->identity = true;
        return p;
    }
    int mode = 0; /* 1 inclusion, -1 exclusion */
    if (!bson_iter_init(&it, spec)) {
        mdb_error(err, MDB_BAD_VALUE, "invalid BSON in projection");
        goto fail;
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        if (k[0] == '$') {
            mdb_error(err, 31395, "Field names may not start with '$' (projection field %s)", k);
            goto fail;
        }
        size_t klen = strlen(k);
        if (klen >= 2 && strcmp(k + klen - 2, ".$") == 0) {
            mdb_error(err, MDB_BAD_VALUE, "positional projection ('%s') is not supported by devdb",
                      k);
            goto fail;
        }
        bool is_id = strcmp(k, "_id") == 0;
        if (is_flag(v)) {
            bool inc = flag_true(v);
            if (is_id) {
                p->id_excluded = !inc;
                p->id_included = inc;
                continue;
            }
            if (mode == 0)
                mode = inc ? 1 : -1;
            else if (mode == 1 && !inc) {
                mdb_error(err, 31254, "Cannot do exclusion on field %s in inclusion projection", k);
                goto fail;
            } else if (mode == -1 && inc) {
                mdb_error(err, 31253, "Cannot do inclusion on field %s in exclusion projection", k);
                goto fail;
            }
            if (!insert_path(p, k, inc ? P_INCLUDE : P_EXCLUDE, err))
                goto fail;
            continue;
        }
        bson_t d;
        bson_iter_t di;
        if (!stage && v->value_type == BSON_TYPE_DOCUMENT && bv_as_doc(v, &d) &&
            bson_iter_init(&di, &d) && bson_iter_next(&di) &&
            (strcmp(bson_iter_key(&di), "$slice") == 0 ||
             strcmp(bson_iter_key(&di), "$elemMatch") == 0 ||
             strcmp(bson_iter_key(&di), "$meta") == 0)) {
            const char *op = bson_iter_key(&di);
            const bson_value_t *a = bson_iter_value(&di);
            if (strcmp(op, "$meta") == 0) {
                mdb_error(err, MDB_BAD_VALUE, "$meta projection is not supported by devdb");
                goto fail;
            }
            if (strcmp(op, "$slice") == 0) {
                pnode *n = insert_path(p, k, P_SLICE, err);
                if (!n)
                    goto fail;
                if (bv_is_number(a->value_type)) {
                    n->limit = (int64_t)bv_as_double(a);
                } else if (a->value_type == BSON_TYPE_ARRAY) {
                    bson_t ad;
                    bson_iter_t ai;
                    bv_as_doc(a, &ad);
                    if (bson_count_keys(&ad) != 2) {
                        mdb_error(err, 28724, "First argument to $slice must be an array");
                        goto fail;
                    }
                    bson_iter_init(&ai, &ad);
                    bson_iter_next(&ai);
                    bool ok = bv_is_number(bson_iter_type(&ai));
                    n->skip = ok ? (int64_t)bv_as_double(bson_iter_value(&ai)) : 0;
                    bson_iter_next(&ai);
                    ok = ok && bv_is_number(bson_iter_type(&ai));
                    n->limit = ok ? (int64_t)bv_as_double(bson_iter_value(&ai)) : 0;
                    if (!ok) {
                        mdb_error(err, 28724, "$slice arguments must be numbers");
                        goto fail;
                    }
                    if (n->limit <= 0) {
                        mdb_error(err, 28724, "$slice limit must be positive");
                        goto fail;
                    }
                    n->has_skip = true;
                } else {
                    mdb_error(err, 28667, "$slice only supports numbers and [skip, limit] arrays");
                    goto fail;
                }
                continue;
            }
            /* $elemMatch */
            if (strchr(k, '.')) {
                mdb_error(err, MDB_BAD_VALUE,
                          "Cannot use $elemMatch projection on a nested field.");
                goto fail;
            }
            if (a->value_type != BSON_TYPE_DOCUMENT) {
                mdb_error(err, MDB_BAD_VALUE, "elemMatch: Invalid argument, object required.");
                goto fail;
            }
            pnode *n = insert_path(p, k, P_ELEMMATCH, err);
            if (!n)
                goto fail;
            bson_t ed;
            bv_as_doc(a, &ed);
            bson_t *f = bson_new();
            BSON_APPEND_DOCUMENT(f, "$elemMatch", &ed);
            bson_t *wrapped = bson_new();
            BSON_APPEND_DOCUMENT(wrapped, "v", f);
            n->em = matcher_new(wrapped, err);
            bson_destroy(f);
            bson_destroy(wrapped);
            if (!n->em)
                goto fail;
            continue;
        }
        /* A computed field. */
        if (mode == -1 && !is_id) {
            mdb_error(err, 31252,
                      "Cannot use expression other than $meta in exclusion "
                      "projection");
            goto fail;
        }
        if (!is_id)
            mode = 1;
        pnode *n = insert_path(p, k, P_EXPR, err);
        if (!n)
            goto fail;
        n->ex = expr_new(v, err);
        if (!n->ex)
            goto fail;
    }
    p->inclusion = mode == 1;
    if (mode == 0 && !p->id_excluded && p->root.nkids == 0 && !p->id_included)
        p->identity = true;
    if (mode == 0 && p->id_included && p->root.nkids == 0)
        p->inclusion = true; /* {_id: 1} alone returns only _id */
    return p;
fail:
    projection_free(p);
    return NULL;
}

projection *projection_new(const bson_t *spec, bson_error_t *err)
{
    return build(spec, false, err);
}

projection *projection_new_stage(const bson_t *spec, bson_error_t *err)
{
    return build(spec, true, err);
}

/* ---------------------------------------------------------------------------------------------
 * Applying
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    const bson_t *root;
    bson_error_t *err;
    int rc;
} apply_ctx;

static void apply_level(const pnode *t, bool inclusion, const bson_t *doc, bool top, bool id_ex,
                        bson_t *out, apply_ctx *c);

static void append_slice(const pnode *n, const bson_iter_t *it, bson_t *out)
{
    const bson_value_t *v = bson_iter_value((bson_iter_t *)it);
    const char *key = bson_iter_key(it);
    if (v->value_type != BSON_TYPE_ARRAY) {
        bson_append_value(out, key, -1, v);
        return;
    }
    bson_t d, arr;
    bson_iter_t ai;
    bv_as_doc(v, &d);
    int64_t count = (int64_t)bson_count_keys(&d), from, to;
    if (n->has_skip) {
        from = n->skip >= 0 ? n->skip : count + n->skip;
        if (from < 0)
            from = 0;
        to = from + n->limit;
    } else if (n->limit >= 0) {
        from = 0;
        to = n->limit;
    } else {
        from = count + n->limit;
        if (from < 0)
            from = 0;
        to = count;
    }
    bson_append_array_begin(out, key, -1, &arr);
    bson_iter_init(&ai, &d);
    uint32_t w = 0;
    for (int64_t i = 0; bson_iter_next(&ai); i++) {
        if (i < from || i >= to)
            continue;
        char kb[16];
        const char *k;
        bson_uint32_to_string(w++, &k, kb, sizeof kb);
        bson_append_value(&arr, k, -1, bson_iter_value(&ai));
    }
    bson_append_array_end(out, &arr);
}

static void append_elem_match(const pnode *n, const bson_iter_t *it, bson_t *out)
{
    const bson_value_t *v = bson_iter_value((bson_iter_t *)it);
    if (v->value_type != BSON_TYPE_ARRAY)
        return;
    bson_t d;
    bson_iter_t ai;
    bv_as_doc(v, &d);
    bson_iter_init(&ai, &d);
    while (bson_iter_next(&ai)) {
        bson_t w = BSON_INITIALIZER, arr;
        bson_append_array_begin(&w, "v", 1, &arr);
        bson_append_value(&arr, "0", 1, bson_iter_value(&ai));
        bson_append_array_end(&w, &arr);
        bool m = matcher_matches(n->em, &w);
        bson_destroy(&w);
        if (m) {
            bson_append_array_begin(out, bson_iter_key(it), -1, &arr);
            bson_append_value(&arr, "0", 1, bson_iter_value(&ai));
            bson_append_array_end(out, &arr);
            return;
        }
    }
}

/* Applies subtree t to an array value: documents recurse, nested arrays recurse, scalars are
 * kept only in exclusion mode. */
static void apply_array(const pnode *t, bool inclusion, const bson_value_t *v, bson_t *out,
                        apply_ctx *c, int depth)
{
    if (depth > 200)
        return; /* arrays nested deeper than MongoDB allows are dropped */
    bson_t d;
    bson_iter_t ai;
    uint32_t w = 0;
    bv_as_doc(v, &d);
    bson_iter_init(&ai, &d);
    while (bson_iter_next(&ai)) {
        const bson_value_t *e = bson_iter_value(&ai);
        char kb[16];
        const char *k;
        if (e->value_type == BSON_TYPE_DOCUMENT) {
            bson_t ed, sub;
            bv_as_doc(e, &ed);
            bson_uint32_to_string(w++, &k, kb, sizeof kb);
            bson_append_document_begin(out, k, -1, &sub);
            apply_level(t, inclusion, &ed, false, false, &sub, c);
            bson_append_document_end(out, &sub);
        } else if (e->value_type == BSON_TYPE_ARRAY) {
            bson_t sub;
            bson_uint32_to_string(w++, &k, kb, sizeof kb);
            bson_append_array_begin(out, k, -1, &sub);
            apply_array(t, inclusion, e, &sub, c, depth + 1);
            bson_append_array_end(out, &sub);
        } else if (!inclusion) {
            bson_uint32_to_string(w++, &k, kb, sizeof kb);
            bson_append_value(out, k, -1, e);
        }
    }
}

static void append_computed(const pnode *t, const bson_t *doc, bson_t *out, apply_ctx *c);

static void apply_level(const pnode *t, bool inclusion, const bson_t *doc, bool top, bool id_ex,
                        bson_t *out, apply_ctx *c)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, doc))
        return;
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        uint32_t klen = bson_iter_key_len(&it);
        const pnode *n = find_kid(t, key, klen);
        if (top && klen == 3 && memcmp(key, "_id", 3) == 0 && (!n || n->kind != P_SUBTREE)) {
            if (!id_ex && (!n || n->kind != P_EXPR))
                bson_append_iter(out, NULL, 0, &it);
            continue;
        }
        if (!n) {
            if (!inclusion)
                bson_append_iter(out, NULL, 0, &it);
            continue;
        }
        const bson_value_t *v = bson_iter_value(&it);
        switch (n->kind) {
        case P_INCLUDE:
            bson_append_iter(out, NULL, 0, &it);
            break;
        case P_EXCLUDE:
        case P_EXPR:
            break; /* computed fields are appended below */
        case P_SLICE:
            append_slice(n, &it, out);
            break;
        case P_ELEMMATCH:
            append_elem_match(n, &it, out);
            break;
        case P_SUBTREE:
            if (v->value_type == BSON_TYPE_DOCUMENT) {
                bson_t d, sub;
                bv_as_doc(v, &d);
                bson_append_document_begin(out, key, (int)klen, &sub);
                apply_level(n, inclusion, &d, false, false, &sub, c);
                if (n->has_computed)
                    append_computed(n, &d, &sub, c);
                bson_append_document_end(out, &sub);
            } else if (v->value_type == BSON_TYPE_ARRAY) {
                bson_t sub;
                bson_append_array_begin(out, key, (int)klen, &sub);
                apply_array(n, inclusion, v, &sub, c, 0);
                bson_append_array_end(out, &sub);
            } else if (!inclusion) {
                bson_append_iter(out, NULL, 0, &it);
            } else if (n->has_computed) {
                /* A scalar is replaced by a document holding the computed fields. */
                bson_t sub;
                bson_append_document_begin(out, key, (int)klen, &sub);
                append_computed(n, NULL, &sub, c);
                bson_append_document_end(out, &sub);
            }
            break;
        }
    }
}

/* Appends the EXPR children of t (and subtrees holding computed fields that `doc` lacks). */
static void append_computed(const pnode *t, const bson_t *doc, bson_t *out, apply_ctx *c)
{
    for (size_t i = 0; i < t->nkids; i++) {
        const pnode *n = t->kids[i];
        if (n->kind == P_EXPR) {
            bson_value_t v;
            if (expr_eval(n->ex, c->root, &v, c->err) != 0) {
                c->rc = -1;
                continue;
            }
            if (v.value_type != BSON_TYPE_EOD) {
                bson_append_value(out, n->name, -1, &v);
                bson_value_destroy(&v);
            }
        } else if (n->kind == P_SUBTREE && n->has_computed) {
            bson_iter_t it;
            bool present = doc && bson_iter_init_find(&it, doc, n->name);
            if (!present) {
                bson_t sub;
                bson_append_document_begin(out, n->name, -1, &sub);
                append_computed(n, NULL, &sub, c);
                bson_append_document_end(out, &sub);
            }
        }
    }
}

int projection_apply_ex(const projection *p, const bson_t *doc, bson_t *out, bson_error_t *err)
{
    if (p->identity) {
        bson_concat(out, doc);
        return 0;
    }
    bson_error_t local;
    apply_ctx c = {.root = doc, .err = err ? err : &local, .rc = 0};
    apply_level(&p->root, p->inclusion, doc, true, p->id_excluded, out, &c);
    const pnode *idn = find_kid(&p->root, "_id", 3);
    if (idn && idn->kind == P_EXPR) {
        /* A computed _id replaces the document's. */
        bson_value_t v;
        if (expr_eval(idn->ex, doc, &v, c.err) == 0 && v.value_type != BSON_TYPE_EOD) {
            bson_t tmp = BSON_INITIALIZER;
            bson_append_value(&tmp, "_id", 3, &v);
            bson_value_destroy(&v);
            bson_concat(&tmp, out);
            bson_reinit(out);
            bson_concat(out, &tmp);
            bson_destroy(&tmp);
        }
    }
    if (p->inclusion) {
        /* append_computed skips _id (handled above) by construction: _id EXPR nodes are
         * evaluated there, so evaluate the others here. */
        for (size_t i = 0; i < p->root.nkids; i++) {
            const pnode *n = p->root.kids[i];
            if (n == idn)
                continue;
            if (n->kind == P_EXPR || (n->kind == P_SUBTREE && n->has_computed)) {
                pnode one = {.kids = (pnode **)&p->root.kids[i], .nkids = 1};
                append_computed(&one, doc, out, &c);
            }
        }
    }
    return c.rc;
}

void projection_apply(const projection *p, const bson_t *doc, bson_t *out)
{
    projection_apply_ex(p, doc, out, NULL);
}
