// fuzz/idx.c - libFuzzer target for the IDX reader (Fashion-MNIST / MNIST), gzip and plain.
// Input: byte 0 = mode, bytes 1-2 = L (little-endian), then the labels file (L bytes, or what is left), then the
// images file. Mode bit 0 / bit 1: the harness gzips the images / labels bytes first, so the parser sees valid gzip
// streams (with valid CRCs) as well as the raw bytes the fuzzer makes; bit 2: fashion-mnist instead of mnist.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../data/formats.h"

// gzip of in[0, n) into a new buffer (*out_n bytes); NULL if zlib fails, which only running out of memory does
static uint8_t *gzip_bytes(const uint8_t *in, size_t n, size_t *out_n) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 1, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) return NULL;
    size_t cap = deflateBound(&z, (uLong)n) + 32;
    uint8_t *out = malloc(cap);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    if (!out || deflate(&z, Z_FINISH) != Z_STREAM_END) {
        free(out);
        deflateEnd(&z);
        return NULL;
    }
    *out_n = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    int mode = data[0];
    size_t want = (size_t)data[1] | (size_t)data[2] << 8, rest = size - 3;
    size_t lab_n = want < rest ? want : rest, img_n = rest - lab_n;
    const uint8_t *lab = data + 3, *img = data + 3 + lab_n;
    uint8_t *img_gz = NULL, *lab_gz = NULL;
    if (mode & 1) {
        if (!(img_gz = gzip_bytes(img, img_n, &img_n))) abort();
        img = img_gz;
    }
    if (mode & 2) {
        if (!(lab_gz = gzip_bytes(lab, lab_n, &lab_n))) abort();
        lab = lab_gz;
    }
    Dataset ds;
    char err[512];
    if (idx_parse(&ds, mode & 4, img, img_n, "images.idx", lab, lab_n, "labels.idx", err, sizeof err) == 0) {
        if (ds.n < 1 || ds.c != 1 || ds.h != 32 || ds.w != 32) abort();
        volatile long sum = 0;   // every byte written (MSan would say more; ASan checks the bounds)
        for (long i = 0; i < (long)ds.n * 1024; i++) sum += ds.pixels[i];
        for (int i = 0; i < ds.n; i++)
            if (ds.labels[i] < 0 || ds.labels[i] > 9) abort();
        (void)sum;
        dataset_free(&ds);
    } else if (!err[0] || ds.pixels || ds.labels) abort();   // refused: one message, nothing left allocated
    free(img_gz);
    free(lab_gz);
    return 0;
}
