/* LSTM module: one batch-first layer with torch.nn.LSTM's parameter names (weight_ih_l0,
 * weight_hh_l0, bias_ih_l0, bias_hh_l0), gate order (i, f, g, o) and init U(+-1/sqrt(H)).
 * Stacked or dropped-out LSTMs (AWD-LSTM) are built from several of these. */
#include "nn/nn_internal.h"

#include <math.h>

kiln_tensor *kiln_lstm_module_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *h0,
                                      kiln_tensor *c0, kiln_tensor **hn, kiln_tensor **cn)
{
    KILN_IN(x);
    if (!m || m->kind != KILN_MODULE_LSTM)
        return kiln__errp(KILN_STATUS_INVALID, "lstm_module_forward: %s '%s' is not an LSTM", m ? m->type : "(null)",
                          m ? m->path : "");
    if (!m->model->allocated)
        return kiln__errp(KILN_STATUS_STATE, "lstm_module_forward: '%s' before kiln_model_alloc", m->path);
    /* x (B, T, I), h0/c0 (B, H) -> y (B, T, H), hn/cn (B, H) */
    kiln_tensor *y = kiln_lstm(ctx, x, h0, c0, m->weight, m->weight_hh, m->bias, m->bias_hh, hn, cn);
    if (!y) return NULL;
    m->out_ndim = y->ndim;
    for (int i = 0; i < y->ndim; i++) m->out_shape[i] = y->shape[i];
    return y;
}

static kiln_tensor *lstm_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    return kiln_lstm(ctx, x, NULL, NULL, m->weight, m->weight_hh, m->bias, m->bias_hh, NULL, NULL);
}

static kiln_status lstm_init(kiln_module *m, kiln_ctx *ctx)
{
    float k = (float)(1.0 / sqrt((double)m->out));
    kiln_tensor *ps[4] = {m->weight, m->weight_hh, m->bias, m->bias_hh};
    for (int i = 0; i < 4; i++) {
        if (!ps[i]) continue;
        kiln_status st = kiln_init_uniform(ctx, ps[i], -k, k);
        if (st < 0) return st;
    }
    return KILN_STATUS_OK;
}

kiln_module *kiln_nn_lstm(kiln_module *parent, const char *name, int64_t input, int64_t hidden, bool bias)
{
    if (parent && (input < 1 || hidden < 1))
        return kiln__nn_err(parent->model, KILN_STATUS_INVALID, "nn: LSTM under '%s': input %lld and hidden %lld must be >= 1",
                            parent->path, (long long)input, (long long)hidden);
    kiln_module *m = kiln__nn_add(parent, name, KILN_MODULE_LSTM, "LSTM", lstm_forward, lstm_init);
    if (!m) return NULL;
    m->in = input;
    m->out = hidden;
    const int64_t g = 4 * hidden;
    if (!(m->weight = kiln__nn_param(m, "weight_ih_l0", 2, (int64_t[]){g, input}, false))) return NULL;     /* (4H, I) */
    if (!(m->weight_hh = kiln__nn_param(m, "weight_hh_l0", 2, (int64_t[]){g, hidden}, false))) return NULL; /* (4H, H) */
    if (bias) {
        if (!(m->bias = kiln__nn_param(m, "bias_ih_l0", 1, (int64_t[]){g}, false))) return NULL; /* (4H) */
        if (!(m->bias_hh = kiln__nn_param(m, "bias_hh_l0", 1, (int64_t[]){g}, false))) return NULL;
    }
    return m;
}
