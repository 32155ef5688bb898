/* Tests of snapshot ensembles (include/kiln/learn_snapshot.h): one snapshot per SGDR / CLR cycle,
 * taken at the cycle's last iteration; the ensemble's probabilities are the mean of the
 * snapshots' probabilities; prediction leaves the model's weights as they were; the
 * per-snapshot and ensemble scores and their table; snapshots on disk match those in
 * memory, and a resumed fit picks the files up. Plus kiln_weights. */
#include "util/ku_learn.h"

#include "kiln/learn.h"
#include "kiln/learn_snapshot.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- fixtures ------------------------------------------------------------------------------ */

typedef ku_learn fixture;

enum { NT = 256, NV = 96, BS = 32, NB = NT / BS };

/* Four overlapping Gaussian blobs (x (n, 2), y (n) i64), 256 train / 96 valid, batch 32
 * (8 batches per epoch); an MLP 2-16-4 with BatchNorm; default AdamW; accuracy. */
static fixture make(void)
{
    return ku_learn_new(&(ku_learn_params){.n_train = NT, .n_valid = NV, .batch_size = BS, .center = 1,
                                           .noise = 1, .hidden = 16, .batchnorm = true, .accuracy = true});
}

/* SGDR n_cycle cycles of cycle_len epochs (mult 1): returns the epochs it needs. */
static int64_t sgdr(kiln_sched *s, int n_cycle, int cycle_mult)
{
    kiln_sched_sgdr_params p = kiln_sched_sgdr_default_params();
    p.lr = 1e-2;
    p.iters_per_epoch = NB;
    p.n_cycle = n_cycle;
    p.cycle_len = 1;
    p.cycle_mult = cycle_mult;
    cr_assert(!kiln_sched_sgdr(s, &p), "%s", kiln_last_error());
    return kiln_sgdr_epochs(1, cycle_mult, n_cycle);
}

/* ---- kiln_weights -------------------------------------------------------------------------- */

Test(snapshot, weights_copy_restore)
{
    fixture f = make();
    kiln_weights w;
    cr_assert(!kiln_weights_copy(f.model, &w));
    kiln_sched s;
    int64_t ne = sgdr(&s, 1, 1);
    cr_assert(!kiln_learner_fit(f.learn, ne, &s));
    kiln_weights w2;
    cr_assert(!kiln_weights_copy(f.model, &w2));
    cr_assert(memcmp(w.params, w2.params, w.n_params * sizeof(float)) != 0);
    cr_assert(w2.counters[1] == NB || w2.counters[2] == NB, "a BatchNorm counted %d batches", NB);
    cr_assert(!kiln_weights_restore(f.model, &w));
    kiln_weights w3;
    cr_assert(!kiln_weights_copy(f.model, &w3));
    cr_assert(!memcmp(w.params, w3.params, w.n_params * sizeof(float)));
    cr_assert(!memcmp(w.buffers, w3.buffers, w.n_buffers * sizeof(float)));
    cr_assert(!memcmp(w.counters, w3.counters, w.n_counters * sizeof(int64_t)));
    w3.n_params--;
    cr_assert(kiln_weights_restore(f.model, &w3) == KILN_STATUS_INVALID);
    w3.n_params++;
    kiln_weights_free(&w), kiln_weights_free(&w2), kiln_weights_free(&w3);
    ku_learn_free(&f);
}

/* ---- taking snapshots ----------------------------------------------------------------------- */

Test(snapshot, one_per_sgdr_cycle)
{
    fixture f = make();
    cr_assert(!kiln_learner_add_snapshots(f.learn, NULL));
    cr_assert(kiln_learner_add_snapshots(f.learn, NULL) == KILN_STATUS_STATE, "only one snapshots callback");
    kiln_sched s;
    int64_t ne = sgdr(&s, 3, 2); /* cycles of 1, 2, 4 epochs */
    cr_assert_eq(ne, 7);
    cr_assert(!kiln_learner_fit(f.learn, ne, &s), "%s", kiln_last_error());
    cr_assert_eq(kiln_snapshot_count(f.learn), 3);
    const int64_t ends[3] = {1 * NB, 3 * NB, 7 * NB};
    for (int i = 0; i < 3; i++) {
        int64_t cycle, iter, epoch;
        const char *path = "x";
        cr_assert(!kiln_snapshot_info(f.learn, i, &cycle, &iter, &epoch, &path));
        cr_assert_eq(cycle, i);
        cr_assert_eq(iter, ends[i], "snapshot %d after %lld iterations", i, (long long)iter);
        cr_assert_eq(epoch, ends[i] / NB - 1);
        cr_assert_null(path, "in memory");
    }
    /* the last snapshot is the final model */
    kiln_weights now, last;
    cr_assert(!kiln_weights_copy(f.model, &now));
    cr_assert(!kiln_snapshot_load(f.learn, 2));
    cr_assert(!kiln_weights_copy(f.model, &last));
    cr_assert(!memcmp(now.params, last.params, now.n_params * sizeof(float)));
    kiln_weights_free(&now), kiln_weights_free(&last);
    /* a new fit from epoch 0 starts a fresh set */
    ne = sgdr(&s, 2, 1);
    cr_assert(!kiln_learner_fit(f.learn, ne, &s));
    cr_assert_eq(kiln_snapshot_count(f.learn), 2);
    cr_assert(kiln_snapshot_info(f.learn, 2, NULL, NULL, NULL, NULL) == KILN_STATUS_INVALID);
    ku_learn_free(&f);
}

Test(snapshot, one_per_clr_cycle)
{
    fixture f = make();
    cr_assert(!kiln_learner_add_snapshots(f.learn, NULL));
    kiln_sched_clr_params p = kiln_sched_clr_default_params();
    p.step_size_up = p.step_size_down = 6; /* cycles of 12 iterations: 1.5 epochs */
    p.iters = 48;
    kiln_sched s;
    cr_assert(!kiln_sched_clr(&s, &p), "%s", kiln_last_error());
    cr_assert(!kiln_learner_fit(f.learn, 48 / NB, &s), "%s", kiln_last_error());
    cr_assert_eq(kiln_snapshot_count(f.learn), 4);
    for (int i = 0; i < 4; i++) {
        int64_t iter;
        cr_assert(!kiln_snapshot_info(f.learn, i, NULL, &iter, NULL, NULL));
        cr_assert_eq(iter, 12 * (i + 1));
    }
    ku_learn_free(&f);
}

/* ---- the ensemble ------------------------------------------------------------------------- */

Test(snapshot, ensemble_is_the_mean_and_restores_weights)
{
    fixture f = make();
    cr_assert(!kiln_learner_add_snapshots(f.learn, NULL));
    kiln_preds none;
    cr_assert(kiln_snapshot_predict(f.learn, KILN_DATA_SPLIT_VALID, 0, &none) == KILN_STATUS_STATE);
    kiln_sched s;
    int64_t ne = sgdr(&s, 4, 1);
    cr_assert(!kiln_learner_fit(f.learn, ne, &s), "%s", kiln_last_error());
    cr_assert_eq(kiln_snapshot_count(f.learn), 4);
    /* perturb the model so "restored" means something */
    kiln_store *st = kiln_model_store(f.model);
    size_t np;
    float *pf = kiln_store_flat(st, KILN_STORE_PARAMS, &np);
    for (size_t i = 0; i < np; i++) pf[i] *= 0.5f;
    kiln_weights before;
    cr_assert(!kiln_weights_copy(f.model, &before));

    enum { M = 3 };
    kiln_preds ens;
    cr_assert(!kiln_snapshot_predict(f.learn, KILN_DATA_SPLIT_VALID, M, &ens), "%s", kiln_last_error());
    kiln_weights after;
    cr_assert(!kiln_weights_copy(f.model, &after));
    cr_assert(!memcmp(before.params, after.params, np * sizeof(float)), "weights restored");
    cr_assert(!memcmp(before.buffers, after.buffers, before.n_buffers * sizeof(float)), "buffers restored");
    cr_assert_eq(ens.n, NV);
    cr_assert_eq(ens.c, 4);

    /* the mean of the last M snapshots' own predictions */
    double *sum = calloc((size_t)(NV * 4), sizeof *sum);
    double acc_each[M];
    for (int i = 4 - M; i < 4; i++) {
        kiln_preds p;
        cr_assert(!kiln_snapshot_load(f.learn, i));
        cr_assert(!kiln_learner_get_preds(f.learn, KILN_DATA_SPLIT_VALID, &p));
        int64_t right = 0;
        for (int64_t r = 0; r < p.n; r++) {
            int best = 0;
            for (int c = 0; c < 4; c++) {
                sum[r * 4 + c] += p.probs[r * 4 + c];
                if (p.probs[r * 4 + c] > p.probs[r * 4 + best]) best = c;
            }
            right += best == ((int64_t *)p.targets)[r];
        }
        acc_each[i - (4 - M)] = (double)right / (double)p.n;
        kiln_preds_free(&p);
    }
    double nll = 0;
    for (int64_t r = 0; r < NV; r++) {
        float rowsum = 0;
        for (int c = 0; c < 4; c++) {
            float want = (float)(sum[r * 4 + c] / M);
            cr_assert(ens.probs[r * 4 + c] == want, "probs[%lld, %d] %g vs mean %g", (long long)r, c,
                      ens.probs[r * 4 + c], want);
            rowsum += ens.probs[r * 4 + c];
        }
        cr_assert(fabsf(rowsum - 1) < 1e-5f);
        cr_assert_eq(((int64_t *)ens.targets)[r], (r + NT) % 4);
        nll -= log(ens.probs[r * 4 + ((int64_t *)ens.targets)[r]]);
    }
    cr_assert(fabs(ens.loss - nll / NV) <= 1e-5 * fabs(ens.loss), "ensemble loss %g, NLL of the mean %g", ens.loss,
              nll / NV);

    /* scores: each snapshot's accuracy by hand, the ensemble's loss as above */
    cr_assert(!kiln_weights_restore(f.model, &before));
    kiln_snapshot_eval ev;
    cr_assert(!kiln_snapshot_evaluate(f.learn, KILN_DATA_SPLIT_VALID, M, &ev), "%s", kiln_last_error());
    cr_assert(ev.n == M && ev.first == 4 - M && ev.n_metrics == 1);
    for (int i = 0; i < M; i++)
        cr_assert(fabs(ev.metrics[i] - acc_each[i]) < 1e-12, "snapshot %d accuracy %g vs %g", i, ev.metrics[i],
                  acc_each[i]);
    cr_assert(ev.ens_loss == ens.loss);
    cr_assert(ev.ens_metrics[0] >= 0.5, "ensemble accuracy %g", ev.ens_metrics[0]);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    kiln_snapshot_eval_print(f.learn, &ev, out);
    fclose(out);
    cr_assert(strstr(buf, "snapshot") && strstr(buf, "valid_loss") && strstr(buf, "accuracy"), "table:\n%s", buf);
    cr_assert(strstr(buf, "ensemble (last 3)"), "table:\n%s", buf);
    cr_assert(strncmp(buf, "snapshot", 8) == 0);
    int lines = 0;
    for (char *c = buf; *c; c++) lines += *c == '\n';
    cr_assert_eq(lines, 1 + M + 1, "table:\n%s", buf);
    if (getenv("KU_SHOW")) fputs(buf, stderr);
    free(buf);
    kiln_snapshot_eval_free(&ev);
    kiln_weights_free(&before), kiln_weights_free(&after);
    kiln_preds_free(&ens);
    free(sum);
    ku_learn_free(&f);
}

/* ---- on disk ------------------------------------------------------------------------------- */

static kiln_status stop_after_2(kiln_learner *l, void *user)
{
    (void)user;
    kiln_fit_state *s = kiln_learner_state(l);
    if (s->epoch == 1) s->stop_training = true;
    return KILN_STATUS_OK;
}

Test(snapshot, on_disk_matches_memory_and_resume_adopts_files)
{
    char dir[] = "/tmp/kiln_snap_XXXXXX";
    cr_assert(mkdtemp(dir));
    fixture a = make(), b = make();
    kiln_snapshot_params sp = {.dir = dir};
    cr_assert(!kiln_learner_add_snapshots(a.learn, NULL));
    cr_assert(!kiln_learner_add_snapshots(b.learn, &sp));
    kiln_sched s;
    int64_t ne = sgdr(&s, 3, 1);
    cr_assert(!kiln_learner_fit(a.learn, ne, &s) && !kiln_learner_fit(b.learn, ne, &s), "%s", kiln_last_error());
    cr_assert_eq(kiln_snapshot_count(b.learn), 3);
    const char *path;
    cr_assert(!kiln_snapshot_info(b.learn, 1, NULL, NULL, NULL, &path));
    char want[96];
    snprintf(want, sizeof want, "%s/snapshot_1.safetensors", dir);
    cr_assert_str_eq(path, want);
    kiln_preds pa, pb;
    cr_assert(!kiln_snapshot_predict(a.learn, KILN_DATA_SPLIT_VALID, 0, &pa));
    cr_assert(!kiln_snapshot_predict(b.learn, KILN_DATA_SPLIT_VALID, 0, &pb), "%s", kiln_last_error());
    cr_assert(!memcmp(pa.probs, pb.probs, (size_t)(pa.n * pa.c) * sizeof(float)), "disk and memory agree");
    kiln_preds_free(&pa), kiln_preds_free(&pb);

    /* a run stopped after two cycles, resumed by a new learner over the same directory */
    char ck[96];
    snprintf(ck, sizeof ck, "%s/ck.safetensors", dir);
    fixture c = make(), d = make();
    cr_assert(!kiln_learner_add_snapshots(c.learn, &sp));
    cr_assert(!kiln_learner_add_checkpointing(c.learn, ck, 1));
    kiln_callback stop = {.name = "stop", .end_epoch = stop_after_2};
    cr_assert(!kiln_learner_add_callback(c.learn, &stop));
    cr_assert(!kiln_learner_fit(c.learn, ne, &s));
    cr_assert_eq(kiln_snapshot_count(c.learn), 2);
    cr_assert(!kiln_learner_add_snapshots(d.learn, &sp));
    cr_assert(!kiln_learner_resume(d.learn, ck), "%s", kiln_last_error());
    cr_assert_eq(kiln_snapshot_count(d.learn), 3, "two adopted, one new");
    cr_assert(!kiln_snapshot_predict(d.learn, KILN_DATA_SPLIT_VALID, 0, &pb), "%s", kiln_last_error());
    cr_assert(!kiln_snapshot_predict(a.learn, KILN_DATA_SPLIT_VALID, 0, &pa));
    cr_assert(!memcmp(pa.probs, pb.probs, (size_t)(pa.n * pa.c) * sizeof(float)), "resumed ensemble agrees");
    kiln_preds_free(&pa), kiln_preds_free(&pb);
    ku_learn_free(&a), ku_learn_free(&b), ku_learn_free(&c), ku_learn_free(&d);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert(system(cmd) == 0);
}
