// test_data.c - dataset loaders (tiny files in the exact official layouts, written to a fresh /tmp directory),
// their error messages on bad input, the augmentations against hand-computed values, and the threaded loader.
// Tolerances: loaders and geometric copies are exact (bytes, or floats copied without arithmetic: atol 0).
// Float arithmetic on [0, 1] pixels (normalise, jitter, bicubic weights) is checked at 1e-6 (a few float ulps);
// the bicubic ramp at 1e-3 because Keys' a = -0.75 kernel does not reproduce linear functions exactly (it shifts
// the interpolation point by up to 0.048 px along each axis; with the ramp's slopes 1/200 and 2/200 per px that is
// <= 7.2e-4).
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <zlib.h>

#include "../data/augment.h"
#include "../data/data.h"
#include "../data/formats.h"
#include "test.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmisleading-indentation"
#define STB_IMAGE_WRITE_STATIC   // private to this file: io/image.c links its own copy
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

#define ERR_SIZE 512

// ---- temporary directories and files ----
static void make_temp_dir(char *dir) {
    strcpy(dir, "/tmp/amdim-test-data-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        abort();
    }
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) { return remove(path); }
static void remove_tree(const char *dir) { nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void sub_path(char *out, const char *dir, const char *name) {
    if (snprintf(out, 1024, "%s/%s", dir, name) >= 1024) abort();
}

static void make_dir(const char *dir, const char *name) {
    char path[1024];
    sub_path(path, dir, name);
    if (mkdir(path, 0700) != 0) {
        perror(path);
        abort();
    }
}

static void write_bytes(const char *dir, const char *name, const void *data, size_t size) {
    char path[1024];
    sub_path(path, dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size) {
        perror(path);
        abort();
    }
    fclose(f);
}

static void write_gz(const char *dir, const char *name, const void *data, size_t size) {
    char path[1024];
    sub_path(path, dir, name);
    gzFile f = gzopen(path, "wb");
    if (!f || gzwrite(f, data, (unsigned)size) != (int)size) {
        fprintf(stderr, "cannot write %s\n", path);
        abort();
    }
    gzclose(f);
}

static uint8_t pattern(long image, long k) { return (uint8_t)((image * 31 + k * 7 + (k >> 8) * 3) & 255); }

// ---- CIFAR ----
// One CIFAR file of `records` records starting at global image `first`; label(i) chosen by the caller.
static uint8_t *cifar_records(int label_bytes, long first, long records, const int *labels, const int *coarse) {
    long rec = label_bytes + 3072;
    uint8_t *buf = malloc((size_t)(rec * records));
    for (long r = 0; r < records; r++) {
        uint8_t *p = buf + r * rec;
        if (label_bytes == 2) p[0] = (uint8_t)coarse[first + r];
        p[label_bytes - 1] = (uint8_t)labels[first + r];
        for (long k = 0; k < 3072; k++) p[label_bytes + k] = pattern(first + r, k);
    }
    return buf;
}

static int check_pixels_pattern(const Dataset *ds, long first_image, const char *what) {
    long bad = 0, size = (long)ds->c * ds->h * ds->w;
    for (long i = 0; i < ds->n; i++)
        for (long k = 0; k < size; k++) bad += ds->pixels[i * size + k] != pattern(first_image + i, k);
    return check_true(bad == 0, "%s: %ld mismatching pixel bytes", what, bad);
}

static int data_cifar10(void) {
    char dir[64];
    make_temp_dir(dir);
    int labels[32];
    for (int i = 0; i < 32; i++) labels[i] = (i * 3) % 10;
    long first = 0;
    for (int b = 1; b <= 5; b++) {   // 1 + 2 + 3 + 4 + 5 = 15 training records
        char name[32];
        snprintf(name, sizeof name, "data_batch_%d.bin", b);
        uint8_t *buf = cifar_records(1, first, b, labels, NULL);
        write_bytes(dir, name, buf, (size_t)b * 3073);
        free(buf);
        first += b;
    }
    uint8_t *buf = cifar_records(1, 15, 4, labels, NULL);
    write_bytes(dir, "test_batch.bin", buf, 4 * 3073);
    free(buf);

    Dataset ds;
    char err[ERR_SIZE];
    int fails = check_true(dataset_load(&ds, "cifar10", dir, "train", err, ERR_SIZE) == 0, "cifar10 train loads: %s", err);
    if (!fails) {
        fails += check_true(ds.n == 15 && ds.c == 3 && ds.h == 32 && ds.w == 32, "shape (%d, %d, %d, %d) == (15, 3, 32, 32)",
                            ds.n, ds.c, ds.h, ds.w);
        fails += check_pixels_pattern(&ds, 0, "cifar10 train pixels (R, G, B planes)");
        int bad = 0;
        for (int i = 0; i < ds.n; i++) bad += ds.labels[i] != labels[i];
        fails += check_true(bad == 0, "cifar10 train labels: %d wrong", bad);
        fails += check_true(ds.n_classes == 10 && ds.family == FAMILY_CIFAR && ds.input_size == 32 &&
                                !strcmp(ds.name, "cifar10"), "n_classes %d, family CIFAR, input 32, name %s",
                            ds.n_classes, ds.name);
        float want_mean[3] = {125.3f / 255, 123.0f / 255, 113.9f / 255}, want_std[3] = {63.0f / 255, 62.1f / 255, 66.7f / 255};
        fails += check_close("cifar10 mean", ds.mean, want_mean, 3, 1e-7, 0);
        fails += check_close("cifar10 std", ds.std, want_std, 3, 1e-7, 0);
        dataset_free(&ds);
    }
    int rc = dataset_load(&ds, "cifar10", dir, "test", err, ERR_SIZE);
    fails += check_true(rc == 0 && ds.n == 4, "cifar10 test loads 4 records: %s", err);
    if (rc == 0) {
        fails += check_pixels_pattern(&ds, 15, "cifar10 test pixels");
        fails += check_true(ds.labels[3] == labels[18], "cifar10 test label 3 is %d", ds.labels[3]);
        dataset_free(&ds);
    }
    remove_tree(dir);
    return fails;
}

static int data_cifar100(void) {
    char dir[64];
    make_temp_dir(dir);
    int fine[6] = {0, 99, 42, 7, 63, 18}, coarse[6] = {19, 3, 0, 11, 5, 2};
    uint8_t *buf = cifar_records(2, 0, 6, fine, coarse);
    write_bytes(dir, "train.bin", buf, 6 * 3074);
    write_bytes(dir, "test.bin", buf, 2 * 3074);
    free(buf);
    Dataset ds;
    char err[ERR_SIZE];
    int fails = check_true(dataset_load(&ds, "cifar100", dir, "train", err, ERR_SIZE) == 0, "cifar100 train loads: %s", err);
    if (!fails) {
        fails += check_true(ds.n == 6 && ds.n_classes == 100 && !strcmp(ds.name, "cifar100"), "n %d, n_classes %d",
                            ds.n, ds.n_classes);
        fails += check_pixels_pattern(&ds, 0, "cifar100 pixels");
        int bad = 0;
        for (int i = 0; i < 6; i++) bad += ds.labels[i] != fine[i];
        fails += check_true(bad == 0, "cifar100 uses the fine label: %d wrong", bad);
        dataset_free(&ds);
    }
    int rc = dataset_load(&ds, "cifar100", dir, "test", err, ERR_SIZE);
    fails += check_true(rc == 0 && ds.n == 2 && ds.labels[1] == 99, "cifar100 test: 2 records, label[1] = 99: %s", err);
    if (rc == 0) dataset_free(&ds);
    remove_tree(dir);
    return fails;
}

// ---- STL-10 ----
enum { STL_IMG = 3 * 96 * 96 };
// Pixel (image, c, y, x): x and y carry different weights, so a transposed read cannot match.
static uint8_t stl_value(int image, int c, int y, int x) { return (uint8_t)((image * 50 + c * 80 + y * 3 + x * 7) & 255); }

static void write_stl_images(const char *dir, const char *name, int first, int n) {
    uint8_t *buf = malloc((size_t)n * STL_IMG);
    for (int i = 0; i < n; i++)   // the official layout: byte (c, x, y) at c * 9216 + x * 96 + y
        for (int c = 0; c < 3; c++)
            for (int x = 0; x < 96; x++)
                for (int y = 0; y < 96; y++) buf[(long)i * STL_IMG + c * 9216 + x * 96 + y] = stl_value(first + i, c, y, x);
    write_bytes(dir, name, buf, (size_t)n * STL_IMG);
    free(buf);
}

static int check_stl_pixels(const Dataset *ds, int first_image_value, int from, int count, const char *what) {
    long bad = 0;
    for (int i = 0; i < count; i++)
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 96; y++)
                for (int x = 0; x < 96; x++)
                    bad += ds->pixels[(long)(from + i) * STL_IMG + (c * 96 + y) * 96 + x] != stl_value(first_image_value + i, c, y, x);
    return check_true(bad == 0, "%s: %ld pixels differ from the column-major source", what, bad);
}

static int data_stl10(void) {
    char dir[64];
    make_temp_dir(dir);
    write_stl_images(dir, "train_X.bin", 0, 3);
    uint8_t train_y[3] = {1, 10, 5}, test_y[2] = {2, 3};
    write_bytes(dir, "train_y.bin", train_y, 3);
    write_stl_images(dir, "test_X.bin", 10, 2);
    write_bytes(dir, "test_y.bin", test_y, 2);
    write_stl_images(dir, "unlabeled_X.bin", 20, 2);

    Dataset ds;
    char err[ERR_SIZE];
    int fails = 0;
    if (!check_true(dataset_load(&ds, "stl10", dir, "train", err, ERR_SIZE) == 0, "stl10 train loads: %s", err)) {
        fails += check_true(ds.n == 3 && ds.c == 3 && ds.h == 96 && ds.w == 96, "stl10 shape (%d, %d, %d, %d)", ds.n,
                            ds.c, ds.h, ds.w);
        // one pixel by hand: image 0, channel 1, row y = 2, column x = 5 was written at 9216 + 5 * 96 + 2
        fails += check_true(ds.pixels[(96 + 2) * 96 + 5] == stl_value(0, 1, 2, 5), "pixel (c=1, y=2, x=5) = %d, want %d",
                            ds.pixels[(96 + 2) * 96 + 5], stl_value(0, 1, 2, 5));
        fails += check_stl_pixels(&ds, 0, 0, 3, "stl10 train");
        fails += check_true(ds.labels[0] == 0 && ds.labels[1] == 9 && ds.labels[2] == 4, "labels 1, 10, 5 -> 0, 9, 4: %d %d %d",
                            ds.labels[0], ds.labels[1], ds.labels[2]);
        fails += check_true(ds.family == FAMILY_STL && ds.input_size == 64 && ds.n_classes == 10, "family STL, input 64");
        dataset_free(&ds);
    } else fails++;
    if (!check_true(dataset_load(&ds, "stl10", dir, "test", err, ERR_SIZE) == 0, "stl10 test loads: %s", err)) {
        fails += check_stl_pixels(&ds, 10, 0, 2, "stl10 test");
        fails += check_true(ds.n == 2 && ds.labels[0] == 1 && ds.labels[1] == 2, "stl10 test labels %d %d", ds.labels[0],
                            ds.labels[1]);
        dataset_free(&ds);
    } else fails++;
    if (!check_true(dataset_load(&ds, "stl10", dir, "unlabeled", err, ERR_SIZE) == 0, "stl10 unlabeled loads: %s", err)) {
        fails += check_true(ds.n == 2 && ds.labels[0] == -1 && ds.labels[1] == -1, "unlabeled: n %d, labels -1", ds.n);
        dataset_free(&ds);
    } else fails++;
    if (!check_true(dataset_load(&ds, "stl10", dir, "train+unlabeled", err, ERR_SIZE) == 0, "stl10 train+unlabeled: %s", err)) {
        fails += check_true(ds.n == 5 && ds.labels[1] == 9 && ds.labels[3] == -1 && ds.labels[4] == -1,
                            "train+unlabeled: n %d, train labels then -1", ds.n);
        fails += check_stl_pixels(&ds, 0, 0, 3, "train part");
        fails += check_stl_pixels(&ds, 20, 3, 2, "unlabeled part");
        dataset_free(&ds);
    } else fails++;
    remove_tree(dir);
    return fails;
}

// ---- IDX (Fashion-MNIST / MNIST) ----
static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

// IDX images (n x 28 x 28) and labels; gz selects gzip files. image_bytes_cut drops bytes from the payload's end.
static void write_idx(const char *dir, const char *prefix, int n_images, int n_labels, uint32_t image_magic,
                      const uint8_t *labels, int first, bool gz, long image_bytes_cut) {
    long size = 16 + (long)n_images * 784 - image_bytes_cut;
    uint8_t *img = malloc((size_t)(16 + n_images * 784));
    put_be32(img, image_magic);
    put_be32(img + 4, (uint32_t)n_images);
    put_be32(img + 8, 28);
    put_be32(img + 12, 28);
    for (long i = 0; i < n_images; i++)
        for (long k = 0; k < 784; k++) img[16 + i * 784 + k] = pattern(first + i, k);
    uint8_t lab[8 + 16];
    put_be32(lab, 0x00000801);
    put_be32(lab + 4, (uint32_t)n_labels);
    memcpy(lab + 8, labels, (size_t)n_labels);
    char name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte%s", prefix, gz ? ".gz" : "");
    (gz ? write_gz : write_bytes)(dir, name, img, (size_t)size);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte%s", prefix, gz ? ".gz" : "");
    (gz ? write_gz : write_bytes)(dir, name, lab, (size_t)(8 + n_labels));
    free(img);
}

// 28 -> 32 reflect padding by a table: padded row/column p comes from source index REFLECT[p]
static int reflect_table(int p) { return p < 2 ? 2 - p : p < 30 ? p - 2 : 56 - p; }

static int check_idx_pixels(const Dataset *ds, int first, const char *what) {
    long bad = 0;
    for (int i = 0; i < ds->n; i++)
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 32; x++)
                bad += ds->pixels[(long)i * 1024 + y * 32 + x] != pattern(first + i, reflect_table(y) * 28 + reflect_table(x));
    return check_true(bad == 0, "%s: %ld padded pixels differ from ReflectionPad2d(2)", what, bad);
}

static int data_idx(void) {
    char dir[64];
    make_temp_dir(dir);
    uint8_t train_labels[3] = {9, 0, 4}, test_labels[2] = {1, 7};
    write_idx(dir, "train", 3, 3, 0x00000803, train_labels, 0, true, 0);    // gzip
    write_idx(dir, "t10k", 2, 2, 0x00000803, test_labels, 5, false, 0);     // plain
    Dataset ds;
    char err[ERR_SIZE];
    int fails = 0;
    if (!check_true(dataset_load(&ds, "fashion-mnist", dir, "train", err, ERR_SIZE) == 0, "fashion-mnist .gz loads: %s", err)) {
        fails += check_true(ds.n == 3 && ds.c == 1 && ds.h == 32 && ds.w == 32, "padded shape (%d, %d, %d, %d)", ds.n,
                            ds.c, ds.h, ds.w);
        // corner by hand: padded (0, 0) mirrors source (2, 2); padded (31, 30) mirrors (25, 26)
        fails += check_true(ds.pixels[0] == pattern(0, 2 * 28 + 2) && ds.pixels[31 * 32 + 30] == pattern(0, 25 * 28 + 26),
                            "reflected corners");
        fails += check_idx_pixels(&ds, 0, "fashion-mnist train");
        fails += check_true(ds.labels[0] == 9 && ds.labels[2] == 4, "labels %d %d", ds.labels[0], ds.labels[2]);
        fails += check_true(ds.family == FAMILY_CIFAR && ds.input_size == 32 && ds.n_classes == 10 &&
                                !strcmp(ds.name, "fashion-mnist"), "family CIFAR, input 32, 10 classes");
        float want[2] = {0.2860f, 0.3530f}, got[2] = {ds.mean[0], ds.std[0]};
        fails += check_close("fashion-mnist mean, std", got, want, 2, 0, 0);
        dataset_free(&ds);
    } else fails++;
    if (!check_true(dataset_load(&ds, "mnist", dir, "test", err, ERR_SIZE) == 0, "mnist plain IDX loads: %s", err)) {
        fails += check_idx_pixels(&ds, 5, "mnist test");
        fails += check_true(ds.n == 2 && ds.labels[1] == 7, "mnist test labels");
        float want[2] = {0.1307f, 0.3081f}, got[2] = {ds.mean[0], ds.std[0]};
        fails += check_close("mnist mean, std", got, want, 2, 0, 0);
        dataset_free(&ds);
    } else fails++;
    remove_tree(dir);
    return fails;
}

// ---- image folders ----
static void image_pattern(uint8_t *hwc, int w, int h, int comp, int seed) {
    for (int i = 0; i < w * h * comp; i++) hwc[i] = (uint8_t)((i * 13 + seed * 29) & 255);
}

static void write_png(const char *dir, const char *name, int w, int h, int comp, int seed) {
    uint8_t *hwc = malloc((size_t)w * h * comp);
    image_pattern(hwc, w, h, comp, seed);
    char path[1024];
    sub_path(path, dir, name);
    if (!stbi_write_png(path, w, h, comp, hwc, w * comp)) abort();
    free(hwc);
}

static void write_constant_png(const char *dir, const char *name, int w, int h, const uint8_t rgb[3]) {
    uint8_t *hwc = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h; i++) memcpy(hwc + 3 * i, rgb, 3);
    char path[1024];
    sub_path(path, dir, name);
    if (!stbi_write_png(path, w, h, 3, hwc, w * 3)) abort();
    free(hwc);
}

// Compares stored image i (3, 32, 32) with the pattern written as (32, 32, comp) HWC.
static long folder_mismatches(const Dataset *ds, int i, int comp, int seed) {
    uint8_t hwc[32 * 32 * 3];
    image_pattern(hwc, 32, 32, comp, seed);
    long bad = 0;
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < 32 * 32; p++) bad += ds->pixels[(long)i * 3072 + c * 1024 + p] != hwc[p * comp + (comp == 3 ? c : 0)];
    return bad;
}

static int data_folder(void) {
    char dir[64], path[1024];
    make_temp_dir(dir);
    make_dir(dir, "train");
    make_dir(dir, "test");
    sub_path(path, dir, "train");
    make_dir(path, "dog");   // created first: order must come from sorting, not creation
    make_dir(path, "cat");
    sub_path(path, dir, "train/cat");
    write_png(path, "b.png", 32, 32, 3, 1);
    write_png(path, "a.png", 32, 32, 3, 2);
    write_bytes(path, "notes.txt", "not an image", 12);
    sub_path(path, dir, "train/dog");
    write_png(path, "x.png", 32, 32, 1, 3);   // grayscale: expanded to 3 equal channels
    sub_path(path, dir, "test");
    make_dir(path, "cat");
    sub_path(path, dir, "test/cat");
    write_png(path, "t.png", 32, 32, 3, 4);

    Dataset ds;
    char err[ERR_SIZE];
    int fails = 0;
    if (!check_true(dataset_load(&ds, "folder", dir, "train", err, ERR_SIZE) == 0, "folder train loads: %s", err)) {
        fails += check_true(ds.n == 3 && ds.c == 3 && ds.h == 32 && ds.n_classes == 2, "n %d (txt skipped), c %d, classes %d",
                            ds.n, ds.c, ds.n_classes);
        fails += check_true(ds.labels[0] == 0 && ds.labels[1] == 0 && ds.labels[2] == 1, "labels cat, cat, dog: %d %d %d",
                            ds.labels[0], ds.labels[1], ds.labels[2]);
        long bad = folder_mismatches(&ds, 0, 3, 2) + folder_mismatches(&ds, 1, 3, 1);
        fails += check_true(bad == 0, "cat/a.png then cat/b.png round-trip: %ld bytes differ", bad);
        bad = folder_mismatches(&ds, 2, 1, 3);
        fails += check_true(bad == 0, "gray dog/x.png expanded to 3 channels: %ld bytes differ", bad);
        fails += check_true(ds.family == FAMILY_CIFAR && ds.input_size == 32 && fabsf(ds.mean[0] - 125.3f / 255) < 1e-7f,
                            "32x32 folder: CIFAR family and mean");
        dataset_free(&ds);
    } else fails++;
    if (!check_true(dataset_load(&ds, "folder", dir, "test", err, ERR_SIZE) == 0, "folder test split: %s", err)) {
        fails += check_true(ds.n == 1 && folder_mismatches(&ds, 0, 3, 4) == 0, "root/test used for split test");
        dataset_free(&ds);
    } else fails++;
    remove_tree(dir);

    // mixed small sizes -> STL family at 96 x 96; one large image -> IMAGENET family at 146 x 146
    const uint8_t rgb[3] = {200, 100, 30};
    for (int large = 0; large < 2; large++) {
        make_temp_dir(dir);
        make_dir(dir, "only");
        sub_path(path, dir, "only");
        write_constant_png(path, "p.png", large ? 200 : 40, large ? 160 : 30, rgb);
        write_constant_png(path, "q.png", 50, 60, rgb);
        if (!check_true(dataset_load(&ds, "folder", dir, "train", err, ERR_SIZE) == 0, "resized folder loads: %s", err)) {
            int side = large ? 146 : 96;
            fails += check_true(ds.h == side && ds.w == side && ds.family == (large ? FAMILY_IMAGENET : FAMILY_STL) &&
                                    ds.input_size == (large ? 128 : 64), "%s folder: stored %dx%d, input %d",
                                large ? "large" : "small", ds.h, ds.w, ds.input_size);
            long bad = 0;
            for (int i = 0; i < ds.n; i++)
                for (int c = 0; c < 3; c++)
                    for (long p = 0; p < (long)side * side; p++) bad += ds.pixels[((long)i * 3 + c) * side * side + p] != rgb[c];
            fails += check_true(bad == 0, "constant images stay constant through bicubic resize: %ld bytes differ", bad);
            dataset_free(&ds);
        } else fails++;
        remove_tree(dir);
    }
    return fails;
}

// ---- bad input: each load fails with -1, names the file, and leaves the dataset empty ----
static int expect_failure(const char *what, const char *kind, const char *dir, const char *split, const char *must_name) {
    Dataset ds;
    char err[ERR_SIZE] = "";
    int rc = dataset_load(&ds, kind, dir, split, err, ERR_SIZE);
    bool ok = rc == -1 && strstr(err, must_name) != NULL && ds.pixels == NULL && ds.labels == NULL && !strchr(err, '\n');
    if (rc == 0) dataset_free(&ds);
    return check_true(ok, "%-28s rc=%d names %s: \"%s\"", what, rc, must_name, err);
}

static int data_bad_input(void) {
    char dir[64];
    int fails = 0;
    make_temp_dir(dir);
    int labels[8] = {0, 1, 2, 3, 4, 5, 6, 7}, bad_labels[2] = {3, 10};
    uint8_t *rec = cifar_records(1, 0, 2, labels, NULL);
    for (int b = 1; b <= 5; b++) {
        char name[32];
        snprintf(name, sizeof name, "data_batch_%d.bin", b);
        if (b != 4) write_bytes(dir, name, rec, 3073);   // batch 4 missing
    }
    fails += expect_failure("cifar10 missing file", "cifar10", dir, "train", "data_batch_4.bin");
    write_bytes(dir, "data_batch_4.bin", rec, 3073);
    write_bytes(dir, "data_batch_3.bin", rec, 2 * 3073 - 5);   // a record cut short
    fails += expect_failure("cifar10 truncated record", "cifar10", dir, "train", "data_batch_3.bin");
    free(rec);
    rec = cifar_records(1, 0, 2, bad_labels, NULL);
    write_bytes(dir, "test_batch.bin", rec, 2 * 3073);
    fails += expect_failure("cifar10 label 10", "cifar10", dir, "test", "test_batch.bin");
    write_bytes(dir, "train.bin", rec, 3073);   // a CIFAR-10 record is the wrong size for CIFAR-100
    fails += expect_failure("cifar100 wrong record size", "cifar100", dir, "train", "train.bin");
    free(rec);
    write_bytes(dir, "test.bin", "", 0);
    fails += expect_failure("cifar100 empty file", "cifar100", dir, "test", "test.bin");
    int fine[1] = {5}, coarse[1] = {20};   // fuzz/regressions/cifar_stl/cifar100_coarse_20
    rec = cifar_records(2, 0, 1, fine, coarse);
    write_bytes(dir, "test.bin", rec, 3074);
    free(rec);
    fails += expect_failure("cifar100 coarse label 20", "cifar100", dir, "test", "has label 20 (must be < 20)");
    remove_tree(dir);

    make_temp_dir(dir);
    write_stl_images(dir, "train_X.bin", 0, 3);
    uint8_t two_labels[2] = {1, 2}, bad_stl[3] = {1, 11, 2};
    write_bytes(dir, "train_y.bin", two_labels, 2);
    fails += expect_failure("stl10 3 images, 2 labels", "stl10", dir, "train", "train_y.bin");
    write_bytes(dir, "train_y.bin", bad_stl, 3);
    fails += expect_failure("stl10 label 11", "stl10", dir, "train", "train_y.bin");
    write_bytes(dir, "test_X.bin", "short", 5);
    fails += expect_failure("stl10 wrong image size", "stl10", dir, "test", "test_X.bin");
    fails += expect_failure("stl10 missing unlabeled", "stl10", dir, "unlabeled", "unlabeled_X.bin");
    remove_tree(dir);

    make_temp_dir(dir);
    uint8_t idx_labels[3] = {1, 2, 3}, idx_bad[3] = {1, 12, 3};
    write_idx(dir, "train", 3, 3, 0x00000801, idx_labels, 0, true, 0);
    fails += expect_failure("idx bad magic", "fashion-mnist", dir, "train", "train-images-idx3-ubyte.gz");
    write_idx(dir, "train", 3, 2, 0x00000803, idx_labels, 0, true, 0);
    fails += expect_failure("idx 3 images, 2 labels", "fashion-mnist", dir, "train", "train-labels-idx1-ubyte.gz");
    write_idx(dir, "train", 3, 3, 0x00000803, idx_bad, 0, true, 0);
    fails += expect_failure("idx label 12", "mnist", dir, "train", "train-labels-idx1-ubyte.gz");
    write_idx(dir, "t10k", 3, 3, 0x00000803, idx_labels, 0, false, 400);
    fails += expect_failure("idx truncated payload", "mnist", dir, "test", "t10k-images-idx3-ubyte");
    char path[1024];
    sub_path(path, dir, "t10k-labels-idx1-ubyte");
    remove(path);
    fails += expect_failure("idx missing labels", "mnist", dir, "test", "t10k-labels-idx1-ubyte");
    // a gzip stream cut in the middle
    write_idx(dir, "train", 3, 3, 0x00000803, idx_labels, 0, true, 0);
    sub_path(path, dir, "train-images-idx3-ubyte.gz");
    FILE *f = fopen(path, "rb");
    uint8_t gz[4096];
    size_t gz_size = fread(gz, 1, sizeof gz, f);
    fclose(f);
    write_bytes(dir, "train-images-idx3-ubyte.gz", gz, gz_size / 2);
    fails += expect_failure("idx truncated gzip", "fashion-mnist", dir, "train", "train-images-idx3-ubyte.gz");
    remove_tree(dir);

    make_temp_dir(dir);
    fails += expect_failure("folder without classes", "folder", dir, "train", dir);
    make_dir(dir, "cls");
    fails += expect_failure("folder without images", "folder", dir, "train", dir);
    sub_path(path, dir, "cls");
    write_bytes(path, "broken.png", "\x89PNG garbage", 12);
    fails += expect_failure("folder undecodable image", "folder", dir, "train", "cls/broken.png");
    remove_tree(dir);
    fails += expect_failure("folder missing root", "folder", "/tmp/amdim-no-such-dir", "train", "/tmp/amdim-no-such-dir");
    fails += expect_failure("unknown kind", "imagenet-lmdb", "/tmp", "train", "imagenet-lmdb");
    return fails;
}

// ---- gzip streams: the CRC-32 / length trailer and what follows it are checked ----
static uint8_t *read_whole(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0) abort();
    *n = (size_t)ftell(f);
    rewind(f);
    uint8_t *buf = malloc(*n + 64);
    if (!buf || fread(buf, 1, *n, f) != *n) abort();
    fclose(f);
    return buf;
}

static int data_gzip_trailer(void) {
    char dir[64], path[1024];
    make_temp_dir(dir);
    uint8_t labels[3] = {1, 2, 3};
    write_idx(dir, "train", 3, 3, 0x00000803, labels, 0, true, 0);
    sub_path(path, dir, "train-images-idx3-ubyte.gz");
    size_t n;
    uint8_t *gz = read_whole(path, &n);
    write_bytes(dir, "train-images-idx3-ubyte.gz", gz, n - 4);
    int fails = expect_failure("gzip trailer cut by 4 bytes", "fashion-mnist", dir, "train", "truncated gzip stream");
    write_bytes(dir, "train-images-idx3-ubyte.gz", gz, n - 1);
    fails += expect_failure("gzip trailer cut by 1 byte", "fashion-mnist", dir, "train", "train-images-idx3-ubyte.gz");
    gz[n - 8] ^= 0x01;   // the trailer: CRC-32 (4 bytes) then the length (4 bytes)
    write_bytes(dir, "train-images-idx3-ubyte.gz", gz, n);
    fails += expect_failure("gzip CRC byte flipped", "fashion-mnist", dir, "train", "incorrect data check");
    gz[n - 8] ^= 0x01;
    gz[n - 3] ^= 0x01;
    write_bytes(dir, "train-images-idx3-ubyte.gz", gz, n);
    fails += expect_failure("gzip length byte flipped", "fashion-mnist", dir, "train", "incorrect length check");
    gz[n - 3] ^= 0x01;
    memcpy(gz + n, "junk", 4);
    write_bytes(dir, "train-images-idx3-ubyte.gz", gz, n + 4);
    fails += expect_failure("gzip trailing bytes", "fashion-mnist", dir, "train", "after the end of the gzip stream");
    // two gzip members (what `cat a.gz b.gz` makes) are one valid stream
    FILE *f = fopen(path, "wb");
    size_t half = 8 + 1000;
    uint8_t *plain = malloc(16 + 3 * 784);
    put_be32(plain, 0x00000803);
    put_be32(plain + 4, 3);
    put_be32(plain + 8, 28);
    put_be32(plain + 12, 28);
    for (long k = 0; k < 3 * 784; k++) plain[16 + k] = pattern(k / 784, k % 784);
    for (int part = 0; part < 2; part++) {
        uLongf cap = compressBound(16 + 3 * 784) + 64;
        uint8_t *out = malloc(cap);
        z_stream z = {0};
        if (deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) abort();
        z.next_in = plain + (part ? half : 0);
        z.avail_in = (uInt)(part ? 16 + 3 * 784 - half : half);
        z.next_out = out;
        z.avail_out = (uInt)cap;
        if (deflate(&z, Z_FINISH) != Z_STREAM_END) abort();
        if (fwrite(out, 1, cap - z.avail_out, f) != cap - z.avail_out) abort();
        deflateEnd(&z);
        free(out);
    }
    fclose(f);
    Dataset ds;
    char err[ERR_SIZE] = "";
    int rc = dataset_load(&ds, "fashion-mnist", dir, "train", err, ERR_SIZE);
    fails += check_true(rc == 0 && ds.n == 3, "two-member gzip loads 3 images: %s", err);
    if (rc == 0) {
        fails += check_idx_pixels(&ds, 0, "two-member gzip");
        dataset_free(&ds);
    }
    free(plain);
    free(gz);
    remove_tree(dir);
    return fails;
}

// ---- IDX headers that lie: refused before anything the size of the claim is allocated ----
static int data_idx_lying_header(void) {
    int fails = 0;
    for (int gz = 0; gz < 2; gz++) {
        char dir[64];
        make_temp_dir(dir);
        uint8_t img[31] = {0}, lab[12] = {0};   // 2^31 - 1 images claimed by 31 bytes
        put_be32(img, 0x00000803);
        put_be32(img + 4, 0x7fffffff);
        put_be32(img + 8, 28);
        put_be32(img + 12, 28);
        put_be32(lab, 0x00000801);
        put_be32(lab + 4, 0x7fffffff);
        (gz ? write_gz : write_bytes)(dir, gz ? "train-images-idx3-ubyte.gz" : "train-images-idx3-ubyte", img, sizeof img);
        (gz ? write_gz : write_bytes)(dir, gz ? "train-labels-idx1-ubyte.gz" : "train-labels-idx1-ubyte", lab, sizeof lab);
        double t0 = now_seconds();
        fails += expect_failure(gz ? "idx .gz claims 2^31-1 images" : "idx claims 2^31-1 images", "mnist", dir,
                                "train", "claims 1683627179248 bytes of pixels");
        double dt = now_seconds() - t0;
        fails += check_true(dt < 0.5, "refused in %.3f s (< 0.5 s: no 1.7 TB allocation, no reading past the data)", dt);
        // a claim that is true for the images but not for the labels
        uint8_t img1[16 + 784], lab1[8 + 5];
        memcpy(img1, img, 16);
        put_be32(img1 + 4, 1);
        memset(img1 + 16, 7, 784);
        put_be32(lab1, 0x00000801);
        put_be32(lab1 + 4, 1);
        memset(lab1 + 8, 1, 5);
        (gz ? write_gz : write_bytes)(dir, gz ? "train-images-idx3-ubyte.gz" : "train-images-idx3-ubyte", img1, sizeof img1);
        (gz ? write_gz : write_bytes)(dir, gz ? "train-labels-idx1-ubyte.gz" : "train-labels-idx1-ubyte", lab1, sizeof lab1);
        fails += expect_failure("idx labels with 4 extra bytes", "mnist", dir, "train", "train-labels-idx1-ubyte");
        remove_tree(dir);
    }
    return fails;
}

// ---- single images: malformed files made here, each refused with its reason (data/formats.h) ----
typedef struct { uint8_t *data; size_t n, cap; } MemFile;

static void mem_append(MemFile *m, const void *p, size_t k) {
    if (m->n + k > m->cap) {
        m->cap = (m->n + k) * 2 + 64;
        m->data = realloc(m->data, m->cap);
        if (!m->data) abort();
    }
    memcpy(m->data + m->n, p, k);
    m->n += k;
}

static void mem_write(void *ctx, void *data, int size) { mem_append(ctx, data, (size_t)size); }

// JPEG by libjpeg-turbo (stb_image_write's JPEG writer shifts a negative int: UBSan stops it)
static void jpeg_encode(MemFile *m, int w, int h, const uint8_t *rgb, int quality) {
    tjhandle tj = tjInitCompress();
    unsigned char *jpg = NULL;
    unsigned long size = 0;
    if (!tj || tjCompress2(tj, rgb, w, 0, h, TJPF_RGB, &jpg, &size, TJSAMP_444, quality, 0)) abort();
    mem_append(m, jpg, size);
    tjFree(jpg);
    tjDestroy(tj);
}

static void png_chunk(MemFile *m, const char *type, const void *data, uint32_t len, uint32_t claimed_len) {
    uint8_t head[8];
    put_be32(head, claimed_len);
    memcpy(head + 4, type, 4);
    mem_append(m, head, 8);
    mem_append(m, data, len);
    uint32_t crc = (uint32_t)crc32(crc32(0, (const Bytef *)type, 4), data, len);
    uint8_t tail[4];
    put_be32(tail, crc);
    mem_append(m, tail, 4);
}

static void png_ihdr(MemFile *m, uint32_t w, uint32_t h) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    uint8_t ihdr[13] = {0};
    put_be32(ihdr, w);
    put_be32(ihdr + 4, h);
    ihdr[8] = 8;   // 8-bit grayscale, no interlace
    mem_append(m, sig, 8);
    png_chunk(m, "IHDR", ihdr, 13, 13);
}

// A real PNG rebuilt with only `keep` bytes of its IDAT data (chunk CRCs valid).
static MemFile png_cut_idat(const MemFile *png, size_t keep) {
    MemFile out = {0};
    mem_append(&out, png->data, 8);
    for (size_t pos = 8; pos + 12 <= png->n;) {
        uint32_t len = (uint32_t)png->data[pos] << 24 | (uint32_t)png->data[pos + 1] << 16 |
                       (uint32_t)png->data[pos + 2] << 8 | png->data[pos + 3];
        char type[5] = {0};
        memcpy(type, png->data + pos + 4, 4);
        uint32_t k = !strcmp(type, "IDAT") && keep < len ? (uint32_t)keep : len;
        png_chunk(&out, type, png->data + pos + 8, k, k);
        pos += 12 + len;
    }
    return out;
}

static int expect_image_refused(const char *what, const uint8_t *buf, size_t n, bool full, const char *must_say) {
    char why[256] = "";
    uint8_t *dst = malloc(3 * 146 * 146);
    int w = 0, h = 0;
    double t0 = now_seconds();
    int rc = full ? image_decode(buf, n, 146, true, dst, why, sizeof why) : image_header(buf, n, &w, &h, why, sizeof why);
    double dt = now_seconds() - t0;
    free(dst);
    return check_true(rc == -1 && strstr(why, must_say) && dt < 1.0, "%-34s refused in %.3f s, says \"%s\": \"%s\"",
                      what, dt, must_say, why);
}

static int data_image_limits(void) {
    int fails = 0;
    // (a) a DHT segment declaring 16 x 32 = 512 codes (stb_image 2.27 writes past its 256-entry table)
    uint8_t dht[7 + 16] = {0xff, 0xd8, 0xff, 0xc4, 0x00, 0x13, 0x00};
    memset(dht + 7, 32, 16);
    fails += expect_image_refused("(a) JPEG DHT with 512 codes", dht, sizeof dht, false, "Huffman");
    fails += expect_image_refused("(a) JPEG DHT with 512 codes", dht, sizeof dht, true, "Huffman");

    // (b) an IDAT chunk claiming 2^31 - 16 bytes that are not there
    MemFile b = {0};
    png_ihdr(&b, 1, 1);
    png_chunk(&b, "IDAT", "\x78\x9c", 2, 0x7ffffff0u);
    fails += expect_image_refused("(b) PNG chunk length past the end", b.data, b.n, false, "run past the end");
    fails += expect_image_refused("(b) PNG chunk length past the end", b.data, b.n, true, "run past the end");
    free(b.data);

    // (c) a small real JPEG whose SOF claims 16384 x 16384
    uint8_t pix[16 * 16 * 3];
    for (int i = 0; i < 16 * 16 * 3; i++) pix[i] = (uint8_t)(i * 7);
    MemFile jpg = {0};
    jpeg_encode(&jpg, 16, 16, pix, 90);
    size_t sof = 2;
    while (sof + 9 < jpg.n && !(jpg.data[sof] == 0xff && jpg.data[sof + 1] == 0xc0)) sof++;
    fails += check_true(sof + 9 < jpg.n, "SOF0 found at byte %zu of the %zu-byte JPEG", sof, jpg.n);
    uint8_t side16k[2] = {0x40, 0x00};
    memcpy(jpg.data + sof + 5, side16k, 2);
    memcpy(jpg.data + sof + 7, side16k, 2);
    fails += expect_image_refused("(c) JPEG claiming 16384x16384", jpg.data, jpg.n, false, "IMAGE_MAX_PIXELS");
    fails += expect_image_refused("(c) JPEG claiming 16384x16384", jpg.data, jpg.n, true, "IMAGE_MAX_PIXELS");
    free(jpg.data);

    // (d) a real 8 x 65000 image: its resize would be 146 x 1186250 floats per channel
    uint8_t *tall = calloc(8 * 65000, 1);
    MemFile d = {0};
    if (!tall || !stbi_write_png_to_func(mem_write, &d, 8, 65000, 1, tall, 8)) abort();
    fails += expect_image_refused("(d) PNG of 8x65000", d.data, d.n, false, "IMAGE_MAX_ASPECT");
    fails += expect_image_refused("(d) PNG of 8x65000", d.data, d.n, true, "IMAGE_MAX_ASPECT");
    free(tall);
    free(d.data);
    MemFile big = {0};   // 5000 x 5000 claimed by IHDR
    png_ihdr(&big, 5000, 5000);
    png_chunk(&big, "IEND", "", 0, 0);
    fails += expect_image_refused("PNG claiming 5000x5000", big.data, big.n, false, "IMAGE_MAX_PIXELS");
    free(big.data);

    // truncated and damaged PNGs get a reason
    uint8_t gray[32 * 32];
    for (int i = 0; i < 32 * 32; i++) gray[i] = (uint8_t)(i * 5);
    MemFile png = {0};
    if (!stbi_write_png_to_func(mem_write, &png, 32, 32, 1, gray, 32)) abort();
    fails += expect_image_refused("PNG cut in half", png.data, png.n / 2, true, "truncated");
    fails += expect_image_refused("PNG without its IEND", png.data, png.n - 12, false, "without an IEND chunk");
    MemFile cut = png_cut_idat(&png, 40);
    fails += expect_image_refused("PNG with half its image data", cut.data, cut.n, true, "cut short");
    fails += check_true(image_header(cut.data, cut.n, &(int){0}, &(int){0}, NULL, 0) == 0,
                        "  ... whose header alone is fine (the decode pass finds it)");
    free(cut.data);
    png.data[png.n - 20] ^= 0x10;   // inside IDAT's data
    fails += expect_image_refused("PNG with a flipped data bit", png.data, png.n, true, "CRC mismatch");
    png.data[png.n - 20] ^= 0x10;
    uint8_t dst[3 * 32 * 32];
    char why[256] = "";
    fails += check_true(image_decode(png.data, png.n, 32, false, dst, why, sizeof why) == 0 && dst[5] == gray[5] &&
                            dst[2048 + 1023] == gray[1023], "the intact PNG decodes: %s", why);
    free(png.data);

    // JPEG: decoded by libjpeg-turbo; a truncated one is refused (libjpeg would fill it with grey)
    uint8_t flat[32 * 32 * 3];
    for (int i = 0; i < 32 * 32; i++) memcpy(flat + 3 * i, (uint8_t[3]){200, 100, 30}, 3);
    MemFile j = {0};
    jpeg_encode(&j, 32, 32, flat, 95);
    int worst = 0;
    if (!check_true(image_decode(j.data, j.n, 32, false, dst, why, sizeof why) == 0, "flat JPEG decodes: %s", why)) {
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < 1024; i++) {
                int diff = abs(dst[c * 1024 + i] - flat[c]);
                worst = diff > worst ? diff : worst;
            }
        fails += check_true(worst <= 3, "flat JPEG: worst channel error %d <= 3", worst);
    } else fails++;
    size_t sos = 2;   // cut inside the entropy-coded data, after the tables
    while (sos + 2 < j.n && !(j.data[sos] == 0xff && j.data[sos + 1] == 0xda)) sos++;
    fails += expect_image_refused("JPEG cut inside its scan", j.data, sos + (j.n - sos) / 2, true, "JPEG data");
    fails += expect_image_refused("not an image", (const uint8_t *)"GIF89a-not-ours", 15, false, "not a JPEG, PNG or BMP");
    free(j.data);
    return fails;
}

// ---- image folders without train/ and test/: a deterministic hold-out ----
static int data_folder_holdout(void) {
    char dir[64], path[1024];
    make_temp_dir(dir);
    make_dir(dir, "a");
    make_dir(dir, "b");
    sub_path(path, dir, "a");
    for (int i = 0; i < 12; i++) {   // a/00.png .. a/11.png: index 9 is held out
        char name[16];
        snprintf(name, sizeof name, "%02d.png", i);
        write_png(path, name, 32, 32, 3, 100 + i);
    }
    sub_path(path, dir, "b");
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "%02d.png", i);
        write_png(path, name, 32, 32, 3, 200 + i);
    }
    Dataset tr, te;
    char err[ERR_SIZE] = "";
    int fails = 0;
    int rc_tr = dataset_load(&tr, "folder", dir, "train", err, ERR_SIZE);
    fails += check_true(rc_tr == 0 && tr.n == 14 && tr.n_classes == 2, "hold-out train: 11 + 3 images, 2 classes: %s", err);
    int rc_te = dataset_load(&te, "folder", dir, "test", err, ERR_SIZE);
    fails += check_true(rc_te == 0 && te.n == 1 && te.labels[0] == 0 && folder_mismatches(&te, 0, 3, 109) == 0,
                        "hold-out test: exactly a/09.png: %s", err);
    if (rc_tr == 0) {
        fails += check_true(strstr(tr.name, "every 10th image held out") != NULL, "train name says so: \"%s\"", tr.name);
        long bad = folder_mismatches(&tr, 9, 3, 110) + folder_mismatches(&tr, 11, 3, 200);
        fails += check_true(bad == 0, "train skips a/09.png: slot 9 is a/10.png, slot 11 is b/00.png (%ld bytes differ)", bad);
        dataset_free(&tr);
    }
    if (rc_te == 0) {
        fails += check_true(strstr(te.name, "every 10th image held out") != NULL, "test name says so: \"%s\"", te.name);
        dataset_free(&te);
    }
    make_dir(dir, "train");   // only one of train/ and test/: refused for both splits
    sub_path(path, dir, "train");
    make_dir(path, "a");
    fails += expect_failure("folder with train/ only", "folder", dir, "train", "has train/ but no test/");
    fails += expect_failure("folder with train/ only", "folder", dir, "test", "has train/ but no test/");
    remove_tree(dir);
    make_temp_dir(dir);   // too few images for a held-out image
    make_dir(dir, "a");
    sub_path(path, dir, "a");
    write_png(path, "x.png", 32, 32, 3, 1);
    fails += expect_failure("hold-out test split empty", "folder", dir, "test", "held-out split");
    remove_tree(dir);
    return fails;
}

// ---- image folders: the first bad image by name is reported, whatever the threads did ----
static int data_folder_bad_images(void) {
    char dir[64], path[1024];
    make_temp_dir(dir);
    make_dir(dir, "c");
    sub_path(path, dir, "c");
    for (int i = 0; i < 40; i++) {
        char name[16];
        snprintf(name, sizeof name, "%02d.png", i);
        write_png(path, name, 32, 32, 3, i);
    }
    uint8_t dht[7 + 16] = {0xff, 0xd8, 0xff, 0xc4, 0x00, 0x13, 0x00};
    memset(dht + 7, 32, 16);
    write_bytes(path, "17.jpg", dht, sizeof dht);
    write_bytes(path, "33.jpg", dht, sizeof dht);
    int fails = expect_failure("folder: the first bad image", "folder", dir, "train", "c/17.jpg: cannot read the image");
    remove_tree(dir);
    return fails;
}

// ---- augmentation ----
// A synthetic dataset of n random images (c, side, side) in memory, freed with dataset_free.
static void synthetic_dataset(Dataset *ds, int n, int c, int side, AugFamily family, int input_size, uint64_t seed) {
    memset(ds, 0, sizeof *ds);
    ds->n = n;
    ds->c = c;
    ds->h = ds->w = side;
    ds->pixels = malloc((size_t)n * c * side * side);
    ds->labels = malloc(sizeof(int) * n);
    Rng rng;
    rng_seed(&rng, seed);
    for (long i = 0; i < (long)n * c * side * side; i++) ds->pixels[i] = (uint8_t)(rng_u64(&rng) >> 56);
    for (int i = 0; i < n; i++) ds->labels[i] = i % 10;
    ds->n_classes = 10;
    ds->family = family;
    ds->input_size = input_size;
    for (int k = 0; k < 3; k++) {
        ds->mean[k] = 0.4f + 0.05f * k;
        ds->std[k] = 0.25f + 0.01f * k;
    }
    snprintf(ds->name, sizeof ds->name, "synthetic");
}

static int aug_seeded(void) {
    struct { int c, side, input; AugFamily family; const char *name; } cases[] = {
        {3, 32, 32, FAMILY_CIFAR, "cifar"}, {1, 32, 32, FAMILY_CIFAR, "cifar 1-channel"},
        {3, 96, 64, FAMILY_STL, "stl"}, {3, 146, 128, FAMILY_IMAGENET, "imagenet"}};
    int fails = 0;
    for (int k = 0; k < 4; k++) {
        Dataset ds;
        synthetic_dataset(&ds, 2, cases[k].c, cases[k].side, cases[k].family, cases[k].input, 10 + k);
        long f = (long)ds.c * ds.input_size * ds.input_size;
        float *v = malloc(sizeof(float) * 6 * f);   // views of seed 42, seed 42 again, seed 43
        augment_pair(&ds, 1, 42, v, v + f);
        augment_pair(&ds, 1, 42, v + 2 * f, v + 3 * f);
        augment_pair(&ds, 1, 43, v + 4 * f, v + 5 * f);
        fails += check_true(!memcmp(v, v + 2 * f, sizeof(float) * 2 * f), "%s: same seed -> bit-identical views", cases[k].name);
        fails += check_true(memcmp(v, v + 4 * f, sizeof(float) * 2 * f) != 0, "%s: another seed -> other views", cases[k].name);
        fails += check_true(memcmp(v, v + f, sizeof(float) * f) != 0, "%s: the two views of one seed differ", cases[k].name);
        long finite = 0;
        for (long i = 0; i < 6 * f; i++) finite += isfinite(v[i]);
        fails += check_true(finite == 6 * f, "%s: %ld of %ld values finite", cases[k].name, finite, 6 * f);
        free(v);
        dataset_free(&ds);
    }
    return fails;
}

// The drawn parameters stay within the recipe's ranges, with about the recipe's frequencies.
static int aug_param_ranges(void) {
    Dataset cifar, stl;
    synthetic_dataset(&cifar, 1, 3, 32, FAMILY_CIFAR, 32, 1);
    synthetic_dataset(&stl, 1, 3, 96, FAMILY_STL, 64, 2);
    const int draws = 2000;
    int translate = 0, jitter = 0, gray = 0, flips = 0, out_of_range = 0, dx_seen[9] = {0};
    double max_hue = 0, min_area = 1, max_area = 0, min_ratio = 10, max_ratio = 0;
    for (int s = 0; s < draws; s++) {
        PairParams p, q;
        augment_draw_params(&cifar, (uint64_t)s, &p);
        augment_draw_params(&stl, (uint64_t)s, &q);
        flips += p.flip;
        for (int k = 0; k < 2; k++) {
            ViewParams *v = &p.view[k], *w = &q.view[k];
            translate += v->translate;
            jitter += v->jitter;
            gray += v->gray;
            if (v->translate) {
                if (abs(v->dx) > 4 || abs(v->dy) > 4) out_of_range++;
                else dx_seen[v->dx + 4]++;
            }
            if (v->jitter) {
                out_of_range += v->brightness < 0.6f || v->brightness > 1.4f || v->contrast < 0.6f || v->contrast > 1.4f ||
                                v->saturation < 0.6f || v->saturation > 1.4f || fabsf(v->hue) > 0.2f;
                max_hue = fmax(max_hue, fabs(v->hue));
                int seen = 0;
                for (int i = 0; i < 4; i++) seen |= 1 << v->order[i];
                out_of_range += seen != 15;
            }
            out_of_range += w->crop_top < 0 || w->crop_left < 0 || w->crop_top + w->crop_h > 96 || w->crop_left + w->crop_w > 96;
            double area = (double)w->crop_h * w->crop_w / (96 * 96), ratio = (double)w->crop_w / w->crop_h;
            min_area = fmin(min_area, area);
            max_area = fmax(max_area, area);
            min_ratio = fmin(min_ratio, ratio);
            max_ratio = fmax(max_ratio, ratio);
        }
    }
    int missing_shift = 0;
    for (int i = 0; i < 9; i++) missing_shift += dx_seen[i] == 0;
    int fails = check_true(out_of_range == 0, "%d parameters out of range", out_of_range);
    fails += check_true(missing_shift == 0, "every dx in [-4, 4] drawn");
    // 4000 views: a binomial frequency is within +-0.03 of p with overwhelming probability (4.7 sigma for p = 0.8)
    fails += check_true(fabs(flips / (double)draws - 0.5) < 0.045, "flip frequency %.3f ~ 0.5", flips / (double)draws);
    fails += check_true(fabs(translate / (2.0 * draws) - 0.8) < 0.03, "translate frequency %.3f ~ 0.8", translate / (2.0 * draws));
    fails += check_true(fabs(jitter / (2.0 * draws) - 0.8) < 0.03, "jitter frequency %.3f ~ 0.8", jitter / (2.0 * draws));
    fails += check_true(fabs(gray / (2.0 * draws) - 0.25) < 0.03, "grayscale frequency %.3f ~ 0.25", gray / (2.0 * draws));
    fails += check_true(max_hue > 0.19, "hue reaches %.3f of 0.2", max_hue);
    // rounding the crop sides to integers moves area and ratio slightly past the drawn ranges
    fails += check_true(min_area > 0.28 && min_area < 0.33 && max_area > 0.95 && max_area <= 1.0,
                        "crop area fraction in [%.3f, %.3f] ~ [0.3, 1]", min_area, max_area);
    fails += check_true(min_ratio > 0.68 && min_ratio < 0.75 && max_ratio > 1.3 && max_ratio < 1.45,
                        "crop aspect ratio in [%.3f, %.3f] ~ [0.7, 1.4]", min_ratio, max_ratio);
    dataset_free(&cifar);
    dataset_free(&stl);
    return fails;
}

static int aug_translate(void) {
    // literal: one 5 x 5 plane holding 0..24, shifted by dx = -2: row 0 reads columns 2, 1, 0, 1, 2
    float small[25], shifted[25];
    for (int i = 0; i < 25; i++) small[i] = (float)i;
    translate_reflect(small, 1, 5, -2, 0, shifted);
    float want_row0[5] = {2, 1, 0, 1, 2}, want_row4[5] = {22, 21, 20, 21, 22};
    int fails = check_close("5x5 dx=-2 row 0", shifted, want_row0, 5, 0, 0);
    fails += check_close("5x5 dx=-2 row 4", shifted + 20, want_row4, 5, 0, 0);
    translate_reflect(small, 1, 5, 1, 3, shifted);   // column 0 reads column 1 of rows 3, 4, 3 (5 mirrored), 2, 1
    float want_col0[5] = {16, 21, 16, 11, 6}, got_col0[5];
    for (int y = 0; y < 5; y++) got_col0[y] = shifted[y * 5];
    fails += check_close("5x5 dx=1 dy=3 column 0", got_col0, want_col0, 5, 0, 0);

    // 32 x 32, 3 channels: against an explicitly mirrored 40 x 40 padded copy, cropped at (4 + dx, 4 + dy)
    enum { S = 32, P = 40 };
    float *src = malloc(sizeof(float) * 3 * S * S), *pad = malloc(sizeof(float) * 3 * P * P);
    float *got = malloc(sizeof(float) * 3 * S * S), *want = malloc(sizeof(float) * 3 * S * S);
    for (int i = 0; i < 3 * S * S; i++) src[i] = (float)i;
    for (int c = 0; c < 3; c++) {
        float *pp = pad + c * P * P;
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) pp[(y + 4) * P + x + 4] = src[(c * S + y) * S + x];
        for (int y = 4; y < 4 + S; y++)
            for (int k = 1; k <= 4; k++) {   // mirror about the first and last source columns (4 and 35)
                pp[y * P + 4 - k] = pp[y * P + 4 + k];
                pp[y * P + 35 + k] = pp[y * P + 35 - k];
            }
        for (int k = 1; k <= 4; k++) {       // then whole padded rows about rows 4 and 35
            memcpy(pp + (4 - k) * P, pp + (4 + k) * P, sizeof(float) * P);
            memcpy(pp + (35 + k) * P, pp + (35 - k) * P, sizeof(float) * P);
        }
    }
    int shifts[4][2] = {{3, -2}, {-4, 4}, {0, 0}, {4, -4}};
    for (int t = 0; t < 4; t++) {
        int dx = shifts[t][0], dy = shifts[t][1];
        translate_reflect(src, 3, S, dx, dy, got);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++) want[(c * S + y) * S + x] = pad[(c * P + 4 + dy + y) * P + 4 + dx + x];
        char what[64];
        snprintf(what, sizeof what, "reflect shift dx=%d dy=%d", dx, dy);
        fails += check_close(what, got, want, 3 * S * S, 0, 0);
    }
    free(src);
    free(pad);
    free(got);
    free(want);
    return fails;
}

static int aug_bicubic(void) {
    int fails = 0;
    // constant stays constant, up and down, with and without a crop box
    float cst[3 * 20 * 30], big[3 * 40 * 50], small[3 * 13 * 17], want_big[3 * 40 * 50];
    for (int i = 0; i < 3 * 20 * 30; i++) cst[i] = 0.37f;
    for (int i = 0; i < 3 * 40 * 50; i++) want_big[i] = 0.37f;
    resize_bicubic(cst, 3, 20, 30, 0, 0, 20, 30, 40, 50, big);
    fails += check_close("constant 20x30 -> 40x50", big, want_big, 3 * 40 * 50, 1e-6, 0);
    resize_bicubic(cst, 3, 20, 30, 3, 5, 11, 19, 13, 17, small);
    fails += check_close("constant box 11x19 -> 13x17", small, want_big, 3 * 13 * 17, 1e-6, 0);

    // one output by hand: 8 -> 16 columns, output 3 samples source x = 1.25: taps 0..3 with weights
    // (-0.10546875, 0.87890625, 0.26171875, -0.03515625) from Keys' kernel at a = -0.75
    float row[8] = {0.1f, 0.9f, 0.3f, 0.5f, 0.2f, 0.8f, 0.4f, 0.6f}, up[16];
    resize_bicubic(row, 1, 1, 8, 0, 0, 1, 8, 1, 16, up);
    float want_one = -0.10546875f * 0.1f + 0.87890625f * 0.9f + 0.26171875f * 0.3f - 0.03515625f * 0.5f;
    fails += check_close("8->16 output 3 by hand", &up[3], &want_one, 1, 1e-6, 0);

    // a ramp (x + 2y) / 200 (inside [0, 1], so never clamped) stays close to the ramp at the sampled positions, away from the clamped borders
    enum { N = 40 };
    float ramp[N * N];
    for (int y = 0; y < N; y++)
        for (int x = 0; x < N; x++) ramp[y * N + x] = (x + 2.0f * y) / 200.0f;
    int outs[2] = {64, 24};
    for (int t = 0; t < 2; t++) {
        int o = outs[t];
        float *got = malloc(sizeof(float) * o * o), *g = malloc(sizeof(float) * o * o), *w = malloc(sizeof(float) * o * o);
        resize_bicubic(ramp, 1, N, N, 0, 0, N, N, o, o, got);
        int m = 0;
        double scale = (double)N / o;
        for (int y = 0; y < o; y++)
            for (int x = 0; x < o; x++) {
                double sx = scale * (x + 0.5) - 0.5, sy = scale * (y + 0.5) - 0.5;
                if (sx < 2 || sy < 2 || sx > N - 3 || sy > N - 3) continue;   // every tap inside the image
                g[m] = got[y * o + x];
                w[m++] = (float)((sx + 2 * sy) / 200.0);
            }
        char what[64];
        snprintf(what, sizeof what, "ramp 40 -> %d interior", o);
        fails += check_close(what, g, w, m, 1e-3, 0);
        free(got);
        free(g);
        free(w);
    }
    return fails;
}

static int aug_color(void) {
    int fails = 0;
    enum { HW = 4 };
    // brightness scales and clamps
    float x[3 * HW] = {0.1f, 0.5f, 0.9f, 0.0f, 0.2f, 0.4f, 0.6f, 0.8f, 1.0f, 0.3f, 0.7f, 0.05f};
    float y[3 * HW], want[3 * HW];
    memcpy(y, x, sizeof x);
    adjust_brightness(y, 3, HW, 1.2f);
    for (int i = 0; i < 3 * HW; i++) want[i] = fminf(1.2f * x[i], 1.0f);
    fails += check_close("brightness 1.2 (clamped)", y, want, 3 * HW, 1e-6, 0);
    // contrast 0.5: halfway to the mean of the grayscale image
    double gray_mean = 0;
    for (int i = 0; i < HW; i++) gray_mean += (0.299 * x[i] + 0.587 * x[HW + i] + 0.114 * x[2 * HW + i]) / HW;
    memcpy(y, x, sizeof x);
    adjust_contrast(y, 3, HW, 0.5f);
    for (int i = 0; i < 3 * HW; i++) want[i] = (float)(0.5 * x[i] + 0.5 * gray_mean);
    fails += check_close("contrast 0.5", y, want, 3 * HW, 1e-6, 0);
    // saturation 0 is the grayscale image; grayscale gives equal channels
    float g[3 * HW];
    memcpy(y, x, sizeof x);
    memcpy(g, x, sizeof x);
    adjust_saturation(y, 3, HW, 0.0f);
    grayscale(g, 3, HW);
    for (int i = 0; i < HW; i++)
        want[i] = want[HW + i] = want[2 * HW + i] = (float)(0.299 * x[i] + 0.587 * x[HW + i] + 0.114 * x[2 * HW + i]);
    fails += check_close("saturation 0 == gray", y, want, 3 * HW, 1e-6, 0);
    fails += check_close("grayscale equal channels", g, want, 3 * HW, 1e-6, 0);
    // hue: +1/3 turn takes red to green, green to blue; -1/3 takes red to blue; gray and shift 0 are unchanged
    float rgb[3 * HW] = {1, 0, 0.5f, 0.3f, 0, 1, 0.5f, 0.3f, 0, 0, 0.5f, 0.3f};   // red, green, gray, dark gray
    float hue_want[3 * HW] = {0, 0, 0.5f, 0.3f, 1, 0, 0.5f, 0.3f, 0, 1, 0.5f, 0.3f};
    memcpy(y, rgb, sizeof rgb);
    adjust_hue(y, 3, HW, 1.0f / 3);
    fails += check_close("hue +1/3: red->green->blue", y, hue_want, 3 * HW, 1e-6, 0);
    memcpy(y, rgb, sizeof rgb);
    adjust_hue(y, 3, HW, -1.0f / 3);
    float blue_first[3] = {0, 0, 1}, got_first[3] = {y[0], y[HW], y[2 * HW]};
    fails += check_close("hue -1/3: red->blue", got_first, blue_first, 3, 1e-6, 0);
    memcpy(y, x, sizeof x);
    adjust_hue(y, 3, HW, 0.0f);
    fails += check_close("hue 0 round-trips RGB->HSV->RGB", y, x, 3 * HW, 1e-6, 0);
    // 1-channel images: saturation and hue do nothing, contrast blends with the image mean
    float one[HW] = {0.2f, 0.4f, 0.6f, 1.0f}, one_want[HW];
    memcpy(y, one, sizeof one);
    adjust_saturation(y, 1, HW, 0.1f);
    adjust_hue(y, 1, HW, 0.2f);
    fails += check_close("1-channel: saturation, hue no-ops", y, one, HW, 0, 0);
    adjust_contrast(y, 1, HW, 1.5f);
    for (int i = 0; i < HW; i++) one_want[i] = fminf(fmaxf(1.5f * one[i] - 0.5f * 0.55f, 0), 1);
    fails += check_close("1-channel contrast 1.5", y, one_want, HW, 1e-6, 0);
    // normalise
    float mean[3] = {0.25f, 0.5f, 0.1f}, std[3] = {0.5f, 0.25f, 2.0f};
    memcpy(y, x, sizeof x);
    normalize(y, 3, HW, mean, std);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < HW; i++) want[c * HW + i] = (x[c * HW + i] - mean[c]) / std[c];
    fails += check_close("normalize", y, want, 3 * HW, 1e-6, 0);
    return fails;
}

// Un-normalises a view and checks that its three channels are equal (grayscale output).
static float channel_spread(const Dataset *ds, const float *v) {
    int hw = ds->input_size * ds->input_size;
    float worst = 0;
    for (int i = 0; i < hw; i++) {
        float r = v[i] * ds->std[0] + ds->mean[0], g = v[hw + i] * ds->std[1] + ds->mean[1];
        float b = v[2 * hw + i] * ds->std[2] + ds->mean[2];
        worst = fmaxf(worst, fmaxf(fabsf(r - g), fabsf(r - b)));
    }
    return worst;
}

static int aug_pair_structure(void) {
    Dataset ds;
    synthetic_dataset(&ds, 3, 3, 32, FAMILY_CIFAR, 32, 5);
    long f = 3 * 32 * 32;
    float *x1 = malloc(sizeof(float) * f), *x2 = malloc(sizeof(float) * f), *y1 = malloc(sizeof(float) * f);
    float *y2 = malloc(sizeof(float) * f), *src = malloc(sizeof(float) * f), *flipped = malloc(sizeof(float) * f);
    image_to_float(&ds, 2, src);
    memcpy(flipped, src, sizeof(float) * f);
    flip_horizontal(flipped, 3, 32, 32);
    normalize(src, 3, 32 * 32, ds.mean, ds.std);
    normalize(flipped, 3, 32 * 32, ds.mean, ds.std);
    int fails = 0, flips = 0, equal_views = 0, matches = 0, path_same = 0;
    const int seeds = 64;
    for (int s = 0; s < seeds; s++) {
        PairParams p;
        augment_draw_params(&ds, (uint64_t)s, &p);
        // the public call is exactly draw + apply
        augment_pair(&ds, 2, (uint64_t)s, x1, x2);
        augment_apply(&ds, 2, &p, y1, y2);
        path_same += !memcmp(x1, y1, sizeof(float) * f) && !memcmp(x2, y2, sizeof(float) * f);
        // with each view's own randomness switched off, both views are the source after the ONE shared flip
        for (int k = 0; k < 2; k++) p.view[k].translate = p.view[k].jitter = p.view[k].gray = false;
        augment_apply(&ds, 2, &p, y1, y2);
        flips += p.flip;
        equal_views += !memcmp(y1, y2, sizeof(float) * f);
        matches += !memcmp(y1, p.flip ? flipped : src, sizeof(float) * f);
    }
    fails += check_true(path_same == seeds, "augment_pair == draw_params + apply for %d of %d seeds", path_same, seeds);
    fails += check_true(equal_views == seeds && matches == seeds, "both views share the flip: %d/%d equal, %d/%d match",
                        equal_views, seeds, matches, seeds);
    fails += check_true(flips > 16 && flips < 48, "%d of %d pairs flipped", flips, seeds);

    // a view drawn with gray = true has equal channels; the translate of augment_apply is translate_reflect
    int checked_gray = 0;
    for (int s = 0; s < 200 && checked_gray < 3; s++) {
        PairParams p;
        augment_draw_params(&ds, (uint64_t)s, &p);
        if (!p.view[0].gray) continue;
        augment_pair(&ds, 0, (uint64_t)s, x1, x2);
        float spread = channel_spread(&ds, x1);
        fails += check_true(spread < 1e-6f, "seed %d: grayscale view channel spread %.2e", s, spread);
        checked_gray++;
    }
    fails += check_true(checked_gray == 3, "found 3 grayscale views");
    PairParams p = {.flip = false};
    p.view[0].translate = true;
    p.view[0].dx = 3;
    p.view[0].dy = -1;
    augment_apply(&ds, 2, &p, y1, y2);
    image_to_float(&ds, 2, x1);
    translate_reflect(x1, 3, 32, 3, -1, x2);
    normalize(x2, 3, 32 * 32, ds.mean, ds.std);
    fails += check_close("view = normalise(translate_reflect(image))", y1, x2, f, 0, 0);
    fails += check_close("untouched view = normalise(image)", y2, src, f, 0, 0);
    free(x1);
    free(x2);
    free(y1);
    free(y2);
    free(src);
    free(flipped);
    dataset_free(&ds);
    return fails;
}

static int aug_test_transform(void) {
    int fails = 0;
    Dataset ds;
    // CIFAR: normalise only
    synthetic_dataset(&ds, 2, 3, 32, FAMILY_CIFAR, 32, 7);
    float *x = malloc(sizeof(float) * 3 * 128 * 128), *want = malloc(sizeof(float) * 3 * 128 * 128);
    transform_test(&ds, 1, x);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 1024; i++)
            want[c * 1024 + i] = (ds.pixels[3072 + c * 1024 + i] / 255.0f - ds.mean[c]) / ds.std[c];
    fails += check_close("cifar test transform = normalise", x, want, 3072, 1e-6, 0);
    dataset_free(&ds);
    // STL: constant image through Resize(70) + CenterCrop(64) stays constant
    synthetic_dataset(&ds, 1, 3, 96, FAMILY_STL, 64, 8);
    memset(ds.pixels, 153, 3 * 96 * 96);
    transform_test(&ds, 0, x);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 64 * 64; i++) want[c * 4096 + i] = (0.6f - ds.mean[c]) / ds.std[c];
    fails += check_close("stl test transform of a constant", x, want, 3 * 4096, 1e-5, 0);
    dataset_free(&ds);
    // IMAGENET: the centre 128 x 128 of the stored 146 x 146 (offset 9)
    synthetic_dataset(&ds, 1, 3, 146, FAMILY_IMAGENET, 128, 9);
    transform_test(&ds, 0, x);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 128; y++)
            for (int i = 0; i < 128; i++)
                want[(c * 128 + y) * 128 + i] = (ds.pixels[(c * 146 + y + 9) * 146 + i + 9] / 255.0f - ds.mean[c]) / ds.std[c];
    fails += check_close("imagenet test transform = centre crop", x, want, 3 * 128 * 128, 1e-6, 0);
    dataset_free(&ds);
    free(x);
    free(want);
    return fails;
}

// ---- loader ----
typedef struct { float *x1, *x2; int *labels, *indices, batch; long epoch, position; } SavedBatch;

static void save_batch(SavedBatch *s, const Batch *b, long f) {
    s->batch = b->batch;
    s->epoch = b->epoch;
    s->position = b->position;
    s->x1 = malloc(sizeof(float) * b->batch * f);
    memcpy(s->x1, b->x1, sizeof(float) * b->batch * f);
    s->x2 = NULL;
    if (b->x2) {
        s->x2 = malloc(sizeof(float) * b->batch * f);
        memcpy(s->x2, b->x2, sizeof(float) * b->batch * f);
    }
    s->labels = malloc(sizeof(int) * b->batch);
    s->indices = malloc(sizeof(int) * b->batch);
    memcpy(s->labels, b->labels, sizeof(int) * b->batch);
    memcpy(s->indices, b->indices, sizeof(int) * b->batch);
}

static void free_saved(SavedBatch *s, int n) {
    for (int i = 0; i < n; i++) {
        free(s[i].x1);
        free(s[i].x2);
        free(s[i].labels);
        free(s[i].indices);
    }
}

static bool same_batch(const SavedBatch *a, const Batch *b, long f) {
    return a->batch == b->batch && a->epoch == b->epoch && a->position == b->position &&
           !memcmp(a->x1, b->x1, sizeof(float) * a->batch * f) &&
           (a->x2 == NULL) == (b->x2 == NULL) && (!a->x2 || !memcmp(a->x2, b->x2, sizeof(float) * a->batch * f)) &&
           !memcmp(a->labels, b->labels, sizeof(int) * a->batch) && !memcmp(a->indices, b->indices, sizeof(int) * a->batch);
}

enum { LOADER_N = 37, LOADER_B = 8, LOADER_RUN = 10 };   // 4 batches per epoch (drop_last), 10 batches = 2.5 epochs

// The reference run: 1 worker, LOADER_RUN batches.
static void reference_run(const Dataset *ds, uint64_t seed, SavedBatch *saved) {
    Loader *ld = loader_new(ds, LOADER_TRAIN_PAIRS, LOADER_B, seed, 1);
    Batch *b;
    for (int i = 0; i < LOADER_RUN && loader_next(ld, &b); i++) save_batch(&saved[i], b, 3 * 32 * 32);
    loader_free(ld);
}

static int loader_train_pairs(void) {
    Dataset ds;
    synthetic_dataset(&ds, LOADER_N, 3, 32, FAMILY_CIFAR, 32, 11);
    const long f = 3 * 32 * 32;
    SavedBatch ref[LOADER_RUN];
    reference_run(&ds, 7, ref);
    int fails = 0;
    Loader *ld = loader_new(&ds, LOADER_TRAIN_PAIRS, LOADER_B, 7, 3);
    fails += check_true(loader_batches_per_epoch(ld) == 4, "batches per epoch %ld == 37 / 8", loader_batches_per_epoch(ld));
    int same = 0;
    Batch *b;
    for (int i = 0; i < LOADER_RUN; i++) same += loader_next(ld, &b) && same_batch(&ref[i], b, f);
    fails += check_true(same == LOADER_RUN, "3 workers == 1 worker, bit for bit: %d of %d batches", same, LOADER_RUN);
    double waited = loader_wait_seconds(ld);
    fails += check_true(waited >= 0 && isfinite(waited), "wait time %.4f s", waited);
    loader_free(ld);

    // where each batch comes from, and the documented row seed
    bool positions = true;
    for (int i = 0; i < LOADER_RUN; i++) positions &= ref[i].epoch == i / 4 && ref[i].position == (i % 4) * LOADER_B;
    fails += check_true(positions, "batch i at epoch i / 4, position (i %% 4) * 8");
    float *x1 = malloc(sizeof(float) * f), *x2 = malloc(sizeof(float) * f);
    int row_ok = 0;
    for (int r = 0; r < LOADER_B; r++) {
        augment_pair(&ds, ref[5].indices[r], rng_hash3(7, 1, (uint64_t)(LOADER_B + r)), x1, x2);
        row_ok += !memcmp(x1, ref[5].x1 + r * f, sizeof(float) * f) && !memcmp(x2, ref[5].x2 + r * f, sizeof(float) * f) &&
                  ref[5].labels[r] == ds.labels[ref[5].indices[r]];
    }
    fails += check_true(row_ok == LOADER_B, "rows = augment_pair(index, hash(seed, epoch, position + row)): %d of %d", row_ok,
                        LOADER_B);
    // each epoch visits 32 distinct indices; epochs 0 and 1 are ordered differently
    for (int e = 0; e < 2; e++) {
        int seen[LOADER_N] = {0}, distinct = 0;
        for (int i = 4 * e; i < 4 * e + 4; i++)
            for (int r = 0; r < LOADER_B; r++) distinct += seen[ref[i].indices[r]]++ == 0;
        fails += check_true(distinct == 32, "epoch %d: %d distinct indices of 32 rows", e, distinct);
    }
    fails += check_true(memcmp(ref[0].indices, ref[4].indices, sizeof(int) * LOADER_B) != 0, "epochs are reshuffled");
    free(x1);
    free(x2);
    free_saved(ref, LOADER_RUN);
    dataset_free(&ds);
    return fails;
}

static int loader_resume(void) {
    Dataset ds;
    synthetic_dataset(&ds, LOADER_N, 3, 32, FAMILY_CIFAR, 32, 12);
    const long f = 3 * 32 * 32;
    SavedBatch ref[LOADER_RUN];
    reference_run(&ds, 99, ref);
    int fails = 0, same = 0;
    Batch *b;
    // a fresh loader resumed at epoch 1, position 16 continues exactly as the uninterrupted run (batches 6..9)
    Loader *ld = loader_new(&ds, LOADER_TRAIN_PAIRS, LOADER_B, 99, 2);
    loader_seek(ld, 1, 16);
    for (int i = 6; i < LOADER_RUN; i++) same += loader_next(ld, &b) && same_batch(&ref[i], b, f);
    fails += check_true(same == 4, "seek (1, 16) on a new loader: %d of 4 batches match", same);
    // seeking back in a loader that has prefetched ahead
    loader_seek(ld, 0, 8);
    same = 0;
    for (int i = 1; i < 4; i++) same += loader_next(ld, &b) && same_batch(&ref[i], b, f);
    fails += check_true(same == 3, "seek (0, 8) after use: %d of 3 batches match", same);
    loader_free(ld);
    free_saved(ref, LOADER_RUN);
    dataset_free(&ds);
    return fails;
}

// loader_set_shard on a running loader (train.c calls it right after loader_new, with the workers already filling):
// each batch holds rows [shard_first, shard_first + shard_rows) of the whole batch, as the unsharded run has them.
// The call races the workers: one that read the old row count and then the new first row read past the epoch's
// order, at the epoch's last batch (an image index out of range, or garbage). So: 32 images in batches of 8 (the
// last batch ends at the last row), and the call made after a delay that sweeps 0-2 ms, three times.
static int loader_shard(void) {
    enum { N = 32, ROUNDS = 600 };
    Dataset ds;
    synthetic_dataset(&ds, N, 3, 32, FAMILY_CIFAR, 32, 14);
    const long f = 3 * 32 * 32;
    SavedBatch ref[LOADER_RUN];
    reference_run(&ds, 5, ref);
    int rows_ok = 0, rows = 0;
    for (int round = 0; round < ROUNDS; round++) {
        Loader *ld = loader_new(&ds, LOADER_TRAIN_PAIRS, LOADER_B, 5, 1);
        for (double t0 = now_seconds(); now_seconds() - t0 < 1e-5 * (round % 200);) continue;
        loader_set_shard(ld, 1, 2);
        Batch *b;
        for (int i = 0; i < 4 && loader_next(ld, &b); i++)   // one epoch
            for (int r = 0; r < b->batch; r++) {
                int row = LOADER_B / 2 + r;
                rows_ok += b->batch == LOADER_B / 2 && b->indices[r] == ref[i].indices[row] &&
                           !memcmp(b->x1 + r * f, ref[i].x1 + row * f, sizeof(float) * f);
                rows++;
            }
        loader_free(ld);
    }
    int fails = check_true(rows == ROUNDS * 4 * LOADER_B / 2 && rows_ok == rows,
                           "shard 1 of 2 = rows 4..7 of the whole batch: %d of %d rows in %d rounds", rows_ok, rows, ROUNDS);
    free_saved(ref, LOADER_RUN);
    dataset_free(&ds);
    return fails;
}

static int loader_test_pass(void) {
    Dataset ds;
    synthetic_dataset(&ds, LOADER_N, 1, 32, FAMILY_CIFAR, 32, 13);
    const long f = 32 * 32;
    Loader *ld = loader_new(&ds, LOADER_TEST, LOADER_B, 0, 3);
    int visits[LOADER_N] = {0}, n_batches = 0, rows = 0, rows_ok = 0, last_batch = 0;
    float *x = malloc(sizeof(float) * f);
    Batch *b;
    while (loader_next(ld, &b)) {
        bool in_order = b->position == (long)n_batches * LOADER_B && b->x2 == NULL;
        for (int r = 0; r < b->batch; r++) {
            visits[b->indices[r]]++;
            transform_test(&ds, b->indices[r], x);
            rows_ok += in_order && b->indices[r] == b->position + r && b->labels[r] == ds.labels[b->indices[r]] &&
                       !memcmp(x, b->x1 + r * f, sizeof(float) * f);
        }
        rows += b->batch;
        last_batch = b->batch;
        n_batches++;
    }
    int once = 0;
    for (int i = 0; i < LOADER_N; i++) once += visits[i] == 1;
    int fails = check_true(once == LOADER_N && rows == LOADER_N, "every index once: %d of %d, %d rows", once, LOADER_N, rows);
    fails += check_true(n_batches == 5 && last_batch == 5, "5 batches, the last partial with %d rows", last_batch);
    fails += check_true(rows_ok == LOADER_N, "rows in dataset order = transform_test: %d of %d", rows_ok, LOADER_N);
    fails += check_true(!loader_next(ld, &b) && b == NULL, "still at the end after the pass");
    loader_seek(ld, 0, 32);
    bool tail = loader_next(ld, &b) && b->batch == 5 && b->indices[0] == 32;
    fails += check_true(tail && !loader_next(ld, &b), "seek (0, 32): one batch of the last 5 rows");
    loader_free(ld);
    free(x);
    dataset_free(&ds);
    return fails;
}

void register_data_tests(void) {
    test_register("data", "cifar10 files round-trip", data_cifar10);
    test_register("data", "cifar100 files round-trip (fine labels)", data_cifar100);
    test_register("data", "stl10 column-major images, splits", data_stl10);
    test_register("data", "idx gz and plain, reflect-padded to 32", data_idx);
    test_register("data", "image folder of PNGs", data_folder);
    test_register("data", "bad input: -1 and the file named", data_bad_input);
    test_register("data", "gzip: trailer CRC and length checked, members, nothing after", data_gzip_trailer);
    test_register("data", "idx: a lying header is refused before allocating", data_idx_lying_header);
    test_register("data", "images: DHT, chunk length, pixel and aspect limits, truncation", data_image_limits);
    test_register("data", "image folder without train/test: every 10th held out", data_folder_holdout);
    test_register("data", "image folder: the first bad image is reported", data_folder_bad_images);
    test_register("data", "augment: seeded views", aug_seeded);
    test_register("data", "augment: parameter ranges and frequencies", aug_param_ranges);
    test_register("data", "augment: reflect translation", aug_translate);
    test_register("data", "augment: bicubic resize", aug_bicubic);
    test_register("data", "augment: colour ops and normalise", aug_color);
    test_register("data", "augment: shared flip, grayscale, pair path", aug_pair_structure);
    test_register("data", "augment: test transforms", aug_test_transform);
    test_register("data", "loader: workers, positions, row seeds", loader_train_pairs);
    test_register("data", "loader: seek reproduces the run", loader_resume);
    test_register("data", "loader: test pass", loader_test_pass);
    test_register("data", "loader: a shard set while the workers run", loader_shard);
}
