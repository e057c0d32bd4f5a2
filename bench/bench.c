// bench.c - the CPU benchmark of the engine (`make bench`, driven by bench/run.sh; see bench/README.md).
// A measurement, never a test: it prints numbers and fails only when the engine itself does.
// run.sh starts one process per measurement, so each peak RSS belongs to one configuration.
//
//   build/bench gemm  [--size S] [--threads T] [--min-reps R]
//       OpenBLAS sgemm GFLOP/s of one S x S x S product: the machine's limit for everything below.
//   build/bench convs [--preset P] [--batch B] [--threads T] [--min-reps R]
//       every convolution shape of the preset's model: time and GFLOP/s of the forward kernel and of the backward
//       kernel (dx + dw), each beside sgemm on the same GEMM shape(s) of the im2col formulation.
//   build/bench model [--preset P] [--batch B] [--channels C] [--threads T] [--warmup W] [--steps S]
//                     [--device cpu|cuda] [--tf32]
//       images/s of a whole training step (both views forward, loss, backward, Adam) and of the forward pass alone
//       (both views' encoder + heads, no grad), medians over S steps after W warm-up steps; peak RSS, and on cuda the
//       pool's peak device memory. Its last line is the machine-readable `bench: preset=... batch=... threads=...
//       device=... precision=fp32|tf32 train_img_s=... forward_img_s=... peak_rss_mib=...` (+ peak_gpu_mib=...
//       peak_gpu_alloc_mib=... on cuda). --tf32: TF32 convolutions (engine_set_tf32).
//   build/bench cuda
//       exits 0 and prints the device when a CUDA device is present, 1 otherwise (bench/run.sh's GPU section).
//
// Legend: N batch, C/Co channels in/out, H input size, K kernel, s stride, P = Ho*Wo output positions,
// M, Nc, Kc the sizes of a GEMM (C is M x Nc, the product runs over Kc).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../model/amdim.h"
#include "../tensor/device.h"

typedef struct {
    const char *mode, *preset;
    int batch, channels, threads, warmup, steps, min_reps, size;
    Device device;
    bool tf32;
} Options;

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n) {  // sorts a copy
    double *s = xmalloc((size_t)n * sizeof(double));
    memcpy(s, v, (size_t)n * sizeof(double));
    qsort(s, (size_t)n, sizeof(double), compare_doubles);
    double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return m;
}

// n values uniform in [-1, 1): GEMM and conv timings do not depend on the values, and uniform draws are cheap
static float *random_buffer(long n, Rng *rng) {
    float *p = xmalloc((size_t)n * sizeof(float));
    for (long i = 0; i < n; i++) p[i] = 2.0f * rng_uniform(rng) - 1.0f;
    return p;
}

// ---------------------------------------------------------------- timing loops

// What one timed call does; `ctx` is the caller's state.
typedef void (*TimedFn)(void *ctx);

// One warm-up call, then calls until both min_reps calls and 0.2 s have passed (at most 1000 calls).
// Returns the median seconds per call.
#define TIMED_MIN_SECONDS 0.2
#define TIMED_MAX_CALLS 1000
static double time_median(TimedFn fn, void *ctx, int min_reps) {
    fn(ctx);
    double times[TIMED_MAX_CALLS], start = now_seconds();
    int n = 0;
    while (n < TIMED_MAX_CALLS && (n < min_reps || now_seconds() - start < TIMED_MIN_SECONDS)) {
        double t0 = now_seconds();
        fn(ctx);
        times[n++] = now_seconds() - t0;
    }
    return median(times, n);
}

// ---------------------------------------------------------------- sgemm

typedef struct {
    bool trans_a, trans_b;
    int M, Nc, Kc;
    float *A, *B, *C;
} GemmCase;

static void gemm_case_init(GemmCase *g, bool trans_a, bool trans_b, int M, int Nc, int Kc, Rng *rng) {
    *g = (GemmCase){.trans_a = trans_a, .trans_b = trans_b, .M = M, .Nc = Nc, .Kc = Kc};
    g->A = random_buffer((long)M * Kc, rng);
    g->B = random_buffer((long)Kc * Nc, rng);
    g->C = random_buffer((long)M * Nc, rng);
}

static void gemm_case_free(GemmCase *g) {
    free(g->A);
    free(g->B);
    free(g->C);
}

static void gemm_call(void *ctx) {
    GemmCase *g = ctx;
    gemm_cpu(g->trans_a, g->trans_b, g->M, g->Nc, g->Kc, 1.0f, g->A, g->B, 0.0f, g->C);
}

// seconds per call of one sgemm of this shape
static double time_gemm(bool trans_a, bool trans_b, int M, int Nc, int Kc, int min_reps, Rng *rng) {
    GemmCase g;
    gemm_case_init(&g, trans_a, trans_b, M, Nc, Kc, rng);
    double t = time_median(gemm_call, &g, min_reps);
    gemm_case_free(&g);
    return t;
}

// GFLOP/s of one S x S x S sgemm (the median call)
static double sgemm_rate(int S, int min_reps) {
    Rng rng;
    rng_seed(&rng, 1);
    return 2.0 * S * S * S / time_gemm(false, false, S, S, S, min_reps, &rng) * 1e-9;
}

static int bench_gemm(const Options *o) {
    char info[256];
    engine_describe(info, sizeof info);
    printf("%s\n", info);
    int S = o->size;
    double gflops = sgemm_rate(S, o->min_reps), t = 2.0 * S * S * S / gflops * 1e-9;
    printf("sgemm %d x %d x %d (the machine's limit): %.1f ms, %.1f GFLOP/s, %d threads\n", S, S, S, t * 1e3,
           gflops, o->threads);
    printf("bench-gemm: size=%d threads=%d gflops=%.2f\n", S, o->threads, gflops);
    return 0;
}

// ---------------------------------------------------------------- convolutions

typedef struct {
    int C, H, Co, K, stride;  // input (N, C, H, H), weight (Co, C, K, K), no padding
    int count;                // how often the shape occurs in one view's forward pass
} ConvShape;

#define MAX_CONV_SHAPES 64

static void add_shape(ConvShape *shapes, int *n, int C, int H, int Co, int K, int stride) {
    for (int i = 0; i < *n; i++) {
        ConvShape *s = &shapes[i];
        if (s->C == C && s->H == H && s->Co == Co && s->K == K && s->stride == stride) { s->count++; return; }
    }
    CHECK(*n < MAX_CONV_SHAPES, "more than %d convolution shapes", MAX_CONV_SHAPES);
    shapes[(*n)++] = (ConvShape){C, H, Co, K, stride, 1};
}

// Every convolution of one view's forward pass, in network order: the encoder's blocks, then the phi heads.
static int model_conv_shapes(const Amdim *m, ConvShape *shapes) {
    int n = 0, size = m->cfg.input_size;
    for (int i = 0; i < m->n_blocks; i++) {
        const Block *b = &m->blocks[i];
        if (b->kind == BLOCK_STEM) add_shape(shapes, &n, b->cin, size + 2 * b->pad, b->cout, b->k, b->stride);
        if (b->kind == BLOCK_RU) {
            add_shape(shapes, &n, b->cin, size, b->cout, b->k, b->stride);   // conv1, k x k
            add_shape(shapes, &n, b->cout, b->out_size, b->cout, 1, 1);      // conv2, 1x1
        }
        size = b->out_size;
    }
    int taps[2] = {m->tap5, m->tap7}, cin = m->tap_channels, D = m->cfg.D;
    for (int t = 0; t < 2; t++) {  // conv1, conv2 and the shortcut of each head
        int s = m->blocks[taps[t]].out_size;
        add_shape(shapes, &n, cin, s, D, 1, 1);
        add_shape(shapes, &n, D, s, D, 1, 1);
        add_shape(shapes, &n, cin, s, D, 1, 1);
    }
    return n;
}

typedef struct {
    const ConvShape *s;
    int N;
    float *x, *w, *out, *dout, *dx, *dw;
} ConvCase;

static void conv_forward_call(void *ctx) {
    ConvCase *c = ctx;
    const ConvShape *s = c->s;
    conv2d_forward_cpu(c->out, c->x, c->w, NULL, NULL, 0, false, c->N, s->C, s->H, s->H, s->Co, s->K, s->stride, 0);
}

static void conv_backward_call(void *ctx) {
    ConvCase *c = ctx;
    const ConvShape *s = c->s;
    conv2d_backward_cpu(c->dx, c->dw, NULL, c->dout, c->x, c->w, c->N, s->C, s->H, s->H, s->Co, s->K, s->stride, 0);
}

// the preset's model with o->channels input channels on `dev`; prints the problem and returns 2 on failure
static int init_model(const Options *o, Amdim *m, AmdimConfig *cfg, Device dev) {
    if (amdim_config_preset(cfg, o->preset)) { fprintf(stderr, "bench: unknown preset '%s'\n", o->preset); return 2; }
    cfg->in_channels = o->channels;
    char err[256];
    if (amdim_init(m, cfg, dev, 1, err, sizeof err)) {
        fprintf(stderr, "bench: %s\n", err);
        amdim_free(m);
        return 2;
    }
    return 0;
}

static int bench_convs(const Options *o) {
    AmdimConfig cfg;
    Amdim m;
    if (init_model(o, &m, &cfg, DEV_CPU)) return 2;
    ConvShape shapes[MAX_CONV_SHAPES];
    int n_shapes = model_conv_shapes(&m, shapes), N = o->batch;
    amdim_free(&m);

    double total_flops = 0;
    for (int i = 0; i < n_shapes; i++) {
        const ConvShape *s = &shapes[i];
        int Ho = (s->H - s->K) / s->stride + 1;
        total_flops += 2.0 * s->count * N * s->Co * Ho * Ho * s->C * s->K * s->K;
    }
    printf("convolutions of %s (C=%d), batch %d, %d threads; conv = im2col + GEMM kernel without bias; "
           "sgemm = one OpenBLAS call on the whole batch's im2col GEMM\n", o->preset, o->channels, N, o->threads);
    printf("  fwd GEMM: (M, Nc, Kc) = (Co, N*P, C*K*K); bwd GEMMs: dw (Co, C*K*K, N*P) and dx (C*K*K, N*P, Co); "
           "share = of one view's forward conv FLOPs\n");
    printf("  %-26s %5s %5s | %8s %7s %-20s %7s %5s | %8s %7s %7s %5s\n", "Cin->Co KxK/s HxH->HoxHo", "count", "share",
           "fwd ms", "GFLOP/s", "GEMM (M, Nc, Kc)", "sgemm", "ratio", "bwd ms", "GFLOP/s", "sgemm", "ratio");
    Rng rng;
    rng_seed(&rng, 2);
    double fwd_total_s = 0, bwd_total_s = 0;
    for (int i = 0; i < n_shapes; i++) {
        const ConvShape *s = &shapes[i];
        int Ho = (s->H - s->K) / s->stride + 1;
        long P = (long)Ho * Ho, ckk = (long)s->C * s->K * s->K, cols = N * P;
        ConvCase c = {.s = s, .N = N};
        c.x = random_buffer((long)N * s->C * s->H * s->H, &rng);
        c.w = random_buffer((long)s->Co * ckk, &rng);
        c.out = xmalloc((size_t)(N * s->Co * P) * sizeof(float));
        c.dout = random_buffer(N * s->Co * P, &rng);
        c.dx = xcalloc((size_t)N * s->C * s->H * s->H, sizeof(float));
        c.dw = xcalloc((size_t)(s->Co * ckk), sizeof(float));
        double flops = 2.0 * (double)s->Co * (double)cols * (double)ckk;  // one GEMM's worth; backward is two
        double t_fwd = time_median(conv_forward_call, &c, o->min_reps);
        double t_bwd = time_median(conv_backward_call, &c, o->min_reps);
        free(c.x);
        free(c.w);
        free(c.out);
        free(c.dout);
        free(c.dx);
        free(c.dw);
        double g_fwd = time_gemm(false, false, s->Co, (int)cols, (int)ckk, o->min_reps, &rng);
        double g_bwd = time_gemm(false, true, s->Co, (int)ckk, (int)cols, o->min_reps, &rng) +
                       time_gemm(true, false, (int)ckk, (int)cols, s->Co, o->min_reps, &rng);
        char name[64], gemm[40];
        snprintf(name, sizeof name, "%d->%d %dx%d/%d %dx%d->%dx%d", s->C, s->Co, s->K, s->K, s->stride, s->H, s->H,
                 Ho, Ho);
        snprintf(gemm, sizeof gemm, "(%d, %ld, %ld)", s->Co, cols, ckk);
        double share = 100.0 * s->count * flops / total_flops;
        printf("  %-26s %5d %4.1f%% | %8.2f %7.1f %-20s %7.1f %5.2f | %8.2f %7.1f %7.1f %5.2f\n", name, s->count,
               share, t_fwd * 1e3, flops / t_fwd * 1e-9, gemm, flops / g_fwd * 1e-9, g_fwd / t_fwd, t_bwd * 1e3,
               2 * flops / t_bwd * 1e-9, 2 * flops / g_bwd * 1e-9, g_bwd / t_bwd);
        fwd_total_s += s->count * t_fwd;
        bwd_total_s += s->count * t_bwd;
    }
    // a training step runs every conv twice (two views) forward and backward
    printf("  one view: %.1f GFLOP of convolution forward; conv kernels take %.0f ms forward + %.0f ms backward, "
           "so a training step spends about %.0f ms in convolutions\n", total_flops * 1e-9, fwd_total_s * 1e3,
           bwd_total_s * 1e3, 2 * (fwd_total_s + bwd_total_s) * 1e3);
    return 0;
}

// ---------------------------------------------------------------- whole model

// The GEMM work on the tape after the step's forward (before backward). Training: each convolution, matmul and
// linear layer costs its forward GEMM once more in backward for each of its two GEMM operands (input, weight) that
// needs a gradient. Forward pass alone (both views' encoder and heads): the convolutions' forward GEMMs. This is
// the work no implementation of the same model avoids, whatever its kernels.
typedef struct { double train, forward; } GemmWork;

static GemmWork step_gemm_work(void) {
    GemmWork w = {0, 0};
    for (long i = 0; i < tape_node_count(); i++) {
        const Node *n = tape_node(i);
        const char *op = n->op_name;
        bool conv = !strncmp(op, "conv2d", 6);
        if (!conv && strcmp(op, "matmul") && strcmp(op, "linear")) continue;
        int backward_gemms = (n->in[0]->requires_grad ? 1 : 0) + (n->in[1]->requires_grad ? 1 : 0);
        w.train += n->flops * (1 + backward_gemms);
        if (conv) w.forward += n->flops;
    }
    return w;
}

static int bench_model(const Options *o) {
    Device dev = o->device;
    if (dev == DEV_CUDA && !dev_cuda_available()) {
        fprintf(stderr, "bench: --device cuda: this build has no CUDA support or no GPU was found\n");
        return 2;
    }
    engine_set_tf32(o->tf32);
    AmdimConfig cfg;
    Amdim m;
    if (init_model(o, &m, &cfg, dev)) return 2;
    Adam opt;
    amdim_adam_init(&opt, &m, 2e-4f);

    // random normal views, random labels and 5x5 source locations: timing does not depend on the values
    int B = o->batch, C = cfg.in_channels, S = cfg.input_size;
    Rng rng;
    rng_seed(&rng, 1);
    Tensor *h1 = tensor_new(DEV_CPU, SHAPE(B, C, S, S)), *h2 = tensor_new(DEV_CPU, SHAPE(B, C, S, S));
    tensor_fill_normal(h1, &rng, 0.0f, 1.0f);
    tensor_fill_normal(h2, &rng, 0.0f, 1.0f);
    Tensor *x1 = tensor_to(h1, dev), *x2 = tensor_to(h2, dev);
    int *labels = xmalloc((size_t)B * sizeof(int)), *idx1 = xmalloc((size_t)B * sizeof(int)),
        *idx2 = xmalloc((size_t)B * sizeof(int));
    for (int i = 0; i < B; i++) {
        labels[i] = rng_int(&rng, cfg.n_classes);
        idx1[i] = rng_int(&rng, AMDIM_LOCAL_SOURCES);
        idx2[i] = rng_int(&rng, AMDIM_LOCAL_SOURCES);
    }
    const char *precision = o->tf32 ? "tf32" : "fp32";
    char where[200];
    if (dev == DEV_CUDA) dev_cuda_describe(where, sizeof where);
    else snprintf(where, sizeof where, "cpu, %d threads", o->threads);
    printf("model %s (F=%d D=%d d=%d, input %dx%dx%d, %ld floats of parameters and buffers), batch %d, %s, %s "
           "convolutions\n", cfg.preset, cfg.F, cfg.D, cfg.d, C, S, S, m.ps.total, B, where, precision);

    // the machine's sgemm rate in this process, just before and just after the timed steps (the better of the two):
    // this VM's speed drifts within minutes, so the limit of a row is measured beside it
    double sgemm_gflops = dev == DEV_CPU ? sgemm_rate(o->size, o->min_reps) : 0;
    int rc = 0, total_steps = o->warmup + o->steps;
    GemmWork work = {0, 0};
    double *train_s = xmalloc((size_t)o->steps * sizeof(double)), *forward_s = xmalloc((size_t)o->steps * sizeof(double));
    for (int i = 0; i < total_steps && rc == 0; i++) {  // the step of train.c, without data loading and logging
        double t0 = now_seconds();
        paramset_zero_grad(&m.ps);
        AmdimLoss L = amdim_loss(&m, x1, x2, labels, idx1, idx2, &rng);
        if (i == 0) work = step_gemm_work();
        backward(L.total);
        adam_update(&opt, &m.ps);
        float loss = tensor_item(L.total);   // reads the result: the device has finished the step
        tape_clear();
        double dt = now_seconds() - t0;
        if (i >= o->warmup) train_s[i - o->warmup] = dt;
        if (!isfinite(loss)) { fprintf(stderr, "bench: loss is %f at step %d\n", loss, i); rc = 1; }
    }
    autograd_set_grad_enabled(false);
    for (int i = 0; i < total_steps && rc == 0; i++) {  // train-mode BN, as in the step above
        double t0 = now_seconds();
        amdim_encode(&m, x1, true, true);
        amdim_encode(&m, x2, true, true);
        dev_synchronize();
        tape_clear();
        if (i >= o->warmup) forward_s[i - o->warmup] = now_seconds() - t0;
    }
    autograd_set_grad_enabled(true);
    if (dev == DEV_CPU) sgemm_gflops = fmax(sgemm_gflops, sgemm_rate(o->size, o->min_reps));

    if (rc == 0) {
        double train_med = median(train_s, o->steps), forward_med = median(forward_s, o->steps);
        double rss = peak_rss_mib(), mib = 1024.0 * 1024.0;
        char gpu[128] = "";
        if (dev == DEV_CUDA)
            snprintf(gpu, sizeof gpu, " peak_gpu_mib=%.1f peak_gpu_alloc_mib=%.1f",
                     (double)dev_pool_peak_held(DEV_CUDA) / mib, (double)dev_pool_peak_in_use(DEV_CUDA) / mib);
        printf("  training step: median %.4f s over %d steps after %d warm-up = %.1f img/s\n", train_med, o->steps,
               o->warmup, B / train_med);
        printf("  forward only : median %.4f s = %.1f img/s\n", forward_med, B / forward_med);
        printf("  GEMM work    : training step %.2f GFLOP (convolutions, matmuls, linear layers, forward + backward), "
               "forward pass %.2f GFLOP (convolutions)\n", work.train * 1e-9, work.forward * 1e-9);
        if (dev == DEV_CPU)
            printf("  sgemm        : %.1f GFLOP/s (%d^3, the better of just before and just after the steps), so the "
                   "GEMM work alone allows %.1f img/s training, %.1f img/s forward\n", sgemm_gflops, o->size,
                   B * sgemm_gflops / (work.train * 1e-9), B * sgemm_gflops / (work.forward * 1e-9));
        printf("  peak RSS     : %.1f MiB\n", rss);
        if (dev == DEV_CUDA)
            printf("  peak device memory (the pool): %.1f MiB held, %.1f MiB in use at once (cuBLAS workspace and the "
                   "CUDA context not counted)\n", (double)dev_pool_peak_held(DEV_CUDA) / mib,
                   (double)dev_pool_peak_in_use(DEV_CUDA) / mib);
        printf("  host tensors : %.1f MiB at most at once (RSS adds the conv workspace, OpenBLAS buffers, the program)\n",
               (double)dev_pool_peak_in_use(DEV_CPU) / mib);
        printf("bench: preset=%s batch=%d threads=%d device=%s precision=%s train_img_s=%.1f forward_img_s=%.1f "
               "peak_rss_mib=%.1f train_gflop=%.3f forward_gflop=%.3f sgemm_gflops=%.1f%s\n", cfg.preset, B,
               o->threads, device_name(dev), precision, B / train_med, B / forward_med, rss, work.train * 1e-9,
               work.forward * 1e-9, sgemm_gflops, gpu);
    }
    free(train_s);
    free(forward_s);
    free(labels);
    free(idx1);
    free(idx2);
    Tensor *tensors[] = {h1, h2, x1, x2};
    for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++) tensor_free(tensors[i]);
    adam_free(&opt);
    amdim_free(&m);
    return rc;
}

static int bench_cuda(void) {
    char info[200];
    bool ok = dev_cuda_describe(info, sizeof info);
    printf("bench-cuda: %s\n", info);
    return ok ? 0 : 1;
}

// ---------------------------------------------------------------- command line

static void usage(FILE *out) {
    fprintf(out,
        "usage: bench gemm|convs|model|cuda [options]   (normally run by bench/run.sh: make bench)\n"
        "  --preset NAME   tiny (default), cifar-small, ... (convs, model)\n"
        "  --batch N       images per step (default 64)   --channels C  input channels (default 3)\n"
        "  --threads N     CPU threads (default 2)\n"
        "  --warmup N      untimed steps first (default 2)  --steps N  timed steps (default 10)   (model)\n"
        "  --min-reps N    timed calls per kernel at least (default 5)   --size N  square sgemm size (default 2048)\n"
        "  --device D      cpu (default) or cuda (model)   --tf32  TF32 convolutions on cuda (model)\n");
}

static int parse_int(const char *flag, const char *v, int lo, int hi) {
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "bench: %s expects an integer in [%d, %d], got '%s'\n", flag, lo, hi, v);
        exit(2);
    }
    return (int)x;
}

int main(int argc, char **argv) {
    engine_prefer_passive_wait(argv);   // the OpenMP wait policy of train and eval: the bench times what they run
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    Options o = {.mode = argv[1], .preset = "tiny", .batch = 64, .channels = 3, .threads = 2, .warmup = 2,
                 .steps = 10, .min_reps = 5, .size = 2048, .device = DEV_CPU};
    for (int i = 2; i < argc; i += 2) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(f, "--tf32")) { o.tf32 = true; i--; continue; }
        if (!v) { fprintf(stderr, "bench: option '%s' needs a value (see --help)\n", f); return 2; }
        if (!strcmp(f, "--preset")) o.preset = v;
        else if (!strcmp(f, "--batch")) o.batch = parse_int(f, v, 2, 1 << 16);
        else if (!strcmp(f, "--channels")) o.channels = parse_int(f, v, 1, 4);
        else if (!strcmp(f, "--threads")) o.threads = parse_int(f, v, 1, 1024);
        else if (!strcmp(f, "--warmup")) o.warmup = parse_int(f, v, 0, 1000);
        else if (!strcmp(f, "--steps")) o.steps = parse_int(f, v, 1, TIMED_MAX_CALLS);
        else if (!strcmp(f, "--min-reps")) o.min_reps = parse_int(f, v, 1, TIMED_MAX_CALLS);
        else if (!strcmp(f, "--size")) o.size = parse_int(f, v, 16, 16384);
        else if (!strcmp(f, "--device")) {
            if (strcmp(v, "cpu") && strcmp(v, "cuda")) { fprintf(stderr, "bench: --device cpu or cuda, got '%s'\n", v); return 2; }
            o.device = strcmp(v, "cuda") ? DEV_CPU : DEV_CUDA;
        }
        else { fprintf(stderr, "bench: unknown option '%s' (see --help)\n", f); return 2; }
    }
    engine_set_threads(o.threads);
    if (!strcmp(o.mode, "gemm")) return bench_gemm(&o);
    if (!strcmp(o.mode, "convs")) return bench_convs(&o);
    if (!strcmp(o.mode, "model")) return bench_model(&o);
    if (!strcmp(o.mode, "cuda")) return bench_cuda();
    fprintf(stderr, "bench: unknown mode '%s' (gemm, convs or model)\n", o.mode);
    return 2;
}
