#!/usr/bin/env bash
# run_node_test.sh CACHE_DIR: installs the locked Node.js driver (package-lock.json next to this
# script) into CACHE_DIR with `npm ci` when it is missing or the lock changed, then runs
# test_node.mjs. Expects MINICRM_TEST_MONGO_URI (tests/clients/with_devdb.py sets it).
# Exit 77 (ctest SKIP_RETURN_CODE) with a message when node/npm are missing or npm cannot install.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${1:?usage: run_node_test.sh CACHE_DIR}"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "node or npm not found: skipping the Node.js driver test (scripts/install-deps.sh installs nodejs)"
  exit 77
fi
mkdir -p "$cache"
if ! cmp -s "$here/package-lock.json" "$cache/package-lock.json" || [ ! -f "$cache/node_modules/mongodb/package.json" ]; then
  cp "$here/package.json" "$here/package-lock.json" "$cache/"
  if ! (cd "$cache" && timeout 300 npm ci --no-audit --no-fund --loglevel=error); then
    rm -f "$cache/package-lock.json"
    echo "npm could not install the mongodb driver (offline?): skipping the Node.js driver test"
    exit 77
  fi
fi
echo "mongodb driver $(node -p "require('$cache/node_modules/mongodb/package.json').version") from $cache"
MINICRM_NODE_MODULES_DIR="$cache" exec node "$here/test_node.mjs"
