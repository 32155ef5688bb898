/* The autograd tape: one node per recorded op, allocated in the step arena and linked
 * newest-first. An op records a node only when gradients are enabled and one of its
 * inputs requires grad; its backward reads node->out[k]->grad and adds into the grads
 * of its inputs obtained with kiln__grad(). */
#ifndef KILN_AUTOGRAD_TAPE_H
#define KILN_AUTOGRAD_TAPE_H

#include "core/internal.h"

#define KILN_NODE_MAX_IN 8
#define KILN_NODE_MAX_OUT 4

typedef kiln_status (*kiln__backward_fn)(kiln_ctx *ctx, kiln_node *n);

struct kiln_node {
    const char *op;              /* "conv2d", for messages */
    kiln__backward_fn backward;
    int n_in, n_out;
    kiln_tensor *in[KILN_NODE_MAX_IN];   /* NULL entries allowed (optional args) */
    kiln_tensor *out[KILN_NODE_MAX_OUT];
    void *saved;                 /* op-specific state, in the step arena, may be NULL */
    kiln_node *prev;
};

/* True when an op with these inputs must record a node (grad mode on and some input
 * requires grad). NULL inputs are skipped. */
bool kiln__wants_grad(const kiln_ctx *ctx, int n_in, kiln_tensor *const *in);

/* Records a node when kiln__wants_grad; marks outputs requires_grad and links them.
 * saved_bytes of zeroed arena memory are returned in *saved (may be NULL when 0).
 * Returns the node, or NULL when no node was needed (*saved untouched), or NULL with
 * status set in *st on allocation failure. */
kiln_node *kiln__record(kiln_ctx *ctx, const char *op, kiln__backward_fn fn, int n_in,
                        kiln_tensor *const *in, int n_out, kiln_tensor *const *out,
                        size_t saved_bytes, kiln_status *st);

/* v = t seen as a flat 1-D tensor over its memory, for elementwise kernels on tensors that
 * share one dense layout (channels-last); returns v, or NULL when t is NULL. */
kiln_tensor *kiln__flat_view(kiln_tensor *v, const kiln_tensor *t);

/* t, or a contiguous copy of it (recorded) when t is channels-last: for ops whose kernels
 * and backward index their input as contiguous. NULL on failure. */
kiln_tensor *kiln__plain(kiln_ctx *ctx, kiln_tensor *t);

/* The gradient accumulator of t: its existing grad, or a new zeroed f32 tensor in the
 * arena, contiguous or channels-last like t. NULL when t is NULL or does not require grad (nothing to do). */
kiln_tensor *kiln__grad(kiln_ctx *ctx, kiln_tensor *t);
/* kiln__grad for a backward that reports the rows it writes itself (kiln_embedding's, into a
 * parameter tracked for the sparse optimizer step, src/core/rowset.h); kiln__grad marks every
 * row of a tracked parameter as reached. */
kiln_tensor *kiln__grad_rows(kiln_ctx *ctx, kiln_tensor *t);

/* Like kiln__grad, but a new gradient is left uninitialised and *acc tells whether the
 * gradient already held values: for backward kernels that overwrite gx when !acc (conv,
 * batch norm), which saves zeroing it first. */
kiln_tensor *kiln__grad_fresh(kiln_ctx *ctx, kiln_tensor *t, bool *acc);

/* dst += src and dst = src for two tensors of the same shape and any strides (dst without
 * stride-0 dims), through the kernel table (eltwise axpy and copy). */
kiln_status kiln__add_into(kiln_ctx *ctx, kiln_tensor *dst, const kiln_tensor *src);
kiln_status kiln__copy_into(kiln_ctx *ctx, kiln_tensor *dst, const kiln_tensor *src);

/* dst (contiguous, shape S) += src reduced by summation to shape S (src's shape
 * broadcasts from S). Used by broadcasting ops' backward. */
kiln_status kiln__accumulate_reduced(kiln_ctx *ctx, kiln_tensor *dst, const kiln_tensor *src);

#endif
