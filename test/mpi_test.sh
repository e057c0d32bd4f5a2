#!/usr/bin/env bash
# mpi_test.sh BUILD_DIR - data-parallel training with Open MPI (2 processes of 1 thread on this machine):
#   test_runner mpi under mpirun: one step on 2 ranks == one process on the whole batch (terms, gradients, BN stats);
#   50 steps on 2 ranks give the loss curve of 1 process; a 2-rank run resumed on 1 rank continues that curve;
#   a rank killed mid-run makes the job end with an error instead of hanging.
# Skips (and says so) without mpirun or when the build has no MPI.
set -u
BUILD=${1:-build}
if ! command -v mpirun > /dev/null || ! ldd "$BUILD/train" 2>/dev/null | grep -q libmpi; then
    echo "[mpi] skipped: no mpirun here, or $BUILD was built without MPI (make MPI=0)"; exit 0
fi
MPIRUN=(mpirun --oversubscribe -np 2)
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { echo "    ok   $1"; passed=$((passed + 1)); }
bad() { echo "    FAIL $1"; failed=$((failed + 1)); }
source <(sed -n '/^idx_images()/,/^}/p;/^idx_labels()/,/^}/p' "$(dirname "$0")/cli_test.sh")
data=$tmp/fmnist
mkdir -p "$data"
idx_images "$data/train-images-idx3-ubyte.gz" 64 1
idx_labels "$data/train-labels-idx1-ubyte.gz" 64
common=(--dataset fashion-mnist --data "$data" --preset tiny --F 8 --D 32 --batch 16 --warmup 5 --log-every 1)

echo "[mpi] one step on 2 ranks against one process (build/test_runner mpi)"
if "${MPIRUN[@]}" "$BUILD/test_runner" mpi > "$tmp/unit.out" 2>&1 && grep -q "3 passed, 0 failed" "$tmp/unit.out"; then
    ok "$(grep -c '    ok' "$tmp/unit.out") checks: AMDIM, DIM and CPC steps equal one process's"
else bad "test_runner mpi: $(grep -E 'FAIL|passed' "$tmp/unit.out" | head -4)"; fi

# the NCE terms and the score penalty of every logged step (the classifiers' dropout masks differ per rank)
nce_terms() { grep '"loss"' "$1" | sed 's/.*"step":\([0-9]*\).*"l1t5":\([^,]*\),"l1t7":\([^,]*\),"l5t5":\([^,]*\),"reg":\([^,]*\),.*/\1 \2 \3 \4 \5/'; }
# max relative difference of two such tables (same steps)
max_rel() { paste -d' ' <(nce_terms "$1") <(nce_terms "$2") | awk '{ if ($1 != $6) { bad = 1 } for (i = 2; i <= 5; i++) {
    d = $i - $(i + 5); d = d < 0 ? -d : d; s = $(i + 5) < 0 ? -$(i + 5) : $(i + 5); if (d / s > m) m = d / s } n++ }
    END { if (bad || n == 0) print "mismatch"; else printf "%.2e %d\n", m, n }'; }

steps=50   # the curve's length; the mixed run switches from 2 ranks to 1 halfway
echo "[mpi] $steps steps: 2 ranks x 8 images against 1 process x 16"
"$BUILD/train" "${common[@]}" --steps $steps --threads 2 --run-dir "$tmp/one" > "$tmp/one.out" 2>&1
"${MPIRUN[@]}" "$BUILD/train" "${common[@]}" --steps $steps --threads 1 --workers 1 --run-dir "$tmp/two" > "$tmp/two.out" 2>&1
r=$(max_rel "$tmp/two/log.jsonl" "$tmp/one/log.jsonl")
# float sums in other orders (BN statistics, the all-reduce) drift a little over 50 Adam steps: 1e-5 relative
if [ "$r" != mismatch ] && awk -v r="${r%% *}" 'BEGIN{exit !(r < 1e-5)}'; then ok "loss curves agree: max relative difference ${r%% *} over ${r##* } steps (bound 1e-5)"
else bad "2 ranks vs 1: $r; $(tail -2 "$tmp/two.out")"; fi

echo "[mpi] a 2-rank run resumed on 1 process"
"${MPIRUN[@]}" "$BUILD/train" "${common[@]}" --steps $((steps / 2)) --threads 1 --workers 1 --run-dir "$tmp/mixed" > /dev/null 2>&1
"$BUILD/train" "${common[@]}" --steps $steps --threads 2 --run-dir "$tmp/mixed" --resume > "$tmp/mixed.out" 2>&1
r=$(max_rel "$tmp/mixed/log.jsonl" "$tmp/one/log.jsonl")
if [ "$r" != mismatch ] && awk -v r="${r%% *}" 'BEGIN{exit !(r < 1e-5)}'; then ok "2 ranks to step $((steps / 2)), then 1 process to $steps: the same curve (max relative difference ${r%% *})"
else bad "resume on another number of ranks: $r; $(tail -2 "$tmp/mixed.out")"; fi

echo "[mpi] a rank that dies"
"${MPIRUN[@]}" "$BUILD/train" "${common[@]}" --steps 1000000 --threads 1 --workers 1 --run-dir "$tmp/die" > "$tmp/die.out" 2>&1 &
job=$!
for _ in $(seq 200); do grep -q '"step"' "$tmp/die/log.jsonl" 2>/dev/null && break; sleep 0.05; done
victim=$(pgrep -f -- "--run-dir $tmp/die" | while read -r p; do [ "$(ps -o comm= -p "$p")" != mpirun ] && echo "$p"; done | tail -1)
kill -9 "$victim" 2>/dev/null
t0=$(date +%s)
( sleep 60; kill -9 "$job" 2>/dev/null ) & watchdog=$!
wait "$job"
rc=$?
kill "$watchdog" 2>/dev/null
took=$(( $(date +%s) - t0 ))
if [ -n "$victim" ] && [ "$rc" -ne 0 ] && [ "$took" -lt 60 ]; then ok "rank $victim killed: the job ended in ${took}s with exit $rc (no hang)"
else bad "killed rank '$victim': exit $rc after ${took}s"; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
