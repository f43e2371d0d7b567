/*
 * journal: devdb's on-disk record files: framing, checksums, appending and reading back.
 *
 * Both the journal (journal-<gen>.log) and the snapshot (snapshot-<gen>.snap) are one file
 * format, a 16-byte header followed by framed records:
 *
 *   header:  8-byte magic ("DEVDBJNL" or "DEVDBSNP") | uint64 generation (little endian)
 *   record:  uint32 length | uint32 type | uint32 CRC-32C of the payload | payload (length bytes)
 *
 * A record is valid only if its whole frame and payload are in the file, the length is at
 * most JOURNAL_MAX_RECORD, the type is known and the checksum matches. A power cut during an
 * append leaves a torn last record; the reader reports where the valid prefix ends and
 * recovery cuts the file there, so a torn record is never half-applied.
 *
 * Appending (journal_append) writes one record with a single pwritev at the end of the valid
 * data; if that fails or is short (ENOSPC, EIO), the file is truncated back to the previous
 * end so the next append starts on a clean boundary. Only if that truncation fails too is the
 * file marked broken and every later append refused.
 *
 * Test hook: the environment variable MINICRM_DEVDB_FAULT=enospc_after_bytes=N makes appends
 * fail with ENOSPC (after writing half of the record, as a full disk would) once N journal
 * bytes have been appended by this process. It exists for tests of the full-disk behaviour.
 *
 * Thread-safety: a journal_file is used by one thread at a time (devdb appends under its
 * store's exclusive lock); readers are independent.
 */
#ifndef DEVDB_JOURNAL_H
#define DEVDB_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JOURNAL_HEADER_LEN 16
#define JOURNAL_FRAME_LEN  12
/* A 16 MiB document plus its op record around it. */
#define JOURNAL_MAX_RECORD (17u << 20)

#define JOURNAL_MAGIC  "DEVDBJNL"
#define SNAPSHOT_MAGIC "DEVDBSNP"

enum {
    JOURNAL_REC_OP = 1,  /* an op record (BSON, formats in store.h) */
    JOURNAL_REC_DOC = 2, /* snapshot only: a document of the collection created last */
    JOURNAL_REC_END = 3, /* snapshot only: the last record, {docs: n} */
};

typedef struct journal_file {
    int fd;
    uint64_t gen;
    uint64_t size; /* bytes of valid data (header + whole records) */
    bool broken;   /* a failed append could not be undone: refuse further appends */
} journal_file;

/* Creates `path` (must not exist) with the header for `magic` and `gen`, fsyncs it and its
 * directory. Fills f. -1 with a message on failure. */
int journal_create(journal_file *f, const char *path, const char *magic, uint64_t gen, char *err,
                   size_t errlen);

/* Opens an existing file for appending at offset `size` (the end of its valid data, as the
 * reader found it), truncating anything after it. -1 with a message on failure. */
int journal_open_append(journal_file *f, const char *path, uint64_t gen, uint64_t size, char *err,
                        size_t errlen);

/* Appends one record. -1 with err_no (errno value) and a message on failure; the file is
 * then as before the call (or marked broken). */
int journal_append(journal_file *f, uint32_t type, const void *payload, uint32_t len, int *err_no,
                   char *err, size_t errlen);

/* fdatasync. -1 with errno on failure. */
int journal_sync(journal_file *f);

/* Closes the descriptor (NULL-safe, idempotent). */
void journal_close(journal_file *f);

/* Fills the 12-byte frame header for a payload (used by the snapshot writer too). */
void journal_frame(uint8_t hdr[JOURNAL_FRAME_LEN], uint32_t type, const void *payload,
                   uint32_t len);

/* ---- reading ------------------------------------------------------------------------------ */

typedef struct journal_reader {
    const uint8_t *map; /* the whole file, read-only mapping (NULL when empty) */
    size_t len;
    size_t off; /* end of the valid prefix read so far */
    uint64_t gen;
} journal_reader;

/* Maps `path` and checks its header. -1 with a message if the file cannot be read or the
 * header is wrong (a file shorter than the header counts as wrong). */
int journal_reader_open(journal_reader *r, const char *path, const char *magic, char *err,
                        size_t errlen);

/* Next record: 1 with *type, *payload (points into the mapping), *len; 0 at the clean end of
 * the file; -1 if the rest of the file is not a valid record (torn or corrupt), r->off is
 * then the end of the valid prefix. */
int journal_reader_next(journal_reader *r, uint32_t *type, const uint8_t **payload, uint32_t *len);

void journal_reader_close(journal_reader *r);

/* fsync of a directory (after creating, renaming or unlinking files in it). */
int journal_sync_dir(const char *dir);

#endif
