/*
 * unsubscriber: see unsubscriber.h.
 */
#include "unsubscriber.h"

#include "hmac.h"
#include "log.h"

#include <curl/curl.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vunsub {
    EVP_MAC *mac;
    EVP_MAC_CTX *ctx; /* keyed once; re-initialised with a NULL key per decision */
    char prefix[64];
    size_t prefix_len;
    double rate;
    CURL *curl;
    struct curl_slist *hdrs;
    char **fifo; /* ring of waiting URLs */
    size_t head, n, cap;
    long long posted, refused, dropped;
};

/* The first 8 bytes of a MAC as the uniform draw in [0, 1). */
static double draw(const unsigned char *md)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | md[i];
    return (double)(v >> 11) / 9007199254740992.0;
}

bool vunsub_wants(vunsub *u, const char *log_id)
{
    if (u->rate <= 0)
        return false;
    if (u->rate >= 1)
        return true;
    unsigned char md[32];
    size_t mdlen = 0;
    if (!EVP_MAC_init(u->ctx, NULL, 0, NULL) ||
        !EVP_MAC_update(u->ctx, (const unsigned char *)u->prefix, u->prefix_len) ||
        !EVP_MAC_update(u->ctx, (const unsigned char *)log_id, strlen(log_id)) ||
        !EVP_MAC_final(u->ctx, md, &mdlen, sizeof md) || mdlen != sizeof md)
        return false;
    return draw(md) < u->rate;
}

bool vunsub_decide(const char *secret, long seed, double rate, const char *log_id)
{
    if (rate <= 0)
        return false;
    if (rate >= 1)
        return true;
    char pre[64], hex[HMAC_HEX_LEN + 1];
    int pl = snprintf(pre, sizeof pre, "minicrm-vendor-unsub|%ld|", seed);
    const void *parts[2] = {pre, log_id};
    size_t lens[2] = {(size_t)pl, strlen(log_id)};
    if (hmac_sha256_hex_parts(secret, strlen(secret), parts, lens, 2, hex) != 0)
        return false;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = hex[i];
        v = v << 4 | (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    return (double)(v >> 11) / 9007199254740992.0 < rate;
}

static size_t discard(char *p, size_t s, size_t n, void *u)
{
    (void)p;
    (void)u;
    return s * n;
}

vunsub *vunsub_new(const char *secret, long seed, double rate, int timeout_ms)
{
    vunsub *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    u->rate = rate;
    int n = snprintf(u->prefix, sizeof u->prefix, "minicrm-vendor-unsub|%ld|", seed);
    u->prefix_len = n > 0 && (size_t)n < sizeof u->prefix ? (size_t)n : 0;
    u->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    u->ctx = u->mac ? EVP_MAC_CTX_new(u->mac) : NULL;
    char digest_name[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
                           OSSL_PARAM_construct_end()};
    static const unsigned char empty = 0;
    size_t keylen = secret ? strlen(secret) : 0;
    if (!u->ctx || !EVP_MAC_init(u->ctx, keylen ? (const void *)secret : &empty, keylen, params)) {
        vunsub_free(u);
        return NULL;
    }
    u->curl = curl_easy_init();
    u->hdrs = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded");
    if (!u->curl || !u->hdrs) {
        vunsub_free(u);
        return NULL;
    }
    curl_easy_setopt(u->curl, CURLOPT_HTTPHEADER, u->hdrs);
    curl_easy_setopt(u->curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(u->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(u->curl, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(u->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    return u;
}

void vunsub_free(vunsub *u)
{
    if (!u)
        return;
    for (size_t i = 0; i < u->n; i++)
        free(u->fifo[(u->head + i) % u->cap]);
    free(u->fifo);
    curl_slist_free_all(u->hdrs);
    if (u->curl)
        curl_easy_cleanup(u->curl);
    EVP_MAC_CTX_free(u->ctx);
    EVP_MAC_free(u->mac);
    free(u);
}

int vunsub_add(vunsub *u, const char *url)
{
    if (u->n >= VUNSUB_MAX_WAITING) {
        if (u->dropped++ % 1000 == 0)
            log_warn("vendor.unsubscribe_dropped", "waiting=%zu dropped=%lld", u->n, u->dropped);
        return -1;
    }
    if (u->n == u->cap) {
        size_t cap = u->cap ? 2 * u->cap : 256;
        char **g = malloc(cap * sizeof *g);
        if (!g) {
            u->dropped++;
            return -1;
        }
        for (size_t i = 0; i < u->n; i++)
            g[i] = u->fifo[(u->head + i) % u->cap];
        free(u->fifo);
        u->fifo = g;
        u->cap = cap;
        u->head = 0;
    }
    char *c = strdup(url);
    if (!c) {
        u->dropped++;
        return -1;
    }
    u->fifo[(u->head + u->n) % u->cap] = c;
    u->n++;
    return 0;
}

int vunsub_flush(vunsub *u, int max)
{
    int settled = 0;
    while (u->n > 0 && settled < max) {
        char *url = u->fifo[u->head];
        static const char body[] = "List-Unsubscribe=One-Click";
        curl_easy_setopt(u->curl, CURLOPT_URL, url);
        curl_easy_setopt(u->curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(u->curl, CURLOPT_POSTFIELDSIZE, (long)(sizeof body - 1));
        CURLcode cc = curl_easy_perform(u->curl);
        long status = 0;
        curl_easy_getinfo(u->curl, CURLINFO_RESPONSE_CODE, &status);
        if (cc != CURLE_OK || status >= 500 || status == 429 || status == 0)
            break; /* keep it: the API is down or busy */
        if (status >= 400) {
            u->refused++;
            char m[600];
            log_warn("vendor.unsubscribe_refused", "status=%ld url=%s", status,
                     log_quote(m, sizeof m, url));
        } else {
            u->posted++;
        }
        free(url);
        u->head = (u->head + 1) % u->cap;
        u->n--;
        settled++;
    }
    return settled;
}

void vunsub_counts(const vunsub *u, long long *posted, long long *refused, long long *dropped,
                   size_t *waiting)
{
    *posted = u ? u->posted : 0;
    *refused = u ? u->refused : 0;
    *dropped = u ? u->dropped : 0;
    *waiting = u ? u->n : 0;
}
