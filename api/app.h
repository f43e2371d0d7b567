/*
 * app: the process-wide state of minicrm-api and the function pointers through which a lower
 * layer calls a higher one.
 *
 * One api_ctx exists per process, filled by main.c before the HTTP daemon starts and only read
 * afterwards (its pools are thread-safe), so every handler thread may use it freely:
 *   - cfg:    the loaded configuration (read-only after start),
 *   - db:     the MongoDB client pool (dbpool_pop/dbpool_push around each use),
 *   - redis:  a pool of Redis connections (rpool_get/rpool_put around each use),
 *   - router: the route table (built once before the daemon starts),
 *   - auth:   opaque state owned by the auth module,
 *   - web, events: the dashboard's static files and live-update ticker (api/webfiles, api/events),
 *   - dispatch, authenticate: the upward calls (below).
 *
 * Layers run one way (README.md, "Layers"): http knows nothing of the router, the router
 * nothing of auth. main.c wires them: http hands each complete request to app->dispatch (the
 * router), and the router calls app->authenticate (api/auth.c: auth_authenticate) for every
 * route marked as needing authentication, then checks the route's minimum role itself
 * (401 / 403 / 503 are answered by the router, not by the hook).
 */
#ifndef MINICRM_API_APP_H
#define MINICRM_API_APP_H

#include "auth_role.h"
#include "config.h"
#include "dbpool.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct rpool rpool;
typedef struct router router;
typedef struct http_request http_request;
typedef struct api_metrics api_metrics;

typedef enum { PRINCIPAL_NONE = 0, PRINCIPAL_SESSION, PRINCIPAL_API_KEY } principal_kind;

/* Who is making a request. Plain value type, no heap memory. */
typedef struct principal {
    principal_kind kind;
    auth_role role;   /* lib/auth/auth_role.h: the one role enum */
    char user_id[32]; /* users._id (hex) for sessions; api_keys._id for keys */
    char email[256];
    char display_name[256];
    char session_id[96]; /* set for sessions (lets /auth/logout find it) */
} principal;

/* Results of api_ctx.authenticate. */
enum {
    AUTH_OK = 0,           /* *out filled */
    AUTH_NONE = 1,         /* no credentials or invalid ones: the router answers 401 */
    AUTH_UNAVAILABLE = -1, /* Redis/MongoDB down: the router answers 503 */
};

typedef struct api_ctx api_ctx;

/* Answer one complete request (the HTTP layer's way up to the router). */
typedef void (*api_dispatch_fn)(api_ctx *app, http_request *req);
/* Identify the caller of `req` (the router's way up to the auth module): AUTH_OK with *out
 * filled, AUTH_NONE or AUTH_UNAVAILABLE. Thread-safe. */
typedef int (*api_authenticate_fn)(api_ctx *app, http_request *req, principal *out);

struct api_ctx {
    const minicrm_config *cfg;
    dbpool *db;
    rpool *redis;
    router *router;
    api_metrics *metrics;
    struct ratelimit *ratelimit;          /* NULL when api.rate_limit_per_min is 0 */
    struct ratelimit *receipts_ratelimit; /* receipts route; NULL when its limit is 0 */
    void *auth;           /* owned by the auth module (auth_module_init / auth_module_shutdown) */
    struct webfiles *web; /* the dashboard's static files (api/webfiles) */
    struct events_hub *events; /* GET /api/events: the shared ticker (api/events) */
    int64_t started_ms;
    /* The two calls that go up a layer, set by main.c before the daemon starts (see the layer
     * list in README.md): a lower layer never names a higher one. */
    api_dispatch_fn dispatch;         /* http -> router */
    api_authenticate_fn authenticate; /* router -> auth */
};

#endif
