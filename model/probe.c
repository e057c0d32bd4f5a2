// probe.c - linear / MLP probes and k-NN on frozen features.
#include "probe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../tensor/device.h"

// Row by row, with one running sum per dimension: a loop down one column would stride dim floats per value. Each
// dimension still sums its rows in order, so the result is the column loop's.
void features_standardise(FeatureSet *train, FeatureSet *test) {
    int dim = train->dim;
    double *s = xcalloc((size_t)dim, sizeof(double)), *ss = xcalloc((size_t)dim, sizeof(double));
    double *mean = xmalloc((size_t)dim * sizeof(double));
    float *inv = xmalloc((size_t)dim * sizeof(float));
    for (int i = 0; i < train->n; i++) {
        const float *r = train->x + (long)i * dim;
        for (int j = 0; j < dim; j++) { double v = r[j]; s[j] += v; ss[j] += v * v; }
    }
    for (int j = 0; j < dim; j++) {
        mean[j] = s[j] / train->n;
        double var = ss[j] / train->n - mean[j] * mean[j];
        inv[j] = (float)(1.0 / sqrt(var > 1e-12 ? var : 1e-12));
    }
    FeatureSet *sets[2] = {train, test};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < sets[k]->n; i++) {
            float *r = sets[k]->x + (long)i * dim;
            for (int j = 0; j < dim; j++) r[j] = (float)((r[j] - mean[j]) * inv[j]);
        }
    free(s); free(ss); free(mean); free(inv);
}

typedef struct {
    ParamSet ps;
    bool mlp;
    Tensor *w1, *b1, *gamma, *beta, *rm, *rv, *w2, *b2;
} Probe;

static void probe_init(Probe *p, int dim, int n_classes, bool mlp, const ProbeOptions *opt) {
    memset(p, 0, sizeof *p);
    p->mlp = mlp;
    paramset_init(&p->ps);
    int hidden = PROBE_MLP_HIDDEN;
    if (mlp) {
        p->w1 = paramset_declare(&p->ps, "probe.fc1.weight", SHAPE(hidden, dim), false);
        p->gamma = paramset_declare(&p->ps, "probe.bn.weight", SHAPE(hidden), false);
        p->beta = paramset_declare(&p->ps, "probe.bn.bias", SHAPE(hidden), false);
        p->rm = paramset_declare(&p->ps, "probe.bn.running_mean", SHAPE(hidden), true);
        p->rv = paramset_declare(&p->ps, "probe.bn.running_var", SHAPE(hidden), true);
        p->w2 = paramset_declare(&p->ps, "probe.fc2.weight", SHAPE(n_classes, hidden), false);
        p->b2 = paramset_declare(&p->ps, "probe.fc2.bias", SHAPE(n_classes), false);
    } else {
        p->w2 = paramset_declare(&p->ps, "probe.fc.weight", SHAPE(n_classes, dim), false);
        p->b2 = paramset_declare(&p->ps, "probe.fc.bias", SHAPE(n_classes), false);
    }
    paramset_allocate(&p->ps, opt->device);
    Rng rng;
    rng_seed(&rng, opt->seed);
    int fan2 = mlp ? hidden : dim;
    if (mlp) {
        float b = 1.0f / sqrtf((float)dim);
        tensor_fill_uniform(p->w1, &rng, -b, b);
        tensor_fill(p->gamma, 1.0f);
        tensor_fill(p->beta, 0.0f);
        tensor_fill(p->rm, 0.0f);
        tensor_fill(p->rv, 1.0f);
    }
    float b = 1.0f / sqrtf((float)fan2);
    tensor_fill_uniform(p->w2, &rng, -b, b);
    tensor_fill_uniform(p->b2, &rng, -b, b);
}

static Tensor *probe_logits(Probe *p, Tensor *x, bool training, Rng *rng) {
    if (!p->mlp) return op_linear(x, p->w2, p->b2);
    Tensor *h = op_relu(op_batchnorm(op_linear(x, p->w1, NULL), p->gamma, p->beta, p->rm, p->rv, training));
    return op_linear(op_dropout(h, PROBE_MLP_DROPOUT, training, rng), p->w2, p->b2);
}

// copies rows idx[0..n) of a feature set into a device tensor (n, dim) and their labels into y
static void gather_rows(const FeatureSet *fs, const int *idx, int n, Tensor *x, int *y, float *host) {
    for (int i = 0; i < n; i++) {
        memcpy(host + (long)i * fs->dim, fs->x + (long)idx[i] * fs->dim, (size_t)fs->dim * sizeof(float));
        y[i] = fs->y[idx[i]];
    }
    dev_copy(x->data, x->device, host, DEV_CPU, (size_t)n * fs->dim * sizeof(float));
}

static double run_probe(const FeatureSet *train, const FeatureSet *test, int n_classes, bool mlp, const ProbeOptions *opt) {
    Probe p;
    probe_init(&p, train->dim, n_classes, mlp, opt);
    Adam adam;
    adam_init(&adam, &p.ps, opt->lr, PROBE_ADAM_BETA1, PROBE_ADAM_BETA2, PROBE_ADAM_EPS, opt->weight_decay);
    int B = opt->batch < train->n ? opt->batch : train->n, dim = train->dim;
    int *order = xmalloc((size_t)train->n * sizeof(int)), *y = xmalloc((size_t)B * sizeof(int));
    float *host = xmalloc((size_t)B * dim * sizeof(float));
    for (int i = 0; i < train->n; i++) order[i] = i;
    Rng rng;
    rng_seed(&rng, opt->seed + 1);
    Tensor *x = tensor_new(opt->device, SHAPE(B, dim));
    long steps_per_epoch = train->n / B, total = steps_per_epoch * opt->epochs, t = 0;
    for (int epoch = 0; epoch < opt->epochs; epoch++) {
        for (int i = train->n - 1; i > 0; i--) { int j = rng_int(&rng, i + 1), s = order[i]; order[i] = order[j]; order[j] = s; }
        for (long s = 0; s < steps_per_epoch; s++, t++) {
            gather_rows(train, order + s * B, B, x, y, host);
            paramset_zero_grad(&p.ps);
            backward(op_cross_entropy(probe_logits(&p, x, true, &rng), y));
            adam.lr = opt->lr * (t < 0.7 * total ? 1.0f : t < 0.9 * total ? 0.2f : 0.04f);  // two step decays
            adam_update(&adam, &p.ps);
            tape_clear();
        }
    }
    tensor_free(x);
    // test accuracy in eval mode, in batches (the last one smaller)
    autograd_set_grad_enabled(false);
    long correct = 0, counted = 0;
    float *logits = xmalloc((size_t)B * n_classes * sizeof(float));
    for (int start = 0; start < test->n; start += B) {
        int n = test->n - start < B ? test->n - start : B;
        for (int i = 0; i < n; i++) order[i] = start + i;
        Tensor *xt = tape_tensor(opt->device, SHAPE(n, dim));
        gather_rows(test, order, n, xt, y, host);
        Tensor *z = probe_logits(&p, xt, false, &rng);
        tensor_copy_to_host(z, logits);
        for (int i = 0; i < n; i++) {
            if (y[i] < 0) continue;
            int best = 0;
            for (int k = 1; k < n_classes; k++) if (logits[i * n_classes + k] > logits[i * n_classes + best]) best = k;
            correct += best == y[i];
            counted++;
        }
        tape_clear();
    }
    autograd_set_grad_enabled(true);
    free(logits);
    free(order);
    free(y);
    free(host);
    adam_free(&adam);
    paramset_free(&p.ps);
    return counted ? 100.0 * correct / counted : 0.0;
}

double probe_linear(const FeatureSet *train, const FeatureSet *test, int n_classes, const ProbeOptions *opt) {
    return run_probe(train, test, n_classes, false, opt);
}

double probe_mlp(const FeatureSet *train, const FeatureSet *test, int n_classes, const ProbeOptions *opt) {
    return run_probe(train, test, n_classes, true, opt);
}

static float *unit_rows(const FeatureSet *fs) {
    float *u = xmalloc((size_t)fs->n * fs->dim * sizeof(float));
    for (int i = 0; i < fs->n; i++) {
        const float *r = fs->x + (long)i * fs->dim;
        double ss = 0;
        for (int j = 0; j < fs->dim; j++) ss += (double)r[j] * r[j];
        float inv = (float)(1.0 / sqrt(ss > 1e-24 ? ss : 1e-24));
        for (int j = 0; j < fs->dim; j++) u[(long)i * fs->dim + j] = r[j] * inv;
    }
    return u;
}

double knn_accuracy(const FeatureSet *train, const FeatureSet *test, int n_classes, int k) {
    float *a = unit_rows(test), *b = unit_rows(train);
    const int chunk = 256;
    float *sim = xmalloc((size_t)chunk * train->n * sizeof(float));
    int *best_i = xmalloc((size_t)k * sizeof(int));
    float *best_s = xmalloc((size_t)k * sizeof(float));
    double *votes = xmalloc((size_t)n_classes * sizeof(double));
    long correct = 0, counted = 0;
    for (int start = 0; start < test->n; start += chunk) {
        int n = test->n - start < chunk ? test->n - start : chunk;
        // sim (n, N_train) = a_chunk (n, dim) * b^T
        gemm_cpu(false, true, n, train->n, train->dim, 1.0f, a + (long)start * test->dim, b, 0.0f, sim);
        for (int i = 0; i < n; i++) {
            if (test->y[start + i] < 0) continue;
            int found = 0;
            const float *row = sim + (long)i * train->n;
            for (int j = 0; j < train->n; j++) {   // keep the k most similar, sorted, by insertion
                if (train->y[j] < 0 || (found == k && row[j] <= best_s[k - 1])) continue;
                int pos = found < k ? found++ : k - 1;
                while (pos > 0 && best_s[pos - 1] < row[j]) { best_s[pos] = best_s[pos - 1]; best_i[pos] = best_i[pos - 1]; pos--; }
                best_s[pos] = row[j];
                best_i[pos] = j;
            }
            for (int c = 0; c < n_classes; c++) votes[c] = 0;
            for (int r = 0; r < found; r++) votes[train->y[best_i[r]]] += 1.0 + best_s[r];
            int pred = 0;
            for (int c = 1; c < n_classes; c++) if (votes[c] > votes[pred]) pred = c;
            correct += pred == test->y[start + i];
            counted++;
        }
    }
    free(a); free(b); free(sim); free(best_i); free(best_s); free(votes);
    return counted ? 100.0 * correct / counted : 0.0;
}

void knn_neighbours(const FeatureSet *train, const FeatureSet *test, int q, int k, int *neighbours) {
    FeatureSet one = {.x = test->x + (long)q * test->dim, .y = test->y + q, .n = 1, .dim = test->dim};
    float *a = unit_rows(&one), *b = unit_rows(train), *sim = xmalloc((size_t)train->n * sizeof(float));
    gemm_cpu(false, true, 1, train->n, train->dim, 1.0f, a, b, 0.0f, sim);
    float *best = xmalloc((size_t)k * sizeof(float));
    int found = 0;
    for (int j = 0; j < train->n; j++) {   // insertion into the sorted top k
        if (found == k && sim[j] <= best[k - 1]) continue;
        int pos = found < k ? found++ : k - 1;
        while (pos > 0 && best[pos - 1] < sim[j]) { best[pos] = best[pos - 1]; neighbours[pos] = neighbours[pos - 1]; pos--; }
        best[pos] = sim[j];
        neighbours[pos] = j;
    }
    for (int i = found; i < k; i++) neighbours[i] = -1;
    free(a); free(b); free(sim); free(best);
}
