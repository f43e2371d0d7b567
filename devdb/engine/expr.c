/*
 * expr.c: aggregation expression trees.
 *
 * expr_new keeps a private copy of the spec ({"": spec}) and builds a tree whose literals point
 * into it. Evaluation returns owned values (bson_value_copy semantics): simple and safe, at the
 * price of copying the values an expression touches, which is fine for the aggregation and
 * projection paths (they build new documents anyway).
 */
#include "engine/expr.h"
#include "base/bsonval.h"
#include "base/errors.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EXPR_DEPTH 100

typedef enum { E_LITERAL, E_PATH, E_DOC, E_ARRAY, E_OP } ekind;

typedef enum {
    OP_ADD,
    OP_SUBTRACT,
    OP_MULTIPLY,
    OP_DIVIDE,
    OP_MOD,
    OP_ABS,
    OP_EQ,
    OP_NE,
    OP_GT,
    OP_GTE,
    OP_LT,
    OP_LTE,
    OP_CMP,
    OP_AND,
    OP_OR,
    OP_NOT,
    OP_COND,
    OP_IFNULL,
    OP_CONCAT,
    OP_TOLOWER,
    OP_TOUPPER,
    OP_TOSTRING,
    OP_SIZE,
    OP_ARRAYELEMAT,
    OP_IN,
    OP_ISARRAY,
    OP_TYPE,
    OP_SUM,
    OP_AVG,
    OP_MIN,
    OP_MAX,
} eop;

static const struct {
    const char *name;
    eop op;
    int min_args, max_args; /* -1: any */
} ops[] = {
    {"$add", OP_ADD, 0, -1},
    {"$subtract", OP_SUBTRACT, 2, 2},
    {"$multiply", OP_MULTIPLY, 0, -1},
    {"$divide", OP_DIVIDE, 2, 2},
    {"$mod", OP_MOD, 2, 2},
    {"$abs", OP_ABS, 1, 1},
    {"$eq", OP_EQ, 2, 2},
    {"$ne", OP_NE, 2, 2},
    {"$gt", OP_GT, 2, 2},
    {"$gte", OP_GTE, 2, 2},
    {"$lt", OP_LT, 2, 2},
    {"$lte", OP_LTE, 2, 2},
    {"$cmp", OP_CMP, 2, 2},
    {"$and", OP_AND, 0, -1},
    {"$or", OP_OR, 0, -1},
    {"$not", OP_NOT, 1, 1},
    {"$cond", OP_COND, 3, 3},
    {"$ifNull", OP_IFNULL, 2, 2},
    {"$concat", OP_CONCAT, 0, -1},
    {"$toLower", OP_TOLOWER, 1, 1},
    {"$toUpper", OP_TOUPPER, 1, 1},
    {"$toString", OP_TOSTRING, 1, 1},
    {"$size", OP_SIZE, 1, 1},
    {"$arrayElemAt", OP_ARRAYELEMAT, 2, 2},
    {"$in", OP_IN, 2, 2},
    {"$isArray", OP_ISARRAY, 1, 1},
    {"$type", OP_TYPE, 1, 1},
    {"$sum", OP_SUM, 1, -1},
    {"$avg", OP_AVG, 1, -1},
    {"$min", OP_MIN, 1, -1},
    {"$max", OP_MAX, 1, -1},
};

typedef struct enode enode;
struct enode {
    ekind kind;
    bson_value_t lit;   /* E_LITERAL (points into the owning expr's copy) */
    char *path;         /* E_PATH: without '$'; "" for $$ROOT */
    eop op;             /* E_OP */
    const char *opname; /* E_OP */
    char **names;       /* E_DOC field names */
    enode **kids;
    size_t nkids;
};

struct expr {
    bson_t *copy;
    enode *root;
};

static void enode_free(enode *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->nkids; i++) {
        enode_free(n->kids[i]);
        if (n->names)
            free(n->names[i]);
    }
    free(n->kids);
    free(n->names);
    free(n->path);
    free(n);
}

void expr_free(expr *e)
{
    if (!e)
        return;
    enode_free(e->root);
    bson_destroy(e->copy);
    free(e);
}

static int add_kid(enode *n, enode *k, const char *name, bson_error_t *err)
{
    if (!k)
        return -1;
    enode **nk = realloc(n->kids, (n->nkids + 1) * sizeof *nk);
    if (!nk) {
        enode_free(k);
        return mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
    }
    n->kids = nk;
    if (name) {
        char **nn = realloc(n->names, (n->nkids + 1) * sizeof *nn);
        if (!nn) {
            enode_free(k);
            return mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
        }
        n->names = nn;
        n->names[n->nkids] = strdup(name);
        if (!n->names[n->nkids]) {
            enode_free(k);
            return mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
        }
    }
    n->kids[n->nkids++] = k;
    return 0;
}

static enode *parse(const bson_value_t *v, int depth, bson_error_t *err);

static enode *new_node(ekind kind, bson_error_t *err)
{
    enode *n = calloc(1, sizeof *n);
    if (!n)
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
    else
        n->kind = kind;
    return n;
}

static enode *parse_string(const bson_value_t *v, bson_error_t *err)
{
    const char *s = v->value.v_utf8.str;
    if (s[0] != '$') {
        enode *n = new_node(E_LITERAL, err);
        if (n)
            n->lit = *v;
        return n;
    }
    const char *path;
    if (s[1] == '$') {
        /* Variables: only ROOT and CURRENT. */
        const char *var = s + 2;
        size_t vl = strcspn(var, ".");
        if (!((vl == 4 && strncmp(var, "ROOT", 4) == 0) ||
              (vl == 7 && strncmp(var, "CURRENT", 7) == 0))) {
            mdb_error(err, 17276, "Use of undefined variable: %.*s", (int)vl, var);
            return NULL;
        }
        path = var[vl] == '.' ? var + vl + 1 : "";
    } else {
        path = s + 1;
        if (path[0] == '\0') {
            mdb_error(err, 16872, "'$' by itself is not a valid FieldPath");
            return NULL;
        }
    }
    enode *n = new_node(E_PATH, err);
    if (n && !(n->path = strdup(path))) {
        enode_free(n);
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
        return NULL;
    }
    return n;
}

/* Parses each element of the array `arr` into a kid of `n` (an array literal's elements or an
 * operator's arguments). On failure `n` keeps the kids parsed so far; the caller frees it. */
static int parse_elements(enode *n, const bson_value_t *arr, int depth, bson_error_t *err)
{
    bson_t d;
    bson_iter_t it;
    bv_as_doc(arr, &d);
    bson_iter_init(&it, &d);
    while (bson_iter_next(&it))
        if (add_kid(n, parse(bson_iter_value(&it), depth + 1, err), NULL, err) != 0)
            return -1;
    return 0;
}

static enode *parse(const bson_value_t *v, int depth, bson_error_t *err)
{
    if (depth > MAX_EXPR_DEPTH) {
        mdb_error(err, MDB_BAD_VALUE, "expression nested too deeply");
        return NULL;
    }
    bson_t d;
    bson_iter_t it;
    if (v->value_type == BSON_TYPE_UTF8)
        return parse_string(v, err);
    if (v->value_type == BSON_TYPE_ARRAY) {
        enode *n = new_node(E_ARRAY, err);
        if (n && parse_elements(n, v, depth, err) != 0) {
            enode_free(n);
            return NULL;
        }
        return n;
    }
    if (v->value_type != BSON_TYPE_DOCUMENT) {
        enode *n = new_node(E_LITERAL, err);
        if (n)
            n->lit = *v;
        return n;
    }
    bv_as_doc(v, &d);
    bson_iter_init(&it, &d);
    if (bson_iter_next(&it) && bson_iter_key(&it)[0] == '$') {
        const char *name = bson_iter_key(&it);
        if (bson_count_keys(&d) != 1) {
            mdb_error(err, 15983,
                      "An object representing an expression must have exactly one field: %s", name);
            return NULL;
        }
        const bson_value_t *arg = bson_iter_value(&it);
        if (strcmp(name, "$literal") == 0) {
            enode *n = new_node(E_LITERAL, err);
            if (n)
                n->lit = *arg;
            return n;
        }
        size_t k;
        for (k = 0; k < sizeof ops / sizeof ops[0]; k++)
            if (strcmp(ops[k].name, name) == 0)
                break;
        if (k == sizeof ops / sizeof ops[0]) {
            mdb_error(err, MDB_INVALID_PIPELINE_OPERATOR, "Unrecognized expression '%s'", name);
            return NULL;
        }
        enode *n = new_node(E_OP, err);
        if (!n)
            return NULL;
        n->op = ops[k].op;
        n->opname = ops[k].name;
        if (n->op == OP_COND && arg->value_type == BSON_TYPE_DOCUMENT) {
            static const char *const parts[] = {"if", "then", "else"};
            bson_t cd;
            bv_as_doc(arg, &cd);
            for (int i = 0; i < 3; i++) {
                bson_iter_t ci;
                if (!bson_iter_init_find(&ci, &cd, parts[i])) {
                    mdb_error(err, 17080, "Missing '%s' parameter to $cond", parts[i]);
                    enode_free(n);
                    return NULL;
                }
                if (add_kid(n, parse(bson_iter_value(&ci), depth + 1, err), NULL, err) != 0) {
                    enode_free(n);
                    return NULL;
                }
            }
            return n;
        }
        if (arg->value_type == BSON_TYPE_ARRAY) {
            if (parse_elements(n, arg, depth, err) != 0) {
                enode_free(n);
                return NULL;
            }
        } else if (add_kid(n, parse(arg, depth + 1, err), NULL, err) != 0) {
            enode_free(n);
            return NULL;
        }
        int nargs = (int)n->nkids;
        if (nargs < ops[k].min_args || (ops[k].max_args >= 0 && nargs > ops[k].max_args)) {
            if (ops[k].min_args == ops[k].max_args)
                mdb_error(err, 16020,
                          "Expression %s takes exactly %d arguments. %d were passed in.", name,
                          ops[k].min_args, nargs);
            else
                mdb_error(err, 16020,
                          "Expression %s takes at least %d arguments, and %d were passed in.", name,
                          ops[k].min_args, nargs);
            enode_free(n);
            return NULL;
        }
        return n;
    }
    /* A document of expressions. */
    enode *n = new_node(E_DOC, err);
    if (!n)
        return NULL;
    bson_iter_init(&it, &d);
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        if (key[0] == '$' || strchr(key, '.')) {
            mdb_error(err, 16412, "FieldPath field names may not contain '.' or start with '$': %s",
                      key);
            enode_free(n);
            return NULL;
        }
        if (add_kid(n, parse(bson_iter_value(&it), depth + 1, err), key, err) != 0) {
            enode_free(n);
            return NULL;
        }
    }
    return n;
}

expr *expr_new(const bson_value_t *spec, bson_error_t *err)
{
    expr *e = calloc(1, sizeof *e);
    bson_iter_t it;
    if (!e || !(e->copy = bson_new())) {
        free(e);
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
        return NULL;
    }
    bson_append_value(e->copy, "", 0, spec);
    bson_iter_init(&it, e->copy);
    bson_iter_next(&it);
    e->root = parse(bson_iter_value(&it), 0, err);
    if (!e->root) {
        expr_free(e);
        return NULL;
    }
    return e;
}

bool expr_is_path(const expr *e, const char **path)
{
    if (e->root->kind != E_PATH || e->root->path[0] == '\0')
        return false;
    *path = e->root->path;
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Evaluation
 * ------------------------------------------------------------------------------------------- */

static void set_missing(bson_value_t *out)
{
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_EOD;
}

static void release(bson_value_t *v)
{
    if (v->value_type != BSON_TYPE_EOD)
        bson_value_destroy(v);
    set_missing(v);
}

static void copy_value(const bson_value_t *src, bson_value_t *out)
{
    bson_value_copy(src, out);
}

/* Turns the document built in `b` into the owned value *out of type `type` (document or array)
 * and destroys `b`. */
static void take_doc(bson_t *b, bson_type_t type, bson_value_t *out)
{
    out->value_type = type;
    out->value.v_doc.data_len = b->len;
    out->value.v_doc.data = bson_malloc(b->len);
    memcpy(out->value.v_doc.data, bson_get_data(b), b->len);
    bson_destroy(b);
}

/* Aggregation path lookup from a value; appends into arr when in array mode. */
static void path_get(const bson_value_t *v, const char *path, bson_value_t *out, int depth)
{
    set_missing(out);
    if (depth > 200)
        return; /* nested arrays deeper than MongoDB allows: missing */
    if (*path == '\0') {
        copy_value(v, out);
        return;
    }
    const char *dot = strchr(path, '.');
    size_t len = dot ? (size_t)(dot - path) : strlen(path);
    const char *rest = dot ? dot + 1 : "";
    bson_t d;
    bson_iter_t it;
    if (v->value_type == BSON_TYPE_DOCUMENT) {
        bv_as_doc(v, &d);
        if (bson_iter_init(&it, &d) && bson_iter_find_w_len(&it, path, (int)len))
            path_get(bson_iter_value(&it), rest, out, depth + 1);
        return;
    }
    if (v->value_type == BSON_TYPE_ARRAY) {
        bson_t arr = BSON_INITIALIZER;
        uint32_t i = 0;
        bv_as_doc(v, &d);
        bson_iter_init(&it, &d);
        while (bson_iter_next(&it)) {
            const bson_value_t *e = bson_iter_value(&it);
            if (e->value_type != BSON_TYPE_DOCUMENT && e->value_type != BSON_TYPE_ARRAY)
                continue;
            bson_value_t r;
            path_get(e, path, &r, depth + 1);
            if (r.value_type != BSON_TYPE_EOD) {
                char key[16];
                const char *k;
                bson_uint32_to_string(i++, &k, key, sizeof key);
                bson_append_value(&arr, k, -1, &r);
                release(&r);
            }
        }
        take_doc(&arr, BSON_TYPE_ARRAY, out);
    }
}

static int eval(const enode *n, const bson_t *root, bson_value_t *out, bson_error_t *err);

static bool nullish(const bson_value_t *v)
{
    return v->value_type == BSON_TYPE_EOD || v->value_type == BSON_TYPE_NULL ||
           v->value_type == BSON_TYPE_UNDEFINED;
}

static void set_bool(bson_value_t *out, bool b)
{
    out->value_type = BSON_TYPE_BOOL;
    out->value.v_bool = b;
}

static void set_null(bson_value_t *out)
{
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_NULL;
}

static void set_string(bson_value_t *out, const char *s, size_t len)
{
    out->value_type = BSON_TYPE_UTF8;
    out->value.v_utf8.str = bson_malloc(len + 1);
    memcpy(out->value.v_utf8.str, s, len);
    out->value.v_utf8.str[len] = '\0';
    out->value.v_utf8.len = (uint32_t)len;
}

/* acc = acc op b for two numbers, with aggregation's typing: integers stay integers (int32
 * while they fit) until the int64 result overflows, which gives a double, as does any double
 * or decimal128 operand. */
static void num_arith(bv_arith_op op, bson_value_t *acc, const bson_value_t *b)
{
    if (!bv_is_float(acc->value_type) && !bv_is_float(b->value_type) &&
        bv_int_arith(op, acc, b, acc))
        return;
    double x = bv_as_double(acc), y = bv_as_double(b);
    acc->value_type = BSON_TYPE_DOUBLE;
    acc->value.v_double = op == BV_MUL ? x * y : x + y;
}

void expr_num_add(bson_value_t *acc, const bson_value_t *b)
{
    if (!bv_is_number(b->value_type))
        return;
    if (acc->value_type == BSON_TYPE_EOD || !bv_is_number(acc->value_type)) {
        acc->value_type = BSON_TYPE_INT32;
        acc->value.v_int32 = 0;
    }
    num_arith(BV_ADD, acc, b);
}

/* Evaluates all kids into a new array of values (caller releases each and frees). */
static int eval_args(const enode *n, const bson_t *root, bson_value_t *vals, bson_error_t *err)
{
    for (size_t i = 0; i < n->nkids; i++) {
        if (eval(n->kids[i], root, &vals[i], err) != 0) {
            for (size_t j = 0; j < i; j++)
                release(&vals[j]);
            return -1;
        }
    }
    return 0;
}

/* For $sum/$avg/$min/$max with one argument: the elements of an array argument, else the
 * value itself. Calls f on each. */
typedef void (*each_fn)(const bson_value_t *v, void *ctx);
static void for_each_operand(const bson_value_t *vals, size_t n, each_fn f, void *ctx)
{
    if (n == 1 && vals[0].value_type == BSON_TYPE_ARRAY) {
        bson_t d;
        bson_iter_t it;
        bv_as_doc(&vals[0], &d);
        bson_iter_init(&it, &d);
        while (bson_iter_next(&it))
            f(bson_iter_value(&it), ctx);
        return;
    }
    for (size_t i = 0; i < n; i++)
        f(&vals[i], ctx);
}

typedef struct {
    bson_value_t acc;
    size_t count;
    int dir;
    const bson_value_t *best;
} fold_ctx;

static void fold_sum(const bson_value_t *v, void *ctx)
{
    fold_ctx *c = ctx;
    if (bv_is_number(v->value_type)) {
        expr_num_add(&c->acc, v);
        c->count++;
    }
}

static void fold_minmax(const bson_value_t *v, void *ctx)
{
    fold_ctx *c = ctx;
    if (nullish(v))
        return;
    if (!c->best || bv_compare(v, c->best) * c->dir > 0)
        c->best = v;
}

static int eval_op(const enode *n, const bson_t *root, bson_value_t *out, bson_error_t *err)
{
    bson_value_t stackv[8];
    bson_value_t *vals = n->nkids <= 8 ? stackv : calloc(n->nkids, sizeof *vals);
    int rc = -1;
    set_missing(out);
    if (!vals)
        return mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
    /* $cond, $and, $or and $ifNull evaluate lazily. */
    if (n->op == OP_COND) {
        bson_value_t c;
        if (eval(n->kids[0], root, &c, err) != 0)
            goto done_nofree;
        bool t = bv_truthy(&c);
        release(&c);
        rc = eval(n->kids[t ? 1 : 2], root, out, err);
        goto done_nofree;
    }
    if (n->op == OP_AND || n->op == OP_OR) {
        bool want = n->op == OP_OR;
        for (size_t i = 0; i < n->nkids; i++) {
            bson_value_t c;
            if (eval(n->kids[i], root, &c, err) != 0)
                goto done_nofree;
            bool t = bv_truthy(&c);
            release(&c);
            if (t == want) {
                set_bool(out, want);
                rc = 0;
                goto done_nofree;
            }
        }
        set_bool(out, !want);
        rc = 0;
        goto done_nofree;
    }
    if (n->op == OP_IFNULL) {
        if (eval(n->kids[0], root, out, err) != 0)
            goto done_nofree;
        if (!nullish(out)) {
            rc = 0;
            goto done_nofree;
        }
        release(out);
        rc = eval(n->kids[1], root, out, err);
        goto done_nofree;
    }
    if (eval_args(n, root, vals, err) != 0)
        goto done_nofree;
    switch (n->op) {
    case OP_ADD:
    case OP_MULTIPLY: {
        bson_value_t acc = {.value_type = BSON_TYPE_INT32};
        acc.value.v_int32 = n->op == OP_ADD ? 0 : 1;
        bool date = false;
        int64_t date_ms = 0;
        for (size_t i = 0; i < n->nkids; i++) {
            if (nullish(&vals[i])) {
                set_null(out);
                rc = 0;
                goto done;
            }
            if (n->op == OP_ADD && vals[i].value_type == BSON_TYPE_DATE_TIME && !date) {
                date = true;
                date_ms = vals[i].value.v_datetime;
                continue;
            }
            if (!bv_is_number(vals[i].value_type)) {
                mdb_error(err, n->op == OP_ADD ? 16554 : 16555,
                          "%s only supports numeric or date types, not %s", n->opname,
                          bv_type_name(vals[i].value_type));
                goto done;
            }
            if (n->op == OP_ADD)
                expr_num_add(&acc, &vals[i]);
            else
                num_arith(BV_MUL, &acc, &vals[i]);
        }
        if (date) {
            out->value_type = BSON_TYPE_DATE_TIME;
            out->value.v_datetime = date_ms + (int64_t)llround(bv_as_double(&acc));
        } else {
            *out = acc;
        }
        rc = 0;
        break;
    }
    case OP_SUBTRACT:
    case OP_DIVIDE:
    case OP_MOD: {
        bson_value_t *a = &vals[0], *b = &vals[1];
        if (nullish(a) || nullish(b)) {
            set_null(out);
            rc = 0;
            break;
        }
        if (n->op == OP_SUBTRACT && a->value_type == BSON_TYPE_DATE_TIME) {
            if (b->value_type == BSON_TYPE_DATE_TIME) {
                out->value_type = BSON_TYPE_INT64;
                out->value.v_int64 = a->value.v_datetime - b->value.v_datetime;
            } else if (bv_is_number(b->value_type)) {
                out->value_type = BSON_TYPE_DATE_TIME;
                out->value.v_datetime = a->value.v_datetime - (int64_t)llround(bv_as_double(b));
            } else {
                mdb_error(err, 16556, "cant $subtract a%s from a date",
                          bv_type_name(b->value_type));
                break;
            }
            rc = 0;
            break;
        }
        if (!bv_is_number(a->value_type) || !bv_is_number(b->value_type)) {
            mdb_error(err, n->op == OP_SUBTRACT ? 16556 : (n->op == OP_DIVIDE ? 16609 : 16611),
                      "%s only supports numeric types, not %s and %s", n->opname,
                      bv_type_name(a->value_type), bv_type_name(b->value_type));
            break;
        }
        if (n->op == OP_DIVIDE) {
            double y = bv_as_double(b);
            if (y == 0) {
                mdb_error(err, 16608, "can't $divide by zero");
                break;
            }
            out->value_type = BSON_TYPE_DOUBLE;
            out->value.v_double = bv_as_double(a) / y;
            rc = 0;
            break;
        }
        if (n->op == OP_MOD) {
            bool ints = !bv_is_float(a->value_type) && !bv_is_float(b->value_type);
            if (bv_as_double(b) == 0) {
                mdb_error(err, 16610, "can't $mod by zero");
                break;
            }
            if (ints) {
                int64_t x = bv_as_int64(a), y = bv_as_int64(b);
                int64_t r = y == -1 ? 0 : x % y;
                if (a->value_type == BSON_TYPE_INT32 && b->value_type == BSON_TYPE_INT32) {
                    out->value_type = BSON_TYPE_INT32;
                    out->value.v_int32 = (int32_t)r;
                } else {
                    out->value_type = BSON_TYPE_INT64;
                    out->value.v_int64 = r;
                }
            } else {
                out->value_type = BSON_TYPE_DOUBLE;
                out->value.v_double = fmod(bv_as_double(a), bv_as_double(b));
            }
            rc = 0;
            break;
        }
        /* subtract numbers: a + (-b) */
        bson_value_t neg = *b;
        if (neg.value_type == BSON_TYPE_INT32 && neg.value.v_int32 != INT32_MIN)
            neg.value.v_int32 = -neg.value.v_int32;
        else if (neg.value_type == BSON_TYPE_INT64 && neg.value.v_int64 != INT64_MIN)
            neg.value.v_int64 = -neg.value.v_int64;
        else {
            neg.value_type = BSON_TYPE_DOUBLE;
            neg.value.v_double = -bv_as_double(b);
        }
        *out = *a;
        expr_num_add(out, &neg);
        rc = 0;
        break;
    }
    case OP_ABS:
        if (nullish(&vals[0])) {
            set_null(out);
        } else if (!bv_is_number(vals[0].value_type)) {
            mdb_error(err, 28765, "$abs only supports numeric types, not %s",
                      bv_type_name(vals[0].value_type));
            break;
        } else {
            *out = vals[0];
            if (out->value_type == BSON_TYPE_INT32 && out->value.v_int32 < 0) {
                if (out->value.v_int32 == INT32_MIN) {
                    out->value_type = BSON_TYPE_INT64;
                    out->value.v_int64 = -(int64_t)INT32_MIN;
                } else {
                    out->value.v_int32 = -out->value.v_int32;
                }
            } else if (out->value_type == BSON_TYPE_INT64 && out->value.v_int64 < 0) {
                out->value.v_int64 = -out->value.v_int64;
            } else if (out->value_type != BSON_TYPE_INT32 && out->value_type != BSON_TYPE_INT64) {
                out->value_type = BSON_TYPE_DOUBLE;
                out->value.v_double = fabs(bv_as_double(&vals[0]));
            }
        }
        rc = 0;
        break;
    case OP_EQ:
    case OP_NE:
    case OP_GT:
    case OP_GTE:
    case OP_LT:
    case OP_LTE:
    case OP_CMP: {
        int c = bv_compare(&vals[0], &vals[1]);
        if (n->op == OP_CMP) {
            out->value_type = BSON_TYPE_INT32;
            out->value.v_int32 = (c > 0) - (c < 0);
        } else {
            bool r = n->op == OP_EQ    ? c == 0
                     : n->op == OP_NE  ? c != 0
                     : n->op == OP_GT  ? c > 0
                     : n->op == OP_GTE ? c >= 0
                     : n->op == OP_LT  ? c < 0
                                       : c <= 0;
            set_bool(out, r);
        }
        rc = 0;
        break;
    }
    case OP_NOT:
        set_bool(out, !bv_truthy(&vals[0]));
        rc = 0;
        break;
    case OP_CONCAT: {
        size_t total = 0;
        for (size_t i = 0; i < n->nkids; i++) {
            if (nullish(&vals[i])) {
                set_null(out);
                rc = 0;
                goto done;
            }
            if (vals[i].value_type != BSON_TYPE_UTF8) {
                mdb_error(err, 16702, "$concat only supports strings, not %s",
                          bv_type_name(vals[i].value_type));
                goto done;
            }
            total += vals[i].value.v_utf8.len;
        }
        char *s = bson_malloc(total + 1);
        size_t w = 0;
        for (size_t i = 0; i < n->nkids; i++) {
            memcpy(s + w, vals[i].value.v_utf8.str, vals[i].value.v_utf8.len);
            w += vals[i].value.v_utf8.len;
        }
        s[w] = '\0';
        out->value_type = BSON_TYPE_UTF8;
        out->value.v_utf8.str = s;
        out->value.v_utf8.len = (uint32_t)w;
        rc = 0;
        break;
    }
    case OP_TOLOWER:
    case OP_TOUPPER:
    case OP_TOSTRING: {
        const bson_value_t *v = &vals[0];
        char buf[64];
        if (nullish(v)) {
            if (n->op == OP_TOSTRING)
                set_null(out);
            else
                set_string(out, "", 0);
            rc = 0;
            break;
        }
        if (v->value_type == BSON_TYPE_UTF8) {
            set_string(out, v->value.v_utf8.str, v->value.v_utf8.len);
            for (uint32_t i = 0; n->op != OP_TOSTRING && i < out->value.v_utf8.len; i++) {
                unsigned char ch = (unsigned char)out->value.v_utf8.str[i];
                out->value.v_utf8.str[i] = (char)(n->op == OP_TOLOWER ? tolower(ch) : toupper(ch));
            }
            rc = 0;
            break;
        }
        int len;
        switch (v->value_type) {
        case BSON_TYPE_INT32:
            len = snprintf(buf, sizeof buf, "%d", v->value.v_int32);
            break;
        case BSON_TYPE_INT64:
            len = snprintf(buf, sizeof buf, "%" PRId64, v->value.v_int64);
            break;
        case BSON_TYPE_DOUBLE:
            len = snprintf(buf, sizeof buf, "%.15g", v->value.v_double);
            break;
        case BSON_TYPE_BOOL:
            len = snprintf(buf, sizeof buf, "%s", v->value.v_bool ? "true" : "false");
            break;
        case BSON_TYPE_OID:
            bson_oid_to_string(&v->value.v_oid, buf);
            len = 24;
            break;
        default:
            mdb_error(err, 16007, "%s cannot convert a value of type %s", n->opname,
                      bv_type_name(v->value_type));
            goto done;
        }
        set_string(out, buf, (size_t)len);
        rc = 0;
        break;
    }
    case OP_SIZE:
        if (vals[0].value_type != BSON_TYPE_ARRAY) {
            mdb_error(err, 17124,
                      "The argument to $size must be an array. Type of argument was: %s",
                      bv_type_name(vals[0].value_type));
            break;
        } else {
            bson_t d;
            bv_as_doc(&vals[0], &d);
            out->value_type = BSON_TYPE_INT32;
            out->value.v_int32 = (int32_t)bson_count_keys(&d);
            rc = 0;
        }
        break;
    case OP_ARRAYELEMAT: {
        if (nullish(&vals[0]) || nullish(&vals[1])) {
            set_null(out);
            rc = 0;
            break;
        }
        int64_t idx;
        if (vals[0].value_type != BSON_TYPE_ARRAY) {
            mdb_error(err, 28689, "$arrayElemAt's first argument must be an array, but is %s",
                      bv_type_name(vals[0].value_type));
            break;
        }
        if (!bv_is_number(vals[1].value_type) ||
            bv_as_double(&vals[1]) != floor(bv_as_double(&vals[1]))) {
            mdb_error(err, 28690,
                      "$arrayElemAt's second argument must be a numeric value, but is %s",
                      bv_type_name(vals[1].value_type));
            break;
        }
        idx = (int64_t)bv_as_double(&vals[1]);
        bson_t d;
        bv_as_doc(&vals[0], &d);
        int64_t count = (int64_t)bson_count_keys(&d);
        if (idx < 0)
            idx += count;
        rc = 0;
        if (idx < 0 || idx >= count)
            break; /* missing */
        bson_iter_t it;
        bson_iter_init(&it, &d);
        for (int64_t i = 0; bson_iter_next(&it); i++)
            if (i == idx) {
                copy_value(bson_iter_value(&it), out);
                break;
            }
        break;
    }
    case OP_IN: {
        if (vals[1].value_type != BSON_TYPE_ARRAY) {
            mdb_error(err, 40081, "$in requires an array as a second argument, found: %s",
                      bv_type_name(vals[1].value_type));
            break;
        }
        bson_t d;
        bson_iter_t it;
        bool found = false;
        bv_as_doc(&vals[1], &d);
        bson_iter_init(&it, &d);
        while (!found && bson_iter_next(&it))
            found = bv_compare(bson_iter_value(&it), &vals[0]) == 0;
        set_bool(out, found);
        rc = 0;
        break;
    }
    case OP_ISARRAY:
        set_bool(out, vals[0].value_type == BSON_TYPE_ARRAY);
        rc = 0;
        break;
    case OP_TYPE: {
        const char *t = bv_type_name(vals[0].value_type);
        set_string(out, t, strlen(t));
        rc = 0;
        break;
    }
    case OP_SUM:
    case OP_AVG: {
        fold_ctx c = {.acc = {.value_type = BSON_TYPE_INT32}};
        for_each_operand(vals, n->nkids, fold_sum, &c);
        if (n->op == OP_SUM) {
            *out = c.acc;
        } else if (c.count == 0) {
            set_null(out);
        } else {
            out->value_type = BSON_TYPE_DOUBLE;
            out->value.v_double = bv_as_double(&c.acc) / (double)c.count;
        }
        rc = 0;
        break;
    }
    case OP_MIN:
    case OP_MAX: {
        fold_ctx c = {.dir = n->op == OP_MAX ? 1 : -1};
        for_each_operand(vals, n->nkids, fold_minmax, &c);
        if (c.best)
            copy_value(c.best, out);
        else
            set_null(out);
        rc = 0;
        break;
    }
    default:
        break;
    }
done:
    for (size_t i = 0; i < n->nkids; i++)
        release(&vals[i]);
done_nofree:
    if (vals != stackv)
        free(vals);
    return rc;
}

static int eval(const enode *n, const bson_t *root, bson_value_t *out, bson_error_t *err)
{
    set_missing(out);
    switch (n->kind) {
    case E_LITERAL:
        copy_value(&n->lit, out);
        return 0;
    case E_PATH: {
        bson_value_t rootv = {.value_type = BSON_TYPE_DOCUMENT};
        rootv.value.v_doc.data = (uint8_t *)bson_get_data(root);
        rootv.value.v_doc.data_len = root->len;
        path_get(&rootv, n->path, out, 0);
        return 0;
    }
    case E_DOC:
    case E_ARRAY: {
        bson_t b = BSON_INITIALIZER;
        for (size_t i = 0; i < n->nkids; i++) {
            bson_value_t v;
            if (eval(n->kids[i], root, &v, err) != 0) {
                bson_destroy(&b);
                return -1;
            }
            char key[16];
            const char *k = NULL;
            if (n->kind == E_ARRAY) {
                bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
                if (v.value_type == BSON_TYPE_EOD)
                    v.value_type = BSON_TYPE_NULL; /* missing in an array becomes null */
            } else {
                k = n->names[i];
            }
            if (v.value_type != BSON_TYPE_EOD)
                bson_append_value(&b, k, -1, &v);
            release(&v);
        }
        take_doc(&b, n->kind == E_ARRAY ? BSON_TYPE_ARRAY : BSON_TYPE_DOCUMENT, out);
        return 0;
    }
    case E_OP:
        return eval_op(n, root, out, err);
    }
    return 0;
}

int expr_eval(const expr *e, const bson_t *root, bson_value_t *out, bson_error_t *err)
{
    return eval(e->root, root, out, err);
}
