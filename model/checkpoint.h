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
} TrainState;

// Writes model parameters, BN buffers, Adam moments (opt may be NULL), config and state. Atomic (temp + rename).
int checkpoint_save(const char *path, const Amdim *m, const Adam *opt, const TrainState *st, char *err, int err_size);
// Reads only the config stored in a checkpoint (to build the model before loading).
int checkpoint_read_config(const char *path, AmdimConfig *cfg, char *err, int err_size);
// Loads into a model built with the same config (and opt, st when not NULL). A config that differs in any
// architecture field is an error naming the field and both values.
int checkpoint_load(const char *path, Amdim *m, Adam *opt, TrainState *st, char *err, int err_size);

#endif
