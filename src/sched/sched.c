/* Schedules: constructors that validate parameters, and kiln_sched_at, the one function
 * that turns (schedule, iteration) into (lr, momentum). Each policy follows the reference
 * implementation named in include/kiln/sched.h operation for operation (same formula, same
 * order of floating-point operations where that matters), so the parity tests in
 * tests/test_sched.c can hold a 1e-6 relative tolerance over thousands of iterations. */
#include "core/internal.h"
#include "kiln/sched.h"

#include <math.h>
#include <string.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

static const char *const g_policy_names[KILN_SCHED_POLICY_COUNT] = {
    "const", "exp", "sgdr", "cos-restarts", "clr", "one-cycle", "stlr", "step",
};

const char *kiln_sched_policy_name(kiln_sched_policy p)
{
    return (unsigned)p < KILN_SCHED_POLICY_COUNT ? g_policy_names[p] : "unknown";
}

kiln_status kiln_sched_policy_parse(const char *name, kiln_sched_policy *out)
{
    for (int i = 0; name && i < KILN_SCHED_POLICY_COUNT; i++) {
        if (!strcmp(name, g_policy_names[i])) {
            *out = (kiln_sched_policy)i;
            return KILN_STATUS_OK;
        }
    }
    return kiln__err(KILN_STATUS_INVALID,
                     "schedule: unknown policy '%s' (const, exp, sgdr, cos-restarts, clr, one-cycle, "
                     "stlr, step)", name ? name : "(null)");
}

/* ---- validation helpers ------------------------------------------------------------- */

static kiln_status bad(const char *pol, const char *field, double v, const char *why)
{
    return kiln__err(KILN_STATUS_INVALID, "%s: %s %g %s", pol, field, v, why);
}

/* v finite and > 0 */
#define NEED_POS(pol, f, v)                                                                  \
    do { if (!(isfinite(v) && (v) > 0)) return bad(pol, f, (double)(v), "must be > 0"); } while (0)
/* v finite and >= 0 */
#define NEED_NONNEG(pol, f, v)                                                               \
    do { if (!(isfinite(v) && (v) >= 0)) return bad(pol, f, (double)(v), "must be >= 0"); } while (0)
/* v finite in [lo, hi] */
#define NEED_RANGE(pol, f, v, lo, hi, txt)                                                   \
    do { if (!(isfinite(v) && (v) >= (lo) && (v) <= (hi))) return bad(pol, f, (double)(v), "outside " txt); } while (0)
#define NEED_ITERS(pol, f, v)                                                                \
    do { if ((v) < 1) return kiln__err(KILN_STATUS_INVALID, "%s: %s %lld must be >= 1", pol, f, (long long)(v)); } while (0)
#define NEED_MOM(pol, f, v) NEED_RANGE(pol, f, v, 0.0, 1.0, "[0, 1]")

static void init(kiln_sched *s, kiln_sched_policy policy, int64_t total)
{
    memset(s, 0, sizeof *s);
    s->policy = policy;
    s->total = total;
}

/* ---- defaults and constructors ------------------------------------------------------ */

kiln_sched_const_params kiln_sched_const_default_params(void)
{
    return (kiln_sched_const_params){.lr = 1e-3, .mom = 0.9, .iters = 100};
}

kiln_status kiln_sched_const(kiln_sched *s, const kiln_sched_const_params *p)
{
    NEED_NONNEG("const", "lr", p->lr);
    NEED_MOM("const", "mom", p->mom);
    NEED_ITERS("const", "iters", p->iters);
    init(s, KILN_SCHED_POLICY_CONST, p->iters);
    s->p.cnst = *p;
    return KILN_STATUS_OK;
}

kiln_sched_exp_params kiln_sched_exp_default_params(void)
{
    return (kiln_sched_exp_params){.start_lr = 1e-7, .end_lr = 10, .iters = 100, .linear = false, .mom = 0.9};
}

kiln_status kiln_sched_exp(kiln_sched *s, const kiln_sched_exp_params *p)
{
    if (p->linear) {
        NEED_NONNEG("exp", "start_lr", p->start_lr);
        NEED_NONNEG("exp", "end_lr", p->end_lr);
    } else {
        NEED_POS("exp", "start_lr", p->start_lr);
        NEED_POS("exp", "end_lr", p->end_lr);
    }
    NEED_ITERS("exp", "iters", p->iters);
    NEED_MOM("exp", "mom", p->mom);
    init(s, KILN_SCHED_POLICY_EXP, p->iters);
    s->p.exp = *p;
    return KILN_STATUS_OK;
}

int64_t kiln_sgdr_epochs(int cycle_len, int cycle_mult, int n_cycle)
{
    if (cycle_len < 1 || cycle_mult < 1 || n_cycle < 1) {
        kiln__err(KILN_STATUS_INVALID, "sgdr: cycle_len %d, cycle_mult %d, n_cycle %d must all be >= 1",
                  cycle_len, cycle_mult, n_cycle);
        return -1;
    }
    /* sum of cycle_len*mult^k for k < n in integers (0.7's ceil of the float formula is the
     * same number for integer arguments) */
    const int64_t lim = INT64_MAX / 4;
    if (cycle_mult == 1) {
        if ((int64_t)cycle_len * n_cycle > lim)
            goto overflow;
        return (int64_t)cycle_len * n_cycle;
    }
    int64_t total = 0, len = cycle_len;
    for (int k = 0; k < n_cycle; k++) {
        if (len > lim - total || len > lim / cycle_mult)
            goto overflow;
        total += len;
        len *= cycle_mult;
    }
    return total;
overflow:
    kiln__err(KILN_STATUS_INVALID, "sgdr: %d cycles of %d epochs x%d overflow", n_cycle, cycle_len, cycle_mult);
    return -1;
}

kiln_sched_sgdr_params kiln_sched_sgdr_default_params(void)
{
    return (kiln_sched_sgdr_params){.lr = 1e-3, .iters_per_epoch = 100, .n_cycle = 3, .cycle_len = 1,
                                    .cycle_mult = 2, .warmup07 = false, .mom = 0.9};
}

kiln_status kiln_sched_sgdr(kiln_sched *s, const kiln_sched_sgdr_params *p)
{
    NEED_NONNEG("sgdr", "lr", p->lr);
    NEED_ITERS("sgdr", "iters_per_epoch", p->iters_per_epoch);
    NEED_ITERS("sgdr", "n_cycle", p->n_cycle);
    NEED_ITERS("sgdr", "cycle_len", p->cycle_len);
    NEED_ITERS("sgdr", "cycle_mult", p->cycle_mult);
    NEED_MOM("sgdr", "mom", p->mom);
    int64_t epochs = kiln_sgdr_epochs(p->cycle_len, p->cycle_mult, p->n_cycle);
    if (epochs < 0)
        return KILN_STATUS_INVALID;
    if (epochs > INT64_MAX / 4 / p->iters_per_epoch)
        return kiln__err(KILN_STATUS_INVALID, "sgdr: %lld epochs of %lld iterations overflow",
                         (long long)epochs, (long long)p->iters_per_epoch);
    init(s, KILN_SCHED_POLICY_SGDR, epochs * p->iters_per_epoch);
    s->p.sgdr = *p;
    return KILN_STATUS_OK;
}

kiln_sched_cos_restarts_params kiln_sched_cos_restarts_default_params(void)
{
    return (kiln_sched_cos_restarts_params){.lr = 1e-3, .t0 = 1, .t_mult = 2, .eta_min = 0,
                                            .iters_per_epoch = 100, .epochs = 7, .per_epoch = false,
                                            .mom = 0.9};
}

kiln_status kiln_sched_cos_restarts(kiln_sched *s, const kiln_sched_cos_restarts_params *p)
{
    const char *pol = "cos-restarts";
    NEED_NONNEG(pol, "lr", p->lr);
    NEED_ITERS(pol, "T_0", p->t0);
    NEED_ITERS(pol, "T_mult", p->t_mult);
    NEED_NONNEG(pol, "eta_min", p->eta_min);
    NEED_ITERS(pol, "iters_per_epoch", p->iters_per_epoch);
    NEED_ITERS(pol, "epochs", p->epochs);
    NEED_MOM(pol, "mom", p->mom);
    if (p->epochs > INT64_MAX / 4 / p->iters_per_epoch || p->t0 > (1LL << 40) || p->t_mult > (1LL << 20))
        return kiln__err(KILN_STATUS_INVALID, "cos-restarts: epochs %lld, T_0 %lld or T_mult %lld too large",
                         (long long)p->epochs, (long long)p->t0, (long long)p->t_mult);
    init(s, KILN_SCHED_POLICY_COS_RESTARTS, p->epochs * p->iters_per_epoch);
    s->p.cos_restarts = *p;
    return KILN_STATUS_OK;
}

kiln_sched_clr_params kiln_sched_clr_default_params(void)
{
    return (kiln_sched_clr_params){.base_lr = 1e-3, .max_lr = 6e-3, .step_size_up = 2000, .step_size_down = 0,
                                   .mode = KILN_CLR_MODE_TRIANGULAR, .gamma = 1.0, .cycle_momentum = true,
                                   .base_momentum = 0.8, .max_momentum = 0.9, .iters = 0};
}

kiln_status kiln_sched_clr(kiln_sched *s, const kiln_sched_clr_params *p)
{
    NEED_NONNEG("clr", "base_lr", p->base_lr);
    NEED_NONNEG("clr", "max_lr", p->max_lr);
    NEED_POS("clr", "step_size_up", p->step_size_up);
    NEED_NONNEG("clr", "step_size_down", p->step_size_down);
    if ((unsigned)p->mode > KILN_CLR_MODE_EXP_RANGE)
        return kiln__err(KILN_STATUS_INVALID, "clr: unknown mode %d", (int)p->mode);
    NEED_POS("clr", "gamma", p->gamma);
    NEED_MOM("clr", "base_momentum", p->base_momentum);
    NEED_MOM("clr", "max_momentum", p->max_momentum);
    if (p->iters < 0)
        return kiln__err(KILN_STATUS_INVALID, "clr: iters %lld must be >= 0 (0 = one cycle)", (long long)p->iters);
    double down = p->step_size_down > 0 ? p->step_size_down : p->step_size_up;
    double cycle = ceil(p->step_size_up + down);
    if (!(cycle < 1e15))
        return bad("clr", "step_size_up + step_size_down", cycle, "too large");
    init(s, KILN_SCHED_POLICY_CLR, p->iters > 0 ? p->iters : (int64_t)cycle);
    s->p.clr = *p;
    s->p.clr.step_size_down = down;
    return KILN_STATUS_OK;
}

kiln_sched_one_cycle_params kiln_sched_one_cycle_default_params(kiln_one_cycle_variant v)
{
    kiln_sched_one_cycle_params p = {.variant = v, .lr_max = 1e-3, .iters = 100, .pct_start = 0.25,
                                     .div = 25, .final_div = 1e5, .moms = {0.95, 0.85, 0.95},
                                     .cycle_momentum = true, .three_phase = false, .linear = false};
    if (v == KILN_ONE_CYCLE_VARIANT_FASTAI1) {
        p.pct_start = 0.3;
        p.final_div = 0; /* div*1e4, resolved by the constructor */
    } else if (v == KILN_ONE_CYCLE_VARIANT_TORCH) {
        p.pct_start = 0.3;
        p.final_div = 1e4;
    }
    return p;
}

kiln_status kiln_sched_one_cycle(kiln_sched *s, const kiln_sched_one_cycle_params *p)
{
    const char *pol = "one-cycle";
    if ((unsigned)p->variant > KILN_ONE_CYCLE_VARIANT_TORCH)
        return kiln__err(KILN_STATUS_INVALID, "one-cycle: unknown variant %d", (int)p->variant);
    NEED_NONNEG(pol, "lr_max", p->lr_max);
    NEED_ITERS(pol, "iters", p->iters);
    NEED_RANGE(pol, "pct_start", p->pct_start, 0.0, 1.0, "[0, 1]");
    NEED_POS(pol, "div", p->div);
    if (p->variant == KILN_ONE_CYCLE_VARIANT_FASTAI1)
        NEED_NONNEG(pol, "final_div", p->final_div);
    else
        NEED_POS(pol, "final_div", p->final_div);
    NEED_MOM(pol, "moms[0]", p->moms[0]);
    NEED_MOM(pol, "moms[1]", p->moms[1]);
    NEED_MOM(pol, "moms[2]", p->moms[2]);
    if (p->variant != KILN_ONE_CYCLE_VARIANT_TORCH && (p->three_phase || p->linear))
        return kiln__err(KILN_STATUS_INVALID, "one-cycle: %s is a PyTorch option (variant torch)",
                         p->three_phase ? "three_phase" : "linear annealing");
    init(s, KILN_SCHED_POLICY_ONE_CYCLE, p->iters);
    s->p.one_cycle = *p;
    if (p->variant == KILN_ONE_CYCLE_VARIANT_FASTAI1 && p->final_div == 0)
        s->p.one_cycle.final_div = p->div * 1e4;
    return KILN_STATUS_OK;
}

kiln_sched_stlr_params kiln_sched_stlr_default_params(void)
{
    return (kiln_sched_stlr_params){.lr_max = 0.01, .iters = 1000, .cut_frac = 0.1, .ratio = 32, .mom = 0.9};
}

kiln_status kiln_sched_stlr(kiln_sched *s, const kiln_sched_stlr_params *p)
{
    NEED_NONNEG("stlr", "lr_max", p->lr_max);
    NEED_ITERS("stlr", "iters", p->iters);
    if (!(isfinite(p->cut_frac) && p->cut_frac > 0 && p->cut_frac < 1))
        return bad("stlr", "cut_frac", p->cut_frac, "outside (0, 1)");
    if (!(isfinite(p->ratio) && p->ratio >= 1))
        return bad("stlr", "ratio", p->ratio, "must be >= 1");
    NEED_MOM("stlr", "mom", p->mom);
    if (floor((double)p->iters * p->cut_frac) < 1)
        return kiln__err(KILN_STATUS_INVALID, "stlr: cut = floor(iters %lld * cut_frac %g) is 0; need at least "
                         "1 iteration of warm-up", (long long)p->iters, p->cut_frac);
    init(s, KILN_SCHED_POLICY_STLR, p->iters);
    s->p.stlr = *p;
    return KILN_STATUS_OK;
}

kiln_sched_step_params kiln_sched_step_default_params(void)
{
    return (kiln_sched_step_params){.lr = 0.1, .gamma = 0.1, .step = 30, .iters = 100, .mom = 0.9};
}

kiln_status kiln_sched_step(kiln_sched *s, const kiln_sched_step_params *p)
{
    NEED_NONNEG("step", "lr", p->lr);
    NEED_POS("step", "gamma", p->gamma);
    NEED_ITERS("step", "step", p->step);
    NEED_ITERS("step", "iters", p->iters);
    NEED_MOM("step", "mom", p->mom);
    init(s, KILN_SCHED_POLICY_STEP, p->iters);
    s->p.step = *p;
    return KILN_STATUS_OK;
}

kiln_status kiln_sched_warmup(kiln_sched *s, int64_t iters, double start)
{
    if (iters < 0)
        return kiln__err(KILN_STATUS_INVALID, "warmup: iters %lld must be >= 0", (long long)iters);
    NEED_RANGE("warmup", "start", start, 0.0, 1.0, "[0, 1]");
    s->warmup_iters = iters;
    s->warmup_start = start;
    return KILN_STATUS_OK;
}

/* ---- evaluation ---------------------------------------------------------------------- */

/* PyTorch OneCycleLR / fastai v1 annealing_cos: start -> end as pct goes 0 -> 1. */
static double annealing_cos(double start, double end, double pct)
{
    double cos_out = cos(M_PI * pct) + 1;
    return end + (start - end) / 2.0 * cos_out;
}

/* fastai v2 sched_cos. */
static double sched_cos(double start, double end, double pos)
{
    return start + (1 + cos(M_PI * (1 - pos))) * (end - start) / 2;
}

/* SGDR cycle of iteration iter: sets start iteration and length nb. */
static int64_t sgdr_locate(const kiln_sched_sgdr_params *p, int64_t iter, int64_t *start, int64_t *nb)
{
    int64_t n = p->iters_per_epoch * p->cycle_len, s = 0, k = 0;
    if (p->cycle_mult == 1) {
        k = iter / n;
        s = k * n;
    } else {
        while (iter - s >= n && n <= INT64_MAX / p->cycle_mult) {
            s += n;
            n *= p->cycle_mult;
            k++;
        }
    }
    *start = s;
    *nb = n;
    return k;
}

static double sgdr_lr(const kiln_sched_sgdr_params *p, int64_t iter)
{
    int64_t start, nb;
    sgdr_locate(p, iter, &start, &nb);
    /* 0.7 compares the global iteration with the current cycle's nb/20, so for realistic
     * cycle_mult (< 21) only the start of the first cycle is warm-up. */
    if (p->warmup07 && (double)iter < (double)nb / 20)
        return p->lr / 100.;
    double cos_out = cos(M_PI * (double)(iter - start) / (double)nb) + 1;
    return p->lr / 2 * cos_out;
}

/* Cycle n of a (possibly fractional) epoch; sets T_cur and T_i. Integer boundaries are
 * found by accumulation rather than PyTorch's log(), which agrees for T_mult 2 but can land
 * one cycle short at exact boundaries for other T_mult (log(243)/log(3) < 5). */
static int64_t restarts_locate(const kiln_sched_cos_restarts_params *p, double epoch, double *t_cur, double *t_i)
{
    double t0 = (double)p->t0;
    if (p->t_mult == 1) {
        *t_i = t0;
        *t_cur = epoch >= t0 ? fmod(epoch, t0) : epoch;
        return (int64_t)floor(epoch / t0);
    }
    double s = 0, ti = t0;
    int64_t n = 0;
    while (epoch >= s + ti) {
        s += ti;
        ti *= (double)p->t_mult;
        n++;
    }
    *t_cur = epoch - s;
    *t_i = ti;
    return n;
}

static double restarts_epoch(const kiln_sched_cos_restarts_params *p, int64_t iter)
{
    return p->per_epoch ? (double)(iter / p->iters_per_epoch) : (double)iter / (double)p->iters_per_epoch;
}

static void clr_at(const kiln_sched_clr_params *p, int64_t iter, double *lr, double *mom)
{
    double total_size = p->step_size_up + p->step_size_down;
    double step_ratio = p->step_size_up / total_size;
    double it = (double)iter;
    double cycle = floor(1 + it / total_size);
    double x = 1. + it / total_size - cycle;
    double scale_factor = x <= step_ratio ? x / step_ratio : (x - 1) / (step_ratio - 1);
    double scale;
    switch (p->mode) {
    case KILN_CLR_MODE_TRIANGULAR2: scale = 1 / pow(2., cycle - 1); break;
    case KILN_CLR_MODE_EXP_RANGE: scale = pow(p->gamma, it); break;
    default: scale = 1.; break;
    }
    *lr = p->base_lr + (p->max_lr - p->base_lr) * scale_factor * scale;
    if (p->cycle_momentum)
        *mom = p->max_momentum - (p->max_momentum - p->base_momentum) * scale_factor * scale;
    else
        *mom = p->max_momentum;
}

static void one_cycle_at(const kiln_sched_one_cycle_params *p, int64_t total, int64_t iter, double *lr,
                         double *mom)
{
    const double *m = p->moms;
    double lo = p->lr_max / p->div, hi = p->lr_max;
    if (iter > total - 1)
        iter = total - 1;
    if (p->variant == KILN_ONE_CYCLE_VARIANT_FASTAI) {
        /* combine_scheds([pct, 1-pct], [SchedCos(lo, hi), SchedCos(hi, end)])(iter/total) */
        double pos = (double)iter / (double)total, end = p->lr_max / p->final_div;
        if (!(pos >= p->pct_start)) {
            double q = pos / p->pct_start;
            *lr = sched_cos(lo, hi, q);
            *mom = sched_cos(m[0], m[1], q);
        } else {
            double q = (pos - p->pct_start) / (1 - p->pct_start);
            *lr = sched_cos(hi, end, q);
            *mom = sched_cos(m[1], m[2], q);
        }
    } else if (p->variant == KILN_ONE_CYCLE_VARIANT_FASTAI1) {
        /* OneCycleScheduler: batch 0 at the start values, then each Scheduler.step() moves
         * n/n_iter; phase 1 has max(1, a1) steps, phase 2 max(1, n - a1). */
        int64_t a1 = (int64_t)((double)total * p->pct_start), a2 = total - a1;
        int64_t n1 = a1 > 1 ? a1 : 1, n2 = a2 > 1 ? a2 : 1;
        double end = p->lr_max / p->final_div;
        if (iter <= n1) {
            double q = (double)iter / (double)n1;
            *lr = annealing_cos(lo, hi, q);
            *mom = annealing_cos(m[0], m[1], q);
        } else {
            double q = (double)(iter - n1) / (double)n2;
            *lr = annealing_cos(hi, end, q);
            *mom = annealing_cos(m[1], m[2], q);
        }
    } else {
        /* OneCycleLR.get_lr with last_epoch = iter */
        double min_lr = lo / p->final_div, n = (double)total;
        double ends[3], lrs[3][2], ms[3][2];
        int nph;
        if (p->three_phase) {
            nph = 3;
            ends[0] = p->pct_start * n - 1;
            ends[1] = 2 * p->pct_start * n - 2;
            ends[2] = n - 1;
            double l[3][2] = {{lo, hi}, {hi, lo}, {lo, min_lr}}, mm[3][2] = {{m[0], m[1]}, {m[1], m[2]}, {m[2], m[2]}};
            memcpy(lrs, l, sizeof l);
            memcpy(ms, mm, sizeof mm);
        } else {
            nph = 2;
            ends[0] = p->pct_start * n - 1;
            ends[1] = n - 1;
            double l[2][2] = {{lo, hi}, {hi, min_lr}}, mm[2][2] = {{m[0], m[1]}, {m[1], m[2]}};
            memcpy(lrs, l, sizeof l);
            memcpy(ms, mm, sizeof mm);
        }
        double step = (double)iter, start = 0;
        for (int i = 0; i < nph; i++) {
            if (step <= ends[i] || i == nph - 1) {
                /* PyTorch divides by zero when a phase has no length (pct_start*n == 1):
                 * the phase is then over, so take its end value */
                double q = ends[i] != start ? (step - start) / (ends[i] - start) : 1.0;
                if (p->linear) {
                    *lr = (lrs[i][1] - lrs[i][0]) * q + lrs[i][0];
                    *mom = (ms[i][1] - ms[i][0]) * q + ms[i][0];
                } else {
                    *lr = annealing_cos(lrs[i][0], lrs[i][1], q);
                    *mom = annealing_cos(ms[i][0], ms[i][1], q);
                }
                break;
            }
            start = ends[i];
        }
    }
    if (!p->cycle_momentum)
        *mom = m[0];
}

static double stlr_lr(const kiln_sched_stlr_params *p, int64_t t)
{
    int64_t T = p->iters;
    if (t > T)
        t = T;
    double cut = floor((double)T * p->cut_frac);
    double q = (double)t < cut ? (double)t / cut : 1 - ((double)t - cut) / (cut * (1 / p->cut_frac - 1));
    return p->lr_max * (1 + q * (p->ratio - 1)) / p->ratio;
}

kiln_status kiln_sched_at(const kiln_sched *s, int64_t iter, double *lr, double *mom)
{
    if (!s || s->total < 1 || (unsigned)s->policy >= KILN_SCHED_POLICY_COUNT)
        return kiln__err(KILN_STATUS_INVALID, "sched_at: schedule not initialised");
    if (iter < 0)
        return kiln__err(KILN_STATUS_INVALID, "sched_at: %s: iteration %lld < 0", kiln_sched_policy_name(s->policy),
                         (long long)iter);
    double l = 0, m = 0;
    switch (s->policy) {
    case KILN_SCHED_POLICY_CONST:
        l = s->p.cnst.lr;
        m = s->p.cnst.mom;
        break;
    case KILN_SCHED_POLICY_EXP: {
        const kiln_sched_exp_params *p = &s->p.exp;
        int64_t i = iter < p->iters ? iter : p->iters - 1;
        double pos = (double)i / (double)p->iters;
        l = p->linear ? p->start_lr + pos * (p->end_lr - p->start_lr) : p->start_lr * pow(p->end_lr / p->start_lr, pos);
        m = p->mom;
        break;
    }
    case KILN_SCHED_POLICY_SGDR:
        l = sgdr_lr(&s->p.sgdr, iter);
        m = s->p.sgdr.mom;
        break;
    case KILN_SCHED_POLICY_COS_RESTARTS: {
        const kiln_sched_cos_restarts_params *p = &s->p.cos_restarts;
        double t_cur, t_i;
        restarts_locate(p, restarts_epoch(p, iter), &t_cur, &t_i);
        l = p->eta_min + (p->lr - p->eta_min) * (1 + cos(M_PI * t_cur / t_i)) / 2;
        m = p->mom;
        break;
    }
    case KILN_SCHED_POLICY_CLR: clr_at(&s->p.clr, iter, &l, &m); break;
    case KILN_SCHED_POLICY_ONE_CYCLE: one_cycle_at(&s->p.one_cycle, s->total, iter, &l, &m); break;
    case KILN_SCHED_POLICY_STLR:
        l = stlr_lr(&s->p.stlr, iter);
        m = s->p.stlr.mom;
        break;
    case KILN_SCHED_POLICY_STEP:
        l = s->p.step.lr * pow(s->p.step.gamma, (double)(iter / s->p.step.step));
        m = s->p.step.mom;
        break;
    default: break;
    }
    if (iter < s->warmup_iters)
        l *= s->warmup_start + (1 - s->warmup_start) * (double)iter / (double)s->warmup_iters;
    if (lr)
        *lr = l;
    if (mom)
        *mom = m;
    return KILN_STATUS_OK;
}

int64_t kiln_sched_total(const kiln_sched *s) { return s ? s->total : 0; }

int64_t kiln_sched_cycle(const kiln_sched *s, int64_t iter)
{
    if (!s || iter < 0)
        return 0;
    switch (s->policy) {
    case KILN_SCHED_POLICY_SGDR: {
        int64_t start, nb;
        return sgdr_locate(&s->p.sgdr, iter, &start, &nb);
    }
    case KILN_SCHED_POLICY_COS_RESTARTS: {
        double t_cur, t_i;
        return restarts_locate(&s->p.cos_restarts, restarts_epoch(&s->p.cos_restarts, iter), &t_cur, &t_i);
    }
    case KILN_SCHED_POLICY_CLR: {
        const kiln_sched_clr_params *p = &s->p.clr;
        return (int64_t)floor((double)iter / (p->step_size_up + p->step_size_down));
    }
    default: return 0;
    }
}

bool kiln_sched_cycle_end(const kiln_sched *s, int64_t iter)
{
    if (!s || iter < 0)
        return false;
    return iter == s->total - 1 || kiln_sched_cycle(s, iter + 1) != kiln_sched_cycle(s, iter);
}
