/* kiln tabular: tables for fastai's tabular and collab applications, from a CSV file to
 * batches.
 *
 *   kiln_table         a CSV file read whole (RFC 4180, header row; an empty field is a missing
 *                      value), cells kept as text; errors name the file and line
 *   kiln_tab_procs     what is learned on the training rows and applied unchanged to
 *                      validation, test and prediction rows (fastai's procs):
 *                        column kinds: continuous or categorical (fastai cont_cat_split:
 *                          numbers with a fraction, or integers with more than max_card
 *                          distinct values, are continuous; other columns categorical),
 *                          overridable by name; date columns expanded (add_datepart)
 *                        Categorify: categories sorted (numerically when every value is a
 *                          number), code 0 = "#na#" for missing and unseen values
 *                        FillMissing: a continuous column with missing training values gets
 *                          the training median and a categorical "<name>_na" column
 *                          (false / true); a missing value in a continuous column that had
 *                          none in training is an error naming it (fastai's assert)
 *                        Normalize: (x - mean) / (std + 1e-7), population std (ddof 0)
 *                        the target: regression (optionally on its log) or classes
 *   kiln_tab_rows      processed rows: x (n, n_cat + n_cont) f32 and the target
 *
 * A batch x packs what fastai hands a TabularModel as (x_cat, x_cont) into one f32 tensor:
 * columns 0..n_cat-1 hold the category codes (exact integers below 2^24, checked), the next
 * n_cont the normalised continuous values. y is (B) i64 class indices for classification,
 * (B, 1) f32 for regression. Collaborative filtering is a table of two categorical columns
 * (user, item) and a regression target (the rating), as fastai's CollabDataLoaders. */
#ifndef KILN_TABULAR_H
#define KILN_TABULAR_H

#include "kiln/core.h"
#include "kiln/data.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- tables ---------------------------------------------------------------------------------- */

typedef struct kiln_table kiln_table;

/* The whole CSV at path (header row, separator ','). Errors (IO / FORMAT) name the file and
 * the line: unbalanced quotes, a ragged row, an empty file or one with a header only, a column
 * named twice (both positions named), an empty column name. */
kiln_table *kiln_table_read_csv(const char *path);
kiln_table *kiln_table_read_csv_buffer(const char *name, const void *data, size_t len);
void kiln_table_free(kiln_table *t);

const char *kiln_table_name(const kiln_table *t); /* the path or buffer name */
int64_t kiln_table_n_rows(const kiln_table *t);
int kiln_table_n_cols(const kiln_table *t);
const char *kiln_table_col_name(const kiln_table *t, int j);
int kiln_table_col(const kiln_table *t, const char *name);      /* -1 when none */
/* Row i's field j (NUL-terminated); NULL when the field is empty (a missing value). */
const char *kiln_table_cell(const kiln_table *t, int64_t i, int j);
int64_t kiln_table_line(const kiln_table *t, int64_t i);        /* the line row i starts on (1-based) */
/* A table of rows[0..n) of t (copied; t may be freed after). */
kiln_table *kiln_table_rows(const kiln_table *t, const int64_t *rows, int64_t n);

/* ---- procs ----------------------------------------------------------------------------------- */

typedef enum kiln_tab_task {
    KILN_TAB_AUTO = 0,          /* regression when every target value is a number, else classes */
    KILN_TAB_REGRESSION,
    KILN_TAB_CLASSIFICATION,
} kiln_tab_task;

typedef struct kiln_tab_params {
    const char *target;         /* the dependent column; required */
    kiln_tab_task task;         /* KILN_TAB_AUTO */
    bool log_target;            /* regression on log(target); a target <= 0 is an error */
    /* NULL-terminated lists of column names (NULL: none). A name that is not a column, or one
     * listed twice, is INVALID naming it. */
    const char *const *cat;     /* categorical whatever their values */
    const char *const *cont;    /* continuous (every value must be a number) */
    const char *const *date;    /* dates, expanded by add_datepart (also found on their own:
                                   a column whose every value reads as YYYY-MM-DD[ T]HH:MM[:SS]) */
    const char *const *skip;    /* left out */
    bool only_listed;           /* use only the cat / cont / date columns (collab), not the rest */
    int max_card;               /* 20 (fastai cont_cat_split) */
    double valid_pct;           /* without a validation file: share of rows kept aside, 0.2 */
    uint64_t split_seed;        /* 42: the rows kept aside are a kiln_data_permutation(seed, 0) */
    int64_t batch_size;         /* 64 */
    int64_t valid_batch_size;   /* 0: batch_size */
    int rank, world;            /* 0, 1: batches are this rank's shard of world (data.h,
                                   kiln_data_shard, through kiln_tensor_data_params); the rows
                                   (kiln_tabular_data_rows) stay the whole split's */
} kiln_tab_params;

kiln_tab_params kiln_tab_default_params(void);

typedef struct kiln_tab_procs kiln_tab_procs;

/* Learns the procs on t's rows (the training split). Errors name the table and the column (and
 * the line of the first bad value): a target that is missing in a row or, for regression, not a
 * number; a classification target with one class; a forced continuous column with a value that
 * is not a number; no input column left. */
kiln_tab_procs *kiln_tab_procs_learn(const kiln_table *t, const kiln_tab_params *p);
void kiln_tab_procs_free(kiln_tab_procs *pr);

/* The columns the model sees: categorical ones first (in table order, then the _na columns,
 * then date parts), continuous ones after. Exactly: categorical = the table's categorical
 * columns (table order), the _na columns of its continuous columns, the date parts'
 * categorical columns (date columns in table order, parts in add_datepart's order: Year Month
 * Week Day Dayofweek Dayofyear Is_month_end Is_month_start Is_quarter_end Is_quarter_start
 * Is_year_end Is_year_start Elapsed), the _na columns of the date parts' continuous ones;
 * continuous = the table's continuous columns, then the date parts' continuous ones.
 * A date part is named <prefix><Part>, prefix the column's name less a final "date" / "Date"
 * (fastai); its kind follows cont_cat_split: Is_* categorical ("False" / "True"), Elapsed
 * continuous (float in fastai), the integer parts continuous above max_card distinct values or
 * when a date is missing. An _na column's categories are "#na#", "False", "True": code 1 when
 * the value is present, 2 when missing (0 never occurs). Kinds are decided on the rows given
 * to kiln_tab_procs_learn (the training rows); a column with no value is categorical. */
int kiln_tab_procs_n_cat(const kiln_tab_procs *pr);
int kiln_tab_procs_n_cont(const kiln_tab_procs *pr);
const char *kiln_tab_procs_cat_name(const kiln_tab_procs *pr, int k);
const char *kiln_tab_procs_cont_name(const kiln_tab_procs *pr, int k);
/* Categories of categorical column k, "#na#" (code 0) included. */
int64_t kiln_tab_procs_cardinality(const kiln_tab_procs *pr, int k);
const char *kiln_tab_procs_category(const kiln_tab_procs *pr, int k, int64_t code); /* NULL out of range */
/* The code of value in column k (0 for NULL, missing or unseen; for an _na column, value is
 * the source column's: 1 when not NULL, 2 when NULL). */
int64_t kiln_tab_procs_code(const kiln_tab_procs *pr, int k, const char *value);
/* Continuous column k's training median (fill value), mean and std (Normalize). */
void kiln_tab_procs_cont_stats(const kiln_tab_procs *pr, int k, double *median, double *mean, double *std);
bool kiln_tab_procs_has_na_col(const kiln_tab_procs *pr, int cont_k); /* FillMissing added <name>_na */
const char *kiln_tab_procs_target(const kiln_tab_procs *pr);
bool kiln_tab_procs_is_classification(const kiln_tab_procs *pr);
bool kiln_tab_procs_log_target(const kiln_tab_procs *pr);
int64_t kiln_tab_procs_n_classes(const kiln_tab_procs *pr); /* 0 for regression */
const char *kiln_tab_procs_class(const kiln_tab_procs *pr, int64_t i);
/* The training target's minimum and maximum (after log): a y_range a user may want. NaN for
 * classification. */
void kiln_tab_procs_target_range(const kiln_tab_procs *pr, double *lo, double *hi);

/* Processed rows. y_class (classification) or y (regression, log applied) is NULL when the
 * rows were made without the target. */
typedef struct kiln_tab_rows {
    int64_t n;
    int n_cat, n_cont;
    float *x;          /* (n, n_cat + n_cont): codes, then normalised values */
    int64_t *y_class;  /* (n) */
    float *y;          /* (n) */
} kiln_tab_rows;
void kiln_tab_rows_free(kiln_tab_rows *r);

/* pr applied to t (which needs every input column by name; other columns are ignored, the
 * target only with_target). Unseen categories get code 0 (fastai); errors name the table, the
 * line and the column: a missing input column, a continuous value that is not a number, a
 * missing continuous value in a column without _na, a target value that is missing, not a
 * number (regression), <= 0 with log_target, or a class the training rows did not have. */
kiln_status kiln_tab_procs_apply(const kiln_tab_procs *pr, const kiln_table *t, bool with_target, kiln_tab_rows *out);

/* As JSON text (malloc'd) and back; saved with a model (kiln writes DIR/procs.json atomically).
 * Loading checks every field and names the one at fault (name: the file, for messages). */
char *kiln_tab_procs_to_json(const kiln_tab_procs *pr);
kiln_tab_procs *kiln_tab_procs_from_json(const char *text, size_t len, const char *name);
kiln_status kiln_tab_procs_save(const kiln_tab_procs *pr, const char *path);
kiln_tab_procs *kiln_tab_procs_load(const char *path);

/* ---- batches ----------------------------------------------------------------------------------- */

typedef struct kiln_tab_info {
    int64_t n_train, n_valid;
    double seconds;             /* reading and processing */
    double mb_per_s;            /* CSV bytes read per second */
} kiln_tab_info;

/* fastai TabularDataLoaders.from_csv: train_csv read, split (valid_csv, or valid_pct of its
 * rows with split_seed: the first int(valid_pct * n) (fastai RandomSplitter's cut) of kiln_data_permutation(split_seed, 0,
 * n) are the validation rows and the rest the training rows, both in the permutation's order,
 * as fastai's RandomSplitter), procs learned on the training rows (*procs, free it) and
 * applied to both; batches as above (train shuffled per epoch, the short last train batch
 * dropped as fastai's train loader does). info may be NULL. */
kiln_data *kiln_tabular_data_open(const char *train_csv, const char *valid_csv, const kiln_tab_params *p,
                                  kiln_tab_procs **procs, kiln_tab_info *info);
/* The processed rows of a split of a source kiln_tabular_data_open made (every row, in the
 * split's order: the file's with valid_csv, else the permutation's; the train split's dropped
 * last batch included); NULL for another source. Valid while d lives. */
const kiln_tab_rows *kiln_tabular_data_rows(const kiln_data *d, kiln_data_split split);

#ifdef __cplusplus
}
#endif
#endif
