/* The fit loop (include/kiln/learn.h): epochs of training steps driven by a schedule, then
 * validation, the recorder and the progress display; and the evaluation paths (validate,
 * get_preds, predict) that run the model in eval mode without gradients.
 *
 * Memory: everything a step makes lives in the step arena above the mark taken at fit
 * start, and the arena is rewound to it before each batch, so a steady-state epoch does
 * no malloc; evaluation rewinds to its own mark the same way. */
#include "learn_internal.h"

#include <math.h>
#include <string.h>

/* softmax / sigmoid / none, as the loss implies: out (B, ...) -> probabilities (B, ...). */
static kiln_tensor *activation(kiln_learner *l, kiln_tensor *out)
{
    KILN_IN(out);
    switch (l->p.loss.kind) {
    case KILN_LOSS_KIND_CROSS_ENTROPY: return kiln_softmax(l->ctx, out, 1);
    case KILN_LOSS_KIND_BCE_WITH_LOGITS: return kiln_sigmoid(l->ctx, out);
    default: return out;
    }
}

/* ---- one training step ----------------------------------------------------------------- */

#define HOOK(field)                                                    \
    do {                                                               \
        st = kiln__learn_run_hook(l, KILN__HOOK(field));               \
        if (st) return st;                                             \
        if (s->skip_batch || s->stop_training) goto skipped;           \
    } while (0)

/* The step up to its loss: the batch, the lrs, begin_batch, forward, loss, after_loss. OK with
 * skip_batch / stop_training set when a callback asked for them. */
static kiln_status forward_loss(kiln_learner *l, int64_t b)
{
    kiln_fit_state *s = &l->st;
    kiln_status st;
    if ((st = kiln_data_get_batch(l->data, KILN_DATA_SPLIT_TRAIN, b, l->ctx, &s->x, &s->y))) return st;
    if ((st = kiln_sched_at(s->sched, s->iter, &s->sched_lr, &s->sched_mom))) return st;
    for (int g = 0; g < s->n_groups; g++) {
        kiln_optim_group og;
        if ((st = kiln_optim_get_group(l->opt, g, &og))) return st;
        s->lrs[g] = s->sched_lr * l->lr_mults[g];
        s->moms[g] = l->p.sched_mom ? s->sched_mom : og.mom;
    }
    if ((st = kiln__learn_run_hook(l, KILN__HOOK(begin_batch))) || s->skip_batch || s->stop_training) return st;
    kiln__nan_before_forward(l);
    s->out = kiln_model_forward(l->model, l->ctx, s->x);
    s->loss = kiln__learn_loss(l, s->out, s->y);
    if (!s->loss) return kiln__has_error() ? KILN_STATUS_INVALID : kiln__err(KILN_STATUS_INVALID, "learner: forward failed");
    s->loss_value = kiln_item(s->loss);
    if ((st = kiln__learn_run_hook(l, KILN__HOOK(after_loss))) || s->skip_batch || s->stop_training) return st;
    if (!s->loss || kiln_numel(s->loss) != 1)
        return kiln__err(KILN_STATUS_INVALID, "learner: after_loss left no one-element loss");
    s->loss_value = kiln_item(s->loss); /* a callback may have replaced it */
    return KILN_STATUS_OK;
}

static kiln_status train_batch(kiln_learner *l, int64_t b, kiln_mark mark)
{
    kiln_fit_state *s = &l->st;
    kiln_status st;
    kiln_step_rewind(l->ctx, mark);
    s->batch = b;
    s->iter = s->epoch * s->n_batches + b;
    s->skip_batch = false;
    s->x = s->y = s->out = s->loss = NULL;
    s->loss_value = s->grad_norm = NAN;
    bool dist = kiln__dist_on(l), checked = false;
    st = forward_loss(l, b);
    if (!st && !s->skip_batch && !s->stop_training) checked = (st = kiln__nan_check_loss(l)) != KILN_STATUS_OK;
    /* N ranks: the recorded loss becomes the mean over ranks; an error, a failed check, a skip or
     * a stop on any rank is every rank's for this step (src/learn/dist.c) */
    st = kiln__dist_loss(l, st);
    bool skip = false; /* set by kiln__nan_handle: SKIP policy, this batch takes no step */
    if (st && (st != KILN_STATUS_DIVERGED || !(checked || dist) || (st = kiln__nan_handle(l, st, &skip)))) return st;
    if (skip || s->skip_batch || s->stop_training) goto skipped;
    if (dist) { /* the gradients are averaged over ranks, so every rank's check sees the same ones */
        st = kiln__dist_backward(l);
        if (!st) st = kiln__nan_check_grads(l);
        if (st && (st != KILN_STATUS_DIVERGED || (st = kiln__nan_handle(l, st, &skip)))) return st;
        if (skip) goto skipped;
        st = kiln__learn_run_hook(l, KILN__HOOK(after_backward));
        if (kiln__learn_has_hook(l, KILN__HOOK(after_backward))) st = kiln__dist_flags(l, st); /* a skip on one rank */
        if (st) return st;
        if (s->skip_batch || s->stop_training) goto skipped;
    } else {
        if ((st = kiln_backward(l->ctx, s->loss))) return st;
        HOOK(after_backward);
        if ((st = kiln__nan_check_grads(l)) && (st = kiln__nan_handle(l, st, &skip))) return st;
        if (skip) goto skipped;
    }
    if (l->p.clip > 0 && (st = kiln_clip_grad_norm(kiln_model_store(l->model), l->p.clip, &s->grad_norm))) return st;
    for (int g = 0; g < s->n_groups; g++) {
        if ((st = kiln_optim_set_lr(l->opt, g, s->lrs[g]))) return st;
        if ((st = kiln_optim_set_mom(l->opt, g, s->moms[g]))) return st;
    }
    if ((st = kiln_optim_step(l->opt))) return st;
    if ((st = kiln__zero_after_step(l))) return st; /* ZeRO-1: each rank stepped its range */
    if ((st = kiln__nan_check_params(l))) return st; /* no undoing a step: stop under any policy */
    kiln__nan_batch_done(l);
    if ((st = kiln__learn_run_hook(l, KILN__HOOK(after_step)))) return st;
    kiln_optim_zero_grad(l->opt);
    s->smooth_loss = kiln_ema_add(&l->ema, s->loss_value);
    if ((st = kiln__recorder_add_batch(l->rec, s->iter, s->epoch, s->loss_value, s->smooth_loss, s->lrs, s->moms)))
        return st;
    return kiln__learn_run_hook(l, KILN__HOOK(end_batch));
skipped:
    s->skip_batch = true;
    kiln_optim_zero_grad(l->opt);
    return kiln__learn_run_hook(l, KILN__HOOK(end_batch));
}

/* ---- the epoch table ------------------------------------------------------------------- */

static void table_header(kiln_learner *l)
{
    const char *names[3 + 64 + 1];
    int n = 0, nm = l->n_metrics < 64 ? l->n_metrics : 64;
    names[n++] = "epoch", names[n++] = "train_loss", names[n++] = "valid_loss";
    for (int j = 0; j < nm; j++) names[n++] = l->metrics[j].name;
    names[n++] = "time";
    kiln_progress_table_header(l->prog, n, names);
}

static void table_row(kiln_learner *l, double seconds)
{
    char buf[3 + 64 + 1][32];
    const char *cells[3 + 64 + 1];
    int n = 0, nm = l->n_metrics < 64 ? l->n_metrics : 64;
    snprintf(buf[n++], 32, "%lld", (long long)l->st.epoch);
    snprintf(buf[n++], 32, "%.6f", l->st.train_loss);
    snprintf(buf[n++], 32, "%.6f", l->st.valid_loss);
    for (int j = 0; j < nm; j++) snprintf(buf[n++], 32, "%.6f", l->st.metrics[j]);
    kiln_format_time(seconds, buf[n++], 32);
    for (int i = 0; i < n; i++) cells[i] = buf[i];
    kiln_progress_table_row(l->prog, n, cells);
}

/* ---- fit -------------------------------------------------------------------------------- */

kiln_fit_params kiln_fit_default_params(void)
{
    return (kiln_fit_params){.n_epochs = 1, .sched = NULL, .start_epoch = 0, .no_valid = false};
}

kiln_status kiln_learner_fit(kiln_learner *l, int64_t n_epochs, const kiln_sched *sched)
{
    kiln_fit_params p = kiln_fit_default_params();
    p.n_epochs = n_epochs, p.sched = sched;
    return kiln_learner_fit_ex(l, &p);
}

kiln_status kiln_learner_fit_ex(kiln_learner *l, const kiln_fit_params *p)
{
    if (!l || !p || !p->sched) return kiln__err(KILN_STATUS_INVALID, "learner_fit: needs a learner and a schedule");
    if (l->in_fit) return kiln__err(KILN_STATUS_STATE, "learner_fit: already fitting (fit called from a callback?)");
    if (kiln__learn_need_data(l, "learner_fit")) return KILN_STATUS_STATE;
    if (p->n_epochs < 1 || p->start_epoch < 0 || p->start_epoch >= p->n_epochs)
        return kiln__err(KILN_STATUS_INVALID, "learner_fit: n_epochs %lld, start_epoch %lld: need 0 <= start < n",
                         (long long)p->n_epochs, (long long)p->start_epoch);
    double lr0;
    kiln_status st = kiln_sched_at(p->sched, 0, &lr0, NULL);
    if (st) return st;
    int64_t nb = kiln_data_n_batches(l->data, KILN_DATA_SPLIT_TRAIN);
    if (nb < 1) return kiln__err(KILN_STATUS_INVALID, "learner_fit: the train split has no batches");
    if ((st = kiln__learn_sync_groups(l))) return st;
    if ((st = kiln__recorder_reset(l->rec, l->st.n_groups, l->n_metrics, l->metrics))) return st;

    kiln_fit_state *s = &l->st;
    s->sched = p->sched;
    s->n_epochs = p->n_epochs;
    s->n_batches = nb;
    s->n_iters = p->n_epochs * nb;
    s->epoch = p->start_epoch;
    s->iter = p->start_epoch * nb;
    s->batch = 0;
    s->stop_training = s->skip_batch = s->training = false;
    s->smooth_loss = s->train_loss = s->valid_loss = NAN;
    if ((st = kiln__nan_fit_begin(l))) return st;
    if ((st = kiln__dist_fit_begin(l))) return st; /* rank 0's weights on every rank */
    if (!l->probe && ((p->start_epoch == 0 && !l->run_loaded) || !l->run_id[0])) kiln__run_new_id(l);
    l->run_loaded = false;
    for (int j = 0; j < l->n_metrics; j++) s->metrics[j] = NAN;
    l->ema = kiln_ema_init(0.98);
    l->in_fit = true;

    kiln_mark mark = kiln_step_mark(l->ctx);
    kiln_model_train(l->model, true);
    kiln_optim_zero_grad(l->opt);
    bool table = !p->no_valid;
    st = kiln__learn_run_hook(l, KILN__HOOK(begin_fit));
    if (kiln__dist_on(l)) st = kiln_comm_agree(l->comm, st); /* rank 0's first checkpoint, say */
    if (!st && table && !s->stop_training) table_header(l);
    for (int64_t e = p->start_epoch; !st && !s->stop_training && e < p->n_epochs; e++) {
        double t0 = kiln__now();
        s->epoch = e;
        s->training = true;
        if ((st = kiln_data_set_epoch(l->data, l->p.seed, e))) break;
        st = kiln__learn_run_hook(l, KILN__HOOK(begin_epoch));
        if (kiln__dist_on(l)) st = kiln__dist_flags(l, st);
        if (st || s->stop_training) break;
        kiln_model_train(l->model, true);
        s->n_skipped_epoch = 0;
        kiln_progress_begin(l->prog, NULL, nb);
        for (int64_t b = 0; b < nb; b++) {
            st = train_batch(l, b, mark);
            /* N ranks: an error or a stop after the step's loss sum (the step, after_step, end_batch:
             * a SIGINT that reached one rank) is every rank's before the next step */
            if (kiln__dist_on(l)) st = kiln__dist_flags(l, st);
            if (st || s->stop_training) break;
            kiln_progress_update(l->prog, b + 1, s->smooth_loss, NULL);
        }
        kiln_progress_end(l->prog);
        if (s->n_skipped_epoch > 0) {
            char msg[160];
            snprintf(msg, sizeof msg, "epoch %lld: skipped %lld of %lld batches (a non-finite loss or gradient)",
                     (long long)e, (long long)s->n_skipped_epoch, (long long)nb);
            kiln_progress_message(l->prog, msg);
        }
        if (st || s->stop_training) break;
        s->iter = (e + 1) * nb; /* iterations done */
        s->train_loss = s->smooth_loss;
        s->training = false;
        kiln_step_rewind(l->ctx, mark);
        s->x = s->y = s->out = s->loss = NULL;
        s->valid_loss = NAN;
        for (int j = 0; j < l->n_metrics; j++) s->metrics[j] = NAN;
        int64_t bad_batch = -1; /* the first validation batch with a non-finite loss */
        if ((st = kiln__dist_sync_buffers(l))) break; /* N ranks: validate rank 0's running statistics */
        if (!p->no_valid &&
            (st = kiln__learn_validate(l, KILN_DATA_SPLIT_VALID, &s->valid_loss, s->metrics, &bad_batch)))
            break;
        double secs = kiln__now() - t0;
        if ((st = kiln__recorder_add_epoch(l->rec, e, s->iter, s->train_loss, s->valid_loss, s->metrics, secs))) break;
        if (table) table_row(l, secs);
        /* STOP: no end_epoch, so no checkpoint or best model of an epoch that validates non-finite */
        if (!p->no_valid && (st = kiln__nan_check_valid(l, bad_batch))) break;
        st = kiln__learn_run_hook(l, KILN__HOOK(end_epoch));
        if (kiln__dist_on(l)) st = kiln_comm_agree(l->comm, st); /* a checkpoint rank 0 failed to write */
    }
    s->training = false;
    if (!st) st = kiln__dist_sync_buffers(l); /* (errors were agreed: every rank is here alike) */
    /* end_fit runs whatever happened; the first error wins */
    char *msg = st ? kiln__error_dup() : NULL; /* the whole message: its cause is at the end */
    kiln_status st2 = kiln__learn_run_hook(l, KILN__HOOK(end_fit));
    if (st) kiln__err(st, "%s", msg ? msg : "out of memory");
    else st = st2;
    free(msg);
    kiln_step_rewind(l->ctx, mark);
    s->x = s->y = s->out = s->loss = NULL;
    kiln_optim_zero_grad(l->opt);
    kiln_model_train(l->model, true);
    s->sched = NULL;
    l->in_fit = false;
    return kiln__done(st);
}

kiln_status kiln_learner_fit_one_cycle(kiln_learner *l, int64_t n_epochs, double lo, double hi,
                                       const kiln_sched_one_cycle_params *p)
{
    if (!l) return kiln__err(KILN_STATUS_INVALID, "learner_fit_one_cycle: learner is NULL");
    if (kiln__learn_need_data(l, "learner_fit_one_cycle")) return KILN_STATUS_STATE;
    kiln_sched_one_cycle_params op = p ? *p : kiln_sched_one_cycle_default_params(KILN_ONE_CYCLE_VARIANT_FASTAI);
    op.lr_max = hi;
    op.iters = n_epochs * kiln_data_n_batches(l->data, KILN_DATA_SPLIT_TRAIN);
    kiln_sched s;
    kiln_status st = kiln_sched_one_cycle(&s, &op);
    if (!st) st = kiln_learner_set_lr_slice(l, lo, hi);
    if (!st) st = kiln_learner_fit(l, n_epochs, &s);
    return st;
}

/* ---- evaluation ------------------------------------------------------------------------- */

typedef struct eval_scope {
    kiln_mark mark;
    bool grad, train;
} eval_scope;

static eval_scope eval_begin(kiln_learner *l)
{
    eval_scope e = {kiln_step_mark(l->ctx), kiln_set_grad_enabled(l->ctx, false), kiln_model_training(l->model)};
    kiln_model_train(l->model, false);
    return e;
}

static void eval_end(kiln_learner *l, eval_scope e)
{
    kiln_model_train(l->model, e.train);
    kiln_set_grad_enabled(l->ctx, e.grad);
    kiln_step_rewind(l->ctx, e.mark);
}

kiln_status kiln_learner_validate(kiln_learner *l, kiln_data_split split, double *loss, double *metrics)
{
    int64_t first_bad;
    return kiln__learn_validate(l, split, loss, metrics, &first_bad);
}

kiln_status kiln__learn_validate(kiln_learner *l, kiln_data_split split, double *loss, double *metrics,
                                 int64_t *first_bad)
{
    *first_bad = -1;
    if (!l) return kiln__err(KILN_STATUS_INVALID, "learner_validate: learner is NULL");
    if (kiln__learn_need_data(l, "learner_validate")) return KILN_STATUS_STATE;
    int64_t nb = kiln_data_n_batches(l->data, split);
    if (loss) *loss = NAN;
    for (int j = 0; metrics && j < l->n_metrics; j++) metrics[j] = NAN;
    if (nb < 1 && !kiln__dist_on(l)) return KILN_STATUS_OK; /* N ranks: an empty shard still adds its zeros */
    kiln_metric_acc *acc = calloc((size_t)(l->n_metrics + 1), sizeof *acc);
    if (!acc) return kiln__err(KILN_STATUS_NOMEM, "learner_validate: out of memory");
    eval_scope sc = eval_begin(l);
    kiln_status st = KILN_STATUS_OK;
    double total = 0;
    int64_t n = 0;
    for (int64_t i = 0; i < nb && !st; i++) {
        kiln_step_rewind(l->ctx, sc.mark);
        kiln_tensor *x, *y;
        if ((st = kiln_data_get_batch(l->data, split, i, l->ctx, &x, &y))) break;
        kiln_tensor *out = kiln_model_forward(l->model, l->ctx, x);
        kiln_tensor *lt = kiln__learn_loss(l, out, y);
        if (!lt) {
            st = KILN_STATUS_INVALID;
            break;
        }
        double lv = kiln_item(lt);
        if (!isfinite(lv) && *first_bad < 0) *first_bad = i;
        int64_t b = x->ndim ? x->shape[0] : 1;
        total += lv * (double)b;
        n += b;
        for (int j = 0; j < l->n_metrics && !st; j++) st = kiln_metric_accumulate(&l->metrics[j], &acc[j], out, y, lv);
    }
    eval_end(l, sc);
    st = kiln__dist_reduce_valid(l, st, &total, &n, acc); /* the whole split's sums on every rank */
    l->valid_n = st ? 0 : n;
    if (!st) {
        if (loss) *loss = n ? total / (double)n : NAN;
        for (int j = 0; metrics && j < l->n_metrics; j++) metrics[j] = kiln_metric_value(&l->metrics[j], &acc[j]);
    }
    free(acc);
    return st;
}

/* Appends rows to a growing malloc'd buffer of row_bytes per item. */
static kiln_status append_rows(unsigned char **buf, int64_t *cap, int64_t n, int64_t add, size_t row_bytes,
                               const kiln_tensor *t)
{
    if (n + add > *cap) {
        int64_t nc = *cap ? *cap : 256;
        while (nc < n + add) nc *= 2;
        unsigned char *nb = realloc(*buf, (size_t)nc * row_bytes);
        if (!nb) return kiln__err(KILN_STATUS_NOMEM, "learner_get_preds: out of memory");
        *buf = nb, *cap = nc;
    }
    kiln_tensor dst;
    kiln_tensor_wrap(&dst, t->dtype, t->ndim, t->shape, *buf + (size_t)n * row_bytes);
    kiln__strided_copy(&dst, t);
    return KILN_STATUS_OK;
}

kiln_status kiln_learner_get_preds(kiln_learner *l, kiln_data_split split, kiln_preds *out)
{
    if (!l || !out) return kiln__err(KILN_STATUS_INVALID, "learner_get_preds: NULL argument");
    memset(out, 0, sizeof *out);
    out->loss = NAN;
    if (kiln__learn_need_data(l, "learner_get_preds")) return KILN_STATUS_STATE;
    int64_t nb = kiln_data_n_batches(l->data, split), pcap = 0, tcap = 0, n = 0;
    unsigned char *pb = NULL, *tb = NULL;
    double total = 0;
    eval_scope sc = eval_begin(l);
    kiln_status st = KILN_STATUS_OK;
    for (int64_t i = 0; i < nb && !st; i++) {
        kiln_step_rewind(l->ctx, sc.mark);
        kiln_tensor *x, *y;
        if ((st = kiln_data_get_batch(l->data, split, i, l->ctx, &x, &y))) break;
        kiln_tensor *o = kiln_model_forward(l->model, l->ctx, x);
        kiln_tensor *lt = kiln__learn_loss(l, o, y);
        kiln_tensor *pr = activation(l, o);
        if (!lt || !pr) {
            st = KILN_STATUS_INVALID;
            break;
        }
        int64_t b = pr->ndim ? pr->shape[0] : 1;
        int64_t c = b ? kiln_numel(pr) / b : 0, k = b ? kiln_numel(y) / b : 0;
        if (i == 0) out->c = c, out->k = k, out->target_dtype = y->dtype;
        if (c != out->c || k != out->k || y->dtype != out->target_dtype) {
            st = kiln__err(KILN_STATUS_INVALID, "learner_get_preds: batch %lld changes the item shape", (long long)i);
            break;
        }
        total += kiln_item(lt) * (double)b;
        if ((st = append_rows(&pb, &pcap, n, b, (size_t)c * sizeof(float), pr))) break;
        int64_t tc = tcap; /* targets grow with the same n */
        if ((st = append_rows(&tb, &tc, n, b, (size_t)k * kiln_dtype_size(y->dtype), y))) break;
        tcap = tc;
        n += b;
    }
    eval_end(l, sc);
    if (st) {
        free(pb), free(tb);
        memset(out, 0, sizeof *out);
        return st;
    }
    out->probs = (float *)pb;
    out->targets = tb;
    out->n = n;
    out->loss = n ? total / (double)n : NAN;
    return KILN_STATUS_OK;
}

void kiln_preds_free(kiln_preds *p)
{
    if (!p) return;
    free(p->probs);
    free(p->targets);
    memset(p, 0, sizeof *p);
}

kiln_tensor *kiln_learner_predict_batch(kiln_learner *l, kiln_tensor *x)
{
    if (!l || !x) return kiln__errp(KILN_STATUS_INVALID, "learner_predict_batch: NULL argument");
    bool grad = kiln_set_grad_enabled(l->ctx, false), train = kiln_model_training(l->model);
    kiln_model_train(l->model, false);
    kiln_tensor *out = activation(l, kiln_model_forward(l->model, l->ctx, x));
    kiln_model_train(l->model, train);
    kiln_set_grad_enabled(l->ctx, grad);
    return out;
}
