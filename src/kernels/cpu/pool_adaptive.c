/* Adaptive 2-D pooling kernels (average and max) with PyTorch's bins: output i along H
 * covers rows [floor(i*H/OH), ceil((i+1)*H/OH)). When the bins are even (OH divides H and
 * OW divides W) this is ordinary pooling with kernel = stride = H/OH and runs on oneDNN;
 * uneven bins (which may overlap) run pool.c's OpenMP loops in adaptive mode, one plane per
 * iteration. The reference entries are the same loops run serially (the loops are the
 * definition). Channels-last data (g->nhwc) takes the same paths: as_pool keeps the layout
 * for oneDNN and the loops read it in place. */
#define KILN_CONV_CPU_INTERNAL
#include "kernels/conv.h"

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

/* ---- CPU table entries ---------------------------------------------------------------------- */

kiln_status kiln__cpu_adaptive_avg_pool2d_fwd(kiln_ctx *ctx, const kiln_pool2d_geom *g,
                                              const float *x, float *y)
{
    if (even_bins(g)) {
        kiln_pool2d_geom p = as_pool(g);
        return kiln__cdnn_pool_fwd(ctx, &p, dnnl_pooling_avg_include_padding, x, y, NULL);
    }
    kiln__pool_avg_loop(g, true, x, y, ctx);
    return KILN_STATUS_OK;
}

kiln_status kiln__cpu_adaptive_avg_pool2d_bwd(kiln_ctx *ctx, const kiln_pool2d_geom *g,
                                              const float *gy, float *gx, bool gx_acc)
{
    if (even_bins(g)) {
        kiln_pool2d_geom p = as_pool(g);
        return kiln__cdnn_pool_bwd(ctx, &p, dnnl_pooling_avg_include_padding, NULL, gy, gx, gx_acc);
    }
    kiln__pool_avg_bwd_loop(g, true, gy, gx, gx_acc, ctx);
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
    if (keep && !(idx = kiln__pool_alloc_idx(ctx, g, keep))) return KILN_STATUS_NOMEM;
    kiln__pool_max_loop(g, true, x, y, idx, ctx);
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
    kiln__pool_max_bwd_loop(g, keep, gy, gx, gx_acc, ctx);
    return KILN_STATUS_OK;
}

/* ---- reference -------------------------------------------------------------------------------- */

kiln_status kiln__ref_adaptive_avg_pool2d_fwd(kiln_ctx *ctx, const kiln_pool2d_geom *g,
                                              const float *x, float *y)
{
    (void)ctx;
    kiln__pool_avg_loop(g, true, x, y, NULL);
    return KILN_STATUS_OK;
}

kiln_status kiln__ref_adaptive_avg_pool2d_bwd(kiln_ctx *ctx, const kiln_pool2d_geom *g,
                                              const float *gy, float *gx, bool gx_acc)
{
    (void)ctx;
    kiln__pool_avg_bwd_loop(g, true, gy, gx, gx_acc, NULL);
    return KILN_STATUS_OK;
}

kiln_status kiln__ref_adaptive_max_pool2d_fwd(kiln_ctx *ctx, const kiln_pool2d_geom *g,
                                              const float *x, float *y, void **keep)
{
    int32_t *idx = NULL;
    if (keep && !(idx = kiln__pool_alloc_idx(ctx, g, keep))) return KILN_STATUS_NOMEM;
    kiln__pool_max_loop(g, true, x, y, idx, NULL);
    return KILN_STATUS_OK;
}

kiln_status kiln__ref_adaptive_max_pool2d_bwd(kiln_ctx *ctx, const kiln_pool2d_geom *g,
                                              const float *x, const void *keep, const float *gy,
                                              float *gx, bool gx_acc)
{
    (void)ctx, (void)x;
    KILN_ASSERT(keep);
    kiln__pool_max_bwd_loop(g, keep, gy, gx, gx_acc, NULL);
    return KILN_STATUS_OK;
}
