// test_model.c - the AMDIM model: architecture facts, the golden test against the PyTorch reference
// (tools/amdim_reference.py -> test/fixtures/golden_*.safetensors), checkpoints, and bit-exact resume.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../model/amdim.h"
#include "../model/checkpoint.h"
#include "../tensor/device.h"
#include "../io/safetensors.h"
#include "test.h"

#ifndef FIXTURE_DIR
#define FIXTURE_DIR "test/fixtures"
#endif

static AmdimConfig small_config(int input_size, int in_channels, int F, int D, int d, int mixtures) {
    AmdimConfig c;
    amdim_config_preset(&c, "tiny");
    snprintf(c.preset, sizeof c.preset, "test");
    c.input_size = input_size;
    c.in_channels = in_channels;
    c.F = F;
    c.D = D;
    c.d = d;
    c.mixtures = mixtures;
    return c;
}

// every encoder table produces f1 (B, D), m5 (B, D, 5, 5), m7 (B, D, 7, 7)
static int model_shapes(void) {
    int sizes[3] = {32, 64, 128}, fails = 0;
    for (int s = 0; s < 3; s++) {
        AmdimConfig c = small_config(sizes[s], 3, 4, 64, 2, 1);
        Amdim m;
        char err[256] = "";
        fails += check_true(amdim_init(&m, &c, DEV_CPU, 1, err, sizeof err) == 0, "build input %d", sizes[s]);
        Rng rng;
        rng_seed(&rng, 2);
        Tensor *x = tensor_new(DEV_CPU, SHAPE(2, 3, sizes[s], sizes[s]));
        tensor_fill_normal(x, &rng, 0, 1);
        Features f = amdim_encode(&m, x, true, true);
        fails += check_true(f.f1->ndim == 2 && f.f1->shape[0] == 2 && f.f1->shape[1] == 64 && f.m5->shape[2] == 5 &&
                            f.m5->shape[3] == 5 && f.m7->shape[2] == 7 && f.m5->shape[1] == 64 && f.m7->shape[1] == 64,
                            "input %d: f1 (2, 64), m5 (2, 64, 5, 5), m7 (2, 64, 7, 7)", sizes[s]);
        tape_clear();
        tensor_free(x);
        amdim_free(&m);
    }
    return fails;
}

// parameter counts of cifar-small against spec 2.5 (which also counts the unused BN affine parameters of each
// residual unit, 2 * cout each: we do not allocate those, so they are added back here)
static int model_parameter_counts(void) {
    AmdimConfig c;
    amdim_config_preset(&c, "cifar-small");
    Amdim m;
    char err[256] = "";
    if (amdim_init(&m, &c, DEV_CPU, 1, err, sizeof err)) return check_true(false, "%s", err);
    long encoder = 0, heads = 0, unused_bn = 0;
    for (int i = 0; i < m.ps.count; i++) {
        if (m.ps.is_buffer[i]) continue;
        if (!strncmp(m.ps.names[i], "enc.", 4)) encoder += m.ps.params[i]->numel;
        if (!strncmp(m.ps.names[i], "head", 4)) heads += m.ps.params[i]->numel;
    }
    for (int b = 0; b < m.n_blocks; b++) if (m.blocks[b].kind == BLOCK_RU) unused_bn += 2 * m.blocks[b].cout;
    unused_bn += 2 * 2 * c.D;  // the heads' optional BN(g) (D each, weight and bias)
    int fails = check_true(fabs((encoder + unused_bn - 2 * 2 * c.D) / 1e6 - 15.85) < 0.005,
                           "cifar-small encoder %.3fM (+%.3fM unused BN) matches spec 15.85M", encoder / 1e6,
                           (unused_bn - 4 * c.D) / 1e6);
    fails += check_true(fabs((heads + 4 * c.D) / 1e6 - 4.20) < 0.005, "cifar-small heads %.3fM (+%.3fM) matches spec 4.20M",
                        heads / 1e6, 4 * c.D / 1e6);
    amdim_free(&m);
    return fails;
}

// The FLOPs the tape records for the convolutions of one cifar-small view (encoder + phi heads) against the spec's
// analytic count (section 12: 575 M multiply-adds per view, 420 M encoder + 155 M heads), within 1%.
static int model_conv_flops(void) {
    AmdimConfig c;
    amdim_config_preset(&c, "cifar-small");
    Amdim m;
    char err[256] = "";
    if (amdim_init(&m, &c, DEV_CPU, 1, err, sizeof err)) return check_true(false, "%s", err);
    Tensor *x = tensor_zeros(DEV_CPU, SHAPE(1, 3, 32, 32));
    amdim_encode(&m, x, false, true);   // one image; eval-mode BN (train mode needs more than one value per channel)
    double macs = 0;
    long convs = 0;
    for (long i = 0; i < tape_node_count(); i++) {
        const Node *n = tape_node(i);
        if (!strncmp(n->op_name, "conv2d", 6)) { macs += n->flops / 2; convs++; }
    }
    tape_clear();
    tensor_free(x);
    amdim_free(&m);
    return check_true(fabs(macs / 575e6 - 1) < 0.01, "%ld convolutions of one cifar-small view: %.1f M multiply-adds "
                      "(spec section 12: 575 M)", convs, macs / 1e6);
}

// at initialisation every residual branch is zero: f7's source equals avgpool/pad of the stem output
static int model_zero_init(void) {
    AmdimConfig c = small_config(32, 1, 4, 32, 1, 1);
    Amdim m;
    char err[256] = "";
    amdim_init(&m, &c, DEV_CPU, 3, err, sizeof err);
    float sum = 0;
    for (int b = 0; b < m.n_blocks; b++)
        if (m.blocks[b].kind == BLOCK_RU)
            for (long i = 0; i < m.blocks[b].w2->numel; i++) sum += fabsf(m.blocks[b].w2->data[i]);
    float diag = m.head5.shortcut_w->data[0];
    amdim_free(&m);
    return check_true(sum == 0.0f && diag == 1.0f, "residual conv2 weights all zero (%g), phi shortcut identity (%g)", sum, diag);
}

// ---------------------------------------------------------------- golden test

static int meta_int(SafeTensors *f, const char *key) {
    const char *v = st_meta(f, key);
    CHECK(v != NULL, "fixture metadata %s missing", key);
    return atoi(v);
}

static float meta_float(SafeTensors *f, const char *key) {
    const char *v = st_meta(f, key);
    CHECK(v != NULL, "fixture metadata %s missing", key);
    return strtof(v, NULL);
}

static const float *fixture(SafeTensors *f, const char *name, long numel) {
    int ndim, shape[4];
    const float *p = st_get(f, name, &ndim, shape);
    CHECK(p != NULL && tensor_numel_of(ndim, shape) == numel, "fixture tensor %s missing or of the wrong size", name);
    return p;
}

// Loss terms and every parameter gradient of one AMDIM step against PyTorch, on dev.
// Tolerances: the model runs in float32 in both; sums are ordered differently (BLAS, reductions) so gradients
// agree to ~1e-5 relative to their scale. Per tensor: atol = 1e-4 * max|ref|, rtol = 1e-3. Losses: 1e-5 / 1e-5.
static int golden(const char *file, Device dev) {
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/%s", FIXTURE_DIR, file);
    SafeTensors *f = st_read(path, err, sizeof err);
    if (!f) return check_true(false, "%s", err);
    AmdimConfig c;
    amdim_config_preset(&c, "tiny");
    snprintf(c.preset, sizeof c.preset, "golden");
    c.F = meta_int(f, "F");
    c.D = meta_int(f, "D");
    c.d = meta_int(f, "d");
    c.in_channels = meta_int(f, "in_channels");
    c.n_classes = meta_int(f, "n_classes");
    c.mixtures = meta_int(f, "mixtures");
    c.mix_tau = meta_float(f, "mix_tau");
    c.mix_alpha = meta_float(f, "mix_alpha");
    c.tclip = meta_float(f, "tclip");
    c.cls_dropout = meta_float(f, "cls_dropout");
    const char *method = st_meta(f, "method");   // fixtures written before DIM and CPC existed are AMDIM's
    c.method = method ? method_from_name(method) : METHOD_AMDIM;
    if (c.method == METHOD_DIM) { c.tasks = TASK_1T7; c.views = 1; }
    if (c.method == METHOD_CPC) c.cpc_steps = meta_int(f, "cpc_steps");
    int B = meta_int(f, "B");
    Amdim m;
    if (amdim_init(&m, &c, dev, 0, err, sizeof err)) { st_free(f); return check_true(false, "%s", err); }
    int fails = 0;
    ParamSet *ps = &m.ps;
    for (int i = 0; i < ps->count; i++)
        tensor_copy_from_host(ps->params[i], fixture(f, ps->names[i], ps->params[i]->numel));
    int S = 32, C = c.in_channels, labels[64], idx1[64], idx2[64];
    Tensor *x1 = tensor_from(dev, SHAPE(B, C, S, S), fixture(f, "input.x1", (long)B * C * S * S));
    Tensor *x2 = tensor_from(dev, SHAPE(B, C, S, S), fixture(f, "input.x2", (long)B * C * S * S));
    const float *fl = fixture(f, "input.labels", B), *f1 = fixture(f, "input.idx1", B), *f2 = fixture(f, "input.idx2", B);
    for (int i = 0; i < B; i++) { labels[i] = (int)fl[i]; idx1[i] = (int)f1[i]; idx2[i] = (int)f2[i]; }
    Rng rng;
    rng_seed(&rng, 0);
    paramset_zero_grad(ps);
    AmdimLoss L = amdim_loss(&m, x1, x2, labels, idx1, idx2, &rng);
    backward(L.total);
    struct { const char *name; Tensor *t; } terms[] = {
        {"loss.1t5", L.l1t5}, {"loss.1t7", L.l1t7}, {"loss.5t5", L.l5t5}, {"loss.reg", L.reg}, {"loss.cpc", L.cpc},
        {"loss.cls", L.cls}, {"loss.total", L.total}};
    for (size_t i = 0; i < sizeof terms / sizeof terms[0]; i++) {   // the method's terms, and only those
        bool in_fixture = st_get(f, terms[i].name, NULL, NULL) != NULL;
        if (!in_fixture || !terms[i].t) {
            if (in_fixture != (terms[i].t != NULL))
                fails += check_true(false, "%s: %s", terms[i].name, in_fixture ? "not computed here" : "not in the fixture");
            continue;
        }
        float v = tensor_item(terms[i].t);
        fails += check_close(terms[i].name, &v, fixture(f, terms[i].name, 1), 1, 1e-5, 1e-5);
    }
    // gradients that are analytically zero (a bias right before a train-mode BN) hold only rounding noise in both
    // implementations: they are held to the global gradient scale instead of their own
    const char *zero_grads = st_meta(f, "zero_grads");
    double global_scale = 0;
    char name[128];
    for (int i = 0; i < ps->count; i++) {
        if (ps->is_buffer[i]) continue;
        snprintf(name, sizeof name, "grad.%s", ps->names[i]);
        const float *want = fixture(f, name, ps->params[i]->numel);
        for (long j = 0; j < ps->params[i]->numel; j++) global_scale = fmax(global_scale, fabs(want[j]));
    }
    for (int i = 0; i < ps->count; i++) {
        Tensor *p = ps->params[i];
        float *got = xmalloc((size_t)p->numel * sizeof(float));
        const float *want;
        if (ps->is_buffer[i]) {
            snprintf(name, sizeof name, "after.%s", ps->names[i]);
            want = fixture(f, name, p->numel);
            tensor_copy_to_host(p, got);
        } else {
            snprintf(name, sizeof name, "grad.%s", ps->names[i]);
            want = fixture(f, name, p->numel);
            dev_copy(got, DEV_CPU, p->grad, dev, (size_t)p->numel * sizeof(float));
        }
        double scale = 0;
        for (long j = 0; j < p->numel; j++) scale = fmax(scale, fabs(want[j]));
        if (!ps->is_buffer[i] && zero_grads && strstr(zero_grads, ps->names[i])) scale = global_scale;
        fails += check_close(name, got, want, p->numel, 1e-4 * scale + 1e-7, 1e-3);
        free(got);
    }
    tape_clear();
    tensor_free(x1);
    tensor_free(x2);
    amdim_free(&m);
    st_free(f);
    return fails;
}

static int golden_tiny_cpu(void) { return golden("golden_tiny.safetensors", DEV_CPU); }
static int golden_mix_cpu(void) { return golden("golden_mix.safetensors", DEV_CPU); }
static int golden_dim_cpu(void) { return golden("golden_dim.safetensors", DEV_CPU); }
static int golden_cpc_cpu(void) { return golden("golden_cpc.safetensors", DEV_CPU); }
static int golden_gpu(void) {
    int skip = skip_without_cuda();   // -1 without a device, a failure (1) under REQUIRE_GPU=1
    if (skip) return skip;
    return golden("golden_tiny.safetensors", DEV_CUDA) + golden("golden_mix.safetensors", DEV_CUDA) +
           golden("golden_dim.safetensors", DEV_CUDA) + golden("golden_cpc.safetensors", DEV_CUDA);
}

// ---------------------------------------------------------------- checkpoints and resume

// n training steps on fixed random data; returns the losses
static void train_steps(Amdim *m, Adam *opt, long first, long n, float *losses) {
    int B = 4, S = 32;
    int labels[4] = {0, 1, -1, 2}, idx1[4], idx2[4];
    for (long s = first; s < first + n; s++) {
        Rng rng;
        rng_seed(&rng, 77 + (uint64_t)s);
        Tensor *x1 = tape_tensor(DEV_CPU, SHAPE(B, 1, S, S)), *x2 = tape_tensor(DEV_CPU, SHAPE(B, 1, S, S));
        tensor_fill_normal(x1, &rng, 0, 1);
        tensor_fill_normal(x2, &rng, 0, 1);
        for (int i = 0; i < B; i++) { idx1[i] = rng_int(&rng, AMDIM_LOCAL_SOURCES); idx2[i] = rng_int(&rng, AMDIM_LOCAL_SOURCES); }
        paramset_zero_grad(&m->ps);
        AmdimLoss L = amdim_loss(m, x1, x2, labels, idx1, idx2, &rng);
        backward(L.total);
        opt->lr = 1e-3f;
        adam_update(opt, &m->ps);
        losses[s] = tensor_item(L.total);
        tape_clear();
    }
}

static int model_resume_bit_exact(void) {
    AmdimConfig c = small_config(32, 1, 4, 32, 2, 2);
    char err[512] = "", path[] = "/tmp/amdim_resume_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    float straight[6], resumed[6];
    Amdim a, b;
    Adam oa, ob;
    amdim_init(&a, &c, DEV_CPU, 5, err, sizeof err);
    amdim_adam_init(&oa, &a, 1e-3f);
    train_steps(&a, &oa, 0, 3, straight);
    TrainState st = {.step = 3, .epoch = 0, .position = 12, .seed = 5};
    snprintf(st.dataset, sizeof st.dataset, "random");
    int fails = check_true(checkpoint_save(path, &a, &oa, &st, err, sizeof err) == 0, "checkpoint saved %s", err);
    train_steps(&a, &oa, 3, 3, straight);
    amdim_init(&b, &c, DEV_CPU, 999, err, sizeof err);   // different init: everything must come from the file
    amdim_adam_init(&ob, &b, 1e-3f);
    TrainState st2;
    fails += check_true(checkpoint_load(path, &b, &ob, &st2, err, sizeof err) == 0, "checkpoint loaded %s", err);
    fails += check_true(st2.step == 3 && st2.position == 12 && st2.seed == 5, "train state restored");
    train_steps(&b, &ob, 3, 3, resumed);
    fails += check_true(memcmp(straight + 3, resumed + 3, 3 * sizeof(float)) == 0,
                        "losses after resume equal the uninterrupted run bit for bit (%.9g %.9g %.9g)", resumed[3],
                        resumed[4], resumed[5]);
    fails += check_true(memcmp(a.ps.data->data, b.ps.data->data, (size_t)a.ps.total * sizeof(float)) == 0,
                        "parameters after resume equal bit for bit");
    // a checkpoint of another architecture is refused with a message naming the field
    AmdimConfig other = small_config(32, 1, 8, 32, 2, 2);
    Amdim o;
    amdim_init(&o, &other, DEV_CPU, 1, err, sizeof err);
    int rc = checkpoint_load(path, &o, NULL, NULL, err, sizeof err);
    fails += check_true(rc != 0 && strstr(err, "F=") && strstr(err, path), "other preset refused: %s", err);
    amdim_free(&o);
    // a weight of the same size in another shape (the stem's (4, 1, 3, 3) saved as (1, 4, 3, 3)) is refused
    Tensor *stem = paramset_find(&a.ps, "enc.0.weight");
    int saved_shape[TENSOR_MAX_DIMS];
    memcpy(saved_shape, stem->shape, sizeof saved_shape);
    stem->shape[0] = saved_shape[1];
    stem->shape[1] = saved_shape[0];
    checkpoint_save(path, &a, &oa, &st, err, sizeof err);
    memcpy(stem->shape, saved_shape, sizeof saved_shape);
    rc = checkpoint_load(path, &b, &ob, &st2, err, sizeof err);
    fails += check_true(rc != 0 && strstr(err, "enc.0.weight") && strstr(err, "(1, 4, 3, 3)"),
                        "permuted weight shape refused: %s", err);
    // a negative step, a NaN weight, a NaN tclip and an absurd width are refused before anything is built from them
    TrainState negative = st;
    negative.step = -5;
    checkpoint_save(path, &a, &oa, &negative, err, sizeof err);
    rc = checkpoint_load(path, &b, &ob, &st2, err, sizeof err);
    fails += check_true(rc != 0 && strstr(err, "'step' is -5"), "negative step refused: %s", err);
    float saved_value = stem->data[3];
    stem->data[3] = NAN;
    checkpoint_save(path, &a, &oa, &st, err, sizeof err);
    stem->data[3] = saved_value;
    rc = checkpoint_load(path, &b, &ob, &st2, err, sizeof err);
    fails += check_true(rc != 0 && strstr(err, "enc.0.weight") && strstr(err, "1 non-finite"), "NaN weight refused: %s",
                        err);
    AmdimConfig good = a.cfg, read;
    a.cfg.tclip = NAN;
    checkpoint_save(path, &a, &oa, &st, err, sizeof err);
    rc = checkpoint_read_config(path, &read, err, sizeof err);
    fails += check_true(rc != 0 && strstr(err, "tclip=nan is outside"), "NaN tclip refused: %s", err);
    a.cfg = good;
    a.cfg.F = 1000000;
    checkpoint_save(path, &a, &oa, &st, err, sizeof err);
    rc = checkpoint_read_config(path, &read, err, sizeof err);
    fails += check_true(rc != 0 && strstr(err, "F=1000000 is outside"), "F=1000000 refused from the metadata: %s", err);
    a.cfg = good;
    a.cfg.D = 16384;
    a.cfg.mixtures = 64;
    a.cfg.mix_hidden = 65536;
    checkpoint_save(path, &a, &oa, &st, err, sizeof err);
    rc = checkpoint_read_config(path, &read, err, sizeof err);
    fails += check_true(rc != 0 && strstr(err, "parameters"), "a config too big to hold refused: %s", err);
    a.cfg = good;
    adam_free(&oa); adam_free(&ob);
    amdim_free(&a); amdim_free(&b);
    unlink(path);
    return fails;
}

void register_model_tests(void) {
    test_register("model", "encoder shapes for inputs 32, 64, 128", model_shapes);
    test_register("model", "cifar-small parameter counts vs spec", model_parameter_counts);
    test_register("model", "cifar-small convolution FLOPs on the tape vs spec", model_conv_flops);
    test_register("model", "zero-init residuals, identity phi shortcut", model_zero_init);
    test_register("golden", "tiny preset vs PyTorch (CPU)", golden_tiny_cpu);
    test_register("golden", "mixtures k=3 vs PyTorch (CPU)", golden_mix_cpu);
    test_register("golden", "DIM (one view, 1->7) vs PyTorch (CPU)", golden_dim_cpu);
    test_register("golden", "CPC (7x7 patches, masked context) vs PyTorch (CPU)", golden_cpc_cpu);
    test_register("golden", "all four fixtures vs PyTorch (GPU)", golden_gpu);
    test_register("model", "checkpoint resume is bit exact; other preset and permuted shapes refused", model_resume_bit_exact);
}
