// emu.cpp - the CUDA runtime, kernel launches and cuBLAS SGEMM emulated on the CPU (see build.sh). Verification
// only: it runs the real cuda/*.cu kernel code, one fiber per CUDA thread, in a single OS thread.
//   * A block's threads run as fibers; __syncthreads and warp shuffles are real barriers. A barrier that cannot be
//     met (divergent __syncthreads, a shuffle with exited lanes) aborts with a message.
//   * Blocks run one after another, fibers in forward order in one block and reverse order in the next, so a
//     missing barrier around shared memory shows up as a wrong result.
//   * Launches are checked like CUDA checks them (empty grid, grid.y/z > 65535, more than 1024 threads) and report
//     cudaErrorInvalidConfiguration through cudaGetLastError.
//   * cuBLAS: column-major SGEMM by definition, with cuBLAS's checks of sizes and leading dimensions; TF32 or any
//     math mode but the default is refused.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <map>
#include <vector>

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/common_interface_defs.h>
#endif

dim3 threadIdx, blockIdx, blockDim, gridDim;
unsigned long long emu_warp_slots[32][32];
static cudaError_t last_error = cudaSuccess;

// ---- device memory ----
// EMU_PROTECT=1: every allocation gets its own pages, readable only while a kernel, a copy, a memset or a GEMM
// runs, so host code that dereferences a device pointer crashes. Otherwise plain malloc (exact size, for ASan).
static bool protect_mode(void) {
    static int mode = -1;
    if (mode < 0) mode = getenv("EMU_PROTECT") != nullptr;
    return mode;
}

static std::map<void *, size_t> device_blocks;  // protect mode: start -> mapped length
static int access_depth;

static void set_access(int prot) {
    for (auto &block : device_blocks) mprotect(block.first, block.second, prot);
}

struct DeviceAccess {  // device memory readable for the lifetime of this object
    DeviceAccess() {
        if (protect_mode() && access_depth++ == 0) set_access(PROT_READ | PROT_WRITE);
    }
    ~DeviceAccess() {
        if (protect_mode() && --access_depth == 0) set_access(PROT_NONE);
    }
};

extern "C" {
cudaError_t cudaMalloc(void **p, size_t bytes) {
    if (!protect_mode()) {
        *p = malloc(bytes ? bytes : 1);
        return *p ? cudaSuccess : cudaErrorMemoryAllocation;
    }
    size_t len = (bytes + 4095) / 4096 * 4096 + 4096;
    void *m = mmap(nullptr, len, access_depth ? PROT_READ | PROT_WRITE : PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                   0);
    if (m == MAP_FAILED) return cudaErrorMemoryAllocation;
    device_blocks[m] = len;
    *p = m;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
    if (!protect_mode()) {
        free(p);
        return cudaSuccess;
    }
    auto it = device_blocks.find(p);
    if (it == device_blocks.end()) return cudaErrorInvalidValue;
    munmap(p, it->second);
    device_blocks.erase(it);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind) {
    DeviceAccess access;
    memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemset(void *p, int value, size_t bytes) {
    DeviceAccess access;
    memset(p, value, bytes);
    return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int *n) {
    *n = 1;
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }

cudaError_t cudaGetLastError(void) {
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

const char *cudaGetErrorString(cudaError_t e) {
    return e == cudaSuccess ? "no error" : e == cudaErrorInvalidConfiguration ? "invalid configuration argument"
                                                                              : "emulated CUDA error";
}

const char *cudaGetErrorName(cudaError_t e) {
    return e == cudaSuccess ? "cudaSuccess" : e == cudaErrorInvalidConfiguration ? "cudaErrorInvalidConfiguration"
                                                                                 : "cudaErrorEmulated";
}
}

// ---- threads as fibers ----
enum FiberState { RUNNABLE, AT_BLOCK_BARRIER, AT_WARP_BARRIER, DONE };
struct Fiber {
    ucontext_t ctx;
    char *stack;
    FiberState state;
    dim3 tid;
    int linear;  // x + y * bx + z * bx * by: the lane is linear % 32, the warp linear / 32
};

static const size_t STACK_BYTES = 256 * 1024;
static std::vector<Fiber> fibers;
static ucontext_t scheduler;
static int current;
static std::function<void()> *kernel_body;
static bool reverse_order;

int emu_linear_tid(void) { return fibers[current].linear; }

static void fail(const char *msg) {
    fprintf(stderr, "CUDA emulator: %s (block %u,%u,%u)\n", msg, blockIdx.x, blockIdx.y, blockIdx.z);
    abort();
}

static void yield_to_scheduler(void) {
#ifdef __SANITIZE_ADDRESS__
    void *fake_stack = nullptr;
    __sanitizer_start_switch_fiber(fibers[current].state == DONE ? nullptr : &fake_stack, nullptr, 0);
#endif
    swapcontext(&fibers[current].ctx, &scheduler);
#ifdef __SANITIZE_ADDRESS__
    __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
}

static void fiber_main(void) {
#ifdef __SANITIZE_ADDRESS__
    __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
    (*kernel_body)();
    fibers[current].state = DONE;
    yield_to_scheduler();  // never resumed
}

void __syncthreads(void) {
    fibers[current].state = AT_BLOCK_BARRIER;
    yield_to_scheduler();
}

void emu_warp_barrier(void) {
    fibers[current].state = AT_WARP_BARRIER;
    yield_to_scheduler();
}

static void resume(int f) {
    current = f;
    threadIdx = fibers[f].tid;
#ifdef __SANITIZE_ADDRESS__
    void *fake_stack = nullptr;
    __sanitizer_start_switch_fiber(&fake_stack, fibers[f].stack, STACK_BYTES);
#endif
    swapcontext(&scheduler, &fibers[f].ctx);
#ifdef __SANITIZE_ADDRESS__
    __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
}

// Runs the n threads of the current block to completion, releasing barriers as they fill up.
static void run_block(int n) {
    for (int f = 0; f < n; f++) {
        getcontext(&fibers[f].ctx);
        fibers[f].ctx.uc_stack.ss_sp = fibers[f].stack;
        fibers[f].ctx.uc_stack.ss_size = STACK_BYTES;
        fibers[f].ctx.uc_link = nullptr;
        makecontext(&fibers[f].ctx, fiber_main, 0);
        fibers[f].state = RUNNABLE;
    }
    for (;;) {
        for (int k = 0; k < n; k++) {
            int f = reverse_order ? n - 1 - k : k;
            if (fibers[f].state == RUNNABLE) resume(f);
        }
        int done = 0, at_block = 0;
        for (int f = 0; f < n; f++) {
            done += fibers[f].state == DONE;
            at_block += fibers[f].state == AT_BLOCK_BARRIER;
        }
        if (done == n) return;
        bool released = false;
        for (int w = 0; w * 32 < n; w++) {  // a shuffle needs every lane of its warp (full mask)
            int waiting = 0, exited = 0;
            for (int l = 0; l < 32; l++) {
                waiting += fibers[w * 32 + l].state == AT_WARP_BARRIER;
                exited += fibers[w * 32 + l].state == DONE;
            }
            if (waiting > 0 && exited > 0 && waiting + exited == 32) fail("warp shuffle after some lanes exited");
            if (waiting == 32) {
                for (int l = 0; l < 32; l++) fibers[w * 32 + l].state = RUNNABLE;
                released = true;
            }
        }
        if (released) continue;
        if (at_block == n) {
            for (int f = 0; f < n; f++) fibers[f].state = RUNNABLE;
            continue;
        }
        fail(at_block + done == n ? "__syncthreads after some threads exited"
                                  : "deadlock: threads wait at different barriers");
    }
}

static void free_stacks(void) {
    for (Fiber &f : fibers) free(f.stack);
    fibers.clear();
}

void emu_launch(dim3 grid, dim3 block, std::function<void()> body) {
    static bool registered;
    if (!registered) {
        atexit(free_stacks);
        registered = true;
    }
    unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    if (grid.x < 1 || grid.y < 1 || grid.z < 1 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535 ||
        threads < 1 || threads > 1024 || block.z > 64) {
        last_error = cudaErrorInvalidConfiguration;
        return;
    }
    if (threads % 32) fail("block size not a multiple of 32 (the engine's reductions assume whole warps)");
    int n = (int)threads;
    for (size_t f = fibers.size(); f < (size_t)n; f++) {
        fibers.push_back(Fiber{});
        fibers.back().stack = (char *)malloc(STACK_BYTES);
    }
    for (int f = 0; f < n; f++) {
        fibers[f].tid = dim3(f % block.x, f / block.x % block.y, f / (block.x * block.y));
        fibers[f].linear = f;
    }
    DeviceAccess access;
    kernel_body = &body;
    blockDim = block;
    gridDim = grid;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                blockIdx = dim3(x, y, z);
                run_block(n);
                reverse_order = !reverse_order;
            }
}

// ---- cuBLAS ----
struct FakeCublas {
    cublasMath_t math;
};
static FakeCublas *the_handle;

static void free_handle(void) { delete the_handle; }

// cuBLAS's rules: sizes >= 0; a stored matrix of r rows needs a leading dimension >= max(1, r)
static cublasStatus_t check_gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                 int lda, int ldb, int ldc) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (h->math != CUBLAS_DEFAULT_MATH) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
    int rows_a = ta == CUBLAS_OP_N ? m : k, rows_b = tb == CUBLAS_OP_N ? k : n;
    if (lda < (rows_a > 1 ? rows_a : 1) || ldb < (rows_b > 1 ? rows_b : 1) || ldc < (m > 1 ? m : 1)) {
        fprintf(stderr, "CUDA emulator: cuBLAS leading dimensions m=%d n=%d k=%d lda=%d ldb=%d ldc=%d\n", m, n, k,
                lda, ldb, ldc);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    return CUBLAS_STATUS_SUCCESS;
}

// column-major C (m, n) = alpha op(A) op(B) + beta C; C is not read when beta == 0
static void gemm_colmajor(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                          const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < m; i++) {
            float s = 0.0f;
            for (int p = 0; p < k; p++) {
                float a = ta == CUBLAS_OP_N ? A[i + (long)p * lda] : A[p + (long)i * lda];
                float b = tb == CUBLAS_OP_N ? B[p + (long)j * ldb] : B[j + (long)p * ldb];
                s += a * b;
            }
            float *c = &C[i + (long)j * ldc];
            *c = beta == 0.0f ? alpha * s : alpha * s + beta * *c;
        }
    }
}

extern "C" {
cublasStatus_t cublasCreate(cublasHandle_t *h) {
    if (!the_handle) {
        the_handle = new FakeCublas{CUBLAS_DEFAULT_MATH};
        atexit(free_handle);
    }
    *h = the_handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode) {
    h->math = mode;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float *alpha, const float *A, int lda, const float *B, int ldb, const float *beta,
                           float *C, int ldc) {
    cublasStatus_t status = check_gemm(h, ta, tb, m, n, k, lda, ldb, ldc);
    if (status != CUBLAS_STATUS_SUCCESS) return status;
    DeviceAccess access;
    gemm_colmajor(ta, tb, m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float *alpha, const float *A, int lda, long long stride_a,
                                         const float *B, int ldb, long long stride_b, const float *beta, float *C,
                                         int ldc, long long stride_c, int batch) {
    cublasStatus_t status = check_gemm(h, ta, tb, m, n, k, lda, ldb, ldc);
    if (status != CUBLAS_STATUS_SUCCESS) return status;
    if (batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
    DeviceAccess access;
    for (int b = 0; b < batch; b++)
        gemm_colmajor(ta, tb, m, n, k, *alpha, A + b * stride_a, lda, B + b * stride_b, ldb, *beta, C + b * stride_c,
                      ldc);
    return CUBLAS_STATUS_SUCCESS;
}
}
