/*
 * redact: hide the secrets inside values before they are shown (terminal, logs, state files).
 *
 * redact_url() masks the password in a URL's userinfo, keeping everything a reader needs to
 * recognise the target:
 *   redis://:pw@h:6379/0           -> redis://:***@h:6379/0
 *   mongodb://u:pw@h1,h2/db?x=1    -> mongodb://u:***@h1,h2/db?x=1
 *   redis://token@h                -> "***" in place of token (a lone userinfo may be a password)
 * The authority is what follows "scheme://" up to the first '/', '?' or '#'; its userinfo ends
 * at the LAST '@' in it, so an unescaped '@' inside a password is masked too, while an '@' in
 * the path or query (?u=a@b) is left alone. Text that is not "scheme://..." or has no
 * userinfo is copied unchanged. Pure function: no allocation, thread-safe.
 */
#ifndef MINICRM_REDACT_H
#define MINICRM_REDACT_H

#include <stddef.h>

/* Write `url` with its userinfo password replaced by "***" into buf (always NUL-terminated,
 * truncated to n - 1 bytes; the cut never shows more of the password than the whole would).
 * NULL url gives "". Returns buf. */
const char *redact_url(const char *url, char *buf, size_t n);

#endif
