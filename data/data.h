// data.h - datasets in memory, AMDIM's augmentations, and a threaded batch loader.
// data/ knows nothing of tensors or models: it hands out plain float arrays (N, C, S, S), normalised.
//
// Legend: N images, C channels (1 or 3), H x W stored size, S the model's input size (32, 64 or 128).
#ifndef DATA_H
#define DATA_H

#include <stdbool.h>
#include <stdint.h>

// Dataset kinds and their augmentation family (spec section 6).
typedef enum { FAMILY_CIFAR, FAMILY_STL, FAMILY_IMAGENET } AugFamily;

typedef struct {
    int n, c, h, w;          // all images share one size (image folders: resized/cropped at load, see datasets.c)
    uint8_t *pixels;         // (n, c, h, w) row-major, channel-planar
    int *labels;             // (n); -1 = unlabeled
    int n_classes;
    AugFamily family;
    int input_size;          // S: 32 (CIFAR, Fashion-MNIST padded 28->32), 64 (STL), 128 (image folders, IMAGENET)
    float mean[3], std[3];   // normalisation per channel (spec section 6; grayscale: one value)
    char name[64];
} Dataset;

// kind: "cifar10", "cifar100", "stl10", "fashion-mnist" / "mnist" (IDX, .gz or plain), "folder".
// path: the directory holding the official files (cifar-10-batches-bin/ contents, stl10_binary/, the IDX files,
// or an image folder). split: "train", "test", or for stl10 also "unlabeled" and "train+unlabeled".
// Image folders (JPEG / PNG / BMP, at most IMAGE_MAX_PIXELS pixels and IMAGE_MAX_ASPECT:1, data/formats.h):
//   root/train/<class>/<image> and root/test/<class>/<image>: the split's folder;
//   root/<class>/<image> (neither train/ nor test/): a hold-out: within each class, images sorted by name, image i
//     is "test" when i % 10 == 9, else "train"; ds->name says "folder (no train/test: every 10th image held out)";
//   only one of train/ and test/: refused.
// Returns 0 on success; on failure returns -1 with a one-line message naming the file and the problem in err.
int dataset_load(Dataset *ds, const char *kind, const char *path, const char *split, char *err, int err_size);
void dataset_free(Dataset *ds);

// One training example for AMDIM: a shared flip, then two independent draws of the family's augmentation.
// x1, x2: (C, S, S) normalised floats. seed fixes every random choice (same seed -> same views).
void augment_pair(const Dataset *ds, int index, uint64_t seed, float *x1, float *x2);
// The test transform (no randomness): (C, S, S) normalised floats.
void transform_test(const Dataset *ds, int index, float *x);

// ---- the loader: worker threads prepare batches ahead of the training step ----
typedef enum { LOADER_TRAIN_PAIRS, LOADER_TEST } LoaderMode;

typedef struct {
    int batch;               // B
    float *x1, *x2;          // (B, C, S, S); x2 is NULL in LOADER_TEST mode
    int *labels;             // (B)
    int *indices;            // (B) dataset indices of the rows
    long epoch, position;    // where this batch came from: epoch and index of its first row in that epoch's order
} Batch;

typedef struct Loader Loader;

// TRAIN_PAIRS: a seeded shuffle per epoch (drop_last), augment_pair per row with a seed derived from
// (seed, epoch, position) so the result does not depend on the number of workers.
// TEST: dataset order, no shuffle, the last partial batch is kept (batch->batch may be smaller).
Loader *loader_new(const Dataset *ds, LoaderMode mode, int batch, uint64_t seed, int n_workers);
// Data-parallel training: this process takes rows [rank * batch/size, (rank + 1) * batch/size) of every batch (the
// same seeded order and augmentation seeds as one process taking them all); batch->batch is then batch/size, and
// epoch/position stay those of the whole batch. batch % size must be 0. Restarts the workers at the same place.
void loader_set_shard(Loader *ld, int rank, int size);
// Start (or restart) at a given epoch and position (resume). position must be a multiple of batch.
void loader_seek(Loader *ld, long epoch, long position);
// Blocks until the next batch is ready; the batch stays valid until the next call. Returns false after the
// last batch of a TEST pass; TRAIN_PAIRS never ends (epochs roll over).
bool loader_next(Loader *ld, Batch **out);
double loader_wait_seconds(const Loader *ld);   // total time loader_next spent waiting for workers
long loader_batches_per_epoch(const Loader *ld);
void loader_free(Loader *ld);

#endif
