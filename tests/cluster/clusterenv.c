/*
 * clusterenv: see clusterenv.h. Every node is a daemonized redis-server started by
 * scripts/cluster.sh; the pid files in DIR/PORT/redis.pid are how the tests kill one and how
 * the stop finds them all.
 */
#define _GNU_SOURCE /* memmem */
#include "clusterenv.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MINICRM_SOURCE_DIR
#error "MINICRM_SOURCE_DIR must be defined by the build"
#endif

static bool port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)port)};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static int run_argv(char *const argv[], char *out, size_t n)
{
    int pfd[2];
    if (pipe(pfd) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(pfd[1]);
    char buf[4096];
    size_t got = 0;
    ssize_t r;
    while ((r = read(pfd[0], buf + got, sizeof buf - 1 - got)) > 0 && got < sizeof buf - 1)
        got += (size_t)r;
    while (read(pfd[0], buf, 1) > 0 && got == sizeof buf - 1) {
    }
    close(pfd[0]);
    buf[got] = '\0';
    int st;
    waitpid(pid, &st, 0);
    if (out && n)
        snprintf(out, n, "%s", buf);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

int clusterenv_start(clusterenv *e)
{
    return clusterenv_start_replicas(e, 1);
}

int clusterenv_start_replicas(clusterenv *e, int replicas)
{
    memset(e, 0, sizeof *e);
    e->nodes = replicas > 0 ? 6 : 3;
    snprintf(e->dir, sizeof e->dir, "/tmp/minicrm-cluster-XXXXXX");
    if (!mkdtemp(e->dir)) {
        perror("mkdtemp");
        return -1;
    }
    srand((unsigned)(time(NULL) ^ getpid()));
    int n = 0;
    for (int tries = 0; n < e->nodes && tries < 10000; tries++) {
        int p = 20000 + rand() % 25000;
        bool dup = false;
        for (int i = 0; i < n; i++)
            dup |= e->ports[i] == p || e->ports[i] + 10000 == p || e->ports[i] == p + 10000;
        if (!dup && port_free(p) && port_free(p + 10000))
            e->ports[n++] = p;
    }
    if (n < e->nodes) {
        fprintf(stderr, "clusterenv: no free ports\n");
        return -1;
    }
    char script[600], ps[6][16];
    snprintf(script, sizeof script, "%s/scripts/cluster.sh", MINICRM_SOURCE_DIR);
    for (int i = 0; i < 6; i++)
        snprintf(ps[i], sizeof ps[i], "%d", e->ports[i]);
    char *argv[] = {"bash", script, "start", e->dir, ps[0], ps[1],
                    ps[2],  ps[3],  ps[4],   ps[5],  NULL};
    if (e->nodes == 3) {
        argv[7] = NULL;
        setenv("MINICRM_CLUSTER_REPLICAS", "0", 1);
    }
    e->started = true;
    int rc = run_argv(argv, e->url, sizeof e->url);
    unsetenv("MINICRM_CLUSTER_REPLICAS");
    e->url[strcspn(e->url, "\r\n")] = '\0';
    if (rc != 0 || strncmp(e->url, "redis+cluster://", 16)) {
        fprintf(stderr, "clusterenv: scripts/cluster.sh start failed (%s)\n", e->url);
        clusterenv_stop(e);
        return -1;
    }
    return 0;
}

void clusterenv_stop(clusterenv *e)
{
    if (!e || !e->dir[0])
        return;
    char script[600];
    snprintf(script, sizeof script, "%s/scripts/cluster.sh", MINICRM_SOURCE_DIR);
    if (e->started) {
        char *argv[] = {"bash", script, "stop", e->dir, NULL};
        run_argv(argv, NULL, 0);
    }
    char *rm[] = {"rm", "-rf", e->dir, NULL};
    run_argv(rm, NULL, 0);
    e->dir[0] = '\0';
    e->started = false;
}

pid_t clusterenv_pid(const clusterenv *e, int port)
{
    char path[400], buf[32] = "";
    snprintf(path, sizeof path, "%s/%d/redis.pid", e->dir, port);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    if (!fgets(buf, sizeof buf, f))
        buf[0] = '\0';
    fclose(f);
    long v = strtol(buf, NULL, 10);
    return v > 0 ? (pid_t)v : -1;
}

int clusterenv_cli(const clusterenv *e, int port, char *out, size_t n, const char *const *args)
{
    (void)e;
    char *argv[32], pbuf[16];
    int a = 0;
    snprintf(pbuf, sizeof pbuf, "%d", port);
    argv[a++] = "redis-cli";
    argv[a++] = "-p";
    argv[a++] = pbuf;
    for (int i = 0; args[i] && a < 31; i++)
        argv[a++] = (char *)args[i];
    argv[a] = NULL;
    return run_argv(argv, out, n);
}

int clusterenv_node_id(const clusterenv *e, int port, char *out, size_t n)
{
    const char *args[] = {"CLUSTER", "MYID", NULL};
    if (clusterenv_cli(e, port, out, n, args) != 0)
        return -1;
    out[strcspn(out, "\r\n")] = '\0';
    return strlen(out) == 40 ? 0 : -1;
}

int clusterenv_wait_ok(const clusterenv *e, int not_port, int timeout_ms)
{
    char dead[32];
    snprintf(dead, sizeof dead, ":%d@", not_port);
    for (int waited = 0; waited <= timeout_ms; waited += 100) {
        bool ok = true;
        for (int i = 0; i < e->nodes && ok; i++) {
            if (e->ports[i] == not_port)
                continue;
            char out[4096];
            const char *info[] = {"CLUSTER", "INFO", NULL};
            ok = clusterenv_cli(e, e->ports[i], out, sizeof out, info) == 0 &&
                 strstr(out, "cluster_state:ok") != NULL;
            if (ok && not_port) {
                /* the dead node must be marked failed and own no slot any more */
                const char *nodes[] = {"CLUSTER", "NODES", NULL};
                ok = clusterenv_cli(e, e->ports[i], out, sizeof out, nodes) == 0;
                const char *line = ok ? strstr(out, dead) : NULL;
                size_t l = line ? strcspn(line, "\n") : 0;
                ok = line && memmem(line, l, "fail", 4) && !memmem(line, l, " master ", 8);
                if (line && !ok && memmem(line, l, "fail", 4)) {
                    /* "master,fail" with no slots left is fine too */
                    char buf[512];
                    snprintf(buf, sizeof buf, "%.*s", (int)l, line);
                    char *conn = strstr(buf, "connected");
                    ok = conn && (conn[9] == '\0' || conn[9] == '\r');
                }
            }
        }
        if (ok)
            return 0;
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return -1;
}
