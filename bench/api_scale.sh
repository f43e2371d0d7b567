#!/usr/bin/env bash
# api_scale: the latencies of the API's read path at millions of rows (issue 13 points 5-8).
#
#   bench/api_scale.sh [BUILD_DIR]            (default build; needs minicrm-api, minicrm-devdb,
#                                              minicrm, bench_api_scale)
#   CUSTOMERS=1000000 ORDERS=500000 LOGS=3000000 REPEAT=21 bench/api_scale.sh build
#
# Starts a private redis-server, an in-memory minicrm-devdb and minicrm-api on free ports (the
# API creates its indexes on the empty collections), seeds with bench_api_scale (batched
# inserts straight into devdb: CUSTOMERS customers, ORDERS orders, LOGS logs in campaigns of
# one log per customer; it prints how long each took), then times each request REPEAT times
# with curl (time_total: connect + request + answer on loopback) and prints the median, p90 and
# max in milliseconds with the issue's target:
#   point 5: GET /api/campaigns/:id of the largest campaign (counters), and ?verify=1 (the
#            exact log counts, O(audience): shown for comparison, no target)
#   point 6: GET /communication first page, a page at the api.max_skip bound, a page past it
#            (400), and ?after= in the middle of the logs
#   point 7: first pages of /customers, /orders, /api/campaigns, /api/campaigns/:id/logs; deep
#            ?page= (400 past api.max_skip) and ?after= in the middle; POST
#            /api/campaigns/preview with each rule alone and combined
# Everything is stopped at exit. The bench asserts nothing.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
BIN="$BUILD/bin"
CUSTOMERS=${CUSTOMERS:-1000000}
ORDERS=${ORDERS:-500000}
LOGS=${LOGS:-3000000}
REPEAT=${REPEAT:-21}
for p in minicrm-api minicrm-devdb minicrm bench_api_scale; do
  [ -x "$BIN/$p" ] || { echo "api_scale: $BIN/$p missing (cmake --build $BUILD --target $p)" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/api_scale.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

free_port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }

RPORT=$(free_port); DPORT=$(free_port); APORT=$(free_port)
redis-server --port "$RPORT" --save '' --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 & PIDS+=($!)
"$BIN/minicrm-devdb" --port "$DPORT" >"$WORK/devdb.log" 2>&1 & PIDS+=($!)
wait_port "$RPORT"; wait_port "$DPORT"

export MONGO_URI="mongodb://127.0.0.1:$DPORT/apiscale" REDIS_URL="redis://127.0.0.1:$RPORT/0"
export VENDOR_SECRET=bench-secret PORT=$APORT MINICRM_LOG_LEVEL=info MINICRM_API_ACCESS_LOG=off
KEY=$("$BIN/minicrm" keys create --role admin --name bench 2>/dev/null | head -1)
"$BIN/minicrm-api" >"$WORK/api.log" 2>&1 & PIDS+=($!)
wait_port "$APORT"
for _ in $(seq 1 600); do grep -q 'indexes_ready\|indexes_incomplete' "$WORK/api.log" && break; sleep 0.1; done
grep -q 'indexes_ready' "$WORK/api.log" || { echo "api_scale: the API's indexes are not ready" >&2; tail "$WORK/api.log" >&2; exit 1; }

echo "seeding $CUSTOMERS customers, $ORDERS orders, $LOGS logs (bench_api_scale)"
T0=$(date +%s.%N)
"$BIN/bench_api_scale" "$MONGO_URI" "$CUSTOMERS" "$ORDERS" "$LOGS" | tee "$WORK/seed.out"
awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "seeding took %.0f s\n", b - a}'
CAMP=$(awk '/^campaign /{print $2}' "$WORK/seed.out")
echo "devdb RSS $(awk '/VmRSS/{printf "%.0f MiB", $2/1024}' /proc/"${PIDS[1]}"/status)"

H="Authorization: Bearer $KEY"
URL="http://127.0.0.1:$APORT"
# lat NAME TARGET_MS METHOD PATH [BODY]: REPEAT timed requests; median, p90, max; status of the last.
lat() {
  local name=$1 target=$2 method=$3 path=$4 body=${5:-} i times="" st
  for i in $(seq 1 "$REPEAT"); do
    if [ -n "$body" ]; then
      out=$(curl -s -o "$WORK/last.json" -w '%{http_code} %{time_total}' -X "$method" -H "$H" \
        -H 'Content-Type: application/json' -d "$body" "$URL$path")
    else
      out=$(curl -s -o "$WORK/last.json" -w '%{http_code} %{time_total}' -X "$method" -H "$H" "$URL$path")
    fi
    st=${out%% *}
    times+="${out#* }"$'\n'
  done
  printf '%s' "$times" | sort -n | awk -v n="$name" -v t="$target" -v st="$st" '
    {a[NR]=$1*1000}
    END{m=a[int((NR+1)/2)]; p=a[int(NR*0.9+0.5)]; x=a[NR];
        v = t == "-" ? "" : (m <= t ? sprintf("(target %s ms: ok)", t) : sprintf("(target %s ms: OVER)", t));
        printf "%-58s %3s  median %7.2f ms  p90 %7.2f ms  max %7.2f ms %s\n", n, st, m, p, x, v}'
}
hdr() { curl -s -D - -o /dev/null -H "$H" "$URL$1" | awk -v h="$2" 'BEGIN{IGNORECASE=1} $1 == h":" {sub(/\r$/,"",$2); print $2}'; }

echo
echo "== point 5: campaign progress (largest campaign: $(awk '/^campaign /{print $4}' "$WORK/seed.out") logs, $LOGS in all)"
lat "GET /api/campaigns/:id (counters)" 5 GET "/api/campaigns/$CAMP"
REPEAT_SAVE=$REPEAT; REPEAT=3
lat "GET /api/campaigns/:id?verify=1 (exact counts, slow)" - GET "/api/campaigns/$CAMP?verify=1"
REPEAT=$REPEAT_SAVE

echo "== point 6: /communication at $LOGS logs"
lat "GET /communication?page=1&limit=20" 10 GET "/communication?page=1&limit=20"
lat "GET /communication?page=500&limit=20 (skip 9,980)" 10 GET "/communication?page=500&limit=20"
lat "GET /communication?page=1000&limit=20 (past api.max_skip: 400)" 10 GET "/communication?page=1000&limit=20"
MID_MS=$(curl -s -H "$H" "$URL/communication?limit=1" | /usr/bin/python3 -c '
import json, sys, datetime
d = json.load(sys.stdin)["logs"][0]["createdAt"]
t = datetime.datetime.strptime(d, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
print(int(t.timestamp() * 1000) - 500000)')
lat "GET /communication?after=<middle>&limit=20" 10 GET "/communication?after=${MID_MS}_ffffffffffffffffffffffff&limit=20"
NEXT=$(hdr "/communication?page=500&limit=20" X-Next-Cursor)
lat "GET /communication?after=<page 500's X-Next-Cursor>&limit=20" 10 GET "/communication?after=$NEXT&limit=20"

echo "== point 7: lists at $CUSTOMERS customers, $ORDERS orders"
lat "GET /customers?limit=20" 10 GET "/customers?limit=20"
lat "GET /customers (100)" 10 GET "/customers"
lat "GET /customers?page=100 (skip 9,900)" 50 GET "/customers?page=100"
lat "GET /customers?page=5000 (past api.max_skip: 400)" 50 GET "/customers?page=5000"
MID_CUST=$(curl -s -H "$H" "$URL/customers?page=100&limit=1" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["_id"])')
lat "GET /customers?after=<100th page's id>" 10 GET "/customers?after=$MID_CUST"
lat "GET /orders?limit=20" 10 GET "/orders?limit=20"
lat "GET /orders (100)" 10 GET "/orders"
lat "GET /orders?page=100 (skip 9,900)" 50 GET "/orders?page=100"
lat "GET /orders?page=2000 (past api.max_skip: 400)" 50 GET "/orders?page=2000"
OMS=$(( $(date +%s) * 1000 - 180 * 86400000 ))
lat "GET /orders?after=<half a year back>" 10 GET "/orders?after=${OMS}_ffffffffffffffffffffffff"
lat "GET /api/campaigns" 10 GET "/api/campaigns"
lat "GET /api/campaigns/:id/logs (100)" 10 GET "/api/campaigns/$CAMP/logs"
lat "GET /api/campaigns/:id/logs?after=<100th page's customer>" 10 GET "/api/campaigns/$CAMP/logs?after=$MID_CUST"
for rules in '{}' '{"min_spend":9000}' '{"min_spend":100}' '{"max_spend":500}' '{"inactive_days":300}' \
  '{"inactive_days":10}' '{"recent_signup":30}' '{"email_domain":"acme.io"}' \
  '{"min_spend":5000,"inactive_days":30}' '{"min_spend":5000,"email_domain":"gmail.com"}' \
  '{"max_spend":2000,"recent_signup":90,"email_domain":"proton.me"}'; do
  lat "POST /api/campaigns/preview $rules" 50 POST /api/campaigns/preview "{\"rules\":$rules}"
done
