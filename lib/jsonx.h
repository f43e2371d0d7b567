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

#endif
