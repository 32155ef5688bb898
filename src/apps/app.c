/* What every task's learner shares (kiln/apps.h): the application object attached to the
 * learner, export / load (weights + model.json), opening data the way a loaded model expects
 * it, and prediction on new items through the same data path and forward pass as
 * validation (fastai's test_dl + get_preds). */
#include "app_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char g_app_tag = 'A'; /* kiln_learner_attach's tag for a kiln__app */

/* ---- the application object --------------------------------------------------------------- */

void kiln__app_free(void *p)
{
    kiln__app *a = p;
    if (!a) return;
    kiln_optim_free(a->opt);
    kiln_model_free(a->model);
    kiln_vision_model_info_free(&a->info);
    if (a->part_free) a->part_free(a->part);
    free(a);
}

kiln__app *kiln__app_get(const kiln_learner *l) { return l ? kiln_learner_attached(l, &g_app_tag) : NULL; }

kiln__app *kiln__app_of(const kiln_learner *l, const char *op)
{
    kiln__app *a = kiln__app_get(l);
    if (!a) kiln__err(KILN_STATUS_STATE, "%s: the learner was not made by a task's constructor (kiln_vision_learner_new, "
                                         "kiln_text_lm_learner_new, kiln_learner_load, ...)", op);
    return a;
}

kiln__app *kiln__vision_app_of(const kiln_learner *l, const char *op)
{
    kiln__app *a = kiln__app_of(l, op);
    if (a && strcmp(a->task, "vision")) {
        kiln__err(KILN_STATUS_STATE, "%s: this call is for vision learners; the learner's task is %s", op, a->task);
        return NULL;
    }
    return a;
}

/* vision's part of the application object */
static kiln_status vision_export(kiln_learner *l, kiln__app *a, const char *dir);

static const char *const *vision_classes(const kiln__app *a, int *n)
{
    *n = a->info.n_classes;
    return (const char *const *)a->info.classes;
}

kiln_status kiln__app_attach(kiln_learner *l, kiln__app *a)
{
    kiln_status st = kiln_learner_attach(l, &g_app_tag, a, kiln__app_free);
    if (st) kiln__app_free(a);
    return st;
}

kiln_learner *kiln__app_learner(kiln_ctx *ctx, kiln__app *a, kiln_model *m, kiln_data *data, double wd,
                                const kiln_learner_params *lp)
{
    a->model = m;
    a->task = "vision", a->export = vision_export, a->classes = vision_classes;
    kiln_adam_params ap = kiln_adam_default_params();
    ap.weight_decay = wd;
    kiln_learner *l = NULL;
    kiln_metric acc = kiln_metric_make(KILN_METRIC_KIND_ACCURACY);
    if (!(a->opt = kiln_optim_new_adam(kiln_model_store(m), &ap)) || !(l = kiln_learner_new(ctx, m, data, a->opt, lp))) {
        kiln__app_free(a);
        kiln_data_free(data);
        return NULL;
    }
    /* from here the learner frees a (attach frees it itself when it fails) */
    if (kiln__app_attach(l, a) || kiln_learner_add_metric(l, &acc) || (data && kiln_learner_set_data(l, data, true))) {
        kiln_learner_free(l);
        kiln_data_free(data);
        return NULL;
    }
    return l;
}

const char *kiln_learner_task(const kiln_learner *l)
{
    kiln__app *a = kiln_learner_attached(l, &g_app_tag);
    return a ? a->task : NULL;
}

const kiln_vision_model_info *kiln_learner_vision_info(const kiln_learner *l)
{
    kiln__app *a = kiln_learner_attached(l, &g_app_tag);
    return a && !strcmp(a->task, "vision") ? &a->info : NULL;
}

int kiln_learner_n_classes(const kiln_learner *l)
{
    kiln__app *a = kiln__app_get(l);
    int n = 0;
    if (a && a->classes) a->classes(a, &n);
    return n;
}

const char *const *kiln_learner_classes(const kiln_learner *l)
{
    kiln__app *a = kiln__app_get(l);
    int n = 0;
    return a && a->classes ? a->classes(a, &n) : NULL;
}

/* ---- files --------------------------------------------------------------------------------- */

kiln_status kiln__path(char *buf, size_t n, const char *dir, const char *name)
{
    size_t dl = strlen(dir);
    int k = snprintf(buf, n, "%s%s%s", dir, dl && dir[dl - 1] == '/' ? "" : "/", name);
    if (k < 0 || (size_t)k >= n)
        return kiln__err(KILN_STATUS_INVALID, "%s/%s: the path is longer than %zu bytes", dir, name, n - 1);
    return KILN_STATUS_OK;
}

/* ---- export / load ------------------------------------------------------------------------- */

kiln_status kiln_learner_export(kiln_learner *l, const char *dir)
{
    kiln__app *a = kiln__app_of(l, "learner_export");
    if (!a) return KILN_STATUS_STATE;
    if (!dir) return kiln__err(KILN_STATUS_INVALID, "learner_export: dir is NULL");
    return a->export(l, a, dir);
}

static kiln_status vision_export(kiln_learner *l, kiln__app *a, const char *dir)
{
    (void)l;
    char pm[4096], pj[4096];
    kiln_status st = kiln_mkdirs(dir);
    if (!st) st = kiln__path(pm, sizeof pm, dir, "model.safetensors");
    if (!st) st = kiln__path(pj, sizeof pj, dir, "model.json");
    if (st) return st;
    a->info.n_params = kiln_model_n_params(a->model, false);
    const char *meta[] = {"format", KILN_MODEL_FORMAT, "task", a->task, "arch", a->info.arch, NULL};
    if ((st = kiln_vision_model_info_check(&a->info))) return st; /* before the weights: nothing half-written */
    if ((st = kiln_model_save(a->model, pm, meta))) return st;
    return kiln__done(kiln_vision_model_info_write(pj, &a->info));
}

kiln_learner *kiln_learner_load(kiln_ctx *ctx, const char *dir)
{
    if (!ctx || !dir) return kiln__errp(KILN_STATUS_INVALID, "learner_load: needs a context and a folder");
    char pm[4096], pj[4096];
    if (kiln__path(pm, sizeof pm, dir, "model.safetensors") || kiln__path(pj, sizeof pj, dir, "model.json")) return NULL;
    kiln__app *a = calloc(1, sizeof *a);
    if (!a) return kiln__errp(KILN_STATUS_NOMEM, "learner_load: out of memory");
    if (kiln_vision_model_info_read(pj, &a->info)) {
        kiln__app_free(a);
        return NULL;
    }
    const kiln_arch *arch = kiln_arch_find(a->info.arch);
    kiln_model *m = arch ? kiln_arch_model_new(arch, ctx, a->info.n_in, a->info.size, a->info.n_classes,
                                               KILN_LAYOUT_AUTO)
                         : NULL;
    if (!m) {
        kiln__err_prefix(kiln_last_status(), pj);
        kiln__app_free(a);
        return NULL;
    }
    if (kiln_model_load(m, pm, true) || kiln_model_check_finite(m)) {
        kiln__err_prefix(kiln_last_status(), pm);
        kiln_model_free(m);
        kiln__app_free(a);
        return NULL;
    }
    kiln_model_train(m, false);
    kiln_learner_params lp = kiln_learner_default_params();
    lp.seed = a->info.seed;
    lp.progress = KILN_PROGRESS_STYLE_QUIET;
    kiln_learner *l = kiln__app_learner(ctx, a, m, NULL, 1e-2, &lp);
    if (l) kiln_clear_error(); /* success: no message of the probes on the way */
    return l;
}

/* ---- data as the model expects it ----------------------------------------------------------- */

/* Vision params that reproduce the model's preprocessing: size, channels, its stats. */
static kiln_vision_params model_params(const kiln_vision_model_info *mi, const kiln_vision_params *p)
{
    kiln_vision_params vp = p ? *p : kiln_vision_default_params();
    vp.size = mi->size;
    vp.n_channels = mi->n_in;
    vp.norm = mi->norm == KILN_VISION_NORM_NONE ? KILN_VISION_NORM_NONE : KILN_VISION_NORM_CUSTOM;
    vp.custom_stats = mi->stats;
    vp.valid_pct = mi->valid_pct;
    vp.classes = (const char *const *)mi->classes; /* a source with more (--classes) is filtered */
    vp.n_classes = mi->n_classes;
    vp.tfm = NULL, vp.tfm_user = NULL, vp.tfm_user_free = NULL;
    return vp;
}

kiln_status kiln_learner_open_data(kiln_learner *l, const char *source, const kiln_vision_params *p, bool tta)
{
    kiln__app *a = kiln__vision_app_of(l, "learner_open_data");
    if (!a) return KILN_STATUS_STATE;
    const kiln_vision_model_info *mi = &a->info;
    kiln_vision_params vp = model_params(mi, p);
    kiln_data *d = kiln_vision_dls_open(source, &vp, tta && mi->augment ? &mi->aug : NULL);
    if (!d) return kiln_last_status();
    kiln_vision_data *v = kiln_vision_data_of(d);
    kiln_status st = KILN_STATUS_OK;
    if (kiln_vision_data_n_classes(v) != mi->n_classes)
        st = kiln__err(KILN_STATUS_INVALID, "%s has %d classes; the model was trained on %d", source,
                       kiln_vision_data_n_classes(v), mi->n_classes);
    for (int k = 0; !st && k < mi->n_classes; k++)
        if (strcmp(kiln_vision_data_class(v, k), mi->classes[k]))
            st = kiln__err(KILN_STATUS_INVALID, "%s: class %d is '%s'; the model's is '%s'", source, k,
                           kiln_vision_data_class(v, k), mi->classes[k]);
    /* the fit's seed: TTA passes are augmented as they were after training */
    if (!st) st = kiln_data_set_epoch(d, mi->seed, 0);
    if (!st) st = kiln_learner_set_data(l, d, true);
    if (st) kiln_data_free(d);
    return kiln__done(st);
}

/* ---- prediction ---------------------------------------------------------------------------- */

kiln_predict_params kiln_predict_default_params(void)
{
    return (kiln_predict_params){.tta = false, .tta_n = 4, .tta_beta = 0.25, .tta_max = false, .bs = 64};
}

kiln_status kiln_learner_predict_split(kiln_learner *l, kiln_data_split split, const kiln_predict_params *p,
                                       kiln_preds *out)
{
    if (!l || !out) return kiln__err(KILN_STATUS_INVALID, "learner_predict: NULL argument");
    memset(out, 0, sizeof *out);
    kiln_predict_params q = p ? *p : kiln_predict_default_params();
    return kiln__done(q.tta ? kiln_learner_tta(l, split, q.tta_n, q.tta_beta, q.tta_max, out)
                            : kiln_learner_get_preds(l, split, out));
}

kiln_status kiln_learner_interpret(kiln_learner *l, kiln_data_split split, const kiln_predict_params *p,
                                   kiln_interp *out)
{
    if (!out) return kiln__err(KILN_STATUS_INVALID, "learner_interpret: out is NULL");
    memset(out, 0, sizeof *out);
    kiln_preds pr;
    kiln_status st = kiln_learner_predict_split(l, split, p, &pr);
    if (st) return st;
    st = kiln_interp_from_preds(&pr, out);
    kiln_preds_free(&pr);
    return kiln__done(st);
}

kiln_status kiln_learner_predict(kiln_learner *l, const char *const *items, int64_t n, const kiln_predict_params *p,
                                 kiln_preds *out)
{
    if (out) memset(out, 0, sizeof *out);
    kiln__app *a = kiln__vision_app_of(l, "learner_predict");
    if (!a) return KILN_STATUS_STATE;
    if (!items || n < 1 || !out) return kiln__err(KILN_STATUS_INVALID, "learner_predict: needs >= 1 item and out");
    kiln_predict_params q = p ? *p : kiln_predict_default_params();
    if (q.bs < 1) return kiln__err(KILN_STATUS_INVALID, "learner_predict: bs %lld must be >= 1", (long long)q.bs);
    const kiln_vision_model_info *mi = &a->info;
    kiln_vision_params vp = model_params(mi, NULL);
    vp.batch_size = q.bs;
    vp.n_workers = n > q.bs ? 2 : 0; /* one batch: decode on this thread */
    if (q.tta && mi->augment) {
        vp.tfm = kiln_augment_tfm;
        vp.tfm_user = (void *)&mi->aug; /* lives as long as the learner; the data dies first */
    }
    kiln_data *d = kiln_vision_items_new(items, n, NULL, (const char *const *)mi->classes, mi->n_classes, &vp);
    if (!d) return kiln_last_status();
    bool own = true;
    kiln_status st = kiln_data_set_epoch(d, mi->seed, 0);
    if (!st) st = kiln_learner_swap_data(l, &d, &own);
    if (st) {
        kiln_data_free(d);
        return st;
    }
    st = kiln_learner_predict_split(l, KILN_DATA_SPLIT_VALID, &q, out);
    kiln_learner_swap_data(l, &d, &own); /* the learner's own data back; d is ours again */
    kiln_data_free(d);
    return kiln__done(st);
}
