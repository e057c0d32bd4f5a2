// shape.c - reshape, detach, transpose, concat, repeat, gather, patches and dropout: CPU kernels, then the autograd
// ops. Letters: A batches of (M, N) matrices for transpose; B rows, D channels, S = H*W locations for the gather;
// P patch size and G x G patches per image for the patch grid.
#include "shape.h"

#include <stdlib.h>
#include <string.h>

#include "../tensor/device.h"
#include "elementwise.h"
#include "reduce.h"

// ---- CPU kernels ----

// out (A, N, M) = x^T, or += with add; x: (A, M, N). In TILE x TILE blocks, which keep the lines of both sides in
// cache: a loop down x's columns would read one float per cache line. Every element is written by one thread.
#define TILE 32

static void transpose_tiles(float *out, const float *x, int A, int M, int N, bool add) {
    long tiles_m = (M + TILE - 1) / TILE, tiles_n = (N + TILE - 1) / TILE, tiles = A * tiles_m * tiles_n;
    #pragma omp parallel for if ((long)A * M * N > PARALLEL_MIN_WORK)
    for (long t = 0; t < tiles; t++) {
        long a = t / (tiles_m * tiles_n);
        int m0 = (int)(t / tiles_n % tiles_m) * TILE, n0 = (int)(t % tiles_n) * TILE;
        int m1 = m0 + TILE < M ? m0 + TILE : M, n1 = n0 + TILE < N ? n0 + TILE : N;
        const float *xa = x + a * M * N;
        float *oa = out + a * M * N;
        for (int n = n0; n < n1; n++)
            for (int m = m0; m < m1; m++) {
                float v = xa[(long)m * N + n];
                oa[(long)n * M + m] = add ? oa[(long)n * M + m] + v : v;
            }
    }
}

void transpose_forward_cpu(float *out, const float *x, int A, int M, int N) { transpose_tiles(out, x, A, M, N, false); }

// dx: (A, M, N) += dout^T, dout: (A, N, M)
void transpose_backward_cpu(float *dx, const float *dout, int A, int M, int N) {
    transpose_tiles(dx, dout, A, N, M, true);
}

// out: (B, D), x: (B, D, S), idx: (B)
void gather_location_forward_cpu(float *out, const float *x, const int *idx, int B, int D, int S) {
    for (long bd = 0; bd < (long)B * D; bd++) out[bd] = x[bd * S + idx[bd / D]];
}

void gather_location_backward_cpu(float *dx, const float *dout, const int *idx, int B, int D, int S) {
    for (long bd = 0; bd < (long)B * D; bd++) dx[bd * S + idx[bd / D]] += dout[bd];
}

// ---- reshape and detach ----

static void reshape_backward_node(Node *n) {
    if (input_grad_take(n, 0)) return;   // the same elements in the same order: the grad is the output's
    KERNEL(n->out->device, axpy)(input_grad(n, 0), n->out->grad, 1.0f, n->out->numel);
}

Tensor *op_reshape(Tensor *x, int ndim, const int *shape) {
    Tensor *out = tape_view(x, ndim, shape);
    tape_record("reshape", reshape_backward_node, out, 1, &x, NULL, 0);
    return out;
}

Tensor *op_detach(Tensor *x) {
    Tensor *out = tape_view(x, x->ndim, x->shape);
    out->requires_grad = false;
    return out;
}

// ---- transpose ----

// the input as (A, M, N)
typedef struct { int A, M, N; } TransposeArgs;

static void transpose_backward_node(Node *n) {
    const TransposeArgs *a = n->args;
    KERNEL(n->out->device, transpose_backward)(input_grad(n, 0), n->out->grad, a->A, a->M, a->N);
}

Tensor *op_transpose(Tensor *x) {
    CHECK(x->ndim == 2 || x->ndim == 3, "transpose takes (M, N) or (A, M, N), got %d dims", x->ndim);
    int A = x->ndim == 3 ? x->shape[0] : 1;
    int M = x->shape[x->ndim - 2], N = x->shape[x->ndim - 1];
    Tensor *out = x->ndim == 3 ? tape_tensor(x->device, SHAPE(A, N, M)) : tape_tensor(x->device, SHAPE(N, M));
    KERNEL(x->device, transpose_forward)(out->data, x->data, A, M, N);
    TransposeArgs args = {.A = A, .M = M, .N = N};
    tape_record("transpose", transpose_backward_node, out, 1, &x, &args, sizeof args);
    return out;
}

// ---- concat along dim 0 ----

// out = [a; b]: the first a->numel gradients belong to a, the rest to b
static void concat0_backward_node(Node *n) {
    Tensor *a = n->in[0], *b = n->in[1], *out = n->out;
    float *da = input_grad(n, 0), *db = input_grad(n, 1);
    if (da) KERNEL(out->device, axpy)(da, out->grad, 1.0f, a->numel);
    if (db) KERNEL(out->device, axpy)(db, out->grad + a->numel, 1.0f, b->numel);
}

Tensor *op_concat0(Tensor *a, Tensor *b) {
    CHECK(a->ndim == b->ndim && a->device == b->device, "concat0: operands differ in rank or device");
    for (int d = 1; d < a->ndim; d++)
        CHECK(a->shape[d] == b->shape[d], "concat0: dim %d differs (%d vs %d)", d, a->shape[d], b->shape[d]);
    int shape[TENSOR_MAX_DIMS];
    for (int d = 0; d < a->ndim; d++) shape[d] = a->shape[d];
    shape[0] += b->shape[0];
    Tensor *out = tape_tensor(a->device, a->ndim, shape);
    dev_copy(out->data, out->device, a->data, a->device, (size_t)a->numel * sizeof(float));
    dev_copy(out->data + a->numel, out->device, b->data, b->device, (size_t)b->numel * sizeof(float));
    Tensor *in[2] = {a, b};
    tape_record("concat0", concat0_backward_node, out, 2, in, NULL, 0);
    return out;
}

// ---- repeat: x (A, N) -> (A, k, N), a broadcast along a new dim 1 ----

typedef struct { int A, k, N; } RepeatArgs;

// d x[a, n] += sum_k dout[a, k, n]: the sum goes to a temporary, then into the (accumulating) input gradient
static void repeat_backward_node(Node *n) {
    const RepeatArgs *a = n->args;
    Tensor *x = n->in[0];
    Tensor *summed = tape_tensor(x->device, x->ndim, x->shape);
    KERNEL(x->device, reduce_sum_forward)(summed->data, n->out->grad, a->A, a->k, a->N);
    KERNEL(x->device, axpy)(input_grad(n, 0), summed->data, 1.0f, x->numel);
}

Tensor *op_repeat(Tensor *x, int k) {
    CHECK(x->ndim == 2 && k > 0, "repeat takes (A, N) and k > 0, got %d dims and k = %d", x->ndim, k);
    int A = x->shape[0], N = x->shape[1];
    Tensor *out = tape_tensor(x->device, SHAPE(A, k, N));
    dev_zero(out->device, out->data, (size_t)out->numel * sizeof(float));
    KERNEL(x->device, reduce_sum_backward)(out->data, x->data, A, k, N);  // out[a, j, n] += x[a, n]
    RepeatArgs args = {.A = A, .k = k, .N = N};
    tape_record("repeat", repeat_backward_node, out, 1, &x, &args, sizeof args);
    return out;
}

// ---- gather one location per row ----

// x: (B, D, S) with S locations; aux = the B indices on the device
typedef struct { int B, D, S; } GatherArgs;

static void gather_location_backward_node(Node *n) {
    const GatherArgs *a = n->args;
    KERNEL(n->out->device, gather_location_backward)(input_grad(n, 0), n->out->grad, n->aux, a->B, a->D, a->S);
}

Tensor *op_gather_location(Tensor *x, const int *idx) {
    CHECK(x->ndim == 4, "gather_location takes (B, D, H, W), got %d dims", x->ndim);
    int B = x->shape[0], D = x->shape[1], S = x->shape[2] * x->shape[3];
    for (int b = 0; b < B; b++) CHECK(idx[b] >= 0 && idx[b] < S, "location %d of row %d outside [0, %d)", idx[b], b, S);
    Device dev = x->device;
    Tensor *out = tape_tensor(dev, SHAPE(B, D));
    size_t bytes = (size_t)B * sizeof(int);
    int *idx_dev = dev_alloc(dev, bytes);
    dev_copy(idx_dev, dev, idx, DEV_CPU, bytes);
    KERNEL(dev, gather_location_forward)(out->data, x->data, idx_dev, B, D, S);
    GatherArgs args = {.B = B, .D = D, .S = S};
    Node *n = tape_record("gather_location", gather_location_backward_node, out, 1, &x, &args, sizeof args);
    if (n) node_keep_aux(n, dev, idx_dev, bytes);   // the indices stay with the node for backward
    else dev_free(dev, idx_dev, bytes);
    return out;
}

// ---- patches: the G x G grid of overlapping P x P windows of each image ----

// out: (B*G*G, C, P, P); x: (B, C, H, H)
void extract_patches_forward_cpu(float *out, const float *x, int B, int C, int H, int P, int stride) {
    int G = (H - P) / stride + 1;
    long patches = (long)B * G * G;
    #pragma omp parallel for if (patches * C * P * P > PARALLEL_MIN_WORK)
    for (long q = 0; q < patches; q++) {
        long b = q / ((long)G * G);
        int gi = (int)(q / G % G), gj = (int)(q % G);
        for (int c = 0; c < C; c++)
            for (int y = 0; y < P; y++)
                memcpy(out + ((q * C + c) * P + y) * P, x + ((b * C + c) * H + gi * stride + y) * H + gj * stride,
                       (size_t)P * sizeof(float));
    }
}

// dx[b, c, y, x] += sum over the patches (gi, gj) covering (y, x) of dout at (y - gi*stride, x - gj*stride)
void extract_patches_backward_cpu(float *dx, const float *dout, int B, int C, int H, int P, int stride) {
    int G = (H - P) / stride + 1;
    long planes = (long)B * C;
    #pragma omp parallel for if (planes * H * H > PARALLEL_MIN_WORK)
    for (long bc = 0; bc < planes; bc++) {
        long b = bc / C, c = bc % C;
        for (int y = 0; y < H; y++) {
            int gi_lo = y - P + 1 > 0 ? (y - P + 1 + stride - 1) / stride : 0, gi_hi = y / stride < G - 1 ? y / stride : G - 1;
            for (int x = 0; x < H; x++) {
                int gj_lo = x - P + 1 > 0 ? (x - P + 1 + stride - 1) / stride : 0;
                int gj_hi = x / stride < G - 1 ? x / stride : G - 1;
                float sum = 0;
                for (int gi = gi_lo; gi <= gi_hi; gi++)
                    for (int gj = gj_lo; gj <= gj_hi; gj++)
                        sum += dout[((((b * G + gi) * G + gj) * C + c) * P + (y - gi * stride)) * P + (x - gj * stride)];
                dx[(bc * H + y) * H + x] += sum;
            }
        }
    }
}

typedef struct { int B, C, H, P, stride; } PatchArgs;

static void extract_patches_backward_node(Node *n) {
    const PatchArgs *a = n->args;
    KERNEL(n->out->device, extract_patches_backward)(input_grad(n, 0), n->out->grad, a->B, a->C, a->H, a->P,
                                                     a->stride);
}

Tensor *op_extract_patches(Tensor *x, int P, int stride) {
    CHECK(x->ndim == 4 && x->shape[2] == x->shape[3], "extract_patches takes square (B, C, H, H) images");
    int B = x->shape[0], C = x->shape[1], H = x->shape[2];
    CHECK(P >= 1 && P <= H && stride >= 1, "extract_patches: %dx%d patches at stride %d of %dx%d images", P, P,
          stride, H, H);
    int G = (H - P) / stride + 1;
    Tensor *out = tape_tensor(x->device, SHAPE(B * G * G, C, P, P));
    KERNEL(x->device, extract_patches_forward)(out->data, x->data, B, C, H, P, stride);
    PatchArgs args = {.B = B, .C = C, .H = H, .P = P, .stride = stride};
    tape_record("extract_patches", extract_patches_backward_node, out, 1, &x, &args, sizeof args);
    return out;
}

// ---- inverted dropout ----

// saved[0] = the scaled mask: dx += dout * mask
static void dropout_backward_node(Node *n) {
    Tensor *x = n->in[0], *mask = n->saved[0];
    KERNEL(x->device, binary_backward)(BINARY_MUL, input_grad(n, 0), NULL, n->out->grad, x->data, mask->data,
                                       x->numel);
}

Tensor *op_dropout(Tensor *x, float p, bool training, Rng *rng) {
    if (!training || p == 0.0f) return x;
    CHECK(p > 0.0f && p < 1.0f, "dropout probability %g outside [0, 1)", p);
    // mask value: 0 (dropped, probability p) or 1/(1-p) (kept), drawn on the host in element order
    float keep_scale = 1.0f / (1.0f - p);
    float *host = xmalloc((size_t)x->numel * sizeof(float));
    for (long i = 0; i < x->numel; i++) host[i] = rng_uniform(rng) < p ? 0.0f : keep_scale;
    Tensor *mask = tape_tensor(x->device, x->ndim, x->shape);
    tensor_copy_from_host(mask, host);
    free(host);
    Tensor *out = tape_tensor(x->device, x->ndim, x->shape);
    KERNEL(x->device, binary_forward)(BINARY_MUL, out->data, x->data, mask->data, x->numel);
    Node *n = tape_record("dropout", dropout_backward_node, out, 1, &x, NULL, 0);
    if (n) {
        n->saved[0] = mask;
        n->flops = (double)x->numel;
    }
    return out;
}
