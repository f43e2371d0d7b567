/*
 * durable.c: the --dbpath machinery (see durable.h for files, recovery and guarantees).
 *
 * Who touches what:
 *   - d->jf (the current journal file), d->jbytes: the journal hook, called by connection
 *     threads under the store's exclusive lock; rotation, done by the background thread (or
 *     durable_close) also under the exclusive lock. So appends and rotation never overlap.
 *   - d->mu guards the descriptor against fsync: durable_commit and the everysec tick call
 *     fdatasync under d->mu, rotation swaps d->jf under d->mu (after syncing the old file).
 *     Lock order: store lock, then d->mu; nobody takes the store lock while holding d->mu.
 *   - d->written (total bytes appended by this process, the "LSN") and d->synced (the LSN
 *     known to be on disk) are atomics; each thread remembers the LSN after its own last
 *     append in a thread-local, so durable_commit knows whether it has anything to wait for
 *     and one fdatasync covers every thread whose records preceded it (group commit).
 *   - the background thread alone starts, reaps and finishes compactions (d->child...).
 *
 * Compaction state machine (background thread):
 *   IDLE --journal too big--> [store lock: sync + rotate journal G -> G+1, fork] --> RUNNING
 *   RUNNING --child exit 0--> delete files older than G+1 --> IDLE
 *   RUNNING --child failed--> keep every file, retry in 10 s --> IDLE
 * The child never returns into devdb code: it writes the snapshot (snapshot.c, malloc-free)
 * and _exit()s. PR_SET_PDEATHSIG kills it if devdb dies, so a crashed devdb does not leave a
 * child holding the port or the lock file.
 */
#define _GNU_SOURCE
#include "storage/durable.h"

#include "base/errors.h"
#include "storage/journal.h"
#include "log.h"
#include "storage/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RETRY_MS 10000

struct durable {
    char dir[PATH_MAX];
    durable_opts opts;
    store *st;
    int lockfd;

    pthread_mutex_t mu; /* guards jf.fd against concurrent fdatasync (see top) */
    journal_file jf;
    uint64_t written;      /* atomic */
    uint64_t synced;       /* atomic */
    uint64_t commit_syncs; /* atomic: fdatasyncs made for a waiting writer (sync_upto) */
    uint64_t jbytes;       /* journal bytes not covered by a snapshot (store lock; atomic read) */
    bool failing;          /* the last append failed (store lock): log once per burst */

    pthread_t th;
    bool th_started;
    pthread_mutex_t tmu;
    pthread_cond_t tcv;
    bool stop;

    pid_t child; /* running compaction, 0 if none (background thread only) */
    uint64_t child_gen;
    uint64_t child_jbytes; /* jbytes the new snapshot covers */
    int64_t child_t0;
    int64_t next_try_ms;
};

static _Thread_local uint64_t tls_lsn;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int durable_parse_sync(const char *s, durable_sync *out)
{
    if (strcmp(s, "always") == 0)
        *out = DURABLE_SYNC_ALWAYS;
    else if (strcmp(s, "everysec") == 0)
        *out = DURABLE_SYNC_EVERYSEC;
    else if (strcmp(s, "never") == 0)
        *out = DURABLE_SYNC_NEVER;
    else
        return -1;
    return 0;
}

static void path_of(const durable *d, char *out, size_t n, const char *kind, uint64_t gen,
                    const char *ext)
{
    snprintf(out, n, "%s/%s-%" PRIu64 ".%s", d->dir, kind, gen, ext);
}

/* ---- the store's journal hook ------------------------------------------------------------- */

static int journal_hook(void *ctx, const bson_t *rec, bson_error_t *err)
{
    durable *d = ctx;
    int e = 0;
    char msg[300];
    if (journal_append(&d->jf, JOURNAL_REC_OP, bson_get_data(rec), rec->len, &e, msg, sizeof msg) !=
        0) {
        if (!d->failing) {
            char q[400];
            log_error("journal_write_failed", "dbpath=%s err=%s", d->dir,
                      log_quote(q, sizeof q, msg));
            d->failing = true;
        }
        return mdb_error(err, MDB_OUT_OF_DISK_SPACE,
                         "devdb cannot write its journal in dbpath %.200s: %s; the write was "
                         "not applied (reads keep working)",
                         d->dir, msg);
    }
    if (d->failing) {
        log_info("journal_write_recovered", "dbpath=%s", d->dir);
        d->failing = false;
    }
    uint64_t n = JOURNAL_FRAME_LEN + rec->len;
    tls_lsn = __atomic_add_fetch(&d->written, n, __ATOMIC_RELEASE);
    __atomic_add_fetch(&d->jbytes, n, __ATOMIC_RELAXED);
    return 0;
}

/* fdatasync of everything appended so far, unless already done. Takes d->mu. */
static int sync_upto(durable *d, uint64_t lsn)
{
    int rc = 0;
    pthread_mutex_lock(&d->mu);
    if (lsn > __atomic_load_n(&d->synced, __ATOMIC_ACQUIRE)) {
        uint64_t target = __atomic_load_n(&d->written, __ATOMIC_ACQUIRE);
        __atomic_add_fetch(&d->commit_syncs, 1, __ATOMIC_RELAXED);
        if (journal_sync(&d->jf) == 0)
            __atomic_store_n(&d->synced, target, __ATOMIC_RELEASE);
        else
            rc = -1;
    }
    pthread_mutex_unlock(&d->mu);
    return rc;
}

int durable_commit(durable *d, bson_error_t *err)
{
    if (!d || d->opts.sync != DURABLE_SYNC_ALWAYS)
        return 0;
    return durable_commit_journal(d, err);
}

uint64_t durable_commit_syncs(const durable *d)
{
    return d ? __atomic_load_n(&d->commit_syncs, __ATOMIC_RELAXED) : 0;
}

int durable_commit_journal(durable *d, bson_error_t *err)
{
    if (!d)
        return 0;
    uint64_t lsn = tls_lsn;
    if (lsn <= __atomic_load_n(&d->synced, __ATOMIC_ACQUIRE))
        return 0;
    if (sync_upto(d, lsn) != 0) {
        int e = errno;
        log_error("journal_sync_failed", "dbpath=%s err=%s", d->dir, strerror(e));
        return mdb_error(err, MDB_OUT_OF_DISK_SPACE,
                         "devdb could not fsync its journal in dbpath %.200s: %s", d->dir,
                         strerror(e));
    }
    return 0;
}

/* ---- files -------------------------------------------------------------------------------- */

/* Parses "<kind>-<gen>.<ext>"; true with *gen on a match. */
static bool parse_name(const char *name, const char *kind, const char *ext, uint64_t *gen)
{
    size_t kl = strlen(kind);
    if (strncmp(name, kind, kl) != 0 || name[kl] != '-')
        return false;
    char *end;
    errno = 0;
    unsigned long long g = strtoull(name + kl + 1, &end, 10);
    if (errno || end == name + kl + 1 || *end != '.' || strcmp(end + 1, ext) != 0)
        return false;
    *gen = g;
    return true;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Deletes snapshots and journals with generation < gen (and .tmp files if `tmp`). */
static void remove_older(durable *d, uint64_t gen, bool tmp)
{
    DIR *dh = opendir(d->dir);
    if (!dh)
        return;
    struct dirent *de;
    while ((de = readdir(dh))) {
        uint64_t g;
        const char *n = de->d_name;
        size_t l = strlen(n);
        bool old = (parse_name(n, "snapshot", "snap", &g) || parse_name(n, "journal", "log", &g)) &&
                   g < gen;
        bool is_tmp = tmp && l > 4 && strcmp(n + l - 4, ".tmp") == 0;
        if (old || is_tmp) {
            char p[PATH_MAX + 256];
            snprintf(p, sizeof p, "%s/%s", d->dir, n);
            if (unlink(p) != 0)
                log_warn("unlink_failed", "path=%s err=%s", p, strerror(errno));
        }
    }
    closedir(dh);
    journal_sync_dir(d->dir);
}

static int lock_dir(durable *d, char *err, size_t errlen)
{
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/devdb.lock", d->dir);
    d->lockfd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (d->lockfd < 0) {
        snprintf(err, errlen, "cannot open lock file %s: %s (is the dbpath writable?)", p,
                 strerror(errno));
        return -1;
    }
    if (flock(d->lockfd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "?";
        ssize_t r = pread(d->lockfd, pid, sizeof pid - 1, 0);
        if (r > 0) {
            pid[r] = '\0';
            pid[strcspn(pid, "\n")] = '\0';
        }
        if (e == EWOULDBLOCK)
            snprintf(err, errlen,
                     "dbpath %s is in use by another minicrm-devdb (pid %s, lock file %s)", d->dir,
                     pid, p);
        else
            snprintf(err, errlen, "cannot lock %s: %s", p, strerror(e));
        close(d->lockfd);
        d->lockfd = -1;
        return -1;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(d->lockfd, 0) != 0 || pwrite(d->lockfd, pid, (size_t)n, 0) != n) {
        snprintf(err, errlen, "cannot write lock file %s: %s (is the dbpath writable?)", p,
                 strerror(errno));
        close(d->lockfd);
        d->lockfd = -1;
        return -1;
    }
    return 0;
}

/* Replays one journal file. `last`: a bad tail is cut off instead of being an error.
 * *valid gets the end of the valid prefix. */
static int replay_journal(durable *d, const char *path, bool last, uint64_t *valid, uint64_t *nrec,
                          char *err, size_t errlen)
{
    journal_reader r;
    if (journal_reader_open(&r, path, JOURNAL_MAGIC, err, errlen) != 0) {
        struct stat sb;
        if (last && stat(path, &sb) == 0 && sb.st_size < JOURNAL_HEADER_LEN) {
            /* Creation was cut short before any record could be acknowledged. */
            *valid = 0;
            return 0;
        }
        return -1;
    }
    int rc = -1;
    uint64_t nbad = 0;
    for (;;) {
        uint32_t type, len;
        const uint8_t *p;
        int n = journal_reader_next(&r, &type, &p, &len);
        if (n == 0)
            break;
        bson_t b;
        if (n < 0 || type != JOURNAL_REC_OP || !bson_init_static(&b, p, len)) {
            if (!last) {
                snprintf(err, errlen,
                         "%s: damaged record at offset %zu of %zu bytes, and it is not the "
                         "newest journal (refusing to start: move the dbpath aside or repair "
                         "it)",
                         path, r.off, r.len);
                goto out;
            }
            log_warn("journal_tail_dropped",
                     "file=%s offset=%zu dropped_bytes=%zu reason=torn_or_corrupt_last_record",
                     path, r.off, r.len - r.off);
            break;
        }
        bson_error_t be = {0};
        if (store_replay(d->st, &b, &be) != 0) {
            /* Only records whose operation also failed when it first ran can get here. */
            if (nbad++ < 5) {
                char q[600];
                log_warn("journal_record_skipped", "file=%s offset=%zu err=%s", path, r.off,
                         log_quote(q, sizeof q, be.message));
            }
        }
        (*nrec)++;
    }
    *valid = r.off;
    rc = 0;
out:
    journal_reader_close(&r);
    return rc;
}

static int recover(durable *d, char *err, size_t errlen)
{
    DIR *dh = opendir(d->dir);
    if (!dh) {
        snprintf(err, errlen, "cannot read dbpath %s: %s", d->dir, strerror(errno));
        return -1;
    }
    uint64_t snap = 0, *js = NULL;
    size_t nj = 0, capj = 0;
    int rc = -1;
    struct dirent *de;
    while ((de = readdir(dh))) {
        uint64_t g;
        if (parse_name(de->d_name, "snapshot", "snap", &g) && g > snap)
            snap = g;
        if (parse_name(de->d_name, "journal", "log", &g)) {
            if (nj == capj) {
                capj = capj ? capj * 2 : 8;
                uint64_t *n = realloc(js, capj * sizeof *js);
                if (!n) {
                    snprintf(err, errlen, "out of memory");
                    closedir(dh);
                    goto out;
                }
                js = n;
            }
            js[nj++] = g;
        }
    }
    closedir(dh);
    if (nj > 1)
        qsort(js, nj, sizeof *js, cmp_u64);
    remove_older(d, snap, true);

    int64_t t0 = now_ms();
    uint64_t ndocs = 0, nrec = 0;
    char p[PATH_MAX + 64];
    if (snap > 0) {
        uint64_t g;
        path_of(d, p, sizeof p, "snapshot", snap, "snap");
        if (snapshot_load(d->st, p, &g, &ndocs, err, errlen) != 0)
            goto out;
    }
    uint64_t cur = 0, valid = 0;
    for (size_t i = 0; i < nj; i++) {
        if (js[i] < snap)
            continue;
        path_of(d, p, sizeof p, "journal", js[i], "log");
        bool last = i + 1 == nj;
        if (replay_journal(d, p, last, &valid, &nrec, err, errlen) != 0)
            goto out;
        d->jbytes += valid > JOURNAL_HEADER_LEN ? valid - JOURNAL_HEADER_LEN : 0;
        cur = js[i];
    }
    if (cur > 0 && valid >= JOURNAL_HEADER_LEN) {
        path_of(d, p, sizeof p, "journal", cur, "log");
        if (journal_open_append(&d->jf, p, cur, valid, err, errlen) != 0)
            goto out;
    } else {
        uint64_t g = cur > 0 ? cur : snap > 0 ? snap : 1;
        path_of(d, p, sizeof p, "journal", g, "log");
        unlink(p); /* at most a header cut short at creation */
        if (journal_create(&d->jf, p, JOURNAL_MAGIC, g, err, errlen) != 0)
            goto out;
    }
    log_info("recovered",
             "dbpath=%s snapshot_gen=%" PRIu64 " snapshot_docs=%" PRIu64 " journal_records=%" PRIu64
             " journal_gen=%" PRIu64 " ms=%lld",
             d->dir, snap, ndocs, nrec, d->jf.gen, (long long)(now_ms() - t0));
    rc = 0;
out:
    free(js);
    return rc;
}

/* ---- compaction ----------------------------------------------------------------------------- */

/* Rotation is split so that the slow parts (creating and fsyncing the new file, flushing
 * most of the old one) happen before the store lock is taken; under the lock only the last
 * few records are flushed and the descriptors swapped. */

/* Creates journal gen+1 (not yet in use) and flushes the current journal. No lock needed:
 * only the background thread and durable_close rotate, never both at once. */
static int rotate_prepare(durable *d, journal_file *nf, char *err, size_t errlen)
{
    char p[PATH_MAX + 64];
    path_of(d, p, sizeof p, "journal", d->jf.gen + 1, "log");
    unlink(p); /* a leftover of a rotation that failed after creating it */
    if (journal_create(nf, p, JOURNAL_MAGIC, d->jf.gen + 1, err, errlen) != 0)
        return -1;
    sync_upto(d, __atomic_load_n(&d->written, __ATOMIC_ACQUIRE));
    return 0;
}

/* Makes the current journal durable and switches to nf. Store lock held. On failure nf is
 * closed and removed and the current journal stays in use. */
static int rotate_commit(durable *d, journal_file *nf, char *err, size_t errlen)
{
    int rc = -1;
    pthread_mutex_lock(&d->mu);
    if (journal_sync(&d->jf) != 0) {
        snprintf(err, errlen, "cannot fsync journal: %s", strerror(errno));
        char p[PATH_MAX + 64];
        path_of(d, p, sizeof p, "journal", nf->gen, "log");
        journal_close(nf);
        unlink(p);
        goto out;
    }
    __atomic_store_n(&d->synced, __atomic_load_n(&d->written, __ATOMIC_ACQUIRE), __ATOMIC_RELEASE);
    journal_close(&d->jf);
    d->jf = *nf;
    rc = 0;
out:
    pthread_mutex_unlock(&d->mu);
    return rc;
}

static void child_main(durable *d, pid_t parent, uint64_t gen)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(3);
    char err[512];
    if (snapshot_write(d->st, d->dir, gen, NULL, err, sizeof err) != 0) {
        /* No log.c here (it may hold a lock another thread had at fork time). */
        char line[700];
        int n = snprintf(line, sizeof line, "minicrm-devdb: compaction child: %s\n", err);
        ssize_t w = write(2, line, (size_t)n);
        (void)w;
        _exit(1);
    }
    _exit(0);
}

static void compaction_start(durable *d)
{
    char err[512];
    journal_file nf;
    int64_t t0 = now_ms();
    if (rotate_prepare(d, &nf, err, sizeof err) != 0) {
        log_error("compaction_failed", "dbpath=%s stage=rotate err=%s", d->dir, err);
        d->next_try_ms = now_ms() + RETRY_MS;
        return;
    }
    int64_t tl = now_ms();
    store_wrlock(d->st);
    if (rotate_commit(d, &nf, err, sizeof err) != 0) {
        store_unlock(d->st);
        log_error("compaction_failed", "dbpath=%s stage=rotate err=%s", d->dir, err);
        d->next_try_ms = now_ms() + RETRY_MS;
        return;
    }
    uint64_t covered = __atomic_load_n(&d->jbytes, __ATOMIC_RELAXED);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
        child_main(d, parent, d->jf.gen);
    int fork_errno = errno;
    store_unlock(d->st);
    int64_t held = now_ms() - tl;
    if (pid < 0) {
        log_error("compaction_failed", "dbpath=%s stage=fork err=%s", d->dir, strerror(fork_errno));
        d->next_try_ms = now_ms() + RETRY_MS;
        return;
    }
    d->child = pid;
    d->child_gen = d->jf.gen;
    d->child_jbytes = covered;
    d->child_t0 = t0;
    log_info("compaction_started",
             "gen=%" PRIu64 " journal_bytes=%" PRIu64 " data_bytes=%" PRIu64 " lock_ms=%lld",
             d->child_gen, covered, __atomic_load_n(&d->st->data_bytes, __ATOMIC_RELAXED),
             (long long)held);
}

/* The child exited with `status`: keep or discard the result. */
static void compaction_finish(durable *d, int status)
{
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        remove_older(d, d->child_gen, false);
        __atomic_sub_fetch(&d->jbytes, d->child_jbytes, __ATOMIC_RELAXED);
        char p[PATH_MAX + 64];
        struct stat sb;
        path_of(d, p, sizeof p, "snapshot", d->child_gen, "snap");
        log_info("compaction_done", "gen=%" PRIu64 " snapshot_bytes=%lld ms=%lld", d->child_gen,
                 stat(p, &sb) == 0 ? (long long)sb.st_size : -1LL,
                 (long long)(now_ms() - d->child_t0));
    } else {
        log_error("compaction_failed", "dbpath=%s stage=snapshot status=%d (journals kept)", d->dir,
                  status);
        d->next_try_ms = now_ms() + RETRY_MS;
    }
    d->child = 0;
}

static bool compaction_due(durable *d)
{
    uint64_t j = __atomic_load_n(&d->jbytes, __ATOMIC_RELAXED);
    uint64_t data = __atomic_load_n(&d->st->data_bytes, __ATOMIC_RELAXED);
    uint64_t lim = data * (uint64_t)d->opts.compact_multiple;
    if (lim < d->opts.compact_min_bytes)
        lim = d->opts.compact_min_bytes;
    return j > lim && now_ms() >= d->next_try_ms;
}

static void *bg_main(void *arg)
{
    durable *d = arg;
    int64_t last_sync = now_ms();
    pthread_mutex_lock(&d->tmu);
    while (!d->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&d->tcv, &d->tmu, &ts);
        if (d->stop)
            break;
        pthread_mutex_unlock(&d->tmu);
        if (d->opts.sync == DURABLE_SYNC_EVERYSEC && now_ms() - last_sync >= 1000) {
            last_sync = now_ms();
            uint64_t w = __atomic_load_n(&d->written, __ATOMIC_ACQUIRE);
            if (sync_upto(d, w) != 0)
                log_error("journal_sync_failed", "dbpath=%s err=%s", d->dir, strerror(errno));
        }
        if (d->child > 0) {
            int status;
            pid_t r = waitpid(d->child, &status, WNOHANG);
            if (r == d->child)
                compaction_finish(d, status);
        } else if (compaction_due(d)) {
            compaction_start(d);
        }
        pthread_mutex_lock(&d->tmu);
    }
    pthread_mutex_unlock(&d->tmu);
    if (d->child > 0) {
        int status;
        while (waitpid(d->child, &status, 0) < 0 && errno == EINTR)
            ;
        compaction_finish(d, status);
    }
    return NULL;
}

/* ---- open / close --------------------------------------------------------------------------- */

static void durable_free(durable *d)
{
    if (!d)
        return;
    journal_close(&d->jf);
    if (d->lockfd >= 0)
        close(d->lockfd); /* releases the flock */
    pthread_mutex_destroy(&d->mu);
    pthread_mutex_destroy(&d->tmu);
    pthread_cond_destroy(&d->tcv);
    free(d);
}

durable *durable_open(const durable_opts *opts, store *st, char *err, size_t errlen)
{
    if (!opts->dbpath || !*opts->dbpath || strlen(opts->dbpath) >= PATH_MAX - 64) {
        snprintf(err, errlen, "dbpath must be a directory path shorter than %d bytes",
                 PATH_MAX - 64);
        return NULL;
    }
    durable *d = calloc(1, sizeof *d);
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(d->dir, sizeof d->dir, "%s", opts->dbpath);
    d->opts = *opts;
    if (d->opts.compact_multiple < 1)
        d->opts.compact_multiple = 1;
    d->st = st;
    d->lockfd = -1;
    d->jf.fd = -1;
    pthread_mutex_init(&d->mu, NULL);
    pthread_mutex_init(&d->tmu, NULL);
    pthread_cond_init(&d->tcv, NULL);
    struct stat sb;
    if (mkdir(d->dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create dbpath %s: %s", d->dir, strerror(errno));
        goto fail;
    }
    if (stat(d->dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "dbpath %s is not a directory", d->dir);
        goto fail;
    }
    if (lock_dir(d, err, errlen) != 0)
        goto fail;
    if (recover(d, err, errlen) != 0)
        goto fail;
    __atomic_store_n(&d->written, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&d->synced, 0, __ATOMIC_RELAXED);
    store_set_journal(st, journal_hook, d);
    if (pthread_create(&d->th, NULL, bg_main, d) != 0) {
        store_set_journal(st, NULL, NULL);
        snprintf(err, errlen, "cannot start the journal thread");
        goto fail;
    }
    d->th_started = true;
    return d;
fail:
    durable_free(d);
    return NULL;
}

int durable_close(durable *d, bool final_snapshot, char *err, size_t errlen)
{
    if (!d)
        return 0;
    int rc = 0;
    if (d->th_started) {
        pthread_mutex_lock(&d->tmu);
        d->stop = true;
        pthread_cond_signal(&d->tcv);
        pthread_mutex_unlock(&d->tmu);
        pthread_join(d->th, NULL);
    }
    store_wrlock(d->st);
    store_set_journal(d->st, NULL, NULL);
    bool dirty = __atomic_load_n(&d->jbytes, __ATOMIC_RELAXED) > 0;
    if (final_snapshot && dirty && !d->jf.broken) {
        int64_t t0 = now_ms();
        uint64_t bytes = 0;
        journal_file nf;
        if (rotate_prepare(d, &nf, err, errlen) != 0 || rotate_commit(d, &nf, err, errlen) != 0 ||
            snapshot_write(d->st, d->dir, d->jf.gen, &bytes, err, errlen) != 0) {
            log_error("final_snapshot_failed", "dbpath=%s err=%s (the journal keeps the data)",
                      d->dir, err);
            rc = -1;
        } else {
            remove_older(d, d->jf.gen, false);
            log_info("final_snapshot", "gen=%" PRIu64 " bytes=%" PRIu64 " ms=%lld", d->jf.gen,
                     bytes, (long long)(now_ms() - t0));
        }
    } else if (journal_sync(&d->jf) != 0) {
        snprintf(err, errlen, "cannot fsync journal: %s", strerror(errno));
        rc = -1;
    }
    store_unlock(d->st);
    durable_free(d);
    return rc;
}
