/*
 * partial.c: partial index filters (see partial.h).
 *
 * Validation mirrors MongoDB 4.4 in two steps. First the filter is parsed as a query (here:
 * compiled by matcher_new, which also gives the membership test), so a filter that is not a
 * valid query fails with the parser's error. Then its expression tree is checked the way
 * IndexCatalogImpl::_checkValidFilterExpressions does: the tree MongoDB's parser builds is an
 * AND of one child per predicate (a field with several operators gives one child each, $and
 * and $all give an AND child), collapsed to its only child when there is exactly one; at level
 * 0 an AND is allowed, below it only EQ, LT, LTE, GT, GTE, EXISTS and TYPE leaves. Anything
 * else is refused with "unsupported expression in partial index: " followed by MongoDB's
 * debugString of the offending expression ("status $in [ \"A\" \"B\" ]\n", "$not\n    a
 * exists\n" for $exists: false, ...), an AND below level 0 with "$and only supported in
 * partialFilterExpression at top level".
 *
 * The accepted leaves are kept as predicates (path, operator, value pointing into the owned
 * copy of the filter) for partial_implied_by, which looks for each predicate in the query's
 * top-level conjunction (see partial.h for the rules).
 */
#include "storage/partial.h"

#include "base/bsonval.h"
#include "base/errors.h"
#include "engine/match.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { PF_EQ, PF_LT, PF_LTE, PF_GT, PF_GTE, PF_EXISTS, PF_TYPE } pf_op;

typedef struct {
    const char *path; /* into p->doc */
    pf_op op;
    bson_value_t v; /* into p->doc */
} pf_pred;

struct partial_filter {
    bson_t *doc; /* the filter as given (heap: bson_t needs its alignment) */
    matcher *m;
    pf_pred *preds;
    size_t npred;
    const char **paths; /* distinct paths of preds, into doc */
    size_t npaths;
};

/* ---- the expression tree MongoDB's parser would build ------------------------------------ */

typedef enum { PN_PRED, PN_BAD, PN_AND } pn_kind;

typedef struct pnode {
    pn_kind kind;
    pf_pred pred;       /* PN_PRED */
    char bad[320];      /* PN_BAD: MongoDB's debugString of the expression */
    struct pnode *kids; /* PN_AND */
    size_t nkids, cap;
} pnode;

static void pn_clear(pnode *n)
{
    for (size_t i = 0; i < n->nkids; i++)
        pn_clear(&n->kids[i]);
    free(n->kids);
    n->kids = NULL;
    n->nkids = n->cap = 0;
}

/* Moves `kid` into the AND node n (kid's children now belong to n). -1 when out of memory
 * (kid is then cleared). */
static int pn_push(pnode *n, pnode *kid)
{
    if (n->nkids == n->cap) {
        size_t ncap = n->cap ? n->cap * 2 : 4;
        pnode *nk = realloc(n->kids, ncap * sizeof *nk);
        if (!nk) {
            pn_clear(kid);
            return -1;
        }
        n->kids = nk;
        n->cap = ncap;
    }
    n->kids[n->nkids++] = *kid;
    return 0;
}

static int push_pred(pnode *list, const char *path, pf_op op, const bson_value_t *v)
{
    pnode k = {.kind = PN_PRED, .pred = {.path = path, .op = op, .v = *v}};
    return pn_push(list, &k);
}

static int push_bad(pnode *list, const char *fmt, ...) BSON_GNUC_PRINTF(2, 3);
static int push_bad(pnode *list, const char *fmt, ...)
{
    pnode k = {.kind = PN_BAD};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(k.bad, sizeof k.bad, fmt, ap);
    va_end(ap);
    return pn_push(list, &k);
}

/* BSONElement::toString(false) closely enough: relaxed extended JSON of the value. */
static const char *render(const bson_value_t *v, char *buf, size_t cap)
{
    return bv_render_json(v, buf, cap);
}

/* "[ v1 v2 ]" as InMatchExpression prints its list. */
static void render_list(const bson_value_t *arr, char *buf, size_t cap)
{
    size_t off = (size_t)snprintf(buf, cap, "[ ");
    bson_t d;
    bson_iter_t it;
    if (bv_as_doc(arr, &d) && bson_iter_init(&it, &d)) {
        while (bson_iter_next(&it) && off < cap) {
            char one[128];
            int w = snprintf(buf + off, cap - off, "%s ",
                             render(bson_iter_value(&it), one, sizeof one));
            off += w > 0 ? (size_t)w : 0;
        }
    }
    if (off < cap)
        snprintf(buf + off, cap - off, "]");
}

static bool is_operator_doc(const bson_value_t *v)
{
    bson_t d;
    bson_iter_t it;
    if (v->value_type != BSON_TYPE_DOCUMENT || !bv_as_doc(v, &d) || !bson_iter_init(&it, &d) ||
        !bson_iter_next(&it))
        return false;
    const char *k = bson_iter_key(&it);
    return k[0] == '$' && strcmp(k, "$ref") != 0 && strcmp(k, "$id") != 0 && strcmp(k, "$db") != 0;
}

static int parse_obj(const bson_t *obj, pnode *list);

/* One operator of a field's operator document ({path: {op: v, ...}}). `ops` is that document
 * (for $regex's $options). */
static int parse_op(const char *path, const char *op, const bson_value_t *v, const bson_t *ops,
                    pnode *list)
{
    char a[256], b[256];
    if (strcmp(op, "$eq") == 0)
        return push_pred(list, path, PF_EQ, v);
    if (strcmp(op, "$lt") == 0)
        return push_pred(list, path, PF_LT, v);
    if (strcmp(op, "$lte") == 0)
        return push_pred(list, path, PF_LTE, v);
    if (strcmp(op, "$gt") == 0)
        return push_pred(list, path, PF_GT, v);
    if (strcmp(op, "$gte") == 0)
        return push_pred(list, path, PF_GTE, v);
    if (strcmp(op, "$type") == 0)
        return push_pred(list, path, PF_TYPE, v);
    if (strcmp(op, "$exists") == 0) {
        if (bv_truthy(v))
            return push_pred(list, path, PF_EXISTS, v);
        return push_bad(list, "$not\n    %s exists\n", path);
    }
    if (strcmp(op, "$options") == 0)
        return 0; /* belongs to $regex */
    if (strcmp(op, "$ne") == 0)
        return push_bad(list, "$not\n    %s $eq %s\n", path, render(v, a, sizeof a));
    if (strcmp(op, "$in") == 0 || strcmp(op, "$nin") == 0) {
        render_list(v, a, sizeof a);
        if (op[1] == 'i')
            return push_bad(list, "%s $in %s\n", path, a);
        return push_bad(list, "$not\n    %s $in %s\n", path, a);
    }
    if (strcmp(op, "$regex") == 0) {
        bson_iter_t it;
        const char *opts = "";
        if (bson_iter_init_find(&it, ops, "$options") && BSON_ITER_HOLDS_UTF8(&it))
            opts = bson_iter_utf8(&it, NULL);
        const char *src = v->value_type == BSON_TYPE_UTF8    ? v->value.v_utf8.str
                          : v->value_type == BSON_TYPE_REGEX ? v->value.v_regex.regex
                                                             : "";
        return push_bad(list, "%s regex /%s/%s\n", path, src, opts);
    }
    if (strcmp(op, "$all") == 0) {
        bson_t arr;
        bson_iter_t it;
        if (!bv_as_doc(v, &arr) || bson_empty(&arr))
            return push_bad(list, "$alwaysFalse\n");
        /* {a: {$all: [x, y]}} is AND(a $eq x, a $eq y). */
        pnode and = {.kind = PN_AND};
        bson_iter_init(&it, &arr);
        while (bson_iter_next(&it)) {
            const bson_value_t *e = bson_iter_value(&it);
            int rc;
            if (e->value_type == BSON_TYPE_REGEX)
                rc = push_bad(&and, "%s regex /%s/%s\n", path, e->value.v_regex.regex,
                              e->value.v_regex.options);
            else if (is_operator_doc(e))
                rc = push_bad(&and, "%s $elemMatch (obj)\n", path);
            else
                rc = push_pred(&and, path, PF_EQ, e);
            if (rc != 0) {
                pn_clear(&and);
                return -1;
            }
        }
        return pn_push(list, &and);
    }
    if (strcmp(op, "$size") == 0)
        return push_bad(list, "%s $size : %s\n", path, render(v, a, sizeof a));
    if (strcmp(op, "$mod") == 0) {
        bson_t arr;
        bson_iter_t it;
        const bson_value_t *dv = NULL, *rv = NULL;
        if (bv_as_doc(v, &arr) && bson_iter_init(&it, &arr)) {
            if (bson_iter_next(&it))
                dv = bson_iter_value(&it);
            if (dv && bson_iter_next(&it))
                rv = bson_iter_value(&it);
        }
        snprintf(a, sizeof a, "%s", dv ? render(dv, b, sizeof b) : "?");
        return push_bad(list, "%s mod %s %% x == %s\n", path, a,
                        rv ? render(rv, b, sizeof b) : "?");
    }
    if (strcmp(op, "$elemMatch") == 0)
        return push_bad(list, "%s $elemMatch (%s)\n", path, is_operator_doc(v) ? "value" : "obj");
    if (strcmp(op, "$not") == 0)
        return push_bad(list, "$not\n    %s %s\n", path, render(v, a, sizeof a));
    return push_bad(list, "%s %s %s\n", path, op, render(v, a, sizeof a));
}

/* Appends the children MongoDB's parser makes for the query object `obj` to the AND node
 * `list`. The matcher has already accepted obj, so the shapes are valid. */
static int parse_obj(const bson_t *obj, pnode *list)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, obj))
        return 0;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        char a[256];
        int rc = 0;
        if (strcmp(k, "$and") == 0) {
            /* Each element is parsed on its own and collapsed to its only child. */
            pnode and = {.kind = PN_AND};
            bson_t arr, el;
            bson_iter_t ai;
            if (bv_as_doc(v, &arr) && bson_iter_init(&ai, &arr)) {
                while (rc == 0 && bson_iter_next(&ai)) {
                    pnode sub = {.kind = PN_AND};
                    if (!bv_as_doc(bson_iter_value(&ai), &el) || parse_obj(&el, &sub) != 0) {
                        pn_clear(&sub);
                        rc = -1;
                    } else if (sub.nkids == 1) {
                        rc = pn_push(&and, &sub.kids[0]);
                        free(sub.kids);
                    } else {
                        rc = pn_push(&and, &sub);
                    }
                }
            }
            if (rc != 0) {
                pn_clear(&and);
                return -1;
            }
            rc = pn_push(list, &and);
        } else if (strcmp(k, "$or") == 0 || strcmp(k, "$nor") == 0) {
            rc = push_bad(list, "%s\n    %s\n", k, render(v, a, sizeof a));
        } else if (strcmp(k, "$comment") == 0) {
            rc = 0;
        } else if (k[0] == '$') {
            rc = push_bad(list, "%s\n", k);
        } else if (v->value_type == BSON_TYPE_REGEX) {
            rc = push_bad(list, "%s regex /%s/%s\n", k, v->value.v_regex.regex,
                          v->value.v_regex.options);
        } else if (is_operator_doc(v)) {
            bson_t ops;
            bson_iter_t oi;
            bv_as_doc(v, &ops);
            bson_iter_init(&oi, &ops);
            while (rc == 0 && bson_iter_next(&oi))
                rc = parse_op(k, bson_iter_key(&oi), bson_iter_value(&oi), &ops, list);
        } else {
            rc = push_pred(list, k, PF_EQ, v);
        }
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* ---- construction ------------------------------------------------------------------------ */

static int add_pred(partial_filter *p, const pf_pred *pr, size_t *cap)
{
    if (p->npred == *cap) {
        size_t ncap = *cap ? *cap * 2 : 4;
        pf_pred *np = realloc(p->preds, ncap * sizeof *np);
        const char **pp = realloc(p->paths, ncap * sizeof *pp);
        if (np)
            p->preds = np;
        if (pp)
            p->paths = pp;
        if (!np || !pp)
            return -1;
        *cap = ncap;
    }
    p->preds[p->npred++] = *pr;
    for (size_t i = 0; i < p->npaths; i++)
        if (strcmp(p->paths[i], pr->path) == 0)
            return 0;
    p->paths[p->npaths++] = pr->path;
    return 0;
}

partial_filter *partial_new(const bson_value_t *filter, bool sparse, bson_error_t *err)
{
    if (filter->value_type != BSON_TYPE_DOCUMENT) {
        mdb_error(err, MDB_TYPE_MISMATCH,
                  "The field 'partialFilterExpression' must be an object, but got %s",
                  bv_type_name(filter->value_type));
        return NULL;
    }
    bson_t fd;
    if (!bv_as_doc(filter, &fd)) {
        mdb_error(err, MDB_FAILED_TO_PARSE, "malformed partialFilterExpression");
        return NULL;
    }
    partial_filter *p = calloc(1, sizeof *p);
    if (!p) {
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
        return NULL;
    }
    p->doc = bson_copy(&fd);
    if (!p->doc) {
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
        goto fail;
    }
    /* 1. It must be a valid query (index_key_validate::validateIndexSpec). */
    if (!(p->m = matcher_new(p->doc, err)))
        goto fail;
    /* 2. IndexCatalogImpl::_isSpecOk: sparse first, then the supported subset. */
    if (sparse) {
        mdb_error(err, MDB_CANNOT_CREATE_INDEX,
                  "cannot mix \"partialFilterExpression\" and \"sparse\" options");
        goto fail;
    }
    pnode root = {.kind = PN_AND};
    if (parse_obj(p->doc, &root) != 0) {
        pn_clear(&root);
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
        goto fail;
    }
    const pnode *top = root.nkids == 1 && root.kids[0].kind == PN_AND ? &root.kids[0] : &root;
    size_t cap = 0;
    int rc = 0;
    for (size_t i = 0; i < top->nkids && rc == 0; i++) {
        const pnode *k = &top->kids[i];
        if (k->kind == PN_AND)
            rc = mdb_error(err, MDB_CANNOT_CREATE_INDEX,
                           "$and only supported in partialFilterExpression at top level");
        else if (k->kind == PN_BAD)
            rc = mdb_error(err, MDB_CANNOT_CREATE_INDEX,
                           "unsupported expression in partial index: %s", k->bad);
        else if (add_pred(p, &k->pred, &cap) != 0)
            rc = mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
    }
    pn_clear(&root);
    if (rc != 0)
        goto fail;
    return p;
fail:
    partial_free(p);
    return NULL;
}

void partial_free(partial_filter *p)
{
    if (!p)
        return;
    matcher_free(p->m);
    if (p->doc)
        bson_destroy(p->doc);
    free(p->preds);
    free(p->paths);
    free(p);
}

bool partial_matches(const partial_filter *p, const bson_t *doc)
{
    return matcher_matches(p->m, doc);
}

const bson_t *partial_doc(const partial_filter *p)
{
    return p->doc;
}

size_t partial_npaths(const partial_filter *p)
{
    return p->npaths;
}

const char *partial_path(const partial_filter *p, size_t i)
{
    return i < p->npaths ? p->paths[i] : NULL;
}

bool partial_equal(const partial_filter *a, const partial_filter *b)
{
    if (!a || !b)
        return a == b;
    return bv_compare_docs(a->doc, b->doc) == 0;
}

/* ---- implication --------------------------------------------------------------------------- */

static bool is_nan(const bson_value_t *v)
{
    return v->value_type == BSON_TYPE_DOUBLE && isnan(v->value.v_double);
}

/* Values whose comparisons have odd semantics (arrays and documents match element-wise or as a
 * whole, null also matches missing, regexes, MinKey/MaxKey): only an identical predicate
 * implies a range over them. */
static bool odd_value(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_ARRAY:
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_REGEX:
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
    case BSON_TYPE_MINKEY:
    case BSON_TYPE_MAXKEY:
        return true;
    default:
        return is_nan(v);
    }
}

/* Does the query condition `qop qv` on P's path imply P? */
static bool cond_implies(const pf_pred *P, pf_op qop, const bson_value_t *qv)
{
    if (qv->value_type == BSON_TYPE_REGEX && qop != PF_TYPE && qop != PF_EXISTS)
        return false;
    switch (P->op) {
    case PF_EXISTS:
        if (qop == PF_EXISTS)
            return bv_truthy(qv);
        if (qop == PF_TYPE)
            return true;
        return qv->value_type != BSON_TYPE_NULL && qv->value_type != BSON_TYPE_UNDEFINED &&
               qv->value_type != BSON_TYPE_MINKEY && qv->value_type != BSON_TYPE_MAXKEY;
    case PF_TYPE:
        return qop == PF_TYPE && qv->value_type == P->v.value_type && bv_compare(qv, &P->v) == 0;
    case PF_EQ:
        return qop == PF_EQ && P->v.value_type != BSON_TYPE_REGEX &&
               bv_canonical_type(qv->value_type) == bv_canonical_type(P->v.value_type) &&
               bv_compare(qv, &P->v) == 0;
    default:
        break;
    }
    if (qop == PF_EXISTS || qop == PF_TYPE)
        return false;
    if (bv_canonical_type(qv->value_type) != bv_canonical_type(P->v.value_type))
        return false;
    int cmp = bv_compare(qv, &P->v);
    if (odd_value(qv) || odd_value(&P->v))
        return qop == P->op && cmp == 0 && !is_nan(qv) && !is_nan(&P->v);
    if (qop == P->op && cmp == 0)
        return true;
    switch (P->op) {
    case PF_LT:
        return (qop == PF_LT || qop == PF_LTE || qop == PF_EQ) && cmp < 0;
    case PF_LTE:
        return (qop == PF_LT || qop == PF_LTE || qop == PF_EQ) && cmp <= 0;
    case PF_GT:
        return (qop == PF_GT || qop == PF_GTE || qop == PF_EQ) && cmp > 0;
    case PF_GTE:
        return (qop == PF_GT || qop == PF_GTE || qop == PF_EQ) && cmp >= 0;
    default:
        return false;
    }
}

static bool op_of(const char *op, pf_op *out)
{
    static const struct {
        const char *name;
        pf_op op;
    } ops[] = {{"$eq", PF_EQ},   {"$lt", PF_LT},         {"$lte", PF_LTE},  {"$gt", PF_GT},
               {"$gte", PF_GTE}, {"$exists", PF_EXISTS}, {"$type", PF_TYPE}};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        if (strcmp(op, ops[i].name) == 0) {
            *out = ops[i].op;
            return true;
        }
    }
    return false;
}

/* Is there a conjunct of `q` (top-level fields, members of top-level $and, recursively) that
 * implies P? */
static bool query_implies(const bson_t *q, const pf_pred *P, int depth)
{
    bson_iter_t it;
    if (depth > 32 || !bson_iter_init(&it, q))
        return false;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        if (strcmp(k, "$and") == 0) {
            bson_t arr, el;
            bson_iter_t ai;
            if (!bv_as_doc(v, &arr) || !bson_iter_init(&ai, &arr))
                continue;
            while (bson_iter_next(&ai)) {
                if (bv_as_doc(bson_iter_value(&ai), &el) && query_implies(&el, P, depth + 1))
                    return true;
            }
            continue;
        }
        if (k[0] == '$' || strcmp(k, P->path) != 0 || v->value_type == BSON_TYPE_REGEX)
            continue;
        if (!is_operator_doc(v)) {
            if (cond_implies(P, PF_EQ, v))
                return true;
            continue;
        }
        bson_t ops;
        bson_iter_t oi;
        bv_as_doc(v, &ops);
        bson_iter_init(&oi, &ops);
        while (bson_iter_next(&oi)) {
            pf_op qop;
            if (op_of(bson_iter_key(&oi), &qop) && cond_implies(P, qop, bson_iter_value(&oi)))
                return true;
        }
    }
    return false;
}

bool partial_implied_by(const partial_filter *p, const bson_t *query)
{
    for (size_t i = 0; i < p->npred; i++) {
        if (!query_implies(query, &p->preds[i], 0))
            return false;
    }
    return true;
}
