/*
 * aggregate.c: aggregation pipelines.
 *
 * agg_pipeline_new compiles every stage once (matchers, projections, sort specs, expressions).
 * A run pushes documents through the stages: push(i, doc) hands one document to stage i, which
 * passes zero or more documents to stage i + 1, the last stage handing them to the caller's
 * emit callback. Streaming stages ($match, $project, $addFields, $unset, $replaceRoot, $unwind,
 * $lookup, $skip, $limit) keep at most one output document in a per-stage scratch buffer;
 * buffering stages ($sort, $group, $count) collect their input (copies, capped at 100 MiB) and
 * pass their output on at the end of input (flush). When a $limit is satisfied and nothing
 * before it buffers, the run stops pulling input.
 *
 * All run state lives in one agg_run allocated per agg_pipeline_run call and freed before it
 * returns, so a compiled pipeline can be run by several threads at once.
 */
#include "engine/aggregate.h"
#include "base/bsonval.h"
#include "base/errors.h"
#include "engine/expr.h"
#include "engine/project.h"
#include "engine/sortspec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define AGG_MEM_CAP     ((size_t)100 * 1024 * 1024)
#define AGG_MAX_STAGES  1000
#define MAX_OUTPUT_SIZE (16 * 1024 * 1024)

typedef enum {
    S_MATCH,
    S_PROJECT,
    S_ADD_FIELDS,
    S_REPLACE_ROOT,
    S_SORT,
    S_SKIP,
    S_LIMIT,
    S_COUNT,
    S_GROUP,
    S_UNWIND,
    S_LOOKUP,
} stage_kind;

typedef enum { A_SUM, A_AVG, A_MIN, A_MAX, A_FIRST, A_LAST, A_PUSH, A_ADD_TO_SET } acc_kind;

typedef struct {
    char *name;
    acc_kind kind;
    expr *arg;
} accum;

typedef struct {
    char *path; /* dotted output path */
    expr *ex;
} field_expr;

typedef struct {
    stage_kind kind;
    matcher *m;
    projection *proj;
    sortspec *sort;
    int64_t n;  /* $skip / $limit */
    char *name; /* $count field, $lookup as, $unwind path (without '$') */
    /* $addFields */
    field_expr *fields;
    size_t nfields;
    /* $replaceRoot / $group _id */
    expr *ex;
    /* $group */
    accum *accs;
    size_t naccs;
    /* $unwind */
    char *index_field;
    bool preserve;
    /* $lookup */
    char *from, *local, *foreign;
} stage;

struct agg_pipeline {
    stage *stages;
    size_t n;
};

/* ---------------------------------------------------------------------------------------------
 * Compilation
 * ------------------------------------------------------------------------------------------- */

static void stage_release(stage *s)
{
    matcher_free(s->m);
    projection_free(s->proj);
    sortspec_free(s->sort);
    free(s->name);
    for (size_t i = 0; i < s->nfields; i++) {
        free(s->fields[i].path);
        expr_free(s->fields[i].ex);
    }
    free(s->fields);
    expr_free(s->ex);
    for (size_t i = 0; i < s->naccs; i++) {
        free(s->accs[i].name);
        expr_free(s->accs[i].arg);
    }
    free(s->accs);
    free(s->index_field);
    free(s->from);
    free(s->local);
    free(s->foreign);
}

void agg_pipeline_free(agg_pipeline *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        stage_release(&p->stages[i]);
    free(p->stages);
    free(p);
}

const matcher *agg_pipeline_leading_match(const agg_pipeline *p)
{
    return p->n > 0 && p->stages[0].kind == S_MATCH ? p->stages[0].m : NULL;
}

static int oom(bson_error_t *err)
{
    return mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
}

static int parse_add_fields(stage *s, const bson_value_t *arg, const char *name, bson_error_t *err)
{
    bson_t d;
    bson_iter_t it;
    if (arg->value_type != BSON_TYPE_DOCUMENT)
        return mdb_error(err, 40272, "%s specification stage must be an object, got %s", name,
                         arg->value_type == BSON_TYPE_ARRAY ? "array" : "a non-object");
    bv_as_doc(arg, &d);
    size_t n = bson_count_keys(&d);
    s->fields = calloc(n ? n : 1, sizeof *s->fields);
    if (!s->fields)
        return oom(err);
    bson_iter_init(&it, &d);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (k[0] == '$' || k[0] == '\0')
            return mdb_error(err, 16410, "FieldPath field names may not start with '$'.");
        field_expr *f = &s->fields[s->nfields++];
        f->path = strdup(k);
        if (!f->path)
            return oom(err);
        f->ex = expr_new(bson_iter_value(&it), err);
        if (!f->ex)
            return -1;
    }
    return 0;
}

static int parse_group(stage *s, const bson_value_t *arg, bson_error_t *err)
{
    static const struct {
        const char *name;
        acc_kind kind;
    } accs[] = {
        {"$sum", A_SUM},     {"$avg", A_AVG},   {"$min", A_MIN},   {"$max", A_MAX},
        {"$first", A_FIRST}, {"$last", A_LAST}, {"$push", A_PUSH}, {"$addToSet", A_ADD_TO_SET},
    };
    bson_t d;
    bson_iter_t it;
    if (arg->value_type != BSON_TYPE_DOCUMENT)
        return mdb_error(err, 15947, "a group's fields must be specified in an object");
    bv_as_doc(arg, &d);
    size_t n = bson_count_keys(&d);
    s->accs = calloc(n ? n : 1, sizeof *s->accs);
    if (!s->accs)
        return oom(err);
    bool have_id = false;
    bson_iter_init(&it, &d);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        if (strcmp(k, "_id") == 0) {
            have_id = true;
            s->ex = expr_new(v, err);
            if (!s->ex)
                return -1;
            continue;
        }
        if (strchr(k, '.'))
            return mdb_error(err, 40235, "The field name '%s' cannot contain '.'", k);
        if (k[0] == '$')
            return mdb_error(err, 40236, "The field name '%s' cannot be an operator name", k);
        bson_t ad;
        bson_iter_t ai;
        if (v->value_type != BSON_TYPE_DOCUMENT || !bv_as_doc(v, &ad) || bson_count_keys(&ad) != 1)
            return mdb_error(err, 40234, "The field '%s' must be an accumulator object", k);
        bson_iter_init(&ai, &ad);
        bson_iter_next(&ai);
        const char *op = bson_iter_key(&ai);
        size_t a;
        for (a = 0; a < sizeof accs / sizeof accs[0]; a++)
            if (strcmp(accs[a].name, op) == 0)
                break;
        if (a == sizeof accs / sizeof accs[0])
            return mdb_error(err, 15952, "unknown group operator '%s'", op);
        accum *ac = &s->accs[s->naccs++];
        ac->kind = accs[a].kind;
        ac->name = strdup(k);
        if (!ac->name)
            return oom(err);
        ac->arg = expr_new(bson_iter_value(&ai), err);
        if (!ac->arg)
            return -1;
    }
    if (!have_id)
        return mdb_error(err, 15955, "a group specification must include an _id");
    return 0;
}

static int parse_unwind(stage *s, const bson_value_t *arg, bson_error_t *err)
{
    const char *path = NULL;
    if (arg->value_type == BSON_TYPE_UTF8) {
        path = arg->value.v_utf8.str;
    } else if (arg->value_type == BSON_TYPE_DOCUMENT) {
        bson_t d;
        bson_iter_t it;
        bv_as_doc(arg, &d);
        bson_iter_init(&it, &d);
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            if (strcmp(k, "path") == 0) {
                if (!BSON_ITER_HOLDS_UTF8(&it))
                    return mdb_error(err, 28808,
                                     "expected a string as the path for $unwind stage, got %s",
                                     "a non-string");
                path = bson_iter_utf8(&it, NULL);
            } else if (strcmp(k, "preserveNullAndEmptyArrays") == 0) {
                if (!BSON_ITER_HOLDS_BOOL(&it))
                    return mdb_error(err, 28809,
                                     "expected a boolean for the preserveNullAndEmptyArrays "
                                     "option to $unwind stage");
                s->preserve = bson_iter_bool(&it);
            } else if (strcmp(k, "includeArrayIndex") == 0) {
                if (!BSON_ITER_HOLDS_UTF8(&it))
                    return mdb_error(err, 28810,
                                     "expected a non-empty string for the includeArrayIndex "
                                     "option to $unwind stage");
                const char *ix = bson_iter_utf8(&it, NULL);
                if (ix[0] == '\0' || ix[0] == '$')
                    return mdb_error(err, 28822,
                                     "includeArrayIndex option to $unwind stage should not be "
                                     "prefixed with a '$': %s",
                                     ix);
                s->index_field = strdup(ix);
                if (!s->index_field)
                    return oom(err);
            } else {
                return mdb_error(err, 28811, "unrecognized option to $unwind stage: %s", k);
            }
        }
        if (!path)
            return mdb_error(err, 28812, "no path specified to $unwind stage");
    } else {
        return mdb_error(err, 15981,
                         "expected either a string or an object as specification for $unwind "
                         "stage, got %s",
                         "another type");
    }
    if (path[0] != '$')
        return mdb_error(err, 28818,
                         "path option to $unwind stage should be prefixed with a '$': %s", path);
    if (path[1] == '\0')
        return mdb_error(err, 28818, "$unwind path must not be empty");
    s->name = strdup(path + 1);
    return s->name ? 0 : oom(err);
}

static int parse_lookup(stage *s, const bson_value_t *arg, bson_error_t *err)
{
    if (arg->value_type != BSON_TYPE_DOCUMENT)
        return mdb_error(err, 15983, "the $lookup specification must be an Object");
    bson_t d;
    bson_iter_t it;
    bv_as_doc(arg, &d);
    bson_iter_init(&it, &d);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        char **dst = NULL;
        if (strcmp(k, "from") == 0)
            dst = &s->from;
        else if (strcmp(k, "localField") == 0)
            dst = &s->local;
        else if (strcmp(k, "foreignField") == 0)
            dst = &s->foreign;
        else if (strcmp(k, "as") == 0)
            dst = &s->name;
        else if (strcmp(k, "pipeline") == 0 || strcmp(k, "let") == 0)
            return mdb_error(err, MDB_COMMAND_NOT_SUPPORTED,
                             "$lookup with 'pipeline' or 'let' is not supported by devdb");
        else
            return mdb_error(err, MDB_FAILED_TO_PARSE, "unknown argument to $lookup: %s", k);
        if (!BSON_ITER_HOLDS_UTF8(&it))
            return mdb_error(err, MDB_FAILED_TO_PARSE,
                             "$lookup argument '%s: ...' must be a string, is type %d", k,
                             (int)bson_iter_type(&it));
        free(*dst);
        *dst = strdup(bson_iter_utf8(&it, NULL));
        if (!*dst)
            return oom(err);
    }
    if (!s->from || !s->name || !s->local || !s->foreign)
        return mdb_error(err, MDB_FAILED_TO_PARSE,
                         "$lookup requires 'from', 'localField', 'foreignField' and 'as'");
    return 0;
}

static int parse_stage(stage *s, const char *name, const bson_value_t *arg, bson_error_t *err)
{
    bson_t d;
    if (strcmp(name, "$match") == 0) {
        s->kind = S_MATCH;
        if (arg->value_type != BSON_TYPE_DOCUMENT)
            return mdb_error(err, 15959, "the match filter must be an expression in an object");
        bv_as_doc(arg, &d);
        s->m = matcher_new(&d, err);
        return s->m ? 0 : -1;
    }
    if (strcmp(name, "$project") == 0) {
        s->kind = S_PROJECT;
        if (arg->value_type != BSON_TYPE_DOCUMENT)
            return mdb_error(err, 15969, "$project specification must be an object");
        bv_as_doc(arg, &d);
        s->proj = projection_new_stage(&d, err);
        return s->proj ? 0 : -1;
    }
    if (strcmp(name, "$unset") == 0) {
        /* $unset: "a" or ["a", "b"] is an exclusion projection. */
        s->kind = S_PROJECT;
        bson_t spec = BSON_INITIALIZER;
        if (arg->value_type == BSON_TYPE_UTF8) {
            BSON_APPEND_INT32(&spec, arg->value.v_utf8.str, 0);
        } else if (arg->value_type == BSON_TYPE_ARRAY) {
            bson_iter_t it;
            bv_as_doc(arg, &d);
            bson_iter_init(&it, &d);
            while (bson_iter_next(&it)) {
                if (!BSON_ITER_HOLDS_UTF8(&it)) {
                    bson_destroy(&spec);
                    return mdb_error(err, 31120,
                                     "$unset specification must be a string or an array "
                                     "containing only string values");
                }
                BSON_APPEND_INT32(&spec, bson_iter_utf8(&it, NULL), 0);
            }
        }
        if (bson_empty(&spec)) {
            bson_destroy(&spec);
            return mdb_error(err, 31119,
                             "$unset specification must be a string or an array with at least "
                             "one field");
        }
        s->proj = projection_new_stage(&spec, err);
        bson_destroy(&spec);
        return s->proj ? 0 : -1;
    }
    if (strcmp(name, "$addFields") == 0 || strcmp(name, "$set") == 0) {
        s->kind = S_ADD_FIELDS;
        return parse_add_fields(s, arg, name, err);
    }
    if (strcmp(name, "$replaceRoot") == 0 || strcmp(name, "$replaceWith") == 0) {
        s->kind = S_REPLACE_ROOT;
        const bson_value_t *root = arg;
        bson_iter_t it;
        if (name[8] == 'R') {
            if (arg->value_type != BSON_TYPE_DOCUMENT || !bv_as_doc(arg, &d) ||
                !bson_iter_init_find(&it, &d, "newRoot"))
                return mdb_error(err, 40231, "no newRoot specified for the $replaceRoot stage");
            root = bson_iter_value(&it);
        }
        s->ex = expr_new(root, err);
        return s->ex ? 0 : -1;
    }
    if (strcmp(name, "$sort") == 0) {
        s->kind = S_SORT;
        if (arg->value_type != BSON_TYPE_DOCUMENT)
            return mdb_error(err, 15973, "the $sort key specification must be an object");
        bv_as_doc(arg, &d);
        s->sort = sortspec_new(&d, true, err);
        return s->sort ? 0 : -1;
    }
    if (strcmp(name, "$skip") == 0 || strcmp(name, "$limit") == 0) {
        bool skip = name[1] == 's';
        s->kind = skip ? S_SKIP : S_LIMIT;
        int r = bv_whole_int64(arg, &s->n);
        if (r == -1)
            return skip ? mdb_error(err, 15972, "Argument to $skip must be a number")
                        : mdb_error(err, 15957, "the limit must be specified as a number");
        if (r == -2)
            return mdb_error(err, skip ? 15972 : 15957, "%s must be a whole number", name);
        if (skip && s->n < 0)
            return mdb_error(err, 15956, "Argument to $skip cannot be negative");
        if (!skip && s->n <= 0)
            return mdb_error(err, 15958, "the limit must be positive");
        return 0;
    }
    if (strcmp(name, "$count") == 0) {
        s->kind = S_COUNT;
        if (arg->value_type != BSON_TYPE_UTF8 || arg->value.v_utf8.len == 0)
            return mdb_error(err, 40156, "the count field must be a non-empty string");
        const char *c = arg->value.v_utf8.str;
        if (strlen(c) != arg->value.v_utf8.len)
            return mdb_error(err, 40157, "the count field cannot contain a null byte");
        if (c[0] == '$')
            return mdb_error(err, 40158, "the count field cannot be a $-prefixed path");
        if (strchr(c, '.'))
            return mdb_error(err, 40160, "the count field cannot contain '.'");
        s->name = strdup(c);
        return s->name ? 0 : oom(err);
    }
    if (strcmp(name, "$group") == 0) {
        s->kind = S_GROUP;
        return parse_group(s, arg, err);
    }
    if (strcmp(name, "$unwind") == 0) {
        s->kind = S_UNWIND;
        return parse_unwind(s, arg, err);
    }
    if (strcmp(name, "$lookup") == 0) {
        s->kind = S_LOOKUP;
        return parse_lookup(s, arg, err);
    }
    if (strcmp(name, "$out") == 0 || strcmp(name, "$merge") == 0)
        return mdb_error(err, MDB_COMMAND_NOT_SUPPORTED, "%s is not supported by devdb", name);
    return mdb_error(err, MDB_LOC_UNRECOGNIZED_STAGE, "Unrecognized pipeline stage name: '%s'",
                     name);
}

agg_pipeline *agg_pipeline_new(const bson_t *pipeline, bson_error_t *err)
{
    agg_pipeline *p = calloc(1, sizeof *p);
    bson_iter_t it;
    if (!p) {
        oom(err);
        return NULL;
    }
    size_t n = pipeline ? bson_count_keys(pipeline) : 0;
    if (n > AGG_MAX_STAGES) {
        mdb_error(err, 7749501, "Pipeline length must be no longer than %d stages", AGG_MAX_STAGES);
        goto fail;
    }
    p->stages = calloc(n ? n : 1, sizeof *p->stages);
    if (!p->stages) {
        oom(err);
        goto fail;
    }
    if (n && !bson_iter_init(&it, pipeline)) {
        mdb_error(err, MDB_BAD_VALUE, "invalid BSON in pipeline");
        goto fail;
    }
    while (n && bson_iter_next(&it)) {
        bson_t sd;
        bson_iter_t si;
        if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bv_as_doc(bson_iter_value(&it), &sd) ||
            bson_count_keys(&sd) != 1) {
            mdb_error(err, MDB_LOC_STAGE_SPEC_NOT_OBJECT,
                      "A pipeline stage specification object must contain exactly one field.");
            goto fail;
        }
        bson_iter_init(&si, &sd);
        bson_iter_next(&si);
        stage *s = &p->stages[p->n++];
        if (parse_stage(s, bson_iter_key(&si), bson_iter_value(&si), err) != 0)
            goto fail;
    }
    return p;
fail:
    agg_pipeline_free(p);
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Setting fields in a copy of a document ($addFields, $unwind, $lookup)
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    const char *path;      /* relative to the current level */
    const bson_value_t *v; /* EOD: remove */
    bool used;
} fset;

/* Writes `doc` (may be NULL) with fields `f` set into out. Paths are relative to this level. */
static void set_fields(const bson_t *doc, fset *f, size_t n, bson_t *out, int depth)
{
    bson_iter_t it;
    for (size_t i = 0; i < n; i++)
        f[i].used = false;
    if (doc && bson_iter_init(&it, doc)) {
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            size_t kl = bson_iter_key_len(&it);
            const bson_value_t *direct = NULL;
            size_t nsub = 0;
            for (size_t i = 0; i < n; i++) {
                if (strncmp(f[i].path, k, kl) != 0)
                    continue;
                if (f[i].path[kl] == '\0') {
                    direct = f[i].v;
                    f[i].used = true;
                } else if (f[i].path[kl] == '.') {
                    nsub++;
                }
            }
            if (direct) {
                if (direct->value_type != BSON_TYPE_EOD)
                    bson_append_value(out, k, (int)kl, direct);
                continue;
            }
            if (nsub == 0 || depth > 100) {
                bson_append_iter(out, NULL, 0, &it);
                continue;
            }
            fset *sub = calloc(nsub, sizeof *sub);
            if (!sub) {
                bson_append_iter(out, NULL, 0, &it);
                continue;
            }
            size_t w = 0;
            for (size_t i = 0; i < n; i++)
                if (strncmp(f[i].path, k, kl) == 0 && f[i].path[kl] == '.') {
                    sub[w].path = f[i].path + kl + 1;
                    sub[w++].v = f[i].v;
                    f[i].used = true;
                }
            bson_t child, subdoc;
            bool is_doc = BSON_ITER_HOLDS_DOCUMENT(&it) && bv_as_doc(bson_iter_value(&it), &subdoc);
            bson_append_document_begin(out, k, (int)kl, &child);
            set_fields(is_doc ? &subdoc : NULL, sub, nsub, &child, depth + 1);
            bson_append_document_end(out, &child);
            free(sub);
        }
    }
    /* Fields the document lacks, in spec order, grouped by first component. */
    for (size_t i = 0; i < n; i++) {
        if (f[i].used)
            continue;
        const char *dot = strchr(f[i].path, '.');
        if (!dot) {
            f[i].used = true;
            if (f[i].v->value_type != BSON_TYPE_EOD)
                bson_append_value(out, f[i].path, -1, f[i].v);
            continue;
        }
        size_t kl = (size_t)(dot - f[i].path);
        size_t nsub = 0;
        for (size_t j = i; j < n; j++)
            if (!f[j].used && strncmp(f[j].path, f[i].path, kl) == 0 && f[j].path[kl] == '.')
                nsub++;
        fset *sub = calloc(nsub, sizeof *sub);
        if (!sub)
            return;
        size_t w = 0;
        for (size_t j = i; j < n; j++)
            if (!f[j].used && strncmp(f[j].path, f[i].path, kl) == 0 && f[j].path[kl] == '.') {
                sub[w].path = f[j].path + kl + 1;
                sub[w++].v = f[j].v;
                f[j].used = true;
            }
        bson_t child;
        bson_append_document_begin(out, f[i].path, (int)kl, &child);
        if (depth <= 100)
            set_fields(NULL, sub, nsub, &child, depth + 1);
        bson_append_document_end(out, &child);
        free(sub);
    }
}

/* ---------------------------------------------------------------------------------------------
 * $group state
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    bson_value_t v; /* sum (numeric), min/max/first/last (owned copy), EOD = none */
    int64_t count;
    bool set;
    bson_t *arr; /* $push / $addToSet */
    uint32_t arr_n;
} acc_state;

typedef struct {
    bson_value_t id; /* owned */
    uint64_t hash;
    acc_state *accs;
} group;

typedef struct {
    group *groups; /* in first-seen order */
    size_t n, cap;
    size_t *table; /* open addressing: index + 1, 0 = empty */
    size_t tcap;
    size_t mem;
} group_table;

static uint64_t mix(uint64_t h, uint64_t x)
{
    h ^= x + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h;
}

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ULL;
    return h;
}

/* Consistent with bv_compare equality: numbers hash by value, documents by fields. */
static uint64_t value_hash_d(const bson_value_t *v, int depth)
{
    if (depth > 200)
        return 0; /* deeper levels only refine the hash; equality is checked fully */
    uint64_t h = (uint64_t)bv_canonical_type(v->value_type) * 31;
    switch (v->value_type) {
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_DECIMAL128: {
        double d = bv_as_double(v);
        if (d == 0)
            d = 0; /* -0.0 == 0 */
        if (isnan(d))
            return mix(h, 7);
        return hash_bytes(h, &d, sizeof d);
    }
    case BSON_TYPE_UTF8:
        return hash_bytes(h, v->value.v_utf8.str, v->value.v_utf8.len);
    case BSON_TYPE_SYMBOL:
        return hash_bytes(h, v->value.v_symbol.symbol, v->value.v_symbol.len);
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY: {
        bson_iter_t it;
        if (!bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len))
            return h;
        while (bson_iter_next(&it)) {
            h = hash_bytes(h, bson_iter_key(&it), bson_iter_key_len(&it));
            h = mix(h, value_hash_d(bson_iter_value(&it), depth + 1));
        }
        return h;
    }
    case BSON_TYPE_OID:
        return hash_bytes(h, v->value.v_oid.bytes, 12);
    case BSON_TYPE_BOOL:
        return mix(h, v->value.v_bool);
    case BSON_TYPE_DATE_TIME:
        return mix(h, (uint64_t)v->value.v_datetime);
    default:
        return h; /* other types: equal hash, compared fully */
    }
}

static uint64_t value_hash(const bson_value_t *v)
{
    return value_hash_d(v, 0);
}

static void group_table_release(group_table *t, size_t naccs)
{
    for (size_t i = 0; i < t->n; i++) {
        group *g = &t->groups[i];
        if (g->id.value_type != BSON_TYPE_EOD)
            bson_value_destroy(&g->id);
        for (size_t a = 0; a < naccs; a++) {
            acc_state *s = &g->accs[a];
            if (s->v.value_type != BSON_TYPE_EOD)
                bson_value_destroy(&s->v);
            if (s->arr)
                bson_destroy(s->arr);
        }
        free(g->accs);
    }
    free(t->groups);
    free(t->table);
    memset(t, 0, sizeof *t);
}

static int table_grow(group_table *t, bson_error_t *err)
{
    size_t ncap = t->tcap ? t->tcap * 2 : 64;
    size_t *nt = calloc(ncap, sizeof *nt);
    if (!nt)
        return oom(err);
    for (size_t i = 0; i < t->n; i++) {
        size_t j = t->groups[i].hash & (ncap - 1);
        while (nt[j])
            j = (j + 1) & (ncap - 1);
        nt[j] = i + 1;
    }
    free(t->table);
    t->table = nt;
    t->tcap = ncap;
    return 0;
}

/* Finds or creates the group for `id` (taken over: released here if a group exists). */
static group *group_get(group_table *t, bson_value_t *id, size_t naccs, bson_error_t *err)
{
    uint64_t h = value_hash(id);
    if (t->tcap) {
        size_t j = h & (t->tcap - 1);
        while (t->table[j]) {
            group *g = &t->groups[t->table[j] - 1];
            if (g->hash == h && bv_compare(&g->id, id) == 0) {
                if (id->value_type != BSON_TYPE_EOD)
                    bson_value_destroy(id);
                return g;
            }
            j = (j + 1) & (t->tcap - 1);
        }
    }
    if ((t->n + 1) * 2 > t->tcap && table_grow(t, err) != 0)
        goto fail;
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 16;
        group *ng = realloc(t->groups, ncap * sizeof *ng);
        if (!ng) {
            oom(err);
            goto fail;
        }
        t->groups = ng;
        t->cap = ncap;
    }
    group *g = &t->groups[t->n];
    memset(g, 0, sizeof *g);
    g->accs = calloc(naccs ? naccs : 1, sizeof *g->accs);
    if (!g->accs) {
        oom(err);
        goto fail;
    }
    for (size_t a = 0; a < naccs; a++)
        g->accs[a].v.value_type = BSON_TYPE_EOD;
    g->id = *id;
    g->hash = h;
    size_t j = h & (t->tcap - 1);
    while (t->table[j])
        j = (j + 1) & (t->tcap - 1);
    t->table[j] = t->n + 1;
    t->n++;
    t->mem += 64 + naccs * sizeof(acc_state);
    return g;
fail:
    if (id->value_type != BSON_TYPE_EOD)
        bson_value_destroy(id);
    return NULL;
}

static size_t value_size(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_UTF8:
        return v->value.v_utf8.len + 16;
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY:
        return v->value.v_doc.data_len + 16;
    default:
        return 16;
    }
}

/* Folds value v (owned; taken over) into accumulator state s. */
static int acc_add(const accum *a, acc_state *s, bson_value_t *v, group_table *t, bson_error_t *err)
{
    bool missing = v->value_type == BSON_TYPE_EOD;
    switch (a->kind) {
    case A_SUM:
    case A_AVG:
        if (!missing && bv_is_number(v->value_type)) {
            if (s->v.value_type == BSON_TYPE_EOD) {
                s->v.value_type = BSON_TYPE_INT32;
                s->v.value.v_int32 = 0;
            }
            expr_num_add(&s->v, v);
            s->count++;
        }
        break;
    case A_MIN:
    case A_MAX:
        if (missing || v->value_type == BSON_TYPE_NULL || v->value_type == BSON_TYPE_UNDEFINED)
            break;
        if (s->v.value_type == BSON_TYPE_EOD ||
            bv_compare(v, &s->v) * (a->kind == A_MAX ? 1 : -1) > 0) {
            if (s->v.value_type != BSON_TYPE_EOD)
                bson_value_destroy(&s->v);
            s->v = *v;
            t->mem += value_size(v);
            return 0; /* taken over */
        }
        break;
    case A_FIRST:
        if (!s->set) {
            s->set = true;
            s->v = *v; /* may be EOD: $first of missing is null at output */
            t->mem += value_size(v);
            return 0;
        }
        break;
    case A_LAST:
        if (s->v.value_type != BSON_TYPE_EOD)
            bson_value_destroy(&s->v);
        s->set = true;
        s->v = *v;
        return 0;
    case A_PUSH:
    case A_ADD_TO_SET:
        if (missing)
            break;
        if (!s->arr && !(s->arr = bson_new()))
            return oom(err);
        if (a->kind == A_ADD_TO_SET) {
            bson_iter_t it;
            bool dup = false;
            bson_iter_init(&it, s->arr);
            while (!dup && bson_iter_next(&it))
                dup = bv_compare(bson_iter_value(&it), v) == 0;
            if (dup)
                break;
        }
        {
            char kb[16];
            const char *k;
            bson_uint32_to_string(s->arr_n++, &k, kb, sizeof kb);
            bson_append_value(s->arr, k, -1, v);
            t->mem += value_size(v);
        }
        break;
    }
    if (!missing)
        bson_value_destroy(v);
    return 0;
}

static void acc_output(const accum *a, const acc_state *s, bson_t *out)
{
    switch (a->kind) {
    case A_SUM:
        if (s->v.value_type == BSON_TYPE_EOD)
            BSON_APPEND_INT32(out, a->name, 0);
        else
            bson_append_value(out, a->name, -1, &s->v);
        break;
    case A_AVG:
        if (s->count == 0)
            BSON_APPEND_NULL(out, a->name);
        else
            BSON_APPEND_DOUBLE(out, a->name, bv_as_double(&s->v) / (double)s->count);
        break;
    case A_MIN:
    case A_MAX:
    case A_FIRST:
    case A_LAST:
        if (s->v.value_type == BSON_TYPE_EOD)
            BSON_APPEND_NULL(out, a->name);
        else
            bson_append_value(out, a->name, -1, &s->v);
        break;
    case A_PUSH:
    case A_ADD_TO_SET:
        if (s->arr)
            BSON_APPEND_ARRAY(out, a->name, s->arr);
        else {
            bson_t empty = BSON_INITIALIZER;
            BSON_APPEND_ARRAY(out, a->name, &empty);
        }
        break;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Running
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    bson_t *scratch; /* heap: bson_t needs 128-byte alignment, calloc'd arrays do not give it */
    int64_t count;   /* $skip/$limit/$count progress */
    bson_t **buf;    /* $sort */
    size_t nbuf, capbuf, mem;
    group_table groups;
} stage_state;

typedef struct {
    const agg_pipeline *p;
    const agg_input *in;
    agg_emit_fn emit;
    void *emit_ctx;
    bson_error_t *err;
    stage_state *st;
    bool stop; /* the source may stop: a satisfied $limit with no buffering before it */
} agg_run;

static int push(agg_run *r, size_t i, const bson_t *doc);

static bool buffering_before(const agg_pipeline *p, size_t i)
{
    for (size_t k = 0; k < i; k++)
        if (p->stages[k].kind == S_SORT || p->stages[k].kind == S_GROUP ||
            p->stages[k].kind == S_COUNT)
            return true;
    return false;
}

typedef struct {
    bson_t arr;
    uint32_t n;
    size_t bytes;
} lookup_acc;

static int lookup_emit(void *ctx, const bson_t *doc, bson_error_t *err)
{
    lookup_acc *a = ctx;
    char kb[16];
    const char *k;
    a->bytes += doc->len;
    if (a->bytes > MAX_OUTPUT_SIZE)
        return mdb_error(err, 4568,
                         "Total size of documents in $lookup exceeds maximum document "
                         "size");
    bson_uint32_to_string(a->n++, &k, kb, sizeof kb);
    bson_append_document(&a->arr, k, -1, doc);
    return 0;
}

typedef struct {
    bson_t in;
    uint32_t n;
    bool has_null;
} local_vals;

static bool local_cb(const bson_value_t *v, void *ctx)
{
    local_vals *l = ctx;
    char kb[16];
    const char *k;
    if (v->value_type == BSON_TYPE_EOD || v->value_type == BSON_TYPE_NULL ||
        v->value_type == BSON_TYPE_UNDEFINED) {
        if (l->has_null)
            return false;
        l->has_null = true;
        bson_uint32_to_string(l->n++, &k, kb, sizeof kb);
        bson_append_null(&l->in, k, -1);
        return false;
    }
    if (v->value_type == BSON_TYPE_REGEX)
        return false; /* a regex would turn $in into pattern matching */
    bson_uint32_to_string(l->n++, &k, kb, sizeof kb);
    bson_append_value(&l->in, k, -1, v);
    return false;
}

static int run_lookup(agg_run *r, size_t i, const bson_t *doc)
{
    const stage *s = &r->p->stages[i];
    stage_state *st = &r->st[i];
    if (!r->in->foreign)
        return mdb_error(r->err, MDB_INTERNAL_ERROR, "$lookup is not available here");
    local_vals l = {.n = 0};
    bson_init(&l.in);
    bv_path_visit(doc, s->local,
                  BV_PATH_EXPAND_LEAF | BV_PATH_NO_LEAF_ARRAY | BV_PATH_REPORT_MISSING, local_cb,
                  &l);
    bson_t filter = BSON_INITIALIZER, cond;
    bson_append_document_begin(&filter, s->foreign, -1, &cond);
    bson_append_array(&cond, "$in", 3, &l.in);
    bson_append_document_end(&filter, &cond);
    bson_destroy(&l.in);
    matcher *m = matcher_new(&filter, r->err);
    bson_destroy(&filter);
    if (!m)
        return -1;
    lookup_acc acc = {.n = 0};
    bson_init(&acc.arr);
    int rc = r->in->foreign(r->in->ctx, s->from, m, lookup_emit, &acc, r->err);
    matcher_free(m);
    if (rc == 0) {
        bson_value_t av = {.value_type = BSON_TYPE_ARRAY};
        av.value.v_doc.data = (uint8_t *)bson_get_data(&acc.arr);
        av.value.v_doc.data_len = acc.arr.len;
        fset f = {.path = s->name, .v = &av};
        bson_reinit(st->scratch);
        set_fields(doc, &f, 1, st->scratch, 0);
    }
    bson_destroy(&acc.arr);
    if (rc != 0)
        return -1;
    return push(r, i + 1, st->scratch);
}

static int run_unwind(agg_run *r, size_t i, const bson_t *doc)
{
    const stage *s = &r->p->stages[i];
    bson_value_t v;
    bool found = bv_path_get(doc, s->name, &v);
    if (found && v.value_type == BSON_TYPE_ARRAY) {
        bson_t arr;
        bson_iter_t it;
        bv_as_doc(&v, &arr);
        if (!bson_iter_init(&it, &arr))
            return 0;
        int64_t idx = 0;
        bool any = false;
        while (bson_iter_next(&it)) {
            any = true;
            bson_value_t e = *bson_iter_value(&it);
            bson_value_t ix = {.value_type = BSON_TYPE_INT64};
            ix.value.v_int64 = idx++;
            fset f[2] = {{.path = s->name, .v = &e}, {.path = s->index_field, .v = &ix}};
            /* Each element gets its own output document; the next stage may keep a pointer
             * only until we return, so one scratch buffer per element is enough. */
            bson_t out = BSON_INITIALIZER;
            set_fields(doc, f, s->index_field ? 2 : 1, &out, 0);
            int rc = push(r, i + 1, &out);
            bson_destroy(&out);
            if (rc != 0)
                return rc;
            if (r->stop)
                return 0;
        }
        if (any || !s->preserve)
            return 0;
        /* Empty array with preserve: the document passes without the field... as MongoDB. */
        bson_value_t nullv = {.value_type = BSON_TYPE_NULL};
        bson_value_t eod = {.value_type = BSON_TYPE_EOD};
        fset f[2] = {{.path = s->name, .v = &eod}, {.path = s->index_field, .v = &nullv}};
        bson_t out = BSON_INITIALIZER;
        set_fields(doc, f, s->index_field ? 2 : 1, &out, 0);
        int rc = push(r, i + 1, &out);
        bson_destroy(&out);
        return rc;
    }
    bool nullish = !found || v.value_type == BSON_TYPE_NULL || v.value_type == BSON_TYPE_UNDEFINED;
    if (nullish && !s->preserve)
        return 0;
    if (!s->index_field)
        return push(r, i + 1, doc);
    bson_value_t nullv = {.value_type = BSON_TYPE_NULL};
    fset f = {.path = s->index_field, .v = &nullv};
    bson_t out = BSON_INITIALIZER;
    set_fields(doc, &f, 1, &out, 0);
    int rc = push(r, i + 1, &out);
    bson_destroy(&out);
    return rc;
}

static int run_group(agg_run *r, size_t i, const bson_t *doc)
{
    const stage *s = &r->p->stages[i];
    stage_state *st = &r->st[i];
    bson_value_t id;
    if (expr_eval(s->ex, doc, &id, r->err) != 0)
        return -1;
    if (id.value_type == BSON_TYPE_EOD)
        id.value_type = BSON_TYPE_NULL;
    size_t idsize = value_size(&id), before = st->groups.n;
    group *g = group_get(&st->groups, &id, s->naccs, r->err);
    if (!g)
        return -1;
    if (st->groups.n > before)
        st->groups.mem += idsize;
    for (size_t a = 0; a < s->naccs; a++) {
        bson_value_t v;
        if (expr_eval(s->accs[a].arg, doc, &v, r->err) != 0)
            return -1;
        if (acc_add(&s->accs[a], &g->accs[a], &v, &st->groups, r->err) != 0)
            return -1;
    }
    if (st->groups.mem > AGG_MEM_CAP)
        return mdb_error(r->err, 16945,
                         "Exceeded memory limit for $group, but didn't allow external sort. Pass "
                         "allowDiskUse:true to opt in.");
    return 0;
}

static int push(agg_run *r, size_t i, const bson_t *doc)
{
    if (i == r->p->n)
        return r->emit(r->emit_ctx, doc, r->err);
    const stage *s = &r->p->stages[i];
    stage_state *st = &r->st[i];
    switch (s->kind) {
    case S_MATCH:
        return matcher_matches(s->m, doc) ? push(r, i + 1, doc) : 0;
    case S_PROJECT:
        bson_reinit(st->scratch);
        if (projection_apply_ex(s->proj, doc, st->scratch, r->err) != 0)
            return -1;
        return push(r, i + 1, st->scratch);
    case S_ADD_FIELDS: {
        bson_value_t *vals = calloc(s->nfields, sizeof *vals);
        fset *f = calloc(s->nfields, sizeof *f);
        int rc = -1;
        size_t done = 0;
        if (!vals || !f) {
            oom(r->err);
            goto af_out;
        }
        for (; done < s->nfields; done++) {
            if (expr_eval(s->fields[done].ex, doc, &vals[done], r->err) != 0)
                goto af_out;
            f[done].path = s->fields[done].path;
            f[done].v = &vals[done];
        }
        bson_reinit(st->scratch);
        set_fields(doc, f, s->nfields, st->scratch, 0);
        rc = 0;
    af_out:
        for (size_t k = 0; vals && k < done; k++)
            if (vals[k].value_type != BSON_TYPE_EOD)
                bson_value_destroy(&vals[k]);
        free(vals);
        free(f);
        return rc == 0 ? push(r, i + 1, st->scratch) : -1;
    }
    case S_REPLACE_ROOT: {
        bson_value_t v;
        if (expr_eval(s->ex, doc, &v, r->err) != 0)
            return -1;
        if (v.value_type != BSON_TYPE_DOCUMENT) {
            if (v.value_type != BSON_TYPE_EOD)
                bson_value_destroy(&v);
            return mdb_error(r->err, 40228,
                             "'newRoot' expression must evaluate to an object, but resulting "
                             "value was of type: %s",
                             v.value_type == BSON_TYPE_EOD ? "missing" : "a non-object");
        }
        bson_t d;
        bv_as_doc(&v, &d);
        bson_reinit(st->scratch);
        bson_concat(st->scratch, &d);
        bson_value_destroy(&v);
        return push(r, i + 1, st->scratch);
    }
    case S_SKIP:
        if (st->count < s->n) {
            st->count++;
            return 0;
        }
        return push(r, i + 1, doc);
    case S_LIMIT:
        if (st->count >= s->n)
            return 0;
        st->count++;
        if (st->count >= s->n && !buffering_before(r->p, i))
            r->stop = true;
        return push(r, i + 1, doc);
    case S_COUNT:
        st->count++;
        return 0;
    case S_SORT: {
        if (st->nbuf == st->capbuf) {
            size_t ncap = st->capbuf ? st->capbuf * 2 : 64;
            bson_t **nb = realloc(st->buf, ncap * sizeof *nb);
            if (!nb)
                return oom(r->err);
            st->buf = nb;
            st->capbuf = ncap;
        }
        st->mem += doc->len + 64;
        if (st->mem > AGG_MEM_CAP)
            return mdb_error(r->err, MDB_LOC_SORT_MEMORY,
                             "Sort exceeded memory limit of %zu bytes, but did not opt in to "
                             "external sorting. Aborting operation. Pass allowDiskUse:true to "
                             "opt in.",
                             AGG_MEM_CAP);
        bson_t *c = bson_copy(doc);
        if (!c)
            return oom(r->err);
        st->buf[st->nbuf++] = c;
        return 0;
    }
    case S_GROUP:
        return run_group(r, i, doc);
    case S_UNWIND:
        return run_unwind(r, i, doc);
    case S_LOOKUP:
        return run_lookup(r, i, doc);
    }
    return 0;
}

/* End of input at stage i: buffering stages pass their results on, then the next stage ends. */
static int flush(agg_run *r, size_t i)
{
    if (i == r->p->n)
        return 0;
    const stage *s = &r->p->stages[i];
    stage_state *st = &r->st[i];
    r->stop = false; /* stages after a buffering one run to completion */
    if (s->kind == S_SORT) {
        if (sortspec_sort(s->sort, (const bson_t **)st->buf, st->nbuf, r->err) != 0)
            return -1;
        for (size_t k = 0; k < st->nbuf; k++) {
            int rc = push(r, i + 1, st->buf[k]);
            bson_destroy(st->buf[k]);
            st->buf[k] = NULL;
            if (rc != 0)
                return -1;
            if (r->stop)
                break;
        }
    } else if (s->kind == S_COUNT) {
        if (st->count > 0) {
            bson_reinit(st->scratch);
            if (st->count <= INT32_MAX)
                BSON_APPEND_INT32(st->scratch, s->name, (int32_t)st->count);
            else
                BSON_APPEND_INT64(st->scratch, s->name, st->count);
            if (push(r, i + 1, st->scratch) != 0)
                return -1;
        }
    } else if (s->kind == S_GROUP) {
        group_table *t = &st->groups;
        for (size_t k = 0; k < t->n && !r->stop; k++) {
            group *g = &t->groups[k];
            bson_reinit(st->scratch);
            bson_append_value(st->scratch, "_id", 3, &g->id);
            for (size_t a = 0; a < s->naccs; a++)
                acc_output(&s->accs[a], &g->accs[a], st->scratch);
            if (push(r, i + 1, st->scratch) != 0)
                return -1;
        }
    }
    return flush(r, i + 1);
}

int agg_pipeline_run(const agg_pipeline *p, const agg_input *in, agg_emit_fn emit, void *emit_ctx,
                     bson_error_t *err)
{
    int rc = -1;
    agg_run r = {.p = p, .in = in, .emit = emit, .emit_ctx = emit_ctx, .err = err};
    r.st = calloc(p->n ? p->n : 1, sizeof *r.st);
    if (!r.st)
        return oom(err);
    for (size_t i = 0; i < p->n; i++)
        if (!(r.st[i].scratch = bson_new())) {
            oom(err);
            goto out;
        }
    for (;;) {
        if (r.stop)
            break;
        const bson_t *doc = NULL;
        int got = in->next(in->ctx, &doc, err);
        if (got < 0)
            goto out;
        if (got == 0)
            break;
        if (push(&r, 0, doc) != 0)
            goto out;
    }
    if (flush(&r, 0) != 0)
        goto out;
    rc = 0;
out:
    for (size_t i = 0; i < p->n; i++) {
        stage_state *st = &r.st[i];
        bson_destroy(st->scratch);
        for (size_t k = 0; k < st->nbuf; k++)
            if (st->buf[k])
                bson_destroy(st->buf[k]);
        free(st->buf);
        group_table_release(&st->groups, p->stages[i].naccs);
    }
    free(r.st);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Collecting results
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    bson_t **docs;
    size_t n, cap, bytes, max;
} collector;

static int collect_emit(void *ctx, const bson_t *doc, bson_error_t *err)
{
    collector *c = ctx;
    c->bytes += doc->len;
    if (c->bytes > c->max)
        return mdb_error(err, MDB_LOC_SORT_MEMORY, "aggregation result exceeds %zu bytes", c->max);
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 16;
        bson_t **nd = realloc(c->docs, ncap * sizeof *nd);
        if (!nd)
            return oom(err);
        c->docs = nd;
        c->cap = ncap;
    }
    if (!(c->docs[c->n] = bson_copy(doc)))
        return oom(err);
    c->n++;
    return 0;
}

void agg_results_free(bson_t **docs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        bson_destroy(docs[i]);
    free(docs);
}

int agg_pipeline_collect(const agg_pipeline *p, const agg_input *in, size_t max_bytes,
                         bson_t ***out, size_t *n, bson_error_t *err)
{
    collector c = {.max = max_bytes ? max_bytes : AGG_MEM_CAP};
    if (agg_pipeline_run(p, in, collect_emit, &c, err) != 0) {
        agg_results_free(c.docs, c.n);
        return -1;
    }
    *out = c.docs;
    *n = c.n;
    return 0;
}
