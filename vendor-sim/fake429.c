/*
 * fake429: a vendor's 429 + Retry-After above a configured rate (design in fake429.h).
 */
#include "fake429.h"

#include <math.h>
#include <stdio.h>

void fake429_init(fake429 *f, rconn *rc, const char *prefix, double above_per_s)
{
    f->rc = rc;
    snprintf(f->prefix, sizeof f->prefix, "%s", prefix);
    f->above_per_s = above_per_s;
    f->answered = 0;
}

int fake429_offer(fake429 *f, int64_t now_ms, size_t n, size_t *accepted, int *retry_after_s)
{
    *accepted = n;
    *retry_after_s = 0;
    if (!(f->above_per_s > 0) || n == 0)
        return 0;
    char key[200];
    snprintf(key, sizeof key, "%s{rate:vendor-sim:429}:%lld", f->prefix,
             (long long)(now_ms / 1000));
    /* MULTI so the window's key never lives without its expiry. */
    int a = rconn_append(f->rc, "MULTI");
    a = a ? a : rconn_append(f->rc, "INCRBY %s %lld", key, (long long)n);
    a = a ? a : rconn_append(f->rc, "EXPIRE %s 5", key);
    a = a ? a : rconn_append(f->rc, "EXEC");
    redisReply *r = NULL;
    long long after = -1;
    for (int i = 0; i < 4 && a == 0; i++) {
        if (rconn_get_reply(f->rc, &r) != 0) {
            a = -1;
            break;
        }
        if (i == 3 && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
            r->element[0]->type == REDIS_REPLY_INTEGER)
            after = r->element[0]->integer;
        freeReplyObject(r);
    }
    if (a != 0 || after < 0) {
        *accepted = 0;
        return -1;
    }
    long long cap = (long long)floor(f->above_per_s);
    long long before = after - (long long)n;
    long long ok = cap - before;
    if (ok < 0)
        ok = 0;
    if (ok < (long long)n) {
        *accepted = (size_t)ok;
        *retry_after_s = 1;
        f->answered += (long long)n - ok;
    }
    return 0;
}
