/*
 * auth_session: server-side login sessions in Redis and the `sid` cookie that names them.
 *
 * A session is {prefix}session:{HMAC-SHA256(auth.session_secret, sid) as hex} = JSON
 * {"uid","email","name","role","at"[,"kh"]} ("kh": the hash of the API key it was opened with) with
 * TTL auth.session_ttl_s (default one day, also the cookie's Max-Age). The sid is 256 random bits
 * from getrandom(2) as 64 lower-case hex digits, made fresh at every login (so a sid planted before
 * login is never promoted: no session fixation). Only the browser holds the sid itself: Redis (and
 * its AOF or a dump of it) holds the HMAC, from which no login can be made without the secret. A
 * sid from a client is used only if it has exactly that shape and its HMAC exists in Redis; logout
 * deletes the key, so a copied cookie dies with it. The secret must be set before the first call
 * (auth_session_secret_ensure: minicrm-api makes a random one per start when none is given).
 *
 * Cookie: `sid=<sid>; Path=/; Max-Age=<ttl>; HttpOnly; SameSite=<cfg>[; Secure]`. `Secure`
 * comes from auth.cookie_secure, and is forced when SameSite=None (browsers drop such cookies
 * without it).
 *
 * Thread-safe given a per-thread rconn. Callers own every buffer.
 */
#ifndef MINICRM_AUTH_SESSION_H
#define MINICRM_AUTH_SESSION_H

#include "auth_users.h"
#include "config.h"
#include "rconn.h"

#include <stdbool.h>
#include <stddef.h>

#define AUTH_SID_LEN     64
#define AUTH_COOKIE_NAME "sid"

/* Make sure cfg->auth.session_secret is set: if it is empty, fill it with 256 random bits as
 * hex (sessions then last only as long as this process) and set *generated. 0, or -1 with err
 * (no randomness, out of memory). */
int auth_session_secret_ensure(minicrm_config *cfg, bool *generated, char *err, size_t errlen);

/* The Redis key of a session: {prefix}session:{hex HMAC(secret, sid)}. 0, or -1 with err (no
 * secret set, OpenSSL failed). */
int auth_session_key(const minicrm_config *cfg, const char *sid, char *key, size_t n, char *err,
                     size_t errlen);

/* Create a session for `u` and return its id. 0, or -1 with err (Redis down, no randomness). */
int auth_session_create(const minicrm_config *cfg, rconn *r, const auth_user *u,
                        char sid[AUTH_SID_LEN + 1], char *err, size_t errlen);

/* The same for a session opened with an API key (POST /auth/key): the session also records
 * key_hash (hex SHA-256 of the key, what api_keys stores; never the key), so the API can end
 * it once the key is revoked. The user is the key's (id, name, role; empty email). */
int auth_session_create_for_key(const minicrm_config *cfg, rconn *r, const auth_user *u,
                                const char *key_hash, char sid[AUTH_SID_LEN + 1], char *err,
                                size_t errlen);

/* auth_session_get that also gives the key hash of a session opened with a key (empty string
 * for a Google login) in key_hash (65 bytes). */
int auth_session_get_key(const minicrm_config *cfg, rconn *r, const char *sid, auth_user *out,
                         char key_hash[65], char *err, size_t errlen);

/* Look a session up: 0 with *out filled; 1 if the sid is malformed, unknown or expired;
 * -1 on a Redis error (err filled). */
int auth_session_get(const minicrm_config *cfg, rconn *r, const char *sid, auth_user *out,
                     char *err, size_t errlen);

/* Delete a session server-side. 0 (also when it did not exist), or -1 on a Redis error. */
int auth_session_destroy(const minicrm_config *cfg, rconn *r, const char *sid, char *err,
                         size_t errlen);

/* Redis helpers shared by the auth modules (sessions, OAuth state). */

/* SET key value EX ttl_s NX. 0 if stored; -1 with "Redis: <reason>" in err, where the reason is
 * `taken` when the key already exists (a collision of random ids). */
int auth_redis_set_nx(rconn *r, const char *key, const char *value, int ttl_s, const char *taken,
                      char *err, size_t errlen);
/* True if *rep is not a usable reply (none, or a Redis error): then "Redis: <reason>" is in err
 * and *rep has been freed and set to NULL. */
bool auth_redis_failed(rconn *r, redisReply **rep, char *err, size_t errlen);

/* The Set-Cookie value establishing `sid`, or clearing it (sid NULL: empty value, Max-Age=0).
 * Returns buf. */
const char *auth_session_cookie(const minicrm_config *cfg, const char *sid, char *buf, size_t n);

/* Find the `sid` cookie in a Cookie request header. 0 and the value if one has the exact sid
 * shape; 1 otherwise. With several `sid` cookies, the first well-formed one is taken. */
int auth_session_from_cookie_header(const char *header, char sid[AUTH_SID_LEN + 1]);

/* The same for any cookie: the first cookie `name` whose value is exactly `len` bytes and
 * passes `ok(value, len)` is copied to out (len + 1 bytes). 0 if found, 1 otherwise. */
int auth_cookie_find(const char *header, const char *name, size_t len,
                     bool (*ok)(const char *s, size_t len), char *out);

#endif
