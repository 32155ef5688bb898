/* The shared training driver (kiln/apps.h, kiln_learner_train): what `kiln <task> fit` does,
 * as one library call for any task's learner. It prepares the output folder, checkpoints
 * (resume goes on from the last one and refuses changed settings), runs the fit recipe,
 * stops cleanly when asked (a SIGINT flag), evaluates the snapshot ensemble and TTA, and
 * writes the exported model, history.csv, metrics.json and the plots, each atomically.
 *
 * Data-parallel (the learner has a communicator of N > 1 ranks, kiln_learner_set_comm): every
 * rank trains; rank 0 alone prepares the folder and writes the files (the learner's
 * checkpointing writes on rank 0 only); every rank reads the checkpoint on resume, and the
 * settings record "ranks" so a resume with another N is refused naming both; an error on any
 * rank is agreed (kiln_comm_agree) before the fit and at the end, so every rank returns it. The
 * snapshot ensemble and TTA run on every rank over its validation shard and are scored over
 * every rank's (kiln_learner_score sums over ranks), so their figures are the whole split's. */
#include "app_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

kiln_train_params kiln_train_default_params(void)
{
    return (kiln_train_params){.recipe = kiln_recipe_make(KILN_RECIPE_ONE_CYCLE), .checkpoint_every = 1,
                               .tta = kiln_predict_default_params()};
}

void kiln_train_result_free(kiln_train_result *r)
{
    if (!r) return;
    free(r->metrics);
    free(r->tta_metrics);
    kiln_snapshot_eval_free(&r->snap);
    memset(r, 0, sizeof *r);
}

/* ---- stopping on request ------------------------------------------------------------------- */

static kiln_status stop_cb(kiln_learner *l, void *user)
{
    if (*(volatile sig_atomic_t *)user) kiln_learner_state(l)->stop_training = true;
    return KILN_STATUS_OK;
}

/* ---- metrics.json -------------------------------------------------------------------------- */

static void add_num(cJSON *j, const char *k, double v)
{
    if (isfinite(v)) cJSON_AddNumberToObject(j, k, v);
    else cJSON_AddNullToObject(j, k);
}

/* {"epochs", "train_loss", "valid_loss", <metric>: v, "time_s", "items_per_s", "tta": {...},
 * "snapshot_ensemble": {...}} */
kiln_status kiln_train_result_write_json(kiln_learner *l, const kiln_train_params *p, const kiln_train_result *r,
                                         const char *path)
{
    if (!l || !p || !r || !path) return kiln__err(KILN_STATUS_INVALID, "train_result_write_json: NULL argument");
    int nm = kiln_learner_n_metrics(l);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "epochs", (double)r->epochs);
    add_num(j, "train_loss", r->train_loss);
    add_num(j, "valid_loss", r->valid_loss);
    for (int k = 0; k < nm && r->metrics; k++) add_num(j, kiln_learner_metric_name(l, k), r->metrics[k]);
    add_num(j, "time_s", r->seconds);
    add_num(j, "items_per_s", r->items_per_s);
    if (r->tta) {
        cJSON *t = cJSON_AddObjectToObject(j, "tta");
        cJSON_AddNumberToObject(t, "n", (double)p->tta.tta_n);
        cJSON_AddNumberToObject(t, "beta", p->tta.tta_beta);
        cJSON_AddBoolToObject(t, "use_max", p->tta.tta_max);
        add_num(t, "valid_loss", r->tta_loss);
        for (int k = 0; k < nm; k++) add_num(t, kiln_learner_metric_name(l, k), r->tta_metrics[k]);
    }
    if (r->snap.n > 0) {
        cJSON *t = cJSON_AddObjectToObject(j, "snapshot_ensemble");
        cJSON_AddNumberToObject(t, "n", r->snap.n);
        add_num(t, "valid_loss", r->snap.ens_loss);
        for (int k = 0; k < nm; k++) add_num(t, kiln_learner_metric_name(l, k), r->snap.ens_metrics[k]);
        cJSON *arr = cJSON_AddArrayToObject(t, "snapshots");
        for (int i = 0; i < r->snap.n; i++) {
            cJSON *e = cJSON_CreateObject();
            int64_t cycle = 0, epoch = 0;
            kiln_snapshot_info(l, r->snap.first + i, &cycle, NULL, &epoch, NULL);
            cJSON_AddNumberToObject(e, "cycle", (double)cycle);
            cJSON_AddNumberToObject(e, "epoch", (double)epoch);
            add_num(e, "valid_loss", r->snap.losses[i]);
            for (int k = 0; k < nm; k++) add_num(e, kiln_learner_metric_name(l, k), r->snap.metrics[i * nm + k]);
            cJSON_AddItemToArray(arr, e);
        }
    }
    return kiln__json_write(j, path);
}

/* ---- the run ------------------------------------------------------------------------------- */

/* After a divergence: the message also says what was kept and where the last good state is. */
static void divergence_note(const char *out, const char *ckpt)
{
    char why[2048];
    snprintf(why, sizeof why, "%s", kiln_last_error());
    kiln_checkpoint_info info;
    if (kiln_checkpoint_read_info(ckpt, &info)) {
        kiln__err(KILN_STATUS_DIVERGED, "%s; nothing was written over the model files in %s", why, out);
        return;
    }
    kiln__err(KILN_STATUS_DIVERGED, "%s; nothing was written over the model files in %s; the last good state is %s "
                                    "(%s%lld of %lld epochs done)", why, out, ckpt, info.epoch ? "" : "the start: ",
              (long long)info.epoch, (long long)info.n_epochs);
}

/* Last epoch's losses and metrics, time and throughput from the recorder. */
static kiln_status collect(kiln_learner *l, int64_t nb, double seconds, kiln_train_result *r)
{
    const kiln_recorder *rec = kiln_learner_recorder(l);
    int nm = kiln_learner_n_metrics(l);
    kiln_epoch_record er;
    if (!(r->metrics = calloc((size_t)nm + 1, sizeof(double))))
        return kiln__err(KILN_STATUS_NOMEM, "learner_train: out of memory");
    kiln_status st = kiln_recorder_epoch(rec, kiln_recorder_n_epochs(rec) - 1, &er);
    if (st) return st;
    r->train_loss = er.train_loss, r->valid_loss = er.valid_loss;
    memcpy(r->metrics, er.metrics, (size_t)nm * sizeof(double));
    double train_s = 0;
    for (int64_t e = 0; e < kiln_recorder_n_epochs(rec); e++)
        if (!kiln_recorder_epoch(rec, e, &er)) train_s += er.seconds;
    kiln_data *d = kiln_learner_data(l);
    kiln_vision_data *v = kiln_vision_data_of(d);
    kiln_clear_error();
    int64_t per_epoch = v ? nb * kiln_vision_data_params(v)->batch_size : kiln_data_n_items(d, KILN_DATA_SPLIT_TRAIN);
    per_epoch *= kiln_learner_world(l); /* a rank's shard: N of them are the global epoch */
    r->seconds = seconds;
    r->epochs = kiln_recorder_n_epochs(rec); /* a phased recipe's every phase */
    r->items_per_s = (double)(per_epoch * r->epochs) / (train_s > 0 ? train_s : seconds);
    return KILN_STATUS_OK;
}

/* The snapshot ensemble and TTA on the validation split. */
static kiln_status extras(kiln_learner *l, const kiln_train_params *p, kiln_train_result *r)
{
    if (kiln_data_n_items(kiln_learner_data(l), KILN_DATA_SPLIT_VALID) < 1) return KILN_STATUS_OK;
    kiln_status st;
    if (p->snapshots > 0) {
        if (kiln_snapshot_count(l) == 0)
            return kiln__err(KILN_STATUS_STATE, "snapshots: no snapshot was taken (the schedule had no cycle end)");
        if ((st = kiln_snapshot_evaluate(l, KILN_DATA_SPLIT_VALID, p->snapshots, &r->snap))) return st;
    }
    if (p->tta.tta) {
        kiln_preds pr;
        if ((st = kiln_learner_predict_split(l, KILN_DATA_SPLIT_VALID, &p->tta, &pr))) return st;
        r->tta_metrics = calloc((size_t)kiln_learner_n_metrics(l) + 1, sizeof(double));
        st = r->tta_metrics ? kiln_learner_score(l, &pr, &r->tta_loss, r->tta_metrics)
                            : kiln__err(KILN_STATUS_NOMEM, "tta: out of memory");
        kiln_preds_free(&pr);
        if (st) return st;
        r->tta = true;
    }
    return KILN_STATUS_OK;
}

static kiln_status outputs(kiln_learner *l, const kiln_train_params *p, kiln_train_result *r)
{
    char ph[4096], pm[4096], pl[4096], pr[4096];
    kiln_status st = kiln__path(ph, sizeof ph, p->out, "history.csv");
    if (!st) st = kiln__path(pm, sizeof pm, p->out, "metrics.json");
    if (!st) st = kiln__path(pl, sizeof pl, p->out, "losses.png");
    if (!st) st = kiln__path(pr, sizeof pr, p->out, "lr.png");
    if (!st) st = kiln_learner_export(l, p->out);
    const kiln_recorder *rec = kiln_learner_recorder(l);
    if (!st) st = kiln_recorder_write_csv(rec, ph);
    if (!st) st = kiln_train_result_write_json(l, p, r, pm);
    r->plots = kiln_plot_available();
    if (!st && r->plots && !(st = kiln_recorder_plot_losses(rec, pl))) st = kiln_recorder_plot_lr(rec, pr);
    return st;
}

/* A recipe of several fits (freeze changes between them). */
static bool phased(kiln_recipe_kind k) { return k == KILN_RECIPE_FINE_TUNE || k == KILN_RECIPE_ULMFIT; }

/* What p asks for, checked before anything is written. */
static kiln_status check(kiln_learner *l, const kiln_train_params *p, int64_t *epochs)
{
    if (!kiln__app_of(l, "learner_train")) return KILN_STATUS_STATE;
    if (!p || !p->out || !*p->out) return kiln__err(KILN_STATUS_INVALID, "learner_train: out (the output folder) is required");
    if (p->snapshots < 0 || p->snapshots > 1000)
        return kiln__err(KILN_STATUS_INVALID, "learner_train: snapshots %d must be in [0, 1000]", p->snapshots);
    if (p->checkpoint_every < 0) return kiln__err(KILN_STATUS_INVALID, "learner_train: checkpoint_every must be >= 0");
    if (p->resume && !p->checkpoint_every)
        return kiln__err(KILN_STATUS_INVALID, "learner_train: resume needs checkpoints (checkpoint_every >= 1)");
    if (p->resume && phased(p->recipe.kind))
        return kiln__err(KILN_STATUS_UNSUPPORTED, "learner_train: resume of a %s run is not supported yet",
                         kiln_recipe_name(p->recipe.kind));
    if (p->tta.tta && (p->tta.tta_n < 1 || p->tta.tta_n > 64 || !(p->tta.tta_beta >= 0 && p->tta.tta_beta <= 1)))
        return kiln__err(KILN_STATUS_INVALID, "learner_train: tta_n must be in [1, 64] and tta_beta in [0, 1]");
    if (!kiln_learner_data(l)) return kiln__err(KILN_STATUS_STATE, "learner_train: the learner has no data");
    return kiln_recipe_epochs(&p->recipe, epochs);
}

/* p->settings with "ranks" = N added (N > 1; a checkpoint without it counts as 1 rank). */
static kiln_status set_settings(kiln_learner *l, const kiln_train_params *p)
{
    size_t n = 0;
    while (p->settings && p->settings[n]) n++;
    const char **kv = calloc(n + 3, sizeof *kv);
    if (!kv) return kiln__err(KILN_STATUS_NOMEM, "learner_train: out of memory");
    if (n) memcpy(kv, p->settings, n * sizeof *kv);
    char ranks[16];
    snprintf(ranks, sizeof ranks, "%d", kiln_learner_world(l));
    if (kiln_learner_world(l) > 1) kv[n] = "ranks", kv[n + 1] = ranks;
    kiln_status st = kiln_learner_set_run_settings(l, kv);
    free(kv);
    return st;
}

static kiln_status train(kiln_learner *l, const kiln_train_params *p, kiln_train_result *r);

kiln_status kiln_learner_train(kiln_learner *l, const kiln_train_params *p, kiln_train_result *r)
{
    if (!r) return kiln__err(KILN_STATUS_INVALID, "learner_train: r is NULL");
    kiln_status st = train(l, p, r);
    kiln_comm *c = l && kiln_learner_world(l) > 1 ? kiln_learner_comm(l) : NULL;
    if (c) st = kiln_comm_agree(c, st); /* rank 0's writes, or a rank's late error, reach all */
    return st;
}

/* Everything before the fit, no collective in it: the callbacks, the folder (rank 0), the
 * schedule, the settings and, on resume, the checkpoint's header. */
static kiln_status prepare(kiln_learner *l, const kiln_train_params *p, kiln_train_result *r, bool rank0,
                           int64_t *epochs, char *ckpt, kiln_sched *sched, int64_t *nb)
{
    kiln_status st = check(l, p, epochs);
    if (st) return st;
    r->epochs = *epochs;
    int removed = 0;
    if ((st = kiln__path(ckpt, 4096, p->out, "checkpoint.safetensors"))) return st;
    if (p->resume && access(ckpt, R_OK) != 0)
        return kiln__err(KILN_STATUS_IO, "resume: no checkpoint %s to resume from", ckpt);
    /* a kill during a write leaves "<file>.tmp.<pid>": gone before this run writes */
    if (rank0 && ((st = kiln_mkdirs(p->out)) || (st = kiln_atomic_clean_stale(p->out, &removed)))) return st;
    r->n_stale_removed = removed;
    *nb = kiln_data_n_batches(kiln_learner_data(l), KILN_DATA_SPLIT_TRAIN);
    if (!phased(p->recipe.kind) && (st = kiln_recipe_sched(&p->recipe, *nb, sched))) return st;
    if (p->snapshots > 0 && (st = kiln_learner_add_snapshots(l, NULL))) return st;
    if (p->checkpoint_every > 0 && (st = kiln_learner_add_checkpointing(l, ckpt, p->checkpoint_every))) return st;
    kiln_callback cb = {.name = "train_stop", .begin_batch = stop_cb, .end_batch = stop_cb, .user = (void *)p->stop};
    if (p->stop && (st = kiln_learner_add_callback(l, &cb))) return st;
    if (p->settings && (st = set_settings(l, p))) return st;
    kiln_checkpoint_info info;
    if (p->resume && (st = kiln_checkpoint_read_info(ckpt, &info))) kiln__err_prefix(st, "resume");
    return st;
}

static kiln_status train(kiln_learner *l, const kiln_train_params *p, kiln_train_result *r)
{
    memset(r, 0, sizeof *r);
    int64_t epochs = 0, nb = 0;
    char ckpt[4096];
    kiln_sched sched;
    kiln_comm *comm = l && kiln_learner_world(l) > 1 ? kiln_learner_comm(l) : NULL;
    bool rank0 = !l || kiln_learner_rank(l) == 0;
    kiln_status st = prepare(l, p, r, rank0, &epochs, ckpt, &sched, &nb);
    if (comm) st = kiln_comm_agree(comm, st); /* every rank fits, or none */
    if (st) return st;
    double t0 = kiln__now();
    if (!st) {
        st = p->resume ? kiln_learner_resume(l, ckpt)
           : phased(p->recipe.kind) ? kiln_learner_fit_recipe(l, &p->recipe)
                                                     : kiln_learner_fit(l, epochs, &sched);
        if (st == KILN_STATUS_DIVERGED) divergence_note(p->out, ckpt);
    }
    if (p->stop) kiln_learner_remove_callback(l, "train_stop");
    kiln_fit_state *fs = kiln_learner_state(l);
    r->n_skipped = fs->n_skipped;
    r->n_valid_nonfinite = fs->n_valid_nonfinite;
    double stopped = p->stop && *p->stop;
    if (comm && kiln_comm_allreduce_sum_f64(comm, &stopped, 1) && !st) st = KILN_STATUS_IO; /* a SIGINT that reached one rank */
    if (st) return st;
    if (stopped > 0) {
        r->interrupted = true; /* the epoch-end checkpoint stands; nothing else is written */
        return KILN_STATUS_OK;
    }
    if ((st = collect(l, nb, kiln__now() - t0, r)) || (st = extras(l, p, r))) return st;
    if (rank0 && (st = outputs(l, p, r))) return st;
    kiln_clear_error();
    return KILN_STATUS_OK;
}
