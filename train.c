// train.c - self-supervised AMDIM training: a thin driver over model/ and data/.
//   build/train --dataset fashion-mnist --preset tiny --epochs 1 --run-dir runs/fmnist
// Writes <run-dir>/log.jsonl (one line per logging step and per epoch) and <run-dir>/checkpoint.safetensors
// (every --ckpt-every seconds and at the end, atomically). --resume continues exactly where the run stopped.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "data/data.h"
#include "model/amdim.h"
#include "model/checkpoint.h"
#include "tensor/device.h"

typedef struct {
    const char *dataset, *data_path, *preset, *run_dir, *device;
    int F, D, d, batch, threads, workers, mixtures, log_every;
    long epochs, steps;
    float lr, mix_tau, mix_alpha;
    int warmup;
    double decay_at[8];   // epochs (fractions allowed) after which the lr is multiplied by 0.2
    int n_decays;
    uint64_t seed;
    double ckpt_every;
    bool resume;
} Args;

static void usage(FILE *out) {
    fprintf(out,
        "usage: train [options]\n"
        "  --dataset NAME     fashion-mnist (default), mnist, cifar10, cifar100, stl10, folder\n"
        "  --data PATH        dataset directory (default for fashion-mnist: /usr/share/datasets/fashion-mnist)\n"
        "  --preset NAME      tiny (default), cifar-small, cifar-large, stl-small, imagenet-small\n"
        "  --F N --D N --d N  override the preset's width, embedding size, units per stage\n"
        "  --batch N          images per step (default 64; each gives two views)\n"
        "  --epochs N         epochs to train (default 1)   --steps N   stop after N steps instead\n"
        "  --lr X             Adam learning rate (default 2e-4)  --warmup N  linear warm-up steps (default 500)\n"
        "  --decay-epochs A,B multiply the lr by 0.2 after each of these epochs, fractions allowed (default none)\n"
        "  --mixtures K       mixture components (default 1 = off)  --mix-tau X (1.0)  --mix-alpha X (0.05)\n"
        "  --seed N           (default 1)  --threads N (default 2)  --workers N  data threads (default 2)\n"
        "  --device cpu|cuda  (default cpu)\n"
        "  --run-dir DIR      where the log and checkpoint go (default runs/default)\n"
        "  --ckpt-every SEC   checkpoint interval in seconds (default 300)  --log-every N  steps (default 20)\n"
        "  --resume           continue from DIR/checkpoint.safetensors\n");
}

static void die(const char *msg) { fprintf(stderr, "train: %s\n", msg); exit(2); }

static long parse_long(const char *flag, const char *v, long lo, long hi) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "train: %s expects an integer in [%ld, %ld], got '%s'\n", flag, lo, hi, v);
        exit(2);
    }
    return x;
}

static float parse_float(const char *flag, const char *v, float lo, float hi) {
    char *end;
    float x = strtof(v, &end);
    if (end == v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "train: %s expects a number in [%g, %g], got '%s'\n", flag, lo, hi, v);
        exit(2);
    }
    return x;
}

// --decay-epochs A,B,...: up to 8 positive numbers
static void parse_decays(Args *a, const char *v) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", v);
    a->n_decays = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        char *end;
        double x = strtod(tok, &end);
        if (end == tok || *end || !(x > 0 && x < 1e6) || a->n_decays == 8) {
            fprintf(stderr, "train: --decay-epochs expects up to 8 positive numbers separated by commas, got '%s'\n", v);
            exit(2);
        }
        a->decay_at[a->n_decays++] = x;
    }
}

static Args parse_args(int argc, char **argv) {
    Args a = {.dataset = "fashion-mnist", .preset = "tiny", .run_dir = "runs/default", .device = "cpu",
              .batch = 64, .threads = 2, .workers = 2, .mixtures = 1, .log_every = 20, .epochs = 1,
              .lr = 2e-4f, .mix_tau = 1.0f, .mix_alpha = 0.05f, .warmup = 500, .seed = 1, .ckpt_every = 300};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) { usage(stdout); exit(0); }
        if (!strcmp(f, "--resume")) { a.resume = true; continue; }
        if (i + 1 >= argc || strncmp(f, "--", 2)) {
            fprintf(stderr, "train: unknown or incomplete option '%s' (see --help)\n", f);
            exit(2);
        }
        const char *v = argv[++i];
        if (!strcmp(f, "--dataset")) a.dataset = v;
        else if (!strcmp(f, "--data")) a.data_path = v;
        else if (!strcmp(f, "--preset")) a.preset = v;
        else if (!strcmp(f, "--run-dir")) a.run_dir = v;
        else if (!strcmp(f, "--device")) a.device = v;
        else if (!strcmp(f, "--F")) a.F = (int)parse_long(f, v, 1, 4096);
        else if (!strcmp(f, "--D")) a.D = (int)parse_long(f, v, 1, 16384);
        else if (!strcmp(f, "--d")) a.d = (int)parse_long(f, v, 1, 64);
        else if (!strcmp(f, "--batch")) a.batch = (int)parse_long(f, v, 2, 65536);
        else if (!strcmp(f, "--epochs")) a.epochs = parse_long(f, v, 1, 100000);
        else if (!strcmp(f, "--steps")) a.steps = parse_long(f, v, 1, 1L << 40);
        else if (!strcmp(f, "--lr")) a.lr = parse_float(f, v, 0, 10);
        else if (!strcmp(f, "--warmup")) a.warmup = (int)parse_long(f, v, 0, 1 << 30);
        else if (!strcmp(f, "--decay-epochs")) parse_decays(&a, v);
        else if (!strcmp(f, "--mixtures")) a.mixtures = (int)parse_long(f, v, 1, 64);
        else if (!strcmp(f, "--mix-tau")) a.mix_tau = parse_float(f, v, 0, 1000);
        else if (!strcmp(f, "--mix-alpha")) a.mix_alpha = parse_float(f, v, 0, 1000);
        else if (!strcmp(f, "--seed")) a.seed = (uint64_t)parse_long(f, v, 0, 1L << 62);
        else if (!strcmp(f, "--threads")) a.threads = (int)parse_long(f, v, 1, 1024);
        else if (!strcmp(f, "--workers")) a.workers = (int)parse_long(f, v, 1, 64);
        else if (!strcmp(f, "--ckpt-every")) a.ckpt_every = parse_float(f, v, 1, 1e9f);
        else if (!strcmp(f, "--log-every")) a.log_every = (int)parse_long(f, v, 1, 1 << 30);
        else { fprintf(stderr, "train: unknown option '%s' (see --help)\n", f); exit(2); }
    }
    if (strcmp(a.device, "cpu") && strcmp(a.device, "cuda")) die("--device must be cpu or cuda");
    AmdimConfig probe;
    if (amdim_config_preset(&probe, a.preset)) {
        fprintf(stderr, "train: unknown preset '%s' (tiny, cifar-small, cifar-large, stl-small, imagenet-small)\n", a.preset);
        exit(2);
    }
    if (!a.data_path) {
        if (!strcmp(a.dataset, "fashion-mnist")) a.data_path = "/usr/share/datasets/fashion-mnist";
        else die("--data PATH is required for this dataset");
    }
    return a;
}

// lr at update t (0-based): linear warm-up, then x0.2 once t has passed each decay point (in epochs of updates)
static float learning_rate(const Args *a, long t, long per_epoch) {
    float lr = a->lr * (a->warmup > 0 && t < a->warmup ? (float)(t + 1) / (float)a->warmup : 1.0f);
    for (int i = 0; i < a->n_decays; i++)
        if (t >= a->decay_at[i] * per_epoch) lr *= 0.2f;
    return lr;
}

static int count_correct(const Tensor *logits, const int *labels, int *n_labeled) {
    int N = logits->shape[0], K = logits->shape[1], correct = 0;
    float *h = xmalloc((size_t)N * K * sizeof(float));
    tensor_copy_to_host(logits, h);
    for (int i = 0; i < N; i++) {
        if (labels[i % (N / 2)] < 0) continue;  // rows are the two views of the same B labels
        int best = 0;
        for (int k = 1; k < K; k++) if (h[i * K + k] > h[i * K + best]) best = k;
        correct += best == labels[i % (N / 2)];
        (*n_labeled)++;
    }
    free(h);
    return correct;
}

int main(int argc, char **argv) {
    engine_prefer_passive_wait(argv);
    Args a = parse_args(argc, argv);
    char err[512];
    engine_set_threads(a.threads);
    Device dev = strcmp(a.device, "cuda") ? DEV_CPU : DEV_CUDA;
    if (dev == DEV_CUDA && !dev_cuda_available()) die("--device cuda: this build has no CUDA or no GPU was found");

    Dataset ds;
    const char *split = !strcmp(a.dataset, "stl10") ? "train+unlabeled" : "train";
    if (dataset_load(&ds, a.dataset, a.data_path, split, err, sizeof err)) { fprintf(stderr, "train: %s\n", err); return 1; }
    if (ds.n < a.batch) {
        fprintf(stderr, "train: dataset has %d images, fewer than one batch of %d\n", ds.n, a.batch);
        dataset_free(&ds);
        return 1;
    }

    // model: preset, flag overrides, input channels and size from the data
    AmdimConfig cfg;
    amdim_config_preset(&cfg, a.preset);
    if (a.F) cfg.F = a.F;
    if (a.D) cfg.D = a.D;
    if (a.d) cfg.d = a.d;
    cfg.in_channels = ds.c;
    cfg.input_size = ds.input_size;
    cfg.n_classes = ds.n_classes;
    cfg.mixtures = a.mixtures;
    cfg.mix_tau = a.mix_tau;
    cfg.mix_alpha = a.mix_alpha;
    Amdim model;
    if (amdim_init(&model, &cfg, dev, a.seed, err, sizeof err)) {
        fprintf(stderr, "train: %s\n", err);
        amdim_free(&model);
        dataset_free(&ds);
        return 2;
    }
    Adam opt;
    int rc = 0;
    adam_init(&opt, &model.ps, a.lr, 0.8f, 0.999f, 1e-8f, 1e-5f);

    if (mkdir(a.run_dir, 0755) && errno != EEXIST) {
        fprintf(stderr, "train: cannot create run directory %s: %s\n", a.run_dir, strerror(errno));
        rc = 1;
        goto cleanup_model;
    }
    char ckpt_path[1024], log_path[1024];
    snprintf(ckpt_path, sizeof ckpt_path, "%s/checkpoint.safetensors", a.run_dir);
    snprintf(log_path, sizeof log_path, "%s/log.jsonl", a.run_dir);
    TrainState st = {.seed = a.seed};
    snprintf(st.dataset, sizeof st.dataset, "%s", a.dataset);
    if (a.resume) {
        if (checkpoint_load(ckpt_path, &model, &opt, &st, err, sizeof err)) {
            fprintf(stderr, "train: %s\n", err);
            rc = 1;
            goto cleanup_model;
        }
        if (st.seed != a.seed || strcmp(st.dataset, a.dataset)) {
            fprintf(stderr, "train: %s was made with --seed %llu --dataset %s; resume with the same flags\n", ckpt_path,
                    (unsigned long long)st.seed, st.dataset);
            rc = 2;
            goto cleanup_model;
        }
    }
    FILE *log = fopen(log_path, a.resume ? "a" : "w");
    if (!log) {
        fprintf(stderr, "train: cannot write %s: %s\n", log_path, strerror(errno));
        rc = 1;
        goto cleanup_model;
    }

    Loader *loader = loader_new(&ds, LOADER_TRAIN_PAIRS, a.batch, a.seed, a.workers);
    loader_seek(loader, st.epoch, st.position);
    long per_epoch = loader_batches_per_epoch(loader);
    long total_steps = a.steps ? a.steps : a.epochs * per_epoch;

    char info[256];
    engine_describe(info, sizeof info);
    printf("%s\n", info);
    printf("dataset %s: %d images %dx%dx%d, %d classes | model %s F=%d D=%d d=%d mixtures=%d, %ld parameters | "
           "batch %d, %ld steps (%ld per epoch)%s\n",
           ds.name, ds.n, ds.c, ds.h, ds.w, ds.n_classes, cfg.preset, cfg.F, cfg.D, cfg.d, cfg.mixtures,
           model.ps.total, a.batch, total_steps, per_epoch, a.resume ? ", resumed" : "");

    int S = ds.input_size, C = ds.c, B = a.batch;
    Tensor *x1 = tensor_new(dev, SHAPE(B, C, S, S)), *x2 = tensor_new(dev, SHAPE(B, C, S, S));
    int *idx1 = xmalloc((size_t)B * sizeof(int)), *idx2 = xmalloc((size_t)B * sizeof(int));
    double t_start = now_seconds(), t_last_ckpt = t_start, t_window = t_start, wait_window = 0;
    long steps_window = 0, epoch_correct_lin = 0, epoch_correct_mlp = 0, epoch_labeled = 0;
    long start_step = st.step;
    while (st.step < total_steps) {
        double wait0 = loader_wait_seconds(loader);
        Batch *batch;
        loader_next(loader, &batch);
        wait_window += loader_wait_seconds(loader) - wait0;
        tensor_copy_from_host(x1, batch->x1);
        tensor_copy_from_host(x2, batch->x2);
        // per-step randomness (5x5 source locations, dropout) from (seed, step): resumes reproduce it exactly
        Rng rng;
        rng_seed(&rng, a.seed * 1000003ull + (uint64_t)st.step);
        for (int i = 0; i < B; i++) { idx1[i] = rng_int(&rng, 25); idx2[i] = rng_int(&rng, 25); }

        paramset_zero_grad(&model.ps);
        AmdimLoss L = amdim_loss(&model, x1, x2, batch->labels, idx1, idx2, &rng);
        backward(L.total);
        opt.lr = learning_rate(&a, st.step, per_epoch);
        adam_update(&opt, &model.ps);
        float total = tensor_item(L.total);
        int n_lab = 0;
        epoch_correct_lin += count_correct(L.lin_logits, batch->labels, &n_lab);
        epoch_correct_mlp += count_correct(L.mlp_logits, batch->labels, &n_lab);
        epoch_labeled += n_lab / 2;
        st.step++;
        st.epoch = batch->epoch;
        st.position = batch->position + B;
        if (st.position >= per_epoch * B) { st.epoch++; st.position = 0; }
        steps_window++;
        if (!isfinite(total)) {
            fprintf(stderr, "train: loss is %f at step %ld; stopping (last checkpoint kept at %s)\n", total, st.step, ckpt_path);
            rc = 3;
            tape_clear();
            break;
        }
        bool epoch_end = st.position == 0;
        if (st.step % a.log_every == 0 || epoch_end || st.step == total_steps) {
            double t = now_seconds(), dt = t - t_window;
            double img_s = steps_window * B / dt, eta = (total_steps - st.step) * dt / steps_window;
            float l1t5 = tensor_item(L.l1t5), l1t7 = tensor_item(L.l1t7), l5t5 = tensor_item(L.l5t5);
            float reg = tensor_item(L.reg), cls = tensor_item(L.cls);
            printf("\rstep %ld/%ld ep %ld loss %.4f (1t5 %.3f 1t7 %.3f 5t5 %.3f reg %.3f cls %.3f) lr %.2e "
                   "%.1f img/s data-wait %.0f%% ETA %.0fs   ",
                   st.step, total_steps, batch->epoch, total, l1t5, l1t7, l5t5, reg, cls, opt.lr, img_s,
                   100 * wait_window / dt, eta);
            fflush(stdout);
            fprintf(log, "{\"step\":%ld,\"epoch\":%ld,\"loss\":%.9g,\"l1t5\":%.9g,\"l1t7\":%.9g,\"l5t5\":%.9g,"
                         "\"reg\":%.9g,\"cls\":%.9g,\"lr\":%.7g,\"img_s\":%.2f,\"step_s\":%.4f,\"data_wait_s\":%.4f}\n",
                    st.step, batch->epoch, total, l1t5, l1t7, l5t5, reg, cls, opt.lr, img_s, dt / steps_window,
                    wait_window / steps_window);
            fflush(log);
            t_window = t;
            wait_window = 0;
            steps_window = 0;
        }
        tape_clear();
        if (epoch_end) {
            double lin = epoch_labeled ? 100.0 * epoch_correct_lin / epoch_labeled : 0;
            double mlp = epoch_labeled ? 100.0 * epoch_correct_mlp / epoch_labeled : 0;
            printf("\nepoch %ld done: online probes on the augmented training views: linear %.2f%%, MLP %.2f%%\n",
                   st.epoch - 1, lin, mlp);
            fprintf(log, "{\"epoch_end\":%ld,\"step\":%ld,\"online_linear_acc\":%.4f,\"online_mlp_acc\":%.4f}\n",
                    st.epoch - 1, st.step, lin, mlp);
            fflush(log);
            epoch_correct_lin = epoch_correct_mlp = epoch_labeled = 0;
        }
        if (now_seconds() - t_last_ckpt > a.ckpt_every && st.step < total_steps) {
            if (checkpoint_save(ckpt_path, &model, &opt, &st, err, sizeof err)) { fprintf(stderr, "\ntrain: %s\n", err); rc = 1; break; }
            t_last_ckpt = now_seconds();
        }
    }
    if (rc == 0) {
        if (checkpoint_save(ckpt_path, &model, &opt, &st, err, sizeof err)) { fprintf(stderr, "\ntrain: %s\n", err); rc = 1; }
        else printf("\ntrained %ld steps in %.1fs; checkpoint: %s\n", st.step - start_step, now_seconds() - t_start, ckpt_path);
    }
    fclose(log);
    free(idx1);
    free(idx2);
    tensor_free(x1);
    tensor_free(x2);
    loader_free(loader);
cleanup_model:
    adam_free(&opt);
    amdim_free(&model);
    dataset_free(&ds);
    return rc;
}
