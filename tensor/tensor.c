// tensor.c - creation, copies, views, printing and the portable RNG.
#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


long tensor_numel_of(int ndim, const int *shape) {
    long n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

Tensor *tensor_header(Device dev, int ndim, const int *shape) {
    CHECK(ndim >= 1 && ndim <= TENSOR_MAX_DIMS, "ndim %d out of range 1..%d", ndim, TENSOR_MAX_DIMS);
    Tensor *t = xcalloc(1, sizeof(Tensor));
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        CHECK(shape[i] > 0, "dimension %d has size %d", i, shape[i]);
        t->shape[i] = shape[i];
    }
    t->numel = tensor_numel_of(ndim, shape);
    t->device = dev;
    return t;
}

Tensor *tensor_new(Device dev, int ndim, const int *shape) {
    Tensor *t = tensor_header(dev, ndim, shape);
    t->data = dev_alloc(dev, (size_t)t->numel * sizeof(float));
    t->owns_data = true;
    return t;
}

Tensor *tensor_zeros(Device dev, int ndim, const int *shape) {
    Tensor *t = tensor_new(dev, ndim, shape);
    dev_zero(dev, t->data, (size_t)t->numel * sizeof(float));
    return t;
}

Tensor *tensor_ones(Device dev, int ndim, const int *shape) {
    Tensor *t = tensor_new(dev, ndim, shape);
    tensor_fill(t, 1.0f);
    return t;
}

Tensor *tensor_from(Device dev, int ndim, const int *shape, const float *host_data) {
    Tensor *t = tensor_new(dev, ndim, shape);
    tensor_copy_from_host(t, host_data);
    return t;
}

Tensor *tensor_view(Tensor *base, long offset, int ndim, const int *shape) {
    Tensor *t = tensor_header(base->device, ndim, shape);
    CHECK(offset >= 0 && offset + t->numel <= base->numel, "view [%ld, %ld) outside a tensor of %ld",
          offset, offset + t->numel, base->numel);
    t->data = base->data + offset;
    if (base->grad) { t->grad = base->grad + offset; }
    return t;
}

Tensor *tensor_to(const Tensor *t, Device dev) {
    Tensor *c = tensor_new(dev, t->ndim, t->shape);
    dev_copy(c->data, dev, t->data, t->device, (size_t)t->numel * sizeof(float));
    return c;
}

void tensor_free(Tensor *t) {
    if (!t) return;
    size_t bytes = (size_t)t->numel * sizeof(float);
    if (t->owns_data) dev_free(t->device, t->data, bytes);
    if (t->owns_grad) dev_free(t->device, t->grad, bytes);
    free(t);
}

void tensor_fill(Tensor *t, float value) {
    if (t->device == DEV_CPU) {
        for (long i = 0; i < t->numel; i++) t->data[i] = value;
        return;
    }
    float *host = xmalloc((size_t)t->numel * sizeof(float));
    for (long i = 0; i < t->numel; i++) host[i] = value;
    tensor_copy_from_host(t, host);
    free(host);
}

void tensor_copy_to_host(const Tensor *t, float *host) {
    dev_copy(host, DEV_CPU, t->data, t->device, (size_t)t->numel * sizeof(float));
}

void tensor_copy_from_host(Tensor *t, const float *host) {
    dev_copy(t->data, t->device, host, DEV_CPU, (size_t)t->numel * sizeof(float));
}

float tensor_item(const Tensor *t) {
    CHECK(t->numel == 1, "tensor_item on a tensor of %ld elements", t->numel);
    float v;
    tensor_copy_to_host(t, &v);
    return v;
}

float *tensor_grad(Tensor *t) {
    if (!t->grad) {
        size_t bytes = (size_t)t->numel * sizeof(float);
        t->grad = dev_alloc(t->device, bytes);
        dev_zero(t->device, t->grad, bytes);
        t->owns_grad = true;
    }
    return t->grad;
}

void tensor_free_grad(Tensor *t) {
    if (t->grad && t->owns_grad) dev_free(t->device, t->grad, (size_t)t->numel * sizeof(float));
    t->grad = NULL;
    t->owns_grad = false;
}

void tensor_zero_grad(Tensor *t) {
    if (t->grad) dev_zero(t->device, t->grad, (size_t)t->numel * sizeof(float));
}

bool tensor_same_shape(const Tensor *a, const Tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++) if (a->shape[i] != b->shape[i]) return false;
    return true;
}

void tensor_print(const Tensor *t, const char *name) {
    float *h = xmalloc((size_t)t->numel * sizeof(float));
    tensor_copy_to_host(t, h);
    double sum = 0, sumsq = 0;
    for (long i = 0; i < t->numel; i++) { sum += h[i]; sumsq += (double)h[i] * h[i]; }
    double mean = sum / t->numel;
    printf("%s: (", name ? name : "tensor");
    for (int i = 0; i < t->ndim; i++) printf(i ? ", %d" : "%d", t->shape[i]);
    printf(") %s mean %.6g std %.6g [", device_name(t->device), mean, sqrt(fmax(0.0, sumsq / t->numel - mean * mean)));
    for (long i = 0; i < t->numel && i < 8; i++) printf(i ? ", %.5g" : "%.5g", h[i]);
    printf(t->numel > 8 ? ", ...]\n" : "]\n");
    free(h);
}

static void fill_random(Tensor *t, Rng *r, float a, float b, bool normal) {
    float *h = t->device == DEV_CPU ? t->data : xmalloc((size_t)t->numel * sizeof(float));
    for (long i = 0; i < t->numel; i++) h[i] = normal ? a + b * rng_normal(r) : a + (b - a) * rng_uniform(r);
    if (t->device != DEV_CPU) { tensor_copy_from_host(t, h); free(h); }
}

void tensor_fill_uniform(Tensor *t, Rng *r, float lo, float hi) { fill_random(t, r, lo, hi, false); }
void tensor_fill_normal(Tensor *t, Rng *r, float mean, float std) { fill_random(t, r, mean, std, true); }
