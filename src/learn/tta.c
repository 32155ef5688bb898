/* Test-time augmentation, as fastai v2's Learner.tta(n=4, beta=0.25, use_max=False): n
 * predictions over a split with the training augmentation switched on for that split (the
 * data source's TTA pass, kiln_data_set_tta_pass in data.h), reduced by mean or elementwise
 * max to `aug`, then final = torch.lerp(aug, plain, beta) = aug + beta * (plain - aug) with
 * the plain pass. Pass k is deterministic (a vision source draws its transform from
 * kiln_vision_tta_seed(seed, k)). Also the scoring of any predictions (kiln_learner_score),
 * shared with the snapshot ensembles. */
#include "learn_internal.h"
#include "kiln/learn_tta.h"

#include <math.h>
#include <string.h>

/* acc (count) doubles: pass k of n added in (sum, or max). */
static void acc_add(double *acc, const float *p, int64_t count, int k, bool use_max)
{
    if (k == 0) {
        for (int64_t i = 0; i < count; i++) acc[i] = p[i];
    } else if (use_max) {
        for (int64_t i = 0; i < count; i++) acc[i] = p[i] > acc[i] ? p[i] : acc[i];
    } else {
        for (int64_t i = 0; i < count; i++) acc[i] += p[i];
    }
}

/* out = lerp(aug, plain, beta), aug = acc / n (mean) or acc (max). */
static void acc_finish(const double *acc, const float *plain, int64_t count, int n, double beta, bool use_max,
                       float *out)
{
    for (int64_t i = 0; i < count; i++) {
        double aug = use_max ? acc[i] : acc[i] / n;
        out[i] = (float)(aug + beta * ((double)plain[i] - aug));
    }
}

static kiln_status check(const char *fn, int n, double beta)
{
    if (n < 1) return kiln__err(KILN_STATUS_INVALID, "%s: n %d must be >= 1", fn, n);
    if (!(beta >= 0 && beta <= 1)) return kiln__err(KILN_STATUS_INVALID, "%s: beta %g outside [0, 1]", fn, beta);
    return KILN_STATUS_OK;
}

kiln_status kiln_tta_combine(const float *plain, const float *passes, int n, int64_t count, double beta,
                             bool use_max, float *out)
{
    kiln_status st = check("tta_combine", n, beta);
    if (st) return st;
    if (!plain || !passes || !out || count < 0)
        return kiln__err(KILN_STATUS_INVALID, "tta_combine: NULL buffer or negative count");
    double *acc = malloc((size_t)(count ? count : 1) * sizeof *acc);
    if (!acc) return kiln__err(KILN_STATUS_NOMEM, "tta_combine: out of memory");
    for (int k = 0; k < n; k++) acc_add(acc, passes + (size_t)k * (size_t)count, count, k, use_max);
    acc_finish(acc, plain, count, n, beta, use_max, out);
    free(acc);
    return KILN_STATUS_OK;
}

kiln_status kiln_learner_score(kiln_learner *l, const kiln_preds *p, double *loss, double *metrics)
{
    if (!l || !p || (!p->probs && p->n))
        return kiln__err(KILN_STATUS_INVALID, "learner_score: NULL argument");
    double given = p->loss;
    return kiln__learn_score(l, p->probs, p, loss, &given, metrics);
}

kiln_status kiln_learner_tta(kiln_learner *l, kiln_data_split split, int n, double beta, bool use_max,
                             kiln_preds *out)
{
    if (!l || !out) return kiln__err(KILN_STATUS_INVALID, "learner_tta: NULL argument");
    memset(out, 0, sizeof *out);
    kiln_status st = check("learner_tta", n, beta);
    if (st) return st;
    if (l->in_fit) return kiln__err(KILN_STATUS_STATE, "learner_tta: not during a fit");
    if (!kiln_data_has_tta(l->data))
        return kiln__err(KILN_STATUS_UNSUPPORTED, "learner_tta: the data source has no test-time augmentation passes "
                                                  "(kiln_data_ops.set_tta_pass; a vision source makes them with its "
                                                  "transform)");
    if ((st = kiln_data_set_tta_pass(l->data, -1))) return st;
    if ((st = kiln_learner_get_preds(l, split, out))) return st;
    if (out->n == 0 && !kiln__dist_on(l)) return KILN_STATUS_OK; /* an empty split (N ranks: score below) */
    int64_t count = out->n * out->c;
    double *acc = malloc((size_t)(count ? count : 1) * sizeof *acc);
    if (!acc) st = kiln__err(KILN_STATUS_NOMEM, "learner_tta: out of memory");
    for (int k = 0; k < n && !st; k++) {
        kiln_preds p;
        if ((st = kiln_data_set_tta_pass(l->data, k)) || (st = kiln_learner_get_preds(l, split, &p))) break;
        if (p.n != out->n || p.c != out->c)
            st = kiln__err(KILN_STATUS_INVALID, "learner_tta: pass %d gives (%lld, %lld) predictions, not (%lld, %lld)",
                           k, (long long)p.n, (long long)p.c, (long long)out->n, (long long)out->c);
        else acc_add(acc, p.probs, count, k, use_max);
        kiln_preds_free(&p);
    }
    kiln_status rst = kiln_data_set_tta_pass(l->data, -1);
    if (!st) st = rst;
    if (!st) {
        acc_finish(acc, out->probs, count, n, beta, use_max, out->probs);
        st = kiln__learn_score(l, out->probs, out, &out->loss, NULL, NULL);
    }
    free(acc);
    if (st) kiln_preds_free(out);
    return st;
}
