/* Core: arena marks and reuse (blocks merged at a rewind to the start, buffers given back within a
 * step, the backward giving back consumed gradients), tensor creation and printing, the store's flat buffers,
 * RNG determinism across thread counts, errors as values, the tape itself and the gradient
 * checker (it must catch a 0.3% gradient error). */
#include "util/ku.h"

#include "core/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static kiln_ctx *ctx;
static void setup(void) { ctx = ku_ctx(); }
static void teardown(void) { ku_ctx_free(ctx); }
TestSuite(core, .init = setup, .fini = teardown);

Test(core, arena_rewind_reuses_memory)
{
    kiln_mark m = kiln_step_mark(ctx);
    kiln_tensor *a = kiln_zeros(ctx, KILN_DTYPE_F32, 2, (int64_t[]){100, 100});
    cr_assert_not_null(a);
    void *first = a->data;
    size_t used = kiln_step_bytes(ctx);
    cr_assert_geq(used, 100 * 100 * 4);
    kiln_step_rewind(ctx, m);
    size_t held = kiln_mem_bytes();
    for (int step = 0; step < 10; step++) {
        kiln_tensor *b = kiln_zeros(ctx, KILN_DTYPE_F32, 2, (int64_t[]){100, 100});
        cr_assert_eq(b->data, first, "steady state must reuse the same arena memory");
        kiln_step_rewind(ctx, m);
    }
    cr_assert_eq(kiln_mem_bytes(), held, "no heap growth in the steady state");
    cr_assert_geq(kiln_step_peak_bytes(ctx), used);
}

Test(core, arena_large_allocation_gets_its_own_block)
{
    /* blocks are 16 MiB in ku_ctx: a 40 MB tensor must still work, then small ones. */
    kiln_tensor *big = kiln_empty(ctx, KILN_DTYPE_F32, 1, (int64_t[]){10 * 1000 * 1000});
    cr_assert_not_null(big, "%s", kiln_last_error());
    memset(big->data, 1, 40 * 1000 * 1000);
    kiln_tensor *small = kiln_zeros(ctx, KILN_DTYPE_F32, 1, (int64_t[]){10});
    cr_assert_not_null(small);
    cr_assert_geq(kiln_mem_peak_bytes(), (size_t)40 * 1000 * 1000);
    kiln_step_reset(ctx);
    cr_assert_eq(kiln_step_bytes(ctx), 0);
}

/* Steps whose large tensors change size (variable-length batches) must not add a block per new
 * size: 200 steps of a small tensor then one of 20..40 MB (growing and shrinking) keep the arena
 * within a few times the largest step. (Before the fix each larger size added a block: the Austen
 * language model reached 24 GB.) */
Test(core, arena_bounded_under_changing_large_sizes)
{
    kiln_step_reset(ctx);
    size_t before = kiln_mem_bytes();
    uint64_t r = 7;
    for (int step = 0; step < 200; step++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        int64_t n = 5000000 + (int64_t)(r >> 40) % 5000000; /* 20..40 MB of floats */
        cr_assert_not_null(kiln_zeros(ctx, KILN_DTYPE_F32, 1, (int64_t[]){100}));
        kiln_tensor *big = kiln_empty(ctx, KILN_DTYPE_F32, 1, &n);
        cr_assert_not_null(big, "%s", kiln_last_error());
        ((float *)big->data)[n - 1] = 1;
        kiln_step_reset(ctx);
    }
    size_t grown = kiln_mem_bytes() - before;
    cr_expect_lt(grown, (size_t)3 * 40 * 1000 * 1000, "the arena grew by %zu bytes over 200 steps", grown);
}

/* A step that spreads over several blocks leaves their tails as slack; after a rewind to the start
 * its blocks become one of the peak's size, and the same step then lies in it with no slack and
 * no new memory. */
Test(core, arena_merges_its_blocks_at_a_rewind_to_the_start)
{
    kiln_step_reset(ctx);
    kiln_mark m0 = kiln_step_mark(ctx);
    size_t used[2], held = 0;
    for (int step = 0; step < 2; step++) {
        /* blocks of 16 MiB (ku_ctx): 10 MB + 10 MB do not share one, nor 12 MB after them */
        int64_t n1 = 2500000, n2 = 3000000;
        for (int k = 0; k < 2; k++) cr_assert_not_null(kiln_empty(ctx, KILN_DTYPE_F32, 1, &n1));
        cr_assert_not_null(kiln_empty(ctx, KILN_DTYPE_F32, 1, &n2));
        used[step] = kiln_step_bytes(ctx);
        if (step == 1) cr_assert_eq(kiln_mem_bytes(), held, "the second step took new memory");
        kiln_step_rewind(ctx, m0);
        if (step == 0) {
            cr_assert_eq(ctx->arena.n_blocks, 1, "%zu blocks after the rewind to the start", ctx->arena.n_blocks);
            cr_assert_geq(ctx->arena.blocks[0].size, used[0]);
            held = kiln_mem_bytes();
        }
    }
    cr_assert_lt(used[1], used[0], "the step used %zu bytes in one block, %zu over several", used[1], used[0]);
    cr_assert_lt(used[1], (size_t)32 * 1000 * 1000 + 1024, "slack left in the merged block: %zu bytes", used[1]);
    /* a rewind to a mark that is not the start merges nothing */
    cr_assert_not_null(kiln_zeros(ctx, KILN_DTYPE_F32, 1, (int64_t[]){10}));
    kiln_mark m1 = kiln_step_mark(ctx);
    int64_t big = 12000000; /* 48 MB: more than the merged block holds after the first 64 bytes */
    cr_assert_not_null(kiln_empty(ctx, KILN_DTYPE_F32, 1, &big));
    size_t nb = ctx->arena.n_blocks;
    cr_assert_gt(nb, 1);
    kiln_step_rewind(ctx, m1);
    cr_assert_eq(ctx->arena.n_blocks, nb);
    kiln_step_reset(ctx);
    cr_assert_eq(ctx->arena.n_blocks, 1);
}

/* kiln__step_alloc_reusable / kiln__step_release: a buffer given back is taken again by a request
 * it fits (the smallest, at most twice the size); one in use is not; a rewind to before a buffer
 * forgets it; small requests are plain arena memory. */
Test(core, arena_reusable_buffers)
{
    kiln_step_reset(ctx);
    const size_t mb = (size_t)1 << 20;
    unsigned char *a = kiln__step_alloc_reusable(ctx, 4 * mb), *b = kiln__step_alloc_reusable(ctx, 2 * mb);
    cr_assert(a && b && a != b);
    cr_assert_eq(kiln__step_alloc_reusable(ctx, 2 * mb) == b, false, "a buffer in use was handed out again");
    kiln__step_release(ctx, a);
    kiln__step_release(ctx, b);
    cr_assert(!kiln__step_reusable(ctx, a) && !kiln__step_reusable(ctx, b), "given back: not in use");
    cr_assert_eq(kiln__step_alloc_reusable(ctx, 2 * mb - 100), b, "the smallest free buffer that fits");
    cr_assert(kiln__step_reusable(ctx, b) && !kiln__step_reusable(ctx, b + 1), "b in use; b + 1 no buffer");
    cr_assert_eq(kiln__step_alloc_reusable(ctx, 3 * mb), a);
    kiln__step_release(ctx, a);
    unsigned char *c = kiln__step_alloc_reusable(ctx, mb + 1);
    cr_assert_neq(c, a, "a 4 MB buffer for a request of 1 MB: more than twice the size");
    kiln__step_release(ctx, (void *)&c); /* not a buffer of the table: nothing happens */
    kiln_mark m = kiln_step_mark(ctx);
    unsigned char *d = kiln__step_alloc_reusable(ctx, 5 * mb); /* 10 MiB used before: fits the 16 MiB block */
    kiln__step_release(ctx, d);
    kiln_step_rewind(ctx, m); /* d's memory is the bump allocator's again */
    unsigned char *e = kiln_step_alloc(ctx, 64);
    cr_assert_eq(e, d, "the rewind freed d's memory");
    unsigned char *f = kiln__step_alloc_reusable(ctx, 5 * mb);
    cr_assert_neq(f, d, "a rewind must forget the buffers after its mark");
    cr_assert_eq(kiln__step_alloc_reusable(ctx, 4 * mb), a, "a buffer before the mark stays");
    size_t before = kiln_step_bytes(ctx);
    cr_assert_not_null(kiln__step_alloc_reusable(ctx, 1000));
    cr_assert_lt(kiln_step_bytes(ctx) - before, (size_t)2048, "a small request is plain arena memory");
}

/* The backward gives each consumed gradient back: a chain of 12 elementwise ops on a 4 MB tensor
 * takes a few gradient buffers, not one per op (the values: test_eltwise). */
Test(core, backward_reuses_consumed_gradients)
{
    kiln_step_reset(ctx);
    kiln_tensor *x = kiln_randn(ctx, 2, (int64_t[]){1000, 1000}, 0.0f, 1.0f);
    cr_assert_not_null(x);
    kiln_set_requires_grad(x, true);
    kiln_tensor *y = x;
    for (int i = 0; i < 12; i++) y = i % 2 ? kiln_mul_scalar(ctx, y, 1.01f) : kiln_tanh(ctx, y);
    kiln_tensor *loss = kiln_sum(ctx, y);
    cr_assert_not_null(loss, "%s", kiln_last_error());
    size_t before = kiln_step_bytes(ctx);
    cr_assert_eq(kiln_backward(ctx, loss), KILN_STATUS_OK, "%s", kiln_last_error());
    size_t grown = kiln_step_bytes(ctx) - before;
    cr_assert_lt(grown, (size_t)4 * 4000000, "the backward took %zu bytes for 12 gradients of 4 MB", grown);
    cr_assert_not_null(x->grad);
    /* d/dx of tanh(...)*1.01 chains: finite, nonzero */
    cr_assert(isfinite(((float *)x->grad->data)[0]) && ((float *)x->grad->data)[0] != 0.0f);
}

Test(core, tensor_basics)
{
    float v[6] = {1, 2, 3, 4, 5, 6};
    kiln_tensor *t = kiln_from_data(ctx, KILN_DTYPE_F32, 2, (int64_t[]){2, 3}, v);
    cr_assert_eq(kiln_numel(t), 6);
    cr_assert(kiln_is_contiguous(t));
    cr_assert_eq(t->stride[0], 3);
    char buf[64];
    cr_assert_str_eq(kiln_shape_str(t, buf, sizeof buf), "(2, 3)");
    cr_assert_eq(kiln_get_flat(t, 4), 5.0);
    cr_assert(isnan(kiln_item(t)));
    kiln_tensor *s = kiln_full(ctx, 0, NULL, 2.5f);
    cr_assert_eq(kiln_item(s), 2.5f);
    cr_assert_str_eq(kiln_shape_str(s, buf, sizeof buf), "()");
    cr_assert_null(kiln_empty(ctx, KILN_DTYPE_F32, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}));
    ku_expect_error("ndim", "too many dims");
    cr_assert_null(kiln_empty(ctx, KILN_DTYPE_F32, 1, (int64_t[]){-3}));
    ku_expect_error("negative", "negative dim");
}

Test(core, print_elides_long_dims)
{
    kiln_tensor *t = kiln_zeros(ctx, KILN_DTYPE_F32, 2, (int64_t[]){2, 10});
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    cr_assert_eq(kiln_tensor_print(f, t, "z"), KILN_STATUS_OK);
    fclose(f);
    cr_assert(strstr(out, "z = tensor([[0.0000, 0.0000, 0.0000, ..., 0.0000, 0.0000, 0.0000],") != NULL, "%s", out);
    cr_assert(strstr(out, "shape (2, 10), f32)") != NULL, "%s", out);
    free(out);
}

Test(core, store_flat_buffers)
{
    kiln_store *s = kiln_store_new();
    kiln_tensor *w = kiln_store_param(s, "layer1.0.conv1.weight", 2, (int64_t[]){3, 4});
    kiln_tensor *rm = kiln_store_buffer(s, "layer1.0.bn1.running_mean", 1, (int64_t[]){4});
    kiln_tensor *b = kiln_store_param(s, "layer1.0.conv1.bias", 1, (int64_t[]){3});
    cr_assert_null(kiln_store_param(s, "layer1.0.conv1.bias", 1, (int64_t[]){3}));
    ku_expect_error("duplicate", "duplicate names");
    cr_assert_eq(kiln_store_alloc(s), KILN_STATUS_OK);
    size_t np, ng, nb;
    float *p = kiln_store_flat(s, KILN_STORE_PARAMS, &np);
    float *g = kiln_store_flat(s, KILN_STORE_GRADS, &ng);
    kiln_store_flat(s, KILN_STORE_BUFFERS, &nb);
    cr_assert_eq(np, 15);
    cr_assert_eq(ng, 15);
    cr_assert_eq(nb, 4);
    cr_assert_eq(w->data, p);
    cr_assert_eq(b->data, p + 12);
    cr_assert_eq(w->grad->data, g);
    cr_assert(w->requires_grad && !rm->requires_grad);
    cr_assert_eq(kiln_store_find(s, "layer1.0.bn1.running_mean"), rm);
    cr_assert_null(kiln_store_param(s, "late", 1, (int64_t[]){1}));
    ku_expect_error("after", "add after alloc");
    g[3] = 5;
    kiln_store_zero_grad(s);
    cr_assert_eq(g[3], 0);
    kiln_store_free(s);
}

/* kiln_store_first_nonfinite names the first tensor holding a NaN or an infinity, per kind. */
Test(core, store_first_nonfinite)
{
    kiln_store *s = kiln_store_new();
    kiln_store_param(s, "conv.weight", 2, (int64_t[]){3, 4});
    kiln_tensor *rv = kiln_store_buffer(s, "bn.running_var", 1, (int64_t[]){4});
    kiln_tensor *b = kiln_store_param(s, "conv.bias", 1, (int64_t[]){3});
    int64_t at = 7;
    cr_assert_eq(kiln_store_first_nonfinite(s, KILN_STORE_PARAMS, &at), -1, "not allocated yet");
    cr_assert_eq(kiln_store_alloc(s), KILN_STATUS_OK);
    for (int k = 0; k < 3; k++) cr_assert_eq(kiln_store_first_nonfinite(s, (kiln_store_kind)k, &at), -1);
    cr_assert_eq(at, -1);
    ((float *)b->data)[2] = NAN;
    cr_assert_eq(kiln_store_first_nonfinite(s, KILN_STORE_PARAMS, &at), 2);
    cr_assert_str_eq(kiln_store_at(s, 2)->name, "conv.bias");
    cr_assert_eq(at, 2);
    cr_assert_eq(kiln_store_first_nonfinite(s, KILN_STORE_GRADS, NULL), -1);
    cr_assert_eq(kiln_store_first_nonfinite(s, KILN_STORE_BUFFERS, NULL), -1);
    ((float *)b->grad->data)[0] = -INFINITY;
    cr_assert_eq(kiln_store_first_nonfinite(s, KILN_STORE_GRADS, &at), 2);
    cr_assert_eq(at, 0);
    ((float *)rv->data)[3] = INFINITY;
    cr_assert_eq(kiln_store_first_nonfinite(s, KILN_STORE_BUFFERS, &at), 1);
    cr_assert_eq(at, 3);
    kiln_store_free(s);
}

/* A message naming a long path keeps its start (the op) and its end (the cause), also after
 * prefixes are put before it (a 1 KiB buffer used to cut it inside the path). */
Test(core, long_error_message_keeps_its_cause)
{
    static char path[20000];
    memset(path, 'p', sizeof path - 1);
    cr_assert_eq(kiln__err(KILN_STATUS_IO, "st_save: cannot create %s: File name too long", path), KILN_STATUS_IO);
    const char *m = kiln_last_error();
    cr_expect(!strncmp(m, "st_save: cannot create ppp", 26), "start: %.40s", m);
    cr_expect(strstr(m, "ppp [...] ppp"), "the middle is marked as cut");
    size_t n = strlen(m);
    cr_assert(n > 40);
    cr_expect_str_eq(m + n - 20, ": File name too long");
    for (int k = 0; k < 50; k++) kiln__err_prefix(KILN_STATUS_IO, "fit: checkpoint_save: ");
    m = kiln_last_error();
    n = strlen(m);
    cr_expect(!strncmp(m, "fit: checkpoint_save: fit:", 26), "start: %.40s", m);
    cr_expect_str_eq(m + n - 20, ": File name too long");
    kiln__err(KILN_STATUS_IO, "short %s", "message");
    kiln__err_prefix(KILN_STATUS_IO, "op: ");
    cr_expect_str_eq(kiln_last_error(), "op: short message");
}

/* kiln_error is the public setter; kiln_last_status keeps the code of a call that returns
 * NULL; kiln_clear_error resets both. */
Test(core, public_error_setter_and_last_status)
{
    kiln_clear_error();
    cr_assert_eq(kiln_last_status(), KILN_STATUS_OK);
    cr_assert_str_eq(kiln_last_error(), "");
    cr_assert_eq(kiln_error(KILN_STATUS_FORMAT, "my_metric: %d classes, want %s", 3, "2"), KILN_STATUS_FORMAT);
    cr_assert_eq(kiln_last_status(), KILN_STATUS_FORMAT);
    cr_assert_str_eq(kiln_last_error(), "my_metric: 3 classes, want 2");
    cr_assert_eq(kiln_error(KILN_STATUS_OK, "an error with no code"), KILN_STATUS_INVALID, "OK is no error code");
    cr_assert_eq(kiln_last_status(), KILN_STATUS_INVALID);
    kiln_clear_error();
    cr_assert_eq(kiln_last_status(), KILN_STATUS_OK);
    kiln_vision_params vp = kiln_vision_default_params();
    cr_assert_null(kiln_vision_open("/nonexistent/kiln-test-data", &vp));
    cr_assert_eq(kiln_last_status(), KILN_STATUS_IO, "NULL from vision_open keeps IO: %s (%s)",
                 kiln_status_name(kiln_last_status()), kiln_last_error());
    cr_assert(strstr(kiln_last_error(), "/nonexistent/kiln-test-data"), "%s", kiln_last_error());
}

/* The suite runs on the caller's OMP_NUM_THREADS (2 when unset, see CMakeLists.txt), so a
 * 1-thread run really is one: the test context, a default context and OpenMP agree. */
Test(core, threads_follow_omp_num_threads)
{
    const char *e = getenv("OMP_NUM_THREADS");
    int want = ku_threads(); /* OMP_NUM_THREADS, or 2 when the binary runs outside ctest */
    cr_assert(!e || atoi(e) <= 0 || want == atoi(e), "ku_threads %d, OMP_NUM_THREADS=%s", want, e);
    cr_assert_eq(kiln_ctx_threads(ctx), want, "ku_ctx: %d threads, want %d", kiln_ctx_threads(ctx), want);
    if (e && atoi(e) > 0) {
        kiln_ctx_params p = kiln_ctx_default_params();
        kiln_ctx *c0 = kiln_ctx_new(&p);
        cr_assert_not_null(c0);
        cr_assert_eq(kiln_ctx_threads(c0), want, "n_threads 0: %d threads, OMP_NUM_THREADS=%s", kiln_ctx_threads(c0), e);
        kiln_ctx_free(c0);
        kiln_ctx_set_threads(ctx, want); /* c0 set OpenMP's count too; ctx's again */
    }
#ifdef _OPENMP
    int seen = 0;
#pragma omp parallel
#pragma omp single
    seen = omp_get_num_threads();
    cr_assert_eq(seen, want, "an OpenMP region ran %d threads, want %d", seen, want);
#endif
}

Test(core, rng_same_seed_same_numbers_any_threads)
{
    float a[5000], b[5000];
    kiln_rng_seed(ctx, 7);
    kiln_rng_normal(ctx, a, 5000, 0, 1);
    kiln_ctx_set_threads(ctx, 1);
    kiln_rng_seed(ctx, 7);
    kiln_rng_normal(ctx, b, 5000, 0, 1);
    cr_assert(memcmp(a, b, sizeof a) == 0);
    double mean = 0, var = 0;
    for (int i = 0; i < 5000; i++) mean += a[i];
    mean /= 5000;
    for (int i = 0; i < 5000; i++) var += (a[i] - mean) * (a[i] - mean);
    var /= 5000;
    cr_assert(fabs(mean) < 0.05 && fabs(var - 1) < 0.06, "normal: mean %g var %g", mean, var);
    kiln_rng_normal(ctx, b, 5000, 0, 1);
    cr_assert(memcmp(a, b, sizeof a) != 0, "the counter advances");
    kiln_rng_state st = kiln_rng_get(ctx);
    kiln_rng_uniform(ctx, a, 100, -1, 1);
    kiln_rng_set(ctx, st);
    kiln_rng_uniform(ctx, b, 100, -1, 1);
    cr_assert(memcmp(a, b, 100 * sizeof *a) == 0, "state restore replays the draws");
    for (int i = 0; i < 100; i++) cr_assert(a[i] >= -1 && a[i] < 1);
}

Test(core, backward_requires_scalar_and_grad)
{
    kiln_tensor *x = kiln_randn(ctx, 1, (int64_t[]){3}, 0, 1);
    cr_assert_eq(kiln_backward(ctx, x), KILN_STATUS_INVALID);
    ku_expect_error("one element", "non-scalar loss");
    kiln_tensor *s = kiln_full(ctx, 0, NULL, 1);
    cr_assert_eq(kiln_backward(ctx, s), KILN_STATUS_INVALID);
    ku_expect_error("require grad", "loss without graph");
}

Test(core, no_grad_mode_records_nothing)
{
    kiln_tensor *x = kiln_randn(ctx, 2, (int64_t[]){2, 3}, 0, 1);
    kiln_set_requires_grad(x, true);
    bool was = kiln_set_grad_enabled(ctx, false);
    cr_assert(was);
    kiln_tensor *y = kiln_transpose(ctx, x, 0, 1);
    cr_assert(!y->requires_grad && y->node == NULL);
    kiln_set_grad_enabled(ctx, true);
    kiln_tensor *z = kiln_transpose(ctx, x, 0, 1);
    cr_assert(z->requires_grad && z->node != NULL);
    kiln_tensor *d = kiln_detach(ctx, z);
    cr_assert(!d->requires_grad && d->node == NULL && d->data == z->data);
}

Test(core, grads_accumulate_into_store_params)
{
    kiln_store *s = kiln_store_new();
    kiln_tensor *w = kiln_store_param(s, "w", 2, (int64_t[]){2, 3});
    cr_assert_eq(kiln_store_alloc(s), KILN_STATUS_OK);
    for (int rep = 0; rep < 2; rep++) {
        kiln_mark m = kiln_step_mark(ctx);
        kiln_tensor *y = kiln_reshape(ctx, kiln_transpose(ctx, w, 0, 1), 1, (int64_t[]){6});
        float ones[6] = {1, 2, 3, 4, 5, 6};
        kiln_tensor *g = kiln_from_data(ctx, KILN_DTYPE_F32, 1, (int64_t[]){6}, ones);
        cr_assert_eq(kiln_backward_with(ctx, y, g), KILN_STATUS_OK, "%s", kiln_last_error());
        kiln_step_rewind(ctx, m);
    }
    /* y = w^T flattened: y[k] for k = j*2+i is w[i][j]; grad w[i][j] = 2 * (j*2+i+1). */
    const float *gw = w->grad->data;
    cr_assert_eq(gw[0], 2 * 1.0f);
    cr_assert_eq(gw[1], 2 * 3.0f);
    cr_assert_eq(gw[3], 2 * 2.0f);
    kiln_store_free(s);
}

/* y = x + 2e-3 x^2, with one factor detached when *user is true: the tape then misses half
 * of the 4e-3 x term, a 0.3% error in the gradient at x = 1.5. */
static kiln_tensor *gc_small_error(kiln_ctx *c, kiln_tensor **in, void *user)
{
    kiln_tensor *x = in[0], *other = *(bool *)user ? kiln_detach(c, x) : x;
    return kiln_add(c, x, kiln_mul_scalar(c, kiln_mul(c, x, other), 2e-3f));
}

Test(core, gradcheck_finds_a_small_gradient_error)
{
    kiln_tensor *x = kiln_full(ctx, 1, (int64_t[]){16}, 1.5f);
    kiln_set_requires_grad(x, true);
    kiln_gradcheck_params p = {.eps = 1e-2, .atol = 1e-4, .rtol = 1e-3};
    double used = -1;
    bool wrong = false;
    cr_assert_eq(kiln_gradcheck(ctx, gc_small_error, &x, 1, &wrong, &p, &used), KILN_STATUS_OK, "%s",
                 kiln_last_error());
    /* smooth: Richardson leaves only f32 rounding, a few percent of the tolerance */
    cr_assert(used >= 0 && used < 0.1, "share of the tolerance used: %g", used);
    wrong = true;
    cr_assert_eq(kiln_gradcheck(ctx, gc_small_error, &x, 1, &wrong, &p, &used), KILN_STATUS_INVALID);
    ku_expect_error("analytic", "a gradient 0.3% off");
    /* the loose tolerance the op tests used before (1e-2 abs and rel) let it through */
    p.atol = p.rtol = 1e-2;
    cr_assert_eq(kiln_gradcheck(ctx, gc_small_error, &x, 1, &wrong, &p, &used), KILN_STATUS_OK);
    cr_assert(used > 0.05 && used < 1, "share of the tolerance used: %g", used);
}

/* The RNG state as named keys: every 64-bit value exactly, bad text refused by key. */
Test(core, rng_state_json)
{
    kiln_rng_state s = {UINT64_MAX, (1ULL << 63) + 12345}, t = {0, 0};
    char *j = kiln_rng_state_to_json(s);
    cr_assert_not_null(j);
    cr_assert_str_eq(j, "{\"seed\":\"18446744073709551615\",\"counter\":\"9223372036854788153\"}");
    cr_assert(!kiln_rng_state_from_json(j, &t), "%s", kiln_last_error());
    cr_assert(t.seed == s.seed && t.counter == s.counter);
    free(j);
    cr_assert(!kiln_rng_state_from_json("{\"seed\":7,\"counter\":\"8\"}", &t) && t.seed == 7 && t.counter == 8,
              "small numbers may be plain JSON numbers");
    kiln_rng_state keep = t;
    const char *bad[][2] = {{"{\"seed\":\"1\"}", "\"counter\" is missing"},
                            {"{\"seed\":\"-1\",\"counter\":\"0\"}", "\"seed\" is not an unsigned"},
                            {"{\"seed\":\"18446744073709551616\",\"counter\":\"0\"}", "\"seed\" is not an unsigned"},
                            {"{\"seed\":1.5,\"counter\":\"0\"}", "\"seed\" is not an unsigned"},
                            {"[1, 2]", "not a JSON object"},
                            {"{\"seed\":", "not a JSON object"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(kiln_rng_state_from_json(bad[i][0], &t), KILN_STATUS_FORMAT, "%s", bad[i][0]);
        ku_expect_error(bad[i][1], bad[i][0]);
        cr_assert(t.seed == keep.seed && t.counter == keep.counter, "unchanged on error");
    }
    cr_assert_eq(kiln_rng_state_from_json(NULL, &t), KILN_STATUS_FORMAT);
}
