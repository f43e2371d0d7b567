/*
 * unsub: see unsub.h. HMAC-SHA256 written out over two precomputed SHA-256 states (the key
 * XOR ipad and XOR opad blocks, absorbed once), so a token costs two short digests and no MAC
 * set-up; the layout of the token is in unsub.h.
 */
#include "unsub.h"

#include "hmac.h"
#include "jobs.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK   64 /* SHA-256 block */
#define OID_LEN 12
#define MAC_LEN 12 /* bytes of the MAC kept in a token */
#define RAW_LEN (OID_LEN + MAC_LEN)
_Static_assert((RAW_LEN * 4 + 2) / 3 == UNSUB_TOKEN_LEN, "token length");
_Static_assert(UNSUB_URL_MAX == JOBS_URL_MAX, "a url must fit a send job's unsubscribe_url");

struct unsub_signer {
    EVP_MD_CTX *inner; /* SHA-256 after (K ^ ipad) */
    EVP_MD_CTX *outer; /* SHA-256 after (K ^ opad) */
    char base[UNSUB_BASE_MAX + 1];
    size_t baselen;
};

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* RAW_LEN bytes (a multiple of 3) -> UNSUB_TOKEN_LEN characters. */
static void b64url(const unsigned char *in, char *out)
{
    for (int i = 0, k = 0; i < RAW_LEN; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[k++] = b64[v >> 18 & 63];
        out[k++] = b64[v >> 12 & 63];
        out[k++] = b64[v >> 6 & 63];
        out[k++] = b64[v & 63];
    }
    out[UNSUB_TOKEN_LEN] = '\0';
}

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

static int unb64url(const char *in, unsigned char *out)
{
    for (int i = 0, k = 0; i < UNSUB_TOKEN_LEN; i += 4) {
        int a = b64val((unsigned char)in[i]), b = b64val((unsigned char)in[i + 1]),
            c = b64val((unsigned char)in[i + 2]), d = b64val((unsigned char)in[i + 3]);
        if ((a | b | c | d) < 0)
            return -1;
        unsigned v = (unsigned)a << 18 | (unsigned)b << 12 | (unsigned)c << 6 | (unsigned)d;
        out[k++] = (unsigned char)(v >> 16);
        out[k++] = (unsigned char)(v >> 8);
        out[k++] = (unsigned char)v;
    }
    return 0;
}

void unsub_signer_free(unsub_signer *s)
{
    if (!s)
        return;
    EVP_MD_CTX_free(s->inner);
    EVP_MD_CTX_free(s->outer);
    OPENSSL_cleanse(s, sizeof *s);
    free(s);
}

unsub_signer *unsub_signer_new(const void *key, size_t keylen, const char *base)
{
    size_t blen = base ? strlen(base) : 0;
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    if (blen > UNSUB_BASE_MAX)
        return NULL;
    unsub_signer *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    memcpy(s->base, base, blen);
    s->base[blen] = '\0';
    s->baselen = blen;
    unsigned char k[BLOCK] = {0}, pad[BLOCK];
    unsigned int klen = 0;
    if (keylen > BLOCK) {
        if (EVP_Digest(key, keylen, k, &klen, EVP_sha256(), NULL) != 1)
            goto fail;
    } else if (keylen)
        memcpy(k, key, keylen);
    s->inner = EVP_MD_CTX_new();
    s->outer = EVP_MD_CTX_new();
    if (!s->inner || !s->outer)
        goto fail;
    for (int i = 0; i < BLOCK; i++)
        pad[i] = k[i] ^ 0x36;
    if (EVP_DigestInit_ex(s->inner, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(s->inner, pad, BLOCK) != 1)
        goto fail;
    for (int i = 0; i < BLOCK; i++)
        pad[i] = k[i] ^ 0x5c;
    if (EVP_DigestInit_ex(s->outer, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(s->outer, pad, BLOCK) != 1)
        goto fail;
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(pad, sizeof pad);
    return s;
fail:
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(pad, sizeof pad);
    unsub_signer_free(s);
    return NULL;
}

/* One digest context per thread, kept (a key destructor frees it when the thread ends):
 * allocating one per token cost as much as the two digests. */
static pthread_once_t g_ctx_once = PTHREAD_ONCE_INIT;
static pthread_key_t g_ctx_key;
static bool g_ctx_key_ok;

static void ctx_free(void *p)
{
    EVP_MD_CTX_free(p);
}

static void ctx_key_make(void)
{
    g_ctx_key_ok = pthread_key_create(&g_ctx_key, ctx_free) == 0;
}

/* The calling thread's context; *owned when the caller must free it (no key). */
static EVP_MD_CTX *thread_ctx(bool *owned)
{
    pthread_once(&g_ctx_once, ctx_key_make);
    *owned = false;
    EVP_MD_CTX *c = g_ctx_key_ok ? pthread_getspecific(g_ctx_key) : NULL;
    if (c)
        return c;
    c = EVP_MD_CTX_new();
    if (c && (!g_ctx_key_ok || pthread_setspecific(g_ctx_key, c) != 0))
        *owned = true;
    return c;
}

/* The MAC of a log id's 12 bytes: HMAC-SHA256(K, "u1" || oid), first MAC_LEN bytes. */
static int mac(const unsub_signer *s, const unsigned char *oid, unsigned char out[MAC_LEN])
{
    unsigned char ih[32], oh[32];
    unsigned int n = 0;
    int rc = -1;
    bool owned;
    EVP_MD_CTX *c = thread_ctx(&owned);
    if (!c || EVP_MD_CTX_copy_ex(c, s->inner) != 1 || EVP_DigestUpdate(c, "u1", 2) != 1 ||
        EVP_DigestUpdate(c, oid, OID_LEN) != 1 || EVP_DigestFinal_ex(c, ih, &n) != 1 ||
        EVP_MD_CTX_copy_ex(c, s->outer) != 1 || EVP_DigestUpdate(c, ih, sizeof ih) != 1 ||
        EVP_DigestFinal_ex(c, oh, &n) != 1)
        goto out;
    memcpy(out, oh, MAC_LEN);
    rc = 0;
out:
    if (owned)
        EVP_MD_CTX_free(c);
    return rc;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int unsub_token(const unsub_signer *s, const char *log_hex, char out[UNSUB_TOKEN_LEN + 1])
{
    unsigned char raw[RAW_LEN];
    out[0] = '\0';
    if (!s || !log_hex || strlen(log_hex) != 24)
        return -1;
    for (int i = 0; i < OID_LEN; i++) {
        int hi = hexval((unsigned char)log_hex[2 * i]),
            lo = hexval((unsigned char)log_hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        raw[i] = (unsigned char)(hi << 4 | lo);
    }
    if (mac(s, raw, raw + OID_LEN) != 0)
        return -1;
    b64url(raw, out);
    return 0;
}

int unsub_token_check(const unsub_signer *s, const char *token, char log_hex[25])
{
    unsigned char raw[RAW_LEN], want[MAC_LEN];
    log_hex[0] = '\0';
    if (!s || !token || strnlen(token, UNSUB_TOKEN_LEN + 1) != UNSUB_TOKEN_LEN ||
        unb64url(token, raw) != 0 || mac(s, raw, want) != 0 ||
        CRYPTO_memcmp(want, raw + OID_LEN, MAC_LEN) != 0)
        return -1;
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < OID_LEN; i++) {
        log_hex[2 * i] = hex[raw[i] >> 4];
        log_hex[2 * i + 1] = hex[raw[i] & 15];
    }
    log_hex[24] = '\0';
    return 0;
}

int unsub_url(const unsub_signer *s, const char *log_hex, char *out, size_t cap)
{
    char tok[UNSUB_TOKEN_LEN + 1];
    if (unsub_token(s, log_hex, tok) != 0)
        return -1;
    int n = snprintf(out, cap, "%s/u/%s", s->base, tok);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

int unsub_headers(const char *url, char *out, size_t cap)
{
    int n = snprintf(out, cap, "List-Unsubscribe: <%s>\r\nList-Unsubscribe-Post: %s", url,
                     UNSUB_POST_BODY);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

int unsub_public_base(const minicrm_config *cfg, char *out, size_t cap)
{
    const char *pub = cfg->api.public_url;
    int n;
    if (pub && *pub) {
        size_t len = strlen(pub);
        while (len > 0 && pub[len - 1] == '/')
            len--;
        n = snprintf(out, cap, "%.*s", (int)len, pub);
    } else {
        const char *host = cfg->api.bind && *cfg->api.bind ? cfg->api.bind : "127.0.0.1";
        if (!strcmp(host, "0.0.0.0") || !strcmp(host, "::"))
            host = "127.0.0.1";
        bool v6 = strchr(host, ':') != NULL;
        n = snprintf(out, cap, v6 ? "http://[%s]:%d" : "http://%s:%d", host, cfg->api.port);
    }
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* ---- the process's signer ------------------------------------------------------------- */

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static unsub_signer *g_signer;

static const char k_label[] = "minicrm unsubscribe token key v1";

const unsub_signer *unsub_signer_get(const minicrm_config *cfg)
{
    pthread_mutex_lock(&g_lock);
    if (!g_signer) {
        char base[UNSUB_BASE_MAX + 1];
        if (unsub_public_base(cfg, base, sizeof base) >= 0) {
            const char *sec = cfg->api.unsubscribe_secret;
            if (sec && *sec) {
                g_signer = unsub_signer_new(sec, strlen(sec), base);
            } else {
                /* Derived from the vendor secret under a label of its own. */
                char k[HMAC_HEX_LEN + 1];
                const char *vs = cfg->receipts.vendor_secret ? cfg->receipts.vendor_secret : "";
                if (hmac_sha256_hex(vs, strlen(vs), k_label, sizeof k_label - 1, k) == 0)
                    g_signer = unsub_signer_new(k, HMAC_HEX_LEN, base);
                OPENSSL_cleanse(k, sizeof k);
            }
        }
    }
    unsub_signer *s = g_signer;
    pthread_mutex_unlock(&g_lock);
    return s;
}
