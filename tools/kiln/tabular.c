/* kiln tabular <fit|lr-find|predict>: fastai's tabular_learner on a CSV file. One flag table (the
 * common training flags of train.h and the table's own); each subcommand is one library call for
 * the data (kiln_tabular_data_open), one for the learner (kiln_tabular_learner_new) and the
 * shared training driver (train.h); predict is kiln_tabular_learner_load +
 * kiln_tabular_predict_csv. */
#include "lists.h"
#include "subcmd.h"
#include "train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { TB_FIT = 1u << 0, TB_LR_FIND = 1u << 1, TB_PREDICT = 1u << 2, TB_ALL = (1u << 3) - 1u };
#define TB_TRAIN (TB_FIT | TB_LR_FIND)

typedef struct tbopts {
    train_opts t;
    const char *target, *valid, *cat, *cont, *date, *skip, *layers, *ps, *y_range, *task;
    double valid_pct, embed_p;
    int64_t max_card;
    bool log_target;
} tbopts;

#define O(f) offsetof(tbopts, f)
static const cli_flag g_tab_flags[] = {
    {"--target", "COL", FLAG_STR, O(target), TB_TRAIN, "the column to predict (required)", NULL, NULL},
    {"--valid", "CSV", FLAG_STR, O(valid), TB_TRAIN, "validation rows (default: --valid-pct of the rows)", NULL, NULL},
    {"--valid-pct", "F", FLAG_DOUBLE, O(valid_pct), TB_TRAIN,
     "share of the rows kept for validation without --valid, picked with split seed 42", NULL, NULL},
    {"--task", "NAME", FLAG_STR, O(task), TB_TRAIN,
     "auto (regression when every target value is a number, else classification) | regression | classification",
     NULL, NULL},
    {"--log-target", NULL, FLAG_BOOL, O(log_target), TB_TRAIN, "regression on the log of the target (RMSE of the log)",
     NULL, NULL},
    {"--cat", "A,B", FLAG_STR, O(cat), TB_TRAIN, "columns that are categorical whatever their values", NULL, NULL},
    {"--cont", "A,B", FLAG_STR, O(cont), TB_TRAIN, "columns that are continuous", NULL, NULL},
    {"--date", "A,B", FLAG_STR, O(date), TB_TRAIN,
     "date columns, expanded into year, month, week, day, ... (fastai add_datepart; found on their own too)", NULL, NULL},
    {"--skip", "A,B", FLAG_STR, O(skip), TB_TRAIN, "columns left out", NULL, NULL},
    {"--max-card", "N", FLAG_INT, O(max_card), TB_TRAIN,
     "integer columns with more distinct values are continuous (fastai cont_cat_split)", NULL, NULL},
    {"--layers", "N,N", FLAG_STR, O(layers), TB_TRAIN, "hidden layer sizes", NULL, NULL},
    {"--ps", "P,P", FLAG_STR, O(ps), TB_TRAIN, "dropout after each hidden layer (default: 0 each)", NULL, NULL},
    {"--embed-p", "P", FLAG_DOUBLE, O(embed_p), TB_TRAIN, "dropout on the embeddings", NULL, NULL},
    {"--y-range", "LO,HI", FLAG_STR, O(y_range), TB_TRAIN,
     "regression: the output goes through sigmoid(x) * (HI - LO) + LO (fastai y_range)", NULL, NULL},
};
#define N_TAB ((int)(sizeof g_tab_flags / sizeof g_tab_flags[0]))
#define MAX_FLAGS (TRAIN_MAX_FLAGS + N_TAB)

static const cli_subcmd g_cmds[] = {
    {"fit", TB_FIT, "kiln tabular fit DATA.csv --target COL --out DIR [flags]",
     "Trains fastai's tabular model (entity embeddings for categorical columns, BatchNorm on the\n"
     "continuous ones, Linear-ReLU-BatchNorm layers) on DATA.csv: procs learned on the training rows\n"
     "(Categorify, FillMissing, Normalize, add_datepart), regression (MSE, RMSE) or classification\n"
     "(cross-entropy, accuracy); writes DIR/model.safetensors, procs.json, model.json, history.csv,\n"
     "metrics.json, losses.png, lr.png (classification: confusion_matrix.csv/.png, top_losses.csv)."},
    {"lr-find", TB_LR_FIND, "kiln tabular lr-find DATA.csv --target COL --out DIR [flags]",
     "The LR range test on the tabular model: DIR/lr_find.png and .csv, the suggestions printed."},
    {"predict", TB_PREDICT, "kiln tabular predict DIR DATA.csv [--out FILE]",
     "Loads the model `kiln tabular fit` wrote to DIR and predicts every row of DATA.csv (its columns\n"
     "by name; unseen categories become #na#, as fastai): a CSV with the row number, the prediction\n"
     "(in the target's units) and for a classifier each class's probability, to --out FILE (written\n"
     "atomically) or standard output."},
};
#define N_CMDS ((int)(sizeof g_cmds / sizeof g_cmds[0]))

static void tab_usage(FILE *f)
{
    fprintf(f, "usage: kiln tabular <command> [args] (kiln tabular <command> --help for each)\n\n"
               "Tables the fast.ai way: entity embeddings and an MLP (fastai tabular_learner).\n\ncommands:\n");
    for (int i = 0; i < N_CMDS; i++) fprintf(f, "  %-8s %s\n", g_cmds[i].name, g_cmds[i].usage);
    fprintf(f, "\nexample (Ames housing):\n"
               "  kiln tabular fit ../shared/datasets/ames/ames.csv --target Sale_Price --log-target --out runs/ames\n"
               "  kiln tabular predict runs/ames ../shared/datasets/ames/ames.csv --out runs/ames/preds.csv\n");
}

/* The tabular learner on DATA.csv for fit and lr-find: NULL after printing why. */
static kiln_learner *make_learner(tbopts *o, kiln_ctx *ctx, const char *data, cli_lists *ls)
{
    kiln_tab_params dp = kiln_tab_default_params();
    dp.target = o->target, dp.log_target = o->log_target, dp.max_card = (int)o->max_card;
    dp.valid_pct = o->valid_pct, dp.batch_size = train_rank_bs(&o->t);
    dp.rank = train_rank(), dp.world = train_world(); /* issue 13: this rank's shard */
    dp.task = !strcmp(o->task, "regression") ? KILN_TAB_REGRESSION
            : !strcmp(o->task, "classification") ? KILN_TAB_CLASSIFICATION : KILN_TAB_AUTO;
    dp.cat = (const char *const *)ls->names[0], dp.cont = (const char *const *)ls->names[1];
    dp.date = (const char *const *)ls->names[2], dp.skip = (const char *const *)ls->names[3];
    kiln_tab_procs *procs = NULL;
    kiln_tab_info info;
    kiln_data *d = kiln_tabular_data_open(data, o->valid, &dp, &procs, &info);
    if (!d) {
        cli_kfail(o->t.cmd, NULL);
        return NULL;
    }
    kiln_tabular_learner_params lp = kiln_tabular_learner_default_params();
    if (o->layers) {
        lp.n_layers = ls->n_layers;
        for (int k = 0; k < ls->n_layers; k++) lp.layers[k] = (int64_t)ls->layers[k], lp.ps[k] = 0;
    }
    for (int k = 0; o->ps && k < lp.n_layers; k++) lp.ps[k] = (float)ls->ps[k];
    lp.embed_p = (float)o->embed_p, lp.wd = o->t.wd, lp.learner = train_learner_params(&o->t);
    if (o->y_range) lp.y_range = true, lp.y_lo = ls->y_range[0], lp.y_hi = ls->y_range[1];
    if (!o->t.quiet) {
        int nc = kiln_tab_procs_n_cat(procs), nn = kiln_tab_procs_n_cont(procs);
        printf("data: %lld train / %lld valid rows (%.2f s, %.0f MB/s), %d categorical and %d continuous columns, target %s",
               (long long)info.n_train, (long long)info.n_valid, info.seconds, info.mb_per_s, nc, nn, o->target);
        if (kiln_tab_procs_is_classification(procs))
            printf(" (%lld classes)\n", (long long)kiln_tab_procs_n_classes(procs));
        else
            printf(" (regression%s)\n", kiln_tab_procs_log_target(procs) ? " on its log" : "");
    }
    kiln_learner *l = kiln_tabular_learner_new(ctx, d, procs, &lp);
    kiln_tab_procs_free(procs);
    if (!l) {
        cli_kfail(o->t.cmd, "learner");
        return NULL;
    }
    if (!o->t.quiet)
        printf("model: tabular (layers %s), %lld parameters\n", o->layers ? o->layers : "200,100",
               (long long)kiln_model_n_params(kiln_learner_model(l), false));
    return l;
}

static int run_train(tbopts *o, const cli_subcmd *c, const char *data, cli_lists *ls)
{
    kiln_recipe r;
    int rc = c->bit == TB_FIT ? train_recipe(&o->t, &r) : 0;
    if (rc) return rc;
    kiln_ctx *ctx = train_ctx_new(&o->t);
    if (!ctx) return 1;
    kiln_learner *l = make_learner(o, ctx, data, ls);
    if (!l) rc = 1;
    else if (c->bit == TB_LR_FIND) rc = train_lr_find(&o->t, l);
    else {
        train_settings s = {.n = 0};
        train_settings_str(&s, "DATA", data);
        train_settings_str(&s, "--target", o->target);
        train_settings_str(&s, "--valid", o->valid ? o->valid : "none");
        train_settings_num(&s, "--valid-pct", o->valid_pct);
        train_settings_str(&s, "--task", o->task);
        train_settings_num(&s, "--log-target", o->log_target);
        train_settings_str(&s, "--cat", o->cat ? o->cat : "");
        train_settings_str(&s, "--cont", o->cont ? o->cont : "");
        train_settings_str(&s, "--date", o->date ? o->date : "");
        train_settings_str(&s, "--skip", o->skip ? o->skip : "");
        train_settings_num(&s, "--max-card", (double)o->max_card);
        train_settings_str(&s, "--layers", o->layers ? o->layers : "200,100");
        train_settings_str(&s, "--ps", o->ps ? o->ps : "");
        train_settings_num(&s, "--embed-p", o->embed_p);
        train_settings_str(&s, "--y-range", o->y_range ? o->y_range : "none");
        rc = train_fit(&o->t, l, data, &s);
        if (!rc && kiln_learner_n_classes(l) > 0) {
            kiln_interp it = {0};
            if (kiln_tabular_interpret(l, KILN_DATA_SPLIT_VALID, o->t.out, 9, &it)) rc = cli_kfail(o->t.cmd, "interpretation");
            else if (!o->t.quiet)
                printf("interpretation (validation, %lld rows): accuracy %.4f; wrote %s/confusion_matrix.csv, top_losses.csv\n",
                       (long long)it.n, it.accuracy, o->t.out);
            kiln_interp_free(&it);
        }
    }
    kiln_learner_free(l);
    kiln_ctx_free(ctx);
    return rc;
}

static int run_predict(tbopts *o, const char *dir, const char *data)
{
    kiln_ctx *ctx = train_ctx_new(&o->t);
    if (!ctx) return 1;
    kiln_learner *l = kiln_tabular_learner_load(ctx, dir);
    int rc = !l ? cli_kfail(o->t.cmd, NULL) : kiln_tabular_predict_csv(l, data, o->t.out) ? cli_kfail(o->t.cmd, NULL) : 0;
    if (!rc && o->t.out && !o->t.quiet) printf("wrote %s\n", o->t.out);
    kiln_learner_free(l);
    kiln_ctx_free(ctx);
    return rc;
}

int cmd_tabular(int argc, char **argv);
int cmd_tabular(int argc, char **argv)
{
    int rc;
    const cli_subcmd *c = subcmd_find("tabular", argc, argv, g_cmds, N_CMDS, tab_usage, &rc);
    if (!c) return rc;
    char prog[64];
    snprintf(prog, sizeof prog, "kiln tabular %s", c->name);
    kiln_tab_params dd = kiln_tab_default_params();
    tbopts o = {.t = train_defaults(), .valid_pct = dd.valid_pct, .max_card = dd.max_card, .task = "auto"};
    o.t.cmd = prog;
    o.t.bs = dd.batch_size;
    o.t.wd = kiln_tabular_learner_default_params().wd;
    cli_flag flags[MAX_FLAGS];
    unsigned map[TRAIN_N_KINDS] = {[TRAIN_LR_FIND] = TB_LR_FIND, [TRAIN_FIT] = TB_FIT, [TRAIN_EVAL] = 0,
                                   [TRAIN_DATA] = TB_ALL, [TRAIN_ALL] = TB_ALL};
    int n_flags = train_flags(flags, offsetof(tbopts, t), map);
    memcpy(flags + n_flags, g_tab_flags, sizeof g_tab_flags);
    n_flags += N_TAB;
    const tbopts defaults = o;
    bool given[MAX_FLAGS] = {false};
    const char **pos = NULL;
    int n_pos = 0;
    cli_lists ls = {0};
    rc = subcmd_parse(prog, c, flags, n_flags, TB_ALL, argc - 1, argv + 1, &o, &defaults, &o.t.help, given, &pos, &n_pos);
    if (rc) {
        rc = rc < 0 ? 0 : rc;
        goto done;
    }
    train_given(&o.t, flags, n_flags, given);
    const char *bad = train_check(&o.t);
    if (!bad && c->bit != TB_PREDICT)
        bad = !o.target ? "--target is required"
            : !(o.valid_pct > 0 && o.valid_pct < 1) ? "--valid-pct must be in (0, 1)"
            : strcmp(o.task, "auto") && strcmp(o.task, "regression") && strcmp(o.task, "classification")
                ? "--task must be auto, regression or classification"
            : o.max_card < 1 || o.max_card > 1000000 ? "--max-card must be in [1, 1000000]"
            : !(o.embed_p >= 0 && o.embed_p < 1) ? "--embed-p must be in [0, 1)"
            : cli_lists_parse(&ls, (const char *[]){o.cat, o.cont, o.date, o.skip}, o.layers, o.ps, o.y_range);
    if (bad) {
        rc = cli_fail(prog, 2, "%s", bad);
        goto done;
    }
    if (c->bit == TB_PREDICT) {
        rc = n_pos != 2 ? cli_fail(prog, 2, "expected DIR and DATA.csv (usage: %s)", c->usage) : run_predict(&o, pos[0], pos[1]);
        goto done;
    }
    if (n_pos != 1) {
        rc = cli_fail(prog, 2, "%s (usage: %s)", n_pos ? "one DATA.csv expected" : "missing DATA.csv", c->usage);
        goto done;
    }
    if (!o.t.out || strlen(o.t.out) > CLI_DIR_MAX) {
        rc = cli_fail(prog, 2, "--out DIR is required (at most %d bytes) (usage: %s)", CLI_DIR_MAX, c->usage);
        goto done;
    }
    rc = run_train(&o, c, pos[0], &ls);
done:
    cli_lists_free(&ls);
    free(pos);
    return rc;
}
