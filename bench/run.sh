#!/usr/bin/env bash
# run.sh [BUILD_DIR] - `make bench`: the CPU benchmark (see bench/README.md). A measurement, never a test: no
# number is compared with a threshold; the exit status is non-zero only when our engine's program itself fails.
#
# 1. OpenBLAS sgemm on a large square product: the machine's limit.
# 2. every convolution shape of cifar-small at batch 64, forward and backward, beside sgemm on the same GEMM shapes.
# 3. for each preset and batch: our training step and forward pass (build/bench model), then the same model in
#    PyTorch (bench/torch_ref.py), each in a fresh process so the peak RSS figures do not mix; the ratios.
# 4. a markdown table for the README (also written to $BENCH_OUT/table.md).
#
# Environment: THREADS (2), PRESETS ("tiny cifar-small"), BATCHES ("32 64 128"), WARMUP / STEPS (per preset:
# tiny 2 / 10, cifar-small 1 / 5), CHANNELS (tiny 1 as Fashion-MNIST, cifar-small 3 as CIFAR),
# CONV_PRESET (cifar-small), CONV_BATCH (64), GEMM_SIZE (2048), MIN_REPS (5 timed calls per kernel at least),
# TORCH=0 to skip PyTorch, PYTHON (/usr/bin/python3), BENCH_OUT (BUILD_DIR/bench-results),
# BENCH_QUICK=1: a smoke run of well under a minute (tiny, batch 32, 1 + 2 steps, small conv and sgemm sizes).
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

if [ ! -x "$BENCH" ]; then echo "run.sh: $BENCH is missing; run 'make bench'" >&2; exit 1; fi
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
echo "=== make bench: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores ($cpu), $THREADS threads"
load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
    echo "WARNING: load average $load before the start: other work on this machine disturbs every number below"
    echo "         (OpenMP and OpenBLAS threads spin while they wait, so sharing the cores costs far more than a share)"
fi

have_torch=0
torch_version="-"
if [ "${TORCH:-1}" != 0 ] && torch_version=$("$PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null); then
    have_torch=1
    echo "PyTorch $torch_version ($PYTHON), torch.set_num_threads($THREADS)"
else
    torch_version="-"
    echo "PyTorch: not available (or TORCH=0): our side alone below, no ratios"
fi

echo
echo "=== 1. the machine's limit"
"$BENCH" gemm --size "$GEMM_SIZE" --threads "$THREADS" --min-reps "$MIN_REPS" | tee "$OUT/gemm.log"
[ "${PIPESTATUS[0]}" = 0 ] || rc=1
gemm_gflops=$(field "$(grep '^bench-gemm:' "$OUT/gemm.log")" gflops)

echo
echo "=== 2. convolutions, forward and backward (dx + dw), beside sgemm on the same GEMM shapes"
"$BENCH" convs --preset "$CONV_PRESET" --batch "$CONV_BATCH" --channels "$(channels_for "$CONV_PRESET")" \
    --threads "$THREADS" --min-reps "$MIN_REPS" | tee "$OUT/convs.log"
[ "${PIPESTATUS[0]}" = 0 ] || rc=1

echo
echo "=== 3. the whole model: training step (both views, loss, backward, Adam) and forward pass alone (both views, no grad)"
echo "    images/s counts source images (each gives two views); median over the timed steps; one fresh process each"
rows=""
torch_import_rss=""
for preset in $PRESETS; do
    for batch in $BATCHES; do
        args=(--preset "$preset" --batch "$batch" --channels "$(channels_for "$preset")" --threads "$THREADS"
              --warmup "$(warmup_for "$preset")" --steps "$(steps_for "$preset")")
        echo
        log=$OUT/$preset-b$batch
        "$BENCH" model "${args[@]}" | tee "$log.ours.log"
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
    done
done

{
    if [ $have_torch = 1 ]; then
        torch_note="PyTorch $torch_version; its peak RSS includes ${torch_import_rss:-?} MiB for the interpreter and torch"
    else
        torch_note="PyTorch not run: our side alone"
    fi
    echo "CPU benchmark ($(date -u '+%Y-%m-%d'), $cpu, $THREADS threads, OpenBLAS sgemm ${GEMM_SIZE}^3:" \
         "${gemm_gflops:-?} GFLOP/s): images/s of source images (two views each), median of the timed steps;" \
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
echo
echo "make bench took $(( $(date +%s) - t_start )) s"
exit $rc
