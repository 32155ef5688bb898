/* The text task's learners (kiln/apps.h): fastai's language_model_learner (an AWD-LSTM,
 * cross-entropy over every position plus AR/TAR in training, next-token accuracy and perplexity)
 * and text_classifier_learner (the ULMFiT classifier, its encoder from such a language model),
 * Adam with decoupled weight decay, and their export (weights, vocabulary, model.json). */
#include "app_internal.h"
#include "core/json.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* the text part of the application object (freed with it) */
typedef struct text_lm {
    bool clas;                /* the classifier (else the language model) */
    bool attached;            /* model and opt belong to the application object (else to this) */
    kiln_model *model;
    kiln_optim *opt;
    kiln_vocab *vocab;        /* a copy, written with the model */
    kiln_awd_lstm_params cfg; /* the encoder's */
    kiln_awd_clas_params cp;  /* clas */
    kiln_text_classes classes; /* clas: a copy */
    uint64_t seed;
    float alpha, beta;
} text_lm;

static void text_lm_free(void *p)
{
    text_lm *t = p;
    if (!t) return;
    if (!t->attached) {
        kiln_optim_free(t->opt);
        kiln_model_free(t->model);
    }
    kiln_vocab_free(t->vocab);
    kiln_text_classes_free(&t->classes);
    free(t);
}

/* l's text part; NULL when l is not a text learner */
static text_lm *text_of(const kiln_learner *l)
{
    kiln__app *a = kiln__app_get(l);
    return a && a->part_free == text_lm_free ? a->part : NULL;
}

static kiln_status text_export(kiln_learner *l, kiln__app *a, const char *dir);

static const char *const *text_classes(const kiln__app *a, int *n)
{
    const text_lm *t = a->part;
    *n = (int)t->classes.n;
    return (const char *const *)t->classes.name;
}

/* t (with its model and optimizer) attached to l as its application object; t is freed when
 * this fails (and belongs to l when it does not) */
static kiln_status attach(kiln_learner *l, text_lm *t)
{
    kiln__app *a = calloc(1, sizeof *a);
    if (!a) {
        text_lm_free(t);
        return kiln__err(KILN_STATUS_NOMEM, "text learner: out of memory");
    }
    *a = (kiln__app){.task = t->clas ? "text-clas" : "text-lm", .model = t->model, .opt = t->opt, .export = text_export,
                     .classes = t->clas ? text_classes : NULL, .part = t, .part_free = text_lm_free};
    t->attached = true;
    return kiln__app_attach(l, a);
}

kiln_text_lm_learner_params kiln_text_lm_learner_default_params(void)
{
    return (kiln_text_lm_learner_params){.drop_mult = 1.0f, .alpha = 2.0f, .beta = 1.0f, .wd = 1e-2,
                                         .learner = kiln_learner_default_params()};
}

/* out (B, T, V) logits, or in training the decoder's input (B, T, emb) (the fused decoder:
 * kiln_awd_lstm_set_fused_decoder), y (B, T) -> mean cross-entropy over the B * T positions (+
 * AR/TAR in training) */
static kiln_tensor *lm_loss(kiln_ctx *ctx, kiln_tensor *out, kiln_tensor *y, void *user)
{
    KILN_IN(out);
    const text_lm *t = user;
    if (out->ndim != 3 || y->ndim != 2 || out->shape[0] != y->shape[0] || out->shape[1] != y->shape[1])
        return kiln__errp(KILN_STATUS_INVALID, "text_lm loss: output %s and targets %s are not (B, T, V) and (B, T)",
                          kiln__tname(out), kiln__tname(y));
    kiln_tensor *loss = kiln_awd_lstm_loss(t->model, ctx, out, y, NULL);
    if (!loss || !kiln_model_training(t->model) || (t->alpha == 0 && t->beta == 0)) return loss;
    kiln_tensor *reg = kiln_awd_lstm_ar_tar(t->model, ctx, t->alpha, t->beta);
    return reg ? kiln_add(ctx, loss, reg) : NULL;
}

/* next-token accuracy over every position: sum[0] correct, n positions */
static kiln_status lm_accuracy(kiln_metric_acc *acc, const kiln_tensor *out, const kiln_tensor *y, double loss,
                               void *user)
{
    if (out->ndim != 3 || y->ndim != 2 || out->dtype != KILN_DTYPE_F32 || y->dtype != KILN_DTYPE_I64 ||
        !kiln_is_contiguous(out) || !kiln_is_contiguous(y))
        return kiln__err(KILN_STATUS_INVALID, "text_lm accuracy: output %s and targets %s", kiln__tname(out),
                         kiln__tname(y));
    int64_t n = y->shape[0] * y->shape[1], V = out->shape[2];
    const float *o = out->data;
    const int64_t *t = y->data;
    for (int64_t i = 0; i < n; i++) {
        int64_t best = 0;
        for (int64_t v = 1; v < V; v++)
            if (o[i * V + v] > o[i * V + best]) best = v;
        acc->sum[0] += best == t[i];
    }
    acc->n += n;
    return KILN_STATUS_OK;
}

static double lm_accuracy_value(const kiln_metric_acc *acc, void *user)
{
    return acc->n ? acc->sum[0] / (double)acc->n : NAN;
}


/* A folder kiln_learner_export wrote for a text model: its vocabulary and its weight file. */
static kiln_status open_export(const char *dir, kiln_vocab **vocab, kiln_st_file **f)
{
    char pm[4096], pv[4096];
    *vocab = NULL, *f = NULL;
    kiln_status st = kiln__path(pm, sizeof pm, dir, "model.safetensors");
    if (!st) st = kiln__path(pv, sizeof pv, dir, "vocab.txt");
    if (!st && !(st = kiln_vocab_load(pv, vocab)) && (st = kiln_st_open(pm, f))) {
        kiln_vocab_free(*vocab);
        *vocab = NULL;
    }
    return st;
}

/* the AWD-LSTM sizes of a config object into c */
static kiln_status read_sizes(const char *path, const cJSON *cfg, kiln_awd_lstm_params *c)
{
    int64_t e = 0, h = 0, l = 0;
    kiln_status st = kiln__json_get_i64(path, cfg, "emb", true, &e);
    if (!st) st = kiln__json_get_i64(path, cfg, "hid", true, &h);
    if (!st) st = kiln__json_get_i64(path, cfg, "n_layers", true, &l);
    if (!st && (e < 1 || h < 1 || l < 1 || l > KILN_AWD_MAX_LAYERS))
        st = kiln__err(KILN_STATUS_FORMAT, "%s: config.emb, config.hid (>= 1) and config.n_layers (1..%d) are needed", path,
                       KILN_AWD_MAX_LAYERS);
    if (!st) c->emb = e, c->hid = h, c->n_layers = (int)l;
    return st;
}

/* the five dropouts of a config object into c */
static kiln_status read_drops(const char *path, const cJSON *cfg, kiln_awd_lstm_params *c)
{
    double v[5] = {0};
    static const char *const drop[5] = {"output_p", "hidden_p", "input_p", "embed_p", "weight_p"};
    kiln_status st = KILN_STATUS_OK;
    for (int k = 0; k < 5 && !st; k++) {
        st = kiln__json_get_f64(path, cfg, drop[k], true, &v[k]);
        if (!st && !(v[k] >= 0 && v[k] < 1)) st = kiln__err(KILN_STATUS_FORMAT, "%s: config.%s %g is not in [0, 1)", path, drop[k], v[k]);
    }
    if (!st)
        c->output_p = (float)v[0], c->hidden_p = (float)v[1], c->input_p = (float)v[2], c->embed_p = (float)v[3],
        c->weight_p = (float)v[4];
    return st;
}

/* dir/model.json's sizes into c (a model of task want kiln exported) */
static kiln_status read_config_task(const char *dir, const char *want, kiln_awd_lstm_params *c)
{
    char path[4096];
    cJSON *j;
    const cJSON *cfg = NULL;
    kiln_status st = kiln__read_model_json(dir, want, path, sizeof path, &j);
    if (!st) st = kiln__json_get_node(path, j, "config", true, true, &cfg);
    if (!st) st = read_sizes(path, cfg, c);
    cJSON_Delete(j);
    return st;
}

/* dir/model.json's sizes into c (a text-lm model kiln exported) */
static kiln_status read_config(const char *dir, kiln_awd_lstm_params *c)
{
    return read_config_task(dir, "text-lm", c);
}

/* the pretrained folder's weights into t->model: the LSTMs as they are, the embedding and the
 * decoder bias matched to t->vocab */
static kiln_status load_pretrained(text_lm *t, const char *dir, int64_t *n_matched)
{
    kiln_vocab *old;
    kiln_st_file *f;
    kiln_status st = open_export(dir, &old, &f);
    if (st) goto done;
    kiln_store *s = kiln_model_store(t->model);
    int64_t ov = kiln_vocab_size(old), emb = t->cfg.emb;
    for (size_t i = 0; i < kiln_store_count(s) && !st; i++) {
        kiln_tensor *p = kiln_store_at(s, i);
        const void *src;
        if (!strcmp(p->name, "0.encoder.weight")) {
            if (!(st = kiln_st_want(f, p->name, KILN_DTYPE_F32, 2, (int64_t[]){ov, emb}, &src)))
                st = kiln_vocab_match_embeds(old, src, t->vocab, emb, p->data, n_matched);
        } else if (!strcmp(p->name, "1.decoder.bias")) {
            if (!(st = kiln_st_want(f, p->name, KILN_DTYPE_F32, 1, &ov, &src)))
                st = kiln_vocab_match_embeds(old, src, t->vocab, 1, p->data, NULL);
        } else {
            st = kiln_st_load_into(f, p->name, p);
        }
    }
done:
    if (st) kiln__err_prefix(st, "pretrained language model");
    kiln_st_close(f);
    kiln_vocab_free(old);
    return st;
}

kiln_learner *kiln_text_lm_learner_new(kiln_ctx *ctx, kiln_data *data, const kiln_vocab *vocab,
                                       const kiln_text_lm_learner_params *p)
{
    int64_t vocab_size = vocab ? kiln_vocab_size(vocab) : 0;
    kiln_text_lm_learner_params q = p ? *p : kiln_text_lm_learner_default_params();
    text_lm *t = NULL;
    kiln_learner *l = NULL;
    if (!ctx || !data || vocab_size < KILN_TOK_N_SPECIAL || !(q.wd >= 0) || !(q.drop_mult >= 0) || !(q.alpha >= 0) ||
        !(q.beta >= 0)) {
        kiln__err(KILN_STATUS_INVALID, "text_lm_learner_new: needs a context, data, a vocabulary of at least %d tokens "
                                       "(%lld) and wd, drop_mult, alpha, beta >= 0",
                  KILN_TOK_N_SPECIAL, (long long)vocab_size);
        goto fail;
    }
    if (kiln_data_n_batches(data, KILN_DATA_SPLIT_TRAIN) < 1) {
        kiln__err(KILN_STATUS_INVALID, "text_lm_learner_new: the train split has no batch");
        goto fail;
    }
    kiln_awd_lstm_params cfg = q.config ? *q.config : kiln_awd_lstm_lm_config(vocab_size, q.drop_mult);
    cfg.vocab = vocab_size;
    if (q.pretrained && read_config(q.pretrained, &cfg)) goto fail;
    if (!(t = calloc(1, sizeof *t))) {
        kiln__err(KILN_STATUS_NOMEM, "text_lm_learner_new: out of memory");
        goto fail;
    }
    t->alpha = q.alpha, t->beta = q.beta, t->cfg = cfg, t->seed = q.learner.seed;
    if (!(t->vocab = kiln_vocab_copy(vocab))) goto fail;
    kiln_adam_params ap = kiln_adam_default_params();
    ap.weight_decay = q.wd;
    if (!(t->model = kiln_awd_lstm_lm_new(&cfg)) || kiln_model_alloc(t->model, ctx) ||
        kiln_awd_lstm_set_fused_decoder(t->model, true) || (q.pretrained && load_pretrained(t, q.pretrained, q.n_matched)) ||
        !(t->opt = kiln_optim_new_adam(kiln_model_store(t->model), &ap)))
        goto fail;
    q.learner.loss = (kiln_loss){.kind = KILN_LOSS_KIND_CUSTOM, .fn = lm_loss, .user = t};
    if (!(l = kiln_learner_new(ctx, t->model, NULL, t->opt, &q.learner))) goto fail;
    kiln_status ast = attach(l, t);
    t = NULL; /* the learner frees it from here (attach did when it failed) */
    if (ast) goto fail;
    kiln_metric acc = kiln_metric_make(KILN_METRIC_KIND_CUSTOM), ppl = kiln_metric_make(KILN_METRIC_KIND_PERPLEXITY);
    acc.name = "accuracy", acc.accumulate = lm_accuracy, acc.value = lm_accuracy_value;
    if (kiln_learner_add_metric(l, &acc) || kiln_learner_add_metric(l, &ppl) || kiln_learner_set_data(l, data, true)) goto fail;
    kiln_clear_error();
    return l;
fail:
    if (l) kiln_learner_free(l);
    text_lm_free(t);
    kiln_data_free(data);
    return NULL;
}

/* ---- export ------------------------------------------------------------------------------------ */

bool kiln__text_is_lm(const kiln_learner *l)
{
    const text_lm *t = text_of(l);
    return t && !t->clas;
}

const kiln_vocab *kiln_text_learner_vocab(const kiln_learner *l)
{
    const text_lm *t = text_of(l);
    return t ? t->vocab : NULL;
}

/* dir/model.json of a text language model */
static kiln_status write_json(const text_lm *t, const char *path)
{
    cJSON *j = cJSON_CreateObject(), *c = cJSON_CreateObject(), *tr = cJSON_CreateObject();
    if (!j || !c || !tr) goto nomem;
    cJSON_AddStringToObject(j, "format", KILN_MODEL_FORMAT);
    cJSON_AddNumberToObject(j, "format_version", KILN_MODEL_FORMAT_VERSION);
    cJSON_AddStringToObject(j, "task", t->clas ? "text-clas" : "text-lm");
    cJSON_AddStringToObject(j, "arch", "awd_lstm");
    cJSON_AddNumberToObject(j, "n_params", (double)kiln_model_n_params(t->model, false));
    cJSON_AddNumberToObject(j, "vocab_size", (double)kiln_vocab_size(t->vocab));
    cJSON_AddStringToObject(j, "vocab", "vocab.txt");
    cJSON_AddNumberToObject(c, "emb", (double)t->cfg.emb);
    cJSON_AddNumberToObject(c, "hid", (double)t->cfg.hid);
    cJSON_AddNumberToObject(c, "n_layers", t->cfg.n_layers);
    cJSON_AddNumberToObject(c, "output_p", t->cfg.output_p);
    cJSON_AddNumberToObject(c, "hidden_p", t->cfg.hidden_p);
    cJSON_AddNumberToObject(c, "input_p", t->cfg.input_p);
    cJSON_AddNumberToObject(c, "embed_p", t->cfg.embed_p);
    cJSON_AddNumberToObject(c, "weight_p", t->cfg.weight_p);
    if (t->clas) {
        cJSON_AddNumberToObject(c, "bptt", (double)t->cp.bptt);
        cJSON_AddNumberToObject(c, "max_len", (double)t->cp.max_len);
        cJSON_AddNumberToObject(c, "lin_ftrs", (double)t->cp.lin_ftrs);
        cJSON_AddNumberToObject(c, "head_p", t->cp.head_p);
        cJSON *cl = cJSON_CreateArray();
        for (int64_t i = 0; cl && i < t->classes.n; i++) cJSON_AddItemToArray(cl, cJSON_CreateString(t->classes.name[i]));
        if (!cl) goto nomem;
        cJSON_AddItemToObject(j, "classes", cl);
        cJSON_AddNumberToObject(j, "n_classes", (double)t->classes.n);
    }
    cJSON_AddItemToObject(j, "config", c);
    c = NULL;
    cJSON_AddNumberToObject(tr, "seed", (double)t->seed);
    cJSON_AddNumberToObject(tr, "alpha", t->alpha);
    cJSON_AddNumberToObject(tr, "beta", t->beta);
    cJSON_AddItemToObject(j, "training", tr);
    tr = NULL;
    return kiln__json_write(j, path);
nomem:
    cJSON_Delete(j);
    cJSON_Delete(c);
    cJSON_Delete(tr);
    return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", path);
}

/* A language model's encoder (its "0.*" tensors: embedding and LSTMs) alone, under fastai's
 * save_encoder names (the "0." dropped: "encoder.weight", "rnns.0.module.weight_ih_l0", ...). */
static kiln_status save_encoder(const text_lm *t, const char *path)
{
    kiln_st_writer *w = kiln_st_writer_new();
    if (!w) return kiln_last_status();
    kiln_store *s = kiln_model_store(t->model);
    kiln_status st = kiln_st_writer_meta(w, "format", "kiln-text-encoder");
    for (size_t i = 0; i < kiln_store_count(s) && !st; i++) {
        const kiln_tensor *p = kiln_store_at(s, i);
        if (!strncmp(p->name, "0.", 2)) st = kiln_st_writer_add(w, p->name + 2, p->dtype, p->ndim, p->shape, p->data);
    }
    if (!st) st = kiln_st_writer_save(w, path);
    kiln_st_writer_free(w);
    return st;
}

/* kiln_learner_export of a text learner: weights, vocabulary, model.json; a language model's
 * encoder also alone (encoder.safetensors, what the classifier loads) */
static kiln_status text_export(kiln_learner *l, kiln__app *a, const char *dir)
{
    (void)l;
    const text_lm *t = a->part;
    char pm[4096], pv[4096], pj[4096], pe[4096];
    kiln_status st;
    if (!(st = kiln_mkdirs(dir)) && !(st = kiln__path(pm, sizeof pm, dir, "model.safetensors")) &&
        !(st = kiln__path(pv, sizeof pv, dir, "vocab.txt")) && !(st = kiln__path(pj, sizeof pj, dir, "model.json")) &&
        !(st = kiln__path(pe, sizeof pe, dir, "encoder.safetensors"))) {
        const char *meta[] = {"format", KILN_MODEL_FORMAT, "task", a->task, "arch", "awd_lstm", NULL};
        if (!(st = kiln_model_save(t->model, pm, meta)) && !(st = kiln_vocab_save(t->vocab, pv)) &&
            !(st = t->clas ? KILN_STATUS_OK : save_encoder(t, pe)))
            st = write_json(t, pj);
    }
    return kiln__done(st);
}

/* ---- the classifier ------------------------------------------------------------------------------ */

kiln_text_clas_learner_params kiln_text_clas_learner_default_params(void)
{
    return (kiln_text_clas_learner_params){.drop_mult = 0.5f, .bptt = 70, .max_len = 1400, .lin_ftrs = 50, .wd = 1e-2,
                                           .learner = kiln_learner_default_params()};
}

/* the language model's encoder into the classifier's ("0.module.*"): from dir/encoder.safetensors
 * (fastai's save_encoder names) or, in a folder a kiln before it wrote, the model's "0.*"; its
 * vocabulary must be t->vocab */
static kiln_status load_encoder(text_lm *t, const char *dir)
{
    kiln_vocab *old;
    kiln_st_file *f;
    char pe[4096];
    kiln_status st = open_export(dir, &old, &f);
    if (st) goto done;
    const char *prefix = "0.";
    if (!(st = kiln__path(pe, sizeof pe, dir, "encoder.safetensors")) && access(pe, F_OK) == 0) {
        kiln_st_close(f);
        f = NULL, prefix = "";
        st = kiln_st_open(pe, &f);
    }
    if (st) goto done;
    bool same = kiln_vocab_size(old) == kiln_vocab_size(t->vocab);
    for (int64_t i = 0; same && i < kiln_vocab_size(old); i++)
        same = !strcmp(kiln_vocab_token(old, i), kiln_vocab_token(t->vocab, i));
    if (!same) {
        st = kiln__err(KILN_STATUS_INVALID, "%s/vocab.txt is not the classifier's vocabulary (open the data with it as vocab_in)", dir);
        goto done;
    }
    kiln_store *s = kiln_model_store(t->model);
    for (size_t i = 0; i < kiln_store_count(s) && !st; i++) {
        kiln_tensor *p = kiln_store_at(s, i);
        if (strncmp(p->name, "0.module.", 9)) continue; /* the head is new */
        char key[512];
        snprintf(key, sizeof key, "%s%s", prefix, p->name + 9);
        st = kiln_st_load_into(f, key, p);
    }
done:
    if (st) kiln__err_prefix(st, "language model encoder");
    kiln_st_close(f);
    kiln_vocab_free(old);
    return st;
}

kiln_learner *kiln_text_clas_learner_new(kiln_ctx *ctx, kiln_data *data, const kiln_vocab *vocab,
                                         const kiln_text_classes *classes, const kiln_text_clas_learner_params *p)
{
    kiln_text_clas_learner_params q = p ? *p : kiln_text_clas_learner_default_params();
    int64_t vocab_size = vocab ? kiln_vocab_size(vocab) : 0;
    text_lm *t = NULL;
    kiln_learner *l = NULL;
    if (!ctx || !data || vocab_size < KILN_TOK_N_SPECIAL || !classes || classes->n < 2 || !(q.wd >= 0) ||
        !(q.drop_mult >= 0)) {
        kiln__err(KILN_STATUS_INVALID, "text_clas_learner_new: needs a context, data, a vocabulary of at least %d tokens, "
                                       "at least 2 classes, and wd, drop_mult >= 0", KILN_TOK_N_SPECIAL);
        goto fail;
    }
    kiln_awd_clas_params cp = kiln_awd_clas_default_params(vocab_size, classes->n, q.drop_mult);
    if (q.config) cp.enc = *q.config;
    cp.enc.vocab = vocab_size;
    cp.bptt = q.bptt, cp.max_len = q.max_len, cp.lin_ftrs = q.lin_ftrs;
    if (q.lm && read_config_task(q.lm, "text-lm", &cp.enc)) goto fail;
    if (!(t = calloc(1, sizeof *t)) || !(t->classes.name = calloc((size_t)classes->n, sizeof(char *)))) {
        kiln__err(KILN_STATUS_NOMEM, "text_clas_learner_new: out of memory");
        goto fail;
    }
    t->clas = true, t->cfg = cp.enc, t->cp = cp, t->seed = q.learner.seed;
    for (int64_t i = 0; i < classes->n; i++) {
        if (!(t->classes.name[i] = strdup(classes->name[i]))) {
            kiln__err(KILN_STATUS_NOMEM, "text_clas_learner_new: out of memory");
            goto fail;
        }
        t->classes.n = i + 1;
    }
    if (!(t->vocab = kiln_vocab_copy(vocab))) goto fail;
    kiln_adam_params ap = kiln_adam_default_params();
    ap.weight_decay = q.wd;
    if (!(t->model = kiln_awd_lstm_clas_new(&cp)) || kiln_model_alloc(t->model, ctx) || (q.lm && load_encoder(t, q.lm)) ||
        !(t->opt = kiln_optim_new_adam(kiln_model_store(t->model), &ap)))
        goto fail;
    if (!(l = kiln_learner_new(ctx, t->model, NULL, t->opt, &q.learner))) goto fail;
    kiln_status ast = attach(l, t);
    t = NULL; /* the learner frees it from here (attach did when it failed) */
    if (ast) goto fail;
    kiln_metric acc = kiln_metric_make(KILN_METRIC_KIND_ACCURACY);
    if (kiln_learner_add_metric(l, &acc) || kiln_learner_set_data(l, data, true)) goto fail;
    if (q.lm && kiln_learner_freeze(l)) {
        data = NULL; /* the learner holds it now */
        goto fail;
    }
    kiln_clear_error();
    return l;
fail:
    if (l) kiln_learner_free(l);
    text_lm_free(t);
    kiln_data_free(data);
    return NULL;
}

/* ---- loading a saved text model ------------------------------------------------------------------ */

/* A learner over t->model (made by the caller, NULL: failed) with its weights from pm (strict,
 * checked finite), Adam, lp, and t attached; NULL when any step fails (t is freed then). */
static kiln_learner *loaded_learner(kiln_ctx *ctx, text_lm *t, const char *pm, const kiln_learner_params *lp)
{
    kiln_learner *l = NULL;
    kiln_adam_params ap = kiln_adam_default_params();
    if (!t->model || kiln_model_alloc(t->model, ctx) || kiln_model_load(t->model, pm, true) ||
        kiln_model_check_finite(t->model) || !(t->opt = kiln_optim_new_adam(kiln_model_store(t->model), &ap)) ||
        !(l = kiln_learner_new(ctx, t->model, NULL, t->opt, lp))) {
        text_lm_free(t);
        return NULL;
    }
    if (attach(l, t)) { /* t is freed */
        kiln_learner_free(l);
        return NULL;
    }
    return l;
}

/* ---- a saved classifier: load and predict ------------------------------------------------------- */

const kiln_text_classes *kiln_text_learner_classes(const kiln_learner *l)
{
    const text_lm *t = text_of(l);
    return t && t->clas ? &t->classes : NULL;
}

/* dir/model.json of a text-clas export into t (classes, cp) */
static kiln_status read_clas_json(const char *dir, text_lm *t)
{
    char path[4096];
    cJSON *j;
    const cJSON *c = NULL, *cl = NULL;
    kiln_awd_clas_params *p = &t->cp;
    kiln_status st = kiln__read_model_json(dir, "text-clas", path, sizeof path, &j);
    if (!st) st = kiln__json_get_node(path, j, "config", true, true, &c);
    if (!st) st = kiln__json_get_node(path, j, "classes", true, false, &cl);
    if (!st) st = read_sizes(path, c, &p->enc);
    if (!st) st = read_drops(path, c, &p->enc);
    double head_p = 0;
    if (!st) st = kiln__json_get_i64(path, c, "bptt", true, &p->bptt);
    if (!st) st = kiln__json_get_i64(path, c, "max_len", true, &p->max_len);
    if (!st) st = kiln__json_get_i64(path, c, "lin_ftrs", true, &p->lin_ftrs);
    if (!st) st = kiln__json_get_f64(path, c, "head_p", true, &head_p);
    if (!st) p->head_p = (float)head_p, p->pad_idx = KILN_TOK_PAD;
    int64_t nc = st ? 0 : cJSON_GetArraySize(cl);
    if (!st && nc < 2) st = kiln__err(KILN_STATUS_FORMAT, "%s: \"classes\" needs 2 or more names", path);
    if (!st && !(t->classes.name = calloc((size_t)nc, sizeof(char *)))) st = kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", path);
    for (int64_t i = 0; !st && i < nc; i++) {
        const cJSON *e = cJSON_GetArrayItem(cl, (int)i);
        if (!cJSON_IsString(e) || !e->valuestring[0]) st = kiln__err(KILN_STATUS_FORMAT, "%s: classes[%lld] is not a name", path, (long long)i);
        else if (!(t->classes.name[i] = strdup(e->valuestring))) st = kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", path);
        else t->classes.n = i + 1;
    }
    t->cp.n_classes = t->classes.n;
    cJSON_Delete(j);
    return st;
}

kiln_learner *kiln_text_clas_learner_load(kiln_ctx *ctx, const char *dir)
{
    if (!ctx || !dir) return kiln__errp(KILN_STATUS_INVALID, "text_clas_learner_load: NULL argument");
    char pv[4096], pm[4096];
    if (kiln__path(pv, sizeof pv, dir, "vocab.txt") ||
        kiln__path(pm, sizeof pm, dir, "model.safetensors"))
        return NULL;
    text_lm *t = calloc(1, sizeof *t);
    kiln_learner *l = NULL;
    if (!t) return kiln__errp(KILN_STATUS_NOMEM, "text_clas_learner_load: out of memory");
    t->clas = true;
    if (read_clas_json(dir, t) || kiln_vocab_load(pv, &t->vocab)) goto fail;
    t->cp.enc.vocab = kiln_vocab_size(t->vocab);
    t->cfg = t->cp.enc;
    t->model = kiln_awd_lstm_clas_new(&t->cp);
    kiln_learner_params lp = kiln_learner_default_params();
    l = loaded_learner(ctx, t, pm, &lp);
    kiln_metric acc = kiln_metric_make(KILN_METRIC_KIND_ACCURACY);
    if (l && kiln_learner_add_metric(l, &acc)) {
        kiln_learner_free(l);
        return NULL;
    }
    if (l) kiln_clear_error();
    return l;
fail:
    text_lm_free(t);
    return NULL;
}

/* dir/model.json of a text-lm export into t (its config, AR/TAR) */
static kiln_status read_lm_json(const char *dir, text_lm *t)
{
    char path[4096];
    cJSON *j;
    const cJSON *c = NULL, *tr = NULL;
    kiln_status st = kiln__read_model_json(dir, "text-lm", path, sizeof path, &j);
    if (!st) st = kiln__json_get_node(path, j, "config", true, true, &c);
    if (!st) st = read_sizes(path, c, &t->cfg);
    if (!st) st = read_drops(path, c, &t->cfg);
    if (!st) st = kiln__json_get_node(path, j, "training", false, true, &tr);
    double a = 2, b = 1;
    if (!st && tr && !(st = kiln__json_get_f64(path, tr, "alpha", false, &a)))
        st = kiln__json_get_f64(path, tr, "beta", false, &b);
    if (!st) t->alpha = (float)a, t->beta = (float)b;
    cJSON_Delete(j);
    return st;
}

kiln_learner *kiln_text_lm_learner_load(kiln_ctx *ctx, const char *dir)
{
    if (!ctx || !dir) return kiln__errp(KILN_STATUS_INVALID, "text_lm_learner_load: NULL argument");
    char pv[4096], pm[4096];
    if (kiln__path(pv, sizeof pv, dir, "vocab.txt") || kiln__path(pm, sizeof pm, dir, "model.safetensors")) return NULL;
    text_lm *t = calloc(1, sizeof *t);
    if (!t) return kiln__errp(KILN_STATUS_NOMEM, "text_lm_learner_load: out of memory");
    if (read_lm_json(dir, t) || kiln_vocab_load(pv, &t->vocab)) goto fail;
    t->cfg.vocab = kiln_vocab_size(t->vocab);
    if ((t->model = kiln_awd_lstm_lm_new(&t->cfg)) && kiln_awd_lstm_set_fused_decoder(t->model, true)) goto fail;
    kiln_learner_params lp = kiln_learner_default_params();
    lp.loss = (kiln_loss){.kind = KILN_LOSS_KIND_CUSTOM, .fn = lm_loss, .user = t};
    kiln_learner *l = loaded_learner(ctx, t, pm, &lp);
    if (l) kiln_clear_error();
    return l;
fail:
    text_lm_free(t);
    return NULL;
}

kiln_status kiln_text_classify(kiln_learner *l, const char *const *texts, int64_t n, int64_t *pred, float *probs,
                               int64_t *n_unk)
{
    text_lm *t = text_of(l);
    if (!t || !t->clas) return kiln__err(KILN_STATUS_INVALID, "text_classify: not a text classifier learner");
    if (n < 0 || (n && (!texts || !pred))) return kiln__err(KILN_STATUS_INVALID, "text_classify: NULL argument");
    kiln_ctx *ctx = kiln_learner_ctx(l);
    bool was = kiln_model_training(t->model), grad = kiln_grad_enabled(ctx);
    kiln_model_train(t->model, false);
    kiln_set_grad_enabled(ctx, false);
    kiln_status st = KILN_STATUS_OK;
    int64_t unk_all = 0, C = t->classes.n;
    for (int64_t i = 0; i < n && !st; i++) {
        kiln_tokens tok;
        if ((st = kiln_text_tokenize(texts[i], texts[i] ? strlen(texts[i]) : 0, &tok))) break;
        kiln_mark m = kiln_step_mark(ctx);
        kiln_tensor *x = kiln_empty(ctx, KILN_DTYPE_I64, 2, (int64_t[]){1, tok.n});
        if (x) {
            int64_t unk;
            kiln_vocab_numericalize(t->vocab, &tok, x->data, &unk);
            unk_all += unk;
        }
        kiln_tensor *p = x ? kiln_softmax(ctx, kiln_model_forward(t->model, ctx, x), 1) : NULL;
        kiln_tensor *pc = p ? kiln_contiguous(ctx, p) : NULL;
        if (!pc) {
            st = kiln__err_prefix(kiln_last_status(), "text_classify");
        } else {
            const float *pp = pc->data;
            int64_t best = 0;
            for (int64_t k = 0; k < C; k++) {
                if (pp[k] > pp[best]) best = k;
                if (probs) probs[i * C + k] = pp[k];
            }
            pred[i] = best;
        }
        kiln_step_rewind(ctx, m);
        kiln_tokens_free(&tok);
    }
    kiln_set_grad_enabled(ctx, grad);
    kiln_model_train(t->model, was);
    if (n_unk) *n_unk = unk_all;
    return kiln__done(st);
}
