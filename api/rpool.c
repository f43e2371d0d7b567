/*
 * rpool: see rpool.h.
 *
 * Layout: an array of `size` slots and a stack of free slot indexes under one mutex; a condition
 * variable wakes threads waiting for a slot. A slot's rconn is created on first use and kept for
 * the life of the pool; a connection that broke stays in its slot and reconnects on next use.
 */
#include "rpool.h"

#include "timeutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct rpool {
    pthread_mutex_t lock;
    pthread_cond_t freed;
    char *url;
    int timeout_ms;
    int size;
    int nfree;
    int *free_idx; /* stack of free slot indexes */
    rconn **conns; /* slot -> connection (NULL until first use) */
};

rpool *rpool_new(const char *url, int timeout_ms, int size, char *err, size_t errlen)
{
    rconn_url parsed;
    if (rconn_parse_url(url, &parsed, err, errlen) != 0)
        return NULL;
    if (size < 1)
        size = 1;
    rpool *p = calloc(1, sizeof *p);
    if (!p)
        goto oom;
    p->url = strdup(url);
    p->free_idx = calloc((size_t)size, sizeof *p->free_idx);
    p->conns = calloc((size_t)size, sizeof *p->conns);
    if (!p->url || !p->free_idx || !p->conns)
        goto oom;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->freed, NULL);
    p->timeout_ms = timeout_ms;
    p->size = size;
    for (int i = 0; i < size; i++)
        p->free_idx[i] = size - 1 - i;
    p->nfree = size;
    return p;
oom:
    if (p) {
        free(p->url);
        free(p->free_idx);
        free(p->conns);
        free(p);
    }
    snprintf(err, errlen, "out of memory");
    return NULL;
}

void rpool_free(rpool *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->size; i++)
        rconn_free(p->conns[i]);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->freed);
    free(p->url);
    free(p->free_idx);
    free(p->conns);
    free(p);
}

rconn *rpool_get(rpool *p)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += p->timeout_ms / 1000;
    deadline.tv_nsec += (long)(p->timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&p->lock);
    while (p->nfree == 0) {
        if (pthread_cond_timedwait(&p->freed, &p->lock, &deadline) == ETIMEDOUT && p->nfree == 0) {
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
    }
    int idx = p->free_idx[--p->nfree];
    pthread_mutex_unlock(&p->lock);

    /* The slot is ours alone now: creating its connection needs no lock. */
    if (!p->conns[idx]) {
        char err[256];
        p->conns[idx] = rconn_new(p->url, p->timeout_ms, err, sizeof err);
        if (!p->conns[idx]) {
            pthread_mutex_lock(&p->lock);
            p->free_idx[p->nfree++] = idx;
            pthread_cond_signal(&p->freed);
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
    }
    return p->conns[idx];
}

void rpool_put(rpool *p, rconn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < p->size; i++) {
        if (p->conns[i] == c) {
            p->free_idx[p->nfree++] = i;
            break;
        }
    }
    pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->lock);
}
