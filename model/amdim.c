// amdim.c - building, initialising and running the AMDIM model, and its objectives.
#include "amdim.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tensor/device.h"

// ---------------------------------------------------------------- presets (spec section 14)

int amdim_config_preset(AmdimConfig *cfg, const char *preset) {
    static const struct { const char *name; int size, F, D, d; } presets[] = {
        {"tiny", 32, 32, 256, 1},          {"cifar-small", 32, 128, 1024, 3}, {"cifar-large", 32, 256, 2048, 10},
        {"stl-small", 64, 128, 1024, 3},   {"imagenet-small", 128, 192, 1536, 8},
    };
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        if (strcmp(preset, presets[i].name)) continue;
        memset(cfg, 0, sizeof *cfg);
        snprintf(cfg->preset, sizeof cfg->preset, "%s", preset);
        cfg->in_channels = 3;
        cfg->input_size = presets[i].size;
        cfg->F = presets[i].F;
        cfg->D = presets[i].D;
        cfg->d = presets[i].d;
        cfg->n_classes = 10;
        cfg->tclip = 20.0f;
        cfg->mixtures = 1;
        cfg->mix_tau = 1.0f;
        cfg->mix_alpha = 0.05f;
        cfg->cls_dropout = 0.2f;
        cfg->method = METHOD_AMDIM;
        cfg->tasks = TASKS_ALL;
        cfg->views = 2;
        cfg->cpc_steps = 3;
        return 0;
    }
    return -1;
}

static const char *METHOD_NAMES[] = {"amdim", "dim", "cpc"};

int method_from_name(const char *name) {
    for (int i = 0; i < 3; i++) if (!strcmp(name, METHOD_NAMES[i])) return i;
    return -1;
}

const char *method_name(int method) { return method >= 0 && method < 3 ? METHOD_NAMES[method] : NULL; }

// ---------------------------------------------------------------- encoder tables (spec section 2)

// One row of an encoder table. width: output channels as a multiple of F, or 0 for D.
typedef struct { BlockKind kind; int k, stride, pad, width; bool stage; } LayerSpec;

static const LayerSpec CIFAR_LAYERS[] = {   // 32x32 input
    {BLOCK_STEM, 3, 1, 0, 1, false}, {BLOCK_RU, 1, 1, 0, 1, false}, {BLOCK_RU, 4, 2, 0, 2, true},
    {BLOCK_RU, 2, 2, 0, 4, true},    {BLOCK_RU, 3, 1, 0, 4, true},  {BLOCK_RU, 3, 1, 0, 4, true},
    {BLOCK_RU, 3, 1, 0, 0, false},   {BLOCK_BN, 0, 0, 0, 0, false},
};
static const LayerSpec STL_LAYERS[] = {     // 64x64 input
    {BLOCK_STEM, 3, 1, 0, 1, false}, {BLOCK_RU, 4, 2, 0, 2, true}, {BLOCK_RU, 4, 2, 0, 4, true},
    {BLOCK_RU, 2, 2, 0, 8, true},    {BLOCK_RU, 3, 1, 0, 8, true}, {BLOCK_RU, 3, 1, 0, 8, true},
    {BLOCK_RU, 3, 1, 0, 0, false},   {BLOCK_BN, 0, 0, 0, 0, false},
};
static const LayerSpec PATCH8_LAYERS[] = {   // CPC: one 8x8 patch -> a D-vector (8 -> 6 -> 6 -> 4 -> 2 -> 1)
    {BLOCK_STEM, 3, 1, 0, 1, false}, {BLOCK_RU, 1, 1, 0, 1, false}, {BLOCK_RU, 3, 1, 0, 2, true},
    {BLOCK_RU, 3, 1, 0, 4, true},    {BLOCK_RU, 2, 1, 0, 0, false}, {BLOCK_BN, 0, 0, 0, 0, false},
};
static const LayerSpec IMAGENET_LAYERS[] = {  // 128x128 input; the first stem reflect-pads by 2
    {BLOCK_STEM, 5, 2, 2, 1, false}, {BLOCK_STEM, 3, 1, 0, 1, false}, {BLOCK_RU, 4, 2, 0, 2, true},
    {BLOCK_RU, 4, 2, 0, 4, true},    {BLOCK_RU, 2, 2, 0, 8, true},    {BLOCK_RU, 3, 1, 0, 8, true},
    {BLOCK_RU, 3, 1, 0, 8, true},    {BLOCK_RU, 3, 1, 0, 0, false},   {BLOCK_BN, 0, 0, 0, 0, false},
};

static Tensor *declare(Amdim *m, bool buffer, int ndim, const int *shape, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static Tensor *declare(Amdim *m, bool buffer, int ndim, const int *shape, const char *fmt, ...) {
    char name[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return paramset_declare(&m->ps, name, ndim, shape, buffer);
}

static void declare_bn(Amdim *m, int C, Tensor **gamma, Tensor **beta, Tensor **rm, Tensor **rv, const char *prefix) {
    *gamma = declare(m, false, SHAPE(C), "%s.weight", prefix);
    *beta = declare(m, false, SHAPE(C), "%s.bias", prefix);
    *rm = declare(m, true, SHAPE(C), "%s.running_mean", prefix);
    *rv = declare(m, true, SHAPE(C), "%s.running_var", prefix);
}

static void declare_head(Amdim *m, Head *h, const char *name) {
    int cin = m->tap_channels, D = m->cfg.D;
    h->conv1 = declare(m, false, SHAPE(D, cin, 1, 1), "%s.conv1.weight", name);
    h->conv2 = declare(m, false, SHAPE(D, D, 1, 1), "%s.conv2.weight", name);
    h->shortcut_w = declare(m, false, SHAPE(D, cin, 1, 1), "%s.shortcut.weight", name);
    h->shortcut_b = declare(m, false, SHAPE(D), "%s.shortcut.bias", name);
    char bn[64];
    snprintf(bn, sizeof bn, "%s.bn", name);
    declare_bn(m, D, &h->gamma, &h->beta, &h->running_mean, &h->running_var, bn);
}

static Block *add_block(Amdim *m) {
    CHECK(m->n_blocks < AMDIM_MAX_BLOCKS, "encoder deeper than %d blocks", AMDIM_MAX_BLOCKS);
    Block *b = &m->blocks[m->n_blocks++];
    memset(b, 0, sizeof *b);
    return b;
}

// Declares the encoder of the table picked by the input size (CPC: the patch table); tracks spatial sizes to find
// the f5 / f7 taps ("the last layer whose output is s x s", as the official code does).
static int declare_encoder(Amdim *m, char *err, int err_size) {
    const AmdimConfig *c = &m->cfg;
    const LayerSpec *table;
    int n_layers, size = c->input_size;
    if (c->method == METHOD_CPC) { table = PATCH8_LAYERS; n_layers = sizeof PATCH8_LAYERS / sizeof *table; size = CPC_PATCH; }
    else if (c->input_size == 32) { table = CIFAR_LAYERS; n_layers = sizeof CIFAR_LAYERS / sizeof *table; }
    else if (c->input_size == 64) { table = STL_LAYERS; n_layers = sizeof STL_LAYERS / sizeof *table; }
    else if (c->input_size == 128) { table = IMAGENET_LAYERS; n_layers = sizeof IMAGENET_LAYERS / sizeof *table; }
    else {
        snprintf(err, (size_t)err_size, "input size %d has no encoder (use 32, 64 or 128)", c->input_size);
        return -1;
    }
    int channels = c->in_channels;
    m->tap5 = m->tap7 = -1;
    for (int layer = 0; layer < n_layers; layer++) {
        const LayerSpec *ls = &table[layer];
        int cout = ls->width ? ls->width * c->F : c->D;
        if (ls->kind == BLOCK_BN) {
            Block *b = add_block(m);
            b->kind = BLOCK_BN;
            b->cin = b->cout = channels;
            b->out_size = size;
            snprintf(b->name, sizeof b->name, "enc.%d", layer);
            declare_bn(m, channels, &b->gamma, &b->beta, &b->running_mean, &b->running_var, b->name);
            continue;
        }
        int units = ls->stage ? c->d : 1;
        for (int u = 0; u < units; u++) {
            Block *b = add_block(m);
            b->kind = ls->kind;
            b->k = u == 0 ? ls->k : 1;
            b->stride = u == 0 ? ls->stride : 1;
            b->pad = ls->pad;
            b->cin = channels;
            b->cout = cout;
            size = (size + 2 * b->pad - b->k) / b->stride + 1;
            b->out_size = size;
            if (b->kind == BLOCK_STEM) {
                snprintf(b->name, sizeof b->name, "enc.%d", layer);
                b->w1 = declare(m, false, SHAPE(cout, channels, b->k, b->k), "%s.weight", b->name);
                b->bias = declare(m, false, SHAPE(cout), "%s.bias", b->name);
            } else {
                snprintf(b->name, sizeof b->name, "enc.%d.%d", layer, u);
                b->w1 = declare(m, false, SHAPE(cout, channels, b->k, b->k), "%s.conv1.weight", b->name);
                b->w2 = declare(m, false, SHAPE(cout, cout, 1, 1), "%s.conv2.weight", b->name);
            }
            channels = cout;
            if (size == 7) m->tap7 = m->n_blocks - 1;
            if (size == 5) m->tap5 = m->n_blocks - 1;
        }
    }
    CHECK(size == 1 && (c->method == METHOD_CPC || (m->tap5 >= 0 && m->tap7 >= 0)),
          "encoder table without 7x7, 5x5 and 1x1 outputs");
    m->tap_channels = c->method == METHOD_CPC ? c->in_channels : m->blocks[m->tap7].cout;
    return 0;
}

// ---------------------------------------------------------------- initialisation (spec section 1 and 3)

static void init_uniform_fan_in(Tensor *t, Rng *rng, int fan_in) {  // Kaiming-uniform(a=sqrt 5) == U(+-1/sqrt(fan_in))
    float bound = 1.0f / sqrtf((float)fan_in);
    tensor_fill_uniform(t, rng, -bound, bound);
}

static int fan_in_of(const Tensor *w) { return (int)(w->numel / w->shape[0]); }

static void init_bn(Tensor *gamma, Tensor *beta, Tensor *rm, Tensor *rv) {
    tensor_fill(gamma, 1.0f);
    tensor_fill(beta, 0.0f);
    tensor_fill(rm, 0.0f);
    tensor_fill(rv, 1.0f);
}

static void init_head(Head *h, Rng *rng) {
    init_uniform_fan_in(h->conv1, rng, fan_in_of(h->conv1));
    tensor_fill(h->conv2, 0.0f);  // zero-init residual branch
    // shortcut: U(-0.01, 0.01) with an identity on the first cin output channels
    int D = h->shortcut_w->shape[0], cin = h->shortcut_w->shape[1];
    Tensor *host = tensor_new(DEV_CPU, SHAPE(D, cin));
    tensor_fill_uniform(host, rng, -0.01f, 0.01f);
    for (int i = 0; i < cin && i < D; i++) host->data[i * cin + i] = 1.0f;
    tensor_copy_from_host(h->shortcut_w, host->data);
    tensor_free(host);
    init_uniform_fan_in(h->shortcut_b, rng, cin);
    init_bn(h->gamma, h->beta, h->running_mean, h->running_var);
}

// Every parameter and buffer of the model, declared (names and shapes) but not allocated.
static int declare_model(Amdim *m, char *err, int err_size) {
    const AmdimConfig *c = &m->cfg;
    paramset_init(&m->ps);
    if (declare_encoder(m, err, err_size)) return -1;
    if (c->D < m->tap_channels || c->D < c->in_channels) {
        snprintf(err, (size_t)err_size, "D=%d must be at least the tap width %d", c->D, m->tap_channels);
        return -1;
    }
    if (c->method == METHOD_CPC) {   // the context network and the predictions instead of phi heads
        for (int l = 0; l < 2; l++) {
            m->ctx_w[l] = declare(m, false, SHAPE(c->D, c->D, 3, 3), "cpc.context.%d.weight", l);
            m->ctx_b[l] = declare(m, false, SHAPE(c->D), "cpc.context.%d.bias", l);
        }
        for (int k = 0; k < c->cpc_steps; k++) m->cpc_pred[k] = declare(m, false, SHAPE(c->D, c->D), "cpc.predict.%d.weight", k + 1);
    } else {   // only the heads the tasks read: the 5x5 map for 1->5 and 5->5, the 7x7 map for 1->7
        if (c->tasks & (TASK_1T5 | TASK_5T5)) declare_head(m, &m->head5, "head5");
        if (c->tasks & TASK_1T7) declare_head(m, &m->head7, "head7");
    }
    if (c->mixtures > 1) {
        m->mix_w1 = declare(m, false, SHAPE(c->mix_hidden, c->D), "mix.fc1.weight");
        m->mix_b1 = declare(m, false, SHAPE(c->mix_hidden), "mix.fc1.bias");
        m->mix_w2 = declare(m, false, SHAPE(c->mixtures * c->D, c->mix_hidden), "mix.fc2.weight");
        m->mix_b2 = declare(m, false, SHAPE(c->mixtures * c->D), "mix.fc2.bias");
    }
    m->mlp_w1 = declare(m, false, SHAPE(AMDIM_CLS_HIDDEN, c->D), "cls_mlp.fc1.weight");
    declare_bn(m, AMDIM_CLS_HIDDEN, &m->mlp_gamma, &m->mlp_beta, &m->mlp_rm, &m->mlp_rv, "cls_mlp.bn");
    m->mlp_w2 = declare(m, false, SHAPE(c->n_classes, AMDIM_CLS_HIDDEN), "cls_mlp.fc2.weight");
    m->mlp_b2 = declare(m, false, SHAPE(c->n_classes), "cls_mlp.fc2.bias");
    m->lin_w = declare(m, false, SHAPE(c->n_classes, c->D), "cls_lin.weight");
    m->lin_b = declare(m, false, SHAPE(c->n_classes), "cls_lin.bias");
    return 0;
}

// the ranges a config must lie in; a checkpoint's config is checked against them before a model is built from it
static int check_ranges(const AmdimConfig *c, char *err, int err_size) {
    const struct { const char *name; int value, lo, hi; } ints[] = {
        {"in_channels", c->in_channels, 1, 4}, {"F", c->F, 1, 4096}, {"D", c->D, 1, 16384},
        {"d", c->d, 1, AMDIM_MAX_UNITS}, {"n_classes", c->n_classes, 1, 100000}, {"mixtures", c->mixtures, 1, 64},
        {"mix_hidden", c->mix_hidden, 0, 65536},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (ints[i].value < ints[i].lo || ints[i].value > ints[i].hi) {
            snprintf(err, (size_t)err_size, "%s=%d is outside [%d, %d]", ints[i].name, ints[i].value, ints[i].lo,
                     ints[i].hi);
            return -1;
        }
    if (c->input_size != 32 && c->input_size != 64 && c->input_size != 128) {
        snprintf(err, (size_t)err_size, "input size %d has no encoder (use 32, 64 or 128)", c->input_size);
        return -1;
    }
    if (!method_name(c->method) || c->tasks < 1 || c->tasks > TASKS_ALL || (c->views != 1 && c->views != 2) ||
        c->cpc_steps < 1 || c->cpc_steps > CPC_MAX_STEPS) {
        snprintf(err, (size_t)err_size, "method %d, tasks %d, views %d or cpc_steps %d out of range", c->method,
                 c->tasks, c->views, c->cpc_steps);
        return -1;
    }
    if (c->method == METHOD_CPC && (c->input_size != 32 || c->mixtures > 1)) {
        snprintf(err, (size_t)err_size, "cpc takes 32x32 inputs (a 7x7 grid of 8x8 patches) and no mixtures");
        return -1;
    }
    if (c->method == METHOD_DIM && (c->tasks != TASK_1T7 || c->views != 1)) {
        snprintf(err, (size_t)err_size, "dim is the 1->7 task on one view (tasks %d, views %d given)", c->tasks, c->views);
        return -1;
    }
    if (c->views == 1 && (c->tasks & TASK_5T5)) {
        snprintf(err, (size_t)err_size, "the 5->5 task needs two views (on one view each source is its own target)");
        return -1;
    }
    const struct { const char *name; float value, lo, hi; } floats[] = {
        {"tclip", c->tclip, 1e-3f, 1e4f}, {"mix_tau", c->mix_tau, 0, 1e4f}, {"mix_alpha", c->mix_alpha, 0, 1e4f},
        {"cls_dropout", c->cls_dropout, 0, 0.99f},
    };
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++)
        if (!(floats[i].value >= floats[i].lo && floats[i].value <= floats[i].hi)) {   // NaN fails too
            snprintf(err, (size_t)err_size, "%s=%g is outside [%g, %g]", floats[i].name, (double)floats[i].value,
                     (double)floats[i].lo, (double)floats[i].hi);
            return -1;
        }
    return 0;
}

int amdim_config_check(const AmdimConfig *cfg, char *err, int err_size) {
    if (check_ranges(cfg, err, err_size)) return -1;
    Amdim *m = xcalloc(1, sizeof *m);   // a dry run of the declarations gives the exact parameter count
    m->cfg = *cfg;
    if (m->cfg.mix_hidden <= 0) m->cfg.mix_hidden = m->cfg.D;
    int rc = declare_model(m, err, err_size);
    // parameters, gradients and Adam's two moments: four blocks of the same size
    double bytes = 4.0 * sizeof(float) * (double)m->ps.total, memory = (double)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE);
    if (rc == 0 && m->ps.total > INT_MAX) {
        snprintf(err, (size_t)err_size, "%ld parameters, more than one block of this engine holds (2^31 floats)",
                 m->ps.total);
        rc = -1;
    } else if (rc == 0 && memory > 0 && bytes > memory) {
        snprintf(err, (size_t)err_size, "%ld parameters need %.1f GB for weights, gradients and Adam moments; this "
                 "machine has %.1f GB", m->ps.total, bytes / 1e9, memory / 1e9);
        rc = -1;
    }
    paramset_free(&m->ps);
    free(m);
    return rc;
}

// CPC: PyTorch's default conv / linear init; the context convs' mask keeps the kernel rows above the centre and the
// centre row (the 3x3 kernel's bottom row is zero), so the context at grid row i sees rows <= i only.
static void init_cpc(Amdim *m, Rng *rng) {
    int D = m->cfg.D;
    for (int l = 0; l < 2; l++) {
        init_uniform_fan_in(m->ctx_w[l], rng, fan_in_of(m->ctx_w[l]));
        init_uniform_fan_in(m->ctx_b[l], rng, fan_in_of(m->ctx_w[l]));
    }
    for (int k = 0; k < m->cfg.cpc_steps; k++) init_uniform_fan_in(m->cpc_pred[k], rng, D);
    Tensor *mask = tensor_new(DEV_CPU, SHAPE(D, D, 3, 3));
    for (long i = 0; i < mask->numel; i++) mask->data[i] = i % 9 < 6 ? 1.0f : 0.0f;   // kernel rows 0, 1 kept
    m->ctx_mask = tensor_to(mask, m->ps.data->device);
    tensor_free(mask);
}

int amdim_init(Amdim *m, const AmdimConfig *cfg, Device dev, uint64_t seed, char *err, int err_size) {
    memset(m, 0, sizeof *m);
    paramset_init(&m->ps);
    if (amdim_config_check(cfg, err, err_size)) return -1;
    m->cfg = *cfg;
    if (m->cfg.mix_hidden <= 0) m->cfg.mix_hidden = m->cfg.D;
    AmdimConfig *c = &m->cfg;
    if (declare_model(m, err, err_size)) return -1;
    paramset_allocate(&m->ps, dev);

    Rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < m->n_blocks; i++) {
        Block *b = &m->blocks[i];
        if (b->kind == BLOCK_STEM) {      // PyTorch default conv init, weights and bias
            init_uniform_fan_in(b->w1, &rng, fan_in_of(b->w1));
            init_uniform_fan_in(b->bias, &rng, fan_in_of(b->w1));
        } else if (b->kind == BLOCK_RU) {
            init_uniform_fan_in(b->w1, &rng, fan_in_of(b->w1));
            tensor_fill(b->w2, 0.0f);     // zero-init: at step 0 each unit is its shortcut
        } else {
            init_bn(b->gamma, b->beta, b->running_mean, b->running_var);
        }
    }
    if (m->head5.conv1) init_head(&m->head5, &rng);
    if (m->head7.conv1) init_head(&m->head7, &rng);
    if (c->mixtures > 1) {
        init_uniform_fan_in(m->mix_w1, &rng, c->D);
        init_uniform_fan_in(m->mix_b1, &rng, c->D);
        init_uniform_fan_in(m->mix_w2, &rng, c->mix_hidden);
        init_uniform_fan_in(m->mix_b2, &rng, c->mix_hidden);
    }
    init_uniform_fan_in(m->mlp_w1, &rng, c->D);
    init_bn(m->mlp_gamma, m->mlp_beta, m->mlp_rm, m->mlp_rv);
    init_uniform_fan_in(m->mlp_w2, &rng, AMDIM_CLS_HIDDEN);
    init_uniform_fan_in(m->mlp_b2, &rng, AMDIM_CLS_HIDDEN);
    init_uniform_fan_in(m->lin_w, &rng, c->D);
    init_uniform_fan_in(m->lin_b, &rng, c->D);
    if (c->method == METHOD_CPC) init_cpc(m, &rng);
    return 0;
}

void amdim_free(Amdim *m) {
    paramset_free(&m->ps);
    tensor_free(m->ctx_mask);
    m->ctx_mask = NULL;
}

void amdim_adam_init(Adam *opt, const Amdim *m, float lr) {
    adam_init(opt, &m->ps, lr, AMDIM_ADAM_BETA1, AMDIM_ADAM_BETA2, AMDIM_ADAM_EPS, AMDIM_WEIGHT_DECAY);
}

// ---------------------------------------------------------------- forward

// residual unit: out = conv1x1(relu(conv_kxk,s(x))) + channel_pad(avgpool_k,s(x))
static Tensor *residual_unit(const Block *b, Tensor *x) {
    Tensor *h = op_conv2d_relu(x, b->w1, NULL, b->stride, 0);
    return op_conv2d_add_shortcut(h, b->w2, NULL, 1, 0, x, b->k, b->stride);   // + avgpool(x), zero channels appended
}

static Tensor *run_block(const Block *b, Tensor *x, bool training) {
    switch (b->kind) {
        case BLOCK_STEM:
            if (b->pad) x = op_reflect_pad2d(x, b->pad);
            return op_conv2d_relu(x, b->w1, b->bias, b->stride, 0);
        case BLOCK_RU: return residual_unit(b, x);
        default: return op_batchnorm(x, b->gamma, b->beta, b->running_mean, b->running_var, training);
    }
}

// phi head: BN(conv1x1(relu(conv1x1(x))) + shortcut(x)), per location
static Tensor *run_head(const Head *h, Tensor *x, bool training) {
    Tensor *g = op_conv2d(op_conv2d_relu(x, h->conv1, NULL, 1, 0), h->conv2, NULL, 1, 0);
    Tensor *gs = op_conv2d_add(x, h->shortcut_w, h->shortcut_b, 1, 0, g);  // g + shortcut(x)
    return op_batchnorm(gs, h->gamma, h->beta, h->running_mean, h->running_var, training);
}

// the encoder table's blocks on x; the f5 / f7 sources come back through src5, src7 when the table has them
static Tensor *run_encoder(Amdim *m, Tensor *x, bool training, Tensor **src5, Tensor **src7) {
    Tensor *h = x;
    for (int i = 0; i < m->n_blocks; i++) {
        autograd_scope(m->blocks[i].name);
        h = run_block(&m->blocks[i], h, training);
        if (i == m->tap5) *src5 = h;
        if (i == m->tap7) *src7 = h;
    }
    return h;
}

Tensor *cpc_patch_vectors(Amdim *m, Tensor *x, bool training) {
    autograd_scope("cpc.patches");
    Tensor *patches = op_extract_patches(x, CPC_PATCH, CPC_STRIDE);   // (B*49, C, 8, 8)
    Tensor *src5 = NULL, *src7 = NULL;
    Tensor *z = run_encoder(m, patches, training, &src5, &src7);      // (B*49, D, 1, 1)
    autograd_scope(NULL);
    return op_reshape(z, SHAPE(patches->shape[0], m->cfg.D));
}

Features amdim_encode(Amdim *m, Tensor *x, bool training, bool with_heads) {
    const AmdimConfig *c = &m->cfg;
    CHECK(x->ndim == 4 && x->shape[1] == c->in_channels && x->shape[2] == c->input_size && x->shape[3] == c->input_size,
          "encoder input must be (B, %d, %d, %d)", c->in_channels, c->input_size, c->input_size);
    Features f = {0};
    int B = x->shape[0];
    if (c->method == METHOD_CPC) {   // f1: the mean of the image's patch vectors
        Tensor *z = cpc_patch_vectors(m, x, training);
        autograd_scope("cpc.mean");
        f.f1 = op_scale(op_sum(op_reshape(z, SHAPE(B, CPC_GRID * CPC_GRID, c->D)), 1), 1.0f / (CPC_GRID * CPC_GRID));
        autograd_scope(NULL);
        return f;
    }
    Tensor *h = x, *src5 = NULL, *src7 = NULL;
    h = run_encoder(m, h, training, &src5, &src7);
    f.f1 = op_reshape(h, SHAPE(B, c->D));
    if (with_heads && m->head5.conv1) {
        autograd_scope("head5");
        f.m5 = run_head(&m->head5, src5, training);
    }
    if (with_heads && m->head7.conv1) {
        autograd_scope("head7");
        f.m7 = run_head(&m->head7, src7, training);
    }
    autograd_scope(NULL);
    return f;
}

