/* Parameter-free layers: ReLU, Dropout (active only in train mode) and Flatten. */
#include "nn/nn_internal.h"

static kiln_tensor *relu_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    return kiln_relu(ctx, x);
}

kiln_module *kiln_nn_relu(kiln_module *parent, const char *name)
{
    return kiln__nn_add(parent, name, KILN_MODULE_RELU, "ReLU", relu_forward, NULL);
}

/* Inverted dropout: train mode zeroes with probability p and scales by 1/(1-p). */
static kiln_tensor *dropout_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    return kiln_dropout(ctx, x, m->p, m->model->training, NULL);
}

kiln_module *kiln_nn_dropout(kiln_module *parent, const char *name, float p)
{
    if (parent && !(p >= 0.0f && p < 1.0f))
        return kiln__nn_err(parent->model, KILN_STATUS_INVALID, "nn: Dropout under '%s': p %g must be in [0, 1)",
                            parent->path, (double)p);
    kiln_module *m = kiln__nn_add(parent, name, KILN_MODULE_DROPOUT, "Dropout", dropout_forward, NULL);
    if (m) m->p = p;
    return m;
}

/* x (N, ...) -> (N, prod(...)), as nn.Flatten(start_dim=1) */
static kiln_tensor *flatten_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    if (x->ndim < 2) {
        char s[96];
        return kiln__errp(KILN_STATUS_INVALID, "Flatten: x of shape %s needs a batch dim and at least one more",
                          kiln_shape_str(x, s, sizeof s));
    }
    return kiln_flatten(ctx, x, 1, -1);
}

kiln_module *kiln_nn_flatten(kiln_module *parent, const char *name)
{
    return kiln__nn_add(parent, name, KILN_MODULE_FLATTEN, "Flatten", flatten_forward, NULL);
}
