/* Tests of the optimizer's vectorised loops and of the sparse (lazy) Adam step
 * (kiln_optim_set_sparse, include/kiln/optim.h):
 *   - the vectorised element loops give the same bits as the scalar loop they replaced
 *     (the expressions of PyTorch's order, written out here), over awkward lengths and values;
 *   - a lazy step equals dense AdamW bit for bit when every row gets gradient every step
 *     (an embedding table, its bias table, and a linear weight whose dense gradient makes it
 *     step densely), with L2 Adam too, and when the embedding reads a view of the table;
 *   - rows without gradient do not move (weights and both moments), rows with gradient take
 *     the dense update, zero_grad leaves the whole gradient zero;
 *   - the state saved through kiln_optim_save_st and loaded into a new optimizer (the flag
 *     set again) continues a lazy run bit for bit;
 *   - bad calls by message.
 * Every comparison is exact (memcmp): the paths do the same float operations per element. */
#include "util/ku.h"
#include "kiln/optim.h"
#include "optim/optim_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- the loops against the scalar code they replaced ------------------------------------------ */

static void adam_scalar(float *p, const float *g, float *m, float *v, int64_t n, kiln__adam_h h)
{
    for (int64_t i = 0; i < n; i++) {
        float pi = p[i], d = g[i];
        if (h.decoupled) pi = pi * h.decay;
        if (h.use_l2) d = d + h.l2 * pi;
        float mi = m[i] * h.b1 + h.omb1 * d;
        float vi = v[i] * h.b2 + h.omb2 * d * d;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / h.bc2_sqrt + h.eps;
        p[i] = pi + h.neg_step * mi / denom;
    }
}

static void sgd_scalar(float *p, const float *g, float *buf, int64_t n, kiln__sgd_h h)
{
    for (int64_t i = 0; i < n; i++) {
        float pi = p[i], d = g[i];
        if (h.decoupled) pi = pi * h.decay;
        if (h.use_l2) d = d + h.l2 * pi;
        if (h.use_mom) {
            float b = h.first ? d : buf[i] * h.mom + h.damp1 * d;
            buf[i] = b;
            d = h.nesterov ? d + h.mom * b : b;
        }
        p[i] = pi + h.neg_lr * d;
    }
}

/* n values, normal, with zeros, a denormal, huge and tiny ones sprinkled in */
static void fill(kiln_ctx *ctx, float *x, int64_t n, float scale)
{
    kiln_rng_normal(ctx, x, n, 0, scale);
    for (int64_t i = 0; i < n; i += 7) x[i] = 0.0f;
    for (int64_t i = 3; i < n; i += 31) x[i] = 1e-40f;
    for (int64_t i = 5; i < n; i += 53) x[i] = 3e18f;
    for (int64_t i = 11; i < n; i += 97) x[i] = -2e-30f;
}

Test(optim_sparse, loops_match_scalar)
{
    kiln_ctx *ctx = ku_ctx();
    const int64_t lens[] = {1, 15, 16, 17, 33, 4095, 10007};
    enum { N = 10007 };
    static float p0[N], g[N], m0[N], v0[N], p[2][N], m[2][N], v[2][N];
    fill(ctx, p0, N, 1.0f);
    fill(ctx, g, N, 0.3f);
    fill(ctx, m0, N, 0.1f);
    fill(ctx, v0, N, 0.1f);
    for (int64_t i = 0; i < N; i++) v0[i] = fabsf(v0[i]);
    for (int variant = 0; variant < 3; variant++) {
        kiln__adam_h h = {.decay = 1.0f - 5e-3f * 0.1f, .l2 = 0.1f, .b1 = 0.9f, .omb1 = 0.1f, .b2 = 0.99f,
                          .omb2 = (float)(1.0 - 0.99), .bc2_sqrt = (float)sqrt(1.0 - pow(0.99, 3)), .eps = 1e-5f,
                          .neg_step = (float)(-5e-3 / (1.0 - pow(0.9, 3))), .decoupled = variant == 0,
                          .use_l2 = variant == 1};
        for (size_t k = 0; k < sizeof lens / sizeof *lens; k++) {
            int64_t n = lens[k];
            for (int c = 0; c < 2; c++) {
                memcpy(p[c], p0, sizeof p0), memcpy(m[c], m0, sizeof m0), memcpy(v[c], v0, sizeof v0);
            }
            adam_scalar(p[0], g, m[0], v[0], n, h);
            kiln__adam_run(p[1], g, m[1], v[1], n, &h);
            cr_assert(!memcmp(p[0], p[1], sizeof p0) && !memcmp(m[0], m[1], sizeof m0) &&
                          !memcmp(v[0], v[1], sizeof v0),
                      "adam variant %d, n %lld: the vector loop differs from the scalar one", variant, (long long)n);
        }
    }
    for (int variant = 0; variant < 4; variant++) {
        kiln__sgd_h h = {.neg_lr = -0.05f, .decay = 1.0f - 0.05f * 0.01f, .l2 = 0.01f, .mom = 0.9f, .damp1 = 0.7f,
                         .decoupled = variant == 1, .use_l2 = variant != 1, .use_mom = variant != 3,
                         .first = variant == 2, .nesterov = variant == 0};
        for (size_t k = 0; k < sizeof lens / sizeof *lens; k++) {
            int64_t n = lens[k];
            for (int c = 0; c < 2; c++) memcpy(p[c], p0, sizeof p0), memcpy(m[c], m0, sizeof m0);
            sgd_scalar(p[0], g, m[0], n, h);
            kiln__sgd_run(p[1], g, m[1], n, &h);
            cr_assert(!memcmp(p[0], p[1], sizeof p0) && !memcmp(m[0], m[1], sizeof m0),
                      "sgd variant %d, n %lld: the vector loop differs from the scalar one", variant, (long long)n);
        }
    }
    ku_ctx_free(ctx);
}

/* ---- a small embedding model ------------------------------------------------------------------ *
 * W (V, D) and B (V, 1) read by kiln_embedding, L (D, D) by a matmul (a dense gradient):
 *   loss = mse(sum((emb(idx, W) @ L) * emb(idx, W), 1) + emb(idx, B), y). */
enum { V = 12, D = 5, BS = 16, STEPS = 6 };

typedef struct net {
    kiln_store *s;
    kiln_tensor *w, *b, *l;
    kiln_optim *opt;
} net;

static void net_make(net *n, kiln_ctx *ctx, bool decoupled, bool sparse)
{
    n->s = kiln_store_new();
    n->w = kiln_store_param(n->s, "emb.weight", 2, (int64_t[]){V, D});
    n->b = kiln_store_param(n->s, "bias.weight", 2, (int64_t[]){V, 1});
    n->l = kiln_store_param(n->s, "lin.weight", 2, (int64_t[]){D, D});
    cr_assert(n->w && n->b && n->l && kiln_store_alloc(n->s) == KILN_STATUS_OK);
    kiln_ctx *c0 = ku_ctx(); /* the same initial values whatever ctx has drawn */
    kiln_rng_normal(c0, n->w->data, V * D, 0, 0.5f);
    kiln_rng_normal(c0, n->b->data, V, 0, 0.5f);
    kiln_rng_normal(c0, n->l->data, D * D, 0, 0.5f);
    ku_ctx_free(c0);
    (void)ctx;
    kiln_adam_params p = kiln_adam_default_params();
    p.lr = 5e-2;
    p.weight_decay = 0.1;
    p.decoupled_wd = decoupled;
    n->opt = kiln_optim_new_adam(n->s, &p);
    cr_assert(n->opt);
    if (sparse)
        cr_assert(kiln_optim_set_sparse(n->opt, KILN_OPTIM_ALL_PARAMS, true) == KILN_STATUS_OK, "%s",
                  kiln_last_error());
}

static void net_free(net *n)
{
    kiln_optim_free(n->opt);
    kiln_store_free(n->s);
}

/* The batch of step k: every row when all_rows (a permutation, then more), else rows 1 and 4. */
static void batch(int k, bool all_rows, int64_t *idx, float *y)
{
    for (int i = 0; i < BS; i++) {
        idx[i] = all_rows ? (i * 5 + k) % V : (i % 3 == 0 ? 4 : 1);
        y[i] = (float)((i * 7 + k * 3) % 11) / 4.0f - 1.0f;
    }
}

/* One step: zero_grad, forward, backward, optimizer step. view: the embedding reads W through
 * a slice of all its rows (another tensor over the same memory). */
static void net_step(net *n, kiln_ctx *ctx, int k, bool all_rows, bool view)
{
    int64_t idx[BS];
    float y[BS];
    batch(k, all_rows, idx, y);
    kiln_tensor ti, ty;
    kiln_tensor *xi = kiln_tensor_wrap(&ti, KILN_DTYPE_I64, 1, (int64_t[]){BS}, idx);
    kiln_tensor *yt = kiln_tensor_wrap(&ty, KILN_DTYPE_F32, 1, (int64_t[]){BS}, y);
    kiln_mark mk = kiln_step_mark(ctx);
    kiln_optim_zero_grad(n->opt);
    kiln_tensor *w = view ? kiln_slice(ctx, n->w, 0, 0, V, 1) : n->w;
    kiln_tensor *e = kiln_embedding(ctx, xi, w);                                         /* (BS, D) */
    kiln_tensor *q = kiln_sum_dims(ctx, kiln_mul(ctx, kiln_matmul(ctx, e, n->l), e), 1, (int[]){1}, false); /* (BS) */
    kiln_tensor *r = kiln_add(ctx, q, kiln_squeeze(ctx, kiln_embedding(ctx, xi, n->b), 1));
    kiln_tensor *loss = kiln_mse_loss(ctx, r, yt, KILN_REDUCTION_MEAN);
    cr_assert(loss && kiln_backward(ctx, loss) == KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert(kiln_optim_step(n->opt) == KILN_STATUS_OK);
    kiln_step_rewind(ctx, mk);
}

static void expect_same(net *a, net *b, const char *what)
{
    size_t na, nb;
    float *pa = kiln_store_flat(a->s, KILN_STORE_PARAMS, &na), *pb = kiln_store_flat(b->s, KILN_STORE_PARAMS, &nb);
    cr_assert(na == nb && !memcmp(pa, pb, na * sizeof(float)), "%s: parameters differ", what);
    for (size_t i = 0; i < kiln_optim_state_count(a->opt); i++) {
        kiln_optim_state ea, eb;
        kiln_optim_state_at(a->opt, i, &ea);
        kiln_optim_state_at(b->opt, i, &eb);
        cr_assert(!memcmp(ea.data, eb.data, ea.numel * kiln_dtype_size(ea.dtype)), "%s: state '%s' differs", what,
                  ea.name);
    }
}

static void dense_vs_sparse(bool decoupled, bool view)
{
    kiln_ctx *ctx = ku_ctx();
    net d, s;
    net_make(&d, ctx, decoupled, false);
    net_make(&s, ctx, decoupled, true);
    for (int k = 0; k < STEPS; k++) {
        net_step(&d, ctx, k, true, view);
        net_step(&s, ctx, k, true, view);
        expect_same(&d, &s, decoupled ? "AdamW, every row touched" : "Adam L2, every row touched");
    }
    net_free(&d);
    net_free(&s);
    ku_ctx_free(ctx);
}

Test(optim_sparse, equals_dense_adamw_when_every_row_is_touched) { dense_vs_sparse(true, false); }
Test(optim_sparse, equals_dense_adam_l2_when_every_row_is_touched) { dense_vs_sparse(false, false); }
Test(optim_sparse, embedding_over_a_view_steps_densely) { dense_vs_sparse(true, true); }

Test(optim_sparse, untouched_rows_do_not_move)
{
    kiln_ctx *ctx = ku_ctx();
    net d, s;
    net_make(&d, ctx, true, false);
    net_make(&s, ctx, true, true);
    float w0[V * D], b0[V];
    memcpy(w0, s.w->data, sizeof w0);
    memcpy(b0, s.b->data, sizeof b0);
    /* the first step from zero moments: touched rows and the dense linear weight as dense AdamW */
    net_step(&d, ctx, 0, false, false);
    net_step(&s, ctx, 0, false, false);
    const float *wd = d.w->data, *ws = s.w->data;
    for (int r = 0; r < V; r++) {
        bool touched = r == 1 || r == 4;
        int same = !memcmp(ws + r * D, w0 + r * D, D * sizeof(float));
        if (touched) {
            cr_assert(!memcmp(ws + r * D, wd + r * D, D * sizeof(float)), "touched row %d differs from dense AdamW", r);
            cr_assert(!same, "touched row %d did not move", r);
        } else {
            cr_assert(same, "untouched row %d moved", r);
            cr_assert(memcmp(wd + r * D, w0 + r * D, D * sizeof(float)), "dense AdamW should decay row %d", r);
        }
    }
    cr_assert(!memcmp(s.l->data, d.l->data, D * D * sizeof(float)), "the dense parameter differs");
    for (int k = 1; k < STEPS; k++) net_step(&s, ctx, k, false, false);
    kiln_optim_state m, v;
    kiln_optim_state_at(s.opt, 0, &m);
    kiln_optim_state_at(s.opt, 1, &v);
    size_t ow = (size_t)((float *)s.w->data - kiln_store_flat(s.s, KILN_STORE_PARAMS, NULL));
    size_t ob = (size_t)((float *)s.b->data - kiln_store_flat(s.s, KILN_STORE_PARAMS, NULL));
    for (int r = 0; r < V; r++) {
        if (r == 1 || r == 4) continue;
        cr_assert(!memcmp(ws + r * D, w0 + r * D, D * sizeof(float)), "untouched row %d moved after %d steps", r,
                  STEPS);
        cr_assert(((const float *)s.b->data)[r] == b0[r], "untouched bias %d moved", r);
        for (int j = 0; j < D; j++)
            cr_assert(((float *)m.data)[ow + r * D + j] == 0 && ((float *)v.data)[ow + r * D + j] == 0,
                      "moments of untouched row %d changed", r);
        cr_assert(((float *)m.data)[ob + r] == 0, "moment of untouched bias %d changed", r);
    }
    /* zero_grad leaves the whole gradient zero (only the listed rows were written) */
    kiln_optim_zero_grad(s.opt);
    size_t ng;
    const float *g = kiln_store_flat(s.s, KILN_STORE_GRADS, &ng);
    for (size_t i = 0; i < ng; i++) cr_assert(g[i] == 0.0f, "gradient %zu not zeroed", i);
    net_free(&d);
    net_free(&s);
    ku_ctx_free(ctx);
}

Test(optim_sparse, state_round_trip_continues_bit_for_bit)
{
    kiln_ctx *ctx = ku_ctx();
    net a, b;
    net_make(&a, ctx, true, true);
    for (int k = 0; k < STEPS; k++) net_step(&a, ctx, k, k % 2 == 0, false);

    net_make(&b, ctx, true, true);
    for (int k = 0; k < STEPS / 2; k++) net_step(&b, ctx, k, k % 2 == 0, false);
    char path[] = "/tmp/kiln_optim_sparse_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    kiln_st_writer *w = kiln_st_writer_new();
    cr_assert(w && kiln_optim_save_st(b.opt, w, "optim") == KILN_STATUS_OK);
    size_t np;
    float *pb = kiln_store_flat(b.s, KILN_STORE_PARAMS, &np);
    cr_assert(kiln_st_writer_add(w, "params", KILN_DTYPE_F32, 1, (int64_t[]){(int64_t)np}, pb) == KILN_STATUS_OK);
    cr_assert(kiln_st_writer_save(w, path) == KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_st_writer_free(w);
    net_free(&b);

    net c;
    net_make(&c, ctx, true, true);
    kiln_st_file *f;
    cr_assert(kiln_st_open(path, &f) == KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert(kiln_optim_load_st(c.opt, f, "optim") == KILN_STATUS_OK, "%s", kiln_last_error());
    const void *saved;
    cr_assert(kiln_st_want(f, "params", KILN_DTYPE_F32, 1, (int64_t[]){(int64_t)np}, &saved) == KILN_STATUS_OK);
    memcpy(kiln_store_flat(c.s, KILN_STORE_PARAMS, NULL), saved, np * sizeof(float));
    kiln_st_close(f);
    unlink(path);
    for (int k = STEPS / 2; k < STEPS; k++) net_step(&c, ctx, k, k % 2 == 0, false);
    expect_same(&a, &c, "saved after 3 lazy steps, loaded, 3 more");
    net_free(&a);
    net_free(&c);
    ku_ctx_free(ctx);
}

Test(optim_sparse, flags_and_bad_calls)
{
    kiln_store *s = kiln_store_new();
    cr_assert(kiln_store_param(s, "w", 2, (int64_t[]){3, 2}) && kiln_store_buffer(s, "rm", 1, (int64_t[]){2}));
    cr_assert(kiln_store_alloc(s) == KILN_STATUS_OK);
    kiln_sgd_params sp = kiln_sgd_default_params();
    kiln_optim *sgd = kiln_optim_new_sgd(s, &sp);
    cr_assert(kiln_optim_set_sparse(sgd, 0, true) == KILN_STATUS_INVALID);
    ku_expect_error("sparse step is Adam's", "sgd");
    cr_assert(kiln_optim_set_sparse(sgd, 0, false) == KILN_STATUS_OK, "turning it off is always fine");
    kiln_optim_free(sgd);
    kiln_adam_params ap = kiln_adam_default_params();
    kiln_optim *o = kiln_optim_new_adam(s, &ap);
    cr_assert(!kiln_optim_is_sparse(o, 0));
    cr_assert(kiln_optim_set_sparse(o, 1, true) == KILN_STATUS_INVALID);
    ku_expect_error("is a buffer", "buffer");
    cr_assert(kiln_optim_set_sparse(o, 7, true) == KILN_STATUS_INVALID);
    ku_expect_error("out of range", "index");
    cr_assert(kiln_optim_set_sparse(o, KILN_OPTIM_ALL_PARAMS, true) == KILN_STATUS_OK);
    cr_assert(kiln_optim_is_sparse(o, 0) && !kiln_optim_is_sparse(o, 1));
    cr_assert(kiln_store_at(s, 0)->rows != NULL, "the store tracks the rows");
    cr_assert(kiln_optim_set_sparse(o, 0, false) == KILN_STATUS_OK && !kiln_optim_is_sparse(o, 0));
    cr_assert(kiln_store_at(s, 0)->rows == NULL, "tracking stops with the flag");
    cr_assert(kiln_optim_set_sparse(o, 0, true) == KILN_STATUS_OK);
    kiln_optim_free(o);
    cr_assert(kiln_store_at(s, 0)->rows == NULL, "tracking stops with the optimizer");
    kiln_store_free(s);
}
