/* The language-model learner (kiln_text_lm_learner_new) end to end on a small made-up corpus:
 * tokenize, vocabulary, LM batches, an AWD-LSTM with fastai's LM dropouts (drop_mult 0.3);
 * before training the validation perplexity is about the vocabulary's size, after a short
 * one-cycle fit it is a fraction of it and next-token accuracy is far above chance; the loss
 * adds AR/TAR in training only; bad arguments are refused. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/ku.h"

/* n documents of sentences from a tiny grammar, from a fixed LCG */
static char **corpus(int n, uint64_t seed)
{
    static const char *subj[] = {"The cat", "A dog", "My neighbour", "The old farmer", "Her brother"};
    static const char *verb[] = {"sat on", "walked to", "looked at", "painted", "found"};
    static const char *obj[] = {"the mat.", "a red house.", "the river.", "an apple tree.", "the small boat."};
    char **docs = calloc((size_t)n, sizeof *docs);
    for (int i = 0; i < n; i++) {
        docs[i] = calloc(1, 1024);
        for (int s = 0; s < 4; s++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            unsigned a = (unsigned)(seed >> 33) % 5, b = (unsigned)(seed >> 40) % 5;
            /* the object follows the verb: a pattern a model can learn */
            snprintf(docs[i] + strlen(docs[i]), 1024 - strlen(docs[i]), "%s %s %s ", subj[a], verb[b], obj[b]);
        }
    }
    return docs;
}

typedef struct ids {
    int64_t **id, *len;
    int n;
} ids;

static ids numericalize(kiln_vocab *v, kiln_tokens *t, int n)
{
    ids r = {calloc((size_t)n, sizeof(int64_t *)), calloc((size_t)n, sizeof(int64_t)), n};
    for (int i = 0; i < n; i++) {
        r.id[i] = malloc((size_t)t[i].n * sizeof(int64_t));
        r.len[i] = t[i].n;
        kiln_vocab_numericalize(v, &t[i], r.id[i], NULL);
    }
    return r;
}

static void free_ids(ids *r)
{
    for (int i = 0; i < r->n; i++) free(r->id[i]);
    free(r->id);
    free(r->len);
}

Test(text_lm, learns_a_small_corpus)
{
    const int n_train = 240, n_valid = 40;
    char **tr = corpus(n_train, 1), **va = corpus(n_valid, 2);
    kiln_tokens *tt = calloc(n_train, sizeof *tt), *vt = calloc(n_valid, sizeof *vt);
    cr_assert_eq(kiln_text_tokenize_many((const char *const *)tr, NULL, n_train, 2, tt), KILN_STATUS_OK);
    cr_assert_eq(kiln_text_tokenize_many((const char *const *)va, NULL, n_valid, 2, vt), KILN_STATUS_OK);
    kiln_vocab *v;
    cr_assert_eq(kiln_vocab_build(tt, n_train, NULL, &v), KILN_STATUS_OK);
    int64_t V = kiln_vocab_size(v);
    cr_assert(V >= 32 && V <= 48, "vocabulary of %lld", (long long)V);
    ids a = numericalize(v, tt, n_train), b = numericalize(v, vt, n_valid);
    kiln_lm_data_params dp = {.bs = 8, .bptt = 16, .variable_bptt = true};
    kiln_data *d = kiln_lm_data_new((const int64_t *const *)a.id, a.len, a.n, (const int64_t *const *)b.id, b.len, b.n,
                                    V, &dp);
    cr_assert_not_null(d, "%s", kiln_last_error());
    kiln_ctx *ctx = ku_ctx();
    kiln_awd_lstm_params cfg = kiln_awd_lstm_lm_config(V, 0.3f);
    cfg.emb = 24, cfg.hid = 48;
    kiln_text_lm_learner_params p = kiln_text_lm_learner_default_params();
    p.config = &cfg;
    p.learner.progress = KILN_PROGRESS_STYLE_QUIET;
    kiln_learner *l = kiln_text_lm_learner_new(ctx, d, v, &p);
    cr_assert_not_null(l, "%s", kiln_last_error());
    cr_expect_eq(kiln_model_n_groups(kiln_learner_model(l)), 4);
    double loss0, m0[2], loss1, m1[2];
    cr_assert_eq(kiln_learner_validate(l, KILN_DATA_SPLIT_VALID, &loss0, m0), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect(m0[1] > V / 3.0 && m0[1] < V * 3.0, "untrained perplexity %.1f, vocabulary %lld", m0[1], (long long)V);
    cr_expect_float_eq(m0[1], exp(loss0), 1e-6 * m0[1]);
    cr_assert_eq(kiln_learner_fit_one_cycle(l, 6, 0, 1e-2, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_learner_validate(l, KILN_DATA_SPLIT_VALID, &loss1, m1), KILN_STATUS_OK);
    if (getenv("KU_VERBOSE")) fprintf(stderr, "V %lld ppl %.2f -> %.2f acc %.3f -> %.3f\n", (long long)V, m0[1], m1[1], m0[0], m1[0]);
    cr_expect_lt(m1[1], m0[1] / 4, "perplexity %.2f after training (%.1f before)", m1[1], m0[1]);
    cr_expect_gt(m1[0], 0.35, "next-token accuracy %.3f", m1[0]);
    /* export: the weights load into a new model with the same outputs, the vocabulary back */
    char dir[] = "/tmp/kiln_text_lm_XXXXXX", path[256];
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(kiln_learner_export(l, dir), KILN_STATUS_OK, "%s", kiln_last_error());
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    kiln_vocab *v2;
    cr_assert_eq(kiln_vocab_load(path, &v2), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(kiln_vocab_size(v2), V);
    kiln_vocab_free(v2);
    /* the encoder alone, under fastai's save_encoder names */
    snprintf(path, sizeof path, "%s/encoder.safetensors", dir);
    kiln_st_file *ef;
    cr_assert_eq(kiln_st_open(path, &ef), KILN_STATUS_OK, "%s", kiln_last_error());
    const void *src;
    cr_expect_eq(kiln_st_want(ef, "encoder.weight", KILN_DTYPE_F32, 2, (int64_t[]){V, 24}, &src), KILN_STATUS_OK, "%s",
                 kiln_last_error());
    cr_expect_neq(kiln_st_want(ef, "1.decoder.bias", KILN_DTYPE_F32, 1, (int64_t[]){V}, &src), KILN_STATUS_OK,
                  "the decoder is not part of the encoder");
    kiln_st_close(ef);
    snprintf(path, sizeof path, "%s/model.json", dir);
    char *json = ku_slurp(path);
    cJSON *j = cJSON_Parse(json);
    cr_assert_not_null(j, "%s", json);
    cr_expect_str_eq(cJSON_GetObjectItem(j, "task")->valuestring, "text-lm");
    cr_expect_eq(cJSON_GetObjectItem(j, "vocab_size")->valuedouble, (double)V);
    cr_expect_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "config"), "emb")->valuedouble, 24);
    cJSON_Delete(j);
    free(json);
    kiln_model *m2 = kiln_awd_lstm_lm_new(&cfg);
    cr_assert_eq(kiln_model_alloc(m2, ctx), KILN_STATUS_OK);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cr_assert_eq(kiln_model_load(m2, path, true), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_model *ml = kiln_learner_model(l);
    kiln_model_train(ml, false);
    kiln_model_train(m2, false);
    kiln_awd_lstm_reset(ml);
    kiln_awd_lstm_reset(m2);
    kiln_tensor *x = kiln_from_data(ctx, KILN_DTYPE_I64, 2, (int64_t[]){1, 5}, b.id[0]);
    kiln_tensor *o1 = kiln_model_forward(ml, ctx, x), *o2 = kiln_model_forward(m2, ctx, x);
    cr_assert(o1 && o2, "%s", kiln_last_error());
    for (int64_t i = 0; i < kiln_numel(o1); i++) cr_assert_eq(((float *)o1->data)[i], ((float *)o2->data)[i]);
    kiln_model_free(m2);
    /* fine-tuning on another vocabulary: LSTMs as exported, known words' rows copied, new
     * words (and xxfake) the mean row */
    const char *nv_s[] = {"xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj",
                          "cat", "zebra", "the", "quokka", "xxfake", "xxfake", "xxfake"};
    kiln_vocab *nv;
    cr_assert_eq(kiln_vocab_from_list(nv_s, 16, &nv), KILN_STATUS_OK);
    int64_t matched = -1;
    kiln_text_lm_learner_params p2 = p;
    p2.config = NULL; /* the sizes come from the folder */
    p2.pretrained = dir;
    p2.n_matched = &matched;
    kiln_data *d3 = kiln_lm_data_new((const int64_t *const *)a.id, a.len, a.n, NULL, NULL, 0, V, &dp);
    cr_assert_not_null(d3);
    /* the ids of d3 are of the old vocabulary (below 16 here they are fine for a check of weights) */
    kiln_learner *l2 = kiln_text_lm_learner_new(ctx, d3, nv, &p2);
    cr_assert_not_null(l2, "%s", kiln_last_error());
    cr_expect_eq(matched, 11, "9 specials + cat + the");
    kiln_store *s1 = kiln_model_store(ml), *s2 = kiln_model_store(kiln_learner_model(l2));
    kiln_tensor *w1 = kiln_store_find(s1, "0.rnns.1.module.weight_hh_l0"), *w2 = kiln_store_find(s2, "0.rnns.1.module.weight_hh_l0");
    cr_assert(w1 && w2 && kiln_numel(w1) == kiln_numel(w2));
    cr_expect(!memcmp(w1->data, w2->data, (size_t)kiln_numel(w1) * sizeof(float)), "the LSTM weights were not loaded");
    kiln_tensor *e1 = kiln_store_find(s1, "0.encoder.weight"), *e2 = kiln_store_find(s2, "0.encoder.weight");
    cr_assert_eq(e2->shape[0], 16);
    int64_t cat = kiln_vocab_id(v, "cat");
    cr_assert_neq(cat, KILN_TOK_UNK);
    cr_expect(!memcmp((float *)e2->data + 9 * 24, (float *)e1->data + cat * 24, 24 * sizeof(float)), "cat's row");
    double mean0 = 0;
    for (int64_t i = 0; i < V; i++) mean0 += ((float *)e1->data)[i * 24];
    cr_expect_float_eq(((float *)e2->data)[10 * 24], mean0 / (double)V, 1e-5, "zebra gets the mean row");
    kiln_learner_free(l2);
    kiln_vocab_free(nv);
    p2.pretrained = "/nonexistent/lm";
    cr_expect_null(kiln_text_lm_learner_new(ctx, kiln_lm_data_new((const int64_t *const *)a.id, a.len, a.n, NULL, NULL, 0, V, &dp), v, &p2));
    ku_expect_error("/nonexistent/lm/model.json", "a missing pretrained folder");
    /* the export loads back as a language model that generates: greedy generation (state carried
     * token by token) picks the argmax of re-reading the whole sequence from a reset state, as
     * fastai's predict does; a prompt of unknown words is refused */
    kiln_learner *lb = kiln_text_lm_learner_load(ctx, dir);
    cr_assert_not_null(lb, "%s", kiln_last_error());
    cr_expect_eq(kiln_vocab_size(kiln_text_learner_vocab(lb)), V);
    cr_expect_str_eq(kiln_learner_task(lb), "text-lm");
    cr_expect_eq(kiln_learner_n_classes(lb), 0);
    kiln_text_generate_params gp = kiln_text_generate_default_params();
    cr_expect(gp.n_words == 20 && gp.temperature == 1 && gp.no_unk && gp.seed == 42);
    gp.n_words = 6, gp.temperature = 0;
    char *text = NULL;
    int64_t unk = -1;
    cr_assert_eq(kiln_text_generate(lb, "The cat sat on", &gp, &text, &unk), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(unk, 0);
    cr_expect(!strncmp(text, "The cat sat on ", 15), "%s", text);
    kiln_tokens gt;
    cr_assert_eq(kiln_text_tokenize("The cat sat on", 14, &gt), KILN_STATUS_OK);
    int64_t seq[64], n0 = gt.n;
    kiln_vocab_numericalize(v, &gt, seq, NULL);
    kiln_tokens_free(&gt);
    kiln_model *mb = kiln_learner_model(lb);
    kiln_model_train(mb, false);
    kiln_set_grad_enabled(ctx, false);
    for (int64_t k = 0; k < 6; k++) {
        kiln_awd_lstm_reset(mb);
        kiln_tensor *xs = kiln_from_data(ctx, KILN_DTYPE_I64, 2, (int64_t[]){1, n0 + k}, seq);
        kiln_tensor *os = kiln_model_forward(mb, ctx, xs);
        cr_assert_not_null(os, "%s", kiln_last_error());
        const float *row = (const float *)os->data + (n0 + k - 1) * V;
        int64_t best = 1;
        for (int64_t t = 2; t < V; t++)
            if (row[t] > row[best]) best = t; /* xxunk (0) never drawn */
        seq[n0 + k] = best;
    }
    kiln_set_grad_enabled(ctx, true);
    const char *st[64];
    for (int64_t k = 0; k < n0 + 6; k++) st[k] = kiln_vocab_token(v, seq[k]);
    char *want = NULL;
    cr_assert_eq(kiln_text_decode(st, n0 + 6, &want), KILN_STATUS_OK);
    cr_expect_str_eq(text, want, "greedy generation");
    free(want), free(text);
    /* sampling: the seed decides; another seed gives another text (20 words of a 5-way choice) */
    gp = kiln_text_generate_default_params();
    char *g1 = NULL, *g2 = NULL, *g3 = NULL;
    cr_assert_eq(kiln_text_generate(lb, "The cat", &gp, &g1, NULL), KILN_STATUS_OK);
    cr_assert_eq(kiln_text_generate(lb, "The cat", &gp, &g2, NULL), KILN_STATUS_OK);
    gp.seed = 9, gp.temperature = 3;
    cr_assert_eq(kiln_text_generate(lb, "The cat", &gp, &g3, NULL), KILN_STATUS_OK);
    cr_expect_str_eq(g1, g2);
    cr_expect_str_neq(g1, g3);
    free(g1), free(g2), free(g3);
    cr_expect_eq(kiln_text_generate(lb, "zebra quokka", &gp, &text, &unk), KILN_STATUS_INVALID);
    ku_expect_error("prompt \"zebra quokka\": none of its 2 word(s)", "unknown prompt");
    cr_expect_eq(kiln_text_generate(NULL, "x", &gp, &text, NULL), KILN_STATUS_INVALID);
    kiln_learner_free(lb);
    /* a model.json whose dropout is out of range, or whose task is another, is refused by name */
    snprintf(path, sizeof path, "%s/model.json", dir);
    char *good = ku_slurp(path), *bad = malloc(strlen(good) + 8), *at = strstr(good, "\"output_p\":");
    cr_assert(bad && at, "%s", good);
    snprintf(bad, strlen(good) + 8, "%.*s\"output_p\": 1.5,%s", (int)(at - good), good, strchr(at, ',') + 1);
    FILE *jf = fopen(path, "w");
    cr_assert_not_null(jf);
    fputs(bad, jf), fclose(jf);
    cr_expect_null(kiln_text_lm_learner_load(ctx, dir));
    ku_expect_error("config.output_p 1.5 is not in [0, 1)", "dropout out of range");
    jf = fopen(path, "w");
    fputs(good, jf), fclose(jf);
    free(good), free(bad);
    cr_expect_null(kiln_text_clas_learner_load(ctx, dir));
    ku_expect_error("task is not \"text-clas\"", "a language model is not a classifier");
    kiln_learner_free(l);
    const char *files[] = {"model.safetensors", "vocab.txt", "model.json", "encoder.safetensors"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
    /* bad arguments: the data is freed by the failing call */
    kiln_data *d2 = kiln_lm_data_new((const int64_t *const *)a.id, a.len, a.n, NULL, NULL, 0, V, &dp);
    cr_expect_null(kiln_text_lm_learner_new(ctx, d2, NULL, NULL));
    ku_expect_error("vocabulary of at least 9 tokens", "no vocabulary");
    ku_ctx_free(ctx);
    free_ids(&a);
    free_ids(&b);
    for (int i = 0; i < n_train; i++) kiln_tokens_free(&tt[i]), free(tr[i]);
    for (int i = 0; i < n_valid; i++) kiln_tokens_free(&vt[i]), free(va[i]);
    free(tt), free(vt), free(tr), free(va);
    kiln_vocab_free(v);
}
