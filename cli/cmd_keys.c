/*
 * minicrm keys: API key management from the operator's shell, straight against MongoDB (no API
 * process needed, which is how the very first admin key is made on a fresh install).
 *
 *   minicrm keys create --role admin|staff [--name N]   prints the key ONCE on stdout (one line,
 *                                                       so KEY=$(minicrm keys create ...) works);
 *                                                       the id and a warning go to stderr
 *   minicrm keys list [--json]                          every key, newest first, never a hash
 *   minicrm keys revoke <id | mck_prefix | key>         marks the key revoked (kept for audit)
 *
 * Exit status: 0 done, 1 failed (database, not found, ambiguous prefix), 2 bad usage.
 * The storage rules live in api/auth_keys.h (shared with the API).
 */
#include "auth_keys.h"
#include "commands.h"
#include "dbpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: minicrm keys create --role admin|staff [--name NAME]\n"
               "       minicrm keys list [--json]\n"
               "       minicrm keys revoke ID|PREFIX|KEY\n");
}

static dbpool *open_db(const minicrm_config *cfg)
{
    char err[512];
    dbpool *db =
        dbpool_new(cfg->mongo.uri, 2, cfg->mongo.timeout_ms, "minicrm-keys", err, sizeof err);
    if (!db)
        fprintf(stderr, "minicrm keys: mongo.uri: %s\n", err);
    return db;
}

static int keys_create(cli_ctx *ctx)
{
    const char *role_s = NULL, *name = "";
    for (int i = 2; i < ctx->argc; i++) {
        if (!strcmp(ctx->argv[i], "--role") && i + 1 < ctx->argc)
            role_s = ctx->argv[++i];
        else if (!strcmp(ctx->argv[i], "--name") && i + 1 < ctx->argc)
            name = ctx->argv[++i];
        else {
            fprintf(stderr, "minicrm keys create: unexpected argument %s\n", ctx->argv[i]);
            usage(stderr);
            return 2;
        }
    }
    auth_role role;
    if (auth_role_parse(role_s, &role) != 0) {
        fprintf(stderr, "minicrm keys create: --role must be admin or staff\n");
        return 2;
    }
    dbpool *db = open_db(ctx->cfg);
    if (!db)
        return 1;
    int status = 1;
    char err[512], key[AUTH_KEY_LEN + 1];
    json_t *doc = NULL;
    if (auth_keys_ensure_indexes(db, err, sizeof err) != 0 ||
        auth_keys_create(db, role, name, "cli", key, &doc, err, sizeof err) != 0) {
        fprintf(stderr, "minicrm keys create: %s\n", err);
        goto out;
    }
    printf("%s\n", key);
    fflush(stdout);
    fprintf(stderr,
            "created API key id=%s prefix=%s role=%s name=\"%s\"\n"
            "store it now: minicrm keeps only its hash and cannot show it again\n",
            json_string_value(json_object_get(doc, "id")),
            json_string_value(json_object_get(doc, "prefix")), auth_role_name(role), name);
    status = 0;
out:
    json_decref(doc);
    dbpool_free(db);
    return status;
}

static const char *str_or(const json_t *obj, const char *key, const char *def)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : def;
}

static int keys_list(cli_ctx *ctx)
{
    bool as_json = false;
    for (int i = 2; i < ctx->argc; i++) {
        if (!strcmp(ctx->argv[i], "--json"))
            as_json = true;
        else {
            fprintf(stderr, "minicrm keys list: unexpected argument %s\n", ctx->argv[i]);
            usage(stderr);
            return 2;
        }
    }
    dbpool *db = open_db(ctx->cfg);
    if (!db)
        return 1;
    json_t *arr = NULL;
    char err[512];
    int status = 1;
    if (auth_keys_list(db, 100000, &arr, err, sizeof err) != 0) {
        fprintf(stderr, "minicrm keys list: %s\n", err);
        goto out;
    }
    if (as_json) {
        char *s = json_dumps(arr, JSON_INDENT(2));
        if (s)
            printf("%s\n", s);
        free(s);
    } else {
        printf("%-24s  %-12s  %-5s  %-7s  %-24s  %-24s  %s\n", "ID", "PREFIX", "ROLE", "STATUS",
               "CREATED", "LAST USED", "NAME");
        size_t i;
        json_t *k;
        json_array_foreach(arr, i, k)
        {
            printf("%-24s  %-12s  %-5s  %-7s  %-24s  %-24s  %s\n", str_or(k, "id", "?"),
                   str_or(k, "prefix", "?"), str_or(k, "role", "?"),
                   json_is_true(json_object_get(k, "revoked")) ? "revoked" : "active",
                   str_or(k, "createdAt", "-"), str_or(k, "lastUsedAt", "never"),
                   str_or(k, "name", ""));
        }
    }
    status = 0;
out:
    json_decref(arr);
    dbpool_free(db);
    return status;
}

static int keys_revoke(cli_ctx *ctx)
{
    if (ctx->argc != 3) {
        usage(stderr);
        return 2;
    }
    const char *ref = ctx->argv[2];
    dbpool *db = open_db(ctx->cfg);
    if (!db)
        return 1;
    char err[512];
    json_t *doc = NULL;
    int rc = auth_keys_revoke(db, ref, &doc, err, sizeof err), status = 1;
    if (rc == 0) {
        printf("revoked %s (%s)\n", str_or(doc, "id", ref), str_or(doc, "prefix", ""));
        status = 0;
    } else if (rc == 1) {
        fprintf(stderr, "minicrm keys revoke: no key matches %s\n", ref);
    } else if (rc == 2) {
        fprintf(stderr, "minicrm keys revoke: %s matches several keys; use the id\n", ref);
    } else {
        fprintf(stderr, "minicrm keys revoke: %s\n", err);
        status = strstr(err, "expected") ? 2 : 1;
    }
    json_decref(doc);
    dbpool_free(db);
    return status;
}

int cmd_keys(cli_ctx *ctx)
{
    static const cli_sub subs[] = {
        {"create", keys_create}, {"list", keys_list}, {"revoke", keys_revoke}, {NULL, NULL}};
    return cli_dispatch(ctx, "keys", subs, usage);
}
