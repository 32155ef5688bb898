/* kiln data: where batches come from. A kiln_data is a source with two splits (train and
 * valid) that hands out batch i of a split as x, y tensors in the context's step arena, so
 * the Learner's per-step rewind frees them. Any loader (in-memory tensors here; image
 * folders, text and tables later) plugs in through kiln_data_ops.
 *
 * Shuffling is a pure function of (seed, epoch): kiln_data_set_epoch(d, seed, e) fixes the
 * order of the train split for epoch e, so a run is reproducible and can be resumed at any
 * epoch without replaying the earlier ones. The valid split is never shuffled (fastai). */
#ifndef KILN_DATA_H
#define KILN_DATA_H

#include "kiln/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kiln_data_split {
    KILN_DATA_SPLIT_TRAIN = 0,
    KILN_DATA_SPLIT_VALID = 1,
} kiln_data_split;

const char *kiln_data_split_name(kiln_data_split s); /* "train", "valid" */

/* A source's behaviour. state is the source's own pointer (given to kiln_data_new).
 *   n_items, n_batches: per split (0 for an empty split; valid may be empty); a sharded
 *              source (kiln_data_shard) counts its shard's items and batches.
 *   set_epoch: fix the train order for epoch `epoch` from seed (may be NULL: no shuffling).
 *   get_batch: batch i in [0, n_batches) of split, x (B, ...) and y (B, ...) made in ctx's
 *              step arena (never requiring grad); returns OK or an error with a message.
 *   free: releases state (may be NULL).
 *   set_tta_pass: test-time augmentation (kiln_learner_tta): pass k >= 0 makes the batches of
 *              either split with the source's training augmentation, drawn deterministically
 *              for pass k; -1 goes back to plain batches. May be NULL: no TTA. */
typedef struct kiln_data_ops {
    int64_t (*n_items)(void *state, kiln_data_split split);
    int64_t (*n_batches)(void *state, kiln_data_split split);
    kiln_status (*set_epoch)(void *state, uint64_t seed, int64_t epoch);
    kiln_status (*get_batch)(void *state, kiln_data_split split, int64_t i, kiln_ctx *ctx, kiln_tensor **x,
                             kiln_tensor **y);
    void (*free)(void *state);
    kiln_status (*set_tta_pass)(void *state, int pass);
} kiln_data_ops;

typedef struct kiln_data kiln_data;

/* Wraps a source; ops is copied, state is owned from now on (freed by ops->free in
 * kiln_data_free, also when this call fails). NULL + message on failure. */
kiln_data *kiln_data_new(const kiln_data_ops *ops, void *state);
void kiln_data_free(kiln_data *d);
void *kiln_data_state(kiln_data *d);
/* Items of split this data hands out: the shard's count for a sharded source (world > 1). */
int64_t kiln_data_n_items(const kiln_data *d, kiln_data_split split);
int64_t kiln_data_n_batches(const kiln_data *d, kiln_data_split split);
kiln_status kiln_data_set_epoch(kiln_data *d, uint64_t seed, int64_t epoch);
/* INVALID + message when i is out of range. */
kiln_status kiln_data_get_batch(kiln_data *d, kiln_data_split split, int64_t i, kiln_ctx *ctx, kiln_tensor **x,
                                kiln_tensor **y);
/* Test-time augmentation pass (ops.set_tta_pass): pass >= 0 on, -1 off. UNSUPPORTED + message
 * for a source without TTA passes; kiln_data_has_tta tells beforehand. */
kiln_status kiln_data_set_tta_pass(kiln_data *d, int pass);
bool kiln_data_has_tta(const kiln_data *d);

/* The permutation of 0..n-1 that epoch `epoch` uses under seed: Fisher-Yates driven by
 * Philox(seed, epoch-derived counters). Pure; loaders share it so every source shuffles
 * the same way. out has n elements. */
void kiln_data_permutation(uint64_t seed, int64_t epoch, int64_t n, int64_t *out);

/* ---- shards for data-parallel training (issue 13) ------------------------------------------ *
 * With `world` processes, rank r in [0, world) reads its own shard of each split, as
 * PyTorch's DistributedSampler does:
 *   train  the epoch's order (kiln_data_permutation, the same on every rank) padded by
 *          repeating its first elements to total = ceil(n / world) * world items
 *          (padded[i] = order[i % n]); rank r takes positions r, r + world, r + 2 world, ...
 *          of it, ceil(n / world) items, and batches them in that order with its own batch
 *          size b (drop_last applies to the shard).
 *   valid  no padding: rank r takes items r, r + world, ... of the split, in order, so the
 *          ranks' shards partition the split exactly and per-rank loss and metric sums add up
 *          to the one-process validation.
 * Every rank has the same number of train items (ceil(n / world)) and so of train batches;
 * valid shards differ by at most one item, so their batch counts may differ and a rank's
 * valid shard is empty when the split has fewer than world items (a learner must not run a
 * collective per valid batch). Both splits keep the data set's item indices, so an item's
 * augmentation draws (vision: kiln_vision_item_counter) do not depend on rank or world.
 * The equivalence the data-parallel learner relies on: the union over ranks of train batch k
 * (per-rank batch b) is the set of items at positions world*k*b .. world*(k+1)*b - 1 of the
 * padded order. For every k with world*(k+1)*b <= n that is exactly batch k of a one-rank run
 * with batch world*b (the same rows as a set; ranks interleave them). Later batches hold the
 * padding: with n divisible by world*b the runs match batch for batch; otherwise the sharded
 * run's last batch may repeat early items of the order and, with drop_last, the sharded run
 * may have one batch more than the one-rank run (ceil(n / world) / b against n / (world*b)).
 * world 1 is the whole split in its own order: bit for bit the unsharded data.
 *
 * kiln_data_shard: the item indices of rank's shard of an n-item split, into out (the shard's
 * length: ceil(n / world) with pad, else the count of r + k*world < n; 0 when n is 0; out may
 * be NULL to ask the length only). order (n) is the split's order (NULL: 0..n-1); pad selects
 * the train rule above, !pad the valid rule. Returns the shard's length, or a negative status
 * (INVALID + message naming the field: world < 1, rank outside [0, world), n < 0).
 * Tabular and collab sources are tensor data underneath and shard through kiln_tab_params'
 * rank and world. Text sources (kiln/text.h) take rank and world in their params and split each
 * global batch instead: the language model a batch's rows, the classifier a batch's documents
 * (its valid split by the valid rule above). */
int64_t kiln_data_shard(int64_t n, int rank, int world, bool pad, const int64_t *order, int64_t *out);

/* ---- prefetch ring ------------------------------------------------------------------------ *
 * For a source whose batches cost time to make (decoding, augmentation): n_slots batch
 * buffers that n_workers threads (pthreads) fill ahead of the consumer, in order. After a
 * request for batch i of a split the ring makes i+1, i+2, ... of that split and, after the
 * last train batch, the valid split from 0 (the Learner validates next). A request it did not
 * foresee (the other split, a jump back or ahead) drops the scheduled batches and starts again
 * from the request.
 *   make(user, split, batch, x, y) writes the batch into x (x_bytes) and y (y_bytes). It runs
 *   on the worker threads, several at once for different batches, so it may read but not
 *   write shared state, and the batch must depend only on (split, batch) and that state.
 *   The state (a new epoch's order, a TTA pass) may change only between kiln_prefetch_pause
 *   and the next kiln_prefetch_get or _seek. An error make reports (kiln_error) comes back
 *   from kiln_prefetch_get for that batch, "prefetch: train batch 3: <make's message>".
 * n_workers 0: no threads; make runs inside kiln_prefetch_get on the caller's thread.
 * One consumer thread calls get / release / pause / seek. The workers block every signal
 * (a Ctrl-C handler runs on the consumer's thread). */
typedef struct kiln_prefetch kiln_prefetch;
typedef kiln_status (*kiln_prefetch_make_fn)(void *user, kiln_data_split split, int64_t batch, void *x, void *y);

typedef struct kiln_prefetch_params {
    int n_workers;            /* threads, 0..64; 0: synchronous */
    int n_slots;              /* batches made ahead with workers, 2..64 (smaller: 2) */
    size_t x_bytes, y_bytes;  /* one slot's buffers: the largest batch's x and y */
    int64_t n_batches[2];     /* per split (indexed by kiln_data_split) */
} kiln_prefetch_params;

/* NULL + message on failure (bad params, out of memory, a thread that cannot start). */
kiln_prefetch *kiln_prefetch_new(const kiln_prefetch_params *p, kiln_prefetch_make_fn make, void *user);
/* Stops the workers (a running make finishes first) and frees the buffers. */
void kiln_prefetch_free(kiln_prefetch *r);
/* Waits for batch `batch` of split and points x, y at its buffers, which stay valid until
 * kiln_prefetch_release or the next get / free. INVALID for a batch out of range; make's
 * error naming the split and batch. */
kiln_status kiln_prefetch_get(kiln_prefetch *r, kiln_data_split split, int64_t batch, const void **x,
                              const void **y);
/* Hands the batch from the last get back to the ring (no-op when none is held). */
void kiln_prefetch_release(kiln_prefetch *r);
/* Drops the scheduled batches and waits until no make is running: the caller may then change
 * the state make reads. Prefetching resumes at the next get or seek. */
void kiln_prefetch_pause(kiln_prefetch *r);
/* Starts making batches from (split, batch) now, ahead of the get that will ask for it (a
 * new epoch: seek to train batch 0 right after changing the order). */
void kiln_prefetch_seek(kiln_prefetch *r, kiln_data_split split, int64_t batch);

/* ---- in-memory tensor dataset ------------------------------------------------------------ *
 * x (N, ...) f32 features and y (N) i64 class indices, or y (N, ...) f32 targets (regression,
 * multi-label). Batches are rows of the (shuffled) train order / valid in order; the last
 * batch is short unless drop_last (train only; valid keeps every item).
 * With world > 1 each split is this rank's shard (kiln_data_shard: the train order padded and
 * interleaved, the valid split interleaved without padding), and kiln_data_n_items and
 * kiln_data_n_batches count the shard's items and batches, not the whole split's. */
typedef struct kiln_tensor_data_params {
    int64_t batch_size;       /* 64 */
    int64_t valid_batch_size; /* 0 = batch_size */
    bool shuffle;             /* true: train order from kiln_data_set_epoch */
    bool drop_last;           /* true: drop the short last train batch (fastai's train dl) */
    int rank, world;          /* 0, 1: this process's shard of world (kiln_data_shard);
                                 INVALID unless 0 <= rank < world */
} kiln_tensor_data_params;

kiln_tensor_data_params kiln_tensor_data_default_params(void);
/* Copies the tensors (any strides; they may live in the step arena). x_valid/y_valid may be
 * NULL for no valid split. The splits must agree on the item shape of x and y and dtypes. */
kiln_data *kiln_tensor_data_new(const kiln_tensor *x_train, const kiln_tensor *y_train,
                                const kiln_tensor *x_valid, const kiln_tensor *y_valid,
                                const kiln_tensor_data_params *p);

#ifdef __cplusplus
}
#endif
#endif
