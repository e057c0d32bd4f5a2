// fuzz/cifar_stl.c - libFuzzer target for the CIFAR-10 / CIFAR-100 and STL-10 binary readers.
// Input: byte 0 = mode % 4: 0 CIFAR-10, 1 CIFAR-100 (the rest is one file of records); 2 STL-10 labeled: bytes 1-2 =
// L (little-endian), then L bytes of labels (or what is left), then the images; 3 STL-10 unlabeled (the rest is the
// images file).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../data/formats.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int mode = data[0] % 4, rc;
    Dataset ds;
    char err[512];
    if (mode < 2) rc = cifar_parse(&ds, mode == 1, data + 1, size - 1, "data_batch.bin", err, sizeof err);
    else if (mode == 3) rc = stl_parse(&ds, data + 1, size - 1, "unlabeled_X.bin", NULL, 0, NULL, err, sizeof err);
    else {
        if (size < 3) return 0;
        size_t want = (size_t)data[1] | (size_t)data[2] << 8, rest = size - 3, y_n = want < rest ? want : rest;
        rc = stl_parse(&ds, data + 3 + y_n, rest - y_n, "train_X.bin", data + 3, y_n, "train_y.bin", err, sizeof err);
    }
    if (rc == 0) {
        int limit = mode == 0 ? 10 : mode == 1 ? 100 : 10;
        volatile long sum = 0;
        for (long i = 0; i < (long)ds.n * ds.c * ds.h * ds.w; i++) sum += ds.pixels[i];
        for (int i = 0; i < ds.n; i++)
            if (ds.labels[i] < (mode == 3 ? -1 : 0) || ds.labels[i] >= limit || (mode == 3 && ds.labels[i] != -1)) abort();
        (void)sum;
        dataset_free(&ds);
    } else if (!err[0] || ds.pixels || ds.labels) abort();
    return 0;
}
