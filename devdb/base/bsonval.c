/*
 * bsonval.c: MongoDB's value order, dotted-path traversal and key extraction.
 *
 * Comparison follows MongoDB's BSONElement::woCompare: canonical type rank first, then (inside
 * documents) field name, then value. Numbers of different BSON types compare through long
 * double, which holds every int64 and every double exactly on x86-64 and aarch64 Linux, so
 * 2^53+1 as int64 and 2^53 as double compare unequal as in MongoDB. Decimal128 goes through
 * its string form (approximate beyond 64 bits of precision; devdb does not do decimal maths).
 *
 * Path traversal splits the path once into (pointer, length) components on the stack and
 * recurses over bson_iter_t without copying; values reported point into the document.
 */
#include "base/bsonval.h"
#include "base/errors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Types and numbers
 * ------------------------------------------------------------------------------------------- */

int bv_canonical_type(bson_type_t t)
{
    switch (t) {
    case BSON_TYPE_MINKEY:
        return -1;
    case BSON_TYPE_EOD:
    case BSON_TYPE_UNDEFINED:
        return 0;
    case BSON_TYPE_NULL:
        return 5;
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DECIMAL128:
        return 10;
    case BSON_TYPE_UTF8:
    case BSON_TYPE_SYMBOL:
        return 15;
    case BSON_TYPE_DOCUMENT:
        return 20;
    case BSON_TYPE_ARRAY:
        return 25;
    case BSON_TYPE_BINARY:
        return 30;
    case BSON_TYPE_OID:
        return 35;
    case BSON_TYPE_BOOL:
        return 40;
    case BSON_TYPE_DATE_TIME:
        return 45;
    case BSON_TYPE_TIMESTAMP:
        return 47;
    case BSON_TYPE_REGEX:
        return 50;
    case BSON_TYPE_DBPOINTER:
        return 55;
    case BSON_TYPE_CODE:
        return 60;
    case BSON_TYPE_CODEWSCOPE:
        return 65;
    case BSON_TYPE_MAXKEY:
        return 127;
    }
    return 0;
}

bool bv_is_number(bson_type_t t)
{
    return t == BSON_TYPE_INT32 || t == BSON_TYPE_INT64 || t == BSON_TYPE_DOUBLE ||
           t == BSON_TYPE_DECIMAL128;
}

bool bv_is_float(bson_type_t t)
{
    return t == BSON_TYPE_DOUBLE || t == BSON_TYPE_DECIMAL128;
}

int64_t bv_as_int64(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        return v->value.v_int32;
    case BSON_TYPE_INT64:
        return v->value.v_int64;
    default:
        return 0;
    }
}

static long double decimal_as_ld(const bson_decimal128_t *d)
{
    char buf[BSON_DECIMAL128_STRING];
    bson_decimal128_to_string(d, buf);
    if (strcmp(buf, "NaN") == 0)
        return NAN;
    if (strcmp(buf, "Infinity") == 0)
        return INFINITY;
    if (strcmp(buf, "-Infinity") == 0)
        return -INFINITY;
    return strtold(buf, NULL);
}

static long double num_as_ld(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        return (long double)v->value.v_int32;
    case BSON_TYPE_INT64:
        return (long double)v->value.v_int64;
    case BSON_TYPE_DOUBLE:
        return (long double)v->value.v_double;
    case BSON_TYPE_DECIMAL128:
        return decimal_as_ld(&v->value.v_decimal128);
    default:
        return 0;
    }
}

double bv_as_double(const bson_value_t *v)
{
    return (double)num_as_ld(v);
}

int bv_whole_int64(const bson_value_t *v, int64_t *out)
{
    if (!bv_is_number(v->value_type))
        return -1;
    if (v->value_type == BSON_TYPE_INT32 || v->value_type == BSON_TYPE_INT64) {
        *out = bv_as_int64(v);
        return 0;
    }
    double d = bv_as_double(v);
    if (isnan(d) || d != floor(d) || fabs(d) > 9e18)
        return -2;
    *out = (int64_t)d;
    return 0;
}

bool bv_int_arith(bv_arith_op op, const bson_value_t *a, const bson_value_t *b, bson_value_t *out)
{
    bool both32 = a->value_type == BSON_TYPE_INT32 && b->value_type == BSON_TYPE_INT32;
    int64_t x = bv_as_int64(a), y = bv_as_int64(b), r;
    if (op == BV_MUL ? __builtin_mul_overflow(x, y, &r) : __builtin_add_overflow(x, y, &r))
        return false;
    if (both32 && r >= INT32_MIN && r <= INT32_MAX) {
        out->value_type = BSON_TYPE_INT32;
        out->value.v_int32 = (int32_t)r;
    } else {
        out->value_type = BSON_TYPE_INT64;
        out->value.v_int64 = r;
    }
    return true;
}

const char *bv_type_name(bson_type_t t)
{
    switch (t) {
    case BSON_TYPE_EOD:
        return "missing";
    case BSON_TYPE_DOUBLE:
        return "double";
    case BSON_TYPE_UTF8:
        return "string";
    case BSON_TYPE_DOCUMENT:
        return "object";
    case BSON_TYPE_ARRAY:
        return "array";
    case BSON_TYPE_BINARY:
        return "binData";
    case BSON_TYPE_UNDEFINED:
        return "undefined";
    case BSON_TYPE_OID:
        return "objectId";
    case BSON_TYPE_BOOL:
        return "bool";
    case BSON_TYPE_DATE_TIME:
        return "date";
    case BSON_TYPE_NULL:
        return "null";
    case BSON_TYPE_REGEX:
        return "regex";
    case BSON_TYPE_DBPOINTER:
        return "dbPointer";
    case BSON_TYPE_CODE:
        return "javascript";
    case BSON_TYPE_SYMBOL:
        return "symbol";
    case BSON_TYPE_CODEWSCOPE:
        return "javascriptWithScope";
    case BSON_TYPE_INT32:
        return "int";
    case BSON_TYPE_TIMESTAMP:
        return "timestamp";
    case BSON_TYPE_INT64:
        return "long";
    case BSON_TYPE_DECIMAL128:
        return "decimal";
    case BSON_TYPE_MINKEY:
        return "minKey";
    case BSON_TYPE_MAXKEY:
        return "maxKey";
    }
    return "unknown"; /* not a BSON type: libbson's iterators never produce one */
}

const char *bv_render_json(const bson_value_t *v, char *buf, size_t cap)
{
    bson_t *d = bson_new();
    bson_append_value(d, "v", 1, v);
    char *s = bson_as_relaxed_extended_json(d, NULL);
    /* "{ "v" : X }" -> X */
    size_t len = s ? strlen(s) : 0;
    if (len > 10)
        snprintf(buf, cap, "%.*s", (int)(len - 10), s + 8);
    else
        snprintf(buf, cap, "?");
    bson_free(s);
    bson_destroy(d);
    return buf;
}

/* Shell-style rendering for the update engine's messages: documents nested past 20 levels
 * print as "...", types without a shell form fall back to bv_render_json. */
static void shell_value(const bson_value_t *v, char *buf, size_t cap, int depth);

static void shell_doc(const uint8_t *data, uint32_t len, bool is_array, char *buf, size_t cap,
                      int depth)
{
    if (depth > 20) {
        snprintf(buf, cap, "...");
        return;
    }
    bson_iter_t it;
    size_t used = 0;
    int w = snprintf(buf, cap, "%s", is_array ? "[" : "{");
    used = w > 0 ? (size_t)w : 0;
    if (!bson_iter_init_from_data(&it, data, len))
        return;
    bool first = true;
    while (bson_iter_next(&it) && used + 1 < cap) {
        char item[256];
        shell_value(bson_iter_value(&it), item, sizeof item, depth + 1);
        if (is_array)
            w = snprintf(buf + used, cap - used, "%s%s", first ? "" : ", ", item);
        else
            w = snprintf(buf + used, cap - used, "%s%s: %s", first ? "" : ", ", bson_iter_key(&it),
                         item);
        if (w < 0)
            return;
        used += (size_t)w;
        first = false;
    }
    if (used + 1 < cap)
        snprintf(buf + used, cap - used, "%s", is_array ? "]" : "}");
}

static void shell_value(const bson_value_t *v, char *buf, size_t cap, int depth)
{
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        snprintf(buf, cap, "%d", v->value.v_int32);
        return;
    case BSON_TYPE_INT64:
        snprintf(buf, cap, "%" PRId64, v->value.v_int64);
        return;
    case BSON_TYPE_DOUBLE: {
        double d = v->value.v_double;
        if (d == floor(d) && fabs(d) < 1e15)
            snprintf(buf, cap, "%.1f", d);
        else
            snprintf(buf, cap, "%.17g", d);
        return;
    }
    case BSON_TYPE_UTF8:
        snprintf(buf, cap, "\"%s\"", v->value.v_utf8.str);
        return;
    case BSON_TYPE_BOOL:
        snprintf(buf, cap, "%s", v->value.v_bool ? "true" : "false");
        return;
    case BSON_TYPE_NULL:
        snprintf(buf, cap, "null");
        return;
    case BSON_TYPE_OID: {
        char hex[25];
        bson_oid_to_string(&v->value.v_oid, hex);
        snprintf(buf, cap, "ObjectId('%s')", hex);
        return;
    }
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY:
        shell_doc(v->value.v_doc.data, v->value.v_doc.data_len, v->value_type == BSON_TYPE_ARRAY,
                  buf, cap, depth);
        return;
    default:
        bv_render_json(v, buf, cap);
        return;
    }
}

const char *bv_render_shell(const bson_value_t *v, char *buf, size_t cap)
{
    shell_value(v, buf, cap, 0);
    return buf;
}

const char *bv_render_shell_doc(const uint8_t *data, uint32_t len, bool is_array, char *buf,
                                size_t cap)
{
    shell_doc(data, len, is_array, buf, cap, 0);
    return buf;
}

/* Nesting is checked with an explicit stack of iterators, one per open level, so a hostile
 * document nested millions deep costs at most `max` iterators and no C stack. libbson declares
 * bson_iter_t 128-byte aligned without padding its size to match, so the stack holds it inside
 * a struct (whose size the compiler does pad) and comes from aligned_alloc. */
typedef struct {
    bson_iter_t it;
} depth_frame;

bool bv_depth_ok(const bson_t *doc, int max)
{
    if (max < 1)
        return false;
    depth_frame *stack = aligned_alloc(_Alignof(depth_frame), (size_t)max * sizeof *stack);
    if (!stack)
        return false;
    int top = 0;
    bool ok = bson_iter_init(&stack[0].it, doc);
    while (ok && top >= 0) {
        bson_iter_t *it = &stack[top].it;
        if (!bson_iter_next(it)) {
            ok = it->err_off == 0; /* end of this level, or malformed */
            top--;
            continue;
        }
        if (!BSON_ITER_HOLDS_DOCUMENT(it) && !BSON_ITER_HOLDS_ARRAY(it))
            continue;
        if (top + 1 >= max || !bson_iter_recurse(it, &stack[top + 1].it))
            ok = false;
        else
            top++;
    }
    free(stack);
    return ok;
}

static int compare_numbers(const bson_value_t *a, const bson_value_t *b)
{
    /* Fast paths for the common same-type cases. */
    if (a->value_type == BSON_TYPE_INT32 && b->value_type == BSON_TYPE_INT32)
        return (a->value.v_int32 > b->value.v_int32) - (a->value.v_int32 < b->value.v_int32);
    if (a->value_type == BSON_TYPE_INT64 && b->value_type == BSON_TYPE_INT64)
        return (a->value.v_int64 > b->value.v_int64) - (a->value.v_int64 < b->value.v_int64);
    long double x = num_as_ld(a), y = num_as_ld(b);
    bool nx = isnan(x), ny = isnan(y);
    if (nx || ny)
        return nx && ny ? 0 : (nx ? -1 : 1); /* NaN sorts below every other number */
    return (x > y) - (x < y);
}

static int cmp_bytes(const void *a, size_t na, const void *b, size_t nb)
{
    size_t n = na < nb ? na : nb;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c < 0 ? -1 : 1;
    return (na > nb) - (na < nb);
}

bool bv_as_doc(const bson_value_t *v, bson_t *out)
{
    /* On failure `out` is still a valid (empty) document: dozens of callers pass it on
     * without checking, and a nested document whose length prefix disagrees with its
     * container (found by fuzz_devdb_wire) must not leave it uninitialised. */
    static const uint8_t empty[5] = {5, 0, 0, 0, 0};
    if ((v->value_type == BSON_TYPE_DOCUMENT || v->value_type == BSON_TYPE_ARRAY) &&
        bson_init_static(out, v->value.v_doc.data, v->value.v_doc.data_len))
        return true;
    bson_init_static(out, empty, sizeof empty);
    return false;
}

/* Nesting beyond this compares the remaining bytes instead of recursing: a hostile document
 * nested millions deep must not exhaust the stack. MongoDB itself refuses such documents. */
#define MAX_COMPARE_DEPTH 200

static int compare_values(const bson_value_t *a, const bson_value_t *b, int depth);

static int compare_doc_bytes(const uint8_t *da, uint32_t la, const uint8_t *db, uint32_t lb,
                             int depth)
{
    if (depth > MAX_COMPARE_DEPTH)
        return cmp_bytes(da, la, db, lb);
    bson_iter_t ia, ib;
    if (!bson_iter_init_from_data(&ia, da, la) || !bson_iter_init_from_data(&ib, db, lb))
        return cmp_bytes(da, la, db, lb);
    for (;;) {
        bool ha = bson_iter_next(&ia), hb = bson_iter_next(&ib);
        if (!ha || !hb)
            return (ha > hb) - (ha < hb);
        const bson_value_t *va = bson_iter_value(&ia);
        const bson_value_t *vb = bson_iter_value(&ib);
        int ta = bv_canonical_type(va->value_type), tb = bv_canonical_type(vb->value_type);
        if (ta != tb)
            return ta < tb ? -1 : 1;
        int c = strcmp(bson_iter_key(&ia), bson_iter_key(&ib));
        if (c)
            return c < 0 ? -1 : 1;
        c = compare_values(va, vb, depth + 1);
        if (c)
            return c;
    }
}

int bv_compare_docs(const bson_t *a, const bson_t *b)
{
    return compare_doc_bytes(bson_get_data(a), a->len, bson_get_data(b), b->len, 0);
}

static int compare_values(const bson_value_t *a, const bson_value_t *b, int depth)
{
    int ta = bv_canonical_type(a->value_type), tb = bv_canonical_type(b->value_type);
    if (ta != tb)
        return ta < tb ? -1 : 1;
    switch (a->value_type) {
    case BSON_TYPE_EOD:
    case BSON_TYPE_UNDEFINED:
    case BSON_TYPE_NULL:
    case BSON_TYPE_MINKEY:
    case BSON_TYPE_MAXKEY:
        return 0;
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DECIMAL128:
        return compare_numbers(a, b);
    case BSON_TYPE_UTF8:
    case BSON_TYPE_SYMBOL: {
        /* v_utf8 and v_symbol share layout (str, len). */
        const char *sa =
            a->value_type == BSON_TYPE_UTF8 ? a->value.v_utf8.str : a->value.v_symbol.symbol;
        uint32_t na = a->value_type == BSON_TYPE_UTF8 ? a->value.v_utf8.len : a->value.v_symbol.len;
        const char *sb =
            b->value_type == BSON_TYPE_UTF8 ? b->value.v_utf8.str : b->value.v_symbol.symbol;
        uint32_t nb = b->value_type == BSON_TYPE_UTF8 ? b->value.v_utf8.len : b->value.v_symbol.len;
        return cmp_bytes(sa, na, sb, nb);
    }
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY:
        return compare_doc_bytes(a->value.v_doc.data, a->value.v_doc.data_len, b->value.v_doc.data,
                                 b->value.v_doc.data_len, depth);
    case BSON_TYPE_BINARY: {
        uint32_t na = a->value.v_binary.data_len, nb = b->value.v_binary.data_len;
        if (na != nb)
            return na < nb ? -1 : 1;
        if (a->value.v_binary.subtype != b->value.v_binary.subtype)
            return a->value.v_binary.subtype < b->value.v_binary.subtype ? -1 : 1;
        return cmp_bytes(a->value.v_binary.data, na, b->value.v_binary.data, nb);
    }
    case BSON_TYPE_OID:
        return cmp_bytes(a->value.v_oid.bytes, 12, b->value.v_oid.bytes, 12);
    case BSON_TYPE_BOOL:
        return (a->value.v_bool > b->value.v_bool) - (a->value.v_bool < b->value.v_bool);
    case BSON_TYPE_DATE_TIME:
        return (a->value.v_datetime > b->value.v_datetime) -
               (a->value.v_datetime < b->value.v_datetime);
    case BSON_TYPE_TIMESTAMP: {
        uint64_t x =
            ((uint64_t)a->value.v_timestamp.timestamp << 32) | a->value.v_timestamp.increment;
        uint64_t y =
            ((uint64_t)b->value.v_timestamp.timestamp << 32) | b->value.v_timestamp.increment;
        return (x > y) - (x < y);
    }
    case BSON_TYPE_REGEX: {
        int c = strcmp(a->value.v_regex.regex, b->value.v_regex.regex);
        if (c)
            return c < 0 ? -1 : 1;
        c = strcmp(a->value.v_regex.options, b->value.v_regex.options);
        return (c > 0) - (c < 0);
    }
    case BSON_TYPE_DBPOINTER: {
        int c = cmp_bytes(a->value.v_dbpointer.collection, a->value.v_dbpointer.collection_len,
                          b->value.v_dbpointer.collection, b->value.v_dbpointer.collection_len);
        if (c)
            return c;
        return cmp_bytes(a->value.v_dbpointer.oid.bytes, 12, b->value.v_dbpointer.oid.bytes, 12);
    }
    case BSON_TYPE_CODE:
        return cmp_bytes(a->value.v_code.code, a->value.v_code.code_len, b->value.v_code.code,
                         b->value.v_code.code_len);
    case BSON_TYPE_CODEWSCOPE: {
        int c = cmp_bytes(a->value.v_codewscope.code, a->value.v_codewscope.code_len,
                          b->value.v_codewscope.code, b->value.v_codewscope.code_len);
        if (c)
            return c;
        return compare_doc_bytes(a->value.v_codewscope.scope_data, a->value.v_codewscope.scope_len,
                                 b->value.v_codewscope.scope_data, b->value.v_codewscope.scope_len,
                                 depth);
    }
    }
    return 0;
}

int bv_compare(const bson_value_t *a, const bson_value_t *b)
{
    return compare_values(a, b, 0);
}

bool bv_equal(const bson_value_t *a, const bson_value_t *b)
{
    return bv_compare(a, b) == 0;
}

bool bv_append(bson_t *b, const char *key, int key_len, const bson_value_t *v)
{
    if (v->value_type == BSON_TYPE_EOD)
        return true;
    return bson_append_value(b, key, key_len, v);
}

/* ---------------------------------------------------------------------------------------------
 * Paths
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    const char *s;
    size_t n;
} part;

typedef struct {
    const part *parts;
    size_t nparts;
    int flags;
    bv_path_cb cb;
    void *ctx;
    bool missing_reported;
    bool saw_array; /* an array was traversed or expanded (multikey) */
    bool stopped;
} walk_state;

static size_t split_path(const char *path, part *parts, size_t cap)
{
    size_t len = strnlen(path, BV_PATH_MAX + 1);
    if (len == 0 || len > BV_PATH_MAX)
        return 0;
    size_t n = 0;
    const char *p = path, *end = path + len;
    while (p <= end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        const char *stop = dot ? dot : end;
        if (n == cap)
            return 0;
        parts[n].s = p;
        parts[n].n = (size_t)(stop - p);
        n++;
        if (!dot)
            break;
        p = dot + 1;
    }
    return n;
}

static bool is_index_part(const part *p)
{
    if (p->n == 0 || p->n > 9)
        return false;
    for (size_t i = 0; i < p->n; i++)
        if (p->s[i] < '0' || p->s[i] > '9')
            return false;
    return p->n == 1 || p->s[0] != '0';
}

static void report(walk_state *st, const bson_value_t *v)
{
    if (!st->stopped && st->cb(v, st->ctx))
        st->stopped = true;
}

static void report_missing(walk_state *st)
{
    if (!(st->flags & BV_PATH_REPORT_MISSING) || st->missing_reported)
        return;
    st->missing_reported = true;
    bson_value_t eod = {.value_type = BSON_TYPE_EOD};
    report(st, &eod);
}

static void walk(walk_state *st, const uint8_t *data, uint32_t len, bool is_array, size_t i);

static void walk_value(walk_state *st, const bson_value_t *v, size_t i)
{
    if (st->stopped)
        return;
    if (i == st->nparts) {
        bool arr = v->value_type == BSON_TYPE_ARRAY;
        if (!arr || !(st->flags & BV_PATH_EXPAND_LEAF)) {
            report(st, v);
            return;
        }
        st->saw_array = true;
        if (!(st->flags & BV_PATH_NO_LEAF_ARRAY))
            report(st, v);
        bson_iter_t it;
        if (!bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len))
            return;
        while (!st->stopped && bson_iter_next(&it))
            report(st, bson_iter_value(&it));
        return;
    }
    if (v->value_type == BSON_TYPE_DOCUMENT) {
        walk(st, v->value.v_doc.data, v->value.v_doc.data_len, false, i);
    } else if (v->value_type == BSON_TYPE_ARRAY) {
        walk(st, v->value.v_doc.data, v->value.v_doc.data_len, true, i);
    } else {
        report_missing(st);
    }
}

/* Looks up component i in the document/array `data`. */
static void walk(walk_state *st, const uint8_t *data, uint32_t len, bool is_array, size_t i)
{
    bson_iter_t it;
    const part *p = &st->parts[i];
    if (!is_array) {
        if (!bson_iter_init_from_data(&it, data, len) ||
            !bson_iter_find_w_len(&it, p->s, (int)p->n)) {
            report_missing(st);
            return;
        }
        walk_value(st, bson_iter_value(&it), i + 1);
        return;
    }
    st->saw_array = true;
    bool any = false;
    if (is_index_part(p) && bson_iter_init_from_data(&it, data, len) &&
        bson_iter_find_w_len(&it, p->s, (int)p->n)) {
        any = true;
        walk_value(st, bson_iter_value(&it), i + 1);
    }
    if (!bson_iter_init_from_data(&it, data, len))
        return;
    /* When the numeric component selected an element, documents in the array that lack a
     * field of that name do not make the path "missing". */
    int saved_flags = st->flags;
    if (any)
        st->flags &= ~BV_PATH_REPORT_MISSING;
    while (!st->stopped && bson_iter_next(&it)) {
        if (bson_iter_type(&it) != BSON_TYPE_DOCUMENT)
            continue;
        const bson_value_t *v = bson_iter_value(&it);
        any = true;
        walk(st, v->value.v_doc.data, v->value.v_doc.data_len, false, i);
    }
    st->flags = saved_flags;
    if (!any)
        report_missing(st);
}

static bool path_visit(const bson_t *doc, const char *path, int flags, bv_path_cb cb, void *ctx,
                       bool *saw_array)
{
    part parts[BV_PATH_MAX_PARTS];
    size_t n = split_path(path, parts, BV_PATH_MAX_PARTS);
    if (n == 0)
        return false;
    walk_state st = {.parts = parts, .nparts = n, .flags = flags, .cb = cb, .ctx = ctx};
    walk(&st, bson_get_data(doc), doc->len, false, 0);
    if (saw_array)
        *saw_array = st.saw_array;
    return st.stopped;
}

bool bv_path_visit(const bson_t *doc, const char *path, int flags, bv_path_cb cb, void *ctx)
{
    return path_visit(doc, path, flags, cb, ctx, NULL);
}

bool bv_path_get(const bson_t *doc, const char *path, bson_value_t *out)
{
    part parts[BV_PATH_MAX_PARTS];
    size_t n = split_path(path, parts, BV_PATH_MAX_PARTS);
    if (n == 0)
        return false;
    const uint8_t *data = bson_get_data(doc);
    uint32_t len = doc->len;
    for (size_t i = 0; i < n; i++) {
        bson_iter_t it;
        if (!bson_iter_init_from_data(&it, data, len) ||
            !bson_iter_find_w_len(&it, parts[i].s, (int)parts[i].n))
            return false;
        const bson_value_t *v = bson_iter_value(&it);
        if (i + 1 == n) {
            *out = *v;
            return true;
        }
        if (v->value_type != BSON_TYPE_DOCUMENT && v->value_type != BSON_TYPE_ARRAY)
            return false;
        if (v->value_type == BSON_TYPE_ARRAY && !is_index_part(&parts[i + 1]))
            return false;
        data = v->value.v_doc.data;
        len = v->value.v_doc.data_len;
    }
    return false;
}

/* ---------------------------------------------------------------------------------------------
 * Sort keys
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    int dir;
    bool any;
    bool missing;
    bson_value_t best;
} sortkey_ctx;

static bool sortkey_cb(const bson_value_t *v, void *ctx)
{
    sortkey_ctx *c = ctx;
    bson_value_t nv;
    if (v->value_type == BSON_TYPE_EOD) {
        c->missing = true;
        nv.value_type = BSON_TYPE_NULL;
        v = &nv;
    }
    if (!c->any) {
        c->best = *v;
        c->any = true;
        return false;
    }
    int cmp = bv_compare(v, &c->best);
    if ((c->dir > 0 && cmp < 0) || (c->dir < 0 && cmp > 0))
        c->best = *v;
    return false;
}

void bv_sort_key(const bson_t *doc, const char *path, int dir, bson_value_t *out)
{
    sortkey_ctx c = {.dir = dir};
    path_visit(doc, path, BV_PATH_EXPAND_LEAF | BV_PATH_NO_LEAF_ARRAY | BV_PATH_REPORT_MISSING,
               sortkey_cb, &c, NULL);
    if (!c.any) {
        /* Only empty arrays were reached. */
        out->value_type = BSON_TYPE_UNDEFINED;
        return;
    }
    *out = c.best;
}

/* ---------------------------------------------------------------------------------------------
 * Index keys
 * ------------------------------------------------------------------------------------------- */

#define MAX_PATTERN_FIELDS 32

typedef struct {
    bson_value_t *a; /* inl until more than VLIST_INLINE values */
    size_t n, cap;
    bool overflow;
    bson_value_t inl[4];
} vlist;

#define VLIST_INLINE 4

static bool vlist_cb(const bson_value_t *v, void *ctx)
{
    vlist *l = ctx;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 8;
        if (ncap > BV_MAX_KEYS_PER_DOC) {
            l->overflow = true;
            return true;
        }
        bson_value_t *na =
            l->a == l->inl ? malloc(ncap * sizeof *na) : realloc(l->a, ncap * sizeof *na);
        if (!na) {
            l->overflow = true;
            return true;
        }
        if (l->a == l->inl)
            memcpy(na, l->inl, l->n * sizeof *na);
        l->a = na;
        l->cap = ncap;
    }
    if (v->value_type == BSON_TYPE_EOD)
        l->a[l->n].value_type = BSON_TYPE_NULL;
    else
        l->a[l->n] = *v;
    l->n++;
    return false;
}

static int cmp_values_qsort(const void *x, const void *y)
{
    return bv_compare(x, y);
}

int bv_pattern_dirs(const bson_t *pattern, int *dirs, size_t cap)
{
    bson_iter_t it;
    size_t n = 0;
    if (!bson_iter_init(&it, pattern))
        return -1;
    while (bson_iter_next(&it)) {
        if (n == cap)
            return -1;
        const bson_value_t *v = bson_iter_value(&it);
        dirs[n++] = bv_is_number(v->value_type) && bv_as_double(v) < 0 ? -1 : 1;
    }
    return (int)n;
}

int bv_index_keys(const bson_t *doc, const bson_t *pattern, bv_key_cb cb, void *ctx,
                  bool *is_multikey, bson_error_t *err)
{
    vlist lists[MAX_PATTERN_FIELDS];
    const char *names[MAX_PATTERN_FIELDS];
    size_t nf = 0;
    int rc = -1;
    const char *array_field = NULL;
    bson_iter_t it;
    bson_t key;
    bool key_inited = false;

    if (is_multikey)
        *is_multikey = false;
    if (!bson_iter_init(&it, pattern)) {
        mdb_error(err, MDB_CANNOT_CREATE_INDEX, "invalid index key pattern");
        goto out;
    }
    while (bson_iter_next(&it)) {
        if (nf == MAX_PATTERN_FIELDS) {
            mdb_error(err, MDB_CANNOT_CREATE_INDEX, "too many fields in index key pattern");
            goto out;
        }
        if (!bv_is_number(bson_iter_type(&it))) {
            mdb_error(err, MDB_CANNOT_CREATE_INDEX, "Unsupported index key value for field '%s'",
                      bson_iter_key(&it));
            goto out;
        }
        const char *path = bson_iter_key(&it);
        names[nf] = path;
        vlist *l = &lists[nf++];
        l->a = l->inl;
        l->n = 0;
        l->cap = VLIST_INLINE;
        l->overflow = false;
        bool saw_array = false;
        path_visit(doc, path, BV_PATH_EXPAND_LEAF | BV_PATH_NO_LEAF_ARRAY | BV_PATH_REPORT_MISSING,
                   vlist_cb, l, &saw_array);
        if (l->overflow) {
            mdb_error(err, MDB_CANNOT_CREATE_INDEX, "too many index keys for one document");
            goto out;
        }
        if (saw_array) {
            if (array_field) {
                mdb_error(err, MDB_CANNOT_INDEX_PARALLEL_ARRAYS,
                          "cannot index parallel arrays [%s] [%s]", path, array_field);
                goto out;
            }
            array_field = path;
            if (is_multikey)
                *is_multikey = true;
        }
        if (l->n == 0) {
            bson_value_t undef = {.value_type = BSON_TYPE_UNDEFINED};
            vlist_cb(&undef, l);
        }
        if (l->n > 1) {
            qsort(l->a, l->n, sizeof l->a[0], cmp_values_qsort);
            size_t w = 1;
            for (size_t r = 1; r < l->n; r++)
                if (bv_compare(&l->a[r], &l->a[w - 1]) != 0)
                    l->a[w++] = l->a[r];
            l->n = w;
        }
    }
    (void)names;
    /* At most one list has more than one value, so the product is that list. */
    size_t idx[MAX_PATTERN_FIELDS] = {0};
    bson_init(&key);
    key_inited = true;
    for (;;) {
        bson_reinit(&key);
        for (size_t f = 0; f < nf; f++)
            bv_append(&key, "", 0, &lists[f].a[idx[f]]);
        int r = cb(&key, ctx);
        if (r) {
            rc = r;
            goto out;
        }
        size_t f = nf;
        while (f > 0) {
            f--;
            if (++idx[f] < lists[f].n)
                break;
            idx[f] = 0;
            if (f == 0) {
                rc = 0;
                goto out;
            }
        }
        if (nf == 0) {
            rc = 0;
            goto out;
        }
    }
out:
    if (key_inited)
        bson_destroy(&key);
    for (size_t f = 0; f < nf; f++)
        if (lists[f].a != lists[f].inl)
            free(lists[f].a);
    return rc;
}

int bv_key_compare(const bson_t *a, const bson_t *b, const int *dirs, size_t n)
{
    bson_iter_t ia, ib;
    if (!bson_iter_init(&ia, a) || !bson_iter_init(&ib, b))
        return 0;
    for (size_t i = 0;; i++) {
        bool ha = bson_iter_next(&ia), hb = bson_iter_next(&ib);
        if (!ha || !hb)
            return (ha > hb) - (ha < hb);
        int c = bv_compare(bson_iter_value(&ia), bson_iter_value(&ib));
        if (c) {
            if (dirs && i < n && dirs[i] < 0)
                c = -c;
            return c;
        }
    }
}

/* ---- raw elements --------------------------------------------------------------------------- */

static uint32_t le32(const uint8_t *p)
{
    uint32_t x;
    memcpy(&x, p, 4);
    return BSON_UINT32_FROM_LE(x);
}

size_t bv_raw_value_size(uint8_t type, const uint8_t *v, size_t avail)
{
    size_t n;
    switch (type) {
    case BSON_TYPE_UNDEFINED:
    case BSON_TYPE_NULL:
    case BSON_TYPE_MINKEY:
    case BSON_TYPE_MAXKEY:
        n = 0;
        break;
    case BSON_TYPE_BOOL:
        n = 1;
        break;
    case BSON_TYPE_INT32:
        n = 4;
        break;
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_DATE_TIME:
    case BSON_TYPE_INT64:
    case BSON_TYPE_TIMESTAMP:
        n = 8;
        break;
    case BSON_TYPE_OID:
        n = 12;
        break;
    case BSON_TYPE_DECIMAL128:
        n = 16;
        break;
    case BSON_TYPE_UTF8:
    case BSON_TYPE_CODE:
    case BSON_TYPE_SYMBOL:
        if (avail < 4 || le32(v) < 1 || le32(v) > INT32_MAX)
            return SIZE_MAX;
        n = 4 + (size_t)le32(v);
        break;
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY:
    case BSON_TYPE_CODEWSCOPE:
        if (avail < 4 || le32(v) < 5 || le32(v) > INT32_MAX)
            return SIZE_MAX;
        n = le32(v);
        break;
    case BSON_TYPE_BINARY:
        if (avail < 4 || le32(v) > INT32_MAX)
            return SIZE_MAX;
        n = 5 + (size_t)le32(v);
        break;
    case BSON_TYPE_DBPOINTER:
        if (avail < 4 || le32(v) < 1 || le32(v) > INT32_MAX)
            return SIZE_MAX;
        n = 4 + (size_t)le32(v) + 12;
        break;
    case BSON_TYPE_REGEX: {
        const uint8_t *a = memchr(v, 0, avail);
        const uint8_t *b = a ? memchr(a + 1, 0, avail - (size_t)(a + 1 - v)) : NULL;
        if (!b)
            return SIZE_MAX;
        n = (size_t)(b + 1 - v);
        break;
    }
    default:
        return SIZE_MAX;
    }
    return n <= avail ? n : SIZE_MAX;
}

bool bv_truthy(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_EOD:
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
        return false;
    case BSON_TYPE_BOOL:
        return v->value.v_bool;
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_DECIMAL128:
        return bv_as_double(v) != 0;
    default:
        return true;
    }
}
