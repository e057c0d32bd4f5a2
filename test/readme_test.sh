#!/usr/bin/env bash
# readme_test.sh [BUILD_DIR] - runs every command of the README's "Using it" section, in order, shortened: training
# runs take --steps 3 instead of their --steps/--minutes, probes one epoch, and runs/ becomes a temporary folder.
# A command that fails, or a README block that no longer parses into commands, fails the test.
set -u
cd "$(dirname "$0")/.."
BUILD=${1:-build}
make -s GPU=0 BUILD="$BUILD" "$BUILD/train" "$BUILD/eval" > /dev/null || exit 1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# the first sh block after the "## Using it" heading; comments stripped; lines joined at trailing backslashes
commands=$(awk '/^## Using it/ {f = 1} f && /^```sh/ {c = 1; next} c && /^```/ {exit} c' README.md |
           sed 's/[[:space:]]*#.*$//' | sed -e ':a' -e '/\\$/N; s/\\\n//; ta' | grep -v '^[[:space:]]*$')
n=$(printf '%s\n' "$commands" | grep -c .)
if [ "$n" -lt 3 ]; then echo "FAIL: found $n commands in the README's 'Using it' block"; exit 1; fi
passed=0 failed=0
while IFS= read -r cmd; do
    short=$(printf '%s' "$cmd" | sed -e "s#^build/#$BUILD/#" -e "s#runs/#$tmp/runs/#g" \
        -e 's/--minutes [0-9.]*/--steps 3/' -e 's/--steps [0-9]*/--steps 3/')
    case $short in *"/train "*) short="$short --log-every 1" ;; *"/eval "*) short="$short --probe-epochs 1" ;; esac
    echo "[readme] $cmd"
    echo "    as:  $short"
    if (eval "$short") > "$tmp/out" 2>&1; then echo "    ok   $(tail -1 "$tmp/out")"; passed=$((passed + 1))
    else echo "    FAIL $(tail -3 "$tmp/out")"; failed=$((failed + 1)); fi
done <<< "$commands"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
