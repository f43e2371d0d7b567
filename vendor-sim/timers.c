/*
 * timers: see timers.h. Classic array heap: entry i has children 2i+1 and 2i+2, and a[0] is
 * always the earliest due time. The array grows by doubling and never shrinks below its peak
 * (bounded by vendor_sim.max_inflight).
 */
#include "timers.h"

#include <stdlib.h>

void timers_init(timers *t)
{
    t->a = NULL;
    t->n = t->cap = 0;
}

void timers_release(timers *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->a[i].payload);
    free(t->a);
    timers_init(t);
}

int timers_push(timers *t, int64_t due, char *payload, void *owner)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        timer_entry *g = realloc(t->a, cap * sizeof *g);
        if (!g)
            return -1;
        t->a = g;
        t->cap = cap;
    }
    size_t i = t->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (t->a[parent].due <= due)
            break;
        t->a[i] = t->a[parent];
        i = parent;
    }
    t->a[i].due = due;
    t->a[i].payload = payload;
    t->a[i].owner = owner;
    return 0;
}

int64_t timers_next_due(const timers *t)
{
    return t->n ? t->a[0].due : INT64_MAX;
}

int timers_pop_due(timers *t, int64_t now, timer_entry *out)
{
    if (t->n == 0 || t->a[0].due > now)
        return 0;
    *out = t->a[0];
    timer_entry last = t->a[--t->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= t->n)
            break;
        if (c + 1 < t->n && t->a[c + 1].due < t->a[c].due)
            c++;
        if (last.due <= t->a[c].due)
            break;
        t->a[i] = t->a[c];
        i = c;
    }
    if (t->n)
        t->a[i] = last;
    return 1;
}

size_t timers_count(const timers *t)
{
    return t->n;
}
