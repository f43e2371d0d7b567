/*
 * router: see router.h.
 *
 * The table is a plain array scanned in order: with a few dozen routes a linear scan of
 * pre-split segments costs well under a microsecond, far below one MongoDB round trip, so a
 * trie would buy nothing. Patterns are split into segments once in router_add(); the request
 * path is split per request into a bounded array (paths deeper than ROUTER_MAX_SEGS never
 * match anything).
 */
#include "router.h"

#include "ratelimit.h"
#include "timeutil.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ROUTER_MAX_SEGS   8
#define ROUTER_MAX_ROUTES 96

typedef struct seg {
    const char *s;
    size_t len;
} seg;

typedef struct route_entry {
    route r;
    seg segs[ROUTER_MAX_SEGS];
    int nsegs;
    char pname[ROUTER_MAX_SEGS][32]; /* parameter names (":id" -> "id"), NUL-terminated */
    char label[128];
} route_entry;

struct router {
    route_entry *routes;
    size_t n;
};

const char *http_method_name(http_method m)
{
    static const char *names[] = {"GET",    "POST",    "PUT",  "PATCH",
                                  "DELETE", "OPTIONS", "HEAD", "OTHER"};
    return (unsigned)m < sizeof names / sizeof names[0] ? names[m] : "OTHER";
}

router *router_new(void)
{
    router *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->routes = calloc(ROUTER_MAX_ROUTES, sizeof *r->routes);
    if (!r->routes) {
        free(r);
        return NULL;
    }
    return r;
}

void router_free(router *r)
{
    if (!r)
        return;
    free(r->routes);
    free(r);
}

/* Split "/a/b/:id" into segments pointing into `path`. -1 if too deep. */
static int split(const char *path, seg *out, int max)
{
    int n = 0;
    const char *p = path;
    while (*p == '/')
        p++;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (n >= max)
            return -1;
        out[n].s = p;
        out[n].len = len;
        n++;
        p += len;
        while (*p == '/')
            p++;
    }
    return n;
}

int router_add(router *r, http_method m, const char *pattern, route_handler h, route_access access,
               auth_role role)
{
    if (r->n >= ROUTER_MAX_ROUTES || !pattern || pattern[0] != '/' || !h)
        return -1;
    route_entry *e = &r->routes[r->n];
    memset(e, 0, sizeof *e);
    e->nsegs = split(pattern, e->segs, ROUTER_MAX_SEGS);
    if (e->nsegs < 0)
        return -1;
    int nparams = 0;
    for (int i = 0; i < e->nsegs; i++) {
        if (e->segs[i].s[0] != ':')
            continue;
        if (++nparams > HTTP_MAX_PARAMS || e->segs[i].len < 2 ||
            e->segs[i].len > sizeof e->pname[i])
            return -1;
        snprintf(e->pname[i], sizeof e->pname[i], "%.*s", (int)e->segs[i].len - 1,
                 e->segs[i].s + 1);
    }
    e->r.method = m;
    e->r.pattern = pattern;
    e->r.handler = h;
    e->r.access = access;
    e->r.role = role;
    snprintf(e->label, sizeof e->label, "%s %s", http_method_name(m), pattern);
    e->r.label = e->label;
    r->n++;
    return 0;
}

size_t router_count(const router *r)
{
    return r->n;
}

const route *router_get(const router *r, size_t i)
{
    return i < r->n ? &r->routes[i].r : NULL;
}

/* A last pattern segment "*" matches one or more remaining segments (static files). */
static bool segs_match(const route_entry *e, const seg *ps, int np)
{
    bool tail = e->nsegs > 0 && e->segs[e->nsegs - 1].len == 1 && e->segs[e->nsegs - 1].s[0] == '*';
    if (tail ? np < e->nsegs : e->nsegs != np)
        return false;
    for (int i = 0; i < (tail ? e->nsegs - 1 : np); i++) {
        if (e->segs[i].s[0] == ':')
            continue;
        if (e->segs[i].len != ps[i].len || memcmp(e->segs[i].s, ps[i].s, ps[i].len) != 0)
            return false;
    }
    return true;
}

static int capture(http_request *req, const route_entry *e, const seg *ps, int np)
{
    for (int i = 0; i < np && i < e->nsegs; i++) {
        if (e->segs[i].s[0] != ':')
            continue;
        char *v = strndup(ps[i].s, ps[i].len);
        if (!v)
            return -1;
        req->param_names[req->nparams] = e->pname[i];
        req->param_values[req->nparams] = v;
        req->nparams++;
    }
    return 0;
}

/* CORS preflight: only the configured front end may call with credentials. */
static void answer_preflight(api_ctx *app, http_request *req)
{
    const char *origin = http_header(req, "Origin");
    const char *fe = app->cfg->api.frontend_url;
    size_t n = fe ? strlen(fe) : 0;
    while (n > 0 && fe[n - 1] == '/')
        n--;
    if (!origin || strlen(origin) != n || strncasecmp(origin, fe, n) != 0) {
        http_error(req, 403, "origin not allowed");
        return;
    }
    http_add_header(req, "Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS");
    http_add_header(req, "Access-Control-Allow-Headers",
                    "Content-Type, Authorization, Idempotency-Key, X-Request-Id");
    http_add_header(req, "Access-Control-Max-Age", "600");
    http_send_raw(req, 204, NULL, "", 0);
}

void router_dispatch(router *r, api_ctx *app, http_request *req)
{
    seg ps[ROUTER_MAX_SEGS];
    int np = split(req->path ? req->path : "/", ps, ROUTER_MAX_SEGS);
    const route_entry *hit = NULL;
    bool path_known = false;
    http_method m = req->method == HTTP_HEAD ? HTTP_GET : req->method;
    for (size_t i = 0; np >= 0 && i < r->n; i++) {
        const route_entry *e = &r->routes[i];
        if (!segs_match(e, ps, np))
            continue;
        path_known = true;
        if (e->r.method == m) {
            hit = e;
            req->route_index = (int)i;
            req->route_label = e->label;
            break;
        }
    }
    if (req->method == HTTP_OPTIONS && path_known) {
        req->route_label = "OPTIONS (preflight)";
        answer_preflight(app, req);
        return;
    }
    if (!hit) {
        if (path_known)
            http_error(req, 405, "method %s not allowed on %s", req->method_str, req->path);
        else
            http_error(req, 404, "no such route: %s %s", req->method_str, req->path);
        return;
    }
    int retry_after;
    char peer[64];
    if (app->ratelimit && !ratelimit_exempt(req->path) &&
        !ratelimit_allow(app->ratelimit, http_peer(req, peer, sizeof peer), time_now_ms(),
                         &retry_after)) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", retry_after);
        http_add_header(req, "Retry-After", ra);
        http_error(req, 429, "rate limit exceeded: at most %d requests per minute per client",
                   app->cfg->api.rate_limit_per_min);
        return;
    }
    if (capture(req, hit, ps, np) != 0) {
        http_error(req, 503, "out of memory");
        return;
    }
    if (hit->r.access == ROUTE_AUTH) {
        /* No authenticator wired means nobody can be identified: fail closed (401). */
        int a = app->authenticate ? app->authenticate(app, req, &req->who) : AUTH_NONE;
        if (a == AUTH_UNAVAILABLE) {
            if (!req->responded)
                http_error(req, 503, "authentication backend unavailable");
            return;
        }
        if (a != AUTH_OK) {
            if (!req->responded)
                http_error(req, 401, "authentication required");
            return;
        }
        /* CSRF: a state-changing request that a browser's cookie authenticates must show
         * that it comes from this API's own pages or the front end. A page elsewhere can make
         * the browser send the cookie, not forge Origin/Referer. API keys (a header no other
         * site can make a browser send) are exempt, and so are public routes (the signed
         * receipts, unsubscribe links), which no cookie authenticates. */
        if (req->who.kind == PRINCIPAL_SESSION && req->method != HTTP_GET &&
            req->method != HTTP_HEAD && !http_origin_trusted(req, NULL)) {
            http_error(req, 403,
                       "cross-site request refused: a request signed in by cookie must carry an "
                       "Origin or Referer of this site or of the front end");
            return;
        }
        if (req->who.role < hit->r.role) {
            http_error(req, 403, "requires role %s", auth_role_name(hit->r.role));
            return;
        }
    }
    hit->r.handler(app, req);
}
