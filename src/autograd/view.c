/* View ops: reshape, flatten, permute, transpose, slice, expand, squeeze, unsqueeze and
 * contiguous. They share the input's data where the strides allow, and each records a
 * node whose backward maps the gradient back onto the input's layout. Copies and gradient
 * sums go through the kernel table (kiln__copy_into, kiln__add_into). */
#include "autograd/tape.h"
#include "kiln/ops.h"

#include <string.h>

/* Adds gy (the output's gradient) into gx seen through the output's view geometry:
 * view_stride/offset describe where each output element sits in the input. */
typedef struct view_saved {
    int64_t stride[KILN_MAX_DIMS]; /* output element strides within the input's contiguous layout */
    int64_t offset;                /* element offset of output [0..0] in the input */
} view_saved;

static kiln_status flat_bwd(kiln_ctx *ctx, kiln_node *n)
{
    kiln_tensor *gx = kiln__grad(ctx, n->in[0]);
    const kiln_tensor *gy = n->out[0]->grad;
    if (!gx || !gy) return KILN_STATUS_OK;
    if (!kiln_is_contiguous(gx)) return kiln__add_into(ctx, gx, gy); /* x was channels-last: its gradient is too */
    kiln_tensor d, s; /* same elements in the same order, whatever the two shapes */
    return kiln__add_into(ctx, kiln__flat_view(&d, gx), kiln__flat_view(&s, gy));
}

static kiln_status strided_bwd(kiln_ctx *ctx, kiln_node *n)
{
    kiln_tensor *gx = kiln__grad(ctx, n->in[0]);
    kiln_tensor *gy = n->out[0]->grad;
    if (!gx || !gy) return KILN_STATUS_OK;
    const view_saved *v = n->saved;
    kiln_tensor dst = *gy;
    memcpy(dst.stride, v->stride, sizeof dst.stride);
    dst.data = (float *)gx->data + v->offset;
    return kiln__add_into(ctx, &dst, gy);
}

static kiln_status expand_bwd(kiln_ctx *ctx, kiln_node *n)
{
    kiln_tensor *gx = kiln__grad(ctx, n->in[0]);
    if (!gx || !n->out[0]->grad) return KILN_STATUS_OK;
    return kiln__accumulate_reduced(ctx, gx, n->out[0]->grad);
}

kiln_tensor *kiln_contiguous(kiln_ctx *ctx, kiln_tensor *x)
{
    KILN_IN(x);
    if (kiln_is_contiguous(x)) return x;
    kiln_tensor *y = kiln_empty_like(ctx, x);
    KILN_IN(y);
    if (kiln__copy_into(ctx, y, x) < 0) return NULL;
    y->name = x->name;
    kiln_status st;
    kiln__record(ctx, "contiguous", flat_bwd, 1, &x, 1, &y, 0, &st);
    return st < 0 ? NULL : y;
}

kiln_tensor *kiln_reshape(kiln_ctx *ctx, kiln_tensor *x, int ndim, const int64_t *shape)
{
    KILN_IN(x);
    if (ndim < 0 || ndim > KILN_MAX_DIMS)
        return kiln__errp(KILN_STATUS_INVALID, "reshape: ndim %d outside 0..%d", ndim, KILN_MAX_DIMS);
    int64_t s[KILN_MAX_DIMS], known = 1;
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        s[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0) return kiln__errp(KILN_STATUS_INVALID, "reshape: only one dim can be -1");
            infer = i;
        } else if (shape[i] < 0) {
            return kiln__errp(KILN_STATUS_INVALID, "reshape: invalid size %lld", (long long)shape[i]);
        } else {
            known *= shape[i];
        }
    }
    int64_t n = kiln_numel(x);
    if (infer >= 0) {
        if (known == 0 || n % known)
            goto mismatch;
        s[infer] = n / known;
    } else if (known != n) {
        goto mismatch;
    }
    x = kiln_contiguous(ctx, x);
    KILN_IN(x);
    kiln_tensor tmp;
    kiln_tensor_wrap(&tmp, x->dtype, ndim, s, x->data);
    kiln_tensor *y = kiln__view(ctx, x, ndim, tmp.shape, tmp.stride, x->data);
    KILN_IN(y);
    kiln_status st;
    kiln__record(ctx, "reshape", flat_bwd, 1, &x, 1, &y, 0, &st);
    return st < 0 ? NULL : y;
mismatch:;
    char b[128];
    return kiln__errp(KILN_STATUS_INVALID, "reshape: cannot view %s %s (%lld elements) with %d dims of product %lld",
                      kiln__tname(x), kiln_shape_str(x, b, sizeof b), (long long)n, ndim, (long long)known);
}

kiln_tensor *kiln_flatten(kiln_ctx *ctx, kiln_tensor *x, int start_dim, int end_dim)
{
    KILN_IN(x);
    if (x->ndim == 0) return kiln_reshape(ctx, x, 1, (int64_t[]){1});
    int a = kiln__dim("flatten", start_dim, x->ndim), b = kiln__dim("flatten", end_dim, x->ndim);
    if (a < 0 || b < 0) return NULL;
    if (a > b) return kiln__errp(KILN_STATUS_INVALID, "flatten: start_dim %d after end_dim %d", start_dim, end_dim);
    int64_t s[KILN_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < a; i++) s[nd++] = x->shape[i];
    int64_t m = 1;
    for (int i = a; i <= b; i++) m *= x->shape[i];
    s[nd++] = m;
    for (int i = b + 1; i < x->ndim; i++) s[nd++] = x->shape[i];
    return kiln_reshape(ctx, x, nd, s);
}

/* A view of x with the given geometry (strides relative to x's element layout), recorded
 * with strided_bwd. x must be contiguous for the backward mapping, so it is made so. */
static kiln_tensor *strided_view(kiln_ctx *ctx, const char *op, kiln_tensor *x, int ndim, const int64_t *shape,
                                 const int64_t *stride, int64_t offset)
{
    kiln_tensor *y = kiln__view(ctx, x, ndim, shape, stride,
                                (char *)x->data + offset * (int64_t)kiln_dtype_size(x->dtype));
    KILN_IN(y);
    kiln_status st;
    kiln_node *n = kiln__record(ctx, op, strided_bwd, 1, &x, 1, &y, sizeof(view_saved), &st);
    if (st < 0) return NULL;
    if (n) {
        view_saved *v = n->saved;
        memcpy(v->stride, stride, (size_t)ndim * sizeof *stride);
        v->offset = offset;
    }
    return y;
}

kiln_tensor *kiln_to_channels_last(kiln_ctx *ctx, kiln_tensor *x)
{
    KILN_IN(x);
    if (kiln__check_f32("to_channels_last", x, "x") < 0) return NULL;
    if (x->ndim != 4) {
        char b[96];
        return kiln__errp(KILN_STATUS_INVALID, "to_channels_last: x has shape %s, expected 4 dims (N, C, H, W)",
                          kiln_shape_str(x, b, sizeof b));
    }
    if (kiln_is_channels_last(x)) return x;
    /* nhwc (N, H, W, C), contiguous; then the (N, C, H, W) view of it. */
    kiln_tensor *nhwc = kiln_contiguous(ctx, kiln_permute(ctx, x, (const int[]){0, 2, 3, 1}));
    KILN_IN(nhwc);
    const int64_t c = x->shape[1], h = x->shape[2], w = x->shape[3];
    const int64_t st[4] = {h * w * c, 1, w * c, c};
    return strided_view(ctx, "to_channels_last", nhwc, 4, x->shape, st, 0);
}

kiln_tensor *kiln_permute(kiln_ctx *ctx, kiln_tensor *x, const int *perm)
{
    KILN_IN(x);
    bool seen[KILN_MAX_DIMS] = {false};
    int64_t s[KILN_MAX_DIMS], st[KILN_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        int p = perm[i];
        if (p < 0) p += x->ndim;
        if (p < 0 || p >= x->ndim || seen[p])
            return kiln__errp(KILN_STATUS_INVALID, "permute: %d is not a valid permutation entry for %d dims",
                              perm[i], x->ndim);
        seen[p] = true;
    }
    if (x->requires_grad) x = kiln_contiguous(ctx, x); /* backward maps onto a contiguous grad */
    KILN_IN(x);
    for (int i = 0; i < x->ndim; i++) {
        int p = perm[i] < 0 ? perm[i] + x->ndim : perm[i];
        s[i] = x->shape[p];
        st[i] = x->stride[p];
    }
    return strided_view(ctx, "permute", x, x->ndim, s, st, 0);
}

kiln_tensor *kiln_transpose(kiln_ctx *ctx, kiln_tensor *x, int d0, int d1)
{
    KILN_IN(x);
    int a = kiln__dim("transpose", d0, x->ndim), b = kiln__dim("transpose", d1, x->ndim);
    if (a < 0 || b < 0) return NULL;
    int perm[KILN_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) perm[i] = i;
    perm[a] = b;
    perm[b] = a;
    return kiln_permute(ctx, x, perm);
}

kiln_tensor *kiln_slice(kiln_ctx *ctx, kiln_tensor *x, int dim, int64_t start, int64_t end, int64_t step)
{
    KILN_IN(x);
    int d = kiln__dim("slice", dim, x->ndim);
    if (d < 0) return NULL;
    if (step <= 0) return kiln__errp(KILN_STATUS_INVALID, "slice: step %lld must be positive", (long long)step);
    int64_t n = x->shape[d];
    if (start < 0) start += n;
    if (end < 0) end += n;
    if (start < 0) start = 0;
    if (end > n) end = n;
    if (start > n) start = n;
    if (end < start) end = start;
    if (x->requires_grad) x = kiln_contiguous(ctx, x);
    KILN_IN(x);
    int64_t s[KILN_MAX_DIMS], st[KILN_MAX_DIMS];
    memcpy(s, x->shape, sizeof s);
    memcpy(st, x->stride, sizeof st);
    s[d] = (end - start + step - 1) / step;
    st[d] = x->stride[d] * step;
    return strided_view(ctx, "slice", x, x->ndim, s, st, start * x->stride[d]);
}

kiln_tensor *kiln_expand(kiln_ctx *ctx, kiln_tensor *x, int ndim, const int64_t *shape)
{
    KILN_IN(x);
    if (ndim < x->ndim || ndim > KILN_MAX_DIMS)
        return kiln__errp(KILN_STATUS_INVALID, "expand: cannot expand %d dims to %d", x->ndim, ndim);
    int64_t s[KILN_MAX_DIMS], st[KILN_MAX_DIMS];
    int off = ndim - x->ndim;
    for (int i = 0; i < ndim; i++) {
        int j = i - off;
        int64_t xs = j >= 0 ? x->shape[j] : 1;
        int64_t want = shape[i] == -1 ? xs : shape[i];
        if (xs != want && xs != 1) {
            char b[128];
            return kiln__errp(KILN_STATUS_INVALID, "expand: %s %s cannot expand dim %d from %lld to %lld",
                              kiln__tname(x), kiln_shape_str(x, b, sizeof b), i, (long long)xs, (long long)want);
        }
        s[i] = want;
        st[i] = (j >= 0 && xs == want) ? x->stride[j] : 0;
    }
    kiln_tensor *y = kiln__view(ctx, x, ndim, s, st, x->data);
    KILN_IN(y);
    kiln_status rs;
    kiln__record(ctx, "expand", expand_bwd, 1, &x, 1, &y, 0, &rs);
    return rs < 0 ? NULL : y;
}

kiln_tensor *kiln_squeeze(kiln_ctx *ctx, kiln_tensor *x, int dim)
{
    KILN_IN(x);
    int d = kiln__dim("squeeze", dim, x->ndim);
    if (d < 0) return NULL;
    if (x->shape[d] != 1) return x;
    int64_t s[KILN_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < x->ndim; i++)
        if (i != d) s[nd++] = x->shape[i];
    return kiln_reshape(ctx, x, nd, s);
}

kiln_tensor *kiln_unsqueeze(kiln_ctx *ctx, kiln_tensor *x, int dim)
{
    KILN_IN(x);
    if (x->ndim == KILN_MAX_DIMS) return kiln__errp(KILN_STATUS_INVALID, "unsqueeze: tensor already has %d dims", KILN_MAX_DIMS);
    int d = dim < 0 ? dim + x->ndim + 1 : dim;
    if (d < 0 || d > x->ndim)
        return kiln__errp(KILN_STATUS_INVALID, "unsqueeze: dim %d out of range for a %d-d tensor", dim, x->ndim);
    int64_t s[KILN_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < x->ndim; i++) {
        if (i == d) s[nd++] = 1;
        s[nd++] = x->shape[i];
    }
    if (d == x->ndim) s[nd++] = 1;
    return kiln_reshape(ctx, x, nd, s);
}
