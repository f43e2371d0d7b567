#!/usr/bin/env bash
# run_browser_test.sh CACHE_DIR SCRIPT: installs the locked playwright-core (package-lock.json
# next to this script; a package that never downloads a browser of its own) into CACHE_DIR with
# `npm ci` when it is missing or the lock changed, then runs `node SCRIPT` with
# MINICRM_WEB_NODE_MODULES=CACHE_DIR/node_modules. web_env starts the system and sets the
# MINICRM_WEB_* variables first.
# Exit 77 (ctest SKIP_RETURN_CODE) with a message only when chromium, node or npm is missing; an
# npm that cannot install is a failure (the test would otherwise pass unseen).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${1:?usage: run_browser_test.sh CACHE_DIR SCRIPT}"
script="${2:?usage: run_browser_test.sh CACHE_DIR SCRIPT}"
chromium="${MINICRM_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  echo "SKIP: $chromium not found (scripts/install-deps.sh installs Debian's chromium)"
  exit 77
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "SKIP: node or npm not found (scripts/install-deps.sh installs nodejs)"
  exit 77
fi
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
# Several browser tests share the cache (ctest -j): install under a lock.
exec 9>"$cache/.install.lock"
flock 9
if ! cmp -s "$here/package-lock.json" "$cache/package-lock.json" ||
   [ ! -f "$cache/node_modules/playwright-core/package.json" ]; then
  cp "$here/package.json" "$here/package-lock.json" "$cache/"
  if ! (cd "$cache" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 timeout 300 npm ci --no-audit --no-fund --loglevel=error); then
    rm -f "$cache/package-lock.json"
    echo "FAIL: npm ci could not install playwright-core (network or registry?)" >&2
    exit 1
  fi
fi
flock -u 9
exec 9>&-
MINICRM_WEB_NODE_MODULES="$cache/node_modules" exec node "$script"
