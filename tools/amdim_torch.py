#!/usr/bin/python3
"""amdim_torch.py - the encoder of one of our checkpoints as a PyTorch module, for PyTorch users of its features.

`AmdimEncoder` is the encoder of spec section 2 (32x32, 64x64 and 128x128 tables) as torch.nn modules whose
parameter and buffer names are exactly the checkpoint's (`enc.2.0.conv1.weight`, `enc.7.running_var`, ...), so
`state_dict()` and the file agree name for name. `load_checkpoint(path)` builds it from the file's metadata, loads
every `enc.*` tensor by name (strict: a missing, unexpected or misshapen name is an error that lists them all) and
returns it in eval mode. In five lines, from the repository root:

    import sys, torch
    sys.path.insert(0, "tools")
    from amdim_torch import load_checkpoint
    encoder = load_checkpoint("runs/fashion-mnist-tiny/checkpoint.safetensors")
    with torch.no_grad(): f1 = encoder(x)      # x (B, C, S, S), normalised as below -> f1 (B, D)

`encoder(x, maps=True)` returns (f1, f5, f7): f1 (B, D) and the sources of the phi heads, f5 (B, c, 5, 5) and
f7 (B, c, 7, 7) with c = 4F (32 px input) or 8F (64, 128 px). The heads (`head5.*`, `head7.*`), the online
classifiers, the mixture net and the Adam moments stay in the file (see `encoder.ignored`).

x must be what our test transform produces (data/augment.c transform_test): pixels / 255, then per channel
(x - mean) / std. Fashion-MNIST: 28x28 reflection-padded to 32x32 (torch ReflectionPad2d(2)), mean 0.2860, std 0.3530;
MNIST: mean 0.1307, std 0.3081; CIFAR: as stored, mean (125.3, 123.0, 113.9) / 255, std (63.0, 62.1, 66.7) / 255;
STL (64 px): Resize(70, bicubic) then CenterCrop(64), mean (0.43, 0.42, 0.39), std (0.27, 0.26, 0.27); 128 px:
CenterCrop(128) of the 146x146 stored image, ImageNet mean and std.

Names (F base width, D embedding width, d units per stage; L the row of the table, u the unit in its stage):

    enc.0.weight, enc.0.bias          stem: conv 3x3 (128 px: 5x5 stride 2 after a reflect pad of 2) with bias, ReLU
    enc.1.weight, enc.1.bias          128 px only: the second stem, conv 3x3 with bias, ReLU
    enc.L.u.conv1.weight              residual unit u of row L: conv k x k stride s (u = 0) or 1x1 (u > 0), no
                                      bias, then ReLU
    enc.L.u.conv2.weight              its conv 1x1, no bias; added to the shortcut avg_pool(k, s) of the unit's
                                      input with zero channels appended (no ReLU after the sum)
    enc.N.weight, .bias,              the last row: BatchNorm(D), eps 1e-5; its output is f1
      .running_mean, .running_var
    head5.*, head7.*                  phi heads on f5 / f7 (conv1, conv2, shortcut, bn): not part of AmdimEncoder
    cls_mlp.*, cls_lin.*              the online MLP and linear classifiers
    mix.*                             the mixture net (--mixtures K > 1)
    adam.m.<name>, adam.v.<name>      Adam's first and second moments of parameter <name>

Run as a script it prints that map for one checkpoint: /usr/bin/python3 tools/amdim_torch.py CHECKPOINT.
Needs only torch and numpy (Debian's python3-torch).
"""
import json
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as Fn

BN_EPS = 1e-5          # PyTorch's BatchNorm default, as the engine (spec section 1)
BN_MOMENTUM = 0.1

# The encoder tables of spec section 2, one row per checkpoint index L. The spec's MBN row (identity, no tensors)
# has no index here, so the final BN is enc.7 at 32 and 64 px and enc.8 at 128 px, as in model/amdim.c.
# (kind, k, stride, pad, width, stage): width = output channels / F (0: D); stage = d units (else one).
TABLES = {
    32: [("stem", 3, 1, 0, 1, False), ("ru", 1, 1, 0, 1, False), ("ru", 4, 2, 0, 2, True),
         ("ru", 2, 2, 0, 4, True), ("ru", 3, 1, 0, 4, True), ("ru", 3, 1, 0, 4, True),
         ("ru", 3, 1, 0, 0, False), ("bn", 0, 0, 0, 0, False)],
    64: [("stem", 3, 1, 0, 1, False), ("ru", 4, 2, 0, 2, True), ("ru", 4, 2, 0, 4, True),
         ("ru", 2, 2, 0, 8, True), ("ru", 3, 1, 0, 8, True), ("ru", 3, 1, 0, 8, True),
         ("ru", 3, 1, 0, 0, False), ("bn", 0, 0, 0, 0, False)],
    128: [("stem", 5, 2, 2, 1, False), ("stem", 3, 1, 0, 1, False), ("ru", 4, 2, 0, 2, True),
          ("ru", 4, 2, 0, 4, True), ("ru", 2, 2, 0, 8, True), ("ru", 3, 1, 0, 8, True),
          ("ru", 3, 1, 0, 8, True), ("ru", 3, 1, 0, 0, False), ("bn", 0, 0, 0, 0, False)],
}
METHODS = {"0": "amdim", "1": "dim", "2": "cpc"}   # the checkpoint's "method" metadata


class Stem(nn.Conv2d):
    """STEM(k, s, p): optional reflect pad of p, conv k x k stride s with bias, ReLU. Names: weight, bias."""

    def __init__(self, k, s, pad, cin, cout):
        super().__init__(cin, cout, k, s, padding=pad, padding_mode="reflect" if pad else "zeros", bias=True)

    def forward(self, x):
        return torch.relu(super().forward(x))


class ResidualUnit(nn.Module):
    """RU(k, s, cin -> cout): conv1x1(relu(conv_kxk,s(x))) + avg_pool(k, s)(x) with zero channels appended."""

    def __init__(self, k, s, cin, cout):
        super().__init__()
        self.k, self.s, self.cin, self.cout = k, s, cin, cout
        self.conv1 = nn.Conv2d(cin, cout, k, s, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 1, bias=False)

    def forward(self, x):
        r = self.conv2(torch.relu(self.conv1(x)))
        sc = x if self.k == 1 and self.s == 1 else Fn.avg_pool2d(x, self.k, self.s)
        return r + Fn.pad(sc, (0, 0, 0, 0, 0, self.cout - self.cin))  # new channels at the end


def batch_norm(channels):
    """nn.BatchNorm2d without its num_batches_tracked buffer, which our checkpoints do not have (with momentum
    set, PyTorch never reads it), so the module's names are exactly weight, bias, running_mean, running_var."""
    bn = nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)
    bn.num_batches_tracked = None
    return bn


class AmdimEncoder(nn.Module):
    """x (B, C, S, S) -> f1 (B, D), or (f1, f5, f7) with maps=True. S is 32, 64 or 128 (the table)."""

    def __init__(self, F, D, d, in_channels, input_size):
        super().__init__()
        if input_size not in TABLES:
            raise ValueError("input size %d has no encoder table (32, 64 or 128)" % input_size)
        self.in_channels, self.input_size, self.D = in_channels, input_size, D
        self.enc = nn.ModuleDict()
        self.tap5 = self.tap7 = None       # (L, u) of the last unit with a 5x5 / 7x7 output (spec section 2)
        size, cin = input_size, in_channels
        for L, (kind, k, s, pad, width, stage) in enumerate(TABLES[input_size]):
            cout = width * F if width else D
            if kind == "bn":
                self.enc[str(L)] = batch_norm(cin)
            elif kind == "stem":
                self.enc[str(L)] = Stem(k, s, pad, cin, cout)
                size = (size + 2 * pad - k) // s + 1
            else:
                units = nn.ModuleDict()
                for u in range(d if stage else 1):
                    units[str(u)] = ResidualUnit(k if u == 0 else 1, s if u == 0 else 1, cout if u else cin, cout)
                    if u == 0:
                        size = (size - k) // s + 1
                    if size == 7:
                        self.tap7 = (str(L), str(u))
                    if size == 5:
                        self.tap5 = (str(L), str(u))
                self.enc[str(L)] = units
            cin = cout
        assert size == 1 and self.tap5 and self.tap7, "table %d does not end at 1x1" % input_size

    def forward(self, x, maps=False):
        if x.dim() != 4 or x.shape[1:] != (self.in_channels, self.input_size, self.input_size):
            raise ValueError("input must be (B, %d, %d, %d), got %s"
                             % (self.in_channels, self.input_size, self.input_size, tuple(x.shape)))
        f5 = f7 = None
        for L, block in self.enc.items():
            if isinstance(block, nn.ModuleDict):
                for u, unit in block.items():
                    x = unit(x)
                    if (L, u) == self.tap5:
                        f5 = x
                    if (L, u) == self.tap7:
                        f7 = x
            else:
                x = block(x)
        f1 = x.flatten(1)
        return (f1, f5, f7) if maps else f1


# ---------------------------------------------------------------- loading ------------------------------------------

def read_safetensors(path, prefix=""):
    """({name: float32 numpy array}, metadata) for the tensors whose names start with prefix (F32 only)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError("%s: not a safetensors file (%d bytes)" % (path, len(raw)))
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError("%s: header of %d bytes past the end of the file" % (path, n))
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {}) or {}
    base, tensors, names = 8 + n, {}, list(header)
    for name in names:
        e = header[name]
        if not name.startswith(prefix):
            continue
        if e["dtype"] != "F32":
            raise ValueError("%s: %s is %s (only F32 is read)" % (path, name, e["dtype"]))
        b, end = e["data_offsets"]
        tensors[name] = np.frombuffer(raw, dtype="<f4", count=(end - b) // 4, offset=base + b).reshape(e["shape"])
    return tensors, metadata, names


def encoder_from_metadata(metadata):
    """An AmdimEncoder with the F, D, d, in_channels and input_size of a checkpoint's metadata (random weights)."""
    method = METHODS.get(metadata.get("method", "0"), metadata.get("method"))
    if method == "cpc":
        raise ValueError("a --method cpc checkpoint encodes 8x8 patches (PATCH8 table); AmdimEncoder has the "
                         "32/64/128 tables only")
    try:
        F, D, d, C, S = (int(metadata[k]) for k in ("F", "D", "d", "in_channels", "input_size"))
    except KeyError as e:
        raise ValueError("metadata without %s: not one of our checkpoints" % e) from None
    return AmdimEncoder(F, D, d, C, S)


def load_tensors(encoder, tensors):
    """Copies tensors[name] into every parameter and buffer of encoder. Every enc.* name of tensors must be in
    the encoder and every encoder name in tensors, with equal shapes; otherwise ValueError lists them all."""
    own = encoder.state_dict()
    missing = [n for n in own if n not in tensors]
    unexpected = [n for n in tensors if n.startswith("enc.") and n not in own]
    misshapen = ["%s %s (encoder %s)" % (n, list(tensors[n].shape), list(own[n].shape))
                 for n in own if n in tensors and tuple(tensors[n].shape) != tuple(own[n].shape)]
    problems = []
    for what, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen)):
        if names:
            problems.append("%s: %s" % (what, ", ".join(names)))
    if problems:
        raise ValueError("checkpoint does not match the encoder: " + "; ".join(problems))
    with torch.no_grad():
        for n, t in own.items():
            t.copy_(torch.from_numpy(np.array(tensors[n], dtype=np.float32)))
    return encoder


def load_checkpoint(path, device="cpu"):
    """The encoder of checkpoint `path` with its weights, in eval mode. encoder.metadata: the file's metadata;
    encoder.ignored: the file's other tensor names (heads, classifiers, Adam moments)."""
    tensors, metadata, names = read_safetensors(path, prefix="enc.")
    if metadata.get("format") not in (None, "amdim-c-checkpoint"):
        raise ValueError("%s: format %r is not amdim-c-checkpoint" % (path, metadata.get("format")))
    try:
        encoder = load_tensors(encoder_from_metadata(metadata), tensors)
    except ValueError as e:
        raise ValueError("%s: %s" % (path, e)) from None
    encoder.metadata = metadata
    encoder.ignored = [n for n in names if not n.startswith("enc.")]
    return encoder.to(device).eval()


# ---------------------------------------------------------------- the name map of one file ---------------------

def describe(name, encoder):
    """What the tensor `name` of one of our checkpoints is, for the encoder built from its metadata (one line)."""
    if name.startswith("adam.m.") or name.startswith("adam.v."):
        return "Adam %s moment of %s" % ("first" if name[5] == "m" else "second", name[7:])
    parts = name.split(".")
    if parts[0] == "enc" and len(parts) > 1 and parts[1] in encoder.enc:
        block = encoder.enc[parts[1]]
        if isinstance(block, Stem):
            pad = ", after a reflect pad of %d" % block.padding[0] if block.padding[0] else ""
            return "stem conv %dx%d stride %d%s, %s (ReLU after)" % (block.kernel_size[0], block.kernel_size[1],
                                                                   block.stride[0], pad, parts[-1])
        if isinstance(block, nn.BatchNorm2d):
            return "final BatchNorm(%d) -> f1: %s" % (block.num_features, parts[-1])
        if len(parts) == 5 and parts[2] in block:
            unit = block[parts[2]]
            if parts[3] == "conv1":
                return "residual unit: conv %dx%d stride %d, %d -> %d channels, no bias (ReLU after)" % (
                    unit.k, unit.k, unit.s, unit.cin, unit.cout)
            shortcut = "identity" if unit.k == 1 and unit.s == 1 else "avg_pool(%d, %d)" % (unit.k, unit.s)
            return "residual unit: conv 1x1, %d -> %d, no bias; + %s shortcut%s" % (
                unit.cout, unit.cout, shortcut, ", zero channels appended" if unit.cout > unit.cin else "")
    if parts[0] in ("head5", "head7"):
        return "phi head on the f%s source (conv1, conv2, shortcut, bn)" % parts[0][4]
    return {"cls_mlp": "online MLP classifier (fc1, bn, fc2)", "cls_lin": "online linear classifier",
            "mix": "mixture net (fc1, fc2)"}.get(parts[0], "not read by AmdimEncoder")


def main(argv):
    if len(argv) != 2 or argv[1].startswith("-"):
        print("usage: amdim_torch.py CHECKPOINT   (loads it; prints every tensor name, its shape and what it is)")
        return 2
    try:
        encoder = load_checkpoint(argv[1])
    except (OSError, ValueError) as e:
        print("amdim_torch: %s" % e, file=sys.stderr)
        return 1
    m, own = encoder.metadata, encoder.state_dict()
    print("%s: preset %s, F=%s D=%s d=%s, %s channel(s), %s px; AmdimEncoder loaded all %d enc.* tensors"
          % (argv[1], m.get("preset"), m["F"], m["D"], m["d"], m["in_channels"], m["input_size"], len(own)))
    for n, t in own.items():
        print("  %-24s %-16s %s" % (n, list(t.shape), describe(n, encoder)))
    groups = {}   # the tensors AmdimEncoder does not read, by their first name part
    for n in encoder.ignored:
        groups.setdefault(n.split(".")[0], []).append(n)
    for g, members in groups.items():
        what = "Adam's first and second moments of every parameter" if g == "adam" else describe(members[0], encoder)
        print("  %-41s %s (not loaded)" % ("%s.* (%d tensors)" % (g, len(members)), what))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
