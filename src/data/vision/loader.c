/* The vision loader: the source's batches made by the generic prefetch ring (src/data/
 * prefetch.c) on p.n_workers threads, p.prefetch batches ahead, and copied into the step arena
 * by kiln_data_get_batch.
 *
 * Determinism: a batch's content depends only on (split, batch) and the source's state (the
 * train order kiln_data_permutation(seed, epoch), seed, epoch, TTA pass), never on which thread
 * made it or when. That state changes only with the ring paused (kiln_prefetch_pause: no
 * batch being made), so a worker never sees it half-written. One consumer thread is assumed.
 *
 * TTA (kiln_vision_data_set_tta, or kiln_data_set_tta_pass): while a pass is set, batches run
 * the transform's training branch on either split, with the pass's own seed and epoch-0
 * counters.
 *
 * Shards (params rank, world; data.h kiln_data_shard): train batches walk v->order, this
 * rank's shard of the epoch's permutation; valid batch position j is item rank + j * world.
 * Item indices stay the data set's, so an item's transform draws do not depend on the rank. */
#include "data/vision/vision_internal.h"

#include <stdio.h>
#include <string.h>

static int64_t bs_of(const kiln_vision_data *v, kiln_data_split split)
{
    return split == KILN_DATA_SPLIT_VALID && v->p.valid_batch_size > 0 ? v->p.valid_batch_size : v->p.batch_size;
}

static int64_t nb_of(const kiln_vision_data *v, kiln_data_split split)
{
    int64_t n = v->n_shard[split], bs = bs_of(v, split);
    if (split == KILN_DATA_SPLIT_TRAIN && v->p.drop_last) return n / bs;
    return (n + bs - 1) / bs;
}

/* Items in batch b of split. */
static int64_t items_in(const kiln_vision_data *v, kiln_data_split split, int64_t b)
{
    int64_t bs = bs_of(v, split), n = v->n_shard[split] - b * bs;
    return n < bs ? n : bs;
}

/* The ring's make: batch b of split into x (B, C, S, S) f32 and y (B) i64. Reads v only. */
static kiln_status make_batch(void *user, kiln_data_split split, int64_t b, void *xv, void *yv)
{
    const kiln_vision_data *v = user;
    float *x = xv;
    int64_t *y = yv;
    size_t item = (size_t)v->c * v->size * v->size;
    int64_t start = b * bs_of(v, split), n = items_in(v, split, b);
    uint64_t seed = v->tta_pass >= 0 ? kiln_vision_tta_seed(v->seed, v->tta_pass) : v->seed;
    int64_t epoch = v->tta_pass >= 0 ? 0 : v->epoch;
    int tfm = v->tta_pass >= 0 ? KILN__TFM_TRAIN : KILN__TFM_SPLIT;
    for (int64_t r = 0; r < n; r++) {
        int64_t i = split == KILN_DATA_SPLIT_TRAIN ? v->order[start + r] : v->p.rank + (start + r) * v->p.world;
        kiln_status st = kiln__vision_make_item(v, split, i, tfm, seed, epoch, true, x + (size_t)r * item);
        if (st) return st;
        y[r] = v->s[split].labels[i];
    }
    return KILN_STATUS_OK;
}

/* ---- kiln_data_ops --------------------------------------------------------------------------- */

static int64_t op_items(void *state, kiln_data_split split) { return ((kiln_vision_data *)state)->n_shard[split]; }
static int64_t op_batches(void *state, kiln_data_split split) { return nb_of(state, split); }

static kiln_status op_set_epoch(void *state, uint64_t seed, int64_t epoch)
{
    kiln_vision_data *v = state;
    if (v->epoch_set && seed == v->seed && epoch == v->epoch) return KILN_STATUS_OK;
    kiln_prefetch_pause(v->loader);
    v->seed = seed;
    v->epoch = epoch;
    if (v->p.shuffle) {
        int64_t n = v->s[KILN_DATA_SPLIT_TRAIN].n;
        kiln_data_permutation(seed, epoch, n, v->perm);
        kiln_data_shard(n, v->p.rank, v->p.world, true, v->perm, v->order); /* world 1: a copy of perm */
    }
    v->epoch_set = true;
    kiln_prefetch_seek(v->loader, KILN_DATA_SPLIT_TRAIN, 0);
    return KILN_STATUS_OK;
}

static kiln_status op_get_batch(void *state, kiln_data_split split, int64_t i, kiln_ctx *ctx, kiln_tensor **x,
                                kiln_tensor **y)
{
    kiln_vision_data *v = state;
    const void *bx, *by;
    kiln_status st = kiln_prefetch_get(v->loader, split, i, &bx, &by);
    if (st) return st;
    int64_t n = items_in(v, split, i);
    kiln_tensor *tx = kiln_empty(ctx, KILN_DTYPE_F32, 4, (int64_t[]){n, v->c, v->size, v->size}); /* (B,C,S,S) */
    kiln_tensor *ty = kiln_empty(ctx, KILN_DTYPE_I64, 1, (int64_t[]){n});                        /* (B) */
    if (tx && ty) {
        memcpy(tx->data, bx, (size_t)n * v->c * v->size * v->size * sizeof(float));
        memcpy(ty->data, by, (size_t)n * sizeof(int64_t));
        *x = tx;
        *y = ty;
    }
    kiln_prefetch_release(v->loader);
    return tx && ty ? KILN_STATUS_OK : KILN_STATUS_NOMEM;
}

static void op_free(void *state) { kiln__vision_destroy(state); }

/* ---- TTA switch ------------------------------------------------------------------------------ */

uint64_t kiln_vision_tta_seed(uint64_t seed, int pass)
{
    /* splitmix64 of the seed and the pass: passes get unrelated Philox keys */
    uint64_t z = seed + 0x9e3779b97f4a7c15ull * (uint64_t)(pass + 1) + 0x7474610000000000ull; /* "tta" */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

kiln_status kiln_vision_data_set_tta(kiln_vision_data *v, int pass)
{
    if (!v || v->magic != KILN__VISION_MAGIC || !v->loader)
        return kiln__err(KILN_STATUS_INVALID, "vision_data_set_tta: not a vision source");
    if (pass < -1) return kiln__err(KILN_STATUS_INVALID, "vision_data_set_tta: pass %d (use -1 for off)", pass);
    if (v->tta_pass != pass) {
        kiln_prefetch_pause(v->loader); /* the next get_batch restarts the ring with the new setting */
        v->tta_pass = pass;
    }
    return KILN_STATUS_OK;
}

static kiln_status op_set_tta_pass(void *state, int pass) { return kiln_vision_data_set_tta(state, pass); }

int kiln_vision_data_tta_pass(const kiln_vision_data *v) { return v ? v->tta_pass : -1; }

const kiln_data_ops kiln__vision_ops = {.n_items = op_items, .n_batches = op_batches, .set_epoch = op_set_epoch,
                                        .get_batch = op_get_batch, .free = op_free, .set_tta_pass = op_set_tta_pass};

/* ---- lifetime ------------------------------------------------------------------------------- */

kiln_prefetch *kiln__vloader_new(kiln_vision_data *v)
{
    int64_t bs = v->p.batch_size > v->p.valid_batch_size ? v->p.batch_size : v->p.valid_batch_size;
    kiln_prefetch_params p = {.n_workers = v->p.n_workers, .n_slots = v->p.prefetch,
                              .x_bytes = (size_t)bs * v->c * v->size * v->size * sizeof(float),
                              .y_bytes = (size_t)bs * sizeof(int64_t),
                              .n_batches = {nb_of(v, KILN_DATA_SPLIT_TRAIN), nb_of(v, KILN_DATA_SPLIT_VALID)}};
    kiln_prefetch *r = kiln_prefetch_new(&p, make_batch, v);
    if (!r) {
        char pre[512];
        snprintf(pre, sizeof pre, "vision: %s: ", v->name);
        kiln__err_prefix(kiln_last_status(), pre);
    }
    return r;
}
