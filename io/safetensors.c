// safetensors.c - a validating reader (with a small JSON parser for exactly this header) and an atomic writer.
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../base/base.h"

// The data section is copied into memory as is, so the host must share the file's byte order.
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian");

#define ST_MAX_DIMS 4
#define METADATA_KEY "__metadata__"

// one line "<path>: <problem>" into err
static void set_error(char *err, int err_size, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set_error(char *err, int err_size, const char *path, const char *fmt, ...) {
    if (!err || err_size <= 0) return;
    int n = snprintf(err, (size_t)err_size, "%s: ", path);
    if (n < 0 || n >= err_size) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, (size_t)(err_size - n), fmt, ap);
    va_end(ap);
}

static char *copy_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *c = xmalloc(n);
    memcpy(c, s, n);
    return c;
}

// ---- names -> indices: open addressing (FNV-1a, linear probing), at most half full ----
// Duplicate names are found as they are parsed, and st_get / st_meta / the writer look names up, in O(1) each
// instead of a scan of every earlier name (100,000 keys: milliseconds instead of minutes).
typedef struct { const char *name; int index; } NameSlot;
typedef struct { NameSlot *slots; size_t cap; int n; } NameIndex;   // cap 0 or a power of two

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int index_find(const NameIndex *ix, const char *name) {
    if (!ix->cap) return -1;
    for (size_t i = name_hash(name) & (ix->cap - 1);; i = (i + 1) & (ix->cap - 1)) {
        if (!ix->slots[i].name) return -1;
        if (!strcmp(ix->slots[i].name, name)) return ix->slots[i].index;
    }
}

// name must be absent; the index keeps the pointer, so name must live as long as the index
static void index_add(NameIndex *ix, const char *name, int index) {
    if (2 * ((size_t)ix->n + 1) > ix->cap) {
        NameIndex grown = {.cap = ix->cap ? 2 * ix->cap : 64, .n = 0};
        grown.slots = xcalloc(grown.cap, sizeof(NameSlot));
        for (size_t i = 0; i < ix->cap; i++)
            if (ix->slots[i].name) index_add(&grown, ix->slots[i].name, ix->slots[i].index);
        free(ix->slots);
        *ix = grown;
    }
    size_t i = name_hash(name) & (ix->cap - 1);
    while (ix->slots[i].name) i = (i + 1) & (ix->cap - 1);
    ix->slots[i] = (NameSlot){.name = name, .index = index};
    ix->n++;
}

static void index_free(NameIndex *ix) {
    free(ix->slots);
    memset(ix, 0, sizeof *ix);
}

// ======================================== reading ========================================

typedef struct {
    char *name;
    int ndim;                 // as reported by st_get: a 0-dim scalar reads as (1)
    int shape[ST_MAX_DIMS];
    uint64_t begin, end;      // byte offsets into the data section
} StEntry;

struct SafeTensors {
    StEntry *entries;
    int n_entries, cap_entries;
    char **meta_keys, **meta_values;
    int n_meta, cap_meta;
    NameIndex entry_index, meta_index;
    float *data;              // the data section (malloc'd, so aligned for floats)
    uint64_t data_bytes;
};

// cursor over the JSON header; the first error is formatted into err and stops the parse
typedef struct {
    const char *json;
    size_t len, pos;
    const char *path;
    char *err;
    int err_size;
    uint64_t data_bytes;      // size of the data section, to validate offsets while parsing
} Parser;

static bool parse_error(Parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool parse_error(Parser *p, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    set_error(p->err, p->err_size, p->path, "bad header: %s (at byte %zu of the %zu-byte JSON header)", msg,
              p->pos, p->len);
    return false;
}

// a name fit for a one-line message: at most 48 characters, control characters shown as '?'
static const char *printable(const char *name, char buf[64]) {
    size_t i = 0;
    for (; name[i] && i < 48; i++) buf[i] = (unsigned char)name[i] < 0x20 ? '?' : name[i];
    if (name[i]) { memcpy(buf + i, "...", 3); i += 3; }
    buf[i] = '\0';
    return buf;
}

// one character fit for a message: itself in quotes if printable ASCII, else its byte value
static const char *char_shown(char c, char buf[16]) {
    if (c > 0x20 && c < 0x7f) snprintf(buf, 16, "'%c'", c);
    else snprintf(buf, 16, "byte 0x%02x", (unsigned char)c);
    return buf;
}

static void skip_space(Parser *p) {
    while (p->pos < p->len && strchr(" \t\r\n", p->json[p->pos]) && p->json[p->pos]) p->pos++;
}

static bool expect_char(Parser *p, char c) {
    skip_space(p);
    if (p->pos >= p->len) return parse_error(p, "header ends early, expected '%c'", c);
    char found[16];
    if (p->json[p->pos] != c) return parse_error(p, "expected '%c', found %s", c, char_shown(p->json[p->pos], found));
    p->pos++;
    return true;
}

// next non-space character without consuming it, 0 at the end
static char peek(Parser *p) {
    skip_space(p);
    return p->pos < p->len ? p->json[p->pos] : '\0';
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// four hex digits after "\u" at p->pos
static bool parse_hex4(Parser *p, unsigned *out) {
    if (p->len - p->pos < 4) return parse_error(p, "string ends inside a \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hex_value(p->json[p->pos + k]);
        if (h < 0) return parse_error(p, "bad \\u escape");
        v = v * 16 + (unsigned)h;
    }
    p->pos += 4;
    *out = v;
    return true;
}

static size_t put_utf8(char *out, unsigned cp) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | cp >> 6); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12); out[1] = (char)(0x80 | (cp >> 6 & 0x3F)); out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18); out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// a JSON string into a new NUL-terminated UTF-8 buffer; escapes never grow, so the raw span bounds its size
static bool parse_string(Parser *p, char **out) {
    char shown[16];
    *out = NULL;
    skip_space(p);
    if (p->pos >= p->len || p->json[p->pos] != '"') return parse_error(p, "expected a string");
    size_t start = ++p->pos, end = start;
    while (end < p->len && p->json[end] != '"') end += p->json[end] == '\\' ? 2 : 1;
    if (end >= p->len) return parse_error(p, "unterminated string");
    char *s = xmalloc(end - start + 1);
    size_t n = 0;
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->json[p->pos++];
        if (c < 0x20) { free(s); return parse_error(p, "control character inside a string"); }
        if (c != '\\') { s[n++] = (char)c; continue; }
        char e = p->json[p->pos++];
        unsigned cp;
        switch (e) {
            case '"': case '\\': case '/': s[n++] = e; break;
            case 'b': s[n++] = '\b'; break;
            case 'f': s[n++] = '\f'; break;
            case 'n': s[n++] = '\n'; break;
            case 'r': s[n++] = '\r'; break;
            case 't': s[n++] = '\t'; break;
            case 'u':
                if (!parse_hex4(p, &cp)) { free(s); return false; }
                if (cp >= 0xD800 && cp < 0xDC00) {  // high surrogate: a low one must follow
                    unsigned lo;
                    if (p->pos + 2 > end || p->json[p->pos] != '\\' || p->json[p->pos + 1] != 'u') {
                        free(s);
                        return parse_error(p, "unpaired surrogate in \\u escape");
                    }
                    p->pos += 2;
                    if (!parse_hex4(p, &lo)) { free(s); return false; }
                    if (lo < 0xDC00 || lo > 0xDFFF) {
                        free(s);
                        return parse_error(p, "unpaired surrogate in \\u escape");
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    free(s);
                    return parse_error(p, "unpaired surrogate in \\u escape");
                }
                if (cp == 0) { free(s); return parse_error(p, "\\u0000 is not allowed in names"); }
                n += put_utf8(s + n, cp);
                break;
            default:
                free(s);
                return parse_error(p, "unknown escape: backslash then %s", char_shown(e, shown));
        }
        if (p->pos > end) { free(s); return parse_error(p, "unterminated string"); }
    }
    s[n] = '\0';
    p->pos = end + 1;
    *out = s;
    return true;
}

// a non-negative integer (no sign, fraction or exponent)
static bool parse_uint(Parser *p, uint64_t *out) {
    skip_space(p);
    if (p->pos < p->len && p->json[p->pos] == '-') return parse_error(p, "negative number");
    if (p->pos >= p->len || p->json[p->pos] < '0' || p->json[p->pos] > '9') return parse_error(p, "expected a number");
    uint64_t v = 0;
    while (p->pos < p->len && p->json[p->pos] >= '0' && p->json[p->pos] <= '9') {
        unsigned digit = (unsigned)(p->json[p->pos] - '0');
        if (v > (UINT64_MAX - digit) / 10) return parse_error(p, "number too large");
        v = v * 10 + digit;
        p->pos++;
    }
    if (p->pos < p->len && strchr(".eE", p->json[p->pos]) && p->json[p->pos])
        return parse_error(p, "expected an integer");
    *out = v;
    return true;
}

// [u, u, ...] with at most max values; *count gets how many
static bool parse_uint_array(Parser *p, uint64_t *values, int max, int *count, const char *what) {
    *count = 0;
    if (!expect_char(p, '[')) return false;
    if (peek(p) == ']') { p->pos++; return true; }
    for (;;) {
        if (*count == max) return parse_error(p, "%s has more than %d values", what, max);
        if (!parse_uint(p, &values[(*count)++])) return false;
        char c = peek(p);
        p->pos++;
        if (c == ']') return true;
        if (c != ',') { p->pos--; return parse_error(p, "expected ',' or ']' in %s", what); }
    }
}

// {"dtype": "F32", "shape": [...], "data_offsets": [b, e]} for the tensor called name, checked against the data
static bool parse_entry(Parser *p, const char *name, StEntry *e) {
    char *dtype = NULL, *key = NULL, shown[64];
    uint64_t dims[ST_MAX_DIMS], offsets[2];
    int n_dims = -1, n_offsets = -1;
    bool ok = expect_char(p, '{');
    if (ok && peek(p) == '}') p->pos++;
    else while (ok) {
        ok = parse_string(p, &key) && expect_char(p, ':');
        if (!ok) break;
        if (!strcmp(key, "dtype") && !dtype) ok = parse_string(p, &dtype);
        else if (!strcmp(key, "shape") && n_dims < 0) ok = parse_uint_array(p, dims, ST_MAX_DIMS, &n_dims, "shape");
        else if (!strcmp(key, "data_offsets") && n_offsets < 0)
            ok = parse_uint_array(p, offsets, 2, &n_offsets, "data_offsets");
        else {
            char key_shown[64];
            ok = parse_error(p, "tensor '%s': unexpected or repeated key '%s'", printable(name, shown),
                             printable(key, key_shown));
        }
        free(key);
        key = NULL;
        if (!ok) break;
        char c = peek(p);
        if (c == '}') { p->pos++; break; }
        ok = expect_char(p, ',');
    }
    free(key);
    if (ok && (!dtype || n_dims < 0 || n_offsets < 0))
        ok = parse_error(p, "tensor '%s' lacks %s", printable(name, shown),
                         !dtype ? "a dtype" : n_dims < 0 ? "a shape" : "data_offsets");
    if (ok && strcmp(dtype, "F32")) {
        char dtype_shown[64];
        ok = parse_error(p, "tensor '%s' has dtype %s; only F32 is supported", printable(name, shown),
                         printable(dtype, dtype_shown));
    }
    free(dtype);
    if (!ok) return false;
    if (n_offsets != 2) return parse_error(p, "tensor '%s': data_offsets needs 2 values", printable(name, shown));

    // element count; dims must fit the engine's int shapes, and 4 * numel must not overflow
    uint64_t numel = 1;
    for (int k = 0; k < n_dims; k++) {
        if (dims[k] == 0) return parse_error(p, "tensor '%s' is empty (a dimension is 0)", printable(name, shown));
        if (dims[k] > INT32_MAX || dims[k] > UINT64_MAX / 4 / numel)
            return parse_error(p, "tensor '%s': shape too large", printable(name, shown));
        numel *= dims[k];
    }
    uint64_t begin = offsets[0], end = offsets[1];
    if (begin > end || end > p->data_bytes)
        return parse_error(p, "tensor '%s': data_offsets [%llu, %llu] outside the %llu-byte data section",
                           printable(name, shown), (unsigned long long)begin, (unsigned long long)end,
                           (unsigned long long)p->data_bytes);
    if (end - begin != 4 * numel)
        return parse_error(p, "tensor '%s': data_offsets span %llu bytes but its shape needs %llu",
                           printable(name, shown), (unsigned long long)(end - begin), (unsigned long long)(4 * numel));
    if (begin % 4) return parse_error(p, "tensor '%s': data offset %llu is not a multiple of 4",
                                      printable(name, shown), (unsigned long long)begin);
    e->ndim = n_dims == 0 ? 1 : n_dims;
    for (int k = 0; k < ST_MAX_DIMS; k++) e->shape[k] = k < n_dims ? (int)dims[k] : (n_dims == 0 && k == 0 ? 1 : 0);
    e->begin = begin;
    e->end = end;
    return true;
}

static bool parse_metadata(Parser *p, SafeTensors *st) {
    if (!expect_char(p, '{')) return false;
    if (peek(p) == '}') { p->pos++; return true; }
    for (;;) {
        char *key = NULL, *value = NULL, shown[64];
        if (!parse_string(p, &key)) return false;
        if (!expect_char(p, ':')) { free(key); return false; }
        if (peek(p) != '"') {
            bool r = parse_error(p, "metadata value of '%s' is not a string", printable(key, shown));
            free(key);
            return r;
        }
        if (!parse_string(p, &value)) { free(key); return false; }
        if (index_find(&st->meta_index, key) >= 0) {
            bool r = parse_error(p, "repeated metadata key '%s'", printable(key, shown));
            free(key);
            free(value);
            return r;
        }
        if (st->n_meta == st->cap_meta) {
            st->cap_meta = st->cap_meta ? 2 * st->cap_meta : 8;
            st->meta_keys = realloc(st->meta_keys, (size_t)st->cap_meta * sizeof(char *));
            st->meta_values = realloc(st->meta_values, (size_t)st->cap_meta * sizeof(char *));
            CHECK(st->meta_keys && st->meta_values, "out of memory");
        }
        index_add(&st->meta_index, key, st->n_meta);
        st->meta_keys[st->n_meta] = key;
        st->meta_values[st->n_meta++] = value;
        char c = peek(p);
        if (c == '}') { p->pos++; return true; }
        if (!expect_char(p, ',')) return false;
    }
}

// the top-level object: tensor entries and at most one __metadata__ object
static bool parse_header(Parser *p, SafeTensors *st) {
    bool seen_metadata = false;
    if (!expect_char(p, '{')) return false;
    if (peek(p) == '}') p->pos++;
    else for (;;) {
        char *name = NULL, shown[64];
        if (!parse_string(p, &name)) return false;
        if (!expect_char(p, ':')) { free(name); return false; }
        bool ok;
        if (!strcmp(name, METADATA_KEY)) {
            ok = seen_metadata ? parse_error(p, "repeated " METADATA_KEY) : parse_metadata(p, st);
            seen_metadata = true;
            free(name);
        } else {
            if (index_find(&st->entry_index, name) >= 0) {
                parse_error(p, "repeated tensor name '%s'", printable(name, shown));
                free(name);
                return false;
            }
            StEntry e = {.name = name};
            ok = parse_entry(p, name, &e);
            if (!ok) { free(name); return false; }
            if (st->n_entries == st->cap_entries) {
                st->cap_entries = st->cap_entries ? 2 * st->cap_entries : 16;
                st->entries = realloc(st->entries, (size_t)st->cap_entries * sizeof(StEntry));
                CHECK(st->entries, "out of memory");
            }
            index_add(&st->entry_index, name, st->n_entries);
            st->entries[st->n_entries++] = e;
        }
        if (!ok) return false;
        char c = peek(p);
        if (c == '}') { p->pos++; break; }
        if (!expect_char(p, ',')) return false;
    }
    skip_space(p);
    if (p->pos != p->len) return parse_error(p, "unexpected characters after the header object");
    return true;
}

static int compare_begin(const void *a, const void *b) {
    const StEntry *x = *(const StEntry *const *)a, *y = *(const StEntry *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

// no two tensors may share bytes of the data section
static bool check_no_overlap(const SafeTensors *st, const char *path, char *err, int err_size) {
    const StEntry **order = xmalloc((size_t)st->n_entries * sizeof(StEntry *));
    for (int i = 0; i < st->n_entries; i++) order[i] = &st->entries[i];
    qsort(order, (size_t)st->n_entries, sizeof(StEntry *), compare_begin);
    bool ok = true;
    for (int i = 1; i < st->n_entries && ok; i++) {
        if (order[i]->begin < order[i - 1]->end) {
            char a[64], b[64];
            set_error(err, err_size, path, "tensors '%s' and '%s' overlap in the data section",
                      printable(order[i - 1]->name, a), printable(order[i]->name, b));
            ok = false;
        }
    }
    free(order);
    return ok;
}

static bool read_exactly(FILE *f, void *buf, size_t bytes) { return fread(buf, 1, bytes, f) == bytes; }

// The 8-byte little-endian header length of a file of total_bytes; false with err set when it cannot hold it.
static bool header_length(const unsigned char len_bytes[8], uint64_t total_bytes, uint64_t *header_bytes,
                          const char *name, char *err, int err_size) {
    uint64_t h = 0;
    for (int k = 7; k >= 0; k--) h = h << 8 | len_bytes[k];
    if (h > total_bytes - 8) {
        set_error(err, err_size, name, "header length %llu runs past the end of the %llu-byte file",
                  (unsigned long long)h, (unsigned long long)total_bytes);
        return false;
    }
    *header_bytes = h;
    return true;
}

// What st_read and st_parse share: the JSON header (header_bytes of json, NUL-terminated) parsed and checked
// against a data section of data_bytes. Returns the entries and metadata (no data yet) or NULL with err set.
static SafeTensors *parse_checked(const char *json, uint64_t header_bytes, uint64_t data_bytes, const char *name,
                                  char *err, int err_size) {
    SafeTensors *st = xcalloc(1, sizeof(SafeTensors));
    st->data_bytes = data_bytes;
    Parser p = {.json = json, .len = header_bytes, .path = name, .err = err, .err_size = err_size,
                .data_bytes = data_bytes};
    if (!parse_header(&p, st) || !check_no_overlap(st, name, err, err_size)) {
        st_free(st);
        return NULL;
    }
    return st;
}

SafeTensors *st_parse(const void *buf, size_t n, const char *name, char *err, int err_size) {
    if (err && err_size > 0) err[0] = '\0';
    const unsigned char *bytes = buf;
    uint64_t header_bytes;
    if (n < 8) {
        set_error(err, err_size, name, "truncated: %llu bytes, too short for the 8-byte header length",
                  (unsigned long long)n);
        return NULL;
    }
    if (!header_length(bytes, n, &header_bytes, name, err, err_size)) return NULL;
    char *json = xmalloc(header_bytes + 1);   // NUL-terminated for the parser
    memcpy(json, bytes + 8, header_bytes);
    json[header_bytes] = '\0';
    SafeTensors *st = parse_checked(json, header_bytes, n - 8 - header_bytes, name, err, err_size);
    free(json);
    if (!st) return NULL;
    st->data = xmalloc(st->data_bytes);   // a copy, so the floats are aligned whatever buf's alignment
    memcpy(st->data, bytes + 8 + header_bytes, st->data_bytes);
    return st;
}

// Reads the header, runs st_parse's checks on it, then reads the data section straight into place (the file is
// never held twice in memory).
SafeTensors *st_read(const char *path, char *err, int err_size) {
    if (err && err_size > 0) err[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) { set_error(err, err_size, path, "cannot open: %s", strerror(errno)); return NULL; }
    struct stat info;
    if (fstat(fileno(f), &info) != 0 || !S_ISREG(info.st_mode)) {
        set_error(err, err_size, path, "not a regular file");
        fclose(f);
        return NULL;
    }
    uint64_t file_bytes = (uint64_t)info.st_size, header_bytes;
    unsigned char len_bytes[8];
    if (file_bytes < 8 || !read_exactly(f, len_bytes, 8)) {
        set_error(err, err_size, path, "truncated: %llu bytes, too short for the 8-byte header length",
                  (unsigned long long)file_bytes);
        fclose(f);
        return NULL;
    }
    if (!header_length(len_bytes, file_bytes, &header_bytes, path, err, err_size)) {
        fclose(f);
        return NULL;
    }
    char *json = xmalloc(header_bytes + 1);
    SafeTensors *st = NULL;
    if (!read_exactly(f, json, header_bytes))
        set_error(err, err_size, path, "could not read the %llu-byte header", (unsigned long long)header_bytes);
    else {
        json[header_bytes] = '\0';
        st = parse_checked(json, header_bytes, file_bytes - 8 - header_bytes, path, err, err_size);
    }
    free(json);
    if (st) {
        st->data = xmalloc(st->data_bytes);
        if (!read_exactly(f, st->data, st->data_bytes)) {
            set_error(err, err_size, path, "could not read the %llu-byte data section",
                      (unsigned long long)st->data_bytes);
            st_free(st);
            st = NULL;
        }
    }
    fclose(f);
    return st;
}

static const StEntry *find_entry(const SafeTensors *st, const char *name) {
    int i = index_find(&st->entry_index, name);
    return i < 0 ? NULL : &st->entries[i];
}

const float *st_get(const SafeTensors *st, const char *name, int *ndim, int shape[4]) {
    const StEntry *e = find_entry(st, name);
    if (!e) return NULL;
    if (ndim) *ndim = e->ndim;
    if (shape) memcpy(shape, e->shape, sizeof e->shape);
    return (const float *)((const char *)st->data + e->begin);
}

const char *st_meta(const SafeTensors *st, const char *key) {
    int i = index_find(&st->meta_index, key);
    return i < 0 ? NULL : st->meta_values[i];
}

int st_count(const SafeTensors *st) { return st->n_entries; }

const char *st_name(const SafeTensors *st, int i) {
    CHECK(i >= 0 && i < st->n_entries, "tensor index %d out of range [0, %d)", i, st->n_entries);
    return st->entries[i].name;
}

void st_free(SafeTensors *st) {
    if (!st) return;
    for (int i = 0; i < st->n_entries; i++) free(st->entries[i].name);
    for (int i = 0; i < st->n_meta; i++) { free(st->meta_keys[i]); free(st->meta_values[i]); }
    free(st->entries);
    free(st->meta_keys);
    free(st->meta_values);
    index_free(&st->entry_index);
    index_free(&st->meta_index);
    free(st->data);
    free(st);
}

// ======================================== writing ========================================

typedef struct {
    char *name;
    int ndim;
    int shape[ST_MAX_DIMS];
    long numel;
    float *data;
} WriterEntry;

struct StWriter {
    WriterEntry *entries;
    int n_entries, cap_entries;
    char **meta_keys, **meta_values;
    int n_meta, cap_meta;
    NameIndex entry_index, meta_index;
};

StWriter *st_writer_new(void) { return xcalloc(1, sizeof(StWriter)); }

void st_writer_add(StWriter *w, const char *name, int ndim, const int *shape, const float *host_data) {
    CHECK(name && strcmp(name, METADATA_KEY), "tensor name must be given and not " METADATA_KEY);
    CHECK(ndim >= 0 && ndim <= ST_MAX_DIMS, "tensor '%s': ndim %d not in [0, %d]", name, ndim, ST_MAX_DIMS);
    CHECK(host_data, "tensor '%s': no data", name);
    CHECK(index_find(&w->entry_index, name) < 0, "tensor '%s' added twice", name);
    if (w->n_entries == w->cap_entries) {
        w->cap_entries = w->cap_entries ? 2 * w->cap_entries : 16;
        w->entries = realloc(w->entries, (size_t)w->cap_entries * sizeof(WriterEntry));
        CHECK(w->entries, "out of memory");
    }
    WriterEntry *e = &w->entries[w->n_entries++];
    *e = (WriterEntry){.name = copy_string(name), .ndim = ndim, .numel = 1};
    index_add(&w->entry_index, e->name, w->n_entries - 1);
    for (int k = 0; k < ndim; k++) {
        CHECK(shape[k] > 0, "tensor '%s': dimension %d is %d", name, k, shape[k]);
        e->shape[k] = shape[k];
        e->numel *= shape[k];
    }
    e->data = xmalloc((size_t)e->numel * sizeof(float));
    memcpy(e->data, host_data, (size_t)e->numel * sizeof(float));
}

void st_writer_meta(StWriter *w, const char *key, const char *value) {
    CHECK(key && value, "metadata key and value must be given");
    int i = index_find(&w->meta_index, key);
    if (i >= 0) {
        free(w->meta_values[i]);
        w->meta_values[i] = copy_string(value);
        return;
    }
    if (w->n_meta == w->cap_meta) {
        w->cap_meta = w->cap_meta ? 2 * w->cap_meta : 8;
        w->meta_keys = realloc(w->meta_keys, (size_t)w->cap_meta * sizeof(char *));
        w->meta_values = realloc(w->meta_values, (size_t)w->cap_meta * sizeof(char *));
        CHECK(w->meta_keys && w->meta_values, "out of memory");
    }
    w->meta_keys[w->n_meta] = copy_string(key);
    index_add(&w->meta_index, w->meta_keys[w->n_meta], w->n_meta);
    w->meta_values[w->n_meta++] = copy_string(value);
}

void st_writer_free(StWriter *w) {
    if (!w) return;
    for (int i = 0; i < w->n_entries; i++) { free(w->entries[i].name); free(w->entries[i].data); }
    for (int i = 0; i < w->n_meta; i++) { free(w->meta_keys[i]); free(w->meta_values[i]); }
    free(w->entries);
    free(w->meta_keys);
    free(w->meta_values);
    index_free(&w->entry_index);
    index_free(&w->meta_index);
    free(w);
}

// a growing text buffer for the JSON header
typedef struct { char *text; size_t len, cap; } TextBuf;

static void text_reserve(TextBuf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return;
    while (b->len + extra + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 1024;
    b->text = realloc(b->text, b->cap);
    CHECK(b->text, "out of memory");
}

static void text_printf(TextBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(TextBuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    text_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->text + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

// a JSON string literal: quotes, backslashes and control characters escaped, other bytes (UTF-8) as they are
static void text_json_string(TextBuf *b, const char *s) {
    text_printf(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') text_printf(b, "\\%c", c);
        else if (c == '\n') text_printf(b, "\\n");
        else if (c < 0x20) text_printf(b, "\\u%04x", c);
        else text_printf(b, "%c", c);
    }
    text_printf(b, "\"");
}

// the header, padded with spaces to a multiple of 8 bytes so the data section starts 8-aligned
static TextBuf build_header(const StWriter *w) {
    TextBuf b = {0};
    text_printf(&b, "{");
    if (w->n_meta) {
        text_printf(&b, "\"" METADATA_KEY "\":{");
        for (int i = 0; i < w->n_meta; i++) {
            if (i) text_printf(&b, ",");
            text_json_string(&b, w->meta_keys[i]);
            text_printf(&b, ":");
            text_json_string(&b, w->meta_values[i]);
        }
        text_printf(&b, "}");
    }
    uint64_t offset = 0;
    for (int i = 0; i < w->n_entries; i++) {
        const WriterEntry *e = &w->entries[i];
        if (i || w->n_meta) text_printf(&b, ",");
        text_json_string(&b, e->name);
        text_printf(&b, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int k = 0; k < e->ndim; k++) text_printf(&b, "%s%d", k ? "," : "", e->shape[k]);
        uint64_t end = offset + 4 * (uint64_t)e->numel;
        text_printf(&b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset, (unsigned long long)end);
        offset = end;
    }
    text_printf(&b, "}");
    while (b.len % 8) text_printf(&b, " ");
    return b;
}

// fsync the directory holding path, so the rename itself survives a power loss; some file systems refuse
// fsync on directories, and the rename is atomic either way, so failure here is not an error
static void sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = copy_string(slash ? path : ".");
    if (slash) dir[slash == path ? 1 : slash - path] = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) { (void)fsync(fd); close(fd); }
    free(dir);
}

int st_writer_save(StWriter *w, const char *path, char *err, int err_size) {
    if (err && err_size > 0) err[0] = '\0';
    TextBuf header = build_header(w);
    size_t tmp_len = strlen(path) + 5;
    char *tmp = xmalloc(tmp_len);
    snprintf(tmp, tmp_len, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        set_error(err, err_size, path, "cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        free(header.text);
        return -1;
    }
    unsigned char len_bytes[8];
    for (int k = 0; k < 8; k++) len_bytes[k] = (unsigned char)((uint64_t)header.len >> (8 * k));
    bool ok = fwrite(len_bytes, 1, 8, f) == 8 && fwrite(header.text, 1, header.len, f) == header.len;
    for (int i = 0; i < w->n_entries && ok; i++)
        ok = fwrite(w->entries[i].data, sizeof(float), (size_t)w->entries[i].numel, f) == (size_t)w->entries[i].numel;
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (!ok) set_error(err, err_size, path, "cannot write %s: %s", tmp, strerror(errno));
    if (fclose(f) != 0 && ok) {
        set_error(err, err_size, path, "cannot close %s: %s", tmp, strerror(errno));
        ok = false;
    }
    if (ok && rename(tmp, path) != 0) {
        set_error(err, err_size, path, "cannot rename %s into place: %s", tmp, strerror(errno));
        ok = false;
    }
    if (ok) sync_parent_dir(path);
    if (!ok) unlink(tmp);
    free(tmp);
    free(header.text);
    return ok ? 0 : -1;
}
