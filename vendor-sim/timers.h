/*
 * timers: the vendor simulator's timer structure, a binary min-heap of (due time, payload).
 *
 * Thousands of messages wait on their delivery delay at once without a thread or a sleep each:
 * the event loop asks for the earliest due time (timers_next_due) to size its poll timeout and
 * pops everything due. Push and pop are O(log n); memory is one array of entries plus the
 * payload strings.
 *
 * Ownership: timers_push takes over `payload` (malloc'd); timers_pop_due hands it back to the
 * caller, who frees it. timers_release frees what is left. `owner` is an opaque pointer carried
 * along (the vendor simulator's claimed job the payload belongs to); never dereferenced here.
 * Not thread-safe.
 */
#ifndef MINICRM_VENDOR_TIMERS_H
#define MINICRM_VENDOR_TIMERS_H

#include <stddef.h>
#include <stdint.h>

typedef struct timer_entry {
    int64_t due; /* ms since the epoch */
    char *payload;
    void *owner;
} timer_entry;

typedef struct timers {
    timer_entry *a;
    size_t n, cap;
} timers;

void timers_init(timers *t);
void timers_release(timers *t);
/* 0, or -1 on out-of-memory (payload is then still the caller's). */
int timers_push(timers *t, int64_t due, char *payload, void *owner);
/* Earliest due time, or INT64_MAX when empty. */
int64_t timers_next_due(const timers *t);
/* Pop the earliest entry if it is due at `now`: 1 and *out filled, else 0. */
int timers_pop_due(timers *t, int64_t now, timer_entry *out);
size_t timers_count(const timers *t);

#endif
