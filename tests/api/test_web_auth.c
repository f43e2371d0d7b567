/*
 * test_web_auth: signing in to the dashboard with an API key and the CSRF rule for cookie
 * sessions (issue 16 point 2), against a real minicrm-api on private Redis + devdb.
 *
 *   key_login_gives_session        POST /auth/key {"key"} -> HttpOnly sid cookie; /auth/me and a
 *                                  staff route work with the cookie alone; the key is not in
 *                                  the answer
 *   form_login_redirects           the same from a plain HTML form: 302 to / with the cookie
 *   bad_keys_are_401               malformed, unknown and missing keys; wrong body types
 *   login_from_another_site_403    a foreign Origin cannot sign a browser in (login CSRF)
 *   revoked_key_ends_session       `minicrm keys revoke` in another process: the session opened
 *                                  with that key stops within auth.key_cache_ttl_s (2 s here)
 *   logout_from_dashboard          POST /auth/logout from the API's own origin: 200 JSON, the
 *                                  session is gone
 *   csrf_cookie_changes            cookie + POST: foreign Origin 403, no Origin/Referer 403,
 *                                  Referer of the API 201, Origin of FRONTEND_URL 201 with the
 *                                  CORS headers (the old React client), API key + foreign Origin
 *                                  201, cookie GET from anywhere 200, the signed receipts route
 *                                  never 403
 *   failed_logins_are_limited      past auth.login_rate_per_min failures (5 here) from one
 *                                  address: 429 with Retry-After, even for a valid key (last:
 *                                  it spends this address's budget)
 */
#include "apitest.h"
#include "test.h"
#include "timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FRONT "http://front.test:3000"

static apitest T;

static int start(void)
{
    static const char *const env[] = {"FRONTEND_URL=" FRONT, "MINICRM_AUTH_KEY_CACHE_TTL_S=2",
                                      "MINICRM_AUTH_LOGIN_RATE_PER_MIN=5", NULL};
    return apitest_ensure(&T, env);
}

/* The bare key of an "Authorization: Bearer mck_..." line. */
static const char *bare(const char *auth_line)
{
    const char *p = strstr(auth_line, "mck_");
    return p ? p : "";
}

/* POST /auth/key with the key as JSON; the "Cookie: sid=..." line of the answer into cookie
 * (empty if none). Returns the status. */
static long key_login(const char *key, const char *origin, char *cookie, size_t n)
{
    char body[256], o[128];
    snprintf(body, sizeof body, "{\"key\":\"%s\"}", key);
    snprintf(o, sizeof o, "Origin: %s", origin ? origin : "");
    const char *h[] = {origin ? o : NULL, NULL};
    apitest_resp r;
    cookie[0] = '\0';
    if (apitest_request(&T, "POST", "/auth/key", h, body, strlen(body), &r) != 0)
        return -1;
    char sc[512];
    if (apitest_resp_header(&r, "Set-Cookie", sc, sizeof sc)) {
        size_t len = strcspn(sc, ";");
        snprintf(cookie, n, "Cookie: %.*s", (int)len, sc);
    }
    long st = r.status;
    apitest_resp_release(&r);
    return st;
}

static long call(const char *method, const char *path, const char *h1, const char *h2,
                 const char *body, apitest_resp *out)
{
    const char *h[] = {h1, h2, NULL};
    apitest_resp r;
    if (apitest_request(&T, method, path, h[0] ? h : NULL, body, body ? strlen(body) : 0, &r) != 0)
        return -1;
    long st = r.status;
    if (out)
        *out = r;
    else
        apitest_resp_release(&r);
    return st;
}

static char g_self[80]; /* "Origin: http://127.0.0.1:<port>" */

static const char *self_origin(void)
{
    snprintf(g_self, sizeof g_self, "Origin: %s", T.base);
    return g_self;
}

static int g_seq;

static const char *customer_body(char *buf, size_t n)
{
    int k = ++g_seq;
    snprintf(buf, n, "{\"name\":\"Web %d\",\"email\":\"web%d-%d@example.com\"}", k, (int)getpid(),
             k);
    return buf;
}

TEST(key_login_gives_session)
{
    CHECK(start() == 0);
    char body[256];
    snprintf(body, sizeof body, "{\"key\":\"%s\"}", bare(apitest_staff_auth(&T)));
    apitest_resp r;
    CHECK(apitest_request(&T, "POST", "/auth/key", NULL, body, strlen(body), &r) == 0);
    char sc[512] = "";
    apitest_resp_header(&r, "Set-Cookie", sc, sizeof sc);
    long st = r.status;
    bool key_echoed = strstr(r.body, "mck_") != NULL;
    const char *role = json_string_value(json_object_get(json_object_get(r.json, "user"), "role"));
    bool staff = role && strcmp(role, "staff") == 0;
    apitest_resp_release(&r);
    CHECK_INT_EQ(st, 200);
    CHECK(staff);
    CHECK(!key_echoed);
    CHECK(strncmp(sc, "sid=", 4) == 0);
    CHECK_STR_CONTAINS(sc, "HttpOnly");
    CHECK_STR_CONTAINS(sc, "SameSite=Lax");
    char cookie[200];
    snprintf(cookie, sizeof cookie, "Cookie: %.*s", (int)strcspn(sc, ";"), sc);
    CHECK_INT_EQ(call("GET", "/auth/me", cookie, NULL, NULL, &r), 200);
    bool in = json_is_true(json_object_get(r.json, "loggedIn"));
    apitest_resp_release(&r);
    CHECK(in);
    CHECK_INT_EQ(call("GET", "/customers?limit=1", cookie, NULL, NULL, NULL), 200);
    /* A staff key's session is staff, not admin. */
    CHECK_INT_EQ(call("GET", "/api/keys", cookie, NULL, NULL, NULL), 403);
}

TEST(form_login_redirects)
{
    CHECK(start() == 0);
    char body[256];
    snprintf(body, sizeof body, "key=%s", bare(apitest_admin_auth(&T)));
    const char *h[] = {"Content-Type: application/x-www-form-urlencoded", self_origin(), NULL};
    apitest_resp r;
    CHECK(apitest_request(&T, "POST", "/auth/key", h, body, strlen(body), &r) == 0);
    char sc[512] = "", loc[64] = "";
    apitest_resp_header(&r, "Set-Cookie", sc, sizeof sc);
    apitest_resp_header(&r, "Location", loc, sizeof loc);
    long st = r.status;
    apitest_resp_release(&r);
    CHECK_INT_EQ(st, 302);
    CHECK_STR_EQ(loc, "/");
    CHECK(strncmp(sc, "sid=", 4) == 0);
    char cookie[200];
    snprintf(cookie, sizeof cookie, "Cookie: %.*s", (int)strcspn(sc, ";"), sc);
    CHECK_INT_EQ(call("GET", "/api/keys", cookie, NULL, NULL, NULL), 200);
}

TEST(bad_keys_are_401)
{
    CHECK(start() == 0);
    char cookie[200];
    /* Three failures of this address's five (failed_logins_are_limited counts on it). */
    CHECK_INT_EQ(
        key_login("mck_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL, cookie, sizeof cookie),
        401);
    CHECK(cookie[0] == '\0');
    CHECK_INT_EQ(key_login("not-a-key", NULL, cookie, sizeof cookie), 401);
    CHECK_INT_EQ(call("POST", "/auth/key", NULL, NULL, "{\"key\":5}", NULL), 400);
    CHECK_INT_EQ(call("POST", "/auth/key", NULL, NULL, "[]", NULL), 400);
    CHECK_INT_EQ(call("POST", "/auth/key", "Content-Type: text/plain", NULL, "key", NULL), 415);
    CHECK_INT_EQ(call("POST", "/auth/key", "Content-Type: application/x-www-form-urlencoded", NULL,
                      "user=x", NULL),
                 400);
    CHECK_INT_EQ(call("POST", "/auth/key", "Content-Type: application/x-www-form-urlencoded", NULL,
                      "key=mck_x", NULL),
                 401);
}

TEST(login_from_another_site_403)
{
    CHECK(start() == 0);
    char cookie[200];
    CHECK_INT_EQ(key_login(bare(apitest_staff_auth(&T)), "http://evil.test", cookie, sizeof cookie),
                 403);
    CHECK(cookie[0] == '\0');
    CHECK_INT_EQ(key_login(bare(apitest_staff_auth(&T)), FRONT, cookie, sizeof cookie), 200);
}

TEST(revoked_key_ends_session)
{
    CHECK(start() == 0);
    apitest_resp r;
    CHECK_INT_EQ(call("POST", "/api/keys", apitest_admin_auth(&T), NULL,
                      "{\"role\":\"staff\",\"name\":\"to-revoke\"}", &r),
                 201);
    char key[80], id[32];
    snprintf(key, sizeof key, "%s", json_string_value(json_object_get(r.json, "key")));
    snprintf(id, sizeof id, "%s",
             json_string_value(json_object_get(json_object_get(r.json, "api_key"), "id")));
    apitest_resp_release(&r);
    char cookie[200];
    CHECK_INT_EQ(key_login(key, NULL, cookie, sizeof cookie), 200);
    CHECK_INT_EQ(call("GET", "/auth/me", cookie, NULL, NULL, NULL), 200);
    /* Revoked by another process (the CLI): this API learns it when its cached check expires. */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' keys revoke %s >/dev/null 2>&1", testenv_bin("minicrm"), id);
    CHECK_INT_EQ(system(cmd), 0);
    int64_t t0 = time_mono_ms();
    long st = 200;
    while (st == 200 && time_mono_ms() - t0 < 6000) {
        st = call("GET", "/auth/me", cookie, NULL, NULL, NULL);
        if (st == 200)
            usleep(100000);
    }
    int64_t took = time_mono_ms() - t0;
    CHECK_MSG(st == 401, "session still valid %lld ms after the revocation", (long long)took);
    CHECK_MSG(took <= 3500, "took %lld ms (key cache TTL 2 s)", (long long)took);
    /* Gone for good, and the session cannot come back. */
    CHECK_INT_EQ(call("GET", "/customers?limit=1", cookie, NULL, NULL, NULL), 401);
    CHECK_INT_EQ(key_login(key, NULL, cookie, sizeof cookie), 401);
}

TEST(logout_from_dashboard)
{
    CHECK(start() == 0);
    char cookie[200];
    CHECK_INT_EQ(key_login(bare(apitest_staff_auth(&T)), NULL, cookie, sizeof cookie), 200);
    apitest_resp r;
    CHECK_INT_EQ(call("POST", "/auth/logout", cookie, self_origin(), NULL, &r), 200);
    bool out = json_is_false(json_object_get(r.json, "loggedIn"));
    char sc[256] = "";
    apitest_resp_header(&r, "Set-Cookie", sc, sizeof sc);
    apitest_resp_release(&r);
    CHECK(out);
    CHECK_STR_CONTAINS(sc, "Max-Age=0");
    CHECK_INT_EQ(call("GET", "/auth/me", cookie, NULL, NULL, NULL), 401);
    /* The front end keeps the contract's redirect. */
    CHECK_INT_EQ(key_login(bare(apitest_staff_auth(&T)), NULL, cookie, sizeof cookie), 200);
    CHECK_INT_EQ(call("POST", "/auth/logout", cookie, "Origin: " FRONT, NULL, NULL), 302);
}

TEST(csrf_cookie_changes)
{
    CHECK(start() == 0);
    char cookie[200], body[200], ref[120];
    CHECK_INT_EQ(key_login(bare(apitest_staff_auth(&T)), NULL, cookie, sizeof cookie), 200);
    apitest_resp r;
    CHECK_INT_EQ(call("POST", "/customers", cookie, "Origin: http://evil.test",
                      customer_body(body, sizeof body), &r),
                 403);
    bool json_err = json_is_string(json_object_get(r.json, "error"));
    apitest_resp_release(&r);
    CHECK(json_err);
    CHECK_INT_EQ(
        call("POST", "/customers", cookie, "Origin: null", customer_body(body, sizeof body), NULL),
        403);
    CHECK_INT_EQ(call("POST", "/customers", cookie, "Referer: http://evil.test/x",
                      customer_body(body, sizeof body), NULL),
                 403);
    CHECK_INT_EQ(call("POST", "/customers", cookie, NULL, customer_body(body, sizeof body), NULL),
                 403);
    /* A look-alike host is not this API. */
    snprintf(ref, sizeof ref, "Origin: %s.evil.test", T.base);
    CHECK_INT_EQ(call("POST", "/customers", cookie, ref, customer_body(body, sizeof body), NULL),
                 403);
    CHECK_INT_EQ(call("DELETE", "/api/keys/000000000000000000000000", cookie,
                      "Origin: http://evil.test", NULL, NULL),
                 403);
    /* The dashboard: Referer (or Origin) of the API itself. */
    snprintf(ref, sizeof ref, "Referer: %s/ui/customers", T.base);
    CHECK_INT_EQ(call("POST", "/customers", cookie, ref, customer_body(body, sizeof body), NULL),
                 201);
    CHECK_INT_EQ(
        call("POST", "/customers", cookie, self_origin(), customer_body(body, sizeof body), NULL),
        201);
    /* The old React front end: credentials from FRONTEND_URL, CORS answered as before. */
    CHECK_INT_EQ(
        call("POST", "/customers", cookie, "Origin: " FRONT, customer_body(body, sizeof body), &r),
        201);
    char acao[128] = "", acac[16] = "";
    apitest_resp_header(&r, "Access-Control-Allow-Origin", acao, sizeof acao);
    apitest_resp_header(&r, "Access-Control-Allow-Credentials", acac, sizeof acac);
    apitest_resp_release(&r);
    CHECK_STR_EQ(acao, FRONT);
    CHECK_STR_EQ(acac, "true");
    CHECK_INT_EQ(call("OPTIONS", "/customers", "Origin: " FRONT,
                      "Access-Control-Request-Method: POST", NULL, NULL),
                 204);
    /* An API key is not a cookie: no Origin rule. */
    CHECK_INT_EQ(call("POST", "/customers", apitest_staff_auth(&T), "Origin: http://evil.test",
                      customer_body(body, sizeof body), NULL),
                 201);
    /* Reads are not changes. */
    CHECK_INT_EQ(call("GET", "/customers?limit=1", cookie, "Origin: http://evil.test", NULL, NULL),
                 200);
    /* The signed receipts route is public (HMAC): a cookie and a foreign Origin change nothing. */
    long st = call("POST", "/api/receipts/delivery", cookie, "Origin: http://evil.test",
                   "{\"log_id\":\"000000000000000000000000\",\"status\":\"SENT\"}", NULL);
    CHECK_MSG(st == 401, "receipts: %ld (expected the signature's 401)", st);
}

TEST(failed_logins_are_limited)
{
    CHECK(start() == 0);
    char cookie[200];
    long st = 0;
    for (int i = 0; i < 10 && st != 429; i++)
        st = key_login("mck_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB", NULL, cookie,
                       sizeof cookie);
    CHECK_INT_EQ(st, 429);
    apitest_resp r;
    char body[256];
    snprintf(body, sizeof body, "{\"key\":\"%s\"}", bare(apitest_staff_auth(&T)));
    CHECK(apitest_request(&T, "POST", "/auth/key", NULL, body, strlen(body), &r) == 0);
    char ra[16] = "";
    apitest_resp_header(&r, "Retry-After", ra, sizeof ra);
    st = r.status;
    apitest_resp_release(&r);
    CHECK_INT_EQ(st, 429);
    CHECK(strtol(ra, NULL, 10) > 0);
    /* API keys in the header are not sign-ins: unaffected. */
    CHECK_INT_EQ(call("GET", "/auth/me", apitest_staff_auth(&T), NULL, NULL, NULL), 200);
}

TEST_MAIN(TEST_ENTRY(key_login_gives_session), TEST_ENTRY(form_login_redirects),
          TEST_ENTRY(bad_keys_are_401), TEST_ENTRY(login_from_another_site_403),
          TEST_ENTRY(revoked_key_ends_session), TEST_ENTRY(logout_from_dashboard),
          TEST_ENTRY(csrf_cookie_changes), TEST_ENTRY(failed_logins_are_limited))
