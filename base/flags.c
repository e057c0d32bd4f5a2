// flags.c - table-driven command-line parsing (see flags.h).
#include "flags.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void fail(const char *prog, const char *fmt, const char *a, const char *b) __attribute__((noreturn));
static void fail(const char *prog, const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "%s: ", prog);
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (see --help)\n");
    exit(2);
}

static void range_text(const Flag *f, char *buf, size_t size) {
    if (f->kind == FLAG_INT || f->kind == FLAG_LONG) snprintf(buf, size, "an integer in [%.0f, %.0f]", f->lo, f->hi);
    else snprintf(buf, size, "a number in [%g, %g]", f->lo, f->hi);
}

static double parse_number(const char *prog, const Flag *f, const char *v, const char *shown) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    bool integral = f->kind == FLAG_INT || f->kind == FLAG_LONG;
    if (errno || end == v || *end || !(x >= f->lo && x <= f->hi) || (integral && x != (double)(long)x)) {
        char want[96], msg[160];
        range_text(f, want, sizeof want);
        snprintf(msg, sizeof msg, "%%s expects %s, got '%%s'", want);
        fail(prog, msg, f->name, shown);
    }
    return x;
}

static void parse_value(const char *prog, Flag *f, const char *v) {
    switch (f->kind) {
        case FLAG_SWITCH: *(bool *)f->value = true; break;
        case FLAG_INT: *(int *)f->value = (int)parse_number(prog, f, v, v); break;
        case FLAG_LONG: *(long *)f->value = (long)parse_number(prog, f, v, v); break;
        case FLAG_FLOAT: *(float *)f->value = (float)parse_number(prog, f, v, v); break;
        case FLAG_DOUBLE: *(double *)f->value = parse_number(prog, f, v, v); break;
        case FLAG_STRING: *(const char **)f->value = v; break;
        case FLAG_NUMBERS: {
            NumberList *list = f->value;
            char buf[512];
            if (snprintf(buf, sizeof buf, "%s", v) >= (int)sizeof buf) fail(prog, "%s: value too long: '%.40s...'", f->name, v);
            list->n = 0;
            for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
                if (list->n == FLAG_MAX_NUMBERS) fail(prog, "%s takes at most 8 numbers, got '%s'", f->name, v);
                list->v[list->n++] = parse_number(prog, f, tok, v);
            }
            if (list->n == 0) fail(prog, "%s expects a comma-separated list of numbers, got '%s'", f->name, v);
            break;
        }
    }
}

const Flag *flag_find(const Flag *flags, int n, const char *name) {
    for (int i = 0; i < n; i++) if (!strcmp(flags[i].name, name)) return &flags[i];
    return NULL;
}

bool flag_given(const Flag *flags, int n, const char *name) {
    const Flag *f = flag_find(flags, n, name);
    return f && f->given;
}

void flags_parse(const char *prog, const char *synopsis, Flag *flags, int n, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { flags_usage(stdout, prog, synopsis, flags, n); exit(0); }
        Flag *f = (Flag *)flag_find(flags, n, a);
        if (!f) fail(prog, "unknown option '%s'%s", a, "");
        if (f->kind != FLAG_SWITCH && i + 1 >= argc) fail(prog, "%s needs a value%s", a, "");
        parse_value(prog, f, f->kind == FLAG_SWITCH ? NULL : argv[++i]);
        f->given = true;
    }
}

void flags_usage(FILE *out, const char *prog, const char *synopsis, const Flag *flags, int n) {
    fprintf(out, "usage: %s %s\n", prog, synopsis);
    for (int i = 0; i < n; i++) {
        const Flag *f = &flags[i];
        char left[64], def[96] = "";
        snprintf(left, sizeof left, "%s%s%s", f->name, f->arg ? " " : "", f->arg ? f->arg : "");
        switch (f->kind) {
            case FLAG_INT: snprintf(def, sizeof def, " (default %d)", *(int *)f->value); break;
            case FLAG_LONG: if (*(long *)f->value) snprintf(def, sizeof def, " (default %ld)", *(long *)f->value); break;
            case FLAG_FLOAT: snprintf(def, sizeof def, " (default %g)", (double)*(float *)f->value); break;
            case FLAG_DOUBLE: if (*(double *)f->value) snprintf(def, sizeof def, " (default %g)", *(double *)f->value); break;
            case FLAG_STRING:
                if (*(const char **)f->value) snprintf(def, sizeof def, " (default %s)", *(const char **)f->value);
                break;
            default: break;
        }
        fprintf(out, "  %-22s %s%s\n", left, f->help, def);
    }
}
