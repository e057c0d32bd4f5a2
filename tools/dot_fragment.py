#!/usr/bin/python3
"""dot_fragment.py STEP.dot CLUSTER [CLUSTER ...] -o OUT.dot - cuts the graph that train --dump-graph writes down to
some of its clusters (model parts such as enc.2.0 or nce.1t7) and the edges between them, for a picture small enough
to read: dot -Tpng OUT.dot -o OUT.png"""
import argparse
import re
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dot")
    ap.add_argument("clusters", nargs="+")
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args()
    try:
        lines = open(args.dot).read().split("\n")
    except OSError as e:
        sys.exit("dot_fragment.py: %s: %s" % (args.dot, e.strerror))
    body, keep, cur = [], set(), None
    for line in lines:
        if line.startswith("  subgraph cluster_"):
            cur = [line]
        elif cur is not None:
            cur.append(line)
            if line.strip() == "}":
                label = re.search(r'label="([^"]*)"', cur[1])
                if label and label.group(1) in args.clusters:
                    body += cur
                    keep.update(m.group(1) for m in (re.match(r"\s+(n\d+|t0x[0-9a-f]+) \[", x) for x in cur) if m)
                cur = None
    if not body:
        sys.exit("dot_fragment.py: %s: no cluster named %s" % (args.dot, ", ".join(args.clusters)))
    edges = [l for l in lines if " -> " in l and all(x.strip(" ;") in keep for x in l.split(" -> "))]
    title = '  label="a fragment of one step: %s"; labelloc=t; rankdir=TB;' % ", ".join(args.clusters)
    style = [l for l in lines[:6] if l.lstrip().startswith(("node [", "edge ["))]
    with open(args.out, "w") as f:
        f.write("\n".join(["digraph fragment {", title] + style + body + edges + ["}", ""]))


if __name__ == "__main__":
    main()
