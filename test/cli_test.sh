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

# the log holds each step once after a resume (steps past the checkpoint are dropped before appending)
$TRAIN "${common[@]}" --steps 5 --run-dir "$tmp/kill" > /dev/null 2>&1
cp "$tmp/resumed/log.jsonl" "$tmp/kill/log.jsonl"          # log of steps 1-6, checkpoint of step 5
$TRAIN "${common[@]}" --steps 6 --run-dir "$tmp/kill" --resume > /dev/null 2>&1
steps() { grep -o '"step":[0-9]*' "$1" | cut -d: -f2 | tr '\n' ' '; }
if [ "$(steps "$tmp/kill/log.jsonl")" = "$(steps "$tmp/straight/log.jsonl")" ]; then
    ok "log after resuming step 5 of a log that reached step 6 has each line once: steps $(steps "$tmp/kill/log.jsonl")"
else bad "log after a resume: steps $(steps "$tmp/kill/log.jsonl") vs $(steps "$tmp/straight/log.jsonl")"; fi
$TRAIN "${common[@]}" --steps 2 --run-dir "$tmp/kill" > /dev/null 2>&1   # a fresh run in the same folder starts a new log
if [ "$(steps "$tmp/kill/log.jsonl")" = "1 2 " ]; then ok "a fresh run over an old run folder starts its log afresh"
else bad "fresh run over an old log: steps $(steps "$tmp/kill/log.jsonl")"; fi

# --run-dir with missing parents is made; an output path that cannot be made is refused before any work
if $TRAIN "${common[@]}" --steps 1 --run-dir "$tmp/deep/er/run" > "$tmp/out4" 2>&1 && [ -f "$tmp/deep/er/run/checkpoint.safetensors" ]
then ok "--run-dir with three missing parents"; else bad "--run-dir with missing parents: $(tail -2 "$tmp/out4")"; fi

# --minutes fixes the step count from the measured speed and prints the --steps command that repeats the run
$TRAIN "${common[@]}" --minutes 0.1 --run-dir "$tmp/minutes" > "$tmp/out5" 2>&1
fixed=$(grep -o '"fixed_total_steps":[0-9]*' "$tmp/minutes/log.jsonl" | cut -d: -f2)
repeat=$(grep -A1 "To repeat it exactly" "$tmp/out5" | tail -1 | sed "s#--run-dir [^ ]*#--run-dir $tmp/minutes-again#")
if [ -n "$fixed" ] && [ "$fixed" -gt 10 ] && (eval "$repeat") > /dev/null 2>&1 &&
   [ "$(losses "$tmp/minutes/log.jsonl")" = "$(losses "$tmp/minutes-again/log.jsonl")" ]; then
    ok "--minutes 0.1 fixed $fixed steps; the printed --steps command repeats every loss bit for bit"
else bad "--minutes: fixed '$fixed', repeat '$repeat': $(tail -2 "$tmp/out5")"; fi
$TRAIN "${common[@]}" --minutes 0.1 --run-dir "$tmp/minutes" --resume > "$tmp/out6" 2>&1
if grep -q "batch 8, $fixed steps" "$tmp/out6" && grep -q "trained 0 steps" "$tmp/out6"; then
    ok "--resume of a finished --minutes run keeps its $fixed steps (nothing left to do)"
else bad "--resume after --minutes: $(head -3 "$tmp/out6")"; fi

# JSON lines stay valid with a quote and a backslash in a path
qdir="$tmp/q\"uo\\te"
$TRAIN "${common[@]}" --steps 1 --run-dir "$qdir" > /dev/null 2>&1
$EVAL --checkpoint "$qdir/checkpoint.safetensors" --dataset fashion-mnist --data "$data" --probe-epochs 1 --knn-k 3 \
    --out "$qdir/eval.jsonl" > /dev/null 2>&1
if ! command -v python3 > /dev/null; then echo "    skipped: JSON validity (no python3 here to parse it)"
elif python3 -c 'import json, sys
for f in sys.argv[1:]:
    for line in open(f): json.loads(line)
assert json.loads(open(sys.argv[2]).readline())["features"].endswith("checkpoint.safetensors")' "$qdir/log.jsonl" "$qdir/eval.jsonl"; then
    ok "log.jsonl and eval.jsonl parse as JSON with a quote and a backslash in the checkpoint path"
else bad "invalid JSON in $qdir"; fi

# INT and TERM: the step finishes, a checkpoint is written, exit 128 + signal; KILL: the last checkpoint stays whole.
# Each run is killed at a random moment, resumed to the end, and its log must equal the uninterrupted run's.
long=(--dataset fashion-mnist --data "$data" --preset tiny --F 8 --D 32 --batch 8 --threads 2 --workers 2 --log-every 1
      --warmup 2 --steps 150 --ckpt-every 0)
$TRAIN "${long[@]}" --run-dir "$tmp/long" > /dev/null 2>&1
for sig in INT TERM KILL; do
    for try in 1 2 3; do
        dir="$tmp/sig-$sig-$try"
        $TRAIN "${long[@]}" --run-dir "$dir" > "$tmp/sig.out" 2>&1 &
        pid=$!
        for _ in $(seq 200); do grep -q '"step"' "$dir/log.jsonl" 2>/dev/null && break; sleep 0.05; done   # started
        sleep "0.$((RANDOM % 4))$((RANDOM % 10))"   # then a random moment of the run
        kill -s "$sig" "$pid"
        wait "$pid"
        rc=$?
        at=$(grep -o '"step":[0-9]*' "$dir/log.jsonl" 2>/dev/null | tail -1 | cut -d: -f2)
        want=$((128 + $(kill -l "$sig")))
        if [ "$sig" != KILL ] && [ "$rc" -ne "$want" ] && [ "$rc" -ne 0 ]; then bad "SIG$sig: exit $rc, wanted $want"; continue; fi
        $TRAIN "${long[@]}" --run-dir "$dir" --resume > "$tmp/sig2.out" 2>&1
        if [ "$(losses "$dir/log.jsonl")" = "$(losses "$tmp/long/log.jsonl")" ] && [ "$(steps "$dir/log.jsonl")" = "$(steps "$tmp/long/log.jsonl")" ]; then
            ok "SIG$sig near step ${at:-0} (exit $rc), then --resume: the 150-step log equals the uninterrupted run's"
        else bad "SIG$sig near step ${at:-0} (exit $rc): resumed log differs: $(tail -2 "$tmp/sig2.out")"; fi
    done
done

# a diverging run stops at the first non-finite loss or state and never writes it over the last good checkpoint
$TRAIN "${common[@]}" --steps 40 --lr 10 --warmup 0 --ckpt-every 0 --run-dir "$tmp/nan" > "$tmp/nan.out" 2>&1
rc=$?
if [ "$rc" -eq 3 ] && grep -q "not finite\|the loss is" "$tmp/nan.out"; then
    if [ -f "$tmp/nan/checkpoint.safetensors" ]; then
        if $EVAL --checkpoint "$tmp/nan/checkpoint.safetensors" --data "$data" --probe-epochs 1 --knn-k 3 > /dev/null 2>&1
        then ok "--lr 10 diverges (exit 3: $(grep -o 'the loss is.*\|[0-9]* values.*' "$tmp/nan.out" | head -1 | cut -c1-90)...); the checkpoint kept is finite and loads"
        else bad "--lr 10: the checkpoint left behind does not load: $($EVAL --checkpoint "$tmp/nan/checkpoint.safetensors" --data "$data" 2>&1 | tail -1)"; fi
    else ok "--lr 10 diverges before any checkpoint (exit 3), and says so: $(grep -c 'no checkpoint was written' "$tmp/nan.out") line"; fi
else bad "--lr 10: exit $rc, $(tail -2 "$tmp/nan.out")"; fi

echo "[cli] DIM and CPC: train, resume bit for bit, evaluate"
terms() { grep '"loss"' "$1" | sed 's/,"img_s".*//' | awk -F'[:,]' '$2 > 3'; }   # every loss term of steps 4..
for method in dim cpc; do
    $TRAIN "${common[@]}" --method "$method" --steps 6 --run-dir "$tmp/$method-straight" > "$tmp/m.out" 2>&1
    $TRAIN "${common[@]}" --method "$method" --steps 3 --run-dir "$tmp/$method-resumed" > /dev/null 2>&1
    $TRAIN "${common[@]}" --method "$method" --steps 6 --run-dir "$tmp/$method-resumed" --resume > /dev/null 2>&1
    if [ -n "$(terms "$tmp/$method-straight/log.jsonl")" ] &&
       [ "$(terms "$tmp/$method-straight/log.jsonl")" = "$(terms "$tmp/$method-resumed/log.jsonl")" ]; then
        ok "--method $method: steps 4-6 after a resume equal the uninterrupted run ($(terms "$tmp/$method-straight/log.jsonl" | tail -1 | cut -c1-70)...)"
    else bad "--method $method resume: $(tail -2 "$tmp/m.out")"; fi
    if $EVAL --checkpoint "$tmp/$method-straight/checkpoint.safetensors" --data "$data" --probe-epochs 1 --knn-k 3 > "$tmp/m.out" 2>&1 &&
       grep -qi "$method" "$tmp/m.out"; then ok "eval of a $method checkpoint: $(grep -i "| $method" "$tmp/m.out")"
    else bad "eval of $method: $(tail -2 "$tmp/m.out")"; fi
done

echo "[cli] pictures, the graph of a step, the profile"
png_size() {  # width x height from a PNG's IHDR
    od -An -tu1 -j16 -N8 "$1" 2>/dev/null | awk '{printf "%dx%d", (($1*256+$2)*256+$3)*256+$4, (($5*256+$6)*256+$7)*256+$8}'
}
$TRAIN "${common[@]}" --steps 4 --profile 2 --dump-graph "$tmp/pics/step.dot" --save-views "$tmp/pics/views.png" \
    --run-dir "$tmp/pics/run" > "$tmp/pics.out" 2>&1
share=$(grep -o '([0-9.]*% of it in the table' "$tmp/pics.out" | grep -o '[0-9.]*' | head -1)
if [ -n "$share" ] && awk -v s="$share" 'BEGIN{exit !(s >= 90 && s <= 110)}'; then
    ok "--profile 2: the table's ops + optimizer add up to $share% of the measured step"
else bad "--profile: share '$share': $(grep -A3 'profile over' "$tmp/pics.out" | head -4)"; fi
# 8 rows (batch 8) of 3 cells, 32 px at zoom 4 inside 2-px frames
if [ "$(png_size "$tmp/pics/views.png")" = "396x1056" ]; then ok "--save-views: a 396x1056 PNG (8 sources, each with its two views)"
else bad "--save-views: $(png_size "$tmp/pics/views.png") $(grep -i views "$tmp/pics.out")"; fi
if grep -q "enc.0.weight" "$tmp/pics/step.dot" && grep -q "cluster" "$tmp/pics/step.dot"; then
    if command -v dot > /dev/null; then
        if dot -Tsvg "$tmp/pics/step.dot" -o "$tmp/pics/step.svg" 2> "$tmp/dot.err"; then ok "--dump-graph: dot -Tsvg renders the step's graph ($(grep -c ' -> ' "$tmp/pics/step.dot") edges)"
        else bad "--dump-graph: dot failed: $(head -2 "$tmp/dot.err")"; fi
    else echo "    skipped: rendering the graph (no Graphviz dot here)"; fi
else bad "--dump-graph: no parameters or clusters in $tmp/pics/step.dot"; fi
$EVAL --checkpoint "$tmp/pics/run/checkpoint.safetensors" --data "$data" --probe-epochs 1 --knn-k 3 \
    --save-retrievals "$tmp/pics/retrievals.png" --save-features "$tmp/pics/features.safetensors" > "$tmp/pics2.out" 2>&1
if [ "$(png_size "$tmp/pics/retrievals.png")" = "918x816" ] && [ -s "$tmp/pics/features.safetensors" ]; then
    ok "--save-retrievals: a 918x816 PNG (8 queries x 8 neighbours); --save-features written"
else bad "eval pictures: $(png_size "$tmp/pics/retrievals.png") $(tail -2 "$tmp/pics2.out")"; fi

$TRAIN "${common[@]}" --steps 3 --mixtures 3 --run-dir "$tmp/pics/mix" > /dev/null 2>&1
$EVAL --checkpoint "$tmp/pics/mix/checkpoint.safetensors" --data "$data" --probe-epochs 1 --knn-k 3 \
    --save-mixtures "$tmp/pics/mixtures.png" > "$tmp/pics3.out" 2>&1
if [ "$(png_size "$tmp/pics/mixtures.png")" = "816x306" ]; then ok "--save-mixtures: an 816x306 PNG (3 components x 8 images, locations tinted by winner)"
else bad "--save-mixtures: $(png_size "$tmp/pics/mixtures.png") $(tail -2 "$tmp/pics3.out")"; fi

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
expect_error "both --minutes and --steps" "--minutes" $TRAIN --minutes 1 --steps 5
expect_error "--save-mixtures without mixtures" "without --mixtures" $EVAL --checkpoint "$tmp/straight/checkpoint.safetensors" --data "$data" --save-mixtures "$tmp/m.png"
mkdir -p "$tmp/cw/checkpoint.safetensors"   # a folder where the checkpoint goes: the final rename fails
expect_error "checkpoint that cannot be written" "checkpoint.safetensors" $TRAIN "${common[@]}" --steps 1 --run-dir "$tmp/cw"
expect_error "resume a cpc run as amdim" "method" $TRAIN "${common[@]}" --steps 7 --run-dir "$tmp/cpc-straight" --resume
expect_error "resume with another --batch" "--batch 8, this command gives --batch 4" $TRAIN "${common[@]}" --batch 4 --steps 7 --run-dir "$tmp/straight" --resume
expect_error "resume with another --lr" "--lr" $TRAIN "${common[@]}" --lr 0.5 --steps 7 --run-dir "$tmp/straight" --resume
expect_error "resume with another --seed" "--seed" $TRAIN "${common[@]}" --seed 9 --steps 7 --run-dir "$tmp/straight" --resume
cp -r "$data" "$tmp/fewer"
idx_images "$tmp/fewer/train-images-idx3-ubyte.gz" 24 1
idx_labels "$tmp/fewer/train-labels-idx1-ubyte.gz" 24
$TRAIN "${common[@]}" --steps 4 --run-dir "$tmp/pos" > /dev/null 2>&1
expect_error "resume at a data position past a smaller dataset" "data position" $TRAIN "${common[@]}" --data "$tmp/fewer" --steps 7 --run-dir "$tmp/pos" --resume
expect_error "--d beyond the deepest encoder" "--d" $TRAIN --d 20
touch "$tmp/afile"
expect_fast_error() {  # like expect_error, and refused within a second (before any data is read)
    local t0=$(date +%s%N)
    expect_error "$@"
    local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    if [ "$ms" -lt 1000 ]; then ok "  ... refused in $ms ms"; else bad "  ... took $ms ms"; fi
}
expect_fast_error "run dir under a file" "$tmp/afile/run" $TRAIN "${common[@]}" --steps 1 --run-dir "$tmp/afile/run"
expect_fast_error "eval --out under a file" "$tmp/afile/x.jsonl" $EVAL --raw --data "$data" --out "$tmp/afile/x.jsonl"
expect_fast_error "eval --out in /proc" "/proc/nonexistent/x.jsonl" $EVAL --raw --data "$data" --out /proc/nonexistent/x.jsonl
expect_fast_error "eval --save-retrievals in /proc" "/proc/nonexistent/r.png" $EVAL --raw --data "$data" --save-retrievals /proc/nonexistent/r.png
expect_fast_error "train --save-views under a file" "$tmp/afile/v.png" $TRAIN "${common[@]}" --steps 1 --save-views "$tmp/afile/v.png" --run-dir "$tmp/v"
# as a user without the rights to make /nonexistent (root could make it: parents of output paths are created)
if [ "$(id -u)" = 0 ] && command -v setpriv > /dev/null; then
    chmod -R a+rX "$tmp"
    expect_fast_error "eval --out /nonexistent/dir/x.jsonl (as nobody)" "/nonexistent" \
        setpriv --reuid=65534 --regid=65534 --clear-groups $EVAL --raw --data "$data" --out /nonexistent/dir/x.jsonl
    mkdir -p "$tmp/ro" && chmod 555 "$tmp/ro"
    expect_fast_error "read-only run dir (as nobody)" "$tmp/ro" \
        setpriv --reuid=65534 --regid=65534 --clear-groups $TRAIN "${common[@]}" --steps 1 --run-dir "$tmp/ro"
elif [ "$(id -u)" != 0 ]; then
    expect_fast_error "eval --out /nonexistent/dir/x.jsonl" "/nonexistent" $EVAL --raw --data "$data" --out /nonexistent/dir/x.jsonl
    mkdir -p "$tmp/ro" && chmod 555 "$tmp/ro"
    expect_fast_error "read-only run dir" "$tmp/ro" $TRAIN "${common[@]}" --steps 1 --run-dir "$tmp/ro"
else echo "    skipped: the unwritable-path cases as another user (no setpriv here)"; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
