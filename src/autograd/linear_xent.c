/* kiln_linear_cross_entropy: the cross-entropy of the logits x w^T + b without ever holding them
 * whole (a language model's decoder: 2,240 positions x 20,000 classes = 179 MB of logits, as
 * much again for their gradient). The rows of x go through in chunks: each chunk's logits
 * (rows, out) are made in one scratch buffer by linear's bias fill + GEMM and reduced by the
 * cross-entropy kernel to the loss and the per-row max and log-sum-exp, which is all the forward
 * keeps ((N, 2) floats). The backward makes each chunk's logits again, turns them in place into
 * g * (softmax - target) (the cross-entropy backward kernel) and adds gx += G w, gw += G^T x,
 * gb += column sums of G. The scratch lives between an arena mark and its rewind inside each
 * pass, so at most one (rows, out) block exists at a time. Kernels: ctx->backend->dense (gemm,
 * fill_rows, col_sum, index_check, xent_fwd, xent_bwd), the same as kiln_linear and
 * kiln_cross_entropy use. */
#include "autograd/tape.h"
#include "kernels/dense.h"
#include "kiln/ops.h"

#include <string.h>

#define DK(ctx) ((ctx)->backend->dense)

/* chunk_rows 0: as few chunks as keep each one's logits under about this many floats (32 MB), the
 * rows shared evenly between them (a multiple of 16 each): GEMMs of a few hundred rows run near the
 * speed of one over all rows (dW += G^T x in particular, which reads and writes all of dW per
 * chunk), while 128-row chunks cost the decoder's three GEMMs about a third more */
#define AUTO_CHUNK_FLOATS ((int64_t)1 << 23)

static int64_t auto_chunk(int64_t n, int64_t out)
{
    if (n <= 0) return 1;
    int64_t per = AUTO_CHUNK_FLOATS / (out > 0 ? out : 1), chunks = (n + per - 1) / (per > 0 ? per : 1);
    int64_t rows = (n + chunks - 1) / chunks;
    rows = (rows + 15) / 16 * 16;
    return rows < n ? rows : n;
}

typedef struct lxe_saved {
    kiln_xent_params p;
    int64_t n, in, out, chunk; /* rows of x, in_features, classes, rows per chunk */
    const int64_t *target;     /* (n) checked copy */
    const float *stat;         /* (n, 2) max and log sum exp(logit - max) per row */
    double count;              /* rows not ignored */
} lxe_saved;

/* logits (r, out) of rows [r0, r0 + r) into buf: b then += x w^T, as kiln_linear */
static kiln_status chunk_logits(kiln_ctx *ctx, const lxe_saved *s, const float *x, const float *w, const float *b,
                                int64_t r0, int64_t r, float *buf)
{
    if (b) DK(ctx)->fill_rows(ctx, b, r, s->out, buf);
    return DK(ctx)->gemm(ctx, false, true, r, s->out, s->in, 1.0f, x + r0 * s->in, s->in, w, s->in, b ? 1.0f : 0.0f,
                         buf, s->out);
}

static kiln_status lxe_bwd(kiln_ctx *ctx, kiln_node *nd)
{
    const lxe_saved *s = nd->saved;
    kiln_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2];
    bool gx_acc = false;
    kiln_tensor *gx = kiln__grad_fresh(ctx, x, &gx_acc); /* rows written once each: no zero fill */
    kiln_tensor *gw = kiln__grad(ctx, w), *gb = kiln__grad(ctx, b);
    if ((x->requires_grad && !gx) || (w->requires_grad && !gw) || (b && b->requires_grad && !gb))
        return KILN_STATUS_NOMEM;
    if (!gx && !gw && !gb) return KILN_STATUS_OK;
    /* upstream gradient per row: one scalar (divided by the count for MEAN) or (n) for NONE */
    const float *gy = nd->out[0]->grad->data;
    float scalar = 0.0f;
    const float *g = gy;
    int64_t gs = 1;
    if (s->p.reduction != KILN_REDUCTION_NONE) {
        scalar = s->p.reduction == KILN_REDUCTION_MEAN ? (float)(gy[0] / s->count) : gy[0];
        g = &scalar;
        gs = 0;
    }
    const float *X = x->data, *W = w->data, *B = b ? b->data : NULL;
    kiln_mark mk = kiln_step_mark(ctx);
    float *buf = kiln_step_alloc(ctx, (size_t)(s->chunk * (s->out ? s->out : 1)) * sizeof(float)); /* (chunk, out) */
    if (!buf) return KILN_STATUS_NOMEM;
    kiln_status st = KILN_STATUS_OK;
    for (int64_t r0 = 0; r0 < s->n && st >= 0; r0 += s->chunk) {
        int64_t r = s->n - r0 < s->chunk ? s->n - r0 : s->chunk;
        st = chunk_logits(ctx, s, X, W, B, r0, r, buf);
        if (st < 0) break;
        /* buf (r, out) = g * (softmax - (1-eps) onehot - eps/out), 0 on ignored rows */
        DK(ctx)->xent_bwd(ctx, buf, s->target + r0, s->stat + 2 * r0, g + r0 * gs, gs, r, s->out, 1,
                          s->p.ignore_index, s->p.label_smoothing, buf, true);
        if (gx) /* gx rows (r, in) (+)= G (r, out) @ w (out, in) */
            st = DK(ctx)->gemm(ctx, false, false, r, s->in, s->out, 1.0f, buf, s->out, W, s->in,
                               gx_acc ? 1.0f : 0.0f, (float *)gx->data + r0 * s->in, s->in);
        if (st >= 0 && gw) /* gw (out, in) += G^T (out, r) @ x rows (r, in) */
            st = DK(ctx)->gemm(ctx, true, false, s->out, s->in, r, 1.0f, buf, s->out, X + r0 * s->in, s->in, 1.0f,
                               gw->data, s->in);
        if (st >= 0 && gb) DK(ctx)->col_sum(ctx, buf, r, s->out, gb->data);
    }
    kiln_step_rewind(ctx, mk);
    return st;
}

kiln_tensor *kiln_linear_cross_entropy(kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b,
                                       kiln_tensor *target, const kiln_xent_params *p, int64_t chunk_rows)
{
    static const char *op = "linear_cross_entropy";
    KILN_IN(x);
    KILN_IN(w);
    KILN_IN(target);
    kiln_xent_params d = kiln_xent_default_params();
    if (!p) p = &d;
    char sx[128], sw[128], sb[128], st_[128];
    if (kiln__check_f32(op, x, "x") < 0 || kiln__check_f32(op, w, "w") < 0) return NULL;
    if (b && kiln__check_f32(op, b, "b") < 0) return NULL;
    if (target->dtype != KILN_DTYPE_I64)
        return kiln__errp(KILN_STATUS_INVALID, "%s: target must be i64 class indices, got %s", op,
                          kiln_dtype_name(target->dtype));
    if (!(p->label_smoothing >= 0.0f && p->label_smoothing <= 1.0f))
        return kiln__errp(KILN_STATUS_INVALID, "%s: label_smoothing %g is outside [0, 1]", op,
                          (double)p->label_smoothing);
    if (p->reduction != KILN_REDUCTION_MEAN && p->reduction != KILN_REDUCTION_SUM &&
        p->reduction != KILN_REDUCTION_NONE)
        return kiln__errp(KILN_STATUS_INVALID, "%s: unknown reduction %d", op, (int)p->reduction);
    if (chunk_rows < 0)
        return kiln__errp(KILN_STATUS_INVALID, "%s: chunk_rows %lld is negative", op, (long long)chunk_rows);
    if (x->ndim < 1) return kiln__errp(KILN_STATUS_INVALID, "%s: x must have at least 1 dim, got a scalar", op);
    if (w->ndim != 2)
        return kiln__errp(KILN_STATUS_INVALID, "%s: w must be 2-d (out_features, in_features), got %s", op,
                          kiln_shape_str(w, sw, sizeof sw));
    int64_t in = x->shape[x->ndim - 1], out = w->shape[0];
    if (w->shape[1] != in)
        return kiln__errp(KILN_STATUS_INVALID, "%s: w has shape %s, expected in_features %lld to match x %s", op,
                          kiln_shape_str(w, sw, sizeof sw), (long long)in, kiln_shape_str(x, sx, sizeof sx));
    if (b && (b->ndim != 1 || b->shape[0] != out))
        return kiln__errp(KILN_STATUS_INVALID, "%s: b has shape %s, expected (%lld,) to match w %s", op,
                          kiln_shape_str(b, sb, sizeof sb), (long long)out, kiln_shape_str(w, sw, sizeof sw));
    /* target: x's leading dims */
    bool ok = target->ndim == x->ndim - 1;
    for (int i = 0; ok && i < target->ndim; i++) ok = target->shape[i] == x->shape[i];
    if (!ok)
        return kiln__errp(KILN_STATUS_INVALID, "%s: target has shape %s, expected x's leading dims (x %s)", op,
                          kiln_shape_str(target, st_, sizeof st_), kiln_shape_str(x, sx, sizeof sx));
    x = kiln_contiguous(ctx, x);
    w = kiln_contiguous(ctx, w);
    target = kiln_contiguous(ctx, target);
    KILN_IN(x);
    KILN_IN(w);
    KILN_IN(target);
    if (b && !(b = kiln_contiguous(ctx, b))) return NULL;
    lxe_saved s = {.p = *p, .in = in, .out = out, .n = kiln_numel(target)};
    s.chunk = chunk_rows ? chunk_rows : auto_chunk(s.n, out);
    if (s.chunk > s.n) s.chunk = s.n > 0 ? s.n : 1;
    /* targets copied into the arena: the backward must not read a caller's batch buffer */
    int64_t *t = kiln_step_alloc(ctx, (size_t)(s.n ? s.n : 1) * sizeof *t), kept = 0;
    KILN_IN(t);
    int64_t bad = DK(ctx)->index_check(ctx, target->data, false, s.n, out, true, p->ignore_index, t, &kept);
    if (bad >= 0)
        return kiln__errp(KILN_STATUS_INVALID, "%s: target %lld at position %lld is out of range for %lld classes "
                          "(w %s)", op, (long long)t[bad], (long long)bad, (long long)out,
                          kiln_shape_str(w, sw, sizeof sw));
    s.target = t;
    s.count = (double)kept;
    float *stat = kiln_step_alloc(ctx, (size_t)(2 * s.n + 1) * sizeof(float)); /* (n, 2) */
    KILN_IN(stat);
    s.stat = stat;
    kiln_tensor *y = p->reduction == KILN_REDUCTION_NONE ? kiln_empty(ctx, KILN_DTYPE_F32, target->ndim, target->shape)
                                                          : kiln_empty(ctx, KILN_DTYPE_F32, 0, NULL); /* (...) or () */
    KILN_IN(y);
    /* scratch from here to the rewind: the chunk's logits, and the per-row losses of a reduced loss */
    kiln_mark mk = kiln_step_mark(ctx);
    float *loss = p->reduction == KILN_REDUCTION_NONE ? y->data
                                                      : kiln_step_alloc(ctx, (size_t)(s.n ? s.n : 1) * sizeof(float));
    float *buf = kiln_step_alloc(ctx, (size_t)(s.chunk * (out ? out : 1)) * sizeof(float)); /* (chunk, out) */
    if (!loss || !buf) {
        kiln_step_rewind(ctx, mk);
        return NULL;
    }
    const float *X = x->data, *W = w->data, *B = b ? b->data : NULL;
    double sum = 0.0; /* chunk sums in row order */
    for (int64_t r0 = 0; r0 < s.n; r0 += s.chunk) {
        int64_t r = s.n - r0 < s.chunk ? s.n - r0 : s.chunk;
        if (chunk_logits(ctx, &s, X, W, B, r0, r, buf) < 0) {
            kiln_step_rewind(ctx, mk);
            return NULL;
        }
        sum += DK(ctx)->xent_fwd(ctx, buf, t + r0, r, out, 1, p->ignore_index, p->label_smoothing, loss + r0,
                                 stat + 2 * r0);
    }
    kiln_step_rewind(ctx, mk);
    if (p->reduction != KILN_REDUCTION_NONE) /* MEAN over nothing: NaN, as PyTorch */
        *(float *)y->data = (float)(p->reduction == KILN_REDUCTION_MEAN ? sum / s.count : sum);
    kiln_tensor *ins[4] = {x, w, b, target};
    kiln_status st;
    kiln_node *n = kiln__record(ctx, op, lxe_bwd, 4, ins, 1, &y, sizeof s, &st);
    if (st < 0) return NULL;
    if (n) memcpy(n->saved, &s, sizeof s);
    return y;
}
