// image.h - pictures of what the model sees: a grid of images written as one PNG (stb_image_write).
#ifndef IMAGE_H
#define IMAGE_H

#include <stdint.h>

// A grid of rows x cols cells. Each cell holds one image (C, H, W) of floats in [0, 1] (C = 1 gray or 3 RGB; values
// outside are clamped), drawn zoom times larger (nearest neighbour) inside a border of `pad` pixels.
typedef struct {
    int rows, cols;
    int c, h, w;
    int zoom, pad;
} Grid;

// images: (rows * cols, C, H, W), row-major cells; border: rows * cols RGB colours, or NULL for grey borders.
// Returns -1 with "cannot write PATH: reason" in err.
int png_write_grid(const char *path, const float *images, const uint8_t (*border)[3], const Grid *g, char *err,
                   int err_size);

#endif
