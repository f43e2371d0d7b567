/*
 * openai: one call to an OpenAI-compatible chat completions endpoint
 * (POST {openai.base_url}/chat/completions) over libcurl, for minicrm-ai.
 *
 * The call has a total timeout (CURLOPT_TIMEOUT_MS = openai.timeout_ms) and a cap on the answer
 * (OPENAI_MAX_REPLY_BYTES); the key travels only in the Authorization header and is never
 * written to a log, an error message or a result. The outcome is classified so the caller can
 * decide between retrying, failing and using the answer:
 *   OPENAI_OK         HTTP 200 with choices[0].message.content (a string) -> content, tokens
 *   OPENAI_RETRY      429, 5xx, timeout, connection trouble (retry_after_ms from Retry-After)
 *   OPENAI_BAD_REPLY  200 whose body is not the documented JSON (not UTF-8, no content...)
 *   OPENAI_REFUSED    any other 4xx (bad key, unknown model): retrying will not help
 *
 * Threads: an openai_client holds one curl handle (keep-alive) and is used by one thread.
 * Memory: result strings are owned by the result (openai_result_release).
 */
#ifndef MINICRM_OPENAI_H
#define MINICRM_OPENAI_H

#include "config.h"

#include <stddef.h>

#define OPENAI_MAX_REPLY_BYTES (256 * 1024)

typedef enum { OPENAI_OK = 0, OPENAI_RETRY, OPENAI_BAD_REPLY, OPENAI_REFUSED } openai_outcome;

typedef struct openai_result {
    openai_outcome outcome;
    long http_status;    /* 0 when no answer came */
    long retry_after_ms; /* from Retry-After on 429/503 (seconds or an HTTP date), else 0 */
    char *content;       /* OPENAI_OK: the model's message text (owned) */
    long long tokens;    /* usage.total_tokens of the answer (also of a rejected one), or 0 */
    char model[128];     /* the model the server says answered (or the one asked for) */
    char error[256];     /* what went wrong, without secrets */
} openai_result;

typedef struct openai_client openai_client;

/* A client for cfg's openai.* settings (borrowed; must outlive the client). NULL on no memory.
 * curl_global_init must have run. */
openai_client *openai_client_new(const minicrm_config *cfg);
void openai_client_free(openai_client *c); /* NULL-safe */

/* Ask for one completion of the system + user messages (JSON mode requested). Always fills
 * *out (release it with openai_result_release); returns out->outcome. */
openai_outcome openai_chat(openai_client *c, const char *system, const char *user,
                           openai_result *out);
void openai_result_release(openai_result *r);

#endif
