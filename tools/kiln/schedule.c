/* kiln schedule POLICY [flags]: prints "iter lr mom" for every iteration of a learning-rate
 * schedule (the same kiln_sched_at the Learner trains with) and, with --plot, draws lr and
 * momentum against the iteration as a PNG. The flags live in one table that also prints
 * `kiln schedule --help` and says which policies read each flag (parsed by flags.c). */
#include "flags.h"
#include "kiln.h"
#include "kiln/report.h"
#include "kiln/sched.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct opts {
    double lr, start_lr, end_lr, eta_min, pct_start, div, final_div, moms[3], base_lr, step_up, step_down;
    double gamma, cut_frac, ratio, mom, warmup_start;
    int64_t iters, ipe, epochs, n_cycle, cycle_len, cycle_mult, warmup, step;
    bool three_phase, per_epoch, linear, no_cycle_mom, help;
    int n_moms;
    const char *mode, *variant, *anneal, *plot;
} opts_t;

#define P(x) (1u << KILN_SCHED_POLICY_##x)
#define ALL ((1u << KILN_SCHED_POLICY_COUNT) - 1u)
#define EPOCHY (P(CONST) | P(CLR) | P(ONE_CYCLE) | P(STLR) | P(STEP))

#define O(f) offsetof(opts_t, f)
static bool parse_moms(const char *s, void *opts);
#define K_MOMS FLAG_CUSTOM, 0
#define MOMS_BAD parse_moms, "2 or 3 comma-separated numbers"
static const cli_flag g_flags[] = {
    {"--lr", "LR", FLAG_DOUBLE, O(lr), ALL & ~P(EXP), "peak lr (1e-3; step 0.1, stlr 0.01; clr: max_lr 6e-3)", NULL, NULL},
    {"--start-lr", "LR", FLAG_DOUBLE, O(start_lr), P(EXP), "first lr of the range test (1e-7)", NULL, NULL},
    {"--end-lr", "LR", FLAG_DOUBLE, O(end_lr), P(EXP), "lr the range test ends at (10)", NULL, NULL},
    {"--linear", NULL, FLAG_BOOL, O(linear), P(EXP), "linear instead of exponential range", NULL, NULL},
    {"--iters", "N", FLAG_INT, O(iters), EPOCHY | P(EXP), "total iterations (default epochs*iters-per-epoch; exp 100)", NULL, NULL},
    {"--iters-per-epoch", "N", FLAG_INT, O(ipe), ALL & ~P(EXP), "batches per epoch (100)", NULL, NULL},
    {"--epochs", "N", FLAG_INT, O(epochs), EPOCHY | P(COS_RESTARTS), "epochs (1; cos-restarts: n-cycle cycles)", NULL, NULL},
    {"--n-cycle", "N", FLAG_INT, O(n_cycle), P(SGDR) | P(COS_RESTARTS) | P(CLR), "number of cycles (3; clr 1)", NULL, NULL},
    {"--cycle-len", "N", FLAG_INT, O(cycle_len), P(SGDR) | P(COS_RESTARTS), "epochs in the first cycle (1; = T_0)", NULL, NULL},
    {"--cycle-mult", "N", FLAG_INT, O(cycle_mult), P(SGDR) | P(COS_RESTARTS), "cycle length multiplier (2; = T_mult)", NULL, NULL},
    {"--eta-min", "LR", FLAG_DOUBLE, O(eta_min), P(COS_RESTARTS), "lr floor (0)", NULL, NULL},
    {"--per-epoch", NULL, FLAG_BOOL, O(per_epoch), P(COS_RESTARTS), "step once per epoch, not per iteration", NULL, NULL},
    {"--warmup", "N", FLAG_INT, O(warmup), ALL, "linear warm-up over the first N iterations (0)", NULL, NULL},
    {"--warmup-start", "F", FLAG_DOUBLE, O(warmup_start), ALL, "lr factor at iteration 0 of the warm-up (0)", NULL, NULL},
    {"--variant", "NAME", FLAG_STR, O(variant), P(ONE_CYCLE) | P(SGDR),
     "one-cycle: fastai | fastai1 | torch; sgdr: fastai | fastai07 (0.7 warm-up)", NULL, NULL},
    {"--pct-start", "F", FLAG_DOUBLE, O(pct_start), P(ONE_CYCLE), "fraction of iterations rising (0.25; fastai1, torch 0.3)", NULL, NULL},
    {"--div", "F", FLAG_DOUBLE, O(div), P(ONE_CYCLE), "start lr = lr/div (25)", NULL, NULL},
    {"--final-div", "F", FLAG_DOUBLE, O(final_div), P(ONE_CYCLE),
     "final lr = lr/F (fastai 1e5, fastai1 div*1e4); torch: lr/div/F (1e4)", NULL, NULL},
    {"--moms", "A,B[,C]", K_MOMS, P(ONE_CYCLE) | P(CLR),
     "momentum at start, peak lr, end (one-cycle 0.95,0.85,0.95; clr 0.9,0.8)", MOMS_BAD},
    {"--no-cycle-momentum", NULL, FLAG_BOOL, O(no_cycle_mom), P(ONE_CYCLE) | P(CLR), "keep momentum at A", NULL, NULL},
    {"--three-phase", NULL, FLAG_BOOL, O(three_phase), P(ONE_CYCLE), "torch: the paper's three phases", NULL, NULL},
    {"--anneal", "cos|linear", FLAG_STR, O(anneal), P(ONE_CYCLE), "torch: annealing strategy (cos)", NULL, NULL},
    {"--base-lr", "LR", FLAG_DOUBLE, O(base_lr), P(CLR), "lowest lr of the cycle (1e-3)", NULL, NULL},
    {"--step-size-up", "N", FLAG_DOUBLE, O(step_up), P(CLR), "iterations from base to max lr (2000)", NULL, NULL},
    {"--step-size-down", "N", FLAG_DOUBLE, O(step_down), P(CLR), "iterations back down (= step-size-up)", NULL, NULL},
    {"--mode", "NAME", FLAG_STR, O(mode), P(CLR), "triangular | triangular2 | exp_range", NULL, NULL},
    {"--gamma", "F", FLAG_DOUBLE, O(gamma), P(CLR) | P(STEP), "exp_range: gamma^iter; step: decay factor (0.1)", NULL, NULL},
    {"--step", "N", FLAG_INT, O(step), P(STEP), "iterations between decays (30)", NULL, NULL},
    {"--cut-frac", "F", FLAG_DOUBLE, O(cut_frac), P(STLR), "fraction of iterations rising (0.1)", NULL, NULL},
    {"--ratio", "F", FLAG_DOUBLE, O(ratio), P(STLR), "max lr / min lr (32)", NULL, NULL},
    {"--mom", "F", FLAG_DOUBLE, O(mom), ALL & ~(P(ONE_CYCLE) | P(CLR)), "constant momentum (0.9)", NULL, NULL},
    {"--plot", "FILE.png", FLAG_STR, O(plot), ALL, "also draw lr and momentum as a PNG", NULL, NULL},
    {"--help", NULL, FLAG_BOOL, O(help), ALL, "print this help and exit", NULL, NULL},
};
#define N_FLAGS ((int)(sizeof g_flags / sizeof g_flags[0]))

static const char *policy_name(int bit) { return kiln_sched_policy_name((kiln_sched_policy)bit); }

static void usage(FILE *f)
{
    fprintf(f, "usage: kiln schedule POLICY [flags] [--plot FILE.png]\n\n"
               "Prints the learning rate and momentum of every iteration, one line each:\n"
               "\"iter lr mom\" after a header line, exactly what training would use.\n\n"
               "policies:\n"
               "  const         constant lr\n"
               "  exp           LR range test: start*(end/start)^(i/N)\n"
               "  sgdr          cosine annealing with warm restarts (fastai fit_sgdr / 0.7 CosAnneal)\n"
               "  cos-restarts  PyTorch CosineAnnealingWarmRestarts (fractional epochs)\n"
               "  clr           cyclical lr, PyTorch CyclicLR\n"
               "  one-cycle     1cycle: fastai v2 (default), fastai v1 or PyTorch OneCycleLR\n"
               "  stlr          slanted triangular lr (ULMFiT)\n"
               "  step          lr*gamma^floor(iter/step)\n\n"
               "flags:\n");
    flags_print(f, g_flags, N_FLAGS, ALL, ALL, policy_name, NULL); /* defaults differ by policy: in the help text */
    fprintf(f, "\nexample:\n  kiln schedule sgdr --lr 0.1 --iters-per-epoch 100 --n-cycle 3 --cycle-len 1 "
               "--cycle-mult 2 --plot sgdr.png\n");
}

static int fail(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "kiln schedule: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    return 2;
}

static bool parse_moms(const char *s, void *opts)
{
    opts_t *o = opts;
    char buf[128], *save = NULL;
    snprintf(buf, sizeof buf, "%s", s);
    int n = 0;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == 3 || !flags_double(t, &o->moms[n]))
            return false;
        n++;
    }
    if (n < 2)
        return false;
    if (n == 2)
        o->moms[2] = o->moms[0];
    o->n_moms = n;
    return true;
}

/* Fills o from argv; given[i] says flag i was on the command line. Returns 0 or 2. */
static int parse_args(int argc, char **argv, opts_t *o, bool *given, const char **policy)
{
    const char *pos[2];
    int n_pos = 0;
    int rc = flags_parse("kiln schedule", g_flags, N_FLAGS, argc, argv, o, given, pos, 2, &n_pos);
    if (rc)
        return rc;
    if (n_pos == 2)
        return fail("unexpected argument '%s' (policy is already '%s')", pos[1], pos[0]);
    *policy = n_pos ? pos[0] : NULL;
    return 0;
}

static int flag_index(const char *name) { return flags_index(g_flags, N_FLAGS, name); }

static bool given_flag(const bool *given, const char *name) { return given[flag_index(name)]; }

/* Total iterations for policies measured in iterations: --iters, else --epochs (default 1)
 * times --iters-per-epoch. -1 on overflow. */
static int64_t total_iters(const opts_t *o, const bool *given)
{
    if (given_flag(given, "--iters"))
        return o->iters;
    if (o->epochs > 0 && o->ipe > 0 && o->epochs > INT64_MAX / 4 / o->ipe)
        return -1;
    return o->epochs * o->ipe;
}

static int to_int(int64_t v, const char *name, int *out)
{
    if (v < INT_MIN || v > INT_MAX) {
        fprintf(stderr, "kiln schedule: %s: %lld out of range\n", name, (long long)v);
        return 2;
    }
    *out = (int)v;
    return 0;
}

#define SET(flagname, dst, src) do { if (given_flag(given, flagname)) (dst) = (src); } while (0)

/* Builds the schedule from library defaults overridden by the flags given. 0 or 2. */
static int build(const opts_t *o, const bool *given, kiln_sched_policy pol, kiln_sched *s)
{
    kiln_status st = KILN_STATUS_OK;
    int64_t total = total_iters(o, given);
    if (total < 0) {
        fprintf(stderr, "kiln schedule: --epochs %lld x --iters-per-epoch %lld overflows\n", (long long)o->epochs,
                (long long)o->ipe);
        return 2;
    }
    switch (pol) {
    case KILN_SCHED_POLICY_CONST: {
        kiln_sched_const_params p = kiln_sched_const_default_params();
        SET("--lr", p.lr, o->lr);
        SET("--mom", p.mom, o->mom);
        p.iters = total;
        st = kiln_sched_const(s, &p);
        break;
    }
    case KILN_SCHED_POLICY_EXP: {
        kiln_sched_exp_params p = kiln_sched_exp_default_params();
        SET("--start-lr", p.start_lr, o->start_lr);
        SET("--end-lr", p.end_lr, o->end_lr);
        SET("--linear", p.linear, true);
        SET("--mom", p.mom, o->mom);
        SET("--iters", p.iters, o->iters);
        st = kiln_sched_exp(s, &p);
        break;
    }
    case KILN_SCHED_POLICY_SGDR: {
        kiln_sched_sgdr_params p = kiln_sched_sgdr_default_params();
        SET("--lr", p.lr, o->lr);
        SET("--mom", p.mom, o->mom);
        p.iters_per_epoch = o->ipe;
        if ((given_flag(given, "--n-cycle") && to_int(o->n_cycle, "--n-cycle", &p.n_cycle)) ||
            (given_flag(given, "--cycle-len") && to_int(o->cycle_len, "--cycle-len", &p.cycle_len)) ||
            (given_flag(given, "--cycle-mult") && to_int(o->cycle_mult, "--cycle-mult", &p.cycle_mult)))
            return 2;
        if (o->variant && strcmp(o->variant, "fastai") && strcmp(o->variant, "fastai07"))
            return fail("--variant: '%s' is not a sgdr variant (fastai, fastai07)%s", o->variant, "");
        p.warmup07 = o->variant && !strcmp(o->variant, "fastai07");
        st = kiln_sched_sgdr(s, &p);
        break;
    }
    case KILN_SCHED_POLICY_COS_RESTARTS: {
        kiln_sched_cos_restarts_params p = kiln_sched_cos_restarts_default_params();
        SET("--lr", p.lr, o->lr);
        SET("--mom", p.mom, o->mom);
        SET("--cycle-len", p.t0, o->cycle_len);
        SET("--cycle-mult", p.t_mult, o->cycle_mult);
        SET("--eta-min", p.eta_min, o->eta_min);
        SET("--per-epoch", p.per_epoch, true);
        p.iters_per_epoch = o->ipe;
        if (given_flag(given, "--epochs")) {
            p.epochs = o->epochs;
        } else {
            int t0, tm, n = 3;
            if (to_int(p.t0, "--cycle-len", &t0) || to_int(p.t_mult, "--cycle-mult", &tm) ||
                (given_flag(given, "--n-cycle") && to_int(o->n_cycle, "--n-cycle", &n)))
                return 2;
            p.epochs = kiln_sgdr_epochs(t0, tm, n);
            if (p.epochs < 0) {
                fprintf(stderr, "kiln schedule: cos-restarts: %s\n", kiln_last_error());
                return 2;
            }
        }
        st = kiln_sched_cos_restarts(s, &p);
        break;
    }
    case KILN_SCHED_POLICY_CLR: {
        kiln_sched_clr_params p = kiln_sched_clr_default_params();
        SET("--base-lr", p.base_lr, o->base_lr);
        SET("--lr", p.max_lr, o->lr);
        SET("--step-size-up", p.step_size_up, o->step_up);
        SET("--step-size-down", p.step_size_down, o->step_down);
        SET("--gamma", p.gamma, o->gamma);
        SET("--no-cycle-momentum", p.cycle_momentum, false);
        if (o->n_moms) {
            p.max_momentum = o->moms[0];
            p.base_momentum = o->moms[1];
        }
        if (o->mode) {
            if (!strcmp(o->mode, "triangular"))
                p.mode = KILN_CLR_MODE_TRIANGULAR;
            else if (!strcmp(o->mode, "triangular2"))
                p.mode = KILN_CLR_MODE_TRIANGULAR2;
            else if (!strcmp(o->mode, "exp_range"))
                p.mode = KILN_CLR_MODE_EXP_RANGE;
            else
                return fail("--mode: '%s' is not triangular, triangular2 or exp_range%s", o->mode, "");
        }
        if (given_flag(given, "--iters") || given_flag(given, "--epochs")) {
            p.iters = total;
        } else if (given_flag(given, "--n-cycle")) {
            if (o->n_cycle < 1) {
                fprintf(stderr, "kiln schedule: clr: --n-cycle %lld must be >= 1\n", (long long)o->n_cycle);
                return 2;
            }
            double down = p.step_size_down > 0 ? p.step_size_down : p.step_size_up;
            double n = ceil((double)o->n_cycle * (p.step_size_up + down));
            p.iters = n >= 1 && n < 1e15 ? (int64_t)n : -1;
        }
        st = kiln_sched_clr(s, &p);
        break;
    }
    case KILN_SCHED_POLICY_ONE_CYCLE: {
        kiln_one_cycle_variant v = KILN_ONE_CYCLE_VARIANT_FASTAI;
        if (o->variant) {
            if (!strcmp(o->variant, "fastai1"))
                v = KILN_ONE_CYCLE_VARIANT_FASTAI1;
            else if (!strcmp(o->variant, "torch"))
                v = KILN_ONE_CYCLE_VARIANT_TORCH;
            else if (strcmp(o->variant, "fastai"))
                return fail("--variant: '%s' is not a one-cycle variant (fastai, fastai1, torch)%s", o->variant, "");
        }
        kiln_sched_one_cycle_params p = kiln_sched_one_cycle_default_params(v);
        SET("--lr", p.lr_max, o->lr);
        SET("--pct-start", p.pct_start, o->pct_start);
        SET("--div", p.div, o->div);
        SET("--final-div", p.final_div, o->final_div);
        SET("--three-phase", p.three_phase, true);
        SET("--no-cycle-momentum", p.cycle_momentum, false);
        if (o->n_moms)
            memcpy(p.moms, o->moms, sizeof p.moms);
        if (o->anneal) {
            if (!strcmp(o->anneal, "linear"))
                p.linear = true;
            else if (strcmp(o->anneal, "cos"))
                return fail("--anneal: '%s' is not cos or linear%s", o->anneal, "");
        }
        p.iters = total;
        st = kiln_sched_one_cycle(s, &p);
        break;
    }
    case KILN_SCHED_POLICY_STLR: {
        kiln_sched_stlr_params p = kiln_sched_stlr_default_params();
        SET("--lr", p.lr_max, o->lr);
        SET("--cut-frac", p.cut_frac, o->cut_frac);
        SET("--ratio", p.ratio, o->ratio);
        SET("--mom", p.mom, o->mom);
        p.iters = total;
        st = kiln_sched_stlr(s, &p);
        break;
    }
    case KILN_SCHED_POLICY_STEP: {
        kiln_sched_step_params p = kiln_sched_step_default_params();
        SET("--lr", p.lr, o->lr);
        SET("--gamma", p.gamma, o->gamma);
        SET("--step", p.step, o->step);
        SET("--mom", p.mom, o->mom);
        p.iters = total;
        st = kiln_sched_step(s, &p);
        break;
    }
    default: break;
    }
    if (st == KILN_STATUS_OK && (given_flag(given, "--warmup") || given_flag(given, "--warmup-start")))
        st = kiln_sched_warmup(s, o->warmup, o->warmup_start);
    if (st != KILN_STATUS_OK) {
        fprintf(stderr, "kiln schedule: %s\n", kiln_last_error());
        return 2;
    }
    return 0;
}

/* ---- plot: min/max per bucket keeps every restart visible in at most ~2*MAX_BUCKETS points */

enum { MAX_BUCKETS = 200000 };

typedef struct trace {
    double *x, *y;
    int64_t n;
    int64_t i_lo, i_hi; /* bucket's argmin / argmax */
    double v_lo, v_hi;
    int64_t count;
} trace;

static void trace_flush(trace *t)
{
    if (!t->count)
        return;
    int64_t a = t->i_lo < t->i_hi ? t->i_lo : t->i_hi, b = t->i_lo < t->i_hi ? t->i_hi : t->i_lo;
    double va = a == t->i_lo ? t->v_lo : t->v_hi, vb = b == t->i_lo ? t->v_lo : t->v_hi;
    t->x[t->n] = (double)a;
    t->y[t->n++] = va;
    if (b != a) {
        t->x[t->n] = (double)b;
        t->y[t->n++] = vb;
    }
    t->count = 0;
}

static void trace_add(trace *t, int64_t i, double v, int64_t bucket)
{
    if (t->count == 0 || v < t->v_lo)
        t->i_lo = i, t->v_lo = v;
    if (t->count == 0 || v > t->v_hi)
        t->i_hi = i, t->v_hi = v;
    if (++t->count == bucket)
        trace_flush(t);
}

static int write_plot(const char *path, kiln_sched_policy pol, const kiln_sched *s, const trace *tl, const trace *tm)
{
    char title[128];
    snprintf(title, sizeof title, "kiln schedule %s: learning rate", kiln_sched_policy_name(pol));
    bool log_lr = pol == KILN_SCHED_POLICY_EXP && !s->p.exp.linear;
    kiln_plot_series lr = {.label = NULL, .x = tl->x, .y = tl->y, .n = tl->n, .style = KILN_PLOT_STYLE_LINE};
    kiln_plot_series mom = {.label = NULL, .x = tm->x, .y = tm->y, .n = tm->n, .style = KILN_PLOT_STYLE_LINE};
    kiln_plot_panel panels[2] = {
        {.title = title, .xlabel = "iteration", .ylabel = "lr", .log_y = log_lr, .series = &lr, .n_series = 1},
        {.title = "momentum", .xlabel = "iteration", .ylabel = "momentum", .series = &mom, .n_series = 1},
    };
    if (kiln_plot_panels(path, panels, 2, 0, 0) != KILN_STATUS_OK) {
        fprintf(stderr, "kiln schedule: %s\n", kiln_last_error());
        return 1;
    }
    return 0;
}

int cmd_schedule(int argc, char **argv)
{
    opts_t o = {.ipe = 100, .epochs = 1};
    bool given[N_FLAGS] = {false};
    const char *policy = NULL;
    int rc = parse_args(argc, argv, &o, given, &policy);
    if (rc)
        return rc;
    if (o.help) {
        usage(stdout);
        return 0;
    }
    if (!policy) {
        usage(stderr);
        return 2;
    }
    kiln_sched_policy pol;
    if (kiln_sched_policy_parse(policy, &pol) != KILN_STATUS_OK) {
        fprintf(stderr, "kiln schedule: %s\n", kiln_last_error());
        return 2;
    }
    for (int k = 0; k < N_FLAGS; k++)
        if (given[k] && !(g_flags[k].mask & (1u << pol)))
            fprintf(stderr, "kiln schedule: warning: %s does not apply to %s (ignored)\n", g_flags[k].name, policy);
    kiln_sched s;
    if ((rc = build(&o, given, pol, &s)))
        return rc;

    if (o.plot && !kiln_plot_available()) {
        fprintf(stderr, "kiln schedule: --plot: this kiln cannot write PNG plots (needs PLplot with its pngcairo "
                        "device: apt-get install libplplot-dev plplot-driver-cairo, then rebuild)\n");
        return 1;
    }
    int64_t total = kiln_sched_total(&s);
    int64_t bucket = (total + MAX_BUCKETS - 1) / MAX_BUCKETS;
    trace tl = {0}, tm = {0};
    if (o.plot) {
        size_t cap = (size_t)(total / bucket + 2) * 2;
        tl.x = malloc(cap * sizeof(double)), tl.y = malloc(cap * sizeof(double));
        tm.x = malloc(cap * sizeof(double)), tm.y = malloc(cap * sizeof(double));
        if (!tl.x || !tl.y || !tm.x || !tm.y) {
            fprintf(stderr, "kiln schedule: out of memory for a plot of %lld iterations\n", (long long)total);
            rc = 1;
            goto done;
        }
    }
    static char outbuf[1 << 16];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    printf("iter lr mom\n");
    for (int64_t i = 0; i < total; i++) {
        double lr, mom;
        kiln_sched_at(&s, i, &lr, &mom);
        printf("%lld %.9g %.9g\n", (long long)i, lr, mom);
        if (o.plot) {
            trace_add(&tl, i, lr, bucket);
            trace_add(&tm, i, mom, bucket);
        }
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "kiln schedule: writing to stdout: %s\n", strerror(errno));
        rc = 1;
        goto done;
    }
    if (o.plot) {
        trace_flush(&tl);
        trace_flush(&tm);
        rc = write_plot(o.plot, pol, &s, &tl, &tm);
    }
done:
    free(tl.x), free(tl.y), free(tm.x), free(tm.y);
    return rc;
}
