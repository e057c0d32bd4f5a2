// test_grad.c - central finite differences against backward() for every op, on random small inputs and edge cases.
// Tolerances: ops run in float32 and the difference step is 1e-2, so a correct gradient differs from the numeric one
// by float rounding of the projected sum (~1e-4 relative) plus O(eps^2) truncation. A wrong backward is off by O(1).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "../ops/ops.h"
#include "../tensor/device.h"
#include "test.h"

static const GradTol TOL_SMOOTH = {.atol = 1e-4, .rtol = 1e-3, .eps = 1e-2};

// ---- elementwise ----
typedef struct { UnaryOp op; } UnaryCtx;
static Tensor *build_unary(Tensor **in, void *ctx) {
    switch (((UnaryCtx *)ctx)->op) {
        case UNARY_RELU: return op_relu(in[0]);
        case UNARY_TANH: return op_tanh(in[0]);
        case UNARY_SQUARE: return op_square(in[0]);
        case UNARY_EXP: return op_exp(in[0]);
        default: return op_log(in[0]);
    }
}

static int grad_unary(void) {
    Rng rng;
    rng_seed(&rng, 1);
    int fails = 0;
    const char *names[] = {"relu", "tanh", "square", "exp", "log"};
    for (int op = UNARY_RELU; op <= UNARY_LOG; op++) {
        // log needs positive inputs; relu inputs are kept away from the kink at 0 (|x| >= 0.1 > eps)
        Tensor *x = test_tensor(&rng, true, op == UNARY_LOG ? 0.5f : -2.0f, 2.0f, SHAPE(3, 4, 5));
        if (op == UNARY_RELU)
            for (long i = 0; i < x->numel; i++) if (fabsf(x->data[i]) < 0.1f) x->data[i] = 0.1f;
        UnaryCtx ctx = {(UnaryOp)op};
        fails += gradcheck(names[op], build_unary, &ctx, &x, 1, TOL_SMOOTH);
        tensor_free(x);
    }
    return fails;
}

static Tensor *build_add(Tensor **in, void *ctx) { return op_add(in[0], in[1]); }
static Tensor *build_mul(Tensor **in, void *ctx) { return op_mul(in[0], in[1]); }
static Tensor *build_scale(Tensor **in, void *ctx) { return op_scale(in[0], -1.7f); }
static Tensor *build_same_input(Tensor **in, void *ctx) { return op_mul(in[0], in[0]); }  // one input used twice

static int grad_binary(void) {
    Rng rng;
    rng_seed(&rng, 2);
    Tensor *in[2] = {test_tensor(&rng, true, -2, 2, SHAPE(2, 3, 4, 5)), test_tensor(&rng, true, -2, 2, SHAPE(2, 3, 4, 5))};
    int fails = gradcheck("add", build_add, NULL, in, 2, TOL_SMOOTH);
    fails += gradcheck("mul", build_mul, NULL, in, 2, TOL_SMOOTH);
    fails += gradcheck("scale", build_scale, NULL, in, 1, TOL_SMOOTH);
    fails += gradcheck("mul (x, x): accumulation of two paths", build_same_input, NULL, in, 1, TOL_SMOOTH);
    tensor_free(in[0]);
    tensor_free(in[1]);
    return fails;
}

// The first consumer to write an input's grad takes the output's grad buffer (input_grad_take): only inputs with no
// grad yet go that way, so each check here gets fresh inputs.
static Tensor *build_add_same(Tensor **in, void *ctx) { return op_add(in[0], in[0]); }
static Tensor *build_chain(Tensor **in, void *ctx) {   // reshape -> scale -> add with the input's second use
    Tensor *r = op_reshape(in[0], SHAPE(6, 20));
    return op_add(op_scale(r, 0.5f), op_reshape(op_mul(in[0], in[1]), SHAPE(6, 20)));
}

static int grad_handover(void) {
    Rng rng;
    rng_seed(&rng, 12);
    BuildFn builds[] = {build_add_same, build_scale, build_chain};
    const char *names[] = {"add (x, x), grad handed over", "scale, grad handed over", "reshape/scale/add chain"};
    int fails = 0;
    for (int i = 0; i < 3; i++) {
        Tensor *in[2] = {test_tensor(&rng, true, -2, 2, SHAPE(2, 3, 4, 5)), test_tensor(&rng, true, -2, 2, SHAPE(2, 3, 4, 5))};
        fails += gradcheck(names[i], builds[i], NULL, in, i == 2 ? 2 : 1, TOL_SMOOTH);
        tensor_free(in[0]);
        tensor_free(in[1]);
    }
    return fails;
}

// ---- reduce ----
typedef struct { int dim; bool mean; } ReduceCtx;
static Tensor *build_reduce(Tensor **in, void *ctx) {
    ReduceCtx *c = ctx;
    return c->mean ? op_mean(in[0], c->dim) : op_sum(in[0], c->dim);
}

static int grad_reduce(void) {
    Rng rng;
    rng_seed(&rng, 3);
    Tensor *x = test_tensor(&rng, true, -1, 1, SHAPE(2, 3, 4, 5));
    int fails = 0;
    char name[64];
    for (int dim = -1; dim < 4; dim++) {
        for (int mean = 0; mean < 2; mean++) {
            ReduceCtx ctx = {dim, mean};
            snprintf(name, sizeof name, "%s dim=%d", mean ? "mean" : "sum", dim);
            fails += gradcheck(name, build_reduce, &ctx, &x, 1, TOL_SMOOTH);
        }
    }
    tensor_free(x);
    return fails;
}

// ---- the self-check: a planted wrong backward must fail the checker ----
static void wrong_tanh_backward(Node *n) {  // forgets the square in 1 - tanh^2
    float *dx = input_grad(n, 0);
    for (long i = 0; i < n->out->numel; i++) dx[i] += n->out->grad[i] * (1.0f - n->out->data[i]);
}
static Tensor *build_wrong_tanh(Tensor **in, void *ctx) {
    Tensor *out = tape_tensor(DEV_CPU, in[0]->ndim, in[0]->shape);
    unary_forward_cpu(UNARY_TANH, out->data, in[0]->data, in[0]->numel);
    tape_record("wrong_tanh", wrong_tanh_backward, out, 1, in, NULL, 0);
    return out;
}

static int grad_planted_bug(void) {
    Rng rng;
    rng_seed(&rng, 4);
    Tensor *x = test_tensor(&rng, true, -2, 2, SHAPE(4, 5));
    double budget = gradcheck_budget("planted wrong tanh backward", build_wrong_tanh, NULL, &x, 1, TOL_SMOOTH, false);
    tensor_free(x);
    return check_true(budget > 1.0, "the checker rejects the planted bug (budget %.0f%%, must exceed 100%%)", 100 * budget);
}

void register_grad_tests(void) {
    test_register("grad", "planted bug is caught", grad_planted_bug);
    test_register("grad", "elementwise unary", grad_unary);
    test_register("grad", "elementwise binary", grad_binary);
    test_register("grad", "grad hand-over", grad_handover);
    test_register("grad", "sum and mean", grad_reduce);
}
