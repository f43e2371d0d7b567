/*
 * webhook: see webhook.h for the endpoint document, the delivery format and the signature.
 *
 * Base64 here is the standard alphabet with padding (OpenSSL's EVP_EncodeBlock), as the
 * Standard Webhooks secret and signature use it; the URL is taken apart by libcurl's own
 * parser (curl_url), so that the host the check looks at is the host libcurl will connect to.
 */
#include "webhook.h"

#include "timeutil.h"

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

int webhook_secret_new(char *out, size_t cap)
{
    unsigned char raw[WEBHOOK_SECRET_BYTES];
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    size_t pl = strlen(WEBHOOK_SECRET_PREFIX);
    if (cap < pl + 4 * ((sizeof raw + 2) / 3) + 1)
        return -1;
    memcpy(out, WEBHOOK_SECRET_PREFIX, pl);
    EVP_EncodeBlock((unsigned char *)out + pl, raw, (int)sizeof raw);
    return 0;
}

/* The key of a secret: base64-decode what follows "whsec_". Its length, or -1. */
static int secret_key(const char *secret, unsigned char *key, size_t cap)
{
    size_t pl = strlen(WEBHOOK_SECRET_PREFIX);
    if (!secret || strncmp(secret, WEBHOOK_SECRET_PREFIX, pl) != 0)
        return -1;
    const char *b = secret + pl;
    size_t n = strlen(b);
    if (n == 0 || n % 4 != 0 || n / 4 * 3 > cap)
        return -1;
    int len = EVP_DecodeBlock(key, (const unsigned char *)b, (int)n);
    if (len < 0)
        return -1;
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    if (b[n - 1] == '=')
        len--;
    if (b[n - 2] == '=')
        len--;
    return len;
}

int webhook_sign(const char *secret, const char *id, int64_t ts_s, const char *body, size_t len,
                 char *out, size_t cap)
{
    unsigned char key[WEBHOOK_SECRET_MAX], mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    int klen = secret_key(secret, key, sizeof key);
    if (klen <= 0 || cap < WEBHOOK_SIG_MAX)
        return -1;
    char ts[32];
    int tl = snprintf(ts, sizeof ts, "%lld", (long long)ts_s);
    size_t il = strlen(id), ml = il + 1 + (size_t)tl + 1 + len;
    unsigned char *msg = malloc(ml ? ml : 1);
    if (!msg)
        return -1;
    memcpy(msg, id, il);
    msg[il] = '.';
    memcpy(msg + il + 1, ts, (size_t)tl);
    msg[il + 1 + (size_t)tl] = '.';
    memcpy(msg + il + 2 + (size_t)tl, body, len);
    bool ok = HMAC(EVP_sha256(), key, klen, msg, ml, mac, &maclen) != NULL;
    free(msg);
    if (!ok)
        return -1;
    memcpy(out, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)maclen);
    return 0;
}

int webhook_body(jsonx_buf *out, const char *type, int64_t at_ms, const char *data, size_t datalen)
{
    char iso[32];
    jsonx_buf_cat(out, "{\"type\":");
    jsonx_buf_str(out, type, strlen(type));
    jsonx_buf_cat(out, ",\"timestamp\":\"");
    jsonx_buf_cat(out, time_format_iso8601(at_ms, iso));
    jsonx_buf_cat(out, "\",\"data\":");
    jsonx_buf_raw(out, data, datalen);
    jsonx_buf_raw(out, "}", 1);
    return jsonx_buf_ok(out) ? 0 : -1;
}

/* ---- the URL rules -------------------------------------------------------------------------- */

/* Scheme, host (lower-case, without IPv6 brackets or a final dot) and port of url; libcurl
 * writes IPv4 addresses in their dotted form ("127.1" and "2130706433" become "127.0.0.1").
 * 0 or -1. */
static int url_parts(const char *url, char *scheme, size_t sl, char *host, size_t hl, long *port)
{
    CURLU *u = curl_url();
    char *sc = NULL, *h = NULL, *p = NULL;
    int rc = -1;
    if (!u || curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &sc, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &h, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &p, CURLU_DEFAULT_PORT) != CURLUE_OK)
        goto out;
    snprintf(scheme, sl, "%s", sc);
    const char *hh = h;
    size_t n = strlen(hh);
    if (n >= 2 && hh[0] == '[' && hh[n - 1] == ']') {
        hh++;
        n -= 2;
    }
    if (n >= 2 && hh[n - 1] == '.') /* "localhost." is localhost */
        n--;
    if (n == 0 || n >= hl)
        goto out;
    for (size_t i = 0; i < n; i++)
        host[i] = (char)((hh[i] >= 'A' && hh[i] <= 'Z') ? hh[i] + 32 : hh[i]);
    host[n] = '\0';
    char *end;
    *port = strtol(p, &end, 10);
    rc = *end || *port <= 0 || *port > 65535 ? -1 : 0;
out:
    curl_free(sc);
    curl_free(h);
    curl_free(p);
    curl_url_cleanup(u);
    return rc;
}

/* A host that reaches this machine: loopback, unspecified, "localhost". */
static bool host_is_local(const char *h)
{
    return strncmp(h, "127.", 4) == 0 || strcmp(h, "::1") == 0 || strcmp(h, "0.0.0.0") == 0 ||
           strcmp(h, "::") == 0 || strcmp(h, "localhost") == 0 ||
           (strlen(h) > 10 && strcmp(h + strlen(h) - 10, ".localhost") == 0) ||
           strncmp(h, "::ffff:127.", 11) == 0 || strncmp(h, "::ffff:7f", 9) == 0 ||
           strcmp(h, "::ffff:0.0.0.0") == 0;
}

int webhook_url_check(const minicrm_config *cfg, const char *url, char *err, size_t errlen)
{
    char scheme[16], host[256];
    long port = 0;
    if (!url || strlen(url) > WEBHOOK_URL_MAX) {
        snprintf(err, errlen, "url: must be an http:// or https:// URL of at most %d bytes",
                 WEBHOOK_URL_MAX);
        return -1;
    }
    if (url_parts(url, scheme, sizeof scheme, host, sizeof host, &port) != 0 ||
        (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) ||
        (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)) {
        snprintf(err, errlen, "url: must be an http:// or https:// URL with a host");
        return -1;
    }
    bool self = false;
    if (port == cfg->api.port) {
        const char *bind = cfg->api.bind;
        self = host_is_local(host) || strcasecmp(host, bind) == 0 || strcmp(bind, "0.0.0.0") == 0 ||
               strcmp(bind, "::") == 0;
        /* bind 0.0.0.0 listens on every address of this machine: any host on the API's port
         * may be this machine; refusing a foreign host on port 5000 is the cheaper mistake. */
    }
    char bs[16], bh[256];
    long bp = 0;
    if (!self && cfg->vendor_sim.api_base_url &&
        url_parts(cfg->vendor_sim.api_base_url, bs, sizeof bs, bh, sizeof bh, &bp) == 0 &&
        bp == port && strcmp(bh, host) == 0)
        self = true;
    if (self) {
        snprintf(err, errlen, "url: must not point at the minicrm API itself");
        return -1;
    }
    return 0;
}

int webhook_schedule_parse(const char *s, int64_t *out, size_t max, size_t *n, char *err,
                           size_t errlen)
{
    *n = 0;
    const char *p = s ? s : "";
    while (*p) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno || !isfinite(v) || v <= 0 || v > 86400 || (*end && *end != ',')) {
            snprintf(err, errlen,
                     "webhooks.retry_schedule: comma-separated delays in seconds, each > 0 and "
                     "at most 86400 (got \"%.60s\")",
                     s);
            return -1;
        }
        if (*n == max) {
            snprintf(err, errlen, "webhooks.retry_schedule: at most %zu delays", max);
            return -1;
        }
        out[(*n)++] = (int64_t)llround(v * 1000);
        p = *end ? end + 1 : end;
    }
    if (*n == 0) {
        snprintf(err, errlen, "webhooks.retry_schedule: at least one delay");
        return -1;
    }
    return 0;
}
