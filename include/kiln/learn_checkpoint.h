/* kiln learn_checkpoint: checkpoints of a fit (learn.h): everything a fit needs to go on, each
 * owner's part under its own named keys, in one safetensors file, and a callback that writes
 * them, so a run stopped after epoch k and resumed ends bit for bit where an uninterrupted
 * run does (same thread count); the run's settings that a resume must not change. */
#ifndef KILN_LEARN_CHECKPOINT_H
#define KILN_LEARN_CHECKPOINT_H

#include "kiln/learn.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
}
#endif
#endif
