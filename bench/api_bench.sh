#!/usr/bin/env bash
# api_bench: requests/s, latency and the API's own CPU per request of minicrm-api on devdb,
# measured with wrk (issue 4 point 11, issue 13 points 2-4).
#
#   bench/api_bench.sh [BUILD_DIR]      (default build; needs minicrm-api, minicrm-devdb, minicrm,
#                                        bench_api_seed)
#   DURATION=3s RUNS=3 CONNS=32 THREADS=2 bench/api_bench.sh build
#
# Starts a private redis-server and minicrm-devdb on free ports, creates an admin API key with
# `minicrm keys create`, starts minicrm-api, then runs wrk against:
#   POST /customers, POST /orders, POST /api/campaigns/preview  (unique bodies; they also seed)
#   every list route with 100 and with 1,000 documents per page: /customers, /orders,
#     /api/campaigns, /api/campaigns/:id/logs, /communication, /api/keys, /api/users
#     (campaigns, logs and users stored by bench_api_seed; keys made through POST /api/keys)
#   POST /api/receipts/delivery (a signed batch of 100 receipts), GET /auth/me (Bearer key)
# Each line: requests/s, latency avg/p50/p99, and "cpu": the API process's own CPU (utime +
# stime from /proc/PID/stat, before and after the run) divided by the requests answered, which
# holds on a loaded box; lists also print the issue-13 bound 40 us + 1.5 us per document. With
# RUNS > 1 each route runs RUNS times and the line shows the median run (by cpu). Everything is
# stopped at exit. The bench asserts nothing.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
BIN="$BUILD/bin"
DURATION=${DURATION:-3s}
RUNS=${RUNS:-3}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
API_THREADS=${API_THREADS:-4}
for p in minicrm-api minicrm-devdb minicrm bench_api_seed; do
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
"$BIN/minicrm-api" >"$WORK/api.log" 2>&1 & APID=$!; PIDS+=($APID)
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
function init(args) counter = 0; run = os.time() end
function request()
  counter = counter + 1
  local body = string.format('{"name":"Bench %d-%d","email":"b%d_%d_%d@bench%d.io","total_spend":%d}',
      tid, counter, run, tid, counter, counter % 7, (counter * 37) % 9000)
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
  io.write(string.format("RESULT %d %.0f %.2f %.2f %.2f %d\n", summary.requests,
      summary.requests / (summary.duration / 1e6), latency.mean / 1000,
      latency:percentile(50) / 1000, latency:percentile(99) / 1000, errs))
end
LUA
TCK=$(getconf CLK_TCK)
api_ticks() { awk '{print $14 + $15}' "/proc/$APID/stat"; }
run() { # name script path [docs per page]
  local name=$1 script=$2 path=$3 docs=${4:-} lines="" i
  cat "$script" "$WORK/report.lua" >"$WORK/run.lua"
  for i in $(seq 1 "$RUNS"); do
    local t0 t1 out
    t0=$(api_ticks)
    out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s "$WORK/run.lua" "http://127.0.0.1:$APORT$path" 2>&1 | grep '^RESULT' || true)
    t1=$(api_ticks)
    [ -n "$out" ] || { echo "api_bench: wrk failed on $path" >&2; continue; }
    set -- $out
    lines+="$(awk -v t="$((t1 - t0))" -v k="$TCK" -v n="$2" 'BEGIN{printf "%.1f", t * 1e6 / k / (n > 0 ? n : 1)}') $3 $4 $5 $6 $7"$'\n'
  done
  local med
  med=$(printf '%s' "$lines" | sort -n | awk '{a[NR]=$0} END{print a[int((NR+1)/2)]}')
  set -- $med
  local bound=""
  if [ -n "$docs" ]; then
    bound=$(awk -v c="$1" -v d="$docs" 'BEGIN{b=40+1.5*d; printf "(bound %.0f us: %s)", b, c <= b ? "ok" : "OVER"}')
  fi
  printf '%-44s %6s req/s  p50 %6s ms  p99 %7s ms  cpu %7s us/req  err %s %s\n' \
    "$name" "$2" "$4" "$5" "$1" "$6" "$bound"
}
A="Authorization: Bearer $KEY"
api() { curl -sf -H "$A" -H 'Content-Type: application/json' "$@"; }
pyjson() { /usr/bin/python3 -c "import json,sys;d=json.load(sys.stdin);print($1)"; }

echo "minicrm-api on devdb: wrk -t$THREADS -c$CONNS -d$DURATION x$RUNS (median by cpu), api.threads=$API_THREADS ($(nproc) cores)"
run "POST /customers" "$WORK/post_customers.lua" /customers

# Orders on 100 existing customers.
IDS=$(api "http://127.0.0.1:$APORT/customers?limit=100" | pyjson '" ".join(c["_id"] for c in d)')
{
  echo "local ids = {"; for id in $IDS; do echo "\"$id\","; done; echo "}"
  cat <<LUA
local n = 0
function setup(thread) n = n + 1; thread:set("tid", n) end
function init(args) counter = 0 end
function request()
  counter = counter + 1
  local body = string.format('{"customer_id":"%s","amount":%d,"status":"%s"}',
      ids[(counter + tid) % #ids + 1], 10 + counter % 900, counter % 3 == 0 and "cancelled" or "completed")
  return wrk.format("POST", "/orders", {["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer $KEY"}, body)
end
LUA
} >"$WORK/post_orders.lua"
run "POST /orders" "$WORK/post_orders.lua" /orders
cat >"$WORK/preview.lua" <<LUA
wrk.method = "POST"; wrk.body = '{"rules":{"min_spend":4000,"inactive_days":30}}'
wrk.headers["Content-Type"] = "application/json"; wrk.headers["Authorization"] = "Bearer $KEY"
LUA
run "POST /api/campaigns/preview" "$WORK/preview.lua" /api/campaigns/preview

# One campaign through the API (no worker runs: it stays queued), its copies, its logs, users.
api -XPOST "http://127.0.0.1:$APORT/api/campaigns" -d '{"name":"Bench win-back","rules":{"min_spend":1},"message":"Hi {{name}}, 10% off!"}' >/dev/null
CID=$("$BIN/bench_api_seed" "$MONGO_URI" campaigns,logs 1000)
"$BIN/bench_api_seed" "$MONGO_URI" users 100 >/dev/null
mkkeys() { /usr/bin/python3 - "$APORT" "$KEY" "$1" <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for i in range(int(sys.argv[3])):
    c.request("POST", "/api/keys", '{"role":"staff","name":"bench %d"}' % i,
              {"Authorization": "Bearer " + sys.argv[2], "Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status == 201, r.status
PY
}
mkkeys 99
echo "  (stored: customers >= 1000, orders >= 1000, campaigns 1000+, logs of campaign $CID >= 1000, 100 keys, 100 users)"
for n in 100 1000; do
  if [ "$n" = 1000 ]; then
    mkkeys 900; "$BIN/bench_api_seed" "$MONGO_URI" users 900 >/dev/null
  fi
  run "GET /customers?limit=$n" "$WORK/get.lua" "/customers?limit=$n" "$n"
  run "GET /orders?limit=$n" "$WORK/get.lua" "/orders?limit=$n" "$n"
  run "GET /api/campaigns?limit=$n" "$WORK/get.lua" "/api/campaigns?limit=$n" "$n"
  run "GET /api/campaigns/:id/logs?limit=$n" "$WORK/get.lua" "/api/campaigns/$CID/logs?limit=$n" "$n"
  run "GET /communication?limit=$n" "$WORK/get.lua" "/communication?limit=$n" "$n"
  run "GET /api/keys ($n keys)" "$WORK/get.lua" "/api/keys" "$n"
  run "GET /api/users ($n users)" "$WORK/get.lua" "/api/users" "$n"
done
run "POST /api/receipts/delivery (100/req)" "$WORK/receipts.lua" /api/receipts/delivery
run "GET /auth/me" "$WORK/get.lua" /auth/me
