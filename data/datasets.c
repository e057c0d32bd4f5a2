// datasets.c - loaders for CIFAR-10/100 (binary), STL-10 (binary), Fashion-MNIST / MNIST (IDX, gzip or plain) and
// image folders (root/[train|test]/<class>/<image>, JPEG / PNG / BMP). Each loader reads a file's bytes and hands
// them to the parsers of formats.h, which check every size from a header against the bytes there: on bad input the
// loader returns -1 with one line in err naming the file and the problem, and leaves the Dataset empty.
//
// Stored layout: pixels (N, C, H, W) uint8, channel-planar, row-major; labels (N), -1 = unlabeled.
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <zlib.h>

#include <stb/stb_image.h>

#include "augment.h"
#include "formats.h"

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
    if (n <= 0 || n > INT_MAX) return fail(err, err_size, "%s: %ld images is not a usable count", kind, n);
    size_t bytes;
    if (__builtin_mul_overflow((size_t)n, (size_t)c * h * w, &bytes))
        return fail(err, err_size, "%s: %ld images of %dx%dx%d do not fit in memory", kind, n, c, h, w);
    ds->n = (int)n;
    ds->c = c;
    ds->h = h;
    ds->w = w;
    ds->pixels = malloc(bytes);
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

// Size of a regular file (or -1 with err set).
static long file_size(const char *path, const char *kind, char *err, int err_size) {
    struct stat st;
    if (stat(path, &st) != 0) return fail(err, err_size, "%s: %s: cannot open (%s)", kind, path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return fail(err, err_size, "%s: %s: not a regular file", kind, path);
    return (long)st.st_size;
}

// The whole file into a new buffer (*n bytes, at most max); -1 with err set on failure.
static int read_file(const char *path, long max, uint8_t **buf, size_t *n, const char *kind, char *err, int err_size) {
    *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, err_size, "%s: %s: cannot open (%s)", kind, path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return fail(err, err_size, "%s: %s: not a regular file", kind, path);
    }
    if (st.st_size > max) {
        fclose(f);
        return fail(err, err_size, "%s: %s: %lld bytes, more than the %ld-byte limit for this format", kind, path,
                    (long long)st.st_size, max);
    }
    *n = (size_t)st.st_size;
    *buf = malloc(*n ? *n : 1);
    if (!*buf) {
        fclose(f);
        return fail(err, err_size, "%s: %s: out of memory for its %zu bytes", kind, path, *n);
    }
    size_t got = fread(*buf, 1, *n, f);
    int extra = fgetc(f);   // the file may have grown or shrunk since fstat
    fclose(f);
    if (got != *n || extra != EOF) {
        free(*buf);
        *buf = NULL;
        return fail(err, err_size, "%s: %s: changed size while being read", kind, path);
    }
    return 0;
}

// ---- CIFAR-10 / CIFAR-100 ----
enum { CIFAR_MAX_FILES = 5, CIFAR_CHUNK_RECORDS = 1024 };

int cifar_record_bytes(bool c100) { return (c100 ? 2 : 1) + CIFAR_PIXELS; }

static int cifar_record_count(size_t bytes, bool c100, long *records, const char *name, char *err, int err_size) {
    const char *kind = c100 ? "cifar100" : "cifar10";
    int record = cifar_record_bytes(c100);
    if (bytes == 0) return fail(err, err_size, "%s: %s: file is empty", kind, name);
    if (bytes % (size_t)record)
        return fail(err, err_size, "%s: %s: size %zu is not a multiple of the %d-byte record", kind, name, bytes,
                    record);
    if (bytes / (size_t)record > INT_MAX)
        return fail(err, err_size, "%s: %s: %zu records is more than this loader holds", kind, name,
                    bytes / (size_t)record);
    *records = (long)(bytes / (size_t)record);
    return 0;
}

int cifar_records_into(Dataset *ds, long first, const uint8_t *buf, size_t n, long rec0, bool c100, const char *name,
                       char *err, int err_size) {
    const char *kind = c100 ? "cifar100" : "cifar10";
    int label_bytes = c100 ? 2 : 1, record = cifar_record_bytes(c100), n_classes = c100 ? 100 : 10;
    long records = (long)(n / (size_t)record);
    if (n % (size_t)record || first < 0 || first + records > ds->n)
        return fail(err, err_size, "%s: %s: %zu bytes are not whole records for slots %ld.. of %d", kind, name, n,
                    first, ds->n);
    for (long r = 0; r < records; r++) {
        const uint8_t *p = buf + r * record;
        int label = p[label_bytes - 1];   // CIFAR-100: (coarse, fine), the fine label is used
        if (label >= n_classes || (c100 && p[0] >= 20))
            return fail(err, err_size, "%s: %s: record %ld has label %d (must be < %d)", kind, name, rec0 + r,
                        label >= n_classes ? label : p[0], label >= n_classes ? n_classes : 20);
        ds->labels[first + r] = label;
        memcpy(ds->pixels + (first + r) * CIFAR_PIXELS, p + label_bytes, CIFAR_PIXELS);
    }
    return 0;
}

static void cifar_finish(Dataset *ds, bool c100) {
    ds->n_classes = c100 ? 100 : 10;
    ds->family = FAMILY_CIFAR;
    ds->input_size = 32;
    set_norm(ds, CIFAR_MEAN, CIFAR_STD);
    snprintf(ds->name, sizeof ds->name, "%s", c100 ? "cifar100" : "cifar10");
}

int cifar_parse(Dataset *ds, bool c100, const uint8_t *buf, size_t n, const char *name, char *err, int err_size) {
    memset(ds, 0, sizeof *ds);
    long records = 0;
    if (cifar_record_count(n, c100, &records, name, err, err_size) ||
        dataset_alloc(ds, records, 3, 32, 32, c100 ? "cifar100" : "cifar10", err, err_size) ||
        cifar_records_into(ds, 0, buf, n, 0, c100, name, err, err_size)) {
        dataset_free(ds);
        return -1;
    }
    cifar_finish(ds, c100);
    return 0;
}

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
    int record = cifar_record_bytes(c100);
    char paths[CIFAR_MAX_FILES][PATH_SIZE];
    long records[CIFAR_MAX_FILES], total = 0;
    for (int f = 0; f < n_files; f++) {   // validate every size before reading anything
        if (join_path(paths[f], dir, names[f], kind, err, err_size)) return -1;
        long size = file_size(paths[f], kind, err, err_size);
        if (size < 0 || cifar_record_count((size_t)size, c100, &records[f], paths[f], err, err_size)) return -1;
        total += records[f];
    }
    if (dataset_alloc(ds, total, 3, 32, 32, kind, err, err_size)) return -1;
    uint8_t *chunk = malloc((size_t)CIFAR_CHUNK_RECORDS * record);
    if (!chunk) return fail(err, err_size, "%s: out of memory", kind);
    int rc = 0;
    for (int f = 0, first = 0; f < n_files && rc == 0; first += (int)records[f], f++) {
        FILE *fp = fopen(paths[f], "rb");
        if (!fp) {
            rc = fail(err, err_size, "%s: %s: cannot open (%s)", kind, paths[f], strerror(errno));
            break;
        }
        for (long r = 0; r < records[f] && rc == 0; r += CIFAR_CHUNK_RECORDS) {
            long k = records[f] - r < CIFAR_CHUNK_RECORDS ? records[f] - r : CIFAR_CHUNK_RECORDS;
            if (fread(chunk, (size_t)record, (size_t)k, fp) != (size_t)k)
                rc = fail(err, err_size, "%s: %s: truncated at record %ld", kind, paths[f], r);
            else rc = cifar_records_into(ds, first + r, chunk, (size_t)(k * record), r, c100, paths[f], err, err_size);
        }
        fclose(fp);
    }
    free(chunk);
    if (rc == 0) cifar_finish(ds, c100);
    return rc;
}

// ---- STL-10 ----
enum { STL_CHUNK_IMAGES = 64 };

static int stl_image_count(size_t bytes, long *count, const char *name, char *err, int err_size) {
    if (bytes == 0 || bytes % STL_IMAGE)
        return fail(err, err_size, "stl10: %s: size %zu is not a non-zero multiple of the %d-byte image", name, bytes,
                    STL_IMAGE);
    if (bytes / STL_IMAGE > INT_MAX)
        return fail(err, err_size, "stl10: %s: %zu images is more than this loader holds", name, bytes / STL_IMAGE);
    *count = (long)(bytes / STL_IMAGE);
    return 0;
}

int stl_images_into(Dataset *ds, long first, const uint8_t *x, size_t x_n, const char *name, char *err, int err_size) {
    long count = (long)(x_n / STL_IMAGE);
    if (x_n % STL_IMAGE || first < 0 || first + count > ds->n)
        return fail(err, err_size, "stl10: %s: %zu bytes are not whole images for slots %ld.. of %d", name, x_n, first,
                    ds->n);
    for (long i = 0; i < count; i++) {
        const uint8_t *src = x + i * STL_IMAGE;
        uint8_t *dst = ds->pixels + (first + i) * STL_IMAGE;
        // byte (c, x, y) sits at c * 9216 + x * 96 + y: transpose each plane to row-major (c, y, x)
        for (int c = 0; c < 3; c++)
            for (int col = 0; col < STL_SIDE; col++)
                for (int row = 0; row < STL_SIDE; row++)
                    dst[c * STL_PLANE + row * STL_SIDE + col] = src[c * STL_PLANE + col * STL_SIDE + row];
        ds->labels[first + i] = -1;
    }
    return 0;
}

int stl_labels_into(Dataset *ds, long first, const uint8_t *y, size_t y_n, long lab0, const char *name, char *err,
                    int err_size) {
    if (first < 0 || first + (long)y_n > ds->n)
        return fail(err, err_size, "stl10: %s: %zu labels do not fit slots %ld.. of %d", name, y_n, first, ds->n);
    for (size_t i = 0; i < y_n; i++) {
        if (y[i] < 1 || y[i] > 10)
            return fail(err, err_size, "stl10: %s: label %ld is %d (must be 1..10)", name, lab0 + (long)i, y[i]);
        ds->labels[first + (long)i] = y[i] - 1;
    }
    return 0;
}

static void stl_finish(Dataset *ds) {
    ds->n_classes = 10;
    ds->family = FAMILY_STL;
    ds->input_size = 64;
    set_norm(ds, STL_MEAN, STL_STD);
    snprintf(ds->name, sizeof ds->name, "stl10");
}

int stl_parse(Dataset *ds, const uint8_t *x, size_t x_n, const char *x_name, const uint8_t *y, size_t y_n,
              const char *y_name, char *err, int err_size) {
    memset(ds, 0, sizeof *ds);
    long count = 0;
    int rc = stl_image_count(x_n, &count, x_name, err, err_size);
    if (!rc && y && y_n != (size_t)count)
        rc = fail(err, err_size, "stl10: %s: %zu labels for %ld images in %s", y_name, y_n, count, x_name);
    if (!rc) rc = dataset_alloc(ds, count, 3, STL_SIDE, STL_SIDE, "stl10", err, err_size);
    if (!rc) rc = stl_images_into(ds, 0, x, x_n, x_name, err, err_size);
    if (!rc && y) rc = stl_labels_into(ds, 0, y, y_n, 0, y_name, err, err_size);
    if (rc) dataset_free(ds);
    else stl_finish(ds);
    return rc;
}

typedef struct { char x[PATH_SIZE], y[PATH_SIZE]; bool labeled; long count; } StlPart;

static int stl_check_part(StlPart *p, char *err, int err_size) {
    long size = file_size(p->x, "stl10", err, err_size);
    if (size < 0 || stl_image_count((size_t)size, &p->count, p->x, err, err_size)) return -1;
    if (!p->labeled) return 0;
    if ((size = file_size(p->y, "stl10", err, err_size)) < 0) return -1;
    if (size != p->count)
        return fail(err, err_size, "stl10: %s: %ld labels for %ld images in %s", p->y, size, p->count, p->x);
    return 0;
}

// Reads a part in chunks of STL_CHUNK_IMAGES images (unlabeled_X.bin is 2.7 GB: never held twice).
static int stl_read_part(Dataset *ds, long first, const StlPart *p, char *err, int err_size) {
    FILE *f = fopen(p->x, "rb");
    if (!f) return fail(err, err_size, "stl10: %s: cannot open (%s)", p->x, strerror(errno));
    uint8_t *buf = malloc((size_t)STL_CHUNK_IMAGES * STL_IMAGE);
    if (!buf) {
        fclose(f);
        return fail(err, err_size, "stl10: out of memory");
    }
    int rc = 0;
    for (long i = 0; i < p->count && rc == 0; i += STL_CHUNK_IMAGES) {
        long k = p->count - i < STL_CHUNK_IMAGES ? p->count - i : STL_CHUNK_IMAGES;
        if (fread(buf, STL_IMAGE, (size_t)k, f) != (size_t)k)
            rc = fail(err, err_size, "stl10: %s: truncated at image %ld", p->x, i);
        else rc = stl_images_into(ds, first + i, buf, (size_t)k * STL_IMAGE, p->x, err, err_size);
    }
    fclose(f);
    if (rc == 0 && p->labeled) {
        if (!(f = fopen(p->y, "rb"))) rc = fail(err, err_size, "stl10: %s: cannot open (%s)", p->y, strerror(errno));
        for (long i = 0; i < p->count && rc == 0; i += STL_CHUNK_IMAGES) {
            long k = p->count - i < STL_CHUNK_IMAGES ? p->count - i : STL_CHUNK_IMAGES;
            if (fread(buf, 1, (size_t)k, f) != (size_t)k) rc = fail(err, err_size, "stl10: %s: truncated at label %ld", p->y, i);
            else rc = stl_labels_into(ds, first + i, buf, (size_t)k, i, p->y, err, err_size);
        }
        if (f) fclose(f);
    }
    free(buf);
    return rc;
}

static int load_stl10(Dataset *ds, const char *dir, const char *split, char *err, int err_size) {
    StlPart parts[2];
    int n_parts = 0;
    const char *prefixes[2];
    if (!strcmp(split, "train") || !strcmp(split, "test") || !strcmp(split, "unlabeled")) prefixes[n_parts++] = split;
    else if (!strcmp(split, "train+unlabeled")) {
        prefixes[n_parts++] = "train";
        prefixes[n_parts++] = "unlabeled";
    } else {
        return fail(err, err_size, "stl10: %s: unknown split \"%s\" (use train, test, unlabeled or train+unlabeled)",
                    dir, split);
    }
    long total = 0;
    for (int p = 0; p < n_parts; p++) {
        char name[64];
        snprintf(name, sizeof name, "%s_X.bin", prefixes[p]);
        if (join_path(parts[p].x, dir, name, "stl10", err, err_size)) return -1;
        snprintf(name, sizeof name, "%s_y.bin", prefixes[p]);
        if (join_path(parts[p].y, dir, name, "stl10", err, err_size)) return -1;
        parts[p].labeled = strcmp(prefixes[p], "unlabeled") != 0;
        if (stl_check_part(&parts[p], err, err_size)) return -1;
        total += parts[p].count;
    }
    if (dataset_alloc(ds, total, 3, STL_SIDE, STL_SIDE, "stl10", err, err_size)) return -1;
    for (int p = 0, first = 0; p < n_parts; first += (int)parts[p].count, p++)
        if (stl_read_part(ds, first, &parts[p], err, err_size)) return -1;
    stl_finish(ds);
    return 0;
}

// ---- bytes of a stored file in order: plain, or gzip inflated on demand ----
// Gzip: the stream is inflated only as far as the reader asks, so a header's claim costs nothing until the data is
// there. zlib checks each member's CRC-32 and length trailer when it reaches Z_STREAM_END; the data ends cleanly only
// there, with no byte after the last member.
typedef struct {
    const uint8_t *in;
    size_t in_n, in_pos;
    bool gz, z_live, z_end;   // z_live: z needs inflateEnd; z_end: the last member ended and its trailer checked
    z_stream z;
    const char *name, *kind;
} Source;

static int source_open(Source *s, const uint8_t *buf, size_t n, const char *name, const char *kind, char *err,
                       int err_size) {
    memset(s, 0, sizeof *s);
    s->in = buf;
    s->in_n = n;
    s->name = name;
    s->kind = kind;
    s->gz = n >= 2 && buf[0] == 0x1f && buf[1] == 0x8b;
    if (!s->gz) return 0;
    if (inflateInit2(&s->z, 16 + MAX_WBITS) != Z_OK)   // 16 +: gzip wrapper only
        return fail(err, err_size, "%s: %s: cannot start zlib (out of memory)", kind, name);
    s->z_live = true;
    return 0;
}

static void source_close(Source *s) {
    if (s->z_live) inflateEnd(&s->z);
    s->z_live = false;
}

// Up to want bytes into dst; fewer only at the clean end of the data. Returns the count, or -1 with err set.
static long source_read(Source *s, uint8_t *dst, size_t want, char *err, int err_size) {
    if (!s->gz) {
        size_t k = s->in_n - s->in_pos < want ? s->in_n - s->in_pos : want;
        memcpy(dst, s->in + s->in_pos, k);
        s->in_pos += k;
        return (long)k;
    }
    const size_t step = 1u << 30;   // zlib counts in 32-bit uInt
    size_t done = 0;
    while (done < want) {
        size_t left = s->in_n - s->in_pos;
        if (s->z_end) {   // between members: only another gzip member may follow
            if (left == 0) break;
            if (left < 2 || s->in[s->in_pos] != 0x1f || s->in[s->in_pos + 1] != 0x8b)
                return fail(err, err_size, "%s: %s: %zu unexpected bytes after the end of the gzip stream", s->kind,
                            s->name, left);
            inflateReset(&s->z);
            s->z_end = false;
        }
        size_t in_chunk = left < step ? left : step, out_chunk = want - done < step ? want - done : step;
        s->z.next_in = (Bytef *)(s->in + s->in_pos);
        s->z.avail_in = (uInt)in_chunk;
        s->z.next_out = dst + done;
        s->z.avail_out = (uInt)out_chunk;
        int zr = inflate(&s->z, Z_NO_FLUSH);
        s->in_pos += in_chunk - s->z.avail_in;
        done += out_chunk - s->z.avail_out;
        if (zr == Z_STREAM_END) s->z_end = true;
        else if (zr == Z_BUF_ERROR && s->in_pos == s->in_n)
            return fail(err, err_size, "%s: %s: truncated gzip stream (it ends before its end-of-stream and CRC-32 / "
                        "length trailer)", s->kind, s->name);
        else if (zr == Z_MEM_ERROR) return fail(err, err_size, "%s: %s: out of memory inflating", s->kind, s->name);
        else if (zr != Z_OK)
            return fail(err, err_size, "%s: %s: corrupt gzip data (zlib: %s)", s->kind, s->name,
                        s->z.msg ? s->z.msg : zError(zr));
    }
    return (long)done;
}

// The data must end here: reads one more byte, which must not exist (a gzip stream must end cleanly).
static int source_expect_end(Source *s, const char *after, char *err, int err_size) {
    uint8_t extra;
    long got = source_read(s, &extra, 1, err, err_size);
    if (got < 0) return -1;
    if (got) return fail(err, err_size, "%s: %s: unexpected bytes after %s", s->kind, s->name, after);
    return 0;
}

// ---- IDX ----
enum { IDX_SIDE = 28, IDX_PAD = 2, IDX_STORED = IDX_SIDE + 2 * IDX_PAD, IDX_GROW_FIRST = 1 << 16 };
static const uint32_t IDX_IMAGES_MAGIC = 0x00000803, IDX_LABELS_MAGIC = 0x00000801;

// Magic, count and (images) 28 x 28 from the header. *count is at most INT_MAX.
static int idx_header(Source *s, bool images, long *count, char *err, int err_size) {
    uint8_t raw[16];
    size_t bytes = images ? 16 : 8;
    long got = source_read(s, raw, bytes, err, err_size);
    if (got < 0) return -1;
    if ((size_t)got != bytes)
        return fail(err, err_size, "%s: %s: truncated IDX header (%ld of %zu bytes)", s->kind, s->name, got, bytes);
    uint32_t w[4];
    for (size_t i = 0; i < bytes / 4; i++)
        w[i] = (uint32_t)raw[4 * i] << 24 | (uint32_t)raw[4 * i + 1] << 16 | (uint32_t)raw[4 * i + 2] << 8 | raw[4 * i + 3];
    uint32_t magic = images ? IDX_IMAGES_MAGIC : IDX_LABELS_MAGIC;
    if (w[0] != magic)
        return fail(err, err_size, "%s: %s: bad magic 0x%08x (IDX %s need 0x%08x)", s->kind, s->name, w[0],
                    images ? "images" : "labels", magic);
    if (images && (w[2] != IDX_SIDE || w[3] != IDX_SIDE))
        return fail(err, err_size, "%s: %s: images are %ux%u, expected %dx%d", s->kind, s->name, w[2], w[3], IDX_SIDE,
                    IDX_SIDE);
    if (w[1] == 0 || w[1] > INT_MAX)
        return fail(err, err_size, "%s: %s: header claims %u %s", s->kind, s->name, w[1], images ? "images" : "labels");
    *count = w[1];
    return 0;
}

// The payload of `bytes` bytes (checked against a plain file's size first; gzip: the buffer doubles only as data
// arrives), then the end of the data. *out is malloc'd.
static int idx_payload(Source *s, size_t bytes, const char *what, uint8_t **out, char *err, int err_size) {
    *out = NULL;
    if (!s->gz && bytes != s->in_n - s->in_pos)
        return fail(err, err_size, "%s: %s: the header claims %zu bytes of %s but %zu bytes follow it", s->kind,
                    s->name, bytes, what, s->in_n - s->in_pos);
    size_t cap = bytes < IDX_GROW_FIRST ? bytes : IDX_GROW_FIRST, have = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) return fail(err, err_size, "%s: %s: out of memory", s->kind, s->name);
    for (;;) {
        long got = source_read(s, buf + have, cap - have, err, err_size);
        if (got < 0) {
            free(buf);
            return -1;
        }
        have += (size_t)got;
        if (have < cap || cap == bytes) break;
        cap = cap > bytes / 2 ? bytes : 2 * cap;
        uint8_t *grown = realloc(buf, cap);
        if (!grown) {
            free(buf);
            return fail(err, err_size, "%s: %s: out of memory for %zu bytes of %s", s->kind, s->name, cap, what);
        }
        buf = grown;
    }
    char after[96];
    snprintf(after, sizeof after, "%zu bytes of %s", bytes, what);
    if (have < bytes) {
        free(buf);
        return fail(err, err_size, "%s: %s: truncated: the header claims %zu bytes of %s, the data holds %zu", s->kind,
                    s->name, bytes, what, have);
    }
    if (source_expect_end(s, after, err, err_size)) {
        free(buf);
        return -1;
    }
    *out = buf;
    return 0;
}

// 28 x 28 -> 32 x 32 reflect padding (torch ReflectionPad2d(2): index -1 mirrors to 1, 28 to 26)
static void idx_pad(const uint8_t *src, uint8_t *dst) {
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

int idx_parse(Dataset *ds, bool fashion, const uint8_t *images, size_t images_n, const char *images_name,
              const uint8_t *labels, size_t labels_n, const char *labels_name, char *err, int err_size) {
    const char *kind = fashion ? "fashion-mnist" : "mnist";
    memset(ds, 0, sizeof *ds);
    Source si, sl;
    if (source_open(&si, images, images_n, images_name, kind, err, err_size)) return -1;
    if (source_open(&sl, labels, labels_n, labels_name, kind, err, err_size)) {
        source_close(&si);
        return -1;
    }
    uint8_t *pix = NULL, *lab = NULL;
    long n = 0, n_labels = 0;
    int rc = -1;
    if (idx_header(&si, true, &n, err, err_size) || idx_header(&sl, false, &n_labels, err, err_size)) goto done;
    if (n_labels != n) {
        fail(err, err_size, "%s: %s: %ld labels but %s holds %ld images", kind, labels_name, n_labels, images_name, n);
        goto done;
    }
    size_t pix_bytes;   // n <= INT_MAX, so this cannot overflow a 64-bit size_t; checked all the same
    if (__builtin_mul_overflow((size_t)n, (size_t)IDX_SIDE * IDX_SIDE, &pix_bytes)) {
        fail(err, err_size, "%s: %s: %ld images do not fit in memory", kind, images_name, n);
        goto done;
    }
    if (idx_payload(&si, pix_bytes, "pixels", &pix, err, err_size) ||
        idx_payload(&sl, (size_t)n, "labels", &lab, err, err_size))
        goto done;
    for (long i = 0; i < n; i++) {
        if (lab[i] >= 10) {
            fail(err, err_size, "%s: %s: label %ld is %d (must be < 10)", kind, labels_name, i, lab[i]);
            goto done;
        }
    }
    if (dataset_alloc(ds, n, 1, IDX_STORED, IDX_STORED, kind, err, err_size)) goto done;
    for (long i = 0; i < n; i++) {
        idx_pad(pix + i * IDX_SIDE * IDX_SIDE, ds->pixels + i * IDX_STORED * IDX_STORED);
        ds->labels[i] = lab[i];
    }
    ds->n_classes = 10;
    ds->family = FAMILY_CIFAR;
    ds->input_size = IDX_STORED;
    set_norm(ds, fashion ? FASHION_MEAN : MNIST_MEAN, fashion ? FASHION_STD : MNIST_STD);
    snprintf(ds->name, sizeof ds->name, "%s", kind);
    rc = 0;
done:
    free(pix);
    free(lab);
    source_close(&si);
    source_close(&sl);
    if (rc) dataset_free(ds);
    return rc;
}

// dir/base.gz if it exists, else dir/base, into path.
static int idx_path(const char *dir, const char *base, char *path, const char *kind, char *err, int err_size) {
    char name[128];
    snprintf(name, sizeof name, "%s.gz", base);
    if (join_path(path, dir, name, kind, err, err_size)) return -1;
    struct stat st;
    if (stat(path, &st) == 0) return 0;
    if (join_path(path, dir, base, kind, err, err_size)) return -1;
    if (stat(path, &st) != 0)
        return fail(err, err_size, "%s: %s/%s(.gz): cannot open (%s)", kind, dir, base, strerror(errno));
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
    if (idx_path(dir, base, img_path, kind, err, err_size)) return -1;
    snprintf(base, sizeof base, "%s-labels-idx1-ubyte", prefix);
    if (idx_path(dir, base, lab_path, kind, err, err_size)) return -1;
    uint8_t *img = NULL, *lab = NULL;
    size_t img_n = 0, lab_n = 0;
    int rc = read_file(img_path, LONG_MAX, &img, &img_n, kind, err, err_size);
    if (!rc) rc = read_file(lab_path, LONG_MAX, &lab, &lab_n, kind, err, err_size);
    if (!rc) rc = idx_parse(ds, fashion, img, img_n, img_path, lab, lab_n, lab_path, err, err_size);
    free(img);
    free(lab);
    return rc;
}

// ---- one image file: the format from its magic bytes, limits from its header, then the decode ----
typedef enum { IMAGE_JPEG, IMAGE_PNG, IMAGE_BMP } ImageFormat;

static const uint8_t PNG_SIGNATURE[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

static int image_format(const uint8_t *buf, size_t n, ImageFormat *format, char *why, int why_size) {
    if (n >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff) *format = IMAGE_JPEG;
    else if (n >= 8 && !memcmp(buf, PNG_SIGNATURE, 8)) *format = IMAGE_PNG;
    else if (n >= 2 && buf[0] == 'B' && buf[1] == 'M') *format = IMAGE_BMP;
    else if (n < 8) return fail(why, why_size, "file of %zu bytes is too short for an image", n);
    else return fail(why, why_size, "not a JPEG, PNG or BMP file (it starts %02x %02x %02x %02x)", buf[0], buf[1],
                     buf[2], buf[3]);
    return 0;
}

static int check_limits(long w, long h, char *why, int why_size) {
    if (w < 1 || h < 1) return fail(why, why_size, "image is %ldx%ld", w, h);
    if (w > IMAGE_MAX_PIXELS / h)
        return fail(why, why_size, "image is %ldx%ld = %ld pixels, more than the limit of %ld (IMAGE_MAX_PIXELS)", w, h,
                    w * h, IMAGE_MAX_PIXELS);
    long longer = w > h ? w : h, shorter = w > h ? h : w;
    if (longer > IMAGE_MAX_ASPECT * shorter)
        return fail(why, why_size, "image is %ldx%ld, an aspect ratio over %d:1 (IMAGE_MAX_ASPECT)", w, h,
                    IMAGE_MAX_ASPECT);
    return 0;
}

// ---- PNG: stb_image trusts chunk lengths (it allocates an IDAT buffer from one before the data is read), grows its
// inflate output without bound, ignores CRCs and names a cut-short file only by a code ("outofdata"), so every chunk
// is checked here first ----
typedef struct { uint32_t w, h; int depth, color, interlace; bool cgbi; } PngInfo;

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

static int png_channels(int color) { return color == 2 ? 3 : color == 4 ? 2 : color == 6 ? 4 : 1; }

static bool png_depth_ok(int color, int depth) {
    switch (color) {
        case 0: return depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16;
        case 3: return depth == 1 || depth == 2 || depth == 4 || depth == 8;
        case 2: case 4: case 6: return depth == 8 || depth == 16;
        default: return false;
    }
}

// Every chunk within the file (with its CRC when check_crc), IHDR first and valid, IEND reached.
static int png_walk(const uint8_t *buf, size_t n, bool check_crc, PngInfo *p, char *why, int why_size) {
    memset(p, 0, sizeof *p);
    bool seen_ihdr = false;
    for (size_t pos = 8;;) {
        if (n - pos < 12)
            return fail(why, why_size, "PNG ends at byte %zu without an IEND chunk (truncated?)", n);
        uint32_t len = be32(buf + pos);
        const uint8_t *type = buf + pos + 4;
        char name[5];
        for (int k = 0; k < 4; k++) name[k] = (type[k] >= 'A' && type[k] <= 'Z') || (type[k] >= 'a' && type[k] <= 'z') ? (char)type[k] : '?';
        name[4] = '\0';
        if (strchr(name, '?')) return fail(why, why_size, "PNG chunk at byte %zu has a bad type", pos);
        if (len > 0x7fffffffu || len > n - pos - 12)
            return fail(why, why_size, "PNG chunk %s at byte %zu: its %u bytes run past the end of the %zu-byte file "
                        "(truncated?)", name, pos, len, n);
        if (check_crc && crc32(0, type, len + 4) != be32(buf + pos + 8 + len))
            return fail(why, why_size, "PNG chunk %s at byte %zu: CRC mismatch (damaged file)", name, pos);
        const uint8_t *d = buf + pos + 8;
        if (!seen_ihdr) {
            if (!memcmp(name, "CgBI", 4)) p->cgbi = true;   // Apple's variant: raw deflate, handled by stb
            else if (memcmp(name, "IHDR", 4)) return fail(why, why_size, "PNG does not start with IHDR (found %s)", name);
            else {
                if (len != 13) return fail(why, why_size, "PNG IHDR has %u bytes (must be 13)", len);
                p->w = be32(d);
                p->h = be32(d + 4);
                p->depth = d[8];
                p->color = d[9];
                p->interlace = d[12];
                if (p->w == 0 || p->h == 0 || p->w > 0x7fffffffu || p->h > 0x7fffffffu)
                    return fail(why, why_size, "PNG IHDR claims %ux%u pixels", p->w, p->h);
                if (!png_depth_ok(p->color, p->depth))
                    return fail(why, why_size, "PNG IHDR: colour type %d with bit depth %d is not valid", p->color,
                                p->depth);
                if (d[10] || d[11] || p->interlace > 1)
                    return fail(why, why_size, "PNG IHDR: compression %d, filter %d, interlace %d (must be 0, 0, 0/1)",
                                d[10], d[11], p->interlace);
                seen_ihdr = true;
            }
        } else if (!memcmp(name, "IHDR", 4)) return fail(why, why_size, "PNG has a second IHDR at byte %zu", pos);
        if (!memcmp(name, "IEND", 4)) return 0;
        pos += 12 + (size_t)len;
    }
}

// Bytes the filtered image needs: per row (or Adam7 pass row) one filter byte and the packed pixels.
static uint64_t png_raw_bytes(const PngInfo *p) {
    int bits = png_channels(p->color) * p->depth;
    if (!p->interlace) return (uint64_t)p->h * (1 + ((uint64_t)p->w * bits + 7) / 8);
    static const int x0[7] = {0, 4, 0, 2, 0, 1, 0}, y0[7] = {0, 0, 4, 0, 2, 0, 1};
    static const int dx[7] = {8, 8, 4, 4, 2, 2, 1}, dy[7] = {8, 8, 8, 4, 4, 2, 2};
    uint64_t total = 0;
    for (int k = 0; k < 7; k++) {
        uint64_t pw = p->w > (uint32_t)x0[k] ? (p->w - x0[k] + dx[k] - 1) / dx[k] : 0;
        uint64_t ph = p->h > (uint32_t)y0[k] ? (p->h - y0[k] + dy[k] - 1) / dy[k] : 0;
        if (pw && ph) total += ph * (1 + (pw * bits + 7) / 8);
    }
    return total;
}

// The IDAT data must inflate (zlib, its Adler-32 checked) to exactly what IHDR needs: no more (stb would grow its
// buffer without bound) and no less (a cut-short stream gets a reason that says so).
static int png_inflate_check(const uint8_t *buf, size_t n, const PngInfo *p, char *why, int why_size) {
    uint64_t need = png_raw_bytes(p), got = 0;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, p->cgbi ? -MAX_WBITS : MAX_WBITS) != Z_OK)
        return fail(why, why_size, "cannot start zlib (out of memory)");
    uint8_t scratch[16384];
    bool ended = false;
    int rc = 0;
    for (size_t pos = 8; rc == 0 && !ended;) {   // png_walk has checked every length and reached IEND
        uint32_t len = be32(buf + pos);
        if (!memcmp(buf + pos + 4, "IEND", 4)) break;
        if (!memcmp(buf + pos + 4, "IDAT", 4)) {
            z.next_in = (Bytef *)(buf + pos + 8);
            z.avail_in = len;
            do {   // until this chunk is used up and no output is pending
                z.next_out = scratch;
                z.avail_out = sizeof scratch;
                int zr = inflate(&z, Z_NO_FLUSH);
                got += sizeof scratch - z.avail_out;
                if (got > need)
                    rc = fail(why, why_size, "PNG image data inflates to more than the %llu bytes a %ux%u image needs",
                              (unsigned long long)need, p->w, p->h);
                else if (zr == Z_STREAM_END) ended = true;
                else if (zr == Z_BUF_ERROR) break;   // needs the next chunk's data
                else if (zr != Z_OK) rc = fail(why, why_size, "PNG image data is corrupt (zlib: %s)", z.msg ? z.msg : zError(zr));
            } while (rc == 0 && !ended && (z.avail_in > 0 || z.avail_out == 0));
        }
        pos += 12 + (size_t)len;
    }
    inflateEnd(&z);
    if (rc) return rc;
    if (!ended) return fail(why, why_size, "PNG image data is cut short (its zlib stream does not end: truncated?)");
    if (got < need)
        return fail(why, why_size, "PNG image data holds %llu of the %llu bytes a %ux%u image needs",
                    (unsigned long long)got, (unsigned long long)need, p->w, p->h);
    return 0;
}

// ---- JPEG: libjpeg-turbo (TurboJPEG API) ----
// stb_image 2.27 writes past a Huffman table for a DHT of more than 256 codes and decodes a cut-short file without
// complaint; libjpeg-turbo refuses both. Every warning refuses the file (a truncated JPEG is only a warning to
// libjpeg, which fills the missing rows with grey), and progressive files are limited to 500 scans.
static int jpeg_read(const uint8_t *buf, size_t n, bool decode, int *w, int *h, uint8_t **rgb, char *why, int why_size) {
    tjhandle tj = tjInitDecompress();
    if (!tj) return fail(why, why_size, "cannot start libjpeg-turbo: %s", tjGetErrorStr2(NULL));
    int subsamp, colorspace, rc = 0;
    if (tjDecompressHeader3(tj, buf, (unsigned long)n, w, h, &subsamp, &colorspace))
        rc = fail(why, why_size, "JPEG header: %s", tjGetErrorStr2(tj));
    if (!rc) rc = check_limits(*w, *h, why, why_size);
    if (!rc && decode) {
        bool cmyk = colorspace == TJCS_CMYK || colorspace == TJCS_YCCK;
        size_t pixels = (size_t)*w * (size_t)*h;
        *rgb = malloc(pixels * (cmyk ? 4 : 3));
        if (!*rgb) rc = fail(why, why_size, "out of memory for %dx%d pixels", *w, *h);
        else if (tjDecompress2(tj, buf, (unsigned long)n, *rgb, *w, 0, *h, cmyk ? TJPF_CMYK : TJPF_RGB,
                               TJFLAG_LIMITSCANS | TJFLAG_STOPONWARNING))
            rc = fail(why, why_size, "JPEG data: %s", tjGetErrorStr2(tj));
        else if (cmyk) {   // Adobe's inverted CMYK: R = C * K / 255 (as stb_image did), packed in place
            uint8_t *p = *rgb;
            for (size_t i = 0; i < pixels; i++) {
                unsigned k = p[4 * i + 3];
                for (int c = 0; c < 3; c++) {
                    unsigned t = p[4 * i + c] * k + 128;
                    p[3 * i + c] = (uint8_t)((t + (t >> 8)) >> 8);
                }
            }
        }
        if (rc) {
            free(*rgb);
            *rgb = NULL;
        }
    }
    tjDestroy(tj);
    return rc;
}

static int header_of(const uint8_t *buf, size_t n, bool full, ImageFormat *format, int *w, int *h, char *why,
                     int why_size) {
    if (image_format(buf, n, format, why, why_size)) return -1;
    if (n > (size_t)IMAGE_MAX_FILE_BYTES)
        return fail(why, why_size, "%zu bytes, more than the %ld-byte limit", n, IMAGE_MAX_FILE_BYTES);
    if (*format == IMAGE_JPEG) return jpeg_read(buf, n, false, w, h, NULL, why, why_size);
    if (*format == IMAGE_PNG) {
        PngInfo p;
        if (png_walk(buf, n, full, &p, why, why_size) || check_limits(p.w, p.h, why, why_size)) return -1;
        if (full && png_inflate_check(buf, n, &p, why, why_size)) return -1;
        *w = (int)p.w;
        *h = (int)p.h;
        return 0;
    }
    int comp;
    if (!stbi_info_from_memory(buf, (int)n, w, h, &comp)) return fail(why, why_size, "BMP header: %s", stbi_failure_reason());
    return check_limits(*w, *h, why, why_size);
}

int image_header(const uint8_t *buf, size_t n, int *w, int *h, char *why, int why_size) {
    ImageFormat format;
    return header_of(buf, n, false, &format, w, h, why, why_size);
}

// hwc (h, w, 3) into dst (3, side, side): copied, or Resize(side) + CenterCrop(side) as torchvision does.
static int place_image(const uint8_t *hwc, int w, int h, int side, bool resize, uint8_t *dst, char *why, int why_size) {
    if (!resize) {
        if (w != side || h != side)
            return fail(why, why_size, "image is %dx%d; every image of this folder must be %dx%d", w, h, side, side);
        for (int c = 0; c < 3; c++)
            for (long i = 0; i < (long)side * side; i++) dst[c * side * side + i] = hwc[3 * i + c];
        return 0;
    }
    // the shorter side becomes side, the longer int(side * long / short) (<= IMAGE_MAX_ASPECT * side)
    int rh = w <= h ? (int)((long)side * h / w) : side, rw = w <= h ? side : (int)((long)side * w / h);
    float *plane = malloc(sizeof(float) * (size_t)w * h), *big = malloc(sizeof(float) * (size_t)rw * rh);
    int rc = 0;
    if (!plane || !big) rc = fail(why, why_size, "out of memory resizing %dx%d", w, h);
    int top = (int)nearbyint((rh - side) / 2.0), left = (int)nearbyint((rw - side) / 2.0);
    for (int c = 0; c < 3 && rc == 0; c++) {   // one channel at a time: a float plane, not three
        for (long i = 0; i < (long)w * h; i++) plane[i] = hwc[3 * i + c] * (1.0f / 255);
        resize_bicubic(plane, 1, h, w, 0, 0, h, w, rh, rw, big);
        for (int y = 0; y < side; y++)
            for (int x = 0; x < side; x++)
                dst[((long)c * side + y) * side + x] = (uint8_t)nearbyintf(255.0f * big[(long)(top + y) * rw + left + x]);
    }
    free(plane);
    free(big);
    return rc;
}

int image_decode(const uint8_t *buf, size_t n, int side, bool resize, uint8_t *dst, char *why, int why_size) {
    ImageFormat format;
    int w, h;
    if (header_of(buf, n, true, &format, &w, &h, why, why_size)) return -1;
    uint8_t *hwc = NULL;
    bool from_stb = format != IMAGE_JPEG;
    if (!from_stb) {
        if (jpeg_read(buf, n, true, &w, &h, &hwc, why, why_size)) return -1;
    } else {
        int dw, dh, comp;
        hwc = stbi_load_from_memory(buf, (int)n, &dw, &dh, &comp, 3);
        if (!hwc) return fail(why, why_size, "%s data: %s", format == IMAGE_PNG ? "PNG" : "BMP", stbi_failure_reason());
        if (dw != w || dh != h) {
            stbi_image_free(hwc);
            return fail(why, why_size, "decoded %dx%d but the header says %dx%d", dw, dh, w, h);
        }
    }
    int rc = place_image(hwc, w, h, side, resize, dst, why, why_size);
    if (from_stb) stbi_image_free(hwc);
    else free(hwc);
    return rc;
}

// ---- image folders: root/train/<class>/<image> and root/test/<class>/<image>, or root/<class>/<image> ----
// Classes are the subdirectories sorted by name (label = index), images sorted by name within a class, every image
// converted to 3 channels. Without train/ and test/, the split is a hold-out (data.h). Sizes decide the family:
//   all images 32 x 32                        -> CIFAR family, stored as is, input 32, CIFAR mean / std;
//   else every shorter side <= 96 px          -> STL family: shorter side resized to 96 (bicubic), centre crop
//                                                96 x 96, input 64 (random resized crops), STL mean / std;
//   else                                      -> IMAGENET family: shorter side resized to 146, centre crop 146 x 146,
//                                                input 128, ImageNet mean / std.
enum { FOLDER_STL_SIDE = 96, FOLDER_IMAGENET_SIDE = 146, FOLDER_HOLDOUT_EVERY = 10, FOLDER_MSG = 768 };
#define FOLDER_HOLDOUT_NAME "folder (no train/test: every 10th image held out)"

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


// The first failing image by index is the one reported, so the message does not depend on thread timing.
typedef struct { int index; char msg[FOLDER_MSG]; } FirstFailure;

static void keep_first(FirstFailure *f, int i, const char *msg) {
#pragma omp critical(folder_first_failure)
    {
        if (f->index < 0 || i < f->index) {
            f->index = i;
            snprintf(f->msg, sizeof f->msg, "%s", msg);
        }
    }
}

static bool failed_before(FirstFailure *f, int i) {
    int bad;
#pragma omp atomic read
    bad = f->index;
    return bad >= 0 && bad < i;
}

// Reads image i and either checks its header (dst NULL: widths/heights filled) or decodes it into dst.
static void folder_image(const char *path, int side, bool resize, uint8_t *dst, int *w, int *h, int i,
                         FirstFailure *first) {
    char msg[FOLDER_MSG], why[256];
    uint8_t *buf;
    size_t n;
    if (read_file(path, IMAGE_MAX_FILE_BYTES, &buf, &n, "folder", msg, sizeof msg)) {
        keep_first(first, i, msg);
        return;
    }
    int rc = dst ? image_decode(buf, n, side, resize, dst, why, sizeof why) : image_header(buf, n, w, h, why, sizeof why);
    free(buf);
    if (rc) {
        snprintf(msg, sizeof msg, "folder: %s: cannot %s the image (%s)", path, dst ? "decode" : "read", why);
        keep_first(first, i, msg);
    }
}

static int load_folder(Dataset *ds, const char *path, const char *split, char *err, int err_size) {
    if (strcmp(split, "train") && strcmp(split, "test"))
        return fail(err, err_size, "folder: %s: unknown split \"%s\" (use train or test)", path, split);
    char root[PATH_SIZE], other[PATH_SIZE];
    bool want_test = !strcmp(split, "test");
    if (join_path(root, path, split, "folder", err, err_size) ||
        join_path(other, path, want_test ? "train" : "test", "folder", err, err_size))
        return -1;
    bool has_split = is_dir(root), has_other = is_dir(other);
    if (has_split != has_other)
        return fail(err, err_size, "folder: %s: has %s/ but no %s/ (give both, or neither for a hold-out of every "
                    "%dth image)", path, has_split ? split : (want_test ? "train" : "test"),
                    has_split ? (want_test ? "train" : "test") : split, FOLDER_HOLDOUT_EVERY);
    bool holdout = !has_split;
    if (holdout) snprintf(root, sizeof root, "%s", path);
    NameList classes, files = {0};
    if (list_dir(root, true, &classes, err, err_size)) return -1;
    int rc = -1, n = 0;
    int *labels = NULL, *widths = NULL, *heights = NULL;
    FirstFailure *first = NULL;
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
            if (holdout && (i % FOLDER_HOLDOUT_EVERY == FOLDER_HOLDOUT_EVERY - 1) != want_test) continue;
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
        fail(err, err_size, "folder: %s: no images (.jpg .jpeg .png .bmp) in its class folders%s", root,
             holdout ? (want_test ? " for the held-out split (every 10th image of a class)" : "") : "");
        goto done;
    }
    widths = malloc(sizeof(int) * n);
    heights = malloc(sizeof(int) * n);
    first = malloc(sizeof *first);
    if (!widths || !heights || !first) {
        fail(err, err_size, "folder: out of memory");
        goto done;
    }
    first->index = -1;
    // pass 1: sizes from the headers only, to choose the family
#pragma omp parallel for schedule(dynamic, 64)
    for (int i = 0; i < n; i++)
        if (!failed_before(first, i)) folder_image(files.names[i], 0, false, NULL, &widths[i], &heights[i], i, first);
    if (first->index >= 0) {
        fail(err, err_size, "%s", first->msg);
        goto done;
    }
    bool all_32 = true;
    int max_short = 0;
    for (int i = 0; i < n; i++) {
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
        if (!failed_before(first, i))
            folder_image(files.names[i], side, family != FAMILY_CIFAR, ds->pixels + i * image_bytes, NULL, NULL, i, first);
    if (first->index >= 0) {
        fail(err, err_size, "%s", first->msg);
        goto done;
    }
    memcpy(ds->labels, labels, sizeof(int) * n);
    ds->n_classes = classes.n;
    ds->family = family;
    ds->input_size = family == FAMILY_CIFAR ? 32 : family == FAMILY_STL ? 64 : 128;
    set_norm(ds, family == FAMILY_CIFAR ? CIFAR_MEAN : family == FAMILY_STL ? STL_MEAN : IMAGENET_MEAN,
             family == FAMILY_CIFAR ? CIFAR_STD : family == FAMILY_STL ? STL_STD : IMAGENET_STD);
    snprintf(ds->name, sizeof ds->name, "%s", holdout ? FOLDER_HOLDOUT_NAME : "folder");
    rc = 0;
done:
    names_free(&classes);
    names_free(&files);
    free(labels);
    free(widths);
    free(heights);
    free(first);
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
