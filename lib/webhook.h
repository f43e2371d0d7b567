/*
 * webhook: the parts of outbound webhooks (Standard Webhooks, www.standardwebhooks.com) that
 * the API and minicrm-webhooks share: the endpoint documents, their signing secrets, the
 * signature, the body, the URL rules and the retry schedule.
 *
 * An endpoint (collection `webhooks`):
 *   {_id, url, events: ["campaign.started", ...], description?, secret: "whsec_<base64>",
 *    enabled: bool, disabledReason?, disabledAt?, createdAt, createdBy,
 *    failures: consecutive failed attempts, deliveries: successful ones,
 *    last: {at, ok, status (HTTP status, 0 = no answer), error?}}
 *
 *     enabled --(an attempt answered 410 Gone)--> disabled   (final: delete and create again)
 *     enabled | disabled --(DELETE /api/webhooks/:id)--> gone
 *
 *   The secret is shown once, in the answer of the POST that made it; the GET never returns it
 *   (webhook_endpoint_append_public leaves it out). It stays in MongoDB as written: the worker
 *   needs it to sign, as the receiver needs it to verify.
 *
 * A delivery (one attempt of one event to one endpoint) is a POST of
 *     {"type": "campaign.started", "timestamp": "2026-12-03T15:00:00.000Z", "data": {...}}
 * with the headers
 *     webhook-id: evt_...          (the event id: the same in every attempt)
 *     webhook-timestamp: 1764774000  (seconds, the time of this attempt)
 *     webhook-signature: v1,<base64 of HMAC-SHA256(key, id "." timestamp "." body)>
 * where key is the base64-decoded part of the secret after "whsec_".
 *
 * Thread-safe: no state; callers own every buffer.
 */
#ifndef MINICRM_WEBHOOK_H
#define MINICRM_WEBHOOK_H

#include "config.h"
#include "jsonx.h"

#include <bson/bson.h>
#include <mongoc/mongoc.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DB_WEBHOOKS "webhooks"

#define WEBHOOK_SECRET_PREFIX "whsec_"
#define WEBHOOK_SECRET_BYTES  32  /* random bytes of a new secret */
#define WEBHOOK_SECRET_MAX    128 /* characters of a secret (prefix + base64) */
#define WEBHOOK_SIG_MAX       64  /* "v1," + base64 of a SHA-256 MAC (44) + NUL */
#define WEBHOOK_URL_MAX       2048
#define WEBHOOK_DESC_MAX      256
#define WEBHOOK_RETRY_MAX     32 /* entries of a retry schedule */

/* A new secret "whsec_" + base64 of WEBHOOK_SECRET_BYTES random bytes (getrandom) into out
 * (cap >= WEBHOOK_SECRET_MAX + 1). 0, or -1 (no randomness). */
int webhook_secret_new(char *out, size_t cap);

/* The webhook-signature value "v1,<base64>" of (id, ts, body) under secret into out
 * (cap >= WEBHOOK_SIG_MAX). 0, or -1 if the secret is not "whsec_" + base64. */
int webhook_sign(const char *secret, const char *id, int64_t ts_s, const char *body, size_t len,
                 char *out, size_t cap);

/* Append the delivery body {"type","timestamp","data"} to out (data: an object's JSON text).
 * 0 or -1 (out of memory). */
int webhook_body(jsonx_buf *out, const char *type, int64_t at_ms, const char *data, size_t datalen);

/* Check an endpoint URL given by a client: http:// or https://, a host, at most
 * WEBHOOK_URL_MAX bytes, and not the API itself (api.bind:api.port, a loopback or unspecified
 * address on api.port, or the host:port of vendor_sim.api_base_url, the API's URL as the other
 * programs know it). 0, or -1 with the reason (naming url) in err. */
int webhook_url_check(const minicrm_config *cfg, const char *url, char *err, size_t errlen);

/* Parse a retry schedule: comma-separated delays in seconds (decimals allowed, e.g.
 * "5,300,1800" or "0.2,0.5"), each > 0 and at most a day, at most max entries. The delays in ms
 * into out, their number into *n. 0, or -1 with the reason in err. */
int webhook_schedule_parse(const char *s, int64_t *out, size_t max, size_t *n, char *err,
                           size_t errlen);

#endif
