// device.h - memory on the CPU or the CUDA device; copies; batch uploads.
// CUDA: freed blocks are kept in per-size free lists and handed out again, so a training step whose shapes repeat
// allocates nothing after its first iteration (no cudaMalloc in the steady state). CPU: blocks come from malloc's
// heap and go back to it (no mmap, no trimming), which reuses the same memory each step without page faults.
// This file and tensor/device.c are the only place in tensor/ that knows CUDA exists (behind USE_CUDA).
//
// Ordering: all device work (kernels, cuBLAS, the copies below) is queued on one stream, CUDA's legacy default
// stream, and runs in the order it was queued. Only three things make the host wait for the device: a copy to the
// host (the host needs the bytes), dev_synchronize, and freeing the pool's cache. In particular a host-to-device
// dev_copy returns at once: the bytes are staged in pinned memory and sent in stream order, and the caller may
// reuse its buffer immediately.
// Not thread-safe: one thread drives the device (the data loader's workers never call these).
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
void dev_free(Device dev, void *ptr, size_t bytes);            // back to the pool or heap (bytes as asked)
void dev_copy(void *dst, Device dst_dev, const void *src, Device src_dev, size_t bytes);
void dev_zero(Device dev, void *ptr, size_t bytes);
// Returns every cached block, the staging memory and the upload stream to the system (waits for the device
// first). Also registered with atexit; safe after CUDA's own exit handler has run (the driver frees it all then).
void dev_pool_release(void);
size_t dev_pool_in_use(Device dev);                            // bytes handed out and not yet freed
size_t dev_pool_cached(Device dev);                            // bytes held in free lists (CPU: 0)
// Peaks since the start or the last reset: the most bytes handed out at once, and the most held from the system
// at once (handed out + cached; what torch.cuda.max_memory_allocated / max_memory_reserved count for PyTorch).
size_t dev_pool_peak_in_use(Device dev);
size_t dev_pool_peak_held(Device dev);
void dev_pool_reset_peaks(void);
// Test builds: every block the pool hands out, fresh or reused, is filled with NaN (bytes 0xff) first, so a kernel
// that leaves an element unwritten, or adds into memory nobody zeroed, produces NaN instead of reading as zero.
// Also on when the environment has POISON_POOL=1 at the first allocation.
void dev_pool_set_poison(bool on);
bool dev_pool_poison(void);
bool dev_cuda_available(void);                                 // built with CUDA and a device is present
// One line about the device ("NVIDIA H200, sm_90, 139.8 GiB, 132 SMs"); false (buf = reason) without one.
bool dev_cuda_describe(char *buf, int size);
void dev_synchronize(void);
// Tests: the size of the pinned staging ring for host-to-device copies (default 64 MiB). Copies larger than half of
// it go synchronously. Takes effect at the next copy after the ring is idle.
void dev_set_staging_bytes(size_t bytes);

// ---- Uploader: input batches copied to the device on their own stream, while the step before them runs ----
// Holds `depth` device buffers of up to `bytes` each, used in turn, each with its own pinned staging buffer.
//   void *buf = uploader_put(u, host, n);   copies host into pinned memory (host may be reused at once) and starts
//                                           the copy to the next device buffer on the upload stream; returns it
//   uploader_use(u, buf);                   before the first op that reads buf: the compute stream waits for that
//                                           copy (the host does not), and buffers used before are released
// A buffer is written again only after the work queued before the uploader_use that replaced it has run, so the
// step that still reads buffer k and the upload into buffer k + 1 overlap safely. Pattern: put(batch 0); then per
// step: use(current); queue the step; put(next batch); read the step's results. depth >= 2.
// On the CPU a put is a plain copy into the next buffer and use does nothing.
typedef struct Uploader Uploader;
Uploader *uploader_new(Device dev, size_t bytes, int depth);
void *uploader_put(Uploader *u, const void *host, size_t bytes);
void uploader_use(Uploader *u, const void *buffer);
void uploader_free(Uploader *u);   // waits for its copies; NULL is fine

#ifdef __cplusplus
}
#endif

#endif
