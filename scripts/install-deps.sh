#!/usr/bin/env bash
# Installs every build, run and test dependency of minicrm from Debian packages, by name.
# Idempotent: packages already installed are skipped, and apt is not touched at all when
# nothing is missing. Run as root (or with sudo available).
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake pkg-config clang clang-format
  # libFuzzer runtime for scripts/fuzz.sh (clang -fsanitize=fuzzer)
  libclang-rt-14-dev
  # libraries the programs link
  libmongoc-dev libbson-dev libhiredis-dev libmicrohttpd-dev libjansson-dev libconfig-dev
  libcurl4-openssl-dev libssl-dev libpcre2-dev zlib1g-dev
  # the programs' allocator (as Redis uses): see the top-level CMakeLists.txt
  libjemalloc-dev
  # services and tools the system and its tests run
  redis-server redis-tools curl procps iproute2
  # independent MongoDB clients used by the devdb tests, and the benchmark load generator
  python3 python3-pymongo nodejs wrk
  # the dashboard's browser tests (tests/web): Debian's Chromium, driven by playwright-core
  chromium
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

if ! command -v npm >/dev/null; then echo "install-deps: npm missing (nodejs without npm); the Node.js driver tests will be skipped" >&2; fi
# Debian starts redis-server as a system service on install; minicrm never uses it (tests and
# `minicrm up` run their own on private ports), so leave it alone but do not depend on it.
echo "install-deps: done"
