/* Fast CPU LSTM kernels (contract in src/kernels/rnn.h).
 *
 * The work is arranged so that almost all FLOPs are in a few large GEMMs:
 *   forward:  gates = x @ w_ih^T for the whole sequence (one GEMM, B*T rows), then per
 *             step only the recurrent GEMM gates[:, t] += h_{t-1} @ w_hh^T and fused gate
 *             math (OpenMP over the batch).
 *   backward: per step the fused gate-gradient math and dh_{t-1} = dgates_t @ w_hh; after
 *             the loop dx, dw_ih and dw_hh are whole-sequence GEMMs (dw_hh over h_{t-1}
 *             stacked for all t) and the bias gradient is a column sum.
 * Matrices are batch-first, so a time step's rows are T*4H (gates) or T*H (y) apart and go
 * to the GEMM as a leading dimension, with no copies. */
#include "kernels/rnn.h"
#include "kernels/cpu/dnnl_util.h"

#include <math.h>
#include <string.h>

/* ---- GEMM ---------------------------------------------------------------------------- */

/* Row-major C (M, N) = alpha op(A) op(B) + beta C with oneDNN's sgemm: it threads with the
 * same OpenMP runtime as kiln (OpenBLAS's pthreads would fight it for the cores). */
static kiln_status sgemm(char ta, char tb, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const float *Bm, int64_t ldb, float beta,
                         float *C, int64_t ldc)
{
    dnnl_status_t s = dnnl_sgemm(ta, tb, M, N, K, alpha, A, lda, Bm, ldb, beta, C, ldc);
    if (s != dnnl_success)
        return kiln__err(KILN_STATUS_BACKEND, "lstm: oneDNN sgemm (%lld x %lld x %lld) failed: %s",
                         (long long)M, (long long)N, (long long)K, kiln__dnnl_status_str(s));
    return KILN_STATUS_OK;
}

/* The recurrent product of every step against the same w_hh (4H, H):
 * forward C (B, 4H) = A (B, H) @ w_hh^T, backward C (B, H) = A (B, 4H) @ w_hh. */
typedef struct lstm_rec {
    const float *w; /* (4H, H) */
    int64_t B, H, G;
    bool bwd;
} lstm_rec;

static kiln_status rec_init(kiln_ctx *ctx, lstm_rec *r, const float *w_hh, int64_t B, int64_t H,
                            int64_t G, bool bwd)
{
    *r = (lstm_rec){.w = w_hh, .B = B, .H = H, .G = G, .bwd = bwd};
    return KILN_STATUS_OK;
}

/* C = A @ op(w) + beta C, rows of A lda apart and of C ldc apart. */
static kiln_status rec_run(lstm_rec *r, const float *A, int64_t lda, float *C, int64_t ldc, float beta)
{
    if (r->bwd) return sgemm('N', 'N', r->B, r->H, r->G, 1.0f, A, lda, r->w, r->H, beta, C, ldc);
    return sgemm('N', 'T', r->B, r->G, r->H, 1.0f, A, lda, r->w, r->H, beta, C, ldc);
}

static void rec_free(lstm_rec *r) { (void)r; }

/* ---- vectorisable sigmoid / tanh ----------------------------------------------------- *
 * exp by range reduction x = n ln2 + r, |r| <= ln2/2, and Cephes' degree-6 polynomial
 * (about 2 ulp). Written without libm calls or branches so `omp simd` loops vectorise. */
static inline float fexp(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float n = (x * 1.44269504088896341f + shifter) - shifter;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } s;
    s.i = ((int32_t)n + 127) << 23;
    return p * s.f;
}

static inline float fsigmoid(float x) { return 1.0f / (1.0f + fexp(-x)); }
/* 1 - 2/(1 + e^{2x}): exact limits at +-inf, absolute error ~1e-7 near 0. */
static inline float ftanh(float x) { return 1.0f - 2.0f / (1.0f + fexp(2.0f * x)); }

/* The gate loops are compiled twice, for AVX-512 and for the baseline, and picked at load
 * time: the clamps in fexp vectorise only with masked moves (or -fno-trapping-math). */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__)
#define LSTM_CLONES __attribute__((target_clones("arch=x86-64-v4", "default")))
#else
#define LSTM_CLONES
#endif

/* Rows of work below which OpenMP costs more than it saves. */
#define LSTM_PAR_MIN 8192

/* ---- forward ----------------------------------------------------------------------------- */

/* One batch row of step t: gt (4H) pre-activations without bias -> activations i, f, g, o;
 * writes ct = c_t and yt = h_t from cp = c_{t-1}. */
LSTM_CLONES static void fwd_row(float *restrict gt, const float *restrict bias, const float *restrict cp,
                                float *restrict ct, float *restrict yt, int64_t H)
{
#pragma omp simd
    for (int64_t j = 0; j < H; j++) {
        float i = fsigmoid(gt[j] + bias[j]);
        float f = fsigmoid(gt[H + j] + bias[H + j]);
        float g = ftanh(gt[2 * H + j] + bias[2 * H + j]);
        float o = fsigmoid(gt[3 * H + j] + bias[3 * H + j]);
        float c = f * cp[j] + i * g;
        gt[j] = i;
        gt[H + j] = f;
        gt[2 * H + j] = g;
        gt[3 * H + j] = o;
        ct[j] = c;
        yt[j] = o * ftanh(c);
    }
}

/* Gate math of step t for every batch row (gates[:, t] holds x_t @ w_ih^T + h_{t-1} @ w_hh^T). */
static void fwd_step(const kiln_lstm_args *a, const float *bias, const float *zeros, int64_t t)
{
    const int64_t B = a->B, T = a->T, H = a->H, G = 4 * H;
#pragma omp parallel for if (B * G >= LSTM_PAR_MIN) schedule(static)
    for (int64_t b = 0; b < B; b++) {
        const float *cp = t > 0 ? a->cell + (b * T + t - 1) * H : a->c0 ? a->c0 + b * H : zeros;
        fwd_row(a->gates + (b * T + t) * G, bias, cp, a->cell + (b * T + t) * H, a->y + (b * T + t) * H, H);
    }
}

kiln_status kiln__cpu_lstm_fwd(kiln_ctx *ctx, const kiln_lstm_args *a)
{
    const int64_t B = a->B, T = a->T, I = a->I, H = a->H, G = 4 * H;
    float *bias = kiln_step_alloc(ctx, (size_t)(G + H) * sizeof(float)); /* (4H) b_ih + b_hh, then (H) zeros */
    if (!bias) return KILN_STATUS_NOMEM;
    float *zeros = bias + G;
    for (int64_t g = 0; g < G; g++) bias[g] = (a->b_ih ? a->b_ih[g] : 0.0f) + (a->b_hh ? a->b_hh[g] : 0.0f);
    memset(zeros, 0, (size_t)H * sizeof(float));

    /* gates (B*T, 4H) = x (B*T, I) @ w_ih^T */
    kiln_status st = sgemm('N', 'T', B * T, G, I, 1.0f, a->x, I, a->w_ih, I, 0.0f, a->gates, G);
    if (st < 0) return st;
    lstm_rec rec;
    st = rec_init(ctx, &rec, a->w_hh, B, H, G, false); /* h (B, H) @ w_hh^T */
    if (st < 0) return st;
    for (int64_t t = 0; t < T; t++) {
        /* gates[:, t] (B, 4H; rows T*4H apart) += h_{t-1} (B, H) @ w_hh^T */
        const float *hp = t > 0 ? a->y + (t - 1) * H : a->h0;
        if (hp) {
            st = rec_run(&rec, hp, t > 0 ? T * H : H, a->gates + t * G, T * G, 1.0f);
            if (st < 0) break;
        }
        fwd_step(a, bias, zeros, t);
    }
    rec_free(&rec);
    if (st < 0) return st;
    for (int64_t b = 0; b < B; b++) {
        if (a->h_n) memcpy(a->h_n + b * H, a->y + (b * T + T - 1) * H, (size_t)H * sizeof(float));
        if (a->c_n) memcpy(a->c_n + b * H, a->cell + (b * T + T - 1) * H, (size_t)H * sizeof(float));
    }
    return KILN_STATUS_OK;
}

/* ---- backward ---------------------------------------------------------------------------- */

/* One batch row of step t. In: gt (4H) activations i, f, g, o; ct = c_t, cp = c_{t-1};
 * dh = dL/dh_t from later steps, gy = dL/dy_t; dc = dL/dc_t from later steps.
 * Out: gt = dL/d(pre-activations), dc = dL/dc_{t-1}. */
LSTM_CLONES static void bwd_row(float *restrict gt, const float *restrict ct, const float *restrict cp,
                                const float *restrict dh, const float *restrict gy, float *restrict dc,
                                int64_t H)
{
#pragma omp simd
    for (int64_t j = 0; j < H; j++) {
        float i = gt[j], f = gt[H + j], g = gt[2 * H + j], o = gt[3 * H + j];
        float tc = ftanh(ct[j]);
        float dht = dh[j] + gy[j];
        float dct = dc[j] + dht * o * (1.0f - tc * tc);
        gt[j] = dct * g * i * (1.0f - i);
        gt[H + j] = dct * cp[j] * f * (1.0f - f);
        gt[2 * H + j] = dct * i * (1.0f - g * g);
        gt[3 * H + j] = dht * tc * o * (1.0f - o);
        dc[j] = dct * f;
    }
}

/* Gradient math of step t for every batch row; dh, dc (B, H). */
static void bwd_step(const kiln_lstm_args *a, const float *dh, float *dc, const float *zeros, int64_t t)
{
    const int64_t B = a->B, T = a->T, H = a->H, G = 4 * H;
#pragma omp parallel for if (B * G >= LSTM_PAR_MIN) schedule(static)
    for (int64_t b = 0; b < B; b++) {
        const float *cp = t > 0 ? a->cell + (b * T + t - 1) * H : a->c0 ? a->c0 + b * H : zeros;
        const float *gy = a->gy ? a->gy + (b * T + t) * H : zeros;
        bwd_row(a->gates + (b * T + t) * G, a->cell + (b * T + t) * H, cp, dh + b * H, gy, dc + b * H, H);
    }
}

/* out (4H) += column sums of d (R, 4H). */
static void colsum_add(const float *d, int64_t R, int64_t G, float *out1, float *out2)
{
    const int64_t CH = 256; /* columns per chunk: rows are walked in cache-friendly strips */
#pragma omp parallel for if (R * G >= 4 * LSTM_PAR_MIN) schedule(static)
    for (int64_t g0 = 0; g0 < G; g0 += CH) {
        float acc[256];
        int64_t n = G - g0 < CH ? G - g0 : CH;
        for (int64_t j = 0; j < n; j++) acc[j] = 0.0f;
        for (int64_t r = 0; r < R; r++) {
            const float *row = d + r * G + g0;
#pragma omp simd
            for (int64_t j = 0; j < n; j++) acc[j] += row[j];
        }
        for (int64_t j = 0; j < n; j++) {
            if (out1) out1[g0 + j] += acc[j];
            if (out2) out2[g0 + j] += acc[j];
        }
    }
}

kiln_status kiln__cpu_lstm_bwd(kiln_ctx *ctx, const kiln_lstm_args *a)
{
    const int64_t B = a->B, T = a->T, I = a->I, H = a->H, G = 4 * H;
    float *dh = kiln_step_alloc(ctx, (size_t)(3 * B * H) * sizeof(float)); /* (B, H) x3: dh, dc, zeros */
    if (!dh) return KILN_STATUS_NOMEM;
    float *dc = dh + B * H, *zeros = dc + B * H;
    memset(zeros, 0, (size_t)(B * H) * sizeof(float));
    if (a->gh_n) memcpy(dh, a->gh_n, (size_t)(B * H) * sizeof(float));
    else memset(dh, 0, (size_t)(B * H) * sizeof(float));
    if (a->gc_n) memcpy(dc, a->gc_n, (size_t)(B * H) * sizeof(float));
    else memset(dc, 0, (size_t)(B * H) * sizeof(float));

    lstm_rec rec;
    kiln_status st = rec_init(ctx, &rec, a->w_hh, B, H, G, true); /* dg (B, 4H) @ w_hh */
    if (st < 0) return st;
    for (int64_t t = T - 1; t >= 0; t--) {
        bwd_step(a, dh, dc, zeros, t);
        /* dh_{t-1} (B, H) = dgates_t (B, 4H; rows T*4H apart) @ w_hh (4H, H) */
        if (t > 0) st = rec_run(&rec, a->gates + t * G, T * G, dh, H, 0.0f);
        else if (a->gh0) st = rec_run(&rec, a->gates, T * G, a->gh0, H, 1.0f);
        if (st < 0) break;
    }
    rec_free(&rec);
    if (st < 0) return st;
    if (a->gc0)
        for (int64_t k = 0; k < B * H; k++) a->gc0[k] += dc[k];

    const float *dg = a->gates; /* (B*T, 4H) */
    if (a->gx) { /* gx (B*T, I) += dg @ w_ih */
        st = sgemm('N', 'N', B * T, I, G, 1.0f, dg, G, a->w_ih, I, 1.0f, a->gx, I);
        if (st < 0) return st;
    }
    if (a->gw_ih) { /* gw_ih (4H, I) += dg^T @ x */
        st = sgemm('T', 'N', G, I, B * T, 1.0f, dg, G, a->x, I, 1.0f, a->gw_ih, I);
        if (st < 0) return st;
    }
    if (a->gw_hh && (T > 1 || a->h0)) { /* gw_hh (4H, H) += dg^T @ hprev, hprev (B*T, H) = h_{t-1} */
        float *hp = kiln_step_alloc(ctx, (size_t)(B * T * H) * sizeof(float));
        if (!hp) return KILN_STATUS_NOMEM;
#pragma omp parallel for if (B * T * H >= 4 * LSTM_PAR_MIN) schedule(static)
        for (int64_t b = 0; b < B; b++) {
            float *row = hp + b * T * H;
            if (a->h0) memcpy(row, a->h0 + b * H, (size_t)H * sizeof(float));
            else memset(row, 0, (size_t)H * sizeof(float));
            memcpy(row + H, a->y + b * T * H, (size_t)((T - 1) * H) * sizeof(float));
        }
        st = sgemm('T', 'N', G, H, B * T, 1.0f, dg, G, hp, H, 1.0f, a->gw_hh, H);
        if (st < 0) return st;
    }
    if (a->gb_ih || a->gb_hh) colsum_add(dg, B * T, G, a->gb_ih, a->gb_hh);
    return KILN_STATUS_OK;
}

