/* `kiln vision`: what its subcommands share (tools/kiln/vision*.c). One options struct filled
 * from one flag table (vision.c: the common training flags of train.h plus vision's data
 * flags) whose masks say which subcommands read each flag. Everything a subcommand does is a
 * library call (kiln/apps.h); these files parse flags and print. Every helper prints its own
 * error on stderr ("kiln vision <cmd>: ...") and returns 1 (runtime) or 2 (usage) or NULL. */
#ifndef CLI_VISION_H
#define CLI_VISION_H

#include "train.h"

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
    train_opts t; /* the common flags; t.cmd is "kiln vision fit" */
    const char *arch, *norm, *layout;
    int64_t size, workers, n;
    double valid_pct;
    bool no_augment, skip_bad, probs;
    /* augmentation (fastai aug_transforms' arguments); defaults from kiln_augment_default_params */
    double max_rotate, max_zoom, max_warp, max_lighting, p_affine, p_lighting;
    bool no_flip;
    /* --classes (names, or source class indices A or A-B; vc_parse_classes) and --train-per-class */
    char **classes;
    int n_classes;
    int64_t train_per_class;
    /* transfer learning: --pretrained FILE|DIR, --strict, --unfreeze, --no-train-bn */
    const char *pretrained;
    bool strict, unfreeze, no_train_bn;
    bool given_arch, given_norm; /* from the parser's `given` */
} vopts;

/* --pretrained and its flags checked; --schedule defaults to fine-tune with it (one-cycle
 * with --unfreeze) and --arch to a pretrained folder's. 0 or 2 after a message. */
int vc_pretrained_flags(vopts *o);
int vc_lr_find(vopts *o, const char *data);
int vc_fit(vopts *o, const char *data);
int vc_predict(vopts *o, int n_images, const char *const *images, const char *dir);
int vc_show_batch(vopts *o, const char *data);
int vc_interpret(vopts *o, const char *dir, const char *data);

/* The augmentation the flags ask for (fastai's defaults, overridden by --max-rotate etc.). */
kiln_augment_params vc_augment_params(const vopts *o);
/* The data-loading flags as vision params (batch size bs, size, valid-pct, skip-bad, workers,
 * classes, train-per-class). */
kiln_vision_params vc_vision_params(const vopts *o, int64_t bs);
/* Prints "<name>: N train / M valid images, SxSxC, K classes" unless quiet, and the
 * skipped-images warning. */
void vc_data_summary(const vopts *o, kiln_data *d);

#endif
