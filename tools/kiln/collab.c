/* kiln collab <fit|lr-find|predict|recommend|export>: fastai's collab_learner on a ratings CSV.
 * One flag table (the common training flags of train.h and collab's own); each subcommand is one
 * library call for the data (kiln_collab_data_open), one for the learner
 * (kiln_collab_learner_new) and the shared training driver, or kiln_tabular_learner_load and one
 * call on the saved model (kiln_collab_predict_csv, kiln_collab_recommend,
 * kiln_collab_export_tables). */
#include "lists.h"
#include "subcmd.h"
#include "train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CB_FIT = 1u << 0, CB_LR_FIND = 1u << 1, CB_PREDICT = 1u << 2, CB_RECOMMEND = 1u << 3, CB_EXPORT = 1u << 4,
       CB_ALL = (1u << 5) - 1u };
#define CB_TRAIN (CB_FIT | CB_LR_FIND)

typedef struct cbopts {
    train_opts t;
    const char *user, *item, *rating, *valid, *y_range, *layers;
    double valid_pct;
    int64_t factors, n;
    bool nn, sparse, no_y_range;
} cbopts;

#define O(f) offsetof(cbopts, f)
static const cli_flag g_collab_flags[] = {
    {"--user", "COL|ID", FLAG_STR, O(user), CB_TRAIN | CB_PREDICT | CB_RECOMMEND,
     "fit, lr-find, predict: the user column (default: the first column; predict: the training file's); "
     "recommend: the user's id (required)", NULL, NULL},
    {"--item", "COL", FLAG_STR, O(item), CB_TRAIN | CB_PREDICT,
     "the item column (default: the second column; predict: the training file's)", NULL, NULL},
    {"--rating", "COL", FLAG_STR, O(rating), CB_TRAIN, "the rating column (default: the third column)", NULL, NULL},
    {"--valid", "CSV", FLAG_STR, O(valid), CB_TRAIN, "validation ratings (default: --valid-pct of the rows)", NULL, NULL},
    {"--valid-pct", "F", FLAG_DOUBLE, O(valid_pct), CB_TRAIN,
     "share of the ratings kept for validation without --valid, picked with split seed 42", NULL, NULL},
    {"--factors", "N", FLAG_INT, O(factors), CB_TRAIN, "latent factors per user and item", NULL, NULL},
    {"--nn", NULL, FLAG_BOOL, O(nn), CB_TRAIN, "EmbeddingNN (embeddings sized by fastai's rule, an MLP) instead of the dot product",
     NULL, NULL},
    {"--layers", "N,N", FLAG_STR, O(layers), CB_TRAIN, "--nn: hidden layer sizes (default: --factors)", NULL, NULL},
    {"--y-range", "LO,HI", FLAG_STR, O(y_range), CB_TRAIN, "ratings through sigmoid(x) * (HI - LO) + LO (default: 0,5.5)",
     NULL, NULL},
    {"--no-y-range", NULL, FLAG_BOOL, O(no_y_range), CB_TRAIN, "the raw output, no sigmoid range", NULL, NULL},
    {"--sparse", NULL, FLAG_BOOL, O(sparse), CB_TRAIN,
     "lazy AdamW on the embedding tables: only the rows of a batch move (faster; not fastai's dense step)", NULL, NULL},
    {"--n", "N", FLAG_INT, O(n), CB_RECOMMEND, "items to recommend", NULL, NULL},
};
#define N_COLLAB ((int)(sizeof g_collab_flags / sizeof g_collab_flags[0]))
#define MAX_FLAGS (TRAIN_MAX_FLAGS + N_COLLAB)

static const cli_subcmd g_cmds[] = {
    {"fit", CB_FIT, "kiln collab fit RATINGS.csv --out DIR [--user COL --item COL --rating COL] [flags]",
     "Trains fastai's collaborative-filtering model (EmbeddingDotBias: user and item factors and\n"
     "biases, a sigmoid range; or EmbeddingNN with --nn) on RATINGS.csv with MSE (RMSE reported) and\n"
     "AdamW (wd 0.1); writes DIR/model.safetensors, procs.json, seen.csv, model.json, history.csv,\n"
     "metrics.json, losses.png, lr.png."},
    {"lr-find", CB_LR_FIND, "kiln collab lr-find RATINGS.csv --out DIR [flags]",
     "The LR range test on the collab model: DIR/lr_find.png and .csv, the suggestions printed."},
    {"predict", CB_PREDICT, "kiln collab predict DIR PAIRS.csv [--out FILE]",
     "Loads the model `kiln collab fit` wrote to DIR and predicts the rating of every (user, item) row\n"
     "of PAIRS.csv, as CSV (user, item, rating) to --out FILE or standard output. A user or item the\n"
     "model does not know is an error naming its line."},
    {"recommend", CB_RECOMMEND, "kiln collab recommend DIR --user ID [--n 10]",
     "The N items with the highest predicted rating that the user did not rate in the training data."},
    {"export", CB_EXPORT, "kiln collab export DIR --out DIR2",
     "Writes the learned tables as CSV: DIR2/users.csv and items.csv (id, bias, f0, f1, ...), and\n"
     "prints the five most and least liked items by their bias; the factors place similar items close."},
};
#define N_CMDS ((int)(sizeof g_cmds / sizeof g_cmds[0]))

static void collab_usage(FILE *f)
{
    fprintf(f, "usage: kiln collab <command> [args] (kiln collab <command> --help for each)\n\n"
               "Recommendations the fast.ai way: collaborative filtering (fastai collab_learner).\n\ncommands:\n");
    for (int i = 0; i < N_CMDS; i++) fprintf(f, "  %-9s %s\n", g_cmds[i].name, g_cmds[i].usage);
    fprintf(f, "\nexample (MovieLens):\n"
               "  kiln collab fit ../shared/datasets/movielens/ratings.csv --epochs 5 --lr 5e-3 --out runs/ml\n"
               "  kiln collab recommend runs/ml --user 15 --n 10\n");
}

static int run_train(cbopts *o, const cli_subcmd *c, const char *data, const cli_lists *ls)
{
    kiln_recipe r;
    int rc = c->bit == CB_FIT ? train_recipe(&o->t, &r) : 0;
    if (rc) return rc;
    kiln_ctx *ctx = train_ctx_new(&o->t);
    if (!ctx) return 1;
    kiln_tab_params dp = kiln_tab_default_params();
    dp.valid_pct = o->valid_pct, dp.batch_size = train_rank_bs(&o->t);
    dp.rank = train_rank(), dp.world = train_world(); /* issue 13: this rank's shard */
    kiln_tab_procs *procs = NULL;
    kiln_tab_info info;
    kiln_data *d = kiln_collab_data_open(data, o->valid, o->user, o->item, o->rating, &dp, &procs, &info);
    kiln_learner *l = NULL;
    if (!d) {
        rc = cli_kfail(o->t.cmd, NULL);
        goto done;
    }
    if (!o->t.quiet)
        printf("data: %lld train / %lld valid ratings (%.2f s), %lld users, %lld items (with #na#)\n", (long long)info.n_train,
               (long long)info.n_valid, info.seconds, (long long)kiln_tab_procs_cardinality(procs, 0),
               (long long)kiln_tab_procs_cardinality(procs, 1));
    kiln_collab_learner_params lp = kiln_collab_learner_default_params();
    lp.n_factors = o->factors, lp.use_nn = o->nn, lp.sparse = o->sparse, lp.wd = o->t.wd;
    lp.layers[0] = o->factors;
    if (o->layers) {
        lp.n_layers = ls->n_layers;
        for (int k = 0; k < ls->n_layers; k++) lp.layers[k] = (int64_t)ls->layers[k];
    }
    if (o->y_range) lp.y_lo = ls->y_range[0], lp.y_hi = ls->y_range[1];
    lp.y_range = !o->no_y_range;
    lp.learner = train_learner_params(&o->t);
    l = kiln_collab_learner_new(ctx, d, procs, &lp);
    if (!l) {
        rc = cli_kfail(o->t.cmd, "learner");
        goto done;
    }
    if (!o->t.quiet)
        printf("model: %s, %lld factors, %lld parameters%s\n", o->nn ? "EmbeddingNN" : "EmbeddingDotBias", (long long)o->factors,
               (long long)kiln_model_n_params(kiln_learner_model(l), false), o->sparse ? ", sparse (lazy) AdamW" : "");
    if (c->bit == CB_LR_FIND) {
        rc = train_lr_find(&o->t, l);
        goto done;
    }
    train_settings s = {.n = 0};
    train_settings_str(&s, "RATINGS", data);
    train_settings_str(&s, "--user", kiln_tab_procs_cat_name(procs, 0));
    train_settings_str(&s, "--item", kiln_tab_procs_cat_name(procs, 1));
    train_settings_str(&s, "--rating", kiln_tab_procs_target(procs));
    train_settings_str(&s, "--valid", o->valid ? o->valid : "none");
    train_settings_num(&s, "--valid-pct", o->valid_pct);
    train_settings_num(&s, "--factors", (double)o->factors);
    train_settings_num(&s, "--nn", o->nn);
    train_settings_str(&s, "--layers", o->layers ? o->layers : "");
    train_settings_str(&s, "--y-range", o->no_y_range ? "none" : o->y_range ? o->y_range : "0,5.5");
    train_settings_num(&s, "--sparse", o->sparse);
    rc = train_fit(&o->t, l, data, &s);
done:
    kiln_tab_procs_free(procs);
    kiln_learner_free(l);
    kiln_ctx_free(ctx);
    return rc;
}

static const float *g_bias; /* for by_bias */
static int by_bias(const void *a, const void *b)
{
    float x = g_bias[*(const int64_t *)a], y = g_bias[*(const int64_t *)b];
    return (x < y) - (x > y);
}

/* The items with the largest and smallest learned bias (a dot-bias model's; fastai's lesson
 * sorts movie_bias so): what people like whoever they are, and what they do not. */
static void print_liked(kiln_learner *l)
{
    kiln_collab_tables t;
    const kiln_tab_procs *pr = kiln_tabular_learner_procs(l);
    if (kiln_collab_tables_of(kiln_learner_model(l), &t) || !pr || t.n_items < 2) {
        kiln_clear_error(); /* EmbeddingNN: no biases to sort */
        return;
    }
    int64_t n = t.n_items - 1, *idx = malloc((size_t)n * sizeof *idx);
    if (!idx) return;
    for (int64_t i = 0; i < n; i++) idx[i] = i + 1; /* code 0 is #na# */
    g_bias = t.i_bias->data;
    qsort(idx, (size_t)n, sizeof *idx, by_bias);
    int64_t k = n < 5 ? n : 5;
    printf("most liked items (bias):");
    for (int64_t i = 0; i < k; i++) printf(" %s (%.2f)", kiln_tab_procs_category(pr, 1, idx[i]), (double)g_bias[idx[i]]);
    printf("\nleast liked items (bias):");
    for (int64_t i = 0; i < k; i++)
        printf(" %s (%.2f)", kiln_tab_procs_category(pr, 1, idx[n - 1 - i]), (double)g_bias[idx[n - 1 - i]]);
    printf("\n");
    free(idx);
}

/* predict, recommend, export on the model in dir */
static int run_saved(cbopts *o, const cli_subcmd *c, const char *dir, const char *pairs)
{
    kiln_ctx *ctx = train_ctx_new(&o->t);
    if (!ctx) return 1;
    kiln_learner *l = kiln_tabular_learner_load(ctx, dir);
    int rc = l ? 0 : cli_kfail(o->t.cmd, NULL);
    if (!rc && c->bit == CB_PREDICT) {
        if (kiln_collab_predict_csv(l, pairs, o->user, o->item, o->t.out)) rc = cli_kfail(o->t.cmd, NULL);
        else if (o->t.out && !o->t.quiet) printf("wrote %s\n", o->t.out);
    } else if (!rc && c->bit == CB_RECOMMEND) {
        const char **items = calloc((size_t)o->n, sizeof *items);
        double *r = calloc((size_t)o->n, sizeof *r);
        int64_t n = 0;
        if (!items || !r) rc = cli_fail(o->t.cmd, 1, "out of memory");
        else if (kiln_collab_recommend(l, o->user, o->n, items, r, &n)) rc = cli_kfail(o->t.cmd, NULL);
        for (int64_t k = 0; !rc && k < n; k++) printf("%lld\t%s\t%.3f\n", (long long)k + 1, items[k], r[k]);
        free(items), free(r);
    } else if (!rc) {
        if (kiln_collab_export_tables(l, o->t.out)) rc = cli_kfail(o->t.cmd, NULL);
        else if (!o->t.quiet) {
            printf("wrote %s/users.csv, items.csv\n", o->t.out);
            print_liked(l);
        }
    }
    kiln_learner_free(l);
    kiln_ctx_free(ctx);
    return rc;
}

int cmd_collab(int argc, char **argv);
int cmd_collab(int argc, char **argv)
{
    int rc;
    const cli_subcmd *c = subcmd_find("collab", argc, argv, g_cmds, N_CMDS, collab_usage, &rc);
    if (!c) return rc;
    char prog[64];
    snprintf(prog, sizeof prog, "kiln collab %s", c->name);
    kiln_collab_learner_params dl = kiln_collab_learner_default_params();
    cbopts o = {.t = train_defaults(), .valid_pct = kiln_tab_default_params().valid_pct, .factors = dl.n_factors, .n = 10};
    o.t.cmd = prog;
    o.t.bs = 64;
    o.t.lr = 5e-3; /* the course's fit_one_cycle(5, 5e-3) */
    o.t.epochs = 5;
    o.t.wd = dl.wd;
    cli_flag flags[MAX_FLAGS];
    unsigned map[TRAIN_N_KINDS] = {[TRAIN_LR_FIND] = CB_LR_FIND, [TRAIN_FIT] = CB_FIT, [TRAIN_EVAL] = 0,
                                   [TRAIN_DATA] = CB_TRAIN | CB_PREDICT | CB_EXPORT, [TRAIN_ALL] = CB_ALL};
    int n_flags = train_flags(flags, offsetof(cbopts, t), map);
    memcpy(flags + n_flags, g_collab_flags, sizeof g_collab_flags);
    n_flags += N_COLLAB;
    const cbopts defaults = o;
    bool given[MAX_FLAGS] = {false};
    const char **pos = NULL;
    int n_pos = 0;
    cli_lists ls = {0};
    rc = subcmd_parse(prog, c, flags, n_flags, CB_ALL, argc - 1, argv + 1, &o, &defaults, &o.t.help, given, &pos, &n_pos);
    if (rc) {
        rc = rc < 0 ? 0 : rc;
        goto done;
    }
    train_given(&o.t, flags, n_flags, given);
    const char *bad = train_check(&o.t);
    if (!bad)
        bad = !(o.valid_pct > 0 && o.valid_pct < 1) ? "--valid-pct must be in (0, 1)"
            : o.factors < 1 || o.factors > 100000 ? "--factors must be in [1, 100000]"
            : o.n < 1 || o.n > 1000000 ? "--n must be in [1, 1000000]"
            : o.layers && !o.nn ? "--layers applies to --nn"
            : o.y_range && o.no_y_range ? "--y-range and --no-y-range both given"
            : c->bit == CB_RECOMMEND && !o.user ? "--user ID is required"
            : c->bit == CB_EXPORT && !o.t.out ? "--out DIR2 is required"
            : cli_lists_parse(&ls, (const char *[]){NULL, NULL, NULL, NULL}, o.layers, NULL, o.y_range);
    if (bad) {
        rc = cli_fail(prog, 2, "%s", bad);
        goto done;
    }
    int want = c->bit == CB_PREDICT ? 2 : 1;
    if (n_pos != want) {
        rc = cli_fail(prog, 2, "%s (usage: %s)", n_pos < want ? "missing argument" : "unexpected argument", c->usage);
        goto done;
    }
    if (c->bit & CB_TRAIN) {
        if (!o.t.out || strlen(o.t.out) > CLI_DIR_MAX) rc = cli_fail(prog, 2, "--out DIR is required (at most %d bytes)", CLI_DIR_MAX);
        else rc = run_train(&o, c, pos[0], &ls);
    } else {
        rc = run_saved(&o, c, pos[0], n_pos > 1 ? pos[1] : NULL);
    }
done:
    cli_lists_free(&ls);
    free(pos);
    return rc;
}
