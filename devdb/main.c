/*
 * minicrm-devdb: the MongoDB-wire-compatible DEVELOPMENT server (see devdb/README.md).
 *
 * main reads the configuration (prog_start: config file, MINICRM_DEVDB_* environment, flags
 * --bind --port --dbpath --sync ... which are the last layer), recovers the data from
 * --dbpath if given (durable.h), wires the store, cursor table and server together, and
 * turns SIGTERM / SIGINT into an orderly shutdown through a self-pipe: the handler only
 * writes one byte, the server loop sees the pipe readable, stops accepting, closes every
 * connection and returns; main then writes the final snapshot, frees everything and exits 0.
 * SIGPIPE is ignored (writes use MSG_NOSIGNAL anyway).
 */
#include "commands/commands.h"
#include "commands/cursor.h"
#include "storage/durable.h"
#include "log.h"
#include "progargs.h"
#include "wire/server.h"
#include "storage/store.h"

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

static const progargs_flag k_flags[] = {
    {"--bind", "devdb.bind", "address to listen on (default 127.0.0.1)"},
    {"--port", "devdb.port", "TCP port (default 27017)"},
    {"--dbpath", "devdb.dbpath", "directory for the journal and snapshots (default: in memory)"},
    {"--sync", "devdb.sync", "journal fsync: always | everysec (default) | never"},
    {"--max-conns", "devdb.max_conns", "maximum concurrent connections (default 1000)"},
    {"--compact-multiple", "devdb.compact_multiple",
     "compact when the journal exceeds this multiple of the data (default 4)"},
    {"--compact-min-kb", "devdb.compact_min_kb",
     "... and is larger than this many KiB (default 65536)"},
    {"--log-level", "log.level", "debug, info, warn or error (default info)"},
};

int main(int argc, char **argv)
{
    minicrm_config cfg;
    progargs pa;
    int prc = prog_start("minicrm-devdb",
                         "[options]\n\nA MongoDB-wire-compatible DEVELOPMENT server "
                         "(no auth, no TLS; standalone MongoDB 4.4 to drivers).\nWith --dbpath "
                         "every acknowledged write is journaled and survives a restart.",
                         argc, argv, k_flags, sizeof k_flags / sizeof k_flags[0], false, &cfg, &pa);
    if (prc != 0)
        return prc == 1 ? 0 : prc;
    progargs_release(&pa);
    durable_sync sync_mode;
    if (durable_parse_sync(cfg.devdb.sync, &sync_mode) != 0) {
        fprintf(stderr, "minicrm-devdb: --sync must be always|everysec|never, got '%s'\n",
                cfg.devdb.sync);
        cfg_release(&cfg);
        return 2;
    }
    const char *bind = cfg.devdb.bind;
    long port = cfg.devdb.port, max_conns = cfg.devdb.max_conns;
    durable *dur = NULL;

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
    char err[512];
    if (!env.st || !env.cursors) {
        fprintf(stderr, "minicrm-devdb: out of memory\n");
        goto out;
    }
    if (cfg.devdb.dbpath && *cfg.devdb.dbpath) {
        durable_opts dop = {.dbpath = cfg.devdb.dbpath,
                            .sync = sync_mode,
                            .compact_multiple = cfg.devdb.compact_multiple,
                            .compact_min_bytes = (uint64_t)cfg.devdb.compact_min_kb * 1024};
        dur = durable_open(&dop, env.st, err, sizeof err);
        if (!dur) {
            fprintf(stderr, "minicrm-devdb: %s\n", err);
            log_error("dbpath_unusable", "dbpath=%s err=%s", cfg.devdb.dbpath, err);
            goto out;
        }
        env.dur = dur;
    }
    server_opts so = {.bind = bind, .port = (int)port, .max_conns = (int)max_conns};
    srv = server_new(&so, &env, err, sizeof err);
    if (!srv) {
        fprintf(stderr, "minicrm-devdb: %s\n", err);
        goto out;
    }
    log_info("listening", "bind=%s port=%ld max_conns=%ld dbpath=%s sync=%s", bind, port, max_conns,
             dur ? cfg.devdb.dbpath : "(memory)", cfg.devdb.sync);
    server_run(srv, stop_pipe[0]);
    status = 0;
    if (dur) {
        /* Clean shutdown: every connection is closed, so the final snapshot sees it all. */
        env.dur = NULL;
        if (durable_close(dur, true, err, sizeof err) != 0)
            fprintf(stderr, "minicrm-devdb: %s\n", err);
        dur = NULL;
    }
    log_info("stopped", NULL);
out:
    durable_close(dur, false, err, sizeof err);
    server_free(srv);
    cursor_table_free(env.cursors);
    store_free(env.st);
    close(stop_pipe[0]);
    close(stop_pipe[1]);
    cfg_release(&cfg);
    return status;
}
