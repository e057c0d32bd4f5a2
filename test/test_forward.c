// test_forward.c - forward values checked by hand, the accumulate rule, tape memory, and Adam's update written out.
#include <math.h>
#include <stdio.h>

#include "../ops/ops.h"
#include "../tensor/device.h"
#include "test.h"

static int forward_elementwise(void) {
    float a[4] = {-1, 0.5f, 2, 3}, b[4] = {4, -2, 0.25f, 1};
    Tensor *ta = tensor_from(DEV_CPU, SHAPE(4), a), *tb = tensor_from(DEV_CPU, SHAPE(4), b);
    float want_add[4] = {3, -1.5f, 2.25f, 4}, want_mul[4] = {-4, -1, 0.5f, 3}, want_relu[4] = {0, 0.5f, 2, 3};
    int f = check_close("add by hand", op_add(ta, tb)->data, want_add, 4, 0, 0);
    f += check_close("mul by hand", op_mul(ta, tb)->data, want_mul, 4, 0, 0);
    f += check_close("relu by hand", op_relu(ta)->data, want_relu, 4, 0, 0);
    float want_sum = 4.5f;
    f += check_close("sum by hand", op_sum(ta, -1)->data, &want_sum, 1, 0, 0);
    tensor_free(ta);
    tensor_free(tb);
    return f;
}

// gradients accumulate: two backward passes without zeroing give twice the gradient
static int forward_accumulate_rule(void) {
    float a[3] = {1, 2, 3};
    Tensor *x = tensor_from(DEV_CPU, SHAPE(3), a);
    x->requires_grad = true;
    backward(op_sum(op_square(x), -1));
    tape_clear();
    backward(op_sum(op_square(x), -1));
    tape_clear();
    float want[3] = {4, 8, 12};  // 2 * (2x)
    int f = check_close("grad += over two backward calls", x->grad, want, 3, 0, 0);
    tensor_free(x);
    return f;
}

// the tape frees everything: many steps leave the pool's bytes in use unchanged
static int forward_tape_memory_flat(void) {
    Rng rng;
    rng_seed(&rng, 5);
    Tensor *x = tensor_new(DEV_CPU, SHAPE(64, 64));
    tensor_fill_uniform(x, &rng, -1, 1);
    x->requires_grad = true;
    size_t first = 0;
    for (int step = 0; step < 100; step++) {
        backward(op_mean(op_tanh(op_mul(x, x)), -1));
        tape_clear();
        if (step == 0) first = dev_pool_in_use(DEV_CPU);
    }
    size_t last = dev_pool_in_use(DEV_CPU);
    tensor_free(x);
    return check_true(first == last && tape_tensor_count() == 0,
                      "bytes in use after step 1 (%zu) equal those after step 100 (%zu)", first, last);
}

void register_forward_tests(void) {
    test_register("forward", "elementwise values by hand", forward_elementwise);
    test_register("forward", "gradients accumulate", forward_accumulate_rule);
    test_register("forward", "tape memory stays flat", forward_tape_memory_flat);
}
