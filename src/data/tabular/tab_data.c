/* fastai's TabularDataLoaders.from_csv: the training CSV read, split (a validation CSV, or
 * valid_pct of the rows with RandomSplitter's rule: the first int(valid_pct * n) of
 * kiln_data_permutation(split_seed, 0) are kept aside, in that order), the procs learned on
 * the training rows and applied to both, and batches from the in-memory tensor dataset (train
 * shuffled per epoch with the short last batch dropped; valid in order, every row). */
#include "data/tabular/tab_internal.h"
#include "data/data_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static size_t file_bytes(const char *path)
{
    struct stat sb;
    return path && !stat(path, &sb) && sb.st_size > 0 ? (size_t)sb.st_size : 0;
}

/* rows as tensors over r's buffers (y (n) i64 or (n, 1) f32). */
static void wrap(const kiln_tab_rows *r, kiln_tensor *x, kiln_tensor *y, bool cls)
{
    kiln_tensor_wrap(x, KILN_DTYPE_F32, 2, (int64_t[]){r->n, r->n_cat + r->n_cont}, r->x);
    if (cls) kiln_tensor_wrap(y, KILN_DTYPE_I64, 1, (int64_t[]){r->n}, r->y_class);
    else kiln_tensor_wrap(y, KILN_DTYPE_F32, 2, (int64_t[]){r->n, 1}, r->y);
}

/* The source kiln_tabular_data_open returns: the tensor dataset's batches, with the processed
 * rows of both splits kept for kiln_tabular_data_rows. */
typedef struct tab_source {
    kiln_data *inner;
    kiln_tab_rows rows[2]; /* by kiln_data_split */
} tab_source;

static int64_t src_n_items(void *s, kiln_data_split sp) { return kiln_data_n_items(((tab_source *)s)->inner, sp); }
static int64_t src_n_batches(void *s, kiln_data_split sp) { return kiln_data_n_batches(((tab_source *)s)->inner, sp); }
static kiln_status src_set_epoch(void *s, uint64_t seed, int64_t epoch)
{
    return kiln_data_set_epoch(((tab_source *)s)->inner, seed, epoch);
}
static kiln_status src_get_batch(void *s, kiln_data_split sp, int64_t i, kiln_ctx *ctx, kiln_tensor **x, kiln_tensor **y)
{
    return kiln_data_get_batch(((tab_source *)s)->inner, sp, i, ctx, x, y);
}
static void src_free(void *p)
{
    tab_source *s = p;
    if (!s) return;
    kiln_data_free(s->inner);
    kiln_tab_rows_free(&s->rows[0]);
    kiln_tab_rows_free(&s->rows[1]);
    free(s);
}
static const kiln_data_ops g_tab_ops = {.n_items = src_n_items, .n_batches = src_n_batches, .set_epoch = src_set_epoch,
                                        .get_batch = src_get_batch, .free = src_free};

const kiln_tab_rows *kiln_tabular_data_rows(const kiln_data *d, kiln_data_split split)
{
    if (!d || (split != KILN_DATA_SPLIT_TRAIN && split != KILN_DATA_SPLIT_VALID)) return NULL;
    if (!kiln__data_freed_by(d, src_free)) return NULL;
    return &((tab_source *)kiln_data_state((kiln_data *)d))->rows[split];
}

kiln_data *kiln_tabular_data_open(const char *train_csv, const char *valid_csv, const kiln_tab_params *p,
                                  kiln_tab_procs **procs, kiln_tab_info *info)
{
    if (procs) *procs = NULL;
    if (!train_csv || !p || !procs) return kiln__errp(KILN_STATUS_INVALID, "tabular_data_open: NULL argument");
    if (p->batch_size < 1 || p->valid_batch_size < 0)
        return kiln__errp(KILN_STATUS_INVALID, "tabular_data_open: batch_size %lld must be >= 1", (long long)p->batch_size);
    if (p->world < 1 || p->rank < 0 || p->rank >= p->world)
        return kiln__errp(KILN_STATUS_INVALID, "tabular_data_open: rank %d and world %d: need world >= 1 and rank in "
                          "[0, world)", p->rank, p->world);
    if (!valid_csv && !(p->valid_pct >= 0 && p->valid_pct < 1))
        return kiln__errp(KILN_STATUS_INVALID, "tabular_data_open: valid_pct %g must be in [0, 1)", p->valid_pct);
    double t0 = kiln__now();
    kiln_table *all = kiln_table_read_csv(train_csv), *tr = NULL, *va = NULL;
    if (!all) return NULL;
    size_t bytes = file_bytes(train_csv);
    double t_read = kiln__now() - t0;
    if (valid_csv) {
        double t1 = kiln__now();
        if (!(va = kiln_table_read_csv(valid_csv))) {
            kiln_table_free(all);
            return NULL;
        }
        t_read += kiln__now() - t1;
        bytes += file_bytes(valid_csv);
        tr = all, all = NULL;
    } else {
        int64_t n = all->n_rows, nv = (int64_t)(p->valid_pct * (double)n); /* int(), as RandomSplitter */
        int64_t *perm = malloc((size_t)n * sizeof *perm);
        if (!perm) {
            kiln_table_free(all);
            return kiln__errp(KILN_STATUS_NOMEM, "tabular_data_open: out of memory");
        }
        kiln_data_permutation(p->split_seed, 0, n, perm);
        if (nv >= n) nv = n - 1;
        tr = kiln_table_rows(all, perm + nv, n - nv);
        va = tr ? kiln_table_rows(all, perm, nv) : NULL;
        free(perm);
        kiln_table_free(all);
        if (!tr || !va) {
            kiln_table_free(tr);
            return NULL;
        }
    }
    kiln_tab_rows rt = {0}, rv = {0};
    kiln_tab_procs *pr = kiln_tab_procs_learn(tr, p);
    kiln_data *d = NULL;
    if (pr && !kiln_tab_procs_apply(pr, tr, true, &rt) && !kiln_tab_procs_apply(pr, va, true, &rv)) {
        kiln_tensor xt, yt, xv, yv;
        bool cls = pr->classification;
        wrap(&rt, &xt, &yt, cls);
        wrap(&rv, &xv, &yv, cls);
        kiln_tensor_data_params dp = kiln_tensor_data_default_params();
        dp.batch_size = p->batch_size;
        dp.valid_batch_size = p->valid_batch_size;
        dp.shuffle = true;
        dp.drop_last = true;
        dp.rank = p->rank, dp.world = p->world;
        kiln_data *inner = kiln_tensor_data_new(&xt, &yt, rv.n ? &xv : NULL, rv.n ? &yv : NULL, &dp);
        tab_source *s = inner ? calloc(1, sizeof *s) : NULL;
        if (inner && !s) kiln__err(KILN_STATUS_NOMEM, "tabular_data_open: out of memory");
        if (s && info) info->n_train = rt.n, info->n_valid = rv.n;
        if (s) {
            s->inner = inner, inner = NULL;
            s->rows[0] = rt, s->rows[1] = rv; /* the source keeps the rows */
            memset(&rt, 0, sizeof rt), memset(&rv, 0, sizeof rv);
            d = kiln_data_new(&g_tab_ops, s); /* frees s on failure */
        }
        kiln_data_free(inner);
    }
    if (info && d) {
        info->seconds = kiln__now() - t0;
        info->mb_per_s = t_read > 0 ? (double)bytes / 1e6 / t_read : 0;
    }
    kiln_tab_rows_free(&rt);
    kiln_tab_rows_free(&rv);
    kiln_table_free(tr);
    kiln_table_free(va);
    if (!d) {
        kiln_tab_procs_free(pr);
        return NULL;
    }
    *procs = pr;
    kiln_clear_error();
    return d;
}
