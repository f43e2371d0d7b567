#!/usr/bin/env bash
# api_bench: requests/s and latency of minicrm-api on devdb, measured with wrk (issue 4 point 11).
#
#   bench/api_bench.sh [BUILD_DIR]      (default build; needs minicrm-api, minicrm-devdb, minicrm)
#   DURATION=10s CONNS=64 THREADS=2 bench/api_bench.sh build-api
#
# Starts a private redis-server and minicrm-devdb on free ports, creates an admin API key with
# `minicrm keys create`, starts minicrm-api, then runs wrk against:
#   1. POST /customers                      (unique e-mails; also seeds the customer list)
#   2. GET  /customers?limit=100
#   3. POST /api/receipts/delivery          (a signed batch of 100 receipts per request)
#   4. GET  /auth/me                        (Bearer key)
# and prints, for each, requests/s and latency (avg, p50, p99). Everything is stopped at exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
BIN="$BUILD/bin"
DURATION=${DURATION:-5s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
API_THREADS=${API_THREADS:-4}
for p in minicrm-api minicrm-devdb minicrm; do
  [ -x "$BIN/$p" ] || { echo "api_bench: $BIN/$p missing (cmake --build $BUILD --target $p)" >&2; exit 2; }
done
command -v wrk >/dev/null || { echo "api_bench: wrk not installed (apt-get install wrk)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/api_bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }

RPORT=$(free_port); DPORT=$(free_port); APORT=$(free_port)
redis-server --port "$RPORT" --save '' --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 & PIDS+=($!)
"$BIN/minicrm-devdb" --port "$DPORT" >"$WORK/devdb.log" 2>&1 & PIDS+=($!)
wait_port "$RPORT"; wait_port "$DPORT"

export MONGO_URI="mongodb://127.0.0.1:$DPORT/apibench" REDIS_URL="redis://127.0.0.1:$RPORT/0"
export VENDOR_SECRET=bench-secret PORT=$APORT MINICRM_API_THREADS=$API_THREADS MINICRM_LOG_LEVEL=warn
KEY=$("$BIN/minicrm" keys create --role admin --name bench 2>/dev/null | head -1)
"$BIN/minicrm-api" >"$WORK/api.log" 2>&1 & PIDS+=($!)
wait_port "$APORT"
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$APORT/readyz" >/dev/null && break; sleep 0.1; done

# Signed batch of 100 receipts (log ids need not exist: a batch is verified, validated, queued).
BODY="$WORK/receipts.json"
/usr/bin/python3 - "$BODY" <<'PY'
import json, os, sys
rs = [{"log_id": os.urandom(12).hex(), "vendorMsgId": "v%d" % i, "status": "SENT" if i % 10 else "FAILED"} for i in range(100)]
open(sys.argv[1], "w").write(json.dumps(rs, separators=(",", ":")))
PY
SIG=$(openssl dgst -sha256 -hmac bench-secret -r "$BODY" | cut -d' ' -f1)

cat >"$WORK/post_customers.lua" <<LUA
local n = 0
function setup(thread) n = n + 1; thread:set("tid", n) end
function init(args) counter = 0 end
function request()
  counter = counter + 1
  local body = string.format('{"name":"Bench %d-%d","email":"b%d_%d@bench%d.io","total_spend":%d}',
      tid, counter, tid, counter, counter % 7, (counter * 37) % 9000)
  return wrk.format("POST", "/customers", {["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer $KEY"}, body)
end
LUA
cat >"$WORK/get.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $KEY"
LUA
cat >"$WORK/receipts.lua" <<LUA
local f = io.open("$BODY", "rb"); local body = f:read("*a"); f:close()
wrk.method = "POST"; wrk.body = body
wrk.headers["Content-Type"] = "application/json"; wrk.headers["X-Signature"] = "$SIG"
LUA
cat >"$WORK/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local errs = summary.errors.status + summary.errors.connect + summary.errors.read +
      summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %.0f req/s  latency avg %.2f ms  p50 %.2f ms  p99 %.2f ms  non-2xx/errors %d\n",
      summary.requests / (summary.duration / 1e6), latency.mean / 1000,
      latency:percentile(50) / 1000, latency:percentile(99) / 1000, errs))
end
LUA
run() { # name script path
  local name=$1 script=$2 path=$3
  cat "$script" "$WORK/report.lua" >"$WORK/run.lua"
  local out
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s "$WORK/run.lua" "http://127.0.0.1:$APORT$path" 2>&1)
  printf '%-40s %s\n' "$name" "$(echo "$out" | grep '^RESULT' | sed 's/^RESULT //')"
}

echo "minicrm-api on devdb: wrk -t$THREADS -c$CONNS -d$DURATION, api.threads=$API_THREADS ($(nproc) cores)"
run "POST /customers" "$WORK/post_customers.lua" /customers
echo "  (customers now: $(curl -s -H "Authorization: Bearer $KEY" "http://127.0.0.1:$APORT/customers?limit=1000" | /usr/bin/python3 -c 'import json,sys;print(len(json.load(sys.stdin)))')+ on the first page)"
run "GET /customers?limit=100" "$WORK/get.lua" "/customers?limit=100"
run "POST /api/receipts/delivery (100/req)" "$WORK/receipts.lua" /api/receipts/delivery
run "GET /auth/me" "$WORK/get.lua" /auth/me
