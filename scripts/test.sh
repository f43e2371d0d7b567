#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds, runs every test with ctest.
# BUILD_DIR and MINICRM_SANITIZE=1 select another build (CI runs both).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
BUILD_DIR=${BUILD_DIR:-build}
cd "$BUILD_DIR"
ctest --output-on-failure -j"${MINICRM_TEST_JOBS:-$(nproc)}" "$@"
