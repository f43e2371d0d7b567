#!/usr/bin/env bash
# Fuzz devdb's wire-message + command path (tests/fuzz/fuzz_devdb_wire.c) with libFuzzer
# under AddressSanitizer + UndefinedBehaviorSanitizer for a bounded time.
#   FUZZ_SECONDS (default 60)   how long to fuzz
#   FUZZ_BUILD_DIR (build-fuzz) where to build (clang, -DMINICRM_FUZZ=ON)
# The seed corpus is tests/fuzz/corpus/devdb_wire (kept small in the repo); inputs found
# during the run go to a scratch corpus in the build directory, never into the repo. A crash,
# leak, timeout (10 s per input) or out-of-memory (2 GB) fails the script and leaves the
# reproducer in the build directory (run: $FUZZ_BUILD_DIR/bin/fuzz_devdb_wire <file>).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-60}
dir=${FUZZ_BUILD_DIR:-build-fuzz}
if ! command -v clang >/dev/null; then
  echo "fuzz.sh: clang not found (scripts/install-deps.sh installs it)" >&2
  exit 1
fi
# Warnings are enforced by the gcc builds; here clang only has to compile the code.
CC=clang cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DMINICRM_SANITIZE=ON -DMINICRM_FUZZ=ON \
  -DMINICRM_WERROR=OFF -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link -Wno-unknown-warning-option" >/dev/null
cmake --build "$dir" -j2 --target fuzz_devdb_wire
mkdir -p "$dir/fuzz-corpus" "$dir/fuzz-artifacts"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
"$dir/bin/fuzz_devdb_wire" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
  -max_len=4096 -print_final_stats=1 -artifact_prefix="$dir/fuzz-artifacts/" \
  "$dir/fuzz-corpus" tests/fuzz/corpus/devdb_wire
echo "fuzz.sh: no crash, leak or hang in ${secs} s"
