#!/usr/bin/python3
"""torch_ref.py - the PyTorch side of `make bench`: the same AMDIM training step and forward pass as
build/bench model, timed the same way, in one process per configuration (so its peak RSS is its own).

The model, the three NCE tasks (both directions, 0.05 score penalty, tclip 20 soft clip, masked log-softmax) and
the online linear + MLP classifiers are those of tools/amdim_reference.py (spec sections 1-4 and 7), imported
rather than copied, so the benchmark times exactly the model our golden test checks against. Adam as in spec
section 8: lr 2e-4, betas (0.8, 0.999), eps 1e-8, coupled weight decay 1e-5.

    /usr/bin/python3 bench/torch_ref.py --preset tiny --batch 32 --threads 2 --channels 1 --warmup 2 --steps 10

Prints a human summary, then one line:
    torch: preset=<name> batch=<B> threads=<T> train_img_s=<X> forward_img_s=<Y> peak_rss_mib=<Z> import_rss_mib=<I>
(import_rss_mib: the peak RSS right after importing torch, before the model exists.)
Shapes: B images per view, C input channels, F base width, D embedding width, d units per stage, K classes.
"""
import argparse
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import amdim_reference as ref  # noqa: E402

# F, D, d of the 32x32 presets of spec section 14 (the reference model has the CIFAR encoder table only)
PRESETS = {"tiny": (32, 256, 1), "cifar-small": (128, 1024, 3), "cifar-large": (256, 2048, 10)}
N_CLASSES = 10
CLS_DROPOUT = 0.2


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # ru_maxrss is in KiB on Linux


def training_step(P, bufs, cfg, opt, x1, x2, labels, idx1, idx2):
    """Both views forward, L_opt = L_1t5 + L_1t7 + L_5t5 + REG + L_cls, backward, Adam. Returns the loss."""
    opt.zero_grad()
    a1, m5_1, m7_1 = ref.encode_view(x1, P, bufs, cfg)   # a (B, D), m5 (B, D, 5, 5), m7 (B, D, 7, 7)
    a2, m5_2, m7_2 = ref.encode_view(x2, P, bufs, cfg)
    loss_1t5, reg_1t5 = ref.global_task(a1, a2, m5_1, m5_2, P, cfg)
    loss_1t7, reg_1t7 = ref.global_task(a1, a2, m7_1, m7_2, P, cfg)
    s5_1, s5_2 = ref.pick_location(m5_1, idx1), ref.pick_location(m5_2, idx2)
    (l12, r12), (l21, r21) = ref.nce_plain(s5_1, m5_2), ref.nce_plain(s5_2, m5_1)
    loss_5t5 = 0.5 * (l12 + l21)
    loss_reg = 0.5 * (reg_1t5 + reg_1t7 + r12 + r21)
    loss_cls = ref.classifiers(a1, a2, labels, P, bufs, CLS_DROPOUT)
    total = loss_1t5 + loss_1t7 + loss_5t5 + loss_reg + loss_cls
    total.backward()
    opt.step()
    return total.item()


def forward_pass(P, bufs, cfg, x1, x2):
    """Both views' encoder and phi heads, no grad, train-mode BN (as inside the step)."""
    with torch.no_grad():
        ref.encode_view(x1, P, bufs, cfg)
        ref.encode_view(x2, P, bufs, cfg)


def timed(fn, warmup, steps):
    """Median seconds of `steps` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rss_import = peak_rss_mib()

    F, D, d = PRESETS[args.preset]
    B, C = args.batch, args.channels
    cfg = ref.make_config(F=F, D=D, d=d, in_channels=C, B=B, n_classes=N_CLASSES, mixtures=1, mix_tau=1.0,
                          mix_alpha=0.05, mix_hidden=D)
    cfg["cls_dropout"] = CLS_DROPOUT
    gen = torch.Generator().manual_seed(1)
    params, bufs = ref.init_parameters(cfg, gen)
    P = {n: t.requires_grad_(True) for n, t in params.items()}
    opt = torch.optim.Adam(P.values(), lr=2e-4, betas=(0.8, 0.999), eps=1e-8, weight_decay=1e-5)
    x1, x2 = torch.randn((B, C, 32, 32), generator=gen), torch.randn((B, C, 32, 32), generator=gen)
    labels = torch.randint(0, N_CLASSES, (B,), generator=gen)
    idx1, idx2 = torch.randint(0, 25, (B,), generator=gen), torch.randint(0, 25, (B,), generator=gen)
    n_params = sum(t.numel() for t in P.values())
    print("torch %s: model %s (F=%d D=%d d=%d, input %dx32x32, %d parameters), batch %d, %d threads"
          % (torch.__version__, args.preset, F, D, d, C, n_params, B, torch.get_num_threads()))

    losses = []
    train_s = timed(lambda: losses.append(training_step(P, bufs, cfg, opt, x1, x2, labels, idx1, idx2)),
                    args.warmup, args.steps)
    if not all(map(lambda v: v == v and abs(v) != float("inf"), losses)):
        print("torch_ref: non-finite loss %s" % losses, file=sys.stderr)
        return 1
    forward_s = timed(lambda: forward_pass(P, bufs, cfg, x1, x2), args.warmup, args.steps)
    rss = peak_rss_mib()
    print("  training step: median %.3f s over %d steps after %d warm-up = %.1f img/s"
          % (train_s, args.steps, args.warmup, B / train_s))
    print("  forward only : median %.3f s = %.1f img/s" % (forward_s, B / forward_s))
    print("  peak RSS     : %.1f MiB (of which %.1f MiB after importing torch, before the model)" % (rss, rss_import))
    print("torch: preset=%s batch=%d threads=%d train_img_s=%.1f forward_img_s=%.1f peak_rss_mib=%.1f "
          "import_rss_mib=%.1f" % (args.preset, B, args.threads, B / train_s, B / forward_s, rss, rss_import))
    return 0


if __name__ == "__main__":
    sys.exit(main())
