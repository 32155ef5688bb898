/* fastai v2's TabularModel (tabular/model.py, lin_first=True) and the pieces collab.c shares:
 * fastai's Embedding (trunc-normal init), SigmoidRange, emb_sz_rule, and the conversion of the
 * category-code columns of one f32 input (kiln/models.h's input convention) into indices.
 *
 *   x (B, n_cat + n_cont) -> codes (B) per categorical column -> embeds.K -> (B, d_K)
 *   concat (B, n_emb) -> emb_drop;  x[:, n_cat:] (B, n_cont) -> bn_cont
 *   concat (B, n_emb + n_cont) -> layers (LinBnDrop per hidden size, the last Linear,
 *   SigmoidRange) -> (B, out) */
#include "nn/models/tabular_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- shared pieces ------------------------------------------------------------------------ */

int64_t kiln_emb_sz_rule(int64_t n_cat)
{
    if (n_cat < 1) return 0;
    double sz = nearbyint(1.6 * pow((double)n_cat, 0.56)); /* Python's round: half to even */
    return sz < 600 ? (int64_t)sz : 600;
}

/* fastai's trunc_normal_(w, std=0.01): normal_().fmod_(2).mul_(std), |w| < 2 std */
static kiln_status emb_init_trunc(kiln_module *m, kiln_ctx *ctx)
{
    kiln_status st = kiln_init_normal(ctx, m->weight, 0.0f, 1.0f);
    if (st < 0) return st;
    float *w = m->weight->data;
    for (int64_t i = 0, n = kiln_numel(m->weight); i < n; i++) w[i] = fmodf(w[i], 2.0f) * 0.01f;
    return KILN_STATUS_OK;
}

kiln_module *kiln__tab_embedding(kiln_module *parent, const char *name, int64_t n, int64_t dim)
{
    kiln_module *m = kiln_nn_embedding(parent, name, n, dim);
    if (m) m->init = emb_init_trunc;
    return m;
}

typedef struct range_cfg {
    float lo, hi;
} range_cfg;

kiln_tensor *kiln__tab_sigmoid_range_op(kiln_ctx *ctx, kiln_tensor *x, float lo, float hi)
{
    return kiln_add_scalar(ctx, kiln_mul_scalar(ctx, kiln_sigmoid(ctx, x), (float)((double)hi - (double)lo)), lo);
}

static kiln_tensor *sigmoid_range_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    const range_cfg *c = m->user;
    return kiln__tab_sigmoid_range_op(ctx, x, c->lo, c->hi);
}

kiln_module *kiln__tab_sigmoid_range(kiln_module *parent, const char *name, float lo, float hi)
{
    if (parent && !(isfinite(lo) && isfinite(hi) && lo < hi))
        return kiln__nn_err(parent->model, KILN_STATUS_INVALID, "SigmoidRange under '%s': y_range (%g, %g) needs lo < hi",
                            parent->path, (double)lo, (double)hi);
    range_cfg c = {lo, hi};
    return kiln_nn_custom(parent, name, "SigmoidRange", sigmoid_range_forward, &c, sizeof c);
}

kiln_tensor *kiln__tab_check_x(kiln_ctx *ctx, kiln_tensor *x, int64_t width, const char *who, const char *layout)
{
    KILN_IN(x);
    char s[96];
    if (x->dtype != KILN_DTYPE_F32 || x->ndim != 2 || x->shape[1] != width)
        return kiln__errp(KILN_STATUS_INVALID, "%s: input %s is %s %s; expected f32 (batch, %lld): %s", who,
                          kiln__tname(x), kiln_dtype_name(x->dtype), kiln_shape_str(x, s, sizeof s), (long long)width,
                          layout);
    return kiln_contiguous(ctx, x);
}

kiln_tensor *kiln__tab_codes(kiln_ctx *ctx, const kiln_tensor *x, int col, int64_t card, const char *who)
{
    int64_t B = x->shape[0], W = x->shape[1];
    kiln_tensor *idx = kiln_empty(ctx, KILN_DTYPE_I64, 1, (int64_t[]){B}); /* (B) */
    KILN_IN(idx);
    const float *xd = x->data;
    int64_t *id = idx->data;
    for (int64_t b = 0; b < B; b++) {
        float v = xd[b * W + col];
        /* v < card before the cast: a huge or NaN value must not reach (int64_t) */
        if (!(v >= 0.0f && (double)v < (double)card && v == floorf(v)))
            return kiln__errp(KILN_STATUS_INVALID,
                              "%s: input %s row %lld, categorical column %d holds %g, not a category code "
                              "(an integer in [0, %lld), 0 = #na#)",
                              who, kiln__tname(x), (long long)b, col, (double)v, (long long)card);
        id[b] = (int64_t)v;
    }
    return idx;
}

/* ---- TabularModel ---------------------------------------------------------------------------- */

typedef struct tab_cfg {
    int n_cat;
    int64_t n_cont;
    bool bn_cont;      /* has a bn_cont module */
    int64_t card[];    /* (n_cat) */
} tab_cfg;

static const int64_t default_layers[2] = {200, 100};

kiln_tabular_model_params kiln_tabular_model_default_params(void)
{
    return (kiln_tabular_model_params){.n_layers = 2, .layers = default_layers, .use_bn = true, .bn_cont = true};
}

/* x (B, n_cat + n_cont) -> (B, out) */
static kiln_tensor *tab_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    const tab_cfg *c = m->user;
    x = kiln__tab_check_x(ctx, x, c->n_cat + c->n_cont, "TabularModel",
                          "category codes first, then the continuous columns");
    KILN_IN(x);
    kiln_tensor *parts[2];
    int n_parts = 0;
    if (c->n_cat > 0) {
        kiln_module *embeds = m->child[0];
        kiln_tensor **e = kiln_step_alloc(ctx, (size_t)c->n_cat * sizeof *e);
        KILN_IN(e);
        for (int k = 0; k < c->n_cat; k++) {
            kiln_tensor *idx = kiln__tab_codes(ctx, x, k, c->card[k], "TabularModel"); /* (B) */
            e[k] = idx ? kiln_module_forward(embeds->child[k], ctx, idx) : NULL;    /* (B, d_k) */
            KILN_IN(e[k]);
        }
        kiln_tensor *emb = c->n_cat == 1 ? e[0] : kiln_concat(ctx, e, c->n_cat, 1); /* (B, n_emb) */
        parts[n_parts] = emb ? kiln_module_forward(m->child[1], ctx, emb) : NULL;   /* emb_drop */
        KILN_IN(parts[n_parts]);
        n_parts++;
    }
    if (c->n_cont > 0) {
        kiln_tensor *xc = kiln_contiguous(ctx, kiln_slice(ctx, x, 1, c->n_cat, c->n_cat + c->n_cont, 1)); /* (B, n_cont) */
        if (xc && c->bn_cont) xc = kiln_module_forward(m->child[2], ctx, xc);
        KILN_IN(xc);
        parts[n_parts++] = xc;
    }
    kiln_tensor *h = n_parts == 1 ? parts[0] : kiln_concat(ctx, parts, 2, 1); /* (B, n_emb + n_cont) */
    KILN_IN(h);
    return kiln_module_forward(m->child[m->n_child - 1], ctx, h); /* layers */
}

/* LinBnDrop(n_in, n_out, bn, p, act, lin_first=True): Linear(bias=not bn) [-> ReLU]
 * [-> BatchNorm1d(n_out)] [-> Dropout(p) when p != 0]. x (B, n_in) -> (B, n_out) */
static void lin_bn_drop(kiln_module *parent, int64_t n_in, int64_t n_out, bool bn, float p, bool relu)
{
    kiln_module *s = kiln_nn_sequential(parent, NULL);
    kiln_nn_linear(s, NULL, n_in, n_out, !bn);
    if (relu) kiln_nn_relu(s, NULL);
    if (bn) {
        kiln_module *b = kiln_nn_batch_norm1d(s, NULL, n_out, NULL);
        if (b) b->init = kiln__bn_init_fastai;
    }
    if (p != 0.0f) kiln_nn_dropout(s, NULL, p);
}

static const char *check(const kiln_tabular_model_params *p)
{
    static _Thread_local char why[200];
    if (p->n_cat < 0 || (p->n_cat > 0 && !p->cardinality) || p->n_cont < 0 || p->n_cat + p->n_cont < 1) {
        snprintf(why, sizeof why, "n_cat %d (cardinality %s) and n_cont %lld: at least one input column needed",
                 p->n_cat, p->cardinality ? "given" : "NULL", (long long)p->n_cont);
        return why;
    }
    for (int k = 0; k < p->n_cat; k++) {
        int64_t d = p->emb_dims ? p->emb_dims[k] : kiln_emb_sz_rule(p->cardinality[k]);
        if (p->cardinality[k] < 1 || d < 1) {
            snprintf(why, sizeof why, "categorical column %d: cardinality %lld and embedding size %lld must be >= 1", k,
                     (long long)p->cardinality[k], (long long)d);
            return why;
        }
    }
    if (p->n_out < 1 || p->n_layers < 0 || (p->n_layers > 0 && !p->layers)) {
        snprintf(why, sizeof why, "n_out %lld must be >= 1 and the %d hidden sizes given", (long long)p->n_out, p->n_layers);
        return why;
    }
    for (int i = 0; i < p->n_layers; i++) {
        float q = p->ps ? p->ps[i] : 0.0f;
        if (p->layers[i] < 1 || !(q >= 0.0f && q < 1.0f)) {
            snprintf(why, sizeof why, "hidden layer %d: size %lld must be >= 1 and dropout %g in [0, 1)", i,
                     (long long)p->layers[i], (double)q);
            return why;
        }
    }
    if (!(p->embed_p >= 0.0f && p->embed_p < 1.0f)) {
        snprintf(why, sizeof why, "embed_p %g must be in [0, 1)", (double)p->embed_p);
        return why;
    }
    if (p->y_range && !(isfinite(p->y_lo) && isfinite(p->y_hi) && p->y_lo < p->y_hi)) {
        snprintf(why, sizeof why, "y_range (%g, %g) needs finite lo < hi", (double)p->y_lo, (double)p->y_hi);
        return why;
    }
    return NULL;
}

kiln_model *kiln_tabular_model_new(const kiln_tabular_model_params *p)
{
    const char *why = p ? check(p) : "parameters are NULL";
    if (why) return kiln__errp(KILN_STATUS_INVALID, "tabular_model: %s", why);
    size_t bytes = sizeof(tab_cfg) + (size_t)p->n_cat * sizeof(int64_t);
    tab_cfg *c = calloc(1, bytes);
    kiln_model *model = c ? kiln_model_new() : NULL;
    if (!model) {
        free(c);
        return c ? NULL : kiln__errp(KILN_STATUS_NOMEM, "tabular_model: out of memory");
    }
    c->n_cat = p->n_cat;
    c->n_cont = p->n_cont;
    c->bn_cont = p->bn_cont && p->n_cont > 0;
    if (p->n_cat > 0) memcpy(c->card, p->cardinality, (size_t)p->n_cat * sizeof(int64_t));
    kiln_module *root = kiln_model_root(model);
    /* children in fastai's order: embeds, emb_drop, [bn_cont], layers (the forward finds
     * embeds and emb_drop at 0 and 1, bn_cont at 2, layers last) */
    kiln_module *embeds = kiln_nn_sequential(root, "embeds"); /* a ModuleList: its forward is never called */
    int64_t n_emb = 0;
    for (int k = 0; k < p->n_cat; k++) {
        int64_t d = p->emb_dims ? p->emb_dims[k] : kiln_emb_sz_rule(p->cardinality[k]);
        kiln__tab_embedding(embeds, NULL, p->cardinality[k], d); /* (card_k, d_k) */
        n_emb += d;
    }
    kiln_nn_dropout(root, "emb_drop", p->embed_p);
    if (c->bn_cont) kiln_nn_batch_norm1d(root, "bn_cont", p->n_cont, NULL); /* torch's init: bias 0 */
    kiln_module *layers = kiln_nn_sequential(root, "layers");
    int64_t prev = n_emb + p->n_cont; /* (B, prev) */
    for (int i = 0; i < p->n_layers; i++) {
        lin_bn_drop(layers, prev, p->layers[i], p->use_bn, p->ps ? p->ps[i] : 0.0f, true);
        prev = p->layers[i];
    }
    lin_bn_drop(layers, prev, p->n_out, p->use_bn && p->bn_final, 0.0f, false); /* -> (B, out) */
    if (p->y_range) kiln__tab_sigmoid_range(layers, NULL, p->y_lo, p->y_hi);
    if (model->build_status == KILN_STATUS_OK &&
        kiln_module_set_forward(root, "TabularModel", tab_forward, c, bytes) < 0)
        kiln__nn_fail(model);
    free(c);
    if (model->build_status != KILN_STATUS_OK) {
        kiln__err(model->build_status, "tabular_model: %s", model->build_msg);
        kiln_model_free(model);
        return NULL;
    }
    return model;
}
