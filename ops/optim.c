// optim.c - the parameter block (ParamSet) and the Adam and SGD optimisers: CPU kernels, then the host side.
// n is the number of floats in the block; every kernel walks it once, element by element.
#include "optim.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../tensor/device.h"

// ---- ParamSet ----

void paramset_init(ParamSet *ps) { memset(ps, 0, sizeof *ps); }

Tensor *paramset_declare(ParamSet *ps, const char *name, int ndim, const int *shape, bool is_buffer) {
    CHECK(!ps->data, "paramset_declare(\"%s\") after paramset_allocate", name);
    CHECK(ps->count < PARAMS_MAX, "more than %d parameters (raise PARAMS_MAX)", PARAMS_MAX);
    CHECK(strlen(name) < sizeof ps->names[0], "parameter name \"%s\" longer than %zu", name,
          sizeof ps->names[0] - 1);
    CHECK(!paramset_find(ps, name), "parameter \"%s\" declared twice", name);
    int k = ps->count++;
    strcpy(ps->names[k], name);
    ps->params[k] = tensor_header(DEV_CPU, ndim, shape);  // the device is set by paramset_allocate
    ps->params[k]->name = ps->names[k];
    ps->is_buffer[k] = is_buffer;
    ps->total += ps->params[k]->numel;
    return ps->params[k];
}

// Parameters lie in the block in declaration order, without gaps.
void paramset_allocate(ParamSet *ps, Device dev) {
    CHECK(!ps->data, "paramset_allocate called twice");
    CHECK(ps->count > 0 && ps->total <= INT_MAX, "a block of %ld floats in %d tensors", ps->total, ps->count);
    ps->data = tensor_zeros(dev, SHAPE((int)ps->total));
    ps->grad = tensor_zeros(dev, SHAPE((int)ps->total));
    long offset = 0;
    for (int k = 0; k < ps->count; k++) {
        Tensor *t = ps->params[k];
        t->device = dev;
        t->data = ps->data->data + offset;
        t->grad = ps->grad->data + offset;
        t->owns_data = false;
        t->owns_grad = false;
        t->requires_grad = !ps->is_buffer[k];
        offset += t->numel;
    }
}

Tensor *paramset_find(const ParamSet *ps, const char *name) {
    for (int k = 0; k < ps->count; k++) if (!strcmp(ps->names[k], name)) return ps->params[k];
    return NULL;
}

void paramset_zero_grad(ParamSet *ps) {
    CHECK(ps->grad, "paramset_zero_grad before paramset_allocate");
    dev_zero(ps->grad->device, ps->grad->data, (size_t)ps->total * sizeof(float));
}

void paramset_free(ParamSet *ps) {
    for (int k = 0; k < ps->count; k++) tensor_free(ps->params[k]);  // headers only: the blocks own the memory
    tensor_free(ps->data);
    tensor_free(ps->grad);
    paramset_init(ps);
}

// (total) 1 where the optimiser may step, 0 over buffers; on the block's device
static Tensor *trainable_mask(const ParamSet *ps) {
    CHECK(ps->data, "optimiser set up before paramset_allocate");
    float *host = xmalloc((size_t)ps->total * sizeof(float));
    long offset = 0;
    for (int k = 0; k < ps->count; k++) {
        for (long i = 0; i < ps->params[k]->numel; i++) host[offset + i] = ps->is_buffer[k] ? 0.0f : 1.0f;
        offset += ps->params[k]->numel;
    }
    Tensor *mask = tensor_from(ps->data->device, SHAPE((int)ps->total), host);
    free(host);
    return mask;
}

// ---- CPU kernels ----

// p, grad, m, v, mask: (n)
void adam_step_cpu(float *p, const float *grad, float *m, float *v, const float *mask, long n, float lr, float beta1,
                   float beta2, float eps, float weight_decay, int t) {
    float correction1 = 1.0f - powf(beta1, (float)t), correction2 = 1.0f - powf(beta2, (float)t);
    // every element is computed and the mask picks what is stored: a loop without branches, which vectorises
    #pragma omp parallel for simd if (n > PARALLEL_MIN_WORK)
    for (long i = 0; i < n; i++) {
        float g = grad[i] + weight_decay * p[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        float step = lr * (mi / correction1) / (sqrtf(vi / correction2) + eps);
        bool train = mask[i] != 0.0f;
        m[i] = train ? mi : m[i];
        v[i] = train ? vi : v[i];
        p[i] = train ? p[i] - step : p[i];
    }
}

// p, grad, buf, mask: (n)
void sgd_step_cpu(float *p, const float *grad, float *buf, const float *mask, long n, float lr, float momentum,
                  float weight_decay, int t) {
    #pragma omp parallel for if (n > PARALLEL_MIN_WORK)
    for (long i = 0; i < n; i++) {
        if (mask && mask[i] == 0.0f) continue;
        float g = grad[i] + weight_decay * p[i];
        buf[i] = t == 1 ? g : momentum * buf[i] + g;
        p[i] -= lr * buf[i];
    }
}

// ---- optimisers ----

void adam_init(Adam *opt, const ParamSet *ps, float lr, float beta1, float beta2, float eps, float weight_decay) {
    CHECK(ps->data, "adam_init before paramset_allocate");
    *opt = (Adam){.lr = lr, .beta1 = beta1, .beta2 = beta2, .eps = eps, .weight_decay = weight_decay, .t = 0};
    opt->m = tensor_zeros(ps->data->device, SHAPE((int)ps->total));
    opt->v = tensor_zeros(ps->data->device, SHAPE((int)ps->total));
    opt->mask = trainable_mask(ps);
}

void adam_update(Adam *opt, ParamSet *ps) {
    CHECK(opt->m->numel == ps->total, "Adam set up for %ld floats, the block holds %ld", opt->m->numel, ps->total);
    opt->t++;
    KERNEL(ps->data->device, adam_step)(ps->data->data, ps->grad->data, opt->m->data, opt->v->data, opt->mask->data,
                                        ps->total, opt->lr, opt->beta1, opt->beta2, opt->eps, opt->weight_decay,
                                        opt->t);
}

void adam_free(Adam *opt) {
    tensor_free(opt->m);
    tensor_free(opt->v);
    tensor_free(opt->mask);
    opt->m = opt->v = opt->mask = NULL;
}

void sgd_init(Sgd *opt, const ParamSet *ps, float lr, float momentum, float weight_decay) {
    CHECK(ps->data, "sgd_init before paramset_allocate");
    *opt = (Sgd){.lr = lr, .momentum = momentum, .weight_decay = weight_decay, .t = 0};
    opt->buf = tensor_zeros(ps->data->device, SHAPE((int)ps->total));
    opt->mask = trainable_mask(ps);
}

void sgd_update(Sgd *opt, ParamSet *ps) {
    CHECK(opt->buf->numel == ps->total, "SGD set up for %ld floats, the block holds %ld", opt->buf->numel, ps->total);
    opt->t++;
    KERNEL(ps->data->device, sgd_step)(ps->data->data, ps->grad->data, opt->buf->data, opt->mask->data, ps->total,
                                       opt->lr, opt->momentum, opt->weight_decay, opt->t);
}

void sgd_free(Sgd *opt) {
    tensor_free(opt->buf);
    tensor_free(opt->mask);
    opt->buf = opt->mask = NULL;
}
