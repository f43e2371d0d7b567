/* test.c: the runner behind TEST_MAIN (see test.h). */
#include "test.h"

#include "timeutil.h"

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>

int test_failed_flag;
int test_skipped_flag;

static bool wanted(const char *name, int argc, char **argv)
{
    if (argc <= 1)
        return true;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], name) == 0)
            return true;
    }
    return false;
}

int test_run_all(const char *file, const test_case *cases, size_t n, int argc, char **argv)
{
    int passed = 0, failed = 0, skipped = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* A server the test killed or that hung up turns a write into EPIPE, not a dead test. */
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < n; i++) {
        if (!wanted(cases[i].name, argc, argv))
            continue;
        test_failed_flag = 0;
        test_skipped_flag = 0;
        int64_t t0 = time_mono_ms();
        cases[i].fn();
        int64_t dt = time_mono_ms() - t0;
        /* A failure before the skip still counts: a skip never hides a failed check. */
        if (test_failed_flag) {
            failed++;
            printf("not ok %s (%lld ms)\n", cases[i].name, (long long)dt);
        } else if (test_skipped_flag) {
            skipped++;
            printf("skip %s (%lld ms)\n", cases[i].name, (long long)dt);
        } else {
            passed++;
            printf("ok %s (%lld ms)\n", cases[i].name, (long long)dt);
        }
    }
    printf("%s: %d passed, %d failed, %d skipped\n", file, passed, failed, skipped);
    if (argc > 1 && passed + failed + skipped == 0) {
        fprintf(stderr, "no test named %s\n", argv[1]);
        return 2;
    }
    if (failed)
        return 1;
    return skipped ? TEST_SKIP_CODE : 0;
}

int test_skip_program(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("SKIP: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    return TEST_SKIP_CODE;
}
