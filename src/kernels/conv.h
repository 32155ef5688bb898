/* Kernel table of the conv family (see src/kernels/backend.h): 2-D convolution, batch
 * normalisation and 2-D pooling (max, average, adaptive average/max), forward and backward.
 *
 * Conventions: all data is f32 and contiguous, images NCHW. Kernels do no validation
 * beyond KILN_ASSERT; the autograd layer (src/autograd/conv.c, norm.c, pool.c) checks user
 * input and fills the geometry structs below. Backward kernels ADD into the parameter
 * gradients (gw, gb) and into gx when gx_acc is true; when gx_acc is false they may
 * overwrite gx (the caller passes false only for a freshly zeroed gradient). Any gradient
 * pointer may be NULL (not needed). Temporary memory comes from the step arena and is
 * returned before the kernel returns; `keep` memory (max pooling) lives until the rewind.
 *
 * Two tables share these signatures: kiln__cpu_conv and kiln__ref_conv (plain loops, one
 * output element at a time, written from the PyTorch definitions) that tests compare
 * against. kiln__cpu_conv uses oneDNN for convolution (the formats and algorithm oneDNN
 * prefers), max/avg pooling and evenly binned adaptive pooling; OpenMP loops for batch
 * norm (faster than oneDNN's on NCHW, see cpu/batchnorm.c), uneven adaptive bins, and the
 * average-pooling case where oneDNN's divisor differs from PyTorch's (cpu/pool.c). */
#ifndef KILN_KERNELS_CONV_H
#define KILN_KERNELS_CONV_H

#include "kernels/backend.h"

/* One 2-D convolution. x (N, C, H, W), w (O, C/groups, KH, KW), b (O), y (N, O, OH, OW).
 * Dilation as PyTorch (1 = dense); OH = (H + 2*PH - DH*(KH-1) - 1)/SH + 1, likewise OW. */
typedef struct kiln_conv2d_geom {
    int64_t n, c, h, w;
    int64_t o, kh, kw;
    int64_t oh, ow;
    int64_t sh, sw, ph, pw, dh, dw;
    int64_t groups;
    int64_t nhwc; /* 1: x, y, gx, gy are channels-last, i.e. stored (N, H, W, C) */
} kiln_conv2d_geom;

/* Batch norm over x seen as (N, C, S): S = H*W for 2d, L for 1d (N, C, L), 1 for (N, C).
 * cl: x, y, gx and gy are channels-last instead, i.e. row-major (N*S, C).
 * relu: batch norm then ReLU in one op, y = max(0, bn(x)) (NaN stays NaN, as torch.relu).
 * The backward masks gy by bn(x) > 0 as it reads it, recomputing bn(x) from x with the
 * forward's own per-channel scale and shift arithmetic, so the mask is bit for bit
 * PyTorch's threshold_backward of the forward's y (gy where y > 0, else 0); the
 * statistics' gradients (train) and gw, gb then use the masked gy. b: the forward's bias
 * (C), NULL for 0; read only by the backward when relu (the mask needs it and the
 * backward has no bias argument).
 *
 * Synchronised batch norm (SyncBatchNorm, train mode only; both NULL otherwise) runs each
 * kernel twice around an all-reduce of per-channel f64 sums (src/autograd/norm.c):
 * sums_out (2C), the pass that only reduces: the forward writes this rank's sum(x) (C) then
 * sum(x^2) (C) and neither mean, var nor y; the backward (gx NULL) writes sum(gy) (C) then
 * sum(gy * (x - mean)) (C) (gy masked when relu) and adds gw, gb from them as usual.
 * sums (2C) and count: the same sums over every rank and the values per channel they cover
 * (M). The forward then normalises with mean = sum / M and the biased var =
 * sum(x^2) / M - mean^2, written to mean, var; the backward computes gx with the statistics'
 * gradients from them and M (gw, gb must be NULL: the first pass added them). */
typedef struct kiln_bn_geom {
    int64_t n, c, s;
    bool cl;
    bool relu;
    const float *b;
    double *sums_out;
    const double *sums;
    double count;
} kiln_bn_geom;

/* SyncBatchNorm's first forward pass: stores channel c's sum(x), sum(x^2) into g->sums_out
 * from sd = sum(x - k) and sd2 = sum((x - k)^2) over its m values, k a shift (the local mean
 * or any value near it, so that sd2 keeps its precision). */
static inline void kiln__bn_put_sums(const kiln_bn_geom *g, int64_t c, double m, double k, double sd, double sd2)
{
    g->sums_out[c] = sd + m * k;
    g->sums_out[g->c + c] = sd2 + k * (2.0 * sd + m * k);
}

/* One 2-D pooling. x (N, C, H, W) -> y (N, C, OH, OW). Window i along H covers input rows
 * [i*SH - PH, i*SH - PH + KH) clipped to the input; the caller computes OH/OW (ceil mode
 * included). Adaptive pooling uses only n, c, h, w, oh, ow (bins as PyTorch:
 * start = floor(i*H/OH), end = ceil((i+1)*H/OH)). nhwc applies to every pooling kernel and
 * loop below; the loops' max indices stay (N, C, OH, OW)-ordered offsets within one (H, W)
 * plane in both layouts, so a forward and a backward of the same table agree. */
typedef struct kiln_pool2d_geom {
    int64_t n, c, h, w;
    int64_t oh, ow;
    int64_t kh, kw, sh, sw, ph, pw;
    bool count_include_pad; /* avg: divisor counts padding inside [-PH, H+PH) as PyTorch */
    int64_t nhwc;           /* 1: x, y, gx, gy are channels-last, i.e. stored (N, H, W, C) */
} kiln_pool2d_geom;

struct kiln_conv_kernels {
    /* y (N, O, OH, OW) = conv(x, w) + b; b may be NULL. */
    kiln_status (*conv2d_fwd)(kiln_ctx *ctx, const kiln_conv2d_geom *g, const float *x,
                              const float *w, const float *b, float *y);
    /* From gy (N, O, OH, OW): gx (N, C, H, W), gw (O, C/groups, KH, KW) +=, gb (O) +=. */
    kiln_status (*conv2d_bwd)(kiln_ctx *ctx, const kiln_conv2d_geom *g, const float *x,
                              const float *w, const float *gy, float *gx, bool gx_acc, float *gw,
                              float *gb);

    /* train: mean, var (C) receive the batch mean and biased variance, y uses them.
     * eval: mean, var (C) are inputs (running stats). w, b (C) may be NULL (1 and 0). */
    kiln_status (*batch_norm_fwd)(kiln_ctx *ctx, const kiln_bn_geom *g, bool train, float eps,
                                  const float *x, const float *w, const float *b, float *mean,
                                  float *var, float *y);
    /* mean, var as used by the forward. train: statistics are functions of x (full
     * gradient); eval: constants. gw, gb (C) +=; w may be NULL (1). */
    kiln_status (*batch_norm_bwd)(kiln_ctx *ctx, const kiln_bn_geom *g, bool train, float eps,
                                  const float *x, const float *w, const float *mean,
                                  const float *var, const float *gy, float *gx, bool gx_acc,
                                  float *gw, float *gb);
    /* After a training forward, the running statistics rm, rv (C) move towards the batch's
     * mean, var (C) as PyTorch's do, in double: rm = momentum * mean + (1 - momentum) * rm,
     * rv = momentum * var * unbias + (1 - momentum) * rv (unbias = m / (m - 1), m values
     * per channel). */
    void (*batch_norm_running)(kiln_ctx *ctx, int64_t c, double momentum, double unbias, const float *mean,
                               const float *var, float *rm, float *rv);

    /* Max pooling (padding is -inf). keep: when not NULL, receives arena memory that the
     * same table's backward needs (argmax or oneDNN workspace); NULL for inference. */
    kiln_status (*max_pool2d_fwd)(kiln_ctx *ctx, const kiln_pool2d_geom *g, const float *x,
                                  float *y, void **keep);
    kiln_status (*max_pool2d_bwd)(kiln_ctx *ctx, const kiln_pool2d_geom *g, const float *x,
                                  const void *keep, const float *gy, float *gx, bool gx_acc);
    kiln_status (*avg_pool2d_fwd)(kiln_ctx *ctx, const kiln_pool2d_geom *g, const float *x,
                                  float *y);
    kiln_status (*avg_pool2d_bwd)(kiln_ctx *ctx, const kiln_pool2d_geom *g, const float *gy,
                                  float *gx, bool gx_acc);
    kiln_status (*adaptive_avg_pool2d_fwd)(kiln_ctx *ctx, const kiln_pool2d_geom *g,
                                           const float *x, float *y);
    kiln_status (*adaptive_avg_pool2d_bwd)(kiln_ctx *ctx, const kiln_pool2d_geom *g,
                                           const float *gy, float *gx, bool gx_acc);
    kiln_status (*adaptive_max_pool2d_fwd)(kiln_ctx *ctx, const kiln_pool2d_geom *g,
                                           const float *x, float *y, void **keep);
    kiln_status (*adaptive_max_pool2d_bwd)(kiln_ctx *ctx, const kiln_pool2d_geom *g,
                                           const float *x, const void *keep, const float *gy,
                                           float *gx, bool gx_acc);
};

extern const kiln_conv_kernels kiln__cpu_conv;
extern const kiln_conv_kernels kiln__ref_conv;

/* The entries of the two tables, for tests and for the CPU table's fallbacks. */
kiln_status kiln__ref_conv2d_fwd(kiln_ctx *ctx, const kiln_conv2d_geom *g, const float *x,
                                 const float *w, const float *b, float *y);
kiln_status kiln__ref_conv2d_bwd(kiln_ctx *ctx, const kiln_conv2d_geom *g, const float *x,
                                 const float *w, const float *gy, float *gx, bool gx_acc,
                                 float *gw, float *gb);
kiln_status kiln__ref_batch_norm_fwd(kiln_ctx *ctx, const kiln_bn_geom *g, bool train, float eps,
                                     const float *x, const float *w, const float *b, float *mean,
                                     float *var, float *y);
kiln_status kiln__ref_batch_norm_bwd(kiln_ctx *ctx, const kiln_bn_geom *g, bool train, float eps,
                                     const float *x, const float *w, const float *mean,
                                     const float *var, const float *gy, float *gx, bool gx_acc,
                                     float *gw, float *gb);
/* SyncBatchNorm's second forward pass (g->sums, g->count): the mean and biased variance (C)
 * of every rank's batch, for both tables. */
void kiln__batch_norm_sync_stats(const kiln_bn_geom *g, float *mean, float *var);
/* The batch_norm_running entry of both tables (a plain loop over C). */
void kiln__batch_norm_running(kiln_ctx *ctx, int64_t c, double momentum, double unbias, const float *mean,
                              const float *var, float *rm, float *rv);
kiln_status kiln__ref_max_pool2d_fwd(kiln_ctx *ctx, const kiln_pool2d_geom *g, const float *x,
                                     float *y, void **keep);
kiln_status kiln__ref_max_pool2d_bwd(kiln_ctx *ctx, const kiln_pool2d_geom *g, const float *x,
                                     const void *keep, const float *gy, float *gx, bool gx_acc);
kiln_status kiln__ref_avg_pool2d_fwd(kiln_ctx *ctx, const kiln_pool2d_geom *g, const float *x,
                                     float *y);
kiln_status kiln__ref_avg_pool2d_bwd(kiln_ctx *ctx, const kiln_pool2d_geom *g, const float *gy,
                                     float *gx, bool gx_acc);
kiln_status kiln__ref_adaptive_avg_pool2d_fwd(kiln_ctx *ctx, const kiln_pool2d_geom *g,
                                              const float *x, float *y);
kiln_status kiln__ref_adaptive_avg_pool2d_bwd(kiln_ctx *ctx, const kiln_pool2d_geom *g,
                                              const float *gy, float *gx, bool gx_acc);
kiln_status kiln__ref_adaptive_max_pool2d_fwd(kiln_ctx *ctx, const kiln_pool2d_geom *g,
                                              const float *x, float *y, void **keep);
kiln_status kiln__ref_adaptive_max_pool2d_bwd(kiln_ctx *ctx, const kiln_pool2d_geom *g,
                                              const float *x, const void *keep, const float *gy,
                                              float *gx, bool gx_acc);

/* Adaptive pooling bin [start, end) of output index i (of out) over an input of size in. */
static inline int64_t kiln__adaptive_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
static inline int64_t kiln__adaptive_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

#ifdef KILN_CONV_CPU_INTERNAL
/* ---- oneDNN helpers shared by src/kernels/cpu/conv*.c, batchnorm*.c, pool*.c ------------ */
#include "kernels/cpu/dnnl_util.h"

/* One execution argument: a oneDNN argument index, its memory description and data. */
typedef struct kiln__cdnn_arg {
    int arg;
    const dnnl_memory_desc_t *md;
    void *ptr;
} kiln__cdnn_arg;

/* A primitive attribute with user-managed scratchpad (caller destroys it); NULL on failure. */
dnnl_primitive_attr_t kiln__cdnn_attr(void);
/* Creates the primitive of pd (uncached: see kiln__cdnn_keep for the cached path), gives it a
 * scratchpad from the step arena, runs it on the context's stream and waits. */
kiln_status kiln__cdnn_exec(kiln_ctx *ctx, const char *op, const_dnnl_primitive_desc_t pd, int n,
                            const kiln__cdnn_arg *args);
/* Runs prim (e.g. from kiln__cdnn_cached) like kiln__cdnn_exec. */
kiln_status kiln__cdnn_run(kiln_ctx *ctx, const char *op, dnnl_primitive_t prim, int n,
                           const kiln__cdnn_arg *args);
/* dst = src (beta 0) or dst += src (beta 1) converting layout from src_md to dst_md. */
kiln_status kiln__cdnn_reorder(kiln_ctx *ctx, const char *op, const dnnl_memory_desc_t *src_md,
                               const void *src, const dnnl_memory_desc_t *dst_md, void *dst,
                               float beta);
/* ptr itself when want equals have, else a step-arena copy of ptr in layout want (NULL +
 * message on failure). */
void *kiln__cdnn_as(kiln_ctx *ctx, const char *op, const dnnl_memory_desc_t *have, const void *ptr,
                    const dnnl_memory_desc_t *want);
/* An arena buffer for md (NULL + message on failure). */
void *kiln__cdnn_buf(kiln_ctx *ctx, const dnnl_memory_desc_t *md);
/* batchnorm_nhwc.c: the g->cl case of the CPU batch-norm entries (batchnorm.c). */
kiln_status kiln__cpu_batch_norm_fwd_nhwc(kiln_ctx *ctx, const kiln_bn_geom *g, bool train, float eps,
                                          const float *x, const float *w, const float *b, float *mean,
                                          float *var, float *y);
kiln_status kiln__cpu_batch_norm_bwd_nhwc(kiln_ctx *ctx, const kiln_bn_geom *g, bool train, float eps,
                                          const float *x, const float *w, const float *mean,
                                          const float *var, const float *gy, float *gx, bool gx_acc,
                                          float *gw, float *gb);
/* dst = src relaid between NCHW (N, C, S) and channels-last (N, S, C): to_nhwc true NCHW ->
 * NHWC, false the other way. For the reference kernels, which run NCHW loops on copies. */
void kiln__nhwc_relayout(const float *src, float *dst, int64_t n, int64_t c, int64_t s, bool to_nhwc);
/* A plain 4-D NCHW (or any other tag) f32 description. */
dnnl_memory_desc_t kiln__cdnn_md(int ndims, const int64_t *dims, dnnl_format_tag_t tag);
/* The implementation oneDNN chose for pd ("jit:avx512_core"), for tests and tuning. */
const char *kiln__cdnn_impl(const_dnnl_primitive_desc_t pd);
/* oneDNN pooling on plain NCHW with alg dnnl_pooling_max / _avg_include_padding /
 * _avg_exclude_padding; keep as in the kernel table (max only: the workspace). */
kiln_status kiln__cdnn_pool_fwd(kiln_ctx *ctx, const kiln_pool2d_geom *g, dnnl_alg_kind_t alg,
                                const float *x, float *y, void **keep);
kiln_status kiln__cdnn_pool_bwd(kiln_ctx *ctx, const kiln_pool2d_geom *g, dnnl_alg_kind_t alg,
                                const void *keep, const float *gy, float *gx, bool gx_acc);

/* ---- pooling loops (src/kernels/cpu/pool.c): PyTorch's definitions, one plane per
 * iteration (threads: ctx's, src/core/parallel.h; ctx NULL runs on the calling thread, as
 * the reference entries do), for the reference entries and where oneDNN's definition
 * differs. adaptive: the windows are PyTorch's adaptive bins (kiln__adaptive_start/end;
 * kernel, stride and padding unused), else kernel, stride and padding; the average divides
 * by the window (with count_include_pad, clipped to [-P, size+P) only). */
void kiln__pool_max_loop(const kiln_pool2d_geom *g, bool adaptive, const float *x, float *y, int32_t *idx,
                         const kiln_ctx *ctx);
/* gx[idx] += gy (gx zeroed first unless gx_acc); idx as kiln__pool_max_loop wrote it. */
void kiln__pool_max_bwd_loop(const kiln_pool2d_geom *g, const int32_t *idx, const float *gy, float *gx, bool gx_acc,
                             const kiln_ctx *ctx);
void kiln__pool_avg_loop(const kiln_pool2d_geom *g, bool adaptive, const float *x, float *y, const kiln_ctx *ctx);
void kiln__pool_avg_bwd_loop(const kiln_pool2d_geom *g, bool adaptive, const float *gy, float *gx, bool gx_acc,
                             const kiln_ctx *ctx);
/* The max indices (N*C*OH*OW int32) in the step arena, stored in *keep; NULL when out of memory. */
int32_t *kiln__pool_alloc_idx(kiln_ctx *ctx, const kiln_pool2d_geom *g, void **keep);
#endif

#endif
