// fuzz/make_corpus.c - writes the seed corpora of fuzz/corpus/<target>/: small valid files and edge cases of each
// format, each prefixed with the mode bytes its target reads (see the target's header comment). Deterministic, so
// `make fuzz-corpus` rewrites the same files.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <zlib.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

#include "../io/safetensors.h"

static const char *root;

typedef struct { unsigned char *data; size_t n, cap; } Buf;

static void put(Buf *b, const void *p, size_t k) {
    if (b->n + k > b->cap) {
        b->cap = 2 * (b->n + k) + 64;
        if (!(b->data = realloc(b->data, b->cap))) { perror("realloc"); exit(1); }
    }
    memcpy(b->data + b->n, p, k);
    b->n += k;
}
static void put_byte(Buf *b, int v) { unsigned char c = (unsigned char)v; put(b, &c, 1); }
static void put_be32(Buf *b, unsigned v) { unsigned char p[4] = {v >> 24, v >> 16, v >> 8, v}; put(b, p, 4); }
static void stb_sink(void *ctx, void *data, int size) { put(ctx, data, (size_t)size); }

static void save(const char *target, const char *name, const Buf *b) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, target);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b->data, 1, b->n, f) != b->n || fclose(f)) { perror(path); exit(1); }
}

static unsigned char *pattern(int w, int h, int comp) {
    unsigned char *p = malloc((size_t)w * h * comp);
    for (long i = 0; i < (long)w * h * comp; i++) p[i] = (unsigned char)(i * 37 + (i / (w * comp)) * 11);
    return p;
}

static Buf gzip_of(const Buf *in) {
    Buf out = {0};
    z_stream z = {0};
    if (deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) exit(1);
    out.cap = deflateBound(&z, in->n) + 32;
    out.data = malloc(out.cap);
    z.next_in = in->data;
    z.avail_in = (uInt)in->n;
    z.next_out = out.data;
    z.avail_out = (uInt)out.cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) exit(1);
    out.n = out.cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

// ---- safetensors ----
static void corpus_safetensors(void) {
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/st.tmp", root);
    const char *names[] = {"small", "scalar", "four_d", "escaped"};
    for (int k = 0; k < 4; k++) {
        StWriter *w = st_writer_new();
        float v[24];
        for (int i = 0; i < 24; i++) v[i] = (float)i - 3.5f;
        if (k == 0) {
            st_writer_add(w, "w", 2, (int[]){2, 3}, v);
            st_writer_add(w, "b", 1, (int[]){3}, v + 6);
            st_writer_meta(w, "step", "12");
        } else if (k == 1) st_writer_add(w, "s", 0, NULL, v);
        else if (k == 2) st_writer_add(w, "x", 4, (int[]){1, 2, 3, 4}, v);
        else {
            st_writer_add(w, "quote\" back\\slash\nnl caf\xc3\xa9", 1, (int[]){1}, v);
            st_writer_meta(w, "k\t", "v\x01");
        }
        if (st_writer_save(w, path, err, sizeof err)) { fprintf(stderr, "%s\n", err); exit(1); }
        st_writer_free(w);
        FILE *f = fopen(path, "rb");
        Buf b = {0};
        unsigned char chunk[4096];
        size_t got;
        while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) put(&b, chunk, got);
        fclose(f);
        save("safetensors", names[k], &b);
        free(b.data);
    }
    remove(path);
    Buf b = {0};   // an empty header "{}" padded to 8
    put(&b, "\x08\0\0\0\0\0\0\0{}      ", 16);
    save("safetensors", "empty", &b);
    free(b.data);
    b = (Buf){0};   // unicode escapes, a surrogate pair, whitespace
    const char *json = " { \"\\u00e9\\ud83d\\ude00\" : { \"shape\" : [ ] , \"dtype\" : \"F32\" , \"data_offsets\" : [ 0 , 4 ] } } ";
    unsigned long long len = strlen(json);
    for (int i = 0; i < 8; i++) put_byte(&b, (int)(len >> (8 * i)));
    put(&b, json, len);
    put(&b, "\0\0\x80\x3f", 4);
    save("safetensors", "unicode", &b);
    free(b.data);
}

// ---- IDX: mode byte, labels length, labels, images ----
static void idx_case(const char *name, int mode, int n_images, int n_labels) {
    Buf img = {0}, lab = {0}, out = {0};
    put_be32(&img, 0x803);
    put_be32(&img, (unsigned)n_images);
    put_be32(&img, 28);
    put_be32(&img, 28);
    unsigned char *p = pattern(28, 28 * n_images, 1);
    put(&img, p, 784 * (size_t)n_images);
    free(p);
    put_be32(&lab, 0x801);
    put_be32(&lab, (unsigned)n_labels);
    for (int i = 0; i < n_labels; i++) put_byte(&lab, (i * 3) % 10);
    // bit 3 (ignored by the harness's gzip bits): the file bytes are gzip already
    Buf limg = img, llab = lab;
    if (mode & 8) {
        limg = gzip_of(&img);
        llab = gzip_of(&lab);
    }
    put_byte(&out, mode & 7);
    put_byte(&out, (int)(llab.n & 255));
    put_byte(&out, (int)(llab.n >> 8));
    put(&out, llab.data, llab.n);
    put(&out, limg.data, limg.n);
    save("idx", name, &out);
    if (mode & 8) {
        free(limg.data);
        free(llab.data);
    }
    free(img.data);
    free(lab.data);
    free(out.data);
}

// ---- CIFAR / STL ----
static void cifar_stl_cases(void) {
    for (int c100 = 0; c100 < 2; c100++) {
        Buf b = {0};
        put_byte(&b, c100);
        for (int r = 0; r < 2; r++) {
            if (c100) put_byte(&b, 7 + r);
            put_byte(&b, c100 ? 42 + r : 3 + r);
            unsigned char *p = pattern(32, 32, 3);
            put(&b, p, 3072);
            free(p);
        }
        save("cifar_stl", c100 ? "cifar100_2" : "cifar10_2", &b);
        free(b.data);
    }
    unsigned char *img = pattern(96, 96, 3);
    Buf b = {0};
    put_byte(&b, 2);
    put_byte(&b, 1);
    put_byte(&b, 0);
    put_byte(&b, 10);
    put(&b, img, 27648);
    save("cifar_stl", "stl_labeled_1", &b);
    free(b.data);
    b = (Buf){0};
    put_byte(&b, 3);
    put(&b, img, 27648);
    save("cifar_stl", "stl_unlabeled_1", &b);
    free(b.data);
    free(img);
}

// ---- images: mode byte then the file ----
static void save_image(const char *name, int mode, const Buf *file) {
    Buf b = {0};
    put_byte(&b, mode);
    put(&b, file->data, file->n);
    save("image", name, &b);
    free(b.data);
}

static void png_chunk(Buf *b, const char *type, const unsigned char *data, unsigned len) {
    put_be32(b, len);
    put(b, type, 4);
    put(b, data, len);
    put_be32(b, (unsigned)crc32(crc32(0, (const Bytef *)type, 4), data, len));
}

// A PNG written here for what stb_image_write cannot make: 16-bit, palette, Adam7 interlace.
static void png_by_hand(const char *name, int w, int h, int depth, int color, int interlace) {
    Buf f = {0}, raw = {0};
    put(&f, "\x89PNG\r\n\x1a\n", 8);
    unsigned char ihdr[13] = {w >> 24, w >> 16, w >> 8, w, h >> 24, h >> 16, h >> 8, h, depth, color, 0, 0, interlace};
    png_chunk(&f, "IHDR", ihdr, 13);
    if (color == 3) {
        unsigned char plte[12] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9};
        png_chunk(&f, "PLTE", plte, 12);
        unsigned char trns[2] = {255, 128};
        png_chunk(&f, "tRNS", trns, 2);
    }
    int ch = color == 2 ? 3 : color == 4 ? 2 : color == 6 ? 4 : 1;
    static const int x0[7] = {0, 4, 0, 2, 0, 1, 0}, y0[7] = {0, 0, 4, 0, 2, 0, 1};
    static const int dx[7] = {8, 8, 4, 4, 2, 2, 1}, dy[7] = {8, 8, 8, 4, 4, 2, 2};
    for (int pass = 0; pass < (interlace ? 7 : 1); pass++) {
        int pw = interlace ? (w > x0[pass] ? (w - x0[pass] + dx[pass] - 1) / dx[pass] : 0) : w;
        int ph = interlace ? (h > y0[pass] ? (h - y0[pass] + dy[pass] - 1) / dy[pass] : 0) : h;
        if (!pw || !ph) continue;
        size_t row = ((size_t)pw * ch * depth + 7) / 8;
        for (int y = 0; y < ph; y++) {
            put_byte(&raw, y % 5);   // every filter type
            for (size_t k = 0; k < row; k++) put_byte(&raw, color == 3 ? (int)(k * 0x1b) & (depth == 8 ? 3 : 0xff) : (int)(k * 13 + y * 7));
        }
    }
    uLongf zn = compressBound(raw.n);
    unsigned char *z = malloc(zn);
    compress2(z, &zn, raw.data, raw.n, 9);
    png_chunk(&f, "IDAT", z, (unsigned)(zn / 2));   // two IDAT chunks
    png_chunk(&f, "IDAT", z + zn / 2, (unsigned)(zn - zn / 2));
    png_chunk(&f, "IEND", (const unsigned char *)"", 0);
    save_image(name, 1, &f);
    free(z);
    free(raw.data);
    free(f.data);
}

static void jpeg_case(const char *name, int w, int h, int pf, int subsamp, int flags, int mode) {
    tjhandle tj = tjInitCompress();
    int comp = tjPixelSize[pf];
    unsigned char *p = pattern(w, h, comp), *jpg = NULL;
    unsigned long size = 0;
    if (tjCompress2(tj, p, w, 0, h, pf, &jpg, &size, subsamp, 75, flags)) {
        fprintf(stderr, "%s: %s\n", name, tjGetErrorStr2(tj));
        exit(1);
    }
    Buf f = {jpg, size, size};
    save_image(name, mode, &f);
    tjFree(jpg);
    free(p);
    tjDestroy(tj);
}

static void corpus_image(void) {
    struct { const char *name; int w, h, comp, mode; char kind; } stb[] = {
        {"png_rgb_32", 32, 32, 3, 5, 'p'}, {"png_gray_8x8", 8, 8, 1, 1, 'p'}, {"png_rgba_40x30", 40, 30, 4, 3, 'p'},
        {"png_ga_17x5", 17, 5, 2, 1, 'p'}, {"bmp_rgb_32", 32, 32, 3, 4, 'b'}, {"bmp_gray_12x9", 12, 9, 1, 2, 'b'},
        {"bmp_rgba_7x7", 7, 7, 4, 0, 'b'},
    };
    for (size_t k = 0; k < sizeof stb / sizeof stb[0]; k++) {
        Buf f = {0};
        unsigned char *p = pattern(stb[k].w, stb[k].h, stb[k].comp);
        int ok = stb[k].kind == 'p'
                     ? stbi_write_png_to_func(stb_sink, &f, stb[k].w, stb[k].h, stb[k].comp, p, stb[k].w * stb[k].comp)
                     : stbi_write_bmp_to_func(stb_sink, &f, stb[k].w, stb[k].h, stb[k].comp, p);
        if (!ok) exit(1);
        save_image(stb[k].name, stb[k].mode, &f);
        free(p);
        free(f.data);
    }
    png_by_hand("png_16bit_rgb_9x4", 9, 4, 16, 2, 0);
    png_by_hand("png_palette_trns_6x6", 6, 6, 8, 3, 0);
    png_by_hand("png_gray2_adam7_11x13", 11, 13, 2, 0, 1);
    png_by_hand("png_rgba16_adam7_5x3", 5, 3, 16, 6, 1);
    jpeg_case("jpeg_rgb_32_444", 32, 32, TJPF_RGB, TJSAMP_444, 0, 4);
    jpeg_case("jpeg_rgb_33x17_420", 33, 17, TJPF_RGB, TJSAMP_420, 0, 0);
    jpeg_case("jpeg_gray_20x40", 20, 40, TJPF_GRAY, TJSAMP_GRAY, 0, 2);
    jpeg_case("jpeg_progressive_24x24", 24, 24, TJPF_RGB, TJSAMP_422, TJFLAG_PROGRESSIVE, 0);
    jpeg_case("jpeg_cmyk_16x16", 16, 16, TJPF_CMYK, TJSAMP_444, 0, 0);
    jpeg_case("jpeg_rgb_64x40_440", 64, 40, TJPF_RGB, TJSAMP_440, 0, 0);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: make_corpus fuzz/corpus\n"); return 2; }
    root = argv[1];
    mkdir(root, 0755);
    corpus_safetensors();
    idx_case("plain_2", 0, 2, 2);
    idx_case("gzip_by_harness_3", 3, 3, 3);
    idx_case("gzip_files_1", 8 | 4, 1, 1);
    idx_case("count_mismatch", 4, 2, 1);
    cifar_stl_cases();
    corpus_image();
    return 0;
}
