#!/usr/bin/env bash
# compare.sh - the README's comparison: AMDIM, local DIM and CPC, and AMDIM without multiscale / without cross-view,
# all at one budget (tiny encoder, batch 64, the same steps and lr schedule), each frozen encoder then read by the
# linear / MLP / k-NN probes, beside the same probes on raw pixels.
#   bash tools/compare.sh fm       Fashion-MNIST (Debian's dataset-fashion-mnist)
#   bash tools/compare.sh cifar    the CIFAR-10 JPEG copy in ../shared/datasets/cifar10 (folder dataset)
#   STEPS=1000, PROBE_EPOCHS=30, OUT=runs/compare (defaults): run dirs OUT/<dataset>-<name>, results OUT/<dataset>.jsonl
# Each result line is eval's JSON plus "name" and "train_seconds" (wall time of train alone). Runs one after another:
# on 2 cores a second job would skew every wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
    fm)    data=(--dataset fashion-mnist) ;;
    cifar) data=(--dataset folder --data ../shared/datasets/cifar10) ;;
    *)     echo "usage: bash tools/compare.sh fm|cifar" >&2; exit 2 ;;
esac
set_name=$1
STEPS=${STEPS:-1000}
OUT=${OUT:-runs/compare}
PROBE_EPOCHS=${PROBE_EPOCHS:-30}   # eval's default
make -s GPU=0 BUILD=build/cpu build/cpu/train build/cpu/eval
mkdir -p "$OUT"
results="$OUT/$set_name.jsonl"
recipe=(--preset tiny --batch 64 --steps "$STEPS" --lr 2e-3 --warmup 100 --decay-at 0.8 --threads 2)

# tag EVAL_JSONL NAME TRAIN_SECONDS: eval's last result line with the name and training time, appended to $results
tag() {
    python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).readlines()[-1]); r["name"]=sys.argv[2]; r["train_seconds"]=round(float(sys.argv[3]),1); print(json.dumps(r))' \
        "$1" "$2" "$3" >> "$results"
}

# one method: train, then evaluate its checkpoint; appends one line to $results
run() {
    local name=$1; shift
    local dir="$OUT/$set_name-$name"
    rm -rf "$dir"
    local t0; t0=$(date +%s.%N)
    build/cpu/train "${data[@]}" "${recipe[@]}" "$@" --run-dir "$dir" > "$dir.train.txt"
    local t1; t1=$(date +%s.%N)
    build/cpu/eval "${data[@]}" --checkpoint "$dir/checkpoint.safetensors" --threads 2 --probe-epochs "$PROBE_EPOCHS" --out "$dir/eval.jsonl"
    tag "$dir/eval.jsonl" "$name" "$(python3 -c "print($t1 - $t0)")"
}

rm -f "$results"
run amdim
run dim --method dim
run cpc --method cpc
run no-multiscale --tasks 1t7
run no-cross-view --views 1
build/cpu/eval "${data[@]}" --raw --threads 2 --probe-epochs "$PROBE_EPOCHS" --out "$OUT/$set_name-raw.jsonl"
tag "$OUT/$set_name-raw.jsonl" raw 0
python3 - "$results" <<'EOF'
import json, sys
print("| features | linear | MLP | k-NN | train s |")
print("|---|---|---|---|---|")
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"| {r['name']} | {r['linear']:.2f} | {r['mlp']:.2f} | {r['knn']:.2f} | {r['train_seconds']:.0f} |")
EOF
