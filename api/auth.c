/*
 * auth: see auth.h. The HTTP side of authentication.
 *
 * Route table (access as enforced by the router before the handler runs):
 *   GET    /auth/google           public  302 to the provider (state + PKCE stored in Redis, the
 *                                         pre-login cookie set); 429 past auth.login_rate_per_min
 *                                         per client address
 *   GET    /auth/google/callback  public  state checked and consumed, and bound to this browser
 *                                         (pre-login cookie); code exchanged; account admitted
 *                                         (verified, allow-listed); user upserted; new session;
 *                                         Set-Cookie; 302 FRONTEND_URL/dashboard, or the local
 *                                         path /auth/google?return_to= named (the dashboard). Any
 * refusal: 302 /auth/failure?reason=<code> GET    /auth/me               public  200
 * {loggedIn:true,user:{...}} or 401 {loggedIn:false} GET    /auth/providers        public
 * {"google": configured, "apiKey": true} POST   /auth/key              public  {"key"} (JSON or
 * form) -> the session cookie of a login, bound to the key (ends when it is revoked); 401 bad key,
 * 429 past auth.login_rate_per_min failures per address, 403 from another site's page POST
 * /auth/logout           public  session deleted server-side, cookie cleared, 302 FRONTEND_URL (403
 * from another site's page); from the API's own origin (the dashboard): 200 {loggedIn:false} GET
 * /auth/logout           public  the same, only with a positive same-origin signal (Origin, Referer
 * or Sec-Fetch-Site): a link on another site cannot log anyone out GET    /auth/failure public  401
 * {"error":"Google login failed[: why]","reason"?} POST   /api/keys              admin   201
 * {message, key (shown once), api_key} GET    /api/keys              admin   200 [api_key...]
 * (never hashes) DELETE /api/keys/:id          admin   200 {message, api_key} / 404 GET /api/users
 * admin   200 [user...]
 *
 * Module state (app->auth): a flag saying the users/api_keys unique indexes exist (they are
 * created lazily on the first login or key creation, so the API starts while MongoDB is still
 * down) and the per-address limiter of login starts (a bounded table: anonymous
 * GET /auth/google cannot grow Redis without bound, each start stores a state for
 * auth.state_ttl_s), and the API-key cache (lib/auth/auth_keycache: a key checked in the last
 * auth.key_cache_ttl_s costs no MongoDB round trip; a DELETE /api/keys/:id here clears it).
 * Dependency failures answer 503, never a fake logout or login.
 */
#include "auth.h"

#include "apiutil.h"
#include "auth_keycache.h"
#include "auth_keys.h"
#include "auth_oauth.h"
#include "auth_session.h"
#include "auth_users.h"
#include "http.h"
#include "jsonx.h"
#include "log.h"
#include "ratelimit.h"
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
    ratelimit *login_starts; /* GET /auth/google per client address */
    ratelimit *key_failures; /* failed POST /auth/key per client address */
    auth_keycache *keys;     /* API keys checked in the last auth.key_cache_ttl_s */
} auth_state;

#define FAILURE_PATH "/auth/failure"
#define MAX_LIST     1000

/* ---------------------------------------------------------------- module lifetime */

int auth_module_prepare(minicrm_config *cfg, char *err, size_t errlen)
{
    bool generated = false;
    if (auth_session_secret_ensure(cfg, &generated, err, errlen) != 0)
        return -1;
    if (generated)
        log_warn("session_secret_unset",
                 "msg=\"SESSION_SECRET is not set: sessions are keyed by a random secret made at "
                 "this start, so every login ends when the API restarts and several API processes "
                 "cannot share logins; set SESSION_SECRET (openssl rand -hex 32; minicrm up keeps "
                 "one in .minicrm/session-secret)\"");
    return 0;
}

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
    st->login_starts = ratelimit_new(app->cfg->auth.login_rate_per_min);
    st->key_failures = ratelimit_new(app->cfg->auth.login_rate_per_min);
    st->keys = auth_keycache_new((int64_t)app->cfg->auth.key_cache_ttl_s * 1000);
    if (!st->login_starts || !st->key_failures || !st->keys) {
        ratelimit_free(st->login_starts);
        ratelimit_free(st->key_failures);
        auth_keycache_free(st->keys);
        auth_oauth_global_cleanup();
        free(st);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    app->auth = st;
    const minicrm_config *cfg = app->cfg;
    if (!auth_oauth_configured(cfg))
        log_warn("google_login_disabled",
                 "msg=\"GOOGLE_CLIENT_ID/GOOGLE_CLIENT_SECRET not set: /auth/google answers 503; "
                 "use API keys (minicrm keys create)\"");
    else if (!cfg->auth.allowed_domains[0] && !cfg->auth.allowed_emails[0])
        log_warn("google_login_refused_for_all",
                 "msg=\"Google login is configured but auth.allowed_domains and "
                 "auth.allowed_emails are empty, so every Google login is refused; set "
                 "MINICRM_AUTH_ALLOWED_DOMAINS=example.com and/or "
                 "MINICRM_AUTH_ALLOWED_EMAILS=ann@example.com,bob@example.com\"");
    if (!cfg->auth.admin_emails[0])
        log_info("admin_policy", "msg=\"no auth.admin_emails: no Google account is admin; admins "
                                 "use admin API keys (minicrm keys create --role admin)\"");
    return 0;
}

void auth_module_shutdown(api_ctx *app)
{
    if (!app->auth)
        return;
    ratelimit_free(((auth_state *)app->auth)->login_starts);
    ratelimit_free(((auth_state *)app->auth)->key_failures);
    auth_keycache_free(((auth_state *)app->auth)->keys);
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

/* A key known by its hash, through the key cache: 0 valid (*k filled), 1 unknown or revoked,
 * -1 MongoDB unavailable (logged). */
static int key_by_hash(api_ctx *app, const char *hash, auth_key_info *k, http_request *req)
{
    auth_keycache *cache = app->auth ? ((auth_state *)app->auth)->keys : NULL;
    int64_t now = time_mono_ms();
    if (auth_keycache_get(cache, hash, now, k))
        return 0;
    char err[256], q[300];
    int rc = auth_keys_authenticate_hash(app->db, hash, k, err, sizeof err);
    if (rc < 0) {
        log_warn("auth_key_lookup_failed", "rid=%s err=%s", req->request_id,
                 log_quote(q, sizeof q, err));
        return -1;
    }
    if (rc == 0)
        auth_keycache_put(cache, hash, now, k);
    return rc;
}

int auth_authenticate(api_ctx *app, http_request *req, principal *out)
{
    char err[256];
    memset(out, 0, sizeof *out);
    const char *tok = bearer_token(req);
    if (tok) {
        /* A key checked less than auth.key_cache_ttl_s ago is trusted without MongoDB
         * (auth_keycache.h: a revocation elsewhere takes effect within that time). */
        auth_keycache *cache = app->auth ? ((auth_state *)app->auth)->keys : NULL;
        auth_key_info k;
        char hash[65];
        int64_t now = time_mono_ms();
        if (auth_keycache_hash(tok, hash) != 0)
            return AUTH_NONE;
        if (!auth_keycache_get(cache, hash, now, &k)) {
            int rc = auth_keys_authenticate(app->db, tok, &k, err, sizeof err);
            if (rc < 0) {
                char q[300];
                log_warn("auth_key_lookup_failed", "rid=%s err=%s", req->request_id,
                         log_quote(q, sizeof q, err));
                return AUTH_UNAVAILABLE;
            }
            if (rc != 0)
                return AUTH_NONE;
            auth_keycache_put(cache, hash, now, &k);
        }
        return set_principal(out, PRINCIPAL_API_KEY, k.role, k.id, NULL, k.name, NULL);
    }
    char sid[AUTH_SID_LEN + 1];
    if (auth_session_from_cookie_header(http_header(req, "Cookie"), sid) != 0)
        return AUTH_NONE;
    rconn *c = rpool_get(app->redis);
    if (!c)
        return AUTH_UNAVAILABLE;
    auth_user u;
    char kh[65];
    int rc = auth_session_get_key(app->cfg, c, sid, &u, kh, err, sizeof err);
    if (rc == 0 && kh[0]) {
        /* A session opened with an API key lives only as long as the key: checked like the key
         * itself (cached for auth.key_cache_ttl_s), and deleted once the key is gone. */
        auth_key_info k;
        rc = key_by_hash(app, kh, &k, req);
        if (rc == 1)
            (void)auth_session_destroy(app->cfg, c, sid, err, sizeof err);
        if (rc == 0) {
            u.role = k.role;
            snprintf(u.id, sizeof u.id, "%s", k.id);
        }
    }
    rpool_put(app->redis, c);
    if (rc < 0)
        return AUTH_UNAVAILABLE;
    if (rc != 0)
        return AUTH_NONE;
    return set_principal(out, PRINCIPAL_SESSION, u.role, u.id, u.email, u.display_name, sid);
}

/* ---------------------------------------------------------------- OAuth routes */

/* ---------------------------------------------------------------- return to the dashboard */

/* A Google login started from the dashboard (`GET /auth/google?return_to=/ui/...`) comes back
 * to that page instead of FRONTEND_URL/dashboard: the path rides in a pre-login cookie of its
 * own (Path=/auth/google, HttpOnly, the state's lifetime) and is used only if it is a plain
 * local path, so it can never send the browser to another site. */
#define RETURN_COOKIE "mcrm_return"
#define RETURN_MAX    200

/* "/x/y-z.html": starts with one '/', then only [A-Za-z0-9/_.~-], no "//", at most RETURN_MAX. */
static bool local_path(const char *s, size_t n)
{
    if (n == 0 || n > RETURN_MAX || s[0] != '/')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '/' || c == '_' || c == '.' || c == '~' || c == '-';
        if (!ok || (c == '/' && i + 1 < n && s[i + 1] == '/'))
            return false;
    }
    return true;
}

/* The return path of the request's cookie into out (RETURN_MAX + 1 bytes): true if usable. */
static bool return_path(const http_request *req, char *out)
{
    const char *h = http_header(req, "Cookie");
    for (const char *p = h; p && (p = strstr(p, RETURN_COOKIE "=")) != NULL; p++) {
        if (p != h && p[-1] != ' ' && p[-1] != ';')
            continue;
        const char *v = p + strlen(RETURN_COOKIE "=");
        size_t n = strcspn(v, "; ");
        if (local_path(v, n)) {
            snprintf(out, RETURN_MAX + 1, "%.*s", (int)n, v);
            return true;
        }
    }
    return false;
}

static const char *return_cookie(const api_ctx *app, const char *path, char *buf, size_t n)
{
    snprintf(buf, n, "%s=%s; Path=/auth/google; Max-Age=%d; HttpOnly; SameSite=Lax%s",
             RETURN_COOKIE, path ? path : "", path ? app->cfg->auth.state_ttl_s : 0,
             app->cfg->auth.cookie_secure ? "; Secure" : "");
    return buf;
}

/* GET /auth/providers (public): which sign-ins this server offers, for the dashboard's login
 * page: {"google": configured, "apiKey": true}. */
static void h_providers(api_ctx *app, http_request *req)
{
    http_send_json(
        req, 200,
        json_pack("{s:b, s:b}", "google", auth_oauth_configured(app->cfg) ? 1 : 0, "apiKey", 1));
}

static void h_google(api_ctx *app, http_request *req)
{
    if (!auth_oauth_configured(app->cfg)) {
        http_error(req, 503, "Google login is not configured on this server");
        return;
    }
    /* Each start stores a state in Redis for auth.state_ttl_s: limit starts per address. */
    auth_state *st = app->auth;
    char peer[64];
    int retry_after = 60;
    if (!ratelimit_allow(st->login_starts, http_peer(req, peer, sizeof peer), time_now_ms(),
                         &retry_after)) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", retry_after);
        http_add_header(req, "Retry-After", ra);
        http_error(req, 429, "too many logins started: at most %d per minute per client",
                   app->cfg->auth.login_rate_per_min);
        return;
    }
    rconn *c = api_redis(req);
    if (!c)
        return;
    char *url = NULL, err[256], nonce[AUTH_OAUTH_NONCE_LEN + 1], cookie[256];
    if (auth_oauth_begin(app->cfg, c, &url, nonce, err, sizeof err) != 0) {
        api_redis_fail(req, c, "oauth state");
        rpool_put(app->redis, c);
        return;
    }
    rpool_put(app->redis, c);
    /* The pre-login cookie binds the state to this browser (login CSRF, see auth_oauth.h). */
    http_add_header(req, "Set-Cookie",
                    auth_oauth_nonce_cookie(app->cfg, nonce, cookie, sizeof cookie));
    const char *ret = http_query(req, "return_to");
    if (ret && local_path(ret, strlen(ret)))
        http_add_header(req, "Set-Cookie", return_cookie(app, ret, cookie, sizeof cookie));
    http_add_header(req, "Cache-Control", "no-store");
    http_redirect(req, url);
    free(url);
}

/* Why a login failed, as shown by /auth/failure?reason=<code>: a fixed table, so the page never
 * repeats text from the request. */
static const struct {
    const char *code, *message;
} k_failures[] = {
    {"state", "the login link is unknown, expired or already used; start again"},
    {"wrong_browser", "the login was not started in this browser; start again here"},
    {"provider", "Google did not complete the login"},
    {"no_allow_list", "Google login is not open to any account on this server (an operator must "
                      "set auth.allowed_domains or auth.allowed_emails)"},
    {"email_unverified", "Google did not confirm that this account owns its email address"},
    {"not_allowed", "this Google account is not allowed to log in here (ask an admin to add it "
                    "to auth.allowed_emails or its domain to auth.allowed_domains)"},
};

static void redirect_failure(api_ctx *app, http_request *req, const char *code, const char *why)
{
    char loc[128], cookie[256];
    log_info("login_failed", "rid=%s reason=%s detail=\"%s\"", req->request_id, code, why);
    snprintf(loc, sizeof loc, "%s?reason=%s", FAILURE_PATH, code);
    http_add_header(req, "Set-Cookie",
                    auth_oauth_nonce_cookie(app->cfg, NULL, cookie, sizeof cookie));
    http_add_header(req, "Cache-Control", "no-store");
    http_redirect(req, loc);
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
     * provider or a replay must not leave a usable state behind. It counts only in the browser
     * that started the login (the pre-login cookie), so an attacker's callback URL opened in a
     * victim's browser fails and leaves the victim's session alone. */
    char verifier[AUTH_OAUTH_VERIFIER_LEN + 1], nonce[AUTH_OAUTH_NONCE_LEN + 1];
    bool has_nonce = auth_oauth_nonce_from_cookie_header(http_header(req, "Cookie"), nonce) == 0;
    int rc = auth_oauth_take_state(app->cfg, c, state, has_nonce ? nonce : NULL, verifier, err,
                                   sizeof err);
    if (rc < 0) {
        api_redis_fail(req, c, "oauth state");
        rpool_put(app->redis, c);
        return;
    }
    rpool_put(app->redis, c);
    c = NULL;
    if (rc == AUTH_STATE_WRONG_BROWSER) {
        redirect_failure(app, req, "wrong_browser",
                         has_nonce ? "pre-login cookie does not match" : "no pre-login cookie");
        return;
    }
    if (rc != 0) {
        redirect_failure(app, req, "state",
                         state ? "unknown, expired or reused state" : "missing state");
        return;
    }
    if (http_query(req, "error") || !code || !code[0]) {
        redirect_failure(app, req, "provider", "provider returned no code");
        return;
    }
    auth_oauth_identity id;
    if (auth_oauth_exchange(app->cfg, code, verifier, &id, err, sizeof err) != 0) {
        log_warn("oauth_exchange_failed", "rid=%s err=%s", req->request_id,
                 log_quote(q, sizeof q, err));
        redirect_failure(app, req, "provider", "code exchange or userinfo failed");
        return;
    }
    auth_admit admit = auth_users_admit(app->cfg, id.email, id.email_verified);
    if (admit != AUTH_ADMIT_OK) {
        log_warn("login_refused", "rid=%s email=%s reason=%s", req->request_id,
                 log_quote(q, sizeof q, id.email), auth_admit_code(admit));
        redirect_failure(app, req, auth_admit_code(admit), "account not admitted");
        return;
    }
    if (ensure_indexes(app, err, sizeof err) != 0) {
        log_warn("auth_indexes_failed", "err=%s", log_quote(q, sizeof q, err));
        http_error(req, 503, "database unavailable, retry later");
        return;
    }
    auth_user u;
    rc = auth_users_login(app->db, app->cfg, id.sub, id.email, id.name, id.email_verified, &u, err,
                          sizeof err);
    if (rc > 0) { /* refused (checked above too; the store refuses on its own as well) */
        redirect_failure(app, req, auth_admit_code((auth_admit)rc), "account not admitted");
        return;
    }
    if (rc != 0) {
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
    http_add_header(req, "Set-Cookie",
                    auth_oauth_nonce_cookie(app->cfg, NULL, cookie, sizeof cookie));
    http_add_header(req, "Cache-Control", "no-store");
    log_info("login", "rid=%s user=%s role=%s", req->request_id, u.id, auth_role_name(u.role));
    char back[RETURN_MAX + 1];
    if (return_path(req, back)) { /* started from the dashboard: back to its page */
        http_add_header(req, "Set-Cookie", return_cookie(app, NULL, cookie, sizeof cookie));
        http_redirect(req, back);
        return;
    }
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

/* True if `url` is `origin` or starts with it followed by '/' (origin without trailing '/'). */
static bool url_in_origin(const char *url, const char *origin, size_t olen)
{
    return olen > 0 && strncasecmp(url, origin, olen) == 0 &&
           (url[olen] == '\0' || url[olen] == '/');
}

/* Does a request come from the front end or from this API's own origin? Judged by the first of
 * Origin, Referer, Sec-Fetch-Site the browser sent. Without any of them the answer is
 * `default_ok`: a browser always sends one of them for a navigation or a form (a page can hide
 * its Referer, not its Sec-Fetch-Site), so only non-browser clients arrive without. */
static bool same_origin(const api_ctx *app, const http_request *req, bool default_ok)
{
    const char *fe = app->cfg->api.frontend_url;
    size_t felen = strlen(fe);
    while (felen > 0 && fe[felen - 1] == '/')
        felen--;
    char self[300] = "";
    const char *host = http_header(req, "Host");
    size_t slen = 0;
    if (host && strlen(host) < 256)
        slen = (size_t)snprintf(self, sizeof self, "http://%s", host);
    const char *origin = http_header(req, "Origin");
    const char *referer = http_header(req, "Referer");
    const char *site = http_header(req, "Sec-Fetch-Site");
    const char *url = origin && strcmp(origin, "null") != 0 ? origin : referer;
    if (origin && !strcmp(origin, "null"))
        return false;
    if (url) {
        if (url_in_origin(url, fe, felen) || url_in_origin(url, self, slen))
            return true;
        /* https:// behind a TLS proxy */
        if (slen && !strncasecmp(url, "https://", 8) && url_in_origin(url + 8, self + 7, slen - 7))
            return true;
        return false;
    }
    if (site)
        return !strcmp(site, "same-origin") || !strcmp(site, "same-site") || !strcmp(site, "none");
    return default_ok;
}

/* POST /auth/logout, and GET /auth/logout (the original contract) when it comes from the front
 * end: a GET is what a link or an image on any site can make a browser send with its Lax
 * cookie, so it must show where it comes from; a POST from another site carries no Lax cookie
 * and is refused when it shows a foreign origin. */
static void h_logout(api_ctx *app, http_request *req)
{
    char sid[AUTH_SID_LEN + 1], err[256], cookie[512], loc[1024];
    if (!same_origin(app, req, req->method == HTTP_POST)) {
        http_error(req, 403,
                   "logout refused: the request does not come from the front end (use POST "
                   "/auth/logout from it)");
        return;
    }
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
    /* The dashboard (this API's own origin) gets an answer it can read; the front end keeps
     * the contract's redirect. */
    bool self = false;
    if (req->method == HTTP_POST && http_origin_trusted(req, &self) && self) {
        http_send_json(req, 200, json_pack("{s:b}", "loggedIn", 0));
        return;
    }
    http_redirect(req, frontend(app, "", loc, sizeof loc));
}

/* The key of a POST /auth/key body: JSON {"key": "..."} or a form (key=...). Answers the
 * request itself and returns -1 when the body is not one of those; 0 with the key (at most
 * AUTH_KEY_LEN + 1 bytes are kept: a longer one is simply invalid) and *form set. */
static int key_from_body(http_request *req, char *key, size_t n, bool *form)
{
    const char *ct = http_header(req, "Content-Type");
    *form = ct && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0;
    key[0] = '\0';
    if (!*form) {
        json_t *body = api_body_object(req, " {key}");
        if (!body)
            return -1;
        json_t *jk = json_object_get(body, "key");
        if (!json_is_string(jk)) {
            http_error(req, 400, "key: must be a string (an API key, mck_...)");
            return -1;
        }
        snprintf(key, n, "%.*s", (int)(AUTH_KEY_LEN + 1), json_string_value(jk));
        return 0;
    }
    /* key=<value> among the form's fields; an API key is plain base64url, so only '+' and
     * %XX need decoding for a well-formed one. */
    const char *p = req->body;
    while (p && *p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 4 && strncmp(p, "key=", 4) == 0) {
            size_t k = 0;
            for (size_t i = 4; i < len && k + 1 < n; i++) {
                char c = p[i];
                unsigned hi, lo;
                if (c == '+')
                    c = ' ';
                else if (c == '%' && i + 2 < len && sscanf(p + i + 1, "%1x%1x", &hi, &lo) == 2) {
                    c = (char)(hi << 4 | lo);
                    i += 2;
                }
                key[k++] = c;
            }
            key[k] = '\0';
            return 0;
        }
        p = end ? end + 1 : NULL;
    }
    http_error(req, 400, "key: required (an API key, mck_...)");
    return -1;
}

/* POST /auth/key: a valid API key buys the same HttpOnly session cookie a Google login gets.
 * The session records the key's hash, so it ends when the key is revoked (auth_authenticate).
 * Failed attempts count against auth.login_rate_per_min per client address (429 once spent,
 * before the key is even looked at). A page of another site cannot log a browser into the
 * attacker's key (login CSRF): a foreign Origin/Referer is refused. */
static void h_key_login(api_ctx *app, http_request *req)
{
    auth_state *st = app->auth;
    char peer[64], ra[16], key[AUTH_KEY_LEN + 2], hash[65], err[256];
    int retry_after = 60;
    http_peer(req, peer, sizeof peer);
    if (ratelimit_spent(st->key_failures, peer, time_now_ms(), &retry_after)) {
        snprintf(ra, sizeof ra, "%d", retry_after);
        http_add_header(req, "Retry-After", ra);
        http_error(req, 429, "too many failed sign-ins: at most %d per minute per client",
                   app->cfg->auth.login_rate_per_min);
        return;
    }
    if (!same_origin(app, req, true)) {
        http_error(req, 403, "sign-in refused: the request does not come from this site");
        return;
    }
    bool form;
    if (key_from_body(req, key, sizeof key, &form) != 0)
        return;
    auth_key_info k;
    int rc = auth_keycache_hash(key, hash) == 0 ? key_by_hash(app, hash, &k, req) : 1;
    memset(key, 0, sizeof key);
    if (rc < 0) {
        http_error(req, 503, "database unavailable, retry later");
        return;
    }
    if (rc != 0) {
        (void)ratelimit_allow(st->key_failures, peer, time_now_ms(), NULL);
        log_info("key_login_failed", "rid=%s peer=%s", req->request_id, peer);
        http_error(req, 401, "invalid API key");
        return;
    }
    auth_user u;
    memset(&u, 0, sizeof u);
    snprintf(u.id, sizeof u.id, "%s", k.id);
    snprintf(u.display_name, sizeof u.display_name, "%s", k.name[0] ? k.name : "API key");
    u.role = k.role;
    rconn *c = api_redis(req);
    if (!c)
        return;
    char old[AUTH_SID_LEN + 1], sid[AUTH_SID_LEN + 1];
    if (auth_session_from_cookie_header(http_header(req, "Cookie"), old) == 0)
        (void)auth_session_destroy(app->cfg, c, old, err, sizeof err);
    if (auth_session_create_for_key(app->cfg, c, &u, hash, sid, err, sizeof err) != 0) {
        api_redis_fail(req, c, "session create");
        rpool_put(app->redis, c);
        return;
    }
    rpool_put(app->redis, c);
    char cookie[512];
    http_add_header(req, "Set-Cookie", auth_session_cookie(app->cfg, sid, cookie, sizeof cookie));
    http_add_header(req, "Cache-Control", "no-store");
    log_info("login", "rid=%s via=api_key key=%s role=%s", req->request_id, k.id,
             auth_role_name(k.role));
    if (form) { /* a plain HTML form: on to the dashboard */
        http_redirect(req, "/");
        return;
    }
    http_send_json(req, 200,
                   json_pack("{s:b, s:s, s:{s:s, s:s, s:s, s:s}}", "loggedIn", 1, "via",
                             "api_key_session", "user", "id", u.id, "displayName", u.display_name,
                             "email", "", "role", auth_role_name(u.role)));
}

static void h_failure(api_ctx *app, http_request *req)
{
    (void)app;
    const char *reason = http_query(req, "reason");
    for (size_t i = 0; reason && i < sizeof k_failures / sizeof k_failures[0]; i++)
        if (!strcmp(reason, k_failures[i].code)) {
            char msg[512];
            snprintf(msg, sizeof msg, "Google login failed: %s", k_failures[i].message);
            http_send_json(req, 401,
                           json_pack("{s:s, s:s}", "error", msg, "reason", k_failures[i].code));
            return;
        }
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
    jsonx_buf b = {0};
    char err[512], q[600];
    if (auth_keys_list_text(app->db, MAX_LIST, &b, err, sizeof err) != 0) {
        log_warn("key_list_failed", "err=%s", log_quote(q, sizeof q, err));
        http_error(req, 503, "database unavailable, retry later");
    } else {
        http_send_owned(req, 200, "application/json; charset=utf-8", b.data, b.len);
        b.data = NULL; /* MHD's now */
    }
    jsonx_buf_free(&b);
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
    /* This process forgets every key it trusted, so the revocation holds at once here (other
     * API processes within auth.key_cache_ttl_s). */
    auth_keycache_clear(((auth_state *)app->auth)->keys);
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
        BCON_NEW("sort", "{", "firstLogin", BCON_INT32(1), "}", "limit", BCON_INT64(MAX_LIST),
                 "batchSize", BCON_INT64(MAX_LIST)); /* one reply, no getMore */
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, filter, opts, NULL);
    /* Each user: the stored document without _id and google_sub, "id" last; written straight
     * from BSON (jsonx_buf_bson_public), or through jansson for the rare document it refuses. */
    static const char *const drop[] = {"google_sub", NULL};
    jsonx_buf b = {0};
    const bson_t *doc;
    bson_error_t e;
    jsonx_buf_raw(&b, "[", 1);
    for (bool first = true; mongoc_cursor_next(cur, &doc); first = false) {
        if (!first)
            jsonx_buf_raw(&b, ",", 1);
        if (jsonx_buf_bson_public(&b, doc, drop) == 0)
            continue;
        json_t *v = jsonx_from_bson(doc);
        char *s = NULL;
        if (v) {
            json_object_set(v, "id", json_object_get(v, "_id"));
            json_object_del(v, "_id");
            json_object_del(v, "google_sub");
            s = jsonx_dumps(v);
        }
        json_decref(v);
        if (s)
            jsonx_buf_cat(&b, s);
        else
            b.failed = true;
        free(s);
    }
    jsonx_buf_raw(&b, "]", 1);
    bool failed = mongoc_cursor_error(cur, &e);
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    bson_destroy(opts);
    mongoc_collection_destroy(c);
    dbpool_push(app->db, client);
    if (failed)
        api_db_fail(req, &e, "users list");
    else if (!jsonx_buf_ok(&b))
        http_error(req, 503, "out of memory");
    else {
        http_send_owned(req, 200, "application/json; charset=utf-8", b.data, b.len);
        b.data = NULL; /* MHD's now */
    }
    jsonx_buf_free(&b);
}

int auth_register_routes(router *r)
{
    if (router_add(r, HTTP_GET, "/auth/google", h_google, ROUTE_PUBLIC, AUTH_ROLE_NONE) ||
        router_add(r, HTTP_GET, "/auth/google/callback", h_callback, ROUTE_PUBLIC,
                   AUTH_ROLE_NONE) ||
        router_add(r, HTTP_GET, "/auth/me", h_me, ROUTE_PUBLIC, AUTH_ROLE_NONE) ||
        router_add(r, HTTP_POST, "/auth/key", h_key_login, ROUTE_PUBLIC, AUTH_ROLE_NONE) ||
        router_add(r, HTTP_GET, "/auth/providers", h_providers, ROUTE_PUBLIC, AUTH_ROLE_NONE) ||
        router_add(r, HTTP_POST, "/auth/logout", h_logout, ROUTE_PUBLIC, AUTH_ROLE_NONE) ||
        router_add(r, HTTP_GET, "/auth/logout", h_logout, ROUTE_PUBLIC, AUTH_ROLE_NONE) ||
        router_add(r, HTTP_GET, "/auth/failure", h_failure, ROUTE_PUBLIC, AUTH_ROLE_NONE) ||
        router_add(r, HTTP_POST, "/api/keys", h_keys_create, ROUTE_AUTH, AUTH_ROLE_ADMIN) ||
        router_add(r, HTTP_GET, "/api/keys", h_keys_list, ROUTE_AUTH, AUTH_ROLE_ADMIN) ||
        router_add(r, HTTP_DELETE, "/api/keys/:id", h_keys_revoke, ROUTE_AUTH, AUTH_ROLE_ADMIN) ||
        router_add(r, HTTP_GET, "/api/users", h_users_list, ROUTE_AUTH, AUTH_ROLE_ADMIN))
        return -1;
    return 0;
}
