/*
 * mdoc.h: the mutable document tree that operator updates edit (engine/update.c).
 *
 * A BSON document is immutable bytes; an update such as {$inc: {"a.b": 1}, $push: {c: 2}}
 * needs to change values deep inside it, add fields and array elements and delete others, then
 * write the result out once. The tree is that editable form, and it is lazy: mdoc_from lists the
 * fields of one level only, each value still pointing at its bytes in the source; a container
 * becomes a child tree (mdoc_expand) only when an operation descends into it, so the untouched
 * parts of a document are copied straight through by mdoc_serialize.
 *
 * What it owns: the tree's structure (every mdoc, its field array and the child trees of
 * expanded fields). What it does not own: field names and values, which point into the source
 * document or the updater's copy of the update; those buffers must outlive the tree. A tree is
 * built, edited and freed by one updater_apply call (not thread-safe, never shared).
 *
 * Invariants: a deleted object field is marked (`deleted`), not removed, so indexes into `f`
 * stay valid during an update; arrays never hold deleted slots ($unset of an element stores
 * null). A slot that mdoc_resolve has just created holds BSON_TYPE_EOD until the operation
 * stores its value ("created" versus "existing null"); mdoc_serialize skips an EOD slot.
 * Errors (PathNotViable 28, BadValue 2, out of memory) carry MongoDB 4.4's codes and wording.
 */
#ifndef DEVDB_MDOC_H
#define DEVDB_MDOC_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mdoc mdoc;

/* One field of an object or one element of an array. */
typedef struct {
    const char *name; /* not NUL-terminated; unused in arrays */
    size_t nlen;
    bson_value_t v; /* scalar, or the raw container when kids == NULL */
    mdoc *kids;     /* expanded container (owned by the field) */
    bool deleted;
} mdoc_field;

/* One level of the tree: an object's fields in document order, or an array's elements. */
struct mdoc {
    bool is_array;
    mdoc_field *f;
    size_t n, cap;
};

/* One component of a dotted path, pointing into the path string (not NUL-terminated). */
typedef struct {
    const char *s;
    size_t n;
} mdoc_part;

/* Splits `path` at its dots into at most `cap` parts. Returns the number of parts, or 0 when
 * the path has more than `cap` components. */
size_t mdoc_split_path(const char *path, mdoc_part *parts, size_t cap);

/* A new level listing the fields of the BSON document or array (`is_array`) of `len` bytes at
 * `data` (NULL: an empty level), values pointing into `data`. NULL with err set when out of
 * memory. The caller frees the tree with mdoc_free. */
mdoc *mdoc_from(const uint8_t *data, uint32_t len, bool is_array, bson_error_t *err);

/* Frees `d` and every child tree below it. NULL-safe. */
void mdoc_free(mdoc *d);

/* Appends a null field named `name` (`nlen` bytes, not copied; NULL for array elements) to
 * `d`. Returns it (valid until the next append to `d`), or NULL with err set. */
mdoc_field *mdoc_append(mdoc *d, const char *name, size_t nlen, bson_error_t *err);

/* Expands f's container in place (a no-op if it already is) and returns the child level, or
 * NULL with err set. */
mdoc *mdoc_expand(mdoc_field *f, bson_error_t *err);

/* Replaces f's content with the scalar or raw value `v` (not copied), freeing f's child tree. */
void mdoc_field_set(mdoc_field *f, const bson_value_t *v);

/* Is f an array (expanded or not)? */
bool mdoc_field_is_array(const mdoc_field *f);

/* f's content as a value: scalars directly, expanded containers serialized into `scratch`
 * (caller-initialised, caller destroys; the value points into it until its next use). */
bool mdoc_field_value(const mdoc_field *f, bson_value_t *out, bson_t *scratch);

/*
 * Finds the level and slot of the dotted `path` below `root`. With `create`, missing
 * intermediate documents are created, arrays are padded with nulls, and a missing last
 * component gets a new slot holding EOD. Returns 1 and sets *parent and *idx when the slot
 * exists (or was created), 0 when the path does not exist (only without `create`), -1 with err
 * set on error (PathNotViable 28 "Cannot create field 'x' in element {a: 1}", padding an array
 * past 1,500,000 elements, out of memory).
 */
int mdoc_resolve(mdoc *root, const char *path, bool create, mdoc **parent, size_t *idx,
                 bson_error_t *err);

/* Appends the live fields of `d` to `out` (caller-initialised), array elements renumbered from
 * 0; with `id_first`, the field _id is written first. Returns 0. */
int mdoc_serialize(const mdoc *d, bson_t *out, bool id_first);

#endif
