/* apiutil: see apiutil.h. */
#include "apiutil.h"

#include "log.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bool api_is_dup_key(const bson_error_t *e)
{
    return e->code == 11000 || e->code == 11001 || strstr(e->message, "E11000") != NULL;
}

int api_db_fail(http_request *req, const bson_error_t *e, const char *what)
{
    char msg[300];
    log_quote(msg, sizeof msg, e->message);
    bool down = e->domain == MONGOC_ERROR_SERVER_SELECTION || e->domain == MONGOC_ERROR_STREAM ||
                e->domain == MONGOC_ERROR_PROTOCOL || e->domain == MONGOC_ERROR_CLIENT;
    log_warn("db_error", "rid=%s what=%s domain=%u code=%u msg=%s", req->request_id, what,
             e->domain, e->code, msg);
    if (down)
        http_error(req, 503, "database unavailable, retry later");
    else
        http_error(req, 500, "database error while %s", what);
    return -1;
}

int api_parse_oid(http_request *req, const char *field, const char *hex, bson_oid_t *out)
{
    if (!hex || strlen(hex) != 24 || !bson_oid_is_valid(hex, 24)) {
        http_error(req, 400, "%s must be a 24-hex id", field);
        return -1;
    }
    bson_oid_init_from_string(out, hex);
    return 0;
}

rconn *api_redis(http_request *req)
{
    rconn *c = rpool_get(req->app->redis);
    if (!c)
        http_error(req, 503, "redis unavailable, retry later");
    return c;
}

int api_redis_fail(http_request *req, rconn *c, const char *what)
{
    char msg[300];
    log_quote(msg, sizeof msg, c ? rconn_error(c) : "no connection");
    log_warn("redis_error", "rid=%s what=%s msg=%s", req->request_id, what, msg);
    return http_error(req, 503, "redis unavailable, retry later"), -1;
}

const char *api_lower(const char *s, char *buf, size_t n)
{
    size_t i = 0;
    for (; s[i] && i + 1 < n; i++)
        buf[i] = (char)tolower((unsigned char)s[i]);
    buf[i] = '\0';
    return buf;
}

const char *api_key(const api_ctx *app, char *buf, size_t n, const char *fmt, ...)
{
    int k = snprintf(buf, n, "%s", app->cfg->redis.prefix);
    if (k < 0 || (size_t)k >= n)
        return buf;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + k, n - (size_t)k, fmt, ap);
    va_end(ap);
    return buf;
}
