// augment.c - AMDIM's augmentations (spec section 6) with torchvision semantics on float images in [0, 1].
// A training pair: one shared horizontal flip, then two independent draws of the family's A:
//   CIFAR:    p=0.8 reflect-translate by dx, dy in [-4, 4]        (S x S -> S x S)
//   STL:      RandomResizedCrop(64) of the stored 96 x 96         (bicubic)
//   IMAGENET: RandomResizedCrop(128) of the stored 146 x 146      (bicubic)
//   then p=0.8 colour jitter (0.4, 0.4, 0.4, hue 0.2 or 0.1 for IMAGENET), p=0.25 grayscale, normalise.
// Every random choice comes from a Rng seeded from the caller's seed: view k draws from its own stream.
//
// Legend: C channels, H x W stored image, S input size.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "augment.h"

// ---- geometric transforms ----
void image_to_float(const Dataset *ds, int index, float *out) {
    CHECK(index >= 0 && index < ds->n, "image index out of range");
    long plane = (long)ds->c * ds->h * ds->w;
    const uint8_t *px = ds->pixels + (long)index * plane;
    for (long i = 0; i < plane; i++) out[i] = px[i] * (1.0f / 255.0f);
}

void flip_horizontal(float *x, int c, int h, int w) {
    for (long row = 0; row < (long)c * h; row++) {
        float *r = x + row * w;
        for (int i = 0, j = w - 1; i < j; i++, j--) {
            float t = r[i];
            r[i] = r[j];
            r[j] = t;
        }
    }
}

// mirror index without edge repeat: -1 -> 1, n -> n - 2 (valid for -n < i < 2n - 1)
static int reflect_index(int i, int n) {
    if (i < 0) return -i;
    if (i >= n) return 2 * (n - 1) - i;
    return i;
}

void translate_reflect(const float *src, int c, int s, int dx, int dy, float *dst) {
    CHECK(abs(dx) < s && abs(dy) < s, "translation must be smaller than the image");
    for (int ch = 0; ch < c; ch++) {
        const float *sp = src + (long)ch * s * s;
        float *dp = dst + (long)ch * s * s;
        for (int y = 0; y < s; y++) {
            const float *srow = sp + (long)reflect_index(y + dy, s) * s;
            for (int x = 0; x < s; x++) dp[(long)y * s + x] = srow[reflect_index(x + dx, s)];
        }
    }
}

// Keys cubic convolution with a = -0.75 (torch / PIL bicubic)
static const double CUBIC_A = -0.75;
static double cubic_near(double t) { return ((CUBIC_A + 2) * t - (CUBIC_A + 3)) * t * t + 1; }   // |t| <= 1
static double cubic_far(double t) { return ((CUBIC_A * t - 5 * CUBIC_A) * t + 8 * CUBIC_A) * t - 4 * CUBIC_A; }  // 1<|t|<2

// The 4 source taps and weights of output position o when in_size pixels map onto out_size (half-pixel centres).
static void cubic_taps(int o, int in_size, int out_size, int idx[4], float wt[4]) {
    double scale = (double)in_size / out_size;
    double real = scale * (o + 0.5) - 0.5;
    double base = floor(real), t = real - base;
    wt[0] = (float)cubic_far(t + 1);
    wt[1] = (float)cubic_near(t);
    wt[2] = (float)cubic_near(1 - t);
    wt[3] = (float)cubic_far(2 - t);
    for (int k = 0; k < 4; k++) {
        int i = (int)base - 1 + k;
        idx[k] = i < 0 ? 0 : i >= in_size ? in_size - 1 : i;
    }
}

void resize_bicubic(const float *src, int c, int h, int w, int top, int left, int box_h, int box_w,
                    int out_h, int out_w, float *dst) {
    CHECK(top >= 0 && left >= 0 && box_h > 0 && box_w > 0 && top + box_h <= h && left + box_w <= w,
               "resize box outside the image");
    int (*xi)[4] = xmalloc(sizeof(int[4]) * out_w), (*yi)[4] = xmalloc(sizeof(int[4]) * out_h);
    float (*xw)[4] = xmalloc(sizeof(float[4]) * out_w), (*yw)[4] = xmalloc(sizeof(float[4]) * out_h);
    for (int o = 0; o < out_w; o++) cubic_taps(o, box_w, out_w, xi[o], xw[o]);
    for (int o = 0; o < out_h; o++) cubic_taps(o, box_h, out_h, yi[o], yw[o]);
    float *rows = xmalloc(sizeof(float) * box_h * out_w);   // one channel after the horizontal pass: (box_h, out_w)
    for (int ch = 0; ch < c; ch++) {
        const float *plane = src + (long)ch * h * w + (long)top * w + left;
        for (int y = 0; y < box_h; y++) {
            const float *r = plane + (long)y * w;
            for (int o = 0; o < out_w; o++)
                rows[(long)y * out_w + o] = xw[o][0] * r[xi[o][0]] + xw[o][1] * r[xi[o][1]] +
                                            xw[o][2] * r[xi[o][2]] + xw[o][3] * r[xi[o][3]];
        }
        float *dp = dst + (long)ch * out_h * out_w;
        for (int o = 0; o < out_h; o++) {
            const float *r0 = rows + (long)yi[o][0] * out_w, *r1 = rows + (long)yi[o][1] * out_w;
            const float *r2 = rows + (long)yi[o][2] * out_w, *r3 = rows + (long)yi[o][3] * out_w;
            for (int x = 0; x < out_w; x++) {
                float v = yw[o][0] * r0[x] + yw[o][1] * r1[x] + yw[o][2] * r2[x] + yw[o][3] * r3[x];
                dp[(long)o * out_w + x] = v < 0 ? 0 : v > 1 ? 1 : v;
            }
        }
    }
    free(rows);
    free(xi);
    free(yi);
    free(xw);
    free(yw);
}

static const double CROP_SCALE_MIN = 0.3, CROP_SCALE_MAX = 1.0;
static const double CROP_RATIO_MIN = 0.7, CROP_RATIO_MAX = 1.4;

void random_resized_crop_box(Rng *rng, int h, int w, int *top, int *left, int *box_h, int *box_w) {
    double area = (double)h * w;
    double log_lo = log(CROP_RATIO_MIN), log_hi = log(CROP_RATIO_MAX);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target_area = area * rng_range(rng, CROP_SCALE_MIN, CROP_SCALE_MAX);
        double ratio = exp(rng_range(rng, log_lo, log_hi));
        int cw = (int)nearbyint(sqrt(target_area * ratio));   // Python round(): half to even
        int ch = (int)nearbyint(sqrt(target_area / ratio));
        if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
            *top = rng_int(rng, h - ch + 1);
            *left = rng_int(rng, w - cw + 1);
            *box_h = ch;
            *box_w = cw;
            return;
        }
    }
    // torchvision's fallback: the centred crop at the ratio clamped into [0.7, 1.4]
    double in_ratio = (double)w / h;
    int cw = w, ch = h;
    if (in_ratio < CROP_RATIO_MIN) ch = (int)nearbyint(w / CROP_RATIO_MIN);
    else if (in_ratio > CROP_RATIO_MAX) cw = (int)nearbyint(h * CROP_RATIO_MAX);
    *top = (h - ch) / 2;
    *left = (w - cw) / 2;
    *box_h = ch;
    *box_w = cw;
}

// ---- colour ----
static const float GRAY_R = 0.299f, GRAY_G = 0.587f, GRAY_B = 0.114f;

static float clamp01(float v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

void adjust_brightness(float *x, int c, int hw, float factor) {
    for (long i = 0; i < (long)c * hw; i++) x[i] = clamp01(factor * x[i]);
}

// blend with the mean of the grayscale image (1 channel: the mean of the image)
void adjust_contrast(float *x, int c, int hw, float factor) {
    double sum = 0;
    if (c == 3)
        for (int i = 0; i < hw; i++) sum += GRAY_R * x[i] + GRAY_G * x[hw + i] + GRAY_B * x[2 * hw + i];
    else
        for (int i = 0; i < hw; i++) sum += x[i];
    float mean = (float)(sum / hw);
    for (long i = 0; i < (long)c * hw; i++) x[i] = clamp01(factor * x[i] + (1 - factor) * mean);
}

// blend with the grayscale image; a 1-channel image has no saturation
void adjust_saturation(float *x, int c, int hw, float factor) {
    if (c != 3) return;
    for (int i = 0; i < hw; i++) {
        float g = GRAY_R * x[i] + GRAY_G * x[hw + i] + GRAY_B * x[2 * hw + i];
        for (int ch = 0; ch < 3; ch++) x[ch * hw + i] = clamp01(factor * x[ch * hw + i] + (1 - factor) * g);
    }
}

// shift the hue (in turns, [0, 1)) in HSV space, as torchvision's _rgb2hsv / _hsv2rgb
void adjust_hue(float *x, int c, int hw, float shift) {
    if (c != 3) return;
    for (int i = 0; i < hw; i++) {
        float r = x[i], g = x[hw + i], b = x[2 * hw + i];
        float maxc = fmaxf(r, fmaxf(g, b)), minc = fminf(r, fminf(g, b));
        float chroma = maxc - minc;
        float hue = 0, sat = 0, val = maxc;
        if (chroma > 0) {
            sat = chroma / maxc;
            float rc = (maxc - r) / chroma, gc = (maxc - g) / chroma, bc = (maxc - b) / chroma;
            if (maxc == r) hue = bc - gc;
            else if (maxc == g) hue = 2.0f + rc - bc;
            else hue = 4.0f + gc - rc;
            hue = fmodf(hue / 6.0f + 1.0f, 1.0f);
        }
        hue = fmodf(hue + shift, 1.0f);
        if (hue < 0) hue += 1.0f;
        float h6 = hue * 6.0f;
        float sector = floorf(h6);
        float f = h6 - sector;
        int s = (int)sector % 6;
        float p = clamp01(val * (1 - sat)), q = clamp01(val * (1 - sat * f)), t = clamp01(val * (1 - sat * (1 - f)));
        float out[6][3] = {{val, t, p}, {q, val, p}, {p, val, t}, {p, q, val}, {t, p, val}, {val, p, q}};
        x[i] = out[s][0];
        x[hw + i] = out[s][1];
        x[2 * hw + i] = out[s][2];
    }
}

void color_jitter(float *x, int c, int h, int w, const ViewParams *v) {
    int hw = h * w;
    for (int k = 0; k < 4; k++) {
        switch (v->order[k]) {
            case 0: adjust_brightness(x, c, hw, v->brightness); break;
            case 1: adjust_contrast(x, c, hw, v->contrast); break;
            case 2: adjust_saturation(x, c, hw, v->saturation); break;
            default: adjust_hue(x, c, hw, v->hue); break;
        }
    }
}

void grayscale(float *x, int c, int hw) {
    if (c != 3) return;
    for (int i = 0; i < hw; i++) {
        float g = GRAY_R * x[i] + GRAY_G * x[hw + i] + GRAY_B * x[2 * hw + i];
        x[i] = x[hw + i] = x[2 * hw + i] = g;
    }
}

void normalize(float *x, int c, int hw, const float *mean, const float *std) {
    for (int ch = 0; ch < c; ch++) {
        float m = mean[ch], inv = 1.0f / std[ch];
        for (int i = 0; i < hw; i++) x[(long)ch * hw + i] = (x[(long)ch * hw + i] - m) * inv;
    }
}

// ---- the pair ----
static const double P_TRANSLATE = 0.8, P_JITTER = 0.8, P_GRAY = 0.25, P_FLIP = 0.5;
static const int MAX_SHIFT = 4;
static const double JITTER_LO = 0.6, JITTER_HI = 1.4;

static void draw_view(const Dataset *ds, Rng *rng, ViewParams *v) {
    memset(v, 0, sizeof *v);
    if (ds->family == FAMILY_CIFAR) {
        v->translate = rng_uniform_double(rng) < P_TRANSLATE;
        if (v->translate) {
            v->dx = rng_int(rng, 2 * MAX_SHIFT + 1) - MAX_SHIFT;
            v->dy = rng_int(rng, 2 * MAX_SHIFT + 1) - MAX_SHIFT;
        }
    } else {
        random_resized_crop_box(rng, ds->h, ds->w, &v->crop_top, &v->crop_left, &v->crop_h, &v->crop_w);
    }
    for (int k = 0; k < 4; k++) v->order[k] = k;
    v->jitter = rng_uniform_double(rng) < P_JITTER;
    if (v->jitter) {
        for (int k = 3; k > 0; k--) {   // Fisher-Yates: a random order of the four ops
            int j = rng_int(rng, k + 1);
            int t = v->order[k];
            v->order[k] = v->order[j];
            v->order[j] = t;
        }
        float hue_max = ds->family == FAMILY_IMAGENET ? 0.1f : 0.2f;
        v->brightness = (float)rng_range(rng, JITTER_LO, JITTER_HI);
        v->contrast = (float)rng_range(rng, JITTER_LO, JITTER_HI);
        v->saturation = (float)rng_range(rng, JITTER_LO, JITTER_HI);
        v->hue = (float)rng_range(rng, -hue_max, hue_max);
    }
    v->gray = rng_uniform_double(rng) < P_GRAY;
}

void augment_draw_params(const Dataset *ds, uint64_t seed, PairParams *p) {
    Rng rng;
    rng_seed(&rng, rng_hash2(seed, 0));
    p->flip = rng_uniform_double(&rng) < P_FLIP;
    for (int k = 0; k < 2; k++) {
        rng_seed(&rng, rng_hash2(seed, (uint64_t)k + 1));
        draw_view(ds, &rng, &p->view[k]);
    }
}

// One view from the (already flipped) source image src: (C, H, W) -> out (C, S, S).
static void apply_view(const Dataset *ds, const float *src, const ViewParams *v, float *out) {
    int c = ds->c, s = ds->input_size;
    if (ds->family == FAMILY_CIFAR) {
        CHECK(ds->h == s && ds->w == s, "CIFAR family images are stored at the input size");
        if (v->translate) translate_reflect(src, c, s, v->dx, v->dy, out);
        else memcpy(out, src, sizeof(float) * c * s * s);
    } else {
        resize_bicubic(src, c, ds->h, ds->w, v->crop_top, v->crop_left, v->crop_h, v->crop_w, s, s, out);
    }
    if (v->jitter) color_jitter(out, c, s, s, v);
    if (v->gray) grayscale(out, c, s * s);
    normalize(out, c, s * s, ds->mean, ds->std);
}

void augment_apply(const Dataset *ds, int index, const PairParams *p, float *x1, float *x2) {
    float *src = xmalloc(sizeof(float) * ds->c * ds->h * ds->w);
    image_to_float(ds, index, src);
    if (p->flip) flip_horizontal(src, ds->c, ds->h, ds->w);
    apply_view(ds, src, &p->view[0], x1);
    apply_view(ds, src, &p->view[1], x2);
    free(src);
}

void augment_pair(const Dataset *ds, int index, uint64_t seed, float *x1, float *x2) {
    PairParams p;
    augment_draw_params(ds, seed, &p);
    augment_apply(ds, index, &p, x1, x2);
}

// STL: Resize(70) then CenterCrop(64); IMAGENET: CenterCrop(128) of the stored 146 (resized at load).
static const int STL_TEST_RESIZE = 70;

void transform_test(const Dataset *ds, int index, float *x) {
    int c = ds->c, s = ds->input_size;
    float *src = xmalloc(sizeof(float) * c * ds->h * ds->w);
    image_to_float(ds, index, src);
    if (ds->family == FAMILY_CIFAR) {
        CHECK(ds->h == s && ds->w == s, "CIFAR family images are stored at the input size");
        memcpy(x, src, sizeof(float) * c * s * s);
    } else {
        int h = ds->h, w = ds->w;
        float *img = src;
        if (ds->family == FAMILY_STL) {   // stored square, so Resize(70) gives 70 x 70
            h = w = STL_TEST_RESIZE;
            img = xmalloc(sizeof(float) * c * h * w);
            resize_bicubic(src, c, ds->h, ds->w, 0, 0, ds->h, ds->w, h, w, img);
        }
        CHECK(h >= s && w >= s, "test image smaller than the input size");
        int top = (int)nearbyint((h - s) / 2.0), left = (int)nearbyint((w - s) / 2.0);
        for (int ch = 0; ch < c; ch++)
            for (int y = 0; y < s; y++)
                memcpy(x + ((long)ch * s + y) * s, img + ((long)ch * h + top + y) * w + left, sizeof(float) * s);
        if (img != src) free(img);
    }
    normalize(x, c, s * s, ds->mean, ds->std);
    free(src);
}
