/* Internal to src/learn: the learner's layout and the recorder calls the fit loop makes.
 * Names start with kiln__learn_ / kiln__recorder_ and are not API. */
#ifndef KILN_LEARN_INTERNAL_H
#define KILN_LEARN_INTERNAL_H

#include "core/internal.h"
#include "kiln/autograd.h"
#include "kiln/ops.h"
#include "kiln/learn.h"
#include "kiln/dist.h"
#include "kiln/report.h"

typedef struct kiln__cb {
    kiln_callback cb; /* cb.name points at name */
    char *name;
} kiln__cb;

struct kiln_learner {
    kiln_ctx *ctx;
    kiln_model *model;
    kiln_data *data;
    kiln_optim *opt;
    bool own_opt;
    bool own_data;            /* kiln_learner_set_data(own): freed with the learner */
    const void *app_tag;      /* kiln_learner_attach: the application object and its free */
    void *app;
    void (*free_app)(void *app);
    kiln_learner_params p;

    kiln_metric *metrics; /* (n_metrics); names are owned copies */
    int n_metrics;

    kiln__cb *cbs;
    int n_cbs, cap_cbs;

    double *lr_mults; /* (n_mults) */
    int n_mults;
    bool mults_set;   /* set by the user: must match the model's groups at fit time */

    kiln_fit_state st;     /* st.lrs / st.moms have cap_groups, st.metrics n_metrics */
    int cap_groups;
    kiln_ema ema;
    bool in_fit;
    kiln_recorder *rec;
    kiln_progress *prog;

    /* divergence.c: non-finite checks of each training batch */
    float *buf_copy;       /* (cap_buf_copy) the model's buffers before this batch's forward */
    size_t cap_buf_copy;
    int64_t *nbt_copy;     /* (cap_nbt_copy) each module's num_batches_tracked before it */
    size_t cap_nbt_copy;
    int nan_in_row;        /* batches skipped in a row (SKIP policy) */
    bool probe;            /* lr_find's fit: no non-finite checks, no new run id */

    /* run.c: the run a fit belongs to */
    char run_id[33];       /* 32 hex digits; "" before the first fit */
    char *run_settings;    /* "key=value\n" lines (kiln_learner_set_run_settings), NULL = none */
    bool run_loaded;       /* run_id came from a checkpoint: the next fit goes on with it */

    /* dist.c: data-parallel training (borrowed communicator, NULL = one process) */
    kiln_comm *comm;
    size_t dist_bucket_floats; /* gradient bucket cap (kiln_learner_set_dist_buckets) */
    bool dist_overlap;     /* bucket sums start during backward */
    struct grad_plan *dist_plan; /* the step's buckets while backward runs (dist.c) */
    double dist_seconds;   /* spent in the step's collectives since set_comm */
    int64_t dist_steps;    /* steps whose gradients were averaged */
    int64_t dist_buckets, dist_buckets_early; /* bucket sums, and those started during backward */
    int64_t valid_n;       /* items of the last validation, summed over ranks */
    /* zero.c: ZeRO-1 (kiln_learner_set_dist_zero) */
    bool dist_zero;        /* asked for */
    bool zero_on;          /* this fit's optimizer holds this rank's range only */
    double zero_seconds;   /* spent in the parameter all-gathers */
};

/* STATE "<op>: the learner has no data" when it has none. */
kiln_status kiln__learn_need_data(const kiln_learner *l, const char *op);
/* Makes the learner's group arrays match the model's layer groups and puts the optimizer's
 * parameters in those groups. */
kiln_status kiln__learn_sync_groups(kiln_learner *l);
/* The loss of one batch: out (B, ...), y (B, ...) -> one-element tensor, NULL + message. */
kiln_tensor *kiln__learn_loss(kiln_learner *l, kiln_tensor *out, kiln_tensor *y);
/* Runs hook number `which` (offset of the field in kiln_callback) of every callback in
 * order; stops at the first error. */
kiln_status kiln__learn_run_hook(kiln_learner *l, size_t which);
bool kiln__learn_has_hook(const kiln_learner *l, size_t which); /* some callback sets it */
#define KILN__HOOK(field) offsetof(kiln_callback, field)

/* kiln_learner_validate that also gives the index of the first batch whose loss is not
 * finite (-1: none). */
kiln_status kiln__learn_validate(kiln_learner *l, kiln_data_split split, double *loss, double *metrics,
                                 int64_t *first_bad);
/* Loss and metrics (n_metrics, may be NULL) of predictions probs laid out as p (snapshot.c):
 * the probabilities are turned back into the model's output form first (log p for
 * cross-entropy, logit for BCE). loss (may be NULL): computed from probs; else *given (may be
 * NULL) is the mean loss the metrics see, replaced by the whole split's. With N > 1 ranks p is
 * this rank's shard and the sums are over every rank's (every rank calls it, an empty shard
 * too), so the values are the whole split's. */
kiln_status kiln__learn_score(kiln_learner *l, const float *probs, const kiln_preds *p, double *loss, double *given,
                              double *metrics);

/* ---- divergence.c: the fit loop's non-finite checks ---- *
 * Each returns OK, or KILN_STATUS_DIVERGED with the message (epoch, batch, what went
 * non-finite); kiln__nan_handle then applies the policy. */
kiln_status kiln__nan_fit_begin(kiln_learner *l);  /* sizes the buffer copy */
void kiln__nan_before_forward(kiln_learner *l);    /* keeps the BatchNorm running stats */
kiln_status kiln__nan_check_loss(kiln_learner *l);
kiln_status kiln__nan_check_grads(kiln_learner *l);
kiln_status kiln__nan_check_params(kiln_learner *l);
/* After a DIVERGED check (st): puts the buffers back; under SKIP and the limit counts the
 * batch and returns OK with *skip set, else returns st (message kept). */
kiln_status kiln__nan_handle(kiln_learner *l, kiln_status st, bool *skip);
void kiln__nan_batch_done(kiln_learner *l);        /* a batch stepped: the run of skips ends */
/* After an epoch's validation (bad_batch: its first batch with a non-finite loss, -1: none):
 * OK when the validation loss and metrics are finite (or there was no validation data);
 * else STOP: KILN_STATUS_DIVERGED naming the epoch and what; SKIP: a progress message, the
 * epoch marked (kiln_fit_state.valid_nonfinite, no best model from it) and OK. */
kiln_status kiln__nan_check_valid(kiln_learner *l, int64_t bad_batch);

/* ---- dist.c: data-parallel steps (each a no-op returning st with one process) ---- */
bool kiln__dist_on(const kiln_learner *l); /* a communicator of more than one rank */
/* Rank r > 0: the context's RNG seed mixed with r (after set_comm and a checkpoint load). */
void kiln__dist_rank_rng(kiln_learner *l);
kiln_status kiln__dist_fit_begin(kiln_learner *l); /* broadcasts rank 0's params and buffers */
kiln_status kiln__dist_sync_buffers(kiln_learner *l); /* rank 0's buffers (running statistics) everywhere */
/* The step's loss sum: loss_value becomes the mean over ranks; when st or any rank's status
 * is an error, every rank returns the agreed error (kiln_comm_agree); a skip_batch or
 * stop_training that a callback set on any rank is set on every rank (a SIGINT that reaches
 * the ranks at different batches stops them at the same one). */
kiln_status kiln__dist_loss(kiln_learner *l, kiln_status st);
/* After callbacks that may act on one rank only (after_backward, after_step, end_batch,
 * begin_epoch): st, skip_batch and stop_training agreed over ranks (an error anywhere is every
 * rank's, with its message; a skip or stop anywhere is everyone's), so no rank steps, stops or
 * returns alone. One small sum. */
kiln_status kiln__dist_flags(kiln_learner *l, kiln_status st);
/* kiln_backward of the step's loss; with N ranks the trainable gradients are then the mean over
 * ranks (bucket sums started during backward unless overlap is off), and the status (this rank's
 * backward) is agreed, so every rank returns the same. */
kiln_status kiln__dist_backward(kiln_learner *l);
/* Agrees on st, then sums a split's loss total, item count and metric accumulators. */
kiln_status kiln__dist_reduce_valid(kiln_learner *l, kiln_status st, double *total, int64_t *n,
                                    kiln_metric_acc *acc);

/* ---- zero.c: ZeRO-1, the optimizer state sharded over the ranks ---- */
/* Fit start (after the broadcast): with ZeRO and N ranks the optimizer keeps this rank's range
 * only; without, an optimizer a ZeRO fit left sharded gets its whole state back (gathered). */
kiln_status kiln__zero_fit_begin(kiln_learner *l);
/* After the optimizer step: every rank's updated range to every rank (no-op without ZeRO). */
kiln_status kiln__zero_after_step(kiln_learner *l);
/* Around a checkpoint that rank 0 writes, called by every rank: gather puts the whole
 * optimizer state on rank 0 (the others send their ranges); reshard gives rank 0 its range
 * back. Both no-ops without ZeRO. */
kiln_status kiln__zero_gather(kiln_learner *l);
kiln_status kiln__zero_reshard(kiln_learner *l);

/* ---- run.c: run ids and settings ---- */
void kiln__run_new_id(kiln_learner *l);
/* A checkpoint's run (saved_id, saved settings; NULL when absent) against the learner's
 * settings: OK, or INVALID naming the file and every setting that differs. */
kiln_status kiln__run_check(const kiln_learner *l, const char *path, const char *saved_id, const char *saved);

/* ---- recorder ---- */
kiln_recorder *kiln__recorder_new(void);
void kiln__recorder_free(kiln_recorder *r);
kiln_status kiln__recorder_reset(kiln_recorder *r, int n_groups, int n_metrics, const kiln_metric *metrics);
/* The same with the metric names alone (copied). */
kiln_status kiln__recorder_reset_names(kiln_recorder *r, int n_groups, int n_metrics, const char *const *names);
kiln_status kiln__recorder_add_batch(kiln_recorder *r, int64_t iter, int64_t epoch, double loss, double smooth,
                                     const double *lrs, const double *moms);
kiln_status kiln__recorder_add_epoch(kiln_recorder *r, int64_t epoch, int64_t iter, double train_loss,
                                     double valid_loss, const double *metrics, double seconds);
/* dst gets src's history under the given metrics (src's epoch rows must have n_metrics
 * values; INVALID otherwise) and src's groups (n_groups when src has no batches). */
void kiln__recorder_swap(kiln_recorder *a, kiln_recorder *b);
kiln_status kiln__recorder_copy(kiln_recorder *dst, const kiln_recorder *src, int n_groups, int n_metrics,
                                const kiln_metric *metrics);

/* ---- recorder_st.c: the recorder's part of a checkpoint ---- *
 * Tensors "<p>.iters" (nb) I64, "<p>.losses", "<p>.smooth_losses" (nb), "<p>.lrs",
 * "<p>.moms" (groups, nb), "<p>.epochs" (ne, 2: epoch, iter), "<p>.epoch_values"
 * (ne, 3 + metrics: train_loss, valid_loss, seconds, metrics...), doubles as their IEEE bits
 * in I64; metadata "<p>" = JSON {"batches": nb, "epochs": ne, "groups": g, "metrics":
 * [names]}. load_st checks the whole part, then makes r hold it (each batch's epoch is its
 * iteration / batches_per_epoch); r is unchanged on error. */
kiln_status kiln__recorder_save_st(const kiln_recorder *r, kiln_st_writer *w, const char *prefix);
kiln_status kiln__recorder_load_st(kiln_recorder *r, const kiln_st_file *f, const char *prefix,
                                   int64_t batches_per_epoch);

#endif
