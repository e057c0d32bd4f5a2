// inspect.h - looking at what the tape recorded: the graph of a step as Graphviz DOT, and a per-op profile.
// Neither is needed to train; both read the nodes autograd.c records (op, shapes, scope, FLOPs, bytes, times).
#ifndef INSPECT_H
#define INSPECT_H

#include <stdio.h>

#include "autograd.h"

// The tape as a DOT graph: one box per node (op, output shape, GFLOP, MB moved, forward / backward ms when
// profiled), one ellipse per leaf (parameters by name, inputs by shape), edges from inputs to the op, and one
// cluster per scope (autograd_scope). Render with `dot -Tsvg FILE.dot -o FILE.svg`. Call it after backward()
// and before tape_clear(). Returns -1 when the write fails.
int graph_write_dot(FILE *f, const char *title);

// Per-op totals over profiled steps, as PyTorch's profiler's key_averages() summarises them.
#define PROFILE_MAX_OPS 64
typedef struct {
    char op[32];
    long calls;
    double forward_s, backward_s, flops, bytes;
} ProfileRow;

typedef struct {
    ProfileRow rows[PROFILE_MAX_OPS];
    int n_rows;
    long steps;
    double step_s;          // measured wall time of the profiled steps, all of it
    double optimizer_s;     // of which the optimiser's update (not a tape op)
} Profile;

void profile_add_tape(Profile *p);   // adds every node of the tape (after backward, before tape_clear)
// The table: calls, forward and backward ms per step, GFLOP/s, MB per step, share of the measured step; then the
// sum of the rows beside the measured step time.
void profile_print(const Profile *p, FILE *f);

#endif
