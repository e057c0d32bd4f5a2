// device.c - CPU memory from the C heap, CUDA memory through a caching pool, host-to-device staging, the Uploader.
#include "device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <malloc.h>

#include "../base/base.h"

#ifdef USE_CUDA
#include <cuda_runtime.h>
#define CUDA_OK(call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) { \
    fprintf(stderr, "CUDA error at %s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); exit(1); } } while (0)

// Releasing memory. The CUDA runtime frees everything in its own exit handler; when ours runs after it (it was
// registered earlier, at the first allocation, and exit handlers run in reverse order) every call returns one of
// these two errors, which then only mean "already freed". Any other error is reported; at exit it cannot change
// the exit status any more (exit() must not be called again from an exit handler).
static bool exiting;

static bool cuda_unloaded(cudaError_t e) { return e == cudaErrorCudartUnloading || e == cudaErrorContextIsDestroyed; }

static void cuda_release(cudaError_t e, const char *what) {
    if (e == cudaSuccess || cuda_unloaded(e)) return;
    fprintf(stderr, "CUDA error while releasing %s: %s\n", what, cudaGetErrorString(e));
    if (!exiting) exit(1);
}
#endif

const char *device_name(Device dev) { return dev == DEV_CUDA ? "cuda" : "cpu"; }

// ---- the pool: a free list of (size, ptr) per device; blocks are reused only for the exact rounded size ----
// The CPU side caches nothing: its blocks go to malloc and back, and malloc's heap reuses freed memory for any size
// (best fit, neighbours merged), where exact-size reuse left up to 8% of the peak cached in blocks of the wrong
// size (cifar-small, batch 128: 2,300 MiB held for 2,106 MiB in use). mmap is turned off so that big tensors come
// from the heap too: an mmap'd block goes back to the system when freed and its pages fault in again next step.
// The CPU pool still counts what is in use (the leak checks and the peak figures read it).
typedef struct { size_t bytes; void *ptr; } Block;
typedef struct { Block *free; int n_free, cap_free; size_t in_use, cached, peak_in_use, peak_held; } Pool;
static Pool pools[2];
static bool atexit_registered;
static int poison = -1;   // -1: not decided yet (POISON_POOL is read at the first allocation)

static size_t round_bytes(size_t bytes) { return bytes < 256 ? 256 : (bytes + 255) & ~(size_t)255; }

static void note_peaks(Pool *pool) {
    if (pool->in_use > pool->peak_in_use) pool->peak_in_use = pool->in_use;
    if (pool->in_use + pool->cached > pool->peak_held) pool->peak_held = pool->in_use + pool->cached;
}

static void *system_alloc(Device dev, size_t bytes) {
    if (dev == DEV_CPU) {
        static bool heap_only;
        if (!heap_only) {  // the process's malloc policy, set before the first tensor: heap only, never trimmed
            mallopt(M_MMAP_MAX, 0);
            mallopt(M_TRIM_THRESHOLD, INT_MAX);
            heap_only = true;
        }
        return aligned_alloc(64, bytes);
    }
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
    cuda_release(cudaFree(p), "device memory");
#endif
}

static void release_device(Device dev) {
    Pool *pool = &pools[dev];
    for (int i = 0; i < pool->n_free; i++) system_free(dev, pool->free[i].ptr);
    pool->n_free = 0;
    pool->cached = 0;
}

static void release_staging(void);

static void release_at_exit(void) {
#ifdef USE_CUDA
    exiting = true;
#endif
    dev_pool_release();
}

void dev_pool_release(void) {
    release_staging();
    release_device(DEV_CPU);
    release_device(DEV_CUDA);
    free(pools[DEV_CPU].free);
    free(pools[DEV_CUDA].free);
    for (int d = 0; d < 2; d++) {   // what is still handed out stays counted (the leak checks read it)
        pools[d].free = NULL;
        pools[d].n_free = pools[d].cap_free = 0;
    }
}

void dev_pool_set_poison(bool on) { poison = on; }

bool dev_pool_poison(void) {
    if (poison < 0) {
        const char *e = getenv("POISON_POOL");
        poison = e && *e && strcmp(e, "0") != 0;
    }
    return poison;
}

// bytes 0xff: every float reads as NaN (and every int as -1)
static void fill_poison(Device dev, void *p, size_t bytes) {
    if (dev == DEV_CPU) { memset(p, 0xff, bytes); return; }
#ifdef USE_CUDA
    CUDA_OK(cudaMemsetAsync(p, 0xff, bytes, 0));
#endif
}

void *dev_alloc(Device dev, size_t bytes) {
    if (!atexit_registered) { atexit(release_at_exit); atexit_registered = true; }
#ifndef USE_CUDA
    CHECK(dev == DEV_CPU, "this build has no CUDA support (rebuild with nvcc installed, without GPU=0)");
#endif
    Pool *pool = &pools[dev];
    size_t rb = round_bytes(bytes);
    void *p = NULL;
    for (int i = pool->n_free - 1; i >= 0 && !p; i--) {   // (the CPU's free list is always empty)
        if (pool->free[i].bytes == rb) {
            p = pool->free[i].ptr;
            pool->free[i] = pool->free[--pool->n_free];
            pool->cached -= rb;
        }
    }
    if (!p) p = system_alloc(dev, rb);
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
    note_peaks(pool);
    if (dev_pool_poison()) fill_poison(dev, p, rb);
    return p;
}

void dev_free(Device dev, void *ptr, size_t bytes) {
    if (!ptr) return;
    Pool *pool = &pools[dev];
    size_t rb = round_bytes(bytes);
    pool->in_use -= rb;
    if (dev == DEV_CPU) { system_free(dev, ptr); return; }
    if (pool->n_free == pool->cap_free) {
        pool->cap_free = pool->cap_free ? 2 * pool->cap_free : 64;
        Block *grown = realloc(pool->free, (size_t)pool->cap_free * sizeof(Block));
        CHECK(grown != NULL, "out of memory growing the pool's free list");
        pool->free = grown;
    }
    pool->free[pool->n_free++] = (Block){rb, ptr};
    pool->cached += rb;
}

size_t dev_pool_in_use(Device dev) { return pools[dev].in_use; }
size_t dev_pool_cached(Device dev) { return pools[dev].cached; }
size_t dev_pool_peak_in_use(Device dev) { return pools[dev].peak_in_use; }
size_t dev_pool_peak_held(Device dev) { return pools[dev].peak_held; }

void dev_pool_reset_peaks(void) {
    for (int d = 0; d < 2; d++) {
        pools[d].peak_in_use = pools[d].in_use;
        pools[d].peak_held = pools[d].in_use + pools[d].cached;
    }
}

// ---- host-to-device copies through a pinned staging ring ----
// cudaMemcpy from pageable memory first waits until every queued kernel has run, so each label, mask or index
// upload in the middle of a step would stall the pipeline. Instead the bytes go into pinned memory and are sent
// with cudaMemcpyAsync on the same (legacy default) stream: they land after the work queued before and before the
// work queued after, and the caller's buffer is free at once. The ring's bytes are written again only after the
// event recorded behind their copy has fired (in the steady state long before: the ring holds many steps).
#ifdef USE_CUDA
#define STAGING_DEFAULT_BYTES ((size_t)64 << 20)
#define STAGING_IN_FLIGHT 512   // copies in flight at most (each has an event)

typedef struct { size_t start, end; } Span;
static struct {
    char *base;                 // pinned
    size_t size, wanted, head;  // head: where the next copy goes
    Span span[STAGING_IN_FLIGHT];
    cudaEvent_t done[STAGING_IN_FLIGHT];   // done[i] recorded behind the copy of span[i]
    int first, count;           // the copies in flight, oldest first (a ring of indices)
} staging = {.wanted = STAGING_DEFAULT_BYTES};

static void staging_pop(bool wait) {
    if (wait) CUDA_OK(cudaEventSynchronize(staging.done[staging.first]));
    staging.first = (staging.first + 1) % STAGING_IN_FLIGHT;
    staging.count--;
}

static bool staging_clashes(size_t start, size_t end) {
    for (int k = 0; k < staging.count; k++) {
        const Span *s = &staging.span[(staging.first + k) % STAGING_IN_FLIGHT];
        if (start < s->end && s->start < end) return true;
    }
    return false;
}

// n bytes of the ring for one copy, NULL when the copy is too big for it
static char *staging_reserve(size_t n, int *slot) {
    if (staging.base && staging.size != staging.wanted && staging.count == 0) {
        CUDA_OK(cudaFreeHost(staging.base));
        staging.base = NULL;
    }
    if (!staging.base) {
        if (cudaHostAlloc((void **)&staging.base, staging.wanted, cudaHostAllocDefault) != cudaSuccess) {
            (void)cudaGetLastError();
            staging.base = NULL;
            return NULL;   // no pinned memory: plain synchronous copies
        }
        staging.size = staging.wanted;
        staging.head = 0;
    }
    n = (n + 255) & ~(size_t)255;
    if (n > staging.size / 2) return NULL;
    while (staging.count && cudaEventQuery(staging.done[staging.first]) == cudaSuccess) staging_pop(false);
    (void)cudaGetLastError();   // cudaErrorNotReady from the query above is no error
    size_t start = staging.head + n <= staging.size ? staging.head : 0;
    while (staging_clashes(start, start + n) || staging.count == STAGING_IN_FLIGHT) staging_pop(true);
    int i = (staging.first + staging.count) % STAGING_IN_FLIGHT;
    if (!staging.done[i]) CUDA_OK(cudaEventCreateWithFlags(&staging.done[i], cudaEventDisableTiming));
    staging.span[i] = (Span){start, start + n};
    staging.count++;
    staging.head = start + n;
    *slot = i;
    return staging.base + start;
}

static void upload_staged(void *dst, const void *src, size_t bytes) {
    int slot;
    char *pinned = staging_reserve(bytes, &slot);
    if (!pinned) {
        CUDA_OK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
        return;
    }
    memcpy(pinned, src, bytes);
    CUDA_OK(cudaMemcpyAsync(dst, pinned, bytes, cudaMemcpyHostToDevice, 0));
    CUDA_OK(cudaEventRecord(staging.done[slot], 0));
}
#endif

void dev_set_staging_bytes(size_t bytes) {
#ifdef USE_CUDA
    staging.wanted = bytes >= 4096 ? bytes : 4096;
#endif
}


// ---- the upload stream (Uploader): non-blocking, so it runs beside the legacy stream instead of after it ----
#ifdef USE_CUDA
static cudaStream_t upload_stream;
static int live_uploaders;

static cudaStream_t get_upload_stream(void) {
    if (!upload_stream) CUDA_OK(cudaStreamCreateWithFlags(&upload_stream, cudaStreamNonBlocking));
    return upload_stream;
}
#endif

static void release_staging(void) {
#ifdef USE_CUDA
    if (!staging.base && !upload_stream) return;
    cudaError_t e = cudaDeviceSynchronize();   // nothing may still read the pinned memory
    cuda_release(e, "the staging ring");
    if (cuda_unloaded(e)) return;              // the runtime is gone, and with it everything below
    for (int i = 0; i < STAGING_IN_FLIGHT; i++)
        if (staging.done[i]) { cuda_release(cudaEventDestroy(staging.done[i]), "an event"); staging.done[i] = NULL; }
    if (staging.base) cuda_release(cudaFreeHost(staging.base), "pinned memory");
    staging.base = NULL;
    staging.count = staging.first = 0;
    staging.head = 0;
    if (upload_stream && live_uploaders == 0) {
        cuda_release(cudaStreamDestroy(upload_stream), "the upload stream");
        upload_stream = NULL;
    }
#endif
}

void dev_copy(void *dst, Device dst_dev, const void *src, Device src_dev, size_t bytes) {
    if (bytes == 0) return;
    if (dst_dev == DEV_CPU && src_dev == DEV_CPU) { memmove(dst, src, bytes); return; }
#ifdef USE_CUDA
    if (dst_dev == DEV_CUDA && src_dev == DEV_CUDA)
        CUDA_OK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0));
    else if (dst_dev == DEV_CUDA)
        upload_staged(dst, src, bytes);
    else   // the host needs the bytes: waits for the work queued before
        CUDA_OK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
#else
    CHECK(0, "this build has no CUDA support");
#endif
}

void dev_zero(Device dev, void *ptr, size_t bytes) {
    if (dev == DEV_CPU) { memset(ptr, 0, bytes); return; }
#ifdef USE_CUDA
    CUDA_OK(cudaMemsetAsync(ptr, 0, bytes, 0));
#endif
}

bool dev_cuda_available(void) {
#ifdef USE_CUDA
    static int available = -1;
    if (available < 0) {
        int n = 0;
        if (cudaGetDeviceCount(&n) != cudaSuccess) { (void)cudaGetLastError(); n = 0; }
        available = n > 0;
    }
    return available;
#else
    return false;
#endif
}

bool dev_cuda_describe(char *buf, int size) {
#ifdef USE_CUDA
    struct cudaDeviceProp p;
    if (!dev_cuda_available() || cudaGetDeviceProperties(&p, 0) != cudaSuccess) {
        (void)cudaGetLastError();
        snprintf(buf, (size_t)size, "no CUDA device found");
        return false;
    }
    snprintf(buf, (size_t)size, "%s, sm_%d%d, %.1f GiB, %d SMs", p.name, p.major, p.minor,
             (double)p.totalGlobalMem / (1 << 30), p.multiProcessorCount);
    return true;
#else
    snprintf(buf, (size_t)size, "this build has no CUDA support");
    return false;
#endif
}

void dev_synchronize(void) {
#ifdef USE_CUDA
    if (dev_cuda_available()) CUDA_OK(cudaDeviceSynchronize());
#endif
}

// ---- Uploader ----
struct Uploader {
    Device dev;
    size_t bytes;
    int depth, next, in_use;   // next buffer to fill; the buffer the compute stream reads now (-1: none yet)
    void **buf;                // depth buffers on dev, from the pool
#ifdef USE_CUDA
    void **staging;            // depth pinned host buffers
    cudaEvent_t *landed;       // on the upload stream, behind the copy into buf[k]
    cudaEvent_t *released;     // on the compute stream, behind the last work that read buf[k]
    bool *has_landed, *has_released;
#endif
};

Uploader *uploader_new(Device dev, size_t bytes, int depth) {
    CHECK(depth >= 2, "uploader: depth %d, at least 2 (one buffer is read while the next is filled)", depth);
    Uploader *u = xcalloc(1, sizeof *u);
    u->dev = dev;
    u->bytes = bytes;
    u->depth = depth;
    u->in_use = -1;
    u->buf = xcalloc((size_t)depth, sizeof(void *));
    for (int k = 0; k < depth; k++) u->buf[k] = dev_alloc(dev, bytes);
#ifdef USE_CUDA
    if (dev == DEV_CUDA) {
        u->staging = xcalloc((size_t)depth, sizeof(void *));
        u->landed = xcalloc((size_t)depth, sizeof(cudaEvent_t));
        u->released = xcalloc((size_t)depth, sizeof(cudaEvent_t));
        u->has_landed = xcalloc((size_t)depth, sizeof(bool));
        u->has_released = xcalloc((size_t)depth, sizeof(bool));
        for (int k = 0; k < depth; k++) {
            CUDA_OK(cudaHostAlloc(&u->staging[k], bytes ? bytes : 1, cudaHostAllocDefault));
            CUDA_OK(cudaEventCreateWithFlags(&u->landed[k], cudaEventDisableTiming));
            CUDA_OK(cudaEventCreateWithFlags(&u->released[k], cudaEventDisableTiming));
        }
        get_upload_stream();
        live_uploaders++;
    }
#endif
    return u;
}

void *uploader_put(Uploader *u, const void *host, size_t bytes) {
    CHECK(bytes <= u->bytes, "uploader: %zu bytes into buffers of %zu", bytes, u->bytes);
    int k = u->next;
    CHECK(k != u->in_use, "uploader: buffer %d is still being read (one put per use, depth >= 2)", k);
    u->next = (k + 1) % u->depth;
    if (u->dev == DEV_CPU) {
        memcpy(u->buf[k], host, bytes);
        return u->buf[k];
    }
#ifdef USE_CUDA
    if (u->has_landed[k]) CUDA_OK(cudaEventSynchronize(u->landed[k]));   // staging[k] is free again
    memcpy(u->staging[k], host, bytes);
    cudaStream_t s = get_upload_stream();
    if (u->has_released[k]) CUDA_OK(cudaStreamWaitEvent(s, u->released[k], 0));   // its last reader is done
    CUDA_OK(cudaMemcpyAsync(u->buf[k], u->staging[k], bytes, cudaMemcpyHostToDevice, s));
    CUDA_OK(cudaEventRecord(u->landed[k], s));
    u->has_landed[k] = true;
#endif
    return u->buf[k];
}

void uploader_use(Uploader *u, const void *buffer) {
    int k = 0;
    while (k < u->depth && u->buf[k] != buffer) k++;
    CHECK(k < u->depth, "uploader_use: %p is none of this uploader's buffers", buffer);
#ifdef USE_CUDA
    if (u->dev == DEV_CUDA) {
        CHECK(u->has_landed[k], "uploader_use: nothing was put into buffer %d", k);
        CUDA_OK(cudaStreamWaitEvent(0, u->landed[k], 0));   // the compute stream waits, the host does not
        if (u->in_use >= 0 && u->in_use != k) {            // every reader of the old buffer is queued by now
            CUDA_OK(cudaEventRecord(u->released[u->in_use], 0));
            u->has_released[u->in_use] = true;
        }
    }
#endif
    u->in_use = k;
}

void uploader_free(Uploader *u) {
    if (!u) return;
#ifdef USE_CUDA
    if (u->dev == DEV_CUDA) {
        for (int k = 0; k < u->depth; k++) {   // no copy may still write a buffer the pool hands out again
            if (u->has_landed[k]) CUDA_OK(cudaEventSynchronize(u->landed[k]));
            CUDA_OK(cudaEventDestroy(u->landed[k]));
            CUDA_OK(cudaEventDestroy(u->released[k]));
            CUDA_OK(cudaFreeHost(u->staging[k]));
        }
        free(u->staging);
        free(u->landed);
        free(u->released);
        free(u->has_landed);
        free(u->has_released);
        live_uploaders--;
    }
#endif
    for (int k = 0; k < u->depth; k++) dev_free(u->dev, u->buf[k], u->bytes);
    free(u->buf);
    free(u);
}
