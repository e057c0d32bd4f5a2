// test.h - the one test runner: named tests in groups (grad, forward, gpu, data, model, golden, ...),
// every check prints its numbers against its tolerance and counts as a failure above it.
#ifndef TEST_H
#define TEST_H

#include <stdbool.h>

#include "../autograd/autograd.h"

typedef int (*TestFn)(void);  // returns the number of failed checks

void test_register(const char *group, const char *name, TestFn fn);
extern const char *test_graph_dir;   // test_runner --graphs DIR: every gradient check draws its tape there (DOT)

// |got - want| <= atol + rtol * |want| for every element; prints max abs / rel error and % of the budget used.
// NaN or Inf in got fails. Returns 1 on failure, 0 on success.
int check_close(const char *what, const float *got, const float *want, long n, double atol, double rtol);
// 0 when a CUDA device is present; otherwise prints why and returns -1 (skip), or 1 (fail) under REQUIRE_GPU=1
// (test/test_gpu.c). Every GPU test starts with it.
int skip_without_cuda(void);
// Plain condition with a message; returns 1 on failure.
int check_true(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// ---- finite-difference gradient checking ----
// build: computes the op's output from inputs (called many times, always on fresh tape state).
typedef Tensor *(*BuildFn)(Tensor **inputs, void *ctx);

typedef struct {
    double atol, rtol;   // |analytic - numeric| <= atol + rtol * |numeric|
    double eps;          // central difference step (0 -> 1e-2)
} GradTol;

// Checks d(sum(out * r))/d(input) for every input with requires_grad, element by element, with a fixed random
// projection r. Inputs live on the CPU. Prints one line per op. Returns 1 on failure.
int gradcheck(const char *name, BuildFn build, void *ctx, Tensor **inputs, int n_inputs, GradTol tol);
// Same check, returning the worst budget fraction instead of printing (for self-tests); < 1 passes.
double gradcheck_budget(const char *name, BuildFn build, void *ctx, Tensor **inputs, int n_inputs, GradTol tol, bool verbose);

// Random CPU tensor owned by the caller; requires_grad as asked. Values uniform in [lo, hi).
Tensor *test_tensor(Rng *rng, bool requires_grad, float lo, float hi, int ndim, const int *shape);

#endif
