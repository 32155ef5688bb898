/* Learning the procs on the training rows (fastai's TabularPandas setup): the column kinds
 * (cont_cat_split, overridden by the params' lists, dates expanded by add_datepart), then
 * Categorify's categories, FillMissing's medians and _na columns, Normalize's mean and std
 * (ddof 0, after filling), and the target (regression, optionally on its log, or sorted
 * classes). The order of the model's columns is in include/kiln/tabular.h. */
#include "data/tabular/tab_internal.h"
#include "core/json.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { K_NONE, K_CAT, K_CONT, K_DATE };

typedef struct learn {
    const kiln_table *t;
    const kiln_tab_params *p;
    int *kind;        /* (n_cols) K_* */
    int *forced;      /* (n_cols) kind named in the params (0: inferred) */
    kiln_tab_procs *pr;
    int cap_cat, cap_cont;
    int dcol;                /* the date column parsed into dcache (-1: none) */
    kiln__tab_date *dcache;  /* (n_rows) */
    bool *dok;               /* (n_rows) the row's date is present */
} learn;

static const char *q(const char *s, char *buf, size_t cap) { return kiln__json_quote(s, buf, cap); }

static kiln__tab_cat *new_cat(learn *L, const char *name, const char *col, int part)
{
    kiln_tab_procs *pr = L->pr;
    if (pr->n_cat == L->cap_cat) {
        int c = L->cap_cat ? 2 * L->cap_cat : 16;
        kiln__tab_cat *n = realloc(pr->cat, (size_t)c * sizeof *n);
        if (!n) return kiln__errp(KILN_STATUS_NOMEM, "tab_procs: out of memory");
        pr->cat = n, L->cap_cat = c;
    }
    kiln__tab_cat *c = &pr->cat[pr->n_cat];
    memset(c, 0, sizeof *c);
    c->name = kiln__tab_strdup(name), c->src.col = kiln__tab_strdup(col), c->src.part = part;
    pr->n_cat++;
    if (!c->name || !c->src.col) return kiln__errp(KILN_STATUS_NOMEM, "tab_procs: out of memory");
    return c;
}

static kiln__tab_cont *new_cont(learn *L, const char *name, const char *col, int part)
{
    kiln_tab_procs *pr = L->pr;
    if (pr->n_cont == L->cap_cont) {
        int c = L->cap_cont ? 2 * L->cap_cont : 16;
        kiln__tab_cont *n = realloc(pr->cont, (size_t)c * sizeof *n);
        if (!n) return kiln__errp(KILN_STATUS_NOMEM, "tab_procs: out of memory");
        pr->cont = n, L->cap_cont = c;
    }
    kiln__tab_cont *c = &pr->cont[pr->n_cont];
    memset(c, 0, sizeof *c);
    c->name = kiln__tab_strdup(name), c->src.col = kiln__tab_strdup(col), c->src.part = part;
    pr->n_cont++;
    if (!c->name || !c->src.col) return kiln__errp(KILN_STATUS_NOMEM, "tab_procs: out of memory");
    return c;
}

/* Marks the columns of list with kind k; INVALID for a name that is not a column or one
 * named twice (in any list) or the target. */
static kiln_status mark(learn *L, const char *const *list, int k, const char *what)
{
    char b[80];
    for (int i = 0; list && list[i]; i++) {
        int j = kiln_table_col(L->t, list[i]);
        if (j < 0)
            return kiln__err(KILN_STATUS_INVALID, "%s: %s column \"%s\" is not a column of the table",
                             L->t->name, what, q(list[i], b, sizeof b));
        if (!strcmp(list[i], L->p->target))
            return kiln__err(KILN_STATUS_INVALID, "%s: the target \"%s\" is also listed as a %s column", L->t->name,
                             q(list[i], b, sizeof b), what);
        if (L->forced[j])
            return kiln__err(KILN_STATUS_INVALID, "%s: column \"%s\" is listed twice", L->t->name,
                             q(list[i], b, sizeof b));
        L->forced[j] = k;
    }
    return KILN_STATUS_OK;
}

/* The k-th smallest of v[0..n) (v is reordered): Hoare's selection. */
static double select_kth(double *v, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        double pivot = v[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot) i++;
            while (v[j] > pivot) j--;
            if (i <= j) {
                double t = v[i];
                v[i] = v[j], v[j] = t;
                i++, j--;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return v[k];
    }
    return v[k];
}

/* pandas' median of the present values (the mean of the two middle ones for an even count). */
static double median_of(double *v, int64_t n)
{
    if (!n) return 0;
    double hi = select_kth(v, n, n / 2);
    if (n % 2) return hi;
    double lo = v[0]; /* the largest of the lower half, which selection left below n / 2 */
    for (int64_t i = 1; i < n / 2; i++)
        if (v[i] > lo) lo = v[i];
    return 0.5 * (lo + hi);
}

/* Counts distinct numbers up to cap + 1 (an open-addressing set sized for min(cap, rows)). */
typedef struct capset {
    double *v;
    bool *used;
    size_t mask;
    int64_t n, cap;
} capset;

static bool capset_init(capset *c, int64_t cap, int64_t rows)
{
    int64_t most = cap < rows ? cap + 1 : rows;
    size_t sz = 16;
    while ((int64_t)sz < 2 * most + 2) sz *= 2;
    c->v = malloc(sz * sizeof *c->v);
    c->used = calloc(sz, 1);
    c->mask = sz - 1, c->n = 0, c->cap = cap;
    return c->v && c->used;
}

static void capset_free(capset *c) { free(c->v), free(c->used); }

/* Adds x; false once more than cap distinct values were seen. */
static bool capset_add(capset *c, double x)
{
    if (c->n > c->cap) return false;
    if (x == 0) x = 0; /* -0 */
    uint64_t h;
    memcpy(&h, &x, sizeof h);
    h ^= h >> 33, h *= 0xff51afd7ed558ccdull, h ^= h >> 33;
    size_t i = (size_t)h & c->mask;
    while (c->used[i] && c->v[i] != x) i = (i + 1) & c->mask;
    if (!c->used[i]) {
        c->used[i] = true, c->v[i] = x;
        c->n++;
    }
    return c->n <= c->cap;
}

/* The kind of table column j by cont_cat_split's rule, or K_DATE when every present value is a
 * date (and one is). */
static kiln_status infer_kind(const kiln_table *t, int j, int max_card, int *kind)
{
    bool all_num = true, all_int = true, all_date = true, any_missing = false, any = false, many = false;
    capset cs;
    if (!capset_init(&cs, max_card, t->n_rows)) {
        capset_free(&cs);
        return kiln__err(KILN_STATUS_NOMEM, "tab_procs: out of memory");
    }
    *kind = K_CAT;
    for (int64_t i = 0; i < t->n_rows; i++) {
        const char *s = kiln_table_cell(t, i, j);
        if (!s) {
            any_missing = true;
            continue;
        }
        any = true;
        double v;
        kiln__tab_date d;
        if (all_date && !kiln__tab_parse_date(s, &d)) all_date = false;
        if (all_num && !kiln__tab_number(s, &v)) all_num = false;
        if (all_num && all_int) {
            if (!kiln__tab_integer(s)) all_int = false;
            else if (!many) many = !capset_add(&cs, v);
        }
        if (!all_num && !all_date) break;
    }
    capset_free(&cs);
    if (!any || (!all_num && !all_date)) *kind = K_CAT;
    else if (all_date) *kind = K_DATE;
    else if (!all_int || any_missing) *kind = K_CONT; /* pandas: float64 */
    else *kind = many ? K_CONT : K_CAT;
    return KILN_STATUS_OK;
}

/* Row i's date part `part` of column j into *v; false when the date is missing. Each date
 * column is parsed once (learn_all checked that every present value reads). */
static bool part_of(learn *L, int64_t i, int j, int part, double *v)
{
    if (L->dcol != j) {
        for (int64_t r = 0; r < L->t->n_rows; r++)
            L->dok[r] = kiln__tab_parse_date(kiln_table_cell(L->t, r, j), &L->dcache[r]);
        L->dcol = j;
    }
    if (!L->dok[i]) return false;
    *v = kiln__tab_part_value(&L->dcache[i], part);
    return true;
}

static kiln_status add_cat_column(learn *L, int j)
{
    const kiln_table *t = L->t;
    const char *name = t->col_names[j];
    kiln__tab_cat *c = new_cat(L, name, name, -1);
    if (!c) return kiln_last_status();
    const char **texts = malloc((size_t)t->n_rows * sizeof *texts);
    if (!texts) return kiln__err(KILN_STATUS_NOMEM, "tab_procs: out of memory");
    int64_t n = 0;
    bool numeric = true;
    for (int64_t i = 0; i < t->n_rows; i++) {
        const char *s = kiln_table_cell(t, i, j);
        if (!s) continue;
        texts[n++] = s;
        if (numeric && !kiln__tab_number(s, NULL)) numeric = false;
    }
    kiln_status st = kiln__tab_cat_set(c, texts, n, numeric && n > 0);
    free(texts);
    return st;
}

/* The values of (column j, part) over the rows into v, *n_present of them present (in
 * present's flags); a forced continuous column's text is an error naming its line. */
static kiln_status cont_values(learn *L, int j, int part, double *v, bool *present)
{
    const kiln_table *t = L->t;
    char b[80], bv[80];
    for (int64_t i = 0; i < t->n_rows; i++) {
        const char *s = kiln_table_cell(t, i, j);
        present[i] = false;
        if (part >= 0) {
            present[i] = part_of(L, i, j, part, &v[i]);
            continue;
        }
        if (!s) continue;
        if (!kiln__tab_number(s, &v[i]))
            return kiln__err(KILN_STATUS_INVALID, "%s: line %lld: column \"%s\" is continuous but holds \"%s\", not a number",
                             t->name, (long long)t->line[i], q(t->col_names[j], b, sizeof b), q(s, bv, sizeof bv));
        present[i] = true;
    }
    return KILN_STATUS_OK;
}

/* FillMissing + Normalize statistics of a continuous column. */
static kiln_status add_cont(learn *L, int j, int part, const char *name)
{
    const kiln_table *t = L->t;
    size_t n = (size_t)t->n_rows;
    double *v = malloc(n * sizeof *v), *tmp = malloc(n * sizeof *tmp);
    bool *present = malloc(n);
    kiln_status st = KILN_STATUS_OK;
    if (!v || !tmp || !present) {
        st = kiln__err(KILN_STATUS_NOMEM, "tab_procs: out of memory");
        goto done;
    }
    if ((st = cont_values(L, j, part, v, present))) goto done;
    int64_t np = 0;
    for (size_t i = 0; i < n; i++)
        if (present[i]) tmp[np++] = v[i];
    kiln__tab_cont *c = new_cont(L, name, t->col_names[j], part);
    if (!c) {
        st = kiln_last_status();
        goto done;
    }
    c->median = median_of(tmp, np);
    c->has_na = np < (int64_t)n;
    double sum = 0, lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double x = present[i] ? v[i] : c->median;
        sum += x;
        if (x < lo) lo = x;
        if (x > hi) hi = x;
    }
    if (!isfinite(hi - lo)) {
        char b[80];
        st = kiln__err(KILN_STATUS_INVALID, "%s: continuous column \"%s\" spans %g to %g: more than a double holds",
                       t->name, q(name, b, sizeof b), lo, hi);
        goto done;
    }
    c->mean = sum / (double)n;
    if (!isfinite(sum)) { /* huge values: the mean of x / n */
        c->mean = 0;
        for (size_t i = 0; i < n; i++) c->mean += (present[i] ? v[i] : c->median) / (double)n;
    }
    /* scaled by the largest deviation so that squares of values above 1e154 do not overflow */
    double scale = fmax(fabs(hi - c->mean), fabs(c->mean - lo)), ss = 0;
    for (size_t i = 0; scale > 0 && i < n; i++) {
        double d = ((present[i] ? v[i] : c->median) - c->mean) / scale;
        ss += d * d;
    }
    c->std = scale > 0 ? scale * sqrt(ss / (double)n) : 0;
done:
    free(v), free(tmp), free(present);
    return st;
}

/* A date part as a categorical column: "False" / "True" for the Is_ parts (a missing date's
 * are False, as pandas gives for NaT), integers otherwise, through Categorify. */
static kiln_status add_part_cat(learn *L, int j, int part, const char *name)
{
    const kiln_table *t = L->t;
    kiln__tab_cat *c = new_cat(L, name, t->col_names[j], part);
    if (!c) return kiln_last_status();
    if (kiln__tab_part_is_bool(part)) {
        bool seen[2] = {false, false};
        for (int64_t i = 0; i < t->n_rows; i++) {
            double v = 0;
            bool ok = part_of(L, i, j, part, &v);
            seen[ok && v != 0] = true;
        }
        const char *texts[2];
        int n = 0;
        if (seen[0]) texts[n++] = "False";
        if (seen[1]) texts[n++] = "True";
        return kiln__tab_cat_set(c, texts, n, false);
    }
    double *v = malloc(((size_t)t->n_rows + 1) * sizeof *v);
    if (!v) return kiln__err(KILN_STATUS_NOMEM, "tab_procs: out of memory");
    int64_t n = 0;
    for (int64_t i = 0; i < t->n_rows; i++)
        if (part_of(L, i, j, part, &v[n])) n++;
    kiln_status st = kiln__tab_cat_set_nums(c, v, n);
    free(v);
    return st;
}

/* cont_cat_split's rule for a date part: bools categorical, Elapsed continuous (a float),
 * integer parts continuous when a date is missing (float in pandas) or with more than
 * max_card distinct values. */
static kiln_status part_kind(learn *L, int j, int part, int *kind)
{
    *kind = K_CAT;
    if (kiln__tab_part_is_bool(part)) return KILN_STATUS_OK;
    *kind = K_CONT;
    if (!strcmp(kiln__tab_part_name(part), "Elapsed")) return KILN_STATUS_OK;
    capset cs;
    if (!capset_init(&cs, L->p->max_card, L->t->n_rows)) {
        capset_free(&cs);
        return kiln__err(KILN_STATUS_NOMEM, "tab_procs: out of memory");
    }
    bool many = false, missing = false;
    for (int64_t i = 0; i < L->t->n_rows && !missing; i++) {
        double v;
        if (!part_of(L, i, j, part, &v)) missing = true;
        else if (!many) many = !capset_add(&cs, v);
    }
    capset_free(&cs);
    *kind = missing || many ? K_CONT : K_CAT;
    return KILN_STATUS_OK;
}

static kiln_status add_na(learn *L, const kiln__tab_cont *c)
{
    char name[512];
    snprintf(name, sizeof name, "%s_na", c->name);
    kiln__tab_cat *k = new_cat(L, name, c->src.col, c->src.part);
    if (!k) return kiln_last_status();
    k->is_na = true;
    const char *texts[2] = {"False", "True"};
    return kiln__tab_cat_set(k, texts, 2, false);
}

static kiln_status learn_target(learn *L)
{
    const kiln_table *t = L->t;
    kiln_tab_procs *pr = L->pr;
    const kiln_tab_params *p = L->p;
    char b[80], bv[80];
    int j = kiln_table_col(t, p->target);
    bool all_num = true;
    for (int64_t i = 0; i < t->n_rows; i++) {
        const char *s = kiln_table_cell(t, i, j);
        if (!s)
            return kiln__err(KILN_STATUS_INVALID, "%s: line %lld: the target \"%s\" is missing", t->name,
                             (long long)t->line[i], q(p->target, b, sizeof b));
        if (all_num && !kiln__tab_number(s, NULL)) all_num = false;
    }
    pr->classification = p->task == KILN_TAB_CLASSIFICATION || (p->task == KILN_TAB_AUTO && !all_num);
    pr->log_target = p->log_target && !pr->classification;
    if (p->log_target && pr->classification)
        return kiln__err(KILN_STATUS_INVALID, "%s: log_target needs a regression target (\"%s\" is a classification target)",
                         t->name, q(p->target, b, sizeof b));
    if (pr->classification) {
        const char **texts = malloc((size_t)t->n_rows * sizeof *texts);
        if (!texts) return kiln__err(KILN_STATUS_NOMEM, "tab_procs: out of memory");
        for (int64_t i = 0; i < t->n_rows; i++) texts[i] = kiln_table_cell(t, i, j);
        pr->cls.name = kiln__tab_strdup(p->target);
        kiln_status st = kiln__tab_cat_set(&pr->cls, texts, t->n_rows, all_num);
        free(texts);
        if (st) return st;
        if (pr->cls.n - 1 < 2)
            return kiln__err(KILN_STATUS_INVALID, "%s: the target \"%s\" has one class (\"%s\") in the training rows",
                             t->name, q(p->target, b, sizeof b), q(pr->cls.cats[1], bv, sizeof bv));
        pr->y_lo = pr->y_hi = NAN;
        return KILN_STATUS_OK;
    }
    pr->y_lo = INFINITY, pr->y_hi = -INFINITY;
    for (int64_t i = 0; i < t->n_rows; i++) {
        const char *s = kiln_table_cell(t, i, j);
        double v;
        if (!kiln__tab_number(s, &v))
            return kiln__err(KILN_STATUS_INVALID, "%s: line %lld: the regression target \"%s\" holds \"%s\", not a number",
                             t->name, (long long)t->line[i], q(p->target, b, sizeof b), q(s, bv, sizeof bv));
        if (pr->log_target) {
            if (!(v > 0))
                return kiln__err(KILN_STATUS_INVALID, "%s: line %lld: the target \"%s\" is %s: log_target needs values > 0",
                                 t->name, (long long)t->line[i], q(p->target, b, sizeof b), q(s, bv, sizeof bv));
            v = log(v);
        }
        if (fabs(v) > FLT_MAX)
            return kiln__err(KILN_STATUS_INVALID, "%s: line %lld: the target \"%s\" is %s, beyond a float's range",
                             t->name, (long long)t->line[i], q(p->target, b, sizeof b), q(s, bv, sizeof bv));
        if (v < pr->y_lo) pr->y_lo = v;
        if (v > pr->y_hi) pr->y_hi = v;
    }
    return KILN_STATUS_OK;
}

static kiln_status learn_all(learn *L)
{
    const kiln_table *t = L->t;
    const kiln_tab_params *p = L->p;
    kiln_status st;
    char b[80];
    if (!p->target) return kiln__err(KILN_STATUS_INVALID, "%s: no target column given", t->name);
    int jt = kiln_table_col(t, p->target);
    if (jt < 0)
        return kiln__err(KILN_STATUS_INVALID, "%s: the target \"%s\" is not a column of the table", t->name,
                         q(p->target, b, sizeof b));
    if (p->max_card < 0) return kiln__err(KILN_STATUS_INVALID, "tab_procs: max_card %d must be >= 0", p->max_card);
    if ((st = mark(L, p->cat, K_CAT, "categorical")) || (st = mark(L, p->cont, K_CONT, "continuous")) ||
        (st = mark(L, p->date, K_DATE, "date")) || (st = mark(L, p->skip, K_NONE + 4, "skipped")))
        return st;
    for (int j = 0; j < t->n_cols; j++) {
        int f = L->forced[j];
        if (j == jt || f == 4 || (p->only_listed && !f)) L->kind[j] = K_NONE;
        else if (f) L->kind[j] = f;
        else if ((st = infer_kind(t, j, p->max_card, &L->kind[j]))) return st;
    }
    L->pr->target = kiln__tab_strdup(p->target);
    if (!L->pr->target) return kiln__err(KILN_STATUS_NOMEM, "tab_procs: out of memory");
    if ((st = learn_target(L))) return st;
    /* forced dates must be dates */
    for (int j = 0; j < t->n_cols; j++) {
        if (L->kind[j] != K_DATE) continue;
        for (int64_t i = 0; i < t->n_rows; i++) {
            const char *s = kiln_table_cell(t, i, j);
            kiln__tab_date d;
            char bv[80];
            if (s && !kiln__tab_parse_date(s, &d))
                return kiln__err(KILN_STATUS_INVALID, "%s: line %lld: date column \"%s\" holds \"%s\", not a YYYY-MM-DD[ HH:MM[:SS]] date",
                                 t->name, (long long)t->line[i], q(t->col_names[j], b, sizeof b), q(s, bv, sizeof bv));
        }
    }
    /* categorical: the table's, then the _na of its continuous ones; continuous: the table's */
    for (int j = 0; j < t->n_cols; j++)
        if (L->kind[j] == K_CAT && (st = add_cat_column(L, j))) return st;
    for (int j = 0; j < t->n_cols; j++)
        if (L->kind[j] == K_CONT && (st = add_cont(L, j, -1, t->col_names[j]))) return st;
    int n_table_cont = L->pr->n_cont;
    for (int k = 0; k < n_table_cont; k++)
        if (L->pr->cont[k].has_na && (st = add_na(L, &L->pr->cont[k]))) return st;
    /* then the date parts: categorical ones, continuous ones, the _na of those */
    for (int j = 0; j < t->n_cols; j++) {
        if (L->kind[j] != K_DATE) continue;
        const char *cn = t->col_names[j];
        size_t len = strlen(cn);
        if (len >= 4 && (!strcmp(cn + len - 4, "date") || !strcmp(cn + len - 4, "Date"))) len -= 4;
        for (int part = 0; part < KILN_TAB_N_PARTS; part++) {
            char name[600];
            snprintf(name, sizeof name, "%.*s%s", (int)(len < 500 ? len : 500), cn, kiln__tab_part_name(part));
            int kind;
            if ((st = part_kind(L, j, part, &kind))) return st;
            if (kind == K_CAT) st = add_part_cat(L, j, part, name);
            else st = add_cont(L, j, part, name);
            if (st) return st;
        }
    }
    for (int k = n_table_cont; k < L->pr->n_cont; k++)
        if (L->pr->cont[k].has_na && (st = add_na(L, &L->pr->cont[k]))) return st;
    if (!L->pr->n_cat && !L->pr->n_cont)
        return kiln__err(KILN_STATUS_INVALID, "%s: no input column left (only the target \"%s\")", t->name,
                         q(p->target, b, sizeof b));
    for (int k = 0; k < L->pr->n_cat; k++)
        if (L->pr->cat[k].n - 1 > kiln__tab_code_limit)
            return kiln__err(KILN_STATUS_INVALID,
                             "%s: column \"%s\" has %lld categories: codes above %lld are not exact in a float batch",
                             t->name, q(L->pr->cat[k].name, b, sizeof b), (long long)(L->pr->cat[k].n - 1),
                             (long long)kiln__tab_code_limit);
    return KILN_STATUS_OK;
}

int64_t kiln__tab_code_limit = (int64_t)1 << 24;

kiln_tab_params kiln_tab_default_params(void)
{
    return (kiln_tab_params){.target = NULL, .task = KILN_TAB_AUTO, .max_card = 20, .valid_pct = 0.2,
                             .split_seed = 42, .batch_size = 64, .rank = 0, .world = 1};
}

kiln_tab_procs *kiln_tab_procs_learn(const kiln_table *t, const kiln_tab_params *p)
{
    if (!t || !p) return kiln__errp(KILN_STATUS_INVALID, "tab_procs_learn: NULL argument");
    learn L = {.t = t, .p = p, .dcol = -1};
    L.kind = calloc((size_t)t->n_cols + 1, sizeof *L.kind);
    L.dcache = malloc(((size_t)t->n_rows + 1) * sizeof *L.dcache);
    L.dok = malloc((size_t)t->n_rows + 1);
    L.forced = calloc((size_t)t->n_cols + 1, sizeof *L.forced);
    L.pr = kiln__tab_procs_alloc();
    kiln_status st = !L.kind || !L.forced || !L.pr || !L.dcache || !L.dok ? kiln__err(KILN_STATUS_NOMEM, "tab_procs: out of memory")
                                                   : learn_all(&L);
    free(L.kind), free(L.forced), free(L.dcache), free(L.dok);
    if (st) {
        kiln_tab_procs_free(L.pr);
        return NULL;
    }
    kiln_clear_error();
    return L.pr;
}
