// emu.cpp - the CUDA runtime, kernel launches and cuBLAS SGEMM emulated on the CPU (see build.sh). Verification
// only: it runs the real cuda/*.cu kernel code, one fiber per CUDA thread, in a single OS thread.
//   * A block's threads run as fibers; __syncthreads and warp shuffles are real barriers. A barrier that cannot be
//     met (divergent __syncthreads, a shuffle with exited lanes) aborts with a message.
//   * Blocks run one after another, fibers in forward order in one block and reverse order in the next, so a
//     missing barrier around shared memory shows up as a wrong result.
//   * Launches are checked like CUDA checks them (empty grid, grid.y/z > 65535, more than 1024 threads) and report
//     cudaErrorInvalidConfiguration through cudaGetLastError.
//   * cuBLAS: column-major SGEMM by definition, with cuBLAS's checks of sizes and leading dimensions. The TF32 math
//     mode rounds both operands to TF32 (10 mantissa bits, to nearest) before the float multiply-adds, as tensor
//     cores do; any other math mode but the default is refused.
//   * Streams and events (see cuda_runtime.h): the legacy default stream runs at once; other streams run only when
//     waited for, so a missing cudaStreamWaitEvent or a host buffer reused too early shows up as wrong data.
//   * The runtime's exit: like libcudart, the first call registers an exit handler after which every call returns
//     cudaErrorCudartUnloading, so a program that frees device memory from its own, earlier registered, atexit
//     handler meets the same error here as on a GPU.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
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
static std::map<void *, size_t> allocated;      // every live device block -> bytes asked (cudaMemGetInfo)
static size_t allocated_bytes;
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

// ---- the runtime's lifetime: an exit handler registered by the first call, as libcudart does ----
static bool runtime_up, runtime_gone;

static void runtime_teardown(void) { runtime_gone = true; }

// at the start of every runtime call: cudaErrorCudartUnloading once the exit handler has run
static cudaError_t enter(void) {
    if (runtime_gone) return cudaErrorCudartUnloading;
    if (!runtime_up) {
        runtime_up = true;
        atexit(runtime_teardown);
    }
    return cudaSuccess;
}

#define ENTER()                        \
    do {                               \
        cudaError_t e_ = enter();      \
        if (e_ != cudaSuccess) return e_; \
    } while (0)

// ---- streams: the legacy stream (0) runs at once, the others when waited for ----
struct PendingOp {
    bool is_memset;
    void *dst;
    const void *src;
    int value;
    size_t bytes;
};
struct EmuStream {
    bool nonblocking;
    std::vector<PendingOp> ops;  // ops[done..] have not run yet
    size_t done;
};
struct EmuEvent {
    EmuStream *stream;  // NULL: recorded on the legacy stream (complete at once) or never recorded
    size_t target;      // the stream's op count when recorded: complete once that many ops ran
};
static std::vector<EmuStream *> streams;

static void run_op(const PendingOp &op) {
    DeviceAccess access;
    if (op.is_memset) memset(op.dst, op.value, op.bytes);
    else memmove(op.dst, op.src, op.bytes);
}

static void flush(EmuStream *s, size_t upto) {
    while (s->done < upto && s->done < s->ops.size()) run_op(s->ops[s->done++]);
}

static void flush_all(bool blocking_only) {
    for (EmuStream *s : streams)
        if (!blocking_only || !s->nonblocking) flush(s, s->ops.size());
}

// legacy-stream work waits for every blocking stream first (CUDA's implicit synchronisation)
void emu_legacy_stream_begin(void) { flush_all(true); }

static cudaError_t enqueue(cudaStream_t s, const PendingOp &op) {
    if (!s) {
        flush_all(true);
        run_op(op);
        return cudaSuccess;
    }
    s->ops.push_back(op);
    return cudaSuccess;
}

extern "C" {
cudaError_t cudaMalloc(void **p, size_t bytes) {
    ENTER();
    if (!protect_mode()) {
        *p = malloc(bytes ? bytes : 1);
        if (!*p) return cudaErrorMemoryAllocation;
    } else {
        size_t len = (bytes + 4095) / 4096 * 4096 + 4096;
        void *m = mmap(nullptr, len, access_depth ? PROT_READ | PROT_WRITE : PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
        if (m == MAP_FAILED) return cudaErrorMemoryAllocation;
        device_blocks[m] = len;
        *p = m;
    }
    allocated[*p] = bytes;
    allocated_bytes += bytes;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
    ENTER();
    if (!p) return cudaSuccess;
    flush_all(false);  // cudaFree waits for the device
    auto a = allocated.find(p);
    if (a == allocated.end()) return cudaErrorInvalidValue;
    allocated_bytes -= a->second;
    allocated.erase(a);
    if (!protect_mode()) {
        free(p);
        return cudaSuccess;
    }
    auto it = device_blocks.find(p);
    munmap(p, it->second);
    device_blocks.erase(it);
    return cudaSuccess;
}

cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned int flags) {
    ENTER();
    *p = aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}

cudaError_t cudaFreeHost(void *p) {
    ENTER();
    flush_all(false);
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind) {
    ENTER();
    return enqueue(nullptr, PendingOp{false, dst, src, 0, bytes});
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind, cudaStream_t s) {
    ENTER();
    return enqueue(s, PendingOp{false, dst, src, 0, bytes});
}

cudaError_t cudaMemset(void *p, int value, size_t bytes) {
    ENTER();
    return enqueue(nullptr, PendingOp{true, p, nullptr, value, bytes});
}

cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t s) {
    ENTER();
    return enqueue(s, PendingOp{true, p, nullptr, value, bytes});
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags) {
    ENTER();
    *s = new EmuStream{(flags & cudaStreamNonBlocking) != 0, {}, 0};
    streams.push_back(*s);
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t s) {
    ENTER();
    if (!s) return cudaErrorInvalidResourceHandle;
    flush(s, s->ops.size());  // queued work still runs, as in CUDA
    for (size_t i = 0; i < streams.size(); i++)
        if (streams[i] == s) streams.erase(streams.begin() + (long)i);
    delete s;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    ENTER();
    if (!s) flush_all(true);
    else flush(s, s->ops.size());
    return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int flags) {
    ENTER();
    *e = new EmuEvent{nullptr, 0};
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t e) {
    ENTER();
    delete e;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    ENTER();
    if (!s) flush_all(true);  // the legacy stream has run everything queued so far
    e->stream = s;
    e->target = s ? s->ops.size() : 0;
    return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t e) {
    ENTER();
    return !e->stream || e->stream->done >= e->target ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    ENTER();
    if (e->stream) flush(e->stream, e->target);
    return cudaSuccess;
}

// the waiting stream's later work runs at once in this emulator (legacy) or when it is flushed, so the event's work
// runs now: a valid schedule, and the only way later legacy work can see its result
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned int flags) {
    ENTER();
    if (e->stream) flush(e->stream, e->target);
    return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int *n) {
    ENTER();
    *n = 1;
    return cudaSuccess;
}

static const size_t EMU_DEVICE_BYTES = 16ull << 30;

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device) {
    ENTER();
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "CUDA emulator on the CPU");
    prop->totalGlobalMem = EMU_DEVICE_BYTES;
    prop->major = 9;
    prop->minor = 0;
    prop->multiProcessorCount = 1;
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    ENTER();
    *total_bytes = EMU_DEVICE_BYTES;
    *free_bytes = allocated_bytes < EMU_DEVICE_BYTES ? EMU_DEVICE_BYTES - allocated_bytes : 0;
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
    ENTER();
    flush_all(false);
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "no error";
        case cudaErrorInvalidConfiguration: return "invalid configuration argument";
        case cudaErrorCudartUnloading: return "driver shutting down";
        case cudaErrorNotReady: return "device not ready";
        default: return "emulated CUDA error";
    }
}

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "cudaSuccess";
        case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
        case cudaErrorCudartUnloading: return "cudaErrorCudartUnloading";
        case cudaErrorNotReady: return "cudaErrorNotReady";
        default: return "cudaErrorEmulated";
    }
}
}

// ---- threads as fibers ----
// On x86-64 a fiber switch is a few instructions of our own (callee-saved registers and the stack pointer; no
// signal mask, so no system call, unlike swapcontext: that made half of the emulator's time system time).
// Elsewhere ucontext.
enum FiberState { RUNNABLE, AT_BLOCK_BARRIER, AT_WARP_BARRIER, DONE };
struct Fiber {
#if defined(__x86_64__)
    void *sp;  // saved stack pointer while switched out
#else
    ucontext_t ctx;
#endif
    char *stack;
    FiberState state;
    dim3 tid;
    int linear;  // x + y * bx + z * bx * by: the lane is linear % 32, the warp linear / 32
};

static const size_t STACK_BYTES = 256 * 1024;
static std::vector<Fiber> fibers;
#if defined(__x86_64__)
static void *scheduler_sp;
// emu_switch(&save, next): pushes the callee-saved registers, stores the stack pointer in *save, loads next's and
// pops its registers; the ret resumes next where it switched out (or enters fiber_entry the first time)
extern "C" void emu_switch(void **save, void *next);
asm(R"(
    .text
    .globl emu_switch
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
    .section .note.GNU-stack,"",@progbits
    .text
)");
#else
static ucontext_t scheduler;
#endif
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
#if defined(__x86_64__)
    emu_switch(&fibers[current].sp, scheduler_sp);
#else
    swapcontext(&fibers[current].ctx, &scheduler);
#endif
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
    abort();
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
#if defined(__x86_64__)
    emu_switch(&scheduler_sp, fibers[f].sp);
#else
    swapcontext(&scheduler, &fibers[f].ctx);
#endif
#ifdef __SANITIZE_ADDRESS__
    __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
}

// a fresh fiber at the start of fiber_main
static void start_fiber(Fiber &f) {
#if defined(__x86_64__)
    // top of stack, 16-aligned: [top-8] a zero return address, [top-16] fiber_main (emu_switch's ret enters it with
    // rsp = top - 8, as after a call), below it the six registers emu_switch pops
    uintptr_t top = ((uintptr_t)(f.stack + STACK_BYTES)) & ~(uintptr_t)15;
    void **sp = (void **)top;
    *--sp = nullptr;
    *--sp = (void *)fiber_main;
    for (int r = 0; r < 6; r++) *--sp = nullptr;
    f.sp = sp;
#else
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack;
    f.ctx.uc_stack.ss_size = STACK_BYTES;
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, fiber_main, 0);
#endif
    f.state = RUNNABLE;
}

// Runs the n threads of the current block to completion, releasing barriers as they fill up.
static void run_block(int n) {
    for (int f = 0; f < n; f++) start_fiber(fibers[f]);
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
    emu_legacy_stream_begin();
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
    if (h->math != CUBLAS_DEFAULT_MATH && h->math != CUBLAS_TF32_TENSOR_OP_MATH) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
    int rows_a = ta == CUBLAS_OP_N ? m : k, rows_b = tb == CUBLAS_OP_N ? k : n;
    if (lda < (rows_a > 1 ? rows_a : 1) || ldb < (rows_b > 1 ? rows_b : 1) || ldc < (m > 1 ? m : 1)) {
        fprintf(stderr, "CUDA emulator: cuBLAS leading dimensions m=%d n=%d k=%d lda=%d ldb=%d ldc=%d\n", m, n, k,
                lda, ldb, ldc);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    return CUBLAS_STATUS_SUCCESS;
}

// a float rounded to TF32: 10 explicit mantissa bits, to nearest with ties away from zero (cvt.rna.tf32.f32)
static float to_tf32(float x) {
    unsigned int bits;
    memcpy(&bits, &x, sizeof bits);
    if ((bits & 0x7f800000u) != 0x7f800000u) bits = (bits + 0x1000u) & 0xffffe000u;  // Inf and NaN stay
    memcpy(&x, &bits, sizeof x);
    return x;
}

// column-major C (m, n) = alpha op(A) op(B) + beta C; C is not read when beta == 0
static void gemm_colmajor(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                          const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc, bool tf32) {
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < m; i++) {
            float s = 0.0f;
            for (int p = 0; p < k; p++) {
                float a = ta == CUBLAS_OP_N ? A[i + (long)p * lda] : A[p + (long)i * lda];
                float b = tb == CUBLAS_OP_N ? B[p + (long)j * ldb] : B[j + (long)p * ldb];
                if (tf32) {
                    a = to_tf32(a);
                    b = to_tf32(b);
                }
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
    emu_legacy_stream_begin();
    DeviceAccess access;
    gemm_colmajor(ta, tb, m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc, h->math == CUBLAS_TF32_TENSOR_OP_MATH);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float *alpha, const float *A, int lda, long long stride_a,
                                         const float *B, int ldb, long long stride_b, const float *beta, float *C,
                                         int ldc, long long stride_c, int batch) {
    cublasStatus_t status = check_gemm(h, ta, tb, m, n, k, lda, ldb, ldc);
    if (status != CUBLAS_STATUS_SUCCESS) return status;
    if (batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
    emu_legacy_stream_begin();
    DeviceAccess access;
    for (int b = 0; b < batch; b++)
        gemm_colmajor(ta, tb, m, n, k, *alpha, A + b * stride_a, lda, B + b * stride_b, ldb, *beta, C + b * stride_c,
                      ldc, h->math == CUBLAS_TF32_TENSOR_OP_MATH);
    return CUBLAS_STATUS_SUCCESS;
}
}
