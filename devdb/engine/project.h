/*
 * project.h: find/findAndModify projections ({a: 1, "b.c": 1}, {x: 0}, {_id: 0}) compiled once
 * and applied per document.
 *
 * MongoDB 4.4 semantics: a projection is inclusion or exclusion (by the non-_id fields; _id is
 * included unless {_id: 0}); true/false and non-zero/zero numbers both count. Dotted paths
 * descend into embedded documents and into each document element of arrays (non-document
 * elements are dropped by an inclusion of a sub-path and kept by an exclusion). Field order is
 * the document's. Mixing is an error: "Cannot do exclusion on field x in inclusion
 * projection" (31254), "Cannot do inclusion on field x in exclusion projection" (31253);
 * overlapping paths "Path collision at a.b" (31250). $slice (number or [skip, limit]) and
 * $elemMatch projections are supported, and (as in 4.4) any other value is an aggregation
 * expression computing the field (expr.h: {full: {$concat: ["$first", " ", "$last"]}}, "$x",
 * {$literal: 1}); computed fields make the projection an inclusion and are appended after the
 * document's own fields, in spec order. Positional "a.$" and $meta are rejected (BadValue).
 *
 * A projection is immutable once built and may be used from several threads.
 */
#ifndef DEVDB_PROJECT_H
#define DEVDB_PROJECT_H

#include <bson/bson.h>
#include <stdbool.h>

typedef struct projection projection;

/* Compiles `spec` (NULL or empty: identity). Returns NULL with `err` set on a bad spec. The
 * caller frees the result with projection_free. */
projection *projection_new(const bson_t *spec, bson_error_t *err);

/* NULL-safe. */
void projection_free(projection *p);

/* True if the projection returns documents unchanged. */
bool projection_is_identity(const projection *p);

/* Writes the projected `doc` into `out` (caller-initialised, caller destroys). A computed field
 * whose expression fails to evaluate is left out; use projection_apply_ex to see the error. */
void projection_apply(const projection *p, const bson_t *doc, bson_t *out);

/* As projection_apply, but returns 0, or -1 with `err` set when a computed field's expression
 * fails (e.g. "can't $divide by zero"). */
int projection_apply_ex(const projection *p, const bson_t *doc, bson_t *out, bson_error_t *err);

/* The $project stage flavour (aggregate.c): no $slice/$elemMatch projection operators (they
 * are expressions there), an empty spec is an error (51272 "$project specification must have
 * at least one field"). */
projection *projection_new_stage(const bson_t *spec, bson_error_t *err);

#endif
