/* SyncBatchNorm across ranks (issue 13), run by ctest under
 * `mpiexec --allow-run-as-root --oversubscribe -np 2` (cmake/dist_learn.cmake, only when kiln
 * is built with MPI). A conv -> BatchNorm2d -> ReLU (the fused kiln_batch_norm_relu path) ->
 * linear -> ReLU -> BatchNorm1d (the plain path) -> linear classifier on made images, with
 * kiln_model_sync_batchnorm over the world communicator, against one process with the whole
 * batch (kiln_comm_single, per-rank BN = plain BN):
 *   - one step by hand, NCHW and channels-last: rank r holds rows [r B/N, (r+1) B/N) of the
 *     batch of B; its forward output must equal those rows of the one-process output; the
 *     gradients of every parameter, summed over ranks and scaled by 1/N (what the learner
 *     does: each rank's loss is the mean over its B/N rows, so the mean of the ranks' losses is
 *     the batch's mean loss and the mean of their gradients its gradient, BatchNorm's weight and
 *     bias gradients being each rank's local sums), must equal the one-process gradients; the
 *     running statistics too;
 *   - the learner: N ranks with per-rank batch B/N (SGD with momentum, one-cycle, 18 steps)
 *     against one process with batch B: weights and running statistics after training, the
 *     validation loss, and the ranks' weights bit for bit;
 *   - negative checks (the comparison can fail): the same model without
 *     kiln_model_sync_batchnorm (per-rank statistics, as DDP) must miss the one-process output
 *     and gradients by far more than the tolerance, and so must its trained weights.
 * Tolerances (|a - b| <= atol + rtol |b|): forward output and running statistics atol 1e-5,
 * rtol 1e-5, gradients atol 1e-5, rtol 1e-4: float values whose statistics are summed in another
 * order (f64 sums of x and x^2 over ranks against two passes over the whole batch in one
 * process, ~1e-7 relative), and gradient reductions that cancel; 2 ranks on Open MPI 4.1
 * measured 1e-7 at most (printed). Trained weights and running statistics atol 2e-6, rtol 2e-5
 * (dist_learn's): 18 SGD steps through two BatchNorms carry those last bits along (measured
 * 6e-8, printed); validation loss 1e-5 relative. Per-rank BN misses by 3e-2 (output,
 * gradients) and 6e-2 (trained weights). Exit status 0 when every check passes on every rank. */
#include "kiln.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CH = 3, HW = 6, N_OUT = 4, N_TRAIN = 96, N_VALID = 32, BATCH = 16, EPOCHS = 3 };

static int g_fail, g_rank;
#define MPI_TEST_NAME "sync_bn"
#include "mpi_check.h"

/* x (n, CH, HW, HW) f32, y (n) i64: the class is the quadrant of channel 0 with the largest sum. */
static void make_images(int64_t n, uint64_t seed, float *x, int64_t *y)
{
    const int64_t per = CH * HW * HW;
    for (int64_t i = 0; i < n; i++) {
        double q[4] = {0};
        for (int64_t j = 0; j < per; j++) {
            float v = 2.0f * kiln_philox_uniform(seed, (uint64_t)(i * per + j)) - 1.0f + 0.3f * (float)(j / (HW * HW));
            x[i * per + j] = v;
            if (j < HW * HW) q[(j / HW >= HW / 2) * 2 + (j % HW >= HW / 2)] += v;
        }
        y[i] = 0;
        for (int c = 1; c < 4; c++)
            if (q[c] > q[y[i]]) y[i] = c;
    }
}

static kiln_model *make_model(kiln_ctx *ctx, kiln_comm *sync, bool cl)
{
    kiln_model *m = kiln_model_new();
    kiln_module *r = kiln_model_root(m);
    kiln_conv2d_params cp = kiln_conv2d_default_params();
    cp.padding[0] = cp.padding[1] = 1;
    kiln_nn_conv2d(r, "conv", CH, 4, 3, 3, &cp, false);
    kiln_nn_batch_norm2d(r, "bn2", 4, NULL);
    kiln_nn_relu(r, "relu1");
    kiln_nn_flatten(r, "flat");
    kiln_nn_linear(r, "fc1", 4 * HW * HW, 8, true);
    kiln_nn_relu(r, "relu2");
    kiln_nn_batch_norm1d(r, "bn1", 8, NULL);
    kiln_nn_linear(r, "fc2", 8, N_OUT, true);
    if (kiln_model_alloc(m, ctx)) {
        fprintf(stderr, "sync_bn: model: %s\n", kiln_last_error());
        exit(1);
    }
    kiln_model_set_channels_last(m, cl);
    size_t np;
    float *p = kiln_store_flat(kiln_model_store(m), KILN_STORE_PARAMS, &np);
    for (size_t i = 0; i < np; i++) p[i] = 0.5f * (kiln_philox_uniform(99, i) - 0.5f);
    if (sync && kiln_model_sync_batchnorm(m, sync)) {
        fprintf(stderr, "sync_bn: %s\n", kiln_last_error());
        exit(1);
    }
    return m;
}

static kiln_ctx *make_ctx(void)
{
    kiln_ctx_params cp = kiln_ctx_default_params();
    cp.n_threads = 1, cp.seed = 7;
    kiln_ctx *ctx = kiln_ctx_new(&cp);
    if (!ctx) exit(1);
    return ctx;
}

/* The worst excess of |a - b| over atol + rtol |b| (0: within), and the largest |a - b|. */
static double excess(const float *a, const float *b, size_t n, double atol, double rtol, double *maxabs)
{
    double worst = 0;
    *maxabs = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - (double)b[i]), tol = atol + rtol * fabs((double)b[i]);
        if (!(d <= tol)) worst = fmax(worst, isnan(d) ? INFINITY : d - tol);
        *maxabs = isnan(d) ? INFINITY : fmax(*maxabs, d);
    }
    return worst;
}

/* One step's numbers: out (rows, N_OUT), the gradients (averaged over ranks), the buffers. */
typedef struct step {
    float *out, *grads, *bufs;
    size_t n_out, n_g, n_b;
} step;

static void copy_flat(kiln_model *m, kiln_store_kind k, float **dst, size_t *n)
{
    const float *p = kiln_store_flat(kiln_model_store(m), k, n);
    *dst = malloc(*n * sizeof **dst);
    memcpy(*dst, p, *n * sizeof **dst);
}

/* Forward of rows [r0, r0 + nr) of x, mean cross-entropy, backward; with comm of N > 1 ranks
 * the gradients are summed over ranks and scaled by 1/N (the learner's average). */
static void one_step(kiln_comm *comm, kiln_comm *sync, bool cl, const float *x, const int64_t *y, int64_t r0,
                     int64_t nr, step *s)
{
    kiln_ctx *ctx = make_ctx();
    kiln_model *m = make_model(ctx, sync, cl);
    kiln_tensor X, Y;
    kiln_tensor_wrap(&X, KILN_DTYPE_F32, 4, (int64_t[]){nr, CH, HW, HW}, (float *)x + r0 * CH * HW * HW);
    kiln_tensor_wrap(&Y, KILN_DTYPE_I64, 1, (int64_t[]){nr}, (int64_t *)y + r0);
    kiln_tensor *out = kiln_model_forward(m, ctx, &X);
    kiln_tensor *loss = out ? kiln_cross_entropy(ctx, out, &Y, NULL) : NULL;
    if (!loss || kiln_backward(ctx, loss)) {
        fprintf(stderr, "sync_bn: rank %d: step: %s\n", g_rank, kiln_last_error());
        exit(1);
    }
    kiln_tensor *oc = kiln_contiguous(ctx, out);
    if (!oc) exit(1);
    s->n_out = (size_t)kiln_numel(oc);
    s->out = malloc(s->n_out * sizeof *s->out);
    memcpy(s->out, oc->data, s->n_out * sizeof *s->out);
    copy_flat(m, KILN_STORE_GRADS, &s->grads, &s->n_g);
    copy_flat(m, KILN_STORE_BUFFERS, &s->bufs, &s->n_b);
    const int world = kiln_comm_size(comm);
    if (world > 1) {
        CHECK(!kiln_comm_allreduce_sum_f32(comm, s->grads, s->n_g), "gradient sum: %s", kiln_last_error());
        for (size_t i = 0; i < s->n_g; i++) s->grads[i] /= (float)world;
    }
    kiln_model_free(m);
    kiln_ctx_free(ctx);
}

static void step_free(step *s) { free(s->out), free(s->grads), free(s->bufs); }

static void check_step(kiln_comm *c, bool cl, const float *x, const int64_t *y)
{
    const int world = kiln_comm_size(c), rows = BATCH / world;
    const char *lay = cl ? "channels-last" : "NCHW";
    step ref, syn, per;
    kiln_comm *one = kiln_comm_single();
    one_step(one, NULL, cl, x, y, 0, BATCH, &ref); /* every rank makes the reference itself */
    kiln_comm_free(one);
    one_step(c, c, cl, x, y, (int64_t)g_rank * rows, rows, &syn);
    one_step(c, NULL, cl, x, y, (int64_t)g_rank * rows, rows, &per);
    const float *ref_rows = ref.out + (size_t)g_rank * rows * N_OUT;
    double mo, mg, mb, po, pg;
    double eo = excess(syn.out, ref_rows, syn.n_out, 1e-5, 1e-5, &mo);
    double eg = excess(syn.grads, ref.grads, syn.n_g, 1e-5, 1e-4, &mg);
    double eb = excess(syn.bufs, ref.bufs, syn.n_b, 1e-5, 1e-5, &mb);
    excess(per.out, ref_rows, per.n_out, 1e-5, 1e-5, &po);
    excess(per.grads, ref.grads, per.n_g, 1e-5, 1e-4, &pg);
    printf("sync_bn: rank %d, %s, one step: max |sync - one process| output %.3g, gradients %.3g, running stats %.3g; "
           "per-rank BN: output %.3g, gradients %.3g\n", g_rank, lay, mo, mg, mb, po, pg);
    CHECK(syn.n_out == (size_t)rows * N_OUT && syn.n_g == ref.n_g && syn.n_b == ref.n_b, "%s: sizes differ", lay);
    CHECK(eo == 0, "%s: forward output of this rank's rows differs from the one-process rows (max %.3g)", lay, mo);
    CHECK(eg == 0, "%s: averaged gradients differ from the one-process gradients (max %.3g)", lay, mg);
    CHECK(eb == 0, "%s: running statistics differ from the one-process ones (max %.3g)", lay, mb);
    /* the negative check: per-rank statistics must fail the same comparison, by far */
    if (world > 1) {
        CHECK(po > 1e-2, "%s: per-rank BN's output is within %.3g of the one process's: the check cannot fail", lay,
              po);
        CHECK(pg > 1e-3, "%s: per-rank BN's gradients are within %.3g: the check cannot fail", lay, pg);
    }
    step_free(&ref), step_free(&syn), step_free(&per);
}

/* ---- the learner ---------------------------------------------------------------------------- */

typedef struct trained {
    float *w; /* parameters then buffers */
    size_t n_w;
    double vloss;
} trained;

static int train(kiln_comm *comm, bool sync, trained *t)
{
    const int world = kiln_comm_size(comm), rank = kiln_comm_rank(comm);
    kiln_ctx *ctx = make_ctx();
    static float xt[N_TRAIN * CH * HW * HW], xv[N_VALID * CH * HW * HW];
    int64_t yt[N_TRAIN], yv[N_VALID];
    make_images(N_TRAIN, 11, xt, yt);
    make_images(N_VALID, 12, xv, yv);
    kiln_tensor Xt, Yt, Xv, Yv;
    kiln_tensor_wrap(&Xt, KILN_DTYPE_F32, 4, (int64_t[]){N_TRAIN, CH, HW, HW}, xt);
    kiln_tensor_wrap(&Yt, KILN_DTYPE_I64, 1, (int64_t[]){N_TRAIN}, yt);
    kiln_tensor_wrap(&Xv, KILN_DTYPE_F32, 4, (int64_t[]){N_VALID, CH, HW, HW}, xv);
    kiln_tensor_wrap(&Yv, KILN_DTYPE_I64, 1, (int64_t[]){N_VALID}, yv);
    kiln_tensor_data_params dp = kiln_tensor_data_default_params();
    dp.batch_size = BATCH / world, dp.valid_batch_size = 8;
    dp.rank = rank, dp.world = world;
    kiln_data *d = kiln_tensor_data_new(&Xt, &Yt, &Xv, &Yv, &dp);
    kiln_model *m = make_model(ctx, sync ? comm : NULL, false);
    kiln_sgd_params sp = kiln_sgd_default_params();
    sp.momentum = 0.9;
    kiln_optim *opt = kiln_optim_new_sgd(kiln_model_store(m), &sp);
    kiln_learner_params lp = kiln_learner_default_params();
    lp.progress = KILN_PROGRESS_STYLE_QUIET;
    kiln_learner *l = d && opt ? kiln_learner_new(ctx, m, d, opt, &lp) : NULL;
    kiln_status st = l ? kiln_learner_set_comm(l, comm) : KILN_STATUS_NOMEM;
    if (!st) st = kiln_learner_fit_one_cycle(l, EPOCHS, 0, 0.1, NULL);
    double met;
    if (!st) st = kiln_learner_validate(l, KILN_DATA_SPLIT_VALID, &t->vloss, &met);
    if (st) fprintf(stderr, "sync_bn: rank %d: train: %s\n", rank, kiln_last_error());
    size_t np, nb;
    const float *p = kiln_store_flat(kiln_model_store(m), KILN_STORE_PARAMS, &np);
    const float *b = kiln_store_flat(kiln_model_store(m), KILN_STORE_BUFFERS, &nb);
    t->n_w = np + nb;
    t->w = malloc(t->n_w * sizeof *t->w);
    memcpy(t->w, p, np * sizeof *p);
    memcpy(t->w + np, b, nb * sizeof *b);
    kiln_learner_free(l);
    kiln_optim_free(opt);
    kiln_model_free(m);
    kiln_data_free(d);
    kiln_ctx_free(ctx);
    return st ? 1 : 0;
}

/* Whether a check failed on any rank (a collective: every rank calls it). */
static bool failed_somewhere(kiln_comm *c)
{
    double bad = g_fail;
    return kiln_comm_allreduce_sum_f64(c, &bad, 1) || bad > 0;
}

static void check_training(kiln_comm *c)
{
    trained syn = {0}, per = {0}, one = {0};
    CHECK(train(c, true, &syn) == 0, "the synchronised run failed");
    CHECK(train(c, false, &per) == 0, "the per-rank run failed");
    kiln_comm *single = kiln_comm_single();
    CHECK(train(single, false, &one) == 0, "the one-process run failed");
    kiln_comm_free(single);
    if (failed_somewhere(c)) return;
    /* every rank's weights and running statistics equal rank 0's, bit for bit */
    float *w0 = malloc(syn.n_w * sizeof *w0);
    memcpy(w0, syn.w, syn.n_w * sizeof *w0);
    kiln_comm_bcast(c, w0, syn.n_w * sizeof *w0, 0);
    CHECK(!memcmp(w0, syn.w, syn.n_w * sizeof *w0), "this rank's trained weights differ from rank 0's");
    free(w0);
    double ms, mp;
    double e = excess(syn.w, one.w, syn.n_w, 2e-6, 2e-5, &ms);
    excess(per.w, one.w, per.n_w, 2e-6, 2e-5, &mp);
    if (g_rank == 0)
        printf("sync_bn: %d steps of SGD: max |w - w_one process| (weights and running stats): sync %.3g, per-rank BN "
               "%.3g; valid loss sync %.9g, per-rank %.9g, one process %.9g\n", EPOCHS * N_TRAIN / BATCH, ms, mp,
               syn.vloss, per.vloss, one.vloss);
    CHECK(e == 0, "trained weights differ from the one-process run (max %.3g)", ms);
    CHECK(fabs(syn.vloss - one.vloss) <= 1e-5 * fabs(one.vloss), "valid loss %.9g vs %.9g", syn.vloss, one.vloss);
    if (kiln_comm_size(c) > 1) CHECK(mp > 1e-2, "per-rank BN trained to within %.3g: the check cannot fail", mp);
    free(syn.w), free(per.w), free(one.w);
}

int main(void)
{
    kiln_comm *c = kiln_comm_world();
    if (!c) {
        fprintf(stderr, "sync_bn: %s\n", kiln_last_error());
        return 1;
    }
    g_rank = kiln_comm_rank(c);
    const int world = kiln_comm_size(c);
    kiln_comm_set_timeout(c, 120);
    setvbuf(stdout, NULL, _IONBF, 0);
    if (g_rank == 0) printf("sync_bn: %d rank(s) over %s\n", world, kiln_comm_name(c));
    CHECK(world >= 2 && BATCH % world == 0, "run under mpiexec -np 2 (or 4, 8, 16): %d rank(s)", world);
    float *x = malloc(BATCH * CH * HW * HW * sizeof *x);
    int64_t y[BATCH];
    make_images(BATCH, 5, x, y);
    if (!g_fail)
        for (int cl = 0; cl < 2; cl++) check_step(c, cl, x, y);
    free(x);
    if (!failed_somewhere(c)) check_training(c);
    const bool bad = failed_somewhere(c);
    if (g_rank == 0) printf("sync_bn: %s\n", bad ? "FAILED" : "all checks passed");
    kiln_comm_free(c);
    return bad ? 1 : 0;
}
