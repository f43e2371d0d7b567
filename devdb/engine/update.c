/*
 * update.c: update documents compiled once and applied to documents.
 *
 * updater_new copies the update document and turns an operator update into a list of
 * operations (operator, path, argument), checks argument shapes and path conflicts (the
 * errors MongoDB reports before touching any document), and sorts the operations by path,
 * component by component: MongoDB 4.4 applies an update's modifications in that order, which
 * fixes the order in which new fields are appended.
 *
 * updater_apply loads the document lazily into a mutable tree (engine/mdoc.h): only the
 * containers an operation descends into are expanded, every value keeps pointing into the
 * original document or into the updater's copy of the update, and field names point into either
 * as well. The operations edit the tree; the tree is then written out once (_id first). All tree
 * memory belongs to one apply call and is freed before it returns.
 *
 * Numeric results follow MongoDB's SafeNum: int32 op int32 stays int32 unless it overflows
 * (then int64); int64 overflow is an error; any double makes a double; decimal128 operands give
 * decimal128 (computed in long double, which is exact for the values devdb sees in practice).
 */
#include "engine/update.h"
#include "base/bsonval.h"
#include "base/errors.h"
#include "engine/match.h"
#include "engine/aggregate.h"
#include "engine/sortspec.h"
#include "engine/mdoc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define MAX_DOC_SIZE (16 * 1024 * 1024)
#define MAX_PARTS    BV_PATH_MAX_PARTS

typedef enum {
    U_SET,
    U_SET_ON_INSERT,
    U_UNSET,
    U_INC,
    U_MUL,
    U_MIN,
    U_MAX,
    U_RENAME,
    U_CURRENT_DATE,
    U_PUSH,
    U_ADD_TO_SET,
    U_PULL,
    U_PULL_ALL,
    U_POP,
} uop_kind;

static const struct {
    const char *name;
    uop_kind kind;
} op_names[] = {
    {"$set", U_SET},
    {"$setOnInsert", U_SET_ON_INSERT},
    {"$unset", U_UNSET},
    {"$inc", U_INC},
    {"$mul", U_MUL},
    {"$min", U_MIN},
    {"$max", U_MAX},
    {"$rename", U_RENAME},
    {"$currentDate", U_CURRENT_DATE},
    {"$push", U_PUSH},
    {"$addToSet", U_ADD_TO_SET},
    {"$pull", U_PULL},
    {"$pullAll", U_PULL_ALL},
    {"$pop", U_POP},
};

typedef struct {
    uop_kind kind;
    const char *opname;
    const char *path; /* NUL-terminated, in the update copy */
    const char *to;   /* $rename target */
    bson_value_t arg;
    /* $push / $addToSet modifiers */
    bool has_each;
    bson_value_t each; /* array of values to add */
    bool has_slice, has_position;
    int64_t slice, position;
    int sort_dir;        /* $push $sort: 1 / -1 on whole values, 0: none or by spec */
    sortspec *sort_spec; /* $push $sort: {field: dir} on document elements */
    /* $pull with a condition */
    matcher *pull_m;  /* for {field: cond} on document elements, or {"v": cond} on values */
    bool pull_values; /* pull_m tests {"v": element} rather than the element document */
    bool cur_date_ts; /* $currentDate: timestamp instead of date */
    size_t order;     /* position in the update document, for conflict messages */
} uop;

static bool same_value(const bson_value_t *a, const bson_value_t *b);

/* Most $set fields apply_flat_set handles in one update. */
#define FLAT_SET_MAX 32

/* An updater is one allocation with a copy of the update document's bytes behind it (udata:
 * ops point into it); a pipeline update keeps its stages as a bson_t (the pipeline holds it). */
struct updater {
    bson_t *stages; /* pipeline-style update: the stages (heap copy), else NULL */
    bool replacement;
    agg_pipeline *pipe; /* pipeline-style update */
    uop *ops;
    size_t nops;
    bool flat_set; /* only $set of top-level fields other than _id (apply_flat_set) */
    uint32_t ulen;
    uint8_t udata[]; /* the update document (ulen bytes; empty for a pipeline) */
};

/* A read-only view of the update document. */
static void update_view(const updater *u, bson_t *out)
{
    bson_init_static(out, u->udata, u->ulen);
}

/* A zeroed updater with room for `len` bytes of update document. malloc + memset rather than
 * calloc: glibc's calloc bypasses the per-thread cache, and a receipts update compiles ~500
 * updaters per command. */
static updater *updater_alloc(uint32_t len)
{
    updater *u = malloc(sizeof *u + len);
    if (u)
        memset(u, 0, sizeof *u);
    return u;
}

/* ---------------------------------------------------------------------------------------------
 * Value rendering for error messages (MongoDB's shell-like style: {_id: 1, a: "x"})
 * ------------------------------------------------------------------------------------------- */

/* "{_id: 1}" for a document, or "{}" when it has no _id. */
static void render_id(const bson_t *doc, char *buf, size_t cap)
{
    bson_iter_t it;
    if (doc && bson_iter_init_find(&it, doc, "_id")) {
        char v[200];
        bv_render_shell(bson_iter_value(&it), v, sizeof v);
        snprintf(buf, cap, "{_id: %s}", v);
    } else {
        snprintf(buf, cap, "{}");
    }
}

/* ---------------------------------------------------------------------------------------------
 * Paths
 * ------------------------------------------------------------------------------------------- */

/* Component-wise order: "a" < "a.b" < "a-b" (a path sorts right before its sub-paths). */
static int path_cmp(const char *a, const char *b)
{
    for (;;) {
        const char *da = strchr(a, '.'), *db = strchr(b, '.');
        size_t la = da ? (size_t)(da - a) : strlen(a), lb = db ? (size_t)(db - b) : strlen(b);
        size_t m = la < lb ? la : lb;
        int c = memcmp(a, b, m);
        if (c)
            return c;
        if (la != lb)
            return la < lb ? -1 : 1;
        if (!da || !db)
            return (da != NULL) - (db != NULL);
        a = da + 1;
        b = db + 1;
    }
}

/* Is `a` equal to `b` or a prefix of it ("a" and "a.b")? */
static bool path_prefix(const char *a, const char *b)
{
    size_t la = strlen(a);
    return strncmp(a, b, la) == 0 && (b[la] == '\0' || b[la] == '.');
}

/* ---------------------------------------------------------------------------------------------
 * Parsing
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    const char *path;
    size_t order;
} path_ref;

static int cmp_path_ref(const void *x, const void *y)
{
    const path_ref *a = x, *b = y;
    int c = path_cmp(a->path, b->path);
    if (c)
        return c;
    return (a->order > b->order) - (a->order < b->order);
}

static int cmp_uop(const void *x, const void *y)
{
    const uop *a = x, *b = y;
    int c = path_cmp(a->path, b->path);
    if (c)
        return c;
    return (a->order > b->order) - (a->order < b->order);
}

static int check_path(const char *path, bson_error_t *err)
{
    if (path[0] == '\0')
        return mdb_error(err, MDB_EMPTY_FIELD_NAME, "An empty update path is not valid.");
    size_t len = strlen(path);
    if (path[0] == '.' || path[len - 1] == '.' || strstr(path, ".."))
        return mdb_error(err, MDB_EMPTY_FIELD_NAME,
                         "The update path '%s' contains an empty field name, which is not "
                         "allowed.",
                         path);
    if (len > BV_PATH_MAX)
        return mdb_error(err, MDB_BAD_VALUE, "update path too long");
    mdoc_part parts[MAX_PARTS];
    size_t n = mdoc_split_path(path, parts, MAX_PARTS);
    if (n == 0)
        return mdb_error(err, MDB_BAD_VALUE, "update path has too many components");
    for (size_t i = 0; i < n; i++) {
        if (parts[i].s[0] == '$') {
            if (parts[i].n == 1 || (parts[i].n >= 2 && parts[i].s[1] == '['))
                return mdb_error(err, MDB_BAD_VALUE,
                                 "positional update operators are not supported by devdb: '%s'",
                                 path);
            return mdb_error(err, MDB_DOLLAR_PREFIXED_FIELD_NAME,
                             "The dollar ($) prefixed field '%.*s' in '%s' is not valid for "
                             "storage.",
                             (int)parts[i].n, parts[i].s, path);
        }
    }
    return 0;
}

static bool whole_number(const bson_value_t *v, int64_t *out)
{
    return bv_whole_int64(v, out) == 0;
}

/* $push / $addToSet argument: a value, or {$each: [...], $slice, $position, $sort}. */
static int parse_each(uop *o, bson_error_t *err)
{
    bson_t d;
    bson_iter_t it;
    if (o->arg.value_type != BSON_TYPE_DOCUMENT || !bv_as_doc(&o->arg, &d) ||
        !bson_iter_init_find(&it, &d, "$each"))
        return 0;
    bson_iter_init(&it, &d);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        if (strcmp(k, "$each") == 0) {
            if (v->value_type != BSON_TYPE_ARRAY)
                return mdb_error(err, MDB_BAD_VALUE,
                                 "The argument to $each in %s must be an array but it was of "
                                 "type: %s",
                                 o->opname, bv_type_name(v->value_type));
            o->has_each = true;
            o->each = *v;
        } else if (o->kind == U_ADD_TO_SET) {
            return mdb_error(err, MDB_BAD_VALUE,
                             "Found unexpected fields after $each in $addToSet: %s", k);
        } else if (strcmp(k, "$slice") == 0) {
            if (!whole_number(v, &o->slice))
                return mdb_error(err, MDB_BAD_VALUE,
                                 "The value for $slice must be an integer value but was given "
                                 "type: %s",
                                 bv_type_name(v->value_type));
            o->has_slice = true;
        } else if (strcmp(k, "$position") == 0) {
            if (!whole_number(v, &o->position))
                return mdb_error(err, MDB_BAD_VALUE,
                                 "The value for $position must be an integer value, not of type: "
                                 "%s",
                                 bv_type_name(v->value_type));
            o->has_position = true;
        } else if (strcmp(k, "$sort") == 0) {
            int64_t dir;
            if (whole_number(v, &dir) && (dir == 1 || dir == -1)) {
                o->sort_dir = (int)dir;
            } else if (v->value_type == BSON_TYPE_DOCUMENT) {
                bson_t sd;
                bv_as_doc(v, &sd);
                if (bson_count_keys(&sd) == 0)
                    return mdb_error(err, MDB_BAD_VALUE,
                                     "The $sort pattern is empty when it "
                                     "should be a set of fields.");
                o->sort_spec = sortspec_new(&sd, false, err);
                if (!o->sort_spec) {
                    err->code = MDB_BAD_VALUE;
                    return -1;
                }
            } else {
                return mdb_error(err, MDB_BAD_VALUE,
                                 "The $sort is invalid: use 1/-1 to sort the whole element, or "
                                 "{field:1/-1} to sort embedded fields");
            }
        } else {
            return mdb_error(err, MDB_BAD_VALUE, "Unrecognized clause in $push: %s", k);
        }
    }
    return 0;
}

static int parse_pull(uop *o, bson_error_t *err)
{
    bson_t d;
    if (o->arg.value_type == BSON_TYPE_DOCUMENT) {
        bv_as_doc(&o->arg, &d);
        bson_iter_t it;
        bool ops = bson_iter_init(&it, &d) && bson_iter_next(&it) && bson_iter_key(&it)[0] == '$' &&
                   strcmp(bson_iter_key(&it), "$and") != 0 &&
                   strcmp(bson_iter_key(&it), "$or") != 0 &&
                   strcmp(bson_iter_key(&it), "$nor") != 0;
        if (!ops) {
            o->pull_m = matcher_new(&d, err);
            return o->pull_m ? 0 : -1;
        }
    } else if (o->arg.value_type != BSON_TYPE_REGEX) {
        return 0; /* plain equality */
    }
    bson_t *f = bson_new();
    bv_append(f, "v", 1, &o->arg);
    o->pull_m = matcher_new(f, err);
    o->pull_values = true;
    bson_destroy(f);
    return o->pull_m ? 0 : -1;
}

static int parse_op_arg(uop *o, bson_error_t *err)
{
    const bson_value_t *v = &o->arg;
    char rendered[300];
    switch (o->kind) {
    case U_INC:
    case U_MUL:
        if (!bv_is_number(v->value_type)) {
            bv_render_shell(v, rendered, sizeof rendered);
            return mdb_error(err, MDB_TYPE_MISMATCH,
                             "Cannot %s with non-numeric argument: {%s: %s}",
                             o->kind == U_INC ? "increment" : "multiply", o->path, rendered);
        }
        return 0;
    case U_RENAME:
        if (v->value_type != BSON_TYPE_UTF8) {
            bv_render_shell(v, rendered, sizeof rendered);
            return mdb_error(err, MDB_BAD_VALUE,
                             "The 'to' field for $rename must be a string: %s: %s", o->path,
                             rendered);
        }
        o->to = v->value.v_utf8.str;
        if (strcmp(o->to, o->path) == 0)
            return mdb_error(err, MDB_BAD_VALUE,
                             "The source and target field for $rename must differ: %s: \"%s\"",
                             o->path, o->to);
        if (path_prefix(o->path, o->to) || path_prefix(o->to, o->path))
            return mdb_error(err, MDB_BAD_VALUE,
                             "The source and target field for $rename must not be on the same "
                             "path: %s: \"%s\"",
                             o->path, o->to);
        return check_path(o->to, err);
    case U_CURRENT_DATE:
        if (v->value_type == BSON_TYPE_BOOL)
            return 0;
        if (v->value_type == BSON_TYPE_DOCUMENT) {
            bson_t d;
            bson_iter_t it;
            bv_as_doc(v, &d);
            if (bson_iter_init_find(&it, &d, "$type") && BSON_ITER_HOLDS_UTF8(&it) &&
                bson_count_keys(&d) == 1) {
                const char *t = bson_iter_utf8(&it, NULL);
                if (strcmp(t, "date") == 0)
                    return 0;
                if (strcmp(t, "timestamp") == 0) {
                    o->cur_date_ts = true;
                    return 0;
                }
            }
            return mdb_error(err, MDB_BAD_VALUE,
                             "The '$type' string field is required to be 'date' or 'timestamp': "
                             "{$currentDate: {field : {$type: 'date'}}}");
        }
        return mdb_error(err, MDB_BAD_VALUE,
                         "%s is not valid type for $currentDate. Please use a boolean ('true') or "
                         "a $type expression ({$type: 'timestamp/date'}).",
                         bv_type_name(v->value_type));
    case U_PUSH:
    case U_ADD_TO_SET:
        return parse_each(o, err);
    case U_PULL:
        return parse_pull(o, err);
    case U_PULL_ALL:
        if (v->value_type != BSON_TYPE_ARRAY)
            return mdb_error(err, MDB_BAD_VALUE,
                             "$pullAll requires an array argument but was given a %s",
                             bv_type_name(v->value_type));
        return 0;
    case U_POP: {
        int64_t n;
        if (!whole_number(v, &n) || (n != 1 && n != -1)) {
            bv_render_shell(v, rendered, sizeof rendered);
            return mdb_error(err, MDB_FAILED_TO_PARSE, "$pop expects 1 or -1, found: %s", rendered);
        }
        return 0;
    }
    default:
        return 0;
    }
}

/* Sorts n elements of `size` bytes with cmp, which must be a total order (no two elements
 * equal): then the result is qsort's. Insertion sort for the few ops of a typical update
 * (no allocation, no call through qsort's machinery), qsort above SMALL_SORT. */
#define SMALL_SORT 16
static void sort_small(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    if (n > SMALL_SORT || size > 256) {
        qsort(base, n, size, cmp);
        return;
    }
    unsigned char *a = base, tmp[256];
    for (size_t i = 1; i < n; i++) {
        size_t j = i;
        memcpy(tmp, a + i * size, size);
        while (j > 0 && cmp(a + (j - 1) * size, tmp) > 0) {
            memcpy(a + j * size, a + (j - 1) * size, size);
            j--;
        }
        if (j != i)
            memcpy(a + j * size, tmp, size);
    }
}

static int check_conflicts(const updater *u, bson_error_t *err)
{
    size_t n = 0;
    for (size_t i = 0; i < u->nops; i++)
        n += u->ops[i].kind == U_RENAME ? 2 : 1;
    if (n < 2)
        return 0;
    path_ref inl[SMALL_SORT];
    path_ref *refs = n <= SMALL_SORT ? inl : malloc(n * sizeof *refs);
    if (!refs)
        return mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < u->nops; i++) {
        refs[k++] = (path_ref){u->ops[i].path, u->ops[i].order * 2};
        if (u->ops[i].kind == U_RENAME)
            refs[k++] = (path_ref){u->ops[i].to, u->ops[i].order * 2 + 1};
    }
    sort_small(refs, n, sizeof *refs, cmp_path_ref);
    /* Prefix-related paths are adjacent once sorted; report the conflict MongoDB meets first
     * (the one whose later path comes earliest in the update document). */
    const path_ref *best_earlier = NULL, *best_later = NULL;
    for (size_t i = 0; i + 1 < n; i++) {
        if (!path_prefix(refs[i].path, refs[i + 1].path))
            continue;
        const path_ref *earlier = refs[i].order < refs[i + 1].order ? &refs[i] : &refs[i + 1];
        const path_ref *later = earlier == &refs[i] ? &refs[i + 1] : &refs[i];
        if (!best_later || later->order < best_later->order) {
            best_later = later;
            best_earlier = earlier;
        }
    }
    int rc = 0;
    if (best_later) {
        /* The conflict is reported at the shorter of the two paths. */
        const char *at = strlen(best_earlier->path) < strlen(best_later->path) ? best_earlier->path
                                                                               : best_later->path;
        rc = mdb_error(err, MDB_CONFLICTING_UPDATE_OPERATORS,
                       "Updating the path '%s' would create a conflict at '%s'", best_later->path,
                       at);
    }
    if (refs != inl)
        free(refs);
    return rc;
}

void updater_free(updater *u)
{
    if (!u)
        return;
    for (size_t i = 0; i < u->nops; i++) {
        sortspec_free(u->ops[i].sort_spec);
        matcher_free(u->ops[i].pull_m);
    }
    free(u->ops);
    agg_pipeline_free(u->pipe);
    if (u->stages)
        bson_destroy(u->stages);
    free(u);
}

updater *updater_new_pipeline(const bson_t *stages, bson_error_t *err)
{
    static const char *const allowed[] = {"$addFields", "$set",         "$project",
                                          "$unset",     "$replaceRoot", "$replaceWith"};
    bson_iter_t it;
    if (!bson_iter_init(&it, stages) || bson_count_keys(stages) == 0) {
        mdb_error(err, MDB_FAILED_TO_PARSE, "Update pipeline must not be empty");
        return NULL;
    }
    while (bson_iter_next(&it)) {
        bson_t sd;
        bson_iter_t si;
        if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bv_as_doc(bson_iter_value(&it), &sd) ||
            !bson_iter_init(&si, &sd) || !bson_iter_next(&si))
            continue; /* agg_pipeline_new reports malformed stages */
        const char *name = bson_iter_key(&si);
        bool ok = false;
        for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
            ok = ok || strcmp(allowed[i], name) == 0;
        if (!ok) {
            mdb_error(err, MDB_INVALID_OPTIONS, "%s is not allowed to be used within an update",
                      name);
            return NULL;
        }
    }
    updater *u = updater_alloc(0);
    if (!u || !(u->stages = bson_copy(stages))) {
        free(u);
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
        return NULL;
    }
    u->pipe = agg_pipeline_new(u->stages, err);
    if (!u->pipe) {
        updater_free(u);
        return NULL;
    }
    return u;
}

typedef struct {
    const bson_t *doc;
    bool done;
} one_doc;

static int one_next(void *ctx, const bson_t **doc, bson_error_t *err)
{
    one_doc *o = ctx;
    (void)err;
    if (o->done)
        return 0;
    o->done = true;
    *doc = o->doc;
    return 1;
}

static int one_emit(void *ctx, const bson_t *doc, bson_error_t *err)
{
    bson_t *out = ctx;
    if (!bson_empty(out) || out->len > 5)
        return mdb_error(err, MDB_INTERNAL_ERROR, "update pipeline produced several documents");
    bson_concat(out, doc);
    return 0;
}

/* Runs a pipeline update; keeps _id first and unchanged. */
static int apply_pipeline(const updater *u, const bson_t *doc, bson_t *out, bson_error_t *err)
{
    one_doc src = {.doc = doc};
    agg_input in = {.next = one_next, .ctx = &src};
    bson_t res = BSON_INITIALIZER;
    int rc = -1;
    if (agg_pipeline_run(u->pipe, &in, one_emit, &res, err) != 0)
        goto out;
    bson_iter_t a, b;
    bool ha = bson_iter_init_find(&a, doc, "_id");
    bool hb = bson_iter_init_find(&b, &res, "_id");
    if (ha && hb && !same_value(bson_iter_value(&a), bson_iter_value(&b))) {
        mdb_error(err, MDB_IMMUTABLE_FIELD,
                  "Performing an update on the path '_id' would modify the immutable field '_id'");
        goto out;
    }
    if (ha)
        bson_append_value(out, "_id", 3, bson_iter_value(&a));
    else if (hb)
        bson_append_value(out, "_id", 3, bson_iter_value(&b));
    bson_iter_init(&b, &res);
    while (bson_iter_next(&b))
        if (strcmp(bson_iter_key(&b), "_id") != 0)
            bson_append_iter(out, NULL, 0, &b);
    rc = 0;
out:
    bson_destroy(&res);
    return rc;
}

static int parse_replacement(updater *u, bson_error_t *err)
{
    bson_iter_t it;
    bson_t upd;
    update_view(u, &upd);
    bson_iter_init(&it, &upd);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (k[0] == '$')
            return mdb_error(err, MDB_DOLLAR_PREFIXED_FIELD_NAME,
                             "The dollar ($) prefixed field '%s' in '%s' is not valid for "
                             "storage.",
                             k, k);
        if (strchr(k, '.'))
            return mdb_error(err, MDB_DOTTED_FIELD_NAME,
                             "The dotted field '%s' in '%s' is not valid for storage.", k, k);
    }
    return 0;
}

updater *updater_new(const bson_t *update, bson_error_t *err)
{
    updater *u = updater_alloc(update->len);
    bson_iter_t it;
    if (!u) {
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
        return NULL;
    }
    u->ulen = update->len;
    memcpy(u->udata, bson_get_data(update), update->len);
    bson_t upd;
    update_view(u, &upd);
    if (!bson_iter_init(&it, &upd)) {
        mdb_error(err, MDB_BAD_VALUE, "invalid BSON in update");
        goto fail;
    }
    if (!bson_iter_next(&it) || bson_iter_key(&it)[0] != '$') {
        u->replacement = true;
        if (parse_replacement(u, err) != 0)
            goto fail;
        return u;
    }
    size_t cap = 0, order = 0;
    bson_iter_init(&it, &upd);
    while (bson_iter_next(&it)) {
        const char *opname = bson_iter_key(&it);
        size_t k;
        for (k = 0; k < sizeof op_names / sizeof op_names[0]; k++)
            if (strcmp(op_names[k].name, opname) == 0)
                break;
        if (k == sizeof op_names / sizeof op_names[0]) {
            mdb_error(err, MDB_FAILED_TO_PARSE,
                      "Unknown modifier: %s. Expected a valid update modifier or pipeline-style "
                      "update specified as an array",
                      opname);
            goto fail;
        }
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
            mdb_error(err, MDB_FAILED_TO_PARSE,
                      "Modifiers operate on fields but we found type %s instead. For example: "
                      "{$mod: {<field>: ...}} not {%s: %s}",
                      bv_type_name(bson_iter_type(&it)), opname,
                      bson_iter_type(&it) == BSON_TYPE_INT32 ? "1" : "...");
            goto fail;
        }
        bson_t args;
        bson_iter_t ai;
        bv_as_doc(bson_iter_value(&it), &args);
        if (bson_count_keys(&args) == 0) {
            mdb_error(err, MDB_FAILED_TO_PARSE,
                      "'%s' is empty. You must specify a field like so: {%s: {<field>: ...}}",
                      opname, opname);
            goto fail;
        }
        bson_iter_init(&ai, &args);
        while (bson_iter_next(&ai)) {
            if (u->nops == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                uop *n = realloc(u->ops, ncap * sizeof *n);
                if (!n) {
                    mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
                    goto fail;
                }
                u->ops = n;
                cap = ncap;
            }
            uop *o = &u->ops[u->nops++];
            memset(o, 0, sizeof *o);
            o->kind = op_names[k].kind;
            o->opname = op_names[k].name;
            o->path = bson_iter_key(&ai);
            o->arg = *bson_iter_value(&ai);
            o->order = order++;
            if (check_path(o->path, err) != 0 || parse_op_arg(o, err) != 0)
                goto fail;
        }
    }
    if (check_conflicts(u, err) != 0)
        goto fail;
    sort_small(u->ops, u->nops, sizeof *u->ops, cmp_uop);
    u->flat_set = u->nops > 0 && u->nops <= FLAT_SET_MAX;
    for (size_t i = 0; i < u->nops && u->flat_set; i++)
        u->flat_set = u->ops[i].kind == U_SET && !strchr(u->ops[i].path, '.') &&
                      strcmp(u->ops[i].path, "_id") != 0;
    return u;
fail:
    updater_free(u);
    return NULL;
}

/* Pass 0 checks `update` against tmpl's $set fields (at[i]: the op compiled from the i-th of
 * them), pass 1 re-binds `ops` (a copy of tmpl's) to the fields of `update` (u's copy). */
static bool rebind_pass(const updater *tmpl, const size_t *at, const bson_t *update, uop *ops)
{
    bson_iter_t it, ai;
    bson_t args;
    if (!bson_iter_init(&it, update) || !bson_iter_next(&it) ||
        strcmp(bson_iter_key(&it), "$set") != 0 || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
        !bv_as_doc(bson_iter_value(&it), &args) || bson_iter_next(&it) ||
        !bson_iter_init(&ai, &args))
        return false;
    size_t n = 0;
    while (bson_iter_next(&ai)) {
        if (n == tmpl->nops)
            return false;
        const char *k = bson_iter_key(&ai);
        size_t i = at[n++];
        if (!ops) {
            if (strcmp(k, tmpl->ops[i].path) != 0)
                return false;
        } else {
            ops[i].path = k;
            ops[i].arg = *bson_iter_value(&ai);
        }
    }
    return n == tmpl->nops;
}

updater *updater_rebind(const updater *tmpl, const bson_t *update)
{
    if (!tmpl || !tmpl->flat_set)
        return NULL;
    size_t at[FLAT_SET_MAX];
    for (size_t i = 0; i < tmpl->nops; i++)
        at[tmpl->ops[i].order] = i;
    if (!rebind_pass(tmpl, at, update, NULL))
        return NULL;
    updater *u = updater_alloc(update->len);
    uop *ops = malloc(tmpl->nops * sizeof *ops);
    if (!u || !ops) {
        free(ops);
        free(u);
        return NULL;
    }
    u->ulen = update->len;
    memcpy(u->udata, bson_get_data(update), update->len);
    memcpy(ops, tmpl->ops, tmpl->nops * sizeof *ops);
    bson_t upd;
    update_view(u, &upd);
    rebind_pass(tmpl, at, &upd, ops); /* the same bytes as pass 0 accepted */
    u->ops = ops;
    u->nops = tmpl->nops;
    u->flat_set = true;
    return u;
}

bool updater_is_replacement(const updater *u)
{
    return u->replacement;
}

/* Does `op` (an update path, NUL-terminated) start with the first component (n bytes) of a
 * field path? */
static bool same_root(const char *op, const char *path, size_t n)
{
    return op && strncmp(op, path, n) == 0 && (op[n] == '\0' || op[n] == '.');
}

bool updater_may_touch(const updater *u, const char *path)
{
    if (u->replacement || u->pipe || strchr(path, '$'))
        return true;
    size_t n = strcspn(path, ".");
    for (size_t i = 0; i < u->nops; i++)
        if (same_root(u->ops[i].path, path, n) || same_root(u->ops[i].to, path, n))
            return true;
    return false;
}

/* What one updater_apply call carries through its operations: the document (for messages),
 * where errors go, and the time $currentDate uses (read once per call). */
typedef struct {
    const bson_t *doc;
    bson_error_t *err;
    struct timeval now;
    bool now_set;
} apply_ctx;

/* ---------------------------------------------------------------------------------------------
 * Arithmetic (SafeNum)
 * ------------------------------------------------------------------------------------------- */

static int arith(bool mul, const bson_value_t *a, const bson_value_t *b, bson_value_t *out)
{
    bson_type_t ta = a->value_type, tb = b->value_type;
    if (ta == BSON_TYPE_DECIMAL128 || tb == BSON_TYPE_DECIMAL128) {
        long double x = bv_as_double(a), y = bv_as_double(b);
        char buf[64];
        snprintf(buf, sizeof buf, "%.17Lg", mul ? x * y : x + y);
        out->value_type = BSON_TYPE_DECIMAL128;
        return bson_decimal128_from_string(buf, &out->value.v_decimal128) ? 0 : -1;
    }
    if (ta == BSON_TYPE_DOUBLE || tb == BSON_TYPE_DOUBLE) {
        double x = bv_as_double(a), y = bv_as_double(b);
        out->value_type = BSON_TYPE_DOUBLE;
        out->value.v_double = mul ? x * y : x + y;
        return 0;
    }
    /* int64 overflow is an error in SafeNum (aggregation's $add falls back to double). */
    return bv_int_arith(mul ? BV_MUL : BV_ADD, a, b, out) ? 0 : -1;
}

/* ---------------------------------------------------------------------------------------------
 * Applying operations
 * ------------------------------------------------------------------------------------------- */

static void current_time(apply_ctx *c)
{
    if (!c->now_set) {
        gettimeofday(&c->now, NULL);
        c->now_set = true;
    }
}

/* Appends the values of array value `arr` (or the single value v) to the vector. */
typedef struct {
    bson_value_t *a;
    size_t n, cap;
} vvec;

static int vvec_push(vvec *v, const bson_value_t *x, apply_ctx *c)
{
    if (v->n == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 8;
        bson_value_t *na = realloc(v->a, ncap * sizeof *na);
        if (!na)
            return mdb_error(c->err, MDB_INTERNAL_ERROR, "out of memory");
        v->a = na;
        v->cap = ncap;
    }
    v->a[v->n++] = *x;
    return 0;
}

static int values_of(const uop *o, vvec *out, apply_ctx *c)
{
    if (!o->has_each)
        return vvec_push(out, &o->arg, c);
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, o->each.value.v_doc.data, o->each.value.v_doc.data_len))
        return 0;
    while (bson_iter_next(&it))
        if (vvec_push(out, bson_iter_value(&it), c) != 0)
            return -1;
    return 0;
}

static int array_field_check(const uop *o, mdoc_field *f, apply_ctx *c)
{
    if (mdoc_field_is_array(f))
        return 0;
    char id[300];
    render_id(c->doc, id, sizeof id);
    bson_type_t t = f->kids ? BSON_TYPE_DOCUMENT : f->v.value_type;
    return mdb_error(c->err, MDB_BAD_VALUE,
                     "The field '%s' must be an array but is of type %s in document %s", o->path,
                     bv_type_name(t), id);
}

static _Thread_local const uop *g_sort_op; /* qsort has no context argument */

static int cmp_push_elems(const void *x, const void *y)
{
    const mdoc_field *a = x, *b = y;
    const uop *o = g_sort_op;
    if (o->sort_spec) {
        bson_t da, db, empty = BSON_INITIALIZER;
        bool ha = a->v.value_type == BSON_TYPE_DOCUMENT && bv_as_doc(&a->v, &da);
        bool hb = b->v.value_type == BSON_TYPE_DOCUMENT && bv_as_doc(&b->v, &db);
        return sortspec_compare(o->sort_spec, ha ? &da : &empty, hb ? &db : &empty);
    }
    int r = bv_compare(&a->v, &b->v);
    return o->sort_dir < 0 ? -r : r;
}

/* Stable sort of array fields (insertion-merge via index tiebreak). */
static void sort_array(mdoc *arr, const uop *o)
{
    /* Elements are raw (no expanded kids) because nothing else in this update touches them
     * (conflict rules). qsort is not stable: sort (value, index) pairs instead. */
    size_t n = arr->n;
    if (n < 2)
        return;
    g_sort_op = o;
    /* Simple stable insertion sort for small arrays, merge through qsort+index otherwise. */
    for (size_t i = 1; i < n; i++) {
        mdoc_field x = arr->f[i];
        size_t j = i;
        while (j > 0 && cmp_push_elems(&arr->f[j - 1], &x) > 0) {
            arr->f[j] = arr->f[j - 1];
            j--;
        }
        arr->f[j] = x;
    }
}

static int apply_push(const uop *o, mdoc *root, apply_ctx *c)
{
    mdoc *parent;
    size_t idx;
    int r = mdoc_resolve(root, o->path, true, &parent, &idx, c->err);
    if (r < 0)
        return -1;
    mdoc_field *f = &parent->f[idx];
    vvec vals = {0};
    int rc = -1;
    if (values_of(o, &vals, c) != 0)
        goto out;
    if (f->v.value_type == BSON_TYPE_EOD) {
        f->kids = mdoc_from(NULL, 0, true, c->err);
        if (!f->kids)
            goto out;
    }
    if (!f->kids && f->v.value_type != BSON_TYPE_ARRAY) {
        if (array_field_check(o, f, c) != 0)
            goto out;
    }
    mdoc *arr = mdoc_expand(f, c->err);
    if (!arr)
        goto out;
    if (o->kind == U_ADD_TO_SET) {
        bson_t scratch = BSON_INITIALIZER;
        for (size_t i = 0; i < vals.n; i++) {
            bool dup = false;
            for (size_t j = 0; j < arr->n && !dup; j++) {
                bson_value_t ev;
                mdoc_field_value(&arr->f[j], &ev, &scratch);
                dup = bv_compare(&ev, &vals.a[i]) == 0 &&
                      bv_canonical_type(ev.value_type) == bv_canonical_type(vals.a[i].value_type);
            }
            if (!dup) {
                mdoc_field *nf = mdoc_append(arr, NULL, 0, c->err);
                if (!nf) {
                    bson_destroy(&scratch);
                    goto out;
                }
                nf->v = vals.a[i];
            }
        }
        bson_destroy(&scratch);
        rc = 0;
        goto out;
    }
    /* $push: insert at $position (negative counts from the end), then sort, then slice. */
    size_t pos = arr->n;
    if (o->has_position) {
        if (o->position >= 0)
            pos = (size_t)o->position < arr->n ? (size_t)o->position : arr->n;
        else
            pos = (size_t)(-o->position) >= arr->n ? 0 : arr->n - (size_t)(-o->position);
    }
    for (size_t i = 0; i < vals.n; i++) {
        if (!mdoc_append(arr, NULL, 0, c->err))
            goto out;
    }
    memmove(&arr->f[pos + vals.n], &arr->f[pos], (arr->n - vals.n - pos) * sizeof arr->f[0]);
    for (size_t i = 0; i < vals.n; i++) {
        memset(&arr->f[pos + i], 0, sizeof arr->f[0]);
        arr->f[pos + i].v = vals.a[i];
    }
    if (o->sort_dir || o->sort_spec)
        sort_array(arr, o);
    if (o->has_slice) {
        if (o->slice >= 0 && (size_t)o->slice < arr->n) {
            for (size_t i = (size_t)o->slice; i < arr->n; i++)
                mdoc_free(arr->f[i].kids);
            arr->n = (size_t)o->slice;
        } else if (o->slice < 0 && (size_t)(-o->slice) < arr->n) {
            size_t keep = (size_t)(-o->slice), drop = arr->n - keep;
            for (size_t i = 0; i < drop; i++)
                mdoc_free(arr->f[i].kids);
            memmove(arr->f, arr->f + drop, keep * sizeof arr->f[0]);
            arr->n = keep;
        }
    }
    rc = 0;
out:
    free(vals.a);
    return rc;
}

static bool pull_matches(const uop *o, const mdoc_field *e, bson_t *scratch)
{
    bson_value_t v;
    mdoc_field_value(e, &v, scratch);
    if (o->kind == U_PULL_ALL) {
        bson_iter_t it;
        if (!bson_iter_init_from_data(&it, o->arg.value.v_doc.data, o->arg.value.v_doc.data_len))
            return false;
        while (bson_iter_next(&it))
            if (bv_compare(bson_iter_value(&it), &v) == 0 &&
                bv_canonical_type(v.value_type) ==
                    bv_canonical_type(bson_iter_value(&it)->value_type))
                return true;
        return false;
    }
    if (!o->pull_m)
        return bv_compare(&o->arg, &v) == 0 &&
               bv_canonical_type(v.value_type) == bv_canonical_type(o->arg.value_type);
    if (o->pull_values) {
        bson_t w = BSON_INITIALIZER;
        bv_append(&w, "v", 1, &v);
        bool r = matcher_matches(o->pull_m, &w);
        bson_destroy(&w);
        return r;
    }
    bson_t d;
    if (v.value_type != BSON_TYPE_DOCUMENT || !bv_as_doc(&v, &d))
        return false;
    return matcher_matches(o->pull_m, &d);
}

static int apply_pull_pop(const uop *o, mdoc *root, apply_ctx *c)
{
    mdoc *parent;
    size_t idx;
    int r = mdoc_resolve(root, o->path, false, &parent, &idx, c->err);
    if (r <= 0)
        return r;
    mdoc_field *f = &parent->f[idx];
    if (!mdoc_field_is_array(f)) {
        if (o->kind == U_POP) {
            return mdb_error(c->err, MDB_TYPE_MISMATCH,
                             "Path '%s' contains an element of non-array type '%s'", o->path,
                             bv_type_name(f->kids ? BSON_TYPE_DOCUMENT : f->v.value_type));
        }
        return mdb_error(c->err, MDB_BAD_VALUE, "Cannot apply %s to a non-array value", o->opname);
    }
    mdoc *arr = mdoc_expand(f, c->err);
    if (!arr)
        return -1;
    if (o->kind == U_POP) {
        if (arr->n == 0)
            return 0;
        int64_t dir = 0;
        whole_number(&o->arg, &dir);
        size_t drop = dir > 0 ? arr->n - 1 : 0;
        mdoc_free(arr->f[drop].kids);
        memmove(&arr->f[drop], &arr->f[drop + 1], (arr->n - drop - 1) * sizeof arr->f[0]);
        arr->n--;
        return 0;
    }
    bson_t scratch = BSON_INITIALIZER;
    size_t w = 0;
    for (size_t i = 0; i < arr->n; i++) {
        if (pull_matches(o, &arr->f[i], &scratch)) {
            mdoc_free(arr->f[i].kids);
            continue;
        }
        arr->f[w++] = arr->f[i];
    }
    arr->n = w;
    bson_destroy(&scratch);
    return 0;
}

static int apply_unset(const char *path, mdoc *root, apply_ctx *c)
{
    mdoc *parent;
    size_t idx;
    int r = mdoc_resolve(root, path, false, &parent, &idx, c->err);
    if (r <= 0)
        return r;
    mdoc_field *f = &parent->f[idx];
    if (parent->is_array) {
        bson_value_t null_v = {.value_type = BSON_TYPE_NULL};
        mdoc_field_set(f, &null_v);
    } else {
        mdoc_free(f->kids);
        f->kids = NULL;
        f->deleted = true;
    }
    return 0;
}

static int apply_one(const uop *o, mdoc *root, bool is_insert, apply_ctx *c)
{
    mdoc *parent;
    size_t idx;
    int r;
    switch (o->kind) {
    case U_SET_ON_INSERT:
        if (!is_insert)
            return 0;
        /* fall through */
    case U_SET:
        if (mdoc_resolve(root, o->path, true, &parent, &idx, c->err) < 0)
            return -1;
        mdoc_field_set(&parent->f[idx], &o->arg);
        return 0;
    case U_UNSET:
        return apply_unset(o->path, root, c);
    case U_INC:
    case U_MUL: {
        r = mdoc_resolve(root, o->path, false, &parent, &idx, c->err);
        if (r < 0)
            return -1;
        bson_value_t res;
        if (r == 0) {
            if (o->kind == U_INC) {
                res = o->arg;
            } else {
                /* $mul on a missing field: zero of the multiplier's type. */
                bson_value_t zero = {.value_type = BSON_TYPE_INT32};
                if (arith(true, &o->arg, &zero, &res) != 0)
                    return mdb_error(c->err, MDB_BAD_VALUE, "numeric overflow");
            }
            if (mdoc_resolve(root, o->path, true, &parent, &idx, c->err) < 0)
                return -1;
            mdoc_field_set(&parent->f[idx], &res);
            return 0;
        }
        mdoc_field *f = &parent->f[idx];
        if (f->kids || !bv_is_number(f->v.value_type)) {
            char id[300];
            render_id(c->doc, id, sizeof id);
            return mdb_error(
                c->err, MDB_TYPE_MISMATCH,
                "Cannot apply %s to a value of non-numeric type. %s has the field "
                "'%.*s' of non-numeric type %s",
                o->opname, id, (int)f->nlen, f->name ? f->name : "",
                bv_type_name(f->kids ? (f->kids->is_array ? BSON_TYPE_ARRAY : BSON_TYPE_DOCUMENT)
                                     : f->v.value_type));
        }
        if (arith(o->kind == U_MUL, &f->v, &o->arg, &res) != 0) {
            char id[300], cur[100];
            render_id(c->doc, id, sizeof id);
            bv_render_shell(&f->v, cur, sizeof cur);
            return mdb_error(c->err, MDB_BAD_VALUE,
                             "Failed to apply %s operations to current value ((%s)%s) for "
                             "document %s",
                             o->opname,
                             f->v.value_type == BSON_TYPE_INT64 ? "NumberLong" : "NumberInt", cur,
                             id);
        }
        mdoc_field_set(f, &res);
        return 0;
    }
    case U_MIN:
    case U_MAX: {
        if (mdoc_resolve(root, o->path, true, &parent, &idx, c->err) < 0)
            return -1;
        mdoc_field *f = &parent->f[idx];
        bson_t scratch = BSON_INITIALIZER;
        bson_value_t cur;
        mdoc_field_value(f, &cur, &scratch);
        int cmp = bv_compare(&o->arg, &cur);
        bool fresh = f->v.value_type == BSON_TYPE_EOD;
        bson_destroy(&scratch);
        if (fresh || (o->kind == U_MIN ? cmp < 0 : cmp > 0))
            mdoc_field_set(f, &o->arg);
        return 0;
    }
    case U_RENAME: {
        r = mdoc_resolve(root, o->path, false, &parent, &idx, c->err);
        if (r <= 0)
            return r;
        if (parent->is_array)
            return mdb_error(c->err, MDB_BAD_VALUE,
                             "The source field cannot be an array element, '%s' in doc with %s",
                             o->path, "an array on its path");
        mdoc_field moved = parent->f[idx];
        parent->f[idx].kids = NULL; /* ownership moves */
        parent->f[idx].deleted = true;
        mdoc *tp;
        size_t ti;
        if (mdoc_resolve(root, o->to, true, &tp, &ti, c->err) < 0) {
            mdoc_free(moved.kids);
            return -1;
        }
        if (tp->is_array) {
            mdoc_free(moved.kids);
            return mdb_error(c->err, MDB_BAD_VALUE,
                             "The destination field cannot be an array element, '%s' in doc "
                             "with %s",
                             o->to, "an array on its path");
        }
        mdoc_field *t = &tp->f[ti];
        mdoc_free(t->kids);
        t->kids = moved.kids;
        t->v = moved.v;
        return 0;
    }
    case U_CURRENT_DATE: {
        if (mdoc_resolve(root, o->path, true, &parent, &idx, c->err) < 0)
            return -1;
        current_time(c);
        bson_value_t v;
        if (o->cur_date_ts) {
            v.value_type = BSON_TYPE_TIMESTAMP;
            v.value.v_timestamp.timestamp = (uint32_t)c->now.tv_sec;
            v.value.v_timestamp.increment = 1;
        } else {
            v.value_type = BSON_TYPE_DATE_TIME;
            v.value.v_datetime = (int64_t)c->now.tv_sec * 1000 + c->now.tv_usec / 1000;
        }
        mdoc_field_set(&parent->f[idx], &v);
        return 0;
    }
    case U_PUSH:
    case U_ADD_TO_SET:
        return apply_push(o, root, c);
    case U_PULL:
    case U_PULL_ALL:
    case U_POP:
        return apply_pull_pop(o, root, c);
    }
    return 0;
}

static bool same_value(const bson_value_t *a, const bson_value_t *b)
{
    return a->value_type == b->value_type && bv_compare(a, b) == 0;
}

static int apply_replacement(const updater *u, const bson_t *doc, bson_t *out, bson_error_t *err)
{
    bson_iter_t it;
    bool have_old = doc && bson_iter_init_find(&it, doc, "_id");
    bson_value_t old_id;
    if (have_old)
        old_id = *bson_iter_value(&it);
    bson_iter_t ri;
    bson_t upd;
    update_view(u, &upd);
    if (bson_iter_init_find(&ri, &upd, "_id")) {
        const bson_value_t *nid = bson_iter_value(&ri);
        if (have_old && !same_value(nid, &old_id)) {
            char r[300];
            bv_render_shell(nid, r, sizeof r);
            return mdb_error(err, MDB_IMMUTABLE_FIELD,
                             "After applying the update, the (immutable) field '_id' was found "
                             "to have been altered to _id: %s",
                             r);
        }
        bv_append(out, "_id", 3, nid);
    } else if (have_old) {
        bv_append(out, "_id", 3, &old_id);
    }
    bson_iter_init(&ri, &upd);
    while (bson_iter_next(&ri)) {
        if (strcmp(bson_iter_key(&ri), "_id") == 0)
            continue;
        bson_append_iter(out, NULL, 0, &ri);
    }
    return 0;
}

/*
 * updater_apply for an update made only of $set on top-level fields other than _id (the
 * receipts worker's {$set: {status, vendorMsgId, deliveredAt, updatedAt, ctok}}), without
 * building the mutable tree: one pass copies the document, writing each set field's new value
 * in place of the first field of that name, then appends the fields that did not exist in the
 * ops' (sorted) order. That is exactly what the tree path produces for such an update: it
 * resolves each single-component path to the first live field of that name or appends a new
 * one at the end, in the same op order, and serializes every field with bson_append_value.
 * Returns 1 (out untouched) when the document is not in the shape this assumes (_id not first,
 * or a second _id, which serialize would drop); the caller then takes the tree path.
 */
/* 1 + the size of the value bytes of a BSON element of type t starting at v (at most `avail`
 * bytes) for the types whose bytes bson_append_value reproduces exactly from bson_iter_value;
 * 0 for any other type or a malformed length. */
static size_t raw_value_size(uint8_t t, const uint8_t *v, size_t avail)
{
    switch (t) {
    case BSON_TYPE_NULL:
    case BSON_TYPE_BOOL:
    case BSON_TYPE_INT32:
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_DATE_TIME:
    case BSON_TYPE_INT64:
    case BSON_TYPE_TIMESTAMP:
    case BSON_TYPE_OID:
    case BSON_TYPE_DECIMAL128:
    case BSON_TYPE_UTF8:
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY: {
        size_t n = bv_raw_value_size(t, v, avail);
        return n == SIZE_MAX ? 0 : n + 1;
    }
    default:
        return 0;
    }
}

/* Appends element (t, key, value bytes) to buf at *n (the caller reserved the room). */
static void put_elem(uint8_t *buf, size_t *n, uint8_t t, const char *k, size_t kl, const uint8_t *v,
                     size_t vl)
{
    buf[(*n)++] = t;
    memcpy(buf + *n, k, kl);
    *n += kl;
    buf[(*n)++] = 0;
    if (vl)
        memcpy(buf + *n, v, vl);
    *n += vl;
}

/* The value bytes of a $set argument of a raw-copyable type, written to tmp (at least 16
 * bytes) or pointing into the update document; false for any other type. */
static bool arg_bytes(const bson_value_t *a, uint8_t *tmp, const uint8_t **v, size_t *vl)
{
    *v = tmp;
    switch (a->value_type) {
    case BSON_TYPE_NULL:
        *vl = 0;
        return true;
    case BSON_TYPE_BOOL:
        tmp[0] = a->value.v_bool ? 1 : 0;
        *vl = 1;
        return true;
    case BSON_TYPE_INT32: {
        uint32_t x = BSON_UINT32_TO_LE((uint32_t)a->value.v_int32);
        memcpy(tmp, &x, 4);
        *vl = 4;
        return true;
    }
    case BSON_TYPE_INT64:
    case BSON_TYPE_DATE_TIME: {
        int64_t i = a->value_type == BSON_TYPE_INT64 ? a->value.v_int64 : a->value.v_datetime;
        uint64_t x = BSON_UINT64_TO_LE((uint64_t)i);
        memcpy(tmp, &x, 8);
        *vl = 8;
        return true;
    }
    case BSON_TYPE_DOUBLE: {
        double d = BSON_DOUBLE_TO_LE(a->value.v_double);
        memcpy(tmp, &d, 8);
        *vl = 8;
        return true;
    }
    case BSON_TYPE_OID:
        *v = a->value.v_oid.bytes;
        *vl = 12;
        return true;
    default:
        return false; /* strings (length prefix) are written by the caller */
    }
}

/*
 * apply_flat_set's common case as one buffer copy: every element of the document and every
 * $set argument is of a type whose bytes bson_append_value reproduces exactly (raw_value_size,
 * arg_bytes, strings), so elements are copied as bytes instead of being re-appended value by
 * value. Same output as the bson_append_value pass below it; returns 1 (out untouched) when a
 * type is outside that set.
 */
static int flat_set_raw(const updater *u, const bson_t *doc, const size_t *plen, bson_t *out)
{
    const uint8_t *d = bson_get_data(doc), *end = d + doc->len - 1;
    size_t cap = doc->len + 1;
    for (size_t j = 0; j < u->nops; j++) {
        const bson_value_t *a = &u->ops[j].arg;
        cap += 2 + plen[j] + (a->value_type == BSON_TYPE_UTF8 ? 5 + a->value.v_utf8.len : 16);
    }
    uint8_t stackbuf[1024], *buf = cap <= sizeof stackbuf ? stackbuf : malloc(cap);
    if (!buf)
        return 1;
    bool seen[FLAT_SET_MAX] = {false};
    size_t n = 4;
    int rc = 1;
    const uint8_t *q = d + 4;
    while (q < end) {
        uint8_t t = *q;
        const char *k = (const char *)q + 1;
        const uint8_t *z = memchr(k, 0, (size_t)(end - (const uint8_t *)k));
        if (!z)
            goto out;
        size_t kl = (size_t)(z - (const uint8_t *)k);
        const uint8_t *v = z + 1;
        size_t vs = raw_value_size(t, v, (size_t)(end - v));
        if (!vs)
            goto out;
        vs--;
        size_t j = u->nops;
        for (size_t i = 0; i < u->nops; i++) {
            if (!seen[i] && plen[i] == kl && memcmp(u->ops[i].path, k, kl) == 0) {
                j = i;
                break;
            }
        }
        if (j == u->nops) {
            memcpy(buf + n, q, (size_t)(v + vs - q));
            n += (size_t)(v + vs - q);
        } else {
            seen[j] = true;
            const bson_value_t *a = &u->ops[j].arg;
            uint8_t tmp[16];
            const uint8_t *av;
            size_t al;
            if (a->value_type == BSON_TYPE_UTF8) {
                uint32_t sl = BSON_UINT32_TO_LE(a->value.v_utf8.len + 1);
                put_elem(buf, &n, BSON_TYPE_UTF8, k, kl, (const uint8_t *)&sl, 4);
                memcpy(buf + n, a->value.v_utf8.str, a->value.v_utf8.len);
                n += a->value.v_utf8.len;
                buf[n++] = 0;
            } else if (arg_bytes(a, tmp, &av, &al)) {
                put_elem(buf, &n, (uint8_t)a->value_type, k, kl, av, al);
            } else {
                goto out;
            }
        }
        q = v + vs;
    }
    for (size_t j = 0; j < u->nops; j++) {
        if (seen[j])
            continue;
        const bson_value_t *a = &u->ops[j].arg;
        uint8_t tmp[16];
        const uint8_t *av;
        size_t al;
        if (a->value_type == BSON_TYPE_UTF8) {
            uint32_t sl = BSON_UINT32_TO_LE(a->value.v_utf8.len + 1);
            put_elem(buf, &n, BSON_TYPE_UTF8, u->ops[j].path, plen[j], (const uint8_t *)&sl, 4);
            memcpy(buf + n, a->value.v_utf8.str, a->value.v_utf8.len);
            n += a->value.v_utf8.len;
            buf[n++] = 0;
        } else if (arg_bytes(a, tmp, &av, &al)) {
            put_elem(buf, &n, (uint8_t)a->value_type, u->ops[j].path, plen[j], av, al);
        } else {
            goto out;
        }
    }
    buf[n++] = 0;
    uint32_t tl = BSON_UINT32_TO_LE((uint32_t)n);
    memcpy(buf, &tl, 4);
    bson_t tmpdoc;
    if (bson_init_static(&tmpdoc, buf, n) && bson_concat(out, &tmpdoc))
        rc = 0;
out:
    if (buf != stackbuf)
        free(buf);
    return rc;
}

static int apply_flat_set(const updater *u, const bson_t *doc, bson_t *out)
{
    bool seen[FLAT_SET_MAX] = {false};
    size_t plen[FLAT_SET_MAX];
    for (size_t j = 0; j < u->nops; j++)
        plen[j] = strlen(u->ops[j].path);
    bson_iter_t it;
    if (!bson_iter_init(&it, doc))
        return 1;
    /* First pass: the shape (cheap, no output yet). */
    bool first = true;
    while (bson_iter_next(&it)) {
        uint32_t kl = bson_iter_key_len(&it);
        bool is_id = kl == 3 && memcmp(bson_iter_key(&it), "_id", 3) == 0;
        if (is_id != first)
            return 1;
        first = false;
    }
    if (first)
        return 1; /* empty document: no _id */
    if (flat_set_raw(u, doc, plen, out) == 0)
        return 0;
    bson_iter_init(&it, doc);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        uint32_t kl = bson_iter_key_len(&it);
        const bson_value_t *v = bson_iter_value(&it);
        for (size_t j = 0; j < u->nops; j++) {
            if (!seen[j] && plen[j] == kl && memcmp(u->ops[j].path, k, kl) == 0) {
                seen[j] = true;
                v = &u->ops[j].arg;
                break;
            }
        }
        bson_append_value(out, k, (int)kl, v);
    }
    for (size_t j = 0; j < u->nops; j++)
        if (!seen[j])
            bson_append_value(out, u->ops[j].path, (int)plen[j], &u->ops[j].arg);
    return 0;
}

int updater_apply(const updater *u, const bson_t *doc, bool is_upsert_insert, bson_t *out,
                  bool *modified, bson_error_t *err)
{
    int rc = -1;
    mdoc *root = NULL;
    apply_ctx c = {.doc = doc, .err = err};
    if (modified)
        *modified = false;
    if (u->pipe) {
        if (apply_pipeline(u, doc, out, err) != 0)
            goto out;
    } else if (u->replacement) {
        if (apply_replacement(u, doc, out, err) != 0)
            goto out;
    } else if (u->flat_set && !is_upsert_insert && apply_flat_set(u, doc, out) == 0) {
        /* done: the tree path below is the general case */
    } else {
        root = mdoc_from(bson_get_data(doc), doc->len, false, c.err);
        if (!root)
            goto out;
        for (size_t i = 0; i < u->nops; i++)
            if (apply_one(&u->ops[i], root, is_upsert_insert, &c) != 0)
                goto out;
        mdoc_serialize(root, out, true);
        /* _id is immutable (an upsert's insert may set it). */
        bson_iter_t a, b;
        bool ha = bson_iter_init_find(&a, doc, "_id");
        bool hb = bson_iter_init_find(&b, out, "_id");
        if (ha && (!hb || !same_value(bson_iter_value(&a), bson_iter_value(&b)))) {
            const char *path = "_id";
            for (size_t i = 0; i < u->nops; i++)
                if (path_prefix("_id", u->ops[i].path) ||
                    (u->ops[i].to && path_prefix("_id", u->ops[i].to))) {
                    path = path_prefix("_id", u->ops[i].path) ? u->ops[i].path : u->ops[i].to;
                    break;
                }
            mdb_error(err, MDB_IMMUTABLE_FIELD,
                      "Performing an update on the path '%s' would modify the immutable field "
                      "'_id'",
                      path);
            goto out;
        }
    }
    if (out->len > MAX_DOC_SIZE) {
        mdb_error(err, 17419, "Resulting document after update is larger than %d", MAX_DOC_SIZE);
        goto out;
    }
    if (modified)
        *modified = !(out->len == doc->len &&
                      memcmp(bson_get_data(out), bson_get_data(doc), doc->len) == 0);
    rc = 0;
out:
    mdoc_free(root);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Upsert seed
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    const char *path;
    bson_value_t v;
} eqfield;

typedef struct {
    eqfield *a;
    size_t n, cap;
} eqlist;

static int eq_add(eqlist *l, const char *path, const bson_value_t *v, bson_error_t *err)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->a[i].path, path) == 0)
            return mdb_error(err, MDB_NOT_SINGLE_VALUE_FIELD,
                             "cannot infer query fields to set, path '%s' is matched twice", path);
        if (path_prefix(l->a[i].path, path) || path_prefix(path, l->a[i].path))
            return mdb_error(err, MDB_NOT_SINGLE_VALUE_FIELD,
                             "cannot infer query fields to set, both paths '%s' and '%s' are "
                             "matched",
                             path, l->a[i].path);
    }
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 8;
        eqfield *na = realloc(l->a, ncap * sizeof *na);
        if (!na)
            return mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
        l->a = na;
        l->cap = ncap;
    }
    l->a[l->n].path = path;
    l->a[l->n].v = *v;
    l->n++;
    return 0;
}

static int collect_eq(const bson_t *filter, eqlist *l, int depth, bson_error_t *err)
{
    bson_iter_t it;
    if (depth > 100)
        return mdb_error(err, MDB_BAD_VALUE, "exceeded maximum query tree depth of 100");
    if (!bson_iter_init(&it, filter))
        return mdb_error(err, MDB_BAD_VALUE, "invalid BSON in filter");
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        if (strcmp(k, "$and") == 0 && v->value_type == BSON_TYPE_ARRAY) {
            bson_t arr;
            bson_iter_t ai;
            bv_as_doc(v, &arr);
            bson_iter_init(&ai, &arr);
            while (bson_iter_next(&ai)) {
                bson_t sub;
                if (bson_iter_type(&ai) == BSON_TYPE_DOCUMENT &&
                    bv_as_doc(bson_iter_value(&ai), &sub) &&
                    collect_eq(&sub, l, depth + 1, err) != 0)
                    return -1;
            }
            continue;
        }
        if (k[0] == '$')
            continue;
        if (v->value_type == BSON_TYPE_DOCUMENT) {
            bson_t d;
            bson_iter_t di;
            bv_as_doc(v, &d);
            if (bson_iter_init(&di, &d) && bson_iter_next(&di) && bson_iter_key(&di)[0] == '$') {
                /* Operator document: only $eq contributes. */
                bson_iter_init(&di, &d);
                while (bson_iter_next(&di))
                    if (strcmp(bson_iter_key(&di), "$eq") == 0 &&
                        eq_add(l, k, bson_iter_value(&di), err) != 0)
                        return -1;
                continue;
            }
        }
        if (v->value_type == BSON_TYPE_REGEX)
            continue;
        if (eq_add(l, k, v, err) != 0)
            return -1;
    }
    return 0;
}

int update_upsert_seed(const bson_t *filter, bson_t *out, bson_error_t *err)
{
    eqlist l = {0};
    int rc = -1;
    mdoc *root = NULL;
    if (filter && collect_eq(filter, &l, 0, err) != 0)
        goto out;
    root = mdoc_from(NULL, 0, false, err);
    if (!root)
        goto out;
    for (size_t i = 0; i < l.n; i++) {
        mdoc *parent;
        size_t idx;
        if (check_path(l.a[i].path, err) != 0)
            goto out;
        if (mdoc_resolve(root, l.a[i].path, true, &parent, &idx, err) < 0)
            goto out;
        mdoc_field_set(&parent->f[idx], &l.a[i].v);
    }
    mdoc_serialize(root, out, true);
    rc = 0;
out:
    mdoc_free(root);
    free(l.a);
    return rc;
}
