/*
 * commands: runs one MongoDB command document against the store and builds its reply.
 *
 * commands_run looks the command name (the first field) up in a dispatch table and calls its
 * handler. Handlers take the store lock themselves (shared for reads, exclusive for writes),
 * never across I/O, and release it before returning. Errors become MongoDB's error document
 * {ok: 0, errmsg, code, codeName}; an unknown command is CommandNotFound (59).
 *
 * Arguments every command accepts and ignores: comment, lsid, $db, $readPreference,
 * $clusterTime, txnNumber, autocommit, startTransaction, readConcern, apiVersion, apiStrict,
 * apiDeprecationErrors. maxTimeMS is honoured by find, count and aggregate (MaxTimeMSExpired 50
 * once the scan passes it) and accepted by the others; writeConcern {j: true} makes the
 * command's journal records durable before the reply (see Durability); other write concern
 * fields are accepted (a standalone acknowledges w: 1 and "majority" alike).
 *
 * Durability: with --dbpath --sync always, or with writeConcern {j: true} under any --sync,
 * commands_run makes the journal records of the command durable (durable_commit) before it
 * returns, i.e. before the reply is sent; if that fsync fails the reply is an OutOfDiskSpace
 * error instead. In memory (no --dbpath) j: true has nothing to wait for and is accepted.
 *
 * Thread-safety: commands_run may be called from any number of connection threads at once.
 */
#ifndef DEVDB_COMMANDS_H
#define DEVDB_COMMANDS_H

#include "commands/cursor.h"
#include "storage/durable.h"
#include "storage/store.h"

#include <bson/bson.h>
#include <stdint.h>

/* State shared by all connections (owned by main). */
typedef struct cmd_env {
    store *st;
    cursor_table *cursors;
    durable *dur;          /* NULL: in memory only */
    int64_t start_ms;      /* wall clock at start, for uptime */
    int64_t total_conns;   /* atomic: connections accepted so far (also the next id) */
    int64_t current_conns; /* atomic */
    int64_t n_commands;    /* atomic */
    int64_t n_getmore;     /* atomic */
    int max_conns;
    /* Server parameters and fail points a test may set at run time (setParameter,
     * configureFailPoint), read atomically by every connection. */
    int64_t sort_mem_limit;  /* internalQueryMaxBlockingSortMemoryUsageBytes; 0: the default */
    int fp_max_time_timeout; /* fail point maxTimeAlwaysTimeOut is on */
} cmd_env;

/* MongoDB 4.4's default internalQueryMaxBlockingSortMemoryUsageBytes: 100 MiB. */
#define CMD_SORT_MEM_DEFAULT ((int64_t)104857600)
/* The effective blocking-sort limit of env. */
int64_t commands_sort_mem_limit(cmd_env *env);

/* Per-connection state (owned by the connection thread). */
typedef struct cmd_conn {
    cmd_env *env;
    int64_t conn_id;
} cmd_conn;

/* Runs `cmd` in database `db` and appends the reply fields to `reply` (caller-initialised,
 * empty; caller destroys). Never fails: errors are expressed in the reply. */
void commands_run(cmd_conn *conn, const char *db, const bson_t *cmd, bson_t *reply);

#endif
