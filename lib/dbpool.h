/*
 * dbpool: the MongoDB client pool of a process (libmongoc).
 *
 * One dbpool per process, created after any fork(). The database is the one named in the URI
 * path (mongodb://host:port/NAME), default "minicrm". Threads borrow a client with
 * dbpool_pop() and return it with dbpool_push(); a mongoc_client_t is not thread-safe, the pool
 * is. dbpool_collection() is a shortcut returning a collection handle on a borrowed client;
 * the caller destroys the handle (mongoc_collection_destroy) before pushing the client back.
 *
 * mongoc_init()/mongoc_cleanup() are called by dbpool_new()/dbpool_free() (reference counted).
 */
#ifndef MINICRM_DBPOOL_H
#define MINICRM_DBPOOL_H

#include <mongoc/mongoc.h>

typedef struct dbpool dbpool;

/* Collection names of the contract. */
#define DB_CUSTOMERS "customer1"
#define DB_ORDERS    "orders1"
#define DB_LOGS      "communication_logs1"
#define DB_CAMPAIGNS "campaigns1"
#define DB_USERS     "users"
#define DB_API_KEYS  "api_keys"

/* Returns NULL with a message in err if the URI is invalid. Does not contact the server.
 * pool_max bounds the number of connections; timeout_ms sets server selection and socket
 * timeouts unless the URI sets them. */
dbpool *dbpool_new(const char *uri, int pool_max, int timeout_ms, const char *appname, char *err,
                   size_t errlen);
void dbpool_free(dbpool *p);

mongoc_client_t *dbpool_pop(dbpool *p);
void dbpool_push(dbpool *p, mongoc_client_t *client);
/* The database name (owned by the pool). */
const char *dbpool_db_name(const dbpool *p);
/* A handle on collection `name` of the pool's database. Caller destroys it. */
mongoc_collection_t *dbpool_collection(dbpool *p, mongoc_client_t *client, const char *name);
/* Ping the server (used by readiness checks). 0 if it answered. */
int dbpool_ping(dbpool *p, bson_error_t *err);

#endif
