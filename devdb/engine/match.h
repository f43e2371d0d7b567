/*
 * match.h: MongoDB query filters ("{a: {$gt: 5}, b: /x/i}") compiled once, then evaluated per
 * document.
 *
 * Supported (MongoDB 4.4 semantics): $eq $ne $gt $gte $lt $lte $in $nin $and $or $nor $not
 * $exists $type (numeric codes and aliases, including "number") $regex with $options (i m s x)
 * and BSON regex values, $elemMatch (value and document forms) $size $all, $comment (ignored).
 * Dotted paths descend through embedded documents and arrays (numeric components index
 * arrays); a condition on an array field matches if it matches the array or any element;
 * {a: null} matches a missing a; comparisons only match values of the same canonical type
 * bracket ({a: {$gt: 5}} never matches a string); equality across int32/int64/double is
 * numeric. Not supported: $expr, $where, $text, geo operators, $jsonSchema (BadValue
 * "unknown operator: $x" / "unknown top level operator: $x").
 *
 * matcher_new copies the filter and compiles it (regexes through PCRE2, once). A compiled
 * matcher is immutable: matcher_matches may run concurrently from several threads, does not
 * allocate for ordinary filters (regex matching uses a small per-thread match-data block
 * created on first use) and reads the document in place.
 */
#ifndef DEVDB_MATCH_H
#define DEVDB_MATCH_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct matcher matcher;

/* Compiles `filter` (may be NULL or empty: matches everything). Returns a matcher the caller
 * frees with matcher_free, or NULL with `err` set (BadValue 2 for unknown operators and
 * malformed arguments, e.g. "$in needs an array", "unknown operator: $foo"; FailedToParse 9
 * where MongoDB says so, e.g. "$and/$or/$nor must be a nonempty array"; 51091 for a regex that
 * does not compile). Nesting depth is capped at 100 (error BadValue). */
matcher *matcher_new(const bson_t *filter, bson_error_t *err);

/* True if `doc` satisfies the filter. */
bool matcher_matches(const matcher *m, const bson_t *doc);

/* NULL-safe. */
void matcher_free(matcher *m);

/* The filter the matcher was compiled from: `out` becomes a read-only view of the matcher's
 * copy (valid until matcher_free; nothing to destroy). */
void matcher_filter(const matcher *m, bson_t *out);

/* True if the filter is empty (matches every document without looking at it). */
bool matcher_is_empty(const matcher *m);

/*
 * Index selection support. For a path constrained by the top-level conjunction of the filter
 * (top-level fields and the members of top-level $and), matcher_field_bounds describes the
 * constraint so the server can scan an index instead of the collection:
 *  - points (n_points > 0): the field must equal one of these values ($eq, a plain value,
 *    $in without regexes). A null point also stands for "missing" (index keys of missing
 *    fields are null). Points are sorted ascending and distinct.
 *  - otherwise a range [lo, hi] from $gt/$gte/$lt/$lte; an open side is filled in with the end
 *    of the value's type bracket where one exists (numbers: NaN .. +Infinity, strings:
 *    "" .. {} exclusive), or marked absent (has_lo / has_hi false = unbounded).
 * The bounds are a superset of the matching keys: the server must still run matcher_matches
 * on every candidate document. Values point into the matcher (valid until matcher_free).
 * Pass multikey = true for an index that has (or may have) array-expanded keys: then two range
 * conditions are not intersected ({a: {$gt: 1, $lt: 5}} matches {a: [0, 10]}, whose keys 0 and
 * 10 are both outside (1, 5)); only the first range condition is used, with its bracket end.
 * Returns false when the path is not usefully constrained (no condition, or only $ne, $nin,
 * $exists, $regex, $elemMatch, equality with an array or regex value, conditions under
 * $or/$not...).
 */
#define MATCH_MAX_POINTS 1000
typedef struct {
    size_t n_points;
    const bson_value_t *points[MATCH_MAX_POINTS];
    bool has_lo, lo_inclusive;
    bson_value_t lo;
    bool has_hi, hi_inclusive;
    bson_value_t hi;
} match_bounds;

bool matcher_field_bounds(const matcher *m, const char *path, bool multikey, match_bounds *out);

/* The covered count's test (MongoDB's COUNT_SCAN): the one path every condition of the filter
 * is on, when the filter is a conjunction (top-level fields and $and) of $eq, $gt, $gte, $lt,
 * $lte and $in (without regexes) on a single top-level path; else NULL. On a scalar field,
 * each such condition matches a contiguous run of an index's keys (type brackets are
 * contiguous in index order and ordered inside), and so does their conjunction, within one
 * point or one range of matcher_field_bounds: a count may stop testing keys once one matched
 * and count the rest of that run, until the bound ends it. The caller still checks the first
 * keys of each run, by matcher_matches on {path: key}. Points into the matcher. */
const char *matcher_single_path(const matcher *m);

/* The covered count over a compound index: true when the filter is a conjunction of the same
 * conditions as matcher_single_path accepts, or $ne / $nin without regexes, each on a top-level
 * path among paths[0..n) (an index's fields). A document's index key then decides the filter:
 * a non-multikey index holds each of those fields' value (null for a missing one, which these
 * conditions treat alike), and matcher_keyfilter_new builds for it. */
bool matcher_paths_within(const matcher *m, const char *const *paths, size_t n);

/*
 * Key filters: the filter as index bounds on every field of a compound key, the way MongoDB's
 * IXSCAN checks each key of a covered scan (an ordered interval list per field). Compiled from
 * a filter matcher_paths_within accepts (plus $ne and $nin without regexes, which are the
 * complement of their points) over the top-level paths of a non-multikey index, each field of
 * the key becomes:
 *   - a set of points ($eq, plain values, $in; intersected when there are several, and already
 *     filtered through the field's other conditions), or else
 *   - at most one interval [lo, hi] inside one canonical type bracket (the intersection of the
 *     field's $gt/$gte/$lt/$lte: each keeps to its operand's bracket, except a MinKey or MaxKey
 *     operand, whose interval spans every bracket; two brackets: no value qualifies), and
 *   - the points no value may equal ($ne, $nin).
 * A key value is tested as the matcher tests the document's value (the key holds null for a
 * missing field and undefined stays the null it matches as), by bv_compare against the
 * bounds: the same answer as matcher_matches on {paths[0]: key[0], ...} for every key, without
 * building that document (tens of nanoseconds per key instead of one or two microseconds).
 * NULL when the filter has anything else (the caller then tests keys with matcher_matches) or
 * memory runs out. Immutable once built: may be used from several threads. Points into m
 * (free it before matcher_free).
 */
typedef struct match_keyfilter match_keyfilter;
match_keyfilter *matcher_keyfilter_new(const matcher *m, const char *const *paths, size_t n);
/* Does the index key (a BSON document of "" fields in paths order, as bv_index_keys builds it,
 * len bytes) satisfy the filter? */
bool matcher_keyfilter_matches(const match_keyfilter *kf, const uint8_t *key, uint32_t len);
/* True when no key can satisfy the filter (e.g. {a: 1, a: 2}, or ranges in two brackets). */
bool matcher_keyfilter_never(const match_keyfilter *kf);
/* NULL-safe. */
void matcher_keyfilter_free(match_keyfilter *kf);

#endif
