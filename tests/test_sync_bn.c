/* SyncBatchNorm in one process (issue 13; the 2-rank test is tests/mpi/sync_bn.c):
 *   - kernels: both tables (CPU and reference), every layout BN sees ((N, C), (N, C, L),
 *     NCHW, channels-last), with and without affine and the fused ReLU: a batch split in two
 *     uneven parts along N (what two ranks hold), each part's first-pass sums
 *     (kiln_bn_geom.sums_out) added as the all-reduce would, then the second pass on each part
 *     (sums, count), must give the whole batch's plain y, mean, var, gx and (summed over the
 *     parts) gw, gb;
 *   - the op: kiln_sync_batch_norm(_relu) over kiln_comm_single() against kiln_batch_norm(_relu)
 *     (y, running statistics, gradients of x, weight, bias; eval mode bit for bit);
 *   - the model: kiln_model_sync_batchnorm with a 1-rank communicator (and NULL) keeps today's
 *     path, outputs and gradients bit for bit;
 *   - errors: NULL communicator, NULL model, one value per channel over every rank.
 * Tolerances (|got - want| <= atol + rtol * |want|): y, mean, var atol 1e-5, rtol 1e-5 (the
 * statistics come from f64 sum and sum of squares instead of two passes, ~1e-7 relative);
 * gx, gw, gb atol 2e-5, rtol 1e-4 (sums in another order, cancelling: as test_norm.c's CPU
 * against reference). */
#include "util/ku.h"
#include "kernels/conv.h"

#include <math.h>
#include <string.h>

static kiln_ctx *ctx;
static void setup(void) { ctx = ku_ctx(); }
static void teardown(void) { ku_ctx_free(ctx); }
TestSuite(sync_bn, .init = setup, .fini = teardown);

static float *rand_buf(int64_t n, float mean, float std)
{
    kiln_tensor *t = kiln_randn(ctx, 1, (int64_t[]){n}, mean, std);
    cr_assert(t != NULL);
    return t->data;
}

static float *zero_buf(int64_t n)
{
    float *p = rand_buf(n, 0, 1);
    memset(p, 0, (size_t)n * sizeof *p);
    return p;
}

/* ---- kernels: two parts of a batch against the whole --------------------------------------- */

static void split_kernels(const kiln_conv_kernels *K, const char *table, kiln_bn_geom g, bool affine, bool relu)
{
    const int64_t C = g.c, row = C * g.s, n = g.n * row; /* item i starts at i * row in both layouts */
    const int64_t n0 = g.n / 3, parts[2] = {n0, g.n - n0};
    float *x = rand_buf(n, 0.7f, 2.0f), *gy = rand_buf(n, 0.0f, 1.0f);
    float *w = affine ? rand_buf(C, 1.0f, 0.5f) : NULL, *b = affine ? rand_buf(C, 0.2f, 1.0f) : NULL;
    g.relu = relu, g.b = relu ? b : NULL;
    char what[160];
    snprintf(what, sizeof what, "%s (%lld, %lld, %lld) cl %d affine %d relu %d", table, (long long)g.n, (long long)C,
             (long long)g.s, g.cl, affine, relu);

    /* the whole batch, plain */
    float *y = zero_buf(n), *mean = zero_buf(C), *var = zero_buf(C), *gx = zero_buf(n);
    float *gw = affine ? zero_buf(C) : NULL, *gb = affine ? zero_buf(C) : NULL;
    cr_assert_eq(K->batch_norm_fwd(ctx, &g, true, 1e-5f, x, w, b, mean, var, y), KILN_STATUS_OK, "%s", what);
    cr_assert_eq(K->batch_norm_bwd(ctx, &g, true, 1e-5f, x, w, mean, var, gy, gx, false, gw, gb), KILN_STATUS_OK,
                 "%s", what);

    /* two parts: forward */
    /* forward / backward: each part's sums (2 x 2C), their total (2C) */
    const size_t dc = (size_t)C * sizeof(double);
    double *fs = kiln_step_alloc(ctx, 4 * dc), *ft = kiln_step_alloc(ctx, 2 * dc);
    double *bs = kiln_step_alloc(ctx, 4 * dc), *bt = kiln_step_alloc(ctx, 2 * dc);
    float *ys = zero_buf(n), *gxs = zero_buf(n), *scratch = zero_buf(2 * C), *ms[2], *vs[2];
    float *gws = affine ? zero_buf(C) : NULL, *gbs = affine ? zero_buf(C) : NULL;
    cr_assert(fs && ft && bs && bt);
    kiln_bn_geom gp[2];
    for (int p = 0, off = 0; p < 2; off += (int)(parts[p] * row), p++) {
        gp[p] = g, gp[p].n = parts[p], gp[p].sums_out = fs + 2 * p * C;
        cr_assert_eq(K->batch_norm_fwd(ctx, &gp[p], true, 1e-5f, x + off, w, b, scratch, scratch + C, ys + off),
                     KILN_STATUS_OK, "%s", what);
    }
    for (int64_t i = 0; i < 2 * C; i++) ft[i] = fs[i] + fs[2 * C + i]; /* the all-reduce */
    for (int p = 0, off = 0; p < 2; off += (int)(parts[p] * row), p++) {
        ms[p] = zero_buf(C), vs[p] = zero_buf(C);
        gp[p].sums_out = NULL, gp[p].sums = ft, gp[p].count = (double)(g.n * g.s);
        cr_assert_eq(K->batch_norm_fwd(ctx, &gp[p], true, 1e-5f, x + off, w, b, ms[p], vs[p], ys + off), KILN_STATUS_OK,
                     "%s", what);
        ku_expect_arrays(ms[p], mean, C, 1e-5, 1e-5, what);
        ku_expect_arrays(vs[p], var, C, 1e-5, 1e-5, what);
    }
    ku_expect_arrays(ys, y, n, 1e-5, 1e-5, what);

    /* backward */
    for (int p = 0, off = 0; p < 2; off += (int)(parts[p] * row), p++) {
        gp[p].sums = NULL, gp[p].sums_out = bs + 2 * p * C;
        cr_assert_eq(K->batch_norm_bwd(ctx, &gp[p], true, 1e-5f, x + off, w, ms[p], vs[p], gy + off, NULL, false, gws,
                                       gbs), KILN_STATUS_OK, "%s", what);
    }
    for (int64_t i = 0; i < 2 * C; i++) bt[i] = bs[i] + bs[2 * C + i];
    for (int p = 0, off = 0; p < 2; off += (int)(parts[p] * row), p++) {
        gp[p].sums_out = NULL, gp[p].sums = bt;
        cr_assert_eq(K->batch_norm_bwd(ctx, &gp[p], true, 1e-5f, x + off, w, ms[p], vs[p], gy + off, gxs + off, false,
                                       NULL, NULL), KILN_STATUS_OK, "%s", what);
    }
    ku_expect_arrays(gxs, gx, n, 2e-5, 1e-4, what);
    if (affine) {
        ku_expect_arrays(gws, gw, C, 2e-5, 1e-4, what);
        ku_expect_arrays(gbs, gb, C, 2e-5, 1e-4, what);
    }
}

#define GEOM(n_, c_, s_, cl_) {.n = (n_), .c = (c_), .s = (s_), .cl = (cl_)}

Test(sync_bn, kernels_split_batch)
{
    /* (N, C) over two channel blocks; (N, C, L) and NCHW; channels-last with C = 8 (16-float
     * rows), 5 (a short last row) and 64 */
    const kiln_bn_geom geoms[] = {GEOM(12, 70, 1, false), GEOM(7, 6, 9, false),  GEOM(9, 16, 49, false),
                                  GEOM(10, 8, 36, true),  GEOM(7, 5, 21, true), GEOM(6, 64, 16, true)};
    const kiln_conv_kernels *K[2] = {&kiln__cpu_conv, &kiln__ref_conv};
    const char *names[2] = {"cpu", "ref"};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < sizeof geoms / sizeof geoms[0]; i++)
            for (int v = 0; v < 4; v++) {
                kiln_mark m = kiln_step_mark(ctx);
                split_kernels(K[k], names[k], geoms[i], v & 1, v & 2);
                kiln_step_rewind(ctx, m);
            }
}

/* ---- the op over a 1-rank communicator ---------------------------------------------------- */

static kiln_tensor *leaf(const float *data, int nd, const int64_t *shape)
{
    kiln_tensor *t = kiln_empty(ctx, KILN_DTYPE_F32, nd, shape);
    cr_assert(t != NULL);
    memcpy(t->data, data, (size_t)kiln_numel(t) * sizeof(float));
    kiln_set_requires_grad(t, true);
    return t;
}

typedef struct bn_run {
    kiln_tensor *x, *w, *b, *y;
    float rm[64], rv[64];
} bn_run;

/* One forward (sync over comm, or plain when comm is NULL) and backward of x's values. */
static void run_op(kiln_comm *comm, const float *xd, int nd, const int64_t *shape, bool cl, bool relu, bool train,
                   const float *wd, const float *bd, bn_run *r)
{
    const int64_t C = shape[1];
    r->x = leaf(xd, nd, shape), r->w = leaf(wd, 1, &C), r->b = leaf(bd, 1, &C);
    for (int64_t c = 0; c < C; c++) r->rm[c] = 0.1f * (float)c, r->rv[c] = 1.0f + 0.05f * (float)c;
    kiln_tensor rm, rv;
    kiln_tensor_wrap(&rm, KILN_DTYPE_F32, 1, &C, r->rm);
    kiln_tensor_wrap(&rv, KILN_DTYPE_F32, 1, &C, r->rv);
    kiln_tensor *x = cl ? kiln_to_channels_last(ctx, r->x) : r->x;
    r->y = comm ? (relu ? kiln_sync_batch_norm_relu : kiln_sync_batch_norm)(ctx, comm, x, r->w, r->b, &rm, &rv, train,
                                                                             0.1f, 1e-5f)
                : (relu ? kiln_batch_norm_relu : kiln_batch_norm)(ctx, x, r->w, r->b, &rm, &rv, train, 0.1f, 1e-5f);
    cr_assert(r->y != NULL, "%s", kiln_last_error());
    kiln_tensor *gy = kiln_randn(ctx, nd, shape, 0.0f, 1.0f); /* the same draw for both runs: seeded below */
    cr_assert_eq(kiln_backward_with(ctx, r->y, gy), KILN_STATUS_OK, "%s", kiln_last_error());
}

static void op_case(int nd, const int64_t *shape, bool cl, bool relu, bool train)
{
    const int64_t C = shape[1];
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    const float *xd = rand_buf(n, 0.5f, 1.5f), *wd = rand_buf(C, 1.0f, 0.3f), *bd = rand_buf(C, 0.0f, 0.5f);
    kiln_comm *one = kiln_comm_single();
    cr_assert(one != NULL);
    bn_run a, s;
    kiln_rng_state rng = kiln_rng_get(ctx);
    run_op(NULL, xd, nd, shape, cl, relu, train, wd, bd, &a);
    kiln_rng_set(ctx, rng);
    run_op(one, xd, nd, shape, cl, relu, train, wd, bd, &s);
    char what[128];
    snprintf(what, sizeof what, "op %dd C %lld cl %d relu %d train %d", nd, (long long)C, cl, relu, train);
    if (train) {
        ku_expect_close(s.y, a.y, 1e-5, 1e-5, what);
        ku_expect_arrays(s.rm, a.rm, C, 1e-5, 1e-5, what);
        ku_expect_arrays(s.rv, a.rv, C, 1e-5, 1e-5, what);
        ku_expect_close(s.x->grad, a.x->grad, 2e-5, 1e-4, what);
        ku_expect_close(s.w->grad, a.w->grad, 2e-5, 1e-4, what);
        ku_expect_close(s.b->grad, a.b->grad, 2e-5, 1e-4, what);
    } else { /* no collective, the same kernels: bit for bit */
        cr_assert(!memcmp(s.y->data, a.y->data, (size_t)n * sizeof(float)), "%s: y", what);
        cr_assert(!memcmp(s.x->grad->data, a.x->grad->data, (size_t)n * sizeof(float)), "%s: gx", what);
        cr_assert(!memcmp(s.w->grad->data, a.w->grad->data, (size_t)C * sizeof(float)), "%s: gw", what);
        cr_assert(!memcmp(s.rm, a.rm, (size_t)C * sizeof(float)) && !memcmp(s.rv, a.rv, (size_t)C * sizeof(float)),
                  "%s: running statistics changed in eval mode", what);
    }
    kiln_comm_free(one);
}

Test(sync_bn, op_matches_batch_norm_on_one_rank)
{
    const int64_t nc[2] = {16, 40}, ncl[3] = {5, 12, 7}, nchw[4] = {6, 8, 5, 5};
    for (int v = 0; v < 4; v++) {
        const bool relu = v & 1, train = !(v & 2);
        op_case(2, nc, false, relu, train);
        op_case(3, ncl, false, relu, train);
        op_case(4, nchw, false, relu, train);
        op_case(4, nchw, true, relu, train);
    }
}

/* ---- the model ------------------------------------------------------------------------------- */

/* conv -> BatchNorm2d -> ReLU (the fused path) -> flatten -> linear -> BatchNorm1d: y and
 * every gradient, flat. */
static float *model_run(kiln_comm *comm, bool sync, const kiln_tensor *x, size_t *n_out)
{
    kiln_model *m = kiln_model_new();
    kiln_module *r = kiln_model_root(m);
    kiln_conv2d_params cp = kiln_conv2d_default_params();
    cp.padding[0] = cp.padding[1] = 1;
    kiln_nn_conv2d(r, "conv", 3, 4, 3, 3, &cp, false);
    kiln_nn_batch_norm2d(r, "bn2", 4, NULL);
    kiln_nn_relu(r, "relu");
    kiln_nn_flatten(r, "flat");
    kiln_nn_linear(r, "fc", 4 * 5 * 5, 6, true);
    kiln_nn_batch_norm1d(r, "bn1", 6, NULL);
    cr_assert_eq(kiln_model_alloc(m, ctx), KILN_STATUS_OK, "%s", kiln_last_error());
    size_t np;
    float *p = kiln_store_flat(kiln_model_store(m), KILN_STORE_PARAMS, &np);
    for (size_t i = 0; i < np; i++) p[i] = 0.3f * sinf((float)i); /* the same weights each time */
    if (sync) cr_assert_eq(kiln_model_sync_batchnorm(m, comm), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tensor *y = kiln_model_forward(m, ctx, (kiln_tensor *)x);
    cr_assert(y != NULL, "%s", kiln_last_error());
    cr_assert_eq(kiln_backward(ctx, kiln_sum(ctx, kiln_mul(ctx, y, y))), KILN_STATUS_OK, "%s", kiln_last_error());
    size_t ng, nb;
    const float *g = kiln_store_flat(kiln_model_store(m), KILN_STORE_GRADS, &ng);
    const float *bufs = kiln_store_flat(kiln_model_store(m), KILN_STORE_BUFFERS, &nb);
    const size_t ny = (size_t)kiln_numel(y);
    float *out = malloc((ny + ng + nb) * sizeof *out);
    memcpy(out, y->data, ny * sizeof *out);
    memcpy(out + ny, g, ng * sizeof *out);
    memcpy(out + ny + ng, bufs, nb * sizeof *out);
    *n_out = ny + ng + nb;
    kiln_model_free(m);
    return out;
}

Test(sync_bn, model_on_one_rank_is_today)
{
    kiln_tensor *x = kiln_randn(ctx, 4, (int64_t[]){8, 3, 5, 5}, 0.0f, 1.0f);
    kiln_comm *one = kiln_comm_single();
    size_t n0, n1, n2;
    float *plain = model_run(NULL, false, x, &n0), *single = model_run(one, true, x, &n1),
          *none = model_run(NULL, true, x, &n2);
    cr_assert(n0 == n1 && n0 == n2);
    cr_assert(!memcmp(plain, single, n0 * sizeof *plain), "sync over 1 rank: outputs, gradients or buffers differ");
    cr_assert(!memcmp(plain, none, n0 * sizeof *plain), "sync over NULL: outputs, gradients or buffers differ");
    free(plain), free(single), free(none);
    kiln_comm_free(one);
}

Test(sync_bn, errors)
{
    kiln_tensor *x = kiln_randn(ctx, 2, (int64_t[]){1, 3}, 0.0f, 1.0f);
    cr_assert_null(kiln_sync_batch_norm(ctx, NULL, x, NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f));
    ku_expect_error("sync_batch_norm: NULL communicator", "NULL comm");
    kiln_comm *one = kiln_comm_single();
    cr_assert_null(kiln_sync_batch_norm_relu(ctx, one, x, NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f));
    ku_expect_error("more than 1 value per channel over the 1 rank(s) when training, x has shape (1, 3)", "one value");
    /* eval mode needs no second value, and no collective */
    const int64_t C = 3;
    float rmd[3] = {0}, rvd[3] = {1, 1, 1};
    kiln_tensor rm, rv;
    kiln_tensor_wrap(&rm, KILN_DTYPE_F32, 1, &C, rmd);
    kiln_tensor_wrap(&rv, KILN_DTYPE_F32, 1, &C, rvd);
    cr_assert_not_null(kiln_sync_batch_norm(ctx, one, x, NULL, NULL, &rm, &rv, false, 0.1f, 1e-5f), "%s",
                       kiln_last_error());
    cr_assert_eq(kiln_model_sync_batchnorm(NULL, one), KILN_STATUS_INVALID);
    ku_expect_error("model_sync_batchnorm: NULL model", "NULL model");
    kiln_comm_free(one);
}
