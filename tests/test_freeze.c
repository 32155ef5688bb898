/* Freezing, train_bn, discriminative learning rates and fine_tune as fastai v2 (fastai
 * reference section 4): on a tiny vision model (a width-4 ResNet body with one block per
 * layer, fastai's head, three layer groups {stem..layer2}, {layer3, layer4}, {head}) and
 * tiny synthetic images, which parameters change in each phase of fine_tune and which stay
 * bit for bit, the per-group learning rates at chosen iterations against fastai's formulas
 * computed here, the optimizer state after every freeze change, freeze_to's counting, that
 * a frozen parameter's gradient is never computed or touched and that backward stops at the
 * first trainable layer, and lr_find on a frozen learner. */
#include "util/ku.h"

#include "kiln/apps.h"
#include "kiln/learn_lr_find.h"

#include <math.h>
#include <string.h>

#define N_GROUPS 3

typedef struct fx {
    kiln_ctx *ctx;
    kiln_model *model;
    kiln_data *data;
    kiln_learner *learn;
} fx;

static double urand(uint64_t *rs) /* xorshift64*, [0, 1) */
{
    *rs ^= *rs >> 12, *rs ^= *rs << 25, *rs ^= *rs >> 27;
    return (double)((*rs * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

/* n_train images (1, 16, 16) in n_train / 4 batches of 4; class i % 3 brightens one third
 * of the image so there is something to learn. lp NULL: default learner, quiet. */
static fx fx_new(int64_t n_train, const kiln_learner_params *lp)
{
    fx f = {.ctx = ku_ctx()};
    const int64_t nv = 12, n = n_train + nv, px = 16 * 16;
    float *x = malloc((size_t)(n * px) * sizeof *x);
    int64_t *y = malloc((size_t)n * sizeof *y);
    cr_assert(x && y);
    uint64_t rs = 0x9E3779B97F4A7C15ull;
    for (int64_t i = 0; i < n; i++) {
        y[i] = i % 3;
        for (int64_t k = 0; k < px; k++) x[i * px + k] = (float)(urand(&rs) - 0.5 + (k * 3 / px == y[i] ? 1.0 : 0.0));
    }
    kiln_tensor xt, yt, xv, yv;
    kiln_tensor_wrap(&xt, KILN_DTYPE_F32, 4, (int64_t[]){n_train, 1, 16, 16}, x);
    kiln_tensor_wrap(&yt, KILN_DTYPE_I64, 1, (int64_t[]){n_train}, y);
    kiln_tensor_wrap(&xv, KILN_DTYPE_F32, 4, (int64_t[]){nv, 1, 16, 16}, x + n_train * px);
    kiln_tensor_wrap(&yv, KILN_DTYPE_I64, 1, (int64_t[]){nv}, y + n_train);
    kiln_tensor_data_params dp = kiln_tensor_data_default_params();
    dp.batch_size = 4;
    f.data = kiln_tensor_data_new(&xt, &yt, &xv, &yv, &dp);
    free(x), free(y);
    cr_assert(f.data, "%s", kiln_last_error());
    kiln_resnet_params rp = {.block = KILN_RESNET_BLOCK_BASIC, .layers = {1, 1, 1, 1}, .width = 4, .n_in = 1};
    kiln_vision_model_params vp = kiln_vision_model_default_params();
    vp.n_classes = 3, vp.lin_ftrs = 16;
    f.model = kiln_vision_model_new(&rp, &vp);
    cr_assert(f.model && !kiln_model_alloc(f.model, f.ctx), "%s", kiln_last_error());
    cr_assert_eq(kiln_model_n_groups(f.model), N_GROUPS);
    kiln_learner_params p = lp ? *lp : kiln_learner_default_params();
    p.progress = KILN_PROGRESS_STYLE_QUIET;
    f.learn = kiln_learner_new(f.ctx, f.model, f.data, NULL, &p);
    cr_assert(f.learn, "%s", kiln_last_error());
    cr_assert_eq(kiln_data_n_batches(f.data, KILN_DATA_SPLIT_TRAIN), n_train / 4);
    return f;
}

static void fx_free(fx *f)
{
    kiln_learner_free(f->learn);
    kiln_model_free(f->model);
    kiln_data_free(f->data);
    ku_ctx_free(f->ctx);
}

/* A copy of the model's flat parameters (free it). */
static float *params_copy(kiln_model *m)
{
    size_t n = 0;
    const float *p = kiln_store_flat(kiln_model_store(m), KILN_STORE_PARAMS, &n);
    float *c = malloc(n * sizeof *c);
    cr_assert(p && c);
    memcpy(c, p, n * sizeof *c);
    return c;
}

/* Offset of store entry i's parameter in the flat parameters. */
static size_t param_off(kiln_model *m, size_t i)
{
    kiln_store *s = kiln_model_store(m);
    return (size_t)((const float *)kiln_store_at(s, i)->data - kiln_store_flat(s, KILN_STORE_PARAMS, NULL));
}

static bool param_changed(kiln_model *m, size_t i, const float *a, const float *b)
{
    size_t o = param_off(m, i), n = (size_t)kiln_numel(kiln_store_at(kiln_model_store(m), i));
    return memcmp(a + o, b + o, n * sizeof *a) != 0;
}

/* True when every optimizer state entry (moments, step counts) is all zero bytes. */
static bool opt_state_empty(kiln_optim *opt)
{
    for (size_t k = 0; k < kiln_optim_state_count(opt); k++) {
        kiln_optim_state e;
        cr_assert_eq(kiln_optim_state_at(opt, k, &e), KILN_STATUS_OK);
        const unsigned char *b = e.data;
        for (size_t j = 0; j < e.numel * kiln_dtype_size(e.dtype); j++)
            if (b[j]) return false;
    }
    return true;
}

/* fastai v2 one-cycle lr at iteration i of n (combined_cos): pos = i / n; before pct_start
 * SchedCos(hi/div, hi) at pos/pct_start, after it SchedCos(hi, hi/div_final) at
 * (pos - pct_start)/(1 - pct_start); SchedCos(a, b)(p) = a + (1 + cos(pi (1 - p))) (b - a) / 2.
 * div_final is 1e5 (fit_one_cycle's default). */
static double fastai_sched_cos(double a, double b, double p) { return a + (1 + cos(M_PI * (1 - p))) * (b - a) / 2; }

static double fastai_one_cycle(double hi, double div, double pct_start, int64_t i, int64_t n)
{
    double pos = (double)i / (double)n;
    if (pos < pct_start) return fastai_sched_cos(hi / div, hi, pos / pct_start);
    return fastai_sched_cos(hi, hi / 1e5, (pos - pct_start) / (1 - pct_start));
}

/* ---- fine_tune: what changes in each phase --------------------------------------------------- */

#define MAX_ITERS 100

/* What a callback sees over fine_tune's two fits (phase 0 frozen, phase 1 unfrozen). */
typedef struct watch {
    kiln_model *model;
    int phase;                            /* fits begun - 1 */
    bool state_empty_at_begin[2];         /* optimizer state when each fit began */
    int frozen_to[2];
    float *after[2];                      /* params at the end of each fit */
    double lrs[2][MAX_ITERS][N_GROUPS];   /* per fit, per iteration, per group */
    int64_t n_iters[2];
} watch;

static kiln_status w_begin_fit(kiln_learner *l, void *u)
{
    watch *w = u;
    if (++w->phase > 1) return KILN_STATUS_STATE; /* fine_tune runs two fits */
    w->state_empty_at_begin[w->phase] = opt_state_empty(kiln_learner_optim(l));
    w->frozen_to[w->phase] = kiln_model_frozen_to(w->model);
    return KILN_STATUS_OK;
}

static kiln_status w_end_batch(kiln_learner *l, void *u)
{
    watch *w = u;
    const kiln_fit_state *s = kiln_learner_state(l);
    cr_assert_eq(s->n_groups, N_GROUPS);
    cr_assert_lt(s->iter, MAX_ITERS);
    for (int g = 0; g < N_GROUPS; g++) w->lrs[w->phase][s->iter][g] = s->lrs[g];
    w->n_iters[w->phase] = s->iter + 1;
    return KILN_STATUS_OK;
}

static kiln_status w_end_fit(kiln_learner *l, void *u)
{
    watch *w = u;
    (void)l;
    w->after[w->phase] = params_copy(w->model);
    return KILN_STATUS_OK;
}

/* Runs fine_tune(1, defaults) on 100 batches with train_bn as given; the optimizer state is
 * filled first (a short fit) so that clearing it shows. */
static void run_fine_tune(fx *f, watch *w, bool train_bn, float **before)
{
    cr_assert_eq(kiln_learner_fit_one_cycle(f->learn, 1, 0, 1e-3, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_not(opt_state_empty(kiln_learner_optim(f->learn)), "a fit fills the optimizer state");
    cr_assert_eq(kiln_learner_set_train_bn(f->learn, train_bn), KILN_STATUS_OK);
    *w = (watch){.model = f->model, .phase = -1};
    kiln_callback cb = {.name = "watch", .begin_fit = w_begin_fit, .end_batch = w_end_batch, .end_fit = w_end_fit,
                        .user = w};
    cr_assert_eq(kiln_learner_add_callback(f->learn, &cb), KILN_STATUS_OK);
    *before = params_copy(f->model);
    cr_assert_eq(kiln_learner_fine_tune(f->learn, 1, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(w->phase, 1, "fine_tune ran %d fits, want 2", w->phase + 1);
    cr_expect(w->state_empty_at_begin[0], "optimizer state cleared by freeze() before the frozen phase");
    cr_expect(w->state_empty_at_begin[1], "optimizer state cleared by unfreeze() before the unfrozen phase");
    cr_expect_eq(w->frozen_to[0], 2, "frozen phase: freeze() = freeze_to(-1) = 2 of 3 groups");
    cr_expect_eq(w->frozen_to[1], 0, "unfrozen phase");
    cr_expect_eq(kiln_model_frozen_to(f->model), 0, "fine_tune ends unfrozen");
}

/* Frozen phase: the body's convolution weights stay bit for bit, the head changes, and the
 * body's BatchNorm parameters change exactly when train_bn is on. Unfrozen phase:
 * everything changes. */
static void expect_changes(fx *f, const watch *w, const float *before, bool train_bn)
{
    kiln_store *s = kiln_model_store(f->model);
    int n_frozen = 0, n_bn = 0, n_head = 0;
    for (size_t i = 0; i < kiln_store_count(s); i++) {
        kiln_param_info info;
        cr_assert_eq(kiln_model_param_info(f->model, i, &info), KILN_STATUS_OK);
        if (!info.is_param) continue;
        const char *name = kiln_store_at(s, i)->name;
        bool ch0 = param_changed(f->model, i, before, w->after[0]);
        bool ch1 = param_changed(f->model, i, w->after[0], w->after[1]);
        if (info.group == N_GROUPS - 1) {
            cr_expect(ch0, "%s (head) trains in the frozen phase", name);
            n_head++;
        } else if (info.is_bn) {
            cr_expect_eq(ch0, train_bn, "%s (frozen group %d, BatchNorm): changed %d with train_bn %d", name,
                         info.group, ch0, train_bn);
            n_bn++;
        } else {
            cr_expect_not(ch0, "%s (frozen group %d) must stay bit for bit in the frozen phase", name, info.group);
            n_frozen++;
        }
        cr_expect(ch1, "%s trains in the unfrozen phase", name);
    }
    cr_expect(n_frozen >= 6 && n_bn >= 12 && n_head >= 4, "%d frozen, %d BatchNorm, %d head parameters", n_frozen,
              n_bn, n_head);
}

/* The per-group lrs of both phases against fastai's formulas, by hand:
 * frozen phase: fit_one_cycle(1, slice(2e-3), pct_start=0.99): slice(hi) = [hi/10, hi/10, hi]
 *   = 2e-4, 2e-4, 2e-3; div 25: iteration 0 at hi/25 = 8e-6, 8e-6, 8e-5; 100 iterations, so
 *   iteration 99 is pos 0.99 = pct_start: the peak 2e-4, 2e-4, 2e-3 (also the last).
 * unfrozen phase: base_lr/2 = 1e-3, fit_one_cycle(1, slice(1e-3/100, 1e-3), pct_start 0.3,
 *   div 5): even_mults(1e-5, 1e-3, 3) = 1e-5, 1e-4, 1e-3; iteration 0 at /5 = 2e-6, 2e-5,
 *   2e-4; iteration 30 (pos 0.3) the peak 1e-5, 1e-4, 1e-3; iteration 99 (pos 0.99):
 *   SchedCos(hi, hi/1e5) at (0.99 - 0.3)/0.7. */
static void expect_lrs(fx *f, const watch *w)
{
    static const double frozen_hi[N_GROUPS] = {2e-4, 2e-4, 2e-3}, unfrozen_hi[N_GROUPS] = {1e-5, 1e-4, 1e-3};
    const struct {
        int phase;
        int64_t iter;
        double want[N_GROUPS];
    } at[] = {
        {0, 0, {8e-6, 8e-6, 8e-5}},   {0, 99, {2e-4, 2e-4, 2e-3}},
        {1, 0, {2e-6, 2e-5, 2e-4}},   {1, 30, {1e-5, 1e-4, 1e-3}},
    };
    cr_assert_eq(w->n_iters[0], 100);
    cr_assert_eq(w->n_iters[1], 100);
    for (size_t k = 0; k < sizeof at / sizeof at[0]; k++)
        for (int g = 0; g < N_GROUPS; g++) {
            double got = w->lrs[at[k].phase][at[k].iter][g], want = at[k].want[g];
            cr_expect(fabs(got - want) <= 1e-12 * want, "phase %d iteration %lld group %d: lr %.17g, want %.17g",
                      at[k].phase, (long long)at[k].iter, g, got, want);
        }
    /* every iteration against the formula; the last unfrozen one near hi/1e5 */
    for (int ph = 0; ph < 2; ph++)
        for (int64_t i = 0; i < 100; i++)
            for (int g = 0; g < N_GROUPS; g++) {
                double want = ph == 0 ? fastai_one_cycle(frozen_hi[g], 25, 0.99, i, 100)
                                      : fastai_one_cycle(unfrozen_hi[g], 5, 0.3, i, 100);
                double got = w->lrs[ph][i][g];
                cr_expect(fabs(got - want) <= 1e-12 * want, "phase %d iteration %lld group %d: lr %.17g, want %.17g",
                          ph, (long long)i, g, got, want);
            }
    double last = w->lrs[1][99][2];
    cr_expect(last > 1e-3 / 1e5 && last < 1e-3 / 100, "unfrozen phase ends near hi/div_final: %g", last);
    /* the recorder keeps both phases, one after the other, the values the optimizer got */
    const kiln_recorder *rec = kiln_learner_recorder(f->learn);
    cr_assert_eq(kiln_recorder_n_batches(rec), 200);
    cr_assert_eq(kiln_recorder_n_groups(rec), N_GROUPS);
    for (int ph = 0; ph < 2; ph++)
        for (int g = 0; g < N_GROUPS; g++)
            for (int64_t i = 0; i < 100; i++)
                cr_expect_eq(kiln_recorder_lrs(rec, g)[ph * 100 + i], w->lrs[ph][i][g],
                             "recorder phase %d group %d iteration %lld", ph, g, (long long)i);
}

/* fine_tune(1) on 100 batches with train_bn as given: what changed in each phase, the lrs. */
static void check_fine_tune(bool train_bn)
{
    fx f = fx_new(400, NULL);
    watch w;
    float *before;
    run_fine_tune(&f, &w, train_bn, &before);
    expect_changes(&f, &w, before, train_bn);
    expect_lrs(&f, &w);
    cr_expect_eq(kiln_learner_train_bn(f.learn), train_bn);
    free(before), free(w.after[0]), free(w.after[1]);
    fx_free(&f);
}

Test(freeze, fine_tune_as_fastai_with_train_bn) { check_fine_tune(true); }
Test(freeze, fine_tune_without_train_bn_keeps_the_frozen_batchnorm) { check_fine_tune(false); }

/* ---- lr_mult through the recipe, and its checks ----------------------------------------------- */

Test(freeze, recipe_lr_mult_spreads_the_unfrozen_phase)
{
    fx f = fx_new(40, NULL);
    kiln_recipe r = kiln_recipe_make(KILN_RECIPE_FINE_TUNE);
    cr_expect_eq(r.lr_mult, 100.0);
    cr_expect_eq(kiln_recipe_make(KILN_RECIPE_ONE_CYCLE).lr_mult, 100.0);
    r.lr = 4e-3, r.lr_mult = 10, r.epochs = 1;
    cr_assert_eq(kiln_learner_fit_recipe(f.learn, &r), KILN_STATUS_OK, "%s", kiln_last_error());
    /* base_lr/2 = 2e-3; slice(2e-3/10, 2e-3) = even_mults(2e-4, 2e-3, 3) = 2e-4, 2e-4*sqrt(10),
     * 2e-3; 10 iterations, pct_start 0.3: iteration 3 is the peak, iteration 0 is /5 */
    const kiln_recorder *rec = kiln_learner_recorder(f.learn);
    cr_assert_eq(kiln_recorder_n_batches(rec), 20, "the frozen phase's 10 batches, then the unfrozen one's");
    const double peak[N_GROUPS] = {2e-4, 2e-4 * sqrt(10.0), 2e-3};
    for (int g = 0; g < N_GROUPS; g++) {
        double got = kiln_recorder_lrs(rec, g)[13], got0 = kiln_recorder_lrs(rec, g)[10];
        cr_expect(fabs(got - peak[g]) <= 1e-12 * peak[g], "group %d peak %.17g, want %.17g", g, got, peak[g]);
        cr_expect(fabs(got0 - peak[g] / 5) <= 1e-12 * peak[g], "group %d start %.17g, want %.17g", g, got0,
                  peak[g] / 5);
    }
    int64_t e;
    r.lr_mult = 0;
    cr_expect_eq(kiln_recipe_epochs(&r, &e), KILN_STATUS_INVALID);
    ku_expect_error("fine-tune: lr_mult 0 must be > 0", "lr_mult 0");
    r.lr_mult = NAN;
    cr_expect_eq(kiln_learner_fit_recipe(f.learn, &r), KILN_STATUS_INVALID);
    ku_expect_error("fine-tune: lr_mult nan must be > 0", "lr_mult nan");
    kiln_fine_tune_params fp = kiln_fine_tune_default_params();
    cr_expect(fp.base_lr == 2e-3 && fp.freeze_epochs == 1 && fp.lr_mult == 100 && fp.pct_start == 0.3 && fp.div == 5);
    fp.lr_mult = -1;
    cr_expect_eq(kiln_learner_fine_tune(f.learn, 1, &fp), KILN_STATUS_INVALID);
    ku_expect_error("fine-tune: lr_mult -1 must be > 0", "fine_tune lr_mult");
    fp = kiln_fine_tune_default_params();
    fp.div = 0;
    cr_expect_eq(kiln_learner_fine_tune(f.learn, 1, &fp), KILN_STATUS_INVALID);
    ku_expect_error("fine-tune: div 0 must be > 0", "fine_tune div");
    fp = kiln_fine_tune_default_params();
    fp.freeze_epochs = -1;
    cr_expect_eq(kiln_learner_fine_tune(f.learn, 1, &fp), KILN_STATUS_INVALID);
    ku_expect_error("fine-tune: freeze_epochs -1 must be in [0,", "fine_tune freeze_epochs");
    fx_free(&f);
}

/* ---- ULMFiT's gradual unfreezing: phases, lrs, moms, the joined record ---------------------- */

#define UL_ITERS 10 /* 40 images, batches of 4 */

typedef struct ul_watch {
    kiln_model *model;
    int phase;
    int frozen_to[4];
    bool state_empty_at_begin[4];
    float *after[4];
} ul_watch;

static kiln_status ul_begin_fit(kiln_learner *l, void *u)
{
    ul_watch *w = u;
    if (++w->phase > 3) return KILN_STATUS_STATE;
    w->frozen_to[w->phase] = kiln_model_frozen_to(w->model);
    w->state_empty_at_begin[w->phase] = opt_state_empty(kiln_learner_optim(l));
    return KILN_STATUS_OK;
}

static kiln_status ul_end_fit(kiln_learner *l, void *u)
{
    ul_watch *w = u;
    (void)l;
    w->after[w->phase] = params_copy(w->model);
    return KILN_STATUS_OK;
}

/* fastai v2 one-cycle momentum at iteration i of n: SchedCos(m0, m1) over the warm-up, then
 * SchedCos(m1, m2) */
static double fastai_one_cycle_mom(const double m[3], double pct_start, int64_t i, int64_t n)
{
    double pos = (double)i / (double)n;
    if (pos < pct_start) return fastai_sched_cos(m[0], m[1], pos / pct_start);
    return fastai_sched_cos(m[1], m[2], (pos - pct_start) / (1 - pct_start));
}

/* ulmfit(1 unfrozen epoch, lr 1e-2, lr_mult 4) on the three-group model: freeze_to(-1) at 1e-2
 * for every group, freeze_to(-2) at slice(5e-3/4, 5e-3), then (freeze_to(-3) is everything on
 * three groups) unfreeze at slice(5e-4/4, 5e-4); one-cycle with pct_start 0.25, div 25, moms
 * 0.8/0.7/0.8 in each. The body's non-BatchNorm weights move exactly when their group is
 * trainable; the recorder holds the three phases one after the other. */
Test(freeze, ulmfit_unfreezes_one_group_per_phase_with_discriminative_lrs)
{
    fx f = fx_new(40, NULL);
    cr_assert_eq(kiln_learner_fit_one_cycle(f.learn, 1, 0, 1e-3, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    ul_watch w = {.model = f.model, .phase = -1};
    kiln_callback cb = {.name = "watch", .begin_fit = ul_begin_fit, .end_fit = ul_end_fit, .user = &w};
    cr_assert_eq(kiln_learner_add_callback(f.learn, &cb), KILN_STATUS_OK);
    float *before = params_copy(f.model);
    kiln_ulmfit_params up = kiln_ulmfit_default_params();
    cr_expect(up.lr == 2e-2 && up.freeze_epochs == 1 && fabs(up.lr_mult - pow(2.6, 4)) < 1e-9 && up.pct_start == 0.25 &&
              up.moms[0] == 0.8 && up.moms[1] == 0.7 && up.moms[2] == 0.8);
    up.lr = 1e-2, up.lr_mult = 4;
    cr_assert_eq(kiln_learner_fit_ulmfit(f.learn, 1, &up), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(w.phase, 2, "three phases on three groups, got %d", w.phase + 1);
    const int want_frozen[3] = {2, 1, 0};
    for (int ph = 0; ph < 3; ph++) {
        cr_expect_eq(w.frozen_to[ph], want_frozen[ph], "phase %d frozen_to %d", ph, w.frozen_to[ph]);
        cr_expect(w.state_empty_at_begin[ph], "phase %d starts with a cleared optimizer state", ph);
    }
    cr_expect_eq(kiln_model_frozen_to(f.model), 0, "ulmfit ends unfrozen");
    kiln_store *s = kiln_model_store(f.model);
    int n_checked = 0;
    for (size_t i = 0; i < kiln_store_count(s); i++) {
        kiln_param_info info;
        cr_assert_eq(kiln_model_param_info(f.model, i, &info), KILN_STATUS_OK);
        if (!info.is_param || info.is_bn) continue;
        for (int ph = 0; ph < 3; ph++) {
            bool ch = param_changed(f.model, i, ph ? w.after[ph - 1] : before, w.after[ph]);
            cr_expect_eq(ch, info.group >= want_frozen[ph], "%s (group %d) in phase %d: changed %d",
                         kiln_store_at(s, i)->name, info.group, ph, ch);
        }
        n_checked++;
    }
    cr_expect_gt(n_checked, 8);
    /* the lrs and moms the optimizer got, from the joined recorder */
    const kiln_recorder *rec = kiln_learner_recorder(f.learn);
    cr_assert_eq(kiln_recorder_n_batches(rec), 3 * UL_ITERS);
    cr_assert_eq(kiln_recorder_n_epochs(rec), 3);
    const double hi[3][N_GROUPS] = {{1e-2, 1e-2, 1e-2}, {1.25e-3, 2.5e-3, 5e-3}, {1.25e-4, 2.5e-4, 5e-4}};
    const double moms[3] = {0.8, 0.7, 0.8};
    for (int ph = 0; ph < 3; ph++) {
        kiln_epoch_record er;
        cr_assert_eq(kiln_recorder_epoch(rec, ph, &er), KILN_STATUS_OK);
        cr_expect_eq(er.epoch, ph, "epoch rows numbered on across phases");
        cr_expect_eq(er.iter, (ph + 1) * UL_ITERS);
        for (int64_t i = 0; i < UL_ITERS; i++) {
            int64_t k = ph * UL_ITERS + i;
            cr_expect_eq(kiln_recorder_iters(rec)[k], k, "iterations numbered on across phases");
            for (int g = 0; g < N_GROUPS; g++) {
                double want = fastai_one_cycle(hi[ph][g], 25, 0.25, i, UL_ITERS), got = kiln_recorder_lrs(rec, g)[k];
                cr_expect(fabs(got - want) <= 1e-12 * want, "phase %d iteration %lld group %d: lr %.17g, want %.17g", ph,
                          (long long)i, g, got, want);
                double wm = fastai_one_cycle_mom(moms, 0.25, i, UL_ITERS), gm = kiln_recorder_moms(rec, g)[k];
                cr_expect(fabs(gm - wm) <= 1e-12, "phase %d iteration %lld group %d: mom %.17g, want %.17g", ph,
                          (long long)i, g, gm, wm);
            }
        }
    }
    /* the recipe runs the same; its checks name the field */
    kiln_recipe r = kiln_recipe_make(KILN_RECIPE_ULMFIT);
    cr_expect(r.lr == 2e-2 && r.epochs == 2 && r.freeze_epochs == 1 && fabs(r.lr_mult - pow(2.6, 4)) < 1e-9);
    kiln_recipe_kind kind;
    cr_expect(kiln_recipe_parse("ulmfit", &kind) == KILN_STATUS_OK && kind == KILN_RECIPE_ULMFIT);
    cr_expect_str_eq(kiln_recipe_name(KILN_RECIPE_ULMFIT), "ulmfit");
    r.lr_mult = 0;
    cr_expect_eq(kiln_learner_fit_recipe(f.learn, &r), KILN_STATUS_INVALID);
    ku_expect_error("ulmfit: lr_mult 0 must be > 0", "lr_mult 0");
    up = kiln_ulmfit_default_params();
    up.moms[1] = 1.5;
    cr_expect_eq(kiln_learner_fit_ulmfit(f.learn, 1, &up), KILN_STATUS_INVALID);
    ku_expect_error("ulmfit: moms[1] 1.5 must be in [0, 1)", "moms");
    up = kiln_ulmfit_default_params();
    up.freeze_epochs = -2;
    cr_expect_eq(kiln_learner_fit_ulmfit(f.learn, 1, &up), KILN_STATUS_INVALID);
    ku_expect_error("ulmfit: freeze_epochs -2 must be in [0,", "freeze_epochs");
    free(before);
    for (int ph = 0; ph < 3; ph++) free(w.after[ph]);
    fx_free(&f);
}

/* fine_tune's two phases are joined in the recorder too (history.csv shows both) */
Test(freeze, fine_tune_records_both_phases)
{
    fx f = fx_new(40, NULL);
    cr_assert_eq(kiln_learner_fine_tune(f.learn, 2, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    const kiln_recorder *rec = kiln_learner_recorder(f.learn);
    cr_assert_eq(kiln_recorder_n_epochs(rec), 3, "1 frozen + 2 unfrozen epochs");
    cr_assert_eq(kiln_recorder_n_batches(rec), 30);
    for (int64_t k = 0; k < 30; k++) cr_expect_eq(kiln_recorder_iters(rec)[k], k);
    /* the frozen phase warms up to 2e-3 (pct_start 0.99), the unfrozen one starts at 1e-3/5 */
    double want = fastai_one_cycle(2e-3, 25, 0.99, 9, 10);
    cr_expect(fabs(kiln_recorder_lrs(rec, N_GROUPS - 1)[9] - want) < 1e-12 * want, "%.17g",
              kiln_recorder_lrs(rec, N_GROUPS - 1)[9]);
    cr_expect(fabs(kiln_recorder_lrs(rec, N_GROUPS - 1)[10] - 1e-3 / 5) < 1e-15, "%.17g",
              kiln_recorder_lrs(rec, N_GROUPS - 1)[10]);
    fx_free(&f);
}

/* ---- freeze changes clear the optimizer state ------------------------------------------------- */

Test(freeze, every_freeze_change_clears_the_optimizer_state)
{
    fx f = fx_new(16, NULL);
    kiln_optim *opt = kiln_learner_optim(f.learn);
    struct {
        const char *what;
        kiln_status (*change)(kiln_learner *l);
    } changes[] = {{"freeze", kiln_learner_freeze}, {"unfreeze", kiln_learner_unfreeze}};
    for (int k = 0; k < 4; k++) {
        cr_assert_eq(kiln_learner_fit_one_cycle(f.learn, 1, 0, 1e-3, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
        cr_assert_not(opt_state_empty(opt), "the fit before change %d filled the state", k);
        const char *what;
        if (k < 2) {
            what = changes[k].what;
            cr_assert_eq(changes[k].change(f.learn), KILN_STATUS_OK);
        } else if (k == 2) {
            what = "freeze_to(1)";
            cr_assert_eq(kiln_learner_freeze_to(f.learn, 1), KILN_STATUS_OK);
            cr_expect_eq(kiln_model_frozen_to(f.model), 1);
        } else {
            what = "set_train_bn(false) on a frozen learner";
            cr_assert_eq(kiln_learner_set_train_bn(f.learn, false), KILN_STATUS_OK);
            cr_expect_not(kiln_store_find(kiln_model_store(f.model), "0.1.weight")->requires_grad,
                          "the frozen stem's BatchNorm stops training at once");
        }
        cr_expect(opt_state_empty(opt), "optimizer state empty right after %s", what);
    }
    fx_free(&f);
}

/* ---- freeze_to counting --------------------------------------------------------------------- */

Test(freeze, freeze_to_counts_like_python_on_three_groups)
{
    fx f = fx_new(16, NULL);
    kiln_store *s = kiln_model_store(f.model);
    /* n -> groups frozen: 0 -> 0, 1 -> 1, 2 -> 2, -1 -> 3-1 = 2, -5 -> clamped 0, 99 -> clamped 3 */
    const int ns[] = {0, 1, 2, -1, -5, 99}, eff[] = {0, 1, 2, 2, 0, 3};
    for (int tb = 0; tb < 2; tb++) {
        cr_assert_eq(kiln_learner_set_train_bn(f.learn, tb), KILN_STATUS_OK);
        for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
            cr_assert_eq(kiln_learner_freeze_to(f.learn, ns[k]), KILN_STATUS_OK);
            cr_expect_eq(kiln_model_frozen_to(f.model), eff[k], "freeze_to(%d)", ns[k]);
            int64_t trainable = 0;
            for (size_t i = 0; i < kiln_store_count(s); i++) {
                kiln_param_info info;
                kiln_model_param_info(f.model, i, &info);
                if (!info.is_param) continue;
                const kiln_tensor *t = kiln_store_at(s, i);
                bool want = info.group >= eff[k] || (tb && info.is_bn);
                cr_expect_eq(t->requires_grad, want, "freeze_to(%d) train_bn %d: %s (group %d) requires_grad %d",
                             ns[k], tb, t->name, info.group, t->requires_grad);
                trainable += want ? kiln_numel(t) : 0;
            }
            cr_expect_eq(kiln_model_n_params(f.model, true), trainable);
        }
    }
    cr_expect_eq(kiln_learner_freeze_to(NULL, 1), KILN_STATUS_INVALID);
    fx_free(&f);
}

/* ---- frozen parameters get no gradient ------------------------------------------------------- */

#define SENTINEL 0.375f

/* Fills the grad slice of every parameter that does not require grad with SENTINEL. */
static int fill_frozen_grads(kiln_model *m)
{
    kiln_store *s = kiln_model_store(m);
    int n = 0;
    for (size_t i = 0; i < kiln_store_count(s); i++) {
        kiln_tensor *t = kiln_store_at(s, i);
        if (!kiln_store_is_param(s, i) || t->requires_grad) continue;
        cr_assert(t->grad);
        for (int64_t k = 0; k < kiln_numel(t); k++) ((float *)t->grad->data)[k] = SENTINEL;
        n++;
    }
    return n;
}

/* Every frozen grad slice still holds SENTINEL and every trainable one is zero (after a fit). */
static void expect_frozen_grads_untouched(kiln_model *m, const char *what)
{
    kiln_store *s = kiln_model_store(m);
    for (size_t i = 0; i < kiln_store_count(s); i++) {
        kiln_tensor *t = kiln_store_at(s, i);
        if (!kiln_store_is_param(s, i)) continue;
        float want = t->requires_grad ? 0.0f : SENTINEL;
        for (int64_t k = 0; k < kiln_numel(t); k++)
            cr_assert_eq(((float *)t->grad->data)[k], want, "%s: grad of %s[%lld] is %g, want %g", what, t->name,
                         (long long)k, (double)((float *)t->grad->data)[k], (double)want);
    }
}

/* Trains 4 batches frozen: no weight-gradient kernel writes into a frozen parameter's grad
 * (with train_bn the data gradient still flows through the frozen convolutions to the
 * BatchNorm parameters), zero_grad leaves it alone, and unfreezing zeroes it. */
Test(freeze, frozen_grads_are_never_computed_or_touched)
{
    fx f = fx_new(16, NULL);
    for (int tb = 1; tb >= 0; tb--) {
        cr_assert_eq(kiln_learner_set_train_bn(f.learn, tb), KILN_STATUS_OK);
        cr_assert_eq(kiln_learner_freeze(f.learn), KILN_STATUS_OK);
        int n = fill_frozen_grads(f.model);
        cr_assert_gt(n, tb ? 6 : 18, "train_bn %d: %d frozen parameters", tb, n);
        float *before = params_copy(f.model);
        cr_assert_eq(kiln_learner_fit_one_cycle(f.learn, 1, 0, 1e-3, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
        expect_frozen_grads_untouched(f.model, tb ? "frozen with train_bn" : "frozen without train_bn");
        kiln_store *s = kiln_model_store(f.model);
        for (size_t i = 0; i < kiln_store_count(s); i++)
            if (kiln_store_is_param(s, i))
                cr_expect_eq(param_changed(f.model, i, before, kiln_store_flat(s, KILN_STORE_PARAMS, NULL)),
                             kiln_store_at(s, i)->requires_grad, "%s", kiln_store_at(s, i)->name);
        free(before);
        cr_assert_eq(kiln_learner_unfreeze(f.learn), KILN_STATUS_OK);
        expect_frozen_grads_untouched(f.model, "unfrozen: every grad zeroed");
    }
    fx_free(&f);
}

/* Number of ops the tape recorded for one forward pass and loss (kiln_first_nonfinite_op
 * walks the whole tape): only ops with an input that requires grad are recorded, so a
 * frozen body without train_bn records nothing and backward never enters it. */
static int64_t tape_ops(fx *f)
{
    kiln_mark mk = kiln_step_mark(f->ctx);
    kiln_tensor *x = kiln_randn(f->ctx, 4, (int64_t[]){4, 1, 16, 16}, 0.0f, 1.0f);
    kiln_tensor *y = kiln_from_data(f->ctx, KILN_DTYPE_I64, 1, (int64_t[]){4}, (int64_t[]){0, 1, 2, 1});
    kiln_tensor *loss = kiln_cross_entropy(f->ctx, kiln_model_forward(f->model, f->ctx, x), y, NULL);
    cr_assert(loss, "%s", kiln_last_error());
    int64_t pos, n_ops;
    kiln_first_nonfinite_op(loss, &pos, &n_ops);
    cr_assert_eq(kiln_backward(f->ctx, loss), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_step_rewind(f->ctx, mk);
    kiln_model_zero_grad(f->model);
    return n_ops;
}

Test(freeze, backward_stops_at_the_first_trainable_layer)
{
    fx f = fx_new(16, NULL);
    int64_t all = tape_ops(&f);
    cr_assert_eq(kiln_learner_freeze(f.learn), KILN_STATUS_OK);
    int64_t bn = tape_ops(&f);
    cr_assert_eq(kiln_learner_set_train_bn(f.learn, false), KILN_STATUS_OK);
    int64_t head = tape_ops(&f);
    /* unfrozen: the stem conv too; train_bn: from the stem's BatchNorm on (the stem conv's
     * input is the image and its weight is frozen: one op less); frozen body without
     * train_bn: only the head from its first BatchNorm1d (bn, dropout, linear, relu, bn,
     * dropout, linear and the loss's ops) */
    cr_expect_eq(bn, all - 1, "train_bn: %lld ops recorded, unfrozen %lld", (long long)bn, (long long)all);
    cr_expect(head > 0 && head <= 12, "frozen body without train_bn: %lld ops recorded (unfrozen %lld)",
              (long long)head, (long long)all);
    cr_expect_gt(all, 30);
    fx_free(&f);
}

/* ---- lr_find on a frozen learner ------------------------------------------------------------- */

typedef struct probe {
    kiln_model *model;
    const float *start; /* params when lr_find began */
    int calls, frozen_moved, head_moved;
} probe;

/* A cross-entropy loss that also looks at the weights lr_find is training. */
static kiln_tensor *probe_loss(kiln_ctx *ctx, kiln_tensor *out, kiln_tensor *y, void *user)
{
    probe *p = user;
    if (p->start) {
        kiln_store *s = kiln_model_store(p->model);
        const float *now = kiln_store_flat(s, KILN_STORE_PARAMS, NULL);
        p->calls++;
        for (size_t i = 0; i < kiln_store_count(s); i++) {
            if (!kiln_store_is_param(s, i)) continue;
            bool ch = param_changed(p->model, i, p->start, now);
            if (kiln_model_param_group(p->model, i) == N_GROUPS - 1) p->head_moved += ch;
            else if (!kiln_store_at(s, i)->requires_grad) p->frozen_moved += ch;
        }
    }
    return kiln_cross_entropy(ctx, out, y, NULL);
}

Test(freeze, lr_find_trains_the_trainable_part_and_leaves_the_learner_frozen)
{
    probe pr = {0};
    kiln_learner_params lp = kiln_learner_default_params();
    lp.loss = (kiln_loss){.kind = KILN_LOSS_KIND_CUSTOM, .fn = probe_loss, .user = &pr};
    fx f = fx_new(16, &lp);
    pr.model = f.model;
    cr_assert_eq(kiln_learner_set_train_bn(f.learn, false), KILN_STATUS_OK);
    cr_assert_eq(kiln_learner_freeze(f.learn), KILN_STATUS_OK);
    float *start = params_copy(f.model);
    pr.start = start;
    kiln_lr_find_params p = kiln_lr_find_default_params();
    p.num_it = 12, p.stop_div = false;
    kiln_lr_find_result r;
    cr_assert_eq(kiln_learner_lr_find(f.learn, &p, &r), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(r.n, 12);
    cr_expect_eq(pr.calls, 12);
    cr_expect_eq(pr.frozen_moved, 0, "lr_find moved a frozen parameter");
    cr_expect_gt(pr.head_moved, 0, "lr_find trains the head");
    kiln_lr_find_result_free(&r);
    pr.start = NULL;
    cr_expect_eq(kiln_model_frozen_to(f.model), 2, "still frozen");
    kiln_store *s = kiln_model_store(f.model);
    for (size_t i = 0; i < kiln_store_count(s); i++)
        if (kiln_store_is_param(s, i)) {
            cr_expect_eq(kiln_store_at(s, i)->requires_grad, kiln_model_param_group(f.model, i) == N_GROUPS - 1, "%s",
                         kiln_store_at(s, i)->name);
            cr_expect_not(param_changed(f.model, i, start, kiln_store_flat(s, KILN_STORE_PARAMS, NULL)),
                          "%s restored", kiln_store_at(s, i)->name);
        }
    free(start);
    fx_free(&f);
}
