/*
 * campctl: see campctl.h for the keys and the protocol.
 *
 * Every multi-key step is one Lua script (EVAL) over the keys of one key set, so one slot: the
 * unsharded set (tag {sends}), or with queue.shards = S > 1 one of the S shard sets ({sends:K},
 * the tag of the sends shard whose lists it works on). A flag check and the move it decides are
 * atomic with respect to the API's pause/resume/cancel on that set. A move over several sets
 * runs one script per set, in the order campctl.h gives (shards first when a flag is set, the
 * unsharded set first when it is cleared).
 */
#include "campctl.h"

#include "jobs.h"
#include "jscan.h"
#include "queue.h"
#include "timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEYMAX 300

/* A key of the unsharded set: P{sends}:SUFFIXARG. */
static void key(char *buf, const char *prefix, const char *suffix, const char *arg)
{
    snprintf(buf, KEYMAX, "%s{sends}:%s%s", prefix, suffix, arg ? arg : "");
}

/* The shard sets besides the unsharded one: S with queue.shards = S > 1, else 0. */
static int nshards(void)
{
    int s = queue_shards_for(QUEUE_SENDS, NULL);
    return s > 1 ? s : 0;
}

/* A key of shard set `shard` (-1: the unsharded set): P{sends:K}:SUFFIXARG. */
static void skey(char *buf, const char *prefix, int shard, const char *suffix, const char *arg)
{
    if (shard < 0)
        key(buf, prefix, suffix, arg);
    else
        snprintf(buf, KEYMAX, "%s{sends:%d}:%s%s", prefix, shard, suffix, arg ? arg : "");
}

static void set_err(char *err, size_t errlen, rconn *c, redisReply *r)
{
    if (!err || !errlen)
        return;
    if (r && r->type == REDIS_REPLY_ERROR)
        snprintf(err, errlen, "redis: %s", r->str);
    else
        snprintf(err, errlen, "redis: %s", rconn_error(c));
}

/* Run script (EVALSHA, EVAL where the server lacks it: rconn_eval_argv) with nkeys keys and
 * nargs args (NUL-terminated unless lens). NULL on error. */
static redisReply *eval(rconn *c, const char *script, int nkeys, const char *const *keys, int nargs,
                        const char *const *args, const size_t *lens, char *err, size_t errlen)
{
    enum { MAXARGV = 80 };
    const char *argv_s[MAXARGV], **argv = argv_s;
    size_t al_s[MAXARGV], *al = al_s;
    char nk[16];
    int n = 0;
    if (3 + nkeys + nargs > MAXARGV) { /* the repair's id lists */
        argv = malloc((size_t)(3 + nkeys + nargs) * sizeof *argv);
        al = malloc((size_t)(3 + nkeys + nargs) * sizeof *al);
        if (!argv || !al) {
            free(argv);
            free(al);
            if (err)
                snprintf(err, errlen, "out of memory");
            return NULL;
        }
    }
    snprintf(nk, sizeof nk, "%d", nkeys);
    argv[n] = "EVAL";
    al[n++] = 4;
    argv[n] = script;
    al[n++] = strlen(script);
    argv[n] = nk;
    al[n++] = strlen(nk);
    for (int i = 0; i < nkeys; i++) {
        argv[n] = keys[i];
        al[n++] = strlen(keys[i]);
    }
    for (int i = 0; i < nargs; i++) {
        argv[n] = args[i];
        al[n++] = lens ? lens[i] : strlen(args[i]);
    }
    redisReply *r = rconn_eval_argv(c, n, argv, al);
    if (argv != argv_s) {
        free(argv);
        free(al);
    }
    if (!r || r->type == REDIS_REPLY_ERROR) {
        set_err(err, errlen, c, r);
        if (r)
            freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* An integer reply's value into *out (if out); frees r. 0 or -1. */
static int take_int(rconn *c, redisReply *r, long long *out, char *err, size_t errlen)
{
    if (!r)
        return -1;
    int rc = 0;
    if (r->type == REDIS_REPLY_INTEGER) {
        if (out)
            *out = r->integer;
    } else {
        set_err(err, errlen, c, r);
        rc = -1;
    }
    freeReplyObject(r);
    return rc;
}

/* ---- the API's moves -------------------------------------------------------------------- */

/* The key sets in the order a move that sets a flag visits them: every shard set (0 .. S-1),
 * then the unsharded set (-1), which the sends consumers' view and the fan-out read. A
 * consumer only tries to hold a job of a campaign its view names, and the hold checks the
 * shard set's own flags: a flag is set in the shard sets before the view can see it, and
 * (set_clear_order) cleared from the view before the shard sets. */
static int set_set_order(int k, int n)
{
    return k < n ? k : -1;
}

static int set_clear_order(int k)
{
    return k - 1;
}

/* KEYS: a flag set, the set's epoch. ARGV: campaign. Returns the new epoch. */
static const char LUA_PAUSE[] = "redis.call('SADD', KEYS[1], ARGV[1])\n"
                                "return redis.call('INCR', KEYS[2])\n";

int campctl_pause(rconn *c, const char *prefix, const char *chex, long long *epoch, char *err,
                  size_t errlen)
{
    int n = nshards();
    for (int k = 0; k <= n; k++) {
        int set = set_set_order(k, n);
        char k1[KEYMAX], k2[KEYMAX];
        skey(k1, prefix, set, "paused", NULL);
        skey(k2, prefix, set, "ctl-epoch", NULL);
        const char *keys[] = {k1, k2}, *args[] = {chex};
        if (take_int(c, eval(c, LUA_PAUSE, 2, keys, 1, args, NULL, err, errlen),
                     set < 0 ? epoch : NULL, err, errlen) != 0)
            return -1;
    }
    return 0;
}

/* KEYS: cancelled, paused, held, epoch. ARGV: campaign. Returns {epoch, dropped}. */
static const char LUA_CANCEL[] = "redis.call('SADD', KEYS[1], ARGV[1])\n"
                                 "redis.call('SREM', KEYS[2], ARGV[1])\n"
                                 "local n = redis.call('LLEN', KEYS[3])\n"
                                 "redis.call('DEL', KEYS[3])\n"
                                 "return {redis.call('INCR', KEYS[4]), n}\n";

int campctl_cancel(rconn *c, const char *prefix, const char *chex, long long *epoch,
                   long long *dropped, char *err, size_t errlen)
{
    int n = nshards();
    long long total = 0;
    for (int k = 0; k <= n; k++) {
        int set = set_set_order(k, n);
        char k1[KEYMAX], k2[KEYMAX], k3[KEYMAX], k4[KEYMAX];
        skey(k1, prefix, set, "cancelled", NULL);
        skey(k2, prefix, set, "paused", NULL);
        skey(k3, prefix, set, "held:", chex);
        skey(k4, prefix, set, "ctl-epoch", NULL);
        const char *keys[] = {k1, k2, k3, k4}, *args[] = {chex};
        redisReply *r = eval(c, LUA_CANCEL, 4, keys, 1, args, NULL, err, errlen);
        if (!r)
            return -1;
        bool ok = r->type == REDIS_REPLY_ARRAY && r->elements == 2;
        if (ok) {
            if (set < 0)
                *epoch = r->element[0]->integer;
            total += r->element[1]->integer;
        } else {
            set_err(err, errlen, c, r);
        }
        freeReplyObject(r);
        if (!ok)
            return -1;
    }
    if (dropped)
        *dropped = total;
    return 0;
}

/* KEYS: paused, held, ready, epoch. ARGV: campaign. Returns the number of jobs moved back. */
static const char LUA_RESUME[] =
    "redis.call('SREM', KEYS[1], ARGV[1])\n"
    "redis.call('INCR', KEYS[4])\n"
    "local n = 0\n"
    "while redis.call('RPOPLPUSH', KEYS[2], KEYS[3]) do n = n + 1 end\n"
    "return n\n";

int campctl_resume(rconn *c, const char *prefix, const char *chex, long long *moved, char *err,
                   size_t errlen)
{
    int n = nshards();
    long long total = 0;
    for (int k = 0; k <= n; k++) {
        int set = set_clear_order(k);
        char k1[KEYMAX], k2[KEYMAX], k3[KEYMAX], k4[KEYMAX];
        long long m = 0;
        skey(k1, prefix, set, "paused", NULL);
        skey(k2, prefix, set, "held:", chex);
        skey(k3, prefix, set, "ready", NULL);
        skey(k4, prefix, set, "ctl-epoch", NULL);
        const char *keys[] = {k1, k2, k3, k4}, *args[] = {chex};
        if (take_int(c, eval(c, LUA_RESUME, 4, keys, 1, args, NULL, err, errlen), &m, err,
                     errlen) != 0)
            return -1;
        total += m;
    }
    if (moved)
        *moved = total;
    return 0;
}

/* KEYS: set, epoch. ARGV: campaign. */
static const char LUA_FLAG_SET[] = "if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then\n"
                                   "  redis.call('INCR', KEYS[2])\n"
                                   "  return 1\n"
                                   "end\n"
                                   "return 0\n";

int campctl_flag_set(rconn *c, const char *prefix, const char *chex, int flag, char *err,
                     size_t errlen)
{
    int n = nshards();
    for (int k = 0; k <= n; k++) {
        int set = set_set_order(k, n);
        char k1[KEYMAX], k2[KEYMAX];
        skey(k1, prefix, set, flag == CAMPCTL_CANCELLED ? "cancelled" : "paused", NULL);
        skey(k2, prefix, set, "ctl-epoch", NULL);
        const char *keys[] = {k1, k2}, *args[] = {chex};
        if (take_int(c, eval(c, LUA_FLAG_SET, 2, keys, 1, args, NULL, err, errlen), NULL, err,
                     errlen) != 0)
            return -1;
    }
    return 0;
}

/* GET of an epoch key: 0 when absent. 0 or -1. */
static int get_epoch(rconn *c, const char *k, long long *out)
{
    redisReply *r = rconn_command(c, "GET %s", k);
    if (!r)
        return -1;
    int rc = 0;
    if (r->type == REDIS_REPLY_NIL)
        *out = 0;
    else if (r->type == REDIS_REPLY_STRING)
        *out = strtoll(r->str, NULL, 10);
    else
        rc = -1;
    freeReplyObject(r);
    return rc;
}

int campctl_repair_mark(rconn *c, const char *prefix, campctl_mark *m)
{
    int n = nshards();
    m->nsets = 0;
    for (int k = 0; k <= n; k++) {
        char kk[KEYMAX];
        skey(kk, prefix, set_set_order(k, n), "ctl-epoch", NULL);
        if (get_epoch(c, kk, &m->epoch[k]) != 0)
            return -1;
    }
    m->nsets = n + 1;
    return 0;
}

/* The repair's two scripts. Each checks that its set's epoch is still the one the run expects
 * and answers {changes, epoch}: the epoch after its own INCR (a script that changed something
 * bumps it, so sends consumers re-read the sets), which the run expects next; {-1, 0} when the
 * epoch moved (someone else's move: the set waits for the next round). */

/* KEYS: epoch, a flag set. ARGV: expected epoch, ids. Adds the missing ids. */
static const char LUA_REPAIR_ADD[] =
    "if tonumber(redis.call('GET', KEYS[1]) or '0') ~= tonumber(ARGV[1]) then return {-1, 0} end\n"
    "local ch = 0\n"
    "for i = 2, #ARGV do ch = ch + redis.call('SADD', KEYS[2], ARGV[i]) end\n"
    "if ch > 0 then return {ch, redis.call('INCR', KEYS[1])} end\n"
    "return {0, tonumber(ARGV[1])}\n";

/* KEYS: epoch, paused, ready. ARGV: expected epoch, held-key prefix, ids MongoDB does not say
 * are PAUSED. Drops their paused flags and moves their held jobs back to ready. */
static const char LUA_REPAIR_DROP[] =
    "if tonumber(redis.call('GET', KEYS[1]) or '0') ~= tonumber(ARGV[1]) then return {-1, 0} end\n"
    "local ch = 0\n"
    "for i = 3, #ARGV do\n"
    "  if redis.call('SREM', KEYS[2], ARGV[i]) == 1 then\n"
    "    ch = ch + 1\n"
    "    while redis.call('RPOPLPUSH', ARGV[2] .. ARGV[i], KEYS[3]) do ch = ch + 1 end\n"
    "  end\n"
    "end\n"
    "if ch > 0 then return {ch, redis.call('INCR', KEYS[1])} end\n"
    "return {0, tonumber(ARGV[1])}\n";

/* Run one of the repair scripts on set index k (its epoch in r->mark.epoch[k]); args[0] is
 * filled here. Updates the expected epoch (-1 when the guard failed) and r->changes. 0 or -1. */
static int repair_eval(rconn *c, campctl_repair_run *r, int k, const char *script, int nkeys,
                       const char *const *keys, int nargs, const char **args)
{
    char ep[32];
    snprintf(ep, sizeof ep, "%lld", r->mark.epoch[k]);
    args[0] = ep;
    redisReply *rep = eval(c, script, nkeys, keys, nargs, args, NULL, NULL, 0);
    if (!rep)
        return -1;
    int rc = -1;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER &&
        rep->element[1]->type == REDIS_REPLY_INTEGER) {
        long long ch = rep->element[0]->integer;
        r->mark.epoch[k] = ch < 0 ? -1 : rep->element[1]->integer;
        if (ch > 0)
            r->changes += (int)ch;
        rc = 0;
    }
    freeReplyObject(rep);
    return rc;
}

int campctl_repair_begin(rconn *c, const char *prefix, campctl_repair_run *r)
{
    memset(r, 0, sizeof *r);
    return campctl_repair_mark(c, prefix, &r->mark);
}

void campctl_repair_release(campctl_repair_run *r)
{
    if (!r)
        return;
    free(r->paused);
    r->paused = NULL;
    r->npaused = r->cap = 0;
}

/* Keep a PAUSED id for the drop. 0, or -1 out of memory; beyond CAMPCTL_REPAIR_PAUSED_MAX
 * ids the list stops and r->overflow makes the run skip the drop. */
static int keep_paused(campctl_repair_run *r, const char *id)
{
    if (r->overflow)
        return 0;
    if (r->npaused == r->cap) {
        if (r->cap == CAMPCTL_REPAIR_PAUSED_MAX) {
            r->overflow = true;
            return 0;
        }
        size_t cap = r->cap ? 2 * r->cap : 1024;
        if (cap > CAMPCTL_REPAIR_PAUSED_MAX)
            cap = CAMPCTL_REPAIR_PAUSED_MAX;
        char(*p)[25] = realloc(r->paused, cap * sizeof *p);
        if (!p)
            return -1;
        r->paused = p;
        r->cap = cap;
    }
    memcpy(r->paused[r->npaused], id, 24);
    r->paused[r->npaused++][24] = '\0';
    return 0;
}

int campctl_repair_add(rconn *c, const char *prefix, campctl_repair_run *r, int flag,
                       const char *const *ids, size_t n)
{
    int ns = nshards();
    if (r->mark.nsets != ns + 1 || n > CAMPCTL_REPAIR_CHUNK)
        return -1; /* queue.shards cannot change inside a process; a bad call */
    if (n == 0)
        return 0;
    const char *args[1 + CAMPCTL_REPAIR_CHUNK];
    for (size_t i = 0; i < n; i++) {
        if (strlen(ids[i]) != 24)
            return -1;
        if (flag == CAMPCTL_PAUSED && keep_paused(r, ids[i]) != 0)
            return -1;
        args[1 + i] = ids[i];
    }
    /* Shards first: a flag MongoDB says is missing reaches the view last. */
    for (int k = 0; k <= ns; k++) {
        if (r->mark.epoch[k] < 0)
            continue;
        int set = set_set_order(k, ns);
        char k1[KEYMAX], k2[KEYMAX];
        skey(k1, prefix, set, "ctl-epoch", NULL);
        skey(k2, prefix, set, flag == CAMPCTL_CANCELLED ? "cancelled" : "paused", NULL);
        const char *keys[] = {k1, k2};
        if (repair_eval(c, r, k, LUA_REPAIR_ADD, 2, keys, 1 + (int)n, args) != 0)
            return -1;
    }
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, 24);
}

/* Drop, in set index k, the members of one SSCAN page MongoDB did not confirm. 0 or -1. */
static int drop_unconfirmed(rconn *c, campctl_repair_run *r, int k, const char *const *keys,
                            const char *held, const redisReply *page)
{
    const char *args[2 + CAMPCTL_REPAIR_CHUNK];
    int n = 0;
    args[1] = held;
    for (size_t i = 0; i <= page->elements; i++) {
        const redisReply *e = i < page->elements ? page->element[i] : NULL;
        bool last = i == page->elements;
        if (e && e->type == REDIS_REPLY_STRING &&
            !(e->len == 24 && r->npaused > 0 &&
              bsearch(e->str, r->paused, r->npaused, sizeof *r->paused, cmp_id)))
            args[2 + n++] = e->str;
        if (n > 0 && (n == CAMPCTL_REPAIR_CHUNK || last)) {
            if (r->mark.epoch[k] < 0)
                return 0;
            if (repair_eval(c, r, k, LUA_REPAIR_DROP, 3, keys, 2 + n, args) != 0)
                return -1;
            n = 0;
        }
    }
    return 0;
}

int campctl_repair_finish(rconn *c, const char *prefix, campctl_repair_run *r)
{
    int ns = nshards();
    if (r->mark.nsets != ns + 1 || r->overflow)
        return -1;
    if (r->npaused > 1)
        qsort(r->paused, r->npaused, sizeof *r->paused, cmp_id);
    /* The unsharded set first, as a resume clears it: the view stops naming a campaign before
     * any shard set does. */
    for (int i = 0; i <= ns; i++) {
        int set = set_clear_order(i), k = set < 0 ? ns : set; /* k: index in the mark */
        char k1[KEYMAX], k2[KEYMAX], k3[KEYMAX], kh[KEYMAX], cur[32] = "0";
        skey(k1, prefix, set, "ctl-epoch", NULL);
        skey(k2, prefix, set, "paused", NULL);
        skey(k3, prefix, set, "ready", NULL);
        skey(kh, prefix, set, "held:", NULL);
        const char *keys[] = {k1, k2, k3};
        /* SSCAN returns every member present for the whole scan at least once; the set cannot
         * change without moving the epoch, which the drop script checks. */
        do {
            if (r->mark.epoch[k] < 0)
                break;
            redisReply *p = rconn_command(c, "SSCAN %s %s COUNT 512", k2, cur);
            bool ok = p && p->type == REDIS_REPLY_ARRAY && p->elements == 2 &&
                      p->element[0]->type == REDIS_REPLY_STRING &&
                      p->element[1]->type == REDIS_REPLY_ARRAY;
            if (ok) {
                snprintf(cur, sizeof cur, "%s", p->element[0]->str);
                ok = drop_unconfirmed(c, r, k, keys, kh, p->element[1]) == 0;
            }
            if (p)
                freeReplyObject(p);
            if (!ok)
                return -1;
        } while (strcmp(cur, "0") != 0);
    }
    return r->changes;
}

int campctl_repair(rconn *c, const char *prefix, const campctl_mark *m, const char *const *paused,
                   size_t npaused, const char *const *cancelled, size_t ncancelled)
{
    campctl_repair_run r;
    memset(&r, 0, sizeof r);
    r.mark = *m;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < npaused; i += CAMPCTL_REPAIR_CHUNK) {
        size_t n = npaused - i < CAMPCTL_REPAIR_CHUNK ? npaused - i : CAMPCTL_REPAIR_CHUNK;
        rc = campctl_repair_add(c, prefix, &r, CAMPCTL_PAUSED, paused + i, n);
    }
    for (size_t i = 0; rc == 0 && i < ncancelled; i += CAMPCTL_REPAIR_CHUNK) {
        size_t n = ncancelled - i < CAMPCTL_REPAIR_CHUNK ? ncancelled - i : CAMPCTL_REPAIR_CHUNK;
        rc = campctl_repair_add(c, prefix, &r, CAMPCTL_CANCELLED, cancelled + i, n);
    }
    if (rc == 0)
        rc = campctl_repair_finish(c, prefix, &r);
    campctl_repair_release(&r);
    return rc;
}

/* KEYS: consumers. ARGV: hb prefix, ack prefix, epoch. Returns "" when every live consumer
 * acked the epoch, else the id of one that did not. */
static const char LUA_ACKED[] = "for _, c in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
                                "  if redis.call('EXISTS', ARGV[1] .. c) == 1 then\n"
                                "    local a = tonumber(redis.call('GET', ARGV[2] .. c) or '0')\n"
                                "    if a < tonumber(ARGV[3]) then return c end\n"
                                "  end\n"
                                "end\n"
                                "return ''\n";

int campctl_wait(rconn *c, const char *prefix, const char *chex, long long epoch, int timeout_ms,
                 char *err, size_t errlen)
{
    char kc[KEYMAX], hb[KEYMAX], ack[KEYMAX], lease[KEYMAX], ep[32];
    key(kc, prefix, "consumers", NULL);
    key(hb, prefix, "hb:", NULL);
    key(ack, prefix, "ctl-ack:", NULL);
    key(lease, prefix, "fanout:", chex);
    snprintf(ep, sizeof ep, "%lld", epoch);
    const char *keys[] = {kc}, *args[] = {hb, ack, ep};
    int64_t deadline = time_mono_ms() + timeout_ms;
    for (;;) {
        redisReply *r = rconn_command(c, "EXISTS %s", lease);
        long long busy = 0;
        if (take_int(c, r, &busy, err, errlen) != 0)
            return -1;
        char who[200] = "";
        if (busy) {
            snprintf(who, sizeof who, "the fan-out of the campaign");
        } else {
            r = eval(c, LUA_ACKED, 1, keys, 3, args, NULL, err, errlen);
            if (!r)
                return -1;
            if (r->type == REDIS_REPLY_STRING && r->len > 0)
                snprintf(who, sizeof who, "sends consumer %s", r->str);
            freeReplyObject(r);
        }
        if (!who[0])
            return 0;
        if (time_mono_ms() >= deadline) {
            if (err)
                snprintf(err, errlen, "%s has not acknowledged yet", who);
            return 1;
        }
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* KEYS: ready, delayed, consumers. ARGV: needle, processing-key prefix, "1" to read ready and
 * delayed too. Returns the jobs that contain the needle. */
static const char LUA_SNAPSHOT[] =
    "local out = {}\n"
    "local function scan(l)\n"
    "  for _, j in ipairs(l) do\n"
    "    if string.find(j, ARGV[1], 1, true) then out[#out + 1] = j end\n"
    "  end\n"
    "end\n"
    "if ARGV[3] == '1' then\n"
    "  scan(redis.call('LRANGE', KEYS[1], 0, -1))\n"
    "  scan(redis.call('ZRANGE', KEYS[2], 0, -1))\n"
    "end\n"
    "for _, c in ipairs(redis.call('SMEMBERS', KEYS[3])) do\n"
    "  scan(redis.call('LRANGE', ARGV[2] .. c, 0, -1))\n"
    "end\n"
    "return out\n";

static redisReply *snapshot_queue(rconn *c, const char *prefix, const char *qname, const char *chex,
                                  bool with_ready, char *err, size_t errlen)
{
    char kr[KEYMAX], kd[KEYMAX], kc[KEYMAX], kp[KEYMAX];
    snprintf(kr, sizeof kr, "%s{%s}:ready", prefix, qname);
    snprintf(kd, sizeof kd, "%s{%s}:delayed", prefix, qname);
    snprintf(kc, sizeof kc, "%s{%s}:consumers", prefix, qname);
    snprintf(kp, sizeof kp, "%s{%s}:processing:", prefix, qname);
    const char *keys[] = {kr, kd, kc}, *args[] = {chex, kp, with_ready ? "1" : "0"};
    return eval(c, LUA_SNAPSHOT, 3, keys, 3, args, NULL, err, errlen);
}

/* Append the elements of `more` to `into` (taking them over) and free `more`. -1 out of
 * memory (both left as they were, `more` freed). */
static int merge_into(redisReply *into, redisReply *more)
{
    if (more->elements) {
        redisReply **e =
            realloc(into->element, (into->elements + more->elements) * sizeof *into->element);
        if (!e) {
            freeReplyObject(more);
            return -1;
        }
        memcpy(e + into->elements, more->element, more->elements * sizeof *e);
        into->element = e;
        into->elements += more->elements;
        more->elements = 0;
    }
    freeReplyObject(more);
    return 0;
}

/* snapshot_queue over every shard of a sharded queue (queue.shards): one script per shard,
 * each on its own slot, the unsharded keys first; one array of all. */
static redisReply *snapshot_all(rconn *c, const char *prefix, const char *qname, const char *chex,
                                bool with_ready, char *err, size_t errlen)
{
    redisReply *all = snapshot_queue(c, prefix, qname, chex, with_ready, err, errlen);
    int shards = queue_shards_for(qname, NULL);
    for (int i = 0; all && shards > 1 && i < shards; i++) {
        char name[QUEUE_MAX_NAME + 8];
        snprintf(name, sizeof name, "%s:%d", qname, i);
        redisReply *r = snapshot_queue(c, prefix, name, chex, with_ready, err, errlen);
        if (!r || r->type != REDIS_REPLY_ARRAY || all->type != REDIS_REPLY_ARRAY ||
            merge_into(all, r) != 0) {
            if (r && r->type != REDIS_REPLY_ARRAY)
                freeReplyObject(r);
            freeReplyObject(all);
            all = NULL;
            if (errlen && !err[0])
                snprintf(err, errlen, "campctl snapshot of %s failed", name);
        }
    }
    return all;
}

int campctl_snapshot(rconn *c, const char *prefix, const char *chex, redisReply **receipts,
                     redisReply **sends, char *err, size_t errlen)
{
    /* Receipts first: a receipt job enters the receipts queue before the vendor acks the send
     * job it came from, so a log is in one snapshot or the other (or already final). With
     * shards this holds per receipt: all of the receipts shards are read before any sends
     * shard. */
    *receipts = snapshot_all(c, prefix, QUEUE_RECEIPTS, chex, true, err, errlen);
    *sends = *receipts ? snapshot_all(c, prefix, QUEUE_SENDS, chex, false, err, errlen) : NULL;
    if (*sends)
        return 0;
    if (*receipts)
        freeReplyObject(*receipts);
    *receipts = NULL;
    return -1;
}

void campctl_logs_release(campctl_logs *s)
{
    if (!s)
        return;
    free(s->a);
    s->a = NULL;
    s->n = s->cap = 0;
}

/* Append log id hex (ignored unless 24 hex). 0 or -1 (out of memory). */
static int logs_add(campctl_logs *s, const char *hex)
{
    if (strlen(hex) != 24 || !bson_oid_is_valid(hex, 24))
        return 0;
    if (s->n == s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 256;
        bson_oid_t *g = realloc(s->a, nc * sizeof *g);
        if (!g)
            return -1;
        s->a = g;
        s->cap = nc;
    }
    bson_oid_init_from_string(&s->a[s->n++], hex);
    return 0;
}

int campctl_at_vendor(rconn *c, const char *prefix, const char *chex, campctl_logs *out, char *err,
                      size_t errlen)
{
    redisReply *rr = NULL, *rs = NULL;
    if (campctl_snapshot(c, prefix, chex, &rr, &rs, err, errlen) != 0)
        return -1;
    jscan js = {0};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < rr->elements; i++) {
        const redisReply *j = rr->element[i];
        jobs_reader rd;
        char why[128];
        jobs_receipt r;
        if (jobs_receipts_open(&rd, &js, j->str, j->len, why, sizeof why) != 0)
            continue;
        int k;
        while ((k = jobs_receipts_next(&rd, &r, why, sizeof why)) != 0)
            if (k > 0 && !strcmp(r.campaign_id, chex) && logs_add(out, r.log_id) != 0)
                rc = -1;
    }
    for (size_t i = 0; rc == 0 && i < rs->elements; i++) {
        const redisReply *j = rs->element[i];
        jobs_reader rd;
        const char *why;
        jobs_send_in s;
        if (jobs_sends_open(&rd, &js, j->str, j->len, &why) != 0 && !rd.batch)
            continue;
        int k;
        while ((k = jobs_sends_next(&rd, &s, &why)) != 0)
            if (k > 0 && !strcmp(s.campaign_id, chex) && logs_add(out, s.log_id) != 0)
                rc = -1;
    }
    jscan_release(&js);
    freeReplyObject(rr);
    freeReplyObject(rs);
    if (rc != 0 && err)
        snprintf(err, errlen, "out of memory");
    return rc;
}

/* ---- the schedule ----------------------------------------------------------------------- */

static void sched_key(char *buf, const char *prefix)
{
    snprintf(buf, KEYMAX, "%s{campaigns}:scheduled", prefix);
}

int campctl_schedule_add(rconn *c, const char *prefix, const char *job, size_t len,
                         long long send_at, char mode)
{
    char k[KEYMAX], sc[32];
    sched_key(k, prefix);
    snprintf(sc, sizeof sc, "%lld", send_at);
    const char *argv[] = {"ZADD", k, mode == 'N' ? "NX" : "XX", "CH", sc, job};
    size_t lens[] = {4, strlen(k), 2, 2, strlen(sc), len};
    redisReply *r = mode ? rconn_command_argv(c, 6, argv, lens)
                         : rconn_command_argv(c, 4, (const char *[]){"ZADD", k, sc, job},
                                              (size_t[]){4, strlen(k), strlen(sc), len});
    if (!r || r->type != REDIS_REPLY_INTEGER) {
        if (r)
            freeReplyObject(r);
        return -1;
    }
    long long v = r->integer;
    freeReplyObject(r);
    if (mode == 'X' && v == 0) {
        /* XX CH answers 0 when the score did not change: was the member there at all? */
        r = rconn_command_argv(c, 3, (const char *[]){"ZSCORE", k, job},
                               (size_t[]){6, strlen(k), len});
        if (!r)
            return -1;
        v = r->type == REDIS_REPLY_STRING ? 1 : 0;
        freeReplyObject(r);
    }
    return v > 0 ? 1 : 0;
}

int campctl_schedule_remove(rconn *c, const char *prefix, const char *job, size_t len)
{
    char k[KEYMAX];
    sched_key(k, prefix);
    return take_int(
        c,
        rconn_command_argv(c, 3, (const char *[]){"ZREM", k, job}, (size_t[]){4, strlen(k), len}),
        NULL, NULL, 0);
}

/* KEYS: scheduled, campaigns ready. ARGV: now, expire_before. Returns {promoted, expired}. */
static const char LUA_PROMOTE[] =
    "local n = 0\n"
    "for _, j in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[2], ARGV[1], 'LIMIT', 0, 100)) "
    "do\n"
    "  if redis.call('ZREM', KEYS[1], j) == 1 then\n"
    "    redis.call('LPUSH', KEYS[2], j)\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return {n, redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2], 'LIMIT', 0, 100)}\n";

redisReply *campctl_schedule_promote(rconn *c, const char *prefix, long long now,
                                     long long expire_before, long long *promoted)
{
    char k1[KEYMAX], k2[KEYMAX], a1[32], a2[32];
    sched_key(k1, prefix);
    snprintf(k2, sizeof k2, "%s{campaigns}:ready", prefix);
    snprintf(a1, sizeof a1, "%lld", now);
    snprintf(a2, sizeof a2, "%lld", expire_before);
    const char *keys[] = {k1, k2}, *args[] = {a1, a2};
    redisReply *r = eval(c, LUA_PROMOTE, 2, keys, 2, args, NULL, NULL, 0);
    if (!r)
        return NULL;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[1]->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return NULL;
    }
    *promoted = r->element[0]->integer;
    /* Hand back the expired list alone. */
    redisReply *exp = r->element[1];
    r->element[1] = NULL;
    r->elements = 1;
    freeReplyObject(r);
    return exp;
}

/* ---- the fan-out ------------------------------------------------------------------------ */

/* KEYS: lease, paused, cancelled. ARGV: owner, ttl ms, campaign. */
static const char LUA_BEAT[] =
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "if redis.call('SISMEMBER', KEYS[3], ARGV[3]) == 1 then return 2 end\n"
    "if redis.call('SISMEMBER', KEYS[2], ARGV[3]) == 1 then return 1 end\n"
    "return 0\n";

int campctl_fanout_beat(rconn *c, const char *prefix, const char *chex, const char *owner,
                        int ttl_ms)
{
    char k1[KEYMAX], k2[KEYMAX], k3[KEYMAX], ttl[16];
    key(k1, prefix, "fanout:", chex);
    key(k2, prefix, "paused", NULL);
    key(k3, prefix, "cancelled", NULL);
    snprintf(ttl, sizeof ttl, "%d", ttl_ms > 0 ? ttl_ms : 1000);
    const char *keys[] = {k1, k2, k3}, *args[] = {owner, ttl, chex};
    long long v;
    if (take_int(c, eval(c, LUA_BEAT, 3, keys, 3, args, NULL, NULL, 0), &v, NULL, 0) != 0)
        return -1;
    return (int)v;
}

static const char LUA_END[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                              "  return redis.call('DEL', KEYS[1])\n"
                              "end\n"
                              "return 0\n";

int campctl_fanout_leased(rconn *c, const char *prefix, const char *chex)
{
    char k[KEYMAX];
    key(k, prefix, "fanout:", chex);
    long long n = 0;
    if (take_int(c, rconn_command(c, "EXISTS %s", k), &n, NULL, 0) != 0)
        return -1;
    return n > 0;
}

int campctl_fanout_end(rconn *c, const char *prefix, const char *chex, const char *owner)
{
    char k1[KEYMAX];
    key(k1, prefix, "fanout:", chex);
    const char *keys[] = {k1}, *args[] = {owner};
    return take_int(c, eval(c, LUA_END, 1, keys, 1, args, NULL, NULL, 0), NULL, NULL, 0);
}

/* ---- the sends consumer ------------------------------------------------------------------ */

int campctl_epoch(rconn *c, const char *prefix, long long *out)
{
    char k[KEYMAX];
    key(k, prefix, "ctl-epoch", NULL);
    return get_epoch(c, k, out);
}

int campctl_ack(rconn *c, const char *prefix, const char *cons, long long epoch)
{
    char k[KEYMAX];
    key(k, prefix, "ctl-ack:", cons);
    redisReply *r = rconn_command(c, "SET %s %lld", k, epoch);
    bool ok = r && r->type == REDIS_REPLY_STATUS;
    if (r)
        freeReplyObject(r);
    return ok ? 0 : -1;
}

void campctl_view_init(campctl_view *v)
{
    memset(v, 0, sizeof *v);
    v->epoch = -1;
}

void campctl_view_release(campctl_view *v)
{
    if (!v)
        return;
    free(v->paused);
    free(v->cancelled);
    campctl_view_init(v);
}

/* KEYS: epoch, paused, cancelled. ARGV: known epoch ("" forces a read). Returns {epoch} when
 * unchanged, else {epoch, paused members, cancelled members}. */
static const char LUA_SYNC[] = "local e = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
                               "if ARGV[1] ~= '' and tonumber(ARGV[1]) == e then return {e} end\n"
                               "return {e, redis.call('SMEMBERS', KEYS[2]),\n"
                               "        redis.call('SMEMBERS', KEYS[3])}\n";

/* Copy the 24-hex members of r into a fresh array. 0 or -1. */
static int copy_ids(const redisReply *r, char (**out)[25], size_t *n)
{
    char(*a)[25] = calloc(r->elements ? r->elements : 1, sizeof *a);
    if (!a)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING && r->element[i]->len == 24)
            memcpy(a[k++], r->element[i]->str, 25);
    free(*out);
    *out = a;
    *n = k;
    return 0;
}

int campctl_view_sync(rconn *c, const char *prefix, campctl_view *v)
{
    char k1[KEYMAX], k2[KEYMAX], k3[KEYMAX], known[32] = "";
    key(k1, prefix, "ctl-epoch", NULL);
    key(k2, prefix, "paused", NULL);
    key(k3, prefix, "cancelled", NULL);
    int64_t now = time_mono_ms();
    if (v->epoch >= 0 && now - v->synced_ms < 1000)
        snprintf(known, sizeof known, "%lld", v->epoch);
    const char *keys[] = {k1, k2, k3}, *args[] = {known};
    redisReply *r = eval(c, LUA_SYNC, 3, keys, 1, args, NULL, NULL, 0);
    if (!r)
        return -1;
    int rc = -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
        v->epoch = r->element[0]->integer;
        rc = 0;
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
               copy_ids(r->element[1], &v->paused, &v->npaused) == 0 &&
               copy_ids(r->element[2], &v->cancelled, &v->ncancelled) == 0) {
        v->epoch = r->element[0]->integer;
        v->synced_ms = now;
        rc = 0;
    }
    freeReplyObject(r);
    return rc;
}

int campctl_view_flag(const campctl_view *v, const char *chex)
{
    for (size_t i = 0; i < v->ncancelled; i++)
        if (!memcmp(v->cancelled[i], chex, 24))
            return CAMPCTL_CANCELLED;
    for (size_t i = 0; i < v->npaused; i++)
        if (!memcmp(v->paused[i], chex, 24))
            return CAMPCTL_PAUSED;
    return CAMPCTL_RUN;
}

/* KEYS: processing, paused, cancelled, held. ARGV: job, campaign. */
static const char LUA_HOLD[] = "if redis.call('SISMEMBER', KEYS[3], ARGV[2]) == 1 then\n"
                               "  redis.call('LREM', KEYS[1], 1, ARGV[1])\n"
                               "  return 2\n"
                               "end\n"
                               "if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 1 then\n"
                               "  if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then\n"
                               "    redis.call('LPUSH', KEYS[4], ARGV[1])\n"
                               "  end\n"
                               "  return 1\n"
                               "end\n"
                               "return 0\n";

/* The shard set whose tag the processing list proc_key carries ("P{sends:K}:processing:CID":
 * K; "P{sends}:..." or any other list: -1, the unsharded set), so that the hold's keys share
 * the list's slot. */
static int shard_of(const char *prefix, const char *proc_key)
{
    size_t pl = strlen(prefix);
    const char *t = strchr(strncmp(proc_key, prefix, pl) == 0 ? proc_key + pl : proc_key, '{');
    if (!t || strncmp(t + 1, "sends:", 6) != 0)
        return -1;
    char *end;
    long k = strtol(t + 7, &end, 10);
    return *end == '}' && end > t + 7 && k >= 0 && k < nshards() ? (int)k : -1;
}

int campctl_hold(rconn *c, const char *prefix, const char *proc_key, const char *job, size_t len,
                 const char *chex)
{
    char k2[KEYMAX], k3[KEYMAX], k4[KEYMAX];
    int set = shard_of(prefix, proc_key);
    skey(k2, prefix, set, "paused", NULL);
    skey(k3, prefix, set, "cancelled", NULL);
    skey(k4, prefix, set, "held:", chex);
    const char *keys[] = {proc_key, k2, k3, k4}, *args[] = {job, chex};
    size_t lens[] = {len, strlen(chex)};
    long long v;
    if (take_int(c, eval(c, LUA_HOLD, 4, keys, 2, args, lens, NULL, 0), &v, NULL, 0) != 0)
        return -1;
    return (int)v;
}

/* KEYS: paused. ARGV: held-key prefix. */
static const char LUA_HELD[] = "local n = 0\n"
                               "for _, c in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
                               "  n = n + redis.call('LLEN', ARGV[1] .. c)\n"
                               "end\n"
                               "return n\n";

long long campctl_held_jobs(rconn *c, const char *prefix)
{
    long long total = 0;
    for (int k = 0; k <= nshards(); k++) {
        int set = set_clear_order(k);
        char k1[KEYMAX], kh[KEYMAX];
        skey(k1, prefix, set, "paused", NULL);
        skey(kh, prefix, set, "held:", NULL);
        const char *keys[] = {k1}, *args[] = {kh};
        long long v;
        if (take_int(c, eval(c, LUA_HELD, 1, keys, 1, args, NULL, NULL, 0), &v, NULL, 0) != 0)
            return -1;
        total += v;
    }
    return total;
}

long long campctl_held_campaign(rconn *c, const char *prefix, const char *chex)
{
    long long total = 0;
    for (int k = 0; k <= nshards(); k++) {
        char kh[KEYMAX];
        skey(kh, prefix, set_clear_order(k), "held:", chex);
        long long v;
        if (take_int(c, rconn_command(c, "LLEN %s", kh), &v, NULL, 0) != 0)
            return -1;
        total += v;
    }
    return total;
}
