// autograd.h - a define-by-run reverse-mode autograd in the spirit of micrograd.
//
// Every op_* call (ops/) computes its output at once and, when grad mode is on and an input requires grad,
// records a Node on the global tape: the op's backward function, its inputs and what it saved.
// Recording order is a topological order, so backward() simply walks the tape in reverse.
//
// Rules:
//   * Gradients ALWAYS accumulate (+=). Backward kernels add into d-inputs; nobody overwrites a .grad.
//     Parameter gradients are therefore zeroed once per step (optimizer), before the forward pass.
//   * backward() frees the gradient of every op output as soon as its node has passed it on (its consumers came
//     later on the tape, so they are done): after backward only leaves (parameters, inputs) hold a .grad. This
//     halves peak memory - activations and their gradients are never all alive at once.
//   * Every tensor an op returns, and every tensor it saves, is owned by the tape. tape_clear() frees them all
//     (data, grads, nodes), which is what keeps memory flat over thousands of steps: call it once per step,
//     after backward and after you have read the scalars you want to log.
//   * In no-grad mode (autograd_set_grad_enabled(false)) ops still put their outputs on the tape (so that
//     tape_clear frees them) but record no nodes and set requires_grad = false.
#ifndef AUTOGRAD_H
#define AUTOGRAD_H

#include <stddef.h>

#include "../tensor/tensor.h"

#define NODE_MAX_INPUTS 6
#define NODE_MAX_SAVED 4

typedef struct Node Node;
typedef void (*BackwardFn)(Node *node);

struct Node {
    const char *op_name;
    BackwardFn backward;              // reads out->grad, adds into in[k]->grad for inputs that require grad
    Tensor *out;
    Tensor *in[NODE_MAX_INPUTS];
    int n_in;
    Tensor *saved[NODE_MAX_SAVED];    // extra tensors kept for backward (tape-owned)
    const void *args;                 // the op's parameters as the op's own struct (ConvArgs, ...), or NULL
    void *aux;                        // op-owned extra buffer (labels, masks), freed with the node
    size_t aux_bytes;
    Device aux_device;
    // what autograd/inspect.h shows (graph, profile)
    const char *scope;                // the model part that was recording (autograd_scope), or NULL
    double flops;                     // floating-point operations of the forward (set by the op; 0 = not counted)
    double bytes;                     // bytes the forward reads and writes (inputs + output unless the op says)
    double forward_s, backward_s;     // measured when profiling is on
    long index;                       // position on the tape
    max_align_t args_storage[];       // where args points: a copy made by tape_record
};

// A new tensor owned by the tape (uninitialised data).
Tensor *tape_tensor(Device dev, int ndim, const int *shape);
// A view on the tape that shares `base`'s data (reshape, detach); never frees the data.
Tensor *tape_view(Tensor *base, int ndim, const int *shape);
// Record a node for `out` if grad mode is on and any input requires grad. Returns the node or NULL.
// args (args_bytes, NULL/0 for none) is the op's parameter struct, copied into the node: the backward reads it
// as `const ConvArgs *a = n->args;`. Forward and backward share that struct, so a parameter has a name, not a slot.
Node *tape_record(const char *op_name, BackwardFn backward, Tensor *out, int n_in, Tensor *const *in,
                  const void *args, size_t args_bytes);
// The node takes ownership of a device buffer the op made for its backward (labels, indices): freed with the node.
void node_keep_aux(Node *n, Device dev, void *buffer, size_t bytes);

void backward(Tensor *loss);          // loss must hold one element; seeds d(loss) = 1
void tape_clear(void);                // frees every tape tensor and node
long tape_tensor_count(void);         // live tape tensors (for leak checks)

void autograd_set_grad_enabled(bool enabled);
bool autograd_grad_enabled(void);

// Nodes recorded from now on belong to this part of the model ("enc.2", "head5", "nce.1t7"; NULL = none). The string
// must live until tape_clear(): a literal or a name held by the model.
void autograd_scope(const char *name);
// Profiling: every node's forward time is the time from the previous record (or the last mark) to its own, and its
// backward time that of its backward call; on a GPU each is measured after a device synchronisation.
void autograd_set_profiling(bool on);
void autograd_profile_mark(void);      // "the next op's forward starts now": call before a forward pass
long tape_node_count(void);
Node *tape_node(long i);               // recording order

// grad of an input, allocated on demand, or NULL if that input does not need one
float *input_grad(Node *n, int k);
// Hands the output's grad buffer to input k when that input needs a grad, has none yet and holds as many elements:
// its grad then equals the output's, with no zeroed buffer and no accumulating pass (reshape; the first consumer
// of a scale or an add). Returns whether it did; the output has no grad afterwards.
bool input_grad_take(Node *n, int k);

#endif
