// safetensors.h - read and write .safetensors files holding float32 tensors: our checkpoints and golden fixtures.
//
// File layout: an 8-byte little-endian header length N, N bytes of JSON, then the raw little-endian data:
//   {"__metadata__": {"key": "value", ...},
//    "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
// Offsets are bytes from the start of the data section. Only F32 with at most 4 dims is supported; a 0-dim
// scalar reads as shape (1). Plain C on the host: no tensors, no device memory.
#ifndef SAFETENSORS_H
#define SAFETENSORS_H

#include <stddef.h>

// ---- reading ----
typedef struct SafeTensors SafeTensors;  // an opened file: its entries, metadata and one data buffer

// The whole file is validated and loaded. On failure returns NULL and writes one line naming the file and the
// problem into err (err may be NULL). Never crashes on a malformed file.
SafeTensors *st_read(const char *path, char *err, int err_size);
// The same checks on n bytes of a whole file in memory (buf: any alignment; the data section is copied, so buf may be
// freed after the call). name stands for the file in messages ("<name>: <problem>"). NULL with err set on bad input;
// never exits, prints or reads outside buf[0, n). st_read is this parser fed from a file (it reads the header, runs
// the same checks, then reads the data section into place), so a fuzz target on st_parse covers st_read.
SafeTensors *st_parse(const void *buf, size_t n, const char *name, char *err, int err_size);
// Data of the tensor called name (valid until st_free), or NULL if absent. ndim and shape may be NULL.
const float *st_get(const SafeTensors *st, const char *name, int *ndim, int shape[4]);
const char *st_meta(const SafeTensors *st, const char *key);     // NULL if absent
int st_count(const SafeTensors *st);                             // number of tensors
const char *st_name(const SafeTensors *st, int i);               // i-th tensor, in file order
void st_free(SafeTensors *st);

// ---- writing ----
typedef struct StWriter StWriter;  // tensors and metadata collected in memory, written by st_writer_save

StWriter *st_writer_new(void);
// Copies name and data. ndim 0..4, every dim > 0, names unique and not "__metadata__".
void st_writer_add(StWriter *w, const char *name, int ndim, const int *shape, const float *host_data);
void st_writer_meta(StWriter *w, const char *key, const char *value);  // copies; a repeated key replaces the value
// Atomic: writes path.tmp, flushes and fsyncs it, then renames it over path. Returns 0 on success, or -1 with
// one line in err naming the file (no .tmp left behind).
int st_writer_save(StWriter *w, const char *path, char *err, int err_size);
void st_writer_free(StWriter *w);

#endif
