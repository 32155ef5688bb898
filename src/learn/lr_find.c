/* The LR range test (Smith 2015; fastai v2 Learner.lr_find) on a Learner: a fit with an
 * exponential schedule and no validation, recorded by its own callback, after which
 * everything the fit touched is put back bit for bit (fastai issues #2892, #3013: lr_find
 * must not change the run that follows). Suggestions come from sched.h's pure functions;
 * the plot and CSV are written here. */
#include "learn_internal.h"
#include "kiln/io.h"
#include "kiln/learn_lr_find.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

kiln_lr_find_params kiln_lr_find_default_params(void)
{
    return (kiln_lr_find_params){.start_lr = 1e-7, .end_lr = 10, .num_it = 100, .stop_div = true, .beta = 0.98,
                                 .suggest = KILN_LR_SUGGEST_VALLEY, .plot_path = NULL, .csv_path = NULL};
}

void kiln_lr_find_result_free(kiln_lr_find_result *r)
{
    if (!r) return;
    free(r->lrs), free(r->losses), free(r->smooth_losses);
    memset(r, 0, sizeof *r);
}

/* ---- what lr_find saves and restores ----------------------------------------------------------- */

typedef struct saved {
    kiln_weights w;
    float *grads;               /* (n_grads) */
    size_t n_grads;
    void **opt;                 /* (n_opt) copies of the optimizer's state entries */
    size_t n_opt;
    size_t opt_lo, opt_hi;      /* the range of the state held (kiln_optim_set_shard: ZeRO-1) */
    bool zero_on;
    kiln_optim_group *groups;   /* (n_groups) */
    int n_groups;
    kiln_rng_state rng;
    bool train;
    kiln_fit_state st;
    double *st_lrs, *st_moms, *st_metrics; /* (st.n_groups), (st.n_groups), (n_metrics) */
    kiln_ema ema;
    double *mults;              /* (n_mults) */
    int n_mults;
    bool mults_set;
    kiln_recorder *rec;
    kiln_progress *prog;
    kiln__cb *cbs;
    int n_cbs, cap_cbs;
} saved;

static void *dup_bytes(const void *p, size_t n)
{
    void *d = malloc(n ? n : 1);
    if (d && n) memcpy(d, p, n);
    return d;
}

static void saved_free(saved *s)
{
    kiln_weights_free(&s->w);
    free(s->grads);
    for (size_t i = 0; s->opt && i < s->n_opt; i++) free(s->opt[i]);
    free(s->opt), free(s->groups), free(s->st_lrs), free(s->st_moms), free(s->st_metrics), free(s->mults);
}

static kiln_status save_all(kiln_learner *l, saved *s)
{
    memset(s, 0, sizeof *s);
    kiln_status st = kiln_weights_copy(l->model, &s->w);
    if (st) return st;
    kiln_store *store = kiln_model_store(l->model);
    float *g = kiln_store_flat(store, KILN_STORE_GRADS, &s->n_grads);
    s->grads = dup_bytes(g, s->n_grads * sizeof(float));
    s->n_opt = kiln_optim_state_count(l->opt);
    kiln_optim_shard(l->opt, &s->opt_lo, &s->opt_hi);
    s->zero_on = l->zero_on;
    s->opt = calloc(s->n_opt + 1, sizeof *s->opt);
    s->n_groups = kiln_optim_n_groups(l->opt);
    s->groups = calloc((size_t)s->n_groups + 1, sizeof *s->groups);
    s->st = l->st;
    s->st_lrs = dup_bytes(l->st.lrs, (size_t)l->st.n_groups * sizeof(double));
    s->st_moms = dup_bytes(l->st.moms, (size_t)l->st.n_groups * sizeof(double));
    s->st_metrics = dup_bytes(l->st.metrics, (size_t)l->n_metrics * sizeof(double));
    s->mults = dup_bytes(l->lr_mults, (size_t)l->n_mults * sizeof(double));
    if (!s->grads || !s->opt || !s->groups || !s->st_lrs || !s->st_moms || !s->st_metrics || !s->mults) {
        saved_free(s);
        return kiln__err(KILN_STATUS_NOMEM, "lr_find: out of memory saving the learner's state");
    }
    for (size_t i = 0; i < s->n_opt; i++) {
        kiln_optim_state e;
        if ((st = kiln_optim_state_at(l->opt, i, &e))) break;
        if (!(s->opt[i] = dup_bytes(e.data, e.numel * kiln_dtype_size(e.dtype)))) {
            st = kiln__err(KILN_STATUS_NOMEM, "lr_find: out of memory saving optimizer state '%s'", e.name);
            break;
        }
    }
    for (int i = 0; !st && i < s->n_groups; i++) st = kiln_optim_get_group(l->opt, i, &s->groups[i]);
    if (st) {
        saved_free(s);
        return st;
    }
    s->rng = kiln_rng_get(l->ctx);
    s->train = kiln_model_training(l->model);
    s->ema = l->ema;
    s->n_mults = l->n_mults, s->mults_set = l->mults_set;
    s->rec = l->rec, s->prog = l->prog;
    s->cbs = l->cbs, s->n_cbs = l->n_cbs, s->cap_cbs = l->cap_cbs;
    return KILN_STATUS_OK;
}

/* Puts everything back; the first failure is returned (none is expected: sizes are the same). */
static kiln_status restore_all(kiln_learner *l, saved *s)
{
    if (l->rec != s->rec) kiln__recorder_free(l->rec);
    if (l->prog != s->prog) kiln_progress_free(l->prog);
    l->rec = s->rec, l->prog = s->prog;
    l->cbs = s->cbs, l->n_cbs = s->n_cbs, l->cap_cbs = s->cap_cbs;
    kiln_status st = kiln_weights_restore(l->model, &s->w);
    size_t ng;
    float *g = kiln_store_flat(kiln_model_store(l->model), KILN_STORE_GRADS, &ng);
    if (ng == s->n_grads && ng) memcpy(g, s->grads, ng * sizeof(float));
    kiln_status sh = kiln_optim_set_shard(l->opt, s->opt_lo, s->opt_hi); /* a ZeRO fit sharded it */
    if (!st) st = sh;
    l->zero_on = s->zero_on;
    for (size_t i = 0; !sh && i < s->n_opt && i < kiln_optim_state_count(l->opt); i++) {
        kiln_optim_state e;
        if (!kiln_optim_state_at(l->opt, i, &e)) memcpy(e.data, s->opt[i], e.numel * kiln_dtype_size(e.dtype));
    }
    for (int i = 0; i < s->n_groups && i < kiln_optim_n_groups(l->opt); i++) {
        const kiln_optim_group *h = &s->groups[i];
        kiln_status r = kiln_optim_set_lr(l->opt, i, h->lr);
        if (!r) r = kiln_optim_set_mom(l->opt, i, h->mom);
        if (!r) r = kiln_optim_set_wd(l->opt, i, h->wd);
        if (!r) r = kiln_optim_set_frozen(l->opt, i, h->frozen);
        if (!st) st = r;
    }
    kiln_rng_set(l->ctx, s->rng);
    if (s->st.n_batches > 0) { /* a fit ran before: its last epoch's train order */
        kiln_status r = kiln_data_set_epoch(l->data, l->p.seed, s->st.epoch);
        if (!st) st = r;
    }
    kiln_model_train(l->model, s->train);
    l->ema = s->ema;
    if (l->n_mults == s->n_mults) memcpy(l->lr_mults, s->mults, (size_t)s->n_mults * sizeof(double));
    l->mults_set = s->mults_set;
    double *lrs = l->st.lrs, *moms = l->st.moms, *mets = l->st.metrics;
    l->st = s->st;
    l->st.lrs = lrs, l->st.moms = moms, l->st.metrics = mets;
    if (lrs) memcpy(lrs, s->st_lrs, (size_t)s->st.n_groups * sizeof(double));
    if (moms) memcpy(moms, s->st_moms, (size_t)s->st.n_groups * sizeof(double));
    if (mets) memcpy(mets, s->st_metrics, (size_t)l->n_metrics * sizeof(double));
    return st;
}

/* ---- the recording callback -------------------------------------------------------------------- */

typedef struct rec_cb {
    kiln_lr_find_params p;
    kiln_lr_find_result *r;
    int64_t cap;
    kiln_ema ema;
    double best;
    kiln_progress *prog;
} rec_cb;

static kiln_status rec_end_batch(kiln_learner *l, void *user)
{
    rec_cb *c = user;
    kiln_fit_state *st = &l->st;
    if (st->skip_batch) return KILN_STATUS_OK;
    kiln_lr_find_result *r = c->r;
    if (r->n == c->cap) {
        int64_t cap = c->cap ? 2 * c->cap : 128;
        double *a = realloc(r->lrs, (size_t)cap * sizeof *a);
        if (a) r->lrs = a;
        double *b = realloc(r->losses, (size_t)cap * sizeof *b);
        if (b) r->losses = b;
        double *d = realloc(r->smooth_losses, (size_t)cap * sizeof *d);
        if (d) r->smooth_losses = d;
        if (!a || !b || !d) return kiln__err(KILN_STATUS_NOMEM, "lr_find: out of memory");
        c->cap = cap;
    }
    double smooth = kiln_ema_add(&c->ema, st->loss_value);
    r->lrs[r->n] = st->n_groups > 0 ? st->lrs[st->n_groups - 1] : st->sched_lr; /* fastai: the last group */
    r->losses[r->n] = st->loss_value;
    r->smooth_losses[r->n] = smooth;
    r->n++;
    if (smooth < c->best) c->best = smooth;
    kiln_progress_update(c->prog, r->n, smooth, NULL);
    if (c->p.stop_div && kiln_lr_find_diverged(smooth, c->best)) {
        r->diverged = true;
        st->stop_training = true;
    }
    if (r->n >= c->p.num_it) st->stop_training = true;
    return KILN_STATUS_OK;
}

/* ---- lr_find ----------------------------------------------------------------------------------- */

static kiln_status check_params(const kiln_lr_find_params *p)
{
    if (!(p->start_lr > 0) || !isfinite(p->start_lr))
        return kiln__err(KILN_STATUS_INVALID, "lr_find: start_lr %g must be > 0", p->start_lr);
    if (!(p->end_lr > p->start_lr) || !isfinite(p->end_lr))
        return kiln__err(KILN_STATUS_INVALID, "lr_find: end_lr %g must be above start_lr %g", p->end_lr, p->start_lr);
    if (p->num_it < 2) return kiln__err(KILN_STATUS_INVALID, "lr_find: num_it %lld must be >= 2", (long long)p->num_it);
    if (!(p->beta >= 0 && p->beta < 1))
        return kiln__err(KILN_STATUS_INVALID, "lr_find: beta %g outside [0, 1)", p->beta);
    if ((unsigned)p->suggest >= KILN_LR_SUGGEST_COUNT)
        return kiln__err(KILN_STATUS_INVALID, "lr_find: unknown suggestion %d", (int)p->suggest);
    return KILN_STATUS_OK;
}

/* Runs the test with the learner's callbacks, recorder and progress swapped out. */
static kiln_status run(kiln_learner *l, const kiln_lr_find_params *p, kiln_lr_find_result *r, kiln_progress *prog)
{
    int64_t nb = kiln_data_n_batches(l->data, KILN_DATA_SPLIT_TRAIN);
    if (nb < 1) return kiln__err(KILN_STATUS_INVALID, "lr_find: the train split has no batches");
    kiln_optim_group last;
    kiln_status st = kiln_optim_get_group(l->opt, kiln_optim_n_groups(l->opt) - 1, &last);
    if (st) return st;
    kiln_sched_exp_params ep = kiln_sched_exp_default_params();
    ep.start_lr = p->start_lr, ep.end_lr = p->end_lr, ep.iters = p->num_it;
    ep.mom = last.mom; /* the schedule drives no momentum change */
    kiln_sched sched;
    if ((st = kiln_sched_exp(&sched, &ep))) return st;

    l->rec = kiln__recorder_new();
    l->prog = kiln_progress_new(l->p.out, KILN_PROGRESS_STYLE_QUIET);
    if (!l->rec || !l->prog) return kiln__err(KILN_STATUS_NOMEM, "lr_find: out of memory");
    for (int g = 0; g < l->n_mults; g++) l->lr_mults[g] = 1.0;

    rec_cb c = {.p = *p, .r = r, .ema = kiln_ema_init(p->beta), .best = INFINITY, .prog = prog};
    char name[] = "lr_find";
    kiln__cb cb = {.cb = {.name = name, .end_batch = rec_end_batch, .user = &c}, .name = name};
    l->cbs = &cb, l->n_cbs = 1, l->cap_cbs = 1;

    kiln_fit_params fp = {.n_epochs = (p->num_it + nb - 1) / nb, .sched = &sched, .start_epoch = 0, .no_valid = true};
    kiln_progress_begin(prog, "lr_find", p->num_it);
    l->probe = true; /* fastai's test: every point is recorded, NaN included; no run of its own */
    st = kiln_learner_fit_ex(l, &fp);
    l->probe = false;
    kiln_progress_update(prog, r->n, r->n ? r->smooth_losses[r->n - 1] : NAN,
                         r->diverged ? "stopped: loss diverged" : NULL);
    kiln_progress_end(prog);
    return st;
}

static void suggest_all(kiln_lr_find_result *r)
{
    for (int k = 0; k < KILN_LR_SUGGEST_COUNT; k++) {
        r->suggestions[k] = NAN;
        r->suggestion_idx[k] = -1;
        if (kiln_lr_suggest_lr((kiln_lr_suggest)k, r->lrs, r->smooth_losses, r->n, r->num_it, &r->suggestions[k],
                               &r->suggestion_idx[k])) {
            r->suggestions[k] = NAN;
            r->suggestion_idx[k] = -1;
        }
    }
    kiln_clear_error();
    r->lr = r->suggestions[r->suggest];
}

static void report(kiln_progress *prog, const kiln_lr_find_result *r)
{
    char msg[256];
    snprintf(msg, sizeof msg, "lr_find: %lld/%lld iterations%s", (long long)r->n, (long long)r->num_it,
             r->diverged ? ", stopped: loss diverged" : "");
    kiln_progress_message(prog, msg);
    if (isnan(r->lr)) {
        kiln_progress_message(prog, "lr_find: too few points for a suggestion");
        return;
    }
    snprintf(msg, sizeof msg, "suggested lr (%s): %.1e   minimum/10: %.1e   steepest: %.1e",
             kiln_lr_suggest_name(r->suggest), r->lr, r->suggestions[KILN_LR_SUGGEST_MINIMUM],
             r->suggestions[KILN_LR_SUGGEST_STEEP]);
    kiln_progress_message(prog, msg);
}

kiln_status kiln_learner_lr_find(kiln_learner *l, const kiln_lr_find_params *pp, kiln_lr_find_result *out)
{
    if (!l || !out) return kiln__err(KILN_STATUS_INVALID, "lr_find: needs a learner and a result");
    memset(out, 0, sizeof *out);
    if (l->in_fit) return kiln__err(KILN_STATUS_STATE, "lr_find: not during a fit");
    if (kiln__learn_need_data(l, "lr_find")) return KILN_STATUS_STATE;
    kiln_lr_find_params p = pp ? *pp : kiln_lr_find_default_params();
    kiln_status st = check_params(&p);
    if (st) return st;
    kiln_progress *prog = kiln_progress_new(l->p.out, l->p.progress);
    if (!prog) return KILN_STATUS_NOMEM;
    saved sv;
    if ((st = save_all(l, &sv))) {
        kiln_progress_free(prog);
        return st;
    }
    out->num_it = p.num_it;
    out->suggest = p.suggest;
    st = run(l, &p, out, prog);
    char *msg = st ? kiln__error_dup() : NULL; /* the whole message: its cause is at the end */
    kiln_status rst = restore_all(l, &sv);
    saved_free(&sv);
    if (!st) st = rst;
    else kiln__err(st, "%s", msg ? msg : "out of memory");
    free(msg);
    if (st) {
        kiln_progress_free(prog);
        kiln_lr_find_result_free(out);
        return st;
    }
    suggest_all(out);
    report(prog, out);
    kiln_progress_free(prog);
    if (kiln_learner_rank(l) != 0) return KILN_STATUS_OK; /* N ranks found the same curve: rank 0 writes it */
    if (p.csv_path && (st = kiln_lr_find_write_csv(out, p.csv_path))) return st;
    if (p.plot_path && (st = kiln_lr_find_plot(out, p.plot_path, 5))) return st;
    return KILN_STATUS_OK;
}

/* ---- output ------------------------------------------------------------------------------------ */

kiln_status kiln_lr_find_write_csv(const kiln_lr_find_result *r, const char *path)
{
    if (!r || !path) return kiln__err(KILN_STATUS_INVALID, "lr_find_write_csv: NULL argument");
    kiln_atomic *a;
    kiln_status st = kiln_atomic_begin(path, &a);
    if (st) return st;
    FILE *f = kiln_atomic_stream(a);
    fputs("lr,loss,smooth_loss\n", f);
    for (int64_t i = 0; i < r->n; i++) fprintf(f, "%.9g,%.9g,%.9g\n", r->lrs[i], r->losses[i], r->smooth_losses[i]);
    return kiln_atomic_commit(a); /* reports any failed write above */
}

kiln_status kiln_lr_find_plot(const kiln_lr_find_result *r, const char *path, int skip_end)
{
    if (!r || !path) return kiln__err(KILN_STATUS_INVALID, "lr_find_plot: NULL argument");
    if (skip_end < 0) return kiln__err(KILN_STATUS_INVALID, "lr_find_plot: skip_end %d < 0", skip_end);
    int64_t n = r->n - skip_end;
    if (n < 2)
        return kiln__err(KILN_STATUS_INVALID, "lr_find_plot: %lld points, %d skipped at the end: nothing to plot",
                         (long long)r->n, skip_end);
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(r->smooth_losses[i])) lo = fmin(lo, r->smooth_losses[i]), hi = fmax(hi, r->smooth_losses[i]);
    kiln_plot_series s[2 + KILN_LR_SUGGEST_COUNT];
    char labels[KILN_LR_SUGGEST_COUNT][64];
    double px[KILN_LR_SUGGEST_COUNT], py[KILN_LR_SUGGEST_COUNT], vx[2], vy[2];
    int ns = 0;
    s[ns++] = (kiln_plot_series){.label = "smoothed loss", .x = r->lrs, .y = r->smooth_losses, .n = n,
                                 .style = KILN_PLOT_STYLE_LINE};
    /* the chosen suggestion first (its colour follows the curve's), then the others */
    for (int j = 0; j < KILN_LR_SUGGEST_COUNT; j++) {
        int k = j == 0 ? (int)r->suggest : (j <= (int)r->suggest ? j - 1 : j);
        int64_t idx = r->suggestion_idx[k];
        if ((j > 0 && k == KILN_LR_SUGGEST_SLIDE) || idx < 0 || idx >= r->n || isnan(r->suggestions[k])) continue;
        snprintf(labels[k], sizeof labels[k], "%s%s: %.2e", kiln_lr_suggest_name((kiln_lr_suggest)k),
                 k == KILN_LR_SUGGEST_MINIMUM ? "/10" : "", r->suggestions[k]);
        px[k] = r->lrs[idx], py[k] = r->smooth_losses[idx];
        s[ns++] = (kiln_plot_series){.label = labels[k], .x = &px[k], .y = &py[k], .n = 1,
                                     .style = KILN_PLOT_STYLE_POINTS};
        if (j == 0 && lo < hi) { /* a vertical line through the chosen point */
            vx[0] = vx[1] = px[k], vy[0] = lo, vy[1] = hi;
            s[ns++] = (kiln_plot_series){.label = NULL, .x = vx, .y = vy, .n = 2, .style = KILN_PLOT_STYLE_LINE};
        }
    }
    return kiln_plot_lines(path, "lr_find", "learning rate", "smoothed loss", true, false, s, ns);
}
