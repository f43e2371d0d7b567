/*
 * router: the route table of minicrm-api.
 *
 * A route is a method, a pattern of '/'-separated segments where ":name" captures one segment
 * (at most HTTP_MAX_PARAMS) and a last segment "*" matches one or more segments (the handler
 * reads req->path itself), a handler, and its access rule: public, or authenticated with a
 * minimum role. Routes are added once at start (router_add), before the daemon runs; afterwards
 * the table is only read, so dispatch is thread-safe without locks.
 *
 * router_dispatch() runs for every complete request: CORS preflight (OPTIONS) is answered here;
 * otherwise the first route whose pattern matches is chosen (405 if the path matches only under
 * other methods, 404 if nothing matches); for protected routes app->authenticate decides
 * (401 / 503), a state-changing request (not GET/HEAD) authenticated by the session cookie must
 * come from a trusted origin (http_origin_trusted: CSRF, 403), the role is checked (403), then
 * the handler runs. A handler that returns without
 * answering gets a 500 (a bug, logged).
 */
#ifndef MINICRM_API_ROUTER_H
#define MINICRM_API_ROUTER_H

#include "http.h"

typedef void (*route_handler)(api_ctx *app, http_request *req);

typedef enum {
    ROUTE_PUBLIC = 0, /* no authentication */
    ROUTE_AUTH = 1,   /* authenticated, at least `role` */
} route_access;

typedef struct route {
    http_method method;
    const char *pattern; /* static string, e.g. "/api/campaigns/:id/logs" */
    route_handler handler;
    route_access access;
    auth_role role;    /* minimum role when access == ROUTE_AUTH */
    const char *label; /* "GET /api/campaigns/:id" (metrics, logs); built by router_add */
} route;

router *router_new(void);
void router_free(router *r);

/* Add a route (pattern must be static storage). 0, or -1 on a malformed pattern / no memory. */
int router_add(router *r, http_method m, const char *pattern, route_handler h, route_access access,
               auth_role role);

/* Number of routes and the i-th route (for metrics). */
size_t router_count(const router *r);
const route *router_get(const router *r, size_t i);

/* Answer `req` (see above). */
void router_dispatch(router *r, api_ctx *app, http_request *req);

/* Method name as text. */
const char *http_method_name(http_method m);

#endif
