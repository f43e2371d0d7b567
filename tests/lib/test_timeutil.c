/* Unit tests for lib/timeutil: ISO-8601 round trips, rejects, ObjectId hex checks. */
#include "test.h"
#include "timeutil.h"

TEST(format_epoch)
{
    char buf[32];
    CHECK_STR_EQ(time_format_iso8601(0, buf), "1970-01-01T00:00:00.000Z");
    CHECK_STR_EQ(time_format_iso8601(1769860800123LL, buf), "2026-01-31T12:00:00.123Z");
    CHECK_STR_EQ(time_format_iso8601(-1, buf), "1969-12-31T23:59:59.999Z");
}

TEST(parse_forms)
{
    int64_t ms;
    CHECK_INT_EQ(time_parse_iso8601("2026-01-31T12:00:00.123Z", &ms), 0);
    CHECK_INT_EQ(ms, 1769860800123LL);
    CHECK_INT_EQ(time_parse_iso8601("2026-01-31", &ms), 0);
    CHECK_INT_EQ(ms, 1769817600000LL);
    CHECK_INT_EQ(time_parse_iso8601("2026-01-31T14:00:00+02:00", &ms), 0);
    CHECK_INT_EQ(ms, 1769860800000LL);
    CHECK_INT_EQ(time_parse_iso8601("2024-02-29T00:00Z", &ms), 0);
}

TEST(parse_rejects)
{
    int64_t ms;
    const char *bad[] = {"",
                         "2026-02-30",
                         "2023-02-29",
                         "2026-13-01",
                         "2026-1-01",
                         "2026-01-31T25:00:00Z",
                         "yesterday",
                         "2026-01-31Tx",
                         "2026-01-31Z ",
                         "2026-01-31T12:00:00.Z"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_MSG(time_parse_iso8601(bad[i], &ms) == -1, "accepted \"%s\"", bad[i]);
}

TEST(round_trip)
{
    char buf[32];
    for (int64_t t = -86400000LL * 800; t < 86400000LL * 40000; t += 86400000LL * 37 + 12345) {
        int64_t back;
        CHECK_INT_EQ(time_parse_iso8601(time_format_iso8601(t, buf), &back), 0);
        CHECK_INT_EQ(back, t);
    }
}

TEST(oid_hex)
{
    CHECK(oid_is_valid_hex("507f1f77bcf86cd799439011"));
    CHECK(oid_is_valid_hex("507F1F77BCF86CD799439011"));
    CHECK(!oid_is_valid_hex("507f1f77bcf86cd79943901"));
    CHECK(!oid_is_valid_hex("507f1f77bcf86cd7994390111"));
    CHECK(!oid_is_valid_hex("507f1f77bcf86cd79943901g"));
    CHECK(!oid_is_valid_hex(NULL));
}

TEST_MAIN(TEST_ENTRY(format_epoch), TEST_ENTRY(parse_forms), TEST_ENTRY(parse_rejects),
          TEST_ENTRY(round_trip), TEST_ENTRY(oid_hex))
