// fuzz/checkpoint.c - libFuzzer target for checkpoints (model/checkpoint.c) on top of the safetensors parser: the
// config is read and validated, and when it describes a small model (so each input stays fast) the model, Adam and
// the train state are built and loaded from the input. Every rejection must be one line; an accepted checkpoint
// must hold only finite values (the loader's promise), which is checked here.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../io/safetensors.h"
#include "../model/checkpoint.h"

static void one_line(const char *err) {
    if (!err[0] || strchr(err, '\n')) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[1024] = "";
    SafeTensors *st = st_parse(data, size, "fuzz.safetensors", err, sizeof err);
    if (!st) { one_line(err); return 0; }
    AmdimConfig cfg;
    if (checkpoint_read_config_from(st, "fuzz.safetensors", &cfg, err, sizeof err)) {
        one_line(err);
        st_free(st);
        return 0;
    }
    // a bounded model: the config check already refused what cannot be held; this keeps each run short
    if (cfg.F > 8 || cfg.D > 64 || cfg.d > 2 || cfg.mixtures > 4 || cfg.mix_hidden > 64 || cfg.n_classes > 16 ||
        cfg.input_size != 32) {
        st_free(st);
        return 0;
    }
    Amdim m;
    Adam opt = {0};
    TrainState state;
    if (amdim_init(&m, &cfg, DEV_CPU, 0, err, sizeof err)) {
        one_line(err);
    } else {
        amdim_adam_init(&opt, &m, 1e-3f);
        if (checkpoint_load_from(st, "fuzz.safetensors", &m, &opt, &state, err, sizeof err)) {
            one_line(err);
        } else {
            for (long i = 0; i < m.ps.total; i++)
                if (!isfinite(m.ps.data->data[i]) || !isfinite(opt.m->data[i]) || !isfinite(opt.v->data[i])) abort();
            if (state.step < 0 || state.position < 0) abort();
        }
        adam_free(&opt);
    }
    amdim_free(&m);
    st_free(st);
    return 0;
}
