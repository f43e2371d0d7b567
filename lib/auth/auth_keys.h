/*
 * auth_keys: API keys for scripts and services (`Authorization: Bearer mck_...`).
 *
 * A key is "mck_" + 43 base64url characters (256 random bits). It is shown once, at creation;
 * minicrm stores only SHA-256(key) in hex (`key_hash`, unique index) plus a display prefix
 * (`prefix`: "mck_" and the next 8 characters, enough to recognise a key in a list, far too
 * little to guess it). A plain hash suffices because the key itself has 256 bits of entropy
 * (no dictionary to try), and unlike an HMAC with auth.session_secret it survives a restart
 * that picks a new random secret.
 *
 * Document in `api_keys`: {_id, key_hash, prefix, name, role "admin"|"staff", created_by,
 * createdAt, lastUsedAt (date|null), revoked bool, revokedAt?}.
 * lastUsedAt is written at most once a minute per key: auth_keys_authenticate() updates it only
 * when the stored value is older than a minute, with a compare-and-set on the value it read,
 * so concurrent requests with one key make one write, not one each.
 *
 * Thread-safe (each call borrows its own pool client). JSON results are new references the
 * caller decrefs.
 */
#ifndef MINICRM_AUTH_KEYS_H
#define MINICRM_AUTH_KEYS_H

#include "auth_users.h"
#include "dbpool.h"
#include "jsonx.h"

#include <jansson.h>
#include <stddef.h>

#define AUTH_KEY_TAG        "mck_"
#define AUTH_KEY_LEN        (4 + 43)
#define AUTH_KEY_PREFIX_LEN (4 + 8)
#define AUTH_KEY_NAME_MAX   100
#define AUTH_KEY_TOUCH_MS   60000

/* What a valid key grants. */
typedef struct auth_key_info {
    char id[25];
    char name[AUTH_KEY_NAME_MAX + 1];
    auth_role role;
} auth_key_info;

/* Create a key. `name` may be NULL/empty (stored as ""), at most AUTH_KEY_NAME_MAX bytes.
 * On 0: key_out holds the key (shown once) and *doc_out the public view (see auth_keys_list).
 * -1 with err on a bad argument or database error. */
int auth_keys_create(dbpool *db, auth_role role, const char *name, const char *created_by,
                     char key_out[AUTH_KEY_LEN + 1], json_t **doc_out, char *err, size_t errlen);

/* All keys, newest first, as an array of public views
 * {"id","prefix","name","role","created_by","createdAt","lastUsedAt","revoked"[,"revokedAt"]}
 * (never the hash). At most `limit` entries. 0 or -1 with err. */
int auth_keys_list(dbpool *db, int limit, json_t **arr_out, char *err, size_t errlen);

/* auth_keys_list written straight as JSON text (the same bytes), appended to *out (caller frees
 * out->data). 0 or -1 with err. */
int auth_keys_list_text(dbpool *db, int limit, jsonx_buf *out, char *err, size_t errlen);

/* Revoke by 24-hex id, by display prefix ("mck_" + 8), or by the full key.
 * 0 revoked (or already revoked; *doc_out the public view if doc_out non-NULL), 1 no such key,
 * 2 the prefix matches several keys (nothing revoked), -1 bad reference or database error. */
int auth_keys_revoke(dbpool *db, const char *ref, json_t **doc_out, char *err, size_t errlen);

/* Check a presented key: 0 valid (*out filled), 1 malformed, unknown or revoked, -1 database
 * error. Records lastUsedAt (at most once a minute per key). */
int auth_keys_authenticate(dbpool *db, const char *key, auth_key_info *out, char *err,
                           size_t errlen);

/* The same for a key known by its hash (hex SHA-256, as stored): a session opened with a key
 * (POST /auth/key) keeps only the hash and re-checks it. */
int auth_keys_authenticate_hash(dbpool *db, const char *hash, auth_key_info *out, char *err,
                                size_t errlen);

/* Unique index on api_keys.key_hash (idempotent). 0 or -1 with err. */
int auth_keys_ensure_indexes(dbpool *db, char *err, size_t errlen);

#endif
