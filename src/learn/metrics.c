/* Metrics (include/kiln/learn.h): running sums per split, one value at the end, as fastai's
 * AccumMetric. Sums are in double; the per-batch tensors may have any strides.
 *   accuracy / error_rate / top-k: sum[0] = hits, n = items
 *   rmse / mae:                    sum[0] = sum of squared / absolute errors, n = elements
 *   f1:                            sum[0..2] = tp, fp, fn
 *   perplexity:                    sum[0] = sum of batch loss * batch size, n = items */
#include "core/internal.h"
#include "kiln/learn.h"

#include <math.h>
#include <string.h>

static const char *const g_names[KILN_METRIC_KIND_COUNT] = {
    "accuracy", "error_rate", "top_k_accuracy", "rmse", "mae", "f1_score", "perplexity", "custom",
};

kiln_metric kiln_metric_make(kiln_metric_kind kind)
{
    return (kiln_metric){.kind = kind, .name = NULL, .k = 5, .threshold = 0.0f};
}

const char *kiln_metric_name(const kiln_metric *m)
{
    if (!m) return "";
    if (m->name) return m->name;
    return (unsigned)m->kind < KILN_METRIC_KIND_COUNT ? g_names[m->kind] : "metric";
}

/* Element i (row-major) as double; fast for contiguous f32 / i64. */
static double at(const kiln_tensor *t, int64_t i)
{
    if (kiln_is_contiguous(t)) {
        if (t->dtype == KILN_DTYPE_F32) return ((const float *)t->data)[i];
        if (t->dtype == KILN_DTYPE_I64) return (double)((const int64_t *)t->data)[i];
    }
    return kiln_get_flat(t, i);
}

static int64_t batch_of(const kiln_tensor *t) { return t->ndim ? t->shape[0] : 1; }

/* out (B, C), y (B) class indices: the number of columns and a check. */
static kiln_status class_shape(const char *name, const kiln_tensor *out, const kiln_tensor *y, int64_t *c)
{
    int64_t b = batch_of(out);
    if (out->ndim < 2 || kiln_numel(y) != b || batch_of(y) != b)
        return kiln__err(KILN_STATUS_INVALID, "metric %s: needs out (B, C) and y (B), got %d-d out and %lld targets",
                         name, out->ndim, (long long)kiln_numel(y));
    *c = b ? kiln_numel(out) / b : 0;
    return KILN_STATUS_OK;
}

static int64_t argmax_row(const kiln_tensor *out, int64_t r, int64_t c)
{
    int64_t best = 0;
    double bv = at(out, r * c);
    for (int64_t j = 1; j < c; j++) {
        double v = at(out, r * c + j);
        if (v > bv || (isnan(v) && !isnan(bv))) best = j, bv = v; /* NaN wins, as torch.argmax */
    }
    return best;
}

static kiln_status acc_classes(const kiln_metric *m, kiln_metric_acc *acc, const kiln_tensor *out,
                               const kiln_tensor *y)
{
    int64_t c = 0, b = batch_of(out);
    if (class_shape(kiln_metric_name(m), out, y, &c)) return KILN_STATUS_INVALID;
    for (int64_t r = 0; r < b; r++) {
        int64_t t = (int64_t)at(y, r);
        bool hit;
        if (m->kind == KILN_METRIC_KIND_TOP_K) {
            if (t < 0 || t >= c) {
                hit = false;
            } else {
                double vt = at(out, r * c + t);
                int64_t rank = 0; /* outputs ranked before the target's */
                for (int64_t j = 0; j < c; j++) {
                    double v = at(out, r * c + j);
                    if (v > vt || (v == vt && j < t)) rank++;
                }
                hit = rank < m->k;
            }
        } else {
            hit = argmax_row(out, r, c) == t;
        }
        acc->sum[0] += hit;
    }
    acc->n += b;
    return KILN_STATUS_OK;
}

static kiln_status acc_regression(const kiln_metric *m, kiln_metric_acc *acc, const kiln_tensor *out,
                                  const kiln_tensor *y)
{
    int64_t n = kiln_numel(out);
    if (kiln_numel(y) != n)
        return kiln__err(KILN_STATUS_INVALID, "metric %s: out has %lld elements, y %lld", kiln_metric_name(m),
                         (long long)n, (long long)kiln_numel(y));
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = at(out, i) - at(y, i);
        s += m->kind == KILN_METRIC_KIND_RMSE ? d * d : fabs(d);
    }
    acc->sum[0] += s;
    acc->n += n;
    return KILN_STATUS_OK;
}

static kiln_status acc_f1(const kiln_metric *m, kiln_metric_acc *acc, const kiln_tensor *out, const kiln_tensor *y)
{
    int64_t b = batch_of(out), c = b ? kiln_numel(out) / b : 0;
    if (kiln_numel(y) != b || (c != 1 && c != 2))
        return kiln__err(KILN_STATUS_INVALID,
                         "metric %s: needs out (B, 2) or (B) / (B, 1) and y (B), got %lld outputs per item, %lld targets",
                         kiln_metric_name(m), (long long)c, (long long)kiln_numel(y));
    for (int64_t r = 0; r < b; r++) {
        bool pred = c == 2 ? argmax_row(out, r, 2) == 1 : at(out, r) > m->threshold;
        bool truth = y->dtype == KILN_DTYPE_F32 ? at(y, r) >= 0.5 : at(y, r) == 1;
        acc->sum[0] += pred && truth;
        acc->sum[1] += pred && !truth;
        acc->sum[2] += !pred && truth;
    }
    acc->n += b;
    return KILN_STATUS_OK;
}

kiln_status kiln_metric_accumulate(const kiln_metric *m, kiln_metric_acc *acc, const kiln_tensor *out,
                                   const kiln_tensor *y, double loss)
{
    if (!m || !acc || !out || !y) return kiln__err(KILN_STATUS_INVALID, "metric: NULL argument");
    switch (m->kind) {
    case KILN_METRIC_KIND_ACCURACY:
    case KILN_METRIC_KIND_ERROR_RATE:
        return acc_classes(m, acc, out, y);
    case KILN_METRIC_KIND_TOP_K:
        if (m->k < 1) return kiln__err(KILN_STATUS_INVALID, "metric %s: k %d < 1", kiln_metric_name(m), m->k);
        return acc_classes(m, acc, out, y);
    case KILN_METRIC_KIND_RMSE:
    case KILN_METRIC_KIND_MAE:
        return acc_regression(m, acc, out, y);
    case KILN_METRIC_KIND_F1:
        return acc_f1(m, acc, out, y);
    case KILN_METRIC_KIND_PERPLEXITY:
        acc->sum[0] += loss * (double)batch_of(out);
        acc->n += batch_of(out);
        return KILN_STATUS_OK;
    case KILN_METRIC_KIND_CUSTOM:
        if (!m->accumulate || !m->value)
            return kiln__err(KILN_STATUS_INVALID, "metric %s: custom metrics need accumulate and value",
                             kiln_metric_name(m));
        return m->accumulate(acc, out, y, loss, m->user);
    default:
        return kiln__err(KILN_STATUS_INVALID, "metric: unknown kind %d", (int)m->kind);
    }
}

double kiln_metric_value(const kiln_metric *m, const kiln_metric_acc *acc)
{
    if (!m || !acc) return NAN;
    if (m->kind == KILN_METRIC_KIND_CUSTOM) return m->value ? m->value(acc, m->user) : NAN;
    if (acc->n == 0) return NAN;
    double n = (double)acc->n, s = acc->sum[0];
    switch (m->kind) {
    case KILN_METRIC_KIND_ACCURACY:
    case KILN_METRIC_KIND_TOP_K:
        return s / n;
    case KILN_METRIC_KIND_ERROR_RATE:
        return 1.0 - s / n;
    case KILN_METRIC_KIND_RMSE:
        return sqrt(s / n);
    case KILN_METRIC_KIND_MAE:
        return s / n;
    case KILN_METRIC_KIND_F1: {
        double den = 2 * acc->sum[0] + acc->sum[1] + acc->sum[2];
        return den > 0 ? 2 * acc->sum[0] / den : 0.0; /* sklearn's zero_division=0 */
    }
    case KILN_METRIC_KIND_PERPLEXITY:
        return exp(s / n);
    default:
        return NAN;
    }
}

kiln_status kiln_metric_compute(const kiln_metric *m, const kiln_tensor *out, const kiln_tensor *y, double loss,
                                double *value)
{
    kiln_metric_acc acc;
    memset(&acc, 0, sizeof acc);
    kiln_status st = kiln_metric_accumulate(m, &acc, out, y, loss);
    if (st) return st;
    if (value) *value = kiln_metric_value(m, &acc);
    return KILN_STATUS_OK;
}
