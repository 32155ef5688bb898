/* The vision task (kiln/apps.h): fastai's ImageDataLoaders (data with its augmentation) and
 * vision_learner (an architecture from the registry for the data's images and classes, from
 * random or pretrained weights (pretrained.c), AdamW, accuracy), with the model's
 * description recorded for export. */
#include "app_internal.h"

#include <stdlib.h>
#include <string.h>

static void free_aug(void *p) { free(p); }

kiln_data *kiln_vision_dls_open(const char *source, const kiln_vision_params *p, const kiln_augment_params *aug)
{
    kiln_vision_params vp = p ? *p : kiln_vision_default_params();
    vp.tfm = NULL, vp.tfm_user = NULL, vp.tfm_user_free = NULL;
    kiln_augment_params *copy = NULL;
    if (aug) {
        if (kiln_augment_check_params(aug)) return NULL;
        if (!(copy = malloc(sizeof *copy))) return kiln__errp(KILN_STATUS_NOMEM, "vision_dls_open: out of memory");
        *copy = *aug;
        vp.tfm = kiln_augment_tfm, vp.tfm_user = copy, vp.tfm_user_free = free_aug;
    }
    kiln_data *d = kiln_vision_open(source, &vp);
    if (!d) free(copy); /* a constructor that fails leaves tfm_user to us */
    else kiln_clear_error();
    return d;
}

kiln_vision_learner_params kiln_vision_learner_default_params(void)
{
    return (kiln_vision_learner_params){.wd = 1e-2, .layout = KILN_LAYOUT_AUTO,
                                        .learner = kiln_learner_default_params(), .train_bn = true};
}

/* The description export writes: from the data (sizes, classes, stats, split, augmentation). */
static kiln_status describe(kiln_data *data, const kiln_arch *arch, uint64_t seed, kiln_vision_model_info *mi)
{
    kiln_vision_data *v = kiln_vision_data_of(data);
    const kiln_vision_params *vp = kiln_vision_data_params(v);
    snprintf(mi->arch, sizeof mi->arch, "%s", arch->name);
    mi->norm = vp->norm;
    mi->augment = vp->tfm == kiln_augment_tfm && vp->tfm_user;
    mi->aug = mi->augment ? *(const kiln_augment_params *)vp->tfm_user : kiln_augment_default_params();
    mi->seed = seed;
    mi->valid_pct = vp->valid_pct;
    const char *name = kiln_vision_data_name(v);
    if (name && !(mi->data = strdup(name))) return kiln__err(KILN_STATUS_NOMEM, "vision_learner: out of memory");
    return kiln_vision_model_info_from_data(data, mi);
}

kiln_learner *kiln_vision_learner_new(kiln_ctx *ctx, kiln_data *data, const char *arch_name,
                                      const kiln_vision_learner_params *p)
{
    kiln_vision_learner_params q = p ? *p : kiln_vision_learner_default_params();
    kiln_vision_data *v = data ? kiln_vision_data_of(data) : NULL;
    const kiln_arch *arch = NULL;
    kiln__app *a = NULL;
    const char *why = !ctx ? "needs a context" : !data ? "needs data" : NULL;
    if (why) kiln__err(KILN_STATUS_INVALID, "vision_learner_new: %s", why);
    else if (!v) kiln__err_prefix(KILN_STATUS_INVALID, "vision_learner_new");
    else if (kiln_data_n_batches(data, KILN_DATA_SPLIT_TRAIN) < 1)
        kiln__err(KILN_STATUS_INVALID, "%s: the train split has %lld images, fewer than one batch (lower the batch size)",
                  kiln_vision_data_name(v), (long long)kiln_data_n_items(data, KILN_DATA_SPLIT_TRAIN));
    else if (kiln_vision_data_n_classes(v) < 2)
        kiln__err(KILN_STATUS_INVALID, "%s: %d class(es); a classifier needs at least 2", kiln_vision_data_name(v),
                  kiln_vision_data_n_classes(v));
    else if (!(q.wd >= 0)) kiln__err(KILN_STATUS_INVALID, "vision_learner_new: wd %g must be >= 0", q.wd);
    else if ((arch = kiln_arch_find(arch_name)) && !(a = calloc(1, sizeof *a)))
        kiln__err(KILN_STATUS_NOMEM, "vision_learner_new: out of memory");
    kiln_model *m = NULL;
    if (a) {
        if (describe(data, arch, q.learner.seed, &a->info) ||
            !(m = kiln_arch_model_new(arch, ctx, kiln_vision_data_n_channels(v), kiln_vision_data_size(v),
                                      kiln_vision_data_n_classes(v), q.layout)) ||
            (q.pretrained && kiln__vision_load_pretrained(m, arch->name, kiln_vision_data_n_channels(v), &q))) {
            kiln_model_free(m);
            kiln__app_free(a);
            a = NULL;
        }
    }
    if (!a) {
        kiln_data_free(data);
        return NULL;
    }
    kiln_learner *l = kiln__app_learner(ctx, a, m, data, q.wd, &q.learner);
    if (l && kiln__vision_pretrained_freeze(l, &q)) {
        kiln_learner_free(l);
        return NULL;
    }
    if (l) kiln_clear_error();
    return l;
}
