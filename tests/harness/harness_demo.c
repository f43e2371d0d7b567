/*
 * harness_demo: a tiny test program for test_harness (not a ctest test itself). Its cases
 * pass, skip or fail on purpose; `harness_demo NAME...` runs the named ones, and
 * `harness_demo --skip-program` skips the whole program the way a main() that cannot run does.
 */
#include "test.h"

TEST(passes)
{
    CHECK_INT_EQ(1 + 1, 2);
}

TEST(skips)
{
    TEST_SKIP("no %s here", "tmpfs");
    CHECK_MSG(0, "not reached: TEST_SKIP returns from the case");
}

TEST(fails)
{
    CHECK_INT_EQ(1 + 1, 3);
}

/* A failed check before a skip: reported as failed, never hidden by the skip. */
TEST(fails_then_skips)
{
    int failed_first = 1;
    if (failed_first) {
        fprintf(stderr, "  FAIL %s:%d: first check\n", __FILE__, __LINE__);
        test_failed_flag = 1;
    }
    TEST_SKIP("after a failure");
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {TEST_ENTRY(passes), TEST_ENTRY(skips), TEST_ENTRY(fails),
                                      TEST_ENTRY(fails_then_skips)};
    if (argc > 1 && strcmp(argv[1], "--skip-program") == 0)
        return test_skip_program("harness_demo: %s", "cannot run here");
    return test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
}
