// tuning.h - knobs of the CUDA kernels, plain C (CUDA builds only). Tests turn them to reach paths that
// production sizes take only on big inputs.
#ifndef CUDA_TUNING_H
#define CUDA_TUNING_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

// Floats of im2col scratch one conv2d call may use (default 1 << 25 = 128 MiB). The batch is processed in
// chunks of as many images as fit, so a smaller limit means more chunks (at least one image per chunk).
void conv_cuda_set_workspace_limit(long floats);
long conv_cuda_workspace_limit(void);

// TF32 tensor-core math for the convolutions' GEMMs (forward and backward); off by default. Set through
// engine_set_tf32 (ops/ops.h), which is what programs call. The NCE score GEMM and op_linear stay FP32.
void conv_cuda_set_tf32(bool on);
bool conv_cuda_tf32(void);

#ifdef __cplusplus
}
#endif

#endif
