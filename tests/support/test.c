/* test.c: the runner behind TEST_MAIN (see test.h). */
#include "test.h"

#include "timeutil.h"

#include <signal.h>

int test_failed_flag;

int test_run_all(const char *file, const test_case *cases, size_t n, int argc, char **argv)
{
    int passed = 0, failed = 0;
    const char *only = argc > 1 ? argv[1] : NULL;
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* A server the test killed or that hung up turns a write into EPIPE, not a dead test. */
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < n; i++) {
        if (only && strcmp(only, cases[i].name) != 0)
            continue;
        test_failed_flag = 0;
        int64_t t0 = time_mono_ms();
        cases[i].fn();
        int64_t dt = time_mono_ms() - t0;
        if (test_failed_flag) {
            failed++;
            printf("not ok %s (%lld ms)\n", cases[i].name, (long long)dt);
        } else {
            passed++;
            printf("ok %s (%lld ms)\n", cases[i].name, (long long)dt);
        }
    }
    printf("%s: %d passed, %d failed\n", file, passed, failed);
    if (only && passed + failed == 0) {
        fprintf(stderr, "no test named %s\n", only);
        return 2;
    }
    return failed ? 1 : 0;
}
