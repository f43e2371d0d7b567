/*
 * auth_session: see auth_session.h.
 *
 * Why the session holds the user's name, email and role rather than just the user id: every
 * authenticated request (and GET /auth/me, which the front end calls on each page) then costs
 * one Redis GET and no MongoDB read. The copy is refreshed at each login; a role change made
 * elsewhere takes effect at the next login, or immediately if the session is deleted.
 * SET ... NX means a sid collision (2^-256) could never overwrite someone else's session.
 */
#include "auth_session.h"

#include "auth_crypto.h"
#include "hmac.h"
#include "timeutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SESSION_MAX_BYTES 4096

int auth_session_secret_ensure(minicrm_config *cfg, bool *generated, char *err, size_t errlen)
{
    *generated = false;
    if (cfg->auth.session_secret && cfg->auth.session_secret[0])
        return 0;
    unsigned char raw[32];
    char hex[2 * sizeof raw + 1];
    if (auth_random_bytes(raw, sizeof raw) != 0) {
        snprintf(err, errlen, "no randomness for a session secret");
        return -1;
    }
    auth_hex(raw, sizeof raw, hex);
    if (cfg_set(cfg, "auth.session_secret", hex, "random per start", err, errlen) != 0)
        return -1;
    *generated = true;
    return 0;
}

int auth_session_key(const minicrm_config *cfg, const char *sid, char *key, size_t n, char *err,
                     size_t errlen)
{
    const char *secret = cfg->auth.session_secret;
    char mac[HMAC_HEX_LEN + 1];
    if (!secret || !secret[0]) {
        snprintf(err, errlen, "no session secret (auth_session_secret_ensure not called)");
        return -1;
    }
    if (hmac_sha256_hex(secret, strlen(secret), sid, strlen(sid), mac) != 0) {
        snprintf(err, errlen, "HMAC-SHA256 failed");
        return -1;
    }
    snprintf(key, n, "%ssession:%s", cfg->redis.prefix, mac);
    return 0;
}

int auth_redis_set_nx(rconn *r, const char *key, const char *value, int ttl_s, const char *taken,
                      char *err, size_t errlen)
{
    redisReply *rep = rconn_command(r, "SET %s %s EX %d NX", key, value, ttl_s);
    int rc = 0;
    if (!rep || rep->type != REDIS_REPLY_STATUS) {
        snprintf(err, errlen, "Redis: %s",
                 !rep                             ? rconn_error(r)
                 : rep->type == REDIS_REPLY_ERROR ? rep->str
                                                  : taken);
        rc = -1;
    }
    if (rep)
        freeReplyObject(rep);
    return rc;
}

bool auth_redis_failed(rconn *r, redisReply **rep, char *err, size_t errlen)
{
    if (*rep && (*rep)->type != REDIS_REPLY_ERROR)
        return false;
    snprintf(err, errlen, "Redis: %s", *rep ? (*rep)->str : rconn_error(r));
    if (*rep)
        freeReplyObject(*rep);
    *rep = NULL;
    return true;
}

static int session_create(const minicrm_config *cfg, rconn *r, const auth_user *u,
                          const char *key_hash, char sid[AUTH_SID_LEN + 1], char *err,
                          size_t errlen);

int auth_session_create(const minicrm_config *cfg, rconn *r, const auth_user *u,
                        char sid[AUTH_SID_LEN + 1], char *err, size_t errlen)
{
    return session_create(cfg, r, u, NULL, sid, err, errlen);
}

int auth_session_create_for_key(const minicrm_config *cfg, rconn *r, const auth_user *u,
                                const char *key_hash, char sid[AUTH_SID_LEN + 1], char *err,
                                size_t errlen)
{
    if (!key_hash || !auth_is_lower_hex(key_hash, 64)) {
        snprintf(err, errlen, "key hash must be 64 hex digits");
        return -1;
    }
    return session_create(cfg, r, u, key_hash, sid, err, errlen);
}

static int session_create(const minicrm_config *cfg, rconn *r, const auth_user *u,
                          const char *key_hash, char sid[AUTH_SID_LEN + 1], char *err,
                          size_t errlen)
{
    int rc = -1;
    char *text = NULL;
    unsigned char raw[AUTH_SID_LEN / 2];
    sid[0] = '\0';
    if (auth_random_bytes(raw, sizeof raw) != 0) {
        snprintf(err, errlen, "no randomness available");
        goto out;
    }
    char id[AUTH_SID_LEN + 1];
    auth_hex(raw, sizeof raw, id);
    json_t *v = json_pack("{s:s, s:s, s:s, s:s, s:I}", "uid", u->id, "email", u->email, "name",
                          u->display_name, "role", auth_role_name(u->role), "at",
                          (json_int_t)time_now_ms());
    if (v && key_hash)
        json_object_set_new(v, "kh", json_string(key_hash));
    if (!v) {
        snprintf(err, errlen, "session encoding failed (invalid UTF-8?)");
        goto out;
    }
    text = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    if (!text)
        goto out;
    char key[256];
    if (auth_session_key(cfg, id, key, sizeof key, err, errlen) != 0)
        goto out;
    if (auth_redis_set_nx(r, key, text, cfg->auth.session_ttl_s, "session id collision", err,
                          errlen) != 0)
        goto out;
    memcpy(sid, id, sizeof id);
    rc = 0;
out:
    free(text);
    return rc;
}

static void copy_str(const json_t *obj, const char *key, char *dst, size_t n)
{
    const char *s = json_string_value(json_object_get(obj, key));
    snprintf(dst, n, "%s", s ? s : "");
}

int auth_session_get(const minicrm_config *cfg, rconn *r, const char *sid, auth_user *out,
                     char *err, size_t errlen)
{
    char kh[65];
    return auth_session_get_key(cfg, r, sid, out, kh, err, errlen);
}

int auth_session_get_key(const minicrm_config *cfg, rconn *r, const char *sid, auth_user *out,
                         char key_hash[65], char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    key_hash[0] = '\0';
    if (!sid || !auth_is_lower_hex(sid, AUTH_SID_LEN))
        return 1;
    char key[256];
    if (auth_session_key(cfg, sid, key, sizeof key, err, errlen) != 0)
        return -1;
    redisReply *rep = rconn_command(r, "GET %s", key);
    if (auth_redis_failed(r, &rep, err, errlen))
        return -1;
    int rc = 1;
    if (rep->type == REDIS_REPLY_STRING && rep->len <= SESSION_MAX_BYTES) {
        json_t *v = json_loadb(rep->str, rep->len, 0, NULL);
        const char *role = json_string_value(json_object_get(v, "role"));
        if (json_is_object(v) && auth_role_parse(role, &out->role) == 0) {
            copy_str(v, "uid", out->id, sizeof out->id);
            copy_str(v, "email", out->email, sizeof out->email);
            copy_str(v, "name", out->display_name, sizeof out->display_name);
            copy_str(v, "kh", key_hash, 65);
            rc = 0;
        }
        json_decref(v);
    }
    freeReplyObject(rep);
    return rc;
}

int auth_session_destroy(const minicrm_config *cfg, rconn *r, const char *sid, char *err,
                         size_t errlen)
{
    if (!sid || !auth_is_lower_hex(sid, AUTH_SID_LEN))
        return 0;
    char key[256];
    if (auth_session_key(cfg, sid, key, sizeof key, err, errlen) != 0)
        return -1;
    redisReply *rep = rconn_command(r, "DEL %s", key);
    if (auth_redis_failed(r, &rep, err, errlen))
        return -1;
    freeReplyObject(rep);
    return 0;
}

const char *auth_session_cookie(const minicrm_config *cfg, const char *sid, char *buf, size_t n)
{
    const char *samesite = cfg->auth.cookie_samesite ? cfg->auth.cookie_samesite : "Lax";
    bool secure = cfg->auth.cookie_secure || !strcmp(samesite, "None");
    snprintf(buf, n, "%s=%s; Path=/; Max-Age=%d; HttpOnly; SameSite=%s%s", AUTH_COOKIE_NAME,
             sid ? sid : "", sid ? cfg->auth.session_ttl_s : 0, samesite, secure ? "; Secure" : "");
    return buf;
}

static bool sid_shape(const char *s, size_t len)
{
    return auth_is_lower_hex(s, len);
}

int auth_session_from_cookie_header(const char *header, char sid[AUTH_SID_LEN + 1])
{
    return auth_cookie_find(header, AUTH_COOKIE_NAME, AUTH_SID_LEN, sid_shape, sid);
}

int auth_cookie_find(const char *header, const char *want, size_t len,
                     bool (*ok)(const char *s, size_t len), char *out)
{
    out[0] = '\0';
    if (!header)
        return 1;
    size_t wlen = strlen(want);
    const char *p = header;
    while (*p) {
        while (*p == ' ' || *p == ';' || *p == '\t')
            p++;
        const char *name = p;
        while (*p && *p != '=' && *p != ';')
            p++;
        size_t nlen = (size_t)(p - name);
        if (*p != '=') /* a bare token without a value: skip it */
            continue;
        const char *val = ++p;
        while (*p && *p != ';')
            p++;
        size_t vlen = (size_t)(p - val);
        while (vlen > 0 && (val[vlen - 1] == ' ' || val[vlen - 1] == '\t'))
            vlen--;
        if (nlen == wlen && !memcmp(name, want, nlen) && vlen == len) {
            memcpy(out, val, len);
            out[len] = '\0';
            if (ok(out, len))
                return 0;
            out[0] = '\0';
        }
    }
    return 1;
}
