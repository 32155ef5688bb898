/* Reference LSTM kernels: the definition in plain loops (double accumulators, libm
 * sigmoid/tanh), one time step and one element at a time. Slow; tests compare the fast
 * kernels in lstm_cpu.c against these. Same contract as kiln_rnn_kernels (src/kernels/rnn.h). */
#include "kernels/rnn.h"

#include <math.h>
#include <string.h>

static double sigm(double v) { return 1.0 / (1.0 + exp(-v)); }

/* h_{t-1} of row b: y[b, t-1], or h0[b], or NULL for zeros. */
static const float *hprev(const kiln_lstm_args *a, int64_t b, int64_t t)
{
    if (t > 0) return a->y + (b * a->T + t - 1) * a->H;
    return a->h0 ? a->h0 + b * a->H : NULL;
}

static const float *cprev(const kiln_lstm_args *a, int64_t b, int64_t t)
{
    if (t > 0) return a->cell + (b * a->T + t - 1) * a->H;
    return a->c0 ? a->c0 + b * a->H : NULL;
}

/* a with a cell of its own in scratch when the caller keeps none: the forward fills it, the
 * backward makes it again from the activations in gates and c0 */
static const kiln_lstm_args *own_cell(kiln_ctx *ctx, const kiln_lstm_args *a, kiln_lstm_args *tmp, bool remake)
{
    if (a->cell) return a;
    *tmp = *a;
    tmp->cell = kiln_step_alloc(ctx, (size_t)(a->B * a->T * a->H) * sizeof(float));
    if (!tmp->cell) return NULL;
    for (int64_t b = 0; remake && b < a->B; b++)
        for (int64_t t = 0; t < a->T; t++) {
            const float *gt = a->gates + (b * a->T + t) * 4 * a->H, *cp = cprev(tmp, b, t);
            for (int64_t j = 0; j < a->H; j++)
                tmp->cell[(b * a->T + t) * a->H + j] =
                    (float)((double)gt[a->H + j] * (cp ? cp[j] : 0.0) + (double)gt[j] * gt[2 * a->H + j]);
        }
    return tmp;
}

kiln_status kiln__ref_lstm_fwd(kiln_ctx *ctx, const kiln_lstm_args *a)
{
    kiln_lstm_args tmp;
    if (!(a = own_cell(ctx, a, &tmp, false))) return KILN_STATUS_NOMEM;
    const int64_t B = a->B, T = a->T, I = a->I, H = a->H, G = 4 * H;
    double *pre = kiln_step_alloc(ctx, (size_t)G * sizeof(double)); /* (4H) one row */
    if (!pre) return KILN_STATUS_NOMEM;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t b = 0; b < B; b++) {
            const float *xt = a->x + (b * T + t) * I;   /* (I) */
            const float *hp = hprev(a, b, t);            /* (H) or NULL */
            const float *cp = cprev(a, b, t);            /* (H) or NULL */
            for (int64_t g = 0; g < G; g++) {
                double s = (a->b_ih ? a->b_ih[g] : 0.0) + (a->b_hh ? a->b_hh[g] : 0.0);
                for (int64_t k = 0; k < I; k++) s += (double)xt[k] * a->w_ih[g * I + k];
                if (hp)
                    for (int64_t k = 0; k < H; k++) s += (double)hp[k] * a->w_hh[g * H + k];
                pre[g] = s;
            }
            float *gt = a->gates + (b * T + t) * G;     /* (4H) */
            float *ct = a->cell + (b * T + t) * H;      /* (H) */
            float *yt = a->y + (b * T + t) * H;         /* (H) */
            for (int64_t j = 0; j < H; j++) {
                double i = sigm(pre[j]), f = sigm(pre[H + j]), gg = tanh(pre[2 * H + j]),
                       o = sigm(pre[3 * H + j]);
                double c = f * (cp ? cp[j] : 0.0) + i * gg;
                gt[j] = (float)i;
                gt[H + j] = (float)f;
                gt[2 * H + j] = (float)gg;
                gt[3 * H + j] = (float)o;
                ct[j] = (float)c;
                yt[j] = (float)(o * tanh(c));
            }
        }
    }
    for (int64_t b = 0; b < B; b++) {
        if (a->h_n) memcpy(a->h_n + b * H, a->y + (b * T + T - 1) * H, (size_t)H * sizeof(float));
        if (a->c_n) memcpy(a->c_n + b * H, a->cell + (b * T + T - 1) * H, (size_t)H * sizeof(float));
    }
    return KILN_STATUS_OK;
}

kiln_status kiln__ref_lstm_bwd(kiln_ctx *ctx, const kiln_lstm_args *a)
{
    kiln_lstm_args tmp;
    if (!(a = own_cell(ctx, a, &tmp, true))) return KILN_STATUS_NOMEM;
    const int64_t B = a->B, T = a->T, I = a->I, H = a->H, G = 4 * H;
    double *dh = kiln_step_alloc(ctx, (size_t)(B * H) * sizeof(double));  /* (B, H) dL/dh_t */
    double *dc = kiln_step_alloc(ctx, (size_t)(B * H) * sizeof(double));  /* (B, H) dL/dc_t */
    double *dg = kiln_step_alloc(ctx, (size_t)(B * T * G) * sizeof(double)); /* (B, T, 4H) */
    if (!dh || !dc || !dg) return KILN_STATUS_NOMEM;
    for (int64_t k = 0; k < B * H; k++) {
        dh[k] = a->gh_n ? a->gh_n[k] : 0.0;
        dc[k] = a->gc_n ? a->gc_n[k] : 0.0;
    }
    for (int64_t t = T - 1; t >= 0; t--) {
        for (int64_t b = 0; b < B; b++) {
            const float *gt = a->gates + (b * T + t) * G;
            const float *ct = a->cell + (b * T + t) * H;
            const float *cp = cprev(a, b, t);
            double *dgt = dg + (b * T + t) * G;
            for (int64_t j = 0; j < H; j++) {
                double i = gt[j], f = gt[H + j], gg = gt[2 * H + j], o = gt[3 * H + j];
                double tc = tanh((double)ct[j]);
                double dht = dh[b * H + j] + (a->gy ? a->gy[(b * T + t) * H + j] : 0.0);
                double dct = dc[b * H + j] + dht * o * (1.0 - tc * tc);
                dgt[j] = dct * gg * i * (1.0 - i);
                dgt[H + j] = dct * (cp ? cp[j] : 0.0) * f * (1.0 - f);
                dgt[2 * H + j] = dct * i * (1.0 - gg * gg);
                dgt[3 * H + j] = dht * tc * o * (1.0 - o);
                dc[b * H + j] = dct * f;
            }
            for (int64_t k = 0; k < H; k++) { /* dh_{t-1} = dgates_t @ w_hh */
                double s = 0.0;
                for (int64_t g = 0; g < G; g++) s += dgt[g] * a->w_hh[g * H + k];
                dh[b * H + k] = s;
            }
        }
    }
    for (int64_t k = 0; k < B * H; k++) {
        if (a->gh0) a->gh0[k] += (float)dh[k];
        if (a->gc0) a->gc0[k] += (float)dc[k];
    }
    for (int64_t r = 0; r < B * T && a->gx; r++)
        for (int64_t k = 0; k < I; k++) {
            double s = 0.0;
            for (int64_t g = 0; g < G; g++) s += dg[r * G + g] * a->w_ih[g * I + k];
            a->gx[r * I + k] += (float)s;
        }
    for (int64_t g = 0; g < G; g++) {
        double sb = 0.0;
        for (int64_t r = 0; r < B * T; r++) sb += dg[r * G + g];
        if (a->gb_ih) a->gb_ih[g] += (float)sb;
        if (a->gb_hh) a->gb_hh[g] += (float)sb;
        for (int64_t k = 0; k < I && a->gw_ih; k++) {
            double s = 0.0;
            for (int64_t r = 0; r < B * T; r++) s += dg[r * G + g] * a->x[r * I + k];
            a->gw_ih[g * I + k] += (float)s;
        }
        for (int64_t k = 0; k < H && a->gw_hh; k++) {
            double s = 0.0;
            for (int64_t b = 0; b < B; b++)
                for (int64_t t = 0; t < T; t++) {
                    const float *hp = hprev(a, b, t);
                    if (hp) s += dg[(b * T + t) * G + g] * hp[k];
                }
            a->gw_hh[g * H + k] += (float)s;
        }
    }
    return KILN_STATUS_OK;
}
