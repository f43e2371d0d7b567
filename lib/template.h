/*
 * template: campaign message templates with {{name}}, {{email}} and {{total_spend}}.
 *
 * A template is plain text in which "{{ key }}" (spaces inside the braces allowed) is replaced
 * per customer. template_validate() rejects unknown placeholders (naming them), unclosed "{{",
 * and texts over TEMPLATE_MAX_BYTES; it runs at campaign creation so the fan-out worker only
 * ever renders valid templates. A NULL template means the original Mini CRM text,
 * TEMPLATE_DEFAULT ("Hi {name}, thanks for being with us! Here's a special offer just for you.").
 *
 * total_spend renders like a JavaScript number would for money: integers without decimals
 * ("4500"), otherwise up to two decimals ("12.5", "99.99").
 *
 * Pure functions over caller buffers; thread-safe.
 */
#ifndef MINICRM_TEMPLATE_H
#define MINICRM_TEMPLATE_H

#include <stddef.h>

#define TEMPLATE_MAX_BYTES 2000
#define TEMPLATE_DEFAULT                                                                           \
    "Hi {{name}}, thanks for being with us! Here's a special offer just for you."

typedef struct template_vars {
    const char *name;  /* NULL renders as "" */
    const char *email; /* NULL renders as "" */
    double total_spend;
} template_vars;

/* 0 if `tpl` is a valid template, else -1 with a message naming the problem in err. */
int template_validate(const char *tpl, char *err, size_t errlen);

/* Render `tpl` (NULL: TEMPLATE_DEFAULT) into out (size n), always NUL-terminated when n > 0.
 * Returns the full length the result needs (like snprintf: >= n means truncated), or -1 if the
 * template is invalid. */
long template_render(const char *tpl, const template_vars *v, char *out, size_t n);

/* Write total_spend as described above into buf; returns buf. */
const char *template_format_money(double v, char *buf, size_t n);

#endif
