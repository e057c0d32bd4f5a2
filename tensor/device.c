// device.c - the caching memory pool for CPU and CUDA memory.
#include "device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"

#ifdef USE_CUDA
#include <cuda_runtime.h>
#define CUDA_OK(call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) { \
    fprintf(stderr, "CUDA error at %s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); exit(1); } } while (0)
#endif

const char *device_name(Device dev) { return dev == DEV_CUDA ? "cuda" : "cpu"; }

// ---- the pool: a free list of (size, ptr) per device; blocks are reused only for the exact rounded size ----
typedef struct { size_t bytes; void *ptr; } Block;
typedef struct { Block *free; int n_free, cap_free; size_t in_use, cached; } Pool;
static Pool pools[2];
static bool atexit_registered;

static size_t round_bytes(size_t bytes) { return bytes < 256 ? 256 : (bytes + 255) & ~(size_t)255; }

static void *system_alloc(Device dev, size_t bytes) {
    if (dev == DEV_CPU) return aligned_alloc(64, bytes);
#ifdef USE_CUDA
    void *p = NULL;
    if (cudaMalloc(&p, bytes) != cudaSuccess) { (void)cudaGetLastError(); return NULL; }
    return p;
#else
    return NULL;
#endif
}

static void system_free(Device dev, void *p) {
    if (dev == DEV_CPU) { free(p); return; }
#ifdef USE_CUDA
    CUDA_OK(cudaFree(p));
#endif
}

static void release_device(Device dev) {
    Pool *pool = &pools[dev];
    for (int i = 0; i < pool->n_free; i++) system_free(dev, pool->free[i].ptr);
    pool->n_free = 0;
    pool->cached = 0;
}

void dev_pool_release(void) {
    release_device(DEV_CPU);
    release_device(DEV_CUDA);
    free(pools[DEV_CPU].free); free(pools[DEV_CUDA].free);
    memset(pools, 0, sizeof pools);
}

void *dev_alloc(Device dev, size_t bytes) {
    if (!atexit_registered) { atexit(dev_pool_release); atexit_registered = true; }
#ifndef USE_CUDA
    CHECK(dev == DEV_CPU, "this build has no CUDA support (rebuild with nvcc installed, without GPU=0)");
#endif
    Pool *pool = &pools[dev];
    size_t rb = round_bytes(bytes);
    for (int i = pool->n_free - 1; i >= 0; i--) {
        if (pool->free[i].bytes == rb) {
            void *p = pool->free[i].ptr;
            pool->free[i] = pool->free[--pool->n_free];
            pool->cached -= rb;
            pool->in_use += rb;
            return p;
        }
    }
    void *p = system_alloc(dev, rb);
    if (!p) {  // give the cached blocks back and try once more
        release_device(dev);
        p = system_alloc(dev, rb);
    }
    if (!p) {
        fprintf(stderr, "out of %s memory: asked for %zu bytes with %zu bytes in use\n",
                device_name(dev), rb, pool->in_use);
        exit(1);
    }
    pool->in_use += rb;
    return p;
}

void dev_free(Device dev, void *ptr, size_t bytes) {
    if (!ptr) return;
    Pool *pool = &pools[dev];
    size_t rb = round_bytes(bytes);
    if (pool->n_free == pool->cap_free) {
        pool->cap_free = pool->cap_free ? 2 * pool->cap_free : 64;
        Block *grown = realloc(pool->free, (size_t)pool->cap_free * sizeof(Block));
        CHECK(grown != NULL, "out of memory growing the pool's free list");
        pool->free = grown;
    }
    pool->free[pool->n_free++] = (Block){rb, ptr};
    pool->in_use -= rb;
    pool->cached += rb;
}

size_t dev_pool_in_use(Device dev) { return pools[dev].in_use; }
size_t dev_pool_cached(Device dev) { return pools[dev].cached; }

void dev_copy(void *dst, Device dst_dev, const void *src, Device src_dev, size_t bytes) {
    if (bytes == 0) return;
    if (dst_dev == DEV_CPU && src_dev == DEV_CPU) { memmove(dst, src, bytes); return; }
#ifdef USE_CUDA
    enum cudaMemcpyKind kind = dst_dev == DEV_CUDA
        ? (src_dev == DEV_CUDA ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
        : cudaMemcpyDeviceToHost;
    CUDA_OK(cudaMemcpy(dst, src, bytes, kind));
#else
    CHECK(0, "this build has no CUDA support");
#endif
}

void dev_zero(Device dev, void *ptr, size_t bytes) {
    if (dev == DEV_CPU) { memset(ptr, 0, bytes); return; }
#ifdef USE_CUDA
    CUDA_OK(cudaMemset(ptr, 0, bytes));
#endif
}

bool dev_cuda_available(void) {
#ifdef USE_CUDA
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) { (void)cudaGetLastError(); return false; }
    return n > 0;
#else
    return false;
#endif
}

void dev_synchronize(void) {
#ifdef USE_CUDA
    if (dev_cuda_available()) CUDA_OK(cudaDeviceSynchronize());
#endif
}
