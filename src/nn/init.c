/* Parameter initialisation as torch.nn.init does it (same distributions, kiln's Philox
 * RNG): uniform, normal, constant, kaiming normal/uniform with PyTorch's fan rules, and
 * fastai's apply_init for heads. */
#include "nn/nn_internal.h"

#include <math.h>

static kiln_status check(const char *op, const kiln_tensor *t)
{
    if (!t) return kiln__err(KILN_STATUS_INVALID, "%s: tensor is NULL", op);
    if (t->dtype != KILN_DTYPE_F32 || !kiln_is_contiguous(t) || (!t->data && kiln_numel(t) > 0))
        return kiln__err(KILN_STATUS_INVALID, "%s: %s must be an allocated contiguous f32 tensor", op, kiln__tname(t));
    return KILN_STATUS_OK;
}

kiln_status kiln_init_uniform(kiln_ctx *ctx, kiln_tensor *t, float lo, float hi)
{
    kiln_status st = check("init_uniform", t);
    if (st < 0) return st;
    kiln_rng_uniform(ctx, t->data, (size_t)kiln_numel(t), lo, hi);
    return KILN_STATUS_OK;
}

kiln_status kiln_init_normal(kiln_ctx *ctx, kiln_tensor *t, float mean, float std)
{
    kiln_status st = check("init_normal", t);
    if (st < 0) return st;
    kiln_rng_normal(ctx, t->data, (size_t)kiln_numel(t), mean, std);
    return KILN_STATUS_OK;
}

kiln_status kiln_init_constant(kiln_tensor *t, float value)
{
    kiln_status st = check("init_constant", t);
    if (st < 0) return st;
    float *d = t->data;
    for (int64_t i = 0, n = kiln_numel(t); i < n; i++) d[i] = value;
    return KILN_STATUS_OK;
}

int64_t kiln_init_fan(const kiln_tensor *t, bool fan_out)
{
    if (!t || t->ndim < 1) return 0;
    if (t->ndim == 1) return t->shape[0];
    int64_t field = 1;
    for (int i = 2; i < t->ndim; i++) field *= t->shape[i];
    return (fan_out ? t->shape[0] : t->shape[1]) * field;
}

static double kaiming_std(const kiln_tensor *t, float a, bool fan_out)
{
    int64_t fan = kiln_init_fan(t, fan_out);
    double gain = sqrt(2.0 / (1.0 + (double)a * a));
    return fan > 0 ? gain / sqrt((double)fan) : 0.0;
}

kiln_status kiln_init_kaiming_normal(kiln_ctx *ctx, kiln_tensor *t, float a, bool fan_out)
{
    kiln_status st = check("init_kaiming_normal", t);
    if (st < 0) return st;
    return kiln_init_normal(ctx, t, 0.0f, (float)kaiming_std(t, a, fan_out));
}

kiln_status kiln_init_kaiming_uniform(kiln_ctx *ctx, kiln_tensor *t, float a, bool fan_out)
{
    kiln_status st = check("init_kaiming_uniform", t);
    if (st < 0) return st;
    float bound = (float)(sqrt(3.0) * kaiming_std(t, a, fan_out));
    return kiln_init_uniform(ctx, t, -bound, bound);
}

kiln_status kiln_module_init_kaiming(kiln_module *m, kiln_ctx *ctx)
{
    if (!m || !ctx) return kiln__err(KILN_STATUS_INVALID, "module_init_kaiming: needs a module and a context");
    kiln_model *model = m->model;
    if (!model->allocated)
        return kiln__err(KILN_STATUS_STATE, "module_init_kaiming: '%s' before kiln_model_alloc", m->path);
    for (size_t i = m->index; i < model->n_mods; i++) {
        kiln_module *s = model->mods[i];
        if (!kiln__nn_contains(m, s)) continue;
        if (s->kind != KILN_MODULE_LINEAR && s->kind != KILN_MODULE_CONV2D && s->kind != KILN_MODULE_EMBEDDING) continue;
        kiln_status st = kiln_init_kaiming_normal(ctx, s->weight, 0.0f, false);
        if (st == KILN_STATUS_OK && s->bias) st = kiln_init_constant(s->bias, 0.0f);
        if (st < 0) return st;
    }
    return KILN_STATUS_OK;
}
