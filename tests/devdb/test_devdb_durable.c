/*
 * test_devdb_durable: minicrm-devdb --dbpath survives kill -9, torn journals, compaction,
 * a second process on the same directory and a full disk (devdb/storage/durable.h).
 *
 * Every scenario starts real devdb processes on private directories and ports and talks to
 * them through libmongoc. Writers keep a model of what the server acknowledged; after a
 * restart the data must equal the model exactly, except that the single operation in flight
 * when devdb died may be either fully applied or not at all. Documents carry a = -b, written
 * together by every insert and update, so a half-applied update would show.
 */
#include "test.h"
#include "testenv.h"

#include <bson/bson.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static testenv env;
static char tmpfs_dir[512]; /* mounted by the tmpfs test; unmounted in main in any case */
static pid_t started[64];   /* every devdb started, so that a failed CHECK leaves none behind */
static int nstarted;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Starts devdb on dir/port with extra flags (NULL-terminated, may be NULL) and, if `fault`,
 * MINICRM_DEVDB_FAULT=fault. Returns the pid once the port accepts, or -1 (process exited:
 * *status gets its wait status if status != NULL). */
static pid_t dd_start(const char *dir, int port, const char *const *extra, const char *fault,
                      int *status)
{
    char portbuf[16], log[512];
    snprintf(portbuf, sizeof portbuf, "%d", port);
    snprintf(log, sizeof log, "%s/devdb-%d.log", env.dir, port);
    char *argv[24] = {(char *)testenv_bin("minicrm-devdb"),
                      "--port",
                      portbuf,
                      "--bind",
                      "127.0.0.1",
                      "--dbpath",
                      (char *)dir};
    int n = 7;
    for (int i = 0; extra && extra[i] && n < 23; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    if (fault)
        setenv("MINICRM_DEVDB_FAULT", fault, 1);
    pid_t pid = testenv_spawn(argv, log);
    unsetenv("MINICRM_DEVDB_FAULT");
    if (pid < 0)
        return -1;
    if (nstarted < 64)
        started[nstarted++] = pid;
    for (int i = 0; i < 3000; i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            if (status)
                *status = st;
            return -1;
        }
        if (testenv_wait_port(port, 0) == 0)
            return pid;
        sleep_ms(5);
    }
    testenv_kill_wait(pid, SIGKILL, 1000);
    return -1;
}

static mongoc_client_t *dd_client(int port)
{
    char uri[256];
    snprintf(uri, sizeof uri,
             "mongodb://127.0.0.1:%d/?serverSelectionTimeoutMS=5000&connectTimeoutMS=2000"
             "&socketTimeoutMS=10000&retryWrites=false&appname=durable",
             port);
    return mongoc_client_new(uri);
}

static void make_dir(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", env.dir, name);
    mkdir(out, 0755);
}

static bool file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char line[2048];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* ---- a writer with a model of acknowledged state ------------------------------------------ */

#define MAXID 200000

enum { OP_NONE, OP_INSERT, OP_UPDATE, OP_DELETE };

typedef struct writer {
    int port;
    int64_t base; /* _id range [base, base + MAXID) */
    int stop;     /* atomic */
    int nops;     /* atomic: acknowledged operations */
    int next_id;
    int64_t *a; /* model: a of id, or INT64_MIN if absent */
    int pending_op, pending_id;
    int64_t pending_a;
    unsigned rng;
} writer;

static unsigned rnd(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (*s >> 8) & 0xffffff;
}

static void *writer_main(void *arg)
{
    writer *w = arg;
    mongoc_client_t *cl = dd_client(w->port);
    mongoc_collection_t *c = mongoc_client_get_collection(cl, "durable", "docs");
    int64_t v = w->base;
    char pad[200];
    memset(pad, 'p', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE) && w->next_id < MAXID) {
        unsigned r = rnd(&w->rng) % 4;
        int id = -1, op = OP_INSERT;
        if (r >= 2 && w->next_id > 0) {
            id = (int)(rnd(&w->rng) % (unsigned)w->next_id);
            if (w->a[id] != INT64_MIN)
                op = r == 2 ? OP_UPDATE : OP_DELETE;
        }
        if (op == OP_INSERT)
            id = w->next_id++;
        v++;
        w->pending_op = op;
        w->pending_id = id;
        w->pending_a = v;
        bson_t *q = BCON_NEW("_id", BCON_INT64(w->base + id));
        bson_error_t err;
        bool ok;
        if (op == OP_INSERT) {
            bson_t *d = BCON_NEW("_id", BCON_INT64(w->base + id), "a", BCON_INT64(v), "b",
                                 BCON_INT64(-v), "pad", BCON_UTF8(pad));
            ok = mongoc_collection_insert_one(c, d, NULL, NULL, &err);
            bson_destroy(d);
        } else if (op == OP_UPDATE) {
            bson_t *u = BCON_NEW("$set", "{", "a", BCON_INT64(v), "b", BCON_INT64(-v), "}");
            ok = mongoc_collection_update_one(c, q, u, NULL, NULL, &err);
            bson_destroy(u);
        } else {
            ok = mongoc_collection_delete_one(c, q, NULL, NULL, &err);
        }
        bson_destroy(q);
        if (!ok)
            break; /* devdb was killed: this operation stays pending */
        w->a[id] = op == OP_DELETE ? INT64_MIN : v;
        w->pending_op = OP_NONE;
        __atomic_add_fetch(&w->nops, 1, __ATOMIC_RELEASE);
    }
    mongoc_collection_destroy(c);
    mongoc_client_destroy(cl);
    return NULL;
}

/* Compares the server's documents of w's range with the model. Returns the mismatch count
 * (and prints the first few). */
static int verify_writer(mongoc_client_t *cl, const writer *w)
{
    mongoc_collection_t *c = mongoc_client_get_collection(cl, "durable", "docs");
    int64_t *seen = malloc(sizeof(int64_t) * MAXID);
    for (int i = 0; i < MAXID; i++)
        seen[i] = INT64_MIN;
    bson_t *f =
        BCON_NEW("_id", "{", "$gte", BCON_INT64(w->base), "$lt", BCON_INT64(w->base + MAXID), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, f, NULL, NULL);
    const bson_t *d;
    int bad = 0;
    while (mongoc_cursor_next(cur, &d)) {
        bson_iter_t it;
        int64_t id = -1, a = 0, b = 1;
        if (bson_iter_init_find(&it, d, "_id"))
            id = bson_iter_as_int64(&it) - w->base;
        if (bson_iter_init_find(&it, d, "a"))
            a = bson_iter_as_int64(&it);
        if (bson_iter_init_find(&it, d, "b"))
            b = bson_iter_as_int64(&it);
        if (id < 0 || id >= MAXID || a != -b) {
            if (bad++ < 5)
                fprintf(stderr, "  torn document id=%lld a=%lld b=%lld\n", (long long)id,
                        (long long)a, (long long)b);
            continue;
        }
        seen[id] = a;
    }
    bson_error_t err;
    if (mongoc_cursor_error(cur, &err)) {
        fprintf(stderr, "  cursor: %s\n", err.message);
        bad++;
    }
    for (int id = 0; id < MAXID; id++) {
        int64_t want = id < w->next_id ? w->a[id] : INT64_MIN;
        if (seen[id] == want)
            continue;
        if (w->pending_op != OP_NONE && id == w->pending_id) {
            int64_t alt = w->pending_op == OP_DELETE ? INT64_MIN : w->pending_a;
            if (seen[id] == alt)
                continue;
        }
        if (bad++ < 5)
            fprintf(stderr, "  id %d: server has %lld, acknowledged state %lld\n", id,
                    (long long)seen[id], (long long)want);
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(f);
    free(seen);
    mongoc_collection_destroy(c);
    return bad;
}

/* Runs two writers against a devdb with `flags`, kill -9s devdb once both have done
 * `min_ops` acknowledged operations, restarts it and verifies. */
static void kill9_scenario(const char *name, const char *const *flags, int min_ops)
{
    char dir[512];
    make_dir(dir, sizeof dir, name);
    int port = testenv_free_port();
    pid_t pid = dd_start(dir, port, flags, NULL, NULL);
    CHECK_MSG(pid > 0, "devdb did not start");
    writer w[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].port = port;
        w[i].base = (int64_t)i * 1000000;
        w[i].rng = 7u + (unsigned)i;
        w[i].a = malloc(sizeof(int64_t) * MAXID);
        for (int k = 0; k < MAXID; k++)
            w[i].a[k] = INT64_MIN;
        pthread_create(&th[i], NULL, writer_main, &w[i]);
    }
    for (int t = 0; t < 2000; t++) {
        if (__atomic_load_n(&w[0].nops, __ATOMIC_ACQUIRE) >= min_ops &&
            __atomic_load_n(&w[1].nops, __ATOMIC_ACQUIRE) >= min_ops)
            break;
        sleep_ms(5);
    }
    kill(pid, SIGKILL); /* while both writers are mid-loop */
    waitpid(pid, NULL, 0);
    for (int i = 0; i < 2; i++) {
        __atomic_store_n(&w[i].stop, 1, __ATOMIC_RELEASE);
        pthread_join(th[i], NULL);
    }
    fprintf(stderr, "  %s: %d + %d acknowledged operations before kill -9\n", name, w[0].nops,
            w[1].nops);
    CHECK(w[0].nops >= min_ops && w[1].nops >= min_ops);
    pid = dd_start(dir, port, flags, NULL, NULL);
    CHECK_MSG(pid > 0, "devdb did not restart on its dbpath");
    mongoc_client_t *cl = dd_client(port);
    for (int i = 0; i < 2; i++)
        CHECK_INT_EQ(verify_writer(cl, &w[i]), 0);
    mongoc_client_destroy(cl);
    testenv_kill_wait(pid, SIGTERM, 10000);
    for (int i = 0; i < 2; i++)
        free(w[i].a);
}

TEST(kill9_sync_always_keeps_every_acknowledged_write)
{
    const char *flags[] = {"--sync", "always", NULL};
    kill9_scenario("always", flags, 300);
}

TEST(kill9_sync_everysec_keeps_acknowledged_writes)
{
    /* kill -9 keeps the page cache, so nothing may be lost here; the one-second bound of
     * everysec is about power loss, which the fsync thread covers. */
    const char *flags[] = {"--sync", "everysec", NULL};
    kill9_scenario("everysec", flags, 1000);
}

/* ---- torn and corrupt journal tails ------------------------------------------------------- */

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return p;
}

static int write_file(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(p, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static int64_t count_docs(mongoc_client_t *cl, const char *coll, int64_t *max_seq)
{
    mongoc_collection_t *c = mongoc_client_get_collection(cl, "durable", coll);
    bson_t q = BSON_INITIALIZER;
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, &q, NULL, NULL);
    const bson_t *d;
    int64_t n = 0, mx = -1;
    while (mongoc_cursor_next(cur, &d)) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, d, "_id") && bson_iter_as_int64(&it) > mx)
            mx = bson_iter_as_int64(&it);
        n++;
    }
    bson_error_t err;
    if (mongoc_cursor_error(cur, &err))
        n = -1;
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(c);
    if (max_seq)
        *max_seq = mx;
    return n;
}

TEST(torn_or_corrupt_last_record_is_dropped_cleanly)
{
    char dir[512], jpath[600];
    make_dir(dir, sizeof dir, "torn-src");
    int port = testenv_free_port();
    const char *flags[] = {"--sync", "always", NULL};
    pid_t pid = dd_start(dir, port, flags, NULL, NULL);
    CHECK(pid > 0);
    mongoc_client_t *cl = dd_client(port);
    mongoc_collection_t *c = mongoc_client_get_collection(cl, "durable", "seq");
    const int N = 40;
    for (int i = 0; i < N; i++) {
        bson_t *d = BCON_NEW("_id", BCON_INT64(i), "s", BCON_UTF8("some payload text"));
        CHECK(mongoc_collection_insert_one(c, d, NULL, NULL, NULL));
        bson_destroy(d);
    }
    mongoc_collection_destroy(c);
    mongoc_client_destroy(cl);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    snprintf(jpath, sizeof jpath, "%s/journal-1.log", dir);
    size_t len;
    uint8_t *j = read_file(jpath, &len);
    CHECK(j != NULL);
    /* Record boundaries: header 16 bytes, frames of 12 + length. Record 0 creates the
     * collection, record k >= 1 inserts _id k-1. */
    size_t ends[64], nrec = 0;
    for (size_t off = 16; off + 12 <= len && nrec < 64;) {
        off += 12 + rd32(j + off);
        ends[nrec++] = off;
    }
    CHECK_INT_EQ(nrec, N + 1);
    CHECK_INT_EQ(ends[nrec - 1], len);
    struct {
        const char *what;
        size_t cut;     /* truncate to this length */
        long flip;      /* or flip this byte (-1: none) */
        int64_t expect; /* documents after restart */
    } cases[] = {
        {"cut inside the last payload", ends[N] - 5, -1, N - 1},
        {"cut inside the last frame header", ends[N - 1] + 7, -1, N - 1},
        {"cut at a record boundary", ends[N - 3], -1, N - 3},
        {"checksum mismatch in the last record", len, (long)(ends[N] - 3), N - 1},
        {"length field of the last record garbled", len, (long)(ends[N - 1] + 3), N - 1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char d2[512], name[32], j2[600];
        snprintf(name, sizeof name, "torn-%zu", k);
        make_dir(d2, sizeof d2, name);
        snprintf(j2, sizeof j2, "%s/journal-1.log", d2);
        uint8_t *copy = malloc(len);
        memcpy(copy, j, len);
        if (cases[k].flip >= 0)
            copy[cases[k].flip] ^= 0x5a;
        CHECK(write_file(j2, copy, cases[k].cut) == 0);
        free(copy);
        pid = dd_start(d2, port, NULL, NULL, NULL);
        CHECK_MSG(pid > 0, "%s: devdb did not start", cases[k].what);
        cl = dd_client(port);
        int64_t mx;
        int64_t n = count_docs(cl, "seq", &mx);
        CHECK_MSG(n == cases[k].expect && mx == n - 1,
                  "%s: %lld documents (max _id %lld), want %lld", cases[k].what, (long long)n,
                  (long long)mx, (long long)cases[k].expect);
        /* Appends continue on a clean boundary: a new write survives another crash. */
        c = mongoc_client_get_collection(cl, "durable", "seq");
        bson_t *d = BCON_NEW("_id", BCON_INT64(1000));
        CHECK(mongoc_collection_insert_one(c, d, NULL, NULL, NULL));
        bson_destroy(d);
        mongoc_collection_destroy(c);
        mongoc_client_destroy(cl);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        pid = dd_start(d2, port, NULL, NULL, NULL);
        CHECK(pid > 0);
        cl = dd_client(port);
        CHECK_INT_EQ(count_docs(cl, "seq", NULL), cases[k].expect + 1);
        mongoc_client_destroy(cl);
        testenv_kill_wait(pid, SIGTERM, 10000);
        char logp[600];
        snprintf(logp, sizeof logp, "%s/devdb-%d.log", env.dir, port);
        if (cases[k].cut != ends[N - 3])
            CHECK(file_contains(logp, "journal_tail_dropped"));
    }
    free(j);
}

/* ---- compaction ----------------------------------------------------------------------------- */

static int count_files(const char *dir, const char *prefix)
{
    char cmdbuf[700];
    snprintf(cmdbuf, sizeof cmdbuf, "ls %s 2>/dev/null | grep -c '^%s'", dir, prefix);
    FILE *p = popen(cmdbuf, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1)
            n = -1;
        pclose(p);
    }
    return n;
}

/* Files in dir that anyone but the owner may read or write (names into bad); -1 if dir
 * cannot be read. Journals, snapshots and the lock file hold the data: owner only. */
static int loose_files(const char *dir, char *bad, size_t n)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int loose = 0;
    size_t used = 0;
    bad[0] = '\0';
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char p[1024];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (e->d_name[0] == '.' || stat(p, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if ((sb.st_mode & 077) != 0) {
            loose++;
            int w =
                snprintf(bad + used, n - used, "%s %o; ", e->d_name, (unsigned)(sb.st_mode & 0777));
            used = w > 0 && used + (size_t)w < n ? used + (size_t)w : used;
        }
    }
    closedir(d);
    return loose;
}

TEST(dbpath_and_its_files_are_private)
{
    char dir[512], bad[512];
    snprintf(dir, sizeof dir, "%s/private-new", env.dir); /* devdb creates it */
    int port = testenv_free_port();
    pid_t pid = dd_start(dir, port, NULL, NULL, NULL);
    CHECK(pid > 0);
    mongoc_client_t *cl = dd_client(port);
    mongoc_collection_t *c = mongoc_client_get_collection(cl, "db", "c");
    bson_t *doc = BCON_NEW("_id", BCON_INT32(1), "secret", BCON_UTF8("customer data"));
    bson_error_t err;
    CHECK_MSG(mongoc_collection_insert_one(c, doc, NULL, NULL, &err), "%s", err.message);
    bson_destroy(doc);
    mongoc_collection_destroy(c);
    mongoc_client_destroy(cl);
    testenv_kill_wait(pid, SIGTERM, 10000); /* a clean stop writes a snapshot too */
    struct stat sb;
    CHECK(stat(dir, &sb) == 0);
    CHECK_MSG((sb.st_mode & 0777) == 0700, "dbpath mode %o", (unsigned)(sb.st_mode & 0777));
    CHECK(count_files(dir, "snapshot-") + count_files(dir, "journal-") >= 1);
    CHECK_MSG(loose_files(dir, bad, sizeof bad) == 0, "readable by others: %s", bad);
}

TEST(compaction_under_load_then_restart)
{
    char dir[512], logp[600];
    make_dir(dir, sizeof dir, "compact");
    int port = testenv_free_port();
    snprintf(logp, sizeof logp, "%s/devdb-%d.log", env.dir, port);
    const char *flags[] = {"--sync", "everysec", "--compact-min-kb", "256", "--compact-multiple",
                           "2",      NULL};
    pid_t pid = dd_start(dir, port, flags, NULL, NULL);
    CHECK(pid > 0);
    writer w[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].port = port;
        w[i].base = (int64_t)i * 1000000;
        w[i].rng = 99u + (unsigned)i;
        w[i].a = malloc(sizeof(int64_t) * MAXID);
        for (int k = 0; k < MAXID; k++)
            w[i].a[k] = INT64_MIN;
        pthread_create(&th[i], NULL, writer_main, &w[i]);
    }
    /* Wait for at least two finished compactions while the writers keep going. */
    int done = 0;
    for (int t = 0; t < 3000 && done < 2; t++) {
        sleep_ms(10);
        char cmdbuf[700];
        snprintf(cmdbuf, sizeof cmdbuf, "grep -c compaction_done %s", logp);
        FILE *p = popen(cmdbuf, "r");
        if (p) {
            if (fscanf(p, "%d", &done) != 1)
                done = 0;
            pclose(p);
        }
    }
    CHECK_MSG(done >= 2, "only %d compactions finished", done);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    for (int i = 0; i < 2; i++) {
        __atomic_store_n(&w[i].stop, 1, __ATOMIC_RELEASE);
        pthread_join(th[i], NULL);
    }
    fprintf(stderr, "  compaction: %d + %d operations, %d compactions\n", w[0].nops, w[1].nops,
            done);
    CHECK(count_files(dir, "snapshot-") >= 1);
    CHECK(count_files(dir, "journal-") <= 2);
    char bad[512];
    CHECK_MSG(loose_files(dir, bad, sizeof bad) == 0, "readable by others: %s", bad);
    pid = dd_start(dir, port, flags, NULL, NULL);
    CHECK(pid > 0);
    mongoc_client_t *cl = dd_client(port);
    for (int i = 0; i < 2; i++)
        CHECK_INT_EQ(verify_writer(cl, &w[i]), 0);
    mongoc_client_destroy(cl);
    /* A clean stop leaves one snapshot and an empty journal, and the data again. */
    testenv_kill_wait(pid, SIGTERM, 10000);
    CHECK_INT_EQ(count_files(dir, "snapshot-"), 1);
    pid = dd_start(dir, port, flags, NULL, NULL);
    CHECK(pid > 0);
    cl = dd_client(port);
    for (int i = 0; i < 2; i++)
        CHECK_INT_EQ(verify_writer(cl, &w[i]), 0);
    mongoc_client_destroy(cl);
    testenv_kill_wait(pid, SIGTERM, 10000);
    for (int i = 0; i < 2; i++)
        free(w[i].a);
}

/* ---- lock file, bad dbpath, full disk ---------------------------------------------------------
 */

TEST(second_devdb_on_same_dbpath_is_refused)
{
    char dir[512], logp[600];
    make_dir(dir, sizeof dir, "locked");
    int port = testenv_free_port(), port2 = testenv_free_port();
    pid_t pid = dd_start(dir, port, NULL, NULL, NULL);
    CHECK(pid > 0);
    int st = 0;
    pid_t pid2 = dd_start(dir, port2, NULL, NULL, &st);
    if (pid2 > 0)
        testenv_kill_wait(pid2, SIGKILL, 1000);
    CHECK_MSG(pid2 < 0, "a second devdb started on a locked dbpath");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    snprintf(logp, sizeof logp, "%s/devdb-%d.log", env.dir, port2);
    CHECK(file_contains(logp, "is in use by another minicrm-devdb"));
    testenv_kill_wait(pid, SIGTERM, 10000);
    /* Once the first has stopped, the directory is free again. */
    pid = dd_start(dir, port, NULL, NULL, NULL);
    CHECK(pid > 0);
    testenv_kill_wait(pid, SIGTERM, 10000);
}

TEST(unusable_dbpath_fails_at_start_with_a_message)
{
    char file[512], logp[600], bad[600];
    snprintf(file, sizeof file, "%s/plainfile", env.dir);
    CHECK(write_file(file, (const uint8_t *)"x", 1) == 0);
    int port = testenv_free_port();
    snprintf(logp, sizeof logp, "%s/devdb-%d.log", env.dir, port);
    int st = 0;
    CHECK(dd_start(file, port, NULL, NULL, &st) < 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    CHECK(file_contains(logp, "is not a directory"));
    snprintf(bad, sizeof bad, "%s/plainfile/sub", env.dir);
    CHECK(dd_start(bad, port, NULL, NULL, &st) < 0);
    CHECK(file_contains(logp, "cannot create dbpath"));
}

/* Inserts 1 KiB documents until one fails; returns how many were acknowledged and leaves
 * the failing error in *err. */
static int fill_until_error(mongoc_client_t *cl, int max, bson_error_t *err, bson_t *reply)
{
    mongoc_collection_t *c = mongoc_client_get_collection(cl, "durable", "full");
    char pad[1024];
    memset(pad, 'f', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    int n = 0;
    for (; n < max; n++) {
        bson_t *d = BCON_NEW("_id", BCON_INT64(n), "pad", BCON_UTF8(pad));
        bson_destroy(reply);
        bool ok = mongoc_collection_insert_one(c, d, NULL, reply, err);
        bson_destroy(d);
        if (!ok)
            break;
    }
    mongoc_collection_destroy(c);
    return n;
}

static void check_full_disk_behaviour(const char *dir, int port, pid_t pid, int max)
{
    mongoc_client_t *cl = dd_client(port);
    bson_error_t err = {0};
    bson_t reply = BSON_INITIALIZER;
    int acked = fill_until_error(cl, max, &err, &reply);
    CHECK_MSG(acked > 0 && acked < max, "acknowledged %d of %d writes", acked, max);
    fprintf(stderr, "  full disk after %d writes: %s\n", acked, err.message);
    CHECK_INT_EQ(err.code, 14031);
    CHECK_STR_CONTAINS(err.message, "cannot write its journal");
    CHECK_STR_CONTAINS(err.message, dir);
    bson_destroy(&reply);
    /* Reads keep working and see exactly the acknowledged writes; writes keep failing. */
    CHECK_INT_EQ(count_docs(cl, "full", NULL), acked);
    mongoc_collection_t *c = mongoc_client_get_collection(cl, "durable", "full");
    bson_t *q = BCON_NEW("_id", BCON_INT64(0));
    bson_t *u = BCON_NEW("$set", "{", "x", BCON_INT32(1), "}");
    CHECK(!mongoc_collection_update_one(c, q, u, NULL, NULL, &err));
    CHECK_INT_EQ(err.code, 14031);
    bson_destroy(q);
    bson_destroy(u);
    mongoc_collection_destroy(c);
    char logp[600];
    snprintf(logp, sizeof logp, "%s/devdb-%d.log", env.dir, port);
    CHECK(file_contains(logp, "journal_write_failed"));
    mongoc_client_destroy(cl);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    /* No failed write was half-applied: after a restart exactly the acknowledged ones. */
    pid = dd_start(dir, port, NULL, NULL, NULL);
    CHECK(pid > 0);
    cl = dd_client(port);
    int64_t mx;
    CHECK_INT_EQ(count_docs(cl, "full", &mx), acked);
    CHECK_INT_EQ(mx, acked - 1);
    mongoc_client_destroy(cl);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

TEST(full_disk_fails_writes_clearly_and_keeps_serving_reads_fault_hook)
{
    char dir[512];
    make_dir(dir, sizeof dir, "enospc");
    int port = testenv_free_port();
    const char *flags[] = {"--sync", "always", NULL};
    pid_t pid = dd_start(dir, port, flags, "enospc_after_bytes=60000", NULL);
    CHECK(pid > 0);
    check_full_disk_behaviour(dir, port, pid, 1000);
}

TEST(full_disk_on_a_real_tiny_tmpfs)
{
    char dir[512];
    make_dir(dir, sizeof dir, "tmpfs");
    if (mount("tmpfs", dir, "tmpfs", 0, "size=256k") == 0) {
        snprintf(tmpfs_dir, sizeof tmpfs_dir, "%s", dir);
    } else {
        TEST_SKIP("cannot mount a tmpfs here (%s); the fault hook test covers ENOSPC",
                  strerror(errno));
    }
    int port = testenv_free_port();
    const char *flags[] = {"--sync", "always", "--compact-min-kb", "100000", NULL};
    pid_t pid = dd_start(dir, port, flags, NULL, NULL);
    CHECK(pid > 0);
    if (pid > 0)
        check_full_disk_behaviour(dir, port, pid, 1000);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        TEST_ENTRY(kill9_sync_always_keeps_every_acknowledged_write),
        TEST_ENTRY(kill9_sync_everysec_keeps_acknowledged_writes),
        TEST_ENTRY(torn_or_corrupt_last_record_is_dropped_cleanly),
        TEST_ENTRY(compaction_under_load_then_restart),
        TEST_ENTRY(dbpath_and_its_files_are_private),
        TEST_ENTRY(second_devdb_on_same_dbpath_is_refused),
        TEST_ENTRY(unusable_dbpath_fails_at_start_with_a_message),
        TEST_ENTRY(full_disk_fails_writes_clearly_and_keeps_serving_reads_fault_hook),
        TEST_ENTRY(full_disk_on_a_real_tiny_tmpfs),
    };
    if (getenv("MINICRM_TEST_MONGO_URI") && *getenv("MINICRM_TEST_MONGO_URI"))
        return test_skip_program("test_devdb_durable tests minicrm-devdb itself, not an external "
                                 "MongoDB (MINICRM_TEST_MONGO_URI)");
    if (testenv_start(&env, 0) != 0)
        return 1;
    mongoc_init();
    int rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    for (int i = 0; i < nstarted; i++) {
        if (kill(started[i], 0) == 0 && waitpid(started[i], NULL, WNOHANG) == 0)
            testenv_kill_wait(started[i], SIGKILL, 2000);
    }
    if (tmpfs_dir[0])
        umount2(tmpfs_dir, MNT_DETACH);
    mongoc_cleanup();
    testenv_stop(&env);
    return rc;
}
