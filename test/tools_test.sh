#!/usr/bin/env bash
# tools_test.sh [BUILD_DIR] - the picture tools on real output of build/train and build/eval (a tiny generated
# Fashion-MNIST-layout dataset): tools/plot_log.py on one log, on two logs at once, on a log with nulls and no
# epoch lines, and its one-line errors; tools/tsne.py on an eval --save-features file, and its errors. Every PNG
# must be a whole PNG (signature, chunk CRCs, IDAT inflating to height x (1 + width x channels) bytes) of the
# expected width and height. A part whose Python package is missing (matplotlib, scikit-learn) is skipped, saying
# so.
set -u
BUILD=build                                   # relative to the repository root; an argument, to the caller's folder
[ $# -ge 1 ] && BUILD=$(realpath -m "$1")
cd "$(dirname "$0")/.." || exit 1
TRAIN=$BUILD/train
EVAL=$BUILD/eval
PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ok() { echo "    ok   $1"; passed=$((passed + 1)); }
bad() { echo "    FAIL $1"; failed=$((failed + 1)); }

have_mpl=1
$PY -c "import matplotlib, numpy" 2> /dev/null || have_mpl=0
have_sk=$have_mpl
$PY -c "import sklearn" 2> /dev/null || have_sk=0
if [ $have_mpl = 0 ]; then
    echo "[tools] skipped: no matplotlib here ($PY cannot import matplotlib and numpy;" \
        "apt-get install python3-matplotlib)"
    exit 0
fi
for p in "$TRAIN" "$EVAL"; do
    [ -x "$p" ] || { echo "[tools] FAIL: $p is missing (build it first: make BUILD=$BUILD)"; exit 1; }
done

# png_size FILE: "WIDTH HEIGHT" of a PNG that decodes (8-bit, not interlaced), else an error on stderr and status 1
png_size() {
    $PY - "$1" <<'EOF'
import struct, sys, zlib
raw = open(sys.argv[1], "rb").read()
assert raw[:8] == b"\x89PNG\r\n\x1a\n", "no PNG signature"
pos, idat, ihdr = 8, b"", None
while pos < len(raw):
    n, tag = struct.unpack(">I4s", raw[pos:pos + 8])
    data = raw[pos + 8:pos + 8 + n]
    assert len(data) == n and struct.unpack(">I", raw[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(tag + data), \
        "chunk %r truncated or bad CRC" % tag
    ihdr = data if tag == b"IHDR" else ihdr
    idat += data if tag == b"IDAT" else b""
    pos += 12 + n
    if tag == b"IEND":
        break
w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
assert depth == 8 and interlace == 0, "depth %d, interlace %d" % (depth, interlace)
assert len(zlib.decompress(idat)) == h * (1 + w * channels), "IDAT does not inflate to the image size"
print(w, h)
EOF
}
expect_png() {  # what file width height
    local got
    got=$(png_size "$2" 2>&1)
    if [ "$got" = "$3 $4" ]; then ok "$1: $2 is a ${3}x$4 PNG"; else bad "$1: $2: got '$got', want '$3 $4'"; fi
}
expect_fail() {  # what needle command... : non-zero exit, one line on stderr containing needle
    local what=$1 needle=$2
    shift 2
    "$@" > /dev/null 2> "$tmp/err"
    local rc=$? lines
    lines=$(wc -l < "$tmp/err")
    if [ $rc -ne 0 ] && [ "$lines" -eq 1 ] && grep -qF -- "$needle" "$tmp/err"; then
        ok "$what: exit $rc, '$(cat "$tmp/err")'"
    else
        bad "$what: exit $rc, $lines stderr lines: $(head -3 "$tmp/err")"
    fi
}

# ---- real output: two short runs and one feature file ----
eval "$(sed -n '/^idx_images() {/,/^}/p;/^idx_labels() {/,/^}/p' test/cli_test.sh)"
if ! declare -F idx_images > /dev/null || ! declare -F idx_labels > /dev/null; then
    echo "[tools] FAIL: idx_images / idx_labels not found in test/cli_test.sh"
    exit 1
fi
data=$tmp/fm
mkdir -p "$data"
idx_images "$data/train-images-idx3-ubyte.gz" 48 1
idx_labels "$data/train-labels-idx1-ubyte.gz" 48
idx_images "$data/t10k-images-idx3-ubyte.gz" 40 2
idx_labels "$data/t10k-labels-idx1-ubyte.gz" 40
common=(--dataset fashion-mnist --data "$data" --preset tiny --F 8 --D 32 --batch 8 --threads 2 --workers 2 --warmup 2)
echo "[tools] two runs of 12 steps (epoch lines every 6) and eval --save-features with $BUILD"
nice -n 19 $TRAIN "${common[@]}" --steps 12 --log-every 1 --run-dir "$tmp/a" > "$tmp/a.out" 2>&1 \
    || bad "train a: $(tail -2 "$tmp/a.out")"
nice -n 19 $TRAIN "${common[@]}" --steps 12 --log-every 2 --lr 1e-3 --run-dir "$tmp/b" > "$tmp/b.out" 2>&1 \
    || bad "train b: $(tail -2 "$tmp/b.out")"
nice -n 19 $EVAL --checkpoint "$tmp/a/checkpoint.safetensors" --dataset fashion-mnist --data "$data" --threads 2 \
    --probe-epochs 1 --knn-k 3 --save-features "$tmp/features.safetensors" > "$tmp/eval.out" 2>&1 \
    || bad "eval --save-features: $(tail -2 "$tmp/eval.out")"
[ "$failed" -eq 0 ] || { echo "$passed passed, $failed failed"; exit 1; }

picture() {  # what file width height command... : the command succeeds and leaves a PNG of that size
    local what=$1 file=$2 w=$3 h=$4
    shift 4
    if "$@" > "$tmp/pic.out" 2>&1; then expect_png "$what" "$file" "$w" "$h"
    else bad "$what: exit $?: $(tail -2 "$tmp/pic.out")"; fi
}
PLOT=(nice -n 19 "$PY" tools/plot_log.py)
TSNE=(nice -n 19 "$PY" tools/tsne.py)
A=$tmp/a/log.jsonl

echo "[tools] plot_log.py (9 panels of 500 x 360)"
if grep -q epoch_end "$A"; then ok "the log has epoch_end lines ($(grep -c epoch_end "$A"))"
else bad "no epoch_end line in $A"; fi
picture "one log" "$tmp/one.png" 1500 1080 "${PLOT[@]}" "$A" -o "$tmp/one.png"
picture "two logs overlaid (output folder made)" "$tmp/pics/two.png" 1500 1080 \
    "${PLOT[@]}" "$A" "$tmp/b/log.jsonl" --labels lr2e-4,lr1e-3 -o "$tmp/pics/two.png"
grep -v epoch_end "$A" | sed '3s/"loss":[^,]*/"loss":null/; 4s/"reg":[^,]*/"reg":null/' > "$tmp/nulls.jsonl"
picture "nulls, no epoch lines" "$tmp/nulls.png" 1500 1080 "${PLOT[@]}" "$tmp/nulls.jsonl" -o "$tmp/nulls.png"
head -1 "$A" > "$tmp/single.jsonl"
picture "a single line" "$tmp/single.png" 1500 1080 "${PLOT[@]}" "$tmp/single.jsonl" -o "$tmp/single.png"
printf '{"step":1,"loss":2.5}\n{"step":2,"loss":\n' > "$tmp/cut.jsonl"
: > "$tmp/empty.jsonl"
expect_fail "missing log" "$tmp/none.jsonl: No such file" "${PLOT[@]}" "$tmp/none.jsonl" -o "$tmp/x.png"
expect_fail "malformed log" "cut.jsonl:2: not JSON" "${PLOT[@]}" "$tmp/cut.jsonl" -o "$tmp/x.png"
expect_fail "empty log" "no step or epoch_end lines" "${PLOT[@]}" "$tmp/empty.jsonl" -o "$tmp/x.png"
expect_fail "not a log (a checkpoint)" "not a text file" "${PLOT[@]}" "$tmp/a/checkpoint.safetensors" -o "$tmp/x.png"
expect_fail "--labels count" "2 names for 1 logs" "${PLOT[@]}" "$A" --labels x,y -o "$tmp/x.png"
if [ ! -e "$tmp/x.png" ]; then ok "no PNG after an error"; else bad "a PNG was written after an error"; fi

echo "[tools] tsne.py (900 x 800)"
F=$tmp/features.safetensors
if [ $have_sk = 0 ]; then
    echo "    skipped: no scikit-learn here ($PY cannot import sklearn; apt-get install python3-sklearn)"
else
    picture "test split, 30 of 40 images" "$tmp/tsne.png" 900 800 "${TSNE[@]}" "$F" -o "$tmp/tsne.png" --n 30 --seed 1
    picture "train split, all 48 images" "$tmp/train.png" 900 800 "${TSNE[@]}" "$F" -o "$tmp/train.png" --split train
    expect_fail "missing file" "No such file" "${TSNE[@]}" "$tmp/none.safetensors" -o "$tmp/x.png"
    expect_fail "not a safetensors file" "not a safetensors file" "${TSNE[@]}" "$A" -o "$tmp/x.png"
    expect_fail "no such split" "no val.features" "${TSNE[@]}" "$F" --split val -o "$tmp/x.png"
    expect_fail "a checkpoint, not features" "no test.features" "${TSNE[@]}" "$tmp/a/checkpoint.safetensors" \
        -o "$tmp/x.png"
fi

echo "[tools] amdim_torch.py (the name map)"
if ! $PY -c "import torch" 2> /dev/null; then echo "    skipped: no PyTorch here"
elif $PY tools/amdim_torch.py "$tmp/a/checkpoint.safetensors" > "$tmp/map.out" 2>&1 \
     && grep -q "loaded all 18 enc" "$tmp/map.out" \
     && grep -q "^  enc.2.0.conv1.weight .*conv 4x4 stride 2" "$tmp/map.out"; then
    ok "18 enc.* tensors loaded and named"
else
    bad "amdim_torch.py: $(tail -3 "$tmp/map.out")"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
