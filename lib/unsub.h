/*
 * unsub: one-click unsubscribe links (RFC 8058): the token of a log, its check, the URL every
 * send carries and the two mail headers a vendor connector puts on the message.
 *
 *   token = base64url(log id, 12 bytes || first 12 bytes of HMAC-SHA256(K, "u1" || log id))
 *           (32 characters, no padding; no login needed, and one token reveals no other: the
 *           MAC is 96 bits, a guess is checked in constant time)
 *   K     = api.unsubscribe_secret when set, else HMAC-SHA256(receipts.vendor_secret,
 *           "minicrm unsubscribe token key v1") (a domain-separated key: a receipt signature
 *           can never be a token and the reverse)
 *   url   = api.public_url (empty: http://api.bind:api.port, 0.0.0.0 read as 127.0.0.1)
 *           + "/u/" + token
 *   headers  List-Unsubscribe: <url>
 *            List-Unsubscribe-Post: List-Unsubscribe=One-Click
 *
 * Every send job carries its url (lib/jobs "unsubscribe_url"); the connector that hands the
 * message to a real vendor writes the headers with unsub_headers(). POST {url} with the body
 * List-Unsubscribe=One-Click suppresses the log's customer (api/routes_unsub.c).
 *
 * Cost: the HMAC's inner and outer SHA-256 states over the padded key are computed once per
 * signer; a token is then two SHA-256 blocks (bench: bench_unsub, in bench/README.md).
 *
 * A signer is immutable after creation and may be shared by threads (every call copies the
 * precomputed states into a context of its own). unsub_signer_get() keeps one per process.
 */
#ifndef MINICRM_UNSUB_H
#define MINICRM_UNSUB_H

#include "config.h"

#include <stdbool.h>
#include <stddef.h>

#define UNSUB_TOKEN_LEN 32  /* characters of a token */
#define UNSUB_URL_MAX   511 /* bytes of a url; buffers need UNSUB_URL_MAX + 1 */
#define UNSUB_BASE_MAX  400 /* bytes of the public base */
#define UNSUB_POST_BODY "List-Unsubscribe=One-Click"

typedef struct unsub_signer unsub_signer;

/* A signer with key `key` (keylen bytes, copied) and public base `base` (no trailing '/'
 * needed; copied). NULL if OpenSSL fails or base is longer than UNSUB_BASE_MAX. */
unsub_signer *unsub_signer_new(const void *key, size_t keylen, const char *base);
/* NULL-safe. */
void unsub_signer_free(unsub_signer *s);

/* The signer of this process for cfg (K and base as above), made at the first call and kept
 * until exit; later calls return the same one whatever cfg they pass (a process has one
 * configuration). Thread-safe. NULL if OpenSSL fails. */
const unsub_signer *unsub_signer_get(const minicrm_config *cfg);

/* The public base of cfg into out (see above). Its length, or -1 if it does not fit. */
int unsub_public_base(const minicrm_config *cfg, char *out, size_t cap);

/* The token of log log_hex (24 hex digits). 0, or -1 (not a log id, OpenSSL failure). */
int unsub_token(const unsub_signer *s, const char *log_hex, char out[UNSUB_TOKEN_LEN + 1]);
/* Check a token (NUL-terminated): 0 with the log id in log_hex (24 lower-case hex), or -1 for
 * anything malformed, tampered with or signed under another key. */
int unsub_token_check(const unsub_signer *s, const char *token, char log_hex[25]);
/* base + "/u/" + token into out (cap >= UNSUB_URL_MAX + 1 always fits). Its length, or -1. */
int unsub_url(const unsub_signer *s, const char *log_hex, char *out, size_t cap);

/* The two header lines for a message with this url, "\r\n"-separated, into out:
 * "List-Unsubscribe: <url>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click".
 * Its length, or -1 if it does not fit. */
int unsub_headers(const char *url, char *out, size_t cap);

#endif
