/* kiln learn_lr_find: the LR range test (fastai Learner.lr_find) on a Learner (learn.h),
 * which leaves no trace on the learner; its result, suggestions, plot and CSV. The result is
 * malloc'd and released with kiln_lr_find_result_free. */
#ifndef KILN_LEARN_LR_FIND_H
#define KILN_LEARN_LR_FIND_H

#include "kiln/learn.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- LR range test (src/learn/lr_find.c) ------------------------------------------------ *
 * fastai v2 Learner.lr_find: iteration i trains one batch at lr = start*(end/start)^(i/N)
 * (every layer group at the same lr, whatever the lr multipliers), for N = num_it
 * iterations over as many epochs as needed, without validation, recording the lr and the
 * raw and debiased-smoothed (beta) loss of every batch. With stop_div it stops after the
 * first batch whose smoothed loss is NaN or above 4x the best so far (that point is
 * recorded, as fastai does). Afterwards the learner is as it was, bit for bit: params,
 * grads, buffers (BatchNorm running stats and counters), optimizer state and group
 * hyper-parameters, RNG, train/eval flag, lr multipliers, recorder, fit state.
 * The learner's callbacks do not run during the test (no checkpoints, snapshots or
 * "best model" files of lr_find weights); its progress style shows one "lr_find" bar and
 * the suggestions. The data's train order is set back to the last fit's epoch (data.h:
 * a function of (seed, epoch)); before any fit it is left at the test's last epoch. */
typedef struct kiln_lr_find_params {
    double start_lr;        /* 1e-7 */
    double end_lr;          /* 10 */
    int64_t num_it;         /* 100 */
    bool stop_div;          /* true */
    double beta;            /* smoothing, 0.98 */
    kiln_lr_suggest suggest;/* the suggestion returned in result->lr, valley */
    const char *plot_path;  /* NULL, or a PNG written with kiln_lr_find_plot (skip_end 5) */
    const char *csv_path;   /* NULL, or a CSV written with kiln_lr_find_write_csv */
} kiln_lr_find_params;

typedef struct kiln_lr_find_result {
    int64_t n;              /* recorded points (<= num_it) */
    double *lrs;            /* (n) lr of each iteration */
    double *losses;         /* (n) raw batch loss */
    double *smooth_losses;  /* (n) debiased EMA of losses */
    int64_t num_it;
    bool diverged;          /* stopped early by stop_div */
    kiln_lr_suggest suggest;
    double lr;              /* suggestions[suggest] */
    /* kiln_lr_suggest_lr over (lrs, smooth_losses); NAN / -1 when too few points */
    double suggestions[KILN_LR_SUGGEST_COUNT];
    int64_t suggestion_idx[KILN_LR_SUGGEST_COUNT];
} kiln_lr_find_result;

kiln_lr_find_params kiln_lr_find_default_params(void);
/* p NULL = defaults. INVALID on bad parameters or during a fit. The result is filled even
 * when no suggestion can be made (too few points; lr = NAN then). On error the learner is
 * restored too and *out is empty, except when only writing the CSV or plot failed: then
 * *out is filled (free it) and that error is returned. */
kiln_status kiln_learner_lr_find(kiln_learner *l, const kiln_lr_find_params *p, kiln_lr_find_result *out);
void kiln_lr_find_result_free(kiln_lr_find_result *r);
/* Smoothed loss vs lr (log x) without the last skip_end points (fastai plot_lr_find, 5),
 * the chosen suggestion marked with a point and a dashed vertical line, the others with
 * points. UNSUPPORTED without PLplot. */
kiln_status kiln_lr_find_plot(const kiln_lr_find_result *r, const char *path, int skip_end);
/* "lr,loss,smooth_loss", one row per point, %.9g; atomic (temp + fsync + rename). */
kiln_status kiln_lr_find_write_csv(const kiln_lr_find_result *r, const char *path);

#ifdef __cplusplus
}
#endif
#endif
