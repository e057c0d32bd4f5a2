// objectives.c - what the encoder is trained for: AMDIM's NCE tasks (spec section 4) with their score penalty and
// soft clip, the mixture objective (spec section 14), DIM (one view, global against local) and CPC (patches
// predicted from the rows above), and the online classifiers on detached f1 (spec section 7).
// Legend: B images, D embedding width, L target locations, P sources per image, k mixture components.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../comm/comm.h"
#include "amdim.h"

// ---------------------------------------------------------------- objectives (spec section 4 and 14)

// data-parallel training: the targets of every process (op_all_gather); one process: x itself
static Tensor *all_ranks(Tensor *x) { return comm_size() > 1 ? op_all_gather(x) : x; }

// the targets of a map T (Bt, D, H, W) as rows: (Bt*L, D), location l of image b in row b*L + l. Made once per map
// and step: two tasks score against the same f5 map.
static Tensor *target_rows(Tensor *T) {
    int Bt = T->shape[0], D = T->shape[1], L = T->shape[2] * T->shape[3];
    return op_reshape(op_transpose(op_reshape(T, SHAPE(Bt, D, L))), SHAPE(Bt * L, D));
}

// S: (B*P, D) this process's sources; targets: (Bt*L, D) those of all processes, S's own images at `first`
static Tensor *nce_shard(Tensor *S, Tensor *targets, int L, int P, int first, float tclip, Tensor **reg) {
    int Bt = targets->shape[0] / L, D = targets->shape[1], B = S->shape[0] / P;
    CHECK(S->ndim == 2 && S->shape[0] == B * P && S->shape[1] == D && first + B <= Bt,
          "NCE sources must be (B*%d, %d) with their images among the %d targets", P, D, Bt);
    Tensor *R = op_scale(op_matmul(S, targets, false, true), 1.0f / sqrtf((float)D));   // (B*P, Bt*L)
    *reg = op_scale(op_mean(op_square(R), -1), 0.05f);                                   // on the unclipped scores
    Tensor *Q = op_scale(op_tanh(op_scale(R, 1.0f / tclip)), tclip);                     // soft clip to (-c, c)
    return op_nce_log_softmax_shard(Q, B, P, L, Bt, first);                              // (B, P, L)
}

Tensor *amdim_nce(Tensor *S, Tensor *T, int P, float tclip, Tensor **reg) {
    CHECK(S->shape[0] == T->shape[0] * P, "NCE sources must be (%d, D)", T->shape[0] * P);
    return nce_shard(S, target_rows(T), T->shape[2] * T->shape[3], P, 0, tclip, reg);
}

// k mixture components per source: fc2(relu(fc1(a))) + a, as (B*k, D) rows
static Tensor *mixture_sources(Amdim *m, Tensor *a) {
    int B = a->shape[0], D = m->cfg.D, k = m->cfg.mixtures;
    Tensor *h = op_relu(op_linear(a, m->mix_w1, m->mix_b1));
    Tensor *y = op_reshape(op_linear(h, m->mix_w2, m->mix_b2), SHAPE(B, k, D));
    return op_reshape(op_add(y, op_repeat(a, k)), SHAPE(B * k, D));
}

// -mean_{i,l} [ sum_j q[j|i,l] s[j,i,l] + alpha H(q[.|i,l]) ], q = softmax_j(tau s): constant in the first term,
// differentiated in the entropy term. lsm: (B, k, L)
static Tensor *mixture_objective(Tensor *lsm, float tau, float alpha) {
    Tensor *scaled = op_scale(lsm, tau);
    Tensor *q = op_softmax(scaled, 1);
    Tensor *expected = op_sum(op_mul(op_detach(q), lsm), 1);                   // (B, L)
    Tensor *entropy = op_scale(op_sum(op_mul(q, op_log_softmax(scaled, 1)), 1), -1.0f);  // (B, L)
    return op_scale(op_mean(op_add(expected, op_scale(entropy, alpha)), -1), -1.0f);
}

void amdim_mixture_winners(Amdim *m, Tensor *x, int *winner) {
    const AmdimConfig *c = &m->cfg;
    CHECK(c->mixtures > 1 && m->head7.conv1, "mixture winners need a model with mixtures and the 1->7 task");
    bool was = autograd_grad_enabled();
    autograd_set_grad_enabled(false);
    Features f = amdim_encode(m, x, false, true);
    Tensor *reg;
    Tensor *lsm = amdim_nce(mixture_sources(m, f.f1), f.m7, c->mixtures, c->tclip, &reg);   // (B, k, 49)
    int B = x->shape[0], k = c->mixtures, L = lsm->shape[2];
    float *h = xmalloc((size_t)lsm->numel * sizeof(float));
    tensor_copy_to_host(lsm, h);
    for (int i = 0; i < B; i++)   // q = softmax_j(tau s) is largest where s is: the argmax of s over components
        for (int l = 0; l < L; l++) {
            int best = 0;
            for (int j = 1; j < k; j++) if (h[((long)i * k + j) * L + l] > h[((long)i * k + best) * L + l]) best = j;
            winner[(long)i * L + l] = best;
        }
    free(h);
    tape_clear();
    autograd_set_grad_enabled(was);
}

// global source a (B, D) against the target rows T (Bt*L, D) of the other view's map, a's images at `first`: plain
// NCE or the mixture objective
static Tensor *global_task(Amdim *m, Tensor *a, Tensor *T, int L, int first, Tensor **reg) {
    const AmdimConfig *c = &m->cfg;
    if (c->mixtures > 1)
        return mixture_objective(nce_shard(mixture_sources(m, a), T, L, c->mixtures, first, c->tclip, reg), c->mix_tau,
                                 c->mix_alpha);
    return op_scale(op_mean(nce_shard(a, T, L, 1, first, c->tclip, reg), -1), -1.0f);
}

static Tensor *local_task(Amdim *m, Tensor *m5_src, const int *idx, Tensor *T, int L, int first, Tensor **reg) {
    Tensor *s5 = op_gather_location(m5_src, idx);   // (B, D)
    return op_scale(op_mean(nce_shard(s5, T, L, 1, first, m->cfg.tclip, reg), -1), -1.0f);
}

static Tensor *half_sum(Tensor *a, Tensor *b) { return op_scale(op_add(a, b), 0.5f); }

Tensor *amdim_linear_logits(Amdim *m, Tensor *f) { return op_linear(f, m->lin_w, m->lin_b); }

Tensor *amdim_mlp_logits(Amdim *m, Tensor *f, bool training, Rng *rng) {
    float p = m->cfg.cls_dropout;
    Tensor *h = op_linear(op_dropout(f, p, training, rng), m->mlp_w1, NULL);
    h = op_relu(op_batchnorm(h, m->mlp_gamma, m->mlp_beta, m->mlp_rm, m->mlp_rv, training));
    return op_linear(op_dropout(h, p, training, rng), m->mlp_w2, m->mlp_b2);
}

Tensor *amdim_classifier_loss(Tensor *logits, const int *labels) {
    Tensor *clipped = op_scale(op_tanh(op_scale(logits, 0.1f)), 10.0f);
    Tensor *penalty = op_scale(op_mean(op_square(logits), -1), 0.001f);
    return op_add(op_cross_entropy(clipped, labels), penalty);
}

// the sum of two optional terms (NULL = absent)
static Tensor *add_present(Tensor *a, Tensor *b) { return !a ? b : !b ? a : op_add(a, b); }

// the online classifiers' loss on detached features f (N, D) with labels (N)
static Tensor *classifiers(Amdim *m, AmdimLoss *out, Tensor *f, const int *labels, Rng *rng) {
    autograd_scope("cls_lin");
    out->lin_logits = amdim_linear_logits(m, f);
    Tensor *cls_lin = amdim_classifier_loss(out->lin_logits, labels);
    autograd_scope("cls_mlp");
    out->mlp_logits = amdim_mlp_logits(m, f, true, rng);
    Tensor *cls_mlp = amdim_classifier_loss(out->mlp_logits, labels);
    autograd_scope("loss");
    return op_add(cls_lin, cls_mlp);
}

// CPC: every patch vector z[b, i, j] is predicted from the context c[b, i - k, j] of the rows above, k = 1..K:
// pred = W_k c, scored against all B*49 patch vectors of the batch (scaled by 1/sqrt(D)), the true one picked by
// a cross-entropy (InfoNCE); contexts without a patch k rows below are left out (label -1).
static AmdimLoss cpc_loss(Amdim *m, Tensor *x, const int *labels, Rng *rng) {
    AmdimLoss out = {0};
    int B = x->shape[0], D = m->cfg.D, G = CPC_GRID, L = G * G, K = m->cfg.cpc_steps;
    Tensor *z = cpc_patch_vectors(m, x, true);   // (B*L, D)
    autograd_scope("cpc.context");
    Tensor *zmap = op_reshape(op_transpose(op_reshape(z, SHAPE(B, L, D))), SHAPE(B, D, G, G));
    Tensor *h = op_conv2d_relu(zmap, op_mul(m->ctx_w[0], m->ctx_mask), m->ctx_b[0], 1, 1);
    Tensor *cmap = op_conv2d_add(h, op_mul(m->ctx_w[1], m->ctx_mask), m->ctx_b[1], 1, 1, zmap);   // rows <= i only
    Tensor *c = op_reshape(op_transpose(op_reshape(cmap, SHAPE(B, D, L))), SHAPE(B * L, D));
    int *target = xmalloc((size_t)B * L * sizeof(int));
    Tensor *sum = NULL;
    autograd_scope("gather");
    Tensor *z_all = all_ranks(z);   // the negatives: every process's patch vectors
    int first = comm_rank() * B * L;
    for (int k = 1; k <= K; k++) {
        autograd_scope("cpc.predict");
        for (int r = 0; r < B * L; r++)   // row r = (b, i, j); the patch k rows below, among all processes' rows
            target[r] = r / G % G + k < G ? first + r + k * G : -1;
        Tensor *pred = op_matmul(c, m->cpc_pred[k - 1], false, true);                          // (B*L, D)
        Tensor *logits = op_scale(op_matmul(pred, z_all, false, true), 1.0f / sqrtf((float)D));  // (B*L, Bt*L)
        sum = add_present(sum, op_cross_entropy(logits, target));
    }
    free(target);
    out.cpc = op_scale(sum, 1.0f / (float)K);
    autograd_scope("cpc.mean");
    Tensor *f1 = op_scale(op_sum(op_reshape(z, SHAPE(B, L, D)), 1), 1.0f / (float)L);
    out.cls = classifiers(m, &out, op_detach(f1), labels, rng);
    out.total = op_add(out.cpc, out.cls);
    autograd_scope(NULL);
    return out;
}

AmdimLoss amdim_loss(Amdim *m, Tensor *x1, Tensor *x2, const int *labels, const int *idx1, const int *idx2, Rng *rng) {
    const AmdimConfig *c = &m->cfg;
    if (c->method == METHOD_CPC) return cpc_loss(m, x1, labels, rng);
    AmdimLoss out = {0};
    // two views: each task in both directions, averaged (spec 4.4); one view (DIM, the ablation): sources and
    // targets from the same view, one direction
    bool two = c->views == 2;
    Features v1 = amdim_encode(m, x1, true, true);
    Features v2 = two ? amdim_encode(m, x2, true, true) : v1;
    // data-parallel: this process's sources against the targets of every process (its images from `first` on)
    int first = comm_rank() * x1->shape[0];
    // the targets: every process's maps (all_ranks), as rows of D
    autograd_scope("gather");
    Tensor *t5_1 = v1.m5 ? target_rows(all_ranks(v1.m5)) : NULL, *t7_1 = v1.m7 ? target_rows(all_ranks(v1.m7)) : NULL;
    Tensor *t5_2 = two && v2.m5 ? target_rows(all_ranks(v2.m5)) : t5_1;
    Tensor *t7_2 = two && v2.m7 ? target_rows(all_ranks(v2.m7)) : t7_1;
    int L5 = v1.m5 ? v1.m5->shape[2] * v1.m5->shape[3] : 0, L7 = v1.m7 ? v1.m7->shape[2] * v1.m7->shape[3] : 0;
    Tensor *r[6];
    int n_reg = 0;
    if (c->tasks & TASK_1T5) {
        autograd_scope("nce.1t5");
        out.l1t5 = two ? half_sum(global_task(m, v1.f1, t5_2, L5, first, &r[n_reg]),
                                  global_task(m, v2.f1, t5_1, L5, first, &r[n_reg + 1]))
                       : global_task(m, v1.f1, t5_1, L5, first, &r[n_reg]);
        n_reg += two ? 2 : 1;
    }
    if (c->tasks & TASK_1T7) {
        autograd_scope("nce.1t7");
        out.l1t7 = two ? half_sum(global_task(m, v1.f1, t7_2, L7, first, &r[n_reg]),
                                  global_task(m, v2.f1, t7_1, L7, first, &r[n_reg + 1]))
                       : global_task(m, v1.f1, t7_1, L7, first, &r[n_reg]);
        n_reg += two ? 2 : 1;
    }
    if (c->tasks & TASK_5T5) {   // two views only (checked by the config)
        autograd_scope("nce.5t5");
        out.l5t5 = half_sum(local_task(m, v1.m5, idx1, t5_2, L5, first, &r[n_reg]),
                            local_task(m, v2.m5, idx2, t5_1, L5, first, &r[n_reg + 1]));
        n_reg += 2;
    }
    autograd_scope("loss");
    Tensor *reg = r[0];
    for (int i = 1; i < n_reg; i++) reg = op_add(reg, r[i]);
    out.reg = two ? op_scale(reg, 0.5f) : reg;   // the mean over directions, as for the tasks

    // online classifiers on the detached f1 of every view (two views: 2B rows, labels repeated)
    int B = x1->shape[0];
    int labels2[2 * B];
    for (int i = 0; i < B; i++) labels2[i] = labels2[B + i] = labels[i];
    Tensor *f = two ? op_concat0(op_detach(v1.f1), op_detach(v2.f1)) : op_detach(v1.f1);
    out.cls = classifiers(m, &out, f, labels2, rng);
    out.total = op_add(add_present(add_present(out.l1t5, out.l1t7), add_present(out.l5t5, out.reg)), out.cls);
    autograd_scope(NULL);
    return out;
}
