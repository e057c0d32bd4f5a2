// dist.c - all-gather with a reduce-scatter backward (see dist.h).
#include "dist.h"

#include <string.h>

#include "../comm/comm.h"
#include "elementwise.h"

static void all_gather_backward_node(Node *n) {
    Tensor *x = n->in[0];
    Tensor *mine = tape_tensor(x->device, x->ndim, x->shape);
    comm_reduce_scatter_sum(mine->data, n->out->grad, x->numel, x->device);
    KERNEL(x->device, axpy)(input_grad(n, 0), mine->data, 1.0f, x->numel);
}

Tensor *op_all_gather(Tensor *x) {
    int shape[TENSOR_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[0] *= comm_size();
    Tensor *out = tape_tensor(x->device, x->ndim, shape);
    comm_allgather(out->data, x->data, x->numel, x->device);
    Node *n = tape_record("all_gather", all_gather_backward_node, out, 1, &x, NULL, 0);
    if (n) n->bytes = (double)(out->numel + x->numel) * sizeof(float);
    return out;
}
