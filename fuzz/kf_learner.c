/* The learner the checkpoint target loads into and make_seeds saves from: an MLP 2-4-3 with
 * BatchNorm, the learner's default AdamW, 12 tensor-data items (kf_learner.h). */
#include "kf_learner.h"

#include "kiln/learn.h"

kf_learn kf_learner_new(void)
{
    kf_learn f = {0};
    kiln_ctx_params cp = kiln_ctx_default_params();
    cp.n_threads = 1;
    cp.seed = 7;
    cp.arena_block_bytes = 1 << 20;
    if (!(f.ctx = kiln_ctx_new(&cp))) return f;
    float x[12 * 2];
    int64_t y[12];
    for (int i = 0; i < 12; i++) x[2 * i] = (float)(i % 3), x[2 * i + 1] = (float)(i % 2) - 0.5f, y[i] = i % 3;
    kiln_tensor xt, yt, xv, yv;
    kiln_tensor_wrap(&xt, KILN_DTYPE_F32, 2, (int64_t[]){8, 2}, x);
    kiln_tensor_wrap(&yt, KILN_DTYPE_I64, 1, (int64_t[]){8}, y);
    kiln_tensor_wrap(&xv, KILN_DTYPE_F32, 2, (int64_t[]){4, 2}, x + 16);
    kiln_tensor_wrap(&yv, KILN_DTYPE_I64, 1, (int64_t[]){4}, y + 8);
    kiln_tensor_data_params dp = kiln_tensor_data_default_params();
    dp.batch_size = 4;
    f.data = kiln_tensor_data_new(&xt, &yt, &xv, &yv, &dp);
    f.model = kiln_mlp_new(2, 1, (int64_t[]){4}, 3, 0.0f, true);
    if (!f.data || !f.model || kiln_model_alloc(f.model, f.ctx)) return f;
    kiln_learner_params lp = kiln_learner_default_params();
    lp.progress = KILN_PROGRESS_STYLE_QUIET;
    f.learn = kiln_learner_new(f.ctx, f.model, f.data, NULL, &lp);
    return f;
}

void kf_learner_free(kf_learn *f)
{
    kiln_learner_free(f->learn);
    kiln_model_free(f->model);
    kiln_data_free(f->data);
    kiln_ctx_free(f->ctx);
}
