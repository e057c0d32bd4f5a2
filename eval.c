// eval.c - evaluation of a trained AMDIM encoder: frozen f1 features (eval-mode BN) of the un-augmented train
// and test images, then a linear probe, an MLP probe and k-NN, each reported as top-1 test accuracy.
//   build/eval --checkpoint runs/fm/checkpoint.safetensors --dataset fashion-mnist
//   build/eval --raw --dataset fashion-mnist        (the same probes on standardised raw pixels: the baseline)
// Given both, it evaluates both and prints them side by side.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "io/image.h"
#include "io/output.h"
#include "io/safetensors.h"
#include "model/amdim.h"
#include "model/checkpoint.h"
#include "model/probe.h"

#define EXTRACT_BATCH 256   // images per forward pass of the frozen encoder
#define RETRIEVAL_QUERIES 8 // --save-retrievals: test images, each with its RETRIEVAL_K nearest training images
#define RETRIEVAL_K 8

typedef struct {
    CommonArgs common;
    const char *checkpoint, *out_path, *save_features, *save_retrievals, *save_mixtures;
    bool raw;
    int probe_epochs, knn_k;
    long seed;
} Args;

typedef struct {                 // one row of the result table
    char features[96];
    int dim;
    double linear, mlp, knn, seconds;
    bool failed;                 // an output could not be written
} Result;

static Args parse_args(int argc, char **argv) {
    Args a = {.common = COMMON_ARGS_DEFAULT, .probe_epochs = 30, .knn_k = 20, .seed = 1};
    Flag flags[] = {
        {"--checkpoint", FLAG_STRING, &a.checkpoint, 0, 0, "FILE", "a checkpoint written by train", 0},
        {"--raw", FLAG_SWITCH, &a.raw, 0, 0, NULL, "evaluate standardised raw pixels (the baseline; with "
         "--checkpoint: both, side by side)", 0},
        COMMON_FLAGS(&a.common),
        {"--probe-epochs", FLAG_INT, &a.probe_epochs, 1, 100000, "N", "epochs of each probe", 0},
        {"--knn-k", FLAG_INT, &a.knn_k, 1, 10000, "N", "neighbours of the k-NN classifier", 0},
        {"--seed", FLAG_LONG, &a.seed, 0, 9007199254740992.0, "N", "seeds the probes", 0},
        {"--out", FLAG_STRING, &a.out_path, 0, 0, "FILE", "also append each result as one JSON line to FILE", 0},
        {"--save-features", FLAG_STRING, &a.save_features, 0, 0, "FILE", "write the features (before standardising) "
         "and labels of both splits as safetensors: train.features (N, dim), train.labels, test.*", 0},
        {"--save-retrievals", FLAG_STRING, &a.save_retrievals, 0, 0, "FILE", "write a PNG: 8 test images, each with "
         "its 8 nearest training images (cosine, as k-NN); green frame = same label, red = another", 0},
        {"--save-mixtures", FLAG_STRING, &a.save_mixtures, 0, 0, "FILE", "models trained with --mixtures K: a PNG "
         "with one row per component, the test images it wins most, each 7x7 location tinted by its winner", 0},
    };
    flags_parse("eval", "(--checkpoint FILE | --raw) [options]", flags, (int)(sizeof flags / sizeof flags[0]), argc,
                argv);
    if (!a.checkpoint && !a.raw) {
        fprintf(stderr, "eval: give --checkpoint FILE, --raw, or both (see --help)\n");
        exit(2);
    }
    return a;
}

// f1 features (or raw pixels when m is NULL) of every image of ds, test transform, in dataset order
static FeatureSet extract(const Dataset *ds, Amdim *m, Device dev) {
    FeatureSet fs = {.n = ds->n};
    int S = ds->input_size, pixels = ds->c * S * S;
    fs.dim = m ? m->cfg.D : pixels;
    fs.x = xmalloc((size_t)fs.n * fs.dim * sizeof(float));
    fs.y = xmalloc((size_t)fs.n * sizeof(int));
    Loader *ld = loader_new(ds, LOADER_TEST, EXTRACT_BATCH, 0, 2);
    float *h = xmalloc((size_t)EXTRACT_BATCH * fs.dim * sizeof(float));
    Batch *b;
    autograd_set_grad_enabled(false);
    while (loader_next(ld, &b)) {
        const float *rows = b->x1;   // raw pixels: the test transform's output itself
        if (m) {
            Tensor *x = tape_tensor(dev, SHAPE(b->batch, ds->c, S, S));
            tensor_copy_from_host(x, b->x1);
            tensor_copy_to_host(amdim_encode(m, x, false, false).f1, h);
            tape_clear();
            rows = h;
        }
        for (int i = 0; i < b->batch; i++) {
            fs.y[b->indices[i]] = b->labels[i];
            memcpy(fs.x + (long)b->indices[i] * fs.dim, rows + (long)i * fs.dim, (size_t)fs.dim * sizeof(float));
        }
    }
    autograd_set_grad_enabled(true);
    free(h);
    loader_free(ld);
    return fs;
}

// --save-features: both splits' features and labels (labels as floats: the format holds F32 only)
static int save_features(const char *path, const Args *a, const FeatureSet *train, const FeatureSet *test) {
    StWriter *w = st_writer_new();
    st_writer_meta(w, "checkpoint", a->checkpoint ? a->checkpoint : "raw pixels");
    st_writer_meta(w, "dataset", a->common.dataset);
    const FeatureSet *sets[2] = {train, test};
    const char *names[2] = {"train", "test"};
    for (int s = 0; s < 2; s++) {
        char key[32];
        snprintf(key, sizeof key, "%s.features", names[s]);
        st_writer_add(w, key, 2, (int[]){sets[s]->n, sets[s]->dim}, sets[s]->x);
        float *y = xmalloc((size_t)sets[s]->n * sizeof(float));
        for (int i = 0; i < sets[s]->n; i++) y[i] = (float)sets[s]->y[i];
        snprintf(key, sizeof key, "%s.labels", names[s]);
        st_writer_add(w, key, 1, (int[]){sets[s]->n}, y);
        free(y);
    }
    char err[4400];
    int rc = st_writer_save(w, path, err, sizeof err);
    st_writer_free(w);
    if (rc) fprintf(stderr, "eval: %s\n", err);
    else printf("  features: %s\n", path);
    return rc;
}

// image (C, S, S) of the test transform, back in [0, 1]
static void picture(const Dataset *ds, int index, float *out) {
    long plane = (long)ds->input_size * ds->input_size;
    transform_test(ds, index, out);
    for (int c = 0; c < ds->c; c++)
        for (long i = 0; i < plane; i++) out[c * plane + i] = out[c * plane + i] * ds->std[c] + ds->mean[c];
}

// --save-retrievals: rows of (query, its nearest training images) with frames showing whether the labels agree
static int save_retrievals(const char *path, const Dataset *train, const Dataset *test, const FeatureSet *ftrain,
                           const FeatureSet *ftest) {
    int cols = 1 + RETRIEVAL_K, rows = RETRIEVAL_QUERIES, S = train->input_size;
    long img = (long)train->c * S * S;
    float *cells = xmalloc((size_t)rows * cols * img * sizeof(float));
    uint8_t (*frame)[3] = xmalloc((size_t)rows * cols * sizeof *frame);
    int neighbours[RETRIEVAL_K], agree = 0;
    for (int r = 0; r < rows; r++) {
        int q = (int)((long)r * ftest->n / rows);
        picture(test, q, cells + (long)r * cols * img);
        memcpy(frame[r * cols], (uint8_t[3]){120, 120, 120}, 3);
        knn_neighbours(ftrain, ftest, q, RETRIEVAL_K, neighbours);
        for (int k = 0; k < RETRIEVAL_K; k++) {
            int cell = r * cols + 1 + k;
            bool same = neighbours[k] >= 0 && ftrain->y[neighbours[k]] == ftest->y[q];
            agree += same;
            if (neighbours[k] >= 0) picture(train, neighbours[k], cells + (long)cell * img);
            else memset(cells + (long)cell * img, 0, (size_t)img * sizeof(float));
            memcpy(frame[cell], same ? (uint8_t[3]){40, 170, 60} : (uint8_t[3]){210, 40, 40}, 3);
        }
    }
    Grid g = {.rows = rows, .cols = cols, .c = train->c, .h = S, .w = S, .zoom = S <= 32 ? 3 : 1, .pad = 3};
    char err[4400];
    FILE *probe = open_output(path, "wb", err, sizeof err);
    if (probe) fclose(probe);
    int rc = !probe || png_write_grid(path, cells, (const uint8_t (*)[3])frame, &g, err, sizeof err) ? -1 : 0;
    if (rc) fprintf(stderr, "eval: %s\n", err);
    else printf("  retrievals: %s (%d of %d neighbours share the query's label)\n", path, agree, rows * RETRIEVAL_K);
    free(cells);
    free(frame);
    return rc;
}

#define MIXTURE_BATCH 256   // test images scored together (their negatives are each other)
#define MIXTURE_COLUMNS 8

// --save-mixtures: for the first test images, which component wins at each 7x7 location; one row per component
// with the images it wins most, tinted by the winner of each location (a segmentation-like picture)
static int save_mixtures(const char *path, const Dataset *test, Amdim *m, Device dev) {
    static const uint8_t palette[8][3] = {{230, 25, 75}, {60, 180, 75}, {0, 130, 200}, {245, 130, 48},
                                          {145, 30, 180}, {70, 240, 240}, {240, 50, 230}, {210, 245, 60}};
    int k = m->cfg.mixtures, S = test->input_size, C = test->c, B = test->n < MIXTURE_BATCH ? test->n : MIXTURE_BATCH;
    long img = (long)C * S * S, plane = (long)S * S;
    float *x = xmalloc((size_t)B * img * sizeof(float));
    for (int i = 0; i < B; i++) transform_test(test, i, x + i * img);
    Tensor *xt = tensor_from(dev, SHAPE(B, C, S, S), x);
    int *winner = xmalloc((size_t)B * 49 * sizeof(int)), *share = xcalloc((size_t)B * k, sizeof(int));
    amdim_mixture_winners(m, xt, winner);
    for (int i = 0; i < B * 49; i++) share[(i / 49) * k + winner[i]]++;
    int rows = k, cols = MIXTURE_COLUMNS;
    float *cells = xcalloc((size_t)rows * cols * 3 * plane, sizeof(float)), *pic = xmalloc((size_t)img * sizeof(float));
    bool *used = xcalloc((size_t)B, sizeof(bool));
    for (int j = 0; j < k; j++)
        for (int col = 0; col < cols; col++) {
            int best = -1;   // the unused image where component j wins the most locations
            for (int i = 0; i < B; i++) if (!used[i] && (best < 0 || share[i * k + j] > share[best * k + j])) best = i;
            if (best < 0) break;
            used[best] = true;
            picture(test, best, pic);
            float *cell = cells + ((long)j * cols + col) * 3 * plane;
            for (int y = 0; y < S; y++)
                for (int xx = 0; xx < S; xx++) {
                    const uint8_t *tint = palette[winner[best * 49 + (y * 7 / S) * 7 + xx * 7 / S] % 8];
                    for (int ch = 0; ch < 3; ch++) {
                        float v = pic[(long)(C == 3 ? ch : 0) * plane + y * S + xx];
                        cell[ch * plane + y * S + xx] = 0.6f * v + 0.4f * tint[ch] / 255.0f;
                    }
                }
        }
    uint8_t (*frame)[3] = xmalloc((size_t)rows * cols * sizeof *frame);
    for (int i = 0; i < rows * cols; i++) memcpy(frame[i], palette[(i / cols) % 8], 3);
    Grid g = {.rows = rows, .cols = cols, .c = 3, .h = S, .w = S, .zoom = S <= 32 ? 3 : 1, .pad = 3};
    char err[4400];
    int rc = png_write_grid(path, cells, (const uint8_t (*)[3])frame, &g, err, sizeof err);
    if (rc) fprintf(stderr, "eval: %s\n", err);
    else printf("  mixture components: %s (%d rows, the first %d test images)\n", path, k, B);
    tensor_free(xt);
    free(x); free(winner); free(share); free(cells); free(pic); free(used); free(frame);
    return rc;
}

// Features of both splits, then the three probes on them.
static Result evaluate(const Args *a, const Dataset *train, const Dataset *test, Amdim *m, Device dev) {
    Result r = {.dim = m ? m->cfg.D : train->c * train->input_size * train->input_size};
    if (m && m->cfg.method == METHOD_CPC) snprintf(r.features, sizeof r.features, "CPC %s, mean patch vector", m->cfg.preset);
    else if (m) snprintf(r.features, sizeof r.features, "%s %s, frozen f1", m->cfg.method == METHOD_DIM ? "DIM" : "AMDIM",
                         m->cfg.preset);
    else snprintf(r.features, sizeof r.features, "raw pixels");
    double t0 = now_seconds();
    FeatureSet ftrain = extract(train, m, dev), ftest = extract(test, m, dev);
    printf("%s: features of %d train and %d test images, %d-d (%.1fs)\n", r.features, ftrain.n, ftest.n, r.dim,
           now_seconds() - t0);
    bool pictures = m || !a->checkpoint;   // the model's features, or raw pixels when they are all there is
    if (pictures && a->save_features && save_features(a->save_features, a, &ftrain, &ftest)) r.failed = true;
    features_standardise(&ftrain, &ftest);
    if (pictures && a->save_retrievals && save_retrievals(a->save_retrievals, train, test, &ftrain, &ftest))
        r.failed = true;
    if (m && a->save_mixtures && save_mixtures(a->save_mixtures, test, m, dev)) r.failed = true;
    ProbeOptions po = {.epochs = a->probe_epochs, .batch = 256, .lr = 1e-3f, .weight_decay = 1e-5f,
                       .seed = (uint64_t)a->seed, .device = dev};
    r.linear = probe_linear(&ftrain, &ftest, train->n_classes, &po);
    printf("  linear probe: %.2f%%\n", r.linear);
    r.mlp = probe_mlp(&ftrain, &ftest, train->n_classes, &po);
    printf("  MLP probe:    %.2f%%\n", r.mlp);
    r.knn = knn_accuracy(&ftrain, &ftest, train->n_classes, a->knn_k);
    printf("  k-NN (k=%d):  %.2f%%\n", a->knn_k, r.knn);
    r.seconds = now_seconds() - t0;
    free(ftrain.x); free(ftrain.y); free(ftest.x); free(ftest.y);
    return r;
}

static int append_json(FILE *out, const Args *a, const Result *r, bool raw) {
    JsonLine j;
    jsonl_begin(&j, out);
    jsonl_str(&j, "features", raw ? "raw" : a->checkpoint);
    jsonl_str(&j, "dataset", a->common.dataset);
    jsonl_int(&j, "dim", r->dim);
    jsonl_num(&j, "linear", r->linear);
    jsonl_num(&j, "mlp", r->mlp);
    jsonl_num(&j, "knn", r->knn);
    jsonl_int(&j, "knn_k", a->knn_k);
    jsonl_int(&j, "probe_epochs", a->probe_epochs);
    jsonl_num(&j, "seconds", r->seconds);
    return jsonl_end(&j);
}

int main(int argc, char **argv) {
    engine_prefer_passive_wait(argv);
    Args a = parse_args(argc, argv);
    char err[4400];
    FILE *out = NULL;   // opened first: an evaluation whose results cannot be written must not start
    if (a.out_path && !(out = open_output(a.out_path, "a", err, sizeof err))) {
        fprintf(stderr, "eval: %s\n", err);
        return 1;
    }
    driver_check_output("eval", a.save_features);
    driver_check_output("eval", a.save_retrievals);
    driver_check_output("eval", a.save_mixtures);
    Device dev = driver_start("eval", &a.common);
    int rc = 1, n_results = 0;
    Amdim model;
    bool have_model = false;
    Dataset train = {0}, test = {0};
    Result results[2];
    if (a.checkpoint) {
        AmdimConfig cfg;
        if (checkpoint_read_config(a.checkpoint, &cfg, err, sizeof err)) { fprintf(stderr, "eval: %s\n", err); goto done; }
        have_model = true;   // amdim_free is safe after a failed amdim_init
        if (amdim_init(&model, &cfg, dev, 0, err, sizeof err) ||
            checkpoint_load(a.checkpoint, &model, NULL, NULL, err, sizeof err)) {
            fprintf(stderr, "eval: %s\n", err);
            goto done;
        }
        if (a.save_mixtures && (cfg.mixtures < 2 || !model.head7.conv1)) {
            fprintf(stderr, "eval: --save-mixtures: %s was trained without --mixtures (or without the 1->7 task)\n",
                    a.checkpoint);
            goto done;
        }
    }
    if (driver_load("eval", &a.common, "train", &train) || driver_load("eval", &a.common, "test", &test)) goto done;
    if (have_model && (model.cfg.in_channels != train.c || model.cfg.input_size != train.input_size)) {
        fprintf(stderr, "eval: %s expects %d-channel %dx%d inputs, dataset %s gives %d-channel %dx%d\n", a.checkpoint,
                model.cfg.in_channels, model.cfg.input_size, model.cfg.input_size, a.common.dataset, train.c,
                train.input_size, train.input_size);
        goto done;
    }
    if (have_model) results[n_results++] = evaluate(&a, &train, &test, &model, dev);
    if (a.raw) results[n_results++] = evaluate(&a, &train, &test, NULL, dev);
    printf("\n%s, top-1 test accuracy (%d probe epochs, k-NN with k=%d):\n", train.name, a.probe_epochs, a.knn_k);
    printf("| %-28s | %6s | %8s | %7s | %7s |\n", "features", "dim", "linear", "MLP", "k-NN");
    printf("|%.30s|%.8s|%.10s|%.9s|%.9s|\n", "------------------------------", "--------", "----------",
           "---------", "---------");
    for (int i = 0; i < n_results; i++)
        printf("| %-28s | %6d | %7.2f%% | %6.2f%% | %6.2f%% |\n", results[i].features, results[i].dim,
               results[i].linear, results[i].mlp, results[i].knn);
    printf("(peak memory %.0f MiB)\n", peak_rss_mib());
    rc = 0;
    for (int i = 0; i < n_results; i++) if (results[i].failed) rc = 1;
    for (int i = 0; out && i < n_results; i++)
        if (append_json(out, &a, &results[i], i == 1 || !have_model)) {
            fprintf(stderr, "eval: cannot write %s\n", a.out_path);
            rc = 1;
        }
done:
    if (out && fclose(out) && rc == 0) { fprintf(stderr, "eval: cannot write %s\n", a.out_path); rc = 1; }
    dataset_free(&train);
    dataset_free(&test);
    if (have_model) amdim_free(&model);
    return rc;
}
