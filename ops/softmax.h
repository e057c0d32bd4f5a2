// softmax.h - softmax, log-softmax, cross-entropy and the masked NCE log-softmax of AMDIM.
// Softmax over dim d sees the tensor as (outer, dim, inner) like reduce.h. Every softmax subtracts the row max.
#ifndef SOFTMAX_H
#define SOFTMAX_H

#include "../autograd/autograd.h"
#include "dispatch.h"

KERNELS_BEGIN
// x, out: (outer, dim, inner)
DECLARE_KERNEL(void, softmax_forward, (float *out, const float *x, long outer, long dim, long inner));
DECLARE_KERNEL(void, softmax_backward, (float *dx, const float *dout, const float *out, long outer, long dim, long inner));
DECLARE_KERNEL(void, log_softmax_forward, (float *out, const float *x, long outer, long dim, long inner));
DECLARE_KERNEL(void, log_softmax_backward, (float *dx, const float *dout, const float *out, long outer, long dim, long inner));
// logits: (N, K); labels: (N) on the same device, label < 0 = ignored; probs: (N, K) softmax written for backward.
// loss[0] = mean over the n_valid non-ignored rows of -log softmax(logits)[label]  (0 when n_valid == 0)
DECLARE_KERNEL(void, cross_entropy_forward, (float *loss, float *probs, const float *logits, const int *labels,
                                             int N, int K, int n_valid));
// dlogits += dloss[0] * (probs - onehot(label)) / n_valid for non-ignored rows; dloss lives on the device
DECLARE_KERNEL(void, cross_entropy_backward, (float *dlogits, const float *dloss, const float *probs,
                                              const int *labels, int N, int K, int n_valid));
// The NCE log-softmax of AMDIM (spec 4.3). x: (B, P, Bt, L) clipped scores of P sources per image i against every
// target location l of every target image j; source image i's own image among the targets is t = first + i
// (one process: Bt = B, first = 0; data-parallel: a rank's B sources against the Bt targets of all ranks).
// out: (B, P, L):
//   out[i,p,l] = x[i,p,t,l] - log( exp(x[i,p,t,l]) + sum_{j != t, l'} exp(x[i,p,j,l']) )
// i.e. each positive against all negatives of other images, the image's other positives masked out.
DECLARE_KERNEL(void, nce_log_softmax_forward, (float *out, const float *x, int B, int P, int L, int Bt, int first));
DECLARE_KERNEL(void, nce_log_softmax_backward, (float *dx, const float *dout, const float *x, const float *out,
                                                int B, int P, int L, int Bt, int first));
KERNELS_END

Tensor *op_softmax(Tensor *x, int dim);
Tensor *op_log_softmax(Tensor *x, int dim);
// logits: (N, K); labels: N host ints, -1 ignored -> scalar mean loss
Tensor *op_cross_entropy(Tensor *logits, const int *labels);
// x: (B*P, B*L) scores (any shape with B*P*B*L elements) -> (B, P, L)
Tensor *op_nce_log_softmax(Tensor *x, int B, int P, int L);
// the same for a shard of the sources: x (B*P, Bt*L), source image i's own targets at image first + i
Tensor *op_nce_log_softmax_shard(Tensor *x, int B, int P, int L, int Bt, int first);

#endif
