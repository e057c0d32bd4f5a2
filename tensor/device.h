// device.h - memory on the CPU or the CUDA device, through one caching pool.
// Freed blocks are kept in per-size free lists and handed out again, so a training step whose shapes repeat
// allocates nothing after its first iteration (no malloc / cudaMalloc in the steady state).
// This file and tensor/device.c are the only place in tensor/ that knows CUDA exists (behind USE_CUDA).
#ifndef DEVICE_H
#define DEVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "../base/base.h"   // CHECK and xmalloc: every user of device memory needs them

#ifdef __cplusplus   // the CUDA files (C++) call these too
extern "C" {
#endif

typedef enum { DEV_CPU = 0, DEV_CUDA = 1 } Device;
const char *device_name(Device dev);   // "cpu" or "cuda"

void *dev_alloc(Device dev, size_t bytes);                     // never NULL: exits with a message on failure
void dev_free(Device dev, void *ptr, size_t bytes);            // back to the pool (bytes as asked)
void dev_copy(void *dst, Device dst_dev, const void *src, Device src_dev, size_t bytes);
void dev_zero(Device dev, void *ptr, size_t bytes);
void dev_pool_release(void);                                   // return every cached block to the system
size_t dev_pool_in_use(Device dev);                            // bytes handed out and not yet freed
size_t dev_pool_cached(Device dev);                            // bytes held in free lists
bool dev_cuda_available(void);                                 // built with CUDA and a device is present
void dev_synchronize(void);

#ifdef __cplusplus
}
#endif

#endif
