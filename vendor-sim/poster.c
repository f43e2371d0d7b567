/*
 * poster: see poster.h. The response body is discarded (bounded: a write callback that only
 * counts). The easy handle keeps its connection cache across calls, which is what gives
 * keep-alive; curl reconnects transparently if the API closed the connection.
 */
#include "poster.h"

#include "hmac.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct poster {
    CURL *h;
    char url[600];
    char *secret;
    int timeout_ms;
};

static size_t discard(char *ptr, size_t size, size_t nmemb, void *ud)
{
    (void)ptr;
    (void)ud;
    return size * nmemb;
}

poster *poster_new(const char *base_url, const char *secret, int timeout_ms)
{
    return poster_new_query(base_url, NULL, secret, timeout_ms);
}

poster *poster_new_query(const char *base_url, const char *query, const char *secret,
                         int timeout_ms)
{
    static int inited;
    if (!inited) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        inited = 1;
    }
    poster *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    size_t bl = strlen(base_url);
    while (bl > 0 && base_url[bl - 1] == '/')
        bl--;
    snprintf(p->url, sizeof p->url, "%.*s/api/receipts/delivery%s%s", (int)bl, base_url,
             query ? "?" : "", query ? query : "");
    p->secret = strdup(secret);
    p->timeout_ms = timeout_ms;
    p->h = curl_easy_init();
    if (!p->secret || !p->h) {
        poster_free(p);
        return NULL;
    }
    curl_easy_setopt(p->h, CURLOPT_URL, p->url);
    curl_easy_setopt(p->h, CURLOPT_POST, 1L);
    curl_easy_setopt(p->h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(p->h, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(p->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(p->h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(p->h, CURLOPT_WRITEFUNCTION, discard);
    return p;
}

void poster_free(poster *p)
{
    if (!p)
        return;
    if (p->h)
        curl_easy_cleanup(p->h);
    free(p->secret);
    free(p);
}

poster_result poster_post(poster *p, const char *body, size_t len, long *status, char *detail,
                          size_t detaillen)
{
    char ts[24], sig[HMAC_HEX_LEN + 1], hts[64], hsig[128];
    *status = 0;
    snprintf(ts, sizeof ts, "%lld", (long long)time(NULL));
    if (hmac_sign_receipt(p->secret, ts, body, len, sig) != 0) {
        snprintf(detail, detaillen, "cannot compute the signature");
        return POSTER_RETRY;
    }
    snprintf(hts, sizeof hts, "X-Timestamp: %s", ts);
    snprintf(hsig, sizeof hsig, "X-Signature: %s", sig);
    struct curl_slist *hdr = NULL, *t;
    const char *lines[] = {"Content-Type: application/json", hts, hsig, "Expect:"};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        t = curl_slist_append(hdr, lines[i]);
        if (!t) {
            curl_slist_free_all(hdr);
            snprintf(detail, detaillen, "out of memory");
            return POSTER_RETRY;
        }
        hdr = t;
    }
    curl_easy_setopt(p->h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(p->h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(p->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    CURLcode cc = curl_easy_perform(p->h);
    curl_easy_setopt(p->h, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdr);
    if (cc != CURLE_OK) {
        snprintf(detail, detaillen, "%s", curl_easy_strerror(cc));
        return POSTER_RETRY;
    }
    curl_easy_getinfo(p->h, CURLINFO_RESPONSE_CODE, status);
    if (*status >= 200 && *status < 300)
        return POSTER_OK;
    snprintf(detail, detaillen, "HTTP %ld", *status);
    if (*status >= 500 || *status == 401 || *status == 408 || *status == 429 || *status < 200)
        return POSTER_RETRY;
    return POSTER_REJECTED;
}
