/*
 * auth_users: see auth_users.h.
 *
 * A login is at most four round trips (logins are rare, so clarity wins over batching):
 *   1. (no admin list only) insert {_id:"first_admin", google_sub, email, at} into auth_meta;
 *      a duplicate-key error means someone already holds the claim; then read who.
 *   2. update_one users {google_sub} with upsert: $set email, displayName, lastLogin (and role
 *      when it is decided by this login), $setOnInsert firstLogin (and role staff otherwise).
 *   3. find_one users {google_sub} to return _id and the stored role.
 * The unique index on google_sub makes two simultaneous first logins of one person converge
 * on one document (the losing upsert fails with a duplicate key and is retried once).
 */
#include "auth_users.h"

#include "timeutil.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define DUPLICATE_KEY 11000

bool auth_users_listed(const char *list, const char *email)
{
    if (!list || !email || !email[0])
        return false;
    size_t elen = strlen(email);
    const char *p = list;
    while (*p) {
        while (*p == ',' || isspace((unsigned char)*p))
            p++;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && isspace((unsigned char)end[-1]))
            end--;
        if ((size_t)(end - start) == elen && strncasecmp(start, email, elen) == 0)
            return true;
    }
    return false;
}

/* Claim the first-admin singleton. Returns 1 if `sub` holds it, 0 if someone else does,
 * -1 on a database error. */
static int first_admin(mongoc_collection_t *meta, const char *sub, const char *email, char *err,
                       size_t errlen)
{
    bson_error_t e;
    bson_t *doc = BCON_NEW("_id", BCON_UTF8("first_admin"), "google_sub", BCON_UTF8(sub), "email",
                           BCON_UTF8(email), "at", BCON_DATE_TIME(time_now_ms()));
    bool ok = mongoc_collection_insert_one(meta, doc, NULL, NULL, &e);
    bson_destroy(doc);
    if (ok)
        return 1;
    if (e.code != DUPLICATE_KEY) {
        snprintf(err, errlen, "auth_meta insert: %s", e.message);
        return -1;
    }
    bson_t *filter = BCON_NEW("_id", BCON_UTF8("first_admin"));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(meta, filter, NULL, NULL);
    const bson_t *found;
    int rc = 0;
    if (mongoc_cursor_next(cur, &found)) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, found, "google_sub") && BSON_ITER_HOLDS_UTF8(&it) &&
            !strcmp(bson_iter_utf8(&it, NULL), sub))
            rc = 1;
    } else if (mongoc_cursor_error(cur, &e)) {
        snprintf(err, errlen, "auth_meta read: %s", e.message);
        rc = -1;
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    return rc;
}

static void copy_utf8(const bson_t *doc, const char *key, char *dst, size_t n)
{
    bson_iter_t it;
    dst[0] = '\0';
    if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
        snprintf(dst, n, "%s", bson_iter_utf8(&it, NULL));
}

int auth_users_login(dbpool *db, const minicrm_config *cfg, const char *sub, const char *email,
                     const char *display_name, bool email_verified, auth_user *out, char *err,
                     size_t errlen)
{
    int rc = -1;
    memset(out, 0, sizeof *out);
    mongoc_client_t *client = dbpool_pop(db);
    mongoc_collection_t *users = dbpool_collection(db, client, DB_USERS);
    mongoc_collection_t *meta = NULL;
    bson_t *filter = NULL, *update = NULL;
    mongoc_cursor_t *cur = NULL;
    bson_error_t e;

    /* Decide the role when this login decides it; AUTH_ROLE_NONE = keep the stored one. */
    auth_role decided = AUTH_ROLE_NONE;
    const char *list = cfg->auth.admin_emails;
    if (list && list[0]) {
        decided =
            email_verified && auth_users_listed(list, email) ? AUTH_ROLE_ADMIN : AUTH_ROLE_STAFF;
    } else {
        meta = dbpool_collection(db, client, DB_AUTH_META);
        int fa = first_admin(meta, sub, email, err, errlen);
        if (fa < 0)
            goto out;
        if (fa == 1)
            decided = AUTH_ROLE_ADMIN;
    }

    int64_t now = time_now_ms();
    filter = BCON_NEW("google_sub", BCON_UTF8(sub));
    update = bson_new();
    bson_t set, soi;
    BSON_APPEND_DOCUMENT_BEGIN(update, "$set", &set);
    BSON_APPEND_UTF8(&set, "email", email);
    BSON_APPEND_UTF8(&set, "displayName", display_name);
    BSON_APPEND_DATE_TIME(&set, "lastLogin", now);
    if (decided != AUTH_ROLE_NONE)
        BSON_APPEND_UTF8(&set, "role", auth_role_name(decided));
    bson_append_document_end(update, &set);
    BSON_APPEND_DOCUMENT_BEGIN(update, "$setOnInsert", &soi);
    BSON_APPEND_DATE_TIME(&soi, "firstLogin", now);
    if (decided == AUTH_ROLE_NONE)
        BSON_APPEND_UTF8(&soi, "role", auth_role_name(AUTH_ROLE_STAFF));
    bson_append_document_end(update, &soi);
    bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
    bool ok = mongoc_collection_update_one(users, filter, update, opts, NULL, &e);
    if (!ok && e.code == DUPLICATE_KEY) /* lost an upsert race on google_sub: now it exists */
        ok = mongoc_collection_update_one(users, filter, update, opts, NULL, &e);
    bson_destroy(opts);
    if (!ok) {
        snprintf(err, errlen, "users upsert: %s", e.message);
        goto out;
    }

    cur = mongoc_collection_find_with_opts(users, filter, NULL, NULL);
    const bson_t *doc;
    if (!mongoc_cursor_next(cur, &doc)) {
        if (mongoc_cursor_error(cur, &e))
            snprintf(err, errlen, "users read: %s", e.message);
        else
            snprintf(err, errlen, "users read: the upserted user is missing");
        goto out;
    }
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_OID(&it))
        bson_oid_to_string(bson_iter_oid(&it), out->id);
    copy_utf8(doc, "email", out->email, sizeof out->email);
    copy_utf8(doc, "displayName", out->display_name, sizeof out->display_name);
    char role[16];
    copy_utf8(doc, "role", role, sizeof role);
    if (auth_role_parse(role, &out->role) != 0)
        out->role = AUTH_ROLE_STAFF;
    rc = 0;
out:
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    bson_destroy(update);
    mongoc_collection_destroy(meta);
    mongoc_collection_destroy(users);
    dbpool_push(db, client);
    return rc;
}

int auth_db_unique_index(dbpool *db, const char *coll, const char *field, char *err, size_t errlen)
{
    /* createIndexes as a command: libmongoc 1.23 has no index-model API, and the helper
     * functions it has are deprecated. Creating an existing identical index is a no-op. */
    char name[128];
    snprintf(name, sizeof name, "%s_1", field);
    bson_t *cmd =
        BCON_NEW("createIndexes", BCON_UTF8(coll), "indexes", "[", "{", "key", "{", field,
                 BCON_INT32(1), "}", "name", BCON_UTF8(name), "unique", BCON_BOOL(true), "}", "]");
    mongoc_client_t *client = dbpool_pop(db);
    mongoc_collection_t *c = dbpool_collection(db, client, coll);
    bson_error_t e;
    bool ok = mongoc_collection_write_command_with_opts(c, cmd, NULL, NULL, &e);
    if (!ok)
        snprintf(err, errlen, "%s index on %s: %s", coll, field, e.message);
    mongoc_collection_destroy(c);
    dbpool_push(db, client);
    bson_destroy(cmd);
    return ok ? 0 : -1;
}

int auth_users_ensure_indexes(dbpool *db, char *err, size_t errlen)
{
    return auth_db_unique_index(db, DB_USERS, "google_sub", err, errlen);
}
