#!/usr/bin/env bash
# gpu_cli_test.sh BUILD_DIR - train and eval with --device cuda end to end on a tiny generated dataset (make test-gpu;
# tools/gpu_check.sh; under the CUDA emulator: bash test/gpu_cli_test.sh build/emu). Needs a CUDA device: without
# one every check fails, as REQUIRE_GPU=1 does for the test runner.
#   1. train 6 steps on cuda, and the same 6 steps on the cpu: the loss curves agree (tools/compare_logs.py, the
#      tight first-steps tier: the same weights and batches, only float rounding differs)
#   2. 3 steps, then --resume to 6 on cuda: equal to the uninterrupted cuda run bit for bit (no float atomics)
#   3. eval --device cuda of the checkpoint reports the three probes
set -u
BUILD=${1:-build}
TRAIN=$BUILD/train
EVAL=$BUILD/eval
PYTHON=${PYTHON:-$(command -v python3 || echo /usr/bin/python3)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ok() { echo "    ok   $1"; passed=$((passed + 1)); }
bad() { echo "    FAIL $1"; failed=$((failed + 1)); }

# ---- a tiny IDX dataset in the Fashion-MNIST layout (big-endian headers, gzip), as test/cli_test.sh makes ----
be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }
idx_images() {  # file count seed
    { printf '\x00\x00\x08\x03'; be32 "$2"; printf '\x00\x00\x00\x1c\x00\x00\x00\x1c';
      LC_ALL=C awk -v n="$2" -v s="$3" 'BEGIN{srand(s); for(i=0;i<n*784;i++) printf "%c", 1+int(rand()*254)}'; } | gzip -c > "$1"
}
idx_labels() {  # file count
    { printf '\x00\x00\x08\x01'; be32 "$2"; LC_ALL=C awk -v n="$2" 'BEGIN{for(i=0;i<n;i++) printf "%c", i % 10}'; } | gzip -c > "$1"
}
data=$tmp/fmnist
mkdir -p "$data"
idx_images "$data/train-images-idx3-ubyte.gz" 48 1
idx_labels "$data/train-labels-idx1-ubyte.gz" 48
idx_images "$data/t10k-images-idx3-ubyte.gz" 20 2
idx_labels "$data/t10k-labels-idx1-ubyte.gz" 20

common=(--dataset fashion-mnist --data "$data" --preset tiny --F 8 --D 32 --batch 8 --threads 2 --workers 2 --log-every 1
        --warmup 2)
losses() { grep '"loss"' "$1" | sed 's/"img_s".*//'; }   # every loss term of every step, without the timings

echo "[gpu-cli] train and eval with --device cuda"
if $TRAIN "${common[@]}" --device cuda --steps 6 --run-dir "$tmp/cuda" > "$tmp/out1" 2>&1; then ok "train 6 steps --device cuda"
else bad "train --device cuda: $(tail -3 "$tmp/out1")"; fi
if $TRAIN "${common[@]}" --device cpu --steps 6 --run-dir "$tmp/cpu" > "$tmp/out2" 2>&1 &&
   "$PYTHON" tools/compare_logs.py "$tmp/cuda/log.jsonl" "$tmp/cpu/log.jsonl" --first-steps 6 > "$tmp/cmp" 2>&1; then
    ok "the cuda run's 6 steps match the cpu run: $(grep 'loss ' "$tmp/cmp" | head -1 | sed 's/^ *ok *//')"
else bad "cuda vs cpu losses: $(cat "$tmp/cmp" 2>/dev/null | grep -v '^ *ok' | head -4) $(tail -2 "$tmp/out2")"; fi
$TRAIN "${common[@]}" --device cuda --steps 3 --run-dir "$tmp/resumed" > /dev/null 2>&1
if $TRAIN "${common[@]}" --device cuda --steps 6 --run-dir "$tmp/resumed" --resume > "$tmp/out3" 2>&1 &&
   [ -n "$(losses "$tmp/cuda/log.jsonl")" ] && [ "$(losses "$tmp/cuda/log.jsonl")" = "$(losses "$tmp/resumed/log.jsonl")" ]; then
    ok "cuda: 3 steps + --resume to 6 equal the uninterrupted cuda run bit for bit (every loss term)"
else bad "cuda resume: $(tail -2 "$tmp/out3") $(diff <(losses "$tmp/cuda/log.jsonl") <(losses "$tmp/resumed/log.jsonl") | head -4)"; fi
if $EVAL --checkpoint "$tmp/cuda/checkpoint.safetensors" --device cuda --dataset fashion-mnist --data "$data" \
        --probe-epochs 2 --knn-k 3 > "$tmp/out4" 2>&1 && grep -q "linear probe:" "$tmp/out4" && grep -q "k-NN" "$tmp/out4"; then
    ok "eval --device cuda reports linear, MLP and k-NN ($(grep 'AMDIM' "$tmp/out4" | tail -1 | tr -s ' '))"
else bad "eval --device cuda: $(tail -3 "$tmp/out4")"; fi
echo "gpu-cli: $passed passed, $failed failed"
[ "$failed" = 0 ]
