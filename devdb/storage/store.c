/*
 * store.c: databases, collections, records and index maintenance (see store.h).
 *
 * Layout: store -> array of store_db -> array of store_coll -> record slots + indexes.
 * Databases and collections are few, so they are found by linear search. Records are kept in
 * a growable array of pointers to exact-size BSON buffers (the document's length is its own
 * first four bytes), which keeps the per-document overhead at one pointer plus the malloc
 * header; the _id index adds one B+tree entry (a 32-byte slot and its key).
 *
 * Invariants (checked by the callers' lock discipline, see store.h):
 *  - every live record has exactly its keys in every index of its collection;
 *  - a mutation either completes or leaves records and indexes unchanged (unique violations
 *    are detected before anything is modified, or rolled back).
 *
 * This file is the single place where data changes (the "mutations" section). Each mutation
 * is split into three steps: check (everything that can fail for a logical reason: names,
 * unique keys, key generation, allocation of the new objects), journal (one op record to the
 * hook, which may fail on a full disk), commit (pointer moves and frees that cannot fail).
 * So a write is in memory only if the journal has it, and a refused journal record leaves
 * memory exactly as it was. store_replay is the inverse of the records written here; the
 * record formats are listed in store.h and live only in this file.
 */
/* pthread_rwlockattr_setkind_np (writer preference) is a GNU extension. */
#define _GNU_SOURCE
#include "storage/store.h"

#include "base/bsonval.h"
#include "base/errors.h"

#include <stdlib.h>
#include <string.h>

store *store_new(void)
{
    store *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    /* Writers first: with glibc's default (readers first) a steady stream of queries from a
     * 50-connection pool could starve inserts forever. */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int rc = pthread_rwlock_init(&st->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (rc != 0) {
        free(st);
        return NULL;
    }
    st->next_incarnation = 1;
    return st;
}

void store_set_journal(store *st, store_journal_fn fn, void *ctx)
{
    st->journal = fn;
    st->journal_ctx = ctx;
}

/* Hands a finished op record to the journal (if any) and destroys it. */
static int journal_rec(store *st, bson_t *rec, bson_error_t *err)
{
    int rc = 0;
    if (st->journal)
        rc = st->journal(st->journal_ctx, rec, err);
    bson_destroy(rec);
    return rc;
}

/* Starts an op record {op, db, coll} in `rec` (caller-initialised). */
static void rec_start(bson_t *rec, const char *op, const char *db, const char *coll)
{
    bson_init(rec);
    BSON_APPEND_UTF8(rec, "op", op);
    BSON_APPEND_UTF8(rec, "db", db);
    if (coll)
        BSON_APPEND_UTF8(rec, "coll", coll);
}

/* db and coll of a collection, from its "db.coll" namespace (db names contain no dot). */
static void coll_db_name(const store_coll *c, char *db, size_t n)
{
    size_t l = strlen(c->ns) - strlen(c->name) - 1;
    snprintf(db, n, "%.*s", (int)l, c->ns);
}

static void coll_free(store_coll *c)
{
    if (!c)
        return;
    for (uint64_t i = 0; i < c->nrec; i++)
        free(c->recs[i]);
    free(c->recs);
    for (size_t i = 0; i < c->nidx; i++)
        index_free(c->idx[i]);
    free(c->idx);
    bson_destroy(c->options);
    free(c->name);
    free(c->ns);
    free(c);
}

static void db_free(store_db *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->ncoll; i++)
        coll_free(d->colls[i]);
    free(d->colls);
    free(d->name);
    free(d);
}

void store_free(store *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->ndb; i++)
        db_free(st->dbs[i]);
    free(st->dbs);
    pthread_rwlock_destroy(&st->lock);
    free(st);
}

void store_rdlock(store *st)
{
    pthread_rwlock_rdlock(&st->lock);
}

void store_wrlock(store *st)
{
    pthread_rwlock_wrlock(&st->lock);
}

void store_unlock(store *st)
{
    pthread_rwlock_unlock(&st->lock);
}

/* ---- names and lookups -------------------------------------------------------------------- */

int store_check_db_name(const char *db, bson_error_t *err)
{
    size_t n = strlen(db);
    if (n == 0 || n >= STORE_DB_NAME_MAX || strpbrk(db, "/\\. \"$*<>:|?"))
        return mdb_error(err, MDB_INVALID_NAMESPACE, "Invalid database name: '%s'", db);
    return 0;
}

int store_check_coll_name(const char *db, const char *coll, bson_error_t *err)
{
    if (store_check_db_name(db, err) != 0)
        return -1;
    size_t n = strlen(coll);
    if (n == 0 || strchr(coll, '$') || coll[0] == '.')
        return mdb_error(err, MDB_INVALID_NAMESPACE, "Invalid namespace specified '%s.%s'", db,
                         coll);
    if (strlen(db) + 1 + n > STORE_NS_MAX)
        return mdb_error(err, MDB_INVALID_NAMESPACE,
                         "Fully qualified namespace is too long. Namespace: %s.%s", db, coll);
    return 0;
}

store_db *store_db_find(store *st, const char *db)
{
    for (size_t i = 0; i < st->ndb; i++) {
        if (strcmp(st->dbs[i]->name, db) == 0)
            return st->dbs[i];
    }
    return NULL;
}

store_coll *store_coll_find(store *st, const char *db, const char *coll)
{
    store_db *d = store_db_find(st, db);
    if (!d)
        return NULL;
    for (size_t i = 0; i < d->ncoll; i++) {
        if (strcmp(d->colls[i]->name, coll) == 0)
            return d->colls[i];
    }
    return NULL;
}

store_index *store_index_by_name(store_coll *c, const char *name)
{
    for (size_t i = 0; i < c->nidx; i++) {
        if (strcmp(c->idx[i]->name, name) == 0)
            return c->idx[i];
    }
    return NULL;
}

store_index *store_index_by_pattern(store_coll *c, const bson_t *pattern)
{
    for (size_t i = 0; i < c->nidx; i++) {
        if (index_pattern_equal(c->idx[i], pattern))
            return c->idx[i];
    }
    return NULL;
}

bool store_doc(const store_coll *c, uint64_t rid, bson_t *out)
{
    if (rid >= c->nrec || !c->recs[rid])
        return false;
    const uint8_t *p = c->recs[rid];
    uint32_t len =
        (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return bson_init_static(out, p, len);
}

/* ---- mutations ----------------------------------------------------------------------------- */

static int grow(void **pa, size_t elem, uint64_t need, uint64_t *cap)
{
    if (need <= *cap)
        return 0;
    uint64_t ncap = *cap ? *cap * 2 : 16;
    while (ncap < need)
        ncap *= 2;
    void *na = realloc(*pa, ncap * elem);
    if (!na)
        return -1;
    *pa = na;
    *cap = ncap;
    return 0;
}

store_coll *store_coll_create(store *st, const char *db, const char *coll, const bson_t *options,
                              bson_error_t *err)
{
    if (store_check_coll_name(db, coll, err) != 0)
        return NULL;
    if (store_coll_find(st, db, coll)) {
        mdb_error(err, MDB_NAMESPACE_EXISTS, "Collection already exists. NS: %s.%s", db, coll);
        return NULL;
    }
    bson_t rec, empty = BSON_INITIALIZER;
    rec_start(&rec, "create", db, coll);
    BSON_APPEND_DOCUMENT(&rec, "options", options ? options : &empty);
    if (journal_rec(st, &rec, err) != 0)
        return NULL;
    store_db *d = store_db_find(st, db);
    if (!d) {
        uint64_t cap = st->capdb;
        if (grow((void **)&st->dbs, sizeof *st->dbs, st->ndb + 1, &cap) != 0)
            goto oom;
        st->capdb = (size_t)cap;
        d = calloc(1, sizeof *d);
        if (!d || !(d->name = strdup(db))) {
            free(d);
            goto oom;
        }
        st->dbs[st->ndb++] = d;
    }
    uint64_t cap = d->capcoll;
    if (grow((void **)&d->colls, sizeof *d->colls, d->ncoll + 1, &cap) != 0)
        goto oom;
    d->capcoll = (size_t)cap;
    store_coll *c = calloc(1, sizeof *c);
    if (!c)
        goto oom;
    c->options = options ? bson_copy(options) : bson_new();
    size_t nsl = strlen(db) + strlen(coll) + 2;
    c->name = strdup(coll);
    c->ns = malloc(nsl);
    c->idx = calloc(4, sizeof *c->idx);
    c->capidx = 4;
    if (!c->name || !c->ns || !c->idx || !(c->idx[0] = index_new_id())) {
        coll_free(c);
        goto oom;
    }
    c->nidx = 1;
    c->st = st;
    snprintf(c->ns, nsl, "%s.%s", db, coll);
    c->incarnation = st->next_incarnation++;
    d->colls[d->ncoll++] = c;
    return c;
oom:
    mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
    return NULL;
}

store_coll *store_coll_get_or_create(store *st, const char *db, const char *coll, bool *created,
                                     bson_error_t *err)
{
    store_coll *c = store_coll_find(st, db, coll);
    if (created)
        *created = c == NULL;
    if (c)
        return c;
    return store_coll_create(st, db, coll, NULL, err);
}

int store_coll_drop(store *st, const char *db, const char *coll, bson_error_t *err)
{
    store_db *d = store_db_find(st, db);
    for (size_t i = 0; d && i < d->ncoll; i++) {
        if (strcmp(d->colls[i]->name, coll) == 0) {
            bson_t rec;
            rec_start(&rec, "drop", db, coll);
            if (journal_rec(st, &rec, err) != 0)
                return -1;
            st->data_bytes -= d->colls[i]->data_bytes;
            coll_free(d->colls[i]);
            memmove(&d->colls[i], &d->colls[i + 1], (d->ncoll - i - 1) * sizeof *d->colls);
            d->ncoll--;
            return 0;
        }
    }
    return mdb_error(err, MDB_NAMESPACE_NOT_FOUND, "ns not found");
}

int store_db_drop(store *st, const char *db, bson_error_t *err)
{
    for (size_t i = 0; i < st->ndb; i++) {
        if (strcmp(st->dbs[i]->name, db) == 0) {
            bson_t rec;
            rec_start(&rec, "dropDatabase", db, NULL);
            if (journal_rec(st, &rec, err) != 0)
                return -1;
            for (size_t j = 0; j < st->dbs[i]->ncoll; j++)
                st->data_bytes -= st->dbs[i]->colls[j]->data_bytes;
            db_free(st->dbs[i]);
            memmove(&st->dbs[i], &st->dbs[i + 1], (st->ndb - i - 1) * sizeof *st->dbs);
            st->ndb--;
            return 0;
        }
    }
    return 0;
}

/* MongoDB's duplicate key error for index ix and offending key tuple `key`. */
static int dup_error(store_coll *c, store_index *ix, const bson_t *key, bson_error_t *err,
                     bson_t *dup_info)
{
    char kbuf[400];
    bson_t kv;
    bson_init(&kv);
    index_format_key(ix, key, kbuf, sizeof kbuf, &kv);
    if (dup_info) {
        BSON_APPEND_DOCUMENT(dup_info, "keyPattern", ix->key);
        BSON_APPEND_DOCUMENT(dup_info, "keyValue", &kv);
    }
    bson_destroy(&kv);
    return mdb_error(err, MDB_DUPLICATE_KEY,
                     "E11000 duplicate key error collection: %s index: %s "
                     "dup key: %s",
                     c->ns, ix->name, kbuf);
}

/* Adds doc's keys for rid to every index; on failure removes what was added. */
static int index_all(store_coll *c, const bson_t *doc, uint64_t rid, bson_error_t *err,
                     bson_t *dup_info)
{
    for (size_t i = 0; i < c->nidx; i++) {
        bson_t dup;
        bson_init(&dup);
        int rc = index_add(c->idx[i], doc, rid, &dup, err);
        if (rc != 0) {
            if (rc == 1)
                dup_error(c, c->idx[i], &dup, err, dup_info);
            bson_destroy(&dup);
            for (size_t j = 0; j < i; j++)
                index_remove(c->idx[j], doc, rid);
            return -1;
        }
        bson_destroy(&dup);
    }
    return 0;
}

static uint8_t *copy_doc(const bson_t *doc)
{
    uint8_t *p = malloc(doc->len);
    if (p)
        memcpy(p, bson_get_data(doc), doc->len);
    return p;
}

int store_insert(store_coll *c, const bson_t *doc, uint64_t *rid, bson_error_t *err,
                 bson_t *dup_info)
{
    if (grow((void **)&c->recs, sizeof *c->recs, c->nrec + 1, &c->caprec) != 0)
        return mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
    uint64_t r = c->nrec;
    if (index_all(c, doc, r, err, dup_info) != 0)
        return -1;
    uint8_t *p = copy_doc(doc);
    if (!p)
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
    if (p && c->st->journal) {
        char db[STORE_DB_NAME_MAX];
        coll_db_name(c, db, sizeof db);
        bson_t rec;
        rec_start(&rec, "insert", db, c->name);
        BSON_APPEND_DOCUMENT(&rec, "doc", doc);
        if (journal_rec(c->st, &rec, err) != 0) {
            free(p);
            p = NULL;
        }
    }
    if (!p) {
        for (size_t j = 0; j < c->nidx; j++)
            index_remove(c->idx[j], doc, r);
        return -1;
    }
    c->recs[c->nrec++] = p;
    c->nlive++;
    c->data_bytes += doc->len;
    c->st->data_bytes += doc->len;
    if (rid)
        *rid = r;
    return 0;
}

int store_replace(store_coll *c, uint64_t rid, const bson_t *doc, bson_error_t *err,
                  bson_t *dup_info)
{
    return store_replace_ex(c, rid, doc, NULL, NULL, err, dup_info);
}

/* May an update have changed any field of index ix? The fields its partial filter reads
 * count too: changing them can move the document into or out of the index. */
static bool index_touched(const store_index *ix, store_touch_fn touched, void *ctx)
{
    if (!touched)
        return true;
    for (size_t i = 0; i < ix->nfields; i++)
        if (touched(ix->paths[i], ctx))
            return true;
    for (size_t i = 0; ix->partial && i < partial_npaths(ix->partial); i++)
        if (touched(partial_path(ix->partial, i), ctx))
            return true;
    return false;
}

/* Per-index decisions of one replace. */
enum { RK_CHANGED = 1, RK_IN_OLD = 2, RK_IN_NEW = 4 };

int store_replace_ex(store_coll *c, uint64_t rid, const bson_t *doc, store_touch_fn touched,
                     void *touch_ctx, bson_error_t *err, bson_t *dup_info)
{
    bson_t old;
    int rc = -1;
    if (!store_doc(c, rid, &old))
        return mdb_error(err, MDB_INTERNAL_ERROR, "record %llu vanished", (unsigned long long)rid);
    /* Only the indexes whose entries change are touched: an update of unindexed fields (or of
     * one indexed field) leaves the other indexes alone instead of removing and re-adding
     * byte-identical entries. For a changed index, the old and the new document's entries
     * (and whether the index holds each: sparse, partial filter) are generated once into
     * keysets and reused for the uniqueness check, the removal and the insertion: a document
     * leaving a partial index costs one removal and no insertion, one entering it one
     * insertion. The keysets live on the stack for the usual handful of indexes. */
    enum { INL = 8 };
    index_keyset inl_old[INL], inl_new[INL];
    index_keyset *ko = inl_old, *kn = inl_new;
    uint8_t inl[INL], *rk = inl;
    size_t nfilled = 0;
    if (c->nidx > INL) {
        ko = malloc(c->nidx * sizeof *ko);
        kn = malloc(c->nidx * sizeof *kn);
        rk = malloc(c->nidx * sizeof *rk);
        if (!ko || !kn || !rk) {
            mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
            goto out;
        }
    }
    for (size_t i = 0; i < c->nidx; i++) {
        rk[i] = 0;
        ko[i].p = kn[i].p = NULL;
        nfilled = i + 1;
        if (!index_touched(c->idx[i], touched, touch_ctx))
            continue;
        if (index_keyset_fill(c->idx[i], &old, &ko[i], err) != 0 ||
            index_keyset_fill(c->idx[i], doc, &kn[i], err) != 0)
            goto out;
        if (!index_keysets_same(&ko[i], &kn[i]))
            rk[i] = RK_CHANGED | (ko[i].covered ? RK_IN_OLD : 0) | (kn[i].covered ? RK_IN_NEW : 0);
    }
    /* Check uniqueness first so a violation changes nothing. */
    for (size_t i = 0; i < c->nidx; i++) {
        if (!(rk[i] & RK_IN_NEW))
            continue;
        bson_t dup;
        bson_init(&dup);
        int crc = index_check_keyset(c->idx[i], &kn[i], rid, &dup);
        if (crc == 1)
            dup_error(c, c->idx[i], &dup, err, dup_info);
        bson_destroy(&dup);
        if (crc != 0)
            goto out;
    }
    uint8_t *p = copy_doc(doc);
    if (!p) {
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
        goto out;
    }
    if (c->st->journal) {
        char db[STORE_DB_NAME_MAX];
        coll_db_name(c, db, sizeof db);
        bson_iter_t it;
        bson_t rec;
        rec_start(&rec, "replace", db, c->name);
        if (bson_iter_init_find(&it, &old, "_id"))
            BSON_APPEND_VALUE(&rec, "id", bson_iter_value(&it));
        BSON_APPEND_DOCUMENT(&rec, "doc", doc);
        if (journal_rec(c->st, &rec, err) != 0) {
            free(p);
            goto out;
        }
    }
    for (size_t i = 0; i < c->nidx; i++)
        if (rk[i] & RK_IN_OLD)
            index_remove_keyset(c->idx[i], &ko[i], rid);
    for (size_t i = 0; i < c->nidx; i++) {
        if (!(rk[i] & RK_IN_NEW))
            continue;
        bson_t dup;
        bson_init(&dup);
        int arc = index_add_keyset(c->idx[i], &kn[i], rid, &dup, err);
        if (arc == 1)
            dup_error(c, c->idx[i], &dup, err, dup_info);
        bson_destroy(&dup);
        if (arc != 0) {
            /* Only running out of memory can get here (uniqueness was checked): restore. */
            for (size_t j = 0; j < i; j++)
                if (rk[j] & RK_IN_NEW)
                    index_remove_keyset(c->idx[j], &kn[j], rid);
            for (size_t j = 0; j < c->nidx; j++)
                if (rk[j] & RK_IN_OLD)
                    index_add_keyset(c->idx[j], &ko[j], rid, NULL, NULL);
            free(p);
            goto out;
        }
    }
    c->data_bytes = c->data_bytes - old.len + doc->len;
    c->st->data_bytes = c->st->data_bytes - old.len + doc->len;
    free(c->recs[rid]);
    c->recs[rid] = p;
    rc = 0;
out:
    for (size_t i = 0; i < nfilled; i++) {
        index_keyset_free(&ko[i]);
        index_keyset_free(&kn[i]);
    }
    if (ko != inl_old)
        free(ko);
    if (kn != inl_new)
        free(kn);
    if (rk != inl)
        free(rk);
    return rc;
}

int store_delete(store_coll *c, uint64_t rid, bson_error_t *err)
{
    bson_t old;
    if (!store_doc(c, rid, &old))
        return 0;
    if (c->st->journal) {
        char db[STORE_DB_NAME_MAX];
        coll_db_name(c, db, sizeof db);
        bson_iter_t it;
        bson_t rec;
        rec_start(&rec, "delete", db, c->name);
        if (bson_iter_init_find(&it, &old, "_id"))
            BSON_APPEND_VALUE(&rec, "id", bson_iter_value(&it));
        if (journal_rec(c->st, &rec, err) != 0)
            return -1;
    }
    for (size_t i = 0; i < c->nidx; i++)
        index_remove(c->idx[i], &old, rid);
    c->data_bytes -= old.len;
    c->st->data_bytes -= old.len;
    free(c->recs[rid]);
    c->recs[rid] = NULL;
    c->nlive--;
    return 0;
}

store_index *store_index_create(store_coll *c, const bson_t *spec, bson_error_t *err,
                                bson_t *dup_info)
{
    store_index *ix = index_new(spec, err);
    if (!ix)
        return NULL;
    for (uint64_t r = 0; r < c->nrec; r++) {
        bson_t d;
        if (!store_doc(c, r, &d))
            continue;
        bson_t dup;
        bson_init(&dup);
        int rc = index_add(ix, &d, r, &dup, err);
        if (rc == 1)
            dup_error(c, ix, &dup, err, dup_info);
        bson_destroy(&dup);
        if (rc != 0) {
            index_free(ix);
            return NULL;
        }
    }
    uint64_t cap = c->capidx;
    if (grow((void **)&c->idx, sizeof *c->idx, c->nidx + 1, &cap) != 0) {
        index_free(ix);
        mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
        return NULL;
    }
    c->capidx = (size_t)cap;
    if (c->st->journal) {
        char db[STORE_DB_NAME_MAX];
        coll_db_name(c, db, sizeof db);
        bson_t rec;
        rec_start(&rec, "createIndex", db, c->name);
        BSON_APPEND_DOCUMENT(&rec, "spec", ix->spec);
        if (journal_rec(c->st, &rec, err) != 0) {
            index_free(ix);
            return NULL;
        }
    }
    c->idx[c->nidx++] = ix;
    return ix;
}

int store_index_drop(store_coll *c, size_t i, bson_error_t *err)
{
    if (i == 0 || i >= c->nidx)
        return 0;
    if (c->st->journal) {
        char db[STORE_DB_NAME_MAX];
        coll_db_name(c, db, sizeof db);
        bson_t rec;
        rec_start(&rec, "dropIndex", db, c->name);
        BSON_APPEND_UTF8(&rec, "name", c->idx[i]->name);
        if (journal_rec(c->st, &rec, err) != 0)
            return -1;
    }
    index_free(c->idx[i]);
    memmove(&c->idx[i], &c->idx[i + 1], (c->nidx - i - 1) * sizeof *c->idx);
    c->nidx--;
    return 0;
}

bool store_find_id(store_coll *c, const bson_value_t *id, uint64_t *rid)
{
    const index_node *n = index_seek_first_field(c->idx[0], id, false);
    if (!n || index_cmp_first_field(c->idx[0], n, id) != 0)
        return false;
    *rid = index_node_rid(n);
    return true;
}

/* ---- replay --------------------------------------------------------------------------------- */

/* The string field `key` of rec, or NULL. */
static const char *rec_str(const bson_t *rec, const char *key)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, rec, key) || !BSON_ITER_HOLDS_UTF8(&it))
        return NULL;
    return bson_iter_utf8(&it, NULL);
}

/* The embedded document `key` of rec as a static bson_t; false if absent or not a document. */
static bool rec_doc(const bson_t *rec, const char *key, bson_t *out)
{
    bson_iter_t it;
    const uint8_t *data;
    uint32_t len;
    if (!bson_iter_init_find(&it, rec, key) || !BSON_ITER_HOLDS_DOCUMENT(&it))
        return false;
    bson_iter_document(&it, &len, &data);
    return bson_init_static(out, data, len);
}

int store_replay(store *st, const bson_t *rec, bson_error_t *err)
{
    const char *op = rec_str(rec, "op"), *db = rec_str(rec, "db"), *coll = rec_str(rec, "coll");
    if (!op || !db)
        return mdb_error(err, MDB_FAILED_TO_PARSE, "journal record without op or db");
    /* The hook stays attached to the store; replay must not write the record again. */
    store_journal_fn saved = st->journal;
    st->journal = NULL;
    int rc = -1;
    bson_t doc;
    bson_iter_t it;
    if (strcmp(op, "dropDatabase") == 0) {
        rc = store_db_drop(st, db, err);
        goto out;
    }
    if (!coll) {
        mdb_error(err, MDB_FAILED_TO_PARSE, "journal record '%s' without coll", op);
        goto out;
    }
    if (strcmp(op, "create") == 0) {
        bson_t opts;
        if (!rec_doc(rec, "options", &opts))
            bson_init(&opts);
        rc = store_coll_create(st, db, coll, &opts, err) ? 0 : -1;
        goto out;
    }
    if (strcmp(op, "drop") == 0) {
        rc = store_coll_drop(st, db, coll, err);
        goto out;
    }
    store_coll *c = store_coll_find(st, db, coll);
    if (!c) {
        mdb_error(err, MDB_NAMESPACE_NOT_FOUND, "journal record '%s' for missing %s.%s", op, db,
                  coll);
        goto out;
    }
    uint64_t rid = 0;
    bool has_id = bson_iter_init_find(&it, rec, "id");
    if (has_id && !store_find_id(c, bson_iter_value(&it), &rid) && strcmp(op, "insert") != 0) {
        mdb_error(err, MDB_NO_SUCH_KEY, "journal record '%s': _id not found in %s", op, c->ns);
        goto out;
    }
    if (strcmp(op, "insert") == 0 && rec_doc(rec, "doc", &doc)) {
        rc = store_insert(c, &doc, NULL, err, NULL);
    } else if (strcmp(op, "replace") == 0 && has_id && rec_doc(rec, "doc", &doc)) {
        rc = store_replace(c, rid, &doc, err, NULL);
    } else if (strcmp(op, "delete") == 0 && has_id) {
        rc = store_delete(c, rid, err);
    } else if (strcmp(op, "createIndex") == 0 && rec_doc(rec, "spec", &doc)) {
        rc = store_index_create(c, &doc, err, NULL) ? 0 : -1;
    } else if (strcmp(op, "dropIndex") == 0 && rec_str(rec, "name")) {
        const char *name = rec_str(rec, "name");
        rc = 0;
        for (size_t i = 1; i < c->nidx; i++) {
            if (strcmp(c->idx[i]->name, name) == 0) {
                rc = store_index_drop(c, i, err);
                break;
            }
        }
    } else {
        mdb_error(err, MDB_FAILED_TO_PARSE, "malformed journal record '%s'", op);
    }
out:
    st->journal = saved;
    return rc;
}
