/* lib/rcluster through rconn against a real local Redis Cluster (3 masters, 3 replicas):
 * key slots, routing of commands and scripts, pipelines over several nodes in the caller's
 * order, SCRIPT LOAD on every master and NOSCRIPT recovery, KEYS over every master, ASK and
 * MOVED while a slot migrates, and a master SIGKILLed (its replica takes over) mid-use. */
#include "clusterenv.h"
#include "rcluster.h"
#include "rconn.h"
#include "test.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static clusterenv env;

/* The port of the master serving slot, from the client's map. */
static int owner_port(rconn *c, unsigned slot)
{
    char buf[300];
    if (!rcluster_slot_owner(rconn_cluster(c), slot, buf, sizeof buf))
        return -1;
    const char *colon = strrchr(buf, ':');
    return colon ? (int)strtol(colon + 1, NULL, 10) : -1;
}

static rconn *connect_cluster(int timeout_ms)
{
    char err[256];
    rconn *c = rconn_new(env.url, timeout_ms, err, sizeof err);
    if (!c)
        fprintf(stderr, "rconn_new: %s\n", err);
    return c;
}

TEST(key_slots)
{
    CHECK_INT_EQ(rcluster_key_slot("123456789", 9), 0x31C3 % 16384);
    CHECK_INT_EQ(rcluster_key_slot("foo", 3), 12182);
    CHECK_INT_EQ(rcluster_key_slot("{user1000}.following", 20),
                 rcluster_key_slot("{user1000}.followers", 20));
    CHECK_INT_EQ(rcluster_key_slot("m:{sends:3}:ready", 17), rcluster_key_slot("sends:3", 7));
    /* an empty tag means no tag: the whole key is hashed */
    CHECK_INT_EQ(rcluster_key_slot("foo{}{bar}", 10), rcluster_key_slot("foo{}{bar}", 10));
    CHECK(rcluster_key_slot("foo{}{bar}", 10) != rcluster_key_slot("bar", 3));
    CHECK_INT_EQ(rcluster_key_slot("foo{{bar}}zap", 13), rcluster_key_slot("{bar", 4));
    CHECK(rcluster_is_url("redis+cluster://a:1,b:2/"));
    CHECK(!rcluster_is_url("redis://a:1"));
    rconn_url u;
    char err[256];
    CHECK_INT_EQ(rconn_parse_url("redis+cluster://:pw@h1:7000,h2:7001/", &u, err, sizeof err), 0);
    CHECK_STR_EQ(u.host, "h1");
    CHECK_INT_EQ(u.port, 7000);
    CHECK_STR_EQ(u.password, "pw");
    CHECK(rconn_new("redis+cluster://h1:7000/3", 100, err, sizeof err) == NULL);
    CHECK(rconn_new("redis+cluster://h1:x/", 100, err, sizeof err) == NULL);
}

TEST(commands_reach_every_master)
{
    rconn *c = connect_cluster(5000);
    CHECK(c && rconn_is_cluster(c));
    CHECK_INT_EQ(rconn_ping(c), 0);
    CHECK_INT_EQ(rcluster_masters(rconn_cluster(c)), 3);
    int seen[3] = {0}, nseen = 0;
    for (int i = 0; i < 200; i++) {
        redisReply *r = rconn_command(c, "SET t:k%d v%d", i, i);
        CHECK(r && r->type == REDIS_REPLY_STATUS);
        freeReplyObject(r);
        char key[32];
        snprintf(key, sizeof key, "t:k%d", i);
        int p = owner_port(c, rcluster_key_slot(key, strlen(key)));
        bool known = false;
        for (int k = 0; k < nseen; k++)
            known |= seen[k] == p;
        if (!known && nseen < 3)
            seen[nseen++] = p;
    }
    CHECK_INT_EQ(nseen, 3);
    for (int i = 0; i < 200; i += 7) {
        const char *argv[] = {"GET", NULL};
        char key[32];
        snprintf(key, sizeof key, "t:k%d", i);
        argv[1] = key;
        redisReply *r = rconn_command_argv(c, 2, argv, NULL);
        CHECK(r && r->type == REDIS_REPLY_STRING);
        char want[32];
        snprintf(want, sizeof want, "v%d", i);
        CHECK_STR_EQ(r->str, want);
        freeReplyObject(r);
    }
    /* KEYS and DBSIZE go to every master */
    redisReply *r = rconn_command(c, "KEYS t:k*");
    CHECK(r && r->type == REDIS_REPLY_ARRAY);
    CHECK_INT_EQ(r->elements, 200);
    freeReplyObject(r);
    r = rconn_command(c, "DBSIZE");
    CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer >= 200);
    freeReplyObject(r);
    rconn_free(c);
}

TEST(pipeline_keeps_caller_order)
{
    rconn *c = connect_cluster(5000);
    CHECK(c);
    enum { N = 600 };
    for (int i = 0; i < N; i++)
        CHECK_INT_EQ(rconn_append(c, "INCRBY p:{t%d}:n %d", i % 50, i), 0);
    /* a transaction on one tag, MULTI and EXEC carry no key */
    CHECK_INT_EQ(rconn_append(c, "MULTI"), 0);
    CHECK_INT_EQ(rconn_append(c, "LPUSH p:{tx}:l a b"), 0);
    CHECK_INT_EQ(rconn_append(c, "HINCRBY p:{tx}:h n 2"), 0);
    CHECK_INT_EQ(rconn_append(c, "EXEC"), 0);
    long long sum[50] = {0};
    for (int i = 0; i < N; i++) {
        redisReply *r;
        CHECK_INT_EQ(rconn_get_reply(c, &r), 0);
        sum[i % 50] += i;
        CHECK_MSG(r->type == REDIS_REPLY_INTEGER && r->integer == sum[i % 50],
                  "reply %d: %lld, want %lld", i, r->integer, sum[i % 50]);
        freeReplyObject(r);
    }
    redisReply *r;
    CHECK_INT_EQ(rconn_get_reply(c, &r), 0);
    CHECK(r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    for (int i = 0; i < 2; i++) {
        CHECK_INT_EQ(rconn_get_reply(c, &r), 0);
        CHECK_STR_EQ(r->str, "QUEUED");
        freeReplyObject(r);
    }
    CHECK_INT_EQ(rconn_get_reply(c, &r), 0);
    CHECK(r->type == REDIS_REPLY_ARRAY && r->elements == 2);
    CHECK_INT_EQ(r->element[0]->integer, 2);
    CHECK_INT_EQ(r->element[1]->integer, 2);
    freeReplyObject(r);
    CHECK_INT_EQ(rconn_get_reply(c, &r), -1); /* nothing pending */
    /* an abandoned pipeline does not disturb the next command */
    CHECK_INT_EQ(rconn_append(c, "INCR p:{a}:x"), 0);
    CHECK_INT_EQ(rconn_append(c, "INCR p:{b}:x"), 0);
    CHECK_INT_EQ(rconn_get_reply(c, &r), 0);
    freeReplyObject(r);
    r = rconn_command(c, "GET p:{b}:x");
    CHECK(r && r->type == REDIS_REPLY_STRING);
    freeReplyObject(r);
    rconn_free(c);
}

TEST(scripts_one_slot_and_every_master)
{
    rconn *c = connect_cluster(5000);
    CHECK(c);
    redisReply *r = rconn_command(c, "EVAL %s 2 s:{q}:a s:{q}:b 5",
                                  "redis.call('SET', KEYS[1], ARGV[1]) "
                                  "return redis.call('INCRBY', KEYS[2], ARGV[1])");
    CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer == 5);
    freeReplyObject(r);
    r = rconn_command(c, "EVAL %s 2 s:{q}:a s:{other}:b 5", "return 1");
    CHECK(r && r->type == REDIS_REPLY_ERROR && strstr(r->str, "CROSSSLOT"));
    freeReplyObject(r);
    /* SCRIPT LOAD reaches every master: EVALSHA works on keys of each of them */
    const char *body = "return redis.call('INCR', KEYS[1])";
    r = rconn_command(c, "SCRIPT LOAD %s", body);
    CHECK(r && r->type == REDIS_REPLY_STRING && r->len == 40);
    char sha[41];
    snprintf(sha, sizeof sha, "%s", r->str);
    freeReplyObject(r);
    for (int i = 0; i < 30; i++) {
        r = rconn_command(c, "EVALSHA %s 1 s:{e%d}:n", sha, i);
        CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
        freeReplyObject(r);
    }
    /* a master that lost its script cache (restart, SCRIPT FLUSH): loaded again, retried */
    int p = owner_port(c, rcluster_key_slot("s:{e0}:n", 8));
    const char *flush[] = {"SCRIPT", "FLUSH", NULL};
    char out[256];
    CHECK_INT_EQ(clusterenv_cli(&env, p, out, sizeof out, flush), 0);
    r = rconn_command(c, "EVALSHA %s 1 s:{e0}:n", sha);
    CHECK_MSG(r && r->type == REDIS_REPLY_INTEGER && r->integer == 2, "EVALSHA after flush: %s",
              r && r->type == REDIS_REPLY_ERROR ? r->str : "?");
    freeReplyObject(r);
    /* rconn_eval_argv (EVALSHA, never SCRIPT LOAD): each master that lacks the script gets the
     * EVAL once, a flushed one again */
    static const char incr[] = "return redis.call('INCRBY', KEYS[1], 10)";
    for (int round = 1; round <= 3; round++) {
        if (round == 3)
            CHECK_INT_EQ(clusterenv_cli(&env, p, out, sizeof out, flush), 0);
        for (int i = 0; i < 30; i++) {
            char key[32];
            snprintf(key, sizeof key, "s:{f%d}:n", i);
            const char *argv[] = {"EVAL", incr, "1", key};
            size_t lens[] = {4, sizeof incr - 1, 1, strlen(key)};
            r = rconn_eval_argv(c, 4, argv, lens);
            CHECK_MSG(r && r->type == REDIS_REPLY_INTEGER && r->integer == 10 * round,
                      "round %d key %s: %s", round, key,
                      r && r->type == REDIS_REPLY_ERROR ? r->str : "?");
            freeReplyObject(r);
        }
    }
    rconn_free(c);
}

/* Migrate one slot by hand (IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE) while a client with
 * the old map keeps using it: ASK during the move, MOVED after. */
/* The redis-cli command `minicrm up` prints for a cluster URL (rconn_cli_args) works: redis-cli
 * has no redis+cluster:// scheme; with -c -h -p of the first seed it writes keys of slots that
 * other masters serve (following MOVED), which the client then reads. */
TEST(redis_cli_hint_reaches_every_slot)
{
    char args[600];
    rconn_cli_args(env.url, args, sizeof args);
    CHECK_MSG(strncmp(args, "-c -h ", 6) == 0, "hint args: %s", args);
    rconn *c = connect_cluster(5000);
    CHECK(c != NULL);
    static const char *const keys[] = {"hint:foo", "hint:bar", "hint:baz", "hint:qux"};
    int ports[4], distinct = 0;
    for (int i = 0; i < 4; i++) {
        char cmd[800], out[64] = "";
        snprintf(cmd, sizeof cmd, "redis-cli %s SET '%s' v%d 2>&1", args, keys[i], i);
        FILE *p = popen(cmd, "r");
        CHECK(p != NULL);
        if (!fgets(out, sizeof out, p))
            out[0] = '\0';
        int st = pclose(p);
        CHECK_MSG(st == 0 && strncmp(out, "OK", 2) == 0, "%s: %s", cmd, out);
        redisReply *r = rconn_command(c, "GET %s", keys[i]);
        char want[8];
        snprintf(want, sizeof want, "v%d", i);
        bool ok = r && r->type == REDIS_REPLY_STRING && strcmp(r->str, want) == 0;
        if (r)
            freeReplyObject(r);
        CHECK_MSG(ok, "%s not readable after redis-cli wrote it", keys[i]);
        ports[i] = owner_port(c, rcluster_key_slot(keys[i], strlen(keys[i])));
        bool seen = false;
        for (int j = 0; j < i; j++)
            seen = seen || ports[j] == ports[i];
        distinct += !seen;
    }
    CHECK_MSG(distinct > 1, "the keys all live on one master: pick others");
    rconn_free(c);
}

TEST(ask_and_moved_during_a_slot_move)
{
    rconn *c = connect_cluster(5000);
    CHECK(c);
    const char *k1 = "m:{mv}:old", *k2 = "m:{mv}:new";
    unsigned slot = rcluster_key_slot(k1, strlen(k1));
    redisReply *r = rconn_command(c, "SET %s before", k1);
    CHECK(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    int src = owner_port(c, slot), dst = -1;
    for (int i = 0; i < 6 && dst < 0; i++) {
        int p = env.ports[i];
        if (p == src)
            continue;
        char role[4096];
        const char *info[] = {"ROLE", NULL};
        if (clusterenv_cli(&env, p, role, sizeof role, info) == 0 && !strncmp(role, "master", 6))
            dst = p;
    }
    CHECK(src > 0 && dst > 0);
    char src_id[64], dst_id[64], sbuf[16], out[4096], pbuf[16];
    CHECK_INT_EQ(clusterenv_node_id(&env, src, src_id, sizeof src_id), 0);
    CHECK_INT_EQ(clusterenv_node_id(&env, dst, dst_id, sizeof dst_id), 0);
    snprintf(sbuf, sizeof sbuf, "%u", slot);
    snprintf(pbuf, sizeof pbuf, "%d", dst);
    const char *imp[] = {"CLUSTER", "SETSLOT", sbuf, "IMPORTING", src_id, NULL};
    const char *mig[] = {"CLUSTER", "SETSLOT", sbuf, "MIGRATING", dst_id, NULL};
    CHECK_INT_EQ(clusterenv_cli(&env, dst, out, sizeof out, imp), 0);
    CHECK_INT_EQ(clusterenv_cli(&env, src, out, sizeof out, mig), 0);
    /* a key the source does not have is created on the target (ASK) */
    r = rconn_command(c, "SET %s during", k2);
    CHECK(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    const char *mv[] = {"MIGRATE", "127.0.0.1", pbuf, "", "0", "5000", "KEYS", k1, NULL};
    CHECK_INT_EQ(clusterenv_cli(&env, src, out, sizeof out, mv), 0);
    /* both keys live on the target now; the client still maps the slot to the source */
    CHECK_INT_EQ(owner_port(c, slot), src);
    CHECK_INT_EQ(rconn_append(c, "GET %s", k1), 0);
    CHECK_INT_EQ(rconn_append(c, "GET %s", k2), 0);
    const char *want[] = {"before", "during"};
    for (int i = 0; i < 2; i++) {
        CHECK_INT_EQ(rconn_get_reply(c, &r), 0);
        CHECK_MSG(r->type == REDIS_REPLY_STRING && !strcmp(r->str, want[i]), "pipelined GET %d: %s",
                  i, r->str ? r->str : "(nil)");
        freeReplyObject(r);
    }
    /* finish the move on every master: now the source answers MOVED */
    const char *node[] = {"CLUSTER", "SETSLOT", sbuf, "NODE", dst_id, NULL};
    for (int i = 0; i < 6; i++)
        clusterenv_cli(&env, env.ports[i], out, sizeof out, node);
    r = rconn_command(c, "GET %s", k1);
    CHECK(r && r->type == REDIS_REPLY_STRING && !strcmp(r->str, "before"));
    freeReplyObject(r);
    CHECK_INT_EQ(owner_port(c, slot), dst);
    rconn_free(c);
}

/* SIGKILL the master of a slot: the replica is promoted and the client carries on (commands
 * and pipelines), within its timeout, with the data written before (WAIT for the replica). */
TEST(master_killed_replica_takes_over)
{
    rconn *c = connect_cluster(15000);
    CHECK(c);
    const char *key = "f:{fail}:n";
    unsigned slot = rcluster_key_slot(key, strlen(key));
    redisReply *r = rconn_command(c, "SET %s 41", key);
    CHECK(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = rconn_command(c, "WAIT 1 5000");
    freeReplyObject(r);
    /* WAIT went to "any node": make sure the replica of *this* slot has it */
    int port = owner_port(c, slot);
    const char *wait[] = {"WAIT", "1", "5000", NULL};
    char out[4096];
    CHECK_INT_EQ(clusterenv_cli(&env, port, out, sizeof out, wait), 0);
    pid_t pid = clusterenv_pid(&env, port);
    CHECK(pid > 0);
    CHECK_INT_EQ(kill(pid, SIGKILL), 0);
    r = rconn_command(c, "INCR %s", key);
    CHECK_MSG(r && r->type == REDIS_REPLY_INTEGER && r->integer == 42, "INCR after failover: %s",
              r ? (r->type == REDIS_REPLY_ERROR ? r->str : "?") : rconn_error(c));
    freeReplyObject(r);
    CHECK(owner_port(c, slot) != port);
    CHECK_INT_EQ(clusterenv_wait_ok(&env, port, 20000), 0);
    for (int i = 0; i < 100; i++)
        CHECK_INT_EQ(rconn_append(c, "INCR f:{x%d}:n", i), 0);
    for (int i = 0; i < 100; i++) {
        CHECK_INT_EQ(rconn_get_reply(c, &r), 0);
        CHECK(r->type == REDIS_REPLY_INTEGER && r->integer == 1);
        freeReplyObject(r);
    }
    CHECK_INT_EQ(rconn_ping(c), 0);
    rconn_free(c);
}

int main(int argc, char **argv)
{
    if (clusterenv_start(&env) != 0)
        return test_skip_program("no local Redis Cluster could be started (redis-server with "
                                 "cluster support and redis-cli --cluster are needed)");
    static const test_case tests[] = {
        TEST_ENTRY(key_slots),
        TEST_ENTRY(commands_reach_every_master),
        TEST_ENTRY(pipeline_keeps_caller_order),
        TEST_ENTRY(scripts_one_slot_and_every_master),
        TEST_ENTRY(redis_cli_hint_reaches_every_slot),
        TEST_ENTRY(ask_and_moved_during_a_slot_move),
        TEST_ENTRY(master_killed_replica_takes_over),
    };
    int rc = test_run_all(__FILE__, tests, sizeof tests / sizeof *tests, argc, argv);
    clusterenv_stop(&env);
    return rc;
}
