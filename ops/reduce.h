// reduce.h - sum and mean over one dimension.
// A tensor reduced over dim d is seen as (outer, dim, inner): outer = prod(shape[:d]), inner = prod(shape[d+1:]).
#ifndef REDUCE_H
#define REDUCE_H

#include "../autograd/autograd.h"
#include "dispatch.h"

KERNELS_BEGIN
// out[o, i] = sum_k x[o, k, i];  x: (outer, dim, inner), out: (outer, inner)
DECLARE_KERNEL(void, reduce_sum_forward, (float *out, const float *x, long outer, long dim, long inner));
// dx[o, k, i] += dout[o, i]   (also the forward of a broadcast along dim)
DECLARE_KERNEL(void, reduce_sum_backward, (float *dx, const float *dout, long outer, long dim, long inner));
KERNELS_END

// dim = -1 reduces over all elements and returns shape (1). Otherwise the dim is removed
// (a 1-D input reduced over dim 0 gives shape (1)).
Tensor *op_sum(Tensor *x, int dim);
Tensor *op_mean(Tensor *x, int dim);

#endif
