/* The tabular task's learner (fastai tabular_learner) and what it shares with collab's: the
 * application object's table part (procs, the model's configuration), the model built from
 * them, MSE + RMSE or cross-entropy + accuracy, AdamW, export (model.safetensors, procs.json,
 * model.json; collab adds seen.csv) and load. */
#include "tab_internal.h"
#include "core/json.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void tab_part_free(void *p)
{
    tab_part *t = p;
    if (!t) return;
    kiln_tab_procs_free(t->procs);
    free(t->classes);
    free(t->seen_start);
    free(t->seen_item);
    free(t);
}

tab_part *kiln__tab_of(const kiln_learner *l)
{
    kiln__app *a = kiln__app_get(l);
    return a && a->part_free == tab_part_free ? a->part : NULL;
}

const kiln_tab_procs *kiln_tabular_learner_procs(const kiln_learner *l)
{
    const tab_part *t = kiln__tab_of(l);
    return t ? t->procs : NULL;
}

static const char *const *tab_classes(const kiln__app *a, int *n)
{
    const tab_part *t = a->part;
    *n = (int)kiln_tab_procs_n_classes(t->procs);
    return t->classes;
}

kiln_tabular_learner_params kiln_tabular_learner_default_params(void)
{
    return (kiln_tabular_learner_params){.n_layers = 2, .layers = {200, 100}, .wd = 1e-2,
                                         .learner = kiln_learner_default_params()};
}

/* ---- the model ------------------------------------------------------------------------------ */

static kiln_model *tab_model(const tab_part *t)
{
    const kiln_tab_procs *pr = t->procs;
    int nc = kiln_tab_procs_n_cat(pr);
    if (t->collab) {
        if (nc != 2) return kiln__errp(KILN_STATUS_INVALID, "collab: the procs have %d categorical columns, not 2 (user, item)", nc);
        const kiln_collab_learner_params *c = &t->cp;
        if (!c->use_nn)
            return kiln_collab_dot_bias_new(kiln_tab_procs_cardinality(pr, 0), kiln_tab_procs_cardinality(pr, 1),
                                            c->n_factors, c->y_range, (float)c->y_lo, (float)c->y_hi);
        return kiln_collab_nn_new(kiln_tab_procs_cardinality(pr, 0), kiln_tab_procs_cardinality(pr, 1), c->n_layers,
                                  c->layers, c->y_range, (float)c->y_lo, (float)c->y_hi);
    }
    int64_t *card = malloc((size_t)(nc ? nc : 1) * sizeof *card);
    if (!card) return kiln__errp(KILN_STATUS_NOMEM, "tabular: out of memory");
    for (int k = 0; k < nc; k++) card[k] = kiln_tab_procs_cardinality(pr, k);
    int64_t ncls = kiln_tab_procs_n_classes(pr);
    kiln_tabular_model_params mp = kiln_tabular_model_default_params();
    mp.n_cat = nc, mp.cardinality = card, mp.n_cont = kiln_tab_procs_n_cont(pr), mp.n_out = ncls ? ncls : 1;
    mp.n_layers = t->tp.n_layers, mp.layers = t->tp.layers, mp.ps = t->tp.ps, mp.embed_p = t->tp.embed_p;
    mp.y_range = t->tp.y_range && !ncls, mp.y_lo = (float)t->tp.y_lo, mp.y_hi = (float)t->tp.y_hi;
    kiln_model *m = kiln_tabular_model_new(&mp);
    free(card);
    return m;
}

kiln_learner *kiln__tab_learner(kiln_ctx *ctx, tab_part *t, kiln_data *data, double wd, const char *pm,
                                const kiln_learner_params *lp)
{
    kiln_model *m = NULL;
    kiln_optim *opt = NULL;
    kiln_learner *l = NULL;
    kiln__app *a = NULL;
    bool clas = kiln_tab_procs_is_classification(t->procs);
    kiln_adam_params ap = kiln_adam_default_params();
    ap.weight_decay = wd;
    if (!(m = tab_model(t)) || kiln_model_alloc(m, ctx)) goto fail;
    if (pm && (kiln_model_load(m, pm, true) || kiln_model_check_finite(m))) {
        kiln__err_prefix(kiln_last_status(), pm);
        goto fail;
    }
    if (!(opt = kiln_optim_new_adam(kiln_model_store(m), &ap))) goto fail;
    if (t->collab && t->cp.sparse && kiln__collab_sparse(m, opt)) goto fail;
    kiln_learner_params q = *lp;
    q.loss = (kiln_loss){.kind = clas ? KILN_LOSS_KIND_CROSS_ENTROPY : KILN_LOSS_KIND_MSE};
    if (!(l = kiln_learner_new(ctx, m, NULL, opt, &q))) goto fail;
    if (!(a = calloc(1, sizeof *a))) {
        kiln__err(KILN_STATUS_NOMEM, "tabular learner: out of memory");
        goto fail;
    }
    *a = (kiln__app){.task = t->collab ? "collab" : "tabular", .model = m, .opt = opt, .export = kiln__tab_export,
                     .classes = clas ? tab_classes : NULL, .part = t, .part_free = tab_part_free};
    m = NULL, opt = NULL, t = NULL; /* the application object's from here */
    if (kiln__app_attach(l, a)) goto fail; /* frees a */
    kiln_metric met = kiln_metric_make(clas ? KILN_METRIC_KIND_ACCURACY : KILN_METRIC_KIND_RMSE);
    if (kiln_learner_add_metric(l, &met) || (data && kiln_learner_set_data(l, data, true))) goto fail;
    return l;
fail:
    if (l) kiln_learner_free(l);
    kiln_optim_free(opt);
    kiln_model_free(m);
    tab_part_free(t);
    kiln_data_free(data);
    return NULL;
}

/* ---- the part ---------------------------------------------------------------------------------- */

tab_part *kiln__tab_part_new(const kiln_tab_procs *procs, bool collab)
{
    tab_part *t = calloc(1, sizeof *t);
    if (!t) return kiln__errp(KILN_STATUS_NOMEM, "tabular learner: out of memory");
    t->collab = collab;
    char *js = procs ? kiln_tab_procs_to_json(procs) : NULL; /* a copy through its JSON */
    if (!procs) kiln__err(KILN_STATUS_INVALID, "tabular learner: procs is NULL");
    if (js) t->procs = kiln_tab_procs_from_json(js, strlen(js), "procs");
    free(js);
    if (!t->procs || kiln__tab_part_classes(t)) {
        tab_part_free(t);
        return NULL;
    }
    return t;
}

kiln_status kiln__tab_part_classes(tab_part *t)
{
    int64_t n = kiln_tab_procs_n_classes(t->procs);
    if (!n) return KILN_STATUS_OK;
    if (!(t->classes = malloc((size_t)n * sizeof *t->classes))) return kiln__err(KILN_STATUS_NOMEM, "tabular learner: out of memory");
    for (int64_t i = 0; i < n; i++) t->classes[i] = kiln_tab_procs_class(t->procs, i);
    return KILN_STATUS_OK;
}

void kiln__tab_part_free(tab_part *t) { tab_part_free(t); }

kiln_learner *kiln_tabular_learner_new(kiln_ctx *ctx, kiln_data *data, const kiln_tab_procs *procs,
                                       const kiln_tabular_learner_params *p)
{
    kiln_tabular_learner_params q = p ? *p : kiln_tabular_learner_default_params();
    const char *bad = !ctx || !data ? "needs a context and data"
                    : q.n_layers < 0 || q.n_layers > KILN_TABULAR_MAX_LAYERS ? "n_layers must be in [0, 16]"
                    : !(q.wd >= 0) ? "wd must be >= 0"
                    : !(q.embed_p >= 0 && q.embed_p < 1) ? "embed_p must be in [0, 1)"
                    : q.y_range && !(q.y_lo < q.y_hi) ? "y_range needs lo < hi" : NULL;
    for (int k = 0; !bad && k < q.n_layers; k++)
        if (q.layers[k] < 1 || !(q.ps[k] >= 0 && q.ps[k] < 1)) bad = "every layer needs a size >= 1 and a dropout in [0, 1)";
    if (!bad && data && kiln_data_n_batches(data, KILN_DATA_SPLIT_TRAIN) < 1) bad = "the train split has no batch";
    if (bad) {
        kiln_data_free(data);
        return kiln__errp(KILN_STATUS_INVALID, "tabular_learner_new: %s", bad);
    }
    tab_part *t = kiln__tab_part_new(procs, false);
    if (!t) {
        kiln_data_free(data);
        return NULL;
    }
    t->tp = q, t->seed = q.learner.seed;
    kiln_learner *l = kiln__tab_learner(ctx, t, data, q.wd, NULL, &q.learner);
    if (l) kiln_clear_error();
    return l;
}

/* ---- export ---------------------------------------------------------------------------------- */

static const char *arch_of(const tab_part *t)
{
    return !t->collab ? "tabular_model" : t->cp.use_nn ? "embedding_nn" : "dot_bias";
}

static cJSON *int_array(const int64_t *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int k = 0; a && k < n; k++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v[k]));
    return a;
}

static cJSON *y_range_json(bool on, double lo, double hi)
{
    if (!on) return cJSON_CreateNull();
    cJSON *a = cJSON_CreateArray();
    if (a) cJSON_AddItemToArray(a, cJSON_CreateNumber(lo)), cJSON_AddItemToArray(a, cJSON_CreateNumber(hi));
    return a;
}

static kiln_status write_json(const tab_part *t, kiln_model *m, const char *task, const char *path)
{
    cJSON *j = cJSON_CreateObject(), *c = cJSON_CreateObject(), *tr = cJSON_CreateObject();
    if (!j || !c || !tr) {
        cJSON_Delete(j), cJSON_Delete(c), cJSON_Delete(tr);
        return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", path);
    }
    cJSON_AddStringToObject(j, "format", KILN_MODEL_FORMAT);
    cJSON_AddNumberToObject(j, "format_version", KILN_MODEL_FORMAT_VERSION);
    cJSON_AddStringToObject(j, "task", task);
    cJSON_AddStringToObject(j, "arch", arch_of(t));
    cJSON_AddNumberToObject(j, "n_params", (double)kiln_model_n_params(m, false));
    cJSON_AddStringToObject(j, "procs", "procs.json");
    cJSON_AddStringToObject(j, "target", kiln_tab_procs_target(t->procs));
    int64_t nc = kiln_tab_procs_n_classes(t->procs);
    if (nc) {
        cJSON *cl = cJSON_CreateArray();
        for (int64_t i = 0; cl && i < nc; i++) cJSON_AddItemToArray(cl, cJSON_CreateString(t->classes[i]));
        cJSON_AddItemToObject(j, "classes", cl);
        cJSON_AddNumberToObject(j, "n_classes", (double)nc);
    }
    if (!t->collab) {
        double ps[KILN_TABULAR_MAX_LAYERS];
        for (int k = 0; k < t->tp.n_layers; k++) ps[k] = t->tp.ps[k];
        cJSON_AddItemToObject(c, "layers", int_array(t->tp.layers, t->tp.n_layers));
        cJSON_AddItemToObject(c, "ps", cJSON_CreateDoubleArray(ps, t->tp.n_layers));
        cJSON_AddNumberToObject(c, "embed_p", t->tp.embed_p);
        cJSON_AddItemToObject(c, "y_range", y_range_json(t->tp.y_range, t->tp.y_lo, t->tp.y_hi));
    } else {
        cJSON_AddNumberToObject(c, "n_factors", (double)t->cp.n_factors);
        cJSON_AddBoolToObject(c, "use_nn", t->cp.use_nn);
        if (t->cp.use_nn) cJSON_AddItemToObject(c, "layers", int_array(t->cp.layers, t->cp.n_layers));
        cJSON_AddItemToObject(c, "y_range", y_range_json(t->cp.y_range, t->cp.y_lo, t->cp.y_hi));
        cJSON_AddBoolToObject(c, "sparse", t->cp.sparse);
        cJSON_AddStringToObject(j, "seen", "seen.csv");
    }
    cJSON_AddItemToObject(j, "config", c);
    kiln__json_add_u64(tr, "seed", t->seed);
    cJSON_AddItemToObject(j, "training", tr);
    return kiln__json_write(j, path);
}

kiln_status kiln__tab_export(kiln_learner *l, kiln__app *a, const char *dir)
{
    (void)l;
    const tab_part *t = a->part;
    char pm[4096], pp[4096], pj[4096];
    kiln_status st;
    if (!(st = kiln_mkdirs(dir)) && !(st = kiln__path(pm, sizeof pm, dir, "model.safetensors")) &&
        !(st = kiln__path(pp, sizeof pp, dir, "procs.json")) && !(st = kiln__path(pj, sizeof pj, dir, "model.json"))) {
        const char *meta[] = {"format", KILN_MODEL_FORMAT, "task", a->task, "arch", arch_of(t), NULL};
        if (!(st = kiln_model_save(a->model, pm, meta)) && !(st = kiln_tab_procs_save(t->procs, pp)) &&
            !(st = t->collab ? kiln__collab_seen_save(t, dir) : KILN_STATUS_OK))
            st = write_json(t, a->model, a->task, pj);
    }
    return kiln__done(st);
}

/* ---- load ------------------------------------------------------------------------------------- */

/* config.<key>: an array of 0..16 integers >= 1 */
static kiln_status read_layers(const char *path, const cJSON *c, int *n, int64_t *layers)
{
    const cJSON *a = NULL;
    kiln_status st = kiln__json_get_node(path, c, "layers", true, false, &a);
    int k = st ? 0 : cJSON_GetArraySize(a);
    if (!st && k > KILN_TABULAR_MAX_LAYERS) st = kiln__err(KILN_STATUS_FORMAT, "%s: config.layers has %d sizes (at most %d)", path, k, KILN_TABULAR_MAX_LAYERS);
    for (int i = 0; !st && i < k; i++) {
        double v;
        if (!(st = kiln__json_f64_of(path, "config.layers", i, cJSON_GetArrayItem(a, i), &v)) && !(v >= 1 && v <= 1e7 && v == floor(v)))
            st = kiln__err(KILN_STATUS_FORMAT, "%s: config.layers[%d] %g is not a size", path, i, v);
        if (!st) layers[i] = (int64_t)v;
    }
    if (!st) *n = k;
    return st;
}

/* config.y_range: null or [lo, hi] with lo < hi */
static kiln_status read_y_range(const char *path, const cJSON *c, bool *on, double *lo, double *hi)
{
    const cJSON *y = cJSON_GetObjectItemCaseSensitive(c, "y_range");
    *on = false;
    if (!y || cJSON_IsNull(y)) return KILN_STATUS_OK;
    kiln_status st = cJSON_IsArray(y) && cJSON_GetArraySize(y) == 2 ? KILN_STATUS_OK
                   : kiln__err(KILN_STATUS_FORMAT, "%s: config.y_range is not null or [lo, hi]", path);
    if (!st) st = kiln__json_f64_of(path, "config.y_range", 0, cJSON_GetArrayItem(y, 0), lo);
    if (!st) st = kiln__json_f64_of(path, "config.y_range", 1, cJSON_GetArrayItem(y, 1), hi);
    if (!st && !(*lo < *hi)) st = kiln__err(KILN_STATUS_FORMAT, "%s: config.y_range [%g, %g] needs lo < hi", path, *lo, *hi);
    if (!st) *on = true;
    return st;
}

/* dir/model.json of a tabular or collab export into t */
static kiln_status read_json(const char *dir, tab_part *t)
{
    char path[4096];
    cJSON *j;
    const cJSON *c = NULL, *tr = NULL;
    const char *task = NULL;
    kiln_status st = kiln__read_model_json(dir, NULL, path, sizeof path, &j);
    if (st) return st;
    st = kiln__json_get_str(path, j, "task", true, &task);
    if (!st && strcmp(task, "tabular") && strcmp(task, "collab"))
        st = kiln__err(KILN_STATUS_FORMAT, "%s: task is \"%s\", not \"tabular\" or \"collab\"", path, task);
    if (!st) t->collab = !strcmp(task, "collab");
    if (!st) st = kiln__json_get_node(path, j, "config", true, true, &c);
    if (!st && !t->collab) {
        double ps[KILN_TABULAR_MAX_LAYERS] = {0}, ep = 0;
        const cJSON *pa = NULL;
        t->tp = kiln_tabular_learner_default_params();
        st = read_layers(path, c, &t->tp.n_layers, t->tp.layers);
        if (!st) st = kiln__json_get_node(path, c, "ps", true, false, &pa);
        if (!st && cJSON_GetArraySize(pa) != t->tp.n_layers) st = kiln__err(KILN_STATUS_FORMAT, "%s: config.ps needs one dropout per layer", path);
        for (int k = 0; !st && k < t->tp.n_layers; k++) {
            st = kiln__json_f64_of(path, "config.ps", k, cJSON_GetArrayItem(pa, k), &ps[k]);
            if (!st && !(ps[k] >= 0 && ps[k] < 1)) st = kiln__err(KILN_STATUS_FORMAT, "%s: config.ps[%d] %g is not in [0, 1)", path, k, ps[k]);
            t->tp.ps[k] = (float)ps[k];
        }
        if (!st) st = kiln__json_get_f64(path, c, "embed_p", true, &ep);
        if (!st && !(ep >= 0 && ep < 1)) st = kiln__err(KILN_STATUS_FORMAT, "%s: config.embed_p %g is not in [0, 1)", path, ep);
        t->tp.embed_p = (float)ep;
        if (!st) st = read_y_range(path, c, &t->tp.y_range, &t->tp.y_lo, &t->tp.y_hi);
    } else if (!st) {
        t->cp = kiln_collab_learner_default_params();
        st = kiln__json_get_i64(path, c, "n_factors", true, &t->cp.n_factors);
        if (!st && (t->cp.n_factors < 1 || t->cp.n_factors > 100000)) st = kiln__err(KILN_STATUS_FORMAT, "%s: config.n_factors %lld is not in [1, 100000]", path, (long long)t->cp.n_factors);
        if (!st) st = kiln__json_get_bool(path, c, "use_nn", true, &t->cp.use_nn);
        if (!st && t->cp.use_nn) st = read_layers(path, c, &t->cp.n_layers, t->cp.layers);
        if (!st) st = read_y_range(path, c, &t->cp.y_range, &t->cp.y_lo, &t->cp.y_hi);
        if (!st) st = kiln__json_get_bool(path, c, "sparse", false, &t->cp.sparse);
    }
    if (!st) st = kiln__json_get_node(path, j, "training", false, true, &tr);
    if (!st && tr) st = kiln__json_get_u64(path, tr, "seed", false, &t->seed);
    cJSON_Delete(j);
    return st;
}

kiln_learner *kiln_tabular_learner_load(kiln_ctx *ctx, const char *dir)
{
    if (!ctx || !dir) return kiln__errp(KILN_STATUS_INVALID, "tabular_learner_load: NULL argument");
    char pm[4096], pp[4096];
    if (kiln__path(pm, sizeof pm, dir, "model.safetensors") || kiln__path(pp, sizeof pp, dir, "procs.json")) return NULL;
    tab_part *t = calloc(1, sizeof *t);
    if (!t) return kiln__errp(KILN_STATUS_NOMEM, "tabular_learner_load: out of memory");
    if (read_json(dir, t) || !(t->procs = kiln_tab_procs_load(pp)) || kiln__tab_part_classes(t) ||
        (t->collab && kiln__collab_seen_load(t, dir))) {
        tab_part_free(t);
        return NULL;
    }
    kiln_learner_params lp = kiln_learner_default_params();
    lp.seed = t->seed;
    lp.progress = KILN_PROGRESS_STYLE_QUIET;
    kiln_learner *l = kiln__tab_learner(ctx, t, NULL, t->collab ? t->cp.wd : 1e-2, pm, &lp);
    if (l) {
        kiln_model_train(kiln_learner_model(l), false);
        kiln_clear_error();
    }
    return l;
}

/* ---- forward ---------------------------------------------------------------------------------- */

kiln_tensor *kiln__tab_forward(kiln_learner *l, kiln_tensor *x)
{
    kiln_model *m = kiln_learner_model(l);
    kiln_ctx *ctx = kiln_learner_ctx(l);
    bool was = kiln_model_training(m), grad = kiln_grad_enabled(ctx);
    kiln_model_train(m, false);
    kiln_set_grad_enabled(ctx, false);
    kiln_tensor *y = kiln_model_forward(m, ctx, x);
    kiln_tensor *yc = y ? kiln_contiguous(ctx, y) : NULL;
    kiln_set_grad_enabled(ctx, grad);
    kiln_model_train(m, was);
    return yc;
}
