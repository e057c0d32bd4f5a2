// optim.cu - CUDA twins of the optimiser steps in ops/optim.c: one elementwise pass over the parameter block.
// The bias corrections depend only on the step number, so the host computes them once per call.
#include <math.h>

#include "../ops/optim.h"
#include "common.cuh"

// Adam with coupled L2 (torch.optim.Adam): g = grad + wd*p; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
// p -= lr * (m / bc1) / (sqrt(v / bc2) + eps). Elements with mask[i] == 0 (buffers) are left alone.
static __global__ void adam_step_kernel(float *p, const float *grad, float *m, float *v, const float *mask, long n,
                                        float lr, float beta1, float beta2, float eps, float weight_decay,
                                        float bias_correction1, float bias_correction2) {
    GRID_STRIDE(i, n) {
        if (mask[i] == 0.0f) continue;
        float g = grad[i] + weight_decay * p[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr * (mi / bias_correction1) / (sqrtf(vi / bias_correction2) + eps);
    }
}

void adam_step_cuda(float *p, const float *grad, float *m, float *v, const float *mask, long n, float lr, float beta1,
                    float beta2, float eps, float weight_decay, int t) {
    if (n <= 0) return;
    float bias_correction1 = 1.0f - powf(beta1, (float)t), bias_correction2 = 1.0f - powf(beta2, (float)t);
    adam_step_kernel<<<blocks_for(n), THREADS>>>(p, grad, m, v, mask, n, lr, beta1, beta2, eps, weight_decay,
                                                 bias_correction1, bias_correction2);
    LAUNCH_CHECK();
}

// SGD with momentum and coupled weight decay (torch.optim.SGD): g = grad + wd*p; buf = g on the first step
// (t == 1), else momentum*buf + g; p -= lr * buf
static __global__ void sgd_step_kernel(float *p, const float *grad, float *buf, const float *mask, long n, float lr,
                                       float momentum, float weight_decay, bool first_step) {
    GRID_STRIDE(i, n) {
        if (mask && mask[i] == 0.0f) continue;
        float g = grad[i] + weight_decay * p[i];
        float b = first_step ? g : momentum * buf[i] + g;
        buf[i] = b;
        p[i] -= lr * b;
    }
}

void sgd_step_cuda(float *p, const float *grad, float *buf, const float *mask, long n, float lr, float momentum,
                   float weight_decay, int t) {
    if (n <= 0) return;
    sgd_step_kernel<<<blocks_for(n), THREADS>>>(p, grad, buf, mask, n, lr, momentum, weight_decay, t == 1);
    LAUNCH_CHECK();
}
