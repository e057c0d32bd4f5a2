// ops.h - every op of the engine. Include this one header to build models.
#ifndef OPS_H
#define OPS_H

#include "conv.h"
#include "dist.h"
#include "elementwise.h"
#include "linalg.h"
#include "norm.h"
#include "optim.h"
#include "reduce.h"
#include "shape.h"
#include "softmax.h"

#include <stdbool.h>

// Threads for the CPU path: OpenBLAS's own for GEMMs and OpenMP for the loops. n <= 0 keeps the default.
void engine_set_threads(int n);
int engine_threads(void);
// TF32 tensor-core math for the CUDA convolutions (forward and backward GEMMs), as PyTorch's
// torch.backends.cudnn.allow_tf32: ~2^-11 relative rounding of every product's inputs, FP32 accumulation. Off by
// default and in every equivalence test. Never applies to op_matmul (the NCE scores) or op_linear, nor to the CPU.
void engine_set_tf32(bool on);
bool engine_tf32(void);
// One line naming the BLAS, the thread count and the CUDA device (printed by the drivers at start).
void engine_describe(char *buf, int size);
// One warning line in buf (and 1) when the environment forces an OpenBLAS kernel older than this CPU supports.
int engine_blas_warning(char *buf, int size);
// Re-executes the program with OMP_WAIT_POLICY=passive unless the user set a policy (see engine.c for why).
void engine_prefer_passive_wait(char **argv);

#endif
