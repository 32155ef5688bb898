/* The fit recipes (kiln/apps.h), next to each other: one-cycle, SGDR, CLR, constant, fastai's
 * fine_tune and ULMFiT's gradual unfreezing; each checked with errors naming the field, turned
 * into a schedule over the learner's batches, and run. kiln_learner_fit_one_cycle itself is in learn (fit.c). */
#include "app_internal.h"

#include <math.h>
#include <string.h>

#define MAX_EPOCHS 100000

static const char *const g_names[] = {"one-cycle", "sgdr", "clr", "const", "fine-tune", "ulmfit"};

kiln_recipe kiln_recipe_make(kiln_recipe_kind kind)
{
    kiln_recipe r = {.kind = kind, .lr = 1e-2, .epochs = 3, .n_cycle = 0, .cycle_len = 1, .cycle_mult = 2,
                     .freeze_epochs = 1, .pct_start = 0.25, .lr_mult = 100};
    if (kind == KILN_RECIPE_SGDR) r.n_cycle = 3, r.epochs = 0;
    if (kind == KILN_RECIPE_FINE_TUNE) r.lr = 2e-3, r.pct_start = 0.3, r.epochs = 1;
    if (kind == KILN_RECIPE_ULMFIT) r.lr = 2e-2, r.epochs = 2, r.lr_mult = 45.6976;
    return r;
}

const char *kiln_recipe_name(kiln_recipe_kind kind)
{
    return (unsigned)kind < sizeof g_names / sizeof g_names[0] ? g_names[kind] : "unknown";
}

kiln_status kiln_recipe_parse(const char *name, kiln_recipe_kind *out)
{
    for (unsigned i = 0; name && i < sizeof g_names / sizeof g_names[0]; i++)
        if (!strcmp(name, g_names[i])) {
            *out = (kiln_recipe_kind)i;
            return KILN_STATUS_OK;
        }
    return kiln__err(KILN_STATUS_INVALID, "schedule '%s' is not one-cycle, sgdr, clr, const, fine-tune or ulmfit",
                     name ? name : "(null)");
}

kiln_status kiln_recipe_epochs(const kiln_recipe *r, int64_t *epochs)
{
    if (!r || !epochs) return kiln__err(KILN_STATUS_INVALID, "recipe: NULL argument");
    const char *nm = kiln_recipe_name(r->kind);
    if ((unsigned)r->kind > KILN_RECIPE_ULMFIT) return kiln__err(KILN_STATUS_INVALID, "recipe: unknown kind %d", r->kind);
    if (!(r->lr > 0)) return kiln__err(KILN_STATUS_INVALID, "%s: lr %g must be > 0", nm, r->lr);
    if (r->cycle_len < 1 || r->cycle_len > 10000 || r->cycle_mult < 1 || r->cycle_mult > 100 || r->n_cycle < 0 ||
        r->n_cycle > 1000)
        return kiln__err(KILN_STATUS_INVALID, "%s: n_cycle, cycle_len and cycle_mult must be >= 1", nm);
    if (r->epochs < 0 || r->epochs > MAX_EPOCHS)
        return kiln__err(KILN_STATUS_INVALID, "%s: epochs %lld must be in [1, %d]", nm, (long long)r->epochs, MAX_EPOCHS);
    int64_t e = r->epochs;
    switch (r->kind) {
    case KILN_RECIPE_SGDR: {
        if (r->n_cycle < 1) return kiln__err(KILN_STATUS_INVALID, "sgdr: n_cycle must be >= 1");
        int64_t sum = 0, len = r->cycle_len;
        for (int64_t k = 0; k < r->n_cycle && sum <= MAX_EPOCHS; k++, len *= r->cycle_mult) sum += len;
        if (sum > MAX_EPOCHS) return kiln__err(KILN_STATUS_INVALID, "sgdr: the cycles span more than %d epochs", MAX_EPOCHS);
        if (e && e != sum)
            return kiln__err(KILN_STATUS_INVALID, "sgdr: epochs %lld differs from the cycles' %lld epochs (leave epochs 0)",
                             (long long)e, (long long)sum);
        e = sum;
        break;
    }
    case KILN_RECIPE_CLR: {
        int64_t n_cycle = r->n_cycle ? r->n_cycle : e / r->cycle_len;
        if (n_cycle < 1)
            return kiln__err(KILN_STATUS_INVALID, "clr: epochs %lld is shorter than one cycle of cycle_len %lld",
                             (long long)e, (long long)r->cycle_len);
        if (e && r->n_cycle && e != n_cycle * r->cycle_len)
            return kiln__err(KILN_STATUS_INVALID, "clr: epochs %lld differs from n_cycle x cycle_len = %lld", (long long)e,
                             (long long)(n_cycle * r->cycle_len));
        e = n_cycle * r->cycle_len;
        break;
    }
    case KILN_RECIPE_FINE_TUNE:
    case KILN_RECIPE_ULMFIT:
        if (r->freeze_epochs < 0 || r->freeze_epochs > MAX_EPOCHS)
            return kiln__err(KILN_STATUS_INVALID, "%s: freeze_epochs %lld must be in [0, %d]", nm,
                             (long long)r->freeze_epochs, MAX_EPOCHS);
        if (!(r->lr_mult > 0) || !isfinite(r->lr_mult))
            return kiln__err(KILN_STATUS_INVALID, "%s: lr_mult %g must be > 0", nm, r->lr_mult);
        /* fall through */
    default:
        if (!(r->pct_start >= 0 && r->pct_start <= 1))
            return kiln__err(KILN_STATUS_INVALID, "%s: pct_start %g must be in [0, 1]", nm, r->pct_start);
        break;
    }
    if (e < 1) return kiln__err(KILN_STATUS_INVALID, "%s: epochs must be >= 1", nm);
    *epochs = e;
    return KILN_STATUS_OK;
}

/* fastai v2 one-cycle over iters peaking at lr. */
static kiln_status one_cycle(kiln_sched *s, double lr, int64_t iters, double pct_start, double div)
{
    kiln_sched_one_cycle_params p = kiln_sched_one_cycle_default_params(KILN_ONE_CYCLE_VARIANT_FASTAI);
    p.lr_max = lr, p.iters = iters, p.pct_start = pct_start;
    if (div > 0) p.div = div;
    return kiln_sched_one_cycle(s, &p);
}

kiln_status kiln_recipe_sched(const kiln_recipe *r, int64_t nb, kiln_sched *s)
{
    int64_t epochs;
    kiln_status st = kiln_recipe_epochs(r, &epochs);
    if (st) return st;
    if (nb < 1 || !s) return kiln__err(KILN_STATUS_INVALID, "recipe: needs >= 1 batch per epoch and a schedule");
    switch (r->kind) {
    case KILN_RECIPE_ONE_CYCLE: return one_cycle(s, r->lr, epochs * nb, r->pct_start, 0);
    case KILN_RECIPE_FINE_TUNE: return one_cycle(s, r->lr / 2, epochs * nb, r->pct_start, 5); /* its unfrozen phase */
    case KILN_RECIPE_ULMFIT: return one_cycle(s, r->lr / 20, epochs * nb, r->pct_start, 0); /* its unfrozen phase */
    case KILN_RECIPE_CONST: {
        kiln_sched_const_params p = kiln_sched_const_default_params();
        p.lr = r->lr, p.iters = epochs * nb;
        return kiln_sched_const(s, &p);
    }
    case KILN_RECIPE_SGDR: {
        kiln_sched_sgdr_params p = kiln_sched_sgdr_default_params();
        p.lr = r->lr, p.iters_per_epoch = nb;
        p.n_cycle = (int)r->n_cycle, p.cycle_len = (int)r->cycle_len, p.cycle_mult = (int)r->cycle_mult;
        return kiln_sched_sgdr(s, &p);
    }
    default: { /* CLR */
        kiln_sched_clr_params p = kiln_sched_clr_default_params();
        p.max_lr = r->lr, p.base_lr = r->lr / 25;
        p.step_size_up = p.step_size_down = (double)(r->cycle_len * nb) / 2;
        p.iters = epochs * nb;
        return kiln_sched_clr(s, &p);
    }
    }
}

/* One phase of a multi-phase recipe: fit_one_cycle(epochs, slice(lo, hi)) with op, after which
 * the learner's recorder holds the earlier phases (*hist) and this one; *hist becomes its copy. */
static kiln_status phase(kiln_learner *l, kiln_recorder **hist, int64_t epochs, double lo, double hi,
                         const kiln_sched_one_cycle_params *op)
{
    kiln_status st = kiln_learner_fit_one_cycle(l, epochs, lo, hi, op);
    if (!st && *hist) st = kiln_learner_prepend_history(l, *hist);
    kiln_recorder_free(*hist);
    *hist = NULL;
    if (!st && !(*hist = kiln_recorder_clone(kiln_learner_recorder(l)))) st = kiln_last_status();
    return st;
}

/* fastai v2 fine_tune (kiln/apps.h): freeze, freeze_epochs of one-cycle at slice(base_lr)
 * with pct_start 0.99; then base_lr / 2, unfreeze, epochs of one-cycle at
 * slice(base_lr / lr_mult, base_lr) with pct_start and div. p is checked. */
static kiln_status fine_tune(kiln_learner *l, int64_t epochs, const kiln_fine_tune_params *p)
{
    kiln_recorder *hist = NULL;
    kiln_status st = kiln_learner_freeze(l);
    if (!st && p->freeze_epochs > 0) {
        kiln_sched_one_cycle_params op = kiln_sched_one_cycle_default_params(KILN_ONE_CYCLE_VARIANT_FASTAI);
        op.pct_start = 0.99;
        st = phase(l, &hist, p->freeze_epochs, 0, p->base_lr, &op); /* slice(base_lr) */
    }
    double lr = p->base_lr / 2;
    if (!st) st = kiln_learner_unfreeze(l);
    kiln_sched_one_cycle_params op = kiln_sched_one_cycle_default_params(KILN_ONE_CYCLE_VARIANT_FASTAI);
    op.pct_start = p->pct_start, op.div = p->div;
    if (!st) st = phase(l, &hist, epochs, lr / p->lr_mult, lr, &op);
    kiln_recorder_free(hist);
    return st;
}

/* ULMFiT's gradual unfreezing (kiln/apps.h); p is checked. */
static kiln_status ulmfit(kiln_learner *l, int64_t epochs, const kiln_ulmfit_params *p)
{
    int G = kiln_learner_n_groups(l);
    if (G < 2) return kiln__err(KILN_STATUS_INVALID, "ulmfit: the model has %d layer group; gradual unfreezing needs 2 or more", G);
    kiln_sched_one_cycle_params op = kiln_sched_one_cycle_default_params(KILN_ONE_CYCLE_VARIANT_FASTAI);
    op.pct_start = p->pct_start;
    memcpy(op.moms, p->moms, sizeof op.moms);
    static const double div[3] = {1, 2, 4}; /* fastai's notebook: lr, lr/2, lr/4, then lr/20 */
    kiln_recorder *hist = NULL;
    kiln_status st = KILN_STATUS_OK;
    int n_partly = G - 1 < 3 ? G - 1 : 3;
    for (int k = 1; k <= n_partly && !st && p->freeze_epochs > 0; k++) {
        double hi = p->lr / div[k - 1];
        if (!(st = kiln_learner_freeze_to(l, -k)))
            st = phase(l, &hist, p->freeze_epochs, k == 1 ? hi : hi / p->lr_mult, hi, &op);
    }
    double hi = p->lr / 20;
    if (!st) st = kiln_learner_unfreeze(l);
    if (!st) st = phase(l, &hist, epochs, hi / p->lr_mult, hi, &op);
    kiln_recorder_free(hist);
    return st;
}

kiln_fine_tune_params kiln_fine_tune_default_params(void)
{
    return (kiln_fine_tune_params){.base_lr = 2e-3, .freeze_epochs = 1, .lr_mult = 100, .pct_start = 0.3, .div = 5};
}

kiln_ulmfit_params kiln_ulmfit_default_params(void)
{
    return (kiln_ulmfit_params){.lr = 2e-2, .freeze_epochs = 1, .lr_mult = 45.6976, .pct_start = 0.25,
                                .moms = {0.8, 0.7, 0.8}};
}

kiln_status kiln_learner_fit_ulmfit(kiln_learner *l, int64_t epochs, const kiln_ulmfit_params *p)
{
    if (!l) return kiln__err(KILN_STATUS_INVALID, "learner_fit_ulmfit: learner is NULL");
    kiln_ulmfit_params up = p ? *p : kiln_ulmfit_default_params();
    kiln_recipe r = kiln_recipe_make(KILN_RECIPE_ULMFIT); /* its checks name the fields */
    r.epochs = epochs, r.lr = up.lr, r.freeze_epochs = up.freeze_epochs, r.lr_mult = up.lr_mult;
    r.pct_start = up.pct_start;
    int64_t e;
    kiln_status st = kiln_recipe_epochs(&r, &e);
    if (st) return st;
    for (int k = 0; k < 3; k++)
        if (!(up.moms[k] >= 0 && up.moms[k] < 1))
            return kiln__err(KILN_STATUS_INVALID, "ulmfit: moms[%d] %g must be in [0, 1)", k, up.moms[k]);
    return ulmfit(l, e, &up);
}

kiln_status kiln_learner_fit_recipe(kiln_learner *l, const kiln_recipe *r)
{
    if (!l) return kiln__err(KILN_STATUS_INVALID, "learner_fit_recipe: learner is NULL");
    int64_t epochs;
    kiln_status st = kiln_recipe_epochs(r, &epochs);
    if (st) return st;
    if (r->kind == KILN_RECIPE_FINE_TUNE) {
        kiln_fine_tune_params fp = {.base_lr = r->lr, .freeze_epochs = r->freeze_epochs, .lr_mult = r->lr_mult,
                                    .pct_start = r->pct_start, .div = 5};
        return fine_tune(l, epochs, &fp);
    }
    if (r->kind == KILN_RECIPE_ULMFIT) {
        kiln_ulmfit_params up = kiln_ulmfit_default_params();
        up.lr = r->lr, up.freeze_epochs = r->freeze_epochs, up.lr_mult = r->lr_mult, up.pct_start = r->pct_start;
        return ulmfit(l, epochs, &up);
    }
    kiln_sched s;
    if ((st = kiln_recipe_sched(r, kiln_data_n_batches(kiln_learner_data(l), KILN_DATA_SPLIT_TRAIN), &s))) return st;
    return kiln_learner_fit(l, epochs, &s); /* clears the error when it succeeds */
}

kiln_status kiln_learner_fit_sgdr(kiln_learner *l, int64_t n_cycle, int64_t cycle_len, int64_t cycle_mult, double lr)
{
    kiln_recipe r = kiln_recipe_make(KILN_RECIPE_SGDR);
    r.n_cycle = n_cycle, r.cycle_len = cycle_len, r.cycle_mult = cycle_mult, r.lr = lr;
    return kiln_learner_fit_recipe(l, &r);
}

kiln_status kiln_learner_fit_clr(kiln_learner *l, int64_t epochs, int64_t cycle_len, double lr)
{
    kiln_recipe r = kiln_recipe_make(KILN_RECIPE_CLR);
    r.epochs = epochs, r.cycle_len = cycle_len, r.lr = lr;
    return kiln_learner_fit_recipe(l, &r);
}

kiln_status kiln_learner_fine_tune(kiln_learner *l, int64_t epochs, const kiln_fine_tune_params *p)
{
    if (!l) return kiln__err(KILN_STATUS_INVALID, "learner_fine_tune: learner is NULL");
    kiln_fine_tune_params fp = p ? *p : kiln_fine_tune_default_params();
    kiln_recipe r = kiln_recipe_make(KILN_RECIPE_FINE_TUNE); /* its checks name the fields */
    r.epochs = epochs, r.lr = fp.base_lr, r.freeze_epochs = fp.freeze_epochs, r.lr_mult = fp.lr_mult;
    r.pct_start = fp.pct_start;
    int64_t e;
    kiln_status st = kiln_recipe_epochs(&r, &e);
    if (st) return st;
    if (!(fp.div > 0) || !isfinite(fp.div))
        return kiln__err(KILN_STATUS_INVALID, "fine-tune: div %g must be > 0", fp.div);
    return fine_tune(l, e, &fp);
}
