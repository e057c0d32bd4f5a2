// augment.h - data/'s internal pieces: the image transforms behind augment_pair and transform_test,
// and the drawn parameters of one training pair (exposed so tests can check each step by itself).
//
// Images here are float planes in [0, 1]: (C, H, W) row-major, C = 1 or 3. S is the model's input size.
#ifndef AUGMENT_H
#define AUGMENT_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/base.h"
#include "../base/rng.h"
#include "data.h"

// ---- the random draws of one training pair ----
typedef struct {
    bool translate; int dx, dy;                    // CIFAR family: reflect-shift by (dx, dy) in [-4, 4]
    int crop_top, crop_left, crop_h, crop_w;       // STL / IMAGENET: random resized crop box in the stored image
    bool jitter; int order[4];                     // order: 0 brightness, 1 contrast, 2 saturation, 3 hue
    float brightness, contrast, saturation, hue;   // factors ~ U[0.6, 1.4], hue shift ~ U[-h, h]
    bool gray;
} ViewParams;

typedef struct {
    bool flip;              // one horizontal flip decision shared by both views
    ViewParams view[2];     // two independent draws of the family's augmentation A
} PairParams;

void augment_draw_params(const Dataset *ds, uint64_t seed, PairParams *p);
// x1, x2: (C, S, S) normalised. augment_pair(ds, i, seed, ...) == draw_params(seed) then apply.
void augment_apply(const Dataset *ds, int index, const PairParams *p, float *x1, float *x2);

// ---- transforms ----
void image_to_float(const Dataset *ds, int index, float *out);   // out: (C, H, W) in [0, 1]
void flip_horizontal(float *x, int c, int h, int w);             // in place
// dst[c][y][x] = src[c][reflect(y + dy)][reflect(x + dx)]: reflect-pad by 4 then crop at (4 + dx, 4 + dy).
// src, dst: (C, S, S), |dx|, |dy| < S.
void translate_reflect(const float *src, int c, int s, int dx, int dy, float *dst);
// Bicubic (Keys, a = -0.75, half-pixel centres, edge taps clamped to the box, as torch's bicubic without
// antialias) of the box (top, left, box_h, box_w) of src (C, H, W) to dst (C, out_h, out_w); results clamped to
// [0, 1] as the reference pipeline works on 8-bit images.
void resize_bicubic(const float *src, int c, int h, int w, int top, int left, int box_h, int box_w,
                    int out_h, int out_w, float *dst);
// torchvision RandomResizedCrop.get_params with scale (0.3, 1.0), ratio (0.7, 1.4) (log-uniform), 10 tries.
void random_resized_crop_box(Rng *rng, int h, int w, int *top, int *left, int *box_h, int *box_w);
// Applies the jitter ops of v in v->order (1-channel images: brightness and contrast only).
void color_jitter(float *x, int c, int h, int w, const ViewParams *v);
void adjust_brightness(float *x, int c, int hw, float factor);
void adjust_contrast(float *x, int c, int hw, float factor);
void adjust_saturation(float *x, int c, int hw, float factor);
void adjust_hue(float *x, int c, int hw, float shift);
void grayscale(float *x, int c, int hw);         // 3 channels: each becomes 0.299 R + 0.587 G + 0.114 B
void normalize(float *x, int c, int hw, const float *mean, const float *std);

#endif
