/*
 * hmac: HMAC-SHA256 as lower-case hex, and a constant-time comparison, for signing and checking
 * vendor delivery receipts (the vendor simulator signs, minicrm-api verifies).
 *
 * Receipt signatures (API contract + issue 4): without a timestamp the signature covers the raw
 * body; with `X-Timestamp: T` it covers the bytes `T "." body`. hmac_sign_receipt() builds
 * either without copying the body.
 *
 * Pure functions over caller buffers (OpenSSL EVP_MAC); thread-safe.
 */
#ifndef MINICRM_HMAC_H
#define MINICRM_HMAC_H

#include <stdbool.h>
#include <stddef.h>

#define HMAC_HEX_LEN 64 /* hex digits of a SHA-256 MAC; buffers need HMAC_HEX_LEN + 1 */

/* out = hex(HMAC-SHA256(key, part1 || part2 || ...)) over `nparts` parts. Returns 0, or -1 if
 * OpenSSL fails (out is then ""). */
int hmac_sha256_hex_parts(const void *key, size_t keylen, const void *const *parts,
                          const size_t *lens, size_t nparts, char out[HMAC_HEX_LEN + 1]);
/* One-part shortcut. */
int hmac_sha256_hex(const void *key, size_t keylen, const void *msg, size_t len,
                    char out[HMAC_HEX_LEN + 1]);

/* The receipt signature: over `body` if timestamp is NULL or "", else over
 * timestamp "." body. */
int hmac_sign_receipt(const char *secret, const char *timestamp, const void *body, size_t len,
                      char out[HMAC_HEX_LEN + 1]);

/* Constant-time equality of two NUL-terminated strings (time depends only on the length of
 * `expected`); hex digits compared case-insensitively. False if either is NULL. */
bool hmac_equal_hex(const char *expected, const char *given);

#endif
