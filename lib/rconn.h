/*
 * rconn: a Redis connection (hiredis) with URL parsing, reconnect and backoff.
 *
 * URLs: redis://[[user]:password@]host[:port][/db] (default port 6379, db 0), or
 * redis+cluster://[[user]:password@]host1:port1,host2:port2[/] for a Redis Cluster: then every
 * call below is routed by lib/rcluster (slot map, MOVED/ASK, failover, pipelines split per
 * node; see rcluster.h) and rconn_context() is NULL. A plain redis:// connection never
 * touches rcluster: one pointer test per call. rconn_command()
 * runs one command; if the connection is broken it reconnects (AUTH and SELECT again) with
 * exponential backoff up to the configured timeout, then retries the command once; a server
 * still loading its data (-LOADING) is waited for the same way. Pipelines:
 * rconn_append() queues commands, rconn_get_reply() reads the replies in order; a broken
 * pipeline is reported to the caller (who retries the whole batch), never half-resent.
 *
 * Not thread-safe: one rconn per thread or process; never share one across fork().
 * Replies are hiredis redisReply objects owned by the caller (freeReplyObject).
 */
#ifndef MINICRM_RCONN_H
#define MINICRM_RCONN_H

#include <hiredis/hiredis.h>
#include <stdbool.h>

typedef struct rconn_url {
    char host[256];
    int port;
    int db;
    char password[256];
    char user[128];
} rconn_url;

typedef struct rconn rconn;

/* Parse a redis:// URL (a redis+cluster:// URL: its first node, db 0). Returns 0, or -1 with a
 * message in err. */
int rconn_parse_url(const char *url, rconn_url *out, char *err, size_t errlen);

/* The redis-cli arguments that reach url's server, for hints shown to operators (always
 * NUL-terminated in buf, truncated to n - 1 bytes; returns buf): "-u URL" with the password
 * hidden (lib/redact) for redis://; redis-cli knows no redis+cluster:// scheme, so a cluster URL
 * gives "-c -h HOST -p PORT" of its first seed (-c: follow MOVED/ASK), with "--user USER" and
 * "--askpass" (redis-cli asks for the password) when the URL carries credentials. */
const char *rconn_cli_args(const char *url, char *buf, size_t n);

/* Connect (with timeout_ms for connect and each command). Returns NULL with err filled if the
 * URL is bad; an unreachable server is not an error here: the first command will retry. */
rconn *rconn_new(const char *url, int timeout_ms, char *err, size_t errlen);
void rconn_free(rconn *c);

/* Run one command (printf-style, hiredis format). Reconnects with backoff on I/O errors for up
 * to the timeout. Returns a reply the caller frees, or NULL with rconn_error() describing why.
 * A Redis error reply (REDIS_REPLY_ERROR) is returned as a reply, not as NULL. */
redisReply *rconn_command(rconn *c, const char *fmt, ...);
redisReply *rconn_command_argv(rconn *c, int argc, const char **argv, const size_t *argvlen);

/* Run a Lua script: argv is an EVAL command (argv[0] "EVAL", argv[1] the script body, then
 * numkeys, keys and args, as for rconn_command_argv). It is sent as EVALSHA with the body's
 * SHA1 (computed here once per connection and body; the server then skips hashing and parsing
 * the body on every call); a server that does not know the script (NOSCRIPT: restarted,
 * failed over, a new cluster node) gets the EVAL itself once, which runs the script and caches
 * it there. The body pointer must stay valid and unchanged while c lives (scripts are static
 * strings). argvlen is required; argv[0..1] and argvlen[0..1] are borrowed during the call and
 * restored before it returns. Returns what rconn_command_argv returns. */
redisReply *rconn_eval_argv(rconn *c, int argc, const char **argv, size_t *argvlen);

/* Pipelining: queue commands, then read exactly as many replies. On any failure the
 * connection is dropped and reconnected on the next use; the caller retries the batch. */
int rconn_append(rconn *c, const char *fmt, ...);
int rconn_append_argv(rconn *c, int argc, const char **argv, const size_t *argvlen);
/* Returns 0 and a reply the caller frees, or -1. */
int rconn_get_reply(rconn *c, redisReply **reply);

/* Make sure the connection is up (reconnecting once, no backoff loop). 0 if it is. */
int rconn_ping(rconn *c);
/* Last error message (static per connection). */
const char *rconn_error(const rconn *c);
/* The underlying hiredis context (may be NULL while disconnected; always NULL on a cluster). */
redisContext *rconn_context(rconn *c);
/* Whether this connection talks to a Redis Cluster (a redis+cluster:// URL). */
bool rconn_is_cluster(const rconn *c);
/* The cluster client behind a cluster connection (NULL otherwise), for tools and tests. */
struct rcluster *rconn_cluster(rconn *c);

#endif
