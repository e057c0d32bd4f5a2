// amdim.h - the AMDIM model (spec sections 1-4, 7 and 14): encoder with f1/f5/f7 taps, the phi heads of f5 and f7,
// the NCE objective with its score penalty and soft clipping, the optional mixture objective, and the online
// linear/MLP classifiers on detached f1. The same encoder also trains with the objectives AMDIM grew from: local
// Deep InfoMax (one view, f1 against the 7x7 map of the same view) and CPC (an image cut into a 7x7 grid of
// overlapping patches, each encoded to a vector, the rows below predicted from a masked context network).
// amdim.c builds and runs the encoder; objectives.c holds the losses.
//
// Legend: B images per batch (each gives two views), C input channels, S input size, F base width,
// D embedding width, d residual units per stage, K classes, k mixture components, L target locations (25 or 49).
#ifndef AMDIM_H
#define AMDIM_H

#include <stdbool.h>

#include "../ops/ops.h"

// The official optimiser settings (spec section 14): Adam, betas (0.8, 0.999), eps 1e-8, coupled weight decay 1e-5.
#define AMDIM_ADAM_BETA1 0.8f
#define AMDIM_ADAM_BETA2 0.999f
#define AMDIM_ADAM_EPS 1e-8f
#define AMDIM_WEIGHT_DECAY 1e-5f
#define AMDIM_CLS_HIDDEN 1024      // hidden width of the online MLP classifier (spec section 7)
#define AMDIM_LOCAL_SOURCES 25     // locations of the 5x5 map a 5->5 source is drawn from

typedef enum { METHOD_AMDIM, METHOD_DIM, METHOD_CPC } Method;
#define TASK_1T5 1                 // AMDIM's tasks (spec section 4.4), as a bit mask
#define TASK_1T7 2
#define TASK_5T5 4
#define TASKS_ALL (TASK_1T5 | TASK_1T7 | TASK_5T5)

// CPC on 32x32 inputs: 8x8 patches at stride 4 make a 7x7 grid; each patch goes through the PATCH8 encoder table
#define CPC_PATCH 8
#define CPC_STRIDE 4
#define CPC_GRID 7
#define CPC_MAX_STEPS 6            // predictions k = 1..cpc_steps rows below (< CPC_GRID)

typedef struct {
    char preset[32];
    int in_channels, input_size;   // C, S (32, 64 or 128: picks the encoder table of spec section 2)
    int F, D, d;
    int n_classes;                 // K of the online classifiers
    float tclip;                   // soft clip of the NCE scores (20)
    int mixtures;                  // k; 1 = off (the official behaviour)
    float mix_tau, mix_alpha;
    int mix_hidden;                // H of the mixture head (D when 0)
    float cls_dropout;             // dropout of the MLP classifier (0.2)
    int method;                    // Method: what the encoder is trained for
    int tasks;                     // AMDIM: the tasks computed (TASK_*; ablation: TASK_1T7 alone = no multiscale)
    int views;                     // AMDIM: 2 (sources and targets from different views) or 1 (ablation: one view)
    int cpc_steps;                 // CPC: rows predicted below each context (3)
} AmdimConfig;

// Fills cfg with a preset of spec section 14 (tiny, cifar-small, cifar-large, stl-small, imagenet-small) and the
// official defaults (method AMDIM, all three tasks, two views). Returns -1 for an unknown name.
int amdim_config_preset(AmdimConfig *cfg, const char *preset);
// "amdim", "dim", "cpc" <-> Method; -1 / NULL for an unknown one
int method_from_name(const char *name);
const char *method_name(int method);

// One encoder block: a stem conv, a residual unit, or the final BN.
typedef enum { BLOCK_STEM, BLOCK_RU, BLOCK_BN } BlockKind;
typedef struct {
    char name[24];                 // its parameters' prefix ("enc.2.1"): the scope its ops are recorded under
    BlockKind kind;
    int k, stride, pad;            // stem: pad is reflect padding (ImageNet stem) applied before a valid conv
    int cin, cout, out_size;       // out_size: spatial size after the block
    Tensor *w1, *w2, *bias;        // stem: w1 + bias; RU: w1 (k x k) and w2 (1x1, zero-init)
    Tensor *gamma, *beta, *running_mean, *running_var;   // BN
} Block;

typedef struct {                   // phi head for f5 or f7 (spec section 3)
    Tensor *conv1, *conv2, *shortcut_w, *shortcut_b;
    Tensor *gamma, *beta, *running_mean, *running_var;
} Head;

// Deepest table (128 px): two stems, five stages of d units, the last RU and the final BN = 4 + 5d blocks.
#define AMDIM_MAX_UNITS 12
#define AMDIM_MAX_BLOCKS (4 + 5 * AMDIM_MAX_UNITS)

typedef struct {
    AmdimConfig cfg;
    ParamSet ps;                   // every parameter and BN buffer, in one block
    Block blocks[AMDIM_MAX_BLOCKS];
    int n_blocks;
    int tap7, tap5;                // index of the block whose output is the f7 / f5 source
    int tap_channels;              // channels at the taps (4F for CIFAR, 8F otherwise)
    Head head5, head7;
    Tensor *mix_w1, *mix_b1, *mix_w2, *mix_b2;                // mixture head (mixtures > 1)
    Tensor *mlp_w1, *mlp_gamma, *mlp_beta, *mlp_rm, *mlp_rv, *mlp_w2, *mlp_b2;  // MLP classifier
    Tensor *lin_w, *lin_b;         // linear classifier
    // CPC: the context network (two 3x3 convs whose weights are masked to rows above and the centre row) and the
    // predictions of the patch vectors k rows below
    Tensor *ctx_w[2], *ctx_b[2], *ctx_mask;   // ctx_mask: (D, D, 3, 3) constant, owned by the model
    Tensor *cpc_pred[CPC_MAX_STEPS];          // (D, D) each
} Amdim;

// Builds the model on a device with the official initialisation (seeded). Returns -1 with a message for a
// configuration the encoder cannot take (e.g. an input size without a table).
int amdim_init(Amdim *m, const AmdimConfig *cfg, Device dev, uint64_t seed, char *err, int err_size);
void amdim_free(Amdim *m);
// Whether a model can be built from cfg: every field in range, the parameter count within one block and within
// this machine's memory. Returns -1 with one line in err ("F=0 is outside [1, 4096]") when not.
int amdim_config_check(const AmdimConfig *cfg, char *err, int err_size);
// Adam over every trainable tensor of the model with the official settings above, at learning rate lr.
void amdim_adam_init(Adam *opt, const Amdim *m, float lr);

typedef struct {
    Tensor *f1;   // (B, D) after the final BN (CPC: the mean of the image's 49 patch vectors)
    Tensor *m5;   // (B, D, 5, 5) phi5 of the f5 source (NULL when heads are skipped or the tasks need none)
    Tensor *m7;   // (B, D, 7, 7) phi7 of the f7 source (the same)
} Features;

// x: (B, C, S, S). training selects batch statistics for every BN. CPC models return f1 only.
Features amdim_encode(Amdim *m, Tensor *x, bool training, bool with_heads);
// CPC: x (B, C, 32, 32) -> the patch vectors z (B*49, D), rows in (image, grid row, grid column) order.
Tensor *cpc_patch_vectors(Amdim *m, Tensor *x, bool training);

typedef struct {
    Tensor *total;                 // L_opt = L_1t5 + L_1t7 + L_5t5 + REG + L_cls   (the tensor to backward)
    Tensor *l1t5, *l1t7, *l5t5, *reg, *cls;   // AMDIM and DIM; a task not computed is NULL
    Tensor *cpc;                   // CPC: InfoNCE of the patch predictions (NULL for the others)
    Tensor *lin_logits, *mlp_logits;   // (2B, K)
} AmdimLoss;

// One training step's graph. x1, x2: (B, C, S, S) the two views (DIM, CPC and one-view AMDIM use x1 only);
// labels: B host ints (-1 = none);
// idx1, idx2: B host ints in [0, AMDIM_LOCAL_SOURCES) - the 5x5 source location of the 5->5 task for each view;
// rng: dropout masks of the MLP classifier.
AmdimLoss amdim_loss(Amdim *m, Tensor *x1, Tensor *x2, const int *labels, const int *idx1, const int *idx2, Rng *rng);

// The NCE terms of one task direction (exposed for tests). S: (B*P, D) sources, T: (B, D, H, W) targets.
// Returns lsm (B, P, L) and writes the score penalty 0.05*mean(R^2) to *reg.
Tensor *amdim_nce(Tensor *S, Tensor *T, int P, float tclip, Tensor **reg);

// With --mixtures k: for test images x (B, C, S, S) in eval mode, the component whose 1->7 prediction of each 7x7
// location scores highest (the negatives are the batch's other images): winner (B, 49). Frees its own tape.
void amdim_mixture_winners(Amdim *m, Tensor *x, int *winner);

// Classifier logits on features f (N, D), which the caller detaches.
Tensor *amdim_linear_logits(Amdim *m, Tensor *f);
Tensor *amdim_mlp_logits(Amdim *m, Tensor *f, bool training, Rng *rng);
// CE(10 tanh(z/10), y) + 0.001 mean(z^2), labels < 0 ignored
Tensor *amdim_classifier_loss(Tensor *logits, const int *labels);

#endif
