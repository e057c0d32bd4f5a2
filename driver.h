// driver.h - what train.c and eval.c share: the flags that pick the data and the machine, and their set-up.
// The drivers are the only code that knows both model/ and data/.
#ifndef DRIVER_H
#define DRIVER_H

#include "base/flags.h"
#include "data/data.h"
#include "tensor/device.h"

#define DEFAULT_FASHION_MNIST "/usr/share/datasets/fashion-mnist"   // Debian's dataset-fashion-mnist

typedef struct {
    const char *dataset, *data_path, *device;
    int threads;
    bool tf32;
} CommonArgs;

#define COMMON_ARGS_DEFAULT {.dataset = "fashion-mnist", .device = "cpu", .threads = 2}

// The flag-table rows for CommonArgs c, to put inside a driver's Flag table.
#define COMMON_FLAGS(c)                                                                                          \
    {"--dataset", FLAG_STRING, &(c)->dataset, 0, 0, "NAME", "fashion-mnist, mnist, cifar10, cifar100, stl10, folder", 0}, \
    {"--data", FLAG_STRING, &(c)->data_path, 0, 0, "PATH", "dataset directory (fashion-mnist: " DEFAULT_FASHION_MNIST ")", 0}, \
    {"--device", FLAG_STRING, &(c)->device, 0, 0, "cpu|cuda", "where the model runs", 0},                     \
    {"--threads", FLAG_INT, &(c)->threads, 1, 1024, "N", "CPU threads (OpenBLAS and OpenMP)", 0},              \
    {"--tf32", FLAG_SWITCH, &(c)->tf32, 0, 0, NULL, "TF32 tensor cores for the CUDA convolutions (inputs rounded to "  \
     "10 mantissa bits; the NCE scores and linear layers stay FP32)", 0}

// Checks the common flags (exits 2 with one line when they are wrong), sets the thread count, prints the engine
// line and returns the device.
Device driver_start(const char *prog, CommonArgs *c);
// An output file the run will write at some point: its folder is made and it is opened now, so a path that cannot
// be written is refused before any work (prints one line and exits 1). NULL is fine (no such output).
void driver_check_output(const char *prog, const char *path);
// A normalised image (C, S, S) as the model sees it, back in [0, 1] for a picture: out = x * std + mean.
void driver_unnormalise(const Dataset *ds, const float *x, float *out);
// Loads one split of the chosen dataset; on failure prints "prog: <reason>" and returns -1.
int driver_load(const char *prog, const CommonArgs *c, const char *split, Dataset *ds);

#endif
