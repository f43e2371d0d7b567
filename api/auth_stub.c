/*
 * auth_stub: TEMPORARY stand-in for the authentication module. DELETE THIS FILE when api/auth.c
 * lands (the auth helper removes it and its line in api/CMakeLists.txt in the same commit).
 *
 * It implements the hook of app.h just enough for the rest of the API and its tests:
 *   Authorization: Bearer stub-admin  -> an admin principal
 *   Authorization: Bearer stub-staff  -> a staff principal
 * anything else is AUTH_NONE (401). GET /auth/me answers per the contract for those callers.
 * It logs a loud warning at start: it must never run in production.
 */
#include "app.h"
#include "http.h"
#include "log.h"
#include "router.h"

#include <stdio.h>
#include <string.h>

int auth_module_init(api_ctx *app, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    app->auth = NULL;
    log_warn("auth_stub_active", "msg=\"TEMPORARY auth stub: Bearer stub-admin/stub-staff\"");
    return 0;
}

void auth_module_shutdown(api_ctx *app)
{
    app->auth = NULL;
}

int auth_authenticate(api_ctx *app, http_request *req, principal *out)
{
    (void)app;
    memset(out, 0, sizeof *out);
    const char *h = http_header(req, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) != 0)
        return AUTH_NONE;
    const char *tok = h + 7;
    if (strcmp(tok, "stub-admin") == 0)
        out->role = ROLE_ADMIN;
    else if (strcmp(tok, "stub-staff") == 0)
        out->role = ROLE_STAFF;
    else
        return AUTH_NONE;
    out->kind = PRINCIPAL_API_KEY;
    snprintf(out->user_id, sizeof out->user_id, "000000000000000000000000");
    snprintf(out->email, sizeof out->email, "%s@stub.local", tok);
    snprintf(out->display_name, sizeof out->display_name, "%s", tok);
    return AUTH_OK;
}

static void h_me(api_ctx *app, http_request *req)
{
    principal p;
    if (auth_authenticate(app, req, &p) != AUTH_OK) {
        http_send_json(req, 401, json_pack("{s:b}", "loggedIn", 0));
        return;
    }
    http_send_json(req, 200,
                   json_pack("{s:b,s:{s:s,s:s,s:s}}", "loggedIn", 1, "user", "id", p.user_id,
                             "displayName", p.display_name, "email", p.email));
}

int auth_register_routes(router *r)
{
    return router_add(r, HTTP_GET, "/auth/me", h_me, ROUTE_PUBLIC, ROLE_NONE);
}
