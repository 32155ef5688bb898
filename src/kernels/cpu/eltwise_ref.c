/* Reference kernels of the eltwise family: one element at a time, single-threaded, every
 * element addressed from its flat index through shape and strides, libm for the maths.
 * Slow and obviously right; tests compare kiln__cpu_eltwise against this table. */
#include "kernels/eltwise.h"

#include <math.h>
#include <string.h>

/* Element offset of flat (row-major logical) index i in t. */
static int64_t at(const kiln_tensor *t, int64_t i)
{
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        off += (i % t->shape[d]) * t->stride[d];
        i /= t->shape[d];
    }
    return off;
}

static float ref_pow(float x, float p)
{
    /* PyTorch's special cases of pow(tensor, scalar) */
    if (p == 2.0f) return x * x;
    if (p == 3.0f) return x * x * x;
    if (p == 0.5f) return sqrtf(x);
    if (p == -0.5f) return 1.0f / sqrtf(x);
    if (p == -1.0f) return 1.0f / x;
    if (p == -2.0f) return 1.0f / (x * x);
    if (p == 1.0f) return x;
    return powf(x, p);
}

static float f(kiln_unary_op op, float a, float x)
{
    switch (op) {
    case KILN_UNARY_ADD_SCALAR: return x + a;
    case KILN_UNARY_MUL_SCALAR: return x * a;
    case KILN_UNARY_POW_SCALAR: return ref_pow(x, a);
    case KILN_UNARY_NEG: return -x;
    case KILN_UNARY_RELU: return isnan(x) ? x : (x > 0.0f ? x : 0.0f);
    case KILN_UNARY_LEAKY_RELU: return x > 0.0f ? x : x * a;
    case KILN_UNARY_SIGMOID: return 1.0f / (1.0f + expf(-x));
    case KILN_UNARY_TANH: return tanhf(x);
    case KILN_UNARY_SOFTPLUS: return x > 20.0f ? x : log1pf(expf(x));
    case KILN_UNARY_EXP: return expf(x);
    case KILN_UNARY_LOG: return logf(x);
    case KILN_UNARY_SQRT: return sqrtf(x);
    default: KILN_ASSERT(!"unary op"); return 0;
    }
}

/* dy/dx times g, given x and y = f(x) */
static float df(kiln_unary_op op, float a, float x, float y, float g)
{
    switch (op) {
    case KILN_UNARY_ADD_SCALAR: return g;
    case KILN_UNARY_MUL_SCALAR: return g * a;
    case KILN_UNARY_POW_SCALAR: return a == 0.0f ? 0.0f : g * (a * ref_pow(x, a - 1.0f));
    case KILN_UNARY_NEG: return -g;
    case KILN_UNARY_RELU: return y > 0.0f ? g : 0.0f;
    case KILN_UNARY_LEAKY_RELU: return x > 0.0f ? g : g * a;
    case KILN_UNARY_SIGMOID: return g * (1.0f - y) * y;
    case KILN_UNARY_TANH: return g * (1.0f - y * y);
    case KILN_UNARY_SOFTPLUS: {
        float z = expf(x);
        return x > 20.0f ? g : g * z / (z + 1.0f);
    }
    case KILN_UNARY_EXP: return g * y;
    case KILN_UNARY_LOG: return g / x;
    case KILN_UNARY_SQRT: return g / (2.0f * y);
    default: KILN_ASSERT(!"unary op"); return 0;
    }
}

static kiln_status ref_unary_fwd(kiln_ctx *ctx, kiln_unary_op op, float alpha, const kiln_tensor *x, kiln_tensor *y)
{
    (void)ctx;
    const float *xp = x->data;
    float *yp = y->data;
    for (int64_t i = 0, n = kiln_numel(x); i < n; i++) yp[at(y, i)] = f(op, alpha, xp[at(x, i)]);
    return KILN_STATUS_OK;
}

static kiln_status ref_unary_bwd(kiln_ctx *ctx, kiln_unary_op op, float alpha, const kiln_tensor *x,
                                 const kiln_tensor *y, const kiln_tensor *gy, kiln_tensor *gx)
{
    (void)ctx;
    const float *xp = x ? x->data : NULL, *yp = y->data, *gp = gy->data;
    float *gxp = gx->data;
    for (int64_t i = 0, n = kiln_numel(y); i < n; i++) {
        float xv = xp ? xp[at(x, i)] : NAN;
        gxp[at(gx, i)] += df(op, alpha, xv, yp[at(y, i)], gp[at(gy, i)]);
    }
    return KILN_STATUS_OK;
}

static kiln_status ref_binary(kiln_ctx *ctx, kiln_binary_op op, const kiln_tensor *a, const kiln_tensor *b,
                              kiln_tensor *y, bool accumulate)
{
    (void)ctx;
    const float *ap = a->data, *bp = b->data;
    float *yp = y->data;
    for (int64_t i = 0, n = kiln_numel(y); i < n; i++) {
        float A = ap[at(a, i)], B = bp[at(b, i)], v;
        switch (op) {
        case KILN_BINARY_ADD: v = A + B; break;
        case KILN_BINARY_SUB: v = A - B; break;
        case KILN_BINARY_MUL: v = A * B; break;
        case KILN_BINARY_DIV: v = A / B; break;
        default: KILN_ASSERT(!"binary op"); return KILN_STATUS_INVALID;
        }
        if (accumulate) yp[at(y, i)] += v; else yp[at(y, i)] = v;
    }
    return KILN_STATUS_OK;
}

static kiln_status ref_where(kiln_ctx *ctx, const kiln_tensor *cond, const kiln_tensor *a, const kiln_tensor *b,
                             kiln_tensor *y, bool accumulate)
{
    (void)ctx;
    const float *ap = a->data, *bp = b->data;
    float *yp = y->data;
    for (int64_t i = 0, n = kiln_numel(y); i < n; i++) {
        bool c = cond->dtype == KILN_DTYPE_U8 ? ((const uint8_t *)cond->data)[at(cond, i)] != 0
                                              : ((const float *)cond->data)[at(cond, i)] != 0.0f;
        float v = c ? ap[at(a, i)] : bp[at(b, i)];
        if (accumulate) yp[at(y, i)] += v; else yp[at(y, i)] = v;
    }
    return KILN_STATUS_OK;
}

static kiln_status ref_copy(kiln_ctx *ctx, const kiln_tensor *x, kiln_tensor *y)
{
    (void)ctx;
    size_t es = kiln_dtype_size(x->dtype);
    for (int64_t i = 0, n = kiln_numel(y); i < n; i++)
        memcpy((char *)y->data + at(y, i) * (int64_t)es, (const char *)x->data + at(x, i) * (int64_t)es, es);
    return KILN_STATUS_OK;
}

static kiln_status ref_axpy(kiln_ctx *ctx, float alpha, const kiln_tensor *x, kiln_tensor *y)
{
    (void)ctx;
    const float *xp = x->data;
    float *yp = y->data;
    for (int64_t i = 0, n = kiln_numel(y); i < n; i++) yp[at(y, i)] += alpha * xp[at(x, i)];
    return KILN_STATUS_OK;
}

static kiln_status ref_sum_to(kiln_ctx *ctx, const kiln_tensor *x, double scale, kiln_tensor *y, bool accumulate)
{
    (void)ctx;
    int64_t ny = kiln_numel(y);
    double *acc = kiln__calloc((size_t)(ny ? ny : 1) * sizeof *acc);
    if (!acc) return kiln__err(KILN_STATUS_NOMEM, "sum: out of memory");
    const float *xp = x->data;
    for (int64_t i = 0, n = kiln_numel(x); i < n; i++) {
        /* y's flat index: x's coordinates with reduced dims dropped to 0 */
        int64_t rem = i, j = 0, mul = 1;
        for (int d = x->ndim - 1; d >= 0; d--) {
            int64_t c = rem % x->shape[d];
            rem /= x->shape[d];
            if (y->shape[d] != 1) j += c * mul;
            mul *= y->shape[d];
        }
        acc[j] += xp[at(x, i)];
    }
    float *yp = y->data;
    for (int64_t j = 0; j < ny; j++) {
        float v = (float)(acc[j] * scale);
        if (accumulate) yp[j] += v; else yp[j] = v;
    }
    kiln__free(acc, (size_t)(ny ? ny : 1) * sizeof *acc);
    return KILN_STATUS_OK;
}

static kiln_status ref_max_dim(kiln_ctx *ctx, const kiln_tensor *x, int dim, kiln_tensor *y, kiln_tensor *idx)
{
    (void)ctx;
    const float *xp = x->data;
    float *yp = y->data;
    int64_t *ip = idx->data;
    for (int64_t o = 0, n = kiln_numel(y); o < n; o++) {
        /* coordinates of output o, then walk along dim */
        int64_t rem = o, off = 0;
        for (int d = y->ndim - 1; d >= 0; d--) {
            off += (rem % y->shape[d]) * x->stride[d];
            rem /= y->shape[d];
        }
        float best = xp[off];
        int64_t bi = 0;
        for (int64_t q = 1; q < x->shape[dim]; q++) {
            float v = xp[off + q * x->stride[dim]];
            if (isnan(best)) break;
            if (isnan(v) || v > best) {
                best = v;
                bi = q;
            }
        }
        yp[o] = best;
        ip[o] = bi;
    }
    return KILN_STATUS_OK;
}

static kiln_status ref_max_dim_bwd(kiln_ctx *ctx, const kiln_tensor *gy, const kiln_tensor *idx, int dim,
                                   kiln_tensor *gx)
{
    (void)ctx;
    const float *gp = gy->data;
    const int64_t *ip = idx->data;
    float *gxp = gx->data;
    for (int64_t o = 0, n = kiln_numel(gy); o < n; o++) {
        int64_t rem = o, off = 0;
        for (int d = gy->ndim - 1; d >= 0; d--) {
            off += (rem % gy->shape[d]) * gx->stride[d];
            rem /= gy->shape[d];
        }
        gxp[off + ip[o] * gx->stride[dim]] += gp[o];
    }
    return KILN_STATUS_OK;
}

const kiln_eltwise_kernels kiln__ref_eltwise = {
    .unary_fwd = ref_unary_fwd,
    .unary_bwd = ref_unary_bwd,
    .binary = ref_binary,
    .where = ref_where,
    .copy = ref_copy,
    .axpy = ref_axpy,
    .sum_to = ref_sum_to,
    .max_dim = ref_max_dim,
    .max_dim_bwd = ref_max_dim_bwd,
};
