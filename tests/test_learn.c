/* Tests of the Learner (include/kiln/learn.h, data.h) and the progress display: training on
 * small synthetic problems made here, callback order and flags, metrics against values
 * worked out by hand, the recorder and its CSV files, the lrs each group trains with,
 * early stopping, save-best, get_preds and bit-for-bit determinism. */
#include "util/ku_learn.h"

#include "core/internal.h"

#include "kiln/learn.h"
#include "kiln/nn.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

/* ---- fixtures ------------------------------------------------------------------------------ */

/* Four Gaussian blobs at (+-3, +-3), std 1, from the xorshift64* state *rs: x (n, 2) f32,
 * y (n) i64. */
static void blobs(uint64_t *rs, int64_t n, float *x, int64_t *y) { ku_blobs(rs, n, 3, 1, x, y); }

typedef ku_learn fixture;

/* Blobs (n_train / n_valid items, batch bs) and an MLP 2-16-4 (two layer groups). */
static fixture make(int64_t n_train, int64_t n_valid, int64_t bs, const kiln_learner_params *lp)
{
    return ku_learn_new(&(ku_learn_params){.n_train = n_train, .n_valid = n_valid, .batch_size = bs, .center = 3,
                                           .noise = 1, .hidden = 16, .learner = lp});
}

static kiln_sched const_sched(double lr)
{
    kiln_sched s;
    kiln_sched_const_params p = kiln_sched_const_default_params();
    p.lr = lr;
    cr_assert(!kiln_sched_const(&s, &p), "%s", kiln_last_error());
    return s;
}

/* ---- training works --------------------------------------------------------------------- */

Test(learn, one_cycle_learns_blobs)
{
    fixture f = make(512, 256, 32, NULL);
    kiln_metric acc = kiln_metric_make(KILN_METRIC_KIND_ACCURACY);
    cr_assert(!kiln_learner_add_metric(f.learn, &acc));
    double loss0, acc0;
    cr_assert(!kiln_learner_validate(f.learn, KILN_DATA_SPLIT_VALID, &loss0, &acc0), "%s", kiln_last_error());
    kiln_status st = kiln_learner_fit_one_cycle(f.learn, 3, 0, 1e-2, NULL);
    cr_assert(st == KILN_STATUS_OK, "fit: %s", kiln_last_error());
    kiln_recorder *r = kiln_learner_recorder(f.learn);
    cr_assert_eq(kiln_recorder_n_epochs(r), 3);
    cr_assert_eq(kiln_recorder_n_batches(r), 3 * 16);
    kiln_epoch_record e;
    cr_assert(!kiln_recorder_epoch(r, 2, &e));
    cr_assert(e.metrics[0] >= 0.95, "accuracy %g after one-cycle (was %g)", e.metrics[0], acc0);
    cr_assert(e.valid_loss < 0.5 * loss0, "valid loss %g, started at %g", e.valid_loss, loss0);
    double loss1, acc1;
    cr_assert(!kiln_learner_validate(f.learn, KILN_DATA_SPLIT_VALID, &loss1, &acc1));
    cr_assert_eq(loss1, e.valid_loss, "validate after fit %g vs recorded %g", loss1, e.valid_loss);
    cr_assert(kiln_model_training(f.model), "fit leaves the model in train mode");
    ku_learn_free(&f);
}

/* ---- callbacks ---------------------------------------------------------------------------- */

typedef struct trace {
    char log[4096];
    int n;
    int64_t skip_mod;    /* begin_batch: skip batches with iter % skip_mod == 0 (0 = none) */
    int64_t stop_at;     /* end_batch: stop at this iteration (-1 = never) */
    int64_t stop_epoch;  /* end_epoch: stop after this epoch (-1 = never) */
    bool skip_after_loss;
    int64_t lr_checked;  /* after_step: optimizer lrs compared with state */
} trace;

#define TR(fn, ch)                                                      \
    static kiln_status fn(kiln_learner *l, void *u)                     \
    {                                                                   \
        trace *t = u;                                                   \
        if (t->n < (int)sizeof t->log - 1) t->log[t->n++] = ch;         \
        return tr_extra(l, t, ch);                                      \
    }

static kiln_status tr_extra(kiln_learner *l, trace *t, char ch)
{
    kiln_fit_state *s = kiln_learner_state(l);
    if (ch == 'b' && t->skip_mod && s->iter % t->skip_mod == 0) s->skip_batch = true;
    if (ch == 'l' && t->skip_after_loss) s->skip_batch = true;
    if (ch == 'e' && s->iter == t->stop_at) s->stop_training = true;
    if (ch == 'E' && s->epoch == t->stop_epoch) s->stop_training = true;
    if (ch == 's') {
        for (int g = 0; g < s->n_groups; g++) {
            kiln_optim_group og;
            cr_assert(!kiln_optim_get_group(kiln_learner_optim(l), g, &og));
            cr_assert_eq(og.lr, s->lrs[g], "optimizer group %d trained with lr %g, state says %g", g, og.lr, s->lrs[g]);
            cr_assert_eq(og.mom, s->moms[g]);
        }
        t->lr_checked++;
    }
    return KILN_STATUS_OK;
}
TR(tr_begin_fit, 'F')
TR(tr_begin_epoch, 'P')
TR(tr_begin_batch, 'b')
TR(tr_after_loss, 'l')
TR(tr_after_backward, 'w')
TR(tr_after_step, 's')
TR(tr_end_batch, 'e')
TR(tr_end_epoch, 'E')
TR(tr_end_fit, 'f')

static void add_trace(kiln_learner *l, trace *t)
{
    kiln_callback cb = {.name = "trace", .begin_fit = tr_begin_fit, .begin_epoch = tr_begin_epoch,
                        .begin_batch = tr_begin_batch, .after_loss = tr_after_loss,
                        .after_backward = tr_after_backward, .after_step = tr_after_step,
                        .end_batch = tr_end_batch, .end_epoch = tr_end_epoch, .end_fit = tr_end_fit,
                        .user = t};
    cr_assert(!kiln_learner_add_callback(l, &cb));
}

static int count(const char *s, char c)
{
    int n = 0;
    for (; *s; s++) n += *s == c;
    return n;
}

Test(learn, callbacks_order_and_counts)
{
    fixture f = make(64, 32, 16, NULL); /* 4 batches */
    trace t = {.stop_at = -1, .stop_epoch = -1};
    add_trace(f.learn, &t);
    kiln_sched s = const_sched(1e-3);
    cr_assert(!kiln_learner_fit(f.learn, 2, &s), "%s", kiln_last_error());
    const char *want = "FPblwsebl" "wseblwseblwseEPblwseblwseblwseblwseEf";
    cr_assert_str_eq(t.log, want);
    cr_assert(count(t.log, 'F') == 1 && count(t.log, 'b') == 8 && count(t.log, 'E') == 2 && t.lr_checked == 8);
    ku_learn_free(&f);
}

Test(learn, skip_batch)
{
    fixture f = make(64, 32, 16, NULL);
    trace t = {.skip_mod = 2, .stop_at = -1, .stop_epoch = -1};
    add_trace(f.learn, &t);
    kiln_sched s = const_sched(1e-3);
    cr_assert(!kiln_learner_fit(f.learn, 2, &s));
    /* skipped batches go straight to end_batch and are not recorded */
    cr_assert_eq(count(t.log, 'b'), 8);
    cr_assert_eq(count(t.log, 'l'), 4);
    cr_assert_eq(count(t.log, 'e'), 8);
    kiln_recorder *r = kiln_learner_recorder(f.learn);
    cr_assert_eq(kiln_recorder_n_batches(r), 4);
    for (int64_t i = 0; i < 4; i++) cr_assert_eq(kiln_recorder_iters(r)[i] % 2, 1);

    /* skipping after the loss, every batch: no backward, no step, weights unchanged */
    size_t n;
    float *w = kiln_store_flat(kiln_model_store(f.model), KILN_STORE_PARAMS, &n);
    float *before = malloc(n * sizeof *before);
    memcpy(before, w, n * sizeof *w);
    t = (trace){.skip_after_loss = true, .stop_at = -1, .stop_epoch = -1};
    cr_assert(!kiln_learner_fit(f.learn, 1, &s));
    cr_assert(count(t.log, 'l') == 4 && count(t.log, 'w') == 0 && count(t.log, 's') == 0, "%s", t.log);
    cr_assert(!memcmp(before, w, n * sizeof *w), "a skipped batch changed the weights");
    free(before);
    ku_learn_free(&f);
}

Test(learn, stop_training)
{
    fixture f = make(128, 32, 16, NULL); /* 8 batches */
    trace t = {.stop_at = 5, .stop_epoch = -1};
    add_trace(f.learn, &t);
    kiln_sched s = const_sched(1e-3);
    cr_assert(!kiln_learner_fit(f.learn, 3, &s));
    cr_assert(count(t.log, 'b') == 6 && count(t.log, 'E') == 0, "a cut-short epoch is not validated or ended");
    cr_assert_eq(count(t.log, 'f'), 1, "end_fit still runs");
    cr_assert_eq(kiln_recorder_n_epochs(kiln_learner_recorder(f.learn)), 0);

    t = (trace){.stop_at = -1, .stop_epoch = 1};
    cr_assert(!kiln_learner_fit(f.learn, 5, &s));
    cr_assert(count(t.log, 'b') == 16 && count(t.log, 'E') == 2);
    cr_assert_eq(kiln_recorder_n_epochs(kiln_learner_recorder(f.learn)), 2);
    ku_learn_free(&f);
}

static kiln_status fail_cb(kiln_learner *l, void *u)
{
    int *calls = u;
    (*calls)++;
    /* the public setter, as a user's callback reports an error */
    return kiln_learner_state(l)->iter == 2 ? kiln_error(KILN_STATUS_UNSUPPORTED, "boom at iter %d", 2) : KILN_STATUS_OK;
}

Test(learn, callback_error_stops_fit)
{
    fixture f = make(64, 32, 16, NULL);
    int calls = 0;
    trace t = {.stop_at = -1, .stop_epoch = -1};
    kiln_callback cb = {.name = "fail", .end_batch = fail_cb, .user = &calls};
    cr_assert(!kiln_learner_add_callback(f.learn, &cb));
    add_trace(f.learn, &t);
    kiln_sched s = const_sched(1e-3);
    kiln_status st = kiln_learner_fit(f.learn, 2, &s);
    cr_assert_eq(st, KILN_STATUS_UNSUPPORTED);
    cr_assert_eq(kiln_last_status(), KILN_STATUS_UNSUPPORTED, "the callback's status survives the fit's end");
    cr_assert(strstr(kiln_last_error(), "boom at iter 2"), "message: %s", kiln_last_error());
    cr_assert_eq(calls, 3);
    cr_assert_eq(count(t.log, 'f'), 1, "end_fit runs after an error");
    cr_assert_eq(kiln_learner_callback_user(f.learn, "fail"), &calls);
    cr_assert(!kiln_learner_remove_callback(f.learn, "fail"));
    cr_assert_null(kiln_learner_callback_user(f.learn, "fail"));
    cr_assert(!kiln_learner_fit(f.learn, 1, &s), "%s", kiln_last_error());
    ku_learn_free(&f);
}

/* ---- metrics -------------------------------------------------------------------------------- */

static kiln_tensor *f32(kiln_ctx *ctx, int ndim, const int64_t *shape, const float *v)
{
    return kiln_from_data(ctx, KILN_DTYPE_F32, ndim, shape, v);
}

static double mval(kiln_metric_kind k, int topk, const kiln_tensor *out, const kiln_tensor *y, double loss)
{
    kiln_metric m = kiln_metric_make(k);
    if (topk) m.k = topk;
    double v = NAN;
    cr_assert(!kiln_metric_compute(&m, out, y, loss, &v), "%s: %s", kiln_metric_name(&m), kiln_last_error());
    return v;
}

Test(learn, metrics_by_hand)
{
    kiln_ctx *ctx = ku_ctx();
    /* 5 items, 4 classes; argmax = 1, 0, 3, 2, 0 (tie); targets 1, 2, 3, 0, 1 -> 2 right */
    const float o[] = {0.1f, 0.9f, 0.0f, 0.2f,  0.8f, 0.1f, 0.7f, 0.3f,  0.0f, 0.1f, 0.2f, 0.5f,
                       0.2f, 0.1f, 0.6f, 0.0f,  0.3f, 0.3f, 0.3f, 0.1f};
    const int64_t yv[] = {1, 2, 3, 0, 1};
    kiln_tensor *out = f32(ctx, 2, (int64_t[]){5, 4}, o);
    kiln_tensor *y = kiln_from_data(ctx, KILN_DTYPE_I64, 1, (int64_t[]){5}, yv);
    /* row 4 is a tie (0.3, 0.3, 0.3): argmax picks index 0 (torch's first), so target 1 misses.
     * Metrics are ratios of small counts (or sums of a few f32 values) taken in double: 1e-12 */
    cr_assert_float_eq(mval(KILN_METRIC_KIND_ACCURACY, 0, out, y, 0), 2.0 / 5, 1e-12);
    cr_assert_float_eq(mval(KILN_METRIC_KIND_ERROR_RATE, 0, out, y, 0), 3.0 / 5, 1e-12);
    /* top-2: row0 1 yes; row1 2 (0.7 second) yes; row2 yes; row3 0 (0.2 second) yes; row4 1 (tie, rank 1) yes */
    cr_assert_float_eq(mval(KILN_METRIC_KIND_TOP_K, 2, out, y, 0), 1.0, 1e-12);
    /* top-1 equals accuracy, ties included */
    cr_assert_float_eq(mval(KILN_METRIC_KIND_TOP_K, 1, out, y, 0), 2.0 / 5, 1e-12);

    /* regression: errors 1, -2, 0.5, 0 */
    const float p[] = {2, 0, 3.5f, 1}, t[] = {1, 2, 3, 1};
    kiln_tensor *pt = f32(ctx, 2, (int64_t[]){4, 1}, p), *tt = f32(ctx, 1, (int64_t[]){4}, t);
    cr_assert_float_eq(mval(KILN_METRIC_KIND_RMSE, 0, pt, tt, 0), sqrt((1 + 4 + 0.25) / 4), 1e-12);
    cr_assert_float_eq(mval(KILN_METRIC_KIND_MAE, 0, pt, tt, 0), 3.5 / 4, 1e-12);

    /* F1, two columns: preds 1, 1, 0, 1, 0 vs truth 1, 0, 1, 1, 0 -> tp 2, fp 1, fn 1 -> 4/6 */
    const float b2[] = {0, 1, 0, 1, 1, 0, 0, 1, 1, 0};
    const int64_t by[] = {1, 0, 1, 1, 0};
    kiln_tensor *o2 = f32(ctx, 2, (int64_t[]){5, 2}, b2);
    kiln_tensor *y2 = kiln_from_data(ctx, KILN_DTYPE_I64, 1, (int64_t[]){5}, by);
    cr_assert_float_eq(mval(KILN_METRIC_KIND_F1, 0, o2, y2, 0), 4.0 / 6, 1e-12);
    /* one logit per item, threshold 0; f32 targets */
    const float l1[] = {2, 0.5f, -1, 3, -0.1f}, t1[] = {1, 0, 1, 1, 0};
    kiln_tensor *o1 = f32(ctx, 1, (int64_t[]){5}, l1), *y1 = f32(ctx, 1, (int64_t[]){5}, t1);
    cr_assert_float_eq(mval(KILN_METRIC_KIND_F1, 0, o1, y1, 0), 4.0 / 6, 1e-12);
    /* nothing positive anywhere: 0 (sklearn's zero_division) */
    const float z[] = {-1, -1}, zt[] = {0, 0};
    cr_assert_float_eq(mval(KILN_METRIC_KIND_F1, 0, f32(ctx, 1, (int64_t[]){2}, z), f32(ctx, 1, (int64_t[]){2}, zt), 0),
                       0.0, 1e-12);
    cr_assert_float_eq(mval(KILN_METRIC_KIND_PERPLEXITY, 0, out, y, 1.5), exp(1.5), 1e-12);

    /* mismatched shapes are errors */
    kiln_metric acc = kiln_metric_make(KILN_METRIC_KIND_ACCURACY);
    double v;
    cr_assert_eq(kiln_metric_compute(&acc, out, tt, 0, &v), KILN_STATUS_INVALID);
    cr_assert_str_eq(kiln_metric_name(&acc), "accuracy");
    ku_ctx_free(ctx);
}

/* A model whose output is its input: Linear(1, 1) with weight 1, bias 0. */
static kiln_model *identity_model(kiln_ctx *ctx)
{
    kiln_model *m = kiln_model_new();
    kiln_nn_linear(kiln_model_root(m), NULL, 1, 1, true);
    cr_assert(!kiln_model_alloc(m, ctx), "%s", kiln_last_error());
    kiln_init_constant(kiln_store_find(kiln_model_store(m), "0.weight"), 1);
    kiln_init_constant(kiln_store_find(kiln_model_store(m), "0.bias"), 0);
    return m;
}

Test(learn, metrics_over_whole_split)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_model *m = identity_model(ctx);
    /* valid in batches of 2: (0, 0), (3, 0), (1): batch RMSEs 0, 2.12, 1 would average 1.04;
     * over the split sqrt((9 + 1) / 5) = 1.414 */
    const float xv[] = {1, 2, 5, 4, 0}, yv[] = {1, 2, 2, 4, 1};
    kiln_tensor xt, yt;
    kiln_tensor_wrap(&xt, KILN_DTYPE_F32, 2, (int64_t[]){5, 1}, (void *)xv);
    kiln_tensor_wrap(&yt, KILN_DTYPE_F32, 2, (int64_t[]){5, 1}, (void *)yv);
    kiln_tensor_data_params dp = kiln_tensor_data_default_params();
    dp.batch_size = 2;
    kiln_data *d = kiln_tensor_data_new(&xt, &yt, &xt, &yt, &dp);
    cr_assert_eq(kiln_data_n_batches(d, KILN_DATA_SPLIT_VALID), 3);
    cr_assert_eq(kiln_data_n_batches(d, KILN_DATA_SPLIT_TRAIN), 2, "drop_last");
    kiln_learner_params lp = kiln_learner_default_params();
    lp.loss.kind = KILN_LOSS_KIND_MSE;
    lp.progress = KILN_PROGRESS_STYLE_QUIET;
    kiln_learner *l = kiln_learner_new(ctx, m, d, NULL, &lp);
    kiln_metric ms[] = {kiln_metric_make(KILN_METRIC_KIND_RMSE), kiln_metric_make(KILN_METRIC_KIND_MAE), kiln_metric_make(KILN_METRIC_KIND_F1)};
    ms[2].threshold = 1.5f; /* predicted positive: x = 2, 5, 4; every y >= 0.5 is a positive */
    for (int j = 0; j < 3; j++) cr_assert(!kiln_learner_add_metric(l, &ms[j]));
    double loss, v[3];
    cr_assert(!kiln_learner_validate(l, KILN_DATA_SPLIT_VALID, &loss, v), "%s", kiln_last_error());
    /* the loss and RMSE/MAE go through f32 ops (mse, l1) on small integers: 1e-6 covers f32
     * rounding of the batch means; F1 is a ratio of counts: 1e-12 */
    cr_assert_float_eq(loss, 10.0 / 5, 1e-6, "batch-size weighted mean of the batch MSEs");
    cr_assert_float_eq(v[0], sqrt(10.0 / 5), 1e-6);
    cr_assert_float_eq(v[1], 4.0 / 5, 1e-6);
    /* tp 3 (2, 5, 4), fn 2 (1, 0), fp 0 -> 6 / 8 */
    cr_assert_float_eq(v[2], 6.0 / 8, 1e-12);
    ku_learn_free(&(fixture){.ctx = ctx, .model = m, .data = d, .learn = l});
}

/* ---- recorder, lrs, moms ------------------------------------------------------------------- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert(f, "cannot open %s", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static void tmp_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "/tmp/kiln_test_learn_%ld_%s", (long)getpid(), name);
}

Test(learn, recorder_lrs_and_csv)
{
    fixture f = make(64, 32, 16, NULL); /* 4 batches, 2 groups */
    kiln_metric ms[] = {kiln_metric_make(KILN_METRIC_KIND_ACCURACY), kiln_metric_make(KILN_METRIC_KIND_ERROR_RATE)};
    for (int j = 0; j < 2; j++) cr_assert(!kiln_learner_add_metric(f.learn, &ms[j]));
    cr_assert_eq(kiln_learner_n_groups(f.learn), 2);
    const double mults[2] = {0.25, 1.0};
    cr_assert(!kiln_learner_set_lr_mults(f.learn, 2, mults));
    cr_assert_eq(kiln_learner_set_lr_mults(f.learn, 3, (double[]){1, 1, 1}), KILN_STATUS_INVALID);
    kiln_sched s;
    kiln_sched_one_cycle_params op = kiln_sched_one_cycle_default_params(KILN_ONE_CYCLE_VARIANT_FASTAI);
    op.lr_max = 5e-3;
    op.iters = 12;
    cr_assert(!kiln_sched_one_cycle(&s, &op));
    cr_assert(!kiln_learner_fit(f.learn, 3, &s), "%s", kiln_last_error());

    kiln_recorder *r = kiln_learner_recorder(f.learn);
    cr_assert_eq(kiln_recorder_n_batches(r), 12);
    cr_assert_eq(kiln_recorder_n_groups(r), 2);
    kiln_ema ema = kiln_ema_init(0.98);
    for (int64_t i = 0; i < 12; i++) {
        double lr, mom;
        cr_assert(!kiln_sched_at(&s, i, &lr, &mom));
        cr_assert_eq(kiln_recorder_iters(r)[i], i);
        for (int g = 0; g < 2; g++) {
            cr_assert_eq(kiln_recorder_lrs(r, g)[i], lr * mults[g], "iter %lld group %d: lr %.17g, want %.17g",
                         (long long)i, g, kiln_recorder_lrs(r, g)[i], lr * mults[g]);
            cr_assert_eq(kiln_recorder_moms(r, g)[i], mom);
        }
        /* smoothed loss: debiased EMA, beta 0.98, of the raw losses */
        double sm = kiln_ema_add(&ema, kiln_recorder_losses(r)[i]);
        cr_assert_float_eq(kiln_recorder_smooth_losses(r)[i], sm, 1e-12); /* same double EMA */
        cr_assert(isfinite(kiln_recorder_losses(r)[i]));
    }
    cr_assert_eq(kiln_recorder_n_epochs(r), 3);
    cr_assert_str_eq(kiln_recorder_metric_name(r, 1), "error_rate");
    kiln_epoch_record e;
    cr_assert(!kiln_recorder_epoch(r, 1, &e));
    cr_assert(e.epoch == 1 && e.iter == 8);
    cr_assert_eq(e.train_loss, kiln_recorder_smooth_losses(r)[7], "train_loss = smoothed loss at epoch end");
    cr_assert_float_eq(e.metrics[0] + e.metrics[1], 1.0, 1e-12);
    cr_assert_eq(kiln_recorder_epoch(r, 3, &e), KILN_STATUS_INVALID);

    char path[256], bpath[256];
    tmp_path(path, sizeof path, "history.csv");
    tmp_path(bpath, sizeof bpath, "batches.csv");
    cr_assert(!kiln_recorder_write_csv(r, path), "%s", kiln_last_error());
    char *txt = slurp(path);
    const char *hdr = "epoch,train_loss,valid_loss,accuracy,error_rate,time\n";
    cr_assert(!strncmp(txt, hdr, strlen(hdr)), "header: %s", txt);
    char *line = txt + strlen(hdr);
    for (int64_t i = 0; i < 3; i++) {
        long long ep;
        double tl, vl, a, er;
        int mm, ss, used = 0;
        cr_assert_eq(sscanf(line, "%lld,%lf,%lf,%lf,%lf,%d:%d\n%n", &ep, &tl, &vl, &a, &er, &mm, &ss, &used), 7,
                     "row %lld: %s", (long long)i, line);
        cr_assert(!kiln_recorder_epoch(r, i, &e));
        cr_assert_eq(ep, i);
        /* the CSV prints doubles with %.9g or more: 1e-8 relative is the printing's rounding */
        cr_assert_float_eq(tl, e.train_loss, 1e-8 * fabs(e.train_loss));
        cr_assert_float_eq(vl, e.valid_loss, 1e-8 * fabs(e.valid_loss));
        cr_assert_float_eq(a, e.metrics[0], 1e-8);
        line += used;
    }
    cr_assert_str_eq(line, "", "3 rows only");
    cr_assert(!kiln_recorder_write_batches_csv(r, bpath), "%s", kiln_last_error());
    txt = slurp(bpath);
    const char *bh = "iter,epoch,loss,smooth_loss,lr_0,lr_1,mom_0,mom_1\n";
    cr_assert(!strncmp(txt, bh, strlen(bh)), "header: %s", txt);
    cr_assert_eq(count(txt, '\n'), 13);
    line = strchr(txt, '\n') + 1;
    for (int i = 0; i < 5; i++) line = strchr(line, '\n') + 1; /* row of iter 5 */
    long long it, ep;
    double lo, sm, l0, l1;
    cr_assert_eq(sscanf(line, "%lld,%lld,%lf,%lf,%lf,%lf", &it, &ep, &lo, &sm, &l0, &l1), 6);
    cr_assert(it == 5 && ep == 1);
    cr_assert_float_eq(l0, kiln_recorder_lrs(r, 0)[5], 1e-8 * l0); /* printed, as above */
    unlink(path);
    unlink(bpath);
    ku_learn_free(&f);
}

Test(learn, discriminative_lrs_three_groups)
{
    uint64_t rs = 7;
    kiln_ctx *ctx = ku_ctx();
    kiln_model *m = kiln_mlp_new(2, 2, (int64_t[]){8, 8}, 4, 0, false); /* 0 L, 1 R, 2 L, 3 R, 4 L */
    cr_assert(!kiln_model_split(m, 3, (const char *[]){"2", "4"}), "%s", kiln_last_error());
    cr_assert(!kiln_model_alloc(m, ctx));
    float x[64 * 2];
    int64_t y[64];
    blobs(&rs, 64, x, y);
    kiln_tensor xt, yt;
    kiln_tensor_wrap(&xt, KILN_DTYPE_F32, 2, (int64_t[]){64, 2}, x);
    kiln_tensor_wrap(&yt, KILN_DTYPE_I64, 1, (int64_t[]){64}, y);
    kiln_data *d = kiln_tensor_data_new(&xt, &yt, NULL, NULL, NULL);
    kiln_learner_params lp = kiln_learner_default_params();
    lp.progress = KILN_PROGRESS_STYLE_QUIET;
    kiln_learner *l = kiln_learner_new(ctx, m, d, NULL, &lp);
    cr_assert(l, "%s", kiln_last_error());
    cr_assert_eq(kiln_learner_n_groups(l), 3);
    cr_assert(!kiln_learner_set_lr_slice(l, 1e-4, 1e-2));
    const double want[3] = {1e-4, 1e-3, 1e-2};
    for (int g = 0; g < 3; g++) /* geometric spacing in double: a few ulp of 1e-2 */
        cr_assert_float_eq(kiln_learner_lr_mult(l, g) * 1e-2, want[g], 1e-15, "group %d", g);
    kiln_sched s = const_sched(1e-2);
    cr_assert(!kiln_learner_fit(l, 1, &s), "%s", kiln_last_error());
    kiln_recorder *r = kiln_learner_recorder(l);
    cr_assert_eq(kiln_recorder_n_groups(r), 3);
    for (int g = 0; g < 3; g++) cr_assert_float_eq(kiln_recorder_lrs(r, g)[0], want[g], 1e-15, "group %d", g);
    /* every parameter went to its group's optimizer group */
    kiln_store *st = kiln_model_store(m);
    for (size_t i = 0; i < kiln_store_count(st); i++)
        cr_assert_eq(kiln_optim_group_of(kiln_learner_optim(l), i), kiln_model_param_group(m, i));
    /* slice(hi): hi/10 for all groups but the last */
    cr_assert(!kiln_learner_set_lr_slice(l, 0, 1e-2));
    for (int g = 0; g < 3; g++) cr_assert_float_eq(kiln_learner_lr_mult(l, g), g < 2 ? 0.1 : 1.0, 1e-15);
    /* no valid split: the epoch row has NaN valid loss */
    kiln_epoch_record e;
    cr_assert(!kiln_recorder_epoch(r, 0, &e));
    cr_assert(isnan(e.valid_loss));
    /* frozen groups keep their weights */
    cr_assert(!kiln_model_freeze_to(m, 2));
    size_t n;
    float *w = kiln_store_flat(st, KILN_STORE_PARAMS, &n);
    float *before = malloc(n * sizeof *before);
    memcpy(before, w, n * sizeof *w);
    cr_assert(!kiln_learner_fit(l, 1, &s), "%s", kiln_last_error());
    for (size_t i = 0; i < kiln_store_count(st); i++) {
        kiln_tensor *t = kiln_store_at(st, i);
        size_t off = (size_t)((float *)t->data - w);
        bool same = !memcmp(before + off, t->data, (size_t)kiln_numel(t) * sizeof(float));
        cr_assert_eq(same, kiln_model_param_group(m, i) < 2, "param %s", t->name);
    }
    free(before);
    ku_learn_free(&(fixture){.ctx = ctx, .model = m, .data = d, .learn = l});
}

/* ---- built-in callbacks ------------------------------------------------------------------ */

Test(learn, early_stopping)
{
    fixture f = make(64, 32, 16, NULL);
    kiln_monitor_params mp = kiln_monitor_default_params();
    mp.patience = 2;
    cr_assert(!kiln_learner_add_early_stopping(f.learn, &mp));
    /* lr 0: the valid loss never moves, so epoch 0 is the best and 1, 2 are the patience */
    kiln_sched s = const_sched(0);
    cr_assert(!kiln_learner_fit(f.learn, 10, &s), "%s", kiln_last_error());
    cr_assert_eq(kiln_recorder_n_epochs(kiln_learner_recorder(f.learn)), 3);
    /* while training improves the loss it keeps going */
    s = const_sched(3e-3);
    cr_assert(!kiln_learner_fit(f.learn, 4, &s), "%s", kiln_last_error());
    cr_assert_eq(kiln_recorder_n_epochs(kiln_learner_recorder(f.learn)), 4);
    /* a metric to monitor must exist */
    cr_assert(!kiln_learner_remove_callback(f.learn, "early_stopping"));
    mp.monitor = "accuracy";
    cr_assert(!kiln_learner_add_early_stopping(f.learn, &mp));
    cr_assert_eq(kiln_learner_fit(f.learn, 2, &s), KILN_STATUS_INVALID);
    cr_assert(strstr(kiln_last_error(), "accuracy"), "%s", kiln_last_error());
    ku_learn_free(&f);
}

typedef struct unlinker {
    const char *path;
    int64_t epoch;
} unlinker;

static kiln_status unlink_at(kiln_learner *l, void *u)
{
    unlinker *k = u;
    if (kiln_learner_state(l)->epoch == k->epoch) unlink(k->path);
    return KILN_STATUS_OK;
}

static kiln_status skip_all(kiln_learner *l, void *u)
{
    (void)u;
    kiln_learner_state(l)->skip_batch = true;
    return KILN_STATUS_OK;
}

Test(learn, save_best_only_on_improvement)
{
    fixture f = make(128, 64, 16, NULL);
    char path[256];
    tmp_path(path, sizeof path, "best.safetensors");
    unlink(path);
    cr_assert(!kiln_learner_add_save_best(f.learn, path, NULL));
    unlinker k = {path, 0};
    kiln_callback del = {.name = "unlink", .end_epoch = unlink_at, .user = &k};
    cr_assert(!kiln_learner_add_callback(f.learn, &del));
    kiln_callback skip = {.name = "skip", .begin_batch = skip_all};
    cr_assert(!kiln_learner_add_callback(f.learn, &skip));
    kiln_sched s = const_sched(3e-3);
    /* no training: only epoch 0 improves on +inf; its file is removed, nothing rewrites it */
    cr_assert(!kiln_learner_fit(f.learn, 3, &s), "%s", kiln_last_error());
    double best;
    int64_t best_epoch, n_saves;
    cr_assert(!kiln_save_best_info(f.learn, &best, &best_epoch, &n_saves));
    cr_assert(n_saves == 1 && best_epoch == 0, "saves %lld, best epoch %lld", (long long)n_saves, (long long)best_epoch);
    cr_assert(access(path, F_OK) != 0, "save_best wrote without an improvement");

    /* training: later epochs improve and write the file again */
    cr_assert(!kiln_learner_remove_callback(f.learn, "skip"));
    cr_assert(!kiln_learner_fit(f.learn, 3, &s), "%s", kiln_last_error());
    cr_assert(!kiln_save_best_info(f.learn, &best, &best_epoch, &n_saves));
    cr_assert(n_saves >= 2, "saves %lld", (long long)n_saves);
    cr_assert(access(path, F_OK) == 0, "no file after improvements");
    kiln_recorder *r = kiln_learner_recorder(f.learn);
    kiln_epoch_record e;
    cr_assert(!kiln_recorder_epoch(r, best_epoch, &e));
    cr_assert_eq(e.valid_loss, best);
    kiln_st_file *sf;
    cr_assert(!kiln_st_open(path, &sf), "%s", kiln_last_error());
    char want[32];
    snprintf(want, sizeof want, "%lld", (long long)best_epoch);
    cr_assert_str_eq(kiln_st_metadata(sf, "epoch"), want);
    if (best_epoch == 2) { /* the file holds the final weights */
        kiln_tensor *w = kiln_store_find(kiln_model_store(f.model), "0.weight");
        kiln_tensor *got = kiln_st_load(f.ctx, sf, "0.weight");
        cr_assert(got && !memcmp(got->data, w->data, (size_t)kiln_numel(w) * sizeof(float)));
    }
    kiln_st_close(sf);
    unlink(path);
    ku_learn_free(&f);
}

/* ---- predictions -------------------------------------------------------------------------- */

Test(learn, get_preds_and_predict)
{
    fixture f = make(64, 40, 16, NULL);
    cr_assert(!kiln_learner_fit_one_cycle(f.learn, 1, 0, 1e-2, NULL), "%s", kiln_last_error());
    kiln_preds p;
    cr_assert(!kiln_learner_get_preds(f.learn, KILN_DATA_SPLIT_VALID, &p), "%s", kiln_last_error());
    cr_assert(p.n == 40 && p.c == 4 && p.k == 1 && p.target_dtype == KILN_DTYPE_I64);
    double vl;
    cr_assert(!kiln_learner_validate(f.learn, KILN_DATA_SPLIT_VALID, &vl, NULL));
    cr_assert_float_eq(p.loss, vl, 1e-12); /* the same batches and f32 ops, summed in double */
    for (int64_t i = 0; i < p.n; i++) {
        double sum = 0;
        for (int j = 0; j < 4; j++) {
            cr_assert(p.probs[i * 4 + j] >= 0 && p.probs[i * 4 + j] <= 1);
            sum += p.probs[i * 4 + j];
        }
        /* four f32 softmax outputs, each rounded (u = 6e-8) and divided by an f32 sum: 1e-5 */
        cr_assert_float_eq(sum, 1.0, 1e-5, "row %lld sums to %g", (long long)i, sum);
        cr_assert_eq(((int64_t *)p.targets)[i], (64 + i) % 4, "targets in order");
    }
    /* predict on the first valid batch gives the same probabilities */
    kiln_mark mk = kiln_step_mark(f.ctx);
    kiln_tensor *x, *y;
    cr_assert(!kiln_data_get_batch(f.data, KILN_DATA_SPLIT_VALID, 0, f.ctx, &x, &y));
    kiln_tensor *pr = kiln_learner_predict_batch(f.learn, x);
    cr_assert(pr && pr->shape[0] == 16 && pr->shape[1] == 4);
    /* the same model on the same batch: only the batching of the softmax may differ, 1e-6 */
    for (int64_t i = 0; i < 64; i++) cr_assert_float_eq(kiln_get_flat(pr, i), p.probs[i], 1e-6);
    cr_assert(kiln_grad_enabled(f.ctx) && kiln_model_training(f.model), "predict restores grad and mode");
    kiln_step_rewind(f.ctx, mk);
    kiln_preds_free(&p);
    cr_assert_null(p.probs);
    ku_learn_free(&f);
}

/* ---- determinism -------------------------------------------------------------------------- */

static float *train_weights(uint64_t seed, size_t *n)
{
    kiln_learner_params lp = kiln_learner_default_params();
    lp.seed = seed;
    lp.progress = KILN_PROGRESS_STYLE_QUIET;
    fixture f = make(128, 32, 16, &lp);
    cr_assert(!kiln_learner_fit_one_cycle(f.learn, 2, 0, 1e-2, NULL), "%s", kiln_last_error());
    float *w = kiln_store_flat(kiln_model_store(f.model), KILN_STORE_PARAMS, n);
    float *copy = malloc(*n * sizeof *copy);
    memcpy(copy, w, *n * sizeof *w);
    ku_learn_free(&f);
    return copy;
}

Test(learn, deterministic)
{
    size_t n1, n2, n3;
    float *a = train_weights(5, &n1), *b = train_weights(5, &n2), *c = train_weights(6, &n3);
    cr_assert(n1 == n2 && !memcmp(a, b, n1 * sizeof *a), "same seed, different weights");
    cr_assert(memcmp(a, c, n1 * sizeof *a) != 0, "the shuffle seed changed nothing");
    free(a), free(b), free(c);
}

/* ---- data ---------------------------------------------------------------------------------- */

Test(learn, tensor_data_and_permutation)
{
    int64_t p1[50], p2[50], p3[50];
    kiln_data_permutation(3, 0, 50, p1);
    kiln_data_permutation(3, 0, 50, p2);
    kiln_data_permutation(3, 1, 50, p3);
    bool seen[50] = {false}, moved = false;
    for (int i = 0; i < 50; i++) {
        cr_assert(p1[i] >= 0 && p1[i] < 50 && !seen[p1[i]]);
        seen[p1[i]] = true;
        moved |= p1[i] != i;
    }
    cr_assert(moved);
    cr_assert(!memcmp(p1, p2, sizeof p1));
    cr_assert(memcmp(p1, p3, sizeof p1) != 0, "epochs share an order");

    kiln_ctx *ctx = ku_ctx();
    float x[10 * 3];
    float y[10 * 2];
    for (int i = 0; i < 30; i++) x[i] = (float)i;
    for (int i = 0; i < 20; i++) y[i] = (float)(i / 2);
    kiln_tensor xt, yt;
    kiln_tensor_wrap(&xt, KILN_DTYPE_F32, 2, (int64_t[]){10, 3}, x);
    kiln_tensor_wrap(&yt, KILN_DTYPE_F32, 2, (int64_t[]){10, 2}, y);
    kiln_tensor_data_params dp = kiln_tensor_data_default_params();
    dp.batch_size = 4;
    dp.valid_batch_size = 3;
    kiln_data *d = kiln_tensor_data_new(&xt, &yt, &xt, &yt, &dp);
    cr_assert(d);
    cr_assert(kiln_data_n_batches(d, KILN_DATA_SPLIT_TRAIN) == 2 && kiln_data_n_batches(d, KILN_DATA_SPLIT_VALID) == 4);
    cr_assert_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_VALID), 10);
    cr_assert(!kiln_data_set_epoch(d, 9, 2));
    int64_t perm[10];
    kiln_data_permutation(9, 2, 10, perm);
    kiln_tensor *bx, *by;
    cr_assert(!kiln_data_get_batch(d, KILN_DATA_SPLIT_TRAIN, 1, ctx, &bx, &by));
    cr_assert_eq(bx->shape[0], 4);
    for (int r = 0; r < 4; r++) { /* rows 4..7 of the epoch's order; x and y stay paired */
        cr_assert_eq(kiln_get_flat(bx, r * 3 + 2), (double)(perm[4 + r] * 3 + 2));
        cr_assert_eq(kiln_get_flat(by, r * 2 + 1), (double)perm[4 + r]);
    }
    cr_assert(!kiln_data_get_batch(d, KILN_DATA_SPLIT_VALID, 3, ctx, &bx, &by));
    cr_assert_eq(bx->shape[0], 1, "valid keeps the short last batch");
    cr_assert_eq(kiln_get_flat(bx, 0), 27.0, "valid is not shuffled");
    cr_assert_eq(kiln_data_get_batch(d, KILN_DATA_SPLIT_VALID, 4, ctx, &bx, &by), KILN_STATUS_INVALID);
    kiln_tensor bad;
    kiln_tensor_wrap(&bad, KILN_DTYPE_F32, 2, (int64_t[]){9, 2}, y);
    cr_assert_null(kiln_tensor_data_new(&xt, &bad, NULL, NULL, NULL));
    kiln_data_free(d);
    ku_ctx_free(ctx);
}

/* ---- progress and plots ------------------------------------------------------------------- */

Test(learn, progress_format_and_table)
{
    char b[256];
    cr_assert_str_eq(kiln_format_time(65.9, b, sizeof b), "01:05");
    cr_assert_str_eq(kiln_format_time(3723, b, sizeof b), "1:02:03");
    kiln_progress_format(b, sizeof b, NULL, 97, 100, 3.2, 0.4123, NULL, 0);
    cr_assert_str_eq(b, "97/100 [00:03<00:00 0.412]");
    kiln_progress_format(b, sizeof b, "lr_find", 1, 4, 2, NAN, "stopped", 4);
    cr_assert_str_eq(b, "lr_find \u2588\u2591\u2591\u2591 1/4 [00:02<00:06]  stopped");

    /* a fit into a file: plain lines, no control characters, fastprogress's table */
    FILE *out = tmpfile();
    kiln_learner_params lp = kiln_learner_default_params();
    lp.out = out;
    lp.progress = KILN_PROGRESS_STYLE_AUTO; /* not a TTY -> lines */
    fixture f = make(64, 32, 16, &lp);
    kiln_metric acc = kiln_metric_make(KILN_METRIC_KIND_ACCURACY);
    cr_assert(!kiln_learner_add_metric(f.learn, &acc));
    kiln_sched s = const_sched(1e-3);
    cr_assert(!kiln_learner_fit(f.learn, 2, &s));
    rewind(out);
    char txt[4096];
    size_t n = fread(txt, 1, sizeof txt - 1, out);
    txt[n] = 0;
    fclose(out);
    cr_assert(!strchr(txt, '\r') && !strchr(txt, '\033'), "control characters in a log: %s", txt);
    const char *hdr = "epoch     train_loss  valid_loss  accuracy  time\n";
    cr_assert(!strncmp(txt, hdr, strlen(hdr)), "table header: %s", txt);
    kiln_epoch_record e;
    cr_assert(!kiln_recorder_epoch(kiln_learner_recorder(f.learn), 1, &e));
    char row[256];
    snprintf(row, sizeof row, "\n1         %.6f    %.6f    %.6f  00:00\n", e.train_loss, e.valid_loss, e.metrics[0]);
    cr_assert(strstr(txt, row), "row %s not in %s", row, txt);
    ku_learn_free(&f);
}

Test(learn, loss_plots)
{
    fixture f = make(64, 32, 16, NULL);
    kiln_metric acc = kiln_metric_make(KILN_METRIC_KIND_ACCURACY);
    cr_assert(!kiln_learner_add_metric(f.learn, &acc));
    kiln_recorder *r = kiln_learner_recorder(f.learn);
    char path[256];
    tmp_path(path, sizeof path, "losses.png");
    cr_assert_eq(kiln_recorder_plot_losses(r, path), KILN_STATUS_STATE, "nothing recorded yet");
    kiln_sched s = const_sched(1e-3);
    cr_assert(!kiln_learner_fit(f.learn, 2, &s));
    const char *names[] = {"losses.png", "metrics.png", "lr.png"};
    for (int i = 0; i < 3; i++) {
        tmp_path(path, sizeof path, names[i]);
        kiln_status st = i == 0 ? kiln_recorder_plot_losses(r, path)
                       : i == 1 ? kiln_recorder_plot_metrics(r, path) : kiln_recorder_plot_lr(r, path);
        if (!kiln_plot_available()) {
            cr_assert_eq(st, KILN_STATUS_UNSUPPORTED);
            continue;
        }
        cr_assert_eq(st, KILN_STATUS_OK, "%s: %s", names[i], kiln_last_error());
        FILE *pf = fopen(path, "rb");
        unsigned char sig[8] = {0};
        cr_assert(pf && fread(sig, 1, 8, pf) == 8);
        fclose(pf);
        cr_assert(!memcmp(sig, "\x89PNG", 4));
        unlink(path);
    }
    ku_learn_free(&f);
}
