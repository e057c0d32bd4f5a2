// test_dist.c - data-parallel training against one process (run under MPI: mpirun -np 2 build/test_runner mpi).
// Every rank first computes the one-process reference of a step on the whole batch (comm_set_single_process), then
// the same step data-parallel on its share (all-gathered NCE targets, synchronised BN, averaged gradients); the
// loss terms, every parameter gradient and every BN statistic must agree. Without several ranks the tests skip.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../comm/comm.h"
#include "../model/amdim.h"
#include "test.h"

// Floats summed in another order (BN statistics from per-rank sums, the all-reduce, the NCE rows split between
// ranks): the loss terms to 2e-6 of their size; gradients to 1e-4 of each tensor's largest value plus 1e-3 relative,
// as the golden test holds the engine to PyTorch.
#define LOSS_RTOL 2e-6

typedef struct { float terms[7]; float *grads, *buffers; } StepResult;

// one step of `method` on images [first, first + b) of a fixed batch of B; the gradients averaged over ranks
static StepResult step(int method, int first, int b, int B) {
    AmdimConfig c;
    amdim_config_preset(&c, "tiny");
    c.F = 4; c.D = 32; c.d = 1; c.in_channels = 1; c.cls_dropout = 0;   // no dropout: masks differ per rank
    c.method = method;
    if (method == METHOD_DIM) { c.tasks = TASK_1T7; c.views = 1; }
    Amdim m;
    char err[256];
    CHECK(amdim_init(&m, &c, DEV_CPU, 7, err, sizeof err) == 0, "%s", err);
    int S = 32, labels[16], idx1[16], idx2[16];
    float *x1 = xmalloc((size_t)B * S * S * sizeof(float)), *x2 = xmalloc((size_t)B * S * S * sizeof(float));
    Rng rng;
    rng_seed(&rng, 11);
    for (long i = 0; i < (long)B * S * S; i++) { x1[i] = rng_normal(&rng); x2[i] = rng_normal(&rng); }
    for (int i = 0; i < B; i++) { labels[i] = i % 10; idx1[i] = rng_int(&rng, 25); idx2[i] = rng_int(&rng, 25); }
    Tensor *t1 = tensor_from(DEV_CPU, SHAPE(b, 1, S, S), x1 + (long)first * S * S);
    Tensor *t2 = tensor_from(DEV_CPU, SHAPE(b, 1, S, S), x2 + (long)first * S * S);
    paramset_zero_grad(&m.ps);
    AmdimLoss L = amdim_loss(&m, t1, t2, labels + first, idx1 + first, idx2 + first, &rng);
    backward(L.total);
    StepResult r;
    Tensor *terms[7] = {L.l1t5, L.l1t7, L.l5t5, L.cpc, L.reg, L.cls, L.total};
    for (int i = 0; i < 7; i++) r.terms[i] = terms[i] ? tensor_item(terms[i]) : 0;
    comm_allreduce_sum(r.terms, 7, DEV_CPU);
    comm_allreduce_sum(m.ps.grad->data, m.ps.total, DEV_CPU);
    for (int i = 0; i < 7; i++) r.terms[i] /= (float)comm_size();
    r.grads = xmalloc((size_t)m.ps.total * sizeof(float));
    r.buffers = xmalloc((size_t)m.ps.total * sizeof(float));
    for (long i = 0; i < m.ps.total; i++) r.grads[i] = m.ps.grad->data[i] / (float)comm_size();
    memcpy(r.buffers, m.ps.data->data, (size_t)m.ps.total * sizeof(float));   // BN running statistics after the step
    tape_clear();
    tensor_free(t1);
    tensor_free(t2);
    free(x1);
    free(x2);
    amdim_free(&m);
    return r;
}

static int compare_method(int method) {
    if (comm_size() < 2) {
        printf("    skipped: one process (run under MPI: mpirun -np 2 build/test_runner mpi)\n");
        return -1;
    }
    int B = 8, P = comm_size(), b = B / P;
    if (B % P) return check_true(false, "batch %d does not split over %d ranks", B, P);
    comm_set_single_process(true);
    StepResult ref = step(method, 0, B, B);
    comm_set_single_process(false);
    StepResult got = step(method, comm_rank() * b, b, B);
    int fails = 0;
    const char *names[7] = {"1t5", "1t7", "5t5", "cpc", "reg", "cls", "total"};
    char what[96];
    for (int i = 0; i < 7; i++) {
        if (ref.terms[i] == 0 && got.terms[i] == 0) continue;   // not computed by this method
        snprintf(what, sizeof what, "%s, %d ranks x %d vs 1 x %d", names[i], P, b, B);
        fails += check_close(what, &got.terms[i], &ref.terms[i], 1, LOSS_RTOL * fabs(ref.terms[i]), 0);
    }
    // per tensor: gradients, and the BN running statistics (buffers) after the step
    AmdimConfig c;
    amdim_config_preset(&c, "tiny");
    c.F = 4; c.D = 32; c.d = 1; c.in_channels = 1; c.cls_dropout = 0; c.method = method;
    if (method == METHOD_DIM) { c.tasks = TASK_1T7; c.views = 1; }
    Amdim m;
    char err[256];
    CHECK(amdim_init(&m, &c, DEV_CPU, 7, err, sizeof err) == 0, "%s", err);
    long worst_at = 0;
    double worst = 0, global = 0;
    for (long i = 0; i < m.ps.total; i++) global = fmax(global, fabs(ref.grads[i]));
    for (int k = 0; k < m.ps.count; k++) {
        long off = m.ps.params[k]->data - m.ps.data->data, n = m.ps.params[k]->numel;
        const float *g = m.ps.is_buffer[k] ? got.buffers + off : got.grads + off;
        const float *w = m.ps.is_buffer[k] ? ref.buffers + off : ref.grads + off;
        double scale = 0;
        for (long i = 0; i < n; i++) scale = fmax(scale, fabs(w[i]));
        // an analytically zero gradient (the phi shortcut's bias right before a train-mode BN) is rounding noise in
        // both: held to the gradients' global scale, as the golden test does
        if (!m.ps.is_buffer[k] && scale < 1e-4 * global) scale = global;
        for (long i = 0; i < n; i++) {
            double e = fabs(g[i] - w[i]) / (1e-4 * scale + 1e-7 + 1e-3 * fabs(w[i]));
            if (e > worst || !isfinite(g[i])) { worst = isfinite(g[i]) ? e : INFINITY; worst_at = k; }
        }
    }
    fails += check_true(worst <= 1.0, "every gradient and BN statistic of %d tensors within 1e-4 max + 1e-3 rel "
                        "(worst: %s at %.1f%% of its budget)", m.ps.count, m.ps.names[worst_at], 100 * worst);
    amdim_free(&m);
    free(ref.grads); free(ref.buffers); free(got.grads); free(got.buffers);
    return fails;
}

static int dist_amdim(void) { return compare_method(METHOD_AMDIM); }
static int dist_dim(void) { return compare_method(METHOD_DIM); }
static int dist_cpc(void) { return compare_method(METHOD_CPC); }

void register_dist_tests(void) {
    test_register("mpi", "AMDIM step: ranks x shares == one process x the batch", dist_amdim);
    test_register("mpi", "DIM step: ranks x shares == one process x the batch", dist_dim);
    test_register("mpi", "CPC step: ranks x shares == one process x the batch", dist_cpc);
}
