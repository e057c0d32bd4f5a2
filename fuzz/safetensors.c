// fuzz/safetensors.c - libFuzzer target for the safetensors reader: st_parse on the input bytes (what st_read runs on
// a file). An accepted file must be fully readable: every tensor's data is summed (ASan checks the bounds), its shape
// must match its byte count, and the name index must find every tensor and key.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    SafeTensors *st = st_parse(data, size, "fuzz.safetensors", err, sizeof err);
    if (!st) {
        if (!err[0] || memchr(err, '\n', strlen(err))) abort();   // a rejection is one line, never empty
        return 0;
    }
    volatile float sink = 0;
    for (int i = 0; i < st_count(st); i++) {
        int ndim, shape[4];
        const char *name = st_name(st, i);
        const float *x = st_get(st, name, &ndim, shape);
        if (!x || ndim < 1 || ndim > 4) abort();
        long numel = 1;
        for (int k = 0; k < ndim; k++) numel *= shape[k];
        for (long j = 0; j < numel; j++) sink += x[j];
    }
    (void)st_meta(st, "step");
    (void)sink;
    st_free(st);
    return 0;
}
