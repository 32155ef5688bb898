/* kiln_batch_norm: batch normalisation of x (N, C), (N, C, L) or (N, C, H, W) over every
 * dim but C, as one tape node (inputs x, weight, bias; output y). Train mode normalises
 * with the batch mean and biased variance and updates the running statistics in place
 * (new = (1 - momentum) * old + momentum * batch, with the unbiased variance, exactly as
 * PyTorch); eval mode uses the running statistics. The running statistics are buffers,
 * not part of the graph. A channels-last x (kiln_is_channels_last) is normalised in place
 * of its layout (NHWC kernels, y channels-last too) instead of being copied to NCHW.
 * kiln_batch_norm_relu is the same node with the ReLU folded in (kiln_bn_geom.relu): y =
 * max(0, bn(x)) written in the same pass, and a backward that masks gy as it reads it,
 * which saves the separate ReLU's output, its two passes and its gradient buffer.
 * kiln_sync_batch_norm(_relu) (SyncBatchNorm, train mode): each kernel runs twice around one
 * kiln_comm_allreduce_sum_f64, first for this rank's per-channel sums (kiln_bn_geom.sums_out),
 * then with every rank's (sums, count): forward sum(x), sum(x^2) and the count (2C + 1),
 * backward sum(gy), sum(gy * (x - mean)) (2C, skipped when x needs no gradient, which is
 * the same on every rank). Kernels: src/kernels/conv.h. */
#include "autograd/tape.h"
#include "kernels/conv.h"
#include "kiln/dist.h"
#include "kiln/ops.h"

#include <math.h>

enum { IN_X, IN_W, IN_B, N_IN };

typedef struct bn_saved {
    kiln_bn_geom g; /* g.relu: the fused op, g.b its bias */
    bool train;
    float eps;
    float *mean, *var; /* (C): the statistics the forward used (copies in eval mode) */
    kiln_comm *comm;   /* SyncBatchNorm in train mode, else NULL */
    double count;      /* values per channel over every rank (comm) */
} bn_saved;

/* SyncBatchNorm's backward: this rank's sums (gw, gb +=), the sum over ranks, then gx. */
static kiln_status bn_bwd_sync(kiln_ctx *ctx, const bn_saved *s, const kiln_tensor *x, const kiln_tensor *w,
                               const float *gy, float *gx, bool gx_acc, float *gw, float *gb)
{
    const int64_t C = s->g.c;
    double *sums = kiln_step_alloc(ctx, 2 * (size_t)C * sizeof(double)); /* sum gy (C), sum gy * (x - mean) (C) */
    if (!sums) return KILN_STATUS_NOMEM;
    kiln_bn_geom g = s->g;
    g.sums_out = sums;
    kiln_status st = ctx->backend->conv->batch_norm_bwd(ctx, &g, true, s->eps, x->data, w ? w->data : NULL, s->mean,
                                                        s->var, gy, NULL, false, gw, gb);
    if (st < 0 || !gx) return st;
    if ((st = kiln_comm_allreduce_sum_f64(s->comm, sums, 2 * (size_t)C)) < 0)
        return kiln__err_prefix(st, "sync_batch_norm backward: ");
    g = s->g;
    g.sums = sums, g.count = s->count;
    return ctx->backend->conv->batch_norm_bwd(ctx, &g, true, s->eps, x->data, w ? w->data : NULL, s->mean, s->var,
                                              gy, gx, gx_acc, NULL, NULL);
}

static kiln_status bn_bwd(kiln_ctx *ctx, kiln_node *n)
{
    bn_saved *s = n->saved;
    kiln_tensor *x = n->in[IN_X], *w = n->in[IN_W], *b = n->in[IN_B];
    const kiln_tensor *gy = n->out[0]->grad; /* like x */
    bool gx_acc; /* a fresh gradient is uninitialised: the kernel overwrites it */
    kiln_tensor *gx = kiln__grad_fresh(ctx, x, &gx_acc), *gw = kiln__grad(ctx, w), *gb = kiln__grad(ctx, b);
    if ((x->requires_grad && !gx) || (w && w->requires_grad && !gw) || (b && b->requires_grad && !gb))
        return KILN_STATUS_NOMEM;
    /* Gradients made by the tape are laid out like their tensors; one set by the user may
     * not be: the kernel then works on channels-last copies. */
    kiln_tensor *gy_k = (kiln_tensor *)gy, *gx_k = gx;
    if (s->g.cl && !kiln_is_channels_last(gy)) {
        gy_k = kiln_empty_channels_last(ctx, gy->shape);
        if (!gy_k) return KILN_STATUS_NOMEM;
        kiln_status cs = kiln__copy_into(ctx, gy_k, gy);
        if (cs < 0) return cs;
    }
    if (s->g.cl && gx && !kiln_is_channels_last(gx)) { /* only an existing grad: gx_acc */
        gx_k = kiln_empty_channels_last(ctx, gx->shape);
        if (!gx_k) return KILN_STATUS_NOMEM;
    }
    float *gxd = gx_k ? gx_k->data : NULL, *gwd = gw ? gw->data : NULL, *gbd = gb ? gb->data : NULL;
    kiln_status st = s->comm ? bn_bwd_sync(ctx, s, x, w, gy_k->data, gxd, gx_acc && gx_k == gx, gwd, gbd)
                             : ctx->backend->conv->batch_norm_bwd(ctx, &s->g, s->train, s->eps, x->data,
                                                                  w ? w->data : NULL, s->mean, s->var, gy_k->data,
                                                                  gxd, gx_acc && gx_k == gx, gwd, gbd);
    if (st == KILN_STATUS_OK && gx_k != gx)
        st = gx_acc ? kiln__add_into(ctx, gx, gx_k) : kiln__copy_into(ctx, gx, gx_k);
    return st;
}

/* INVALID + message unless t is NULL or an f32 (C) vector; contiguous required when updated
 * in place (running statistics). */
static kiln_status check_vec(const kiln_tensor *t, const char *arg, int64_t C, const kiln_tensor *x, bool inplace)
{
    if (!t) return KILN_STATUS_OK;
    if (kiln__check_f32("batch_norm", t, arg) < 0) return KILN_STATUS_INVALID;
    char st[96], sx[96];
    if (t->ndim != 1 || t->shape[0] != C)
        return kiln__err(KILN_STATUS_INVALID, "batch_norm: %s has shape %s, expected (%lld,) for x %s", arg,
                         kiln_shape_str(t, st, sizeof st), (long long)C, kiln_shape_str(x, sx, sizeof sx));
    if (inplace && !kiln_is_contiguous(t))
        return kiln__err(KILN_STATUS_INVALID, "batch_norm: %s must be contiguous (it is updated in place)", arg);
    return KILN_STATUS_OK;
}

/* SyncBatchNorm's forward statistics: this rank's sums (kernel pass 1 into sums (2C + 1)),
 * summed over ranks; g->sums, g->count set for pass 2. NULL + message on failure. */
static double *bn_sync_sums(kiln_ctx *ctx, kiln_comm *comm, kiln_bn_geom *g, float eps, const kiln_tensor *x,
                            float *mean, float *var, float *y)
{
    const int64_t C = g->c;
    double *sums = kiln_step_alloc(ctx, (2 * (size_t)C + 1) * sizeof(double)); /* sum x (C), sum x^2 (C), values */
    if (!sums) return NULL;
    g->sums_out = sums;
    kiln_status st = ctx->backend->conv->batch_norm_fwd(ctx, g, true, eps, x->data, NULL, NULL, mean, var, y);
    g->sums_out = NULL;
    if (st < 0) return NULL;
    sums[2 * C] = (double)(g->n * g->s);
    if ((st = kiln_comm_allreduce_sum_f64(comm, sums, 2 * (size_t)C + 1)) < 0) {
        kiln__err_prefix(st, "sync_batch_norm: ");
        return NULL;
    }
    if (sums[2 * C] < 2) {
        char sx[96];
        return kiln__errp(KILN_STATUS_INVALID,
                          "sync_batch_norm: expected more than 1 value per channel over the %d rank(s) when training, "
                          "x has shape %s", kiln_comm_size(comm), kiln_shape_str(x, sx, sizeof sx));
    }
    g->sums = sums, g->count = sums[2 * C];
    return sums;
}

/* kiln_batch_norm (relu false) and kiln_batch_norm_relu; comm: kiln_sync_batch_norm(_relu) */
static kiln_tensor *bn_op(kiln_ctx *ctx, kiln_comm *comm, kiln_tensor *x, kiln_tensor *weight, kiln_tensor *bias,
                          kiln_tensor *running_mean, kiln_tensor *running_var, bool train, float momentum, float eps,
                          bool relu)
{
    if (!ctx) return kiln__errp(KILN_STATUS_INVALID, "batch_norm: NULL context");
    KILN_IN(x);
    if (kiln__check_f32("batch_norm", x, "x") < 0) return NULL;
    char sx[96];
    kiln_shape_str(x, sx, sizeof sx);
    if (x->ndim < 2 || x->ndim > 4)
        return kiln__errp(KILN_STATUS_INVALID,
                          "batch_norm: x has shape %s, expected (N, C), (N, C, L) or (N, C, H, W)", sx);
    for (int i = 0; i < x->ndim; i++)
        if (x->shape[i] < 1) return kiln__errp(KILN_STATUS_INVALID, "batch_norm: x has shape %s, every dim must be >= 1", sx);
    const int64_t C = x->shape[1];
    if (check_vec(weight, "weight", C, x, false) < 0 || check_vec(bias, "bias", C, x, false) < 0 ||
        check_vec(running_mean, "running_mean", C, x, true) < 0 || check_vec(running_var, "running_var", C, x, true) < 0)
        return NULL;
    if ((running_mean == NULL) != (running_var == NULL))
        return kiln__errp(KILN_STATUS_INVALID, "batch_norm: give both running_mean and running_var, or neither");
    if (!train && !running_mean)
        return kiln__errp(KILN_STATUS_INVALID, "batch_norm: eval mode needs running_mean and running_var");
    if (!(eps >= 0) || !isfinite(momentum))
        return kiln__errp(KILN_STATUS_INVALID, "batch_norm: eps %g must be >= 0 and momentum %g finite", (double)eps,
                          (double)momentum);
    kiln_bn_geom g = {.n = x->shape[0], .c = C, .s = 1, .relu = relu};
    for (int i = 2; i < x->ndim; i++) g.s *= x->shape[i];
    const int64_t m = g.n * g.s; /* values per channel */
    const bool sync = train && comm;
    if (train && !sync && m < 2) /* sync: checked over every rank */
        return kiln__errp(KILN_STATUS_INVALID,
                          "batch_norm: expected more than 1 value per channel when training, x has shape %s", sx);

    /* channels-last (strides differ from contiguous ones): kept, g.cl */
    g.cl = x->ndim == 4 && kiln_is_channels_last(x) && !kiln_is_contiguous(x);
    kiln_tensor *in[N_IN] = {g.cl ? x : kiln_contiguous(ctx, x), weight ? kiln_contiguous(ctx, weight) : NULL,
                             bias ? kiln_contiguous(ctx, bias) : NULL};
    KILN_IN(in[IN_X]);
    if (weight) KILN_IN(in[IN_W]);
    if (bias) KILN_IN(in[IN_B]);
    if (relu && bias) g.b = in[IN_B]->data; /* the backward's mask recomputes y */
    kiln_tensor *y = g.cl ? kiln_empty_channels_last(ctx, x->shape) : kiln_empty_like(ctx, in[IN_X]); /* like x */
    float *stats = kiln_step_alloc(ctx, 2 * (size_t)C * sizeof(float)); /* mean (C), var (C) */
    if (!y || !stats) return NULL;
    float *mean = stats, *var = stats + C;
    if (!train) { /* the running statistics, copied: the backward must see these values */
        kiln_tensor mv, vv;
        if (kiln__copy_into(ctx, kiln_tensor_wrap(&mv, KILN_DTYPE_F32, 1, &C, mean), running_mean) < 0 ||
            kiln__copy_into(ctx, kiln_tensor_wrap(&vv, KILN_DTYPE_F32, 1, &C, var), running_var) < 0)
            return NULL;
    }
    kiln_bn_geom gf = g; /* sync: with every rank's sums */
    if (sync && !bn_sync_sums(ctx, comm, &gf, eps, in[IN_X], mean, var, y->data)) return NULL;
    if (ctx->backend->conv->batch_norm_fwd(ctx, &gf, train, eps, in[IN_X]->data, weight ? in[IN_W]->data : NULL,
                                           bias ? in[IN_B]->data : NULL, mean, var, y->data) < 0)
        return NULL;
    const double count = sync ? gf.count : (double)m; /* values per channel (every rank's) */
    if (train && running_mean)
        ctx->backend->conv->batch_norm_running(ctx, C, momentum, count / (count - 1), mean, var, running_mean->data,
                                               running_var->data);

    kiln_status st;
    const char *name = sync ? (relu ? "sync_batch_norm_relu" : "sync_batch_norm")
                            : relu ? "batch_norm_relu" : "batch_norm";
    kiln_node *n = kiln__record(ctx, name, bn_bwd, N_IN, in, 1, &y,
                                sizeof(bn_saved), &st);
    if (st < 0) return NULL;
    if (n)
        *(bn_saved *)n->saved = (bn_saved){.g = g, .train = train, .eps = eps, .mean = mean, .var = var,
                                           .comm = sync ? comm : NULL, .count = count};
    return y;
}

kiln_tensor *kiln_batch_norm(kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *weight, kiln_tensor *bias,
                             kiln_tensor *running_mean, kiln_tensor *running_var, bool train, float momentum,
                             float eps)
{
    return bn_op(ctx, NULL, x, weight, bias, running_mean, running_var, train, momentum, eps, false);
}

kiln_tensor *kiln_batch_norm_relu(kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *weight, kiln_tensor *bias,
                                  kiln_tensor *running_mean, kiln_tensor *running_var, bool train, float momentum,
                                  float eps)
{
    return bn_op(ctx, NULL, x, weight, bias, running_mean, running_var, train, momentum, eps, true);
}

kiln_tensor *kiln_sync_batch_norm(kiln_ctx *ctx, kiln_comm *comm, kiln_tensor *x, kiln_tensor *weight,
                                  kiln_tensor *bias, kiln_tensor *running_mean, kiln_tensor *running_var, bool train,
                                  float momentum, float eps)
{
    if (!comm) return kiln__errp(KILN_STATUS_INVALID, "sync_batch_norm: NULL communicator");
    return bn_op(ctx, comm, x, weight, bias, running_mean, running_var, train, momentum, eps, false);
}

kiln_tensor *kiln_sync_batch_norm_relu(kiln_ctx *ctx, kiln_comm *comm, kiln_tensor *x, kiln_tensor *weight,
                                       kiln_tensor *bias, kiln_tensor *running_mean, kiln_tensor *running_var,
                                       bool train, float momentum, float eps)
{
    if (!comm) return kiln__errp(KILN_STATUS_INVALID, "sync_batch_norm: NULL communicator");
    return bn_op(ctx, comm, x, weight, bias, running_mean, running_var, train, momentum, eps, true);
}
