// autograd.c - the tape, backward(), and tape_clear().
#include "autograd.h"

#include <stdlib.h>
#include <string.h>

#include "../tensor/device.h"

typedef struct {
    Tensor **tensors; long n_tensors, cap_tensors;
    Node **nodes; long n_nodes, cap_nodes;
} Tape;

static Tape tape;
static bool grad_enabled = true;
static const char *current_scope;
static bool profiling;
static double last_mark;                // profiling: when the previous op's forward ended

void autograd_scope(const char *name) { current_scope = name; }
long tape_node_count(void) { return tape.n_nodes; }
Node *tape_node(long i) { return tape.nodes[i]; }

static double synced_now(void) {
    dev_synchronize();
    return now_seconds();
}

void autograd_set_profiling(bool on) {
    profiling = on;
    if (on) last_mark = synced_now();
}

void autograd_profile_mark(void) {
    if (profiling) last_mark = synced_now();
}

void autograd_set_grad_enabled(bool enabled) { grad_enabled = enabled; }
bool autograd_grad_enabled(void) { return grad_enabled; }
long tape_tensor_count(void) { return tape.n_tensors; }

static void grow(void **array, long *cap, size_t elem) {
    *cap = *cap ? 2 * *cap : 256;
    void *p = realloc(*array, (size_t)*cap * elem);
    CHECK(p != NULL, "out of memory growing the autograd tape");
    *array = p;
}

static Tensor *adopt(Tensor *t) {
    if (tape.n_tensors == tape.cap_tensors) grow((void **)&tape.tensors, &tape.cap_tensors, sizeof(Tensor *));
    tape.tensors[tape.n_tensors++] = t;
    t->on_tape = true;
    return t;
}

Tensor *tape_tensor(Device dev, int ndim, const int *shape) { return adopt(tensor_new(dev, ndim, shape)); }

Tensor *tape_view(Tensor *base, int ndim, const int *shape) {
    CHECK(tensor_numel_of(ndim, shape) == base->numel, "view of %ld elements on a tensor of %ld",
          tensor_numel_of(ndim, shape), base->numel);
    Tensor *t = tensor_view(base, 0, ndim, shape);
    t->grad = NULL;  // a view gets its own gradient; its backward adds it into the base's
    return adopt(t);
}

Node *tape_record(const char *op_name, BackwardFn backward_fn, Tensor *out, int n_in, Tensor *const *in,
                  const void *args, size_t args_bytes) {
    CHECK(n_in <= NODE_MAX_INPUTS, "%s: %d inputs", op_name, n_in);
    bool needs = false;
    for (int k = 0; k < n_in; k++) needs |= in[k] && in[k]->requires_grad;
    if (!grad_enabled || !needs) { out->requires_grad = false; return NULL; }
    Node *n = xcalloc(1, sizeof(Node) + args_bytes);
    if (args_bytes) {
        memcpy(n->args_storage, args, args_bytes);
        n->args = n->args_storage;
    }
    n->op_name = op_name;
    n->backward = backward_fn;
    n->out = out;
    n->n_in = n_in;
    n->scope = current_scope;
    n->bytes = (double)out->numel * sizeof(float);
    for (int k = 0; k < n_in; k++) {
        n->in[k] = in[k];
        if (in[k]) n->bytes += (double)in[k]->numel * sizeof(float);
    }
    if (profiling) {
        double t = synced_now();
        n->forward_s = t - last_mark;
        last_mark = t;
    }
    out->requires_grad = true;
    out->node = n;
    if (tape.n_nodes == tape.cap_nodes) grow((void **)&tape.nodes, &tape.cap_nodes, sizeof(Node *));
    n->index = tape.n_nodes;
    tape.nodes[tape.n_nodes++] = n;
    return n;
}

void node_keep_aux(Node *n, Device dev, void *buffer, size_t bytes) {
    n->aux = buffer;
    n->aux_bytes = bytes;
    n->aux_device = dev;
}

float *input_grad(Node *n, int k) {
    Tensor *t = n->in[k];
    return (t && t->requires_grad) ? tensor_grad(t) : NULL;
}

bool input_grad_take(Node *n, int k) {
    Tensor *t = n->in[k], *out = n->out;
    if (!t || !t->requires_grad || t->grad || !out->owns_grad || t->numel != out->numel || t->device != out->device)
        return false;
    t->grad = out->grad;
    t->owns_grad = true;
    out->grad = NULL;
    out->owns_grad = false;
    return true;
}

void backward(Tensor *loss) {
    CHECK(loss->numel == 1, "backward() needs a scalar loss, got %ld elements", loss->numel);
    CHECK(loss->requires_grad, "backward() on a tensor that does not require grad (no parameter reached it?)");
    float one = 1.0f;
    dev_copy(tensor_grad(loss), loss->device, &one, DEV_CPU, sizeof(float));
    for (long i = tape.n_nodes - 1; i >= 0; i--) {
        Node *n = tape.nodes[i];
        if (!n->out->grad) continue;  // nodes the loss does not depend on have no output grad
        double t0 = profiling ? synced_now() : 0;
        n->backward(n);
        if (profiling) n->backward_s = synced_now() - t0;
        tensor_free_grad(n->out);     // every consumer of out came later on the tape and is done with it
    }
}

void tape_clear(void) {
    for (long i = 0; i < tape.n_nodes; i++) {
        Node *n = tape.nodes[i];
        if (n->aux) dev_free(n->aux_device, n->aux, n->aux_bytes);
        free(n);
    }
    for (long i = 0; i < tape.n_tensors; i++) tensor_free(tape.tensors[i]);
    tape.n_nodes = 0;
    tape.n_tensors = 0;
}
