/* Tests of lib/config: layering, validation messages, secrets, and the shipped file. */
#include "config.h"
#include "test.h"

#include <stdlib.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/minicrm-config-XXXXXX";

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void clear_env(void)
{
    size_t n;
    const cfg_setting_info *s = cfg_settings(&n);
    for (size_t i = 0; i < n; i++) {
        char buf[128];
        unsetenv(cfg_env_name(&s[i], buf, sizeof buf));
        if (s[i].alias)
            unsetenv(s[i].alias);
    }
    unsetenv("MINICRM_CONFIG");
}

TEST(defaults)
{
    minicrm_config c;
    CHECK_INT_EQ(cfg_init(&c), 0);
    CHECK_INT_EQ(c.api.port, 5000);
    CHECK_STR_EQ(c.vendor_sim.api_base_url, "http://localhost:5000");
    CHECK(c.vendor_sim.success_rate > 0.89 && c.vendor_sim.success_rate < 0.91);
    CHECK_STR_EQ(c.redis.prefix, "minicrm:");
    CHECK_INT_EQ(c.api.max_body_bytes, 1048576);
    cfg_release(&c);
}

TEST(layers_later_wins)
{
    char cfgpath[256], dotenv[256], err[512];
    snprintf(cfgpath, sizeof cfgpath, "%s/a.cfg", tmpdir);
    snprintf(dotenv, sizeof dotenv, "%s/.env", tmpdir);
    write_file(cfgpath,
               "api = { port = 6000; threads = 7; };\nvendor_sim = { success_rate = 0.5; };\n"
               "redis = { prefix = \"file:\"; };\n");
    write_file(dotenv, "# comment\nexport PORT=6001\nMINICRM_API_THREADS='9'\nUNRELATED=1\n"
                       "MINICRM_REDIS_PREFIX=\"dotenv:\"\n");
    clear_env();
    setenv("PORT", "6002", 1);
    minicrm_config c;
    cfg_init(&c);
    CHECK_INT_EQ(cfg_load_file(&c, cfgpath, err, sizeof err), 0);
    CHECK_INT_EQ(c.api.port, 6000);
    CHECK_INT_EQ(c.api.threads, 7);
    CHECK_INT_EQ(cfg_load_dotenv(&c, dotenv, err, sizeof err), 0);
    CHECK_INT_EQ(c.api.port, 6001);
    CHECK_INT_EQ(c.api.threads, 9);
    CHECK_STR_EQ(c.redis.prefix, "dotenv:");
    CHECK_INT_EQ(cfg_load_environ(&c, err, sizeof err), 0);
    CHECK_INT_EQ(c.api.port, 6002);
    CHECK(c.vendor_sim.success_rate == 0.5);
    cfg_release(&c);

    /* The full loader, with a flag on top and the MINICRM_ form beating the alias. */
    setenv("MINICRM_API_PORT", "6003", 1);
    setenv("MINICRM_VENDOR_SIM_SUCCESS_RATE", "0.25", 1);
    char *flags[] = {"api.threads=11"};
    cfg_init(&c);
    CHECK_INT_EQ(cfg_load(&c, cfgpath, flags, 1, err, sizeof err), 0);
    CHECK_INT_EQ(c.api.port, 6003);
    CHECK_INT_EQ(c.api.threads, 11);
    CHECK(c.vendor_sim.success_rate == 0.25);
    cfg_release(&c);
    clear_env();
}

TEST(bad_file_names_line)
{
    char cfgpath[256], err[512];
    snprintf(cfgpath, sizeof cfgpath, "%s/bad.cfg", tmpdir);
    write_file(cfgpath, "api = {\n  port = 5000;\n  threads = \"four\";\n};\n");
    minicrm_config c;
    cfg_init(&c);
    CHECK_INT_EQ(cfg_load_file(&c, cfgpath, err, sizeof err), -1);
    CHECK_STR_CONTAINS(err, "bad.cfg:3");
    CHECK_STR_CONTAINS(err, "api.threads");
    CHECK_STR_CONTAINS(err, "expected an integer");

    write_file(cfgpath, "api = {\n  port = 70000;\n};\n");
    CHECK_INT_EQ(cfg_load_file(&c, cfgpath, err, sizeof err), -1);
    CHECK_STR_CONTAINS(err, "bad.cfg:2: api.port: expected an integer from 1 to 65535");

    write_file(cfgpath, "api = {\n  nonsense = 1;\n};\n");
    CHECK_INT_EQ(cfg_load_file(&c, cfgpath, err, sizeof err), -1);
    CHECK_STR_CONTAINS(err, "unknown setting 'api.nonsense'");

    write_file(cfgpath, "api = {\n  port = 5000\n  oops\n};\n");
    CHECK_INT_EQ(cfg_load_file(&c, cfgpath, err, sizeof err), -1);
    CHECK_STR_CONTAINS(err, "bad.cfg:");
    cfg_release(&c);
}

TEST(bad_env_names_variable_and_hides_secrets)
{
    char err[512];
    clear_env();
    minicrm_config c;
    cfg_init(&c);
    setenv("MINICRM_VENDOR_SIM_SUCCESS_RATE", "1.5", 1);
    CHECK_INT_EQ(cfg_load_environ(&c, err, sizeof err), -1);
    CHECK_STR_CONTAINS(err, "MINICRM_VENDOR_SIM_SUCCESS_RATE");
    CHECK_STR_CONTAINS(err, "from 0 to 1");
    unsetenv("MINICRM_VENDOR_SIM_SUCCESS_RATE");

    setenv("MINICRM_LOG_LEVEL", "loud", 1);
    CHECK_INT_EQ(cfg_load_environ(&c, err, sizeof err), -1);
    CHECK_STR_CONTAINS(err, "one of debug|info|warn|error");
    unsetenv("MINICRM_LOG_LEVEL");

    /* A secret's value never appears, even when it is rejected. */
    setenv("VENDOR_SECRET", "", 1);
    CHECK_INT_EQ(cfg_load_environ(&c, err, sizeof err), -1);
    CHECK_STR_CONTAINS(err, "VENDOR_SECRET");
    unsetenv("VENDOR_SECRET");

    setenv("GOOGLE_CLIENT_SECRET", "s3cr3t-value", 1);
    CHECK_INT_EQ(cfg_load_environ(&c, err, sizeof err), 0);
    CHECK_STR_EQ(c.auth.google_client_secret, "s3cr3t-value");
    char buf[64];
    size_t n;
    const cfg_setting_info *s = cfg_settings(&n);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(s[i].path, "auth.google_client_secret"))
            CHECK_STR_EQ(cfg_value_text(&c, &s[i], false, buf, sizeof buf), "***");
    char *out = NULL;
    size_t outlen = 0;
    FILE *mem = open_memstream(&out, &outlen);
    cfg_write(&c, false, mem);
    fclose(mem);
    CHECK(strstr(out, "s3cr3t-value") == NULL);
    free(out);
    cfg_release(&c);
    clear_env();
}

/* MONGO_URI / REDIS_URL passwords are masked wherever the configuration is shown. */
TEST(url_passwords_are_masked_when_shown)
{
    char err[512];
    clear_env();
    minicrm_config c;
    cfg_init(&c);
    setenv("MONGO_URI", "mongodb://app:m0ngo-pw@db.example:27017/crm?authSource=admin", 1);
    setenv("REDIS_URL", "redis://:r3dis-pw@cache.example:6379/0", 1);
    CHECK_INT_EQ(cfg_load_environ(&c, err, sizeof err), 0);
    char *out = NULL;
    size_t outlen = 0;
    FILE *mem = open_memstream(&out, &outlen);
    cfg_write(&c, false, mem);
    fclose(mem);
    CHECK(strstr(out, "m0ngo-pw") == NULL);
    CHECK(strstr(out, "r3dis-pw") == NULL);
    CHECK_STR_CONTAINS(out, "uri = \"mongodb://app:***@db.example:27017/crm?authSource=admin\"");
    CHECK_STR_CONTAINS(out, "url = \"redis://:***@cache.example:6379/0\"");
    free(out);
    /* --secrets (and up's export to its children) still get the real value */
    char buf[256];
    size_t n;
    const cfg_setting_info *s = cfg_settings(&n);
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(s[i].path, "redis.url"))
            CHECK_STR_EQ(cfg_value_text(&c, &s[i], true, buf, sizeof buf),
                         "redis://:r3dis-pw@cache.example:6379/0");
    }
    /* a rejected value is not echoed with its password either */
    CHECK_INT_EQ(cfg_set(&c, "log.format", "x://u:hidden@h", "test", err, sizeof err), -1);
    CHECK(strstr(err, "hidden") == NULL);
    CHECK_STR_CONTAINS(err, "x://u:***@h");
    cfg_release(&c);
    clear_env();
}

/* minicrm-api's start-up rule: no open port with the public development vendor secret. */
TEST(api_exposure_rule)
{
    char err[512];
    clear_env();
    minicrm_config c;
    cfg_init(&c);
    CHECK_STR_EQ(c.api.bind, "127.0.0.1");
    CHECK_STR_EQ(c.receipts.vendor_secret, CFG_DEV_VENDOR_SECRET);
    CHECK_INT_EQ(cfg_check_api_exposure(&c, err, sizeof err), 0); /* the defaults are safe */
    const char *loop[] = {"127.0.0.1", "127.1.2.3", "::1", "localhost"};
    for (size_t i = 0; i < sizeof loop / sizeof loop[0]; i++) {
        CHECK_INT_EQ(cfg_set(&c, "api.bind", loop[i], "test", err, sizeof err), 0);
        CHECK_MSG(cfg_check_api_exposure(&c, err, sizeof err) == 0, "%s refused", loop[i]);
    }
    const char *open[] = {"0.0.0.0", "10.0.0.5", "::", "128.0.0.1", "192.168.1.2"};
    for (size_t i = 0; i < sizeof open / sizeof open[0]; i++) {
        CHECK_INT_EQ(cfg_set(&c, "api.bind", open[i], "test", err, sizeof err), 0);
        CHECK_MSG(cfg_check_api_exposure(&c, err, sizeof err) == -1, "%s allowed", open[i]);
        CHECK_STR_CONTAINS(err, "VENDOR_SECRET");
        CHECK_STR_CONTAINS(err, "receipts.vendor_secret");
    }
    CHECK_INT_EQ(
        cfg_set(&c, "receipts.vendor_secret", "a-real-random-secret", "test", err, sizeof err), 0);
    CHECK_INT_EQ(cfg_check_api_exposure(&c, err, sizeof err), 0);
    cfg_release(&c);
}

TEST(every_setting_has_env_override)
{
    /* MINICRM_SECTION_KEY reaches every setting: set each to its own default text and
     * check nothing is rejected or unknown. */
    size_t n;
    const cfg_setting_info *s = cfg_settings(&n);
    clear_env();
    for (size_t i = 0; i < n; i++) {
        char env[128];
        if (s[i].def[0])
            setenv(cfg_env_name(&s[i], env, sizeof env), s[i].def, 1);
    }
    setenv("MINICRM_DEVDB_PORT", "27999", 1);
    minicrm_config c;
    char err[512];
    cfg_init(&c);
    CHECK_MSG(cfg_load_environ(&c, err, sizeof err) == 0, "%s", err);
    CHECK_INT_EQ(c.devdb.port, 27999);
    cfg_release(&c);
    clear_env();
}

TEST(shipped_file_matches_table)
{
    /* config/minicrm.cfg must hold every setting with the default the code has. */
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/config/minicrm.cfg", MINICRM_SOURCE_DIR);
    FILE *f = fopen(path, "r");
    CHECK_MSG(f != NULL, "cannot open %s", path);
    char text[65536];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    size_t n;
    const cfg_setting_info *s = cfg_settings(&n);
    for (size_t i = 0; i < n; i++) {
        const char *dot = strchr(s[i].path, '.');
        char needle[256];
        snprintf(needle, sizeof needle, "  %s = ", dot + 1);
        CHECK_MSG(strstr(text, needle) != NULL, "%s missing from %s", s[i].path, path);
    }
    minicrm_config file, def;
    cfg_init(&file);
    cfg_init(&def);
    CHECK_MSG(cfg_load_file(&file, path, err, sizeof err) == 0, "%s", err);
    for (size_t i = 0; i < n; i++) {
        char a[512], b[512];
        cfg_value_text(&file, &s[i], true, a, sizeof a);
        cfg_value_text(&def, &s[i], true, b, sizeof b);
        CHECK_MSG(strcmp(a, b) == 0, "%s: file says %s, code default %s", s[i].path, a, b);
    }
    cfg_release(&file);
    cfg_release(&def);
}

static void setup(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        exit(1);
    }
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        TEST_ENTRY(defaults),
        TEST_ENTRY(layers_later_wins),
        TEST_ENTRY(bad_file_names_line),
        TEST_ENTRY(bad_env_names_variable_and_hides_secrets),
        TEST_ENTRY(url_passwords_are_masked_when_shown),
        TEST_ENTRY(api_exposure_rule),
        TEST_ENTRY(every_setting_has_env_override),
        TEST_ENTRY(shipped_file_matches_table),
    };
    setup();
    int rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", tmpdir);
    return rc;
}
