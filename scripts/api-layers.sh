#!/usr/bin/env bash
# Checks that the modules of api/ include each other one way (no include cycle) and prints them
# lowest layer first. A module is a .c/.h pair (app.h and routes.h are header-only modules);
# `#include "x.h"` in either file of module m, where api/x.h exists, makes x a layer under m.
# Exit 0 when the includes form no cycle, 1 (tsort names the loop) otherwise.
# Usage: scripts/api-layers.sh [API_DIR]   (default: api/ next to this script)
set -euo pipefail
dir=${1:-"$(dirname "$0")/../api"}
cd "$dir"
pairs=$(
    for f in *.c *.h; do
        m=${f%.*}
        echo "$m $m" # every module appears, even one that includes nothing of api/
        grep -oE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"[^"]+\.h"' "$f" |
            sed -E 's/.*"([^"]+)\.h"/\1/' |
            while read -r x; do
                if [ -f "$x.h" ] && [ "$x" != "$m" ]; then echo "$x $m"; fi
            done
    done
)
if ! order=$(printf '%s\n' "$pairs" | tsort 2>&1); then
    echo "api/: include cycle among modules:" >&2
    echo "$order" >&2
    exit 1
fi
echo "api/ modules, lowest layer first (no include cycle):"
echo "$order" | tr '\n' ' '
echo
