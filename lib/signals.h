/*
 * signals: graceful shutdown for every program.
 *
 * signals_install() makes SIGTERM and SIGINT set a flag (and write a byte to a self-pipe, so a
 * poll/epoll/select loop can wake up at once), and ignores SIGPIPE so a peer closing a socket
 * turns into an EPIPE error instead of killing the process. Async-signal-safe; install once,
 * before threads start, in each process (after fork, the child inherits the handlers but
 * should call signals_install() again to get its own pipe).
 */
#ifndef MINICRM_SIGNALS_H
#define MINICRM_SIGNALS_H

#include <stdbool.h>

/* Returns 0, or -1 if the pipe or handlers could not be set up. */
int signals_install(void);
/* True once SIGTERM or SIGINT arrived (or signals_request_stop was called). */
bool signals_stop_requested(void);
/* The signal number that asked to stop (0 if none). */
int signals_stop_signal(void);
/* Ask the process to stop as if a signal had arrived (for tests and fatal errors). */
void signals_request_stop(void);
/* Read end of the self-pipe: readable once a stop was requested. -1 before install. */
int signals_fd(void);
/* Sleep up to ms milliseconds, returning early (true) if a stop is requested. */
bool signals_sleep_ms(int ms);

#endif
