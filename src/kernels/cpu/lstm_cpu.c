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
#include "core/parallel.h"
#include "kernels/rnn.h"
#include "kernels/cpu/dnnl_util.h"

#include <math.h>
#include <string.h>

/* ---- GEMM ---------------------------------------------------------------------------- *
 * Both kinds of product come from oneDNN, which threads with kiln's OpenMP runtime
 * (Debian's OpenBLAS is the pthreads build and, on this CPU, falls back to old kernels).
 *   whole-sequence products (run once): dnnl_sgemm, the fastest for these shapes;
 *     transposes and strided rows need no copies.
 *   per-step products against w_hh (B rows, run T times): a matmul primitive whose w_hh
 *     is reordered once per call into the layout it prefers ("packed", in the step arena),
 *     with contiguous (B, .) operands that the gate loops write as they go. About 1.5x
 *     faster than sgemm, which re-packs the weights on every call, and than reading the
 *     rows of one step in place (T*4H floats apart). */

#define S2(r, c) ((const int64_t[2]){(r), (c)})

/* Row-major C (M, N) = op(A) @ op(B) [+ C when acc], op = transpose when t* is 'T'. */
static kiln_status sgemm(kiln_ctx *ctx, char ta, char tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *Bm, int64_t ldb, float *C, int64_t ldc, bool acc)
{
    kiln__dnnl_threads(ctx);
    dnnl_status_t s = dnnl_sgemm(ta, tb, M, N, K, 1.0f, A, lda, Bm, ldb, acc ? 1.0f : 0.0f, C, ldc);
    if (s != dnnl_success)
        return kiln__err(KILN_STATUS_BACKEND, "lstm: oneDNN sgemm (%lld x %lld x %lld) failed: %s", (long long)M,
                         (long long)N, (long long)K, kiln__dnnl_status_str(s));
    return KILN_STATUS_OK;
}

/* A product with a fixed, packed right-hand side, run many times. */
typedef struct lstm_mm {
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, c, scratch; /* a and c get their data per run */
} lstm_mm;

static void mm_free(lstm_mm *m)
{
    if (m->prim) dnnl_primitive_destroy(m->prim);
    dnnl_memory_t mem[4] = {m->a, m->b, m->c, m->scratch};
    for (int i = 0; i < 4; i++)
        if (mem[i]) dnnl_memory_destroy(mem[i]);
    memset(m, 0, sizeof *m);
}

/* Objects that live only during mm_init. */
typedef struct mm_tmp {
    dnnl_primitive_attr_t attr;
    dnnl_primitive_desc_t pd, rpd;
    dnnl_primitive_t rp;
    dnnl_memory_t src_b;
} mm_tmp;

static void mm_tmp_free(mm_tmp *t)
{
    if (t->attr) dnnl_primitive_attr_destroy(t->attr);
    if (t->pd) dnnl_primitive_desc_destroy(t->pd);
    if (t->rpd) dnnl_primitive_desc_destroy(t->rpd);
    if (t->rp) dnnl_primitive_destroy(t->rp);
    if (t->src_b) dnnl_memory_destroy(t->src_b);
}

#define MM_TRY(what, call)                                                                              \
    do {                                                                                                \
        dnnl_status_t s_ = (call);                                                                      \
        if (s_ != dnnl_success) {                                                                       \
            mm_tmp_free(&t);                                                                            \
            mm_free(m);                                                                                 \
            return kiln__err(KILN_STATUS_BACKEND, "lstm: oneDNN %s failed: %s", what, kiln__dnnl_status_str(s_)); \
        }                                                                                               \
    } while (0)

/* Prepares C (M, N) = A (M, K) @ B (K, N) for many contiguous A and C, with B's data
 * (element strides sb: row, column) reordered now into an arena buffer. */
static kiln_status mm_init(kiln_ctx *ctx, lstm_mm *m, int64_t M, int64_t N, int64_t K, const float *Bm,
                           const int64_t sb[2])
{
    memset(m, 0, sizeof *m);
    mm_tmp t = {0};
    dnnl_engine_t eng = kiln__dnnl_engine(ctx);
    dnnl_stream_t stream = kiln__dnnl_stream(ctx);
    dnnl_memory_desc_t ma, mb, mbw, mc;
    MM_TRY("memory desc", dnnl_memory_desc_init_by_tag(&ma, 2, (dnnl_dims_t){M, K}, dnnl_f32, dnnl_ab));
    MM_TRY("memory desc", dnnl_memory_desc_init_by_strides(&mb, 2, (dnnl_dims_t){K, N}, dnnl_f32,
                                                           (dnnl_dims_t){sb[0], sb[1]}));
    MM_TRY("memory desc", dnnl_memory_desc_init_by_tag(&mc, 2, (dnnl_dims_t){M, N}, dnnl_f32, dnnl_ab));
    MM_TRY("memory desc", dnnl_memory_desc_init_by_tag(&mbw, 2, (dnnl_dims_t){K, N}, dnnl_f32, dnnl_format_tag_any));
    dnnl_matmul_desc_t md;
    MM_TRY("matmul desc", dnnl_matmul_desc_init(&md, &ma, &mbw, NULL, &mc));
    MM_TRY("attr", dnnl_primitive_attr_create(&t.attr));
    MM_TRY("attr", dnnl_primitive_attr_set_scratchpad_mode(t.attr, dnnl_scratchpad_mode_user));
    MM_TRY("matmul primitive desc", dnnl_primitive_desc_create(&t.pd, &md, t.attr, eng, NULL));
    MM_TRY("matmul primitive", dnnl_primitive_create(&m->prim, t.pd));
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(t.pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(t.pd, dnnl_query_scratchpad_md, 0);
    size_t sbytes = smd ? dnnl_memory_desc_get_size(smd) : 0;
    void *sp = sbytes ? kiln_step_alloc(ctx, sbytes) : NULL;
    void *wp = kiln_step_alloc(ctx, dnnl_memory_desc_get_size(wmd));
    if ((sbytes && !sp) || !wp) { /* the arena has set the message */
        mm_tmp_free(&t);
        mm_free(m);
        return KILN_STATUS_NOMEM;
    }
    if (sbytes) MM_TRY("memory", dnnl_memory_create(&m->scratch, smd, eng, sp));
    MM_TRY("memory", dnnl_memory_create(&m->a, &ma, eng, DNNL_MEMORY_NONE));
    MM_TRY("memory", dnnl_memory_create(&m->c, &mc, eng, DNNL_MEMORY_NONE));
    MM_TRY("memory", dnnl_memory_create(&m->b, wmd, eng, wp));
    MM_TRY("memory", dnnl_memory_create(&t.src_b, &mb, eng, (void *)Bm));
    MM_TRY("reorder desc", dnnl_reorder_primitive_desc_create(&t.rpd, &mb, eng, wmd, eng, NULL));
    MM_TRY("reorder", dnnl_primitive_create(&t.rp, t.rpd));
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, t.src_b}, {DNNL_ARG_TO, m->b}};
    MM_TRY("reorder", dnnl_primitive_execute(t.rp, stream, 2, args));
    MM_TRY("reorder", dnnl_stream_wait(stream));
    mm_tmp_free(&t);
    return KILN_STATUS_OK;
}

static kiln_status mm_run(kiln_ctx *ctx, lstm_mm *m, const float *A, float *C)
{
    dnnl_status_t s = dnnl_memory_set_data_handle(m->a, (void *)A);
    if (s == dnnl_success) s = dnnl_memory_set_data_handle(m->c, C);
    if (s == dnnl_success) {
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, m->a}, {DNNL_ARG_WEIGHTS, m->b}, {DNNL_ARG_DST, m->c},
                                   {DNNL_ARG_SCRATCHPAD, m->scratch}};
        s = dnnl_primitive_execute(m->prim, kiln__dnnl_stream(ctx), m->scratch ? 4 : 3, args);
    }
    if (s == dnnl_success) s = dnnl_stream_wait(kiln__dnnl_stream(ctx));
    if (s != dnnl_success)
        return kiln__err(KILN_STATUS_BACKEND, "lstm: oneDNN matmul failed: %s", kiln__dnnl_status_str(s));
    return KILN_STATUS_OK;
}


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

/* ---- forward ----------------------------------------------------------------------------- */

/* One batch row of step t. In: gt (4H) = x_t @ w_ih^T, rt (4H) = h_{t-1} @ w_hh^T, cp = c_{t-1}.
 * Out: gt = activations i, f, g, o; ct = c_t; yt = h = h_t (y's row and the next step's
 * GEMM input). */
LSTM_CLONES static void fwd_row(float *restrict gt, const float *restrict rt, const float *restrict bias,
                                const float *restrict cp, float *restrict ct, float *restrict yt,
                                float *restrict h, int64_t H)
{
#pragma omp simd
    for (int64_t j = 0; j < H; j++) {
        float i = fsigmoid(gt[j] + rt[j] + bias[j]);
        float f = fsigmoid(gt[H + j] + rt[H + j] + bias[H + j]);
        float g = ftanh(gt[2 * H + j] + rt[2 * H + j] + bias[2 * H + j]);
        float o = fsigmoid(gt[3 * H + j] + rt[3 * H + j] + bias[3 * H + j]);
        float c = f * cp[j] + i * g;
        float hv = o * ftanh(c);
        gt[j] = i;
        gt[H + j] = f;
        gt[2 * H + j] = g;
        gt[3 * H + j] = o;
        ct[j] = c;
        yt[j] = hv;
        h[j] = hv;
    }
}

/* c_t of batch row b: in the caller's (B, T, H) cell, or, when the caller keeps none, in the
 * forward's two rolling (B, H) rows roll (t even, t odd) */
static inline float *cell_at(const kiln_lstm_args *a, float *roll, int64_t b, int64_t t)
{
    return a->cell ? a->cell + (b * a->T + t) * a->H : roll + ((t & 1) * a->B + b) * a->H;
}

/* Gate math of step t for every batch row; rec (B, 4H) = h_{t-1} @ w_hh^T, h (B, H) <- h_t. */
static void fwd_step(kiln_ctx *ctx, const kiln_lstm_args *a, const float *rec, const float *bias, float *h,
                     const float *zeros, float *roll, int64_t t)
{
    const int64_t B = a->B, T = a->T, H = a->H, G = 4 * H;
    KILN_PAR_FOR(ctx, 4 * B * G) /* gate math: a few transcendentals per element */
    for (int64_t b = 0; b < B; b++) {
        const float *cp = t > 0 ? cell_at(a, roll, b, t - 1) : a->c0 ? a->c0 + b * H : zeros;
        fwd_row(a->gates + (b * T + t) * G, rec + b * G, bias, cp, cell_at(a, roll, b, t), a->y + (b * T + t) * H,
                h + b * H, H);
    }
}

/* cell (B, T, H) = c_t for every step, made again from the forward's activations i, f, g in gates
 * and c0, as fwd_row made them (the same products and sum: the same values) */
LSTM_CLONES static void cell_row(const float *restrict gt, const float *restrict cp, float *restrict ct, int64_t H)
{
#pragma omp simd
    for (int64_t j = 0; j < H; j++) ct[j] = gt[H + j] * cp[j] + gt[j] * gt[2 * H + j];
}

static void remake_cell(kiln_ctx *ctx, const kiln_lstm_args *a, const float *zeros, float *cell)
{
    const int64_t B = a->B, T = a->T, H = a->H, G = 4 * H;
    KILN_PAR_FOR(ctx, 3 * B * T * H)
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            const float *cp = t > 0 ? cell + (b * T + t - 1) * H : a->c0 ? a->c0 + b * H : zeros;
            cell_row(a->gates + (b * T + t) * G, cp, cell + (b * T + t) * H, H);
        }
}

static kiln_status lstm_fwd(kiln_ctx *ctx, const kiln_lstm_args *a)
{
    const int64_t B = a->B, T = a->T, I = a->I, H = a->H, G = 4 * H;
    /* (4H) b_ih + b_hh, (H) zeros, (B, 4H) h_{t-1} @ w_hh^T, (B, H) h_{t-1}, (2, B, H) c_t rolling
     * when the caller keeps no cell */
    float *bias = kiln_step_alloc(ctx, (size_t)(G + H + B * G + B * H + (a->cell ? 0 : 2 * B * H)) * sizeof(float));
    if (!bias) return KILN_STATUS_NOMEM;
    float *zeros = bias + G, *rec = zeros + H, *h = rec + B * G, *roll = h + B * H;
    for (int64_t g = 0; g < G; g++) bias[g] = (a->b_ih ? a->b_ih[g] : 0.0f) + (a->b_hh ? a->b_hh[g] : 0.0f);
    memset(zeros, 0, (size_t)H * sizeof(float));

    /* gates (B*T, 4H) = x (B*T, I) @ w_ih^T */
    kiln_status st = sgemm(ctx, 'N', 'T', B * T, G, I, a->x, I, a->w_ih, I, a->gates, G, false);
    if (st < 0) return st;
    /* per step: rec (B, 4H) = h_{t-1} (B, H) @ w_hh^T, w_hh^T = (H, 4H) with strides (1, H) */
    lstm_mm mm = {0};
    if (T > 1 || a->h0) st = mm_init(ctx, &mm, B, G, H, a->w_hh, S2(1, H));
    for (int64_t t = 0; t < T && st == KILN_STATUS_OK; t++) {
        if (t > 0 || a->h0) st = mm_run(ctx, &mm, t > 0 ? h : a->h0, rec);
        else memset(rec, 0, (size_t)(B * G) * sizeof(float));
        if (st == KILN_STATUS_OK) fwd_step(ctx, a, rec, bias, h, zeros, roll, t);
    }
    mm_free(&mm);
    if (st < 0) return st;
    for (int64_t b = 0; b < B; b++) {
        if (a->h_n) memcpy(a->h_n + b * H, h + b * H, (size_t)H * sizeof(float));
        if (a->c_n) memcpy(a->c_n + b * H, cell_at(a, roll, b, T - 1), (size_t)H * sizeof(float));
    }
    return KILN_STATUS_OK;
}

/* ---- backward ---------------------------------------------------------------------------- */

/* One batch row of step t. In: gt (4H) activations i, f, g, o; ct = c_t, cp = c_{t-1};
 * dh = dL/dh_t from later steps, gy = dL/dy_t; dc = dL/dc_t from later steps.
 * Out: gt = dg = dL/d(pre-activations) (dg is the contiguous copy for the step's GEMM),
 * dc = dL/dc_{t-1}. */
LSTM_CLONES static void bwd_row(float *restrict gt, float *restrict dg, const float *restrict ct,
                                const float *restrict cp, const float *restrict dh, const float *restrict gy,
                                float *restrict dc, int64_t H)
{
#pragma omp simd
    for (int64_t j = 0; j < H; j++) {
        float i = gt[j], f = gt[H + j], g = gt[2 * H + j], o = gt[3 * H + j];
        float tc = ftanh(ct[j]);
        float dht = dh[j] + gy[j];
        float dct = dc[j] + dht * o * (1.0f - tc * tc);
        float di = dct * g * i * (1.0f - i), df = dct * cp[j] * f * (1.0f - f);
        float dgg = dct * i * (1.0f - g * g), dov = dht * tc * o * (1.0f - o);
        gt[j] = dg[j] = di;
        gt[H + j] = dg[H + j] = df;
        gt[2 * H + j] = dg[2 * H + j] = dgg;
        gt[3 * H + j] = dg[3 * H + j] = dov;
        dc[j] = dct * f;
    }
}

/* Gradient math of step t for every batch row; dh, dc (B, H); dg (B, 4H) <- dgates_t. */
static void bwd_step(kiln_ctx *ctx, const kiln_lstm_args *a, const float *dh, float *dc, float *dg,
                     const float *zeros, int64_t t)
{
    const int64_t B = a->B, T = a->T, H = a->H, G = 4 * H;
    KILN_PAR_FOR(ctx, 4 * B * G) /* gate math: a few transcendentals per element */
    for (int64_t b = 0; b < B; b++) {
        const float *cp = t > 0 ? a->cell + (b * T + t - 1) * H : a->c0 ? a->c0 + b * H : zeros;
        const float *gy = a->gy ? a->gy + (b * T + t) * H : zeros;
        bwd_row(a->gates + (b * T + t) * G, dg + b * G, a->cell + (b * T + t) * H, cp, dh + b * H, gy,
                dc + b * H, H);
    }
}

/* out (4H) += column sums of d (R, 4H). */
static void colsum_add(kiln_ctx *ctx, const float *d, int64_t R, int64_t G, float *out1, float *out2)
{
    const int64_t CH = 256; /* columns per chunk: rows are walked in cache-friendly strips */
    KILN_PAR_FOR(ctx, R * G)
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

static kiln_status lstm_bwd(kiln_ctx *ctx, const kiln_lstm_args *a)
{
    const int64_t B = a->B, T = a->T, I = a->I, H = a->H, G = 4 * H;
    /* (B, H) x3: dh, dc, zeros; (B, 4H) dgates_t; (B, T, H) the cell states when the caller kept none */
    float *dh = kiln_step_alloc(ctx, (size_t)(3 * B * H + B * G + (a->cell ? 0 : B * T * H)) * sizeof(float));
    if (!dh) return KILN_STATUS_NOMEM;
    float *dc = dh + B * H, *zeros = dc + B * H, *dgt = zeros + B * H;
    memset(zeros, 0, (size_t)(B * H) * sizeof(float));
    kiln_lstm_args with_cell;
    if (!a->cell) { /* before the loop below turns the gates into their gradients */
        with_cell = *a;
        with_cell.cell = dgt + B * G;
        remake_cell(ctx, a, zeros, with_cell.cell);
        a = &with_cell;
    }
    if (a->gh_n) memcpy(dh, a->gh_n, (size_t)(B * H) * sizeof(float));
    else memset(dh, 0, (size_t)(B * H) * sizeof(float));
    if (a->gc_n) memcpy(dc, a->gc_n, (size_t)(B * H) * sizeof(float));
    else memset(dc, 0, (size_t)(B * H) * sizeof(float));

    /* per step: dh_{t-1} (B, H) = dgates_t (B, 4H) @ w_hh (4H, H) */
    lstm_mm mm = {0};
    kiln_status st = KILN_STATUS_OK;
    kiln_mark packed = kiln_step_mark(ctx); /* the packed w_hh is given back before hprev below takes memory */
    if (T > 1 || a->gh0) st = mm_init(ctx, &mm, B, H, G, a->w_hh, S2(H, 1));
    for (int64_t t = T - 1; t >= 0 && st == KILN_STATUS_OK; t--) {
        bwd_step(ctx, a, dh, dc, dgt, zeros, t);
        if (t > 0 || a->gh0) st = mm_run(ctx, &mm, dgt, dh);
    }
    mm_free(&mm);
    kiln_step_rewind(ctx, packed);
    if (st < 0) return st;
    if (a->gh0)
        for (int64_t k = 0; k < B * H; k++) a->gh0[k] += dh[k];
    if (a->gc0)
        for (int64_t k = 0; k < B * H; k++) a->gc0[k] += dc[k];

    const float *dg = a->gates; /* (B*T, 4H) */
    if (a->gx) { /* gx (B*T, I) += dg @ w_ih */
        st = sgemm(ctx, 'N', 'N', B * T, I, G, dg, G, a->w_ih, I, a->gx, I, true);
        if (st < 0) return st;
    }
    if (a->gw_ih) { /* gw_ih (4H, I) += dg^T @ x */
        st = sgemm(ctx, 'T', 'N', G, I, B * T, dg, G, a->x, I, a->gw_ih, I, true);
        if (st < 0) return st;
    }
    if (a->gw_hh && (T > 1 || a->h0)) { /* gw_hh (4H, H) += dg^T @ hprev, hprev (B*T, H) = h_{t-1} */
        float *hp = kiln_step_alloc(ctx, (size_t)(B * T * H) * sizeof(float));
        if (!hp) return KILN_STATUS_NOMEM;
        KILN_PAR_FOR(ctx, B * T * H)
        for (int64_t b = 0; b < B; b++) {
            float *row = hp + b * T * H;
            if (a->h0) memcpy(row, a->h0 + b * H, (size_t)H * sizeof(float));
            else memset(row, 0, (size_t)H * sizeof(float));
            memcpy(row + H, a->y + b * T * H, (size_t)((T - 1) * H) * sizeof(float));
        }
        st = sgemm(ctx, 'T', 'N', G, H, B * T, dg, G, hp, H, a->gw_hh, H, true);
        if (st < 0) return st;
    }
    if (a->gb_ih || a->gb_hh) colsum_add(ctx, dg, B * T, G, a->gb_ih, a->gb_hh);
    return KILN_STATUS_OK;
}

/* ---- table entries ----------------------------------------------------------------------- *
 * The scratch both directions take from the step arena (the packed w_hh and its scratchpad, 25 MB
 * for H = 1152; the per-step buffers; the backward's stacked h_{t-1}, (B*T, H)) is given back when
 * the kernel returns: a mark before, a rewind after, so only the caller's outputs stay. */

kiln_status kiln__cpu_lstm_fwd(kiln_ctx *ctx, const kiln_lstm_args *a)
{
    kiln_mark mk = kiln_step_mark(ctx);
    kiln_status st = lstm_fwd(ctx, a);
    kiln_step_rewind(ctx, mk);
    return st;
}

kiln_status kiln__cpu_lstm_bwd(kiln_ctx *ctx, const kiln_lstm_args *a)
{
    kiln_mark mk = kiln_step_mark(ctx);
    kiln_status st = lstm_bwd(ctx, a);
    kiln_step_rewind(ctx, mk);
    return st;
}
