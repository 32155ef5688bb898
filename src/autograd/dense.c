/* Dense layers with their backward: matmul (2-D and batched, batch dims broadcast as in
 * PyTorch), linear (x @ w^T + b over any leading dims) and embedding (a row gather whose
 * backward scatter-adds only the touched rows). The numerical work is in the kernel table
 * ctx->backend->dense (src/kernels/dense.h); every GEMM goes through its gemm entry. */
#include "autograd/tape.h"
#include "core/rowset.h"
#include "kernels/dense.h"
#include "kiln/ops.h"

#include <string.h>

#define DK(ctx) ((ctx)->backend->dense)

/* ---- matmul --------------------------------------------------------------------------- */

/* How a (..., M, K) @ (..., K, N) product is split into GEMMs: the broadcast batch shape
 * and, per batch dim, the element step of a and b (0 where that operand broadcasts). */
typedef struct mm_plan {
    int nbd;                     /* number of batch dims of the output */
    int64_t batch[KILN_MAX_DIMS];
    int64_t sa[KILN_MAX_DIMS], sb[KILN_MAX_DIMS];
    int64_t nbatch, m, k, n;
    bool fold; /* b has one batch and a none broadcast: one GEMM with (nbatch*m) rows */
} mm_plan;

static int mm_make_plan(const kiln_tensor *a, const kiln_tensor *b, mm_plan *p)
{
    char sa[128], sb[128];
    if (a->ndim < 2 || b->ndim < 2)
        return kiln__err(KILN_STATUS_INVALID, "matmul: a %s and b %s must both have at least 2 dims",
                         kiln_shape_str(a, sa, sizeof sa), kiln_shape_str(b, sb, sizeof sb));
    p->m = a->shape[a->ndim - 2];
    p->k = a->shape[a->ndim - 1];
    p->n = b->shape[b->ndim - 1];
    if (b->shape[b->ndim - 2] != p->k)
        return kiln__err(KILN_STATUS_INVALID, "matmul: a %s has %lld columns but b %s has %lld rows",
                         kiln_shape_str(a, sa, sizeof sa), (long long)p->k, kiln_shape_str(b, sb, sizeof sb),
                         (long long)b->shape[b->ndim - 2]);
    int na = a->ndim - 2, nb = b->ndim - 2, nd = na > nb ? na : nb;
    int64_t step_a = p->m * p->k, step_b = p->k * p->n, nba = 1, nbb = 1;
    p->nbd = nd;
    p->nbatch = 1;
    for (int i = nd - 1; i >= 0; i--) {
        int ia = i - (nd - na), ib = i - (nd - nb);
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return kiln__err(KILN_STATUS_INVALID, "matmul: batch dims of a %s and b %s do not broadcast",
                             kiln_shape_str(a, sa, sizeof sa), kiln_shape_str(b, sb, sizeof sb));
        p->batch[i] = da > db ? da : db;
        p->sa[i] = da == 1 ? 0 : step_a;
        p->sb[i] = db == 1 ? 0 : step_b;
        step_a *= da;
        step_b *= db;
        nba *= da;
        nbb *= db;
        p->nbatch *= p->batch[i];
    }
    p->fold = nbb == 1 && nba == p->nbatch;
    return 0;
}

/* Element offsets of batch bi in a and b. */
static void mm_offsets(const mm_plan *p, int64_t bi, int64_t *oa, int64_t *ob)
{
    *oa = *ob = 0;
    for (int i = p->nbd - 1; i >= 0; i--) {
        int64_t j = bi % p->batch[i];
        bi /= p->batch[i];
        *oa += j * p->sa[i];
        *ob += j * p->sb[i];
    }
}

static kiln_status matmul_bwd(kiln_ctx *ctx, kiln_node *nd)
{
    const kiln_tensor *a = nd->in[0], *b = nd->in[1], *gy = nd->out[0]->grad;
    kiln_tensor *ga = kiln__grad(ctx, nd->in[0]), *gb = kiln__grad(ctx, nd->in[1]);
    mm_plan p;
    if (mm_make_plan(a, b, &p) < 0) return KILN_STATUS_INVALID;
    const float *A = a->data, *B = b->data, *G = gy->data;
    int64_t m = p.m, k = p.k, n = p.n;
    kiln_status st = KILN_STATUS_OK;
    if (p.fold) {
        /* ga (nbatch*m, k) += gy (nbatch*m, n) @ b^T; gb (k, n) += a^T @ gy */
        if (ga) st = DK(ctx)->gemm(ctx, false, true, p.nbatch * m, k, n, 1.0f, G, n, B, n, 1.0f, ga->data, k);
        if (st >= 0 && gb)
            st = DK(ctx)->gemm(ctx, true, false, k, n, p.nbatch * m, 1.0f, A, k, G, n, 1.0f, gb->data, n);
        return st;
    }
    /* Sequential batches: a broadcast operand's gradient slice is accumulated by several
     * GEMMs in turn (beta = 1), never concurrently. */
    for (int64_t bi = 0; bi < p.nbatch && st >= 0; bi++) {
        int64_t oa, ob;
        mm_offsets(&p, bi, &oa, &ob);
        const float *g = G + bi * m * n;
        if (ga) st = DK(ctx)->gemm(ctx, false, true, m, k, n, 1.0f, g, n, B + ob, n, 1.0f, (float *)ga->data + oa, k);
        if (st >= 0 && gb)
            st = DK(ctx)->gemm(ctx, true, false, k, n, m, 1.0f, A + oa, k, g, n, 1.0f, (float *)gb->data + ob, n);
    }
    return st;
}

kiln_tensor *kiln_matmul(kiln_ctx *ctx, kiln_tensor *a, kiln_tensor *b)
{
    KILN_IN(a);
    KILN_IN(b);
    if (kiln__check_f32("matmul", a, "a") < 0 || kiln__check_f32("matmul", b, "b") < 0) return NULL;
    mm_plan p;
    if (mm_make_plan(a, b, &p) < 0) return NULL;
    a = kiln_contiguous(ctx, a);
    b = kiln_contiguous(ctx, b);
    KILN_IN(a);
    KILN_IN(b);
    int64_t shape[KILN_MAX_DIMS];
    memcpy(shape, p.batch, (size_t)p.nbd * sizeof *shape);
    shape[p.nbd] = p.m;
    shape[p.nbd + 1] = p.n;
    kiln_tensor *y = kiln_empty(ctx, KILN_DTYPE_F32, p.nbd + 2, shape); /* (batch..., M, N) */
    KILN_IN(y);
    const float *A = a->data, *B = b->data;
    float *Y = y->data;
    if (p.fold) {
        if (DK(ctx)->gemm(ctx, false, false, p.nbatch * p.m, p.n, p.k, 1.0f, A, p.k, B, p.n, 0.0f, Y, p.n) < 0)
            return NULL;
    } else {
        for (int64_t bi = 0; bi < p.nbatch; bi++) {
            int64_t oa, ob;
            mm_offsets(&p, bi, &oa, &ob);
            if (DK(ctx)->gemm(ctx, false, false, p.m, p.n, p.k, 1.0f, A + oa, p.k, B + ob, p.n, 0.0f,
                              Y + bi * p.m * p.n, p.n) < 0)
                return NULL;
        }
    }
    kiln_tensor *in[2] = {a, b};
    kiln_status st;
    kiln__record(ctx, "matmul", matmul_bwd, 2, in, 1, &y, 0, &st);
    return st < 0 ? NULL : y;
}

/* ---- linear --------------------------------------------------------------------------- */

/* Rows of x (..., in) seen as a matrix: the product of its leading dims. */
static int64_t lead_rows(const kiln_tensor *x)
{
    int64_t m = 1;
    for (int i = 0; i < x->ndim - 1; i++) m *= x->shape[i];
    return m;
}

static kiln_status linear_bwd(kiln_ctx *ctx, kiln_node *nd)
{
    const kiln_tensor *x = nd->in[0], *w = nd->in[1], *gy = nd->out[0]->grad;
    kiln_tensor *gx = kiln__grad(ctx, nd->in[0]), *gw = kiln__grad(ctx, nd->in[1]);
    kiln_tensor *gb = kiln__grad(ctx, nd->in[2]);
    int64_t out = w->shape[0], in = w->shape[1], m = lead_rows(x);
    const float *G = gy->data; /* (m, out) */
    kiln_status st = KILN_STATUS_OK;
    if (gx) /* gx (m, in) += gy (m, out) @ w (out, in) */
        st = DK(ctx)->gemm(ctx, false, false, m, in, out, 1.0f, G, out, w->data, in, 1.0f, gx->data, in);
    if (st >= 0 && gw) /* gw (out, in) += gy^T (out, m) @ x (m, in) */
        st = DK(ctx)->gemm(ctx, true, false, out, in, m, 1.0f, G, out, x->data, in, 1.0f, gw->data, in);
    if (st >= 0 && gb) DK(ctx)->col_sum(ctx, G, m, out, gb->data);
    return st;
}

kiln_tensor *kiln_linear(kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b)
{
    KILN_IN(x);
    KILN_IN(w);
    char sx[128], sw[128], sb[128];
    if (kiln__check_f32("linear", x, "x") < 0 || kiln__check_f32("linear", w, "w") < 0) return NULL;
    if (b && kiln__check_f32("linear", b, "b") < 0) return NULL;
    if (x->ndim < 1)
        return kiln__errp(KILN_STATUS_INVALID, "linear: x must have at least 1 dim, got a scalar");
    if (w->ndim != 2)
        return kiln__errp(KILN_STATUS_INVALID, "linear: w must be 2-d (out_features, in_features), got %s",
                          kiln_shape_str(w, sw, sizeof sw));
    int64_t in = x->shape[x->ndim - 1], out = w->shape[0];
    if (w->shape[1] != in)
        return kiln__errp(KILN_STATUS_INVALID, "linear: w has shape %s, expected in_features %lld to match x %s",
                          kiln_shape_str(w, sw, sizeof sw), (long long)in, kiln_shape_str(x, sx, sizeof sx));
    if (b && (b->ndim != 1 || b->shape[0] != out))
        return kiln__errp(KILN_STATUS_INVALID, "linear: b has shape %s, expected (%lld,) to match w %s",
                          kiln_shape_str(b, sb, sizeof sb), (long long)out, kiln_shape_str(w, sw, sizeof sw));
    x = kiln_contiguous(ctx, x);
    w = kiln_contiguous(ctx, w);
    KILN_IN(x);
    KILN_IN(w);
    if (b && !(b = kiln_contiguous(ctx, b))) return NULL;
    int64_t shape[KILN_MAX_DIMS];
    memcpy(shape, x->shape, (size_t)x->ndim * sizeof *shape);
    shape[x->ndim - 1] = out;
    kiln_tensor *y = kiln_empty(ctx, KILN_DTYPE_F32, x->ndim, shape); /* (..., out) */
    KILN_IN(y);
    int64_t m = lead_rows(x);
    float *Y = y->data;
    if (b) DK(ctx)->fill_rows(ctx, b->data, m, out, Y);
    /* y (m, out) = x (m, in) @ w^T (in, out) [+ y holding the bias] */
    if (DK(ctx)->gemm(ctx, false, true, m, out, in, 1.0f, x->data, in, w->data, in, b ? 1.0f : 0.0f, Y, out) < 0)
        return NULL;
    kiln_tensor *ins[3] = {x, w, b};
    kiln_status st;
    kiln__record(ctx, "linear", linear_bwd, 3, ins, 1, &y, 0, &st);
    return st < 0 ? NULL : y;
}

/* ---- embedding ------------------------------------------------------------------------ */

typedef struct emb_saved {
    const int64_t *idx; /* (n) in the step arena, checked */
    int64_t n;
} emb_saved;

static kiln_status embedding_bwd(kiln_ctx *ctx, kiln_node *nd)
{
    const emb_saved *s = nd->saved;
    kiln_tensor *w = nd->in[1];
    const kiln_tensor *gy = nd->out[0]->grad;
    kiln__rowset *r = w->rows;
    /* a parameter tracked for the sparse optimizer step learns which rows it got; a view of
     * one (its own struct, the same set) cannot say which rows of the parameter: all */
    kiln_tensor *gw = r && r->owner == w ? kiln__grad_rows(ctx, w) : kiln__grad(ctx, w);
    if (!gw) return KILN_STATUS_OK;
    if (r && r->owner == w && !r->all) DK(ctx)->rows_mark(s->idx, s->n, r->mark, r->list, &r->n);
    return DK(ctx)->embedding_bwd(ctx, s->idx, s->n, gy->data, w->shape[0], w->shape[1], gw->data);
}

kiln_tensor *kiln_embedding(kiln_ctx *ctx, kiln_tensor *idx, kiln_tensor *w)
{
    KILN_IN(idx);
    KILN_IN(w);
    char si[128], sw[128];
    if (idx->dtype != KILN_DTYPE_I64 && idx->dtype != KILN_DTYPE_I32)
        return kiln__errp(KILN_STATUS_INVALID, "embedding: idx must be i64 or i32, got %s",
                          kiln_dtype_name(idx->dtype));
    if (kiln__check_f32("embedding", w, "w") < 0) return NULL;
    if (w->ndim != 2)
        return kiln__errp(KILN_STATUS_INVALID, "embedding: w must be 2-d (num_embeddings, dim), got %s",
                          kiln_shape_str(w, sw, sizeof sw));
    if (idx->ndim + 1 > KILN_MAX_DIMS)
        return kiln__errp(KILN_STATUS_INVALID, "embedding: idx %s has too many dims",
                          kiln_shape_str(idx, si, sizeof si));
    int64_t v = w->shape[0], d = w->shape[1], n = kiln_numel(idx);
    idx = kiln_contiguous(ctx, idx);
    w = kiln_contiguous(ctx, w);
    KILN_IN(idx);
    KILN_IN(w);
    /* The indices as a checked int64 copy in the arena (I32 widened): the backward must
     * not depend on a caller's batch buffer that a loader may refill meanwhile. */
    int64_t *ix = kiln_step_alloc(ctx, (size_t)(n ? n : 1) * sizeof *ix);
    KILN_IN(ix);
    int64_t bad = DK(ctx)->index_check(ctx, idx->data, idx->dtype == KILN_DTYPE_I32, n, v, false, 0, ix, NULL);
    if (bad >= 0)
        return kiln__errp(KILN_STATUS_INVALID,
                          "embedding: index %lld at position %lld is out of range for vocab size %lld (w %s)",
                          (long long)ix[bad], (long long)bad, (long long)v, kiln_shape_str(w, sw, sizeof sw));
    int64_t shape[KILN_MAX_DIMS];
    memcpy(shape, idx->shape, (size_t)idx->ndim * sizeof *shape);
    shape[idx->ndim] = d;
    kiln_tensor *y = kiln_empty(ctx, KILN_DTYPE_F32, idx->ndim + 1, shape); /* (idx..., D) */
    KILN_IN(y);
    DK(ctx)->embedding_fwd(ctx, ix, n, w->data, d, y->data);
    kiln_tensor *in[2] = {idx, w};
    kiln_status st;
    emb_saved *s = NULL;
    kiln_node *node = kiln__record(ctx, "embedding", embedding_bwd, 2, in, 1, &y, sizeof *s, &st);
    if (st < 0) return NULL;
    if (node) {
        s = node->saved;
        s->idx = ix;
        s->n = n;
    }
    return y;
}
