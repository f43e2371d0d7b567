/*
 * test_auth_flow: Google login, sessions, API keys and roles end to end, over real sockets.
 *
 * The test starts a private redis-server and minicrm-devdb (testenv), a local OAuth2/OIDC
 * provider (tests/api/oauth-mock: oauth2-mock-server, installed with npm into the build
 * directory at first run), and minicrm-api pointed at it through GOOGLE_*_URL settings. It then
 * drives the browser's side with libcurl, following each 302 by hand so every hop is checked:
 *   /auth/google -> provider /authorize (auto-approves; login_hint picks the person) ->
 *   /auth/google/callback?code&state -> FRONTEND_URL/dashboard with the session cookie.
 * auth.allowed_domains admits example.com, auth.allowed_emails guest@gmail.test;
 * auth.admin_emails lists boss@example.com, so boss is admin and everyone else staff. The
 * browser's pre-login cookie (mcrm_login) is carried from /auth/google to the callback by
 * hand, like a cookie jar; a second "jar" plays the victim of a login CSRF.
 *
 * If npm cannot install the provider (no registry access), the test exits 77, which ctest
 * reports as skipped, after saying why.
 */
#include "auth_crypto.h"
#include "auth_oauth.h"
#include "hmac.h"
#include "rconn.h"
#include "timeutil.h"
#include "test.h"
#include "testenv.h"

#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define FRONT          "http://front.test:3000"
#define ADMIN_EMAIL    "boss@example.com"
#define SESSION_SECRET "flow-session-secret"

/* The API-key cache's lifetime in this test's API (short, so the revocation test is quick). */
#define KEY_CACHE_TTL_S     2
#define KEY_CACHE_TTL_S_STR "2"

static testenv g_env;
static pid_t g_mock_pid = -1, g_api_pid = -1;
static char g_api[64], g_mock[64];
static rconn *g_redis;

/* ---------------------------------------------------------------- HTTP client */

typedef struct resp {
    long status;
    char body[65536];
    size_t blen;
    char hdrs[16384];
    size_t hlen;
} resp;

static size_t on_body(char *d, size_t s, size_t n, void *u)
{
    resp *r = u;
    size_t len = s * n, room = sizeof r->body - 1 - r->blen;
    size_t k = len < room ? len : room;
    memcpy(r->body + r->blen, d, k);
    r->blen += k;
    r->body[r->blen] = '\0';
    return len;
}

static size_t on_header(char *d, size_t s, size_t n, void *u)
{
    resp *r = u;
    size_t len = s * n, room = sizeof r->hdrs - 1 - r->hlen;
    size_t k = len < room ? len : room;
    memcpy(r->hdrs + r->hlen, d, k);
    r->hlen += k;
    r->hdrs[r->hlen] = '\0';
    return len;
}

/* One request without following redirects. cookie: "sid=..." or NULL; auth: a full
 * Authorization header value or NULL; body: JSON text or NULL. Returns the status (0 on a
 * transport error). */
static long http_x(resp *r, const char *method, const char *url, const char *cookie,
                   const char *auth, const char *body, const char *extra);

/* A change (not GET) with a cookie comes from the front end, as a browser sends it:
 * cross-origin, so with its Origin (the CSRF check refuses a cookie-authenticated change
 * without one). */
static long http(resp *r, const char *method, const char *url, const char *cookie, const char *auth,
                 const char *body)
{
    bool change = strcmp(method, "GET") != 0;
    return http_x(r, method, url, cookie, auth, body, cookie && change ? "Origin: " FRONT : NULL);
}

/* http() with extra request header lines ("Name: value"), e.g. Origin. */
static long http_x(resp *r, const char *method, const char *url, const char *cookie,
                   const char *auth, const char *body, const char *extra)
{
    memset(r, 0, sizeof *r);
    CURL *h = curl_easy_init();
    struct curl_slist *hd = NULL;
    char line[1024];
    if (auth) {
        snprintf(line, sizeof line, "Authorization: %s", auth);
        hd = curl_slist_append(hd, line);
    }
    if (body)
        hd = curl_slist_append(hd, "Content-Type: application/json");
    for (const char *l = extra; l && *l;) { /* one header per '\n'-separated line */
        char line1[512];
        size_t len = strcspn(l, "\n");
        snprintf(line1, sizeof line1, "%.*s", (int)len, l);
        hd = curl_slist_append(hd, line1);
        l += len + (l[len] == '\n');
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    if (cookie)
        curl_easy_setopt(h, CURLOPT_COOKIE, cookie);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 15000L);
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hd);
    curl_easy_cleanup(h);
    return r->status;
}

/* Value of response header `name` (first one, case-insensitive) into out, or NULL. */
static const char *header(const resp *r, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name);
    for (const char *p = r->hdrs; *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : "") {
        if (!strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            size_t len = strcspn(v, "\r\n");
            snprintf(out, n, "%.*s", (int)len, v);
            return out;
        }
    }
    return NULL;
}

static json_t *body_json(const resp *r)
{
    return json_loads(r->body, 0, NULL);
}

/* Raw value of query parameter `name` of url. */
static const char *url_param(const char *url, const char *name, char *out, size_t n)
{
    char pat[64];
    snprintf(pat, sizeof pat, "%s=", name);
    out[0] = '\0';
    for (const char *p = strchr(url, '?'); p && *p; p = strchr(p + 1, '&'))
        if (!strncmp(p + 1, pat, strlen(pat))) {
            const char *v = p + 1 + strlen(pat);
            snprintf(out, n, "%.*s", (int)strcspn(v, "&"), v);
            return out;
        }
    return NULL;
}

/* ---------------------------------------------------------------- login helpers */

/* The pre-login cookie the last /auth/google set ("mcrm_login=<nonce>"), as a browser keeps
 * it: begin_login() stores it, finish_login() sends it unless told otherwise. */
static char g_jar[128];

/* Step 1+2: /auth/google then the provider; returns the callback URL the provider sent the
 * browser to (with code and state) in cb, and the state; the pre-login cookie in g_jar. 0 or
 * -1. */
static int begin_login(const char *email, char *cb, size_t n, char *state, size_t sn)
{
    resp r;
    char loc[2048], url[2300], sc[512];
    snprintf(url, sizeof url, "%s/auth/google", g_api);
    if (http(&r, "GET", url, NULL, NULL, NULL) != 302 || !header(&r, "Location", loc, sizeof loc))
        return -1;
    if (!header(&r, "Set-Cookie", sc, sizeof sc) || strncmp(sc, "mcrm_login=", 11) != 0)
        return -1;
    snprintf(g_jar, sizeof g_jar, "%.*s", (int)strcspn(sc, ";"), sc);
    snprintf(url, sizeof url, "%s&login_hint=%s", loc, email);
    if (http(&r, "GET", url, NULL, NULL, NULL) != 302 || !header(&r, "Location", cb, n))
        return -1;
    if (!url_param(cb, "state", state, sn))
        return -1;
    return 0;
}

/* Complete a login at the callback URL with the browser's cookies (`cookie`, may be NULL, plus
 * the pre-login cookie of g_jar); returns the status and the first Set-Cookie / Location. */
static long finish_login_jar(const char *cb, const char *cookie, const char *jar, char *setcookie,
                             size_t sn, char *loc, size_t ln)
{
    resp r;
    char all[512];
    snprintf(all, sizeof all, "%s%s%s", cookie ? cookie : "", cookie && jar[0] ? "; " : "", jar);
    long st = http(&r, "GET", cb, all[0] ? all : NULL, NULL, NULL);
    setcookie[0] = loc[0] = '\0';
    header(&r, "Set-Cookie", setcookie, sn);
    header(&r, "Location", loc, ln);
    return st;
}

static long finish_login(const char *cb, const char *cookie, char *setcookie, size_t sn, char *loc,
                         size_t ln)
{
    return finish_login_jar(cb, cookie, g_jar, setcookie, sn, loc, ln);
}

/* A full login; writes "sid=<64 hex>" into cookie. 0 or -1. */
static int login(const char *email, char *cookie, size_t n)
{
    char cb[2048], state[128], sc[1024], loc[1024];
    if (begin_login(email, cb, sizeof cb, state, sizeof state) != 0)
        return -1;
    if (finish_login(cb, NULL, sc, sizeof sc, loc, sizeof loc) != 302)
        return -1;
    if (strncmp(sc, "sid=", 4) != 0)
        return -1;
    snprintf(cookie, n, "%.*s", (int)strcspn(sc, ";"), sc);
    return strlen(cookie) == 4 + 64 ? 0 : -1;
}

static long me(const char *cookie, const char *auth, json_t **out)
{
    resp r;
    char url[128];
    snprintf(url, sizeof url, "%s/auth/me", g_api);
    long st = http(&r, "GET", url, cookie, auth, NULL);
    if (out)
        *out = body_json(&r);
    return st;
}

/* POST /api/keys; on 201 writes the key (and its id) out. Returns the status. */
static long create_key(const char *cookie, const char *auth, const char *body, char *key, char *id)
{
    resp r;
    char url[128];
    snprintf(url, sizeof url, "%s/api/keys", g_api);
    long st = http(&r, "POST", url, cookie, auth, body);
    if (st == 201) {
        json_t *v = body_json(&r);
        snprintf(key, 64, "%s", json_string_value(json_object_get(v, "key")));
        snprintf(id, 32, "%s",
                 json_string_value(json_object_get(json_object_get(v, "api_key"), "id")));
        json_decref(v);
    }
    return st;
}

/* The Redis key suffix of a session: hex HMAC(SESSION_SECRET, sid). */
static const char *session_mac(const char *sid, char out[HMAC_HEX_LEN + 1])
{
    hmac_sha256_hex(SESSION_SECRET, strlen(SESSION_SECRET), sid, strlen(sid), out);
    return out;
}

/* Does {prefix}{kind}:{arg} exist? */
static bool redis_exists(const char *kind, const char *arg)
{
    char key[256];
    snprintf(key, sizeof key, "%s%s:%s", g_env.prefix, kind, arg);
    redisReply *rep = rconn_command(g_redis, "EXISTS %s", key);
    bool yes = rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
    if (rep)
        freeReplyObject(rep);
    return yes;
}

/* ---------------------------------------------------------------- tests */

TEST(authorize_redirect)
{
    resp r;
    char url[128], loc[2048], v[256];
    snprintf(url, sizeof url, "%s/auth/google", g_api);
    CHECK_INT_EQ(http(&r, "GET", url, NULL, NULL, NULL), 302);
    CHECK(header(&r, "Location", loc, sizeof loc) != NULL);
    char want[128];
    snprintf(want, sizeof want, "%s/authorize?", g_mock);
    CHECK(strncmp(loc, want, strlen(want)) == 0);
    CHECK_STR_EQ(url_param(loc, "client_id", v, sizeof v), "minicrm-test");
    CHECK_STR_EQ(url_param(loc, "response_type", v, sizeof v), "code");
    CHECK_STR_EQ(url_param(loc, "scope", v, sizeof v), "openid%20profile%20email");
    CHECK_STR_EQ(url_param(loc, "code_challenge_method", v, sizeof v), "S256");
    CHECK_STR_CONTAINS(url_param(loc, "redirect_uri", v, sizeof v), "%2Fauth%2Fgoogle%2Fcallback");
    char state[128], challenge[128];
    CHECK(url_param(loc, "state", state, sizeof state) && strlen(state) == 43);
    CHECK(url_param(loc, "code_challenge", challenge, sizeof challenge));
    /* PKCE: the stored verifier's S256 is the challenge sent to the provider (the value is
     * "<verifier>.<hex SHA-256 of the pre-login nonce>"). */
    redisReply *rep = rconn_command(g_redis, "GET %soauth:state:%s", g_env.prefix, state);
    CHECK(rep && rep->type == REDIS_REPLY_STRING && rep->len > AUTH_OAUTH_VERIFIER_LEN);
    char ch[64], verifier[AUTH_OAUTH_VERIFIER_LEN + 1];
    snprintf(verifier, sizeof verifier, "%.*s", AUTH_OAUTH_VERIFIER_LEN, rep->str);
    auth_oauth_challenge(verifier, ch);
    freeReplyObject(rep);
    CHECK_STR_EQ(ch, challenge);
}

TEST(login_admin_session)
{
    char cb[2048], state[128], sc[1024], loc[1024];
    CHECK_INT_EQ(begin_login(ADMIN_EMAIL, cb, sizeof cb, state, sizeof state), 0);
    CHECK_INT_EQ(finish_login(cb, NULL, sc, sizeof sc, loc, sizeof loc), 302);
    CHECK_STR_EQ(loc, FRONT "/dashboard");
    /* The pre-login cookie was HttpOnly, scoped to /auth/google, and is cleared now. */
    CHECK(strlen(g_jar) == strlen("mcrm_login=") + AUTH_OAUTH_NONCE_LEN);
    /* Cookie: sid, HttpOnly, 1 day, Path=/, SameSite from config (Lax), no Secure by default. */
    CHECK(strncmp(sc, "sid=", 4) == 0);
    CHECK_STR_CONTAINS(sc, "; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax");
    CHECK(strstr(sc, "Secure") == NULL);
    char sid[80];
    snprintf(sid, sizeof sid, "%.*s", (int)strcspn(sc + 4, ";"), sc + 4);
    CHECK(auth_is_lower_hex(sid, 64));
    /* Server-side session under HMAC(SESSION_SECRET, sid), never under the sid itself (a
     * Redis dump or AOF hands out no login), and the state is gone. */
    char mac[HMAC_HEX_LEN + 1];
    CHECK(redis_exists("session", session_mac(sid, mac)));
    CHECK(!redis_exists("session", sid));
    CHECK(!redis_exists("oauth:state", state));
    /* A key read out of Redis, presented as a cookie, logs nobody in. */
    char stolen[128];
    snprintf(stolen, sizeof stolen, "sid=%s", mac);
    CHECK_INT_EQ(me(stolen, NULL, NULL), 401);
    char cookie[128];
    snprintf(cookie, sizeof cookie, "sid=%s", sid);
    json_t *v = NULL;
    CHECK_INT_EQ(me(cookie, NULL, &v), 200);
    CHECK(json_is_true(json_object_get(v, "loggedIn")));
    json_t *u = json_object_get(v, "user");
    CHECK_STR_EQ(json_string_value(json_object_get(u, "email")), ADMIN_EMAIL);
    CHECK_STR_EQ(json_string_value(json_object_get(u, "displayName")), "User boss");
    CHECK_STR_EQ(json_string_value(json_object_get(u, "role")), "admin");
    CHECK(json_string_value(json_object_get(u, "id")) &&
          strlen(json_string_value(json_object_get(u, "id"))) == 24);
    json_decref(v);
    /* The users collection has the person, once, across two logins. */
    CHECK_INT_EQ(login(ADMIN_EMAIL, cookie, sizeof cookie), 0);
    resp r;
    char url[128];
    snprintf(url, sizeof url, "%s/api/users", g_api);
    CHECK_INT_EQ(http(&r, "GET", url, cookie, NULL, NULL), 200);
    json_t *arr = body_json(&r);
    int n = 0;
    size_t i;
    json_t *x;
    json_array_foreach(arr, i, x)
    {
        if (!strcmp(json_string_value(json_object_get(x, "email")), ADMIN_EMAIL)) {
            n++;
            CHECK_STR_EQ(json_string_value(json_object_get(x, "role")), "admin");
            CHECK(json_object_get(x, "firstLogin") && json_object_get(x, "lastLogin"));
        }
    }
    json_decref(arr);
    CHECK_INT_EQ(n, 1);
}

/* Every "name=value" of the answer's Set-Cookie lines for `name` into out ("" if none). */
static void set_cookie_value(const resp *r, const char *name, char *out, size_t n)
{
    out[0] = '\0';
    size_t nl = strlen(name);
    for (const char *p = r->hdrs; (p = strstr(p, "\nSet-Cookie: ")) != NULL; p++) {
        const char *v = p + 13;
        if (!strncmp(v, name, nl) && v[nl] == '=')
            snprintf(out, n, "%.*s", (int)strcspn(v, ";\r\n"), v);
    }
}

/* Google login started from the dashboard: back to its page, never to another site. */
TEST(login_returns_to_dashboard)
{
    static const struct {
        const char *return_to, *expect;
    } cases[] = {
        {"/ui/campaigns", "/ui/campaigns"},
        {"//evil.test/x", FRONT "/dashboard"},
        {"https://evil.test/", FRONT "/dashboard"},
        {"/ui/%0d%0aX:1", FRONT "/dashboard"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        resp r;
        char url[2300], loc[2048], cb[2048], jar[512], ret[300], sc[1024], back[1024];
        snprintf(url, sizeof url, "%s/auth/google?return_to=%s", g_api, cases[i].return_to);
        CHECK_INT_EQ(http(&r, "GET", url, NULL, NULL, NULL), 302);
        CHECK(header(&r, "Location", loc, sizeof loc) != NULL);
        set_cookie_value(&r, "mcrm_login", jar, sizeof jar);
        set_cookie_value(&r, "mcrm_return", ret, sizeof ret);
        CHECK(jar[0] != '\0');
        if (ret[0]) {
            size_t k = strlen(jar);
            snprintf(jar + k, sizeof jar - k, "; %s", ret);
        }
        snprintf(url, sizeof url, "%s&login_hint=%s", loc, ADMIN_EMAIL);
        CHECK_INT_EQ(http(&r, "GET", url, NULL, NULL, NULL), 302);
        CHECK(header(&r, "Location", cb, sizeof cb) != NULL);
        CHECK_INT_EQ(finish_login_jar(cb, NULL, jar, sc, sizeof sc, back, sizeof back), 302);
        CHECK_MSG(!strcmp(back, cases[i].expect), "return_to=%s: landed on %s", cases[i].return_to,
                  back);
        CHECK(strncmp(sc, "sid=", 4) == 0);
    }
    /* The dashboard asks which sign-ins there are. */
    resp r;
    char url[128];
    snprintf(url, sizeof url, "%s/auth/providers", g_api);
    CHECK_INT_EQ(http(&r, "GET", url, NULL, NULL, NULL), 200);
    json_t *v = body_json(&r);
    CHECK(json_is_true(json_object_get(v, "google")) && json_is_true(json_object_get(v, "apiKey")));
    json_decref(v);
}

TEST(state_missing_wrong_reused)
{
    char cb[2048], state[128], sc[1024], loc[1024], url[2300];
    CHECK_INT_EQ(begin_login("ann@example.com", cb, sizeof cb, state, sizeof state), 0);
    CHECK_INT_EQ(finish_login(cb, NULL, sc, sizeof sc, loc, sizeof loc), 302);
    CHECK_STR_EQ(loc, FRONT "/dashboard");
    /* Reused: the same callback again. */
    CHECK_INT_EQ(finish_login(cb, NULL, sc, sizeof sc, loc, sizeof loc), 302);
    CHECK_STR_EQ(loc, "/auth/failure?reason=state");
    CHECK(strncmp(sc, "sid=", 4) != 0);
    /* Missing and wrong state, with a fresh code each time. */
    CHECK_INT_EQ(begin_login("ann@example.com", cb, sizeof cb, state, sizeof state), 0);
    char code[256];
    url_param(cb, "code", code, sizeof code);
    snprintf(url, sizeof url, "%s/auth/google/callback?code=%s", g_api, code);
    CHECK_INT_EQ(finish_login(url, NULL, sc, sizeof sc, loc, sizeof loc), 302);
    CHECK_STR_EQ(loc, "/auth/failure?reason=state");
    snprintf(url, sizeof url, "%s/auth/google/callback?code=%s&state=%s", g_api, code,
             "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    CHECK_INT_EQ(finish_login(url, NULL, sc, sizeof sc, loc, sizeof loc), 302);
    CHECK_STR_EQ(loc, "/auth/failure?reason=state");
    snprintf(url, sizeof url, "%s/auth/google/callback?code=%s&state=%%27%%3B--", g_api, code);
    CHECK_INT_EQ(finish_login(url, NULL, sc, sizeof sc, loc, sizeof loc), 302);
    CHECK_STR_EQ(loc, "/auth/failure?reason=state");
    /* The provider's error answer consumes the state too. */
    snprintf(url, sizeof url, "%s/auth/google/callback?error=access_denied&state=%s", g_api, state);
    CHECK_INT_EQ(finish_login(url, NULL, sc, sizeof sc, loc, sizeof loc), 302);
    CHECK_STR_EQ(loc, "/auth/failure?reason=provider");
    CHECK(!redis_exists("oauth:state", state));
    /* /auth/failure itself: plain, and with a reason it explains (only from its own table). */
    resp r;
    snprintf(url, sizeof url, "%s/auth/failure", g_api);
    CHECK_INT_EQ(http(&r, "GET", url, NULL, NULL, NULL), 401);
    CHECK_STR_EQ(r.body, "{\"error\":\"Google login failed\"}");
    snprintf(url, sizeof url, "%s/auth/failure?reason=%%3Cscript%%3E", g_api);
    CHECK_INT_EQ(http(&r, "GET", url, NULL, NULL, NULL), 401);
    CHECK_STR_EQ(r.body, "{\"error\":\"Google login failed\"}");
}

TEST(pkce_and_provider_failures)
{
    /* Swap the stored verifier for another well-formed one: the provider (which checks
     * S256(verifier) == challenge) refuses the code, so the login fails. */
    char cb[2048], state[128], sc[1024], loc[1024];
    CHECK_INT_EQ(begin_login("eve@example.com", cb, sizeof cb, state, sizeof state), 0);
    redisReply *rep = rconn_command(g_redis, "SETRANGE %soauth:state:%s 0 %s", g_env.prefix, state,
                                    "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB");
    CHECK(rep && rep->type == REDIS_REPLY_INTEGER);
    freeReplyObject(rep);
    CHECK_INT_EQ(finish_login(cb, NULL, sc, sizeof sc, loc, sizeof loc), 302);
    CHECK_STR_EQ(loc, "/auth/failure?reason=provider");
    CHECK(strncmp(sc, "sid=", 4) != 0);
    /* Userinfo failing at the provider. */
    CHECK_INT_EQ(begin_login("userinfo-fails@example.com", cb, sizeof cb, state, sizeof state), 0);
    CHECK_INT_EQ(finish_login(cb, NULL, sc, sizeof sc, loc, sizeof loc), 302);
    CHECK_STR_EQ(loc, "/auth/failure?reason=provider");
}

TEST(session_fixation_and_logout)
{
    const char *planted = "sid=1111111111111111111111111111111111111111111111111111111111111111";
    json_t *v = NULL;
    CHECK_INT_EQ(me(planted, NULL, &v), 401);
    CHECK(json_is_false(json_object_get(v, "loggedIn")));
    json_decref(v);
    /* Logging in while presenting a planted id yields a different, server-made one. */
    char cb[2048], state[128], sc[1024], loc[1024];
    CHECK_INT_EQ(begin_login("sam@example.com", cb, sizeof cb, state, sizeof state), 0);
    CHECK_INT_EQ(finish_login(cb, planted, sc, sizeof sc, loc, sizeof loc), 302);
    CHECK(strncmp(sc, planted, strlen(planted)) != 0);
    char mac[HMAC_HEX_LEN + 1];
    CHECK(!redis_exists("session", session_mac(planted + 4, mac)));
    char cookie[128];
    snprintf(cookie, sizeof cookie, "%.*s", (int)strcspn(sc, ";"), sc);
    CHECK_INT_EQ(me(cookie, NULL, NULL), 200);
    /* GET /auth/logout from another site (a link, an image) or with no sign of where it comes
     * from is refused and ends nothing; so is a POST showing a foreign Origin. */
    resp r;
    char url[128], h[1024];
    snprintf(url, sizeof url, "%s/auth/logout", g_api);
    CHECK_INT_EQ(http(&r, "GET", url, cookie, NULL, NULL), 403);
    CHECK_INT_EQ(http_x(&r, "GET", url, cookie, NULL, NULL, "Referer: http://evil.test/page"), 403);
    CHECK_INT_EQ(http_x(&r, "GET", url, cookie, NULL, NULL, "Sec-Fetch-Site: cross-site"), 403);
    CHECK_INT_EQ(http_x(&r, "POST", url, cookie, NULL, NULL, "Origin: http://evil.test"), 403);
    CHECK_INT_EQ(
        http_x(&r, "GET", url, cookie, NULL, NULL, "Referer: http://front.test:3000.evil.test/"),
        403);
    CHECK_INT_EQ(me(cookie, NULL, NULL), 200);
    /* GET from the front end's page (the original contract) still logs out. */
    CHECK_INT_EQ(http_x(&r, "GET", url, cookie, NULL, NULL, "Referer: " FRONT "/dashboard"), 302);
    CHECK_INT_EQ(me(cookie, NULL, NULL), 401);
    /* POST /auth/logout: 302 to the front end, cookie cleared, session gone server-side. */
    CHECK_INT_EQ(login("sam@example.com", cookie, sizeof cookie), 0);
    CHECK_INT_EQ(http(&r, "POST", url, cookie, NULL, NULL), 302);
    CHECK_STR_EQ(header(&r, "Location", h, sizeof h), FRONT);
    CHECK_STR_CONTAINS(header(&r, "Set-Cookie", h, sizeof h), "sid=; Path=/; Max-Age=0; HttpOnly");
    CHECK(!redis_exists("session", session_mac(cookie + 4, mac)));
    /* The old cookie (a copy kept by an attacker) no longer works. */
    CHECK_INT_EQ(me(cookie, NULL, &v), 401);
    CHECK(json_is_false(json_object_get(v, "loggedIn")));
    json_decref(v);
}

TEST(staff_forbidden)
{
    char cookie[128], url[160];
    CHECK_INT_EQ(login("sam@example.com", cookie, sizeof cookie), 0);
    json_t *v = NULL;
    CHECK_INT_EQ(me(cookie, NULL, &v), 200);
    CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(v, "user"), "role")), "staff");
    json_decref(v);
    char key[64], id[32];
    CHECK_INT_EQ(create_key(cookie, NULL, "{\"role\":\"staff\"}", key, id), 403);
    resp r;
    snprintf(url, sizeof url, "%s/api/keys", g_api);
    CHECK_INT_EQ(http(&r, "GET", url, cookie, NULL, NULL), 403);
    snprintf(url, sizeof url, "%s/api/keys/0123456789abcdef01234567", g_api);
    CHECK_INT_EQ(http(&r, "DELETE", url, cookie, NULL, NULL), 403);
    snprintf(url, sizeof url, "%s/api/users", g_api);
    CHECK_INT_EQ(http(&r, "GET", url, cookie, NULL, NULL), 403);
}

TEST(api_keys_http)
{
    char admin[128], url[160], auth[128], skey[64], sid_[32], akey[64], aid[32];
    CHECK_INT_EQ(login(ADMIN_EMAIL, admin, sizeof admin), 0);
    /* Validation. */
    CHECK_INT_EQ(create_key(admin, NULL, "{\"role\":\"root\"}", skey, sid_), 400);
    CHECK_INT_EQ(create_key(admin, NULL, "{\"role\":\"staff\",\"x\":1}", skey, sid_), 400);
    CHECK_INT_EQ(create_key(admin, NULL, "{\"role\":\"staff\",\"name\":5}", skey, sid_), 400);
    /* Create a staff key and an admin key from the admin session. */
    CHECK_INT_EQ(create_key(admin, NULL, "{\"role\":\"staff\",\"name\":\"reports\"}", skey, sid_),
                 201);
    CHECK(strncmp(skey, "mck_", 4) == 0 && strlen(skey) == 47);
    CHECK_INT_EQ(create_key(admin, NULL, "{\"role\":\"admin\",\"name\":\"ops\"}", akey, aid), 201);
    /* The list never shows a key or a hash. */
    resp r;
    snprintf(url, sizeof url, "%s/api/keys", g_api);
    CHECK_INT_EQ(http(&r, "GET", url, admin, NULL, NULL), 200);
    CHECK(strstr(r.body, skey + 12) == NULL && strstr(r.body, akey + 12) == NULL);
    CHECK(strstr(r.body, "key_hash") == NULL);
    char hash[65];
    auth_sha256_hex(skey, strlen(skey), hash);
    CHECK(strstr(r.body, hash) == NULL);
    CHECK_STR_CONTAINS(r.body, sid_);
    CHECK_STR_CONTAINS(r.body, "\"name\":\"reports\"");
    /* Use the staff key: it authenticates as staff; key management is forbidden to it. */
    snprintf(auth, sizeof auth, "Bearer %s", skey);
    json_t *v = NULL;
    CHECK_INT_EQ(me(NULL, auth, &v), 200);
    CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(v, "user"), "role")), "staff");
    CHECK_STR_EQ(json_string_value(json_object_get(v, "via")), "api_key");
    json_decref(v);
    char k2[64], i2[32];
    CHECK_INT_EQ(create_key(NULL, auth, "{\"role\":\"admin\"}", k2, i2), 403);
    /* lastUsedAt is recorded. */
    CHECK_INT_EQ(http(&r, "GET", url, admin, NULL, NULL), 200);
    json_t *arr = body_json(&r), *x;
    size_t i;
    bool used = false;
    json_array_foreach(arr, i, x) if (!strcmp(json_string_value(json_object_get(x, "id")), sid_))
        used = json_is_string(json_object_get(x, "lastUsedAt"));
    json_decref(arr);
    CHECK(used);
    /* The admin key manages keys: revoke the staff key, which then stops working. */
    char aauth[128];
    snprintf(aauth, sizeof aauth, "Bearer %s", akey);
    snprintf(url, sizeof url, "%s/api/keys/%s", g_api, sid_);
    CHECK_INT_EQ(http(&r, "DELETE", url, NULL, aauth, NULL), 200);
    CHECK_STR_CONTAINS(r.body, "\"revoked\":true");
    CHECK_INT_EQ(me(NULL, auth, NULL), 401);
    snprintf(url, sizeof url, "%s/api/keys/0123456789abcdef01234567", g_api);
    CHECK_INT_EQ(http(&r, "DELETE", url, NULL, aauth, NULL), 404);
    snprintf(url, sizeof url, "%s/api/keys/nothex", g_api);
    CHECK_INT_EQ(http(&r, "DELETE", url, NULL, aauth, NULL), 400);
}

/* Run the CLI, returning its first stdout line in out and its exit status. */
static int cli(const char *args, char *out, size_t n)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' --set mongo.uri='%s' %s 2>/dev/null", testenv_bin("minicrm"),
             g_env.mongo_uri, args);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    out[0] = '\0';
    char line[1024];
    size_t len = 0;
    while (fgets(line, sizeof line, p)) /* keep all output (list) */
        len += (size_t)snprintf(out + len, len < n ? n - len : 0, "%s", line);
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(cli_keys)
{
    char out[8192], auth[128], args[256];
    CHECK_INT_EQ(cli("keys create --role admin --name ci-bot", out, sizeof out), 0);
    out[strcspn(out, "\n")] = '\0';
    CHECK(strncmp(out, "mck_", 4) == 0 && strlen(out) == 47);
    char key[64];
    snprintf(key, sizeof key, "%s", out);
    snprintf(auth, sizeof auth, "Bearer %s", key);
    json_t *v = NULL;
    CHECK_INT_EQ(me(NULL, auth, &v), 200);
    CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(v, "user"), "role")), "admin");
    json_decref(v);
    CHECK_INT_EQ(cli("keys list", out, sizeof out), 0);
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%.12s", key);
    CHECK_STR_CONTAINS(out, prefix);
    CHECK(strstr(out, key) == NULL);
    CHECK_INT_EQ(cli("keys create --role root", out, sizeof out), 2);
    CHECK_INT_EQ(cli("keys revoke nonsense", out, sizeof out), 2);
    CHECK_INT_EQ(cli("keys revoke mck_zzzzzzzz", out, sizeof out), 1);
    snprintf(args, sizeof args, "keys revoke %s", prefix);
    /* The CLI is another process: the API trusts the key it just checked for up to
     * auth.key_cache_ttl_s (KEY_CACHE_TTL_S here), then sees the revocation. */
    int64_t t0 = time_mono_ms();
    CHECK_INT_EQ(cli(args, out, sizeof out), 0);
    long st = 200;
    while ((st = me(NULL, auth, NULL)) == 200 && time_mono_ms() - t0 < KEY_CACHE_TTL_S * 3000)
        usleep(20000);
    int64_t took = time_mono_ms() - t0;
    CHECK_INT_EQ(st, 401);
    CHECK(took <= KEY_CACHE_TTL_S * 1000 + 1500);
}

TEST(unauthenticated_401)
{
    static const char *const paths[][2] = {
        {"GET", "/api/keys"},
        {"POST", "/api/keys"},
        {"DELETE", "/api/keys/0123456789abcdef01234567"},
        {"GET", "/api/users"},
    };
    static const char *const creds[][2] = {
        {NULL, NULL},
        {NULL, "Bearer mck_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
        {NULL, "Bearer "},
        {NULL, "Basic YWRtaW46YWRtaW4="},
        {"sid=2222222222222222222222222222222222222222222222222222222222222222", NULL},
        {"sid=../../etc", NULL},
    };
    char url[160];
    resp r;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        for (size_t j = 0; j < sizeof creds / sizeof creds[0]; j++) {
            snprintf(url, sizeof url, "%s%s", g_api, paths[i][1]);
            long st = http(&r, paths[i][0], url, creds[j][0], creds[j][1],
                           !strcmp(paths[i][0], "POST") ? "{\"role\":\"admin\"}" : NULL);
            CHECK_MSG(st == 401, "%s %s with creds #%zu: %ld", paths[i][0], paths[i][1], j, st);
        }
    /* The other protected routes of the contract (registered by the API core). */
    static const char *const others[][2] = {
        {"GET", "/customers"},     {"POST", "/customers"},    {"GET", "/orders"},
        {"POST", "/orders"},       {"GET", "/api/campaigns"}, {"POST", "/api/campaigns"},
        {"GET", "/communication"},
    };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        snprintf(url, sizeof url, "%s%s", g_api, others[i][1]);
        long st = http(&r, others[i][0], url, NULL, NULL, "{}");
        if (st == 404) { /* the API core has not registered it yet in this tree */
            printf("  note: %s %s not registered yet\n", others[i][0], others[i][1]);
            continue;
        }
        CHECK_MSG(st == 401, "%s %s without credentials: %ld", others[i][0], others[i][1], st);
    }
    json_t *v = NULL;
    CHECK_INT_EQ(me(NULL, NULL, &v), 401);
    CHECK(json_is_false(json_object_get(v, "loggedIn")));
    json_decref(v);
}

TEST(cors_for_frontend_with_credentials)
{
    resp r;
    char url[160], h[512], cookie[128];
    /* Preflight from the front end: allowed, with credentials and the Authorization header. */
    snprintf(url, sizeof url, "%s/api/keys", g_api);
    CHECK_INT_EQ(http_x(&r, "OPTIONS", url, NULL, NULL, NULL,
                        "Origin: " FRONT "\nAccess-Control-Request-Method: POST"),
                 204);
    CHECK_STR_EQ(header(&r, "Access-Control-Allow-Origin", h, sizeof h), FRONT);
    CHECK_STR_EQ(header(&r, "Access-Control-Allow-Credentials", h, sizeof h), "true");
    CHECK_STR_CONTAINS(header(&r, "Access-Control-Allow-Methods", h, sizeof h), "POST");
    CHECK_STR_CONTAINS(header(&r, "Access-Control-Allow-Headers", h, sizeof h), "Authorization");
    /* Another origin: refused, and never an Allow-Origin header. */
    CHECK_INT_EQ(http_x(&r, "OPTIONS", url, NULL, NULL, NULL, "Origin: http://evil.test"), 403);
    CHECK(header(&r, "Access-Control-Allow-Origin", h, sizeof h) == NULL);
    /* A credentialed request from the front end gets its origin echoed; others do not. */
    CHECK_INT_EQ(login("sam@example.com", cookie, sizeof cookie), 0);
    snprintf(url, sizeof url, "%s/auth/me", g_api);
    CHECK_INT_EQ(http_x(&r, "GET", url, cookie, NULL, NULL, "Origin: " FRONT), 200);
    CHECK_STR_EQ(header(&r, "Access-Control-Allow-Origin", h, sizeof h), FRONT);
    CHECK_STR_EQ(header(&r, "Access-Control-Allow-Credentials", h, sizeof h), "true");
    CHECK_INT_EQ(http_x(&r, "GET", url, cookie, NULL, NULL, "Origin: http://evil.test"), 200);
    CHECK(header(&r, "Access-Control-Allow-Origin", h, sizeof h) == NULL);
}

TEST(first_login_is_not_admin)
{
    /* Runs first, on an empty store: before issue 12 this person became admin. */
    char cookie[128];
    CHECK_INT_EQ(login("early@example.com", cookie, sizeof cookie), 0);
    json_t *v = NULL;
    CHECK_INT_EQ(me(cookie, NULL, &v), 200);
    CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(v, "user"), "role")), "staff");
    json_decref(v);
}

/* A login that must be refused: the callback lands on /auth/failure?reason=<want>, sets no
 * session, and /auth/failure explains the reason. */
static void check_refused(const char *email, const char *want)
{
    char cb[2048], state[128], sc[1024], loc[1024], url[256], expect[128];
    CHECK_INT_EQ(begin_login(email, cb, sizeof cb, state, sizeof state), 0);
    CHECK_INT_EQ(finish_login(cb, NULL, sc, sizeof sc, loc, sizeof loc), 302);
    snprintf(expect, sizeof expect, "/auth/failure?reason=%s", want);
    CHECK_STR_EQ(loc, expect);
    CHECK(strncmp(sc, "sid=", 4) != 0);
    resp r;
    snprintf(url, sizeof url, "%s%s", g_api, loc);
    CHECK_INT_EQ(http(&r, "GET", url, NULL, NULL, NULL), 401);
    json_t *v = body_json(&r);
    CHECK_STR_EQ(json_string_value(json_object_get(v, "reason")), want);
    CHECK_STR_CONTAINS(json_string_value(json_object_get(v, "error")), "Google login failed: ");
    json_decref(v);
}

TEST(allow_lists_and_verified_email)
{
    char cookie[128];
    /* Listed email of another domain: in, as staff. */
    CHECK_INT_EQ(login("guest@gmail.test", cookie, sizeof cookie), 0);
    json_t *v = NULL;
    CHECK_INT_EQ(me(cookie, NULL, &v), 200);
    CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(v, "user"), "role")), "staff");
    json_decref(v);
    /* Unlisted domain and email, a look-alike domain, a sub-domain: refused. */
    check_refused("stranger@gmail.test", "not_allowed");
    check_refused("eve@example.com.evil.test", "not_allowed");
    check_refused("eve@sub.example.com", "not_allowed");
    /* An allowed domain, but the provider does not vouch for the email. */
    check_refused("unverified-ann@example.com", "email_unverified");
    /* Refused people were not stored. */
    char admin[128], url[128];
    CHECK_INT_EQ(login(ADMIN_EMAIL, admin, sizeof admin), 0);
    resp r;
    snprintf(url, sizeof url, "%s/api/users", g_api);
    CHECK_INT_EQ(http(&r, "GET", url, admin, NULL, NULL), 200);
    CHECK(strstr(r.body, "stranger@") == NULL && strstr(r.body, "unverified-ann@") == NULL);
    CHECK_STR_CONTAINS(r.body, "guest@gmail.test");
}

TEST(login_csrf_two_jars)
{
    /* The victim is logged in in their browser (jar V). */
    char victim[128];
    CHECK_INT_EQ(login("victim@example.com", victim, sizeof victim), 0);
    /* The attacker starts a login as themself in their own browser (jar A) and gets the
     * provider's callback URL, which they make the victim's browser open. */
    char cb[2048], state[128], sc[1024], loc[1024], jar_a[128];
    CHECK_INT_EQ(begin_login("attacker@example.com", cb, sizeof cb, state, sizeof state), 0);
    snprintf(jar_a, sizeof jar_a, "%s", g_jar);
    /* Jar V has no pre-login cookie: refused, no new session, the victim still themself. */
    CHECK_INT_EQ(finish_login_jar(cb, victim, "", sc, sizeof sc, loc, sizeof loc), 302);
    CHECK_STR_EQ(loc, "/auth/failure?reason=wrong_browser");
    CHECK(strncmp(sc, "sid=", 4) != 0);
    json_t *v = NULL;
    CHECK_INT_EQ(me(victim, NULL, &v), 200);
    CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(v, "user"), "email")),
                 "victim@example.com");
    json_decref(v);
    /* The refused state is spent: the attacker cannot finish it either. */
    CHECK_INT_EQ(finish_login_jar(cb, NULL, jar_a, sc, sizeof sc, loc, sizeof loc), 302);
    CHECK_STR_EQ(loc, "/auth/failure?reason=state");
    /* Jar V holding a pre-login cookie of its own (the victim once started a login): another
     * nonce, still refused. */
    char cb2[2048], state2[128], jar_v[128];
    CHECK_INT_EQ(begin_login("victim@example.com", cb2, sizeof cb2, state2, sizeof state2), 0);
    snprintf(jar_v, sizeof jar_v, "%s", g_jar);
    CHECK_INT_EQ(begin_login("attacker@example.com", cb, sizeof cb, state, sizeof state), 0);
    CHECK_INT_EQ(finish_login_jar(cb, victim, jar_v, sc, sizeof sc, loc, sizeof loc), 302);
    CHECK_STR_EQ(loc, "/auth/failure?reason=wrong_browser");
    CHECK(strncmp(sc, "sid=", 4) != 0);
    CHECK_INT_EQ(me(victim, NULL, &v), 200);
    CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(v, "user"), "email")),
                 "victim@example.com");
    json_decref(v);
}

/* ---------------------------------------------------------------- setup */

static void teardown(void)
{
    if (g_api_pid > 0)
        testenv_kill_wait(g_api_pid, SIGTERM, 5000);
    if (g_mock_pid > 0)
        testenv_kill_wait(g_mock_pid, SIGTERM, 5000);
    rconn_free(g_redis);
    testenv_stop(&g_env);
    curl_global_cleanup();
}

static int setup(void)
{
    char dir[512], cmd[1200], log[600];
    snprintf(dir, sizeof dir, "%s/../oauth-mock", MINICRM_BIN_DIR);
    snprintf(cmd, sizeof cmd, "sh '%s/tests/api/oauth-mock/install.sh' '%s'", MINICRM_SOURCE_DIR,
             dir);
    if (system(cmd) != 0) {
        return test_skip_program("test_auth_flow: the local OAuth provider (npm "
                                 "oauth2-mock-server) could not be installed; see the message "
                                 "above");
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (testenv_start(&g_env, TESTENV_REDIS | TESTENV_DEVDB) != 0)
        return 1;
    char err[256];
    g_redis = rconn_new(g_env.redis_url, 5000, err, sizeof err);

    int mport = testenv_free_port();
    char mjs[600], mp[16];
    snprintf(mjs, sizeof mjs, "%s/mock.mjs", dir);
    snprintf(mp, sizeof mp, "%d", mport);
    snprintf(log, sizeof log, "%s/oauth-mock.log", g_env.dir);
    char *margv[] = {"node", mjs, mp, NULL};
    g_mock_pid = testenv_spawn(margv, log);
    if (g_mock_pid < 0 || testenv_wait_port(mport, 20000) != 0) {
        fprintf(stderr, "oauth mock did not start (log %s)\n", log);
        return 1;
    }
    snprintf(g_mock, sizeof g_mock, "http://127.0.0.1:%d", mport);

    int aport = testenv_free_port();
    snprintf(g_api, sizeof g_api, "http://127.0.0.1:%d", aport);
    char s[16][600];
    snprintf(s[0], sizeof s[0], "mongo.uri=%s", g_env.mongo_uri);
    snprintf(s[1], sizeof s[1], "redis.url=%s", g_env.redis_url);
    snprintf(s[2], sizeof s[2], "redis.prefix=%s", g_env.prefix);
    snprintf(s[3], sizeof s[3], "api.port=%d", aport);
    snprintf(s[4], sizeof s[4], "api.frontend_url=%s", FRONT);
    snprintf(s[5], sizeof s[5], "auth.google_client_id=minicrm-test");
    snprintf(s[6], sizeof s[6], "auth.google_client_secret=test-secret");
    snprintf(s[7], sizeof s[7], "auth.google_callback_url=%s/auth/google/callback", g_api);
    snprintf(s[8], sizeof s[8], "auth.google_auth_url=%s/authorize", g_mock);
    snprintf(s[9], sizeof s[9], "auth.google_token_url=%s/token", g_mock);
    snprintf(s[10], sizeof s[10], "auth.google_userinfo_url=%s/userinfo", g_mock);
    snprintf(s[11], sizeof s[11], "auth.admin_emails=other@example.com, BOSS@example.com");
    snprintf(s[12], sizeof s[12], "auth.allowed_domains=example.com");
    snprintf(s[13], sizeof s[13], "auth.allowed_emails=guest@gmail.test");
    snprintf(s[14], sizeof s[14], "auth.session_secret=" SESSION_SECRET);
    snprintf(s[15], sizeof s[15], "auth.login_rate_per_min=10000");
    char *aargv[2 + 2 * 16 + 6];
    int n = 0;
    aargv[n++] = (char *)testenv_bin("minicrm-api");
    for (int i = 0; i < 16; i++) {
        aargv[n++] = "--set";
        aargv[n++] = s[i];
    }
    aargv[n++] = "--set";
    aargv[n++] = "auth.key_cache_ttl_s=" KEY_CACHE_TTL_S_STR;
    aargv[n++] = "--set";
    aargv[n++] = "api.bind=127.0.0.1";
    aargv[n] = NULL;
    snprintf(log, sizeof log, "%s/api.log", g_env.dir);
    g_api_pid = testenv_spawn(aargv, log);
    if (g_api_pid < 0 || testenv_wait_port(aport, 20000) != 0) {
        fprintf(stderr, "minicrm-api did not start (log %s)\n", log);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        TEST_ENTRY(first_login_is_not_admin),
        TEST_ENTRY(authorize_redirect),
        TEST_ENTRY(login_admin_session),
        TEST_ENTRY(login_returns_to_dashboard),
        TEST_ENTRY(state_missing_wrong_reused),
        TEST_ENTRY(pkce_and_provider_failures),
        TEST_ENTRY(session_fixation_and_logout),
        TEST_ENTRY(staff_forbidden),
        TEST_ENTRY(api_keys_http),
        TEST_ENTRY(cli_keys),
        TEST_ENTRY(unauthenticated_401),
        TEST_ENTRY(cors_for_frontend_with_credentials),
        TEST_ENTRY(allow_lists_and_verified_email),
        TEST_ENTRY(login_csrf_two_jars),
    };
    int rc = setup();
    if (rc != 0) {
        teardown();
        return rc;
    }
    rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    /* The API must stop cleanly on SIGTERM (exit 0); under the sanitizers a leak or an error
     * in the API process shows up here as a non-zero status. */
    int st = testenv_kill_wait(g_api_pid, SIGTERM, 15000);
    g_api_pid = -1;
    if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "FAIL minicrm-api did not exit 0 on SIGTERM (wait status %d)\n", st);
        rc = 1;
    }
    teardown();
    return rc;
}
