/*
 * auth_oauth: the Google OAuth 2.0 authorization-code flow with state and PKCE (RFC 7636, S256).
 *
 *   begin:    state, code_verifier and a browser nonce (256 random bits each) are made; the
 *             verifier and hex(SHA-256(nonce)) are stored in Redis at
 *             {prefix}oauth:state:{state} with TTL auth.state_ttl_s; the nonce goes to the
 *             browser that started the login, and only to it, in a short-lived HttpOnly
 *             pre-login cookie (auth_oauth_nonce_cookie); the browser is sent to
 *             auth.google_auth_url with client_id, redirect_uri, scope "openid profile email",
 *             state, code_challenge = b64url(SHA-256(verifier)).
 *   callback: auth_oauth_take_state() reads and deletes the state in one atomic step (GETDEL),
 *             so a state works once, only within its TTL, and only if minicrm issued it, and
 *             then accepts it only from the browser holding the nonce (login CSRF: an attacker
 *             who starts a login as themself cannot make a victim's browser finish it);
 *             auth_oauth_exchange() POSTs the code and the verifier to auth.google_token_url
 *             and GETs auth.google_userinfo_url with the access token.
 *
 * Outbound calls go through libcurl with auth.http_timeout_ms as the total timeout, no
 * redirects, http/https only, and replies capped at AUTH_OAUTH_MAX_REPLY bytes. Nothing is
 * sent anywhere unless auth_oauth_configured() (client id and secret are set).
 *
 * Thread-safe given a per-thread rconn; call auth_oauth_global_init() once before threads.
 */
#ifndef MINICRM_AUTH_OAUTH_H
#define MINICRM_AUTH_OAUTH_H

#include "config.h"
#include "rconn.h"

#include <stdbool.h>
#include <stddef.h>

#define AUTH_OAUTH_STATE_LEN    43 /* base64url of 32 bytes */
#define AUTH_OAUTH_VERIFIER_LEN 43 /* base64url of 32 bytes (RFC 7636 allows 43..128) */
#define AUTH_OAUTH_MAX_REPLY    (64 * 1024)
#define AUTH_OAUTH_SCOPE        "openid profile email"
#define AUTH_OAUTH_NONCE_LEN    43 /* base64url of 32 bytes */
#define AUTH_OAUTH_NONCE_COOKIE "mcrm_login"
#define AUTH_OAUTH_NONCE_PATH   "/auth/google" /* the cookie reaches /auth/google/callback only */

/* The identity the provider vouched for. */
typedef struct auth_oauth_identity {
    char sub[256];   /* stable subject id */
    char email[320]; /* lower-cased */
    char name[256];  /* display name (the email if the provider gave none) */
    bool email_verified;
} auth_oauth_identity;

/* curl_global_init; once per process before threads start. 0 or -1. */
int auth_oauth_global_init(void);
void auth_oauth_global_cleanup(void);

/* True when the client id and secret are configured (else no outbound call is made). */
bool auth_oauth_configured(const minicrm_config *cfg);

/* Start a login: store a fresh state+verifier+nonce hash, return the authorization URL in
 * *url_out (malloc'd, caller frees) and the nonce for the pre-login cookie in `nonce`.
 * Returns 0, or -1 with err (Redis down, no randomness). */
int auth_oauth_begin(const minicrm_config *cfg, rconn *r, char **url_out,
                     char nonce[AUTH_OAUTH_NONCE_LEN + 1], char *err, size_t errlen);

/* Results of auth_oauth_take_state besides 0 (accepted) and -1 (Redis error). */
enum {
    AUTH_STATE_UNKNOWN = 1,      /* missing, malformed, unknown, expired or already used */
    AUTH_STATE_WRONG_BROWSER = 2 /* issued, but `nonce` (the pre-login cookie) does not match */
};

/* Consume a state (always: a refused state is deleted too): 0 and the verifier if it was
 * issued, not yet used or expired, and `nonce` (the pre-login cookie's value, may be NULL) is
 * the one it was issued with; else AUTH_STATE_UNKNOWN or AUTH_STATE_WRONG_BROWSER; -1 on a
 * Redis error. */
int auth_oauth_take_state(const minicrm_config *cfg, rconn *r, const char *state, const char *nonce,
                          char verifier[AUTH_OAUTH_VERIFIER_LEN + 1], char *err, size_t errlen);

/* The Set-Cookie value of the pre-login cookie carrying `nonce`, or clearing it (NULL):
 * `mcrm_login=<nonce>; Path=/auth/google; Max-Age=<auth.state_ttl_s>; HttpOnly; SameSite=Lax`
 * (+ Secure with auth.cookie_secure). Lax, whatever auth.cookie_samesite says: the callback is
 * a top-level navigation from the provider, which Lax cookies accompany and Strict ones do
 * not. Returns buf. */
const char *auth_oauth_nonce_cookie(const minicrm_config *cfg, const char *nonce, char *buf,
                                    size_t n);
/* The pre-login nonce from a Cookie request header: 0 and the value, or 1 if absent or
 * malformed. */
int auth_oauth_nonce_from_cookie_header(const char *header, char nonce[AUTH_OAUTH_NONCE_LEN + 1]);

/* Exchange an authorization code (with its PKCE verifier) and read the user's identity.
 * Returns 0, or -1 with err (provider refused, timeout, malformed reply, missing sub/email). */
int auth_oauth_exchange(const minicrm_config *cfg, const char *code, const char *verifier,
                        auth_oauth_identity *out, char *err, size_t errlen);

/* The PKCE S256 challenge of a verifier (exposed for tests). out holds 44 bytes. 0 or -1. */
int auth_oauth_challenge(const char *verifier, char out[AUTH_OAUTH_STATE_LEN + 1]);

#endif
