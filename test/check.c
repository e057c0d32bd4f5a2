// check.c - numeric comparison and the central-finite-difference gradient checker.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "../autograd/inspect.h"
#include "../ops/ops.h"
#include "../tensor/device.h"
#include "test.h"

int check_close(const char *what, const float *got, const float *want, long n, double atol, double rtol) {
    double max_abs = 0, max_rel = 0, budget = 0;
    long bad_nan = 0;
    for (long i = 0; i < n; i++) {
        if (!isfinite(got[i]) || !isfinite(want[i])) { bad_nan++; continue; }
        double err = fabs((double)got[i] - want[i]);
        double rel = err / fmax(fabs(want[i]), 1e-12);
        double b = err / (atol + rtol * fabs(want[i]));
        if (err > max_abs) max_abs = err;
        if (rel > max_rel && fabs(want[i]) > atol) max_rel = rel;
        if (b > budget) budget = b;
    }
    bool ok = bad_nan == 0 && budget <= 1.0;
    printf("    %s %-34s n=%-7ld max_abs=%.2e max_rel=%.2e atol=%.0e rtol=%.0e budget=%5.1f%%%s\n",
           ok ? "ok  " : "FAIL", what, n, max_abs, max_rel, atol, rtol, 100 * budget,
           bad_nan ? " (NaN/Inf)" : "");
    return ok ? 0 : 1;
}

Tensor *test_tensor(Rng *rng, bool requires_grad, float lo, float hi, int ndim, const int *shape) {
    Tensor *t = tensor_new(DEV_CPU, ndim, shape);
    tensor_fill_uniform(t, rng, lo, hi);
    t->requires_grad = requires_grad;
    return t;
}

// the tape of the checked expression (op, then the projection sum(out * r)) as DIR/<name>.dot
static void write_graph(const char *name) {
    char path[1024];
    int n = snprintf(path, sizeof path, "%s/", test_graph_dir);
    for (const char *c = name; *c && n < (int)sizeof path - 5; c++)
        path[n++] = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ? *c : '_';
    snprintf(path + n, sizeof path - (size_t)n, ".dot");
    FILE *f = fopen(path, "w");
    if (!f || graph_write_dot(f, name)) printf("    (could not write %s)\n", path);
    if (f) fclose(f);
}

// sum(out * r) in double on the host, with grad off: the scalar whose gradient is checked
static double projected(BuildFn build, void *ctx, Tensor **inputs, const float *r) {
    bool was = autograd_grad_enabled();
    autograd_set_grad_enabled(false);
    Tensor *out = build(inputs, ctx);
    double s = 0;
    for (long i = 0; i < out->numel; i++) s += (double)out->data[i] * r[i];
    tape_clear();
    autograd_set_grad_enabled(was);
    return s;
}

double gradcheck_budget(const char *name, BuildFn build, void *ctx, Tensor **inputs, int n_inputs, GradTol tol,
                        bool verbose) {
    CHECK(n_inputs <= 16, "gradcheck takes at most 16 inputs");
    double eps = tol.eps > 0 ? tol.eps : 1e-2;
    // analytic: backward of sum(out * r)
    Tensor *out = build(inputs, ctx);
    Rng rng;
    rng_seed(&rng, 1234);
    float *r = xmalloc((size_t)out->numel * sizeof(float));
    for (long i = 0; i < out->numel; i++) r[i] = 2.0f * rng_uniform(&rng) - 1.0f;
    Tensor *rt = tape_tensor(DEV_CPU, out->ndim, out->shape);
    tensor_copy_from_host(rt, r);
    rt->name = "r (fixed random projection)";
    for (int k = 0; k < n_inputs; k++) if (inputs[k]->requires_grad) tensor_zero_grad(inputs[k]);
    static const char *input_names[16] = {"input 0", "input 1", "input 2", "input 3", "input 4", "input 5",
                                          "input 6", "input 7", "input 8", "input 9", "input 10", "input 11",
                                          "input 12", "input 13", "input 14", "input 15"};
    for (int k = 0; k < n_inputs; k++) if (!inputs[k]->name) inputs[k]->name = input_names[k];
    backward(op_sum(op_mul(out, rt), -1));
    if (test_graph_dir) write_graph(name);
    float *analytic[16] = {0};
    for (int k = 0; k < n_inputs; k++) {
        if (!inputs[k]->requires_grad) continue;
        analytic[k] = xmalloc((size_t)inputs[k]->numel * sizeof(float));
        for (long i = 0; i < inputs[k]->numel; i++) analytic[k][i] = inputs[k]->grad[i];
    }
    tape_clear();

    double worst = 0, max_abs = 0, max_rel = 0;
    for (int k = 0; k < n_inputs; k++) {
        if (!analytic[k]) continue;
        Tensor *x = inputs[k];
        for (long i = 0; i < x->numel; i++) {
            float keep = x->data[i];
            x->data[i] = keep + (float)eps;
            double fp = projected(build, ctx, inputs, r);
            x->data[i] = keep - (float)eps;
            double fm = projected(build, ctx, inputs, r);
            x->data[i] = keep;
            double numeric = (fp - fm) / (2 * eps);
            double err = fabs(analytic[k][i] - numeric);
            double b = err / (tol.atol + tol.rtol * fabs(numeric));
            if (!isfinite(analytic[k][i])) b = INFINITY;
            if (err > max_abs) max_abs = err;
            if (fabs(numeric) > tol.atol && err / fabs(numeric) > max_rel) max_rel = err / fabs(numeric);
            if (b > worst) worst = b;
        }
        free(analytic[k]);
    }
    free(r);
    if (verbose)
        printf("    %s %-40s max_abs=%.2e max_rel=%.2e atol=%.0e rtol=%.0e budget=%5.1f%%\n",
               worst <= 1.0 ? "ok  " : "FAIL", name, max_abs, max_rel, tol.atol, tol.rtol, 100 * worst);
    return worst;
}

int gradcheck(const char *name, BuildFn build, void *ctx, Tensor **inputs, int n_inputs, GradTol tol) {
    return gradcheck_budget(name, build, ctx, inputs, n_inputs, tol, true) <= 1.0 ? 0 : 1;
}
