/* Tests of the LR range test (kiln_learner_lr_find, include/kiln/learn_lr_find.h): it leaves
 * the learner exactly as it found it (so a fit after lr_find equals a fit without it), its
 * schedule and smoothing are fastai's, its suggestion lands where this synthetic problem
 * trains well, divergence stops it early, and the CSV and plot are written. */
#include "util/ku_learn.h"

#include "kiln/learn.h"
#include "kiln/learn_lr_find.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- fixtures ------------------------------------------------------------------------------ */

typedef ku_learn fixture;

/* Four Gaussian blobs (x (n, 2), y (n) i64), 512 train / 128 valid, batch 32; an MLP
 * 2-32-4 with BatchNorm and dropout 0.1. sgd: plain SGD (momentum 0.9) instead of AdamW. */
static fixture make(bool sgd)
{
    return ku_learn_new(&(ku_learn_params){.n_train = 512, .n_valid = 128, .batch_size = 32, .center = 2,
                                           .noise = 1, .hidden = 32, .dropout = 0.1f, .batchnorm = true,
                                           .sgd = sgd, .accuracy = true});
}

static kiln_sched one_cycle(kiln_learner *l, int64_t n_epochs, double lr)
{
    kiln_sched_one_cycle_params p = kiln_sched_one_cycle_default_params(KILN_ONE_CYCLE_VARIANT_FASTAI);
    p.lr_max = lr;
    p.iters = n_epochs * kiln_data_n_batches(kiln_learner_data(l), KILN_DATA_SPLIT_TRAIN);
    kiln_sched s;
    cr_assert(!kiln_sched_one_cycle(&s, &p), "%s", kiln_last_error());
    return s;
}

/* What lr_find must put back, as raw bytes. */
typedef struct snap {
    kiln_weights w;
    float *grads;
    size_t n_grads;
    void *opt[8];
    size_t opt_bytes[8], n_opt;
    kiln_optim_group groups[4];
    kiln_rng_state rng;
    bool train;
    double mults[2];
    int64_t rec_batches, rec_epochs;
    double rec_last_loss, train_loss;
} snap;

static snap grab(fixture *f)
{
    snap s = {0};
    cr_assert(!kiln_weights_copy(f->model, &s.w));
    float *g = kiln_store_flat(kiln_model_store(f->model), KILN_STORE_GRADS, &s.n_grads);
    s.grads = malloc(s.n_grads * sizeof(float));
    memcpy(s.grads, g, s.n_grads * sizeof(float));
    kiln_optim *o = kiln_learner_optim(f->learn);
    s.n_opt = kiln_optim_state_count(o);
    for (size_t i = 0; i < s.n_opt; i++) {
        kiln_optim_state e;
        cr_assert(!kiln_optim_state_at(o, i, &e));
        s.opt_bytes[i] = e.numel * kiln_dtype_size(e.dtype);
        s.opt[i] = malloc(s.opt_bytes[i]);
        memcpy(s.opt[i], e.data, s.opt_bytes[i]);
    }
    for (int i = 0; i < kiln_optim_n_groups(o) && i < 4; i++) cr_assert(!kiln_optim_get_group(o, i, &s.groups[i]));
    s.rng = kiln_rng_get(f->ctx);
    s.train = kiln_model_training(f->model);
    for (int g2 = 0; g2 < 2; g2++) s.mults[g2] = kiln_learner_lr_mult(f->learn, g2);
    kiln_recorder *r = kiln_learner_recorder(f->learn);
    s.rec_batches = kiln_recorder_n_batches(r);
    s.rec_epochs = kiln_recorder_n_epochs(r);
    s.rec_last_loss = s.rec_batches ? kiln_recorder_losses(r)[s.rec_batches - 1] : NAN;
    s.train_loss = kiln_learner_state(f->learn)->train_loss;
    return s;
}

static void drop(snap *s)
{
    kiln_weights_free(&s->w);
    free(s->grads);
    for (size_t i = 0; i < s->n_opt; i++) free(s->opt[i]);
}

static void expect_same(const snap *a, const snap *b)
{
    cr_assert(!memcmp(a->w.params, b->w.params, a->w.n_params * sizeof(float)), "params changed");
    cr_assert(!memcmp(a->w.buffers, b->w.buffers, a->w.n_buffers * sizeof(float)), "BatchNorm running stats changed");
    cr_assert(!memcmp(a->w.counters, b->w.counters, a->w.n_counters * sizeof(int64_t)), "BatchNorm counters changed");
    cr_assert(!memcmp(a->grads, b->grads, a->n_grads * sizeof(float)), "grads changed");
    for (size_t i = 0; i < a->n_opt; i++)
        cr_assert(!memcmp(a->opt[i], b->opt[i], a->opt_bytes[i]), "optimizer state %zu", i);
    cr_assert(!memcmp(a->groups, b->groups, sizeof a->groups), "optimizer group hyper-parameters changed");
    cr_assert(a->rng.seed == b->rng.seed && a->rng.counter == b->rng.counter, "rng changed");
    cr_assert_eq(a->train, b->train, "train flag changed");
    cr_assert(!memcmp(a->mults, b->mults, sizeof a->mults), "lr multipliers changed");
    cr_assert_eq(a->rec_batches, b->rec_batches, "recorder changed");
    cr_assert_eq(a->rec_epochs, b->rec_epochs, "recorder changed");
    cr_assert(a->rec_last_loss == b->rec_last_loss || (isnan(a->rec_last_loss) && isnan(b->rec_last_loss)));
    cr_assert(a->train_loss == b->train_loss, "fit state changed");
}

/* ---- restores everything -------------------------------------------------------------------- */

Test(lr_find, restores_the_learner_bit_for_bit)
{
    fixture f = make(false);
    kiln_sched s = one_cycle(f.learn, 1, 1e-2);
    cr_assert(!kiln_learner_fit(f.learn, 1, &s), "%s", kiln_last_error()); /* optimizer state, history */
    cr_assert(!kiln_learner_set_lr_slice(f.learn, 1e-3, 1e-2));
    kiln_model_train(f.model, false);
    snap before = grab(&f);
    kiln_lr_find_params p = kiln_lr_find_default_params();
    p.num_it = 40;
    kiln_lr_find_result r;
    cr_assert(!kiln_learner_lr_find(f.learn, &p, &r), "%s", kiln_last_error());
    cr_assert(r.n > 10);
    snap after = grab(&f);
    expect_same(&before, &after);
    kiln_lr_find_result_free(&r);
    drop(&before), drop(&after);
    ku_learn_free(&f);
}

/* fastai #3013: running lr_find before fit must not change what fit gives. */
Test(lr_find, fit_after_lr_find_equals_fit_without)
{
    fixture a = make(false), b = make(false);
    kiln_sched s = one_cycle(a.learn, 2, 1e-2);
    kiln_lr_find_result r;
    cr_assert(!kiln_learner_lr_find(b.learn, NULL, &r), "%s", kiln_last_error());
    kiln_lr_find_result_free(&r);
    cr_assert(!kiln_learner_fit(a.learn, 2, &s) && !kiln_learner_fit(b.learn, 2, &s), "%s", kiln_last_error());
    kiln_weights wa, wb;
    cr_assert(!kiln_weights_copy(a.model, &wa) && !kiln_weights_copy(b.model, &wb));
    cr_assert(!memcmp(wa.params, wb.params, wa.n_params * sizeof(float)), "lr_find changed the next fit");
    kiln_weights_free(&wa), kiln_weights_free(&wb);
    ku_learn_free(&a), ku_learn_free(&b);
}

/* ---- what it records -------------------------------------------------------------------------- */

Test(lr_find, schedule_smoothing_and_suggestion)
{
    fixture f = make(false);
    /* callbacks do not run during the test */
    cr_assert(!kiln_learner_add_checkpointing(f.learn, "/nonexistent/dir/x_%d.st", 1));
    kiln_lr_find_params p = kiln_lr_find_default_params();
    p.stop_div = false;
    kiln_lr_find_result r;
    cr_assert(!kiln_learner_lr_find(f.learn, &p, &r), "%s", kiln_last_error());
    cr_assert_eq(r.n, 100, "100 iterations over 16-batch epochs");
    cr_assert_eq(r.num_it, 100);
    for (int64_t i = 0; i < r.n; i++) {
        double want = 1e-7 * pow(10 / 1e-7, (double)i / 100);
        cr_assert(fabs(r.lrs[i] - want) <= 1e-12 * want, "lr[%lld] %g vs %g", (long long)i, r.lrs[i], want);
    }
    double sm[100];
    cr_assert(!kiln_ema_smooth(r.losses, r.n, 0.98, sm));
    for (int64_t i = 0; i < r.n; i++) cr_assert(sm[i] == r.smooth_losses[i], "smooth[%lld]", (long long)i);
    cr_assert_eq(r.suggest, KILN_LR_SUGGEST_VALLEY);
    cr_assert(r.lr == r.suggestions[KILN_LR_SUGGEST_VALLEY]);
    for (int k = 0; k < 3; k++) cr_assert(isfinite(r.suggestions[k]) && r.suggestion_idx[k] >= 0, "suggestion %d", k);
    /* AdamW on these blobs trains well from about 1e-3 to 1e-1 */
    cr_assert(r.lr >= 1e-4 && r.lr <= 0.3, "valley suggests %g", r.lr);
    cr_assert(r.suggestions[KILN_LR_SUGGEST_MINIMUM] >= 1e-4 && r.suggestions[KILN_LR_SUGGEST_MINIMUM] <= 1,
              "minimum/10 suggests %g", r.suggestions[KILN_LR_SUGGEST_MINIMUM]);
    /* and that lr does train: a short one-cycle at the suggestion beats the start */
    double l0, a0, l1, a1;
    cr_assert(!kiln_learner_validate(f.learn, KILN_DATA_SPLIT_VALID, &l0, &a0));
    cr_assert(!kiln_learner_remove_callback(f.learn, "checkpointing"));
    kiln_sched s = one_cycle(f.learn, 2, r.lr);
    cr_assert(!kiln_learner_fit(f.learn, 2, &s), "%s", kiln_last_error());
    cr_assert(!kiln_learner_validate(f.learn, KILN_DATA_SPLIT_VALID, &l1, &a1));
    cr_assert(a1 >= 0.9 && l1 < l0, "at lr %g: accuracy %g -> %g, loss %g -> %g", r.lr, a0, a1, l0, l1);
    kiln_lr_find_result_free(&r);
    ku_learn_free(&f);
}

Test(lr_find, divergence_stops_early)
{
    fixture f = make(true); /* SGD blows up well before lr 10 */
    kiln_lr_find_result r;
    cr_assert(!kiln_learner_lr_find(f.learn, NULL, &r), "%s", kiln_last_error());
    cr_assert(r.diverged, "no divergence in %lld iterations", (long long)r.n);
    cr_assert(r.n < 100, "stopped after %lld", (long long)r.n);
    double best = INFINITY;
    for (int64_t i = 0; i < r.n - 1; i++) {
        best = fmin(best, r.smooth_losses[i]);
        cr_assert(!kiln_lr_find_diverged(r.smooth_losses[i], best), "diverged at %lld but went on", (long long)i);
    }
    best = fmin(best, r.smooth_losses[r.n - 1]);
    cr_assert(kiln_lr_find_diverged(r.smooth_losses[r.n - 1], best), "the last point is the divergent one");
    kiln_lr_find_result_free(&r);
    /* without stop_div it runs all num_it iterations */
    kiln_lr_find_params p = kiln_lr_find_default_params();
    p.stop_div = false;
    p.num_it = 60;
    cr_assert(!kiln_learner_lr_find(f.learn, &p, &r), "%s", kiln_last_error());
    cr_assert(!r.diverged && r.n == 60);
    kiln_lr_find_result_free(&r);
    ku_learn_free(&f);
}

Test(lr_find, csv_and_plot)
{
    fixture f = make(false);
    char dir[] = "/tmp/kiln_lrf_XXXXXX", csv[96], png[96];
    cr_assert(mkdtemp(dir));
    snprintf(csv, sizeof csv, "%s/lr_find.csv", dir);
    snprintf(png, sizeof png, "%s/lr_find.png", dir);
    kiln_lr_find_params p = kiln_lr_find_default_params();
    p.csv_path = csv;
    p.plot_path = kiln_plot_available() ? png : NULL;
    kiln_lr_find_result r;
    cr_assert(!kiln_learner_lr_find(f.learn, &p, &r), "%s", kiln_last_error());
    FILE *in = fopen(csv, "r");
    cr_assert(in);
    char line[256];
    cr_assert(fgets(line, sizeof line, in));
    cr_assert_str_eq(line, "lr,loss,smooth_loss\n");
    int64_t rows = 0;
    double lr, loss, sm;
    while (fscanf(in, "%lf,%lf,%lf", &lr, &loss, &sm) == 3) {
        cr_assert(rows < r.n && fabs(lr - r.lrs[rows]) <= 1e-8 * r.lrs[rows], "row %lld", (long long)rows); /* %.9g */
        cr_assert(fabs(loss - r.losses[rows]) <= 1e-8 * fabs(r.losses[rows]) + 1e-12);
        cr_assert(fabs(sm - r.smooth_losses[rows]) <= 1e-8 * fabs(r.smooth_losses[rows]) + 1e-12);
        rows++;
    }
    fclose(in);
    cr_assert_eq(rows, r.n);
    if (kiln_plot_available()) {
        FILE *pf = fopen(png, "rb");
        unsigned char sig[8];
        cr_assert(pf && fread(sig, 1, 8, pf) == 8 && !memcmp(sig, "\x89PNG\r\n\x1a\n", 8), "png written");
        fclose(pf);
        if (getenv("KILN_KEEP_PLOTS")) { /* look at it */
            char cmd[256];
            snprintf(cmd, sizeof cmd, "cp %s %s/lr_find.png", png, getenv("KILN_KEEP_PLOTS"));
            cr_assert(system(cmd) == 0);
        }
    }
    cr_assert(kiln_lr_find_plot(&r, png, (int)r.n) == KILN_STATUS_INVALID);
    kiln_lr_find_result_free(&r);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert(system(cmd) == 0);
    ku_learn_free(&f);
}

Test(lr_find, bad_parameters)
{
    fixture f = make(false);
    kiln_lr_find_result r;
    kiln_lr_find_params p = kiln_lr_find_default_params();
    p.start_lr = 0;
    cr_assert(kiln_learner_lr_find(f.learn, &p, &r) == KILN_STATUS_INVALID);
    ku_expect_error("start_lr", "start_lr 0");
    p = kiln_lr_find_default_params();
    p.end_lr = 1e-8;
    cr_assert(kiln_learner_lr_find(f.learn, &p, &r) == KILN_STATUS_INVALID);
    ku_expect_error("end_lr", "end below start");
    p = kiln_lr_find_default_params();
    p.num_it = 1;
    cr_assert(kiln_learner_lr_find(f.learn, &p, &r) == KILN_STATUS_INVALID);
    ku_expect_error("num_it", "num_it 1");
    cr_assert(r.n == 0 && r.lrs == NULL);
    ku_learn_free(&f);
}
