/*
 * connguard: a deadline on the time a client takes to send a request's headers.
 *
 * libmicrohttpd's connection timeout (api.request_timeout_s) is an idle timeout: every byte
 * received restarts it, so a client that sends its headers one byte every few seconds holds a
 * connection (and a slot of api.max_conns / api.max_conns_per_ip) for as long as it likes. The
 * guard bounds the whole header phase instead: from the moment a connection opens, or its
 * previous request completed (keep-alive), the client has `timeout_s` seconds in total until
 * its next request's headers are complete; past that a watchdog thread shuts the socket down
 * (shutdown(2)), which libmicrohttpd sees as the peer closing and cleans up as usual.
 *
 * Each connection's state is a node hung on MHD's socket context (MHD_OPTION_NOTIFY_CONNECTION):
 *   WAITING (headers not complete; `since` = open or last completion)
 *     -> connguard_request_started -> IN_REQUEST (the body and the answer are timed by MHD's
 *        idle timeout and http.c's bounds, as before)
 *     -> connguard_request_done -> WAITING (since = now)
 *   WAITING past the deadline -> CUT (socket shut down once; MHD then closes and frees it).
 * The node is unlinked in the CLOSED notification, which MHD sends before it closes the file
 * descriptor, and the watchdog calls shutdown() only under the same lock, so it never touches
 * a descriptor number that has been reused.
 *
 * Thread-safe: the notify and request functions run in MHD's threads, the watchdog in its own;
 * one mutex guards the list. connguard_new/connguard_free own the guard and its thread.
 */
#ifndef MINICRM_API_CONNGUARD_H
#define MINICRM_API_CONNGUARD_H

#include <microhttpd.h>

typedef struct connguard connguard;

/* Start the guard (and its watchdog thread) with the header deadline in seconds. NULL on
 * failure (out of memory, no thread). */
connguard *connguard_new(int timeout_s);
/* Stop the watchdog and free the guard; call after MHD_stop_daemon. NULL is fine. */
void connguard_free(connguard *g);

/* MHD_OPTION_NOTIFY_CONNECTION callback; cls is the guard. */
void connguard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                      enum MHD_ConnectionNotificationCode toe);
/* The headers of a request on `conn` are complete / the request has completed. */
void connguard_request_started(struct MHD_Connection *conn);
void connguard_request_done(struct MHD_Connection *conn);

/* Connections cut so far for taking too long over their headers (for tests and logs). */
long connguard_cut_count(const connguard *g);

#endif
