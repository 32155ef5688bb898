/* Internal to src/apps: the part of the application object that tabular and collab learners
 * share (tab_app.c): the procs, the model's configuration, and for collab the training pairs;
 * how the model is built from them, exported and loaded. */
#ifndef KILN_TAB_INTERNAL_H
#define KILN_TAB_INTERNAL_H

#include "app_internal.h"
#include "kiln/apps_tabular.h"

typedef struct tab_part {
    bool collab;
    kiln_tab_procs *procs;             /* owned */
    const char **classes;              /* classification: the procs' class names (the array owned) */
    kiln_tabular_learner_params tp;    /* tabular: layers, ps, embed_p, y_range (learner unused) */
    kiln_collab_learner_params cp;     /* collab: factors, nn, y_range, sparse (learner unused) */
    uint64_t seed;
    /* collab: which items each user rated in training, CSR by user code: the items of user u
     * are seen_item[seen_start[u] .. seen_start[u + 1]), sorted */
    int64_t n_users, n_items;
    int64_t *seen_start;               /* (n_users + 1) */
    int64_t *seen_item;
} tab_part;

/* A part over a copy of procs (its class names set); NULL + message. */
tab_part *kiln__tab_part_new(const kiln_tab_procs *procs, bool collab);
kiln_status kiln__tab_part_classes(tab_part *t);
void kiln__tab_part_free(tab_part *t);
/* kiln_learner_export of a tabular or collab learner. */
kiln_status kiln__tab_export(kiln_learner *l, kiln__app *a, const char *dir);
/* collab.c: the embedding tables of m take opt's lazy (sparse) step. */
kiln_status kiln__collab_sparse(kiln_model *m, kiln_optim *opt);

/* l's part; NULL (without a message) when l is not a tabular or collab learner. */
tab_part *kiln__tab_of(const kiln_learner *l);

/* A learner over t (owned from here, also on failure): its model built and allocated on ctx
 * (weights from pm when not NULL, strict and checked finite), AdamW with wd, MSE + RMSE or
 * cross-entropy + accuracy, lp; data (owned, may be NULL) set. NULL + message on failure. */
kiln_learner *kiln__tab_learner(kiln_ctx *ctx, tab_part *t, kiln_data *data, double wd, const char *pm,
                                const kiln_learner_params *lp);

/* The model's output for x (B, n_cat + n_cont) f32 in eval mode without gradients, into the
 * step arena (the caller rewinds). */
kiln_tensor *kiln__tab_forward(kiln_learner *l, kiln_tensor *x);

/* tab_predict.c: the model's predictions for n processed rows x (n, n_cat + n_cont), bs rows a
 * forward (eval mode): value the output in the target's units (exp of a log target) or, for a
 * classifier, the class index with probs (n, n_classes) (may be NULL). */
kiln_status kiln__tab_predict_x(kiln_learner *l, const float *x, int64_t n, int64_t bs, double *value, float *probs);

/* collab.c: the training pairs of t from the rows (codes) r. */
kiln_status kiln__collab_seen(tab_part *t, const kiln_tab_rows *r);
/* collab.c: dir/seen.csv written / read (user and item ids). */
kiln_status kiln__collab_seen_save(const tab_part *t, const char *dir);
kiln_status kiln__collab_seen_load(tab_part *t, const char *dir);

#endif
