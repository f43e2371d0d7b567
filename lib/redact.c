/* redact: see redact.h. */
#include "redact.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* Length of "scheme://" at the start of s (RFC 3986 scheme: ALPHA *( ALPHA / DIGIT / "+" /
 * "-" / "." )), or 0 if s does not start with one. */
static size_t scheme_len(const char *s)
{
    size_t i = 0;
    if (!isalpha((unsigned char)s[0]))
        return 0;
    while (isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.')
        i++;
    return strncmp(s + i, "://", 3) == 0 ? i + 3 : 0;
}

const char *redact_url(const char *url, char *buf, size_t n)
{
    if (n == 0)
        return buf;
    if (!url) {
        buf[0] = '\0';
        return buf;
    }
    size_t start = scheme_len(url);
    const char *auth = url + start;
    size_t alen = strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *p = auth; p < auth + alen; p++) {
        if (*p == '@')
            at = p;
    }
    if (start == 0 || !at) {
        snprintf(buf, n, "%s", url);
        return buf;
    }
    /* user:password@ keeps the user; a userinfo without ':' is masked whole. */
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    size_t keep = colon ? (size_t)(colon - url) + 1 : start;
    snprintf(buf, n, "%.*s***%s", (int)keep, url, at);
    return buf;
}
