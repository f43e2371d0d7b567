/*
 * test_libparts: unit tests of the lib modules the API owns: rules (audience rules -> MongoDB
 * filter), template (message placeholders) and hmac (receipt signatures).
 */
#include "hmac.h"
#include "rules.h"
#include "template.h"
#include "test.h"

#include <bson/bson.h>
#include <jansson.h>

static int parse(const char *json, rules *r, char *err, size_t n)
{
    json_error_t je;
    json_t *o = json_loads(json, 0, &je);
    if (!o) {
        snprintf(err, n, "bad test json");
        return -2;
    }
    int rc = rules_parse_json(o, r, err, n);
    json_decref(o);
    return rc;
}

/* The filter as canonical extended JSON, for exact comparison. */
static char *filter_json(const rules *r, int64_t now)
{
    bson_t f = BSON_INITIALIZER;
    rules_filter(r, now, &f);
    char *s = bson_as_canonical_extended_json(&f, NULL);
    bson_destroy(&f);
    return s;
}

TEST(rules_empty_matches_everyone_not_suppressed)
{
    rules r;
    char err[256];
    CHECK_INT_EQ(parse("{}", &r, err, sizeof err), 0);
    char *s = filter_json(&r, 1000);
    CHECK_STR_EQ(s, "{ \"suppressed\" : { \"$ne\" : true } }");
    bson_free(s);
}

TEST(rules_all_keys_one_filter)
{
    rules r;
    char err[256];
    CHECK_INT_EQ(parse("{\"min_spend\": 100, \"max_spend\": \"5000\", \"inactive_days\": 30,"
                       " \"recent_signup\": 7, \"email_domain\": \"@Example.CO.uk\"}",
                       &r, err, sizeof err),
                 0);
    int64_t now = INT64_C(1700000000000);
    char *s = filter_json(&r, now);
    char want[1024];
    snprintf(want, sizeof want,
             "{ \"total_spend\" : { \"$gte\" : { \"$numberDouble\" : \"100.0\" }, \"$lte\" : { "
             "\"$numberDouble\" : \"5000.0\" } }, \"last_visit_date\" : { \"$lte\" : { \"$date\" "
             ": { \"$numberLong\" : \"%lld\" } } }, \"createdAt\" : { \"$gte\" : { \"$date\" : { "
             "\"$numberLong\" : \"%lld\" } } }, \"email_domain\" : \"example.co.uk\", "
             "\"suppressed\" : { \"$ne\" : true } }",
             (long long)(now - 30LL * 86400000), (long long)(now - 7LL * 86400000));
    CHECK_STR_EQ(s, want);
    bson_free(s);
}

/* The stored side of the email_domain rule: what every writer of customer1 puts in
 * RULES_DOMAIN_FIELD. */
TEST(rules_email_domain_of_an_address)
{
    char d[16];
    CHECK_STR_EQ(rules_email_domain("Ann@Example.CO.uk", d, sizeof d), "example.co.uk");
    CHECK_STR_EQ(rules_email_domain("a@b@c.io", d, sizeof d), "c.io");
    CHECK_STR_EQ(rules_email_domain("no-at-sign", d, sizeof d), "");
    CHECK_STR_EQ(rules_email_domain("x@a-very-long-domain.example", d, sizeof d),
                 "a-very-long-dom");
}

/* The audience count's split: {f: {$ne: v}} leaves the filter, {f: v} is the part to subtract. */
TEST(rules_split_of_a_ne_term)
{
    bson_error_t e;
    bson_t *f = bson_new_from_json(
        (const uint8_t *)"{\"total_spend\": {\"$gte\": 5}, \"suppressed\": {\"$ne\": true}, "
                         "\"email_domain\": \"x.io\"}",
        -1, &e);
    bson_t base = BSON_INITIALIZER, minus = BSON_INITIALIZER;
    CHECK(rules_filter_split_ne(f, &base, &minus));
    char *b = bson_as_relaxed_extended_json(&base, NULL),
         *m = bson_as_relaxed_extended_json(&minus, NULL);
    CHECK_STR_EQ(b, "{ \"total_spend\" : { \"$gte\" : 5 }, \"email_domain\" : \"x.io\" }");
    CHECK_STR_EQ(m, "{ \"total_spend\" : { \"$gte\" : 5 }, \"email_domain\" : \"x.io\", "
                    "\"suppressed\" : true }");
    bson_free(b);
    bson_free(m);
    bson_destroy(&base);
    bson_destroy(&minus);
    bson_destroy(f);
    /* no term, two terms, a $ne among other operators, an array operand: no split */
    static const char *const none[] = {"{\"a\": 1}", "{\"a\": {\"$ne\": 1}, \"b\": {\"$ne\": 2}}",
                                       "{\"a\": {\"$ne\": 1, \"$gt\": 0}}",
                                       "{\"a\": {\"$ne\": [1]}}", NULL};
    for (int i = 0; none[i]; i++) {
        f = bson_new_from_json((const uint8_t *)none[i], -1, &e);
        bson_init(&base);
        bson_init(&minus);
        CHECK(!rules_filter_split_ne(f, &base, &minus));
        bson_destroy(&base);
        bson_destroy(&minus);
        bson_destroy(f);
    }
}

TEST(rules_rejections_name_the_key)
{
    rules r;
    char err[256];
    CHECK_INT_EQ(parse("{\"min_spnd\": 1}", &r, err, sizeof err), -1);
    CHECK_STR_CONTAINS(err, "rules.min_spnd");
    CHECK_INT_EQ(parse("{\"min_spend\": -1}", &r, err, sizeof err), -1);
    CHECK_STR_CONTAINS(err, "rules.min_spend");
    CHECK_INT_EQ(parse("{\"min_spend\": true}", &r, err, sizeof err), -1);
    CHECK_STR_CONTAINS(err, "rules.min_spend");
    CHECK_INT_EQ(parse("{\"inactive_days\": 2.5}", &r, err, sizeof err), -1);
    CHECK_STR_CONTAINS(err, "rules.inactive_days");
    CHECK_INT_EQ(parse("{\"recent_signup\": 0}", &r, err, sizeof err), -1);
    CHECK_STR_CONTAINS(err, "rules.recent_signup");
    CHECK_INT_EQ(parse("{\"min_spend\": 10, \"max_spend\": 5}", &r, err, sizeof err), -1);
    CHECK_STR_CONTAINS(err, "rules.max_spend");
    CHECK_INT_EQ(parse("{\"email_domain\": \"a..b\"}", &r, err, sizeof err), -1);
    CHECK_STR_CONTAINS(err, "rules.email_domain");
    CHECK_INT_EQ(parse("{\"email_domain\": \"x.com$|.*\"}", &r, err, sizeof err), -1);
    CHECK_INT_EQ(parse("{\"email_domain\": 5}", &r, err, sizeof err), -1);
    CHECK_INT_EQ(parse("[]", &r, err, sizeof err), -1);
    CHECK_STR_CONTAINS(err, "rules");
    /* null and "" are "not set", as the original front end sends them */
    CHECK_INT_EQ(parse("{\"min_spend\": null, \"inactive_days\": \"\"}", &r, err, sizeof err), 0);
    CHECK_INT_EQ(r.has, 0);
}

TEST(rules_bson_roundtrip)
{
    rules r, r2;
    char err[256];
    CHECK_INT_EQ(parse("{\"min_spend\": 4000, \"inactive_days\": 30, \"email_domain\": \"x.io\"}",
                       &r, err, sizeof err),
                 0);
    bson_t doc = BSON_INITIALIZER;
    CHECK(rules_append_bson(&r, &doc));
    int rc = rules_parse_bson(&doc, &r2, err, sizeof err);
    bson_destroy(&doc);
    CHECK_INT_EQ(rc, 0);
    CHECK_INT_EQ(r2.has, r.has);
    CHECK(r2.min_spend == 4000.0);
    CHECK_INT_EQ(r2.inactive_days, 30);
    CHECK_STR_EQ(r2.email_domain, "x.io");
}

TEST(template_render_and_validate)
{
    char out[256], err[256];
    template_vars v = {"Asha", "asha@x.io", 4500};
    CHECK_INT_EQ(template_render(NULL, &v, out, sizeof out), (long)strlen(out));
    CHECK_STR_EQ(out, "Hi Asha, thanks for being with us! Here's a special offer just for you.");
    template_render("{{ name }} <{{email}}> spent {{total_spend}}", &v, out, sizeof out);
    CHECK_STR_EQ(out, "Asha <asha@x.io> spent 4500");
    v.total_spend = 12.5;
    template_render("{{total_spend}}", &v, out, sizeof out);
    CHECK_STR_EQ(out, "12.5");
    CHECK_INT_EQ(template_validate("Hello {{nme}}", err, sizeof err), -1);
    CHECK_STR_CONTAINS(err, "{{nme}}");
    CHECK_INT_EQ(template_validate("Hello {{name", err, sizeof err), -1);
    CHECK_STR_CONTAINS(err, "unclosed");
    CHECK_INT_EQ(template_validate("", err, sizeof err), -1);
    CHECK_INT_EQ(template_validate("single {name} braces are text", err, sizeof err), 0);
    /* truncation reports the full length, output stays terminated */
    char small[8];
    long n = template_render("{{name}} and more text", &v, small, sizeof small);
    CHECK_INT_EQ(n, (long)strlen("Asha and more text"));
    CHECK_STR_EQ(small, "Asha an");
}

TEST(hmac_vectors_and_compare)
{
    char out[HMAC_HEX_LEN + 1];
    /* RFC 4231 test case 2 */
    CHECK_INT_EQ(hmac_sha256_hex("Jefe", 4, "what do ya want for nothing?", 28, out), 0);
    CHECK_STR_EQ(out, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* timestamped receipt signature == HMAC over "ts.body" */
    char a[HMAC_HEX_LEN + 1], b[HMAC_HEX_LEN + 1];
    hmac_sign_receipt("s3cret", "1700000000", "{\"x\":1}", 7, a);
    hmac_sha256_hex("s3cret", 6, "1700000000.{\"x\":1}", 18, b);
    CHECK_STR_EQ(a, b);
    hmac_sign_receipt("s3cret", NULL, "{\"x\":1}", 7, b);
    CHECK(strcmp(a, b) != 0);
    CHECK(hmac_equal_hex(a, a));
    char upper[HMAC_HEX_LEN + 1];
    for (int i = 0; i <= HMAC_HEX_LEN; i++)
        upper[i] = (a[i] >= 'a' && a[i] <= 'f') ? (char)(a[i] - 32) : a[i];
    CHECK(hmac_equal_hex(a, upper));
    CHECK(!hmac_equal_hex(a, b));
    CHECK(!hmac_equal_hex(a, ""));
    CHECK(!hmac_equal_hex(a, NULL));
    char shorter[HMAC_HEX_LEN];
    memcpy(shorter, a, HMAC_HEX_LEN - 1);
    shorter[HMAC_HEX_LEN - 1] = '\0';
    CHECK(!hmac_equal_hex(a, shorter));
}

TEST_MAIN(TEST_ENTRY(rules_empty_matches_everyone_not_suppressed),
          TEST_ENTRY(rules_all_keys_one_filter), TEST_ENTRY(rules_email_domain_of_an_address),
          TEST_ENTRY(rules_split_of_a_ne_term), TEST_ENTRY(rules_rejections_name_the_key),
          TEST_ENTRY(rules_bson_roundtrip), TEST_ENTRY(template_render_and_validate),
          TEST_ENTRY(hmac_vectors_and_compare))
