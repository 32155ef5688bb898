/* Classification interpretation (include/kiln/interp.h), fastai's ClassificationInterpretation
 * for any classifier: from kiln_preds to the confusion matrix, per-item prediction and loss,
 * the most confused pairs and the top losses, and the CSV files and heat map of
 * `kiln vision interpret`. The CSV files are streamed into the atomic writer (kiln/io.h). */
#include "app_internal.h"
#include "kiln/interp.h"

#include "kiln/io.h"
#include "kiln/report.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- building ---------------------------------------------------------------------------- */

/* What kiln_interp_from_preds needs of p; an error naming the field or the item. */
static kiln_status check_preds(const kiln_preds *p)
{
    static const char *fn = "kiln_interp_from_preds";
    if (!p) return kiln_error(KILN_STATUS_INVALID, "%s: preds is NULL", fn);
    if (p->c < 1 || p->c > INT_MAX)
        return kiln_error(KILN_STATUS_INVALID, "%s: %lld classes (need 1 to %d)", fn, (long long)p->c, INT_MAX);
    if (p->n < 1) return kiln_error(KILN_STATUS_INVALID, "%s: %lld items (need 1 or more)", fn, (long long)p->n);
    if (p->target_dtype != KILN_DTYPE_I64 || p->k != 1)
        return kiln_error(KILN_STATUS_INVALID, "%s: targets are %lld %s per item (need 1 i64 class index)", fn,
                          (long long)p->k, kiln_dtype_name(p->target_dtype));
    if (!p->probs || !p->targets) return kiln_error(KILN_STATUS_INVALID, "%s: probs or targets is NULL", fn);
    const int64_t *y = p->targets;
    for (int64_t i = 0; i < p->n; i++) {
        if (y[i] < 0 || y[i] >= p->c)
            return kiln_error(KILN_STATUS_INVALID, "%s: item %lld: target %lld is not a class index in [0, %lld)", fn,
                              (long long)i, (long long)y[i], (long long)p->c);
        for (int64_t j = 0; j < p->c; j++)
            if (!isfinite(p->probs[i * p->c + j]))
                return kiln_error(KILN_STATUS_INVALID, "%s: item %lld: probability of class %lld is %g", fn,
                                  (long long)i, (long long)j, (double)p->probs[i * p->c + j]);
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_interp_from_preds(const kiln_preds *p, kiln_interp *out)
{
    if (!out) return kiln_error(KILN_STATUS_INVALID, "kiln_interp_from_preds: out is NULL");
    memset(out, 0, sizeof *out);
    kiln_status st = check_preds(p);
    if (st) return st;
    kiln_interp it = {.n = p->n, .c = (int)p->c};
    size_t n = (size_t)p->n, c = (size_t)p->c;
    it.confusion = calloc(c * c, sizeof *it.confusion);
    it.pred = malloc(n * sizeof *it.pred);
    it.actual = malloc(n * sizeof *it.actual);
    it.loss = malloc(n * sizeof *it.loss);
    it.p_actual = malloc(n * sizeof *it.p_actual);
    if (!it.confusion || !it.pred || !it.actual || !it.loss || !it.p_actual) {
        kiln_interp_free(&it);
        return kiln_error(KILN_STATUS_NOMEM, "kiln_interp_from_preds: out of memory for %lld items of %d classes",
                          (long long)it.n, it.c);
    }
    const int64_t *y = p->targets;
    for (int64_t i = 0; i < it.n; i++) {
        const float *row = p->probs + i * p->c;
        int best = 0, a = (int)y[i];
        for (int j = 1; j < it.c; j++) best = row[j] > row[best] ? j : best;
        double pa = row[a];
        it.pred[i] = best;
        it.actual[i] = a;
        it.p_actual[i] = row[a];
        it.loss[i] = -log(pa > 1e-30 ? pa : 1e-30);
        it.confusion[(size_t)a * c + (size_t)best]++;
        it.n_correct += a == best;
    }
    it.accuracy = (double)it.n_correct / (double)it.n;
    *out = it;
    return KILN_STATUS_OK;
}

void kiln_interp_free(kiln_interp *it)
{
    if (!it) return;
    free(it->confusion);
    free(it->pred);
    free(it->actual);
    free(it->loss);
    free(it->p_actual);
    memset(it, 0, sizeof *it);
}

/* it as kiln_interp_from_preds leaves it; an error naming fn otherwise. */
static kiln_status check_interp(const kiln_interp *it, const char *fn)
{
    if (!it || it->n < 1 || it->c < 1 || !it->confusion || !it->pred || !it->actual || !it->loss || !it->p_actual)
        return kiln_error(KILN_STATUS_INVALID, "%s: not an interpretation made by kiln_interp_from_preds", fn);
    return KILN_STATUS_OK;
}

/* ---- most confused, top losses ------------------------------------------------------------ */

static int by_count_desc(const void *a, const void *b)
{
    const kiln_confused *x = a, *y = b;
    if (x->count != y->count) return x->count < y->count ? 1 : -1;
    if (x->actual != y->actual) return x->actual < y->actual ? -1 : 1;
    return (x->predicted > y->predicted) - (x->predicted < y->predicted);
}

int kiln_interp_most_confused(const kiln_interp *it, int64_t min_val, kiln_confused *out, int max, int *n_total)
{
    static const char *fn = "kiln_interp_most_confused";
    if (n_total) *n_total = 0;
    if (check_interp(it, fn)) return -1;
    if (max < 0 || (max > 0 && !out)) {
        kiln_error(KILN_STATUS_INVALID, "%s: room for %d pairs at %s", fn, max, out ? "out" : "NULL");
        return -1;
    }
    int c = it->c;
    int64_t np = 0;
    for (int a = 0; a < c; a++)
        for (int k = 0; k < c; k++) np += a != k && it->confusion[(size_t)a * c + k] >= min_val;
    if (np > INT_MAX) {
        kiln_error(KILN_STATUS_INVALID, "%s: %lld pairs are more than an int counts", fn, (long long)np);
        return -1;
    }
    kiln_confused *all = malloc(sizeof *all * (size_t)(np ? np : 1));
    if (!all) {
        kiln_error(KILN_STATUS_NOMEM, "%s: out of memory for %lld pairs", fn, (long long)np);
        return -1;
    }
    int64_t m = 0;
    for (int a = 0; a < c; a++)
        for (int k = 0; k < c; k++)
            if (a != k && it->confusion[(size_t)a * c + k] >= min_val)
                all[m++] = (kiln_confused){a, k, it->confusion[(size_t)a * c + k]};
    qsort(all, (size_t)np, sizeof *all, by_count_desc);
    int w = np < max ? (int)np : max;
    if (w) memcpy(out, all, sizeof *all * (size_t)w);
    free(all);
    if (n_total) *n_total = (int)np;
    return w;
}

typedef struct loss_rank {
    int64_t i;
    double loss;
} loss_rank;

static int by_loss_desc(const void *a, const void *b)
{
    const loss_rank *x = a, *y = b;
    if (x->loss != y->loss) return x->loss < y->loss ? 1 : -1;
    return (x->i > y->i) - (x->i < y->i);
}

int64_t kiln_interp_top_losses(const kiln_interp *it, int64_t k, int64_t *idx)
{
    static const char *fn = "kiln_interp_top_losses";
    if (check_interp(it, fn)) return -1;
    if (k < 0 || (k > 0 && !idx)) {
        kiln_error(KILN_STATUS_INVALID, "%s: k = %lld with idx %s", fn, (long long)k, idx ? "given" : "NULL");
        return -1;
    }
    loss_rank *r = malloc(sizeof *r * (size_t)it->n);
    if (!r) {
        kiln_error(KILN_STATUS_NOMEM, "%s: out of memory for %lld items", fn, (long long)it->n);
        return -1;
    }
    for (int64_t i = 0; i < it->n; i++) r[i] = (loss_rank){i, it->loss[i]};
    qsort(r, (size_t)it->n, sizeof *r, by_loss_desc);
    int64_t w = k < it->n ? k : it->n;
    for (int64_t j = 0; j < w; j++) idx[j] = r[j].i;
    free(r);
    return w;
}

/* ---- files ------------------------------------------------------------------------------- */

/* Class k's name: classes[k], or its index in buf (>= 12 bytes) when there is none. */
static const char *class_name(const char *const *classes, int k, char *buf)
{
    if (classes && classes[k]) return classes[k];
    snprintf(buf, 12, "%d", k);
    return buf;
}

void kiln__csv_field(FILE *f, const char *v)
{
    if (!strpbrk(v, ",\"\r\n")) {
        fputs(v, f);
        return;
    }
    fputc('"', f);
    for (; *v; v++) {
        if (*v == '"') fputc('"', f);
        fputc(*v, f);
    }
    fputc('"', f);
}

static void csv_class(FILE *f, const char *const *classes, int k)
{
    char num[12];
    kiln__csv_field(f, class_name(classes, k, num));
}

kiln_status kiln_interp_write_confusion_csv(const kiln_interp *it, const char *const *classes, const char *path)
{
    kiln_status st = check_interp(it, "kiln_interp_write_confusion_csv");
    kiln_atomic *a = NULL;
    if (st || (st = kiln_atomic_begin(path, &a))) return st;
    FILE *f = kiln_atomic_stream(a);
    fputs("actual\\predicted", f);
    for (int k = 0; k < it->c; k++) fputc(',', f), csv_class(f, classes, k);
    fputc('\n', f);
    for (int r = 0; r < it->c; r++) {
        csv_class(f, classes, r);
        for (int k = 0; k < it->c; k++) fprintf(f, ",%lld", (long long)it->confusion[(size_t)r * it->c + k]);
        fputc('\n', f);
    }
    return kiln_atomic_commit(a);
}

kiln_status kiln_interp_write_top_losses_csv(const kiln_interp *it, int64_t k, const char *const *classes,
                                             const char *(*item_name)(void *user, int64_t i), void *user,
                                             const char *path)
{
    kiln_status st = check_interp(it, "kiln_interp_write_top_losses_csv");
    if (st) return st;
    int64_t want = k < it->n ? k : it->n;
    int64_t *idx = malloc(sizeof *idx * (size_t)(want > 0 ? want : 1));
    if (!idx) return kiln_error(KILN_STATUS_NOMEM, "kiln_interp_write_top_losses_csv: out of memory");
    int64_t w = kiln_interp_top_losses(it, k, idx); /* -1 (the message set) for k < 0 */
    kiln_atomic *a = NULL;
    if (w < 0 || (st = kiln_atomic_begin(path, &a))) {
        free(idx);
        return w < 0 ? kiln_last_status() : st;
    }
    FILE *f = kiln_atomic_stream(a);
    fputs("rank,index,file,predicted,actual,loss,probability\n", f);
    for (int64_t r = 0; r < w; r++) {
        int64_t i = idx[r];
        const char *file = item_name ? item_name(user, i) : NULL;
        fprintf(f, "%lld,%lld,", (long long)r + 1, (long long)i);
        kiln__csv_field(f, file ? file : "");
        fputc(',', f);
        csv_class(f, classes, it->pred[i]);
        fputc(',', f);
        csv_class(f, classes, it->actual[i]);
        fprintf(f, ",%.9g,%.9g\n", it->loss[i], (double)it->p_actual[i]);
    }
    free(idx);
    return kiln_atomic_commit(a);
}

kiln_status kiln_interp_plot_confusion(const kiln_interp *it, const char *const *classes, const char *title,
                                       const char *path)
{
    kiln_status st = check_interp(it, "kiln_interp_plot_confusion");
    if (st) return st;
    const char **names = malloc(sizeof *names * (size_t)it->c);
    char(*num)[12] = malloc(sizeof *num * (size_t)it->c);
    if (!names || !num) st = kiln_error(KILN_STATUS_NOMEM, "kiln_interp_plot_confusion: out of memory");
    for (int k = 0; !st && k < it->c; k++) names[k] = class_name(classes, k, num[k]);
    if (!st) st = kiln_plot_heatmap(path, it->confusion, it->c, names, title);
    free(names);
    free(num);
    return st;
}

kiln_status kiln__interp_write(const kiln_interp *it, const char *const *classes, const char *dir, int64_t k,
                               const char *(*item_name)(void *user, int64_t i), void *user)
{
    char cm_csv[4096], cm_png[4096], tl_csv[4096];
    kiln_status st;
    if (!(st = kiln_mkdirs(dir)) && !(st = kiln__path(cm_csv, sizeof cm_csv, dir, "confusion_matrix.csv")) &&
        !(st = kiln__path(cm_png, sizeof cm_png, dir, "confusion_matrix.png")) &&
        !(st = kiln__path(tl_csv, sizeof tl_csv, dir, "top_losses.csv")) &&
        !(st = kiln_interp_write_confusion_csv(it, classes, cm_csv)) &&
        !(st = kiln_interp_write_top_losses_csv(it, k, classes, item_name, user, tl_csv)) && kiln_plot_available())
        st = kiln_interp_plot_confusion(it, classes, "confusion matrix (validation)", cm_png);
    return st;
}
