/* Adaptive 2-D pooling kernels (average and max) with PyTorch's bins: output i along H
 * covers rows [floor(i*H/OH), ceil((i+1)*H/OH)). When the bins are even (OH divides H and
 * OW divides W) this is ordinary pooling with kernel = stride = H/OH and runs on oneDNN;
 * uneven bins (which may overlap) run the OpenMP loops below, one plane per iteration.
 * The reference entries are the same loops run serially (the loops are the definition). */
#define KILN_CONV_CPU_INTERNAL
#include "kernels/conv.h"

#include <math.h>
#include <string.h>

static bool even_bins(const kiln_pool2d_geom *g) { return g->h % g->oh == 0 && g->w % g->ow == 0; }

/* g as an ordinary pooling (even bins only). */
static kiln_pool2d_geom as_pool(const kiln_pool2d_geom *g)
{
    kiln_pool2d_geom p = *g;
    p.kh = p.sh = g->h / g->oh;
    p.kw = p.sw = g->w / g->ow;
    p.ph = p.pw = 0;
    p.count_include_pad = true;
    return p;
}

static void aavg_loop(const kiln_pool2d_geom *g, const float *x, float *y, bool par)
{
    int64_t planes = g->n * g->c, hw = g->h * g->w, ohw = g->oh * g->ow;
#pragma omp parallel for if (par && planes * hw > 4096)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * hw;
        for (int64_t i = 0; i < g->oh; i++) {
            int64_t h0 = kiln__adaptive_start(i, g->h, g->oh), h1 = kiln__adaptive_end(i, g->h, g->oh);
            for (int64_t j = 0; j < g->ow; j++) {
                int64_t w0 = kiln__adaptive_start(j, g->w, g->ow), w1 = kiln__adaptive_end(j, g->w, g->ow);
                double acc = 0;
                for (int64_t a = h0; a < h1; a++)
                    for (int64_t b = w0; b < w1; b++) acc += xp[a * g->w + b];
                y[pl * ohw + i * g->ow + j] = (float)(acc / (double)((h1 - h0) * (w1 - w0)));
            }
        }
    }
}

static void aavg_bwd_loop(const kiln_pool2d_geom *g, const float *gy, float *gx, bool gx_acc, bool par)
{
    int64_t planes = g->n * g->c, hw = g->h * g->w, ohw = g->oh * g->ow;
#pragma omp parallel for if (par && planes * hw > 4096)
    for (int64_t pl = 0; pl < planes; pl++) {
        float *gp = gx + pl * hw;
        if (!gx_acc) memset(gp, 0, (size_t)hw * sizeof(float));
        for (int64_t i = 0; i < g->oh; i++) {
            int64_t h0 = kiln__adaptive_start(i, g->h, g->oh), h1 = kiln__adaptive_end(i, g->h, g->oh);
            for (int64_t j = 0; j < g->ow; j++) {
                int64_t w0 = kiln__adaptive_start(j, g->w, g->ow), w1 = kiln__adaptive_end(j, g->w, g->ow);
                float d = gy[pl * ohw + i * g->ow + j] / (float)((h1 - h0) * (w1 - w0));
                for (int64_t a = h0; a < h1; a++)
                    for (int64_t b = w0; b < w1; b++) gp[a * g->w + b] += d;
            }
        }
    }
}

static void amax_loop(const kiln_pool2d_geom *g, const float *x, float *y, int32_t *idx, bool par)
{
    int64_t planes = g->n * g->c, hw = g->h * g->w, ohw = g->oh * g->ow;
#pragma omp parallel for if (par && planes * hw > 4096)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * hw;
        for (int64_t i = 0; i < g->oh; i++) {
            int64_t h0 = kiln__adaptive_start(i, g->h, g->oh), h1 = kiln__adaptive_end(i, g->h, g->oh);
            for (int64_t j = 0; j < g->ow; j++) {
                int64_t w0 = kiln__adaptive_start(j, g->w, g->ow), w1 = kiln__adaptive_end(j, g->w, g->ow);
                float best = -INFINITY;
                int64_t bi = h0 * g->w + w0;
                for (int64_t a = h0; a < h1; a++)
                    for (int64_t b = w0; b < w1; b++) {
                        float v = xp[a * g->w + b];
                        if (v > best || isnan(v)) { /* first maximum; NaN wins, as PyTorch */
                            best = v;
                            bi = a * g->w + b;
                        }
                    }
                y[pl * ohw + i * g->ow + j] = best;
                if (idx) idx[pl * ohw + i * g->ow + j] = (int32_t)bi;
            }
        }
    }
}

static void amax_bwd_loop(const kiln_pool2d_geom *g, const int32_t *idx, const float *gy, float *gx, bool gx_acc,
                          bool par)
{
    int64_t planes = g->n * g->c, hw = g->h * g->w, ohw = g->oh * g->ow;
#pragma omp parallel for if (par && planes * hw > 4096)
    for (int64_t pl = 0; pl < planes; pl++) {
        float *gp = gx + pl * hw;
        if (!gx_acc) memset(gp, 0, (size_t)hw * sizeof(float));
        for (int64_t o = 0; o < ohw; o++) gp[idx[pl * ohw + o]] += gy[pl * ohw + o];
    }
}

static int32_t *alloc_idx(kiln_ctx *ctx, const kiln_pool2d_geom *g, void **keep)
{
    int32_t *idx = kiln_step_alloc(ctx, (size_t)(g->n * g->c * g->oh * g->ow) * sizeof(int32_t));
    *keep = idx;
    return idx;
}

/* ---- CPU table entries ---------------------------------------------------------------------- */

kiln_status kiln__cpu_adaptive_avg_pool2d_fwd(kiln_ctx *ctx, const kiln_pool2d_geom *g,
                                              const float *x, float *y)
{
    if (even_bins(g)) {
        kiln_pool2d_geom p = as_pool(g);
        return kiln__cdnn_pool_fwd(ctx, &p, dnnl_pooling_avg_include_padding, x, y, NULL);
    }
    aavg_loop(g, x, y, true);
    return KILN_STATUS_OK;
}

kiln_status kiln__cpu_adaptive_avg_pool2d_bwd(kiln_ctx *ctx, const kiln_pool2d_geom *g,
                                              const float *gy, float *gx, bool gx_acc)
{
    if (even_bins(g)) {
        kiln_pool2d_geom p = as_pool(g);
        return kiln__cdnn_pool_bwd(ctx, &p, dnnl_pooling_avg_include_padding, NULL, gy, gx, gx_acc);
    }
    aavg_bwd_loop(g, gy, gx, gx_acc, true);
    return KILN_STATUS_OK;
}

kiln_status kiln__cpu_adaptive_max_pool2d_fwd(kiln_ctx *ctx, const kiln_pool2d_geom *g,
                                              const float *x, float *y, void **keep)
{
    if (even_bins(g)) {
        kiln_pool2d_geom p = as_pool(g);
        return kiln__cdnn_pool_fwd(ctx, &p, dnnl_pooling_max, x, y, keep);
    }
    int32_t *idx = NULL;
    if (keep && !(idx = alloc_idx(ctx, g, keep))) return KILN_STATUS_NOMEM;
    amax_loop(g, x, y, idx, true);
    return KILN_STATUS_OK;
}

kiln_status kiln__cpu_adaptive_max_pool2d_bwd(kiln_ctx *ctx, const kiln_pool2d_geom *g,
                                              const float *x, const void *keep, const float *gy,
                                              float *gx, bool gx_acc)
{
    (void)x;
    if (even_bins(g)) {
        kiln_pool2d_geom p = as_pool(g);
        return kiln__cdnn_pool_bwd(ctx, &p, dnnl_pooling_max, keep, gy, gx, gx_acc);
    }
    KILN_ASSERT(keep);
    amax_bwd_loop(g, keep, gy, gx, gx_acc, true);
    return KILN_STATUS_OK;
}

/* ---- reference -------------------------------------------------------------------------------- */

kiln_status kiln__ref_adaptive_avg_pool2d_fwd(kiln_ctx *ctx, const kiln_pool2d_geom *g,
                                              const float *x, float *y)
{
    (void)ctx;
    aavg_loop(g, x, y, false);
    return KILN_STATUS_OK;
}

kiln_status kiln__ref_adaptive_avg_pool2d_bwd(kiln_ctx *ctx, const kiln_pool2d_geom *g,
                                              const float *gy, float *gx, bool gx_acc)
{
    (void)ctx;
    aavg_bwd_loop(g, gy, gx, gx_acc, false);
    return KILN_STATUS_OK;
}

kiln_status kiln__ref_adaptive_max_pool2d_fwd(kiln_ctx *ctx, const kiln_pool2d_geom *g,
                                              const float *x, float *y, void **keep)
{
    int32_t *idx = NULL;
    if (keep && !(idx = alloc_idx(ctx, g, keep))) return KILN_STATUS_NOMEM;
    amax_loop(g, x, y, idx, false);
    return KILN_STATUS_OK;
}

kiln_status kiln__ref_adaptive_max_pool2d_bwd(kiln_ctx *ctx, const kiln_pool2d_geom *g,
                                              const float *x, const void *keep, const float *gy,
                                              float *gx, bool gx_acc)
{
    (void)ctx, (void)x;
    KILN_ASSERT(keep);
    amax_bwd_loop(g, keep, gy, gx, gx_acc, false);
    return KILN_STATUS_OK;
}
