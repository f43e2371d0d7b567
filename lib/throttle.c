/*
 * throttle: the GCRA send-rate limiters in Redis (model and keys in throttle.h).
 *
 * The script works in integer microseconds of the Redis server's clock (TIME), so every host
 * shares one time base and a limiter never depends on a client's clock. Its numbers stay below
 * 2^53 (us since the epoch ~ 1.8e15), exact in Lua's doubles; the TAT is stored with
 * string.format('%.0f') because Lua's tostring would write it in exponent form and lose digits.
 */
#include "throttle.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* KEYS: the limiter. ARGV: T (us per token), tau (us of burst tolerance), n (> 0: take up to
 * n; < 0: give back -n). Returns {granted, wait_us}. A token i (0-based) of a take conforms if
 * tat + i*T - now <= tau, tat = max(TAT, now). */
static const char LUA_GCRA[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local T = tonumber(ARGV[1])\n"
    "local tau = tonumber(ARGV[2])\n"
    "local n = tonumber(ARGV[3])\n"
    "local tat = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "if tat < now then tat = now end\n"
    "local k = 0\n"
    "if n < 0 then\n"
    "  tat = tat + n * T\n"
    "  if tat < now then tat = now end\n"
    "else\n"
    "  if now + tau - tat >= 0 then k = math.floor((now + tau - tat) / T) + 1 end\n"
    "  if k > n then k = n end\n"
    "  tat = tat + k * T\n"
    "end\n"
    "if tat > now then\n"
    "  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX',\n"
    "             math.floor((tat - now) / 1000) + 1000)\n"
    "else\n"
    "  redis.call('DEL', KEYS[1])\n"
    "end\n"
    "local wait = tat - tau - now\n"
    "if wait < 0 then wait = 0 end\n"
    "return {k, math.floor(wait)}\n";

struct throttle {
    rconn *c;
    char prefix[128];
    char sha[41]; /* "" until loaded */
    char err[256];
};

throttle *throttle_new(rconn *c, const char *prefix)
{
    throttle *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->c = c;
    snprintf(t->prefix, sizeof t->prefix, "%s", prefix ? prefix : "");
    return t;
}

void throttle_free(throttle *t)
{
    free(t);
}

const char *throttle_error(const throttle *t)
{
    return t->err;
}

static int fail(throttle *t, const char *what, const char *detail)
{
    snprintf(t->err, sizeof t->err, "%s: %s", what, detail);
    return -1;
}

static int load_script(throttle *t)
{
    const char *argv[] = {"SCRIPT", "LOAD", LUA_GCRA};
    redisReply *r = rconn_command_argv(t->c, 3, argv, NULL);
    if (!r)
        return fail(t, "throttle script load", rconn_error(t->c));
    int rc = 0;
    if (r->type == REDIS_REPLY_STRING && r->len == 40)
        memcpy(t->sha, r->str, 41);
    else
        rc = fail(t, "throttle script load", r->type == REDIS_REPLY_ERROR ? r->str : "no sha");
    freeReplyObject(r);
    return rc;
}

/* One run of the script on limiter `name`: n > 0 take, n < 0 give back. */
static int run(throttle *t, const char *name, double rate_per_s, long n, long *granted,
               int64_t *wait_ms)
{
    if (!(rate_per_s > 0) || !isfinite(rate_per_s) || n == 0 || !name ||
        strlen(name) > THROTTLE_MAX_NAME)
        return fail(t, "throttle", "bad arguments");
    double T = 1e6 / rate_per_s;
    if (T < 1)
        T = 1;
    double burst = ceil(rate_per_s * THROTTLE_BURST_MS / 1000.0);
    if (burst < 1)
        burst = 1;
    char key[256], a_t[32], a_tau[32], a_n[32];
    snprintf(key, sizeof key, "%s{rate:%s}", t->prefix, name);
    snprintf(a_t, sizeof a_t, "%.0f", T);
    snprintf(a_tau, sizeof a_tau, "%.0f", (burst - 1) * T);
    snprintf(a_n, sizeof a_n, "%ld", n);
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!t->sha[0] && load_script(t) != 0)
            return -1;
        const char *argv[] = {"EVALSHA", t->sha, "1", key, a_t, a_tau, a_n};
        redisReply *r = rconn_command_argv(t->c, 7, argv, NULL);
        if (!r)
            return fail(t, "throttle", rconn_error(t->c));
        if (r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "NOSCRIPT", 8)) {
            freeReplyObject(r); /* the server lost its script cache: load it again */
            t->sha[0] = '\0';
            continue;
        }
        int rc = 0;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
            r->element[0]->type == REDIS_REPLY_INTEGER &&
            r->element[1]->type == REDIS_REPLY_INTEGER) {
            if (granted)
                *granted = (long)r->element[0]->integer;
            if (wait_ms)
                *wait_ms = (r->element[1]->integer + 999) / 1000;
        } else {
            rc = fail(t, "throttle", r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        }
        freeReplyObject(r);
        return rc;
    }
    return fail(t, "throttle", "script cache lost twice in a row");
}

int throttle_take(throttle *t, const char *name, double rate_per_s, long n, long *granted,
                  int64_t *wait_ms)
{
    if (n < 1)
        return fail(t, "throttle", "take of fewer than one token");
    return run(t, name, rate_per_s, n, granted, wait_ms);
}

int throttle_give_back(throttle *t, const char *name, double rate_per_s, long n)
{
    if (n < 1)
        return 0;
    return run(t, name, rate_per_s, -n, NULL, NULL);
}

int throttle_take_sends(throttle *t, double global_rate, const char *campaign_hex,
                        double campaign_rate, long n, long *granted, int64_t *wait_ms,
                        throttle_by *by)
{
    *granted = n;
    *wait_ms = 0;
    *by = THROTTLE_NONE;
    bool per_campaign = campaign_rate > 0 && campaign_hex && strlen(campaign_hex) == 24;
    if (n < 1 || (!(global_rate > 0) && !per_campaign))
        return 0; /* no limit: the hot path makes no Redis call */
    char cname[THROTTLE_MAX_NAME + 1];
    long k = n;
    int64_t w = 0;
    if (per_campaign) {
        snprintf(cname, sizeof cname, "campaign:%s", campaign_hex);
        if (throttle_take(t, cname, campaign_rate, n, &k, &w) != 0)
            return -1;
        if (k < n) {
            *by = THROTTLE_CAMPAIGN;
            *wait_ms = w;
        }
        if (k == 0) {
            *granted = 0;
            return 0;
        }
    }
    if (global_rate > 0) {
        long g;
        int64_t gw;
        if (throttle_take(t, "vendor", global_rate, k, &g, &gw) != 0) {
            if (per_campaign) /* best effort: what the campaign gave is not used */
                throttle_give_back(t, cname, campaign_rate, k);
            return -1;
        }
        if (g < k) {
            if (per_campaign && throttle_give_back(t, cname, campaign_rate, k - g) != 0)
                return -1;
            *by = THROTTLE_GLOBAL;
            *wait_ms = gw;
            k = g;
        }
    }
    *granted = k;
    return 0;
}
