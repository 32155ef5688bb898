/* Internal to src/learn: the learner's layout and the recorder calls the fit loop makes.
 * Names start with kiln__learn_ / kiln__recorder_ and are not API. */
#ifndef KILN_LEARN_INTERNAL_H
#define KILN_LEARN_INTERNAL_H

#include "core/internal.h"
#include "kiln/autograd.h"
#include "kiln/ops.h"
#include "kiln/learn.h"
#include "kiln/report.h"

typedef struct kiln__cb {
    kiln_callback cb; /* cb.name points at name */
    char *name;
} kiln__cb;

struct kiln_learner {
    kiln_ctx *ctx;
    kiln_model *model;
    kiln_data *data;
    kiln_optim *opt;
    bool own_opt;
    kiln_learner_params p;

    kiln_metric *metrics; /* (n_metrics); names are owned copies */
    int n_metrics;

    kiln__cb *cbs;
    int n_cbs, cap_cbs;

    double *lr_mults; /* (n_mults) */
    int n_mults;
    bool mults_set;   /* set by the user: must match the model's groups at fit time */

    kiln_fit_state st;     /* st.lrs / st.moms have cap_groups, st.metrics n_metrics */
    int cap_groups;
    kiln_ema ema;
    bool in_fit;
    kiln_recorder *rec;
    kiln_progress *prog;
};

/* Makes the learner's group arrays match the model's layer groups and puts the optimizer's
 * parameters in those groups. */
kiln_status kiln__learn_sync_groups(kiln_learner *l);
/* The loss of one batch: out (B, ...), y (B, ...) -> one-element tensor, NULL + message. */
kiln_tensor *kiln__learn_loss(kiln_learner *l, kiln_tensor *out, kiln_tensor *y);
/* Runs hook number `which` (offset of the field in kiln_callback) of every callback in
 * order; stops at the first error. */
kiln_status kiln__learn_run_hook(kiln_learner *l, size_t which);
#define KILN__HOOK(field) offsetof(kiln_callback, field)

/* Loss (when loss != NULL; else given_loss is what metrics see) and metrics (n_metrics, may be
 * NULL) of predictions probs laid out as p (snapshot.c): the probabilities are turned back
 * into the model's output form first (log p for cross-entropy, logit for BCE). */
kiln_status kiln__learn_score(kiln_learner *l, const float *probs, const kiln_preds *p, double *loss,
                              double given_loss, double *metrics);

/* ---- recorder ---- */
kiln_recorder *kiln__recorder_new(void);
void kiln__recorder_free(kiln_recorder *r);
kiln_status kiln__recorder_reset(kiln_recorder *r, int n_groups, int n_metrics, const kiln_metric *metrics);
kiln_status kiln__recorder_add_batch(kiln_recorder *r, int64_t iter, int64_t epoch, double loss, double smooth,
                                     const double *lrs, const double *moms);
kiln_status kiln__recorder_add_epoch(kiln_recorder *r, int64_t epoch, int64_t iter, double train_loss,
                                     double valid_loss, const double *metrics, double seconds);

#endif
