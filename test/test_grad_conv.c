// test_grad_conv.c - matmul / linear, conv2d, avgpool, reflect and channel padding, batch norm: gradients by central
// finite differences, forward values written out by hand, conv2d against direct loops, and the accumulate rule.
//
// Tolerances, |analytic - numeric| <= atol + rtol * |numeric| (every check prints the share of its budget used):
//  * Gradients: TOL (atol 1e-4, rtol 1e-3, step 1e-2). matmul, linear, conv, pooling and padding are linear in any
//    one input element, so the central difference has no truncation error: what is left is the float32 rounding of
//    the outputs the element touches, divided by 2 * step. Batch norm is nonlinear through the batch statistics, but
//    with inputs spread over ~1 its O(step^2) term is far below that rounding (a step of 1e-3 measured 10x WORSE).
//    Measured: max abs error 6e-5 (conv 8->8, the most outputs per input), at most 21% of the budget; a wrong or
//    missing backward term is off by O(0.1 - 1).
//  * conv2d against direct double loops: 2e-5 abs and rel; the worst is dw summing 2,700 float products (1.1e-5).
//  * Hand-written forward values: exact (0) where the result is representable (padding, pooling of integers, small
//    integer convolutions), else 1e-6; kernel-level "twice adds up" checks 1e-6 (one extra float addition).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ops/ops.h"
#include "../tensor/device.h"
#include "test.h"

static const GradTol TOL = {.atol = 1e-4, .rtol = 1e-3, .eps = 1e-2};

static void free_all(Tensor **t, int n) {
    for (int i = 0; i < n; i++) tensor_free(t[i]);
}

// ---- matmul and linear ----
typedef struct { bool ta, tb; } MatmulCtx;
static Tensor *build_matmul(Tensor **in, void *ctx) {
    MatmulCtx *c = ctx;
    return op_matmul(in[0], in[1], c->ta, c->tb);
}
static Tensor *build_gram(Tensor **in, void *ctx) { return op_matmul(in[0], in[0], false, true); }  // a a^T

static int grad_matmul(void) {
    Rng rng;
    rng_seed(&rng, 11);
    int fails = 0, M = 3, K = 4, N = 5;
    char name[64];
    for (int ta = 0; ta < 2; ta++) {
        for (int tb = 0; tb < 2; tb++) {
            Tensor *in[2] = {test_tensor(&rng, true, -1, 1, 2, ta ? (int[]){K, M} : (int[]){M, K}),
                             test_tensor(&rng, true, -1, 1, 2, tb ? (int[]){N, K} : (int[]){K, N})};
            MatmulCtx ctx = {ta, tb};
            // forward against the sum written out: C[i][j] = sum_k op(A)[i][k] op(B)[k][j]
            float want[3 * 5];
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double sum = 0;
                    for (int k = 0; k < K; k++)
                        sum += (double)in[0]->data[ta ? k * M + i : i * K + k] * in[1]->data[tb ? j * K + k : k * N + j];
                    want[i * N + j] = (float)sum;
                }
            snprintf(name, sizeof name, "matmul trans_a=%d trans_b=%d forward", ta, tb);
            fails += check_close(name, op_matmul(in[0], in[1], ta, tb)->data, want, M * N, 1e-6, 1e-6);
            tape_clear();
            snprintf(name, sizeof name, "matmul trans_a=%d trans_b=%d", ta, tb);
            fails += gradcheck(name, build_matmul, &ctx, in, 2, TOL);
            free_all(in, 2);
        }
    }
    Tensor *a = test_tensor(&rng, true, -1, 1, SHAPE(4, 3));
    fails += gradcheck("matmul a a^T (both paths into one grad)", build_gram, NULL, &a, 1, TOL);
    tensor_free(a);
    return fails;
}

static Tensor *build_linear(Tensor **in, void *ctx) { return op_linear(in[0], in[1], *(bool *)ctx ? in[2] : NULL); }

static int grad_linear(void) {
    Rng rng;
    rng_seed(&rng, 12);
    Tensor *in[3] = {test_tensor(&rng, true, -1, 1, SHAPE(3, 4)), test_tensor(&rng, true, -1, 1, SHAPE(5, 4)),
                     test_tensor(&rng, true, -1, 1, SHAPE(5))};
    bool with_bias = true, without_bias = false;
    int fails = gradcheck("linear (3,4) -> (3,5) with bias", build_linear, &with_bias, in, 3, TOL);
    fails += gradcheck("linear (3,4) -> (3,5) without bias", build_linear, &without_bias, in, 2, TOL);
    // forward by hand: x = [[1, 2]], w = [[1, 0], [2, -1], [0.5, 3]], b = [0, 1, -2]  ->  [1, 1, 4.5]
    Tensor *x = tensor_from(DEV_CPU, SHAPE(1, 2), (float[]){1, 2});
    Tensor *w = tensor_from(DEV_CPU, SHAPE(3, 2), (float[]){1, 0, 2, -1, 0.5f, 3});
    Tensor *b = tensor_from(DEV_CPU, SHAPE(3), (float[]){0, 1, -2});
    fails += check_close("linear forward by hand", op_linear(x, w, b)->data, (float[]){1, 1, 4.5f}, 3, 0, 0);
    // both transposes: a stored (2, 1) = [1; 2], b stored (2, 2) = [1 2; 3 4]:  a^T b^T = [1 2] [1 3; 2 4] = [5 11]
    Tensor *a = tensor_from(DEV_CPU, SHAPE(2, 1), (float[]){1, 2}), *m = tensor_from(DEV_CPU, SHAPE(2, 2), (float[]){1, 2, 3, 4});
    fails += check_close("matmul a^T b^T by hand", op_matmul(a, m, true, true)->data, (float[]){5, 11}, 2, 0, 0);
    tensor_free(a);
    tensor_free(m);
    tensor_free(x);
    tensor_free(w);
    tensor_free(b);
    free_all(in, 3);
    return fails;
}

// ---- conv2d ----
typedef struct {
    const char *name;
    int N, C, H, W, Co, K, stride, pad;
    bool bias;
} ConvCase;

static Tensor *build_conv(Tensor **in, void *ctx) {
    ConvCase *c = ctx;
    return op_conv2d(in[0], in[1], c->bias ? in[2] : NULL, c->stride, c->pad);
}

static const ConvCase GRAD_CONV_CASES[] = {
    {"1->1 k1 s1 p0 (pointwise GEMM)", 1, 1, 3, 3, 1, 1, 1, 0, true},
    {"3->5 k1 s1 p0 non-square, batch 2", 2, 3, 3, 4, 5, 1, 1, 0, false},
    {"5->3 k1 on 1x1 maps (one GEMM)", 3, 5, 1, 1, 3, 1, 1, 0, true},
    {"2->3 k1 s2 p0 (strided 1x1)", 2, 2, 5, 5, 3, 1, 2, 0, false},
    {"2->2 k1 s1 p1 (padded 1x1)", 1, 2, 3, 2, 2, 1, 1, 1, true},
    {"3->5 k2 s2 p0 5x6", 2, 3, 5, 6, 5, 2, 2, 0, false},
    {"5->3 k3 s1 p1 4x5, batch 1", 1, 5, 4, 5, 3, 3, 1, 1, true},
    {"2->4 k4 s2 p0 7x6", 2, 2, 7, 6, 4, 4, 2, 0, true},
    {"3->2 k5 s2 p2 6x7", 1, 3, 6, 7, 2, 5, 2, 2, true},
    {"8->8 k3 s1 p0 5x5", 1, 8, 5, 5, 8, 3, 1, 0, false},
    {"1->1 k3 s2 p2 3x3, batch 2", 2, 1, 3, 3, 1, 3, 2, 2, true},
    {"4->6 k3 s1 p0 3x3 -> 1x1, batch 3", 3, 4, 3, 3, 6, 3, 1, 0, true},
};

static int grad_conv(void) {
    Rng rng;
    rng_seed(&rng, 13);
    int fails = 0;
    char name[96];
    for (size_t i = 0; i < sizeof GRAD_CONV_CASES / sizeof *GRAD_CONV_CASES; i++) {
        const ConvCase *c = &GRAD_CONV_CASES[i];
        Tensor *in[3] = {test_tensor(&rng, true, -1, 1, SHAPE(c->N, c->C, c->H, c->W)),
                         test_tensor(&rng, true, -1, 1, SHAPE(c->Co, c->C, c->K, c->K)),
                         test_tensor(&rng, true, -1, 1, SHAPE(c->Co))};
        snprintf(name, sizeof name, "conv2d %s%s", c->name, c->bias ? " +bias" : "");
        fails += gradcheck(name, build_conv, (void *)c, in, c->bias ? 3 : 2, TOL);
        free_all(in, 3);
    }
    return fails;
}

// ---- conv2d with a fused epilogue: relu(conv(x) + b), conv(x) + b + r ----
typedef struct { int stride, pad; bool relu; } FusedCase;

static Tensor *build_conv_fused(Tensor **in, void *ctx) {
    FusedCase *c = ctx;
    return c->relu ? op_conv2d_relu(in[0], in[1], in[2], c->stride, c->pad)
                   : op_conv2d_add(in[0], in[1], in[2], c->stride, c->pad, in[3]);
}

static Tensor *build_conv_unfused(Tensor **in, void *ctx) {
    FusedCase *c = ctx;
    Tensor *z = op_conv2d(in[0], in[1], in[2], c->stride, c->pad);
    return c->relu ? op_relu(z) : op_add(z, in[3]);
}

// Inputs for conv2d_relu whose pre-activations all sit at least 0.05 from the kink: one finite-difference step
// (1e-2 on one element in [-1, 1]) moves an output by at most 1e-2, so no difference straddles 0.
static void draw_away_from_kink(Rng *rng, Tensor **in, FusedCase *c) {
    for (int tries = 0; tries < 1000; tries++) {
        for (int k = 0; k < 3; k++) tensor_fill_uniform(in[k], rng, -1, 1);
        autograd_set_grad_enabled(false);
        Tensor *z = op_conv2d(in[0], in[1], in[2], c->stride, c->pad);
        float least = INFINITY;
        for (long i = 0; i < z->numel; i++) least = fminf(least, fabsf(z->data[i]));
        tape_clear();
        autograd_set_grad_enabled(true);
        if (least >= 0.05f) return;
    }
    CHECK(false, "no draw kept the conv2d_relu test away from the kink");
}

static int grad_conv_fused(void) {
    Rng rng;
    rng_seed(&rng, 17);
    int fails = 0;
    // (N, C, H, W) -> Co, K: small enough that a draw away from the kink comes quickly
    const struct { const char *name; int N, C, H, W, Co, K; FusedCase c; } cases[] = {
        {"conv2d_relu k3 s1 p1 4x4", 2, 2, 4, 4, 3, 3, {1, 1, true}},
        {"conv2d_relu k1 s1 p0 (pointwise)", 2, 3, 2, 3, 2, 1, {1, 0, true}},
        {"conv2d_add k4 s2 p0 6x6", 2, 3, 6, 6, 4, 4, {2, 0, false}},
        {"conv2d_add k1 on 1x1 maps", 3, 5, 1, 1, 4, 1, {1, 0, false}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        FusedCase c = cases[i].c;
        int N = cases[i].N, C = cases[i].C, H = cases[i].H, W = cases[i].W, Co = cases[i].Co, K = cases[i].K;
        int Ho = (H + 2 * c.pad - K) / c.stride + 1, Wo = (W + 2 * c.pad - K) / c.stride + 1;
        Tensor *in[4] = {test_tensor(&rng, true, -1, 1, SHAPE(N, C, H, W)),
                         test_tensor(&rng, true, -1, 1, SHAPE(Co, C, K, K)), test_tensor(&rng, true, -1, 1, SHAPE(Co)),
                         test_tensor(&rng, true, -1, 1, SHAPE(N, Co, Ho, Wo))};
        if (c.relu) draw_away_from_kink(&rng, in, &c);
        fails += gradcheck(cases[i].name, build_conv_fused, &c, in, c.relu ? 3 : 4, TOL);
        free_all(in, 4);
    }
    return fails;
}

// ---- conv2d + a residual unit's shortcut: conv(x) + b + channel_pad(avgpool(s)) ----
typedef struct { int k, stride; } ShortcutCase;

static Tensor *build_conv_shortcut(Tensor **in, void *ctx) {
    ShortcutCase *c = ctx;
    return op_conv2d_add_shortcut(in[0], in[1], in[2], 1, 0, in[3], c->k, c->stride);
}

static Tensor *build_conv_shortcut_unfused(Tensor **in, void *ctx) {
    ShortcutCase *c = ctx;
    Tensor *pooled = c->k == 1 && c->stride == 1 ? in[3] : op_avgpool2d(in[3], c->k, c->stride);
    return op_conv2d_add(in[0], in[1], in[2], 1, 0, op_channel_pad(pooled, in[1]->shape[0]));
}

// s (2, 3, 6, 6) pooled to the output of a 1x1 conv on x (2, 4, Hs, Hs) with 5 channels: pooling and padding,
// padding alone, pooling alone (Co = Cs), and against the ops it replaces (the same float operations)
static int grad_conv_shortcut(void) {
    Rng rng;
    rng_seed(&rng, 23);
    int fails = 0;
    const struct { ShortcutCase c; int Co; } cases[] = {{{2, 2}, 5}, {{1, 1}, 5}, {{3, 1}, 3}, {{3, 2}, 4}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ShortcutCase c = cases[i].c;
        int Hs = (6 - c.k) / c.stride + 1, Co = cases[i].Co;
        Tensor *in[4] = {test_tensor(&rng, true, -1, 1, SHAPE(2, 4, Hs, Hs)),
                         test_tensor(&rng, true, -1, 1, SHAPE(Co, 4, 1, 1)), test_tensor(&rng, true, -1, 1, SHAPE(Co)),
                         test_tensor(&rng, true, -1, 1, SHAPE(2, 3, 6, 6))};
        char name[96];
        snprintf(name, sizeof name, "conv2d_add_shortcut: avgpool k%d s%d, 3 -> %d channels", c.k, c.stride, Co);
        fails += gradcheck(name, build_conv_shortcut, &c, in, 4, TOL);
        float *want[5], *got[5];
        for (int pass = 0; pass < 2; pass++) {
            for (int k = 0; k < 4; k++) tensor_zero_grad(in[k]);
            Tensor *out = (pass ? build_conv_shortcut : build_conv_shortcut_unfused)(in, &c);
            backward(op_sum(op_mul(out, out), -1));
            float **dst = pass ? got : want;
            dst[0] = malloc(sizeof(float) * out->numel);
            memcpy(dst[0], out->data, sizeof(float) * out->numel);
            for (int k = 0; k < 4; k++) {
                dst[k + 1] = malloc(sizeof(float) * in[k]->numel);
                memcpy(dst[k + 1], in[k]->grad, sizeof(float) * in[k]->numel);
            }
            tape_clear();
        }
        const char *names[] = {"out", "dx", "dw", "db", "ds"};
        long sizes[] = {2L * Co * Hs * Hs, in[0]->numel, in[1]->numel, in[2]->numel, in[3]->numel};
        for (int k = 0; k <= 4; k++) {
            snprintf(name, sizeof name, "conv2d_add_shortcut k%d s%d -> %d: == unfused %s", c.k, c.stride, Co, names[k]);
            fails += check_close(name, got[k], want[k], sizes[k], 0, 0);
            free(got[k]);
            free(want[k]);
        }
        free_all(in, 4);
    }
    return fails;
}

// the fused ops against the ops they replace: equal outputs and equal gradients (the same float operations).
// Shapes: one thread walks groups of several images; threads split the batch (groups of 2, then one image each).
static int conv_fused_vs_unfused(void) {
    Rng rng;
    rng_seed(&rng, 19);
    int fails = 0;
    const struct { int N, C, H, Co, K, stride, pad; } shapes[] = {{3, 4, 7, 5, 3, 2, 1}, {4, 3, 20, 5, 3, 1, 1},
                                                                   {4, 3, 24, 5, 3, 1, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int relu = 0; relu <= 1; relu++) {
            int N = shapes[s].N, Co = shapes[s].Co, K = shapes[s].K;
            int Ho = (shapes[s].H + 2 * shapes[s].pad - K) / shapes[s].stride + 1;
            FusedCase c = {shapes[s].stride, shapes[s].pad, relu};
            Tensor *in[4] = {test_tensor(&rng, true, -1, 1, SHAPE(N, shapes[s].C, shapes[s].H, shapes[s].H)),
                             test_tensor(&rng, true, -1, 1, SHAPE(Co, shapes[s].C, K, K)),
                             test_tensor(&rng, true, -1, 1, SHAPE(Co)),
                             test_tensor(&rng, true, -1, 1, SHAPE(N, Co, Ho, Ho))};
            int n_in = relu ? 3 : 4;
            float *want[5], *got[5];
            for (int pass = 0; pass < 2; pass++) {
                for (int k = 0; k < n_in; k++) tensor_zero_grad(in[k]);
                Tensor *out = (pass ? build_conv_fused : build_conv_unfused)(in, &c);
                Tensor *loss = op_sum(op_mul(out, out), -1);  // d/d out = 2 out: a gradient that depends on every output
                backward(loss);
                float **dst = pass ? got : want;
                dst[0] = malloc(sizeof(float) * out->numel);
                memcpy(dst[0], out->data, sizeof(float) * out->numel);
                for (int k = 0; k < n_in; k++) {
                    dst[k + 1] = malloc(sizeof(float) * in[k]->numel);
                    memcpy(dst[k + 1], in[k]->grad, sizeof(float) * in[k]->numel);
                }
                tape_clear();
            }
            const char *names[] = {"out", "dx", "dw", "db", "dr"};
            long sizes[] = {in[3]->numel, in[0]->numel, in[1]->numel, in[2]->numel, in[3]->numel};
            char what[96];
            for (int k = 0; k <= n_in; k++) {
                snprintf(what, sizeof what, "%s %dx%d maps: fused == unfused %s", relu ? "conv2d_relu" : "conv2d_add",
                         Ho, Ho, names[k]);
                fails += check_close(what, got[k], want[k], sizes[k], 0, 0);
                free(got[k]);
                free(want[k]);
            }
            free_all(in, 4);
        }
    return fails;
}

// direct loops in double: out (N, Co, Ho, Wo), and the three gradients of sum(out * dout)
static void conv_reference(double *out, double *dx, double *dw, double *db, const float *dout, const float *x,
                           const float *w, const float *b, const ConvCase *c) {
    int Ho = (c->H + 2 * c->pad - c->K) / c->stride + 1, Wo = (c->W + 2 * c->pad - c->K) / c->stride + 1;
    memset(dx, 0, sizeof(double) * c->N * c->C * c->H * c->W);
    memset(dw, 0, sizeof(double) * c->Co * c->C * c->K * c->K);
    memset(db, 0, sizeof(double) * c->Co);
    for (int n = 0; n < c->N; n++)
        for (int co = 0; co < c->Co; co++)
            for (int oh = 0; oh < Ho; oh++)
                for (int ow = 0; ow < Wo; ow++) {
                    long o = (((long)n * c->Co + co) * Ho + oh) * Wo + ow;
                    double sum = b ? b[co] : 0.0, d = dout[o];
                    db[co] += d;
                    for (int ci = 0; ci < c->C; ci++)
                        for (int ki = 0; ki < c->K; ki++)
                            for (int kj = 0; kj < c->K; kj++) {
                                int ih = oh * c->stride - c->pad + ki, iw = ow * c->stride - c->pad + kj;
                                if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                                long xi = (((long)n * c->C + ci) * c->H + ih) * c->W + iw;
                                long wi = (((long)co * c->C + ci) * c->K + ki) * c->K + kj;
                                sum += (double)x[xi] * w[wi];
                                dx[xi] += d * w[wi];
                                dw[wi] += d * x[xi];
                            }
                    out[o] = sum;
                }
}

static int compare_to_double(const char *what, const float *got, const double *want, long n, double atol, double rtol) {
    float *w = xmalloc((size_t)n * sizeof(float));
    for (long i = 0; i < n; i++) w[i] = (float)want[i];
    int f = check_close(what, got, w, n, atol, rtol);
    free(w);
    return f;
}

// Larger shapes than a gradcheck can afford, chosen to reach every path of the kernels: groups of several images
// with a shorter last group, one image per group, pointwise as one GEMM (1x1 maps), per image (big maps) and grouped.
static const ConvCase DIRECT_CONV_CASES[] = {
    {"3->4 k3 s1 p0 32x32 batch 3 (groups 2+1)", 3, 3, 32, 32, 4, 3, 1, 0, true},
    {"6->5 k4 s2 p1 9x10 batch 5 (one group)", 5, 6, 9, 10, 5, 4, 2, 1, true},
    {"16->8 k3 s1 p0 3x3 -> 1x1 batch 7", 7, 16, 3, 3, 8, 3, 1, 0, false},
    {"24->16 k1 on 1x1 maps batch 9", 9, 24, 1, 1, 16, 1, 1, 0, true},
    {"4->6 k1 on 32x33 maps batch 2 (per image)", 2, 4, 32, 33, 6, 1, 1, 0, true},
    {"12->10 k1 on 5x5 maps batch 6 (grouped)", 6, 12, 5, 5, 10, 1, 1, 0, false},
    {"2->3 k5 s2 p2 13x11 batch 1", 1, 2, 13, 11, 3, 5, 2, 2, true},
    {"8->6 k3 s1 p0 7x7 -> 5x5 batch 4 (gathered columns)", 4, 8, 7, 7, 6, 3, 1, 0, true},
    {"5->4 k4 s2 p0 16x15 -> 7x6 batch 3 (gathered, strided)", 3, 5, 16, 15, 4, 4, 2, 0, false},
};

static int conv_vs_direct_loops(void) {
    Rng rng;
    rng_seed(&rng, 14);
    int fails = 0;
    char what[128];
    for (size_t i = 0; i < sizeof DIRECT_CONV_CASES / sizeof *DIRECT_CONV_CASES; i++) {
        const ConvCase *c = &DIRECT_CONV_CASES[i];
        int Ho = (c->H + 2 * c->pad - c->K) / c->stride + 1, Wo = (c->W + 2 * c->pad - c->K) / c->stride + 1;
        long nx = (long)c->N * c->C * c->H * c->W, nw = (long)c->Co * c->C * c->K * c->K, nout = (long)c->N * c->Co * Ho * Wo;
        Tensor *x = test_tensor(&rng, false, -1, 1, SHAPE(c->N, c->C, c->H, c->W));
        Tensor *w = test_tensor(&rng, false, -1, 1, SHAPE(c->Co, c->C, c->K, c->K));
        Tensor *b = test_tensor(&rng, false, -1, 1, SHAPE(c->Co));
        Tensor *dout = test_tensor(&rng, false, -1, 1, SHAPE(c->N, c->Co, Ho, Wo));
        double *ref_out = xmalloc(sizeof(double) * nout), *ref_dx = xmalloc(sizeof(double) * nx);
        double *ref_dw = xmalloc(sizeof(double) * nw), *ref_db = xmalloc(sizeof(double) * c->Co);
        conv_reference(ref_out, ref_dx, ref_dw, ref_db, dout->data, x->data, w->data, c->bias ? b->data : NULL, c);
        float *out = xmalloc(sizeof(float) * nout);
        float *dx = xcalloc((size_t)nx, sizeof(float)), *dw = xcalloc((size_t)nw, sizeof(float));
        float *db = xcalloc((size_t)c->Co, sizeof(float));
        conv2d_forward_cpu(out, x->data, w->data, c->bias ? b->data : NULL, NULL, 0, false, c->N, c->C, c->H, c->W, c->Co,
                           c->K, c->stride, c->pad);
        conv2d_backward_cpu(dx, dw, db, dout->data, x->data, w->data, c->N, c->C, c->H, c->W, c->Co, c->K, c->stride,
                            c->pad);
        snprintf(what, sizeof what, "%s: out", c->name);
        fails += compare_to_double(what, out, ref_out, nout, 2e-5, 2e-5);
        snprintf(what, sizeof what, "%s: dx", c->name);
        fails += compare_to_double(what, dx, ref_dx, nx, 2e-5, 2e-5);
        snprintf(what, sizeof what, "%s: dw", c->name);
        fails += compare_to_double(what, dw, ref_dw, nw, 2e-5, 2e-5);
        snprintf(what, sizeof what, "%s: db", c->name);
        fails += compare_to_double(what, db, ref_db, c->Co, 2e-5, 2e-5);
        free(ref_out); free(ref_dx); free(ref_dw); free(ref_db);
        free(out); free(dx); free(dw); free(db);
        tensor_free(x); tensor_free(w); tensor_free(b); tensor_free(dout);
    }
    return fails;
}

static int conv_forward_by_hand(void) {
    // x: 1 image, 2 channels of 3x3; w: 1 output channel, 2x2 kernel; stride 1, pad 0 -> 2x2, bias 0.5
    //   x0 = [1 2 3; 4 5 6; 7 8 9], x1 = [1 0 0; 0 1 0; 0 0 1], w0 = [1 0; 0 -1], w1 = [2 1; 1 2]
    //   out[i][j] = x0[i][j] - x0[i+1][j+1] + 2 x1[i][j] + x1[i][j+1] + x1[i+1][j] + 2 x1[i+1][j+1] + 0.5
    //   (0,0): 1 - 5 + 2 + 0 + 0 + 2 + 0.5 = 0.5   (0,1): 2 - 6 + 0 + 0 + 1 + 0 + 0.5 = -2.5
    //   (1,0): 4 - 8 + 0 + 1 + 0 + 0 + 0.5 = -2.5  (1,1): 5 - 9 + 2 + 0 + 0 + 2 + 0.5 = 0.5
    Tensor *x = tensor_from(DEV_CPU, SHAPE(1, 2, 3, 3), (float[]){1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 0, 0, 0, 1, 0, 0, 0, 1});
    Tensor *w = tensor_from(DEV_CPU, SHAPE(1, 2, 2, 2), (float[]){1, 0, 0, -1, 2, 1, 1, 2});
    Tensor *b = tensor_from(DEV_CPU, SHAPE(1), (float[]){0.5f});
    int f = check_close("conv2d 2x2 valid by hand", op_conv2d(x, w, b, 1, 0)->data, (float[]){0.5f, -2.5f, -2.5f, 0.5f},
                        4, 0, 0);
    // stride 2, pad 1, channel 0 only (w1 = 0), no bias: windows start at (-1,-1), (-1,1), (1,-1), (1,1)
    //   (0,0): w0[1][1] * x0[0][0] = -1   (0,1): w0[1][0]*x0[0][1] + w0[1][1]*x0[0][2] = 0 - 3 = -3
    //   (1,0): w0[0][1]*x0[1][0] + w0[1][1]*x0[2][0] = -7   (1,1): x0[1][1] - x0[2][2] = 5 - 9 = -4
    Tensor *w0 = tensor_from(DEV_CPU, SHAPE(1, 2, 2, 2), (float[]){1, 0, 0, -1, 0, 0, 0, 0});
    f += check_close("conv2d 2x2 stride 2 pad 1 by hand", op_conv2d(x, w0, NULL, 2, 1)->data,
                     (float[]){-1, -3, -7, -4}, 4, 0, 0);
    tensor_free(x); tensor_free(w); tensor_free(b); tensor_free(w0);
    return f;
}

// backward kernels add into what the d-buffers already hold: running them twice must give twice the gradient
static int conv_backward_accumulates(void) {
    Rng rng;
    rng_seed(&rng, 15);
    int fails = 0;
    const ConvCase cases[] = {{"k3 s2 p1", 3, 2, 6, 5, 3, 3, 2, 1, true},
                              {"pointwise 1x1 maps", 4, 3, 1, 1, 2, 1, 1, 0, true},
                              {"pointwise grouped", 3, 3, 4, 4, 2, 1, 1, 0, true},
                              {"pointwise per image", 2, 2, 32, 32, 2, 1, 1, 0, true}};
    char what[96];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const ConvCase *c = &cases[i];
        int Ho = (c->H + 2 * c->pad - c->K) / c->stride + 1, Wo = (c->W + 2 * c->pad - c->K) / c->stride + 1;
        Tensor *x = test_tensor(&rng, false, -1, 1, SHAPE(c->N, c->C, c->H, c->W));
        Tensor *w = test_tensor(&rng, false, -1, 1, SHAPE(c->Co, c->C, c->K, c->K));
        Tensor *dout = test_tensor(&rng, false, -1, 1, SHAPE(c->N, c->Co, Ho, Wo));
        Tensor *d1[3] = {tensor_zeros(DEV_CPU, 4, x->shape), tensor_zeros(DEV_CPU, 4, w->shape),
                         tensor_zeros(DEV_CPU, SHAPE(c->Co))};
        Tensor *d2[3] = {tensor_zeros(DEV_CPU, 4, x->shape), tensor_zeros(DEV_CPU, 4, w->shape),
                         tensor_zeros(DEV_CPU, SHAPE(c->Co))};
        conv2d_backward_cpu(d1[0]->data, d1[1]->data, d1[2]->data, dout->data, x->data, w->data, c->N, c->C, c->H,
                            c->W, c->Co, c->K, c->stride, c->pad);
        for (int k = 0; k < 2; k++)
            conv2d_backward_cpu(d2[0]->data, d2[1]->data, d2[2]->data, dout->data, x->data, w->data, c->N, c->C,
                                c->H, c->W, c->Co, c->K, c->stride, c->pad);
        const char *names[3] = {"dx", "dw", "db"};
        for (int k = 0; k < 3; k++) {
            for (long j = 0; j < d1[k]->numel; j++) d1[k]->data[j] *= 2;
            snprintf(what, sizeof what, "conv2d %s: twice adds up (%s)", c->name, names[k]);
            fails += check_close(what, d2[k]->data, d1[k]->data, d1[k]->numel, 1e-6, 1e-6);
        }
        free_all(d1, 3);
        free_all(d2, 3);
        tensor_free(x); tensor_free(w); tensor_free(dout);
    }
    return fails;
}

// same inputs, same bits: the batch sums of dw and db run in a fixed order whatever the threads do
static int conv_backward_deterministic(void) {
    Rng rng;
    rng_seed(&rng, 16);
    const int N = 6, C = 8, H = 12, W = 12, Co = 8, K = 3;
    Tensor *x = test_tensor(&rng, false, -1, 1, SHAPE(N, C, H, W));
    Tensor *w = test_tensor(&rng, false, -1, 1, SHAPE(Co, C, K, K));
    Tensor *dout = test_tensor(&rng, false, -1, 1, SHAPE(N, Co, H - K + 1, W - K + 1));
    Tensor *runs[2][3];
    for (int r = 0; r < 2; r++) {
        runs[r][0] = tensor_zeros(DEV_CPU, 4, x->shape);
        runs[r][1] = tensor_zeros(DEV_CPU, 4, w->shape);
        runs[r][2] = tensor_zeros(DEV_CPU, SHAPE(Co));
        conv2d_backward_cpu(runs[r][0]->data, runs[r][1]->data, runs[r][2]->data, dout->data, x->data, w->data, N, C,
                            H, W, Co, K, 1, 0);
    }
    bool same = true;
    for (int k = 0; k < 3; k++)
        same &= memcmp(runs[0][k]->data, runs[1][k]->data, (size_t)runs[0][k]->numel * sizeof(float)) == 0;
    int f = check_true(same, "conv2d backward twice on the same inputs: bit-identical dx, dw, db");
    for (int r = 0; r < 2; r++) free_all(runs[r], 3);
    tensor_free(x); tensor_free(w); tensor_free(dout);
    return f;
}

// Called from inside another parallel region the runtime gives the convolution a team of one thread: it must still
// cover every image (the split follows the team it got, not the one it asked for). 1e-5: dw sums in another order.
static int conv_inside_parallel_region(void) {
    Rng rng;
    rng_seed(&rng, 18);
    const int N = 6, C = 8, H = 12, W = 12, Co = 8, K = 3, Ho = H - K + 1;
    Tensor *x = test_tensor(&rng, false, -1, 1, SHAPE(N, C, H, W));
    Tensor *w = test_tensor(&rng, false, -1, 1, SHAPE(Co, C, K, K));
    Tensor *dout = test_tensor(&rng, false, -1, 1, SHAPE(N, Co, Ho, Ho));
    Tensor *runs[2][3];
    for (int r = 0; r < 2; r++) {
        runs[r][0] = tensor_zeros(DEV_CPU, SHAPE(N, Co, Ho, Ho));  // forward output
        runs[r][1] = tensor_zeros(DEV_CPU, 4, x->shape);           // dx
        runs[r][2] = tensor_zeros(DEV_CPU, 4, w->shape);           // dw
        #pragma omp parallel num_threads(2) if (r == 1)
        {
            #pragma omp single
            {
                conv2d_forward_cpu(runs[r][0]->data, x->data, w->data, NULL, NULL, 0, false, N, C, H, W, Co, K, 1, 0);
                conv2d_backward_cpu(runs[r][1]->data, runs[r][2]->data, NULL, dout->data, x->data, w->data, N, C, H,
                                    W, Co, K, 1, 0);
            }
        }
    }
    const char *names[] = {"out", "dx", "dw"};
    char what[80];
    int f = 0;
    for (int k = 0; k < 3; k++) {
        snprintf(what, sizeof what, "conv2d inside a parallel region: %s", names[k]);
        f += check_close(what, runs[1][k]->data, runs[0][k]->data, runs[0][k]->numel, 1e-5, 1e-5);
    }
    for (int r = 0; r < 2; r++) free_all(runs[r], 3);
    tensor_free(x); tensor_free(w); tensor_free(dout);
    return f;
}

// ---- avgpool, reflect pad, channel pad ----
typedef struct { int k, stride; } PoolCtx;
static Tensor *build_avgpool(Tensor **in, void *ctx) {
    PoolCtx *c = ctx;
    return op_avgpool2d(in[0], c->k, c->stride);
}
static Tensor *build_reflect(Tensor **in, void *ctx) { return op_reflect_pad2d(in[0], *(int *)ctx); }
static Tensor *build_channel_pad(Tensor **in, void *ctx) { return op_channel_pad(in[0], *(int *)ctx); }

static int grad_spatial(void) {
    Rng rng;
    rng_seed(&rng, 17);
    int fails = 0;
    char name[64];
    const PoolCtx pools[] = {{1, 1}, {2, 2}, {3, 1}, {4, 2}};
    for (int i = 0; i < 4; i++) {
        Tensor *x = test_tensor(&rng, true, -1, 1, SHAPE(2, 2, 6, 5));
        snprintf(name, sizeof name, "avgpool k=%d s=%d on 6x5", pools[i].k, pools[i].stride);
        fails += gradcheck(name, build_avgpool, (void *)&pools[i], &x, 1, TOL);
        tensor_free(x);
    }
    const struct { int pad, H, W; } pads[] = {{1, 3, 3}, {1, 3, 4}, {2, 3, 3}, {2, 4, 3}};
    for (int i = 0; i < 4; i++) {
        Tensor *x = test_tensor(&rng, true, -1, 1, SHAPE(2, 2, pads[i].H, pads[i].W));
        snprintf(name, sizeof name, "reflect pad %d on %dx%d", pads[i].pad, pads[i].H, pads[i].W);
        fails += gradcheck(name, build_reflect, (void *)&pads[i].pad, &x, 1, TOL);
        tensor_free(x);
    }
    int co = 5;
    Tensor *x4 = test_tensor(&rng, true, -1, 1, SHAPE(2, 3, 2, 2)), *x2 = test_tensor(&rng, true, -1, 1, SHAPE(3, 2));
    fails += gradcheck("channel pad (2,3,2,2) -> 5 channels", build_channel_pad, &co, &x4, 1, TOL);
    fails += gradcheck("channel pad (3,2) -> 5 channels", build_channel_pad, &co, &x2, 1, TOL);
    tensor_free(x4);
    tensor_free(x2);
    return fails;
}

static int spatial_forward_by_hand(void) {
    float v[16];
    for (int i = 0; i < 16; i++) v[i] = (float)i;  // 4x4: row r is 4r .. 4r+3
    Tensor *x = tensor_from(DEV_CPU, SHAPE(1, 1, 4, 4), v);
    int f = check_close("avgpool k1 s1 is the identity", op_avgpool2d(x, 1, 1)->data, v, 16, 0, 0);
    // 2x2 windows: (0+1+4+5)/4 = 2.5, then +2 per column step and +8 per row step
    f += check_close("avgpool k2 s2 by hand", op_avgpool2d(x, 2, 2)->data, (float[]){2.5f, 4.5f, 10.5f, 12.5f}, 4, 0, 0);
    // 3x3 windows at stride 1: centre values 5, 6, 9, 10
    f += check_close("avgpool k3 s1 by hand", op_avgpool2d(x, 3, 1)->data, (float[]){5, 6, 9, 10}, 4, 0, 1e-6);
    f += check_close("avgpool k4 s2 by hand (whole map)", op_avgpool2d(x, 4, 2)->data, (float[]){7.5f}, 1, 0, 0);
    tensor_free(x);

    // torch.nn.ReflectionPad2d(1) of [1 2 3; 4 5 6; 7 8 9]: row/col -1 mirrors to 1 and 3 to 1 (edge not repeated)
    Tensor *x3 = tensor_from(DEV_CPU, SHAPE(1, 1, 3, 3), (float[]){1, 2, 3, 4, 5, 6, 7, 8, 9});
    const float pad1[25] = {5, 4, 5, 6, 5,
                            2, 1, 2, 3, 2,
                            5, 4, 5, 6, 5,
                            8, 7, 8, 9, 8,
                            5, 4, 5, 6, 5};
    f += check_close("reflect pad 1: 3x3 -> 5x5 (torch)", op_reflect_pad2d(x3, 1)->data, pad1, 25, 0, 0);
    // pad 2: source rows/cols 2 1 0 1 2 1 0
    const float pad2[49] = {9, 8, 7, 8, 9, 8, 7,
                            6, 5, 4, 5, 6, 5, 4,
                            3, 2, 1, 2, 3, 2, 1,
                            6, 5, 4, 5, 6, 5, 4,
                            9, 8, 7, 8, 9, 8, 7,
                            6, 5, 4, 5, 6, 5, 4,
                            3, 2, 1, 2, 3, 2, 1};
    f += check_close("reflect pad 2: 3x3 -> 7x7 (torch)", op_reflect_pad2d(x3, 2)->data, pad2, 49, 0, 0);
    // non-square 2x3, pad 1: source rows 1 0 1 0, cols 1 0 1 2 1
    Tensor *x23 = tensor_from(DEV_CPU, SHAPE(1, 1, 2, 3), (float[]){1, 2, 3, 4, 5, 6});
    const float pad23[20] = {5, 4, 5, 6, 5,
                             2, 1, 2, 3, 2,
                             5, 4, 5, 6, 5,
                             2, 1, 2, 3, 2};
    f += check_close("reflect pad 1: 2x3 -> 4x5 (torch)", op_reflect_pad2d(x23, 1)->data, pad23, 20, 0, 0);
    // channel pad: (2, 1, 1, 2) -> (2, 3, 1, 2), new channels zero at the end of each image
    Tensor *xc = tensor_from(DEV_CPU, SHAPE(2, 1, 1, 2), (float[]){1, 2, 3, 4});
    f += check_close("channel pad 1 -> 3 by hand", op_channel_pad(xc, 3)->data,
                     (float[]){1, 2, 0, 0, 0, 0, 3, 4, 0, 0, 0, 0}, 12, 0, 0);
    tensor_free(x3); tensor_free(x23); tensor_free(xc);
    return f;
}

// The pooling kernels work on chunks of whole planes as one flat array (conv.c): shapes with several chunks, a
// partial last chunk, planes bigger than a chunk and leftover rows/columns, against a loop over each window.
static int avgpool_vs_direct_loops(void) {
    const struct { int N, C, H, W, K, stride; } cases[] = {
        {3, 7, 30, 30, 4, 2}, {2, 40, 5, 5, 3, 1}, {1, 300, 3, 3, 3, 1}, {2, 3, 70, 66, 3, 2}, {2, 9, 14, 13, 2, 2},
        {1, 5, 9, 11, 4, 3}};
    Rng rng;
    rng_seed(&rng, 23);
    int fails = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int N = cases[c].N, C = cases[c].C, H = cases[c].H, W = cases[c].W, K = cases[c].K, s = cases[c].stride;
        int Ho = (H - K) / s + 1, Wo = (W - K) / s + 1;
        long n_in = (long)N * C * H * W, n_out = (long)N * C * Ho * Wo;
        float *x = xmalloc((size_t)n_in * sizeof(float)), *dout = xmalloc((size_t)n_out * sizeof(float));
        float *out = xmalloc((size_t)n_out * sizeof(float)), *want = xmalloc((size_t)n_out * sizeof(float));
        float *dx = xmalloc((size_t)n_in * sizeof(float)), *want_dx = xmalloc((size_t)n_in * sizeof(float));
        for (long i = 0; i < n_in; i++) x[i] = dx[i] = want_dx[i] = rng_uniform(&rng) - 0.5f;  // dx accumulates
        for (long i = 0; i < n_out; i++) dout[i] = rng_uniform(&rng) - 0.5f;
        for (long pl = 0; pl < (long)N * C; pl++)
            for (int oh = 0; oh < Ho; oh++)
                for (int ow = 0; ow < Wo; ow++) {
                    double sum = 0;
                    for (int i = 0; i < K; i++)
                        for (int j = 0; j < K; j++) sum += x[(pl * H + oh * s + i) * W + ow * s + j];
                    want[(pl * Ho + oh) * Wo + ow] = (float)(sum / (K * K));
                    float share = dout[(pl * Ho + oh) * Wo + ow] / (float)(K * K);
                    for (int i = 0; i < K; i++)
                        for (int j = 0; j < K; j++) want_dx[(pl * H + oh * s + i) * W + ow * s + j] += share;
                }
        avgpool2d_forward_cpu(out, x, N, C, H, W, K, s);
        avgpool2d_backward_cpu(dx, dout, N, C, H, W, K, s);
        char name[96];
        snprintf(name, sizeof name, "avgpool k%d s%d on (%d, %d, %d, %d): forward", K, s, N, C, H, W);
        fails += check_close(name, out, want, n_out, 1e-6, 1e-5);
        snprintf(name, sizeof name, "avgpool k%d s%d on (%d, %d, %d, %d): backward", K, s, N, C, H, W);
        fails += check_close(name, dx, want_dx, n_in, 1e-6, 1e-5);
        free(x); free(dout); free(out); free(want); free(dx); free(want_dx);
    }
    return fails;
}

// ---- CPC's pieces: the patch grid, and a conv whose weight is masked ----
typedef struct { int P, stride; } PatchCtx;
static Tensor *build_patches(Tensor **in, void *ctx) {
    PatchCtx *c = ctx;
    return op_extract_patches(in[0], c->P, c->stride);
}
// conv(x, w * mask, b, pad 1): the mask is a constant, so d/dw is zero exactly where the mask is
static Tensor *build_masked_conv(Tensor **in, void *ctx) { return op_conv2d(in[0], op_mul(in[1], in[3]), in[2], 1, 1); }

static int grad_cpc_pieces(void) {
    Rng rng;
    rng_seed(&rng, 29);
    int fails = 0;
    char name[64];
    const PatchCtx cases[] = {{8, 4}, {3, 1}, {2, 2}, {4, 3}};   // overlapping, dense, tiling, uneven coverage
    for (int i = 0; i < 4; i++) {
        Tensor *x = test_tensor(&rng, true, -1, 1, SHAPE(2, 2, cases[i].P == 8 ? 12 : 7, cases[i].P == 8 ? 12 : 7));
        snprintf(name, sizeof name, "extract_patches %dx%d stride %d of %dx%d", cases[i].P, cases[i].P,
                 cases[i].stride, x->shape[2], x->shape[3]);
        fails += gradcheck(name, build_patches, (void *)&cases[i], &x, 1, TOL);
        tensor_free(x);
    }
    Tensor *in[4] = {test_tensor(&rng, true, -1, 1, SHAPE(2, 3, 5, 5)), test_tensor(&rng, true, -1, 1, SHAPE(4, 3, 3, 3)),
                     test_tensor(&rng, true, -1, 1, SHAPE(4)), tensor_new(DEV_CPU, SHAPE(4, 3, 3, 3))};
    for (long i = 0; i < in[3]->numel; i++) in[3]->data[i] = i % 9 < 6 ? 1.0f : 0.0f;   // CPC's mask: rows below zero
    fails += gradcheck("conv 3x3 pad 1 with a masked weight (CPC context)", build_masked_conv, NULL, in, 4, TOL);
    tensor_zero_grad(in[1]);
    backward(op_sum(build_masked_conv(in, NULL), -1));
    double masked = 0;
    for (long i = 0; i < in[1]->numel; i++) if (i % 9 >= 6) masked += fabs(in[1]->grad[i]);
    tape_clear();
    fails += check_true(masked == 0, "the masked weights get no gradient (sum |dw| there = %g)", masked);
    free_all(in, 4);
    return fails;
}

static int patches_forward_by_hand(void) {
    float v[16];
    for (int i = 0; i < 16; i++) v[i] = (float)i;   // one 4x4 image: row r is 4r .. 4r+3
    Tensor *x = tensor_from(DEV_CPU, SHAPE(1, 1, 4, 4), v);
    // 2x2 patches at stride 2: a 2x2 grid of the four quarters, in row-major grid order
    int f = check_close("2x2 patches at stride 2 of a 4x4 image", op_extract_patches(x, 2, 2)->data,
                        (float[]){0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15}, 16, 0, 0);
    // 3x3 at stride 1: a 2x2 grid; patch (1, 0) starts at row 1, column 0
    Tensor *p = op_extract_patches(x, 3, 1);
    f += check_close("3x3 patch (1, 0) at stride 1", p->data + 2 * 9, (float[]){4, 5, 6, 8, 9, 10, 12, 13, 14}, 9, 0, 0);
    tensor_free(x);
    return f;
}

// ---- batch norm ----
typedef struct { bool training; Tensor *running_mean, *running_var; } BnCtx;
static Tensor *build_bn(Tensor **in, void *ctx) {
    BnCtx *c = ctx;
    return op_batchnorm(in[0], in[1], in[2], c->running_mean, c->running_var, c->training);
}

static int gradcheck_bn(const char *name, Tensor *x, bool training, Rng *rng) {
    int C = x->shape[1];
    Tensor *in[3] = {x, test_tensor(rng, true, 0.5f, 1.5f, SHAPE(C)), test_tensor(rng, true, -0.5f, 0.5f, SHAPE(C))};
    // eval mode normalises with running stats unlike the batch's, so the test sees a real affine map
    Tensor *rm = test_tensor(rng, false, -0.5f, 0.5f, SHAPE(C)), *rv = test_tensor(rng, false, 0.5f, 2.0f, SHAPE(C));
    BnCtx ctx = {training, rm, rv};
    int f = gradcheck(name, build_bn, &ctx, in, 3, TOL);
    tensor_free(in[1]); tensor_free(in[2]); tensor_free(rm); tensor_free(rv);
    return f;
}

static int grad_batchnorm(void) {
    Rng rng;
    rng_seed(&rng, 18);
    int fails = 0;
    for (int training = 1; training >= 0; training--) {
        char name[80];
        Tensor *x4 = test_tensor(&rng, true, -2, 2, SHAPE(3, 2, 2, 3)), *x2 = test_tensor(&rng, true, -2, 2, SHAPE(5, 3));
        snprintf(name, sizeof name, "batchnorm2d (3,2,2,3) %s", training ? "train" : "eval");
        fails += gradcheck_bn(name, x4, training, &rng);
        snprintf(name, sizeof name, "batchnorm1d (5,3) %s", training ? "train" : "eval");
        fails += gradcheck_bn(name, x2, training, &rng);
        tensor_free(x4);
        tensor_free(x2);
    }
    // the fewest values training allows; spread kept >> eps so the statistics are smooth in every input
    Tensor *two = tensor_from(DEV_CPU, SHAPE(2, 3), (float[]){-0.7f, 0.4f, 1.3f, 0.9f, -1.1f, -0.2f});
    Tensor *one_image = tensor_from(DEV_CPU, SHAPE(1, 2, 2, 2), (float[]){0.3f, -1.2f, 0.8f, 1.9f, -0.4f, 0.6f, -1.5f, 0.1f});
    two->requires_grad = one_image->requires_grad = true;
    fails += gradcheck_bn("batchnorm1d N=2 S=1 train", two, true, &rng);
    fails += gradcheck_bn("batchnorm2d N=1 S=4 train", one_image, true, &rng);
    tensor_free(two);
    tensor_free(one_image);
    return fails;
}

static int batchnorm_forward_by_hand(void) {
    // x: (N=2, C=2, S=2). channel 0 holds 1 2 | 3 4: mean 2.5, biased var 1.25, unbiased 5/3.
    //                     channel 1 holds -1 1 | -1 1: mean 0, biased var 1, unbiased 4/3.
    Tensor *x = tensor_from(DEV_CPU, SHAPE(2, 2, 1, 2), (float[]){1, 2, -1, 1, 3, 4, -1, 1});
    Tensor *gamma = tensor_from(DEV_CPU, SHAPE(2), (float[]){2.0f, 0.5f});
    Tensor *beta = tensor_from(DEV_CPU, SHAPE(2), (float[]){0.1f, -0.3f});
    Tensor *rm = tensor_zeros(DEV_CPU, SHAPE(2)), *rv = tensor_ones(DEV_CPU, SHAPE(2));
    const double mean[2] = {2.5, 0.0}, var[2] = {1.25, 1.0}, unbiased[2] = {5.0 / 3.0, 4.0 / 3.0};
    const double g[2] = {2.0, 0.5}, b[2] = {0.1, -0.3};
    const float xs[8] = {1, 2, -1, 1, 3, 4, -1, 1};
    float want[8], want_rm[2], want_rv[2], want_eval[8];
    for (int i = 0; i < 8; i++) {
        int c = i / 2 % 2;
        want[i] = (float)((xs[i] - mean[c]) / sqrt(var[c] + 1e-5) * g[c] + b[c]);
    }
    for (int c = 0; c < 2; c++) {
        want_rm[c] = (float)(0.9 * 0.0 + 0.1 * mean[c]);
        want_rv[c] = (float)(0.9 * 1.0 + 0.1 * unbiased[c]);
    }
    for (int i = 0; i < 8; i++) {
        int c = i / 2 % 2;
        want_eval[i] = (float)((xs[i] - want_rm[c]) / sqrt(want_rv[c] + 1e-5) * g[c] + b[c]);
    }
    int f = check_close("batchnorm train output (formula)", op_batchnorm(x, gamma, beta, rm, rv, true)->data, want, 8,
                        1e-6, 1e-6);
    f += check_close("running mean after one step: 0.1 * mean", rm->data, want_rm, 2, 1e-7, 1e-6);
    f += check_close("running var after one step: 0.9 + 0.1 * unbiased", rv->data, want_rv, 2, 1e-7, 1e-6);
    f += check_close("batchnorm eval output with running stats", op_batchnorm(x, gamma, beta, rm, rv, false)->data,
                     want_eval, 8, 1e-6, 1e-6);
    f += check_close("eval mode leaves the running mean alone", rm->data, want_rm, 2, 0, 0);
    f += check_close("eval mode leaves the running var alone", rv->data, want_rv, 2, 0, 0);
    tensor_free(x); tensor_free(gamma); tensor_free(beta); tensor_free(rm); tensor_free(rv);
    return f;
}

// BatchNorm1d (S = 1) walks rows of channels (ops/norm.c); the same numbers laid out as one image whose positions are
// the rows, (1, C, N), take the per-channel path. Both must agree in every output, statistic and gradient. 300 x 130:
// three channel blocks (the last partial) and enough work for both threads.
static int batchnorm_rows_vs_planes(void) {
    enum { N = 300, C = 130 };
    Rng rng;
    rng_seed(&rng, 31);
    float *x = xmalloc(sizeof(float) * N * C), *dy = xmalloc(sizeof(float) * N * C);
    float *xt = xmalloc(sizeof(float) * N * C), *dyt = xmalloc(sizeof(float) * N * C);
    for (int i = 0; i < N * C; i++) { x[i] = 3.0f * rng_uniform(&rng) - 1.0f; dy[i] = rng_uniform(&rng) - 0.5f; }
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) { xt[c * N + n] = x[n * C + c]; dyt[c * N + n] = dy[n * C + c]; }
    float gamma[C], beta[C], stats[2][8][C];   // [rows, planes][mean, invstd, rm, rv, dgamma, dbeta, -, -]
    for (int c = 0; c < C; c++) { gamma[c] = 0.5f + rng_uniform(&rng); beta[c] = rng_uniform(&rng) - 0.5f; }
    float *out[2] = {xmalloc(sizeof(float) * N * C), xmalloc(sizeof(float) * N * C)};
    float *dx[2] = {xcalloc(N * C, sizeof(float)), xcalloc(N * C, sizeof(float))};
    int f = 0;
    for (int training = 1; training >= 0; training--) {
        for (int k = 0; k < 2; k++) {
            float(*st)[C] = stats[k];
            for (int c = 0; c < C; c++) { st[2][c] = 0.1f * c; st[3][c] = 1.0f + 0.01f * c; st[4][c] = st[5][c] = 0; }
            memset(dx[k], 0, sizeof(float) * N * C);
            int n = k ? 1 : N, s = k ? N : 1;   // rows (N, C, 1) or planes (1, C, N)
            batchnorm_forward_cpu(out[k], st[0], st[1], k ? xt : x, gamma, beta, st[2], st[3], n, C, s, training,
                                  BN_MOMENTUM, BN_EPS);
            batchnorm_backward_cpu(dx[k], st[4], st[5], k ? dyt : dy, k ? xt : x, st[0], st[1], gamma, n, C, s,
                                   training);
        }
        for (int n = 0; n < N; n++)   // back to rows
            for (int c = 0; c < C; c++) { xt[n * C + c] = out[1][c * N + n]; dyt[n * C + c] = dx[1][c * N + n]; }
        const char *mode = training ? "train" : "eval";
        char what[96];
        const char *names[6] = {"mean", "invstd", "running mean", "running var", "dgamma", "dbeta"};
        snprintf(what, sizeof what, "bn rows == planes (%s): output", mode);
        f += check_close(what, out[0], xt, N * C, 1e-5, 1e-5);
        snprintf(what, sizeof what, "bn rows == planes (%s): dx", mode);
        f += check_close(what, dx[0], dyt, N * C, 1e-5, 1e-5);
        for (int j = 0; j < 6; j++) {
            snprintf(what, sizeof what, "bn rows == planes (%s): %s", mode, names[j]);
            f += check_close(what, stats[0][j], stats[1][j], C, 1e-5, 1e-5);
        }
        for (int i = 0; i < N * C; i++) xt[i] = x[(i % N) * C + i / N], dyt[i] = dy[(i % N) * C + i / N];
    }
    free(x); free(dy); free(xt); free(dyt); free(out[0]); free(out[1]); free(dx[0]); free(dx[1]);
    return f;
}

void register_grad_conv_tests(void) {
    test_register("grad", "matmul, four transpose combinations", grad_matmul);
    test_register("grad", "linear with and without bias", grad_linear);
    test_register("grad", "conv2d edge cases", grad_conv);
    test_register("grad", "conv2d with fused relu / residual add", grad_conv_fused);
    test_register("grad", "conv2d + pooled, padded shortcut (and == the ops it replaces)", grad_conv_shortcut);
    test_register("grad", "avgpool, reflect pad, channel pad", grad_spatial);
    test_register("grad", "batchnorm train and eval", grad_batchnorm);
    test_register("grad", "CPC: patch grid, masked context conv", grad_cpc_pieces);
    test_register("forward", "patch grid by hand", patches_forward_by_hand);
    test_register("forward", "conv2d by hand", conv_forward_by_hand);
    test_register("forward", "conv2d against direct loops (every kernel path)", conv_vs_direct_loops);
    test_register("forward", "conv2d backward accumulates", conv_backward_accumulates);
    test_register("forward", "fused conv2d_relu / conv2d_add equal the ops they replace", conv_fused_vs_unfused);
    test_register("forward", "conv2d backward is deterministic", conv_backward_deterministic);
    test_register("forward", "conv2d inside another parallel region", conv_inside_parallel_region);
    test_register("forward", "avgpool, reflect pad, channel pad by hand", spatial_forward_by_hand);
    test_register("forward", "avgpool forward and backward against loops over each window", avgpool_vs_direct_loops);
    test_register("forward", "batchnorm output and running stats by hand", batchnorm_forward_by_hand);
    test_register("forward", "batchnorm over rows (S = 1) == the same values as one image's positions",
                  batchnorm_rows_vs_planes);
}
