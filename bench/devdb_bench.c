/*
 * devdb_bench: throughput and memory of minicrm-devdb through libmongoc (issue 3, point 10).
 *
 * Phases, each timed with a monotonic clock and printed (no assertions: figures only):
 *   1. insert N small documents (default 1,000,000) with insert_many in batches of B (1000);
 *   2. createIndexes {k: 1} on the loaded collection;
 *   3. U indexed point updates: update_one({k: random}, {$inc: {score: 1}});
 *   4. F indexed range finds: find({k: {$gte: x, $lt: x + R}}) iterated to the end (R docs);
 *   5. P point lookups by _id (find_one through a limit-1 find).
 * The server's resident memory (VmRSS of /proc/<pid>/status) is read before loading, after
 * loading and after indexing; bytes per document = (RSS after load - RSS before) / N.
 *
 * The server: --uri takes a running one (then --pid PID for the memory figures); otherwise
 * the bench starts the minicrm-devdb next to its own executable (or --devdb PATH) on a free
 * port, and stops it at the end. One mongoc_client_t, one thread: this measures the server's
 * per-request cost from a single synchronous client, the way a minicrm worker batch-writes.
 *
 * Documents look like a campaign log row: {_id: int64 i, k: int32 i, cust: "customer-<i>",
 * status: "SENT"|"FAILED"|"PENDING", score: double}. The collection is dropped first.
 */
#include <mongoc/mongoc.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct bench_opts {
    const char *uri;   /* NULL: start devdb */
    const char *devdb; /* devdb binary, NULL: next to this executable */
    pid_t pid;         /* server pid for RSS (0: unknown) */
    long n;            /* documents to insert */
    long batch;        /* documents per insert_many */
    long updates;      /* indexed point updates */
    long finds;        /* indexed range finds */
    long range;        /* documents per range find */
    long points;       /* _id point lookups */
} bench_opts;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* VmRSS of pid in KiB, or -1 when unknown. */
static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    if (pid <= 0)
        return -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            char *end;
            kib = strtol(line + 6, &end, 10);
            break;
        }
    }
    fclose(f);
    return kib;
}

static int parse_long(const char *s, long min, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min)
        return -1;
    *out = v;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_devdb [--uri URI [--pid PID]] [--devdb PATH] [-n DOCS] [--batch B]\n"
               "                   [--updates U] [--finds F] [--range R] [--points P]\n"
               "defaults: -n 1000000 --batch 1000 --updates 20000 --finds 5000 --range 100 "
               "--points 20000\n");
}

static int parse_args(int argc, char **argv, bench_opts *o)
{
    *o = (bench_opts){NULL, NULL, 0, 1000000, 1000, 20000, 5000, 100, 20000};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long *target = NULL;
        long min = 1;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--uri") == 0 && v) {
            o->uri = v;
        } else if (strcmp(a, "--devdb") == 0 && v) {
            o->devdb = v;
        } else if (strcmp(a, "--pid") == 0 && v) {
            long p;
            if (parse_long(v, 1, &p) != 0 || p > INT_MAX)
                goto bad;
            o->pid = (pid_t)p;
        } else if (strcmp(a, "-n") == 0 && v) {
            target = &o->n;
        } else if (strcmp(a, "--batch") == 0 && v) {
            target = &o->batch;
        } else if (strcmp(a, "--updates") == 0 && v) {
            target = &o->updates, min = 0;
        } else if (strcmp(a, "--finds") == 0 && v) {
            target = &o->finds, min = 0;
        } else if (strcmp(a, "--range") == 0 && v) {
            target = &o->range;
        } else if (strcmp(a, "--points") == 0 && v) {
            target = &o->points, min = 0;
        } else {
            goto bad;
        }
        if (target && parse_long(v, min, target) != 0)
            goto bad;
        i++;
        continue;
    bad:
        fprintf(stderr, "bench_devdb: bad argument '%s'%s%s\n", a, v ? " " : "", v ? v : "");
        usage(stderr);
        return -1;
    }
    if (o->n > INT32_MAX || o->range > INT32_MAX / 2) {
        fprintf(stderr, "bench_devdb: -n and --range must fit the int32 key k\n");
        return -1;
    }
    if (o->batch > 100000) {
        fprintf(stderr, "bench_devdb: --batch is capped at 100000\n");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ private devdb */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int port = -1;
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static int port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static int devdb_path(const bench_opts *o, char *buf, size_t n)
{
    if (o->devdb) {
        snprintf(buf, n, "%s", o->devdb);
        return 0;
    }
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0)
        return -1;
    self[len] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    snprintf(buf, n, "%s/minicrm-devdb", self);
    return 0;
}

/* Start devdb on a free port; fills uri and returns its pid, or -1. */
static pid_t start_devdb(const bench_opts *o, char *uri, size_t urilen)
{
    char bin[PATH_MAX + 32], portbuf[16];
    if (devdb_path(o, bin, sizeof bin) != 0 || access(bin, X_OK) != 0) {
        fprintf(stderr, "bench_devdb: minicrm-devdb not found (use --devdb PATH or --uri)\n");
        return -1;
    }
    for (int attempt = 0; attempt < 5; attempt++) {
        int port = free_port();
        if (port <= 0)
            continue;
        snprintf(portbuf, sizeof portbuf, "%d", port);
        pid_t pid = fork();
        if (pid < 0)
            return -1;
        if (pid == 0) {
            /* Keep the server's log lines out of the figures. */
            int devnull = open("/dev/null", O_WRONLY);
            if (devnull >= 0) {
                dup2(devnull, STDOUT_FILENO);
                dup2(devnull, STDERR_FILENO);
                close(devnull);
            }
            char *argv[] = {bin, "--port", portbuf, "--bind", "127.0.0.1", NULL};
            execv(bin, argv);
            _exit(127);
        }
        for (int i = 0; i < 1000; i++) { /* up to 10 s */
            if (port_open(port)) {
                snprintf(uri, urilen, "mongodb://127.0.0.1:%d/?appname=bench_devdb", port);
                return pid;
            }
            if (waitpid(pid, NULL, WNOHANG) == pid)
                break;
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    fprintf(stderr, "bench_devdb: minicrm-devdb did not start\n");
    return -1;
}

static void stop_devdb(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* ------------------------------------------------------------------ phases */

static const char *const STATUSES[] = {"SENT", "FAILED", "PENDING"};

/* xorshift64*: deterministic keys so runs are comparable. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static void print_rss(const char *when, long kib)
{
    if (kib < 0)
        printf("  devdb RSS %-22s unknown (give --pid with --uri)\n", when);
    else
        printf("  devdb RSS %-22s %8.1f MiB\n", when, (double)kib / 1024.0);
}

static int phase_insert(mongoc_collection_t *coll, const bench_opts *o)
{
    bson_t **docs = calloc((size_t)o->batch, sizeof *docs);
    bson_error_t err;
    int rc = -1;
    if (!docs)
        return -1;
    for (long i = 0; i < o->batch; i++)
        docs[i] = bson_new();
    double t0 = now_s();
    for (long base = 0; base < o->n; base += o->batch) {
        long cnt = o->n - base < o->batch ? o->n - base : o->batch;
        for (long j = 0; j < cnt; j++) {
            long i = base + j;
            char cust[32];
            snprintf(cust, sizeof cust, "customer-%ld", i);
            bson_reinit(docs[j]);
            BSON_APPEND_INT64(docs[j], "_id", i);
            BSON_APPEND_INT32(docs[j], "k", (int32_t)i);
            BSON_APPEND_UTF8(docs[j], "cust", cust);
            BSON_APPEND_UTF8(docs[j], "status", STATUSES[i % 3]);
            BSON_APPEND_DOUBLE(docs[j], "score", (double)(i % 1000) / 10.0);
        }
        if (!mongoc_collection_insert_many(coll, (const bson_t **)docs, (size_t)cnt, NULL, NULL,
                                           &err)) {
            fprintf(stderr, "bench_devdb: insert_many at %ld failed: %s\n", base, err.message);
            goto out;
        }
    }
    double dt = now_s() - t0;
    printf("insert     %ld docs in batches of %ld: %.2f s, %.0f docs/s\n", o->n, o->batch, dt,
           (double)o->n / dt);
    rc = 0;
out:
    for (long i = 0; i < o->batch; i++)
        bson_destroy(docs[i]);
    free(docs);
    return rc;
}

static int phase_index(mongoc_database_t *db, const char *collname)
{
    bson_error_t err;
    bson_t reply;
    bson_t *cmd = BCON_NEW("createIndexes", BCON_UTF8(collname), "indexes", "[", "{", "key", "{",
                           "k", BCON_INT32(1), "}", "name", BCON_UTF8("k_1"), "}", "]");
    double t0 = now_s();
    bool ok = mongoc_database_write_command_with_opts(db, cmd, NULL, &reply, &err);
    double dt = now_s() - t0;
    bson_destroy(cmd);
    bson_destroy(&reply);
    if (!ok) {
        fprintf(stderr, "bench_devdb: createIndexes failed: %s\n", err.message);
        return -1;
    }
    printf("index      createIndexes {k: 1}: %.2f s\n", dt);
    return 0;
}

static int phase_updates(mongoc_collection_t *coll, const bench_opts *o)
{
    bson_error_t err;
    bson_t *update = BCON_NEW("$inc", "{", "score", BCON_DOUBLE(1.0), "}");
    long matched = 0;
    int rc = -1;
    double t0 = now_s();
    for (long u = 0; u < o->updates; u++) {
        bson_t filter = BSON_INITIALIZER, reply;
        BSON_APPEND_INT32(&filter, "k", (int32_t)(rng_next() % (uint64_t)o->n));
        bool ok = mongoc_collection_update_one(coll, &filter, update, NULL, &reply, &err);
        bson_iter_t it;
        if (ok && bson_iter_init_find(&it, &reply, "matchedCount"))
            matched += bson_iter_as_int64(&it);
        bson_destroy(&filter);
        bson_destroy(&reply);
        if (!ok) {
            fprintf(stderr, "bench_devdb: update_one failed: %s\n", err.message);
            goto out;
        }
    }
    double dt = now_s() - t0;
    printf("update     %ld indexed point updates ($inc by k): %.2f s, %.0f updates/s "
           "(%ld matched)\n",
           o->updates, dt, (double)o->updates / dt, matched);
    rc = 0;
out:
    bson_destroy(update);
    return rc;
}

static int phase_finds(mongoc_collection_t *coll, const bench_opts *o)
{
    long docs = 0;
    double t0 = now_s();
    uint64_t span = o->n > o->range ? (uint64_t)(o->n - o->range) : 1;
    for (long f = 0; f < o->finds; f++) {
        int32_t lo = (int32_t)(rng_next() % span);
        bson_t *filter = BCON_NEW("k", "{", "$gte", BCON_INT32(lo), "$lt",
                                  BCON_INT32(lo + (int32_t)o->range), "}");
        bson_t *opts = BCON_NEW("batchSize", BCON_INT64(o->range + 1));
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
        const bson_t *doc;
        bson_error_t err;
        while (mongoc_cursor_next(cur, &doc))
            docs++;
        bool failed = mongoc_cursor_error(cur, &err);
        mongoc_cursor_destroy(cur);
        bson_destroy(filter);
        bson_destroy(opts);
        if (failed) {
            fprintf(stderr, "bench_devdb: range find failed: %s\n", err.message);
            return -1;
        }
    }
    double dt = now_s() - t0;
    printf("range find %ld indexed finds of %ld docs (k in [x, x+%ld)): %.2f s, %.0f finds/s, "
           "%.0f docs/s\n",
           o->finds, o->range, o->range, dt, (double)o->finds / dt, (double)docs / dt);
    return 0;
}

static int phase_points(mongoc_collection_t *coll, const bench_opts *o)
{
    long found = 0;
    double t0 = now_s();
    bson_t *opts = BCON_NEW("limit", BCON_INT64(1), "singleBatch", BCON_BOOL(true));
    for (long p = 0; p < o->points; p++) {
        bson_t filter = BSON_INITIALIZER;
        BSON_APPEND_INT64(&filter, "_id", (int64_t)(rng_next() % (uint64_t)o->n));
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, opts, NULL);
        const bson_t *doc;
        bson_error_t err;
        while (mongoc_cursor_next(cur, &doc))
            found++;
        bool failed = mongoc_cursor_error(cur, &err);
        mongoc_cursor_destroy(cur);
        bson_destroy(&filter);
        if (failed) {
            fprintf(stderr, "bench_devdb: point find failed: %s\n", err.message);
            bson_destroy(opts);
            return -1;
        }
    }
    bson_destroy(opts);
    double dt = now_s() - t0;
    printf("point find %ld _id lookups: %.2f s, %.0f finds/s (%ld found)\n", o->points, dt,
           (double)o->points / dt, found);
    return 0;
}

int main(int argc, char **argv)
{
    bench_opts o;
    char uri_buf[256];
    pid_t started = 0;
    int rc = 1;
    mongoc_client_t *client = NULL;
    mongoc_database_t *db = NULL;
    mongoc_collection_t *coll = NULL;
    bson_error_t err;

    if (parse_args(argc, argv, &o) != 0)
        return 2;
    const char *uri = o.uri;
    if (!uri) {
        started = start_devdb(&o, uri_buf, sizeof uri_buf);
        if (started < 0)
            return 1;
        uri = uri_buf;
        o.pid = started;
    }

    mongoc_init();
    client = mongoc_client_new(uri);
    if (!client) {
        fprintf(stderr, "bench_devdb: bad URI %s\n", uri);
        goto out;
    }
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    db = mongoc_client_get_database(client, "bench_devdb");
    coll = mongoc_database_get_collection(db, "logs");
    bson_t *ping = BCON_NEW("ping", BCON_INT32(1));
    bool ok = mongoc_client_command_simple(client, "admin", ping, NULL, NULL, &err);
    bson_destroy(ping);
    if (!ok) {
        fprintf(stderr, "bench_devdb: cannot reach %s: %s\n", uri, err.message);
        goto out;
    }
    mongoc_collection_drop(coll, NULL); /* absent is fine */

    printf("bench_devdb: %s, %ld docs, batch %ld%s\n", uri, o.n, o.batch,
           started ? " (private devdb)" : "");
    long rss0 = rss_kib(o.pid);
    print_rss("before load:", rss0);
    if (phase_insert(coll, &o) != 0)
        goto out;
    long rss1 = rss_kib(o.pid);
    print_rss("after load:", rss1);
    if (rss0 >= 0 && rss1 >= 0)
        printf("  memory per document (load):  %.0f bytes (RSS growth / docs)\n",
               (double)(rss1 - rss0) * 1024.0 / (double)o.n);
    if (phase_index(db, "logs") != 0)
        goto out;
    long rss2 = rss_kib(o.pid);
    print_rss("after index:", rss2);
    if (rss0 >= 0 && rss2 >= 0)
        printf("  memory per document (+index): %.0f bytes\n",
               (double)(rss2 - rss0) * 1024.0 / (double)o.n);
    if (o.updates && phase_updates(coll, &o) != 0)
        goto out;
    if (o.finds && phase_finds(coll, &o) != 0)
        goto out;
    if (o.points && phase_points(coll, &o) != 0)
        goto out;
    print_rss("at end:", rss_kib(o.pid));
    rc = 0;
out:
    if (coll && rc == 0 && started)
        mongoc_collection_drop(coll, NULL);
    mongoc_collection_destroy(coll);
    mongoc_database_destroy(db);
    mongoc_client_destroy(client);
    mongoc_cleanup();
    stop_devdb(started);
    return rc;
}
