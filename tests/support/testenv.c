/*
 * testenv: see testenv.h. Servers are started with fork+exec and a free port chosen by
 * binding to port 0; since another process could take the port between our close() and the
 * server's bind(), each start is retried on a fresh port a few times.
 */
#include "testenv.h"

#include "rconn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <mongoc/mongoc.h>
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

#ifndef MINICRM_BIN_DIR
#error "MINICRM_BIN_DIR must be defined by the build"
#endif

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

const char *testenv_bin(const char *name)
{
    static char path[4][512];
    static int slot;
    char *p = path[slot++ % 4];
    snprintf(p, 512, "%s/%s", MINICRM_BIN_DIR, name);
    return p;
}

int testenv_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

int testenv_wait_port(int port, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok)
            return 0;
        sleep_ms(10);
    }
    return -1;
}

pid_t testenv_spawn(char *const argv[], const char *logfile)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (logfile) {
            int fd = open(logfile, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
                close(fd);
            }
        }
        setpgid(0, 0);
        execvp(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

int testenv_kill_wait(pid_t pid, int sig, int timeout_ms)
{
    if (pid <= 0)
        return -1;
    kill(pid, sig);
    int status;
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0)
            return -1;
        sleep_ms(10);
    }
    kill(pid, SIGKILL);
    if (waitpid(pid, &status, 0) == pid)
        return status;
    return -1;
}

/* True while the child is still running. */
static int alive(pid_t pid)
{
    int status;
    return waitpid(pid, &status, WNOHANG) == 0;
}

static int start_redis(testenv *env)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        int port = testenv_free_port();
        char portbuf[16], log[300];
        snprintf(portbuf, sizeof portbuf, "%d", port);
        snprintf(log, sizeof log, "%s/redis.log", env->dir);
        char *argv[] = {"redis-server", "--port",      portbuf,  "--bind", "127.0.0.1",
                        "--dir",        env->dir,      "--save", "",       "--appendonly",
                        "yes",          "--daemonize", "no",     NULL};
        pid_t pid = testenv_spawn(argv, log);
        if (pid < 0)
            return -1;
        for (int i = 0; i < 500 && alive(pid); i++) {
            if (testenv_wait_port(port, 0) == 0) {
                env->redis_pid = pid;
                env->redis_port = port;
                snprintf(env->redis_url, sizeof env->redis_url, "redis://127.0.0.1:%d/0", port);
                return 0;
            }
            sleep_ms(10);
        }
        testenv_kill_wait(pid, SIGKILL, 1000);
    }
    fprintf(stderr, "testenv: redis-server did not start (see %s/redis.log)\n", env->dir);
    return -1;
}

static int start_devdb_on(testenv *env, int port)
{
    char portbuf[16], log[300], dbpath[300];
    snprintf(portbuf, sizeof portbuf, "%d", port);
    snprintf(log, sizeof log, "%s/devdb.log", env->dir);
    snprintf(dbpath, sizeof dbpath, "%s/devdb", env->dir);
    mkdir(dbpath, 0755);
    /* MINICRM_TEST_DEVDB_SYNC=always|everysec|never: a durable devdb (journal + snapshots in
     * the env directory) instead of the in-memory default, e.g. for bench_campaign --durable. */
    const char *sync = getenv("MINICRM_TEST_DEVDB_SYNC");
    char *argv[] = {
        (char *)testenv_bin("minicrm-devdb"), "--port", portbuf,  "--bind",     "127.0.0.1",
        sync && *sync ? "--dbpath" : NULL,    dbpath,   "--sync", (char *)sync, NULL};
    pid_t pid = testenv_spawn(argv, log);
    if (pid < 0)
        return -1;
    for (int i = 0; i < 1000 && alive(pid); i++) {
        if (testenv_wait_port(port, 0) == 0) {
            env->devdb_pid = pid;
            env->devdb_port = port;
            return 0;
        }
        sleep_ms(10);
    }
    testenv_kill_wait(pid, SIGKILL, 1000);
    return -1;
}

static int start_devdb(testenv *env)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        if (start_devdb_on(env, testenv_free_port()) == 0) {
            snprintf(env->mongo_uri, sizeof env->mongo_uri, "mongodb://127.0.0.1:%d/%s",
                     env->devdb_port, env->db_name);
            return 0;
        }
    }
    fprintf(stderr, "testenv: minicrm-devdb did not start (see %s/devdb.log)\n", env->dir);
    return -1;
}

int testenv_restart_devdb(testenv *env)
{
    if (env->devdb_pid > 0)
        testenv_kill_wait(env->devdb_pid, SIGTERM, 5000);
    env->devdb_pid = 0;
    for (int i = 0; i < 100; i++) {
        if (start_devdb_on(env, env->devdb_port) == 0)
            return 0;
        sleep_ms(50);
    }
    return -1;
}

/* The external URI with this env's own database name put in its path (options kept). The
 * string is rebuilt by hand: libmongoc's mongoc_uri_get_string() keeps the original text. */
static int use_external_mongo(testenv *env, const char *uri_str)
{
    bson_error_t err;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(uri_str, &err);
    if (!uri) {
        fprintf(stderr, "testenv: MINICRM_TEST_MONGO_URI: %s\n", err.message);
        return -1;
    }
    mongoc_uri_destroy(uri);
    const char *hosts = strstr(uri_str, "://") + 3;
    size_t base_len = strcspn(hosts, "/?") + (size_t)(hosts - uri_str);
    const char *opts = strchr(hosts, '?');
    snprintf(env->mongo_uri, sizeof env->mongo_uri, "%.*s/%s%s", (int)base_len, uri_str,
             env->db_name, opts ? opts : "");
    return 0;
}

int testenv_start(testenv *env, int what)
{
    static int counter;
    memset(env, 0, sizeof *env);
    const char *tmp = getenv("TMPDIR");
    snprintf(env->dir, sizeof env->dir, "%s/minicrm-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(env->dir)) {
        fprintf(stderr, "testenv: mkdtemp %s: %s\n", env->dir, strerror(errno));
        return -1;
    }
    /* The driver's shared-memory counters are not used by minicrm; with many processes
     * /dev/shm can run out and the driver then warns on every start. Off for the programs
     * the tests spawn (the environment is inherited). */
    setenv("MONGOC_DISABLE_SHM", "1", 0);
    int n = ++counter;
    snprintf(env->db_name, sizeof env->db_name, "minicrm_test_%d_%d", (int)getpid(), n);
    snprintf(env->prefix, sizeof env->prefix, "minicrm_test_%d_%d:", (int)getpid(), n);

    if (what & TESTENV_REDIS) {
        const char *ext = getenv("MINICRM_TEST_REDIS_URL");
        if (ext && *ext) {
            snprintf(env->redis_url, sizeof env->redis_url, "%s", ext);
        } else if (start_redis(env) != 0) {
            goto fail;
        }
    }
    if (what & TESTENV_DEVDB) {
        const char *ext = getenv("MINICRM_TEST_MONGO_URI");
        if (ext && *ext) {
            if (use_external_mongo(env, ext) != 0)
                goto fail;
        } else if (start_devdb(env) != 0) {
            goto fail;
        }
    }
    return 0;
fail:
    testenv_stop(env);
    return -1;
}

static void remove_tree(const char *dir)
{
    /* The directory holds only files the servers wrote; a shell rm keeps this short. */
    pid_t pid = fork();
    if (pid == 0) {
        execlp("rm", "rm", "-rf", "--", dir, (char *)NULL);
        _exit(127);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
}

void testenv_stop(testenv *env)
{
    if (!env)
        return;
    if (env->devdb_pid > 0)
        testenv_kill_wait(env->devdb_pid, SIGTERM, 5000);
    if (env->redis_pid > 0)
        testenv_kill_wait(env->redis_pid, SIGTERM, 5000);
    env->devdb_pid = env->redis_pid = 0;
    if (env->dir[0] && !getenv("MINICRM_TEST_KEEP"))
        remove_tree(env->dir);
    env->dir[0] = '\0';
}

int testenv_run_cmd(const char *cmd, char *out, size_t n)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t got = fread(out, 1, n - 1, p);
    out[got] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

long long testenv_redis_int(rconn *c, const char *fmt, const char *a, const char *b)
{
    redisReply *r = b ? rconn_command(c, fmt, a, b) : rconn_command(c, fmt, a);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r)
        freeReplyObject(r);
    return v;
}
