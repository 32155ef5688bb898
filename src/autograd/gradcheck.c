/* Finite-difference gradient checker: compares the tape's gradient of
 * L = sum(out * r) with central differences (accumulated in double) for every element of
 * every f32 input that requires grad. Used by the tests of every op. */
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
            float orig = xd[k];
            double lp, lm;
            xd[k] = orig + (float)p->eps;
            double hp = (double)xd[k] - orig;
            if ((st = eval(ctx, fn, inputs, user, r, n_out, &lp)) < 0) break;
            xd[k] = orig - (float)p->eps;
            double hm = orig - (double)xd[k];
            if ((st = eval(ctx, fn, inputs, user, r, n_out, &lm)) < 0) break;
            xd[k] = orig;
            double num = (lp - lm) / (hp + hm), a = analytic[i][k];
            double err = fabs(a - num);
            if (err > worst) worst = err;
            if (!(err <= p->atol + p->rtol * fabs(num))) {
                st = kiln__err(KILN_STATUS_INVALID,
                               "gradcheck: input %d (%s) element %lld: analytic %.6g, numeric %.6g (|diff| %.3g > %.3g)",
                               i, kiln__tname(x), (long long)k, a, num, err, p->atol + p->rtol * fabs(num));
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
