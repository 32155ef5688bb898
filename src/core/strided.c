/* Copy between tensors of the same logical shape and any strides, on the calling thread:
 * for host-side copies that have no context (a dataset's tensor into its own buffer,
 * predictions out of a batch, a strided tensor into a file). Ops copy through the kernel
 * table (ctx->backend->eltwise->copy), which is threaded per context. */
#include "core/internal.h"

#include <string.h>

/* Collapses the shape to fewer dims where both tensors are contiguous across a pair of
 * dims, so most copies become a handful of long inner loops. */
static int collapse(const kiln_tensor *a, const kiln_tensor *b, int64_t *shape, int64_t *sa, int64_t *sb)
{
    int n = 0;
    for (int i = 0; i < a->ndim; i++) {
        if (a->shape[i] == 1) continue;
        if (n > 0 && sa[n - 1] == a->stride[i] * a->shape[i] && sb[n - 1] == b->stride[i] * a->shape[i]) {
            shape[n - 1] *= a->shape[i];
            sa[n - 1] = a->stride[i];
            sb[n - 1] = b->stride[i];
        } else {
            shape[n] = a->shape[i];
            sa[n] = a->stride[i];
            sb[n] = b->stride[i];
            n++;
        }
    }
    if (n == 0) {
        shape[0] = 1;
        sa[0] = sb[0] = 1;
        n = 1;
    }
    return n;
}

static void row_copy(char *d, int64_t sd, const char *s, int64_t ss, int64_t n, size_t es)
{
    if (sd == 1 && ss == 1) {
        memcpy(d, s, (size_t)n * es);
        return;
    }
    for (int64_t i = 0; i < n; i++) memcpy(d + i * sd * (int64_t)es, s + i * ss * (int64_t)es, es);
}

void kiln__strided_copy(kiln_tensor *dst, const kiln_tensor *src)
{
    int64_t shape[KILN_MAX_DIMS], sd[KILN_MAX_DIMS], ss[KILN_MAX_DIMS];
    KILN_ASSERT(dst->ndim == src->ndim && dst->dtype == src->dtype);
    if (kiln_numel(dst) == 0) return;
    int n = collapse(dst, src, shape, sd, ss);
    size_t es = kiln_dtype_size(dst->dtype);
    int64_t rows = 1;
    for (int i = 0; i < n - 1; i++) rows *= shape[i];
    int64_t len = shape[n - 1];
    for (int64_t r = 0; r < rows; r++) {
        int64_t od = 0, os = 0, rem = r;
        for (int i = n - 2; i >= 0; i--) {
            int64_t k = rem % shape[i];
            rem /= shape[i];
            od += k * sd[i];
            os += k * ss[i];
        }
        row_copy((char *)dst->data + od * (int64_t)es, sd[n - 1], (const char *)src->data + os * (int64_t)es,
                 ss[n - 1], len, es);
    }
}

