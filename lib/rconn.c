/*
 * rconn: see rconn.h.
 *
 * State: `ctx` is NULL while disconnected. A -LOADING answer (Redis reading its data after a
 * restart) is waited out like a reconnect, within the timeout. Any I/O error frees the context; the
 * next command reconnects. rconn_command retries once after a successful reconnect, which is safe
 * for the idempotent or at-least-once commands minicrm sends (queue scripts are written so that a
 * repeat does no harm). Pipelined batches are never retried here, because the caller cannot
 * know which of the queued commands ran.
 *
 * Scripts (rconn_eval_argv): `scripts` remembers the SHA1 of each script body this connection
 * has run, keyed by the body's address (scripts are static strings), so EVALSHA costs one
 * pointer compare per known script here and no hashing in Redis. The cache belongs to the
 * connection, which is per thread, so it needs no lock.
 */
#include "rconn.h"

#include "log.h"
#include "rcluster.h"
#include "redact.h"
#include "signals.h"
#include "timeutil.h"

#include <errno.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { RCONN_SCRIPTS = 48 };

/* A script body this connection has run, and its SHA1 in hex. */
typedef struct rconn_script {
    const char *body;
    size_t len;
    char sha[41];
} rconn_script;

struct rconn {
    rconn_url url;
    int timeout_ms;
    redisContext *ctx;
    int pending;  /* replies owed by appended commands */
    rcluster *cl; /* redis+cluster:// URL: every call goes through it, ctx stays NULL */
    rconn_script scripts[RCONN_SCRIPTS];
    int nscripts;
    char err[256];
};

int rconn_parse_url(const char *url, rconn_url *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->port = 6379;
    const char *p = url;
    if (rcluster_is_url(url)) {
        /* The first seed stands for the cluster (host, port, credentials); db is 0. */
        char one[600];
        const char *rest = url + 16;
        size_t n = strcspn(rest, ",/");
        snprintf(one, sizeof one, "redis://%.*s", (int)n, rest);
        if (strlen(rest) >= sizeof one - 8) {
            snprintf(err, errlen, "redis cluster URL is too long");
            return -1;
        }
        return rconn_parse_url(one, out, err, errlen);
    }
    if (strncmp(p, "redis://", 8) != 0) {
        snprintf(err, errlen, "redis URL must start with redis://");
        return -1;
    }
    p += 8;
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            snprintf(out->user, sizeof out->user, "%.*s", (int)(colon - p), p);
            snprintf(out->password, sizeof out->password, "%.*s", (int)(at - colon - 1), colon + 1);
        } else {
            snprintf(out->password, sizeof out->password, "%.*s", (int)(at - p), p);
        }
        p = at + 1;
    }
    const char *end = p + strcspn(p, ":/");
    if (end == p || (size_t)(end - p) >= sizeof out->host) {
        snprintf(err, errlen, "redis URL has no host");
        return -1;
    }
    snprintf(out->host, sizeof out->host, "%.*s", (int)(end - p), p);
    p = end;
    if (*p == ':') {
        char *e;
        long port = strtol(p + 1, &e, 10);
        if (e == p + 1 || port < 1 || port > 65535 || (*e && *e != '/')) {
            snprintf(err, errlen, "redis URL has a bad port");
            return -1;
        }
        out->port = (int)port;
        p = e;
    }
    if (*p == '/' && p[1]) {
        char *e;
        long db = strtol(p + 1, &e, 10);
        if (e == p + 1 || *e || db < 0 || db > 1000000) {
            snprintf(err, errlen, "redis URL has a bad database number");
            return -1;
        }
        out->db = (int)db;
    }
    return 0;
}

const char *rconn_cli_args(const char *url, char *buf, size_t n)
{
    if (!n)
        return buf;
    rconn_url u;
    char err[128];
    if (!url || !rcluster_is_url(url) || rconn_parse_url(url, &u, err, sizeof err) != 0) {
        char shown[600];
        snprintf(buf, n, "-u %s", redact_url(url, shown, sizeof shown));
        return buf;
    }
    size_t k = 0;
    int w = snprintf(buf, n, "-c -h %s -p %d", u.host, u.port);
    k = w < 0 ? 0 : (size_t)w;
    if (u.user[0] && k < n) {
        w = snprintf(buf + k, n - k, " --user %s", u.user);
        k += w < 0 ? 0 : (size_t)w;
    }
    if (u.password[0] && k < n)
        snprintf(buf + k, n - k, " --askpass");
    memset(u.password, 0, sizeof u.password);
    return buf;
}

rconn *rconn_new(const char *url, int timeout_ms, char *err, size_t errlen)
{
    rconn *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (rconn_parse_url(url, &c->url, err, errlen) != 0) {
        free(c);
        return NULL;
    }
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
    if (rcluster_is_url(url) && !(c->cl = rcluster_new(url, c->timeout_ms, err, errlen))) {
        free(c);
        return NULL;
    }
    return c;
}

static void drop(rconn *c)
{
    if (c->ctx)
        redisFree(c->ctx);
    c->ctx = NULL;
    c->pending = 0;
}

void rconn_free(rconn *c)
{
    if (!c)
        return;
    drop(c);
    rcluster_free(c->cl);
    free(c);
}

const char *rconn_error(const rconn *c)
{
    return c->cl ? rcluster_error(c->cl) : c->err;
}

bool rconn_is_cluster(const rconn *c)
{
    return c->cl != NULL;
}

rcluster *rconn_cluster(rconn *c)
{
    return c->cl;
}

/* ---- Cluster mode: format here, route in rcluster ---------------------------------------- */

static redisReply *cluster_run(rconn *c, char *cmd, int len)
{
    if (len < 0 || !cmd) {
        snprintf(c->err, sizeof c->err, "redis: cannot format command");
        return NULL;
    }
    redisReply *r = rcluster_command_formatted(c->cl, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return r;
}

static int cluster_append(rconn *c, char *cmd, int len)
{
    if (len < 0 || !cmd)
        return -1;
    /* rcluster frees with free(): hiredis 0.14 allocates formatted commands with malloc. */
    return rcluster_append_formatted(c->cl, cmd, (size_t)len);
}

redisContext *rconn_context(rconn *c)
{
    return c->ctx;
}

/* One connection attempt, with AUTH and SELECT. 0 on success. */
static int connect_once(rconn *c)
{
    struct timeval tv = {c->timeout_ms / 1000, (c->timeout_ms % 1000) * 1000};
    redisContext *ctx = redisConnectWithTimeout(c->url.host, c->url.port, tv);
    if (!ctx || ctx->err) {
        snprintf(c->err, sizeof c->err, "redis %s:%d: %s", c->url.host, c->url.port,
                 ctx ? ctx->errstr : "out of memory");
        if (ctx)
            redisFree(ctx);
        return -1;
    }
    redisSetTimeout(ctx, tv);
    redisEnableKeepAlive(ctx);
    redisReply *r = NULL;
    if (c->url.password[0]) {
        if (c->url.user[0])
            r = redisCommand(ctx, "AUTH %s %s", c->url.user, c->url.password);
        else
            r = redisCommand(ctx, "AUTH %s", c->url.password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(c->err, sizeof c->err, "redis AUTH failed: %s", r ? r->str : ctx->errstr);
            goto fail;
        }
        freeReplyObject(r);
    }
    if (c->url.db) {
        r = redisCommand(ctx, "SELECT %d", c->url.db);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(c->err, sizeof c->err, "redis SELECT %d failed: %s", c->url.db,
                     r ? r->str : ctx->errstr);
            goto fail;
        }
        freeReplyObject(r);
    }
    c->ctx = ctx;
    c->pending = 0;
    return 0;
fail:
    if (r)
        freeReplyObject(r);
    redisFree(ctx);
    return -1;
}

/* Connect with exponential backoff for up to the timeout (or until a stop is requested). */
static int ensure_connected(rconn *c)
{
    if (c->ctx)
        return 0;
    int64_t deadline = time_mono_ms() + c->timeout_ms;
    int delay = 50;
    for (;;) {
        if (connect_once(c) == 0)
            return 0;
        if (time_mono_ms() + delay > deadline || signals_stop_requested())
            return -1;
        log_warn("redis.reconnect", "host=%s port=%d retry_in_ms=%d", c->url.host, c->url.port,
                 delay);
        signals_sleep_ms(delay);
        delay = delay * 2 > 2000 ? 2000 : delay * 2;
    }
}

/* Redis answers -LOADING while it reads its AOF/RDB after a restart: the command did not run
 * and will succeed shortly, so it is retried like a lost connection. */
static bool is_loading(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ERROR && r->str && strncmp(r->str, "LOADING", 7) == 0;
}

/* Wait for a LOADING server, within the connection timeout. false when time is up. */
static bool wait_loading(rconn *c, int64_t deadline, int *delay)
{
    if (time_mono_ms() + *delay > deadline || signals_stop_requested())
        return false;
    log_warn("redis.loading", "host=%s port=%d retry_in_ms=%d", c->url.host, c->url.port, *delay);
    signals_sleep_ms(*delay);
    *delay = *delay * 2 > 1000 ? 1000 : *delay * 2;
    return true;
}

static bool is_io_error(const redisContext *ctx)
{
    return ctx->err == REDIS_ERR_IO || ctx->err == REDIS_ERR_EOF ||
           ctx->err == REDIS_ERR_PROTOCOL || ctx->err == REDIS_ERR_OTHER;
}

redisReply *rconn_command_argv(rconn *c, int argc, const char **argv, const size_t *argvlen)
{
    if (c->cl) {
        char *cmd = NULL;
        int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
        return cluster_run(c, cmd, len);
    }
    int64_t deadline = time_mono_ms() + c->timeout_ms;
    int delay = 50;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (c->pending) /* a caller abandoned a pipeline: its replies are unknowable */
            drop(c);
        if (ensure_connected(c) != 0)
            return NULL;
        redisReply *r = redisCommandArgv(c->ctx, argc, argv, argvlen);
        if (is_loading(r) && wait_loading(c, deadline, &delay)) {
            freeReplyObject(r);
            attempt--;
            continue;
        }
        if (r)
            return r;
        snprintf(c->err, sizeof c->err, "redis: %s", c->ctx->errstr);
        if (!is_io_error(c->ctx)) {
            drop(c);
            return NULL;
        }
        drop(c);
    }
    return NULL;
}

/* The SHA1 (hex) of script body b of len bytes into sha (41 bytes), from the cache. */
static void script_sha(rconn *c, const char *b, size_t len, char sha[41])
{
    for (int i = 0; i < c->nscripts; i++)
        if (c->scripts[i].body == b && c->scripts[i].len == len) {
            memcpy(sha, c->scripts[i].sha, 41);
            return;
        }
    unsigned char md[SHA_DIGEST_LENGTH];
    static const char hex[] = "0123456789abcdef";
    SHA1((const unsigned char *)b, len, md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++) {
        sha[2 * i] = hex[md[i] >> 4];
        sha[2 * i + 1] = hex[md[i] & 15];
    }
    sha[40] = '\0';
    if (c->nscripts < RCONN_SCRIPTS) {
        rconn_script *s = &c->scripts[c->nscripts++];
        s->body = b;
        s->len = len;
        memcpy(s->sha, sha, 41);
    }
}

redisReply *rconn_eval_argv(rconn *c, int argc, const char **argv, size_t *argvlen)
{
    if (argc < 3)
        return rconn_command_argv(c, argc, argv, argvlen);
    const char *body = argv[1];
    size_t l0 = argvlen[0], l1 = argvlen[1];
    char sha[41];
    script_sha(c, body, l1, sha);
    /* Borrow the caller's first two arguments for EVALSHA and put them back. */
    argv[0] = "EVALSHA";
    argvlen[0] = 7;
    argv[1] = sha;
    argvlen[1] = 40;
    redisReply *r = rconn_command_argv(c, argc, argv, argvlen);
    argv[0] = "EVAL";
    argvlen[0] = l0;
    argv[1] = body;
    argvlen[1] = l1;
    if (r && r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "NOSCRIPT", 8)) {
        /* That server has not seen the script: EVAL runs it and caches it there. */
        freeReplyObject(r);
        r = rconn_command_argv(c, argc, argv, argvlen);
    }
    return r;
}

redisReply *rconn_command(rconn *c, const char *fmt, ...)
{
    if (c->cl) {
        char *cmd = NULL;
        va_list ap;
        va_start(ap, fmt);
        int len = redisvFormatCommand(&cmd, fmt, ap);
        va_end(ap);
        return cluster_run(c, cmd, len);
    }
    int64_t deadline = time_mono_ms() + c->timeout_ms;
    int delay = 50;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (c->pending)
            drop(c);
        if (ensure_connected(c) != 0)
            return NULL;
        va_list ap;
        va_start(ap, fmt);
        redisReply *r = redisvCommand(c->ctx, fmt, ap);
        va_end(ap);
        if (is_loading(r) && wait_loading(c, deadline, &delay)) {
            freeReplyObject(r);
            attempt--;
            continue;
        }
        if (r)
            return r;
        snprintf(c->err, sizeof c->err, "redis: %s", c->ctx->errstr);
        drop(c);
    }
    return NULL;
}

int rconn_append(rconn *c, const char *fmt, ...)
{
    if (c->cl) {
        char *cmd = NULL;
        va_list ap;
        va_start(ap, fmt);
        int len = redisvFormatCommand(&cmd, fmt, ap);
        va_end(ap);
        return cluster_append(c, cmd, len);
    }
    if (!c->ctx && ensure_connected(c) != 0)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    int rc = redisvAppendCommand(c->ctx, fmt, ap);
    va_end(ap);
    if (rc != REDIS_OK) {
        snprintf(c->err, sizeof c->err, "redis: %s", c->ctx->errstr);
        drop(c);
        return -1;
    }
    c->pending++;
    return 0;
}

int rconn_append_argv(rconn *c, int argc, const char **argv, const size_t *argvlen)
{
    if (c->cl) {
        char *cmd = NULL;
        int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
        return cluster_append(c, cmd, len);
    }
    if (!c->ctx && ensure_connected(c) != 0)
        return -1;
    if (redisAppendCommandArgv(c->ctx, argc, argv, argvlen) != REDIS_OK) {
        snprintf(c->err, sizeof c->err, "redis: %s", c->ctx->errstr);
        drop(c);
        return -1;
    }
    c->pending++;
    return 0;
}

int rconn_get_reply(rconn *c, redisReply **reply)
{
    *reply = NULL;
    if (c->cl)
        return rcluster_get_reply(c->cl, reply);
    if (!c->ctx || c->pending <= 0) {
        snprintf(c->err, sizeof c->err, "redis: no pipelined reply pending (connection lost)");
        return -1;
    }
    void *r = NULL;
    if (redisGetReply(c->ctx, &r) != REDIS_OK || !r) {
        snprintf(c->err, sizeof c->err, "redis: %s", c->ctx->errstr);
        drop(c);
        return -1;
    }
    c->pending--;
    *reply = r;
    return 0;
}

int rconn_ping(rconn *c)
{
    if (c->cl)
        return rcluster_ping(c->cl);
    if (c->pending)
        drop(c);
    if (!c->ctx && connect_once(c) != 0)
        return -1;
    redisReply *r = redisCommand(c->ctx, "PING");
    if (!r) {
        snprintf(c->err, sizeof c->err, "redis: %s", c->ctx->errstr);
        drop(c);
        return -1;
    }
    int ok = r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    return ok ? 0 : -1;
}
