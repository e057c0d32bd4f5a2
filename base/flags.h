// flags.h - command-line flags from one table per program: the table says each flag's name, type, range and help
// line, parsing fills the variables it points to, and --help is printed from the same table (with the defaults
// read from those variables). A bad flag or value exits with one line on stderr and status 2.
#ifndef FLAGS_H
#define FLAGS_H

#include <stdbool.h>
#include <stdio.h>

typedef enum {
    FLAG_SWITCH,    // bool *, no value: present = true
    FLAG_INT,       // int *, in [lo, hi]
    FLAG_LONG,      // long *, in [lo, hi]
    FLAG_FLOAT,     // float *, in [lo, hi]
    FLAG_DOUBLE,    // double *, in [lo, hi]
    FLAG_STRING,    // const char ** (points into argv)
    FLAG_NUMBERS,   // NumberList *: up to FLAG_MAX_NUMBERS comma-separated numbers, each in [lo, hi]
} FlagKind;

#define FLAG_MAX_NUMBERS 8
typedef struct { double v[FLAG_MAX_NUMBERS]; int n; } NumberList;

typedef struct {
    const char *name;   // "--batch"
    FlagKind kind;
    void *value;        // where the parsed value goes; its value before parsing is the default --help shows
    double lo, hi;      // accepted range of numbers
    const char *arg;    // placeholder in --help ("N", "X", "DIR"); NULL for switches
    const char *help;   // one line
    bool given;         // set by flags_parse when the flag was on the command line
} Flag;

// Parses argv[1..argc) against flags[0..n). A flag given twice takes its last value. --help / -h print the
// usage (synopsis, then one line per flag) and exit 0.
void flags_parse(const char *prog, const char *synopsis, Flag *flags, int n, int argc, char **argv);
void flags_usage(FILE *out, const char *prog, const char *synopsis, const Flag *flags, int n);
const Flag *flag_find(const Flag *flags, int n, const char *name);   // NULL if the table has no such flag
bool flag_given(const Flag *flags, int n, const char *name);

#endif
