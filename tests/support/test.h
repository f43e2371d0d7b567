/*
 * test.h: the in-process test harness (after libuv's test/task.h).
 *
 * A test file defines TEST(name) functions and lists them in a TEST_MAIN(...) table. Each
 * CHECK* macro records a failure with file:line and the values involved and returns from the
 * current test, so one broken case does not hide the others. The program prints one line per
 * test and a closing "N passed, N failed, N skipped" line; ctest runs each test file as one
 * test. `./test_x name...` runs the named tests only.
 *
 * A test that cannot run here (no privilege for a tmpfs, an external Redis/MongoDB it may not
 * kill) calls TEST_SKIP("why"): the reason is printed and the case counts as skipped, never as
 * passed. Exit status: 1 if any case failed, else TEST_SKIP_CODE (77, ctest's
 * SKIP_RETURN_CODE, set on every test in tests/CMakeLists.txt) if any case was skipped, else 0.
 * So a file with one skipped case shows as "Skipped" in ctest, and its output says which case
 * and why. A whole program that cannot run returns test_skip_program("why") from main().
 */
#ifndef MINICRM_TEST_H
#define MINICRM_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*test_fn)(void);
typedef struct {
    const char *name;
    test_fn fn;
} test_case;

extern int test_failed_flag;
extern int test_skipped_flag;

/* The exit status ctest reads as "skipped" (SKIP_RETURN_CODE). */
enum { TEST_SKIP_CODE = 77 };

#define TEST(name) static void test_##name(void)
#define TEST_ENTRY(name)                                                                           \
    {                                                                                              \
#name, test_##name                                                                         \
    }

#define TEST_FAIL_(...)                                                                            \
    do {                                                                                           \
        fprintf(stderr, "  FAIL %s:%d: ", __FILE__, __LINE__);                                     \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        test_failed_flag = 1;                                                                      \
        return;                                                                                    \
    } while (0)

/* Stop the current test and report it skipped with the reason (printf-style). */
#define TEST_SKIP(...)                                                                             \
    do {                                                                                           \
        fprintf(stdout, "  SKIP %s:%d: ", __FILE__, __LINE__);                                     \
        fprintf(stdout, __VA_ARGS__);                                                              \
        fprintf(stdout, "\n");                                                                     \
        test_skipped_flag = 1;                                                                     \
        return;                                                                                    \
    } while (0)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            TEST_FAIL_("CHECK(%s)", #cond);                                                        \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond))                                                                               \
            TEST_FAIL_(__VA_ARGS__);                                                               \
    } while (0)

#define CHECK_INT_EQ(a, b)                                                                         \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_)                                                                              \
            TEST_FAIL_("%s == %s: %lld != %lld", #a, #b, a_, b_);                                  \
    } while (0)

#define CHECK_STR_EQ(a, b)                                                                         \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                                     \
            TEST_FAIL_("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)",                   \
                       b_ ? b_ : "(null)");                                                        \
    } while (0)

#define CHECK_STR_CONTAINS(hay, needle)                                                            \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (!h_ || !strstr(h_, n_))                                                                \
            TEST_FAIL_("%s contains \"%s\": got \"%s\"", #hay, n_, h_ ? h_ : "(null)");            \
    } while (0)

/* Runs the listed tests (or only those named in argv[1..]); returns the exit status. */
int test_run_all(const char *file, const test_case *cases, size_t n, int argc, char **argv);

/* For main(): print why the whole program cannot run here and return TEST_SKIP_CODE. */
int test_skip_program(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define TEST_MAIN(...)                                                                             \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        static const test_case cases_[] = {__VA_ARGS__};                                           \
        return test_run_all(__FILE__, cases_, sizeof cases_ / sizeof cases_[0], argc, argv);       \
    }

#endif
