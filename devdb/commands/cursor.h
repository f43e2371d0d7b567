/*
 * cursor: server-side cursors of find, aggregate, listCollections and listIndexes.
 *
 * A cursor holds the remaining results of a query after its first batch: either record ids of
 * a collection (find: the documents are re-read, and projected, when a getMore returns them,
 * so memory stays at 8 bytes per pending result; a document deleted meanwhile is skipped) or
 * complete result documents (aggregate, listCollections, listIndexes).
 *
 * The table is shared by all connections and has its own mutex. A getMore *takes* a cursor
 * out of the table while it builds a batch and *puts* it back afterwards, so killCursors and
 * the idle reaper never free a cursor that is in use. Cursors idle for longer than the table's
 * timeout (10 minutes, as MongoDB) are freed by cursor_table_reap.
 */
#ifndef DEVDB_CURSOR_H
#define DEVDB_CURSOR_H

#include "engine/project.h"

#include <bson/bson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { CURSOR_RIDS, CURSOR_DOCS } cursor_kind;

typedef struct cursor {
    int64_t id;
    char db[64];
    char coll[256];
    char ns[320];         /* "db.coll" as replies show it */
    uint64_t incarnation; /* of the collection (CURSOR_RIDS) */
    cursor_kind kind;
    uint64_t *rids;   /* CURSOR_RIDS */
    uint8_t **docs;   /* CURSOR_DOCS: owned BSON buffers */
    size_t n, pos;    /* results and the next one to return */
    projection *proj; /* owned; NULL = identity (CURSOR_RIDS) */
    int64_t last_used_ms;
} cursor;

typedef struct cursor_table cursor_table;

cursor_table *cursor_table_new(int64_t timeout_ms);
/* Frees the table and every cursor in it. NULL-safe. */
void cursor_table_free(cursor_table *t);

/* A new empty cursor (caller owns until cursor_table_add). NULL on OOM. */
cursor *cursor_new(cursor_kind kind, const char *db, const char *coll);
/* Frees a cursor not in a table. NULL-safe. */
void cursor_free(cursor *c);
/* Appends a result. 0, or -1 on OOM. CURSOR_DOCS copies the document. */
int cursor_push_rid(cursor *c, uint64_t rid);
int cursor_push_doc(cursor *c, const bson_t *doc);

/* Assigns a fresh non-zero id, stores the cursor (the table owns it) and returns the id. */
int64_t cursor_table_add(cursor_table *t, cursor *c);
/* Removes and returns cursor `id` for use (caller owns it until put back), NULL if unknown. */
cursor *cursor_table_take(cursor_table *t, int64_t id);
/* Gives a taken cursor back, refreshing its idle timer. */
void cursor_table_put(cursor_table *t, cursor *c);
/* Frees cursor `id`; false if unknown. */
bool cursor_table_kill(cursor_table *t, int64_t id);
/* Frees cursors idle for longer than the timeout. */
void cursor_table_reap(cursor_table *t);
size_t cursor_table_count(cursor_table *t);

#endif
