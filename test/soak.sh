#!/usr/bin/env bash
# soak.sh [BUILD_DIR] [CYCLES] - train + resume + eval cycles on a small generated dataset (default: the ASan build,
# 12 cycles, ~2-3 minutes). Every process must exit 0 with no sanitizer report (leaks included, at each exit), the
# resumed run must keep to its schedule, and peak memory must stay flat: each cycle does the same work, so a train
# or eval process whose peak RSS grows by more than 10% over the first cycle's is a leak across resumes.
set -u
cd "$(dirname "$0")/.."
BUILD=${1:-build/asan}
CYCLES=${2:-12}
if [ "$BUILD" = build/asan ]; then
    make -s BUILD=build/asan GPU=0 MPI=0 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
        build/asan/train build/asan/eval || exit 1
fi
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source <(sed -n '/^idx_images()/,/^}/p;/^idx_labels()/,/^}/p' test/cli_test.sh)
data=$tmp/data
mkdir -p "$data"
idx_images "$data/train-images-idx3-ubyte.gz" 96 1
idx_labels "$data/train-labels-idx1-ubyte.gz" 96
idx_images "$data/t10k-images-idx3-ubyte.gz" 32 2
idx_labels "$data/t10k-labels-idx1-ubyte.gz" 32
common=(--dataset fashion-mnist --data "$data" --preset tiny --F 8 --D 32 --batch 16 --threads 2 --workers 2 --warmup 5)
failed=0
first_train="" first_eval=""
for c in $(seq 1 "$CYCLES"); do
    resume=(); [ "$c" -gt 1 ] && resume=(--resume)
    if ! "$BUILD/train" "${common[@]}" --steps $((c * 10)) --run-dir "$tmp/run" "${resume[@]}" > "$tmp/train.out" 2>&1; then
        echo "    FAIL cycle $c: train: $(tail -3 "$tmp/train.out")"; failed=1; break
    fi
    if ! "$BUILD/eval" --checkpoint "$tmp/run/checkpoint.safetensors" --data "$data" --probe-epochs 1 --knn-k 3 \
         > "$tmp/eval.out" 2>&1; then
        echo "    FAIL cycle $c: eval: $(tail -3 "$tmp/eval.out")"; failed=1; break
    fi
    t=$(grep -o 'peak memory [0-9]*' "$tmp/train.out" | awk '{print $3}')
    e=$(grep -o 'peak memory [0-9]*' "$tmp/eval.out" | awk '{print $3}')
    steps=$(grep -o 'trained [0-9]* steps' "$tmp/train.out" | awk '{print $2}')
    first_train=${first_train:-$t}; first_eval=${first_eval:-$e}
    echo "    cycle $c: train +$steps steps to $((c * 10)), peak $t MiB; eval peak $e MiB"
    if [ "$steps" != 10 ] || [ "$t" -gt $((first_train * 11 / 10 + 1)) ] || [ "$e" -gt $((first_eval * 11 / 10 + 1)) ]; then
        echo "    FAIL cycle $c: steps $steps (want 10), peak train $t vs $first_train MiB, eval $e vs $first_eval MiB"
        failed=1; break
    fi
done
if [ "$failed" -eq 0 ]; then echo "    ok   $CYCLES cycles of train (resumed) + eval: no sanitizer report, peak memory flat"; fi
exit "$failed"
