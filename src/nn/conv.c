/* Conv2d module (torch.nn.Conv2d): weight (out, in/groups, kh, kw), optional bias (out),
 * reset_parameters as PyTorch: U(+-1/sqrt(fan_in)) for both. */
#include "nn/nn_internal.h"

#include <math.h>

/* x (N, in, H, W) -> (N, out, OH, OW) */
static kiln_tensor *conv2d_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    return kiln_conv2d(ctx, x, m->weight, m->bias, &m->conv);
}

static kiln_status conv2d_init(kiln_module *m, kiln_ctx *ctx)
{
    int64_t fan_in = kiln_init_fan(m->weight, false);
    float bound = fan_in > 0 ? (float)(1.0 / sqrt((double)fan_in)) : 0.0f;
    kiln_status st = kiln_init_uniform(ctx, m->weight, -bound, bound);
    if (st == KILN_STATUS_OK && m->bias) st = kiln_init_uniform(ctx, m->bias, -bound, bound);
    return st;
}

kiln_module *kiln_nn_conv2d(kiln_module *parent, const char *name, int64_t in, int64_t out, int kh, int kw,
                            const kiln_conv2d_params *p, bool bias)
{
    kiln_conv2d_params cp = p ? *p : kiln_conv2d_default_params();
    if (parent && (in < 1 || out < 1 || kh < 1 || kw < 1 || cp.groups < 1 || in % cp.groups || out % cp.groups))
        return kiln__nn_err(parent->model, KILN_STATUS_INVALID,
                            "nn: Conv2d under '%s': in %lld, out %lld, kernel %dx%d, groups %d (channels must be "
                            ">= 1 and divisible by groups)",
                            parent->path, (long long)in, (long long)out, kh, kw, cp.groups);
    kiln_module *m = kiln__nn_add(parent, name, KILN_MODULE_CONV2D, "Conv2d", conv2d_forward, conv2d_init);
    if (!m) return NULL;
    m->in = in;
    m->out = out;
    m->kh = kh;
    m->kw = kw;
    m->conv = cp;
    m->weight = kiln__nn_param(m, "weight", 4, (int64_t[]){out, in / cp.groups, kh, kw}, false);
    if (!m->weight) return NULL;
    if (bias && !(m->bias = kiln__nn_param(m, "bias", 1, (int64_t[]){out}, false))) return NULL;
    return m;
}
