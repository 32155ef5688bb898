/* Pretty printing in PyTorch's style: nested brackets, long dims elided with "...". */
#include "core/internal.h"

#define EDGE 3 /* elements shown at each end of a long dim */

static void print_rec(FILE *f, const kiln_tensor *t, int dim, int64_t off, int indent)
{
    int64_t n = t->shape[dim];
    fputc('[', f);
    for (int64_t i = 0; i < n; i++) {
        if (n > 2 * EDGE && i == EDGE) {
            fputs(dim == t->ndim - 1 ? "..., " : "...,\n", f);
            if (dim != t->ndim - 1)
                for (int k = 0; k < indent + 1; k++) fputc(' ', f);
            i = n - EDGE;
        }
        int64_t o = off + i * t->stride[dim];
        if (dim == t->ndim - 1) {
            kiln_tensor one = *t;
            one.ndim = 0;
            one.data = (char *)t->data + o * (int64_t)kiln_dtype_size(t->dtype);
            double v = kiln_get_flat(&one, 0);
            if (t->dtype == KILN_DTYPE_F32) fprintf(f, "%.4f", v);
            else fprintf(f, "%lld", (long long)v);
        } else {
            print_rec(f, t, dim + 1, o, indent + 1);
        }
        if (i + 1 < n) {
            fputs(dim == t->ndim - 1 ? ", " : ",\n", f);
            if (dim != t->ndim - 1)
                for (int k = 0; k < indent + 1; k++) fputc(' ', f);
        }
    }
    fputc(']', f);
}

kiln_status kiln_tensor_print(FILE *f, const kiln_tensor *t, const char *label)
{
    if (!t) return kiln__err(KILN_STATUS_INVALID, "print: NULL tensor");
    if (t->dtype == KILN_DTYPE_F16 || t->dtype == KILN_DTYPE_BF16)
        return kiln__err(KILN_STATUS_UNSUPPORTED, "print: %s tensors are not printable, convert to f32",
                         kiln_dtype_name(t->dtype));
    char buf[160];
    if (label) fprintf(f, "%s = ", label);
    fputs("tensor(", f);
    if (t->ndim == 0) {
        double v = kiln_get_flat(t, 0);
        if (t->dtype == KILN_DTYPE_F32) fprintf(f, "%.4f", v);
        else fprintf(f, "%lld", (long long)v);
    } else if (kiln_numel(t) == 0) {
        fputs("[]", f);
    } else {
        print_rec(f, t, 0, 0, 7 + (label ? 0 : 0));
    }
    fprintf(f, ", shape %s, %s)\n", kiln_shape_str(t, buf, sizeof buf), kiln_dtype_name(t->dtype));
    return KILN_STATUS_OK;
}
