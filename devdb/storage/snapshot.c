/*
 * snapshot.c: writing and loading snapshot files (see snapshot.h).
 *
 * The writer batches records into a static 1 MiB buffer and issues one write(2) per buffer;
 * a record larger than the buffer is written directly. Documents are written as DOC records
 * carrying the stored BSON bytes unchanged, so writing costs one CRC pass and one copy per
 * document and loading costs one store_insert (index maintenance) per document.
 *
 * The writer never calls malloc: it runs in a child right after fork() of a multithreaded
 * process, where another thread may have held an allocator lock (glibc copes, sanitizer
 * allocators may not). Op records are therefore encoded by hand into a static buffer, and
 * the write buffer is static too (one snapshot is written at a time per process).
 */
#include "storage/snapshot.h"

#include "base/errors.h"
#include "storage/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SNAP_BUF (1u << 20)

typedef struct snap_out {
    int fd;
    uint8_t *buf;
    size_t n;
    uint64_t total;
    int err_no;
} snap_out;

static int out_flush(snap_out *o)
{
    size_t off = 0;
    while (off < o->n) {
        ssize_t w = write(o->fd, o->buf + off, o->n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            o->err_no = w < 0 ? errno : ENOSPC;
            return -1;
        }
        off += (size_t)w;
    }
    o->n = 0;
    return 0;
}

static int out_bytes(snap_out *o, const void *p, size_t n)
{
    if (o->n + n > SNAP_BUF && out_flush(o) != 0)
        return -1;
    if (n > SNAP_BUF) {
        const uint8_t *q = p;
        while (n > 0) {
            ssize_t w = write(o->fd, q, n);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                o->err_no = w < 0 ? errno : ENOSPC;
                return -1;
            }
            q += w;
            n -= (size_t)w;
        }
        return 0;
    }
    memcpy(o->buf + o->n, p, n);
    o->n += n;
    return 0;
}

static int out_record(snap_out *o, uint32_t type, const void *p, uint32_t n)
{
    uint8_t hdr[JOURNAL_FRAME_LEN];
    journal_frame(hdr, type, p, n);
    o->total += sizeof hdr + n;
    if (out_bytes(o, hdr, sizeof hdr) != 0 || out_bytes(o, p, n) != 0)
        return -1;
    return 0;
}

/* ---- malloc-free BSON encoding of the few record shapes a snapshot needs ----------------- */

typedef struct enc {
    uint8_t *p;
    size_t n, cap;
    bool overflow;
} enc;

static void enc_raw(enc *e, const void *p, size_t n)
{
    if (e->n + n > e->cap) {
        e->overflow = true;
        return;
    }
    memcpy(e->p + e->n, p, n);
    e->n += n;
}

static void enc_i32(enc *e, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    enc_raw(e, b, 4);
}

static void enc_key(enc *e, uint8_t type, const char *key)
{
    enc_raw(e, &type, 1);
    enc_raw(e, key, strlen(key) + 1);
}

static void enc_utf8(enc *e, const char *key, const char *v)
{
    enc_key(e, BSON_TYPE_UTF8, key);
    enc_i32(e, (uint32_t)strlen(v) + 1);
    enc_raw(e, v, strlen(v) + 1);
}

static void enc_doc(enc *e, const char *key, const bson_t *d)
{
    enc_key(e, BSON_TYPE_DOCUMENT, key);
    enc_raw(e, bson_get_data(d), d->len);
}

/* Writes {op, db, coll, <dockey>: doc} as an OP record. */
static int out_op(snap_out *o, const char *op, const char *db, const char *coll, const char *dockey,
                  const bson_t *doc)
{
    static uint8_t buf[JOURNAL_MAX_RECORD];
    enc e = {.p = buf, .cap = sizeof buf};
    enc_i32(&e, 0);
    enc_utf8(&e, "op", op);
    enc_utf8(&e, "db", db);
    enc_utf8(&e, "coll", coll);
    enc_doc(&e, dockey, doc);
    uint8_t z = 0;
    enc_raw(&e, &z, 1);
    if (e.overflow) {
        o->err_no = EOVERFLOW;
        return -1;
    }
    uint32_t n = (uint32_t)e.n;
    buf[0] = (uint8_t)n;
    buf[1] = (uint8_t)(n >> 8);
    buf[2] = (uint8_t)(n >> 16);
    buf[3] = (uint8_t)(n >> 24);
    return out_record(o, JOURNAL_REC_OP, buf, n);
}

static int write_coll(snap_out *o, const store_db *d, const store_coll *c, uint64_t *ndocs)
{
    if (out_op(o, "create", d->name, c->name, "options", c->options) != 0)
        return -1;
    for (size_t i = 1; i < c->nidx; i++) {
        if (out_op(o, "createIndex", d->name, c->name, "spec", c->idx[i]->spec) != 0)
            return -1;
    }
    for (uint64_t r = 0; r < c->nrec; r++) {
        bson_t doc;
        if (!store_doc(c, r, &doc))
            continue;
        if (out_record(o, JOURNAL_REC_DOC, bson_get_data(&doc), doc.len) != 0)
            return -1;
        (*ndocs)++;
    }
    return 0;
}

int snapshot_write(store *st, const char *dir, uint64_t gen, uint64_t *bytes, char *err,
                   size_t errlen)
{
    char tmp[4200], fin[4200];
    snprintf(tmp, sizeof tmp, "%s/snapshot-%llu.tmp", dir, (unsigned long long)gen);
    snprintf(fin, sizeof fin, "%s/snapshot-%llu.snap", dir, (unsigned long long)gen);
    unlink(tmp);
    journal_file f;
    if (journal_create(&f, tmp, SNAPSHOT_MAGIC, gen, err, errlen) != 0)
        return -1;
    static uint8_t wbuf[SNAP_BUF];
    snap_out o = {.fd = f.fd, .buf = wbuf, .total = JOURNAL_HEADER_LEN};
    int rc = -1;
    uint64_t ndocs = 0;
    if (lseek(o.fd, JOURNAL_HEADER_LEN, SEEK_SET) < 0) {
        o.err_no = errno;
        goto io;
    }
    for (size_t i = 0; i < st->ndb; i++) {
        for (size_t j = 0; j < st->dbs[i]->ncoll; j++) {
            if (write_coll(&o, st->dbs[i], st->dbs[i]->colls[j], &ndocs) != 0)
                goto io;
        }
    }
    /* {docs: int64} by hand: 4 + (1 + 5 + 8) + 1 bytes. */
    uint8_t end[19] = {19, 0, 0, 0, BSON_TYPE_INT64, 'd', 'o', 'c', 's', 0};
    for (int k = 0; k < 8; k++)
        end[10 + k] = (uint8_t)(ndocs >> (8 * k));
    end[18] = 0;
    int erc = out_record(&o, JOURNAL_REC_END, end, sizeof end);
    if (erc != 0 || out_flush(&o) != 0)
        goto io;
    if (fdatasync(o.fd) != 0) {
        o.err_no = errno;
        goto io;
    }
    journal_close(&f);
    if (rename(tmp, fin) != 0 || journal_sync_dir(dir) != 0) {
        o.err_no = errno;
        goto io;
    }
    if (bytes)
        *bytes = o.total;
    rc = 0;
    goto out;
io:
    snprintf(err, errlen, "cannot write snapshot %s: %s", tmp, strerror(o.err_no));
out:
    journal_close(&f);
    if (rc != 0)
        unlink(tmp);
    return rc;
}

int snapshot_load(store *st, const char *path, uint64_t *gen, uint64_t *ndocs, char *err,
                  size_t errlen)
{
    journal_reader r;
    if (journal_reader_open(&r, path, SNAPSHOT_MAGIC, err, errlen) != 0)
        return -1;
    *gen = r.gen;
    *ndocs = 0;
    store_coll *cur = NULL;
    int rc = -1;
    bool ended = false;
    for (;;) {
        uint32_t type, len;
        const uint8_t *p;
        int n = journal_reader_next(&r, &type, &p, &len);
        if (n == 0)
            break;
        if (n < 0 || ended) {
            snprintf(err, errlen, "%s: invalid record at offset %zu (the snapshot is damaged)",
                     path, r.off);
            goto out;
        }
        bson_t b;
        if (!bson_init_static(&b, p, len)) {
            snprintf(err, errlen, "%s: invalid BSON at offset %zu", path, r.off);
            goto out;
        }
        bson_error_t be = {0};
        if (type == JOURNAL_REC_END) {
            bson_iter_t it;
            if (!bson_iter_init_find(&it, &b, "docs") || !BSON_ITER_HOLDS_INT64(&it) ||
                (uint64_t)bson_iter_int64(&it) != *ndocs) {
                snprintf(err, errlen, "%s: document count does not match its end record", path);
                goto out;
            }
            ended = true;
        } else if (type == JOURNAL_REC_OP) {
            if (store_replay(st, &b, &be) != 0) {
                snprintf(err, errlen, "%s: cannot apply record at offset %zu: %s", path, r.off,
                         be.message);
                goto out;
            }
            bson_iter_t it;
            if (bson_iter_init_find(&it, &b, "op") && BSON_ITER_HOLDS_UTF8(&it) &&
                strcmp(bson_iter_utf8(&it, NULL), "create") == 0) {
                bson_iter_t di, ci;
                if (bson_iter_init_find(&di, &b, "db") && bson_iter_init_find(&ci, &b, "coll"))
                    cur = store_coll_find(st, bson_iter_utf8(&di, NULL), bson_iter_utf8(&ci, NULL));
            }
        } else {
            if (!cur || store_insert(cur, &b, NULL, &be, NULL) != 0) {
                snprintf(err, errlen, "%s: cannot load document at offset %zu: %s", path, r.off,
                         cur ? be.message : "no collection");
                goto out;
            }
            (*ndocs)++;
        }
    }
    if (!ended) {
        snprintf(err, errlen, "%s: incomplete snapshot (no end record)", path);
        goto out;
    }
    rc = 0;
out:
    journal_reader_close(&r);
    return rc;
}
