/* 2-D convolution kernels: oneDNN forward / backward-data / backward-weights(+bias), and
 * the reference loops they are tested against.
 *
 * Layouts: kiln tensors are plain NCHW / OIHW. The oneDNN primitives are created with
 * format_tag_any so they pick their preferred (blocked, e.g. nChw16c) layouts; inputs are
 * reordered into those layouts in step-arena scratch, and outputs reordered back (the
 * backward reorders add into the gradients with a sum post-op, so accumulation is free).
 * Negative right padding (a last window that stops short of the input's end, e.g. 1x1
 * stride 2 on an even size) is passed to oneDNN as is. Algorithm: direct, or oneDNN's
 * choice (Winograd) for the 3x3 shapes where that measured faster (conv_alg below).
 * Primitives are cached per context by geometry and pass (dnnl_cache.c): creating the
 * descriptors per call cost tens of microseconds, as much as the small layers' compute. */
#define KILN_CONV_CPU_INTERNAL
#include "core/parallel.h"
#include "kernels/conv.h"

#include <stdlib.h>
#include <string.h>

#define OP "conv2d"

/* The user (plain) and primitive (any) descriptions of one convolution. */
typedef struct conv_mds {
    dnnl_memory_desc_t x_u, w_u, b_u, y_u; /* plain: nchw, (g)oihw, a, nchw */
    dnnl_memory_desc_t x_a, w_a, y_a;      /* format_tag_any */
    dnnl_dims_t st, dil, pl, pr;
    dnnl_alg_kind_t alg;
    bool nhwc_small; /* channels-last with <= 32 channels in and out: see create_pd */
} conv_mds;

/* Whether to let oneDNN pick Winograd (convolution_auto) rather than the direct algorithm.
 * Measured fwd + bwd-data + bwd-weights on this CPU (2 threads): for 3x3 stride-1 convs
 * with 64..512 channels Winograd F(4x4, 3x3) is 1.6-2.5x faster (64->64 32x32 bs64: 74 ms
 * direct, 34 ms), but slower with few input channels (the 3-channel stem: 0.4-0.5x) and
 * when there are few output pixels (bs16 512ch 4x4: 0.8x; bs128 32ch 4x4: 0.8x, F(4x4) tiles on
 * images under 8x8 are mostly padding). auto keeps oneDNN's own shape
 * checks on top of these. Its error stays within the conv tests' 1e-4 tolerance. */
static dnnl_alg_kind_t conv_alg(const kiln_conv2d_geom *g)
{
    bool wino = g->groups == 1 && g->kh == 3 && g->kw == 3 && g->sh == 1 && g->sw == 1 && g->dh == 1 &&
                g->dw == 1 && g->c >= 32 && g->o >= 32 && g->n * g->oh * g->ow >= 1024 && g->oh >= 8 && g->ow >= 8;
    return wino ? dnnl_convolution_auto : dnnl_convolution_direct;
}

static void conv_mds_init(const kiln_conv2d_geom *g, conv_mds *m)
{
    int64_t xd[4] = {g->n, g->c, g->h, g->w}, yd[4] = {g->n, g->o, g->oh, g->ow}, bd[1] = {g->o};
    /* Channels-last data stays nhwc inside oneDNN too (its nhwc kernels measured as fast as
     * the blocked ones on the small nets, and no reorder is needed); plain NCHW data goes
     * through oneDNN's preferred blocked layout. */
    dnnl_format_tag_t user = g->nhwc ? dnnl_nhwc : dnnl_nchw, prim = g->nhwc ? dnnl_nhwc : dnnl_format_tag_any;
    m->x_u = kiln__cdnn_md(4, xd, user);
    m->y_u = kiln__cdnn_md(4, yd, user);
    m->b_u = kiln__cdnn_md(1, bd, dnnl_a);
    m->x_a = kiln__cdnn_md(4, xd, prim);
    m->y_a = kiln__cdnn_md(4, yd, prim);
    if (g->groups == 1) {
        int64_t wd[4] = {g->o, g->c, g->kh, g->kw};
        m->w_u = kiln__cdnn_md(4, wd, dnnl_oihw);
        m->w_a = kiln__cdnn_md(4, wd, dnnl_format_tag_any);
    } else {
        int64_t wd[5] = {g->groups, g->o / g->groups, g->c / g->groups, g->kh, g->kw};
        m->w_u = kiln__cdnn_md(5, wd, dnnl_goihw);
        m->w_a = kiln__cdnn_md(5, wd, dnnl_format_tag_any);
    }
    m->st[0] = g->sh, m->st[1] = g->sw;
    m->dil[0] = g->dh - 1, m->dil[1] = g->dw - 1; /* oneDNN counts dilation from 0 */
    m->pl[0] = g->ph, m->pl[1] = g->pw;
    /* The right padding that makes the last window end exactly at the padded input's end. */
    m->pr[0] = (g->oh - 1) * g->sh + (g->kh - 1) * g->dh + 1 - g->h - g->ph;
    m->pr[1] = (g->ow - 1) * g->sw + (g->kw - 1) * g->dw + 1 - g->w - g->pw;
    m->alg = conv_alg(g);
    m->nhwc_small = g->nhwc && g->c <= 32 && g->o <= 32;
}

/* oneDNN's first choice, or with skip_brg its first implementation that is not brgconv.
 * Measured on the Fashion-MNIST net (nhwc, bs 128, 2 threads, one epoch of forward calls):
 * brgconv's forward took 400 / 208 / 176 / 147 ms for the 8 / 16 / 32-channel 3x3 convs and
 * the 1-channel stem, the jit:avx512_core direct kernel 238 / 148 / 152 / 84 ms. */
static dnnl_status_t create_pd(kiln_ctx *ctx, dnnl_primitive_desc_t *pd, const void *cd,
                               const_dnnl_primitive_attr_t attr, const_dnnl_primitive_desc_t hint, bool skip_brg)
{
    if (!skip_brg) return dnnl_primitive_desc_create(pd, cd, attr, kiln__dnnl_engine(ctx), hint);
    dnnl_primitive_desc_iterator_t it;
    dnnl_status_t s = dnnl_primitive_desc_iterator_create(&it, cd, attr, kiln__dnnl_engine(ctx), hint);
    if (s != dnnl_success) return s;
    dnnl_primitive_desc_t first = NULL;
    for (; s == dnnl_success; s = dnnl_primitive_desc_iterator_next(it)) {
        dnnl_primitive_desc_t f = dnnl_primitive_desc_iterator_fetch(it);
        if (!f) break;
        const char *name = NULL;
        dnnl_primitive_desc_query(f, dnnl_query_impl_info_str, 0, &name);
        if (name && !strncmp(name, "brg", 3)) {
            if (!first) first = f;
            else dnnl_primitive_desc_destroy(f);
            continue;
        }
        if (first) dnnl_primitive_desc_destroy(first);
        dnnl_primitive_desc_iterator_destroy(it);
        *pd = f;
        return dnnl_success;
    }
    dnnl_primitive_desc_iterator_destroy(it);
    if (!first) return dnnl_unimplemented;
    *pd = first; /* only brgconv implements it */
    return dnnl_success;
}

/* Primitive descriptor of one pass: 'f' forward, 'd' backward data, 'w' backward weights
 * (bias: with a bias / bias gradient). Backward ones are created with a forward hint. */
static kiln_status make_pd(kiln_ctx *ctx, conv_mds *m, char kind, bool bias, const_dnnl_primitive_desc_t hint,
                           dnnl_primitive_desc_t *pd)
{
    dnnl_convolution_desc_t cd;
    if (kind == 'f')
        KILN_DNNL(OP, dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_training, m->alg, &m->x_a, &m->w_a,
                                                                 bias ? &m->b_u : NULL, &m->y_a, m->st, m->dil, m->pl,
                                                                 m->pr));
    else if (kind == 'd')
        KILN_DNNL(OP, dnnl_dilated_convolution_backward_data_desc_init(&cd, m->alg, &m->x_a, &m->w_a, &m->y_a, m->st,
                                                                       m->dil, m->pl, m->pr));
    else
        KILN_DNNL(OP, dnnl_dilated_convolution_backward_weights_desc_init(&cd, m->alg, &m->x_a, &m->w_a,
                                                                          bias ? &m->b_u : NULL, &m->y_a, m->st,
                                                                          m->dil, m->pl, m->pr));
    dnnl_primitive_attr_t attr = kiln__cdnn_attr();
    dnnl_status_t s = create_pd(ctx, pd, &cd, attr, hint, kind == 'f' && m->nhwc_small);
    dnnl_primitive_attr_destroy(attr);
    if (s != dnnl_success)
        return kiln__err(KILN_STATUS_BACKEND, "conv2d: oneDNN %s creation failed: %s",
                         kind == 'f' ? "forward" : kind == 'd' ? "backward-data" : "backward-weights",
                         kiln__dnnl_status_str(s));
    return KILN_STATUS_OK;
}

/* The cache key of one pass of one geometry. */
typedef struct conv_key {
    char tag[8];
    int64_t bias;
    kiln_conv2d_geom g;
} conv_key;

/* The (cached) primitive of one pass and its descriptor; NULL + message on failure. */
static dnnl_primitive_t conv_prim(kiln_ctx *ctx, const kiln_conv2d_geom *g, conv_mds *m, char kind, bool bias,
                                  const_dnnl_primitive_desc_t *pd_out)
{
    conv_key key;
    memset(&key, 0, sizeof key);
    key.tag[0] = 'c', key.tag[1] = kind;
    key.bias = bias;
    key.g = *g;
    dnnl_primitive_t prim = kiln__cdnn_cached(ctx, &key, sizeof key);
    if (!prim) {
        dnnl_primitive_desc_t hint = NULL, pd = NULL;
        kiln_status st = make_pd(ctx, m, 'f', bias, NULL, kind == 'f' ? &pd : &hint);
        if (st >= 0 && kind != 'f') st = make_pd(ctx, m, kind, bias, hint, &pd);
        if (st >= 0) prim = kiln__cdnn_keep(ctx, OP, &key, sizeof key, pd);
        if (pd) dnnl_primitive_desc_destroy(pd);
        if (hint) dnnl_primitive_desc_destroy(hint);
        if (!prim) return NULL;
    }
    if (dnnl_primitive_get_primitive_desc(prim, pd_out) != dnnl_success) {
        kiln__err(KILN_STATUS_BACKEND, "conv2d: oneDNN primitive descriptor query failed");
        return NULL;
    }
    return prim;
}

#define PD_MD(pd, what) dnnl_primitive_desc_query_md((pd), (what), 0)

kiln_status kiln__cpu_conv2d_fwd(kiln_ctx *ctx, const kiln_conv2d_geom *g, const float *x,
                                 const float *w, const float *b, float *y)
{
    conv_mds m;
    conv_mds_init(g, &m);
    const_dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = conv_prim(ctx, g, &m, 'f', b != NULL, &pd);
    if (!prim) return KILN_STATUS_BACKEND;
    kiln_status st;
    kiln_mark mark = kiln_step_mark(ctx);
    const dnnl_memory_desc_t *xs = PD_MD(pd, dnnl_query_src_md), *ws = PD_MD(pd, dnnl_query_weights_md),
                             *ys = PD_MD(pd, dnnl_query_dst_md);
    void *xb = kiln__cdnn_as(ctx, OP, &m.x_u, x, xs);
    void *wb = xb ? kiln__cdnn_as(ctx, OP, &m.w_u, w, ws) : NULL;
    bool y_direct = dnnl_memory_desc_equal(ys, &m.y_u);
    void *yb = y_direct ? (void *)y : (wb ? kiln__cdnn_buf(ctx, ys) : NULL);
    if (!yb) {
        st = KILN_STATUS_NOMEM; /* or a oneDNN reorder failure: the message says which */
        goto done;
    }
    kiln__cdnn_arg a[4] = {{DNNL_ARG_SRC, xs, xb}, {DNNL_ARG_WEIGHTS, ws, wb}, {DNNL_ARG_DST, ys, yb},
                           {DNNL_ARG_BIAS, &m.b_u, (void *)b}};
    st = kiln__cdnn_run(ctx, OP, prim, b ? 4 : 3, a);
    if (st >= 0 && !y_direct) st = kiln__cdnn_reorder(ctx, OP, ys, yb, &m.y_u, y, 0.0f);
done:
    kiln_step_rewind(ctx, mark);
    return st;
}

/* gb (O) += sum of gy (N, OH, OW, O) over N, OH, OW. */
static void bias_grad_nhwc(const kiln_conv2d_geom *g, const float *gy, float *gb)
{
    const int64_t rows = g->n * g->oh * g->ow, o = g->o;
    double *acc = calloc((size_t)o, sizeof *acc);
    float *part = calloc((size_t)o, sizeof *part);
    if (!acc || !part) { /* tiny; fall back to a slow exact loop rather than fail */
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < o; k++) gb[k] += gy[r * o + k];
    } else {
        for (int64_t r0 = 0; r0 < rows; r0 += 256) { /* float partials per 256 rows, added in double */
            int64_t r1 = r0 + 256 < rows ? r0 + 256 : rows;
            for (int64_t k = 0; k < o; k++) part[k] = 0;
            for (int64_t r = r0; r < r1; r++) {
                const float *p = gy + r * o;
#pragma omp simd
                for (int64_t k = 0; k < o; k++) part[k] += p[k];
            }
            for (int64_t k = 0; k < o; k++) acc[k] += part[k];
        }
        for (int64_t k = 0; k < o; k++) gb[k] += (float)acc[k];
    }
    free(acc);
    free(part);
}

/* gb (O) += sum of gy (N, O, OH, OW) over N, OH, OW. */
static void bias_grad(kiln_ctx *ctx, const kiln_conv2d_geom *g, const float *gy, float *gb)
{
    if (g->nhwc) {
        bias_grad_nhwc(g, gy, gb);
        return;
    }
    int64_t s = g->oh * g->ow;
    KILN_PAR_FOR(ctx, g->o * g->n * s)
    for (int64_t o = 0; o < g->o; o++) {
        double acc = 0;
        for (int64_t n = 0; n < g->n; n++) {
            const float *p = gy + (n * g->o + o) * s;
            float part = 0;
            for (int64_t i = 0; i < s; i++) part += p[i];
            acc += part;
        }
        gb[o] += (float)acc;
    }
}

static kiln_status bwd_data(kiln_ctx *ctx, const kiln_conv2d_geom *g, conv_mds *m, const float *w, const void *gyb,
                            const dnnl_memory_desc_t *gys, float *gx, bool gx_acc, const void **gy_used,
                            const dnnl_memory_desc_t **gy_used_md)
{
    const_dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = conv_prim(ctx, g, m, 'd', false, &pd);
    if (!prim) return KILN_STATUS_BACKEND;
    const dnnl_memory_desc_t *gxs = PD_MD(pd, dnnl_query_diff_src_md), *ws = PD_MD(pd, dnnl_query_weights_md),
                             *gyw = PD_MD(pd, dnnl_query_diff_dst_md);
    void *gyp = kiln__cdnn_as(ctx, OP, gys, gyb, gyw);
    if (!gyp) return KILN_STATUS_NOMEM;
    *gy_used = gyp, *gy_used_md = gyw;
    void *wb = kiln__cdnn_as(ctx, OP, &m->w_u, w, ws);
    if (!wb) return KILN_STATUS_NOMEM;
    bool direct = !gx_acc && dnnl_memory_desc_equal(gxs, &m->x_u);
    void *gxb = direct ? (void *)gx : kiln__cdnn_buf(ctx, gxs);
    if (!gxb) return KILN_STATUS_NOMEM;
    kiln__cdnn_arg a[3] = {{DNNL_ARG_DIFF_DST, gyw, gyp}, {DNNL_ARG_WEIGHTS, ws, wb}, {DNNL_ARG_DIFF_SRC, gxs, gxb}};
    kiln_status st = kiln__cdnn_run(ctx, OP, prim, 3, a);
    if (st >= 0 && !direct) st = kiln__cdnn_reorder(ctx, OP, gxs, gxb, &m->x_u, gx, gx_acc ? 1.0f : 0.0f);
    return st;
}

static kiln_status bwd_weights(kiln_ctx *ctx, const kiln_conv2d_geom *g, conv_mds *m, const float *x,
                               const void *gyb, const dnnl_memory_desc_t *gys, float *gw, float *gb)
{
    const_dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = conv_prim(ctx, g, m, 'w', gb != NULL, &pd);
    if (!prim) return KILN_STATUS_BACKEND;
    const dnnl_memory_desc_t *xs = PD_MD(pd, dnnl_query_src_md), *gws = PD_MD(pd, dnnl_query_diff_weights_md),
                             *gyw = PD_MD(pd, dnnl_query_diff_dst_md);
    void *xb = kiln__cdnn_as(ctx, OP, &m->x_u, x, xs);
    void *gyp = xb ? kiln__cdnn_as(ctx, OP, gys, gyb, gyw) : NULL;
    void *gwb = gyp ? kiln__cdnn_buf(ctx, gws) : NULL;
    float *gbb = gwb && gb ? kiln_step_alloc(ctx, (size_t)m->b_u.dims[0] * sizeof(float)) : NULL;
    if (!gwb || (gb && !gbb)) return KILN_STATUS_NOMEM; /* or a reorder failure: the message says which */
    kiln__cdnn_arg a[4] = {{DNNL_ARG_SRC, xs, xb}, {DNNL_ARG_DIFF_DST, gyw, gyp}, {DNNL_ARG_DIFF_WEIGHTS, gws, gwb},
                           {DNNL_ARG_DIFF_BIAS, &m->b_u, gbb}};
    kiln_status st = kiln__cdnn_run(ctx, OP, prim, gb ? 4 : 3, a);
    if (st >= 0) st = kiln__cdnn_reorder(ctx, OP, gws, gwb, &m->w_u, gw, 1.0f);
    if (st >= 0 && gb)
        for (int64_t o = 0; o < m->b_u.dims[0]; o++) gb[o] += gbb[o];
    return st;
}

kiln_status kiln__cpu_conv2d_bwd(kiln_ctx *ctx, const kiln_conv2d_geom *g, const float *x,
                                 const float *w, const float *gy, float *gx, bool gx_acc, float *gw,
                                 float *gb)
{
    if (!gx && !gw && !gb) return KILN_STATUS_OK;
    conv_mds m;
    conv_mds_init(g, &m);
    kiln_status st = KILN_STATUS_OK;
    kiln_mark mark = kiln_step_mark(ctx);
    /* gy in the layout the first primitive wanted; the second reuses it when it agrees. */
    const void *gyb = gy;
    const dnnl_memory_desc_t *gys = &m.y_u;
    if (gx) st = bwd_data(ctx, g, &m, w, gy, &m.y_u, gx, gx_acc, &gyb, &gys);
    if (st >= 0 && gw) st = bwd_weights(ctx, g, &m, x, gyb, gys, gw, gb);
    else if (st >= 0 && gb) bias_grad(ctx, g, gy, gb);
    kiln_step_rewind(ctx, mark);
    return st;
}

/* ---- reference ---------------------------------------------------------------------------- */

/* The reference on channels-last data: relay x (and gy, gx) through NCHW copies. */
static kiln_status ref_nhwc(kiln_ctx *ctx, const kiln_conv2d_geom *g, const float *x, const float *w,
                            const float *b, float *y, const float *gy, float *gx, bool gx_acc, float *gw,
                            float *gb)
{
    kiln_conv2d_geom p = *g;
    p.nhwc = 0;
    const int64_t hw = g->h * g->w, ohw = g->oh * g->ow, nx = g->n * g->c * hw, ny = g->n * g->o * ohw;
    kiln_mark mark = kiln_step_mark(ctx);
    float *xc = kiln_step_alloc(ctx, (size_t)nx * sizeof *xc), *yc = kiln_step_alloc(ctx, (size_t)ny * sizeof *yc);
    float *gxc = gx ? kiln_step_alloc(ctx, (size_t)nx * sizeof *gxc) : NULL;
    kiln_status st = KILN_STATUS_NOMEM;
    if (!xc || !yc || (gx && !gxc)) goto done;
    kiln__nhwc_relayout(x, xc, g->n, g->c, hw, false);
    if (y) { /* forward */
        st = kiln__ref_conv2d_fwd(ctx, &p, xc, w, b, yc);
        if (st >= 0) kiln__nhwc_relayout(yc, y, g->n, g->o, ohw, true);
        goto done;
    }
    kiln__nhwc_relayout(gy, yc, g->n, g->o, ohw, false);
    if (gxc && gx_acc) kiln__nhwc_relayout(gx, gxc, g->n, g->c, hw, false);
    st = kiln__ref_conv2d_bwd(ctx, &p, xc, w, yc, gxc, gx_acc, gw, gb);
    if (st >= 0 && gx) kiln__nhwc_relayout(gxc, gx, g->n, g->c, hw, true);
done:
    kiln_step_rewind(ctx, mark);
    return st;
}

kiln_status kiln__ref_conv2d_fwd(kiln_ctx *ctx, const kiln_conv2d_geom *g, const float *x,
                                 const float *w, const float *b, float *y)
{
    if (g->nhwc) return ref_nhwc(ctx, g, x, w, b, y, NULL, NULL, false, NULL, NULL);
    int64_t cg = g->c / g->groups, og = g->o / g->groups;
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t o = 0; o < g->o; o++) {
            int64_t grp = o / og;
            for (int64_t i = 0; i < g->oh; i++)
                for (int64_t j = 0; j < g->ow; j++) {
                    double acc = b ? b[o] : 0.0;
                    for (int64_t c = 0; c < cg; c++)
                        for (int64_t p = 0; p < g->kh; p++) {
                            int64_t ih = i * g->sh - g->ph + p * g->dh;
                            if (ih < 0 || ih >= g->h) continue;
                            for (int64_t q = 0; q < g->kw; q++) {
                                int64_t iw = j * g->sw - g->pw + q * g->dw;
                                if (iw < 0 || iw >= g->w) continue;
                                acc += (double)x[((n * g->c + grp * cg + c) * g->h + ih) * g->w + iw] *
                                       w[((o * cg + c) * g->kh + p) * g->kw + q];
                            }
                        }
                    y[((n * g->o + o) * g->oh + i) * g->ow + j] = (float)acc;
                }
        }
    return KILN_STATUS_OK;
}

kiln_status kiln__ref_conv2d_bwd(kiln_ctx *ctx, const kiln_conv2d_geom *g, const float *x,
                                 const float *w, const float *gy, float *gx, bool gx_acc,
                                 float *gw, float *gb)
{
    if (g->nhwc) return ref_nhwc(ctx, g, x, w, NULL, NULL, gy, gx, gx_acc, gw, gb);
    int64_t cg = g->c / g->groups, og = g->o / g->groups;
    int64_t nx = g->n * g->c * g->h * g->w, nw = g->o * cg * g->kh * g->kw;
    kiln_mark mark = kiln_step_mark(ctx);
    /* Scatter in double, then add once: the reference must not lose precision. */
    double *dx = gx ? kiln_step_alloc(ctx, (size_t)nx * sizeof(double)) : NULL;
    double *dw = gw ? kiln_step_alloc(ctx, (size_t)nw * sizeof(double)) : NULL;
    if ((gx && !dx) || (gw && !dw)) {
        kiln_step_rewind(ctx, mark);
        return KILN_STATUS_NOMEM;
    }
    if (dx) memset(dx, 0, (size_t)nx * sizeof(double));
    if (dw) memset(dw, 0, (size_t)nw * sizeof(double));
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t o = 0; o < g->o; o++) {
            int64_t grp = o / og;
            double bacc = 0;
            for (int64_t i = 0; i < g->oh; i++)
                for (int64_t j = 0; j < g->ow; j++) {
                    double d = gy[((n * g->o + o) * g->oh + i) * g->ow + j];
                    bacc += d;
                    for (int64_t c = 0; c < cg; c++)
                        for (int64_t p = 0; p < g->kh; p++) {
                            int64_t ih = i * g->sh - g->ph + p * g->dh;
                            if (ih < 0 || ih >= g->h) continue;
                            for (int64_t q = 0; q < g->kw; q++) {
                                int64_t iw = j * g->sw - g->pw + q * g->dw;
                                if (iw < 0 || iw >= g->w) continue;
                                int64_t xi = ((n * g->c + grp * cg + c) * g->h + ih) * g->w + iw;
                                int64_t wi = ((o * cg + c) * g->kh + p) * g->kw + q;
                                if (dx) dx[xi] += d * w[wi];
                                if (dw) dw[wi] += d * x[xi];
                            }
                        }
                }
            if (gb) gb[o] += (float)bacc;
        }
    for (int64_t i = 0; dx && i < nx; i++) gx[i] = (float)((gx_acc ? gx[i] : 0.0) + dx[i]);
    for (int64_t i = 0; dw && i < nw; i++) gw[i] = (float)(gw[i] + dw[i]);
    kiln_step_rewind(ctx, mark);
    return KILN_STATUS_OK;
}
