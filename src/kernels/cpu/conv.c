/* CPU kernels of the conv family: the two kernel tables (oneDNN-backed and reference) and
 * the small oneDNN helpers that conv2d.c, batchnorm.c and pool*.c share: run a primitive
 * with its scratchpad in the step arena, reorder between layouts (optionally adding into
 * the destination, which is how backward kernels accumulate gradients). */
#define KILN_CONV_CPU_INTERNAL
#include "kernels/conv.h"
#include "kernels/eltwise.h"

#include <string.h>

/* CPU kernels, defined in conv2d.c, batchnorm.c, pool.c and pool_adaptive.c. */
kiln_status kiln__cpu_conv2d_fwd(kiln_ctx *, const kiln_conv2d_geom *, const float *, const float *,
                                 const float *, float *);
kiln_status kiln__cpu_conv2d_bwd(kiln_ctx *, const kiln_conv2d_geom *, const float *, const float *,
                                 const float *, float *, bool, float *, float *);
kiln_status kiln__cpu_batch_norm_fwd(kiln_ctx *, const kiln_bn_geom *, bool, float, const float *,
                                     const float *, const float *, float *, float *, float *);
kiln_status kiln__cpu_batch_norm_bwd(kiln_ctx *, const kiln_bn_geom *, bool, float, const float *,
                                     const float *, const float *, const float *, const float *,
                                     float *, bool, float *, float *);
kiln_status kiln__cpu_max_pool2d_fwd(kiln_ctx *, const kiln_pool2d_geom *, const float *, float *,
                                     void **);
kiln_status kiln__cpu_max_pool2d_bwd(kiln_ctx *, const kiln_pool2d_geom *, const float *,
                                     const void *, const float *, float *, bool);
kiln_status kiln__cpu_avg_pool2d_fwd(kiln_ctx *, const kiln_pool2d_geom *, const float *, float *);
kiln_status kiln__cpu_avg_pool2d_bwd(kiln_ctx *, const kiln_pool2d_geom *, const float *, float *,
                                     bool);
kiln_status kiln__cpu_adaptive_avg_pool2d_fwd(kiln_ctx *, const kiln_pool2d_geom *, const float *,
                                              float *);
kiln_status kiln__cpu_adaptive_avg_pool2d_bwd(kiln_ctx *, const kiln_pool2d_geom *, const float *,
                                              float *, bool);
kiln_status kiln__cpu_adaptive_max_pool2d_fwd(kiln_ctx *, const kiln_pool2d_geom *, const float *,
                                              float *, void **);
kiln_status kiln__cpu_adaptive_max_pool2d_bwd(kiln_ctx *, const kiln_pool2d_geom *, const float *,
                                              const void *, const float *, float *, bool);

const kiln_conv_kernels kiln__cpu_conv = {
    .conv2d_fwd = kiln__cpu_conv2d_fwd,
    .conv2d_bwd = kiln__cpu_conv2d_bwd,
    .batch_norm_fwd = kiln__cpu_batch_norm_fwd,
    .batch_norm_bwd = kiln__cpu_batch_norm_bwd,
    .batch_norm_running = kiln__batch_norm_running,
    .max_pool2d_fwd = kiln__cpu_max_pool2d_fwd,
    .max_pool2d_bwd = kiln__cpu_max_pool2d_bwd,
    .avg_pool2d_fwd = kiln__cpu_avg_pool2d_fwd,
    .avg_pool2d_bwd = kiln__cpu_avg_pool2d_bwd,
    .adaptive_avg_pool2d_fwd = kiln__cpu_adaptive_avg_pool2d_fwd,
    .adaptive_avg_pool2d_bwd = kiln__cpu_adaptive_avg_pool2d_bwd,
    .adaptive_max_pool2d_fwd = kiln__cpu_adaptive_max_pool2d_fwd,
    .adaptive_max_pool2d_bwd = kiln__cpu_adaptive_max_pool2d_bwd,
};

const kiln_conv_kernels kiln__ref_conv = {
    .conv2d_fwd = kiln__ref_conv2d_fwd,
    .conv2d_bwd = kiln__ref_conv2d_bwd,
    .batch_norm_fwd = kiln__ref_batch_norm_fwd,
    .batch_norm_bwd = kiln__ref_batch_norm_bwd,
    .batch_norm_running = kiln__batch_norm_running,
    .max_pool2d_fwd = kiln__ref_max_pool2d_fwd,
    .max_pool2d_bwd = kiln__ref_max_pool2d_bwd,
    .avg_pool2d_fwd = kiln__ref_avg_pool2d_fwd,
    .avg_pool2d_bwd = kiln__ref_avg_pool2d_bwd,
    .adaptive_avg_pool2d_fwd = kiln__ref_adaptive_avg_pool2d_fwd,
    .adaptive_avg_pool2d_bwd = kiln__ref_adaptive_avg_pool2d_bwd,
    .adaptive_max_pool2d_fwd = kiln__ref_adaptive_max_pool2d_fwd,
    .adaptive_max_pool2d_bwd = kiln__ref_adaptive_max_pool2d_bwd,
};

/* ---- oneDNN helpers --------------------------------------------------------------------- */

dnnl_primitive_attr_t kiln__cdnn_attr(void)
{
    dnnl_primitive_attr_t attr = NULL;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success) return NULL;
    if (dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) != dnnl_success) {
        dnnl_primitive_attr_destroy(attr);
        return NULL;
    }
    return attr;
}

dnnl_memory_desc_t kiln__cdnn_md(int ndims, const int64_t *dims, dnnl_format_tag_t tag)
{
    dnnl_memory_desc_t md;
    dnnl_dims_t d;
    for (int i = 0; i < ndims; i++) d[i] = dims[i];
    if (dnnl_memory_desc_init_by_tag(&md, ndims, d, dnnl_f32, tag) != dnnl_success)
        memset(&md, 0, sizeof md); /* a zero md makes the primitive creation fail with a message */
    return md;
}

void *kiln__cdnn_buf(kiln_ctx *ctx, const dnnl_memory_desc_t *md)
{
    size_t bytes = dnnl_memory_desc_get_size(md);
    return kiln_step_alloc(ctx, bytes ? bytes : 64);
}

const char *kiln__cdnn_impl(const_dnnl_primitive_desc_t pd)
{
    const char *impl = "?";
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success) return "?";
    return impl;
}

#define MAX_ARGS 12

kiln_status kiln__cdnn_run(kiln_ctx *ctx, const char *op, dnnl_primitive_t prim, int n,
                           const kiln__cdnn_arg *args)
{
    KILN_ASSERT(n < MAX_ARGS);
    dnnl_engine_t eng = kiln__dnnl_engine(ctx);
    dnnl_exec_arg_t ea[MAX_ARGS];
    int k = 0;
    kiln_status st = KILN_STATUS_OK;
    const_dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t s = dnnl_primitive_get_primitive_desc(prim, &pd);
    const char *what = "dnnl_primitive_get_primitive_desc";
    kiln_mark mark = kiln_step_mark(ctx);
    if (s != dnnl_success) goto done;
    what = "dnnl_memory_create";
    for (int i = 0; i < n; i++, k++) {
        ea[k].arg = args[i].arg;
        if ((s = dnnl_memory_create(&ea[k].memory, args[i].md, eng, args[i].ptr)) != dnnl_success) goto done;
    }
    const dnnl_memory_desc_t *spmd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (spmd && dnnl_memory_desc_get_size(spmd) > 0) {
        void *sp = kiln__cdnn_buf(ctx, spmd);
        if (!sp) {
            st = KILN_STATUS_NOMEM;
            goto done;
        }
        ea[k].arg = DNNL_ARG_SCRATCHPAD;
        if ((s = dnnl_memory_create(&ea[k].memory, spmd, eng, sp)) != dnnl_success) goto done;
        k++;
    }
    what = "dnnl_primitive_execute";
    if ((s = dnnl_primitive_execute(prim, kiln__dnnl_stream(ctx), k, ea)) != dnnl_success) goto done;
    s = dnnl_stream_wait(kiln__dnnl_stream(ctx));
done:
    for (int i = 0; i < k; i++) dnnl_memory_destroy(ea[i].memory);
    kiln_step_rewind(ctx, mark);
    if (s != dnnl_success)
        return kiln__err(KILN_STATUS_BACKEND, "%s: oneDNN %s (%s) failed: %s", op, what,
                         pd ? kiln__cdnn_impl(pd) : "?", kiln__dnnl_status_str(s));
    return st;
}

kiln_status kiln__cdnn_exec(kiln_ctx *ctx, const char *op, const_dnnl_primitive_desc_t pd, int n,
                            const kiln__cdnn_arg *args)
{
    dnnl_primitive_t prim = NULL;
    dnnl_status_t s = dnnl_primitive_create(&prim, pd);
    if (s != dnnl_success)
        return kiln__err(KILN_STATUS_BACKEND, "%s: oneDNN dnnl_primitive_create (%s) failed: %s", op,
                         kiln__cdnn_impl(pd), kiln__dnnl_status_str(s));
    kiln_status st = kiln__cdnn_run(ctx, op, prim, n, args);
    dnnl_primitive_destroy(prim);
    return st;
}

/* The cache key of a reorder. */
typedef struct reorder_key {
    char tag[4];
    float beta;
    dnnl_memory_desc_t src, dst;
} reorder_key;

kiln_status kiln__cdnn_reorder(kiln_ctx *ctx, const char *op, const dnnl_memory_desc_t *src_md,
                               const void *src, const dnnl_memory_desc_t *dst_md, void *dst,
                               float beta)
{
    if (dnnl_memory_desc_equal(src_md, dst_md) && src_md->data_type == dnnl_f32 && (beta == 0.0f || beta == 1.0f)) {
        /* same layout (e.g. nhwc gradients): a copy or an add; oneDNN's reorder takes its
         * slow generic path ("simple:any") for that */
        int64_t n = (int64_t)(dnnl_memory_desc_get_size(src_md) / sizeof(float));
        if (beta == 0.0f) {
            memcpy(dst, src, (size_t)n * sizeof(float));
            return KILN_STATUS_OK;
        }
        kiln_tensor vx, vd;
        kiln_tensor_wrap(&vx, KILN_DTYPE_F32, 1, &n, (void *)src);
        kiln_tensor_wrap(&vd, KILN_DTYPE_F32, 1, &n, dst);
        return kiln__cpu_axpy(ctx, 1.0f, &vx, &vd);
    }
    reorder_key key;
    memset(&key, 0, sizeof key);
    memcpy(key.tag, "ro", 2);
    key.beta = beta;
    key.src = *src_md;
    key.dst = *dst_md;
    dnnl_primitive_t prim = kiln__cdnn_cached(ctx, &key, sizeof key);
    kiln__cdnn_arg a[2] = {{DNNL_ARG_FROM, src_md, (void *)src}, {DNNL_ARG_TO, dst_md, dst}};
    if (prim) return kiln__cdnn_run(ctx, op, prim, 2, a);
    dnnl_engine_t eng = kiln__dnnl_engine(ctx);
    dnnl_primitive_attr_t attr = kiln__cdnn_attr();
    if (!attr) return kiln__err(KILN_STATUS_BACKEND, "%s: oneDNN attribute creation failed", op);
    dnnl_status_t s = dnnl_success;
    if (beta != 0.0f) {
        dnnl_post_ops_t po = NULL;
        s = dnnl_post_ops_create(&po);
        if (s == dnnl_success) s = dnnl_post_ops_append_sum(po, beta);
        if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(attr, po);
        if (po) dnnl_post_ops_destroy(po);
    }
    dnnl_primitive_desc_t pd = NULL;
    if (s == dnnl_success) s = dnnl_reorder_primitive_desc_create(&pd, src_md, eng, dst_md, eng, attr);
    dnnl_primitive_attr_destroy(attr);
    if (s != dnnl_success)
        return kiln__err(KILN_STATUS_BACKEND, "%s: oneDNN reorder creation failed: %s", op,
                         kiln__dnnl_status_str(s));
    prim = kiln__cdnn_keep(ctx, op, &key, sizeof key, pd);
    dnnl_primitive_desc_destroy(pd);
    return prim ? kiln__cdnn_run(ctx, op, prim, 2, a) : KILN_STATUS_BACKEND;
}

void *kiln__cdnn_as(kiln_ctx *ctx, const char *op, const dnnl_memory_desc_t *have, const void *ptr,
                    const dnnl_memory_desc_t *want)
{
    if (dnnl_memory_desc_equal(have, want)) return (void *)ptr;
    void *buf = kiln__cdnn_buf(ctx, want);
    if (!buf) return NULL;
    if (kiln__cdnn_reorder(ctx, op, have, ptr, want, buf, 0.0f) < 0) return NULL;
    return buf;
}

void kiln__nhwc_relayout(const float *src, float *dst, int64_t n, int64_t c, int64_t s, bool to_nhwc)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < c; k++)
            for (int64_t p = 0; p < s; p++) {
                const int64_t nchw = (i * c + k) * s + p, nhwc = (i * s + p) * c + k;
                if (to_nhwc) dst[nhwc] = src[nchw];
                else dst[nchw] = src[nhwc];
            }
}
