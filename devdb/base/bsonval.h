/*
 * bsonval.h: BSON values as MongoDB orders and compares them, dotted-path lookup, and index /
 * sort key extraction. The foundation of devdb's document engine (match, sort, update, index).
 *
 * Order (MongoDB 4.4, by canonical type): MinKey < undefined < null < numbers < string/symbol
 * < object < array < binData < ObjectId < bool < date < timestamp < regex < DBPointer < code
 * < code-with-scope < MaxKey. Numbers (int32, int64, double, decimal128) compare by numeric value
 * across types, exactly (an int64 above 2^53 is not rounded through double); NaN is below every
 * other number and equal to itself. Strings compare bytewise (simple collation). Documents
 * compare field by field (canonical type of the value, then field name, then value), then by
 * length; arrays likewise, element by element. binData: length, then subtype, then bytes.
 *
 * Nothing here allocates except where a function says so; values handed to callbacks point
 * into the document being read and live as long as it does. All functions are thread-safe
 * (no shared state).
 */
#ifndef DEVDB_BSONVAL_H
#define DEVDB_BSONVAL_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* MongoDB's canonical type rank (canonicalizeBSONType): values of the same rank compare by
 * value, different ranks compare by rank. MinKey -1, undefined 0, null 5, numbers 10,
 * string/symbol 15, object 20, array 25, binData 30, ObjectId 35, bool 40, date 45,
 * timestamp 47, regex 50, DBPointer 55, code 60, code-with-scope 65, MaxKey 127. */
int bv_canonical_type(bson_type_t t);

/* Three-way comparison in MongoDB's order: <0, 0, >0. */
int bv_compare(const bson_value_t *a, const bson_value_t *b);

/* bv_compare(a, b) == 0: so 1 == 1.0 == NumberLong(1), {a:1} == {a:1.0}. */
bool bv_equal(const bson_value_t *a, const bson_value_t *b);

/* Compares two whole documents as embedded objects (field names and values, in order). */
int bv_compare_docs(const bson_t *a, const bson_t *b);

/* MongoDB's truthiness (aggregation expressions, $exists, partial filters): false for a
 * missing value (EOD), null, undefined, false and numeric zero; true for everything else. */
bool bv_truthy(const bson_value_t *v);

/* True for int32, int64, double and decimal128. */
bool bv_is_number(bson_type_t t);

/* A number as double (decimal128 through its string form; other types give 0.0). */
double bv_as_double(const bson_value_t *v);

/* True for double and decimal128: the operand types that make MongoDB's arithmetic leave the
 * integers. */
bool bv_is_float(bson_type_t t);

/* An int32 or int64 value as int64 (other types give 0). */
int64_t bv_as_int64(const bson_value_t *v);

/* A number that is a whole value in int64 range (|d| <= 9e18 for doubles and decimals) as
 * int64 in *out: returns 0, -1 when `v` is not a number, -2 when it is not whole (NaN, a
 * fraction or out of range). *out is written only on success. */
int bv_whole_int64(const bson_value_t *v, int64_t *out);

/* Integer addition or multiplication of two int32/int64 values with MongoDB's integer typing:
 * int32 op int32 gives int32 when the result fits, anything else gives int64. Returns false,
 * leaving *out untouched, when the result overflows int64: what that means is the caller's
 * choice (update's SafeNum reports an error, aggregation expressions fall back to double).
 * `out` may alias `a` or `b`. */
typedef enum { BV_ADD, BV_MUL } bv_arith_op;
bool bv_int_arith(bv_arith_op op, const bson_value_t *a, const bson_value_t *b, bson_value_t *out);

/* MongoDB's type alias for `t` ("double", "string", "object", "objectId", "int", "long", ...;
 * "missing" for BSON_TYPE_EOD), as $type and error messages spell it. A static string. */
const char *bv_type_name(bson_type_t t);

/* `v` as relaxed extended JSON (5, "x" with its quotes, { "$oid" : "..." }) in `buf`, cut to
 * `cap` bytes ("?" if libbson cannot render it). Returns buf. For error messages. */
const char *bv_render_json(const bson_value_t *v, char *buf, size_t cap);

/* `v` in MongoDB's shell-like style as its error messages quote values (1, 2.0, "x",
 * ObjectId('...'), {a: 1, b: [1, 2]}; other types as bv_render_json), cut to `cap` bytes.
 * Returns buf. For error messages. */
const char *bv_render_shell(const bson_value_t *v, char *buf, size_t cap);

/* The document or array (`is_array`) of `len` bytes at `data` in the same style. Returns buf. */
const char *bv_render_shell_doc(const uint8_t *data, uint32_t len, bool is_array, char *buf,
                                size_t cap);

/* True when no document or array in `doc` is nested more than `max` levels deep (`doc` itself
 * is level 1, so {a: {b: 1}} has depth 2), and `doc` is well-formed BSON; false otherwise.
 * MongoDB refuses documents deeper than 180 levels with "BSONObj exceeds maximum nested object
 * depth" (BV_MAX_NESTING); the server should check stored documents with it. Iterative: its
 * stack use does not grow with the depth of `doc`. Allocates O(max) iterators on the heap
 * (false if that fails). */
#define BV_MAX_NESTING 180
bool bv_depth_ok(const bson_t *doc, int max);

/* Reads the embedded document or array in `v` (BSON_TYPE_DOCUMENT/ARRAY) into `out` without
 * copying (bson_init_static). Returns false for any other type or a malformed length; `out`
 * is then an empty document (never uninitialised). */
bool bv_as_doc(const bson_value_t *v, bson_t *out);

/* Appends `v` to `b` under `key` (bson_append_value); a BSON_TYPE_EOD value appends nothing. */
bool bv_append(bson_t *b, const char *key, int key_len, const bson_value_t *v);

/* ---------------------------------------------------------------------------------------------
 * Dotted paths
 *
 * bv_path_visit walks `path` ("a.b.c") from `doc` the way MongoDB's query and index layers do:
 *  - a component names a field of a document;
 *  - on an array, a numeric component ("a.0.b") first selects that element, and every element
 *    that is a document is also searched for the component (implicit array traversal);
 *  - the value reached at the end of the path is reported once; if it is an array and
 *    BV_PATH_EXPAND_LEAF is set, each of its elements is reported as well (after the array
 *    itself unless BV_PATH_NO_LEAF_ARRAY is also set);
 *  - if nothing is reached on some branch and BV_PATH_REPORT_MISSING is set, the callback gets
 *    one value of type BSON_TYPE_EOD for that doc (at most once per visit).
 * The callback returns true to stop the walk early. bv_path_visit returns true if a callback
 * stopped it. Values point into `doc`. Path length is capped at BV_PATH_MAX bytes and
 * BV_PATH_MAX_PARTS components; longer paths visit nothing.
 * ------------------------------------------------------------------------------------------- */
#define BV_PATH_MAX       1024
#define BV_PATH_MAX_PARTS 100

enum {
    BV_PATH_EXPAND_LEAF = 1,    /* report elements of a leaf array too */
    BV_PATH_NO_LEAF_ARRAY = 2,  /* with EXPAND_LEAF: do not report the leaf array itself */
    BV_PATH_REPORT_MISSING = 4, /* report an EOD value when the path reaches nothing */
};

typedef bool (*bv_path_cb)(const bson_value_t *v, void *ctx);

bool bv_path_visit(const bson_t *doc, const char *path, int flags, bv_path_cb cb, void *ctx);

/* The value at `path` without array traversal (each component must name a field of an
 * embedded document, or an index of an array). Fills *out (pointing into doc) and returns true
 * if found. */
bool bv_path_get(const bson_t *doc, const char *path, bson_value_t *out);

/* ---------------------------------------------------------------------------------------------
 * Sort keys and index keys
 * ------------------------------------------------------------------------------------------- */

/* The value a document sorts by on `path` (MongoDB 4.4 semantics): a missing field sorts as
 * null; when the path reaches an array (or several values through arrays), ascending (dir > 0)
 * uses the smallest element and descending the largest; an empty array sorts as undefined
 * (just below null). *out points into `doc` or is a static null/undefined value. */
void bv_sort_key(const bson_t *doc, const char *path, int dir, bson_value_t *out);

/* Index key tuples of `doc` for a key pattern such as {a: 1, "b.c": -1}. Each key is a document
 * whose fields are all named "" and hold the values of the pattern's fields, in order (like
 * MongoDB's BSON index keys). A missing field gives null; an array gives one key per distinct
 * element (multikey; an empty array gives undefined); two array-valued fields in one document
 * are an error (CannotIndexParallelArrays 171: "cannot index parallel arrays [b] [a]").
 * Keys are reported sorted ascending in tuple order (bv_key_compare with all directions +1) and
 * deduplicated. `cb` gets each key, valid only during the call; it returns 0 to continue or
 * non-zero to stop (that value is then returned). Pattern values other than numbers (e.g.
 * "hashed", "text") are rejected with CannotCreateIndex 67. Returns 0, the callback's non-zero
 * value, or -1 with `err` set. *is_multikey (may be NULL) tells whether an array was expanded.
 * At most BV_MAX_KEYS_PER_DOC keys per document (more: error 67). */
#define BV_MAX_KEYS_PER_DOC 100000
typedef int (*bv_key_cb)(const bson_t *key, void *ctx);
int bv_index_keys(const bson_t *doc, const bson_t *pattern, bv_key_cb cb, void *ctx,
                  bool *is_multikey, bson_error_t *err);

/* Compares two key tuples field by field with bv_compare; dirs[i] < 0 reverses field i.
 * `dirs` may be NULL (all ascending); n is the number of entries in dirs. A shorter tuple that
 * is a prefix of the longer one compares lower. */
int bv_key_compare(const bson_t *a, const bson_t *b, const int *dirs, size_t n);

/* Fills `dirs` (capacity `cap`) with the directions (+1/-1) of a key pattern's fields in
 * order and returns their number, or -1 if the pattern has more than cap fields. */
int bv_pattern_dirs(const bson_t *pattern, int *dirs, size_t cap);

/* Size of the value bytes of a BSON element of type `type` starting at v, with `avail` bytes
 * before the document's end (for walking a document's raw elements without an iterator).
 * SIZE_MAX for an unknown type, a malformed length (a string shorter than its NUL, a document
 * shorter than 5 bytes) or a value that runs past avail. */
size_t bv_raw_value_size(uint8_t type, const uint8_t *v, size_t avail);

#endif
