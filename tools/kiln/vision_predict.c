/* kiln vision predict, show-batch and interpret: flags in, library calls, lines out.
 *   predict     kiln_learner_load + kiln_learner_predict per image: file, class, probability.
 *   show-batch  kiln_vision_show_batch: the first training batch, augmented, as a grid.
 *   interpret   kiln_learner_open_data + kiln_learner_interpret on the validation split:
 *               confusion matrix (PNG, CSV), top losses (grid, CSV), most confused pairs. */
#include "vision_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The learner in dir on a context of the flags, in --layout. 0 or 1 after a message. */
static int load(vopts *o, const char *dir, kiln_ctx **ctx, kiln_learner **l)
{
    *l = NULL;
    if (!(*ctx = train_ctx_new(&o->t))) return 1;
    if (!(*l = kiln_learner_load(*ctx, dir))) return cli_kfail(o->t.cmd, NULL);
    kiln_layout lay = KILN_LAYOUT_AUTO;
    kiln_layout_parse(o->layout, &lay);
    if (lay != KILN_LAYOUT_AUTO) kiln_model_set_channels_last(kiln_learner_model(*l), lay == KILN_LAYOUT_NHWC);
    /* TTA repeats the training augmentation (fastai's tta): a model trained with --no-augment
     * has none, so its TTA passes equal the plain one */
    if (o->t.tta && !kiln_learner_vision_info(*l)->augment)
        fprintf(stderr, "%s: warning: --tta on a model trained with --no-augment: the augmented passes equal the plain one\n",
                o->t.cmd);
    return 0;
}

static kiln_predict_params predict_params(const vopts *o)
{
    kiln_predict_params p = kiln_predict_default_params();
    p.tta = o->t.tta, p.tta_n = (int)o->t.tta_n, p.tta_beta = o->t.tta_beta, p.tta_max = o->t.tta_max;
    p.bs = o->t.bs;
    return p;
}

/* ---- predict ------------------------------------------------------------------------------------- */

int vc_predict(vopts *o, int n_images, const char *const *images, const char *dir)
{
    kiln_ctx *ctx;
    kiln_learner *l;
    int rc = load(o, dir, &ctx, &l);
    if (!rc) {
        int nc = kiln_learner_n_classes(l), wf = 4, wc = 5, failed = 0;
        const char *const *classes = kiln_learner_classes(l);
        kiln_predict_params pp = predict_params(o);
        for (int i = 0; i < n_images; i++) wf = (int)strlen(images[i]) > wf ? (int)strlen(images[i]) : wf;
        for (int k = 0; k < nc; k++) wc = (int)strlen(classes[k]) > wc ? (int)strlen(classes[k]) : wc;
        for (int i = 0; i < n_images; i++) {
            kiln_preds p;
            if (kiln_learner_predict(l, images + i, 1, &pp, &p)) { /* one at a time: a bad file is named, the rest go on */
                cli_fail(o->t.cmd, 1, "%s", kiln_last_error());
                failed++;
                continue;
            }
            int best = 0;
            for (int k = 1; k < nc; k++) best = p.probs[k] > p.probs[best] ? k : best;
            printf("%-*s  %-*s  %.4f", wf, images[i], wc, classes[best], p.probs[best]);
            for (int k = 0; o->probs && k < nc; k++) printf("  %s=%.9g", classes[k], p.probs[k]);
            printf("\n");
            kiln_preds_free(&p);
        }
        if (failed) rc = cli_fail(o->t.cmd, 1, "%d of %d image(s) could not be classified", failed, n_images);
    }
    kiln_learner_free(l);
    kiln_ctx_free(ctx);
    return rc;
}

/* ---- show-batch ---------------------------------------------------------------------------------- */

int vc_show_batch(vopts *o, const char *data)
{
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", o->t.out);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) *slash = '\0';
    else snprintf(parent, sizeof parent, ".");
    kiln_augment_params aug = vc_augment_params(o);
    kiln_vision_params vp = vc_vision_params(o, o->n);
    if (kiln_mkdirs(parent)) return cli_kfail(o->t.cmd, NULL);
    kiln_data *d = kiln_vision_dls_open(data, &vp, o->no_augment ? NULL : &aug);
    if (!d) return cli_kfail(o->t.cmd, NULL);
    vc_data_summary(o, d);
    kiln_ctx *ctx = train_ctx_new(&o->t);
    int64_t nt = kiln_data_n_items(d, KILN_DATA_SPLIT_TRAIN);
    int rc = !ctx                  ? 1
           : nt < 1                ? cli_fail(o->t.cmd, 1, "%s: no training images", data)
           : nt < o->n             ? cli_fail(o->t.cmd, 2, "%s has %lld training images: use --n %lld or fewer", data,
                                              (long long)nt, (long long)nt)
           : kiln_vision_show_batch(d, ctx, (uint64_t)o->t.seed, o->t.out) ? cli_kfail(o->t.cmd, NULL)
                                                                            : 0;
    if (!rc) printf("wrote %s (%lld %simages)\n", o->t.out, (long long)o->n, o->no_augment ? "" : "augmented ");
    kiln_ctx_free(ctx);
    kiln_data_free(d);
    return rc;
}

/* ---- interpret ----------------------------------------------------------------------------------- */

static const char *item_file(void *user, int64_t i)
{
    return kiln_vision_data_path(user, KILN_DATA_SPLIT_VALID, i);
}

/* The files and the lines: accuracy, the most confused pairs. */
static int write_interp(vopts *o, kiln_learner *l, const kiln_interp *it)
{
    const char *const *classes = kiln_learner_classes(l);
    kiln_vision_data *v = kiln_vision_data_of(kiln_learner_data(l));
    char cm_png[4096], cm_csv[4096], tl_png[4096], tl_csv[4096], title[160];
    cli_path(cm_png, sizeof cm_png, o->t.out, "confusion_matrix.png");
    cli_path(cm_csv, sizeof cm_csv, o->t.out, "confusion_matrix.csv");
    cli_path(tl_png, sizeof tl_png, o->t.out, "top_losses.png");
    cli_path(tl_csv, sizeof tl_csv, o->t.out, "top_losses.csv");
    const char *tta = o->t.tta ? " (tta)" : "";
    snprintf(title, sizeof title, "confusion matrix: accuracy %.4f on %lld images%s", it->accuracy, (long long)it->n, tta);
    if (kiln_interp_write_confusion_csv(it, classes, cm_csv) || kiln_interp_plot_confusion(it, classes, title, cm_png) ||
        kiln_interp_write_top_losses_csv(it, o->n, classes, item_file, v, tl_csv) ||
        kiln_vision_plot_top_losses(v, KILN_DATA_SPLIT_VALID, it, o->n, classes, tl_png))
        return cli_kfail(o->t.cmd, NULL);
    printf("accuracy %.4f on %lld valid images%s\n", it->accuracy, (long long)it->n, tta);
    kiln_confused mc[5];
    int total = 0, k = kiln_interp_most_confused(it, 1, mc, 5, &total);
    for (int i = 0; i < k; i++)
        printf("%s %s -> %s: %lld", i ? "," : "most confused (actual -> predicted: count):", classes[mc[i].actual],
               classes[mc[i].predicted], (long long)mc[i].count);
    if (k) printf("\n");
    printf("wrote %s, confusion_matrix.csv, top_losses.png, top_losses.csv\n", cm_png);
    return 0;
}

int vc_interpret(vopts *o, const char *dir, const char *data)
{
    kiln_ctx *ctx;
    kiln_learner *l;
    int rc = load(o, dir, &ctx, &l);
    if (!rc && kiln_mkdirs(o->t.out)) rc = cli_kfail(o->t.cmd, NULL);
    kiln_vision_params vp = vc_vision_params(o, o->t.bs);
    if (!rc && kiln_learner_open_data(l, data, &vp, o->t.tta)) rc = cli_kfail(o->t.cmd, NULL);
    if (!rc) {
        kiln_data *d = kiln_learner_data(l);
        vc_data_summary(o, d);
        if (kiln_data_n_items(d, KILN_DATA_SPLIT_VALID) < 1) rc = cli_fail(o->t.cmd, 1, "%s has no validation images to interpret", data);
    }
    kiln_interp it = {0};
    kiln_predict_params pp = predict_params(o);
    if (!rc && kiln_learner_interpret(l, KILN_DATA_SPLIT_VALID, &pp, &it)) rc = cli_kfail(o->t.cmd, data);
    if (!rc) rc = write_interp(o, l, &it);
    kiln_interp_free(&it);
    kiln_learner_free(l);
    kiln_ctx_free(ctx);
    return rc;
}
