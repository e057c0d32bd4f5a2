// softmax.c - softmax, log-softmax, cross-entropy and the AMDIM NCE log-softmax: CPU kernels, then the autograd ops.
// Letters: a softmax row is `dim` values at stride `inner` inside (outer, dim, inner); N rows of K classes for the
// cross-entropy; B images, P sources per image, L target locations for the NCE.
#include "softmax.h"

#include <math.h>
#include <stdlib.h>

#include "../tensor/device.h"
#include "vecmath.h"

// ---- softmax and log-softmax over (outer, dim, inner) ----

// One row per (o, i): its k-th value sits at base + k * inner. Sums run in double, in index order.
static void softmax_rows(float *out, const float *x, long outer, long dim, long inner, bool log_out) {
    #pragma omp parallel for if (outer * dim * inner > PARALLEL_MIN_WORK)
    for (long row = 0; row < outer * inner; row++) {
        long base = (row / inner) * dim * inner + row % inner;
        float m = -INFINITY;
        for (long k = 0; k < dim; k++) m = fmaxf(m, x[base + k * inner]);
        double s = 0;
        for (long k = 0; k < dim; k++) {
            float e = expf(x[base + k * inner] - m);
            if (!log_out) out[base + k * inner] = e;
            s += e;
        }
        if (log_out) {
            float shift = m + (float)log(s);
            for (long k = 0; k < dim; k++) out[base + k * inner] = x[base + k * inner] - shift;
        } else {
            float inv = (float)(1.0 / s);
            for (long k = 0; k < dim; k++) out[base + k * inner] *= inv;
        }
    }
}

void softmax_forward_cpu(float *out, const float *x, long outer, long dim, long inner) {
    softmax_rows(out, x, outer, dim, inner, false);
}

void log_softmax_forward_cpu(float *out, const float *x, long outer, long dim, long inner) {
    softmax_rows(out, x, outer, dim, inner, true);
}

// dx += out * (dout - sum_k dout * out)
void softmax_backward_cpu(float *dx, const float *dout, const float *out, long outer, long dim, long inner) {
    #pragma omp parallel for if (outer * dim * inner > PARALLEL_MIN_WORK)
    for (long row = 0; row < outer * inner; row++) {
        long base = (row / inner) * dim * inner + row % inner;
        double dot = 0;
        for (long k = 0; k < dim; k++) dot += (double)dout[base + k * inner] * out[base + k * inner];
        for (long k = 0; k < dim; k++) {
            long at = base + k * inner;
            dx[at] += out[at] * (dout[at] - (float)dot);
        }
    }
}

// dx += dout - softmax * sum_k dout, with softmax = exp(out)
void log_softmax_backward_cpu(float *dx, const float *dout, const float *out, long outer, long dim, long inner) {
    #pragma omp parallel for if (outer * dim * inner > PARALLEL_MIN_WORK)
    for (long row = 0; row < outer * inner; row++) {
        long base = (row / inner) * dim * inner + row % inner;
        double total = 0;
        for (long k = 0; k < dim; k++) total += dout[base + k * inner];
        for (long k = 0; k < dim; k++) {
            long at = base + k * inner;
            dx[at] += dout[at] - expf(out[at]) * (float)total;
        }
    }
}

// ---- cross-entropy with ignored labels ----

// logits, probs: (N, K); labels: (N). The loss uses the log-sum-exp of each row, not log(probs), so a label whose
// probability underflows still gives a finite loss.
void cross_entropy_forward_cpu(float *loss, float *probs, const float *logits, const int *labels, int N, int K,
                               int n_valid) {
    softmax_rows(probs, logits, N, K, 1, false);
    double total = 0;
    for (int r = 0; r < N; r++) {
        if (labels[r] < 0) continue;
        const float *row = logits + (long)r * K;
        float m = -INFINITY;
        for (int k = 0; k < K; k++) m = fmaxf(m, row[k]);
        double s = 0;
        for (int k = 0; k < K; k++) s += expf(row[k] - m);
        total += (double)m + log(s) - row[labels[r]];
    }
    loss[0] = n_valid > 0 ? (float)(total / n_valid) : 0.0f;
}

// dlogits: (N, K); dloss: (1)
void cross_entropy_backward_cpu(float *dlogits, const float *dloss, const float *probs, const int *labels, int N,
                                int K, int n_valid) {
    if (n_valid == 0) return;  // every row ignored: the loss is the constant 0
    float scale = dloss[0] / (float)n_valid;
    for (int r = 0; r < N; r++) {
        if (labels[r] < 0) continue;
        for (int k = 0; k < K; k++) {
            long at = (long)r * K + k;
            dlogits[at] += scale * (probs[at] - (k == labels[r] ? 1.0f : 0.0f));
        }
    }
}

// ---- the NCE log-softmax of AMDIM ----
// Row (i, p) of x: (B, P, B, L) is B blocks of L scores; block i holds the positives, the other blocks the negatives.

// the largest of v[0..n), at least m; a NaN is passed over, as fmaxf does. In LANES running maxima, which
// vectorise (a maximum is exact, so their order does not matter).
static float max_of(float m, const float *v, long n) {
    float acc[LANES];
    for (int l = 0; l < LANES; l++) acc[l] = m;
    long k = 0;
    for (; k + LANES <= n; k += LANES)
        for (int l = 0; l < LANES; l++) acc[l] = v[k + l] > acc[l] ? v[k + l] : acc[l];
    for (; k < n; k++) m = v[k] > m ? v[k] : m;
    for (int l = 0; l < LANES; l++) m = acc[l] > m ? acc[l] : m;
    return m;
}

// m = max over the negatives of row xr (image i), the blocks before and after block i: every exponent below is
// taken relative to it
static float negatives_max(const float *xr, int i, int B, int L) {
    return max_of(max_of(-INFINITY, xr, (long)i * L), xr + (long)(i + 1) * L, (long)(B - i - 1) * L);
}

// e[k] = exp(xr[k] - m) over the whole row of n scores (positives too; they are not read), through vecmath.h
static void row_exp(float *e, const float *xr, float m, long n) {
    for (long k = 0; k < n; k++) e[k] = xr[k] - m;
    vec_expf(e, e, n);
}

// out: (B, P, L). out = pos - logaddexp(pos, m + log Z), Z = sum over negatives of exp(neg - m). Each thread keeps
// one row of exponentials (Bt*L floats); Z sums them in double, in fixed lanes (vecmath.h).
void nce_log_softmax_forward_cpu(float *out, const float *x, int B, int P, int L, int Bt, int first) {
    long rows = (long)B * P, n = (long)Bt * L;
    #pragma omp parallel if (rows * n > PARALLEL_MIN_WORK)
    {
        float *e = xmalloc((size_t)n * sizeof(float));
        #pragma omp for
        for (long row = 0; row < rows; row++) {
            int i = first + (int)(row / P);   // the source's own image among the targets
            const float *xr = x + row * n;
            float *o = out + row * L;
            if (Bt == 1) {  // no negatives: the positive is its own softmax
                for (int l = 0; l < L; l++) o[l] = 0.0f;
                continue;
            }
            float m = negatives_max(xr, i, Bt, L);
            row_exp(e, xr, m, n);
            double acc[LANES] = {0};
            lanes_add(acc, e, (long)i * L);                              // the negatives before block i
            lanes_add(acc, e + (long)(i + 1) * L, (long)(Bt - i - 1) * L);   // and after it
            float lse_neg = m + (float)log(lanes_total(acc));
            for (int l = 0; l < L; l++) {
                float pos = xr[(long)i * L + l];
                float hi = fmaxf(pos, lse_neg), lo = fminf(pos, lse_neg);
                o[l] = (pos - hi) - log1pf(expf(lo - hi));
            }
        }
        free(e);
    }
}

// From x and out only, with lse_l = pos_l - out_l (the log of positive l's denominator):
//   d pos_l += dout_l * (1 - exp(out_l))
//   d neg   -= sum_l dout_l * exp(neg - lse_l) = exp(neg - m) * sum_l dout_l * exp(m - lse_l)
// Both factors of the split have exponents <= 0 (neg <= m <= lse_l), so nothing overflows for any |x|.
void nce_log_softmax_backward_cpu(float *dx, const float *dout, const float *x, const float *out, int B, int P,
                                  int L, int Bt, int first) {
    if (Bt == 1) return;  // out is the constant 0
    long rows = (long)B * P, n = (long)Bt * L;
    #pragma omp parallel if (rows * n > PARALLEL_MIN_WORK)
    {
        float *e = xmalloc((size_t)n * sizeof(float));
        #pragma omp for
        for (long row = 0; row < rows; row++) {
            int i = first + (int)(row / P);
            const float *xr = x + row * n, *o = out + row * L, *d = dout + row * L;
            float *dxr = dx + row * n;
            float m = negatives_max(xr, i, Bt, L);
            double weight = 0;
            for (int l = 0; l < L; l++) {
                float pos = xr[(long)i * L + l];
                weight += (double)d[l] * expf(m - (pos - o[l]));
                dxr[(long)i * L + l] += d[l] * -expm1f(o[l]);
            }
            float w = (float)weight;
            row_exp(e, xr, m, n);
            for (long k = 0; k < (long)i * L; k++) dxr[k] -= w * e[k];
            for (long k = (long)(i + 1) * L; k < n; k++) dxr[k] -= w * e[k];
        }
        free(e);
    }
}

// ---- autograd ops ----

// x as (outer, dim, inner) around dimension `dim`
static void split_at(const Tensor *x, int dim, long *outer, long *len, long *inner) {
    CHECK(dim >= 0 && dim < x->ndim, "softmax over dim %d of a %d-dim tensor", dim, x->ndim);
    *outer = 1;
    *inner = 1;
    for (int d = 0; d < dim; d++) *outer *= x->shape[d];
    for (int d = dim + 1; d < x->ndim; d++) *inner *= x->shape[d];
    *len = x->shape[dim];
}

typedef struct { long outer, len, inner; } SoftmaxArgs;

static void softmax_backward_node(Node *n) {
    const SoftmaxArgs *a = n->args;
    KERNEL(n->out->device, softmax_backward)(input_grad(n, 0), n->out->grad, n->out->data, a->outer, a->len, a->inner);
}

static void log_softmax_backward_node(Node *n) {
    const SoftmaxArgs *a = n->args;
    KERNEL(n->out->device, log_softmax_backward)(input_grad(n, 0), n->out->grad, n->out->data, a->outer, a->len,
                                                 a->inner);
}

static Tensor *softmax_op(Tensor *x, int dim, bool log_out) {
    long outer, len, inner;
    split_at(x, dim, &outer, &len, &inner);
    Tensor *out = tape_tensor(x->device, x->ndim, x->shape);
    if (log_out) KERNEL(x->device, log_softmax_forward)(out->data, x->data, outer, len, inner);
    else KERNEL(x->device, softmax_forward)(out->data, x->data, outer, len, inner);
    SoftmaxArgs args = {.outer = outer, .len = len, .inner = inner};
    Node *n = tape_record(log_out ? "log_softmax" : "softmax", log_out ? log_softmax_backward_node
                                                                        : softmax_backward_node, out, 1, &x, &args,
                          sizeof args);
    if (n) n->flops = 3.0 * x->numel;   // max, exp-sum, normalise
    return out;
}

Tensor *op_softmax(Tensor *x, int dim) { return softmax_op(x, dim, false); }
Tensor *op_log_softmax(Tensor *x, int dim) { return softmax_op(x, dim, true); }

// saved[0] = probs (N, K); aux = labels on the device; n_valid rows have a label (the mean is over them)
typedef struct { int N, K, n_valid; } CrossEntropyArgs;

static void cross_entropy_backward_node(Node *n) {
    const CrossEntropyArgs *a = n->args;
    KERNEL(n->out->device, cross_entropy_backward)(input_grad(n, 0), n->out->grad, n->saved[0]->data, n->aux, a->N,
                                                   a->K, a->n_valid);
}

Tensor *op_cross_entropy(Tensor *logits, const int *labels) {
    CHECK(logits->ndim == 2, "cross_entropy takes (N, K) logits, got %d dims", logits->ndim);
    int N = logits->shape[0], K = logits->shape[1], n_valid = 0;
    for (int r = 0; r < N; r++) {
        CHECK(labels[r] < K, "label %d of row %d is not below K = %d", labels[r], r, K);
        if (labels[r] >= 0) n_valid++;
    }
    Device dev = logits->device;
    Tensor *loss = tape_tensor(dev, SHAPE(1));
    Tensor *probs = tape_tensor(dev, 2, logits->shape);
    size_t bytes = (size_t)N * sizeof(int);
    int *labels_dev = dev_alloc(dev, bytes);
    dev_copy(labels_dev, dev, labels, DEV_CPU, bytes);
    KERNEL(dev, cross_entropy_forward)(loss->data, probs->data, logits->data, labels_dev, N, K, n_valid);
    CrossEntropyArgs args = {.N = N, .K = K, .n_valid = n_valid};
    Node *n = tape_record("cross_entropy", cross_entropy_backward_node, loss, 1, &logits, &args, sizeof args);
    if (n) {   // the labels and the probabilities stay with the node for backward
        n->flops = 3.0 * N * K;
        node_keep_aux(n, dev, labels_dev, bytes);
        n->saved[0] = probs;
    } else {
        dev_free(dev, labels_dev, bytes);
    }
    return loss;
}

// B source images, P sources per image, L target locations per image, Bt target images, the first source's own
typedef struct { int B, P, L, Bt, first; } NceArgs;

static void nce_backward_node(Node *n) {
    const NceArgs *a = n->args;
    KERNEL(n->out->device, nce_log_softmax_backward)(input_grad(n, 0), n->out->grad, n->in[0]->data, n->out->data,
                                                     a->B, a->P, a->L, a->Bt, a->first);
}

Tensor *op_nce_log_softmax_shard(Tensor *x, int B, int P, int L, int Bt, int first) {
    CHECK(B > 0 && P > 0 && L > 0 && Bt >= B && first >= 0 && first + B <= Bt && x->numel == (long)B * P * Bt * L,
          "nce_log_softmax: %ld scores for B=%d P=%d L=%d Bt=%d first=%d (needs B*P*Bt*L)", x->numel, B, P, L, Bt,
          first);
    Tensor *out = tape_tensor(x->device, SHAPE(B, P, L));
    KERNEL(x->device, nce_log_softmax_forward)(out->data, x->data, B, P, L, Bt, first);
    NceArgs args = {.B = B, .P = P, .L = L, .Bt = Bt, .first = first};
    Node *n = tape_record("nce_log_softmax", nce_backward_node, out, 1, &x, &args, sizeof args);
    if (n) n->flops = 3.0 * x->numel;
    return out;
}

Tensor *op_nce_log_softmax(Tensor *x, int B, int P, int L) { return op_nce_log_softmax_shard(x, B, P, L, B, 0); }
