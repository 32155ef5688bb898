/* Prediction with a tabular learner on new rows (fastai: learn.dls.test_dl(df) + get_preds): the
 * rows through the learner's procs, the model in eval mode, the target's units back (exp of a
 * log target), and the same as a CSV file. */
#include "tab_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

kiln_status kiln__tab_predict_x(kiln_learner *l, const float *x, int64_t n, int64_t bs, double *value, float *probs)
{
    const tab_part *p = kiln__tab_of(l);
    kiln_ctx *ctx = kiln_learner_ctx(l);
    int64_t C = kiln_tab_procs_n_classes(p->procs), w = kiln_tab_procs_n_cat(p->procs) + kiln_tab_procs_n_cont(p->procs);
    bool log_y = kiln_tab_procs_log_target(p->procs);
    kiln_status st = KILN_STATUS_OK;
    for (int64_t i0 = 0; i0 < n && !st; i0 += bs) {
        int64_t b = n - i0 < bs ? n - i0 : bs;
        kiln_mark m = kiln_step_mark(ctx);
        kiln_tensor *xt = kiln_from_data(ctx, KILN_DTYPE_F32, 2, (int64_t[]){b, w}, x + i0 * w);
        kiln_tensor *y = xt ? kiln__tab_forward(l, xt) : NULL;
        kiln_tensor *pr = y && C ? kiln_contiguous(ctx, kiln_softmax(ctx, y, 1)) : y;
        const float *q = pr ? pr->data : NULL;
        if (!pr) st = kiln_last_status();
        for (int64_t i = 0; q && C && i < b; i++) {
            int64_t best = 0;
            for (int64_t k = 0; k < C; k++) {
                if (q[i * C + k] > q[i * C + best]) best = k;
                if (probs) probs[(i0 + i) * C + k] = q[i * C + k];
            }
            value[i0 + i] = (double)best;
        }
        for (int64_t i = 0; q && !C && i < b; i++) value[i0 + i] = log_y ? exp((double)q[i]) : (double)q[i];
        kiln_step_rewind(ctx, m);
    }
    return st;
}

kiln_status kiln_tabular_predict(kiln_learner *l, const kiln_table *t, int64_t bs, double *value, float *probs)
{
    tab_part *p = kiln__tab_of(l);
    if (!p) return kiln__err(KILN_STATUS_INVALID, "tabular_predict: not a tabular or collab learner");
    if (!t || !value) return kiln__err(KILN_STATUS_INVALID, "tabular_predict: NULL argument");
    kiln_tab_rows r = {0};
    kiln_status st = kiln_tab_procs_apply(p->procs, t, false, &r);
    if (st) return st;
    st = kiln__tab_predict_x(l, r.x, r.n, bs > 0 ? bs : 1024, value, probs);
    if (st) kiln__err_prefix(st, kiln_table_name(t));
    kiln_tab_rows_free(&r);
    return kiln__done(st);
}

kiln_status kiln_tabular_predict_csv(kiln_learner *l, const char *csv_in, const char *csv_out)
{
    tab_part *p = kiln__tab_of(l);
    if (!p) return kiln__err(KILN_STATUS_INVALID, "tabular_predict_csv: not a tabular or collab learner");
    if (!csv_in) return kiln__err(KILN_STATUS_INVALID, "tabular_predict_csv: csv_in is NULL");
    kiln_table *t = kiln_table_read_csv(csv_in);
    if (!t) return kiln_last_status();
    int64_t n = kiln_table_n_rows(t), C = kiln_tab_procs_n_classes(p->procs);
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    float *pr = C ? malloc((size_t)((n ? n : 1) * C) * sizeof *pr) : NULL;
    kiln__out o;
    kiln_status st = !v || (C && !pr) ? kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", csv_in) : KILN_STATUS_OK;
    if (!st) st = kiln_tabular_predict(l, t, 0, v, pr);
    if (!st && !(st = kiln__out_begin(&o, csv_out))) {
        fputs("row,", o.f);
        kiln__csv_field(o.f, kiln_tab_procs_target(p->procs));
        for (int64_t k = 0; k < C; k++) {
            char name[512];
            snprintf(name, sizeof name, "p_%s", p->classes[k]);
            fputc(',', o.f);
            kiln__csv_field(o.f, name);
        }
        fputc('\n', o.f);
        for (int64_t i = 0; i < n; i++) {
            fprintf(o.f, "%lld,", (long long)i + 1);
            if (C) kiln__csv_field(o.f, p->classes[(int64_t)v[i]]);
            else fprintf(o.f, "%.9g", v[i]);
            for (int64_t k = 0; k < C; k++) fprintf(o.f, ",%.6g", (double)pr[i * C + k]);
            fputc('\n', o.f);
        }
        st = kiln__out_end(&o, st, "tabular_predict_csv");
    }
    free(v);
    free(pr);
    kiln_table_free(t);
    return kiln__done(st);
}

kiln_status kiln_tabular_interpret(kiln_learner *l, kiln_data_split split, const char *dir, int64_t k, kiln_interp *out)
{
    tab_part *p = kiln__tab_of(l);
    kiln_data *d = l ? kiln_learner_data(l) : NULL;
    if (out) memset(out, 0, sizeof *out);
    if (!p || !p->classes || !d) return kiln__err(KILN_STATUS_INVALID, "tabular_interpret: needs a tabular classifier learner with data");
    if (k < 0) return kiln__err(KILN_STATUS_INVALID, "tabular_interpret: k %lld must be >= 0", (long long)k);
    kiln_interp it = {0};
    kiln_status st = kiln_learner_interpret(l, split, NULL, &it);
    if (!st && dir) st = kiln__interp_write(&it, p->classes, dir, k, NULL, NULL);
    if (!st && out) *out = it;
    else kiln_interp_free(&it);
    return kiln__done(st);
}
