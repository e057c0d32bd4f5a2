#!/usr/bin/python3
"""plot_log.py LOG.jsonl [LOG2.jsonl ...] -o OUT.png [--labels a,b] - the training curves of one or more runs.

One PNG, one panel per quantity against the step: the total loss and each loss term of build/train's log.jsonl
(l1t5, l1t7, l5t5, reg, cls, and any other term a method logs, such as cpc), the learning rate, images/s, and the
online probes' accuracy over each epoch on the augmented training views (linear: solid, MLP: dashed). Several logs
overlay on the same axes, one colour per run, named by --labels or else by their run folder. Null values
(non-finite numbers in the log) are gaps in a curve and counted, in red, in the panel's title. The panels are 3 to
a row, 500 x 360 pixels each (9 panels: 1500 x 1080).

    /usr/bin/python3 tools/plot_log.py runs/fm/log.jsonl -o runs/fm/curves.png
    /usr/bin/python3 tools/plot_log.py runs/a/log.jsonl runs/b/log.jsonl -o ab.png --labels lr1e-3,lr2e-3

A missing or malformed log is one line on stderr and exit status 1. Needs matplotlib (Debian python3-matplotlib);
draws with the Agg backend, so no display is needed.
"""
import argparse
import json
import math
import os
import sys

TERMS = ("loss", "l1t5", "l1t7", "l5t5", "reg", "cls")           # always drawn, in this order
NOT_TERMS = {"step", "epoch", "lr", "img_s", "step_s", "data_wait_s"}  # step-line keys that are not loss terms
TITLES = {"loss": "total loss", "l1t5": "l1t5 (NCE f1 -> 5x5)", "l1t7": "l1t7 (NCE f1 -> 7x7)",
          "l5t5": "l5t5 (NCE 5x5 -> 5x5)", "reg": "reg (score penalty)", "cls": "cls (online classifiers)",
          "cpc": "cpc (InfoNCE rows below)", "lr": "learning rate", "img_s": "images / s"}
PANEL_W, PANEL_H, DPI, COLUMNS = 5.0, 3.6, 100, 3


class LogError(Exception):
    pass


def number(v, where, key):
    """A log value as a float: null -> nan (the engine writes non-finite numbers as null)."""
    if v is None:
        return math.nan
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise LogError("%s: %s is %r, not a number" % (where, key, v))
    return float(v)


def read_log(path):
    """{'steps': {key: [(step, value)]}, 'epochs': [(step, linear, mlp)], 'minutes': line or None}"""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise LogError("%s: not a text file (%s)" % (path, e))
    except OSError as e:
        raise LogError("%s: %s" % (path, e.strerror or e))
    steps, epochs, minutes = {}, [], None
    for n, line in enumerate(lines, 1):
        where = "%s:%d" % (path, n)
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise LogError("%s: not JSON (%s)" % (where, e))
        if not isinstance(rec, dict):
            raise LogError("%s: not a JSON object" % where)
        if "epoch_end" in rec:
            if "step" not in rec:
                raise LogError("%s: an epoch_end line without step" % where)
            keys = ("step", "online_linear_acc", "online_mlp_acc")
            epochs.append(tuple(number(rec.get(k), where, k) for k in keys))
        elif "minutes" in rec:
            minutes = rec
        elif "step" in rec and "loss" in rec:
            step = number(rec["step"], where, "step")
            for k, v in rec.items():
                if k not in ("step", "epoch"):
                    steps.setdefault(k, []).append((step, number(v, where, k)))
        # other lines (a future kind) are left out
    if not steps and not epochs:
        raise LogError("%s: no step or epoch_end lines (is it the log.jsonl of build/train?)" % path)
    for k in steps:
        steps[k].sort()
    epochs.sort()
    return {"steps": steps, "epochs": epochs, "minutes": minutes}


def default_labels(paths):
    """The run folder of each log (runs/fm/log.jsonl -> fm), or the path where folders repeat."""
    names = [os.path.basename(os.path.dirname(os.path.abspath(p))) or p for p in paths]
    return names if len(set(names)) == len(names) else list(paths)


def plot(logs, labels, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    extra = sorted({k for log in logs for k in log["steps"]} - NOT_TERMS - set(TERMS))
    panels = list(TERMS) + extra + ["lr", "img_s", "probes"]
    rows = (len(panels) + COLUMNS - 1) // COLUMNS
    fig, axes = plt.subplots(rows, COLUMNS, figsize=(PANEL_W * COLUMNS, PANEL_H * rows), dpi=DPI, squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    steps = [s for log in logs for series in log["steps"].values() for s, _ in series]
    steps += [e[0] for log in logs for e in log["epochs"]]
    last = max((s for s in steps if not math.isnan(s)), default=1.0)
    for ax, key in zip(axes.flat, panels):
        ax.set_xlabel("step")
        ax.set_xlim(0, last * 1.03 + 0.5)   # every panel on the same step axis
        ax.grid(alpha=0.3)
        if key == "probes":
            drawn = 0
            for i, (log, label) in enumerate(zip(logs, labels)):
                if not log["epochs"]:
                    continue
                s, lin, mlp = zip(*log["epochs"])
                c = colours[i % len(colours)]
                run = "" if len(logs) == 1 else label + " "
                ax.plot(s, lin, "-o", color=c, ms=4, label=run + "linear")
                ax.plot(s, mlp, "--s", color=c, ms=4, label=run + "MLP")
                drawn += 1
            ax.set_title("online probes, accuracy over the epoch (%)")
            if drawn:
                ax.legend(fontsize="small")
            else:
                ax.text(0.5, 0.5, "no epoch_end lines", ha="center", va="center", transform=ax.transAxes)
            continue
        nulls, drawn = 0, 0
        for i, (log, label) in enumerate(zip(logs, labels)):
            series = log["steps"].get(key)
            if not series:
                continue
            s, v = zip(*series)
            nulls += sum(math.isnan(x) for x in v)
            ax.plot(s, v, "-", marker="o" if len(s) < 30 else None, ms=3, color=colours[i % len(colours)],
                    label=label)
            drawn += 1
        title = TITLES.get(key, key)
        ax.set_title(title + (" (%d null)" % nulls if nulls else ""), color="red" if nulls else "black")
        if not drawn:
            ax.text(0.5, 0.5, "not in %s" % ("this log" if len(logs) == 1 else "these logs"), ha="center",
                    va="center", transform=ax.transAxes)
        if key == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        if key == "loss" and drawn:
            ax.legend(fontsize="small")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("logs", nargs="+", metavar="LOG.jsonl")
    ap.add_argument("-o", "--out", required=True, metavar="OUT.png")
    ap.add_argument("--labels", help="comma-separated names of the runs, one per log (default: their folders)")
    a = ap.parse_args(argv)
    labels = a.labels.split(",") if a.labels else default_labels(a.logs)
    if len(labels) != len(a.logs):
        print("plot_log: --labels gives %d names for %d logs" % (len(labels), len(a.logs)), file=sys.stderr)
        return 1
    try:
        logs = [read_log(p) for p in a.logs]
    except LogError as e:
        print("plot_log: %s" % e, file=sys.stderr)
        return 1
    for i, log in enumerate(logs):
        m = log["minutes"]
        if m and isinstance(m.get("fixed_total_steps"), int):
            labels[i] += " (--minutes %g: %d steps)" % (m["minutes"] or 0, m["fixed_total_steps"])
    try:
        plot(logs, labels, a.out)
    except OSError as e:
        print("plot_log: %s: %s" % (a.out, e.strerror or e), file=sys.stderr)
        return 1
    n = sum(len(log["steps"].get("loss", [])) for log in logs)
    print("plot_log: %s (%d log%s, %d step lines)" % (a.out, len(logs), "s" * (len(logs) > 1), n))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
