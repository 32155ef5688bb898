/* `kiln vision`: what its subcommands share (tools/kiln/vision*.c). One options struct filled
 * from one flag table (vision.c) whose masks say which subcommands read each flag; helpers to
 * open a data set, build a model by architecture name, make a Learner with the fastai
 * defaults and write files atomically (model.json: kiln/apps.h). Every helper prints its own
 * error on stderr ("kiln vision <cmd>: ...") and returns 1 (runtime) or 2 (usage) or NULL. */
#ifndef KILN_TOOLS_VISION_CLI_H
#define KILN_TOOLS_VISION_CLI_H

#include "kiln.h"

#include <stdbool.h>
#include <stdint.h>

/* The longest --out or model DIR taken: the file names joined to it fit in 4096 bytes. */
#define VC_DIR_MAX 4000

/* subcommands, as flag mask bits */
enum {
    VC_LR_FIND = 1u << 0,
    VC_FIT = 1u << 1,
    VC_PREDICT = 1u << 2,
    VC_SHOW = 1u << 3,
    VC_INTERP = 1u << 4,
    VC_ALL = (1u << 5) - 1u,
};

typedef struct vopts {
    const char *cmd;        /* "kiln vision fit": message prefix */
    const char *out, *arch, *schedule, *norm, *progress, *layout, *on_nan;
    int64_t size, bs, epochs, n_cycle, cycle_len, cycle_mult, snapshots, seed, threads, workers, num_it, n;
    int64_t tta_n;
    double lr, wd, valid_pct, tta_beta;
    bool tta, tta_max, no_augment, quiet, skip_bad, help, resume;
    /* augmentation (fastai aug_transforms' arguments); defaults from kiln_augment_default_params */
    double max_rotate, max_zoom, max_warp, max_lighting, p_affine, p_lighting;
    bool no_flip;
    bool given_epochs, given_n_cycle, given_bs, given_size; /* set from the parser's `given` */
    bool skip_nan;          /* --on-nan skip */
} vopts;

int vc_lr_find(vopts *o, const char *data);
int vc_fit(vopts *o, const char *data);
int vc_predict(vopts *o, int n_images, const char *const *images, const char *dir);
int vc_show_batch(vopts *o, const char *data);
int vc_interpret(vopts *o, const char *dir, const char *data);

/* "<cmd>: <message>" on stderr; returns rc. */
int vc_fail(const vopts *o, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* vc_fail with kiln_last_error() after what. */
int vc_kfail(const vopts *o, const char *what);

/* Opens DATA with the flags' batch size, size, channels, normalization, augmentation
 * (aug NULL: none) and prints the summary line unless quiet. NULL after printing an error. */
kiln_data *vc_open_data(const vopts *o, const char *data, int n_channels, const kiln_vision_stats *custom,
                        kiln_vision_norm norm, const kiln_augment_params *aug, int64_t bs, bool summary);
/* Builds and allocates arch for (n_in, size, n_classes) on ctx; desc gets "simple-cnn (fastai
 * lesson 7)". NULL after printing an error (unknown arch, a size the arch cannot take). */
kiln_model *vc_model_new(const vopts *o, const char *arch, int n_in, int size, int n_classes, kiln_ctx *ctx,
                         char *desc, size_t desc_n);
/* A Learner with fastai's defaults: AdamW (betas 0.9/0.99, eps 1e-5, wd o->wd), no wd on
 * BatchNorm and biases, accuracy as the metric, progress on stdout (quiet: none), --on-nan's
 * policy for a non-finite loss or gradient. *opt gets
 * the optimizer (free it after the learner). */
kiln_learner *vc_learner_new(const vopts *o, kiln_ctx *ctx, kiln_model *m, kiln_data *d, kiln_optim **opt);
/* A context with o->threads threads and o->seed. */
kiln_ctx *vc_ctx_new(const vopts *o);
/* mkdir -p dir. 0 or 1 (after an error message). */
int vc_mkdirs(const vopts *o, const char *dir);
/* dir/name into buf. */
const char *vc_path(char *buf, size_t n, const char *dir, const char *name);
/* Writes text to path atomically (temp file, fsync, rename). 0 or 1 (after a message). */
int vc_write_atomic(const vopts *o, const char *path, const char *text);

/* The augmentation the flags ask for (fastai's defaults, overridden by --max-rotate etc.). */
kiln_augment_params vc_augment_params(const vopts *o);

#endif
