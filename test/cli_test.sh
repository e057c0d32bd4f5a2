#!/usr/bin/env bash
# cli_test.sh BUILD_DIR - the drivers end to end on a tiny generated Fashion-MNIST-layout dataset:
# training, bit-exact resume, evaluation, and one-line errors with non-zero exits for bad input.
set -u
BUILD=${1:-build}
TRAIN=$BUILD/train
EVAL=$BUILD/eval
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ok() { echo "    ok   $1"; passed=$((passed + 1)); }
bad() { echo "    FAIL $1"; failed=$((failed + 1)); }

# ---- a tiny IDX dataset in the official layout (big-endian headers, gzip) ----
idx_images() {  # file count seed
    { printf '\x00\x00\x08\x03'; printf "\\x$(printf %02x $(($2 >> 24 & 255)))\\x$(printf %02x $(($2 >> 16 & 255)))\\x$(printf %02x $(($2 >> 8 & 255)))\\x$(printf %02x $(($2 & 255)))";
      printf '\x00\x00\x00\x1c\x00\x00\x00\x1c';
      LC_ALL=C awk -v n="$2" -v s="$3" 'BEGIN{srand(s); for(i=0;i<n*784;i++) printf "%c", 1+int(rand()*254)}'; } | gzip -c > "$1"
}
idx_labels() {  # file count
    { printf '\x00\x00\x08\x01'; printf "\\x$(printf %02x $(($2 >> 24 & 255)))\\x$(printf %02x $(($2 >> 16 & 255)))\\x$(printf %02x $(($2 >> 8 & 255)))\\x$(printf %02x $(($2 & 255)))";
      LC_ALL=C awk -v n="$2" 'BEGIN{for(i=0;i<n;i++) printf "%c", i % 10}'; } | gzip -c > "$1"
}
data=$tmp/fmnist
mkdir -p "$data"
idx_images "$data/train-images-idx3-ubyte.gz" 48 1
idx_labels "$data/train-labels-idx1-ubyte.gz" 48
idx_images "$data/t10k-images-idx3-ubyte.gz" 20 2
idx_labels "$data/t10k-labels-idx1-ubyte.gz" 20

common=(--dataset fashion-mnist --data "$data" --preset tiny --F 8 --D 32 --batch 8 --threads 2 --workers 2 --log-every 1 --warmup 2)

echo "[cli] train, resume, eval"
if $TRAIN "${common[@]}" --steps 6 --run-dir "$tmp/straight" > "$tmp/out1" 2>&1; then ok "train 6 steps"; else bad "train 6 steps: $(tail -3 "$tmp/out1")"; fi
$TRAIN "${common[@]}" --steps 3 --run-dir "$tmp/resumed" > /dev/null 2>&1
if $TRAIN "${common[@]}" --steps 6 --run-dir "$tmp/resumed" --resume > "$tmp/out2" 2>&1; then ok "resume to step 6"; else bad "resume: $(tail -3 "$tmp/out2")"; fi
losses() { grep '"loss"' "$1" | sed 's/.*"step":\([0-9]*\).*"loss":\([^,]*\),"l1t5":\([^,]*\),"l1t7":\([^,]*\),"l5t5":\([^,]*\),"reg":\([^,]*\),"cls":\([^,]*\),.*/\1 \2 \3 \4 \5 \6 \7/' | awk '$1 > 3'; }
if [ -n "$(losses "$tmp/straight/log.jsonl")" ] && [ "$(losses "$tmp/straight/log.jsonl")" = "$(losses "$tmp/resumed/log.jsonl")" ]; then
    ok "steps 4-6 after resume equal the uninterrupted run bit for bit (every loss term, 9 digits)"
else
    bad "resumed losses differ: $(losses "$tmp/straight/log.jsonl" | head -1) vs $(losses "$tmp/resumed/log.jsonl" | head -1)"
fi
if $EVAL --checkpoint "$tmp/straight/checkpoint.safetensors" --dataset fashion-mnist --data "$data" --probe-epochs 2 --knn-k 3 > "$tmp/out3" 2>&1 \
   && grep -q "linear probe:" "$tmp/out3" && grep -q "k-NN" "$tmp/out3"; then ok "eval reports linear, MLP and k-NN"; else bad "eval: $(tail -3 "$tmp/out3")"; fi

# 48 images of 8 = 6 updates: a decay after half the run applies from update 3 (the 4th logged step) on
$TRAIN "${common[@]}" --steps 6 --warmup 0 --lr 1e-3 --decay-at 0.5 --run-dir "$tmp/decay" > /dev/null 2>&1
lrs=$(grep -o '"lr":[^,]*' "$tmp/decay/log.jsonl" | cut -d: -f2 | awk '{printf "%.4g ", $1}')
if [ "$lrs" = "0.001 0.001 0.001 0.0002 0.0002 0.0002 " ]; then ok "--decay-at 0.5: lr x0.2 from the 4th of 6 updates ($lrs)"
else bad "--decay-at 0.5 gave lr $lrs"; fi

echo "[cli] bad input: one line on stderr and a non-zero exit"
expect_error() {  # description expected-substring command...
    local what=$1 want=$2; shift 2
    "$@" > "$tmp/stdout" 2> "$tmp/stderr"
    local rc=$?
    local lines
    lines=$(wc -l < "$tmp/stderr")
    if [ $rc -ne 0 ] && [ "$lines" -eq 1 ] && grep -q -- "$want" "$tmp/stderr"; then ok "$what: $(cat "$tmp/stderr")"
    else bad "$what: exit $rc, $lines stderr lines: $(head -3 "$tmp/stderr")"; fi
}
expect_error "unknown flag" "--bogus" $TRAIN --bogus 1
expect_error "bad number" "--batch" $TRAIN --batch abc
expect_error "bad decay list" "--decay-at" $TRAIN --decay-at 0.5,x
expect_error "unknown preset" "huge" $TRAIN --data "$data" --preset huge
expect_error "missing data directory" "$tmp/nowhere" $TRAIN --data "$tmp/nowhere"
cp -r "$data" "$tmp/trunc"
gzip -dc "$data/train-images-idx3-ubyte.gz" | head -c 5000 | gzip -c > "$tmp/trunc/train-images-idx3-ubyte.gz"
expect_error "truncated image file" "train-images-idx3-ubyte" $TRAIN --data "$tmp/trunc" --steps 1 --run-dir "$tmp/x"
cp -r "$data" "$tmp/mismatch"
idx_labels "$tmp/mismatch/train-labels-idx1-ubyte.gz" 40
expect_error "image/label count mismatch" "train-labels-idx1-ubyte" $TRAIN --data "$tmp/mismatch" --steps 1 --run-dir "$tmp/y"
expect_error "resume with another preset" "F=" $TRAIN "${common[@]}" --F 4 --steps 7 --run-dir "$tmp/straight" --resume
head -c 1000 "$tmp/straight/checkpoint.safetensors" > "$tmp/broken.safetensors"
expect_error "truncated checkpoint" "broken.safetensors" $EVAL --checkpoint "$tmp/broken.safetensors" --data "$data"
expect_error "eval without a model" "--checkpoint" $EVAL --data "$data"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
