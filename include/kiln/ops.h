/* kiln ops: every differentiable operation, forward here and backward on the tape.
 *
 * Conventions: ops take the context first, return a new tensor in the step arena, and
 * return NULL with a message (kiln_last_error) on bad input. An op given a NULL input
 * returns NULL and keeps the first message, so chains can be checked once at the end.
 * Shapes are in comments: NCHW for images, (B, T, C) for batch-first sequences. */
#ifndef KILN_OPS_H
#define KILN_OPS_H

#include "kiln/core.h"
#include "kiln/dist.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- views and shape (src/autograd/view.c) --------------------------------------------- */
/* Views share data when they can; every view is differentiable. */
kiln_tensor *kiln_reshape(kiln_ctx *ctx, kiln_tensor *x, int ndim, const int64_t *shape); /* one dim may be -1 */
kiln_tensor *kiln_flatten(kiln_ctx *ctx, kiln_tensor *x, int start_dim, int end_dim);
kiln_tensor *kiln_permute(kiln_ctx *ctx, kiln_tensor *x, const int *perm);
kiln_tensor *kiln_transpose(kiln_ctx *ctx, kiln_tensor *x, int d0, int d1);
/* x[..., start:end:step, ...] along dim (end exclusive, negative indices count from the end). */
kiln_tensor *kiln_slice(kiln_ctx *ctx, kiln_tensor *x, int dim, int64_t start, int64_t end, int64_t step);
/* Broadcast to shape (size-1 dims, or new leading dims); stride 0, no copy. */
kiln_tensor *kiln_expand(kiln_ctx *ctx, kiln_tensor *x, int ndim, const int64_t *shape);
kiln_tensor *kiln_contiguous(kiln_ctx *ctx, kiln_tensor *x); /* x itself if already contiguous */
/* x (N, C, H, W) stored channels-last (NHWC; see kiln_is_channels_last), differentiable;
 * x itself if it already is. Conv nets run faster on CPU with their input in this layout. */
kiln_tensor *kiln_to_channels_last(kiln_ctx *ctx, kiln_tensor *x);
kiln_tensor *kiln_squeeze(kiln_ctx *ctx, kiln_tensor *x, int dim);
kiln_tensor *kiln_unsqueeze(kiln_ctx *ctx, kiln_tensor *x, int dim);

/* ---- elementwise (src/autograd/eltwise.c, binary.c) ------------------------------------------------ */
/* Binary ops broadcast as PyTorch does. */
kiln_tensor *kiln_add(kiln_ctx *ctx, kiln_tensor *a, kiln_tensor *b);
kiln_tensor *kiln_sub(kiln_ctx *ctx, kiln_tensor *a, kiln_tensor *b);
kiln_tensor *kiln_mul(kiln_ctx *ctx, kiln_tensor *a, kiln_tensor *b);
kiln_tensor *kiln_div(kiln_ctx *ctx, kiln_tensor *a, kiln_tensor *b);
kiln_tensor *kiln_add_scalar(kiln_ctx *ctx, kiln_tensor *x, float s);
kiln_tensor *kiln_mul_scalar(kiln_ctx *ctx, kiln_tensor *x, float s);
kiln_tensor *kiln_pow_scalar(kiln_ctx *ctx, kiln_tensor *x, float p);
kiln_tensor *kiln_neg(kiln_ctx *ctx, kiln_tensor *x);
kiln_tensor *kiln_relu(kiln_ctx *ctx, kiln_tensor *x);
kiln_tensor *kiln_leaky_relu(kiln_ctx *ctx, kiln_tensor *x, float negative_slope);
kiln_tensor *kiln_sigmoid(kiln_ctx *ctx, kiln_tensor *x);
kiln_tensor *kiln_tanh(kiln_ctx *ctx, kiln_tensor *x);
kiln_tensor *kiln_softplus(kiln_ctx *ctx, kiln_tensor *x); /* beta 1, threshold 20 as PyTorch */
kiln_tensor *kiln_exp(kiln_ctx *ctx, kiln_tensor *x);
kiln_tensor *kiln_log(kiln_ctx *ctx, kiln_tensor *x);
kiln_tensor *kiln_sqrt(kiln_ctx *ctx, kiln_tensor *x);
/* out = cond ? a : b, cond a U8 or f32 (nonzero = true) tensor; all three broadcast. */
kiln_tensor *kiln_where(kiln_ctx *ctx, kiln_tensor *cond, kiln_tensor *a, kiln_tensor *b);
/* x with elements where mask is nonzero replaced by value (masked_fill). */
kiln_tensor *kiln_masked_fill(kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *mask, float value);

/* ---- reductions and joins (src/autograd/reduce.c, join.c) ---------------------------------------- */
kiln_tensor *kiln_sum(kiln_ctx *ctx, kiln_tensor *x);  /* all elements -> shape () */
kiln_tensor *kiln_mean(kiln_ctx *ctx, kiln_tensor *x); /* all elements -> shape () */
/* Over the listed dims (negative allowed); keepdim as PyTorch. */
kiln_tensor *kiln_sum_dims(kiln_ctx *ctx, kiln_tensor *x, int n_dims, const int *dims, bool keepdim);
kiln_tensor *kiln_mean_dims(kiln_ctx *ctx, kiln_tensor *x, int n_dims, const int *dims, bool keepdim);
/* Max over one dim; indices (I64, may be NULL) as torch.max(x, dim). Gradient goes to the argmax. */
kiln_tensor *kiln_max_dim(kiln_ctx *ctx, kiln_tensor *x, int dim, bool keepdim, kiln_tensor **indices);
kiln_tensor *kiln_concat(kiln_ctx *ctx, kiln_tensor **xs, int n, int dim);
/* Splits x along dim into n pieces of the given sizes; writes n tensors to out. */
kiln_status kiln_split(kiln_ctx *ctx, kiln_tensor *x, int dim, int n, const int64_t *sizes, kiln_tensor **out);

/* ---- dense layers (src/autograd/dense.c) -------------------------------------------------- */
/* a (..., M, K) @ b (..., K, N) -> (..., M, N); batch dims broadcast; 2-D and batched. */
kiln_tensor *kiln_matmul(kiln_ctx *ctx, kiln_tensor *a, kiln_tensor *b);
/* x (..., in) @ w(out, in)^T + b (out) -> (..., out); b may be NULL. */
kiln_tensor *kiln_linear(kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b);
/* idx (any shape, I64 or I32) into w (V, D) -> (idx..., D). Backward scatters into dW. */
kiln_tensor *kiln_embedding(kiln_ctx *ctx, kiln_tensor *idx, kiln_tensor *w);
/* Inverted dropout with probability p; in eval (train=false) or p=0 returns x.
 * mask_out (optional) receives the scaled mask (same shape as x, values 0 or 1/(1-p)). */
kiln_tensor *kiln_dropout(kiln_ctx *ctx, kiln_tensor *x, float p, bool train, kiln_tensor **mask_out);
/* Multiplies by a given mask (from kiln_dropout_mask), broadcasting: the same mask
 * reused across time steps (variational / weight dropout). */
kiln_tensor *kiln_dropout_mask(kiln_ctx *ctx, int ndim, const int64_t *shape, float p); /* values 0 or 1/(1-p), no grad */
kiln_tensor *kiln_apply_mask(kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *mask);

/* ---- losses (src/autograd/loss.c) -------------------------------------------------------- */
typedef enum kiln_reduction {
    KILN_REDUCTION_MEAN = 0,
    KILN_REDUCTION_SUM,
    KILN_REDUCTION_NONE,
} kiln_reduction;
kiln_tensor *kiln_log_softmax(kiln_ctx *ctx, kiln_tensor *x, int dim);
kiln_tensor *kiln_softmax(kiln_ctx *ctx, kiln_tensor *x, int dim);
/* logits (N, C) or (N, C, d...), target I64 (N) or (N, d...). ignore_index as PyTorch
 * (-100 by default), label_smoothing in [0, 1]. Mean over non-ignored targets. */
typedef struct kiln_xent_params {
    int64_t ignore_index;
    float label_smoothing;
    kiln_reduction reduction;
} kiln_xent_params;
kiln_xent_params kiln_xent_default_params(void);
kiln_tensor *kiln_cross_entropy(kiln_ctx *ctx, kiln_tensor *logits, kiln_tensor *target, const kiln_xent_params *p);
/* Fused linear + cross-entropy (src/autograd/linear_xent.c): x (..., in), w (out, in), b (out) or
 * NULL, target I64 (...) = x's leading dims -> kiln_cross_entropy(kiln_linear(x, w, b) seen as
 * (N, out), target seen as (N), p) with the same semantics (p NULL: defaults; ignore_index rows
 * give 0 and no gradient, MEAN divides by the rows not ignored, label smoothing, reduction NONE
 * gives the (...) per-row losses), the same values and gradients for x, w and b up to float
 * rounding, but the (N, out) logits never exist: rows go through in chunks of chunk_rows (0: at
 * most about 32 MB of logits per chunk, the rows shared evenly), the forward keeps 2 floats per
 * row, and the backward makes each chunk's logits again (one more x w^T GEMM than the unfused
 * pair). w may be tied (an embedding's weight): its gradient adds to what other ops give it. */
kiln_tensor *kiln_linear_cross_entropy(kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b,
                                       kiln_tensor *target, const kiln_xent_params *p, int64_t chunk_rows);
kiln_tensor *kiln_mse_loss(kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *y, kiln_reduction r);
kiln_tensor *kiln_l1_loss(kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *y, kiln_reduction r);
/* Numerically stable; pos_weight may be NULL. */
kiln_tensor *kiln_bce_with_logits(kiln_ctx *ctx, kiln_tensor *logits, kiln_tensor *y, kiln_tensor *pos_weight, kiln_reduction r);

/* ---- convolution, normalisation, pooling (src/autograd/conv.c, norm.c, pool.c) ----------- */
typedef struct kiln_conv2d_params {
    int stride[2], padding[2], dilation[2];
    int groups;
} kiln_conv2d_params;
kiln_conv2d_params kiln_conv2d_default_params(void); /* stride 1, padding 0, dilation 1, groups 1 */
/* x (N, C, H, W), w (O, C/groups, KH, KW), b (O) or NULL -> (N, O, OH, OW). */
kiln_tensor *kiln_conv2d(kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b, const kiln_conv2d_params *p);
/* x (N, C) or (N, C, L) [1d] or (N, C, H, W) [2d]; weight/bias (C) or NULL; running_mean /
 * running_var (C) or NULL. Train: batch statistics, running stats updated with momentum
 * (new = (1-m)*old + m*batch, unbiased var); eval: running stats. */
kiln_tensor *kiln_batch_norm(kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *weight, kiln_tensor *bias,
                             kiln_tensor *running_mean, kiln_tensor *running_var, bool train,
                             float momentum, float eps);
/* kiln_relu(kiln_batch_norm(...)) in one pass, same values and gradients. */
kiln_tensor *kiln_batch_norm_relu(kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *weight, kiln_tensor *bias,
                                  kiln_tensor *running_mean, kiln_tensor *running_var, bool train,
                                  float momentum, float eps);
/* Synchronised batch norm (torch.nn.SyncBatchNorm, data-parallel training, kiln/dist.h): as
 * kiln_batch_norm(_relu), but in train mode the statistics are those of every rank's x
 * together: the forward all-reduces each channel's sum, sum of squares and count (one f64
 * sum of 2C + 1 values), normalises with the global mean and biased variance and moves the
 * running statistics towards the global mean and unbiased variance; the backward all-reduces
 * sum(gy) and sum(gy * xhat) (2C values) for x's gradient, while weight's and bias's
 * gradients stay this rank's sums (a learner averaging gradients over ranks then has the
 * whole batch's). Collectives: every rank calls it in the same order with the same C (x's
 * other dims may differ); eval mode calls none and equals kiln_batch_norm. comm NULL:
 * INVALID; a 1-rank comm gives kiln_batch_norm's values up to rounding. A failed collective
 * returns NULL with its message (forward) or fails kiln_backward. */
kiln_tensor *kiln_sync_batch_norm(kiln_ctx *ctx, kiln_comm *comm, kiln_tensor *x, kiln_tensor *weight,
                                  kiln_tensor *bias, kiln_tensor *running_mean, kiln_tensor *running_var, bool train,
                                  float momentum, float eps);
kiln_tensor *kiln_sync_batch_norm_relu(kiln_ctx *ctx, kiln_comm *comm, kiln_tensor *x, kiln_tensor *weight,
                                       kiln_tensor *bias, kiln_tensor *running_mean, kiln_tensor *running_var,
                                       bool train, float momentum, float eps);
typedef struct kiln_pool2d_params {
    int kernel[2], stride[2], padding[2];
    bool ceil_mode;
    bool count_include_pad; /* avg pool, PyTorch default true */
} kiln_pool2d_params;
kiln_pool2d_params kiln_pool2d_default_params(int kernel, int stride, int padding);
kiln_tensor *kiln_max_pool2d(kiln_ctx *ctx, kiln_tensor *x, const kiln_pool2d_params *p);
kiln_tensor *kiln_avg_pool2d(kiln_ctx *ctx, kiln_tensor *x, const kiln_pool2d_params *p);
/* x (N, C, H, W) -> (N, C, oh, ow), bins as PyTorch's adaptive pooling. */
kiln_tensor *kiln_adaptive_avg_pool2d(kiln_ctx *ctx, kiln_tensor *x, int oh, int ow);
kiln_tensor *kiln_adaptive_max_pool2d(kiln_ctx *ctx, kiln_tensor *x, int oh, int ow);

/* ---- recurrent (src/autograd/rnn.c) --------------------------------------------------------- */
/* One LSTM layer over a whole batch-first sequence, PyTorch gate order (i, f, g, o).
 * x (B, T, I); h0, c0 (B, H) or NULL for zeros; w_ih (4H, I), w_hh (4H, H) (may be a
 * dropped-out copy made by ops above, e.g. kiln_apply_mask); b_ih, b_hh (4H) or NULL.
 * Returns y (B, T, H); h_n, c_n (B, H) are written when not NULL. */
kiln_tensor *kiln_lstm(kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *h0, kiln_tensor *c0,
                       kiln_tensor *w_ih, kiln_tensor *w_hh, kiln_tensor *b_ih, kiln_tensor *b_hh,
                       kiln_tensor **h_n, kiln_tensor **c_n);
/* kiln_lstm of w_hh with DropConnect (AWD-LSTM's WeightDropout): the LSTM of w_hh * mask, mask
 * (4H, H) of 0 and 1/(1-p) drawn from ctx's RNG as kiln_dropout(ctx, w_hh, p, true, NULL) would
 * draw it at this point (the same values, the same RNG counters taken), with the same outputs and
 * gradients as kiln_lstm(..., kiln_dropout(ctx, w_hh, p, true, NULL), ...), but the dropped copy
 * is never kept from the forward to the backward: both make it in scratch (4H * H floats, 21 MB at
 * H = 1152, less at the step's peak). p in [0, 1); 0 is kiln_lstm. */
kiln_tensor *kiln_lstm_weight_drop(kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *h0, kiln_tensor *c0,
                                   kiln_tensor *w_ih, kiln_tensor *w_hh, kiln_tensor *b_ih, kiln_tensor *b_hh, float p,
                                   kiln_tensor **h_n, kiln_tensor **c_n);

#ifdef __cplusplus
}
#endif
#endif
