/*
 * auth_keycache: a bounded, short-lived memory of API keys already checked against MongoDB, so
 * that a request with a known key costs no database round trip (issue 13 point 3).
 *
 * Keyed by SHA-256(key) in hex (what api_keys stores; the key itself is never kept). A fixed
 * table of AUTH_KEYCACHE_SLOTS entries, direct-mapped by the hash's first bytes: a new key may
 * replace another one in its slot (that one is simply checked again next time), so memory never
 * grows. Each entry is trusted for ttl_ms from when it was checked; after that the next request
 * goes to MongoDB again. So a key revoked by another process (`minicrm keys revoke`, another API
 * instance) stops working within ttl_ms; a revocation through this process clears the cache at
 * once (auth_keycache_clear). Only valid keys are remembered: unknown or revoked keys always go
 * to MongoDB (a random key cannot push valid ones out, and nothing negative outlives a change).
 *
 * Thread-safe: one mutex around the table, held for a copy of one entry. ttl_ms 0 disables the
 * cache (every lookup misses, nothing is stored).
 */
#ifndef MINICRM_AUTH_KEYCACHE_H
#define MINICRM_AUTH_KEYCACHE_H

#include "auth_keys.h"

#include <stdint.h>

#define AUTH_KEYCACHE_SLOTS 1024

typedef struct auth_keycache auth_keycache;

/* A new cache trusting an entry for ttl_ms; NULL when out of memory. Free with
 * auth_keycache_free (NULL-safe). */
auth_keycache *auth_keycache_new(int64_t ttl_ms);
void auth_keycache_free(auth_keycache *c);

/* 1 and *out filled when hash (64 hex) was stored less than ttl_ms before now_ms, else 0. */
int auth_keycache_get(auth_keycache *c, const char hash[65], int64_t now_ms, auth_key_info *out);
/* Remember that the key with this hash was valid at now_ms, granting *info. */
void auth_keycache_put(auth_keycache *c, const char hash[65], int64_t now_ms,
                       const auth_key_info *info);
/* Forget every entry (after a revocation in this process). */
void auth_keycache_clear(auth_keycache *c);

/* The hash a presented key is stored under: 0 and hash filled for a well-formed key
 * ("mck_" + 43 base64url), 1 for a malformed one. */
int auth_keycache_hash(const char *key, char hash[65]);

#endif
