/* kiln text <lm|lr-find|fit|predict|generate>: language models and classifiers the ULMFiT way. One flag table (the common training
 * flags of train.h and text's own corpus and model flags); each subcommand is one library call
 * for the corpus (kiln_text_lm_data_open), one for the learner (kiln_text_lm_learner_new) and
 * the shared training driver (train.h). Under mpiexec -np N (issue 13) lm, fit and lr-find
 * train data-parallel: every rank reads the whole corpus and keeps its share of each global
 * batch of --bs (the LM's rows, the classifier's documents); predict and generate are refused. */
#include "subcmd.h"
#include "train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { TC_LM = 1u << 0, TC_LR_FIND = 1u << 1, TC_FIT = 1u << 2, TC_PREDICT = 1u << 3, TC_GENERATE = 1u << 4,
       TC_ALL = (1u << 5) - 1u };
#define TC_LMS (TC_LM | TC_LR_FIND)
#define TC_DATA (TC_LM | TC_LR_FIND | TC_FIT | TC_PREDICT) /* read text */
#define TC_CLAS (TC_LR_FIND | TC_FIT)                      /* lr-find: of the classifier with --label-col */

typedef struct topts {
    train_opts t;
    const char *text_col, *config, *pretrained, *label_col, *valid, *lm, *file;
    double valid_pct, drop_mult, temperature;
    int64_t bptt, max_vocab, min_freq, words;
    bool allow_unk;
} topts;

#define O(f) offsetof(topts, f)
static const cli_flag g_text_flags[] = {
    {"--text-col", "NAME", FLAG_STR, O(text_col), TC_DATA, "CSV sources: the column holding the text", NULL, NULL},
    {"--file", "F", FLAG_STR, O(file), TC_PREDICT,
     "the texts to classify: a CSV (its --text-col) or one document per line", NULL, NULL},
    {"--label-col", "NAME", FLAG_STR, O(label_col), TC_CLAS,
     "the column holding the label (lr-find: given, the range test runs on the classifier)", NULL, NULL},
    {"--valid", "CSV", FLAG_STR, O(valid), TC_CLAS, "validation rows (default: --valid-pct of the train rows)", NULL, NULL},
    {"--lm", "DIR", FLAG_STR, O(lm), TC_CLAS,
     "a language model `kiln text lm` wrote: the classifier uses its vocabulary and encoder (ULMFiT); fit then "
     "runs --schedule ulmfit (gradual unfreezing, discriminative lrs 2.6x apart) unless given", NULL, NULL},
    {"--valid-pct", "F", FLAG_DOUBLE, O(valid_pct), TC_DATA,
     "share of the documents (lm: paragraphs of text files, rows of CSVs; fit: train rows without --valid) kept for "
     "validation, picked with split seed 42", NULL, NULL},
    {"--config", "NAME", FLAG_STR, O(config), TC_DATA,
     "AWD-LSTM size: paper (embedding 400, LSTMs 1152 / 1152 / 400, fastai's) | small (200, 512 / 512 / 200)", NULL,
     NULL},
    {"--drop-mult", "F", FLAG_DOUBLE, O(drop_mult), TC_DATA,
     "every dropout of fastai's config times F (lm: its LM config, default 1; fit: its classifier config, default 0.5)",
     NULL, NULL},
    {"--bptt", "N", FLAG_INT, O(bptt), TC_DATA, "tokens per window (fastai 0.7's variable lengths around it)", NULL,
     NULL},
    {"--max-vocab", "N", FLAG_INT, O(max_vocab), TC_DATA, "vocabulary size at most (specials included)", NULL, NULL},
    {"--min-freq", "N", FLAG_INT, O(min_freq), TC_DATA, "a word used fewer times becomes xxunk", NULL, NULL},
    {"--words", "N", FLAG_INT, O(words), TC_GENERATE, "tokens to generate after the prompt", NULL, NULL},
    {"--temperature", "T", FLAG_DOUBLE, O(temperature), TC_GENERATE,
     "sampling temperature: 1 the model's distribution, lower is sharper, 0 greedy (the most likely token)", NULL, NULL},
    {"--allow-unk", NULL, FLAG_BOOL, O(allow_unk), TC_GENERATE, "let xxunk be drawn (fastai's no_unk=False)", NULL, NULL},
    {"--pretrained", "DIR", FLAG_STR, O(pretrained), TC_LMS,
     "fine-tune a language model `kiln text lm` wrote to DIR on SOURCE (fastai's ULMFiT step 2): its sizes (not "
     "--config), its LSTMs, and its embeddings carried to SOURCE's vocabulary (new words get the mean)", NULL, NULL},
};
#define N_TEXT ((int)(sizeof g_text_flags / sizeof g_text_flags[0]))
#define MAX_FLAGS (TRAIN_MAX_FLAGS + N_TEXT)

typedef cli_subcmd subcmd;

static const subcmd g_cmds[] = {
    {"lm", TC_LM, "kiln text lm SOURCE... --out DIR [flags]",
     "Trains an AWD-LSTM language model (fastai language_model_learner: its dropouts, AR/TAR, Adam,\n"
     "one-cycle) on SOURCE: text files (one document per paragraph), folders of .txt files, or CSVs\n"
     "(--text-col). The epoch table shows next-token accuracy and perplexity; writes\n"
     "DIR/model.safetensors, encoder.safetensors, vocab.txt, model.json, history.csv, metrics.json,\n"
     "losses.png, lr.png."},
    {"lr-find", TC_LR_FIND, "kiln text lr-find SOURCE... --out DIR [--label-col L [--lm DIR]] [flags]",
     "The LR range test on the language model, or with --label-col on the classifier (SOURCE: its\n"
     "TRAIN.csv; --lm: the body frozen, as fit's first phase): DIR/lr_find.png and .csv, the\n"
     "suggestions printed."},
    {"fit", TC_FIT, "kiln text fit TRAIN.csv --text-col C --label-col L [--valid VALID.csv] [--lm DIR] --out DIR",
     "Trains the ULMFiT classifier (fastai text_classifier_learner: AWD-LSTM encoder read in bptt chunks,\n"
     "masked concat pooling, BatchNorm head) on a CSV's text and label columns, from the encoder of --lm\n"
     "(frozen first, then unfrozen a layer group at a time with discriminative lrs: ULMFiT's gradual\n"
     "unfreezing) or from scratch (one-cycle); writes DIR/model.safetensors,\n"
     "vocab.txt, model.json, history.csv, metrics.json, losses.png, lr.png."},
    {"predict", TC_PREDICT, "kiln text predict DIR \"TEXT\"... | --file F",
     "Loads the classifier `kiln text fit` wrote to DIR and prints, per text, the most likely label,\n"
     "its probability and the text (cut at 60 characters)."},
    {"generate", TC_GENERATE, "kiln text generate DIR \"PROMPT\" [--words N] [--temperature T] [--seed S]",
     "Loads the language model `kiln text lm` wrote to DIR and continues PROMPT by N tokens drawn one\n"
     "at a time (fastai's LMLearner.predict), printed as text."},
};
#define N_CMDS ((int)(sizeof g_cmds / sizeof g_cmds[0]))

static void text_usage(FILE *f)
{
    fprintf(f, "usage: kiln text <command> [args] (kiln text <command> --help for each)\n\n"
               "Text the fast.ai way (ULMFiT): fastai's tokenizer, an AWD-LSTM language model, its classifier.\n\ncommands:\n");
    for (int i = 0; i < N_CMDS; i++) fprintf(f, "  %-9s %s\n", g_cmds[i].name, g_cmds[i].usage);
    fprintf(f, "\nexample:\n  kiln text lm ../shared/datasets/austen --config small --epochs 2 --out runs/austen-lm\n"
               "  kiln text generate runs/austen-lm \"It is a truth\" --words 30\n"
               "  kiln text fit train.csv --text-col review --label-col score --lm runs/austen-lm --out runs/clas\n"
               "\ndata-parallel (a kiln built with MPI): mpiexec -np N kiln text lm|fit|lr-find ... --bs B trains on N\n"
               "processes: --bs stays the global batch, each rank takes B / N of every batch (the language model's\n"
               "rows, the classifier's documents) and rank 0 writes; predict and generate run in one process.\n");
}

static kiln_awd_lstm_params config_of(const topts *o, int64_t vocab)
{
    kiln_awd_lstm_params c = kiln_awd_lstm_lm_config(vocab, (float)o->drop_mult);
    if (!strcmp(o->config, "small")) c.emb = 200, c.hid = 512;
    return c;
}


static int run(topts *o, const subcmd *c, int n_src, const char *const *src)
{
    kiln_recipe r;
    int rc = c->bit == TC_LM ? train_recipe(&o->t, &r) : 0;
    if (rc) return rc;
    char ck[4096];
    if (o->t.resume && access(cli_path(ck, sizeof ck, o->t.out, "checkpoint.safetensors"), R_OK) != 0)
        return cli_fail(o->t.cmd, 1, "--resume: no checkpoint %s to resume from", ck);
    kiln_ctx *ctx = train_ctx_new(&o->t);
    if (!ctx) return 1;
    kiln_text_lm_data_params dp = kiln_text_lm_data_default_params();
    dp.text_col = o->text_col, dp.valid_pct = o->valid_pct, dp.split_seed = 42;
    dp.vocab.max_vocab = o->max_vocab, dp.vocab.min_freq = o->min_freq;
    dp.lm.bs = o->t.bs, dp.lm.bptt = o->bptt; /* the global batch: --bs / N rows a rank */
    dp.lm.rank = train_rank(), dp.lm.world = train_world();
    dp.n_threads = kiln_ctx_threads(ctx);
    kiln_vocab *vocab = NULL;
    kiln_text_corpus_info info;
    kiln_data *d = kiln_text_lm_data_open(src, n_src, &dp, &vocab, &info);
    if (!d) {
        kiln_ctx_free(ctx);
        return cli_kfail(o->t.cmd, NULL);
    }
    if (!o->t.quiet) {
        printf("corpus: %lld file(s), %lld train / %lld valid documents, %lld / %lld tokens (%.2f s to tokenize), "
               "vocabulary %lld, unknown %.2f%% of valid tokens",
               (long long)info.n_files, (long long)info.n_docs[0], (long long)info.n_docs[1], (long long)info.n_tokens[0],
               (long long)info.n_tokens[1], info.seconds_tokenize, (long long)kiln_vocab_size(vocab),
               info.n_tokens[1] ? 100.0 * (double)info.n_unk[1] / (double)info.n_tokens[1] : 0.0);
        if (info.n_replaced) printf(", %lld bytes of invalid UTF-8 replaced", (long long)info.n_replaced);
        printf("\n");
    }
    kiln_awd_lstm_params cfg = config_of(o, kiln_vocab_size(vocab));
    kiln_text_lm_learner_params lp = kiln_text_lm_learner_default_params();
    int64_t matched = 0;
    lp.config = &cfg, lp.wd = o->t.wd, lp.learner = train_learner_params(&o->t);
    lp.pretrained = o->pretrained, lp.n_matched = &matched;
    int64_t n_vocab = kiln_vocab_size(vocab);
    kiln_learner *l = kiln_text_lm_learner_new(ctx, d, vocab, &lp);
    kiln_vocab_free(vocab);
    if (!l) {
        kiln_ctx_free(ctx);
        return cli_kfail(o->t.cmd, "learner");
    }
    if (!o->t.quiet) {
        if (o->pretrained)
            printf("pretrained: %s: %lld of the %lld vocabulary entries known to it (the others start at its mean embedding)\n",
                   o->pretrained, (long long)matched, (long long)n_vocab);
        printf("model: AWD-LSTM (%s), %lld parameters, dropouts x %g\n", o->pretrained ? "sizes of --pretrained" : o->config,
               (long long)kiln_model_n_params(kiln_learner_model(l), false), o->drop_mult);
    }
    if (c->bit == TC_LR_FIND) {
        rc = train_lr_find(&o->t, l);
    } else {
        train_settings s = {.n = 0};
        char srcs[48] = "";
        for (int i = 0, k = 0; i < n_src && k < (int)sizeof srcs - 1; i++)
            k += snprintf(srcs + k, sizeof srcs - (size_t)k, "%s%s", i ? "," : "", src[i]);
        train_settings_str(&s, "SOURCE", srcs);
        train_settings_str(&s, "--text-col", o->text_col);
        train_settings_num(&s, "--valid-pct", o->valid_pct);
        train_settings_str(&s, "--config", o->config);
        train_settings_num(&s, "--drop-mult", o->drop_mult);
        train_settings_num(&s, "--bptt", (double)o->bptt);
        train_settings_num(&s, "--max-vocab", (double)o->max_vocab);
        train_settings_num(&s, "--min-freq", (double)o->min_freq);
        train_settings_str(&s, "--pretrained", o->pretrained ? o->pretrained : "none");
        rc = train_fit(&o->t, l, srcs, &s);
    }
    kiln_learner_free(l);
    kiln_ctx_free(ctx);
    return rc;
}

/* kiln text predict */
static int run_predict(topts *o, const char *dir, int n, const char *const *given)
{
    kiln_ctx *ctx = train_ctx_new(&o->t);
    if (!ctx) return 1;
    kiln_learner *l = kiln_text_clas_learner_load(ctx, dir);
    if (!l) {
        kiln_ctx_free(ctx);
        return cli_kfail(o->t.cmd, NULL);
    }
    kiln_text_table tab = {0};
    char **lines = NULL;
    int64_t nl = 0;
    const char *const *texts = given;
    int64_t nt = n;
    int rc = 0;
    if (o->file) {
        size_t fl = strlen(o->file);
        if (fl > 4 && !strcmp(o->file + fl - 4, ".csv")) {
            if (kiln_text_csv_read(o->file, o->text_col, NULL, false, &tab)) rc = cli_kfail(o->t.cmd, NULL);
            texts = (const char *const *)tab.text, nt = tab.n;
        } else {
            FILE *f = fopen(o->file, "rb");
            if (!f) rc = cli_fail(o->t.cmd, 1, "cannot open %s", o->file);
            char *line = NULL;
            size_t cap = 0;
            ssize_t k;
            while (!rc && (k = getline(&line, &cap, f)) >= 0) {
                while (k && (line[k - 1] == '\n' || line[k - 1] == '\r')) line[--k] = 0;
                char **g = realloc(lines, (size_t)(nl + 1) * sizeof *lines);
                if (!g || !(g[nl] = strdup(line))) rc = cli_fail(o->t.cmd, 1, "out of memory");
                if (g) lines = g;
                if (!rc) nl++;
            }
            free(line);
            if (f) fclose(f);
            texts = (const char *const *)lines, nt = nl;
        }
    }
    const kiln_text_classes *c = kiln_text_learner_classes(l);
    int64_t *pred = rc ? NULL : calloc((size_t)(nt ? nt : 1), sizeof *pred);
    float *probs = rc ? NULL : calloc((size_t)((nt ? nt : 1) * c->n), sizeof *probs);
    int64_t unk = 0;
    if (!rc && (!pred || !probs)) rc = cli_fail(o->t.cmd, 1, "out of memory");
    if (!rc && kiln_text_classify(l, texts, nt, pred, probs, &unk)) rc = cli_kfail(o->t.cmd, NULL);
    for (int64_t i = 0; !rc && i < nt; i++)
        printf("%s\t%.4f\t%.60s\n", c->name[pred[i]], (double)probs[i * c->n + pred[i]], texts[i]);
    if (!rc && unk && !o->t.quiet) fprintf(stderr, "%s: %lld token(s) not in the vocabulary (xxunk)\n", o->t.cmd, (long long)unk);
    free(pred);
    free(probs);
    for (int64_t i = 0; i < nl; i++) free(lines[i]);
    free(lines);
    kiln_text_table_free(&tab);
    kiln_learner_free(l);
    kiln_ctx_free(ctx);
    return rc;
}

/* kiln text generate */
static int run_generate(topts *o, const char *dir, const char *prompt)
{
    kiln_ctx *ctx = train_ctx_new(&o->t);
    if (!ctx) return 1;
    kiln_learner *l = kiln_text_lm_learner_load(ctx, dir);
    int rc = l ? 0 : cli_kfail(o->t.cmd, NULL);
    kiln_text_generate_params gp = kiln_text_generate_default_params();
    gp.n_words = o->words, gp.temperature = o->temperature, gp.no_unk = !o->allow_unk, gp.seed = (uint64_t)o->t.seed;
    char *text = NULL;
    int64_t unk = 0;
    if (!rc && kiln_text_generate(l, prompt, &gp, &text, &unk)) rc = cli_kfail(o->t.cmd, NULL);
    if (!rc) printf("%s\n", text);
    if (!rc && unk && !o->t.quiet)
        fprintf(stderr, "%s: %lld token(s) of the prompt not in the vocabulary (xxunk)\n", o->t.cmd, (long long)unk);
    free(text);
    kiln_learner_free(l);
    kiln_ctx_free(ctx);
    return rc;
}

/* The classifier of kiln text fit (and lr-find --label-col) on train_csv: NULL after printing why */
static kiln_learner *clas_learner(topts *o, kiln_ctx *ctx, const char *train_csv)
{
    kiln_vocab *lmv = NULL;
    char path[4096];
    if (o->lm && kiln_vocab_load(cli_path(path, sizeof path, o->lm, "vocab.txt"), &lmv)) {
        cli_kfail(o->t.cmd, "--lm");
        return NULL;
    }
    kiln_text_clas_data_params dp = kiln_text_clas_data_default_params();
    dp.text_col = o->text_col, dp.label_col = o->label_col, dp.valid_pct = o->valid_pct, dp.vocab_in = lmv;
    dp.vocab.max_vocab = o->max_vocab, dp.vocab.min_freq = o->min_freq;
    dp.clas.bs = o->t.bs, dp.n_threads = kiln_ctx_threads(ctx); /* the global batch: --bs / N documents a rank */
    dp.clas.rank = train_rank(), dp.clas.world = train_world();
    kiln_vocab *vocab = NULL;
    kiln_text_classes classes = {0};
    kiln_text_corpus_info info;
    kiln_data *d = kiln_text_clas_data_open(train_csv, o->valid, &dp, &vocab, &classes, &info);
    kiln_vocab_free(lmv);
    if (!d) {
        cli_kfail(o->t.cmd, NULL);
        return NULL;
    }
    if (!o->t.quiet) {
        printf("data: %lld train / %lld valid documents, %lld / %lld tokens, vocabulary %lld%s, %lld classes (",
               (long long)info.n_docs[0], (long long)info.n_docs[1], (long long)info.n_tokens[0], (long long)info.n_tokens[1],
               (long long)kiln_vocab_size(vocab), o->lm ? " (the language model's)" : "", (long long)classes.n);
        for (int64_t i = 0; i < classes.n; i++) printf("%s%s", i ? ", " : "", classes.name[i]);
        printf("), unknown %.2f%% of valid tokens\n", info.n_tokens[1] ? 100.0 * (double)info.n_unk[1] / (double)info.n_tokens[1] : 0.0);
    }
    kiln_text_clas_learner_params lp = kiln_text_clas_learner_default_params();
    kiln_awd_lstm_params cfg = kiln_awd_lstm_clas_config(kiln_vocab_size(vocab), (float)o->drop_mult);
    if (!strcmp(o->config, "small")) cfg.emb = 200, cfg.hid = 512;
    lp.config = &cfg, lp.drop_mult = (float)o->drop_mult, lp.lm = o->lm, lp.bptt = o->bptt, lp.wd = o->t.wd;
    lp.learner = train_learner_params(&o->t);
    kiln_learner *l = kiln_text_clas_learner_new(ctx, d, vocab, &classes, &lp);
    kiln_vocab_free(vocab);
    kiln_text_classes_free(&classes);
    if (!l) {
        cli_kfail(o->t.cmd, "learner");
        return NULL;
    }
    if (!o->t.quiet)
        printf("model: ULMFiT classifier (AWD-LSTM %s), %lld parameters, %lld trainable%s\n",
               o->lm ? "of --lm" : o->config, (long long)kiln_model_n_params(kiln_learner_model(l), false),
               (long long)kiln_model_n_params(kiln_learner_model(l), true), o->lm ? " (body frozen)" : "");
    return l;
}

/* The validation split's interpretation into out (rank 0). N ranks: the learner's data holds
 * this rank's shard of the split; the whole split is interpreted, the weights being every rank's. */
static kiln_status interpret(kiln_learner *l, const char *out, kiln_interp *it)
{
    if (train_world() == 1) return kiln_text_interpret(l, KILN_DATA_SPLIT_VALID, out, 9, it);
    kiln_data *whole = kiln_clas_data_whole(kiln_learner_data(l));
    bool own = true;
    if (!whole) return kiln_last_status();
    if (kiln_learner_swap_data(l, &whole, &own)) {
        kiln_data_free(whole);
        return kiln_last_status();
    }
    kiln_status st = kiln_text_interpret(l, KILN_DATA_SPLIT_VALID, out, 9, it);
    kiln_learner_swap_data(l, &whole, &own); /* the shard back; whole is the copy again */
    kiln_data_free(whole);
    return st;
}

/* kiln text fit (the classifier), and lr-find with --label-col */
static int run_fit(topts *o, const subcmd *c, const char *train_csv)
{
    kiln_recipe r;
    int rc = c->bit == TC_FIT ? train_recipe(&o->t, &r) : 0;
    if (rc) return rc;
    kiln_ctx *ctx = train_ctx_new(&o->t);
    if (!ctx) return 1;
    kiln_learner *l = clas_learner(o, ctx, train_csv);
    if (!l) {
        kiln_ctx_free(ctx);
        return 1;
    }
    if (c->bit == TC_LR_FIND) {
        rc = train_lr_find(&o->t, l);
        kiln_learner_free(l);
        kiln_ctx_free(ctx);
        return rc;
    }
    train_settings s = {.n = 0};
    train_settings_str(&s, "TRAIN", train_csv);
    train_settings_str(&s, "--valid", o->valid ? o->valid : "none");
    train_settings_str(&s, "--text-col", o->text_col);
    train_settings_str(&s, "--label-col", o->label_col);
    train_settings_str(&s, "--lm", o->lm ? o->lm : "none");
    train_settings_str(&s, "--config", o->config);
    train_settings_num(&s, "--drop-mult", o->drop_mult);
    train_settings_num(&s, "--bptt", (double)o->bptt);
    rc = train_fit(&o->t, l, train_csv, &s);
    kiln_interp it = {0};
    if (!rc && train_rank() == 0 && interpret(l, o->t.out, &it)) rc = cli_kfail(o->t.cmd, "interpretation");
    if (!rc && !o->t.quiet && train_rank() == 0) {
        const kiln_text_classes *cl = kiln_text_learner_classes(l);
        kiln_confused mc[3];
        int total = 0, k = kiln_interp_most_confused(&it, 1, mc, 3, &total);
        printf("interpretation (validation, %lld documents): accuracy %.4f; most confused:", (long long)it.n, it.accuracy);
        for (int i = 0; i < k; i++)
            printf("%s %s as %s (%lld)", i ? "," : "", cl->name[mc[i].actual], cl->name[mc[i].predicted], (long long)mc[i].count);
        printf("%s\nwrote %s/confusion_matrix.csv%s, top_losses.csv\n", k ? "" : " none", o->t.out,
               kiln_plot_available() ? ", confusion_matrix.png" : "");
    }
    kiln_interp_free(&it);
    kiln_learner_free(l);
    kiln_ctx_free(ctx);
    return rc;
}

int cmd_text(int argc, char **argv);
int cmd_text(int argc, char **argv)
{
    int rc;
    const subcmd *c = subcmd_find("text", argc, argv, g_cmds, N_CMDS, text_usage, &rc);
    if (!c) return rc;
    char prog[64];
    snprintf(prog, sizeof prog, "kiln text %s", c->name);
    kiln_text_lm_data_params dd = kiln_text_lm_data_default_params();
    topts o = {.t = train_defaults(), .text_col = dd.text_col, .config = "paper",
               .valid_pct = c->bit == TC_FIT ? kiln_text_clas_data_default_params().valid_pct : dd.valid_pct,
               .drop_mult = c->bit == TC_FIT ? 0.5 : 1.0, .bptt = dd.lm.bptt, .max_vocab = dd.vocab.max_vocab,
               .min_freq = dd.vocab.min_freq, .label_col = kiln_text_clas_data_default_params().label_col,
               .words = kiln_text_generate_default_params().n_words,
               .temperature = kiln_text_generate_default_params().temperature};
    o.t.cmd = prog;
    o.t.bs = dd.lm.bs;      /* fastai's LM batch size, 64 */
    o.t.lr = 2e-2;          /* fastai's ULMFiT notebook: fit_one_cycle(1, 2e-2) */
    o.t.wd = kiln_text_lm_learner_default_params().wd;
    cli_flag flags[MAX_FLAGS];
    unsigned map[TRAIN_N_KINDS] = {[TRAIN_LR_FIND] = TC_LR_FIND, [TRAIN_FIT] = TC_LM | TC_FIT, [TRAIN_EVAL] = 0,
                                   [TRAIN_DATA] = TC_DATA, [TRAIN_ALL] = TC_ALL};
    int n_flags = train_flags(flags, offsetof(topts, t), map);
    memcpy(flags + n_flags, g_text_flags, sizeof g_text_flags);
    n_flags += N_TEXT;
    const topts defaults = o;
    bool given[MAX_FLAGS] = {false};
    const char **pos = NULL;
    int n_pos = 0;
    rc = subcmd_parse(prog, c, flags, n_flags, TC_ALL, argc - 1, argv + 1, &o, &defaults, &o.t.help, given, &pos, &n_pos);
    if (rc) {
        rc = rc < 0 ? 0 : rc;
        goto done;
    }
    train_given(&o.t, flags, n_flags, given);
    bool clas = c->bit == TC_FIT || (c->bit == TC_LR_FIND && given[flags_index(flags, n_flags, "--label-col")]);
    if (c->bit == TC_LR_FIND && !clas && (o.lm || o.valid)) {
        rc = cli_fail(prog, 2, "%s applies to the classifier's lr-find: give --label-col too", o.lm ? "--lm" : "--valid");
        goto done;
    }
    if (clas && o.pretrained) {
        rc = cli_fail(prog, 2, "--pretrained is for language models; the classifier takes its encoder from --lm");
        goto done;
    }
    if (c->bit == TC_LR_FIND && clas && !given[flags_index(flags, n_flags, "--drop-mult")]) o.drop_mult = 0.5;
    if (c->bit == TC_FIT && o.lm) { /* ULMFiT: the pretrained encoder frozen first */
        if (!o.t.given_schedule) o.t.schedule = "ulmfit";
        if (!given[flags_index(flags, n_flags, "--lr-mult")]) o.t.lr_mult = 45.6976; /* 2.6^4 (fine-tune too) */
    }
    const char *bad = train_check(&o.t);
    if (!bad && c->bit == TC_GENERATE)
        bad = o.words < 0 || o.words > 100000 ? "--words must be in [0, 100000]"
            : !(o.temperature >= 0 && o.temperature <= 100) ? "--temperature must be in [0, 100]" : NULL;
    if (!bad)
        bad = !(o.valid_pct > 0 && o.valid_pct < 1) ? "--valid-pct must be in (0, 1)"
            : strcmp(o.config, "paper") && strcmp(o.config, "small") ? "--config must be paper or small"
            : !(o.drop_mult >= 0 && o.drop_mult <= 1.4) ? "--drop-mult must be in [0, 1.4] (the largest dropout, 0.25 x F, stays below 0.35)"
            : o.bptt < 5 || o.bptt > 4096 ? "--bptt must be in [5, 4096]"
            : o.max_vocab < 16 || o.max_vocab > 10000000 ? "--max-vocab must be in [16, 10000000]"
            : o.min_freq < 1 ? "--min-freq must be >= 1" : NULL;
    if (bad) {
        rc = cli_fail(prog, 2, "%s", bad);
        goto done;
    }
    if ((c->bit == TC_PREDICT || c->bit == TC_GENERATE) && train_comm() && train_world() > 1) {
        rc = cli_fail(prog, 2, "%s runs in one process: under mpiexec with %d ranks each would do the same work; "
                      "data-parallel is for training (lm, fit, lr-find)", c->name, train_world());
        goto done;
    }
    if (c->bit == TC_PREDICT) {
        if (n_pos < 1 || (n_pos < 2 && !o.file) || (n_pos > 1 && o.file)) {
            rc = cli_fail(prog, 2, "%s (usage: %s)", n_pos < 1 ? "missing DIR" : o.file ? "texts and --file both given" : "no text (give TEXT... or --file)", c->usage);
            goto done;
        }
        rc = run_predict(&o, pos[0], n_pos - 1, pos + 1);
        goto done;
    }
    if (c->bit == TC_GENERATE) {
        if (n_pos != 2) {
            rc = cli_fail(prog, 2, "%s (usage: %s)", n_pos < 1 ? "missing DIR" : n_pos < 2 ? "missing PROMPT (\"\" for none)"
                                                                                : "one PROMPT expected (quote it)", c->usage);
            goto done;
        }
        rc = run_generate(&o, pos[0], pos[1]);
        goto done;
    }
    if (n_pos < 1) {
        rc = cli_fail(prog, 2, "missing SOURCE (usage: %s)", c->usage);
        goto done;
    }
    if (!o.t.out) {
        rc = cli_fail(prog, 2, "--out is required (usage: %s)", c->usage);
        goto done;
    }
    if (strlen(o.t.out) > CLI_DIR_MAX) {
        rc = cli_fail(prog, 2, "--out is %zu bytes long; at most %d are allowed", strlen(o.t.out), CLI_DIR_MAX);
        goto done;
    }
    if (clas && n_pos != 1) {
        rc = cli_fail(prog, 2, "one TRAIN.csv expected (usage: %s)", c->usage);
        goto done;
    }
    rc = clas ? run_fit(&o, c, pos[0]) : run(&o, c, n_pos, pos);
done:
    free(pos);
    return rc;
}
