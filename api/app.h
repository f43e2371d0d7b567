/*
 * app: the process-wide state of minicrm-api and the seam between the HTTP layer and the
 * authentication module.
 *
 * One api_ctx exists per process, filled by main.c before the HTTP daemon starts and only read
 * afterwards (its pools are thread-safe), so every handler thread may use it freely:
 *   - cfg:    the loaded configuration (read-only after start),
 *   - db:     the MongoDB client pool (dbpool_pop/dbpool_push around each use),
 *   - redis:  a pool of Redis connections (rpool_get/rpool_put around each use),
 *   - router: the route table (built once before the daemon starts),
 *   - auth:   opaque state owned by the auth module.
 *
 * The auth hook. The authentication module (api/auth.c, owned by the auth helper; until it lands
 * a temporary api/auth_stub.c) implements the four auth_* functions declared below. The router
 * calls auth_authenticate() for every route marked as needing authentication, then checks the
 * route's minimum role itself (401 / 403 / 503 are answered by the router, not by the hook).
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

typedef struct api_ctx {
    const minicrm_config *cfg;
    dbpool *db;
    rpool *redis;
    router *router;
    api_metrics *metrics;
    struct ratelimit *ratelimit; /* NULL when api.rate_limit_per_min is 0 */
    void *auth; /* owned by the auth module (auth_module_init / auth_module_shutdown) */
    int64_t started_ms;
} api_ctx;

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

/* Results of auth_authenticate(). */
enum {
    AUTH_OK = 0,           /* *out filled */
    AUTH_NONE = 1,         /* no credentials or invalid ones: the router answers 401 */
    AUTH_UNAVAILABLE = -1, /* Redis/MongoDB down: the router answers 503 */
};

/* ---- implemented by the auth module (api/auth.c, or api/auth_stub.c until it lands) ---- */

/* Called once in main.c after the pools exist and before routes are registered. 0, or -1 with
 * a message in err (the program then exits 2). */
int auth_module_init(api_ctx *app, char *err, size_t errlen);
/* Called once at exit, after the daemon stopped. Frees app->auth. */
void auth_module_shutdown(api_ctx *app);
/* Adds the module's routes (/auth/..., /api/keys...) to the table. 0, or -1. */
int auth_register_routes(router *r);
/* Identify the caller of `req` (session cookie or `Authorization: Bearer`). Thread-safe. */
int auth_authenticate(api_ctx *app, http_request *req, principal *out);

#endif
