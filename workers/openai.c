/*
 * openai: one chat completion over libcurl (see openai.h).
 *
 * Request: {"model", "messages":[system, user], "temperature":0.4, "max_tokens":400,
 * "response_format":{"type":"json_object"}}. Servers that do not know response_format (some
 * local ones) ignore it; the caller validates the content either way.
 * The answer is read into a buffer capped at OPENAI_MAX_REPLY_BYTES (a larger one aborts the
 * transfer and counts as a bad reply); headers are scanned only for Retry-After.
 */
#include "openai.h"

#include "jsonx.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct openai_client {
    const minicrm_config *cfg;
    CURL *curl;
    char url[1024];
};

typedef struct reply {
    char *buf;
    size_t len, cap;
    bool too_big;
    long retry_after_ms;
} reply;

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
    reply *r = arg;
    size_t n = size * nmemb;
    if (r->len + n > OPENAI_MAX_REPLY_BYTES) {
        r->too_big = true;
        return 0; /* aborts the transfer */
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8192;
        while (cap < r->len + n + 1)
            cap *= 2;
        char *nb = realloc(r->buf, cap);
        if (!nb)
            return 0;
        r->buf = nb;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, p, n);
    r->len += n;
    r->buf[r->len] = '\0';
    return n;
}

/* Retry-After: delta-seconds or an HTTP date. */
static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
    reply *r = arg;
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";
    if (n > sizeof name - 1 && n < 200 && !strncasecmp(p, name, sizeof name - 1)) {
        char v[200];
        memcpy(v, p + sizeof name - 1, n - (sizeof name - 1));
        v[n - (sizeof name - 1)] = '\0';
        char *s = v;
        while (*s == ' ' || *s == '\t')
            s++;
        char *end;
        double secs = strtod(s, &end);
        if (end != s && secs >= 0 && secs < 86400) {
            r->retry_after_ms = (long)(secs * 1000);
        } else {
            time_t when = curl_getdate(s, NULL);
            time_t now = time(NULL);
            if (when > now && when - now < 86400)
                r->retry_after_ms = (long)(when - now) * 1000;
        }
    }
    return n;
}

openai_client *openai_client_new(const minicrm_config *cfg)
{
    openai_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->cfg = cfg;
    c->curl = curl_easy_init();
    if (!c->curl) {
        free(c);
        return NULL;
    }
    const char *base = cfg->openai.base_url;
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    snprintf(c->url, sizeof c->url, "%.*s/chat/completions", (int)bl, base);
    return c;
}

void openai_client_free(openai_client *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->curl);
    free(c);
}

void openai_result_release(openai_result *r)
{
    if (!r)
        return;
    free(r->content);
    r->content = NULL;
}

/* Parse a 200 answer into out. */
static void parse_answer(const reply *rp, openai_result *out)
{
    char perr[160];
    json_t *o = rp->buf ? jsonx_parse(rp->buf, rp->len, perr, sizeof perr) : NULL;
    out->outcome = OPENAI_BAD_REPLY;
    if (!o) {
        snprintf(out->error, sizeof out->error, "answer is not JSON (or not UTF-8): %s",
                 rp->buf ? perr : "empty body");
        return;
    }
    json_t *usage = json_object_get(o, "usage");
    json_t *tt = json_object_get(usage, "total_tokens");
    if (json_is_integer(tt) && json_integer_value(tt) > 0)
        out->tokens = json_integer_value(tt);
    const char *model = jsonx_str(o, "model", NULL);
    if (model && strlen(model) < sizeof out->model)
        snprintf(out->model, sizeof out->model, "%s", model);
    json_t *content = json_object_get(
        json_object_get(json_array_get(json_object_get(o, "choices"), 0), "message"), "content");
    if (!json_is_string(content)) {
        snprintf(out->error, sizeof out->error, "answer has no choices[0].message.content");
    } else if (strlen(json_string_value(content)) != json_string_length(content)) {
        snprintf(out->error, sizeof out->error, "answer content contains NUL");
    } else {
        out->content = strdup(json_string_value(content));
        if (out->content)
            out->outcome = OPENAI_OK;
        else
            snprintf(out->error, sizeof out->error, "out of memory");
    }
    json_decref(o);
}

openai_outcome openai_chat(openai_client *c, const char *system, const char *user,
                           openai_result *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->model, sizeof out->model, "%s", c->cfg->openai.model);
    out->outcome = OPENAI_RETRY;
    reply rp = {0};
    struct curl_slist *h = NULL;
    char *body = NULL, *auth = NULL;
    json_t *req =
        json_pack("{s:s,s:[{s:s,s:s},{s:s,s:s}],s:f,s:i,s:{s:s}}", "model", c->cfg->openai.model,
                  "messages", "role", "system", "content", system, "role", "user", "content", user,
                  "temperature", 0.4, "max_tokens", 400, "response_format", "type", "json_object");
    body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    size_t al = strlen(c->cfg->openai.api_key) + 32;
    auth = malloc(al);
    if (!body || !auth) {
        snprintf(out->error, sizeof out->error, "out of memory");
        goto out;
    }
    snprintf(auth, al, "Authorization: Bearer %s", c->cfg->openai.api_key);
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, auth);
    CURL *e = c->curl;
    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_URL, c->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)c->cfg->openai.timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->cfg->openai.timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &rp);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &rp);
    CURLcode cc = curl_easy_perform(e);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &out->http_status);
    if (cc != CURLE_OK) {
        if (rp.too_big) {
            out->outcome = OPENAI_BAD_REPLY;
            snprintf(out->error, sizeof out->error, "answer larger than %d bytes",
                     OPENAI_MAX_REPLY_BYTES);
        } else if (cc == CURLE_OPERATION_TIMEDOUT) {
            snprintf(out->error, sizeof out->error, "timeout after %d ms",
                     c->cfg->openai.timeout_ms);
        } else {
            /* curl's message names the host and the failure, never the headers */
            snprintf(out->error, sizeof out->error, "connection failed: %s",
                     curl_easy_strerror(cc));
        }
        goto out;
    }
    long st = out->http_status;
    if (st == 429 || st >= 500) {
        out->retry_after_ms = rp.retry_after_ms;
        snprintf(out->error, sizeof out->error, "model server answered HTTP %ld", st);
    } else if (st != 200) {
        out->outcome = OPENAI_REFUSED;
        snprintf(out->error, sizeof out->error, "model server refused the call: HTTP %ld", st);
    } else {
        parse_answer(&rp, out);
    }
out:
    curl_slist_free_all(h);
    if (auth) {
        memset(auth, 0, al);
        free(auth);
    }
    free(body);
    free(rp.buf);
    return out->outcome;
}
