// softmax.cu - CUDA twins of ops/softmax.c: softmax, log-softmax, cross-entropy and AMDIM's NCE log-softmax.
// A softmax row of (outer, dim, inner) is r = o * inner + i, its elements x[(o * dim + k) * inner + i].
// Row sums run in double (like the CPU) through warp or block trees in a fixed order (deterministic, no atomics);
// every softmax subtracts the row max.
#include <math.h>

#include "../ops/softmax.h"
#include "common.cuh"

// One warp per row, rows spread over the whole grid; `row` is the same in every lane, so the shuffles are safe.
#define FOR_EACH_ROW_BY_WARP(row, rows)                                                                          \
    for (long row = ((long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; row < (rows);                            \
         row += ((long)gridDim.x * blockDim.x) >> 5)

static unsigned int blocks_for_warps(long rows) { return blocks_for(rows * 32); }

// out = softmax(x) (or log-softmax) along dim; the row sum in double like the CPU
template <bool LOG>
static __global__ void softmax_forward_kernel(float *out, const float *x, long outer, long dim, long inner) {
    int lane = threadIdx.x & 31;
    FOR_EACH_ROW_BY_WARP(row, outer * inner) {
        long base = row / inner * dim * inner + row % inner;
        float m = -INFINITY;
        for (long k = lane; k < dim; k += 32) m = fmaxf(m, x[base + k * inner]);
        m = warp_max(m);
        double s = 0;
        for (long k = lane; k < dim; k += 32) s += expf(x[base + k * inner] - m);
        s = warp_sum(s);
        if (LOG) {
            float shift = m + (float)log(s);
            for (long k = lane; k < dim; k += 32) out[base + k * inner] = x[base + k * inner] - shift;
        } else {
            float inv = (float)(1.0 / s);
            for (long k = lane; k < dim; k += 32) out[base + k * inner] = expf(x[base + k * inner] - m) * inv;
        }
    }
}

// softmax:     dx += out * (dout - sum(dout * out))
// log-softmax: dx += dout - exp(out) * sum(dout)
template <bool LOG>
static __global__ void softmax_backward_kernel(float *dx, const float *dout, const float *out, long outer, long dim,
                                               long inner) {
    int lane = threadIdx.x & 31;
    FOR_EACH_ROW_BY_WARP(row, outer * inner) {
        long base = row / inner * dim * inner + row % inner;
        double s = 0;
        for (long k = lane; k < dim; k += 32) {
            long i = base + k * inner;
            s += LOG ? (double)dout[i] : (double)dout[i] * out[i];
        }
        float total = (float)warp_sum(s);
        for (long k = lane; k < dim; k += 32) {
            long i = base + k * inner;
            dx[i] += LOG ? dout[i] - expf(out[i]) * total : out[i] * (dout[i] - total);
        }
    }
}

void softmax_forward_cuda(float *out, const float *x, long outer, long dim, long inner) {
    if (outer * inner <= 0 || dim <= 0) return;
    softmax_forward_kernel<false><<<blocks_for_warps(outer * inner), THREADS>>>(out, x, outer, dim, inner);
    LAUNCH_CHECK();
}

void softmax_backward_cuda(float *dx, const float *dout, const float *out, long outer, long dim, long inner) {
    if (!dx || outer * inner <= 0 || dim <= 0) return;
    softmax_backward_kernel<false><<<blocks_for_warps(outer * inner), THREADS>>>(dx, dout, out, outer, dim, inner);
    LAUNCH_CHECK();
}

void log_softmax_forward_cuda(float *out, const float *x, long outer, long dim, long inner) {
    if (outer * inner <= 0 || dim <= 0) return;
    softmax_forward_kernel<true><<<blocks_for_warps(outer * inner), THREADS>>>(out, x, outer, dim, inner);
    LAUNCH_CHECK();
}

void log_softmax_backward_cuda(float *dx, const float *dout, const float *out, long outer, long dim, long inner) {
    if (!dx || outer * inner <= 0 || dim <= 0) return;
    softmax_backward_kernel<true><<<blocks_for_warps(outer * inner), THREADS>>>(dx, dout, out, outer, dim, inner);
    LAUNCH_CHECK();
}

// ---- cross-entropy with ignored rows (label < 0; labels outside [0, K) are treated the same, never read past) ----
// probs (N, K) = softmax(logits); row_loss[n] = log-sum-exp(row) - logits[n, label] for valid rows (from the
// log-sum-exp, not log(probs), so an underflowing probability still gives a finite loss), 0 for ignored rows
static __global__ void cross_entropy_rows_kernel(float *probs, double *row_loss, const float *logits,
                                                 const int *labels, int N, int K) {
    int lane = threadIdx.x & 31;
    FOR_EACH_ROW_BY_WARP(n, N) {
        const float *x = logits + n * K;
        float m = -INFINITY;
        for (int k = lane; k < K; k += 32) m = fmaxf(m, x[k]);
        m = warp_max(m);
        double s = 0;
        for (int k = lane; k < K; k += 32) s += expf(x[k] - m);
        s = warp_sum(s);
        float inv = (float)(1.0 / s);
        for (int k = lane; k < K; k += 32) probs[n * K + k] = expf(x[k] - m) * inv;
        if (lane == 0) {
            int label = labels[n];
            row_loss[n] = label >= 0 && label < K ? (double)m + log(s) - x[label] : 0.0;
        }
    }
}

// loss[0] = sum(row_loss) / n_valid (0 when n_valid == 0), summed by one block in a fixed order
static __global__ void cross_entropy_mean_kernel(float *loss, const double *row_loss, int N, int n_valid) {
    __shared__ double scratch[32];
    double s = 0;
    for (int n = threadIdx.x; n < N; n += blockDim.x) s += row_loss[n];
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) loss[0] = n_valid > 0 ? (float)(s / n_valid) : 0.0f;
}

void cross_entropy_forward_cuda(float *loss, float *probs, const float *logits, const int *labels, int N, int K,
                                int n_valid) {
    if (N <= 0 || K <= 0) {
        CUDA_CHECK(cudaMemsetAsync(loss, 0, sizeof(float), 0));
        return;
    }
    size_t bytes = (size_t)N * sizeof(double);
    double *row_loss = (double *)scratch_alloc(bytes);
    cross_entropy_rows_kernel<<<blocks_for_warps(N), THREADS>>>(probs, row_loss, logits, labels, N, K);
    LAUNCH_CHECK();
    cross_entropy_mean_kernel<<<1, THREADS>>>(loss, row_loss, N, n_valid);
    LAUNCH_CHECK();
    scratch_free(row_loss, bytes);
}

// dlogits += dloss[0] * (probs - onehot(label)) / n_valid on valid rows; dloss is read on the device
static __global__ void cross_entropy_backward_kernel(float *dlogits, const float *dloss, const float *probs,
                                                     const int *labels, int N, int K, int n_valid) {
    float scale = dloss[0] / (float)n_valid;
    GRID_STRIDE(t, (long)N * K) {
        int label = labels[t / K], k = (int)(t % K);
        if (label < 0 || label >= K) continue;
        dlogits[t] += scale * (probs[t] - (k == label ? 1.0f : 0.0f));
    }
}

void cross_entropy_backward_cuda(float *dlogits, const float *dloss, const float *probs, const int *labels, int N,
                                 int K, int n_valid) {
    if (!dlogits || n_valid <= 0 || (long)N * K <= 0) return;
    cross_entropy_backward_kernel<<<blocks_for((long)N * K), THREADS>>>(dlogits, dloss, probs, labels, N, K, n_valid);
    LAUNCH_CHECK();
}

// ---- the NCE log-softmax of AMDIM (spec 4.3) ----
// x: (B, P, B, L); row (i, p) holds B*L scores, element e = j * L + l. Positives: j == i (L of them); negatives:
// j != i ((B - 1) * L, shared by all positives). out: (B, P, L),
//   out[i, p, l] = pos_l - log(exp(pos_l) + Z),  Z = sum over the negatives of exp(x)
// With m = max of the negatives and lse_neg = m + log(sum exp(neg - m)) = log Z:
//   out = (pos - hi) - log1p(exp(lo - hi)),  hi = max(pos, lse_neg), lo = min(pos, lse_neg): nothing overflows.
// One block per row; B == 1 has no negatives and gives 0.

// max over the negatives of row xr (image i), in every thread of the block
static __device__ float negatives_max(const float *xr, long i, long row_len, int L, float *scratch) {
    float m = -INFINITY;
    for (long e = threadIdx.x; e < row_len; e += blockDim.x)
        if (e / L != i) m = fmaxf(m, xr[e]);
    return block_max(m, scratch);
}

static __global__ void nce_log_softmax_forward_kernel(float *out, const float *x, int B, int P, int L, int Bt,
                                                      int first) {
    __shared__ float scratch_max[32];
    __shared__ double scratch_sum[32];
    long row_len = (long)Bt * L;
    for (long row = blockIdx.x; row < (long)B * P; row += gridDim.x) {  // uniform per block
        long i = first + row / P;   // the source's own image among the targets
        const float *xr = x + row * row_len;
        float *o = out + row * L;
        if (Bt == 1) {
            for (int l = threadIdx.x; l < L; l += blockDim.x) o[l] = 0.0f;
            continue;
        }
        float m = negatives_max(xr, i, row_len, L, scratch_max);
        double z = 0;
        for (long e = threadIdx.x; e < row_len; e += blockDim.x)
            if (e / L != i) z += expf(xr[e] - m);
        z = block_sum(z, scratch_sum);
        float lse_neg = m + (float)log(z);
        for (int l = threadIdx.x; l < L; l += blockDim.x) {
            float pos = xr[i * L + l], hi = fmaxf(pos, lse_neg), lo = fminf(pos, lse_neg);
            o[l] = (pos - hi) - log1pf(expf(lo - hi));
        }
    }
}

void nce_log_softmax_forward_cuda(float *out, const float *x, int B, int P, int L, int Bt, int first) {
    long rows = (long)B * P;
    if (rows <= 0 || L <= 0) return;
    nce_log_softmax_forward_kernel<<<rows < MAX_BLOCKS ? (unsigned int)rows : MAX_BLOCKS, THREADS>>>(out, x, B, P, L,
                                                                                                      Bt, first);
    LAUNCH_CHECK();
}

// From x and out only, with lse_l = pos_l - out_l (the log of positive l's denominator):
//   dpos_l += dout_l * (1 - exp(out_l))              (the row's other positives are masked out of l's softmax)
//   dneg   -= sum_l dout_l * exp(neg - lse_l) = exp(neg - m) * sum_l dout_l * exp(m - lse_l)
// Both exponents of the split are <= 0 (neg <= m <= lse_l), so nothing overflows.
static __global__ void nce_log_softmax_backward_kernel(float *dx, const float *dout, const float *x, const float *out,
                                                       int B, int P, int L, int Bt, int first) {
    __shared__ float scratch_max[32];
    __shared__ double scratch_sum[32];
    long row_len = (long)Bt * L;
    for (long row = blockIdx.x; row < (long)B * P; row += gridDim.x) {  // uniform per block
        long i = first + row / P;
        const float *xr = x + row * row_len, *o = out + row * L, *d = dout + row * L;
        float *dxr = dx + row * row_len;
        float m = negatives_max(xr, i, row_len, L, scratch_max);
        double weight = 0;
        for (int l = threadIdx.x; l < L; l += blockDim.x) {
            float pos = xr[i * L + l];
            weight += (double)d[l] * expf(m - (pos - o[l]));
            dxr[i * L + l] += d[l] * -expm1f(o[l]);
        }
        float w = (float)block_sum(weight, scratch_sum);
        for (long e = threadIdx.x; e < row_len; e += blockDim.x)
            if (e / L != i) dxr[e] -= w * expf(xr[e] - m);
    }
}

void nce_log_softmax_backward_cuda(float *dx, const float *dout, const float *x, const float *out, int B, int P,
                                   int L, int Bt, int first) {
    long rows = (long)B * P;
    if (!dx || rows <= 0 || L <= 0 || Bt == 1) return;  // Bt == 1: out is the constant 0
    nce_log_softmax_backward_kernel<<<rows < MAX_BLOCKS ? (unsigned int)rows : MAX_BLOCKS, THREADS>>>(dx, dout, x, out,
                                                                                                       B, P, L, Bt, first);
    LAUNCH_CHECK();
}
