/*
 * shardtarget: the Redis the shard tests (test_queue_shards, test_campctl_shards) run against:
 * a private redis-server (tests/support/testenv), or, for their cluster builds
 * (test_cluster_queue, test_cluster_campctl), a local Redis Cluster (clusterenv).
 *
 * shardtarget_run() starts it, connects one rconn, runs the cases, then disconnects and stops
 * it: the whole main() of such a test. Not thread-safe; one per test process.
 */
#ifndef MINICRM_SHARDTARGET_H
#define MINICRM_SHARDTARGET_H

#include "rconn.h"
#include "test.h"

#include <stdbool.h>
#include <stddef.h>

/* Run the n cases (test_run_all) against a local Redis Cluster when on_cluster (the program is
 * skipped when none can be started), else against a private redis-server. During the run *rc
 * is connected to it (5 s timeout; NULL after) and *url is its URL (static storage). Returns
 * test_run_all's result, test_skip_program's, or 1 when nothing could be started or
 * connected. */
int shardtarget_run(bool on_cluster, const char *file, const test_case *cases, size_t n, int argc,
                    char **argv, rconn **rc, const char **url);

#endif
