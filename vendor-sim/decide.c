/*
 * decide: see decide.h.
 *
 * The MAC context is initialised once with the key; each decision re-initialises it with a NULL
 * key, which OpenSSL 3 defines as "keep the key set before" (EVP_MAC_init(3)), so a decision
 * costs one HMAC (two SHA-256 compressions for our short messages) and no allocation. The fixed
 * prefix of the message ("minicrm-vendor-decision|" seed "|") is formatted once.
 */
#include "decide.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct decider {
    EVP_MAC *mac;
    EVP_MAC_CTX *ctx;
    char prefix[64];
    size_t prefix_len;
    double success_rate;
    int min_delay_ms, span_ms;
    double bounce_rate, complaint_rate, open_rate, click_rate;
};

decider *decider_new(const char *secret, long seed, double success_rate, int min_delay_ms,
                     int max_delay_ms)
{
    if (!secret || success_rate < 0 || success_rate > 1 || min_delay_ms < 0 ||
        min_delay_ms > max_delay_ms)
        return NULL;
    decider *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    d->ctx = d->mac ? EVP_MAC_CTX_new(d->mac) : NULL;
    char digest_name[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
                           OSSL_PARAM_construct_end()};
    static const unsigned char empty = 0;
    size_t keylen = strlen(secret);
    if (!d->ctx || !EVP_MAC_init(d->ctx, keylen ? (const void *)secret : &empty, keylen, params)) {
        decider_free(d);
        return NULL;
    }
    int n = snprintf(d->prefix, sizeof d->prefix, "minicrm-vendor-decision|%ld|", seed);
    d->prefix_len = n > 0 && (size_t)n < sizeof d->prefix ? (size_t)n : 0;
    d->success_rate = success_rate;
    d->min_delay_ms = min_delay_ms;
    d->span_ms = max_delay_ms - min_delay_ms;
    return d;
}

int decider_set_events(decider *d, double bounce_rate, double complaint_rate, double open_rate,
                       double click_rate)
{
    double r[4] = {bounce_rate, complaint_rate, open_rate, click_rate};
    for (int i = 0; i < 4; i++)
        if (!(r[i] >= 0 && r[i] <= 1))
            return -1;
    d->bounce_rate = bounce_rate;
    d->complaint_rate = complaint_rate;
    d->open_rate = open_rate > click_rate ? open_rate : click_rate;
    d->click_rate = click_rate;
    return 0;
}

void decider_free(decider *d)
{
    if (!d)
        return;
    EVP_MAC_CTX_free(d->ctx);
    EVP_MAC_free(d->mac);
    free(d);
}

static uint64_t be32(const unsigned char *p)
{
    return (uint64_t)p[0] << 24 | (uint64_t)p[1] << 16 | (uint64_t)p[2] << 8 | p[3];
}

static uint64_t be64(const unsigned char *p)
{
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x = x << 8 | p[i];
    return x;
}

int decider_decide(decider *d, const char *log_id, size_t len, decision *out)
{
    unsigned char md[32];
    size_t mdlen = 0;
    if (!EVP_MAC_init(d->ctx, NULL, 0, NULL) ||
        !EVP_MAC_update(d->ctx, (const unsigned char *)d->prefix, d->prefix_len) ||
        (len && !EVP_MAC_update(d->ctx, (const unsigned char *)log_id, len)) ||
        !EVP_MAC_final(d->ctx, md, &mdlen, sizeof md) || mdlen != sizeof md)
        return -1;
    snprintf(out->vmid, sizeof out->vmid, "vm-%016llx", (unsigned long long)be64(md));
    double u = (double)(be64(md + 8) >> 11) * (1.0 / 9007199254740992.0);
    out->status = u < d->success_rate ? CAMPAIGN_LOG_SENT : CAMPAIGN_LOG_FAILED;
    out->delay_ms = d->min_delay_ms +
                    (d->span_ms > 0 ? (int64_t)(be64(md + 16) % (uint64_t)(d->span_ms + 1)) : 0);
    out->bounced = out->opened = out->clicked = out->complained = false;
    out->open_ms = out->click_ms = out->complaint_ms = 0;
    if (d->bounce_rate > 0 &&
        (double)(be64(md + 24) >> 11) * (1.0 / 9007199254740992.0) < d->bounce_rate) {
        out->bounced = true;
        out->status = CAMPAIGN_LOG_FAILED;
        return 0;
    }
    if (out->status != CAMPAIGN_LOG_SENT || (d->open_rate <= 0 && d->complaint_rate <= 0))
        return 0;
    unsigned char x[32];
    SHA256(md, sizeof md, x);
    double uo = (double)(be64(x) >> 11) * (1.0 / 9007199254740992.0);
    double uc = (double)(be64(x + 8) >> 11) * (1.0 / 9007199254740992.0);
    uint64_t span = (uint64_t)d->span_ms + 1;
    out->opened = uo < d->open_rate;
    out->clicked = uo < d->click_rate;
    out->complained = uc < d->complaint_rate;
    out->open_ms = d->min_delay_ms + (int64_t)(be32(x + 16) % span);
    out->click_ms = out->open_ms + d->min_delay_ms + (int64_t)(be32(x + 20) % span);
    out->complaint_ms = d->min_delay_ms + (int64_t)(be32(x + 24) % span);
    return 0;
}
