/* Tests of lib/redact: the userinfo of a URL is masked, everything else is kept. */
#include "redact.h"
#include "test.h"

static const char *R(const char *url)
{
    static char buf[512];
    return redact_url(url, buf, sizeof buf);
}

TEST(masks_the_password_keeps_the_rest)
{
    CHECK_STR_EQ(R("redis://:pw@h"), "redis://:***@h");
    CHECK_STR_EQ(R("redis://:s3cret@127.0.0.1:6379/0"), "redis://:***@127.0.0.1:6379/0");
    CHECK_STR_EQ(R("mongodb://u:pw@h/db?x"), "mongodb://u:***@h/db?x");
    CHECK_STR_EQ(R("mongodb://app:pw@h1:27017,h2:27018/crm?replicaSet=rs0&authSource=admin"),
                 "mongodb://app:***@h1:27017,h2:27018/crm?replicaSet=rs0&authSource=admin");
    CHECK_STR_EQ(R("mongodb+srv://u:p%40ss@cluster0.example.net/db"),
                 "mongodb+srv://u:***@cluster0.example.net/db");
    CHECK_STR_EQ(R("http://user:pw@localhost:5000"), "http://user:***@localhost:5000");
}

TEST(odd_userinfo)
{
    /* a lone userinfo may be a token or a Redis password: masked whole */
    CHECK_STR_EQ(R("redis://token@h:6379"), "redis://***@h:6379");
    /* an empty password is still shown as masked (nothing to learn from the shape) */
    CHECK_STR_EQ(R("redis://:@h"), "redis://:***@h");
    CHECK_STR_EQ(R("redis://@h"), "redis://***@h");
    /* an unescaped '@' or ':' inside the password: the last '@' of the authority ends it */
    CHECK_STR_EQ(R("mongodb://u:p@ss@h/db"), "mongodb://u:***@h/db");
    CHECK_STR_EQ(R("mongodb://u:a:b@h"), "mongodb://u:***@h");
    /* '@' after the authority is not userinfo */
    CHECK_STR_EQ(R("mongodb://h/db?appname=a@b"), "mongodb://h/db?appname=a@b");
    CHECK_STR_EQ(R("http://h/x@y#z@w"), "http://h/x@y#z@w");
    CHECK_STR_EQ(R("mongodb://u:pw@h?tls=true"), "mongodb://u:***@h?tls=true");
    CHECK_STR_EQ(R("redis://:pw@h#frag@x"), "redis://:***@h#frag@x");
    /* scheme case and characters */
    CHECK_STR_EQ(R("REDIS://:pw@h"), "REDIS://:***@h");
}

TEST(not_a_url_is_copied)
{
    CHECK_STR_EQ(R(NULL), "");
    CHECK_STR_EQ(R(""), "");
    CHECK_STR_EQ(R("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
    CHECK_STR_EQ(R("minicrm:"), "minicrm:");
    CHECK_STR_EQ(R("boss@example.com,ops@example.com"), "boss@example.com,ops@example.com");
    CHECK_STR_EQ(R("://u:pw@h"), "://u:pw@h");
    CHECK_STR_EQ(R("1redis://u:pw@h"), "1redis://u:pw@h");
    CHECK_STR_EQ(R("redis:/u:pw@h"), "redis:/u:pw@h");
}

TEST(truncation_never_shows_the_password)
{
    char small[16];
    const char *url = "mongodb://u:verysecretpassword@h/db";
    CHECK_STR_EQ(redact_url(url, small, sizeof small), "mongodb://u:***");
    CHECK(!strstr(small, "very"));
    char one[1];
    CHECK_STR_EQ(redact_url(url, one, 1), "");
    /* n == 0: nothing is written */
    char untouched[4] = "abc";
    CHECK(redact_url(url, untouched, 0) == untouched);
    CHECK_STR_EQ(untouched, "abc");
    /* a long URL is kept whole when it fits */
    char big[600], out[600];
    snprintf(big, sizeof big, "redis://:%0400d@h:1/0", 7);
    CHECK_STR_EQ(redact_url(big, out, sizeof out), "redis://:***@h:1/0");
}

TEST_MAIN(TEST_ENTRY(masks_the_password_keeps_the_rest), TEST_ENTRY(odd_userinfo),
          TEST_ENTRY(not_a_url_is_copied), TEST_ENTRY(truncation_never_shows_the_password))
