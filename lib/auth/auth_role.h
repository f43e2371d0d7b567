/*
 * auth_role: the one role enum of minicrm, with its text form.
 *
 * Roles are ordered: a route that needs AUTH_ROLE_STAFF admits staff and admins, one that needs
 * AUTH_ROLE_ADMIN admits admins only (the router compares with <). AUTH_ROLE_NONE is "not
 * logged in" and is never stored. The text form ("admin", "staff") is what the users and
 * api_keys documents, the Redis sessions, the HTTP answers ("role" fields, POST /api/keys) and
 * the CLI (`minicrm keys create --role`) use; every one of them goes through auth_role_name()
 * and auth_role_parse(), so a role has one spelling everywhere.
 *
 * Pure functions, thread-safe; names are static strings.
 */
#ifndef MINICRM_AUTH_ROLE_H
#define MINICRM_AUTH_ROLE_H

typedef enum { AUTH_ROLE_NONE = 0, AUTH_ROLE_STAFF = 1, AUTH_ROLE_ADMIN = 2 } auth_role;

/* "admin", "staff", or "none" (for AUTH_ROLE_NONE and anything out of range). */
const char *auth_role_name(auth_role role);
/* Parses "admin" / "staff" exactly (case-sensitive, as stored); 0 and *out set, or -1. */
int auth_role_parse(const char *s, auth_role *out);

#endif
