#!/usr/bin/env bash
# A local Redis Cluster for trying minicrm's cluster mode and for its tests: 3 masters and
# 3 replicas, no persistence, small maxmemory, fast failover (cluster-node-timeout 1000 ms).
# MINICRM_CLUSTER_REPLICAS=0 starts 3 masters only (3 ports; for benchmarks: what the
# replicas cost); MINICRM_CLUSTER_NODE_TIMEOUT (ms) overrides the node timeout.
#
#   scripts/cluster.sh start DIR [PORT x6]   start (free ports from 7000 up if none given),
#                                            create the cluster, wait until it serves every
#                                            slot and every replica is in sync; prints the URL
#                                            (also in DIR/url), e.g.
#                                            MINICRM_REDIS_URL=$(cat DIR/url) build/bin/minicrm up
#   scripts/cluster.sh stop DIR              stop every node started in DIR (by pid file)
#   scripts/cluster.sh status DIR            CLUSTER NODES of the first reachable node
#
# DIR keeps one subdirectory per node (nodes.conf, log, pid file) and `ports` (one per line).
set -euo pipefail

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || {
    echo "usage: $0 start|stop|status DIR [PORT x6]" >&2
    exit 2
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

replicas=${MINICRM_CLUSTER_REPLICAS:-1}
case "$replicas" in 0 | 1) ;; *)
    echo "cluster.sh: MINICRM_CLUSTER_REPLICAS must be 0 or 1" >&2
    exit 2
    ;;
esac
nnodes=$((3 * (1 + replicas)))
node_timeout=${MINICRM_CLUSTER_NODE_TIMEOUT:-1000}

case "$cmd" in
start)
    shift 2
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    ports=("$@")
    if [ ${#ports[@]} -eq 0 ]; then
        p=7000
        while [ ${#ports[@]} -lt $nnodes ]; do
            port_free "$p" && port_free $((p + 10000)) && ports+=("$p")
            p=$((p + 1))
        done
    fi
    [ ${#ports[@]} -eq $nnodes ] || {
        echo "cluster.sh: need $nnodes ports" >&2
        exit 2
    }
    : >"$dir/ports"
    for p in "${ports[@]}"; do
        mkdir -p "$dir/$p"
        echo "$p" >>"$dir/ports"
        redis-server --port "$p" --bind 127.0.0.1 --daemonize yes --dir "$dir/$p" \
            --pidfile "$dir/$p/redis.pid" --logfile "$dir/$p/redis.log" \
            --cluster-enabled yes --cluster-config-file "$dir/$p/nodes.conf" \
            --cluster-node-timeout "$node_timeout" --appendonly no --save '' \
            --maxmemory 128mb --maxmemory-policy noeviction >/dev/null
    done
    for p in "${ports[@]}"; do
        for _ in $(seq 100); do
            redis-cli -p "$p" PING 2>/dev/null | grep -q PONG && break
            sleep 0.05
        done
    done
    hosts=()
    for p in "${ports[@]}"; do hosts+=("127.0.0.1:$p"); done
    redis-cli --cluster create "${hosts[@]}" --cluster-replicas "$replicas" --cluster-yes \
        >"$dir/create.log" 2>&1 || {
        cat "$dir/create.log" >&2
        exit 1
    }
    # Every node must see the whole map, and every replica must be in sync, before use.
    for _ in $(seq 400); do
        ok=1
        for p in "${ports[@]}"; do
            info=$(redis-cli -p "$p" CLUSTER INFO 2>/dev/null || true)
            grep -q 'cluster_state:ok' <<<"$info" || ok=0
            repl=$(redis-cli -p "$p" INFO replication 2>/dev/null || true)
            if grep -q 'role:slave' <<<"$repl"; then
                grep -q 'master_link_status:up' <<<"$repl" || ok=0
            fi
        done
        [ $ok = 1 ] && break
        sleep 0.05
    done
    [ $ok = 1 ] || {
        echo "cluster.sh: cluster did not become ready" >&2
        exit 1
    }
    url="redis+cluster://$(
        IFS=,
        echo "${hosts[*]}"
    )/"
    echo "$url" >"$dir/url"
    echo "$url"
    ;;
stop)
    [ -d "$dir" ] || exit 0
    # Only pids that are still a redis-server (a node killed by a test leaves its pid file).
    pids=()
    for pf in "$dir"/*/redis.pid; do
        [ -f "$pf" ] || continue
        pid=$(cat "$pf" 2>/dev/null || true)
        rm -f "$pf"
        [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q redis-server &&
            pids+=("$pid")
    done
    [ ${#pids[@]} -gt 0 ] || exit 0
    kill "${pids[@]}" 2>/dev/null || true
    for pid in "${pids[@]}"; do
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        kill -9 "$pid" 2>/dev/null || true
    done
    ;;
status)
    while read -r p; do
        redis-cli -p "$p" CLUSTER NODES 2>/dev/null && exit 0
    done <"$dir/ports"
    exit 1
    ;;
*)
    echo "usage: $0 start|stop|status DIR [PORT x6]" >&2
    exit 2
    ;;
esac
