/* dbpool: see dbpool.h. A thin owner of mongoc_client_pool_t that remembers the database,
 * the final URI (for the index builder's own client) and the durable write concern. */
#include "dbpool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dbpool {
    mongoc_client_pool_t *pool;
    char db[128];
    mongoc_uri_t *uri;          /* as the pool uses it (timeouts filled in) */
    int timeout_ms;             /* as given to dbpool_new */
    mongoc_write_concern_t *wc; /* durable writes; NULL: the URI's own (see dbpool.h) */
    char wc_name[32];
};

static pthread_mutex_t g_init_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_init_refs;

dbpool *dbpool_new(const char *uri_str, int pool_max, int timeout_ms, const char *appname,
                   char *err, size_t errlen)
{
    pthread_mutex_lock(&g_init_lock);
    if (g_init_refs++ == 0) {
        /* The driver's shared-memory performance counters serve MongoDB's own monitoring
         * tools, which minicrm does not use; when /dev/shm has no room (many processes, a
         * container) the driver prints a warning into the program's output (the CLI's JSON
         * included). Off unless the environment says otherwise; set before any thread of
         * ours reads the environment. */
        setenv("MONGOC_DISABLE_SHM", "1", 0);
        mongoc_init();
    }
    pthread_mutex_unlock(&g_init_lock);

    dbpool *p = calloc(1, sizeof *p);
    bson_error_t berr;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(uri_str, &berr);
    if (!p || !uri) {
        snprintf(err, errlen, "bad MongoDB URI: %s", uri ? "out of memory" : berr.message);
        goto fail;
    }
    const char *db = mongoc_uri_get_database(uri);
    snprintf(p->db, sizeof p->db, "%s", db && *db ? db : "minicrm");
    if (timeout_ms > 0) {
        if (!mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
            mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, timeout_ms);
        if (!mongoc_uri_has_option(uri, MONGOC_URI_CONNECTTIMEOUTMS))
            mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, timeout_ms);
        if (!mongoc_uri_has_option(uri, MONGOC_URI_SOCKETTIMEOUTMS))
            mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SOCKETTIMEOUTMS, timeout_ms * 6);
    }
    if (appname && !mongoc_uri_has_option(uri, MONGOC_URI_APPNAME))
        mongoc_uri_set_appname(uri, appname);
    p->pool = mongoc_client_pool_new(uri);
    p->uri = uri;
    p->timeout_ms = timeout_ms;
    uri = NULL;
    if (dbpool_set_durable_wc(p, "auto", err, errlen) != 0)
        goto fail;
    if (!p->pool) {
        snprintf(err, errlen, "cannot create MongoDB client pool");
        goto fail;
    }
    mongoc_client_pool_set_error_api(p->pool, MONGOC_ERROR_API_VERSION_2);
    if (pool_max > 0)
        mongoc_client_pool_max_size(p->pool, (uint32_t)pool_max);
    return p;
fail:
    if (uri)
        mongoc_uri_destroy(uri);
    dbpool_free(p);
    if (!p) {
        pthread_mutex_lock(&g_init_lock);
        if (--g_init_refs == 0)
            mongoc_cleanup();
        pthread_mutex_unlock(&g_init_lock);
    }
    return NULL;
}

void dbpool_free(dbpool *p)
{
    if (!p)
        return;
    if (p->pool)
        mongoc_client_pool_destroy(p->pool);
    if (p->uri)
        mongoc_uri_destroy(p->uri);
    mongoc_write_concern_destroy(p->wc);
    free(p);
    pthread_mutex_lock(&g_init_lock);
    if (--g_init_refs == 0)
        mongoc_cleanup();
    pthread_mutex_unlock(&g_init_lock);
}

mongoc_client_t *dbpool_pop(dbpool *p)
{
    return mongoc_client_pool_pop(p->pool);
}

void dbpool_push(dbpool *p, mongoc_client_t *client)
{
    if (client)
        mongoc_client_pool_push(p->pool, client);
}

const char *dbpool_db_name(const dbpool *p)
{
    return p->db;
}

mongoc_collection_t *dbpool_collection(dbpool *p, mongoc_client_t *client, const char *name)
{
    return mongoc_client_get_collection(client, p->db, name);
}

int dbpool_ping(dbpool *p, bson_error_t *err)
{
    mongoc_client_t *c = dbpool_pop(p);
    bson_t cmd = BSON_INITIALIZER;
    BSON_APPEND_INT32(&cmd, "ping", 1);
    bool ok = mongoc_client_command_simple(c, "admin", &cmd, NULL, NULL, err);
    bson_destroy(&cmd);
    dbpool_push(p, c);
    return ok ? 0 : -1;
}

int dbpool_socket_timeout_ms(const dbpool *p)
{
    return mongoc_uri_get_option_as_int32(p->uri, MONGOC_URI_SOCKETTIMEOUTMS,
                                          MONGOC_DEFAULT_SOCKETTIMEOUTMS);
}

mongoc_client_t *dbpool_client_new(const dbpool *p, int socket_timeout_ms, char *err, size_t errlen)
{
    mongoc_uri_t *u = mongoc_uri_copy(p->uri);
    mongoc_client_t *c = NULL;
    if (u && mongoc_uri_set_option_as_int32(u, MONGOC_URI_SOCKETTIMEOUTMS, socket_timeout_ms))
        c = mongoc_client_new_from_uri(u);
    if (c)
        mongoc_client_set_error_api(c, MONGOC_ERROR_API_VERSION_2);
    else
        snprintf(err, errlen, "cannot create a MongoDB client");
    mongoc_uri_destroy(u);
    return c;
}

int dbpool_set_durable_wc(dbpool *p, const char *mode, char *err, size_t errlen)
{
    mongoc_write_concern_t *wc = NULL;
    const char *name = mode;
    if (strcmp(mode, "auto") == 0) {
        /* The URI's own w / journal win: whoever wrote them knows the deployment. */
        const mongoc_write_concern_t *uw = mongoc_uri_get_write_concern(p->uri);
        bool uri_says = uw && (mongoc_write_concern_get_w(uw) != MONGOC_WRITE_CONCERN_W_DEFAULT ||
                               mongoc_write_concern_journal_is_set(uw));
        if (uri_says) {
            snprintf(p->wc_name, sizeof p->wc_name, "uri");
            mongoc_write_concern_destroy(p->wc);
            p->wc = NULL;
            return 0;
        }
        name = mongoc_uri_get_replica_set(p->uri) ? "majority" : "journal";
    }
    wc = mongoc_write_concern_new();
    if (strcmp(name, "journal") == 0) {
        mongoc_write_concern_set_w(wc, 1);
        mongoc_write_concern_set_journal(wc, true);
    } else if (strcmp(name, "majority") == 0) {
        /* Bounded: a replica set without a majority must not hang a writer for ever. */
        mongoc_write_concern_set_wmajority(wc, p->timeout_ms > 0 ? p->timeout_ms * 2 : 10000);
    } else if (strcmp(name, "acknowledged") == 0) {
        mongoc_write_concern_set_w(wc, 1);
    } else {
        mongoc_write_concern_destroy(wc);
        snprintf(err, errlen,
                 "mongo.write_concern: expected auto, journal, majority or "
                 "acknowledged, got \"%.40s\"",
                 mode);
        return -1;
    }
    mongoc_write_concern_destroy(p->wc);
    p->wc = wc;
    snprintf(p->wc_name, sizeof p->wc_name, "%s", name);
    return 0;
}

const char *dbpool_durable_wc_name(const dbpool *p)
{
    return p->wc_name;
}

mongoc_collection_t *dbpool_durable_collection(dbpool *p, mongoc_client_t *client, const char *name)
{
    mongoc_collection_t *c = mongoc_client_get_collection(client, p->db, name);
    if (c && p->wc)
        mongoc_collection_set_write_concern(c, p->wc);
    return c;
}
