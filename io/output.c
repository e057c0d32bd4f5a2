// output.c - folders, output files and JSON lines (see output.h).
#include "output.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

// mkdir -p; on failure writes "PART: reason" into why
static int make_dirs_why(const char *dir, char *why, size_t why_size) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
        snprintf(why, why_size, "path longer than %zu bytes", sizeof path - 1);
        return -1;
    }
    // every prefix ending before a '/', then the whole path; existing folders are fine
    for (char *p = path + 1;; p++) {
        bool end = *p == '\0';
        if (*p != '/' && !end) continue;
        *p = '\0';
        struct stat st;
        if (mkdir(path, 0755) && errno != EEXIST) {
            snprintf(why, why_size, "%s: %s", path, strerror(errno));
            return -1;
        }
        if (stat(path, &st) || !S_ISDIR(st.st_mode)) {
            snprintf(why, why_size, "%s is a file, not a folder", path);
            return -1;
        }
        if (end) return 0;
        *p = '/';
    }
}

int make_dirs(const char *dir, char *err, int err_size) {
    char why[4200];
    if (make_dirs_why(dir, why, sizeof why) == 0) return 0;
    snprintf(err, (size_t)err_size, "cannot create %s: %s", dir, why);
    return -1;
}

FILE *open_output(const char *path, const char *mode, char *err, int err_size) {
    const char *slash = strrchr(path, '/');
    char why[4200];
    if (slash && slash != path) {
        char parent[4096];
        snprintf(parent, sizeof parent, "%.*s", (int)(slash - path), path);
        if (make_dirs_why(parent, why, sizeof why)) {
            snprintf(err, (size_t)err_size, "cannot write %s: %s", path, why);
            return NULL;
        }
    }
    FILE *f = fopen(path, mode);
    if (!f) snprintf(err, (size_t)err_size, "cannot write %s: %s", path, strerror(errno));
    return f;
}

static void write_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') fprintf(f, "\\%c", *c);
        else if (*c == '\n') fputs("\\n", f);
        else if (*c == '\t') fputs("\\t", f);
        else if (*c < 0x20 || *c == 0x7f) fprintf(f, "\\u%04x", *c);
        else fputc(*c, f);   // UTF-8 bytes pass through unchanged
    }
    fputc('"', f);
}

static void key(JsonLine *j, const char *name) {
    if (j->fields++) fputc(',', j->f);
    write_string(j->f, name);
    fputc(':', j->f);
}

void jsonl_begin(JsonLine *j, FILE *f) {
    j->f = f;
    j->fields = 0;
    fputc('{', f);
}

void jsonl_str(JsonLine *j, const char *name, const char *value) { key(j, name); write_string(j->f, value); }
void jsonl_int(JsonLine *j, const char *name, long value) { key(j, name); fprintf(j->f, "%ld", value); }
void jsonl_bool(JsonLine *j, const char *name, bool value) { key(j, name); fputs(value ? "true" : "false", j->f); }

void jsonl_num(JsonLine *j, const char *name, double value) {
    key(j, name);
    if (isfinite(value)) fprintf(j->f, "%.9g", value);
    else fputs("null", j->f);
}

int jsonl_end(JsonLine *j) {
    fputs("}\n", j->f);
    return fflush(j->f) || ferror(j->f) ? -1 : 0;
}
