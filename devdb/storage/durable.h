/*
 * durable: devdb's persistence in a --dbpath directory: lock, recovery, journal, group
 * commit, background fsync and compaction into snapshots.
 *
 * Files in DIR:
 *   devdb.lock           flock'ed by the running devdb (holds its pid); a second devdb on
 *                        the same DIR fails to start
 *   snapshot-G.snap      complete image of the data when journal-G.log began (snapshot.h)
 *   journal-G.log        op records appended after that point (journal.h, store.h)
 *   *.tmp                a snapshot being written; deleted at start
 *
 * Recovery (durable_open): load the snapshot with the highest generation S (none: empty),
 * replay every journal with generation >= S in order, and delete files older than S. A torn
 * or corrupt tail of the newest journal (power cut mid-append) is cut off and logged; a bad
 * record anywhere else means damaged files and devdb refuses to start rather than silently
 * drop acknowledged data.
 *
 * Writes: the store calls the journal hook under its exclusive lock with each op record;
 * the record is written (write(2), page cache) before memory changes and before the reply.
 * Sync modes: ALWAYS - the connection thread calls durable_commit after the command and
 * before the reply; it fdatasyncs unless another thread's fsync already covered its records
 * (group commit). EVERYSEC - a background thread fdatasyncs once a second. NEVER - the OS
 * decides.
 *
 * Compaction: when the journal bytes since the last snapshot exceed
 * max(compact_min_bytes, compact_multiple x live data bytes), the background thread takes the
 * store lock, starts journal G+1, fork()s, and releases the lock; the child writes
 * snapshot-(G+1) from its copy-on-write image and exits; on success the parent deletes the
 * journals and snapshots older than G+1. At every moment the files on disk recover to the
 * same data: the old snapshot + journals G and G+1 until the new snapshot is renamed into
 * place. A clean shutdown (durable_close) writes a final snapshot in-process.
 *
 * Failures: a journal write that fails (full disk, I/O error) makes that write fail with
 * OutOfDiskSpace (14031) and a message naming DIR, logged once per burst; memory is left
 * unchanged and reads continue. The next write tries again.
 *
 * Thread-safety: durable_open/durable_close on the main thread, before the server starts and
 * after it stopped; durable_commit from any connection thread.
 */
#ifndef DEVDB_DURABLE_H
#define DEVDB_DURABLE_H

#include "storage/store.h"

#include <bson/bson.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { DURABLE_SYNC_ALWAYS, DURABLE_SYNC_EVERYSEC, DURABLE_SYNC_NEVER } durable_sync;

typedef struct durable_opts {
    const char *dbpath;         /* directory (created if missing, parent must exist) */
    durable_sync sync;          /* when the journal is fsync'd */
    int compact_multiple;       /* compact when journal > this x live data (>= 1) */
    uint64_t compact_min_bytes; /* ... and journal > this many bytes */
} durable_opts;

typedef struct durable durable;

/* Parses "always" | "everysec" | "never". -1 on anything else. */
int durable_parse_sync(const char *s, durable_sync *out);

/* Locks DIR, recovers its data into `st` (which must be empty), attaches the journal hook to
 * the store and starts the background thread. Returns NULL with a message in err on failure
 * (DIR in use, unreadable, damaged). The durable object must be closed before st is freed. */
durable *durable_open(const durable_opts *opts, store *st, char *err, size_t errlen);

/* For sync ALWAYS: makes every journal record written by the calling thread durable
 * (fdatasync, shared with concurrent callers). A no-op in the other modes or when the thread
 * wrote nothing since its last commit. -1 with OutOfDiskSpace in err if fsync failed. */
int durable_commit(durable *d, bson_error_t *err);
/* The same in every sync mode: what a write concern {j: true} asks for (the records written
 * by the calling thread are on disk before the reply). A no-op for d NULL (in memory). */
int durable_commit_journal(durable *d, bson_error_t *err);
/* How many fdatasyncs durable_commit / durable_commit_journal made so far (serverStatus
 * devdb.journalCommitSyncs: tests see that {j: true} waited for the disk). 0 for NULL. */
uint64_t durable_commit_syncs(const durable *d);

/* Stops the background thread (waiting for a running compaction), writes a final snapshot
 * if `final_snapshot` (clean shutdown) and no journal write failed, detaches the hook,
 * releases the lock and frees d. NULL-safe. Returns 0, or -1 with a message if the final
 * snapshot could not be written (the journal still holds everything). */
int durable_close(durable *d, bool final_snapshot, char *err, size_t errlen);

#endif
