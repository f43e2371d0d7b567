/*
 * apiutil: helpers shared by the route modules of minicrm-api: dependency errors -> 503,
 * ids, paging, the document -> JSON shape of the contract, and the queue producer.
 *
 * Every helper that "answers" writes the HTTP response itself and returns -1 so a handler can
 * simply `return` after it. Thread-safe (no state of its own).
 */
#ifndef MINICRM_API_APIUTIL_H
#define MINICRM_API_APIUTIL_H

#include "http.h"
#include "rpool.h"

#include <bson/bson.h>
#include <jansson.h>
#include <mongoc/mongoc.h>
#include <stdbool.h>

/* Answer a MongoDB failure: 503 "database unavailable" when the server cannot be reached,
 * else 500 (logged with `what`). Returns -1. */
int api_db_fail(http_request *req, const bson_error_t *e, const char *what);
/* True for a duplicate-key error (E11000). */
bool api_is_dup_key(const bson_error_t *e);

/* Parse a 24-hex id named `field`; answers 400 and returns -1 if it is not one. */
int api_parse_oid(http_request *req, const char *field, const char *hex, bson_oid_t *out);

/* Borrow a Redis connection or answer 503 and return NULL. Give it back with rpool_put. */
rconn *api_redis(http_request *req);
/* Answer a Redis failure (503). Returns -1. */
int api_redis_fail(http_request *req, rconn *c, const char *what);

/* Copy of `s` truncated to at most n-1 bytes into buf; returns buf. */
const char *api_lower(const char *s, char *buf, size_t n);

/* Full Redis key "<prefix><suffix>" into buf. */
const char *api_key(const api_ctx *app, char *buf, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
