/*
 * auth_users: the `users` collection and who gets which role (auth_role.h).
 *
 * A user is created or refreshed at every Google login (auth_users_login):
 *   {_id, google_sub (unique), email (lower case), displayName, role, firstLogin, lastLogin}.
 * Roles: `admin` manages API keys (and users); `staff` uses the CRM. Who is admin:
 *   - if auth.admin_emails lists any emails (comma-separated, case-insensitive), exactly the
 *     users whose *verified* email is listed; the role is recomputed at every login, so taking
 *     an email off the list demotes that user at their next login;
 *   - otherwise the first user ever to log in. The claim is race-free: the winner is whoever
 *     inserts the singleton document {_id: "first_admin"} into `auth_meta` (unique _id), so
 *     two simultaneous first logins cannot both become admin. Later logins keep stored roles.
 *
 * Thread-safe (each call borrows its own client from the pool). Callers own every buffer.
 */
#ifndef MINICRM_AUTH_USERS_H
#define MINICRM_AUTH_USERS_H

#include "auth_role.h"
#include "config.h"
#include "dbpool.h"

#include <stdbool.h>
#include <stddef.h>

#define DB_AUTH_META "auth_meta"

typedef struct auth_user {
    char id[25]; /* ObjectId hex of the users document */
    char email[320];
    char display_name[256];
    auth_role role;
} auth_user;

/* True if `email` is in the comma-separated list (case-insensitive, spaces trimmed). */
bool auth_users_listed(const char *admin_emails, const char *email);

/* Create or refresh the user for a provider identity and decide the role (see above).
 * Returns 0 with *out filled, or -1 with err (database unreachable). */
int auth_users_login(dbpool *db, const minicrm_config *cfg, const char *sub, const char *email,
                     const char *display_name, bool email_verified, auth_user *out, char *err,
                     size_t errlen);

/* Create a unique ascending index {field: 1} named "<field>_1" on `coll` (idempotent).
 * 0, or -1 with err. */
int auth_db_unique_index(dbpool *db, const char *coll, const char *field, char *err, size_t errlen);

/* Create the unique index on users.google_sub (idempotent). 0 or -1 with err. */
int auth_users_ensure_indexes(dbpool *db, char *err, size_t errlen);

#endif
