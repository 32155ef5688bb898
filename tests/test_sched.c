/* Schedules: kiln_sched_at against PyTorch's schedulers and the fastai formulas recorded by
 * tests/fixtures/gen_sched.py (every iteration, lr and momentum, |got - want| <= 1e-6*|want|;
 * the fixture holds f32, whose rounding is 6e-8 relative), the test vectors of
 * design/fastai-reference.md (sections 1-3, 6) asserted directly (to the digits they are quoted
 * with), cycle bookkeeping for snapshots, parameter validation, discriminative lrs and the
 * lr_find helpers (smoothing, stop test, suggestions: exact index, lr to 1e-12). */
#include "util/ku.h"
#include "kiln/sched.h"

#include <math.h>
#include <string.h>

#define RTOL 1e-6

static kiln_st_file *g_fx;
static void setup(void) { g_fx = ku_fixture("sched"); }
static void teardown(void) { kiln_st_close(g_fx); }
TestSuite(sched, .init = setup, .fini = teardown);

/* The f32 fixture "<kase>.<what>"; *n gets its length. */
static const float *fx(const char *kase, const char *what, int64_t *n)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", kase, what);
    kiln_dtype dt;
    int nd;
    int64_t shape[KILN_MAX_DIMS];
    const void *data;
    size_t nbytes;
    cr_assert(kiln_st_info(g_fx, name, &dt, &nd, shape, &data, &nbytes) == KILN_STATUS_OK, "fixture %s: %s", name,
              kiln_last_error());
    cr_assert(dt == KILN_DTYPE_F32 && nd == 1, "fixture %s: want 1-d f32", name);
    *n = shape[0];
    return data;
}

/* Every iteration of s against the fixture: lr and momentum, 1e-6 relative. */
static void expect_case(const char *kase, const kiln_sched *s)
{
    int64_t n, nm;
    const float *lr = fx(kase, "lr", &n), *mom = fx(kase, "mom", &nm);
    cr_assert_eq(n, nm);
    cr_assert_eq(kiln_sched_total(s), n, "%s: total %lld iterations, fixture has %lld", kase,
                 (long long)kiln_sched_total(s), (long long)n);
    for (int64_t i = 0; i < n; i++) {
        double l, m;
        cr_assert_eq(kiln_sched_at(s, i, &l, &m), KILN_STATUS_OK);
        cr_assert(fabs(l - lr[i]) <= RTOL * fabs(lr[i]), "%s: iter %lld lr %.9g, want %.9g (rel %.2g)", kase,
                  (long long)i, l, lr[i], fabs(l - lr[i]) / fabs(lr[i]));
        cr_assert(fabs(m - mom[i]) <= RTOL * fabs(mom[i]), "%s: iter %lld mom %.9g, want %.9g", kase, (long long)i, m,
                  mom[i]);
    }
}

/* |got - want| <= half a unit of the last digit the reference quotes */
#define NEAR(got, want, half_ulp, what)                                                                     \
    cr_assert(fabs((got) - (want)) <= (half_ulp), "%s: got %.9g, want %.9g (+-%g)", what, (double)(got), \
              (double)(want), (double)(half_ulp))

static double lr_at(const kiln_sched *s, int64_t i)
{
    double l;
    cr_assert_eq(kiln_sched_at(s, i, &l, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    return l;
}

static double mom_at(const kiln_sched *s, int64_t i)
{
    double l, m;
    cr_assert_eq(kiln_sched_at(s, i, &l, &m), KILN_STATUS_OK, "%s", kiln_last_error());
    return m;
}

/* ---- parity with PyTorch ------------------------------------------------------------- */

static void clr_case(const char *kase, double base, double max, double up, double down, kiln_clr_mode mode, double gamma,
                     double bm, double mm, int64_t iters)
{
    kiln_sched_clr_params p = kiln_sched_clr_default_params();
    p.base_lr = base, p.max_lr = max, p.step_size_up = up, p.step_size_down = down, p.mode = mode, p.gamma = gamma;
    p.base_momentum = bm, p.max_momentum = mm, p.iters = iters;
    kiln_sched s;
    cr_assert_eq(kiln_sched_clr(&s, &p), KILN_STATUS_OK, "%s", kiln_last_error());
    expect_case(kase, &s);
}

Test(sched, torch_cyclic_lr)
{
    clr_case("clr_tri", 1e-3, 6e-3, 200, 300, KILN_CLR_MODE_TRIANGULAR, 1.0, 0.8, 0.9, 2000);
    clr_case("clr_tri2", 0.01, 0.1, 150, 50, KILN_CLR_MODE_TRIANGULAR2, 1.0, 0.85, 0.95, 1500);
    clr_case("clr_exp", 1e-3, 1e-2, 100, 250, KILN_CLR_MODE_EXP_RANGE, 0.9995, 0.8, 0.9, 2000);
}

static void oc_case(const char *kase, kiln_one_cycle_variant v, int64_t n, double lr, double pct, double div,
                    double final_div, const double moms[3], bool three, bool linear)
{
    kiln_sched_one_cycle_params p = kiln_sched_one_cycle_default_params(v);
    p.iters = n, p.lr_max = lr, p.three_phase = three, p.linear = linear;
    if (pct >= 0)
        p.pct_start = pct;
    if (div > 0)
        p.div = div;
    if (final_div >= 0)
        p.final_div = final_div;
    if (moms)
        memcpy(p.moms, moms, sizeof p.moms);
    kiln_sched s;
    cr_assert_eq(kiln_sched_one_cycle(&s, &p), KILN_STATUS_OK, "%s", kiln_last_error());
    expect_case(kase, &s);
}

Test(sched, torch_one_cycle)
{
    const kiln_one_cycle_variant T = KILN_ONE_CYCLE_VARIANT_TORCH;
    oc_case("oc_torch_cos", T, 1000, 0.01, -1, 0, -1, NULL, false, false);
    oc_case("oc_torch_lin", T, 777, 0.1, 0.25, 10, 100, (double[]){0.9, 0.8, 0.9}, false, true);
    oc_case("oc_torch_cos3", T, 1234, 0.02, -1, 0, -1, NULL, true, false);
    oc_case("oc_torch_lin3", T, 2000, 0.1, 0.4, 0, -1, NULL, true, true);
}

static void cwr_case(const char *kase, double lr, int64_t t0, int64_t tm, double eta_min, int64_t ipe, int64_t epochs,
                     bool per_epoch)
{
    kiln_sched_cos_restarts_params p = kiln_sched_cos_restarts_default_params();
    p.lr = lr, p.t0 = t0, p.t_mult = tm, p.eta_min = eta_min, p.iters_per_epoch = ipe, p.epochs = epochs;
    p.per_epoch = per_epoch;
    kiln_sched s;
    cr_assert_eq(kiln_sched_cos_restarts(&s, &p), KILN_STATUS_OK, "%s", kiln_last_error());
    expect_case(kase, &s);
}

Test(sched, torch_cosine_warm_restarts)
{
    cwr_case("cwr_t1", 0.1, 3, 1, 1e-4, 97, 10, false);    /* step(i/ipe) */
    cwr_case("cwr_t2", 0.1, 1, 2, 0, 100, 15, false);
    cwr_case("cwr_epoch", 0.1, 2, 2, 1e-3, 50, 14, true); /* step() per epoch */
    cwr_case("cwr_iter", 0.1, 50, 2, 1e-5, 1, 1000, true); /* step() per batch, T_0 in iterations */
}

/* ---- parity with the fastai formulas ------------------------------------------------- */

static void sgdr_case(const char *kase, double lr, int64_t ipe, int n, int len, int mult, bool w07)
{
    kiln_sched_sgdr_params p = kiln_sched_sgdr_default_params();
    p.lr = lr, p.iters_per_epoch = ipe, p.n_cycle = n, p.cycle_len = len, p.cycle_mult = mult, p.warmup07 = w07;
    kiln_sched s;
    cr_assert_eq(kiln_sched_sgdr(&s, &p), KILN_STATUS_OK, "%s", kiln_last_error());
    expect_case(kase, &s);
}

Test(sched, fastai_sgdr)
{
    sgdr_case("sgdr07_a", 0.1, 100, 3, 1, 2, true);
    sgdr_case("sgdr07_b", 0.02, 37, 3, 2, 3, true);
    sgdr_case("sgdr07_c", 0.5, 64, 4, 1, 1, true);
    sgdr_case("sgdr_v2", 0.05, 80, 4, 1, 2, false);
}

Test(sched, fastai_one_cycle)
{
    oc_case("oc_fastai", KILN_ONE_CYCLE_VARIANT_FASTAI, 1000, 3e-3, -1, 0, -1, NULL, false, false);
    oc_case("oc_fastai_b", KILN_ONE_CYCLE_VARIANT_FASTAI, 555, 0.01, 0.4, 10, 1e4, (double[]){0.9, 0.8, 0.85}, false,
            false);
    oc_case("oc_fastai1", KILN_ONE_CYCLE_VARIANT_FASTAI1, 1000, 0.01, -1, 0, -1, NULL, false, false);
    oc_case("oc_fastai1_b", KILN_ONE_CYCLE_VARIANT_FASTAI1, 457, 2e-3, 0.25, 0, 1e3, (double[]){0.8, 0.7, 0.8}, false,
            false);
}

Test(sched, ulmfit_stlr)
{
    kiln_sched s;
    kiln_sched_stlr_params p = kiln_sched_stlr_default_params();
    cr_assert_eq(kiln_sched_stlr(&s, &p), KILN_STATUS_OK);
    expect_case("stlr_a", &s);
    p.iters = 2345, p.lr_max = 4e-3, p.cut_frac = 0.2, p.ratio = 16;
    cr_assert_eq(kiln_sched_stlr(&s, &p), KILN_STATUS_OK);
    expect_case("stlr_b", &s);
}

/* ---- reference test vectors ---------------------------------------------------------- */

Test(sched, vectors_sgdr07)
{
    /* nb=100, mult=2, lr=0.1: calls 0-4 -> 0.001; 5 -> 0.09938; 50 -> 0.05; 99 -> 2.5e-5;
     * 100 -> 0.1; 200 -> 0.05 */
    kiln_sched_sgdr_params p = kiln_sched_sgdr_default_params();
    p.lr = 0.1, p.iters_per_epoch = 100, p.cycle_mult = 2, p.warmup07 = true;
    kiln_sched s;
    cr_assert_eq(kiln_sched_sgdr(&s, &p), KILN_STATUS_OK);
    for (int i = 0; i < 5; i++)
        NEAR(lr_at(&s, i), 0.001, 1e-15, "warm-up");
    NEAR(lr_at(&s, 5), 0.09938, 5e-6, "call 5");
    NEAR(lr_at(&s, 50), 0.05, 1e-15, "call 50");
    NEAR(lr_at(&s, 99), 2.5e-5, 5e-7, "call 99");
    NEAR(lr_at(&s, 100), 0.1, 1e-15, "call 100");
    NEAR(lr_at(&s, 200), 0.05, 1e-15, "call 200");
    /* without the warm-up it is fit_sgdr: the top of the cosine at 0 (docs/cli.md example) */
    p.warmup07 = false;
    cr_assert_eq(kiln_sched_sgdr(&s, &p), KILN_STATUS_OK);
    NEAR(lr_at(&s, 0), 0.1, 0, "no warm-up");
    NEAR(lr_at(&s, 1), 0.0999753, 5e-8, "no warm-up, 1");
    NEAR(mom_at(&s, 1), 0.9, 0, "sgdr momentum");
}

Test(sched, vectors_cos_restarts)
{
    /* T_0=10, T_mult=2, base 0.1: ep 5 -> 0.05, 9 -> 0.00245, 10 -> 0.1, 30 -> 0.1 */
    kiln_sched_cos_restarts_params p = kiln_sched_cos_restarts_default_params();
    p.lr = 0.1, p.t0 = 10, p.t_mult = 2, p.iters_per_epoch = 1, p.epochs = 40;
    kiln_sched s;
    cr_assert_eq(kiln_sched_cos_restarts(&s, &p), KILN_STATUS_OK);
    NEAR(lr_at(&s, 5), 0.05, 1e-15, "ep 5");
    NEAR(lr_at(&s, 9), 0.00245, 5e-6, "ep 9");
    NEAR(lr_at(&s, 10), 0.1, 1e-15, "ep 10");
    NEAR(lr_at(&s, 30), 0.1, 1e-15, "ep 30");
    /* T_mult 3 at an exact boundary, where PyTorch's log(243)/log(3) falls short: epoch 121 =
     * 1+3+9+27+81 starts cycle 5 */
    p.t0 = 1, p.t_mult = 3, p.epochs = 400;
    cr_assert_eq(kiln_sched_cos_restarts(&s, &p), KILN_STATUS_OK);
    NEAR(lr_at(&s, 121), 0.1, 1e-15, "T_mult 3 boundary");
    cr_assert_eq(kiln_sched_cycle(&s, 121), 5);
    cr_assert(kiln_sched_cycle_end(&s, 120));
}

Test(sched, vectors_one_cycle)
{
    /* v2, lr_max=1e-3, 100 iters: i=0 4e-5 (mom .95); 10 3.717e-4 (.9155); 25 1e-3 (.85);
     * 50 7.5e-4 (.875); 99 4.49e-7 */
    kiln_sched_one_cycle_params p = kiln_sched_one_cycle_default_params(KILN_ONE_CYCLE_VARIANT_FASTAI);
    kiln_sched s;
    cr_assert_eq(kiln_sched_one_cycle(&s, &p), KILN_STATUS_OK);
    NEAR(lr_at(&s, 0), 4e-5, 1e-15, "v2 0");
    NEAR(mom_at(&s, 0), 0.95, 1e-15, "v2 mom 0");
    NEAR(lr_at(&s, 10), 3.717e-4, 5e-8, "v2 10");
    NEAR(mom_at(&s, 10), 0.9155, 5e-5, "v2 mom 10");
    NEAR(lr_at(&s, 25), 1e-3, 1e-15, "v2 25");
    NEAR(mom_at(&s, 25), 0.85, 1e-15, "v2 mom 25");
    NEAR(lr_at(&s, 50), 7.5e-4, 5e-6, "v2 50");
    NEAR(mom_at(&s, 50), 0.875, 5e-4, "v2 mom 50");
    NEAR(lr_at(&s, 99), 4.49e-7, 5e-10, "v2 99");
    /* PyTorch OneCycleLR, 100 steps: 29 -> 1e-3, 50 -> 7.939e-4, 99 -> 4e-9 */
    p = kiln_sched_one_cycle_default_params(KILN_ONE_CYCLE_VARIANT_TORCH);
    cr_assert_eq(kiln_sched_one_cycle(&s, &p), KILN_STATUS_OK);
    NEAR(lr_at(&s, 29), 1e-3, 1e-15, "torch 29");
    NEAR(lr_at(&s, 50), 7.939e-4, 5e-8, "torch 50");
    NEAR(lr_at(&s, 99), 4e-9, 1e-18, "torch 99");
    NEAR(lr_at(&s, 500), 4e-9, 1e-18, "holds the last value past the end");
    /* v1: final lr = lr_max/(div*1e4) = lr_max/2.5e5 */
    p = kiln_sched_one_cycle_default_params(KILN_ONE_CYCLE_VARIANT_FASTAI1);
    cr_assert_eq(kiln_sched_one_cycle(&s, &p), KILN_STATUS_OK);
    NEAR(lr_at(&s, 30), 1e-3, 1e-15, "v1 peak at a1 = int(0.3 n)");
    cr_assert(lr_at(&s, 99) > 1e-3 / 2.5e5 && lr_at(&s, 99) < 1e-6, "v1 end");
}

Test(sched, vectors_stlr_and_exp)
{
    /* T=1000: t=0 3.1e-4, 100 1e-2, 550 5.16e-3, 1000 3.1e-4 */
    kiln_sched_stlr_params p = kiln_sched_stlr_default_params();
    kiln_sched s;
    cr_assert_eq(kiln_sched_stlr(&s, &p), KILN_STATUS_OK);
    NEAR(lr_at(&s, 0), 3.1e-4, 5e-6, "t 0");
    NEAR(lr_at(&s, 100), 1e-2, 1e-15, "t 100");
    NEAR(lr_at(&s, 550), 5.16e-3, 5e-6, "t 550");
    NEAR(lr_at(&s, 1000), 3.1e-4, 5e-6, "t 1000");
    /* lr_find: start*(end/start)^(i/N), 1e-7..10 over 100 */
    kiln_sched_exp_params e = kiln_sched_exp_default_params();
    cr_assert_eq(kiln_sched_exp(&s, &e), KILN_STATUS_OK);
    NEAR(lr_at(&s, 0), 1e-7, 1e-20, "exp 0");
    NEAR(lr_at(&s, 50), 1e-3, 1e-15, "exp 50");
    NEAR(lr_at(&s, 99), 1e-7 * pow(1e8, 0.99), 1e-12, "exp 99");
    cr_assert_eq(kiln_sched_total(&s), 100);
}

Test(sched, step_const_and_warmup)
{
    kiln_sched s;
    kiln_sched_step_params sp = kiln_sched_step_default_params();
    sp.lr = 0.1, sp.gamma = 0.5, sp.step = 10;
    cr_assert_eq(kiln_sched_step(&s, &sp), KILN_STATUS_OK);
    NEAR(lr_at(&s, 9), 0.1, 0, "step 9");
    NEAR(lr_at(&s, 25), 0.025, 1e-17, "step 25");
    kiln_sched_const_params cp = kiln_sched_const_default_params();
    cp.lr = 0.1;
    cr_assert_eq(kiln_sched_const(&s, &cp), KILN_STATUS_OK);
    cr_assert_eq(kiln_sched_warmup(&s, 10, 0.0), KILN_STATUS_OK);
    NEAR(lr_at(&s, 0), 0.0, 0, "warm-up 0");
    NEAR(lr_at(&s, 5), 0.05, 1e-17, "warm-up 5");
    NEAR(lr_at(&s, 10), 0.1, 0, "after warm-up");
    /* wrapping a cyclic policy multiplies its curve, momentum untouched */
    kiln_sched_one_cycle_params op = kiln_sched_one_cycle_default_params(KILN_ONE_CYCLE_VARIANT_TORCH);
    kiln_sched oc, ocw;
    cr_assert_eq(kiln_sched_one_cycle(&oc, &op), KILN_STATUS_OK);
    ocw = oc;
    cr_assert_eq(kiln_sched_warmup(&ocw, 20, 0.5), KILN_STATUS_OK);
    NEAR(lr_at(&ocw, 10), lr_at(&oc, 10) * 0.75, 1e-18, "warm-up factor");
    NEAR(mom_at(&ocw, 10), mom_at(&oc, 10), 0, "warm-up momentum");
}

/* ---- cycles and snapshots ------------------------------------------------------------ */

Test(sched, cycles_and_totals)
{
    cr_assert_eq(kiln_sgdr_epochs(1, 2, 3), 7);
    cr_assert_eq(kiln_sgdr_epochs(2, 3, 3), 26);
    cr_assert_eq(kiln_sgdr_epochs(1, 1, 4), 4);
    cr_assert_eq(kiln_sgdr_epochs(3, 1, 5), 15);
    cr_assert_eq(kiln_sgdr_epochs(0, 2, 3), -1);
    kiln_sched_sgdr_params p = kiln_sched_sgdr_default_params();
    p.iters_per_epoch = 10; /* cycles of 10, 20, 40 iterations */
    kiln_sched s;
    cr_assert_eq(kiln_sched_sgdr(&s, &p), KILN_STATUS_OK);
    cr_assert_eq(kiln_sched_total(&s), 70);
    int ends = 0;
    for (int64_t i = 0; i < 70; i++) {
        bool e = kiln_sched_cycle_end(&s, i);
        ends += e;
        cr_assert_eq(e, i == 9 || i == 29 || i == 69, "cycle end at %lld", (long long)i);
    }
    cr_assert_eq(ends, 3);
    cr_assert_eq(kiln_sched_cycle(&s, 9), 0);
    cr_assert_eq(kiln_sched_cycle(&s, 10), 1);
    cr_assert_eq(kiln_sched_cycle(&s, 69), 2);
    /* the lr at each cycle end is the bottom of its cosine, the next one the top */
    cr_assert(lr_at(&s, 29) < 0.01 * p.lr && lr_at(&s, 30) == p.lr);
    kiln_sched_clr_params c = kiln_sched_clr_default_params();
    c.step_size_up = 3, c.step_size_down = 5, c.iters = 20;
    cr_assert_eq(kiln_sched_clr(&s, &c), KILN_STATUS_OK);
    cr_assert(kiln_sched_cycle_end(&s, 7) && kiln_sched_cycle_end(&s, 15) && kiln_sched_cycle_end(&s, 19));
    cr_assert(!kiln_sched_cycle_end(&s, 8));
    c.iters = 0;
    cr_assert_eq(kiln_sched_clr(&s, &c), KILN_STATUS_OK);
    cr_assert_eq(kiln_sched_total(&s), 8, "clr default: one cycle");
}

/* ---- validation ---------------------------------------------------------------------- */

Test(sched, validation_messages)
{
    kiln_sched s;
    kiln_sched_one_cycle_params o = kiln_sched_one_cycle_default_params(KILN_ONE_CYCLE_VARIANT_FASTAI);
    o.pct_start = 1.5;
    cr_assert_eq(kiln_sched_one_cycle(&s, &o), KILN_STATUS_INVALID);
    ku_expect_error("one-cycle: pct_start 1.5 outside [0, 1]", "pct_start");
    o = kiln_sched_one_cycle_default_params(KILN_ONE_CYCLE_VARIANT_FASTAI);
    o.three_phase = true;
    cr_assert_eq(kiln_sched_one_cycle(&s, &o), KILN_STATUS_INVALID);
    ku_expect_error("PyTorch option", "three_phase on fastai");
    kiln_sched_sgdr_params g = kiln_sched_sgdr_default_params();
    g.cycle_mult = 0;
    cr_assert_eq(kiln_sched_sgdr(&s, &g), KILN_STATUS_INVALID);
    ku_expect_error("sgdr: cycle_mult 0 must be >= 1", "cycle_mult");
    kiln_sched_exp_params e = kiln_sched_exp_default_params();
    e.start_lr = 0;
    cr_assert_eq(kiln_sched_exp(&s, &e), KILN_STATUS_INVALID);
    ku_expect_error("exp: start_lr 0 must be > 0", "exp start");
    kiln_sched_stlr_params t = kiln_sched_stlr_default_params();
    t.iters = 5;
    cr_assert_eq(kiln_sched_stlr(&s, &t), KILN_STATUS_INVALID);
    ku_expect_error("stlr: cut", "stlr cut");
    kiln_sched_clr_params c = kiln_sched_clr_default_params();
    c.max_momentum = 1.2;
    cr_assert_eq(kiln_sched_clr(&s, &c), KILN_STATUS_INVALID);
    ku_expect_error("clr: max_momentum 1.2 outside [0, 1]", "clr momentum");
    kiln_sched_cos_restarts_params r = kiln_sched_cos_restarts_default_params();
    r.eta_min = NAN;
    cr_assert_eq(kiln_sched_cos_restarts(&s, &r), KILN_STATUS_INVALID);
    ku_expect_error("cos-restarts: eta_min nan", "eta_min");
    kiln_sched_const_params k = kiln_sched_const_default_params();
    cr_assert_eq(kiln_sched_const(&s, &k), KILN_STATUS_OK);
    cr_assert_eq(kiln_sched_warmup(&s, 10, 2.0), KILN_STATUS_INVALID);
    ku_expect_error("warmup: start 2 outside [0, 1]", "warm-up start");
    double l;
    cr_assert_eq(kiln_sched_at(&s, -1, &l, NULL), KILN_STATUS_INVALID);
    ku_expect_error("iteration -1", "negative iteration");
    kiln_sched_policy pol;
    cr_assert_eq(kiln_sched_policy_parse("cosine", &pol), KILN_STATUS_INVALID);
    ku_expect_error("unknown policy 'cosine'", "policy name");
    for (int i = 0; i < KILN_SCHED_POLICY_COUNT; i++) {
        cr_assert_eq(kiln_sched_policy_parse(kiln_sched_policy_name((kiln_sched_policy)i), &pol), KILN_STATUS_OK);
        cr_assert_eq((int)pol, i);
    }
}

/* ---- discriminative learning rates --------------------------------------------------- */

Test(sched, lr_spread)
{
    double out[5];
    cr_assert_eq(kiln_lr_spread(1e-5, 1e-3, 3, out), KILN_STATUS_OK);
    NEAR(out[0], 1e-5, 1e-18, "slice(1e-5, 1e-3)[0]");
    NEAR(out[1], 1e-4, 1e-17, "slice(1e-5, 1e-3)[1]");
    NEAR(out[2], 1e-3, 1e-16, "slice(1e-5, 1e-3)[2]");
    cr_assert_eq(kiln_lr_spread(0, 1e-3, 3, out), KILN_STATUS_OK);
    cr_assert(out[0] == 1e-3 / 10 && out[1] == 1e-3 / 10 && out[2] == 1e-3, "slice(hi)");
    cr_assert_eq(kiln_lr_spread(1e-5, 1e-3, 1, out), KILN_STATUS_OK);
    cr_assert(out[0] == 1e-3, "one group gets hi");
    cr_assert_eq(kiln_lr_spread_factor(0.01, 2.6, 5, out), KILN_STATUS_OK);
    for (int i = 0; i < 5; i++)
        NEAR(out[i], 0.01 / pow(2.6, 4 - i), 1e-18, "ULMFiT lr/2.6^k");
    cr_assert_eq(kiln_lr_spread(-1, 1e-3, 3, out), KILN_STATUS_INVALID);
    ku_expect_error("lr_spread: lo -1", "negative lo");
}

/* ---- lr_find helpers ------------------------------------------------------------------ */

Test(sched, ema_and_stop)
{
    double x[2] = {2, 4}, y[2];
    cr_assert_eq(kiln_ema_smooth(x, 2, 0.98, y), KILN_STATUS_OK);
    NEAR(y[0], 2.0, 1e-14, "debiased first value is the value");
    NEAR(y[1], (0.98 * 0.04 + 0.02 * 4) / (1 - 0.98 * 0.98), 1e-14, "second");
    cr_assert(kiln_lr_find_diverged(NAN, 1.0));
    cr_assert(kiln_lr_find_diverged(4.01, 1.0));
    cr_assert(!kiln_lr_find_diverged(3.99, 1.0));
}

static double fx64(const char *kase, int i)
{
    int64_t n;
    const float *hi = fx(kase, "sugg_hi", &n), *lo = fx(kase, "sugg_lo", &n);
    return (double)hi[i] + (double)lo[i];
}

/* Replays fastai's LRFinder on the recorded raw losses: exp lrs, smoothing, stop test,
 * then every suggestion function. */
static void lr_find_case(const char *kase, int64_t num_it, bool stop_div)
{
    int64_t n_raw, n_sm;
    const float *raw = fx(kase, "raw", &n_raw), *sm = fx(kase, "smooth", &n_sm);
    kiln_sched_exp_params ep = kiln_sched_exp_default_params();
    ep.iters = num_it;
    kiln_sched s;
    cr_assert_eq(kiln_sched_exp(&s, &ep), KILN_STATUS_OK);
    double lrs[1000], losses[1000], best = INFINITY;
    kiln_ema ema = kiln_ema_init(0.98);
    int64_t n = 0;
    for (int64_t i = 0; i < n_raw && i < 1000; i++) {
        lrs[n] = lr_at(&s, i);
        losses[n] = kiln_ema_add(&ema, raw[i]);
        n++;
        if (losses[n - 1] < best)
            best = losses[n - 1];
        if (stop_div && kiln_lr_find_diverged(losses[n - 1], best))
            break;
        if (i + 1 >= num_it)
            break;
    }
    cr_assert_eq(n, n_sm, "%s: stopped after %lld points, fastai after %lld", kase, (long long)n, (long long)n_sm);
    for (int64_t i = 0; i < n; i++)
        cr_assert(fabs(losses[i] - sm[i]) <= RTOL * fabs(sm[i]) || (isnan(losses[i]) && isnan(sm[i])),
                  "%s: smoothed loss %lld: %.9g vs %.9g", kase, (long long)i, losses[i], sm[i]);
    for (int k = 0; k < KILN_LR_SUGGEST_COUNT; k++) {
        double lr;
        int64_t idx;
        cr_assert_eq(kiln_lr_suggest_lr((kiln_lr_suggest)k, lrs, losses, n, num_it, &lr, &idx), KILN_STATUS_OK, "%s",
                     kiln_last_error());
        double want_lr = fx64(kase, 2 * k), want_idx = fx64(kase, 2 * k + 1);
        cr_assert_eq((double)idx, want_idx, "%s %s: index %lld, fastai %g", kase,
                     kiln_lr_suggest_name((kiln_lr_suggest)k), (long long)idx, want_idx);
        cr_assert(fabs(lr - want_lr) <= 1e-12 * want_lr, "%s %s: lr %.12g, fastai %.12g", kase,
                  kiln_lr_suggest_name((kiln_lr_suggest)k), lr, want_lr);
    }
}

Test(sched, lr_find_suggestions)
{
    lr_find_case("lrf_a", 100, true);  /* diverges, stops early */
    lr_find_case("lrf_b", 100, false); /* NaN at 80: suggestions stop before it */
    lr_find_case("lrf_c", 300, false);
    double lr, l2[3] = {1e-3, 1e-2, 1e-1}, loss[3] = {1, 0.5, 0.2};
    cr_assert_eq(kiln_lr_suggest_lr(KILN_LR_SUGGEST_VALLEY, l2, loss, 3, 100, &lr, NULL), KILN_STATUS_INVALID);
    ku_expect_error("points left", "too few points");
}

/* ---- named keys --------------------------------------------------------------------------- */

/* Every field of a and b equal: their text, and the lr and momentum they give. */
static void expect_same_sched(const kiln_sched *a, const kiln_sched *b, const char *what)
{
    char *x = kiln_sched_to_json(a), *y = kiln_sched_to_json(b);
    cr_assert(x && y, "%s", kiln_last_error());
    cr_assert_str_eq(x, y, "%s", what);
    for (int64_t i = 0; i < 2 * kiln_sched_total(a) + 3; i++) {
        double la, ma, lb, mb;
        cr_assert(!kiln_sched_at(a, i, &la, &ma) && !kiln_sched_at(b, i, &lb, &mb));
        cr_assert(la == lb && ma == mb, "%s: iteration %lld", what, (long long)i);
    }
    free(x), free(y);
}

Test(sched, json_round_trips_every_policy_exactly)
{
    kiln_sched s[KILN_SCHED_POLICY_COUNT];
    kiln_sched_const_params c = {.lr = 0.1 / 3, .mom = 0.85, .iters = 7};
    kiln_sched_exp_params e = {.start_lr = 1e-7, .end_lr = 10, .iters = 33, .linear = true, .mom = 0.9};
    kiln_sched_sgdr_params g = kiln_sched_sgdr_default_params();
    g.warmup07 = true, g.cycle_mult = 3, g.iters_per_epoch = 9;
    kiln_sched_cos_restarts_params r = kiln_sched_cos_restarts_default_params();
    r.eta_min = 1e-5, r.per_epoch = true;
    kiln_sched_clr_params l = kiln_sched_clr_default_params();
    l.mode = KILN_CLR_MODE_EXP_RANGE, l.gamma = 0.99994, l.step_size_down = 700, l.cycle_momentum = false;
    kiln_sched_one_cycle_params o = kiln_sched_one_cycle_default_params(KILN_ONE_CYCLE_VARIANT_TORCH);
    o.three_phase = true, o.linear = true, o.moms[1] = 0.8 + 1e-16;
    kiln_sched_stlr_params t = kiln_sched_stlr_default_params();
    kiln_sched_step_params p = {.lr = 0.3, .gamma = 0.5, .step = 4, .iters = 20, .mom = 0.9};
    cr_assert(!kiln_sched_const(&s[0], &c) && !kiln_sched_exp(&s[1], &e) && !kiln_sched_sgdr(&s[2], &g) &&
              !kiln_sched_cos_restarts(&s[3], &r) && !kiln_sched_clr(&s[4], &l) && !kiln_sched_one_cycle(&s[5], &o) &&
              !kiln_sched_stlr(&s[6], &t) && !kiln_sched_step(&s[7], &p), "%s", kiln_last_error());
    cr_assert(!kiln_sched_warmup(&s[5], 10, 0.1 / 7));
    for (int k = 0; k < KILN_SCHED_POLICY_COUNT; k++) {
        char *j = kiln_sched_to_json(&s[k]);
        cr_assert_not_null(j, "%s", kiln_last_error());
        kiln_sched back;
        cr_assert(!kiln_sched_from_json(j, &back), "%s: %s", j, kiln_last_error());
        cr_assert_eq(back.policy, s[k].policy);
        cr_assert(back.warmup_iters == s[k].warmup_iters && back.warmup_start == s[k].warmup_start);
        expect_same_sched(&s[k], &back, kiln_sched_policy_name(s[k].policy));
        free(j);
    }
    char *j = kiln_sched_to_json(&s[5]);
    cr_assert(strstr(j, "\"variant\":\"torch\"") && strstr(j, "\"moms\":[") && strstr(j, "\"three_phase\":true"), "%s", j);
    free(j);
    j = kiln_sched_to_json(&s[4]);
    cr_assert(strstr(j, "\"mode\":\"exp_range\""), "%s", j);
    free(j);
    kiln_sched never = {.policy = KILN_SCHED_POLICY_COUNT};
    cr_assert_null(kiln_sched_to_json(&never));
}

/* A file from before a field existed gets its default; a defining field may not be missing. */
Test(sched, json_missing_unknown_and_bad_keys)
{
    kiln_sched_one_cycle_params o = kiln_sched_one_cycle_default_params(KILN_ONE_CYCLE_VARIANT_FASTAI);
    o.cycle_momentum = false;
    kiln_sched s, back, keep;
    cr_assert(!kiln_sched_one_cycle(&s, &o));
    char *j = kiln_sched_to_json(&s);
    /* an option missing: its default (cycle_momentum true), the rest as written */
    char *old = ku_replace(j, "\"cycle_momentum\":false,", "");
    cr_assert(!kiln_sched_from_json(old, &back), "%s", kiln_last_error());
    cr_assert(back.p.one_cycle.cycle_momentum, "the default");
    back.p.one_cycle.cycle_momentum = false;
    expect_same_sched(&s, &back, "the others as saved");
    free(old);
    /* without the variant: fastai, whose defaults the other missing options take */
    old = ku_replace(j, "\"variant\":\"fastai\",", "");
    cr_assert(!kiln_sched_from_json(old, &back) && back.p.one_cycle.variant == KILN_ONE_CYCLE_VARIANT_FASTAI);
    free(old);
    /* without warm-up keys: none */
    old = ku_replace(j, "\"warmup_iters\":0,\"warmup_start\":0,", "");
    cr_assert(!kiln_sched_from_json(old, &back) && back.warmup_iters == 0, "%s", kiln_last_error());
    free(old);
    /* unknown keys: ignored */
    old = ku_replace(j, "\"params\":{", "\"params\":{\"added_in_2030\":[1],");
    cr_assert(!kiln_sched_from_json(old, &back), "%s", kiln_last_error());
    expect_same_sched(&s, &back, "unknown key");
    free(old);
    /* refused, naming the key; out untouched */
    const char *bad[][3] = {
        {"\"lr_max\":", "\"lr_mx\":", "\"lr_max\" is missing"},
        {"\"moms\":[0.94999999999999996,", "\"moms\":[", "\"moms\" must hold 3 numbers"},
        {"\"div\":25", "\"div\":\"25\"", "\"div\" is not a number"},
        {"\"linear\":false", "\"linear\":0", "\"linear\" is not true or false"},
        {"\"variant\":\"fastai\"", "\"variant\":\"keras\"", "\"variant\" is \"keras\""},
        {"\"iters\":100", "\"iters\":100.5", "\"iters\" is not an integer"},
        {"\"iters\":100", "\"iters\":0", "iters 0 must be >= 1"},
        {"\"total\":100", "\"total\":99", "\"total\" 99"},
        {"\"warmup_start\":0", "\"warmup_start\":2", "start 2 outside [0, 1]"},
        {"\"policy\":\"one-cycle\",", "", "\"policy\" is missing"},
        {",\"params\":{", ",\"parms\":{", "\"params\" is missing"},
    };
    memset(&keep, 0x5a, sizeof keep);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *b = ku_replace(j, bad[i][0], bad[i][1]);
        back = keep;
        cr_assert_eq(kiln_sched_from_json(b, &back), KILN_STATUS_FORMAT, "%s", b);
        ku_expect_error(bad[i][2], b);
        cr_assert(!memcmp(&back, &keep, sizeof back), "out untouched");
        free(b);
    }
    cr_assert_eq(kiln_sched_from_json("[]", &back), KILN_STATUS_FORMAT);
    cr_assert_eq(kiln_sched_from_json(NULL, &back), KILN_STATUS_FORMAT);
    free(j);
}
