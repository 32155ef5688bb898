/* The collab task (fastai collab_learner): ratings as a table of user, item and rating; the
 * dot-bias (or EmbeddingNN) learner; predicted ratings for (user, item) pairs; the best unseen
 * items for a user; the learned tables as CSV. The training pairs are kept (and exported as
 * seen.csv) so a saved model knows what each user has rated. */
#include "tab_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

kiln_data *kiln_collab_data_open(const char *ratings_csv, const char *valid_csv, const char *user_col,
                                 const char *item_col, const char *rating_col, const kiln_tab_params *p,
                                 kiln_tab_procs **procs, kiln_tab_info *info)
{
    const char *col[3] = {user_col, item_col, rating_col};
    char *head[3] = {NULL, NULL, NULL};
    kiln_csv *c = NULL;
    if ((!user_col || !item_col || !rating_col) && ratings_csv) { /* fastai: the first three columns */
        if (kiln_csv_open(ratings_csv, NULL, &c)) return NULL;
        if (kiln_csv_n_cols(c) < 3) {
            kiln__err(KILN_STATUS_FORMAT, "%s: has %d columns; user, item and rating need 3 (or name them)", ratings_csv,
                      kiln_csv_n_cols(c));
            kiln_csv_close(c);
            return NULL;
        }
        for (int k = 0; k < 3; k++)
            if (!col[k]) col[k] = head[k] = strdup(kiln_csv_col_name(c, k));
        kiln_csv_close(c);
    }
    kiln_data *d = NULL;
    if (!col[0] || !col[1] || !col[2])
        kiln__err(KILN_STATUS_INVALID, "collab_data_open: the user, item and rating columns are needed");
    else if (!strcmp(col[0], col[1]) || !strcmp(col[0], col[2]) || !strcmp(col[1], col[2]))
        kiln__err(KILN_STATUS_INVALID, "collab_data_open: the user, item and rating columns must differ (%s, %s, %s)",
                  col[0], col[1], col[2]);
    else {
        kiln_tab_params q = p ? *p : kiln_tab_default_params();
        const char *cat[] = {col[0], col[1], NULL};
        q.target = col[2], q.task = KILN_TAB_REGRESSION, q.cat = cat, q.cont = NULL, q.date = NULL, q.skip = NULL;
        q.only_listed = true, q.log_target = false;
        d = kiln_tabular_data_open(ratings_csv, valid_csv, &q, procs, info);
    }
    for (int k = 0; k < 3; k++) free(head[k]);
    return d;
}

kiln_collab_learner_params kiln_collab_learner_default_params(void)
{
    return (kiln_collab_learner_params){.n_factors = 50, .n_layers = 1, .layers = {50}, .y_range = true, .y_lo = 0,
                                        .y_hi = 5.5, .wd = 0.1, .learner = kiln_learner_default_params()};
}

/* ---- the training pairs ----------------------------------------------------------------------- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* pairs (u[k], it[k]) of codes into t's CSR, each user's items sorted */
static kiln_status seen_from(tab_part *t, const int64_t *u, const int64_t *it, int64_t n)
{
    t->n_users = kiln_tab_procs_cardinality(t->procs, 0), t->n_items = kiln_tab_procs_cardinality(t->procs, 1);
    free(t->seen_start), free(t->seen_item);
    t->seen_start = calloc((size_t)t->n_users + 1, sizeof *t->seen_start);
    t->seen_item = malloc((size_t)(n ? n : 1) * sizeof *t->seen_item);
    int64_t *fill = calloc((size_t)t->n_users + 1, sizeof *fill);
    kiln_status st = t->seen_start && t->seen_item && fill ? KILN_STATUS_OK : kiln__err(KILN_STATUS_NOMEM, "collab: out of memory");
    for (int64_t k = 0; !st && k < n; k++) t->seen_start[u[k] + 1]++;
    for (int64_t v = 0; !st && v < t->n_users; v++) t->seen_start[v + 1] += t->seen_start[v];
    for (int64_t k = 0; !st && k < n; k++) t->seen_item[t->seen_start[u[k]] + fill[u[k]]++] = it[k];
    for (int64_t v = 0; !st && v < t->n_users; v++)
        qsort(t->seen_item + t->seen_start[v], (size_t)(t->seen_start[v + 1] - t->seen_start[v]), sizeof(int64_t), cmp_i64);
    free(fill);
    return st;
}

kiln_status kiln__collab_seen(tab_part *t, const kiln_tab_rows *r)
{
    if (!r || r->n_cat != 2) return kiln__err(KILN_STATUS_INVALID, "collab: the data's rows are not (user, item) codes");
    int64_t *u = malloc((size_t)(r->n ? r->n : 1) * sizeof *u), *it = malloc((size_t)(r->n ? r->n : 1) * sizeof *it);
    kiln_status st = u && it ? KILN_STATUS_OK : kiln__err(KILN_STATUS_NOMEM, "collab: out of memory");
    int64_t w = r->n_cat + r->n_cont;
    for (int64_t k = 0; !st && k < r->n; k++) u[k] = (int64_t)r->x[k * w], it[k] = (int64_t)r->x[k * w + 1];
    if (!st) st = seen_from(t, u, it, r->n);
    free(u), free(it);
    return st;
}

kiln_status kiln__collab_seen_save(const tab_part *t, const char *dir)
{
    char path[4096];
    kiln__out o;
    kiln_status st = kiln__path(path, sizeof path, dir, "seen.csv");
    if (st || (st = kiln__out_begin(&o, path))) return st;
    fputs("user,item\n", o.f);
    for (int64_t v = 0; v < t->n_users; v++)
        for (int64_t k = t->seen_start[v]; k < t->seen_start[v + 1]; k++) {
            const char *ids[2] = {kiln_tab_procs_category(t->procs, 0, v), kiln_tab_procs_category(t->procs, 1, t->seen_item[k])};
            for (int c = 0; c < 2; c++) {
                kiln__csv_field(o.f, ids[c] ? ids[c] : "");
                fputc(c ? '\n' : ',', o.f);
            }
        }
    return kiln__out_end(&o, KILN_STATUS_OK, path);
}

kiln_status kiln__collab_seen_load(tab_part *t, const char *dir)
{
    char path[4096];
    kiln_status st = kiln__path(path, sizeof path, dir, "seen.csv");
    kiln_table *tb = st ? NULL : kiln_table_read_csv(path);
    if (!st && !tb) st = kiln_last_status();
    int cu = tb ? kiln_table_col(tb, "user") : -1, ci = tb ? kiln_table_col(tb, "item") : -1;
    if (!st && (cu < 0 || ci < 0)) st = kiln__err(KILN_STATUS_FORMAT, "%s: needs the columns user and item", path);
    int64_t n = tb ? kiln_table_n_rows(tb) : 0;
    int64_t *u = malloc((size_t)(n ? n : 1) * sizeof *u), *it = malloc((size_t)(n ? n : 1) * sizeof *it);
    if (!st && (!u || !it)) st = kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", path);
    for (int64_t k = 0; !st && k < n; k++) {
        u[k] = kiln_tab_procs_code(t->procs, 0, kiln_table_cell(tb, k, cu));
        it[k] = kiln_tab_procs_code(t->procs, 1, kiln_table_cell(tb, k, ci));
        if (!u[k] || !it[k])
            st = kiln__err(KILN_STATUS_FORMAT, "%s:%lld: %s is not one the model knows", path, (long long)kiln_table_line(tb, k),
                           !u[k] ? "the user" : "the item");
    }
    if (!st) st = seen_from(t, u, it, n);
    free(u), free(it);
    kiln_table_free(tb);
    return st;
}

/* ---- the learner ------------------------------------------------------------------------------ */

kiln_learner *kiln_collab_learner_new(kiln_ctx *ctx, kiln_data *data, const kiln_tab_procs *procs,
                                      const kiln_collab_learner_params *p)
{
    kiln_collab_learner_params q = p ? *p : kiln_collab_learner_default_params();
    const kiln_tab_rows *rows = data ? kiln_tabular_data_rows(data, KILN_DATA_SPLIT_TRAIN) : NULL;
    const char *bad = !ctx || !data || !procs ? "needs a context, data and procs"
                    : !rows ? "the data was not made by kiln_collab_data_open"
                    : kiln_tab_procs_n_cat(procs) != 2 || kiln_tab_procs_n_cont(procs) ? "the procs are not (user, item) -> rating"
                    : kiln_tab_procs_is_classification(procs) ? "ratings must be numbers (regression)"
                    : q.n_factors < 1 || q.n_factors > 100000 ? "n_factors must be in [1, 100000]"
                    : !(q.wd >= 0) ? "wd must be >= 0"
                    : q.y_range && !(q.y_lo < q.y_hi) ? "y_range needs lo < hi"
                    : q.use_nn && (q.n_layers < 0 || q.n_layers > KILN_TABULAR_MAX_LAYERS) ? "n_layers must be in [0, 16]" : NULL;
    for (int k = 0; !bad && q.use_nn && k < q.n_layers; k++)
        if (q.layers[k] < 1) bad = "every layer needs a size >= 1";
    if (!bad && kiln_data_n_batches(data, KILN_DATA_SPLIT_TRAIN) < 1) bad = "the train split has no batch";
    if (bad) {
        kiln_data_free(data);
        return kiln__errp(KILN_STATUS_INVALID, "collab_learner_new: %s", bad);
    }
    tab_part *t = kiln__tab_part_new(procs, true);
    if (!t || kiln__collab_seen(t, rows)) {
        kiln__tab_part_free(t);
        kiln_data_free(data);
        return NULL;
    }
    t->cp = q, t->seed = q.learner.seed;
    kiln_learner *l = kiln__tab_learner(ctx, t, data, q.wd, NULL, &q.learner);
    if (l) kiln_clear_error();
    return l;
}

kiln_status kiln__collab_sparse(kiln_model *m, kiln_optim *opt)
{
    (void)m; /* the lazy step reaches exactly the tables only kiln_embedding reads (kiln/optim.h) */
    return kiln_optim_set_sparse(opt, KILN_OPTIM_ALL_PARAMS, true);
}

/* ---- prediction ----------------------------------------------------------------------------- */

static tab_part *collab_of(const kiln_learner *l, const char *op)
{
    tab_part *t = kiln__tab_of(l);
    if (!t || !t->collab) kiln__err(KILN_STATUS_INVALID, "%s: not a collab learner", op);
    return t && t->collab ? t : NULL;
}

kiln_status kiln_collab_predict(kiln_learner *l, const char *const *users, const char *const *items, int64_t n,
                                double *rating)
{
    tab_part *t = collab_of(l, "collab_predict");
    if (!t) return KILN_STATUS_INVALID;
    if (n < 0 || (n && (!users || !items || !rating))) return kiln__err(KILN_STATUS_INVALID, "collab_predict: NULL argument");
    float *x = malloc((size_t)(n ? n : 1) * 2 * sizeof *x);
    if (!x) return kiln__err(KILN_STATUS_NOMEM, "collab_predict: out of memory");
    kiln_status st = KILN_STATUS_OK;
    for (int64_t i = 0; i < n && !st; i++) {
        int64_t u = kiln_tab_procs_code(t->procs, 0, users[i]), it = kiln_tab_procs_code(t->procs, 1, items[i]);
        if (!u || !it)
            st = kiln__err(KILN_STATUS_INVALID, "collab_predict: pair %lld: %s '%s' is not known to the model", (long long)i + 1,
                           !u ? "user" : "item", !u ? (users[i] ? users[i] : "") : (items[i] ? items[i] : ""));
        x[2 * i] = (float)u, x[2 * i + 1] = (float)it;
    }
    if (!st) st = kiln__tab_predict_x(l, x, n, 4096, rating, NULL);
    free(x);
    return kiln__done(st);
}

typedef struct scored {
    double r;
    int64_t item;
} scored;

static int cmp_scored(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    return x->r != y->r ? (x->r < y->r) - (x->r > y->r) : (x->item > y->item) - (x->item < y->item);
}

kiln_status kiln_collab_recommend(kiln_learner *l, const char *user, int64_t n, const char **items, double *rating,
                                  int64_t *n_out)
{
    tab_part *t = collab_of(l, "collab_recommend");
    if (!t) return KILN_STATUS_INVALID;
    if (n < 0 || (n && (!items || !rating)) || !n_out) return kiln__err(KILN_STATUS_INVALID, "collab_recommend: NULL argument");
    *n_out = 0;
    int64_t u = kiln_tab_procs_code(t->procs, 0, user);
    if (!u) return kiln__err(KILN_STATUS_INVALID, "collab_recommend: user '%s' is not known to the model", user ? user : "");
    const int64_t *seen = t->seen_item + t->seen_start[u];
    int64_t n_seen = t->seen_start[u + 1] - t->seen_start[u], m = 0, k = 0;
    float *x = malloc((size_t)t->n_items * 2 * sizeof *x);
    scored *s = malloc((size_t)t->n_items * sizeof *s);
    double *r = malloc((size_t)t->n_items * sizeof *r);
    kiln_status st = x && s && r ? KILN_STATUS_OK : kiln__err(KILN_STATUS_NOMEM, "collab_recommend: out of memory");
    for (int64_t it = 1; !st && it < t->n_items; it++) { /* code 0 is #na# */
        while (k < n_seen && seen[k] < it) k++;
        if (k < n_seen && seen[k] == it) continue;
        x[2 * m] = (float)u, x[2 * m + 1] = (float)it, s[m].item = it, m++;
    }
    if (!st) st = kiln__tab_predict_x(l, x, m, 4096, r, NULL);
    for (int64_t i = 0; !st && i < m; i++) s[i].r = r[i];
    if (!st) qsort(s, (size_t)m, sizeof *s, cmp_scored);
    for (int64_t i = 0; !st && i < n && i < m; i++) {
        items[i] = kiln_tab_procs_category(t->procs, 1, s[i].item), rating[i] = s[i].r;
        *n_out = i + 1;
    }
    free(x), free(s), free(r);
    return kiln__done(st);
}

/* ---- the tables as CSV ------------------------------------------------------------------------ */

/* one table: rows 1.. of w (n, k) with bias b (n, 1) or NULL, ids from procs column col */
static kiln_status write_table(const tab_part *t, int col, const kiln_tensor *w, const kiln_tensor *b, const char *path)
{
    kiln__out o;
    kiln_status st = kiln__out_begin(&o, path);
    if (st) return st;
    int64_t n = w->shape[0], k = w->shape[1];
    const float *wd = w->data, *bd = b ? b->data : NULL;
    fputs("id", o.f);
    if (b) fputs(",bias", o.f);
    for (int64_t j = 0; j < k; j++) fprintf(o.f, ",f%lld", (long long)j);
    fputc('\n', o.f);
    for (int64_t i = 1; i < n; i++) {
        const char *id = kiln_tab_procs_category(t->procs, col, i);
        kiln__csv_field(o.f, id ? id : "");
        if (b) fprintf(o.f, ",%.9g", (double)bd[i]);
        for (int64_t j = 0; j < k; j++) fprintf(o.f, ",%.9g", (double)wd[i * k + j]);
        fputc('\n', o.f);
    }
    return kiln__out_end(&o, KILN_STATUS_OK, path);
}

kiln_status kiln_collab_export_tables(kiln_learner *l, const char *dir)
{
    tab_part *t = collab_of(l, "collab_export_tables");
    if (!t) return KILN_STATUS_INVALID;
    if (!dir) return kiln__err(KILN_STATUS_INVALID, "collab_export_tables: dir is NULL");
    kiln_store *s = kiln_model_store(kiln_learner_model(l));
    static const char *const dot[4] = {"u_weight.weight", "u_bias.weight", "i_weight.weight", "i_bias.weight"};
    static const char *const nn[4] = {"embeds.0.weight", NULL, "embeds.1.weight", NULL};
    const char *const *names = t->cp.use_nn ? nn : dot;
    char pu[4096], pi[4096];
    kiln_status st = kiln_mkdirs(dir);
    if (!st) st = kiln__path(pu, sizeof pu, dir, "users.csv");
    if (!st) st = kiln__path(pi, sizeof pi, dir, "items.csv");
    for (int c = 0; c < 2 && !st; c++) {
        kiln_tensor *w = kiln_store_find(s, names[2 * c]), *b = names[2 * c + 1] ? kiln_store_find(s, names[2 * c + 1]) : NULL;
        if (!w || (names[2 * c + 1] && !b)) st = kiln__err(KILN_STATUS_STATE, "collab_export_tables: the model has no %s", names[2 * c]);
        else st = write_table(t, c, w, b, c ? pi : pu);
    }
    return kiln__done(st);
}

kiln_status kiln_collab_predict_csv(kiln_learner *l, const char *pairs_csv, const char *user_col, const char *item_col,
                                    const char *csv_out)
{
    tab_part *t = collab_of(l, "collab_predict_csv");
    if (!t) return KILN_STATUS_INVALID;
    if (!pairs_csv) return kiln__err(KILN_STATUS_INVALID, "collab_predict_csv: pairs_csv is NULL");
    const char *names[2] = {user_col ? user_col : kiln_tab_procs_cat_name(t->procs, 0),
                            item_col ? item_col : kiln_tab_procs_cat_name(t->procs, 1)};
    kiln_table *tb = kiln_table_read_csv(pairs_csv);
    if (!tb) return kiln_last_status();
    int col[2] = {kiln_table_col(tb, names[0]), kiln_table_col(tb, names[1])};
    int64_t n = kiln_table_n_rows(tb);
    const char **us = malloc((size_t)(n ? n : 1) * sizeof *us), **is = malloc((size_t)(n ? n : 1) * sizeof *is);
    double *r = malloc((size_t)(n ? n : 1) * sizeof *r);
    kiln_status st = col[0] < 0 || col[1] < 0
                         ? kiln__err(KILN_STATUS_FORMAT, "%s: has no column %s", pairs_csv, names[col[0] < 0 ? 0 : 1])
                     : !us || !is || !r ? kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", pairs_csv) : KILN_STATUS_OK;
    for (int64_t i = 0; !st && i < n; i++) {
        us[i] = kiln_table_cell(tb, i, col[0]), is[i] = kiln_table_cell(tb, i, col[1]);
        if (!us[i] || !is[i])
            st = kiln__err(KILN_STATUS_FORMAT, "%s:%lld: the %s is missing", pairs_csv, (long long)kiln_table_line(tb, i),
                           !us[i] ? names[0] : names[1]);
        else if (!kiln_tab_procs_code(t->procs, 0, us[i]) || !kiln_tab_procs_code(t->procs, 1, is[i]))
            st = kiln__err(KILN_STATUS_INVALID, "%s:%lld: %s '%s' is not known to the model", pairs_csv,
                           (long long)kiln_table_line(tb, i), kiln_tab_procs_code(t->procs, 0, us[i]) ? names[1] : names[0],
                           kiln_tab_procs_code(t->procs, 0, us[i]) ? is[i] : us[i]);
    }
    if (!st) st = kiln_collab_predict(l, us, is, n, r);
    kiln__out o;
    if (!st && !(st = kiln__out_begin(&o, csv_out))) {
        kiln__csv_field(o.f, names[0]), fputc(',', o.f), kiln__csv_field(o.f, names[1]), fputs(",rating\n", o.f);
        for (int64_t i = 0; i < n; i++)
            kiln__csv_field(o.f, us[i]), fputc(',', o.f), kiln__csv_field(o.f, is[i]), fprintf(o.f, ",%.6g\n", r[i]);
        st = kiln__out_end(&o, st, "collab_predict_csv");
    }
    free(us), free(is), free(r);
    kiln_table_free(tb);
    return kiln__done(st);
}
