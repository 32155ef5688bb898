/* The Learner object (include/kiln/learn.h): construction, the pieces it joins, metrics,
 * callbacks, layer-group lr multipliers and the loss. The fit loop is in fit.c. */
#include "learn_internal.h"

#include <math.h>
#include <string.h>

kiln_learner_params kiln_learner_default_params(void)
{
    return (kiln_learner_params){
        .loss = {.kind = KILN_LOSS_KIND_CROSS_ENTROPY},
        .seed = 42,
        .clip = 0,
        .sched_mom = true,
        .no_wd_bn_bias = true,
        .progress = KILN_PROGRESS_STYLE_AUTO,
        .out = NULL,
        .on_nan = KILN_NAN_POLICY_STOP,
        .max_nan_skips = 10,
    };
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* Grows st.lrs / st.moms / lr_mults to n groups (new multipliers are 1). */
static kiln_status ensure_groups(kiln_learner *l, int n)
{
    if (n > l->cap_groups) {
        double *a = realloc(l->st.lrs, (size_t)n * sizeof *a);
        if (a) l->st.lrs = a;
        double *b = realloc(l->st.moms, (size_t)n * sizeof *b);
        if (b) l->st.moms = b;
        double *c = realloc(l->lr_mults, (size_t)n * sizeof *c);
        if (c) l->lr_mults = c;
        if (!a || !b || !c) return kiln__err(KILN_STATUS_NOMEM, "learner: out of memory");
        l->cap_groups = n;
    }
    for (int g = l->n_mults; g < n; g++) l->lr_mults[g] = 1.0;
    l->n_mults = n;
    l->st.n_groups = n;
    return KILN_STATUS_OK;
}

kiln_status kiln__learn_sync_groups(kiln_learner *l)
{
    int n = kiln_model_n_groups(l->model);
    if (n < 1) n = 1;
    if (l->mults_set && l->n_mults != n)
        return kiln__err(KILN_STATUS_STATE,
                         "learner: lr multipliers were set for %d layer groups but the model has %d", l->n_mults, n);
    if (ensure_groups(l, n)) return KILN_STATUS_NOMEM;
    kiln_store *s = kiln_model_store(l->model);
    size_t cnt = kiln_store_count(s);
    int *grp = malloc((cnt ? cnt : 1) * sizeof *grp);
    if (!grp) return kiln__err(KILN_STATUS_NOMEM, "learner: out of memory");
    for (size_t i = 0; i < cnt; i++) {
        int g = kiln_model_param_group(l->model, i);
        grp[i] = g < 0 ? 0 : g;
    }
    kiln_status st = KILN_STATUS_OK;
    st = kiln_optim_set_groups(l->opt, n, grp);
    free(grp);
    return st;
}

kiln_learner *kiln_learner_new(kiln_ctx *ctx, kiln_model *model, kiln_data *data, kiln_optim *opt,
                               const kiln_learner_params *p)
{
    if (!ctx || !model) return kiln__errp(KILN_STATUS_INVALID, "learner_new: needs a context and a model");
    if (!kiln_model_allocated(model))
        return kiln__errp(KILN_STATUS_STATE, "learner_new: the model is not allocated (kiln_model_alloc)");
    kiln_learner_params prm = p ? *p : kiln_learner_default_params();
    if (prm.loss.kind == KILN_LOSS_KIND_CUSTOM && !prm.loss.fn)
        return kiln__errp(KILN_STATUS_INVALID, "learner_new: a custom loss needs fn");
    if ((unsigned)prm.loss.kind > KILN_LOSS_KIND_CUSTOM)
        return kiln__errp(KILN_STATUS_INVALID, "learner_new: unknown loss kind %d", (int)prm.loss.kind);
    if (!(prm.loss.label_smoothing >= 0 && prm.loss.label_smoothing <= 1))
        return kiln__errp(KILN_STATUS_INVALID, "learner_new: label_smoothing %g outside [0, 1]",
                          (double)prm.loss.label_smoothing);
    if (!(prm.clip >= 0)) return kiln__errp(KILN_STATUS_INVALID, "learner_new: clip %g < 0", prm.clip);
    if ((unsigned)prm.on_nan > KILN_NAN_POLICY_SKIP)
        return kiln__errp(KILN_STATUS_INVALID, "learner_new: unknown on_nan policy %d", (int)prm.on_nan);
    if (prm.on_nan == KILN_NAN_POLICY_SKIP && prm.max_nan_skips < 1)
        return kiln__errp(KILN_STATUS_INVALID, "learner_new: max_nan_skips %d must be >= 1", prm.max_nan_skips);
    if (opt && kiln_optim_store(opt) != kiln_model_store(model))
        return kiln__errp(KILN_STATUS_INVALID, "learner_new: the optimizer is not over the model's store");

    kiln_learner *l = calloc(1, sizeof *l);
    if (!l) return kiln__errp(KILN_STATUS_NOMEM, "learner_new: out of memory");
    l->ctx = ctx, l->model = model, l->data = data, l->p = prm;
    l->st.train_loss = l->st.valid_loss = l->st.smooth_loss = NAN;
    l->st.loss_value = l->st.grad_norm = NAN;
    l->dist_bucket_floats = KILN_LEARNER_DIST_BUCKET_BYTES / sizeof(float), l->dist_overlap = true;
    if (!opt) {
        kiln_adam_params ap = kiln_adam_default_params();
        opt = kiln_optim_new_adam(kiln_model_store(model), &ap);
        if (!opt) goto fail;
        l->own_opt = true;
    }
    l->opt = opt;
    /* the optimizer belongs to no context: the learner's steps and clipping run on its ctx's threads */
    if (kiln_optim_set_threads(opt, kiln_ctx_threads(ctx))) goto fail;
    l->rec = kiln__recorder_new();
    l->prog = kiln_progress_new(prm.out, prm.progress);
    if (!l->rec || !l->prog) {
        kiln__err(KILN_STATUS_NOMEM, "learner_new: out of memory");
        goto fail;
    }
    if (kiln__learn_sync_groups(l)) goto fail;
    if (prm.no_wd_bn_bias) {
        kiln_store *s = kiln_model_store(model);
        for (size_t i = 0; i < kiln_store_count(s); i++) {
            kiln_param_info info;
            if (!kiln_store_is_param(s, i) || kiln_model_param_info(model, i, &info)) continue;
            if ((info.is_bn || info.is_bias) && kiln_optim_set_no_wd(opt, i, true)) goto fail;
        }
    }
    return l;
fail:
    kiln_learner_free(l);
    return NULL;
}

void kiln_learner_free(kiln_learner *l)
{
    if (!l) return;
    for (int i = 0; i < l->n_cbs; i++) {
        if (l->cbs[i].cb.free_user) l->cbs[i].cb.free_user(l->cbs[i].cb.user);
        free(l->cbs[i].name);
    }
    free(l->cbs);
    for (int j = 0; j < l->n_metrics; j++) free((char *)l->metrics[j].name);
    free(l->metrics);
    free(l->st.metrics);
    free(l->st.lrs), free(l->st.moms), free(l->lr_mults);
    if (l->own_opt) kiln_optim_free(l->opt);
    kiln__recorder_free(l->rec);
    kiln_progress_free(l->prog);
    free(l->buf_copy);
    free(l->nbt_copy);
    free(l->run_settings);
    if (l->own_data) kiln_data_free(l->data);
    if (l->free_app) l->free_app(l->app);
    free(l);
}

kiln_status kiln_learner_swap_data(kiln_learner *l, kiln_data **d, bool *own)
{
    if (!l || !d || !own) return kiln__err(KILN_STATUS_INVALID, "learner_swap_data: NULL argument");
    if (l->in_fit) return kiln__err(KILN_STATUS_STATE, "learner_swap_data: not during a fit");
    kiln_data *old = l->data;
    bool old_own = l->own_data;
    l->data = *d, l->own_data = *d && *own;
    *d = old, *own = old_own;
    return KILN_STATUS_OK;
}

kiln_status kiln_learner_set_data(kiln_learner *l, kiln_data *d, bool own)
{
    kiln_data *old = d;
    bool old_own = own;
    kiln_status st = kiln_learner_swap_data(l, &old, &old_own);
    if (!st && old_own && old != d) kiln_data_free(old);
    return st;
}

kiln_status kiln_learner_attach(kiln_learner *l, const void *tag, void *app, void (*free_app)(void *app))
{
    if (!l || !tag) return kiln__err(KILN_STATUS_INVALID, "learner_attach: NULL argument");
    if (l->app_tag) return kiln__err(KILN_STATUS_STATE, "learner_attach: the learner already holds an application object");
    l->app_tag = tag, l->app = app, l->free_app = free_app;
    return KILN_STATUS_OK;
}

void *kiln_learner_attached(const kiln_learner *l, const void *tag)
{
    return l && tag && l->app_tag == tag ? l->app : NULL;
}

kiln_status kiln__learn_need_data(const kiln_learner *l, const char *op)
{
    return l->data ? KILN_STATUS_OK
                   : kiln__err(KILN_STATUS_STATE, "%s: the learner has no data (kiln_learner_set_data)", op);
}

kiln_ctx *kiln_learner_ctx(kiln_learner *l) { return l ? l->ctx : NULL; }
kiln_model *kiln_learner_model(kiln_learner *l) { return l ? l->model : NULL; }
kiln_data *kiln_learner_data(kiln_learner *l) { return l ? l->data : NULL; }
kiln_optim *kiln_learner_optim(kiln_learner *l) { return l ? l->opt : NULL; }
kiln_recorder *kiln_learner_recorder(kiln_learner *l) { return l ? l->rec : NULL; }
const kiln_learner_params *kiln_learner_params_of(const kiln_learner *l) { return l ? &l->p : NULL; }
kiln_fit_state *kiln_learner_state(kiln_learner *l) { return l ? &l->st : NULL; }

void kiln_learner_set_progress(kiln_learner *l, kiln_progress_style style)
{
    if (!l) return;
    kiln_progress *np = kiln_progress_new(l->p.out, style);
    if (!np) return; /* keeps the old display; the message says why */
    kiln_progress_free(l->prog);
    l->prog = np;
    l->p.progress = style;
}

/* ---- metrics ---- */

kiln_status kiln_learner_add_metric(kiln_learner *l, const kiln_metric *m)
{
    if (!l || !m) return kiln__err(KILN_STATUS_INVALID, "learner_add_metric: NULL argument");
    if (l->in_fit) return kiln__err(KILN_STATUS_STATE, "learner_add_metric: not during a fit");
    if ((unsigned)m->kind >= KILN_METRIC_KIND_COUNT)
        return kiln__err(KILN_STATUS_INVALID, "learner_add_metric: unknown kind %d", (int)m->kind);
    if (m->kind == KILN_METRIC_KIND_CUSTOM && (!m->accumulate || !m->value || !m->name))
        return kiln__err(KILN_STATUS_INVALID, "learner_add_metric: a custom metric needs a name, accumulate and value");
    kiln_metric *nm = realloc(l->metrics, (size_t)(l->n_metrics + 1) * sizeof *nm);
    if (nm) l->metrics = nm;
    double *sv = realloc(l->st.metrics, (size_t)(l->n_metrics + 1) * sizeof *sv);
    if (sv) l->st.metrics = sv;
    char *name = dup_str(kiln_metric_name(m));
    if (!nm || !sv || !name) {
        free(name);
        return kiln__err(KILN_STATUS_NOMEM, "learner_add_metric: out of memory");
    }
    l->metrics[l->n_metrics] = *m;
    l->metrics[l->n_metrics].name = name;
    l->st.metrics[l->n_metrics] = NAN;
    l->n_metrics++;
    l->st.n_metrics = l->n_metrics;
    return KILN_STATUS_OK;
}

int kiln_learner_n_metrics(const kiln_learner *l) { return l ? l->n_metrics : 0; }

const char *kiln_learner_metric_name(const kiln_learner *l, int j)
{
    return l && j >= 0 && j < l->n_metrics ? l->metrics[j].name : NULL;
}

/* ---- callbacks ---- */

kiln_status kiln_learner_add_callback(kiln_learner *l, const kiln_callback *cb)
{
    if (!l || !cb) return kiln__err(KILN_STATUS_INVALID, "learner_add_callback: NULL argument");
    if (l->in_fit) return kiln__err(KILN_STATUS_STATE, "learner_add_callback: not during a fit");
    if (l->n_cbs == l->cap_cbs) {
        int cap = l->cap_cbs ? 2 * l->cap_cbs : 8;
        kiln__cb *n = realloc(l->cbs, (size_t)cap * sizeof *n);
        if (!n) return kiln__err(KILN_STATUS_NOMEM, "learner_add_callback: out of memory");
        l->cbs = n, l->cap_cbs = cap;
    }
    char *name = dup_str(cb->name ? cb->name : "callback");
    if (!name) return kiln__err(KILN_STATUS_NOMEM, "learner_add_callback: out of memory");
    kiln__cb *e = &l->cbs[l->n_cbs++];
    e->cb = *cb;
    e->name = name;
    e->cb.name = name;
    return KILN_STATUS_OK;
}

static int find_cb(const kiln_learner *l, const char *name)
{
    for (int i = 0; l && name && i < l->n_cbs; i++)
        if (!strcmp(l->cbs[i].name, name)) return i;
    return -1;
}

kiln_status kiln_learner_remove_callback(kiln_learner *l, const char *name)
{
    int i = find_cb(l, name);
    if (i < 0) return kiln__err(KILN_STATUS_INVALID, "learner_remove_callback: no callback '%s'", name ? name : "");
    if (l->in_fit) return kiln__err(KILN_STATUS_STATE, "learner_remove_callback: not during a fit");
    if (l->cbs[i].cb.free_user) l->cbs[i].cb.free_user(l->cbs[i].cb.user);
    free(l->cbs[i].name);
    memmove(&l->cbs[i], &l->cbs[i + 1], (size_t)(l->n_cbs - i - 1) * sizeof *l->cbs);
    l->n_cbs--;
    return KILN_STATUS_OK;
}

void *kiln_learner_callback_user(kiln_learner *l, const char *name)
{
    int i = find_cb(l, name);
    return i < 0 ? NULL : l->cbs[i].cb.user;
}

bool kiln__learn_has_hook(const kiln_learner *l, size_t which)
{
    for (int i = 0; i < l->n_cbs; i++) {
        kiln_cb_fn fn;
        memcpy(&fn, (const char *)&l->cbs[i].cb + which, sizeof fn);
        if (fn) return true;
    }
    return false;
}

kiln_status kiln__learn_run_hook(kiln_learner *l, size_t which)
{
    for (int i = 0; i < l->n_cbs; i++) {
        kiln_cb_fn fn;
        memcpy(&fn, (const char *)&l->cbs[i].cb + which, sizeof fn);
        if (!fn) continue;
        kiln_clear_error(); /* so a hook that fails without a message is named below */
        kiln_status st = fn(l, l->cbs[i].cb.user);
        if (st != KILN_STATUS_OK) {
            if (!kiln_last_error()[0]) kiln__err(st, "learner: callback '%s' failed", l->cbs[i].name);
            return st;
        }
    }
    return KILN_STATUS_OK;
}

/* ---- layer-group learning rates ---- */

int kiln_learner_n_groups(const kiln_learner *l)
{
    int n = l ? kiln_model_n_groups(l->model) : 0;
    return n < 1 ? 1 : n;
}

double kiln_learner_lr_mult(const kiln_learner *l, int g)
{
    return l && g >= 0 && g < l->n_mults ? l->lr_mults[g] : NAN;
}

kiln_status kiln_learner_set_lr_mults(kiln_learner *l, int n_groups, const double *mults)
{
    if (!l || !mults) return kiln__err(KILN_STATUS_INVALID, "learner_set_lr_mults: NULL argument");
    int n = kiln_learner_n_groups(l);
    if (n_groups != n)
        return kiln__err(KILN_STATUS_INVALID, "learner_set_lr_mults: %d multipliers for %d layer groups", n_groups, n);
    for (int g = 0; g < n; g++)
        if (!(mults[g] >= 0) || !isfinite(mults[g]))
            return kiln__err(KILN_STATUS_INVALID, "learner_set_lr_mults: multiplier %d is %g", g, mults[g]);
    l->mults_set = false;
    if (ensure_groups(l, n)) return KILN_STATUS_NOMEM;
    memcpy(l->lr_mults, mults, (size_t)n * sizeof *mults);
    l->mults_set = true;
    return KILN_STATUS_OK;
}

kiln_status kiln_learner_set_lr_slice(kiln_learner *l, double lo, double hi)
{
    if (!l) return kiln__err(KILN_STATUS_INVALID, "learner_set_lr_slice: learner is NULL");
    if (!(hi > 0)) return kiln__err(KILN_STATUS_INVALID, "learner_set_lr_slice: hi %g must be > 0", hi);
    int n = kiln_learner_n_groups(l);
    double *v = malloc((size_t)n * sizeof *v);
    if (!v) return kiln__err(KILN_STATUS_NOMEM, "learner_set_lr_slice: out of memory");
    kiln_status st = kiln_lr_spread(lo, hi, n, v);
    if (!st) {
        for (int g = 0; g < n; g++) v[g] /= hi;
        st = kiln_learner_set_lr_mults(l, n, v);
    }
    free(v);
    return st;
}

/* ---- loss ---- */

/* fastai's *Flat losses: out (B, 1) against y (B) and the like compare element for element. */
static kiln_tensor *flat_like(kiln_ctx *ctx, kiln_tensor *out, kiln_tensor *y)
{
    if (kiln_same_shape(out, y)) return out;
    if (kiln_numel(out) != kiln_numel(y)) {
        char a[64], b[64];
        return kiln__errp(KILN_STATUS_INVALID, "learner: loss needs out %s and y %s with the same numel",
                          kiln_shape_str(out, a, sizeof a), kiln_shape_str(y, b, sizeof b));
    }
    return kiln_reshape(ctx, out, y->ndim, y->shape);
}

kiln_tensor *kiln__learn_loss(kiln_learner *l, kiln_tensor *out, kiln_tensor *y)
{
    KILN_IN(out);
    KILN_IN(y);
    kiln_ctx *ctx = l->ctx;
    const kiln_loss *ls = &l->p.loss;
    switch (ls->kind) {
    case KILN_LOSS_KIND_CROSS_ENTROPY: {
        kiln_xent_params xp = kiln_xent_default_params();
        xp.label_smoothing = ls->label_smoothing;
        return kiln_cross_entropy(ctx, out, y, &xp);
    }
    case KILN_LOSS_KIND_MSE:
        return kiln_mse_loss(ctx, flat_like(ctx, out, y), y, KILN_REDUCTION_MEAN);
    case KILN_LOSS_KIND_BCE_WITH_LOGITS:
        return kiln_bce_with_logits(ctx, flat_like(ctx, out, y), y, NULL, KILN_REDUCTION_MEAN);
    case KILN_LOSS_KIND_CUSTOM:
    default: {
        kiln_tensor *t = ls->fn(ctx, out, y, ls->user);
        if (!t && !kiln_last_error()[0]) kiln__err(KILN_STATUS_INVALID, "learner: the custom loss returned NULL");
        if (t && kiln_numel(t) != 1)
            return kiln__errp(KILN_STATUS_INVALID, "learner: the custom loss must return one element, got %lld",
                              (long long)kiln_numel(t));
        return t;
    }
    }
}
