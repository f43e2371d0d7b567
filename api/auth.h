/*
 * auth: the authentication module of minicrm-api, the HTTP side: the module hook below
 * (auth_module_init, auth_module_shutdown, auth_register_routes, auth_authenticate) on top of
 * the lib/auth building blocks:
 *
 *   auth_oauth    Google OAuth 2.0 code flow, state + PKCE        GET /auth/google[/callback]
 *   auth_session  Redis sessions and the `sid` cookie             GET /auth/me, POST /auth/logout
 *   auth_keys     hashed API keys (Authorization: Bearer mck_...) POST/GET/DELETE /api/keys
 *   auth_users    users collection and roles                      GET /api/users
 *
 * Credentials, in order: an `Authorization: Bearer` header decides alone (a bad key is 401 even
 * with a valid cookie, so a script never silently runs as the browser's user); otherwise the
 * `sid` cookie. See api/AUTH.md for the flows.
 */
#ifndef MINICRM_API_AUTH_H
#define MINICRM_API_AUTH_H

#include "app.h"

#include <stddef.h>

/* Called once in main.c right after the configuration is loaded, before threads: makes sure
 * auth.session_secret is set (a random one per start when SESSION_SECRET is not given, with a
 * warning that logins then end at every restart). 0, or -1 with a message in err. */
int auth_module_prepare(minicrm_config *cfg, char *err, size_t errlen);
/* Called once in main.c after the pools exist and before routes are registered. 0, or -1 with
 * a message in err (the program then exits 2). */
int auth_module_init(api_ctx *app, char *err, size_t errlen);
/* Called once at exit, after the daemon stopped. Frees app->auth. */
void auth_module_shutdown(api_ctx *app);
/* Adds the module's routes (/auth/..., /api/keys...) to the table. 0, or -1. */
int auth_register_routes(router *r);
/* Identify the caller of `req` (session cookie or `Authorization: Bearer`); an
 * api_authenticate_fn, installed by main.c as app->authenticate. Thread-safe. */
int auth_authenticate(api_ctx *app, http_request *req, principal *out);

#endif
