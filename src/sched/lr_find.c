/* Discriminative learning rates (fastai slice / even_mults) and the LR range test helpers:
 * debiased loss smoothing, the divergence test and the suggestion functions of fastai's
 * callback/schedule.py (valley, minimum, steep, slide), all pure functions over arrays so
 * the Learner, the CLI and the tests share them. */
#include "core/internal.h"
#include "kiln/sched.h"

#include <math.h>
#include <string.h>

kiln_status kiln_lr_spread(double lo, double hi, int n_groups, double *out)
{
    if (n_groups < 1)
        return kiln__err(KILN_STATUS_INVALID, "lr_spread: n_groups %d must be >= 1", n_groups);
    if (!(isfinite(hi) && hi > 0))
        return kiln__err(KILN_STATUS_INVALID, "lr_spread: hi %g must be > 0", hi);
    if (!(isfinite(lo) && lo >= 0))
        return kiln__err(KILN_STATUS_INVALID, "lr_spread: lo %g must be > 0 (or 0 for slice(hi))", lo);
    if (lo == 0) {
        for (int i = 0; i < n_groups - 1; i++)
            out[i] = hi / 10;
        out[n_groups - 1] = hi;
        return KILN_STATUS_OK;
    }
    if (n_groups == 1) {
        out[0] = hi;
        return KILN_STATUS_OK;
    }
    /* even_mults: step = (stop/start)^(1/(n-1)); start*step^i */
    double step = pow(hi / lo, 1.0 / (n_groups - 1));
    for (int i = 0; i < n_groups; i++)
        out[i] = lo * pow(step, i);
    return KILN_STATUS_OK;
}

kiln_status kiln_lr_spread_factor(double hi, double factor, int n_groups, double *out)
{
    if (n_groups < 1)
        return kiln__err(KILN_STATUS_INVALID, "lr_spread: n_groups %d must be >= 1", n_groups);
    if (!(isfinite(hi) && hi > 0))
        return kiln__err(KILN_STATUS_INVALID, "lr_spread: hi %g must be > 0", hi);
    if (!(isfinite(factor) && factor > 0))
        return kiln__err(KILN_STATUS_INVALID, "lr_spread: factor %g must be > 0", factor);
    for (int i = 0; i < n_groups; i++)
        out[i] = hi / pow(factor, n_groups - 1 - i);
    return KILN_STATUS_OK;
}

kiln_ema kiln_ema_init(double beta) { return (kiln_ema){.beta = beta, .avg = 0, .n = 0}; }

double kiln_ema_add(kiln_ema *e, double x)
{
    e->n++;
    e->avg = e->beta * e->avg + (1 - e->beta) * x;
    return e->avg / (1 - pow(e->beta, (double)e->n));
}

kiln_status kiln_ema_smooth(const double *x, int64_t n, double beta, double *out)
{
    if (n < 0 || (n > 0 && (!x || !out)))
        return kiln__err(KILN_STATUS_INVALID, "ema_smooth: bad arrays (n %lld)", (long long)n);
    if (!(isfinite(beta) && beta >= 0 && beta < 1))
        return kiln__err(KILN_STATUS_INVALID, "ema_smooth: beta %g outside [0, 1)", beta);
    kiln_ema e = kiln_ema_init(beta);
    for (int64_t i = 0; i < n; i++)
        out[i] = kiln_ema_add(&e, x[i]);
    return KILN_STATUS_OK;
}

bool kiln_lr_find_diverged(double smooth_loss, double best_loss)
{
    return !isfinite(smooth_loss) || smooth_loss > 4 * best_loss; /* an infinite first loss too */
}

static const char *const g_suggest_names[KILN_LR_SUGGEST_COUNT] = {"valley", "minimum", "steep", "slide"};

const char *kiln_lr_suggest_name(kiln_lr_suggest how)
{
    return (unsigned)how < KILN_LR_SUGGEST_COUNT ? g_suggest_names[how] : "unknown";
}

/* fastai valley: longest decreasing subsequence; note max_start is set when lds[i] first
 * overtakes the best and not updated while lds[i] keeps growing in the same row (kept, as
 * it changes the answer). */
static int64_t valley(const double *loss, int64_t n)
{
    int64_t *lds = kiln__malloc((size_t)n * sizeof *lds);
    if (!lds)
        return -1;
    int64_t max_start = 0, max_end = 0;
    for (int64_t i = 0; i < n; i++)
        lds[i] = 1;
    for (int64_t i = 1; i < n; i++) {
        for (int64_t j = 0; j < i; j++) {
            if (loss[i] < loss[j] && lds[i] < lds[j] + 1)
                lds[i] = lds[j] + 1;
            if (lds[max_end] < lds[i]) {
                max_end = i;
                max_start = max_end - lds[max_end];
            }
        }
    }
    kiln__free(lds, (size_t)n * sizeof *lds);
    double sections = (double)(max_end - max_start) / 3;
    return max_start + (int64_t)sections + (int64_t)(sections / 2);
}

static int64_t argmin(const double *v, int64_t n)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] < v[best])
            best = i;
    return best;
}

/* np.gradient with unit spacing: central differences inside, one-sided at the ends. */
static double gradient_at(const double *v, int64_t n, int64_t i)
{
    if (i == 0)
        return v[1] - v[0];
    if (i == n - 1)
        return v[n - 1] - v[n - 2];
    return (v[i + 1] - v[i - 1]) / 2;
}

kiln_status kiln_lr_suggest_lr(kiln_lr_suggest how, const double *lrs, const double *losses, int64_t n,
                               int64_t num_it, double *lr, int64_t *idx)
{
    if ((unsigned)how >= KILN_LR_SUGGEST_COUNT)
        return kiln__err(KILN_STATUS_INVALID, "lr_suggest: unknown method %d", (int)how);
    if (n < 0 || num_it < 0 || (n > 0 && (!lrs || !losses)) || !lr)
        return kiln__err(KILN_STATUS_INVALID, "lr_suggest: bad arguments (n %lld, num_it %lld)", (long long)n,
                         (long long)num_it);
    /* lrs[num_it//10 : -5], then cut at the first NaN (fastai) or infinite loss: what
     * follows a divergence says nothing about the lr */
    int64_t lo = num_it / 10, hi = n - 5;
    for (int64_t i = 0; i < hi; i++) {
        if (!isfinite(losses[i])) {
            hi = i;
            break;
        }
    }
    int64_t m = hi - lo;
    if (m < 2)
        return kiln__err(KILN_STATUS_INVALID,
                         "lr_suggest: %s: %lld points left of %lld after dropping the first num_it/10 = %lld, the "
                         "last 5 and any from the first NaN or infinity", kiln_lr_suggest_name(how), (long long)(m > 0 ? m : 0),
                         (long long)n, (long long)lo);
    const double *L = losses + lo, *R = lrs + lo;
    for (int64_t i = 0; i < m; i++)
        if (!(R[i] > 0) || !isfinite(R[i]))
            return kiln__err(KILN_STATUS_INVALID, "lr_suggest: lr[%lld] = %g must be > 0", (long long)(lo + i), R[i]);
    int64_t k = 0;
    double out;
    switch (how) {
    case KILN_LR_SUGGEST_VALLEY:
        k = valley(L, m);
        if (k < 0)
            return kiln__err(KILN_STATUS_NOMEM, "lr_suggest: out of memory for %lld points", (long long)m);
        out = R[k];
        break;
    case KILN_LR_SUGGEST_MINIMUM:
        k = argmin(L, m);
        out = R[k] / 10;
        break;
    case KILN_LR_SUGGEST_STEEP: {
        /* argmin of (l[i+1]-l[i]) / (log lr[i+1] - log lr[i]) */
        /* torch.argmin: first minimum, or the first NaN (equal lrs give 0/0) */
        double best = 0;
        k = 0;
        for (int64_t i = 0; i + 1 < m; i++) {
            double g = (L[i + 1] - L[i]) / (log(R[i + 1]) - log(R[i]));
            if (isnan(g)) {
                k = i;
                break;
            }
            if (i == 0 || g < best) {
                best = g;
                k = i;
            }
        }
        out = R[k];
        break;
    }
    case KILN_LR_SUGGEST_SLIDE: {
        /* slide(lr_diff=15, thresh=.005, adjust_value=1.) with negative indices from the end */
        const int64_t lr_diff = 15;
        const double thresh = 0.005;
        if (m < lr_diff + 1)
            return kiln__err(KILN_STATUS_INVALID, "lr_suggest: slide needs at least %lld points, got %lld",
                             (long long)(lr_diff + 1), (long long)m);
        int64_t r = m - 1, l = r - lr_diff;
        k = l;
        while (l >= 0 && fabs(gradient_at(L, m, r) - gradient_at(L, m, l)) > thresh) {
            k = l;
            r--;
            l--;
        }
        out = R[k];
        break;
    }
    default: out = NAN; break;
    }
    *lr = out;
    if (idx)
        *idx = lo + k;
    return KILN_STATUS_OK;
}
