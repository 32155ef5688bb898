/* The tabular and collab learners (kiln/apps_tabular.h) on small made-up tables written as CSVs:
 * regression (plain and on the log of the target) and classification learn what the data holds;
 * export + load give the same predictions; prediction takes unseen categories (#na#) and refuses
 * what fastai refuses; interpretation files; collab learns ratings better than their mean,
 * recommends only unseen items, best first, the same after load, and exports its tables; a
 * damaged model.json is refused naming the key. */
#include <math.h>
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

static uint64_t g_rs;
static double unif(void)
{
    g_rs = g_rs * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_rs >> 11) / 9007199254740992.0;
}

/* color,x1,x2,label,y: y = 6 + 2 x1 - x2 + color effect (+ noise), label = pos when x1 + x2 > 0 */
static void write_table(const char *rel, int n, uint64_t seed)
{
    static const char *colors[] = {"red", "green", "blue"};
    static const double effect[] = {0.5, -0.5, 1.0};
    g_rs = seed;
    FILE *f = fopen(P(rel), "wb");
    cr_assert_not_null(f);
    fprintf(f, "color,x1,x2,label,y\n");
    for (int i = 0; i < n; i++) {
        int c = (int)(unif() * 3);
        double x1 = unif() * 2 - 1, x2 = unif() * 2 - 1;
        double y = 6 + 2 * x1 - x2 + effect[c] + 0.05 * (unif() - 0.5);
        fprintf(f, "%s,%.4f,%.4f,%s,%.4f\n", colors[c], x1, x2, x1 + x2 > 0 ? "pos" : "neg", y);
    }
    fclose(f);
}

/* user,item,rating: rating = clip(3 + u_f . i_f + biases), 30 users x 40 items, each user rates 25 */
static void write_ratings(const char *rel)
{
    double uf[30][2], ifa[40][2], ub[30], ib[40];
    g_rs = 7;
    for (int u = 0; u < 30; u++) uf[u][0] = unif() * 2 - 1, uf[u][1] = unif() * 2 - 1, ub[u] = unif() - 0.5;
    for (int i = 0; i < 40; i++) ifa[i][0] = unif() * 2 - 1, ifa[i][1] = unif() * 2 - 1, ib[i] = unif() - 0.5;
    FILE *f = fopen(P(rel), "wb");
    cr_assert_not_null(f);
    fprintf(f, "user,item,rating,timestamp\n");
    for (int u = 0; u < 30; u++)
        for (int k = 0; k < 25; k++) {
            int i = (u * 7 + k * 3) % 40;
            double r = 3 + 1.2 * (uf[u][0] * ifa[i][0] + uf[u][1] * ifa[i][1]) + ub[u] + ib[i];
            r = r < 0.5 ? 0.5 : r > 5 ? 5 : r;
            fprintf(f, "u%d,m%d,%.2f,%d\n", u, i, r, 1000 + k);
        }
    fclose(f);
}

static void setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/kiln_tab_app.XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL);
    write_table("train.csv", 600, 1);
    write_table("valid.csv", 200, 2);
    write_ratings("ratings.csv");
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    (void)system(cmd);
}
TestSuite(tabular_app, .init = setup, .fini = teardown);

static kiln_learner_params quiet(void)
{
    kiln_learner_params lp = kiln_learner_default_params();
    lp.progress = KILN_PROGRESS_STYLE_QUIET;
    return lp;
}

/* a tabular learner on train.csv / valid.csv for target (skipping the other target) */
static kiln_learner *tab_learner(kiln_ctx *ctx, const char *target, const char *skip, bool log_target)
{
    kiln_tab_params dp = kiln_tab_default_params();
    const char *sk[] = {skip, NULL};
    dp.target = target, dp.skip = sk, dp.log_target = log_target, dp.batch_size = 32;
    kiln_tab_procs *procs = NULL;
    kiln_data *d = kiln_tabular_data_open(P("train.csv"), P("valid.csv"), &dp, &procs, NULL);
    cr_assert_not_null(d, "%s", kiln_last_error());
    kiln_tabular_learner_params lp = kiln_tabular_learner_default_params();
    lp.n_layers = 2, lp.layers[0] = 32, lp.layers[1] = 16;
    lp.learner = quiet();
    kiln_learner *l = kiln_tabular_learner_new(ctx, d, procs, &lp);
    kiln_tab_procs_free(procs);
    cr_assert_not_null(l, "%s", kiln_last_error());
    return l;
}

static kiln_table *read_buffer(const char *text)
{
    kiln_table *t = kiln_table_read_csv_buffer("new.csv", text, strlen(text));
    cr_assert_not_null(t, "%s", kiln_last_error());
    return t;
}

static double valid_metric(kiln_learner *l)
{
    double loss, m;
    cr_assert_eq(kiln_learner_validate(l, KILN_DATA_SPLIT_VALID, &loss, &m), KILN_STATUS_OK, "%s", kiln_last_error());
    return m;
}

Test(tabular_app, regression_learns_exports_and_predicts_the_same)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_learner *l = tab_learner(ctx, "y", "label", false);
    cr_assert_str_eq(kiln_learner_task(l), "tabular");
    cr_assert_eq(kiln_learner_n_classes(l), 0);
    cr_assert_str_eq(kiln_learner_metric_name(l, 0), "rmse");
    double before = valid_metric(l);
    cr_assert_eq(kiln_learner_fit_one_cycle(l, 8, 1e-2, 1e-2, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    double after = valid_metric(l);
    /* y's std is about 1.3; the model finds most of it */
    cr_assert(after < 0.35 && after < before / 3, "valid RMSE %g (before %g)", before, after);
    cr_assert_eq(kiln_learner_export(l, P("reg")), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(access(P("reg/procs.json"), R_OK), 0);

    kiln_table *t = kiln_table_read_csv(P("valid.csv"));
    cr_assert_not_null(t);
    int64_t n = kiln_table_n_rows(t);
    double *v1 = calloc((size_t)n, sizeof *v1), *v2 = calloc((size_t)n, sizeof *v2);
    cr_assert_eq(kiln_tabular_predict(l, t, 7, v1, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_learner *l2 = kiln_tabular_learner_load(ctx, P("reg"));
    cr_assert_not_null(l2, "%s", kiln_last_error());
    cr_assert_eq(kiln_tabular_predict(l2, t, 0, v2, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    double se = 0;
    int yc = kiln_table_col(t, "y");
    for (int64_t i = 0; i < n; i++) {
        cr_assert_float_eq(v1[i], v2[i], 1e-5, "row %lld: %g before export, %g after load", (long long)i, v1[i], v2[i]);
        double e = v2[i] - atof(kiln_table_cell(t, i, yc));
        se += e * e;
    }
    cr_assert(sqrt(se / (double)n) < 0.35, "RMSE of the loaded model's predictions %g", sqrt(se / (double)n));
    free(v1), free(v2);
    kiln_table_free(t);

    /* an unseen category is #na# (a prediction), a missing continuous value is refused by line */
    t = read_buffer("color,x1,x2\npurple,0.1,0.2\nred,,0.3\n");
    cr_assert_not_null(t, "%s", kiln_last_error());
    double v[2];
    cr_assert_neq(kiln_tabular_predict(l2, t, 0, v, NULL), KILN_STATUS_OK);
    ku_expect_error("x1", "a missing continuous value without _na");
    ku_expect_error("new.csv", "the table is named");
    kiln_table_free(t);
    t = read_buffer("color,x1,x2\npurple,0.1,0.2\n");
    cr_assert_eq(kiln_tabular_predict(l2, t, 0, v, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert(isfinite(v[0]));
    kiln_table_free(t);
    t = read_buffer("color,x2\nred,0.2\n");
    cr_assert_neq(kiln_tabular_predict(l2, t, 0, v, NULL), KILN_STATUS_OK);
    ku_expect_error("x1", "a missing input column is named");
    kiln_table_free(t);
    kiln_learner_free(l2);
    kiln_learner_free(l);
    ku_ctx_free(ctx);
}

Test(tabular_app, log_target_predicts_in_the_targets_units)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_learner *l = tab_learner(ctx, "y", "label", true);
    cr_assert(kiln_tab_procs_log_target(kiln_tabular_learner_procs(l)));
    cr_assert_eq(kiln_learner_fit_one_cycle(l, 8, 1e-2, 1e-2, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    double rmse_log = valid_metric(l);
    cr_assert(rmse_log < 0.15, "RMSE of log y %g", rmse_log);
    kiln_table *t = kiln_table_read_csv(P("valid.csv"));
    int64_t n = kiln_table_n_rows(t);
    double *v = calloc((size_t)n, sizeof *v), se = 0;
    cr_assert_eq(kiln_tabular_predict(l, t, 0, v, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    for (int64_t i = 0; i < n; i++) {
        double e = log(v[i]) - log(atof(kiln_table_cell(t, i, kiln_table_col(t, "y"))));
        se += e * e;
    }
    /* the same RMSE as validation's (on the log), so the predictions are exp of the output */
    cr_assert_float_eq(sqrt(se / (double)n), rmse_log, 2e-3, "%g vs %g", sqrt(se / (double)n), rmse_log);
    free(v);
    kiln_table_free(t);
    kiln_learner_free(l);
    ku_ctx_free(ctx);
}

Test(tabular_app, classification_learns_and_interprets)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_learner *l = tab_learner(ctx, "label", "y", false);
    cr_assert_eq(kiln_learner_n_classes(l), 2);
    cr_assert_str_eq(kiln_learner_classes(l)[0], "neg");
    cr_assert_str_eq(kiln_learner_metric_name(l, 0), "accuracy");
    cr_assert_eq(kiln_learner_fit_one_cycle(l, 6, 1e-2, 1e-2, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    double acc = valid_metric(l);
    cr_assert(acc > 0.93, "valid accuracy %g", acc);
    kiln_interp it;
    cr_assert_eq(kiln_tabular_interpret(l, KILN_DATA_SPLIT_VALID, P("interp"), 5, &it), KILN_STATUS_OK, "%s",
                 kiln_last_error());
    cr_assert_eq(it.n, 200);
    cr_assert_float_eq(it.accuracy, acc, 1e-9);
    char *cm = ku_slurp(P("interp/confusion_matrix.csv"));
    cr_assert(strstr(cm, "neg") && strstr(cm, "pos"), "%s", cm);
    free(cm);
    kiln_interp_free(&it);
    cr_assert_eq(kiln_learner_export(l, P("clas")), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_learner *l2 = kiln_tabular_learner_load(ctx, P("clas"));
    cr_assert_not_null(l2, "%s", kiln_last_error());
    cr_assert_eq(kiln_tabular_predict_csv(l2, P("valid.csv"), P("preds.csv")), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_table *p = kiln_table_read_csv(P("preds.csv"));
    cr_assert_not_null(p, "%s", kiln_last_error());
    cr_assert_eq(kiln_table_n_rows(p), 200);
    int cl = kiln_table_col(p, "label"), c0 = kiln_table_col(p, "p_neg"), c1 = kiln_table_col(p, "p_pos");
    cr_assert(cl >= 0 && c0 >= 0 && c1 >= 0 && kiln_table_col(p, "row") == 0);
    for (int64_t i = 0; i < 200; i++) {
        double a = atof(kiln_table_cell(p, i, c0)), b = atof(kiln_table_cell(p, i, c1));
        cr_assert_float_eq(a + b, 1.0, 1e-5);
        cr_assert_str_eq(kiln_table_cell(p, i, cl), a > b ? "neg" : "pos");
    }
    kiln_table_free(p);
    kiln_learner_free(l2);
    kiln_learner_free(l);
    ku_ctx_free(ctx);
}

static kiln_learner *collab_learner_ex(kiln_ctx *ctx, bool nn, bool sparse)
{
    kiln_tab_params dp = kiln_tab_default_params();
    dp.batch_size = 32;
    kiln_tab_procs *procs = NULL;
    kiln_tab_info info;
    kiln_data *d = kiln_collab_data_open(P("ratings.csv"), NULL, NULL, NULL, NULL, &dp, &procs, &info);
    cr_assert_not_null(d, "%s", kiln_last_error());
    cr_assert_eq(info.n_train + info.n_valid, 750);
    cr_assert_str_eq(kiln_tab_procs_cat_name(procs, 0), "user"); /* the first three columns by default */
    cr_assert_str_eq(kiln_tab_procs_cat_name(procs, 1), "item");
    cr_assert_str_eq(kiln_tab_procs_target(procs), "rating");
    kiln_collab_learner_params lp = kiln_collab_learner_default_params();
    lp.n_factors = 8, lp.use_nn = nn, lp.sparse = sparse, lp.layers[0] = 16, lp.learner = quiet();
    kiln_learner *l = kiln_collab_learner_new(ctx, d, procs, &lp);
    kiln_tab_procs_free(procs);
    cr_assert_not_null(l, "%s", kiln_last_error());
    return l;
}

static kiln_learner *collab_learner(kiln_ctx *ctx, bool nn) { return collab_learner_ex(ctx, nn, false); }

Test(tabular_app, collab_learns_recommends_and_exports)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_learner *l = collab_learner(ctx, false);
    cr_assert_str_eq(kiln_learner_task(l), "collab");
    double before = valid_metric(l);
    cr_assert_eq(kiln_learner_fit_one_cycle(l, 20, 3e-2, 3e-2, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    double after = valid_metric(l);
    cr_assert(after < 0.8 * before && after < 0.75, "valid RMSE %g (before %g)", after, before);

    /* the 5 best unseen items, best first (which ones: the next test) */
    const char *items[5];
    double r[5];
    int64_t n = 0;
    cr_assert_eq(kiln_collab_recommend(l, "u3", 5, items, r, &n), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(n, 5);
    for (int64_t k = 1; k < n; k++) cr_assert(r[k] <= r[k - 1], "not best first at %lld", (long long)k);
    double pr[2];
    cr_assert_eq(kiln_collab_predict(l, (const char *[]){"u3", "u3"}, (const char *[]){items[0], items[1]}, 2, pr),
                 KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_float_eq(pr[0], r[0], 1e-6);
    cr_assert_float_eq(pr[1], r[1], 1e-6);
    cr_assert_neq(kiln_collab_predict(l, (const char *[]){"nobody"}, (const char *[]){"m1"}, 1, pr), KILN_STATUS_OK);
    ku_expect_error("user 'nobody' is not known", "an unknown user");
    int64_t n_bad = 0;
    const char *bad_items[3];
    double bad_r[3];
    cr_assert_neq(kiln_collab_recommend(l, "nobody", 3, bad_items, bad_r, &n_bad), KILN_STATUS_OK);
    cr_assert_eq(n_bad, 0);
    ku_expect_error("nobody", "recommend for an unknown user");

    cr_assert_eq(kiln_learner_export(l, P("cf")), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_learner *l2 = kiln_tabular_learner_load(ctx, P("cf"));
    cr_assert_not_null(l2, "%s", kiln_last_error());
    const char *items2[5];
    double r2[5];
    int64_t n2 = 0;
    cr_assert_eq(kiln_collab_recommend(l2, "u3", 5, items2, r2, &n2), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(n2, n, "%lld items after load, %lld before", (long long)n2, (long long)n);
    for (int64_t k = 0; k < n; k++) {
        cr_assert_str_eq(items2[k], items[k]);
        cr_assert_float_eq(r2[k], r[k], 1e-6);
    }
    cr_assert_eq(kiln_collab_export_tables(l2, P("tables")), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_table *tu = kiln_table_read_csv(P("tables/users.csv")), *ti = kiln_table_read_csv(P("tables/items.csv"));
    cr_assert(tu && ti, "%s", kiln_last_error());
    cr_assert_eq(kiln_table_n_rows(tu), 30);
    cr_assert_eq(kiln_table_n_rows(ti), 40);
    cr_assert_eq(kiln_table_n_cols(ti), 2 + 8);
    cr_assert_str_eq(kiln_table_col_name(ti, 1), "bias");
    cr_assert_str_eq(kiln_table_col_name(ti, 9), "f7");
    kiln_table_free(tu), kiln_table_free(ti);
    kiln_learner_free(l2);
    kiln_learner_free(l);
    ku_ctx_free(ctx);
}

Test(tabular_app, collab_recommends_no_item_the_user_rated_in_training)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_learner *l = collab_learner(ctx, false);
    const kiln_tab_rows *rows = kiln_tabular_data_rows(kiln_learner_data(l), KILN_DATA_SPLIT_TRAIN);
    cr_assert_not_null(rows);
    const kiln_tab_procs *pr = kiln_tabular_learner_procs(l);
    int64_t u3 = kiln_tab_procs_code(pr, 0, "u3");
    const char *items[40];
    double r[40];
    int64_t n = 0;
    cr_assert_eq(kiln_collab_recommend(l, "u3", 40, items, r, &n), KILN_STATUS_OK, "%s", kiln_last_error());
    int64_t rated = 0;
    for (int64_t i = 0; i < rows->n; i++) {
        if ((int64_t)rows->x[2 * i] != u3) continue;
        rated++;
        for (int64_t k = 0; k < n; k++)
            cr_assert_neq(kiln_tab_procs_code(pr, 1, items[k]), (int64_t)rows->x[2 * i + 1], "recommended %s, rated in training",
                          items[k]);
    }
    cr_assert_eq(n, 40 - rated, "%lld recommended, %lld rated of 40", (long long)n, (long long)rated);
    kiln_learner_free(l);
    ku_ctx_free(ctx);
}

Test(tabular_app, collab_embedding_nn_trains)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_learner *l = collab_learner(ctx, true);
    double before = valid_metric(l);
    cr_assert_eq(kiln_learner_fit_one_cycle(l, 10, 1e-2, 1e-2, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert(valid_metric(l) < 0.8 * before, "valid RMSE %g (before %g)", valid_metric(l), before);
    cr_assert_eq(kiln_learner_export(l, P("nn")), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_learner *l2 = kiln_tabular_learner_load(ctx, P("nn"));
    cr_assert_not_null(l2, "%s", kiln_last_error());
    cr_assert_eq(kiln_collab_export_tables(l2, P("nn_tables")), KILN_STATUS_OK, "%s", kiln_last_error());
    char *head = ku_slurp(P("nn_tables/items.csv"));
    cr_assert(!strncmp(head, "id,f0,", 6), "no bias column for EmbeddingNN: %.40s", head);
    free(head);
    kiln_learner_free(l2);
    kiln_learner_free(l);
    ku_ctx_free(ctx);
}

Test(tabular_app, collab_sparse_step_learns_and_is_recorded)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_learner *l = collab_learner_ex(ctx, false, true);
    kiln_optim *opt = kiln_learner_optim(l);
    for (size_t i = 0; i < kiln_store_count(kiln_optim_store(opt)); i++)
        cr_assert(kiln_optim_is_sparse(opt, i), "parameter %zu is not on the lazy step", i);
    double before = valid_metric(l);
    cr_assert_eq(kiln_learner_fit_one_cycle(l, 20, 3e-2, 3e-2, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    double after = valid_metric(l);
    cr_assert(after < 0.8 * before && after < 0.8, "valid RMSE %g (before %g)", after, before);
    cr_assert_eq(kiln_learner_export(l, P("sp")), KILN_STATUS_OK, "%s", kiln_last_error());
    char *j = ku_slurp(P("sp/model.json"));
    cr_assert(strstr(j, "\"sparse\":\ttrue"), "%s", j);
    free(j);
    kiln_learner_free(l);
    ku_ctx_free(ctx);
}

/* after the backward of batch 2 (from 0), a NaN in the item-table gradient row of the batch's first item */
static kiln_status poison_item_grad(kiln_learner *l, void *user)
{
    (void)user;
    kiln_fit_state *s = kiln_learner_state(l);
    if (s->iter != 2) return KILN_STATUS_OK;
    kiln_tensor *w = kiln_store_find(kiln_model_store(kiln_learner_model(l)), "i_weight.weight");
    int64_t item = (int64_t)((const float *)s->x->data)[1];
    ((float *)w->grad->data)[item * w->shape[1] + 3] = NAN;
    return KILN_STATUS_OK;
}

Test(tabular_app, collab_sparse_step_still_stops_on_a_nonfinite_gradient)
{
    /* the divergence checks read only a sparse table's touched rows: a NaN there is still caught */
    kiln_ctx *ctx = ku_ctx();
    kiln_learner *l = collab_learner_ex(ctx, false, true);
    kiln_callback cb = {.name = "poison", .after_backward = poison_item_grad};
    cr_assert_eq(kiln_learner_add_callback(l, &cb), KILN_STATUS_OK);
    cr_assert_eq(kiln_learner_fit_one_cycle(l, 1, 1e-2, 1e-2, NULL), KILN_STATUS_DIVERGED);
    ku_expect_error("gradient of parameter 'i_weight.weight'", "the poisoned table is named");
    ku_expect_error("epoch 0, batch 2 of", "the batch (from 0)");
    kiln_learner_free(l);
    ku_ctx_free(ctx);
}

/* after the backward of batch 2, a NaN at element *user of the item table's gradient */
static kiln_status poison_item_grad_at(kiln_learner *l, void *user)
{
    if (kiln_learner_state(l)->iter != 2) return KILN_STATUS_OK;
    kiln_tensor *w = kiln_store_find(kiln_model_store(kiln_learner_model(l)), "i_weight.weight");
    ((float *)w->grad->data)[*(const int64_t *)user] = NAN;
    return KILN_STATUS_OK;
}

Test(tabular_app, dense_step_stops_on_a_nonfinite_gradient_anywhere_in_a_large_table)
{
    /* 41 x 200 = 8,200 elements: the check's 4096-element blocks, then its tail */
    static const int64_t where[] = {0, 4095, 4096, 8191, 8192, 8199};
    for (size_t k = 0; k < sizeof where / sizeof where[0]; k++) {
        kiln_ctx *ctx = ku_ctx();
        kiln_tab_params dp = kiln_tab_default_params();
        dp.batch_size = 32;
        kiln_tab_procs *procs = NULL;
        kiln_data *d = kiln_collab_data_open(P("ratings.csv"), NULL, NULL, NULL, NULL, &dp, &procs, NULL);
        cr_assert_not_null(d, "%s", kiln_last_error());
        kiln_collab_learner_params lp = kiln_collab_learner_default_params();
        lp.n_factors = 200, lp.learner = quiet();
        kiln_learner *l = kiln_collab_learner_new(ctx, d, procs, &lp);
        kiln_tab_procs_free(procs);
        cr_assert_not_null(l, "%s", kiln_last_error());
        cr_assert_eq(kiln_numel(kiln_store_find(kiln_model_store(kiln_learner_model(l)), "i_weight.weight")), 8200);
        kiln_callback cb = {.name = "poison", .after_backward = poison_item_grad_at, .user = (void *)&where[k]};
        cr_assert_eq(kiln_learner_add_callback(l, &cb), KILN_STATUS_OK);
        cr_assert_eq(kiln_learner_fit_one_cycle(l, 1, 1e-2, 1e-2, NULL), KILN_STATUS_DIVERGED, "NaN at %lld not caught",
                     (long long)where[k]);
        char want[96];
        snprintf(want, sizeof want, "'i_weight.weight' (element %lld: nan)", (long long)where[k]);
        ku_expect_error(want, "the element");
        kiln_learner_free(l);
        ku_ctx_free(ctx);
    }
}

/* dir/model.json with its first `from` replaced by `to` */
static void damage(const char *dir, const char *from, const char *to)
{
    char path[512];
    snprintf(path, sizeof path, "%s/model.json", dir);
    char *s = ku_slurp(path), *t = ku_replace(s, from, to);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fputs(t, f);
    fclose(f);
    free(s), free(t);
}

Test(tabular_app, a_damaged_model_json_is_refused_by_key)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_learner *l = tab_learner(ctx, "y", "label", false);
    cr_assert_eq(kiln_learner_export(l, P("m")), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_learner_free(l);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cp -r '%s/m' '%s/m2' && cp -r '%s/m' '%s/m3'", g_dir, g_dir, g_dir, g_dir);
    cr_assert_eq(system(cmd), 0);
    damage(P("m"), "\"embed_p\":\t0", "\"embed_p\":\t1.5");
    cr_assert_null(kiln_tabular_learner_load(ctx, P("m")));
    ku_expect_error("config.embed_p", "an out-of-range dropout");
    damage(P("m2"), "\"task\":\t\"tabular\"", "\"task\":\t\"vision\"");
    cr_assert_null(kiln_tabular_learner_load(ctx, P("m2")));
    ku_expect_error("task is \"vision\"", "another task's model");
    damage(P("m3"), "\"layers\":\t[32, 16]", "\"layers\":\t[32, 17]");
    cr_assert_null(kiln_tabular_learner_load(ctx, P("m3")));
    ku_expect_error("model.safetensors", "weights that do not fit the configuration");
    ku_ctx_free(ctx);
}
