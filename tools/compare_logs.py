#!/usr/bin/env python3
"""compare_logs.py GOT.jsonl WANT.jsonl - two training runs' log.jsonl, step by step: the same run on two devices
(tools/gpu_check.sh: the GPU run against the CPU run) must have the same loss curves within a stated tolerance.

Every logged step of WANT must be in GOT, and every loss term (loss, l1t5, l1t7, l5t5, reg, cls) must satisfy
|got - want| <= atol + rtol * |want|, with a tight tier for the first steps (the same weights, so only float
rounding differs) and a looser one after (rounding differences grow through the Adam updates):

    --first-steps 10 --first-atol 1e-4 --first-rtol 1e-3      steps 1..10
    --atol 0.02 --rtol 0.02                                   every step
    --mean-last 50 --mean-rtol 0.01                           the mean total loss of the last 50 logged steps

Prints one line per term with the worst step and its share of the budget, and exits 1 when anything is outside,
2 on unusable input. --self-test checks that the comparison passes a log against itself and fails it against a
copy with one loss 5% off (so it can fail), then exits.
"""
import argparse
import json
import math
import sys
import tempfile

TERMS = ("loss", "l1t5", "l1t7", "l5t5", "reg", "cls")


def read_log(path):
    """step -> the line's loss terms, for the lines that carry a loss (not the epoch or --minutes lines)"""
    steps = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                raise SystemExit("compare_logs: %s:%d is not JSON" % (path, n))
            if "loss" in rec and "step" in rec:
                steps[int(rec["step"])] = {t: float(rec[t]) for t in TERMS if t in rec}
    return steps


def compare(got, want, a):
    if not want:
        print("compare_logs: the reference log has no loss lines")
        return 2
    missing = sorted(set(want) - set(got))
    if missing:
        print("FAIL steps %s of the reference are missing (%d of %d)" % (missing[:5], len(missing), len(want)))
        return 1
    fails = 0
    print("%d steps compared (%d..%d); steps <= %d: atol %g rtol %g; all: atol %g rtol %g"
          % (len(want), min(want), max(want), a.first_steps, a.first_atol, a.first_rtol, a.atol, a.rtol))
    for term in TERMS:
        worst, worst_step, worst_diff = 0.0, None, 0.0
        for step in sorted(want):
            w, g = want[step].get(term), got[step].get(term)
            if w is None:
                continue
            if g is None or not math.isfinite(g):
                worst, worst_step, worst_diff = math.inf, step, math.inf
                break
            atol, rtol = (a.first_atol, a.first_rtol) if step <= a.first_steps else (a.atol, a.rtol)
            diff = abs(g - w)
            share = diff / (atol + rtol * abs(w))
            if share > worst:
                worst, worst_step, worst_diff = share, step, diff
        if worst_step is None:
            print("    ok   %-5s identical at every step" % term)
            continue
        ok = worst <= 1.0
        fails += not ok
        print("    %s %-5s worst at step %d: |diff| = %.3g (got %.6g, want %.6g), %.1f%% of its budget"
              % ("ok  " if ok else "FAIL", term, worst_step, worst_diff, got[worst_step].get(term, math.nan),
                 want[worst_step][term], 100 * worst))
    last = sorted(want)[-a.mean_last:]
    mean_w = sum(want[s]["loss"] for s in last) / len(last)
    mean_g = sum(got[s]["loss"] for s in last) / len(last)
    rel = abs(mean_g - mean_w) / max(abs(mean_w), 1e-12)
    ok = rel <= a.mean_rtol
    fails += not ok
    print("    %s mean total loss of the last %d steps: %.6g vs %.6g, relative difference %.2e (limit %g)"
          % ("ok  " if ok else "FAIL", len(last), mean_g, mean_w, rel, a.mean_rtol))
    return 1 if fails else 0


def self_test(a):
    want = {s: {"loss": 10 - 0.01 * s, "l1t5": 3.0, "l1t7": 3.0, "l5t5": 3.0, "reg": 0.1, "cls": 1.0 - 0.001 * s}
            for s in range(1, 201)}
    bad = {s: dict(v) for s, v in want.items()}
    bad[100]["loss"] *= 1.05
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for s, v in bad.items():
            f.write(json.dumps(dict(step=s, **v)) + "\n")
        bad_path = f.name
    same = compare(want, want, a) == 0
    caught = compare(read_log(bad_path), want, a) == 1
    print("self-test: a log against itself %s; one loss 5%% off %s"
          % ("passes" if same else "FAILS (wrong)", "fails" if caught else "PASSES (wrong)"))
    return 0 if same and caught else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("got", nargs="?")
    ap.add_argument("want", nargs="?")
    ap.add_argument("--first-steps", type=int, default=10)
    ap.add_argument("--first-atol", type=float, default=1e-4)
    ap.add_argument("--first-rtol", type=float, default=1e-3)
    ap.add_argument("--atol", type=float, default=0.02)
    ap.add_argument("--rtol", type=float, default=0.02)
    ap.add_argument("--mean-last", type=int, default=50)
    ap.add_argument("--mean-rtol", type=float, default=0.01)
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    if a.self_test:
        return self_test(a)
    if not a.got or not a.want:
        ap.error("give GOT.jsonl and WANT.jsonl (or --self-test)")
    return compare(read_log(a.got), read_log(a.want), a)


if __name__ == "__main__":
    sys.exit(main())
