/*
 * auth: the authentication module of minicrm-api. It implements the hook declared in app.h
 * (auth_module_init, auth_module_shutdown, auth_register_routes, auth_authenticate) on top of
 * the auth_* building blocks:
 *
 *   auth_oauth    Google OAuth 2.0 code flow, state + PKCE        GET /auth/google[/callback]
 *   auth_session  Redis sessions and the `sid` cookie             GET /auth/me, /auth/logout
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

#endif
