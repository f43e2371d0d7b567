/*
 * auth_keys: see auth_keys.h.
 *
 * Lookups go by key_hash (unique index), so authenticating a key is one indexed find_one;
 * revoked keys stay in the collection (audit trail, and the list shows them) but never match.
 * The key is hashed before any database access and the database never sees the key itself.
 */
#include "auth_keys.h"

#include "auth_crypto.h"
#include "jsonx.h"
#include "timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The public view of a stored key: the stored document without key_hash, _id renamed id. */
static json_t *public_view(const bson_t *doc)
{
    json_t *v = jsonx_from_bson(doc);
    if (!v)
        return NULL;
    json_object_del(v, "key_hash");
    json_t *id = json_object_get(v, "_id");
    if (id) {
        json_object_set(v, "id", id);
        json_object_del(v, "_id");
    }
    return v;
}

/* public_view written as text into b: straight from BSON, or through jansson for the rare
 * document the direct writer refuses. */
static void public_view_text(jsonx_buf *b, const bson_t *doc)
{
    static const char *const drop[] = {"key_hash", NULL};
    if (jsonx_buf_bson_public(b, doc, drop) == 0)
        return;
    json_t *v = public_view(doc);
    char *s = v ? jsonx_dumps(v) : NULL;
    json_decref(v);
    if (s)
        jsonx_buf_cat(b, s);
    else
        b->failed = true;
    free(s);
}

static bool valid_name(const char *name)
{
    size_t n = strlen(name);
    if (n > AUTH_KEY_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return false;
    return bson_utf8_validate(name, n, false);
}

int auth_keys_create(dbpool *db, auth_role role, const char *name, const char *created_by,
                     char key_out[AUTH_KEY_LEN + 1], json_t **doc_out, char *err, size_t errlen)
{
    key_out[0] = '\0';
    *doc_out = NULL;
    if (!name)
        name = "";
    if (role != AUTH_ROLE_ADMIN && role != AUTH_ROLE_STAFF) {
        snprintf(err, errlen, "role must be admin or staff");
        return -1;
    }
    if (!valid_name(name)) {
        snprintf(err, errlen, "name must be at most %d printable UTF-8 bytes", AUTH_KEY_NAME_MAX);
        return -1;
    }
    unsigned char raw[32];
    if (auth_random_bytes(raw, sizeof raw) != 0) {
        snprintf(err, errlen, "no randomness available");
        return -1;
    }
    char key[AUTH_KEY_LEN + 1], hash[65], prefix[AUTH_KEY_PREFIX_LEN + 1];
    memcpy(key, AUTH_KEY_TAG, 4);
    auth_b64url(raw, sizeof raw, key + 4);
    if (auth_sha256_hex(key, AUTH_KEY_LEN, hash) != 0) {
        snprintf(err, errlen, "SHA-256 failed");
        return -1;
    }
    memcpy(prefix, key, AUTH_KEY_PREFIX_LEN);
    prefix[AUTH_KEY_PREFIX_LEN] = '\0';

    bson_oid_t oid;
    bson_oid_init(&oid, NULL);
    bson_t *doc = BCON_NEW(
        "_id", BCON_OID(&oid), "key_hash", BCON_UTF8(hash), "prefix", BCON_UTF8(prefix), "name",
        BCON_UTF8(name), "role", BCON_UTF8(auth_role_name(role)), "created_by",
        BCON_UTF8(created_by ? created_by : ""), "createdAt", BCON_DATE_TIME(time_now_ms()),
        "lastUsedAt", BCON_NULL, "revoked", BCON_BOOL(false));
    mongoc_client_t *client = dbpool_pop(db);
    mongoc_collection_t *c = dbpool_collection(db, client, DB_API_KEYS);
    bson_error_t e;
    bool ok = mongoc_collection_insert_one(c, doc, NULL, NULL, &e);
    mongoc_collection_destroy(c);
    dbpool_push(db, client);
    if (!ok) {
        snprintf(err, errlen, "api_keys insert: %s", e.message);
        bson_destroy(doc);
        return -1;
    }
    *doc_out = public_view(doc);
    bson_destroy(doc);
    if (!*doc_out) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(key_out, key, sizeof key);
    return 0;
}

int auth_keys_list_text(dbpool *db, int limit, jsonx_buf *out, char *err, size_t errlen)
{
    bson_t *filter = bson_new();
    bson_t *opts =
        BCON_NEW("sort", "{", "createdAt", BCON_INT32(-1), "}", "limit", BCON_INT64(limit),
                 "batchSize", BCON_INT64(limit)); /* one reply, no getMore */
    mongoc_client_t *client = dbpool_pop(db);
    mongoc_collection_t *c = dbpool_collection(db, client, DB_API_KEYS);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, filter, opts, NULL);
    const bson_t *doc;
    bson_error_t e;
    int rc = 0;
    jsonx_buf_raw(out, "[", 1);
    for (bool first = true; mongoc_cursor_next(cur, &doc); first = false) {
        if (!first)
            jsonx_buf_raw(out, ",", 1);
        public_view_text(out, doc);
    }
    jsonx_buf_raw(out, "]", 1);
    if (mongoc_cursor_error(cur, &e)) {
        snprintf(err, errlen, "api_keys list: %s", e.message);
        rc = -1;
    } else if (!jsonx_buf_ok(out)) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    }
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(c);
    dbpool_push(db, client);
    bson_destroy(filter);
    bson_destroy(opts);
    return rc;
}

int auth_keys_list(dbpool *db, int limit, json_t **arr_out, char *err, size_t errlen)
{
    int rc = -1;
    json_t *arr = json_array();
    bson_t *filter = bson_new();
    /* key_hash is dropped by public_view(); no projection, so any server subset works. */
    bson_t *opts =
        BCON_NEW("sort", "{", "createdAt", BCON_INT32(-1), "}", "limit", BCON_INT64(limit));
    mongoc_client_t *client = dbpool_pop(db);
    mongoc_collection_t *c = dbpool_collection(db, client, DB_API_KEYS);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, filter, opts, NULL);
    const bson_t *doc;
    bson_error_t e;
    while (arr && mongoc_cursor_next(cur, &doc)) {
        json_t *v = public_view(doc);
        if (!v || json_array_append_new(arr, v) != 0) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
    }
    if (!arr) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (mongoc_cursor_error(cur, &e)) {
        snprintf(err, errlen, "api_keys list: %s", e.message);
        goto out;
    }
    *arr_out = arr;
    arr = NULL;
    rc = 0;
out:
    json_decref(arr);
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(c);
    dbpool_push(db, client);
    bson_destroy(filter);
    bson_destroy(opts);
    return rc;
}

int auth_keys_revoke(dbpool *db, const char *ref, json_t **doc_out, char *err, size_t errlen)
{
    int rc = -1;
    bson_t *filter = NULL;
    if (doc_out)
        *doc_out = NULL;
    if (!ref) {
        snprintf(err, errlen, "no key given");
        return -1;
    }
    size_t n = strlen(ref);
    if (oid_is_valid_hex(ref)) {
        bson_oid_t oid;
        bson_oid_init_from_string(&oid, ref);
        filter = BCON_NEW("_id", BCON_OID(&oid));
    } else if (n == AUTH_KEY_LEN && !strncmp(ref, AUTH_KEY_TAG, 4) &&
               auth_is_b64url(ref + 4, AUTH_KEY_LEN - 4)) {
        char hash[65];
        if (auth_sha256_hex(ref, n, hash) != 0) {
            snprintf(err, errlen, "SHA-256 failed");
            return -1;
        }
        filter = BCON_NEW("key_hash", BCON_UTF8(hash));
    } else if (n == AUTH_KEY_PREFIX_LEN && !strncmp(ref, AUTH_KEY_TAG, 4) &&
               auth_is_b64url(ref + 4, AUTH_KEY_PREFIX_LEN - 4)) {
        filter = BCON_NEW("prefix", BCON_UTF8(ref));
    } else {
        snprintf(err, errlen,
                 "expected a 24-hex key id, a key prefix (mck_ + 8 characters) "
                 "or the key itself");
        return -1;
    }
    mongoc_client_t *client = dbpool_pop(db);
    mongoc_collection_t *c = dbpool_collection(db, client, DB_API_KEYS);
    bson_error_t e;
    /* Find first: a prefix must name exactly one key before anything is revoked. */
    bson_t *opts = BCON_NEW("limit", BCON_INT64(2));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, filter, opts, NULL);
    bson_destroy(opts);
    const bson_t *doc;
    bson_oid_t target;
    int found = 0;
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        if (found == 0 && bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_OID(&it))
            bson_oid_copy(bson_iter_oid(&it), &target);
        found++;
    }
    if (mongoc_cursor_error(cur, &e)) {
        snprintf(err, errlen, "api_keys read: %s", e.message);
        mongoc_cursor_destroy(cur);
        goto out;
    }
    mongoc_cursor_destroy(cur);
    if (found == 0) {
        rc = 1;
        goto out;
    }
    if (found > 1) {
        rc = 2;
        goto out;
    }
    /* Already revoked keys keep their first revokedAt. */
    bson_t *f = BCON_NEW("_id", BCON_OID(&target), "revoked", BCON_BOOL(false));
    bson_t *upd = BCON_NEW("$set", "{", "revoked", BCON_BOOL(true), "revokedAt",
                           BCON_DATE_TIME(time_now_ms()), "}");
    bool ok = mongoc_collection_update_one(c, f, upd, NULL, NULL, &e);
    bson_destroy(f);
    bson_destroy(upd);
    if (!ok) {
        snprintf(err, errlen, "api_keys revoke: %s", e.message);
        goto out;
    }
    if (doc_out) {
        bson_t *byid = BCON_NEW("_id", BCON_OID(&target));
        cur = mongoc_collection_find_with_opts(c, byid, NULL, NULL);
        if (mongoc_cursor_next(cur, &doc))
            *doc_out = public_view(doc);
        mongoc_cursor_destroy(cur);
        bson_destroy(byid);
    }
    rc = 0;
out:
    mongoc_collection_destroy(c);
    dbpool_push(db, client);
    bson_destroy(filter);
    return rc;
}

int auth_keys_authenticate(dbpool *db, const char *key, auth_key_info *out, char *err,
                           size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!key || strlen(key) != AUTH_KEY_LEN || strncmp(key, AUTH_KEY_TAG, 4) != 0 ||
        !auth_is_b64url(key + 4, AUTH_KEY_LEN - 4))
        return 1;
    char hash[65];
    if (auth_sha256_hex(key, AUTH_KEY_LEN, hash) != 0) {
        snprintf(err, errlen, "SHA-256 failed");
        return -1;
    }
    return auth_keys_authenticate_hash(db, hash, out, err, errlen);
}

int auth_keys_authenticate_hash(dbpool *db, const char *hash, auth_key_info *out, char *err,
                                size_t errlen)
{
    memset(out, 0, sizeof *out);
    int rc = -1;
    bson_t *filter = BCON_NEW("key_hash", BCON_UTF8(hash));
    bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
    mongoc_client_t *client = dbpool_pop(db);
    mongoc_collection_t *c = dbpool_collection(db, client, DB_API_KEYS);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, filter, opts, NULL);
    const bson_t *doc;
    bson_error_t e;
    if (!mongoc_cursor_next(cur, &doc)) {
        if (mongoc_cursor_error(cur, &e)) {
            snprintf(err, errlen, "api_keys read: %s", e.message);
            goto out;
        }
        rc = 1;
        goto out;
    }
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, "revoked") && bson_iter_as_bool(&it)) {
        rc = 1;
        goto out;
    }
    if (!bson_iter_init_find(&it, doc, "role") || !BSON_ITER_HOLDS_UTF8(&it) ||
        auth_role_parse(bson_iter_utf8(&it, NULL), &out->role) != 0) {
        rc = 1; /* a damaged document grants nothing */
        goto out;
    }
    bson_oid_t oid;
    if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_OID(&it)) {
        rc = 1;
        goto out;
    }
    bson_oid_copy(bson_iter_oid(&it), &oid);
    bson_oid_to_string(&oid, out->id);
    if (bson_iter_init_find(&it, doc, "name") && BSON_ITER_HOLDS_UTF8(&it))
        snprintf(out->name, sizeof out->name, "%s", bson_iter_utf8(&it, NULL));

    /* lastUsedAt: compare-and-set on the value read, at most once per AUTH_KEY_TOUCH_MS. */
    int64_t now = time_now_ms();
    bool has_date = bson_iter_init_find(&it, doc, "lastUsedAt") && BSON_ITER_HOLDS_DATE_TIME(&it);
    int64_t last = has_date ? bson_iter_date_time(&it) : 0;
    if (!has_date || now - last >= AUTH_KEY_TOUCH_MS) {
        bson_t *f = has_date ? BCON_NEW("_id", BCON_OID(&oid), "lastUsedAt", BCON_DATE_TIME(last))
                             : BCON_NEW("_id", BCON_OID(&oid), "lastUsedAt", BCON_NULL);
        bson_t *upd = BCON_NEW("$set", "{", "lastUsedAt", BCON_DATE_TIME(now), "}");
        /* A failed touch must not fail the request: the key is valid either way. */
        (void)mongoc_collection_update_one(c, f, upd, NULL, NULL, &e);
        bson_destroy(f);
        bson_destroy(upd);
    }
    rc = 0;
out:
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(c);
    dbpool_push(db, client);
    bson_destroy(filter);
    bson_destroy(opts);
    return rc;
}

int auth_keys_ensure_indexes(dbpool *db, char *err, size_t errlen)
{
    return auth_db_unique_index(db, DB_API_KEYS, "key_hash", err, errlen);
}
