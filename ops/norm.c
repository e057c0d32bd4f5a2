// norm.c - batch normalisation over (N, C, S): CPU kernels, then the autograd op.
// Legend: N batch, C channels, S positions per channel (H*W, or 1 for BatchNorm1d), M = N*S values per channel.
// Channel statistics are summed in double, over n then s, one thread per channel: the same order on every run.
// Each sum runs in LANES interleaved partial sums (vecmath.h: element s of a plane goes to lane s % LANES; the lanes
// are added in order at the end). The split is fixed, so every run still sums alike.
#include "norm.h"

#include <math.h>
#include <stdlib.h>

#include "../comm/comm.h"
#include "../tensor/device.h"
#include "elementwise.h"
#include "vecmath.h"

// acc[s % LANES] += (v[s] - shift)^2
static void lanes_add_squares(double *restrict acc, const float *restrict v, double shift, int S) {
    int s = 0;
    for (; s + LANES <= S; s += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += (v[s + l] - shift) * (v[s + l] - shift);
    for (; s < S; s++) acc[s % LANES] += (v[s] - shift) * (v[s] - shift);
}

// dy: acc_dy[s % LANES] += dy[s], acc_dyx[s % LANES] += dy[s] * xhat[s] with xhat = (x - mu) * inv in float
static void lanes_add_dy(double *restrict acc_dy, double *restrict acc_dyx, const float *restrict dy,
                         const float *restrict x, float mu, float inv, int S) {
    int s = 0;
    for (; s + LANES <= S; s += LANES)
        for (int l = 0; l < LANES; l++) {
            acc_dy[l] += dy[s + l];
            acc_dyx[l] += (double)dy[s + l] * ((x[s + l] - mu) * inv);
        }
    for (; s < S; s++) {
        acc_dy[s % LANES] += dy[s];
        acc_dyx[s % LANES] += (double)dy[s] * ((x[s] - mu) * inv);
    }
}

// BatchNorm1d layout (S = 1): x is N rows of C values, and a loop over one channel would stride C floats, a new
// cache line per value. Here a thread takes a block of ROW_BLOCK channels and walks the rows, adding each row's
// segment into per-channel accumulators (one vector op across channels). Each channel still sums over n in order
// into one double, as the per-channel loop does at S = 1 (all in its first lane), so both give the same bits.
#define ROW_BLOCK 64

static void batchnorm_rows_forward(float *out, float *mean, float *invstd, const float *x, const float *gamma,
                                   const float *beta, float *running_mean, float *running_var, int N, int C,
                                   bool training, float momentum, float eps) {
    #pragma omp parallel for if ((long)N * C > PARALLEL_MIN_WORK)
    for (int c0 = 0; c0 < C; c0 += ROW_BLOCK) {
        int nc = C - c0 < ROW_BLOCK ? C - c0 : ROW_BLOCK;
        double mu[ROW_BLOCK], var[ROW_BLOCK];
        float mu_f[ROW_BLOCK], scale[ROW_BLOCK];
        if (training) {
            double sum[ROW_BLOCK] = {0}, sq[ROW_BLOCK] = {0};
            for (int n = 0; n < N; n++) {
                const float *xr = x + (long)n * C + c0;
                for (int c = 0; c < nc; c++) sum[c] += xr[c];
            }
            for (int c = 0; c < nc; c++) mu[c] = sum[c] / N;
            for (int n = 0; n < N; n++) {   // second pass, around the mean, as below
                const float *xr = x + (long)n * C + c0;
                for (int c = 0; c < nc; c++) sq[c] += (xr[c] - mu[c]) * (xr[c] - mu[c]);
            }
            for (int c = 0; c < nc; c++) {
                var[c] = sq[c] / N;
                running_mean[c0 + c] = (float)((1.0 - momentum) * running_mean[c0 + c] + momentum * mu[c]);
                running_var[c0 + c] = (float)((1.0 - momentum) * running_var[c0 + c] + momentum * var[c] * N / (N - 1));
            }
        } else {
            for (int c = 0; c < nc; c++) { mu[c] = running_mean[c0 + c]; var[c] = running_var[c0 + c]; }
        }
        for (int c = 0; c < nc; c++) {
            double inv = 1.0 / sqrt(var[c] + eps);
            mean[c0 + c] = mu_f[c] = (float)mu[c];
            invstd[c0 + c] = (float)inv;
            scale[c] = (float)(gamma[c0 + c] * inv);
        }
        for (int n = 0; n < N; n++) {
            const float *xr = x + (long)n * C + c0;
            float *o = out + (long)n * C + c0;
            for (int c = 0; c < nc; c++) o[c] = (xr[c] - mu_f[c]) * scale[c] + beta[c0 + c];
        }
    }
}

// the backward of the rows layout, in the per-channel loop's order and formulas (batchnorm_backward_cpu)
static void batchnorm_rows_backward(float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
                                    const float *mean, const float *invstd, const float *gamma, int N, int C,
                                    bool training) {
    #pragma omp parallel for if ((long)N * C > PARALLEL_MIN_WORK)
    for (int c0 = 0; c0 < C; c0 += ROW_BLOCK) {
        int nc = C - c0 < ROW_BLOCK ? C - c0 : ROW_BLOCK;
        const float *mu = mean + c0, *inv = invstd + c0;
        double acc_dy[ROW_BLOCK] = {0}, acc_dy_xhat[ROW_BLOCK] = {0};
        for (int n = 0; n < N; n++) {
            const float *dr = dout + (long)n * C + c0, *xr = x + (long)n * C + c0;
            for (int c = 0; c < nc; c++) {
                acc_dy[c] += dr[c];
                acc_dy_xhat[c] += (double)dr[c] * ((xr[c] - mu[c]) * inv[c]);
            }
        }
        float scale[ROW_BLOCK], mean_dy[ROW_BLOCK], mean_dy_xhat[ROW_BLOCK];
        for (int c = 0; c < nc; c++) {
            if (dbeta) dbeta[c0 + c] += (float)acc_dy[c];
            if (dgamma) dgamma[c0 + c] += (float)acc_dy_xhat[c];
            scale[c] = gamma[c0 + c] * inv[c];
            mean_dy[c] = training ? (float)(acc_dy[c] / N) : 0.0f;
            mean_dy_xhat[c] = training ? (float)(acc_dy_xhat[c] / N) : 0.0f;
        }
        if (!dx) continue;
        for (int n = 0; n < N; n++) {
            const float *dr = dout + (long)n * C + c0, *xr = x + (long)n * C + c0;
            float *dxr = dx + (long)n * C + c0;
            for (int c = 0; c < nc; c++)
                dxr[c] += scale[c] * (dr[c] - mean_dy[c] - (xr[c] - mu[c]) * inv[c] * mean_dy_xhat[c]);
        }
    }
}

// out, x: (N, C, S); mean, invstd, gamma, beta, running_mean, running_var: (C)
void batchnorm_forward_cpu(float *out, float *mean, float *invstd, const float *x, const float *gamma,
                           const float *beta, float *running_mean, float *running_var, int N, int C, int S,
                           bool training, float momentum, float eps) {
    if (S == 1) {
        batchnorm_rows_forward(out, mean, invstd, x, gamma, beta, running_mean, running_var, N, C, training, momentum,
                               eps);
        return;
    }
    long M = (long)N * S;
    #pragma omp parallel for if (M * C > PARALLEL_MIN_WORK)
    for (int c = 0; c < C; c++) {
        double mu, var;
        if (training) {
            double sum[LANES] = {0}, sq[LANES] = {0};
            for (int n = 0; n < N; n++) lanes_add(sum, x + ((long)n * C + c) * S, S);
            mu = lanes_total(sum) / (double)M;
            // second pass: no cancellation of E[x^2] - E[x]^2
            for (int n = 0; n < N; n++) lanes_add_squares(sq, x + ((long)n * C + c) * S, mu, S);
            var = lanes_total(sq) / (double)M;  // biased: what the batch is normalised with
            running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mu);
            running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * var * M / (M - 1));  // unbiased
        } else {
            mu = running_mean[c];
            var = running_var[c];
        }
        double inv = 1.0 / sqrt(var + eps);
        mean[c] = (float)mu;
        invstd[c] = (float)inv;
        // (x - mean) first: folding the mean into one shift would cancel badly when |mean| >> std
        float mu_f = (float)mu, scale = (float)(gamma[c] * inv), b = beta[c];
        for (int n = 0; n < N; n++) {
            const float *xc = x + ((long)n * C + c) * S;
            float *oc = out + ((long)n * C + c) * S;
            for (int s = 0; s < S; s++) oc[s] = (xc[s] - mu_f) * scale + b;
        }
    }
}

// With xhat = (x - mean) * invstd and y = gamma * xhat + beta:
//   dbeta += sum dy,  dgamma += sum dy * xhat,
//   train: dx += gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat))   (the batch stats depend on x)
//   eval:  dx += gamma * invstd * dy
void batchnorm_backward_cpu(float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
                            const float *mean, const float *invstd, const float *gamma, int N, int C, int S,
                            bool training) {
    if (S == 1) {
        batchnorm_rows_backward(dx, dgamma, dbeta, dout, x, mean, invstd, gamma, N, C, training);
        return;
    }
    long M = (long)N * S;
    #pragma omp parallel for if (M * C > PARALLEL_MIN_WORK)
    for (int c = 0; c < C; c++) {
        float mu = mean[c], inv = invstd[c];
        double acc_dy[LANES] = {0}, acc_dy_xhat[LANES] = {0};
        for (int n = 0; n < N; n++) {
            long at = ((long)n * C + c) * S;
            lanes_add_dy(acc_dy, acc_dy_xhat, dout + at, x + at, mu, inv, S);
        }
        double sum_dy = lanes_total(acc_dy), sum_dy_xhat = lanes_total(acc_dy_xhat);
        if (dbeta) dbeta[c] += (float)sum_dy;
        if (dgamma) dgamma[c] += (float)sum_dy_xhat;
        if (!dx) continue;
        float scale = gamma[c] * inv;
        float mean_dy = training ? (float)(sum_dy / M) : 0.0f;
        float mean_dy_xhat = training ? (float)(sum_dy_xhat / M) : 0.0f;
        for (int n = 0; n < N; n++) {
            const float *dc = dout + ((long)n * C + c) * S, *xc = x + ((long)n * C + c) * S;
            float *dxc = dx + ((long)n * C + c) * S;
            for (int s = 0; s < S; s++) dxc[s] += scale * (dc[s] - mean_dy - (xc[s] - mu) * inv * mean_dy_xhat);
        }
    }
}

// out: sums (2C) in double, then rounded; x: (N, C, S)
void channel_moments_cpu(float *sums, const float *x, const float *shift, int N, int C, int S) {
    #pragma omp parallel for if ((long)N * C * S > PARALLEL_MIN_WORK)
    for (int c = 0; c < C; c++) {
        double s1 = 0, s2 = 0, sh = shift ? shift[c] : 0;
        for (int n = 0; n < N; n++) {
            const float *xc = x + ((long)n * C + c) * S;
            for (int s = 0; s < S; s++) { double d = xc[s] - sh; s1 += d; s2 += d * d; }
        }
        sums[c] = (float)s1;
        sums[C + c] = (float)s2;
    }
}

void batchnorm_backward_stats_cpu(float *dx, const float *dout, const float *x, const float *mean,
                                  const float *invstd, const float *gamma, const float *sums, double M, int N, int C,
                                  int S) {
    #pragma omp parallel for if ((long)N * C * S > PARALLEL_MIN_WORK)
    for (int c = 0; c < C; c++) {
        float scale = gamma[c] * invstd[c], mu = mean[c], inv = invstd[c];
        float mean_dy = (float)(sums[c] / M), mean_dy_xhat = (float)(sums[C + c] / M);
        for (int n = 0; n < N; n++) {
            const float *dc = dout + ((long)n * C + c) * S, *xc = x + ((long)n * C + c) * S;
            float *dxc = dx + ((long)n * C + c) * S;
            for (int s = 0; s < S; s++) dxc[s] += scale * (dc[s] - mean_dy - (xc[s] - mu) * inv * mean_dy_xhat);
        }
    }
}

// in: x, gamma, beta; saved: mean, invstd (C)
typedef struct { int N, C, S; bool training, synced; double M; } BatchnormArgs;

// synchronised BN's backward: this process's sums of dy and dy * xhat (as eval-mode BN's dgamma, dbeta), the sums
// of all processes, then the path through the statistics with the whole batch's count
static void batchnorm_synced_backward(Node *n, const BatchnormArgs *a) {
    Tensor *x = n->in[0], *gamma = n->in[1];
    Device dev = x->device;
    int C = a->C;
    Tensor *sums = tape_tensor(dev, SHAPE(2 * C));   // sum_dy, sum_dy_xhat
    dev_zero(dev, sums->data, (size_t)2 * C * sizeof(float));
    float *dx = input_grad(n, 0);
    KERNEL(dev, batchnorm_backward)(NULL, sums->data + C, sums->data, n->out->grad, x->data, n->saved[0]->data,
                                    n->saved[1]->data, gamma->data, a->N, C, a->S, false);
    float *dgamma = input_grad(n, 1), *dbeta = input_grad(n, 2);   // the parameters take this process's sums
    if (dgamma) KERNEL(dev, axpy)(dgamma, sums->data + C, 1.0f, C);
    if (dbeta) KERNEL(dev, axpy)(dbeta, sums->data, 1.0f, C);
    if (!dx) return;
    comm_allreduce_sum(sums->data, 2 * C, dev);
    KERNEL(dev, batchnorm_backward_stats)(dx, n->out->grad, x->data, n->saved[0]->data, n->saved[1]->data,
                                          gamma->data, sums->data, a->M, a->N, C, a->S);
}

static void batchnorm_backward_node(Node *n) {
    const BatchnormArgs *a = n->args;
    if (a->synced) { batchnorm_synced_backward(n, a); return; }
    Tensor *x = n->in[0], *gamma = n->in[1];
    KERNEL(x->device, batchnorm_backward)(input_grad(n, 0), input_grad(n, 1), input_grad(n, 2), n->out->grad,
                                          x->data, n->saved[0]->data, n->saved[1]->data, gamma->data, a->N, a->C,
                                          a->S, a->training);
}

// Synchronised BN's forward: the whole batch's mean and biased variance from all-reduced sums (two passes, as one
// process does), then eval-mode normalisation with them; the running statistics move as one process's would.
static void batchnorm_synced_forward(Tensor *out, Tensor *mean, Tensor *invstd, Tensor *x, Tensor *gamma,
                                     Tensor *beta, Tensor *running_mean, Tensor *running_var, int N, int C, int S,
                                     double M) {
    Device dev = x->device;
    float *host = xmalloc((size_t)6 * C * sizeof(float));   // sums (2C), mean (C), var (C), running (2C)
    float *sums = host, *mu = host + 2 * C, *var = host + 3 * C, *rm = host + 4 * C, *rv = host + 5 * C;
    Tensor *dsums = tape_tensor(dev, SHAPE(2 * C)), *stat_mean = tape_tensor(dev, SHAPE(C)), *stat_var = tape_tensor(dev, SHAPE(C));
    KERNEL(dev, channel_moments)(dsums->data, x->data, NULL, N, C, S);
    dev_copy(sums, DEV_CPU, dsums->data, dev, (size_t)2 * C * sizeof(float));
    comm_allreduce_sum(sums, C, DEV_CPU);
    for (int c = 0; c < C; c++) mu[c] = (float)(sums[c] / M);
    tensor_copy_from_host(stat_mean, mu);
    KERNEL(dev, channel_moments)(dsums->data, x->data, stat_mean->data, N, C, S);   // around the mean
    dev_copy(sums, DEV_CPU, dsums->data, dev, (size_t)2 * C * sizeof(float));
    comm_allreduce_sum(sums + C, C, DEV_CPU);
    tensor_copy_to_host(running_mean, rm);
    tensor_copy_to_host(running_var, rv);
    for (int c = 0; c < C; c++) {
        double v = sums[C + c] / M;   // biased: what the batch is normalised with; the running estimate is unbiased
        var[c] = (float)v;
        rm[c] = (float)((1.0 - BN_MOMENTUM) * rm[c] + BN_MOMENTUM * mu[c]);
        rv[c] = (float)((1.0 - BN_MOMENTUM) * rv[c] + BN_MOMENTUM * v * M / (M - 1));
    }
    tensor_copy_from_host(stat_var, var);
    KERNEL(dev, batchnorm_forward)(out->data, mean->data, invstd->data, x->data, gamma->data, beta->data,
                                   stat_mean->data, stat_var->data, N, C, S, false, BN_MOMENTUM, BN_EPS);
    tensor_copy_from_host(running_mean, rm);
    tensor_copy_from_host(running_var, rv);
    free(host);
}

Tensor *op_batchnorm(Tensor *x, Tensor *gamma, Tensor *beta, Tensor *running_mean, Tensor *running_var,
                     bool training) {
    CHECK(x->ndim == 2 || x->ndim == 4, "batchnorm: x must be (N, C) or (N, C, H, W), got %d dims", x->ndim);
    int N = x->shape[0], C = x->shape[1], S = x->ndim == 4 ? x->shape[2] * x->shape[3] : 1;
    CHECK(gamma->numel == C && beta->numel == C && running_mean->numel == C && running_var->numel == C,
          "batchnorm: gamma, beta and the running stats must hold %d values (one per channel)", C);
    CHECK(gamma->device == x->device && beta->device == x->device && running_mean->device == x->device &&
          running_var->device == x->device, "batchnorm: operands on different devices");
    bool synced = training && comm_size() > 1;
    double M = (double)N * S * (synced ? comm_size() : 1);   // values per channel in the whole batch
    CHECK(!training || M > 1,
          "batchnorm: expected more than 1 value per channel when training, got input size (N=%d, C=%d, S=%d)", N, C,
          S);
    Tensor *out = tape_tensor(x->device, x->ndim, x->shape);
    Tensor *mean = tape_tensor(x->device, SHAPE(C)), *invstd = tape_tensor(x->device, SHAPE(C));
    if (synced)
        batchnorm_synced_forward(out, mean, invstd, x, gamma, beta, running_mean, running_var, N, C, S, M);
    else
        KERNEL(x->device, batchnorm_forward)(out->data, mean->data, invstd->data, x->data, gamma->data, beta->data,
                                             running_mean->data, running_var->data, N, C, S, training, BN_MOMENTUM,
                                             BN_EPS);
    Tensor *in[3] = {x, gamma, beta};
    BatchnormArgs args = {.N = N, .C = C, .S = S, .training = training, .synced = synced, .M = M};
    Node *n = tape_record("batchnorm", batchnorm_backward_node, out, 3, in, &args, sizeof args);
    if (n) {
        n->flops = 5.0 * x->numel;   // mean, variance, normalise, scale, shift
        n->saved[0] = mean;
        n->saved[1] = invstd;
    }
    return out;
}
