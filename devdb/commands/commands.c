/*
 * commands.c: command dispatch, the handshake and administrative commands, database and
 * collection management, and index commands (see commands.h).
 *
 * Reads and writes live in commands_read.c and commands_write.c. Every handler follows the
 * same shape (commands_int.h): parse and validate arguments first, take the store lock, do
 * the work through store.h, release the lock, return. commands_run appends `ok: 1.0` after a
 * successful handler, or replaces the reply with MongoDB's error document after a failed one.
 *
 * The handshake reply is what libmongoc 1.23, pymongo 3.11 and the Node.js driver 6 need to
 * treat us as a standalone MongoDB 4.4: exact int32/bool types, no topologyVersion (which would
 * switch drivers to streaming/awaitable monitoring) and no compression.
 */
#include "commands/commands.h"

#include "base/bsonval.h"
#include "commands/commands_int.h"
#include "base/errors.h"
#include "engine/match.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEVDB_VERSION "4.4.29"

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- argument helpers ------------------------------------------------------------------------ */

const bson_value_t *cmd_arg_value(const bson_t *cmd, const char *key, bson_iter_t *it)
{
    if (!bson_iter_init_find(it, cmd, key))
        return NULL;
    return bson_iter_value(it);
}

static int arg_container(const bson_t *cmd, const char *key, bson_type_t want, bson_t *out,
                         bool *present, bson_error_t *err)
{
    bson_iter_t it;
    if (present)
        *present = false;
    bson_init(out);
    if (!bson_iter_init_find(&it, cmd, key) || BSON_ITER_HOLDS_NULL(&it))
        return 0;
    if (bson_iter_type(&it) != want)
        return mdb_error(err, MDB_TYPE_MISMATCH,
                         "BSON field '%s' is the wrong type '%s', expected "
                         "type '%s'",
                         key, bson_iter_type(&it) == BSON_TYPE_UTF8 ? "string" : "other",
                         want == BSON_TYPE_ARRAY ? "array" : "object");
    uint32_t len;
    const uint8_t *data;
    if (want == BSON_TYPE_ARRAY)
        bson_iter_array(&it, &len, &data);
    else
        bson_iter_document(&it, &len, &data);
    if (!bson_init_static(out, data, len))
        return mdb_error(err, MDB_BAD_VALUE, "invalid BSON in field '%s'", key);
    if (present)
        *present = true;
    return 0;
}

int cmd_arg_doc(const bson_t *cmd, const char *key, bson_t *out, bool *present, bson_error_t *err)
{
    return arg_container(cmd, key, BSON_TYPE_DOCUMENT, out, present, err);
}

int cmd_arg_array(const bson_t *cmd, const char *key, bson_t *out, bool *present, bson_error_t *err)
{
    return arg_container(cmd, key, BSON_TYPE_ARRAY, out, present, err);
}

int cmd_arg_int64(const bson_t *cmd, const char *key, int64_t *out, bson_error_t *err)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, cmd, key) || BSON_ITER_HOLDS_NULL(&it))
        return 0;
    switch (bson_iter_type(&it)) {
    case BSON_TYPE_INT32:
        *out = bson_iter_int32(&it);
        return 0;
    case BSON_TYPE_INT64:
        *out = bson_iter_int64(&it);
        return 0;
    case BSON_TYPE_DOUBLE: {
        double d = bson_iter_double(&it);
        if (d != d || d < -9.2e18 || d > 9.2e18 || (double)(int64_t)d != d)
            return mdb_error(err, MDB_BAD_VALUE, "Expected field %s to have an integral value",
                             key);
        *out = (int64_t)d;
        return 0;
    }
    default:
        return mdb_error(err, MDB_TYPE_MISMATCH,
                         "BSON field '%s' is the wrong type, expected a "
                         "number",
                         key);
    }
}

bool cmd_arg_bool(const bson_t *cmd, const char *key, bool def)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, cmd, key))
        return def;
    return bson_iter_as_bool(&it);
}

int cmd_need_coll(cmd_ctx *x, bson_error_t *err)
{
    if (!x->coll[0])
        return mdb_error(err, MDB_INVALID_NAMESPACE, "collection name has invalid type");
    return store_check_coll_name(x->db, x->coll, err);
}

int cmd_cursor_batch_size(const bson_t *cmd, int64_t *out, bson_error_t *err)
{
    bson_t cur;
    bool present;
    *out = -1;
    if (cmd_arg_doc(cmd, "cursor", &cur, &present, err) != 0)
        return -1;
    if (present && cmd_arg_int64(&cur, "batchSize", out, err) != 0)
        return -1;
    if (present && *out < -1)
        return mdb_error(err, MDB_BAD_VALUE, "batchSize must be non-negative");
    return 0;
}

void cmd_reply_docs_cursor(cmd_ctx *x, cursor *c, int64_t batch_size, bool single_batch,
                           bson_t *reply)
{
    bson_t cur, arr;
    BSON_APPEND_DOCUMENT_BEGIN(reply, "cursor", &cur);
    BSON_APPEND_ARRAY_BEGIN(&cur, "firstBatch", &arr);
    size_t limit = batch_size < 0 ? CMD_DEFAULT_FIRST_BATCH : (size_t)batch_size;
    size_t bytes = 0, k = 0;
    while (c->pos < c->n && k < limit) {
        bson_t d;
        const uint8_t *p = c->docs[c->pos];
        uint32_t len =
            (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        if (k > 0 && bytes + len > CMD_BATCH_BYTES)
            break;
        bson_init_static(&d, p, len);
        char ib[16];
        const char *ik;
        size_t il = bson_uint32_to_string((uint32_t)k, &ik, ib, sizeof ib);
        bson_append_document(&arr, ik, (int)il, &d);
        bytes += len;
        k++;
        c->pos++;
    }
    bson_append_array_end(&cur, &arr);
    int64_t id = 0;
    char ns[sizeof c->ns];
    snprintf(ns, sizeof ns, "%s", c->ns);
    if (c->pos < c->n && !single_batch)
        id = cursor_table_add(x->env->cursors, c);
    else
        cursor_free(c);
    BSON_APPEND_INT64(&cur, "id", id);
    BSON_APPEND_UTF8(&cur, "ns", ns);
    bson_append_document_end(reply, &cur);
}

/* ---- handshake and server information -------------------------------------------------------- */

static int cmd_hello(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    if (cmd_arg_bool(x->cmd, "helloOk", false))
        BSON_APPEND_BOOL(reply, "helloOk", true);
    if (strcmp(x->name, "hello") == 0)
        BSON_APPEND_BOOL(reply, "isWritablePrimary", true);
    else
        BSON_APPEND_BOOL(reply, "ismaster", true);
    BSON_APPEND_INT32(reply, "maxBsonObjectSize", 16777216);
    BSON_APPEND_INT32(reply, "maxMessageSizeBytes", 48000000);
    BSON_APPEND_INT32(reply, "maxWriteBatchSize", 100000);
    BSON_APPEND_DATE_TIME(reply, "localTime", wall_ms());
    BSON_APPEND_INT32(reply, "logicalSessionTimeoutMinutes", 30);
    BSON_APPEND_INT32(reply, "connectionId", (int32_t)x->conn->conn_id);
    BSON_APPEND_INT32(reply, "minWireVersion", 0);
    BSON_APPEND_INT32(reply, "maxWireVersion", 9);
    BSON_APPEND_BOOL(reply, "readOnly", false);
    return 0;
}

static int cmd_ping(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    return 0;
}

static int cmd_buildinfo(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    bson_t arr;
    BSON_APPEND_UTF8(reply, "version", DEVDB_VERSION);
    BSON_APPEND_UTF8(reply, "gitVersion", "minicrm-devdb");
    BSON_APPEND_ARRAY_BEGIN(reply, "modules", &arr);
    bson_append_array_end(reply, &arr);
    BSON_APPEND_UTF8(reply, "allocator", "system");
    BSON_APPEND_UTF8(reply, "javascriptEngine", "none");
    BSON_APPEND_UTF8(reply, "sysInfo", "deprecated");
    BSON_APPEND_ARRAY_BEGIN(reply, "versionArray", &arr);
    BSON_APPEND_INT32(&arr, "0", 4);
    BSON_APPEND_INT32(&arr, "1", 4);
    BSON_APPEND_INT32(&arr, "2", 29);
    BSON_APPEND_INT32(&arr, "3", 0);
    bson_append_array_end(reply, &arr);
    BSON_APPEND_INT32(reply, "bits", 64);
    BSON_APPEND_BOOL(reply, "debug", false);
    BSON_APPEND_INT32(reply, "maxBsonObjectSize", 16777216);
    BSON_APPEND_ARRAY_BEGIN(reply, "storageEngines", &arr);
    BSON_APPEND_UTF8(&arr, "0", "devdb");
    bson_append_array_end(reply, &arr);
    return 0;
}

static int cmd_getparameter(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    bson_iter_t it;
    bool all = bson_iter_init_find(&it, x->cmd, "getParameter") && BSON_ITER_HOLDS_UTF8(&it) &&
               strcmp(bson_iter_utf8(&it, NULL), "*") == 0;
    if (all || bson_has_field(x->cmd, "featureCompatibilityVersion")) {
        bson_t d;
        BSON_APPEND_DOCUMENT_BEGIN(reply, "featureCompatibilityVersion", &d);
        BSON_APPEND_UTF8(&d, "version", "4.4");
        bson_append_document_end(reply, &d);
    }
    if (all || bson_has_field(x->cmd, "authenticationMechanisms")) {
        bson_t a;
        BSON_APPEND_ARRAY_BEGIN(reply, "authenticationMechanisms", &a);
        bson_append_array_end(reply, &a);
    }
    if (all || bson_has_field(x->cmd, "internalQueryMaxBlockingSortMemoryUsageBytes"))
        BSON_APPEND_INT64(reply, "internalQueryMaxBlockingSortMemoryUsageBytes",
                          commands_sort_mem_limit(x->env));
    return 0;
}

int64_t commands_sort_mem_limit(cmd_env *env)
{
    int64_t v = __atomic_load_n(&env->sort_mem_limit, __ATOMIC_RELAXED);
    return v > 0 ? v : CMD_SORT_MEM_DEFAULT;
}

/* setParameter: only internalQueryMaxBlockingSortMemoryUsageBytes (tests lower the blocking
 * sort limit to prove a sort is index-served without inserting 100 MB, as they can on MongoDB
 * with the same parameter). Reply {was}. */
static int cmd_setparameter(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    if (strcmp(x->db, "admin") != 0)
        return mdb_error(err, 13, "setParameter may only be run against the admin database.");
    bson_iter_t it;
    bson_iter_init(&it, x->cmd);
    bson_iter_next(&it);
    int n = 0;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (k[0] == '$' || !strcmp(k, "lsid") || !strcmp(k, "comment"))
            continue;
        if (strcmp(k, "internalQueryMaxBlockingSortMemoryUsageBytes") != 0)
            return mdb_error(err, MDB_NO_SUCH_KEY,
                             "attempted to set unrecognized parameter [%.200s], use help:true to "
                             "see options ",
                             k);
        if (!BSON_ITER_HOLDS_NUMBER(&it) || bson_iter_as_int64(&it) <= 0)
            return mdb_error(err, MDB_BAD_VALUE,
                             "internalQueryMaxBlockingSortMemoryUsageBytes must be a positive "
                             "number");
        BSON_APPEND_INT64(reply, "was", commands_sort_mem_limit(x->env));
        __atomic_store_n(&x->env->sort_mem_limit, bson_iter_as_int64(&it), __ATOMIC_RELAXED);
        n++;
    }
    if (n == 0)
        return mdb_error(err, MDB_BAD_VALUE,
                         "no option found to set, use help:true to see options ");
    return 0;
}

/* configureFailPoint: only maxTimeAlwaysTimeOut, mode "alwaysOn" or "off": while on, every
 * command that carries a maxTimeMS fails with MaxTimeMSExpired 50 (what MongoDB's fail point of
 * that name does; drivers' and our tests use it to see a time-out without a slow query). */
static int cmd_configurefailpoint(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    if (strcmp(x->db, "admin") != 0)
        return mdb_error(err, 13, "configureFailPoint may only be run against the admin database.");
    if (strcmp(x->coll, "maxTimeAlwaysTimeOut") != 0)
        return mdb_error(err, MDB_BAD_VALUE, "Cannot find failPoint: %.200s", x->coll);
    bson_iter_t it;
    const char *mode = NULL;
    if (bson_iter_init_find(&it, x->cmd, "mode") && BSON_ITER_HOLDS_UTF8(&it))
        mode = bson_iter_utf8(&it, NULL);
    if (!mode || (strcmp(mode, "alwaysOn") != 0 && strcmp(mode, "off") != 0))
        return mdb_error(err, MDB_BAD_VALUE,
                         "devdb's fail points take mode \"alwaysOn\" or \"off\"");
    int was = __atomic_exchange_n(&x->env->fp_max_time_timeout, strcmp(mode, "alwaysOn") == 0,
                                  __ATOMIC_RELAXED);
    BSON_APPEND_INT64(reply, "count", was);
    return 0;
}

/* The command's writeConcern asks for the journal ({j: true} or {fsync: true}), or for
 * w: "majority" without j: false: a standalone mongod acknowledges a majority write once it is
 * in its journal (writeConcernMajorityJournalDefault), and devdb answers as a standalone. */
static bool wants_journal(const bson_t *cmd)
{
    bson_iter_t it, w;
    if (!bson_iter_init_find(&it, cmd, "writeConcern") || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
        !bson_iter_recurse(&it, &w))
        return false;
    bool majority = false, j_off = false;
    while (bson_iter_next(&w)) {
        const char *k = bson_iter_key(&w);
        if ((!strcmp(k, "j") || !strcmp(k, "fsync")) && bson_iter_as_bool(&w))
            return true;
        if (!strcmp(k, "j") && !bson_iter_as_bool(&w))
            j_off = true;
        if (!strcmp(k, "w") && BSON_ITER_HOLDS_UTF8(&w) &&
            !strcmp(bson_iter_utf8(&w, NULL), "majority"))
            majority = true;
    }
    return majority && !j_off;
}

static int cmd_serverstatus(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    cmd_env *e = x->env;
    store *st = e->st;
    char host[256];
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    int64_t now = wall_ms();
    BSON_APPEND_UTF8(reply, "host", host);
    BSON_APPEND_UTF8(reply, "version", DEVDB_VERSION);
    BSON_APPEND_UTF8(reply, "process", "minicrm-devdb");
    BSON_APPEND_INT64(reply, "pid", (int64_t)getpid());
    BSON_APPEND_DOUBLE(reply, "uptime", (double)(now - e->start_ms) / 1000.0);
    BSON_APPEND_INT64(reply, "uptimeMillis", now - e->start_ms);
    BSON_APPEND_DATE_TIME(reply, "localTime", now);
    bson_t d, d2;
    int64_t cur = __atomic_load_n(&e->current_conns, __ATOMIC_RELAXED);
    BSON_APPEND_DOCUMENT_BEGIN(reply, "connections", &d);
    BSON_APPEND_INT32(&d, "current", (int32_t)cur);
    BSON_APPEND_INT32(&d, "available", (int32_t)(e->max_conns - cur));
    BSON_APPEND_INT32(&d, "totalCreated",
                      (int32_t)__atomic_load_n(&e->total_conns, __ATOMIC_RELAXED));
    bson_append_document_end(reply, &d);
    BSON_APPEND_DOCUMENT_BEGIN(reply, "opcounters", &d);
    BSON_APPEND_INT64(&d, "insert", (int64_t)__atomic_load_n(&st->n_insert, __ATOMIC_RELAXED));
    BSON_APPEND_INT64(&d, "query", (int64_t)__atomic_load_n(&st->n_query, __ATOMIC_RELAXED));
    BSON_APPEND_INT64(&d, "update", (int64_t)__atomic_load_n(&st->n_update, __ATOMIC_RELAXED));
    BSON_APPEND_INT64(&d, "delete", (int64_t)__atomic_load_n(&st->n_delete, __ATOMIC_RELAXED));
    BSON_APPEND_INT64(&d, "getmore", __atomic_load_n(&e->n_getmore, __ATOMIC_RELAXED));
    BSON_APPEND_INT64(&d, "command", __atomic_load_n(&e->n_commands, __ATOMIC_RELAXED));
    bson_append_document_end(reply, &d);
    BSON_APPEND_DOCUMENT_BEGIN(reply, "metrics", &d);
    BSON_APPEND_DOCUMENT_BEGIN(&d, "queryExecutor", &d2);
    BSON_APPEND_INT64(&d2, "scanned",
                      (int64_t)__atomic_load_n(&st->keys_examined, __ATOMIC_RELAXED));
    BSON_APPEND_INT64(&d2, "scannedObjects",
                      (int64_t)__atomic_load_n(&st->docs_examined, __ATOMIC_RELAXED));
    bson_append_document_end(&d, &d2);
    BSON_APPEND_DOCUMENT_BEGIN(&d, "cursor", &d2);
    BSON_APPEND_INT64(&d2, "open", (int64_t)cursor_table_count(e->cursors));
    bson_append_document_end(&d, &d2);
    bson_append_document_end(reply, &d);
    BSON_APPEND_DOCUMENT_BEGIN(reply, "devdb", &d);
    BSON_APPEND_INT64(&d, "journalCommitSyncs", (int64_t)durable_commit_syncs(e->dur));
    bson_append_document_end(reply, &d);
    return 0;
}

static int cmd_ok_only(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    return 0;
}

static int cmd_getlasterror(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    BSON_APPEND_INT32(reply, "n", 0);
    BSON_APPEND_NULL(reply, "err");
    return 0;
}

static int cmd_whatsmyuri(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    BSON_APPEND_UTF8(reply, "you", "127.0.0.1:0");
    return 0;
}

static int cmd_connectionstatus(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    bson_t d, a;
    BSON_APPEND_DOCUMENT_BEGIN(reply, "authInfo", &d);
    BSON_APPEND_ARRAY_BEGIN(&d, "authenticatedUsers", &a);
    bson_append_array_end(&d, &a);
    BSON_APPEND_ARRAY_BEGIN(&d, "authenticatedUserRoles", &a);
    bson_append_array_end(&d, &a);
    bson_append_document_end(reply, &d);
    return 0;
}

/* ---- databases and collections -------------------------------------------------------------- */

static int cmd_listdatabases(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    bson_t filter;
    if (cmd_arg_doc(x->cmd, "filter", &filter, NULL, err) != 0)
        return -1;
    matcher *m = matcher_new(&filter, err);
    if (!m)
        return -1;
    bool name_only = cmd_arg_bool(x->cmd, "nameOnly", false);
    bson_t arr;
    double total = 0;
    BSON_APPEND_ARRAY_BEGIN(reply, "databases", &arr);
    store_rdlock(x->env->st);
    uint32_t k = 0;
    for (size_t i = 0; i < x->env->st->ndb; i++) {
        store_db *d = x->env->st->dbs[i];
        if (d->ncoll == 0)
            continue;
        double size = 0;
        for (size_t j = 0; j < d->ncoll; j++)
            size += (double)d->colls[j]->data_bytes;
        bson_t e = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&e, "name", d->name);
        if (!name_only) {
            BSON_APPEND_DOUBLE(&e, "sizeOnDisk", size);
            BSON_APPEND_BOOL(&e, "empty", size == 0);
        }
        if (matcher_matches(m, &e)) {
            char ib[16];
            const char *ik;
            size_t il = bson_uint32_to_string(k++, &ik, ib, sizeof ib);
            bson_append_document(&arr, ik, (int)il, &e);
            total += size;
        }
        bson_destroy(&e);
    }
    store_unlock(x->env->st);
    bson_append_array_end(reply, &arr);
    if (!name_only)
        BSON_APPEND_DOUBLE(reply, "totalSize", total);
    matcher_free(m);
    return 0;
}

static void append_coll_info(store_coll *c, bool name_only, bson_t *e)
{
    BSON_APPEND_UTF8(e, "name", c->name);
    BSON_APPEND_UTF8(e, "type", "collection");
    if (name_only)
        return;
    BSON_APPEND_DOCUMENT(e, "options", c->options);
    bson_t d;
    BSON_APPEND_DOCUMENT_BEGIN(e, "info", &d);
    BSON_APPEND_BOOL(&d, "readOnly", false);
    bson_append_document_end(e, &d);
    BSON_APPEND_DOCUMENT(e, "idIndex", c->idx[0]->spec);
}

static int cmd_listcollections(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    bson_t filter;
    int64_t bs;
    if (cmd_arg_doc(x->cmd, "filter", &filter, NULL, err) != 0 ||
        cmd_cursor_batch_size(x->cmd, &bs, err) != 0)
        return -1;
    matcher *m = matcher_new(&filter, err);
    if (!m)
        return -1;
    bool name_only = cmd_arg_bool(x->cmd, "nameOnly", false);
    cursor *cur = cursor_new(CURSOR_DOCS, x->db, "$cmd.listCollections");
    if (!cur) {
        matcher_free(m);
        return mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
    }
    store_rdlock(x->env->st);
    store_db *d = store_db_find(x->env->st, x->db);
    for (size_t i = 0; d && i < d->ncoll; i++) {
        bson_t e = BSON_INITIALIZER;
        /* The filter sees the full description even with nameOnly (as MongoDB's does). */
        append_coll_info(d->colls[i], false, &e);
        if (matcher_matches(m, &e)) {
            if (name_only) {
                bson_reinit(&e);
                append_coll_info(d->colls[i], true, &e);
            }
            cursor_push_doc(cur, &e);
        }
        bson_destroy(&e);
    }
    store_unlock(x->env->st);
    matcher_free(m);
    cmd_reply_docs_cursor(x, cur, bs, false, reply);
    return 0;
}

static int cmd_create(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    if (cmd_need_coll(x, err) != 0)
        return -1;
    bson_t opts = BSON_INITIALIZER;
    bson_iter_t it;
    bson_iter_init(&it, x->cmd);
    bson_iter_next(&it);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (k[0] == '$' || !strcmp(k, "lsid") || !strcmp(k, "comment") ||
            !strcmp(k, "writeConcern") || !strcmp(k, "txnNumber") || !strcmp(k, "autocommit") ||
            !strcmp(k, "startTransaction") || !strcmp(k, "apiVersion") || !strcmp(k, "apiStrict") ||
            !strcmp(k, "apiDeprecationErrors") || !strcmp(k, "maxTimeMS"))
            continue;
        bson_append_value(&opts, k, -1, bson_iter_value(&it));
    }
    store_wrlock(x->env->st);
    store_coll *c = store_coll_create(x->env->st, x->db, x->coll, &opts, err);
    store_unlock(x->env->st);
    bson_destroy(&opts);
    return c ? 0 : -1;
}

static int cmd_drop(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    if (cmd_need_coll(x, err) != 0)
        return -1;
    store_wrlock(x->env->st);
    store_coll *c = store_coll_find(x->env->st, x->db, x->coll);
    int32_t nidx = c ? (int32_t)c->nidx : 0;
    int rc = store_coll_drop(x->env->st, x->db, x->coll, err);
    store_unlock(x->env->st);
    if (rc != 0)
        return -1;
    BSON_APPEND_INT32(reply, "nIndexesWas", nidx);
    char ns[STORE_NS_MAX + 2];
    snprintf(ns, sizeof ns, "%s.%s", x->db, x->coll);
    BSON_APPEND_UTF8(reply, "ns", ns);
    return 0;
}

static int cmd_dropdatabase(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    store_wrlock(x->env->st);
    int rc = store_db_drop(x->env->st, x->db, err);
    store_unlock(x->env->st);
    if (rc != 0)
        return -1;
    BSON_APPEND_UTF8(reply, "dropped", x->db);
    return 0;
}

static int cmd_collstats(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    if (cmd_need_coll(x, err) != 0)
        return -1;
    store_rdlock(x->env->st);
    store_coll *c = store_coll_find(x->env->st, x->db, x->coll);
    char ns[STORE_NS_MAX + 2];
    snprintf(ns, sizeof ns, "%s.%s", x->db, x->coll);
    BSON_APPEND_UTF8(reply, "ns", ns);
    BSON_APPEND_INT64(reply, "count", c ? (int64_t)c->nlive : 0);
    BSON_APPEND_INT64(reply, "size", c ? (int64_t)c->data_bytes : 0);
    BSON_APPEND_INT32(reply, "nindexes", c ? (int32_t)c->nidx : 0);
    store_unlock(x->env->st);
    return 0;
}

static int cmd_dbstats(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    store_rdlock(x->env->st);
    store_db *d = store_db_find(x->env->st, x->db);
    int64_t objs = 0, size = 0, nidx = 0;
    for (size_t i = 0; d && i < d->ncoll; i++) {
        objs += (int64_t)d->colls[i]->nlive;
        size += (int64_t)d->colls[i]->data_bytes;
        nidx += (int64_t)d->colls[i]->nidx;
    }
    BSON_APPEND_UTF8(reply, "db", x->db);
    BSON_APPEND_INT64(reply, "collections", d ? (int64_t)d->ncoll : 0);
    BSON_APPEND_INT64(reply, "objects", objs);
    BSON_APPEND_DOUBLE(reply, "dataSize", (double)size);
    BSON_APPEND_INT64(reply, "indexes", nidx);
    store_unlock(x->env->st);
    return 0;
}

/* ---- indexes ----------------------------------------------------------------------------------
 */

/* Is `spec` (a createIndexes entry) the same index as ix (same key, name, uniqueness, sparse
 * and partial filter)? 1: identical (nothing to do), 0: unrelated, -1: conflict (err set). */
static int index_conflict(store_index *ix, const store_index *want, bson_error_t *err)
{
    bool same_key = index_pattern_equal(ix, want->key);
    bool same_name = strcmp(ix->name, want->name) == 0;
    bool same_partial = partial_equal(ix->partial, want->partial);
    if (same_name && !same_key)
        return mdb_error(err, MDB_INDEX_KEY_SPECS_CONFLICT,
                         "An existing index has the same name as the requested index. When index "
                         "names are not specified, they are auto generated and can cause "
                         "conflicts. Please refer to our documentation. Requested index: %s, "
                         "existing index: %s",
                         want->name, ix->name);
    /* MongoDB 4.4 allows one index per key pattern: another filter on the same key is refused
     * (4.4's "Index: <spec> already exists with different options: <spec>"). */
    if (same_key && !same_name && !same_partial) {
        char *a = bson_as_relaxed_extended_json(want->spec, NULL);
        char *b = bson_as_relaxed_extended_json(ix->spec, NULL);
        mdb_error(err, MDB_INDEX_OPTIONS_CONFLICT,
                  "Index: %s already exists with different options: %s", a ? a : "?", b ? b : "?");
        bson_free(a);
        bson_free(b);
        return -1;
    }
    if (same_key && !same_name && want->unique == ix->unique)
        return mdb_error(err, MDB_INDEX_OPTIONS_CONFLICT,
                         "Index with name: %s already exists with a different name", want->name);
    if (same_key && same_name &&
        (want->unique != ix->unique || want->sparse != ix->sparse || !same_partial))
        return mdb_error(err, MDB_INDEX_OPTIONS_CONFLICT,
                         "An existing index has the same name as the requested index. Requested "
                         "index: %s, existing index: %s",
                         want->name, ix->name);
    return same_key && same_name ? 1 : 0;
}

static int cmd_createindexes(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    if (cmd_need_coll(x, err) != 0)
        return -1;
    bson_t specs;
    bool present;
    if (cmd_arg_array(x->cmd, "indexes", &specs, &present, err) != 0)
        return -1;
    if (!present || bson_empty(&specs))
        return mdb_error(err, MDB_BAD_VALUE, "Must specify at least one index to create");
    /* Validate every spec before changing anything. */
    bson_iter_t it;
    bson_iter_init(&it, &specs);
    while (bson_iter_next(&it)) {
        bson_t sd;
        if (!bv_as_doc(bson_iter_value(&it), &sd) || !BSON_ITER_HOLDS_DOCUMENT(&it))
            return mdb_error(err, MDB_TYPE_MISMATCH,
                             "The field 'indexes' must be an array of "
                             "objects");
        store_index *probe = index_new(&sd, err);
        if (!probe)
            return -1;
        if (!bson_has_field(&sd, "name")) {
            index_free(probe);
            return mdb_error(err, MDB_FAILED_TO_PARSE,
                             "The 'name' field is a required property of an index specification");
        }
        index_free(probe);
    }
    store_wrlock(x->env->st);
    bool created = false;
    int rc = -1;
    store_coll *c = store_coll_get_or_create(x->env->st, x->db, x->coll, &created, err);
    if (!c)
        goto out;
    int32_t before = (int32_t)c->nidx;
    bool added = false;
    bson_iter_init(&it, &specs);
    while (bson_iter_next(&it)) {
        bson_t sd;
        bv_as_doc(bson_iter_value(&it), &sd);
        store_index *want = index_new(&sd, err);
        int dup = 0;
        for (size_t i = 0; i < c->nidx && dup == 0; i++)
            dup = index_conflict(c->idx[i], want, err);
        index_free(want);
        if (dup < 0)
            goto out;
        if (dup == 1)
            continue;
        bson_t info = BSON_INITIALIZER;
        store_index *ix = store_index_create(c, &sd, err, &info);
        bson_destroy(&info);
        if (!ix)
            goto out;
        added = true;
    }
    BSON_APPEND_BOOL(reply, "createdCollectionAutomatically", created);
    BSON_APPEND_INT32(reply, "numIndexesBefore", before);
    BSON_APPEND_INT32(reply, "numIndexesAfter", (int32_t)c->nidx);
    if (!added)
        BSON_APPEND_UTF8(reply, "note", "all indexes already exist");
    rc = 0;
out:
    store_unlock(x->env->st);
    return rc;
}

static int cmd_listindexes(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    if (cmd_need_coll(x, err) != 0)
        return -1;
    int64_t bs;
    if (cmd_cursor_batch_size(x->cmd, &bs, err) != 0)
        return -1;
    char sub[300];
    snprintf(sub, sizeof sub, "%s", x->coll);
    cursor *cur = cursor_new(CURSOR_DOCS, x->db, sub);
    if (!cur)
        return mdb_error(err, MDB_INTERNAL_ERROR, "out of memory");
    store_rdlock(x->env->st);
    store_coll *c = store_coll_find(x->env->st, x->db, x->coll);
    for (size_t i = 0; c && i < c->nidx; i++)
        cursor_push_doc(cur, c->idx[i]->spec);
    store_unlock(x->env->st);
    if (!c) {
        cursor_free(cur);
        return mdb_error(err, MDB_NAMESPACE_NOT_FOUND, "ns does not exist: %s.%s", x->db, x->coll);
    }
    cmd_reply_docs_cursor(x, cur, bs, false, reply);
    return 0;
}

static int cmd_dropindexes(cmd_ctx *x, bson_t *reply, bson_error_t *err)
{
    if (cmd_need_coll(x, err) != 0)
        return -1;
    bson_iter_t it;
    const bson_value_t *which = cmd_arg_value(x->cmd, "index", &it);
    if (!which)
        return mdb_error(err, MDB_FAILED_TO_PARSE,
                         "BSON field 'dropIndexes.index' is missing "
                         "but a required field");
    int rc = -1;
    store_wrlock(x->env->st);
    store_coll *c = store_coll_find(x->env->st, x->db, x->coll);
    if (!c) {
        mdb_error(err, MDB_NAMESPACE_NOT_FOUND, "ns not found %s.%s", x->db, x->coll);
        goto out;
    }
    int32_t was = (int32_t)c->nidx;
    if (which->value_type == BSON_TYPE_UTF8 && strcmp(which->value.v_utf8.str, "*") == 0) {
        while (c->nidx > 1) {
            if (store_index_drop(c, c->nidx - 1, err) != 0)
                goto out;
        }
    } else if (which->value_type == BSON_TYPE_UTF8 || which->value_type == BSON_TYPE_DOCUMENT) {
        store_index *ix = NULL;
        if (which->value_type == BSON_TYPE_UTF8) {
            ix = store_index_by_name(c, which->value.v_utf8.str);
            if (!ix) {
                mdb_error(err, MDB_INDEX_NOT_FOUND, "index not found with name [%s]",
                          which->value.v_utf8.str);
                goto out;
            }
        } else {
            bson_t pat;
            bv_as_doc(which, &pat);
            ix = store_index_by_pattern(c, &pat);
            if (!ix) {
                char *js = bson_as_relaxed_extended_json(&pat, NULL);
                mdb_error(err, MDB_INDEX_NOT_FOUND, "can't find index with key: %s", js);
                bson_free(js);
                goto out;
            }
        }
        if (ix == c->idx[0]) {
            mdb_error(err, MDB_INVALID_OPTIONS, "cannot drop _id index");
            goto out;
        }
        for (size_t i = 1; i < c->nidx; i++) {
            if (c->idx[i] == ix) {
                if (store_index_drop(c, i, err) != 0)
                    goto out;
                break;
            }
        }
    } else if (which->value_type == BSON_TYPE_ARRAY) {
        /* All names must exist before any is dropped. */
        bson_t arr;
        bv_as_doc(which, &arr);
        bson_iter_t ai;
        bson_iter_init(&ai, &arr);
        while (bson_iter_next(&ai)) {
            const char *nm = BSON_ITER_HOLDS_UTF8(&ai) ? bson_iter_utf8(&ai, NULL) : NULL;
            if (!nm || !store_index_by_name(c, nm)) {
                mdb_error(err, MDB_INDEX_NOT_FOUND, "index not found with name [%s]",
                          nm ? nm : "?");
                goto out;
            }
            if (strcmp(nm, "_id_") == 0) {
                mdb_error(err, MDB_INVALID_OPTIONS, "cannot drop _id index");
                goto out;
            }
        }
        bson_iter_init(&ai, &arr);
        while (bson_iter_next(&ai)) {
            store_index *ix = store_index_by_name(c, bson_iter_utf8(&ai, NULL));
            for (size_t i = 1; ix && i < c->nidx; i++) {
                if (c->idx[i] == ix) {
                    if (store_index_drop(c, i, err) != 0)
                        goto out;
                    break;
                }
            }
        }
    } else {
        mdb_error(err, MDB_TYPE_MISMATCH, "BSON field 'dropIndexes.index' is the wrong type");
        goto out;
    }
    BSON_APPEND_INT32(reply, "nIndexesWas", was);
    rc = 0;
out:
    store_unlock(x->env->st);
    return rc;
}

/* ---- dispatch
 * ------------------------------------------------------------------------------------ */

static const struct {
    const char *name;
    cmd_fn fn;
} commands[] = {
    {"hello", cmd_hello},
    {"isMaster", cmd_hello},
    {"ismaster", cmd_hello},
    {"ping", cmd_ping},
    {"buildInfo", cmd_buildinfo},
    {"buildinfo", cmd_buildinfo},
    {"getParameter", cmd_getparameter},
    {"setParameter", cmd_setparameter},
    {"configureFailPoint", cmd_configurefailpoint},
    {"serverStatus", cmd_serverstatus},
    {"listDatabases", cmd_listdatabases},
    {"listCollections", cmd_listcollections},
    {"create", cmd_create},
    {"drop", cmd_drop},
    {"dropDatabase", cmd_dropdatabase},
    {"insert", cmd_insert},
    {"find", cmd_find},
    {"getMore", cmd_getmore},
    {"killCursors", cmd_killcursors},
    {"update", cmd_update},
    {"delete", cmd_delete},
    {"findAndModify", cmd_findandmodify},
    {"findandmodify", cmd_findandmodify},
    {"count", cmd_count},
    {"distinct", cmd_distinct},
    {"aggregate", cmd_aggregate},
    {"createIndexes", cmd_createindexes},
    {"listIndexes", cmd_listindexes},
    {"dropIndexes", cmd_dropindexes},
    {"deleteIndexes", cmd_dropindexes},
    {"collStats", cmd_collstats},
    {"dbStats", cmd_dbstats},
    {"endSessions", cmd_ok_only},
    {"killSessions", cmd_ok_only},
    {"killAllSessions", cmd_ok_only},
    {"refreshSessions", cmd_ok_only},
    {"getLastError", cmd_getlasterror},
    {"getlasterror", cmd_getlasterror},
    {"whatsmyuri", cmd_whatsmyuri},
    {"connectionStatus", cmd_connectionstatus},
};

void commands_run(cmd_conn *conn, const char *db, const bson_t *cmd, bson_t *reply)
{
    bson_error_t err = {0};
    bson_iter_t it;
    cmd_ctx x = {.conn = conn, .env = conn->env, .db = db, .cmd = cmd};
    __atomic_add_fetch(&conn->env->n_commands, 1, __ATOMIC_RELAXED);
    if (!bson_iter_init(&it, cmd) || !bson_iter_next(&it)) {
        mdb_error(&err, MDB_FAILED_TO_PARSE, "no command in message (empty document)");
        goto fail;
    }
    x.name = bson_iter_key(&it);
    if (BSON_ITER_HOLDS_UTF8(&it)) {
        uint32_t l;
        const char *s = bson_iter_utf8(&it, &l);
        if (l < sizeof x.coll && !memchr(s, '\0', l))
            memcpy(x.coll, s, l + 1);
    }
    cmd_fn fn = NULL;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(commands[i].name, x.name) == 0) {
            fn = commands[i].fn;
            break;
        }
    }
    if (!fn) {
        mdb_error(&err, MDB_COMMAND_NOT_FOUND, "no such command: '%.200s'", x.name);
        goto fail;
    }
    if (__atomic_load_n(&conn->env->fp_max_time_timeout, __ATOMIC_RELAXED)) {
        bson_iter_t mt;
        if (bson_iter_init_find(&mt, cmd, "maxTimeMS") && BSON_ITER_HOLDS_NUMBER(&mt) &&
            bson_iter_as_int64(&mt) > 0) {
            mdb_error(&err, MDB_MAX_TIME_MS_EXPIRED, "operation exceeded time limit");
            goto fail;
        }
    }
    int rc = fn(&x, reply, &err);
    /* Even a failed command may have journaled part of its work (an ordered batch that
     * stopped at its third document): commit whatever this thread wrote. */
    if ((wants_journal(cmd) ? durable_commit_journal(conn->env->dur, &err)
                            : durable_commit(conn->env->dur, &err)) != 0)
        goto fail;
    if (rc == 0) {
        BSON_APPEND_DOUBLE(reply, "ok", 1.0);
        return;
    }
fail:
    bson_reinit(reply);
    if (err.domain != MDB_ERROR_DOMAIN) {
        err.code = MDB_BAD_VALUE;
        if (!err.message[0])
            snprintf(err.message, sizeof err.message, "command failed");
    }
    BSON_APPEND_DOUBLE(reply, "ok", 0.0);
    BSON_APPEND_UTF8(reply, "errmsg", err.message);
    BSON_APPEND_INT32(reply, "code", (int32_t)err.code);
    BSON_APPEND_UTF8(reply, "codeName", mdb_code_name((int)err.code));
}
