// common.cuh - what every CUDA kernel file shares: checked CUDA and cuBLAS calls, launch geometry,
// deterministic warp/block reductions, device scratch memory and the cuBLAS handle.
//
// Everything runs on the legacy default stream, so kernels run in the order they are queued. That is what makes
// the scratch memory safe: a block handed back to the pool and given out again is only touched by kernels queued
// after the ones that used it before.
//
// Determinism: no float atomics anywhere. Sums are done by a fixed tree (warp shuffles, then the block's warps in
// order) over a fixed assignment of elements to threads that depends only on the shapes, never on timing.
#ifndef CUDA_COMMON_CUH
#define CUDA_COMMON_CUH

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

extern "C" {
#include "../tensor/device.h"
}

#define CUDA_CHECK(call)                                                                                    \
    do {                                                                                                    \
        cudaError_t err_ = (call);                                                                          \
        if (err_ != cudaSuccess) {                                                                          \
            fprintf(stderr, "%s:%d: CUDA error %s: %s\n", __FILE__, __LINE__, cudaGetErrorName(err_),       \
                    cudaGetErrorString(err_));                                                              \
            exit(1);                                                                                        \
        }                                                                                                   \
    } while (0)

#define CUBLAS_CHECK(call)                                                                                  \
    do {                                                                                                    \
        cublasStatus_t status_ = (call);                                                                    \
        if (status_ != CUBLAS_STATUS_SUCCESS) {                                                             \
            fprintf(stderr, "%s:%d: cuBLAS error %s\n", __FILE__, __LINE__, cublas_status_name(status_));   \
            exit(1);                                                                                        \
        }                                                                                                   \
    } while (0)

// after every kernel launch: a bad configuration (0 blocks, too much shared memory) is reported at its line
#define LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

// the names, not only numbers, of cuBLAS failures (cublasGetStatusName only exists in recent toolkits)
static inline const char *cublas_status_name(cublasStatus_t status) {
    switch (status) {
        case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
        case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
        case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
        case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
        case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
        case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
        case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
        default: return "unknown cuBLAS status";
    }
}

// ---- launch geometry: grid-stride loops over ceil-div grids, capped so huge tensors reuse threads ----
#define THREADS 256            // threads per block everywhere (a multiple of 32: the reductions rely on it)
#define MAX_BLOCKS 8192        // 2M threads in flight; larger sizes loop (grid-stride)

static inline unsigned int blocks_for(long n) {
    long blocks = (n + THREADS - 1) / THREADS;
    return (unsigned int)(blocks < 1 ? 1 : blocks > MAX_BLOCKS ? MAX_BLOCKS : blocks);
}

// for (i = this thread's first index; i < n; i += every thread of the grid), with 64-bit indices
#define GRID_STRIDE(i, n) \
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (long)gridDim.x * blockDim.x)

// ---- deterministic reductions (fixed order; every lane of the warp / thread of the block must call them) ----
template <typename T>
static __device__ __forceinline__ T warp_sum(T v) {  // the total, in every lane
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

static __device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// Sum over the block, returned to every thread. scratch: 32 T of shared memory.
template <typename T>
static __device__ T block_sum(T v, T *scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // a previous call may still be reading scratch
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    T total = 0;
    for (int w = 0; w < n_warps; w++) total += scratch[w];  // same order in every thread
    return total;
}

static __device__ __forceinline__ float block_max(float v, float *scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float m = scratch[0];
    for (int w = 1; w < n_warps; w++) m = fmaxf(m, scratch[w]);
    return m;
}

// ---- scratch memory from the caching pool (no cudaMalloc in the steady state) ----
static inline void *scratch_alloc(size_t bytes) { return dev_alloc(DEV_CUDA, bytes); }
static inline void scratch_free(void *ptr, size_t bytes) { dev_free(DEV_CUDA, ptr, bytes); }

// ---- cuBLAS (defined in linalg.cu) ----
// The one handle, created on first use, FP32 math (no TF32) so that results stay close to the CPU's.
cublasHandle_t cublas_handle(void);
// Row-major, batched: C_b (M, N) = alpha * op(A_b) op(B_b) + beta * C_b for b < batch, with leading dimensions
// (row pitches) lda, ldb, ldc and element strides between batch members (0 = the same matrix for every b).
// tf32: TF32 tensor-core math (inputs rounded to 10 mantissa bits, FP32 accumulation) instead of FP32.
void gemm_rowmajor_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                           long stride_a, const float *B, int ldb, long stride_b, float beta, float *C, int ldc,
                           long stride_c, int batch, bool tf32);
// gemm_cuda's contiguous single product, with the math mode chosen by the caller
void gemm_rowmajor(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, const float *B,
                   float beta, float *C, bool tf32);

#endif
