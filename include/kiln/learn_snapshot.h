/* kiln learn_snapshot: snapshot ensembles (Huang et al. 2017) on a Learner (learn.h): weights
 * saved at each SGDR/CLR cycle end by a callback the learner owns, and predictions averaged
 * over the last M snapshots. Results are malloc'd and released with their _free function. */
#ifndef KILN_LEARN_SNAPSHOT_H
#define KILN_LEARN_SNAPSHOT_H

#include "kiln/learn.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- snapshot ensembles (src/learn/snapshot.c) ------------------------------------------ *
 * A callback ("snapshots") that copies the weights at the end of every training batch whose
 * iteration ends a schedule cycle (kiln_sched_cycle_end: SGDR and cos-restarts restarts,
 * CLR cycles, and the schedule's last iteration). Snapshot k is the k-th cycle end seen.
 * A fit starting at epoch 0 clears the set; a resumed fit keeps it, and in directory mode
 * picks up the files of cycles that ended before its start epoch. */
typedef struct kiln_snapshot_params {
    const char *dir;  /* NULL: in memory; else "<dir>/snapshot_<cycle>.safetensors" (model
                         state dict, atomic, metadata format "kiln-snapshot"); copied */
} kiln_snapshot_params;

kiln_snapshot_params kiln_snapshot_default_params(void); /* in memory */
/* p NULL: kiln_snapshot_default_params(). */
kiln_status kiln_learner_add_snapshots(kiln_learner *l, const kiln_snapshot_params *p);
int kiln_snapshot_count(kiln_learner *l); /* 0 without the callback */
/* Where snapshot i was taken (any pointer may be NULL; *path NULL in memory mode). */
kiln_status kiln_snapshot_info(kiln_learner *l, int i, int64_t *cycle, int64_t *iter, int64_t *epoch,
                               const char **path);
/* Puts snapshot i's weights into the model (not during a fit). */
kiln_status kiln_snapshot_load(kiln_learner *l, int i);

/* Predictions of the ensemble of the last m snapshots (m <= 0 or > count: all) over a
 * split: probs = the mean of each snapshot's kiln_learner_get_preds probs (softmax for
 * cross-entropy), targets as get_preds; loss = the learner's loss of those mean probs
 * (cross-entropy of log(mean p), BCE of logit(mean p), MSE of the mean). The model's
 * weights are restored afterwards. */
kiln_status kiln_snapshot_predict(kiln_learner *l, kiln_data_split split, int m, kiln_preds *out);

/* Loss and metrics of each of the last m snapshots and of their ensemble. Metrics are
 * computed over the whole split from the predictions given back the model's output form
 * (log p for cross-entropy, logit(p) for BCE), so argmax/threshold metrics see what they
 * see in validation; custom metrics get that form too. */
typedef struct kiln_snapshot_eval {
    kiln_data_split split;
    int n;             /* snapshots evaluated */
    int first;         /* index of the first of them */
    int n_metrics;
    double *losses;    /* (n) loss of each snapshot (kiln_learner_get_preds) */
    double *metrics;   /* (n, n_metrics) */
    double ens_loss;
    double *ens_metrics; /* (n_metrics) */
} kiln_snapshot_eval;

kiln_status kiln_snapshot_evaluate(kiln_learner *l, kiln_data_split split, int m, kiln_snapshot_eval *out);
void kiln_snapshot_eval_free(kiln_snapshot_eval *e);
/* The table: "snapshot  valid_loss  accuracy" ("train_loss" for the train split), one row
 * per snapshot (its cycle), then
 * "ensemble (last M)" with the ensemble's values. out NULL = stdout. */
void kiln_snapshot_eval_print(kiln_learner *l, const kiln_snapshot_eval *e, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
