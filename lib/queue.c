/*
 * queue: see queue.h for the key layout, the job life cycle and the guarantees.
 *
 * Design. Every transition that touches two keys is one Lua script (EVALSHA through
 * rconn_eval_argv, which falls back to EVAL when a restarted or failed-over server lost its
 * script cache, so that costs one extra round trip), and every script only touches keys of one
 * queue, all of which carry the queue's {NAME} hash tag: on a Redis Cluster the script's keys are
 * in one slot. Scripts are passed their keys in KEYS[] (never built inside Lua) for the same
 * reason.
 *
 * Claims: a consumer first runs CLAIM (LMOVE up to N jobs ready -> processing in one script); if
 * nothing was there it blocks in BLMOVE for the first job and then claims the rest. Both ends are
 * FIFO: producers LPUSH, consumers take from the right. Jobs returned by the reaper, by a retry
 * falling due or by an operator's requeue go to the right end: they are served next.
 *
 * Acks remove the exact payload from the processing list, scanning from the tail (the oldest
 * claims are there), so an ack costs O(jobs claimed and not yet acked by this consumer); all
 * minicrm consumers keep that bounded by their batch size.
 *
 * Settling a failed job (RETRY/DEAD) is conditional on the job still being in the processing
 * list: if the reaper already gave it back, the settle is skipped, so a job is never both ready
 * and delayed.
 *
 * The reaper only acts on a consumer whose heartbeat key is gone (checked inside the script), so
 * two reapers racing, or a consumer refreshing its heartbeat while being reaped, are safe.
 *
 * Shards (queue.h): a handle holds `nsh` key sets (struct qshard), each a complete queue of the
 * layout above; every script gets the keys of one shard. Operations on a job go to the shard it
 * came from; operations on the queue (maintenance, stats, dead letters) loop over all.
 */
#include "queue.h"

#include "jsonx.h"
#include "log.h"
#include "timeutil.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Most key sets a handle has: queue.shards' largest value (256) shards + the unsharded keys. */
#define QUEUE_MAX_KEYSETS 257

/* The keys of one shard (of the whole queue when unsharded). */
typedef struct qshard {
    char k_ready[256], k_proc[400], k_hb[400], k_consumers[256], k_delayed[256], k_dead[256],
        k_stats[256];
    char base[200]; /* "P{NAME}:" or "P{NAME:i}:" */
} qshard;

struct queue {
    rconn *c;
    char name[QUEUE_MAX_NAME];
    char consumer[QUEUE_MAX_CONSUMER]; /* "" for a producer handle */
    queue_opts o;
    qshard *sh; /* nsh key sets: the npush shards, then (sharded) the unsharded keys */
    int nsh, npush;
    int push_rr, claim_rr; /* next shard to push to / claim from (0 .. npush-1) */
    bool sweep_old;        /* sharded: look at the unsharded keys on the next claim */
    int64_t next_maintain_ms;
    unsigned rng;
    char err[256];
};

static int g_default_shards = 1; /* queue.shards of this process (queue_opts_from_config) */

/* ---- Lua scripts ------------------------------------------------------------------------- */

/* KEYS: ready, processing. ARGV: max. Returns the claimed jobs, oldest first. Jobs still held
 * in the processing list (a settle that failed, e.g. Redis went away mid-batch) are delivered
 * again first, so a live consumer never sits on unsettled jobs the reaper cannot take.
 * The move is one LMOVE ready RIGHT -> processing LEFT per job (processing ends up
 * newest-first, oldest at the tail). Small jobs (256 bytes or less on average) are moved as
 * LTRIM + LPUSH instead, which does the same in two commands per batch rather than one per job
 * (LPUSH in chunks of 1000 to stay inside Lua's argument limit). Large jobs (a fan-out batch,
 * one POST's receipts) are moved by LMOVE because a script's writes reach replicas (and the
 * AOF) as the commands it ran: an LPUSH carries every job's bytes a second time, an LMOVE
 * only the two key names. */
static const char LUA_CLAIM[] =
    "local held = ARGV[2] == 'fresh' and {} or redis.call('LRANGE', KEYS[2], -tonumber(ARGV[1]), "
    "-1)\n"
    "if #held > 0 then\n"
    "  local back = {}\n"
    "  for i = #held, 1, -1 do back[#back + 1] = held[i] end\n"
    "  return back\n"
    "end\n"
    "local v = redis.call('LRANGE', KEYS[1], -tonumber(ARGV[1]), -1)\n"
    "if #v == 0 then return {} end\n"
    "local out, bytes = {}, 0\n"
    "for i = #v, 1, -1 do out[#out + 1] = v[i]; bytes = bytes + #v[i] end\n"
    "if bytes > 256 * #v then\n"
    "  for i = 1, #v do redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT') end\n"
    "  return out\n"
    "end\n"
    "redis.call('LTRIM', KEYS[1], 0, -#v - 1)\n"
    "for i = 1, #out, 1000 do\n"
    "  redis.call('LPUSH', KEYS[2], unpack(out, i, math.min(i + 999, #out)))\n"
    "end\n"
    "return out\n";

/* KEYS: processing, stats, rate. ARGV: rate_ttl_s, items, jobs... Returns how many were
 * removed. items: the work items those jobs carried (a batch job counts as its sends or
 * receipts), or -1 for one per job; counted in stats "items" and the rate key only if a job was
 * removed, so a repeated ack counts nothing.
 * The usual case, a whole batch acked in claim order, finds the jobs as the list's tail (the
 * oldest claim last): one LRANGE to check and one LTRIM, exactly what the LREM -1 per job
 * would do, without m calls from Lua into Redis. Anything else takes the LREM loop. */
static const char LUA_ACK[] =
    "local n = 0\n"
    "local m = #ARGV - 2\n"
    "local tail = m > 0 and redis.call('LRANGE', KEYS[1], -m, -1) or {}\n"
    "local same = #tail == m\n"
    "for i = 1, m do\n"
    "  if not same then break end\n"
    "  if tail[m - i + 1] ~= ARGV[i + 2] then same = false end\n"
    "end\n"
    "if same and m > 0 then\n"
    "  redis.call('LTRIM', KEYS[1], 0, -m - 1)\n"
    "  n = m\n"
    "else\n"
    "  for i = 3, #ARGV do n = n + redis.call('LREM', KEYS[1], -1, ARGV[i]) end\n"
    "end\n"
    "if n > 0 then\n"
    "  local items = tonumber(ARGV[2])\n"
    "  if items < 0 then items = n end\n"
    "  redis.call('HINCRBY', KEYS[2], 'acked', n)\n"
    "  redis.call('HINCRBY', KEYS[2], 'items', items)\n"
    "  redis.call('INCRBY', KEYS[3], items)\n"
    "  redis.call('EXPIRE', KEYS[3], ARGV[1])\n"
    "end\n"
    "return n\n";

/* KEYS: processing, delayed, dead, stats. ARGV: old payload, new entry, mode ('retry'|'dead'),
 * due ms. Returns 1 if settled, 0 if the job was no longer claimed. */
static const char LUA_SETTLE[] =
    "if redis.call('LREM', KEYS[1], -1, ARGV[1]) == 0 then return 0 end\n"
    "if ARGV[3] == 'dead' then\n"
    "  redis.call('LPUSH', KEYS[3], ARGV[2])\n"
    "  redis.call('HINCRBY', KEYS[4], 'dead', 1)\n"
    "else\n"
    "  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])\n"
    "  redis.call('HINCRBY', KEYS[4], 'retried', 1)\n"
    "end\n"
    "return 1\n";

/* KEYS: processing, delayed, stats. ARGV: payload, due ms. Returns 1 if moved, 0 if the job was
 * no longer claimed. */
static const char LUA_DEFER[] =
    "if redis.call('LREM', KEYS[1], -1, ARGV[1]) == 0 then return 0 end\n"
    "redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])\n"
    "redis.call('HINCRBY', KEYS[3], 'deferred', 1)\n"
    "return 1\n";

/* KEYS: delayed, ready. ARGV: now ms, limit. Returns the number moved. */
static const char LUA_PROMOTE[] =
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])\n"
    "for _, v in ipairs(due) do\n"
    "  redis.call('RPUSH', KEYS[2], v)\n"
    "  redis.call('ZREM', KEYS[1], v)\n"
    "end\n"
    "return #due\n";

/* KEYS: processing, ready, consumers, hb, stats. ARGV: consumer id, 'force'|'check'.
 * Returns the number of jobs returned, or -1 if the consumer is alive (check mode). */
static const char LUA_REAP[] =
    "if ARGV[2] ~= 'force' and redis.call('EXISTS', KEYS[4]) == 1 then return -1 end\n"
    "local n = 0\n"
    "while true do\n"
    "  local v = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')\n"
    "  if not v then break end\n"
    "  n = n + 1\n"
    "end\n"
    "redis.call('SREM', KEYS[3], ARGV[1])\n"
    "if ARGV[2] == 'force' then redis.call('DEL', KEYS[4]) end\n"
    "if n > 0 then redis.call('HINCRBY', KEYS[5], 'reaped', n) end\n"
    "return n\n";

/* KEYS: dead, ready, stats. ARGV: dead entry, job to requeue ('' = just delete).
 * Returns 1 if the entry was there (and was moved/deleted). */
static const char LUA_DLQ_TAKE[] =
    "if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end\n"
    "if ARGV[2] ~= '' then\n"
    "  redis.call('RPUSH', KEYS[2], ARGV[2])\n"
    "  redis.call('HINCRBY', KEYS[3], 'requeued', 1)\n"
    "end\n"
    "return 1\n";

/* ---- Helpers ----------------------------------------------------------------------------- */

static int fail(queue *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(queue *q, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q->err, sizeof q->err, fmt, ap);
    va_end(ap);
    return -1;
}

/* A reply NULL or an error: fill q->err and return -1 (freeing r). 0 otherwise. */
static int check_reply(queue *q, redisReply *r, const char *what)
{
    if (!r)
        return fail(q, "%s: %s", what, rconn_error(q->c));
    if (r->type == REDIS_REPLY_ERROR) {
        fail(q, "%s: %s", what, r->str);
        freeReplyObject(r);
        return -1;
    }
    return 0;
}

static bool valid_word(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n >= max)
        return false;
    for (const char *p = s; *p; p++) {
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '-' || ch == '_' || ch == ':'))
            return false;
    }
    return true;
}

static unsigned rng_next(queue *q)
{
    /* xorshift32: jitter only, no security property needed. */
    unsigned x = q->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    q->rng = x ? x : 0x9e3779b9u;
    return q->rng;
}

/* Run script (EVALSHA, or EVAL once where the server lacks it: rconn_eval_argv) with nkeys keys
 * and the given args. Returns the reply (caller frees) or NULL. */
static redisReply *eval(queue *q, const char *script, int nkeys, const char **keys, int nargs,
                        const char **args, const size_t *arglens)
{
    enum { MAXARGV = 1100 };
    const char *argv[MAXARGV];
    size_t lens[MAXARGV];
    char nk[16];
    int argc = 0;
    if (3 + nkeys + nargs > MAXARGV) {
        fail(q, "internal: too many script arguments");
        return NULL;
    }
    snprintf(nk, sizeof nk, "%d", nkeys);
    argv[argc] = "EVAL";
    lens[argc++] = 4;
    argv[argc] = script;
    lens[argc++] = strlen(script);
    argv[argc] = nk;
    lens[argc++] = strlen(nk);
    for (int i = 0; i < nkeys; i++) {
        argv[argc] = keys[i];
        lens[argc++] = strlen(keys[i]);
    }
    for (int i = 0; i < nargs; i++) {
        argv[argc] = args[i];
        lens[argc++] = arglens ? arglens[i] : strlen(args[i]);
    }
    redisReply *r = rconn_eval_argv(q->c, argc, argv, lens);
    if (check_reply(q, r, "redis script") != 0)
        return NULL;
    return r;
}

static void set_keys(queue *q, qshard *k)
{
    snprintf(k->k_ready, sizeof k->k_ready, "%sready", k->base);
    snprintf(k->k_consumers, sizeof k->k_consumers, "%sconsumers", k->base);
    snprintf(k->k_delayed, sizeof k->k_delayed, "%sdelayed", k->base);
    snprintf(k->k_dead, sizeof k->k_dead, "%sdead", k->base);
    snprintf(k->k_stats, sizeof k->k_stats, "%sstats", k->base);
    snprintf(k->k_proc, sizeof k->k_proc, "%sprocessing:%s", k->base, q->consumer);
    snprintf(k->k_hb, sizeof k->k_hb, "%shb:%s", k->base, q->consumer);
}

/* The shard a claimed job belongs to; NULL when unknown (the caller searches). */
static qshard *job_shard(queue *q, const queue_job *job)
{
    if (q->nsh == 1)
        return &q->sh[0];
    return job->shard >= 1 && job->shard <= q->nsh ? &q->sh[job->shard - 1] : NULL;
}

/* ---- Options and handles ----------------------------------------------------------------- */

void queue_opts_from_config(queue_opts *o, const minicrm_config *cfg)
{
    o->max_attempts = cfg->queue.max_attempts;
    o->backoff_base_ms = cfg->queue.backoff_base_ms;
    o->backoff_max_ms = cfg->queue.backoff_max_ms;
    o->heartbeat_ttl_s = cfg->queue.heartbeat_ttl_s;
    o->reap_interval_ms = cfg->queue.reap_interval_ms;
    o->shards = cfg->queue.shards > 0 ? cfg->queue.shards : 1;
    g_default_shards = o->shards;
}

void queue_opts_default(queue_opts *o)
{
    o->max_attempts = 8;
    o->backoff_base_ms = 200;
    o->backoff_max_ms = 60000;
    o->heartbeat_ttl_s = 15;
    o->reap_interval_ms = 2000;
    o->shards = g_default_shards;
}

void queue_use_config(const minicrm_config *cfg)
{
    g_default_shards = cfg->queue.shards > 0 ? cfg->queue.shards : 1;
}

bool queue_is_sharded(const char *name)
{
    return name && (!strcmp(name, QUEUE_SENDS) || !strcmp(name, QUEUE_RECEIPTS));
}

int queue_shards_for(const char *name, const queue_opts *o)
{
    int s = o ? o->shards : g_default_shards;
    return queue_is_sharded(name) && s > 1 ? s : 1;
}

queue *queue_open(rconn *c, const char *prefix, const char *name, const char *consumer,
                  const queue_opts *o, char *err, size_t errlen)
{
    if (!c || !prefix || strlen(prefix) > 100) {
        snprintf(err, errlen, "queue: missing connection or bad prefix");
        return NULL;
    }
    if (!name || !valid_word(name, QUEUE_MAX_NAME) || strchr(name, ':')) {
        snprintf(err, errlen, "queue: bad queue name '%s'", name ? name : "(null)");
        return NULL;
    }
    if (consumer && !valid_word(consumer, QUEUE_MAX_CONSUMER)) {
        snprintf(err, errlen, "queue: bad consumer id '%s'", consumer);
        return NULL;
    }
    queue *q = calloc(1, sizeof *q);
    if (!q) {
        snprintf(err, errlen, "queue: out of memory");
        return NULL;
    }
    q->c = c;
    snprintf(q->name, sizeof q->name, "%s", name);
    snprintf(q->consumer, sizeof q->consumer, "%s", consumer ? consumer : "");
    if (o)
        q->o = *o;
    else
        queue_opts_default(&q->o);
    if (q->o.max_attempts < 1)
        q->o.max_attempts = 1;
    if (q->o.backoff_base_ms < 1)
        q->o.backoff_base_ms = 1;
    if (q->o.backoff_max_ms < q->o.backoff_base_ms)
        q->o.backoff_max_ms = q->o.backoff_base_ms;
    if (q->o.heartbeat_ttl_s < 1)
        q->o.heartbeat_ttl_s = 1;
    int s = queue_shards_for(name, &q->o);
    q->npush = s;
    q->nsh = s > 1 ? s + 1 : 1;
    q->sh = calloc((size_t)q->nsh, sizeof *q->sh);
    if (!q->sh) {
        free(q);
        snprintf(err, errlen, "queue: out of memory");
        return NULL;
    }
    for (int i = 0; i < q->nsh; i++) {
        if (i < s && s > 1)
            snprintf(q->sh[i].base, sizeof q->sh[i].base, "%s{%s:%d}:", prefix, name, i);
        else
            snprintf(q->sh[i].base, sizeof q->sh[i].base, "%s{%s}:", prefix, name);
        set_keys(q, &q->sh[i]);
    }
    q->rng = (unsigned)(time_mono_us() ^ ((unsigned)getpid() << 16)) | 1u;
    /* Consumers and producers start at different shards, so they do not all block on one. */
    q->push_rr = (int)(rng_next(q) % (unsigned)q->npush);
    q->claim_rr = (int)(rng_next(q) % (unsigned)q->npush);
    q->sweep_old = q->nsh > q->npush;
    return q;
}

void queue_close(queue *q)
{
    if (!q)
        return;
    free(q->sh);
    free(q);
}

const char *queue_error(const queue *q)
{
    return q->err;
}

const char *queue_name(const queue *q)
{
    return q->name;
}

const char *queue_consumer(const queue *q)
{
    return q->consumer;
}

char *queue_consumer_id(const char *role, char *buf, size_t n)
{
    char host[64] = "host";
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "host");
    host[sizeof host - 1] = '\0';
    for (char *p = host; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '.'))
            *p = '_';
    snprintf(buf, n, "%s:%s:%ld", role, host, (long)getpid());
    return buf;
}

const char *queue_key(const queue *q, const char *suffix, char *buf, size_t n)
{
    snprintf(buf, n, "%s%s", q->sh[0].base, suffix);
    return buf;
}

int queue_nshards(const queue *q)
{
    return q->nsh;
}

const char *queue_shard_key(const queue *q, int i, const char *suffix, char *buf, size_t n)
{
    if (i < 0 || i >= q->nsh)
        i = 0;
    snprintf(buf, n, "%s%s", q->sh[i].base, suffix);
    return buf;
}

const char *queue_job_key(const queue *q, const queue_job *job, const char *suffix, char *buf,
                          size_t n)
{
    int i = q->nsh > 1 && job->shard >= 1 && job->shard <= q->nsh ? job->shard - 1 : 0;
    return queue_shard_key(q, i, suffix, buf, n);
}

/* ---- Producing --------------------------------------------------------------------------- */

int queue_push(queue *q, const char *json, size_t len)
{
    return queue_push_many(q, &json, &len, 1);
}

int queue_push_many(queue *q, const char *const *jobs, const size_t *lens, size_t n)
{
    enum { CHUNK = 1000 };
    const char *argv[CHUNK + 2];
    size_t alen[CHUNK + 2];
    size_t nchunks = 0;
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = lens ? lens[i] : strlen(jobs[i]);
        if (l == 0 || l > QUEUE_MAX_JOB_BYTES)
            return fail(q, "queue %s: job %zu is empty or larger than %d bytes", q->name, i,
                        QUEUE_MAX_JOB_BYTES);
    }
    qshard *k = &q->sh[q->push_rr];
    q->push_rr = (q->push_rr + 1) % q->npush;
    for (size_t off = 0; off < n; off += CHUNK) {
        size_t m = n - off < CHUNK ? n - off : CHUNK;
        argv[0] = "LPUSH";
        alen[0] = 5;
        argv[1] = k->k_ready;
        alen[1] = strlen(k->k_ready);
        for (size_t i = 0; i < m; i++) {
            argv[2 + i] = jobs[off + i];
            alen[2 + i] = lens ? lens[off + i] : strlen(jobs[off + i]);
        }
        if (rconn_append_argv(q->c, (int)m + 2, argv, alen) != 0)
            return fail(q, "queue %s push: %s", q->name, rconn_error(q->c));
        nchunks++;
    }
    if (rconn_append(q->c, "HINCRBY %s pushed %lld", k->k_stats, (long long)n) != 0)
        return fail(q, "queue %s push: %s", q->name, rconn_error(q->c));
    nchunks++;
    int rc = 0;
    for (size_t i = 0; i < nchunks; i++) {
        redisReply *r;
        if (rconn_get_reply(q->c, &r) != 0)
            return fail(q, "queue %s push: %s", q->name, rconn_error(q->c));
        if (r->type == REDIS_REPLY_ERROR)
            rc = fail(q, "queue %s push: %s", q->name, r->str);
        freeReplyObject(r);
    }
    return rc;
}

int queue_push_once(queue *q, const char *once, int ttl_s, const char *const *jobs,
                    const size_t *lens, size_t n)
{
    static const char lua[] = "if not redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[1]) then\n"
                              "  return 0\n"
                              "end\n"
                              "for i = 2, #ARGV do redis.call('LPUSH', KEYS[1], ARGV[i]) end\n"
                              "redis.call('HINCRBY', KEYS[2], 'pushed', #ARGV - 1)\n"
                              "return 1\n";
    char k_once[sizeof q->sh[0].base + 140], ttl[16];
    const char *args[1 + QUEUE_PUSH_ONCE_MAX];
    size_t alens[1 + QUEUE_PUSH_ONCE_MAX];
    if (n == 0 || n > QUEUE_PUSH_ONCE_MAX || !once || !*once || strlen(once) > 128 || ttl_s < 1)
        return fail(q, "queue %s push_once: bad arguments", q->name);
    for (size_t i = 0; i < n; i++) {
        size_t l = lens ? lens[i] : strlen(jobs[i]);
        if (l == 0 || l > QUEUE_MAX_JOB_BYTES)
            return fail(q, "queue %s: job %zu is empty or larger than %d bytes", q->name, i,
                        QUEUE_MAX_JOB_BYTES);
        args[1 + i] = jobs[i];
        alens[1 + i] = l;
    }
    /* The token picks the shard, so a replay finds its token where the first push left it. */
    unsigned h = 2166136261u;
    for (const char *p = once; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    qshard *k = &q->sh[h % (unsigned)q->npush];
    snprintf(k_once, sizeof k_once, "%sonce:%s", k->base, once);
    snprintf(ttl, sizeof ttl, "%d", ttl_s);
    args[0] = ttl;
    alens[0] = strlen(ttl);
    const char *keys[] = {k->k_ready, k->k_stats, k_once};
    redisReply *r = eval(q, lua, 3, keys, (int)n + 1, args, alens);
    if (!r)
        return -1;
    int rc = r->type == REDIS_REPLY_INTEGER && r->integer == 1 ? 1 : 0;
    freeReplyObject(r);
    return rc;
}

/* ---- Consuming --------------------------------------------------------------------------- */

static int need_consumer(queue *q)
{
    if (!q->consumer[0])
        return fail(q, "queue %s: producer handle cannot consume", q->name);
    return 0;
}

/* SET hb PX + SADD consumers; returns SADD's result (1 = was not registered) or -1. */
static int beat(queue *q)
{
    if (need_consumer(q) != 0)
        return -1;
    long long ttl = (long long)q->o.heartbeat_ttl_s * 1000;
    for (int s = 0; s < q->nsh; s++)
        if (rconn_append(q->c, "SET %s 1 PX %lld", q->sh[s].k_hb, ttl) != 0 ||
            rconn_append(q->c, "SADD %s %s", q->sh[s].k_consumers, q->consumer) != 0)
            return fail(q, "queue %s heartbeat: %s", q->name, rconn_error(q->c));
    int added = 0, rc = 0;
    for (int i = 0; i < 2 * q->nsh; i++) {
        redisReply *r;
        if (rconn_get_reply(q->c, &r) != 0)
            return fail(q, "queue %s heartbeat: %s", q->name, rconn_error(q->c));
        if (r->type == REDIS_REPLY_ERROR)
            rc = fail(q, "queue %s heartbeat: %s", q->name, r->str);
        else if (i % 2 == 1 && r->integer == 1)
            added = 1;
        freeReplyObject(r);
    }
    return rc ? rc : added;
}

int queue_register(queue *q)
{
    return beat(q) < 0 ? -1 : 0;
}

int queue_consumer_alive(queue *q, const char *cid)
{
    if (!valid_word(cid, QUEUE_MAX_CONSUMER))
        return 0;
    redisReply *r = rconn_command(q->c, "EXISTS %shb:%s", q->sh[0].base, cid);
    if (check_reply(q, r, "EXISTS hb") != 0)
        return -1;
    int alive = r->type == REDIS_REPLY_INTEGER && r->integer > 0;
    freeReplyObject(r);
    return alive;
}

int queue_heartbeat(queue *q)
{
    int r = beat(q);
    if (r == 1)
        log_warn("queue.reregistered", "queue=%s consumer=%s", q->name, q->consumer);
    return r;
}

void queue_batch_init(queue_batch *b)
{
    memset(b, 0, sizeof *b);
}

void queue_batch_release(queue_batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++)
        free(b->jobs[i].data);
    free(b->jobs);
    memset(b, 0, sizeof *b);
}

static int batch_add(queue *q, queue_batch *b, const char *s, size_t len, int shard)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        queue_job *j = realloc(b->jobs, cap * sizeof *j);
        if (!j)
            return fail(q, "out of memory");
        b->jobs = j;
        b->cap = cap;
    }
    char *d = malloc(len + 1);
    if (!d)
        return fail(q, "out of memory");
    memcpy(d, s, len);
    d[len] = '\0';
    b->jobs[b->n].data = d;
    b->jobs[b->n].len = len;
    b->jobs[b->n].shard = shard + 1;
    b->n++;
    return 0;
}

static int claim_now(queue *q, int s, size_t max, bool fresh, queue_batch *out)
{
    char nbuf[24];
    snprintf(nbuf, sizeof nbuf, "%zu", max);
    const char *keys[] = {q->sh[s].k_ready, q->sh[s].k_proc};
    const char *args[] = {nbuf, fresh ? "fresh" : "held"};
    redisReply *r = eval(q, LUA_CLAIM, 2, keys, 2, args, NULL);
    if (!r)
        return -1;
    int n = 0;
    if (r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->elements; i++) {
            redisReply *e = r->element[i];
            if (e->type == REDIS_REPLY_STRING) {
                if (batch_add(q, out, e->str, e->len, s) != 0) {
                    freeReplyObject(r);
                    return -1;
                }
                n++;
            }
        }
    }
    freeReplyObject(r);
    return n;
}

/* Which of the npush shards have jobs ready (or, unless fresh, jobs this consumer still
 * holds): busy[s]. One pipelined round trip. 0, or -1 (busy untouched or partly set). */
static int peek_shards(queue *q, bool fresh, bool *busy)
{
    int per = fresh ? 1 : 2;
    for (int s = 0; s < q->npush; s++)
        if (rconn_append(q->c, "LLEN %s", q->sh[s].k_ready) != 0 ||
            (!fresh && rconn_append(q->c, "LLEN %s", q->sh[s].k_proc) != 0))
            return fail(q, "queue %s claim: %s", q->name, rconn_error(q->c));
    int rc = 0;
    for (int i = 0; i < q->npush * per; i++) {
        redisReply *r;
        if (rconn_get_reply(q->c, &r) != 0)
            return fail(q, "queue %s claim: %s", q->name, rconn_error(q->c));
        if (r->type != REDIS_REPLY_INTEGER)
            rc = -1;
        else if (i % per == 0)
            busy[i / per] = r->integer > 0;
        else if (r->integer > 0)
            busy[i / per] = true;
        freeReplyObject(r);
    }
    return rc;
}

static int claim(queue *q, size_t max, int block_ms, bool fresh, queue_batch *out)
{
    if (need_consumer(q) != 0)
        return -1;
    if (max == 0)
        return 0;
    if (max > 10000)
        max = 10000;
    /* The unsharded keys (sharded handles only) normally hold nothing: they are looked at when
     * the handle is new and then once per maintenance interval, until they are empty. */
    int n = 0, s;
    if (q->sweep_old) {
        n = claim_now(q, q->npush, max, fresh, out);
        q->sweep_old = n > 0;
        if (n != 0)
            return n;
    }
    /* One shard per claim, starting after the last one that had work: every shard is served in
     * turn however busy the others are. With several shards, one pipelined round of LLENs
     * (ready, and the processing list unless fresh) says which shards have anything, so the
     * claim script runs only there: an empty shard costs an LLEN, not a script. */
    bool busy[256];
    int nb = q->npush > 256 ? 256 : q->npush;
    for (int k = 0; k < nb; k++)
        busy[k] = true;
    if (q->npush > 1 && q->npush <= 256 && peek_shards(q, fresh, busy) != 0)
        for (int k = 0; k < nb; k++) /* could not look: try them all */
            busy[k] = true;
    s = q->claim_rr;
    for (int k = 0; k < q->npush; k++) {
        s = (q->claim_rr + k) % q->npush;
        if (s < nb && !busy[s])
            continue;
        n = claim_now(q, s, max, fresh, out);
        if (n != 0)
            break;
    }
    if (n != 0) {
        if (n > 0)
            q->claim_rr = (s + 1) % q->npush;
        return n;
    }
    if (block_ms <= 0)
        return 0;
    /* Nothing ready anywhere: block for the first job on one shard (all of block_ms when there
     * is one; at most 200 ms each, rotating, when there are several). BLMOVE's timeout is in
     * seconds (decimal). */
    s = q->claim_rr;
    q->claim_rr = (s + 1) % q->npush;
    int wait_ms = q->npush > 1 && block_ms > 200 ? 200 : block_ms;
    char tbuf[32];
    snprintf(tbuf, sizeof tbuf, "%.3f", wait_ms / 1000.0);
    const char *argv[] = {"BLMOVE", q->sh[s].k_ready, q->sh[s].k_proc, "RIGHT", "LEFT", tbuf};
    redisReply *r = rconn_command_argv(q->c, 6, argv, NULL);
    if (check_reply(q, r, "queue claim") != 0)
        return -1;
    if (r->type == REDIS_REPLY_STRING) {
        if (batch_add(q, out, r->str, r->len, s) != 0) {
            freeReplyObject(r);
            return -1;
        }
        n = 1;
    }
    freeReplyObject(r);
    if (n == 1 && max > 1) {
        /* "fresh": the job BLMOVE just moved is in our processing list now and must not be
         * taken for a held one and delivered twice. */
        int more = claim_now(q, s, max - 1, true, out);
        if (more < 0) /* the first job is claimed and in `out`: report what we have */
            return 1;
        n += more;
    }
    return n;
}

int queue_claim(queue *q, size_t max, int block_ms, queue_batch *out)
{
    return claim(q, max, block_ms, false, out);
}

int queue_claim_fresh(queue *q, size_t max, int block_ms, queue_batch *out)
{
    return claim(q, max, block_ms, true, out);
}

/* LUA_ACK on shard k for n jobs (chunks of 1000); items as in ack(). */
static int ack_shard(queue *q, qshard *k, const queue_job *const *jobs, size_t n, long long items)
{
    enum { CHUNK = 1000 };
    char rate[300], ttl[] = "120", ibuf[24];
    snprintf(rate, sizeof rate, "%srate:%lld", k->base, (long long)(time_now_ms() / 10000));
    const char *keys[] = {k->k_proc, k->k_stats, rate};
    for (size_t off = 0; off < n; off += CHUNK) {
        size_t m = n - off < CHUNK ? n - off : CHUNK;
        const char *args[CHUNK + 2];
        size_t lens[CHUNK + 2];
        /* The item total rides with the first chunk. */
        snprintf(ibuf, sizeof ibuf, "%lld", items < 0 ? -1LL : off == 0 ? items : 0LL);
        args[0] = ttl;
        lens[0] = strlen(ttl);
        args[1] = ibuf;
        lens[1] = strlen(ibuf);
        for (size_t i = 0; i < m; i++) {
            args[2 + i] = jobs[off + i]->data;
            lens[2 + i] = jobs[off + i]->len;
        }
        redisReply *r = eval(q, LUA_ACK, 3, keys, (int)m + 2, args, lens);
        if (!r)
            return -1;
        freeReplyObject(r);
    }
    return 0;
}

static int ack(queue *q, const queue_job *jobs, size_t n, long long items)
{
    if (need_consumer(q) != 0)
        return -1;
    if (n == 0)
        return 0;
    const queue_job **pick = malloc(n * sizeof *pick);
    if (!pick)
        return fail(q, "out of memory");
    int rc = 0;
    /* Per shard, the jobs claimed there. A batch comes from one shard (one claim), so this is
     * one script in the usual case. The items are shared out in proportion to the jobs (a
     * consumer acking jobs of several shards at once, like the vendor's, gives one total), so
     * the shards' sums are exact. Jobs of unknown shard (built by the caller) are acked on
     * every shard, counted one item per job. */
    size_t known = 0, done = 0;
    for (size_t i = 0; i < n; i++)
        known += job_shard(q, &jobs[i]) != NULL;
    for (int s = 0; s < q->nsh && rc == 0; s++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (q->nsh == 1 || jobs[i].shard == s + 1)
                pick[m++] = &jobs[i];
        if (m) {
            long long share = items < 0 ? -1
                                        : items * (long long)(done + m) / (long long)known -
                                              items * (long long)done / (long long)known;
            rc = ack_shard(q, &q->sh[s], pick, m, share);
            done += m;
        }
    }
    for (int s = 0; s < q->nsh && rc == 0 && q->nsh > 1; s++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (!job_shard(q, &jobs[i]))
                pick[m++] = &jobs[i];
        if (m == 0)
            break;
        rc = ack_shard(q, &q->sh[s], pick, m, -1);
    }
    free(pick);
    return rc;
}

int queue_ack(queue *q, const queue_job *jobs, size_t n)
{
    return ack(q, jobs, n, -1);
}

int queue_ack_items(queue *q, const queue_job *jobs, size_t n, long long items)
{
    return ack(q, jobs, n, items < 0 ? 0 : items);
}

/* Build the delayed entry (payload with bookkeeping) or the dead letter for job. Sets *attempts.
 * Returns a malloc'd string or NULL. */
static char *annotate(queue *q, const queue_job *job, const char *error, bool dead_now,
                      int *attempts, bool *dead)
{
    json_error_t jerr;
    json_t *obj = json_loadb(job->data, job->len, 0, &jerr);
    int64_t now = time_now_ms();
    char *out = NULL;
    if (!json_is_object(obj)) {
        /* Not JSON (or not an object): it can never succeed, dead-letter it as text. */
        json_decref(obj);
        obj = NULL;
        dead_now = true;
    }
    int a = obj ? (int)jsonx_int(obj, "_attempts", 0) + 1 : 1;
    int64_t first = obj ? (int64_t)jsonx_int(obj, "_first_at", now) : now;
    *attempts = a;
    *dead = dead_now || a >= q->o.max_attempts;
    if (*dead) {
        json_t *entry = json_object();
        json_t *jobv;
        if (obj) {
            jobv = json_deep_copy(obj);
            json_object_del(jobv, "_attempts");
            json_object_del(jobv, "_first_at");
            json_object_del(jobv, "_error");
        } else {
            jobv = json_stringn(job->data, job->len);
            if (!jobv) { /* not even UTF-8: keep it readable, bytes above 0x7f become '?' */
                char *clean = malloc(job->len + 1);
                for (size_t i = 0; clean && i < job->len; i++)
                    clean[i] =
                        (unsigned char)job->data[i] < 0x80 && job->data[i] ? job->data[i] : '?';
                jobv = clean ? json_stringn(clean, job->len) : json_string("");
                free(clean);
            }
        }
        json_object_set_new(entry, "queue", json_string(q->name));
        json_object_set_new(entry, "job", jobv);
        json_object_set_new(entry, "error", json_string(error ? error : "unknown error"));
        json_object_set_new(entry, "attempts", json_integer(a));
        json_object_set_new(entry, "first_at", json_integer(first));
        json_object_set_new(entry, "failed_at", json_integer(now));
        out = json_dumps(entry, JSON_COMPACT);
        json_decref(entry);
    } else {
        json_object_set_new(obj, "_attempts", json_integer(a));
        json_object_set_new(obj, "_first_at", json_integer(first));
        json_object_set_new(obj, "_error", json_string(error ? error : "unknown error"));
        out = json_dumps(obj, JSON_COMPACT);
    }
    json_decref(obj);
    if (!out)
        fail(q, "out of memory");
    return out;
}

/* delay_ms < 0: the queue's exponential backoff; otherwise exactly that delay. */
static int settle(queue *q, const queue_job *job, const char *error, bool dead_now,
                  long long delay_ms)
{
    if (need_consumer(q) != 0)
        return -1;
    int attempts;
    bool dead;
    char *entry = annotate(q, job, error, dead_now, &attempts, &dead);
    if (!entry)
        return -1;
    long long d = q->o.backoff_base_ms;
    for (int i = 1; i < attempts && d < q->o.backoff_max_ms; i++)
        d *= 2;
    if (d > q->o.backoff_max_ms)
        d = q->o.backoff_max_ms;
    long long delay =
        delay_ms >= 0 ? delay_ms : d / 2 + (long long)(rng_next(q) % (unsigned)(d / 2 + 1));
    char due[32];
    snprintf(due, sizeof due, "%lld", (long long)time_now_ms() + delay);
    const char *args[] = {job->data, entry, dead ? "dead" : "retry", due};
    size_t lens[] = {job->len, strlen(entry), strlen(args[2]), strlen(due)};
    /* The job's shard; unknown: each shard until one held it. */
    qshard *one = job_shard(q, job);
    int moved = 0;
    for (int s = 0; s < q->nsh && !moved; s++) {
        qshard *k = one ? one : &q->sh[s];
        const char *keys[] = {k->k_proc, k->k_delayed, k->k_dead, k->k_stats};
        redisReply *r = eval(q, LUA_SETTLE, 4, keys, 4, args, lens);
        if (!r) {
            free(entry);
            return -1;
        }
        moved = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        freeReplyObject(r);
        if (one)
            break;
    }
    free(entry);
    if (moved && dead) {
        char eq[200];
        log_warn("queue.dead_letter", "queue=%s attempts=%d error=%s", q->name, attempts,
                 log_quote(eq, sizeof eq, error ? error : ""));
    }
    return moved && dead ? 1 : 0;
}

int queue_retry(queue *q, const queue_job *job, const char *error)
{
    return settle(q, job, error, false, -1);
}

int queue_retry_after(queue *q, const queue_job *job, const char *error, long long delay_ms)
{
    return settle(q, job, error, false, delay_ms < 0 ? 0 : delay_ms);
}

int queue_defer(queue *q, const queue_job *job, int64_t due_ms)
{
    if (need_consumer(q) != 0)
        return -1;
    char due[32];
    snprintf(due, sizeof due, "%lld", (long long)due_ms);
    const char *args[] = {job->data, due};
    size_t lens[] = {job->len, strlen(due)};
    /* The job's shard; unknown: each shard until one held it. */
    qshard *one = job_shard(q, job);
    for (int s = 0; s < q->nsh; s++) {
        qshard *k = one ? one : &q->sh[s];
        const char *keys[] = {k->k_proc, k->k_delayed, k->k_stats};
        redisReply *r = eval(q, LUA_DEFER, 3, keys, 2, args, lens);
        if (!r)
            return -1;
        bool moved = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        freeReplyObject(r);
        if (one || moved)
            break;
    }
    return 0;
}

int queue_dead(queue *q, const queue_job *job, const char *reason)
{
    int r = settle(q, job, reason, true, -1);
    return r < 0 ? -1 : 0;
}

int queue_dead_parts(queue *q, const char *const *parts, const size_t *lens,
                     const char *const *reasons, size_t n)
{
    if (n == 0)
        return 0;
    /* Build every entry first, so that nothing is sent unless all of them exist. */
    char **entries = calloc(n, sizeof *entries);
    if (!entries)
        return fail(q, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        queue_job part = {(char *)parts[i], lens ? lens[i] : strlen(parts[i]), 0};
        int attempts;
        bool dead;
        /* annotate() with dead_now builds the entry queue_dead writes. */
        entries[i] = annotate(q, &part, reasons[i], true, &attempts, &dead);
        if (!entries[i])
            rc = -1;
    }
    size_t sent = 0;
    if (rc == 0) {
        int a = rconn_append(q->c, "MULTI");
        sent = 1;
        for (size_t i = 0; i < n && a == 0; i++, sent++)
            a = rconn_append(q->c, "LPUSH %s %s", q->sh[0].k_dead, entries[i]);
        a = a ? a : rconn_append(q->c, "HINCRBY %s dead %lld", q->sh[0].k_stats, (long long)n);
        a = a ? a : rconn_append(q->c, "EXEC");
        sent += 2;
        if (a != 0)
            rc = fail(q, "queue %s dead: %s", q->name, rconn_error(q->c));
    }
    for (size_t i = 0; rc == 0 && i < sent; i++) {
        redisReply *r;
        if (rconn_get_reply(q->c, &r) != 0) {
            rc = fail(q, "queue %s dead: %s", q->name, rconn_error(q->c));
            break;
        }
        if (r->type == REDIS_REPLY_ERROR || (i == sent - 1 && r->type != REDIS_REPLY_ARRAY))
            rc = fail(q, "queue %s dead: %s", q->name,
                      r->type == REDIS_REPLY_ERROR ? r->str : "transaction aborted");
        freeReplyObject(r);
    }
    for (size_t i = 0; i < n; i++)
        free(entries[i]);
    free(entries);
    if (rc == 0) {
        char eq[200];
        log_warn("queue.dead_letter", "queue=%s parts=%zu error=%s", q->name, n,
                 log_quote(eq, sizeof eq, reasons[0] ? reasons[0] : ""));
    }
    return rc;
}

/* Read replies of n pipelined commands into rs (NULL-filled on failure; the caller frees what is
 * there). 0 or -1 with q's error set. */
static int read_replies(queue *q, redisReply **rs, int n, const char *what)
{
    int rc = 0;
    for (int i = 0; i < n; i++)
        rs[i] = NULL;
    for (int i = 0; i < n; i++) {
        if (rconn_get_reply(q->c, &rs[i]) != 0) {
            rs[i] = NULL;
            return fail(q, "queue %s %s: %s", q->name, what, rconn_error(q->c));
        }
        if (rs[i]->type == REDIS_REPLY_ERROR)
            rc = fail(q, "queue %s %s: %s", q->name, what, rs[i]->str);
    }
    return rc;
}

static void free_replies(redisReply **rs, int n)
{
    for (int i = 0; i < n; i++)
        if (rs[i])
            freeReplyObject(rs[i]);
}

/* One pipelined ZCOUNT per shard says where a retry is due; the promote script runs only there
 * (most passes find nothing due anywhere: one round trip, no script). */
int queue_promote_due(queue *q)
{
    char now[32];
    snprintf(now, sizeof now, "%lld", (long long)time_now_ms());
    redisReply *due[QUEUE_MAX_KEYSETS];
    int nsh = q->nsh, n = 0;
    for (int s = 0; s < nsh; s++)
        if (rconn_append(q->c, "ZCOUNT %s -inf %s", q->sh[s].k_delayed, now) != 0)
            return fail(q, "queue %s promote: %s", q->name, rconn_error(q->c));
    if (read_replies(q, due, nsh, "promote") != 0) {
        free_replies(due, nsh);
        return -1;
    }
    for (int s = 0; s < nsh && n >= 0; s++) {
        if (due[s]->type != REDIS_REPLY_INTEGER || due[s]->integer <= 0)
            continue;
        const char *keys[] = {q->sh[s].k_delayed, q->sh[s].k_ready};
        const char *args[] = {now, "1000"};
        redisReply *r = eval(q, LUA_PROMOTE, 2, keys, 2, args, NULL);
        if (!r) {
            n = -1;
            break;
        }
        n += r->type == REDIS_REPLY_INTEGER ? (int)r->integer : 0;
        freeReplyObject(r);
    }
    free_replies(due, nsh);
    return n;
}

/* Run LUA_REAP for consumer cid. Returns jobs moved, -2 if alive, -1 on error. */
static long long reap_one(queue *q, qshard *k, const char *cid, bool force)
{
    char proc[400], hb[400];
    snprintf(proc, sizeof proc, "%sprocessing:%s", k->base, cid);
    snprintf(hb, sizeof hb, "%shb:%s", k->base, cid);
    const char *keys[] = {proc, k->k_ready, k->k_consumers, hb, k->k_stats};
    const char *args[] = {cid, force ? "force" : "check"};
    redisReply *r = eval(q, LUA_REAP, 5, keys, 2, args, NULL);
    if (!r)
        return -1;
    long long n = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    return n < 0 ? -2 : n;
}

/* Three pipelined rounds however many shards and consumers: SMEMBERS of every shard, then
 * EXISTS of every other consumer's heartbeat; the reap script (which checks the heartbeat again
 * itself, so a consumer that beats in between is left alone) runs only for consumers whose
 * heartbeat is gone. */
int queue_reap(queue *q)
{
    redisReply *mem[QUEUE_MAX_KEYSETS];
    int nsh = q->nsh, rc = 0;
    long long total = 0;
    for (int s = 0; s < nsh; s++)
        if (rconn_append(q->c, "SMEMBERS %s", q->sh[s].k_consumers) != 0)
            return fail(q, "queue reap: %s", rconn_error(q->c));
    if (read_replies(q, mem, nsh, "reap") != 0) {
        free_replies(mem, nsh);
        return -1;
    }
    /* The other consumers: cand[k] = (shard, member index), in the order their EXISTS go out;
     * dead[k] whether that heartbeat is gone. */
    size_t ncand = 0, cap = 0;
    struct cand {
        int s;
        size_t i;
        bool dead;
    } *cand = NULL;
    for (int s = 0; s < nsh && rc == 0; s++) {
        for (size_t i = 0; mem[s]->type == REDIS_REPLY_ARRAY && i < mem[s]->elements; i++) {
            const char *cid = mem[s]->element[i]->str;
            if (!cid || !strcmp(cid, q->consumer) || !valid_word(cid, QUEUE_MAX_CONSUMER))
                continue;
            if (ncand == cap) {
                size_t nc = cap ? cap * 2 : 16;
                struct cand *p = realloc(cand, nc * sizeof *p);
                if (!p) {
                    rc = fail(q, "out of memory");
                    break;
                }
                cand = p;
                cap = nc;
            }
            cand[ncand].s = s;
            cand[ncand].i = i;
            cand[ncand++].dead = false;
        }
    }
    for (size_t k = 0; k < ncand && rc == 0; k++)
        if (rconn_append(q->c, "EXISTS %shb:%s", q->sh[cand[k].s].base,
                         mem[cand[k].s]->element[cand[k].i]->str) != 0)
            rc = fail(q, "queue reap: %s", rconn_error(q->c));
    for (size_t k = 0; k < ncand && rc == 0; k++) {
        redisReply *r = NULL;
        if (rconn_get_reply(q->c, &r) != 0) {
            rc = fail(q, "queue reap: %s", rconn_error(q->c));
            break;
        }
        cand[k].dead = r->type == REDIS_REPLY_INTEGER && r->integer == 0;
        freeReplyObject(r);
    }
    for (size_t k = 0; k < ncand && rc == 0; k++) {
        if (!cand[k].dead)
            continue;
        qshard *sh = &q->sh[cand[k].s];
        const char *cid = mem[cand[k].s]->element[cand[k].i]->str;
        long long n = reap_one(q, sh, cid, false);
        if (n == -1) {
            rc = -1;
            break;
        }
        if (n >= 0) {
            total += n;
            log_warn("queue.reaped", "queue=%s consumer=%s jobs=%lld shard=%s", q->name, cid, n,
                     sh->base);
        }
    }
    free(cand);
    free_replies(mem, nsh);
    return rc != 0 ? -1 : (int)total;
}

int queue_release_claimed(queue *q)
{
    if (need_consumer(q) != 0)
        return -1;
    long long total = 0;
    for (int s = 0; s < q->nsh; s++) {
        long long n = reap_one(q, &q->sh[s], q->consumer, true);
        if (n < 0)
            return -1;
        total += n;
    }
    return (int)total;
}

int queue_maintain(queue *q)
{
    int64_t now = time_mono_ms();
    if (now < q->next_maintain_ms)
        return 0;
    q->next_maintain_ms = now + q->o.reap_interval_ms;
    if (q->nsh > q->npush)
        q->sweep_old = true;
    if (q->consumer[0] && queue_heartbeat(q) < 0)
        return -1;
    if (queue_promote_due(q) < 0)
        return -1;
    if (queue_reap(q) < 0)
        return -1;
    return 0;
}

/* ---- Inspection and operators ------------------------------------------------------------ */

/* Add shard k's depths and counters to out (and its acked items of the last minute to
 * *rate_sum). 0 or -1 with err. */
static int stats_shard(rconn *c, const qshard *k, queue_stats *out, long long *rate_sum, char *err,
                       size_t errlen)
{
    int rc = -1;
    redisReply *r = NULL, *members = NULL;
    long long slot = time_now_ms() / 10000;
    char rk[6][300];
    int ok = rconn_append(c, "LLEN %s", k->k_ready) == 0 &&
             rconn_append(c, "ZCARD %s", k->k_delayed) == 0 &&
             rconn_append(c, "LLEN %s", k->k_dead) == 0 &&
             rconn_append(c, "HGETALL %s", k->k_stats) == 0 &&
             rconn_append(c, "SMEMBERS %s", k->k_consumers) == 0;
    for (int i = 0; ok && i < 6; i++) {
        snprintf(rk[i], sizeof rk[i], "%srate:%lld", k->base, slot - i);
        ok = rconn_append(c, "GET %s", rk[i]) == 0;
    }
    if (!ok) {
        snprintf(err, errlen, "redis: %s", rconn_error(c));
        goto out;
    }
    for (int i = 0; i < 11; i++) {
        if (rconn_get_reply(c, &r) != 0) {
            snprintf(err, errlen, "redis: %s", rconn_error(c));
            goto out;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "redis: %s", r->str);
            freeReplyObject(r);
            r = NULL;
            /* drain the rest so the connection stays usable */
            for (int j = i + 1; j < 11; j++)
                if (rconn_get_reply(c, &r) == 0)
                    freeReplyObject(r);
            r = NULL;
            goto out;
        }
        switch (i) {
        case 0:
            out->ready += r->integer;
            break;
        case 1:
            out->delayed += r->integer;
            break;
        case 2:
            out->dead += r->integer;
            break;
        case 3:
            for (size_t e = 0; e + 1 < r->elements; e += 2) {
                const char *f = r->element[e]->str;
                long long v = strtoll(r->element[e + 1]->str, NULL, 10);
                if (!strcmp(f, "pushed"))
                    out->pushed += v;
                else if (!strcmp(f, "acked"))
                    out->acked += v;
                else if (!strcmp(f, "items"))
                    out->items += v;
                else if (!strcmp(f, "retried"))
                    out->retried += v;
                else if (!strcmp(f, "dead"))
                    out->dead_total += v;
                else if (!strcmp(f, "requeued"))
                    out->requeued += v;
                else if (!strcmp(f, "reaped"))
                    out->reaped += v;
            }
            break;
        case 4:
            members = r;
            r = NULL;
            break;
        default:
            if (r->type == REDIS_REPLY_STRING)
                *rate_sum += strtoll(r->str, NULL, 10);
            break;
        }
        if (r)
            freeReplyObject(r);
        r = NULL;
    }
    /* A consumer is registered in every shard: count it once (the first shard's set). */
    if (out->consumers == 0)
        out->consumers = members ? (long long)members->elements : 0;
    bool count_alive = out->alive == 0;
    for (size_t i = 0; members && i < members->elements; i++) {
        const char *cid = members->element[i]->str;
        redisReply *a = rconn_command(c, "LLEN %sprocessing:%s", k->base, cid);
        redisReply *b = rconn_command(c, "EXISTS %shb:%s", k->base, cid);
        if (a && a->type == REDIS_REPLY_INTEGER)
            out->inflight += a->integer;
        if (b && b->type == REDIS_REPLY_INTEGER && b->integer && count_alive)
            out->alive++;
        if (a)
            freeReplyObject(a);
        if (b)
            freeReplyObject(b);
    }
    rc = 0;
out:
    if (members)
        freeReplyObject(members);
    return rc;
}

int queue_stats_get(rconn *c, const char *prefix, const char *name, queue_stats *out, char *err,
                    size_t errlen)
{
    memset(out, 0, sizeof *out);
    queue *q = queue_open(c, prefix, name, NULL, NULL, err, errlen);
    if (!q)
        return -1;
    snprintf(out->name, sizeof out->name, "%s", name);
    long long rate_sum = 0;
    int rc = 0;
    for (int s = 0; s < q->nsh && rc == 0; s++)
        rc = stats_shard(c, &q->sh[s], out, &rate_sum, err, errlen);
    /* The current slot is partial: divide by the time actually covered. */
    double covered = 50.0 + (double)(time_now_ms() % 10000) / 1000.0;
    out->rate_1m = (double)rate_sum / covered;
    queue_close(q);
    return rc;
}

static long long dlq_len_shard(queue *q, const qshard *k)
{
    redisReply *r = rconn_command(q->c, "LLEN %s", k->k_dead);
    if (check_reply(q, r, "dlq") != 0)
        return -1;
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

long long queue_dlq_len(queue *q)
{
    long long total = 0;
    for (int s = 0; s < q->nsh; s++) {
        long long n = dlq_len_shard(q, &q->sh[s]);
        if (n < 0)
            return -1;
        total += n;
    }
    return total;
}

/* Map a dead-letter index over all shards (shard 0's list, then shard 1's...) to a shard and
 * an index inside it. 0 found, 1 past the end, -1 on error. */
static int dlq_locate(queue *q, long index, int *shard, long *local)
{
    for (int s = 0; s < q->nsh; s++) {
        long long n = q->nsh == 1 ? index + 1 : dlq_len_shard(q, &q->sh[s]);
        if (n < 0)
            return -1;
        if (index < n) {
            *shard = s;
            *local = index;
            return 0;
        }
        index -= (long)n;
    }
    return 1;
}

int queue_dlq_list(queue *q, long start, long count, char ***out)
{
    *out = NULL;
    if (start < 0 || count <= 0)
        return 0;
    char **a = calloc((size_t)count + 1, sizeof *a);
    if (!a)
        return fail(q, "out of memory");
    size_t n = 0;
    long skip = start;
    for (int s = 0; s < q->nsh && (long)n < count; s++) {
        long want = count - (long)n;
        redisReply *r =
            rconn_command(q->c, "LRANGE %s %ld %ld", q->sh[s].k_dead, skip, skip + want - 1);
        if (check_reply(q, r, "dlq list") != 0) {
            for (size_t i = 0; i < n; i++)
                free(a[i]);
            free(a);
            return -1;
        }
        for (size_t i = 0; i < r->elements && (long)n < count; i++) {
            if (r->element[i]->type != REDIS_REPLY_STRING)
                continue;
            a[n] = strndup(r->element[i]->str, r->element[i]->len);
            if (!a[n])
                break;
            n++;
        }
        freeReplyObject(r);
        if (q->nsh > 1 && s + 1 < q->nsh) {
            /* the next shard starts where this one ended: skip what lay before start */
            long long len = dlq_len_shard(q, &q->sh[s]);
            skip = len < 0 ? 0 : (skip > len ? skip - (long)len : 0);
        }
    }
    *out = a;
    return (int)n;
}

/* The job to requeue from a dead-letter entry (malloc'd), or NULL if the entry is unusable. */
static char *requeue_payload(const char *entry, size_t len)
{
    json_error_t jerr;
    json_t *e = json_loadb(entry, len, 0, &jerr);
    json_t *job = json_object_get(e, "job");
    char *out = NULL;
    if (json_is_object(job))
        out = json_dumps(job, JSON_COMPACT);
    else if (json_is_string(job))
        out = strndup(json_string_value(job), json_string_length(job));
    json_decref(e);
    return out;
}

/* Take the entry at index from shard k's dead list (requeue or delete). 1 taken, 0 none, -1
 * error. */
static int dlq_take(queue *q, const qshard *k, long index, bool requeue)
{
    redisReply *r = rconn_command(q->c, "LINDEX %s %ld", k->k_dead, index);
    if (check_reply(q, r, "dlq") != 0)
        return -1;
    if (r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return 0;
    }
    char *job = NULL;
    if (requeue) {
        job = requeue_payload(r->str, r->len);
        if (!job) {
            freeReplyObject(r);
            return fail(q, "dlq: entry %ld has no job to requeue", index);
        }
    }
    const char *keys[] = {k->k_dead, k->k_ready, k->k_stats};
    const char *args[] = {r->str, job ? job : ""};
    size_t lens[] = {r->len, job ? strlen(job) : 0};
    redisReply *m = eval(q, LUA_DLQ_TAKE, 3, keys, 2, args, lens);
    freeReplyObject(r);
    free(job);
    if (!m)
        return -1;
    int taken = m->type == REDIS_REPLY_INTEGER && m->integer == 1;
    freeReplyObject(m);
    return taken;
}

static long long dlq_take_many(queue *q, long index, bool requeue)
{
    if (index >= 0) {
        int s;
        long local;
        int f = dlq_locate(q, index, &s, &local);
        if (f != 0)
            return f < 0 ? -1 : 0;
        int t = dlq_take(q, &q->sh[s], local, requeue);
        return t < 0 ? -1 : t;
    }
    /* All: oldest first (from the tail), so requeued jobs keep their order. */
    long long n = 0;
    for (int s = 0; s < q->nsh; s++)
        for (;;) {
            int t = dlq_take(q, &q->sh[s], -1, requeue);
            if (t < 0)
                return -1;
            if (t == 0)
                break;
            n++;
        }
    return n;
}

long long queue_dlq_requeue(queue *q, long index)
{
    return dlq_take_many(q, index, true);
}

long long queue_dlq_purge(queue *q, long index)
{
    if (index < 0) {
        static const char lua[] = "local n = redis.call('LLEN', KEYS[1])\n"
                                  "redis.call('DEL', KEYS[1])\nreturn n\n";
        long long n = 0;
        for (int s = 0; s < q->nsh; s++) {
            const char *keys[] = {q->sh[s].k_dead};
            redisReply *r = eval(q, lua, 1, keys, 0, NULL, NULL);
            if (!r)
                return -1;
            n += r->integer;
            freeReplyObject(r);
        }
        return n;
    }
    return dlq_take_many(q, index, false);
}

/* ---- the list of queues ------------------------------------------------------------------ */

const char *const queue_names[QUEUE_COUNT] = {
    QUEUE_CAMPAIGNS,         QUEUE_SENDS,          QUEUE_RECEIPTS, QUEUE_AI,      QUEUE_PRIORITY,
    QUEUE_PRIORITY_RECEIPTS, QUEUE_RECEIPT_EVENTS, QUEUE_EVENTS,   QUEUE_WEBHOOKS};

bool queue_name_known(const char *name)
{
    for (size_t i = 0; name && i < QUEUE_COUNT; i++)
        if (strcmp(name, queue_names[i]) == 0)
            return true;
    return false;
}
