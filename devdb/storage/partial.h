/*
 * partial: the partialFilterExpression of a partial index (MongoDB 4.4 semantics).
 *
 * A partial index holds only the documents that match its filter. MongoDB 4.4 accepts a small
 * subset of the query language there: equality ({f: v}, {f: {$eq: v}}), $exists: true,
 * $gt/$gte/$lt/$lte, $type, and a top-level $and of those. partial_new validates a filter
 * against that subset exactly as 4.4 does (same codes and messages), compiles it once for the
 * membership test, and keeps the list of its predicates so the planner can decide whether a
 * query implies it (only then may a partial index answer the query: every matching document
 * is in the index).
 *
 * Implication is deliberately conservative (MongoDB's expression::isSubsetOf rules for the
 * supported predicates): every predicate of the filter needs a top-level conjunct of the query
 * (a top-level field or a member of a top-level $and, recursively) on the same path that is at
 * least as strict: equality by an equal value of the same canonical type; a range by an equal
 * or tighter range or an equality inside it (same canonical type, no NaN); $exists: true by
 * $exists: true, $type or a comparison with a value other than null/undefined/MinKey/MaxKey;
 * $type by the identical $type. Anything else (including $or in the query) means "not implied".
 *
 * A compiled filter is immutable: partial_matches / partial_implied_by may run concurrently.
 * Memory: partial_new copies the filter; everything returned points into the partial_filter
 * and lives until partial_free.
 */
#ifndef DEVDB_PARTIAL_H
#define DEVDB_PARTIAL_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct partial_filter partial_filter;

/* Validates and compiles `filter` (the value of partialFilterExpression) for an index whose
 * `sparse` option is as given. NULL with err set, checked in MongoDB 4.4's order: TypeMismatch
 * 14 "The field 'partialFilterExpression' must be an object, but got <type>" for a
 * non-document; the query parser's error (BadValue 2, ...) for a filter that does not parse;
 * CannotCreateIndex 67 "cannot mix \"partialFilterExpression\" and \"sparse\" options" when
 * sparse; CannotCreateIndex 67 "unsupported expression in partial index: <expression>" or
 * "$and only supported in partialFilterExpression at top level" for what 4.4 refuses. */
partial_filter *partial_new(const bson_value_t *filter, bool sparse, bson_error_t *err);

/* NULL-safe. */
void partial_free(partial_filter *p);

/* Does `doc` belong in the index? */
bool partial_matches(const partial_filter *p, const bson_t *doc);

/* The filter as given. */
const bson_t *partial_doc(const partial_filter *p);

/* The distinct field paths the filter reads (for "may this update change membership?"). */
size_t partial_npaths(const partial_filter *p);
const char *partial_path(const partial_filter *p, size_t i);

/* Same filter (field names and values, numbers compared by value)? Both may be NULL. */
bool partial_equal(const partial_filter *a, const partial_filter *b);

/* Does every document matching `query` match the filter (by the conservative rules above)?
 * False when unsure. */
bool partial_implied_by(const partial_filter *p, const bson_t *query);

#endif
