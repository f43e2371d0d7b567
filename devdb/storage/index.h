/*
 * index: one ordered secondary (or _id) index of a devdb collection.
 *
 * An index maps key tuples (documents of "" fields as bv_index_keys produces them) to record
 * ids, ordered by the key pattern (bv_key_compare with the pattern's directions), ties broken
 * by record id. It is a B+tree with wide nodes (63 entries per leaf, 64 children per inner
 * node, leaves linked both ways): O(log n) insert, delete and seek with ~3-4 node visits, and
 * ordered iteration in both directions, so point lookups, range scans and sorts on indexed
 * fields never scan the collection. Multikey: an array field gives one entry per distinct
 * element.
 *
 * Threading: an index is owned by its collection and protected by the store lock; readers
 * (seek/iterate) may run concurrently, mutations need the exclusive lock.
 * Memory: a 32-byte slot in a leaf per entry plus its key bytes, one reference-counted
 * allocation shared by neighbouring entries with byte-identical keys (so a low-cardinality
 * index costs little more than its slots).
 *
 * An `index_node` is a position (a leaf slot): valid until the next mutation of the index.
 * Callers walk positions under the store lock and keep record ids, never positions.
 */
#ifndef DEVDB_INDEX_H
#define DEVDB_INDEX_H

#include "storage/partial.h"

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INDEX_MAX_FIELDS 32
#define INDEX_MAX_HEIGHT 24

typedef struct index_node index_node;
typedef struct index_leaf index_leaf;

typedef struct store_index {
    char *name;   /* "_id_", "name_1", ... */
    bson_t *key;  /* key pattern, e.g. {name: 1} (heap: bson_t needs 128-byte alignment) */
    bson_t *spec; /* as listIndexes shows it: {v: 2, key, name, unique?, ...} */
    bool unique;  /* _id_ is always unique */
    bool sparse;  /* documents missing every indexed field are not indexed */
    partial_filter *partial; /* partialFilterExpression: only matching documents are indexed */
    bool multikey;           /* some document had an array on an indexed path */
    size_t nfields;          /* number of fields in the key pattern */
    int dirs[INDEX_MAX_FIELDS];
    char *paths[INDEX_MAX_FIELDS]; /* the pattern's field paths */
    bool toplevel;                 /* every path is a top-level field name (no dots) */
    /* B+tree (index.c) */
    void *root;        /* a leaf when height == 0, else an inner node */
    index_leaf *first; /* leftmost / rightmost leaf (the root leaf when height == 0) */
    index_leaf *last;
    int height;   /* inner levels above the leaves */
    size_t count; /* entries */
} store_index;

/* Builds an (empty) index from an index specification {key: {...}, name: "...", unique: bool,
 * sparse: bool, partialFilterExpression: {...}, ...}. Unknown options are kept in the spec.
 * Returns NULL with err set (CannotCreateIndex 67, BadValue 2, FailedToParse 9, TypeMismatch
 * 14; partial filter errors as partial_new gives them, "_id index cannot be a partial index")
 * on an invalid spec. Caller frees with index_free. */
store_index *index_new(const bson_t *spec, bson_error_t *err);
void index_free(store_index *ix);

/* A specification for the default {_id: 1} index named "_id_". */
store_index *index_new_id(void);

/* Does ix hold `doc` at all? False when a sparse index skips it (none of the indexed fields)
 * or it does not match the partial filter. The functions below ask this themselves; the
 * *_covered variants are for callers that already know the answer is true (they skip it). */
bool index_covers(const store_index *ix, const bson_t *doc);

/* Adds the keys of `doc` for record `rid`. On a unique violation returns 1, leaves the index
 * as it was and copies the offending key into `dup_key` (caller-initialised; may be NULL).
 * Other errors (e.g. parallel arrays): -1 with err set, index unchanged. 0 on success. */
int index_add(store_index *ix, const bson_t *doc, uint64_t rid, bson_t *dup_key, bson_error_t *err);

/* Removes the keys of `doc` for record `rid` (absent keys are ignored). */
void index_remove(store_index *ix, const bson_t *doc, uint64_t rid);

int index_add_covered(store_index *ix, const bson_t *doc, uint64_t rid, bson_t *dup_key,
                      bson_error_t *err);
void index_remove_covered(store_index *ix, const bson_t *doc, uint64_t rid);
int index_check_covered(const store_index *ix, const bson_t *doc, uint64_t rid, bson_t *dup_key,
                        bson_error_t *err);

/* Would adding `doc` as record `rid` violate uniqueness (ignoring entries of `rid` itself)?
 * Returns 1 and fills dup_key, 0 if not, -1 with err on key errors. */
int index_check(const store_index *ix, const bson_t *doc, uint64_t rid, bson_t *dup_key,
                bson_error_t *err);

/* Do `a` and `b` produce byte-identical index entries in ix (same keys in the same order, same
 * sparse / partial filter decision)? Lets an update skip the indexes whose fields it did not
 * touch. Returns 1 if identical, 0 if not, -1 with err set on key errors (e.g. parallel arrays
 * in `b`). *in_a / *in_b (may be NULL) get index_covers of a and b, so a caller re-keying the
 * document need not evaluate the partial filter again. */
int index_keys_same(const store_index *ix, const bson_t *a, const bson_t *b, bool *in_a, bool *in_b,
                    bson_error_t *err);

/* ---- keysets ----
 * A document's entries for one index, generated once and then compared, checked, removed or
 * added without generating them again: an update that re-keys an index needs the old and the
 * new document's keys several times. Lives on the caller's stack (inline buffer; the heap only
 * for many or large keys); always index_keyset_free it after index_keyset_fill, also when that
 * failed. */
typedef struct index_keyset {
    uint8_t inl[192];
    uint8_t *p;    /* the key documents, concatenated */
    size_t n, cap; /* bytes used / available at p */
    bool covered;  /* index_covers(ix, doc): false means no entries */
    bool multikey; /* an array was expanded */
} index_keyset;

/* 0, or -1 with err (key errors such as parallel arrays, out of memory). */
int index_keyset_fill(const store_index *ix, const bson_t *doc, index_keyset *ks,
                      bson_error_t *err);
void index_keyset_free(index_keyset *ks);
/* Same entries (and the same covered decision)? */
bool index_keysets_same(const index_keyset *a, const index_keyset *b);
/* As index_check / index_remove / index_add for the document ks was filled from. */
int index_check_keyset(const store_index *ix, const index_keyset *ks, uint64_t rid,
                       bson_t *dup_key);
void index_remove_keyset(store_index *ix, const index_keyset *ks, uint64_t rid);
int index_add_keyset(store_index *ix, const index_keyset *ks, uint64_t rid, bson_t *dup_key,
                     bson_error_t *err);

/* ---- ordered access ---- */

const index_node *index_first(const store_index *ix);
const index_node *index_last(const store_index *ix);
const index_node *index_next(const index_node *n);
const index_node *index_prev(const index_node *n);
uint64_t index_node_rid(const index_node *n);
/* The node's key tuple (static view into the node). */
void index_node_key(const index_node *n, bson_t *out);
/* The node's key bytes (a BSON document of len bytes), without the checks of a bson_t view:
 * for a walk that reads every key and wants to touch no more of its memory than it reads. */
const uint8_t *index_node_key_data(const index_node *n, uint32_t *len);
/* Asks the CPU to start loading the node's key bytes (n may be NULL). Keys are separate
 * allocations, so a walk that reads every key waits for one cache miss per key; issuing the
 * loads some nodes ahead overlaps those waits. Changes nothing. */
void index_node_prefetch(const index_node *n);

/* First node (in index order) whose first key field compares >= v (or > v if `after`),
 * taking the first field's direction into account; NULL if none. */
const index_node *index_seek_first_field(const store_index *ix, const bson_value_t *v, bool after);
/* First node (in index order) whose first n key fields compare >= vals[0..n) (or > with
 * `after`: past every key starting with them), each field in its direction; NULL if none. The
 * start and end of a compound interval: a point on the first field and a bound on the second
 * (MongoDB's compound index bounds). n == 0: the first node (NULL with `after`). */
const index_node *index_seek_prefix(const store_index *ix, const bson_value_t *const *vals,
                                    size_t n, bool after);
/* Compares the node's first key field with v in index order (direction applied). */
int index_cmp_first_field(const store_index *ix, const index_node *n, const bson_value_t *v);

/* True if `pattern` equals this index's key pattern (same paths and directions). */
bool index_pattern_equal(const store_index *ix, const bson_t *pattern);

/* Renders a key tuple with field names from the pattern in MongoDB's message style:
 * `{ name: "x", n: 1 }` into buf (always terminated). Also fills key_value (caller-initialised,
 * may be NULL) with {name: "x", n: 1}. */
void index_format_key(const store_index *ix, const bson_t *key, char *buf, size_t buflen,
                      bson_t *key_value);

#endif
