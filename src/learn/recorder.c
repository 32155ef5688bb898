/* The recorder (include/kiln/learn.h): what a fit did, per batch and per epoch, as arrays
 * for callbacks and plots and as CSV files written atomically. */
#include "learn_internal.h"
#include "kiln/io.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

struct kiln_recorder {
    int n_groups, n_metrics;
    char **metric_names;       /* (n_metrics) */
    /* per batch, capacity cap */
    int64_t n, cap;
    int64_t *iters, *epochs;   /* (n) */
    double *loss, *smooth;     /* (n) */
    double **lrs, **moms;      /* (n_groups) x (n) */
    /* per epoch, capacity ecap */
    int64_t ne, ecap;
    kiln_epoch_record *ep;     /* (ne); metrics point into emet */
    double *emet;              /* (ne, n_metrics) */
};

kiln_recorder *kiln__recorder_new(void) { return calloc(1, sizeof(kiln_recorder)); }

static void clear(kiln_recorder *r)
{
    for (int j = 0; j < r->n_metrics; j++) free(r->metric_names[j]);
    free(r->metric_names);
    for (int g = 0; g < r->n_groups; g++) free(r->lrs[g]), free(r->moms[g]);
    free(r->lrs), free(r->moms);
    free(r->iters), free(r->epochs), free(r->loss), free(r->smooth);
    free(r->ep), free(r->emet);
    memset(r, 0, sizeof *r);
}

void kiln__recorder_free(kiln_recorder *r)
{
    if (!r) return;
    clear(r);
    free(r);
}

kiln_status kiln__recorder_reset_names(kiln_recorder *r, int n_groups, int n_metrics, const char *const *names)
{
    clear(r);
    r->lrs = calloc((size_t)n_groups + 1, sizeof *r->lrs);
    r->moms = calloc((size_t)n_groups + 1, sizeof *r->moms);
    r->metric_names = calloc((size_t)n_metrics + 1, sizeof *r->metric_names);
    if (!r->lrs || !r->moms || !r->metric_names) goto nomem;
    r->n_groups = n_groups;
    for (int j = 0; j < n_metrics; j++) {
        if (!(r->metric_names[j] = strdup(names[j]))) goto nomem;
        r->n_metrics = j + 1;
    }
    return KILN_STATUS_OK;
nomem:
    clear(r);
    return kiln__err(KILN_STATUS_NOMEM, "recorder: out of memory");
}

kiln_status kiln__recorder_reset(kiln_recorder *r, int n_groups, int n_metrics, const kiln_metric *metrics)
{
    const char **names = malloc(((size_t)n_metrics + 1) * sizeof *names);
    if (!names) return kiln__err(KILN_STATUS_NOMEM, "recorder: out of memory");
    for (int j = 0; j < n_metrics; j++) names[j] = kiln_metric_name(&metrics[j]);
    kiln_status st = kiln__recorder_reset_names(r, n_groups, n_metrics, names);
    free(names);
    return st;
}

#define GROW(p, cap) ((p) = realloc_or_keep((p), (size_t)(cap) * sizeof *(p), &ok))

static void *realloc_or_keep(void *p, size_t bytes, bool *ok)
{
    void *n = realloc(p, bytes);
    if (!n) {
        *ok = false;
        return p;
    }
    return n;
}

kiln_status kiln__recorder_add_batch(kiln_recorder *r, int64_t iter, int64_t epoch, double loss, double smooth,
                                     const double *lrs, const double *moms)
{
    if (r->n == r->cap) {
        int64_t cap = r->cap ? 2 * r->cap : 1024;
        bool ok = true;
        GROW(r->iters, cap), GROW(r->epochs, cap), GROW(r->loss, cap), GROW(r->smooth, cap);
        for (int g = 0; g < r->n_groups; g++) GROW(r->lrs[g], cap), GROW(r->moms[g], cap);
        if (!ok) return kiln__err(KILN_STATUS_NOMEM, "recorder: out of memory");
        r->cap = cap;
    }
    int64_t i = r->n++;
    r->iters[i] = iter, r->epochs[i] = epoch, r->loss[i] = loss, r->smooth[i] = smooth;
    for (int g = 0; g < r->n_groups; g++) r->lrs[g][i] = lrs[g], r->moms[g][i] = moms[g];
    return KILN_STATUS_OK;
}

kiln_status kiln__recorder_add_epoch(kiln_recorder *r, int64_t epoch, int64_t iter, double train_loss,
                                     double valid_loss, const double *metrics, double seconds)
{
    if (r->ne == r->ecap) {
        int64_t cap = r->ecap ? 2 * r->ecap : 16;
        bool ok = true;
        GROW(r->ep, cap);
        GROW(r->emet, cap * (r->n_metrics ? r->n_metrics : 1));
        if (!ok) return kiln__err(KILN_STATUS_NOMEM, "recorder: out of memory");
        r->ecap = cap;
    }
    int64_t i = r->ne++;
    if (r->n_metrics) memcpy(r->emet + i * r->n_metrics, metrics, (size_t)r->n_metrics * sizeof *metrics);
    r->ep[i] = (kiln_epoch_record){.epoch = epoch, .iter = iter, .train_loss = train_loss,
                                   .valid_loss = valid_loss, .metrics = NULL, .seconds = seconds};
    return KILN_STATUS_OK;
}

kiln_status kiln__recorder_copy(kiln_recorder *dst, const kiln_recorder *src, int n_groups, int n_metrics,
                                const kiln_metric *metrics)
{
    if (src->ne > 0 && src->n_metrics != n_metrics)
        return kiln__err(KILN_STATUS_INVALID, "recorder: epoch rows of %d metrics, %d wanted", src->n_metrics,
                         n_metrics);
    int g = src->n > 0 ? src->n_groups : n_groups;
    kiln_status st = kiln__recorder_reset(dst, g, n_metrics, metrics);
    double *lrs = malloc(((size_t)g + 1) * sizeof *lrs), *moms = malloc(((size_t)g + 1) * sizeof *moms);
    if (!st && (!lrs || !moms)) st = kiln__err(KILN_STATUS_NOMEM, "recorder: out of memory");
    for (int64_t i = 0; !st && i < src->n; i++) {
        for (int k = 0; k < g; k++) lrs[k] = src->lrs[k][i], moms[k] = src->moms[k][i];
        st = kiln__recorder_add_batch(dst, src->iters[i], src->epochs[i], src->loss[i], src->smooth[i], lrs, moms);
    }
    for (int64_t i = 0; !st && i < src->ne; i++) {
        const kiln_epoch_record *e = &src->ep[i];
        st = kiln__recorder_add_epoch(dst, e->epoch, e->iter, e->train_loss, e->valid_loss,
                                      src->emet + i * src->n_metrics, e->seconds);
    }
    free(lrs), free(moms);
    return st;
}

/* Appends src's batches and epochs to dst, their iterations and epochs moved on by di and de. */
static kiln_status append(kiln_recorder *dst, const kiln_recorder *src, int64_t di, int64_t de)
{
    kiln_status st = KILN_STATUS_OK;
    int g = dst->n_groups;
    double *lrs = malloc(((size_t)g + 1) * sizeof *lrs), *moms = malloc(((size_t)g + 1) * sizeof *moms);
    if (!lrs || !moms) st = kiln__err(KILN_STATUS_NOMEM, "recorder: out of memory");
    for (int64_t i = 0; !st && i < src->n; i++) {
        for (int k = 0; k < g; k++) lrs[k] = src->lrs[k][i], moms[k] = src->moms[k][i];
        st = kiln__recorder_add_batch(dst, src->iters[i] + di, src->epochs[i] + de, src->loss[i], src->smooth[i], lrs,
                                      moms);
    }
    for (int64_t i = 0; !st && i < src->ne; i++) {
        const kiln_epoch_record *e = &src->ep[i];
        st = kiln__recorder_add_epoch(dst, e->epoch + de, e->iter + di, e->train_loss, e->valid_loss,
                                      src->emet + i * src->n_metrics, e->seconds);
    }
    free(lrs), free(moms);
    return st;
}

kiln_recorder *kiln_recorder_clone(const kiln_recorder *r)
{
    kiln_recorder *c = r ? kiln__recorder_new() : NULL;
    if (!r) return kiln__errp(KILN_STATUS_INVALID, "recorder_clone: NULL recorder");
    if (!c || kiln__recorder_reset_names(c, r->n_groups, r->n_metrics, (const char *const *)r->metric_names) ||
        append(c, r, 0, 0)) {
        kiln__recorder_free(c);
        return c ? NULL : kiln__errp(KILN_STATUS_NOMEM, "recorder: out of memory");
    }
    return c;
}

void kiln_recorder_free(kiln_recorder *r) { kiln__recorder_free(r); }

kiln_status kiln_learner_prepend_history(kiln_learner *l, const kiln_recorder *earlier)
{
    if (!l || !earlier) return kiln__err(KILN_STATUS_INVALID, "learner_prepend_history: NULL argument");
    kiln_recorder *cur = l->rec;
    bool same = earlier->n_metrics == cur->n_metrics && (earlier->n_groups == cur->n_groups || !earlier->n || !cur->n);
    for (int j = 0; same && j < cur->n_metrics; j++) same = !strcmp(earlier->metric_names[j], cur->metric_names[j]);
    if (!same)
        return kiln__err(KILN_STATUS_INVALID, "learner_prepend_history: the earlier record has %d groups and %d metrics, "
                                              "this one %d and %d (or other metric names)",
                         earlier->n_groups, earlier->n_metrics, cur->n_groups, cur->n_metrics);
    int64_t di = earlier->n ? earlier->iters[earlier->n - 1] + 1 : 0;
    if (earlier->ne && earlier->ep[earlier->ne - 1].iter > di) di = earlier->ep[earlier->ne - 1].iter;
    int64_t de = earlier->ne ? earlier->ep[earlier->ne - 1].epoch + 1 : 0;
    kiln_recorder *m = kiln__recorder_new();
    int g = cur->n ? cur->n_groups : earlier->n_groups;
    kiln_status st = m ? kiln__recorder_reset_names(m, g, cur->n_metrics, (const char *const *)cur->metric_names)
                       : kiln__err(KILN_STATUS_NOMEM, "recorder: out of memory");
    if (!st) st = append(m, earlier, 0, 0);
    if (!st) st = append(m, cur, di, de);
    if (!st) kiln__recorder_swap(cur, m);
    kiln__recorder_free(m);
    return st;
}

void kiln__recorder_swap(kiln_recorder *a, kiln_recorder *b)
{
    kiln_recorder t = *a;
    *a = *b;
    *b = t;
}

int64_t kiln_recorder_n_batches(const kiln_recorder *r) { return r ? r->n : 0; }
int kiln_recorder_n_groups(const kiln_recorder *r) { return r ? r->n_groups : 0; }
const int64_t *kiln_recorder_iters(const kiln_recorder *r) { return r ? r->iters : NULL; }
const double *kiln_recorder_losses(const kiln_recorder *r) { return r ? r->loss : NULL; }
const double *kiln_recorder_smooth_losses(const kiln_recorder *r) { return r ? r->smooth : NULL; }
const double *kiln_recorder_lrs(const kiln_recorder *r, int g)
{
    return r && g >= 0 && g < r->n_groups ? r->lrs[g] : NULL;
}
const double *kiln_recorder_moms(const kiln_recorder *r, int g)
{
    return r && g >= 0 && g < r->n_groups ? r->moms[g] : NULL;
}
int64_t kiln_recorder_n_epochs(const kiln_recorder *r) { return r ? r->ne : 0; }
int kiln_recorder_n_metrics(const kiln_recorder *r) { return r ? r->n_metrics : 0; }
const char *kiln_recorder_metric_name(const kiln_recorder *r, int j)
{
    return r && j >= 0 && j < r->n_metrics ? r->metric_names[j] : NULL;
}

kiln_status kiln_recorder_epoch(const kiln_recorder *r, int64_t i, kiln_epoch_record *out)
{
    if (!r || !out || i < 0 || i >= r->ne)
        return kiln__err(KILN_STATUS_INVALID, "recorder_epoch: no epoch row %lld (%lld rows)", (long long)i,
                         (long long)(r ? r->ne : 0));
    *out = r->ep[i];
    out->metrics = r->emet + i * r->n_metrics;
    return KILN_STATUS_OK;
}

/* ---- CSV ---- */

kiln_status kiln_recorder_write_csv(const kiln_recorder *r, const char *path)
{
    if (!r || !path) return kiln__err(KILN_STATUS_INVALID, "recorder_write_csv: NULL argument");
    kiln_atomic *a;
    kiln_status st = kiln_atomic_begin(path, &a);
    if (st) return st;
    FILE *f = kiln_atomic_stream(a);
    fputs("epoch,train_loss,valid_loss", f);
    for (int j = 0; j < r->n_metrics; j++) fprintf(f, ",%s", r->metric_names[j]);
    fputs(",time\n", f);
    for (int64_t i = 0; i < r->ne; i++) {
        const kiln_epoch_record *e = &r->ep[i];
        char tb[32];
        fprintf(f, "%lld,%.9g,%.9g", (long long)e->epoch, e->train_loss, e->valid_loss);
        for (int j = 0; j < r->n_metrics; j++) fprintf(f, ",%.9g", r->emet[i * r->n_metrics + j]);
        fprintf(f, ",%s\n", kiln_format_time(e->seconds, tb, sizeof tb));
    }
    return kiln_atomic_commit(a); /* reports any failed write above */
}

kiln_status kiln_recorder_write_batches_csv(const kiln_recorder *r, const char *path)
{
    if (!r || !path) return kiln__err(KILN_STATUS_INVALID, "recorder_write_batches_csv: NULL argument");
    kiln_atomic *a;
    kiln_status st = kiln_atomic_begin(path, &a);
    if (st) return st;
    FILE *f = kiln_atomic_stream(a);
    fputs("iter,epoch,loss,smooth_loss", f);
    for (int g = 0; g < r->n_groups; g++) fprintf(f, ",lr_%d", g);
    for (int g = 0; g < r->n_groups; g++) fprintf(f, ",mom_%d", g);
    fputc('\n', f);
    for (int64_t i = 0; i < r->n; i++) {
        fprintf(f, "%lld,%lld,%.9g,%.9g", (long long)r->iters[i], (long long)r->epochs[i], r->loss[i], r->smooth[i]);
        for (int g = 0; g < r->n_groups; g++) fprintf(f, ",%.9g", r->lrs[g][i]);
        for (int g = 0; g < r->n_groups; g++) fprintf(f, ",%.9g", r->moms[g][i]);
        fputc('\n', f);
    }
    return kiln_atomic_commit(a); /* reports any failed write above */
}

/* ---- plots ---- */

kiln_status kiln_recorder_plot_losses(const kiln_recorder *r, const char *path)
{
    if (!r || !path) return kiln__err(KILN_STATUS_INVALID, "recorder_plot_losses: NULL argument");
    if (r->n == 0) return kiln__err(KILN_STATUS_STATE, "recorder_plot_losses: nothing recorded");
    double *x = malloc((size_t)r->n * sizeof *x), *vx = malloc((size_t)(r->ne + 1) * sizeof *vx),
           *vy = malloc((size_t)(r->ne + 1) * sizeof *vy);
    if (!x || !vx || !vy) {
        free(x), free(vx), free(vy);
        return kiln__err(KILN_STATUS_NOMEM, "recorder_plot_losses: out of memory");
    }
    for (int64_t i = 0; i < r->n; i++) x[i] = (double)r->iters[i];
    for (int64_t i = 0; i < r->ne; i++) vx[i] = (double)r->ep[i].iter, vy[i] = r->ep[i].valid_loss;
    kiln_plot_series s[3] = {
        {.label = "train (raw)", .x = x, .y = r->loss, .n = r->n, .style = KILN_PLOT_STYLE_LINE},
        {.label = "train", .x = x, .y = r->smooth, .n = r->n, .style = KILN_PLOT_STYLE_LINE},
        {.label = "valid", .x = vx, .y = vy, .n = r->ne, .style = KILN_PLOT_STYLE_LINE},
    };
    int ns = 2;
    for (int64_t i = 0; i < r->ne; i++)
        if (isfinite(vy[i])) ns = 3;
    kiln_status st = kiln_plot_lines(path, "loss", "iteration", "loss", false, false, s, ns);
    free(x), free(vx), free(vy);
    return st;
}

kiln_status kiln_recorder_plot_metrics(const kiln_recorder *r, const char *path)
{
    if (!r || !path) return kiln__err(KILN_STATUS_INVALID, "recorder_plot_metrics: NULL argument");
    if (r->ne == 0 || r->n_metrics == 0)
        return kiln__err(KILN_STATUS_STATE, "recorder_plot_metrics: no epochs or no metrics recorded");
    int nm = r->n_metrics;
    double *x = malloc((size_t)r->ne * sizeof *x), *y = malloc((size_t)(r->ne * nm) * sizeof *y);
    kiln_plot_series *s = calloc((size_t)nm, sizeof *s);
    kiln_status st;
    if (!x || !y || !s) {
        st = kiln__err(KILN_STATUS_NOMEM, "recorder_plot_metrics: out of memory");
    } else {
        for (int64_t i = 0; i < r->ne; i++) {
            x[i] = (double)r->ep[i].epoch;
            for (int j = 0; j < nm; j++) y[j * r->ne + i] = r->emet[i * nm + j];
        }
        for (int j = 0; j < nm; j++)
            s[j] = (kiln_plot_series){.label = r->metric_names[j], .x = x, .y = y + j * r->ne, .n = r->ne,
                                      .style = r->ne == 1 ? KILN_PLOT_STYLE_POINTS : KILN_PLOT_STYLE_LINE};
        st = kiln_plot_lines(path, "metrics", "epoch", "value", false, false, s, nm);
    }
    free(x), free(y), free(s);
    return st;
}

kiln_status kiln_recorder_plot_lr(const kiln_recorder *r, const char *path)
{
    if (!r || !path) return kiln__err(KILN_STATUS_INVALID, "recorder_plot_lr: NULL argument");
    if (r->n == 0) return kiln__err(KILN_STATUS_STATE, "recorder_plot_lr: nothing recorded");
    double *x = malloc((size_t)r->n * sizeof *x);
    kiln_plot_series *s = calloc((size_t)r->n_groups, sizeof *s);
    char(*labels)[32] = calloc((size_t)r->n_groups, sizeof *labels);
    kiln_status st;
    if (!x || !s || !labels) {
        st = kiln__err(KILN_STATUS_NOMEM, "recorder_plot_lr: out of memory");
    } else {
        for (int64_t i = 0; i < r->n; i++) x[i] = (double)r->iters[i];
        for (int g = 0; g < r->n_groups; g++) {
            snprintf(labels[g], sizeof labels[g], "group %d", g);
            s[g] = (kiln_plot_series){.label = labels[g], .x = x, .y = r->lrs[g], .n = r->n,
                                      .style = KILN_PLOT_STYLE_LINE};
        }
        st = kiln_plot_lines(path, "learning rate", "iteration", "lr", false, false, s, r->n_groups);
    }
    free(x), free(s), free(labels);
    return st;
}
