/*
 * auth_crypto: the few primitives the auth modules need: kernel randomness, SHA-256,
 * base64url and hex encodings, and constant-time comparison.
 *
 * Every secret minicrm hands out (session ids, OAuth state, PKCE verifiers, API keys) is made
 * from auth_random_bytes(), which reads getrandom(2) and never falls back to a weaker source:
 * if the kernel cannot give randomness the caller gets an error, not a guessable token.
 *
 * All functions are thread-safe; callers own every buffer.
 */
#ifndef MINICRM_AUTH_CRYPTO_H
#define MINICRM_AUTH_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>

/* Length of the unpadded base64url text of n bytes. */
#define AUTH_B64URL_LEN(n) (((n)*4 + 2) / 3)

/* Fill buf with n bytes from getrandom(2). Returns 0, or -1 (errno set). */
int auth_random_bytes(unsigned char *buf, size_t n);

/* Unpadded base64url of in[0..n) into out, which must hold AUTH_B64URL_LEN(n) + 1 bytes. */
void auth_b64url(const unsigned char *in, size_t n, char *out);
/* Lower-case hex of in[0..n) into out, which must hold 2n + 1 bytes. */
void auth_hex(const unsigned char *in, size_t n, char *out);

/* SHA-256 of data[0..n). Returns 0, or -1 if OpenSSL failed. */
int auth_sha256(const void *data, size_t n, unsigned char out[32]);
/* SHA-256 as 64 lower-case hex digits (out holds 65 bytes). Returns 0 or -1. */
int auth_sha256_hex(const void *data, size_t n, char out[65]);

/* True if s is exactly len characters, all of the base64url alphabet (A-Z a-z 0-9 - _). */
bool auth_is_b64url(const char *s, size_t len);
/* True if s is exactly len characters, all lower-case hex digits. */
bool auth_is_lower_hex(const char *s, size_t len);

/* Constant-time equality of two byte strings of the same length n. */
bool auth_ct_equal(const void *a, const void *b, size_t n);

#endif
