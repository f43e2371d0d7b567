/*
 * idempotency: see idempotency.h. Stored value: {"h": body hash, "s": status (0 while the
 * first request runs), "b": the answer's JSON text}.
 */
#include "idempotency.h"

#include "apiutil.h"
#include "jsonx.h"
#include "log.h"
#include "rpool.h"

#include <stdio.h>
#include <string.h>

static bool key_valid(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > IDEM_KEY_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] <= ' ' || (unsigned char)k[i] >= 127)
            return false;
    return true;
}

static void send_answer(http_request *req, int status, const char *body, bool replayed)
{
    if (replayed)
        http_add_header(req, "Idempotent-Replayed", "true");
    http_send_raw(req, status, "application/json; charset=utf-8", body, strlen(body));
}

int idem_begin(api_ctx *app, http_request *req, const char *scope, idem *im)
{
    memset(im, 0, sizeof *im);
    const char *ik = http_header(req, "Idempotency-Key");
    if (!ik)
        return 1;
    if (!key_valid(ik)) {
        http_error(req, 400, "Idempotency-Key must be 1-%d printable characters", IDEM_KEY_MAX);
        return 0;
    }
    hmac_sha256_hex("idempotency", 11, req->body, req->body_len, im->hash);
    if (scope)
        api_key(app, im->key, sizeof im->key, "idem:%s:%s:%s", scope, req->who.user_id, ik);
    else
        api_key(app, im->key, sizeof im->key, "idem:%s:%s", req->who.user_id, ik);
    rconn *c = api_redis(req);
    if (!c)
        return 0;
    char pending[128];
    snprintf(pending, sizeof pending, "{\"h\":\"%s\",\"s\":0}", im->hash);
    redisReply *r =
        rconn_command(c, "SET %s %s NX EX %d", im->key, pending, app->cfg->api.idempotency_ttl_s);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        freeReplyObject(r);
        api_redis_fail(req, c, "idempotency");
        rpool_put(app->redis, c);
        return 0;
    }
    bool fresh = r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    if (fresh) {
        rpool_put(app->redis, c);
        im->active = true;
        return 1;
    }
    r = rconn_command(c, "GET %s", im->key);
    json_t *kept =
        (r && r->type == REDIS_REPLY_STRING) ? jsonx_parse(r->str, r->len, NULL, 0) : NULL;
    freeReplyObject(r);
    rpool_put(app->redis, c);
    const char *h = jsonx_str(kept, "h", "");
    long long st = jsonx_int(kept, "s", -1);
    const char *b = jsonx_str(kept, "b", NULL);
    if (!kept)
        http_error(req, 409, "Idempotency-Key is being processed, retry later");
    else if (strcmp(h, im->hash) != 0)
        http_error(req, 409, "Idempotency-Key was already used with a different body");
    else if (st == 0 || !b)
        http_error(req, 409, "a request with this Idempotency-Key is still in progress");
    else
        send_answer(req, (int)st, b, true);
    json_decref(kept);
    return 0;
}

void idem_finish(api_ctx *app, http_request *req, idem *im, int status, const char *body)
{
    rconn *c;
    if (im->active && (c = rpool_get(app->redis)) != NULL) {
        redisReply *r;
        if (status >= 500) {
            r = rconn_command(c, "DEL %s", im->key); /* let the client retry */
        } else {
            json_t *kept = json_pack("{s:s,s:i,s:s}", "h", im->hash, "s", status, "b", body);
            char *ks = jsonx_dumps(kept);
            json_decref(kept);
            r = ks ? rconn_command(c, "SET %s %s EX %d", im->key, ks,
                                   app->cfg->api.idempotency_ttl_s)
                   : NULL;
            free(ks);
        }
        if (!r)
            log_warn("idempotency_store_failed", "rid=%s", req->request_id);
        freeReplyObject(r);
        rpool_put(app->redis, c);
    }
    send_answer(req, status, body, false);
}
