/*
 * log: one line per event on stderr, shared by every minicrm program.
 *
 * Each line carries the time, level, program name and pid, an event name, and the caller's
 * key=value pairs:
 *
 *   ts=2026-11-26T14:00:00.123Z level=info prog=minicrm-api pid=4242 event=listening port=5000
 *
 * With LOG_FORMAT_JSON the same fields are written as one JSON object per line. The caller's
 * pairs are passed as a printf format producing `k=v k2=v2`; values with spaces should be
 * quoted by the caller (log_quote helps). Thread-safe: one write(2) per line, so lines from
 * threads and processes sharing stderr never interleave.
 */
#ifndef MINICRM_LOG_H
#define MINICRM_LOG_H

#include <stddef.h>

typedef enum { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR } log_level;
typedef enum { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON } log_format;

/* Set the program name (copied) shown on every line. Call once at start, before threads. */
void log_init(const char *prog);
void log_set_level(log_level level);
void log_set_format(log_format format);
/* Parse "debug|info|warn|error" / "text|json"; 0 on success, -1 if unknown. */
int log_parse_level(const char *s, log_level *out);
int log_parse_format(const char *s, log_format *out);

/* Write one event. `fmt` may be NULL for an event without fields. */
void log_write(log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Copy `s` into `buf` (size `n`) as a double-quoted, escaped value, truncating if needed.
 * Returns buf. */
const char *log_quote(char *buf, size_t n, const char *s);

#define log_debug(...) log_write(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...)  log_write(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...)  log_write(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
