/*
 * rpool: a fixed-size pool of Redis connections shared by the API's handler threads.
 *
 * An rconn is not thread-safe, so a thread borrows one with rpool_get(), uses it for the
 * duration of one request step, and gives it back with rpool_put(). The pool holds `size`
 * connections created lazily; rpool_get() waits (bounded by timeout_ms) when all are lent out,
 * which only happens if handler threads outnumber connections. Connections reconnect by
 * themselves (rconn), so a Redis restart needs nothing from the pool.
 *
 * Thread-safe. The pool owns its connections; rpool_free() closes them (none may be lent).
 */
#ifndef MINICRM_API_RPOOL_H
#define MINICRM_API_RPOOL_H

#include "rconn.h"

#include <stddef.h>

typedef struct rpool rpool;

/* NULL with err if the URL is bad. No connection is made here. */
rpool *rpool_new(const char *url, int timeout_ms, int size, char *err, size_t errlen);
void rpool_free(rpool *p);

/* A connection for the calling thread, or NULL if none came free within the timeout or one
 * could not be created. */
rconn *rpool_get(rpool *p);
/* Give back a connection from rpool_get (NULL-safe). */
void rpool_put(rpool *p, rconn *c);

#endif
