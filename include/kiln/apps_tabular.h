/* kiln apps for tables (included by kiln/apps.h): fastai's tabular_learner and collab_learner.
 *
 * Both train on kiln_tabular_data_open's batches (kiln/tabular.h) with the procs learned on the
 * training rows, through the same calls as every task: kiln_learner_train (the shared driver),
 * kiln_learner_export (weights + model.json + procs.json), kiln_learner_interpret
 * (classification), lr_find. Regression trains on MSE with RMSE as the metric (on the log when
 * the procs take the target's log), classification on cross-entropy with accuracy.
 *
 * Collaborative filtering is a table of two categorical columns, user and item, and a
 * regression target, the rating (fastai CollabDataLoaders): kiln_collab_data_open. */
#ifndef KILN_APPS_TABULAR_H
#define KILN_APPS_TABULAR_H

#include "kiln/core.h"
#include "kiln/data.h"
#include "kiln/interp.h"
#include "kiln/learn.h"
#include "kiln/tabular.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- tabular ------------------------------------------------------------------------------- */

#define KILN_TABULAR_MAX_LAYERS 16

typedef struct kiln_tabular_learner_params {
    int n_layers;                           /* 2 */
    int64_t layers[KILN_TABULAR_MAX_LAYERS];/* {200, 100} (fastai tabular_learner) */
    float ps[KILN_TABULAR_MAX_LAYERS];      /* dropout after each hidden layer, 0 */
    float embed_p;                          /* dropout on the concatenated embeddings, 0 */
    bool y_range;                           /* regression output through sigmoid_range(lo, hi) */
    double y_lo, y_hi;
    double wd;                              /* 0.01 */
    kiln_learner_params learner;
} kiln_tabular_learner_params;

kiln_tabular_learner_params kiln_tabular_learner_default_params(void);

/* fastai tabular_learner: a TabularModel (embeddings sized by kiln_emb_sz_rule, BatchNorm on the
 * continuous columns, LinBnDrop layers) for procs' columns and target, AdamW. The learner takes
 * data (freed with it, and by this call on failure); procs is copied. */
kiln_learner *kiln_tabular_learner_new(kiln_ctx *ctx, kiln_data *data, const kiln_tab_procs *procs,
                                       const kiln_tabular_learner_params *p);

/* The procs of a tabular or collab learner (NULL for another). */
const kiln_tab_procs *kiln_tabular_learner_procs(const kiln_learner *l);

/* A tabular or collab model kiln_learner_export wrote to dir (model.json task "tabular" or
 * "collab", procs.json, model.safetensors loaded strictly and checked finite), without data. */
kiln_learner *kiln_tabular_learner_load(kiln_ctx *ctx, const char *dir);

/* Predictions for every row of t (its input columns by name; the target column, if present, is
 * ignored): value (n) the prediction in the target's units (exp undone for a log target) for
 * regression, or the class index for classification, with probs (n, n_classes) (may be NULL).
 * Rows go through the learner's procs as fastai's test_dl (unseen categories -> #na#); errors
 * name the table, line and column. Eval mode, bs rows per forward (0: 1024). */
kiln_status kiln_tabular_predict(kiln_learner *l, const kiln_table *t, int64_t bs, double *value, float *probs);

/* kiln_tabular_predict over csv_in, written to csv_out (atomically; NULL: stdout) as CSV: the
 * column `row` (1-based data row), then `<target>` (the prediction), then for classification one
 * `p_<class>` column per class. */
kiln_status kiln_tabular_predict_csv(kiln_learner *l, const char *csv_in, const char *csv_out);

/* fastai's ClassificationInterpretation for a tabular classifier over a split of its data (rows
 * in order: an index is the row's place in the split): into *out (may be NULL; kiln_interp_free
 * it) and, with dir, confusion_matrix.csv, confusion_matrix.png (with PLplot) and top_losses.csv
 * (the k largest) written there. */
kiln_status kiln_tabular_interpret(kiln_learner *l, kiln_data_split split, const char *dir, int64_t k, kiln_interp *out);

/* ---- collaborative filtering ----------------------------------------------------------------- */

/* fastai CollabDataLoaders.from_csv: ratings_csv's user, item and rating columns (NULL: the
 * first, second and third column, as fastai's defaults; other columns ignored), valid_pct of the rows (split_seed) kept aside, or valid_csv; users and items
 * categorical (code 0 #na#), the rating a regression target. p's target / cat / only_listed /
 * task are set by the call (p NULL: defaults, bs 64). */
kiln_data *kiln_collab_data_open(const char *ratings_csv, const char *valid_csv, const char *user_col,
                                 const char *item_col, const char *rating_col, const kiln_tab_params *p,
                                 kiln_tab_procs **procs, kiln_tab_info *info);

typedef struct kiln_collab_learner_params {
    int64_t n_factors;                      /* 50 */
    bool use_nn;                            /* EmbeddingNN instead of EmbeddingDotBias */
    int n_layers;                           /* use_nn: 1 */
    int64_t layers[KILN_TABULAR_MAX_LAYERS];/* use_nn: {n_factors} */
    bool y_range;                           /* true: sigmoid_range(y_lo, y_hi) */
    double y_lo, y_hi;                      /* 0, 5.5 */
    double wd;                              /* 0.1 (the course's collab_learner(wd=1e-1)) */
    bool sparse;                            /* embedding tables take the lazy (sparse) AdamW step:
                                               only the rows of a batch move (kiln/optim.h);
                                               false: fastai's dense AdamW */
    kiln_learner_params learner;
} kiln_collab_learner_params;

kiln_collab_learner_params kiln_collab_learner_default_params(void);

/* fastai collab_learner over kiln_collab_data_open's data and procs: EmbeddingDotBias (or
 * EmbeddingNN), MSE, RMSE, AdamW. Takes data; procs is copied. The training pairs (which items
 * each user rated) are kept for kiln_collab_recommend and exported with the model (seen.csv). */
kiln_learner *kiln_collab_learner_new(kiln_ctx *ctx, kiln_data *data, const kiln_tab_procs *procs,
                                      const kiln_collab_learner_params *p);

/* Predicted ratings of n (user, item) pairs given by their ids as in the ratings file. A user or
 * item the model does not know is INVALID naming it (fastai would give it the #na# row). */
kiln_status kiln_collab_predict(kiln_learner *l, const char *const *users, const char *const *items, int64_t n,
                                double *rating);

/* kiln_collab_predict over the rows of pairs_csv (its user_col and item_col; NULL: the columns
 * named as in the training file), written to csv_out (atomically; NULL: stdout) as CSV with the
 * columns user, item, rating. */
kiln_status kiln_collab_predict_csv(kiln_learner *l, const char *pairs_csv, const char *user_col, const char *item_col,
                                    const char *csv_out);

/* The n best items for user that it has not rated in the training data, best first: items[k]
 * (pointers into the learner, valid while it lives) and rating[k]; *n_out how many (fewer when
 * the user has rated nearly everything). */
kiln_status kiln_collab_recommend(kiln_learner *l, const char *user, int64_t n, const char **items, double *rating,
                                  int64_t *n_out);

/* The learned tables as CSV in dir (atomically): users.csv and items.csv with columns id, bias
 * (dot-bias only), f0..f<k-1> (the factors or embedding), one row per known id (not #na#). With
 * them a user lists the most and least liked items (by bias) and the items closest to one
 * another (by their factors). */
kiln_status kiln_collab_export_tables(kiln_learner *l, const char *dir);

#ifdef __cplusplus
}
#endif
#endif
