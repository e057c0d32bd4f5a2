// device.h - memory on the CPU or the CUDA device, through one caching pool.
// Freed blocks are kept in per-size free lists and handed out again, so a training step whose shapes repeat
// allocates nothing after its first iteration (no malloc / cudaMalloc in the steady state).
// This file and tensor/device.c are the only place in tensor/ that knows CUDA exists (behind USE_CUDA).
#ifndef DEVICE_H
#define DEVICE_H

#include <stddef.h>
#include "tensor.h"

void *dev_alloc(Device dev, size_t bytes);                     // never NULL: exits with a message on failure
void dev_free(Device dev, void *ptr, size_t bytes);            // back to the pool (bytes as asked)
void dev_copy(void *dst, Device dst_dev, const void *src, Device src_dev, size_t bytes);
void dev_zero(Device dev, void *ptr, size_t bytes);
void dev_pool_release(void);                                   // return every cached block to the system
size_t dev_pool_in_use(Device dev);                            // bytes handed out and not yet freed
size_t dev_pool_cached(Device dev);                            // bytes held in free lists
bool dev_cuda_available(void);                                 // built with CUDA and a device is present
void dev_synchronize(void);

// checked host allocation: exits with file:line on failure
#define xmalloc(bytes) xmalloc_at((bytes), __FILE__, __LINE__)
#define xcalloc(n, size) xcalloc_at((n), (size), __FILE__, __LINE__)
void *xmalloc_at(size_t bytes, const char *file, int line);
void *xcalloc_at(size_t n, size_t size, const char *file, int line);

// an invariant that stays on in release builds (programming errors, never user input)
#define CHECK(cond, ...) do { if (!(cond)) check_failed(__FILE__, __LINE__, #cond, __VA_ARGS__); } while (0)
void check_failed(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

#endif
