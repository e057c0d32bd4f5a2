#!/usr/bin/python3
"""torch_ref.py - the PyTorch side of `make bench`: the same AMDIM training step and forward pass as
build/bench model, timed the same way.

The model, the three NCE tasks (both directions, 0.05 score penalty, tclip 20 soft clip, masked log-softmax) and
the online linear + MLP classifiers are those of tools/amdim_reference.py (spec sections 1-4 and 7), imported
rather than copied, so the benchmark times exactly the model our golden test checks against. Adam as in spec
section 8: lr 2e-4, betas (0.8, 0.999), eps 1e-8, coupled weight decay 1e-5.

CPU (one configuration per process, so that its peak RSS is its own):
    /usr/bin/python3 bench/torch_ref.py --preset tiny --batch 32 --threads 2 --channels 1 --warmup 2 --steps 10
GPU (bench/run.sh's GPU section; one process per preset, every batch, precision and mode in it):
    python3 bench/torch_ref.py --device cuda --preset cifar-small --batches 64,128,256 --precisions fp32,tf32 \\
        --modes eager,compile --warmup 5 --steps 20 --compile-budget 90
  precision fp32: torch.backends.cudnn.allow_tf32 = False (PyTorch's default is True for convolutions) and
  torch.backends.cuda.matmul.allow_tf32 = False; tf32: convolutions in TF32, matmuls FP32 - what our --tf32 does.
  cudnn.benchmark = True (PyTorch's fastest convolution algorithms). mode compile: torch.compile of the loss
  (forward + backward graphs; Adam stays eager), and of the forward pass; its first calls (the compilation) are
  outside the timing and are printed; --compile-budget SEC: no new compilation starts after SEC seconds spent
  compiling (its rows say so). Peak GPU memory per row: torch.cuda.max_memory_reserved (what the caching allocator
  held, the counterpart of our pool's peak) and max_memory_allocated, after empty_cache + reset_peak_memory_stats.
  Without CUDA (or with a torch that has no torch.compile) it says so and runs the same code on the CPU (the
  fallback: how this path is checked on machines without a GPU; its rows say device=cpu).

Prints a human summary, then one line per configuration:
    torch: preset=<name> batch=<B> threads=<T> device=<cpu|cuda> precision=<fp32|tf32> mode=<eager|compile>
           train_img_s=<X> forward_img_s=<Y> peak_rss_mib=<Z> import_rss_mib=<I> [peak_gpu_mib=.. peak_gpu_alloc_mib=..]
(import_rss_mib: the peak RSS right after importing torch, before the model exists.)
Shapes: B images per view, C input channels, F base width, D embedding width, d units per stage, K classes.
"""
import argparse
import contextlib
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
MIB = 1024.0 * 1024.0


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # ru_maxrss is in KiB on Linux


def loss_of(P, bufs, cfg, x1, x2, labels, idx1, idx2):
    """Both views forward, L_opt = L_1t5 + L_1t7 + L_5t5 + REG + L_cls (the graph torch.compile sees)."""
    a1, m5_1, m7_1 = ref.encode_view(x1, P, bufs, cfg)   # a (B, D), m5 (B, D, 5, 5), m7 (B, D, 7, 7)
    a2, m5_2, m7_2 = ref.encode_view(x2, P, bufs, cfg)
    loss_1t5, reg_1t5 = ref.global_task(a1, a2, m5_1, m5_2, P, cfg)
    loss_1t7, reg_1t7 = ref.global_task(a1, a2, m7_1, m7_2, P, cfg)
    s5_1, s5_2 = ref.pick_location(m5_1, idx1), ref.pick_location(m5_2, idx2)
    (l12, r12), (l21, r21) = ref.nce_plain(s5_1, m5_2), ref.nce_plain(s5_2, m5_1)
    loss_5t5 = 0.5 * (l12 + l21)
    loss_reg = 0.5 * (reg_1t5 + reg_1t7 + r12 + r21)
    loss_cls = ref.classifiers(a1, a2, labels, P, bufs, CLS_DROPOUT)
    return loss_1t5 + loss_1t7 + loss_5t5 + loss_reg + loss_cls


def forward_of(P, bufs, cfg, x1, x2):
    """Both views' encoder and phi heads, train-mode BN (as inside the step)."""
    return ref.encode_view(x1, P, bufs, cfg), ref.encode_view(x2, P, bufs, cfg)


def timed(fn, warmup, steps, sync):
    """Median seconds of `steps` calls after `warmup` untimed ones; the seconds of the first call."""
    t0 = time.perf_counter()
    fn()
    sync()
    first = time.perf_counter() - t0
    for _ in range(warmup - 1):
        fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), first


def set_precision(device, precision):
    if device != "cuda":
        return
    torch.backends.cudnn.allow_tf32 = precision == "tf32"   # convolutions
    torch.backends.cuda.matmul.allow_tf32 = False             # matmuls stay FP32 (our NCE scores and linears do)
    torch.backends.cudnn.benchmark = True


def run_config(args, device, batch, precision, mode, compile_spent):
    """One row: returns the dict of the `torch:` line (None when skipped) and the seconds spent compiling."""
    F, D, d = PRESETS[args.preset]
    B, C = batch, args.channels
    cfg = ref.make_config(F=F, D=D, d=d, in_channels=C, B=B, n_classes=N_CLASSES, mixtures=1, mix_tau=1.0,
                          mix_alpha=0.05, mix_hidden=D)
    cfg["cls_dropout"] = CLS_DROPOUT
    set_precision(device, precision)
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    gen = torch.Generator().manual_seed(1)
    params, bufs = ref.init_parameters(cfg, gen)
    P = {n: t.to(device).requires_grad_(True) for n, t in params.items()}
    bufs = {n: t.to(device) for n, t in bufs.items()}
    opt = torch.optim.Adam(P.values(), lr=2e-4, betas=(0.8, 0.999), eps=1e-8, weight_decay=1e-5)
    x1 = torch.randn((B, C, 32, 32), generator=gen).to(device)
    x2 = torch.randn((B, C, 32, 32), generator=gen).to(device)
    labels = torch.randint(0, N_CLASSES, (B,), generator=gen).to(device)
    idx1 = torch.randint(0, 25, (B,), generator=gen).to(device)
    idx2 = torch.randint(0, 25, (B,), generator=gen).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    loss_fn, fwd_fn = loss_of, forward_of
    if mode == "compile":
        if not hasattr(torch, "compile"):
            print("  %s %s b%d: torch %s has no torch.compile: skipped" % (precision, mode, B, torch.__version__))
            return None, 0.0
        if compile_spent >= args.compile_budget:
            print("  %s %s b%d: skipped, %.0f s of compilation already spent (--compile-budget %g)"
                  % (precision, mode, B, compile_spent, args.compile_budget))
            return None, 0.0
        torch._dynamo.reset()
        loss_fn, fwd_fn = torch.compile(loss_of), torch.compile(forward_of)

    losses = []
    # the reference makes its NCE masks and gather indices with torch.eye / torch.arange: on the device, not the CPU
    on_device = torch.device(device) if device == "cuda" else contextlib.nullcontext()

    def train_step():
        opt.zero_grad(set_to_none=True)
        with on_device:
            total = loss_fn(P, bufs, cfg, x1, x2, labels, idx1, idx2)
        total.backward()
        opt.step()
        losses.append(total.item())

    def forward_pass():
        with torch.no_grad(), on_device:
            fwd_fn(P, bufs, cfg, x1, x2)

    try:
        train_s, train_first = timed(train_step, args.warmup, args.steps, sync)
        forward_s, forward_first = timed(forward_pass, args.warmup, args.steps, sync)
    except Exception as e:  # a compile failure must not take the eager rows with it
        print("  %s %s b%d: FAILED: %s" % (precision, mode, B, str(e).splitlines()[0] if str(e) else type(e)))
        return None, 0.0
    if not all(v == v and abs(v) != float("inf") for v in losses):
        print("torch_ref: non-finite loss %s" % losses[:5], file=sys.stderr)
        return "error", 0.0
    spent = train_first + forward_first if mode == "compile" else 0.0
    row = dict(preset=args.preset, batch=B, threads=args.threads, device=device, precision=precision, mode=mode,
               train_img_s="%.1f" % (B / train_s), forward_img_s="%.1f" % (B / forward_s),
               peak_rss_mib="%.1f" % peak_rss_mib(), import_rss_mib="%.1f" % args.rss_import)
    note = ""
    if device == "cuda":
        row["peak_gpu_mib"] = "%.1f" % (torch.cuda.max_memory_reserved() / MIB)
        row["peak_gpu_alloc_mib"] = "%.1f" % (torch.cuda.max_memory_allocated() / MIB)
        note = ", peak GPU memory %s MiB reserved / %s MiB allocated" % (row["peak_gpu_mib"], row["peak_gpu_alloc_mib"])
    if mode == "compile":
        note += ", first calls (compilation) %.1f s + %.1f s" % (train_first, forward_first)
    print("  %s %-7s b%-4d training step %.4f s = %.1f img/s, forward %.4f s = %.1f img/s%s"
          % (precision, mode, B, train_s, B / train_s, forward_s, B / forward_s, note))
    return row, spent


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=64, help="one batch (the CPU benchmark's form)")
    ap.add_argument("--batches", default=None, help="comma-separated batches, one row each (instead of --batch)")
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--precisions", default="fp32", help="fp32,tf32 (tf32: cuda only)")
    ap.add_argument("--modes", default="eager", help="eager,compile")
    ap.add_argument("--compile-budget", type=float, default=1e9, help="seconds of compilation, in all")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.rss_import = peak_rss_mib()
    batches = [int(b) for b in args.batches.split(",")] if args.batches else [args.batch]
    precisions = args.precisions.split(",")
    modes = args.modes.split(",")
    for v in precisions:
        if v not in ("fp32", "tf32"):
            ap.error("--precisions: fp32 or tf32, got %s" % v)
    for v in modes:
        if v not in ("eager", "compile"):
            ap.error("--modes: eager or compile, got %s" % v)

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("torch_ref: --device cuda, but torch %s sees no CUDA device: the same code runs on the CPU (fallback; "
              "rows say device=cpu)" % torch.__version__)
        device = "cpu"
    if device == "cuda":
        where = "%s, CUDA %s, cuDNN %s" % (torch.cuda.get_device_name(0), torch.version.cuda,
                                            torch.backends.cudnn.version())
    else:
        where = "CPU, %d threads" % torch.get_num_threads()
    F, D, d = PRESETS[args.preset]
    print("torch %s: model %s (F=%d D=%d d=%d, input %dx32x32), %s; batches %s, %s, %s"
          % (torch.__version__, args.preset, F, D, d, args.channels, where, ",".join(map(str, batches)),
             "/".join(precisions), "/".join(modes)))

    rc, compile_spent = 0, 0.0
    for batch in batches:
        for mode in modes:
            for precision in precisions:
                if precision == "tf32" and device != "cuda":
                    continue
                row, spent = run_config(args, device, batch, precision, mode, compile_spent)
                compile_spent += spent
                if row == "error":
                    rc = 1
                elif row:
                    print("torch: " + " ".join("%s=%s" % kv for kv in row.items()))
                sys.stdout.flush()
    return rc


if __name__ == "__main__":
    sys.exit(main())
