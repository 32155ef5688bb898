/* Reductions: sum and mean over all or some dims (negative dims, keepdim as PyTorch) and
 * max over one dim with its indices. The kernels work on "keepdim" shapes (size 1 at the
 * reduced dims), which have the same contiguous layout as the squeezed outputs, so an
 * output is always allocated squeezed or not as asked and viewed keepdim for the kernel. */
#include "autograd/tape.h"
#include "kernels/eltwise.h"
#include "kiln/ops.h"

#define K(ctx) ((ctx)->backend->eltwise)

/* v = the contiguous tensor t seen with shape (nd, shape) (same element count). */
static void reshaped(kiln_tensor *v, const kiln_tensor *t, int nd, const int64_t *shape)
{
    kiln_tensor_wrap(v, t->dtype, nd, shape, t->data);
}

/* ---- sum and mean --------------------------------------------------------------------- */

typedef struct sum_saved {
    double scale;  /* 1, or 1/count for mean */
    uint32_t mask; /* bit d: dim d of x was reduced */
} sum_saved;

static kiln_status sum_bwd(kiln_ctx *ctx, kiln_node *n)
{
    kiln_tensor *x = n->in[0], *gx = kiln__grad(ctx, x);
    const kiln_tensor *gy = n->out[0]->grad;
    if (!gx || !gy) return KILN_STATUS_OK;
    const sum_saved *s = n->saved;
    /* gy broadcast back over the reduced dims: stride 0 there */
    int64_t ks[KILN_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) ks[i] = (s->mask >> i) & 1 ? 1 : x->shape[i];
    kiln_tensor gv;
    reshaped(&gv, gy, x->ndim, ks);
    for (int i = 0; i < x->ndim; i++) {
        if ((s->mask >> i) & 1) gv.stride[i] = 0;
        gv.shape[i] = x->shape[i];
    }
    return K(ctx)->axpy(ctx, (float)s->scale, &gv, gx);
}

/* Turns a dim list into a bit mask over x's dims; n_dims == 0 means every dim (as
 * torch.sum(x, dim=[])). -1 with a message on a bad or repeated dim. */
static int64_t dim_mask(const char *op, const kiln_tensor *x, int n_dims, const int *dims, uint32_t *mask)
{
    *mask = 0;
    if (n_dims < 0 || n_dims > KILN_MAX_DIMS) {
        kiln__err(KILN_STATUS_INVALID, "%s: %d dims given, expected 0..%d", op, n_dims, KILN_MAX_DIMS);
        return -1;
    }
    if (n_dims > 0 && !dims) {
        kiln__err(KILN_STATUS_INVALID, "%s: dims is NULL", op);
        return -1;
    }
    if (n_dims == 0) {
        *mask = x->ndim ? (1u << x->ndim) - 1 : 0;
    }
    for (int i = 0; i < n_dims; i++) {
        int d = kiln__dim(op, dims[i], x->ndim);
        if (d < 0) return -1;
        if (x->ndim == 0) continue; /* dim 0 / -1 of a scalar: nothing to reduce */
        if ((*mask >> d) & 1) {
            kiln__err(KILN_STATUS_INVALID, "%s: dim %d appears more than once in the dim list", op, d);
            return -1;
        }
        *mask |= 1u << d;
    }
    int64_t count = 1;
    for (int i = 0; i < x->ndim; i++)
        if ((*mask >> i) & 1) count *= x->shape[i];
    return count;
}

static kiln_tensor *reduce_sum(kiln_ctx *ctx, const char *op, kiln_tensor *x, int n_dims, const int *dims,
                               bool keepdim, bool mean)
{
    x = kiln__plain(ctx, x); /* the backward writes gx in x's logical order */
    KILN_IN(x);
    if (kiln__check_f32(op, x, "x") < 0) return NULL;
    uint32_t mask;
    int64_t count = dim_mask(op, x, n_dims, dims, &mask);
    if (count < 0) return NULL;
    int64_t ks[KILN_MAX_DIMS], os[KILN_MAX_DIMS];
    int ond = 0;
    for (int i = 0; i < x->ndim; i++) {
        bool red = (mask >> i) & 1;
        ks[i] = red ? 1 : x->shape[i];
        if (!red || keepdim) os[ond++] = ks[i];
    }
    kiln_tensor *y = kiln_empty(ctx, KILN_DTYPE_F32, ond, os);
    KILN_IN(y);
    kiln_tensor yv;
    reshaped(&yv, y, x->ndim, ks);
    /* an empty mean is 0 * inf = NaN, as in torch */
    double scale = mean ? 1.0 / (double)count : 1.0;
    if (K(ctx)->sum_to(ctx, x, scale, &yv, false) < 0) return NULL;
    kiln_status st;
    kiln_node *n = kiln__record(ctx, op, sum_bwd, 1, &x, 1, &y, sizeof(sum_saved), &st);
    if (st < 0) return NULL;
    if (n) {
        sum_saved *s = n->saved;
        s->scale = scale;
        s->mask = mask;
    }
    return y;
}

kiln_tensor *kiln_sum(kiln_ctx *ctx, kiln_tensor *x) { return reduce_sum(ctx, "sum", x, 0, NULL, false, false); }
kiln_tensor *kiln_mean(kiln_ctx *ctx, kiln_tensor *x) { return reduce_sum(ctx, "mean", x, 0, NULL, false, true); }

kiln_tensor *kiln_sum_dims(kiln_ctx *ctx, kiln_tensor *x, int n_dims, const int *dims, bool keepdim)
{
    return reduce_sum(ctx, "sum", x, n_dims, dims, keepdim, false);
}

kiln_tensor *kiln_mean_dims(kiln_ctx *ctx, kiln_tensor *x, int n_dims, const int *dims, bool keepdim)
{
    return reduce_sum(ctx, "mean", x, n_dims, dims, keepdim, true);
}

/* ---- max over one dim ----------------------------------------------------------------- */

typedef struct max_saved {
    kiln_tensor *idx; /* i64, y's shape */
    int dim;          /* in x's dims (x seen as (1) when 0-d) */
} max_saved;

static kiln_status max_bwd(kiln_ctx *ctx, kiln_node *n)
{
    kiln_tensor *x = n->in[0], *gx = kiln__grad(ctx, x);
    const kiln_tensor *gy = n->out[0]->grad;
    if (!gx || !gy) return KILN_STATUS_OK;
    const max_saved *s = n->saved;
    int64_t ks[KILN_MAX_DIMS], one = 1;
    int nd = x->ndim ? x->ndim : 1;
    const int64_t *xs = x->ndim ? x->shape : &one;
    for (int i = 0; i < nd; i++) ks[i] = i == s->dim ? 1 : xs[i];
    kiln_tensor gyv, iv, gxv;
    reshaped(&gyv, gy, nd, ks);
    reshaped(&iv, s->idx, nd, ks);
    reshaped(&gxv, gx, nd, xs);
    return K(ctx)->max_dim_bwd(ctx, &gyv, &iv, s->dim, &gxv);
}

kiln_tensor *kiln_max_dim(kiln_ctx *ctx, kiln_tensor *x, int dim, bool keepdim, kiln_tensor **indices)
{
    if (indices) *indices = NULL;
    x = kiln__plain(ctx, x); /* the backward writes gx in x's logical order */
    KILN_IN(x);
    if (kiln__check_f32("max_dim", x, "x") < 0) return NULL;
    int d = kiln__dim("max_dim", dim, x->ndim);
    if (d < 0) return NULL;
    /* a 0-d x is seen as shape (1), as torch.max(scalar, 0) */
    kiln_tensor xv = *x;
    if (x->ndim == 0) {
        xv.ndim = 1;
        xv.shape[0] = 1;
        xv.stride[0] = 1;
    }
    if (xv.shape[d] == 0) {
        char b[128];
        return kiln__errp(KILN_STATUS_INVALID, "max_dim: dim %d of %s %s is empty", dim, kiln__tname(x),
                          kiln_shape_str(x, b, sizeof b));
    }
    int64_t ks[KILN_MAX_DIMS], os[KILN_MAX_DIMS];
    int ond = 0;
    for (int i = 0; i < xv.ndim; i++) {
        ks[i] = i == d ? 1 : xv.shape[i];
        if (i != d || keepdim) os[ond++] = ks[i];
    }
    if (x->ndim == 0) ond = 0;
    kiln_tensor *y = kiln_empty(ctx, KILN_DTYPE_F32, ond, os);
    KILN_IN(y);
    kiln_tensor *idx = kiln_empty(ctx, KILN_DTYPE_I64, ond, os);
    KILN_IN(idx);
    kiln_tensor yv, iv;
    reshaped(&yv, y, xv.ndim, ks);
    reshaped(&iv, idx, xv.ndim, ks);
    if (K(ctx)->max_dim(ctx, &xv, d, &yv, &iv) < 0) return NULL;
    kiln_status st;
    kiln_node *n = kiln__record(ctx, "max_dim", max_bwd, 1, &x, 1, &y, sizeof(max_saved), &st);
    if (st < 0) return NULL;
    if (n) {
        max_saved *s = n->saved;
        s->idx = idx;
        s->dim = d;
    }
    if (indices) *indices = idx;
    return y;
}
