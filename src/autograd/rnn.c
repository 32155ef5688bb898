/* kiln_lstm: one LSTM layer over a whole batch-first sequence as a single tape node
 * (inputs x, h0, c0, w_ih, w_hh, b_ih, b_hh; outputs y, h_n, c_n). The numerical work is
 * in the backend's rnn kernels (src/kernels/rnn.h); this file validates, allocates and
 * routes gradients, whatever made the weights (parameters or ops such as weight dropout).
 * kiln_lstm_weight_drop is the same node with DropConnect on w_hh inside it: the dropped copy of
 * w_hh is made in scratch by the dropout kernel in the forward and again in the backward (its mask
 * drawn again from the RNG counters the forward took), never kept between them, and its gradient,
 * also scratch, reaches w_hh through the mask (dropout_bwd). */
#include "autograd/tape.h"
#include "kernels/dense.h"
#include "kernels/rnn.h"
#include "kiln/ops.h"

#include <string.h>

enum { IN_X, IN_H0, IN_C0, IN_WIH, IN_WHH, IN_BIH, IN_BHH, N_IN };
enum { OUT_Y, OUT_HN, OUT_CN, N_OUT };

typedef struct lstm_saved {
    int64_t B, T, I, H;
    float *gates; /* (B, T, 4H) activations from forward; backward turns them into gradients */
    bool consumed;
    float drop_p;           /* > 0: in[IN_WHH] is the raw w_hh, the kernels see w_hh * mask */
    uint64_t seed, first;   /* the mask's RNG counters (4H * H from first) */
} lstm_saved;

/* 1/(1-p): the kept weights' scale, as kiln_dropout's */
static float keep_scale(float p) { return 1.0f / (1.0f - p); }

/* w_hh * mask (4H, H) in scratch, mask drawn from (seed, first) as kiln_dropout draws it; NULL when
 * the arena is out of memory */
static float *dropped_whh(kiln_ctx *ctx, const float *w_hh, int64_t n, float p, uint64_t seed, uint64_t first)
{
    float *wd = kiln_step_alloc(ctx, (size_t)n * sizeof(float));
    if (wd) ctx->backend->dense->dropout_fwd(ctx, seed, first, n, p, keep_scale(p), NULL, w_hh, wd);
    return wd;
}

static const float *fdata(const kiln_tensor *t) { return t ? (const float *)t->data : NULL; }
static float *gdata(kiln_tensor *g) { return g ? (float *)g->data : NULL; }

static kiln_status lstm_bwd(kiln_ctx *ctx, kiln_node *n)
{
    lstm_saved *s = n->saved;
    if (s->consumed)
        return kiln__err(KILN_STATUS_STATE,
                         "lstm: backward through the same graph twice (its saved gates were consumed); "
                         "run the forward again");
    kiln_lstm_args a = {
        .B = s->B, .T = s->T, .I = s->I, .H = s->H,
        .x = fdata(n->in[IN_X]), .h0 = fdata(n->in[IN_H0]), .c0 = fdata(n->in[IN_C0]),
        .w_ih = fdata(n->in[IN_WIH]), .w_hh = fdata(n->in[IN_WHH]),
        .b_ih = fdata(n->in[IN_BIH]), .b_hh = fdata(n->in[IN_BHH]),
        .y = n->out[OUT_Y]->data, .gates = s->gates, .cell = NULL, /* made again from the gates */
        .gy = fdata(n->out[OUT_Y]->grad), .gh_n = fdata(n->out[OUT_HN]->grad),
        .gc_n = fdata(n->out[OUT_CN]->grad),
    };
    kiln_tensor *g[N_IN];
    for (int i = 0; i < N_IN; i++) {
        g[i] = n->in[i] ? kiln__grad(ctx, n->in[i]) : NULL;
        if (n->in[i] && n->in[i]->requires_grad && !g[i]) return KILN_STATUS_NOMEM;
    }
    a.gx = gdata(g[IN_X]);
    a.gh0 = gdata(g[IN_H0]);
    a.gc0 = gdata(g[IN_C0]);
    a.gw_ih = gdata(g[IN_WIH]);
    a.gw_hh = gdata(g[IN_WHH]);
    a.gb_ih = gdata(g[IN_BIH]);
    a.gb_hh = gdata(g[IN_BHH]);
    s->consumed = true;
    if (s->drop_p <= 0.0f) return ctx->backend->rnn->lstm_bwd(ctx, &a);
    /* weight drop: the kernel sees the dropped copy and fills its gradient (both scratch); w_hh's
     * gradient += mask * that */
    const int64_t nw = 4 * s->H * s->H;
    kiln_mark mk = kiln_step_mark(ctx);
    float *gwd = g[IN_WHH] ? kiln_step_alloc(ctx, (size_t)nw * sizeof(float)) : NULL;
    a.w_hh = dropped_whh(ctx, a.w_hh, nw, s->drop_p, s->seed, s->first);
    kiln_status st = !a.w_hh || (g[IN_WHH] && !gwd) ? KILN_STATUS_NOMEM : KILN_STATUS_OK;
    if (gwd) memset(gwd, 0, (size_t)nw * sizeof(float));
    a.gw_hh = gwd;
    if (st == KILN_STATUS_OK) st = ctx->backend->rnn->lstm_bwd(ctx, &a);
    if (st == KILN_STATUS_OK && gwd)
        ctx->backend->dense->dropout_bwd(ctx, s->seed, s->first, nw, s->drop_p, keep_scale(s->drop_p), gwd,
                                         g[IN_WHH]->data);
    kiln_step_rewind(ctx, mk);
    return st;
}

/* "(16, 5)" for messages. */
static const char *shp(const kiln_tensor *t, char *buf, size_t n) { return kiln_shape_str(t, buf, n); }

/* False (message set) unless t has exactly the shape want[0..nd). */
static bool check_shape(const kiln_tensor *t, const char *arg, int nd, const int64_t *want, const char *why)
{
    bool ok = t->ndim == nd;
    for (int i = 0; ok && i < nd; i++) ok = t->shape[i] == want[i];
    if (ok) return true;
    char got[128], wants[128] = "(";
    size_t len = 1;
    for (int i = 0; i < nd; i++)
        len += (size_t)snprintf(wants + len, sizeof wants - len, "%s%lld", i ? ", " : "", (long long)want[i]);
    snprintf(wants + len, sizeof wants - len, nd == 1 ? ",)" : ")"); /* as kiln_shape_str */
    kiln__err(KILN_STATUS_INVALID, "lstm: %s has shape %s, expected %s %s", arg, shp(t, got, sizeof got), wants, why);
    return false;
}

static kiln_tensor *lstm(kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *h0, kiln_tensor *c0, kiln_tensor *w_ih,
                         kiln_tensor *w_hh, kiln_tensor *b_ih, kiln_tensor *b_hh, float drop_p, kiln_tensor **h_n,
                         kiln_tensor **c_n)
{
    if (h_n) *h_n = NULL;
    if (c_n) *c_n = NULL;
    if (!ctx) return kiln__errp(KILN_STATUS_INVALID, "lstm: NULL context");
    if (!(drop_p >= 0.0f && drop_p < 1.0f))
        return kiln__errp(KILN_STATUS_INVALID, "lstm_weight_drop: p %g is outside [0, 1)", (double)drop_p);
    KILN_IN(x);
    KILN_IN(w_ih);
    KILN_IN(w_hh);
    kiln_tensor *in[N_IN] = {x, h0, c0, w_ih, w_hh, b_ih, b_hh};
    static const char *const names[N_IN] = {"x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"};
    for (int i = 0; i < N_IN; i++)
        if (in[i] && kiln__check_f32("lstm", in[i], names[i]) < 0) return NULL;

    char b1[128];
    if (x->ndim != 3)
        return kiln__errp(KILN_STATUS_INVALID, "lstm: x has shape %s, expected 3 dims (B, T, I) (batch first)",
                          shp(x, b1, sizeof b1));
    if (w_hh->ndim != 2 || w_hh->shape[0] % 4 != 0 || w_hh->shape[0] == 0)
        return kiln__errp(KILN_STATUS_INVALID, "lstm: w_hh has shape %s, expected (4H, H) with H >= 1",
                          shp(w_hh, b1, sizeof b1));
    const int64_t B = x->shape[0], T = x->shape[1], I = x->shape[2], H = w_hh->shape[0] / 4;
    if (B < 1 || T < 1 || I < 1)
        return kiln__errp(KILN_STATUS_INVALID, "lstm: x has shape %s, every dim must be >= 1", shp(x, b1, sizeof b1));
    char why[96];
    snprintf(why, sizeof why, "for hidden size %lld", (long long)H);
    const int64_t s_whh[2] = {4 * H, H}, s_state[2] = {B, H}, s_b[1] = {4 * H};
    if (!check_shape(w_hh, "w_hh", 2, s_whh, why)) return NULL;
    const int64_t s_wih[2] = {4 * H, I};
    char why_i[128];
    snprintf(why_i, sizeof why_i, "for hidden size %lld and input size %lld", (long long)H, (long long)I);
    if (!check_shape(w_ih, "w_ih", 2, s_wih, why_i)) return NULL;
    char why_s[128];
    snprintf(why_s, sizeof why_s, "for batch %lld and hidden size %lld", (long long)B, (long long)H);
    if (h0 && !check_shape(h0, "h0", 2, s_state, why_s)) return NULL;
    if (c0 && !check_shape(c0, "c0", 2, s_state, why_s)) return NULL;
    if (b_ih && !check_shape(b_ih, "b_ih", 1, s_b, why)) return NULL;
    if (b_hh && !check_shape(b_hh, "b_hh", 1, s_b, why)) return NULL;

    for (int i = 0; i < N_IN; i++)
        if (in[i]) {
            in[i] = kiln_contiguous(ctx, in[i]);
            KILN_IN(in[i]);
        }

    const int64_t s_y[3] = {B, T, H};
    kiln_tensor *y = kiln_empty(ctx, KILN_DTYPE_F32, 3, s_y);
    kiln_tensor *hn = kiln_empty(ctx, KILN_DTYPE_F32, 2, s_state);
    kiln_tensor *cn = kiln_empty(ctx, KILN_DTYPE_F32, 2, s_state);
    /* (B, T, 4H) kept for the backward; the cell states are not (the kernels make them again) */
    float *gates = kiln_step_alloc(ctx, (size_t)(B * T * 4 * H) * sizeof(float));
    if (!y || !hn || !cn || !gates) return NULL;
    kiln_lstm_args a = {
        .B = B, .T = T, .I = I, .H = H,
        .x = fdata(in[IN_X]), .h0 = fdata(in[IN_H0]), .c0 = fdata(in[IN_C0]),
        .w_ih = fdata(in[IN_WIH]), .w_hh = fdata(in[IN_WHH]),
        .b_ih = fdata(in[IN_BIH]), .b_hh = fdata(in[IN_BHH]),
        .y = y->data, .h_n = hn->data, .c_n = cn->data, .gates = gates, .cell = NULL,
    };
    uint64_t seed = 0, first = 0;
    if (drop_p > 0.0f) { /* the counters kiln_dropout(w_hh, p) would take, then the copy in scratch */
        first = kiln_rng_take(ctx, (uint64_t)(4 * H * H));
        seed = kiln_rng_get(ctx).seed;
    }
    kiln_mark mk = kiln_step_mark(ctx);
    if (drop_p > 0.0f && !(a.w_hh = dropped_whh(ctx, a.w_hh, 4 * H * H, drop_p, seed, first))) return NULL;
    kiln_status fst = ctx->backend->rnn->lstm_fwd(ctx, &a);
    kiln_step_rewind(ctx, mk);
    if (fst < 0) return NULL;

    kiln_tensor *out[N_OUT] = {y, hn, cn};
    kiln_status st;
    lstm_saved *s = NULL;
    kiln_node *n = kiln__record(ctx, "lstm", lstm_bwd, N_IN, in, N_OUT, out, sizeof *s, &st);
    if (st < 0) return NULL;
    if (n) {
        s = n->saved;
        *s = (lstm_saved){.B = B, .T = T, .I = I, .H = H, .gates = gates, .drop_p = drop_p, .seed = seed, .first = first};
    }
    if (h_n) *h_n = hn;
    if (c_n) *c_n = cn;
    return y;
}

kiln_tensor *kiln_lstm(kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *h0, kiln_tensor *c0, kiln_tensor *w_ih,
                       kiln_tensor *w_hh, kiln_tensor *b_ih, kiln_tensor *b_hh, kiln_tensor **h_n, kiln_tensor **c_n)
{
    return lstm(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, 0.0f, h_n, c_n);
}

kiln_tensor *kiln_lstm_weight_drop(kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *h0, kiln_tensor *c0,
                                   kiln_tensor *w_ih, kiln_tensor *w_hh, kiln_tensor *b_ih, kiln_tensor *b_hh, float p,
                                   kiln_tensor **h_n, kiln_tensor **c_n)
{
    return lstm(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, p, h_n, c_n);
}
