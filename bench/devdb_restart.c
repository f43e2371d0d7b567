/*
 * devdb_restart: how long minicrm-devdb --dbpath takes to come back with N documents
 * (default 1,000,000), and what its files weigh (durability issue, point 3).
 *
 * Phases, each timed with a monotonic clock and printed (figures only, no assertions):
 *   1. start devdb on a fresh --dbpath (--sync everysec), insert N documents of ~100 bytes
 *      with insert_many in batches of 1000 through libmongoc (load rate printed);
 *   2. kill -9, restart: recovery replays the whole journal (time until the port accepts and
 *      until a count answers N);
 *   3. SIGTERM (clean stop writes a snapshot; stop time printed), restart: recovery loads the
 *      snapshot;
 *   4. with --compact-multiple 1: the compactions devdb ran during phase 1, with the time each
 *      held the store lock (from devdb's log, event compaction_started lock_ms=...).
 * Sizes of journal-*.log and snapshot-*.snap are printed after each phase.
 *
 * Usage: bench_devdb_restart [-n N] [--dir DIR] [--devdb PATH]
 * DIR (default: a new directory under $TMPDIR or /tmp) is removed at the end unless given.
 */
#include <mongoc/mongoc.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &l) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static bool port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static const char *g_devdb, *g_dir;
static char g_log[PATH_MAX + 32];
static int g_port;
static pid_t g_pid; /* the devdb running now */

/* Starts devdb and waits (up to 10 minutes) for the port; returns the pid and the seconds it
 * took in *secs. */
static pid_t start(double *secs)
{
    char port[16];
    snprintf(port, sizeof port, "%d", g_port);
    double t0 = now_s();
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = freopen(g_log, "a", stderr);
        (void)f;
        execl(g_devdb, g_devdb, "--port", port, "--dbpath", g_dir, "--sync", "everysec",
              "--compact-multiple", "1", (char *)NULL);
        _exit(127);
    }
    while (pid > 0 && !port_open(g_port)) {
        if (waitpid(pid, NULL, WNOHANG) == pid || now_s() - t0 > 600)
            return -1;
        usleep(2000);
    }
    *secs = now_s() - t0;
    g_pid = pid;
    return pid;
}

static void sizes(const char *when)
{
    DIR *d = opendir(g_dir);
    unsigned long long jb = 0, sb = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char p[PATH_MAX + 300];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", g_dir, de->d_name);
        if (stat(p, &st) != 0)
            continue;
        if (strncmp(de->d_name, "journal-", 8) == 0)
            jb += (unsigned long long)st.st_size;
        if (strncmp(de->d_name, "snapshot-", 9) == 0)
            sb += (unsigned long long)st.st_size;
    }
    if (d)
        closedir(d);
    printf("  files %-22s journal %8.1f MiB   snapshot %8.1f MiB\n", when, jb / 1048576.0,
           sb / 1048576.0);
}

static int64_t count(mongoc_client_t *cl)
{
    mongoc_collection_t *c = mongoc_client_get_collection(cl, "bench", "restart");
    bson_t q = BSON_INITIALIZER;
    bson_error_t err;
    int64_t n = mongoc_collection_count_documents(c, &q, NULL, NULL, NULL, &err);
    mongoc_collection_destroy(c);
    return n;
}

static void restart_phase(const char *name, mongoc_client_t **cl, char *uri)
{
    double up;
    double t0 = now_s();
    pid_t pid = start(&up);
    if (pid < 0) {
        fprintf(stderr, "devdb did not restart (log: %s)\n", g_log);
        exit(1);
    }
    mongoc_client_destroy(*cl);
    *cl = mongoc_client_new(uri);
    int64_t n = count(*cl);
    printf("restart after %-26s port open %6.2f s, first count (%lld docs) %6.2f s\n", name, up,
           (long long)n, now_s() - t0);
    (void)pid;
}

int main(int argc, char **argv)
{
    long n = 1000000;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc)
            n = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--devdb") && i + 1 < argc)
            g_devdb = argv[++i];
        else {
            fprintf(stderr, "usage: bench_devdb_restart [-n N] [--dir DIR] [--devdb PATH]\n");
            return 2;
        }
    }
    if (n < 1 || n > 100000000) {
        fprintf(stderr, "-n must be 1..100000000\n");
        return 2;
    }
    static char self[PATH_MAX], devdb[PATH_MAX + 32], tmpdir[PATH_MAX];
    if (!g_devdb) {
        ssize_t l = readlink("/proc/self/exe", self, sizeof self - 1);
        if (l <= 0)
            return 1;
        self[l] = '\0';
        char *slash = strrchr(self, '/');
        *slash = '\0';
        snprintf(devdb, sizeof devdb, "%s/minicrm-devdb", self);
        g_devdb = devdb;
    }
    if (!dir) {
        const char *t = getenv("TMPDIR");
        snprintf(tmpdir, sizeof tmpdir, "%s/devdb-restart-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            return 1;
        }
        dir = tmpdir;
    }
    g_dir = dir;
    snprintf(g_log, sizeof g_log, "%s.log", dir);
    g_port = free_port();
    mongoc_init();
    char uri[128];
    snprintf(uri, sizeof uri,
             "mongodb://127.0.0.1:%d/?serverSelectionTimeoutMS=600000"
             "&socketTimeoutMS=600000",
             g_port);

    double up;
    pid_t pid = start(&up);
    if (pid < 0) {
        fprintf(stderr, "devdb did not start (log: %s)\n", g_log);
        return 1;
    }
    mongoc_client_t *cl = mongoc_client_new(uri);
    mongoc_collection_t *c = mongoc_client_get_collection(cl, "bench", "restart");
    double t0 = now_s();
    const long B = 1000;
    bson_t *docs[1000];
    for (long i = 0; i < n; i += B) {
        long m = n - i < B ? n - i : B;
        for (long k = 0; k < m; k++) {
            char cust[32];
            snprintf(cust, sizeof cust, "customer-%ld", i + k);
            docs[k] =
                BCON_NEW("_id", BCON_INT64(i + k), "k", BCON_INT32((int32_t)(i + k)), "cust",
                         BCON_UTF8(cust), "status", BCON_UTF8("SENT"), "score", BCON_DOUBLE(1.5));
        }
        bson_error_t err;
        if (!mongoc_collection_insert_many(c, (const bson_t **)docs, (size_t)m, NULL, NULL, &err)) {
            fprintf(stderr, "insert: %s\n", err.message);
            return 1;
        }
        for (long k = 0; k < m; k++)
            bson_destroy(docs[k]);
    }
    double load = now_s() - t0;
    mongoc_collection_destroy(c);
    printf("devdb_restart: %ld documents, dbpath %s, --sync everysec\n", n, dir);
    printf("load          %6.2f s  (%.0f docs/s)\n", load, (double)n / load);
    sizes("after load");

    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    restart_phase("kill -9 (journal)", &cl, uri);
    sizes("after journal replay");

    t0 = now_s();
    kill(g_pid, SIGTERM);
    waitpid(g_pid, NULL, 0);
    printf("clean stop (final snapshot) %6.2f s\n", now_s() - t0);
    sizes("after clean stop");
    restart_phase("clean stop (snapshot)", &cl, uri);

    printf("compactions during the load (store lock held per compaction):\n");
    char cmd[PATH_MAX + 200];
    snprintf(cmd, sizeof cmd,
             "grep -o 'compaction_started.*' %s | sed 's/^/  /'; grep -o 'compaction_done.*' %s "
             "| sed 's/^/  /'",
             g_log, g_log);
    fflush(stdout);
    if (system(cmd) < 0)
        perror("system");
    mongoc_client_destroy(cl);
    kill(g_pid, SIGKILL);
    waitpid(g_pid, NULL, 0);
    if (dir == tmpdir) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", dir, g_log);
        if (system(cmd) < 0)
            perror("system");
    }
    mongoc_cleanup();
    return 0;
}
