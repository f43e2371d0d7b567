#!/usr/bin/env bash
# check_layers.sh DEVDB_DIR: devdb's includes run one way, down its layers (devdb/README.md):
#   main.c -> wire/ -> commands/ -> storage/ -> engine/ -> base/
# A file may include headers of its own layer and of the layers below it, always by their
# layer-qualified name ("engine/match.h", devdb/ being the include root). A lower layer that
# must reach a higher one does so through a function pointer it was handed, never by include.
# Prints every violation (file:line, what and why) and exits 1 if there is one.
set -euo pipefail
dir=${1:?usage: check_layers.sh DEVDB_DIR}
cd "$dir"
layers=(base engine storage commands wire)
rank_of() { # rank of a layer name; 5 for the program (main.c at the root); -1 if unknown
    local i
    for i in "${!layers[@]}"; do
        [ "${layers[$i]}" = "$1" ] && { echo "$i"; return; }
    done
    [ "$1" = . ] && { echo 5; return; }
    echo -1
}
bad=0
nfiles=0
while IFS= read -r f; do
    nfiles=$((nfiles + 1))
    own=$(dirname "$f")
    own_rank=$(rank_of "$own")
    if [ "$own_rank" -lt 0 ]; then
        echo "$f: in no layer folder (${layers[*]})"
        bad=1
        continue
    fi
    while IFS=: read -r line inc; do
        case "$inc" in
        */*)
            layer=${inc%%/*}
            r=$(rank_of "$layer")
            if [ "$r" -lt 0 ] || [ ! -f "$inc" ]; then
                echo "$f:$line: includes \"$inc\": no such devdb header"
                bad=1
            elif [ "$r" -gt "$own_rank" ]; then
                echo "$f:$line: includes \"$inc\": $own/ may not include the higher layer $layer/"
                bad=1
            fi
            ;;
        *)
            if compgen -G "*/$inc" >/dev/null; then
                echo "$f:$line: includes \"$inc\" without its layer (write \"$(compgen -G "*/$inc" | head -1)\")"
                bad=1
            fi
            ;;
        esac
    done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" |
             sed 's/^\([0-9]*\):.*"\([^"]*\)".*/\1:\2/')
done < <(find . -name '*.[ch]' | sed 's#^\./##' | sort)
if [ "$nfiles" -eq 0 ]; then
    echo "check_layers.sh: no sources under $dir"
    exit 1
fi
[ "$bad" -eq 0 ] && echo "check_layers.sh: $nfiles files, every include runs down the layers"
exit "$bad"
