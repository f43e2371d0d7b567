/*
 * log: formatting and emission of event lines (see log.h).
 *
 * The whole line is built in a stack buffer and written with a single write(2) to fd 2, which
 * keeps lines atomic across threads and processes (pipes guarantee atomicity up to PIPE_BUF;
 * longer lines are truncated to that size). The level and format are plain globals set at
 * start-up before threads exist.
 */
#include "log.h"

#include "timeutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum { LOG_LINE_MAX = 4096 };

static char g_prog[64] = "minicrm";
static log_level g_level = LOG_LEVEL_INFO;
static log_format g_format = LOG_FORMAT_TEXT;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_init(const char *prog)
{
    snprintf(g_prog, sizeof g_prog, "%s", prog ? prog : "minicrm");
}

void log_set_level(log_level level)
{
    g_level = level;
}

void log_set_format(log_format format)
{
    g_format = format;
}

int log_parse_level(const char *s, log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (log_level)i;
            return 0;
        }
    }
    return -1;
}

int log_parse_format(const char *s, log_format *out)
{
    if (strcmp(s, "text") == 0) {
        *out = LOG_FORMAT_TEXT;
    } else if (strcmp(s, "json") == 0) {
        *out = LOG_FORMAT_JSON;
    } else {
        return -1;
    }
    return 0;
}

const char *log_quote(char *buf, size_t n, const char *s)
{
    size_t o = 0;
    if (n < 3) {
        if (n)
            buf[0] = '\0';
        return buf;
    }
    buf[o++] = '"';
    for (; s && *s && o + 3 < n; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c < 0x20) {
            buf[o++] = ' ';
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

/* Append `s` to line as JSON string content (no quotes). */
static size_t json_escape(char *dst, size_t cap, size_t o, const char *s, size_t len)
{
    for (size_t i = 0; i < len && o + 7 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(dst + o, cap - o, "\\u%04x", c);
        } else {
            dst[o++] = (char)c;
        }
    }
    return o;
}

void log_write(log_level level, const char *event, const char *fmt, ...)
{
    if (level < g_level)
        return;
    char fields[LOG_LINE_MAX / 2] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(fields, sizeof fields, fmt, ap);
        va_end(ap);
    }
    char ts[32];
    time_format_iso8601(time_now_ms(), ts);

    char line[LOG_LINE_MAX];
    size_t o;
    if (g_format == LOG_FORMAT_TEXT) {
        int w = snprintf(line, sizeof line, "ts=%s level=%s prog=%s pid=%d event=%s%s%s", ts,
                         level_names[level], g_prog, (int)getpid(), event, fields[0] ? " " : "",
                         fields);
        o = w < 0 ? 0 : (size_t)w >= sizeof line - 1 ? sizeof line - 2 : (size_t)w;
    } else {
        int w = snprintf(line, sizeof line,
                         "{\"ts\":\"%s\",\"level\":\"%s\",\"prog\":\"%s\",\"pid\":%d,\"event\":\"",
                         ts, level_names[level], g_prog, (int)getpid());
        o = (size_t)w;
        o = json_escape(line, sizeof line, o, event, strlen(event));
        o += (size_t)snprintf(line + o, sizeof line - o, "\",\"fields\":\"");
        o = json_escape(line, sizeof line, o, fields, strlen(fields));
        if (o + 3 < sizeof line) {
            line[o++] = '"';
            line[o++] = '}';
        }
    }
    line[o++] = '\n';
    ssize_t r = write(2, line, o);
    (void)r;
}
