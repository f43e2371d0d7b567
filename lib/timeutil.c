/*
 * timeutil: see timeutil.h. Calendar arithmetic is done by hand (days_from_civil, after
 * Howard Hinnant's algorithm) so that no call depends on the process time zone or on the
 * non-thread-safe parts of libc (gmtime, timegm's TZ handling).
 */
#include "timeutil.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t time_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t time_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t time_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

char *time_format_iso8601(int64_t ms, char out[32])
{
    int64_t secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    int64_t msec = ms - secs * 1000;
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    int64_t rem = secs - days * 86400;
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    /* Years outside 0..9999 cannot be written in this format; clamp rather than overflow. */
    if (y < 0)
        y = 0;
    if (y > 9999)
        y = 9999;
    /* "YYYY-MM-DDTHH:MM:SS.mmmZ" written digit by digit: every JSON date of every list goes
     * through here, and snprintf was a visible share of a list's CPU (bench/README.md). */
    unsigned f[7] = {(unsigned)y % 10000u,
                     m % 100u,
                     d % 100u,
                     (unsigned)(rem / 3600) % 100u,
                     (unsigned)(rem / 60 % 60) % 100u,
                     (unsigned)(rem % 60) % 100u,
                     (unsigned)msec % 1000u};
    static const int width[7] = {4, 2, 2, 2, 2, 2, 3};
    static const char sep[7] = {'-', '-', 'T', ':', ':', '.', 'Z'};
    char *o = out;
    for (int i = 0; i < 7; i++) {
        for (int k = width[i] - 1; k >= 0; k--) {
            o[k] = (char)('0' + f[i] % 10u);
            f[i] /= 10u;
        }
        o += width[i];
        *o++ = sep[i];
    }
    *o = '\0';
    return out;
}

/* Read exactly n digits from *p; -1 if not digits. */
static int read_digits(const char **p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    return v;
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int time_parse_iso8601(const char *s, int64_t *ms)
{
    static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *p = s;
    int y = read_digits(&p, 4);
    if (y < 0 || *p++ != '-')
        return -1;
    int mo = read_digits(&p, 2);
    if (mo < 1 || mo > 12 || *p++ != '-')
        return -1;
    int d = read_digits(&p, 2);
    unsigned maxd = mdays[mo - 1] + (mo == 2 && is_leap(y));
    if (d < 1 || (unsigned)d > maxd)
        return -1;
    int hh = 0, mi = 0, ss = 0, frac = 0, tz = 0;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        hh = read_digits(&p, 2);
        if (hh < 0 || hh > 23 || *p++ != ':')
            return -1;
        mi = read_digits(&p, 2);
        if (mi < 0 || mi > 59)
            return -1;
        if (*p == ':') {
            p++;
            ss = read_digits(&p, 2);
            if (ss < 0 || ss > 60)
                return -1;
            if (*p == '.') {
                p++;
                int nd = 0, scale = 100;
                while (isdigit((unsigned char)*p)) {
                    if (nd < 3) {
                        frac += (*p - '0') * scale;
                        scale /= 10;
                    }
                    nd++;
                    p++;
                }
                if (nd == 0)
                    return -1;
            }
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p++ == '-' ? -1 : 1;
            int th = read_digits(&p, 2);
            if (th < 0 || th > 23)
                return -1;
            if (*p == ':')
                p++;
            int tm = read_digits(&p, 2);
            if (tm < 0 || tm > 59)
                return -1;
            tz = sign * (th * 60 + tm);
        }
    }
    if (*p != '\0')
        return -1;
    int64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    int64_t secs = days * 86400 + hh * 3600 + mi * 60 + ss - (int64_t)tz * 60;
    *ms = secs * 1000 + frac;
    return 0;
}

bool oid_is_valid_hex(const char *s)
{
    if (!s)
        return false;
    size_t i = 0;
    for (; s[i]; i++) {
        if (i >= 24 || !isxdigit((unsigned char)s[i]))
            return false;
    }
    return i == 24;
}
