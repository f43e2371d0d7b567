#!/usr/bin/env bash
# Installs dependencies (if missing) and builds minicrm into $BUILD_DIR (default build/).
# MINICRM_SANITIZE=1 builds with ASan+UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
BUILD_DIR=${BUILD_DIR:-build}
SAN=${MINICRM_SANITIZE:-0}
[ "$SAN" = 1 ] && SAN=ON || SAN=OFF
BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" -DMINICRM_SANITIZE="$SAN" >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
