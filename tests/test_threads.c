/* Tests of thread counts per context (src/core/parallel.h): two contexts with 1 and 2
 * threads, used alternately from one thread, each run their loops (the parallel helper
 * itself, and a public op through the eltwise kernels) and their oneDNN calls on their own
 * count, whatever the other context did just before; changing one context's count changes
 * only that context; the optimizer keeps its own count. And the ops whose kernels are
 * deterministic give the same bits on 1 and 2 threads: dropout, a permute + contiguous,
 * apply_mask, add / mul, softmax, cross-entropy and mse (sums in a fixed order), batch
 * norm (one channel per thread), embedding (rows owned by thread) and the optimizer step. */
#include "util/ku.h"
#include "core/parallel.h"

#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static kiln_ctx *ctx_n(int n)
{
    kiln_ctx_params p = kiln_ctx_default_params();
    p.n_threads = n;
    p.seed = 7;
    kiln_ctx *ctx = kiln_ctx_new(&p);
    cr_assert(ctx, "ctx: %s", kiln_last_error());
    cr_assert_eq(kiln_ctx_threads(ctx), n);
    return ctx;
}

/* The largest team size seen inside a KILN_PAR_FOR loop of `work` units on ctx. */
static int helper_team(kiln_ctx *ctx, int64_t work)
{
    int team[64] = {0};
    KILN_PAR_FOR(ctx, work)
    for (int i = 0; i < 64; i++) {
#ifdef _OPENMP
        team[i] = omp_get_num_threads();
#else
        team[i] = 1;
#endif
    }
    int m = 0;
    for (int i = 0; i < 64; i++) m = team[i] > m ? team[i] : m;
    return m;
}

/* The team of a public op's kernel loop: an add of two (n) tensors. */
static int op_team(kiln_ctx *ctx, int64_t n)
{
    kiln_mark mk = kiln_step_mark(ctx);
    kiln_tensor *a = kiln_full(ctx, 1, &n, 1.0f), *b = kiln_full(ctx, 1, &n, 2.0f);
    kiln__par_last_team = 0;
    kiln_tensor *y = kiln_add(ctx, a, b);
    cr_assert(y, "add: %s", kiln_last_error());
    cr_assert_eq(((float *)y->data)[n - 1], 3.0f);
    kiln_step_rewind(ctx, mk);
    return kiln__par_last_team;
}

/* What oneDNN will use on this thread: it reads omp_get_max_threads() (dnnl_util.h). */
static int dnnl_count_after_conv(kiln_ctx *ctx)
{
    kiln_mark mk = kiln_step_mark(ctx);
    kiln_tensor *x = kiln_randn(ctx, 4, (int64_t[]){2, 3, 8, 8}, 0, 1);
    kiln_tensor *w = kiln_randn(ctx, 4, (int64_t[]){4, 3, 3, 3}, 0, 1);
    kiln_conv2d_params p = kiln_conv2d_default_params();
    cr_assert(kiln_conv2d(ctx, x, w, NULL, &p), "conv: %s", kiln_last_error());
    kiln_step_rewind(ctx, mk);
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return kiln_ctx_threads(ctx);
#endif
}

Test(threads, each_context_uses_its_own_count_when_used_alternately)
{
#ifndef _OPENMP
    cr_skip_test("built without OpenMP: every loop runs on one thread");
#endif
    kiln_ctx *c1 = ctx_n(1), *c2 = ctx_n(2);
    for (int round = 0; round < 3; round++) {
        cr_expect_eq(helper_team(c2, KILN_PAR_GRAIN), 2, "round %d: helper loop of the 2-thread context", round);
        cr_expect_eq(helper_team(c1, KILN_PAR_GRAIN), 1, "round %d: helper loop of the 1-thread context", round);
        cr_expect_eq(helper_team(c2, KILN_PAR_GRAIN - 1), 1, "round %d: a loop under the grain runs on one thread",
                     round);
        cr_expect_eq(op_team(c2, 100000), 2, "round %d: add on the 2-thread context", round);
        cr_expect_eq(op_team(c1, 100000), 1, "round %d: add on the 1-thread context", round);
        cr_expect_eq(op_team(c2, 100000), 2, "round %d: add on the 2-thread context after the other", round);
        cr_expect_eq(dnnl_count_after_conv(c2), 2, "round %d: oneDNN told 2 threads", round);
        cr_expect_eq(dnnl_count_after_conv(c1), 1, "round %d: oneDNN told 1 thread", round);
    }
    /* a new count on one context leaves the other alone, and reaches oneDNN (cache emptied) */
    cr_assert_eq(kiln_ctx_set_threads(c1, 3), KILN_STATUS_OK);
    cr_expect_eq(op_team(c1, 100000), 3);
    cr_expect_eq(dnnl_count_after_conv(c1), 3);
    cr_expect_eq(op_team(c2, 100000), 2);
    cr_expect_eq(dnnl_count_after_conv(c2), 2);
    cr_expect_eq(kiln_ctx_set_threads(c1, -1), KILN_STATUS_INVALID);
    cr_expect_eq(kiln_ctx_threads(c1), 3, "a refused count changes nothing");
    kiln_ctx_free(c1);
    kiln_ctx_free(c2);
}

/* Appends t's values to buf at *k. */
static void keep(float *buf, int64_t *k, const kiln_tensor *t)
{
    cr_assert(t, "%s", kiln_last_error());
    memcpy(buf + *k, t->data, (size_t)kiln_numel(t) * sizeof(float));
    *k += kiln_numel(t);
}

/* One pass through ops whose kernels give the same bits for any thread count; the outputs
 * and gradients, concatenated, in buf (returns the count). */
static int64_t run_ops(kiln_ctx *ctx, float *buf)
{
    int64_t k = 0;
    kiln_rng_seed(ctx, 11);
    kiln_store *s = kiln_store_new();
    kiln_tensor *x = kiln_store_param(s, "x", 4, (int64_t[]){8, 16, 24, 40});
    kiln_tensor *h = kiln_store_param(s, "h", 3, (int64_t[]){32, 40, 100});
    kiln_tensor *m = kiln_store_param(s, "m", 3, (int64_t[]){32, 1, 100});
    kiln_tensor *e = kiln_store_param(s, "e", 2, (int64_t[]){500, 64});
    const int64_t c16[1] = {16};
    kiln_tensor *bw = kiln_store_param(s, "bw", 1, c16), *bb = kiln_store_param(s, "bb", 1, c16);
    kiln_tensor *rm = kiln_store_buffer(s, "rm", 1, c16), *rv = kiln_store_buffer(s, "rv", 1, c16);
    cr_assert(kiln_store_alloc(s) == KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tensor *all[] = {x, h, m, e, bw, bb};
    for (int i = 0; i < 6; i++) kiln_rng_normal(ctx, all[i]->data, (size_t)kiln_numel(all[i]), 0.5f, 1.0f);
    kiln_rng_uniform(ctx, rv->data, 16, 0.5f, 1.5f);

    kiln_tensor *d = kiln_dropout(ctx, x, 0.3f, true, NULL);                                    /* (8, 16, 24, 40) */
    kiln_tensor *p = kiln_contiguous(ctx, kiln_permute(ctx, d, (int[]){0, 2, 3, 1}));           /* (8, 24, 40, 16) */
    kiln_tensor *sm = kiln_softmax(ctx, kiln_reshape(ctx, p, 2, (int64_t[]){-1, 16}), 1);        /* (7680, 16) */
    kiln_tensor *bn = kiln_batch_norm(ctx, x, bw, bb, rm, rv, true, 0.1f, 1e-5f);               /* (8, 16, 24, 40) */
    kiln_tensor *am = kiln_apply_mask(ctx, h, m);                                               /* (32, 40, 100) */
    int64_t ids[4096], tg[4096];
    for (int i = 0; i < 4096; i++) ids[i] = (i * 7919) % 500, tg[i] = i % 9 == 4 ? -100 : (i * 31) % 64;
    kiln_tensor *idx = kiln_from_data(ctx, KILN_DTYPE_I64, 1, (int64_t[]){4096}, ids);
    kiln_tensor *t = kiln_from_data(ctx, KILN_DTYPE_I64, 1, (int64_t[]){4096}, tg);
    kiln_tensor *emb = kiln_embedding(ctx, idx, e);                                             /* (4096, 64) */
    kiln_tensor *ce = kiln_cross_entropy(ctx, emb, t, NULL);                                    /* () */
    kiln_tensor *mse = kiln_mse_loss(ctx, am, kiln_zeros(ctx, KILN_DTYPE_F32, 3, am->shape), KILN_REDUCTION_MEAN);
    const kiln_tensor *kept1[] = {p, sm, bn, am, emb, ce, mse, rm, rv};
    for (size_t i = 0; i < sizeof kept1 / sizeof *kept1; i++) keep(buf, &k, kept1[i]);
    kiln_tensor *sq = kiln_add(ctx, kiln_sum(ctx, kiln_mul(ctx, sm, sm)), kiln_sum(ctx, kiln_mul(ctx, bn, bn)));
    kiln_tensor *loss = kiln_add(ctx, kiln_add(ctx, ce, mse), sq);
    cr_assert(loss && kiln_backward(ctx, loss) == KILN_STATUS_OK, "backward: %s", kiln_last_error());
    const kiln_tensor *kept2[] = {x->grad, h->grad, m->grad, e->grad, bw->grad, bb->grad};
    for (size_t i = 0; i < sizeof kept2 / sizeof *kept2; i++) keep(buf, &k, kept2[i]);
    /* and an optimizer step on the same number of threads */
    kiln_sgd_params sp = kiln_sgd_default_params();
    sp.lr = 0.1, sp.momentum = 0.9;
    kiln_optim *opt = kiln_optim_new_sgd(s, &sp);
    cr_assert(opt, "%s", kiln_last_error());
    cr_assert_eq(kiln_optim_set_threads(opt, kiln_ctx_threads(ctx)), KILN_STATUS_OK);
    cr_assert_eq(kiln_optim_threads(opt), kiln_ctx_threads(ctx));
    cr_assert_eq(kiln_optim_step(opt), KILN_STATUS_OK, "%s", kiln_last_error());
    const kiln_tensor *kept3[] = {x, e};
    for (size_t i = 0; i < sizeof kept3 / sizeof *kept3; i++) keep(buf, &k, kept3[i]);
    kiln_optim_free(opt);
    kiln_store_free(s);
    kiln_step_reset(ctx);
    return k;
}

Test(threads, deterministic_ops_give_the_same_bits_on_1_and_2_threads)
{
    enum { CAP = 2000000 };
    float *a = malloc(CAP * sizeof(float)), *b = malloc(CAP * sizeof(float));
    cr_assert(a && b);
    kiln_ctx *c1 = ctx_n(1), *c2 = ctx_n(2);
    int64_t na = run_ops(c1, a), nb = run_ops(c2, b);
    cr_assert(na < CAP && na == nb, "%lld vs %lld values", (long long)na, (long long)nb);
    int64_t diff = 0, first = -1;
    for (int64_t i = 0; i < na; i++)
        if (memcmp(&a[i], &b[i], sizeof(float))) diff++, first = first < 0 ? i : first;
    cr_expect_eq(diff, 0, "%lld of %lld values differ between 1 and 2 threads (first at %lld: %g vs %g)",
                 (long long)diff, (long long)na, (long long)first, first < 0 ? 0.0 : (double)a[first],
                 first < 0 ? 0.0 : (double)b[first]);
    kiln_ctx_free(c1);
    kiln_ctx_free(c2);
    free(a);
    free(b);
}

Test(threads, optimizer_count_is_its_own)
{
    kiln_store *s = kiln_store_new();
    cr_assert(kiln_store_param(s, "w", 1, (int64_t[]){4}) && kiln_store_alloc(s) == KILN_STATUS_OK);
    kiln_sgd_params sp = kiln_sgd_default_params();
    kiln_optim *opt = kiln_optim_new_sgd(s, &sp);
    cr_assert(opt, "%s", kiln_last_error());
    cr_expect_gt(kiln_optim_threads(opt), 0, "a new optimizer has the default count");
    cr_expect_eq(kiln_optim_set_threads(opt, 2), KILN_STATUS_OK);
    cr_expect_eq(kiln_optim_threads(opt), 2);
    cr_expect_eq(kiln_optim_set_threads(opt, -2), KILN_STATUS_INVALID);
    ku_expect_error("thread count -2 < 0", "negative optimizer thread count");
    cr_expect_eq(kiln_optim_threads(opt), 2);
    kiln_optim_free(opt);
    kiln_store_free(s);
}
