#!/usr/bin/env bash
# run_node_test.sh CACHE_DIR [SCRIPT [ARGS...]]: installs the locked Node.js driver
# (package-lock.json next to this script) into CACHE_DIR with `npm ci` when it is missing or
# the lock changed, then runs SCRIPT (default: test_node.mjs here) with
# MINICRM_NODE_MODULES_DIR=CACHE_DIR. Expects MINICRM_TEST_MONGO_URI (with_devdb.py sets it).
# Also used by tests/conformance for the Node.js CRUD spec runner.
# Exit 77 (ctest SKIP_RETURN_CODE) with a message when node/npm are missing or npm cannot install.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${1:?usage: run_node_test.sh CACHE_DIR [SCRIPT [ARGS...]]}"
shift
script="${1:-$here/test_node.mjs}"
[ $# -gt 0 ] && shift
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "node or npm not found: skipping the Node.js driver test (scripts/install-deps.sh installs nodejs)"
  exit 77
fi
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
# Two tests (client_node, conformance_crud_node) share the cache: install under a lock.
exec 9>"$cache/.install.lock"
flock 9
if ! cmp -s "$here/package-lock.json" "$cache/package-lock.json" || [ ! -f "$cache/node_modules/mongodb/package.json" ]; then
  cp "$here/package.json" "$here/package-lock.json" "$cache/"
  if ! (cd "$cache" && timeout 300 npm ci --no-audit --no-fund --loglevel=error); then
    rm -f "$cache/package-lock.json"
    echo "npm could not install the mongodb driver (offline?): skipping the Node.js driver test"
    exit 77
  fi
fi
flock -u 9
exec 9>&-
echo "mongodb driver $(node -p "require('$cache/node_modules/mongodb/package.json').version") from $cache"
MINICRM_NODE_MODULES_DIR="$cache" exec node "$script" "$@"
