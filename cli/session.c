/* session: see session.h. */
#include "session.h"

#include "auth_keys.h"

#include <stdio.h>
#include <string.h>

int cli_session_open(cli_session *s, const minicrm_config *cfg, const char *base,
                     const char *purpose, char *err, size_t errlen)
{
    return cli_session_open_as(s, cfg, base, purpose, AUTH_ROLE_STAFF, err, errlen);
}

int cli_session_open_as(cli_session *s, const minicrm_config *cfg, const char *base,
                        const char *purpose, int role, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    if (base && *base)
        snprintf(s->base, sizeof s->base, "%s", base);
    else
        snprintf(s->base, sizeof s->base, "http://127.0.0.1:%d", cfg->api.port);
    s->db = dbpool_new(cfg->mongo.uri, 4, cfg->mongo.timeout_ms, "minicrm-cli", err, errlen);
    if (!s->db)
        return -1;
    json_t *doc = NULL;
    char name[128];
    snprintf(name, sizeof name, "minicrm %s (temporary)", purpose);
    if (auth_keys_create(s->db, (auth_role)role, name, "minicrm-cli", s->key, &doc, err, errlen) !=
        0) {
        dbpool_free(s->db);
        s->db = NULL;
        return -1;
    }
    snprintf(s->key_id, sizeof s->key_id, "%s", json_string_value(json_object_get(doc, "id")));
    json_decref(doc);
    return 0;
}

httpc *cli_session_client(const cli_session *s)
{
    return httpc_new(s->base, s->key, 30000);
}

void cli_session_close(cli_session *s)
{
    if (!s || !s->db)
        return;
    char err[256];
    if (s->key_id[0] && auth_keys_revoke(s->db, s->key_id, NULL, err, sizeof err) != 0)
        fprintf(stderr, "minicrm: could not revoke the temporary API key %s: %s\n", s->key_id, err);
    dbpool_free(s->db);
    s->db = NULL;
}
