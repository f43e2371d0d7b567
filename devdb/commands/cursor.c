/*
 * cursor.c: the cursor table (see cursor.h).
 *
 * The table is a plain array of cursor pointers under one mutex: the number of open cursors
 * is small (drivers close them) and every operation is short. Ids are random positive 63-bit
 * numbers, like MongoDB's, so a stale id from an earlier server life is not accidentally
 * valid.
 */
#include "commands/cursor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cursor_table {
    pthread_mutex_t mu;
    cursor **a;
    size_t n, cap;
    int64_t timeout_ms;
    uint64_t rng;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

cursor_table *cursor_table_new(int64_t timeout_ms)
{
    cursor_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    pthread_mutex_init(&t->mu, NULL);
    t->timeout_ms = timeout_ms;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    t->rng = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ 0x9e3779b97f4a7c15u;
    return t;
}

void cursor_table_free(cursor_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        cursor_free(t->a[i]);
    free(t->a);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

cursor *cursor_new(cursor_kind kind, const char *db, const char *coll)
{
    cursor *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->kind = kind;
    snprintf(c->db, sizeof c->db, "%s", db);
    snprintf(c->coll, sizeof c->coll, "%s", coll);
    snprintf(c->ns, sizeof c->ns, "%s.%s", db, coll);
    return c;
}

void cursor_free(cursor *c)
{
    if (!c)
        return;
    if (c->docs) {
        for (size_t i = 0; i < c->n; i++)
            free(c->docs[i]);
    }
    free(c->docs);
    free(c->rids);
    projection_free(c->proj);
    free(c);
}

static size_t cap_for(size_t n)
{
    /* Capacity grows by doubling; it is a power of two >= 16 whenever n > 0. */
    size_t cap = 16;
    while (cap < n)
        cap *= 2;
    return cap;
}

int cursor_push_rid(cursor *c, uint64_t rid)
{
    if (c->n == 0 || (c->n >= 16 && (c->n & (c->n - 1)) == 0)) {
        uint64_t *na = realloc(c->rids, cap_for(c->n + 1) * sizeof *na);
        if (!na)
            return -1;
        c->rids = na;
    }
    c->rids[c->n++] = rid;
    return 0;
}

int cursor_push_doc(cursor *c, const bson_t *doc)
{
    if (c->n == 0 || (c->n >= 16 && (c->n & (c->n - 1)) == 0)) {
        uint8_t **na = realloc(c->docs, cap_for(c->n + 1) * sizeof *na);
        if (!na)
            return -1;
        c->docs = na;
    }
    uint8_t *p = malloc(doc->len);
    if (!p)
        return -1;
    memcpy(p, bson_get_data(doc), doc->len);
    c->docs[c->n++] = p;
    return 0;
}

int64_t cursor_table_add(cursor_table *t, cursor *c)
{
    pthread_mutex_lock(&t->mu);
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 16;
        cursor **na = realloc(t->a, ncap * sizeof *na);
        if (!na) {
            pthread_mutex_unlock(&t->mu);
            cursor_free(c);
            return 0;
        }
        t->a = na;
        t->cap = ncap;
    }
    int64_t id;
    bool clash;
    do {
        /* xorshift64* */
        t->rng ^= t->rng >> 12;
        t->rng ^= t->rng << 25;
        t->rng ^= t->rng >> 27;
        id = (int64_t)((t->rng * 2685821657736338717ull) >> 1);
        clash = id == 0;
        for (size_t i = 0; i < t->n && !clash; i++)
            clash = t->a[i]->id == id;
    } while (clash);
    c->id = id;
    c->last_used_ms = now_ms();
    t->a[t->n++] = c;
    pthread_mutex_unlock(&t->mu);
    return id;
}

static cursor *remove_at(cursor_table *t, size_t i)
{
    cursor *c = t->a[i];
    t->a[i] = t->a[--t->n];
    return c;
}

cursor *cursor_table_take(cursor_table *t, int64_t id)
{
    cursor *c = NULL;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->n; i++) {
        if (t->a[i]->id == id) {
            c = remove_at(t, i);
            break;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return c;
}

void cursor_table_put(cursor_table *t, cursor *c)
{
    int64_t id = c->id;
    pthread_mutex_lock(&t->mu);
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 16;
        cursor **na = realloc(t->a, ncap * sizeof *na);
        if (!na) {
            pthread_mutex_unlock(&t->mu);
            cursor_free(c);
            return;
        }
        t->a = na;
        t->cap = ncap;
    }
    c->id = id;
    c->last_used_ms = now_ms();
    t->a[t->n++] = c;
    pthread_mutex_unlock(&t->mu);
}

bool cursor_table_kill(cursor_table *t, int64_t id)
{
    cursor *c = cursor_table_take(t, id);
    cursor_free(c);
    return c != NULL;
}

void cursor_table_reap(cursor_table *t)
{
    int64_t now = now_ms();
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->n;) {
        if (now - t->a[i]->last_used_ms > t->timeout_ms)
            cursor_free(remove_at(t, i));
        else
            i++;
    }
    pthread_mutex_unlock(&t->mu);
}

size_t cursor_table_count(cursor_table *t)
{
    pthread_mutex_lock(&t->mu);
    size_t n = t->n;
    pthread_mutex_unlock(&t->mu);
    return n;
}
