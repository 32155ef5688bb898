/* The tape and the backward pass: recording nodes, lazily allocated gradient
 * accumulators, the broadcast-reducing accumulate, and kiln_backward itself. Gradient
 * arithmetic goes through the kernel table (ctx->backend->eltwise); nothing here loops over
 * tensor data except kiln_tensor_all_finite, which has no context to reach a backend. */
#include "autograd/tape.h"
#include "core/rowset.h"
#include "kiln/autograd.h"
#include "kernels/eltwise.h"
#include "kiln/ops.h"

#include <math.h>
#include <string.h>

bool kiln__wants_grad(const kiln_ctx *ctx, int n_in, kiln_tensor *const *in)
{
    if (!ctx->grad_enabled) return false;
    for (int i = 0; i < n_in; i++)
        if (in[i] && in[i]->requires_grad) return true;
    return false;
}

kiln_node *kiln__record(kiln_ctx *ctx, const char *op, kiln__backward_fn fn, int n_in,
                        kiln_tensor *const *in, int n_out, kiln_tensor *const *out,
                        size_t saved_bytes, kiln_status *st)
{
    *st = KILN_STATUS_OK;
    if (!kiln__wants_grad(ctx, n_in, in)) return NULL;
    KILN_ASSERT(n_in <= KILN_NODE_MAX_IN && n_out <= KILN_NODE_MAX_OUT && n_out >= 1);
    kiln_node *n = kiln_step_alloc(ctx, sizeof *n);
    if (!n) {
        *st = KILN_STATUS_NOMEM;
        return NULL;
    }
    memset(n, 0, sizeof *n);
    n->op = op;
    n->backward = fn;
    n->n_in = n_in;
    n->n_out = n_out;
    for (int i = 0; i < n_in; i++) n->in[i] = in[i];
    for (int i = 0; i < n_out; i++) {
        n->out[i] = out[i];
        out[i]->requires_grad = true;
        out[i]->node = n;
    }
    if (saved_bytes) {
        n->saved = kiln_step_alloc(ctx, saved_bytes);
        if (!n->saved) {
            *st = KILN_STATUS_NOMEM;
            return NULL;
        }
        memset(n->saved, 0, saved_bytes);
    }
    n->prev = ctx->tape;
    ctx->tape = n;
    return n;
}

/* A gradient is laid out like its tensor when that is channels-last (so the conv / batch
 * norm / elementwise kernels see one layout), contiguous otherwise. Its data is reusable step
 * memory: kiln_backward gives it back once the gradient's node has run, and a later gradient of a
 * size that fits takes it (the backward of a deep model then holds a few gradients at a time,
 * not one per activation). */
static kiln_tensor *grad_alloc(kiln_ctx *ctx, const kiln_tensor *t)
{
    kiln_tensor *g = kiln_step_alloc(ctx, sizeof *g);
    void *data = g ? kiln__step_alloc_reusable(ctx, (size_t)kiln_numel(t) * sizeof(float)) : NULL;
    if (!data) return NULL;
    kiln_tensor_wrap(g, KILN_DTYPE_F32, t->ndim, t->shape, data);
    if (kiln_is_channels_last(t)) { /* (N, C, H, W) with C fastest, as kiln_empty_channels_last */
        const int64_t c = t->shape[1], h = t->shape[2], w = t->shape[3];
        g->stride[0] = h * w * c, g->stride[1] = 1, g->stride[2] = w * c, g->stride[3] = c;
    }
    return g;
}

kiln_tensor *kiln__flat_view(kiln_tensor *v, const kiln_tensor *t)
{
    if (!t) return NULL;
    int64_t n = kiln_numel(t);
    return kiln_tensor_wrap(v, t->dtype, 1, &n, t->data);
}

kiln_tensor *kiln__plain(kiln_ctx *ctx, kiln_tensor *t)
{
    if (t && kiln_is_channels_last(t) && !kiln_is_contiguous(t)) return kiln_contiguous(ctx, t);
    return t;
}

kiln_tensor *kiln__grad_rows(kiln_ctx *ctx, kiln_tensor *t)
{
    if (!t || !t->requires_grad) return NULL;
    if (!t->grad) {
        t->grad = grad_alloc(ctx, t);
        if (t->grad) {
            memset(t->grad->data, 0, (size_t)kiln_numel(t) * sizeof(float));
            t->grad->name = t->name;
        }
    }
    return t->grad;
}

kiln_tensor *kiln__grad(kiln_ctx *ctx, kiln_tensor *t)
{
    if (!t || !t->requires_grad) return NULL;
    if (t->rows) t->rows->all = true; /* a dense gradient: the sparse step sees every row */
    if (!t->grad) {
        t->grad = grad_alloc(ctx, t);
        if (t->grad) {
            memset(t->grad->data, 0, (size_t)kiln_numel(t) * sizeof(float));
            t->grad->name = t->name;
        }
    }
    return t->grad;
}

kiln_tensor *kiln__grad_fresh(kiln_ctx *ctx, kiln_tensor *t, bool *acc)
{
    *acc = t && t->grad != NULL;
    if (!t || !t->requires_grad) return NULL;
    if (t->rows) t->rows->all = true;
    if (!t->grad) {
        t->grad = grad_alloc(ctx, t);
        if (t->grad) t->grad->name = t->name;
    }
    return t->grad;
}

kiln_status kiln__add_into(kiln_ctx *ctx, kiln_tensor *dst, const kiln_tensor *src)
{
    return ctx->backend->eltwise->axpy(ctx, 1.0f, src, dst);
}

kiln_status kiln__copy_into(kiln_ctx *ctx, kiln_tensor *dst, const kiln_tensor *src)
{
    return ctx->backend->eltwise->copy(ctx, src, dst);
}

kiln_status kiln__accumulate_reduced(kiln_ctx *ctx, kiln_tensor *dst, const kiln_tensor *src)
{
    int nd = src->ndim, off = src->ndim - dst->ndim;
    if (off < 0) return kiln__err(KILN_STATUS_INVALID, "accumulate: grad has fewer dims than its tensor");
    /* dst seen with src's shape: broadcast dims get stride 0. */
    kiln_tensor view = *src;
    view.data = dst->data;
    for (int i = 0; i < nd; i++) {
        int j = i - off;
        int64_t ds = j >= 0 ? dst->shape[j] : 1;
        if (ds != src->shape[i] && ds != 1)
            return kiln__err(KILN_STATUS_INVALID, "accumulate: grad dim %d (%lld) does not reduce to %lld", i,
                             (long long)src->shape[i], (long long)ds);
        view.stride[i] = (j >= 0 && ds != 1) ? dst->stride[j] : 0;
    }
    if (kiln_numel(dst) == kiln_numel(src)) return kiln__add_into(ctx, &view, src);
    /* Reduction: dst seen with src's ndim ("keepdim" shape, size 1 on reduced dims). */
    int64_t kshape[KILN_MAX_DIMS];
    for (int i = 0; i < nd; i++) kshape[i] = i - off >= 0 ? dst->shape[i - off] : 1;
    kiln_tensor kd;
    kiln_tensor_wrap(&kd, KILN_DTYPE_F32, nd, kshape, dst->data);
    return ctx->backend->eltwise->sum_to(ctx, src, 1.0, &kd, true);
}

/* The leaves kiln_backward's leaf_ready hook reports: no node, gradient wanted. */
static bool is_hooked_leaf(const kiln_tensor *t) { return t && !t->node && t->requires_grad; }

/* pending_uses of every hooked leaf = the nodes from `from` back that read it (a node reading
 * it twice counts twice: it is decremented per input slot too). */
static void count_leaf_uses(kiln_node *from)
{
    for (kiln_node *n = from; n; n = n->prev)
        for (int i = 0; i < n->n_in; i++)
            if (is_hooked_leaf(n->in[i])) n->in[i]->pending_uses = 0;
    for (kiln_node *n = from; n; n = n->prev)
        for (int i = 0; i < n->n_in; i++)
            if (is_hooked_leaf(n->in[i])) n->in[i]->pending_uses++;
}

kiln_status kiln_backward_with(kiln_ctx *ctx, kiln_tensor *out, const kiln_tensor *grad_out)
{
    if (!out) return kiln__err(KILN_STATUS_INVALID, "backward: NULL output");
    if (!out->requires_grad)
        return kiln__err(KILN_STATUS_INVALID, "backward: %s does not require grad (no input needs a gradient)",
                         kiln__tname(out));
    if (grad_out && !kiln_same_shape(out, grad_out)) {
        char a[128], b[128];
        return kiln__err(KILN_STATUS_INVALID, "backward: seed gradient shape %s does not match output %s",
                         kiln_shape_str(grad_out, b, sizeof b), kiln_shape_str(out, a, sizeof a));
    }
    kiln_tensor *g = kiln__grad(ctx, out);
    if (!g) return KILN_STATUS_NOMEM;
    kiln_tensor ones = *g; /* 1 seen with g's shape: every stride 0 */
    static const float one = 1.0f;
    ones.data = (void *)&one;
    memset(ones.stride, 0, sizeof ones.stride);
    kiln_status st0 = kiln__add_into(ctx, g, grad_out ? grad_out : &ones);
    if (st0 < 0) return st0;
    bool leaf_hook = ctx->bw_leaf_ready != NULL;
    if (leaf_hook) count_leaf_uses(out->node);
    for (kiln_node *n = out->node; n; n = n->prev) {
        bool has = false;
        for (int k = 0; k < n->n_out; k++) has |= n->out[k]->grad != NULL;
        if (has) {
            kiln_status st = n->backward(ctx, n);
            if (st < 0) return st;
            /* Non-leaf grads are consumed: drop them so a second backward starts clean, and
             * give their memory back for the gradients still to come. */
            for (int k = 0; k < n->n_out; k++) {
                if (n->out[k]->grad) kiln__step_release(ctx, n->out[k]->grad->data);
                n->out[k]->grad = NULL;
            }
        }
        if (leaf_hook) /* this node is done with its inputs, run or not */
            for (int i = 0; i < n->n_in; i++) {
                kiln_tensor *t = n->in[i];
                if (!is_hooked_leaf(t) || --t->pending_uses != 0) continue;
                kiln_status st = ctx->bw_leaf_ready(ctx->bw_user, t);
                if (st) return st;
            }
        if (ctx->bw_tick) {
            kiln_status st = ctx->bw_tick(ctx->bw_user);
            if (st) return st;
        }
    }
    return KILN_STATUS_OK;
}

void kiln_set_backward_hooks(kiln_ctx *ctx, const kiln_backward_hooks *h)
{
    if (!ctx) return;
    ctx->bw_leaf_ready = h ? h->leaf_ready : NULL;
    ctx->bw_tick = h ? h->tick : NULL;
    ctx->bw_user = h ? h->user : NULL;
}

kiln_status kiln_backward(kiln_ctx *ctx, kiln_tensor *loss)
{
    if (!loss) return kiln__err(KILN_STATUS_INVALID, "backward: NULL loss");
    if (kiln_numel(loss) != 1) {
        char b[128];
        return kiln__err(KILN_STATUS_INVALID, "backward: loss must have one element, got shape %s",
                         kiln_shape_str(loss, b, sizeof b));
    }
    return kiln_backward_with(ctx, loss, NULL);
}

kiln_tensor *kiln_detach(kiln_ctx *ctx, kiln_tensor *t)
{
    KILN_IN(t);
    return kiln__view(ctx, t, t->ndim, t->shape, t->stride, t->data);
}

void kiln_set_requires_grad(kiln_tensor *t, bool on)
{
    if (t && t->dtype == KILN_DTYPE_F32) t->requires_grad = on;
}

bool kiln_tensor_all_finite(const kiln_tensor *t)
{
    if (!t || t->dtype != KILN_DTYPE_F32 || !t->data) return true;
    int64_t n = kiln_numel(t), idx[KILN_MAX_DIMS] = {0};
    const float *base = t->data;
    for (int64_t k = 0; k < n; k++) {
        int64_t off = 0;
        for (int d = 0; d < t->ndim; d++) off += idx[d] * t->stride[d];
        if (!isfinite(base[off])) return false;
        for (int d = t->ndim - 1; d >= 0 && ++idx[d] == t->shape[d]; d--) idx[d] = 0; /* odometer */
    }
    return true;
}

const char *kiln_first_nonfinite_op(const kiln_tensor *t, int64_t *pos, int64_t *n_ops)
{
    int64_t n = 0;
    for (const kiln_node *p = t ? t->node : NULL; p; p = p->prev) n++;
    if (pos) *pos = 0;
    if (n_ops) *n_ops = n;
    /* the newest-first list, walked oldest first: the last bad one met going back */
    const char *op = NULL;
    int64_t i = n;
    for (const kiln_node *p = t ? t->node : NULL; p; p = p->prev, i--) {
        bool bad = false;
        for (int k = 0; k < p->n_out && !bad; k++) bad = !kiln_tensor_all_finite(p->out[k]);
        if (bad) {
            op = p->op;
            if (pos) *pos = i;
        }
    }
    return op;
}
