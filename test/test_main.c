// test_main.c - runs the registered tests: test_runner [group ...] [-o name-substring] [--graphs DIR]
// Groups: grad, forward, gpu, data, model, golden, ... (see the register_* functions). No group = all.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../comm/comm.h"
#include "../ops/ops.h"
#include "../tensor/device.h"
#include "test.h"

#define MAX_TESTS 512
const char *test_graph_dir;
static struct { const char *group, *name; TestFn fn; } tests[MAX_TESTS];
static int n_tests;

void test_register(const char *group, const char *name, TestFn fn) {
    CHECK(n_tests < MAX_TESTS, "too many tests");
    tests[n_tests].group = group;
    tests[n_tests].name = name;
    tests[n_tests].fn = fn;
    n_tests++;
}

int check_true(bool cond, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("    %s ", cond ? "ok  " : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    return cond ? 0 : 1;
}

#include "registry.h"

static size_t pool_in_use(void) { return dev_pool_in_use(DEV_CPU) + dev_pool_in_use(DEV_CUDA); }

// Runs one test, then its leak check: every tensor the test made must be freed (tape_clear() frees the tape's),
// so the pool holds the bytes it held before. Returns the test's result (-1 = skipped); *leaked = bytes not freed.
static int run_one(TestFn fn, size_t *leaked) {
    size_t before = pool_in_use();
    int f = fn();
    tape_clear();
    size_t after = pool_in_use();
    *leaked = after > before ? after - before : 0;
    return f;
}

// The leak check itself must be able to fail: a test that keeps one tensor alive has to be caught.
static Tensor *kept_alive;
static int keeps_a_tensor(void) {
    kept_alive = tensor_zeros(DEV_CPU, SHAPE(4, 4));
    return 0;
}

static int leak_check_self_test(void) {
    size_t leaked;
    run_one(keeps_a_tensor, &leaked);
    tensor_free(kept_alive);
    return check_true(leaked > 0, "the leak check reports a test that keeps a 4x4 tensor alive (%zu bytes)", leaked);
}

int main(int argc, char **argv) {
    comm_init(&argc, &argv);   // under mpirun the "mpi" group compares ranks with one process; rank 0 reports
    if (comm_rank() != 0 && !freopen("/dev/null", "w", stdout)) return 1;
    const char *filter = NULL;
    const char *groups[16];
    int n_groups = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-o") && i + 1 < argc) filter = argv[++i];
        else if (!strcmp(argv[i], "--graphs") && i + 1 < argc) test_graph_dir = argv[++i];
        else if (n_groups < 16) groups[n_groups++] = argv[i];
        else { fprintf(stderr, "test_runner: at most 16 groups\n"); return 2; }
    }
    engine_set_threads(2);
    dev_pool_set_poison(true);   // every pool block starts as NaN: an unwritten element fails its check
    test_register("runner", "leak check catches a kept tensor", leak_check_self_test);
    register_all_tests();
    for (int g = 0; g < n_groups; g++) {   // a group nobody registered is a typo, not an empty success
        bool known = false;
        for (int t = 0; t < n_tests; t++) known |= !strcmp(groups[g], tests[t].group);
        if (!known) {
            fprintf(stderr, "test_runner: unknown group '%s' (groups:", groups[g]);
            for (int t = 0; t < n_tests; t++) {
                bool first = true;
                for (int u = 0; u < t; u++) first &= strcmp(tests[u].group, tests[t].group) != 0;
                if (first) fprintf(stderr, " %s", tests[t].group);
            }
            fprintf(stderr, ")\n");
            return 2;
        }
    }
    int failed = 0, passed = 0, skipped = 0;
    for (int t = 0; t < n_tests; t++) {
        bool in_group = n_groups == 0;
        for (int g = 0; g < n_groups; g++) in_group |= !strcmp(groups[g], tests[t].group);
        if (!in_group || (filter && !strstr(tests[t].name, filter))) continue;
        printf("[%s] %s\n", tests[t].group, tests[t].name);
        fflush(stdout);
        size_t leaked;
        int f = run_one(tests[t].fn, &leaked);
        if (leaked) {
            printf("    FAIL leak: %zu bytes of tensor memory were allocated by the test and never freed\n", leaked);
            f = (f < 0 ? 0 : f) + 1;
        }
        if (f < 0) skipped++;          // a test returns -1 when it could not run here (e.g. no GPU)
        else if (f > 0) failed++;
        else passed++;
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    comm_finalize();
    if (passed + failed + skipped == 0) {
        fprintf(stderr, "test_runner: no test matches%s%s\n", filter ? " -o " : "", filter ? filter : "");
        return 2;
    }
    return failed ? 1 : 0;
}
