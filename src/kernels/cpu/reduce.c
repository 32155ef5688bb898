/* CPU kernels of the eltwise family: reductions. sum_to sums x (any strides) down to a
 * keepdim-shaped y in double; max_dim and its backward.
 *
 * Determinism: the reduced index space is cut into a number of blocks that depends only on
 * the shapes (never on the thread count), each block is summed by one thread into its own
 * slot, and the slots are added in order, so results are identical for any thread count. */
#include "core/parallel.h"
#include "kernels/eltwise.h"

#include <math.h>
#include <string.h>

/* Blocks of reduced elements below this size are not split further. */
#define BLOCK_MIN 32768
#define MAX_BLOCKS 16
/* Output columns per work item when the inner dim is kept. */
#define COLS 512

typedef struct rdims {
    int n;
    int64_t shape[KILN_MAX_DIMS], stride[KILN_MAX_DIMS];
} rdims;

static int64_t rd_numel(const rdims *d)
{
    int64_t r = 1;
    for (int i = 0; i < d->n; i++) r *= d->shape[i];
    return r;
}

/* Offset of flat index e in the dims of d. */
static int64_t rd_offset(const rdims *d, int64_t e)
{
    int64_t off = 0;
    for (int i = d->n - 1; i >= 0; i--) {
        off += (e % d->shape[i]) * d->stride[i];
        e /= d->shape[i];
    }
    return off;
}

/* Sum of n elements with stride s. Contiguous runs are added in 8 float lanes (which the
 * compiler vectorizes) for at most 32 steps, then flushed into a double: fast, and the
 * order depends only on n, never on alignment or threads. */
static double sum_span(const float *x, int64_t s, int64_t n)
{
    double acc = 0;
    int64_t i = 0;
    if (s == 1) {
        while (n - i >= 8) {
            float l[8] = {0};
            int64_t steps = (n - i) / 8 < 32 ? (n - i) / 8 : 32, end = i + steps * 8;
            for (; i < end; i += 8)
                for (int k = 0; k < 8; k++) l[k] += x[i + k];
            acc += (((double)l[0] + l[1]) + ((double)l[2] + l[3])) + (((double)l[4] + l[5]) + ((double)l[6] + l[7]));
        }
    }
    for (; i < n; i++) acc += x[i * s];
    return acc;
}

/* Sum of x over flat indices [e0, e1) of the reduced dims r (inner dim = r's last). */
static double sum_range(const float *x, const rdims *r, int64_t e0, int64_t e1)
{
    if (r->n == 0) return e1 > e0 ? x[0] : 0.0;
    int nd = r->n;
    int64_t len = r->shape[nd - 1], idx[KILN_MAX_DIMS], off = 0, rem = e0;
    for (int i = nd - 1; i >= 0; i--) {
        idx[i] = rem % r->shape[i];
        rem /= r->shape[i];
        off += idx[i] * r->stride[i];
    }
    double s = 0;
    int64_t e = e0;
    while (e < e1) {
        int64_t n = len - idx[nd - 1];
        if (n > e1 - e) n = e1 - e;
        s += sum_span(x + off, r->stride[nd - 1], n);
        e += n;
        if (e >= e1) break;
        off -= idx[nd - 1] * r->stride[nd - 1];
        idx[nd - 1] = 0;
        for (int i = nd - 2; i >= 0; i--) {
            idx[i]++;
            off += r->stride[i];
            if (idx[i] < r->shape[i]) break;
            off -= r->stride[i] * r->shape[i];
            idx[i] = 0;
        }
    }
    return s;
}

static int n_blocks(int64_t items, int64_t work_per_item)
{
    if (items >= MAX_BLOCKS) return 1;
    int64_t nb = work_per_item / BLOCK_MIN;
    if (nb < 1) nb = 1;
    if (nb > MAX_BLOCKS) nb = MAX_BLOCKS;
    return (int)nb;
}

static void store(float *y, int64_t i, double s, double scale, bool acc)
{
    float v = (float)(s * scale);
    if (acc) y[i] += v; else y[i] = v;
}

kiln_status kiln__cpu_sum_to(kiln_ctx *ctx, const kiln_tensor *x, double scale, kiln_tensor *y, bool accumulate)
{
    KILN_ASSERT(x->ndim == y->ndim && kiln_is_contiguous(y));
    /* kept dims k (x strides; y is contiguous over them in order) and reduced dims r */
    rdims k = {0}, r = {0};
    bool inner_kept = false;
    for (int i = 0; i < x->ndim; i++) {
        int64_t len = x->shape[i];
        KILN_ASSERT(y->shape[i] == len || y->shape[i] == 1);
        if (len == 1) continue;
        bool kept = y->shape[i] == len;
        rdims *d = kept ? &k : &r;
        bool adjacent = inner_kept == kept && (k.n + r.n) > 0;
        if (adjacent && d->stride[d->n - 1] == x->stride[i] * len) {
            d->shape[d->n - 1] *= len;
            d->stride[d->n - 1] = x->stride[i];
        } else {
            d->shape[d->n] = len;
            d->stride[d->n] = x->stride[i];
            d->n++;
        }
        inner_kept = kept;
    }
    const float *xp = x->data;
    float *yp = y->data;
    int64_t O = rd_numel(&k), R = rd_numel(&r);
    if (O == 0) return KILN_STATUS_OK;
    if (R == 0) { /* empty sum: 0 (times scale, so an empty mean is NaN as in torch) */
        for (int64_t o = 0; o < O; o++) store(yp, o, 0.0, scale, accumulate);
        return KILN_STATUS_OK;
    }

    if (!inner_kept || k.n == 0) {
        /* each output is a sum over the reduced dims, whose inner dim is innermost in x */
        int nb = n_blocks(O, R);
        int64_t items = O * nb;
        double *part = nb > 1 ? kiln__malloc((size_t)items * sizeof *part) : NULL;
        if (nb > 1 && !part) return kiln__err(KILN_STATUS_NOMEM, "sum: out of memory");
        KILN_PAR_LOOP(kiln__par_threads(ctx, O * R), for (int64_t it = 0; it < items; it++) {
            int64_t o = it / nb, j = it % nb;
            double s = sum_range(xp + rd_offset(&k, o), &r, R * j / nb, R * (j + 1) / nb);
            if (nb > 1) part[it] = s;
            else store(yp, o, s, scale, accumulate);
        });
        if (nb > 1) {
            for (int64_t o = 0; o < O; o++) {
                double s = 0;
                for (int j = 0; j < nb; j++) s += part[o * nb + j];
                store(yp, o, s, scale, accumulate);
            }
            kiln__free(part, (size_t)items * sizeof *part);
        }
        return KILN_STATUS_OK;
    }

    /* inner dim kept: accumulate rows of up to COLS outputs over the reduced dims */
    int64_t L = k.shape[k.n - 1], sL = k.stride[k.n - 1];
    k.n--;
    int64_t P = rd_numel(&k), ncb = (L + COLS - 1) / COLS;
    int nb = n_blocks(P * ncb, R * (L < COLS ? L : COLS));
    int64_t items = P * ncb * nb;
    size_t pbytes = (size_t)items * COLS * sizeof(double);
    double *part = nb > 1 ? kiln__malloc(pbytes) : NULL;
    if (nb > 1 && !part) return kiln__err(KILN_STATUS_NOMEM, "sum: out of memory");
    KILN_PAR_LOOP(kiln__par_threads(ctx, O * R), for (int64_t it = 0; it < items; it++) {
        int64_t p = it / (ncb * nb), c = (it / nb) % ncb, j = it % nb;
        int64_t c0 = c * COLS, cw = L - c0 < COLS ? L - c0 : COLS;
        double acc[COLS];
        for (int64_t i = 0; i < cw; i++) acc[i] = 0;
        const float *base = xp + rd_offset(&k, p) + c0 * sL;
        for (int64_t e = R * j / nb, e1 = R * (j + 1) / nb; e < e1; e++) {
            const float *row = base + rd_offset(&r, e);
            if (sL == 1) {
                KILN__OMP("omp simd") for (int64_t i = 0; i < cw; i++) acc[i] += row[i];
            } else {
                for (int64_t i = 0; i < cw; i++) acc[i] += row[i * sL];
            }
        }
        if (nb > 1) memcpy(part + it * COLS, acc, (size_t)cw * sizeof *acc);
        else for (int64_t i = 0; i < cw; i++) store(yp, p * L + c0 + i, acc[i], scale, accumulate);
    });
    if (nb > 1) {
        for (int64_t p = 0; p < P; p++)
            for (int64_t col = 0; col < L; col++) {
                int64_t c = col / COLS;
                double s = 0;
                for (int j = 0; j < nb; j++) s += part[((p * ncb + c) * nb + j) * COLS + col % COLS];
                store(yp, p * L + col, s, scale, accumulate);
            }
        kiln__free(part, pbytes);
    }
    return KILN_STATUS_OK;
}

/* ---- max over one dim ----------------------------------------------------------------- */

typedef struct max_arg {
    const kiln__iter *it;
    const float *x;
    float *y;
    int64_t *idx;
    int64_t n, sd; /* length and x stride of the reduced dim */
} max_arg;

#define MAX_BLOCK 64

static void max_seg(void *arg, const int64_t *off, int64_t m)
{
    max_arg *u = arg;
    int last = u->it->ndim - 1;
    int64_t sx = u->it->stride[0][last], sy = u->it->stride[1][last], si = u->it->stride[2][last];
    const float *x = u->x + off[0];
    float *y = u->y + off[1];
    int64_t *idx = u->idx + off[2];
    int64_t n = u->n, sd = u->sd;
    if (m == 1) {
        /* one output: scan its run; !(v <= b) is "v larger or NaN", and the first NaN
         * ends the scan */
        for (int64_t j = 0; j < m; j++) {
            const float *p = x + j * sx;
            float b = p[0];
            int64_t bi = 0;
            if (!isnan(b))
                for (int64_t q = 1; q < n; q++) {
                    float v = p[q * sd];
                    if (!(v <= b)) {
                        b = v;
                        bi = q;
                        if (isnan(v)) break;
                    }
                }
            y[j * sy] = b;
            idx[j * si] = bi;
        }
        return;
    }
    /* sweep blocks of neighbouring outputs together: independent running maxima, updated
     * without branches (a NaN best, b != b, is never replaced), so the CPU overlaps them
     * (3-5x faster than scanning one output at a time, even when dim is innermost) */
    for (int64_t j0 = 0; j0 < m; j0 += MAX_BLOCK) {
        int64_t w = m - j0 < MAX_BLOCK ? m - j0 : MAX_BLOCK;
        float b[MAX_BLOCK];
        int64_t bi[MAX_BLOCK];
        for (int64_t j = 0; j < w; j++) {
            b[j] = x[(j0 + j) * sx];
            bi[j] = 0;
        }
        for (int64_t q = 1; q < n; q++) {
            const float *p = x + q * sd + j0 * sx;
            for (int64_t j = 0; j < w; j++) {
                float v = p[j * sx], c = b[j];
                int take = !(v <= c) & (c == c);
                b[j] = take ? v : c;
                bi[j] = take ? q : bi[j];
            }
        }
        for (int64_t j = 0; j < w; j++) {
            y[(j0 + j) * sy] = b[j];
            idx[(j0 + j) * si] = bi[j];
        }
    }
}

kiln_status kiln__cpu_max_dim(kiln_ctx *ctx, const kiln_tensor *x, int dim, kiln_tensor *y, kiln_tensor *idx)
{
    KILN_ASSERT(dim >= 0 && dim < x->ndim && x->shape[dim] > 0);
    kiln_tensor xv = *x; /* x seen in the output shape: the first element along dim */
    xv.shape[dim] = 1;
    const kiln_tensor *ops[3] = {&xv, y, idx};
    kiln__iter it;
    kiln__iter_init(&it, 3, ops);
    max_arg u = {.it = &it, .x = x->data, .y = y->data, .idx = idx->data, .n = x->shape[dim], .sd = x->stride[dim]};
    kiln__iter_run(ctx, &it, max_seg, &u);
    return KILN_STATUS_OK;
}

typedef struct maxb_arg {
    const kiln__iter *it;
    const float *gy;
    const int64_t *idx;
    float *gx;
    int64_t sd;
} maxb_arg;

static void maxb_seg(void *arg, const int64_t *off, int64_t m)
{
    maxb_arg *u = arg;
    int last = u->it->ndim - 1;
    int64_t sg = u->it->stride[0][last], si = u->it->stride[1][last], sx = u->it->stride[2][last];
    const float *gy = u->gy + off[0];
    const int64_t *idx = u->idx + off[1];
    float *gx = u->gx + off[2];
    for (int64_t j = 0; j < m; j++) gx[j * sx + idx[j * si] * u->sd] += gy[j * sg];
}

kiln_status kiln__cpu_max_dim_bwd(kiln_ctx *ctx, const kiln_tensor *gy, const kiln_tensor *idx, int dim,
                                  kiln_tensor *gx)
{
    kiln_tensor gv = *gx;
    gv.shape[dim] = 1;
    const kiln_tensor *ops[3] = {gy, idx, &gv};
    kiln__iter it;
    kiln__iter_init(&it, 3, ops);
    maxb_arg u = {.it = &it, .gy = gy->data, .idx = idx->data, .gx = gx->data, .sd = gx->stride[dim]};
    kiln__iter_run(ctx, &it, maxb_seg, &u);
    return KILN_STATUS_OK;
}
