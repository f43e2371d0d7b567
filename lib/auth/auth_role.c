/* auth_role: see auth_role.h. */
#include "auth_role.h"

#include <string.h>

const char *auth_role_name(auth_role role)
{
    switch (role) {
    case AUTH_ROLE_ADMIN:
        return "admin";
    case AUTH_ROLE_STAFF:
        return "staff";
    default:
        return "none";
    }
}

int auth_role_parse(const char *s, auth_role *out)
{
    if (s && !strcmp(s, "admin"))
        *out = AUTH_ROLE_ADMIN;
    else if (s && !strcmp(s, "staff"))
        *out = AUTH_ROLE_STAFF;
    else
        return -1;
    return 0;
}
