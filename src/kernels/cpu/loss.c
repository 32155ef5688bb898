/* CPU pointwise losses (mse, l1, bce with logits) and their gradients. bce is PyTorch
 * 1.13's (1 - y) x + (1 + (pw - 1) y) softplus(-x), evaluated per sign of x so that no two
 * large terms cancel: x < 0 gives -pw y x + (1 + (pw - 1) y) log1p(exp(x)). Sums are
 * accumulated in double over fixed chunks (kiln__par_sum): the same bits for any thread
 * count. */
#include "core/parallel.h"
#include "kernels/dense.h"

#include <math.h>

static inline float sigmoid(float x)
{
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

static inline float ploss(kiln_ploss_kind kind, float x, float y, float pw)
{
    switch (kind) {
    case KILN_PLOSS_MSE: return (x - y) * (x - y);
    case KILN_PLOSS_L1: return fabsf(x - y);
    case KILN_PLOSS_BCE: { /* the branch for x's sign avoids cancelling two large terms */
        float l = 1.0f + (pw - 1.0f) * y, t = log1pf(expf(-fabsf(x)));
        return x >= 0.0f ? (1.0f - y) * x + l * t : -pw * y * x + l * t;
    }
    }
    return 0.0f;
}

typedef struct ploss_arg {
    kiln_ploss_kind kind;
    const float *x, *y, *pw;
    float *out;
} ploss_arg;

static double ploss_chunk(void *arg, int64_t lo, int64_t hi)
{
    const ploss_arg *a = arg;
    double s = 0.0;
    for (int64_t i = lo; i < hi; i++) {
        float l = ploss(a->kind, a->x[i], a->y[i], a->pw ? a->pw[i] : 1.0f);
        if (a->out) a->out[i] = l;
        s += l;
    }
    return s;
}

double kiln__cpu_ploss_fwd(kiln_ctx *ctx, kiln_ploss_kind kind, const float *x, const float *y, const float *pw,
                           int64_t n, float *out)
{
    ploss_arg a = {kind, x, y, pw, out};
    return kiln__par_sum(ctx ? ctx->n_threads : 1, n, 4096, 1, ploss_chunk, &a);
}

void kiln__cpu_ploss_bwd(kiln_ctx *ctx, kiln_ploss_kind kind, const float *x, const float *y, const float *pw,
                         int64_t n, const float *g, int64_t g_stride, float *gx, float *gy)
{
    KILN_PAR_LOOP(kiln__par_threads(ctx, n), for (int64_t i = 0; i < n; i++) {
        float gi = g[i * g_stride], dx = 0.0f, dy = 0.0f, d = x[i] - y[i];
        switch (kind) {
        case KILN_PLOSS_MSE:
            dx = 2.0f * d;
            dy = -dx;
            break;
        case KILN_PLOSS_L1:
            dx = (float)((d > 0.0f) - (d < 0.0f));
            dy = -dx;
            break;
        case KILN_PLOSS_BCE: {
            float w = pw ? pw[i] : 1.0f;
            dx = (w * y[i] + 1.0f - y[i]) * sigmoid(x[i]) - w * y[i];
            float t = log1pf(expf(-fabsf(x[i]))); /* softplus(-x) = max(-x, 0) + t */
            dy = x[i] >= 0.0f ? -x[i] + (w - 1.0f) * t : -w * x[i] + (w - 1.0f) * t;
            break;
        }
        }
        if (gx) gx[i] += gi * dx;
        if (gy) gy[i] += gi * dy;
    });
}
