/*
 * commands_int: what the command handler files (commands.c, commands_read.c,
 * commands_write.c) share: the per-command context, handler signature and argument helpers.
 * Internal to devdb's server half.
 */
#ifndef DEVDB_COMMANDS_INT_H
#define DEVDB_COMMANDS_INT_H

#include "commands/commands.h"

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

/* Per-command context. */
typedef struct cmd_ctx {
    cmd_conn *conn;
    cmd_env *env;
    const char *db;
    const bson_t *cmd;
    const char *name; /* the command name as sent */
    char coll[256];   /* the first field's value when it is a string ("" otherwise) */
} cmd_ctx;

/* A handler appends its reply fields (without ok) to `reply` and returns 0, or returns -1 with
 * err set (domain MDB_ERROR_DOMAIN); then commands_run discards the partial reply and writes
 * the error document. */
typedef int (*cmd_fn)(cmd_ctx *x, bson_t *reply, bson_error_t *err);

/* commands_read.c */
int cmd_find(cmd_ctx *x, bson_t *reply, bson_error_t *err);
int cmd_getmore(cmd_ctx *x, bson_t *reply, bson_error_t *err);
int cmd_killcursors(cmd_ctx *x, bson_t *reply, bson_error_t *err);
int cmd_count(cmd_ctx *x, bson_t *reply, bson_error_t *err);
int cmd_distinct(cmd_ctx *x, bson_t *reply, bson_error_t *err);
int cmd_aggregate(cmd_ctx *x, bson_t *reply, bson_error_t *err);

/* commands_write.c */
int cmd_insert(cmd_ctx *x, bson_t *reply, bson_error_t *err);
int cmd_update(cmd_ctx *x, bson_t *reply, bson_error_t *err);
int cmd_delete(cmd_ctx *x, bson_t *reply, bson_error_t *err);
int cmd_findandmodify(cmd_ctx *x, bson_t *reply, bson_error_t *err);

/* ---- helpers (commands.c) ---- */

/* A static view of the embedded document `key` of cmd. *present (may be NULL) tells whether
 * the field exists; a present field of another type is TypeMismatch (14) unless it is null
 * (treated as absent). */
int cmd_arg_doc(const bson_t *cmd, const char *key, bson_t *out, bool *present, bson_error_t *err);
/* Like cmd_arg_doc for arrays. */
int cmd_arg_array(const bson_t *cmd, const char *key, bson_t *out, bool *present,
                  bson_error_t *err);
/* An integral number (int32, int64, or a double with an integral value). Absent: *out
 * unchanged. */
int cmd_arg_int64(const bson_t *cmd, const char *key, int64_t *out, bson_error_t *err);
/* Truthiness as MongoDB reads bool options (absent: def). */
bool cmd_arg_bool(const bson_t *cmd, const char *key, bool def);
/* The value of a field (pointing into cmd), or NULL if absent. */
const bson_value_t *cmd_arg_value(const bson_t *cmd, const char *key, bson_iter_t *it);

/* Requires a collection name as the command's first value (InvalidNamespace 73 otherwise). */
int cmd_need_coll(cmd_ctx *x, bson_error_t *err);

/* Appends the documents of a CURSOR_DOCS cursor as {cursor: {firstBatch, id, ns}}, registering
 * the cursor if documents remain (takes ownership of `c` either way). */
void cmd_reply_docs_cursor(cmd_ctx *x, cursor *c, int64_t batch_size, bool single_batch,
                           bson_t *reply);
/* Reads batchSize from a {cursor: {batchSize}} argument (-1: none). */
int cmd_cursor_batch_size(const bson_t *cmd, int64_t *out, bson_error_t *err);

#define CMD_BATCH_BYTES         (16 * 1024 * 1024 - 16 * 1024)
#define CMD_DEFAULT_FIRST_BATCH 101

#endif
