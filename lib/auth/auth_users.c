/*
 * auth_users: see auth_users.h.
 *
 * A login is two round trips (logins are rare, so clarity wins over batching):
 *   1. update_one users {google_sub} with upsert: $set email, displayName, lastLogin, role,
 *      $setOnInsert firstLogin.
 *   2. find_one users {google_sub} to return _id and the stored role.
 * (Before issue 12 the first user to log in became admin through a claim document in
 * `auth_meta`; that rule is gone, and such a document is now ignored.)
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

/* True if the domain of `email` (after its last '@') is in the comma-separated list. */
static bool domain_listed(const char *list, const char *email)
{
    const char *at = strrchr(email, '@');
    if (!list || !at || !at[1])
        return false;
    const char *domain = at + 1;
    size_t dlen = strlen(domain);
    for (const char *p = list; *p;) {
        while (*p == ',' || *p == '@' || isspace((unsigned char)*p))
            p++;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && isspace((unsigned char)end[-1]))
            end--;
        if ((size_t)(end - start) == dlen && strncasecmp(start, domain, dlen) == 0)
            return true;
    }
    return false;
}

auth_admit auth_users_admit(const minicrm_config *cfg, const char *email, bool email_verified)
{
    const char *domains = cfg->auth.allowed_domains, *emails = cfg->auth.allowed_emails;
    if ((!domains || !domains[0]) && (!emails || !emails[0]))
        return AUTH_ADMIT_NO_LIST;
    if (!email_verified)
        return AUTH_ADMIT_UNVERIFIED;
    if (auth_users_listed(emails, email) || domain_listed(domains, email))
        return AUTH_ADMIT_OK;
    return AUTH_ADMIT_NOT_ALLOWED;
}

const char *auth_admit_code(auth_admit a)
{
    switch (a) {
    case AUTH_ADMIT_OK:
        return "ok";
    case AUTH_ADMIT_NO_LIST:
        return "no_allow_list";
    case AUTH_ADMIT_UNVERIFIED:
        return "email_unverified";
    case AUTH_ADMIT_NOT_ALLOWED:
        return "not_allowed";
    }
    return "not_allowed";
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
    memset(out, 0, sizeof *out);
    auth_admit admit = auth_users_admit(cfg, email, email_verified);
    if (admit != AUTH_ADMIT_OK) {
        snprintf(err, errlen, "login refused: %s", auth_admit_code(admit));
        return (int)admit;
    }
    int rc = -1;
    mongoc_client_t *client = dbpool_pop(db);
    mongoc_collection_t *users = dbpool_collection(db, client, DB_USERS);
    bson_t *filter = NULL, *update = NULL;
    mongoc_cursor_t *cur = NULL;
    bson_error_t e;

    /* Every login decides the role: admin only by the admin list, never by being first. */
    auth_role decided = email_verified && auth_users_listed(cfg->auth.admin_emails, email)
                            ? AUTH_ROLE_ADMIN
                            : AUTH_ROLE_STAFF;

    int64_t now = time_now_ms();
    filter = BCON_NEW("google_sub", BCON_UTF8(sub));
    update = bson_new();
    bson_t set, soi;
    BSON_APPEND_DOCUMENT_BEGIN(update, "$set", &set);
    BSON_APPEND_UTF8(&set, "email", email);
    BSON_APPEND_UTF8(&set, "displayName", display_name);
    BSON_APPEND_DATE_TIME(&set, "lastLogin", now);
    BSON_APPEND_UTF8(&set, "role", auth_role_name(decided));
    bson_append_document_end(update, &set);
    BSON_APPEND_DOCUMENT_BEGIN(update, "$setOnInsert", &soi);
    BSON_APPEND_DATE_TIME(&soi, "firstLogin", now);
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
