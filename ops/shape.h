// shape.h - ops that move data without arithmetic: reshape, detach, transpose, concat, repeat, gather, patches,
// dropout.
#ifndef SHAPE_H
#define SHAPE_H

#include "../autograd/autograd.h"
#include "dispatch.h"

KERNELS_BEGIN
// out[a, n, m] = x[a, m, n];  x: (A, M, N), out: (A, N, M)
DECLARE_KERNEL(void, transpose_forward, (float *out, const float *x, int A, int M, int N));
// dx[a, m, n] += dout[a, n, m]
DECLARE_KERNEL(void, transpose_backward, (float *dx, const float *dout, int A, int M, int N));
// out[b, d] = x[b, d, idx[b]];  x: (B, D, S), idx: (B) on the device, out: (B, D)
DECLARE_KERNEL(void, gather_location_forward, (float *out, const float *x, const int *idx, int B, int D, int S));
DECLARE_KERNEL(void, gather_location_backward, (float *dx, const float *dout, const int *idx, int B, int D, int S));
// out[(b*G + gi)*G + gj, c, y, x] = x[b, c, gi*stride + y, gj*stride + x]: the G x G grid of P x P patches;
// x: (B, C, H, W), out: (B*G*G, C, P, P), G = (H - P) / stride + 1 (square images, H == W)
DECLARE_KERNEL(void, extract_patches_forward, (float *out, const float *x, int B, int C, int H, int P, int stride));
// dx (B, C, H, W) += the patches' gradients added back onto their pixels (overlapping patches add up); each pixel
// gathers from the patches covering it, so no two threads write one element
DECLARE_KERNEL(void, extract_patches_backward, (float *dx, const float *dout, int B, int C, int H, int P, int stride));
KERNELS_END

Tensor *op_reshape(Tensor *x, int ndim, const int *shape);   // shares data; gradient flows through
Tensor *op_detach(Tensor *x);                                // shares data; no gradient
Tensor *op_transpose(Tensor *x);                             // (A, M, N) -> (A, N, M); 2-D (M, N) -> (N, M)
Tensor *op_concat0(Tensor *a, Tensor *b);                    // along dim 0; other dims equal
Tensor *op_repeat(Tensor *x, int k);                         // x: (A, N) -> (A, k, N), copies along the new dim 1
// x: (B, D, H, W); idx: B host ints in [0, H*W) -> (B, D): the feature vector at one location per row
Tensor *op_gather_location(Tensor *x, const int *idx);
// x: (B, C, H, H) -> (B*G*G, C, P, P): the overlapping grid of P x P patches at `stride` (CPC's patches)
Tensor *op_extract_patches(Tensor *x, int P, int stride);
// inverted dropout: keeps each value with prob 1-p and scales it by 1/(1-p); identity when !training or p == 0.
// The mask is drawn on the host from rng, so CPU and GPU runs agree.
Tensor *op_dropout(Tensor *x, float p, bool training, Rng *rng);

#endif
