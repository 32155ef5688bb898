/* The kernel table: the numerical work of each op family behind function pointers, one
 * table per backend (cpu now, cuda later), so autograd and nn never name a backend.
 * Each family declares its table in src/kernels/<family>.h; ops reach it through
 * ctx->backend-><family>. */
#ifndef KILN_KERNELS_BACKEND_H
#define KILN_KERNELS_BACKEND_H

#include "core/internal.h"

typedef struct kiln_eltwise_kernels kiln_eltwise_kernels;
typedef struct kiln_dense_kernels kiln_dense_kernels;
typedef struct kiln_conv_kernels kiln_conv_kernels;
typedef struct kiln_rnn_kernels kiln_rnn_kernels;

struct kiln_backend {
    const char *name;
    kiln_status (*init)(kiln_ctx *ctx);  /* sets ctx->backend_state */
    void (*free)(kiln_ctx *ctx);
    void (*set_threads)(kiln_ctx *ctx); /* ctx->n_threads changed (drop what was made for the old count) */
    const kiln_eltwise_kernels *eltwise; /* src/kernels/eltwise.h */
    const kiln_dense_kernels *dense;     /* src/kernels/dense.h */
    const kiln_conv_kernels *conv;       /* src/kernels/conv.h: conv, batch norm, pooling */
    const kiln_rnn_kernels *rnn;         /* src/kernels/rnn.h: LSTM */
};

extern const kiln_backend kiln__cpu_backend;

#endif
