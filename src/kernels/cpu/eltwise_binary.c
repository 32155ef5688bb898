/* CPU kernels of the eltwise family: broadcasting binary ops, where, copy and axpy. All run
 * on the strided loop of eltwise_iter.c; inner segments have fast paths for the common
 * stride patterns (all contiguous, one operand a broadcast scalar along the row). */
#include "core/parallel.h"
#include "kernels/eltwise.h"

#include <string.h>

typedef struct bin_arg {
    const kiln__iter *it;
    kiln_binary_op op;
    bool acc;
    float alpha;
    size_t es; /* element size (copy) */
    const void *p[4];
} bin_arg;

/* One inner segment of y (=|+=) a OP b with strides sa, sb, sy; the branches on the
 * stride pattern let the compiler vectorize the common cases. */
#define BIN_LOOP(EXPR)                                                                              \
    do {                                                                                            \
        if (sa == 1 && sb == 1 && sy == 1) {                                                        \
            if (acc) { KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) { float A = a[i], B = b[i]; y[i] += (EXPR); } } \
            else { KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) { float A = a[i], B = b[i]; y[i] = (EXPR); } }     \
        } else if (sa == 1 && sb == 0 && sy == 1) {                                                 \
            const float B = b[0];                                                                   \
            if (acc) { KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) { float A = a[i]; y[i] += (EXPR); } }          \
            else { KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) { float A = a[i]; y[i] = (EXPR); } }               \
        } else if (sa == 0 && sb == 1 && sy == 1) {                                                 \
            const float A = a[0];                                                                   \
            if (acc) { KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) { float B = b[i]; y[i] += (EXPR); } }          \
            else { KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) { float B = b[i]; y[i] = (EXPR); } }               \
        } else {                                                                                    \
            for (int64_t i = 0; i < n; i++) {                                                       \
                float A = a[i * sa], B = b[i * sb];                                                 \
                if (acc) y[i * sy] += (EXPR); else y[i * sy] = (EXPR);                              \
            }                                                                                       \
        }                                                                                           \
    } while (0)

static void bin_seg(void *arg, const int64_t *off, int64_t n)
{
    bin_arg *u = arg;
    int last = u->it->ndim - 1;
    int64_t sa = u->it->stride[0][last], sb = u->it->stride[1][last], sy = u->it->stride[2][last];
    const float *a = (const float *)u->p[0] + off[0], *b = (const float *)u->p[1] + off[1];
    float *y = (float *)u->p[2] + off[2];
    bool acc = u->acc;
    switch (u->op) {
    case KILN_BINARY_ADD: BIN_LOOP(A + B); break;
    case KILN_BINARY_SUB: BIN_LOOP(A - B); break;
    case KILN_BINARY_MUL: BIN_LOOP(A * B); break;
    case KILN_BINARY_DIV: BIN_LOOP(A / B); break;
    default: KILN_ASSERT(!"binary op");
    }
}

kiln_status kiln__cpu_binary(kiln_ctx *ctx, kiln_binary_op op, const kiln_tensor *a, const kiln_tensor *b,
                             kiln_tensor *y, bool accumulate)
{
    const kiln_tensor *ops[3] = {a, b, y};
    kiln__iter it;
    kiln__iter_init(&it, 3, ops);
    bin_arg u = {.it = &it, .op = op, .acc = accumulate, .p = {a->data, b->data, y->data}};
    kiln__iter_run(ctx, &it, bin_seg, &u);
    return KILN_STATUS_OK;
}

/* ---- where ---------------------------------------------------------------------------- */

static void where_seg(void *arg, const int64_t *off, int64_t n)
{
    bin_arg *u = arg;
    int last = u->it->ndim - 1;
    int64_t sc = u->it->stride[0][last], sa = u->it->stride[1][last], sb = u->it->stride[2][last],
            sy = u->it->stride[3][last];
    const float *a = (const float *)u->p[1] + off[1], *b = (const float *)u->p[2] + off[2];
    float *y = (float *)u->p[3] + off[3];
    bool acc = u->acc;
    if (u->op == 0) { /* u8 cond */
        const uint8_t *c = (const uint8_t *)u->p[0] + off[0];
        for (int64_t i = 0; i < n; i++) {
            float v = c[i * sc] ? a[i * sa] : b[i * sb];
            if (acc) y[i * sy] += v; else y[i * sy] = v;
        }
    } else {
        const float *c = (const float *)u->p[0] + off[0];
        for (int64_t i = 0; i < n; i++) {
            float v = c[i * sc] != 0.0f ? a[i * sa] : b[i * sb];
            if (acc) y[i * sy] += v; else y[i * sy] = v;
        }
    }
}

kiln_status kiln__cpu_where(kiln_ctx *ctx, const kiln_tensor *cond, const kiln_tensor *a, const kiln_tensor *b,
                            kiln_tensor *y, bool accumulate)
{
    KILN_ASSERT(cond->dtype == KILN_DTYPE_U8 || cond->dtype == KILN_DTYPE_F32);
    const kiln_tensor *ops[4] = {cond, a, b, y};
    kiln__iter it;
    kiln__iter_init(&it, 4, ops);
    bin_arg u = {.it = &it, .op = cond->dtype == KILN_DTYPE_U8 ? 0 : 1, .acc = accumulate,
                 .p = {cond->data, a->data, b->data, y->data}};
    kiln__iter_run(ctx, &it, where_seg, &u);
    return KILN_STATUS_OK;
}

/* ---- copy and axpy -------------------------------------------------------------------- */

static void copy_seg(void *arg, const int64_t *off, int64_t n)
{
    bin_arg *u = arg;
    int last = u->it->ndim - 1;
    int64_t sx = u->it->stride[0][last], sy = u->it->stride[1][last];
    size_t es = u->es;
    const char *x = (const char *)u->p[0] + off[0] * (int64_t)es;
    char *y = (char *)u->p[1] + off[1] * (int64_t)es;
    if (sx == 1 && sy == 1) {
        memcpy(y, x, (size_t)n * es);
        return;
    }
    switch (es) {
    case 4: for (int64_t i = 0; i < n; i++) ((uint32_t *)y)[i * sy] = ((const uint32_t *)x)[i * sx]; break;
    case 8: for (int64_t i = 0; i < n; i++) ((uint64_t *)y)[i * sy] = ((const uint64_t *)x)[i * sx]; break;
    case 2: for (int64_t i = 0; i < n; i++) ((uint16_t *)y)[i * sy] = ((const uint16_t *)x)[i * sx]; break;
    default: for (int64_t i = 0; i < n; i++) y[i * sy] = x[i * sx]; break;
    }
}

kiln_status kiln__cpu_copy(kiln_ctx *ctx, const kiln_tensor *x, kiln_tensor *y)
{
    KILN_ASSERT(x->dtype == y->dtype);
    const kiln_tensor *ops[2] = {x, y};
    kiln__iter it;
    kiln__iter_init(&it, 2, ops);
    bin_arg u = {.it = &it, .es = kiln_dtype_size(x->dtype), .p = {x->data, y->data}};
    kiln__iter_run(ctx, &it, copy_seg, &u);
    return KILN_STATUS_OK;
}

static void axpy_seg(void *arg, const int64_t *off, int64_t n)
{
    bin_arg *u = arg;
    int last = u->it->ndim - 1;
    int64_t sx = u->it->stride[0][last], sy = u->it->stride[1][last];
    const float *x = (const float *)u->p[0] + off[0];
    float *y = (float *)u->p[1] + off[1];
    float a = u->alpha;
    if (sx == 1 && sy == 1) {
        if (a == 1.0f) {
            KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) y[i] += x[i];
        } else {
            KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
        }
    } else if (sx == 0 && sy == 1) {
        float v = a * x[0];
        KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) y[i] += v;
    } else {
        for (int64_t i = 0; i < n; i++) y[i * sy] += a * x[i * sx];
    }
}

kiln_status kiln__cpu_axpy(kiln_ctx *ctx, float alpha, const kiln_tensor *x, kiln_tensor *y)
{
    const kiln_tensor *ops[2] = {x, y};
    kiln__iter it;
    kiln__iter_init(&it, 2, ops);
    bin_arg u = {.it = &it, .alpha = alpha, .p = {x->data, y->data}};
    kiln__iter_run(ctx, &it, axpy_seg, &u);
    return KILN_STATUS_OK;
}
