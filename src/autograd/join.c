/* Joins: concat copies n tensors into consecutive slices of one output along a dim;
 * split returns views (kiln_slice) of consecutive slices, so it copies nothing and its
 * pieces carry their own nodes. */
#include "autograd/tape.h"
#include "kernels/eltwise.h"
#include "kiln/ops.h"

#include <stdio.h>

#define K(ctx) ((ctx)->backend->eltwise)

typedef struct concat_saved {
    int dim;
} concat_saved;

/* v = the slice [off, off + len) of t along dim (t any strides). */
static void slice_of(kiln_tensor *v, const kiln_tensor *t, int dim, int64_t off, int64_t len)
{
    *v = *t;
    v->shape[dim] = len;
    v->data = (char *)t->data + off * t->stride[dim] * (int64_t)kiln_dtype_size(t->dtype);
}

static kiln_status concat_bwd(kiln_ctx *ctx, kiln_node *n)
{
    const kiln_tensor *gy = n->out[0]->grad;
    if (!gy) return KILN_STATUS_OK;
    int dim = ((const concat_saved *)n->saved)->dim;
    int64_t off = 0;
    for (int i = 0; i < n->n_in; i++) {
        int64_t len = n->in[i]->shape[dim];
        kiln_tensor *gx = kiln__grad(ctx, n->in[i]);
        if (gx) {
            kiln_tensor gs;
            slice_of(&gs, gy, dim, off, len);
            kiln_status st = K(ctx)->axpy(ctx, 1.0f, &gs, gx);
            if (st < 0) return st;
        }
        off += len;
    }
    return KILN_STATUS_OK;
}

/* One node holds at most KILN_NODE_MAX_IN inputs: larger lists are joined in groups and
 * the groups joined again. */
static kiln_tensor *concat_group(kiln_ctx *ctx, kiln_tensor **xs, int n, int d)
{
    if (n > KILN_NODE_MAX_IN) {
        kiln_tensor *parts[KILN_NODE_MAX_IN];
        int per = (n + KILN_NODE_MAX_IN - 1) / KILN_NODE_MAX_IN, np = 0;
        for (int i = 0; i < n; i += per) {
            parts[np] = concat_group(ctx, xs + i, n - i < per ? n - i : per, d);
            KILN_IN(parts[np]);
            np++;
        }
        return concat_group(ctx, parts, np, d);
    }
    int64_t shape[KILN_MAX_DIMS];
    for (int i = 0; i < xs[0]->ndim; i++) shape[i] = xs[0]->shape[i];
    shape[d] = 0;
    for (int i = 0; i < n; i++) shape[d] += xs[i]->shape[d];
    kiln_tensor *y = kiln_empty(ctx, KILN_DTYPE_F32, xs[0]->ndim, shape);
    KILN_IN(y);
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        kiln_tensor ys;
        slice_of(&ys, y, d, off, xs[i]->shape[d]);
        if (K(ctx)->copy(ctx, xs[i], &ys) < 0) return NULL;
        off += xs[i]->shape[d];
    }
    kiln_status st;
    kiln_node *node = kiln__record(ctx, "concat", concat_bwd, n, xs, 1, &y, sizeof(concat_saved), &st);
    if (st < 0) return NULL;
    if (node) ((concat_saved *)node->saved)->dim = d;
    return y;
}

kiln_tensor *kiln_concat(kiln_ctx *ctx, kiln_tensor **xs, int n, int dim)
{
    if (n < 1 || !xs) return kiln__errp(KILN_STATUS_INVALID, "concat: needs at least one tensor, got %d", n);
    for (int i = 0; i < n; i++) KILN_IN(xs[i]);
    char arg[32];
    for (int i = 0; i < n; i++) {
        snprintf(arg, sizeof arg, "tensor %d", i);
        if (kiln__check_f32("concat", xs[i], arg) < 0) return NULL;
    }
    if (xs[0]->ndim == 0) return kiln__errp(KILN_STATUS_INVALID, "concat: 0-d tensors cannot be concatenated");
    int d = kiln__dim("concat", dim, xs[0]->ndim);
    if (d < 0) return NULL;
    for (int i = 1; i < n; i++) {
        bool ok = xs[i]->ndim == xs[0]->ndim;
        for (int j = 0; ok && j < xs[0]->ndim; j++) ok = j == d || xs[i]->shape[j] == xs[0]->shape[j];
        if (!ok) {
            char a[128], b[128];
            return kiln__errp(KILN_STATUS_INVALID,
                              "concat: tensor %d has shape %s but tensor 0 has shape %s (sizes must match except in dim %d)",
                              i, kiln_shape_str(xs[i], a, sizeof a), kiln_shape_str(xs[0], b, sizeof b), d);
        }
    }
    /* channels-last inputs: the backward adds into gradients in logical order */
    kiln_tensor **plain = kiln_step_alloc(ctx, (size_t)n * sizeof *plain);
    KILN_IN(plain);
    for (int i = 0; i < n; i++) {
        plain[i] = kiln__plain(ctx, xs[i]);
        KILN_IN(plain[i]);
    }
    return concat_group(ctx, plain, n, d);
}

kiln_status kiln_split(kiln_ctx *ctx, kiln_tensor *x, int dim, int n, const int64_t *sizes, kiln_tensor **out)
{
    if (out)
        for (int k = 0; k < n; k++) out[k] = NULL;
    if (!x) return kiln__has_error() ? KILN_STATUS_INVALID : kiln__err(KILN_STATUS_INVALID, "split: x is NULL");
    if (n < 1 || !sizes || !out)
        return kiln__err(KILN_STATUS_INVALID, "split: needs n >= 1 sizes and an output array, got n = %d", n);
    if (kiln__check_f32("split", x, "x") < 0) return KILN_STATUS_INVALID;
    int d = kiln__dim("split", dim, x->ndim);
    if (d < 0) return KILN_STATUS_INVALID;
    if (x->ndim == 0) return kiln__err(KILN_STATUS_INVALID, "split: cannot split a 0-d tensor");
    int64_t total = 0;
    for (int k = 0; k < n; k++) {
        if (sizes[k] < 0)
            return kiln__err(KILN_STATUS_INVALID, "split: size %d is negative (%lld)", k, (long long)sizes[k]);
        total += sizes[k];
    }
    if (total != x->shape[d]) {
        char b[128];
        return kiln__err(KILN_STATUS_INVALID, "split: sizes sum to %lld but dim %d of %s %s has size %lld",
                         (long long)total, dim, kiln__tname(x), kiln_shape_str(x, b, sizeof b),
                         (long long)x->shape[d]);
    }
    /* kiln_slice makes a grad-requiring input contiguous; do it once, not per piece */
    if (x->requires_grad) x = kiln_contiguous(ctx, x);
    if (!x) return KILN_STATUS_NOMEM;
    int64_t off = 0;
    for (int k = 0; k < n; k++) {
        out[k] = kiln_slice(ctx, x, d, off, off + sizes[k], 1);
        if (!out[k]) {
            for (int j = 0; j < k; j++) out[j] = NULL;
            return KILN_STATUS_NOMEM;
        }
        off += sizes[k];
    }
    return KILN_STATUS_OK;
}
