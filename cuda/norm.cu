// norm.cu - CUDA twins of ops/norm.c: batch normalisation over (N, C, S), one block per channel.
// Statistics are block reductions in double over a fixed thread assignment (deterministic, no atomics).
// PyTorch semantics: biased variance to normalise, unbiased variance for the running estimate.
#include "../ops/norm.h"
#include "common.cuh"

// element k of channel c, k in [0, N*S): x[n, c, s] with n = k / S, s = k % S
static __device__ __forceinline__ long channel_index(long k, int c, int C, int S) {
    return (k / S * C + c) * S + k % S;
}

// out, x: (N, C, S); mean, invstd: (C) written for backward; gamma, beta: (C) or NULL (1 and 0);
// running_mean, running_var: (C), updated in training (when given), read in eval
static __global__ void batchnorm_forward_kernel(float *out, float *mean, float *invstd, const float *x,
                                                const float *gamma, const float *beta, float *running_mean,
                                                float *running_var, int N, int C, int S, bool training,
                                                float momentum, float eps) {
    __shared__ double scratch[32];
    long count = (long)N * S;
    for (int c = blockIdx.x; c < C; c += gridDim.x) {  // uniform per block
        double mu, var;
        if (training) {
            double s = 0;
            for (long k = threadIdx.x; k < count; k += blockDim.x) s += x[channel_index(k, c, C, S)];
            mu = block_sum(s, scratch) / (double)count;
            double sq = 0;  // second pass around the mean: no cancellation of E[x^2] - E[x]^2
            for (long k = threadIdx.x; k < count; k += blockDim.x) {
                double d = x[channel_index(k, c, C, S)] - mu;
                sq += d * d;
            }
            var = block_sum(sq, scratch) / (double)count;  // biased: what the batch is normalised with
            if (threadIdx.x == 0 && running_mean && running_var) {
                double unbiased = count > 1 ? var * (double)count / (double)(count - 1) : var;
                running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mu);
                running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
            }
        } else {
            mu = running_mean[c];
            var = running_var[c];
        }
        double inv = 1.0 / sqrt(var + (double)eps);
        if (threadIdx.x == 0) {
            mean[c] = (float)mu;
            invstd[c] = (float)inv;
        }
        // (x - mean) first: folding the mean into the shift would cancel badly when |mean| >> std
        float m = (float)mu, scale = (float)((gamma ? gamma[c] : 1.0f) * inv), b = beta ? beta[c] : 0.0f;
        for (long k = threadIdx.x; k < count; k += blockDim.x) {
            long i = channel_index(k, c, C, S);
            out[i] = (x[i] - m) * scale + b;
        }
    }
}

void batchnorm_forward_cuda(float *out, float *mean, float *invstd, const float *x, const float *gamma,
                            const float *beta, float *running_mean, float *running_var, int N, int C, int S,
                            bool training, float momentum, float eps) {
    if (C <= 0 || (long)N * S <= 0) return;
    batchnorm_forward_kernel<<<C < MAX_BLOCKS ? C : MAX_BLOCKS, THREADS>>>(
        out, mean, invstd, x, gamma, beta, running_mean, running_var, N, C, S, training, momentum, eps);
    LAUNCH_CHECK();
}

// With xhat = (x - mean) * invstd, M = N*S:
//   dbeta += sum dout, dgamma += sum dout * xhat,
//   training: dx += gamma * invstd * (dout - sum(dout) / M - xhat * sum(dout * xhat) / M)
//   eval:     dx += gamma * invstd * dout   (the statistics are constants)
static __global__ void batchnorm_backward_kernel(float *dx, float *dgamma, float *dbeta, const float *dout,
                                                 const float *x, const float *mean, const float *invstd,
                                                 const float *gamma, int N, int C, int S, bool training) {
    __shared__ double scratch[32];
    long count = (long)N * S;
    for (int c = blockIdx.x; c < C; c += gridDim.x) {  // uniform per block
        float m = mean[c], inv = invstd[c], g = gamma ? gamma[c] : 1.0f;
        double s_dy = 0, s_dy_xhat = 0;
        for (long k = threadIdx.x; k < count; k += blockDim.x) {
            long i = channel_index(k, c, C, S);
            s_dy += dout[i];
            s_dy_xhat += (double)dout[i] * ((x[i] - m) * inv);
        }
        s_dy = block_sum(s_dy, scratch);
        s_dy_xhat = block_sum(s_dy_xhat, scratch);
        if (threadIdx.x == 0) {
            if (dbeta) dbeta[c] += (float)s_dy;
            if (dgamma) dgamma[c] += (float)s_dy_xhat;
        }
        if (!dx) continue;
        float mean_dy = training ? (float)(s_dy / (double)count) : 0.0f;
        float mean_dy_xhat = training ? (float)(s_dy_xhat / (double)count) : 0.0f;
        float scale = g * inv;
        for (long k = threadIdx.x; k < count; k += blockDim.x) {
            long i = channel_index(k, c, C, S);
            float xhat = (x[i] - m) * inv;
            dx[i] += scale * (dout[i] - mean_dy - xhat * mean_dy_xhat);
        }
    }
}

void batchnorm_backward_cuda(float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
                             const float *mean, const float *invstd, const float *gamma, int N, int C, int S,
                             bool training) {
    if ((!dx && !dgamma && !dbeta) || C <= 0 || (long)N * S <= 0) return;
    batchnorm_backward_kernel<<<C < MAX_BLOCKS ? C : MAX_BLOCKS, THREADS>>>(dx, dgamma, dbeta, dout, x, mean, invstd,
                                                                           gamma, N, C, S, training);
    LAUNCH_CHECK();
}

// Synchronised BN's pieces (ops/norm.c builds the rest from the kernels above in eval mode).
// sums[c] = sum (x - shift[c]), sums[C + c] = sum (x - shift[c])^2; one block per channel, double sums
static __global__ void channel_moments_kernel(float *sums, const float *x, const float *shift, int N, int C, int S) {
    __shared__ double scratch[32];
    long count = (long)N * S;
    for (int c = blockIdx.x; c < C; c += gridDim.x) {  // uniform per block
        double sh = shift ? shift[c] : 0, s1 = 0, s2 = 0;
        for (long k = threadIdx.x; k < count; k += blockDim.x) {
            double d = x[channel_index(k, c, C, S)] - sh;
            s1 += d;
            s2 += d * d;
        }
        s1 = block_sum(s1, scratch);
        s2 = block_sum(s2, scratch);
        if (threadIdx.x == 0) {
            sums[c] = (float)s1;
            sums[C + c] = (float)s2;
        }
    }
}

void channel_moments_cuda(float *sums, const float *x, const float *shift, int N, int C, int S) {
    if (C <= 0) return;
    channel_moments_kernel<<<C < MAX_BLOCKS ? C : MAX_BLOCKS, THREADS>>>(sums, x, shift, N, C, S);
    LAUNCH_CHECK();
}

// dx += gamma * invstd * (dy - sum_dy / M - xhat * sum_dy_xhat / M), one thread per element
static __global__ void batchnorm_backward_stats_kernel(float *dx, const float *dout, const float *x,
                                                       const float *mean, const float *invstd, const float *gamma,
                                                       const float *sums, double M, int N, int C, int S) {
    GRID_STRIDE(t, (long)N * C * S) {
        int c = (int)(t / S % C);
        float inv = invstd[c], mean_dy = (float)(sums[c] / M), mean_dy_xhat = (float)(sums[C + c] / M);
        dx[t] += gamma[c] * inv * (dout[t] - mean_dy - (x[t] - mean[c]) * inv * mean_dy_xhat);
    }
}

void batchnorm_backward_stats_cuda(float *dx, const float *dout, const float *x, const float *mean,
                                   const float *invstd, const float *gamma, const float *sums, double M, int N, int C,
                                   int S) {
    long n = (long)N * C * S;
    if (!dx || n <= 0) return;
    batchnorm_backward_stats_kernel<<<blocks_for(n), THREADS>>>(dx, dout, x, mean, invstd, gamma, sums, M, N, C, S);
    LAUNCH_CHECK();
}
