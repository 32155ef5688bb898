/* Pooling modules: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, AdaptiveMaxPool2d and fastai's
 * AdaptiveConcatPool2d (cat([max, avg], dim=1), max first, as fastai). No parameters. */
#include "nn/nn_internal.h"

/* x (N, C, H, W) -> (N, C, OH, OW) */
static kiln_tensor *max_pool_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    return kiln_max_pool2d(ctx, x, &m->pool);
}

static kiln_tensor *avg_pool_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    return kiln_avg_pool2d(ctx, x, &m->pool);
}

static kiln_tensor *adaptive_avg_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    return kiln_adaptive_avg_pool2d(ctx, x, m->oh, m->ow);
}

static kiln_tensor *adaptive_max_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    return kiln_adaptive_max_pool2d(ctx, x, m->oh, m->ow);
}

/* x (N, C, H, W) -> (N, 2C, s, s): max channels first, then average */
static kiln_tensor *concat_pool_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    kiln_tensor *parts[2] = {kiln_adaptive_max_pool2d(ctx, x, m->oh, m->ow),
                             kiln_adaptive_avg_pool2d(ctx, x, m->oh, m->ow)};
    KILN_IN(parts[0]);
    KILN_IN(parts[1]);
    return kiln_concat(ctx, parts, 2, 1);
}

static kiln_module *pool_new(kiln_module *parent, const char *name, kiln_module_kind kind, const char *type,
                             kiln_forward_fn fn, const kiln_pool2d_params *p)
{
    kiln_module *m = kiln__nn_add(parent, name, kind, type, fn, NULL);
    if (m) m->pool = p ? *p : kiln_pool2d_default_params(2, 2, 0);
    return m;
}

kiln_module *kiln_nn_max_pool2d(kiln_module *parent, const char *name, const kiln_pool2d_params *p)
{
    return pool_new(parent, name, KILN_MODULE_MAX_POOL2D, "MaxPool2d", max_pool_forward, p);
}

kiln_module *kiln_nn_avg_pool2d(kiln_module *parent, const char *name, const kiln_pool2d_params *p)
{
    return pool_new(parent, name, KILN_MODULE_AVG_POOL2D, "AvgPool2d", avg_pool_forward, p);
}

static kiln_module *adaptive_new(kiln_module *parent, const char *name, kiln_module_kind kind, const char *type,
                                 kiln_forward_fn fn, int oh, int ow)
{
    if (parent && (oh < 1 || ow < 1))
        return kiln__nn_err(parent->model, KILN_STATUS_INVALID, "nn: %s under '%s': output size %dx%d must be >= 1", type,
                            parent->path, oh, ow);
    kiln_module *m = kiln__nn_add(parent, name, kind, type, fn, NULL);
    if (m) m->oh = oh, m->ow = ow;
    return m;
}

kiln_module *kiln_nn_adaptive_avg_pool2d(kiln_module *parent, const char *name, int oh, int ow)
{
    return adaptive_new(parent, name, KILN_MODULE_ADAPTIVE_AVG_POOL2D, "AdaptiveAvgPool2d", adaptive_avg_forward, oh, ow);
}

kiln_module *kiln_nn_adaptive_max_pool2d(kiln_module *parent, const char *name, int oh, int ow)
{
    return adaptive_new(parent, name, KILN_MODULE_ADAPTIVE_MAX_POOL2D, "AdaptiveMaxPool2d", adaptive_max_forward, oh, ow);
}

kiln_module *kiln_nn_adaptive_concat_pool2d(kiln_module *parent, const char *name, int size)
{
    return adaptive_new(parent, name, KILN_MODULE_ADAPTIVE_CONCAT_POOL2D, "AdaptiveConcatPool2d", concat_pool_forward,
                        size, size);
}
