// linalg.cu - CUDA twins of ops/linalg.c: cuBLAS GEMM in row-major terms, and the bias add and its reduction.
// Legend: M, N, K the GEMM sizes; N, C, S batch, channels and positions for the bias.
#include "../ops/linalg.h"
#include "common.cuh"

static cublasHandle_t handle;
static cublasMath_t handle_math = CUBLAS_DEFAULT_MATH;   // the math mode the handle is set to now

cublasHandle_t cublas_handle(void) {
    if (!handle) {
        CUBLAS_CHECK(cublasCreate(&handle));
        // FP32 inputs and FP32 arithmetic: no TF32 tensor-core rounding, so results stay within float error of the CPU
        CUBLAS_CHECK(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH));
        handle_math = CUBLAS_DEFAULT_MATH;
    }
    return handle;
}

// The handle in FP32 or TF32 mode for the next call; a host-side setting of the handle, changed only when it differs.
static cublasHandle_t handle_for(bool tf32) {
    cublasHandle_t h = cublas_handle();
    cublasMath_t want = tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
    if (want != handle_math) {
        CUBLAS_CHECK(cublasSetMathMode(h, want));
        handle_math = want;
    }
    return h;
}

// cuBLAS is column-major; a row-major (R, C) matrix is the column-major (C, R) matrix with the same pitch.
// Row-major C = op(A) op(B) is therefore column-major C^T = op(B)^T op(A)^T: pass B first, A second, and swap M, N.
void gemm_rowmajor_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                           long stride_a, const float *B, int ldb, long stride_b, float beta, float *C, int ldc,
                           long stride_c, int batch, bool tf32) {
    if (M <= 0 || N <= 0 || batch <= 0) return;
    cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasHandle_t h = handle_for(tf32);
    if (batch == 1)
        CUBLAS_CHECK(cublasSgemm(h, op_b, op_a, N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc));
    else
        CUBLAS_CHECK(cublasSgemmStridedBatched(h, op_b, op_a, N, M, K, &alpha, B, ldb, stride_b, A, lda, stride_a,
                                               &beta, C, ldc, stride_c, batch));
}

// the single-matrix case, contiguous (pitch = stored columns, at least 1 for cuBLAS)
void gemm_rowmajor(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, const float *B,
                   float beta, float *C, bool tf32) {
    int lda = trans_a ? M : K, ldb = trans_b ? K : N;
    gemm_rowmajor_batched(trans_a, trans_b, M, N, K, alpha, A, lda > 0 ? lda : 1, 0, B, ldb > 0 ? ldb : 1, 0, beta,
                          C, N, 0, 1, tf32);
}

// Row-major C (M, N) = alpha * op(A) * op(B) + beta * C; A stored (M, K) or (K, M) when trans_a,
// B stored (K, N) or (N, K) when trans_b, all contiguous. Always full FP32, whatever engine_set_tf32 says: this is
// the GEMM of op_matmul (the NCE scores, whose differences of large values TF32 would swamp) and op_linear.
void gemm_cuda(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, const float *B,
               float beta, float *C) {
    gemm_rowmajor(trans_a, trans_b, M, N, K, alpha, A, B, beta, C, false);
}

// out[n, c, s] += b[c];  out: (N, C, S)
static __global__ void bias_forward_kernel(float *out, const float *b, long C, long S, long total) {
    GRID_STRIDE(t, total) out[t] += b[(t / S) % C];
}

void bias_forward_cuda(float *out, const float *b, int N, int C, int S) {
    long total = (long)N * C * S;
    if (!b || total <= 0) return;
    bias_forward_kernel<<<blocks_for(total), THREADS>>>(out, b, C, S, total);
    LAUNCH_CHECK();
}

// db[c] += sum_{n, s} dout[n, c, s]: one block per channel, a fixed thread tree in double
static __global__ void bias_backward_kernel(float *db, const float *dout, int N, int C, int S) {
    __shared__ double scratch[32];
    long count = (long)N * S;
    for (long c = blockIdx.x; c < C; c += gridDim.x) {  // uniform per block
        double s = 0;
        for (long k = threadIdx.x; k < count; k += blockDim.x) {
            long n = k / S, pos = k % S;
            s += dout[(n * C + c) * S + pos];
        }
        s = block_sum(s, scratch);
        if (threadIdx.x == 0) db[c] += (float)s;
    }
}

void bias_backward_cuda(float *db, const float *dout, int N, int C, int S) {
    if (!db || C <= 0) return;
    bias_backward_kernel<<<C < MAX_BLOCKS ? C : MAX_BLOCKS, THREADS>>>(db, dout, N, C, S);
    LAUNCH_CHECK();
}
