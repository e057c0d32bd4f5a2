#!/usr/bin/env bash
# run.sh [BUILD_DIR] - `make bench`: the CPU benchmark (see bench/README.md). A measurement, never a test: no
# number is compared with a threshold; the exit status is non-zero only when our engine's program itself fails.
#
# 1. OpenBLAS sgemm on a large square product: the machine's limit.
# 2. every convolution shape of cifar-small at batch 64, forward and backward, beside sgemm on the same GEMM shapes.
# 3. for each preset and batch: our training step and forward pass (build/bench model), then the same model in
#    PyTorch (bench/torch_ref.py), each in a fresh process so the peak RSS figures do not mix; the ratios.
# 4. a markdown table for the README (also written to $BENCH_OUT/table.md).
# 4b. data-parallel scaling: build/train on 1 and 2 processes of 1 thread (Open MPI), images/s.
# 4c. the whole training loop (build/train on Fashion-MNIST: data workers, augmentation, logging) beside the step
#    alone (build/bench model), and beside a PyTorch loop (bench/torch_loop.py), images/s and their ratios.
#    LOOP_BENCH=0 / MPI_SCALING=0 skip them.
# 4d. the step with passive OpenMP waiting (our default) and with a short spin; PyTorch with passive waiting
#    (WAIT_BENCH=0 skips it).
# 5. where a CUDA device is present (build/bench cuda): the GPU. For each preset, batch and precision (FP32, TF32
#    convolutions) our training step and forward pass on the GPU, then PyTorch on the same GPU, eager and
#    torch.compile, in the same run; ratios and both sides' peak GPU memory; a table ($BENCH_OUT/gpu_table.md).
#    Without a device: one line saying so.
#
# Environment: THREADS (2), PRESETS ("tiny cifar-small"), BATCHES ("32 64 128"), WARMUP / STEPS (per preset:
# tiny 2 / 10, cifar-small 1 / 5), CHANNELS (tiny 1 as Fashion-MNIST, cifar-small 3 as CIFAR),
# CONV_PRESET (cifar-small), CONV_BATCH (64), GEMM_SIZE (2048), MIN_REPS (5 timed calls per kernel at least),
# TORCH=0 to skip PyTorch, PYTHON (/usr/bin/python3), BENCH_OUT (BUILD_DIR/bench-results),
# BENCH_QUICK=1: a smoke run of well under a minute (tiny, batch 32, 1 + 2 steps, small conv and sgemm sizes).
# GPU section: GPU_ONLY=1 (skip sections 1-4), GPU_PRESETS ("tiny cifar-small"), GPU_BATCHES ("64 128 256"),
# GPU_PRECISIONS ("fp32 tf32"), GPU_WARMUP (5), GPU_STEPS (20), TORCH_MODES ("eager compile"), COMPILE_BUDGET
# (seconds of torch.compile per preset, 90), GPU_PYTHON (python3: on the GPU machine the one with PyTorch),
# GPU_TORCH_FALLBACK=1 (rehearsal without a GPU: the PyTorch rows from torch_ref.py's CPU fallback).
set -u
BUILD=${1:-build}
BENCH=$BUILD/bench
THREADS=${THREADS:-2}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    PRESETS=${PRESETS:-tiny}
    BATCHES=${BATCHES:-32}
    CONV_PRESET=${CONV_PRESET:-tiny}
    CONV_BATCH=${CONV_BATCH:-16}
    GEMM_SIZE=${GEMM_SIZE:-1024}
    MIN_REPS=${MIN_REPS:-1}
    WARMUP=${WARMUP:-1}
    STEPS=${STEPS:-2}
else
    PRESETS=${PRESETS:-tiny cifar-small}
    BATCHES=${BATCHES:-32 64 128}
    CONV_PRESET=${CONV_PRESET:-cifar-small}
    CONV_BATCH=${CONV_BATCH:-64}
    GEMM_SIZE=${GEMM_SIZE:-2048}
    MIN_REPS=${MIN_REPS:-5}
fi
PYTHON=${PYTHON:-/usr/bin/python3}
OUT=${BENCH_OUT:-$BUILD/bench-results}
mkdir -p "$OUT"
: > "$OUT/bench_lines.txt"
rc=0
t_start=$(date +%s)

# cifar-small costs about 10x more per image than tiny: fewer timed steps keep the whole run near 10 minutes
warmup_for() { if [ -n "${WARMUP:-}" ]; then echo "$WARMUP"; elif [ "$1" = tiny ]; then echo 2; else echo 1; fi; }
steps_for() { if [ -n "${STEPS:-}" ]; then echo "$STEPS"; elif [ "$1" = tiny ]; then echo 10; else echo 5; fi; }
channels_for() { if [ -n "${CHANNELS:-}" ]; then echo "$CHANNELS"; elif [ "$1" = tiny ]; then echo 1; else echo 3; fi; }
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }  # field LINE KEY: the value of KEY=value
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b + 0 > 0) printf "%.2f", a / b; else printf "n/a" }'; }
median() { sort -g | awk '{ v[NR] = $1 }  # median of the numbers on stdin, one per line
                          END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

if [ ! -x "$BENCH" ]; then echo "run.sh: $BENCH is missing; run 'make bench'" >&2; exit 1; fi
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
echo "=== make bench: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores ($cpu), $THREADS threads"
load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
    echo "WARNING: load average $load before the start: other work on this machine disturbs every number below"
    echo "         (OpenMP and OpenBLAS threads spin while they wait, so sharing the cores costs far more than a share)"
fi

# Both sides at their best: this workplace sets OPENBLAS_CORETYPE (and OPENBLAS_L2_SIZE) on every machine, which
# holds OpenBLAS to an older kernel (half the GEMM speed on an AVX-512 CPU) while PyTorch's oneDNN ignores it. Our
# side runs with both unset (KEEP_OPENBLAS_ENV=1 keeps them), and says which kernel OpenBLAS then picks.
if [ "${KEEP_OPENBLAS_ENV:-0}" = 1 ]; then OURS=(env); else OURS=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE); fi
BENCH_CMD=("${OURS[@]}" "$BENCH")
kernel=$("${OURS[@]}" "$BUILD/eval" --raw --data /nonexistent 2>/dev/null | sed -n 's/^BLAS: OpenBLAS [^|]* \([A-Za-z0-9]*\) MAX_THREADS.*/\1/p')
isa=$(grep -o -w -E 'avx512f|avx2|fma' /proc/cpuinfo | sort -u | tr '\n' ' ')
march=$(grep -o -- '-march=[^ ]*' "$BUILD/.flags" | head -1)
# what engine_prefer_passive_wait leaves in force: passive unless the environment already chose
wait_policy=${OMP_WAIT_POLICY:-$([ -n "${GOMP_SPINCOUNT:-}" ] && echo "GOMP_SPINCOUNT=$GOMP_SPINCOUNT" || echo passive)}
march_isa=$(${CC:-cc} $march -dM -E - </dev/null 2>/dev/null | grep -o -E '__(AVX512F|AVX2|FMA|SSE4_2)__' | tr -d _ | sort -u | tr '\n' ' ')
echo "our side: OpenBLAS kernel ${kernel:-?} (the environment's OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(none)} $( [ "${KEEP_OPENBLAS_ENV:-0}" = 1 ] && echo kept || echo 'is unset for our commands')); CPU has: ${isa}; our loops built with ${march:-?} (vector ISA: ${march_isa:-?}); OpenMP wait policy ${wait_policy} (as train and eval)"

have_torch=0
torch_version="-"
if [ "${TORCH:-1}" != 0 ] && torch_version=$("$PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null); then
    have_torch=1
    echo "PyTorch $torch_version ($PYTHON), torch.set_num_threads($THREADS)"
else
    torch_version="-"
    echo "PyTorch: not available (or TORCH=0): our side alone below, no ratios"
fi

if [ "${GPU_ONLY:-0}" != 1 ]; then
echo
echo "=== 1. the machine's limit"
"${BENCH_CMD[@]}" gemm --size "$GEMM_SIZE" --threads "$THREADS" --min-reps "$MIN_REPS" | tee "$OUT/gemm.log"
[ "${PIPESTATUS[0]}" = 0 ] || rc=1
gemm_gflops=$(field "$(grep '^bench-gemm:' "$OUT/gemm.log")" gflops)

echo
echo "=== 2. convolutions, forward and backward (dx + dw), beside sgemm on the same GEMM shapes"
"${BENCH_CMD[@]}" convs --preset "$CONV_PRESET" --batch "$CONV_BATCH" --channels "$(channels_for "$CONV_PRESET")" \
    --threads "$THREADS" --min-reps "$MIN_REPS" | tee "$OUT/convs.log"
[ "${PIPESTATUS[0]}" = 0 ] || rc=1

echo
echo "=== 3. the whole model: training step (both views, loss, backward, Adam) and forward pass alone (both views, no grad)"
echo "    images/s counts source images (each gives two views); median over the timed steps; one fresh process each"
rows=""
limits=""
torch_import_rss=""
for preset in $PRESETS; do
    for batch in $BATCHES; do
        args=(--preset "$preset" --batch "$batch" --channels "$(channels_for "$preset")" --threads "$THREADS"
              --warmup "$(warmup_for "$preset")" --steps "$(steps_for "$preset")")
        echo
        log=$OUT/$preset-b$batch
        "${BENCH_CMD[@]}" model "${args[@]}" --size "$GEMM_SIZE" --min-reps "$MIN_REPS" | tee "$log.ours.log"
        status=${PIPESTATUS[0]}
        ours=$(grep '^bench: ' "$log.ours.log")
        if [ "$status" != 0 ] || [ -z "$ours" ]; then echo "FAILED: $BENCH model ${args[*]}"; rc=1; continue; fi
        echo "$ours" >> "$OUT/bench_lines.txt"
        theirs=""
        if [ $have_torch = 1 ]; then
            "$PYTHON" bench/torch_ref.py "${args[@]}" | tee "$log.torch.log"
            theirs=$(grep '^torch: ' "$log.torch.log")
            [ -z "$theirs" ] && echo "PyTorch run failed: bench/torch_ref.py ${args[*]}"
            torch_import_rss=$(field "$theirs" import_rss_mib)
        fi
        o_train=$(field "$ours" train_img_s); o_fwd=$(field "$ours" forward_img_s); o_rss=$(field "$ours" peak_rss_mib)
        t_train=$(field "$theirs" train_img_s); t_fwd=$(field "$theirs" forward_img_s); t_rss=$(field "$theirs" peak_rss_mib)
        if [ -n "$theirs" ]; then
            echo "  ours / PyTorch: training $(ratio "$o_train" "$t_train")x, forward $(ratio "$o_fwd" "$t_fwd")x," \
                 "peak RSS $(ratio "$o_rss" "$t_rss")x"
        fi
        rows+="| $preset | $batch | $o_train | ${t_train:--} | $(ratio "$o_train" "$t_train") | $o_fwd | ${t_fwd:--}"
        rows+=" | $(ratio "$o_fwd" "$t_fwd") | $o_rss | ${t_rss:--} |"$'\n'
        # the limit: the step's GEMM work (the same for both sides) at the sgemm rate measured in the same process
        limits+=$(awk -v p="$preset" -v b="$batch" -v gt="$(field "$ours" train_gflop)" -v gf="$(field "$ours" forward_gflop)" \
            -v r="$(field "$ours" sgemm_gflops)" -v ot="$o_train" -v tt="${t_train:-0}" -v of="$o_fwd" -v tf="${t_fwd:-0}" 'BEGIN {
            if (r <= 0 || gt <= 0 || gf <= 0) exit
            lt = r * b / gt; lf = r * b / gf   # images/s if every GEMM FLOP ran at the sgemm rate and nothing else took time
            printf "| %s | %d | %.1f | %.0f | %.1f | %.0f%% | %s | %.1f | %.0f%% | %s |\n", p, b, r, gt * 1000 / b, lt, 100 * ot / lt,
                   (tt > 0 ? sprintf("%.0f%%", 100 * tt / lt) : "-"), lf, 100 * of / lf,
                   (tf > 0 ? sprintf("%.0f%%", 100 * tf / lf) : "-")
        }')$'\n'
    done
done

{
    if [ $have_torch = 1 ]; then
        torch_note="PyTorch $torch_version; its peak RSS includes ${torch_import_rss:-?} MiB for the interpreter and torch"
    else
        torch_note="PyTorch not run: our side alone"
    fi
    rates=$(grep -o 'sgemm_gflops=[0-9.]*' "$OUT/bench_lines.txt" | cut -d= -f2 | sort -g | sed -n '1p;$p' | paste -sd-)
    echo "CPU benchmark ($(date -u '+%Y-%m-%d'), $cpu, $THREADS threads, OpenBLAS sgemm ${GEMM_SIZE}^3:" \
         "${gemm_gflops:-?} GFLOP/s in section 1, ${rates:-?} beside the rows): images/s of source images (two views each), median of the timed steps;" \
         "peak RSS of one process per row; $torch_note."
    echo
    echo "| preset | batch | train img/s (ours) | train img/s (PyTorch) | ratio | forward img/s (ours) |" \
         "forward img/s (PyTorch) | ratio | peak RSS MiB (ours) | peak RSS MiB (PyTorch) |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    printf "%s" "$rows"
} > "$OUT/table.md"
echo
echo "=== 4. table for the README (also in $OUT/table.md)"
echo
cat "$OUT/table.md"

# ---- 4a. the limit: how far either side is from running every GEMM FLOP at the sgemm rate ----
echo
echo "=== 4a. the limit: the GEMM work of a step at the machine's sgemm rate, also in $OUT/limit.md"
echo "    the sgemm rate (${GEMM_SIZE}^3) measured in each row's own process, just before and after its steps (the"
echo "    better); MFLOP per image of GEMM work (convolutions, matmuls, linear layers; forward + backward for"
echo "    training); the images/s that work allows at that rate with nothing else taking time; each side's share of it"
{
    echo "| preset | batch | sgemm GFLOP/s | train MFLOP per image | train limit img/s | ours | PyTorch |" \
         "forward limit img/s | ours | PyTorch |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    printf "%s" "$limits"
} > "$OUT/limit.md"
cat "$OUT/limit.md"

# ---- 4b. data-parallel scaling: the training loop on 1 and on 2 processes of 1 thread each (Open MPI) ----
echo
echo "=== 4b. data-parallel scaling: build/train, tiny preset, Fashion-MNIST, batch 64, 1 thread per process"
if [ "${MPI_SCALING:-1}" = 1 ] && command -v mpirun > /dev/null && ldd "$BUILD/train" | grep -q libmpi &&
   [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    mpi=(mpirun --oversubscribe); [ "$(id -u)" = 0 ] && mpi+=(--allow-run-as-root)
    scaling_args=(--preset tiny --batch 64 --steps "${SCALING_STEPS:-60}" --warmup 10 --log-every 20 --workers 1
                  --threads 1)
    for np in 1 2; do
        "${OURS[@]}" "${mpi[@]}" -np "$np" "$BUILD/train" "${scaling_args[@]}" --run-dir "$OUT/scaling-$np" > "$OUT/scaling-$np.log" 2>&1
        # the last logged window: steady state, past the first steps' allocations
        ips=$(grep -o '"img_s":[0-9.]*' "$OUT/scaling-$np/log.jsonl" 2>/dev/null | tail -1 | cut -d: -f2)
        [ -n "$ips" ] && ips=$(printf '%.1f' "$ips")
        echo "  $np process(es) x 1 thread: ${ips:-failed} images/s (log: $OUT/scaling-$np.log)"
        [ -n "$ips" ] || rc=1
        eval "ips_$np=${ips:-0}"
    done
    awk -v a="$ips_1" -v b="$ips_2" 'BEGIN { if (a > 0) printf "  2 processes / 1: %.2fx\n", b / a }'
else
    echo "  skipped: no mpirun, a build without MPI, or no Fashion-MNIST (MPI_SCALING=0 skips it too)"
fi

# ---- 4c. the loop beside the step: what data loading, augmentation, logging and checkpoints cost ----
echo
echo "=== 4c. the whole training loop (build/train, tiny, Fashion-MNIST, batch 64, $THREADS threads, 2 data workers)"
echo "    beside the step alone (build/bench model, same preset and batch, synthetic input) and the PyTorch loop,"
echo "    one after the other"
if [ "${LOOP_BENCH:-1}" = 1 ] && [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    # loop and step alternate LOOP_REPEATS times: this machine's speed drifts by tens of percent within minutes, so
    # each side's median over the repeats, and their ratio, compare like with like
    loop_steps=${LOOP_STEPS:-200}
    repeats=${LOOP_REPEATS:-$([ "${BENCH_QUICK:-0}" = 1 ] && echo 1 || echo 3)}
    loops=""; steps=""; torch_loops=""
    for k in $(seq "$repeats"); do
        "${OURS[@]}" "$BUILD/train" --preset tiny --batch 64 --steps "$loop_steps" --warmup 10 --log-every 50 \
            --threads "$THREADS" --run-dir "$OUT/loop" > "$OUT/loop.log" 2>&1
        # this run's images/s: the median of its logged windows after the first (50 steps each)
        l=$(grep -o '"img_s":[0-9.]*' "$OUT/loop/log.jsonl" 2>/dev/null | cut -d: -f2 | tail -n +2 | median)
        "${BENCH_CMD[@]}" model --preset tiny --batch 64 --channels 1 --threads "$THREADS" --warmup 2 --steps 10 \
            > "$OUT/loop-step.log" 2>&1
        st=$(field "$(grep '^bench: ' "$OUT/loop-step.log")" train_img_s)
        [ -n "$l" ] && [ -n "$st" ] || { rc=1; break; }
        tl=""
        if [ $have_torch = 1 ]; then
            "$PYTHON" bench/torch_loop.py --steps "$loop_steps" --batch 64 --threads "$THREADS" --log-every 50 \
                > "$OUT/torch-loop.log" 2>&1
            tl=$(field "$(grep '^torch-loop: ' "$OUT/torch-loop.log")" img_s)
            [ -n "$tl" ] && torch_loops+="$tl"$'\n'
        fi
        echo "  repeat $k: loop $(printf '%.1f' "$l"), step alone $st${tl:+, PyTorch loop $tl} images/s"
        loops+="$l"$'\n'; steps+="$st"$'\n'
    done
    loop_ips=$(printf '%s' "$loops" | median); step_ips=$(printf '%s' "$steps" | median)
    [ -n "$loop_ips" ] && loop_ips=$(printf '%.1f' "$loop_ips")
    echo "  loop: ${loop_ips:-failed} images/s (median over the repeats; the last run's log: $OUT/loop.log)"
    echo "  step alone: ${step_ips:-failed} images/s (median over the repeats)"
    [ -n "$loop_ips" ] && [ -n "$step_ips" ] || rc=1
    echo "  loop / step: $(ratio "$loop_ips" "$step_ips")x"
    if [ -n "$torch_loops" ]; then
        torch_loop_ips=$(printf '%s' "$torch_loops" | median)
        echo "  PyTorch loop (bench/torch_loop.py: Fashion-MNIST, the same augmentations on the batch in the main"
        echo "  thread, torch_ref.py's step): ${torch_loop_ips:-failed} images/s (median; log: $OUT/torch-loop.log)"
        echo "  our loop / PyTorch loop: $(ratio "$loop_ips" "$torch_loop_ips")x"
    fi
else
    echo "  skipped: no Fashion-MNIST (apt-get install dataset-fashion-mnist), or LOOP_BENCH=0"
fi

# ---- 4d. OpenMP's wait policy: the step with idle threads asleep (train's default) and spinning briefly ----
echo
echo "=== 4d. OpenMP wait policy: the training step (tiny, batch 64, $THREADS threads) with passive waiting (our"
echo "    default) and with GOMP_SPINCOUNT=10000 (threads spin a little before they sleep), alternating; PyTorch's"
echo "    libgomp spins by default: the same step of PyTorch with OMP_WAIT_POLICY=passive beside it"
if [ "${WAIT_BENCH:-1}" = 1 ]; then
    for k in $(seq "$([ "${BENCH_QUICK:-0}" = 1 ] && echo 1 || echo 2)"); do
        line="  repeat $k:"
        for policy in OMP_WAIT_POLICY=passive GOMP_SPINCOUNT=10000; do
            env "$policy" "${BENCH_CMD[@]}" model --preset tiny --batch 64 --channels 1 --threads "$THREADS" \
                --warmup 2 --steps "$(steps_for tiny)" > "$OUT/wait.log" 2>&1
            v=$(field "$(grep '^bench: ' "$OUT/wait.log")" train_img_s)
            [ -n "$v" ] || rc=1
            line+=" ours $policy ${v:-failed},"
        done
        if [ $have_torch = 1 ]; then
            OMP_WAIT_POLICY=passive "$PYTHON" bench/torch_ref.py --preset tiny --batch 64 --channels 1 \
                --threads "$THREADS" --warmup 2 --steps "$(steps_for tiny)" > "$OUT/wait.torch.log" 2>&1
            v=$(field "$(grep '^torch: ' "$OUT/wait.torch.log")" train_img_s)
            line+=" PyTorch OMP_WAIT_POLICY=passive ${v:-failed}"
        fi
        echo "$line images/s"
    done
else
    echo "  skipped: WAIT_BENCH=0"
fi
fi

# ---- 5. the GPU ----
gpu_section() {
    local presets=${GPU_PRESETS:-tiny cifar-small} batches=${GPU_BATCHES:-64 128 256}
    local precisions=${GPU_PRECISIONS:-fp32 tf32} gwarm=${GPU_WARMUP:-5} gsteps=${GPU_STEPS:-20}
    local modes=${TORCH_MODES:-eager compile} budget=${COMPILE_BUDGET:-90} gpy=${GPU_PYTHON:-python3}
    echo
    echo "=== 5. the GPU: $(sed -n 's/^bench-cuda: //p' "$OUT/cuda.log")"
    echo "    ours (build/bench model --device cuda [--tf32]) and PyTorch on the same GPU, in this run; images/s of"
    echo "    source images (two views each), median of $gsteps timed steps after $gwarm; peak GPU memory: our pool's"
    echo "    peak held (in use + cached) vs torch.cuda.max_memory_reserved; tf32 = TF32 convolutions, FP32 matmuls"
    local torch_ok=0
    if "$gpy" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2> /dev/null; then
        torch_ok=1
        echo "    PyTorch $("$gpy" -c 'import torch; print(torch.__version__)') ($gpy); modes: $modes;" \
             "torch.compile budget ${budget}s per preset"
    elif [ "${GPU_TORCH_FALLBACK:-0}" = 1 ]; then   # rehearsals without a GPU: torch_ref.py's CPU fallback
        torch_ok=1
        echo "    PyTorch with CUDA: not available ($gpy); GPU_TORCH_FALLBACK=1: its rows run on the CPU (a rehearsal)"
    else
        echo "    PyTorch with CUDA: not available ($gpy): our side alone"
    fi
    : > "$OUT/gpu_lines.txt"
    for preset in $presets; do
        local ch
        ch=$(channels_for "$preset")
        for batch in $batches; do
            for prec in $precisions; do
                local flag=""
                [ "$prec" = tf32 ] && flag=--tf32
                "$BENCH" model --device cuda $flag --preset "$preset" --batch "$batch" --channels "$ch" \
                    --threads "$THREADS" --warmup "$gwarm" --steps "$gsteps" > "$OUT/gpu-$preset-b$batch-$prec.log" 2>&1
                local st=$? line
                line=$(grep '^bench: ' "$OUT/gpu-$preset-b$batch-$prec.log")
                if [ $st != 0 ] || [ -z "$line" ]; then
                    echo "FAILED: $BENCH model --device cuda $flag --preset $preset --batch $batch"
                    tail -3 "$OUT/gpu-$preset-b$batch-$prec.log"
                    rc=1
                    continue
                fi
                echo "  ours  $preset b$batch $prec: train $(field "$line" train_img_s) img/s, forward" \
                     "$(field "$line" forward_img_s) img/s, peak GPU $(field "$line" peak_gpu_mib) MiB"
                echo "ours $line" >> "$OUT/gpu_lines.txt"
            done
        done
        if [ $torch_ok = 1 ]; then
            "$gpy" bench/torch_ref.py --device cuda --preset "$preset" --batches "$(echo $batches | tr ' ' ,)" \
                --precisions "$(echo $precisions | tr ' ' ,)" --modes "$(echo $modes | tr ' ' ,)" --channels "$ch" \
                --threads "$THREADS" --warmup "$gwarm" --steps "$gsteps" --compile-budget "$budget" \
                > "$OUT/gpu-$preset-torch.log" 2>&1
            [ $? = 0 ] || { echo "PyTorch run failed: $(tail -2 "$OUT/gpu-$preset-torch.log")"; }
            grep -v '^torch: ' "$OUT/gpu-$preset-torch.log" | sed 's/^/  torch /'
            grep '^torch: ' "$OUT/gpu-$preset-torch.log" >> "$OUT/gpu_lines.txt"
        fi
    done
    # the table: one row per preset, batch and precision
    pick() {  # pick SIDE PRESET BATCH PREC [MODE]: the line
        if [ "$1" = ours ]; then grep "^ours bench: preset=$2 batch=$3 .*precision=$4 " "$OUT/gpu_lines.txt" | head -1
        else grep "^torch: preset=$2 batch=$3 .*precision=$4 mode=$5 " "$OUT/gpu_lines.txt" | head -1; fi
    }
    {
        echo "GPU benchmark ($(date -u '+%Y-%m-%d'), $(sed -n 's/^bench-cuda: //p' "$OUT/cuda.log")): images/s of source images"
        echo "(two views each), median of $gsteps timed steps after $gwarm warm-up; ratio = ours / PyTorch; peak GPU"
        echo "memory in MiB: our pool's peak held vs torch.cuda.max_memory_reserved (eager / compiled)."
        echo
        echo "| preset | batch | precision | train ours | train eager | ratio | train compiled | ratio |" \
             "forward ours | forward eager | ratio | forward compiled | ratio | peak MiB ours | peak MiB eager | peak MiB compiled |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        for preset in $presets; do for batch in $batches; do for prec in $precisions; do
            local o e c
            o=$(pick ours "$preset" "$batch" "$prec"); e=$(pick torch "$preset" "$batch" "$prec" eager)
            c=$(pick torch "$preset" "$batch" "$prec" compile)
            [ -z "$o$e$c" ] && continue
            local ot of om et ef em ct cf cm
            ot=$(field "$o" train_img_s); of=$(field "$o" forward_img_s); om=$(field "$o" peak_gpu_mib)
            et=$(field "$e" train_img_s); ef=$(field "$e" forward_img_s); em=$(field "$e" peak_gpu_mib)
            ct=$(field "$c" train_img_s); cf=$(field "$c" forward_img_s); cm=$(field "$c" peak_gpu_mib)
            echo "| $preset | $batch | $prec | ${ot:--} | ${et:--} | $(ratio "$ot" "$et") | ${ct:--} | $(ratio "$ot" "$ct") |" \
                 "${of:--} | ${ef:--} | $(ratio "$of" "$ef") | ${cf:--} | $(ratio "$of" "$cf") | ${om:--} | ${em:--} | ${cm:--} |"
        done; done; done
    } > "$OUT/gpu_table.md"
    echo
    echo "=== GPU table (also in $OUT/gpu_table.md)"
    echo
    cat "$OUT/gpu_table.md"
}

if "$BENCH" cuda > "$OUT/cuda.log" 2>&1; then
    gpu_section
else
    echo
    echo "=== 5. the GPU: skipped ($(sed -n 's/^bench-cuda: //p' "$OUT/cuda.log"))"
fi
echo
echo "make bench took $(( $(date +%s) - t_start )) s"
exit $rc
