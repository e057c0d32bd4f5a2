// checkpoint.c - save and load the training state (see checkpoint.h).
#include "checkpoint.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tensor/device.h"
#include "../io/safetensors.h"

// every config field as (name, pointer); ints and floats are stored as decimal strings
// optional: absent in checkpoints written before the field existed, read as its default
typedef struct { const char *key; int *i; float *f; bool optional; int default_value; } ConfigField;

static int config_fields(AmdimConfig *c, ConfigField *fields) {
    ConfigField list[] = {
        {"in_channels", &c->in_channels, NULL, false, 0}, {"input_size", &c->input_size, NULL, false, 0},
        {"F", &c->F, NULL, false, 0}, {"D", &c->D, NULL, false, 0}, {"d", &c->d, NULL, false, 0},
        {"n_classes", &c->n_classes, NULL, false, 0}, {"mixtures", &c->mixtures, NULL, false, 0},
        {"mix_hidden", &c->mix_hidden, NULL, false, 0}, {"tclip", NULL, &c->tclip, false, 0},
        {"mix_tau", NULL, &c->mix_tau, false, 0}, {"mix_alpha", NULL, &c->mix_alpha, false, 0},
        {"cls_dropout", NULL, &c->cls_dropout, false, 0},
        {"method", &c->method, NULL, true, METHOD_AMDIM}, {"tasks", &c->tasks, NULL, true, TASKS_ALL},
        {"views", &c->views, NULL, true, 2}, {"cpc_steps", &c->cpc_steps, NULL, true, 3},
    };
    int n = (int)(sizeof list / sizeof list[0]);
    memcpy(fields, list, sizeof list);
    return n;
}

// copies a (possibly device) tensor's data, or a slice of a block, to a fresh host buffer
static float *host_copy(const float *data, Device dev, long n) {
    float *h = xmalloc((size_t)n * sizeof(float));
    dev_copy(h, DEV_CPU, data, dev, (size_t)n * sizeof(float));
    return h;
}

int checkpoint_save(const char *path, const Amdim *m, const Adam *opt, const TrainState *st, char *err, int err_size) {
    StWriter *w = st_writer_new();
    char value[64];
    st_writer_meta(w, "format", CHECKPOINT_FORMAT);
    snprintf(value, sizeof value, "%d", CHECKPOINT_VERSION);
    st_writer_meta(w, "version", value);
    st_writer_meta(w, "preset", m->cfg.preset);
    AmdimConfig cfg = m->cfg;
    ConfigField fields[24];
    int n_fields = config_fields(&cfg, fields);
    for (int i = 0; i < n_fields; i++) {
        if (fields[i].i) snprintf(value, sizeof value, "%d", *fields[i].i);
        else snprintf(value, sizeof value, "%.9g", (double)*fields[i].f);
        st_writer_meta(w, fields[i].key, value);
    }
    if (st) {
        snprintf(value, sizeof value, "%ld", st->step);      st_writer_meta(w, "step", value);
        snprintf(value, sizeof value, "%ld", st->epoch);     st_writer_meta(w, "epoch", value);
        snprintf(value, sizeof value, "%ld", st->position);  st_writer_meta(w, "position", value);
        snprintf(value, sizeof value, "%ld", st->total_steps); st_writer_meta(w, "total_steps", value);
        snprintf(value, sizeof value, "%.3f", st->train_seconds); st_writer_meta(w, "train_seconds", value);
        snprintf(value, sizeof value, "%" PRIu64, st->seed); st_writer_meta(w, "seed", value);
        st_writer_meta(w, "dataset", st->dataset);
        snprintf(value, sizeof value, "%d", st->batch);       st_writer_meta(w, "run.batch", value);
        snprintf(value, sizeof value, "%d", st->warmup);      st_writer_meta(w, "run.warmup", value);
        snprintf(value, sizeof value, "%.9g", (double)st->lr); st_writer_meta(w, "run.lr", value);
        st_writer_meta(w, "run.decay_at", st->decay_at);
    }
    const ParamSet *ps = &m->ps;
    Device dev = ps->data->device;
    for (int i = 0; i < ps->count; i++) {
        Tensor *p = ps->params[i];
        float *h = host_copy(p->data, dev, p->numel);
        st_writer_add(w, ps->names[i], p->ndim, p->shape, h);
        free(h);
    }
    if (opt) {
        snprintf(value, sizeof value, "%d", opt->t);
        st_writer_meta(w, "adam_t", value);
        char name[96];
        for (int i = 0; i < ps->count; i++) {
            if (ps->is_buffer[i]) continue;
            Tensor *p = ps->params[i];
            long offset = p->data - ps->data->data;
            for (int which = 0; which < 2; which++) {
                Tensor *moment = which ? opt->v : opt->m;
                float *h = host_copy(moment->data + offset, dev, p->numel);
                snprintf(name, sizeof name, "adam.%c.%s", which ? 'v' : 'm', ps->names[i]);
                st_writer_add(w, name, p->ndim, p->shape, h);
                free(h);
            }
        }
    }
    int rc = st_writer_save(w, path, err, err_size);
    st_writer_free(w);
    return rc;
}

// metadata key as an integer in [lo, hi]
static int meta_long(const SafeTensors *f, const char *path, const char *key, long lo, long hi, long *out, char *err,
                     int err_size) {
    const char *v = st_meta(f, key);
    char *end = NULL;
    errno = 0;
    if (v) *out = strtol(v, &end, 10);
    if (!v || end == v || *end || errno) {
        snprintf(err, (size_t)err_size, "%s: checkpoint metadata '%s' is missing or not a number", path, key);
        return -1;
    }
    if (*out < lo || *out > hi) {
        snprintf(err, (size_t)err_size, "%s: checkpoint metadata '%s' is %ld, outside [%ld, %ld]", path, key, *out, lo,
                 hi);
        return -1;
    }
    return 0;
}

static int read_config(const SafeTensors *f, const char *path, AmdimConfig *cfg, char *err, int err_size) {
    const char *format = st_meta(f, "format");
    if (!format || strcmp(format, CHECKPOINT_FORMAT)) {
        snprintf(err, (size_t)err_size, "%s: not an AMDIM checkpoint (metadata format is %s)", path,
                 format ? format : "missing");
        return -1;
    }
    long version;
    if (meta_long(f, path, "version", 0, LONG_MAX, &version, err, err_size)) return -1;
    if (version != CHECKPOINT_VERSION) {
        snprintf(err, (size_t)err_size, "%s: checkpoint version %ld, this program reads version %d", path, version,
                 CHECKPOINT_VERSION);
        return -1;
    }
    memset(cfg, 0, sizeof *cfg);
    const char *preset = st_meta(f, "preset");
    snprintf(cfg->preset, sizeof cfg->preset, "%s", preset ? preset : "custom");
    ConfigField fields[24];
    int n_fields = config_fields(cfg, fields);
    for (int i = 0; i < n_fields; i++) {
        const char *v = st_meta(f, fields[i].key);
        if (!v && fields[i].optional) { *fields[i].i = fields[i].default_value; continue; }
        char *end = NULL;
        long x = 0;   // an int field out of int's range reads as INT_MIN, which the config check refuses
        if (v && fields[i].i) *fields[i].i = (x = strtol(v, &end, 10)) < INT_MIN || x > INT_MAX ? INT_MIN : (int)x;
        if (v && fields[i].f) *fields[i].f = strtof(v, &end);
        if (!v || end == v || *end) {
            snprintf(err, (size_t)err_size, "%s: checkpoint metadata '%s' is missing or malformed", path, fields[i].key);
            return -1;
        }
    }
    char why[256];
    if (amdim_config_check(cfg, why, sizeof why)) {   // before anybody builds a model from it
        snprintf(err, (size_t)err_size, "%s: checkpoint config: %s", path, why);
        return -1;
    }
    return 0;
}

int checkpoint_read_config_from(const SafeTensors *f, const char *path, AmdimConfig *cfg, char *err, int err_size) {
    return read_config(f, path, cfg, err, err_size);
}

int checkpoint_read_config(const char *path, AmdimConfig *cfg, char *err, int err_size) {
    SafeTensors *f = st_read(path, err, err_size);
    if (!f) return -1;
    int rc = read_config(f, path, cfg, err, err_size);
    st_free(f);
    return rc;
}

// "(2, 3, 3)"
static void shape_text(char *buf, size_t size, int ndim, const int *shape) {
    int n = snprintf(buf, size, "(");
    for (int i = 0; i < ndim && n < (int)size; i++) n += snprintf(buf + n, size - (size_t)n, i ? ", %d" : "%d", shape[i]);
    if (n < (int)size) snprintf(buf + n, size - (size_t)n, ")");
}

// copies a named tensor of the file into device memory, checking every dimension of its shape
static int load_tensor(const SafeTensors *f, const char *path, const char *name, const Tensor *like, float *dst,
                       char *err, int err_size) {
    int ndim, shape[4];
    const float *src = st_get(f, name, &ndim, shape);
    if (!src) {
        snprintf(err, (size_t)err_size, "%s: tensor '%s' is missing", path, name);
        return -1;
    }
    bool same = ndim == like->ndim;
    for (int i = 0; same && i < ndim; i++) same = shape[i] == like->shape[i];
    if (!same) {
        char got[64], want[64];
        shape_text(got, sizeof got, ndim, shape);
        shape_text(want, sizeof want, like->ndim, like->shape);
        snprintf(err, (size_t)err_size, "%s: tensor '%s' has shape %s, the model expects %s", path, name, got, want);
        return -1;
    }
    long bad = 0, first = -1;
    for (long i = 0; i < like->numel; i++)
        if (!isfinite(src[i])) { bad++; if (first < 0) first = i; }
    if (bad) {
        snprintf(err, (size_t)err_size, "%s: tensor '%s' holds %ld non-finite values (the first at index %ld)", path,
                 name, bad, first);
        return -1;
    }
    dev_copy(dst, like->device, src, DEV_CPU, (size_t)like->numel * sizeof(float));
    return 0;
}

static int read_state(const SafeTensors *f, const char *path, TrainState *st, char *err, int err_size) {
    memset(st, 0, sizeof *st);
    long seed = 0, v = 0;
    if (meta_long(f, path, "step", 0, LONG_MAX, &st->step, err, err_size) ||
        meta_long(f, path, "epoch", 0, LONG_MAX, &st->epoch, err, err_size) ||
        meta_long(f, path, "position", 0, INT_MAX, &st->position, err, err_size) ||
        meta_long(f, path, "seed", 0, LONG_MAX, &seed, err, err_size))
        return -1;
    st->seed = (uint64_t)seed;
    // written by later versions of the format; absent means "not recorded" (length not fixed, 0 s, flags unknown)
    if (st_meta(f, "total_steps") && meta_long(f, path, "total_steps", 0, LONG_MAX, &st->total_steps, err, err_size))
        return -1;
    if (st_meta(f, "train_seconds")) {
        st->train_seconds = strtod(st_meta(f, "train_seconds"), NULL);
        if (!(st->train_seconds >= 0 && st->train_seconds < 1e12)) {
            snprintf(err, (size_t)err_size, "%s: checkpoint metadata 'train_seconds' is not a time", path);
            return -1;
        }
    }
    if (st_meta(f, "run.batch")) {
        if (meta_long(f, path, "run.batch", 0, 65536, &v, err, err_size)) return -1;
        st->batch = (int)v;
        if (meta_long(f, path, "run.warmup", 0, INT_MAX, &v, err, err_size)) return -1;
        st->warmup = (int)v;
        const char *lr = st_meta(f, "run.lr"), *decay = st_meta(f, "run.decay_at");
        st->lr = lr ? strtof(lr, NULL) : NAN;
        if (!(st->lr >= 0 && st->lr <= 1e6) || !decay) {
            snprintf(err, (size_t)err_size, "%s: checkpoint metadata 'run.lr' or 'run.decay_at' is missing or malformed",
                     path);
            return -1;
        }
        snprintf(st->decay_at, sizeof st->decay_at, "%s", decay);
    }
    const char *ds = st_meta(f, "dataset");
    snprintf(st->dataset, sizeof st->dataset, "%s", ds ? ds : "");
    return 0;
}

int checkpoint_load(const char *path, Amdim *m, Adam *opt, TrainState *st, char *err, int err_size) {
    SafeTensors *f = st_read(path, err, err_size);
    if (!f) return -1;
    int rc = checkpoint_load_from(f, path, m, opt, st, err, err_size);
    st_free(f);
    return rc;
}

int checkpoint_load_from(const SafeTensors *f, const char *path, Amdim *m, Adam *opt, TrainState *st, char *err,
                         int err_size) {
    AmdimConfig cfg;
    int rc = read_config(f, path, &cfg, err, err_size);
    // architecture and objective must match the model built by the caller
    AmdimConfig mine = m->cfg;
    ConfigField a[24], b[24];
    int n_fields = config_fields(&cfg, a);
    config_fields(&mine, b);
    for (int i = 0; rc == 0 && i < n_fields; i++) {
        bool same = a[i].i ? *a[i].i == *b[i].i : *a[i].f == *b[i].f;
        if (!same) {
            snprintf(err, (size_t)err_size, "%s: checkpoint of preset %s has %s=%g, this model has %s=%g (preset %s)",
                     path, cfg.preset, a[i].key, a[i].i ? (double)*a[i].i : (double)*a[i].f, b[i].key,
                     b[i].i ? (double)*b[i].i : (double)*b[i].f, mine.preset);
            rc = -1;
        }
    }
    ParamSet *ps = &m->ps;
    for (int i = 0; rc == 0 && i < ps->count; i++)
        rc = load_tensor(f, path, ps->names[i], ps->params[i], ps->params[i]->data, err, err_size);
    if (rc == 0 && opt) {
        long t = 0;
        rc = meta_long(f, path, "adam_t", 0, INT_MAX, &t, err, err_size);
        opt->t = (int)t;
        char name[96];
        for (int i = 0; rc == 0 && i < ps->count; i++) {
            if (ps->is_buffer[i]) continue;
            long offset = ps->params[i]->data - ps->data->data;
            for (int which = 0; rc == 0 && which < 2; which++) {
                Tensor *moment = which ? opt->v : opt->m;
                snprintf(name, sizeof name, "adam.%c.%s", which ? 'v' : 'm', ps->names[i]);
                rc = load_tensor(f, path, name, ps->params[i], moment->data + offset, err, err_size);
            }
        }
    }
    if (rc == 0 && st) rc = read_state(f, path, st, err, err_size);
    return rc;
}
