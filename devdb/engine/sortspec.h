/*
 * sortspec.h: sort specifications ({a: 1, "b.c": -1}) compiled once, and a stable sort of
 * documents by them.
 *
 * MongoDB 4.4 semantics: values compare in bv_compare order; a missing field sorts as null;
 * for a path reaching an array, ascending uses its smallest element and descending its
 * largest (bv_sort_key); ties keep input order (stable). Directions are 1 or -1 (any number
 * equal to them, int32/int64/double); anything else is BadValue 2 ("bad sort specification"
 * wording as MongoDB 4.4: "$sort key ordering must be 1 (for ascending) or -1 (for
 * descending)" in aggregation, code 15975; find reports BadValue "bad sort specification").
 * {$meta: ...} is rejected (text search is out of scope). At most 32 keys (MongoDB's limit).
 *
 * A sortspec is immutable after sortspec_new and may be used from several threads.
 */
#ifndef DEVDB_SORTSPEC_H
#define DEVDB_SORTSPEC_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>

#define SORTSPEC_MAX_KEYS 32

typedef struct sortspec sortspec;

/* Compiles `spec` (copied). Returns NULL with `err` set on a bad spec; an empty spec is valid
 * (sortspec_nkeys 0: no ordering). `for_aggregate` selects MongoDB's $sort error wording and
 * codes instead of find's. The caller frees the result with sortspec_free. */
sortspec *sortspec_new(const bson_t *spec, bool for_aggregate, bson_error_t *err);

/* NULL-safe. */
void sortspec_free(sortspec *s);

size_t sortspec_nkeys(const sortspec *s);
/* Path and direction (+1/-1) of key i (< sortspec_nkeys). The path is owned by the spec. */
const char *sortspec_path(const sortspec *s, size_t i);
int sortspec_dir(const sortspec *s, size_t i);

/* Three-way comparison of two documents under the spec (direction applied). Computes sort
 * keys on every call: for sorting many documents use sortspec_sort. */
int sortspec_compare(const sortspec *s, const bson_t *a, const bson_t *b);

/* Stable-sorts `docs[0..n)` in place by the spec. Sort keys are computed once per document.
 * Returns 0, or -1 with `err` set if memory for the keys cannot be allocated. The documents
 * are not copied or modified; they must stay valid during the call. */
int sortspec_sort(const sortspec *s, const bson_t **docs, size_t n, bson_error_t *err);

#endif
