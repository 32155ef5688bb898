/* Learner test set-ups: see ku_learn.h. */
#include "util/ku_learn.h"

#include "kiln/learn.h"

#include <math.h>
#include <stdlib.h>

static double urand(uint64_t *rs) /* xorshift64*, [0, 1) */
{
    *rs ^= *rs >> 12, *rs ^= *rs << 25, *rs ^= *rs >> 27;
    return (double)((*rs * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static double nrand(uint64_t *rs) { return sqrt(-2 * log(1 - urand(rs))) * cos(2 * M_PI * urand(rs)); }

void ku_blobs(uint64_t *rs, int64_t n, double center, double noise, float *x, int64_t *y)
{
    for (int64_t i = 0; i < n; i++) {
        int64_t c = i % 4;
        x[2 * i] = (float)((c & 1 ? center : -center) + noise * nrand(rs));
        x[2 * i + 1] = (float)((c & 2 ? center : -center) + noise * nrand(rs));
        y[i] = c;
    }
}

ku_learn ku_learn_new(const ku_learn_params *p)
{
    ku_learn f = {0};
    int64_t nt = p->n_train, nv = p->n_valid;
    f.ctx = ku_ctx();
    float *x = malloc((size_t)(nt + nv) * 2 * sizeof *x);
    int64_t *y = malloc((size_t)(nt + nv) * sizeof *y);
    cr_assert(x && y, "out of memory");
    uint64_t rs = KU_BLOBS_SEED;
    ku_blobs(&rs, nt + nv, p->center, p->noise, x, y);
    kiln_tensor xt, yt, xv, yv;
    kiln_tensor_wrap(&xt, KILN_DTYPE_F32, 2, (int64_t[]){nt, 2}, x);
    kiln_tensor_wrap(&yt, KILN_DTYPE_I64, 1, (int64_t[]){nt}, y);
    kiln_tensor_wrap(&xv, KILN_DTYPE_F32, 2, (int64_t[]){nv, 2}, x + 2 * nt);
    kiln_tensor_wrap(&yv, KILN_DTYPE_I64, 1, (int64_t[]){nv}, y + nt);
    kiln_tensor_data_params dp = kiln_tensor_data_default_params();
    dp.batch_size = p->batch_size;
    f.data = kiln_tensor_data_new(&xt, &yt, &xv, &yv, &dp); /* copies x and y */
    free(x), free(y);
    cr_assert(f.data, "tensor_data: %s", kiln_last_error());
    f.model = kiln_mlp_new(2, 1, (int64_t[]){p->hidden}, 4, p->dropout, p->batchnorm);
    cr_assert(f.model && !kiln_model_alloc(f.model, f.ctx), "mlp: %s", kiln_last_error());
    if (p->sgd) {
        kiln_sgd_params sp = kiln_sgd_default_params();
        sp.momentum = 0.9;
        f.opt = kiln_optim_new_sgd(kiln_model_store(f.model), &sp);
        cr_assert(f.opt, "%s", kiln_last_error());
    }
    kiln_learner_params lp = p->learner ? *p->learner : kiln_learner_default_params();
    if (!p->learner)
        lp.progress = KILN_PROGRESS_STYLE_QUIET;
    f.learn = kiln_learner_new(f.ctx, f.model, f.data, f.opt, &lp);
    cr_assert(f.learn, "learner_new: %s", kiln_last_error());
    if (p->accuracy) {
        kiln_metric acc = kiln_metric_make(KILN_METRIC_KIND_ACCURACY);
        cr_assert(!kiln_learner_add_metric(f.learn, &acc));
    }
    return f;
}

void ku_learn_free(ku_learn *f)
{
    kiln_learner_free(f->learn);
    kiln_optim_free(f->opt);
    kiln_model_free(f->model);
    kiln_data_free(f->data);
    ku_ctx_free(f->ctx);
}
