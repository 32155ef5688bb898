/* View ops against PyTorch fixtures (tests/fixtures/views.safetensors) and finite
 * differences. Forward values are moved, not computed: tolerance 0. Gradients are exact
 * too except where expand sums over broadcast dims (summation order): 1e-6 relative. */
#include "util/ku.h"

static kiln_ctx *ctx;
static kiln_st_file *fx;
static void setup(void) { ctx = ku_ctx(); fx = ku_fixture("views"); }
static void teardown(void) { kiln_st_close(fx); ku_ctx_free(ctx); }
TestSuite(views, .init = setup, .fini = teardown);

typedef kiln_tensor *(*view_fn)(kiln_ctx *, kiln_tensor *);

static void check(const char *kase, view_fn f)
{
    kiln_tensor *x = ku_load_grad(ctx, fx, kase, "x");
    kiln_tensor *y = kiln_contiguous(ctx, f(ctx, x));
    ku_expect_fixture(ctx, fx, kase, "y", y, 0, 0);
    cr_assert_eq(kiln_backward_with(ctx, y, ku_load(ctx, fx, kase, "gy")), KILN_STATUS_OK, "%s", kiln_last_error());
    ku_expect_fixture(ctx, fx, kase, "grad.x", x->grad, 1e-7, 1e-6);
}

static kiln_tensor *f_reshape(kiln_ctx *c, kiln_tensor *x) { return kiln_reshape(c, x, 2, (int64_t[]){6, -1}); }
static kiln_tensor *f_flatten(kiln_ctx *c, kiln_tensor *x) { return kiln_flatten(c, x, 1, 2); }
static kiln_tensor *f_permute(kiln_ctx *c, kiln_tensor *x) { return kiln_permute(c, x, (int[]){2, 0, 1}); }
static kiln_tensor *f_transpose(kiln_ctx *c, kiln_tensor *x) { return kiln_transpose(c, x, 0, 2); }
static kiln_tensor *f_slice_step(kiln_ctx *c, kiln_tensor *x) { return kiln_slice(c, x, 1, 1, 7, 2); }
static kiln_tensor *f_slice_neg(kiln_ctx *c, kiln_tensor *x) { return kiln_slice(c, x, -1, -3, INT64_MAX, 1); }
static kiln_tensor *f_expand(kiln_ctx *c, kiln_tensor *x) { return kiln_expand(c, x, 3, (int64_t[]){4, 3, 5}); }
static kiln_tensor *f_unsqueeze(kiln_ctx *c, kiln_tensor *x)
{
    return kiln_expand(c, kiln_unsqueeze(c, x, 1), 3, (int64_t[]){2, 4, 3});
}
static kiln_tensor *f_chain(kiln_ctx *c, kiln_tensor *x)
{
    kiln_tensor *y = kiln_permute(c, x, (int[]){1, 0, 2});
    y = kiln_slice(c, y, 0, 1, INT64_MAX, 1);
    y = kiln_slice(c, y, 2, 0, INT64_MAX, 2);
    return kiln_reshape(c, y, 1, (int64_t[]){-1});
}

Test(views, reshape) { check("reshape", f_reshape); }
Test(views, flatten) { check("flatten", f_flatten); }
Test(views, permute) { check("permute", f_permute); }
Test(views, transpose) { check("transpose", f_transpose); }
Test(views, slice_step) { check("slice_step", f_slice_step); }
Test(views, slice_negative) { check("slice_neg", f_slice_neg); }
Test(views, expand) { check("expand", f_expand); }
Test(views, unsqueeze_expand) { check("unsqueeze", f_unsqueeze); }
Test(views, chain_of_views) { check("chain", f_chain); }

Test(views, views_share_data)
{
    kiln_tensor *x = kiln_randn(ctx, 2, (int64_t[]){3, 4}, 0, 1);
    kiln_tensor *t = kiln_transpose(ctx, x, 0, 1);
    cr_assert_eq(t->data, x->data);
    cr_assert(!kiln_is_contiguous(t));
    cr_assert_eq(kiln_get_flat(t, 1), kiln_get_flat(x, 4)); /* t[0][1] == x[1][0] */
    kiln_tensor *s = kiln_slice(ctx, x, 1, 1, 3, 1);
    cr_assert_eq(s->data, (float *)x->data + 1);
    kiln_tensor *c = kiln_contiguous(ctx, t);
    cr_assert_neq(c->data, x->data);
    cr_assert(kiln_is_contiguous(c));
    ku_expect_close(c, t, 0, 0, "contiguous copy");
}

static kiln_tensor *gc_chain(kiln_ctx *c, kiln_tensor **in, void *u)
{
    (void)u;
    return f_chain(c, in[0]);
}
static kiln_tensor *gc_expand(kiln_ctx *c, kiln_tensor **in, void *u)
{
    (void)u;
    return f_expand(c, in[0]);
}

Test(views, gradcheck)
{
    kiln_tensor *x = kiln_randn(ctx, 3, (int64_t[]){3, 4, 6}, 0, 1);
    kiln_set_requires_grad(x, true);
    /* views move values without arithmetic: exact up to f32 rounding of the outputs (measured
     * <= 2e-7); 1e-4 abs + 1e-3 rel as the other linear ops */
    ku_gradcheck(ctx, gc_chain, &x, 1, NULL, 1e-2, 1e-4, 1e-3, "permute+slice+reshape");
    kiln_tensor *y = kiln_randn(ctx, 2, (int64_t[]){3, 1}, 0, 1);
    kiln_set_requires_grad(y, true);
    ku_gradcheck(ctx, gc_expand, &y, 1, NULL, 1e-2, 1e-4, 1e-3, "expand");
}

Test(views, bad_input)
{
    kiln_tensor *x = kiln_randn(ctx, 2, (int64_t[]){3, 4}, 0, 1);
    x->name = "acts";
    cr_assert_null(kiln_reshape(ctx, x, 2, (int64_t[]){5, -1}));
    ku_expect_error("acts", "reshape names the tensor");
    cr_assert_null(kiln_reshape(ctx, x, 2, (int64_t[]){-1, -1}));
    ku_expect_error("-1", "two inferred dims");
    cr_assert_null(kiln_permute(ctx, x, (int[]){0, 0}));
    ku_expect_error("permut", "repeated permutation entry");
    cr_assert_null(kiln_transpose(ctx, x, 0, 2));
    ku_expect_error("out of range", "transpose dim");
    cr_assert_null(kiln_expand(ctx, x, 2, (int64_t[]){3, 5}));
    ku_expect_error("expand", "expand a non-1 dim");
    cr_assert_null(kiln_slice(ctx, x, 0, 0, 2, 0));
    ku_expect_error("step", "zero step");
    cr_assert_null(kiln_reshape(ctx, NULL, 1, (int64_t[]){1}));
}
