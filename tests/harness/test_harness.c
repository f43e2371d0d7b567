/*
 * test_harness: the test harness itself (tests/support/test.h).
 *
 * A skip must never be reported as a pass: harness_demo's cases are run in every combination
 * and the exit status checked (0 all passed, 77 something skipped and nothing failed, 1 a
 * failure), then a throw-away ctest project runs harness_demo's skipping case and ctest's own
 * output must say "Skipped", not "Passed". Last, every test of this build must carry
 * SKIP_RETURN_CODE 77, or a skip of a newly added test would show up as a failure.
 */
#include "test.h"
#include "testenv.h"

#include <jansson.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef HARNESS_DEMO
#error "HARNESS_DEMO (path of harness_demo) must be defined by the build"
#endif
#ifndef CTEST_COMMAND
#error "CTEST_COMMAND must be defined by the build"
#endif
#ifndef BUILD_DIR
#error "BUILD_DIR must be defined by the build"
#endif

static char tmpdir[] = "/tmp/minicrm-harness-XXXXXX";

/* Read a whole (small) file; caller frees. NULL if missing. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap + 1);
    if (buf)
        n = fread(buf, 1, cap, f);
    fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

/* Run argv (NULL-terminated) with stdout+stderr into OUT (truncated first); returns the exit
 * status, or -1 if it did not exit normally. *out gets the output (caller frees). */
static int run(char *const argv[], char **out)
{
    char log[128];
    snprintf(log, sizeof log, "%s/out.log", tmpdir);
    unlink(log);
    pid_t pid = testenv_spawn(argv, log);
    int st;
    if (pid <= 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    *out = slurp(log);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int demo(const char *a, const char *b, char **out)
{
    char *argv[] = {HARNESS_DEMO, (char *)a, (char *)b, NULL};
    return run(argv, out);
}

TEST(exit_status_says_skipped_never_passed)
{
    char *out = NULL;
    CHECK_INT_EQ(demo("passes", NULL, &out), 0);
    CHECK_STR_CONTAINS(out, "ok passes");
    free(out);
    out = NULL;

    CHECK_INT_EQ(demo("skips", NULL, &out), TEST_SKIP_CODE);
    CHECK_STR_CONTAINS(out, "SKIP ");
    CHECK_STR_CONTAINS(out, "no tmpfs here");
    CHECK_STR_CONTAINS(out, "skip skips");
    CHECK_STR_CONTAINS(out, "0 passed, 0 failed, 1 skipped");
    CHECK(!strstr(out, "not reached"));
    free(out);
    out = NULL;

    /* One skipped case makes the whole program "skipped": ctest must not call it a pass. */
    CHECK_INT_EQ(demo("passes", "skips", &out), TEST_SKIP_CODE);
    CHECK_STR_CONTAINS(out, "1 passed, 0 failed, 1 skipped");
    free(out);
    out = NULL;

    /* A failure wins over a skip. */
    CHECK_INT_EQ(demo("skips", "fails", &out), 1);
    free(out);
    out = NULL;
    CHECK_INT_EQ(demo("fails_then_skips", NULL, &out), 1);
    CHECK_STR_CONTAINS(out, "not ok fails_then_skips");
    free(out);
    out = NULL;

    CHECK_INT_EQ(demo("--skip-program", NULL, &out), TEST_SKIP_CODE);
    CHECK_STR_CONTAINS(out, "SKIP: harness_demo: cannot run here");
    free(out);
}

TEST(ctest_reports_a_skip_as_skipped)
{
    char dir[160], path[200];
    snprintf(dir, sizeof dir, "%s/ctest", tmpdir);
    CHECK(mkdir(dir, 0700) == 0);
    snprintf(path, sizeof path, "%s/CTestTestfile.cmake", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fprintf(f,
            "add_test(demo_skip \"%s\" skips)\n"
            "set_tests_properties(demo_skip PROPERTIES SKIP_RETURN_CODE 77)\n"
            "add_test(demo_pass \"%s\" passes)\n"
            "set_tests_properties(demo_pass PROPERTIES SKIP_RETURN_CODE 77)\n",
            HARNESS_DEMO, HARNESS_DEMO);
    fclose(f);
    char *out = NULL;
    char *argv[] = {CTEST_COMMAND, "--test-dir", dir, NULL};
    int rc = run(argv, &out);
    CHECK_MSG(rc == 0, "ctest exit %d: %s", rc, out ? out : "");
    CHECK_MSG(out && strstr(out, "demo_skip") && strstr(out, "***Skipped"),
              "ctest did not report the skip: %s", out ? out : "(no output)");
    /* The skipping test is not counted among the passed ones. */
    CHECK_STR_CONTAINS(out, "100% tests passed, 0 tests failed out of 2");
    CHECK_STR_CONTAINS(out, "The following tests did not run:");
    const char *line = strstr(out, "demo_skip ");
    const char *eol = line ? strchr(line, '\n') : NULL;
    CHECK(line && eol);
    char shown[512];
    snprintf(shown, sizeof shown, "%.*s", (int)(eol - line), line);
    CHECK_MSG(!strstr(shown, "Passed"), "skip shown as passed: %s", shown);
    free(out);
}

TEST(every_test_of_this_build_treats_77_as_skipped)
{
    char *out = NULL;
    char *argv[] = {CTEST_COMMAND, "--test-dir", BUILD_DIR, "--show-only=json-v1", NULL};
    CHECK_INT_EQ(run(argv, &out), 0);
    json_error_t jerr;
    json_t *doc = out ? json_loads(out, 0, &jerr) : NULL;
    free(out);
    CHECK_MSG(doc != NULL, "ctest --show-only=json-v1: not JSON");
    json_t *tests = json_object_get(doc, "tests");
    size_t i, n = 0, bad = 0;
    json_t *t;
    json_array_foreach(tests, i, t)
    {
        bool ok = false;
        size_t j;
        json_t *p;
        json_array_foreach(json_object_get(t, "properties"), j, p)
        {
            if (!strcmp(json_string_value(json_object_get(p, "name")) ?: "", "SKIP_RETURN_CODE"))
                ok = json_integer_value(json_object_get(p, "value")) == TEST_SKIP_CODE;
        }
        if (!ok) {
            fprintf(stderr, "  %s has no SKIP_RETURN_CODE 77\n",
                    json_string_value(json_object_get(t, "name")));
            bad++;
        }
        n++;
    }
    json_decref(doc);
    CHECK(n > 10);
    CHECK_INT_EQ(bad, 0);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        TEST_ENTRY(exit_status_says_skipped_never_passed),
        TEST_ENTRY(ctest_reports_a_skip_as_skipped),
        TEST_ENTRY(every_test_of_this_build_treats_77_as_skipped),
    };
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    int rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    char *rm[] = {"rm", "-rf", tmpdir, NULL};
    pid_t pid = testenv_spawn(rm, NULL);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    return rc;
}
