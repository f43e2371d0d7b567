/*
 * session: how CLI commands that drive the HTTP API (`seed`, `demo`) authenticate.
 *
 * The CLI has the database credentials (it runs where the operator runs `minicrm keys`), so
 * it creates a temporary staff API key directly in the api_keys collection, uses it as any
 * client would (Bearer), and revokes it when the command ends. No long-lived key is written
 * to disk and nothing needs Google.
 */
#ifndef MINICRM_CLI_SESSION_H
#define MINICRM_CLI_SESSION_H

#include "config.h"
#include "dbpool.h"
#include "httpc.h"

typedef struct cli_session {
    dbpool *db;
    char key[64];
    char key_id[25];
    char base[256];
} cli_session;

/* Open: connect to MongoDB and create the temporary key; base defaults to
 * http://127.0.0.1:<api.port>. 0, or -1 with a message in err. */
int cli_session_open(cli_session *s, const minicrm_config *cfg, const char *base,
                     const char *purpose, char *err, size_t errlen);
/* The same with a temporary key of another role (AUTH_ROLE_ADMIN for `campaigns cancel`). */
int cli_session_open_as(cli_session *s, const minicrm_config *cfg, const char *base,
                        const char *purpose, int role, char *err, size_t errlen);
/* A client on the session's API and key (caller frees with httpc_free). */
httpc *cli_session_client(const cli_session *s);
/* Revoke the key and disconnect. NULL-safe, idempotent. */
void cli_session_close(cli_session *s);

#endif
