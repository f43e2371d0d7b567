/* Integration tests of lib/rconn against a private redis-server: URL parsing, commands,
 * pipelines, scripts by SHA1 with the EVAL fallback, and reconnecting after the server
 * restarts. */
#include "rconn.h"
#include "test.h"
#include "testenv.h"

#include <signal.h>
#include <string.h>

static testenv env;

TEST(parse_urls)
{
    rconn_url u;
    char err[256];
    CHECK_INT_EQ(rconn_parse_url("redis://127.0.0.1:6380/2", &u, err, sizeof err), 0);
    CHECK_STR_EQ(u.host, "127.0.0.1");
    CHECK_INT_EQ(u.port, 6380);
    CHECK_INT_EQ(u.db, 2);
    CHECK_INT_EQ(rconn_parse_url("redis://:pw@cache", &u, err, sizeof err), 0);
    CHECK_STR_EQ(u.password, "pw");
    CHECK_STR_EQ(u.host, "cache");
    CHECK_INT_EQ(u.port, 6379);
    CHECK_INT_EQ(rconn_parse_url("redis://bob:pw@cache:1/0", &u, err, sizeof err), 0);
    CHECK_STR_EQ(u.user, "bob");
    CHECK_INT_EQ(rconn_parse_url("http://x", &u, err, sizeof err), -1);
    CHECK_INT_EQ(rconn_parse_url("redis://host:99999", &u, err, sizeof err), -1);
    CHECK_INT_EQ(rconn_parse_url("redis://host/abc", &u, err, sizeof err), -1);
    CHECK_INT_EQ(rconn_parse_url("redis://", &u, err, sizeof err), -1);
}

TEST(command_and_pipeline)
{
    char err[256], key[128];
    rconn *c = rconn_new(env.redis_url, 2000, err, sizeof err);
    CHECK(c != NULL);
    snprintf(key, sizeof key, "%slist", env.prefix);
    redisReply *r = rconn_command(c, "DEL %s", key);
    CHECK(r != NULL);
    freeReplyObject(r);
    for (int i = 0; i < 100; i++)
        CHECK_INT_EQ(rconn_append(c, "RPUSH %s %d", key, i), 0);
    for (int i = 0; i < 100; i++) {
        CHECK_INT_EQ(rconn_get_reply(c, &r), 0);
        CHECK_INT_EQ(r->integer, i + 1);
        freeReplyObject(r);
    }
    r = rconn_command(c, "LINDEX %s 42", key);
    CHECK(r && r->type == REDIS_REPLY_STRING);
    CHECK_STR_EQ(r->str, "42");
    freeReplyObject(r);
    r = rconn_command(c, "NOSUCHCOMMAND");
    CHECK(r && r->type == REDIS_REPLY_ERROR);
    freeReplyObject(r);
    rconn_free(c);
}

/* rconn_eval_argv sends EVALSHA; a server without the script (never seen, or its cache
 * flushed as by a restart) gets the EVAL once and knows the script afterwards. */
TEST(script_by_sha_with_eval_fallback)
{
    static const char body[] = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
    char err[256], key[128];
    rconn *c = rconn_new(env.redis_url, 2000, err, sizeof err);
    CHECK(c != NULL);
    snprintf(key, sizeof key, "%sscripted", env.prefix);
    redisReply *r = rconn_command(c, "DEL %s", key);
    CHECK(r != NULL);
    freeReplyObject(r);
    r = rconn_command(c, "SCRIPT FLUSH");
    CHECK(r != NULL);
    freeReplyObject(r);
    for (int round = 1; round <= 4; round++) {
        const char *argv[] = {"EVAL", body, "1", key, "5"};
        size_t lens[] = {4, sizeof body - 1, 1, strlen(key), 1};
        r = rconn_eval_argv(c, 5, argv, lens);
        CHECK_MSG(r && r->type == REDIS_REPLY_INTEGER && r->integer == 5 * round, "round %d: %s",
                  round, r && r->type == REDIS_REPLY_ERROR ? r->str : "?");
        freeReplyObject(r);
        /* the caller's argv is given back as it was */
        CHECK_STR_EQ(argv[0], "EVAL");
        CHECK(argv[1] == body && lens[0] == 4 && lens[1] == sizeof body - 1);
        if (round == 2) { /* as a restart would: the server forgets it */
            r = rconn_command(c, "SCRIPT FLUSH");
            CHECK(r != NULL);
            freeReplyObject(r);
        }
    }
    /* EVALSHA is what reached the server (commandstats count it) */
    r = rconn_command(c, "INFO commandstats");
    CHECK(r && r->type == REDIS_REPLY_STRING);
    CHECK_STR_CONTAINS(r->str, "cmdstat_evalsha:");
    freeReplyObject(r);
    rconn_free(c);
}

TEST(reconnects_after_restart)
{
    if (env.redis_pid <= 0)
        TEST_SKIP("Redis is external (MINICRM_TEST_REDIS_URL): not ours to restart");
    char err[256], key[128];
    rconn *c = rconn_new(env.redis_url, 5000, err, sizeof err);
    snprintf(key, sizeof key, "%scounter", env.prefix);
    redisReply *r = rconn_command(c, "SET %s 7", key);
    CHECK(r != NULL);
    freeReplyObject(r);
    /* Restart redis on the same port and data directory (appendonly keeps the key). */
    testenv_kill_wait(env.redis_pid, SIGTERM, 5000);
    char portbuf[16], log[300];
    snprintf(portbuf, sizeof portbuf, "%d", env.redis_port);
    snprintf(log, sizeof log, "%s/redis.log", env.dir);
    char *argv[] = {"redis-server", "--port", portbuf, "--bind",       "127.0.0.1", "--dir",
                    env.dir,        "--save", "",      "--appendonly", "yes",       NULL};
    env.redis_pid = testenv_spawn(argv, log);
    CHECK(env.redis_pid > 0);
    r = rconn_command(c, "INCR %s", key); /* reconnects with backoff until redis is back */
    CHECK_MSG(r != NULL, "%s", rconn_error(c));
    CHECK_INT_EQ(r->integer, 8);
    freeReplyObject(r);
    rconn_free(c);
}

TEST(unreachable_fails_within_timeout)
{
    char err[256], url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", testenv_free_port());
    rconn *c = rconn_new(url, 300, err, sizeof err);
    CHECK(c != NULL);
    redisReply *r = rconn_command(c, "PING");
    CHECK(r == NULL);
    CHECK_STR_CONTAINS(rconn_error(c), "127.0.0.1");
    CHECK_INT_EQ(rconn_ping(c), -1);
    rconn_free(c);
}
/* The redis-cli arguments `minicrm up` prints: -u with the password hidden for one server;
 * redis-cli has no redis+cluster:// scheme, so a cluster gets -c -h -p of its first seed and
 * --askpass instead of its password. */
TEST(cli_args)
{
    char b[256];
    CHECK_STR_EQ(rconn_cli_args("redis://127.0.0.1:6380/2", b, sizeof b),
                 "-u redis://127.0.0.1:6380/2");
    CHECK_STR_EQ(rconn_cli_args("redis://:pw@cache:1", b, sizeof b), "-u redis://:***@cache:1");
    CHECK_STR_EQ(rconn_cli_args("redis+cluster://10.0.0.1:7000,10.0.0.2:7001/", b, sizeof b),
                 "-c -h 10.0.0.1 -p 7000");
    CHECK_STR_EQ(rconn_cli_args("redis+cluster://h1:7002", b, sizeof b), "-c -h h1 -p 7002");
    CHECK_STR_EQ(rconn_cli_args("redis+cluster://bob:pw@h1:7000,h2:7001", b, sizeof b),
                 "-c -h h1 -p 7000 --user bob --askpass");
    CHECK_STR_EQ(rconn_cli_args("redis+cluster://:pw@h1", b, sizeof b),
                 "-c -h h1 -p 6379 --askpass");
    char small[8];
    CHECK_STR_EQ(rconn_cli_args("redis+cluster://h1:7000", small, sizeof small), "-c -h h");
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {TEST_ENTRY(parse_urls),
                                      TEST_ENTRY(command_and_pipeline),
                                      TEST_ENTRY(script_by_sha_with_eval_fallback),
                                      TEST_ENTRY(reconnects_after_restart),
                                      TEST_ENTRY(unreachable_fails_within_timeout),
                                      TEST_ENTRY(cli_args)};
    if (testenv_start(&env, TESTENV_REDIS) != 0)
        return 1;
    int rc = test_run_all(__FILE__, cases, sizeof cases / sizeof cases[0], argc, argv);
    testenv_stop(&env);
    return rc;
}
