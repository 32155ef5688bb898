/* 2-D max and average pooling kernels: oneDNN pooling on kiln's plain NCHW layout or on
 * channels-last NHWC (g->nhwc, no reorders), and the reference loops (PyTorch's
 * definitions) that the tests compare against; the loops read either layout in place.
 *
 * Geometry: oneDNN takes explicit left/right padding; the right padding is whatever makes
 * the last window end where PyTorch's does: more than the user's padding in ceil mode,
 * negative when the last window stops short of the input (rows oneDNN then ignores).
 * Average pooling that counts padding divides by KH*KW in oneDNN but by the window clipped
 * to [-P, H+P) in PyTorch; they differ only when a ceil-mode window passes H+P, and then
 * the OpenMP loop below (same code as the reference) is used instead. */
#define KILN_CONV_CPU_INTERNAL
#include "core/parallel.h"
#include "kernels/conv.h"

#include <math.h>
#include <string.h>

/* Work of one pooling output (or input, for the adaptive bins and the backward) in the
 * units of src/core/parallel.h: a window of several elements. */
#define POOL_WORK 8

#define OP "pool2d"

typedef struct pool_mds {
    dnnl_memory_desc_t x, y; /* nchw, or nhwc when g->nhwc */
    dnnl_dims_t st, k, dil, pl, pr;
} pool_mds;

static void pool_mds_init(const kiln_pool2d_geom *g, pool_mds *m)
{
    int64_t xd[4] = {g->n, g->c, g->h, g->w}, yd[4] = {g->n, g->c, g->oh, g->ow};
    dnnl_format_tag_t tag = g->nhwc ? dnnl_nhwc : dnnl_nchw;
    m->x = kiln__cdnn_md(4, xd, tag);
    m->y = kiln__cdnn_md(4, yd, tag);
    m->st[0] = g->sh, m->st[1] = g->sw;
    m->k[0] = g->kh, m->k[1] = g->kw;
    m->dil[0] = 0, m->dil[1] = 0;
    m->pl[0] = g->ph, m->pl[1] = g->pw;
    m->pr[0] = (g->oh - 1) * g->sh + g->kh - g->h - g->ph;
    m->pr[1] = (g->ow - 1) * g->sw + g->kw - g->w - g->pw;
}

static kiln_status pool_fwd_pd(kiln_ctx *ctx, pool_mds *m, dnnl_alg_kind_t alg, bool train,
                               dnnl_primitive_desc_t *pd)
{
    dnnl_pooling_v2_desc_t d;
    KILN_DNNL(OP, dnnl_pooling_v2_forward_desc_init(&d, train ? dnnl_forward_training : dnnl_forward_inference,
                                                    alg, &m->x, &m->y, m->st, m->k, m->dil, m->pl, m->pr));
    dnnl_primitive_attr_t attr = kiln__cdnn_attr();
    dnnl_status_t s = dnnl_primitive_desc_create(pd, &d, attr, kiln__dnnl_engine(ctx), NULL);
    dnnl_primitive_attr_destroy(attr);
    if (s != dnnl_success)
        return kiln__err(KILN_STATUS_BACKEND, "pool2d: oneDNN forward creation failed: %s", kiln__dnnl_status_str(s));
    return KILN_STATUS_OK;
}

kiln_status kiln__cdnn_pool_fwd(kiln_ctx *ctx, const kiln_pool2d_geom *g, dnnl_alg_kind_t alg,
                                const float *x, float *y, void **keep)
{
    pool_mds m;
    pool_mds_init(g, &m);
    bool ws = alg == dnnl_pooling_max && keep;
    dnnl_primitive_desc_t pd = NULL;
    kiln_status st = pool_fwd_pd(ctx, &m, alg, ws, &pd);
    if (st < 0) return st;
    kiln__cdnn_arg a[3] = {{DNNL_ARG_SRC, &m.x, (void *)x}, {DNNL_ARG_DST, &m.y, y}, {0}};
    if (ws) {
        /* The workspace outlives this call (the backward reads it): no mark/rewind here. */
        const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_workspace_md, 0);
        void *wb = kiln__cdnn_buf(ctx, wmd);
        if (!wb) {
            dnnl_primitive_desc_destroy(pd);
            return KILN_STATUS_NOMEM;
        }
        a[2] = (kiln__cdnn_arg){DNNL_ARG_WORKSPACE, wmd, wb};
        *keep = wb;
    } else if (keep) {
        *keep = NULL;
    }
    st = kiln__cdnn_exec(ctx, OP, pd, ws ? 3 : 2, a);
    dnnl_primitive_desc_destroy(pd);
    return st;
}

kiln_status kiln__cdnn_pool_bwd(kiln_ctx *ctx, const kiln_pool2d_geom *g, dnnl_alg_kind_t alg,
                                const void *keep, const float *gy, float *gx, bool gx_acc)
{
    pool_mds m;
    pool_mds_init(g, &m);
    bool ws = alg == dnnl_pooling_max;
    KILN_ASSERT(!ws || keep);
    dnnl_primitive_desc_t fpd = NULL, pd = NULL;
    kiln_status st = pool_fwd_pd(ctx, &m, alg, true, &fpd);
    if (st < 0) return st;
    dnnl_pooling_v2_desc_t d;
    dnnl_status_t s = dnnl_pooling_v2_backward_desc_init(&d, alg, &m.x, &m.y, m.st, m.k, m.dil, m.pl, m.pr);
    dnnl_primitive_attr_t attr = kiln__cdnn_attr();
    if (s == dnnl_success) s = dnnl_primitive_desc_create(&pd, &d, attr, kiln__dnnl_engine(ctx), fpd);
    dnnl_primitive_attr_destroy(attr);
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(fpd, dnnl_query_workspace_md, 0);
    if (s != dnnl_success) {
        dnnl_primitive_desc_destroy(fpd);
        return kiln__err(KILN_STATUS_BACKEND, "pool2d: oneDNN backward creation failed: %s", kiln__dnnl_status_str(s));
    }
    kiln_mark mark = kiln_step_mark(ctx);
    int64_t total = g->n * g->c * g->h * g->w;
    float *gxb = gx_acc ? kiln_step_alloc(ctx, (size_t)total * sizeof(float)) : gx;
    if (!gxb) {
        st = KILN_STATUS_NOMEM;
        goto done;
    }
    kiln__cdnn_arg a[3] = {{DNNL_ARG_DIFF_DST, &m.y, (void *)gy}, {DNNL_ARG_DIFF_SRC, &m.x, gxb},
                           {DNNL_ARG_WORKSPACE, wmd, (void *)keep}};
    st = kiln__cdnn_exec(ctx, OP, pd, ws ? 3 : 2, a);
    if (st >= 0 && gx_acc) {
        KILN_PAR_FOR(ctx, total)
        for (int64_t i = 0; i < total; i++) gx[i] += gxb[i];
    }
done:
    kiln_step_rewind(ctx, mark);
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_desc_destroy(fpd);
    return st;
}

/* ---- loops: the reference, and the CPU path where oneDNN's definition differs ------------ *
 * Shared with pool_adaptive.c: adaptive = PyTorch's adaptive bins instead of kernel, stride
 * and padding (see conv.h). */

typedef struct win {
    int64_t start, end; /* [start, end) clipped to the input */
    int64_t span;       /* the divisor span with count_include_pad: clipped to [-P, size+P) only */
} win;

/* Window of output index i along one axis of size in, out outputs. */
static inline win axis_window(bool adaptive, int64_t i, int64_t s, int64_t p, int64_t k, int64_t size, int64_t out)
{
    if (adaptive) {
        int64_t a = kiln__adaptive_start(i, size, out), b = kiln__adaptive_end(i, size, out);
        return (win){a, b, b - a};
    }
    int64_t a = i * s - p, b = a + k;
    if (b > size + p) b = size + p;
    return (win){a < 0 ? 0 : a, b > size ? size : b, b - a};
}

static inline win row_window(const kiln_pool2d_geom *g, bool adaptive, int64_t i)
{
    return axis_window(adaptive, i, g->sh, g->ph, g->kh, g->h, g->oh);
}

static inline win col_window(const kiln_pool2d_geom *g, bool adaptive, int64_t j)
{
    return axis_window(adaptive, j, g->sw, g->pw, g->kw, g->w, g->ow);
}

/* Plane pl (= n*C + c) of an image with s positions a plane: its first element; the step
 * between its elements is plane_step (1 in NCHW, C in NHWC). */
static inline int64_t plane_at(const kiln_pool2d_geom *g, int64_t pl, int64_t s)
{
    return g->nhwc ? pl / g->c * s * g->c + pl % g->c : pl * s;
}

static inline int64_t plane_step(const kiln_pool2d_geom *g) { return g->nhwc ? g->c : 1; }

static void plane_zero(float *p, int64_t s, int64_t step)
{
    if (step == 1) memset(p, 0, (size_t)s * sizeof(float));
    else
        for (int64_t e = 0; e < s; e++) p[e * step] = 0;
}

void kiln__pool_max_loop(const kiln_pool2d_geom *g, bool adaptive, const float *x, float *y, int32_t *idx,
                         const kiln_ctx *ctx)
{
    int64_t planes = g->n * g->c, hw = g->h * g->w, ohw = g->oh * g->ow, st = plane_step(g);
    KILN_PAR_FOR(ctx, POOL_WORK * planes * (adaptive ? hw : ohw))
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x + plane_at(g, pl, hw);
        float *yp = y + plane_at(g, pl, ohw);
        for (int64_t i = 0; i < g->oh; i++) {
            win r = row_window(g, adaptive, i);
            for (int64_t j = 0; j < g->ow; j++) {
                win c = col_window(g, adaptive, j);
                float best = -INFINITY;
                int64_t bi = r.start * g->w + c.start;
                for (int64_t a = r.start; a < r.end; a++)
                    for (int64_t b = c.start; b < c.end; b++) {
                        float v = xp[(a * g->w + b) * st];
                        if (v > best || isnan(v)) { /* first maximum; NaN wins, as PyTorch */
                            best = v;
                            bi = a * g->w + b;
                        }
                    }
                yp[(i * g->ow + j) * st] = best;
                if (idx) idx[pl * ohw + i * g->ow + j] = (int32_t)bi;
            }
        }
    }
}

/* gx[argmax] += gy; planes are independent so the scatter is race-free per plane. */
void kiln__pool_max_bwd_loop(const kiln_pool2d_geom *g, const int32_t *idx, const float *gy, float *gx, bool gx_acc,
                             const kiln_ctx *ctx)
{
    int64_t planes = g->n * g->c, hw = g->h * g->w, ohw = g->oh * g->ow, st = plane_step(g);
    KILN_PAR_FOR(ctx, POOL_WORK * planes * hw)
    for (int64_t pl = 0; pl < planes; pl++) {
        float *gp = gx + plane_at(g, pl, hw);
        const float *gyp = gy + plane_at(g, pl, ohw);
        if (!gx_acc) plane_zero(gp, hw, st);
        for (int64_t o = 0; o < ohw; o++) gp[idx[pl * ohw + o] * st] += gyp[o * st];
    }
}

int32_t *kiln__pool_alloc_idx(kiln_ctx *ctx, const kiln_pool2d_geom *g, void **keep)
{
    int32_t *idx = kiln_step_alloc(ctx, (size_t)(g->n * g->c * g->oh * g->ow) * sizeof(int32_t));
    *keep = idx;
    return idx;
}

/* The divisor of a window: adaptive bins have span == end - start. */
static inline int64_t avg_div(const kiln_pool2d_geom *g, win r, win c)
{
    return g->count_include_pad ? r.span * c.span : (r.end - r.start) * (c.end - c.start);
}

void kiln__pool_avg_loop(const kiln_pool2d_geom *g, bool adaptive, const float *x, float *y, const kiln_ctx *ctx)
{
    int64_t planes = g->n * g->c, hw = g->h * g->w, ohw = g->oh * g->ow, st = plane_step(g);
    KILN_PAR_FOR(ctx, POOL_WORK * planes * (adaptive ? hw : ohw))
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x + plane_at(g, pl, hw);
        float *yp = y + plane_at(g, pl, ohw);
        for (int64_t i = 0; i < g->oh; i++) {
            win r = row_window(g, adaptive, i);
            for (int64_t j = 0; j < g->ow; j++) {
                win c = col_window(g, adaptive, j);
                double acc = 0;
                for (int64_t a = r.start; a < r.end; a++)
                    for (int64_t b = c.start; b < c.end; b++) acc += xp[(a * g->w + b) * st];
                yp[(i * g->ow + j) * st] = (float)(acc / (double)avg_div(g, r, c));
            }
        }
    }
}

void kiln__pool_avg_bwd_loop(const kiln_pool2d_geom *g, bool adaptive, const float *gy, float *gx, bool gx_acc,
                             const kiln_ctx *ctx)
{
    int64_t planes = g->n * g->c, hw = g->h * g->w, ohw = g->oh * g->ow, st = plane_step(g);
    KILN_PAR_FOR(ctx, POOL_WORK * planes * hw)
    for (int64_t pl = 0; pl < planes; pl++) {
        float *gp = gx + plane_at(g, pl, hw);
        const float *gyp = gy + plane_at(g, pl, ohw);
        if (!gx_acc) plane_zero(gp, hw, st);
        for (int64_t i = 0; i < g->oh; i++) {
            win r = row_window(g, adaptive, i);
            for (int64_t j = 0; j < g->ow; j++) {
                win c = col_window(g, adaptive, j);
                float d = gyp[(i * g->ow + j) * st] / (float)avg_div(g, r, c);
                for (int64_t a = r.start; a < r.end; a++)
                    for (int64_t b = c.start; b < c.end; b++) gp[(a * g->w + b) * st] += d;
            }
        }
    }
}

/* ---- CPU table entries ---------------------------------------------------------------------- */

kiln_status kiln__cpu_max_pool2d_fwd(kiln_ctx *ctx, const kiln_pool2d_geom *g, const float *x,
                                     float *y, void **keep)
{
    return kiln__cdnn_pool_fwd(ctx, g, dnnl_pooling_max, x, y, keep);
}

kiln_status kiln__cpu_max_pool2d_bwd(kiln_ctx *ctx, const kiln_pool2d_geom *g, const float *x,
                                     const void *keep, const float *gy, float *gx, bool gx_acc)
{
    (void)x;
    return kiln__cdnn_pool_bwd(ctx, g, dnnl_pooling_max, keep, gy, gx, gx_acc);
}

/* Whether oneDNN's average matches PyTorch's for g (see the top of the file). */
static bool avg_fits_dnnl(const kiln_pool2d_geom *g)
{
    if (!g->count_include_pad) return true;
    return (g->oh - 1) * g->sh + g->kh <= g->h + 2 * g->ph && (g->ow - 1) * g->sw + g->kw <= g->w + 2 * g->pw;
}

static dnnl_alg_kind_t avg_alg(const kiln_pool2d_geom *g)
{
    return g->count_include_pad ? dnnl_pooling_avg_include_padding : dnnl_pooling_avg_exclude_padding;
}

kiln_status kiln__cpu_avg_pool2d_fwd(kiln_ctx *ctx, const kiln_pool2d_geom *g, const float *x,
                                     float *y)
{
    if (!avg_fits_dnnl(g)) {
        kiln__pool_avg_loop(g, false, x, y, ctx);
        return KILN_STATUS_OK;
    }
    return kiln__cdnn_pool_fwd(ctx, g, avg_alg(g), x, y, NULL);
}

kiln_status kiln__cpu_avg_pool2d_bwd(kiln_ctx *ctx, const kiln_pool2d_geom *g, const float *gy,
                                     float *gx, bool gx_acc)
{
    if (!avg_fits_dnnl(g)) {
        kiln__pool_avg_bwd_loop(g, false, gy, gx, gx_acc, ctx);
        return KILN_STATUS_OK;
    }
    return kiln__cdnn_pool_bwd(ctx, g, avg_alg(g), NULL, gy, gx, gx_acc);
}

/* ---- reference -------------------------------------------------------------------------------- */

kiln_status kiln__ref_max_pool2d_fwd(kiln_ctx *ctx, const kiln_pool2d_geom *g, const float *x,
                                     float *y, void **keep)
{
    int32_t *idx = NULL;
    if (keep && !(idx = kiln__pool_alloc_idx(ctx, g, keep))) return KILN_STATUS_NOMEM;
    kiln__pool_max_loop(g, false, x, y, idx, NULL);
    return KILN_STATUS_OK;
}

kiln_status kiln__ref_max_pool2d_bwd(kiln_ctx *ctx, const kiln_pool2d_geom *g, const float *x,
                                     const void *keep, const float *gy, float *gx, bool gx_acc)
{
    (void)ctx, (void)x;
    KILN_ASSERT(keep);
    kiln__pool_max_bwd_loop(g, keep, gy, gx, gx_acc, NULL);
    return KILN_STATUS_OK;
}

kiln_status kiln__ref_avg_pool2d_fwd(kiln_ctx *ctx, const kiln_pool2d_geom *g, const float *x,
                                     float *y)
{
    (void)ctx;
    kiln__pool_avg_loop(g, false, x, y, NULL);
    return KILN_STATUS_OK;
}

kiln_status kiln__ref_avg_pool2d_bwd(kiln_ctx *ctx, const kiln_pool2d_geom *g, const float *gy,
                                     float *gx, bool gx_acc)
{
    (void)ctx;
    kiln__pool_avg_bwd_loop(g, false, gy, gx, gx_acc, NULL);
    return KILN_STATUS_OK;
}
