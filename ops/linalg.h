// linalg.h - matrix products (sgemm / cublasSgemm) and bias addition.
#ifndef LINALG_H
#define LINALG_H

#include <stdbool.h>

#include "../autograd/autograd.h"
#include "dispatch.h"

KERNELS_BEGIN
// Row-major C (M, N) = alpha * op(A) * op(B) + beta * C, op(A): (M, K), op(B): (K, N), all contiguous.
// A is stored (M, K), or (K, M) when trans_a; B is stored (K, N), or (N, K) when trans_b.
DECLARE_KERNEL(void, gemm, (bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                            const float *B, float beta, float *C));
// out[n, c, s] += b[c];  out: (N, C, S)
DECLARE_KERNEL(void, bias_forward, (float *out, const float *b, int N, int C, int S));
// db[c] += sum_{n, s} dout[n, c, s]
DECLARE_KERNEL(void, bias_backward, (float *db, const float *dout, int N, int C, int S));
KERNELS_END

// a: (M, K) or (K, M) if trans_a; b: (K, N) or (N, K) if trans_b  ->  (M, N)
Tensor *op_matmul(Tensor *a, Tensor *b, bool trans_a, bool trans_b);
// x: (N, in), w: (out, in), b: (out) or NULL  ->  (N, out)   (torch.nn.Linear layout)
Tensor *op_linear(Tensor *x, Tensor *w, Tensor *b);

#endif
