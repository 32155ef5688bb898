/* Data sources (include/kiln/data.h; the data layer, below learn): the kiln_data wrapper
 * every loader plugs into, the seeded per-epoch permutation, and the in-memory tensor
 * dataset used by tests and small problems. The tensor dataset keeps its own contiguous
 * copies so callers may pass arena tensors; batches are gathered rows copied into the step
 * arena. */
#include "core/internal.h"
#include "kiln/data.h"
#include "data/data_internal.h"

#include <string.h>

struct kiln_data {
    kiln_data_ops ops;
    void *state;
};

const char *kiln_data_split_name(kiln_data_split s) { return s == KILN_DATA_SPLIT_TRAIN ? "train" : "valid"; }

kiln_data *kiln_data_new(const kiln_data_ops *ops, void *state)
{
    if (!ops || !ops->n_batches || !ops->get_batch) {
        if (ops && ops->free) ops->free(state);
        return kiln__errp(KILN_STATUS_INVALID, "data_new: ops need n_batches and get_batch");
    }
    kiln_data *d = calloc(1, sizeof *d);
    if (!d) {
        if (ops->free) ops->free(state);
        return kiln__errp(KILN_STATUS_NOMEM, "data_new: out of memory");
    }
    d->ops = *ops;
    d->state = state;
    return d;
}

void kiln_data_free(kiln_data *d)
{
    if (!d) return;
    if (d->ops.free) d->ops.free(d->state);
    free(d);
}

void *kiln_data_state(kiln_data *d) { return d ? d->state : NULL; }

bool kiln__data_freed_by(const kiln_data *d, void (*free_fn)(void *state)) { return d && free_fn && d->ops.free == free_fn; }

int64_t kiln_data_n_items(const kiln_data *d, kiln_data_split split)
{
    return d && d->ops.n_items ? d->ops.n_items(d->state, split) : 0;
}

int64_t kiln_data_n_batches(const kiln_data *d, kiln_data_split split)
{
    return d ? d->ops.n_batches(d->state, split) : 0;
}

kiln_status kiln_data_set_epoch(kiln_data *d, uint64_t seed, int64_t epoch)
{
    if (!d) return kiln__err(KILN_STATUS_INVALID, "data_set_epoch: data is NULL");
    if (epoch < 0) return kiln__err(KILN_STATUS_INVALID, "data_set_epoch: epoch %lld < 0", (long long)epoch);
    return d->ops.set_epoch ? d->ops.set_epoch(d->state, seed, epoch) : KILN_STATUS_OK;
}

kiln_status kiln_data_get_batch(kiln_data *d, kiln_data_split split, int64_t i, kiln_ctx *ctx, kiln_tensor **x,
                                kiln_tensor **y)
{
    if (!d || !ctx || !x || !y) return kiln__err(KILN_STATUS_INVALID, "data_get_batch: NULL argument");
    int64_t nb = d->ops.n_batches(d->state, split);
    if (i < 0 || i >= nb)
        return kiln__err(KILN_STATUS_INVALID, "data_get_batch: %s batch %lld out of range (%lld batches)",
                         kiln_data_split_name(split), (long long)i, (long long)nb);
    *x = *y = NULL;
    kiln_status st = d->ops.get_batch(d->state, split, i, ctx, x, y);
    if (st == KILN_STATUS_OK && (!*x || !*y))
        return kiln__err(KILN_STATUS_STATE, "data_get_batch: the source returned no tensor for %s batch %lld",
                         kiln_data_split_name(split), (long long)i);
    return st;
}

kiln_status kiln_data_set_tta_pass(kiln_data *d, int pass)
{
    if (!d) return kiln__err(KILN_STATUS_INVALID, "data_set_tta_pass: data is NULL");
    if (pass < -1) return kiln__err(KILN_STATUS_INVALID, "data_set_tta_pass: pass %d (use -1 for off)", pass);
    if (!d->ops.set_tta_pass)
        return kiln__err(KILN_STATUS_UNSUPPORTED, "data_set_tta_pass: the data source has no test-time augmentation "
                                                  "(kiln_data_ops.set_tta_pass; a vision source has it)");
    return d->ops.set_tta_pass(d->state, pass);
}

bool kiln_data_has_tta(const kiln_data *d) { return d && d->ops.set_tta_pass; }

/* Counters for epoch e start at e << 40: a dataset of up to 2^40 items never overlaps the
 * next epoch's block, so each epoch's order is independent of every other's. */
void kiln_data_permutation(uint64_t seed, int64_t epoch, int64_t n, int64_t *out)
{
    for (int64_t i = 0; i < n; i++) out[i] = i;
    uint64_t base = (uint64_t)epoch << 40;
    for (int64_t i = n - 1; i > 0; i--) {
        /* double keeps the draw uniform enough for j in [0, i]; a float has 24 bits */
        double u = kiln_philox_uniform(seed, base + 2 * (uint64_t)i) +
                   kiln_philox_uniform(seed, base + 2 * (uint64_t)i + 1) / 16777216.0;
        int64_t j = (int64_t)(u * (double)(i + 1));
        if (j > i) j = i;
        int64_t t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
}

int64_t kiln_data_shard(int64_t n, int rank, int world, bool pad, const int64_t *order, int64_t *out)
{
    if (world < 1) return kiln__err(KILN_STATUS_INVALID, "data_shard: world %d must be >= 1", world);
    if (rank < 0 || rank >= world)
        return kiln__err(KILN_STATUS_INVALID, "data_shard: rank %d outside [0, world = %d)", rank, world);
    if (n < 0) return kiln__err(KILN_STATUS_INVALID, "data_shard: n %lld must be >= 0", (long long)n);
    if (n == 0) return 0;
    int64_t len = pad ? (n + world - 1) / world : (n - rank + world - 1) / world; /* rank < world: n - rank > -world */
    if (len < 0) len = 0;
    for (int64_t j = 0; out && j < len; j++) {
        int64_t pos = (int64_t)rank + j * world; /* position in the padded order: padded[i] = order[i % n] */
        if (pos >= n) pos %= n;
        out[j] = order ? order[pos] : pos;
    }
    return len;
}

/* ---- in-memory tensor dataset ------------------------------------------------------------- */

typedef struct tsplit {
    unsigned char *x, *y; /* contiguous copies: (n, x_item) f32, (n, y_item) of y_dtype */
    int64_t n;            /* items of the whole split */
    int64_t n_shard;      /* items this rank reads (n when world is 1) */
    int64_t *perm;        /* (n) train: the epoch's order of the whole split; NULL for valid */
    int64_t *order;       /* (n_shard) item of each batch position: train the shard of perm,
                             valid the rank's interleaved items; NULL for valid when world is 1 */
} tsplit;

typedef struct tdata {
    tsplit s[2];
    kiln_tensor_data_params p;
    int x_ndim, y_ndim;                   /* item dims (shape without N) */
    int64_t x_shape[KILN_MAX_DIMS], y_shape[KILN_MAX_DIMS];
    int64_t x_item, y_item;               /* elements per item */
    kiln_dtype y_dtype;
} tdata;

kiln_tensor_data_params kiln_tensor_data_default_params(void)
{
    return (kiln_tensor_data_params){.batch_size = 64, .valid_batch_size = 0, .shuffle = true, .drop_last = true,
                                     .rank = 0, .world = 1};
}

static int64_t td_items(void *state, kiln_data_split split) { return ((tdata *)state)->s[split].n_shard; }

static int64_t td_bs(const tdata *t, kiln_data_split split)
{
    return split == KILN_DATA_SPLIT_VALID && t->p.valid_batch_size > 0 ? t->p.valid_batch_size : t->p.batch_size;
}

static int64_t td_batches(void *state, kiln_data_split split)
{
    tdata *t = state;
    int64_t n = t->s[split].n_shard, bs = td_bs(t, split);
    if (split == KILN_DATA_SPLIT_TRAIN && t->p.drop_last) return n / bs;
    return (n + bs - 1) / bs;
}

static kiln_status td_set_epoch(void *state, uint64_t seed, int64_t epoch)
{
    tdata *t = state;
    tsplit *s = &t->s[KILN_DATA_SPLIT_TRAIN];
    if (!t->p.shuffle) return KILN_STATUS_OK;
    kiln_data_permutation(seed, epoch, s->n, s->perm);
    kiln_data_shard(s->n, t->p.rank, t->p.world, true, s->perm, s->order);
    return KILN_STATUS_OK;
}

static kiln_status td_get(void *state, kiln_data_split split, int64_t i, kiln_ctx *ctx, kiln_tensor **x,
                          kiln_tensor **y)
{
    tdata *t = state;
    tsplit *s = &t->s[split];
    int64_t bs = td_bs(t, split), start = i * bs, b = s->n_shard - start < bs ? s->n_shard - start : bs;
    int64_t xs[KILN_MAX_DIMS], ys[KILN_MAX_DIMS];
    xs[0] = ys[0] = b;
    memcpy(xs + 1, t->x_shape, (size_t)t->x_ndim * sizeof *xs);
    memcpy(ys + 1, t->y_shape, (size_t)t->y_ndim * sizeof *ys);
    kiln_tensor *bx = kiln_empty(ctx, KILN_DTYPE_F32, t->x_ndim + 1, xs); /* (B, ...) */
    kiln_tensor *by = kiln_empty(ctx, t->y_dtype, t->y_ndim + 1, ys);    /* (B, ...) */
    if (!bx || !by) return KILN_STATUS_NOMEM;
    size_t xb = (size_t)t->x_item * sizeof(float), yb = (size_t)t->y_item * kiln_dtype_size(t->y_dtype);
    for (int64_t r = 0; r < b; r++) {
        int64_t src = s->order ? s->order[start + r] : start + r;
        memcpy((unsigned char *)bx->data + (size_t)r * xb, s->x + (size_t)src * xb, xb);
        memcpy((unsigned char *)by->data + (size_t)r * yb, s->y + (size_t)src * yb, yb);
    }
    *x = bx;
    *y = by;
    return KILN_STATUS_OK;
}

static void td_free(void *state)
{
    tdata *t = state;
    if (!t) return;
    for (int k = 0; k < 2; k++) free(t->s[k].x), free(t->s[k].y), free(t->s[k].perm), free(t->s[k].order);
    free(t);
}

/* Copies any-strided t into a fresh contiguous malloc'd buffer. */
static unsigned char *copy_out(const kiln_tensor *t)
{
    size_t bytes = (size_t)kiln_numel(t) * kiln_dtype_size(t->dtype);
    unsigned char *buf = malloc(bytes ? bytes : 1);
    if (!buf) return NULL;
    kiln_tensor dst;
    kiln_tensor_wrap(&dst, t->dtype, t->ndim, t->shape, buf);
    kiln__strided_copy(&dst, t);
    return buf;
}

static kiln_status check_pair(const char *what, const kiln_tensor *x, const kiln_tensor *y)
{
    if (!x || !y) return kiln__err(KILN_STATUS_INVALID, "tensor_data: %s needs both x and y", what);
    if (x->dtype != KILN_DTYPE_F32)
        return kiln__err(KILN_STATUS_INVALID, "tensor_data: %s x must be f32, got %s", what, kiln_dtype_name(x->dtype));
    if (y->dtype != KILN_DTYPE_F32 && y->dtype != KILN_DTYPE_I64)
        return kiln__err(KILN_STATUS_INVALID, "tensor_data: %s y must be f32 or i64, got %s", what,
                         kiln_dtype_name(y->dtype));
    if (x->ndim < 1 || y->ndim < 1 || x->shape[0] != y->shape[0])
        return kiln__err(KILN_STATUS_INVALID, "tensor_data: %s x and y need the same first dim (items)", what);
    return KILN_STATUS_OK;
}

static bool same_item(const kiln_tensor *a, const kiln_tensor *b)
{
    if (a->ndim != b->ndim || a->dtype != b->dtype) return false;
    for (int d = 1; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

kiln_data *kiln_tensor_data_new(const kiln_tensor *x_train, const kiln_tensor *y_train,
                                const kiln_tensor *x_valid, const kiln_tensor *y_valid,
                                const kiln_tensor_data_params *p)
{
    kiln_tensor_data_params prm = p ? *p : kiln_tensor_data_default_params();
    if (prm.batch_size < 1 || prm.valid_batch_size < 0)
        return kiln__errp(KILN_STATUS_INVALID, "tensor_data: batch_size %lld must be >= 1",
                          (long long)prm.batch_size);
    if (prm.world < 1) return kiln__errp(KILN_STATUS_INVALID, "tensor_data: world %d must be >= 1", prm.world);
    if (prm.rank < 0 || prm.rank >= prm.world)
        return kiln__errp(KILN_STATUS_INVALID, "tensor_data: rank %d outside [0, world = %d)", prm.rank, prm.world);
    if (check_pair("train", x_train, y_train)) return NULL;
    bool has_valid = x_valid || y_valid;
    if (has_valid) {
        if (check_pair("valid", x_valid, y_valid)) return NULL;
        if (!same_item(x_train, x_valid) || !same_item(y_train, y_valid))
            return kiln__errp(KILN_STATUS_INVALID, "tensor_data: train and valid items differ in shape or dtype");
    }
    tdata *t = calloc(1, sizeof *t);
    if (!t) return kiln__errp(KILN_STATUS_NOMEM, "tensor_data: out of memory");
    t->p = prm;
    t->x_ndim = x_train->ndim - 1;
    t->y_ndim = y_train->ndim - 1;
    t->x_item = t->y_item = 1;
    for (int d = 1; d < x_train->ndim; d++) t->x_shape[d - 1] = x_train->shape[d], t->x_item *= x_train->shape[d];
    for (int d = 1; d < y_train->ndim; d++) t->y_shape[d - 1] = y_train->shape[d], t->y_item *= y_train->shape[d];
    t->y_dtype = y_train->dtype;
    const kiln_tensor *xs[2] = {x_train, x_valid}, *ys[2] = {y_train, y_valid};
    for (int k = 0; k < (has_valid ? 2 : 1); k++) {
        tsplit *s = &t->s[k];
        bool train = k == KILN_DATA_SPLIT_TRAIN;
        s->n = xs[k]->shape[0];
        s->n_shard = kiln_data_shard(s->n, prm.rank, prm.world, train, NULL, NULL);
        s->x = copy_out(xs[k]);
        s->y = copy_out(ys[k]);
        if (train) s->perm = malloc((size_t)(s->n ? s->n : 1) * sizeof *s->perm);
        if (train || prm.world > 1) s->order = malloc((size_t)(s->n_shard ? s->n_shard : 1) * sizeof *s->order);
        if (!s->x || !s->y || (train && !s->perm) || ((train || prm.world > 1) && !s->order)) {
            long long n = (long long)s->n;
            td_free(t);
            return kiln__errp(KILN_STATUS_NOMEM, "tensor_data: out of memory copying %lld items", n);
        }
        for (int64_t i = 0; s->perm && i < s->n; i++) s->perm[i] = i;
        if (s->order) kiln_data_shard(s->n, prm.rank, prm.world, train, s->perm, s->order);
    }
    kiln_data_ops ops = {.n_items = td_items, .n_batches = td_batches, .set_epoch = td_set_epoch,
                         .get_batch = td_get, .free = td_free};
    return kiln_data_new(&ops, t);
}
