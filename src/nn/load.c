/* The general state-dict loader: every key of a file is mapped onto a model entry (another
 * naming, a wrapper such as DataParallel's "module.", a prefix), entries left alone on purpose
 * (a new head) are skipped, the first conv may be adapted from RGB weights as fastai does, and
 * every key is checked before any is copied. What it finds goes into a kiln_load_report
 * (load_report.c); strict makes any missing, unexpected or mis-shaped key an error. */
#include "nn/nn_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBT ".num_batches_tracked"
#define MSG_LISTED 6 /* names per list in an error message */

/* What became of one model entry. */
enum { E_NONE = 0, E_OK, E_ADAPT, E_BAD };

typedef struct plan {
    size_t nf, n, nm;    /* file keys, store entries, modules */
    size_t strip;        /* wrapper length removed from every file key */
    size_t *src;         /* per store entry: file index + 1 (0: none) */
    unsigned char *state;/* per store entry: E_* */
    size_t *nbt;         /* per module: file index + 1 of its num_batches_tracked (0: none) */
    size_t n_loadable;   /* entries E_OK or E_ADAPT */
} plan;

static void plan_free(plan *pl)
{
    free(pl->src);
    free(pl->state);
    free(pl->nbt);
}

kiln_load_params kiln_load_default_params(void)
{
    return (kiln_load_params){.strip_wrappers = true};
}

static bool is_bn(const kiln_module *m)
{
    return m->kind == KILN_MODULE_BATCH_NORM1D || m->kind == KILN_MODULE_BATCH_NORM2D;
}

static bool is_float(kiln_dtype d)
{
    return d == KILN_DTYPE_F32 || d == KILN_DTYPE_F16 || d == KILN_DTYPE_BF16;
}

/* Length of the wrappers ("module.", "model.", or both) that every key of f starts with and no
 * entry of the model does. */
static size_t wrapper_len(kiln_model *model, const kiln_st_file *f)
{
    static const char *const W[2] = {"module.", "model."};
    size_t total = 0, nf = kiln_st_count(f), n = kiln_store_count(model->store);
    for (bool again = nf > 0; again;) {
        again = false;
        for (int w = 0; w < 2 && !again; w++) {
            size_t len = strlen(W[w]);
            bool all = true;
            for (size_t j = 0; j < nf && all; j++) all = strncmp(kiln_st_name(f, j) + total, W[w], len) == 0;
            for (size_t i = 0; i < n && all; i++) all = strncmp(kiln_store_at(model->store, i)->name, W[w], len) != 0;
            if (all) total += len, again = true;
        }
    }
    return total;
}

static ptrdiff_t store_index(kiln_model *model, const char *key)
{
    for (size_t i = 0; i < kiln_store_count(model->store); i++)
        if (strcmp(kiln_store_at(model->store, i)->name, key) == 0) return (ptrdiff_t)i;
    return -1;
}

/* The BatchNorm module whose counter is key ("0.1.num_batches_tracked"), or NULL. */
static kiln_module *nbt_owner(kiln_model *model, const char *key)
{
    size_t n = strlen(key), s = strlen(NBT);
    if (n < s || strcmp(key + n - s, NBT) != 0) return NULL;
    char path[640];
    if (n - s >= sizeof path) return NULL;
    memcpy(path, key, n - s);
    path[n - s] = '\0';
    kiln_module *m = kiln_model_find(model, path);
    return m && is_bn(m) ? m : NULL;
}

static bool skipped(kiln_model *model, const kiln_load_params *p, size_t i)
{
    return p->skip && p->skip(model, i, p->user);
}

/* The first Conv2d's weight when it may be adapted from RGB weights, else NULL. */
static kiln_tensor *first_conv(kiln_model *model, const kiln_load_params *p)
{
    if (!p->adapt_first_conv) return NULL;
    for (size_t k = 0; k < model->n_mods; k++) {
        kiln_module *m = model->mods[k];
        if (m->kind != KILN_MODULE_CONV2D || !m->weight) continue;
        ptrdiff_t i = store_index(model, m->weight->name);
        if (i >= 0 && !skipped(model, p, (size_t)i)) return m->weight;
    }
    return NULL;
}

/* File (O, 3, kh, kw) into model (O, c, kh, kw), c != 3. */
static bool adaptable(const kiln_tensor *t, int nd, const int64_t *fs)
{
    return t->ndim == 4 && nd == 4 && fs[1] == 3 && t->shape[1] != 3 && fs[0] == t->shape[0] && fs[2] == t->shape[2] &&
           fs[3] == t->shape[3];
}

/* File key j as a report entry (its name, dtype and shape), with a view of its bytes. */
static kiln_status file_key(const kiln_st_file *f, size_t j, kiln_load_key *k, const void **data, size_t *nbytes)
{
    *k = (kiln_load_key){.key = (char *)kiln_st_name(f, j)};
    return kiln_st_info(f, k->key, &k->dtype, &k->file_ndim, k->file_shape, data, nbytes);
}

/* Checks file key j, mapped onto store entry i; records a mismatch or an adaptation. */
static kiln_status check_entry(kiln_model *model, const kiln_st_file *f, plan *pl, size_t j, size_t i,
                               const kiln_tensor *conv, kiln_load_report *r)
{
    kiln_tensor *t = kiln_store_at(model->store, i);
    kiln_load_key k;
    const void *data;
    size_t nbytes;
    kiln_status st = file_key(f, j, &k, &data, &nbytes);
    if (st) return st;
    kiln_tensor ft;
    kiln_tensor_wrap(&ft, k.dtype, k.file_ndim, k.file_shape, NULL);
    pl->src[i] = j + 1;
    if (is_float(k.dtype) && kiln_same_shape(&ft, t)) {
        pl->state[i] = E_OK;
        pl->n_loadable++;
        return KILN_STATUS_OK;
    }
    bool adapt = is_float(k.dtype) && t == conv && adaptable(t, k.file_ndim, k.file_shape);
    pl->state[i] = adapt ? E_ADAPT : E_BAD;
    pl->n_loadable += adapt;
    k.model_key = (char *)t->name;
    k.model_ndim = t->ndim;
    memcpy(k.model_shape, t->shape, sizeof k.model_shape);
    return adapt ? kiln__load_report_add(&r->adapted, &r->n_adapted, &k)
                 : kiln__load_report_add(&r->mismatched, &r->n_mismatched, &k);
}

/* A BatchNorm counter: one I64, else a mis-shaped key. */
static kiln_status check_counter(const kiln_st_file *f, plan *pl, size_t j, kiln_module *m, kiln_load_report *r)
{
    kiln_load_key k;
    const void *data;
    size_t nbytes;
    kiln_status st = file_key(f, j, &k, &data, &nbytes);
    if (st) return st;
    if (k.dtype == KILN_DTYPE_I64 && nbytes == sizeof(int64_t)) {
        pl->nbt[m->index] = j + 1;
        return KILN_STATUS_OK;
    }
    char mk[700];
    snprintf(mk, sizeof mk, "%s%s", m->path, NBT);
    k.model_key = mk;
    return kiln__load_report_add(&r->mismatched, &r->n_mismatched, &k);
}

/* Maps every key of the file and checks it; fills the plan and the report's lists. */
static kiln_status check(kiln_model *model, const kiln_st_file *f, const kiln_load_params *p, plan *pl,
                         kiln_load_report *r)
{
    pl->nf = kiln_st_count(f);
    pl->n = kiln_store_count(model->store);
    pl->nm = model->n_mods;
    pl->strip = p->strip_wrappers ? wrapper_len(model, f) : 0;
    if (!(pl->src = calloc(pl->n + 1, sizeof *pl->src)) ||
        !(pl->state = calloc(pl->n + 1, 1)) || !(pl->nbt = calloc(pl->nm + 1, sizeof *pl->nbt)))
        return kiln__err(KILN_STATUS_NOMEM, "model_load: out of memory");
    if (pl->strip && !(r->stripped = strndup(kiln_st_name(f, 0), pl->strip)))
        return kiln__err(KILN_STATUS_NOMEM, "model_load: out of memory");
    r->n_file = pl->nf;
    const kiln_tensor *conv = first_conv(model, p);
    char out[700];
    kiln_status st = KILN_STATUS_OK;
    for (size_t j = 0; j < pl->nf && !st; j++) {
        const char *key = kiln_st_name(f, j), *name = key + pl->strip;
        kiln_key_map how = KILN_KEY_MAPPED;
        if (p->map) how = p->map(name, out, sizeof out, p->user);
        else if (snprintf(out, sizeof out, "%s", name) >= (int)sizeof out) how = KILN_KEY_UNMAPPED;
        if (how == KILN_KEY_DROPPED) {
            r->n_skipped++;
            continue;
        }
        ptrdiff_t i = how == KILN_KEY_MAPPED ? store_index(model, out) : -1;
        kiln_module *bn = how == KILN_KEY_MAPPED && i < 0 ? nbt_owner(model, out) : NULL;
        kiln_load_key k = {.key = (char *)key};
        if (i >= 0 && skipped(model, p, (size_t)i))
            r->n_skipped++;
        else if (i >= 0 && !pl->src[i])
            st = check_entry(model, f, pl, j, (size_t)i, conv, r);
        else if (bn && skipped(model, p, bn->first_entry))
            r->n_skipped++;
        else if (bn && !pl->nbt[bn->index])
            st = check_counter(f, pl, j, bn, r);
        else /* maps onto nothing, or onto an entry an earlier key gave */
            st = kiln__load_report_add(&r->unexpected, &r->n_unexpected, &k);
    }
    for (size_t i = 0; i < pl->n && !st; i++) {
        if (skipped(model, p, i)) continue;
        r->n_model++;
        if (pl->src[i]) continue;
        kiln_tensor *t = kiln_store_at(model->store, i);
        kiln_load_key k = {.key = (char *)t->name, .model_key = (char *)t->name};
        if (p->name && p->name(t->name, out, sizeof out, p->user)) k.key = out;
        st = kiln__load_report_add(&r->missing, &r->n_missing, &k);
    }
    return st;
}

/* The error for a load that cannot go on, naming the keys; OK when it can. */
static kiln_status verdict(kiln_model *model, const kiln_st_file *f, const kiln_load_params *p, const plan *pl,
                           kiln_load_report *r)
{
    const char *caller = p->caller ? p->caller : "model_load", *target = p->target ? p->target : "the model";
    const char *path = kiln_st_path(f);
    bool any_mapped = pl->n_loadable || r->n_mismatched;
    for (size_t k = 0; k < pl->nm && !any_mapped; k++) any_mapped = pl->nbt[k] != 0;
    if (p->hint && (kiln_load_report_has_problems(r) || !pl->n_loadable)) r->hint = p->hint(f, r, pl->n_loadable, p->user);
    if (r->n_model == 0)
        return kiln__err(KILN_STATUS_INVALID, "%s: the model has nothing %s can load into (every entry is skipped)",
                         caller, path);
    if (!any_mapped) {
        if (r->hint) return kiln__err(KILN_STATUS_INVALID, "%s: no key of %s maps onto %s: %s", caller, path, target, r->hint);
        return kiln__err(KILN_STATUS_INVALID, "%s: no key of %s maps onto %s (the file has \"%s\", ...; the model \"%s\", ...)",
                         caller, path, target, pl->nf ? kiln_st_name(f, 0) : "", kiln_store_at(model->store, 0)->name);
    }
    if (pl->n_loadable && !(p->strict && kiln_load_report_has_problems(r))) return KILN_STATUS_OK;
    char *msg = NULL;
    size_t len = 0;
    FILE *s = open_memstream(&msg, &len);
    if (!s) return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", caller);
    kiln__load_report_lists(r, s, MSG_LISTED, true);
    if (r->hint) fprintf(s, " (%s)", r->hint);
    fclose(s);
    kiln_status st = pl->n_loadable ? kiln__err(KILN_STATUS_INVALID, "%s: %s (strict): %s", caller, path, msg ? msg : "")
                                    : kiln__err(KILN_STATUS_INVALID, "%s: nothing of %s loads into %s: %s", caller, path,
                                                target, msg ? msg : "");
    free(msg);
    return st;
}

/* fastai _load_pretrained_weights: w (O, c, kh, kw) from rgb (O, 3, kh, kw). */
static void adapt_first_conv(kiln_tensor *w, const float *rgb)
{
    int64_t o = w->shape[0], c = w->shape[1], k = w->shape[2] * w->shape[3];
    float *d = w->data;
    for (int64_t i = 0; i < o; i++) {
        const float *src = rgb + i * 3 * k;
        float *dst = d + i * c * k;
        for (int64_t j = 0; j < k; j++) {
            if (c == 1) {
                dst[j] = src[j] + src[k + j] + src[2 * k + j]; /* sum(dim=1, keepdim=True) */
            } else if (c == 2) {
                dst[j] = src[j] * 1.5f; /* weight[:, :2] * 3 / 2 */
                dst[k + j] = src[k + j] * 1.5f;
            } else {
                for (int64_t ch = 0; ch < c; ch++) dst[ch * k + j] = ch < 3 ? src[ch * k + j] : 0.0f;
            }
        }
    }
}

/* Everything checked: copies. Only the adaptation buffer can fail, before any copy. */
static kiln_status copy(kiln_model *model, const kiln_st_file *f, const plan *pl, kiln_load_report *r)
{
    kiln_tensor *conv = NULL;
    for (size_t i = 0; i < pl->n; i++)
        if (pl->state[i] == E_ADAPT) conv = kiln_store_at(model->store, i);
    float *rgb = NULL;
    kiln_tensor tmp;
    kiln_status st = KILN_STATUS_OK;
    if (conv) {
        int64_t shape[4] = {conv->shape[0], 3, conv->shape[2], conv->shape[3]};
        if (!(rgb = malloc((size_t)(shape[0] * 3 * shape[2] * shape[3]) * sizeof(float))))
            return kiln__err(KILN_STATUS_NOMEM, "model_load: out of memory");
        kiln_tensor_wrap(&tmp, KILN_DTYPE_F32, 4, shape, rgb);
    }
    for (size_t i = 0; i < pl->n && !st; i++) {
        if (pl->state[i] != E_OK && pl->state[i] != E_ADAPT) continue;
        kiln_tensor *t = kiln_store_at(model->store, i);
        const char *key = kiln_st_name(f, pl->src[i] - 1);
        if (pl->state[i] == E_ADAPT && !(st = kiln_st_load_into(f, key, &tmp))) adapt_first_conv(t, rgb);
        else if (pl->state[i] == E_OK) st = kiln_st_load_into(f, key, t);
        r->n_loaded += !st;
    }
    free(rgb);
    for (size_t k = 0; k < pl->nm && !st; k++) {
        if (!pl->nbt[k]) continue;
        kiln_load_key key;
        const void *data;
        size_t nbytes;
        if (!(st = file_key(f, pl->nbt[k] - 1, &key, &data, &nbytes))) {
            memcpy(&model->mods[k]->num_batches_tracked, data, sizeof(int64_t));
            r->n_counters++;
        }
    }
    return st;
}

kiln_status kiln_model_load_mapped(kiln_model *model, const kiln_st_file *f, const kiln_load_params *params,
                                   kiln_load_report *report)
{
    kiln_load_report local;
    kiln_load_report *r = report ? report : &local;
    memset(r, 0, sizeof *r);
    kiln_load_params p = params ? *params : kiln_load_default_params();
    const char *caller = p.caller ? p.caller : "model_load";
    if (!model || !f) return kiln__err(KILN_STATUS_INVALID, "%s: needs a model and a file", caller);
    if (!model->allocated) return kiln__err(KILN_STATUS_STATE, "%s: call kiln_model_alloc first", caller);
    r->strict = p.strict;
    if (!(r->path = strdup(kiln_st_path(f)))) return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", caller);
    plan pl = {0};
    kiln_status st = check(model, f, &p, &pl, r);
    if (!st) st = verdict(model, f, &p, &pl, r);
    if (!st) st = copy(model, f, &pl, r);
    plan_free(&pl);
    if (!report) kiln_load_report_free(&local);
    return kiln__done(st);
}

kiln_status kiln_model_load_mapped_file(kiln_model *model, const char *path, const kiln_load_params *p,
                                        kiln_load_report *report)
{
    if (report) memset(report, 0, sizeof *report);
    const char *caller = p && p->caller ? p->caller : "model_load";
    if (!path) return kiln__err(KILN_STATUS_INVALID, "%s: path is NULL", caller);
    kiln_st_file *f = NULL;
    kiln_status st = kiln_weights_open(path, &f); /* safetensors or .pth */
    if (st < 0) return st;
    st = kiln_model_load_mapped(model, f, p, report);
    kiln_st_close(f);
    return st;
}
