/*
 * httpc: the CLI's small JSON-over-HTTP client (libcurl), for commands that drive a running
 * API the way any client would (`seed`, `demo`).
 *
 * One httpc per thread: it keeps one curl easy handle, so consecutive requests reuse the
 * keep-alive connection. Responses are capped (8 MiB) and parsed as JSON when they are JSON.
 */
#ifndef MINICRM_CLI_HTTPC_H
#define MINICRM_CLI_HTTPC_H

#include <jansson.h>

typedef struct httpc httpc;

/* base: "http://127.0.0.1:5000"; bearer: API key or NULL. Both copied. NULL on OOM. */
httpc *httpc_new(const char *base, const char *bearer, int timeout_ms);
void httpc_free(httpc *h);

/* Send `method` `path` with an optional JSON body (not stolen). Returns the HTTP status, or -1
 * with a transport error message in err. *out (if non-NULL) receives the parsed JSON body
 * (new reference, NULL if the body was not JSON). */
long httpc_json(httpc *h, const char *method, const char *path, const json_t *body, json_t **out,
                char *err, size_t errlen);

#endif
