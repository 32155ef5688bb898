/* fastai's vision head and the model its vision learner builds from a ResNet:
 * nn.Sequential(body, head), body = the ResNet cut before avgpool/fc ("0"), head ("1") =
 *   AdaptiveConcatPool2d(1) -> Flatten -> [BatchNorm1d(2nf) -> Dropout(ps/2) -> Linear(2nf, 512)
 *   -> ReLU] -> [BatchNorm1d(512) -> Dropout(ps) -> Linear(512, n_classes)]
 * flat, as fastai's create_head extends one list with each LinBnDrop's layers, so the names
 * are "1.0" .. "1.8". fastai v2 LinBnDrop: Linear(bias=not bn), so no bias after a
 * BatchNorm1d (the default here; v1_head gives v1's bn_drop_lin, with biases), and its
 * BatchNorm1d starts with weight 1, bias 1e-3. Dropouts with p == 0 are left out, as fastai.
 * Layer groups as fastai v2's resnet split: {body[:6]}, {body[6:]}, {head}. */
#include "nn/nn_internal.h"

#include "kiln/models.h"

#include <stdio.h>

kiln_vision_model_params kiln_vision_model_default_params(void)
{
    return (kiln_vision_model_params){.n_classes = 0, .lin_ftrs = 512, .ps = 0.5f, .concat_pool = true, .v1_head = false,
                                .frozen = false};
}

/* fastai apply_init(head, nn.init.kaiming_normal_): weight N(0, sqrt(2 / fan_in)), bias 0. */
static kiln_status linear_init_kaiming(kiln_module *m, kiln_ctx *ctx)
{
    kiln_status st = kiln_init_kaiming_normal(ctx, m->weight, 0.0f, false);
    if (st == KILN_STATUS_OK && m->bias) st = kiln_init_constant(m->bias, 0.0f);
    return st;
}

kiln_status kiln__bn_init_fastai(kiln_module *m, kiln_ctx *ctx)
{
    (void)ctx;
    kiln_status st = kiln_init_constant(m->running_mean, 0.0f);
    if (st == KILN_STATUS_OK) st = kiln_init_constant(m->running_var, 1.0f);
    if (st == KILN_STATUS_OK) st = kiln_init_constant(m->weight, 1.0f);
    if (st == KILN_STATUS_OK) st = kiln_init_constant(m->bias, 1e-3f);
    m->num_batches_tracked = 0;
    return st;
}

/* One LinBnDrop (bn=True): BatchNorm1d(ni) [-> Dropout(p)] -> Linear(ni, no) [-> ReLU].
 * x (N, ni) -> (N, no) */
static void lin_bn_drop(kiln_module *head, int64_t ni, int64_t no, float p, bool relu, bool v1)
{
    kiln_module *bn = kiln_nn_batch_norm1d(head, NULL, ni, NULL);
    if (bn && !v1) bn->init = kiln__bn_init_fastai;
    if (p != 0.0f) kiln_nn_dropout(head, NULL, p);
    kiln_module *lin = kiln_nn_linear(head, NULL, ni, no, v1);
    if (lin) lin->init = linear_init_kaiming;
    if (relu) kiln_nn_relu(head, NULL);
}

static const char *check(const kiln_vision_model_params *p)
{
    static _Thread_local char why[160];
    if (p->n_classes < 1 || p->lin_ftrs < 1)
        snprintf(why, sizeof why, "n_classes %lld and lin_ftrs %lld must be >= 1", (long long)p->n_classes,
                 (long long)p->lin_ftrs);
    else if (!(p->ps >= 0.0f && p->ps < 1.0f))
        snprintf(why, sizeof why, "ps %g must be in [0, 1)", (double)p->ps);
    else
        return NULL;
    return why;
}

kiln_module *kiln_vision_model_head(kiln_module *parent, const char *name, int64_t nf, const kiln_vision_model_params *p)
{
    if (!parent) {
        if (!kiln__has_error()) kiln__err(KILN_STATUS_INVALID, "vision_model_head: parent module is NULL");
        return NULL;
    }
    const char *why = p ? check(p) : "parameters are NULL";
    if (!why && nf < 1) why = "nf must be >= 1";
    if (why) return kiln__nn_err(parent->model, KILN_STATUS_INVALID, "vision_model_head: %s", why);
    kiln_module *head = kiln_nn_sequential(parent, name);
    if (!head) return NULL;
    int64_t n = nf; /* features after pooling: x (N, nf, H, W) -> (N, n, 1, 1) -> (N, n) */
    if (p->concat_pool) {
        kiln_nn_adaptive_concat_pool2d(head, NULL, 1);
        n = 2 * nf;
    } else {
        kiln_nn_adaptive_avg_pool2d(head, NULL, 1, 1);
    }
    kiln_nn_flatten(head, NULL);
    lin_bn_drop(head, n, p->lin_ftrs, p->ps / 2, true, p->v1_head);          /* (N, n) -> (N, lin_ftrs) */
    lin_bn_drop(head, p->lin_ftrs, p->n_classes, p->ps, false, p->v1_head); /* -> (N, n_classes) */
    return parent->model->build_status == KILN_STATUS_OK ? head : NULL;
}

kiln_model *kiln_vision_model_new(const kiln_resnet_params *body, const kiln_vision_model_params *p)
{
    if (!body || !p) return kiln__errp(KILN_STATUS_INVALID, "vision_model: needs body and head parameters");
    kiln_model *model = kiln_model_new();
    if (!model) return NULL;
    kiln_module *root = kiln_model_root(model);
    kiln_module *b = kiln_resnet_body(root, "0", body);
    if (b) kiln_vision_model_head(root, "1", kiln_resnet_n_features(body), p);
    if (model->build_status == KILN_STATUS_OK) {
        const char *first[2] = {"0.6", "1"};
        if (kiln_model_split(model, 3, first) < 0 || (p->frozen && kiln_model_freeze(model) < 0))
            kiln__nn_fail(model);
    }
    if (model->build_status != KILN_STATUS_OK) {
        kiln__err(model->build_status, "vision_model: %s", model->build_msg);
        kiln_model_free(model);
        return NULL;
    }
    return model;
}
