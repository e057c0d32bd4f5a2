// checkpoint.h - complete, versioned training state in one safetensors file, written atomically.
// Tensor names follow PyTorch module naming (enc.2.0.conv1.weight, head5.bn.running_var, cls_lin.weight, ...), so
// a PyTorch user can load them with a state_dict mapping. Optimiser moments are stored as "adam.m.<name>" and
// "adam.v.<name>"; the step, the data position and the whole config are in the metadata.
#ifndef CHECKPOINT_H
#define CHECKPOINT_H

#include "amdim.h"

#define CHECKPOINT_FORMAT "amdim-c-checkpoint"
#define CHECKPOINT_VERSION 1

typedef struct {
    long step;            // optimiser updates done
    long epoch, position; // where the data loader resumes
    long total_steps;     // length of the run once fixed (--steps, --epochs, or measured by --minutes); 0 = not yet
    double train_seconds; // training time spent so far, over every session of the run
    uint64_t seed;
    char dataset[32];
    // the flags that shape the run besides the model config; a resume must repeat them (0 / "" = not recorded)
    int batch, warmup;
    float lr;
    char decay_at[64];    // the --decay-at list as given, "" for none
} TrainState;

// Writes model parameters, BN buffers, Adam moments (opt may be NULL), config and state. Atomic (temp + rename).
int checkpoint_save(const char *path, const Amdim *m, const Adam *opt, const TrainState *st, char *err, int err_size);
// Reads only the config stored in a checkpoint (to build the model before loading); the config is validated
// (amdim_config_check) before the caller can build anything from it.
int checkpoint_read_config(const char *path, AmdimConfig *cfg, char *err, int err_size);
// Loads into a model built with the same config (and opt, st when not NULL). Refused, with one line naming the file
// and the problem: a config that differs in any field (naming it and both values), a tensor missing or of another
// shape (every dimension), a non-finite value in any tensor, a negative step or position.
int checkpoint_load(const char *path, Amdim *m, Adam *opt, TrainState *st, char *err, int err_size);

// The same two on a file already parsed (st_parse of a buffer: the checkpoint fuzz target); path names it in errors.
struct SafeTensors;
int checkpoint_read_config_from(const struct SafeTensors *f, const char *path, AmdimConfig *cfg, char *err,
                                int err_size);
int checkpoint_load_from(const struct SafeTensors *f, const char *path, Amdim *m, Adam *opt, TrainState *st,
                         char *err, int err_size);

#endif
