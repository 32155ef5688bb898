/* Batch normalisation kernels over x seen as (N, C, S): oneDNN batch normalization forward
 * (training: batch statistics; inference: given running statistics) and backward
 * (training), OpenMP loops for the eval-mode backward (statistics are constants: an affine
 * map), and the reference loops the tests compare against.
 *
 * The data stays in kiln's plain layout (described to oneDNN as (N, C, S, 1) nchw), which
 * oneDNN's batch norm handles directly; reordering to a blocked layout would cost more
 * than it saves for a memory-bound op. oneDNN's variance is the biased one, as the
 * normalisation needs; the unbiased running-variance update is done by the caller. */
#define KILN_CONV_CPU_INTERNAL
#include "kernels/conv.h"

#include <math.h>
#include <string.h>

#define OP "batch_norm"

typedef struct bn_mds {
    dnnl_memory_desc_t data; /* (N, C, S, 1) nchw */
    dnnl_memory_desc_t ch;   /* (C) */
} bn_mds;

static void bn_mds_init(const kiln_bn_geom *g, bn_mds *m)
{
    int64_t d[4] = {g->n, g->c, g->s, 1}, c[1] = {g->c};
    m->data = kiln__cdnn_md(4, d, dnnl_nchw);
    m->ch = kiln__cdnn_md(1, c, dnnl_a);
}

static const unsigned BN_FLAGS = dnnl_use_scale | dnnl_use_shift;

static kiln_status fwd_pd(kiln_ctx *ctx, bn_mds *m, bool train, float eps, dnnl_primitive_desc_t *pd)
{
    dnnl_batch_normalization_desc_t bd;
    KILN_DNNL(OP, dnnl_batch_normalization_forward_desc_init(
                      &bd, train ? dnnl_forward_training : dnnl_forward_inference, &m->data, eps,
                      train ? BN_FLAGS : BN_FLAGS | dnnl_use_global_stats));
    dnnl_primitive_attr_t attr = kiln__cdnn_attr();
    dnnl_status_t s = dnnl_primitive_desc_create(pd, &bd, attr, kiln__dnnl_engine(ctx), NULL);
    dnnl_primitive_attr_destroy(attr);
    if (s != dnnl_success)
        return kiln__err(KILN_STATUS_BACKEND, "batch_norm: oneDNN forward creation failed: %s",
                         kiln__dnnl_status_str(s));
    return KILN_STATUS_OK;
}

/* Scale and shift for oneDNN: w and b, or ones and zeros when absent (C floats each). */
static float *affine(kiln_ctx *ctx, int64_t c, const float *w, const float *b, float **shift)
{
    float *buf = (!w || !b) ? kiln_step_alloc(ctx, 2 * (size_t)c * sizeof(float)) : NULL;
    if ((!w || !b) && !buf) return NULL;
    float *sc = (float *)w, *sh = (float *)b;
    if (!w) {
        sc = buf;
        for (int64_t i = 0; i < c; i++) sc[i] = 1.0f;
    }
    if (!b) {
        sh = buf + c;
        memset(sh, 0, (size_t)c * sizeof(float));
    }
    *shift = sh;
    return sc;
}

kiln_status kiln__cpu_batch_norm_fwd(kiln_ctx *ctx, const kiln_bn_geom *g, bool train, float eps,
                                     const float *x, const float *w, const float *b, float *mean,
                                     float *var, float *y)
{
    bn_mds m;
    bn_mds_init(g, &m);
    dnnl_primitive_desc_t pd = NULL;
    kiln_status st = fwd_pd(ctx, &m, train, eps, &pd);
    if (st < 0) return st;
    kiln_mark mark = kiln_step_mark(ctx);
    float *shift = NULL, *scale = affine(ctx, g->c, w, b, &shift);
    if (!scale) {
        st = KILN_STATUS_NOMEM;
    } else {
        kiln__cdnn_arg a[6] = {{DNNL_ARG_SRC, &m.data, (void *)x}, {DNNL_ARG_DST, &m.data, y},
                               {DNNL_ARG_MEAN, &m.ch, mean},       {DNNL_ARG_VARIANCE, &m.ch, var},
                               {DNNL_ARG_SCALE, &m.ch, scale},     {DNNL_ARG_SHIFT, &m.ch, shift}};
        st = kiln__cdnn_exec(ctx, OP, pd, 6, a);
    }
    kiln_step_rewind(ctx, mark);
    dnnl_primitive_desc_destroy(pd);
    return st;
}

/* Eval-mode backward, and the parameter grads of a train-mode backward that needs no gx:
 * gb += sum gy, gw += sum gy * (x - mean) * invstd; gx (= or +=) gy * w * invstd (eval). */
static void bn_bwd_loops(const kiln_bn_geom *g, float eps, const float *x, const float *w, const float *mean,
                         const float *var, const float *gy, float *gx, bool gx_acc, float *gw, float *gb)
{
    int64_t s = g->s, cs = g->c * s;
#pragma omp parallel for if (g->n * cs > 32768)
    for (int64_t c = 0; c < g->c; c++) {
        float invstd = 1.0f / sqrtf(var[c] + eps), mu = mean[c];
        float k = (w ? w[c] : 1.0f) * invstd;
        double sg = 0, sgx = 0;
        for (int64_t n = 0; n < g->n; n++) {
            const float *xp = x + n * cs + c * s, *gp = gy + n * cs + c * s;
            float *gxp = gx ? gx + n * cs + c * s : NULL;
            float a = 0, bsum = 0;
            for (int64_t i = 0; i < s; i++) {
                a += gp[i];
                bsum += gp[i] * (xp[i] - mu);
            }
            sg += a, sgx += bsum;
            if (gxp && gx_acc)
                for (int64_t i = 0; i < s; i++) gxp[i] += gp[i] * k;
            else if (gxp)
                for (int64_t i = 0; i < s; i++) gxp[i] = gp[i] * k;
        }
        if (gb) gb[c] += (float)sg;
        if (gw) gw[c] += (float)(sgx * invstd);
    }
}

kiln_status kiln__cpu_batch_norm_bwd(kiln_ctx *ctx, const kiln_bn_geom *g, bool train, float eps,
                                     const float *x, const float *w, const float *mean,
                                     const float *var, const float *gy, float *gx, bool gx_acc,
                                     float *gw, float *gb)
{
    if (!train || !gx) {
        bn_bwd_loops(g, eps, x, w, mean, var, gy, train ? NULL : gx, gx_acc, gw, gb);
        return KILN_STATUS_OK;
    }
    bn_mds m;
    bn_mds_init(g, &m);
    dnnl_primitive_desc_t fpd = NULL, pd = NULL;
    kiln_status st = fwd_pd(ctx, &m, true, eps, &fpd);
    if (st < 0) return st;
    dnnl_batch_normalization_desc_t bd;
    dnnl_status_t s = dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &m.data, &m.data, eps, BN_FLAGS);
    dnnl_primitive_attr_t attr = kiln__cdnn_attr();
    if (s == dnnl_success) s = dnnl_primitive_desc_create(&pd, &bd, attr, kiln__dnnl_engine(ctx), fpd);
    dnnl_primitive_attr_destroy(attr);
    dnnl_primitive_desc_destroy(fpd);
    if (s != dnnl_success)
        return kiln__err(KILN_STATUS_BACKEND, "batch_norm: oneDNN backward creation failed: %s",
                         kiln__dnnl_status_str(s));
    kiln_mark mark = kiln_step_mark(ctx);
    float *shift = NULL, *scale = affine(ctx, g->c, w, NULL, &shift);
    float *dsc = kiln_step_alloc(ctx, 2 * (size_t)g->c * sizeof(float));
    int64_t total = g->n * g->c * g->s;
    float *gxb = gx_acc ? kiln_step_alloc(ctx, (size_t)total * sizeof(float)) : gx;
    if (!scale || !dsc || !gxb) {
        st = KILN_STATUS_NOMEM;
        goto done;
    }
    kiln__cdnn_arg a[8] = {{DNNL_ARG_SRC, &m.data, (void *)x},        {DNNL_ARG_MEAN, &m.ch, (void *)mean},
                           {DNNL_ARG_VARIANCE, &m.ch, (void *)var},   {DNNL_ARG_DIFF_DST, &m.data, (void *)gy},
                           {DNNL_ARG_SCALE, &m.ch, scale},            {DNNL_ARG_DIFF_SRC, &m.data, gxb},
                           {DNNL_ARG_DIFF_SCALE, &m.ch, dsc},         {DNNL_ARG_DIFF_SHIFT, &m.ch, dsc + g->c}};
    st = kiln__cdnn_exec(ctx, OP, pd, 8, a);
    if (st < 0) goto done;
    if (gx_acc) {
#pragma omp parallel for if (total > 65536)
        for (int64_t i = 0; i < total; i++) gx[i] += gxb[i];
    }
    for (int64_t c = 0; c < g->c; c++) {
        if (gw) gw[c] += dsc[c];
        if (gb) gb[c] += dsc[g->c + c];
    }
done:
    kiln_step_rewind(ctx, mark);
    dnnl_primitive_desc_destroy(pd);
    return st;
}

/* ---- reference ---------------------------------------------------------------------------- */

kiln_status kiln__ref_batch_norm_fwd(kiln_ctx *ctx, const kiln_bn_geom *g, bool train, float eps,
                                     const float *x, const float *w, const float *b, float *mean,
                                     float *var, float *y)
{
    (void)ctx;
    int64_t s = g->s, cs = g->c * s, m = g->n * s;
    for (int64_t c = 0; c < g->c; c++) {
        if (train) {
            double acc = 0, sq = 0;
            for (int64_t n = 0; n < g->n; n++)
                for (int64_t i = 0; i < s; i++) acc += x[n * cs + c * s + i];
            double mu = acc / (double)m;
            for (int64_t n = 0; n < g->n; n++)
                for (int64_t i = 0; i < s; i++) {
                    double d = x[n * cs + c * s + i] - mu;
                    sq += d * d;
                }
            mean[c] = (float)mu;
            var[c] = (float)(sq / (double)m);
        }
        double invstd = 1.0 / sqrt((double)var[c] + eps);
        double k = (w ? w[c] : 1.0) * invstd, sh = b ? b[c] : 0.0;
        for (int64_t n = 0; n < g->n; n++)
            for (int64_t i = 0; i < s; i++) {
                int64_t j = n * cs + c * s + i;
                y[j] = (float)((x[j] - (double)mean[c]) * k + sh);
            }
    }
    return KILN_STATUS_OK;
}

kiln_status kiln__ref_batch_norm_bwd(kiln_ctx *ctx, const kiln_bn_geom *g, bool train, float eps,
                                     const float *x, const float *w, const float *mean,
                                     const float *var, const float *gy, float *gx, bool gx_acc,
                                     float *gw, float *gb)
{
    (void)ctx;
    int64_t s = g->s, cs = g->c * s, m = g->n * s;
    for (int64_t c = 0; c < g->c; c++) {
        double invstd = 1.0 / sqrt((double)var[c] + eps), mu = mean[c], wc = w ? w[c] : 1.0;
        double sg = 0, sgx = 0; /* sum gy, sum gy * xhat */
        for (int64_t n = 0; n < g->n; n++)
            for (int64_t i = 0; i < s; i++) {
                int64_t j = n * cs + c * s + i;
                sg += gy[j];
                sgx += gy[j] * (x[j] - mu) * invstd;
            }
        if (gb) gb[c] += (float)sg;
        if (gw) gw[c] += (float)sgx;
        if (!gx) continue;
        for (int64_t n = 0; n < g->n; n++)
            for (int64_t i = 0; i < s; i++) {
                int64_t j = n * cs + c * s + i;
                double d = gy[j];
                if (train) d -= (sg + (x[j] - mu) * invstd * sgx) / (double)m;
                d *= wc * invstd;
                gx[j] = (float)((gx_acc ? gx[j] : 0.0) + d);
            }
    }
    return KILN_STATUS_OK;
}
