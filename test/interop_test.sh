#!/usr/bin/env bash
# interop_test.sh [BUILD_DIR] - our checkpoints in PyTorch: tools/amdim_torch.py loads what build/train wrote and
# its f1 must equal what build/eval --save-features computed from the same test images, for each encoder table:
#   32 px  Fashion-MNIST layout (IDX, 1 channel), 30 steps, d=1
#   64 px  an image folder of 96x96 PNGs (STL family: Resize(70) bicubic, CenterCrop(64)), 10 steps, d=2
#   128 px an image folder of 146x146 PNGs (ImageNet family: CenterCrop(128), reflect-padded 5x5 stem), 10 steps, d=2
# Every dataset is generated here; the PyTorch side reads the images itself and applies the test transform
# (data/augment.c transform_test) in torch. Also checked: the module's state_dict names equal the checkpoint's enc.*
# names, and a missing, an unexpected and a misshapen name are each refused by name.
# Tolerance, per element: |f1_torch - f1_ours| <= 1e-4 * max|f1_ours| + 1e-3 * |f1_ours|. Both sides are float32
# with different summation orders (OpenBLAS im2col GEMMs against PyTorch's convolutions) through ~10 layers, which
# leaves ~1e-6 of max|f1| (float32 epsilon is 1.2e-7); a real mistake (a wrong BN eps, stride, pad or shortcut)
# moves elements by far more than 1e-3 of their value.
# Skips (exit 0) when /usr/bin/python3 cannot import torch.
set -u
BUILD=build                                   # relative to the repository root; an argument, to the caller's folder
[ $# -ge 1 ] && BUILD=$(realpath -m "$1")
cd "$(dirname "$0")/.." || exit 1
TRAIN=$BUILD/train
EVAL=$BUILD/eval
PY=/usr/bin/python3
if ! $PY -c "import torch, numpy" 2> /dev/null; then
    echo "[interop] skipped: no PyTorch here ($PY cannot import torch and numpy; apt-get install python3-torch)"
    exit 0
fi
for p in "$TRAIN" "$EVAL"; do
    [ -x "$p" ] || { echo "[interop] FAIL: $p is missing (build it first: make BUILD=$BUILD)"; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

# the IDX generator of test/cli_test.sh (its two functions only)
eval "$(sed -n '/^idx_images() {/,/^}/p;/^idx_labels() {/,/^}/p' test/cli_test.sh)"
if ! declare -F idx_images > /dev/null || ! declare -F idx_labels > /dev/null; then
    echo "[interop] FAIL: idx_images / idx_labels not found in test/cli_test.sh"
    exit 1
fi
mkdir -p "$tmp/fm"
idx_images "$tmp/fm/train-images-idx3-ubyte.gz" 64 1
idx_labels "$tmp/fm/train-labels-idx1-ubyte.gz" 64
idx_images "$tmp/fm/t10k-images-idx3-ubyte.gz" 40 2
idx_labels "$tmp/fm/t10k-labels-idx1-ubyte.gz" 40

# two image folders (2 classes, 8 train and 4 test images each) of random RGB PNGs, written with zlib alone
$PY - "$tmp" <<'EOF' || { echo "[interop] FAIL: could not write the PNG folders"; exit 1; }
import os, struct, sys, zlib
import numpy as np
tmp, rng = sys.argv[1], np.random.default_rng(0)
def write_png(path, rgb):  # 8-bit RGB, filter 0 on every row
    h, w, _ = rgb.shape
    chunk = lambda tag, data: struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    rows = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
for side in (96, 146):
    test = []
    for split, n in (("train", 8), ("test", 4)):
        for c in range(2):
            d = "%s/folder%d/%s/class%d" % (tmp, side, split, c)
            os.makedirs(d)
            for i in range(n):
                img = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
                write_png("%s/%02d.png" % (d, i), img)
                if split == "test":
                    test.append(img)
    np.save("%s/folder%d/test_images.npy" % (tmp, side), np.stack(test))  # dataset order: classes, then names
EOF

run() {  # name data-args... : train, then eval --save-features into $tmp/name/
    local name=$1
    shift
    mkdir -p "$tmp/$name"
    if ! nice -n 19 $TRAIN "$@" --threads 2 --workers 2 --log-every 10 --run-dir "$tmp/$name" \
            > "$tmp/$name/train.out" 2>&1; then
        echo "[interop] FAIL: train ($name): $(tail -2 "$tmp/$name/train.out")"
        failed=1
        return 1
    fi
    local data_args=()
    while [ $# -gt 0 ]; do
        case $1 in --dataset | --data) data_args+=("$1" "$2"); shift 2 ;; *) shift ;; esac
    done
    if ! nice -n 19 $EVAL --checkpoint "$tmp/$name/checkpoint.safetensors" "${data_args[@]}" --threads 2 \
            --probe-epochs 1 --knn-k 3 --save-features "$tmp/$name/features.safetensors" \
            > "$tmp/$name/eval.out" 2>&1; then
        echo "[interop] FAIL: eval --save-features ($name): $(tail -2 "$tmp/$name/eval.out")"
        failed=1
        return 1
    fi
}
common=(--F 8 --batch 8 --lr 2e-3 --warmup 2)   # a high lr: 30 Adam steps move the zero-initialised branches
echo "[interop] training 30 + 10 + 10 steps and extracting features with $BUILD"
run fm32 --dataset fashion-mnist --data "$tmp/fm" --preset tiny --D 32 --d 1 --steps 30 "${common[@]}"
run folder64 --dataset folder --data "$tmp/folder96" --preset stl-small --D 64 --d 2 --steps 10 "${common[@]}"
run folder128 --dataset folder --data "$tmp/folder146" --preset imagenet-small --D 64 --d 2 --steps 10 "${common[@]}"
[ "$failed" -eq 0 ] || exit 1

$PY - "$tmp" <<'EOF'
import gzip, sys
import numpy as np
import torch
import torch.nn.functional as Fn
sys.path.insert(0, "tools")
from amdim_torch import load_checkpoint, load_tensors, encoder_from_metadata, read_safetensors

tmp, failed = sys.argv[1], 0
ATOL_OF_MAX, RTOL = 1e-4, 1e-3
torch.set_num_threads(2)

def fashion_test_images():
    raw = gzip.open(tmp + "/fm/t10k-images-idx3-ubyte.gz").read()
    n = int.from_bytes(raw[4:8], "big")
    x = torch.from_numpy(np.frombuffer(raw, np.uint8, n * 784, 16).reshape(n, 1, 28, 28).astype(np.float32) / 255)
    raw = gzip.open(tmp + "/fm/t10k-labels-idx1-ubyte.gz").read()
    labels = np.frombuffer(raw, np.uint8, n, 8).astype(np.float32)
    return (torch.nn.ReflectionPad2d(2)(x) - 0.2860) / 0.3530, labels

def folder_test_images(side, S, mean, std):
    x = torch.from_numpy(np.load("%s/folder%d/test_images.npy" % (tmp, side)).astype(np.float32) / 255)
    x = x.permute(0, 3, 1, 2)
    if side == 96:   # STL family: Resize(70) bicubic (a = -0.75, half-pixel centres, clamped to [0, 1]) first
        x = Fn.interpolate(x, size=(70, 70), mode="bicubic", align_corners=False).clamp(0, 1)
    top = (x.shape[2] - S) // 2   # (70 - 64) / 2 and (146 - 128) / 2 are whole: no rounding question
    x = x[:, :, top:top + S, top:top + S]
    mean, std = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]
    return (x - mean) / std, np.repeat(np.arange(2, dtype=np.float32), len(x) // 2)

def check(what, ok, detail=""):
    global failed
    print("    %s %s%s" % ("ok  " if ok else "FAIL", what, detail))
    failed += not ok

cases = [("fm32", "32 px, fashion-mnist IDX, d=1, 30 steps", fashion_test_images()),
         ("folder64", "64 px, folder of 96x96 PNGs, d=2, 10 steps",
          folder_test_images(96, 64, (0.43, 0.42, 0.39), (0.27, 0.26, 0.27))),
         ("folder128", "128 px, folder of 146x146 PNGs, d=2, 10 steps",
          folder_test_images(146, 128, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))]
for name, what, (x, labels) in cases:
    print("[interop] %s" % what)
    ckpt = "%s/%s/checkpoint.safetensors" % (tmp, name)
    try:
        encoder = load_checkpoint(ckpt)
    except ValueError as e:
        check("load_checkpoint", False, ": %s" % e)
        continue
    tensors, metadata, names = read_safetensors(ckpt)
    enc_names = sorted(n for n in names if n.startswith("enc."))
    check("state_dict names == the checkpoint's %d enc.* names" % len(enc_names),
          sorted(encoder.state_dict()) == enc_names)
    feats, fmeta, _ = read_safetensors("%s/%s/features.safetensors" % (tmp, name))
    ref = torch.from_numpy(feats["test.features"].copy())
    check("test.labels are the dataset's labels", np.array_equal(feats["test.labels"], labels))
    with torch.no_grad():
        f1, f5, f7 = encoder(x, maps=True)
    check("f1 %s, f5 %s, f7 %s" % (tuple(f1.shape), tuple(f5.shape), tuple(f7.shape)),
          f1.shape == ref.shape and f5.shape[2:] == (5, 5) and f7.shape[2:] == (7, 7))
    if f1.shape != ref.shape:
        continue
    diff = (f1.double() - ref.double()).abs()
    scale = ref.abs().max().item()
    budget = ATOL_OF_MAX * scale + RTOL * ref.double().abs()
    worst = (diff / budget).max().item()
    finite = bool(torch.isfinite(f1).all())
    check("f1 against eval --save-features (%d x %d)" % tuple(ref.shape), finite and worst <= 1.0,
          ": max |diff| %.3g, max |diff| / max|f1| %.3g (max|f1| %.3g), worst element at %.1f%% of "
          "%.0e * max|f1| + %.0e * |f1|" % (diff.max().item(), diff.max().item() / scale, scale, 100 * worst,
                                           ATOL_OF_MAX, RTOL))

print("[interop] load_checkpoint is strict about enc.* names")
tensors, metadata, _ = read_safetensors("%s/fm32/checkpoint.safetensors" % tmp, prefix="enc.")
def refusal(what, edit, needle):
    t = dict(tensors)
    edit(t)
    try:
        load_tensors(encoder_from_metadata(metadata), t)
        check(what, False, ": accepted")
    except ValueError as e:
        check(what, needle in str(e), ": %s" % e)
refusal("missing enc.4.0.conv2.weight refused", lambda t: t.pop("enc.4.0.conv2.weight"),
        "missing: enc.4.0.conv2.weight")
refusal("unexpected enc.9.weight refused", lambda t: t.update({"enc.9.weight": np.zeros(3, np.float32)}),
        "unexpected: enc.9.weight")
refusal("misshapen enc.7.bias refused", lambda t: t.update({"enc.7.bias": np.zeros(31, np.float32)}),
        "wrong shape: enc.7.bias [31]")
print("[interop] %s" % ("all passed" if not failed else "%d FAILED" % failed))
sys.exit(1 if failed else 0)
EOF
