/* Text generation from a language model (kiln/apps.h, kiln_text_generate): fastai's
 * LMLearner.predict. The prompt is tokenized as training text was (xxbos first), read once
 * through the model in eval mode, then each new token is drawn from the softmax of the last
 * position's logits over temperature (greedy at temperature 0), xxunk never drawn with no_unk,
 * and fed back alone, the hidden state carried (the same logits fastai gets by re-reading the
 * whole sequence each time). The tokens are decoded back to text (kiln_text_decode). */
#include "app_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

kiln_text_generate_params kiln_text_generate_default_params(void)
{
    return (kiln_text_generate_params){.n_words = 20, .temperature = 1.0, .no_unk = true, .seed = 42};
}

/* The next token from logits[0..V): argmax at temperature 0, else a draw from
 * softmax(logits / temperature) with u in [0, 1); xxunk left out with no_unk. */
static int64_t pick(const float *logits, int64_t V, const kiln_text_generate_params *p, double u)
{
    int64_t best = -1;
    for (int64_t v = 0; v < V; v++)
        if (!(p->no_unk && v == KILN_TOK_UNK) && (best < 0 || logits[v] > logits[best])) best = v;
    if (p->temperature == 0) return best;
    double z = 0, m = logits[best];
    for (int64_t v = 0; v < V; v++)
        if (!(p->no_unk && v == KILN_TOK_UNK)) z += exp((logits[v] - m) / p->temperature);
    double acc = 0, target = u * z;
    for (int64_t v = 0; v < V; v++) {
        if (p->no_unk && v == KILN_TOK_UNK) continue;
        acc += exp((logits[v] - m) / p->temperature);
        if (acc > target) return v;
    }
    return best; /* u * z rounded up to z */
}

/* The logits of the last position after reading ids[0..n) (1, n) on from the carried state, copied to row. */
static kiln_status step(kiln_model *m, kiln_ctx *ctx, const int64_t *ids, int64_t n, float *row, int64_t V)
{
    kiln_mark mk = kiln_step_mark(ctx);
    kiln_tensor *x = kiln_empty(ctx, KILN_DTYPE_I64, 2, (int64_t[]){1, n});
    if (x) memcpy(x->data, ids, (size_t)n * sizeof *ids);
    kiln_tensor *out = x ? kiln_model_forward(m, ctx, x) : NULL; /* (1, n, V) */
    kiln_tensor *c = out ? kiln_contiguous(ctx, out) : NULL;
    kiln_status st = KILN_STATUS_OK;
    if (!c) st = kiln_last_status();
    else if (c->ndim != 3 || c->shape[2] != V) st = kiln__err(KILN_STATUS_STATE, "text_generate: the model gave %s", kiln__tname(c));
    else memcpy(row, (const float *)c->data + (n - 1) * V, (size_t)V * sizeof *row);
    kiln_step_rewind(ctx, mk);
    return st;
}

kiln_status kiln_text_generate(kiln_learner *l, const char *prompt, const kiln_text_generate_params *p, char **out,
                               int64_t *n_unk)
{
    if (!l || !kiln__text_is_lm(l)) return kiln__err(KILN_STATUS_INVALID, "text_generate: not a language model learner");
    if (!prompt || !out) return kiln__err(KILN_STATUS_INVALID, "text_generate: NULL argument");
    kiln_text_generate_params q = p ? *p : kiln_text_generate_default_params();
    if (q.n_words < 0 || q.n_words > 100000 || !(q.temperature >= 0 && q.temperature <= 100))
        return kiln__err(KILN_STATUS_INVALID, "text_generate: n_words %lld must be in [0, 100000] and temperature %g in [0, 100]",
                         (long long)q.n_words, q.temperature);
    *out = NULL;
    const kiln_vocab *vocab = kiln_text_learner_vocab(l);
    kiln_model *m = kiln_learner_model(l);
    kiln_ctx *ctx = kiln_learner_ctx(l);
    int64_t V = kiln_vocab_size(vocab);
    kiln_tokens tok;
    kiln_status st = kiln_text_tokenize(prompt, strlen(prompt), &tok);
    if (st) return st;
    int64_t n = tok.n, total = n + q.n_words, unk = 0, words = 0;
    int64_t *ids = malloc((size_t)total * sizeof *ids);
    float *row = malloc((size_t)V * sizeof *row);
    const char **toks = malloc((size_t)total * sizeof *toks);
    if (!ids || !row || !toks) st = kiln__err(KILN_STATUS_NOMEM, "text_generate: out of memory");
    if (!st) {
        kiln_vocab_numericalize(vocab, &tok, ids, &unk);
        for (int64_t i = 0; i < n; i++) words += ids[i] >= KILN_TOK_N_SPECIAL || ids[i] == KILN_TOK_UNK;
        if (words > 0 && unk == words)
            st = kiln__err(KILN_STATUS_INVALID, "text_generate: prompt \"%.60s\": none of its %lld word(s) is in the model's "
                                                "vocabulary of %lld tokens", prompt, (long long)words, (long long)V);
    }
    kiln_tokens_free(&tok);
    bool was = kiln_model_training(m), grad = kiln_grad_enabled(ctx);
    kiln_model_train(m, false);
    kiln_set_grad_enabled(ctx, false);
    if (!st) st = kiln_awd_lstm_reset(m);
    if (!st) st = step(m, ctx, ids, n, row, V);
    for (int64_t i = n; i < total && !st; i++) {
        double u = kiln_philox_uniform(q.seed, (uint64_t)(2 * i)) +
                   kiln_philox_uniform(q.seed, (uint64_t)(2 * i + 1)) / 16777216.0; /* 48 random bits */
        ids[i] = pick(row, V, &q, u);
        if (i + 1 < total) st = step(m, ctx, &ids[i], 1, row, V);
    }
    kiln_set_grad_enabled(ctx, grad);
    kiln_model_train(m, was);
    if (!st) {
        for (int64_t i = 0; i < total; i++) toks[i] = kiln_vocab_token(vocab, ids[i]);
        st = kiln_text_decode(toks, total, out);
    }
    if (n_unk) *n_unk = unk;
    free(ids), free(row), free(toks);
    return kiln__done(st);
}
