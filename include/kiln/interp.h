/* kiln interpretation of a classifier's predictions, fastai's ClassificationInterpretation:
 * the confusion matrix, the most confused pairs of classes, the top losses, and the files
 * `kiln vision interpret` writes (confusion_matrix.csv / .png, top_losses.csv / .png).
 *
 * It works on kiln_preds (kiln_learner_get_preds in kiln/learn.h, or kiln_learner_tta in
 * kiln/learn_tta.h, over a split), so any classifier trained with cross-entropy can use it:
 * vision now, tabular and text classifiers later. Only the top-losses grid needs the images,
 * so it alone is per task (kiln_vision_plot_top_losses for vision).
 *
 *   kiln_preds p;  kiln_interp it;
 *   kiln_learner_get_preds(learn, KILN_DATA_SPLIT_VALID, &p);
 *   kiln_interp_from_preds(&p, &it);               // it.accuracy, it.confusion, ...
 *   kiln_confused top[5];  int total;
 *   int n = kiln_interp_most_confused(&it, 1, top, 5, &total);
 *   kiln_interp_write_confusion_csv(&it, classes, "out/confusion_matrix.csv");
 *   kiln_interp_free(&it);  kiln_preds_free(&p);
 *
 * Files are written atomically (temp file + fsync + rename, kiln/io.h): a failed write leaves
 * the file at path as it was and no temp file. Where classes is taken it holds c names in
 * label order; NULL (or a NULL entry) names a class by its index ("0", "1", ...). */
#ifndef KILN_INTERP_H
#define KILN_INTERP_H

#include "kiln/core.h"
#include "kiln/data.h"
#include "kiln/learn.h"
#include "kiln/vision.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_interp {
    int64_t n;                /* items */
    int c;                    /* classes */
    int64_t *confusion;       /* (c, c) row-major: row = actual, column = predicted */
    int *pred;                /* (n) argmax of the item's probabilities (first max on ties) */
    int *actual;              /* (n) the target class */
    double *loss;             /* (n) -log p(actual), p clamped at 1e-30 (finite) */
    float *p_actual;          /* (n) probability of the actual class */
    int64_t n_correct;        /* items with pred == actual */
    double accuracy;          /* n_correct / n */
} kiln_interp;

/* Interpretation of p: probs (n, c) with n >= 1 and 1 <= c <= INT_MAX, every probability
 * finite (rows are taken as given: they need not sum to 1); targets (n, 1) i64 class indices
 * in [0, c). out is zeroed first and owns its arrays (kiln_interp_free); on an error it is
 * left zeroed and the message names the item (and class) at fault, e.g.
 * "kiln_interp_from_preds: item 4: target 7 is not a class index in [0, 3)". */
kiln_status kiln_interp_from_preds(const kiln_preds *p, kiln_interp *out);
/* Frees the arrays and zeroes it; safe on a zeroed interp. */
void kiln_interp_free(kiln_interp *it);

typedef struct kiln_confused {
    int actual, predicted;
    int64_t count;
} kiln_confused;

/* fastai most_confused(min_val): the off-diagonal pairs (actual != predicted) whose count is
 * >= min_val (min_val <= 0 lists pairs never confused too, as fastai does), by count
 * descending, ties by actual then predicted ascending. Writes at most max of them to out
 * (out may be NULL when max is 0) and returns how many it wrote; *n_total (may be NULL) gets
 * how many there are. -1 with a message on bad arguments or when out of memory. */
int kiln_interp_most_confused(const kiln_interp *it, int64_t min_val, kiln_confused *out, int max,
                              int *n_total);

/* fastai top_losses(k): the indices of the min(k, n) largest losses, largest first (ties:
 * lower index first), into idx (room for min(k, n)); returns how many. -1 with a message on
 * bad arguments (k < 0, idx NULL with k > 0) or when out of memory. */
int64_t kiln_interp_top_losses(const kiln_interp *it, int64_t k, int64_t *idx);

/* confusion_matrix.csv: a header "actual\predicted,<class 0>,<class 1>,..." then one row per
 * actual class, "<class a>,<count>,<count>,..."; names are CSV-quoted when they hold a comma,
 * quote or line break ("" for a quote inside). */
kiln_status kiln_interp_write_confusion_csv(const kiln_interp *it, const char *const *classes,
                                            const char *path);
/* The confusion matrix as a PNG heat map with the count in every cell (kiln_plot_heatmap,
 * kiln/report.h); title may be NULL. UNSUPPORTED in a build without PLplot. */
kiln_status kiln_interp_plot_confusion(const kiln_interp *it, const char *const *classes, const char *title,
                                       const char *path);
/* top_losses.csv: "rank,index,file,predicted,actual,loss,probability", then one row for each
 * of the min(k, n) top losses (kiln_interp_top_losses): rank from 1, the item's index, its
 * file from item_name(user, index) (item_name NULL, or returning NULL, gives an empty field),
 * the predicted and actual class names (CSV-quoted as above), loss and p_actual as %.9g. */
kiln_status kiln_interp_write_top_losses_csv(const kiln_interp *it, int64_t k, const char *const *classes,
                                             const char *(*item_name)(void *user, int64_t i), void *user,
                                             const char *path);

/* ---- vision (src/apps/vision_interp.c) ---------------------------------------------------- */

/* fastai plot_top_losses: the images of the min(k, n) top losses of split of v (k >= 1; at
 * most 1024 images, kiln_image_grid_png's limit), in
 * [0, 1] without normalization or augmentation, as a PNG grid (kiln_image_grid_png), each
 * labelled "<predicted>/<actual>\n<loss> / <probability of actual>" (%.2f). it must come from
 * predictions over that split in order: it->n is the split's item count and every drawn
 * item's actual class is its label there (an error names the item otherwise); it->c is v's
 * class count. classes NULL takes v's class names. UNSUPPORTED in a build without PLplot. */
kiln_status kiln_vision_plot_top_losses(const kiln_vision_data *v, kiln_data_split split, const kiln_interp *it,
                                        int64_t k, const char *const *classes, const char *path);

#ifdef __cplusplus
}
#endif
#endif
