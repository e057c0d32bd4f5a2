// optim.h - parameters in one block, and the SGD and Adam optimisers over it.
// All parameters of a model are views into ONE data block and ONE gradient block, so the optimiser is a single
// kernel call, zeroing gradients one memset and a checkpoint one pass over a name table.
#ifndef OPTIM_H
#define OPTIM_H

#include <stdbool.h>

#include "../autograd/autograd.h"
#include "dispatch.h"

#define PARAMS_MAX 256

typedef struct {
    Tensor *data;                 // (total) the block; owns the memory
    Tensor *grad;                 // (total)
    long total;                   // floats in the block
    int count;
    char names[PARAMS_MAX][64];
    Tensor *params[PARAMS_MAX];   // views into data; ->grad points into grad; requires_grad unless buffer
    bool is_buffer[PARAMS_MAX];   // running statistics: saved in checkpoints, never optimised
} ParamSet;

// Two passes: paramset_declare (name and shape) for every tensor, then paramset_allocate, which points the declared
// tensors into the blocks; paramset_find looks one up by name.
void paramset_init(ParamSet *ps);
Tensor *paramset_declare(ParamSet *ps, const char *name, int ndim, const int *shape, bool is_buffer);
void paramset_allocate(ParamSet *ps, Device dev);   // creates the blocks and points every declared tensor into them
Tensor *paramset_find(const ParamSet *ps, const char *name);  // NULL if absent
void paramset_zero_grad(ParamSet *ps);
void paramset_free(ParamSet *ps);

KERNELS_BEGIN
// Adam with coupled L2 weight decay (torch.optim.Adam): g = grad + wd*p; m = b1*m + (1-b1)*g;
// v = b2*v + (1-b2)*g^2; p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps). t >= 1 is the step number.
// `mask` (n): where mask[i] == 0 the element is left alone (buffers).
DECLARE_KERNEL(void, adam_step, (float *p, const float *grad, float *m, float *v, const float *mask, long n,
                                 float lr, float beta1, float beta2, float eps, float weight_decay, int t));
// SGD with momentum and coupled weight decay (torch.optim.SGD): g = grad + wd*p; buf = momentum*buf + g
// (buf = g on the first step, t == 1); p -= lr * buf
DECLARE_KERNEL(void, sgd_step, (float *p, const float *grad, float *buf, const float *mask, long n,
                                float lr, float momentum, float weight_decay, int t));
KERNELS_END

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    int t;                  // steps taken
    Tensor *m, *v;          // (total) moments, on the parameters' device
    Tensor *mask;           // (total) 1 for trainable, 0 for buffers
} Adam;

void adam_init(Adam *opt, const ParamSet *ps, float lr, float beta1, float beta2, float eps, float weight_decay);
void adam_update(Adam *opt, ParamSet *ps);   // uses opt->lr (set it for warm-up / decay before the call)
void adam_free(Adam *opt);

typedef struct {
    float lr, momentum, weight_decay;
    int t;
    Tensor *buf, *mask;
} Sgd;

void sgd_init(Sgd *opt, const ParamSet *ps, float lr, float momentum, float weight_decay);
void sgd_update(Sgd *opt, ParamSet *ps);
void sgd_free(Sgd *opt);

#endif
