/* Tests of the optimizers: ten steps of SGD (plain, momentum, nesterov, L2, dampening, a
 * per-step lr/momentum schedule), Adam (L2), AdamW (fastai defaults, layer groups with no-wd
 * bias/bn parameters, a one-cycle-like schedule) and clip_grad_norm_ against PyTorch 1.13
 * (tests/fixtures/gen_optim.py); frozen parameters and groups; clear_state; bit-identical
 * continuation after a state save/load; the no-wd name rule; bad input by message.
 * Tolerance for every parity check: |kiln - torch| <= 1e-7 + 1e-6 * |torch| after each of
 * the ten steps (f32 arithmetic in PyTorch's order; only PyTorch's vectorised FMAs differ).
 * Continuations and thread-independence are checked bit for bit (memcmp). */
#include "util/ku.h"
#include "kiln/optim.h"

#include <math.h>
#include <string.h>

#define STEPS 10
#define ATOL 1e-7
#define RTOL 1e-6
#define NP 4 /* parameters; the store also holds one buffer */

static const char *const PNAMES[NP] = {"lin.weight", "lin.bias", "bn.weight", "head.weight"};
/* store index of each parameter: bn.running_mean (a buffer) sits at index 3 */
static const size_t PIDX[NP] = {0, 1, 2, 4};

/* Per-step hyper-parameters of the scheduled cases (also in gen_optim.py; the fixture's f32
 * copies are checked against these). */
static const double SGD_LRS[STEPS] = {0.02, 0.05, 0.1, 0.08, 0.06, 0.04, 0.03, 0.02, 0.01, 0.005};
static const double SGD_MOMS[STEPS] = {0.0, 0.0, 0.95, 0.9, 0.85, 0.85, 0.88, 0.9, 0.93, 0.95};
static const double ADAM_F[STEPS] = {0.04, 0.3, 0.7, 1.0, 0.9, 0.7, 0.5, 0.3, 0.1, 0.01};
static const double ADAM_B1[STEPS] = {0.95, 0.92, 0.88, 0.85, 0.86, 0.88, 0.9, 0.92, 0.94, 0.95};
static const double CLIP_SCALE[STEPS] = {0.05, 1.0, 0.1, 2.0, 0.02, 0.5, 0.03, 3.0, 0.01, 0.2};

/* ---- helpers ------------------------------------------------------------------------------ */

static kiln_st_file *g_fx;

static void fx_open(void) { g_fx = ku_fixture("optim"); }
static void fx_close(void) { kiln_st_close(g_fx); }

/* Copies n floats of fixture tensor name, starting at element off, into dst. */
static void fx_get(const char *name, size_t off, float *dst, size_t n)
{
    kiln_dtype dt;
    int nd;
    int64_t sh[KILN_MAX_DIMS];
    const void *d;
    size_t nb;
    cr_assert(kiln_st_info(g_fx, name, &dt, &nd, sh, &d, &nb) == KILN_STATUS_OK, "fixture %s: %s", name,
              kiln_last_error());
    cr_assert(dt == KILN_DTYPE_F32 && (off + n) * sizeof(float) <= nb, "fixture %s: bad dtype or size", name);
    memcpy(dst, (const float *)d + off, n * sizeof(float));
}

static kiln_tensor *P(kiln_store *s, int j) { return kiln_store_at(s, PIDX[j]); }

/* The test store, parameters set to the fixture's initial values. */
static kiln_store *make_store(void)
{
    kiln_store *s = kiln_store_new();
    cr_assert(s);
    cr_assert(kiln_store_param(s, "lin.weight", 2, (int64_t[]){4, 5}));
    cr_assert(kiln_store_param(s, "lin.bias", 1, (int64_t[]){4}));
    cr_assert(kiln_store_param(s, "bn.weight", 1, (int64_t[]){4}));
    cr_assert(kiln_store_buffer(s, "bn.running_mean", 1, (int64_t[]){4}));
    cr_assert(kiln_store_param(s, "head.weight", 2, (int64_t[]){3, 4}));
    cr_assert(kiln_store_alloc(s) == KILN_STATUS_OK);
    for (int j = 0; j < NP; j++) {
        char name[64];
        snprintf(name, sizeof name, "init.%s", PNAMES[j]);
        fx_get(name, 0, P(s, j)->data, (size_t)kiln_numel(P(s, j)));
    }
    return s;
}

/* Sets every parameter's gradient to step k's fixture gradient. */
static void set_grads(kiln_store *s, int k)
{
    for (int j = 0; j < NP; j++) {
        char name[64];
        size_t n = (size_t)kiln_numel(P(s, j));
        snprintf(name, sizeof name, "grads.%s", PNAMES[j]);
        fx_get(name, (size_t)k * n, P(s, j)->grad->data, n);
    }
}

static void expect_close(const float *got, const float *want, size_t n, const char *what, int step)
{
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]), tol = ATOL + RTOL * fabs((double)want[i]);
        cr_assert(err <= tol, "%s after step %d: element %zu is %.9g, expected %.9g (|diff| %.3g > %.1g + %.1g*|ref|)",
                  what, step, i, got[i], want[i], err, ATOL, RTOL);
    }
}

/* Compares parameter j with "<kase>.<name>" row k (the value after step k+1). */
static void expect_param(kiln_store *s, const char *kase, int j, int k)
{
    char name[96];
    float want[64];
    size_t n = (size_t)kiln_numel(P(s, j));
    snprintf(name, sizeof name, "%s.%s", kase, PNAMES[j]);
    fx_get(name, (size_t)k * n, want, n);
    expect_close(P(s, j)->data, want, n, name, k + 1);
}

typedef void (*hook_fn)(kiln_optim *opt, kiln_store *s, int k);

/* Runs steps [k0, k1): gradients of step k, hook, step. With kase, compares each step's
 * parameters (skipping parameter `skip`, -1 for none) with the fixture. */
static void run(kiln_optim *opt, kiln_store *s, int k0, int k1, hook_fn hook, const char *kase, int skip)
{
    for (int k = k0; k < k1; k++) {
        set_grads(s, k);
        if (hook) hook(opt, s, k);
        cr_assert(kiln_optim_step(opt) == KILN_STATUS_OK, "step %d: %s", k + 1, kiln_last_error());
        for (int j = 0; kase && j < NP; j++)
            if (j != skip) expect_param(s, kase, j, k);
    }
}

/* Compares the optimizer's state entry `state` of every parameter with the fixture. */
static void expect_state(kiln_optim *opt, kiln_store *s, const char *kase, const char *state)
{
    kiln_optim_state e = {0};
    for (size_t i = 0; i < kiln_optim_state_count(opt); i++) {
        cr_assert(kiln_optim_state_at(opt, i, &e) == KILN_STATUS_OK);
        if (!strcmp(e.name, state)) break;
        e.name = NULL;
    }
    cr_assert(e.name, "no state '%s'", state);
    const float *flat = kiln_store_flat(s, KILN_STORE_PARAMS, NULL);
    for (int j = 0; j < NP; j++) {
        char name[128];
        float want[64];
        size_t n = (size_t)kiln_numel(P(s, j)), off = (size_t)((float *)P(s, j)->data - flat);
        snprintf(name, sizeof name, "%s.state.%s.%s", kase, state, PNAMES[j]);
        fx_get(name, 0, want, n);
        expect_close((const float *)e.data + off, want, n, name, STEPS);
    }
}

static int64_t step_of(kiln_optim *opt, size_t store_index)
{
    kiln_optim_state e;
    cr_assert(kiln_optim_state_at(opt, kiln_optim_state_count(opt) - 1, &e) == KILN_STATUS_OK);
    cr_assert(!strcmp(e.name, "step") && e.dtype == KILN_DTYPE_I64);
    return ((const int64_t *)e.data)[store_index];
}

/* ---- optimizer configurations of the fixture cases ------------------------------------------ */

static kiln_optim *sgd(kiln_store *s, double lr, double mom, double damp, bool nesterov, double wd)
{
    kiln_sgd_params p = kiln_sgd_default_params();
    p.lr = lr;
    p.momentum = mom;
    p.dampening = damp;
    p.nesterov = nesterov;
    p.weight_decay = wd;
    kiln_optim *o = kiln_optim_new_sgd(s, &p);
    cr_assert(o, "sgd: %s", kiln_last_error());
    return o;
}

/* adamw_groups: lin.* and bn.* in group 0 (lr 1e-3), head.* in group 1 (lr 1e-2), wd 0.1
 * decoupled, no wd on lin.bias and bn.weight (marked by the name rule). */
static kiln_optim *adamw_groups(kiln_store *s)
{
    kiln_adam_params p = kiln_adam_default_params();
    p.weight_decay = 0.1;
    kiln_optim *o = kiln_optim_new_adam(s, &p);
    cr_assert(o, "adam: %s", kiln_last_error());
    cr_assert(kiln_optim_add_group(o, &(kiln_optim_group){.lr = 1e-2, .mom = 0.9, .wd = 0.1}) == 1);
    cr_assert(kiln_optim_set_group_by_prefix(o, "head.", 1) == KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_optim_mark_no_wd_by_name(o, false), 2);
    return o;
}

static void hook_sgd_sched(kiln_optim *opt, kiln_store *s, int k)
{
    cr_assert(kiln_optim_set_lr(opt, KILN_OPTIM_ALL_GROUPS, SGD_LRS[k]) == KILN_STATUS_OK);
    cr_assert(kiln_optim_set_mom(opt, KILN_OPTIM_ALL_GROUPS, SGD_MOMS[k]) == KILN_STATUS_OK);
}

static void hook_adam_sched(kiln_optim *opt, kiln_store *s, int k)
{
    cr_assert(kiln_optim_set_lr(opt, 0, 1e-3 * ADAM_F[k]) == KILN_STATUS_OK);
    cr_assert(kiln_optim_set_lr(opt, 1, 1e-2 * ADAM_F[k]) == KILN_STATUS_OK);
    cr_assert(kiln_optim_set_mom(opt, KILN_OPTIM_ALL_GROUPS, ADAM_B1[k]) == KILN_STATUS_OK);
}

static double g_norms[STEPS];
static void hook_clip(kiln_optim *opt, kiln_store *s, int k)
{
    for (int j = 0; j < NP; j++) {
        float *g = P(s, j)->grad->data;
        for (int64_t i = 0; i < kiln_numel(P(s, j)); i++) g[i] = g[i] * (float)CLIP_SCALE[k];
    }
    cr_assert(kiln_clip_grad_norm(s, 1.0, &g_norms[k]) == KILN_STATUS_OK, "%s", kiln_last_error());
}

/* Asserts the fixture's f32 copy of a schedule matches the test's doubles. */
static void expect_sched(const char *name, const double *v)
{
    float f[STEPS];
    fx_get(name, 0, f, STEPS);
    for (int k = 0; k < STEPS; k++) cr_assert_eq(f[k], (float)v[k], "%s[%d] differs from the test's copy", name, k);
}

/* ---- parity with PyTorch -------------------------------------------------------------------- */

TestSuite(optim, .init = fx_open, .fini = fx_close);

static void sgd_case(const char *kase, double lr, double mom, double damp, bool nesterov, double wd)
{
    kiln_store *s = make_store();
    kiln_optim *o = sgd(s, lr, mom, damp, nesterov, wd);
    run(o, s, 0, STEPS, NULL, kase, -1);
    kiln_optim_free(o);
    kiln_store_free(s);
}

Test(optim, sgd_plain) { sgd_case("sgd_plain", 0.1, 0, 0, false, 0); }
Test(optim, sgd_nesterov) { sgd_case("sgd_nesterov", 0.05, 0.9, 0, true, 0); }
Test(optim, sgd_l2) { sgd_case("sgd_l2", 0.1, 0.9, 0, false, 0.01); }
Test(optim, sgd_dampening) { sgd_case("sgd_damp", 0.1, 0.8, 0.3, false, 0); }

Test(optim, sgd_momentum_and_state)
{
    kiln_store *s = make_store();
    kiln_optim *o = sgd(s, 0.1, 0.9, 0, false, 0);
    run(o, s, 0, STEPS, NULL, "sgd_mom", -1);
    expect_state(o, s, "sgd_mom", "momentum_buffer");
    cr_assert_eq(step_of(o, 0), STEPS);
    cr_assert_eq(step_of(o, 3), 0, "the buffer entry has no step");
    kiln_optim_free(o);
    kiln_store_free(s);
}

/* lr/momentum per step; momentum 0 for two steps, then the buffer starts from a gradient */
Test(optim, sgd_schedule)
{
    expect_sched("sgd_sched.lrs", SGD_LRS);
    expect_sched("sgd_sched.moms", SGD_MOMS);
    kiln_store *s = make_store();
    kiln_optim *o = sgd(s, 0.1, 0.9, 0, false, 0);
    run(o, s, 0, STEPS, hook_sgd_sched, "sgd_sched", -1);
    cr_assert_eq(step_of(o, 0), STEPS - 2, "two steps ran without momentum");
    kiln_optim_free(o);
    kiln_store_free(s);
}

/* L2 weight decay on every parameter: marks are ignored while bn_bias_wd is true */
Test(optim, sgd_l2_bn_bias_wd_ignores_marks)
{
    kiln_store *s = make_store();
    kiln_sgd_params p = kiln_sgd_default_params();
    p.lr = 0.1;
    p.momentum = 0.9;
    p.weight_decay = 0.01;
    p.bn_bias_wd = true;
    kiln_optim *o = kiln_optim_new_sgd(s, &p);
    cr_assert(o);
    cr_assert_eq(kiln_optim_mark_no_wd_by_name(o, true), 2);
    run(o, s, 0, STEPS, NULL, "sgd_l2", -1);
    kiln_optim_free(o);
    kiln_store_free(s);
}

Test(optim, adam_l2_and_state)
{
    kiln_store *s = make_store();
    kiln_adam_params p = {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 1e-2,
                          .decoupled_wd = false, .bn_bias_wd = false};
    kiln_optim *o = kiln_optim_new_adam(s, &p);
    cr_assert(o, "%s", kiln_last_error());
    run(o, s, 0, STEPS, NULL, "adam_l2", -1);
    expect_state(o, s, "adam_l2", "exp_avg");
    expect_state(o, s, "adam_l2", "exp_avg_sq");
    for (int j = 0; j < NP; j++) cr_assert_eq(step_of(o, PIDX[j]), STEPS);
    kiln_optim_free(o);
    kiln_store_free(s);
}

/* kiln_adam_default_params is fastai's Adam (betas 0.9/0.99, eps 1e-5, wd 0.01 decoupled) */
Test(optim, adamw_fastai_defaults)
{
    kiln_store *s = make_store();
    kiln_adam_params p = kiln_adam_default_params();
    cr_assert(p.beta1 == 0.9 && p.beta2 == 0.99 && p.eps == 1e-5 && p.weight_decay == 0.01 && p.decoupled_wd &&
              !p.bn_bias_wd);
    p.lr = 1e-2;
    kiln_optim *o = kiln_optim_new_adam(s, &p);
    cr_assert(o);
    run(o, s, 0, STEPS, NULL, "adamw_fastai", -1);
    expect_state(o, s, "adamw_fastai", "exp_avg");
    expect_state(o, s, "adamw_fastai", "exp_avg_sq");
    kiln_optim_free(o);
    kiln_store_free(s);
}

Test(optim, adamw_groups_no_wd)
{
    kiln_store *s = make_store();
    kiln_optim *o = adamw_groups(s);
    cr_assert_eq(kiln_optim_n_groups(o), 2);
    cr_assert_eq(kiln_optim_group_of(o, 4), 1);
    cr_assert_eq(kiln_optim_group_of(o, 2), 0);
    cr_assert(kiln_optim_is_no_wd(o, 1) && kiln_optim_is_no_wd(o, 2) && !kiln_optim_is_no_wd(o, 0));
    run(o, s, 0, STEPS, NULL, "adamw_groups", -1);
    kiln_optim_free(o);
    kiln_store_free(s);
}

/* the same groups via kiln_optim_set_groups and explicit marks */
Test(optim, adamw_groups_by_array)
{
    kiln_store *s = make_store();
    kiln_adam_params p = kiln_adam_default_params();
    p.weight_decay = 0.1;
    kiln_optim *o = kiln_optim_new_adam(s, &p);
    cr_assert(o);
    cr_assert(kiln_optim_set_groups(o, 2, (int[]){0, 0, 0, 7 /* buffer: ignored */, 1}) == KILN_STATUS_OK, "%s",
              kiln_last_error());
    cr_assert(kiln_optim_set_lr(o, 1, 1e-2) == KILN_STATUS_OK);
    cr_assert(kiln_optim_set_no_wd(o, 1, true) == KILN_STATUS_OK);
    cr_assert(kiln_optim_set_no_wd(o, 2, true) == KILN_STATUS_OK);
    kiln_optim_group g;
    cr_assert(kiln_optim_get_group(o, 1, &g) == KILN_STATUS_OK);
    cr_assert(g.lr == 1e-2 && g.mom == 0.9 && g.wd == 0.1 && !g.frozen);
    run(o, s, 0, STEPS, NULL, "adamw_groups", -1);
    kiln_optim_free(o);
    kiln_store_free(s);
}

/* discriminative lrs scaled per step and beta1 cycled, as one-cycle does */
Test(optim, adamw_schedule)
{
    expect_sched("adamw_sched.lrs", ADAM_F);
    expect_sched("adamw_sched.moms", ADAM_B1);
    kiln_store *s = make_store();
    kiln_optim *o = adamw_groups(s);
    run(o, s, 0, STEPS, hook_adam_sched, "adamw_sched", -1);
    kiln_optim_free(o);
    kiln_store_free(s);
}

Test(optim, clip_grad_norm_then_sgd)
{
    expect_sched("clip.scale", CLIP_SCALE);
    kiln_store *s = make_store();
    kiln_optim *o = sgd(s, 0.1, 0.9, 0, false, 0);
    run(o, s, 0, STEPS, hook_clip, "clip", -1);
    float want[STEPS], got[STEPS];
    fx_get("clip.norms", 0, want, STEPS);
    int clipped = 0;
    for (int k = 0; k < STEPS; k++) {
        got[k] = (float)g_norms[k];
        clipped += g_norms[k] > 1.0;
    }
    expect_close(got, want, STEPS, "clip.norms", STEPS);
    cr_assert(clipped >= 3 && clipped <= 7, "the case should clip some steps, not all (%d)", clipped);
    kiln_optim_free(o);
    kiln_store_free(s);
}

/* ---- frozen parameters and groups ------------------------------------------------------------ */

static void expect_unchanged(kiln_store *s, int j)
{
    float init[64];
    char name[64];
    size_t n = (size_t)kiln_numel(P(s, j));
    snprintf(name, sizeof name, "init.%s", PNAMES[j]);
    fx_get(name, 0, init, n);
    cr_assert(!memcmp(P(s, j)->data, init, n * sizeof(float)), "frozen %s moved", PNAMES[j]);
}

/* fastai freeze: requires_grad off; the others still follow PyTorch (steps are per parameter) */
Test(optim, frozen_param_does_not_move)
{
    kiln_store *s = make_store();
    kiln_adam_params p = kiln_adam_default_params();
    p.lr = 1e-2;
    kiln_optim *o = kiln_optim_new_adam(s, &p);
    P(s, 2)->requires_grad = false;
    run(o, s, 0, STEPS, NULL, "adamw_fastai", 2);
    expect_unchanged(s, 2);
    cr_assert_eq(step_of(o, PIDX[2]), 0);
    kiln_optim_state e;
    kiln_optim_state_at(o, 0, &e);
    const float *flat = kiln_store_flat(s, KILN_STORE_PARAMS, NULL);
    size_t off = (size_t)((float *)P(s, 2)->data - flat);
    for (int i = 0; i < 4; i++) cr_assert_eq(((float *)e.data)[off + i], 0.0f, "frozen parameter's state changed");
    kiln_optim_free(o);
    kiln_store_free(s);
}

/* zero_grad zeroes the grads of the parameters with requires_grad and leaves a frozen one's
 * slice as it is (no gradient is computed for it), for every pattern of frozen parameters
 * (runs of adjacent trainable grads are zeroed together). */
Test(optim, zero_grad_skips_frozen_parameters)
{
    kiln_store *s = make_store();
    kiln_adam_params ap = kiln_adam_default_params();
    kiln_optim *o = kiln_optim_new_adam(s, &ap);
    cr_assert(o, "%s", kiln_last_error());
    for (unsigned mask = 0; mask < 1u << NP; mask++) { /* bit j: parameter j frozen */
        for (int j = 0; j < NP; j++) {
            P(s, j)->requires_grad = !(mask >> j & 1);
            for (int64_t k = 0; k < kiln_numel(P(s, j)); k++) ((float *)P(s, j)->grad->data)[k] = 1.5f + (float)j;
        }
        kiln_optim_zero_grad(o);
        for (int j = 0; j < NP; j++) {
            float want = mask >> j & 1 ? 1.5f + (float)j : 0.0f;
            for (int64_t k = 0; k < kiln_numel(P(s, j)); k++)
                cr_assert_eq(((float *)P(s, j)->grad->data)[k], want, "mask %u: %s grad[%lld]", mask, PNAMES[j],
                             (long long)k);
        }
    }
    kiln_optim_free(o);
    kiln_store_free(s);
}

Test(optim, frozen_group_does_not_move)
{
    kiln_store *s = make_store();
    kiln_adam_params p = kiln_adam_default_params();
    p.lr = 1e-2;
    kiln_optim *o = kiln_optim_new_adam(s, &p);
    cr_assert_eq(kiln_optim_add_group(o, NULL), 1);
    cr_assert(kiln_optim_set_group(o, 4, 1) == KILN_STATUS_OK);
    cr_assert(kiln_optim_set_frozen(o, 1, true) == KILN_STATUS_OK);
    run(o, s, 0, 5, NULL, "adamw_fastai", 3);
    expect_unchanged(s, 3);
    /* unfrozen later, the group starts its own steps (a fresh state, as after clear_state) */
    cr_assert(kiln_optim_set_frozen(o, KILN_OPTIM_ALL_GROUPS, false) == KILN_STATUS_OK);
    run(o, s, 5, 6, NULL, NULL, -1);
    cr_assert_eq(step_of(o, 4), 1);
    cr_assert_eq(step_of(o, 0), 6);
    kiln_optim_free(o);
    kiln_store_free(s);
}

/* ---- clear_state and save/load ------------------------------------------------------------------ */

static void snapshot_params(kiln_store *s, float *dst)
{
    size_t n;
    float *p = kiln_store_flat(s, KILN_STORE_PARAMS, &n);
    memcpy(dst, p, n * sizeof(float));
}

static void restore_params(kiln_store *s, const float *src)
{
    size_t n;
    float *p = kiln_store_flat(s, KILN_STORE_PARAMS, &n);
    memcpy(p, src, n * sizeof(float));
}

Test(optim, clear_state_equals_fresh_optimizer)
{
    float mid[40], a[40], b[40];
    kiln_store *s = make_store();
    kiln_optim *o = adamw_groups(s);
    run(o, s, 0, 5, hook_adam_sched, NULL, -1);
    snapshot_params(s, mid);
    kiln_optim_clear_state(o);
    for (size_t i = 0; i < kiln_optim_state_count(o); i++) {
        kiln_optim_state e;
        kiln_optim_state_at(o, i, &e);
        for (size_t j = 0; j < e.numel * kiln_dtype_size(e.dtype); j++)
            cr_assert_eq(((unsigned char *)e.data)[j], 0, "state '%s' not cleared", e.name);
    }
    cr_assert_eq(kiln_optim_n_groups(o), 2, "groups survive clear_state");
    cr_assert(kiln_optim_is_no_wd(o, 1), "marks survive clear_state");
    run(o, s, 5, STEPS, hook_adam_sched, NULL, -1);
    snapshot_params(s, a);

    kiln_store *s2 = make_store();
    restore_params(s2, mid);
    kiln_optim *o2 = adamw_groups(s2);
    run(o2, s2, 5, STEPS, hook_adam_sched, NULL, -1);
    snapshot_params(s2, b);
    cr_assert(!memcmp(a, b, sizeof a), "clear_state + steps differs from a fresh optimizer");
    kiln_optim_free(o);
    kiln_optim_free(o2);
    kiln_store_free(s);
    kiln_store_free(s2);
}

typedef kiln_optim *(*make_fn)(kiln_store *s);
static kiln_optim *make_sgd_sched(kiln_store *s) { return sgd(s, 0.1, 0.9, 0, false, 0.01); }

/* 10 steps straight vs 5 steps, state copied out, a new store + optimizer, state loaded, 5 more */
static void round_trip(make_fn make, hook_fn hook)
{
    float want[40], mid[40], got[40];
    kiln_store *s = make_store();
    kiln_optim *o = make(s);
    run(o, s, 0, STEPS, hook, NULL, -1);
    snapshot_params(s, want);
    kiln_optim_free(o);
    kiln_store_free(s);

    s = make_store();
    o = make(s);
    run(o, s, 0, 5, hook, NULL, -1);
    snapshot_params(s, mid);
    size_t ns = kiln_optim_state_count(o);
    kiln_optim_state saved[4];
    cr_assert(ns <= 4);
    for (size_t i = 0; i < ns; i++) {
        cr_assert(kiln_optim_state_at(o, i, &saved[i]) == KILN_STATUS_OK);
        size_t bytes = saved[i].numel * kiln_dtype_size(saved[i].dtype);
        void *copy = malloc(bytes);
        memcpy(copy, saved[i].data, bytes);
        saved[i].data = copy;
    }
    kiln_optim_free(o);
    kiln_store_free(s);

    s = make_store();
    restore_params(s, mid);
    o = make(s);
    for (size_t i = 0; i < ns; i++) {
        cr_assert(kiln_optim_state_load(o, saved[i].name, saved[i].dtype, saved[i].data, saved[i].numel) ==
                      KILN_STATUS_OK, "load %s: %s", saved[i].name, kiln_last_error());
        free(saved[i].data);
    }
    run(o, s, 5, STEPS, hook, NULL, -1);
    snapshot_params(s, got);
    cr_assert(!memcmp(got, want, sizeof got), "continuation after state load is not bit-identical");
    kiln_optim_free(o);
    kiln_store_free(s);
}

Test(optim, state_round_trip_adamw) { round_trip(adamw_groups, hook_adam_sched); }
Test(optim, state_round_trip_sgd) { round_trip(make_sgd_sched, hook_sgd_sched); }

Test(optim, state_names)
{
    kiln_store *s = make_store();
    kiln_optim *a = adamw_groups(s), *g = sgd(s, 0.1, 0.9, 0, false, 0);
    const char *an[] = {"exp_avg", "exp_avg_sq", "step"}, *gn[] = {"momentum_buffer", "step"};
    cr_assert_eq(kiln_optim_state_count(a), 3);
    cr_assert_eq(kiln_optim_state_count(g), 2);
    kiln_optim_state e;
    for (size_t i = 0; i < 3; i++) {
        cr_assert(kiln_optim_state_at(a, i, &e) == KILN_STATUS_OK);
        cr_assert_str_eq(e.name, an[i]);
        cr_assert_eq(e.numel, i < 2 ? 40u : 5u);
    }
    for (size_t i = 0; i < 2; i++) {
        cr_assert(kiln_optim_state_at(g, i, &e) == KILN_STATUS_OK);
        cr_assert_str_eq(e.name, gn[i]);
    }
    cr_assert(kiln_optim_state_at(g, 2, &e) == KILN_STATUS_INVALID);
    ku_expect_error("out of range", "state index");
    kiln_optim_free(a);
    kiln_optim_free(g);
    kiln_store_free(s);
}

/* ---- large parameters: the OpenMP loops give the bits of small ones ------------------------------ */

Test(optim, big_param_matches_small_params)
{
    enum { N = 100000, PARTS = 10 };
    kiln_store *big = kiln_store_new(), *small = kiln_store_new();
    cr_assert(kiln_store_param(big, "w", 1, (int64_t[]){N}));
    for (int i = 0; i < PARTS; i++) {
        char name[16];
        snprintf(name, sizeof name, "w%d", i);
        cr_assert(kiln_store_param(small, name, 1, (int64_t[]){N / PARTS}));
    }
    cr_assert(kiln_store_alloc(big) == KILN_STATUS_OK && kiln_store_alloc(small) == KILN_STATUS_OK);
    kiln_ctx *ctx = ku_ctx();
    float *pb = kiln_store_flat(big, KILN_STORE_PARAMS, NULL), *ps = kiln_store_flat(small, KILN_STORE_PARAMS, NULL);
    float *gb = kiln_store_flat(big, KILN_STORE_GRADS, NULL), *gs = kiln_store_flat(small, KILN_STORE_GRADS, NULL);
    kiln_rng_normal(ctx, pb, N, 0, 1);
    memcpy(ps, pb, N * sizeof(float));
    kiln_adam_params p = kiln_adam_default_params();
    kiln_optim *ob = kiln_optim_new_adam(big, &p), *os = kiln_optim_new_adam(small, &p);
    cr_assert(ob && os);
    for (int k = 0; k < 3; k++) {
        kiln_rng_normal(ctx, gb, N, 0, 1);
        memcpy(gs, gb, N * sizeof(float));
        double nb, ns;
        cr_assert(kiln_clip_grad_norm(big, 100.0, &nb) == KILN_STATUS_OK);
        cr_assert(kiln_clip_grad_norm(small, 100.0, &ns) == KILN_STATUS_OK);
        cr_assert(fabs(nb - ns) <= 1e-12 * nb, "norms %.17g vs %.17g", nb, ns);
        cr_assert(nb > 100.0, "the case should clip");
        cr_assert(!memcmp(gb, gs, N * sizeof(float)), "clipped gradients differ");
        cr_assert(kiln_optim_step(ob) == KILN_STATUS_OK && kiln_optim_step(os) == KILN_STATUS_OK);
    }
    cr_assert(!memcmp(pb, ps, N * sizeof(float)), "big parameter differs from the same values split in ten");
    kiln_optim_free(ob);
    kiln_optim_free(os);
    kiln_store_free(big);
    kiln_store_free(small);
    ku_ctx_free(ctx);
}

Test(optim, clip_below_max_leaves_grads)
{
    kiln_store *s = make_store();
    set_grads(s, 0);
    size_t n;
    float before[40], *g = kiln_store_flat(s, KILN_STORE_GRADS, &n);
    memcpy(before, g, sizeof before);
    double norm = 0, ref = 0;
    for (size_t i = 0; i < n; i++) ref += (double)g[i] * g[i];
    cr_assert(kiln_clip_grad_norm(s, 1e6, &norm) == KILN_STATUS_OK);
    cr_assert(fabs(norm - sqrt(ref)) <= 1e-12 * norm);
    cr_assert(!memcmp(before, g, sizeof before));
    kiln_store_free(s);
}

/* ---- the no-wd name rule ----------------------------------------------------------------------- */

Test(optim, no_wd_name_rule)
{
    const char *yes[] = {"bias", "fc.bias", "layer1.0.bn2.weight", "bn1.bias", "bn_final.weight", "norm.weight",
                         "encoder.norm1.bias", "rnn.bias_ih_l0", "0.bn.running"};
    const char *no[] = {"fc.weight", "conv1.weight", "layer1.0.conv2.weight", "downsample.1.weight",
                        "biased.weight", "abn.weight", "embedding.weight", "normal_layer", ""};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        cr_assert(kiln_optim_name_is_no_wd(yes[i]), "'%s' should be no-wd", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        cr_assert(!kiln_optim_name_is_no_wd(no[i]), "'%s' should get wd", no[i]);
}

/* ---- bad input ----------------------------------------------------------------------------------- */

Test(optim, bad_constructor_params)
{
    kiln_store *s = make_store();
    kiln_sgd_params sp = kiln_sgd_default_params();
    sp.lr = -0.1;
    cr_assert_null(kiln_optim_new_sgd(s, &sp));
    ku_expect_error("sgd: lr -0.1 must be >= 0", "negative lr");
    sp = kiln_sgd_default_params();
    sp.nesterov = true;
    cr_assert_null(kiln_optim_new_sgd(s, &sp));
    ku_expect_error("nesterov needs momentum > 0", "nesterov without momentum");
    sp = kiln_sgd_default_params();
    sp.momentum = 1.5;
    cr_assert_null(kiln_optim_new_sgd(s, &sp));
    ku_expect_error("momentum 1.5 outside [0, 1)", "momentum");

    kiln_adam_params ap = kiln_adam_default_params();
    ap.beta1 = 1.0;
    cr_assert_null(kiln_optim_new_adam(s, &ap));
    ku_expect_error("adam: beta1 1 outside [0, 1)", "beta1 = 1");
    ap = kiln_adam_default_params();
    ap.beta2 = -0.5;
    cr_assert_null(kiln_optim_new_adam(s, &ap));
    ku_expect_error("beta2 -0.5 outside [0, 1)", "beta2 < 0");
    ap = kiln_adam_default_params();
    ap.eps = NAN;
    cr_assert_null(kiln_optim_new_adam(s, &ap));
    ku_expect_error("eps", "eps NaN");
    ap = kiln_adam_default_params();
    ap.weight_decay = -1;
    cr_assert_null(kiln_optim_new_adam(s, &ap));
    ku_expect_error("weight_decay -1", "negative wd");

    ap = kiln_adam_default_params();
    kiln_store *raw = kiln_store_new();
    cr_assert(kiln_store_param(raw, "w", 1, (int64_t[]){3}));
    cr_assert_null(kiln_optim_new_adam(raw, &ap));
    ku_expect_error("not allocated", "unallocated store");
    kiln_store_free(raw);
    kiln_store_free(s);
}

Test(optim, bad_group_calls)
{
    kiln_store *s = make_store();
    kiln_optim *o = adamw_groups(s);
    cr_assert(kiln_optim_set_lr(o, 5, 1e-3) == KILN_STATUS_INVALID);
    ku_expect_error("optim: unknown group 5 (2 groups)", "set_lr unknown group");
    cr_assert(kiln_optim_set_lr(o, 0, -1e-3) == KILN_STATUS_INVALID);
    ku_expect_error("lr -0.001 must be >= 0", "set_lr negative");
    cr_assert(kiln_optim_set_lr(o, 0, NAN) == KILN_STATUS_INVALID);
    ku_expect_error("lr nan", "set_lr NaN");
    cr_assert(kiln_optim_set_mom(o, KILN_OPTIM_ALL_GROUPS, 1.0) == KILN_STATUS_INVALID);
    ku_expect_error("beta1 1 outside [0, 1)", "set_mom 1");
    cr_assert(kiln_optim_set_wd(o, -2, 0.1) == KILN_STATUS_INVALID);
    ku_expect_error("unknown group -2", "set_wd -2");
    cr_assert(kiln_optim_set_frozen(o, 2, true) == KILN_STATUS_INVALID);
    ku_expect_error("unknown group 2", "set_frozen");
    kiln_optim_group g;
    cr_assert(kiln_optim_get_group(o, KILN_OPTIM_ALL_GROUPS, &g) == KILN_STATUS_INVALID);
    ku_expect_error("unknown group -1", "get_group all");
    cr_assert(kiln_optim_set_group(o, 0, 2) == KILN_STATUS_INVALID);
    ku_expect_error("unknown group 2", "set_group");
    cr_assert(kiln_optim_set_group(o, 3, 0) == KILN_STATUS_INVALID);
    ku_expect_error("'bn.running_mean') is a buffer", "set_group on a buffer");
    cr_assert(kiln_optim_set_no_wd(o, 99, true) == KILN_STATUS_INVALID);
    ku_expect_error("index 99 out of range", "set_no_wd");
    cr_assert(kiln_optim_set_groups(o, 2, (int[]){0, 1, 2, 0, 0}) == KILN_STATUS_INVALID);
    ku_expect_error("'bn.weight' given group 2 (of 2 groups)", "set_groups");
    cr_assert_eq(kiln_optim_group_of(o, 4), 1, "a failed set_groups changes nothing");
    cr_assert(kiln_optim_set_group_by_prefix(o, "decoder.", 0) == KILN_STATUS_INVALID);
    ku_expect_error("no parameter name starts with 'decoder.'", "prefix");
    cr_assert_eq(kiln_optim_add_group(o, &(kiln_optim_group){.lr = -1}), -1);
    ku_expect_error("lr -1", "add_group");
    kiln_optim_free(o);
    kiln_store_free(s);
}

Test(optim, bad_state_load_and_clip)
{
    kiln_store *s = make_store();
    kiln_optim *o = adamw_groups(s);
    float buf[40] = {0};
    int64_t steps[5] = {1, 1, 1, 0, -1};
    cr_assert(kiln_optim_state_load(o, "momentum_buffer", KILN_DTYPE_F32, buf, 40) == KILN_STATUS_INVALID);
    ku_expect_error("adam has no state 'momentum_buffer'", "wrong name");
    cr_assert(kiln_optim_state_load(o, "exp_avg", KILN_DTYPE_F32, buf, 39) == KILN_STATUS_INVALID);
    ku_expect_error("'exp_avg' has 40 elements, got 39", "wrong numel");
    cr_assert(kiln_optim_state_load(o, "exp_avg", KILN_DTYPE_I64, buf, 40) == KILN_STATUS_INVALID);
    ku_expect_error("'exp_avg' is f32, got i64", "wrong dtype");
    cr_assert(kiln_optim_state_load(o, "step", KILN_DTYPE_I64, steps, 5) == KILN_STATUS_INVALID);
    ku_expect_error("entry 4 is -1 < 0", "negative step");
    cr_assert(kiln_clip_grad_norm(s, 0.0, NULL) == KILN_STATUS_INVALID);
    ku_expect_error("max_norm 0 must be > 0", "clip max_norm");
    cr_assert(kiln_clip_grad_norm(s, NAN, NULL) == KILN_STATUS_INVALID);
    ku_expect_error("max_norm nan", "clip NaN");
    kiln_optim_free(o);
    kiln_store_free(s);
}
