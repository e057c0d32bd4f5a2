// engine.c - engine settings (CPU threads, TF32) and a one-line description of the build.
#include <cblas.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../tensor/device.h"
#include "ops.h"

#ifdef USE_CUDA
#include "../cuda/tuning.h"
#endif

static int threads = 0;
static bool tf32 = false;

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

// The CPU path has no TF32: it is always FP32, so the flag only changes CUDA convolutions.
void engine_set_tf32(bool on) {
    tf32 = on;
#ifdef USE_CUDA
    conv_cuda_set_tf32(on);
#endif
}

bool engine_tf32(void) { return tf32; }

// OPENBLAS_CORETYPE forces a kernel. One that cannot use AVX-512 on a CPU that has it roughly halves OpenBLAS's
// GEMMs where the CPU runs 512-bit FMAs at full width (measured 247 vs 440-461 GFLOP/s for sgemm 2048^3 on a 2-core
// Zen 5: Haswell vs Cooperlake kernels); Zen 4, which splits them in two, lost little (159-196 vs 186-191 with
// `OPENBLAS_CORETYPE=Haswell|Cooperlake build/bench gemm`).
int engine_blas_warning(char *buf, int size) {
    const char *forced = getenv("OPENBLAS_CORETYPE");
    if (!forced || !*forced) return 0;
    static const char *avx512_cores[] = {"SkylakeX", "Cooperlake", "SapphireRapids", "Zen4", "Zen5"};
    bool forced_avx512 = false;
    for (size_t i = 0; i < sizeof avx512_cores / sizeof *avx512_cores; i++)
        forced_avx512 |= !strcasecmp(forced, avx512_cores[i]);
    __builtin_cpu_init();
    if (forced_avx512 || !__builtin_cpu_supports("avx512f")) return 0;
    snprintf(buf, (size_t)size, "warning: OPENBLAS_CORETYPE=%s forces a kernel without AVX-512 on this AVX-512 CPU: "
             "OpenBLAS GEMMs may run at half speed (unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE to let OpenBLAS choose)",
             forced);
    return 1;
}

void engine_describe(char *buf, int size) {
    char cuda[200];
#ifdef USE_CUDA
    char device[160];
    if (dev_cuda_describe(device, sizeof device))
        snprintf(cuda, sizeof cuda, "%s, convolutions in %s", device, tf32 ? "TF32" : "FP32");
    else
        snprintf(cuda, sizeof cuda, "built, no device found");
#else
    snprintf(cuda, sizeof cuda, "not built");
#endif
    snprintf(buf, (size_t)size, "BLAS: %s | CPU threads: %d | OpenMP: %s | CUDA: %s", openblas_get_config(),
             engine_threads(),
#ifdef _OPENMP
             "yes",
#else
             "no",
#endif
             cuda);
}

// libgomp reads its wait policy once, when it loads, so a driver that wants it set re-executes itself.
// Passive waiting: idle OpenMP threads sleep instead of spinning. On a 2-core machine a spinning thread that shares
// a core with any other busy process (the data workers, a second job) slows a step down by up to 10x. Even idle,
// spinning lost to passive waiting on a 2-core Zen 5 VM (tiny step, batch 32: libgomp's default 175-192 img/s,
// OMP_WAIT_POLICY=active 151-153, passive 305; one older CPU gained ~15% from spinning). On a 2-core Xeon VM with
// AVX-512 (Sapphire Rapids class) spinning gained ~13% idle (train loop, tiny b64: active 315-319, passive 279-284
// img/s; an empty 2-thread region costs ~0.8 us spinning, 37-70 us sleeping) but lost 2.7x beside one busy process
// (`yes`: GOMP_SPINCOUNT=100000 60-62, passive 165-169). A short spin there, later (tiny b64 step, two interleaved
// runs each): GOMP_SPINCOUNT=10000 +12% idle (357-366 vs 319-326 img/s) but -18% beside `yes` (157-160 vs 187-195);
// 3000 +8% idle, -5% beside `yes`. Passive stays: never far off. Set OMP_WAIT_POLICY or GOMP_SPINCOUNT to choose.
void engine_prefer_passive_wait(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv);  // only returns on failure: then we simply run with the default policy
}
