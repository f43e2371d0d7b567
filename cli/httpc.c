/* httpc: see httpc.h. */
#include "httpc.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { HTTPC_MAX_BODY = 8 << 20 };

struct httpc {
    CURL *curl;
    char base[256];
    char auth[512];
    int timeout_ms;
};

typedef struct {
    char *buf;
    size_t len;
    int overflow;
} sink;

static size_t on_data(void *p, size_t sz, size_t nm, void *u)
{
    sink *s = u;
    size_t n = sz * nm;
    if (s->len + n > HTTPC_MAX_BODY) {
        s->overflow = 1;
        return 0;
    }
    char *grown = realloc(s->buf, s->len + n + 1);
    if (!grown)
        return 0;
    s->buf = grown;
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    s->buf[s->len] = '\0';
    return n;
}

httpc *httpc_new(const char *base, const char *bearer, int timeout_ms)
{
    httpc *h = calloc(1, sizeof *h);
    if (!h || !(h->curl = curl_easy_init())) {
        free(h);
        return NULL;
    }
    snprintf(h->base, sizeof h->base, "%s", base);
    if (bearer)
        snprintf(h->auth, sizeof h->auth, "Authorization: Bearer %s", bearer);
    h->timeout_ms = timeout_ms;
    return h;
}

void httpc_free(httpc *h)
{
    if (!h)
        return;
    curl_easy_cleanup(h->curl);
    free(h);
}

long httpc_json(httpc *h, const char *method, const char *path, const json_t *body, json_t **out,
                char *err, size_t errlen)
{
    char url[1024];
    snprintf(url, sizeof url, "%s%s", h->base, path);
    char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct curl_slist *hdrs = NULL;
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (h->auth[0])
        hdrs = curl_slist_append(hdrs, h->auth);
    sink s = {0};
    CURL *c = h->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)h->timeout_ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    if (payload) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
    }
    long status = -1;
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (out)
            *out = s.buf ? json_loadb(s.buf, s.len, 0, NULL) : NULL;
    } else {
        snprintf(err, errlen, "%s %s: %s", method, url,
                 s.overflow ? "response too large" : curl_easy_strerror(rc));
        if (out)
            *out = NULL;
    }
    curl_slist_free_all(hdrs);
    free(payload);
    free(s.buf);
    return status;
}
