// engine.c - thread settings and a one-line description of the build.
#include <cblas.h>
#include <stdio.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../tensor/device.h"
#include "ops.h"

static int threads = 0;

void engine_set_threads(int n) {
    if (n <= 0) return;
    threads = n;
    openblas_set_num_threads(n);
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
}

int engine_threads(void) {
    if (threads > 0) return threads;
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void engine_describe(char *buf, int size) {
    snprintf(buf, (size_t)size, "BLAS: %s | CPU threads: %d | OpenMP: %s | CUDA: %s",
             openblas_get_config(), engine_threads(),
#ifdef _OPENMP
             "yes",
#else
             "no",
#endif
#ifdef USE_CUDA
             dev_cuda_available() ? "built, device present" : "built, no device found"
#else
             "not built"
#endif
    );
}
