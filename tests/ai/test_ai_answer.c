/*
 * test_ai_answer: minicrm-ai's validation of model output (workers/aitask.c ai_answer_parse)
 * and its prompt (name and rules only), without services.
 */
#include "aitask.h"
#include "test.h"

#include <string.h>

TEST(accepts_good_answers)
{
    ai_answer a;
    char err[256];
    CHECK_INT_EQ(ai_answer_parse("{\"tags\":[\"Festive\",\"Gold \\u20b9 tier\"],"
                                 "\"message_draft\":\"Hi {{ name }},\\nsee you!\"}",
                                 &a, err, sizeof err),
                 0);
    CHECK_INT_EQ(a.ntags, 2);
    CHECK_STR_EQ(a.tags[1], "Gold \xe2\x82\xb9 tier");
    CHECK_STR_EQ(a.draft, "Hi {{ name }},\nsee you!");
}

TEST(rejects_off_schema_answers)
{
    static const char *const bad[][2] = {
        {"[\"a\",\"b\"]", "not a JSON object"},
        {"Sure, here you go", "not JSON"},
        {"{\"tags\":\"a, b\",\"message_draft\":\"Hi {{name}}\"}", "not a JSON array"},
        {"{\"tags\":[],\"message_draft\":\"Hi {{name}}\"}", "0 given"},
        {"{\"tags\":[\"a\",\"b\",\"c\",\"d\"],\"message_draft\":\"Hi {{name}}\"}", "4 given"},
        {"{\"tags\":[\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"],"
         "\"message_draft\":\"Hi {{name}}\"}",
         "longer than 50"},
        {"{\"tags\":[\"a\\u0007\"],\"message_draft\":\"Hi {{name}}\"}", "control"},
        {"{\"tags\":[\"  \"],\"message_draft\":\"Hi {{name}}\"}", "blank"},
        {"{\"tags\":[\"{{name}}\"],\"message_draft\":\"Hi {{name}}\"}", "{{"},
        {"{\"tags\":[7],\"message_draft\":\"Hi {{name}}\"}", "not a string"},
        {"{\"tags\":[\"a\"]}", "message_draft is not a string"},
        {"{\"tags\":[\"a\"],\"message_draft\":\"Hi there\"}", "no {{name}}"},
        {"{\"tags\":[\"a\"],\"message_draft\":\"Hi {{name}} {{email}}\"}", "{{email}}"},
        {"{\"tags\":[\"a\"],\"message_draft\":\"Hi {{name}} {{total_spend}}\"}", "unknown"},
        {"{\"tags\":[\"a\"],\"message_draft\":\"Hi {{name\"}", "unclosed"},
        {"{\"tags\":[\"a\"],\"message_draft\":\"Hi {{name}}\\u0000\"}", "control"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ai_answer a;
        char err[256] = "";
        CHECK_MSG(ai_answer_parse(bad[i][0], &a, err, sizeof err) == -1, "accepted: %s", bad[i][0]);
        CHECK_MSG(strstr(err, bad[i][1]), "%s: error \"%s\" lacks \"%s\"", bad[i][0], err,
                  bad[i][1]);
    }
    /* not UTF-8 */
    ai_answer a;
    char err[256];
    CHECK_INT_EQ(ai_answer_parse("{\"tags\":[\"\xc3\x28\"],\"message_draft\":\"Hi {{name}}\"}", &a,
                                 err, sizeof err),
                 -1);
    CHECK_STR_CONTAINS(err, "UTF-8");
    /* a draft over the cap */
    char big[1200] = "{\"tags\":[\"a\"],\"message_draft\":\"{{name}}";
    size_t n = strlen(big);
    memset(big + n, 'x', 1001);
    memcpy(big + n + 1001, "\"}", 3);
    CHECK_INT_EQ(ai_answer_parse(big, &a, err, sizeof err), -1);
    CHECK_STR_CONTAINS(err, "longer than 1000");
}

TEST(prompt_holds_name_and_rules_only)
{
    rules r = {.has = RULE_MIN_SPEND | RULE_EMAIL_DOMAIN, .min_spend = 4000};
    memcpy(r.email_domain, "example.com", 12);
    char p[2048];
    CHECK_INT_EQ(ai_user_prompt("VIP \"sale\"", &r, p, sizeof p), 0);
    CHECK_STR_CONTAINS(p, "\"campaign_name\":\"VIP \\\"sale\\\"\"");
    CHECK_STR_CONTAINS(p, "\"min_spend\":4000");
    CHECK_STR_CONTAINS(p, "\"email_domain\":\"example.com\"");
}

TEST_MAIN(TEST_ENTRY(accepts_good_answers), TEST_ENTRY(rejects_off_schema_answers),
          TEST_ENTRY(prompt_holds_name_and_rules_only))
