#!/usr/bin/python3
"""tsne.py FEATURES.safetensors -o OUT.png [--split test] [--n 2000] [--seed 0] - a t-SNE map of frozen features.

Reads what `build/eval --save-features` writes (SPLIT.features (N, D) and SPLIT.labels (N), float32), takes a
seeded random subsample of n images of one split, standardises each feature dimension over that subsample (as the
probes standardise theirs), embeds it in 2-D with scikit-learn's t-SNE (PCA initialisation, the same seed) and
draws one dot per image coloured by its label, with a legend of the class names where the dataset has them. The
title names the split, the sample size, the feature width and the file's metadata: dataset and checkpoint (or
"raw pixels"). Classes that form separate islands are what a linear probe can separate easily.

    /usr/bin/python3 tools/tsne.py runs/fm/features.safetensors -o runs/fm/tsne.png

Needs numpy, scikit-learn and matplotlib (Debian python3-sklearn, python3-matplotlib); no safetensors package.
2,000 points of 256 dimensions take about a minute on 2 cores (57 s measured, niced, on a busy machine).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

CLASS_NAMES = {
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"],
    "mnist": [str(i) for i in range(10)],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    "stl10": ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"],
}


def read_safetensors(path):
    """({name: float32 array}, metadata) of a safetensors file holding F32 tensors only."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError("not a safetensors file (%d bytes)" % len(raw))
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError("not a safetensors file: its header length (%d) runs past the end (%d bytes)"
                         % (n, len(raw)))
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"))
    except ValueError as e:
        raise ValueError("its header is not JSON (%s)" % e)
    metadata, tensors = header.pop("__metadata__", None) or {}, {}
    for name, e in header.items():
        if e.get("dtype") != "F32":
            raise ValueError("%s is %s (only F32 is read)" % (name, e.get("dtype")))
        begin, end = e["data_offsets"]
        if not 0 <= begin <= end <= len(raw) - 8 - n or end - begin != 4 * int(np.prod(e["shape"])):
            raise ValueError("%s: data offsets %s do not fit its shape %s" % (name, e["data_offsets"], e["shape"]))
        tensors[name] = np.frombuffer(raw, "<f4", (end - begin) // 4, 8 + n + begin).reshape(e["shape"])
    return tensors, metadata


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("features", metavar="FEATURES.safetensors")
    ap.add_argument("-o", "--out", required=True, metavar="OUT.png")
    ap.add_argument("--split", default="test", help="train or test (default test)")
    ap.add_argument("--n", type=int, default=2000, help="images in the subsample (default 2000; all if fewer)")
    ap.add_argument("--seed", type=int, default=0, help="seeds the subsample and t-SNE (default 0)")
    ap.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity (default 30; lowered for "
                    "tiny samples to (n - 1) / 3)")
    a = ap.parse_args(argv)
    try:
        tensors, meta = read_safetensors(a.features)
    except (OSError, ValueError) as e:
        print("tsne: %s: %s" % (a.features, e.strerror if isinstance(e, OSError) and e.strerror else e),
              file=sys.stderr)
        return 1
    fkey, lkey = a.split + ".features", a.split + ".labels"
    if fkey not in tensors or lkey not in tensors:
        splits = sorted({k.rsplit(".", 1)[0] for k in tensors if k.endswith(".features")})
        print("tsne: %s has no %s and %s (splits here: %s); is it from eval --save-features?"
              % (a.features, fkey, lkey, ", ".join(splits) or "none"), file=sys.stderr)
        return 1
    x, y = tensors[fkey], tensors[lkey]
    if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] < 2 or a.n < 2:
        print("tsne: %s: %s %s and %s %s: need (N, D) and (N) with N >= 2, and --n >= 2"
              % (a.features, fkey, list(x.shape), lkey, list(y.shape)), file=sys.stderr)
        return 1
    if not np.isfinite(x).all():
        print("tsne: %s: %s holds %d non-finite values" % (a.features, fkey, int((~np.isfinite(x)).sum())),
              file=sys.stderr)
        return 1

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(a.seed)
    pick = np.sort(rng.choice(x.shape[0], size=min(a.n, x.shape[0]), replace=False))
    x, y = x[pick].astype(np.float64), y[pick].astype(np.int64)
    std = x.std(0)
    x = (x - x.mean(0)) / np.where(std > 0, std, 1.0)
    perplexity = min(a.perplexity, max(1.0, (len(x) - 1) / 3.0))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
              random_state=a.seed).fit_transform(x)

    dataset, checkpoint = meta.get("dataset", "?"), meta.get("checkpoint", "?")
    names = CLASS_NAMES.get(dataset, [])
    fig, ax = plt.subplots(figsize=(9, 8), dpi=100)
    cmap = plt.get_cmap("tab10" if y.max() < 10 else "tab20")
    for c in np.unique(y):
        at = y == c
        name = "unlabelled" if c < 0 else names[c] if c < len(names) else "class %d" % c
        ax.scatter(xy[at, 0], xy[at, 1], s=6, color="0.6" if c < 0 else cmap(c % cmap.N),
                   label="%s (%d)" % (name, at.sum()))
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small", markerscale=2, frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("t-SNE of %s features: %s split, %d of %d images, D=%d (perplexity %g, seed %d)\n"
                 "dataset %s, checkpoint %s" % ("raw-pixel" if checkpoint == "raw pixels" else "frozen", a.split,
                                                len(x), tensors[fkey].shape[0], x.shape[1], perplexity, a.seed,
                                                dataset, checkpoint), fontsize="medium")
    fig.tight_layout()
    try:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        fig.savefig(a.out, dpi=100)
    except OSError as e:
        print("tsne: %s: %s" % (a.out, e.strerror or e), file=sys.stderr)
        return 1
    print("tsne: %s (%s split, %d points, %d classes)" % (a.out, a.split, len(x), len(np.unique(y))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
