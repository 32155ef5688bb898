/* Tensors: dtype sizes, shapes and strides, creation in the step arena, and the shape
 * helpers (broadcasting, dim normalisation, checks) that ops use to validate input. */
#include "core/internal.h"

#include <math.h>
#include <string.h>

static const size_t g_dtype_size[KILN_DTYPE_COUNT] = {4, 2, 2, 8, 4, 1};
static const char *const g_dtype_name[KILN_DTYPE_COUNT] = {"f32", "f16", "bf16", "i64", "i32", "u8"};

size_t kiln_dtype_size(kiln_dtype d) { return (unsigned)d < KILN_DTYPE_COUNT ? g_dtype_size[d] : 0; }
const char *kiln_dtype_name(kiln_dtype d) { return (unsigned)d < KILN_DTYPE_COUNT ? g_dtype_name[d] : "?"; }

int64_t kiln_numel(const kiln_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

bool kiln_is_contiguous(const kiln_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

bool kiln_is_channels_last(const kiln_tensor *t)
{
    if (!t || t->ndim != 4) return false;
    const int64_t c = t->shape[1], h = t->shape[2], w = t->shape[3];
    return t->stride[1] == 1 && t->stride[3] == c && t->stride[2] == w * c && t->stride[0] == h * w * c;
}

bool kiln_same_shape(const kiln_tensor *a, const kiln_tensor *b)
{
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

char *kiln_shape_str(const kiln_tensor *t, char *buf, size_t n)
{
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, t->ndim == 1 ? ",)" : ")");
    return buf;
}

void kiln__set_contiguous(kiln_tensor *t, int ndim, const int64_t *shape)
{
    t->ndim = ndim;
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        t->shape[i] = shape[i];
        t->stride[i] = s;
        s *= shape[i];
    }
}

kiln_tensor *kiln_tensor_wrap(kiln_tensor *t, kiln_dtype dtype, int ndim, const int64_t *shape, void *data)
{
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    kiln__set_contiguous(t, ndim, shape);
    t->data = data;
    return t;
}

float kiln_item(const kiln_tensor *t)
{
    if (!t || t->dtype != KILN_DTYPE_F32 || kiln_numel(t) != 1) return NAN;
    return *(const float *)t->data;
}

double kiln_get_flat(const kiln_tensor *t, int64_t i)
{
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        int64_t n = t->shape[d];
        off += (i % n) * t->stride[d];
        i /= n;
    }
    switch (t->dtype) {
    case KILN_DTYPE_F32: return ((const float *)t->data)[off];
    case KILN_DTYPE_I64: return (double)((const int64_t *)t->data)[off];
    case KILN_DTYPE_I32: return ((const int32_t *)t->data)[off];
    case KILN_DTYPE_U8: return ((const uint8_t *)t->data)[off];
    default: return NAN;
    }
}

static int check_shape(const char *op, int ndim, const int64_t *shape, int64_t *numel)
{
    if (ndim < 0 || ndim > KILN_MAX_DIMS) {
        kiln__err(KILN_STATUS_INVALID, "%s: ndim %d outside 0..%d", op, ndim, KILN_MAX_DIMS);
        return -1;
    }
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            kiln__err(KILN_STATUS_INVALID, "%s: dim %d has negative size %lld", op, i, (long long)shape[i]);
            return -1;
        }
        if (shape[i] && n > INT64_MAX / 16 / shape[i]) {
            kiln__err(KILN_STATUS_INVALID, "%s: shape too large", op);
            return -1;
        }
        n *= shape[i];
    }
    *numel = n;
    return 0;
}

kiln_tensor *kiln_empty(kiln_ctx *ctx, kiln_dtype dtype, int ndim, const int64_t *shape)
{
    int64_t n;
    if ((unsigned)dtype >= KILN_DTYPE_COUNT) return kiln__errp(KILN_STATUS_INVALID, "empty: bad dtype %d", dtype);
    if (check_shape("empty", ndim, shape, &n) < 0) return NULL;
    kiln_tensor *t = kiln_step_alloc(ctx, sizeof *t);
    if (!t) return NULL;
    void *data = kiln_step_alloc(ctx, (size_t)n * kiln_dtype_size(dtype));
    if (!data) return NULL;
    return kiln_tensor_wrap(t, dtype, ndim, shape, data);
}

kiln_tensor *kiln_zeros(kiln_ctx *ctx, kiln_dtype dtype, int ndim, const int64_t *shape)
{
    kiln_tensor *t = kiln_empty(ctx, dtype, ndim, shape);
    if (t) memset(t->data, 0, (size_t)kiln_numel(t) * kiln_dtype_size(dtype));
    return t;
}

kiln_tensor *kiln_full(kiln_ctx *ctx, int ndim, const int64_t *shape, float value)
{
    kiln_tensor *t = kiln_empty(ctx, KILN_DTYPE_F32, ndim, shape);
    if (!t) return NULL;
    float *p = t->data;
    for (int64_t i = 0, n = kiln_numel(t); i < n; i++) p[i] = value;
    return t;
}

kiln_tensor *kiln_from_data(kiln_ctx *ctx, kiln_dtype dtype, int ndim, const int64_t *shape, const void *src)
{
    kiln_tensor *t = kiln_empty(ctx, dtype, ndim, shape);
    if (t && kiln_numel(t)) memcpy(t->data, src, (size_t)kiln_numel(t) * kiln_dtype_size(dtype));
    return t;
}

kiln_tensor *kiln_randn(kiln_ctx *ctx, int ndim, const int64_t *shape, float mean, float std)
{
    kiln_tensor *t = kiln_empty(ctx, KILN_DTYPE_F32, ndim, shape);
    if (t) kiln_rng_normal(ctx, t->data, (size_t)kiln_numel(t), mean, std);
    return t;
}

kiln_tensor *kiln_rand(kiln_ctx *ctx, int ndim, const int64_t *shape, float lo, float hi)
{
    kiln_tensor *t = kiln_empty(ctx, KILN_DTYPE_F32, ndim, shape);
    if (t) kiln_rng_uniform(ctx, t->data, (size_t)kiln_numel(t), lo, hi);
    return t;
}

kiln_tensor *kiln_empty_like(kiln_ctx *ctx, const kiln_tensor *t)
{
    KILN_IN(t);
    return kiln_empty(ctx, t->dtype, t->ndim, t->shape);
}

kiln_tensor *kiln_empty_channels_last(kiln_ctx *ctx, const int64_t *shape)
{
    kiln_tensor *t = kiln_empty(ctx, KILN_DTYPE_F32, 4, shape);
    if (!t) return NULL;
    const int64_t c = shape[1], h = shape[2], w = shape[3];
    t->stride[0] = h * w * c, t->stride[1] = 1, t->stride[2] = w * c, t->stride[3] = c;
    return t;
}

kiln_tensor *kiln_empty_like_layout(kiln_ctx *ctx, const kiln_tensor *t)
{
    KILN_IN(t);
    if (kiln_is_channels_last(t) && t->dtype == KILN_DTYPE_F32) return kiln_empty_channels_last(ctx, t->shape);
    return kiln_empty(ctx, t->dtype, t->ndim, t->shape);
}

kiln_tensor *kiln_zeros_like(kiln_ctx *ctx, const kiln_tensor *t)
{
    KILN_IN(t);
    return kiln_zeros(ctx, t->dtype, t->ndim, t->shape);
}

kiln_tensor *kiln__view(kiln_ctx *ctx, const kiln_tensor *x, int ndim, const int64_t *shape,
                        const int64_t *stride, void *data)
{
    kiln_tensor *t = kiln_step_alloc(ctx, sizeof *t);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    t->dtype = x->dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    memcpy(t->stride, stride, (size_t)ndim * sizeof *stride);
    t->data = data;
    t->name = x->name;
    return t;
}

const char *kiln__tname(const kiln_tensor *t) { return t && t->name ? t->name : "tensor"; }

int kiln__dim(const char *op, int dim, int ndim)
{
    int d = dim < 0 ? dim + ndim : dim;
    if (d < 0 || d >= (ndim ? ndim : 1)) {
        kiln__err(KILN_STATUS_INVALID, "%s: dim %d out of range for a %d-d tensor", op, dim, ndim);
        return -1;
    }
    return d;
}

int kiln__broadcast_shape(const char *op, const kiln_tensor *a, const kiln_tensor *b, int64_t *out)
{
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < nd; i++) {
        int ia = a->ndim - nd + i, ib = b->ndim - nd + i;
        int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            char s1[128], s2[128];
            kiln__err(KILN_STATUS_INVALID, "%s: shapes %s and %s do not broadcast", op,
                      kiln_shape_str(a, s1, sizeof s1), kiln_shape_str(b, s2, sizeof s2));
            return -1;
        }
        out[i] = sa == 1 ? sb : sa;
    }
    return nd;
}

int kiln__check_f32(const char *op, const kiln_tensor *t, const char *argname)
{
    if (t->dtype == KILN_DTYPE_F32) return 0;
    kiln__err(KILN_STATUS_INVALID, "%s: %s must be f32, got %s", op, argname, kiln_dtype_name(t->dtype));
    return -1;
}
