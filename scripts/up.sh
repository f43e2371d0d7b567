#!/usr/bin/env bash
# Brings the whole system up on embedded defaults: installs what is missing, builds, then runs
# `minicrm up` (local redis-server and minicrm-devdb unless REDIS_URL / MONGO_URI are set).
#
#   scripts/up.sh [--cluster] [minicrm up options]
#
# --cluster: instead of one redis-server, a local Redis Cluster of 3 masters and 3 replicas
# started by scripts/cluster.sh in $MINICRM_CLUSTER_DIR (default .minicrm-cluster; free ports
# from 7000; no persistence: a fresh cluster every run), with queue.shards=6 (unless
# MINICRM_QUEUE_SHARDS says otherwise); the cluster is stopped when `minicrm up` exits.
set -euo pipefail
cd "$(dirname "$0")/.."
cluster=0
if [ "${1:-}" = --cluster ]; then
    cluster=1
    shift
fi
bash scripts/build.sh >&2
[ "$cluster" = 1 ] || exec build/bin/minicrm up "$@"

dir=${MINICRM_CLUSTER_DIR:-.minicrm-cluster}
bash scripts/cluster.sh stop "$dir" # nodes a killed run left behind
rm -rf "$dir"
trap 'bash scripts/cluster.sh stop "$dir"' EXIT
bash scripts/cluster.sh start "$dir" >/dev/null
REDIS_URL=$(cat "$dir/url")
export REDIS_URL
export MINICRM_QUEUE_SHARDS=${MINICRM_QUEUE_SHARDS:-6}
echo "up.sh: Redis Cluster $REDIS_URL (nodes in $dir), queue.shards=$MINICRM_QUEUE_SHARDS" >&2
build/bin/minicrm up "$@"
