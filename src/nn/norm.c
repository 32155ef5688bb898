/* BatchNorm1d / BatchNorm2d modules (torch.nn.BatchNorm*d): affine weight (C) = 1 and
 * bias (C) = 0, buffers running_mean (C) = 0 and running_var (C) = 1, momentum 0.1,
 * eps 1e-5. The model's train flag picks batch statistics (updating the running ones and
 * num_batches_tracked) or the running statistics. kiln_model_sync_batchnorm gives the modules a
 * communicator of N > 1 ranks: training-mode statistics are then every rank's batch's
 * (kiln_sync_batch_norm, SyncBatchNorm). */
#include "nn/nn_internal.h"

kiln_bn_params kiln_bn_default_params(void)
{
    return (kiln_bn_params){.momentum = 0.1f, .eps = 1e-5f, .affine = true};
}

/* x (N, C), (N, C, L) [1d] or (N, C, H, W) [2d] -> same shape; relu: max(0, bn(x)) as
 * one op, for a Sequential whose next child is a ReLU (module.c). */
kiln_tensor *kiln__nn_batch_norm_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x, bool relu)
{
    bool two_d = m->kind == KILN_MODULE_BATCH_NORM2D;
    if (two_d ? x->ndim != 4 : (x->ndim != 2 && x->ndim != 3)) {
        char s[96];
        return kiln__errp(KILN_STATUS_INVALID, "%s: expected %s input, got x of shape %s", m->type,
                          two_d ? "4-D (N, C, H, W)" : "2-D (N, C) or 3-D (N, C, L)", kiln_shape_str(x, s, sizeof s));
    }
    bool train = m->model->training;
    kiln_tensor *y = train && m->comm ? (relu ? kiln_sync_batch_norm_relu : kiln_sync_batch_norm)(
                                            ctx, m->comm, x, m->weight, m->bias, m->running_mean, m->running_var,
                                            train, m->bn.momentum, m->bn.eps)
                   : (relu ? kiln_batch_norm_relu : kiln_batch_norm)(ctx, x, m->weight, m->bias, m->running_mean,
                                                                     m->running_var, train, m->bn.momentum, m->bn.eps);
    if (y && train) m->num_batches_tracked++;
    return y;
}

static kiln_tensor *bn_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    return kiln__nn_batch_norm_forward(m, ctx, x, false);
}

static kiln_status bn_init(kiln_module *m, kiln_ctx *ctx)
{
    kiln_status st = kiln_init_constant(m->running_mean, 0.0f);
    if (st == KILN_STATUS_OK) st = kiln_init_constant(m->running_var, 1.0f);
    if (st == KILN_STATUS_OK && m->weight) st = kiln_init_constant(m->weight, 1.0f);
    if (st == KILN_STATUS_OK && m->bias) st = kiln_init_constant(m->bias, 0.0f);
    m->num_batches_tracked = 0;
    return st;
}

static kiln_module *bn_new(kiln_module *parent, const char *name, kiln_module_kind kind, const char *type, int64_t c,
                           const kiln_bn_params *p)
{
    kiln_bn_params bp = p ? *p : kiln_bn_default_params();
    if (parent && (c < 1 || !(bp.eps >= 0)))
        return kiln__nn_err(parent->model, KILN_STATUS_INVALID, "nn: %s under '%s': %lld features, eps %g", type,
                            parent->path, (long long)c, (double)bp.eps);
    kiln_module *m = kiln__nn_add(parent, name, kind, type, bn_forward, bn_init);
    if (!m) return NULL;
    m->in = m->out = c;
    m->bn = bp;
    const int64_t shape[1] = {c}; /* (C) */
    if (bp.affine) {
        if (!(m->weight = kiln__nn_param(m, "weight", 1, shape, false))) return NULL;
        if (!(m->bias = kiln__nn_param(m, "bias", 1, shape, false))) return NULL;
    }
    if (!(m->running_mean = kiln__nn_param(m, "running_mean", 1, shape, true))) return NULL;
    if (!(m->running_var = kiln__nn_param(m, "running_var", 1, shape, true))) return NULL;
    return m;
}

kiln_module *kiln_nn_batch_norm1d(kiln_module *parent, const char *name, int64_t c, const kiln_bn_params *p)
{
    return bn_new(parent, name, KILN_MODULE_BATCH_NORM1D, "BatchNorm1d", c, p);
}

kiln_module *kiln_nn_batch_norm2d(kiln_module *parent, const char *name, int64_t c, const kiln_bn_params *p)
{
    return bn_new(parent, name, KILN_MODULE_BATCH_NORM2D, "BatchNorm2d", c, p);
}

kiln_status kiln_model_sync_batchnorm(kiln_model *model, kiln_comm *c)
{
    if (!model) return kiln__err(KILN_STATUS_INVALID, "model_sync_batchnorm: NULL model");
    kiln_comm *sync = kiln_comm_size(c) > 1 ? c : NULL; /* one rank: today's per-rank path */
    for (size_t i = 0; i < model->n_mods; i++) {
        kiln_module *m = model->mods[i];
        if (m->kind == KILN_MODULE_BATCH_NORM1D || m->kind == KILN_MODULE_BATCH_NORM2D) m->comm = sync;
    }
    return KILN_STATUS_OK;
}
