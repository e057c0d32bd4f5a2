// norm.h - batch normalisation over (N, C, S): BatchNorm2d with S = H*W, BatchNorm1d with S = 1.
// PyTorch semantics: train mode normalises with the batch mean and the BIASED variance and updates
// running_mean/var with momentum using the UNBIASED variance; eval mode uses the running statistics.
#ifndef NORM_H
#define NORM_H

#include <stdbool.h>

#include "../autograd/autograd.h"
#include "dispatch.h"

#define BN_EPS 1e-5f
#define BN_MOMENTUM 0.1f

KERNELS_BEGIN
// out, x: (N, C, S); mean, invstd: (C) written for backward; gamma, beta, running_*: (C).
// training: batch stats, running stats updated in place. !training: running stats used, nothing updated.
DECLARE_KERNEL(void, batchnorm_forward, (float *out, float *mean, float *invstd, const float *x, const float *gamma,
                                         const float *beta, float *running_mean, float *running_var, int N, int C,
                                         int S, bool training, float momentum, float eps));
// accumulates dx, dgamma, dbeta (each may be NULL); in training mode dx includes the paths through the batch stats
DECLARE_KERNEL(void, batchnorm_backward, (float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
                                          const float *mean, const float *invstd, const float *gamma, int N, int C,
                                          int S, bool training));
// Synchronised BN (data-parallel training) is built from the two kernels above in eval mode plus these two:
// moments: sums[c] = sum (x - shift[c]), sums[C + c] = sum (x - shift[c])^2 over this process's (N, S), in double
DECLARE_KERNEL(void, channel_moments, (float *sums, const float *x, const float *shift, int N, int C, int S));
// dx += gamma * invstd * (dy - sum_dy / M - xhat * sum_dy_xhat / M) with the sums and the count M of all processes;
// sums: (2C) = sum_dy, sum_dy_xhat
DECLARE_KERNEL(void, batchnorm_backward_stats, (float *dx, const float *dout, const float *x, const float *mean,
                                                const float *invstd, const float *gamma, const float *sums, double M,
                                                int N, int C, int S));
KERNELS_END

// x: (N, C) or (N, C, H, W); gamma, beta, running_mean, running_var: (C). Running stats are plain buffers.
// In training with several data-parallel processes (comm/), the statistics are those of the whole batch of all
// processes (synchronised BN: all-reduced sums, forward and backward).
Tensor *op_batchnorm(Tensor *x, Tensor *gamma, Tensor *beta, Tensor *running_mean, Tensor *running_var,
                     bool training);

#endif
