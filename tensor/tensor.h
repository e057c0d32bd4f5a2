// tensor.h - the one tensor type of the engine: float32, up to 4 dims, NCHW, on the CPU or a CUDA device.
//
// Ownership (read this first):
//   * tensor_new / tensor_zeros / tensor_from / tensor_to ... return a tensor YOU own: free it with tensor_free.
//   * Tensors returned by op_* (ops/) belong to the autograd tape: they live until tape_clear() and must
//     never be freed by hand (see autograd/autograd.h).
//   * A view (tensor_view) shares the data of another tensor and never frees it; its owner must outlive it.
//   * t->grad is allocated lazily (zero-filled) by tensor_grad(); it lives and dies with t (unless the tensor
//     is a view into a parameter block, whose gradient block is owned by the block).
// Dimensions are listed outermost first everywhere: shape[0] is N, then C, H, W.
#ifndef TENSOR_H
#define TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/base.h"
#include "../base/rng.h"
#include "device.h"

#define TENSOR_MAX_DIMS 4

struct Node;

typedef struct Tensor {
    int ndim;
    int shape[TENSOR_MAX_DIMS];
    long numel;
    Device device;
    float *data;          // numel floats on `device`
    float *grad;          // NULL until needed; numel floats on `device`
    bool requires_grad;   // leaf parameters set this; op outputs inherit it from their inputs
    bool owns_data;       // false for views
    bool owns_grad;       // false when grad points into a parameter block's gradient buffer
    bool on_tape;         // owned by the autograd tape (freed by tape_clear)
    struct Node *node;    // the op that produced this tensor, NULL for leaves and no-grad results
    const char *name;     // parameters: their checkpoint name ("enc.2.0.conv1.weight"); NULL otherwise
} Tensor;

// ---- creation (caller owns the result) ----
Tensor *tensor_new(Device dev, int ndim, const int *shape);          // uninitialised data
Tensor *tensor_zeros(Device dev, int ndim, const int *shape);
Tensor *tensor_ones(Device dev, int ndim, const int *shape);
Tensor *tensor_from(Device dev, int ndim, const int *shape, const float *host_data);  // copies host_data
Tensor *tensor_view(Tensor *base, long offset, int ndim, const int *shape);           // shares base->data
Tensor *tensor_header(Device dev, int ndim, const int *shape);   // shape only, data == NULL (ParamSet points it later)
Tensor *tensor_to(const Tensor *t, Device dev);                       // deep copy onto dev (data only)
void tensor_free(Tensor *t);

// convenient shape literals: tensor_zeros(DEV_CPU, SHAPE(2, 3))
#define SHAPE(...) (int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)), (int[]){__VA_ARGS__}

// ---- data ----
void tensor_fill(Tensor *t, float value);
void tensor_copy_to_host(const Tensor *t, float *host);               // numel floats
void tensor_copy_from_host(Tensor *t, const float *host);
float tensor_item(const Tensor *t);                                   // value of a 1-element tensor
float *tensor_grad(Tensor *t);                                        // allocates a zeroed grad if missing
void tensor_zero_grad(Tensor *t);
void tensor_free_grad(Tensor *t);                                     // drops an owned grad (NULL again)
bool tensor_same_shape(const Tensor *a, const Tensor *b);
long tensor_numel_of(int ndim, const int *shape);
void tensor_print(const Tensor *t, const char *name);                 // debug print (first values + stats)

// ---- seeded random fills (base/rng.h: the same stream on every machine) ----
void tensor_fill_uniform(Tensor *t, Rng *r, float lo, float hi);
void tensor_fill_normal(Tensor *t, Rng *r, float mean, float std);

#endif
