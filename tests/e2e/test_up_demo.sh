#!/usr/bin/env bash
# End to end, as a new user: a fresh clone, the README's first command (with free ports), then
# `minicrm demo` must complete a campaign with exact counts; a second `up` must refuse to start
# a second set; a killed child must be restarted; the console must stay quiet (no per-request
# lines, no unchanged progress line repeated by an idle program); Ctrl-C must stop everything
# and leave nothing running. Along the way: up's state is private (0700 directories, 0600
# files), its vendor and session secrets are random and kept across restarts, and, its output
# not being a terminal, the first admin key is written to a 0600 file instead of being printed.
set -euo pipefail
src=${1:?usage: test_up_demo.sh SOURCE_DIR}
work=$(mktemp -d /tmp/minicrm-e2e-XXXXXX)
up_pid=""
cleanup() {
  if [ -n "$up_pid" ] && kill -0 "$up_pid" 2>/dev/null; then
    kill -INT "$up_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$up_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$up_pid" 2>/dev/null || true
  fi
  pkill -KILL -f "$work/" 2>/dev/null || true
  [ -n "${MINICRM_TEST_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- up log (tail)"; tail -80 "$work/up.log" 2>/dev/null || true; exit 1; }

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # wait_for SECONDS CMD...
  local t=$1; shift
  for _ in $(seq 1 $((t * 10))); do "$@" && return 0; sleep 0.1; done
  return 1
}

# A fresh clone of what is committed (or a copy of the tree when it is not a git checkout).
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
  git clone -q "$src" "$work/minicrm"
else
  mkdir "$work/minicrm" && (cd "$src" && tar --exclude='./build*' -cf - .) | tar -C "$work/minicrm" -xf -
fi
cd "$work/minicrm"
up_cmd=$(awk '/^```/{n++; next} n==1 && NF {sub(/[ \t]+#.*/, ""); print; exit}' README.md)
[ -n "$up_cmd" ] || fail "README has no first command"
echo "README's first command: $up_cmd"

redis_port=$(free_port); devdb_port=$(free_port); api_port=$(free_port)
flags=(--set "redis.url=redis://127.0.0.1:$redis_port/0"
       --set "mongo.uri=mongodb://127.0.0.1:$devdb_port/minicrm"
       --set "api.port=$api_port")
# shellcheck disable=SC2086
$up_cmd "${flags[@]}" --workers 2 --dir "$work/state" > "$work/up.log" 2>&1 &
up_pid=$!
up_ready() {
  if ! kill -0 "$up_pid" 2>/dev/null; then
    wait "$up_pid" && rc=0 || rc=$?
    up_pid=""
    fail "up exited with status $rc before it was ready"
  fi
  grep -q "ready in" "$work/up.log"
}
wait_for 300 up_ready || fail "system not ready"
state=$work/state
mode() { stat -c %a "$1"; }
# up prints the key's whereabouts just after "ready in": poll for the line (and the line after
# it, so the key file is complete) instead of reading the log at the moment "ready" appeared.
key_said() {
  grep -q "first start: created an admin API key.*kept in $state/admin-key (mode 0600)" "$work/up.log" &&
    grep -q "use it as: curl" "$work/up.log"
}
wait_for 30 key_said || fail "up did not say where the first admin key is"
[ "$(mode "$state/admin-key")" = 600 ] || fail "admin-key mode $(mode "$state/admin-key")"
admin_key=$(grep -o 'mck_[A-Za-z0-9_-]*' "$state/admin-key")
[ -n "$admin_key" ] || fail "no admin key in $state/admin-key"
if grep -qF "$admin_key" "$work/up.log"; then fail "admin key printed to a non-terminal"; fi
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $admin_key" "http://127.0.0.1:$api_port/api/keys")
[ "$code" = 200 ] || fail "the admin key of $state/admin-key does not work (HTTP $code)"
echo "ok: ready, admin key kept in a 0600 file and working"

# Private state: directories 0700, files holding secrets or data 0600; a random vendor secret.
for d in "$state" "$state/redis" "$state/devdb"; do
  [ "$(mode "$d")" = 700 ] || fail "$d has mode $(mode "$d")"
done
for f in "$state/vendor-secret" "$state/session-secret" "$state/up.state" "$state/up.lock" "$state"/devdb/*; do
  [ "$(mode "$f")" = 600 ] || fail "$f has mode $(mode "$f")"
done
vendor_secret=$(cat "$state/vendor-secret")
[ ${#vendor_secret} -ge 32 ] && [ "$vendor_secret" != dev-vendor-secret ] || fail "vendor secret is not random"
session_secret=$(cat "$state/session-secret")
[ ${#session_secret} -ge 32 ] && [ "$session_secret" != "$vendor_secret" ] || fail "session secret is not random"
if grep -q "session_secret_unset" "$work/up.log"; then fail "the API under up runs without a kept session secret"; fi
if grep -qF "$vendor_secret" "$work/up.log"; then fail "vendor secret printed"; fi
# The API uses it: a receipt signed with the development secret is refused (401).
body='{"log_id":"000000000000000000000001","vendorMsgId":"v1","status":"SENT"}'
sig=$(/usr/bin/python3 -c 'import hashlib, hmac, sys; print(hmac.new(b"dev-vendor-secret", sys.argv[1].encode(), hashlib.sha256).hexdigest())' "$body")
code=$(curl -s -o /dev/null -w '%{http_code}' -XPOST -H 'Content-Type: application/json' \
  -H "X-Signature: $sig" -d "$body" "http://127.0.0.1:$api_port/api/receipts/delivery")
[ "$code" = 401 ] || fail "a receipt signed with the development secret got HTTP $code"
echo "ok: private state files, random vendor secret in use"

# With --demo (the README's command has it), up runs one campaign end to end by itself.
if [[ " $up_cmd " == *" --demo "* ]]; then
  demo_done() { grep -q "demo .*exited with status" "$work/up.log"; }
  wait_for 180 demo_done || fail "up --demo: the demo did not finish"
  grep -q "demo .*exited with status 0" "$work/up.log" || fail "up --demo: the demo failed"
  grep -q "status      COMPLETED" "$work/up.log" || fail "up --demo: campaign not completed"
  echo "ok: up --demo delivered a campaign"
fi

# A second `up` on the same state dir says what runs and starts nothing.
if build/bin/minicrm up "${flags[@]}" --dir "$work/state" > "$work/up2.log" 2>&1; then
  fail "second up did not refuse"
fi
grep -q "already running" "$work/up2.log" || fail "second up did not say what is running"
echo "ok: second up refused"

# A crashed child is reported and restarted.
old=$(pgrep -f "$work/minicrm/build/bin/minicrm-receipts" | head -1)
[ -n "$old" ] || fail "no receipts worker running"
kill -KILL "$old"
wait_for 30 grep -q "receipts .*killed by signal 9; restarting" "$work/up.log" || fail "crash not reported"
restarted() { local p; p=$(pgrep -f "$work/minicrm/build/bin/minicrm-receipts" | head -1); [ -n "$p" ] && [ "$p" != "$old" ]; }
wait_for 30 restarted || fail "receipts worker not restarted"
echo "ok: killed receipts worker reported and restarted"

# The demo: seeds, creates a campaign, follows it to completion, checks exact counts itself.
build/bin/minicrm demo "${flags[@]}" --customers 400 > "$work/demo.log" 2>&1 || { cat "$work/demo.log"; fail "demo failed"; }
grep -q "status      COMPLETED" "$work/demo.log" || { cat "$work/demo.log"; fail "campaign not completed"; }
cat "$work/demo.log" | sed -n '/campaign    /,/time /p'
# Cross-check the exact counts over HTTP with the admin key.
camp=$(grep -o 'campaign [0-9a-f]\{24\}' "$work/demo.log" | head -1 | cut -d' ' -f2)
/usr/bin/python3 - "$api_port" "$admin_key" "$camp" <<'PY' || fail "counts do not add up"
import json, sys, urllib.request
port, key, camp = sys.argv[1:]
def get(path):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {key}"})
    return json.load(urllib.request.urlopen(req))
c = get(f"/api/campaigns/{camp}")
p = c["progress"]
seen, after = {}, None
while True:
    page = get(f"/api/campaigns/{camp}/logs?limit=1000" + (f"&after={after}" if after else ""))
    for log in page:
        cid = log["customer_id"]["_id"] if isinstance(log["customer_id"], dict) else log["customer_id"]
        assert cid not in seen, f"two logs for customer {cid}"
        seen[cid] = log["status"]
    if len(page) < 1000:
        break
    last = page[-1]["customer_id"]  # the logs cursor is the customer id (api/README.md)
    after = last["_id"] if isinstance(last, dict) else last
by = {s: sum(1 for v in seen.values() if v == s) for s in ("PENDING", "SENT", "FAILED")}
print("logs by status:", by, "campaign:", {k: p[k] for k in ("audience_size", "sent", "failed", "pending")})
assert len(seen) == p["audience_size"] == c["audience_size"]
assert by["PENDING"] == 0 and by["SENT"] == p["sent"] and by["FAILED"] == p["failed"]
assert c["status"] == "COMPLETED"
assert "ctoks" not in c, "internal receipt tokens shown to clients"
listed = [x for x in get("/api/campaigns?limit=100") if x["_id"] == camp]
assert len(listed) == 1 and "ctoks" not in listed[0], "internal fields in the campaign list"
PY
echo "ok: demo completed with exact counts"
demo_end=$(date +%s)

# A quiet console: `up` leaves out the API's per-request lines, and a program prints its
# progress line only when a figure changed. Progress is looked at every 10 s, so the system is
# left idle for two and a half periods after the last demo before the log is judged.
idle_enough() { [ "$(date +%s)" -ge $((demo_end + 25)) ]; }
wait_for 60 idle_enough || fail "clock did not advance"
/usr/bin/python3 - "$work/up.log" <<'PY' || fail "console not quiet"
import re, sys
access, progress, repeats, last = 0, 0, [], {}
for line in open(sys.argv[1], errors="replace"):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line).rstrip("\n")
    if re.search(r"\bevent=request\b", line):
        access += 1
    m = re.search(r"\bpid=(\d+) event=(\S+\.progress) ?(.*)$", line)
    if not m:
        continue
    progress += 1
    who = re.search(r"\bconsumer=(\S+)", m.group(3))
    key = (m.group(1), m.group(2), who.group(1) if who else "")
    if last.get(key) == m.group(3):
        repeats.append(line)
    last[key] = m.group(3)
print(f"access lines: {access}, progress lines: {progress}, unchanged repeats: {len(repeats)}")
for r in repeats[:5]:
    print("  repeated:", r)
assert access == 0, "per-request access lines in up's output"
assert progress > 0, "no progress line at all"
assert not repeats, "an idle program repeated an unchanged progress line"
PY
echo "ok: quiet console (no access lines, no repeated progress line)"

# Ctrl-C: everything stops, in reverse order, and nothing is left.
kill -INT "$up_pid"
wait_for 60 bash -c "! kill -0 $up_pid 2>/dev/null" || fail "up did not stop"
wait "$up_pid" && rc=0 || rc=$?
up_pid=""
[ "$rc" = 0 ] || fail "up exited with $rc"
grep -q "all stopped" "$work/up.log" || fail "no 'all stopped'"
if pgrep -f "$work/" >/dev/null; then pgrep -fa "$work/"; fail "processes left running"; fi
for p in $redis_port $devdb_port $api_port; do
  if (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then fail "port $p still open"; fi
done
echo "ok: stopped cleanly, nothing left running"

# Start again on the same state: the data is still there (devdb journal, Redis AOF) and the
# first-start admin key is not made again.
build/bin/minicrm up "${flags[@]}" --workers 1 --dir "$work/state" > "$work/up3.log" 2>&1 &
up_pid=$!
up_ready3() { kill -0 "$up_pid" 2>/dev/null || fail "restarted up exited"; grep -q "ready in" "$work/up3.log"; }
wait_for 60 up_ready3 || fail "restarted system not ready"
if grep -q "first start" "$work/up3.log"; then fail "admin key made again on restart"; fi
[ "$(cat "$state/vendor-secret")" = "$vendor_secret" ] || fail "vendor secret changed on restart"
[ "$(cat "$state/session-secret")" = "$session_secret" ] || fail "session secret changed on restart (logins would end)"
/usr/bin/python3 - "$api_port" "$admin_key" "$camp" <<'PY' || fail "data lost across restart"
import json, sys, urllib.request
port, key, camp = sys.argv[1:]
req = urllib.request.Request(f"http://127.0.0.1:{port}/api/campaigns/{camp}", headers={"Authorization": f"Bearer {key}"})
c = json.load(urllib.request.urlopen(req))
p = c["progress"]
assert c["status"] == "COMPLETED" and p["pending"] == 0 and p["sent"] + p["failed"] == c["audience_size"], c
print("after restart:", {k: p[k] for k in ("audience_size", "sent", "failed", "pending")})
PY
kill -INT "$up_pid"
wait_for 60 bash -c "! kill -0 $up_pid 2>/dev/null" || fail "restarted up did not stop"
up_pid=""
echo "ok: restart kept the data, the admin key, the vendor secret and the session secret"
echo "test_up_demo: 9 passed, 0 failed"
