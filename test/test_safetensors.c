// test_safetensors.c - the safetensors reader and writer: round trip, atomic save, rejection of bad files with a
// one-line message naming the file, robustness against truncated and corrupted files, a file written by Python,
// and the completeness of the golden fixtures. Values must survive bit-exactly (tolerance 0): the format stores
// the float32 bytes as they are.
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tensor/device.h"
#include "../io/safetensors.h"
#include "test.h"

#define FIXTURES "test/fixtures/"

static void temp_path(char *buf, size_t size, const char *tag) {
    snprintf(buf, size, "/tmp/amdim_st_test_%d_%s.safetensors", (int)getpid(), tag);
}

static bool file_exists(const char *path) { return access(path, F_OK) == 0; }

static void write_bytes(const char *path, const void *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f, "cannot create %s", path);
    CHECK(fwrite(bytes, 1, n, f) == n, "cannot write %s", path);
    fclose(f);
}

// a whole file by hand: header length (or a forced one), JSON header, then data_bytes zero bytes
static void write_raw(const char *path, const char *json, long forced_header_len, size_t data_bytes) {
    size_t json_len = strlen(json), n = 8 + json_len + data_bytes;
    unsigned char *buf = xcalloc(n, 1);
    unsigned long long len = forced_header_len >= 0 ? (unsigned long long)forced_header_len : json_len;
    for (int k = 0; k < 8; k++) buf[k] = (unsigned char)(len >> (8 * k));
    memcpy(buf + 8, json, json_len);
    write_bytes(path, buf, n);
    free(buf);
}

// st_read must fail, with one line that names the file and contains keyword
static int expect_rejected(const char *what, const char *path, const char *keyword) {
    char err[512] = "";
    SafeTensors *st = st_read(path, err, sizeof err);
    int fails = check_true(!st && strstr(err, path) && strstr(err, keyword) && !strchr(err, '\n'),
                           "%-28s -> %s", what, st ? "(accepted)" : err);
    st_free(st);
    return fails;
}

// a name fit for one output line: control characters shown as '?'
static const char *shown(const char *name, char buf[96]) {
    int i = 0;
    for (; name[i] && i < 95; i++) buf[i] = (unsigned char)name[i] < 0x20 ? '?' : name[i];
    buf[i] = '\0';
    return buf;
}

static int shape_is(const SafeTensors *st, const char *name, int ndim, const int *shape) {
    char buf[96];
    int got_ndim = -1, got[4] = {0};
    const float *data = st_get(st, name, &got_ndim, got);
    bool ok = data && got_ndim == ndim;
    for (int k = 0; ok && k < ndim; k++) ok = got[k] == shape[k];
    return check_true(ok, "'%s' present with %d dims (%d %d %d %d)", shown(name, buf), got_ndim, got[0], got[1], got[2],
                      got[3]);
}

// ---- round trip ----

static const char *ODD_NAME = "quote\" back\\slash\nnewline\ttab\x01 caf\xc3\xa9";

static int round_trip(void) {
    char path[256], err[512] = "";
    temp_path(path, sizeof path, "roundtrip");
    Rng rng;
    rng_seed(&rng, 11);
    float conv[24], vec[5], scalar = -0.125f, mat[6], odd[2] = {1e-30f, -3e38f};
    for (int i = 0; i < 24; i++) conv[i] = rng_normal(&rng);
    for (int i = 0; i < 5; i++) vec[i] = rng_uniform(&rng) - 0.5f;
    for (int i = 0; i < 6; i++) mat[i] = (float)i / 3.0f;

    StWriter *w = st_writer_new();
    st_writer_add(w, "conv.weight", SHAPE(3, 2, 2, 2), conv);
    st_writer_add(w, "vec", SHAPE(5), vec);
    st_writer_add(w, "scalar", 0, NULL, &scalar);
    st_writer_add(w, "mat", SHAPE(2, 3), mat);
    st_writer_add(w, ODD_NAME, SHAPE(2), odd);
    st_writer_meta(w, "step", "11");
    st_writer_meta(w, "note", "a \"quoted\"\nline \\ caf\xc3\xa9");
    st_writer_meta(w, "empty", "");
    st_writer_meta(w, "step", "12");  // replaces
    float conv_written[24];
    memcpy(conv_written, conv, sizeof conv);
    conv[0] = 99.0f;  // the writer keeps its own copy
    int fails = check_true(st_writer_save(w, path, err, sizeof err) == 0, "save%s%s", err[0] ? ": " : "", err);
    st_writer_free(w);

    SafeTensors *st = st_read(path, err, sizeof err);
    fails += check_true(st != NULL, "read back: %s", st ? "ok" : err);
    if (!st) return fails;
    const char *order[] = {"conv.weight", "vec", "scalar", "mat", ODD_NAME};
    fails += check_true(st_count(st) == 5, "5 tensors (got %d)", st_count(st));
    for (int i = 0; i < 5 && i < st_count(st); i++)
        fails += check_true(!strcmp(st_name(st, i), order[i]), "tensor %d keeps its name and file order", i);
    fails += shape_is(st, "conv.weight", SHAPE(3, 2, 2, 2));
    fails += shape_is(st, "vec", SHAPE(5));
    fails += shape_is(st, "scalar", SHAPE(1));  // 0-dim reads as (1)
    fails += shape_is(st, "mat", SHAPE(2, 3));
    fails += shape_is(st, ODD_NAME, SHAPE(2));
    if (fails) { st_free(st); return fails; }

    fails += check_close("conv.weight", st_get(st, "conv.weight", NULL, NULL), conv_written, 24, 0, 0);
    fails += check_close("vec", st_get(st, "vec", NULL, NULL), vec, 5, 0, 0);
    fails += check_close("scalar", st_get(st, "scalar", NULL, NULL), &scalar, 1, 0, 0);
    fails += check_close("mat", st_get(st, "mat", NULL, NULL), mat, 6, 0, 0);
    fails += check_close("name with escapes (extreme values)", st_get(st, ODD_NAME, NULL, NULL), odd, 2, 0, 0);

    const char *step = st_meta(st, "step"), *note = st_meta(st, "note"), *empty = st_meta(st, "empty");
    fails += check_true(step && !strcmp(step, "12"), "metadata step = 12 (the replaced value)");
    fails += check_true(note && !strcmp(note, "a \"quoted\"\nline \\ caf\xc3\xa9"), "metadata with escapes");
    fails += check_true(empty && !strcmp(empty, ""), "empty metadata value");
    fails += check_true(!st_meta(st, "missing") && !st_get(st, "missing", NULL, NULL), "absent names give NULL");
    st_free(st);

    // the header is padded so the data section starts 8-byte aligned
    unsigned char len_bytes[8] = {0};
    FILE *f = fopen(path, "rb");
    bool got = f && fread(len_bytes, 1, 8, f) == 8;
    if (f) fclose(f);
    unsigned long long header_len = 0;
    for (int k = 7; k >= 0; k--) header_len = header_len << 8 | len_bytes[k];
    fails += check_true(got && header_len % 8 == 0, "header length %llu is a multiple of 8", header_len);
    unlink(path);
    return fails;
}

// ---- atomic save ----

static int save_one(const char *path, float value, char *err, int err_size) {
    StWriter *w = st_writer_new();
    st_writer_add(w, "value", SHAPE(1), &value);
    int r = st_writer_save(w, path, err, err_size);
    st_writer_free(w);
    return r;
}

static float read_one(const char *path) {
    char err[512] = "";
    SafeTensors *st = st_read(path, err, sizeof err);
    const float *v = st ? st_get(st, "value", NULL, NULL) : NULL;
    float value = v ? *v : NAN;
    st_free(st);
    return value;
}

static int atomic_save(void) {
    char path[256], tmp[300], err[512] = "";
    temp_path(path, sizeof path, "atomic");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    unlink(path);
    int fails = check_true(save_one(path, 1.0f, err, sizeof err) == 0, "first save%s%s", err[0] ? ": " : "", err);
    fails += check_true(read_one(path) == 1.0f && !file_exists(tmp), "file holds 1.0, no .tmp left");
    fails += check_true(save_one(path, 2.0f, err, sizeof err) == 0, "second save over the file%s%s",
                        err[0] ? ": " : "", err);
    fails += check_true(read_one(path) == 2.0f && !file_exists(tmp), "file replaced (2.0), no .tmp left");

    write_bytes(tmp, "stale", 5);  // left over by a crashed save
    fails += check_true(save_one(path, 3.0f, err, sizeof err) == 0, "save over a stale .tmp%s%s",
                        err[0] ? ": " : "", err);
    fails += check_true(read_one(path) == 3.0f && !file_exists(tmp), "file holds 3.0, stale .tmp gone");

    const char *bad = "/nonexistent_dir_amdim/x.safetensors";
    fails += check_true(save_one(bad, 1.0f, err, sizeof err) != 0 && strstr(err, bad) && !file_exists(bad),
                        "save into a missing directory fails: %s", err);
    unlink(path);
    return fails;
}

// ---- bad files ----

typedef struct { const char *what, *json; long forced_len; size_t data_bytes; const char *keyword; } BadCase;

static int bad_files(void) {
    char path[256];
    temp_path(path, sizeof path, "bad");
    const BadCase cases[] = {
        {"header length past EOF", "{}", 1000, 20, "header length 1000 runs past"},
        {"truncated JSON header", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_off", -1, 8, "bad header"},
        {"offsets past EOF", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", -1, 4, "outside"},
        {"wrong byte count", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", -1, 24,
         "needs 24"},
        {"reversed offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", -1, 8, "outside"},
        {"F16 dtype", "{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", -1, 4, "dtype F16"},
        {"garbage JSON", "hello, world!!!", -1, 0, "bad header"},
        {"not an object", "[1,2]", -1, 0, "expected '{'"},
        {"missing colon", "{\"a\" {}}", -1, 0, "expected ':'"},
        {"trailing characters", "{} x", -1, 0, "after the header"},
        {"repeated name", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                          "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", -1, 8, "repeated tensor"},
        {"overlapping tensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", -1, 12, "overlap"},
        {"five dims", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", -1, 4,
         "more than 4"},
        {"negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", -1, 4, "negative"},
        {"fractional dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,4]}}", -1, 4, "integer"},
        {"huge dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", -1, 4,
         "too large"},
        {"zero dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", -1, 0, "empty"},
        {"missing dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", -1, 4, "lacks a dtype"},
        {"unknown key", "{\"a\":{\"dtype\":\"F32\",\"kind\":1,\"shape\":[1],\"data_offsets\":[0,4]}}", -1, 4,
         "unexpected"},
        {"misaligned offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}", -1, 8,
         "multiple of 4"},
        {"metadata not a string", "{\"__metadata__\":{\"step\":12}}", -1, 0, "not a string"},
        {"bad escape", "{\"a\\q\":{}}", -1, 0, "escape"},
        {"unpaired surrogate", "{\"\\ud83d\":{}}", -1, 0, "surrogate"},
        {"NUL escape", "{\"a\\u0000b\":{}}", -1, 0, "\\u0000"},
        {"unterminated string", "{\"abc", -1, 0, "unterminated"},
    };
    int fails = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        write_raw(path, cases[c].json, cases[c].forced_len, cases[c].data_bytes);
        fails += expect_rejected(cases[c].what, path, cases[c].keyword);
    }
    write_bytes(path, "", 0);
    fails += expect_rejected("empty file", path, "truncated");
    write_bytes(path, "\x08\x00\x00\x00\x00", 5);
    fails += expect_rejected("5-byte file", path, "truncated");
    unlink(path);
    fails += expect_rejected("missing file", path, "cannot open");
    fails += expect_rejected("a directory", "/tmp", "not a regular file");
    return fails;
}

// ---- robustness: every truncation and many corrupted headers fail cleanly or read consistently ----

// st_read on the file and st_parse on its bytes must agree: both accept, or both reject with the same line
static int read_mutant(const char *path, const unsigned char *bytes, size_t n, bool *named) {
    char err[512] = "", err_mem[512] = "";
    write_bytes(path, bytes, n);
    SafeTensors *st = st_read(path, err, sizeof err), *mem = st_parse(bytes, n, path, err_mem, sizeof err_mem);
    *named = *named && !st == !mem && !strcmp(err, err_mem);
    st_free(mem);
    if (!st) { *named = *named && strstr(err, path) && !strchr(err, '\n'); return 0; }
    // accepted: every tensor must be readable in full (ASan checks the bounds)
    volatile float sink = 0;
    for (int i = 0; i < st_count(st); i++) {
        int ndim, shape[4];
        const float *x = st_get(st, st_name(st, i), &ndim, shape);
        long numel = 1;
        for (int k = 0; k < ndim; k++) numel *= shape[k];
        for (long j = 0; j < numel; j++) sink += x[j];
    }
    (void)sink;
    st_free(st);
    return 1;
}

static int corrupted_files(void) {
    char path[256], err[512] = "";
    temp_path(path, sizeof path, "corrupt");
    float data[12];
    for (int i = 0; i < 12; i++) data[i] = (float)i;
    StWriter *w = st_writer_new();
    st_writer_add(w, "a", SHAPE(2, 3), data);
    st_writer_add(w, "b", SHAPE(4), data + 6);
    st_writer_add(w, "c\"d", SHAPE(2), data + 10);
    st_writer_meta(w, "k", "v\n");
    CHECK(st_writer_save(w, path, err, sizeof err) == 0, "%s", err);
    st_writer_free(w);
    FILE *f = fopen(path, "rb");
    CHECK(f, "cannot open %s", path);
    unsigned char good[1024];
    size_t n = fread(good, 1, sizeof good, f);
    fclose(f);
    CHECK(n > 8 && n < sizeof good, "unexpected size %zu", n);
    size_t header_end = 8 + (size_t)good[0] + 256 * (size_t)good[1];

    bool named = true;
    int accepted = 0;
    for (size_t len = 0; len < n; len++) accepted += read_mutant(path, good, len, &named);
    int fails = check_true(accepted == 0 && named, "all %zu truncations rejected with the file named (%d accepted)",
                           n, accepted);

    // the JSON cut at every byte, with the header length saying so: the parser must notice the early end
    unsigned char cut[1024];
    size_t json_len = header_end - 8;
    named = true;
    accepted = 0;
    for (size_t len = 0; len < json_len; len++) {
        memset(cut, 0, 8);
        cut[0] = (unsigned char)(len & 0xFF);
        cut[1] = (unsigned char)(len >> 8);
        memcpy(cut + 8, good + 8, len);
        accepted += read_mutant(path, cut, 8 + len, &named);
    }
    fails += check_true(accepted == 0 && named, "all %zu cut JSON headers rejected with the file named (%d accepted)",
                        json_len, accepted);

    Rng rng;
    rng_seed(&rng, 5);
    unsigned char bad[1024];
    int trials = 400;
    named = true;
    accepted = 0;
    for (int t = 0; t < trials; t++) {
        memcpy(bad, good, n);
        int flips = 1 + rng_int(&rng, 3);
        for (int k = 0; k < flips; k++) bad[rng_int(&rng, (int)header_end)] = (unsigned char)rng_u32(&rng);
        accepted += read_mutant(path, bad, n, &named);
    }
    fails += check_true(named, "%d corrupted headers: %d read consistently, the others rejected with the file named",
                        trials, accepted);
    unlink(path);
    return fails;
}

// ---- scale: duplicate names are found in linear time (they were a scan of every earlier name) ----
typedef struct { char *text; size_t len, cap; } Json;

static void json_add(Json *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void json_add(Json *j, const char *fmt, ...) {
    char piece[256];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(piece, sizeof piece, fmt, ap);
    va_end(ap);
    if (j->len + (size_t)k + 1 > j->cap) {
        j->cap = 2 * (j->len + (size_t)k + 1);
        j->text = realloc(j->text, j->cap);
        CHECK(j->text, "out of memory");
    }
    memcpy(j->text + j->len, piece, (size_t)k + 1);
    j->len += (size_t)k;
}

// A whole file in memory: n metadata keys and n one-float tensors; a key or name repeated at the end if asked.
static unsigned char *many_names(int n, bool dup_key, bool dup_name, size_t *size) {
    Json j = {0};
    json_add(&j, "{\"__metadata__\":{");
    for (int i = 0; i < n; i++) json_add(&j, "%s\"key%d\":\"v%d\"", i ? "," : "", i, i);
    if (dup_key) json_add(&j, ",\"key%d\":\"again\"", n / 3);
    json_add(&j, "}");
    for (int i = 0; i < n; i++)
        json_add(&j, ",\"t%d\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[%d,%d]}", i, 4 * i, 4 * i + 4);
    if (dup_name) json_add(&j, ",\"t%d\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", n / 2);
    json_add(&j, "}");
    *size = 8 + j.len + 4 * (size_t)n;
    unsigned char *buf = xcalloc(*size, 1);
    for (int k = 0; k < 8; k++) buf[k] = (unsigned char)((uint64_t)j.len >> (8 * k));
    memcpy(buf + 8, j.text, j.len);
    for (int i = 0; i < n; i++) {
        float v = (float)i;
        memcpy(buf + 8 + j.len + 4 * (size_t)i, &v, 4);
    }
    free(j.text);
    return buf;
}

static int many_keys(void) {
    enum { N = 100000 };
    char err[512] = "", path[256];
    size_t size;
    unsigned char *buf = many_names(N, false, false, &size);
    double t0 = now_seconds();
    SafeTensors *st = st_parse(buf, size, "many.safetensors", err, sizeof err);
    double dt = now_seconds() - t0;
    int fails = check_true(st && st_count(st) == N && dt < 5.0,
                           "%d metadata keys + %d tensors parsed in %.3f s (< 5 s; the quadratic scan took minutes): %s",
                           N, N, dt, err);
    if (st) {
        int ndim, shape[4];
        const float *x = st_get(st, "t76543", &ndim, shape);
        const char *v = st_meta(st, "key54321");
        fails += check_true(x && *x == 76543.0f && v && !strcmp(v, "v54321") && !st_get(st, "t100000", NULL, NULL) &&
                                !st_meta(st, "key100000"), "lookups by name: t76543 = %g, key54321 = %s",
                            x ? *x : -1.0, v ? v : "(none)");
    }
    st_free(st);
    // the same file through the writer and st_read (the writer's duplicate checks are the same index)
    temp_path(path, sizeof path, "many");
    StWriter *w = st_writer_new();
    float one = 1.0f;
    t0 = now_seconds();
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%d", i);
        st_writer_add(w, name, SHAPE(1), &one);
        st_writer_meta(w, name + 1, name);
    }
    st_writer_meta(w, "5", "replaced");
    int saved = st_writer_save(w, path, err, sizeof err);
    st_writer_free(w);
    st = saved == 0 ? st_read(path, err, sizeof err) : NULL;
    dt = now_seconds() - t0;
    fails += check_true(st && st_count(st) == N && !strcmp(st_meta(st, "5"), "replaced") && dt < 10.0,
                        "writer + st_read of %d tensors and keys in %.3f s (< 10 s): %s", N, dt, err);
    st_free(st);
    unlink(path);
    free(buf);

    buf = many_names(N, true, false, &size);
    t0 = now_seconds();
    st = st_parse(buf, size, "dupkey.safetensors", err, sizeof err);
    dt = now_seconds() - t0;
    fails += check_true(!st && strstr(err, "dupkey.safetensors: bad header: repeated metadata key 'key33333'") && dt < 5.0,
                        "repeated key among %d found in %.3f s: %s", N, dt, err);
    st_free(st);
    free(buf);
    buf = many_names(N, false, true, &size);
    t0 = now_seconds();
    st = st_parse(buf, size, "dupname.safetensors", err, sizeof err);
    dt = now_seconds() - t0;
    fails += check_true(!st && strstr(err, "dupname.safetensors: bad header: repeated tensor name 't50000'") && dt < 5.0,
                        "repeated tensor name among %d found in %.3f s: %s", N, dt, err);
    st_free(st);
    free(buf);
    return fails;
}

// ---- st_parse: a buffer of any alignment, and one that is freed right after ----
static int parse_buffer(void) {
    char path[256], err[512] = "";
    temp_path(path, sizeof path, "buffer");
    float data[6] = {1, 2, 3, 4, 5, 6};
    StWriter *w = st_writer_new();
    st_writer_add(w, "x", SHAPE(2, 3), data);
    st_writer_meta(w, "m", "n");
    CHECK(st_writer_save(w, path, err, sizeof err) == 0, "%s", err);
    st_writer_free(w);
    FILE *f = fopen(path, "rb");
    CHECK(f, "cannot open %s", path);
    unsigned char file[512];
    size_t n = fread(file, 1, sizeof file, f);
    fclose(f);
    unlink(path);
    int fails = 0;
    for (int shift = 0; shift < 4; shift++) {   // misaligned copies of the file
        unsigned char *copy = xmalloc(n + 4);
        memcpy(copy + shift, file, n);
        SafeTensors *st = st_parse(copy + shift, n, "copy", err, sizeof err);
        free(copy);
        int ndim = 0, shape[4];
        const float *x = st ? st_get(st, "x", &ndim, shape) : NULL;
        fails += check_true(x && ndim == 2 && shape[1] == 3 && x[5] == 6.0f && !strcmp(st_meta(st, "m"), "n"),
                            "st_parse at offset %d, buffer freed: x[5] = %g: %s", shift, x ? x[5] : -1.0, err);
        st_free(st);
    }
    SafeTensors *st = st_parse(file, 7, "short", err, sizeof err);
    fails += check_true(!st && !strcmp(err, "short: truncated: 7 bytes, too short for the 8-byte header length"),
                        "7 bytes: %s", err);
    return fails;
}

// ---- interoperability: a file written by tools/amdim_reference.py ----

static int python_file(void) {
    const char *path = FIXTURES "tiny_py.safetensors";
    char err[512], buf[96];
    SafeTensors *st = st_read(path, err, sizeof err);
    int fails = check_true(st != NULL, "read %s: %s", path, st ? "ok" : err);
    if (!st) return fails;
    const char *odd = "odd \"name\"\\ with\nnewline", *unicode = "caf\xc3\xa9 \xf0\x9f\x98\x80";
    const char *order[] = {"matrix", "scalar", "four_d", odd, unicode};
    fails += check_true(st_count(st) == 5, "5 tensors (got %d)", st_count(st));
    for (int i = 0; i < 5 && i < st_count(st); i++)
        fails += check_true(!strcmp(st_name(st, i), order[i]), "tensor %d is '%s'", i, shown(order[i], buf));
    fails += shape_is(st, "matrix", SHAPE(2, 3));
    fails += shape_is(st, "scalar", SHAPE(1));
    fails += shape_is(st, "four_d", SHAPE(1, 2, 1, 3));
    fails += shape_is(st, odd, SHAPE(2));
    fails += shape_is(st, unicode, SHAPE(1));
    if (fails) { st_free(st); return fails; }

    float matrix[6], scalar = 3.25f, four_d[6], odd_values[2] = {1.5f, -2.5f}, seven = 7.0f;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++) matrix[3 * i + j] = 0.5f * (float)(3 * i + j) - 1.0f;
    for (int k = 0; k < 6; k++) four_d[k] = (float)k / 8.0f - 0.25f;
    fails += check_close("matrix", st_get(st, "matrix", NULL, NULL), matrix, 6, 0, 0);
    fails += check_close("scalar", st_get(st, "scalar", NULL, NULL), &scalar, 1, 0, 0);
    fails += check_close("four_d", st_get(st, "four_d", NULL, NULL), four_d, 6, 0, 0);
    fails += check_close("name with escapes", st_get(st, odd, NULL, NULL), odd_values, 2, 0, 0);
    fails += check_close("name with \\u escapes", st_get(st, unicode, NULL, NULL), &seven, 1, 0, 0);
    const char *format = st_meta(st, "format"), *note = st_meta(st, "note");
    fails += check_true(format && !strcmp(format, "tiny_py"), "metadata format");
    fails += check_true(note && !strcmp(note, "line1\nline2 \"quoted\" \\ caf\xc3\xa9"), "metadata with escapes");
    st_free(st);
    return fails;
}

// ---- the golden fixtures hold everything the golden test needs ----

static bool has_prefix(const char *s, const char *prefix) { return !strncmp(s, prefix, strlen(prefix)); }
static bool has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

// name2 exists with the shape of name1, and all its values are finite
static bool same_shape_finite(const SafeTensors *st, const char *name1, const char *name2) {
    int nd1, nd2, s1[4], s2[4];
    if (!st_get(st, name1, &nd1, s1)) return false;
    const float *x = st_get(st, name2, &nd2, s2);
    if (!x || nd1 != nd2) return false;
    long numel = 1;
    for (int k = 0; k < nd1; k++) {
        if (s1[k] != s2[k]) return false;
        numel *= s1[k];
    }
    for (long i = 0; i < numel; i++) if (!isfinite(x[i])) return false;
    return true;
}

static int golden_file(const char *path) {
    char err[512], buf[256];
    SafeTensors *st = st_read(path, err, sizeof err);
    int fails = check_true(st != NULL, "read %s: %s", path, st ? "ok" : err);
    if (!st) return fails;
    const char *keys[] = {"F", "D", "d", "in_channels", "B", "n_classes", "mixtures", "mix_tau", "mix_alpha",
                          "tclip", "bn_momentum", "cls_dropout"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        fails += check_true(st_meta(st, keys[k]) != NULL, "metadata %s = %s", keys[k],
                            st_meta(st, keys[k]) ? st_meta(st, keys[k]) : "(missing)");
    int n_params = 0, n_buffers = 0, bad_params = 0, bad_buffers = 0, orphans = 0;
    for (int i = 0; i < st_count(st); i++) {
        const char *name = st_name(st, i);
        if (has_prefix(name, "grad.") || has_prefix(name, "after.")) {
            orphans += st_get(st, strchr(name, '.') + 1, NULL, NULL) == NULL;
        } else if (has_suffix(name, ".running_mean") || has_suffix(name, ".running_var")) {
            snprintf(buf, sizeof buf, "after.%s", name);
            n_buffers++;
            bad_buffers += !same_shape_finite(st, name, buf);
        } else if (!has_prefix(name, "input.") && !has_prefix(name, "loss.")) {
            snprintf(buf, sizeof buf, "grad.%s", name);
            n_params++;
            bad_params += !same_shape_finite(st, name, buf);
        }
    }
    fails += check_true(n_params > 0 && bad_params == 0,
                        "%d parameters, each with a finite grad.* of its shape (%d bad)", n_params, bad_params);
    fails += check_true(n_buffers > 0 && bad_buffers == 0, "%d BN buffers, each with after.* (%d bad)", n_buffers,
                        bad_buffers);
    fails += check_true(orphans == 0, "no grad.* / after.* without its tensor (%d)", orphans);

    const char *batch = st_meta(st, "B"), *channels = st_meta(st, "in_channels");
    int B = batch ? atoi(batch) : 0, C = channels ? atoi(channels) : 0;
    fails += shape_is(st, "input.x1", SHAPE(B, C, 32, 32));
    fails += shape_is(st, "input.x2", SHAPE(B, C, 32, 32));
    fails += shape_is(st, "input.labels", SHAPE(B));
    fails += shape_is(st, "input.idx1", SHAPE(B));
    fails += shape_is(st, "input.idx2", SHAPE(B));
    const char *parts[] = {"loss.1t5", "loss.1t7", "loss.5t5", "loss.reg", "loss.cls"};
    float sum = 0;
    for (int k = 0; k < 5; k++) {
        fails += shape_is(st, parts[k], SHAPE(1));
        const float *v = st_get(st, parts[k], NULL, NULL);
        sum += v ? *v : NAN;
    }
    const float *total = st_get(st, "loss.total", NULL, NULL);
    // float32 sum of five terms of size ~5: a few ulps
    if (total) fails += check_close("loss.total = sum of the parts", &sum, total, 1, 0, 1e-6);
    else fails += check_true(false, "loss.total present");
    st_free(st);
    return fails;
}

static int golden_fixtures(void) {
    return golden_file(FIXTURES "golden_tiny.safetensors") + golden_file(FIXTURES "golden_mix.safetensors");
}

void register_safetensors_tests(void) {
    test_register("safetensors", "round trip", round_trip);
    test_register("safetensors", "atomic save", atomic_save);
    test_register("safetensors", "bad files are rejected", bad_files);
    test_register("safetensors", "truncated and corrupted files", corrupted_files);
    test_register("safetensors", "file written by Python", python_file);
    test_register("safetensors", "100,000 keys and names: linear-time duplicates", many_keys);
    test_register("safetensors", "st_parse on buffers", parse_buffer);
    test_register("safetensors", "golden fixtures are complete", golden_fixtures);
}
