/*
 * store: devdb's in-memory data: databases, collections, documents and their indexes.
 *
 * Every document is one malloc'd BSON buffer in a record slot; its record id (rid) is the
 * slot number, which never changes while the collection lives, and natural order is rid order
 * (insertion order, as WiredTiger's RecordIds give). Deleted slots stay empty. Index 0 of
 * every collection is the unique {_id: 1} index "_id_".
 *
 * Locking: one readers-writer lock for the whole store. Queries hold it shared, every
 * mutation holds it exclusively (store_wrlock); functions below say which they need. Nobody
 * holds it while doing socket I/O.
 *
 * Mutations: every change to the data goes through exactly one of the functions in the
 * "mutations" section (create/drop collection and database, insert/replace/delete a
 * document, create/drop an index). When a journal is attached (store_set_journal), each of
 * them first does everything that can fail for a logical reason (names, unique keys, index
 * specs), then hands one logical op record (below) to the journal, and only if the journal
 * accepted it changes memory. A journal failure (full disk) therefore leaves memory
 * unchanged and is returned as the mutation's error. store_replay applies a record again.
 *
 * Op records (BSON, the journal's payload; `id` is the document's _id value):
 *   {op: "create", db, coll, options}      {op: "drop", db, coll}     {op: "dropDatabase", db}
 *   {op: "insert", db, coll, doc}          {op: "replace", db, coll, id, doc}
 *   {op: "delete", db, coll, id}           {op: "createIndex", db, coll, spec}
 *   {op: "dropIndex", db, coll, name}
 *
 * Ownership: the store owns everything it holds; pointers returned by lookups are valid until
 * the lock is released (a later writer may drop the object).
 */
#ifndef DEVDB_STORE_H
#define DEVDB_STORE_H

#include "storage/index.h"

#include <bson/bson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define STORE_DB_NAME_MAX 64
#define STORE_NS_MAX      255

typedef struct store store;

typedef struct store_coll {
    store *st;            /* the store it belongs to */
    char *name;           /* collection name */
    char *ns;             /* "db.coll" */
    uint64_t incarnation; /* unique per created collection: cursors detect drop+recreate */
    uint8_t **recs;       /* record slots; NULL = deleted */
    uint64_t nrec, caprec;
    uint64_t nlive;
    uint64_t data_bytes;
    store_index **idx; /* idx[0] is _id_ */
    size_t nidx, capidx;
    bson_t *options; /* create options as given (heap: bson_t needs 128-byte alignment) */
} store_coll;

typedef struct store_db {
    char *name;
    store_coll **colls;
    size_t ncoll, capcoll;
} store_db;

/* The journal hook: called with the exclusive lock held and a complete op record; returns 0
 * when the record is durably queued (see durable.h), or -1 with err (the mutation is then
 * not applied). */
typedef int (*store_journal_fn)(void *ctx, const bson_t *rec, bson_error_t *err);

struct store {
    pthread_rwlock_t lock;
    store_journal_fn journal;
    void *journal_ctx;
    uint64_t data_bytes; /* BSON bytes of all live documents (exclusive lock; read atomically) */
    store_db **dbs;
    size_t ndb, capdb;
    uint64_t next_incarnation;
    /* statistics (atomic) */
    uint64_t docs_examined, keys_examined;
    uint64_t n_insert, n_update, n_delete, n_query;
};

store *store_new(void);
void store_free(store *st);

void store_rdlock(store *st);
void store_wrlock(store *st);
void store_unlock(store *st);

/* Attaches (fn != NULL) or detaches the journal hook. Exclusive lock, or before any thread
 * uses the store. */
void store_set_journal(store *st, store_journal_fn fn, void *ctx);

/* Applies one op record (as the journal hook received it) without journaling it again.
 * Exclusive lock. -1 with err if the record is malformed or cannot be applied. */
int store_replay(store *st, const bson_t *rec, bson_error_t *err);

/* Validate names; -1 with InvalidNamespace (73) in err. */
int store_check_db_name(const char *db, bson_error_t *err);
int store_check_coll_name(const char *db, const char *coll, bson_error_t *err);

/* Lookups (any lock). NULL if absent. */
store_db *store_db_find(store *st, const char *db);
store_coll *store_coll_find(store *st, const char *db, const char *coll);
store_index *store_index_by_name(store_coll *c, const char *name);
store_index *store_index_by_pattern(store_coll *c, const bson_t *pattern);

/* The document in slot rid as a static bson_t; false if the slot is empty or out of range. */
bool store_doc(const store_coll *c, uint64_t rid, bson_t *out);

/* ---- mutations (exclusive lock) ---------------------------------------------------------- */

/* Creates db.coll with `options` (may be NULL). NamespaceExists (48) if it exists. */
store_coll *store_coll_create(store *st, const char *db, const char *coll, const bson_t *options,
                              bson_error_t *err);
/* The collection, created implicitly if missing (*created tells). NULL on a bad name. */
store_coll *store_coll_get_or_create(store *st, const char *db, const char *coll, bool *created,
                                     bson_error_t *err);
/* Drops db.coll. -1 with NamespaceNotFound (26) "ns not found" if it does not exist. */
int store_coll_drop(store *st, const char *db, const char *coll, bson_error_t *err);
/* Drops a database and all its collections; nothing happens if it does not exist. -1 only
 * when the journal refuses the record. */
int store_db_drop(store *st, const char *db, bson_error_t *err);

/*
 * Inserts `doc` (its first field must be _id; the bytes are copied). On a unique index
 * violation returns -1 with DuplicateKey (11000) and MongoDB's message in err, and appends
 * keyPattern/keyValue to dup_info (caller-initialised, may be NULL). *rid (may be NULL) gets
 * the new record id.
 */
int store_insert(store_coll *c, const bson_t *doc, uint64_t *rid, bson_error_t *err,
                 bson_t *dup_info);
/* Replaces the document in slot rid by `doc` (copied); indexes updated; same errors as
 * store_insert, and on error nothing changes. */
int store_replace(store_coll *c, uint64_t rid, const bson_t *doc, bson_error_t *err,
                  bson_t *dup_info);

/* store_replace for an update that may only have changed some fields: `touched(path, ctx)` says
 * whether the value at an index field path may differ between the old and the new document;
 * an index none of whose fields may differ is not even re-keyed. touched == NULL: every index
 * is compared (as store_replace does). */
typedef bool (*store_touch_fn)(const char *path, void *ctx);
int store_replace_ex(store_coll *c, uint64_t rid, const bson_t *doc, store_touch_fn touched,
                     void *touch_ctx, bson_error_t *err, bson_t *dup_info);
/* Deletes the document in slot rid (no-op for an empty slot). -1 only when the journal
 * refuses the record (nothing changes then). */
int store_delete(store_coll *c, uint64_t rid, bson_error_t *err);

/* Builds a new index from `spec` over the existing documents. Returns the index, or NULL
 * with err (DuplicateKey if a unique index meets duplicates; spec errors from index_new). */
store_index *store_index_create(store_coll *c, const bson_t *spec, bson_error_t *err,
                                bson_t *dup_info);
/* Drops index number i (> 0; the _id index cannot be dropped). -1 only when the journal
 * refuses the record. */
int store_index_drop(store_coll *c, size_t i, bson_error_t *err);

/* The record id of the live document whose _id equals `id`; false if none. Any lock. */
bool store_find_id(store_coll *c, const bson_value_t *id, uint64_t *rid);

#endif
