/*
 * minicrm-devdb: the MongoDB-wire-compatible DEVELOPMENT server (see devdb/README.md).
 *
 * main parses flags, wires the store, cursor table and server together, and turns SIGTERM /
 * SIGINT into an orderly shutdown through a self-pipe: the handler only writes one byte, the
 * server loop sees the pipe readable, stops accepting, closes every connection and returns;
 * main then frees everything and exits 0. SIGPIPE is ignored (writes use MSG_NOSIGNAL anyway).
 */
#include "commands.h"
#include "cursor.h"
#include "log.h"
#include "server.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int stop_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    int saved = errno;
    char c = (char)sig;
    ssize_t w = write(stop_pipe[1], &c, 1);
    (void)w;
    errno = saved;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: minicrm-devdb [--bind ADDR] [--port PORT] [--max-conns N]\n"
               "                     [--log-level debug|info|warn|error] [--help]\n"
               "\n"
               "A MongoDB-wire-compatible DEVELOPMENT server (in memory, no auth, no TLS).\n"
               "Presents itself as a standalone MongoDB 4.4 to drivers. Not for production.\n"
               "\n"
               "  --bind ADDR       address to listen on (default 127.0.0.1)\n"
               "  --port PORT       TCP port (default 27017)\n"
               "  --max-conns N     maximum concurrent connections (default 1000)\n"
               "  --log-level L     debug, info, warn or error (default info)\n");
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    const char *bind = "127.0.0.1";
    long port = 27017, max_conns = 1000;
    log_init("minicrm-devdb");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--bind") && strcmp(a, "--port") && strcmp(a, "--log-level") &&
            strcmp(a, "--max-conns")) {
            fprintf(stderr, "minicrm-devdb: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (!v) {
            fprintf(stderr, "minicrm-devdb: option %s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--bind") == 0) {
            bind = v;
        } else if (strcmp(a, "--port") == 0) {
            if (parse_int(v, 1, 65535, &port) != 0) {
                fprintf(stderr, "minicrm-devdb: --port must be 1..65535, got '%s'\n", v);
                return 2;
            }
        } else if (strcmp(a, "--max-conns") == 0) {
            if (parse_int(v, 1, 100000, &max_conns) != 0) {
                fprintf(stderr, "minicrm-devdb: --max-conns must be 1..100000, got '%s'\n", v);
                return 2;
            }
        } else {
            log_level lvl;
            if (log_parse_level(v, &lvl) != 0) {
                fprintf(stderr, "minicrm-devdb: --log-level must be debug|info|warn|error\n");
                return 2;
            }
            log_set_level(lvl);
        }
    }

    if (pipe(stop_pipe) != 0) {
        fprintf(stderr, "minicrm-devdb: pipe: %s\n", strerror(errno));
        return 1;
    }
    fcntl(stop_pipe[0], F_SETFD, FD_CLOEXEC);
    fcntl(stop_pipe[1], F_SETFD, FD_CLOEXEC);
    fcntl(stop_pipe[1], F_SETFL, O_NONBLOCK);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    cmd_env env = {0};
    env.st = store_new();
    env.cursors = cursor_table_new(10 * 60 * 1000);
    env.start_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    env.max_conns = (int)max_conns;
    int status = 1;
    server *srv = NULL;
    if (!env.st || !env.cursors) {
        fprintf(stderr, "minicrm-devdb: out of memory\n");
        goto out;
    }
    server_opts so = {.bind = bind, .port = (int)port, .max_conns = (int)max_conns};
    char err[256];
    srv = server_new(&so, &env, err, sizeof err);
    if (!srv) {
        fprintf(stderr, "minicrm-devdb: %s\n", err);
        goto out;
    }
    log_info("listening", "bind=%s port=%ld max_conns=%ld", bind, port, max_conns);
    server_run(srv, stop_pipe[0]);
    log_info("stopped", NULL);
    status = 0;
out:
    server_free(srv);
    cursor_table_free(env.cursors);
    store_free(env.st);
    close(stop_pipe[0]);
    close(stop_pipe[1]);
    return status;
}
