/*
 * idempotency: Idempotency-Key for routes that create something (POST /api/campaigns,
 * POST /api/messages), as a module a route can call.
 *
 * The first answer (status + body) is kept in Redis for api.idempotency_ttl_s under
 * {prefix}idem:{scope}:{user}:{key} ({prefix}idem:{user}:{key} without a scope) with a hash
 * of the body: a retry with the same body gets it back (header Idempotent-Replayed: true) and does
 * nothing; the same key with another body
 * -> 409; while the first is still running -> 409. 5xx answers are not kept (the client may
 * retry). A bad key (not 1-200 printable characters) -> 400.
 *
 * Use: idem_begin; if it returns 1, do the work, then idem_finish with the answer (which also
 * sends it). Thread-safe (Redis connections come from the request's pool).
 */
#ifndef MINICRM_API_IDEMPOTENCY_H
#define MINICRM_API_IDEMPOTENCY_H

#include "app.h"
#include "hmac.h"
#include "http.h"

#include <stdbool.h>

#define IDEM_KEY_MAX 200

typedef struct idem {
    bool active; /* the request carried a key */
    char key[512];
    char hash[HMAC_HEX_LEN + 1];
} idem;

/* 1: go on (a new request, or one without a key), then call idem_finish; 0: answered already
 * (a replay, 409, 400 or 503). `scope` names the route's kind of request ("messages"); NULL
 * keeps POST /api/campaigns' original key {prefix}idem:{user}:{key}, so answers stored before
 * that route used this module are still found. */
int idem_begin(api_ctx *app, http_request *req, const char *scope, idem *im);
/* Keep the answer (unless 5xx: then forget the key) and send it. body is JSON text. */
void idem_finish(api_ctx *app, http_request *req, idem *im, int status, const char *body);

#endif
