#!/usr/bin/env bash
# demo.sh - the main job: AMDIM (tiny preset) on Fashion-MNIST for about 8 minutes of training on the CPU, then the
# frozen encoder's linear / MLP / k-NN probes beside the same probes on raw pixels, as a table.
#   make demo                 (MINUTES=8 by default)
#   STEPS=20 make demo        (a fixed number of steps instead: CI's smoke run)
# Installs the Debian packages it needs when run as root (else prints the apt-get command).
set -euo pipefail
cd "$(dirname "$0")/.."
need=""
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need="$need dataset-fashion-mnist"
command -v gcc > /dev/null && command -v make > /dev/null || need="$need build-essential"
/usr/bin/python3 -c "import matplotlib" 2> /dev/null || need="$need python3-matplotlib"   # for curves.png
if [ -n "$need" ]; then
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need > /dev/null
    else echo "missing packages:$need -- run: sudo apt-get install -y$need"; exit 1; fi
fi
make -s deps-check
make -s GPU=0 BUILD=build/demo build/demo/train build/demo/eval
RUN=${RUN:-runs/fashion-mnist-tiny}
THREADS=${THREADS:-2}
if [ -n "${STEPS:-}" ]; then length=(--steps "$STEPS"); else length=(--minutes "${MINUTES:-8}"); fi
rm -rf "$RUN"
# recipe: batch 64, Adam lr 2e-3 after 100 warm-up steps, one x0.2 decay after 80% of the run
build/demo/train --dataset fashion-mnist --preset tiny --batch 64 "${length[@]}" --lr 2e-3 --warmup 100 \
    --decay-at 0.8 --threads "$THREADS" --run-dir "$RUN" --save-views "$RUN/views.png"
build/demo/eval --checkpoint "$RUN/checkpoint.safetensors" --raw --dataset fashion-mnist --threads "$THREADS" \
    --out "$RUN/eval.jsonl" --save-retrievals "$RUN/retrievals.png"
echo "(spec section 14's reference for raw pixels with a linear classifier: 84.3%; results also in $RUN/eval.jsonl)"
# the loss curves beside the checkpoint, where Debian's matplotlib is installed (tools/README.md)
if /usr/bin/python3 -c "import matplotlib" 2> /dev/null; then
    /usr/bin/python3 tools/plot_log.py "$RUN/log.jsonl" -o "$RUN/curves.png" \
        || echo "demo: tools/plot_log.py failed; the run and its results above are complete" >&2
else
    echo "(no matplotlib: apt-get install python3-matplotlib, then tools/plot_log.py $RUN/log.jsonl -o $RUN/curves.png)"
fi
