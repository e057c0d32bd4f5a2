#!/usr/bin/env bash
# gpu_check.sh - the whole GPU check in one command, on a bare GPU machine (tools/README.md says how to start it
# with the device tool and what each stage prints). Every log goes to $OUT: gpu_check.log (all of stdout),
# summary.txt (one line per stage) and logs.tar.gz (each stage's own logs, run folders, bench tables).
#   stages: build tests cli sanitize compare bench run    (STAGES="tests compare" runs only those)
#     build     make for the GPU's architecture with every core (vendored headers and libraries from .gpu/, made
#               here by tools/gpu_pack.sh); on failure again without -Werror, then the prebuilt binaries
#     tests     build/test_runner, every group (gpu, golden, gpu-large too), REQUIRE_GPU=1, POISON_POOL=1
#     cli       test/gpu_cli_test.sh: train / resume / eval --device cuda against the CPU
#     sanitize  compute-sanitizer memcheck on the gpu group, racecheck on the shared-memory reductions (when the
#               tool is there and the machine's runtime lets it run)
#     compare   200 steps of the tiny preset on CIFAR-10, GPU and CPU, the same seed: loss curves within
#               tools/compare_logs.py's tolerances (it can fail: its self-test runs first)
#     bench     bench/run.sh's GPU section: ours beside PyTorch eager and torch.compile
#     run       a real run: cifar-small on CIFAR-10 for RUN_MINUTES, then eval --device cuda
# EMU=1: the rehearsal without a GPU - the CUDA emulator's binaries (cuda/emu/build.sh), tiny sizes, the tiny
# dataset, PyTorch's CPU fallback; the same stages, commands and checks, so that on the GPU only the GPU can fail.
# DEADLINE (seconds, default 570 on the GPU): the device tool kills a command after 600 s, so every stage's time-out
# is cut to what is left, a stage with too little time left is skipped (SKIP "deadline"), and the real run's length
# is what remains after the rest; summary.txt and logs.tar.gz are rewritten after every stage, so a kill loses none.
# Exit status: 0 when every correctness stage (build tests cli sanitize compare) passed, 1 otherwise.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
EMU=${EMU:-0}
OUT=${OUT:-$ROOT/build/gpu-check-out}
STAGES=${STAGES:-build tests cli sanitize compare bench run}
JOBS=$(nproc)
mkdir -p "$OUT"
LOGS=$(mktemp -d)
exec > >(tee "$OUT/gpu_check.log") 2>&1
TEE_PID=$!
T0=$(date +%s)
summary=()
correctness_failed=0

stamp() { echo "[$(($(date +%s) - T0))s] $*"; }
# record STAGE STATUS DETAIL: one summary line; a failed correctness stage makes the exit status 1
record() {
    summary+=("$(printf '%-9s %-5s %s' "$1" "$2" "$3")")
    stamp "== $1: $2 $3"
    case "$1:$2" in build:FAIL|tests:FAIL|cli:FAIL|sanitize:FAIL|compare:FAIL) correctness_failed=1 ;; esac
    printf '%s\n' "${summary[@]}" > "$OUT/summary.txt"
    tar -C "$LOGS" --exclude="*.safetensors" -czf "$OUT/logs.tar.gz" . 2> /dev/null   # checkpoints: too big
}
left() { echo $((DEADLINE - ($(date +%s) - T0))); }
# limit CAP: a stage's time-out, CAP seconds or what is left before the deadline (at least 1)
limit() { local l; l=$(left); l=$((l < $1 ? l : $1)); echo $((l > 1 ? l : 1)); }
# room STAGE NEED: true when NEED seconds are left; otherwise the stage is recorded as skipped
room() { [ "$(left)" -ge "$2" ] && return 0; record "$1" SKIP "deadline: $(left) s left of DEADLINE=$DEADLINE, needs ~$2"; return 1; }
want() { [[ " $STAGES " == *" $1 "* ]]; }
unpack_xz() {  # unpack_xz FILE.tar.xz DIR: tar's xz, or Python's lzma where the image has no xz
    mkdir -p "$2"
    if command -v xz > /dev/null; then tar -C "$2" -xJf "$1"
    else python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2])' "$1" "$2"; fi
}
finish() {
    stamp "== done in $(($(date +%s) - T0)) s"
    printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
    tar -C "$LOGS" --exclude="*.safetensors" -czf "$OUT/logs.tar.gz" . 2> /dev/null
    rm -rf "$LOGS"
    exec >&- 2>&-
    wait "$TEE_PID" 2> /dev/null   # gpu_check.log complete before the files are collected
    exit $correctness_failed
}

# ---- sizes: the GPU's, or the emulator rehearsal's (tiny, a few steps: the emulator runs kernels on one core) ----
if [ "$EMU" = 1 ]; then
    B=$ROOT/build/emu
    PY=${PY:-/usr/bin/python3}
    THREADS=2
    WORKERS=2
    DATA_TAR=$ROOT/.gpu/cifar10-tiny.tar.gz
    CMP=(--preset tiny --F 8 --D 32 --batch 8 --steps ${CMP_STEPS:-12} --lr 1e-3 --warmup 4)
    RUN=(--preset tiny --F 8 --D 32 --batch 8 --steps ${RUN_STEPS:-4} --lr 1e-3 --warmup 2)
    EVAL=(--probe-epochs 1 --knn-k 5)
    BENCH_ENV=(GPU_PRESETS=tiny GPU_BATCHES=2 GPU_WARMUP=0 GPU_STEPS=1 TORCH_MODES="eager compile"
               GPU_TORCH_FALLBACK=1 GPU_PYTHON="$PY")
    SAN_TIMEOUTS=(60 60 60)
    DEADLINE=${DEADLINE:-3600}
else
    B=$ROOT/build/gpu
    PY=${PY:-python3}
    THREADS=$JOBS
    WORKERS=$((JOBS > 4 ? JOBS - 2 : 2))
    DATA_TAR=$ROOT/.gpu/cifar10.tar.gz
    CMP=(--preset tiny --batch 32 --steps 200 --lr 1e-3 --warmup 20)
    RUN=(--preset cifar-small --batch 128 --minutes ${RUN_MINUTES:-1.5} --lr 5e-4 --warmup 100 --decay-at 0.8)
    EVAL=()
    BENCH_ENV=(GPU_PRESETS="tiny cifar-small" GPU_BATCHES="64 128 256" GPU_WARMUP=3 GPU_STEPS=10
               TORCH_MODES="eager compile" COMPILE_BUDGET=${COMPILE_BUDGET:-45} GPU_PYTHON="$PY")
    SAN_TIMEOUTS=(120 45 45)   # memcheck, racecheck, racecheck: a timeout is reported, not counted as a finding
    DEADLINE=${DEADLINE:-570}
fi
stamp "gpu_check.sh: EMU=$EMU, stages: $STAGES, $JOBS cores, out: $OUT"
echo "machine: $(uname -srm); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader
command -v nvcc > /dev/null && nvcc --version | tail -1

# ---- the vendored libraries, and where the CUDA libraries are ----
SYS=/tmp/gpu/sysroot   # .gpu/sysroot.tar.xz holds sysroot/{include,lib}
if [ "$EMU" != 1 ]; then
    if [ -f .gpu/sysroot.tar.xz ]; then
        unpack_xz .gpu/sysroot.tar.xz /tmp/gpu && for so in libopenblas libturbojpeg libz; do
            ln -sf "$(ls $SYS/lib/$so.so.* | head -1)" "$SYS/lib/$so.so"; done
    else
        echo "no .gpu/sysroot.tar.xz (run tools/gpu_pack.sh here and carry .gpu): the system's -dev packages must do"
    fi
    NVCC=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2> /dev/null || true)
    CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "${NVCC:-/usr/local/cuda/bin/nvcc}")")}
    CUBLAS_DIR=$(dirname "$(ls "$CUDA_HOME"/lib64/libcublas.so.* "$CUDA_HOME"/lib/libcublas.so.* \
        "$CUDA_HOME"/targets/x86_64-linux/lib/libcublas.so.* /usr/local/cuda/lib64/libcublas.so.* 2> /dev/null | head -1)" 2> /dev/null)
    [ "$CUBLAS_DIR" = . ] && CUBLAS_DIR=""
    [ -z "$CUBLAS_DIR" ] && CUBLAS_DIR=$("$PY" -c 'import nvidia.cu13, os; print(os.path.join(nvidia.cu13.__path__[0], "lib"))' 2> /dev/null)
    export LD_LIBRARY_PATH=$SYS/lib:$CUDA_HOME/lib64${CUBLAS_DIR:+:$CUBLAS_DIR}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2> /dev/null | head -1 | tr -d ' .')
    ARCH=${ARCH:-90}
    echo "CUDA_HOME=$CUDA_HOME, cuBLAS in ${CUBLAS_DIR:-?}, building for sm_$ARCH"
fi

# ---- the data: .gpu/cifar10*.tar.gz (tools/gpu_pack.sh) unpacked once ----
DATA=/tmp/gpu-data/$(basename "$DATA_TAR" .tar.gz)
if [ -f "$DATA_TAR" ] && [ ! -d "$DATA" ]; then mkdir -p /tmp/gpu-data && tar -C /tmp/gpu-data -xzf "$DATA_TAR"; fi
[ -d "$DATA" ] && echo "data: $DATA ($(find "$DATA/train" -type f | wc -l) train, $(find "$DATA/test" -type f | wc -l) test images)"

# ---- build ----
if want build; then
    t=$(date +%s)
    if [ "$EMU" = 1 ]; then
        if bash cuda/emu/build.sh > "$LOGS/build.log" 2>&1; then record build PASS "cuda/emu/build.sh ($(($(date +%s) - t)) s)"
        else tail -20 "$LOGS/build.log"; record build FAIL "cuda/emu/build.sh: see build.log"; fi
    else
        mk=(make -j"$JOBS" BUILD=build/gpu GPU=1 MPI=0 CUDA_ARCH="$ARCH")
        [ -d "$SYS" ] && mk+=(OPENBLAS_DIR="$SYS/lib" OPENBLAS_INC="$SYS/include")
        targets=(build/gpu/train build/gpu/eval build/gpu/test_runner build/gpu/bench)   # not `all`: no deps-check
        if "${mk[@]}" "${targets[@]}" > "$LOGS/build.log" 2>&1; then
            record build PASS "make for sm_$ARCH with $JOBS jobs ($(($(date +%s) - t)) s)"
        elif "${mk[@]}" NVCC_WERROR= "${targets[@]}" > "$LOGS/build-nowerror.log" 2>&1; then
            grep -m5 -i 'warning' "$LOGS/build.log"
            record build FAIL "warnings are errors with this nvcc/gcc (built without -Werror to go on: build.log)"
        elif [ -f .gpu/prebuilt.tar.xz ]; then
            tail -20 "$LOGS/build-nowerror.log"
            mkdir -p build/gpu && unpack_xz .gpu/prebuilt.tar.xz build/gpu
            record build FAIL "make failed (build.log); going on with the prebuilt sm_80/sm_90 binaries"
        else
            tail -20 "$LOGS/build-nowerror.log"
            record build FAIL "make failed and no prebuilt binaries: stopping"
            finish
        fi
    fi
fi
[ -x "$B/test_runner" ] || { record build FAIL "no $B/test_runner"; finish; }

# ---- every test, GPU skips as failures, pool blocks NaN-poisoned ----
if want tests && room tests 60; then
    t=$(date +%s)
    groups=()
    [ "$EMU" = 1 ] && groups=(gpu golden)   # gpu-large's batch-128 shapes take hours in the emulator
    REQUIRE_GPU=1 POISON_POOL=1 timeout "$(limit 300)" "$B/test_runner" "${groups[@]}" > "$LOGS/tests.log" 2>&1
    st=$?
    grep -E '^\[|FAIL' "$LOGS/tests.log" | grep -B1 FAIL | head -40
    line=$(tail -1 "$LOGS/tests.log")
    [ $st = 0 ] && record tests PASS "$line ($(($(date +%s) - t)) s)" || record tests FAIL "exit $st: $line"
fi

# ---- train / resume / eval --device cuda end to end ----
if want cli && room cli 30; then
    t=$(date +%s)
    PYTHON=$PY timeout "$(limit 240)" bash test/gpu_cli_test.sh "$B" > "$LOGS/cli.log" 2>&1
    st=$?
    cat "$LOGS/cli.log"
    [ $st = 0 ] && record cli PASS "$(tail -1 "$LOGS/cli.log") ($(($(date +%s) - t)) s)" || record cli FAIL "$(tail -1 "$LOGS/cli.log")"
fi

# ---- compute-sanitizer: memcheck on the gpu group, racecheck on the shared-memory reductions ----
if want sanitize && room sanitize 60; then
    CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2> /dev/null || true)
    if [ "$EMU" = 1 ] || [ -z "$CS" ]; then
        record sanitize SKIP "$([ "$EMU" = 1 ] && echo "no sanitizer for the emulator" || echo "compute-sanitizer not found")"
    else
        t=$(date +%s)
        san_fail=0 san_note=""
        run_san() {  # run_san NAME TIMEOUT TOOL ARGS...: 0 clean, 1 errors found, 2 cannot run here, 3 timed out
            local name=$1 limit=$2 tool=$3
            shift 3
            timeout "$(limit "$limit")" "$CS" --tool "$tool" --error-exitcode 99 "$B/test_runner" "$@" > "$LOGS/san-$name.log" 2>&1
            local st=$?
            grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|Device not supported|passed, ' "$LOGS/san-$name.log" | tail -3 | sed "s/^/  $name: /"
            [ $st = 0 ] && return 0
            grep -q -E 'Device not supported|Unable to find|error 999|not supported on' "$LOGS/san-$name.log" && return 2
            [ $st = 124 ] && { echo "  $name: timed out after $limit s"; return 3; }
            return 1
        }
        san_jobs=("memcheck ${SAN_TIMEOUTS[0]} memcheck gpu" "race-reruns ${SAN_TIMEOUTS[1]} racecheck gpu -o bit-identical"
              "race-softmax ${SAN_TIMEOUTS[2]} racecheck gpu -o softmax")
        for job in "${san_jobs[@]}"; do
            set -- $job
            run_san "$@"
            case $? in
                1) san_fail=1 ;;
                2) san_note="the sanitizer cannot run on this machine's runtime" ;;
                3) san_note="${san_note:+$san_note; }$1 timed out" ;;
            esac
        done
        if [ $san_fail = 1 ]; then record sanitize FAIL "errors (san-*.log) ($(($(date +%s) - t)) s)"
        elif [ -n "$san_note" ]; then record sanitize SKIP "$san_note, otherwise clean ($(($(date +%s) - t)) s)"
        else record sanitize PASS "memcheck + racecheck clean ($(($(date +%s) - t)) s)"; fi
    fi
fi

# ---- 200 steps on the GPU and on the CPU, the same run: loss curves within tolerance ----
if want compare && room compare 60; then
    t=$(date +%s)
    if [ ! -d "$DATA" ]; then record compare FAIL "no dataset ($DATA_TAR: run tools/gpu_pack.sh and carry .gpu)"
    elif ! "$PY" tools/compare_logs.py --self-test > "$LOGS/compare-selftest.log" 2>&1; then
        record compare FAIL "tools/compare_logs.py --self-test: the comparison cannot fail"
    else
        common=(--dataset folder --data "$DATA" "${CMP[@]}" --seed 3 --log-every 1 --threads "$THREADS"
                --workers "$WORKERS" --ckpt-every 1e9)
        ok=1
        for dev in cuda cpu; do
            if ! timeout "$(limit 300)" "$B/train" "${common[@]}" --device $dev --run-dir "$LOGS/compare-$dev" > "$LOGS/compare-$dev.log" 2>&1; then
                tail -3 "$LOGS/compare-$dev.log"
                ok=0
            fi
            stamp "  $dev: $(grep -o 'trained .*' "$LOGS/compare-$dev.log" | head -1)"
        done
        if [ $ok = 1 ] && "$PY" tools/compare_logs.py "$LOGS/compare-cuda/log.jsonl" "$LOGS/compare-cpu/log.jsonl" \
               > "$LOGS/compare.log" 2>&1; then
            cat "$LOGS/compare.log"
            record compare PASS "$(head -1 "$LOGS/compare.log" | cut -d';' -f1), every term within tolerance ($(($(date +%s) - t)) s)"
        else
            cat "$LOGS/compare.log" 2> /dev/null
            record compare FAIL "loss curves differ (compare.log) or a run failed"
        fi
    fi
fi

# ---- the GPU benchmark beside PyTorch ----
# the bench leaves the real run ~150 s when both are asked for
bench_cap=$(( $(want run && echo 1 || echo 0) ? $(left) - 150 : $(left) ))
if want bench && room bench 90; then
    t=$(date +%s)
    if env GPU_ONLY=1 THREADS="$THREADS" BENCH_OUT="$LOGS/bench" "${BENCH_ENV[@]}" timeout "$(limit "$bench_cap")" bash bench/run.sh "$B" \
           > "$LOGS/bench.log" 2>&1; then
        sed -n '/=== 5/,$p' "$LOGS/bench.log"
        cp "$LOGS/bench/gpu_table.md" "$OUT/gpu_table.md" 2> /dev/null
        record bench PASS "gpu_table.md ($(($(date +%s) - t)) s)"
    else
        tail -20 "$LOGS/bench.log"
        record bench FAIL "bench/run.sh failed (bench.log)"
    fi
fi

# ---- a real run: cifar-small on CIFAR-10, then eval --device cuda ----
if want run && room run 100; then
    t=$(date +%s)
    if [ "$EMU" != 1 ]; then   # train for what is left, less ~75 s for the data, the measurement and eval
        minutes=$(awk -v l="$(left)" -v m="${RUN_MINUTES:-1.5}" 'BEGIN { x = (l - 75) / 60; if (x > m) x = m; printf "%.2f", x }')
        RUN=(--preset cifar-small --batch 128 --minutes "$minutes" --lr 5e-4 --warmup 100 --decay-at 0.8)
    fi
    if [ ! -d "$DATA" ]; then record run FAIL "no dataset"
    elif timeout "$(limit 900)" "$B/train" --dataset folder --data "$DATA" "${RUN[@]}" --device cuda --threads "$THREADS" \
             --workers "$WORKERS" --log-every 50 --run-dir "$LOGS/run" > "$LOGS/run-train.log" 2>&1 &&
         timeout "$(limit 600)" "$B/eval" --checkpoint "$LOGS/run/checkpoint.safetensors" --device cuda --dataset folder \
             --data "$DATA" --threads "$THREADS" "${EVAL[@]}" --out "$LOGS/run/eval.jsonl" > "$LOGS/run-eval.log" 2>&1; then
        grep -E '^dataset|--minutes|trained|epoch .* done' "$LOGS/run-train.log" | tail -6
        tail -6 "$LOGS/run-eval.log"
        cp "$LOGS/run/log.jsonl" "$OUT/run_log.jsonl" 2> /dev/null
        record run PASS "$(grep -o 'trained [0-9]* steps in [0-9.]*s' "$LOGS/run-train.log"); $(grep '^| AMDIM' "$LOGS/run-eval.log" | tr -s ' ') ($(($(date +%s) - t)) s)"
    else
        tail -5 "$LOGS/run-train.log" "$LOGS/run-eval.log" 2> /dev/null
        record run FAIL "train or eval failed (run-*.log)"
    fi
fi
finish
