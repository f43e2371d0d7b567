/*
 * rcluster: a Redis Cluster client (hiredis 0.14 has none), used by rconn when redis.url has
 * the cluster form. Callers keep using rconn; nothing here is needed for plain redis://.
 *
 * URL: redis+cluster://[[user]:password@]host1:port1[,host2:port2...][/] (the seed nodes; any
 * one reachable node is enough, the rest of the cluster is learnt from it; database 0 only, as
 * Redis Cluster has no other).
 *
 * Routing. Every command travels as hiredis formats it (RESP); its key decides the node:
 *   - the slot is CRC16(key) mod 16384, or of the hash tag (the part between the first '{' and
 *     the next '}', if not empty), so P{sends}:ready and P{sends}:dead share a slot;
 *   - EVAL / EVALSHA / FCALL: the keys after numkeys, which must all be in one slot (else the
 *     command fails here with a CROSSSLOT error reply and is not sent); no keys: any node;
 *   - most other commands: the first argument;
 *   - keyless commands go where their meaning needs: SCRIPT LOAD / SCRIPT FLUSH / FLUSHALL /
 *     FLUSHDB / CONFIG SET to every master (the first error, else the first reply, is
 *     returned), KEYS to every master (the arrays merged), DBSIZE to every master (summed),
 *     PING / INFO / TIME and the rest to any node.
 * The slot map comes from CLUSTER SLOTS of any known node (the seeds, then every node a map
 * named). Error replies that are the cluster's business, not the caller's, are handled here:
 *   MOVED slot host:port   the slot has a new owner: the map is updated and refreshed, the
 *                          command resent there;
 *   ASK slot host:port     the slot is being migrated and this key is already on the target:
 *                          ASKING + the command are sent there once, the map is left alone;
 *   TRYAGAIN, CLUSTERDOWN, LOADING   retried with backoff (CLUSTERDOWN refreshes the map);
 *   NOSCRIPT               for EVALSHA of a script this client loaded with SCRIPT LOAD: loaded
 *                          on that node and retried.
 * A lost connection (a master died) drops that node's connection, refreshes the map from any
 * other node (its replica is promoted within cluster-node-timeout) and retries, with backoff,
 * until the connection timeout is spent. A command is therefore sent again when its connection
 * broke after sending: the same at-least-once rule rconn states for its one retry.
 *
 * Pipelines: rcluster_append_formatted queues commands; the first rcluster_get_reply sends each
 * node its commands in one write, reads every node's replies, resends the ones answered MOVED /
 * ASK / TRYAGAIN one by one (outside MULTI), and hands the replies back in the caller's order.
 * A keyless command inside a pipeline (MULTI, EXEC) goes with the keyed command before it (or,
 * first in line, after it), so a MULTI ... EXEC block reaches the node of its keys. A redirected
 * command inside MULTI aborts the transaction (EXECABORT, as Redis answers); the map is
 * refreshed and the caller retries, as it does for any broken pipeline. A lost connection fails
 * the whole pipeline (rcluster_get_reply returns -1), never half-resent.
 *
 * Not thread-safe; never share one across fork(). Replies are owned by the caller.
 */
#ifndef MINICRM_RCLUSTER_H
#define MINICRM_RCLUSTER_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

#define RCLUSTER_SLOTS 16384

typedef struct rcluster rcluster;

/* Whether url has the cluster form (redis+cluster://). */
bool rcluster_is_url(const char *url);
/* The hash slot of a key (CRC16-CCITT of the key or its hash tag, mod 16384). */
unsigned rcluster_key_slot(const char *key, size_t len);

/* Parse the URL and remember the seeds; contacts no node (the first command does). NULL with
 * a message in err on a bad URL or out of memory. */
rcluster *rcluster_new(const char *url, int timeout_ms, char *err, size_t errlen);
void rcluster_free(rcluster *c);
const char *rcluster_error(const rcluster *c);

/* Run one formatted command (RESP text of len bytes, e.g. from redisFormatCommandArgv; not
 * taken over). Returns a reply the caller frees, or NULL with rcluster_error() set. Redis error
 * replies other than the redirections above are returned as replies. */
redisReply *rcluster_command_formatted(rcluster *c, const char *cmd, size_t len);
/* Queue one formatted command; takes over cmd (malloc'd, as hiredis formats it). 0 or -1. */
int rcluster_append_formatted(rcluster *c, char *cmd, size_t len);
/* The next reply of the queued commands, in the order they were queued. 0 or -1. */
int rcluster_get_reply(rcluster *c, redisReply **reply);
/* Drop queued commands and unread replies (a caller abandoned a pipeline). */
void rcluster_reset_pipeline(rcluster *c);

/* Make sure the map is known and every master answers PING (one attempt each). 0 if so. */
int rcluster_ping(rcluster *c);
/* Reload the slot map now. 0 or -1. */
int rcluster_refresh(rcluster *c);
/* "host:port" of the master serving slot (after a refresh if the map is unknown) into buf;
 * NULL if none. For tests and tools. */
const char *rcluster_slot_owner(rcluster *c, unsigned slot, char *buf, size_t n);
/* Number of masters in the current map (0 if unknown). */
int rcluster_masters(rcluster *c);

#endif
