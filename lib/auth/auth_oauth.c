/*
 * auth_oauth: see auth_oauth.h.
 *
 * Redis layout: {prefix}oauth:state:{state} = "<code_verifier>.<hex SHA-256(browser nonce)>",
 * TTL auth.state_ttl_s. Only the hash of the nonce is stored, so read access to Redis does not
 * give the cookie that would finish someone's login; the comparison is constant-time.
 * The state is the key, so an attacker who does not know a live state cannot make the callback
 * accept anything; GETDEL makes the check-and-consume one atomic step (two concurrent callbacks
 * with the same state: exactly one gets the verifier). Servers without GETDEL (Redis < 6.2) get
 * the same effect from a two-line Lua script.
 *
 * Outbound HTTP: one curl easy handle per call (logins are rare; a shared handle would need a
 * lock). Replies accumulate in a buffer capped at AUTH_OAUTH_MAX_REPLY; the write callback
 * aborts the transfer past the cap. Errors name the endpoint and never include secrets.
 */
#include "auth_oauth.h"

#include "auth_crypto.h"
#include "auth_session.h"
#include "log.h"

#include <ctype.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- bounded text buffer */

typedef struct obuf {
    char *p;
    size_t len, cap, max;
    bool overflow;
} obuf;

static int obuf_add(obuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->max) {
        b->overflow = true;
        return -1;
    }
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        if (ncap > b->max)
            ncap = b->max;
        char *np = realloc(b->p, ncap);
        if (!np)
            return -1;
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int obuf_str(obuf *b, const char *s)
{
    return obuf_add(b, s, strlen(s));
}

/* Append s percent-encoded (RFC 3986 unreserved characters kept). */
static int obuf_escaped(obuf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            if (obuf_add(b, (const char *)&c, 1) != 0)
                return -1;
        } else {
            char pct[4];
            snprintf(pct, sizeof pct, "%%%02X", c);
            if (obuf_add(b, pct, 3) != 0)
                return -1;
        }
    }
    return 0;
}

/* Append "&name=value" (or without '&' when first). */
static int obuf_param(obuf *b, bool first, const char *name, const char *value)
{
    if ((!first && obuf_str(b, "&") != 0) || obuf_str(b, name) != 0 || obuf_str(b, "=") != 0 ||
        obuf_escaped(b, value) != 0)
        return -1;
    return 0;
}

/* ---------------------------------------------------------------- setup */

int auth_oauth_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void auth_oauth_global_cleanup(void)
{
    curl_global_cleanup();
}

bool auth_oauth_configured(const minicrm_config *cfg)
{
    return cfg->auth.google_client_id && cfg->auth.google_client_id[0] &&
           cfg->auth.google_client_secret && cfg->auth.google_client_secret[0];
}

int auth_oauth_challenge(const char *verifier, char out[AUTH_OAUTH_STATE_LEN + 1])
{
    unsigned char d[32];
    if (auth_sha256(verifier, strlen(verifier), d) != 0)
        return -1;
    auth_b64url(d, sizeof d, out);
    return 0;
}

static void state_key(const minicrm_config *cfg, const char *state, char *key, size_t n)
{
    snprintf(key, n, "%soauth:state:%s", cfg->redis.prefix, state);
}

/* ---------------------------------------------------------------- begin / take state */

int auth_oauth_begin(const minicrm_config *cfg, rconn *r, char **url_out,
                     char nonce[AUTH_OAUTH_NONCE_LEN + 1], char *err, size_t errlen)
{
    int rc = -1;
    obuf url = {.max = 8192};
    *url_out = NULL;
    nonce[0] = '\0';
    if (!auth_oauth_configured(cfg)) {
        snprintf(err, errlen, "Google login is not configured (GOOGLE_CLIENT_ID/SECRET)");
        goto out;
    }
    unsigned char raw[96];
    if (auth_random_bytes(raw, sizeof raw) != 0) {
        snprintf(err, errlen, "no randomness available");
        goto out;
    }
    char state[AUTH_OAUTH_STATE_LEN + 1], verifier[AUTH_OAUTH_VERIFIER_LEN + 1];
    char challenge[AUTH_OAUTH_STATE_LEN + 1];
    auth_b64url(raw, 32, state);
    auth_b64url(raw + 32, 32, verifier);
    char nonce_text[AUTH_OAUTH_NONCE_LEN + 1], nonce_hash[65];
    auth_b64url(raw + 64, 32, nonce_text);
    if (auth_oauth_challenge(verifier, challenge) != 0 ||
        auth_sha256_hex(nonce_text, AUTH_OAUTH_NONCE_LEN, nonce_hash) != 0) {
        snprintf(err, errlen, "SHA-256 failed");
        goto out;
    }
    char key[256], value[AUTH_OAUTH_VERIFIER_LEN + 1 + 64 + 1];
    state_key(cfg, state, key, sizeof key);
    snprintf(value, sizeof value, "%s.%s", verifier, nonce_hash);
    if (auth_redis_set_nx(r, key, value, cfg->auth.state_ttl_s, "state collision", err, errlen) !=
        0)
        goto out;
    const char *base = cfg->auth.google_auth_url;
    if (obuf_str(&url, base) != 0 || obuf_str(&url, strchr(base, '?') ? "&" : "?") != 0 ||
        obuf_param(&url, true, "client_id", cfg->auth.google_client_id) != 0 ||
        obuf_param(&url, false, "redirect_uri", cfg->auth.google_callback_url) != 0 ||
        obuf_param(&url, false, "response_type", "code") != 0 ||
        obuf_param(&url, false, "scope", AUTH_OAUTH_SCOPE) != 0 ||
        obuf_param(&url, false, "state", state) != 0 ||
        obuf_param(&url, false, "code_challenge", challenge) != 0 ||
        obuf_param(&url, false, "code_challenge_method", "S256") != 0) {
        snprintf(err, errlen, "authorization URL too long");
        goto out;
    }
    *url_out = url.p;
    url.p = NULL;
    memcpy(nonce, nonce_text, sizeof nonce_text);
    rc = 0;
out:
    free(url.p);
    return rc;
}

int auth_oauth_take_state(const minicrm_config *cfg, rconn *r, const char *state, const char *nonce,
                          char verifier[AUTH_OAUTH_VERIFIER_LEN + 1], char *err, size_t errlen)
{
    verifier[0] = '\0';
    /* Anything that is not the shape minicrm issues is rejected before touching Redis. */
    if (!state || !auth_is_b64url(state, AUTH_OAUTH_STATE_LEN))
        return AUTH_STATE_UNKNOWN;
    char key[256];
    state_key(cfg, state, key, sizeof key);
    redisReply *rep = rconn_command(r, "GETDEL %s", key);
    if (rep && rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "unknown command")) {
        freeReplyObject(rep);
        rep = rconn_command(r, "EVAL %s 1 %s",
                            "local v = redis.call('GET', KEYS[1]) "
                            "if v then redis.call('DEL', KEYS[1]) end return v",
                            key);
    }
    if (auth_redis_failed(r, &rep, err, errlen))
        return -1;
    int rc = AUTH_STATE_UNKNOWN;
    if (rep->type == REDIS_REPLY_STRING && rep->len == AUTH_OAUTH_VERIFIER_LEN + 1 + 64 &&
        rep->str[AUTH_OAUTH_VERIFIER_LEN] == '.') {
        /* The state was issued; it is accepted only from the browser that started the login. */
        char given[65];
        rc = AUTH_STATE_WRONG_BROWSER;
        if (nonce && auth_is_b64url(nonce, AUTH_OAUTH_NONCE_LEN) &&
            auth_sha256_hex(nonce, AUTH_OAUTH_NONCE_LEN, given) == 0 &&
            auth_ct_equal(given, rep->str + AUTH_OAUTH_VERIFIER_LEN + 1, 64)) {
            memcpy(verifier, rep->str, AUTH_OAUTH_VERIFIER_LEN);
            verifier[AUTH_OAUTH_VERIFIER_LEN] = '\0';
            rc = 0;
        }
    }
    freeReplyObject(rep);
    return rc;
}

const char *auth_oauth_nonce_cookie(const minicrm_config *cfg, const char *nonce, char *buf,
                                    size_t n)
{
    snprintf(buf, n, "%s=%s; Path=%s; Max-Age=%d; HttpOnly; SameSite=Lax%s",
             AUTH_OAUTH_NONCE_COOKIE, nonce ? nonce : "", AUTH_OAUTH_NONCE_PATH,
             nonce ? cfg->auth.state_ttl_s : 0, cfg->auth.cookie_secure ? "; Secure" : "");
    return buf;
}

static bool nonce_shape(const char *s, size_t len)
{
    return auth_is_b64url(s, len);
}

int auth_oauth_nonce_from_cookie_header(const char *header, char nonce[AUTH_OAUTH_NONCE_LEN + 1])
{
    return auth_cookie_find(header, AUTH_OAUTH_NONCE_COOKIE, AUTH_OAUTH_NONCE_LEN, nonce_shape,
                            nonce);
}

/* ---------------------------------------------------------------- outbound HTTP */

static size_t on_data(char *data, size_t size, size_t nmemb, void *userp)
{
    obuf *b = userp;
    size_t n = size * nmemb;
    if (obuf_add(b, data, n) != 0)
        return 0; /* past the cap (or out of memory): curl aborts with CURLE_WRITE_ERROR */
    return n;
}

/* One HTTP call. `form` non-NULL: POST it as application/x-www-form-urlencoded. `bearer`
 * non-NULL: Authorization header. On 0, *json is the parsed 2xx JSON object (caller decrefs). */
static int http_json(const minicrm_config *cfg, const char *what, const char *url, const char *form,
                     const char *bearer, json_t **json, char *err, size_t errlen)
{
    int rc = -1;
    obuf body = {.max = AUTH_OAUTH_MAX_REPLY};
    struct curl_slist *hdrs = NULL;
    char *authz = NULL;
    *json = NULL;
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(err, errlen, "%s: curl init failed", what);
        goto out;
    }
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    if (bearer) {
        size_t n = strlen(bearer) + 32;
        authz = malloc(n);
        if (!authz)
            goto out;
        snprintf(authz, n, "Authorization: Bearer %s", bearer);
        struct curl_slist *nh = curl_slist_append(hdrs, authz);
        if (!nh)
            goto out;
        hdrs = nh;
    }
    long tmo = cfg->auth.http_timeout_ms;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, tmo);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, tmo);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "minicrm-api");
    if (form)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, form);
    CURLcode cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        snprintf(err, errlen, "%s: %s", what,
                 body.overflow ? "reply larger than the cap" : curl_easy_strerror(cc));
        goto out;
    }
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status > 299) {
        snprintf(err, errlen, "%s: HTTP %ld", what, status);
        goto out;
    }
    json_error_t jerr;
    json_t *v = json_loadb(body.p ? body.p : "", body.len, JSON_REJECT_DUPLICATES, &jerr);
    if (!v || !json_is_object(v)) {
        json_decref(v);
        snprintf(err, errlen, "%s: reply is not a JSON object", what);
        goto out;
    }
    *json = v;
    rc = 0;
out:
    if (h)
        curl_easy_cleanup(h);
    curl_slist_free_all(hdrs);
    free(authz);
    free(body.p);
    return rc;
}

static void copy_lower(char *dst, size_t n, const char *src)
{
    size_t i = 0;
    for (; src[i] && i + 1 < n; i++)
        dst[i] = (char)tolower((unsigned char)src[i]);
    dst[i] = '\0';
}

int auth_oauth_exchange(const minicrm_config *cfg, const char *code, const char *verifier,
                        auth_oauth_identity *out, char *err, size_t errlen)
{
    int rc = -1;
    obuf form = {.max = 16384};
    json_t *tok = NULL, *info = NULL;
    char *access = NULL;
    memset(out, 0, sizeof *out);
    if (!auth_oauth_configured(cfg)) {
        snprintf(err, errlen, "Google login is not configured");
        goto out;
    }
    if (!code || !code[0] || strlen(code) > 4096) {
        snprintf(err, errlen, "missing or oversized code");
        goto out;
    }
    if (obuf_param(&form, true, "grant_type", "authorization_code") != 0 ||
        obuf_param(&form, false, "code", code) != 0 ||
        obuf_param(&form, false, "redirect_uri", cfg->auth.google_callback_url) != 0 ||
        obuf_param(&form, false, "client_id", cfg->auth.google_client_id) != 0 ||
        obuf_param(&form, false, "client_secret", cfg->auth.google_client_secret) != 0 ||
        obuf_param(&form, false, "code_verifier", verifier) != 0) {
        snprintf(err, errlen, "token request too large");
        goto out;
    }
    if (http_json(cfg, "token endpoint", cfg->auth.google_token_url, form.p, NULL, &tok, err,
                  errlen) != 0)
        goto out;
    const char *at = json_string_value(json_object_get(tok, "access_token"));
    if (!at || !at[0] || strlen(at) > 8192) {
        snprintf(err, errlen, "token endpoint: no access_token in the reply");
        goto out;
    }
    access = strdup(at);
    if (!access)
        goto out;
    if (http_json(cfg, "userinfo endpoint", cfg->auth.google_userinfo_url, NULL, access, &info, err,
                  errlen) != 0)
        goto out;
    const char *sub = json_string_value(json_object_get(info, "sub"));
    const char *email = json_string_value(json_object_get(info, "email"));
    const char *name = json_string_value(json_object_get(info, "name"));
    if (!sub || !sub[0] || strlen(sub) >= sizeof out->sub) {
        snprintf(err, errlen, "userinfo endpoint: missing or invalid sub");
        goto out;
    }
    if (!email || !strchr(email, '@') || strlen(email) >= sizeof out->email) {
        snprintf(err, errlen, "userinfo endpoint: missing or invalid email (scope 'email')");
        goto out;
    }
    snprintf(out->sub, sizeof out->sub, "%s", sub);
    copy_lower(out->email, sizeof out->email, email);
    snprintf(out->name, sizeof out->name, "%s", name && name[0] ? name : email);
    /* Google sends a boolean; some providers send the string "true". Absent means unverified. */
    json_t *ev = json_object_get(info, "email_verified");
    out->email_verified =
        json_is_true(ev) || (json_is_string(ev) && !strcmp(json_string_value(ev), "true"));
    rc = 0;
out:
    json_decref(tok);
    json_decref(info);
    free(access);
    free(form.p);
    return rc;
}
