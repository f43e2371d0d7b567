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
 *
 * Durable writes. A write whose loss would leave a campaign wrong (the fan-out's logs and
 * checkpoint, receipts and counters, a campaign's creation) goes through a collection handle
 * from dbpool_durable_collection(), which names the pool's durable write concern
 * (mongo.write_concern): "journal" {w: 1, j: true} on a standalone (acknowledged only once it
 * is in the server's journal, so a server crash cannot lose it), "majority" {w: "majority"} on
 * a replica set (a failover cannot roll it back), "acknowledged" {w: 1}, or "auto" (default):
 * the URI's own w / journal when it names one, else majority when the URI names a replicaSet,
 * else journal. Other writes use the URI's write concern.
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
/* The socket timeout the pool's clients use (the URI's socketTimeoutMS, else 6 x timeout_ms).
 * Server-side limits (maxTimeMS) must stay below it, or the client gives up first. */
int dbpool_socket_timeout_ms(const dbpool *p);
/* A new client of its own (not from the pool; the caller destroys it) on the pool's URI with
 * another socket timeout: the start-up index builder, whose createIndexes may run for
 * minutes. NULL with a message in err. */
mongoc_client_t *dbpool_client_new(const dbpool *p, int socket_timeout_ms, char *err,
                                   size_t errlen);
/* Set the durable write concern from mongo.write_concern (see above). Call before the pool is
 * shared. 0, or -1 with a message for an unknown mode. */
int dbpool_set_durable_wc(dbpool *p, const char *mode, char *err, size_t errlen);
/* "journal", "majority", "acknowledged" or "uri": what durable writes use (for logs). */
const char *dbpool_durable_wc_name(const dbpool *p);
/* dbpool_collection with the durable write concern set on the handle. Caller destroys it. */
mongoc_collection_t *dbpool_durable_collection(dbpool *p, mongoc_client_t *client,
                                               const char *name);

/* Ping the server (used by readiness checks). 0 if it answered. */
int dbpool_ping(dbpool *p, bson_error_t *err);

#endif
