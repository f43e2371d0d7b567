/*
 * http: the request context of minicrm-api on top of libmicrohttpd, and the response helpers.
 *
 * One http_request exists per HTTP request. It is created when MHD reports the request headers,
 * collects the body (capped at api.max_body_bytes: a larger body is answered 413 without being
 * kept), is handed to the router once the body is complete, and is freed in MHD's
 * request-completed callback, which is also where the access-log line and the metrics are
 * written. Everything a request allocates hangs off it and is freed there (request-scoped
 * cleanup), including the JSON body parsed by http_json_body().
 *
 * A handler answers exactly once, with one of the http_send_* / http_error / http_redirect
 * functions. Headers to add (cookies, Location, ...) are collected with http_add_header() before
 * that. Every response carries X-Request-Id and, when the request came from the configured
 * front end, the CORS headers.
 *
 * Every response says `Cache-Control: no-store` unless the handler added its own Cache-Control
 * (static files).
 *
 * Threads: a request is handled entirely by one MHD thread; nothing here is shared between
 * requests except the api_ctx (see app.h). Strings returned by the getters are owned by MHD or
 * by the request and live until the request completes.
 */
#ifndef MINICRM_API_HTTP_H
#define MINICRM_API_HTTP_H

#include "app.h"

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_PARAMS        4
#define HTTP_MAX_EXTRA_HEADERS 16
#define HTTP_MAX_QUERY_PARAMS  256 /* more query arguments: 431 at once */

typedef enum {
    HTTP_GET = 0,
    HTTP_POST,
    HTTP_PUT,
    HTTP_PATCH,
    HTTP_DELETE,
    HTTP_OPTIONS,
    HTTP_HEAD,
    HTTP_OTHER
} http_method;

struct http_request {
    api_ctx *app;
    struct MHD_Connection *conn;
    http_method method;
    const char *method_str; /* as received (owned by MHD) */
    const char *path;       /* decoded path without the query (owned by MHD) */
    char request_id[40];

    /* Body: raw bytes as received, NUL-terminated for convenience (owned by the request). */
    char *body;
    size_t body_len;
    size_t body_cap;
    bool body_too_large;

    /* Set by the router. */
    int route_index; /* index in the route table, -1 if none matched */
    const char *route_label;
    const char *param_names[HTTP_MAX_PARAMS];
    char *param_values[HTTP_MAX_PARAMS]; /* owned by the request */
    int nparams;
    principal who;

    /* Response bookkeeping (for the access log and metrics). */
    bool responded;
    int status;
    size_t bytes_out;
    int64_t start_us;

    char *extra_headers[HTTP_MAX_EXTRA_HEADERS][2]; /* owned copies */
    int nextra;

    json_t *json; /* parsed body, cached by http_json_body (owned) */
};

typedef struct http_request http_request;

/* ---- request accessors ---- */

/* A request header (case-insensitive name) or NULL. */
const char *http_header(const http_request *req, const char *name);
/* A query-string argument (decoded) or NULL. */
const char *http_query(const http_request *req, const char *name);
/* A cookie value or NULL. */
const char *http_cookie(const http_request *req, const char *name);
/* A path parameter captured by the router (":id" -> "id"), or NULL. */
const char *http_param(const http_request *req, const char *name);
/* The peer address as text into buf. */
const char *http_peer(const http_request *req, char *buf, size_t n);

/* Where a browser says a request comes from: its Origin header (or, if absent, Referer). Trusted
 * when that is the API's own origin (http:// or https:// + the Host header) or the front end
 * (api.frontend_url); absent, "null" or anything else is not. *self (may be NULL) tells whether
 * it was the API's own origin (the dashboard) rather than the front end. */
bool http_origin_trusted(const http_request *req, bool *self);

/* Parse the body as JSON (cached). Answers the request itself and returns NULL when the body is
 * not acceptable: 415 if Content-Type is not application/json, 400 if it is empty or malformed.
 * The returned reference is owned by the request (do not decref). */
json_t *http_json_body(http_request *req);
/* The checks http_json_body makes before parsing (415 Content-Type, 400 empty body), for a
 * handler that scans the body itself. 0, or -1 after answering. */
int http_require_json(http_request *req);

/* Parse an integer query parameter in [min, max]; absent or empty -> def. On a bad value answers
 * 400 naming the parameter and returns -1; else 0. */
int http_query_long(http_request *req, const char *name, long def, long min, long max, long *out);

/* ---- responses (each answers the request; call exactly one of them, once) ---- */

/* Add a response header (copied). Returns 0, or -1 if too many. */
int http_add_header(http_request *req, const char *name, const char *value);
/* Set-Cookie helper: name=value; Path=/; Max-Age=max_age (negative: session cookie, 0: delete);
 * HttpOnly if http_only; Secure if secure; SameSite=samesite if non-NULL. */
int http_set_cookie(http_request *req, const char *name, const char *value, long max_age,
                    bool http_only, bool secure, const char *samesite);

/* Send `body` (stolen: the function decrefs it) as JSON with `status`. Returns 0 or -1. */
int http_send_json(http_request *req, int status, json_t *body);
/* Send raw bytes with a content type (copied). */
int http_send_raw(http_request *req, int status, const char *content_type, const void *data,
                  size_t len);
/* The same with a malloc'd body taken over (freed by MHD once sent, or here on failure): no
 * copy of a large list page. */
int http_send_owned(http_request *req, int status, const char *content_type, char *data,
                    size_t len);
/* Answer with a body produced by `reader` as the connection can take it (MHD's content reader:
 * Server-Sent Events), with the same common headers as http_send_raw. `cls` is handed to reader
 * and to free_cb (called by MHD once the response is done with, also on abort). The reader may
 * suspend the connection (MHD_suspend_connection) and return 0; it returns
 * MHD_CONTENT_READER_END_OF_STREAM to finish. On failure free_cb(cls) has been called. */
int http_send_stream(http_request *req, int status, const char *content_type,
                     MHD_ContentReaderCallback reader, void *cls,
                     MHD_ContentReaderFreeCallback free_cb);
/* {"error": msg} as a new JSON object (caller owns it); bytes of msg that are not valid UTF-8
 * become '?', so the result is never NULL for lack of valid text. */
json_t *http_error_json(const char *msg);
/* True if s[0..n) is valid UTF-8 (RFC 3629). */
bool http_utf8_valid(const char *s, size_t n);
/* {"error": "<formatted>"} with status. */
int http_error(http_request *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* 302 to `location`. */
int http_redirect(http_request *req, const char *location);

/* ---- the daemon glue (used by main.c) ---- */

/* MHD access handler and completion callback; cls is the api_ctx. */
enum MHD_Result http_access_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                    const char *method, const char *version,
                                    const char *upload_data, size_t *upload_data_size,
                                    void **con_cls);
void http_request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                            enum MHD_RequestTerminationCode toe);

/* MHD_OPTION_URI_LOG_CALLBACK: sees each request line first; a query with more than
 * HTTP_MAX_QUERY_PARAMS arguments is answered 431 (instead of hanging inside MHD). */
void *http_uri_log(void *cls, const char *uri, struct MHD_Connection *conn);

/* MHD_OPTION_UNESCAPE_CALLBACK: percent-decoding that never produces a NUL byte. */
size_t http_unescape(void *cls, struct MHD_Connection *conn, char *s);

/* Number of requests currently between start and completion (for graceful shutdown). */
long http_inflight(void);

#endif
