// ops.h - every op of the engine. Include this one header to build models.
#ifndef OPS_H
#define OPS_H

#include "conv.h"
#include "elementwise.h"
#include "linalg.h"
#include "norm.h"
#include "optim.h"
#include "reduce.h"
#include "shape.h"
#include "softmax.h"

// Threads for the CPU path: OpenBLAS's own for GEMMs and OpenMP for the loops. n <= 0 keeps the default.
void engine_set_threads(int n);
int engine_threads(void);
// One line naming the BLAS, the thread count and whether CUDA is available (printed by the drivers at start).
void engine_describe(char *buf, int size);
// Re-executes the program with OMP_WAIT_POLICY=passive unless the user set a policy (see engine.c for why).
void engine_prefer_passive_wait(char **argv);

#endif
