/* dbpool: see dbpool.h. A thin owner of mongoc_client_pool_t that remembers the database. */
#include "dbpool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dbpool {
    mongoc_client_pool_t *pool;
    char db[128];
};

static pthread_mutex_t g_init_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_init_refs;

dbpool *dbpool_new(const char *uri_str, int pool_max, int timeout_ms, const char *appname,
                   char *err, size_t errlen)
{
    pthread_mutex_lock(&g_init_lock);
    if (g_init_refs++ == 0)
        mongoc_init();
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
    mongoc_uri_destroy(uri);
    uri = NULL;
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
