/* CPU kernels of the eltwise family: the table, and the unary maps with their derivatives.
 * Cheap maps are OpenMP loops the compiler vectorizes. exp, tanh, sigmoid and sqrt on
 * contiguous tensors past a small size go to oneDNN's JIT eltwise: on 64x64x32x32 (4M
 * elements, 2 cores) it takes ~2 ms where libm loops take 12 (exp), 14 (sigmoid) and 62
 * (tanh) ms; relu and the scalar ops are memory bound and equally fast (~1 ms) as loops.
 * Backward passes are arithmetic on saved values and stay OpenMP loops (~2 ms for 4M): they
 * must add into the gradient, which oneDNN's eltwise backward cannot do without a second
 * pass over memory. */
#include "core/parallel.h"
#include "kernels/eltwise.h"
#include "kernels/cpu/dnnl_util.h"

#include <math.h>

/* Elements per OpenMP work item for contiguous spans. */
#define CHUNK 8192

static const char *const g_unary_names[KILN_UNARY_COUNT] = {
    "add_scalar", "mul_scalar", "pow_scalar", "neg", "relu", "leaky_relu",
    "sigmoid", "tanh", "softplus", "exp", "log", "sqrt",
};
static const char *const g_binary_names[KILN_BINARY_COUNT] = {"add", "sub", "mul", "div"};

const char *kiln__unary_name(kiln_unary_op op) { return (unsigned)op < KILN_UNARY_COUNT ? g_unary_names[op] : "?"; }
const char *kiln__binary_name(kiln_binary_op op) { return (unsigned)op < KILN_BINARY_COUNT ? g_binary_names[op] : "?"; }

bool kiln__unary_bwd_needs_x(kiln_unary_op op)
{
    return op == KILN_UNARY_POW_SCALAR || op == KILN_UNARY_LEAKY_RELU || op == KILN_UNARY_SOFTPLUS ||
           op == KILN_UNARY_LOG;
}

/* x^p with the special cases PyTorch's pow(tensor, scalar) takes (they differ from powf
 * in the last bit, and x^2 of a negative x must not go through exp/log). */
static inline float pow_torch(float x, float p)
{
    if (p == 2.0f) return x * x;
    if (p == 3.0f) return x * x * x;
    if (p == 0.5f) return sqrtf(x);
    if (p == -0.5f) return 1.0f / sqrtf(x);
    if (p == -1.0f) return 1.0f / x;
    if (p == -2.0f) return 1.0f / (x * x);
    if (p == 1.0f) return x;
    return powf(x, p);
}

static void fwd_span(kiln_unary_op op, float a, const float *x, float *y, int64_t n)
{
    switch (op) {
    case KILN_UNARY_ADD_SCALAR: KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) y[i] = x[i] + a; break;
    case KILN_UNARY_MUL_SCALAR: KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) y[i] = x[i] * a; break;
    case KILN_UNARY_NEG: KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) y[i] = -x[i]; break;
    case KILN_UNARY_RELU:
        /* NaN stays NaN, as torch.relu */
        KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            y[i] = v < 0.0f ? 0.0f : v;
        }
        break;
    case KILN_UNARY_LEAKY_RELU:
        KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            y[i] = v > 0.0f ? v : v * a;
        }
        break;
    case KILN_UNARY_POW_SCALAR:
        if (a == 2.0f) {
            KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) y[i] = x[i] * x[i];
        } else {
            for (int64_t i = 0; i < n; i++) y[i] = pow_torch(x[i], a);
        }
        break;
    case KILN_UNARY_SIGMOID: for (int64_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-x[i])); break;
    case KILN_UNARY_TANH: for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]); break;
    case KILN_UNARY_SOFTPLUS:
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > 20.0f ? x[i] : log1pf(expf(x[i]));
        break;
    case KILN_UNARY_EXP: for (int64_t i = 0; i < n; i++) y[i] = expf(x[i]); break;
    case KILN_UNARY_LOG: for (int64_t i = 0; i < n; i++) y[i] = logf(x[i]); break;
    case KILN_UNARY_SQRT: for (int64_t i = 0; i < n; i++) y[i] = sqrtf(x[i]); break;
    default: KILN_ASSERT(!"unary op");
    }
}

/* gx += gy * f'(x), each formula as in PyTorch's derivatives.yaml / CPU kernels. */
static void bwd_span(kiln_unary_op op, float a, const float *x, const float *y, const float *gy, float *gx,
                     int64_t n)
{
    switch (op) {
    case KILN_UNARY_ADD_SCALAR: KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) gx[i] += gy[i]; break;
    case KILN_UNARY_MUL_SCALAR: KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) gx[i] += gy[i] * a; break;
    case KILN_UNARY_NEG: KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) gx[i] += -gy[i]; break;
    case KILN_UNARY_RELU:
        /* gy is loaded unconditionally so the select vectorizes (no branch per element) */
        KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) {
            float g = gy[i];
            gx[i] += y[i] > 0.0f ? g : 0.0f;
        }
        break;
    case KILN_UNARY_LEAKY_RELU:
        KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) {
            float g = gy[i];
            gx[i] += x[i] > 0.0f ? g : g * a;
        }
        break;
    case KILN_UNARY_POW_SCALAR:
        if (a == 0.0f) break;
        if (a == 2.0f) {
            KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) gx[i] += gy[i] * (2.0f * x[i]);
        } else {
            for (int64_t i = 0; i < n; i++) gx[i] += gy[i] * (a * pow_torch(x[i], a - 1.0f));
        }
        break;
    case KILN_UNARY_SIGMOID:
        KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) gx[i] += gy[i] * (1.0f - y[i]) * y[i];
        break;
    case KILN_UNARY_TANH:
        KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) gx[i] += gy[i] * (1.0f - y[i] * y[i]);
        break;
    case KILN_UNARY_SOFTPLUS:
        for (int64_t i = 0; i < n; i++) {
            float z = expf(x[i]);
            gx[i] += x[i] > 20.0f ? gy[i] : gy[i] * z / (z + 1.0f);
        }
        break;
    case KILN_UNARY_EXP: KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) gx[i] += gy[i] * y[i]; break;
    case KILN_UNARY_LOG: KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) gx[i] += gy[i] / x[i]; break;
    case KILN_UNARY_SQRT:
        KILN__OMP("omp simd") for (int64_t i = 0; i < n; i++) gx[i] += gy[i] / (2.0f * y[i]);
        break;
    default: KILN_ASSERT(!"unary op");
    }
}

/* ---- oneDNN path ---------------------------------------------------------------------- */

/* The oneDNN algorithm for op and the length from which it beats the scalar libm loop
 * (measured on 2 cores: oneDNN costs ~6 us a call, libm tanhf ~25 ns an element, expf ~5,
 * sqrtf ~2). log and softplus stay on libm: oneDNN 2.6's log has ~1e-7 absolute error near
 * x = 1 (large relative error) and its soft_relu ~4e-6 absolute error below x = -30. */
static bool dnnl_alg(kiln_unary_op op, dnnl_alg_kind_t *alg, int64_t *min_n)
{
    switch (op) {
    case KILN_UNARY_SIGMOID: *alg = dnnl_eltwise_logistic; *min_n = 1024; return true;
    case KILN_UNARY_TANH: *alg = dnnl_eltwise_tanh; *min_n = 512; return true;
    case KILN_UNARY_EXP: *alg = dnnl_eltwise_exp; *min_n = 2048; return true;
    case KILN_UNARY_SQRT: *alg = dnnl_eltwise_sqrt; *min_n = 8192; return true;
    default: return false;
    }
}

static kiln_status dnnl_fwd(kiln_ctx *ctx, kiln_unary_op op, dnnl_alg_kind_t alg, const float *x, float *y,
                            int64_t n)
{
    dnnl_engine_t eng = kiln__dnnl_engine(ctx);
    dnnl_memory_desc_t md;
    dnnl_eltwise_desc_t ed;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_memory_t ms = NULL, md_dst = NULL;
    dnnl_dims_t dims = {n};
    dnnl_status_t s;
    const char *what = "memory_desc_init";
    if ((s = dnnl_memory_desc_init_by_tag(&md, 1, dims, dnnl_f32, dnnl_a)) != dnnl_success) goto fail;
    what = "eltwise_forward_desc_init";
    if ((s = dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference, alg, &md, 0.0f, 0.0f)) != dnnl_success)
        goto fail;
    what = "primitive_desc_create";
    if ((s = dnnl_primitive_desc_create(&pd, &ed, NULL, eng, NULL)) != dnnl_success) goto fail;
    what = "primitive_create";
    if ((s = dnnl_primitive_create(&prim, pd)) != dnnl_success) goto fail;
    what = "memory_create";
    if ((s = dnnl_memory_create(&ms, &md, eng, (void *)x)) != dnnl_success) goto fail;
    if ((s = dnnl_memory_create(&md_dst, &md, eng, y)) != dnnl_success) goto fail;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, ms}, {DNNL_ARG_DST, md_dst}};
    what = "primitive_execute";
    if ((s = dnnl_primitive_execute(prim, kiln__dnnl_stream(ctx), 2, args)) != dnnl_success) goto fail;
    what = "stream_wait";
    if ((s = dnnl_stream_wait(kiln__dnnl_stream(ctx))) != dnnl_success) goto fail;
    dnnl_memory_destroy(ms);
    dnnl_memory_destroy(md_dst);
    dnnl_primitive_destroy(prim);
    dnnl_primitive_desc_destroy(pd);
    return KILN_STATUS_OK;
fail:
    if (ms) dnnl_memory_destroy(ms);
    if (md_dst) dnnl_memory_destroy(md_dst);
    if (prim) dnnl_primitive_destroy(prim);
    if (pd) dnnl_primitive_desc_destroy(pd);
    return kiln__err(KILN_STATUS_BACKEND, "%s: oneDNN %s failed: %s", kiln__unary_name(op), what,
                     kiln__dnnl_status_str(s));
}

/* ---- unary entries -------------------------------------------------------------------- */

typedef struct unary_arg {
    const kiln__iter *it;
    kiln_unary_op op;
    float alpha;
    const float *p[4]; /* fwd: x, y; bwd: y, gy, gx, x */
} unary_arg;

#define GATHER 256

static void fwd_seg(void *arg, const int64_t *off, int64_t n)
{
    unary_arg *u = arg;
    int64_t sx = u->it->stride[0][u->it->ndim - 1];
    const float *x = u->p[0] + off[0];
    float *y = (float *)u->p[1] + off[1];
    if (sx == 1) {
        fwd_span(u->op, u->alpha, x, y, n);
        return;
    }
    float buf[GATHER];
    for (int64_t i0 = 0; i0 < n; i0 += GATHER) {
        int64_t m = n - i0 < GATHER ? n - i0 : GATHER;
        for (int64_t i = 0; i < m; i++) buf[i] = x[(i0 + i) * sx];
        fwd_span(u->op, u->alpha, buf, y + i0, m);
    }
}

static kiln_status cpu_unary_fwd(kiln_ctx *ctx, kiln_unary_op op, float alpha, const kiln_tensor *x,
                                 kiln_tensor *y)
{
    const kiln_tensor *ops[2] = {x, y};
    kiln__iter it;
    kiln__iter_init(&it, 2, ops);
    int64_t n = kiln__iter_numel(&it);
    const float *xp = x->data;
    float *yp = y->data;
    if (n == 0) return KILN_STATUS_OK;
    if (kiln__iter_contiguous(&it)) {
        dnnl_alg_kind_t alg;
        int64_t min_n;
        if (ctx && ctx->backend_state && dnnl_alg(op, &alg, &min_n) && n >= min_n)
            return dnnl_fwd(ctx, op, alg, xp, yp, n);
        int64_t nc = (n + CHUNK - 1) / CHUNK;
        KILN_PAR_LOOP(kiln__par_threads(ctx, n), for (int64_t c = 0; c < nc; c++) {
            int64_t i0 = c * CHUNK, m = n - i0 < CHUNK ? n - i0 : CHUNK;
            fwd_span(op, alpha, xp + i0, yp + i0, m);
        });
        return KILN_STATUS_OK;
    }
    unary_arg u = {.it = &it, .op = op, .alpha = alpha, .p = {xp, yp}};
    kiln__iter_run(ctx, &it, fwd_seg, &u);
    return KILN_STATUS_OK;
}

static void bwd_seg(void *arg, const int64_t *off, int64_t n)
{
    unary_arg *u = arg;
    const float *y = u->p[0] + off[0], *gy = u->p[1] + off[1];
    float *gx = (float *)u->p[2] + off[2];
    if (u->it->n_ops < 4) {
        bwd_span(u->op, u->alpha, NULL, y, gy, gx, n);
        return;
    }
    int64_t sx = u->it->stride[3][u->it->ndim - 1];
    const float *x = u->p[3] + off[3];
    if (sx == 1) {
        bwd_span(u->op, u->alpha, x, y, gy, gx, n);
        return;
    }
    float buf[GATHER];
    for (int64_t i0 = 0; i0 < n; i0 += GATHER) {
        int64_t m = n - i0 < GATHER ? n - i0 : GATHER;
        for (int64_t i = 0; i < m; i++) buf[i] = x[(i0 + i) * sx];
        bwd_span(u->op, u->alpha, buf, y + i0, gy + i0, gx + i0, m);
    }
}

static kiln_status cpu_unary_bwd(kiln_ctx *ctx, kiln_unary_op op, float alpha, const kiln_tensor *x,
                                 const kiln_tensor *y, const kiln_tensor *gy, kiln_tensor *gx)
{
    bool need_x = kiln__unary_bwd_needs_x(op);
    KILN_ASSERT(!need_x || x);
    const kiln_tensor *ops[4] = {y, gy, gx, x};
    kiln__iter it;
    kiln__iter_init(&it, need_x ? 4 : 3, ops);
    unary_arg u = {.it = &it, .op = op, .alpha = alpha,
                   .p = {y->data, gy->data, gx->data, need_x ? x->data : NULL}};
    kiln__iter_run(ctx, &it, bwd_seg, &u);
    return KILN_STATUS_OK;
}

const kiln_eltwise_kernels kiln__cpu_eltwise = {
    .unary_fwd = cpu_unary_fwd,
    .unary_bwd = cpu_unary_bwd,
    .binary = kiln__cpu_binary,
    .where = kiln__cpu_where,
    .copy = kiln__cpu_copy,
    .axpy = kiln__cpu_axpy,
    .sum_to = kiln__cpu_sum_to,
    .max_dim = kiln__cpu_max_dim,
    .max_dim_bwd = kiln__cpu_max_dim_bwd,
};
