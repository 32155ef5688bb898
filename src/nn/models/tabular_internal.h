/* Internal to src/nn/models/tabular.c and collab.c: fastai's Embedding (trunc-normal init),
 * SigmoidRange, and the category codes of an input (kiln/models.h's input convention) as
 * embedding indices. Names start with kiln__tab_. */
#ifndef KILN_TABULAR_INTERNAL_H
#define KILN_TABULAR_INTERNAL_H

#include "nn/nn_internal.h"

#include "kiln/models.h"

/* fastai's Embedding(n, dim): an nn.Embedding whose weight (n, dim) starts as
 * trunc_normal_(std=0.01) = normal_().fmod_(2) * 0.01, so every |w| < 0.02. */
kiln_module *kiln__tab_embedding(kiln_module *parent, const char *name, int64_t n, int64_t dim);
/* fastai's SigmoidRange(lo, hi): x -> sigmoid(x) * (hi - lo) + lo, no parameters. */
kiln_module *kiln__tab_sigmoid_range(kiln_module *parent, const char *name, float lo, float hi);
/* sigmoid(x) * (hi - lo) + lo as ops (fastai's sigmoid_range). */
kiln_tensor *kiln__tab_sigmoid_range_op(kiln_ctx *ctx, kiln_tensor *x, float lo, float hi);
/* NULL + INVALID message "<who>: ..." unless x is a 2-D f32 tensor of the given width; else x
 * contiguous (itself when it is). */
kiln_tensor *kiln__tab_check_x(kiln_ctx *ctx, kiln_tensor *x, int64_t width, const char *who, const char *layout);
/* Column col of x (B, width), contiguous f32, as indices (B) I64 in the step arena, no gradient;
 * NULL + INVALID message naming the row, the column and the value when one is not an integer
 * in [0, card). */
kiln_tensor *kiln__tab_codes(kiln_ctx *ctx, const kiln_tensor *x, int col, int64_t card, const char *who);

#endif
