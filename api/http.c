/*
 * http: see http.h.
 *
 * MHD calls http_access_handler() several times per request:
 *   1. *con_cls == NULL: headers are in. We allocate the http_request and assign the request
 *      id. A declared Content-Length above the cap marks the request too large; it is answered
 *      413 at once, before any of the body is read, only when the client asked first
 *      (`Expect: 100-continue`: it then sends nothing) or declared more than the discard bound.
 *   2. *upload_data_size > 0: a piece of the body. It is appended while under the cap; beyond
 *      the cap it is read and thrown away (the request remembered as too large) up to the
 *      discard bound, and the 413 is queued once the whole body is in (step 3).
 *   3. *upload_data_size == 0 after that: the request is complete; app->dispatch (the router,
 *      wired by main.c) answers it, or the 413 goes out for a body over the cap.
 *
 * Why read an oversized body at all: libmicrohttpd can only queue an answer before the body
 * (it then stops reading and closes the connection) or after it. Closing while the client is
 * still sending resets the connection, and a client that writes the whole body before reading
 * (Python's urllib, most scripts) gets a broken pipe instead of the 413. So, as nginx's
 * lingering close does, we keep reading and discard what arrives, bounded: at most
 * HTTP_DISCARD_MAX bytes past the cap and HTTP_DISCARD_MAX_US from the request's start. Past
 * either bound the connection is closed (the client may then see a reset, as before); a
 * declared length past the byte bound is refused at once. Discarding costs no memory (nothing
 * is kept) and, on a local network, well under a second per 64 MiB.
 * http_request_completed() then runs exactly once per request (also for aborted ones): it
 * writes the access-log line, records metrics and frees the request.
 *
 * Responses are built from a malloc'd buffer that MHD frees (MHD_RESPMEM_MUST_FREE / copy).
 */
#include "http.h"

#include "connguard.h"
#include "jsonx.h"
#include "log.h"
#include "metrics.h"
#include "timeutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Bounds of discarding an oversized body (see above). */
#define HTTP_DISCARD_MAX    ((size_t)64 * 1024 * 1024) /* bytes read past api.max_body_bytes */
#define HTTP_DISCARD_MAX_US (10 * 1000000LL)           /* from the start of the request */

/* Returned by http_uri_log for a request with too many query parameters: MHD stores it as the
 * request's context, and the access handler answers 431 (see http_uri_log). */
static char g_too_many_params;
#define TOO_MANY_PARAMS ((void *)&g_too_many_params)

static atomic_long g_inflight;
static atomic_ulong g_request_seq;
static char g_id_prefix[12]; /* random per process, set on first request */
static pthread_once_t g_id_once = PTHREAD_ONCE_INIT;

long http_inflight(void)
{
    return atomic_load(&g_inflight);
}

static void init_id_prefix(void)
{
    unsigned char r[4] = {0};
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, r, sizeof r) != (ssize_t)sizeof r)
            memset(r, 0, sizeof r);
        close(fd);
    }
    unsigned v = ((unsigned)r[0] << 24 | (unsigned)r[1] << 16 | (unsigned)r[2] << 8 | r[3]) ^
                 (unsigned)getpid();
    snprintf(g_id_prefix, sizeof g_id_prefix, "%08x", v);
}

/* A client-supplied X-Request-Id is kept when it is short and plain, so traces join up. */
static bool request_id_acceptable(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= 36 || !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                         (c >= 'A' && c <= 'Z') || c == '-' || c == '_' || c == '.'))
            return false;
    }
    return n > 0;
}

static http_method parse_method(const char *m)
{
    static const struct {
        const char *name;
        http_method m;
    } tab[] = {{"GET", HTTP_GET},     {"POST", HTTP_POST},     {"PUT", HTTP_PUT},
               {"PATCH", HTTP_PATCH}, {"DELETE", HTTP_DELETE}, {"OPTIONS", HTTP_OPTIONS},
               {"HEAD", HTTP_HEAD}};
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcmp(m, tab[i].name) == 0)
            return tab[i].m;
    return HTTP_OTHER;
}

static http_request *request_new(api_ctx *app, struct MHD_Connection *conn, const char *url,
                                 const char *method)
{
    http_request *req = calloc(1, sizeof *req);
    if (!req)
        return NULL;
    req->app = app;
    req->conn = conn;
    req->method_str = method;
    req->method = parse_method(method);
    req->path = url;
    req->route_index = -1;
    req->route_label = "unmatched";
    req->start_us = time_mono_us();
    pthread_once(&g_id_once, init_id_prefix);
    const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (rid && request_id_acceptable(rid))
        snprintf(req->request_id, sizeof req->request_id, "%s", rid);
    else
        snprintf(req->request_id, sizeof req->request_id, "%s-%06lx", g_id_prefix,
                 (unsigned long)atomic_fetch_add(&g_request_seq, 1) + 1);
    atomic_fetch_add(&g_inflight, 1);
    return req;
}

static void request_free(http_request *req)
{
    if (!req)
        return;
    free(req->body);
    for (int i = 0; i < req->nparams; i++)
        free(req->param_values[i]);
    for (int i = 0; i < req->nextra; i++) {
        free(req->extra_headers[i][0]);
        free(req->extra_headers[i][1]);
    }
    json_decref(req->json);
    free(req);
}

/* ------------------------------------------------------------------------------------------ */
/* Accessors                                                                                  */
/* ------------------------------------------------------------------------------------------ */

const char *http_header(const http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *http_query(const http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *http_cookie(const http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_COOKIE_KIND, name);
}

const char *http_param(const http_request *req, const char *name)
{
    for (int i = 0; i < req->nparams; i++)
        if (strcmp(req->param_names[i], name) == 0)
            return req->param_values[i];
    return NULL;
}

const char *http_peer(const http_request *req, char *buf, size_t n)
{
    snprintf(buf, n, "-");
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return buf;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, buf,
                  (socklen_t)n);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, buf,
                  (socklen_t)n);
    return buf;
}

int http_require_json(http_request *req)
{
    const char *ct = http_header(req, "Content-Type");
    size_t jl = strlen("application/json");
    if (!ct || strncasecmp(ct, "application/json", jl) != 0 ||
        (ct[jl] != '\0' && ct[jl] != ';' && ct[jl] != ' ')) {
        http_error(req, 415, "Content-Type must be application/json");
        return -1;
    }
    if (req->body_len == 0) {
        http_error(req, 400, "request body is required (JSON)");
        return -1;
    }
    return 0;
}

json_t *http_json_body(http_request *req)
{
    if (req->json)
        return req->json;
    if (http_require_json(req) != 0)
        return NULL;
    /* Any JSON value is accepted here (not only objects and arrays) so that a valid body of the
     * wrong shape ("null", "3") gets the handler's "body must be a JSON object", not a
     * misleading "malformed JSON". */
    json_error_t jerr;
    json_t *v = json_loadb(req->body, req->body_len,
                           JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY, &jerr);
    if (!v) {
        http_error(req, 400, "malformed JSON: invalid JSON at line %d column %d: %s", jerr.line,
                   jerr.column, jerr.text);
        return NULL;
    }
    req->json = v;
    return v;
}

int http_query_long(http_request *req, const char *name, long def, long min, long max, long *out)
{
    const char *s = http_query(req, name);
    if (!s || !*s) { /* "?limit=" (an empty form field) means "not given", as in the original */
        *out = def;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || !end || *end || v < min || v > max) {
        http_error(req, 400, "%s must be an integer between %ld and %ld", name, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Responses                                                                                  */
/* ------------------------------------------------------------------------------------------ */

int http_add_header(http_request *req, const char *name, const char *value)
{
    if (req->nextra >= HTTP_MAX_EXTRA_HEADERS)
        return -1;
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return -1;
    }
    req->extra_headers[req->nextra][0] = n;
    req->extra_headers[req->nextra][1] = v;
    req->nextra++;
    return 0;
}

int http_set_cookie(http_request *req, const char *name, const char *value, long max_age,
                    bool http_only, bool secure, const char *samesite)
{
    char buf[1024], age[64] = "";
    if (max_age >= 0)
        snprintf(age, sizeof age, "; Max-Age=%ld", max_age);
    int n = snprintf(buf, sizeof buf, "%s=%s; Path=/%s%s%s%s%s", name, value, age,
                     http_only ? "; HttpOnly" : "", secure ? "; Secure" : "",
                     samesite ? "; SameSite=" : "", samesite ? samesite : "");
    if (n < 0 || (size_t)n >= sizeof buf)
        return -1;
    return http_add_header(req, MHD_HTTP_HEADER_SET_COOKIE, buf);
}

/* The configured front-end origin, without a trailing slash, compared to the Origin header. */
static bool origin_allowed(const http_request *req, const char *origin)
{
    const char *fe = req->app->cfg->api.frontend_url;
    if (!origin || !fe || !*fe)
        return false;
    size_t n = strlen(fe);
    while (n > 0 && fe[n - 1] == '/')
        n--;
    return strlen(origin) == n && strncasecmp(origin, fe, n) == 0;
}

/* True if `url` is origin[0..olen) itself or followed by '/'. */
static bool url_in_origin(const char *url, const char *origin, size_t olen)
{
    return olen > 0 && strncasecmp(url, origin, olen) == 0 &&
           (url[olen] == '\0' || url[olen] == '/');
}

bool http_origin_trusted(const http_request *req, bool *self)
{
    if (self)
        *self = false;
    const char *origin = http_header(req, "Origin");
    const char *url = origin ? origin : http_header(req, "Referer");
    if (!url || !strcmp(url, "null"))
        return false;
    const char *host = http_header(req, "Host");
    size_t hlen = host ? strlen(host) : 0;
    if (hlen > 0 && hlen < 256) {
        const char *rest = !strncasecmp(url, "http://", 7)    ? url + 7
                           : !strncasecmp(url, "https://", 8) ? url + 8
                                                              : NULL;
        if (rest && url_in_origin(rest, host, hlen)) {
            if (self)
                *self = true;
            return true;
        }
    }
    const char *fe = req->app->cfg->api.frontend_url;
    size_t n = fe ? strlen(fe) : 0;
    while (n > 0 && fe[n - 1] == '/')
        n--;
    return url_in_origin(url, fe, n);
}

static void add_cors(const http_request *req, struct MHD_Response *resp)
{
    const char *origin = http_header(req, "Origin");
    MHD_add_response_header(resp, "Vary", "Origin");
    if (!origin_allowed(req, origin))
        return;
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
    MHD_add_response_header(resp, "Access-Control-Allow-Credentials", "true");
    MHD_add_response_header(resp, "Access-Control-Expose-Headers", "X-Request-Id");
}

/* The headers every response carries, then queue it (consumes resp). */
static int queue_response(http_request *req, int status, const char *content_type,
                          struct MHD_Response *resp, size_t len)
{
    bool own_cache_control = false;
    if (content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(resp, "X-Request-Id", req->request_id);
    for (int i = 0; i < req->nextra; i++)
        if (strcasecmp(req->extra_headers[i][0], "Cache-Control") == 0)
            own_cache_control = true;
    if (!own_cache_control)
        MHD_add_response_header(resp, "Cache-Control", "no-store");
    add_cors(req, resp);
    for (int i = 0; i < req->nextra; i++)
        MHD_add_response_header(resp, req->extra_headers[i][0], req->extra_headers[i][1]);
    /* Count the request before its answer leaves: a client that has its response and then
     * reads /metrics must see it (the completion callback may run after that next request). */
    metrics_observe(req->app->metrics, req->route_index, status, time_mono_us() - req->start_us);
    enum MHD_Result r = MHD_queue_response(req->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    req->responded = true;
    req->status = status;
    req->bytes_out = len;
    return r == MHD_YES ? 0 : -1;
}

int http_send_raw(http_request *req, int status, const char *content_type, const void *data,
                  size_t len)
{
    if (req->responded) {
        log_error("bug_double_response", "rid=%s status=%d", req->request_id, status);
        return -1;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return -1;
    return queue_response(req, status, content_type, resp, len);
}

int http_send_owned(http_request *req, int status, const char *content_type, char *data, size_t len)
{
    if (req->responded) {
        log_error("bug_double_response", "rid=%s status=%d", req->request_id, status);
        free(data);
        return -1;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(len, data, free);
    if (!resp) {
        free(data);
        return -1;
    }
    return queue_response(req, status, content_type, resp, len);
}

int http_send_stream(http_request *req, int status, const char *content_type,
                     MHD_ContentReaderCallback reader, void *cls,
                     MHD_ContentReaderFreeCallback free_cb)
{
    if (req->responded) {
        log_error("bug_double_response", "rid=%s status=%d", req->request_id, status);
        free_cb(cls);
        return -1;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, reader, cls, free_cb);
    if (!resp) {
        free_cb(cls);
        return -1;
    }
    return queue_response(req, status, content_type, resp, 0);
}

int http_send_json(http_request *req, int status, json_t *body)
{
    char *s = body ? jsonx_dumps(body) : NULL;
    json_decref(body);
    if (!s)
        return http_send_raw(req, 500, "application/json", "{\"error\":\"out of memory\"}", 25);
    return http_send_owned(req, status, "application/json; charset=utf-8", s, strlen(s));
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Length of the valid UTF-8 sequence at s[0..n) (1-4), or 0 if it is not one (overlong forms,
 * surrogates and code points above U+10FFFF are invalid, as in RFC 3629). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (len > n)
        return 0;
    unsigned cp = c & (0x3F >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

bool http_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(p + i, n - i);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

json_t *http_error_json(const char *msg)
{
    /* Messages quote client input (paths, keys) and may have been cut by a bounded snprintf in
     * the middle of a character: every invalid byte becomes '?' so the body is always JSON
     * with an "error" string (jansson refuses invalid UTF-8). */
    char buf[512];
    size_t n = strlen(msg), k = 0;
    const unsigned char *p = (const unsigned char *)msg;
    for (size_t i = 0; i < n && k + 4 < sizeof buf;) {
        size_t len = utf8_seq(p + i, n - i);
        if (len == 0) {
            buf[k++] = '?';
            i++;
        } else {
            memcpy(buf + k, p + i, len);
            k += len;
            i += len;
        }
    }
    buf[k] = '\0';
    return json_pack("{s:s}", "error", buf);
}

int http_error(http_request *req, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return http_send_json(req, status, http_error_json(msg));
}

size_t http_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    /* As MHD_http_unescape, except that "%00" stays as it is: a NUL byte inside a path or a
     * query value would silently cut the C string ("/customers/%00" would become "/customers/"
     * and reach the list route). Kept literal, it is just an invalid id or tag. */
    char *w = s;
    for (const char *r = s; *r;) {
        int hi, lo;
        if (r[0] == '%' && (hi = hexval(r[1])) >= 0 && (lo = hexval(r[2])) >= 0 && (hi | lo) != 0) {
            *w++ = (char)(hi << 4 | lo);
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

int http_redirect(http_request *req, const char *location)
{
    if (http_add_header(req, MHD_HTTP_HEADER_LOCATION, location) != 0)
        return -1;
    return http_send_raw(req, 302, "text/plain; charset=utf-8", "Found", 5);
}

/* ------------------------------------------------------------------------------------------ */
/* MHD glue                                                                                   */
/* ------------------------------------------------------------------------------------------ */

void *http_uri_log(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    (void)conn;
    /* libmicrohttpd 0.9.75 stores every query argument in the connection's memory pool right
     * after this call; when they do not fit it tries to answer 431, has no room left for that
     * answer either, and the connection hangs silently until the timeout. So a query with more
     * than HTTP_MAX_QUERY_PARAMS arguments is cut here, in MHD's own buffer, before MHD parses
     * it (the query is not used after that; the buffer is the connection's writable read
     * buffer), and the request is marked for a 431. test_api_hardening checks the answer. */
    char *q = uri ? strchr(uri, '?') : NULL;
    if (!q)
        return NULL;
    long n = 1;
    for (const char *p = q + 1; *p; p++)
        if (*p == '&' && ++n > HTTP_MAX_QUERY_PARAMS)
            break;
    if (n <= HTTP_MAX_QUERY_PARAMS)
        return NULL;
    q[1] = '\0';
    return TOO_MANY_PARAMS;
}

enum MHD_Result http_access_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                    const char *method, const char *version,
                                    const char *upload_data, size_t *upload_data_size,
                                    void **con_cls)
{
    api_ctx *app = cls;
    http_request *req = *con_cls;
    size_t cap = (size_t)app->cfg->api.max_body_bytes;

    if (req == TOO_MANY_PARAMS) {
        connguard_request_started(conn);
        req = request_new(app, conn, url, method);
        if (!req)
            return MHD_NO;
        *con_cls = req;
        http_error(req, 431, "too many query parameters (at most %d)", HTTP_MAX_QUERY_PARAMS);
        return MHD_YES;
    }
    if (!req) {
        connguard_request_started(conn);
        req = request_new(app, conn, url, method);
        if (!req)
            return MHD_NO;
        *con_cls = req;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            char *end = NULL;
            unsigned long long n = strtoull(cl, &end, 10);
            if (end && *end == '\0' && n > cap) {
                req->body_too_large = true;
                const char *ex = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Expect");
                if ((ex && strcasecmp(ex, "100-continue") == 0) || n - cap > HTTP_DISCARD_MAX)
                    http_error(req, 413, "request body exceeds %zu bytes", cap);
                return MHD_YES;
            }
        }
        return MHD_YES;
    }

    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (req->responded)
            return MHD_YES; /* answered before the body (413): nothing more to keep */
        if (req->body_too_large || req->body_len + n > cap) {
            /* Over the cap: read and discard, within the bounds, then 413 (step 3). */
            if (!req->body_too_large) {
                req->body_too_large = true;
                free(req->body);
                req->body = NULL;
                req->body_cap = 0;
            }
            req->body_len += n; /* counted, not kept */
            if (req->body_len > cap + HTTP_DISCARD_MAX ||
                time_mono_us() - req->start_us > HTTP_DISCARD_MAX_US) {
                log_warn("body_discard_abandoned", "rid=%s read=%zu", req->request_id,
                         req->body_len);
                return MHD_NO;
            }
            return MHD_YES;
        }
        if (req->body_len + n + 1 > req->body_cap) {
            size_t want = req->body_cap ? req->body_cap * 2 : 4096;
            while (want < req->body_len + n + 1)
                want *= 2;
            if (want > cap + 1)
                want = cap + 1;
            char *nb = realloc(req->body, want);
            if (!nb)
                return MHD_NO;
            req->body = nb;
            req->body_cap = want;
        }
        memcpy(req->body + req->body_len, upload_data, n);
        req->body_len += n;
        req->body[req->body_len] = '\0';
        return MHD_YES;
    }

    if (req->responded)
        return MHD_YES;
    if (req->body_too_large) {
        http_error(req, 413, "request body exceeds %zu bytes", cap);
        return MHD_YES;
    }
    if (!req->body) {
        req->body = calloc(1, 1);
        if (!req->body)
            return MHD_NO;
    }
    app->dispatch(app, req);
    if (!req->responded) {
        log_error("bug_no_response", "rid=%s route=\"%s\"", req->request_id, req->route_label);
        http_error(req, 500, "internal error");
    }
    return MHD_YES;
}

void http_request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                            enum MHD_RequestTerminationCode toe)
{
    api_ctx *app = cls;
    http_request *req = *con_cls;
    connguard_request_done(conn);
    *con_cls = NULL;
    if (!req || req == TOO_MANY_PARAMS)
        return;
    int64_t dur_us = time_mono_us() - req->start_us;
    int status = req->responded ? req->status : 0;
    if (!req->responded) /* answered requests were counted when the answer was queued */
        metrics_observe(app->metrics, req->route_index, status, dur_us);
    /* api.access_log: "auto" means on; `minicrm up` turns it off unless --verbose. Method and
     * path are the client's bytes: quoted (and their control characters blanked) like every
     * client value, so neither can add a field or a line to the log. */
    if (strcmp(app->cfg->api.access_log, "off") != 0) {
        char path[300], method[80];
        log_quote(path, sizeof path, req->path ? req->path : "");
        log_quote(method, sizeof method, req->method_str ? req->method_str : "-");
        log_info("request",
                 "rid=%s method=%s path=%s route=\"%s\" status=%d bytes=%zu dur_ms=%.3f%s",
                 req->request_id, method, path, req->route_label, status, req->bytes_out,
                 (double)dur_us / 1000.0,
                 toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted=1");
    }
    request_free(req);
    atomic_fetch_sub(&g_inflight, 1);
}
