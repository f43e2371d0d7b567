#!/bin/sh
# Install the OAuth mock's npm dependencies into DIR (under the build directory), from the
# committed package.json + package-lock.json (npm ci: exact versions). Re-runs are no-ops when
# the lock file has not changed. Exit 0 when ready, 1 when npm is missing or the install failed
# (the caller, tests/api/test_auth_flow, then skips with this script's message).
set -u
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:?usage: install.sh DIR}
mkdir -p "$dir" || exit 1
if [ -f "$dir/node_modules/oauth2-mock-server/package.json" ] &&
   cmp -s "$here/package-lock.json" "$dir/package-lock.json"; then
  cp "$here/mock.mjs" "$dir/mock.mjs"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "oauth-mock: npm not found (install nodejs + npm)" >&2
  exit 1
fi
cp "$here/package.json" "$here/package-lock.json" "$here/mock.mjs" "$dir/" || exit 1
cd "$dir" || exit 1
if ! npm ci --no-audit --no-fund --loglevel=error --cache "$dir/.npm-cache" >npm.log 2>&1; then
  echo "oauth-mock: npm ci failed (no registry access?), see $dir/npm.log:" >&2
  tail -5 npm.log >&2
  exit 1
fi
exit 0
