/*
 * timeutil: clocks, ISO-8601 dates and ObjectId strings, the value formats of the HTTP contract.
 *
 * Dates cross the API as ISO-8601 UTC strings with milliseconds ("2026-01-31T12:00:00.000Z")
 * and are stored as BSON dates (milliseconds since the Unix epoch). Ids cross the API as
 * 24-hex ObjectId strings. All functions are pure and thread-safe; callers own every buffer.
 */
#ifndef MINICRM_TIMEUTIL_H
#define MINICRM_TIMEUTIL_H

#include <stdbool.h>
#include <stdint.h>

/* Wall clock, milliseconds since the Unix epoch. */
int64_t time_now_ms(void);
/* Monotonic clock in milliseconds, for timeouts and durations. */
int64_t time_mono_ms(void);
/* Monotonic clock in microseconds, for latency measurements. */
int64_t time_mono_us(void);

/* Write `ms` as "YYYY-MM-DDTHH:MM:SS.mmmZ" into out (at least 32 bytes). Returns out. */
char *time_format_iso8601(int64_t ms, char out[32]);

/* Parse an ISO-8601 date or date-time: "YYYY-MM-DD", "YYYY-MM-DDTHH:MM[:SS[.fff]]" followed by
 * "Z", "+HH:MM", "-HH:MM" or nothing (taken as UTC). Rejects impossible dates (Feb 30) and
 * trailing garbage. Returns 0 and sets *ms, or -1. */
int time_parse_iso8601(const char *s, int64_t *ms);

/* True if s is exactly 24 hexadecimal digits (either case). */
bool oid_is_valid_hex(const char *s);

#endif
