/* Snapshot ensembles (Huang et al. 2017, "Snapshot Ensembles: Train 1, get M for free"):
 * a callback copies the weights at every cycle end of an SGDR / CLR schedule, and
 * prediction averages the softmax outputs of the last M snapshots, as the paper's
 * test_ensemble.lua does. Also kiln_weights, the in-memory copy of a model's weights that
 * snapshots, lr_find and checkpoints share. */
#include "learn_internal.h"
#include "kiln/learn_snapshot.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

/* ---- kiln_weights -------------------------------------------------------------------------- */

kiln_status kiln_weights_copy(kiln_model *m, kiln_weights *out)
{
    if (!m || !out) return kiln__err(KILN_STATUS_INVALID, "weights_copy: NULL argument");
    memset(out, 0, sizeof *out);
    if (!kiln_model_allocated(m)) return kiln__err(KILN_STATUS_STATE, "weights_copy: the model is not allocated");
    kiln_store *s = kiln_model_store(m);
    const float *p = kiln_store_flat(s, KILN_STORE_PARAMS, &out->n_params);
    const float *b = kiln_store_flat(s, KILN_STORE_BUFFERS, &out->n_buffers);
    out->n_counters = kiln_model_counters(m, NULL, 0);
    out->params = malloc((out->n_params ? out->n_params : 1) * sizeof(float));
    out->buffers = malloc((out->n_buffers ? out->n_buffers : 1) * sizeof(float));
    out->counters = malloc((out->n_counters ? out->n_counters : 1) * sizeof(int64_t));
    if (!out->params || !out->buffers || !out->counters) {
        kiln_weights_free(out);
        return kiln__err(KILN_STATUS_NOMEM, "weights_copy: out of memory");
    }
    if (out->n_params) memcpy(out->params, p, out->n_params * sizeof(float));
    if (out->n_buffers) memcpy(out->buffers, b, out->n_buffers * sizeof(float));
    kiln_model_counters(m, out->counters, out->n_counters);
    return KILN_STATUS_OK;
}

kiln_status kiln_weights_restore(kiln_model *m, const kiln_weights *w)
{
    if (!m || !w || !w->params) return kiln__err(KILN_STATUS_INVALID, "weights_restore: NULL argument");
    if (!kiln_model_allocated(m)) return kiln__err(KILN_STATUS_STATE, "weights_restore: the model is not allocated");
    kiln_store *s = kiln_model_store(m);
    size_t np, nb;
    float *p = kiln_store_flat(s, KILN_STORE_PARAMS, &np);
    float *b = kiln_store_flat(s, KILN_STORE_BUFFERS, &nb);
    size_t nc = kiln_model_counters(m, NULL, 0);
    if (np != w->n_params || nb != w->n_buffers || nc != w->n_counters)
        return kiln__err(KILN_STATUS_INVALID,
                         "weights_restore: a copy of %zu params, %zu buffer values, %zu modules; the model has "
                         "%zu, %zu, %zu",
                         w->n_params, w->n_buffers, w->n_counters, np, nb, nc);
    if (np) memcpy(p, w->params, np * sizeof(float));
    if (nb) memcpy(b, w->buffers, nb * sizeof(float));
    return kiln_model_set_counters(m, w->counters, nc);
}

void kiln_weights_free(kiln_weights *w)
{
    if (!w) return;
    free(w->params), free(w->buffers), free(w->counters);
    memset(w, 0, sizeof *w);
}

/* ---- the snapshot callback ------------------------------------------------------------------ */

#define SNAP_CB "snapshots"

typedef struct snap {
    int64_t cycle, iter, epoch;
    kiln_weights w; /* memory mode */
    char *path;     /* directory mode */
} snap;

typedef struct snapset {
    char *dir; /* NULL: memory */
    snap *s;
    int n, cap;
} snapset;

static void snap_clear(snap *s)
{
    kiln_weights_free(&s->w);
    free(s->path);
    memset(s, 0, sizeof *s);
}

static void set_clear(snapset *ss)
{
    for (int i = 0; i < ss->n; i++) snap_clear(&ss->s[i]);
    ss->n = 0;
}

static void set_free(void *user)
{
    snapset *ss = user;
    if (!ss) return;
    set_clear(ss);
    free(ss->s);
    free(ss->dir);
    free(ss);
}

/* The slot for cycle c: the existing snapshot of that cycle (cleared) or a new one. */
static snap *slot_for(snapset *ss, int64_t c)
{
    for (int i = 0; i < ss->n; i++)
        if (ss->s[i].cycle == c) {
            snap_clear(&ss->s[i]);
            ss->s[i].cycle = c;
            return &ss->s[i];
        }
    if (ss->n == ss->cap) {
        int cap = ss->cap ? 2 * ss->cap : 8;
        snap *ns = realloc(ss->s, (size_t)cap * sizeof *ns);
        if (!ns) return kiln__errp(KILN_STATUS_NOMEM, "snapshots: out of memory");
        ss->s = ns, ss->cap = cap;
    }
    snap *s = &ss->s[ss->n++];
    memset(s, 0, sizeof *s);
    s->cycle = c;
    return s;
}

static char *snap_path(const snapset *ss, int64_t cycle)
{
    size_t n = strlen(ss->dir) + 48;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/snapshot_%lld.safetensors", ss->dir, (long long)cycle);
    return p;
}

static kiln_status take(kiln_learner *l, snapset *ss, int64_t cycle, int64_t iter, int64_t epoch)
{
    snap *s = slot_for(ss, cycle);
    if (!s) return KILN_STATUS_NOMEM;
    s->iter = iter, s->epoch = epoch;
    kiln_status st;
    if (!ss->dir) {
        st = kiln_weights_copy(l->model, &s->w);
    } else {
        s->path = snap_path(ss, cycle);
        if (!s->path) {
            st = kiln__err(KILN_STATUS_NOMEM, "snapshots: out of memory");
        } else {
            char c[24], it[24], ep[24];
            snprintf(c, sizeof c, "%lld", (long long)cycle);
            snprintf(it, sizeof it, "%lld", (long long)iter);
            snprintf(ep, sizeof ep, "%lld", (long long)epoch);
            const char *meta[] = {"format", "kiln-snapshot", "cycle", c, "iter", it, "epoch", ep, NULL};
            st = kiln_model_save(l->model, s->path, meta);
        }
    }
    if (st) { /* drop the failed slot (it is the last one or a cleared one) */
        snap_clear(s);
        *s = ss->s[--ss->n];
    }
    return st;
}

static kiln_status snap_end_batch(kiln_learner *l, void *user)
{
    kiln_fit_state *st = &l->st;
    if (!st->training || !st->sched || !kiln_sched_cycle_end(st->sched, st->iter)) return KILN_STATUS_OK;
    kiln_status rc = kiln__dist_sync_buffers(l); /* N ranks: every rank's snapshot holds rank 0's statistics */
    return rc ? rc : take(l, user, kiln_sched_cycle(st->sched, st->iter), st->iter + 1, st->epoch);
}

static int64_t meta_i64(const kiln_st_file *f, const char *key, int64_t dflt)
{
    const char *v = kiln_st_metadata(f, key);
    char *end;
    long long x = v ? strtoll(v, &end, 10) : 0;
    return v && *v && !*end ? (int64_t)x : dflt;
}

/* A resumed fit in directory mode: adopt the files of the cycles that ended before it. */
static kiln_status adopt_files(kiln_learner *l, snapset *ss)
{
    int64_t start = l->st.iter;
    if (start < 1) return KILN_STATUS_OK;
    int64_t last = kiln_sched_cycle(l->st.sched, start - 1);
    if (!kiln_sched_cycle_end(l->st.sched, start - 1)) last--;
    for (int64_t c = 0; c <= last; c++) {
        char *path = snap_path(ss, c);
        if (!path) return kiln__err(KILN_STATUS_NOMEM, "snapshots: out of memory");
        kiln_st_file *f = NULL;
        if (access(path, R_OK) != 0 || kiln_st_open(path, &f) != KILN_STATUS_OK) {
            kiln_clear_error();
            free(path);
            continue;
        }
        const char *fmt = kiln_st_metadata(f, "format");
        snap *s = fmt && !strcmp(fmt, "kiln-snapshot") ? slot_for(ss, c) : NULL;
        if (s) {
            s->iter = meta_i64(f, "iter", -1);
            s->epoch = meta_i64(f, "epoch", -1);
            s->path = path;
        } else {
            free(path);
        }
        kiln_st_close(f);
    }
    return KILN_STATUS_OK;
}

static kiln_status snap_begin_fit(kiln_learner *l, void *user)
{
    snapset *ss = user;
    if (l->st.epoch == 0) {
        set_clear(ss);
        return KILN_STATUS_OK;
    }
    return ss->dir && ss->n == 0 ? adopt_files(l, ss) : KILN_STATUS_OK;
}

kiln_snapshot_params kiln_snapshot_default_params(void) { return (kiln_snapshot_params){.dir = NULL}; }

kiln_status kiln_learner_add_snapshots(kiln_learner *l, const kiln_snapshot_params *p)
{
    if (!l) return kiln__err(KILN_STATUS_INVALID, "add_snapshots: learner is NULL");
    if (kiln_learner_callback_user(l, SNAP_CB))
        return kiln__err(KILN_STATUS_STATE, "add_snapshots: the learner already has a '" SNAP_CB "' callback");
    snapset *ss = calloc(1, sizeof *ss);
    if (!ss) return kiln__err(KILN_STATUS_NOMEM, "add_snapshots: out of memory");
    if (p && p->dir) {
        if (!*p->dir) {
            free(ss);
            return kiln__err(KILN_STATUS_INVALID, "add_snapshots: dir is empty (NULL keeps snapshots in memory)");
        }
        ss->dir = malloc(strlen(p->dir) + 1);
        if (!ss->dir) {
            free(ss);
            return kiln__err(KILN_STATUS_NOMEM, "add_snapshots: out of memory");
        }
        strcpy(ss->dir, p->dir);
    }
    kiln_callback cb = {.name = SNAP_CB, .begin_fit = snap_begin_fit, .end_batch = snap_end_batch,
                        .user = ss, .free_user = set_free};
    kiln_status st = kiln_learner_add_callback(l, &cb);
    if (st) set_free(ss);
    return st;
}

static snapset *get_set(kiln_learner *l) { return kiln_learner_callback_user(l, SNAP_CB); }

int kiln_snapshot_count(kiln_learner *l)
{
    snapset *ss = l ? get_set(l) : NULL;
    return ss ? ss->n : 0;
}

kiln_status kiln_snapshot_info(kiln_learner *l, int i, int64_t *cycle, int64_t *iter, int64_t *epoch,
                               const char **path)
{
    snapset *ss = l ? get_set(l) : NULL;
    if (!ss || i < 0 || i >= ss->n)
        return kiln__err(KILN_STATUS_INVALID, "snapshot_info: no snapshot %d (%d taken)", i, ss ? ss->n : 0);
    if (cycle) *cycle = ss->s[i].cycle;
    if (iter) *iter = ss->s[i].iter;
    if (epoch) *epoch = ss->s[i].epoch;
    if (path) *path = ss->s[i].path;
    return KILN_STATUS_OK;
}

kiln_status kiln_snapshot_load(kiln_learner *l, int i)
{
    snapset *ss = l ? get_set(l) : NULL;
    if (!ss || i < 0 || i >= ss->n)
        return kiln__err(KILN_STATUS_INVALID, "snapshot_load: no snapshot %d (%d taken)", i, ss ? ss->n : 0);
    if (l->in_fit) return kiln__err(KILN_STATUS_STATE, "snapshot_load: not during a fit");
    const snap *s = &ss->s[i];
    return s->path ? kiln_model_load(l->model, s->path, true) : kiln_weights_restore(l->model, &s->w);
}

/* ---- ensemble -------------------------------------------------------------------------------- */

/* probs (n, c) back to the model's output form, in the step arena: log p for cross-entropy,
 * logit(p) clamped to +-88 for BCE, p itself otherwise. targets (n, k) -> y ((n) for class
 * indices, else (n, k)). */
static kiln_status as_batch(kiln_learner *l, const float *probs, const kiln_preds *p, kiln_tensor **out,
                            kiln_tensor **y)
{
    int64_t shp[2] = {p->n, p->c};
    kiln_tensor *o = kiln_empty(l->ctx, KILN_DTYPE_F32, 2, shp);
    if (!o) return KILN_STATUS_NOMEM;
    float *d = o->data;
    int64_t nn = p->n * p->c;
    for (int64_t i = 0; i < nn; i++) {
        double v = probs[i];
        if (l->p.loss.kind == KILN_LOSS_KIND_CROSS_ENTROPY) v = log(v);
        else if (l->p.loss.kind == KILN_LOSS_KIND_BCE_WITH_LOGITS) v = fmin(88, fmax(-88, log(v) - log1p(-v)));
        d[i] = (float)v;
    }
    int64_t tshp[2] = {p->n, p->k};
    bool cls = p->target_dtype != KILN_DTYPE_F32 && p->k == 1;
    *y = kiln_from_data(l->ctx, p->target_dtype, cls ? 1 : 2, tshp, p->targets);
    *out = o;
    return *y ? KILN_STATUS_OK : KILN_STATUS_NOMEM;
}

/* Loss and metrics (n_metrics) of one set of predictions (learn_internal.h); also used by TTA
 * (tta.c). With N ranks the sums are the whole split's (kiln__dist_reduce_valid: loss total,
 * item count, metric accumulators), so every rank calls it, an empty shard too. */
kiln_status kiln__learn_score(kiln_learner *l, const float *probs, const kiln_preds *p, double *loss, double *given,
                              double *metrics)
{
    kiln_mark mk = kiln_step_mark(l->ctx);
    bool grad = kiln_set_grad_enabled(l->ctx, false);
    int nm = metrics ? l->n_metrics : 0;
    kiln_metric_acc *acc = calloc((size_t)nm + 1, sizeof *acc);
    kiln_status st = acc ? KILN_STATUS_OK : kiln__err(KILN_STATUS_NOMEM, "learner_score: out of memory");
    double lv = given ? *given : NAN, total = 0;
    int64_t n = p->n;
    if (!st && n > 0) {
        kiln_tensor *o = NULL, *y = NULL;
        st = as_batch(l, probs, p, &o, &y);
        if (!st && loss) {
            kiln_tensor *lt = kiln__learn_loss(l, o, y);
            if (!lt) st = KILN_STATUS_INVALID;
            else lv = kiln_item(lt);
        }
        total = lv * (double)n;
        for (int j = 0; !st && j < nm; j++) st = kiln_metric_accumulate(&l->metrics[j], &acc[j], o, y, lv);
    }
    st = kiln__dist_reduce_valid(l, st, &total, &n, acc); /* one rank: returns st */
    if (!st) {
        double mean = n ? total / (double)n : NAN;
        if (loss) *loss = mean;
        else if (given) *given = mean;
        for (int j = 0; j < nm; j++) metrics[j] = n ? kiln_metric_value(&l->metrics[j], &acc[j]) : NAN;
    }
    free(acc);
    kiln_set_grad_enabled(l->ctx, grad);
    kiln_step_rewind(l->ctx, mk);
    return st;
}

/* Runs get_preds under each of the last m snapshots; fills out (mean) and, when ev is not
 * NULL, the per-snapshot and ensemble scores. Restores the model's weights. */
static kiln_status ensemble(kiln_learner *l, kiln_data_split split, int m, kiln_preds *out, kiln_snapshot_eval *ev)
{
    snapset *ss = get_set(l);
    if (!ss || ss->n == 0)
        return kiln__err(KILN_STATUS_STATE,
                         "snapshot_predict: no snapshots (add kiln_learner_add_snapshots, then fit with SGDR or CLR)");
    if (l->in_fit) return kiln__err(KILN_STATUS_STATE, "snapshot_predict: not during a fit");
    if (m <= 0 || m > ss->n) m = ss->n;
    int first = ss->n - m, nm = l->n_metrics;
    if (ev) {
        ev->split = split, ev->n = m, ev->first = first, ev->n_metrics = nm, ev->ens_loss = NAN;
        ev->losses = calloc((size_t)m, sizeof(double));
        ev->metrics = calloc((size_t)m * (size_t)nm + 1, sizeof(double));
        ev->ens_metrics = calloc((size_t)nm + 1, sizeof(double));
        if (!ev->losses || !ev->metrics || !ev->ens_metrics)
            return kiln__err(KILN_STATUS_NOMEM, "snapshot_predict: out of memory");
    }
    kiln_weights saved;
    kiln_status st = kiln_weights_copy(l->model, &saved);
    if (st) return st;
    double *sum = NULL; /* (n, c) */
    for (int i = first; i < ss->n && !st; i++) {
        kiln_preds p;
        if ((st = kiln_snapshot_load(l, i)) || (st = kiln_learner_get_preds(l, split, &p))) break;
        if (i == first) {
            sum = calloc((size_t)(p.n * p.c) + 1, sizeof *sum);
            *out = p; /* keeps targets and shapes; probs replaced by the mean below */
            if (!sum) st = kiln__err(KILN_STATUS_NOMEM, "snapshot_predict: out of memory");
        } else if (p.n != out->n || p.c != out->c) {
            st = kiln__err(KILN_STATUS_INVALID,
                           "snapshot_predict: snapshot %d gives (%lld, %lld) predictions, not (%lld, %lld)",
                           i, (long long)p.n, (long long)p.c, (long long)out->n, (long long)out->c);
        }
        for (int64_t j = 0; !st && j < p.n * p.c; j++) sum[j] += p.probs[j];
        if (!st && ev) {
            ev->losses[i - first] = p.loss; /* this rank's: the whole split's below */
            st = kiln__learn_score(l, p.probs, &p, NULL, &ev->losses[i - first],
                                   ev->metrics + (size_t)(i - first) * (size_t)nm);
        }
        if (i != first) kiln_preds_free(&p);
    }
    kiln_status rst = kiln_weights_restore(l->model, &saved);
    kiln_weights_free(&saved);
    if (!st) st = rst;
    if (!st) {
        for (int64_t j = 0; j < out->n * out->c; j++) out->probs[j] = (float)(sum[j] / m);
        st = kiln__learn_score(l, out->probs, out, &out->loss, NULL, ev ? ev->ens_metrics : NULL);
        if (ev) ev->ens_loss = out->loss;
    }
    free(sum);
    if (st) kiln_preds_free(out);
    return st;
}

kiln_status kiln_snapshot_predict(kiln_learner *l, kiln_data_split split, int m, kiln_preds *out)
{
    if (!l || !out) return kiln__err(KILN_STATUS_INVALID, "snapshot_predict: NULL argument");
    memset(out, 0, sizeof *out);
    return ensemble(l, split, m, out, NULL);
}

kiln_status kiln_snapshot_evaluate(kiln_learner *l, kiln_data_split split, int m, kiln_snapshot_eval *out)
{
    if (!l || !out) return kiln__err(KILN_STATUS_INVALID, "snapshot_evaluate: NULL argument");
    memset(out, 0, sizeof *out);
    kiln_preds p = {0};
    kiln_status st = ensemble(l, split, m, &p, out);
    kiln_preds_free(&p);
    if (st) kiln_snapshot_eval_free(out);
    return st;
}

void kiln_snapshot_eval_free(kiln_snapshot_eval *e)
{
    if (!e) return;
    free(e->losses), free(e->metrics), free(e->ens_metrics);
    memset(e, 0, sizeof *e);
}

void kiln_snapshot_eval_print(kiln_learner *l, const kiln_snapshot_eval *e, FILE *out)
{
    if (!l || !e) return;
    if (!out) out = stdout;
    char ens[48];
    snprintf(ens, sizeof ens, "ensemble (last %d)", e->n);
    int w0 = (int)strlen(ens);
    char lname[32];
    snprintf(lname, sizeof lname, "%s_loss", kiln_data_split_name(e->split));
    fprintf(out, "%-*s  %-10s", w0, "snapshot", lname);
    for (int j = 0; j < e->n_metrics; j++) {
        const char *nm = kiln_learner_metric_name(l, j);
        fprintf(out, "  %-8s", nm ? nm : "metric");
    }
    fputc('\n', out);
    for (int i = 0; i <= e->n; i++) {
        char label[48];
        const double *mv = i < e->n ? e->metrics + (size_t)i * (size_t)e->n_metrics : e->ens_metrics;
        if (i < e->n) {
            snapset *ss = get_set(l);
            if (ss && e->first + i < ss->n) snprintf(label, sizeof label, "%lld", (long long)ss->s[e->first + i].cycle);
            else snprintf(label, sizeof label, "%d", e->first + i);
        } else {
            snprintf(label, sizeof label, "%s", ens);
        }
        fprintf(out, "%-*s  %-10.6f", w0, label, i < e->n ? e->losses[i] : e->ens_loss);
        for (int j = 0; j < e->n_metrics; j++) {
            const char *nm = kiln_learner_metric_name(l, j);
            int w = nm && (int)strlen(nm) > 8 ? (int)strlen(nm) : 8;
            fprintf(out, "  %-*.6f", w, mv[j]);
        }
        fputc('\n', out);
    }
}
