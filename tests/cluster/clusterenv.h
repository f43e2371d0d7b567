/*
 * clusterenv: a private local Redis Cluster (3 masters, 3 replicas; for benchmarks also 3
 * masters without replicas) for the cluster tests,
 * started and stopped through scripts/cluster.sh (the same script a developer uses by hand),
 * on free ports below 55535 whose cluster bus port (+10000) is free too.
 *
 * clusterenv_start() returns once every slot is served and every replica is in sync;
 * clusterenv_stop() stops every node it started (by pid file) and removes the directory.
 * Not thread-safe; one per test process.
 */
#ifndef MINICRM_CLUSTERENV_H
#define MINICRM_CLUSTERENV_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct clusterenv {
    char dir[256];
    char url[512]; /* redis+cluster://127.0.0.1:P1,.../ */
    int ports[6];
    int nodes; /* ports used: 6 (3 masters + 3 replicas), or 3 (masters only) */
    bool started;
} clusterenv;

/* 0, or -1 with a message on stderr (whatever started is stopped). */
int clusterenv_start(clusterenv *e);
/* The same with `replicas` (0 or 1) replicas per master. */
int clusterenv_start_replicas(clusterenv *e, int replicas);
void clusterenv_stop(clusterenv *e);
/* The pid of the node on port (from its pid file), or -1. */
pid_t clusterenv_pid(const clusterenv *e, int port);
/* Poll until every live node reports cluster_state:ok and, if not_port is not 0, sees the
 * node on not_port as failed (a replica took over its slots). 0, or -1 after timeout_ms. */
int clusterenv_wait_ok(const clusterenv *e, int not_port, int timeout_ms);
/* Run redis-cli against port with the given arguments (NULL-terminated); its stdout (up to
 * 4 KiB) into out. 0 when it exited 0. */
int clusterenv_cli(const clusterenv *e, int port, char *out, size_t n, const char *const *args);
/* The node id (CLUSTER MYID) of the node on port into out (41 bytes). 0 or -1. */
int clusterenv_node_id(const clusterenv *e, int port, char *out, size_t n);

#endif
