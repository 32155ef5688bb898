/* Kernel table of the rnn family (see src/kernels/backend.h): one LSTM layer over a whole
 * batch-first sequence, PyTorch semantics and gate order (i, f, g, o):
 *
 *   gates_t = x_t @ w_ih^T + b_ih + h_{t-1} @ w_hh^T + b_hh      (B, 4H)
 *   i, f, o = sigmoid(...), g = tanh(...)
 *   c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t),   y[:, t] = h_t
 *
 * All pointers are dense row-major f32 arrays. The forward kernel keeps what the backward
 * kernel needs in caller-owned buffers (gates, and cell unless it is NULL); the backward kernel
 * consumes them (it overwrites gates with the pre-activation gradients), so it runs once per
 * forward. */
#ifndef KILN_KERNELS_RNN_H
#define KILN_KERNELS_RNN_H

#include "kernels/backend.h"

typedef struct kiln_lstm_args {
    int64_t B, T, I, H;  /* batch, steps, input size, hidden size; all >= 1 */

    /* forward inputs */
    const float *x;      /* (B, T, I) */
    const float *h0;     /* (B, H) or NULL for zeros */
    const float *c0;     /* (B, H) or NULL for zeros */
    const float *w_ih;   /* (4H, I) */
    const float *w_hh;   /* (4H, H) */
    const float *b_ih;   /* (4H) or NULL */
    const float *b_hh;   /* (4H) or NULL */

    /* forward outputs */
    float *y;            /* (B, T, H) */
    float *h_n, *c_n;    /* (B, H) each, or NULL when not wanted */
    float *gates;        /* (B, T, 4H) activated gates i, f, g, o; saved for backward */
    float *cell;         /* (B, T, H) cell states c_t; saved for backward. Or NULL (both
                            directions): the forward keeps only the step it needs and the
                            backward makes them all again from the activations in gates and
                            c0, the same values, in its scratch (B*T*H floats kept from the
                            forward to the backward less; 10 MB at B*T = 2240, H = 1152) */

    /* backward: upstream gradients, NULL = zero */
    const float *gy;     /* (B, T, H) */
    const float *gh_n;   /* (B, H) */
    const float *gc_n;   /* (B, H) */

    /* backward: input gradients, accumulated (+=); NULL = not needed */
    float *gx;           /* (B, T, I) */
    float *gh0, *gc0;    /* (B, H) */
    float *gw_ih;        /* (4H, I) */
    float *gw_hh;        /* (4H, H) */
    float *gb_ih, *gb_hh;/* (4H) */
} kiln_lstm_args;

typedef kiln_status (*kiln_lstm_fn)(kiln_ctx *ctx, const kiln_lstm_args *a);

struct kiln_rnn_kernels {
    /* Reads the forward inputs; writes y, h_n, c_n, gates, cell. */
    kiln_lstm_fn lstm_fwd;
    /* Reads forward inputs and outputs (y, gates, cell) and the upstream gradients; adds
     * into the wanted input gradients. Destroys gates. Scratch (both directions) comes from the
     * step arena and goes back to it before the kernel returns (the arena is rewound to where
     * it stood at the call: nothing the kernel allocates outlives it). */
    kiln_lstm_fn lstm_bwd;
};

extern const kiln_rnn_kernels kiln__cpu_rnn;

/* The fast CPU kernels behind kiln__cpu_rnn (src/kernels/cpu/lstm_cpu.c). */
kiln_status kiln__cpu_lstm_fwd(kiln_ctx *ctx, const kiln_lstm_args *a);
kiln_status kiln__cpu_lstm_bwd(kiln_ctx *ctx, const kiln_lstm_args *a);

/* Plain loops, the definition the fast kernels are tested against (src/kernels/cpu/lstm_ref.c). */
kiln_status kiln__ref_lstm_fwd(kiln_ctx *ctx, const kiln_lstm_args *a);
kiln_status kiln__ref_lstm_bwd(kiln_ctx *ctx, const kiln_lstm_args *a);

#endif
