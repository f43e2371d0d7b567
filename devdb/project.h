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
 * $elemMatch projections are supported; positional "a.$", $meta and expressions are not
 * (BadValue / code as MongoDB where it rejects them for find).
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

/* Writes the projected `doc` into `out` (caller-initialised, caller destroys). */
void projection_apply(const projection *p, const bson_t *doc, bson_t *out);

#endif
