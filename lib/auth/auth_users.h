/*
 * auth_users: the `users` collection and who gets which role (auth_role.h).
 *
 * Who may log in (auth_users_admit, checked by auth_users_login before anything is written):
 * a Google account whose provider says `email_verified: true` and whose email is listed in
 * auth.allowed_emails or whose domain (the part after the last '@') is listed in
 * auth.allowed_domains (comma-separated, case-insensitive, exact: "example.com" does not admit
 * "sub.example.com"; a leading '@' is ignored). Both lists empty: no Google login at all.
 *
 * A user is created or refreshed at every admitted login (auth_users_login):
 *   {_id, google_sub (unique), email (lower case), displayName, role, firstLogin, lastLogin}.
 * Roles: `admin` manages API keys (and users); `staff` uses the CRM. A login makes a user admin
 * exactly when their verified email is listed in auth.admin_emails; everyone else is staff. The
 * role is recomputed at every login, so taking an email off the list demotes that user at their
 * next login. Nobody becomes admin by being first: without auth.admin_emails the only admins
 * are admin API keys (`minicrm keys create --role admin`).
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

typedef struct auth_user {
    char id[25]; /* ObjectId hex of the users document */
    char email[320];
    char display_name[256];
    auth_role role;
} auth_user;

/* True if `email` is in the comma-separated list (case-insensitive, spaces trimmed). */
bool auth_users_listed(const char *admin_emails, const char *email);

/* Why a login is refused (auth_users_admit). */
typedef enum {
    AUTH_ADMIT_OK = 0,
    AUTH_ADMIT_NO_LIST,     /* auth.allowed_domains and auth.allowed_emails are both empty */
    AUTH_ADMIT_UNVERIFIED,  /* the provider did not say email_verified: true */
    AUTH_ADMIT_NOT_ALLOWED, /* neither the email nor its domain is listed */
} auth_admit;

/* May this identity log in? (see above) */
auth_admit auth_users_admit(const minicrm_config *cfg, const char *email, bool email_verified);
/* A short stable code for a refusal ("not_allowed", ...), used in URLs and logs. */
const char *auth_admit_code(auth_admit a);

/* Create or refresh the user for a provider identity and decide the role (see above).
 * Returns 0 with *out filled, a positive auth_admit when the login is refused (nothing is
 * written), or -1 with err (database unreachable). */
int auth_users_login(dbpool *db, const minicrm_config *cfg, const char *sub, const char *email,
                     const char *display_name, bool email_verified, auth_user *out, char *err,
                     size_t errlen);

/* Create a unique ascending index {field: 1} named "<field>_1" on `coll` (idempotent).
 * 0, or -1 with err. */
int auth_db_unique_index(dbpool *db, const char *coll, const char *field, char *err, size_t errlen);

/* Create the unique index on users.google_sub (idempotent). 0 or -1 with err. */
int auth_users_ensure_indexes(dbpool *db, char *err, size_t errlen);

#endif
