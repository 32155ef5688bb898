/* The ULMFiT text classifier (kiln/models.h): the AWD_LSTM body read in bptt chunks (fastai's
 * SentenceEncoder), masked concat pooling and fastai's PoolingLinearClassifier head. */
#include "nn/models/awd_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct enc_cfg {
    int64_t bptt, max_len;
} enc_cfg;

typedef struct clas_cfg {
    int64_t pad_idx;
} clas_cfg;

/* x (B, L) -> the encoder's outputs of the last min(L, max_len) tokens (B, T', emb), from zero state */
static kiln_tensor *sentence_encoder_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    KILN_IN(x);
    const enc_cfg *c = m->user;
    kiln_module *awd = m->child[0];
    if (x->ndim != 2)
        return kiln__errp(KILN_STATUS_INVALID, "SentenceEncoder: input %s must be (batch, length) token ids", kiln__tname(x));
    kiln__awd_body_reset(awd);
    int64_t L = x->shape[1];
    kiln_tensor *outs[4096];
    int n = 0;
    for (int64_t i = 0; i < L; i += c->bptt) {
        int64_t e = i + c->bptt < L ? i + c->bptt : L;
        kiln_tensor *chunk = kiln_contiguous(ctx, kiln_slice(ctx, x, 1, i, e, 1));
        kiln_tensor *o = chunk ? kiln_module_forward(awd, ctx, chunk) : NULL;
        if (!o) return NULL;
        if (L - i <= c->max_len) { /* fastai: keep the chunks that start within the last max_len tokens */
            if (n == (int)(sizeof outs / sizeof outs[0]))
                return kiln__errp(KILN_STATUS_INVALID, "SentenceEncoder: more than %d kept chunks", n);
            outs[n++] = o;
        }
    }
    return n == 1 ? outs[0] : kiln_concat(ctx, outs, n, 1);
}

/* fastai's masked_concat_pool with padding first: h (B, T, E), ids (B, T) -> (B, 3E) */
static kiln_tensor *masked_concat_pool(kiln_ctx *ctx, kiln_tensor *h, kiln_tensor *ids, int64_t pad_idx)
{
    int64_t B = h->shape[0], T = h->shape[1], E = h->shape[2];
    kiln_tensor *keep = kiln_empty(ctx, KILN_DTYPE_F32, 3, (int64_t[]){B, T, 1});
    kiln_tensor *pad = kiln_empty(ctx, KILN_DTYPE_F32, 3, (int64_t[]){B, T, 1});
    kiln_tensor *count = kiln_empty(ctx, KILN_DTYPE_F32, 2, (int64_t[]){B, 1});
    kiln_tensor *idc = kiln_contiguous(ctx, ids);
    if (!keep || !pad || !count || !idc) return NULL;
    const int64_t *id = idc->data;
    float *k = keep->data, *p = pad->data, *cnt = count->data;
    for (int64_t b = 0; b < B; b++) {
        cnt[b] = 0;
        for (int64_t t = 0; t < T; t++) {
            bool is_pad = id[b * T + t] == pad_idx;
            k[b * T + t] = is_pad ? 0.0f : 1.0f;
            p[b * T + t] = is_pad ? 1.0f : 0.0f;
            cnt[b] += is_pad ? 0.0f : 1.0f;
        }
        if (cnt[b] == 0) cnt[b] = 1; /* a row of padding only: its mean is 0, not NaN */
    }
    kiln_tensor *last = kiln_reshape(ctx, kiln_slice(ctx, h, 1, T - 1, T, 1), 2, (int64_t[]){B, E});
    kiln_tensor *mx = kiln_max_dim(ctx, kiln_masked_fill(ctx, h, pad, -INFINITY), 1, false, NULL);
    kiln_tensor *avg = kiln_div(ctx, kiln_sum_dims(ctx, kiln_mul(ctx, h, keep), 1, (int[]){1}, false), count);
    if (!last || !mx || !avg) return NULL;
    kiln_tensor *parts[3] = {last, mx, avg};
    return kiln_concat(ctx, parts, 3, 1);
}

/* x (B, L) -> encoder -> pooling -> head -> (B, n_classes) */
static kiln_tensor *clas_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    kiln_tensor *h = kiln_module_forward(m->child[0], ctx, x);
    KILN_IN(h);
    int64_t L = x->shape[1], T = h->shape[1];
    kiln_tensor *kept = kiln_slice(ctx, x, 1, L - T, L, 1); /* the ids of the kept outputs */
    const clas_cfg *c = m->user;
    kiln_tensor *pooled = kept ? masked_concat_pool(ctx, h, kept, c->pad_idx) : NULL;
    return pooled ? kiln_module_forward(m->child[1], ctx, pooled) : NULL;
}

static kiln_tensor *pooling_linear_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    return kiln_module_forward(m->child[0], ctx, x);
}

/* fastai's LinBnDrop(n_in, n_out, p, act, lin_first=False): BatchNorm1d, Dropout, Linear without bias */
static void lin_bn_drop(kiln_module *parent, int64_t n_in, int64_t n_out, float p, bool relu)
{
    kiln_module *s = kiln_nn_sequential(parent, NULL);
    kiln_nn_batch_norm1d(s, "0", n_in, NULL);
    kiln_nn_dropout(s, "1", p);
    kiln_nn_linear(s, "2", n_in, n_out, false);
    if (relu) kiln_nn_relu(s, "3");
}

kiln_awd_lstm_params kiln_awd_lstm_clas_config(int64_t vocab, float drop_mult)
{
    return (kiln_awd_lstm_params){.vocab = vocab, .emb = 400, .hid = 1152, .n_layers = 3, .output_p = 0.4f * drop_mult,
                                  .hidden_p = 0.3f * drop_mult, .input_p = 0.4f * drop_mult,
                                  .embed_p = 0.05f * drop_mult, .weight_p = 0.5f * drop_mult};
}

kiln_awd_clas_params kiln_awd_clas_default_params(int64_t vocab, int64_t n_classes, float drop_mult)
{
    return (kiln_awd_clas_params){.enc = kiln_awd_lstm_clas_config(vocab, drop_mult), .n_classes = n_classes,
                                  .bptt = 70, .max_len = 1400, .lin_ftrs = 50, .head_p = 0.1f, .pad_idx = 1};
}

kiln_model *kiln_awd_lstm_clas_new(const kiln_awd_clas_params *p)
{
    if (!p || !kiln__awd_params_ok(&p->enc) || p->n_classes < 2 || p->bptt < 1 || p->max_len < 1 || p->lin_ftrs < 1 ||
        !(p->head_p >= 0 && p->head_p < 1))
        return kiln__errp(KILN_STATUS_INVALID, "awd_lstm_clas: an AWD-LSTM config, >= 2 classes, bptt, max_len and "
                                               "lin_ftrs >= 1 and head_p in [0, 1) needed");
    kiln_model *model = kiln_model_new();
    if (!model) return NULL;
    kiln_module *root = kiln_model_root(model);
    clas_cfg cc = {p->pad_idx};
    kiln_module_set_forward(root, "SequentialRNN", clas_forward, &cc, sizeof cc);
    enc_cfg c = {p->bptt, p->max_len};
    kiln_module *se = kiln_nn_custom(root, "0", "SentenceEncoder", sentence_encoder_forward, &c, sizeof c);
    kiln_module *awd = kiln__awd_body(se, "module", &p->enc);
    kiln_module *head = kiln_nn_custom(root, "1", "PoolingLinearClassifier", pooling_linear_forward, NULL, 0);
    kiln_module *layers = kiln_nn_sequential(head, "layers");
    lin_bn_drop(layers, 3 * p->enc.emb, p->lin_ftrs, p->enc.output_p, true);
    lin_bn_drop(layers, p->lin_ftrs, p->n_classes, p->head_p, false);
    if (model->build_status != KILN_STATUS_OK || !awd) {
        kiln__err(model->build_status ? model->build_status : KILN_STATUS_NOMEM, "awd_lstm_clas: %s", model->build_msg);
        kiln_model_free(model);
        return NULL;
    }
    /* fastai's classifier split: embedding, each LSTM, the head */
    kiln_module_set_group(awd->child[0], 0);
    for (int l = 0; l < p->enc.n_layers; l++) kiln_module_set_group(awd->child[1]->child[l], l + 1);
    kiln_module_set_group(head, p->enc.n_layers + 1);
    return model;
}
