/*
 * jsonx: JSON helpers on jansson shared by the API, the workers and the CLI.
 *
 * The HTTP contract renders stored documents with ObjectIds as 24-hex strings and dates as
 * ISO-8601 UTC strings; jsonx_from_bson() does exactly that (int32/int64 -> integers, double ->
 * real, decimal128 -> string, nested documents and arrays kept, rarer types as canonical
 * extended JSON text).
 *
 * Ownership: every json_t returned is a new reference the caller must json_decref(); strings
 * returned by jsonx_dumps are malloc'd and freed by the caller.
 */
#ifndef MINICRM_JSONX_H
#define MINICRM_JSONX_H

#include <bson/bson.h>
#include <jansson.h>
#include <stdbool.h>

/* Convert a BSON document to a JSON object as the contract shows it. NULL on out-of-memory. */
json_t *jsonx_from_bson(const bson_t *doc);
/* Convert one BSON value (iterator position). */
json_t *jsonx_from_bson_iter(const bson_iter_t *it);

/* Parse at most `maxlen` bytes of JSON; NULL with a short message in err (line/column). */
json_t *jsonx_parse(const char *buf, size_t len, char *err, size_t errlen);

/* Compact serialisation (malloc'd, caller frees), or NULL. */
char *jsonx_dumps(const json_t *v);

/* {"error": msg} as a new object. */
json_t *jsonx_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Typed getters: return the value or `def` when the key is absent or of another type. */
const char *jsonx_str(const json_t *obj, const char *key, const char *def);
long long jsonx_int(const json_t *obj, const char *key, long long def);
bool jsonx_bool(const json_t *obj, const char *key, bool def);

/* ---- Writing JSON text by hand ------------------------------------------------------------
 * For hot paths that emit many small objects of a known shape (fan-out sends, vendor receipts,
 * queued receipts), where building a jansson tree and dumping it costs more than the rest of
 * the work. The text is what json_dumps(JSON_COMPACT) would write for the same values.
 * A jsonx_buf starts as {0}; after an allocation failure every call is a no-op and
 * jsonx_buf_ok() is false. The caller frees b->data (or keeps it). */
typedef struct jsonx_buf {
    char *data; /* NUL-terminated while ok */
    size_t len, cap;
    bool failed;
} jsonx_buf;

/* Append n raw bytes (already JSON). */
void jsonx_buf_raw(jsonx_buf *b, const char *s, size_t n);
/* Append a NUL-terminated raw string (already JSON). */
void jsonx_buf_cat(jsonx_buf *b, const char *s);
/* Append s (n bytes of valid UTF-8) as a quoted JSON string: quote, backslash and control
 * characters escaped as jansson's compact dump escapes them. */
void jsonx_buf_str(jsonx_buf *b, const char *s, size_t n);
bool jsonx_buf_ok(const jsonx_buf *b);
/* Make room for `more` bytes ahead (one allocation instead of several doublings). */
bool jsonx_buf_reserve(jsonx_buf *b, size_t more);

/* ---- BSON straight to JSON text ------------------------------------------------------------
 * The list routes write stored documents without building a jansson tree: the text is byte for
 * byte what jsonx_dumps(jsonx_from_bson(doc)) gives (same escapes, number forms, dates, member
 * order; a member jansson would drop, a string that is not UTF-8 or a NaN/infinite double, is
 * dropped too; rare types go through jsonx_from_bson_iter). The one case it does not reproduce
 * is a document with a repeated key (jansson keeps the first position and the last value): the
 * writers return -1 for it, having written a partial text, and the caller renders that
 * document or page through jansson instead.
 *
 * A member hook lets a caller replace or drop top-level members (populate, renames): for each
 * top-level member whose value jansson would keep, `fn` is called before anything of it is
 * written; it returns JSONX_MEMBER_KEEP (write it as stored), JSONX_MEMBER_SKIP (leave it out)
 * or JSONX_MEMBER_RAW after pointing *raw and *rawlen at the JSON text of the value to write. */
enum { JSONX_MEMBER_KEEP = 0, JSONX_MEMBER_SKIP = 1, JSONX_MEMBER_RAW = 2 };
typedef int (*jsonx_member_fn)(void *ctx, const bson_iter_t *it, const char **raw, size_t *rawlen);
/* Append doc as a JSON object. 0, or -1 for a repeated key (see above). fn may be NULL. */
int jsonx_buf_bson(jsonx_buf *b, const bson_t *doc, jsonx_member_fn fn, void *ctx);
/* Append `"key":value` of the member at it, with a leading ',' when *first is false (then
 * cleared). Nothing when jansson would drop the member. 0, or -1 for a repeated key inside. */
int jsonx_buf_bson_member(jsonx_buf *b, const bson_iter_t *it, bool *first);
/* doc as the "public view" several lists show: without _id and the NULL-terminated `drop`
 * fields, then "id": the _id value last (what json_object_set(v, "id", _id) followed by
 * json_object_del(v, "_id") gives in jansson). 0, or -1 (repeated key, or a stored "id" member
 * or no _id: the caller renders that document through jansson) with the text cut back. */
int jsonx_buf_bson_public(jsonx_buf *b, const bson_t *doc, const char *const *drop);
/* An integer as jansson writes it ("%lld"). */
void jsonx_buf_int(jsonx_buf *b, long long v);
/* Empty the text, keep the allocation. */
void jsonx_buf_reset(jsonx_buf *b);
void jsonx_buf_free(jsonx_buf *b);

#endif
