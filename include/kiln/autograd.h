/* kiln autograd: define-by-run reverse mode. Each op called while gradients are enabled
 * and with an input that requires grad records a node on the context's tape (in the step
 * arena); kiln_backward walks the tape in reverse and accumulates dL/dx with +=. */
#ifndef KILN_AUTOGRAD_H
#define KILN_AUTOGRAD_H

#include "kiln/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Seeds d(loss)/d(loss) = 1 (loss must have one element) and runs the tape backwards.
 * Parameter grads accumulate into their store slices; other tensors get arena grads. */
kiln_status kiln_backward(kiln_ctx *ctx, kiln_tensor *loss);
/* Same with an explicit seed gradient (same shape as out). */
kiln_status kiln_backward_with(kiln_ctx *ctx, kiln_tensor *out, const kiln_tensor *grad_out);
/* Hooks kiln_backward calls while it walks the tape, for work that can start before the walk
 * ends (the data-parallel learner starts each bucket's gradient sum there, as PyTorch DDP's
 * reducer hooks do). leaf_ready(user, t): t is a leaf (no node) that requires grad, and every
 * recorded node with t as an input has been visited, so t->grad is final for this backward
 * (it may be NULL when no node produced one). Called once per such leaf, in the order the
 * leaves become final; leaves no visited node reads are not reported. tick(user): after every
 * visited node (to poll a communicator, say); may be NULL. A non-OK return from either ends
 * the backward with that status. The hooks belong to the context: set them (copied) before
 * kiln_backward and clear them (NULL) after; with none set kiln_backward does no counting. */
typedef struct kiln_backward_hooks {
    kiln_status (*leaf_ready)(void *user, kiln_tensor *leaf);
    kiln_status (*tick)(void *user);
    void *user;
} kiln_backward_hooks;
void kiln_set_backward_hooks(kiln_ctx *ctx, const kiln_backward_hooks *hooks);

/* A view of t that shares its data but is cut from the graph. */
kiln_tensor *kiln_detach(kiln_ctx *ctx, kiln_tensor *t);
/* Marks a leaf tensor as needing a gradient (its grad is allocated on first use). */
void kiln_set_requires_grad(kiln_tensor *t, bool on);

/* For a forward pass gone wrong (say a NaN loss): the first op, in the order they ran, on
 * the tape that leads to t whose output holds a NaN or an infinity. Returns its name
 * ("conv2d") and in *pos (may be NULL) its 1-based position among those ops and in *n_ops
 * (may be NULL) how many there are; NULL when every recorded output is finite or t has no
 * tape (e.g. the input batch itself is bad). One pass over every recorded output: meant for
 * after a failure, not for every step. */
const char *kiln_first_nonfinite_op(const kiln_tensor *t, int64_t *pos, int64_t *n_ops);
/* True when every element of t (f32, any strides) is finite; other dtypes are. */
bool kiln_tensor_all_finite(const kiln_tensor *t);

/* Finite-difference gradient check. fn builds an output from inputs[0..n); the check
 * compares the analytic gradient of L = sum(out * r) (r fixed random weights) with
 * central differences at steps eps and eps/2 (L summed in double), combined by Richardson
 * extrapolation, for every element of every f32 input that requires grad. Returns OK when
 * every element satisfies |a - n| <= atol + rtol*|n|; otherwise INVALID with a message
 * naming input, index, analytic and numeric values. *max_err (may be NULL) gets the largest
 * |a - n| / (atol + rtol*|n|) among the elements checked: the share of the tolerance the
 * worst element used (with atol 1, rtol 0 it is the largest absolute error). */
typedef kiln_tensor *(*kiln_gradcheck_fn)(kiln_ctx *ctx, kiln_tensor **inputs, void *user);
typedef struct kiln_gradcheck_params {
    double eps;  /* step, default 1e-2 (f32 forward) */
    double atol; /* default 1e-2 */
    double rtol; /* default 1e-2 */
} kiln_gradcheck_params;
kiln_gradcheck_params kiln_gradcheck_default_params(void);
kiln_status kiln_gradcheck(kiln_ctx *ctx, kiln_gradcheck_fn fn, kiln_tensor **inputs, int n,
                           void *user, const kiln_gradcheck_params *p, double *max_err);

#ifdef __cplusplus
}
#endif
#endif
