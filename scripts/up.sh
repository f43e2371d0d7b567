#!/usr/bin/env bash
# Brings the whole system up on embedded defaults: installs what is missing, builds, then runs
# `minicrm up` (local redis-server and minicrm-devdb unless REDIS_URL / MONGO_URI are set).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh >&2
exec build/bin/minicrm up "$@"
