// tuning.h - knobs of the CUDA kernels, plain C (CUDA builds only). Tests turn them to reach paths that
// production sizes take only on big inputs.
#ifndef CUDA_TUNING_H
#define CUDA_TUNING_H

#ifdef __cplusplus
extern "C" {
#endif

// Floats of im2col scratch one conv2d call may use (default 1 << 25 = 128 MiB). The batch is processed in
// chunks of as many images as fit, so a smaller limit means more chunks (at least one image per chunk).
void conv_cuda_set_workspace_limit(long floats);
long conv_cuda_workspace_limit(void);

#ifdef __cplusplus
}
#endif

#endif
