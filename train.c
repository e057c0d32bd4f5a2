// train.c - self-supervised AMDIM training: a thin driver over model/ and data/.
//   build/train --dataset fashion-mnist --preset tiny --minutes 8 --run-dir runs/fm
// Writes <run-dir>/log.jsonl (one line per logging step and per epoch) and <run-dir>/checkpoint.safetensors
// (every --ckpt-every seconds and at the end, atomically). --resume continues exactly where the run stopped.
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/inspect.h"
#include "comm/comm.h"
#include "driver.h"
#include "io/image.h"
#include "io/output.h"
#include "model/amdim.h"
#include "model/checkpoint.h"

#define LR_DECAY 0.2f              // each --decay-at point multiplies the learning rate by this (official x0.2)
#define MEASURE_SKIP_STEPS 10      // --minutes: steps left out of the speed measurement (first allocations, caches)
#define MEASURE_SECONDS 20.0       // --minutes: how long the speed is measured before the step count is fixed,
#define MEASURE_SHARE 0.05         //   or this share of the budget when that is shorter

typedef struct {
    CommonArgs common;
    const char *preset, *run_dir, *dump_graph, *save_views;
    int F, D, d, batch, workers, mixtures, log_every, warmup, views, cpc_steps;
    const char *method, *tasks;    // --method amdim|dim|cpc; --tasks: AMDIM's tasks, "1t5,1t7,5t5"
    long epochs, steps, seed, profile;
    double minutes, ckpt_every;
    float lr, mix_tau, mix_alpha;
    NumberList decay_at;           // fractions of the run after which the lr is multiplied by LR_DECAY
    bool resume;
    bool count_given;              // --steps or --epochs was on the command line
} Args;

// Everything one training run holds.
typedef struct {
    Args a;
    Device dev;
    Dataset ds;
    Amdim model;
    Adam opt;
    Loader *loader;
    TrainState st;
    long per_epoch;                // steps per epoch (drop_last)
    FILE *log;
    char ckpt_path[4096], log_path[4096];
    Tensor *x1, *x2;               // (b, C, S, S) the two views on the device: headers on the uploaders' buffers
    int *idx1, *idx2;              // (B) 5x5 source locations of the 5->5 task
    // the next batch, fetched and uploaded while the step before it runs (tensor/device.h, Uploader)
    Uploader *up1, *up2;
    struct { bool ready; void *x1, *x2; int *labels; long epoch, position; } next;
    int *labels[2];                // (B) two label buffers: the step's and the prefetched batch's
    // --minutes: the step count is not fixed until the speed has been measured
    long measure_from_step;
    double measure_from_time;
    // the current logging window and epoch
    double window_start, window_wait, session_start;
    long window_steps, epoch_correct_lin, epoch_correct_mlp, epoch_labeled;
    long checkpoint_step;          // step of the checkpoint on disk, -1 when none has been written
    // data-parallel (comm/): decisions every process takes together, agreed after each step
    int stop_all;                  // a stop signal reached some process: 0 or the signal
    bool checkpoint_due, fix_due;  // the lead process's clock says: checkpoint now / fix the --minutes count now
    double last_checkpoint_time;
    long session_steps;            // steps done by this process
    Profile profile;               // --profile
} Run;

// Data-parallel: every process runs this loop on its share of each batch; the lead process (rank 0) alone writes
// the log, the checkpoints and the pictures, and its clock decides when to checkpoint.
static bool lead(void) { return comm_rank() == 0; }

// SIGINT / SIGTERM: the loop finishes its step, writes a checkpoint and exits 128 + the signal. A second signal
// while that happens exits at once (the checkpoint on disk is still whole: it is replaced by a rename).
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) {
    if (stop_signal) _exit(128 + sig);
    stop_signal = sig;
}

static void catch_stop_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

#define MAX_TERMS 6
typedef struct {                   // the scalars of one step
    float total, lr;
    struct { const char *key; float value; } terms[MAX_TERMS];   // the loss terms the method computes
    int n_terms;
    long epoch;                    // epoch the batch came from
} StepStats;

// "1t5,1t7" -> TASK_1T5 | TASK_1T7, or -1
static int parse_tasks(const char *list) {
    char buf[64];
    if (snprintf(buf, sizeof buf, "%s", list) >= (int)sizeof buf) return -1;
    int mask = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (!strcmp(tok, "1t5")) mask |= TASK_1T5;
        else if (!strcmp(tok, "1t7")) mask |= TASK_1T7;
        else if (!strcmp(tok, "5t5")) mask |= TASK_5T5;
        else return -1;
    }
    return mask ? mask : -1;
}

static Args parse_args(int argc, char **argv) {
    Args a = {.common = COMMON_ARGS_DEFAULT, .preset = "tiny", .method = "amdim", .tasks = "1t5,1t7,5t5", .views = 2,
              .cpc_steps = 3, .run_dir = "runs/default", .batch = 64, .workers = 2,
              .mixtures = 1, .log_every = 20, .epochs = 1, .lr = 2e-4f, .mix_tau = 1.0f, .mix_alpha = 0.05f,
              .warmup = 500, .seed = 1, .ckpt_every = 300};
    Flag flags[] = {
        COMMON_FLAGS(&a.common),
        {"--preset", FLAG_STRING, &a.preset, 0, 0, "NAME", "tiny, cifar-small, cifar-large, stl-small, imagenet-small", 0},
        {"--F", FLAG_INT, &a.F, 1, 4096, "N", "base width F (default: the preset's)", 0},
        {"--D", FLAG_INT, &a.D, 1, 16384, "N", "embedding width D (default: the preset's)", 0},
        {"--d", FLAG_INT, &a.d, 1, AMDIM_MAX_UNITS, "N", "residual units per stage (default: the preset's)", 0},
        {"--batch", FLAG_INT, &a.batch, 2, 65536, "N", "images per step, each giving two views", 0},
        {"--epochs", FLAG_LONG, &a.epochs, 1, 100000, "N", "length of the run in epochs", 0},
        {"--steps", FLAG_LONG, &a.steps, 1, 1e12, "N", "length of the run in steps (instead of --epochs)", 0},
        {"--minutes", FLAG_DOUBLE, &a.minutes, 0.05, 1e6, "M", "train for about M minutes: the step count is fixed from "
         "the speed measured after warm-up, logged, and kept on --resume", 0},
        {"--lr", FLAG_FLOAT, &a.lr, 0, 10, "X", "Adam learning rate", 0},
        {"--warmup", FLAG_INT, &a.warmup, 0, 1 << 30, "N", "linear learning-rate warm-up steps", 0},
        {"--decay-at", FLAG_NUMBERS, &a.decay_at, 1e-9, 1, "F,..", "multiply the lr by 0.2 after each of these "
         "fractions of the run (default: none)", 0},
        {"--method", FLAG_STRING, &a.method, 0, 0, "NAME", "amdim; dim (local Deep InfoMax: f1 against the 7x7 map of "
         "one view); cpc (patches predicted from the rows above)", 0},
        {"--tasks", FLAG_STRING, &a.tasks, 0, 0, "LIST", "amdim: the tasks, any of 1t5,1t7,5t5 (ablation: 1t7 alone = "
         "no multiscale)", 0},
        {"--views", FLAG_INT, &a.views, 1, 2, "N", "amdim: 2 = across two views; 1 = sources and targets from one view "
         "(ablation: no cross-view)", 0},
        {"--cpc-steps", FLAG_INT, &a.cpc_steps, 1, CPC_MAX_STEPS, "K", "cpc: predict 1..K rows below", 0},
        {"--mixtures", FLAG_INT, &a.mixtures, 1, 64, "K", "mixture components (1 = off, the official objective)", 0},
        {"--mix-tau", FLAG_FLOAT, &a.mix_tau, 0, 1000, "X", "mixture softmax temperature", 0},
        {"--mix-alpha", FLAG_FLOAT, &a.mix_alpha, 0, 1000, "X", "weight of the mixture entropy term", 0},
        {"--seed", FLAG_LONG, &a.seed, 0, 9007199254740992.0, "N", "seeds weights, data order and augmentations", 0},
        {"--workers", FLAG_INT, &a.workers, 1, 64, "N", "data loader threads", 0},
        {"--run-dir", FLAG_STRING, &a.run_dir, 0, 0, "DIR", "where log.jsonl and checkpoint.safetensors go (made if "
         "missing)", 0},
        {"--ckpt-every", FLAG_DOUBLE, &a.ckpt_every, 0, 1e9, "SEC", "seconds between checkpoints (0: after every step)",
         0},
        {"--log-every", FLAG_INT, &a.log_every, 1, 1 << 30, "N", "steps between log lines", 0},
        {"--resume", FLAG_SWITCH, &a.resume, 0, 0, NULL, "continue from DIR/checkpoint.safetensors", 0},
        {"--profile", FLAG_LONG, &a.profile, 1, 1e6, "N", "time every op over the N steps after the first and print a "
         "table by op type", 0},
        {"--save-views", FLAG_STRING, &a.save_views, 0, 0, "FILE", "write a PNG of the first batch: 8 source images, "
         "each beside its two augmented views as the model sees them", 0},
        {"--dump-graph", FLAG_STRING, &a.dump_graph, 0, 0, "FILE", "write the autograd graph of one step as Graphviz "
         "DOT (the last profiled step with --profile, else the first)", 0},
    };
    int n = (int)(sizeof flags / sizeof flags[0]);
    flags_parse("train", "[options]", flags, n, argc, argv);
    a.count_given = flag_given(flags, n, "--steps") || flag_given(flags, n, "--epochs");
    if (a.views == 1 && !flag_given(flags, n, "--tasks")) a.tasks = "1t5,1t7";   // 5->5 needs two views
    if (a.count_given && a.minutes > 0) {
        fprintf(stderr, "train: give --minutes or --steps/--epochs, not both\n");
        exit(2);
    }
    if (method_from_name(a.method) < 0) {
        fprintf(stderr, "train: unknown method '%s' (amdim, dim, cpc)\n", a.method);
        exit(2);
    }
    if (parse_tasks(a.tasks) < 0) {
        fprintf(stderr, "train: --tasks expects a list of 1t5, 1t7, 5t5, got '%s'\n", a.tasks);
        exit(2);
    }
    AmdimConfig probe;
    if (amdim_config_preset(&probe, a.preset)) {
        fprintf(stderr, "train: unknown preset '%s' (tiny, cifar-small, cifar-large, stl-small, imagenet-small)\n",
                a.preset);
        exit(2);
    }
    return a;
}

// lr at update t (0-based): linear warm-up, then x LR_DECAY from each decay point on (fractions of total steps;
// none while the run's length is not fixed yet)
static float learning_rate(const Args *a, long t, long total_steps) {
    float lr = a->lr * (a->warmup > 0 && t < a->warmup ? (float)(t + 1) / (float)a->warmup : 1.0f);
    for (int i = 0; i < a->decay_at.n && total_steps > 0; i++)
        if (t >= (long)(a->decay_at.v[i] * (double)total_steps)) lr *= LR_DECAY;
    return lr;
}

// Keeps only the lines of log.jsonl up to `step`: the steps a resumed run does again appear once.
static int trim_log(const char *path, long step, char *err, int err_size) {
    FILE *in = fopen(path, "r");
    if (!in) return 0;   // no log yet
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *out = open_output(tmp, "w", err, err_size);
    if (!out) { fclose(in); return -1; }
    char line[4096];
    while (fgets(line, sizeof line, in)) {
        const char *s = strstr(line, "\"step\":");
        if (!strchr(line, '\n')) continue;   // a line cut short when the run was killed
        if (s && strtol(s + 7, NULL, 10) > step) continue;
        fputs(line, out);
    }
    fclose(in);
    if (fclose(out) || rename(tmp, path)) {
        snprintf(err, (size_t)err_size, "cannot rewrite %s for the resume", path);
        remove(tmp);
        return -1;
    }
    return 0;
}

// the --decay-at list as text, "" for none
static void decay_text(const NumberList *l, char *buf, size_t size) {
    buf[0] = '\0';
    for (int i = 0, n = 0; i < l->n && n < (int)size; i++) n += snprintf(buf + n, size - (size_t)n, i ? ",%g" : "%g", l->v[i]);
}

// A resume continues the run its checkpoint holds, so the flags that shape the run must be those it was made with
// (the model's own flags are checked against the stored config by checkpoint_load). Free to change: --steps,
// --epochs, --minutes (the length; a decay point moves with it), --threads, --workers, --log-every, --ckpt-every,
// --data (where the same dataset lies) and --device.
static int refuse_resume(const Run *r, const char *flag, const char *was, const char *now) {
    fprintf(stderr, "train: %s was made with %s %s, this command gives %s %s (resume with the run's flags, or start a "
            "new --run-dir)\n", r->ckpt_path, flag, was, flag, now);
    return -1;
}

static int check_resume_flags(const Run *r) {
    const Args *a = &r->a;
    const TrainState *st = &r->st;
    char was[64], now[64];
    if (st->seed != (uint64_t)a->seed) {
        snprintf(was, sizeof was, "%llu", (unsigned long long)st->seed);
        snprintf(now, sizeof now, "%ld", a->seed);
        return refuse_resume(r, "--seed", was, now);
    }
    if (strcmp(st->dataset, a->common.dataset)) return refuse_resume(r, "--dataset", st->dataset, a->common.dataset);
    if (!st->batch) return 0;   // a checkpoint from before the run's flags were recorded
    if (st->batch != a->batch) {
        snprintf(was, sizeof was, "%d", st->batch);
        snprintf(now, sizeof now, "%d", a->batch);
        return refuse_resume(r, "--batch", was, now);
    }
    if (st->lr != a->lr) {
        snprintf(was, sizeof was, "%g", (double)st->lr);
        snprintf(now, sizeof now, "%g", (double)a->lr);
        return refuse_resume(r, "--lr", was, now);
    }
    if (st->warmup != a->warmup) {
        snprintf(was, sizeof was, "%d", st->warmup);
        snprintf(now, sizeof now, "%d", a->warmup);
        return refuse_resume(r, "--warmup", was, now);
    }
    decay_text(&a->decay_at, now, sizeof now);
    if (strcmp(st->decay_at, now))
        return refuse_resume(r, "--decay-at", st->decay_at[0] ? st->decay_at : "(none)", now[0] ? now : "(none)");
    return 0;
}

// Data-parallel: the lead's state (parameters, BN statistics, Adam's moments and step, the train state; whether it
// resumed or initialised) becomes every process's, so they start as one.
static void share_state(Run *r) {
    ParamSet *ps = &r->model.ps;
    Tensor *blocks[3] = {ps->data, r->opt.m, r->opt.v};
    float *h = xmalloc((size_t)ps->total * sizeof(float));
    for (int k = 0; k < 3; k++) {
        tensor_copy_to_host(blocks[k], h);
        comm_broadcast_host(h, (size_t)ps->total * sizeof(float), 0);
        tensor_copy_from_host(blocks[k], h);
    }
    free(h);
    comm_broadcast_host(&r->opt.t, sizeof r->opt.t, 0);
    comm_broadcast_host(&r->st, sizeof r->st, 0);
    comm_broadcast_host(&r->checkpoint_step, sizeof r->checkpoint_step, 0);
}

// Builds the model, the optimiser, the outputs and the loader; resumes when asked. Returns an exit status.
static int run_open(Run *r, int argc, char **argv) {
    memset(r, 0, sizeof *r);
    r->a = parse_args(argc, argv);
    r->checkpoint_step = -1;
    Args *a = &r->a;
    char err[4400];
    // outputs first: a run that cannot write its results must not start
    snprintf(r->ckpt_path, sizeof r->ckpt_path, "%s/checkpoint.safetensors", a->run_dir);
    snprintf(r->log_path, sizeof r->log_path, "%s/log.jsonl", a->run_dir);
    if (lead()) {
        if (make_dirs(a->run_dir, err, sizeof err)) { fprintf(stderr, "train: %s\n", err); return 1; }
        r->log = open_output(r->log_path, "a", err, sizeof err);
        if (!r->log) { fprintf(stderr, "train: %s\n", err); return 1; }
        driver_check_output("train", a->save_views);
        driver_check_output("train", a->dump_graph);
    }
    if (a->batch % comm_size()) {
        fprintf(stderr, "train: --batch %d does not split over %d processes\n", a->batch, comm_size());
        return 2;
    }
    r->dev = driver_start("train", &a->common);
    comm_init_device(r->dev);
    const char *split = !strcmp(a->common.dataset, "stl10") ? "train+unlabeled" : "train";
    if (driver_load("train", &a->common, split, &r->ds)) return 1;
    if (r->ds.n < a->batch) {
        fprintf(stderr, "train: dataset has %d images, fewer than one batch of %d\n", r->ds.n, a->batch);
        return 1;
    }
    AmdimConfig cfg;   // the preset, the flags' overrides, and the input's channels and size from the data
    amdim_config_preset(&cfg, a->preset);
    if (a->F) cfg.F = a->F;
    if (a->D) cfg.D = a->D;
    if (a->d) cfg.d = a->d;
    cfg.in_channels = r->ds.c;
    cfg.input_size = r->ds.input_size;
    cfg.n_classes = r->ds.n_classes;
    cfg.mixtures = a->mixtures;
    cfg.mix_tau = a->mix_tau;
    cfg.mix_alpha = a->mix_alpha;
    cfg.method = method_from_name(a->method);
    cfg.tasks = cfg.method == METHOD_DIM ? TASK_1T7 : parse_tasks(a->tasks);   // DIM: 1->7 on one view, by definition
    cfg.views = cfg.method == METHOD_DIM ? 1 : a->views;
    cfg.cpc_steps = a->cpc_steps;
    if (amdim_init(&r->model, &cfg, r->dev, (uint64_t)a->seed, err, sizeof err)) {
        fprintf(stderr, "train: %s\n", err);
        return 2;
    }
    amdim_adam_init(&r->opt, &r->model, a->lr);
    r->st.seed = (uint64_t)a->seed;
    snprintf(r->st.dataset, sizeof r->st.dataset, "%s", a->common.dataset);
    r->st.batch = a->batch;
    r->st.warmup = a->warmup;
    r->st.lr = a->lr;
    decay_text(&a->decay_at, r->st.decay_at, sizeof r->st.decay_at);
    r->checkpoint_step = -1;
    if (a->resume && lead()) {   // the lead reads the checkpoint; the others get its state below
        if (checkpoint_load(r->ckpt_path, &r->model, &r->opt, &r->st, err, sizeof err)) {
            fprintf(stderr, "train: %s\n", err);
            return 1;
        }
        if (check_resume_flags(r)) return 2;
        r->checkpoint_step = r->st.step;
        // the log keeps each step once: lines past the checkpoint go, and appending starts on the trimmed file
        fclose(r->log);
        if (trim_log(r->log_path, r->st.step, err, sizeof err) ||
            !(r->log = open_output(r->log_path, "a", err, sizeof err))) {
            fprintf(stderr, "train: %s\n", err);
            return 1;
        }
    }
    if (comm_size() > 1) share_state(r);
    r->loader = loader_new(&r->ds, LOADER_TRAIN_PAIRS, a->batch, (uint64_t)a->seed, a->workers);
    if (comm_size() > 1) loader_set_shard(r->loader, comm_rank(), comm_size());   // rows of each batch: this rank's
    r->per_epoch = loader_batches_per_epoch(r->loader);
    if (r->st.position % a->batch || r->st.position / a->batch >= r->per_epoch) {
        fprintf(stderr, "train: %s: data position %ld does not fit this dataset (%d images, %ld batches of %d per "
                "epoch): another dataset or data folder?\n", r->ckpt_path, r->st.position, r->ds.n, r->per_epoch,
                a->batch);
        return 1;
    }
    loader_seek(r->loader, r->st.epoch, r->st.position);
    // The run's length. A resumed run keeps the count its checkpoint fixed (also one --minutes measured) unless
    // --steps or --epochs asks for another; --minutes without a fixed count measures what is left of the budget.
    if (!(a->resume && r->st.total_steps > 0 && !a->count_given)) {
        r->st.total_steps = a->minutes > 0 ? 0 : a->steps ? a->steps : a->epochs * r->per_epoch;
        if (a->minutes > 0 && r->st.train_seconds >= a->minutes * 60) r->st.total_steps = r->st.step;
    }
    if (lead() && !a->resume && !(r->log = freopen(r->log_path, "w", r->log))) {   // a fresh run: a fresh log
        fprintf(stderr, "train: cannot write %s\n", r->log_path);
        return 1;
    }
    int S = r->ds.input_size, C = r->ds.c, B = a->batch, b = B / comm_size();   // b: this process's share
    r->x1 = tensor_header(r->dev, SHAPE(b, C, S, S));
    r->x2 = tensor_header(r->dev, SHAPE(b, C, S, S));
    r->up1 = uploader_new(r->dev, (size_t)r->x1->numel * sizeof(float), 2);
    r->up2 = uploader_new(r->dev, (size_t)r->x2->numel * sizeof(float), 2);
    r->labels[0] = xmalloc((size_t)B * sizeof(int));
    r->labels[1] = xmalloc((size_t)B * sizeof(int));
    r->idx1 = xmalloc((size_t)B * sizeof(int));
    r->idx2 = xmalloc((size_t)B * sizeof(int));
    char total[32];
    if (r->st.total_steps) snprintf(total, sizeof total, "%ld steps", r->st.total_steps);
    else snprintf(total, sizeof total, "%g minutes", a->minutes);
    printf("dataset %s: %d images %dx%dx%d, %d classes | model %s F=%d D=%d d=%d mixtures=%d, %ld parameters | "
           "batch %d, %s (%ld steps per epoch)%s\n", r->ds.name, r->ds.n, r->ds.c, r->ds.h, r->ds.w,
           r->ds.n_classes, cfg.preset, cfg.F, cfg.D, cfg.d, cfg.mixtures, r->model.ps.total, B, total, r->per_epoch,
           a->resume ? ", resumed" : "");
    return 0;
}

static void run_close(Run *r) {
    if (r->log) fclose(r->log);
    free(r->idx1);
    free(r->idx2);
    if (r->x1) r->x1->data = NULL;   // the uploaders' buffers
    if (r->x2) r->x2->data = NULL;
    tensor_free(r->x1);
    tensor_free(r->x2);
    uploader_free(r->up1);
    uploader_free(r->up2);
    free(r->labels[0]);
    free(r->labels[1]);
    if (r->loader) loader_free(r->loader);
    adam_free(&r->opt);
    amdim_free(&r->model);
    dataset_free(&r->ds);
}

// correct top-1 predictions of logits (V*B, K) for the B labels of each of V views; counts labelled rows
static long count_correct(const Tensor *logits, const int *labels, int B, long *n_labeled) {
    int N = logits->shape[0], K = logits->shape[1];
    long correct = 0;
    float *h = xmalloc((size_t)N * K * sizeof(float));
    tensor_copy_to_host(logits, h);
    for (int i = 0; i < N; i++) {
        int y = labels[i % B];   // rows are the views of the same B images
        if (y < 0) continue;
        int best = 0;
        for (int k = 1; k < K; k++) if (h[i * K + k] > h[i * K + best]) best = k;
        correct += best == y;
        (*n_labeled)++;
    }
    free(h);
    return correct;
}

// --profile N: this process's steps 2 .. N+1 (the first allocates everything and is not typical)
static bool profiled_step(const Run *r) {
    return r->a.profile > 0 && r->session_steps >= 1 && r->session_steps <= r->a.profile;
}

// --dump-graph: the tape of one step, drawn after its backward
static void dump_graph(const Run *r) {
    char err[4400], title[160];
    FILE *f = open_output(r->a.dump_graph, "w", err, sizeof err);
    snprintf(title, sizeof title, "one AMDIM training step (step %ld, batch %d, preset %s)", r->st.step + 1, r->a.batch,
             r->model.cfg.preset);
    if (!f || graph_write_dot(f, title)) fprintf(stderr, "train: %s\n", f ? "cannot write the graph" : err);
    else printf("%sgraph of step %ld: %s (render: dot -Tsvg %s -o graph.svg)\n", isatty(STDOUT_FILENO) ? "\n" : "",
                r->st.step + 1, r->a.dump_graph, r->a.dump_graph);
    if (f) fclose(f);
}

#define VIEWS_ROWS 8

// --save-views: rows of (source with the test transform, view 1, view 2) for the first images of a batch
static void save_views(const Run *r, const Batch *batch) {
    const Dataset *ds = &r->ds;
    int rows = batch->batch < VIEWS_ROWS ? batch->batch : VIEWS_ROWS, S = ds->input_size;
    long img = (long)ds->c * S * S;
    float *cells = xmalloc((size_t)(3 * rows) * img * sizeof(float)), *src = xmalloc((size_t)img * sizeof(float));
    for (int i = 0; i < rows; i++) {
        transform_test(ds, batch->indices[i], src);
        driver_unnormalise(ds, src, cells + (3L * i) * img);
        driver_unnormalise(ds, batch->x1 + i * img, cells + (3L * i + 1) * img);
        driver_unnormalise(ds, batch->x2 + i * img, cells + (3L * i + 2) * img);
    }
    Grid g = {.rows = rows, .cols = 3, .c = ds->c, .h = S, .w = S, .zoom = S <= 32 ? 4 : S <= 64 ? 2 : 1, .pad = 2};
    char err[4400];
    FILE *probe = open_output(r->a.save_views, "wb", err, sizeof err);   // makes the folder, checks it is writable
    if (probe) fclose(probe);
    if (!probe || png_write_grid(r->a.save_views, cells, NULL, &g, err, sizeof err))
        fprintf(stderr, "train: %s\n", err);
    else printf("views of the first batch (source, view 1, view 2): %s\n", r->a.save_views);
    free(cells);
    free(src);
}

// Data-parallel: one all-reduce after every step makes the logged scalars those of the whole batch (the mean of the
// processes' losses, the sum of their counts) and the decisions common: stop if any process got a signal,
// checkpoint / fix the --minutes count when the lead's clock says so.
static void share_step(Run *r, StepStats *s, long *lin, long *mlp, long *n_lab) {
    int n = s->n_terms;
    float v[MAX_TERMS + 7];
    v[0] = s->total;
    for (int i = 0; i < n; i++) v[1 + i] = s->terms[i].value;
    double now = now_seconds(), window = fmin(MEASURE_SECONDS, MEASURE_SHARE * 60 * r->a.minutes);
    v[n + 1] = (float)*lin;
    v[n + 2] = (float)*mlp;
    v[n + 3] = (float)*n_lab;
    v[n + 4] = (float)stop_signal;
    v[n + 5] = lead() && now - r->last_checkpoint_time >= r->a.ckpt_every;
    v[n + 6] = lead() && r->st.total_steps == 0 && r->measure_from_step >= 0 && now - r->measure_from_time >= window;
    comm_allreduce_sum(v, n + 7, DEV_CPU);
    float P = (float)comm_size();
    s->total = v[0] / P;
    for (int i = 0; i < n; i++) s->terms[i].value = v[1 + i] / P;
    *lin = (long)v[n + 1];
    *mlp = (long)v[n + 2];
    *n_lab = (long)v[n + 3];
    r->stop_all = v[n + 4] > 0 ? (stop_signal ? stop_signal : SIGTERM) : 0;
    r->checkpoint_due = v[n + 5] > 0;
    r->fix_due = v[n + 6] > 0;
}

// Fetches the next batch and starts its upload; the loader's batch is valid only until the next call, so its labels
// and place are copied (the views are staged in pinned memory by uploader_put).
static void prefetch(Run *r) {
    Batch *batch;
    double wait0 = loader_wait_seconds(r->loader);
    loader_next(r->loader, &batch);
    r->window_wait += loader_wait_seconds(r->loader) - wait0;
    if (r->a.save_views && r->session_steps == 0 && !r->next.x1 && lead()) save_views(r, batch);
    size_t bytes = (size_t)r->x1->numel * sizeof(float);
    r->next.x1 = uploader_put(r->up1, batch->x1, bytes);
    r->next.x2 = uploader_put(r->up2, batch->x2, bytes);
    r->next.labels = r->next.labels == r->labels[0] ? r->labels[1] : r->labels[0];
    memcpy(r->next.labels, batch->labels, (size_t)batch->batch * sizeof(int));
    r->next.epoch = batch->epoch;
    r->next.position = batch->position;
    r->next.ready = true;
}

// One optimiser step on the next batch.
static StepStats train_step(Run *r) {
    int B = r->a.batch, b = B / comm_size(), first = comm_rank() * b;   // this process's rows of the batch
    bool profiled = profiled_step(r);
    double t_step = now_seconds();
    autograd_set_profiling(profiled);
    if (!r->next.ready) prefetch(r);   // the first step of the session: nothing was fetched during a step before
    r->next.ready = false;
    const int *labels = r->next.labels;
    long batch_epoch = r->next.epoch, batch_position = r->next.position;
    uploader_use(r->up1, r->next.x1);  // the device waits for the upload, the host does not
    uploader_use(r->up2, r->next.x2);
    r->x1->data = r->next.x1;
    r->x2->data = r->next.x2;
    // per-step randomness (5x5 source locations, dropout) from (seed, step): a resume reproduces it exactly
    Rng rng;
    rng_seed(&rng, rng_hash2((uint64_t)r->a.seed, (uint64_t)r->st.step));
    for (int i = 0; i < B; i++) {
        r->idx1[i] = rng_int(&rng, AMDIM_LOCAL_SOURCES);
        r->idx2[i] = rng_int(&rng, AMDIM_LOCAL_SOURCES);
    }
    paramset_zero_grad(&r->model.ps);
    autograd_profile_mark();
    AmdimLoss L = amdim_loss(&r->model, r->x1, r->x2, labels, r->idx1 + first, r->idx2 + first, &rng);
    backward(L.total);
    if (comm_size() > 1) {   // the mean of the processes' gradients: the gradient of the whole batch's loss
        ParamSet *ps = &r->model.ps;
        comm_allreduce_sum(ps->grad->data, ps->total, ps->grad->device);
        KERNEL(ps->grad->device, scale_forward)(ps->grad->data, ps->grad->data, 1.0f / (float)comm_size(), ps->total);
    }
    r->opt.lr = learning_rate(&r->a, r->st.step, r->st.total_steps);
    double t_opt = now_seconds();
    adam_update(&r->opt, &r->model.ps);
    if (profiled) {
        dev_synchronize();
        r->profile.optimizer_s += now_seconds() - t_opt;
        profile_add_tape(&r->profile);
    }
    bool last_profiled = profiled && r->session_steps == r->a.profile;
    if (r->a.dump_graph && (r->a.profile ? last_profiled : r->session_steps == 0) && lead()) dump_graph(r);
    // the next batch loads and uploads while the device runs this step (not after the last one)
    if (!stop_signal && (r->st.total_steps == 0 || r->st.step + 1 < r->st.total_steps)) prefetch(r);

    StepStats s = {.total = tensor_item(L.total), .lr = r->opt.lr, .epoch = batch_epoch};
    const struct { const char *key; Tensor *t; } terms[MAX_TERMS] = {
        {"l1t5", L.l1t5}, {"l1t7", L.l1t7}, {"l5t5", L.l5t5}, {"cpc", L.cpc}, {"reg", L.reg}, {"cls", L.cls}};
    for (int i = 0; i < MAX_TERMS; i++)
        if (terms[i].t) {
            s.terms[s.n_terms].key = terms[i].key;
            s.terms[s.n_terms++].value = tensor_item(terms[i].t);
        }
    long n_lab = 0, lin = count_correct(L.lin_logits, labels, b, &n_lab);
    long mlp = count_correct(L.mlp_logits, labels, b, &n_lab);
    tape_clear();
    if (comm_size() > 1) share_step(r, &s, &lin, &mlp, &n_lab);
    else r->stop_all = stop_signal;
    r->epoch_correct_lin += lin;
    r->epoch_correct_mlp += mlp;
    r->epoch_labeled += n_lab / 2;   // counted once per classifier
    autograd_set_profiling(false);
    if (profiled) {
        r->profile.steps++;
        r->profile.step_s += now_seconds() - t_step;
        if (last_profiled && lead()) {
            printf("%s", isatty(STDOUT_FILENO) ? "\n" : "");
            profile_print(&r->profile, stdout);
        }
    }
    r->session_steps++;
    r->st.step++;
    r->st.epoch = batch_epoch;
    r->st.position = batch_position + B;
    if (r->st.position >= r->per_epoch * B) { r->st.epoch++; r->st.position = 0; }
    r->window_steps++;
    return s;
}

// The progress line and one log.jsonl line for the steps since the last one.
static int log_step(Run *r, const StepStats *s) {
    if (!lead()) return 0;
    double t = now_seconds(), dt = t - r->window_start;
    double img_s = r->window_steps * r->a.batch / dt;
    char total[24] = "?", eta[32] = "";
    if (r->st.total_steps) {
        snprintf(total, sizeof total, "%ld", r->st.total_steps);
        snprintf(eta, sizeof eta, " ETA %.0fs", (r->st.total_steps - r->st.step) * dt / r->window_steps);
    }
    char terms[160] = "";
    for (int i = 0, n = 0; i < s->n_terms; i++)   // "1t5 2.341 1t7 6.512 ..." (keys without the log's "l")
        n += snprintf(terms + n, sizeof terms - (size_t)n, "%s%s %.3f", i ? " " : "",
                      s->terms[i].key[0] == 'l' ? s->terms[i].key + 1 : s->terms[i].key, s->terms[i].value);
    printf("%sstep %ld/%s ep %ld loss %.4f (%s) lr %.2e %.1f img/s data-wait %.0f%%%s   %s",
           isatty(STDOUT_FILENO) ? "\r" : "", r->st.step, total, s->epoch, s->total, terms, s->lr, img_s,
           100 * r->window_wait / dt, eta, isatty(STDOUT_FILENO) ? "" : "\n");
    fflush(stdout);
    JsonLine j;
    jsonl_begin(&j, r->log);
    jsonl_int(&j, "step", r->st.step);
    jsonl_int(&j, "epoch", s->epoch);
    jsonl_num(&j, "loss", s->total);
    for (int i = 0; i < s->n_terms; i++) jsonl_num(&j, s->terms[i].key, s->terms[i].value);
    jsonl_num(&j, "lr", s->lr);
    jsonl_num(&j, "img_s", img_s);
    jsonl_num(&j, "step_s", dt / r->window_steps);
    jsonl_num(&j, "data_wait_s", r->window_wait / r->window_steps);
    r->window_start = t;
    r->window_wait = 0;
    r->window_steps = 0;
    return jsonl_end(&j);
}

// The online probes' accuracy over the epoch that just ended.
static int log_epoch(Run *r) {
    if (!lead()) {
        r->epoch_correct_lin = r->epoch_correct_mlp = r->epoch_labeled = 0;
        return 0;
    }
    double lin = r->epoch_labeled ? 100.0 * r->epoch_correct_lin / r->epoch_labeled : 0;
    double mlp = r->epoch_labeled ? 100.0 * r->epoch_correct_mlp / r->epoch_labeled : 0;
    printf("%sepoch %ld done: online probes on the augmented training views: linear %.2f%%, MLP %.2f%%\n",
           isatty(STDOUT_FILENO) ? "\n" : "", r->st.epoch - 1, lin, mlp);
    r->epoch_correct_lin = r->epoch_correct_mlp = r->epoch_labeled = 0;
    JsonLine j;
    jsonl_begin(&j, r->log);
    jsonl_int(&j, "epoch_end", r->st.epoch - 1);
    jsonl_int(&j, "step", r->st.step);
    jsonl_num(&j, "online_linear_acc", lin);
    jsonl_num(&j, "online_mlp_acc", mlp);
    return jsonl_end(&j);
}

// --minutes: once MEASURE_SECONDS of steps have been timed, fixes the run's length from the measured speed
// (whole loop: data, step, logging) and says how to repeat it with --steps.
static int fix_step_count(Run *r, int argc, char **argv) {
    long done = r->st.step - r->measure_from_step;
    double t = now_seconds(), step_s = (t - r->measure_from_time) / (double)done;
    double left = r->a.minutes * 60 - (r->st.train_seconds + t - r->session_start);
    r->st.total_steps = r->st.step + (left > 0 ? (long)(left / step_s) : 0);
    comm_broadcast_host(&r->st.total_steps, sizeof r->st.total_steps, 0);   // the lead's count for every process
    if (!lead()) return 0;
    printf("%s--minutes %g: %.4f s per step over steps %ld-%ld, so this run is %ld steps. To repeat it exactly:\n  ",
           isatty(STDOUT_FILENO) ? "\n" : "", r->a.minutes, step_s, r->measure_from_step, r->st.step,
           r->st.total_steps);
    for (int i = 0; i < argc; i++) {   // the same command with --steps N for --minutes M, quoted for a shell
        if (!strcmp(argv[i], "--minutes") && i + 1 < argc) { i++; continue; }
        if (!argv[i][strspn(argv[i], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=,+:")])
            printf("%s ", argv[i]);
        else {
            putchar('\'');
            for (const char *c = argv[i]; *c; c++) { if (*c == '\'') fputs("'\\''", stdout); else putchar(*c); }
            printf("' ");
        }
    }
    printf("--steps %ld\n", r->st.total_steps);
    JsonLine j;
    jsonl_begin(&j, r->log);
    jsonl_num(&j, "minutes", r->a.minutes);
    jsonl_num(&j, "measured_step_s", step_s);
    jsonl_int(&j, "measured_from_step", r->measure_from_step);
    jsonl_int(&j, "measured_to_step", r->st.step);
    jsonl_int(&j, "fixed_total_steps", r->st.total_steps);
    return jsonl_end(&j);
}

// where the run's last good state is, for messages: "runs/x/checkpoint.safetensors (step 300)" or "none was written"
static void kept_text(const Run *r, char *buf, size_t size) {
    if (r->checkpoint_step >= 0) snprintf(buf, size, "the last checkpoint, %s (step %ld), is kept", r->ckpt_path,
                                          r->checkpoint_step);
    else snprintf(buf, size, "no checkpoint was written");
}

// Every parameter, BN statistic and Adam moment must be finite: a poisoned state is never written over a good one.
static int check_finite(Run *r, const char *when) {
    const ParamSet *ps = &r->model.ps;
    long n = ps->total, bad = 0, first = -1;
    float *h = xmalloc((size_t)n * sizeof(float));
    const char *what = "parameters and BN statistics";
    for (int block = 0; block < 3 && !bad; block++) {
        const Tensor *t = block == 0 ? ps->data : block == 1 ? r->opt.m : r->opt.v;
        tensor_copy_to_host(t, h);
        for (long i = 0; i < n; i++) if (!isfinite(h[i])) { bad++; if (first < 0) first = i; }
        if (bad && block) what = block == 1 ? "Adam's first moments" : "Adam's second moments";
    }
    free(h);
    if (!bad) return 0;
    const char *name = "?";
    for (int k = 0; k < ps->count; k++) {
        long offset = ps->params[k]->data - ps->data->data;
        if (first >= offset && first < offset + ps->params[k]->numel) name = ps->names[k];
    }
    char kept[4200];
    kept_text(r, kept, sizeof kept);
    fprintf(stderr, "%strain: %ld values of the %s are not finite at step %ld (the first in %s) %s; stopping, %s\n",
            isatty(STDOUT_FILENO) ? "\n" : "", bad, what, r->st.step, name, when, kept);
    return -1;
}

// Every process checks its state (they are equal); the lead writes the file.
static int save_checkpoint(Run *r) {
    char err[4400];
    if (check_finite(r, "before a checkpoint")) return 3;
    r->st.train_seconds += now_seconds() - r->session_start;
    r->session_start = r->last_checkpoint_time = now_seconds();
    if (lead() && checkpoint_save(r->ckpt_path, &r->model, &r->opt, &r->st, err, sizeof err)) {
        fprintf(stderr, "%strain: %s\n", isatty(STDOUT_FILENO) ? "\n" : "", err);
        if (comm_size() > 1) comm_abort("train: stopping every process");
        return 1;
    }
    r->checkpoint_step = r->st.step;
    return 0;
}

int main(int argc, char **argv) {
    engine_prefer_passive_wait(argv);
    comm_init(&argc, &argv);
    if (!lead() && !freopen("/dev/null", "w", stdout)) return 1;   // one process speaks; errors still reach stderr
    catch_stop_signals();
    Run r;
    int rc = run_open(&r, argc, argv);
    if (rc) {
        run_close(&r);
        if (comm_size() > 1) comm_abort("train: stopping every process");
        comm_finalize();
        return rc;
    }
    if (comm_size() > 1) printf("data-parallel: %s, %d images per process and step\n", comm_describe(),
                                r.a.batch / comm_size());
    long start_step = r.st.step;
    double t_start = now_seconds();
    r.session_start = r.window_start = r.last_checkpoint_time = t_start;
    if (r.st.total_steps == 0) r.measure_from_step = -1;   // --minutes: measuring starts after the skipped steps
    while ((r.st.total_steps == 0 || r.st.step < r.st.total_steps) && !r.stop_all) {
        StepStats s = train_step(&r);
        if (!isfinite(s.total)) {
            char kept[4200];
            kept_text(&r, kept, sizeof kept);
            char terms[160] = "";
            for (int i = 0, n = 0; i < s.n_terms; i++)
                n += snprintf(terms + n, sizeof terms - (size_t)n, "%s%s %g", i ? ", " : "", s.terms[i].key,
                              s.terms[i].value);
            fprintf(stderr, "%strain: the loss is %g at step %ld (%s); stopping, %s\n",
                    isatty(STDOUT_FILENO) ? "\n" : "", s.total, r.st.step, terms, kept);
            rc = 3;
            break;
        }
        if (r.st.total_steps == 0 && r.st.step - start_step == MEASURE_SKIP_STEPS) {
            r.measure_from_step = r.st.step;
            r.measure_from_time = now_seconds();
        }
        double window = fmin(MEASURE_SECONDS, MEASURE_SHARE * 60 * r.a.minutes);
        bool fix = comm_size() > 1 ? r.fix_due
                                   : r.st.total_steps == 0 && r.measure_from_step >= 0 &&
                                         now_seconds() - r.measure_from_time >= window;
        if (fix && fix_step_count(&r, argc, argv)) { rc = 1; break; }
        bool epoch_end = r.st.position == 0;
        bool last = r.st.total_steps && r.st.step >= r.st.total_steps;
        if ((r.st.step % r.a.log_every == 0 || epoch_end || last) && log_step(&r, &s)) rc = 1;
        if (epoch_end && log_epoch(&r)) rc = 1;
        if (rc) {
            fprintf(stderr, "\ntrain: cannot write %s\n", r.log_path);
            if (comm_size() > 1) comm_abort("train: stopping every process");
            break;
        }
        bool due = comm_size() > 1 ? r.checkpoint_due : now_seconds() - r.last_checkpoint_time >= r.a.ckpt_every;
        if (!last && !r.stop_all && due && (rc = save_checkpoint(&r))) break;
    }
    if (rc == 0 && (rc = save_checkpoint(&r)) == 0) {
        if (r.stop_all) {
            printf("%sstopped by %s at step %ld; checkpoint: %s (continue with the same command and --resume)\n",
                   isatty(STDOUT_FILENO) ? "\n" : "", r.stop_all == SIGINT ? "SIGINT" : "SIGTERM", r.st.step,
                   r.ckpt_path);
            rc = 128 + r.stop_all;
        } else {
            printf("%strained %ld steps in %.1fs (peak memory %.0f MiB); checkpoint: %s\n",
                   isatty(STDOUT_FILENO) ? "\n" : "", r.st.step - start_step, now_seconds() - t_start, peak_rss_mib(),
                   r.ckpt_path);
        }
    }
    run_close(&r);
    comm_finalize();
    return rc;
}
