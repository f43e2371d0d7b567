/*
 * server: devdb's TCP front end: listening socket, one thread per connection, message
 * framing, and orderly shutdown.
 *
 * Each connection gets its own thread doing blocking reads and writes, so a slow or stalled
 * client only ever blocks itself. A connection reads one whole message (capped at
 * WIRE_MAX_MESSAGE), runs the command (commands.h, which takes the store lock as needed and
 * releases it before returning), then writes the reply without holding any lock. Writes use
 * MSG_NOSIGNAL, so a client that disappears mid-reply only ends its own connection.
 *
 * Thread-safety: server_run runs on the caller's thread; server_free after it returns.
 */
#ifndef DEVDB_SERVER_H
#define DEVDB_SERVER_H

#include "commands/commands.h"

#include <stddef.h>

typedef struct server_opts {
    const char *bind; /* address to listen on, e.g. "127.0.0.1" */
    int port;         /* TCP port */
    int max_conns;    /* connections beyond this are closed at once */
} server_opts;

typedef struct server server;

/* Binds and listens. Returns NULL with a message in err on failure (address in use, bad
 * address...). `env` must outlive the server. */
server *server_new(const server_opts *opts, cmd_env *env, char *err, size_t errlen);

/* Accepts and serves connections until `stop_fd` becomes readable (a signal handler writes
 * to a pipe), then closes the listener, shuts down every open connection and waits for their
 * threads to finish. Also reaps idle cursors about once a second. Returns 0. */
int server_run(server *srv, int stop_fd);

/* NULL-safe. */
void server_free(server *srv);

#endif
