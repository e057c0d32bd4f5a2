// cuda_runtime.h - the EMULATOR's stand-in for the CUDA runtime header (cuda/emu/build.sh only; the real build
// uses the toolkit's). The C part serves tensor/device.c; the C++ part gives the kernels their built-ins.
#ifndef EMU_CUDA_RUNTIME_H
#define EMU_CUDA_RUNTIME_H

#include <math.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorCudartUnloading = 4,     // every call after the runtime's own exit handler has run
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNotReady = 600,
    cudaErrorContextIsDestroyed = 709
} cudaError_t;

// Streams: 0 is the legacy default stream, which runs at once (kernels, copies, memsets, GEMMs, in call order).
// Work queued on any other stream is held back until something waits for it (cudaStreamWaitEvent,
// cudaEventSynchronize, cudaStreamSynchronize, cudaDeviceSynchronize), and reads its source only then: a missing
// wait shows up as stale data, and host memory changed before the copy ran is what the copy delivers.
// Streams created without cudaStreamNonBlocking are also flushed before any legacy-stream work, as CUDA does.
typedef struct EmuStream *cudaStream_t;
typedef struct EmuEvent *cudaEvent_t;
#define cudaStreamDefault 0x0
#define cudaStreamNonBlocking 0x1
#define cudaEventDefault 0x0
#define cudaEventDisableTiming 0x2
#define cudaHostAllocDefault 0x0

struct cudaDeviceProp {  // the fields the engine reads
    char name[256];
    size_t totalGlobalMem;
    int major, minor, multiProcessorCount;
};

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3
};

cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind);
cudaError_t cudaMemset(void *p, int value, size_t bytes);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind, cudaStream_t s);
cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t s);
cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned int flags);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned int flags);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaGetLastError(void);
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);

#ifdef __cplusplus
}

#include <functional>

struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

extern dim3 threadIdx, blockIdx, blockDim, gridDim;  // of the thread (fiber) running now

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static  // blocks run one at a time, so one copy serves every block

void __syncthreads(void);

// warp shuffles: every lane posts its value, waits for its warp, reads its partner's, waits again
void emu_warp_barrier(void);
int emu_linear_tid(void);
extern unsigned long long emu_warp_slots[32][32];  // [warp][lane]

template <typename T>
T __shfl_xor_sync(unsigned int mask, T v, int lane_mask) {
    static_assert(sizeof(T) <= sizeof(unsigned long long), "shuffle of more than 8 bytes");
    int t = emu_linear_tid(), lane = t & 31, warp = t >> 5;
    unsigned long long bits = 0;
    __builtin_memcpy(&bits, &v, sizeof(T));
    emu_warp_slots[warp][lane] = bits;
    emu_warp_barrier();
    unsigned long long other = emu_warp_slots[warp][lane ^ lane_mask];
    emu_warp_barrier();
    T r;
    __builtin_memcpy(&r, &other, sizeof(T));
    return r;
}

// the integer min / max overloads CUDA provides in device code
inline int min(int a, int b) { return a < b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }

// what  kernel<<<grid, block>>>(args);  becomes (cuda/emu/convert.py)
void emu_launch(dim3 grid, dim3 block, std::function<void()> body);

#endif
#endif
