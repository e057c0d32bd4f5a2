// datasets.c - loaders for CIFAR-10/100 (binary), STL-10 (binary), Fashion-MNIST / MNIST (IDX, gzip or plain) and
// image folders (root/<class>/<image>, JPEG / PNG / BMP). Every file is validated before use: on bad input the
// loader returns -1 with one line in err naming the file and the problem, and leaves the Dataset empty.
//
// Stored layout: pixels (N, C, H, W) uint8, channel-planar, row-major; labels (N), -1 = unlabeled.
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <zlib.h>

#include <stb/stb_image.h>

#include "augment.h"

#define PATH_SIZE 4096

static int fail(char *err, int err_size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, int err_size, const char *fmt, ...) {
    if (err && err_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, (size_t)err_size, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int join_path(char *out, const char *dir, const char *name, const char *kind, char *err, int err_size) {
    int len = snprintf(out, PATH_SIZE, "%s/%s", dir, name);
    if (len < 0 || len >= PATH_SIZE) return fail(err, err_size, "%s: %s/%s: path too long", kind, dir, name);
    return 0;
}

static void set_norm(Dataset *ds, const float mean[3], const float std[3]) {
    for (int c = 0; c < 3; c++) {
        ds->mean[c] = mean[c];
        ds->std[c] = std[c];
    }
}

static const float CIFAR_MEAN[3] = {125.3f / 255, 123.0f / 255, 113.9f / 255};
static const float CIFAR_STD[3] = {63.0f / 255, 62.1f / 255, 66.7f / 255};
static const float STL_MEAN[3] = {0.43f, 0.42f, 0.39f}, STL_STD[3] = {0.27f, 0.26f, 0.27f};
static const float IMAGENET_MEAN[3] = {0.485f, 0.456f, 0.406f}, IMAGENET_STD[3] = {0.229f, 0.224f, 0.225f};
static const float FASHION_MEAN[3] = {0.2860f, 0.2860f, 0.2860f}, FASHION_STD[3] = {0.3530f, 0.3530f, 0.3530f};
static const float MNIST_MEAN[3] = {0.1307f, 0.1307f, 0.1307f}, MNIST_STD[3] = {0.3081f, 0.3081f, 0.3081f};

// Allocates pixels and labels for n images of c x h x w; returns -1 when the size cannot be held.
static int dataset_alloc(Dataset *ds, long n, int c, int h, int w, const char *kind, char *err, int err_size) {
    if (n <= 0 || n > 0x7fffffffL) return fail(err, err_size, "%s: %ld images is not a usable count", kind, n);
    ds->n = (int)n;
    ds->c = c;
    ds->h = h;
    ds->w = w;
    ds->pixels = malloc((size_t)n * c * h * w);
    ds->labels = malloc(sizeof(int) * (size_t)n);
    if (!ds->pixels || !ds->labels)
        return fail(err, err_size, "%s: out of memory for %ld images of %dx%dx%d", kind, n, c, h, w);
    return 0;
}

void dataset_free(Dataset *ds) {
    free(ds->pixels);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

// Opens path and returns its size in bytes (or -1 with err set).
static FILE *open_sized(const char *path, long *size, const char *kind, char *err, int err_size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail(err, err_size, "%s: %s: cannot open (%s)", kind, path, strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (*size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fail(err, err_size, "%s: %s: cannot determine the file size", kind, path);
        fclose(f);
        return NULL;
    }
    return f;
}

// ---- CIFAR-10 / CIFAR-100: records of label byte(s) + 3072 pixels (R, G, B planes of 32 x 32) ----
enum { CIFAR_PIXELS = 3 * 32 * 32, CIFAR_MAX_FILES = 5 };

static int load_cifar(Dataset *ds, bool c100, const char *dir, const char *split, char *err, int err_size) {
    const char *kind = c100 ? "cifar100" : "cifar10";
    const char *names[CIFAR_MAX_FILES];
    int n_files = 0;
    if (!strcmp(split, "train")) {
        if (c100) names[n_files++] = "train.bin";
        else {
            static const char *batches[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                            "data_batch_4.bin", "data_batch_5.bin"};
            for (int i = 0; i < 5; i++) names[n_files++] = batches[i];
        }
    } else if (!strcmp(split, "test")) {
        names[n_files++] = c100 ? "test.bin" : "test_batch.bin";
    } else {
        return fail(err, err_size, "%s: %s: unknown split \"%s\" (use train or test)", kind, dir, split);
    }
    int label_bytes = c100 ? 2 : 1, record = label_bytes + CIFAR_PIXELS, n_classes = c100 ? 100 : 10;
    char paths[CIFAR_MAX_FILES][PATH_SIZE];
    long records[CIFAR_MAX_FILES], total = 0;
    for (int f = 0; f < n_files; f++) {   // validate every size before reading anything
        if (join_path(paths[f], dir, names[f], kind, err, err_size)) return -1;
        long size;
        FILE *fp = open_sized(paths[f], &size, kind, err, err_size);
        if (!fp) return -1;
        fclose(fp);
        if (size == 0) return fail(err, err_size, "%s: %s: file is empty", kind, paths[f]);
        if (size % record)
            return fail(err, err_size, "%s: %s: size %ld is not a multiple of the %d-byte record", kind, paths[f],
                        size, record);
        records[f] = size / record;
        total += records[f];
    }
    if (dataset_alloc(ds, total, 3, 32, 32, kind, err, err_size)) return -1;
    uint8_t buf[2 + CIFAR_PIXELS];
    long i = 0;
    for (int f = 0; f < n_files; f++) {
        FILE *fp = fopen(paths[f], "rb");
        if (!fp) return fail(err, err_size, "%s: %s: cannot open (%s)", kind, paths[f], strerror(errno));
        for (long r = 0; r < records[f]; r++, i++) {
            if (fread(buf, 1, (size_t)record, fp) != (size_t)record) {
                fclose(fp);
                return fail(err, err_size, "%s: %s: truncated at record %ld", kind, paths[f], r);
            }
            int label = buf[label_bytes - 1];   // CIFAR-100: (coarse, fine), the fine label is used
            if (label >= n_classes || (c100 && buf[0] >= 20)) {
                fclose(fp);
                return fail(err, err_size, "%s: %s: record %ld has label %d (must be < %d)", kind, paths[f], r,
                            label >= n_classes ? label : buf[0], label >= n_classes ? n_classes : 20);
            }
            ds->labels[i] = label;
            memcpy(ds->pixels + i * CIFAR_PIXELS, buf + label_bytes, CIFAR_PIXELS);
        }
        fclose(fp);
    }
    ds->n_classes = n_classes;
    ds->family = FAMILY_CIFAR;
    ds->input_size = 32;
    set_norm(ds, CIFAR_MEAN, CIFAR_STD);
    snprintf(ds->name, sizeof ds->name, "%s", kind);
    return 0;
}

// ---- STL-10: 3 x 96 x 96 images stored column-major per channel; labels 1..10 one byte each ----
enum { STL_SIDE = 96, STL_PLANE = STL_SIDE * STL_SIDE, STL_IMAGE = 3 * STL_PLANE };

typedef struct { char x[PATH_SIZE], y[PATH_SIZE]; bool labeled; long count; } StlPart;

static int stl_check_part(StlPart *p, const char *kind, char *err, int err_size) {
    long size;
    FILE *f = open_sized(p->x, &size, kind, err, err_size);
    if (!f) return -1;
    fclose(f);
    if (size == 0 || size % STL_IMAGE)
        return fail(err, err_size, "%s: %s: size %ld is not a non-zero multiple of the %d-byte image", kind, p->x,
                    size, STL_IMAGE);
    p->count = size / STL_IMAGE;
    if (!p->labeled) return 0;
    if (!(f = open_sized(p->y, &size, kind, err, err_size))) return -1;
    fclose(f);
    if (size != p->count)
        return fail(err, err_size, "%s: %s: %ld labels for %ld images in %s", kind, p->y, size, p->count, p->x);
    return 0;
}

static int stl_read_part(Dataset *ds, long first, const StlPart *p, const char *kind, char *err, int err_size) {
    FILE *f = fopen(p->x, "rb");
    if (!f) return fail(err, err_size, "%s: %s: cannot open (%s)", kind, p->x, strerror(errno));
    uint8_t *buf = malloc(STL_IMAGE);
    if (!buf) {
        fclose(f);
        return fail(err, err_size, "%s: out of memory", kind);
    }
    int rc = 0;
    for (long i = 0; i < p->count && rc == 0; i++) {
        if (fread(buf, 1, STL_IMAGE, f) != STL_IMAGE) {
            rc = fail(err, err_size, "%s: %s: truncated at image %ld", kind, p->x, i);
            break;
        }
        uint8_t *dst = ds->pixels + (first + i) * STL_IMAGE;
        // byte (c, x, y) sits at c * 9216 + x * 96 + y: transpose each plane to row-major (c, y, x)
        for (int c = 0; c < 3; c++)
            for (int x = 0; x < STL_SIDE; x++)
                for (int y = 0; y < STL_SIDE; y++)
                    dst[c * STL_PLANE + y * STL_SIDE + x] = buf[c * STL_PLANE + x * STL_SIDE + y];
        ds->labels[first + i] = -1;
    }
    free(buf);
    fclose(f);
    if (rc || !p->labeled) return rc;
    if (!(f = fopen(p->y, "rb"))) return fail(err, err_size, "%s: %s: cannot open (%s)", kind, p->y, strerror(errno));
    for (long i = 0; i < p->count; i++) {
        int label = fgetc(f);
        if (label == EOF) {
            fclose(f);
            return fail(err, err_size, "%s: %s: truncated at label %ld", kind, p->y, i);
        }
        if (label < 1 || label > 10) {
            fclose(f);
            return fail(err, err_size, "%s: %s: label %ld is %d (must be 1..10)", kind, p->y, i, label);
        }
        ds->labels[first + i] = label - 1;
    }
    fclose(f);
    return 0;
}

static int load_stl10(Dataset *ds, const char *dir, const char *split, char *err, int err_size) {
    const char *kind = "stl10";
    StlPart parts[2];
    int n_parts = 0;
    const char *prefixes[2];
    if (!strcmp(split, "train") || !strcmp(split, "test") || !strcmp(split, "unlabeled")) prefixes[n_parts++] = split;
    else if (!strcmp(split, "train+unlabeled")) {
        prefixes[n_parts++] = "train";
        prefixes[n_parts++] = "unlabeled";
    } else {
        return fail(err, err_size, "%s: %s: unknown split \"%s\" (use train, test, unlabeled or train+unlabeled)",
                    kind, dir, split);
    }
    long total = 0;
    for (int p = 0; p < n_parts; p++) {
        char name[64];
        snprintf(name, sizeof name, "%s_X.bin", prefixes[p]);
        if (join_path(parts[p].x, dir, name, kind, err, err_size)) return -1;
        snprintf(name, sizeof name, "%s_y.bin", prefixes[p]);
        if (join_path(parts[p].y, dir, name, kind, err, err_size)) return -1;
        parts[p].labeled = strcmp(prefixes[p], "unlabeled") != 0;
        if (stl_check_part(&parts[p], kind, err, err_size)) return -1;
        total += parts[p].count;
    }
    if (dataset_alloc(ds, total, 3, STL_SIDE, STL_SIDE, kind, err, err_size)) return -1;
    for (int p = 0, first = 0; p < n_parts; first += (int)parts[p].count, p++)
        if (stl_read_part(ds, first, &parts[p], kind, err, err_size)) return -1;
    ds->n_classes = 10;
    ds->family = FAMILY_STL;
    ds->input_size = 64;
    set_norm(ds, STL_MEAN, STL_STD);
    snprintf(ds->name, sizeof ds->name, "%s", kind);
    return 0;
}

// ---- IDX (Fashion-MNIST, MNIST): big-endian header, gzip or plain (zlib reads both) ----
enum { IDX_SIDE = 28, IDX_PAD = 2, IDX_STORED = IDX_SIDE + 2 * IDX_PAD };
static const uint32_t IDX_IMAGES_MAGIC = 0x00000803, IDX_LABELS_MAGIC = 0x00000801;

// Opens dir/base.gz, else dir/base; path receives the name that was opened (or both names on failure).
static gzFile idx_open(const char *dir, const char *base, char *path, const char *kind, char *err, int err_size) {
    char name[128];
    snprintf(name, sizeof name, "%s.gz", base);
    if (join_path(path, dir, name, kind, err, err_size)) return NULL;
    struct stat st;
    if (stat(path, &st) != 0 && join_path(path, dir, base, kind, err, err_size)) return NULL;
    gzFile f = gzopen(path, "rb");
    if (!f) fail(err, err_size, "%s: %s/%s(.gz): cannot open (%s)", kind, dir, base, strerror(errno));
    return f;
}

// Reads exactly n bytes; returns the number read (less on truncation, -1 on a gzip error).
static long gz_read_full(gzFile f, void *buf, long n) {
    long done = 0;
    while (done < n) {
        long chunk = n - done > (1L << 30) ? (1L << 30) : n - done;
        int got = gzread(f, (uint8_t *)buf + done, (unsigned)chunk);
        if (got < 0) return -1;
        if (got == 0) break;
        done += got;
    }
    return done;
}

static int idx_header(gzFile f, uint32_t *words, int n_words, const char *path, const char *kind, char *err,
                      int err_size) {
    uint8_t raw[16];
    long got = gz_read_full(f, raw, 4L * n_words);
    if (got != 4L * n_words) {
        int errnum;
        return fail(err, err_size, "%s: %s: %s", kind, path,
                    got < 0 ? gzerror(f, &errnum) : "truncated IDX header");
    }
    for (int i = 0; i < n_words; i++)
        words[i] = (uint32_t)raw[4 * i] << 24 | (uint32_t)raw[4 * i + 1] << 16 | (uint32_t)raw[4 * i + 2] << 8 | raw[4 * i + 3];
    return 0;
}

// Reads a payload of n bytes and checks that nothing follows it.
static int idx_payload(gzFile f, uint8_t *buf, long n, const char *what, const char *path, const char *kind,
                       char *err, int err_size) {
    long got = gz_read_full(f, buf, n);
    int errnum;
    if (got < 0) return fail(err, err_size, "%s: %s: %s", kind, path, gzerror(f, &errnum));
    if (got != n)
        return fail(err, err_size, "%s: %s: truncated: expected %ld bytes of %s, found %ld", kind, path, n, what, got);
    uint8_t extra;
    if (gz_read_full(f, &extra, 1) != 0)
        return fail(err, err_size, "%s: %s: unexpected bytes after %ld bytes of %s", kind, path, n, what);
    return 0;
}

static int load_idx(Dataset *ds, bool fashion, const char *dir, const char *split, char *err, int err_size) {
    const char *kind = fashion ? "fashion-mnist" : "mnist";
    const char *prefix;
    if (!strcmp(split, "train")) prefix = "train";
    else if (!strcmp(split, "test")) prefix = "t10k";
    else return fail(err, err_size, "%s: %s: unknown split \"%s\" (use train or test)", kind, dir, split);
    char base[64], img_path[PATH_SIZE], lab_path[PATH_SIZE];
    snprintf(base, sizeof base, "%s-images-idx3-ubyte", prefix);
    gzFile fi = idx_open(dir, base, img_path, kind, err, err_size);
    if (!fi) return -1;
    snprintf(base, sizeof base, "%s-labels-idx1-ubyte", prefix);
    gzFile fl = idx_open(dir, base, lab_path, kind, err, err_size);
    if (!fl) {
        gzclose(fi);
        return -1;
    }
    uint32_t ih[4] = {0}, lh[2] = {0};
    uint8_t *raw = NULL;
    int rc = -1;
    if (idx_header(fi, ih, 4, img_path, kind, err, err_size) || idx_header(fl, lh, 2, lab_path, kind, err, err_size))
        goto done;
    if (ih[0] != IDX_IMAGES_MAGIC) {
        fail(err, err_size, "%s: %s: bad magic 0x%08x (IDX images need 0x%08x)", kind, img_path, ih[0], IDX_IMAGES_MAGIC);
        goto done;
    }
    if (lh[0] != IDX_LABELS_MAGIC) {
        fail(err, err_size, "%s: %s: bad magic 0x%08x (IDX labels need 0x%08x)", kind, lab_path, lh[0], IDX_LABELS_MAGIC);
        goto done;
    }
    if (ih[2] != IDX_SIDE || ih[3] != IDX_SIDE) {
        fail(err, err_size, "%s: %s: images are %ux%u, expected %dx%d", kind, img_path, ih[2], ih[3], IDX_SIDE, IDX_SIDE);
        goto done;
    }
    if (ih[1] == 0 || ih[1] > 0x7fffffffu) {
        fail(err, err_size, "%s: %s: header claims %u images", kind, img_path, ih[1]);
        goto done;
    }
    if (lh[1] != ih[1]) {
        fail(err, err_size, "%s: %s: %u labels but %s holds %u images", kind, lab_path, lh[1], img_path, ih[1]);
        goto done;
    }
    long n = ih[1];
    if (dataset_alloc(ds, n, 1, IDX_STORED, IDX_STORED, kind, err, err_size)) goto done;
    raw = malloc((size_t)n * IDX_SIDE * IDX_SIDE);
    if (!raw) {
        fail(err, err_size, "%s: out of memory", kind);
        goto done;
    }
    if (idx_payload(fi, raw, n * IDX_SIDE * IDX_SIDE, "pixels", img_path, kind, err, err_size)) goto done;
    uint8_t *labels = raw;   // the label bytes are read after the pixels are placed, reusing raw's front
    // 28 x 28 -> 32 x 32 reflect padding (torch ReflectionPad2d(2): index -1 mirrors to 1, 28 to 26)
    for (long i = 0; i < n; i++) {
        const uint8_t *src = raw + i * IDX_SIDE * IDX_SIDE;
        uint8_t *dst = ds->pixels + i * IDX_STORED * IDX_STORED;
        for (int y = 0; y < IDX_STORED; y++) {
            int sy = y - IDX_PAD;
            sy = sy < 0 ? -sy : sy >= IDX_SIDE ? 2 * (IDX_SIDE - 1) - sy : sy;
            for (int x = 0; x < IDX_STORED; x++) {
                int sx = x - IDX_PAD;
                sx = sx < 0 ? -sx : sx >= IDX_SIDE ? 2 * (IDX_SIDE - 1) - sx : sx;
                dst[y * IDX_STORED + x] = src[sy * IDX_SIDE + sx];
            }
        }
    }
    if (idx_payload(fl, labels, n, "labels", lab_path, kind, err, err_size)) goto done;
    for (long i = 0; i < n; i++) {
        if (labels[i] >= 10) {
            fail(err, err_size, "%s: %s: label %ld is %d (must be < 10)", kind, lab_path, i, labels[i]);
            goto done;
        }
        ds->labels[i] = labels[i];
    }
    ds->n_classes = 10;
    ds->family = FAMILY_CIFAR;
    ds->input_size = IDX_STORED;
    set_norm(ds, fashion ? FASHION_MEAN : MNIST_MEAN, fashion ? FASHION_STD : MNIST_STD);
    snprintf(ds->name, sizeof ds->name, "%s", kind);
    rc = 0;
done:
    free(raw);
    gzclose(fi);
    gzclose(fl);
    return rc;
}

// ---- image folders: root/<class>/<image> ----
// Classes are the subdirectories sorted by name (label = index), images sorted by name within a class, every image
// converted to 3 channels. Sizes decide the family:
//   all images 32 x 32                        -> CIFAR family, stored as is, input 32, CIFAR mean / std;
//   else every shorter side <= 96 px          -> STL family: shorter side resized to 96 (bicubic), centre crop
//                                                96 x 96, input 64 (random resized crops), STL mean / std;
//   else                                      -> IMAGENET family: shorter side resized to 146, centre crop 146 x 146,
//                                                input 128, ImageNet mean / std.
enum { FOLDER_STL_SIDE = 96, FOLDER_IMAGENET_SIDE = 146 };

typedef struct { char **names; int n, cap; } NameList;

static void names_free(NameList *l) {
    for (int i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    memset(l, 0, sizeof *l);
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return false;
    return !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png") || !strcasecmp(dot, ".bmp");
}

// Sorted entries of dir: subdirectories (want_dirs) or image files; hidden entries skipped.
static int list_dir(const char *dir, bool want_dirs, NameList *out, char *err, int err_size) {
    memset(out, 0, sizeof *out);
    DIR *d = opendir(dir);
    if (!d) return fail(err, err_size, "folder: %s: cannot open directory (%s)", dir, strerror(errno));
    struct dirent *e;
    char path[PATH_SIZE];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (join_path(path, dir, e->d_name, "folder", err, err_size)) goto fail_out;
        if (want_dirs ? !is_dir(path) : (is_dir(path) || !is_image_name(e->d_name))) continue;
        if (out->n == out->cap) {
            out->cap = out->cap ? 2 * out->cap : 64;
            char **grown = realloc(out->names, sizeof(char *) * out->cap);
            if (!grown) {
                fail(err, err_size, "folder: out of memory listing %s", dir);
                goto fail_out;
            }
            out->names = grown;
        }
        if (!(out->names[out->n] = strdup(e->d_name))) {
            fail(err, err_size, "folder: out of memory listing %s", dir);
            goto fail_out;
        }
        out->n++;
    }
    closedir(d);
    if (out->n) qsort(out->names, (size_t)out->n, sizeof(char *), cmp_names);
    return 0;
fail_out:
    closedir(d);
    names_free(out);
    return -1;
}

// Decodes one image into (3, side, side) of the dataset (side = stored size); returns stb's reason on failure.
static const char *folder_decode(const char *path, int side, bool resize, uint8_t *dst) {
    int w, h, comp;
    uint8_t *hwc = stbi_load(path, &w, &h, &comp, 3);
    if (!hwc) return stbi_failure_reason();
    const char *problem = NULL;
    if (!resize) {
        if (w != side || h != side) problem = "image size changed between the size scan and decoding";
        else
            for (int c = 0; c < 3; c++)
                for (long i = 0; i < (long)side * side; i++) dst[c * side * side + i] = hwc[3 * i + c];
        stbi_image_free(hwc);
        return problem;
    }
    // torchvision Resize(side): the shorter side becomes side, the longer int(side * long / short); then CenterCrop
    int rh = w <= h ? (int)((long)side * h / w) : side, rw = w <= h ? side : (int)((long)side * w / h);
    float *src = malloc(sizeof(float) * 3 * w * h), *big = malloc(sizeof(float) * 3 * rw * rh);
    if (!src || !big) problem = "out of memory";
    else {
        for (int c = 0; c < 3; c++)
            for (long i = 0; i < (long)w * h; i++) src[c * (long)w * h + i] = hwc[3 * i + c] * (1.0f / 255);
        resize_bicubic(src, 3, h, w, 0, 0, h, w, rh, rw, big);
        int top = (int)nearbyint((rh - side) / 2.0), left = (int)nearbyint((rw - side) / 2.0);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < side; y++)
                for (int x = 0; x < side; x++)
                    dst[((long)c * side + y) * side + x] =
                        (uint8_t)nearbyintf(255.0f * big[((long)c * rh + top + y) * rw + left + x]);
    }
    free(src);
    free(big);
    stbi_image_free(hwc);
    return problem;
}

static int load_folder(Dataset *ds, const char *path, const char *split, char *err, int err_size) {
    if (strcmp(split, "train") && strcmp(split, "test"))
        return fail(err, err_size, "folder: %s: unknown split \"%s\" (use train or test)", path, split);
    char root[PATH_SIZE];
    if (join_path(root, path, split, "folder", err, err_size)) return -1;
    if (!is_dir(root)) snprintf(root, sizeof root, "%s", path);
    NameList classes, files = {0};
    if (list_dir(root, true, &classes, err, err_size)) return -1;
    int rc = -1, n = 0;
    int *labels = NULL, *widths = NULL, *heights = NULL;
    const char **problems = NULL;
    if (classes.n == 0) {
        fail(err, err_size, "folder: %s: no class subdirectories", root);
        goto done;
    }
    for (int k = 0; k < classes.n; k++) {   // gather "class/image" paths in label order
        char class_dir[PATH_SIZE];
        NameList in_class;
        if (join_path(class_dir, root, classes.names[k], "folder", err, err_size) ||
            list_dir(class_dir, false, &in_class, err, err_size))
            goto done;
        int *grown = realloc(labels, sizeof(int) * (size_t)(n + in_class.n + 1));
        char **grown_names = realloc(files.names, sizeof(char *) * (size_t)(n + in_class.n + 1));
        if (grown) labels = grown;
        if (grown_names) files.names = grown_names;
        if (!grown || !grown_names) {
            names_free(&in_class);
            fail(err, err_size, "folder: out of memory listing %s", class_dir);
            goto done;
        }
        for (int i = 0; i < in_class.n; i++) {
            char *full = malloc(PATH_SIZE);
            if (!full || join_path(full, class_dir, in_class.names[i], "folder", err, err_size)) {
                free(full);
                names_free(&in_class);
                if (!full) fail(err, err_size, "folder: out of memory");
                goto done;
            }
            files.names[n] = full;
            labels[n] = k;
            files.n = ++n;
        }
        names_free(&in_class);
    }
    if (n == 0) {
        fail(err, err_size, "folder: %s: no images (.jpg .jpeg .png .bmp) in its class folders", root);
        goto done;
    }
    widths = malloc(sizeof(int) * n);
    heights = malloc(sizeof(int) * n);
    problems = calloc((size_t)n, sizeof(char *));
    if (!widths || !heights || !problems) {
        fail(err, err_size, "folder: out of memory");
        goto done;
    }
    // pass 1: sizes from the headers only, to choose the family
#pragma omp parallel for schedule(dynamic, 64)
    for (int i = 0; i < n; i++) {
        int comp;
        if (!stbi_info(files.names[i], &widths[i], &heights[i], &comp)) problems[i] = stbi_failure_reason();
    }
    bool all_32 = true;
    int max_short = 0;
    for (int i = 0; i < n; i++) {
        if (problems[i]) {
            fail(err, err_size, "folder: %s: cannot read the image (%s)", files.names[i], problems[i]);
            goto done;
        }
        int shorter = widths[i] < heights[i] ? widths[i] : heights[i];
        if (shorter > max_short) max_short = shorter;
        all_32 &= widths[i] == 32 && heights[i] == 32;
    }
    AugFamily family = all_32 ? FAMILY_CIFAR : max_short <= FOLDER_STL_SIDE ? FAMILY_STL : FAMILY_IMAGENET;
    int side = family == FAMILY_CIFAR ? 32 : family == FAMILY_STL ? FOLDER_STL_SIDE : FOLDER_IMAGENET_SIDE;
    if (dataset_alloc(ds, n, 3, side, side, "folder", err, err_size)) goto done;
    // pass 2: decode (and resize) in parallel, each image into its own slot
    long image_bytes = 3L * side * side;
#pragma omp parallel for schedule(dynamic, 16)
    for (int i = 0; i < n; i++)
        problems[i] = folder_decode(files.names[i], side, family != FAMILY_CIFAR, ds->pixels + i * image_bytes);
    for (int i = 0; i < n; i++) {
        if (problems[i]) {
            fail(err, err_size, "folder: %s: cannot decode the image (%s)", files.names[i], problems[i]);
            goto done;
        }
    }
    memcpy(ds->labels, labels, sizeof(int) * n);
    ds->n_classes = classes.n;
    ds->family = family;
    ds->input_size = family == FAMILY_CIFAR ? 32 : family == FAMILY_STL ? 64 : 128;
    set_norm(ds, family == FAMILY_CIFAR ? CIFAR_MEAN : family == FAMILY_STL ? STL_MEAN : IMAGENET_MEAN,
             family == FAMILY_CIFAR ? CIFAR_STD : family == FAMILY_STL ? STL_STD : IMAGENET_STD);
    snprintf(ds->name, sizeof ds->name, "folder");
    rc = 0;
done:
    names_free(&classes);
    names_free(&files);
    free(labels);
    free(widths);
    free(heights);
    free(problems);
    return rc;
}

int dataset_load(Dataset *ds, const char *kind, const char *path, const char *split, char *err, int err_size) {
    memset(ds, 0, sizeof *ds);
    if (err && err_size > 0) err[0] = '\0';
    int rc;
    if (!strcmp(kind, "cifar10") || !strcmp(kind, "cifar100")) rc = load_cifar(ds, !strcmp(kind, "cifar100"), path, split, err, err_size);
    else if (!strcmp(kind, "stl10")) rc = load_stl10(ds, path, split, err, err_size);
    else if (!strcmp(kind, "fashion-mnist") || !strcmp(kind, "mnist")) rc = load_idx(ds, kind[0] == 'f', path, split, err, err_size);
    else if (!strcmp(kind, "folder")) rc = load_folder(ds, path, split, err, err_size);
    else rc = fail(err, err_size, "unknown dataset kind \"%s\" (cifar10, cifar100, stl10, fashion-mnist, mnist, folder)", kind);
    if (rc) dataset_free(ds);
    return rc;
}
