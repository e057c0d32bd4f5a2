// fuzz/image.c - libFuzzer target for one image of an image folder: image_header (the size pass), then image_decode
// (PNG chunk checks, libjpeg-turbo or stb_image, bicubic resize and centre crop), as load_folder runs them.
// Input: byte 0 = mode, then the file. Mode bit 0: the harness rewrites every PNG chunk CRC first (so mutations get
// past the CRC check into stb_image); bit 1: resize to 96 (STL family) instead of 146; a 32 x 32 image with bit 2 set
// is copied as stored (the CIFAR family path).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../data/formats.h"

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

static void fix_png_crcs(uint8_t *buf, size_t n) {
    if (n < 8 || memcmp(buf, "\x89PNG\r\n\x1a\n", 8)) return;
    for (size_t pos = 8; n - pos >= 12;) {
        uint32_t len = be32(buf + pos);
        if (len > n - pos - 12) return;
        uint32_t crc = (uint32_t)crc32(0, buf + pos + 4, len + 4);
        uint8_t *c = buf + pos + 8 + len;
        c[0] = (uint8_t)(crc >> 24), c[1] = (uint8_t)(crc >> 16), c[2] = (uint8_t)(crc >> 8), c[3] = (uint8_t)crc;
        pos += 12 + (size_t)len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int mode = data[0];
    size_t n = size - 1;
    uint8_t *file = malloc(n ? n : 1);
    if (!file) abort();
    memcpy(file, data + 1, n);
    if (mode & 1) fix_png_crcs(file, n);
    char why[256];
    int w, h;
    if (image_header(file, n, &w, &h, why, sizeof why) == 0) {
        if (w < 1 || h < 1 || (long)w * h > IMAGE_MAX_PIXELS) abort();
        bool as_stored = (mode & 4) && w == 32 && h == 32;
        int side = as_stored ? 32 : mode & 2 ? 96 : 146;
        uint8_t *dst = malloc(3 * (size_t)side * side);
        if (!dst) abort();
        if (image_decode(file, n, side, !as_stored, dst, why, sizeof why) == 0) {
            volatile long sum = 0;
            for (long i = 0; i < 3L * side * side; i++) sum += dst[i];
            (void)sum;
        } else if (!why[0]) abort();
        free(dst);
    } else if (!why[0]) abort();
    free(file);
    return 0;
}
