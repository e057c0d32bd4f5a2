// eval.c - evaluation of a trained AMDIM encoder: frozen f1 features (eval-mode BN) of the un-augmented train
// and test images, then a linear probe, an MLP probe and k-NN, each reported as top-1 test accuracy.
//   build/eval --checkpoint runs/fmnist/checkpoint.safetensors --dataset fashion-mnist
//   build/eval --raw --dataset fashion-mnist        (the same probes on standardised raw pixels: the baseline)
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/data.h"
#include "model/amdim.h"
#include "model/checkpoint.h"
#include "model/probe.h"
#include "tensor/device.h"

static void usage(FILE *out) {
    fprintf(out,
        "usage: eval (--checkpoint FILE | --raw) [options]\n"
        "  --checkpoint FILE  a checkpoint written by train\n"
        "  --raw              evaluate standardised raw pixels instead of a model (the baseline)\n"
        "  --dataset NAME     fashion-mnist (default), mnist, cifar10, cifar100, stl10, folder\n"
        "  --data PATH        dataset directory (default for fashion-mnist: /usr/share/datasets/fashion-mnist)\n"
        "  --probe-epochs N   epochs of each probe (default 30)  --knn-k N (default 20)\n"
        "  --threads N (default 2)  --device cpu|cuda (default cpu)  --seed N (default 1)\n"
        "  --out FILE         also append the results as one JSON line to FILE\n");
}

static long parse_long(const char *flag, const char *v, long lo, long hi) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "eval: %s expects an integer in [%ld, %ld], got '%s'\n", flag, lo, hi, v);
        exit(2);
    }
    return x;
}

// f1 features (or raw pixels when m is NULL) of every image of ds, test transform, in dataset order
static FeatureSet extract(const Dataset *ds, Amdim *m, Device dev) {
    FeatureSet fs = {.n = ds->n};
    int S = ds->input_size, pixels = ds->c * S * S, B = 256;
    fs.dim = m ? m->cfg.D : pixels;
    fs.x = xmalloc((size_t)fs.n * fs.dim * sizeof(float));
    fs.y = xmalloc((size_t)fs.n * sizeof(int));
    Loader *ld = loader_new(ds, LOADER_TEST, B, 0, 2);
    Batch *b;
    autograd_set_grad_enabled(false);
    while (loader_next(ld, &b)) {
        for (int i = 0; i < b->batch; i++) fs.y[b->indices[i]] = b->labels[i];
        if (!m) {
            for (int i = 0; i < b->batch; i++)
                memcpy(fs.x + (long)b->indices[i] * pixels, b->x1 + (long)i * pixels, (size_t)pixels * sizeof(float));
            continue;
        }
        Tensor *x = tape_tensor(dev, SHAPE(b->batch, ds->c, S, S));
        tensor_copy_from_host(x, b->x1);
        Features f = amdim_encode(m, x, false, false);
        float *h = xmalloc((size_t)b->batch * fs.dim * sizeof(float));
        tensor_copy_to_host(f.f1, h);
        for (int i = 0; i < b->batch; i++)
            memcpy(fs.x + (long)b->indices[i] * fs.dim, h + (long)i * fs.dim, (size_t)fs.dim * sizeof(float));
        free(h);
        tape_clear();
    }
    autograd_set_grad_enabled(true);
    loader_free(ld);
    return fs;
}

int main(int argc, char **argv) {
    engine_prefer_passive_wait(argv);
    const char *checkpoint = NULL, *dataset = "fashion-mnist", *data_path = NULL, *device = "cpu", *out_path = NULL;
    bool raw = false;
    int probe_epochs = 30, knn_k = 20, threads = 2;
    long seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) { usage(stdout); return 0; }
        if (!strcmp(f, "--raw")) { raw = true; continue; }
        if (i + 1 >= argc || strncmp(f, "--", 2)) { fprintf(stderr, "eval: unknown or incomplete option '%s' (see --help)\n", f); return 2; }
        const char *v = argv[++i];
        if (!strcmp(f, "--checkpoint")) checkpoint = v;
        else if (!strcmp(f, "--dataset")) dataset = v;
        else if (!strcmp(f, "--data")) data_path = v;
        else if (!strcmp(f, "--device")) device = v;
        else if (!strcmp(f, "--out")) out_path = v;
        else if (!strcmp(f, "--probe-epochs")) probe_epochs = (int)parse_long(f, v, 1, 100000);
        else if (!strcmp(f, "--knn-k")) knn_k = (int)parse_long(f, v, 1, 10000);
        else if (!strcmp(f, "--threads")) threads = (int)parse_long(f, v, 1, 1024);
        else if (!strcmp(f, "--seed")) seed = parse_long(f, v, 0, 1L << 62);
        else { fprintf(stderr, "eval: unknown option '%s' (see --help)\n", f); return 2; }
    }
    if (!checkpoint == !raw) { fprintf(stderr, "eval: give exactly one of --checkpoint FILE or --raw (see --help)\n"); return 2; }
    if (strcmp(device, "cpu") && strcmp(device, "cuda")) { fprintf(stderr, "eval: --device must be cpu or cuda\n"); return 2; }
    if (!data_path) {
        if (strcmp(dataset, "fashion-mnist")) { fprintf(stderr, "eval: --data PATH is required for this dataset\n"); return 2; }
        data_path = "/usr/share/datasets/fashion-mnist";
    }
    Device dev = strcmp(device, "cuda") ? DEV_CPU : DEV_CUDA;
    if (dev == DEV_CUDA && !dev_cuda_available()) { fprintf(stderr, "eval: --device cuda: no CUDA build or no GPU found\n"); return 2; }
    engine_set_threads(threads);
    char err[512];

    Amdim model;
    bool have_model = false;
    if (checkpoint) {
        AmdimConfig cfg;
        if (checkpoint_read_config(checkpoint, &cfg, err, sizeof err)) { fprintf(stderr, "eval: %s\n", err); return 1; }
        have_model = true;
        if (amdim_init(&model, &cfg, dev, 0, err, sizeof err)) { fprintf(stderr, "eval: %s\n", err); amdim_free(&model); return 1; }
        if (checkpoint_load(checkpoint, &model, NULL, NULL, err, sizeof err)) { fprintf(stderr, "eval: %s\n", err); amdim_free(&model); return 1; }
    }
    Dataset train, test;
    const char *train_split = "train";
    int rc = 1;
    if (dataset_load(&train, dataset, data_path, train_split, err, sizeof err)) {
        fprintf(stderr, "eval: %s\n", err);
        if (have_model) amdim_free(&model);
        return 1;
    }
    if (dataset_load(&test, dataset, data_path, "test", err, sizeof err)) {
        fprintf(stderr, "eval: %s\n", err);
        dataset_free(&train);
        if (have_model) amdim_free(&model);
        return 1;
    }
    if (have_model && (model.cfg.in_channels != train.c || model.cfg.input_size != train.input_size)) {
        fprintf(stderr, "eval: %s expects %d-channel %dx%d inputs, dataset %s gives %d-channel %dx%d\n", checkpoint,
                model.cfg.in_channels, model.cfg.input_size, model.cfg.input_size, dataset, train.c, train.input_size,
                train.input_size);
        goto cleanup;
    }
    double t0 = now_seconds();
    FeatureSet ftrain = extract(&train, have_model ? &model : NULL, dev);
    FeatureSet ftest = extract(&test, have_model ? &model : NULL, dev);
    printf("features: %s, train %d x %d, test %d x %d (%.1fs)\n", raw ? "raw pixels" : "frozen f1", ftrain.n, ftrain.dim,
           ftest.n, ftest.dim, now_seconds() - t0);
    features_standardise(&ftrain, &ftest);
    ProbeOptions po = {.epochs = probe_epochs, .batch = 256, .lr = 1e-3f, .weight_decay = 1e-5f, .seed = (uint64_t)seed, .device = dev};
    double lin = probe_linear(&ftrain, &ftest, train.n_classes, &po);
    printf("linear probe: %.2f%%\n", lin);
    double mlp = probe_mlp(&ftrain, &ftest, train.n_classes, &po);
    printf("MLP probe:    %.2f%%\n", mlp);
    double knn = knn_accuracy(&ftrain, &ftest, train.n_classes, knn_k);
    printf("k-NN (k=%d):  %.2f%%\n", knn_k, knn);
    printf("eval: %s on %s: linear %.2f%%, MLP %.2f%%, k-NN %.2f%% (%.0fs)\n", raw ? "raw pixels" : checkpoint, dataset,
           lin, mlp, knn, now_seconds() - t0);
    bool write_failed = false;
    if (out_path) {
        FILE *f = fopen(out_path, "a");
        if (!f) { fprintf(stderr, "eval: cannot write %s: %s\n", out_path, strerror(errno)); write_failed = true; }
        fprintf(f, "{\"features\":\"%s\",\"dataset\":\"%s\",\"linear\":%.4f,\"mlp\":%.4f,\"knn\":%.4f,\"knn_k\":%d,"
                   "\"probe_epochs\":%d}\n", raw ? "raw" : checkpoint, dataset, lin, mlp, knn, knn_k, probe_epochs);
        if (f) fclose(f);
    }
    rc = write_failed ? 1 : 0;
    free(ftrain.x); free(ftrain.y); free(ftest.x); free(ftest.y);
cleanup:
    dataset_free(&train);
    dataset_free(&test);
    if (have_model) amdim_free(&model);
    return rc;
}
