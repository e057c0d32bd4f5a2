#!/usr/bin/python3
"""amdim_reference.py - an independent PyTorch implementation of one AMDIM training step, used to write the
golden fixtures that the C engine is tested against (see /work/shared/amdim-spec.md and tools/README.md).
It also implements the two methods the engine compares AMDIM with, on the same encoder family: local Deep InfoMax
(one view: f1 against every location of the 7x7 map of the same view, NCE) and CPC (a 7x7 grid of overlapping 8x8
patches, each encoded to a vector, a context network masked to the rows above, InfoNCE predictions k rows below).

It computes, for fixed random parameters and inputs, the three NCE losses (1->5, 1->7, 5->5), the score penalty,
the online-classifier loss, the gradient of their sum with respect to every parameter, and the BatchNorm running
statistics after the step, and writes them with their inputs and parameters to safetensors files.

Run with the system interpreter (Debian python3-torch 1.13, numpy; nothing else):
    /usr/bin/python3 tools/amdim_reference.py            # writes test/fixtures/*.safetensors

Shapes: B images per view, C input channels, F base width, D embedding width, d units per stage, K classes,
L target locations (25 or 49), P sources per image (1, or k mixture components).
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as Fn

TCLIP = 20.0          # soft clip of the scores: c * tanh(R / c)
SCORE_PENALTY = 0.05  # weight of mean(R^2)
BN_EPS = 1e-5
BN_MOMENTUM = 0.1
CLS_HIDDEN = 1024     # hidden width of the MLP classifier
CLS_CLIP = 10.0       # classifier logits enter the cross-entropy as 10 * tanh(z / 10)
CLS_PENALTY = 0.001   # weight of mean(z^2)


# ---------------------------------------------------------------- safetensors, by hand ----------------------------

def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, float32 tensor) in file order; metadata: dict of str -> str.
    Layout: u64 little-endian header length, JSON header padded with spaces to 8 bytes, raw little-endian data."""
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name, t in tensors:
        data = t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")  # ensure_ascii: non-ASCII as \uXXXX
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    """The inverse of write_safetensors (F32 only): returns ({name: tensor}, metadata)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    data = raw[8 + n:]
    tensors = {}
    for name, e in header.items():
        assert e["dtype"] == "F32", (name, e["dtype"])
        b, end = e["data_offsets"]
        tensors[name] = torch.from_numpy(np.frombuffer(data[b:end], dtype="<f4").copy()).reshape(e["shape"])
    return tensors, metadata


# ---------------------------------------------------------------- configuration and parameters -------------------

def make_config(F, D, d, in_channels, B, n_classes, mixtures, mix_tau, mix_alpha, mix_hidden, method="amdim",
                cpc_steps=3):
    return dict(F=F, D=D, d=d, in_channels=in_channels, B=B, n_classes=n_classes, mixtures=mixtures,
                mix_tau=mix_tau, mix_alpha=mix_alpha, mix_hidden=mix_hidden, method=method, cpc_steps=cpc_steps)


CPC_GRID, CPC_PATCH, CPC_STRIDE = 7, 8, 4   # 32x32 images -> a 7x7 grid of 8x8 patches at stride 4


def parameter_shapes(cfg):
    """Every trainable parameter (name -> shape) and every BN layer (name -> channels), in file order."""
    F, D, d, C, K = cfg["F"], cfg["D"], cfg["d"], cfg["in_channels"], cfg["n_classes"]
    params, bns = {}, {}

    def unit(name, k, cin, cout):  # RU(k, s, cin -> cout)
        params[name + ".conv1.weight"] = (cout, cin, k, k)
        params[name + ".conv2.weight"] = (cout, cout, 1, 1)

    def stage(name, k, cin, cout):  # RS(k, s, cin -> cout, d)
        unit(name + ".0", k, cin, cout)
        for u in range(1, d):
            unit("%s.%d" % (name, u), 1, cout, cout)

    def bn(name, channels):
        params[name + ".weight"] = (channels,)
        params[name + ".bias"] = (channels,)
        bns[name] = channels

    params["enc.0.weight"] = (F, C, 3, 3)
    params["enc.0.bias"] = (F,)
    unit("enc.1.0", 1, F, F)
    if cfg["method"] == "cpc":  # the patch table: 8 -> 6 -> 6 -> 4 -> 2 -> 1
        stage("enc.2", 3, F, 2 * F)
        stage("enc.3", 3, 2 * F, 4 * F)
        unit("enc.4.0", 2, 4 * F, D)
        bn("enc.5", D)
        for l in range(2):
            params["cpc.context.%d.weight" % l] = (D, D, 3, 3)
            params["cpc.context.%d.bias" % l] = (D,)
        for k in range(1, cfg["cpc_steps"] + 1):
            params["cpc.predict.%d.weight" % k] = (D, D)
    else:
        stage("enc.2", 4, F, 2 * F)
        stage("enc.3", 2, 2 * F, 4 * F)
        stage("enc.4", 3, 4 * F, 4 * F)
        stage("enc.5", 3, 4 * F, 4 * F)
        unit("enc.6.0", 3, 4 * F, D)
        bn("enc.7", D)
    heads = {"amdim": ("head5", "head7"), "dim": ("head7",), "cpc": ()}[cfg["method"]]
    for head in heads:
        params[head + ".conv1.weight"] = (D, 4 * F, 1, 1)
        params[head + ".conv2.weight"] = (D, D, 1, 1)
        params[head + ".shortcut.weight"] = (D, 4 * F, 1, 1)
        params[head + ".shortcut.bias"] = (D,)
        bn(head + ".bn", D)
    if cfg["mixtures"] > 1:
        H, k = cfg["mix_hidden"], cfg["mixtures"]
        params["mix.fc1.weight"] = (H, D)
        params["mix.fc1.bias"] = (H,)
        params["mix.fc2.weight"] = (k * D, H)
        params["mix.fc2.bias"] = (k * D,)
    params["cls_mlp.fc1.weight"] = (CLS_HIDDEN, D)
    bn("cls_mlp.bn", CLS_HIDDEN)
    params["cls_mlp.fc2.weight"] = (K, CLS_HIDDEN)
    params["cls_mlp.fc2.bias"] = (K,)
    params["cls_lin.weight"] = (K, D)
    params["cls_lin.bias"] = (K,)
    return params, bns


def init_parameters(cfg, gen):
    """Random non-zero values (not the zero-init of the paper's residual branches), so every gradient is
    non-trivial: weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), BN weight U(0.5, 1.5), bias U(-0.2, 0.2);
    BN running_mean 0, running_var 1."""
    shapes, bns = parameter_shapes(cfg)
    params, buffers = {}, {}
    fan_in = {}
    for name, shape in shapes.items():
        layer, kind = name.rsplit(".", 1)
        if layer in bns:
            lo, hi = (0.5, 1.5) if kind == "weight" else (-0.2, 0.2)
        else:
            if kind == "weight":
                fan_in[layer] = int(np.prod(shape[1:]))
            bound = 1.0 / math.sqrt(fan_in[layer])  # a bias follows its weight in parameter_shapes
            lo, hi = -bound, bound
        params[name] = lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float32)
    for name, channels in bns.items():
        buffers[name + ".running_mean"] = torch.zeros(channels)
        buffers[name + ".running_var"] = torch.ones(channels)
    return params, buffers


def cpc_encoder(x, P, bufs, cfg):
    """x: (B, C, 32, 32) -> the patch vectors z (B*49, D), rows (image, grid row, grid column)."""
    F, D, d = cfg["F"], cfg["D"], cfg["d"]
    B, C = x.shape[:2]
    patches = x.unfold(2, CPC_PATCH, CPC_STRIDE).unfold(3, CPC_PATCH, CPC_STRIDE)   # (B, C, 7, 7, 8, 8)
    h = patches.permute(0, 2, 3, 1, 4, 5).reshape(B * CPC_GRID * CPC_GRID, C, CPC_PATCH, CPC_PATCH)
    h = torch.relu(Fn.conv2d(h, P["enc.0.weight"], P["enc.0.bias"]))   # (N, F, 6, 6)
    h = residual_unit(h, P, "enc.1.0", 1, 1, F)
    h = residual_stage(h, P, "enc.2", 3, 1, 2 * F, d)                   # (N, 2F, 4, 4)
    h = residual_stage(h, P, "enc.3", 3, 1, 4 * F, d)                   # (N, 4F, 2, 2)
    h = residual_unit(h, P, "enc.4.0", 2, 1, D)                          # (N, D, 1, 1)
    return batch_norm(h, P, bufs, "enc.5").flatten(1)


def cpc_loss(z, P, cfg):
    """InfoNCE of CPC: the context c (two 3x3 convs whose kernels' bottom row is masked, so the context at grid row i
    sees rows <= i) predicts z k rows below with W_k; scores against every patch vector of the batch / sqrt(D)."""
    D, G, K = cfg["D"], CPC_GRID, cfg["cpc_steps"]
    N = z.shape[0]
    B = N // (G * G)
    zmap = z.reshape(B, G * G, D).permute(0, 2, 1).reshape(B, D, G, G)
    mask = torch.ones(3, 3, dtype=z.dtype)
    mask[2] = 0
    h = torch.relu(Fn.conv2d(zmap, P["cpc.context.0.weight"] * mask, P["cpc.context.0.bias"], padding=1))
    cmap = Fn.conv2d(h, P["cpc.context.1.weight"] * mask, P["cpc.context.1.bias"], padding=1) + zmap
    c = cmap.reshape(B, D, G * G).permute(0, 2, 1).reshape(N, D)
    rows = torch.arange(N)
    total = 0
    for k in range(1, K + 1):
        target = torch.where(rows // G % G + k < G, rows + k * G, torch.full_like(rows, -1))
        logits = (c @ P["cpc.predict.%d.weight" % k].t()) @ z.t() / math.sqrt(D)
        total = total + Fn.cross_entropy(logits, target, ignore_index=-1)
    return total / K


def make_inputs(cfg, gen):
    B, C, K = cfg["B"], cfg["in_channels"], cfg["n_classes"]
    labels = torch.randint(0, K, (B,), generator=gen)
    labels[1] = -1  # one unlabelled image: ignored by the cross-entropy, still in the logit penalty
    return {
        "input.x1": torch.randn((B, C, 32, 32), generator=gen),
        "input.x2": torch.randn((B, C, 32, 32), generator=gen),
        "input.labels": labels.float(),
        "input.idx1": torch.randint(0, 25, (B,), generator=gen).float(),  # 5x5 source location of view 1
        "input.idx2": torch.randint(0, 25, (B,), generator=gen).float(),
    }


# ---------------------------------------------------------------- model -------------------------------------------

def batch_norm(x, P, bufs, name):
    """Train-mode BN: batch statistics (biased variance) normalise; running stats are updated in place with
    momentum 0.1 and the unbiased variance."""
    return Fn.batch_norm(x, bufs[name + ".running_mean"], bufs[name + ".running_var"], P[name + ".weight"],
                         P[name + ".bias"], training=True, momentum=BN_MOMENTUM, eps=BN_EPS)


def residual_unit(x, P, name, k, s, cout):
    """RU(k, s, cin -> cout): conv k x k stride s (valid, no bias) -> ReLU -> conv 1x1, plus the shortcut
    avg_pool(k, s) of x with zero channels appended up to cout. No ReLU after the sum."""
    h = torch.relu(Fn.conv2d(x, P[name + ".conv1.weight"], stride=s))
    r = Fn.conv2d(h, P[name + ".conv2.weight"])
    sc = x if k == 1 and s == 1 else Fn.avg_pool2d(x, k, s)
    sc = Fn.pad(sc, (0, 0, 0, 0, 0, cout - x.shape[1]))  # (W, W, H, H, C_front, C_back): new channels at the end
    return r + sc


def residual_stage(x, P, name, k, s, cout, d):
    """RS(k, s, cin -> cout, d): RU(k, s) then d - 1 units RU(1, 1)."""
    x = residual_unit(x, P, name + ".0", k, s, cout)
    for u in range(1, d):
        x = residual_unit(x, P, "%s.%d" % (name, u), 1, 1, cout)
    return x


def encoder(x, P, bufs, cfg):
    """x: (B, C, 32, 32) -> f1 (B, D), f5 source (B, 4F, 5, 5), f7 source (B, 4F, 7, 7)."""
    F, D, d = cfg["F"], cfg["D"], cfg["d"]
    h = torch.relu(Fn.conv2d(x, P["enc.0.weight"], P["enc.0.bias"]))  # (B, F, 30, 30)
    h = residual_unit(h, P, "enc.1.0", 1, 1, F)                        # (B, F, 30, 30)
    h = residual_stage(h, P, "enc.2", 4, 2, 2 * F, d)                 # (B, 2F, 14, 14)
    f7 = residual_stage(h, P, "enc.3", 2, 2, 4 * F, d)                # (B, 4F, 7, 7)
    f5 = residual_stage(f7, P, "enc.4", 3, 1, 4 * F, d)               # (B, 4F, 5, 5)
    h = residual_stage(f5, P, "enc.5", 3, 1, 4 * F, d)                # (B, 4F, 3, 3)
    h = residual_unit(h, P, "enc.6.0", 3, 1, D)                        # (B, D, 1, 1)
    f1 = batch_norm(h, P, bufs, "enc.7")                               # (B, D, 1, 1)
    return f1.flatten(1), f5, f7


def embedding_head(x, P, bufs, name):
    """x: (B, 4F, H, W) -> (B, D, H, W): BN(conv1x1(relu(conv1x1(x))) + conv1x1_with_bias(x))."""
    g = Fn.conv2d(torch.relu(Fn.conv2d(x, P[name + ".conv1.weight"])), P[name + ".conv2.weight"])
    s = Fn.conv2d(x, P[name + ".shortcut.weight"], P[name + ".shortcut.bias"])
    return batch_norm(g + s, P, bufs, name + ".bn")


def encode_view(x, P, bufs, cfg):
    """One view, one forward pass (its own BN statistics): a (B, D), m5 (B, D, 5, 5), m7 (B, D, 7, 7)."""
    a, f5, f7 = encoder(x, P, bufs, cfg)
    return a, embedding_head(f5, P, bufs, "head5"), embedding_head(f7, P, bufs, "head7")


# ---------------------------------------------------------------- NCE ----------------------------------------------

def nce_scores(S, T, P):
    """S: (B*P, D) sources, P per image, image-major; T: (B, D, H, W) targets of the other view.
    Returns lsm (B, P, L): the log-softmax of each positive (same image) against all locations of all other
    images, and reg = 0.05 * mean(R^2) on the unclipped scaled scores."""
    B, D, H, W = T.shape
    L = H * W
    Tf = T.reshape(B, D, L).permute(0, 2, 1).reshape(B * L, D)      # (B*L, D), row j*L + l
    R = (S @ Tf.t() / math.sqrt(D)).reshape(B, P, B, L)            # R[i, p, j, l]
    reg = SCORE_PENALTY * (R ** 2).mean()
    Q = TCLIP * torch.tanh(R / TCLIP)
    same_image = torch.eye(B, dtype=torch.bool)[:, None, :, None]    # (B, 1, B, 1): j == i
    images = torch.arange(B)
    pos = Q[images, :, images, :]                                    # (B, P, L): Q[i, p, i, l]
    neg_lse = torch.logsumexp(Q.masked_fill(same_image, -math.inf), dim=(2, 3))  # (B, P): over j != i, all l'
    lsm = pos - torch.logaddexp(pos, neg_lse[:, :, None])           # log(e^pos / (e^pos + sum e^neg))
    return lsm, reg


def nce_plain(S, T):
    """S: (B, D) one source per image. Returns (loss, reg)."""
    lsm, reg = nce_scores(S, T, 1)
    return -lsm.mean(), reg


def mixture_components(a, P, cfg):
    """a: (B, D) -> k components per image (B*k, D): fc2(relu(fc1(a))) reshaped to (B, k, D), plus a."""
    B, D, k = a.shape[0], a.shape[1], cfg["mixtures"]
    m = Fn.linear(torch.relu(Fn.linear(a, P["mix.fc1.weight"], P["mix.fc1.bias"])),
                  P["mix.fc2.weight"], P["mix.fc2.bias"])               # (B, k*D)
    return (m.reshape(B, k, D) + a[:, None, :]).reshape(B * k, D)


def nce_mixture(a, T, P, cfg):
    """Mixture objective: s = lsm (B, k, L); q = softmax_k(tau s) held constant; maximise
    sum_k q s + alpha H(softmax_k(tau s)), averaged over images and locations. Returns (loss, reg)."""
    tau, alpha, k = cfg["mix_tau"], cfg["mix_alpha"], cfg["mixtures"]
    s, reg = nce_scores(mixture_components(a, P, cfg), T, k)          # (B, k, L)
    q = torch.softmax(tau * s, dim=1).detach()
    entropy = -(torch.softmax(tau * s, dim=1) * torch.log_softmax(tau * s, dim=1)).sum(1)  # (B, L), not detached
    return -((q * s).sum(1) + alpha * entropy).mean(), reg


def global_task(a1, a2, t1, t2, P, cfg):
    """1->5 or 1->7 in both directions: a_v (B, D) against the other view's map t_w."""
    if cfg["mixtures"] > 1:
        (l12, r12), (l21, r21) = nce_mixture(a1, t2, P, cfg), nce_mixture(a2, t1, P, cfg)
    else:
        (l12, r12), (l21, r21) = nce_plain(a1, t2), nce_plain(a2, t1)
    return 0.5 * (l12 + l21), r12 + r21


def pick_location(m5, idx):
    """m5: (B, D, 5, 5), idx: (B) in [0, 25) -> (B, D): m5[i, :, idx // 5, idx % 5]."""
    idx = idx.long()
    return m5[torch.arange(m5.shape[0]), :, idx // 5, idx % 5]


# ---------------------------------------------------------------- classifiers ------------------------------------

def classifier_loss(z, y):
    """z: (N, K) raw logits, y: (N) with -1 ignored."""
    return Fn.cross_entropy(CLS_CLIP * torch.tanh(z / CLS_CLIP), y, ignore_index=-1) + CLS_PENALTY * (z ** 2).mean()


def classifiers(a1, a2, labels, P, bufs, dropout):
    """Online MLP and linear classifiers on the detached f1 of both views: f (2B, D), labels duplicated (one view:
    a2 is None, f (B, D))."""
    f = torch.cat([a1.detach(), a2.detach()]) if a2 is not None else a1.detach()
    y = (torch.cat([labels, labels]) if a2 is not None else labels).long()
    h = Fn.linear(Fn.dropout(f, dropout, training=True), P["cls_mlp.fc1.weight"])  # (2B, 1024)
    h = torch.relu(batch_norm(h, P, bufs, "cls_mlp.bn"))
    z_mlp = Fn.linear(Fn.dropout(h, dropout, training=True), P["cls_mlp.fc2.weight"], P["cls_mlp.fc2.bias"])
    z_lin = Fn.linear(f, P["cls_lin.weight"], P["cls_lin.bias"])
    return classifier_loss(z_mlp, y) + classifier_loss(z_lin, y)


# ---------------------------------------------------------------- one step ---------------------------------------

def training_step(params, buffers, inputs, cfg, dtype):
    """Losses, gradients of loss.total and BN buffers after the step, computed in dtype from copies."""
    P = {n: t.to(dtype).clone().requires_grad_(True) for n, t in params.items()}
    bufs = {n: t.to(dtype).clone() for n, t in buffers.items()}
    x1, x2 = inputs["input.x1"].to(dtype), inputs["input.x2"].to(dtype)
    if cfg["method"] != "amdim":
        return other_method_step(P, bufs, x1, inputs, cfg)

    a1, m5_1, m7_1 = encode_view(x1, P, bufs, cfg)
    a2, m5_2, m7_2 = encode_view(x2, P, bufs, cfg)
    loss_1t5, reg_1t5 = global_task(a1, a2, m5_1, m5_2, P, cfg)
    loss_1t7, reg_1t7 = global_task(a1, a2, m7_1, m7_2, P, cfg)
    s5_1, s5_2 = pick_location(m5_1, inputs["input.idx1"]), pick_location(m5_2, inputs["input.idx2"])
    (l12, r12), (l21, r21) = nce_plain(s5_1, m5_2), nce_plain(s5_2, m5_1)
    loss_5t5, reg_5t5 = 0.5 * (l12 + l21), r12 + r21
    loss_reg = 0.5 * (reg_1t5 + reg_1t7 + reg_5t5)
    loss_cls = classifiers(a1, a2, inputs["input.labels"], P, bufs, cfg["cls_dropout"])
    total = loss_1t5 + loss_1t7 + loss_5t5 + loss_reg + loss_cls
    total.backward()

    losses = {"loss.1t5": loss_1t5, "loss.1t7": loss_1t7, "loss.5t5": loss_5t5, "loss.reg": loss_reg,
              "loss.cls": loss_cls, "loss.total": total}
    losses = {n: v.detach().reshape(1) for n, v in losses.items()}
    grads = {n: p.grad for n, p in P.items()}
    return losses, grads, bufs


def other_method_step(P, bufs, x1, inputs, cfg):
    """DIM: f1 against the 7x7 map of the same view (one direction); CPC: the patch predictions. Both on x1 only,
    with the online classifiers on that view's detached f1 (CPC: the mean patch vector)."""
    if cfg["method"] == "dim":
        a1, f5, f7 = encoder(x1, P, bufs, cfg)
        m7 = embedding_head(f7, P, bufs, "head7")
        loss_1t7, loss_reg = nce_plain(a1, m7)
        losses = {"loss.1t7": loss_1t7, "loss.reg": loss_reg}
    else:
        z = cpc_encoder(x1, P, bufs, cfg)
        losses = {"loss.cpc": cpc_loss(z, P, cfg)}
        a1 = z.reshape(x1.shape[0], CPC_GRID * CPC_GRID, -1).mean(1)
    losses["loss.cls"] = classifiers(a1, None, inputs["input.labels"], P, bufs, cfg["cls_dropout"])
    total = sum(losses.values())
    total.backward()
    losses["loss.total"] = total
    losses = {n: v.detach().reshape(1) for n, v in losses.items()}
    grads = {n: p.grad if p.grad is not None else torch.zeros_like(p) for n, p in P.items()}
    return losses, grads, bufs


def max_rel_diff(a, b):
    """max |a - b| / max |b| for one tensor (a scale-free measure of float32 noise)."""
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


def write_golden(path, cfg, seed):
    gen = torch.Generator().manual_seed(seed)
    params, buffers = init_parameters(cfg, gen)
    inputs = make_inputs(cfg, gen)
    losses, grads, after = training_step(params, buffers, inputs, cfg, torch.float32)
    losses64, grads64, _ = training_step(params, buffers, inputs, cfg, torch.float64)

    print("%s: F=%d D=%d d=%d C=%d B=%d K=%d mixtures=%d" % (path, cfg["F"], cfg["D"], cfg["d"],
          cfg["in_channels"], cfg["B"], cfg["n_classes"], cfg["mixtures"]))
    for n, v in losses.items():
        print("  %-10s %.6f   (float64: %.6f)" % (n, v.item(), losses64[n].item()))
    # a bias right before a train-mode BN (head*.shortcut.bias) has an exactly zero gradient: the batch mean
    # removes it. float32 leaves rounding noise there, so such gradients must be compared with an absolute tolerance.
    scale = max(g.abs().max().item() for g in grads64.values())
    zero_grads = [n for n, g in grads64.items() if g.abs().max().item() < 1e-12 * scale]
    nonzero = [n for n in grads if n not in zero_grads]
    worst = max(nonzero, key=lambda n: max_rel_diff(grads[n], grads64[n]))
    print("  float32 vs float64 gradients: worst max|diff|/max|grad| = %.2e (%s)"
          % (max_rel_diff(grads[worst], grads64[worst]), worst))
    if zero_grads:
        print("  exactly zero gradients (float32 noise up to %.1e; largest |grad| %.1e): %s"
              % (max(grads[n].abs().max().item() for n in zero_grads), scale, ", ".join(zero_grads)))
    assert all(grads[n].abs().max().item() > 0 for n in nonzero)

    tensors = list(params.items()) + list(buffers.items()) + list(inputs.items()) + list(losses.items())
    tensors += [("grad." + n, g) for n, g in grads.items()]
    tensors += [("after." + n, b) for n, b in after.items()]
    metadata = {k: str(cfg[k]) for k in ("F", "D", "d", "in_channels", "B", "n_classes", "mixtures", "mix_tau",
                                         "mix_alpha", "mix_hidden", "cls_dropout", "method", "cpc_steps")}
    metadata.update(tclip=str(TCLIP), bn_momentum=str(BN_MOMENTUM), seed=str(seed), zero_grads=",".join(zero_grads),
                    generator="tools/amdim_reference.py, torch " + torch.__version__)
    write_safetensors(path, tensors, metadata)
    back, meta_back = read_safetensors(path)
    assert meta_back == metadata and all(torch.equal(back[n], t.detach().float()) for n, t in tensors)
    print("  wrote %d tensors, %.2f MB" % (len(tensors), os.path.getsize(path) / 1e6))


def write_tiny_py(path):
    """A small file for the C reader's interoperability test; the C test knows these values in closed form:
    matrix[i][j] = 0.5 * (3 i + j) - 1, scalar = 3.25 (0-dim), four_d[..., k] = k / 8 - 0.25, and names and
    metadata that need JSON escapes (quote, backslash, newline, non-ASCII written as \\u escapes)."""
    tensors = [
        ("matrix", torch.arange(6, dtype=torch.float32).reshape(2, 3) * 0.5 - 1),
        ("scalar", torch.tensor(3.25)),
        ("four_d", torch.arange(6, dtype=torch.float32).reshape(1, 2, 1, 3) / 8 - 0.25),
        ('odd "name"\\ with\nnewline', torch.tensor([1.5, -2.5])),
        ("caf\u00e9 \U0001F600", torch.tensor([7.0])),
    ]
    metadata = {"format": "tiny_py", "note": 'line1\nline2 "quoted" \\ caf\u00e9'}
    write_safetensors(path, tensors, metadata)
    print("%s: %d tensors, %d bytes" % (path, len(tensors), os.path.getsize(path)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.relpath(os.path.join(os.path.dirname(__file__), "..", "test", "fixtures")))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", choices=("tiny", "mix", "dim", "cpc"), help="write one fixture only")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)  # a fixed summation order, whatever the machine
    torch.use_deterministic_algorithms(True)

    tiny = make_config(F=32, D=256, d=1, in_channels=3, B=4, n_classes=10, mixtures=1, mix_tau=1.0,
                       mix_alpha=0.05, mix_hidden=256)
    mix = make_config(F=8, D=64, d=2, in_channels=1, B=4, n_classes=10, mixtures=3, mix_tau=1.0, mix_alpha=0.05,
                      mix_hidden=64)
    dim = make_config(F=8, D=64, d=2, in_channels=1, B=4, n_classes=10, mixtures=1, mix_tau=1.0, mix_alpha=0.05,
                      mix_hidden=64, method="dim")
    cpc = make_config(F=8, D=32, d=1, in_channels=1, B=3, n_classes=10, mixtures=1, mix_tau=1.0, mix_alpha=0.05,
                      mix_hidden=32, method="cpc", cpc_steps=3)
    for cfg in (tiny, mix, dim, cpc):
        cfg["cls_dropout"] = 0.0
    if not args.only or args.only == "tiny":
        write_golden(os.path.join(args.out, "golden_tiny.safetensors"), tiny, args.seed)
    if not args.only or args.only == "mix":
        write_golden(os.path.join(args.out, "golden_mix.safetensors"), mix, args.seed + 1)
    if not args.only or args.only == "dim":
        write_golden(os.path.join(args.out, "golden_dim.safetensors"), dim, args.seed + 2)
    if not args.only or args.only == "cpc":
        write_golden(os.path.join(args.out, "golden_cpc.safetensors"), cpc, args.seed + 3)
    write_tiny_py(os.path.join(args.out, "tiny_py.safetensors"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
