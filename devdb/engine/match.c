/*
 * match.c: query filter compilation and evaluation.
 *
 * matcher_new copies the filter and compiles it into a tree of nodes:
 *   - logical nodes (AND, OR, NOR) over child nodes; the root is an AND of the top-level
 *     conditions;
 *   - field nodes: a dotted path and one operator (EQ, GT.., IN, REGEX, TYPE, MOD, EXISTS, SIZE,
 *     ELEM_OBJ, ELEM_VAL); NOT and ALL are field nodes whose children are field nodes on the
 *     same path.
 * Operator values point into the matcher's copy of the filter, so compilation copies nothing
 * else; regexes are compiled once with PCRE2 (UTF mode). A flat filter (top-level fields with
 * values or $eq/$ne/$gt/$gte/$lt/$lte, as the receipts worker sends 500 per command) is
 * compiled by flat_compile into the same tree without allocating beyond the matcher itself.
 *
 * Evaluation walks the document with bv_path_visit (no copies). "Value" operators (EQ, the
 * comparisons, IN, REGEX, TYPE, MOD) are tried against every value the path reaches, including
 * each element of a reached array and an EOD marker when the path reaches nothing (so {a: null}
 * matches a missing a); structural operators (EXISTS, SIZE, ELEM_*) look at the reached values
 * themselves, not at array elements. Inside $elemMatch's value form the same operators run on
 * one element value (node_eval_value).
 *
 * Regexes are JIT-compiled when PCRE2 can; matching uses one PCRE2 match-data block per thread
 * (created on first use, freed at thread exit), so a compiled matcher stays shareable between
 * threads and nothing allocates per document.
 */
#include "engine/match.h"
#include "base/bsonval.h"
#include "base/errors.h"

#include <math.h>
#include <pcre2.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 100

typedef enum {
    N_AND,
    N_OR,
    N_NOR,
    N_NOT,
    N_ALL,
    N_EQ,
    N_GT,
    N_GTE,
    N_LT,
    N_LTE,
    N_IN,
    N_REGEX,
    N_TYPE,
    N_MOD,
    N_EXISTS,
    N_SIZE,
    N_ELEM_OBJ,
    N_ELEM_VAL,
    N_FALSE, /* matches nothing, e.g. $all: [] */
} node_op;

typedef struct mnode mnode;
struct mnode {
    node_op op;
    const char *path; /* field nodes; NULL inside $elemMatch value form; points into `paths` */
    bson_value_t val; /* EQ, comparisons: the operand (points into the filter copy) */
    mnode **kids;
    size_t nkids;
    /* REGEX */
    pcre2_code *re;
    const char *re_src, *re_opts; /* for equality with BSON regex values */
    /* IN */
    bson_value_t *vals;
    size_t nvals;
    bson_value_t *svals; /* vals sorted by bv_compare when there are many (binary search) */
    mnode **res;         /* N_REGEX nodes */
    size_t nres;
    /* TYPE: bit per BSON type byte (0..255), plus number */
    uint8_t types[32];
    bool type_number;
    /* EXISTS */
    bool exists;
    /* SIZE */
    int64_t size;
    /* MOD */
    int64_t div, rem;
    char *owned_path;
    bool simple;       /* path has one component: evaluated without bv_path_visit */
    int plen;          /* strlen(path) when simple */
    bool in_slab;      /* one of its matcher's inline nodes: not freed on its own */
    bool kids_in_slab; /* kids points into its matcher's kid slab: not freed on its own */
};

/* A matcher is one allocation: the struct, the first MATCH_SLAB nodes (enough for the usual
 * {_id: x, status: "PENDING", campaign_id: c}) and a copy of the filter's bytes behind it. A
 * receipts update compiles ~500 of them per command; one (per-thread cached) allocation each
 * instead of a calloc per node plus libbson's 128-byte-aligned bson_t copy keeps malloc out of
 * the profile. */
#define MATCH_SLAB 8
struct matcher {
    mnode *root;
    uint32_t flen;
    size_t nslab, nkslab;
    bool flat; /* built by flat_compile: its nodes own nothing, matcher_free skips them */
    mnode slab[MATCH_SLAB];
    mnode *kslab[MATCH_SLAB]; /* kid arrays of a flat filter's nodes (flat_compile) */
    uint8_t fdata[];          /* the filter (flen bytes) */
};

/* The matcher whose nodes are being built on this thread (matcher_new), or NULL. */
static _Thread_local matcher *tl_building;

/* ---------------------------------------------------------------------------------------------
 * Node construction
 * ------------------------------------------------------------------------------------------- */

/* $in lists longer than this get a sorted copy for binary search. */
#define IN_SORT_MIN 8

static int cmp_value_qsort(const void *a, const void *b)
{
    return bv_compare(a, b);
}

static void node_free(mnode *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->nkids; i++)
        node_free(n->kids[i]);
    if (!n->kids_in_slab)
        free(n->kids);
    for (size_t i = 0; i < n->nres; i++)
        node_free(n->res[i]);
    free(n->res);
    free(n->vals);
    free(n->svals);
    if (n->re)
        pcre2_code_free(n->re);
    free(n->owned_path);
    if (!n->in_slab)
        free(n);
}

static mnode *node_new(node_op op, const char *path)
{
    matcher *b = tl_building;
    mnode *n;
    if (b && b->nslab < MATCH_SLAB) {
        n = &b->slab[b->nslab++];
        memset(n, 0, sizeof *n);
        n->in_slab = true;
    } else {
        n = calloc(1, sizeof *n);
    }
    if (n) {
        n->op = op;
        n->path = path;
        if (path && !strchr(path, '.') && strlen(path) < 1024) {
            n->simple = true;
            n->plen = (int)strlen(path);
        }
    }
    return n;
}

static int node_add(mnode *parent, mnode *kid, bson_error_t *err)
{
    if (!kid)
        return -1;
    mnode **k = realloc(parent->kids, (parent->nkids + 1) * sizeof *k);
    if (!k) {
        node_free(kid);
        return mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
    }
    parent->kids = k;
    parent->kids[parent->nkids++] = kid;
    return 0;
}

static bool starts_dollar(const char *k)
{
    return k[0] == '$';
}

/* Is this embedded document an operator document ({$gt: 1}) rather than a value? DBRefs
 * ({$ref, $id}) are values. */
static bool is_operator_doc(const bson_value_t *v)
{
    if (v->value_type != BSON_TYPE_DOCUMENT)
        return false;
    bson_t d;
    bson_iter_t it;
    if (!bv_as_doc(v, &d) || !bson_iter_init(&it, &d) || !bson_iter_next(&it))
        return false;
    const char *k = bson_iter_key(&it);
    return starts_dollar(k) && strcmp(k, "$ref") != 0 && strcmp(k, "$id") != 0 &&
           strcmp(k, "$db") != 0;
}

static mnode *regex_node(const char *path, const char *src, const char *opts, bson_error_t *err)
{
    uint32_t flags = PCRE2_UTF;
    for (const char *o = opts; *o; o++) {
        switch (*o) {
        case 'i':
            flags |= PCRE2_CASELESS;
            break;
        case 'm':
            flags |= PCRE2_MULTILINE;
            break;
        case 's':
            flags |= PCRE2_DOTALL;
            break;
        case 'x':
            flags |= PCRE2_EXTENDED;
            break;
        case 'u':
            break; /* MongoDB accepts and ignores 'u' */
        default:
            mdb_error(err, 51108, "invalid flag in regex options: %c", *o);
            return NULL;
        }
    }
    int ecode;
    PCRE2_SIZE eoff;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)src, PCRE2_ZERO_TERMINATED, flags, &ecode, &eoff, NULL);
    if (!re) {
        char msg[200];
        pcre2_get_error_message(ecode, (PCRE2_UCHAR *)msg, sizeof msg);
        mdb_error(err, 51091, "Regular expression is invalid: %s", msg);
        return NULL;
    }
    /* JIT makes per-document regex tests several times faster; without it (unsupported CPU,
     * no executable memory) pcre2_match interprets the pattern. */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    mnode *n = node_new(N_REGEX, path);
    if (!n) {
        pcre2_code_free(re);
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
        return NULL;
    }
    n->re = re;
    n->re_src = src;
    n->re_opts = opts;
    return n;
}

static int type_alias(const char *name, int *code)
{
    static const struct {
        const char *name;
        int code;
    } aliases[] = {
        {"double", 1},      {"string", 2},     {"object", 3},
        {"array", 4},       {"binData", 5},    {"undefined", 6},
        {"objectId", 7},    {"bool", 8},       {"date", 9},
        {"null", 10},       {"regex", 11},     {"dbPointer", 12},
        {"javascript", 13}, {"symbol", 14},    {"javascriptWithScope", 15},
        {"int", 16},        {"timestamp", 17}, {"long", 18},
        {"decimal", 19},    {"minKey", -1},    {"maxKey", 127},
    };
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strcmp(aliases[i].name, name) == 0) {
            *code = aliases[i].code;
            return 0;
        }
    return -1;
}

static int add_type(mnode *n, const bson_value_t *v, bson_error_t *err)
{
    int code;
    if (v->value_type == BSON_TYPE_UTF8) {
        if (strcmp(v->value.v_utf8.str, "number") == 0) {
            n->type_number = true;
            return 0;
        }
        if (type_alias(v->value.v_utf8.str, &code) != 0)
            return mdb_error(err, MDB_BAD_VALUE, "Unknown type name alias: %s",
                             v->value.v_utf8.str);
    } else if (bv_is_number(v->value_type)) {
        double d = bv_as_double(v);
        if (d != floor(d))
            return mdb_error(err, MDB_BAD_VALUE, "Invalid numerical type code: %g", d);
        code = (int)d;
        bool ok = (code >= 1 && code <= 19) || code == -1 || code == 127;
        if (!ok)
            return mdb_error(err, MDB_BAD_VALUE, "Invalid numerical type code: %d", code);
    } else {
        return mdb_error(err, MDB_BAD_VALUE, "type must be represented as a number or a string");
    }
    int byte = code == -1 ? 0xff : code;
    n->types[byte / 8] |= (uint8_t)(1u << (byte % 8));
    return 0;
}

static bool get_int64(const bson_value_t *v, int64_t *out)
{
    if (!bv_is_number(v->value_type))
        return false;
    double d = bv_as_double(v);
    if (v->value_type == BSON_TYPE_INT64) {
        *out = v->value.v_int64;
        return true;
    }
    if (isnan(d) || d != floor(d) || d > 9.2e18 || d < -9.2e18)
        return false;
    *out = (int64_t)d;
    return true;
}

static mnode *parse_filter(const bson_t *filter, int depth, bson_error_t *err);
static mnode *parse_field(const char *path, const bson_value_t *v, int depth, bson_error_t *err);

/* Parses the operator document `ops` ({$gt: 1, $lt: 5}) on `path` into `parent` (an AND-like
 * node). */
static int parse_ops(mnode *parent, const char *path, const bson_value_t *ops, int depth,
                     bson_error_t *err);

static mnode *parse_elem_match(const char *path, const bson_value_t *v, int depth,
                               bson_error_t *err)
{
    if (v->value_type != BSON_TYPE_DOCUMENT) {
        mdb_error(err, MDB_BAD_VALUE, "$elemMatch needs an Object");
        return NULL;
    }
    bson_t d;
    bson_iter_t it;
    bv_as_doc(v, &d);
    bool value_form = false;
    if (bson_iter_init(&it, &d) && bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        value_form = starts_dollar(k) && strcmp(k, "$and") != 0 && strcmp(k, "$or") != 0 &&
                     strcmp(k, "$nor") != 0 && strcmp(k, "$where") != 0 &&
                     strcmp(k, "$expr") != 0 && strcmp(k, "$comment") != 0;
    }
    mnode *n = node_new(value_form ? N_ELEM_VAL : N_ELEM_OBJ, path);
    if (!n) {
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
        return NULL;
    }
    if (value_form) {
        if (parse_ops(n, NULL, v, depth + 1, err) != 0) {
            node_free(n);
            return NULL;
        }
    } else {
        mnode *sub = parse_filter(&d, depth + 1, err);
        if (!sub || node_add(n, sub, err) != 0) {
            node_free(n);
            return NULL;
        }
    }
    return n;
}

static mnode *parse_op(const char *path, const char *op, const bson_value_t *v, int depth,
                       bson_error_t *err)
{
    mnode *n = NULL;
    bson_t d;
    bson_iter_t it;
    node_op cmp = N_EQ;
    if (strcmp(op, "$eq") == 0)
        cmp = N_EQ;
    else if (strcmp(op, "$gt") == 0)
        cmp = N_GT;
    else if (strcmp(op, "$gte") == 0)
        cmp = N_GTE;
    else if (strcmp(op, "$lt") == 0)
        cmp = N_LT;
    else if (strcmp(op, "$lte") == 0)
        cmp = N_LTE;
    else
        cmp = N_AND; /* not a comparison */
    if (cmp != N_AND) {
        if (v->value_type == BSON_TYPE_REGEX && cmp != N_EQ) {
            mdb_error(err, MDB_BAD_VALUE, "Can't have RegEx as arg to predicate over field '%s'.",
                      path ? path : "");
            return NULL;
        }
        n = node_new(cmp, path);
        if (n)
            n->val = *v;
        goto out;
    }
    if (strcmp(op, "$ne") == 0) {
        if (v->value_type == BSON_TYPE_REGEX) {
            mdb_error(err, MDB_BAD_VALUE, "Can't have regex as arg to $ne.");
            return NULL;
        }
        n = node_new(N_NOT, path);
        mnode *eq = node_new(N_EQ, path);
        if (eq)
            eq->val = *v;
        if (n && node_add(n, eq, err) != 0) {
            node_free(n);
            return NULL;
        }
        goto out;
    }
    if (strcmp(op, "$in") == 0 || strcmp(op, "$nin") == 0) {
        if (v->value_type != BSON_TYPE_ARRAY) {
            mdb_error(err, MDB_BAD_VALUE, "%s needs an array", op);
            return NULL;
        }
        mnode *in = node_new(N_IN, path);
        if (!in)
            goto out;
        bv_as_doc(v, &d);
        uint32_t count = bson_count_keys(&d);
        in->vals = calloc(count ? count : 1, sizeof *in->vals);
        in->res = calloc(count ? count : 1, sizeof *in->res);
        if (!in->vals || !in->res) {
            node_free(in);
            goto out;
        }
        bson_iter_init(&it, &d);
        while (bson_iter_next(&it)) {
            const bson_value_t *e = bson_iter_value(&it);
            if (is_operator_doc(e)) {
                mdb_error(err, MDB_BAD_VALUE, "cannot nest $ under %s", op);
                node_free(in);
                return NULL;
            }
            if (e->value_type == BSON_TYPE_REGEX) {
                mnode *r = regex_node(path, e->value.v_regex.regex, e->value.v_regex.options, err);
                if (!r) {
                    node_free(in);
                    return NULL;
                }
                in->res[in->nres++] = r;
            } else {
                in->vals[in->nvals++] = *e;
            }
        }
        if (in->nvals > IN_SORT_MIN) {
            /* A long $in list (the receipts worker asks for 500 _ids at once) is searched
             * binary instead of linearly; without the copy the match stays linear. */
            in->svals = malloc(in->nvals * sizeof *in->svals);
            if (in->svals) {
                memcpy(in->svals, in->vals, in->nvals * sizeof *in->svals);
                qsort(in->svals, in->nvals, sizeof *in->svals, cmp_value_qsort);
            }
        }
        if (op[1] == 'i') {
            n = in;
        } else {
            n = node_new(N_NOT, path);
            if (n && node_add(n, in, err) != 0) {
                node_free(n);
                return NULL;
            }
            if (!n)
                node_free(in);
        }
        goto out;
    }
    if (strcmp(op, "$exists") == 0) {
        n = node_new(N_EXISTS, path);
        if (n) {
            /* trueValue(): false, 0, null and undefined are false. */
            switch (v->value_type) {
            case BSON_TYPE_BOOL:
                n->exists = v->value.v_bool;
                break;
            case BSON_TYPE_NULL:
            case BSON_TYPE_UNDEFINED:
                n->exists = false;
                break;
            case BSON_TYPE_INT32:
            case BSON_TYPE_INT64:
            case BSON_TYPE_DOUBLE:
            case BSON_TYPE_DECIMAL128:
                n->exists = bv_as_double(v) != 0;
                break;
            default:
                n->exists = true;
            }
        }
        goto out;
    }
    if (strcmp(op, "$type") == 0) {
        n = node_new(N_TYPE, path);
        if (!n)
            goto out;
        if (v->value_type == BSON_TYPE_ARRAY) {
            bv_as_doc(v, &d);
            bson_iter_init(&it, &d);
            while (bson_iter_next(&it))
                if (add_type(n, bson_iter_value(&it), err) != 0) {
                    node_free(n);
                    return NULL;
                }
        } else if (add_type(n, v, err) != 0) {
            node_free(n);
            return NULL;
        }
        goto out;
    }
    if (strcmp(op, "$size") == 0) {
        int64_t sz;
        if (!bv_is_number(v->value_type)) {
            mdb_error(err, MDB_BAD_VALUE, "$size needs a number");
            return NULL;
        }
        if (!get_int64(v, &sz)) {
            mdb_error(err, MDB_BAD_VALUE, "$size must be a whole number");
            return NULL;
        }
        if (sz < 0) {
            mdb_error(err, MDB_BAD_VALUE, "$size may not be negative");
            return NULL;
        }
        n = node_new(N_SIZE, path);
        if (n)
            n->size = sz;
        goto out;
    }
    if (strcmp(op, "$mod") == 0) {
        int64_t a, b;
        if (v->value_type != BSON_TYPE_ARRAY) {
            mdb_error(err, MDB_BAD_VALUE, "malformed mod, needs to be an array");
            return NULL;
        }
        bv_as_doc(v, &d);
        if (bson_count_keys(&d) != 2) {
            mdb_error(err, MDB_BAD_VALUE, "malformed mod, not enough elements");
            return NULL;
        }
        bson_iter_init(&it, &d);
        bson_iter_next(&it);
        bool ok = get_int64(bson_iter_value(&it), &a);
        bson_iter_next(&it);
        ok = ok && get_int64(bson_iter_value(&it), &b);
        if (!ok) {
            mdb_error(err, MDB_BAD_VALUE, "malformed mod, divisor and remainder must be numbers");
            return NULL;
        }
        if (a == 0) {
            mdb_error(err, MDB_BAD_VALUE, "divisor cannot be 0");
            return NULL;
        }
        n = node_new(N_MOD, path);
        if (n) {
            n->div = a;
            n->rem = b;
        }
        goto out;
    }
    if (strcmp(op, "$elemMatch") == 0)
        return parse_elem_match(path, v, depth, err);
    if (strcmp(op, "$all") == 0) {
        if (v->value_type != BSON_TYPE_ARRAY) {
            mdb_error(err, MDB_BAD_VALUE, "$all needs an array");
            return NULL;
        }
        bv_as_doc(v, &d);
        if (bson_count_keys(&d) == 0)
            return node_new(N_FALSE, path);
        n = node_new(N_ALL, path);
        if (!n)
            goto out;
        bson_iter_init(&it, &d);
        while (bson_iter_next(&it)) {
            const bson_value_t *e = bson_iter_value(&it);
            mnode *k;
            if (is_operator_doc(e)) {
                bson_t ed;
                bson_iter_t eit;
                bv_as_doc(e, &ed);
                bson_iter_init(&eit, &ed);
                bson_iter_next(&eit);
                if (strcmp(bson_iter_key(&eit), "$elemMatch") != 0) {
                    mdb_error(err, MDB_BAD_VALUE, "no $ expressions in $all");
                    node_free(n);
                    return NULL;
                }
                k = parse_elem_match(path, bson_iter_value(&eit), depth, err);
            } else if (e->value_type == BSON_TYPE_REGEX) {
                k = regex_node(path, e->value.v_regex.regex, e->value.v_regex.options, err);
            } else {
                k = node_new(N_EQ, path);
                if (k)
                    k->val = *e;
                else
                    mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
            }
            if (node_add(n, k, err) != 0) {
                node_free(n);
                return NULL;
            }
        }
        return n;
    }
    if (strcmp(op, "$not") == 0) {
        n = node_new(N_NOT, path);
        if (!n)
            goto out;
        if (v->value_type == BSON_TYPE_REGEX) {
            mnode *r = regex_node(path, v->value.v_regex.regex, v->value.v_regex.options, err);
            if (node_add(n, r, err) != 0) {
                node_free(n);
                return NULL;
            }
            return n;
        }
        if (v->value_type != BSON_TYPE_DOCUMENT) {
            node_free(n);
            mdb_error(err, MDB_BAD_VALUE, "$not needs a regex or a document");
            return NULL;
        }
        bv_as_doc(v, &d);
        if (bson_count_keys(&d) == 0) {
            node_free(n);
            mdb_error(err, MDB_BAD_VALUE, "$not cannot be empty");
            return NULL;
        }
        if (!is_operator_doc(v)) {
            node_free(n);
            mdb_error(err, MDB_BAD_VALUE, "unknown operator: %s",
                      bson_iter_init(&it, &d) && bson_iter_next(&it) ? bson_iter_key(&it) : "");
            return NULL;
        }
        if (parse_ops(n, path, v, depth + 1, err) != 0) {
            node_free(n);
            return NULL;
        }
        return n;
    }
    mdb_error(err, MDB_BAD_VALUE, "unknown operator: %s", op);
    return NULL;
out:
    if (!n)
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
    return n;
}

static int parse_ops(mnode *parent, const char *path, const bson_value_t *ops, int depth,
                     bson_error_t *err)
{
    if (depth > MAX_DEPTH)
        return mdb_error(err, MDB_BAD_VALUE, "exceeded maximum query tree depth of %d", MAX_DEPTH);
    bson_t d;
    bson_iter_t it;
    bv_as_doc(ops, &d);
    /* Copies: bson_iter_value points into the iterator, which moves on. */
    bson_value_t regex_v, options_v;
    const bson_value_t *regex = NULL, *options = NULL;
    bson_iter_init(&it, &d);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        if (!starts_dollar(k))
            return mdb_error(err, MDB_BAD_VALUE, "unknown operator: %s", k);
        if (strcmp(k, "$regex") == 0) {
            regex_v = *v;
            regex = &regex_v;
            continue;
        }
        if (strcmp(k, "$options") == 0) {
            options_v = *v;
            options = &options_v;
            continue;
        }
        if (node_add(parent, parse_op(path, k, v, depth, err), err) != 0)
            return -1;
    }
    if (options && !regex)
        return mdb_error(err, MDB_BAD_VALUE, "$options needs a $regex");
    if (regex) {
        const char *src, *opts = "";
        if (options) {
            if (options->value_type != BSON_TYPE_UTF8)
                return mdb_error(err, MDB_BAD_VALUE, "$options has to be a string");
            opts = options->value.v_utf8.str;
        }
        if (regex->value_type == BSON_TYPE_UTF8) {
            src = regex->value.v_utf8.str;
            if (strlen(src) != regex->value.v_utf8.len)
                return mdb_error(err, MDB_BAD_VALUE,
                                 "Regular expression cannot contain an embedded null byte");
        } else if (regex->value_type == BSON_TYPE_REGEX) {
            src = regex->value.v_regex.regex;
            if (options && regex->value.v_regex.options[0])
                return mdb_error(err, MDB_BAD_VALUE, "options set in both $regex and $options");
            if (!options)
                opts = regex->value.v_regex.options;
        } else {
            return mdb_error(err, MDB_BAD_VALUE, "$regex has to be a string");
        }
        if (node_add(parent, regex_node(path, src, opts, err), err) != 0)
            return -1;
    }
    return 0;
}

static mnode *parse_field(const char *path, const bson_value_t *v, int depth, bson_error_t *err)
{
    if (is_operator_doc(v)) {
        mnode *n = node_new(N_AND, path);
        if (!n) {
            mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
            return NULL;
        }
        if (parse_ops(n, path, v, depth + 1, err) != 0) {
            node_free(n);
            return NULL;
        }
        if (n->nkids == 1) {
            mnode *k = n->kids[0];
            n->nkids = 0;
            node_free(n);
            return k;
        }
        return n;
    }
    if (v->value_type == BSON_TYPE_REGEX)
        return regex_node(path, v->value.v_regex.regex, v->value.v_regex.options, err);
    mnode *n = node_new(N_EQ, path);
    if (!n)
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
    else
        n->val = *v;
    return n;
}

static mnode *parse_logical(node_op op, const char *name, const bson_value_t *v, int depth,
                            bson_error_t *err)
{
    bson_t d;
    bson_iter_t it;
    if (v->value_type != BSON_TYPE_ARRAY || !bv_as_doc(v, &d) || bson_count_keys(&d) == 0) {
        mdb_error(err, MDB_BAD_VALUE, "$and/$or/$nor must be a nonempty array");
        return NULL;
    }
    (void)name;
    mnode *n = node_new(op, NULL);
    if (!n) {
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
        return NULL;
    }
    bson_iter_init(&it, &d);
    while (bson_iter_next(&it)) {
        if (bson_iter_type(&it) != BSON_TYPE_DOCUMENT) {
            node_free(n);
            mdb_error(err, MDB_BAD_VALUE, "$or/$and/$nor entries need to be full objects");
            return NULL;
        }
        bson_t sub;
        bv_as_doc(bson_iter_value(&it), &sub);
        if (node_add(n, parse_filter(&sub, depth + 1, err), err) != 0) {
            node_free(n);
            return NULL;
        }
    }
    return n;
}

static mnode *parse_filter(const bson_t *filter, int depth, bson_error_t *err)
{
    if (depth > MAX_DEPTH) {
        mdb_error(err, MDB_BAD_VALUE, "exceeded maximum query tree depth of %d", MAX_DEPTH);
        return NULL;
    }
    mnode *root = node_new(N_AND, NULL);
    if (!root) {
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
        return NULL;
    }
    bson_iter_t it;
    if (!bson_iter_init(&it, filter)) {
        node_free(root);
        mdb_error(err, MDB_BAD_VALUE, "invalid BSON in filter");
        return NULL;
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        mnode *kid;
        if (starts_dollar(k)) {
            if (strcmp(k, "$and") == 0)
                kid = parse_logical(N_AND, k, v, depth, err);
            else if (strcmp(k, "$or") == 0)
                kid = parse_logical(N_OR, k, v, depth, err);
            else if (strcmp(k, "$nor") == 0)
                kid = parse_logical(N_NOR, k, v, depth, err);
            else if (strcmp(k, "$comment") == 0)
                continue;
            else {
                mdb_error(err, MDB_BAD_VALUE, "unknown top level operator: %s", k);
                kid = NULL;
            }
        } else {
            kid = parse_field(k, v, depth, err);
        }
        if (node_add(root, kid, err) != 0) {
            node_free(root);
            return NULL;
        }
    }
    return root;
}

/* ---------------------------------------------------------------------------------------------
 * Flat filters
 *
 * A receipts update compiles ~500 filters like {_id: oid, status: "PENDING", fence: {$ne: t},
 * campaign_id: oid} per command. flat_compile builds exactly the tree parse_filter builds for
 * such a filter (root AND over the fields; a plain value: EQ; an operator document of
 * $eq/$ne/$gt/$gte/$lt/$lte: that node alone, $ne as NOT over EQ, several of them under an AND
 * on the path) without the general parser's strcmp chains and without a realloc per kid:
 * every node in the matcher's slab, every kid array in its kid slab. Anything else (a '$' key
 * at the top, a regex, another operator, more than MATCH_SLAB nodes) returns 0 before
 * anything is allocated and matcher_new takes the general path.
 * ------------------------------------------------------------------------------------------- */

/* The comparison node an operator name of the flat subset compiles to: N_EQ..N_LTE, N_NOT for
 * $ne, N_FALSE for anything else (not flat). */
static node_op flat_op(const char *k)
{
    if (k[0] != '$')
        return N_FALSE;
    switch (k[1]) {
    case 'e':
        return strcmp(k, "$eq") == 0 ? N_EQ : N_FALSE;
    case 'n':
        return strcmp(k, "$ne") == 0 ? N_NOT : N_FALSE;
    case 'g':
        return strcmp(k, "$gt") == 0 ? N_GT : strcmp(k, "$gte") == 0 ? N_GTE : N_FALSE;
    case 'l':
        return strcmp(k, "$lt") == 0 ? N_LT : strcmp(k, "$lte") == 0 ? N_LTE : N_FALSE;
    default:
        return N_FALSE;
    }
}

/* A slab node (as node_new makes it), or NULL when the slab is full. */
static mnode *flat_node(matcher *m, node_op op, const char *path, const bson_value_t *v)
{
    if (m->nslab >= MATCH_SLAB)
        return NULL;
    mnode *n = &m->slab[m->nslab++];
    memset(n, 0, sizeof *n);
    n->in_slab = true;
    n->op = op;
    n->path = path;
    if (path) {
        size_t l = strlen(path);
        if (l < 1024 && !memchr(path, '.', l)) {
            n->simple = true;
            n->plen = (int)l;
        }
    }
    if (v)
        n->val = *v;
    return n;
}

/* `cnt` kid slots from the kid slab for n, or false when it is full. */
static bool flat_kids(matcher *m, mnode *n, size_t cnt)
{
    if (m->nkslab + cnt > MATCH_SLAB)
        return false;
    n->kids = &m->kslab[m->nkslab];
    n->kids_in_slab = true;
    m->nkslab += cnt;
    return true;
}

/* The node for the operator `op` (flat_op's result, not N_FALSE) with operand v on path. */
static mnode *flat_cmp(matcher *m, node_op op, const char *path, const bson_value_t *v)
{
    if (op != N_NOT)
        return flat_node(m, op, path, v);
    mnode *n = flat_node(m, N_NOT, path, NULL), *eq;
    if (!n || !flat_kids(m, n, 1) || !(eq = flat_node(m, N_EQ, path, v)))
        return NULL;
    n->kids[n->nkids++] = eq;
    return n;
}

/* The node(s) of one top-level field, or NULL when the value is not of the flat subset. */
static mnode *flat_field(matcher *m, const char *path, const bson_value_t *v)
{
    if (v->value_type == BSON_TYPE_REGEX)
        return NULL;
    if (!is_operator_doc(v))
        return flat_node(m, N_EQ, path, v);
    bson_t d;
    bson_iter_t it;
    size_t nops = 0;
    if (!bv_as_doc(v, &d) || !bson_iter_init(&it, &d))
        return NULL;
    while (bson_iter_next(&it)) {
        if (flat_op(bson_iter_key(&it)) == N_FALSE || bson_iter_type(&it) == BSON_TYPE_REGEX)
            return NULL;
        nops++;
    }
    mnode *and = NULL;
    if (nops > 1 && (!(and = flat_node(m, N_AND, path, NULL)) || !flat_kids(m, and, nops)))
        return NULL;
    bson_iter_init(&it, &d);
    while (bson_iter_next(&it)) {
        mnode *k = flat_cmp(m, flat_op(bson_iter_key(&it)), path, bson_iter_value(&it));
        if (!k)
            return NULL;
        if (!and)
            return k;
        and->kids[ and->nkids++] = k;
    }
    return and;
}

/* Builds m->root from the filter f (a view of m's copy) if it is flat: 1, else 0 with m's
 * slabs reset (nothing was allocated). */
static int flat_compile(matcher *m, const bson_t *f)
{
    bson_iter_t it;
    size_t nf = 0;
    if (!bson_iter_init(&it, f))
        return 0;
    while (bson_iter_next(&it)) {
        if (bson_iter_key(&it)[0] == '$')
            return 0;
        nf++;
    }
    mnode *root = flat_node(m, N_AND, NULL, NULL);
    if (!root || (nf > 0 && !flat_kids(m, root, nf)))
        goto not_flat;
    bson_iter_init(&it, f);
    while (bson_iter_next(&it)) {
        mnode *k = flat_field(m, bson_iter_key(&it), bson_iter_value(&it));
        if (!k)
            goto not_flat;
        root->kids[root->nkids++] = k;
    }
    m->root = root;
    m->flat = true;
    return 1;
not_flat:
    m->nslab = 0;
    m->nkslab = 0;
    return 0;
}

matcher *matcher_new(const bson_t *filter, bson_error_t *err)
{
    static const uint8_t empty[5] = {5, 0, 0, 0, 0};
    const uint8_t *fd = filter ? bson_get_data(filter) : empty;
    uint32_t fl = filter ? filter->len : 5;
    matcher *m = malloc(sizeof *m + fl);
    if (!m) {
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
        return NULL;
    }
    m->root = NULL;
    m->nslab = 0;
    m->nkslab = 0;
    m->flat = false;
    m->flen = fl;
    memcpy(m->fdata, fd, fl);
    bson_t f;
    if (!bson_init_static(&f, m->fdata, fl)) {
        free(m);
        mdb_error(err, MDB_BAD_VALUE, "invalid BSON in filter");
        return NULL;
    }
    if (flat_compile(m, &f))
        return m;
    matcher *outer = tl_building; /* a matcher compiled while compiling another */
    tl_building = m;
    m->root = parse_filter(&f, 0, err);
    tl_building = outer;
    if (!m->root) {
        free(m);
        return NULL;
    }
    return m;
}

void matcher_free(matcher *m)
{
    if (!m)
        return;
    if (!m->flat)
        node_free(m->root);
    free(m);
}

void matcher_filter(const matcher *m, bson_t *out)
{
    bson_init_static(out, m->fdata, m->flen);
}

bool matcher_is_empty(const matcher *m)
{
    return m->root->nkids == 0;
}

/* ---------------------------------------------------------------------------------------------
 * Evaluation
 * ------------------------------------------------------------------------------------------- */

static bool node_eval(const mnode *n, const bson_t *doc);
static bool node_eval_value(const mnode *n, const bson_value_t *v);

/* One match-data block per thread, reused by every regex test (a compiled matcher is shared
 * between threads, so the block cannot live in it). Freed by the key's destructor when the
 * thread exits. */
static pthread_key_t md_key;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static bool md_key_ok;

static void md_free(void *p)
{
    pcre2_match_data_free(p);
}

static void md_key_init(void)
{
    md_key_ok = pthread_key_create(&md_key, md_free) == 0;
}

static pcre2_match_data *thread_match_data(void)
{
    pthread_once(&md_once, md_key_init);
    if (!md_key_ok)
        return NULL;
    pcre2_match_data *md = pthread_getspecific(md_key);
    if (!md) {
        md = pcre2_match_data_create(1, NULL);
        if (md && pthread_setspecific(md_key, md) != 0) {
            pcre2_match_data_free(md);
            md = NULL;
        }
    }
    return md;
}

static bool regex_match(const mnode *n, const bson_value_t *v)
{
    const char *s;
    size_t len;
    if (v->value_type == BSON_TYPE_UTF8) {
        s = v->value.v_utf8.str;
        len = v->value.v_utf8.len;
    } else if (v->value_type == BSON_TYPE_SYMBOL) {
        s = v->value.v_symbol.symbol;
        len = v->value.v_symbol.len;
    } else if (v->value_type == BSON_TYPE_REGEX) {
        return strcmp(v->value.v_regex.regex, n->re_src) == 0 &&
               strcmp(v->value.v_regex.options, n->re_opts) == 0;
    } else {
        return false;
    }
    pcre2_match_data *md = thread_match_data();
    if (!md)
        return false;
    return pcre2_match(n->re, (PCRE2_SPTR)s, len, 0, 0, md, NULL) >= 0;
}

static bool is_nan_value(const bson_value_t *v)
{
    return bv_is_number(v->value_type) && v->value_type != BSON_TYPE_INT32 &&
           v->value_type != BSON_TYPE_INT64 && isnan(bv_as_double(v));
}

static bool equal_match(const bson_value_t *arg, const bson_value_t *v)
{
    if (v->value_type == BSON_TYPE_EOD || v->value_type == BSON_TYPE_UNDEFINED)
        return arg->value_type == BSON_TYPE_NULL;
    return bv_compare(v, arg) == 0 &&
           bv_canonical_type(v->value_type) == bv_canonical_type(arg->value_type);
}

/* $in over svals: binary search with bv_compare (a total order in which equal_match's equal
 * values are adjacent), then equal_match on the run of values comparing equal to v, so the
 * answer is the linear loop's. Missing/undefined fields never come here (they match null). */
static bool in_sorted_match(const mnode *n, const bson_value_t *v)
{
    size_t lo = 0, hi = n->nvals;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (bv_compare(&n->svals[mid], v) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < n->nvals && bv_compare(&n->svals[i], v) == 0; i++)
        if (equal_match(&n->svals[i], v))
            return true;
    return false;
}

static bool compare_match(const mnode *n, const bson_value_t *v)
{
    const bson_value_t *arg = &n->val;
    bson_value_t null_v = {.value_type = BSON_TYPE_NULL};
    if (v->value_type == BSON_TYPE_EOD || v->value_type == BSON_TYPE_UNDEFINED)
        v = &null_v;
    if (is_nan_value(arg))
        return is_nan_value(v) && (n->op == N_GTE || n->op == N_LTE);
    int ta = bv_canonical_type(arg->value_type);
    if (ta != bv_canonical_type(v->value_type) && ta != -1 && ta != 127)
        return false;
    int c = bv_compare(v, arg);
    switch (n->op) {
    case N_GT:
        return c > 0;
    case N_GTE:
        return c >= 0;
    case N_LT:
        return c < 0;
    case N_LTE:
        return c <= 0;
    default:
        return false;
    }
}

static bool type_match(const mnode *n, const bson_value_t *v)
{
    if (v->value_type == BSON_TYPE_EOD)
        return false;
    if (n->type_number && bv_is_number(v->value_type))
        return true;
    int byte = (int)v->value_type;
    return (n->types[byte / 8] >> (byte % 8)) & 1;
}

static bool mod_match(const mnode *n, const bson_value_t *v)
{
    if (!bv_is_number(v->value_type))
        return false;
    int64_t x;
    if (v->value_type == BSON_TYPE_INT64)
        x = v->value.v_int64;
    else if (v->value_type == BSON_TYPE_INT32)
        x = v->value.v_int32;
    else {
        double d = bv_as_double(v);
        if (isnan(d) || isinf(d) || d > 9.2e18 || d < -9.2e18)
            return false;
        x = (int64_t)d;
    }
    if (n->div == -1)
        return n->rem == 0;
    return x % n->div == n->rem;
}

/* Value operators: does one reached value (EOD = missing) satisfy n? */
static bool value_match(const mnode *n, const bson_value_t *v)
{
    switch (n->op) {
    case N_EQ:
        return equal_match(&n->val, v);
    case N_GT:
    case N_GTE:
    case N_LT:
    case N_LTE:
        return compare_match(n, v);
    case N_IN:
        if (n->svals && v->value_type != BSON_TYPE_EOD && v->value_type != BSON_TYPE_UNDEFINED) {
            if (in_sorted_match(n, v))
                return true;
        } else {
            for (size_t i = 0; i < n->nvals; i++)
                if (equal_match(&n->vals[i], v))
                    return true;
        }
        for (size_t i = 0; i < n->nres; i++)
            if (regex_match(n->res[i], v))
                return true;
        return false;
    case N_REGEX:
        return regex_match(n, v);
    case N_TYPE:
        return type_match(n, v);
    case N_MOD:
        return mod_match(n, v);
    default:
        return false;
    }
}

static bool is_value_op(node_op op)
{
    return op >= N_EQ && op <= N_MOD;
}

static bool value_cb(const bson_value_t *v, void *ctx)
{
    return value_match(ctx, v);
}

static bool exists_cb(const bson_value_t *v, void *ctx)
{
    (void)ctx;
    return v->value_type != BSON_TYPE_EOD;
}

static bool structural_value(const mnode *n, const bson_value_t *v)
{
    if (v->value_type != BSON_TYPE_ARRAY)
        return false;
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len))
        return false;
    if (n->op == N_SIZE) {
        int64_t count = 0;
        while (bson_iter_next(&it))
            count++;
        return count == n->size;
    }
    while (bson_iter_next(&it)) {
        const bson_value_t *e = bson_iter_value(&it);
        if (n->op == N_ELEM_OBJ) {
            bson_t ed;
            if ((e->value_type == BSON_TYPE_DOCUMENT || e->value_type == BSON_TYPE_ARRAY) &&
                bv_as_doc(e, &ed) && node_eval(n->kids[0], &ed))
                return true;
        } else {
            bool all = true;
            for (size_t i = 0; i < n->nkids && all; i++)
                all = node_eval_value(n->kids[i], e);
            if (all)
                return true;
        }
    }
    return false;
}

static bool structural_cb(const bson_value_t *v, void *ctx)
{
    return structural_value(ctx, v);
}

/* Value operators on a one-component path: the same results as bv_path_visit with
 * EXPAND_LEAF | REPORT_MISSING, without splitting the path (the common case, per document). */
static bool simple_value_eval(const mnode *n, const bson_t *doc)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, doc) || !bson_iter_find_w_len(&it, n->path, n->plen)) {
        bson_value_t eod = {.value_type = BSON_TYPE_EOD};
        return value_match(n, &eod);
    }
    const bson_value_t *v = bson_iter_value(&it);
    if (value_match(n, v))
        return true;
    if (v->value_type != BSON_TYPE_ARRAY)
        return false;
    bson_iter_t ai;
    if (!bson_iter_init_from_data(&ai, v->value.v_doc.data, v->value.v_doc.data_len))
        return false;
    while (bson_iter_next(&ai))
        if (value_match(n, bson_iter_value(&ai)))
            return true;
    return false;
}

static bool node_eval(const mnode *n, const bson_t *doc)
{
    switch (n->op) {
    case N_AND:
    case N_ALL:
        for (size_t i = 0; i < n->nkids; i++)
            if (!node_eval(n->kids[i], doc))
                return false;
        return true;
    case N_OR:
        for (size_t i = 0; i < n->nkids; i++)
            if (node_eval(n->kids[i], doc))
                return true;
        return false;
    case N_NOR:
        for (size_t i = 0; i < n->nkids; i++)
            if (node_eval(n->kids[i], doc))
                return false;
        return true;
    case N_NOT:
        for (size_t i = 0; i < n->nkids; i++)
            if (!node_eval(n->kids[i], doc))
                return true;
        return false;
    case N_FALSE:
        return false;
    case N_EXISTS:
        return bv_path_visit(doc, n->path, BV_PATH_REPORT_MISSING, exists_cb, NULL) == n->exists;
    case N_SIZE:
    case N_ELEM_OBJ:
    case N_ELEM_VAL:
        return bv_path_visit(doc, n->path, 0, structural_cb, (void *)n);
    default:
        if (n->simple)
            return simple_value_eval(n, doc);
        return bv_path_visit(doc, n->path, BV_PATH_EXPAND_LEAF | BV_PATH_REPORT_MISSING, value_cb,
                             (void *)n);
    }
}

/* $elemMatch value form: operators applied to one element. */
static bool node_eval_value(const mnode *n, const bson_value_t *v)
{
    if (is_value_op(n->op))
        return value_match(n, v);
    switch (n->op) {
    case N_AND:
    case N_ALL:
        for (size_t i = 0; i < n->nkids; i++)
            if (!node_eval_value(n->kids[i], v))
                return false;
        return true;
    case N_NOT:
        for (size_t i = 0; i < n->nkids; i++)
            if (!node_eval_value(n->kids[i], v))
                return true;
        return false;
    case N_EXISTS:
        return n->exists;
    case N_SIZE:
    case N_ELEM_OBJ:
    case N_ELEM_VAL:
        return structural_value(n, v);
    default:
        return false;
    }
}

bool matcher_matches(const matcher *m, const bson_t *doc)
{
    return node_eval(m->root, doc);
}

/* ---------------------------------------------------------------------------------------------
 * Index bounds
 * ------------------------------------------------------------------------------------------- */

static const uint8_t empty_doc_bytes[5] = {5, 0, 0, 0, 0};

typedef struct {
    const char *path;
    bool multikey;
    match_bounds *out;
    bool have_points;
    bool have_range;
    int bracket; /* canonical type of the first range operand */
    bool lo_set, hi_set;
} bounds_ctx;

static bool point_ok(const bson_value_t *v)
{
    return v->value_type != BSON_TYPE_ARRAY && v->value_type != BSON_TYPE_REGEX &&
           v->value_type != BSON_TYPE_UNDEFINED;
}

static int cmp_value_ptrs(const void *x, const void *y)
{
    return bv_compare(*(const bson_value_t *const *)x, *(const bson_value_t *const *)y);
}

static void set_points_from(bounds_ctx *c, const mnode *n)
{
    match_bounds *o = c->out;
    o->n_points = 0;
    if (n->op == N_EQ) {
        o->points[o->n_points++] = &n->val;
    } else {
        for (size_t i = 0; i < n->nvals; i++)
            o->points[o->n_points++] = &n->vals[i];
    }
    qsort(o->points, o->n_points, sizeof o->points[0], cmp_value_ptrs);
    size_t w = 0;
    for (size_t r = 0; r < o->n_points; r++)
        if (w == 0 || bv_compare(o->points[r], o->points[w - 1]) != 0)
            o->points[w++] = o->points[r];
    o->n_points = w;
    c->have_points = true;
}

static void add_range(bounds_ctx *c, const mnode *n)
{
    match_bounds *o = c->out;
    const bson_value_t *v = &n->val;
    int t = bv_canonical_type(v->value_type);
    if (v->value_type == BSON_TYPE_REGEX || is_nan_value(v))
        return;
    if (c->have_range && (c->multikey || t != c->bracket))
        return;
    c->have_range = true;
    c->bracket = t;
    bool lower = n->op == N_GT || n->op == N_GTE;
    bool incl = n->op == N_GTE || n->op == N_LTE;
    if (lower) {
        if (!c->lo_set || bv_compare(v, &o->lo) > 0 || (bv_compare(v, &o->lo) == 0 && !incl)) {
            o->lo = *v;
            o->lo_inclusive = incl;
            c->lo_set = true;
        }
    } else {
        if (!c->hi_set || bv_compare(v, &o->hi) < 0 || (bv_compare(v, &o->hi) == 0 && !incl)) {
            o->hi = *v;
            o->hi_inclusive = incl;
            c->hi_set = true;
        }
    }
}

static void collect_bounds(bounds_ctx *c, const mnode *n)
{
    if (n->op == N_AND && !n->path) {
        for (size_t i = 0; i < n->nkids; i++)
            collect_bounds(c, n->kids[i]);
        return;
    }
    if (!n->path || strcmp(n->path, c->path) != 0)
        return;
    switch (n->op) {
    case N_AND:
        for (size_t i = 0; i < n->nkids; i++)
            collect_bounds(c, n->kids[i]);
        return;
    case N_EQ:
        if (point_ok(&n->val) && !c->have_points)
            set_points_from(c, n);
        return;
    case N_IN: {
        if (n->nres || c->have_points || n->nvals > MATCH_MAX_POINTS || n->nvals == 0)
            return;
        for (size_t i = 0; i < n->nvals; i++)
            if (!point_ok(&n->vals[i]))
                return;
        set_points_from(c, n);
        return;
    }
    case N_GT:
    case N_GTE:
    case N_LT:
    case N_LTE:
        add_range(c, n);
        return;
    default:
        return;
    }
}

bool matcher_field_bounds(const matcher *m, const char *path, bool multikey, match_bounds *out)
{
    bounds_ctx c = {.path = path, .multikey = multikey, .out = out};
    /* Everything but the 8 KiB points array, which is written from index 0 up: the planner
     * asks this for every index of every statement. */
    out->n_points = 0;
    memset(&out->has_lo, 0, sizeof *out - offsetof(match_bounds, has_lo));
    collect_bounds(&c, m->root);
    if (c.have_points) {
        out->has_lo = out->has_hi = false;
        return true;
    }
    if (!c.have_range)
        return false;
    out->has_lo = c.lo_set;
    out->has_hi = c.hi_set;
    /* Close open sides at the end of the operand's type bracket. */
    if (!c.lo_set) {
        switch (c.bracket) {
        case 10:
            out->lo.value_type = BSON_TYPE_DOUBLE;
            out->lo.value.v_double = NAN;
            out->has_lo = out->lo_inclusive = true;
            break;
        case 15:
            out->lo.value_type = BSON_TYPE_UTF8;
            out->lo.value.v_utf8.str = (char *)"";
            out->lo.value.v_utf8.len = 0;
            out->has_lo = out->lo_inclusive = true;
            break;
        case 45:
            out->lo.value_type = BSON_TYPE_DATE_TIME;
            out->lo.value.v_datetime = INT64_MIN;
            out->has_lo = out->lo_inclusive = true;
            break;
        default:
            break;
        }
    }
    if (!c.hi_set) {
        switch (c.bracket) {
        case 10:
            out->hi.value_type = BSON_TYPE_DOUBLE;
            out->hi.value.v_double = INFINITY;
            out->has_hi = out->hi_inclusive = true;
            break;
        case 15:
            out->hi.value_type = BSON_TYPE_DOCUMENT;
            out->hi.value.v_doc.data = (uint8_t *)empty_doc_bytes;
            out->hi.value.v_doc.data_len = sizeof empty_doc_bytes;
            out->has_hi = true;
            out->hi_inclusive = false;
            break;
        case 45:
            out->hi.value_type = BSON_TYPE_DATE_TIME;
            out->hi.value.v_datetime = INT64_MAX;
            out->has_hi = out->hi_inclusive = true;
            break;
        default:
            break;
        }
    }
    return true;
}

/* Is n a $ne or a $nin without regexes (NOT over one EQ or IN on its path)? */
static bool negated_points(const mnode *n)
{
    if (n->op != N_NOT || n->nkids != 1 || !n->path)
        return false;
    const mnode *k = n->kids[0];
    return (k->op == N_EQ || (k->op == N_IN && k->nres == 0)) && k->path &&
           strcmp(k->path, n->path) == 0;
}

/* Is n (and every node under it) a condition matcher_single_path and matcher_paths_within
 * accept, on a path `ok` accepts? With `negations`, $ne and $nin too (not contiguous in key
 * order: only for a count that tests every key). */
static bool cond_node(const mnode *n, bool negations, bool (*ok)(const char *path, void *ctx),
                      void *ctx)
{
    if (n->op == N_AND) {
        if (n->nkids == 0)
            return false;
        for (size_t i = 0; i < n->nkids; i++)
            if (!cond_node(n->kids[i], negations, ok, ctx))
                return false;
        return n->path == NULL || ok(n->path, ctx);
    }
    if (negations && negated_points(n))
        return !strchr(n->path, '.') && ok(n->path, ctx);
    switch (n->op) {
    case N_EQ:
    case N_GT:
    case N_GTE:
    case N_LT:
    case N_LTE:
        /* a NaN operand compares as MongoDB's NaN rule says (only NaN is >= NaN), not as a
         * half-line of the number bracket */
        if (n->val.value_type == BSON_TYPE_DOUBLE && isnan(n->val.value.v_double))
            return false;
        if (n->val.value_type == BSON_TYPE_DECIMAL128)
            return false;
        break;
    case N_IN:
        if (n->nres)
            return false;
        break;
    default:
        return false;
    }
    return n->path && !strchr(n->path, '.') && ok(n->path, ctx);
}

/* The first path met becomes the one path; every other must equal it. */
static bool same_path(const char *path, void *ctx)
{
    const char **one = ctx;
    if (!*one)
        *one = path;
    return strcmp(path, *one) == 0;
}

const char *matcher_single_path(const matcher *m)
{
    const char *path = NULL;
    if (!m->root || !cond_node(m->root, false, same_path, &path))
        return NULL;
    return path;
}

typedef struct {
    const char *const *paths;
    size_t n;
} path_set;

static bool in_set(const char *path, void *ctx)
{
    const path_set *ps = ctx;
    for (size_t i = 0; i < ps->n; i++)
        if (!strcmp(ps->paths[i], path))
            return true;
    return false;
}

bool matcher_paths_within(const matcher *m, const char *const *paths, size_t n)
{
    path_set ps = {paths, n};
    return m->root && cond_node(m->root, true, in_set, &ps);
}

/* ---------------------------------------------------------------------------------------------
 * Key filters (match.h): per-field bounds tested on the raw bytes of an index key
 *
 * Built from the filter's top-level conjunction, one kfield per constrained key field:
 * `pts` (the values the field must equal one of, sorted by bv_compare, distinct), else the
 * interval `lo`..`hi` inside canonical bracket `bracket` (KF_ANY: every bracket, for MinKey /
 * MaxKey operands), and `outs` (values it must equal none of). Points absorb the interval and
 * the exclusions at build time: a point p qualifies exactly when the values equal to p do
 * (equality under bv_compare keeps the canonical bracket and every comparison's result), so
 * the test of a key value is one binary search there. The semantics are value_match's for a
 * value that is not an array (the index is not multikey): equality is bv_compare == 0 (which
 * implies the same canonical bracket), a comparison needs the operand's bracket unless the
 * operand is MinKey or MaxKey, and missing / undefined are null.
 * ------------------------------------------------------------------------------------------- */

#define KF_ANY      (-1000)
#define KF_MAX_PTS  MATCH_MAX_POINTS
#define KF_MAX_OUTS 1000

typedef struct {
    size_t pos;   /* the field's position in the key */
    bool has_pts; /* pts[0..npts) is the whole set of allowed values */
    size_t npts;
    const bson_value_t **pts;
    bool has_range;
    int bracket; /* has_range: canonical type of every value in it, or KF_ANY */
    bool has_lo, lo_incl, has_hi, hi_incl;
    bson_value_t lo, hi;
    size_t nouts;
    const bson_value_t **outs;
} kfield;

struct match_keyfilter {
    bool never;      /* no key qualifies */
    size_t nf;       /* constrained fields, in key order */
    size_t last_pos; /* position of the last constrained field */
    kfield f[];
};

void matcher_keyfilter_free(match_keyfilter *kf)
{
    if (!kf)
        return;
    for (size_t i = 0; i < kf->nf; i++) {
        free(kf->f[i].pts);
        free(kf->f[i].outs);
    }
    free(kf);
}

bool matcher_keyfilter_never(const match_keyfilter *kf)
{
    return kf->never;
}

/* bv_canonical_type, without the call for the types audience keys hold. */
static inline int kf_canon(bson_type_t t)
{
    switch (t) {
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
        return 10;
    case BSON_TYPE_DATE_TIME:
        return 45;
    case BSON_TYPE_UTF8:
        return 15;
    case BSON_TYPE_NULL:
        return 5;
    default:
        return bv_canonical_type(t);
    }
}

/* bv_compare(v, b), without the call when both are doubles (neither NaN) or both dates: the
 * audience keys' total_spend and dates against the rules' operands. */
static inline int kf_cmp(const bson_value_t *v, const bson_value_t *b)
{
    if (v->value_type == b->value_type) {
        if (v->value_type == BSON_TYPE_DOUBLE) {
            double x = v->value.v_double, y = b->value.v_double;
            if (!isnan(x) && !isnan(y))
                return (x > y) - (x < y);
        } else if (v->value_type == BSON_TYPE_DATE_TIME) {
            int64_t x = v->value.v_datetime, y = b->value.v_datetime;
            return (x > y) - (x < y);
        }
    }
    return bv_compare(v, b);
}

/* Is v inside f's interval? */
static bool kf_in_range(const kfield *f, const bson_value_t *v)
{
    if (f->bracket != KF_ANY && kf_canon(v->value_type) != f->bracket)
        return false;
    if (f->has_lo) {
        int c = kf_cmp(v, &f->lo);
        if (c < 0 || (c == 0 && !f->lo_incl))
            return false;
    }
    if (f->has_hi) {
        int c = kf_cmp(v, &f->hi);
        if (c > 0 || (c == 0 && !f->hi_incl))
            return false;
    }
    return true;
}

/* Is v equal (bv_compare) to one of the n sorted values a? */
static bool kf_member(const bson_value_t *const *a, size_t n, const bson_value_t *v)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = bv_compare(a[mid], v);
        if (c == 0)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* Does the key field value v (undefined already turned into null) satisfy f? */
static bool kf_field_ok(const kfield *f, const bson_value_t *v)
{
    if (f->has_pts)
        return kf_member(f->pts, f->npts, v);
    if (f->has_range && !kf_in_range(f, v))
        return false;
    return f->nouts == 0 || !kf_member(f->outs, f->nouts, v);
}

/* Sorts the n values a by bv_compare and drops duplicates; returns the new count. */
static size_t kf_sort_unique(const bson_value_t **a, size_t n)
{
    qsort(a, n, sizeof *a, cmp_value_ptrs);
    size_t w = 0;
    for (size_t r = 0; r < n; r++)
        if (w == 0 || bv_compare(a[r], a[w - 1]) != 0)
            a[w++] = a[r];
    return w;
}

/* The values of an EQ or IN node (without regexes) into a new sorted, distinct array. */
static const bson_value_t **kf_values(const mnode *n, size_t *cnt)
{
    size_t k = n->op == N_EQ ? 1 : n->nvals;
    const bson_value_t **a = malloc((k ? k : 1) * sizeof *a);
    if (!a)
        return NULL;
    if (n->op == N_EQ)
        a[0] = &n->val;
    else
        for (size_t i = 0; i < k; i++)
            a[i] = &n->vals[i];
    *cnt = kf_sort_unique(a, k);
    return a;
}

typedef struct {
    const char *const *paths;
    size_t npaths;
    kfield *f; /* one per path, pos = its index; `used` says which are constrained */
    bool *used;
    bool fail;
    bool never;
} kf_build;

static kfield *kf_field_for(kf_build *b, const char *path)
{
    for (size_t i = 0; i < b->npaths; i++)
        if (strcmp(b->paths[i], path) == 0) {
            b->used[i] = true;
            return &b->f[i];
        }
    b->fail = true;
    return NULL;
}

/* The comparison n narrows f's interval. */
static void kf_add_range(kf_build *b, kfield *f, const mnode *n)
{
    const bson_value_t *v = &n->val;
    if (is_nan_value(v) || v->value_type == BSON_TYPE_DECIMAL128 ||
        v->value_type == BSON_TYPE_REGEX) {
        b->fail = true; /* not an interval of the order (cond_node refuses them too) */
        return;
    }
    int t = bv_canonical_type(v->value_type);
    int br = (t == -1 || t == 127) ? KF_ANY : t;
    if (!f->has_range) {
        f->has_range = true;
        f->bracket = br;
    } else if (br != KF_ANY) {
        if (f->bracket == KF_ANY)
            f->bracket = br;
        else if (f->bracket != br)
            b->never = true; /* no value is in two brackets */
    }
    bool lower = n->op == N_GT || n->op == N_GTE;
    bool incl = n->op == N_GTE || n->op == N_LTE;
    if (lower) {
        int c = f->has_lo ? bv_compare(v, &f->lo) : 1;
        if (c > 0 || (c == 0 && !incl)) {
            f->lo = *v;
            f->lo_incl = incl;
            f->has_lo = true;
        }
    } else {
        int c = f->has_hi ? bv_compare(v, &f->hi) : -1;
        if (c < 0 || (c == 0 && !incl)) {
            f->hi = *v;
            f->hi_incl = incl;
            f->has_hi = true;
        }
    }
}

/* f's point set becomes its intersection with the values of n (EQ or IN). */
static void kf_add_points(kf_build *b, kfield *f, const mnode *n)
{
    size_t cnt = 0;
    const bson_value_t **a = kf_values(n, &cnt);
    if (!a) {
        b->fail = true;
        return;
    }
    if (!f->has_pts) {
        f->has_pts = true;
        f->pts = a;
        f->npts = cnt;
        return;
    }
    size_t w = 0;
    for (size_t i = 0; i < f->npts; i++)
        if (kf_member(a, cnt, f->pts[i]))
            f->pts[w++] = f->pts[i];
    f->npts = w;
    free(a);
}

/* f may equal none of the values of n's kid (EQ or IN): added to its exclusions. */
static void kf_add_outs(kf_build *b, kfield *f, const mnode *n)
{
    size_t cnt = 0;
    const bson_value_t **a = kf_values(n->kids[0], &cnt);
    if (!a || f->nouts + cnt > KF_MAX_OUTS) {
        free(a);
        b->fail = true;
        return;
    }
    const bson_value_t **o = realloc(f->outs, (f->nouts + cnt + 1) * sizeof *o);
    if (!o) {
        free(a);
        b->fail = true;
        return;
    }
    memcpy(o + f->nouts, a, cnt * sizeof *a);
    free(a);
    f->outs = o;
    f->nouts = kf_sort_unique(o, f->nouts + cnt);
}

static void kf_collect(kf_build *b, const mnode *n)
{
    if (b->fail)
        return;
    if (n->op == N_AND) {
        for (size_t i = 0; i < n->nkids; i++)
            kf_collect(b, n->kids[i]);
        return;
    }
    if (!n->path || strchr(n->path, '.')) {
        b->fail = true;
        return;
    }
    kfield *f = kf_field_for(b, n->path);
    if (!f)
        return;
    switch (n->op) {
    case N_EQ:
        kf_add_points(b, f, n);
        return;
    case N_IN:
        if (n->nres)
            b->fail = true;
        else
            kf_add_points(b, f, n);
        return;
    case N_GT:
    case N_GTE:
    case N_LT:
    case N_LTE:
        kf_add_range(b, f, n);
        return;
    case N_NOT:
        if (negated_points(n))
            kf_add_outs(b, f, n);
        else
            b->fail = true;
        return;
    default:
        b->fail = true;
        return;
    }
}

match_keyfilter *matcher_keyfilter_new(const matcher *m, const char *const *paths, size_t n)
{
    if (!m->root || m->root->op != N_AND || n == 0 || n > 64)
        return NULL;
    kfield f[64];
    bool used[64];
    memset(f, 0, n * sizeof f[0]);
    memset(used, 0, n * sizeof used[0]);
    kf_build b = {.paths = paths, .npaths = n, .f = f, .used = used};
    kf_collect(&b, m->root);
    match_keyfilter *kf = NULL;
    size_t nused = 0;
    for (size_t i = 0; i < n; i++)
        nused += used[i];
    if (!b.fail)
        kf = calloc(1, sizeof *kf + nused * sizeof(kfield));
    if (!kf) {
        for (size_t i = 0; i < n; i++) {
            free(f[i].pts);
            free(f[i].outs);
        }
        return NULL;
    }
    kf->never = b.never;
    for (size_t i = 0; i < n; i++) {
        if (!used[i])
            continue;
        kfield *d = &kf->f[kf->nf++];
        *d = f[i];
        d->pos = i;
        kf->last_pos = i;
        if (d->has_pts) {
            /* the interval and the exclusions, decided once per point */
            size_t w = 0;
            for (size_t j = 0; j < d->npts; j++) {
                const bson_value_t *p = d->pts[j];
                if ((!d->has_range || kf_in_range(d, p)) &&
                    (d->nouts == 0 || !kf_member(d->outs, d->nouts, p)))
                    d->pts[w++] = p;
            }
            d->npts = w;
            d->has_range = false;
            free(d->outs);
            d->outs = NULL;
            d->nouts = 0;
            if (w == 0)
                kf->never = true;
        } else if (d->has_range && d->has_lo && d->has_hi) {
            int c = bv_compare(&d->lo, &d->hi);
            if (c > 0 || (c == 0 && !(d->lo_incl && d->hi_incl)))
                kf->never = true; /* an empty interval */
        }
    }
    return kf;
}

/* The value of the element at p (type byte, name, value; the document ends at end) into *v,
 * undefined as null, for the types index keys of plain documents hold; the element's end into
 * *next. False for any other type or malformed bytes (the caller then reads the key with
 * bson_iter). */
static bool kf_read(const uint8_t *p, const uint8_t *end, bson_value_t *v, const uint8_t **next)
{
    uint8_t t = *p++;
    /* index keys name every field "": the NUL is the next byte */
    const uint8_t *nul = p < end && *p == 0 ? p : memchr(p, 0, (size_t)(end - p));
    if (!nul)
        return false;
    p = nul + 1;
    size_t avail = (size_t)(end - p);
    switch (t) {
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DATE_TIME: {
        if (avail < 8)
            return false;
        uint64_t x;
        memcpy(&x, p, 8);
        x = BSON_UINT64_FROM_LE(x);
        v->value_type = (bson_type_t)t;
        if (t == BSON_TYPE_DOUBLE)
            memcpy(&v->value.v_double, &x, 8);
        else if (t == BSON_TYPE_INT64)
            v->value.v_int64 = (int64_t)x;
        else
            v->value.v_datetime = (int64_t)x;
        *next = p + 8;
        return true;
    }
    case BSON_TYPE_INT32: {
        if (avail < 4)
            return false;
        uint32_t x;
        memcpy(&x, p, 4);
        v->value_type = BSON_TYPE_INT32;
        v->value.v_int32 = (int32_t)BSON_UINT32_FROM_LE(x);
        *next = p + 4;
        return true;
    }
    case BSON_TYPE_UTF8: {
        if (avail < 5)
            return false;
        uint32_t x;
        memcpy(&x, p, 4);
        x = BSON_UINT32_FROM_LE(x);
        if (x < 1 || x > avail - 4 || p[4 + x - 1] != 0)
            return false;
        v->value_type = BSON_TYPE_UTF8;
        v->value.v_utf8.str = (char *)(p + 4);
        v->value.v_utf8.len = x - 1;
        *next = p + 4 + x;
        return true;
    }
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
        v->value_type = BSON_TYPE_NULL;
        *next = p;
        return true;
    case BSON_TYPE_BOOL:
        if (avail < 1)
            return false;
        v->value_type = BSON_TYPE_BOOL;
        v->value.v_bool = *p != 0;
        *next = p + 1;
        return true;
    case BSON_TYPE_OID:
        if (avail < 12)
            return false;
        v->value_type = BSON_TYPE_OID;
        memcpy(v->value.v_oid.bytes, p, 12);
        *next = p + 12;
        return true;
    default:
        return false;
    }
}

/* The general path: the key read with bson_iter (any type). */
static bool kf_matches_iter(const match_keyfilter *kf, const uint8_t *key, uint32_t len)
{
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, key, len))
        return false;
    size_t fi = 0;
    for (size_t pos = 0; fi < kf->nf && bson_iter_next(&it); pos++) {
        if (kf->f[fi].pos != pos)
            continue;
        bson_value_t v = *bson_iter_value(&it);
        if (v.value_type == BSON_TYPE_UNDEFINED)
            v.value_type = BSON_TYPE_NULL;
        if (!kf_field_ok(&kf->f[fi], &v))
            return false;
        fi++;
    }
    return fi == kf->nf;
}

bool matcher_keyfilter_matches(const match_keyfilter *kf, const uint8_t *key, uint32_t len)
{
    if (kf->never)
        return false;
    if (len < 5)
        return false;
    const uint8_t *p = key + 4, *end = key + len;
    size_t fi = 0;
    for (size_t pos = 0; fi < kf->nf; pos++) {
        if (p >= end || *p == 0)
            return false; /* fewer elements than the index has fields */
        bson_value_t v;
        const uint8_t *next;
        if (!kf_read(p, end, &v, &next))
            return kf_matches_iter(kf, key, len);
        if (kf->f[fi].pos == pos) {
            if (!kf_field_ok(&kf->f[fi], &v))
                return false;
            fi++;
        }
        p = next;
    }
    return true;
}
