// reduce.c - sum and mean over one dimension (or all): CPU kernels, then the autograd ops.
#include "reduce.h"

#include "../tensor/device.h"
#include "elementwise.h"

// out[o, i] = sum_k x[o, k, i]; accumulate in double so long sums stay exact to float precision
void reduce_sum_forward_cpu(float *out, const float *x, long outer, long dim, long inner) {
    #pragma omp parallel for if (outer * dim * inner > PARALLEL_MIN_WORK)
    for (long o = 0; o < outer; o++) {
        for (long i = 0; i < inner; i++) {
            double s = 0;
            for (long k = 0; k < dim; k++) s += x[(o * dim + k) * inner + i];
            out[o * inner + i] = (float)s;
        }
    }
}

void reduce_sum_backward_cpu(float *dx, const float *dout, long outer, long dim, long inner) {
    #pragma omp parallel for if (outer * dim * inner > PARALLEL_MIN_WORK)
    for (long o = 0; o < outer; o++)
        for (long k = 0; k < dim; k++)
            for (long i = 0; i < inner; i++) dx[(o * dim + k) * inner + i] += dout[o * inner + i];
}

// x viewed as (outer, len, inner), summed over len
typedef struct { long outer, len, inner; } SumArgs;

static void sum_backward_node(Node *n) {
    const SumArgs *a = n->args;
    KERNEL(n->out->device, reduce_sum_backward)(input_grad(n, 0), n->out->grad, a->outer, a->len, a->inner);
}

Tensor *op_sum(Tensor *x, int dim) {
    long outer = 1, inner = 1, len = x->numel;
    int shape[TENSOR_MAX_DIMS] = {1}, ndim = 1;
    if (dim >= 0) {
        CHECK(dim < x->ndim, "sum over dim %d of a %d-dim tensor", dim, x->ndim);
        len = x->shape[dim];
        for (int d = 0; d < dim; d++) outer *= x->shape[d];
        for (int d = dim + 1; d < x->ndim; d++) inner *= x->shape[d];
        ndim = 0;
        for (int d = 0; d < x->ndim; d++) if (d != dim) shape[ndim++] = x->shape[d];
        if (ndim == 0) { ndim = 1; shape[0] = 1; }
    }
    Tensor *out = tape_tensor(x->device, ndim, shape);
    KERNEL(x->device, reduce_sum_forward)(out->data, x->data, outer, len, inner);
    SumArgs args = {.outer = outer, .len = len, .inner = inner};
    Node *n = tape_record("sum", sum_backward_node, out, 1, &x, &args, sizeof args);
    if (n) n->flops = (double)x->numel;
    return out;
}

Tensor *op_mean(Tensor *x, int dim) {
    long len = dim >= 0 ? x->shape[dim] : x->numel;
    return op_scale(op_sum(x, dim), 1.0f / (float)len);
}
