// elementwise.c - unary and binary elementwise ops: CPU kernels, then the autograd ops.
#include "elementwise.h"

#include <math.h>

#include "../tensor/device.h"
#include "vecmath.h"

// ---- CPU kernels ----

// tanh and exp go through glibc's vector functions (vecmath.h) in chunks of whole blocks, one chunk per thread
#define UNARY_CHUNK 4096L

void unary_forward_cpu(UnaryOp op, float *out, const float *x, long n) {
    if (op == UNARY_TANH || op == UNARY_EXP) {
        #pragma omp parallel for if (n > PARALLEL_MIN_WORK)
        for (long i = 0; i < n; i += UNARY_CHUNK) {
            long len = n - i < UNARY_CHUNK ? n - i : UNARY_CHUNK;
            if (op == UNARY_TANH) vec_tanhf(out + i, x + i, len);
            else vec_expf(out + i, x + i, len);
        }
        return;
    }
    #pragma omp parallel for if (n > PARALLEL_MIN_WORK)
    for (long i = 0; i < n; i++) {
        float v = x[i];
        switch (op) {
            case UNARY_RELU: out[i] = v > 0.0f ? v : 0.0f; break;
            case UNARY_SQUARE: out[i] = v * v; break;
            case UNARY_LOG: out[i] = logf(v); break;
            default: break;   // tanh, exp: above
        }
    }
}

void unary_backward_cpu(UnaryOp op, float *dx, const float *dout, const float *x, const float *out, long n) {
    #pragma omp parallel for if (n > PARALLEL_MIN_WORK)
    for (long i = 0; i < n; i++) {
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

void relu_mask_cpu(float *g, const float *out, long n) {
    #pragma omp parallel for if (n > PARALLEL_MIN_WORK)
    for (long i = 0; i < n; i++) g[i] = out[i] > 0.0f ? g[i] : 0.0f;
}

void binary_forward_cpu(BinaryOp op, float *out, const float *a, const float *b, long n) {
    #pragma omp parallel for if (n > PARALLEL_MIN_WORK)
    for (long i = 0; i < n; i++) out[i] = op == BINARY_ADD ? a[i] + b[i] : a[i] * b[i];
}

void binary_backward_cpu(BinaryOp op, float *da, float *db, const float *dout, const float *a, const float *b, long n) {
    #pragma omp parallel for if (n > PARALLEL_MIN_WORK)
    for (long i = 0; i < n; i++) {
        if (da) da[i] += op == BINARY_ADD ? dout[i] : dout[i] * b[i];
        if (db) db[i] += op == BINARY_ADD ? dout[i] : dout[i] * a[i];
    }
}

void axpy_cpu(float *y, const float *x, float alpha, long n) {
    #pragma omp parallel for if (n > PARALLEL_MIN_WORK)
    for (long i = 0; i < n; i++) y[i] += alpha * x[i];
}

void scale_forward_cpu(float *out, const float *x, float alpha, long n) {
    #pragma omp parallel for if (n > PARALLEL_MIN_WORK)
    for (long i = 0; i < n; i++) out[i] = alpha * x[i];
}

// ---- autograd ops ----

typedef struct { UnaryOp op; } UnaryArgs;
typedef struct { BinaryOp op; } BinaryArgs;
typedef struct { float alpha; } ScaleArgs;

static void unary_backward_node(Node *n) {
    const UnaryArgs *a = n->args;
    Tensor *x = n->in[0], *out = n->out;
    KERNEL(x->device, unary_backward)(a->op, input_grad(n, 0), out->grad, x->data, out->data, x->numel);
}

static Tensor *unary(const char *name, UnaryOp op, Tensor *x) {
    Tensor *out = tape_tensor(x->device, x->ndim, x->shape);
    KERNEL(x->device, unary_forward)(op, out->data, x->data, x->numel);
    UnaryArgs args = {op};
    Node *n = tape_record(name, unary_backward_node, out, 1, &x, &args, sizeof args);
    if (n) n->flops = (double)x->numel;
    return out;
}

Tensor *op_relu(Tensor *x) { return unary("relu", UNARY_RELU, x); }
Tensor *op_tanh(Tensor *x) { return unary("tanh", UNARY_TANH, x); }
Tensor *op_square(Tensor *x) { return unary("square", UNARY_SQUARE, x); }
Tensor *op_exp(Tensor *x) { return unary("exp", UNARY_EXP, x); }
Tensor *op_log(Tensor *x) { return unary("log", UNARY_LOG, x); }

static void binary_backward_node(Node *n) {
    const BinaryArgs *args = n->args;
    Tensor *a = n->in[0], *b = n->in[1];
    if (args->op == BINARY_ADD && input_grad_take(n, 0)) {   // a's grad is now dout; b's still accumulates it
        float *db = input_grad(n, 1);                          // (a == b: db is that buffer and doubles it)
        if (db) KERNEL(a->device, axpy)(db, a->grad, 1.0f, a->numel);
        return;
    }
    KERNEL(a->device, binary_backward)(args->op, input_grad(n, 0), input_grad(n, 1), n->out->grad,
                                       a->data, b->data, a->numel);
}

static Tensor *binary(const char *name, BinaryOp op, Tensor *a, Tensor *b) {
    CHECK(tensor_same_shape(a, b) && a->device == b->device, "%s: operands differ in shape or device", name);
    Tensor *out = tape_tensor(a->device, a->ndim, a->shape);
    KERNEL(a->device, binary_forward)(op, out->data, a->data, b->data, a->numel);
    Tensor *in[2] = {a, b};
    BinaryArgs args = {op};
    Node *n = tape_record(name, binary_backward_node, out, 2, in, &args, sizeof args);
    if (n) n->flops = (double)a->numel;
    return out;
}

Tensor *op_add(Tensor *a, Tensor *b) { return binary("add", BINARY_ADD, a, b); }
Tensor *op_mul(Tensor *a, Tensor *b) { return binary("mul", BINARY_MUL, a, b); }

static void scale_backward_node(Node *n) {
    const ScaleArgs *a = n->args;
    Tensor *x = n->in[0];
    if (input_grad_take(n, 0)) KERNEL(x->device, scale_forward)(x->grad, x->grad, a->alpha, x->numel);   // in place
    else KERNEL(x->device, axpy)(input_grad(n, 0), n->out->grad, a->alpha, n->out->numel);
}

Tensor *op_scale(Tensor *x, float alpha) {
    Tensor *out = tape_tensor(x->device, x->ndim, x->shape);
    KERNEL(x->device, scale_forward)(out->data, x->data, alpha, x->numel);
    ScaleArgs args = {alpha};
    Node *n = tape_record("scale", scale_backward_node, out, 1, &x, &args, sizeof args);
    if (n) n->flops = (double)x->numel;
    return out;
}
