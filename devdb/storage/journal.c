/*
 * journal.c: record files (see journal.h for the format and guarantees).
 *
 * Appends use pwritev at f->size rather than O_APPEND so that the writer always knows the
 * end of the valid data and can cut a failed, partly written record off again with
 * ftruncate. Readers map the file read-only: recovery walks gigabytes of records without
 * copying them, and a payload pointer stays valid until the reader is closed.
 */
#define _GNU_SOURCE
#include "storage/journal.h"

#include "base/crc32c.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void journal_frame(uint8_t hdr[JOURNAL_FRAME_LEN], uint32_t type, const void *payload, uint32_t len)
{
    put32(hdr, len);
    put32(hdr + 4, type);
    put32(hdr + 8, crc32c_sum(payload, len));
}

/* ---- fault injection (test hook, see journal.h) ------------------------------------------- */

static pthread_once_t fault_once = PTHREAD_ONCE_INIT;
static long long fault_enospc_after = -1; /* -1: off */
static long long fault_written;           /* journal bytes appended by this process */

static void fault_init(void)
{
    const char *v = getenv("MINICRM_DEVDB_FAULT");
    const char *key = "enospc_after_bytes=";
    if (v && strncmp(v, key, strlen(key)) == 0) {
        char *end;
        long long n = strtoll(v + strlen(key), &end, 10);
        if (end != v + strlen(key) && n >= 0)
            fault_enospc_after = n;
    }
}

/* ---- writing ------------------------------------------------------------------------------ */

int journal_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* The directory part of path, for journal_sync_dir. */
static void dir_of(const char *path, char *out, size_t n)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, n, ".");
    else
        snprintf(out, n, "%.*s", (int)(slash - path == 0 ? 1 : slash - path), path);
}

int journal_create(journal_file *f, const char *path, const char *magic, uint64_t gen, char *err,
                   size_t errlen)
{
    memset(f, 0, sizeof *f);
    f->fd = -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600); /* data: owner only */
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    uint8_t hdr[JOURNAL_HEADER_LEN];
    memcpy(hdr, magic, 8);
    put32(hdr + 8, (uint32_t)gen);
    put32(hdr + 12, (uint32_t)(gen >> 32));
    char dir[4096];
    dir_of(path, dir, sizeof dir);
    if (pwrite(fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr || fdatasync(fd) != 0 ||
        journal_sync_dir(dir) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno ? errno : EIO));
        close(fd);
        unlink(path);
        return -1;
    }
    f->fd = fd;
    f->gen = gen;
    f->size = sizeof hdr;
    return 0;
}

int journal_open_append(journal_file *f, const char *path, uint64_t gen, uint64_t size, char *err,
                        size_t errlen)
{
    memset(f, 0, sizeof *f);
    f->fd = -1;
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s for writing: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || ((uint64_t)sb.st_size != size && ftruncate(fd, (off_t)size) != 0)) {
        snprintf(err, errlen, "cannot cut %s to its valid %llu bytes: %s", path,
                 (unsigned long long)size, strerror(errno));
        close(fd);
        return -1;
    }
    f->fd = fd;
    f->gen = gen;
    f->size = size;
    return 0;
}

int journal_append(journal_file *f, uint32_t type, const void *payload, uint32_t len, int *err_no,
                   char *err, size_t errlen)
{
    if (f->broken || f->fd < 0) {
        *err_no = EIO;
        snprintf(err, errlen, "journal is unusable after an earlier write error");
        return -1;
    }
    uint8_t hdr[JOURNAL_FRAME_LEN];
    journal_frame(hdr, type, payload, len);
    struct iovec iov[2] = {{hdr, sizeof hdr}, {(void *)payload, len}};
    size_t total = sizeof hdr + len;
    pthread_once(&fault_once, fault_init);
    ssize_t w;
    if (fault_enospc_after >= 0 &&
        __atomic_load_n(&fault_written, __ATOMIC_RELAXED) + (long long)total > fault_enospc_after) {
        /* As a full disk: part of the record reaches the file, then ENOSPC. */
        iov[1].iov_len = len / 2;
        ssize_t partial = pwritev(f->fd, iov, 2, (off_t)f->size);
        (void)partial;
        errno = ENOSPC;
        w = -1;
    } else {
        w = pwritev(f->fd, iov, 2, (off_t)f->size);
        /* A short write to a regular file means the disk filled up in the middle. */
        if (w >= 0 && (size_t)w != total) {
            errno = ENOSPC;
            w = -1;
        }
    }
    if (w < 0) {
        int e = errno;
        *err_no = e;
        if (ftruncate(f->fd, (off_t)f->size) != 0) {
            f->broken = true;
            snprintf(err, errlen, "journal write failed (%s) and could not be undone (%s)",
                     strerror(e), strerror(errno));
        } else {
            snprintf(err, errlen, "journal write failed: %s", strerror(e));
        }
        return -1;
    }
    f->size += total;
    __atomic_add_fetch(&fault_written, (long long)total, __ATOMIC_RELAXED);
    return 0;
}

int journal_sync(journal_file *f)
{
    if (f->fd < 0)
        return 0;
    return fdatasync(f->fd);
}

void journal_close(journal_file *f)
{
    if (f && f->fd >= 0) {
        close(f->fd);
        f->fd = -1;
    }
}

/* ---- reading ------------------------------------------------------------------------------ */

int journal_reader_open(journal_reader *r, const char *path, const char *magic, char *err,
                        size_t errlen)
{
    memset(r, 0, sizeof *r);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        snprintf(err, errlen, "cannot stat %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if ((size_t)sb.st_size < JOURNAL_HEADER_LEN) {
        snprintf(err, errlen, "%s: too short for a header (%lld bytes)", path,
                 (long long)sb.st_size);
        close(fd);
        return -1;
    }
    void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        snprintf(err, errlen, "cannot map %s: %s", path, strerror(errno));
        return -1;
    }
    r->map = m;
    r->len = (size_t)sb.st_size;
    if (memcmp(r->map, magic, 8) != 0) {
        snprintf(err, errlen, "%s: not a devdb %s file (bad magic)", path,
                 strcmp(magic, JOURNAL_MAGIC) == 0 ? "journal" : "snapshot");
        journal_reader_close(r);
        return -1;
    }
    r->gen = (uint64_t)get32(r->map + 8) | (uint64_t)get32(r->map + 12) << 32;
    r->off = JOURNAL_HEADER_LEN;
    return 0;
}

int journal_reader_next(journal_reader *r, uint32_t *type, const uint8_t **payload, uint32_t *len)
{
    if (r->off == r->len)
        return 0;
    if (r->len - r->off < JOURNAL_FRAME_LEN)
        return -1;
    const uint8_t *h = r->map + r->off;
    uint32_t n = get32(h), t = get32(h + 4), crc = get32(h + 8);
    if (n > JOURNAL_MAX_RECORD || t < JOURNAL_REC_OP || t > JOURNAL_REC_END ||
        r->len - r->off - JOURNAL_FRAME_LEN < n)
        return -1;
    const uint8_t *p = h + JOURNAL_FRAME_LEN;
    if (crc32c_sum(p, n) != crc)
        return -1;
    *type = t;
    *payload = p;
    *len = n;
    r->off += JOURNAL_FRAME_LEN + n;
    return 1;
}

void journal_reader_close(journal_reader *r)
{
    if (r && r->map) {
        munmap((void *)r->map, r->len);
        r->map = NULL;
    }
}
