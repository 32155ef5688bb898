/* kiln learn_tta: test-time augmentation (fastai v2 Learner.tta) on a Learner (learn.h): the
 * plain pass mixed with n augmented ones that the data source makes (kiln_data_ops
 * set_tta_pass), and scoring predictions with the learner's loss and metrics. */
#ifndef KILN_LEARN_TTA_H
#define KILN_LEARN_TTA_H

#include "kiln/learn.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- test-time augmentation (src/learn/tta.c) -------------------------------------------- *
 * fastai v2 learn.tta(n=4, beta=0.25, use_max=False): n passes over a split with the
 * training augmentation (the data source's TTA pass k, deterministic; a vision source draws
 * from kiln_vision_tta_seed(seed, k)),
 * their mean (or elementwise max with use_max) `aug`, and one plain pass:
 *   final = lerp(aug, plain, beta) = (1 - beta) * aug + beta * plain.
 * beta = 0 is aug alone, beta = 1 the plain pass. */

/* The combination alone: plain (count), passes (n, count) contiguous -> out (count); out may
 * be plain. INVALID when n < 1, beta outside [0, 1] or a pointer is NULL. */
kiln_status kiln_tta_combine(const float *plain, const float *passes, int n, int64_t count, double beta,
                             bool use_max, float *out);

/* TTA predictions over a split of a source with TTA passes (data.h: kiln_data_set_tta_pass
 * makes the augmented passes; a vision source without a transform makes them equal to the
 * plain one): out as kiln_learner_get_preds (probs (n, c) = the combination above, targets,
 * loss = the learner's loss of those probs). The source is put back to plain batches
 * afterwards, also on error. Not during a fit. UNSUPPORTED for a source without
 * kiln_data_ops.set_tta_pass. */
kiln_status kiln_learner_tta(kiln_learner *l, kiln_data_split split, int n, double beta, bool use_max,
                             kiln_preds *out);

/* Loss (may be NULL) and metrics (kiln_learner_n_metrics values, may be NULL) of any
 * predictions laid out as kiln_learner_get_preds gives them (plain, TTA, ensembles): metrics
 * see the model's output form (log p for cross-entropy), as in validation. Data-parallel
 * (kiln_learner_set_comm, N > 1 ranks): p is this rank's shard, every rank calls it, and the
 * loss and metrics are those of every rank's predictions together. */
kiln_status kiln_learner_score(kiln_learner *l, const kiln_preds *p, double *loss, double *metrics);

#ifdef __cplusplus
}
#endif
#endif
