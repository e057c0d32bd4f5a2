// elementwise.cu - CUDA twins of ops/elementwise.c: unary and binary maps over flat arrays of n floats.
// Forward kernels overwrite out; backward kernels add into d-inputs and skip NULL ones.
#include "../ops/elementwise.h"
#include "common.cuh"

// out = f(x);  x, out: (n)
static __global__ void unary_forward_kernel(UnaryOp op, float *out, const float *x, long n) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        switch (op) {
            case UNARY_RELU: out[i] = v > 0.0f ? v : 0.0f; break;
            case UNARY_TANH: out[i] = tanhf(v); break;
            case UNARY_SQUARE: out[i] = v * v; break;
            case UNARY_EXP: out[i] = expf(v); break;
            case UNARY_LOG: out[i] = logf(v); break;
        }
    }
}

void unary_forward_cuda(UnaryOp op, float *out, const float *x, long n) {
    if (n <= 0) return;
    unary_forward_kernel<<<blocks_for(n), THREADS>>>(op, out, x, n);
    LAUNCH_CHECK();
}

// dx += dout * f'(x), the derivative taken from x or out exactly as the CPU does
static __global__ void unary_backward_kernel(UnaryOp op, float *dx, const float *dout, const float *x,
                                             const float *out, long n) {
    GRID_STRIDE(i, n) {
        float d;
        switch (op) {
            case UNARY_RELU: d = out[i] > 0.0f ? 1.0f : 0.0f; break;
            case UNARY_TANH: d = 1.0f - out[i] * out[i]; break;
            case UNARY_SQUARE: d = 2.0f * x[i]; break;
            case UNARY_EXP: d = out[i]; break;
            default: d = 1.0f / x[i]; break;  // UNARY_LOG
        }
        dx[i] += dout[i] * d;
    }
}

void unary_backward_cuda(UnaryOp op, float *dx, const float *dout, const float *x, const float *out, long n) {
    if (!dx || n <= 0) return;
    unary_backward_kernel<<<blocks_for(n), THREADS>>>(op, dx, dout, x, out, n);
    LAUNCH_CHECK();
}

static __global__ void relu_mask_kernel(float *g, const float *out, long n) {
    GRID_STRIDE(i, n) g[i] = out[i] > 0.0f ? g[i] : 0.0f;
}

void relu_mask_cuda(float *g, const float *out, long n) {
    if (n <= 0) return;
    relu_mask_kernel<<<blocks_for(n), THREADS>>>(g, out, n);
    LAUNCH_CHECK();
}

static __global__ void binary_forward_kernel(BinaryOp op, float *out, const float *a, const float *b, long n) {
    GRID_STRIDE(i, n) out[i] = op == BINARY_ADD ? a[i] + b[i] : a[i] * b[i];
}

void binary_forward_cuda(BinaryOp op, float *out, const float *a, const float *b, long n) {
    if (n <= 0) return;
    binary_forward_kernel<<<blocks_for(n), THREADS>>>(op, out, a, b, n);
    LAUNCH_CHECK();
}

// da += dout * d(a op b)/da, db += dout * d(a op b)/db; da or db may be NULL
static __global__ void binary_backward_kernel(BinaryOp op, float *da, float *db, const float *dout, const float *a,
                                              const float *b, long n) {
    GRID_STRIDE(i, n) {
        if (da) da[i] += op == BINARY_ADD ? dout[i] : dout[i] * b[i];
        if (db) db[i] += op == BINARY_ADD ? dout[i] : dout[i] * a[i];
    }
}

void binary_backward_cuda(BinaryOp op, float *da, float *db, const float *dout, const float *a, const float *b,
                          long n) {
    if ((!da && !db) || n <= 0) return;
    binary_backward_kernel<<<blocks_for(n), THREADS>>>(op, da, db, dout, a, b, n);
    LAUNCH_CHECK();
}

static __global__ void axpy_kernel(float *y, const float *x, float alpha, long n) {
    GRID_STRIDE(i, n) y[i] += alpha * x[i];
}

// y += alpha * x
void axpy_cuda(float *y, const float *x, float alpha, long n) {
    if (!y || n <= 0) return;
    axpy_kernel<<<blocks_for(n), THREADS>>>(y, x, alpha, n);
    LAUNCH_CHECK();
}

static __global__ void scale_forward_kernel(float *out, const float *x, float alpha, long n) {
    GRID_STRIDE(i, n) out[i] = alpha * x[i];
}

// out = alpha * x
void scale_forward_cuda(float *out, const float *x, float alpha, long n) {
    if (n <= 0) return;
    scale_forward_kernel<<<blocks_for(n), THREADS>>>(out, x, alpha, n);
    LAUNCH_CHECK();
}
