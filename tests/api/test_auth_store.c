/*
 * test_auth_store: users/roles and API key storage against a private minicrm-devdb (or the
 * MongoDB named by MINICRM_TEST_MONGO_URI): the race-free first admin, the admin list with
 * verified emails and demotion, keys stored only as hashes, lastUsedAt written at most once a
 * minute (compare-and-set), revocation by id / prefix / key, ambiguous prefixes.
 */
#include "auth_crypto.h"
#include "auth_keys.h"
#include "auth_users.h"
#include "config.h"
#include "dbpool.h"
#include "test.h"
#include "testenv.h"

#include <pthread.h>
#include <stdlib.h>

static testenv g_env;
static dbpool *g_db;

static void stop_env(void)
{
    dbpool_free(g_db);
    testenv_stop(&g_env);
}

static dbpool *db(void)
{
    if (!g_db) {
        char err[256];
        if (testenv_start(&g_env, TESTENV_DEVDB) != 0)
            return NULL;
        g_db = dbpool_new(g_env.mongo_uri, 16, 5000, "test_auth_store", err, sizeof err);
        atexit(stop_env);
    }
    return g_db;
}

/* The stored document matching filter (caller destroys), or NULL. */
static bson_t *find_one(const char *coll, bson_t *filter)
{
    mongoc_client_t *c = dbpool_pop(g_db);
    mongoc_collection_t *col = dbpool_collection(g_db, c, coll);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(col, filter, NULL, NULL);
    const bson_t *doc;
    bson_t *out = mongoc_cursor_next(cur, &doc) ? bson_copy(doc) : NULL;
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(col);
    dbpool_push(g_db, c);
    bson_destroy(filter);
    return out;
}

typedef struct {
    minicrm_config *cfg;
    int i;
    int rc;
    auth_user u;
} login_arg;

static void *login_thread(void *p)
{
    login_arg *a = p;
    char sub[32], email[64], err[256];
    snprintf(sub, sizeof sub, "race-%d", a->i);
    snprintf(email, sizeof email, "racer%d@example.com", a->i);
    a->rc = auth_users_login(g_db, a->cfg, sub, email, "Racer", true, &a->u, err, sizeof err);
    if (a->rc != 0)
        fprintf(stderr, "login: %s\n", err);
    return NULL;
}

TEST(no_first_user_admin)
{
    /* Eight simultaneous first logins on an empty store, with no admin list: all staff (before
     * issue 12 one of them became admin). */
    CHECK(db() != NULL);
    char err[256];
    CHECK_INT_EQ(auth_users_ensure_indexes(g_db, err, sizeof err), 0);
    minicrm_config cfg;
    cfg_init(&cfg); /* no admin_emails */
    cfg_set(&cfg, "auth.allowed_domains", "example.com", "t", err, sizeof err);
    enum { N = 8 };
    pthread_t th[N];
    login_arg a[N];
    for (int i = 0; i < N; i++) {
        a[i] = (login_arg){.cfg = &cfg, .i = i};
        pthread_create(&th[i], NULL, login_thread, &a[i]);
    }
    int admins = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT_EQ(a[i].rc, 0);
        admins += a[i].u.role == AUTH_ROLE_ADMIN;
    }
    CHECK_INT_EQ(admins, 0);
    /* One document per person, with first/last login. */
    a[0] = (login_arg){.cfg = &cfg, .i = 100};
    login_thread(&a[0]);
    CHECK_INT_EQ(a[0].u.role, AUTH_ROLE_STAFF);
    bson_t *doc = find_one(DB_USERS, BCON_NEW("google_sub", BCON_UTF8("race-100")));
    CHECK(doc != NULL);
    bson_iter_t it;
    CHECK(bson_iter_init_find(&it, doc, "firstLogin") && BSON_ITER_HOLDS_DATE_TIME(&it));
    CHECK(bson_iter_init_find(&it, doc, "lastLogin") && BSON_ITER_HOLDS_DATE_TIME(&it));
    CHECK(bson_iter_init_find(&it, doc, "email") &&
          !strcmp(bson_iter_utf8(&it, NULL), "racer100@example.com"));
    bson_destroy(doc);
    cfg_release(&cfg);
}

TEST(refused_logins_write_nothing)
{
    CHECK(db() != NULL);
    minicrm_config cfg;
    char err[256];
    auth_user u;
    cfg_init(&cfg);
    /* No allow-list: refused, even for a listed admin. */
    cfg_set(&cfg, "auth.admin_emails", "root@example.com", "t", err, sizeof err);
    CHECK_INT_EQ(auth_users_login(g_db, &cfg, "root-sub", "root@example.com", "Root", true, &u, err,
                                  sizeof err),
                 AUTH_ADMIT_NO_LIST);
    cfg_set(&cfg, "auth.allowed_emails", "root@example.com", "t", err, sizeof err);
    CHECK_INT_EQ(auth_users_login(g_db, &cfg, "root-sub", "root@example.com", "Root", false, &u,
                                  err, sizeof err),
                 AUTH_ADMIT_UNVERIFIED);
    CHECK_INT_EQ(
        auth_users_login(g_db, &cfg, "out-sub", "out@other.org", "Out", true, &u, err, sizeof err),
        AUTH_ADMIT_NOT_ALLOWED);
    CHECK(find_one(DB_USERS, BCON_NEW("google_sub", BCON_UTF8("root-sub"))) == NULL);
    CHECK(find_one(DB_USERS, BCON_NEW("google_sub", BCON_UTF8("out-sub"))) == NULL);
    cfg_release(&cfg);
}

TEST(admin_list_verified_and_demotion)
{
    CHECK(db() != NULL);
    minicrm_config cfg;
    char err[256];
    cfg_init(&cfg);
    cfg_set(&cfg, "auth.admin_emails", "Chief@Example.com,x@y.z", "t", err, sizeof err);
    cfg_set(&cfg, "auth.allowed_domains", "example.com,y.z", "t", err, sizeof err);
    auth_user u;
    CHECK_INT_EQ(auth_users_login(g_db, &cfg, "chief-sub", "chief@example.com", "Chief", true, &u,
                                  err, sizeof err),
                 0);
    CHECK_INT_EQ(u.role, AUTH_ROLE_ADMIN);
    CHECK_STR_EQ(u.display_name, "Chief");
    CHECK_INT_EQ((int)strlen(u.id), 24);
    /* An unverified email never makes an admin: it does not even log in. */
    CHECK_INT_EQ(
        auth_users_login(g_db, &cfg, "fake-sub", "x@y.z", "Fake", false, &u, err, sizeof err),
        AUTH_ADMIT_UNVERIFIED);
    CHECK_INT_EQ(u.role, AUTH_ROLE_NONE);
    /* Off the list: demoted at the next login. */
    cfg_set(&cfg, "auth.admin_emails", "someone@else.org", "t", err, sizeof err);
    CHECK_INT_EQ(auth_users_login(g_db, &cfg, "chief-sub", "chief@example.com", "Chief", true, &u,
                                  err, sizeof err),
                 0);
    CHECK_INT_EQ(u.role, AUTH_ROLE_STAFF);
    cfg_release(&cfg);
}

static int64_t last_used(const char *id)
{
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, id);
    bson_t *doc = find_one(DB_API_KEYS, BCON_NEW("_id", BCON_OID(&oid)));
    bson_iter_t it;
    int64_t v = -1;
    if (doc && bson_iter_init_find(&it, doc, "lastUsedAt") && BSON_ITER_HOLDS_DATE_TIME(&it))
        v = bson_iter_date_time(&it);
    bson_destroy(doc);
    return v;
}

static void set_last_used(const char *id, int64_t ms)
{
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, id);
    bson_t *f = BCON_NEW("_id", BCON_OID(&oid));
    bson_t *u = BCON_NEW("$set", "{", "lastUsedAt", BCON_DATE_TIME(ms), "}");
    mongoc_client_t *c = dbpool_pop(g_db);
    mongoc_collection_t *col = dbpool_collection(g_db, c, DB_API_KEYS);
    mongoc_collection_update_one(col, f, u, NULL, NULL, NULL);
    mongoc_collection_destroy(col);
    dbpool_push(g_db, c);
    bson_destroy(f);
    bson_destroy(u);
}

TEST(keys_hashed_touch_revoke)
{
    CHECK(db() != NULL);
    char err[256], key[AUTH_KEY_LEN + 1], hash[65];
    CHECK_INT_EQ(auth_keys_ensure_indexes(g_db, err, sizeof err), 0);
    json_t *view = NULL;
    CHECK_INT_EQ(auth_keys_create(g_db, AUTH_ROLE_STAFF, "nightly export", "tester", key, &view,
                                  err, sizeof err),
                 0);
    char id[25];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(view, "id")));
    CHECK(json_object_get(view, "key_hash") == NULL);
    CHECK(json_is_null(json_object_get(view, "lastUsedAt")));
    json_decref(view);
    /* Stored: the SHA-256 of the key, and the key nowhere. */
    auth_sha256_hex(key, strlen(key), hash);
    bson_t *doc = find_one(DB_API_KEYS, BCON_NEW("key_hash", BCON_UTF8(hash)));
    CHECK(doc != NULL);
    char *text = bson_as_canonical_extended_json(doc, NULL);
    CHECK(strstr(text, key + 12) == NULL);
    bson_free(text);
    bson_destroy(doc);

    /* Authenticate: first use writes lastUsedAt; a use within the minute does not. */
    auth_key_info k;
    CHECK_INT_EQ(auth_keys_authenticate(g_db, key, &k, err, sizeof err), 0);
    CHECK_INT_EQ(k.role, AUTH_ROLE_STAFF);
    CHECK_STR_EQ(k.name, "nightly export");
    int64_t t1 = last_used(id);
    CHECK(t1 > 0);
    set_last_used(id, t1 - 30000); /* 30 s ago: still fresh */
    CHECK_INT_EQ(auth_keys_authenticate(g_db, key, &k, err, sizeof err), 0);
    CHECK_INT_EQ(last_used(id), t1 - 30000);
    set_last_used(id, t1 - 120000); /* 2 min ago: stale, rewritten */
    CHECK_INT_EQ(auth_keys_authenticate(g_db, key, &k, err, sizeof err), 0);
    CHECK(last_used(id) >= t1);

    /* Malformed and unknown keys. */
    CHECK_INT_EQ(auth_keys_authenticate(g_db, "mck_short", &k, err, sizeof err), 1);
    char other[AUTH_KEY_LEN + 1];
    snprintf(other, sizeof other, "%s", key);
    other[10] = other[10] == 'A' ? 'B' : 'A';
    CHECK_INT_EQ(auth_keys_authenticate(g_db, other, &k, err, sizeof err), 1);

    /* Revoke by the full key; repeated revocation is fine; the key is dead. */
    CHECK_INT_EQ(auth_keys_revoke(g_db, key, NULL, err, sizeof err), 0);
    CHECK_INT_EQ(auth_keys_authenticate(g_db, key, &k, err, sizeof err), 1);
    CHECK_INT_EQ(auth_keys_revoke(g_db, id, NULL, err, sizeof err), 0);
    CHECK_INT_EQ(auth_keys_revoke(g_db, "0123456789abcdef01234567", NULL, err, sizeof err), 1);
    CHECK_INT_EQ(auth_keys_revoke(g_db, "drop table", NULL, err, sizeof err), -1);

    /* Bad arguments. */
    CHECK_INT_EQ(auth_keys_create(g_db, AUTH_ROLE_NONE, "", "t", key, &view, err, sizeof err), -1);
    CHECK_INT_EQ(
        auth_keys_create(g_db, AUTH_ROLE_ADMIN, "bad\nname", "t", key, &view, err, sizeof err), -1);
}

TEST(keys_prefix_revoke_and_ambiguity)
{
    CHECK(db() != NULL);
    char err[256], k1[AUTH_KEY_LEN + 1], k2[AUTH_KEY_LEN + 1], prefix[16];
    json_t *v1 = NULL, *v2 = NULL;
    CHECK_INT_EQ(auth_keys_create(g_db, AUTH_ROLE_ADMIN, "a", "t", k1, &v1, err, sizeof err), 0);
    CHECK_INT_EQ(auth_keys_create(g_db, AUTH_ROLE_ADMIN, "b", "t", k2, &v2, err, sizeof err), 0);
    snprintf(prefix, sizeof prefix, "%s", json_string_value(json_object_get(v1, "prefix")));
    CHECK_INT_EQ((int)strlen(prefix), AUTH_KEY_PREFIX_LEN);
    CHECK(strncmp(prefix, k1, AUTH_KEY_PREFIX_LEN) == 0);
    /* Force a prefix collision: revoking by that prefix must refuse to guess. */
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, json_string_value(json_object_get(v2, "id")));
    bson_t *f = BCON_NEW("_id", BCON_OID(&oid));
    bson_t *u = BCON_NEW("$set", "{", "prefix", BCON_UTF8(prefix), "}");
    mongoc_client_t *c = dbpool_pop(g_db);
    mongoc_collection_t *col = dbpool_collection(g_db, c, DB_API_KEYS);
    CHECK(mongoc_collection_update_one(col, f, u, NULL, NULL, NULL));
    mongoc_collection_destroy(col);
    dbpool_push(g_db, c);
    bson_destroy(f);
    bson_destroy(u);
    auth_key_info k;
    CHECK_INT_EQ(auth_keys_revoke(g_db, prefix, NULL, err, sizeof err), 2);
    CHECK_INT_EQ(auth_keys_authenticate(g_db, k1, &k, err, sizeof err), 0);
    CHECK_INT_EQ(auth_keys_authenticate(g_db, k2, &k, err, sizeof err), 0);
    json_t *doc = NULL;
    CHECK_INT_EQ(
        auth_keys_revoke(g_db, json_string_value(json_object_get(v2, "id")), &doc, err, sizeof err),
        0);
    CHECK(json_is_true(json_object_get(doc, "revoked")));
    CHECK(json_is_string(json_object_get(doc, "revokedAt")));
    json_decref(doc);
    CHECK_INT_EQ(auth_keys_authenticate(g_db, k2, &k, err, sizeof err), 1);
    CHECK_INT_EQ(auth_keys_authenticate(g_db, k1, &k, err, sizeof err), 0);
    /* The list shows both, newest first, never a hash. */
    json_t *arr = NULL;
    CHECK_INT_EQ(auth_keys_list(g_db, 1000, &arr, err, sizeof err), 0);
    char *s = json_dumps(arr, 0);
    CHECK(strstr(s, "key_hash") == NULL);
    free(s);
    json_decref(arr);
    json_decref(v1);
    json_decref(v2);
}

TEST_MAIN(TEST_ENTRY(no_first_user_admin), TEST_ENTRY(refused_logins_write_nothing),
          TEST_ENTRY(admin_list_verified_and_demotion), TEST_ENTRY(keys_hashed_touch_revoke),
          TEST_ENTRY(keys_prefix_revoke_and_ambiguity))
