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
#include "jsonx.h"
#include "rpool.h"

#include <bson/bson.h>
#include <jansson.h>
#include <mongoc/mongoc.h>
#include <stdbool.h>

/* Reads. Every read below carries maxTimeMS = max_time_ms (mongo.max_time_ms, kept below the
 * driver's socket timeout by main.c), so a slow query ends on the server too and the client
 * gets a clear 504. Called once at start, before any request thread runs. */
void api_reads_init(int max_time_ms);

/* MongoDB's MaxTimeMSExpired: a read outlived its maxTimeMS. */
#define API_MAX_TIME_MS_EXPIRED 50
bool api_is_timeout(const bson_error_t *e);

/* Answer a MongoDB failure: 503 "database unavailable" when the server cannot be reached,
 * 504 "database query timed out" when a read outlived its maxTimeMS, else 500 (logged with
 * `what`). Returns -1. */
int api_db_fail(http_request *req, const bson_error_t *e, const char *what);
/* Log a MongoDB failure and return the status it deserves (503, 504 or 500) without
 * answering. */
int api_db_status(http_request *req, const bson_error_t *e, const char *what);
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

/* ---- MongoDB helpers ---- */

/* An exact count of the documents matching filter: the `count` command with the filter; with
 * no or an empty filter an aggregation ($match + $group, as countDocuments does), because
 * MongoDB answers an empty-filter `count` from collection metadata, which can be off after an
 * unclean shutdown and counts orphans on a sharded cluster. (On a sharded cluster a filtered
 * `count` may count orphans too; minicrm does not shard.) Returns 0 and sets *n, or -1 with
 * err. */
int api_count(mongoc_collection_t *coll, const bson_t *filter, int64_t *n, bson_error_t *err);
/* The count of an audience filter (lib/rules): with a {f: {$ne: v}} term (the suppression
 * clause) count(filter without it) - count(that and f == v), two counts indexes answer
 * (rules_filter_split_ne), else api_count. With no rule the first is the collection's metadata
 * count (`count` without a query: O(1) on MongoDB, exact except after an unclean shutdown until
 * MongoDB recounts, see README "Counts say what they are"); with any rule both are exact. Not
 * atomic: a customer flagged between the two counts is off by one for that moment. 0 and *n, or
 * -1 with err. */
int api_count_audience(mongoc_collection_t *coll, const bson_t *filter, int64_t *n,
                       bson_error_t *err);
/* The collection's metadata count (`count` without a filter): O(1), not exact (see above).
 * Only for figures shown as estimates (GET /communication's total, total_exact false). */
int api_count_estimate(mongoc_collection_t *coll, int64_t *n, bson_error_t *err);

/* Replace, in every object of the JSON array `docs`, the hex id string at `field` by the
 * referenced document of collection `coll_name` projected to `fields` (NULL-terminated list,
 * "_id" always included), or null if it no longer exists. One $in query per call.
 * Returns 0, or -1 with err. */
int api_populate(api_ctx *app, mongoc_client_t *cl, json_t *docs, const char *field,
                 const char *coll_name, const char *const *fields, bson_error_t *err);

/* ---- lists: one find -> JSON array, optionally populated, answered or returned ---- */

/* A reference to populate: the hex id at `field` becomes the document of `coll` projected to
 * `fields` (see api_populate). */
typedef struct api_ref {
    const char *field;
    const char *coll;
    const char *const *fields;
} api_ref;

/* One list query. `sort` is a NULL-terminated list of field names, "-name" for descending
 * (NULL: natural order); `refs` is NULL or ends with a {NULL} entry. */
typedef struct api_query {
    const char *coll;
    const bson_t *filter; /* NULL matches everything */
    const char *const *sort;
    long limit;
    long skip; /* 0: none */
    const api_ref *refs;
    const char *const *exclude; /* fields never shown (projection {f: 0}); NULL-terminated */
} api_query;

/* Keyset paging. A cursor (the X-Next-Cursor header of a full page, the ?after= of the next)
 * is at most API_CURSOR_MAX - 1 bytes: the last document's cursor_field (an id), or for the
 * newest-first lists (cursor_field API_CURSOR_NEWEST, compared by address) "<createdAt
 * ms>_<_id hex>", the position in their order {createdAt: -1, _id: -1}. */
#define API_CURSOR_MAX 48
extern const char API_CURSOR_NEWEST[];
/* Append the filter of the documents after cursor `after` in the newest-first order to filter:
 * {createdAt: {$lte: T}, $and: [{$or: [{createdAt: {$lt: T}}, {_id: {$lt: id}}]}]} (the
 * caller's filter may hold an $or of its own, not createdAt or $and), which the index
 * {createdAt: -1, _id: -1} serves from T on (constant time at any depth). 0, or -1 after
 * answering 400 for a malformed cursor. */
int api_after_newest(http_request *req, const char *after, bson_t *filter);

/* Sort orders used by several routes. */
extern const char *const API_SORT_NEWEST[]; /* createdAt desc, _id desc (index createdAt_-1) */
/* Fields of a populated customer reference: {_id, name, email}. */
extern const char *const API_CUSTOMER_REF_FIELDS[];

/* Run q and return the documents as a new JSON array in *out (caller decrefs), references
 * populated. If cursor_field is non-NULL and the page is full, the value of that field in the
 * last document (read before populating) is copied into cursor (24 hex + NUL), else cursor is
 * set to "". Returns 0, or -1 with err (*out NULL). */
int api_query_json(api_ctx *app, mongoc_client_t *cl, const api_query *q, json_t **out,
                   const char *cursor_field, char cursor[API_CURSOR_MAX], bson_error_t *err);
/* The same page as api_query_json, written as JSON text straight from BSON (jsonx_buf_bson:
 * the same bytes, without a jansson tree), appended to *out (caller frees out->data); the rare
 * page it cannot write exactly (a repeated key) goes through api_query_json. Cursor as above.
 * 0, or -1 with err. */
int api_query_text(api_ctx *app, mongoc_client_t *cl, const api_query *q, jsonx_buf *out,
                   const char *cursor_field, char cursor[API_CURSOR_MAX], bson_error_t *err);
/* Answer a list request with q: 200 and the array (with X-Next-Cursor when cursor_field is
 * given and the page is full), or the MongoDB failure (503/500) while `what`. Borrows a client
 * from the pool for the call. */
void api_send_query(api_ctx *app, http_request *req, const api_query *q, const char *cursor_field,
                    const char *what);
/* Find the document with _id oid in coll_name as new JSON (*out, caller decrefs).
 * 1 found, 0 not found, -1 error (err set). */
int api_find_by_id(api_ctx *app, mongoc_client_t *cl, const char *coll_name, const bson_oid_t *oid,
                   json_t **out, bson_error_t *err);

/* The skip of page `page` (1-based) of `limit` documents. */
long api_skip(long page, long limit);
/* The same for a ?page= of a list, bounded: a skip over api.max_skip documents (a deep skip
 * costs O(skip) on MongoDB too) answers 400 pointing to ?after= and returns -1. */
int api_page_skip(http_request *req, long page, long limit, long *skip);
/* Where a newest-first list starts: with ?after= append api_after_newest's filter (*skip 0),
 * else *skip of page (api_page_skip). 0, or -1 after answering 400. */
int api_newest_position(http_request *req, long page, long limit, bson_t *filter, long *skip);
/* ?customer_id= (optional; empty means all) as {customer_id: oid} appended to filter. 0, or -1
 * after answering 400 for a malformed id. */
int api_filter_customer(http_request *req, bson_t *filter);

/* The request body as a JSON object (owned by the request), or NULL after answering: 415/400
 * from http_json_body, or 400 "body must be a JSON object<hint>" for any other JSON value
 * (hint may be NULL, e.g. " {role, name?}"). */
json_t *api_body_object(http_request *req, const char *hint);

/* Read paging parameters: ?limit= (default def, max api.max_page_size) and ?page= (>= 1,
 * default 1). Answers 400 and returns -1 on a bad value. */
int api_paging(http_request *req, long def, long *limit, long *page);

/* ---- validation of body fields (each answers 400 naming the field and returns -1) ---- */

/* The check behind api_field_str, for callers that build their answer later: 0, or -1 with
 * the reason (naming the field) in err. Rejects non-strings, embedded NULs, blank strings
 * (when required; an optional blank string counts as absent) and strings over maxlen bytes. */
int api_check_str(json_t *body, const char *field, bool required, size_t maxlen, const char **out,
                  char *err, size_t errlen);
/* A required/optional string of 1..maxlen bytes (after trimming nothing: callers decide).
 * *out is NULL when optional and absent (or null). */
int api_field_str(http_request *req, json_t *body, const char *field, bool required, size_t maxlen,
                  const char **out);
/* A number in [min,max] (exclusive min if min_exclusive). *present false when optional and
 * absent/null. */
int api_field_num(http_request *req, json_t *body, const char *field, bool required, double min,
                  bool min_exclusive, double max, double *out, bool *present);

/* Answer `status` with {"message": message, field: doc}: the bytes json_pack("{s:s,s:o}") gives
 * with doc's jansson tree (jsonx_from_bson), written straight from the BSON without building
 * the tree (through jansson when that fails). doc's top-level member `skip` (NULL: none) is left
 * out. For a document the handler just stored: it has no repeated key. */
void api_send_stored(http_request *req, int status, const char *message, const char *field,
                     const bson_t *doc, const char *skip);

/* Push n JSON jobs (lib/jobs) onto queue `name` (lib/queue) in one pipelined round trip. 0, or
 * -1 (logged, the request not answered: for handlers that keep their answer). */
int api_push_jobs(http_request *req, const char *name, const char *const *jobs, const size_t *lens,
                  size_t n);
/* api_push_jobs, answering 503 on failure. 0, or -1 after answering 503. */
int api_enqueue(http_request *req, const char *name, const char *const *jobs, const size_t *lens,
                size_t n);
/* Like api_enqueue, but only if token `once` was not pushed on that queue in the last ttl_s
 * seconds (queue_push_once). 1 pushed, 0 seen before (nothing pushed, nothing answered), -1
 * answered 503. */
int api_enqueue_once(http_request *req, const char *name, const char *once, int ttl_s,
                     const char *const *jobs, const size_t *lens, size_t n);
