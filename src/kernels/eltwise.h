/* Kernel table of the eltwise family (see src/kernels/backend.h): unary maps and their
 * derivatives, broadcasting binary ops, select (where), strided copy/axpy, and the
 * reductions (sum to a shape, max over one dim).
 *
 * Conventions: tensors passed to one kernel call have the same ndim and shape unless a
 * kernel says otherwise; broadcasting is done by the caller with stride-0 views (an
 * "expanded" operand). Inputs may have any strides; outputs are contiguous unless a kernel
 * says it accepts strided output. All data is f32 except where stated (cond: u8 or f32,
 * indices: i64). Kernels do no shape validation beyond KILN_ASSERT: the autograd layer
 * checks user input. Results do not depend on the thread count.
 *
 * Two tables share this signature: kiln__cpu_eltwise (OpenMP loops with contiguous fast
 * paths, oneDNN eltwise for large transcendental maps) and kiln__ref_eltwise (plain
 * single-threaded loops, libm, one element at a time) that tests compare against. */
#ifndef KILN_KERNELS_ELTWISE_H
#define KILN_KERNELS_ELTWISE_H

#include "kernels/backend.h"

typedef enum kiln_unary_op {
    KILN_UNARY_ADD_SCALAR = 0, /* x + alpha */
    KILN_UNARY_MUL_SCALAR,     /* x * alpha */
    KILN_UNARY_POW_SCALAR,     /* x ^ alpha */
    KILN_UNARY_NEG,            /* -x */
    KILN_UNARY_RELU,           /* max(x, 0) */
    KILN_UNARY_LEAKY_RELU,     /* x > 0 ? x : alpha * x */
    KILN_UNARY_SIGMOID,
    KILN_UNARY_TANH,
    KILN_UNARY_SOFTPLUS,       /* x > 20 ? x : log1p(exp(x)), as PyTorch (beta 1, threshold 20) */
    KILN_UNARY_EXP,
    KILN_UNARY_LOG,
    KILN_UNARY_SQRT,
    KILN_UNARY_COUNT
} kiln_unary_op;

typedef enum kiln_binary_op {
    KILN_BINARY_ADD = 0,
    KILN_BINARY_SUB,
    KILN_BINARY_MUL,
    KILN_BINARY_DIV,
    KILN_BINARY_COUNT
} kiln_binary_op;

/* "relu", "add", ... for messages. */
const char *kiln__unary_name(kiln_unary_op op);
const char *kiln__binary_name(kiln_binary_op op);
/* Whether the backward of op reads the input x (else only the output y, or neither). */
bool kiln__unary_bwd_needs_x(kiln_unary_op op);

struct kiln_eltwise_kernels {
    /* y = f(x); x any strides, y contiguous, same shape. */
    kiln_status (*unary_fwd)(kiln_ctx *ctx, kiln_unary_op op, float alpha, const kiln_tensor *x,
                             kiln_tensor *y);
    /* gx += gy * f'(x), written as PyTorch's derivative formulas. x (any strides; may be
     * NULL when !kiln__unary_bwd_needs_x(op)), y = f(x), gy and gx contiguous, same shape. */
    kiln_status (*unary_bwd)(kiln_ctx *ctx, kiln_unary_op op, float alpha, const kiln_tensor *x,
                             const kiln_tensor *y, const kiln_tensor *gy, kiln_tensor *gx);
    /* y = a op b, or y += a op b when accumulate. a, b, y: same shape, any strides (y must
     * not have stride-0 dims; y may alias a or b element for element). */
    kiln_status (*binary)(kiln_ctx *ctx, kiln_binary_op op, const kiln_tensor *a, const kiln_tensor *b,
                          kiln_tensor *y, bool accumulate);
    /* y = cond ? a : b (or y += ... when accumulate); cond u8 or f32 (nonzero = true).
     * All the same shape, any strides (y as in binary). */
    kiln_status (*where)(kiln_ctx *ctx, const kiln_tensor *cond, const kiln_tensor *a,
                         const kiln_tensor *b, kiln_tensor *y, bool accumulate);
    /* y = x (any dtype, same dtype), both any strides, same shape. */
    kiln_status (*copy)(kiln_ctx *ctx, const kiln_tensor *x, kiln_tensor *y);
    /* y += alpha * x, f32, both any strides, same shape (y without stride-0 dims). */
    kiln_status (*axpy)(kiln_ctx *ctx, float alpha, const kiln_tensor *x, kiln_tensor *y);
    /* y = scale * (sum of x over the dims where y has size 1 and x does not), or y += that
     * when accumulate. x any strides; y contiguous with x's ndim ("keepdim" shape), each
     * dim equal to x's or 1. Sums are accumulated in double. */
    kiln_status (*sum_to)(kiln_ctx *ctx, const kiln_tensor *x, double scale, kiln_tensor *y,
                          bool accumulate);
    /* Max over dim (0 <= dim < x->ndim, x->shape[dim] > 0): values y (f32) and indices idx
     * (i64), both contiguous in x's shape with size 1 at dim. Ties give the first index and
     * NaN wins (the first NaN), as torch.max(x, dim) on CPU. */
    kiln_status (*max_dim)(kiln_ctx *ctx, const kiln_tensor *x, int dim, kiln_tensor *y,
                           kiln_tensor *idx);
    /* gx[..., idx[...], ...] += gy along dim; gy and idx as max_dim's y and idx, gx
     * contiguous in x's shape. */
    kiln_status (*max_dim_bwd)(kiln_ctx *ctx, const kiln_tensor *gy, const kiln_tensor *idx, int dim,
                               kiln_tensor *gx);
};

extern const kiln_eltwise_kernels kiln__cpu_eltwise;
extern const kiln_eltwise_kernels kiln__ref_eltwise;

/* ---- shared by the CPU kernel files (src/kernels/cpu/eltwise*.c, reduce*.c) ---------- */

/* Up to 4 operands of one N-d loop over a common shape, with dims of size 1 dropped and
 * neighbouring dims merged where every operand is contiguous across them, so contiguous
 * operands become one long inner loop. Strides in elements. */
#define KILN__ITER_MAX_OPS 4
typedef struct kiln__iter {
    int ndim;                    /* >= 1 after kiln__iter_init (a scalar loop has shape (1)) */
    int n_ops;
    int64_t shape[KILN_MAX_DIMS];
    int64_t stride[KILN__ITER_MAX_OPS][KILN_MAX_DIMS];
} kiln__iter;
void kiln__iter_init(kiln__iter *it, int n_ops, const kiln_tensor *const *ops);
int64_t kiln__iter_rows(const kiln__iter *it);  /* product of all dims but the last */
int64_t kiln__iter_numel(const kiln__iter *it);
/* One dim, every operand with stride 1: the loop is a flat span. */
bool kiln__iter_contiguous(const kiln__iter *it);
/* Processes n elements along the inner dim from element offsets off[k] of each operand
 * (the inner stride of operand k is it->stride[k][it->ndim - 1]). */
typedef void (*kiln__seg_fn)(void *arg, const int64_t *off, int64_t n);
/* Runs fn over the whole loop, one contiguous range of flat indices per thread
 * (kiln__par_threads(ctx, numel) of them, src/core/parallel.h). For elementwise work only
 * (no reductions). */
void kiln__iter_run(const kiln_ctx *ctx, const kiln__iter *it, kiln__seg_fn fn, void *arg);

/* Entries of kiln__cpu_eltwise defined outside src/kernels/cpu/eltwise.c. */
kiln_status kiln__cpu_binary(kiln_ctx *ctx, kiln_binary_op op, const kiln_tensor *a, const kiln_tensor *b,
                             kiln_tensor *y, bool accumulate);
kiln_status kiln__cpu_where(kiln_ctx *ctx, const kiln_tensor *cond, const kiln_tensor *a, const kiln_tensor *b,
                            kiln_tensor *y, bool accumulate);
kiln_status kiln__cpu_copy(kiln_ctx *ctx, const kiln_tensor *x, kiln_tensor *y);
kiln_status kiln__cpu_axpy(kiln_ctx *ctx, float alpha, const kiln_tensor *x, kiln_tensor *y);
kiln_status kiln__cpu_sum_to(kiln_ctx *ctx, const kiln_tensor *x, double scale, kiln_tensor *y, bool accumulate);
kiln_status kiln__cpu_max_dim(kiln_ctx *ctx, const kiln_tensor *x, int dim, kiln_tensor *y, kiln_tensor *idx);
kiln_status kiln__cpu_max_dim_bwd(kiln_ctx *ctx, const kiln_tensor *gy, const kiln_tensor *idx, int dim,
                                  kiln_tensor *gx);

/* OpenMP simd pragmas that vanish when KILN_OPENMP is off (threads: src/core/parallel.h). */
#ifdef KILN_HAVE_OPENMP
#define KILN__OMP(x) _Pragma(x)
#else
#define KILN__OMP(x)
#endif

#endif
