// elementwise.h - unary and binary elementwise ops over flat arrays of n floats.
// Kernel rule (all of ops/): forward kernels overwrite `out`; backward kernels ADD into d-inputs,
// and skip any d-input passed as NULL.
#ifndef ELEMENTWISE_H
#define ELEMENTWISE_H

#include "../autograd/autograd.h"
#include "dispatch.h"

typedef enum { UNARY_RELU, UNARY_TANH, UNARY_SQUARE, UNARY_EXP, UNARY_LOG } UnaryOp;
typedef enum { BINARY_ADD, BINARY_MUL } BinaryOp;

KERNELS_BEGIN
// out = f(x);  x, out: (n)
DECLARE_KERNEL(void, unary_forward, (UnaryOp op, float *out, const float *x, long n));
// dx += dout * f'(x), using x or out (whichever the derivative is cheaper from)
DECLARE_KERNEL(void, unary_backward, (UnaryOp op, float *dx, const float *dout, const float *x, const float *out, long n));
// out = a (op) b;  all (n)
DECLARE_KERNEL(void, binary_forward, (BinaryOp op, float *out, const float *a, const float *b, long n));
// da += dout * d(a op b)/da, db += dout * d(a op b)/db
DECLARE_KERNEL(void, binary_backward, (BinaryOp op, float *da, float *db, const float *dout, const float *a, const float *b, long n));
// g = 0 where out <= 0, in place: a fused op's ReLU backward on the output gradient it is about to pass on
DECLARE_KERNEL(void, relu_mask, (float *g, const float *out, long n));
// y += alpha * x  (also the backward of scale, reshape and every copy)
DECLARE_KERNEL(void, axpy, (float *y, const float *x, float alpha, long n));
// out = alpha * x
DECLARE_KERNEL(void, scale_forward, (float *out, const float *x, float alpha, long n));
KERNELS_END

Tensor *op_relu(Tensor *x);
Tensor *op_tanh(Tensor *x);
Tensor *op_square(Tensor *x);
Tensor *op_exp(Tensor *x);
Tensor *op_log(Tensor *x);
Tensor *op_add(Tensor *a, Tensor *b);   // same shapes
Tensor *op_mul(Tensor *a, Tensor *b);   // same shapes
Tensor *op_scale(Tensor *x, float alpha);

#endif
