// driver.c - the set-up train and eval share (see driver.h).
#include "driver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/output.h"
#include "ops/ops.h"

Device driver_start(const char *prog, CommonArgs *c) {
    if (strcmp(c->device, "cpu") && strcmp(c->device, "cuda")) {
        fprintf(stderr, "%s: --device must be cpu or cuda, got '%s'\n", prog, c->device);
        exit(2);
    }
    if (!c->data_path) {
        if (strcmp(c->dataset, "fashion-mnist")) {
            fprintf(stderr, "%s: --data PATH is required for --dataset %s\n", prog, c->dataset);
            exit(2);
        }
        c->data_path = DEFAULT_FASHION_MNIST;
    }
    Device dev = strcmp(c->device, "cuda") ? DEV_CPU : DEV_CUDA;
    if (dev == DEV_CUDA && !dev_cuda_available()) {
        fprintf(stderr, "%s: --device cuda: this build has no CUDA support or no GPU was found\n", prog);
        exit(2);
    }
    engine_set_threads(c->threads);
    engine_set_tf32(c->tf32);
    char info[256];
    engine_describe(info, sizeof info);
    printf("%s\n", info);
    if (engine_blas_warning(info, sizeof info)) printf("%s: %s\n", prog, info);   // beside the engine line
    return dev;
}

int driver_load(const char *prog, const CommonArgs *c, const char *split, Dataset *ds) {
    char err[1024];
    if (dataset_load(ds, c->dataset, c->data_path, split, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return -1;
    }
    return 0;
}

void driver_check_output(const char *prog, const char *path) {
    if (!path) return;
    char err[4400];
    FILE *f = open_output(path, "ab", err, sizeof err);
    if (!f) {
        fprintf(stderr, "%s: %s\n", prog, err);
        exit(1);
    }
    fclose(f);
}

void driver_unnormalise(const Dataset *ds, const float *x, float *out) {
    long plane = (long)ds->input_size * ds->input_size;
    for (int c = 0; c < ds->c; c++)
        for (long i = 0; i < plane; i++) out[c * plane + i] = x[c * plane + i] * ds->std[c] + ds->mean[c];
}
