// linalg.c - matrix products through OpenBLAS and the bias addition: CPU kernels, then the autograd ops.
// Legend: M, N, K the GEMM sizes (C is M x N, the product runs over K); for bias, N batch, C channels, S positions.
#include "linalg.h"

#include <cblas.h>

#include "../tensor/device.h"

// ---- CPU kernels ----

// C: (M, N) row-major; A stored (M, K) or (K, M), B stored (K, N) or (N, K); leading dims follow from the storage
void gemm_cpu(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, const float *B, float beta,
              float *C) {
    if (M == 0 || N == 0) return;
    int lda = trans_a ? M : K, ldb = trans_b ? K : N;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K,
                alpha, A, lda > 1 ? lda : 1, B, ldb > 1 ? ldb : 1, beta, C, N);
}

// out: (N, C, S), b: (C)
void bias_forward_cpu(float *out, const float *b, int N, int C, int S) {
    long planes = (long)N * C;
    #pragma omp parallel for if (planes * S > PARALLEL_MIN_WORK)
    for (long p = 0; p < planes; p++) {
        float bias = b[p % C];
        float *o = out + p * S;
        for (int s = 0; s < S; s++) o[s] += bias;
    }
}

// db: (C); each channel sums over n then s in a fixed order, in double
void bias_backward_cpu(float *db, const float *dout, int N, int C, int S) {
    #pragma omp parallel for if ((long)N * C * S > PARALLEL_MIN_WORK)
    for (int c = 0; c < C; c++) {
        double sum = 0;
        for (int n = 0; n < N; n++) {
            const float *d = dout + ((long)n * C + c) * S;
            for (int s = 0; s < S; s++) sum += d[s];
        }
        db[c] += (float)sum;
    }
}

// ---- autograd ops ----

// C (M, N) = op(A) (M, K) op(B) (K, N), so dop(A) = dC op(B)^T and dop(B) = op(A)^T dC.
typedef struct { bool trans_a, trans_b; int M, N, K; } MatmulArgs;

static void matmul_backward_node(Node *n) {
    const MatmulArgs *args = n->args;
    Tensor *a = n->in[0], *b = n->in[1];
    bool ta = args->trans_a, tb = args->trans_b;
    int M = args->M, N = args->N, K = args->K;
    const float *dc = n->out->grad;
    float *da = input_grad(n, 0);
    if (da) {
        if (!ta) KERNEL(a->device, gemm)(false, !tb, M, K, N, 1.0f, dc, b->data, 1.0f, da);  // (M, K) = dC op(B)^T
        else KERNEL(a->device, gemm)(tb, true, K, M, N, 1.0f, b->data, dc, 1.0f, da);        // (K, M) = op(B) dC^T
    }
    float *db = input_grad(n, 1);
    if (db) {
        if (!tb) KERNEL(b->device, gemm)(!ta, false, K, N, M, 1.0f, a->data, dc, 1.0f, db);  // (K, N) = op(A)^T dC
        else KERNEL(b->device, gemm)(true, ta, N, K, M, 1.0f, dc, a->data, 1.0f, db);        // (N, K) = dC^T op(A)
    }
}

Tensor *op_matmul(Tensor *a, Tensor *b, bool trans_a, bool trans_b) {
    CHECK(a->ndim == 2 && b->ndim == 2, "matmul: operands must be 2-D, got %d-D and %d-D", a->ndim, b->ndim);
    CHECK(a->device == b->device, "matmul: operands on different devices");
    int M = trans_a ? a->shape[1] : a->shape[0], K = trans_a ? a->shape[0] : a->shape[1];
    int Kb = trans_b ? b->shape[1] : b->shape[0], N = trans_b ? b->shape[0] : b->shape[1];
    CHECK(K == Kb, "matmul: inner sizes differ (%d vs %d)", K, Kb);
    Tensor *out = tape_tensor(a->device, SHAPE(M, N));
    KERNEL(a->device, gemm)(trans_a, trans_b, M, N, K, 1.0f, a->data, b->data, 0.0f, out->data);
    Tensor *in[2] = {a, b};
    MatmulArgs args = {.trans_a = trans_a, .trans_b = trans_b, .M = M, .N = N, .K = K};
    Node *n = tape_record("matmul", matmul_backward_node, out, 2, in, &args, sizeof args);
    if (n) n->flops = 2.0 * M * N * K;
    return out;
}

// out = x w^T + b;  x: (N, In), w: (Out, In), b: (Out), out: (N, Out)
typedef struct { int N, In, Out; } LinearArgs;

static void linear_backward_node(Node *n) {
    const LinearArgs *a = n->args;
    Tensor *x = n->in[0], *w = n->in[1];
    int N = a->N, In = a->In, Out = a->Out;
    const float *dout = n->out->grad;
    float *dx = input_grad(n, 0), *dw = input_grad(n, 1), *db = input_grad(n, 2);
    if (dx) KERNEL(x->device, gemm)(false, false, N, In, Out, 1.0f, dout, w->data, 1.0f, dx);  // (N, In) = dout w
    if (dw) KERNEL(x->device, gemm)(true, false, Out, In, N, 1.0f, dout, x->data, 1.0f, dw);   // (Out, In) = dout^T x
    if (db) KERNEL(x->device, bias_backward)(db, dout, N, Out, 1);
}

Tensor *op_linear(Tensor *x, Tensor *w, Tensor *b) {
    CHECK(x->ndim == 2 && w->ndim == 2, "linear: x must be (N, in) and w (out, in), got %d-D and %d-D",
          x->ndim, w->ndim);
    int N = x->shape[0], In = x->shape[1], Out = w->shape[0];
    CHECK(w->shape[1] == In, "linear: x has %d features but w expects %d", In, w->shape[1]);
    CHECK(!b || b->numel == Out, "linear: bias has %ld values for %d outputs", b ? b->numel : 0, Out);
    CHECK(x->device == w->device && (!b || b->device == x->device), "linear: operands on different devices");
    Tensor *out = tape_tensor(x->device, SHAPE(N, Out));
    KERNEL(x->device, gemm)(false, true, N, Out, In, 1.0f, x->data, w->data, 0.0f, out->data);
    if (b) KERNEL(x->device, bias_forward)(out->data, b->data, N, Out, 1);
    Tensor *in[3] = {x, w, b};
    LinearArgs args = {.N = N, .In = In, .Out = Out};
    Node *n = tape_record("linear", linear_backward_node, out, 3, in, &args, sizeof args);
    if (n) n->flops = 2.0 * N * In * Out;
    return out;
}
