/*
 * rules: campaign audience rules -> one MongoDB filter on customer1.
 *
 * Rules are a JSON object; every given rule must hold (AND); an empty object matches everyone:
 *   min_spend      number >= 0     total_spend >= v
 *   max_spend      number >= 0     total_spend <= v   (min_spend <= max_spend when both)
 *   inactive_days  integer 0..36500  last_visit_date <= now - v days (as in the original)
 *   recent_signup  integer 1..36500  createdAt >= now - v days
 *   email_domain   domain name     e-mail ends with "@" + domain, case-insensitive: the stored,
 *                                  normalised domain (RULES_DOMAIN_FIELD) equals it
 * Every filter also holds suppressed: {$ne: true}: a suppressed customer (lib/suppress) is in
 * no audience, whatever the rules.
 * For compatibility with the original front end, a number may also arrive as a numeric string
 * ("5000"), and a rule whose value is null or "" counts as absent. Any other key is rejected
 * with an error naming it.
 *
 * The same code is used by preview, campaign creation (API) and the fan-out worker, with `now`
 * fixed at campaign creation (campaigns1.rules_now) so every run selects the same customers.
 * The rules use only indexed fields (total_spend, last_visit_date, createdAt, email_domain); the
 * suppressed clause is checked on the documents those indexes (or the fan-out's _id order)
 * fetch, so it changes no plan; an audience count subtracts the suppressed customers matching
 * the rules, counted through the partial index of suppressed customers.
 *
 * Plain value type, no heap memory; functions are pure and thread-safe.
 */
#ifndef MINICRM_RULES_H
#define MINICRM_RULES_H

#include <bson/bson.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    RULE_MIN_SPEND = 1 << 0,
    RULE_MAX_SPEND = 1 << 1,
    RULE_INACTIVE_DAYS = 1 << 2,
    RULE_RECENT_SIGNUP = 1 << 3,
    RULE_EMAIL_DOMAIN = 1 << 4,
};

#define RULES_MAX_DAYS  36500
#define RULES_MAX_SPEND 1e12

typedef struct rules {
    unsigned has; /* RULE_* bits of the rules present */
    double min_spend;
    double max_spend;
    int64_t inactive_days;
    int64_t recent_signup;
    char email_domain[254]; /* lower case, without '@' */
} rules;

/* Validate a JSON rules object into *out. 0, or -1 with "rules.KEY: reason" in err. */
int rules_parse_json(const json_t *obj, rules *out, char *err, size_t errlen);
/* The same from a stored BSON document (campaigns1.rules). */
int rules_parse_bson(const bson_t *doc, rules *out, char *err, size_t errlen);

/* Append the rules present as fields of `doc` (caller-initialised), for storage. */
bool rules_append_bson(const rules *r, bson_t *doc);
/* The rules as a new JSON object (caller decrefs). */
json_t *rules_to_json(const rules *r);

/* The normalised e-mail domain of a customer, stored in its field RULES_DOMAIN_FIELD by every
 * writer of customer1 (API, seeders, tests' direct inserts) and indexed, so the email_domain
 * rule is one indexed equality instead of a regex over every e-mail. Documents stored without
 * it get it from the API's start-up back-fill (api/indexes.c). */
#define RULES_DOMAIN_FIELD "email_domain"

/* The customer's derived suppression flag (lib/suppress keeps it: true while the address is on
 * the suppression list). Every audience filter ends with {RULES_SUPPRESSED_FIELD: {$ne: true}}. */
#define RULES_SUPPRESSED_FIELD "suppressed"
/* The domain of e-mail address `email`: the part after its last '@', lower-cased (ASCII), into
 * out (n bytes, cut to n - 1); "" without an '@'. Returns out. */
const char *rules_email_domain(const char *email, char *out, size_t n);

/* Append the MongoDB filter for customers matching `r` at time now_ms to `filter`
 * (caller-initialised, normally empty). Returns false only if bson ran out of space. */
bool rules_filter(const rules *r, int64_t now_ms, bson_t *filter);

/* Split an audience filter for counting. A top-level term {f: {$ne: v}} (the suppression
 * clause, {suppressed: {$ne: true}}) makes a count read every document the other terms select;
 * count(F) - count(F and f == v) is the same number from two counts an index answers alone (F's
 * own index, and a small index of the documents with f == v). If filter has exactly one such
 * term, base (initialised by the caller, empty) gets the filter without it, minus (the same)
 * gets base plus {f: v}, and the result is true; else false. */
bool rules_filter_split_ne(const bson_t *filter, bson_t *base, bson_t *minus);

#endif
