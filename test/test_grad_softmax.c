// test_grad_softmax.c - softmax, cross-entropy, the AMDIM NCE log-softmax, the shape ops and dropout (finite
// differences against backward(), forward values against double-precision references written here), then the
// parameter block and the Adam / SGD updates written out in double.
//
// Tolerances (budget = error / (atol + rtol*|ref|); the worst budget measured on x86-64 gcc is in brackets):
//   TOL_SMOOTH  1e-4 + 1e-3 rel, gradchecks of the nonlinear ops [38%]: float32 outputs and a central step of 1e-2.
//               The projected sum carries ~1e-7 relative rounding per output, divided by 2*eps = 2e-2, plus O(eps^2)
//               truncation: errors of 1e-5..5e-5. A wrong backward is off by O(0.1..1).
//   TOL_LINEAR  5e-6 + 5e-6 rel, gradchecks of the ops that only move or mask data [26%]: no truncation error,
//               only the rounding of x +- eps in float (~1e-7 / 2e-2 ~ 5e-6 relative).
//   FWD_*       5e-7 + 5e-7 rel, float32 forward values against double [21%]: a few ulps of values of order 1..4.
//   NCE at +-20 / +-60: atol 1e-5 / 2e-5 on the forward, about 2.6 ulps of the largest |out| (~2 * scale) [14%];
//               its gradient (terms <= 1) 1e-6 + 1e-5 rel [18%].
//   optimisers  2e-7 + 2e-7 rel after three float32 steps against double [20%]: about one ulp of p ~ 0.5 plus the
//               rounding of the updates. Coupled vs decoupled weight decay differs by lr*wd*p ~ 1e-3.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ops/ops.h"
#include "../tensor/device.h"
#include "test.h"

static const GradTol TOL_SMOOTH = {.atol = 1e-4, .rtol = 1e-3, .eps = 1e-2};
static const GradTol TOL_LINEAR = {.atol = 5e-6, .rtol = 5e-6, .eps = 1e-2};
static const double FWD_ATOL = 5e-7, FWD_RTOL = 5e-7;

// ---- softmax and log-softmax over every dim ----

// want: (outer, dim, inner) softmax or log-softmax of x, in double
static void reference_softmax(float *want, const float *x, long outer, long dim, long inner, bool log_out) {
    for (long o = 0; o < outer; o++) {
        for (long i = 0; i < inner; i++) {
            double s = 0;
            for (long k = 0; k < dim; k++) s += exp((double)x[(o * dim + k) * inner + i]);
            for (long k = 0; k < dim; k++) {
                double v = x[(o * dim + k) * inner + i];
                want[(o * dim + k) * inner + i] = (float)(log_out ? v - log(s) : exp(v) / s);
            }
        }
    }
}

typedef struct { int dim; bool log_out; } SoftmaxCtx;
static Tensor *build_softmax(Tensor **in, void *ctx) {
    SoftmaxCtx *c = ctx;
    return c->log_out ? op_log_softmax(in[0], c->dim) : op_softmax(in[0], c->dim);
}

static int grad_softmax(void) {
    Rng rng;
    rng_seed(&rng, 11);
    Tensor *x = test_tensor(&rng, true, -3, 3, SHAPE(3, 4, 5));
    float want[60];
    char name[64];
    int fails = 0;
    for (int dim = 0; dim < 3; dim++) {
        long outer = 1, inner = 1;
        for (int d = 0; d < dim; d++) outer *= x->shape[d];
        for (int d = dim + 1; d < 3; d++) inner *= x->shape[d];
        for (int log_out = 0; log_out < 2; log_out++) {
            SoftmaxCtx ctx = {dim, log_out};
            snprintf(name, sizeof name, "%s dim=%d forward", log_out ? "log_softmax" : "softmax", dim);
            reference_softmax(want, x->data, outer, x->shape[dim], inner, log_out);
            fails += check_close(name, build_softmax(&x, &ctx)->data, want, 60, FWD_ATOL, FWD_RTOL);
            tape_clear();
            snprintf(name, sizeof name, "%s dim=%d", log_out ? "log_softmax" : "softmax", dim);
            fails += gradcheck(name, build_softmax, &ctx, &x, 1, TOL_SMOOTH);
        }
    }
    tensor_free(x);
    return fails;
}

// ---- cross-entropy ----

typedef struct { const int *labels; } LabelCtx;
static Tensor *build_cross_entropy(Tensor **in, void *ctx) { return op_cross_entropy(in[0], ((LabelCtx *)ctx)->labels); }

static int grad_cross_entropy(void) {
    Rng rng;
    rng_seed(&rng, 12);
    enum { N = 6, K = 5 };
    Tensor *logits = test_tensor(&rng, true, -4, 4, SHAPE(N, K));
    int labels[N] = {2, -1, 0, 4, -1, 1};
    LabelCtx ctx = {labels};
    // mean over the 4 labelled rows of log(sum exp) - logit[label]
    double total = 0;
    for (int r = 0; r < N; r++) {
        if (labels[r] < 0) continue;
        double s = 0;
        for (int k = 0; k < K; k++) s += exp((double)logits->data[r * K + k]);
        total += log(s) - logits->data[r * K + labels[r]];
    }
    float want = (float)(total / 4);
    int fails = check_close("cross_entropy forward", build_cross_entropy(&logits, &ctx)->data, &want, 1, FWD_ATOL,
                            FWD_RTOL);
    tape_clear();
    fails += gradcheck("cross_entropy, 2 of 6 labels ignored", build_cross_entropy, &ctx, &logits, 1, TOL_SMOOTH);

    // every label ignored: loss exactly 0 and an all-zero gradient
    int ignored[N] = {-1, -1, -1, -1, -1, -1};
    tensor_zero_grad(logits);
    Tensor *loss = op_cross_entropy(logits, ignored);
    float zero = 0.0f, zeros[N * K] = {0};
    fails += check_close("all ignored: loss", loss->data, &zero, 1, 0, 0);
    backward(loss);
    fails += check_close("all ignored: gradient", logits->grad, zeros, N * K, 0, 0);
    tape_clear();
    tensor_free(logits);
    return fails;
}

// ---- the NCE log-softmax ----

// want: (B, P, L) = pos - log(exp(pos) + sum_{j != i, l'} exp(neg)), straight from the formula in double;
// dwant (may be NULL): d sum(out * r) / dx in double, r: (B, P, L)
static void reference_nce(float *want, float *dwant, const float *x, const float *r, int B, int P, int L) {
    for (int i = 0; i < B; i++) {
        for (int p = 0; p < P; p++) {
            const float *xr = x + (long)(i * P + p) * B * L;
            double negatives = 0;
            for (int j = 0; j < B; j++) if (j != i) for (int l = 0; l < L; l++) negatives += exp((double)xr[j * L + l]);
            for (int l = 0; l < L; l++) {
                double pos = xr[i * L + l], denominator = exp(pos) + negatives;
                want[(i * P + p) * L + l] = (float)(pos - log(denominator));
            }
            if (!dwant) continue;
            float *dr = dwant + (long)(i * P + p) * B * L;
            const float *rr = r + (i * P + p) * L;
            for (int j = 0; j < B; j++) {
                for (int l = 0; l < L; l++) {
                    double v = xr[j * L + l], g = 0;
                    if (j == i) {
                        g = rr[l] * (1 - exp(v) / (exp(v) + negatives));
                    } else {
                        for (int lp = 0; lp < L; lp++) g -= rr[lp] * exp(v) / (exp((double)xr[i * L + lp]) + negatives);
                    }
                    dr[j * L + l] = (float)g;
                }
            }
        }
    }
}

typedef struct { int B, P, L; } NceCtx;
static Tensor *build_nce(Tensor **in, void *ctx) {
    NceCtx *c = ctx;
    return op_nce_log_softmax(in[0], c->B, c->P, c->L);
}

static int grad_nce(void) {
    Rng rng;
    rng_seed(&rng, 13);
    NceCtx cases[] = {{2, 1, 1}, {3, 1, 4}, {4, 3, 2}};
    char name[80];
    int fails = 0;
    for (int c = 0; c < 3; c++) {
        int B = cases[c].B, P = cases[c].P, L = cases[c].L;
        // the scores as the NCE produces them: a (B*P, B*L) matrix
        Tensor *x = test_tensor(&rng, true, -3, 3, SHAPE(B * P, B * L));
        float want[24];
        reference_nce(want, NULL, x->data, NULL, B, P, L);
        snprintf(name, sizeof name, "nce forward B=%d P=%d L=%d", B, P, L);
        fails += check_close(name, build_nce(&x, &cases[c])->data, want, B * P * L, FWD_ATOL, FWD_RTOL);
        tape_clear();
        snprintf(name, sizeof name, "nce_log_softmax B=%d P=%d L=%d", B, P, L);
        fails += gradcheck(name, build_nce, &cases[c], &x, 1, TOL_SMOOTH);
        tensor_free(x);
    }
    return fails;
}

// A shard of the sources (data-parallel training: a rank's B sources against the Bt targets of all ranks): its rows
// equal the same rows of the whole op bit for bit, and its gradient checks.
typedef struct { int B, P, L, Bt, first; } NceShardCtx;
static Tensor *build_nce_shard(Tensor **in, void *ctx) {
    NceShardCtx *c = ctx;
    return op_nce_log_softmax_shard(in[0], c->B, c->P, c->L, c->Bt, c->first);
}

static int grad_nce_shard(void) {
    Rng rng;
    rng_seed(&rng, 31);
    NceShardCtx c = {.B = 2, .P = 2, .L = 3, .Bt = 5, .first = 2};
    Tensor *full = test_tensor(&rng, false, -3, 3, SHAPE(c.Bt * c.P, c.Bt * c.L));
    Tensor *rows = tensor_view(full, (long)c.first * c.P * c.Bt * c.L, 2, (int[]){c.B * c.P, c.Bt * c.L});
    Tensor *all = op_nce_log_softmax(full, c.Bt, c.P, c.L), *part = build_nce_shard(&rows, &c);
    int fails = check_close("shard rows == the whole op's rows", part->data, all->data + (long)c.first * c.P * c.L,
                            (long)c.B * c.P * c.L, 0, 0);
    tape_clear();
    tensor_free(rows);
    tensor_free(full);
    Tensor *x = test_tensor(&rng, true, -3, 3, SHAPE(c.B * c.P, c.Bt * c.L));
    fails += gradcheck("nce_log_softmax shard B=2 of Bt=5 first=2", build_nce_shard, &c, &x, 1, TOL_SMOOTH);
    tensor_free(x);
    return fails;
}

// Scores far beyond what exp() of a float survives; forward and gradient against the double formula.
static int nce_large_magnitude(void) {
    Rng rng;
    rng_seed(&rng, 14);
    enum { B = 4, P = 2, L = 5, OUT = B * P * L, IN = B * P * B * L };
    float want[OUT], dwant[IN], r[OUT];
    for (int k = 0; k < OUT; k++) r[k] = 2.0f * rng_uniform(&rng) - 1.0f;
    const float scales[2] = {20.0f, 60.0f};
    // absolute tolerance: a few float ulps of the largest |out| (~2 * scale)
    const double atols[2] = {1e-5, 2e-5};
    char name[80];
    int fails = 0;
    for (int s = 0; s < 2; s++) {
        float c = scales[s];
        Tensor *x = test_tensor(&rng, true, -c, c, SHAPE(B * P, B * L));
        // the extremes: image 0's positives at +c (out ~ 0), image 1's at -c (out ~ -2c)
        for (int p = 0; p < P; p++) {
            for (int l = 0; l < L; l++) {
                x->data[((0 * P + p) * B + 0) * L + l] = c;
                x->data[((1 * P + p) * B + 1) * L + l] = -c;
            }
        }
        reference_nce(want, dwant, x->data, r, B, P, L);
        Tensor *out = op_nce_log_softmax(x, B, P, L);
        snprintf(name, sizeof name, "nce forward, scores in +-%g", c);
        fails += check_close(name, out->data, want, OUT, atols[s], FWD_RTOL);
        Tensor *rt = tensor_from(DEV_CPU, SHAPE(B, P, L), r);
        backward(op_sum(op_mul(out, rt), -1));
        snprintf(name, sizeof name, "nce gradient, scores in +-%g", c);
        fails += check_close(name, x->grad, dwant, IN, 1e-6, 1e-5);
        tape_clear();
        tensor_free(rt);
        tensor_free(x);
    }
    // B == 1: no negatives, the output is 0 and the gradient nothing
    Tensor *x1 = test_tensor(&rng, true, -5, 5, SHAPE(1, 3, 1, 4));
    float zeros[12] = {0};
    Tensor *out1 = op_nce_log_softmax(x1, 1, 3, 4);
    fails += check_close("nce B=1 forward is 0", out1->data, zeros, 12, 0, 0);
    backward(op_sum(out1, -1));
    fails += check_close("nce B=1 gradient is 0", x1->grad, zeros, 12, 0, 0);
    tape_clear();
    tensor_free(x1);
    return fails;
}

// An AMDIM-sized block (B = 32 images, L = 49 = 7x7 targets, scores in the clip range +-20): large enough to run the
// kernels' OpenMP loops; forward and gradient against the double formula.
static int nce_amdim_size(void) {
    Rng rng;
    rng_seed(&rng, 21);
    enum { B = 32, P = 1, L = 49, OUT = B * P * L, IN = B * P * B * L };
    float *want = xmalloc(OUT * sizeof(float)), *r = xmalloc(OUT * sizeof(float));
    float *dwant = xmalloc(IN * sizeof(float));
    for (int k = 0; k < OUT; k++) r[k] = 2.0f * rng_uniform(&rng) - 1.0f;
    Tensor *x = test_tensor(&rng, true, -20, 20, SHAPE(B * P, B * L));
    reference_nce(want, dwant, x->data, r, B, P, L);
    Tensor *out = op_nce_log_softmax(x, B, P, L);
    int fails = check_close("nce forward B=32 L=49, +-20", out->data, want, OUT, 1e-5, FWD_RTOL);
    Tensor *rt = tensor_from(DEV_CPU, SHAPE(B, P, L), r);
    backward(op_sum(op_mul(out, rt), -1));
    fails += check_close("nce gradient B=32 L=49, +-20", x->grad, dwant, IN, 1e-6, 1e-5);
    tape_clear();
    tensor_free(rt);
    tensor_free(x);
    free(want);
    free(r);
    free(dwant);
    return fails;
}

// ---- reshape, detach, transpose, concat, repeat, gather ----

static Tensor *build_reshape(Tensor **in, void *ctx) { return op_tanh(op_reshape(in[0], SHAPE(4, 6))); }
static Tensor *build_transpose(Tensor **in, void *ctx) { return op_transpose(in[0]); }
static Tensor *build_concat0(Tensor **in, void *ctx) { return op_concat0(in[0], in[1]); }
static Tensor *build_repeat(Tensor **in, void *ctx) { return op_repeat(in[0], 4); }
static Tensor *build_gather(Tensor **in, void *ctx) { return op_gather_location(in[0], (const int *)ctx); }

static int grad_reshape_detach(void) {
    Rng rng;
    rng_seed(&rng, 15);
    Tensor *x = test_tensor(&rng, true, -2, 2, SHAPE(2, 3, 4));
    int fails = gradcheck("tanh(reshape (2,3,4) -> (4,6))", build_reshape, NULL, &x, 1, TOL_SMOOTH);
    // x * detach(x): the gradient is x (one path), not 2x
    Tensor *d = op_detach(x);
    fails += check_true(d->data == x->data && !d->requires_grad && d->node == NULL,
                        "detach shares the data and records no gradient");
    tensor_zero_grad(x);
    backward(op_sum(op_mul(x, d), -1));
    fails += check_close("grad of sum(x * detach(x)) is x", x->grad, x->data, x->numel, 0, 0);
    tape_clear();
    tensor_free(x);
    return fails;
}

static int grad_transpose(void) {
    Rng rng;
    rng_seed(&rng, 16);
    int fails = 0;
    enum { A = 2, M = 37, N = 45 };   // the 3-D case spans several 32 x 32 tiles, the last ones partial
    Tensor *x2 = test_tensor(&rng, true, -1, 1, SHAPE(3, 5));
    Tensor *x3 = test_tensor(&rng, true, -1, 1, SHAPE(A, M, N));
    float want2[15], *want3 = xmalloc(sizeof(float) * A * M * N);
    for (int m = 0; m < 3; m++) for (int n = 0; n < 5; n++) want2[n * 3 + m] = x2->data[m * 5 + n];
    for (int a = 0; a < A; a++)
        for (int m = 0; m < M; m++) for (int n = 0; n < N; n++) want3[(a * N + n) * M + m] = x3->data[(a * M + m) * N + n];
    Tensor *t2 = op_transpose(x2), *t3 = op_transpose(x3);
    fails += check_true(t2->ndim == 2 && t2->shape[0] == 5 && t2->shape[1] == 3 && t3->ndim == 3 &&
                        t3->shape[0] == A && t3->shape[1] == N && t3->shape[2] == M,
                        "transposed shapes (5, 3) and (2, 45, 37)");
    fails += check_close("transpose 2-D forward", t2->data, want2, 15, 0, 0);
    fails += check_close("transpose 3-D forward", t3->data, want3, A * M * N, 0, 0);
    tape_clear();
    fails += gradcheck("transpose (3,5)", build_transpose, NULL, &x2, 1, TOL_LINEAR);
    fails += gradcheck("transpose (2,37,45)", build_transpose, NULL, &x3, 1, TOL_LINEAR);
    tensor_free(x2);
    tensor_free(x3);
    free(want3);
    return fails;
}

static int grad_concat_repeat_gather(void) {
    Rng rng;
    rng_seed(&rng, 17);
    int fails = 0;
    Tensor *ab[2] = {test_tensor(&rng, true, -1, 1, SHAPE(2, 3, 4)), test_tensor(&rng, true, -1, 1, SHAPE(3, 3, 4))};
    Tensor *cat = op_concat0(ab[0], ab[1]);
    float want_cat[60];
    memcpy(want_cat, ab[0]->data, 24 * sizeof(float));
    memcpy(want_cat + 24, ab[1]->data, 36 * sizeof(float));
    fails += check_true(cat->shape[0] == 5 && cat->shape[1] == 3 && cat->shape[2] == 4, "concat0 shape (5, 3, 4)");
    fails += check_close("concat0 forward", cat->data, want_cat, 60, 0, 0);
    tape_clear();
    fails += gradcheck("concat0 (2,3,4) + (3,3,4)", build_concat0, NULL, ab, 2, TOL_LINEAR);
    // only the second operand needs a gradient: the first slice is skipped
    ab[0]->requires_grad = false;
    fails += gradcheck("concat0, first operand constant", build_concat0, NULL, ab, 2, TOL_LINEAR);

    Tensor *x = test_tensor(&rng, true, -1, 1, SHAPE(3, 5));
    Tensor *rep = op_repeat(x, 4);
    float want_rep[60];
    for (int a = 0; a < 3; a++) for (int k = 0; k < 4; k++) for (int n = 0; n < 5; n++)
        want_rep[(a * 4 + k) * 5 + n] = x->data[a * 5 + n];
    fails += check_close("repeat (3,5) x4 forward", rep->data, want_rep, 60, 0, 0);
    tape_clear();
    fails += gradcheck("repeat (3,5) -> (3,4,5)", build_repeat, NULL, &x, 1, TOL_LINEAR);

    Tensor *f = test_tensor(&rng, true, -1, 1, SHAPE(3, 4, 2, 3));
    int idx[3] = {5, 0, 3};
    Tensor *g = op_gather_location(f, idx);
    float want_g[12];
    for (int b = 0; b < 3; b++) for (int d = 0; d < 4; d++) want_g[b * 4 + d] = f->data[(b * 4 + d) * 6 + idx[b]];
    fails += check_close("gather_location forward", g->data, want_g, 12, 0, 0);
    tape_clear();
    fails += gradcheck("gather_location (3,4,2,3)", build_gather, idx, &f, 1, TOL_LINEAR);
    tensor_free(ab[0]);
    tensor_free(ab[1]);
    tensor_free(x);
    tensor_free(f);
    return fails;
}

// ---- dropout ----

typedef struct { float p; } DropoutCtx;
// the rng is reseeded on every call so that every finite-difference evaluation draws the same mask
static Tensor *build_dropout(Tensor **in, void *ctx) {
    Rng rng;
    rng_seed(&rng, 99);
    return op_dropout(in[0], ((DropoutCtx *)ctx)->p, true, &rng);
}

static int grad_dropout(void) {
    Rng rng;
    rng_seed(&rng, 18);
    Tensor *x = test_tensor(&rng, true, -1, 1, SHAPE(4, 10));
    DropoutCtx ctx = {0.3f};
    int fails = gradcheck("dropout p=0.3", build_dropout, &ctx, &x, 1, TOL_LINEAR);
    fails += check_true(op_dropout(x, 0.3f, false, &rng) == x && op_dropout(x, 0.0f, true, &rng) == x,
                        "dropout is the identity (same tensor) when not training or p == 0");

    // on ones: every output is 0 or exactly 1/(1-p), and the kept fraction is near 1-p
    enum { N = 100000 };
    const float p = 0.3f;
    Tensor *ones = tensor_ones(DEV_CPU, SHAPE(100, 1000));
    Tensor *out = op_dropout(ones, p, true, &rng);
    float want_scale = (float)(1.0 / (1.0 - p));
    long kept = 0, other = 0;
    for (long i = 0; i < N; i++) {
        if (out->data[i] == 0.0f) continue;
        kept++;
        if (fabsf(out->data[i] - want_scale) > 1e-6f * want_scale) other++;
    }
    double fraction = (double)kept / N;
    // binomial std of the fraction: sqrt(0.3 * 0.7 / 1e5) = 1.4e-3; 0.007 is 5 std
    fails += check_true(fabs(fraction - (1 - p)) < 0.007, "kept fraction %.4f within 0.007 of 1-p = %.2f", fraction,
                        1 - p);
    fails += check_true(other == 0, "every kept value equals 1/(1-p) = %.6f (%ld differ)", want_scale, other);
    tape_clear();
    tensor_free(ones);
    tensor_free(x);
    return fails;
}

// ---- the parameter block ----

// w (2, 3), running_mean (3) buffer, b (4): offsets 0, 6, 9, 13 floats in all
static void declare_three(ParamSet *ps) {
    paramset_init(ps);
    paramset_declare(ps, "conv.w", SHAPE(2, 3), false);
    paramset_declare(ps, "bn.running_mean", SHAPE(3), true);
    paramset_declare(ps, "fc.b", SHAPE(4), false);
    paramset_allocate(ps, DEV_CPU);
}

static int paramset_block(void) {
    ParamSet ps;
    declare_three(&ps);
    const char *names[3] = {"conv.w", "bn.running_mean", "fc.b"};
    const long offsets[3] = {0, 6, 9};
    int fails = check_true(ps.count == 3 && ps.total == 13 && ps.data->numel == 13 && ps.grad->numel == 13,
                           "3 tensors, 13 floats in each block");
    for (int k = 0; k < 3; k++) {
        Tensor *t = paramset_find(&ps, names[k]);
        fails += check_true(t == ps.params[k] && !strcmp(ps.names[k], names[k]), "find(\"%s\") is tensor %d", names[k], k);
        fails += check_true(t->data == ps.data->data + offsets[k] && t->grad == ps.grad->data + offsets[k],
                            "%s data and grad at offset %ld of the blocks", names[k], offsets[k]);
        fails += check_true(!t->owns_data && !t->owns_grad && t->requires_grad == (k != 1),
                            "%s owns nothing, requires_grad %d", names[k], k != 1);
    }
    fails += check_true(paramset_find(&ps, "absent") == NULL, "find of an undeclared name is NULL");

    // a backward pass writes into the gradient block; zero_grad clears all of it
    Tensor *w = ps.params[0];
    for (int i = 0; i < 6; i++) w->data[i] = (float)i - 2.5f;
    backward(op_sum(op_square(w), -1));
    float want[13] = {0};
    for (int i = 0; i < 6; i++) want[i] = 2 * w->data[i];
    fails += check_close("backward writes 2w into the gradient block", ps.grad->data, want, 13, 0, 0);
    tape_clear();
    paramset_zero_grad(&ps);
    float zeros[13] = {0};
    fails += check_close("zero_grad clears the gradient block", ps.grad->data, zeros, 13, 0, 0);
    paramset_free(&ps);
    return fails;
}

// ---- optimisers against their updates written out in double ----

// random parameters and, per step, random gradients over the WHOLE block (buffer included: it must not move)
static void fill_block(Rng *rng, float *v, long n) { for (long i = 0; i < n; i++) v[i] = 2.0f * rng_uniform(rng) - 1.0f; }

static int optim_adam(void) {
    Rng rng;
    rng_seed(&rng, 19);
    ParamSet ps;
    declare_three(&ps);
    fill_block(&rng, ps.data->data, 13);
    const double lr = 1e-2, beta1 = 0.8, beta2 = 0.999, eps = 1e-8, wd = 0.1;
    double p[13], m[13] = {0}, v[13] = {0};
    float buffer_before[3];
    for (int i = 0; i < 13; i++) p[i] = ps.data->data[i];
    memcpy(buffer_before, ps.params[1]->data, sizeof buffer_before);
    Adam opt;
    adam_init(&opt, &ps, (float)lr, (float)beta1, (float)beta2, (float)eps, (float)wd);
    for (int t = 1; t <= 3; t++) {
        fill_block(&rng, ps.grad->data, 13);
        for (int i = 0; i < 13; i++) {
            if (i >= 6 && i < 9) continue;  // the buffer
            double g = ps.grad->data[i] + wd * p[i];
            m[i] = beta1 * m[i] + (1 - beta1) * g;
            v[i] = beta2 * v[i] + (1 - beta2) * g * g;
            p[i] -= lr * (m[i] / (1 - pow(beta1, t))) / (sqrt(v[i] / (1 - pow(beta2, t))) + eps);
        }
        adam_update(&opt, &ps);
    }
    float want[13], zeros[3] = {0};
    for (int i = 0; i < 13; i++) want[i] = (float)p[i];
    int fails = check_true(opt.t == 3, "Adam counted 3 steps");
    fails += check_close("Adam: 3 steps, wd 0.1, vs double", ps.data->data, want, 13, 2e-7, 2e-7);
    fails += check_close("Adam: buffer untouched", ps.params[1]->data, buffer_before, 3, 0, 0);
    fails += check_close("Adam: buffer moments stay 0", opt.m->data + 6, zeros, 3, 0, 0);
    adam_free(&opt);
    paramset_free(&ps);
    return fails;
}

static int optim_sgd(void) {
    Rng rng;
    rng_seed(&rng, 20);
    ParamSet ps;
    declare_three(&ps);
    fill_block(&rng, ps.data->data, 13);
    const double lr = 0.1, momentum = 0.9, wd = 0.05;
    double p[13], buf[13] = {0};
    float buffer_before[3];
    for (int i = 0; i < 13; i++) p[i] = ps.data->data[i];
    memcpy(buffer_before, ps.params[1]->data, sizeof buffer_before);
    Sgd opt;
    sgd_init(&opt, &ps, (float)lr, (float)momentum, (float)wd);
    for (int t = 1; t <= 3; t++) {
        fill_block(&rng, ps.grad->data, 13);
        for (int i = 0; i < 13; i++) {
            if (i >= 6 && i < 9) continue;
            double g = ps.grad->data[i] + wd * p[i];
            buf[i] = t == 1 ? g : momentum * buf[i] + g;
            p[i] -= lr * buf[i];
        }
        sgd_update(&opt, &ps);
    }
    float want[13];
    for (int i = 0; i < 13; i++) want[i] = (float)p[i];
    int fails = check_close("SGD: 3 steps, momentum 0.9, wd 0.05, vs double", ps.data->data, want, 13, 2e-7, 2e-7);
    fails += check_close("SGD: buffer untouched", ps.params[1]->data, buffer_before, 3, 0, 0);
    sgd_free(&opt);
    paramset_free(&ps);
    return fails;
}

void register_grad_softmax_tests(void) {
    test_register("grad", "softmax and log_softmax over every dim", grad_softmax);
    test_register("grad", "cross_entropy with ignored labels", grad_cross_entropy);
    test_register("grad", "nce_log_softmax", grad_nce);
    test_register("grad", "nce_log_softmax on a shard of the sources", grad_nce_shard);
    test_register("grad", "nce_log_softmax at large magnitude", nce_large_magnitude);
    test_register("grad", "nce_log_softmax at AMDIM size (OpenMP path)", nce_amdim_size);
    test_register("grad", "reshape and detach", grad_reshape_detach);
    test_register("grad", "transpose 2-D and 3-D", grad_transpose);
    test_register("grad", "concat0, repeat, gather_location", grad_concat_repeat_gather);
    test_register("grad", "dropout", grad_dropout);
    test_register("forward", "ParamSet: names, offsets, shared block, zero_grad", paramset_block);
    test_register("forward", "Adam against its update in double", optim_adam);
    test_register("forward", "SGD with momentum against its update in double", optim_sgd);
}
