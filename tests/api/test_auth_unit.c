/*
 * test_auth_unit: the auth building blocks without HTTP: encodings and PKCE (RFC 7636 test
 * vector), cookie building and parsing, the admin list, and, against a private redis-server,
 * OAuth state (stored with TTL, single use, concurrent consumers) and sessions (create, read,
 * TTL, destroy, malformed ids never reach Redis).
 */
#include "auth_crypto.h"
#include "auth_keycache.h"
#include "auth_oauth.h"
#include "auth_session.h"
#include "auth_users.h"
#include "config.h"
#include "hmac.h"
#include "rconn.h"
#include "test.h"
#include "testenv.h"

#include <pthread.h>
#include <stdlib.h>

static testenv g_env;
static bool g_env_up;
static minicrm_config g_cfg;

static void stop_env(void)
{
    testenv_stop(&g_env);
    cfg_release(&g_cfg);
}

/* Private Redis + a config pointing at it (started once per process). */
static rconn *redis_for_test(void)
{
    char err[256];
    if (!g_env_up) {
        if (testenv_start(&g_env, TESTENV_REDIS) != 0)
            return NULL;
        g_env_up = true;
        cfg_init(&g_cfg);
        cfg_set(&g_cfg, "redis.prefix", g_env.prefix, "test", err, sizeof err);
        cfg_set(&g_cfg, "redis.url", g_env.redis_url, "test", err, sizeof err);
        cfg_set(&g_cfg, "auth.google_client_id", "cid-123", "test", err, sizeof err);
        cfg_set(&g_cfg, "auth.session_secret", "unit-session-secret", "test", err, sizeof err);
        cfg_set(&g_cfg, "auth.google_client_secret", "csecret", "test", err, sizeof err);
        cfg_set(&g_cfg, "auth.google_auth_url", "http://127.0.0.1:9/authorize", "test", err,
                sizeof err);
        cfg_set(&g_cfg, "auth.google_callback_url", "http://localhost:5000/auth/google/callback",
                "test", err, sizeof err);
        atexit(stop_env);
    }
    return rconn_new(g_env.redis_url, 2000, err, sizeof err);
}

/* Value of query parameter `name` in url (raw, still percent-encoded) into out. */
static const char *url_param(const char *url, const char *name, char *out, size_t n)
{
    char pat[64];
    snprintf(pat, sizeof pat, "%s=", name);
    const char *q = strchr(url, '?');
    out[0] = '\0';
    for (const char *p = q; p && *p; p = strchr(p + 1, '&')) {
        if (!strncmp(p + 1, pat, strlen(pat))) {
            const char *v = p + 1 + strlen(pat);
            size_t len = strcspn(v, "&");
            snprintf(out, n, "%.*s", (int)len, v);
            return out;
        }
    }
    return NULL;
}

TEST(pkce_rfc7636_vector)
{
    /* RFC 7636 appendix B. */
    char ch[AUTH_OAUTH_STATE_LEN + 1];
    CHECK_INT_EQ(auth_oauth_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", ch), 0);
    CHECK_STR_EQ(ch, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
}

TEST(encodings)
{
    char out[128];
    auth_b64url((const unsigned char *)"\xfb\xff", 2, out);
    CHECK_STR_EQ(out, "-_8");
    auth_b64url((const unsigned char *)"foobar", 6, out);
    CHECK_STR_EQ(out, "Zm9vYmFy");
    auth_b64url((const unsigned char *)"f", 1, out);
    CHECK_STR_EQ(out, "Zg");
    CHECK_INT_EQ(auth_sha256_hex("abc", 3, out), 0);
    CHECK_STR_EQ(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(auth_is_b64url("ab-_Z9", 6));
    CHECK(!auth_is_b64url("ab+/Z9", 6));
    CHECK(!auth_is_b64url("abc", 4));
    CHECK(auth_is_lower_hex("0af9", 4));
    CHECK(!auth_is_lower_hex("0AF9", 4));
    unsigned char a[32], b[32];
    CHECK_INT_EQ(auth_random_bytes(a, sizeof a), 0);
    CHECK_INT_EQ(auth_random_bytes(b, sizeof b), 0);
    CHECK(!auth_ct_equal(a, b, sizeof a)); /* 2^-256 chance of a false failure */
}

TEST(cookie_attributes)
{
    minicrm_config cfg;
    char err[128], buf[512];
    cfg_init(&cfg);
    const char *sid = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    auth_session_cookie(&cfg, sid, buf, sizeof buf);
    CHECK_STR_EQ(buf, "sid=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef; "
                      "Path=/; Max-Age=86400; HttpOnly; SameSite=Lax");
    cfg_set(&cfg, "auth.cookie_secure", "true", "t", err, sizeof err);
    cfg_set(&cfg, "auth.cookie_samesite", "Strict", "t", err, sizeof err);
    cfg_set(&cfg, "auth.session_ttl_s", "3600", "t", err, sizeof err);
    auth_session_cookie(&cfg, sid, buf, sizeof buf);
    CHECK_STR_CONTAINS(buf, "; Max-Age=3600; HttpOnly; SameSite=Strict; Secure");
    /* SameSite=None without Secure is dropped by browsers: Secure is forced. */
    cfg_set(&cfg, "auth.cookie_secure", "false", "t", err, sizeof err);
    cfg_set(&cfg, "auth.cookie_samesite", "None", "t", err, sizeof err);
    auth_session_cookie(&cfg, sid, buf, sizeof buf);
    CHECK_STR_CONTAINS(buf, "SameSite=None; Secure");
    auth_session_cookie(&cfg, NULL, buf, sizeof buf);
    CHECK_STR_CONTAINS(buf, "sid=; Path=/; Max-Age=0; HttpOnly");
    cfg_release(&cfg);
}

TEST(cookie_header_parsing)
{
    char sid[AUTH_SID_LEN + 1];
    const char *good = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char hdr[512];
    snprintf(hdr, sizeof hdr, "a=1; sid=%s; b=2", good);
    CHECK_INT_EQ(auth_session_from_cookie_header(hdr, sid), 0);
    CHECK_STR_EQ(sid, good);
    snprintf(hdr, sizeof hdr, "sid=%s", good);
    CHECK_INT_EQ(auth_session_from_cookie_header(hdr, sid), 0);
    /* Wrong shapes are never accepted: upper case, short, long, other name, bare tokens. */
    CHECK_INT_EQ(auth_session_from_cookie_header("sid=ABC", sid), 1);
    snprintf(hdr, sizeof hdr, "sid=%sa", good);
    CHECK_INT_EQ(auth_session_from_cookie_header(hdr, sid), 1);
    snprintf(hdr, sizeof hdr, "xsid=%s", good);
    CHECK_INT_EQ(auth_session_from_cookie_header(hdr, sid), 1);
    CHECK_INT_EQ(auth_session_from_cookie_header("sid; flag; =x;;", sid), 1);
    CHECK_INT_EQ(auth_session_from_cookie_header(NULL, sid), 1);
    /* A malformed first sid does not hide a good second one. */
    snprintf(hdr, sizeof hdr, "sid=bad; sid=%s", good);
    CHECK_INT_EQ(auth_session_from_cookie_header(hdr, sid), 0);
}

TEST(admin_list)
{
    CHECK(auth_users_listed("a@x.com, Boss@Example.COM ,c@y.org", "boss@example.com"));
    CHECK(auth_users_listed("a@x.com", "A@X.COM"));
    CHECK(!auth_users_listed("a@x.com", "a@x.co"));
    CHECK(!auth_users_listed("aa@x.com", "a@x.com"));
    CHECK(!auth_users_listed("", "a@x.com"));
    CHECK(!auth_users_listed(",,", ""));
    auth_role r;
    CHECK(auth_role_parse("admin", &r) == 0 && r == AUTH_ROLE_ADMIN);
    CHECK(auth_role_parse("staff", &r) == 0 && r == AUTH_ROLE_STAFF);
    CHECK(auth_role_parse("Admin", &r) != 0);
}

TEST(who_may_log_in)
{
    minicrm_config cfg;
    char err[256];
    cfg_init(&cfg);
    /* No list at all: nobody, verified or not. */
    CHECK_INT_EQ(auth_users_admit(&cfg, "ann@example.com", true), AUTH_ADMIT_NO_LIST);
    cfg_set(&cfg, "auth.allowed_domains", " Example.com, @corp.test", "t", err, sizeof err);
    cfg_set(&cfg, "auth.allowed_emails", "guest@gmail.com", "t", err, sizeof err);
    CHECK_INT_EQ(auth_users_admit(&cfg, "ann@example.com", true), AUTH_ADMIT_OK);
    CHECK_INT_EQ(auth_users_admit(&cfg, "bob@corp.test", true), AUTH_ADMIT_OK);
    CHECK_INT_EQ(auth_users_admit(&cfg, "guest@gmail.com", true), AUTH_ADMIT_OK);
    /* Unverified, other domains, look-alikes and sub-domains are refused. */
    CHECK_INT_EQ(auth_users_admit(&cfg, "ann@example.com", false), AUTH_ADMIT_UNVERIFIED);
    CHECK_INT_EQ(auth_users_admit(&cfg, "eve@gmail.com", true), AUTH_ADMIT_NOT_ALLOWED);
    CHECK_INT_EQ(auth_users_admit(&cfg, "eve@example.com.evil.test", true), AUTH_ADMIT_NOT_ALLOWED);
    CHECK_INT_EQ(auth_users_admit(&cfg, "eve@sub.example.com", true), AUTH_ADMIT_NOT_ALLOWED);
    CHECK_INT_EQ(auth_users_admit(&cfg, "eve@notexample.com", true), AUTH_ADMIT_NOT_ALLOWED);
    CHECK_INT_EQ(auth_users_admit(&cfg, "example.com", true), AUTH_ADMIT_NOT_ALLOWED);
    CHECK_STR_EQ(auth_admit_code(AUTH_ADMIT_NOT_ALLOWED), "not_allowed");
    cfg_release(&cfg);
}

TEST(oauth_state_single_use)
{
    rconn *r = redis_for_test();
    CHECK(r != NULL);
    char *url = NULL, err[256], nonce[AUTH_OAUTH_NONCE_LEN + 1];
    CHECK_INT_EQ(auth_oauth_begin(&g_cfg, r, &url, nonce, err, sizeof err), 0);
    CHECK(auth_is_b64url(nonce, AUTH_OAUTH_NONCE_LEN));
    char state[128], challenge[128];
    CHECK_STR_CONTAINS(url, "http://127.0.0.1:9/authorize?client_id=cid-123&");
    CHECK_STR_CONTAINS(url,
                       "&redirect_uri=http%3A%2F%2Flocalhost%3A5000%2Fauth%2Fgoogle%2Fcallback&");
    CHECK_STR_CONTAINS(url, "&response_type=code&scope=openid%20profile%20email&");
    CHECK_STR_CONTAINS(url, "&code_challenge_method=S256");
    CHECK(url_param(url, "state", state, sizeof state) != NULL);
    CHECK(url_param(url, "code_challenge", challenge, sizeof challenge) != NULL);
    free(url);
    CHECK_INT_EQ((int)strlen(state), AUTH_OAUTH_STATE_LEN);

    /* Stored with the TTL of the config, under the prefix; the challenge is S256(verifier). */
    redisReply *rep = rconn_command(r, "TTL %soauth:state:%s", g_env.prefix, state);
    CHECK(rep && rep->type == REDIS_REPLY_INTEGER && rep->integer > 0 &&
          rep->integer <= g_cfg.auth.state_ttl_s);
    freeReplyObject(rep);
    rep = rconn_command(r, "GET %soauth:state:%s", g_env.prefix, state);
    CHECK(rep && rep->type == REDIS_REPLY_STRING);
    /* verifier "." hex SHA-256(nonce): the nonce itself is not in Redis. */
    char ch[64], stored[AUTH_OAUTH_VERIFIER_LEN + 1], nh[65];
    snprintf(stored, sizeof stored, "%.*s", AUTH_OAUTH_VERIFIER_LEN, rep->str);
    auth_sha256_hex(nonce, strlen(nonce), nh);
    CHECK(strstr(rep->str, nonce) == NULL);
    CHECK_STR_EQ(rep->str + AUTH_OAUTH_VERIFIER_LEN + 1, nh);
    auth_oauth_challenge(stored, ch);
    freeReplyObject(rep);
    CHECK_STR_EQ(ch, challenge);

    char verifier[AUTH_OAUTH_VERIFIER_LEN + 1];
    CHECK_INT_EQ(auth_oauth_take_state(&g_cfg, r, state, nonce, verifier, err, sizeof err), 0);
    auth_oauth_challenge(verifier, ch);
    CHECK_STR_EQ(ch, challenge);
    /* Second use, unknown, malformed and missing states are all refused. */
    CHECK_INT_EQ(auth_oauth_take_state(&g_cfg, r, state, nonce, verifier, err, sizeof err), 1);
    CHECK_INT_EQ(auth_oauth_take_state(&g_cfg, r, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                       nonce, verifier, err, sizeof err),
                 1);
    CHECK_INT_EQ(auth_oauth_take_state(&g_cfg, r, "x*", nonce, verifier, err, sizeof err), 1);
    CHECK_INT_EQ(auth_oauth_take_state(&g_cfg, r, NULL, nonce, verifier, err, sizeof err), 1);
    rconn_free(r);
}

TEST(oauth_state_bound_to_browser)
{
    /* Login CSRF: a state is accepted only with the nonce of the browser that started it;
     * without it or with another one it is refused, and consumed all the same. */
    rconn *r = redis_for_test();
    CHECK(r != NULL);
    char *url = NULL, err[256], nonce[AUTH_OAUTH_NONCE_LEN + 1], other[AUTH_OAUTH_NONCE_LEN + 1];
    char state[128], verifier[AUTH_OAUTH_VERIFIER_LEN + 1];
    CHECK_INT_EQ(auth_oauth_begin(&g_cfg, r, &url, other, err, sizeof err), 0);
    free(url);
    for (int i = 0; i < 3; i++) {
        CHECK_INT_EQ(auth_oauth_begin(&g_cfg, r, &url, nonce, err, sizeof err), 0);
        url_param(url, "state", state, sizeof state);
        free(url);
        const char *given = i == 0 ? NULL : i == 1 ? other : "short";
        CHECK_INT_EQ(auth_oauth_take_state(&g_cfg, r, state, given, verifier, err, sizeof err),
                     AUTH_STATE_WRONG_BROWSER);
        CHECK_INT_EQ(auth_oauth_take_state(&g_cfg, r, state, nonce, verifier, err, sizeof err),
                     AUTH_STATE_UNKNOWN);
    }
    /* The pre-login cookie: HttpOnly, Lax, scoped to /auth/google, lives as long as a state. */
    char buf[256], got[AUTH_OAUTH_NONCE_LEN + 1];
    auth_oauth_nonce_cookie(&g_cfg, nonce, buf, sizeof buf);
    char want[256];
    snprintf(want, sizeof want,
             "mcrm_login=%s; Path=/auth/google; Max-Age=%d; HttpOnly; SameSite=Lax", nonce,
             g_cfg.auth.state_ttl_s);
    CHECK_STR_EQ(buf, want);
    auth_oauth_nonce_cookie(&g_cfg, NULL, buf, sizeof buf);
    CHECK_STR_EQ(buf, "mcrm_login=; Path=/auth/google; Max-Age=0; HttpOnly; SameSite=Lax");
    snprintf(buf, sizeof buf, "sid=x; mcrm_login=%s", nonce);
    CHECK_INT_EQ(auth_oauth_nonce_from_cookie_header(buf, got), 0);
    CHECK_STR_EQ(got, nonce);
    CHECK_INT_EQ(auth_oauth_nonce_from_cookie_header("mcrm_login=a*b", got), 1);
    rconn_free(r);
}

typedef struct {
    const char *state, *nonce;
    int rc;
} taker;

static void *take_thread(void *arg)
{
    taker *t = arg;
    char err[256], verifier[AUTH_OAUTH_VERIFIER_LEN + 1];
    rconn *r = rconn_new(g_env.redis_url, 2000, err, sizeof err);
    t->rc =
        r ? auth_oauth_take_state(&g_cfg, r, t->state, t->nonce, verifier, err, sizeof err) : -1;
    rconn_free(r);
    return NULL;
}

TEST(oauth_state_concurrent_consumers)
{
    /* Eight callbacks racing with one state: exactly one wins. */
    rconn *r = redis_for_test();
    CHECK(r != NULL);
    char *url = NULL, err[256], state[128], nonce[AUTH_OAUTH_NONCE_LEN + 1];
    CHECK_INT_EQ(auth_oauth_begin(&g_cfg, r, &url, nonce, err, sizeof err), 0);
    url_param(url, "state", state, sizeof state);
    free(url);
    rconn_free(r);
    pthread_t th[8];
    taker t[8];
    for (int i = 0; i < 8; i++) {
        t[i].state = state;
        t[i].nonce = nonce;
        pthread_create(&th[i], NULL, take_thread, &t[i]);
    }
    int won = 0, lost = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        won += t[i].rc == 0;
        lost += t[i].rc == 1;
    }
    CHECK_INT_EQ(won, 1);
    CHECK_INT_EQ(lost, 7);
}

TEST(oauth_not_configured_makes_no_call)
{
    minicrm_config cfg;
    cfg_init(&cfg);
    CHECK(!auth_oauth_configured(&cfg));
    char *url = (char *)"x", err[256], nonce[AUTH_OAUTH_NONCE_LEN + 1];
    CHECK_INT_EQ(auth_oauth_begin(&cfg, NULL, &url, nonce, err, sizeof err), -1);
    CHECK(url == NULL);
    CHECK_STR_CONTAINS(err, "not configured");
    auth_oauth_identity id;
    CHECK_INT_EQ(auth_oauth_exchange(&cfg, "code", "v", &id, err, sizeof err), -1);
    cfg_release(&cfg);
}

TEST(oauth_exchange_unreachable_provider)
{
    /* A provider that does not answer: a clear error within the timeout, no crash. */
    minicrm_config cfg;
    char err[256];
    cfg_init(&cfg);
    cfg_set(&cfg, "auth.google_client_id", "c", "t", err, sizeof err);
    cfg_set(&cfg, "auth.google_client_secret", "s", "t", err, sizeof err);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/token", testenv_free_port());
    cfg_set(&cfg, "auth.google_token_url", url, "t", err, sizeof err);
    cfg_set(&cfg, "auth.http_timeout_ms", "1000", "t", err, sizeof err);
    auth_oauth_global_init();
    auth_oauth_identity id;
    CHECK_INT_EQ(auth_oauth_exchange(&cfg, "code", "v", &id, err, sizeof err), -1);
    CHECK_STR_CONTAINS(err, "token endpoint");
    auth_oauth_global_cleanup();
    cfg_release(&cfg);
}

TEST(sessions)
{
    rconn *r = redis_for_test();
    CHECK(r != NULL);
    auth_user u = {.id = "65a000000000000000000001",
                   .email = "ann@example.com",
                   .display_name = "Ann \"Q\" Lee",
                   .role = AUTH_ROLE_ADMIN};
    char sid[AUTH_SID_LEN + 1], sid2[AUTH_SID_LEN + 1], err[256];
    CHECK_INT_EQ(auth_session_create(&g_cfg, r, &u, sid, err, sizeof err), 0);
    CHECK_INT_EQ(auth_session_create(&g_cfg, r, &u, sid2, err, sizeof err), 0);
    CHECK(auth_is_lower_hex(sid, AUTH_SID_LEN));
    CHECK(strcmp(sid, sid2) != 0); /* a new id each login */
    /* Stored under HMAC(session_secret, sid), never under the sid itself. */
    char mac[HMAC_HEX_LEN + 1], mac2[HMAC_HEX_LEN + 1];
    hmac_sha256_hex("unit-session-secret", 19, sid, strlen(sid), mac);
    hmac_sha256_hex("unit-session-secret", 19, sid2, strlen(sid2), mac2);
    redisReply *rep = rconn_command(r, "TTL %ssession:%s", g_env.prefix, mac);
    CHECK(rep && rep->type == REDIS_REPLY_INTEGER && rep->integer > 86000 && rep->integer <= 86400);
    freeReplyObject(rep);
    rep = rconn_command(r, "EXISTS %ssession:%s", g_env.prefix, sid);
    CHECK(rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 0);
    freeReplyObject(rep);
    /* A key copied out of Redis is no sid: presenting it finds nothing. */
    auth_user nothing;
    CHECK_INT_EQ(auth_session_get(&g_cfg, r, mac, &nothing, err, sizeof err), 1);

    auth_user got;
    CHECK_INT_EQ(auth_session_get(&g_cfg, r, sid, &got, err, sizeof err), 0);
    CHECK_STR_EQ(got.id, u.id);
    CHECK_STR_EQ(got.email, u.email);
    CHECK_STR_EQ(got.display_name, u.display_name);
    CHECK_INT_EQ(got.role, AUTH_ROLE_ADMIN);

    /* Unknown but well-formed, and malformed ids (which never reach Redis). */
    CHECK_INT_EQ(auth_session_get(
                     &g_cfg, r, "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                     &got, err, sizeof err),
                 1);
    CHECK_INT_EQ(auth_session_get(&g_cfg, r, "../../x", &got, err, sizeof err), 1);
    CHECK_INT_EQ(auth_session_get(&g_cfg, r, NULL, &got, err, sizeof err), 1);

    /* A damaged session value grants nothing. */
    rep = rconn_command(r, "SET %ssession:%s %s", g_env.prefix, mac2, "{\"role\":\"root\"}");
    freeReplyObject(rep);
    CHECK_INT_EQ(auth_session_get(&g_cfg, r, sid2, &got, err, sizeof err), 1);

    CHECK_INT_EQ(auth_session_destroy(&g_cfg, r, sid, err, sizeof err), 0);
    CHECK_INT_EQ(auth_session_get(&g_cfg, r, sid, &got, err, sizeof err), 1);
    CHECK_INT_EQ(auth_session_destroy(&g_cfg, r, sid, err, sizeof err), 0);
    rconn_free(r);
}

/* The API-key cache: a hit only for a stored hash within the TTL, cleared at once, bounded (a
 * full table keeps at most AUTH_KEYCACHE_SLOTS entries) and safe under concurrent threads. */
static auth_keycache *g_kc;

static void *keycache_hammer(void *arg)
{
    int base = *(int *)arg;
    for (int i = 0; i < 20000; i++) {
        char h[65];
        auth_sha256_hex(&i, sizeof i, h);
        auth_key_info in = {.role = AUTH_ROLE_STAFF}, out;
        snprintf(in.id, sizeof in.id, "%024d", base + i % 50);
        auth_keycache_put(g_kc, h, 1000, &in);
        if (auth_keycache_get(g_kc, h, 1001, &out) == 1 && strlen(out.id) != 24)
            return (void *)1; /* a torn entry */
    }
    return NULL;
}

TEST(api_key_cache)
{
    char key[AUTH_KEY_LEN + 1] = "mck_";
    memset(key + 4, 'A', 43);
    key[AUTH_KEY_LEN] = '\0';
    char h[65], want[65];
    CHECK_INT_EQ(auth_keycache_hash(key, h), 0);
    auth_sha256_hex(key, AUTH_KEY_LEN, want);
    CHECK_STR_EQ(h, want);
    CHECK_INT_EQ(auth_keycache_hash("mck_short", h), 1);
    CHECK_INT_EQ(auth_keycache_hash(NULL, h), 1);

    auth_keycache *c = auth_keycache_new(10000);
    CHECK(c != NULL);
    auth_key_info in = {.role = AUTH_ROLE_ADMIN}, out;
    snprintf(in.id, sizeof in.id, "0123456789abcdef01234567");
    snprintf(in.name, sizeof in.name, "ops");
    CHECK_INT_EQ(auth_keycache_get(c, want, 5000, &out), 0);
    auth_keycache_put(c, want, 5000, &in);
    CHECK_INT_EQ(auth_keycache_get(c, want, 5000, &out), 1);
    CHECK_STR_EQ(out.id, in.id);
    CHECK_STR_EQ(out.name, "ops");
    CHECK_INT_EQ((int)out.role, (int)AUTH_ROLE_ADMIN);
    CHECK_INT_EQ(auth_keycache_get(c, want, 14999, &out), 1);
    CHECK_INT_EQ(auth_keycache_get(c, want, 15000, &out), 0); /* TTL over: back to MongoDB */
    auth_keycache_put(c, want, 20000, &in);
    auth_keycache_clear(c);
    CHECK_INT_EQ(auth_keycache_get(c, want, 20001, &out), 0);
    /* Bounded: many more keys than slots, at most AUTH_KEYCACHE_SLOTS of them answer. */
    int hits = 0;
    for (int i = 0; i < 4 * AUTH_KEYCACHE_SLOTS; i++) {
        auth_sha256_hex(&i, sizeof i, h);
        auth_keycache_put(c, h, 30000, &in);
    }
    for (int i = 0; i < 4 * AUTH_KEYCACHE_SLOTS; i++) {
        auth_sha256_hex(&i, sizeof i, h);
        hits += auth_keycache_get(c, h, 30001, &out);
    }
    CHECK(hits > 0 && hits <= AUTH_KEYCACHE_SLOTS);
    auth_keycache_free(c);

    auth_keycache *off = auth_keycache_new(0); /* ttl 0: no cache */
    auth_keycache_put(off, want, 1, &in);
    CHECK_INT_EQ(auth_keycache_get(off, want, 1, &out), 0);
    auth_keycache_free(off);
    auth_keycache_free(NULL);

    g_kc = auth_keycache_new(10000);
    pthread_t th[4];
    int base[4] = {0, 100, 200, 300};
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, keycache_hammer, &base[i]);
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(th[i], &r);
        CHECK(r == NULL);
    }
    auth_keycache_free(g_kc);
}

TEST_MAIN(TEST_ENTRY(pkce_rfc7636_vector), TEST_ENTRY(encodings), TEST_ENTRY(cookie_attributes),
          TEST_ENTRY(cookie_header_parsing), TEST_ENTRY(admin_list), TEST_ENTRY(who_may_log_in),
          TEST_ENTRY(oauth_state_single_use), TEST_ENTRY(oauth_state_bound_to_browser),
          TEST_ENTRY(oauth_state_concurrent_consumers),
          TEST_ENTRY(oauth_not_configured_makes_no_call),
          TEST_ENTRY(oauth_exchange_unreachable_provider), TEST_ENTRY(sessions),
          TEST_ENTRY(api_key_cache))
