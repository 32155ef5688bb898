/* The N-d strided loop behind the CPU eltwise kernels: operands of one shape with any
 * strides (stride 0 for broadcast dims) are reduced to as few dims as possible, then the
 * flat index space is cut into one contiguous range per thread (src/core/parallel.h); each thread walks its range
 * row by row, handing inner segments (one stride per operand) to a segment function. */
#include "core/parallel.h"
#include "kernels/eltwise.h"

#ifdef _OPENMP
#include <omp.h>
#endif

void kiln__iter_init(kiln__iter *it, int n_ops, const kiln_tensor *const *ops)
{
    KILN_ASSERT(n_ops >= 1 && n_ops <= KILN__ITER_MAX_OPS);
    const kiln_tensor *t0 = ops[0];
    for (int k = 1; k < n_ops; k++) KILN_ASSERT(kiln_same_shape(ops[k], t0));
    int n = 0;
    it->n_ops = n_ops;
    for (int i = 0; i < t0->ndim; i++) {
        int64_t len = t0->shape[i];
        if (len == 1) continue;
        bool merge = n > 0;
        for (int k = 0; k < n_ops && merge; k++)
            merge = it->stride[k][n - 1] == ops[k]->stride[i] * len;
        if (merge) {
            it->shape[n - 1] *= len;
            for (int k = 0; k < n_ops; k++) it->stride[k][n - 1] = ops[k]->stride[i];
        } else {
            it->shape[n] = len;
            for (int k = 0; k < n_ops; k++) it->stride[k][n] = ops[k]->stride[i];
            n++;
        }
    }
    if (n == 0) {
        it->shape[0] = 1;
        for (int k = 0; k < n_ops; k++) it->stride[k][0] = 1;
        n = 1;
    }
    it->ndim = n;
}

int64_t kiln__iter_rows(const kiln__iter *it)
{
    int64_t r = 1;
    for (int i = 0; i < it->ndim - 1; i++) r *= it->shape[i];
    return r;
}

int64_t kiln__iter_numel(const kiln__iter *it) { return kiln__iter_rows(it) * it->shape[it->ndim - 1]; }

bool kiln__iter_contiguous(const kiln__iter *it)
{
    if (it->ndim != 1) return false;
    for (int k = 0; k < it->n_ops; k++)
        if (it->stride[k][0] != 1 && it->shape[0] != 1) return false;
    return true;
}

/* Walks flat elements [e0, e1) of the loop. */
static void run_range(const kiln__iter *it, kiln__seg_fn fn, void *arg, int64_t e0, int64_t e1)
{
    int nd = it->ndim, no = it->n_ops;
    int64_t len = it->shape[nd - 1];
    int64_t idx[KILN_MAX_DIMS], off[KILN__ITER_MAX_OPS] = {0};
    int64_t rem = e0;
    for (int i = nd - 1; i >= 0; i--) {
        idx[i] = rem % it->shape[i];
        rem /= it->shape[i];
        for (int k = 0; k < no; k++) off[k] += idx[i] * it->stride[k][i];
    }
    int64_t e = e0;
    while (e < e1) {
        int64_t n = len - idx[nd - 1];
        if (n > e1 - e) n = e1 - e;
        fn(arg, off, n);
        e += n;
        if (e >= e1) break;
        /* advance to the start of the next row */
        for (int k = 0; k < no; k++) off[k] -= idx[nd - 1] * it->stride[k][nd - 1];
        idx[nd - 1] = 0;
        for (int i = nd - 2; i >= 0; i--) {
            idx[i]++;
            for (int k = 0; k < no; k++) off[k] += it->stride[k][i];
            if (idx[i] < it->shape[i]) break;
            for (int k = 0; k < no; k++) off[k] -= it->stride[k][i] * it->shape[i];
            idx[i] = 0;
        }
    }
}

void kiln__iter_run(const kiln_ctx *ctx, const kiln__iter *it, kiln__seg_fn fn, void *arg)
{
    const int64_t total = kiln__iter_numel(it), nt = kiln__par_threads(ctx, total);
    if (total == 0) return;
    if (nt == 1) { /* no parallel region (src/core/parallel.h, KILN_PAR_LOOP) */
        kiln__par_last_team = 1;
        run_range(it, fn, arg, 0, total);
        return;
    }
    KILN_PAR_FOR(ctx, total)
    for (int64_t t = 0; t < nt; t++) {
#ifdef _OPENMP
        if (t == 0) kiln__par_last_team = omp_get_num_threads(); /* thread 0: the caller */
#endif
        int64_t e0 = total * t / nt, e1 = total * (t + 1) / nt;
        if (e1 > e0) run_range(it, fn, arg, e0, e1);
    }
}
