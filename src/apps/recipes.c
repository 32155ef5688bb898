/* The fit recipes (kiln/apps.h), next to each other: one-cycle, SGDR, CLR, constant, and
 * fastai's fine_tune; each checked with errors naming the field, turned into a schedule over
 * the learner's batches, and run. kiln_learner_fit_one_cycle itself is in learn (fit.c). */
#include "app_internal.h"

#include <string.h>

#define MAX_EPOCHS 100000

static const char *const g_names[] = {"one-cycle", "sgdr", "clr", "const", "fine-tune"};

kiln_recipe kiln_recipe_make(kiln_recipe_kind kind)
{
    kiln_recipe r = {.kind = kind, .lr = 1e-2, .epochs = 3, .n_cycle = 0, .cycle_len = 1, .cycle_mult = 2,
                     .freeze_epochs = 1, .pct_start = 0.25};
    if (kind == KILN_RECIPE_SGDR) r.n_cycle = 3, r.epochs = 0;
    if (kind == KILN_RECIPE_FINE_TUNE) r.lr = 2e-3, r.pct_start = 0.3, r.epochs = 1;
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
    return kiln__err(KILN_STATUS_INVALID, "schedule '%s' is not one-cycle, sgdr, clr, const or fine-tune",
                     name ? name : "(null)");
}

kiln_status kiln_recipe_epochs(const kiln_recipe *r, int64_t *epochs)
{
    if (!r || !epochs) return kiln__err(KILN_STATUS_INVALID, "recipe: NULL argument");
    const char *nm = kiln_recipe_name(r->kind);
    if ((unsigned)r->kind > KILN_RECIPE_FINE_TUNE) return kiln__err(KILN_STATUS_INVALID, "recipe: unknown kind %d", r->kind);
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
        if (r->freeze_epochs < 0 || r->freeze_epochs > MAX_EPOCHS)
            return kiln__err(KILN_STATUS_INVALID, "fine-tune: freeze_epochs %lld must be in [0, %d]",
                             (long long)r->freeze_epochs, MAX_EPOCHS);
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

/* fastai fine_tune(epochs, base_lr, freeze_epochs): the body frozen, freeze_epochs of
 * one-cycle at base_lr (pct_start 0.99); then unfrozen, base_lr / 2 over slice(lr / 100, lr)
 * for epochs (pct_start, div 5). The optimizer state is cleared at each freeze change. */
static kiln_status fine_tune(kiln_learner *l, const kiln_recipe *r, int64_t epochs)
{
    kiln_model *m = kiln_learner_model(l);
    kiln_optim *opt = kiln_learner_optim(l);
    kiln_status st = KILN_STATUS_OK;
    if (r->freeze_epochs > 0) {
        kiln_sched_one_cycle_params p = kiln_sched_one_cycle_default_params(KILN_ONE_CYCLE_VARIANT_FASTAI);
        p.pct_start = 0.99;
        if ((st = kiln_model_freeze(m))) return st;
        kiln_optim_clear_state(opt);
        st = kiln_learner_fit_one_cycle(l, r->freeze_epochs, 0, r->lr, &p);
        if (st) return st;
    }
    double lr = r->lr / 2;
    kiln_sched_one_cycle_params p = kiln_sched_one_cycle_default_params(KILN_ONE_CYCLE_VARIANT_FASTAI);
    p.pct_start = r->pct_start, p.div = 5;
    if ((st = kiln_model_unfreeze(m))) return st;
    kiln_optim_clear_state(opt);
    return kiln_learner_fit_one_cycle(l, epochs, lr / 100, lr, &p);
}

kiln_status kiln_learner_fit_recipe(kiln_learner *l, const kiln_recipe *r)
{
    if (!l) return kiln__err(KILN_STATUS_INVALID, "learner_fit_recipe: learner is NULL");
    int64_t epochs;
    kiln_status st = kiln_recipe_epochs(r, &epochs);
    if (st) return st;
    if (r->kind == KILN_RECIPE_FINE_TUNE) return fine_tune(l, r, epochs);
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

kiln_status kiln_learner_fine_tune(kiln_learner *l, int64_t epochs, double base_lr, int64_t freeze_epochs)
{
    kiln_recipe r = kiln_recipe_make(KILN_RECIPE_FINE_TUNE);
    r.epochs = epochs, r.lr = base_lr, r.freeze_epochs = freeze_epochs;
    return kiln_learner_fit_recipe(l, &r);
}
