/* kiln learn: the Learner, fastai's training loop. It joins a model (nn.h), a data source
 * (data.h), a loss, an optimizer (optim.h), metrics and callbacks, and trains with any
 * schedule (sched.h): iteration i of a fit runs with kiln_sched_at(sched, i) scaled by each
 * layer group's lr multiplier, and the recorder keeps exactly those values.
 *
 * One training step (batch):
 *   rewind the step arena to the mark taken at fit start; get_batch; set every group's
 *   lr = sched_lr * lr_mult[g] and mom = sched_mom; begin_batch; forward; loss; after_loss;
 *   backward; after_backward; clip (if clip > 0); optimizer step; after_step; zero_grad;
 *   record; end_batch. The loss and running statistics (after after_loss), the gradients
 *   (after after_backward) and the parameters (after the step) are checked for NaN and
 *   infinity: see kiln_nan_policy.
 * A callback may set state->skip_batch (in begin_batch, after_loss or after_backward): the
 * rest of the step up to end_batch is skipped (no backward/step), grads are zeroed and the
 * batch is not recorded; end_batch still runs. state->stop_training ends the fit: set during
 * an epoch's training (begin_epoch .. end_batch) it also skips the rest of that batch as
 * skip_batch does, and the cut-short epoch gets no validation, no epoch row and no
 * end_epoch; set in end_epoch (early stopping) no further epoch starts. end_fit always runs.
 * An epoch: kiln_data_set_epoch(seed, epoch); begin_epoch; train batches; validation (valid
 * loss + metrics); record the epoch row; end_epoch (which can read valid_loss and metrics).
 *
 * Ownership: the learner borrows ctx, model and data (they must outlive it). It borrows the
 * optimizer given to kiln_learner_new, or creates and owns fastai's default Adam when NULL.
 * It owns its callbacks' user data when they come with a free function, its recorder and
 * its progress display. Tensors the learner hands out live in the step arena. */
#ifndef KILN_LEARN_H
#define KILN_LEARN_H

#include "kiln/core.h"
#include "kiln/data.h"
#include "kiln/dist.h"
#include "kiln/nn.h"
#include "kiln/optim.h"
#include "kiln/report.h"
#include "kiln/sched.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_learner kiln_learner;
typedef struct kiln_recorder kiln_recorder;

/* ---- loss ---------------------------------------------------------------------------------- */

/* A custom loss: out (B, ...) model output, y (B, ...) targets -> one-element loss tensor
 * (mean over the batch) in the step arena, or NULL + message. */
typedef kiln_tensor *(*kiln_loss_fn)(kiln_ctx *ctx, kiln_tensor *out, kiln_tensor *y, void *user);

typedef enum kiln_loss_kind {
    KILN_LOSS_KIND_CROSS_ENTROPY = 0, /* out (B, C) logits, y (B) i64; preds = softmax */
    KILN_LOSS_KIND_MSE,               /* out and y same shape f32; preds = out */
    KILN_LOSS_KIND_BCE_WITH_LOGITS,   /* out and y same shape f32 in [0, 1]; preds = sigmoid */
    KILN_LOSS_KIND_CUSTOM,            /* fn; preds = out */
} kiln_loss_kind;

typedef struct kiln_loss {
    kiln_loss_kind kind;
    float label_smoothing; /* cross-entropy only, 0 (fastai LabelSmoothingCrossEntropy: 0.1) */
    kiln_loss_fn fn;       /* custom only */
    void *user;            /* given to fn */
} kiln_loss;

/* ---- metrics (src/learn/metrics.c) ----------------------------------------------------------- *
 * Metrics accumulate over a whole split and are computed once at its end, as fastai's
 * AccumMetric does: RMSE = sqrt(sum of squared errors / n), F1 from the summed tp/fp/fn,
 * never a mean of batch values. Perplexity = exp(mean loss per item). */
typedef enum kiln_metric_kind {
    KILN_METRIC_KIND_ACCURACY = 0, /* argmax(out, 1) == y; out (B, C), y (B) i64 */
    KILN_METRIC_KIND_ERROR_RATE,   /* 1 - accuracy */
    KILN_METRIC_KIND_TOP_K,        /* y among the k largest outputs (ties: lower index first) */
    KILN_METRIC_KIND_RMSE,         /* out, y f32 of the same numel per item */
    KILN_METRIC_KIND_MAE,
    KILN_METRIC_KIND_F1,           /* binary: positives are class 1 (argmax of (B, 2)) or
                                      out > threshold for one output per item (logit: 0) */
    KILN_METRIC_KIND_PERPLEXITY,   /* exp of the batch-size-weighted mean loss */
    KILN_METRIC_KIND_CUSTOM,
    KILN_METRIC_KIND_COUNT
} kiln_metric_kind;

/* Running sums of a metric over a split. */
typedef struct kiln_metric_acc {
    double sum[4];
    int64_t n;
} kiln_metric_acc;

typedef struct kiln_metric {
    kiln_metric_kind kind;
    const char *name;  /* column name; NULL = the default: "accuracy", "error_rate",
                          "top_k_accuracy", "rmse", "mae", "f1_score", "perplexity" */
    int k;             /* top-k, 5 */
    float threshold;   /* F1 with one output per item, 0 (a logit) */
    /* custom: add one batch to acc (out (B, ...) raw model output, y (B, ...), loss the
     * batch mean loss), then value from acc at the end of the split. */
    kiln_status (*accumulate)(kiln_metric_acc *acc, const kiln_tensor *out, const kiln_tensor *y, double loss,
                              void *user);
    double (*value)(const kiln_metric_acc *acc, void *user);
    void *user;
} kiln_metric;

kiln_metric kiln_metric_make(kiln_metric_kind kind); /* defaults for that kind */
const char *kiln_metric_name(const kiln_metric *m);
/* Adds one batch (out (B, ...), y (B, ...), loss = that batch's mean loss). INVALID +
 * message on shape/dtype mismatch. */
kiln_status kiln_metric_accumulate(const kiln_metric *m, kiln_metric_acc *acc, const kiln_tensor *out,
                                   const kiln_tensor *y, double loss);
/* The value over everything accumulated (NAN when nothing was). */
double kiln_metric_value(const kiln_metric *m, const kiln_metric_acc *acc);
/* One batch on its own: accumulate into a fresh acc and return the value in *out. */
kiln_status kiln_metric_compute(const kiln_metric *m, const kiln_tensor *out, const kiln_tensor *y, double loss,
                                double *value);

/* ---- learner ------------------------------------------------------------------------------- */

/* What a fit does when a training batch's loss, a gradient or a buffer its forward pass
 * updated (BatchNorm running statistics) is NaN or infinite
 * (src/learn/divergence.c). Either way that batch takes no optimizer step, so the weights
 * stay the last finite ones (BatchNorm running statistics are put back too).
 *   STOP (default; fastai TerminateOnNaN): the fit ends with KILN_STATUS_DIVERGED and a
 *        message naming the epoch, the batch and what went non-finite first: the input
 *        batch, the first op of the forward pass with a non-finite output, the loss, or
 *        the first parameter whose gradient is non-finite. No validation, no end_epoch
 *        (so no checkpoint or "best model" of that epoch is written).
 *   SKIP: the batch is skipped (not recorded, not smoothed) and counted in
 *        kiln_fit_state.n_skipped; max_nan_skips batches in a row end the fit as STOP does.
 * Weights that an optimizer step itself makes non-finite (finite gradients, a huge lr) end
 * the fit with KILN_STATUS_DIVERGED under both policies, naming the parameter.
 * A validation loss or metric that is NaN or infinite (finite training, e.g. BatchNorm
 * running statistics that only the eval-mode pass uses) is checked after each epoch's
 * validation: STOP ends the fit with KILN_STATUS_DIVERGED naming the epoch, the value and
 * the first validation batch with a non-finite loss, after the epoch's table row and
 * recorder entry but before its end_epoch (no checkpoint, no best model of it); SKIP prints
 * a message, sets kiln_fit_state.valid_nonfinite for that epoch's end_epoch (the built-in
 * save_best and early stopping never take it as an improvement), counts it in
 * n_valid_nonfinite and goes on. */
typedef enum kiln_nan_policy {
    KILN_NAN_POLICY_STOP = 0,
    KILN_NAN_POLICY_SKIP,
} kiln_nan_policy;

typedef struct kiln_learner_params {
    kiln_loss loss;                /* cross-entropy */
    uint64_t seed;                 /* shuffle seed (epoch e uses kiln_data_set_epoch(seed, e)), 42 */
    double clip;                   /* max global grad norm; 0 = no clipping */
    bool sched_mom;                /* true: the schedule's momentum drives every group's mom */
    bool no_wd_bn_bias;            /* true: no weight decay on BatchNorm params and biases (fastai) */
    kiln_progress_style progress;  /* auto: a bar on a TTY, plain lines otherwise (report.h) */
    FILE *out;                     /* where progress goes; NULL = stdout */
    kiln_nan_policy on_nan;        /* stop */
    int max_nan_skips;             /* SKIP: batches in a row before stopping, >= 1 (10) */
} kiln_learner_params;

kiln_learner_params kiln_learner_default_params(void);

/* data may be NULL (a learner loaded for prediction: kiln_learner_set_data before fitting,
 * validating or lr_find, which refuse with STATE otherwise).
 * The optimizer (given or made) is set to ctx's thread count (kiln_optim_set_threads).
 * opt NULL: creates kiln_optim_new_adam(kiln_adam_default_params()) over the model's store.
 * The optimizer's groups are set to the model's layer groups (kiln_model_param_group) now
 * and at each fit start, and with no_wd_bn_bias BatchNorm parameters and biases are marked
 * no-wd (kiln_optim_set_no_wd). NULL + message when something is missing or not allocated. */
kiln_learner *kiln_learner_new(kiln_ctx *ctx, kiln_model *model, kiln_data *data, kiln_optim *opt,
                               const kiln_learner_params *p);
void kiln_learner_free(kiln_learner *l);

kiln_ctx *kiln_learner_ctx(kiln_learner *l);
kiln_model *kiln_learner_model(kiln_learner *l);
kiln_data *kiln_learner_data(kiln_learner *l);
kiln_optim *kiln_learner_optim(kiln_learner *l);
kiln_recorder *kiln_learner_recorder(kiln_learner *l);
const kiln_learner_params *kiln_learner_params_of(const kiln_learner *l);
/* Replaces the learner's data (not during a fit); own: the learner frees d (with the learner
 * or when replaced). The data it held before is freed when it owned it. */
kiln_status kiln_learner_set_data(kiln_learner *l, kiln_data *d, bool own);
/* Exchanges the learner's data and its ownership with *d and *own (nothing is freed): to
 * run a split of other data through the learner and put its own back. */
kiln_status kiln_learner_swap_data(kiln_learner *l, kiln_data **d, bool *own);
/* An application object (src/apps: the task, its model description) kept with the learner
 * and freed by kiln_learner_free with free_app (may be NULL); tag identifies its kind (the
 * address of a static in the code that attaches it). One per learner: STATE when taken. */
kiln_status kiln_learner_attach(kiln_learner *l, const void *tag, void *app, void (*free_app)(void *app));
/* The object attached under tag; NULL when none or another kind. */
void *kiln_learner_attached(const kiln_learner *l, const void *tag);
void kiln_learner_set_progress(kiln_learner *l, kiln_progress_style style);

/* Copies m (name string included). Metrics are reported in the order added. */
kiln_status kiln_learner_add_metric(kiln_learner *l, const kiln_metric *m);
int kiln_learner_n_metrics(const kiln_learner *l);
const char *kiln_learner_metric_name(const kiln_learner *l, int j);

/* ---- discriminative learning rates ---------------------------------------------------------- *
 * Group g trains with sched_lr * lr_mult[g]. All multipliers start at 1. The schedule's peak
 * is the last group's lr; set_lr_slice(lo, hi) sets lr_mult = kiln_lr_spread(lo, hi, n)/hi,
 * so a schedule peaking at hi gives group g the same curve peaking at spread[g] (fastai's
 * lr_max=slice(lo, hi); lo = 0 is slice(hi)). */
kiln_status kiln_learner_set_lr_mults(kiln_learner *l, int n_groups, const double *mults);
kiln_status kiln_learner_set_lr_slice(kiln_learner *l, double lo, double hi);
int kiln_learner_n_groups(const kiln_learner *l); /* the model's layer groups */
double kiln_learner_lr_mult(const kiln_learner *l, int g);

/* ---- data-parallel (src/learn/dist.c, issue 13) ------------------------------------------- *
 * With a communicator of N > 1 ranks (kiln/dist.h; borrowed, it must outlive the learner, NULL
 * = one process) every rank runs the same fit on its own shard of the data (kiln_data with
 * rank / world: per-rank batch B/N for a global batch B) and:
 *   - the trainable gradients are averaged over ranks: summed in buckets of the flat gradient
 *     buffer (4 MiB by default, kiln_learner_set_dist_buckets), each bucket's non-blocking sum
 *     started during backward as soon as its gradients are final (PyTorch DDP's overlap), then
 *     scaled by 1/N; frozen parameters are skipped; a parameter on the sparse (lazy) step is
 *     stepped whole (other ranks' rows);
 *   - fit start broadcasts rank 0's parameters and buffers; every rank then takes the same
 *     step, so weights stay equal; BatchNorm running statistics stay per rank (as DDP);
 *   - the recorded and smoothed loss is the mean over ranks; validation (and
 *     kiln_learner_validate) sums the loss, item count and metric accumulators over ranks, so
 *     its values are the whole split's (a custom metric's kiln_metric_acc must be additive);
 *   - a non-finite loss or gradient or an error of a step on any rank stops (or, SKIP, skips)
 *     the step on every rank alike, with the failing rank's message (kiln_comm_agree);
 *   - iterations and schedules are global (every rank has the same number of batches);
 *   - rank r > 0 draws dropout from the context's seed mixed with r (set now and after a
 *     checkpoint load), so a run is reproducible for a given N;
 *   - rank r > 0 prints nothing (progress quiet); the built-in checkpointing and save_best
 *     write on rank 0 only; kiln_learner_resume on every rank reads the same file;
 *   - optionally (kiln_learner_set_dist_zero, below) the optimizer state is sharded over the
 *     ranks (ZeRO-1): each rank steps its range of the parameters, then they are all-gathered.
 * A callback's error, skip_batch or stop_training on one rank is every rank's: begin_batch and
 * after_loss ride on the step's loss sum, after_backward (when a callback has one) gets its own
 * small sum before the optimizer step, and after_step / end_batch / begin_epoch are agreed
 * before the next step or epoch (one more 24-byte sum a step). kiln_learner_get_preds, kiln_learner_tta and
 * kiln_snapshot_predict give the rank's validation shard (items r, r + N, ...); the scores
 * of predictions (kiln_learner_score, kiln_snapshot_evaluate, the loss of TTA and ensemble
 * predictions) sum over ranks, so each rank calls them and gets the whole split's figures.
 * Not during a fit. */
kiln_status kiln_learner_set_comm(kiln_learner *l, kiln_comm *c);
kiln_comm *kiln_learner_comm(const kiln_learner *l);
int kiln_learner_rank(const kiln_learner *l);  /* 0 without a communicator */
int kiln_learner_world(const kiln_learner *l); /* 1 without a communicator */
/* Seconds the steps spent waiting on their collectives (loss sum, agreement, and the gradient
 * sums not hidden behind backward) and the steps whose gradients were averaged, since set_comm. */
void kiln_learner_dist_stats(const kiln_learner *l, double *seconds, int64_t *steps);
/* The gradient buckets: at most `bytes` each (a multiple of 4, at least 4; default
 * KILN_LEARNER_DIST_BUCKET_BYTES; a larger gradient is a bucket of its own) and whether their
 * sums start during backward as soon as a bucket's gradients are final (default true, as DDP),
 * or all after it. Neither changes the result with 2 ranks; with more the sum's order may
 * differ in the last bits. Not during a fit. */
#define KILN_LEARNER_DIST_BUCKET_BYTES ((size_t)1 << 22)
kiln_status kiln_learner_set_dist_buckets(kiln_learner *l, size_t bytes, bool overlap);
/* The bucket sums of the steps since set_comm, and how many of them started during backward
 * (the rest started after it: the first buckets to finish wait for nothing else). */
void kiln_learner_dist_buckets(const kiln_learner *l, int64_t *buckets, int64_t *early);
/* ZeRO-1 (off by default; src/learn/zero.c): with N > 1 ranks, each fit gives rank r the flat
 * parameter range [b_r, b_r+1) (b_r = r*P/N rounded down to a multiple of 16 floats, P the
 * store's parameter elements) and its optimizer keeps the state of that range only
 * (kiln_optim_set_shard: Adam's two moments take 2 x 4 P/N bytes a rank instead of 2 x 4 P).
 * After the averaged gradients each rank steps its range, then the ranges are all-gathered
 * (kiln_comm_allgatherv_f32, its time counted in kiln_learner_dist_stats), so every rank has
 * the plain data-parallel run's weights, bit for bit (the step is elementwise with the same
 * scalars). Gradients and weights stay whole: clipping, the divergence checks, frozen
 * parameters and groups behave as without. The built-in checkpointing gathers the whole
 * state to rank 0 (every rank takes part), which writes the plain checkpoint layout and then
 * keeps its range again (it holds the whole state while it writes); a resume, with or without
 * ZeRO, reads each rank's range from the whole file, so checkpoints of either run resume in
 * the other. The optimizer stays sharded after the fit; the next fit without ZeRO gathers its
 * whole state back first (a fit without the ranks then refuses, STATE). Calling
 * kiln_checkpoint_save yourself on a sharded optimizer fails (kiln_optim_save_st, STATE).
 * A fit refuses it (INVALID) while a parameter has the sparse step. No effect with one rank.
 * Not during a fit. */
kiln_status kiln_learner_set_dist_zero(kiln_learner *l, bool on);
bool kiln_learner_dist_zero(const kiln_learner *l);
/* Seconds the steps spent in ZeRO's parameter all-gathers since set_comm (part of
 * kiln_learner_dist_stats' seconds). */
double kiln_learner_dist_zero_seconds(const kiln_learner *l);

/* ---- freezing (src/learn/freeze.c) ---------------------------------------------------------- *
 * fastai v2 Learner.freeze_to / freeze / unfreeze: kiln_model_freeze_to(model, n) (groups < n
 * stop training, except their BatchNorm parameters while train_bn is on; n < 0 counts from
 * the end, clamped to [0, n_groups]) and then kiln_optim_clear_state, as fastai v2's
 * opt.clear_state(): moments and step counts start again after every freeze change. May be
 * called from a callback (gradual unfreezing): the next batch trains the new set. A frozen
 * parameter gets no gradient at all (no weight-gradient kernel, its grad slice untouched,
 * no backward into a frozen body below the first trainable layer) and no step. */
kiln_status kiln_learner_freeze_to(kiln_learner *l, int n);
kiln_status kiln_learner_freeze(kiln_learner *l);   /* freeze_to(-1): all but the last group */
kiln_status kiln_learner_unfreeze(kiln_learner *l); /* freeze_to(0) */
/* fastai train_bn (default on, the model's setting: kiln_model_set_train_bn): BatchNorm
 * parameters of frozen groups keep training. Changing it on a frozen learner applies at once
 * and clears the optimizer state; on an unfrozen one it applies at the next freeze. */
kiln_status kiln_learner_set_train_bn(kiln_learner *l, bool train_bn);
bool kiln_learner_train_bn(const kiln_learner *l);

/* ---- fitting ------------------------------------------------------------------------------ */

typedef struct kiln_fit_params {
    int64_t n_epochs;
    const kiln_sched *sched;  /* borrowed for the call; per-iteration lr & mom */
    int64_t start_epoch;      /* resume: epochs < start_epoch are skipped and iteration
                                 numbering starts at start_epoch * n_batches (fastai start_epoch) */
    bool no_valid;            /* skip validation (lr_find) */
} kiln_fit_params;

kiln_fit_params kiln_fit_default_params(void); /* 1 epoch, no schedule (set one), from 0, validating */

/* fit(n_epochs, sched) = kiln_learner_fit_ex with start_epoch 0, validation on. Puts the
 * model in train mode for training and eval mode for validation, leaves it in train mode.
 * Errors from callbacks, ops or data stop the fit (end_fit still runs) and are returned. */
kiln_status kiln_learner_fit(kiln_learner *l, int64_t n_epochs, const kiln_sched *sched);
kiln_status kiln_learner_fit_ex(kiln_learner *l, const kiln_fit_params *p);
/* fastai fit_one_cycle(n_epochs, lr_max=slice(lo, hi)): a fastai-v2 one-cycle schedule over
 * n_epochs * n_batches iterations peaking at hi, lr multipliers from the slice. p NULL =
 * kiln_sched_one_cycle_default_params(FASTAI); its lr_max and iters are replaced. */
kiln_status kiln_learner_fit_one_cycle(kiln_learner *l, int64_t n_epochs, double lo, double hi,
                                       const kiln_sched_one_cycle_params *p);

/* Loss (batch-size weighted mean) and metrics over a split in eval mode without gradients;
 * metrics has kiln_learner_n_metrics elements (may be NULL). Restores the train/eval mode
 * and rewinds the step arena to where it was. */
kiln_status kiln_learner_validate(kiln_learner *l, kiln_data_split split, double *loss, double *metrics);

/* Predictions over a whole split in order: probs (n, c) f32 (softmax for cross-entropy,
 * sigmoid for BCE, raw outputs otherwise; c = output numel per item), targets (n, k) in the
 * data's y dtype (k = y numel per item; i64 class indices for cross-entropy). Buffers are
 * malloc'd; release with kiln_preds_free. */
typedef struct kiln_preds {
    float *probs;          /* (n, c) */
    void *targets;         /* (n, k) */
    kiln_dtype target_dtype;
    int64_t n, c, k;
    double loss;           /* mean loss over the split */
} kiln_preds;
kiln_status kiln_learner_get_preds(kiln_learner *l, kiln_data_split split, kiln_preds *out);
void kiln_preds_free(kiln_preds *p);
/* One batch x (B, ...) through the model in eval mode without gradients, with the loss's
 * activation applied (softmax / sigmoid / none): (B, ...) in the step arena. Predictions on
 * items (files) are kiln_learner_predict in kiln/apps.h. */
kiln_tensor *kiln_learner_predict_batch(kiln_learner *l, kiln_tensor *x);

/* ---- state seen by callbacks --------------------------------------------------------------- *
 * kiln_learner_state returns the learner's live state. Callbacks may write the fields marked
 * (rw); the rest are for reading. Valid from kiln_learner_new to kiln_learner_free. */
typedef struct kiln_fit_state {
    const kiln_sched *sched; /* the fit's schedule (NULL outside a fit) */
    int64_t epoch;           /* current epoch (absolute, counts from 0) */
    int64_t n_epochs;        /* epochs of this fit, start_epoch included */
    int64_t iter;            /* training iteration: the schedule index of this batch;
                                in end_epoch the number of iterations done */
    int64_t n_iters;         /* n_epochs * n_batches */
    int64_t batch;           /* batch index inside the epoch */
    int64_t n_batches;       /* training batches per epoch */
    bool training;           /* true in the training loop, false in validation */
    kiln_tensor *x, *y;      /* current batch (rw in begin_batch), step arena */
    kiln_tensor *out;        /* model output (after forward) */
    kiln_tensor *loss;       /* one-element loss (rw in after_loss: replaced loss is used) */
    double loss_value;       /* kiln_item(loss) after the loss, as recorded */
    double smooth_loss;      /* debiased EMA (beta 0.98) of the training losses this fit */
    double sched_lr, sched_mom; /* kiln_sched_at(sched, iter) */
    int n_groups;
    double *lrs;             /* (n_groups) lr of each group this batch (rw in begin_batch) */
    double *moms;            /* (n_groups) mom of each group this batch (rw in begin_batch) */
    double grad_norm;        /* global norm before clipping (NAN when clip is off) */
    bool skip_batch;         /* (rw) skip the rest of this batch; reset before each batch */
    bool stop_training;      /* (rw) end the fit (see top of file) */
    double train_loss;       /* after an epoch: smooth_loss at its end (fastai's train_loss) */
    double valid_loss;       /* after validation (NAN when there is none) */
    double *metrics;         /* (n_metrics) after validation */
    int n_metrics;
    int64_t n_skipped;       /* batches skipped this fit for a non-finite loss or gradient */
    int64_t n_skipped_epoch; /* of them in the current epoch (read it in end_epoch) */
    bool valid_nonfinite;    /* SKIP: this epoch's validation loss or a metric is NaN or infinite */
    int64_t n_valid_nonfinite; /* SKIP: epochs of this fit whose validation was non-finite */
} kiln_fit_state;

kiln_fit_state *kiln_learner_state(kiln_learner *l);

/* ---- callbacks ---------------------------------------------------------------------------- *
 * Every hook is optional (NULL). A hook returning an error stops the fit with that error
 * (end_fit hooks still run). Callbacks run in the order they were added. */
typedef kiln_status (*kiln_cb_fn)(kiln_learner *l, void *user);

typedef struct kiln_callback {
    const char *name; /* for messages and lookups; copied */
    kiln_cb_fn begin_fit, begin_epoch, begin_batch, after_loss, after_backward, after_step, end_batch,
        end_epoch, end_fit;
    void *user;
    void (*free_user)(void *user); /* called by kiln_learner_free / remove (may be NULL) */
} kiln_callback;

kiln_status kiln_learner_add_callback(kiln_learner *l, const kiln_callback *cb);
/* Removes (and frees) the first callback with that name; INVALID when none. */
kiln_status kiln_learner_remove_callback(kiln_learner *l, const char *name);
/* The user pointer of the first callback with that name, NULL when none. */
void *kiln_learner_callback_user(kiln_learner *l, const char *name);

/* ---- built-in callbacks (src/learn/callbacks.c) --------------------------------------------- *
 * Monitor a value at each epoch end: "valid_loss" (default), "train_loss" or a metric name.
 * Lower is better when the name contains "loss" or "error" (fastai's rule), higher otherwise,
 * unless mode says so. Improvement: better than best by more than min_delta. */
typedef enum kiln_monitor_mode {
    KILN_MONITOR_MODE_AUTO = 0,
    KILN_MONITOR_MODE_MIN,
    KILN_MONITOR_MODE_MAX,
} kiln_monitor_mode;

typedef struct kiln_monitor_params {
    const char *monitor;    /* "valid_loss"; copied */
    kiln_monitor_mode mode; /* auto */
    double min_delta;       /* 0 */
    int patience;           /* early stopping: epochs without improvement before stopping, 1 */
} kiln_monitor_params;

kiln_monitor_params kiln_monitor_default_params(void);
/* fastai EarlyStoppingCallback: sets stop_training after `patience` epochs in a row without
 * improvement. Added under the name "early_stopping". */
kiln_status kiln_learner_add_early_stopping(kiln_learner *l, const kiln_monitor_params *p);
/* fastai SaveModelCallback(every_epoch=False): writes the model (kiln_model_save, atomic) to
 * path whenever the monitored value improves (the first epoch always does). Added under the
 * name "save_best". kiln_save_best_info (may pass NULL) reports the best value, its epoch
 * and how many times the file was written. */
kiln_status kiln_learner_add_save_best(kiln_learner *l, const char *path, const kiln_monitor_params *p);
kiln_status kiln_save_best_info(kiln_learner *l, double *best, int64_t *best_epoch, int64_t *n_saves);

/* ---- recorder (src/learn/recorder.c) ------------------------------------------------------- *
 * Reset at the start of every fit (kiln_learner_prepend_history joins fits). Per training
 * batch (not skipped): iteration, epoch, raw and smoothed loss, lr and mom of every group.
 * Per epoch: train_loss (smoothed, as fastai), valid_loss, metrics, seconds. Arrays stay valid until the next fit or kiln_learner_free. */
typedef struct kiln_epoch_record {
    int64_t epoch;
    int64_t iter;        /* iterations done when the epoch ended (x of valid loss on plots) */
    double train_loss;
    double valid_loss;   /* NAN without validation */
    const double *metrics; /* (n_metrics) */
    double seconds;
} kiln_epoch_record;

int64_t kiln_recorder_n_batches(const kiln_recorder *r);
int kiln_recorder_n_groups(const kiln_recorder *r);
const int64_t *kiln_recorder_iters(const kiln_recorder *r);       /* (n_batches) */
const double *kiln_recorder_losses(const kiln_recorder *r);       /* (n_batches) raw */
const double *kiln_recorder_smooth_losses(const kiln_recorder *r);/* (n_batches) */
const double *kiln_recorder_lrs(const kiln_recorder *r, int g);   /* (n_batches) of group g */
const double *kiln_recorder_moms(const kiln_recorder *r, int g);  /* (n_batches) of group g */
int64_t kiln_recorder_n_epochs(const kiln_recorder *r);
int kiln_recorder_n_metrics(const kiln_recorder *r);
const char *kiln_recorder_metric_name(const kiln_recorder *r, int j);
kiln_status kiln_recorder_epoch(const kiln_recorder *r, int64_t i, kiln_epoch_record *out);

/* A copy of r (NULL + NOMEM on failure); free it with kiln_recorder_free. */
kiln_recorder *kiln_recorder_clone(const kiln_recorder *r);
void kiln_recorder_free(kiln_recorder *r);
/* Puts earlier (the record of the fits before the last one: a multi-phase recipe's earlier
 * phases) in front of the learner's recorder, so that the recorder, history.csv and the plots
 * show every phase; the last fit's iterations and epochs are renumbered to follow earlier's.
 * INVALID when the two differ in metrics or layer groups. */
kiln_status kiln_learner_prepend_history(kiln_learner *l, const kiln_recorder *earlier);

/* Epoch table: header "epoch,train_loss,valid_loss,<metric names>,time", one row per epoch,
 * losses and metrics with %.9g, time as mm:ss (as printed). Written atomically (temp file,
 * fsync, rename). */
kiln_status kiln_recorder_write_csv(const kiln_recorder *r, const char *path);
/* Batch log: header "iter,epoch,loss,smooth_loss,lr_0..lr_{G-1},mom_0..mom_{G-1}", %.9g. Atomic. */
kiln_status kiln_recorder_write_batches_csv(const kiln_recorder *r, const char *path);
/* PNG plots (kiln_plot_lines): train loss (raw and smoothed) and valid loss vs iteration;
 * metrics vs epoch; lr of every group vs iteration. UNSUPPORTED without PLplot. */
kiln_status kiln_recorder_plot_losses(const kiln_recorder *r, const char *path);
kiln_status kiln_recorder_plot_metrics(const kiln_recorder *r, const char *path);
kiln_status kiln_recorder_plot_lr(const kiln_recorder *r, const char *path);

/* ---- in-memory weights ------------------------------------------------------------------ *
 * A copy of the model's flat params and buffers (kiln_store_flat) and BatchNorm's
 * num_batches_tracked counters: restoring it puts the model back bit for bit. */
typedef struct kiln_weights {
    float *params;      /* (n_params) */
    size_t n_params;
    float *buffers;     /* (n_buffers) */
    size_t n_buffers;
    int64_t *counters;  /* (n_counters) num_batches_tracked per module, declaration order */
    size_t n_counters;
} kiln_weights;

kiln_status kiln_weights_copy(kiln_model *m, kiln_weights *out);
/* INVALID when w was taken from a model of another layout; nothing changes then. */
kiln_status kiln_weights_restore(kiln_model *m, const kiln_weights *w);
void kiln_weights_free(kiln_weights *w);

#ifdef __cplusplus
}
#endif
#endif
