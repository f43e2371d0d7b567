/*
 * snapshot: a complete image of devdb's store in one file, written at compaction and on clean
 * shutdown, read back at start before the journal is replayed.
 *
 * File: the record-file format of journal.h with magic "DEVDBSNP" and generation G, meaning
 * "the data as it was when journal-G.log was started". Records, per collection:
 *   OP {op: "create", db, coll, options}, OP {op: "createIndex", db, coll, spec} per
 *   secondary index, then one DOC record per live document (raw BSON, natural order);
 * and last an END record {docs: <total>}. A snapshot without a valid END record is
 * incomplete and is never used.
 *
 * Writing goes to snapshot-G.tmp, is fdatasync'd, renamed to snapshot-G.snap and the
 * directory fsync'd, so a .snap file is always complete. snapshot_write only reads the store
 * and allocates nothing through libbson except small op records, so it can run in a child
 * process right after fork() (where the parent holds the store lock).
 *
 * Thread-safety: the caller guarantees nobody mutates the store meanwhile (exclusive lock,
 * or a forked child's private copy).
 */
#ifndef DEVDB_SNAPSHOT_H
#define DEVDB_SNAPSHOT_H

#include "storage/store.h"

#include <stddef.h>
#include <stdint.h>

/* Writes dir/snapshot-<gen>.snap as above. -1 with a message on failure (the .tmp file is
 * removed). *bytes (may be NULL) gets the file size. */
int snapshot_write(store *st, const char *dir, uint64_t gen, uint64_t *bytes, char *err,
                   size_t errlen);

/* Loads a snapshot file into an empty store (which must have no journal hook attached).
 * *gen gets its generation, *ndocs its document count. -1 with a message if the file is
 * unreadable, incomplete or inconsistent. */
int snapshot_load(store *st, const char *path, uint64_t *gen, uint64_t *ndocs, char *err,
                  size_t errlen);

#endif
