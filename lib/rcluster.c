/*
 * rcluster: see rcluster.h for routing, redirections and pipelines.
 *
 * State. `nodes` is every node this client has heard of (seeds, then whatever CLUSTER SLOTS or
 * a redirection named); it only grows (bounded by MAX_NODES) and each entry owns at most one
 * hiredis connection, NULL while disconnected. `slots[s]` is the index of the node serving
 * slot s, -1 when unknown; `map_ok` is false until a map was loaded and after anything that
 * says the map is stale (a MOVED, a lost connection, CLUSTERDOWN), so the next command reloads
 * it first.
 *
 * Pipelines are buffered here, not in hiredis: commands are kept (formatted) until the first
 * get_reply, because their nodes are only known once every command is there (a MULTI goes
 * with the keys after it). Dispatch then writes each node's commands in one go and reads all
 * replies into `replies`, which get_reply hands out in order.
 */
#include "rcluster.h"

#include "log.h"
#include "signals.h"
#include "timeutil.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { MAX_NODES = 1024, MAX_REDIRECTS = 16, MAX_SCRIPTS = 64 };

typedef struct node {
    char host[256];
    int port;
    bool master; /* serves slots in the current map */
    redisContext *ctx;
} node;

typedef struct pcmd {
    char *cmd;
    size_t len;
    int slot; /* -1: keyless */
} pcmd;

typedef struct script {
    char sha[41];
    char *body;
    size_t len;
} script;

struct rcluster {
    char user[128], password[256];
    int timeout_ms;
    node *nodes;
    int nnodes, capnodes;
    int16_t slots[RCLUSTER_SLOTS];
    bool map_ok;
    int nmasters;
    /* pipeline */
    pcmd *pipe;
    size_t npipe, cappipe;
    redisReply **replies;
    size_t nreplies, next;
    bool dispatched, pipe_failed;
    script scripts[MAX_SCRIPTS];
    int nscripts;
    char err[256];
};

/* ---- Slots ----------------------------------------------------------------------------- */

/* CRC16-CCITT (XModem), the polynomial Redis Cluster uses (cluster spec, "Keys distribution
 * model"), bitwise: the table version is faster but this runs once per command. */
static uint16_t crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)buf[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned rcluster_key_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1)
            return crc16(open + 1, (size_t)(close - open - 1)) & (RCLUSTER_SLOTS - 1);
    }
    return crc16(key, len) & (RCLUSTER_SLOTS - 1);
}

bool rcluster_is_url(const char *url)
{
    return url && strncmp(url, "redis+cluster://", 16) == 0;
}

/* ---- Formatted commands ------------------------------------------------------------------- */

/* Iterates over the arguments of a RESP command ("*N\r\n$L\r\nARG\r\n..."). */
typedef struct argit {
    const char *p, *end;
    long argc, i;
} argit;

static int argit_init(argit *it, const char *cmd, size_t len)
{
    it->p = cmd;
    it->end = cmd + len;
    it->i = 0;
    if (len < 4 || cmd[0] != '*')
        return -1;
    char *e;
    it->argc = strtol(cmd + 1, &e, 10);
    if (e + 2 > it->end || e[0] != '\r' || it->argc < 1)
        return -1;
    it->p = e + 2;
    return 0;
}

/* The next argument; 0, or -1 at the end or on malformed text. */
static int argit_next(argit *it, const char **arg, size_t *alen)
{
    if (it->i >= it->argc || it->p >= it->end || *it->p != '$')
        return -1;
    char *e;
    long l = strtol(it->p + 1, &e, 10);
    if (l < 0 || e + 2 > it->end || e[0] != '\r' || e + 2 + l + 2 > it->end)
        return -1;
    *arg = e + 2;
    *alen = (size_t)l;
    it->p = e + 2 + l + 2;
    it->i++;
    return 0;
}

static bool arg_is(const char *a, size_t l, const char *word)
{
    return strlen(word) == l && strncasecmp(a, word, l) == 0;
}

enum route { R_KEY, R_ANY, R_ALL_FIRST, R_ALL_MERGE, R_ALL_SUM, R_BAD };

/* Where cmd goes: R_KEY with *slot, another route, or R_BAD (CROSSSLOT, malformed) with err.
 * *evalsha is set for EVALSHA (NOSCRIPT handling). */
static enum route classify(rcluster *c, const char *cmd, size_t len, int *slot, bool *evalsha)
{
    argit it;
    const char *a, *b;
    size_t al, bl;
    *slot = -1;
    *evalsha = false;
    if (argit_init(&it, cmd, len) != 0 || argit_next(&it, &a, &al) != 0) {
        snprintf(c->err, sizeof c->err, "redis cluster: malformed command");
        return R_BAD;
    }
    bool has_b = argit_next(&it, &b, &bl) == 0;
    if (arg_is(a, al, "EVAL") || arg_is(a, al, "EVALSHA") || arg_is(a, al, "EVAL_RO") ||
        arg_is(a, al, "EVALSHA_RO") || arg_is(a, al, "FCALL") || arg_is(a, al, "FCALL_RO")) {
        *evalsha = arg_is(a, al, "EVALSHA") || arg_is(a, al, "EVALSHA_RO");
        const char *nk;
        size_t nkl;
        char buf[24];
        if (!has_b || argit_next(&it, &nk, &nkl) != 0 || nkl == 0 || nkl >= sizeof buf) {
            snprintf(c->err, sizeof c->err, "redis cluster: script without numkeys");
            return R_BAD;
        }
        memcpy(buf, nk, nkl);
        buf[nkl] = '\0';
        long n = strtol(buf, NULL, 10);
        for (long i = 0; i < n; i++) {
            const char *k;
            size_t kl;
            if (argit_next(&it, &k, &kl) != 0) {
                snprintf(c->err, sizeof c->err,
                         "redis cluster: script has fewer keys than numkeys");
                return R_BAD;
            }
            int s = (int)rcluster_key_slot(k, kl);
            if (*slot >= 0 && s != *slot) {
                snprintf(c->err, sizeof c->err,
                         "CROSSSLOT a script's keys must share one hash slot (one {tag})");
                return R_BAD;
            }
            *slot = s;
        }
        return *slot >= 0 ? R_KEY : R_ANY;
    }
    if (arg_is(a, al, "SCRIPT"))
        return has_b && (arg_is(b, bl, "LOAD") || arg_is(b, bl, "FLUSH")) ? R_ALL_FIRST : R_ANY;
    if (arg_is(a, al, "CONFIG"))
        return has_b && (arg_is(b, bl, "SET") || arg_is(b, bl, "RESETSTAT")) ? R_ALL_FIRST : R_ANY;
    if (arg_is(a, al, "FLUSHALL") || arg_is(a, al, "FLUSHDB"))
        return R_ALL_FIRST;
    if (arg_is(a, al, "KEYS"))
        return R_ALL_MERGE;
    if (arg_is(a, al, "DBSIZE"))
        return R_ALL_SUM;
    static const char *const keyless[] = {
        "PING",    "INFO",    "TIME",   "ECHO",   "CLUSTER", "COMMAND",   "CLIENT", "MULTI",
        "EXEC",    "DISCARD", "WAIT",   "AUTH",   "SELECT",  "READONLY",  "HELLO",  "LASTSAVE",
        "SLOWLOG", "LATENCY", "MEMORY", "ASKING", "SCAN",    "RANDOMKEY", "ROLE",   "QUIT"};
    for (size_t i = 0; i < sizeof keyless / sizeof *keyless; i++)
        if (arg_is(a, al, keyless[i]))
            return R_ANY;
    if (!has_b)
        return R_ANY;
    *slot = (int)rcluster_key_slot(b, bl);
    return R_KEY;
}

/* ---- Nodes and the map -------------------------------------------------------------------- */

static int node_find(rcluster *c, const char *host, int port, bool add)
{
    for (int i = 0; i < c->nnodes; i++)
        if (c->nodes[i].port == port && !strcmp(c->nodes[i].host, host))
            return i;
    if (!add || c->nnodes >= MAX_NODES || strlen(host) >= sizeof c->nodes[0].host)
        return -1;
    if (c->nnodes == c->capnodes) {
        int cap = c->capnodes ? c->capnodes * 2 : 8;
        node *n = realloc(c->nodes, (size_t)cap * sizeof *n);
        if (!n)
            return -1;
        c->nodes = n;
        c->capnodes = cap;
    }
    node *n = &c->nodes[c->nnodes];
    memset(n, 0, sizeof *n);
    snprintf(n->host, sizeof n->host, "%s", host);
    n->port = port;
    return c->nnodes++;
}

static void node_drop(node *n)
{
    if (n->ctx)
        redisFree(n->ctx);
    n->ctx = NULL;
}

/* Connect node i (AUTH if configured). 0 on success. One attempt, no backoff: the callers
 * loop. The connect timeout is capped at 1 s so that a dead node does not eat the whole
 * command timeout. */
static int node_connect(rcluster *c, int i)
{
    node *n = &c->nodes[i];
    if (n->ctx)
        return 0;
    int cto = c->timeout_ms < 1000 ? c->timeout_ms : 1000;
    struct timeval ctv = {cto / 1000, (cto % 1000) * 1000};
    struct timeval tv = {c->timeout_ms / 1000, (c->timeout_ms % 1000) * 1000};
    redisContext *ctx = redisConnectWithTimeout(n->host, n->port, ctv);
    if (!ctx || ctx->err) {
        snprintf(c->err, sizeof c->err, "redis %s:%d: %s", n->host, n->port,
                 ctx ? ctx->errstr : "out of memory");
        if (ctx)
            redisFree(ctx);
        return -1;
    }
    redisSetTimeout(ctx, tv);
    redisEnableKeepAlive(ctx);
    if (c->password[0]) {
        redisReply *r = c->user[0] ? redisCommand(ctx, "AUTH %s %s", c->user, c->password)
                                   : redisCommand(ctx, "AUTH %s", c->password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(c->err, sizeof c->err, "redis %s:%d AUTH failed: %s", n->host, n->port,
                     r ? r->str : ctx->errstr);
            if (r)
                freeReplyObject(r);
            redisFree(ctx);
            return -1;
        }
        freeReplyObject(r);
    }
    n->ctx = ctx;
    return 0;
}

/* Load the map from node i's CLUSTER SLOTS. 0 on success. */
static int load_map_from(rcluster *c, int i)
{
    if (node_connect(c, i) != 0)
        return -1;
    redisReply *r = redisCommand(c->nodes[i].ctx, "CLUSTER SLOTS");
    if (!r) {
        snprintf(c->err, sizeof c->err, "redis %s:%d: %s", c->nodes[i].host, c->nodes[i].port,
                 c->nodes[i].ctx->errstr);
        node_drop(&c->nodes[i]);
        return -1;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        snprintf(c->err, sizeof c->err, "redis %s:%d: CLUSTER SLOTS: %s", c->nodes[i].host,
                 c->nodes[i].port, r->type == REDIS_REPLY_ERROR ? r->str : "no slots served");
        freeReplyObject(r);
        return -1;
    }
    /* Copy the asking node's address first: `nodes` may move while new ones are added. */
    char askhost[256];
    snprintf(askhost, sizeof askhost, "%s", c->nodes[i].host);
    int16_t map[RCLUSTER_SLOTS];
    for (int s = 0; s < RCLUSTER_SLOTS; s++)
        map[s] = -1;
    for (size_t k = 0; k < r->elements; k++) {
        redisReply *e = r->element[k];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2)
            continue;
        redisReply *m = e->element[2];
        const char *host = m->element[0]->type == REDIS_REPLY_STRING && m->element[0]->len
                               ? m->element[0]->str
                               : askhost; /* "" or NULL: the node we asked, by that address */
        int port = m->element[1]->type == REDIS_REPLY_INTEGER ? (int)m->element[1]->integer : 0;
        int idx = node_find(c, host, port, true);
        if (idx < 0)
            continue;
        long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        for (long long s = lo; s <= hi && s < RCLUSTER_SLOTS; s++)
            if (s >= 0)
                map[s] = (int16_t)idx;
        /* Replicas are remembered as seeds for the next refresh (one of them may be promoted). */
        for (size_t j = 3; j < e->elements; j++) {
            redisReply *rp = e->element[j];
            if (rp->type == REDIS_REPLY_ARRAY && rp->elements >= 2 &&
                rp->element[0]->type == REDIS_REPLY_STRING && rp->element[0]->len &&
                rp->element[1]->type == REDIS_REPLY_INTEGER)
                node_find(c, rp->element[0]->str, (int)rp->element[1]->integer, true);
        }
    }
    freeReplyObject(r);
    memcpy(c->slots, map, sizeof map);
    int masters = 0;
    for (int n = 0; n < c->nnodes; n++)
        c->nodes[n].master = false;
    for (int s = 0; s < RCLUSTER_SLOTS; s++)
        if (map[s] >= 0 && !c->nodes[map[s]].master) {
            c->nodes[map[s]].master = true;
            masters++;
        }
    c->nmasters = masters;
    c->map_ok = true;
    return 0;
}

int rcluster_refresh(rcluster *c)
{
    /* Nodes with a live connection first (cheapest), then the rest in order. */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < c->nnodes; i++) {
            if ((pass == 0) != (c->nodes[i].ctx != NULL))
                continue;
            if (load_map_from(c, i) == 0)
                return 0;
        }
    c->map_ok = false;
    return -1;
}

/* Sleep before a retry; false when the deadline would pass or a stop was requested. */
static bool backoff(rcluster *c, int64_t deadline, int *delay, const char *why)
{
    if (time_mono_ms() + *delay > deadline || signals_stop_requested())
        return false;
    log_warn("redis.cluster_retry", "why=%s retry_in_ms=%d err=\"%s\"", why, *delay, c->err);
    signals_sleep_ms(*delay);
    *delay = *delay * 2 > 500 ? 500 : *delay * 2;
    return true;
}

/* A node to send a keyless command to: a master with a connection, else any master. */
static int any_node(rcluster *c)
{
    int first = -1;
    for (int i = 0; i < c->nnodes; i++)
        if (c->nodes[i].master) {
            if (c->nodes[i].ctx)
                return i;
            if (first < 0)
                first = i;
        }
    return first >= 0 ? first : (c->nnodes ? 0 : -1);
}

/* Parse "MOVED 3999 127.0.0.1:6381" / "ASK ..." into the node index (added if new). */
static int redirect_target(rcluster *c, const char *msg, int *slot)
{
    const char *sp = strchr(msg, ' ');
    if (!sp)
        return -1;
    char *e;
    long s = strtol(sp + 1, &e, 10);
    if (*e != ' ' || s < 0 || s >= RCLUSTER_SLOTS)
        return -1;
    const char *addr = e + 1;
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= 256)
        return -1;
    char host[256];
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    long port = strtol(colon + 1, &e, 10);
    if (port < 1 || port > 65535)
        return -1;
    *slot = (int)s;
    return node_find(c, host, (int)port, true);
}

static bool err_is(const redisReply *r, const char *prefix)
{
    return r && r->type == REDIS_REPLY_ERROR && r->str &&
           strncmp(r->str, prefix, strlen(prefix)) == 0;
}

static const script *script_find(rcluster *c, const char *cmd, size_t len)
{
    argit it;
    const char *a, *sha;
    size_t al, shal;
    if (argit_init(&it, cmd, len) != 0 || argit_next(&it, &a, &al) != 0 ||
        argit_next(&it, &sha, &shal) != 0 || shal != 40)
        return NULL;
    for (int i = 0; i < c->nscripts; i++)
        if (strncasecmp(c->scripts[i].sha, sha, 40) == 0)
            return &c->scripts[i];
    return NULL;
}

/* Remember a script sent with SCRIPT LOAD (its body) under the sha Redis answered. */
static void script_remember(rcluster *c, const char *cmd, size_t len, const redisReply *r)
{
    argit it;
    const char *a, *b, *body;
    size_t al, bl, bodyl;
    if (!r || r->type != REDIS_REPLY_STRING || r->len != 40 || c->nscripts >= MAX_SCRIPTS ||
        argit_init(&it, cmd, len) != 0 || argit_next(&it, &a, &al) != 0 ||
        argit_next(&it, &b, &bl) != 0 || !arg_is(b, bl, "LOAD") ||
        argit_next(&it, &body, &bodyl) != 0)
        return;
    for (int i = 0; i < c->nscripts; i++)
        if (!strcmp(c->scripts[i].sha, r->str))
            return;
    script *s = &c->scripts[c->nscripts];
    s->body = malloc(bodyl + 1);
    if (!s->body)
        return;
    memcpy(s->body, body, bodyl);
    s->body[bodyl] = '\0';
    s->len = bodyl;
    memcpy(s->sha, r->str, 40);
    s->sha[40] = '\0';
    c->nscripts++;
}

/* Send cmd to node i (with ASKING first if asking) and read the reply. NULL on I/O error (the
 * node's connection is dropped). */
static redisReply *send_one(rcluster *c, int i, const char *cmd, size_t len, bool asking)
{
    if (node_connect(c, i) != 0)
        return NULL;
    redisContext *ctx = c->nodes[i].ctx;
    void *r = NULL;
    if (asking) {
        if (redisAppendCommand(ctx, "ASKING") != REDIS_OK || redisGetReply(ctx, &r) != REDIS_OK)
            goto io;
        freeReplyObject(r);
        r = NULL;
    }
    if (redisAppendFormattedCommand(ctx, cmd, len) != REDIS_OK ||
        redisGetReply(ctx, &r) != REDIS_OK)
        goto io;
    return r;
io:
    snprintf(c->err, sizeof c->err, "redis %s:%d: %s", c->nodes[i].host, c->nodes[i].port,
             ctx->errstr);
    node_drop(&c->nodes[i]);
    return NULL;
}

/* Run a command that has a slot (or none, slot -1: any node), following redirections and
 * riding out failovers until the timeout. */
static redisReply *run_routed(rcluster *c, const char *cmd, size_t len, int slot, bool evalsha)
{
    int64_t deadline = time_mono_ms() + c->timeout_ms;
    int delay = 50, redirects = 0;
    int ask_node = -1;
    bool script_loaded = false;
    for (;;) {
        if (!c->map_ok && rcluster_refresh(c) != 0) {
            if (!backoff(c, deadline, &delay, "no_map"))
                return NULL;
            continue;
        }
        int i = ask_node >= 0 ? ask_node : slot >= 0 ? c->slots[slot] : any_node(c);
        if (i < 0) {
            snprintf(c->err, sizeof c->err, "redis cluster: slot %d is not served", slot);
            c->map_ok = false;
            if (!backoff(c, deadline, &delay, "slot_unserved"))
                return NULL;
            continue;
        }
        redisReply *r = send_one(c, i, cmd, len, ask_node >= 0);
        ask_node = -1;
        if (!r) {
            /* The node died or is unreachable: its replica takes over; learn who from another. */
            c->map_ok = false;
            if (!backoff(c, deadline, &delay, "connection"))
                return NULL;
            continue;
        }
        if ((err_is(r, "MOVED ") || err_is(r, "ASK ")) && redirects++ < MAX_REDIRECTS) {
            int s, t = redirect_target(c, r->str, &s);
            bool moved = r->str[0] == 'M';
            freeReplyObject(r);
            if (t < 0) {
                c->map_ok = false;
                continue;
            }
            if (moved) {
                c->slots[s] = (int16_t)t;
                c->nodes[t].master = true;
            } else {
                ask_node = t;
            }
            continue;
        }
        if (err_is(r, "TRYAGAIN") || err_is(r, "CLUSTERDOWN") || err_is(r, "LOADING") ||
            err_is(r, "MASTERDOWN")) {
            snprintf(c->err, sizeof c->err, "redis: %s", r->str);
            if (!err_is(r, "LOADING") && !err_is(r, "TRYAGAIN"))
                c->map_ok = false;
            if (backoff(c, deadline, &delay, "busy")) {
                freeReplyObject(r);
                continue;
            }
            return r;
        }
        if (evalsha && !script_loaded && err_is(r, "NOSCRIPT")) {
            const script *s = script_find(c, cmd, len);
            if (s && c->nodes[i].ctx) {
                redisReply *l = redisCommand(c->nodes[i].ctx, "SCRIPT LOAD %b", s->body, s->len);
                if (l) {
                    freeReplyObject(l);
                    freeReplyObject(r);
                    script_loaded = true;
                    continue;
                }
                node_drop(&c->nodes[i]);
            }
        }
        return r;
    }
}

/* Send a keyless command to every master; combine the replies by route. */
static redisReply *run_all(rcluster *c, const char *cmd, size_t len, enum route rt)
{
    int64_t deadline = time_mono_ms() + c->timeout_ms;
    int delay = 50;
    while (!c->map_ok && rcluster_refresh(c) != 0)
        if (!backoff(c, deadline, &delay, "no_map"))
            return NULL;
    redisReply *errr = NULL;
    redisReply **parts = calloc((size_t)c->nnodes, sizeof *parts);
    size_t nparts = 0, total = 0;
    if (!parts) {
        snprintf(c->err, sizeof c->err, "out of memory");
        return NULL;
    }
    bool failed = false;
    for (int i = 0; i < c->nnodes && !failed; i++) {
        if (!c->nodes[i].master)
            continue;
        redisReply *r = send_one(c, i, cmd, len, false);
        if (!r) {
            c->map_ok = false;
            failed = true;
            break;
        }
        if (r->type == REDIS_REPLY_ERROR && !errr) {
            errr = r;
            continue;
        }
        parts[nparts++] = r;
        if (r->type == REDIS_REPLY_ARRAY)
            total += r->elements;
    }
    redisReply *out = NULL;
    if (failed) {
        /* c->err names the node */
    } else if (errr) {
        out = errr;
        errr = NULL;
    } else if (rt == R_ALL_FIRST || nparts == 0) {
        out = nparts ? parts[0] : NULL;
        if (nparts)
            parts[0] = NULL;
        if (!out)
            snprintf(c->err, sizeof c->err, "redis cluster: no master known");
    } else if (rt == R_ALL_SUM) {
        out = parts[0];
        for (size_t k = 1; k < nparts; k++)
            if (parts[k]->type == REDIS_REPLY_INTEGER)
                out->integer += parts[k]->integer;
        parts[0] = NULL;
    } else { /* R_ALL_MERGE: one array of every node's elements (taken over from the parts) */
        out = parts[0];
        parts[0] = NULL;
        if (out->type == REDIS_REPLY_ARRAY) {
            redisReply **all = calloc(total ? total : 1, sizeof *all);
            if (all) {
                size_t n = 0;
                for (size_t e = 0; e < out->elements; e++)
                    all[n++] = out->element[e];
                for (size_t k = 1; k < nparts; k++) {
                    if (parts[k]->type != REDIS_REPLY_ARRAY)
                        continue;
                    for (size_t e = 0; e < parts[k]->elements; e++)
                        all[n++] = parts[k]->element[e];
                    parts[k]->elements = 0; /* the elements now belong to out */
                }
                free(out->element);
                out->element = all;
                out->elements = n;
            }
        }
    }

    for (size_t k = 0; k < nparts; k++)
        if (parts[k])
            freeReplyObject(parts[k]);
    free(parts);
    if (errr)
        freeReplyObject(errr);
    return out;
}

redisReply *rcluster_command_formatted(rcluster *c, const char *cmd, size_t len)
{
    int slot;
    bool evalsha;
    if (c->npipe || c->dispatched)
        rcluster_reset_pipeline(c); /* a caller abandoned a pipeline */
    enum route rt = classify(c, cmd, len, &slot, &evalsha);
    if (rt == R_BAD) {
        /* Answered like Redis would, as an error reply, so callers treat it as one. */
        redisReply *r = calloc(1, sizeof *r);
        if (!r)
            return NULL;
        r->type = REDIS_REPLY_ERROR;
        r->str = strdup(c->err);
        r->len = r->str ? strlen(r->str) : 0;
        return r;
    }
    if (rt == R_KEY || rt == R_ANY) {
        redisReply *r = run_routed(c, cmd, len, rt == R_KEY ? slot : -1, evalsha);
        return r;
    }
    redisReply *r = run_all(c, cmd, len, rt);
    if (rt == R_ALL_FIRST)
        script_remember(c, cmd, len, r);
    return r;
}

/* ---- Pipelines -------------------------------------------------------------------------- */

void rcluster_reset_pipeline(rcluster *c)
{
    for (size_t i = 0; i < c->npipe; i++)
        free(c->pipe[i].cmd);
    for (size_t i = c->next; i < c->nreplies; i++)
        if (c->replies[i])
            freeReplyObject(c->replies[i]);
    free(c->replies);
    c->replies = NULL;
    c->npipe = c->nreplies = c->next = 0;
    c->dispatched = c->pipe_failed = false;
}

int rcluster_append_formatted(rcluster *c, char *cmd, size_t len)
{
    if (c->dispatched) /* the previous pipeline was not read to its end */
        rcluster_reset_pipeline(c);
    if (c->npipe == c->cappipe) {
        size_t cap = c->cappipe ? c->cappipe * 2 : 64;
        pcmd *p = realloc(c->pipe, cap * sizeof *p);
        if (!p) {
            free(cmd);
            snprintf(c->err, sizeof c->err, "out of memory");
            return -1;
        }
        c->pipe = p;
        c->cappipe = cap;
    }
    bool evalsha;
    enum route rt = classify(c, cmd, len, &c->pipe[c->npipe].slot, &evalsha);
    if (rt == R_BAD) {
        free(cmd);
        return -1;
    }
    if (rt != R_KEY)
        c->pipe[c->npipe].slot = -1;
    c->pipe[c->npipe].cmd = cmd;
    c->pipe[c->npipe].len = len;
    c->npipe++;
    return 0;
}

/* Send every queued command to its node and read all replies. 0, or -1 (pipe_failed). */
static int dispatch(rcluster *c)
{
    size_t n = c->npipe;
    int rc = -1;
    int *target = calloc(n ? n : 1, sizeof *target);
    c->replies = calloc(n ? n : 1, sizeof *c->replies);
    c->nreplies = n;
    c->next = 0;
    c->dispatched = true;
    if (!target || !c->replies) {
        snprintf(c->err, sizeof c->err, "out of memory");
        goto out;
    }
    /* Keyless commands take the slot of the keyed command before them, or after them. */
    int prev = -1;
    for (size_t i = 0; i < n; i++) {
        if (c->pipe[i].slot >= 0)
            prev = c->pipe[i].slot;
        else
            c->pipe[i].slot = prev;
    }
    int after = -1;
    for (size_t i = n; i-- > 0;) {
        if (c->pipe[i].slot >= 0)
            after = c->pipe[i].slot;
        else
            c->pipe[i].slot = after;
    }
    int64_t deadline = time_mono_ms() + c->timeout_ms;
    int delay = 50;
    while (!c->map_ok && rcluster_refresh(c) != 0)
        if (!backoff(c, deadline, &delay, "no_map"))
            goto out;
    for (size_t i = 0; i < n; i++) {
        target[i] = c->pipe[i].slot >= 0 ? c->slots[c->pipe[i].slot] : any_node(c);
        if (target[i] < 0 || node_connect(c, target[i]) != 0) {
            if (target[i] < 0)
                snprintf(c->err, sizeof c->err, "redis cluster: slot %d is not served",
                         c->pipe[i].slot);
            c->map_ok = false;
            goto out;
        }
    }
    /* Write: each node's commands in the caller's order (hiredis buffers, flushes on read). */
    for (size_t i = 0; i < n; i++) {
        redisContext *ctx = c->nodes[target[i]].ctx;
        if (redisAppendFormattedCommand(ctx, c->pipe[i].cmd, c->pipe[i].len) != REDIS_OK) {
            snprintf(c->err, sizeof c->err, "redis: %s", ctx->errstr);
            node_drop(&c->nodes[target[i]]);
            c->map_ok = false;
            goto drain;
        }
    }
    /* Read: replies per node come in that node's order, which is the caller's order. */
    bool broke = false;
    for (size_t i = 0; i < n; i++) {
        node *nd = &c->nodes[target[i]];
        if (!nd->ctx) { /* this node broke earlier in the read loop */
            broke = true;
            continue;
        }
        void *r = NULL;
        if (redisGetReply(nd->ctx, &r) != REDIS_OK || !r) {
            snprintf(c->err, sizeof c->err, "redis %s:%d: %s", nd->host, nd->port, nd->ctx->errstr);
            node_drop(nd);
            c->map_ok = false;
            broke = true;
            continue;
        }
        c->replies[i] = r;
    }
    if (broke)
        goto out;
    /* Redirected commands: resend one by one, unless inside MULTI (the EXEC aborts; the caller
     * retries the batch on the refreshed map). */
    bool in_multi = false;
    for (size_t i = 0; i < n; i++) {
        argit it;
        const char *a;
        size_t al;
        if (argit_init(&it, c->pipe[i].cmd, c->pipe[i].len) == 0 && argit_next(&it, &a, &al) == 0) {
            if (arg_is(a, al, "MULTI"))
                in_multi = true;
            else if (arg_is(a, al, "EXEC") || arg_is(a, al, "DISCARD"))
                in_multi = false;
        }
        redisReply *r = c->replies[i];
        if (err_is(r, "MOVED ") || err_is(r, "ASK ") || err_is(r, "TRYAGAIN") ||
            err_is(r, "CLUSTERDOWN")) {
            if (!err_is(r, "ASK "))
                c->map_ok = false;
            if (in_multi)
                continue;
            bool evalsha;
            int slot;
            enum route rt = classify(c, c->pipe[i].cmd, c->pipe[i].len, &slot, &evalsha);
            redisReply *again =
                run_routed(c, c->pipe[i].cmd, c->pipe[i].len, rt == R_KEY ? slot : -1, evalsha);
            if (!again)
                goto out;
            freeReplyObject(r);
            c->replies[i] = again;
        }
    }
    rc = 0;
    goto out;
drain:
    /* A write failed on one node: read what the others owe, so their connections stay in step. */
    for (size_t i = 0; i < n; i++) {
        node *nd = &c->nodes[target[i]];
        void *r = NULL;
        if (nd->ctx && redisGetReply(nd->ctx, &r) == REDIS_OK && r)
            c->replies[i] = r;
        else if (nd->ctx)
            node_drop(nd);
    }
out:
    for (size_t i = 0; i < n; i++)
        free(c->pipe[i].cmd);
    c->npipe = 0;
    free(target);
    if (rc != 0)
        c->pipe_failed = true;
    return rc;
}

int rcluster_get_reply(rcluster *c, redisReply **reply)
{
    *reply = NULL;
    if (!c->dispatched) {
        if (c->npipe == 0) {
            snprintf(c->err, sizeof c->err, "redis: no pipelined reply pending");
            return -1;
        }
        dispatch(c);
    }
    if (c->pipe_failed || c->next >= c->nreplies) {
        if (!c->pipe_failed)
            snprintf(c->err, sizeof c->err, "redis: no pipelined reply pending");
        rcluster_reset_pipeline(c);
        return -1;
    }
    *reply = c->replies[c->next];
    c->replies[c->next++] = NULL;
    if (c->next == c->nreplies)
        rcluster_reset_pipeline(c);
    return 0;
}

/* ---- Life cycle ------------------------------------------------------------------------- */

rcluster *rcluster_new(const char *url, int timeout_ms, char *err, size_t errlen)
{
    if (!rcluster_is_url(url)) {
        snprintf(err, errlen, "redis cluster URL must start with redis+cluster://");
        return NULL;
    }
    rcluster *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
    for (int s = 0; s < RCLUSTER_SLOTS; s++)
        c->slots[s] = -1;
    const char *p = url + 16;
    const char *slash = strchr(p, '/');
    const char *at = memchr(p, '@', slash ? (size_t)(slash - p) : strlen(p));
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            snprintf(c->user, sizeof c->user, "%.*s", (int)(colon - p), p);
            snprintf(c->password, sizeof c->password, "%.*s", (int)(at - colon - 1), colon + 1);
        } else {
            snprintf(c->password, sizeof c->password, "%.*s", (int)(at - p), p);
        }
        p = at + 1;
    }
    const char *end = slash ? slash : p + strlen(p);
    if (slash && slash[1] && strcmp(slash, "/0") != 0) {
        snprintf(err, errlen, "redis cluster URL: a cluster has database 0 only");
        goto fail;
    }
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        const char *colon = NULL;
        for (const char *q = p; q < e; q++)
            if (*q == ':')
                colon = q;
        char host[256];
        long port = 6379;
        if (colon) {
            char pbuf[8];
            size_t pl = (size_t)(e - colon - 1);
            char *pe;
            if (pl == 0 || pl >= sizeof pbuf)
                goto badport;
            memcpy(pbuf, colon + 1, pl);
            pbuf[pl] = '\0';
            port = strtol(pbuf, &pe, 10);
            if (*pe || port < 1 || port > 65535)
                goto badport;
        }
        const char *he = colon ? colon : e;
        if (he == p || (size_t)(he - p) >= sizeof host) {
            snprintf(err, errlen, "redis cluster URL has an empty or long host");
            goto fail;
        }
        snprintf(host, sizeof host, "%.*s", (int)(he - p), p);
        if (node_find(c, host, (int)port, true) < 0) {
            snprintf(err, errlen, "redis cluster URL: too many nodes or out of memory");
            goto fail;
        }
        p = comma ? comma + 1 : end;
    }
    if (c->nnodes == 0) {
        snprintf(err, errlen, "redis cluster URL names no node");
        goto fail;
    }
    return c;
badport:
    snprintf(err, errlen, "redis cluster URL has a bad port");
fail:
    rcluster_free(c);
    return NULL;
}

void rcluster_free(rcluster *c)
{
    if (!c)
        return;
    rcluster_reset_pipeline(c);
    free(c->pipe);
    for (int i = 0; i < c->nnodes; i++)
        node_drop(&c->nodes[i]);
    free(c->nodes);
    for (int i = 0; i < c->nscripts; i++)
        free(c->scripts[i].body);
    free(c);
}

const char *rcluster_error(const rcluster *c)
{
    return c->err;
}

int rcluster_ping(rcluster *c)
{
    if (c->npipe || c->dispatched)
        rcluster_reset_pipeline(c);
    if (!c->map_ok && rcluster_refresh(c) != 0)
        return -1;
    for (int i = 0; i < c->nnodes; i++) {
        if (!c->nodes[i].master)
            continue;
        redisReply *r = send_one(c, i, "*1\r\n$4\r\nPING\r\n", 14, false);
        if (!r) {
            c->map_ok = false;
            return -1;
        }
        bool ok = r->type == REDIS_REPLY_STATUS;
        freeReplyObject(r);
        if (!ok)
            return -1;
    }
    return 0;
}

const char *rcluster_slot_owner(rcluster *c, unsigned slot, char *buf, size_t n)
{
    if (slot >= RCLUSTER_SLOTS || (!c->map_ok && rcluster_refresh(c) != 0))
        return NULL;
    int i = c->slots[slot];
    if (i < 0)
        return NULL;
    snprintf(buf, n, "%s:%d", c->nodes[i].host, c->nodes[i].port);
    return buf;
}

int rcluster_masters(rcluster *c)
{
    return c->map_ok ? c->nmasters : 0;
}
