/* Linear and Embedding modules (torch.nn.Linear, torch.nn.Embedding): parameter names,
 * shapes and reset_parameters as PyTorch. */
#include "nn/nn_internal.h"

#include <math.h>

/* x (..., in) -> (..., out) */
static kiln_tensor *linear_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    return kiln_linear(ctx, x, m->weight, m->bias);
}

/* kaiming_uniform_(a=sqrt(5)) reduces to U(+-1/sqrt(fan_in)); the bias uses the same bound. */
static kiln_status linear_init(kiln_module *m, kiln_ctx *ctx)
{
    float bound = m->in > 0 ? (float)(1.0 / sqrt((double)m->in)) : 0.0f;
    kiln_status st = kiln_init_uniform(ctx, m->weight, -bound, bound);
    if (st == KILN_STATUS_OK && m->bias) st = kiln_init_uniform(ctx, m->bias, -bound, bound);
    return st;
}

kiln_module *kiln_nn_linear(kiln_module *parent, const char *name, int64_t in, int64_t out, bool bias)
{
    if (parent && (in < 1 || out < 1))
        return kiln__nn_err(parent->model, KILN_STATUS_INVALID, "nn: Linear under '%s': in %lld and out %lld must be >= 1",
                            parent->path, (long long)in, (long long)out);
    kiln_module *m = kiln__nn_add(parent, name, KILN_MODULE_LINEAR, "Linear", linear_forward, linear_init);
    if (!m) return NULL;
    m->in = in;
    m->out = out;
    m->weight = kiln__nn_param(m, "weight", 2, (int64_t[]){out, in}, false); /* (out, in) */
    if (!m->weight) return NULL;
    if (bias && !(m->bias = kiln__nn_param(m, "bias", 1, (int64_t[]){out}, false))) return NULL; /* (out) */
    return m;
}

/* idx (any shape, integer) -> (idx..., dim) */
static kiln_tensor *embedding_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    return kiln_embedding(ctx, x, m->weight);
}

static kiln_status embedding_init(kiln_module *m, kiln_ctx *ctx)
{
    return kiln_init_normal(ctx, m->weight, 0.0f, 1.0f);
}

kiln_module *kiln_nn_embedding(kiln_module *parent, const char *name, int64_t n, int64_t dim)
{
    if (parent && (n < 1 || dim < 1))
        return kiln__nn_err(parent->model, KILN_STATUS_INVALID, "nn: Embedding under '%s': n %lld and dim %lld must be >= 1",
                            parent->path, (long long)n, (long long)dim);
    kiln_module *m = kiln__nn_add(parent, name, KILN_MODULE_EMBEDDING, "Embedding", embedding_forward, embedding_init);
    if (!m) return NULL;
    m->in = n;
    m->out = dim;
    m->weight = kiln__nn_param(m, "weight", 2, (int64_t[]){n, dim}, false); /* (n, dim) */
    return m->weight ? m : NULL;
}
