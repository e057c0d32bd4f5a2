// probe.h - evaluation of frozen features: linear and MLP probes trained with Adam, and k-nearest neighbours.
// Features are host arrays (N, dim); probes run on the given device through the same ops as the model.
#ifndef PROBE_H
#define PROBE_H

#include "../ops/ops.h"

#define PROBE_MLP_HIDDEN 1024      // the MLP probe: Linear(dim, 1024), BN, ReLU, Dropout(0.2), Linear(1024, K)
#define PROBE_MLP_DROPOUT 0.2f
#define PROBE_ADAM_BETA1 0.9f      // the probes train with PyTorch's default Adam betas and eps
#define PROBE_ADAM_BETA2 0.999f
#define PROBE_ADAM_EPS 1e-8f

typedef struct {
    float *x;     // (n, dim)
    int *y;       // (n); < 0 = unlabeled, skipped
    int n, dim;
} FeatureSet;

typedef struct {
    int epochs;          // passes over the training features
    int batch;
    float lr, weight_decay;
    uint64_t seed;
    Device device;
} ProbeOptions;

// Standardises both sets in place with the training set's per-dimension mean and std.
void features_standardise(FeatureSet *train, FeatureSet *test);
// Top-1 test accuracy in percent of a linear probe, and of the MLP probe above, trained on train.
double probe_linear(const FeatureSet *train, const FeatureSet *test, int n_classes, const ProbeOptions *opt);
double probe_mlp(const FeatureSet *train, const FeatureSet *test, int n_classes, const ProbeOptions *opt);
// k-NN on cosine similarity, votes weighted by similarity. Top-1 accuracy in percent.
double knn_accuracy(const FeatureSet *train, const FeatureSet *test, int n_classes, int k);
// The k training rows most similar (cosine) to test row q, most similar first: neighbours (k).
void knn_neighbours(const FeatureSet *train, const FeatureSet *test, int q, int k, int *neighbours);

#endif
