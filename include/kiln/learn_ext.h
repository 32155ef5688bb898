/* kiln learn_ext: four things built on the Learner (learn.h):
 *   - the LR range test (fastai Learner.lr_find), which leaves no trace on the learner;
 *   - snapshot ensembles (Huang et al. 2017): weights saved at each SGDR/CLR cycle end and
 *     predictions averaged over the last M snapshots;
 *   - checkpoints: everything a fit needs to go on (weights, optimizer state, schedule
 *     position, RNG, history) in one safetensors file, and a callback that writes them, so a
 *     run stopped after epoch k and resumed with start_epoch = k ends bit for bit where an
 *     uninterrupted run does (same thread count);
 *   - test-time augmentation (fastai v2 Learner.tta).
 * Also an in-memory copy of a model's weights (kiln_weights), which all three use.
 *
 * Ownership: results (kiln_lr_find_result, kiln_snapshot_eval, kiln_preds) are malloc'd
 * and released with their _free function. Snapshots and checkpoint state attached to a
 * learner belong to it (callback user data) and die with kiln_learner_free. */
#ifndef KILN_LEARN_EXT_H
#define KILN_LEARN_EXT_H

#include "kiln/learn.h"

#ifdef __cplusplus
extern "C" {
#endif

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

/* ---- snapshot ensembles (src/learn/snapshot.c) ------------------------------------------ *
 * A callback ("snapshots") that copies the weights at the end of every training batch whose
 * iteration ends a schedule cycle (kiln_sched_cycle_end: SGDR and cos-restarts restarts,
 * CLR cycles, and the schedule's last iteration). Snapshot k is the k-th cycle end seen.
 * A fit starting at epoch 0 clears the set; a resumed fit keeps it, and in directory mode
 * picks up the files of cycles that ended before its start epoch. */
typedef struct kiln_snapshot_params {
    const char *dir;  /* NULL: in memory; else "<dir>/snapshot_<cycle>.safetensors" (model
                         state dict, atomic, metadata format "kiln-snapshot"); copied */
} kiln_snapshot_params;

kiln_status kiln_learner_add_snapshots(kiln_learner *l, const kiln_snapshot_params *p);
int kiln_snapshot_count(kiln_learner *l); /* 0 without the callback */
/* Where snapshot i was taken (any pointer may be NULL; *path NULL in memory mode). */
kiln_status kiln_snapshot_info(kiln_learner *l, int i, int64_t *cycle, int64_t *iter, int64_t *epoch,
                               const char **path);
/* Puts snapshot i's weights into the model (not during a fit). */
kiln_status kiln_snapshot_load(kiln_learner *l, int i);

/* Predictions of the ensemble of the last m snapshots (m <= 0 or > count: all) over a
 * split: probs = the mean of each snapshot's kiln_learner_get_preds probs (softmax for
 * cross-entropy), targets as get_preds; loss = the learner's loss of those mean probs
 * (cross-entropy of log(mean p), BCE of logit(mean p), MSE of the mean). The model's
 * weights are restored afterwards. */
kiln_status kiln_snapshot_predict(kiln_learner *l, kiln_data_split split, int m, kiln_preds *out);

/* Loss and metrics of each of the last m snapshots and of their ensemble. Metrics are
 * computed over the whole split from the predictions given back the model's output form
 * (log p for cross-entropy, logit(p) for BCE), so argmax/threshold metrics see what they
 * see in validation; custom metrics get that form too. */
typedef struct kiln_snapshot_eval {
    kiln_data_split split;
    int n;             /* snapshots evaluated */
    int first;         /* index of the first of them */
    int n_metrics;
    double *losses;    /* (n) loss of each snapshot (kiln_learner_get_preds) */
    double *metrics;   /* (n, n_metrics) */
    double ens_loss;
    double *ens_metrics; /* (n_metrics) */
} kiln_snapshot_eval;

kiln_status kiln_snapshot_evaluate(kiln_learner *l, kiln_data_split split, int m, kiln_snapshot_eval *out);
void kiln_snapshot_eval_free(kiln_snapshot_eval *e);
/* The table: "snapshot  valid_loss  accuracy" ("train_loss" for the train split), one row
 * per snapshot (its cycle), then
 * "ensemble (last M)" with the ensemble's values. out NULL = stdout. */
void kiln_snapshot_eval_print(kiln_learner *l, const kiln_snapshot_eval *e, FILE *out);

/* ---- checkpoints (src/learn/checkpoint.c) ----------------------------------------------- *
 * One safetensors file, written atomically (kiln_st_writer: temp + fsync + rename). Each
 * owner writes and reads its own part under its own names, never struct bytes:
 *   model.<name>            the model's state dict (kiln_model_save_st; BatchNorm
 *                           num_batches_tracked included), so kiln_model_load_st(model, f,
 *                           "model.", true) reads the weights alone
 *   optim.<state>, "optim"  the optimizer (kiln_optim_save_st): state tensors (exp_avg,
 *                           exp_avg_sq, step, ...) and metadata "optim" = {"kind", "groups":
 *                           [{"lr", "mom", "wd", "frozen"}, ...]}
 *   "sched"                 the fit's schedule (kiln_sched_to_json: "policy", "total",
 *                           "warmup_iters", "warmup_start", "params" with every field by name);
 *                           only when saved during a fit
 *   recorder.*, "recorder"  the batch and epoch history (I64 tensors holding f64 bits, since
 *                           safetensors readers differ on F64) and {"batches", "epochs",
 *                           "groups", "metrics": [names]}
 *   "rng"                   the context's RNG (kiln_rng_state_to_json: {"seed", "counter"} as
 *                           decimal strings)
 *   learner.requires_grad,  the learner's own: requires_grad per store entry (U8), and
 *   "learner"               {"lr_mults": [..], "mults_set", "smoothing": {"beta", "avg", "n"},
 *                           "metrics": [names]}
 * and the metadata format "kiln-checkpoint", version "2", kiln_version, epoch (epochs done),
 * iter (iterations done), n_epochs, n_batches, seed, and run_id and run_settings (see Runs
 * below). JSON doubles are written exactly ("%.17g"), so the state round-trips bit for bit.
 * Reading: a missing key that has a default (an option added later: a schedule's
 * three_phase, a group's frozen, ...) takes it; a missing required key or one of the wrong
 * type or shape is refused (FORMAT or INVALID) naming the file and the key; unknown keys are
 * ignored with one warning. Version 1 files (kiln before this layout: the schedule as
 * kiln_sched bytes, optimizer groups as a (G, 4) tensor) are converted in memory and load
 * and resume as before; any other version is refused, naming it.
 * Saved at an epoch end (as the callback does) the position is exact; saved elsewhere in a
 * fit it counts only finished epochs, so a resume repeats the partial one. */
typedef struct kiln_checkpoint_info {
    int64_t epoch;      /* epochs done: resume with start_epoch = epoch */
    int64_t iter;       /* iterations done */
    int64_t n_epochs;   /* of the fit that wrote it; 0 when saved outside a fit */
    int64_t n_batches;  /* training batches per epoch then */
    uint64_t seed;      /* the learner's shuffle seed */
    bool has_sched;     /* saved during a fit: sched holds its schedule */
    kiln_sched sched;
    char run_id[33];    /* the run that wrote it (kiln_learner_run_id); "" when not recorded */
} kiln_checkpoint_info;

kiln_status kiln_checkpoint_save(kiln_learner *l, const char *path);
/* Runs. A run is one training from its first epoch to its last, however often it is
 * stopped and resumed. kiln_learner_fit_ex starting at epoch 0 gives the learner a new
 * random run id (32 hex digits); kiln_checkpoint_load takes the checkpoint's, and the next
 * fit goes on with it. Checkpoints record the id (metadata "run_id") and the run settings
 * (metadata "run_settings", "key=value" lines): whatever shapes the training that the
 * learner cannot see itself, e.g. a CLI's flags (architecture, lr, schedule, data, ...).
 * kiln_learner_resume refuses (INVALID, before anything changes) a checkpoint whose
 * settings differ from the learner's, naming each ("lr: 0.01 then, 0.5 now"), and, when the
 * learner has settings, a checkpoint that records none (an older kiln's: they cannot be
 * checked). A learner without settings checks nothing. */
/* kv: "key", "value", ..., NULL (copied; replaces the settings; NULL or empty: none). Keys
 * hold no '=' or newline, values no newline, no key twice. Not during a fit. */
kiln_status kiln_learner_set_run_settings(kiln_learner *l, const char *const *kv);
const char *kiln_learner_run_settings(const kiln_learner *l); /* the lines, NULL when none */
const char *kiln_learner_run_id(const kiln_learner *l);       /* "" before the first fit */
/* Checks everything first: the file, its format and version, the model's tensor names and
 * shapes, the optimizer kind and state sizes, layer groups and metrics; any mismatch is
 * an error naming the file and the problem, and leaves the learner unchanged. Then restores
 * all of it; the recorder shows the saved history at once, and the next fit that starts at
 * the checkpoint's epoch continues it (and the loss smoothing) instead of starting afresh.
 * info (may be NULL) receives the position. Not during a fit. */
kiln_status kiln_checkpoint_load(kiln_learner *l, const char *path, kiln_checkpoint_info *info);
/* The position and schedule alone, without a learner. */
kiln_status kiln_checkpoint_read_info(const char *path, kiln_checkpoint_info *out);
/* Loads path and goes on with the fit that wrote it: kiln_learner_fit_ex with its schedule,
 * n_epochs and start_epoch = epoch (validation on). OK without training when that fit was
 * finished. INVALID (before anything changes) when the checkpoint was not written during
 * a fit, the data's batch count or the learner's shuffle seed differ from then, or the run
 * settings differ (see kiln_learner_set_run_settings). */
kiln_status kiln_learner_resume(kiln_learner *l, const char *path);

/* A callback ("checkpointing") that saves at the end of every every_n-th epoch and of the
 * fit's last epoch; with one overwritten file (not a pattern) also when a fit starts at
 * epoch 0 (epochs done 0), so the file holds this run from the start and never another
 * run's state. path is
 *   - a pattern with one %d (or %0Nd) and no other % but %%: the epochs done, one file per
 *     save ("ckpt/epoch_%03d.safetensors");
 *   - an existing directory or a path ending in '/': "<dir>/checkpoint.safetensors",
 *     overwritten (atomically) each time;
 *   - any other path: that file, overwritten each time. */
kiln_status kiln_learner_add_checkpointing(kiln_learner *l, const char *path, int every_n);
/* The file the callback wrote last (NULL when none yet or no callback). */
const char *kiln_checkpointing_last_path(kiln_learner *l);

/* ---- test-time augmentation (src/learn/tta.c) -------------------------------------------- *
 * fastai v2 learn.tta(n=4, beta=0.25, use_max=False): n passes over a split with the
 * training augmentation (the data source's TTA pass k, deterministic; a vision source draws
 * from kiln_vision_tta_seed(seed, k)),
 * their mean (or elementwise max with use_max) `aug`, and one plain pass:
 *   final = lerp(aug, plain, beta) = (1 - beta) * aug + beta * plain.
 * beta = 0 is aug alone, beta = 1 the plain pass. */

/* The combination alone: plain (count), passes (n, count) contiguous -> out (count); out may
 * be plain. INVALID when n < 1, beta outside [0, 1] or a pointer is NULL. */
kiln_status kiln_tta_combine(const float *plain, const float *passes, int n, int64_t count, double beta,
                             bool use_max, float *out);

/* TTA predictions over a split of a source with TTA passes (data.h: kiln_data_set_tta_pass
 * makes the augmented passes; a vision source without a transform makes them equal to the
 * plain one): out as kiln_learner_get_preds (probs (n, c) = the combination above, targets,
 * loss = the learner's loss of those probs). The source is put back to plain batches
 * afterwards, also on error. Not during a fit. UNSUPPORTED for a source without
 * kiln_data_ops.set_tta_pass. */
kiln_status kiln_learner_tta(kiln_learner *l, kiln_data_split split, int n, double beta, bool use_max,
                             kiln_preds *out);

/* Loss (may be NULL) and metrics (kiln_learner_n_metrics values, may be NULL) of any
 * predictions laid out as kiln_learner_get_preds gives them (plain, TTA, ensembles): metrics
 * see the model's output form (log p for cross-entropy), as in validation. */
kiln_status kiln_learner_score(kiln_learner *l, const kiln_preds *p, double *loss, double *metrics);

#ifdef __cplusplus
}
#endif
#endif
