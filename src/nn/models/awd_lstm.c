/* AWD-LSTM language model (kiln/models.h), fastai v2's AWD_LSTM + LinearDecoder in a
 * SequentialRNN: embedding with EmbeddingDropout, RNNDropout (variational) on the input,
 * between LSTMs and on the output, DropConnect (WeightDropout) on each weight_hh_l0, a tied
 * decoder, and the hidden state carried across forwards, detached. Checked against PyTorch
 * with the dropouts off (tests/test_awd_lstm.c, tests/fixtures/gen_awd.py). */
#include "kiln/models.h"
#include "nn/nn_internal.h"
#include "nn/models/awd_internal.h"
#include "kiln/autograd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct awd_state {
    kiln_awd_lstm_params p;
    int64_t bs;                           /* rows of h and c; 0: zeros of any size */
    int mode;                             /* train (1) / eval (0) mode of the last forward; -1: none */
    float *h[KILN_AWD_MAX_LAYERS], *c[KILN_AWD_MAX_LAYERS]; /* (bs, n_out(l)) */
    kiln_tensor *raw, *dropped;           /* last forward's last LSTM output, before / after output_p */
    bool fused;                           /* kiln_awd_lstm_set_fused_decoder: train forwards stop before the Linear */
    kiln_tensor *dec_in;                  /* what the last forward returned in place of logits, or NULL */
} awd_state;

typedef struct awd_ref {
    kiln_module *awd; /* the AWD_LSTM module (holds the state), its encoder */
    kiln_module *encoder;
} awd_ref;

static int64_t n_out(const kiln_awd_lstm_params *p, int l) { return l == p->n_layers - 1 ? p->emb : p->hid; }

static void state_free(void *s)
{
    awd_state *st = s;
    if (!st) return;
    for (int l = 0; l < KILN_AWD_MAX_LAYERS; l++) free(st->h[l]), free(st->c[l]);
    free(st);
}

/* fastai's _change_hidden: keep the first min(old, new) rows, zeros for the others */
static kiln_status change_bs(awd_state *st, int64_t bs)
{
    for (int l = 0; l < st->p.n_layers; l++) {
        int64_t nh = n_out(&st->p, l), keep = st->bs < bs ? st->bs : bs;
        float *h = calloc((size_t)(bs * nh), sizeof *h), *c = calloc((size_t)(bs * nh), sizeof *c);
        if (!h || !c) {
            free(h);
            free(c);
            return kiln__err(KILN_STATUS_NOMEM, "awd_lstm: out of memory for the hidden state of %lld rows", (long long)bs);
        }
        if (keep && st->h[l]) {
            memcpy(h, st->h[l], (size_t)(keep * nh) * sizeof *h);
            memcpy(c, st->c[l], (size_t)(keep * nh) * sizeof *c);
        }
        free(st->h[l]);
        free(st->c[l]);
        st->h[l] = h;
        st->c[l] = c;
    }
    st->bs = bs;
    return KILN_STATUS_OK;
}

/* x * mask, mask (shape) of 0 and 1/(1-p), in train mode with p > 0 */
static kiln_tensor *variational(kiln_ctx *ctx, kiln_tensor *x, bool train, float p, int ndim, const int64_t *shape)
{
    if (!train || p <= 0) return x;
    kiln_tensor *mask = kiln_dropout_mask(ctx, ndim, shape, p);
    return mask ? kiln_apply_mask(ctx, x, mask) : NULL;
}

/* nn.Embedding(padding_idx=1) as fastai makes it: where x is xxpad (id 1) the output is w's row 1
 * (times the embedding dropout's mask (V, 1), when there is one) but no gradient flows into it.
 * emb (B, T, E) from w (V, E); unchanged when x holds no pad. */
static kiln_tensor *pad_no_grad(kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *w, kiln_tensor *mask, kiln_tensor *emb)
{
    const int64_t pad = 1, B = x->shape[0], T = x->shape[1], E = emb->shape[2];
    kiln_tensor *xc = kiln_contiguous(ctx, x);
    if (!xc) return NULL;
    const int64_t *id = xc->data;
    bool any = false;
    for (int64_t i = 0; i < B * T && !any; i++) any = id[i] == pad;
    if (!any || w->shape[0] <= pad) return emb;
    kiln_tensor *keep = kiln_empty(ctx, KILN_DTYPE_F32, 3, (int64_t[]){B, T, 1});
    kiln_tensor *row = kiln_detach(ctx, kiln_contiguous(ctx, kiln_slice(ctx, w, 0, pad, pad + 1, 1))); /* (1, E) */
    if (row && mask) row = kiln_mul(ctx, row, kiln_slice(ctx, mask, 0, pad, pad + 1, 1)); /* (1, E) * (1, 1) */
    if (!keep || !row) return NULL;
    for (int64_t i = 0; i < B * T; i++) ((float *)keep->data)[i] = id[i] == pad ? 0.0f : 1.0f;
    /* emb * keep + row * (1 - keep) */
    kiln_tensor *padpart = kiln_mul(ctx, kiln_reshape(ctx, row, 3, (int64_t[]){1, 1, E}),
                                    kiln_add_scalar(ctx, kiln_neg(ctx, keep), 1.0f));
    return kiln_add(ctx, kiln_mul(ctx, emb, keep), padpart);
}

/* x (B, T) -> the last LSTM's output (B, T, emb), state carried */
static kiln_tensor *awd_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    KILN_IN(x);
    awd_state *st = m->state;
    const kiln_awd_lstm_params *p = &st->p;
    bool train = m->model->training;
    if (x->ndim != 2)
        return kiln__errp(KILN_STATUS_INVALID, "awd_lstm: input %s must be (batch, time) token ids", kiln__tname(x));
    int64_t B = x->shape[0];
    if (B != st->bs && change_bs(st, B)) return NULL;
    if (st->mode != (int)train) { /* fastai's RNNCallback: reset before training and before validating */
        kiln__awd_body_reset(m);
        st->mode = train;
    }
    kiln_module *enc = m->child[0], *rnns = m->child[1];
    /* EmbeddingDropout: whole rows of the weight, one mask (vocab, 1) per forward. fastai embeds x
     * in w * mask; w[x] * mask[x] are the same values (one product per element) without a (vocab,
     * emb) copy of the weight and its dense gradient (2 x 32 MB at vocab 20,000) */
    int64_t vshape[2] = {p->vocab, 1};
    kiln_tensor *emask = NULL;
    if (train && p->embed_p > 0 && !(emask = kiln_dropout_mask(ctx, 2, vshape, p->embed_p))) return NULL;
    kiln_tensor *out = kiln_embedding(ctx, x, enc->weight);
    if (out && emask) out = kiln_apply_mask(ctx, out, kiln_embedding(ctx, x, emask)); /* (B, T, E) * (B, T, 1) */
    out = out ? pad_no_grad(ctx, x, enc->weight, emask, out) : NULL;
    int64_t dshape[3] = {B, 1, p->emb};
    out = out ? variational(ctx, out, train, p->input_p, 3, dshape) : NULL;
    for (int l = 0; l < p->n_layers && out; l++) {
        kiln_module *lstm = rnns->child[l]->child[0];
        int64_t nh = n_out(p, l), hs[2] = {B, nh};
        /* WeightDropout (DropConnect on weight_hh_l0) inside the LSTM node: the dropped copy is
         * made in scratch by the forward and again by the backward, not kept between them */
        float wp = train ? p->weight_p : 0.0f;
        kiln_tensor *h0 = kiln_from_data(ctx, KILN_DTYPE_F32, 2, hs, st->h[l]);
        kiln_tensor *c0 = kiln_from_data(ctx, KILN_DTYPE_F32, 2, hs, st->c[l]);
        if (!h0 || !c0) return NULL;
        kiln_tensor *hn, *cn;
        out = kiln_lstm_weight_drop(ctx, out, h0, c0, lstm->weight, lstm->weight_hh, lstm->bias, lstm->bias_hh, wp,
                                    &hn, &cn);
        if (!out) return NULL;
        /* detached: the values only */
        kiln_tensor *hc = kiln_is_contiguous(hn) ? hn : kiln_contiguous(ctx, hn);
        kiln_tensor *cc = kiln_is_contiguous(cn) ? cn : kiln_contiguous(ctx, cn);
        if (!hc || !cc) return NULL;
        memcpy(st->h[l], hc->data, (size_t)(B * nh) * sizeof(float));
        memcpy(st->c[l], cc->data, (size_t)(B * nh) * sizeof(float));
        if (l < p->n_layers - 1) {
            int64_t hshape[3] = {B, 1, nh};
            out = variational(ctx, out, train, p->hidden_p, 3, hshape);
        }
    }
    st->raw = out;
    st->dropped = NULL;
    st->dec_in = NULL;
    return out;
}

/* (B, T, emb) -> output dropout -> tied Linear -> (B, T, vocab); with the fused decoder in train
 * mode it stops before the Linear (kiln_awd_lstm_loss applies it chunk by chunk) */
static kiln_tensor *decoder_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    KILN_IN(x);
    const awd_ref *r = m->user;
    awd_state *st = r->awd->state;
    int64_t shape[3] = {x->shape[0], 1, st->p.emb};
    kiln_tensor *d = variational(ctx, x, m->model->training, st->p.output_p, 3, shape);
    st->dropped = d;
    st->dec_in = NULL;
    if (!d) return NULL;
    if (st->fused && m->model->training) return st->dec_in = d;
    return kiln_linear(ctx, d, r->encoder->weight, m->bias);
}

/* a WeightDropout called on its own (the model never does): its LSTM from zero state */
static kiln_tensor *wd_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    return kiln_module_forward(m->child[0], ctx, x);
}

static kiln_tensor *seq_rnn_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    return kiln_module_forward(m->child[1], ctx, kiln_module_forward(m->child[0], ctx, x));
}

static kiln_status encoder_init(kiln_module *m, kiln_ctx *ctx) { return kiln_init_uniform(ctx, m->weight, -0.1f, 0.1f); }
static kiln_status decoder_init(kiln_module *m, kiln_ctx *ctx) { return kiln_init_constant(m->bias, 0.0f); }

kiln_awd_lstm_params kiln_awd_lstm_lm_config(int64_t vocab, float drop_mult)
{
    return (kiln_awd_lstm_params){.vocab = vocab, .emb = 400, .hid = 1152, .n_layers = 3, .output_p = 0.1f * drop_mult,
                                  .hidden_p = 0.15f * drop_mult, .input_p = 0.25f * drop_mult,
                                  .embed_p = 0.02f * drop_mult, .weight_p = 0.2f * drop_mult};
}

static bool prob(float p) { return p >= 0 && p < 1; }

static bool prob_ok(const kiln_awd_lstm_params *p)
{
    return prob(p->output_p) && prob(p->hidden_p) && prob(p->input_p) && prob(p->embed_p) && prob(p->weight_p);
}

bool kiln__awd_params_ok(const kiln_awd_lstm_params *p)
{
    return p && p->vocab >= 1 && p->emb >= 1 && p->hid >= 1 && p->n_layers >= 1 && p->n_layers <= KILN_AWD_MAX_LAYERS &&
           prob_ok(p);
}

kiln_module *kiln__awd_body(kiln_module *parent, const char *name, const kiln_awd_lstm_params *p)
{
    kiln_module *awd = kiln_nn_custom(parent, name, "AWD_LSTM", awd_forward, NULL, 0);
    kiln_module *enc = kiln_nn_embedding(awd, "encoder", p->vocab, p->emb);
    kiln_module *rnns = kiln_nn_sequential(awd, "rnns");
    for (int l = 0; l < p->n_layers; l++) {
        char nm[16];
        snprintf(nm, sizeof nm, "%d", l);
        kiln_module *wd = kiln_nn_custom(rnns, nm, "WeightDropout", wd_forward, NULL, 0);
        kiln_nn_lstm(wd, "module", l ? p->hid : p->emb, n_out(p, l), true);
    }
    if (!awd || !enc || !rnns) return NULL;
    enc->init = encoder_init;
    awd_state *st = calloc(1, sizeof *st);
    if (!st) return kiln__nn_err(awd->model, KILN_STATUS_NOMEM, "awd_lstm: out of memory");
    st->p = *p;
    st->mode = -1;
    awd->state = st;
    awd->state_free = state_free;
    return awd;
}

bool kiln__awd_is_body(const kiln_module *m) { return m && m->state_free == state_free; }

void kiln__awd_body_reset(kiln_module *awd)
{
    awd_state *st = awd->state;
    for (int l = 0; l < st->p.n_layers; l++)
        if (st->h[l]) {
            memset(st->h[l], 0, (size_t)(st->bs * n_out(&st->p, l)) * sizeof(float));
            memset(st->c[l], 0, (size_t)(st->bs * n_out(&st->p, l)) * sizeof(float));
        }
}

kiln_model *kiln_awd_lstm_lm_new(const kiln_awd_lstm_params *p)
{
    if (!kiln__awd_params_ok(p))
        return kiln__errp(KILN_STATUS_INVALID, "awd_lstm: vocab, emb, hid >= 1, 1..%d layers and dropouts in [0, 1) needed",
                          KILN_AWD_MAX_LAYERS);
    kiln_model *model = kiln_model_new();
    if (!model) return NULL;
    kiln_module *root = kiln_model_root(model);
    kiln_module_set_forward(root, "SequentialRNN", seq_rnn_forward, NULL, 0);
    kiln_module *awd = kiln__awd_body(root, "0", p);
    awd_ref ref = {awd, awd ? awd->child[0] : NULL};
    kiln_module *dec = kiln_nn_custom(root, "1", "LinearDecoder", decoder_forward, &ref, sizeof ref);
    if (model->build_status != KILN_STATUS_OK) {
        kiln__err(model->build_status, "awd_lstm: %s", model->build_msg);
        kiln_model_free(model);
        return NULL;
    }
    /* the decoder's own parameter is its bias ("1.decoder.bias"); its weight is the encoder's */
    dec->bias = kiln__nn_param(dec, "decoder.bias", 1, &p->vocab, false);
    dec->init = decoder_init;
    if (!dec->bias) {
        kiln__err(KILN_STATUS_NOMEM, "awd_lstm: %s", model->build_msg[0] ? model->build_msg : "out of memory");
        kiln_model_free(model);
        return NULL;
    }
    /* fastai's LM split: one group per LSTM (with its dropout), then embedding + decoder */
    kiln_module *rnns = awd->child[1];
    for (int l = 0; l < p->n_layers; l++) kiln_module_set_group(rnns->child[l], l);
    kiln_module_set_group(awd->child[0], p->n_layers);
    kiln_module_set_group(dec, p->n_layers);
    return model;
}

static awd_state *state_of(kiln_model *model)
{
    kiln_module *awd = model ? kiln_model_find(model, "0") : NULL;
    return awd && awd->state_free == state_free ? awd->state : NULL;
}

kiln_status kiln_awd_lstm_reset(kiln_model *model)
{
    kiln_module *awd = model ? kiln_model_find(model, "0") : NULL;
    if (!kiln__awd_is_body(awd)) return kiln__err(KILN_STATUS_INVALID, "awd_lstm_reset: not an AWD-LSTM language model");
    kiln__awd_body_reset(awd);
    return KILN_STATUS_OK;
}

kiln_tensor *kiln_awd_lstm_ar_tar(kiln_model *model, kiln_ctx *ctx, float alpha, float beta)
{
    awd_state *st = state_of(model);
    if (!st) return kiln__errp(KILN_STATUS_INVALID, "awd_lstm_ar_tar: not an AWD-LSTM model");
    if (!st->raw || !st->dropped) return kiln__errp(KILN_STATUS_STATE, "awd_lstm_ar_tar: no forward in this step");
    kiln_tensor *ar = kiln_mul_scalar(ctx, kiln_mean(ctx, kiln_mul(ctx, st->dropped, st->dropped)), alpha);
    int64_t T = st->raw->shape[1];
    if (T < 2) return ar;
    kiln_tensor *dt = kiln_sub(ctx, kiln_slice(ctx, st->raw, 1, 1, T, 1), kiln_slice(ctx, st->raw, 1, 0, T - 1, 1));
    kiln_tensor *tar = kiln_mul_scalar(ctx, kiln_mean(ctx, kiln_mul(ctx, dt, dt)), beta);
    return kiln_add(ctx, ar, tar);
}

/* the LM's decoder module "1" and the body's state, or NULL (message set) */
static kiln_module *lm_decoder(kiln_model *model, const char *who, awd_state **st)
{
    *st = state_of(model);
    kiln_module *dec = *st ? kiln_model_find(model, "1") : NULL;
    if (!dec || dec->forward != decoder_forward)
        return kiln__errp(KILN_STATUS_INVALID, "%s: not an AWD-LSTM language model", who);
    return dec;
}

kiln_status kiln_awd_lstm_set_fused_decoder(kiln_model *model, bool on)
{
    awd_state *st;
    if (!lm_decoder(model, "awd_lstm_set_fused_decoder", &st)) return kiln_last_status();
    st->fused = on;
    return KILN_STATUS_OK;
}

kiln_tensor *kiln_awd_lstm_loss(kiln_model *model, kiln_ctx *ctx, kiln_tensor *out, kiln_tensor *y,
                                const kiln_xent_params *p)
{
    awd_state *st;
    kiln_module *dec = lm_decoder(model, "awd_lstm_loss", &st);
    if (!dec) return NULL;
    KILN_IN(out);
    KILN_IN(y);
    char so[128], sy[128];
    if (y->ndim != 2 || out->ndim != 3 || out->shape[0] != y->shape[0] || out->shape[1] != y->shape[1])
        return kiln__errp(KILN_STATUS_INVALID, "awd_lstm_loss: output %s and targets %s are not (B, T, C) and (B, T)",
                          kiln_shape_str(out, so, sizeof so), kiln_shape_str(y, sy, sizeof sy));
    if (out == st->dec_in && out->shape[2] == st->p.emb) /* the decoder's input: the tied Linear and the loss, a chunk of rows at a time */
        return kiln_linear_cross_entropy(ctx, out, ((const awd_ref *)dec->user)->encoder->weight, dec->bias, y, p, 0);
    if (out->shape[2] != st->p.vocab)
        return kiln__errp(KILN_STATUS_INVALID, "awd_lstm_loss: output %s is neither (B, T, %lld) logits nor this step's "
                          "fused decoder input", kiln_shape_str(out, so, sizeof so), (long long)st->p.vocab);
    kiln_tensor *loss = kiln_cross_entropy(ctx, kiln_reshape(ctx, out, 2, (int64_t[]){-1, out->shape[2]}),
                                           kiln_reshape(ctx, y, 1, (int64_t[]){-1}), p);
    if (loss && p && p->reduction == KILN_REDUCTION_NONE) loss = kiln_reshape(ctx, loss, 2, y->shape); /* (B, T) */
    return loss;
}
