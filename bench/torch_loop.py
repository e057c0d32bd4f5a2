#!/usr/bin/python3
"""torch_loop.py - the PyTorch peer of our whole training loop (`make bench` section 4c): Fashion-MNIST from its
IDX files, AMDIM's CIFAR-family augmentations done on the batch in the main thread, then the training step of
bench/torch_ref.py (the model our golden test checks against), Adam. Timed like build/train's log: images/s per
window of --log-every steps, the median of the windows after the first.

    /usr/bin/python3 bench/torch_loop.py --steps 200 --batch 64 --threads 2 [--data DIR] [--log-every 50]

The augmentations follow data/augment.c for 1-channel images (spec section 6): one shared horizontal flip per
pair, then per view p=0.8 a reflect-translate by dx, dy in [-4, 4], p=0.8 brightness and contrast jitter (0.4;
saturation and hue do nothing to a gray image), normalise with Fashion-MNIST's mean and std. Images are the 28 x 28
IDX images reflect-padded to 32 x 32, as our loader stores them.
Prints: torch-loop: preset=tiny batch=<B> threads=<T> steps=<N> img_s=<median window images/s>
"""
import argparse
import gzip
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_ref  # noqa: E402
from torch_ref import ref  # noqa: E402  (tools/amdim_reference.py)

MEAN, STD = 0.2860, 0.3530


def read_idx(path, images):
    with gzip.open(path, "rb") as f:
        data = f.read()
    if images:
        n, h, w = (int.from_bytes(data[4 * i:4 * i + 4], "big") for i in (1, 2, 3))
        return np.frombuffer(data, np.uint8, n * h * w, 16).reshape(n, h, w)
    n = int.from_bytes(data[4:8], "big")
    return np.frombuffer(data, np.uint8, n, 8)


def view(x, gen):
    """x: (B, 1, 32, 32) in [0, 1], already flipped -> one augmented, normalised view."""
    B = x.shape[0]
    shift = torch.randint(-4, 5, (B, 2), generator=gen) * (torch.rand(B, 1, generator=gen) < 0.8)
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")                   # (B, 1, 40, 40)
    rows = torch.arange(32)[None, :] + 4 + shift[:, 1:2]               # (B, 32)
    cols = torch.arange(32)[None, :] + 4 + shift[:, 0:1]
    x = padded[torch.arange(B)[:, None, None], 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)
    jitter = (torch.rand(B, 1, 1, 1, generator=gen) < 0.8).float()
    brightness = 1 + jitter * (torch.rand(B, 1, 1, 1, generator=gen) * 0.8 - 0.4)
    contrast = 1 + jitter * (torch.rand(B, 1, 1, 1, generator=gen) * 0.8 - 0.4)
    x = (x * brightness).clamp(0, 1)
    x = (contrast * x + (1 - contrast) * x.mean(dim=(1, 2, 3), keepdim=True)).clamp(0, 1)
    return (x - MEAN) / STD


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        images = read_idx(os.path.join(args.data, "train-images-idx3-ubyte.gz"), True)
        labels = read_idx(os.path.join(args.data, "train-labels-idx1-ubyte.gz"), False)
    except (OSError, ValueError) as e:   # missing, unreadable or truncated files
        print("torch_loop: %s: %s" % (args.data, e), file=sys.stderr)
        return 1
    labels = torch.from_numpy(labels.astype(np.int64))
    pixels = F.pad(torch.from_numpy(images.copy()).float().unsqueeze(1), (2, 2, 2, 2), mode="reflect")  # (N, 1, 32, 32)

    F_, D, d = torch_ref.PRESETS["tiny"]
    B = args.batch
    cfg = ref.make_config(F=F_, D=D, d=d, in_channels=1, B=B, n_classes=torch_ref.N_CLASSES, mixtures=1, mix_tau=1.0,
                          mix_alpha=0.05, mix_hidden=D)
    cfg["cls_dropout"] = torch_ref.CLS_DROPOUT
    gen = torch.Generator().manual_seed(1)
    params, bufs = ref.init_parameters(cfg, gen)
    P = {n: t.requires_grad_(True) for n, t in params.items()}
    opt = torch.optim.Adam(P.values(), lr=2e-4, betas=(0.8, 0.999), eps=1e-8, weight_decay=1e-5)

    order, at = torch.randperm(len(labels), generator=gen), 0
    windows, t0 = [], time.perf_counter()
    for step in range(1, args.steps + 1):
        if at + B > len(order):
            order, at = torch.randperm(len(labels), generator=gen), 0
        idx = order[at:at + B]
        at += B
        x = pixels[idx] / 255.0
        flip = torch.rand(B, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        x1, x2 = view(x, gen), view(x, gen)
        idx1, idx2 = torch.randint(0, 25, (B,), generator=gen), torch.randint(0, 25, (B,), generator=gen)
        opt.zero_grad(set_to_none=True)
        total = torch_ref.loss_of(P, bufs, cfg, x1, x2, labels[idx], idx1, idx2)
        total.backward()
        opt.step()
        if not torch.isfinite(total):
            print("torch_loop: non-finite loss at step %d" % step, file=sys.stderr)
            return 1
        if step % args.log_every == 0:
            now = time.perf_counter()
            windows.append(args.log_every * B / (now - t0))
            print("step %d/%d loss %.4f %.1f img/s" % (step, args.steps, total.item(), windows[-1]))
            t0 = now
    if not windows:
        print("torch_loop: fewer steps (%d) than one window (--log-every %d)" % (args.steps, args.log_every),
              file=sys.stderr)
        return 1
    rate = statistics.median(windows[1:] if len(windows) > 1 else windows)
    print("torch-loop: preset=tiny batch=%d threads=%d steps=%d img_s=%.1f" % (B, args.threads, args.steps, rate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
