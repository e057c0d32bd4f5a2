// test_main.c - runs the registered tests: test_runner [group ...] [-o name-substring]
// Groups: grad, forward, gpu, data, model, golden, ... (see the register_* functions). No group = all.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ops/ops.h"
#include "../tensor/device.h"
#include "test.h"

#define MAX_TESTS 512
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

int main(int argc, char **argv) {
    const char *filter = NULL;
    const char *groups[16];
    int n_groups = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-o") && i + 1 < argc) filter = argv[++i];
        else if (n_groups < 16) groups[n_groups++] = argv[i];
    }
    engine_set_threads(2);
    register_all_tests();
    int failed = 0, passed = 0, skipped = 0;
    for (int t = 0; t < n_tests; t++) {
        bool in_group = n_groups == 0;
        for (int g = 0; g < n_groups; g++) in_group |= !strcmp(groups[g], tests[t].group);
        if (!in_group || (filter && !strstr(tests[t].name, filter))) continue;
        printf("[%s] %s\n", tests[t].group, tests[t].name);
        fflush(stdout);
        int f = tests[t].fn();
        tape_clear();
        if (f < 0) skipped++;          // a test returns -1 when it could not run here (e.g. no GPU)
        else if (f > 0) failed++;
        else passed++;
        if (tape_tensor_count() != 0) { printf("    FAIL tape not empty\n"); failed++; }
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
