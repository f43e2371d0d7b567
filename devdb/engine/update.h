/*
 * update.h: MongoDB update documents (operator form and replacement form) compiled once,
 * then applied to documents.
 *
 * Operator form: $set $unset $inc $mul $min $max $rename $setOnInsert $currentDate $push
 * (with $each, $slice, $position, $sort) $addToSet (with $each) $pull (a value or a query
 * condition) $pop. Paths are dotted; numeric components address array elements (setting past
 * the end pads with nulls, as MongoDB does). Positional operators ($, $[], $[id]) and update
 * are not supported (BadValue). Pipeline-style updates go through updater_new_pipeline.
 *
 * Errors MongoDB reports at parse time are reported by updater_new (code, wording as MongoDB
 * 4.4): unknown operator (FailedToParse 9 "Unknown modifier: $foo. Expected a valid update
 * modifier or pipeline-style update specified as an array"), an empty operator argument
 * (FailedToParse 9 "'$set' is empty. You must specify a field like so: {$set: {<field>: ...}}"),
 * two operators touching overlapping paths (ConflictingUpdateOperators 40 "Updating the path
 * 'a.b' would create a conflict at 'a'"), non-numeric $inc/$mul argument (TypeMismatch 14
 * "Cannot increment with non-numeric argument: {a: \"x\"}"), a replacement document containing
 * $-prefixed fields, and so on. Errors that depend on the document are reported by
 * updater_apply: $inc of a non-number (TypeMismatch 14 "Cannot apply $inc to a value of
 * non-numeric type. {_id: 1} has the field 'a' of non-numeric type string"), changing _id
 * (ImmutableField 66 "Performing an update on the path '_id' would modify the immutable field
 * '_id'"), a path through a non-container (PathNotViable 28), $push to a non-array (BadValue 2
 * "The field 'a' must be an array but is of type int in document {_id: 1}"), and so on.
 *
 * An updater is immutable after updater_new and may be applied from several threads.
 */
#ifndef DEVDB_UPDATE_H
#define DEVDB_UPDATE_H

#include <bson/bson.h>
#include <stdbool.h>

typedef struct updater updater;

/* Compiles `update` (copied). A document whose first field starts with '$' is an operator
 * update, otherwise a replacement. Returns NULL with `err` set on a malformed update. The caller
 * frees the result with updater_free. */
updater *updater_new(const bson_t *update, bson_error_t *err);

/* Compiles a pipeline-style update (the `u` of an update statement given as an array, passed
 * here as the BSON array document {"0": {...}, "1": {...}}). Stages allowed by MongoDB 4.4:
 * $addFields/$set, $project/$unset, $replaceRoot/$replaceWith (others: InvalidOptions 72
 * "$match is not allowed to be used within an update"). An empty pipeline is an error
 * (FailedToParse 9). The result is applied with updater_apply like the other forms; _id stays
 * immutable. */
updater *updater_new_pipeline(const bson_t *stages, bson_error_t *err);

/* The shape cache of a batch of updates: if `tmpl` (a compiled updater, may be NULL) is a
 * `$set` of top-level fields and `update` is `{$set: {...}}` with exactly tmpl's field names in
 * tmpl's order (values of any type), returns what updater_new(update) would return, built by
 * copying tmpl's compiled ops (their order, conflict and path checks depend only on the names)
 * and re-binding them to update's values: no parsing, sorting or checking. Otherwise (or out of
 * memory) NULL, and the caller uses updater_new. tmpl is only read; the result is
 * independent of it. */
updater *updater_rebind(const updater *tmpl, const bson_t *update);

/* NULL-safe. */
void updater_free(updater *u);

/* True for a replacement document (no operators). */
bool updater_is_replacement(const updater *u);

/* Could applying `u` change the value at field path `path` (dotted)? Conservative: true for
 * replacements and pipelines, and whenever an operator's path (or $rename target) shares the
 * first path component with `path`. False means the value at `path` is the same before and
 * after, which lets the store skip re-indexing indexes over untouched fields. */
bool updater_may_touch(const updater *u, const char *path);

/*
 * Applies the update to `doc` and writes the result to `out`, which the caller has initialised
 * (bson_init) and must destroy either way; on error `out`'s content is unspecified.
 * Field order follows MongoDB: existing fields stay in place, new fields are appended in the
 * lexicographic order of their paths (as 4.4 does), _id stays first. A replacement keeps the
 * original _id (first) unless the replacement contains an equal _id; a different _id is
 * ImmutableField 66 ("After applying the update, the (immutable) field '_id' was found to have
 * been altered to _id: 2"). `is_upsert_insert` makes $setOnInsert take effect (it is ignored
 * otherwise). *modified is set to whether the result differs from `doc` (byte-wise), so the
 * server can report nModified as MongoDB does. Returns 0 or -1 with `err` set.
 * The result is capped at 16 MiB (BSONObjectTooLarge-style error code 17419 above that).
 */
int updater_apply(const updater *u, const bson_t *doc, bool is_upsert_insert, bson_t *out,
                  bool *modified, bson_error_t *err);

/*
 * The document an upsert starts from, built from the filter's equality conditions: plain
 * values and $eq at top level and inside top-level $and; dotted paths become nested documents
 * ({"a.b": 1} gives {a: {b: 1}}); operators other than $eq, and $or/$nor, contribute nothing.
 * Two equalities on the same path, or on overlapping paths, are an error as in MongoDB
 * (NotSingleValueField 54 "cannot infer query fields to set, path 'a' is matched twice";
 * "cannot infer query fields to set, both paths 'a.b' and 'a' are matched"). `_id`, if given,
 * comes first. `out` is caller-initialised. Returns 0 or -1 with `err` set.
 * The server then applies the update with is_upsert_insert = true (operator updates) or takes
 * the replacement document with the seed's _id (replacements), and adds an ObjectId _id if the
 * result has none.
 */
int update_upsert_seed(const bson_t *filter, bson_t *out, bson_error_t *err);

#endif
