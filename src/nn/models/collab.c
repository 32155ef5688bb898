/* Collaborative filtering models (fastai v2 collab.py): EmbeddingDotBias, its tables for the
 * application layer, and EmbeddingNN as a TabularModel over the two code columns.
 *
 *   x (B, 2) codes [user, item] -> u (B), i (B)
 *   u_weight[u] (B, F) * i_weight[i] (B, F) summed over F (B, 1) + u_bias[u] (B, 1) + i_bias[i] (B, 1)
 *   -> [sigmoid_range] -> (B, 1) */
#include "nn/models/tabular_internal.h"

#include <math.h>
#include <string.h>

typedef struct dot_cfg {
    int64_t n_users, n_items;
    bool has_y_range;
    float lo, hi;
} dot_cfg;

/* x (B, 2) -> (B, 1) */
static kiln_tensor *dot_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    const dot_cfg *c = m->user;
    x = kiln__tab_check_x(ctx, x, 2, "EmbeddingDotBias", "the codes [user, item]");
    KILN_IN(x);
    kiln_tensor *u = kiln__tab_codes(ctx, x, 0, c->n_users, "EmbeddingDotBias"); /* (B) */
    kiln_tensor *i = u ? kiln__tab_codes(ctx, x, 1, c->n_items, "EmbeddingDotBias") : NULL;
    KILN_IN(i);
    kiln_tensor *uw = kiln_module_forward(m->child[0], ctx, u); /* (B, F) */
    kiln_tensor *iw = kiln_module_forward(m->child[1], ctx, i); /* (B, F) */
    kiln_tensor *ub = kiln_module_forward(m->child[2], ctx, u); /* (B, 1) */
    kiln_tensor *ib = kiln_module_forward(m->child[3], ctx, i); /* (B, 1) */
    if (!uw || !iw || !ub || !ib) return NULL;
    kiln_tensor *dot = kiln_sum_dims(ctx, kiln_mul(ctx, uw, iw), 1, (int[]){1}, true); /* (B, 1) */
    kiln_tensor *res = kiln_add(ctx, kiln_add(ctx, dot, ub), ib);
    return c->has_y_range ? kiln__tab_sigmoid_range_op(ctx, res, c->lo, c->hi) : res;
}

kiln_model *kiln_collab_dot_bias_new(int64_t n_users, int64_t n_items, int64_t n_factors, bool y_range, float y_lo,
                                     float y_hi)
{
    if (n_users < 1 || n_items < 1 || n_factors < 1)
        return kiln__errp(KILN_STATUS_INVALID, "collab_dot_bias: n_users %lld, n_items %lld and n_factors %lld must be >= 1",
                          (long long)n_users, (long long)n_items, (long long)n_factors);
    if (y_range && !(isfinite(y_lo) && isfinite(y_hi) && y_lo < y_hi))
        return kiln__errp(KILN_STATUS_INVALID, "collab_dot_bias: y_range (%g, %g) needs finite lo < hi", (double)y_lo,
                          (double)y_hi);
    kiln_model *model = kiln_model_new();
    if (!model) return NULL;
    kiln_module *root = kiln_model_root(model);
    dot_cfg c = {n_users, n_items, y_range, y_lo, y_hi};
    kiln__tab_embedding(root, "u_weight", n_users, n_factors); /* (n_users, F) */
    kiln__tab_embedding(root, "i_weight", n_items, n_factors); /* (n_items, F) */
    kiln__tab_embedding(root, "u_bias", n_users, 1);           /* (n_users, 1) */
    kiln__tab_embedding(root, "i_bias", n_items, 1);           /* (n_items, 1) */
    if (model->build_status == KILN_STATUS_OK &&
        kiln_module_set_forward(root, "EmbeddingDotBias", dot_forward, &c, sizeof c) < 0)
        kiln__nn_fail(model);
    if (model->build_status != KILN_STATUS_OK) {
        kiln__err(model->build_status, "collab_dot_bias: %s", model->build_msg);
        kiln_model_free(model);
        return NULL;
    }
    return model;
}

kiln_status kiln_collab_tables_of(kiln_model *model, kiln_collab_tables *out)
{
    if (!model || !out) return kiln__err(KILN_STATUS_INVALID, "collab_tables_of: needs a model and an output");
    kiln_module *root = kiln_model_root(model);
    if (strcmp(kiln_module_type(root), "EmbeddingDotBias") != 0)
        return kiln__err(KILN_STATUS_INVALID, "collab_tables_of: the model is a %s, not an EmbeddingDotBias",
                         kiln_module_type(root));
    if (!kiln_model_allocated(model))
        return kiln__err(KILN_STATUS_STATE, "collab_tables_of: the model is not allocated (kiln_model_alloc)");
    const dot_cfg *c = kiln_module_user(root);
    *out = (kiln_collab_tables){.u_weight = root->child[0]->weight, .i_weight = root->child[1]->weight,
                                .u_bias = root->child[2]->weight, .i_bias = root->child[3]->weight,
                                .n_users = c->n_users, .n_items = c->n_items,
                                .n_factors = root->child[0]->weight->shape[1]};
    return KILN_STATUS_OK;
}

kiln_model *kiln_collab_nn_new(int64_t n_users, int64_t n_items, int n_layers, const int64_t *layers, bool y_range,
                               float y_lo, float y_hi)
{
    int64_t card[2] = {n_users, n_items};
    kiln_tabular_model_params t = kiln_tabular_model_default_params();
    t.n_cat = 2, t.cardinality = card, t.n_cont = 0, t.n_out = 1;
    t.n_layers = n_layers, t.layers = layers;
    t.y_range = y_range, t.y_lo = y_lo, t.y_hi = y_hi;
    kiln_model *m = kiln_tabular_model_new(&t);
    if (!m) kiln__err_prefix(kiln_last_status(), "collab_nn");
    return m;
}
