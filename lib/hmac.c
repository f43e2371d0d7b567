/*
 * hmac: see hmac.h. OpenSSL 3's EVP_MAC interface (HMAC_CTX is deprecated there); one MAC
 * context per call, so nothing is shared between threads.
 */
#include "hmac.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <string.h>

int hmac_sha256_hex_parts(const void *key, size_t keylen, const void *const *parts,
                          const size_t *lens, size_t nparts, char out[HMAC_HEX_LEN + 1])
{
    int rc = -1;
    out[0] = '\0';
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    if (!ctx)
        goto out;
    char digest_name[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
                           OSSL_PARAM_construct_end()};
    /* An empty key is legal HMAC; OpenSSL wants a non-NULL pointer. */
    static const unsigned char empty = 0;
    if (!EVP_MAC_init(ctx, keylen ? key : &empty, keylen, params))
        goto out;
    for (size_t i = 0; i < nparts; i++)
        if (lens[i] && !EVP_MAC_update(ctx, parts[i], lens[i]))
            goto out;
    unsigned char md[32];
    size_t mdlen = 0;
    if (!EVP_MAC_final(ctx, md, &mdlen, sizeof md) || mdlen != sizeof md)
        goto out;
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < mdlen; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[HMAC_HEX_LEN] = '\0';
    rc = 0;
out:
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return rc;
}

int hmac_sha256_hex(const void *key, size_t keylen, const void *msg, size_t len,
                    char out[HMAC_HEX_LEN + 1])
{
    const void *parts[1] = {msg};
    size_t lens[1] = {len};
    return hmac_sha256_hex_parts(key, keylen, parts, lens, 1, out);
}

int hmac_sign_receipt(const char *secret, const char *timestamp, const void *body, size_t len,
                      char out[HMAC_HEX_LEN + 1])
{
    size_t klen = strlen(secret);
    if (!timestamp || !*timestamp)
        return hmac_sha256_hex(secret, klen, body, len, out);
    const void *parts[3] = {timestamp, ".", body};
    size_t lens[3] = {strlen(timestamp), 1, len};
    return hmac_sha256_hex_parts(secret, klen, parts, lens, 3, out);
}

bool hmac_equal_hex(const char *expected, const char *given)
{
    if (!expected || !given)
        return false;
    size_t n = strlen(expected);
    /* Walk `expected` fully; read `given` only within its own length (never past its NUL). */
    unsigned diff = 0;
    size_t glen = strnlen(given, n + 1);
    diff |= (unsigned)(glen != n);
    for (size_t i = 0; i < n; i++) {
        unsigned char a = (unsigned char)expected[i];
        unsigned char b = i < glen ? (unsigned char)given[i] : 0;
        /* fold ASCII upper case A-F onto lower case without branching on the secret */
        a |= (unsigned char)(((unsigned)(a - 'A') < 6u) << 5);
        b |= (unsigned char)(((unsigned)(b - 'A') < 6u) << 5);
        diff |= (unsigned)(a ^ b);
    }
    return diff == 0;
}
