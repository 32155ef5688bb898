/* Divergence checks of the fit loop (include/kiln/learn.h, kiln_nan_policy): every training
 * batch's loss, gradients and, after the optimizer step, parameters are checked for NaN and
 * infinity; a failure names the epoch, the batch and what went non-finite first, and the
 * batch takes no optimizer step. The BatchNorm running statistics that the failed forward
 * pass updated are put back from a copy taken before it, so the model is the last good one.
 *
 * After each epoch's validation its loss and metrics are checked the same way (a model can
 * train finite and still validate NaN: eval mode uses the BatchNorm running statistics).
 *
 * Cost per batch: one copy of the buffers (running stats, small) and a check of them after
 * the forward pass, one pass over the trainable parameters' gradients and one over their
 * values (a frozen body is not read; a parameter on the sparse step: only the rows it touched),
 * branch-free bit tests the compiler vectorizes;
 * naming the culprit (the tape walk, kiln_store_first_nonfinite) runs only after a failure. */
#include "learn_internal.h"
#include "core/rowset.h"
#include "kiln/autograd.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

/* -DKILN_NO_DIVERGENCE_CHECKS builds a fit without them, only to measure what they cost
 * (docs/benchmarks.md); the policies then do nothing. */
#ifdef KILN_NO_DIVERGENCE_CHECKS
#define OFF(l) true
#else
#define OFF(l) ((l)->probe)
#endif

/* True when none of x[0..n) is a NaN or an infinity (exponent bits all ones). */
/* Bit test: a float is finite unless its exponent bits are all ones, and adding one to the
 * exponent field of (b & 0x7f800000) carries into bit 31 exactly then, so OR-ing those sums
 * and reading bit 31 needs only AND / ADD / OR, which every vector width has. Compiled for
 * AVX-512 / AVX2 / baseline (picked at load time): this reads every trainable parameter and
 * gradient each step. Blocks of 4096 end early at the first bad one. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static bool flat_finite(const float *x, size_t n)
{
    enum { BLOCK = 4096 }; /* a constant trip count: -O2's cheap vectoriser takes the loop */
    uint32_t bad = 0;
    size_t i = 0;
    for (; i + BLOCK <= n; i += BLOCK) {
        for (size_t k = 0; k < BLOCK; k++) {
            uint32_t b;
            memcpy(&b, &x[i + k], sizeof b);
            bad |= (b & 0x7f800000u) + 0x00800000u;
        }
        if (bad & 0x80000000u) return false;
    }
    for (; i < n; i++) {
        uint32_t b;
        memcpy(&b, &x[i], sizeof b);
        bad |= (b & 0x7f800000u) + 0x00800000u;
    }
    return !(bad & 0x80000000u);
}

/* The rows a tracked parameter's rowset lists (kiln_optim_set_sparse) finite in x: exact for the
 * checks below, since a row not listed got no gradient (it is zero) and was not stepped (its
 * values are those checked at an earlier step). */
static bool rows_finite(const kiln__rowset *r, const float *x)
{
    for (int64_t k = 0; k < r->n; k++)
        if (!flat_finite(x + r->list[k] * r->row_len, (size_t)r->row_len)) return false;
    return true;
}

/* KILN_STATUS_DIVERGED with "fit diverged at epoch E, batch B of N (lr X): <what>". */
__attribute__((format(printf, 2, 3))) static kiln_status diverged(kiln_learner *l, const char *fmt, ...)
{
    char what[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const kiln_fit_state *s = &l->st;
    double lr = s->n_groups > 0 ? s->lrs[s->n_groups - 1] : s->sched_lr;
    return kiln__err(KILN_STATUS_DIVERGED, "fit diverged at epoch %lld, batch %lld of %lld (lr %g): %s",
                     (long long)s->epoch, (long long)s->batch, (long long)s->n_batches, lr, what);
}

/* "parameter 'name' (element k: nan)" of the first non-finite tensor of that kind. */
static void name_first(kiln_learner *l, kiln_store_kind kind, char *buf, size_t n)
{
    kiln_store *st = kiln_model_store(l->model);
    int64_t elem = -1, i = kiln_store_first_nonfinite(st, kind, &elem);
    if (i < 0) {
        snprintf(buf, n, "(a tensor outside the model's store)");
        return;
    }
    const kiln_tensor *t = kiln_store_at(st, (size_t)i);
    const float *v = kind == KILN_STORE_GRADS ? t->grad->data : t->data;
    snprintf(buf, n, "'%s' (element %lld: %g)", t->name ? t->name : "?", (long long)elem, (double)v[elem]);
}

kiln_status kiln__nan_fit_begin(kiln_learner *l)
{
    l->nan_in_row = 0;
    l->st.n_skipped = l->st.n_skipped_epoch = l->st.n_valid_nonfinite = 0;
    l->st.valid_nonfinite = false;
    size_t n = 0, nm = kiln_model_counters(l->model, NULL, 0);
    kiln_store_flat(kiln_model_store(l->model), KILN_STORE_BUFFERS, &n);
    if (n > l->cap_buf_copy) {
        float *b = realloc(l->buf_copy, n * sizeof *b);
        if (!b) return kiln__err(KILN_STATUS_NOMEM, "learner_fit: out of memory");
        l->buf_copy = b, l->cap_buf_copy = n;
    }
    if (nm > l->cap_nbt_copy) {
        int64_t *c = realloc(l->nbt_copy, nm * sizeof *c);
        if (!c) return kiln__err(KILN_STATUS_NOMEM, "learner_fit: out of memory");
        l->nbt_copy = c, l->cap_nbt_copy = nm;
    }
    return KILN_STATUS_OK;
}

void kiln__nan_before_forward(kiln_learner *l)
{
    if (OFF(l)) return;
    size_t n = 0;
    const float *b = kiln_store_flat(kiln_model_store(l->model), KILN_STORE_BUFFERS, &n);
    if (b && n) memcpy(l->buf_copy, b, n * sizeof *b);
    kiln_model_counters(l->model, l->nbt_copy, l->cap_nbt_copy);
}

kiln_status kiln__nan_check_loss(kiln_learner *l)
{
    const kiln_fit_state *s = &l->st;
    if (OFF(l)) return KILN_STATUS_OK;
    if (isfinite(s->loss_value)) {
        /* huge but finite activations can still overflow a running variance */
        size_t n = 0;
        const float *b = kiln_store_flat(kiln_model_store(l->model), KILN_STORE_BUFFERS, &n);
        if (!b || flat_finite(b, n)) return KILN_STATUS_OK;
        char who[400];
        name_first(l, KILN_STORE_BUFFERS, who, sizeof who);
        return diverged(l, "the loss is %g but the forward pass made buffer %s non-finite", s->loss_value, who);
    }
    /* where it started: the batch itself, an op of the forward pass, or the loss */
    if (!kiln_tensor_all_finite(s->x))
        return diverged(l, "the loss is %g: the input batch already holds a NaN or an infinity", s->loss_value);
    int64_t pos, n_ops;
    const char *op = kiln_first_nonfinite_op(s->loss, &pos, &n_ops);
    if (op && pos < n_ops)
        return diverged(l, "the loss is %g; the first non-finite value is the output of op '%s' (op %lld of %lld "
                           "in the forward pass)", s->loss_value, op, (long long)pos, (long long)n_ops);
    return diverged(l, "the loss is %g (the model's output is finite: the loss op '%s' overflowed)", s->loss_value,
                    op ? op : "loss");
}

/* "'name' (element k: v)" of the first trainable parameter whose gradient (grads) or value
 * is not finite, or "" when all are: a frozen parameter is neither stepped nor given a
 * gradient, so only the trainable ones are read. */
static bool trainable_finite(kiln_learner *l, bool grads, char *who, size_t cap)
{
    kiln_store *s = kiln_model_store(l->model);
    for (size_t i = 0; i < kiln_store_count(s); i++) {
        const kiln_tensor *t = kiln_store_at(s, i);
        if (!kiln_store_is_param(s, i) || !t->requires_grad || !t->data || (grads && !t->grad)) continue;
        const float *v = grads ? t->grad->data : t->data;
        size_t n = (size_t)kiln_numel(t);
        if (t->rows && !t->rows->all ? rows_finite(t->rows, v) : flat_finite(v, n)) continue;
        size_t k = 0;
        while (k < n && isfinite(v[k])) k++;
        snprintf(who, cap, "'%s' (element %zu: %g)", t->name ? t->name : "?", k, k < n ? (double)v[k] : 0.0);
        return false;
    }
    return true;
}

kiln_status kiln__nan_check_grads(kiln_learner *l)
{
    char who[400];
    if (OFF(l) || trainable_finite(l, true, who, sizeof who)) return KILN_STATUS_OK;
    return diverged(l, "the loss is %g but the gradient of parameter %s is not finite", l->st.loss_value, who);
}

kiln_status kiln__nan_check_params(kiln_learner *l)
{
    char who[400];
    if (OFF(l) || trainable_finite(l, false, who, sizeof who)) return KILN_STATUS_OK;
    return diverged(l, "the optimizer step made parameter %s non-finite from finite gradients (lower the lr)", who);
}

kiln_status kiln__nan_handle(kiln_learner *l, kiln_status st, bool *skip)
{
    *skip = false;
    size_t n = 0;
    float *b = kiln_store_flat(kiln_model_store(l->model), KILN_STORE_BUFFERS, &n);
    if (b && n) memcpy(b, l->buf_copy, n * sizeof *b);
    kiln_model_set_counters(l->model, l->nbt_copy, kiln_model_counters(l->model, NULL, 0));
    if (l->p.on_nan != KILN_NAN_POLICY_SKIP) return st;
    if (++l->nan_in_row >= l->p.max_nan_skips) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", kiln_last_error());
        return kiln__err(st, "%d batches in a row skipped for a non-finite loss or gradient (max_nan_skips %d), "
                             "the last: %s", l->nan_in_row, l->p.max_nan_skips, msg);
    }
    kiln_clear_error();
    l->st.n_skipped++;
    l->st.n_skipped_epoch++;
    *skip = true;
    return KILN_STATUS_OK;
}

void kiln__nan_batch_done(kiln_learner *l) { l->nan_in_row = 0; }

kiln_status kiln__nan_check_valid(kiln_learner *l, int64_t bad_batch)
{
    kiln_fit_state *s = &l->st;
    s->valid_nonfinite = false;
    int64_t nvb = kiln_data_n_batches(l->data, KILN_DATA_SPLIT_VALID);
    /* no validation data: NaN means "none" (N ranks: none on any rank; one rank's shard may be empty) */
    if (OFF(l) || (kiln__dist_on(l) ? l->valid_n < 1 : nvb < 1)) return KILN_STATUS_OK;
    char what[300] = "";
    if (!isfinite(s->valid_loss)) {
        int k = snprintf(what, sizeof what, "the validation loss is %g", s->valid_loss);
        if (bad_batch >= 0 && k > 0 && (size_t)k < sizeof what)
            snprintf(what + k, sizeof what - (size_t)k, " (non-finite from validation batch %lld of %lld)",
                     (long long)bad_batch, (long long)nvb);
    }
    for (int j = 0; !what[0] && j < l->n_metrics; j++)
        if (!isfinite(s->metrics[j]))
            snprintf(what, sizeof what, "the validation metric '%s' is %g", kiln_learner_metric_name(l, j),
                     s->metrics[j]);
    if (!what[0]) return KILN_STATUS_OK;
    if (l->p.on_nan != KILN_NAN_POLICY_SKIP)
        return kiln__err(KILN_STATUS_DIVERGED,
                         "fit diverged at epoch %lld, in validation: %s; its %lld training batches were finite (the "
                         "eval-mode pass differs: BatchNorm uses its running statistics)",
                         (long long)s->epoch, what, (long long)s->n_batches);
    s->valid_nonfinite = true;
    s->n_valid_nonfinite++;
    char msg[400];
    snprintf(msg, sizeof msg, "epoch %lld: %s: not taken as a best model", (long long)s->epoch, what);
    kiln_progress_message(l->prog, msg);
    return KILN_STATUS_OK;
}
