// image.c - PNG grids of images (see image.h).
#include "image.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC   // private to this file: tests may carry their own copy
#include <stb/stb_image_write.h>

#include "../base/base.h"

int png_write_grid(const char *path, const float *images, const uint8_t (*border)[3], const Grid *g, char *err,
                   int err_size) {
    int cell_h = g->h * g->zoom + 2 * g->pad, cell_w = g->w * g->zoom + 2 * g->pad;
    int H = g->rows * cell_h, W = g->cols * cell_w;
    uint8_t *rgb = xmalloc((size_t)H * W * 3);
    memset(rgb, 255, (size_t)H * W * 3);
    long plane = (long)g->h * g->w;
    for (int r = 0; r < g->rows; r++)
        for (int k = 0; k < g->cols; k++) {
            int cell = r * g->cols + k;
            const float *img = images + (long)cell * g->c * plane;
            const uint8_t grey[3] = {200, 200, 200};
            const uint8_t *frame = border ? border[cell] : grey;
            for (int y = 0; y < cell_h; y++)
                for (int x = 0; x < cell_w; x++) {
                    uint8_t *px = rgb + (((long)r * cell_h + y) * W + (long)k * cell_w + x) * 3;
                    int iy = (y - g->pad) / g->zoom, ix = (x - g->pad) / g->zoom;
                    if (y < g->pad || x < g->pad || iy >= g->h || ix >= g->w) { memcpy(px, frame, 3); continue; }
                    for (int ch = 0; ch < 3; ch++) {
                        float v = img[(long)(g->c == 3 ? ch : 0) * plane + (long)iy * g->w + ix];
                        v = v < 0 ? 0 : v > 1 ? 1 : v;
                        px[ch] = (uint8_t)(255.0f * v + 0.5f);
                    }
                }
        }
    errno = 0;
    int ok = stbi_write_png(path, W, H, 3, rgb, W * 3);
    free(rgb);
    if (!ok) {
        snprintf(err, (size_t)err_size, "cannot write %s: %s", path, errno ? strerror(errno) : "PNG encoding failed");
        return -1;
    }
    return 0;
}
