/* Finite-difference gradient checker: compares the tape's gradient of
 * L = sum(out * r) with Richardson-extrapolated central differences (L accumulated in
 * double) for every element of every f32 input that requires grad. Used by the tests of
 * every op.
 *
 * Error of the numeric derivative: a central difference D(h) has truncation h^2 f'''/6;
 * combining D(h) and D(h/2) as (4 D(h/2) - D(h)) / 3 cancels it, leaving h^4 f^(5)/480.
 * What remains is the f32 rounding of the outputs, about 3 u |f| / h (u = 6e-8), so a
 * larger step is better as long as no kink (relu, abs, max) lies within h of an input. */
#include "autograd/tape.h"
#include "kiln/autograd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

kiln_gradcheck_params kiln_gradcheck_default_params(void)
{
    return (kiln_gradcheck_params){.eps = 1e-2, .atol = 1e-2, .rtol = 1e-2};
}

/* sum(out * r) in double; out may be strided. */
static double weighted_sum(const kiln_tensor *out, const float *r)
{
    double s = 0;
    for (int64_t i = 0, n = kiln_numel(out); i < n; i++) s += kiln_get_flat(out, i) * (double)r[i];
    return s;
}

static kiln_status eval(kiln_ctx *ctx, kiln_gradcheck_fn fn, kiln_tensor **inputs, void *user, const float *r,
                        int64_t n_out, double *loss)
{
    kiln_mark m = kiln_step_mark(ctx);
    kiln_tensor *out = fn(ctx, inputs, user);
    if (!out) return KILN_STATUS_INVALID;
    if (kiln_numel(out) != n_out)
        return kiln__err(KILN_STATUS_INVALID, "gradcheck: output size changed between calls");
    *loss = weighted_sum(out, r);
    kiln_step_rewind(ctx, m);
    return KILN_STATUS_OK;
}

/* (L(x + h) - L(x - h)) / 2h for the element *xk, with h the half-width f32 rounding gave */
static kiln_status central_difference(kiln_ctx *ctx, kiln_gradcheck_fn fn, kiln_tensor **inputs, void *user,
                                      const float *r, int64_t n_out, float *xk, double step, double *d, double *h)
{
    float orig = *xk;
    double lp = 0, lm = 0;
    *xk = orig + (float)step;
    double hp = (double)*xk - orig;
    kiln_status st = eval(ctx, fn, inputs, user, r, n_out, &lp);
    *xk = orig - (float)step;
    double hm = orig - (double)*xk;
    if (st == KILN_STATUS_OK) st = eval(ctx, fn, inputs, user, r, n_out, &lm);
    *xk = orig;
    *d = (lp - lm) / (hp + hm);
    *h = (hp + hm) / 2;
    return st;
}

kiln_status kiln_gradcheck(kiln_ctx *ctx, kiln_gradcheck_fn fn, kiln_tensor **inputs, int n, void *user,
                           const kiln_gradcheck_params *p, double *max_err)
{
    kiln_gradcheck_params d = kiln_gradcheck_default_params();
    if (!p) p = &d;
    if (max_err) *max_err = 0;
    if (n > 64) return kiln__err(KILN_STATUS_INVALID, "gradcheck: at most 64 inputs");
    bool had_grad[64] = {false};
    for (int i = 0; i < n; i++) {
        if (!inputs[i]) continue;
        had_grad[i] = inputs[i]->grad != NULL;
        if (inputs[i]->requires_grad && (inputs[i]->dtype != KILN_DTYPE_F32 || !kiln_is_contiguous(inputs[i])))
            return kiln__err(KILN_STATUS_INVALID, "gradcheck: input %d must be contiguous f32", i);
        if (inputs[i]->grad) memset(inputs[i]->grad->data, 0, (size_t)kiln_numel(inputs[i]) * sizeof(float));
    }
    bool was = kiln_set_grad_enabled(ctx, true);
    kiln_status st = KILN_STATUS_OK;
    float *r = NULL;
    double **analytic = calloc((size_t)n, sizeof *analytic);
    kiln_mark m0 = kiln_step_mark(ctx);
    kiln_tensor *out = fn(ctx, inputs, user);
    if (!out || !analytic) {
        st = out ? kiln__err(KILN_STATUS_NOMEM, "gradcheck: out of memory") : KILN_STATUS_INVALID;
        goto done;
    }
    int64_t n_out = kiln_numel(out);
    r = malloc((size_t)(n_out ? n_out : 1) * sizeof *r);
    if (!r) {
        st = kiln__err(KILN_STATUS_NOMEM, "gradcheck: out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n_out; i++) r[i] = kiln_philox_uniform(0x9e3779b9u, (uint64_t)i) * 2.0f - 1.0f;
    kiln_tensor rt;
    kiln_tensor_wrap(&rt, KILN_DTYPE_F32, out->ndim, out->shape, r);
    if ((st = kiln_backward_with(ctx, out, &rt)) < 0) goto done;
    for (int i = 0; i < n; i++) {
        kiln_tensor *x = inputs[i];
        if (!x || !x->requires_grad) continue;
        int64_t m = kiln_numel(x);
        analytic[i] = calloc((size_t)(m ? m : 1), sizeof(double));
        if (!analytic[i]) {
            st = kiln__err(KILN_STATUS_NOMEM, "gradcheck: out of memory");
            goto done;
        }
        for (int64_t k = 0; x->grad && k < m; k++) analytic[i][k] = ((float *)x->grad->data)[k];
    }
    kiln_set_grad_enabled(ctx, false);
    double worst = 0;
    for (int i = 0; i < n && st == KILN_STATUS_OK; i++) {
        kiln_tensor *x = inputs[i];
        if (!x || !x->requires_grad) continue;
        float *xd = x->data;
        for (int64_t k = 0, m = kiln_numel(x); k < m; k++) {
            double d[2], h[2];
            for (int j = 0; j < 2 && st == KILN_STATUS_OK; j++)
                st = central_difference(ctx, fn, inputs, user, r, n_out, &xd[k], p->eps / (1 + j), &d[j], &h[j]);
            if (st < 0) break;
            if (!(h[1] > 0 && h[0] > h[1])) {
                st = kiln__err(KILN_STATUS_INVALID, "gradcheck: eps %g is below the f32 spacing of input %d (%s) element %lld",
                               p->eps, i, kiln__tname(x), (long long)k);
                break;
            }
            /* Richardson: the D(h) = f' + c h^2 model solved for f' with the steps f32 gave */
            double num = (h[0] * h[0] * d[1] - h[1] * h[1] * d[0]) / (h[0] * h[0] - h[1] * h[1]);
            double a = analytic[i][k], err = fabs(a - num), allowed = p->atol + p->rtol * fabs(num);
            double share = err / allowed; /* 0/0 = NaN never counts; err/0 = inf does */
            if (share > worst) worst = share;
            if (!(err <= allowed)) {
                st = kiln__err(KILN_STATUS_INVALID,
                               "gradcheck: input %d (%s) element %lld: analytic %.6g, numeric %.6g (|diff| %.3g > %.3g)",
                               i, kiln__tname(x), (long long)k, a, num, err, allowed);
                break;
            }
        }
    }
    if (max_err) *max_err = worst;
done:
    kiln_set_grad_enabled(ctx, was);
    kiln_step_rewind(ctx, m0);
    for (int i = 0; i < n; i++) {
        if (analytic) free(analytic[i]);
        /* Grads made during the check lived in the rewound arena; store grads stay. */
        if (inputs[i] && !had_grad[i]) inputs[i]->grad = NULL;
    }
    free(analytic);
    free(r);
    return st;
}
