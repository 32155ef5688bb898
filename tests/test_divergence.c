/* Tests of divergence handling and runs (include/kiln/learn.h kiln_nan_policy,
 * include/kiln/learn_checkpoint.h Runs): a NaN met at a known batch stops the fit with
 * KILN_STATUS_DIVERGED naming the epoch, the batch and the culprit (input, op, gradient,
 * parameter), without the optimizer step and without a checkpoint of the broken epoch;
 * the skip policy skips and counts, and stops after max_nan_skips in a row; lr_find's
 * suggestions ignore non-finite points; a non-finite validation loss or metric stops the fit
 * (STOP) or is reported and never taken as a best model (SKIP); a skipped batch leaves the
 * BatchNorm running statistics and num_batches_tracked as they were; a resume refuses a checkpoint of other settings,
 * naming each, and a fresh fit owns the checkpoint file from its start. */
#include "util/ku_learn.h"

#include "kiln/learn.h"
#include "kiln/learn_ext.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static ku_learn make(const kiln_learner_params *lp)
{
    return ku_learn_new(&(ku_learn_params){.n_train = 320, .n_valid = 64, .batch_size = 32, .center = 2, .noise = 1.5,
                                           .hidden = 8, .batchnorm = true, .accuracy = true, .learner = lp});
}

static kiln_learner_params quiet(kiln_nan_policy pol, int max_skips)
{
    kiln_learner_params p = kiln_learner_default_params();
    p.progress = KILN_PROGRESS_STYLE_QUIET;
    p.on_nan = pol;
    p.max_nan_skips = max_skips;
    return p;
}

static kiln_sched const_sched(kiln_learner *l, int64_t epochs, double lr)
{
    kiln_sched_const_params p = kiln_sched_const_default_params();
    p.lr = lr, p.iters = epochs * kiln_data_n_batches(kiln_learner_data(l), KILN_DATA_SPLIT_TRAIN);
    kiln_sched s;
    cr_assert(!kiln_sched_const(&s, &p), "%s", kiln_last_error());
    return s;
}

static char g_dir[64];
static void tmpdir_make(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/kiln_div_XXXXXX");
    cr_assert(mkdtemp(g_dir), "mkdtemp");
}
static void tmpdir_remove(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    cr_assert(system(cmd) == 0);
}

/* ---- a poisoner: at chosen (epoch, batch) pairs it puts a NaN into the input, a weight or a
 * gradient; it also keeps the weights as they were when the last clean batch ended ---- */

typedef enum { P_INPUT, P_WEIGHT, P_GRAD } poison_kind;
typedef struct poison {
    poison_kind kind;
    int64_t epoch, from, to; /* batches from..to (inclusive) of that epoch */
    int64_t hits;
    kiln_weights last_good;
    bool have_good;
} poison;

static bool hit(kiln_learner *l, poison *p)
{
    kiln_fit_state *s = kiln_learner_state(l);
    return s->epoch == p->epoch && s->batch >= p->from && s->batch <= p->to;
}

static kiln_status poison_begin(kiln_learner *l, void *user)
{
    poison *p = user;
    if (!hit(l, p)) return KILN_STATUS_OK;
    p->hits++;
    if (p->kind == P_INPUT) ((float *)kiln_learner_state(l)->x->data)[3] = NAN;
    if (p->kind == P_WEIGHT) {
        /* the second 2-D weight: the head's linear layer */
        kiln_store *s = kiln_model_store(kiln_learner_model(l));
        float *w = NULL;
        for (size_t i = 0, n2 = 0; i < kiln_store_count(s) && !w; i++)
            if (kiln_store_at(s, i)->ndim == 2 && ++n2 == 2) w = kiln_store_at(s, i)->data;
        cr_assert(w, "no second linear layer in the MLP");
        w[0] = INFINITY;
    }
    return KILN_STATUS_OK;
}

static kiln_status poison_backward(kiln_learner *l, void *user)
{
    poison *p = user;
    if (p->kind != P_GRAD || !hit(l, p)) return KILN_STATUS_OK;
    kiln_store *s = kiln_model_store(kiln_learner_model(l));
    ((float *)kiln_store_at(s, 2)->grad->data)[1] = NAN;
    return KILN_STATUS_OK;
}

static kiln_status poison_end(kiln_learner *l, void *user)
{
    poison *p = user;
    if (hit(l, p)) return KILN_STATUS_OK;
    kiln_weights_free(&p->last_good);
    cr_assert(!kiln_weights_copy(kiln_learner_model(l), &p->last_good));
    p->have_good = true;
    return KILN_STATUS_OK;
}

static void add_poison(kiln_learner *l, poison *p)
{
    kiln_callback cb = {.name = "poison", .begin_batch = poison_begin, .after_backward = poison_backward,
                        .end_batch = poison_end, .user = p};
    cr_assert(!kiln_learner_add_callback(l, &cb));
}

static void expect_weights(kiln_model *m, const kiln_weights *w, const char *what)
{
    kiln_weights now;
    cr_assert(!kiln_weights_copy(m, &now));
    cr_assert(now.n_params == w->n_params && now.n_buffers == w->n_buffers);
    cr_assert(!memcmp(now.params, w->params, w->n_params * sizeof(float)), "%s: params changed", what);
    cr_assert(!memcmp(now.buffers, w->buffers, w->n_buffers * sizeof(float)), "%s: running stats changed", what);
    cr_assert(now.n_counters == w->n_counters);
    for (size_t i = 0; i < w->n_counters; i++)
        cr_assert_eq(now.counters[i], w->counters[i], "%s: module %zu's num_batches_tracked %lld, was %lld", what, i,
                     (long long)now.counters[i], (long long)w->counters[i]);
    kiln_weights_free(&now);
}

/* Asserts every BatchNorm (a module that counts) tracked exactly want training batches. */
static void expect_batches_tracked(kiln_model *m, int64_t want)
{
    kiln_weights w;
    cr_assert(!kiln_weights_copy(m, &w));
    int bns = 0;
    for (size_t i = 0; i < w.n_counters; i++)
        if (w.counters[i]) {
            bns++;
            cr_assert_eq(w.counters[i], want, "module %zu tracked %lld batches, want %lld", i,
                         (long long)w.counters[i], (long long)want);
        }
    cr_assert(bns > 0, "the MLP has a BatchNorm");
    kiln_weights_free(&w);
}

/* ---- stop ---------------------------------------------------------------------------------- */

Test(divergence, stop_on_nan_input_names_epoch_batch_and_keeps_last_checkpoint)
{
    tmpdir_make();
    kiln_learner_params lp = quiet(KILN_NAN_POLICY_STOP, 10);
    ku_learn f = make(&lp);
    poison p = {.kind = P_INPUT, .epoch = 1, .from = 3, .to = 3};
    add_poison(f.learn, &p);
    cr_assert(!kiln_learner_add_checkpointing(f.learn, g_dir, 1));
    kiln_sched s = const_sched(f.learn, 3, 1e-2);
    kiln_status st = kiln_learner_fit(f.learn, 3, &s);
    cr_assert_eq(st, KILN_STATUS_DIVERGED, "status %s: %s", kiln_status_name(st), kiln_last_error());
    ku_expect_error("epoch 1, batch 3 of 10", "the epoch and batch");
    ku_expect_error("input batch", "the culprit");
    cr_assert(p.have_good);
    expect_weights(f.model, &p.last_good, "stop");
    /* the checkpoint is epoch 1's end: the broken epoch wrote none */
    char path[128];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", g_dir);
    kiln_checkpoint_info info;
    cr_assert(!kiln_checkpoint_read_info(path, &info), "%s", kiln_last_error());
    cr_assert_eq(info.epoch, 1);
    cr_assert_str_eq(info.run_id, kiln_learner_run_id(f.learn));
    cr_assert_eq(kiln_recorder_n_epochs(kiln_learner_recorder(f.learn)), 1);
    cr_assert_eq(kiln_recorder_n_batches(kiln_learner_recorder(f.learn)), 13, "10 + 3 batches recorded");
    kiln_weights_free(&p.last_good);
    ku_learn_free(&f);
    tmpdir_remove();
}

Test(divergence, stop_names_the_first_nonfinite_op)
{
    kiln_learner_params lp = quiet(KILN_NAN_POLICY_STOP, 10);
    ku_learn f = make(&lp);
    poison p = {.kind = P_WEIGHT, .epoch = 0, .from = 2, .to = 2};
    add_poison(f.learn, &p);
    kiln_sched s = const_sched(f.learn, 1, 1e-2);
    cr_assert_eq(kiln_learner_fit(f.learn, 1, &s), KILN_STATUS_DIVERGED);
    ku_expect_error("epoch 0, batch 2 of 10", "the epoch and batch");
    /* the head is the second linear layer: the ops before it (linear, batch norm, relu) are finite */
    ku_expect_error("output of op 'linear'", "the op");
    cr_assert(strstr(kiln_last_error(), "(op 1 of") == NULL, "the first linear's output is finite: %s",
              kiln_last_error());
    kiln_weights_free(&p.last_good);
    ku_learn_free(&f);
}

Test(divergence, stop_on_nan_gradient_names_the_parameter_and_takes_no_step)
{
    kiln_learner_params lp = quiet(KILN_NAN_POLICY_STOP, 10);
    ku_learn f = make(&lp);
    poison p = {.kind = P_GRAD, .epoch = 0, .from = 4, .to = 4};
    add_poison(f.learn, &p);
    kiln_sched s = const_sched(f.learn, 1, 1e-2);
    cr_assert_eq(kiln_learner_fit(f.learn, 1, &s), KILN_STATUS_DIVERGED);
    char want[160];
    snprintf(want, sizeof want, "gradient of parameter '%s' (element 1: nan)",
             kiln_store_at(kiln_model_store(f.model), 2)->name);
    ku_expect_error(want, "the parameter");
    ku_expect_error("epoch 0, batch 4 of 10", "the epoch and batch");
    expect_weights(f.model, &p.last_good, "gradient");
    kiln_weights_free(&p.last_good);
    ku_learn_free(&f);
}

Test(divergence, a_step_that_makes_weights_infinite_stops_under_both_policies)
{
    for (int pol = 0; pol < 2; pol++) {
        kiln_learner_params lp = quiet((kiln_nan_policy)pol, 10);
        ku_learn f = make(&lp);
        kiln_sched s = const_sched(f.learn, 1, 1e39); /* finite in double, inf in the f32 step */
        cr_assert_eq(kiln_learner_fit(f.learn, 1, &s), KILN_STATUS_DIVERGED, "policy %d", pol);
        ku_expect_error("the optimizer step made parameter", "the step");
        ku_expect_error("batch 0 of 10", "the batch");
        ku_learn_free(&f);
    }
}

/* ---- skip ---------------------------------------------------------------------------------- */

Test(divergence, skip_skips_counts_and_goes_on)
{
    kiln_learner_params lp = quiet(KILN_NAN_POLICY_SKIP, 3);
    ku_learn f = make(&lp);
    poison p = {.kind = P_INPUT, .epoch = 0, .from = 4, .to = 5};
    add_poison(f.learn, &p);
    kiln_sched s = const_sched(f.learn, 2, 1e-2);
    cr_assert(!kiln_learner_fit(f.learn, 2, &s), "%s", kiln_last_error());
    cr_assert_eq(p.hits, 2);
    cr_assert_eq(kiln_learner_state(f.learn)->n_skipped, 2);
    cr_assert_eq(kiln_recorder_n_batches(kiln_learner_recorder(f.learn)), 18, "skipped batches are not recorded");
    kiln_epoch_record er;
    cr_assert(!kiln_recorder_epoch(kiln_learner_recorder(f.learn), 1, &er));
    cr_assert(isfinite(er.train_loss) && isfinite(er.valid_loss), "train %g valid %g", er.train_loss, er.valid_loss);
    kiln_store *st = kiln_model_store(f.model);
    for (int k = 0; k < 3; k++) cr_assert_eq(kiln_store_first_nonfinite(st, (kiln_store_kind)k, NULL), -1);
    expect_batches_tracked(f.model, 2 * 10 - 2); /* the skipped forwards count nothing */
    kiln_weights_free(&p.last_good);
    ku_learn_free(&f);
}

Test(divergence, skip_stops_after_max_in_a_row)
{
    kiln_learner_params lp = quiet(KILN_NAN_POLICY_SKIP, 3);
    ku_learn f = make(&lp);
    poison p = {.kind = P_GRAD, .epoch = 0, .from = 2, .to = 9};
    add_poison(f.learn, &p);
    kiln_sched s = const_sched(f.learn, 1, 1e-2);
    cr_assert_eq(kiln_learner_fit(f.learn, 1, &s), KILN_STATUS_DIVERGED);
    ku_expect_error("3 batches in a row", "the count");
    ku_expect_error("batch 4 of 10", "the last batch");
    cr_assert_eq(p.hits, 3);
    expect_weights(f.model, &p.last_good, "skip");
    kiln_weights_free(&p.last_good);
    lp.max_nan_skips = 0;
    cr_assert_null(kiln_learner_new(f.ctx, f.model, f.data, NULL, &lp));
    ku_expect_error("max_nan_skips", "the bad limit");
    ku_learn_free(&f);
}

/* ---- validation ---------------------------------------------------------------------------- *
 * Training stays finite while the eval-mode pass does not: at the end of epoch `epoch` the
 * BatchNorm running statistics are set to -1 (variance < 0: NaN in eval mode, unused in
 * training mode) and put back when the next epoch begins; or a custom metric turns infinite. */

typedef struct bad_valid {
    int64_t epoch;
    bool metric;      /* poison the metric "boom" instead of the running stats */
    kiln_weights kept; /* the running stats before the poison */
    bool poisoned;
} bad_valid;

static kiln_status bv_end_batch(kiln_learner *l, void *user)
{
    bad_valid *b = user;
    kiln_fit_state *s = kiln_learner_state(l);
    if (b->metric || s->epoch != b->epoch || s->batch != s->n_batches - 1) return KILN_STATUS_OK;
    cr_assert(!kiln_weights_copy(kiln_learner_model(l), &b->kept));
    size_t n = 0;
    float *buf = kiln_store_flat(kiln_model_store(kiln_learner_model(l)), KILN_STORE_BUFFERS, &n);
    cr_assert(buf && n > 0);
    for (size_t i = 0; i < n; i++) buf[i] = -1.0f;
    b->poisoned = true;
    return KILN_STATUS_OK;
}

static kiln_status bv_begin_epoch(kiln_learner *l, void *user)
{
    bad_valid *b = user;
    if (!b->poisoned) return KILN_STATUS_OK;
    cr_assert(!kiln_weights_restore(kiln_learner_model(l), &b->kept));
    kiln_weights_free(&b->kept);
    b->poisoned = false;
    return KILN_STATUS_OK;
}

static kiln_status boom_acc(kiln_metric_acc *acc, const kiln_tensor *out, const kiln_tensor *y, double loss, void *u)
{
    (void)out, (void)y, (void)loss, (void)u;
    acc->n++;
    return KILN_STATUS_OK;
}

static kiln_learner *g_bv_learner;
static double boom_value(const kiln_metric_acc *acc, void *user)
{
    bad_valid *b = user;
    return b->metric && kiln_learner_state(g_bv_learner)->epoch == b->epoch ? INFINITY : (double)acc->n;
}

static void add_bad_valid(kiln_learner *l, bad_valid *b)
{
    kiln_callback cb = {.name = "bad_valid", .end_batch = bv_end_batch, .begin_epoch = bv_begin_epoch, .user = b};
    cr_assert(!kiln_learner_add_callback(l, &cb));
    kiln_metric m = kiln_metric_make(KILN_METRIC_KIND_CUSTOM);
    m.name = "boom", m.accumulate = boom_acc, m.value = boom_value, m.user = b;
    cr_assert(!kiln_learner_add_metric(l, &m), "%s", kiln_last_error());
    g_bv_learner = l;
}

Test(divergence, stop_on_a_nonfinite_validation_loss_names_the_epoch_and_keeps_the_last_checkpoint)
{
    tmpdir_make();
    kiln_learner_params lp = quiet(KILN_NAN_POLICY_STOP, 10);
    ku_learn f = make(&lp);
    bad_valid b = {.epoch = 1};
    add_bad_valid(f.learn, &b);
    cr_assert(!kiln_learner_add_checkpointing(f.learn, g_dir, 1));
    char best[128];
    snprintf(best, sizeof best, "%s/best.safetensors", g_dir);
    cr_assert(!kiln_learner_add_save_best(f.learn, best, NULL));
    kiln_sched s = const_sched(f.learn, 3, 1e-2);
    kiln_status st = kiln_learner_fit(f.learn, 3, &s);
    cr_assert_eq(st, KILN_STATUS_DIVERGED, "status %s: %s", kiln_status_name(st), kiln_last_error());
    ku_expect_error("fit diverged at epoch 1, in validation: the validation loss is ", "the epoch");
    ku_expect_error("nan (non-finite from validation batch 0 of 2)", "the value and the first bad batch");
    char path[128];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", g_dir);
    kiln_checkpoint_info info;
    cr_assert(!kiln_checkpoint_read_info(path, &info), "%s", kiln_last_error());
    cr_assert_eq(info.epoch, 1, "the checkpoint is epoch 0's end: epoch 1 validated NaN");
    int64_t best_epoch, saves;
    cr_assert(!kiln_save_best_info(f.learn, NULL, &best_epoch, &saves));
    cr_assert(best_epoch == 0 && saves == 1, "best epoch %lld, %lld saves", (long long)best_epoch, (long long)saves);
    /* the epoch's row is recorded, with its NaN, for the user to see */
    kiln_epoch_record er;
    cr_assert_eq(kiln_recorder_n_epochs(kiln_learner_recorder(f.learn)), 2);
    cr_assert(!kiln_recorder_epoch(kiln_learner_recorder(f.learn), 1, &er));
    cr_assert(isnan(er.valid_loss) && isfinite(er.train_loss));
    kiln_weights_free(&b.kept);
    ku_learn_free(&f);
    tmpdir_remove();
}

Test(divergence, stop_on_a_nonfinite_validation_metric_names_it)
{
    kiln_learner_params lp = quiet(KILN_NAN_POLICY_STOP, 10);
    ku_learn f = make(&lp);
    bad_valid b = {.epoch = 0, .metric = true};
    add_bad_valid(f.learn, &b);
    kiln_sched s = const_sched(f.learn, 2, 1e-2);
    cr_assert_eq(kiln_learner_fit(f.learn, 2, &s), KILN_STATUS_DIVERGED);
    ku_expect_error("epoch 0, in validation: the validation metric 'boom' is inf", "the metric");
    ku_learn_free(&f);
}

Test(divergence, skip_reports_a_nonfinite_validation_and_takes_no_best_model_from_it)
{
    kiln_learner_params lp = quiet(KILN_NAN_POLICY_SKIP, 10);
    ku_learn f = make(&lp);
    bad_valid b = {.epoch = 1};
    add_bad_valid(f.learn, &b);
    tmpdir_make();
    char best[128];
    snprintf(best, sizeof best, "%s/best.safetensors", g_dir);
    /* monitored: train_loss, finite in every epoch, so only the check keeps epoch 1 out */
    kiln_monitor_params mp = kiln_monitor_default_params();
    mp.monitor = "train_loss";
    cr_assert(!kiln_learner_add_save_best(f.learn, best, &mp));
    kiln_sched s = const_sched(f.learn, 3, 1e-2);
    cr_assert(!kiln_learner_fit(f.learn, 3, &s), "%s", kiln_last_error());
    const kiln_recorder *rec = kiln_learner_recorder(f.learn);
    cr_assert_eq(kiln_recorder_n_epochs(rec), 3);
    kiln_epoch_record e[3];
    for (int i = 0; i < 3; i++) cr_assert(!kiln_recorder_epoch(rec, i, &e[i]));
    cr_assert(e[0].train_loss > e[1].train_loss && e[1].train_loss > e[2].train_loss,
              "train_loss %g %g %g: each epoch improves, epoch 1 would be a best", e[0].train_loss, e[1].train_loss,
              e[2].train_loss);
    cr_assert(isnan(e[1].valid_loss) && isfinite(e[0].valid_loss) && isfinite(e[2].valid_loss));
    cr_assert_eq(kiln_learner_state(f.learn)->n_valid_nonfinite, 1);
    int64_t best_epoch, saves;
    cr_assert(!kiln_save_best_info(f.learn, NULL, &best_epoch, &saves));
    cr_assert(best_epoch == 2 && saves == 2, "best epoch %lld, %lld saves: epoch 1 must not be one",
              (long long)best_epoch, (long long)saves);
    ku_learn_free(&f);
    tmpdir_remove();
}

/* ---- lr_find --------------------------------------------------------------------------------- */

Test(divergence, lr_suggestions_ignore_nonfinite_points)
{
    enum { N = 100 };
    double lrs[N], loss[N];
    for (int i = 0; i < N; i++) {
        lrs[i] = 1e-7 * pow(1e8, i / (double)(N - 1));
        double x = log10(lrs[i]) + 2; /* a valley near 1e-2 */
        loss[i] = 1 + x * x / 10 + 0.01 * sin(i);
    }
    double bad[3] = {NAN, INFINITY, -INFINITY};
    for (int b = 0; b < 3; b++) {
        double l2[N];
        memcpy(l2, loss, sizeof l2);
        for (int i = 60; i < N; i += 7) l2[i] = i == 60 ? bad[b] : 0.5 * i; /* after it: finite again, lower */
        for (int k = 0; k < KILN_LR_SUGGEST_COUNT; k++) {
            double got, want;
            int64_t gi, wi;
            cr_assert(!kiln_lr_suggest_lr((kiln_lr_suggest)k, lrs, l2, N, N, &got, &gi), "%s", kiln_last_error());
            /* the same as the curve cut 5 points after the bad one (the last 5 are dropped) */
            cr_assert(!kiln_lr_suggest_lr((kiln_lr_suggest)k, lrs, loss, 65, N, &want, &wi), "%s", kiln_last_error());
            cr_assert(gi < 60 && gi == wi && got == want, "%s with %g at 60: index %lld (lr %g), want %lld",
                      kiln_lr_suggest_name((kiln_lr_suggest)k), bad[b], (long long)gi, got, (long long)wi);
        }
    }
    cr_assert(kiln_lr_find_diverged(INFINITY, INFINITY), "an infinite first loss is a divergence");
    cr_assert(kiln_lr_find_diverged(-INFINITY, 1.0));
    cr_assert(!kiln_lr_find_diverged(2.0, 1.0));
}

Test(divergence, lr_find_records_a_diverging_curve_and_suggests_from_its_finite_part)
{
    kiln_learner_params lp = quiet(KILN_NAN_POLICY_STOP, 10);
    ku_learn f = make(&lp);
    kiln_lr_find_params p = kiln_lr_find_default_params();
    p.end_lr = 1e12, p.stop_div = false, p.num_it = 60;
    kiln_lr_find_result r;
    cr_assert(!kiln_learner_lr_find(f.learn, &p, &r), "%s", kiln_last_error());
    cr_assert_eq(r.n, 60, "every point recorded, the non-finite ones too");
    int64_t first_bad = -1;
    for (int64_t i = 0; i < r.n && first_bad < 0; i++)
        if (!isfinite(r.smooth_losses[i])) first_bad = i;
    cr_assert(first_bad > 0, "lr 1e12 should make the loss non-finite");
    cr_assert(r.suggestion_idx[KILN_LR_SUGGEST_VALLEY] < first_bad && isfinite(r.lr), "valley at %lld, bad from %lld",
              (long long)r.suggestion_idx[KILN_LR_SUGGEST_VALLEY], (long long)first_bad);
    kiln_lr_find_result_free(&r);
    ku_learn_free(&f);
}

/* ---- runs and resume --------------------------------------------------------------------------- */

static const char *const g_run_a[] = {"lr", "0.01", "schedule", "one-cycle", "arch", "mlp", NULL};
static const char *const g_run_b[] = {"lr", "0.5", "schedule", "const", "arch", "mlp", NULL};

static kiln_status stop_in_epoch(kiln_learner *l, void *user)
{
    kiln_fit_state *s = kiln_learner_state(l);
    if (s->epoch == *(int64_t *)user && s->batch == 2) s->stop_training = true;
    return KILN_STATUS_OK;
}

/* A fit of 3 epochs with the given settings into g_dir, stopped in epoch stop_epoch (-1: not). */
static ku_learn fit_into_dir(const char *const *settings, int64_t *stop_epoch, double lr)
{
    kiln_learner_params lp = quiet(KILN_NAN_POLICY_STOP, 10);
    ku_learn f = make(&lp);
    cr_assert(!kiln_learner_set_run_settings(f.learn, settings), "%s", kiln_last_error());
    cr_assert(!kiln_learner_add_checkpointing(f.learn, g_dir, 1));
    kiln_callback cb = {.name = "stop", .begin_batch = stop_in_epoch, .user = stop_epoch};
    cr_assert(!kiln_learner_add_callback(f.learn, &cb));
    kiln_sched s = const_sched(f.learn, 3, lr);
    cr_assert(!kiln_learner_fit(f.learn, 3, &s), "%s", kiln_last_error());
    return f;
}

Test(divergence, resume_refuses_other_settings_naming_each)
{
    tmpdir_make();
    int64_t stop = 1;
    ku_learn a = fit_into_dir(g_run_a, &stop, 1e-2);
    char path[128];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", g_dir);
    kiln_learner_params lp = quiet(KILN_NAN_POLICY_STOP, 10);
    ku_learn b = make(&lp);
    cr_assert(!kiln_learner_set_run_settings(b.learn, g_run_b));
    kiln_weights before;
    cr_assert(!kiln_weights_copy(b.model, &before));
    cr_assert_eq(kiln_learner_resume(b.learn, path), KILN_STATUS_INVALID);
    ku_expect_error("lr: 0.01 then, 0.5 now", "lr");
    ku_expect_error("schedule: one-cycle then, const now", "schedule");
    ku_expect_error("differ in 2", "the count");
    cr_assert(strstr(kiln_last_error(), "arch") == NULL, "arch is the same: %s", kiln_last_error());
    expect_weights(b.model, &before, "refused resume");
    /* a setting only one side has is named too */
    const char *const extra[] = {"lr", "0.01", "schedule", "one-cycle", "arch", "mlp", "wd", "0.3", NULL};
    cr_assert(!kiln_learner_set_run_settings(b.learn, extra));
    cr_assert_eq(kiln_learner_resume(b.learn, path), KILN_STATUS_INVALID);
    ku_expect_error("wd: (not set) then, 0.3 now", "the new setting");
    /* the same settings go on with the same run */
    cr_assert(!kiln_learner_set_run_settings(b.learn, g_run_a));
    cr_assert(!kiln_learner_resume(b.learn, path), "%s", kiln_last_error());
    cr_assert_str_eq(kiln_learner_run_id(b.learn), kiln_learner_run_id(a.learn));
    cr_assert_eq(kiln_recorder_n_epochs(kiln_learner_recorder(b.learn)), 3);
    kiln_weights_free(&before);
    ku_learn_free(&a);
    ku_learn_free(&b);
    tmpdir_remove();
}

/* Renames a metadata key in place (same length) to make an older kiln's checkpoint. */
static void rename_key(const char *path, const char *from, const char *to)
{
    FILE *fp = fopen(path, "r+b");
    cr_assert(fp);
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf, fp);
    char *at = memmem(buf, n, from, strlen(from));
    cr_assert(at, "no %s in %s", from, path);
    memcpy(at, to, strlen(to));
    cr_assert(fseek(fp, 0, SEEK_SET) == 0 && fwrite(buf, 1, n, fp) == n);
    fclose(fp);
}

Test(divergence, resume_refuses_a_checkpoint_without_a_run)
{
    tmpdir_make();
    int64_t stop = 1;
    ku_learn a = fit_into_dir(g_run_a, &stop, 1e-2);
    char path[128];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", g_dir);
    rename_key(path, "\"run_id\"", "\"xun_id\"");
    rename_key(path, "\"run_settings\"", "\"xun_settings\"");
    kiln_learner_params lp = quiet(KILN_NAN_POLICY_STOP, 10);
    ku_learn b = make(&lp);
    cr_assert(!kiln_learner_set_run_settings(b.learn, g_run_a));
    cr_assert_eq(kiln_learner_resume(b.learn, path), KILN_STATUS_INVALID);
    ku_expect_error("records no run id or settings", "old checkpoint");
    /* a learner that declares no settings checks nothing, as before runs existed */
    ku_learn c = make(&lp);
    cr_assert(!kiln_learner_resume(c.learn, path), "%s", kiln_last_error());
    ku_learn_free(&a);
    ku_learn_free(&b);
    ku_learn_free(&c);
    tmpdir_remove();
}

Test(divergence, a_fresh_fit_owns_the_checkpoint_from_its_start)
{
    tmpdir_make();
    int64_t no_stop = -1, stop = 0;
    ku_learn a = fit_into_dir(g_run_a, &no_stop, 1e-2); /* finished */
    char path[128];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", g_dir);
    kiln_checkpoint_info info;
    cr_assert(!kiln_checkpoint_read_info(path, &info));
    cr_assert_eq(info.epoch, 3);
    /* a new run into the same folder, interrupted in its first epoch */
    ku_learn b = fit_into_dir(g_run_b, &stop, 0.5);
    cr_assert_str_neq(kiln_learner_run_id(a.learn), kiln_learner_run_id(b.learn));
    cr_assert(!kiln_checkpoint_read_info(path, &info), "%s", kiln_last_error());
    cr_assert_eq(info.epoch, 0, "the file holds the new run's start, not the old run's end");
    cr_assert_str_eq(info.run_id, kiln_learner_run_id(b.learn));
    /* the old run's settings are refused; the new run's go on from its start */
    kiln_learner_params lp = quiet(KILN_NAN_POLICY_STOP, 10);
    ku_learn c = make(&lp);
    cr_assert(!kiln_learner_set_run_settings(c.learn, g_run_a));
    cr_assert_eq(kiln_learner_resume(c.learn, path), KILN_STATUS_INVALID);
    cr_assert(!kiln_learner_set_run_settings(c.learn, g_run_b));
    cr_assert(!kiln_learner_resume(c.learn, path), "%s", kiln_last_error());
    cr_assert_str_eq(kiln_learner_run_id(c.learn), kiln_learner_run_id(b.learn));
    cr_assert_eq(kiln_recorder_n_epochs(kiln_learner_recorder(c.learn)), 3);
    ku_learn_free(&a);
    ku_learn_free(&b);
    ku_learn_free(&c);
    tmpdir_remove();
}
