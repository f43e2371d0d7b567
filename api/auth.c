/*
 * auth: see auth.h. The HTTP side of authentication.
 *
 * Route table (access as enforced by the router before the handler runs):
 *   GET    /auth/google           public  302 to the provider (state + PKCE stored in Redis)
 *   GET    /auth/google/callback  public  state checked and consumed; code exchanged; user
 *                                         upserted; new session; Set-Cookie; 302 FRONTEND_URL/
 *                                         dashboard. Bad/missing/reused state or a provider
 *                                         failure: 302 /auth/failure
 *   GET    /auth/me               public  200 {loggedIn:true,user:{...}} or 401 {loggedIn:false}
 *   GET    /auth/logout           public  session deleted server-side, cookie cleared, 302
 *                                         FRONTEND_URL
 *   GET    /auth/failure          public  401 {"error":"Google login failed"}
 *   POST   /api/keys              admin   201 {message, key (shown once), api_key}
 *   GET    /api/keys              admin   200 [api_key...] (never hashes)
 *   DELETE /api/keys/:id          admin   200 {message, api_key} / 404
 *   GET    /api/users             admin   200 [user...]
 *
 * Module state (app->auth): only a flag saying the users/api_keys unique indexes exist; they
 * are created lazily on the first login or key creation, so the API starts while MongoDB is
 * still down. Dependency failures answer 503, never a fake logout or login.
 */
#include "auth.h"

#include "apiutil.h"
#include "auth_keys.h"
#include "auth_oauth.h"
#include "auth_session.h"
#include "auth_users.h"
#include "http.h"
#include "jsonx.h"
#include "log.h"
#include "router.h"
#include "rpool.h"
#include "timeutil.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct auth_state {
    atomic_bool indexes_ready;
} auth_state;

#define FAILURE_PATH "/auth/failure"
#define MAX_LIST     1000

/* ---------------------------------------------------------------- module lifetime */

int auth_module_init(api_ctx *app, char *err, size_t errlen)
{
    auth_state *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (auth_oauth_global_init() != 0) {
        free(st);
        snprintf(err, errlen, "libcurl initialisation failed");
        return -1;
    }
    atomic_init(&st->indexes_ready, false);
    app->auth = st;
    if (!auth_oauth_configured(app->cfg))
        log_warn("google_login_disabled",
                 "msg=\"GOOGLE_CLIENT_ID/GOOGLE_CLIENT_SECRET not set: /auth/google answers 503; "
                 "use API keys (minicrm keys create)\"");
    if (!app->cfg->auth.admin_emails[0])
        log_info("admin_policy", "msg=\"no auth.admin_emails: the first user to log in is admin\"");
    return 0;
}

void auth_module_shutdown(api_ctx *app)
{
    if (!app->auth)
        return;
    free(app->auth);
    app->auth = NULL;
    auth_oauth_global_cleanup();
}

/* Create the unique indexes once per process (idempotent, so a race between threads is
 * harmless). 0, or -1 with err. */
static int ensure_indexes(api_ctx *app, char *err, size_t errlen)
{
    auth_state *st = app->auth;
    if (atomic_load(&st->indexes_ready))
        return 0;
    if (auth_users_ensure_indexes(app->db, err, errlen) != 0 ||
        auth_keys_ensure_indexes(app->db, err, errlen) != 0)
        return -1;
    atomic_store(&st->indexes_ready, true);
    return 0;
}

/* ---------------------------------------------------------------- the hook */

static const char *bearer_token(const http_request *req)
{
    const char *h = http_header(req, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return h ? "" : NULL; /* another scheme: present but not ours -> rejected */
    h += 7;
    while (*h == ' ')
        h++;
    return h;
}

/* Fill the caller's principal (already zeroed); email and sid may be NULL. */
static int set_principal(principal *out, principal_kind kind, auth_role role, const char *id,
                         const char *email, const char *name, const char *sid)
{
    out->kind = kind;
    out->role = role;
    snprintf(out->user_id, sizeof out->user_id, "%s", id);
    snprintf(out->email, sizeof out->email, "%s", email ? email : "");
    snprintf(out->display_name, sizeof out->display_name, "%s", name);
    snprintf(out->session_id, sizeof out->session_id, "%s", sid ? sid : "");
    return AUTH_OK;
}

int auth_authenticate(api_ctx *app, http_request *req, principal *out)
{
    char err[256];
    memset(out, 0, sizeof *out);
    const char *tok = bearer_token(req);
    if (tok) {
        auth_key_info k;
        int rc = auth_keys_authenticate(app->db, tok, &k, err, sizeof err);
        if (rc < 0) {
            char q[300];
            log_warn("auth_key_lookup_failed", "rid=%s err=%s", req->request_id,
                     log_quote(q, sizeof q, err));
            return AUTH_UNAVAILABLE;
        }
        if (rc != 0)
            return AUTH_NONE;
        return set_principal(out, PRINCIPAL_API_KEY, k.role, k.id, NULL, k.name, NULL);
    }
    char sid[AUTH_SID_LEN + 1];
    if (auth_session_from_cookie_header(http_header(req, "Cookie"), sid) != 0)
        return AUTH_NONE;
    rconn *c = rpool_get(app->redis);
    if (!c)
        return AUTH_UNAVAILABLE;
    auth_user u;
    int rc = auth_session_get(app->cfg, c, sid, &u, err, sizeof err);
    rpool_put(app->redis, c);
    if (rc < 0)
        return AUTH_UNAVAILABLE;
    if (rc != 0)
        return AUTH_NONE;
    return set_principal(out, PRINCIPAL_SESSION, u.role, u.id, u.email, u.display_name, sid);
}

/* ---------------------------------------------------------------- OAuth routes */

static void h_google(api_ctx *app, http_request *req)
{
    if (!auth_oauth_configured(app->cfg)) {
        http_error(req, 503, "Google login is not configured on this server");
        return;
    }
    rconn *c = api_redis(req);
    if (!c)
        return;
    char *url = NULL, err[256];
    if (auth_oauth_begin(app->cfg, c, &url, err, sizeof err) != 0) {
        api_redis_fail(req, c, "oauth state");
        rpool_put(app->redis, c);
        return;
    }
    rpool_put(app->redis, c);
    http_add_header(req, "Cache-Control", "no-store");
    http_redirect(req, url);
    free(url);
}

static void redirect_failure(http_request *req, const char *why)
{
    log_info("login_failed", "rid=%s reason=\"%s\"", req->request_id, why);
    http_add_header(req, "Cache-Control", "no-store");
    http_redirect(req, FAILURE_PATH);
}

/* FRONTEND_URL without trailing slashes, followed by `suffix`. */
static const char *frontend(const api_ctx *app, const char *suffix, char *buf, size_t n)
{
    const char *fe = app->cfg->api.frontend_url;
    size_t len = strlen(fe);
    while (len > 0 && fe[len - 1] == '/')
        len--;
    snprintf(buf, n, "%.*s%s", (int)len, fe, suffix);
    return buf;
}

static void h_callback(api_ctx *app, http_request *req)
{
    char err[512], q[600];
    const char *state = http_query(req, "state");
    const char *code = http_query(req, "code");
    rconn *c = api_redis(req);
    if (!c)
        return;
    /* The state is consumed first, whatever else the request says: an error reply from the
     * provider or a replay must not leave a usable state behind. */
    char verifier[AUTH_OAUTH_VERIFIER_LEN + 1];
    int rc = auth_oauth_take_state(app->cfg, c, state, verifier, err, sizeof err);
    if (rc < 0) {
        api_redis_fail(req, c, "oauth state");
        rpool_put(app->redis, c);
        return;
    }
    rpool_put(app->redis, c);
    c = NULL;
    if (rc != 0) {
        redirect_failure(req, state ? "unknown, expired or reused state" : "missing state");
        return;
    }
    if (http_query(req, "error") || !code || !code[0]) {
        redirect_failure(req, "provider returned no code");
        return;
    }
    auth_oauth_identity id;
    if (auth_oauth_exchange(app->cfg, code, verifier, &id, err, sizeof err) != 0) {
        log_warn("oauth_exchange_failed", "rid=%s err=%s", req->request_id,
                 log_quote(q, sizeof q, err));
        redirect_failure(req, "code exchange or userinfo failed");
        return;
    }
    if (ensure_indexes(app, err, sizeof err) != 0) {
        log_warn("auth_indexes_failed", "err=%s", log_quote(q, sizeof q, err));
        http_error(req, 503, "database unavailable, retry later");
        return;
    }
    auth_user u;
    if (auth_users_login(app->db, app->cfg, id.sub, id.email, id.name, id.email_verified, &u, err,
                         sizeof err) != 0) {
        log_warn("user_upsert_failed", "err=%s", log_quote(q, sizeof q, err));
        http_error(req, 503, "database unavailable, retry later");
        return;
    }
    c = api_redis(req);
    if (!c)
        return;
    /* A session the browser already had is ended: every login gets a new sid. */
    char old[AUTH_SID_LEN + 1], sid[AUTH_SID_LEN + 1];
    if (auth_session_from_cookie_header(http_header(req, "Cookie"), old) == 0)
        (void)auth_session_destroy(app->cfg, c, old, err, sizeof err);
    if (auth_session_create(app->cfg, c, &u, sid, err, sizeof err) != 0) {
        api_redis_fail(req, c, "session create");
        rpool_put(app->redis, c);
        return;
    }
    rpool_put(app->redis, c);
    char cookie[512], loc[1024];
    http_add_header(req, "Set-Cookie", auth_session_cookie(app->cfg, sid, cookie, sizeof cookie));
    http_add_header(req, "Cache-Control", "no-store");
    log_info("login", "rid=%s user=%s role=%s", req->request_id, u.id, auth_role_name(u.role));
    http_redirect(req, frontend(app, "/dashboard", loc, sizeof loc));
}

static void h_me(api_ctx *app, http_request *req)
{
    principal p;
    int rc = auth_authenticate(app, req, &p);
    if (rc == AUTH_UNAVAILABLE) {
        http_error(req, 503, "authentication backend unavailable");
        return;
    }
    http_add_header(req, "Cache-Control", "no-store");
    if (rc != AUTH_OK) {
        http_send_json(req, 401, json_pack("{s:b}", "loggedIn", 0));
        return;
    }
    http_send_json(req, 200,
                   json_pack("{s:b, s:s, s:{s:s, s:s, s:s, s:s}}", "loggedIn", 1, "via",
                             p.kind == PRINCIPAL_SESSION ? "session" : "api_key", "user", "id",
                             p.user_id, "displayName", p.display_name, "email", p.email, "role",
                             auth_role_name(p.role)));
}

static void h_logout(api_ctx *app, http_request *req)
{
    char sid[AUTH_SID_LEN + 1], err[256], cookie[512], loc[1024];
    if (auth_session_from_cookie_header(http_header(req, "Cookie"), sid) == 0) {
        rconn *c = api_redis(req);
        if (!c)
            return;
        if (auth_session_destroy(app->cfg, c, sid, err, sizeof err) != 0) {
            /* Not pretending: the session still exists, so the user must know. */
            api_redis_fail(req, c, "session destroy");
            rpool_put(app->redis, c);
            return;
        }
        rpool_put(app->redis, c);
    }
    http_add_header(req, "Set-Cookie", auth_session_cookie(app->cfg, NULL, cookie, sizeof cookie));
    http_add_header(req, "Cache-Control", "no-store");
    http_redirect(req, frontend(app, "", loc, sizeof loc));
}

static void h_failure(api_ctx *app, http_request *req)
{
    (void)app;
    http_error(req, 401, "Google login failed");
}

/* ---------------------------------------------------------------- key management */

static void h_keys_create(api_ctx *app, http_request *req)
{
    json_t *body = api_body_object(req, " {role, name?}");
    if (!body)
        return;
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v)
    {
        if (strcmp(k, "role") != 0 && strcmp(k, "name") != 0) {
            http_error(req, 400, "unknown field: %s", k);
            return;
        }
    }
    auth_role role;
    json_t *jrole = json_object_get(body, "role");
    if (!json_is_string(jrole) || auth_role_parse(json_string_value(jrole), &role) != 0) {
        http_error(req, 400, "role: must be \"admin\" or \"staff\"");
        return;
    }
    json_t *jname = json_object_get(body, "name");
    if (jname && !json_is_string(jname) && !json_is_null(jname)) {
        http_error(req, 400, "name: must be a string");
        return;
    }
    const char *name = json_is_string(jname) ? json_string_value(jname) : "";
    char err[512], q[600], by[320], key[AUTH_KEY_LEN + 1];
    if (req->who.kind == PRINCIPAL_SESSION)
        snprintf(by, sizeof by, "%s", req->who.email);
    else
        snprintf(by, sizeof by, "api_key:%s", req->who.user_id);
    if (ensure_indexes(app, err, sizeof err) != 0) {
        log_warn("auth_indexes_failed", "err=%s", log_quote(q, sizeof q, err));
        http_error(req, 503, "database unavailable, retry later");
        return;
    }
    json_t *doc = NULL;
    /* Argument errors were checked above except the name's length/characters. */
    if (strlen(name) > AUTH_KEY_NAME_MAX) {
        http_error(req, 400, "name: at most %d bytes", AUTH_KEY_NAME_MAX);
        return;
    }
    if (auth_keys_create(app->db, role, name, by, key, &doc, err, sizeof err) != 0) {
        if (strstr(err, "name must")) {
            http_error(req, 400, "name: %s", err);
            return;
        }
        log_warn("key_create_failed", "err=%s", log_quote(q, sizeof q, err));
        http_error(req, 503, "database unavailable, retry later");
        return;
    }
    log_info("api_key_created", "rid=%s id=%s role=%s by=%s", req->request_id,
             jsonx_str(doc, "id", ""), auth_role_name(role), log_quote(q, sizeof q, by));
    http_add_header(req, "Cache-Control", "no-store");
    http_send_json(req, 201,
                   json_pack("{s:s, s:s, s:o}", "message",
                             "API key created: store it now, it is not shown again", "key", key,
                             "api_key", doc));
}

static void h_keys_list(api_ctx *app, http_request *req)
{
    json_t *arr = NULL;
    char err[512], q[600];
    if (auth_keys_list(app->db, MAX_LIST, &arr, err, sizeof err) != 0) {
        log_warn("key_list_failed", "err=%s", log_quote(q, sizeof q, err));
        http_error(req, 503, "database unavailable, retry later");
        return;
    }
    http_send_json(req, 200, arr);
}

static void h_keys_revoke(api_ctx *app, http_request *req)
{
    const char *id = http_param(req, "id");
    if (!id || !oid_is_valid_hex(id)) {
        http_error(req, 400, "id: must be a 24-hex key id");
        return;
    }
    json_t *doc = NULL;
    char err[512], q[600];
    int rc = auth_keys_revoke(app->db, id, &doc, err, sizeof err);
    if (rc == 1) {
        http_error(req, 404, "no API key with id %s", id);
        return;
    }
    if (rc != 0) {
        log_warn("key_revoke_failed", "err=%s", log_quote(q, sizeof q, err));
        http_error(req, 503, "database unavailable, retry later");
        return;
    }
    log_info("api_key_revoked", "rid=%s id=%s", req->request_id, id);
    http_send_json(
        req, 200,
        json_pack("{s:s, s:o}", "message", "API key revoked", "api_key", doc ? doc : json_null()));
}

static void h_users_list(api_ctx *app, http_request *req)
{
    mongoc_client_t *client = dbpool_pop(app->db);
    mongoc_collection_t *c = dbpool_collection(app->db, client, DB_USERS);
    bson_t *filter = bson_new();
    bson_t *opts =
        BCON_NEW("sort", "{", "firstLogin", BCON_INT32(1), "}", "limit", BCON_INT64(MAX_LIST));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, filter, opts, NULL);
    json_t *arr = json_array();
    const bson_t *doc;
    bson_error_t e;
    while (arr && mongoc_cursor_next(cur, &doc)) {
        json_t *v = jsonx_from_bson(doc);
        if (v) {
            json_object_set(v, "id", json_object_get(v, "_id"));
            json_object_del(v, "_id");
            json_object_del(v, "google_sub");
        }
        if (!v || json_array_append_new(arr, v) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    bool failed = mongoc_cursor_error(cur, &e);
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    bson_destroy(opts);
    mongoc_collection_destroy(c);
    dbpool_push(app->db, client);
    if (failed) {
        json_decref(arr);
        api_db_fail(req, &e, "users list");
        return;
    }
    if (!arr) {
        http_error(req, 503, "out of memory");
        return;
    }
    http_send_json(req, 200, arr);
}

int auth_register_routes(router *r)
{
    if (router_add(r, HTTP_GET, "/auth/google", h_google, ROUTE_PUBLIC, AUTH_ROLE_NONE) ||
        router_add(r, HTTP_GET, "/auth/google/callback", h_callback, ROUTE_PUBLIC,
                   AUTH_ROLE_NONE) ||
        router_add(r, HTTP_GET, "/auth/me", h_me, ROUTE_PUBLIC, AUTH_ROLE_NONE) ||
        router_add(r, HTTP_GET, "/auth/logout", h_logout, ROUTE_PUBLIC, AUTH_ROLE_NONE) ||
        router_add(r, HTTP_GET, "/auth/failure", h_failure, ROUTE_PUBLIC, AUTH_ROLE_NONE) ||
        router_add(r, HTTP_POST, "/api/keys", h_keys_create, ROUTE_AUTH, AUTH_ROLE_ADMIN) ||
        router_add(r, HTTP_GET, "/api/keys", h_keys_list, ROUTE_AUTH, AUTH_ROLE_ADMIN) ||
        router_add(r, HTTP_DELETE, "/api/keys/:id", h_keys_revoke, ROUTE_AUTH, AUTH_ROLE_ADMIN) ||
        router_add(r, HTTP_GET, "/api/users", h_users_list, ROUTE_AUTH, AUTH_ROLE_ADMIN))
        return -1;
    return 0;
}
