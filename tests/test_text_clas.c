/* The ULMFiT classifier learner end to end on a small made-up sentiment task written as CSVs:
 * a language model trained and exported, the classifier's data opened with its vocabulary, the
 * classifier built on its encoder (frozen body), fine-tuned to a high validation accuracy; from
 * scratch too; its export; bad input (a valid label the train file lacks, a language model with
 * another vocabulary). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/ku.h"

static char g_dir[64];

static const char *P(const char *rel)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, rel);
    return buf[k];
}

/* rows of "text,label": a review made of filler words and one or two opinion words */
static void write_reviews(const char *rel, int n, uint64_t seed)
{
    static const char *fill[] = {"the", "coffee", "tasted", "and", "it", "was", "really", "quite", "for", "me", "box",
                                 "arrived", "today", "my", "kids", "tea"};
    static const char *pos[] = {"great", "good", "delicious", "lovely"}, *neg[] = {"bad", "awful", "stale", "bitter"};
    FILE *f = fopen(P(rel), "wb");
    cr_assert_not_null(f);
    fprintf(f, "text,label\n");
    for (int i = 0; i < n; i++) {
        bool good = i % 2 == 0;
        fputc('"', f);
        for (int w = 0; w < 12; w++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            unsigned r = (unsigned)(seed >> 33);
            if (w == 5 || w == 9) fprintf(f, "%s ", good ? pos[r % 4] : neg[r % 4]);
            else fprintf(f, "%s ", fill[r % 16]);
        }
        fprintf(f, "\",%s\n", good ? "positive" : "negative");
    }
    fclose(f);
}

static void setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/kiln_text_clas.XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL);
    write_reviews("train.csv", 256, 1);
    write_reviews("valid.csv", 64, 2);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    (void)system(cmd);
}
TestSuite(text_clas, .init = setup, .fini = teardown);

static const kiln_awd_lstm_params *small(int64_t vocab)
{
    static kiln_awd_lstm_params c;
    c = kiln_awd_lstm_lm_config(vocab, 0.2f);
    c.emb = 16, c.hid = 32, c.n_layers = 2;
    return &c;
}

Test(text_clas, ulmfit_on_a_small_sentiment_task)
{
    kiln_ctx *ctx = ku_ctx();
    /* 1. a language model on the train texts, exported */
    const char *src[1] = {P("train.csv")};
    kiln_text_lm_data_params lp = kiln_text_lm_data_default_params();
    lp.lm.bs = 8, lp.lm.bptt = 12, lp.vocab.min_freq = 1;
    kiln_vocab *lv;
    kiln_data *ld = kiln_text_lm_data_open(src, 1, &lp, &lv, NULL);
    cr_assert_not_null(ld, "%s", kiln_last_error());
    kiln_text_lm_learner_params lmp = kiln_text_lm_learner_default_params();
    lmp.config = small(kiln_vocab_size(lv));
    lmp.learner.progress = KILN_PROGRESS_STYLE_QUIET;
    kiln_learner *lm = kiln_text_lm_learner_new(ctx, ld, lv, &lmp);
    cr_assert_not_null(lm, "%s", kiln_last_error());
    cr_assert_eq(kiln_learner_fit_one_cycle(lm, 6, 0, 1e-2, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_learner_export(lm, P("lm")), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_learner_free(lm);
    /* 2. the classifier's data with the LM's vocabulary */
    kiln_text_clas_data_params cp = kiln_text_clas_data_default_params();
    cp.vocab_in = lv, cp.clas.bs = 16;
    kiln_vocab *cv, *cv2_ = NULL;
    kiln_text_classes classes, classes2_ = {0};
    kiln_data *cd = kiln_text_clas_data_open(P("train.csv"), P("valid.csv"), &cp, &cv, &classes, NULL);
    cr_assert_not_null(cd, "%s", kiln_last_error());
    cr_assert_eq(classes.n, 2);
    cr_expect_str_eq(classes.name[0], "negative");
    cr_expect_eq(kiln_vocab_size(cv), kiln_vocab_size(lv));
    kiln_text_clas_learner_params clp = kiln_text_clas_learner_default_params();
    clp.lm = P("lm"), clp.bptt = 8, clp.max_len = 32, clp.lin_ftrs = 16;
    clp.learner.progress = KILN_PROGRESS_STYLE_QUIET;
    kiln_learner *cl = kiln_text_clas_learner_new(ctx, cd, cv, &classes, &clp);
    cr_assert_not_null(cl, "%s", kiln_last_error());
    kiln_model *m = kiln_learner_model(cl);
    /* the encoder came from lm/encoder.safetensors; a folder without it (a kiln before it) gives
     * the same weights from model.safetensors' "0.*" */
    kiln_st_file *lf;
    const void *lw;
    cr_assert_eq(kiln_st_open(P("lm/model.safetensors"), &lf), KILN_STATUS_OK);
    const kiln_tensor *ce = kiln_store_find(kiln_model_store(m), "0.module.rnns.1.module.weight_hh_l0");
    cr_assert_not_null(ce);
    cr_assert_eq(kiln_st_want(lf, "0.rnns.1.module.weight_hh_l0", KILN_DTYPE_F32, 2, ce->shape, &lw), KILN_STATUS_OK);
    cr_expect(!memcmp(lw, ce->data, (size_t)kiln_numel(ce) * sizeof(float)), "the LM's last LSTM");
    cr_assert_eq(unlink(P("lm/encoder.safetensors")), 0);
    kiln_data *cde = kiln_text_clas_data_open(P("train.csv"), P("valid.csv"), &cp, &cv2_, &classes2_, NULL);
    cr_assert_not_null(cde, "%s", kiln_last_error());
    kiln_learner *cl2 = kiln_text_clas_learner_new(ctx, cde, cv, &classes, &clp);
    cr_assert_not_null(cl2, "%s", kiln_last_error());
    const kiln_tensor *ce2 = kiln_store_find(kiln_model_store(kiln_learner_model(cl2)), "0.module.rnns.1.module.weight_hh_l0");
    cr_expect(!memcmp(lw, ce2->data, (size_t)kiln_numel(ce2) * sizeof(float)), "from model.safetensors");
    kiln_learner_free(cl2);
    kiln_vocab_free(cv2_);
    kiln_text_classes_free(&classes2_);
    kiln_st_close(lf);
    cr_expect_eq(kiln_model_n_groups(m), 4, "embedding, 2 LSTMs, head");
    /* the task-neutral calls see a text classifier; vision's calls refuse it by name */
    cr_expect_str_eq(kiln_learner_task(cl), "text-clas");
    cr_expect_eq(kiln_learner_n_classes(cl), 2);
    cr_expect_str_eq(kiln_learner_classes(cl)[1], "positive");
    cr_expect_null(kiln_learner_vision_info(cl));
    kiln_preds pr;
    const char *item = "x.png";
    cr_expect_eq(kiln_learner_predict(cl, &item, 1, NULL, &pr), KILN_STATUS_STATE);
    ku_expect_error("learner_predict: this call is for vision learners; the learner's task is text-clas", "predict");
    cr_expect_lt(kiln_model_n_params(m, true), kiln_model_n_params(m, false), "the body is frozen");
    kiln_recipe r = kiln_recipe_make(KILN_RECIPE_FINE_TUNE);
    /* 1 frozen epoch, then 8 with slice(lr/2/2.6, lr/2): the encoder of a language model trained on
     * 256 twelve-word reviews needs more than fastai's 2.6^4 spread leaves its first groups */
    r.lr = 2e-2, r.epochs = 8, r.lr_mult = 2.6;
    cr_assert_eq(kiln_learner_fit_recipe(cl, &r), KILN_STATUS_OK, "%s", kiln_last_error());
    double loss, acc;
    cr_assert_eq(kiln_learner_validate(cl, KILN_DATA_SPLIT_VALID, &loss, &acc), KILN_STATUS_OK);
    if (getenv("KU_VERBOSE")) fprintf(stderr, "classifier validation accuracy %.3f\n", acc);
    cr_expect_gt(acc, 0.9, "validation accuracy %.3f", acc);
    cr_assert_eq(kiln_learner_export(cl, P("clas")), KILN_STATUS_OK, "%s", kiln_last_error());
    char *json = ku_slurp(P("clas/model.json"));
    cJSON *j = cJSON_Parse(json);
    cr_assert_not_null(j);
    cr_expect_str_eq(cJSON_GetObjectItem(j, "task")->valuestring, "text-clas");
    cr_expect_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "classes"), 1)->valuestring, "positive");
    cJSON_Delete(j);
    free(json);
    /* the export loads back and classifies as the trained learner does */
    kiln_learner *back = kiln_text_clas_learner_load(ctx, P("clas"));
    cr_assert_not_null(back, "%s", kiln_last_error());
    const char *texts[3] = {"the coffee was really great and lovely", "it tasted bad and stale for me",
                            "zzz qqq www"}; /* the last: only unknown words */
    int64_t p1[3], p2[3], unk = -1;
    float pr1[6], pr2[6];
    cr_assert_eq(kiln_text_classify(cl, texts, 3, p1, pr1, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_text_classify(back, texts, 3, p2, pr2, &unk), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(p1[0], 1, "positive");
    cr_expect_eq(p1[1], 0, "negative");
    cr_expect_eq(unk, 3, "zzz qqq www");
    for (int i = 0; i < 6; i++) cr_expect_float_eq(pr1[i], pr2[i], 1e-5, "probability %d", i);
    cr_expect_str_eq(kiln_text_learner_classes(back)->name[1], "positive");
    kiln_learner_free(back);
    cr_expect_null(kiln_text_clas_learner_load(ctx, P("lm")));
    ku_expect_error("task is not \"text-clas\"", "a language model is not a classifier");
    kiln_learner_free(cl);
    /* from scratch (no language model): nothing frozen */
    kiln_vocab *cv2;
    kiln_text_classes classes2;
    cd = kiln_text_clas_data_open(P("train.csv"), P("valid.csv"), &cp, &cv2, &classes2, NULL);
    cr_assert_not_null(cd, "%s", kiln_last_error());
    clp.lm = NULL, clp.config = small(kiln_vocab_size(cv2));
    cl = kiln_text_clas_learner_new(ctx, cd, cv2, &classes2, &clp);
    cr_assert_not_null(cl, "%s", kiln_last_error());
    cr_expect_eq(kiln_model_n_params(kiln_learner_model(cl), true), kiln_model_n_params(kiln_learner_model(cl), false));
    kiln_learner_free(cl);
    kiln_vocab_free(cv2);
    kiln_text_classes_free(&classes2);
    /* bad input: a valid label the train file does not have; a language model of another vocabulary */
    write_reviews("valid2.csv", 4, 3);
    FILE *f = fopen(P("valid2.csv"), "ab");
    fprintf(f, "\"so so\",neutral\n");
    fclose(f);
    kiln_vocab *v2;
    kiln_text_classes c2;
    cr_expect_null(kiln_text_clas_data_open(P("train.csv"), P("valid2.csv"), &cp, &v2, &c2, NULL));
    ku_expect_error("valid2.csv line 6: label \"neutral\" is not among the 2 classes", "an unknown valid label");
    kiln_text_clas_data_params cp2 = cp;
    cp2.vocab_in = NULL, cp2.vocab.min_freq = 5;
    kiln_data *cd2 = kiln_text_clas_data_open(P("train.csv"), P("valid.csv"), &cp2, &v2, &c2, NULL);
    cr_assert_not_null(cd2, "%s", kiln_last_error());
    clp.lm = P("lm"), clp.config = NULL;
    cr_expect_null(kiln_text_clas_learner_new(ctx, cd2, v2, &c2, &clp));
    ku_expect_error("is not the classifier's vocabulary", "another vocabulary");
    kiln_vocab_free(v2);
    kiln_text_classes_free(&c2);
    kiln_text_classes_free(&classes);
    kiln_vocab_free(cv);
    kiln_vocab_free(lv);
    ku_ctx_free(ctx);
}
