// output.h - where the drivers' results go: folders made on demand, output files opened (and so checked) before
// any work starts, and JSON lines (log.jsonl, eval.jsonl) with every string escaped and every number valid JSON.
#ifndef OUTPUT_H
#define OUTPUT_H

#include <stdbool.h>
#include <stdio.h>

// mkdir -p: creates dir and its missing parents. On failure returns -1 with one line in err:
// "cannot create DIR: PART: reason" naming the part that could not be made.
int make_dirs(const char *dir, char *err, int err_size);
// Creates the missing parents of path, then fopen(path, mode). On failure returns NULL with one line in err
// ("cannot write PATH: reason", or make_dirs' line for the parent folder).
FILE *open_output(const char *path, const char *mode, char *err, int err_size);

// One JSON object on one line: jsonl_begin, any number of fields, jsonl_end (writes "}\n" and flushes).
typedef struct { FILE *f; int fields; } JsonLine;
void jsonl_begin(JsonLine *j, FILE *f);
void jsonl_str(JsonLine *j, const char *key, const char *value);   // escaped: quotes, backslashes, control bytes
void jsonl_int(JsonLine *j, const char *key, long value);
void jsonl_num(JsonLine *j, const char *key, double value);        // %.9g; NaN and Inf become null (JSON has none)
void jsonl_bool(JsonLine *j, const char *key, bool value);
int jsonl_end(JsonLine *j);                                          // 0, or -1 when the write failed (errno set)

#endif
