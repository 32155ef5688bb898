/* The procs applied to a table (fastai's procs on the validation, test or prediction rows):
 * each model column's value from its source column (or date part), Categorify's codes (0 for
 * missing and unseen), FillMissing's median and _na codes, Normalize, and the target. */
#include "data/tabular/tab_internal.h"
#include "core/json.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void kiln_tab_rows_free(kiln_tab_rows *r)
{
    if (!r) return;
    free(r->x), free(r->y_class), free(r->y);
    memset(r, 0, sizeof *r);
}

static const char *q(const char *s, char *buf, size_t cap) { return kiln__json_quote(s, buf, cap); }

/* The dates of one table column, parsed once for all its parts (apply goes column by column,
 * so the parts of one date column mostly follow each other). */
typedef struct dcache {
    const kiln_table *t;
    int col;               /* -1: none yet */
    kiln__tab_date *d;     /* (n_rows) */
    unsigned char *state;  /* (n_rows) 0 missing, 1 a date, 2 not a date */
} dcache;

/* Row i's date of column j (*present false when missing); a cell that is not a date is an
 * error naming the line. */
static kiln_status src_date(dcache *dc, int64_t i, int j, kiln__tab_date *d, bool *present)
{
    const kiln_table *t = dc->t;
    if (dc->col != j) {
        for (int64_t r = 0; r < t->n_rows; r++) {
            const char *s = kiln_table_cell(t, r, j);
            dc->state[r] = !s ? 0 : kiln__tab_parse_date(s, &dc->d[r]) ? 1 : 2;
        }
        dc->col = j;
    }
    *present = dc->state[i] == 1;
    if (dc->state[i] == 2) {
        char b[80], bv[80];
        return kiln__err(KILN_STATUS_INVALID, "%s: line %lld: date column \"%s\" holds \"%s\", not a YYYY-MM-DD[ HH:MM[:SS]] date",
                         t->name, (long long)t->line[i], q(t->col_names[j], b, sizeof b),
                         q(kiln_table_cell(t, i, j), bv, sizeof bv));
    }
    if (*present) *d = dc->d[i];
    return KILN_STATUS_OK;
}

static kiln_status cat_code(const kiln__tab_cat *c, dcache *dc, int64_t i, int j, int64_t *code)
{
    if (c->src.part < 0) {
        const char *s = kiln_table_cell(dc->t, i, j);
        if (c->is_na) *code = s ? 1 : 2;
        else *code = kiln__tab_cat_code_text(c, s);
        return KILN_STATUS_OK;
    }
    kiln__tab_date d;
    bool present;
    kiln_status st = src_date(dc, i, j, &d, &present);
    if (st) return st;
    if (c->is_na) {
        *code = present ? 1 : 2;
        return KILN_STATUS_OK;
    }
    if (kiln__tab_part_is_bool(c->src.part)) {
        bool v = present && kiln__tab_part_value(&d, c->src.part) != 0;
        *code = kiln__tab_cat_code_text(c, v ? "True" : "False");
    } else {
        *code = present ? kiln__tab_cat_code_num(c, kiln__tab_part_value(&d, c->src.part)) : 0;
    }
    return KILN_STATUS_OK;
}

static kiln_status cont_value(const kiln__tab_cont *c, dcache *dc, int64_t i, int j, double *v)
{
    const kiln_table *t = dc->t;
    bool present;
    char b[80], bv[80];
    if (c->src.part < 0) {
        const char *s = kiln_table_cell(t, i, j);
        present = s != NULL;
        if (s && !kiln__tab_number(s, v))
            return kiln__err(KILN_STATUS_INVALID, "%s: line %lld: continuous column \"%s\" holds \"%s\", not a number",
                             t->name, (long long)t->line[i], q(c->name, b, sizeof b), q(s, bv, sizeof bv));
    } else {
        kiln__tab_date d;
        kiln_status st = src_date(dc, i, j, &d, &present);
        if (st) return st;
        if (present) *v = kiln__tab_part_value(&d, c->src.part);
    }
    if (!present) {
        if (!c->has_na)
            return kiln__err(KILN_STATUS_INVALID,
                             "%s: line %lld: continuous column \"%s\" is missing, and had no missing value in the training "
                             "rows (no %s_na column to mark it)",
                             t->name, (long long)t->line[i], q(c->name, b, sizeof b), q(c->name, bv, sizeof bv));
        *v = c->median;
    }
    return KILN_STATUS_OK;
}

static kiln_status target_of(const kiln_tab_procs *pr, const kiln_table *t, int64_t i, int j, kiln_tab_rows *out)
{
    const char *s = kiln_table_cell(t, i, j);
    char b[80], bv[80];
    if (!s)
        return kiln__err(KILN_STATUS_INVALID, "%s: line %lld: the target \"%s\" is missing", t->name,
                         (long long)t->line[i], q(pr->target, b, sizeof b));
    if (pr->classification) {
        int64_t code = kiln__tab_cat_code_text(&pr->cls, s);
        if (!code)
            return kiln__err(KILN_STATUS_INVALID, "%s: line %lld: the target \"%s\" holds class \"%s\", which the training rows do not have",
                             t->name, (long long)t->line[i], q(pr->target, b, sizeof b), q(s, bv, sizeof bv));
        out->y_class[i] = code - 1;
        return KILN_STATUS_OK;
    }
    double v;
    if (!kiln__tab_number(s, &v))
        return kiln__err(KILN_STATUS_INVALID, "%s: line %lld: the regression target \"%s\" holds \"%s\", not a number",
                         t->name, (long long)t->line[i], q(pr->target, b, sizeof b), q(s, bv, sizeof bv));
    if (pr->log_target) {
        if (!(v > 0))
            return kiln__err(KILN_STATUS_INVALID, "%s: line %lld: the target \"%s\" is %s: log_target needs values > 0",
                             t->name, (long long)t->line[i], q(pr->target, b, sizeof b), q(s, bv, sizeof bv));
        v = log(v);
    }
    if (fabs(v) > FLT_MAX)
        return kiln__err(KILN_STATUS_INVALID, "%s: line %lld: the target \"%s\" is %s, beyond a float's range", t->name,
                         (long long)t->line[i], q(pr->target, b, sizeof b), q(s, bv, sizeof bv));
    out->y[i] = (float)v;
    return KILN_STATUS_OK;
}

/* The table column of each model column (cat then cont) and of the target. */
static kiln_status find_columns(const kiln_tab_procs *pr, const kiln_table *t, bool with_target, int *cols, int *jt)
{
    char b[80];
    for (int k = 0; k < pr->n_cat + pr->n_cont; k++) {
        const char *col = k < pr->n_cat ? pr->cat[k].src.col : pr->cont[k - pr->n_cat].src.col;
        if ((cols[k] = kiln_table_col(t, col)) < 0)
            return kiln__err(KILN_STATUS_INVALID, "%s: line 1: input column \"%s\" is missing", t->name,
                             q(col, b, sizeof b));
    }
    *jt = -1;
    if (with_target && (*jt = kiln_table_col(t, pr->target)) < 0)
        return kiln__err(KILN_STATUS_INVALID, "%s: line 1: the target column \"%s\" is missing", t->name,
                         q(pr->target, b, sizeof b));
    return KILN_STATUS_OK;
}

kiln_status kiln_tab_procs_apply(const kiln_tab_procs *pr, const kiln_table *t, bool with_target, kiln_tab_rows *out)
{
    if (!pr || !t || !out) return kiln__err(KILN_STATUS_INVALID, "tab_procs_apply: NULL argument");
    memset(out, 0, sizeof *out);
    int nc = pr->n_cat, nk = pr->n_cont, w = nc + nk, jt = -1;
    int *cols = malloc((size_t)(w ? w : 1) * sizeof *cols);
    if (!cols) return kiln__err(KILN_STATUS_NOMEM, "tab_procs_apply: out of memory");
    kiln_status st = find_columns(pr, t, with_target, cols, &jt);
    if (st) {
        free(cols);
        return st;
    }
    size_t n = (size_t)t->n_rows;
    out->n = t->n_rows, out->n_cat = nc, out->n_cont = nk;
    out->x = malloc((n ? n : 1) * (size_t)(w ? w : 1) * sizeof *out->x);
    if (with_target && pr->classification) out->y_class = malloc((n ? n : 1) * sizeof *out->y_class);
    if (with_target && !pr->classification) out->y = malloc((n ? n : 1) * sizeof *out->y);
    if (!out->x || (with_target && !out->y_class && !out->y)) {
        free(cols);
        kiln_tab_rows_free(out);
        return kiln__err(KILN_STATUS_NOMEM, "tab_procs_apply: out of memory for %lld rows", (long long)n);
    }
    dcache dc = {.t = t, .col = -1, .d = malloc((n ? n : 1) * sizeof *dc.d), .state = malloc(n ? n : 1)};
    if (!dc.d || !dc.state) st = kiln__err(KILN_STATUS_NOMEM, "tab_procs_apply: out of memory for %lld rows", (long long)n);
    /* column by column: each column's lookups stay in cache */
    for (int k = 0; !st && k < nc; k++)
        for (size_t i = 0; i < n; i++) {
            int64_t code;
            if ((st = cat_code(&pr->cat[k], &dc, (int64_t)i, cols[k], &code))) break;
            out->x[i * (size_t)w + (size_t)k] = (float)code;
        }
    for (int k = 0; !st && k < nk; k++) {
        const kiln__tab_cont *c = &pr->cont[k];
        for (size_t i = 0; i < n; i++) {
            double v;
            if ((st = cont_value(c, &dc, (int64_t)i, cols[nc + k], &v))) break;
            out->x[i * (size_t)w + (size_t)(nc + k)] = (float)((v - c->mean) / (c->std + 1e-7));
        }
    }
    for (size_t i = 0; !st && with_target && i < n; i++) st = target_of(pr, t, (int64_t)i, jt, out);
    free(cols), free(dc.d), free(dc.state);
    if (st) {
        kiln_tab_rows_free(out);
        return st;
    }
    return kiln__done(KILN_STATUS_OK);
}
