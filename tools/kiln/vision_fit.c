/* kiln vision lr-find and kiln vision fit: open the data, build the model, make a Learner with
 * fastai's defaults, then run the LR range test, or train with the chosen schedule and write
 * the model, its description, the history, the final metrics (plain, TTA, snapshot ensemble)
 * and the plots. Every file is written atomically (temp file, fsync, rename). */
#include "vision_cli.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* "1,234,567" */
static const char *commas(int64_t v, char *buf, size_t n)
{
    char raw[32];
    snprintf(raw, sizeof raw, "%lld", (long long)v);
    size_t len = strlen(raw), j = 0;
    for (size_t i = 0; i < len && j + 2 < n; i++) {
        if (i && (len - i) % 3 == 0) buf[j++] = ',';
        buf[j++] = raw[i];
    }
    buf[j] = '\0';
    return buf;
}

static kiln_vision_norm parse_norm(const vopts *o, bool *ok)
{
    *ok = true;
    if (!strcmp(o->norm, "dataset")) return KILN_VISION_NORM_DATASET;
    if (!strcmp(o->norm, "imagenet")) return KILN_VISION_NORM_IMAGENET;
    if (!strcmp(o->norm, "none")) return KILN_VISION_NORM_NONE;
    *ok = false;
    return KILN_VISION_NORM_DATASET;
}

/* What lr-find and fit share: data, model, learner. Torn down by session_end. */
typedef struct session {
    kiln_augment_params aug;
    kiln_data *d;
    kiln_ctx *ctx;
    kiln_model *m;
    kiln_optim *opt;
    kiln_learner *l;
    char desc[96];
    kiln_vision_norm norm;
} session;

static void session_end(session *s)
{
    kiln_learner_free(s->l);
    kiln_optim_free(s->opt);
    kiln_model_free(s->m);
    kiln_data_free(s->d);
    kiln_ctx_free(s->ctx);
}

static int session_begin(vopts *o, const char *data, session *s)
{
    memset(s, 0, sizeof *s);
    bool ok;
    s->norm = parse_norm(o, &ok);
    if (!ok) return vc_fail(o, 2, "--norm: '%s' is not dataset, imagenet or none", o->norm);
    if (s->norm == KILN_VISION_NORM_IMAGENET && !strcmp(data, "fashion-mnist"))
        return vc_fail(o, 2, "--norm imagenet needs colour images (fashion-mnist is grey)");
    const char *archs[] = {"simple-cnn", "simple-resnet", "resnet18", "resnet34", "resnet50"};
    bool known = false;
    for (int i = 0; i < 5; i++) known |= !strcmp(o->arch, archs[i]);
    if (!known) return vc_fail(o, 2, "--arch: '%s' is not simple-cnn, simple-resnet, resnet18, resnet34 or resnet50", o->arch);
    s->aug = vc_augment_params(o);
    if (!(s->ctx = vc_ctx_new(o))) return 1;
    /* imagenet stats are 3 channels: ask the source for colour then */
    int nc = s->norm == KILN_VISION_NORM_IMAGENET ? 3 : 0;
    if (!(s->d = vc_open_data(o, data, nc, NULL, s->norm, o->no_augment ? NULL : &s->aug, o->bs, true))) return 1;
    kiln_vision_data *v = kiln_vision_data_of(s->d);
    if (kiln_data_n_batches(s->d, KILN_DATA_SPLIT_TRAIN) < 1)
        return vc_fail(o, 1, "%s: the train split has %lld images, fewer than one batch of %lld (lower --bs)", data,
                       (long long)kiln_data_n_items(s->d, KILN_DATA_SPLIT_TRAIN), (long long)o->bs);
    if (kiln_vision_data_n_classes(v) < 2)
        return vc_fail(o, 1, "%s: %d class(es); a classifier needs at least 2", data, kiln_vision_data_n_classes(v));
    if (!(s->m = vc_model_new(o, o->arch, kiln_vision_data_n_channels(v), kiln_vision_data_size(v),
                              kiln_vision_data_n_classes(v), s->ctx, s->desc, sizeof s->desc)))
        return 2;
    if (!(s->l = vc_learner_new(o, s->ctx, s->m, s->d, &s->opt))) return 1;
    if (!o->quiet) {
        char n[32];
        printf("model: %s, %s parameters\n", s->desc, commas(kiln_model_n_params(s->m, false), n, sizeof n));
        fflush(stdout);
    }
    return 0;
}

/* The --out folder, made if missing, without the temp files a killed kiln left there (a kill
 * during a write leaves "<file>.tmp.<pid>"); one line on stderr says how many went. */
static int prepare_out(vopts *o)
{
    int rc = vc_mkdirs(o, o->out), removed = 0;
    if (!rc && kiln_atomic_clean_stale(o->out, &removed)) rc = vc_kfail(o, NULL);
    if (!rc && removed && !o->quiet)
        fprintf(stderr, "%s: removed %d temp file(s) a killed run left in %s\n", o->cmd, removed, o->out);
    return rc;
}

/* ---- lr-find ------------------------------------------------------------------------------------- */

int vc_lr_find(vopts *o, const char *data)
{
    if (o->num_it < 2 || o->num_it > 100000) return vc_fail(o, 2, "--num-it must be in [2, 100000]");
    session s;
    int rc = prepare_out(o);
    if (!rc) rc = session_begin(o, data, &s);
    else memset(&s, 0, sizeof s);
    if (rc) {
        session_end(&s);
        return rc;
    }
    char png[4096], csv[4096];
    kiln_lr_find_params p = kiln_lr_find_default_params();
    p.num_it = o->num_it;
    p.csv_path = vc_path(csv, sizeof csv, o->out, "lr_find.csv");
    bool plots = kiln_plot_available();
    p.plot_path = plots ? vc_path(png, sizeof png, o->out, "lr_find.png") : NULL;
    kiln_lr_find_result r;
    kiln_status st = kiln_learner_lr_find(s.l, &p, &r);
    if (st && !r.lrs) {
        rc = vc_kfail(o, "lr_find");
    } else {
        if (st) rc = vc_kfail(o, "lr_find");
        if (o->quiet && !isnan(r.lr))
            printf("suggested lr (valley): %.1e   minimum/10: %.1e   steepest: %.1e\n", r.lr,
                   r.suggestions[KILN_LR_SUGGEST_MINIMUM], r.suggestions[KILN_LR_SUGGEST_STEEP]);
        if (!plots) fprintf(stderr, "%s: warning: no lr_find.png: this kiln was built without PLplot\n", o->cmd);
        if (!st) printf("wrote %s%s%s\n", plots ? png : "", plots ? ", " : "", csv);
        kiln_lr_find_result_free(&r);
    }
    session_end(&s);
    return rc;
}

/* ---- fit ----------------------------------------------------------------------------------------- */

/* The schedule over nb batches per epoch; *epochs is set to what it spans. 0 or 2. */
static int make_sched(vopts *o, int64_t nb, kiln_sched *s, int64_t *epochs)
{
    kiln_status st = KILN_STATUS_OK;
    if (o->cycle_len < 1 || o->cycle_len > 10000 || o->cycle_mult < 1 || o->cycle_mult > 100 || o->n_cycle < 1 ||
        o->n_cycle > 1000)
        return vc_fail(o, 2, "--n-cycle, --cycle-len and --cycle-mult must be >= 1");
    if (!(o->lr > 0)) return vc_fail(o, 2, "--lr must be > 0");
    *epochs = o->epochs;
    if (!strcmp(o->schedule, "one-cycle")) {
        kiln_sched_one_cycle_params p = kiln_sched_one_cycle_default_params(KILN_ONE_CYCLE_VARIANT_FASTAI);
        p.lr_max = o->lr, p.iters = o->epochs * nb;
        st = kiln_sched_one_cycle(s, &p);
    } else if (!strcmp(o->schedule, "const")) {
        kiln_sched_const_params p = kiln_sched_const_default_params();
        p.lr = o->lr, p.iters = o->epochs * nb;
        st = kiln_sched_const(s, &p);
    } else if (!strcmp(o->schedule, "sgdr")) {
        kiln_sched_sgdr_params p = kiln_sched_sgdr_default_params();
        p.lr = o->lr, p.iters_per_epoch = nb;
        p.n_cycle = (int)o->n_cycle, p.cycle_len = (int)o->cycle_len, p.cycle_mult = (int)o->cycle_mult;
        int64_t e = 0, len = o->cycle_len;
        for (int64_t k = 0; k < o->n_cycle && e <= 100000; k++, len *= o->cycle_mult) e += len;
        if (e > 100000) return vc_fail(o, 2, "sgdr: the cycles span more than 100000 epochs");
        if (o->given_epochs && o->epochs != e)
            return vc_fail(o, 2, "sgdr: --epochs %lld differs from the cycles' %lld epochs (leave --epochs out)",
                           (long long)o->epochs, (long long)e);
        *epochs = e;
        st = kiln_sched_sgdr(s, &p);
    } else if (!strcmp(o->schedule, "clr")) {
        int64_t n_cycle = o->given_n_cycle ? o->n_cycle : o->epochs / o->cycle_len;
        if (n_cycle < 1) return vc_fail(o, 2, "clr: --epochs %lld is shorter than one cycle of --cycle-len %lld",
                                        (long long)o->epochs, (long long)o->cycle_len);
        if (o->given_epochs && o->given_n_cycle && o->epochs != n_cycle * o->cycle_len)
            return vc_fail(o, 2, "clr: --epochs %lld differs from --n-cycle x --cycle-len = %lld", (long long)o->epochs,
                           (long long)(n_cycle * o->cycle_len));
        kiln_sched_clr_params p = kiln_sched_clr_default_params();
        p.max_lr = o->lr, p.base_lr = o->lr / 25;
        p.step_size_up = p.step_size_down = (double)(o->cycle_len * nb) / 2;
        p.iters = n_cycle * o->cycle_len * nb;
        *epochs = n_cycle * o->cycle_len;
        st = kiln_sched_clr(s, &p);
    } else {
        return vc_fail(o, 2, "--schedule: '%s' is not one-cycle, sgdr, clr or const", o->schedule);
    }
    if (*epochs < 1) return vc_fail(o, 2, "--epochs must be >= 1");
    if (st) return vc_fail(o, 2, "%s", kiln_last_error());
    return 0;
}

/* metrics.json: {"epochs", "train_loss", "valid_loss", <metric>: v, "time_s", "images_per_s",
 * "tta": {...}, "snapshot_ensemble": {...}} */
typedef struct fit_result {
    int64_t epochs;
    double train_loss, valid_loss, *metrics, seconds, img_s;
    bool tta;
    double tta_loss, *tta_metrics;
    int n_snap;
    kiln_snapshot_eval ev;
} fit_result;

static void add_num(cJSON *j, const char *k, double v)
{
    if (isfinite(v)) cJSON_AddNumberToObject(j, k, v);
    else cJSON_AddNullToObject(j, k);
}

static int write_metrics(vopts *o, const char *path, kiln_learner *l, const fit_result *r)
{
    int nm = kiln_learner_n_metrics(l);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "epochs", (double)r->epochs);
    add_num(j, "train_loss", r->train_loss);
    add_num(j, "valid_loss", r->valid_loss);
    for (int k = 0; k < nm; k++) add_num(j, kiln_learner_metric_name(l, k), r->metrics[k]);
    add_num(j, "time_s", r->seconds);
    add_num(j, "images_per_s", r->img_s);
    if (r->tta) {
        cJSON *t = cJSON_AddObjectToObject(j, "tta");
        cJSON_AddNumberToObject(t, "n", (double)o->tta_n);
        cJSON_AddNumberToObject(t, "beta", o->tta_beta);
        cJSON_AddBoolToObject(t, "use_max", o->tta_max);
        add_num(t, "valid_loss", r->tta_loss);
        for (int k = 0; k < nm; k++) add_num(t, kiln_learner_metric_name(l, k), r->tta_metrics[k]);
    }
    if (r->n_snap > 0) {
        cJSON *t = cJSON_AddObjectToObject(j, "snapshot_ensemble");
        cJSON_AddNumberToObject(t, "n", r->ev.n);
        add_num(t, "valid_loss", r->ev.ens_loss);
        for (int k = 0; k < nm; k++) add_num(t, kiln_learner_metric_name(l, k), r->ev.ens_metrics[k]);
        cJSON *arr = cJSON_AddArrayToObject(t, "snapshots");
        for (int i = 0; i < r->ev.n; i++) {
            cJSON *e = cJSON_CreateObject();
            int64_t cycle = 0, epoch = 0;
            kiln_snapshot_info(l, r->ev.first + i, &cycle, NULL, &epoch, NULL);
            cJSON_AddNumberToObject(e, "cycle", (double)cycle);
            cJSON_AddNumberToObject(e, "epoch", (double)epoch);
            add_num(e, "valid_loss", r->ev.losses[i]);
            for (int k = 0; k < nm; k++) add_num(e, kiln_learner_metric_name(l, k), r->ev.metrics[i * nm + k]);
            cJSON_AddItemToArray(arr, e);
        }
    }
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) return vc_fail(o, 1, "%s: out of memory", path);
    char *full = malloc(strlen(text) + 2);
    int rc = full ? (sprintf(full, "%s\n", text), vc_write_atomic(o, path, full)) : vc_fail(o, 1, "out of memory");
    free(full);
    free(text);
    return rc;
}

/* After training: snapshot ensemble and TTA, printed beside the plain metric. */
static int evaluate_extras(vopts *o, session *s, fit_result *r)
{
    const char *mname = kiln_learner_metric_name(s->l, 0);
    if ((o->snapshots > 0 || o->tta) && kiln_data_n_items(s->d, KILN_DATA_SPLIT_VALID) < 1) {
        fprintf(stderr, "%s: warning: no validation images: no %s\n", o->cmd,
                o->tta && o->snapshots > 0 ? "TTA or snapshot ensemble" : o->tta ? "TTA" : "snapshot ensemble");
        return 0;
    }
    if (o->snapshots > 0) {
        if (kiln_snapshot_count(s->l) == 0)
            return vc_fail(o, 1, "--snapshots: no snapshot was taken (the schedule had no cycle end)");
        if (kiln_snapshot_evaluate(s->l, KILN_DATA_SPLIT_VALID, (int)o->snapshots, &r->ev)) return vc_kfail(o, "snapshots");
        r->n_snap = r->ev.n;
        if (!o->quiet) kiln_snapshot_eval_print(s->l, &r->ev, stdout);
        if (o->snapshots > kiln_snapshot_count(s->l))
            fprintf(stderr, "%s: warning: --snapshots %lld: only %d cycle(s) ended; the ensemble uses %d\n", o->cmd,
                    (long long)o->snapshots, kiln_snapshot_count(s->l), r->ev.n);
        printf("snapshot ensemble (last %d cycles): %s %.4f (final weights %.4f)\n", r->ev.n, mname,
               r->ev.ens_metrics[0], r->metrics[0]);
    }
    if (o->tta) {
        if (o->no_augment)
            fprintf(stderr, "%s: warning: --tta with --no-augment: the augmented passes equal the plain one\n", o->cmd);
        kiln_preds p;
        if (kiln_learner_tta(s->l, KILN_DATA_SPLIT_VALID, (int)o->tta_n, o->tta_beta, o->tta_max, &p))
            return vc_kfail(o, "tta");
        r->tta_metrics = calloc((size_t)kiln_learner_n_metrics(s->l) + 1, sizeof(double));
        kiln_status st = r->tta_metrics ? kiln_learner_score(s->l, &p, &r->tta_loss, r->tta_metrics) : KILN_STATUS_NOMEM;
        kiln_preds_free(&p);
        if (st) return vc_kfail(o, "tta");
        r->tta = true;
        printf("tta (%lld passes, beta %g%s): %s %.4f (plain %.4f)   valid_loss %.4f (plain %.4f)\n",
               (long long)o->tta_n, o->tta_beta, o->tta_max ? ", max" : "", mname, r->tta_metrics[0], r->metrics[0],
               r->tta_loss, r->valid_loss);
    }
    return 0;
}

/* Writes every file; "wrote ..." lists them. */
static int write_outputs(vopts *o, const char *data, session *s, fit_result *r)
{
    char p_model[4096], p_json[4096], p_hist[4096], p_metrics[4096], p_loss[4096], p_lr[4096];
    vc_path(p_model, sizeof p_model, o->out, "model.safetensors");
    vc_path(p_json, sizeof p_json, o->out, "model.json");
    vc_path(p_hist, sizeof p_hist, o->out, "history.csv");
    vc_path(p_metrics, sizeof p_metrics, o->out, "metrics.json");
    vc_path(p_loss, sizeof p_loss, o->out, "losses.png");
    vc_path(p_lr, sizeof p_lr, o->out, "lr.png");
    const char *meta[] = {"format", "kiln-vision-model", "arch", o->arch, NULL};
    if (kiln_model_save(s->m, p_model, meta)) return vc_kfail(o, NULL);
    kiln_vision_model_info mi = {.norm = s->norm, .augment = !o->no_augment, .aug = s->aug,
                                 .seed = (uint64_t)o->seed, .valid_pct = o->valid_pct,
                                 .n_params = kiln_model_n_params(s->m, false), .data = strdup(data)};
    snprintf(mi.arch, sizeof mi.arch, "%s", o->arch);
    if (!mi.data) return vc_fail(o, 1, "out of memory");
    kiln_status st = kiln_vision_model_info_from_data(s->d, &mi);
    if (!st) st = kiln_vision_model_info_write(p_json, &mi);
    kiln_vision_model_info_free(&mi);
    if (st) return vc_kfail(o, NULL);
    int rc;
    const kiln_recorder *rec = kiln_learner_recorder(s->l);
    if (kiln_recorder_write_csv(rec, p_hist)) return vc_kfail(o, NULL);
    if ((rc = write_metrics(o, p_metrics, s->l, r))) return rc;
    bool plots = kiln_plot_available();
    if (plots && (kiln_recorder_plot_losses(rec, p_loss) || kiln_recorder_plot_lr(rec, p_lr))) return vc_kfail(o, NULL);
    if (!plots) fprintf(stderr, "%s: warning: no losses.png, lr.png: this kiln was built without PLplot\n", o->cmd);
    printf("wrote %s, model.json, history.csv, metrics.json%s\n", p_model, plots ? ", losses.png, lr.png" : "");
    return 0;
}

/* Ctrl-C: the handler only raises a flag; a callback sees it at the next batch boundary and
 * stops the fit, so the last epoch-end checkpoint stands. */
static volatile sig_atomic_t g_sigint;

static void on_sigint(int sig)
{
    (void)sig;
    g_sigint = 1;
}

static kiln_status interrupt_cb(kiln_learner *l, void *user)
{
    if (g_sigint) {
        kiln_learner_state(l)->stop_training = true;
        *(bool *)user = true;
    }
    return KILN_STATUS_OK;
}

/* ---- the run's settings -------------------------------------------------------------------------- */

typedef struct settings {
    const char *kv[2 * 32 + 1]; /* key, value, ..., NULL */
    char val[32][48];
    int n;
} settings;

static void put_str(settings *s, const char *key, const char *v)
{
    if (s->n >= 32) return;
    s->kv[2 * s->n] = key, s->kv[2 * s->n + 1] = v, s->kv[2 * s->n + 2] = NULL;
    s->n++;
}

static void put_num(settings *s, const char *key, double v)
{
    if (s->n >= 32) return;
    char *b = s->val[s->n];
    snprintf(b, sizeof s->val[0], "%.15g", v); /* the shortest text that reads back as v */
    if (strtod(b, NULL) != v) snprintf(b, sizeof s->val[0], "%.17g", v);
    put_str(s, key, b);
}

/* The flags that shape training, recorded in every checkpoint of the run: --resume refuses
 * one whose values differ and names each (kiln_learner_resume). Not recorded: threads,
 * workers, progress, evaluation (--tta*, --snapshots) and --on-nan, which a resume may change. */
static int set_run(vopts *o, const char *data, kiln_learner *l, int64_t epochs)
{
    settings s = {.n = 0};
    s.kv[0] = NULL;
    put_str(&s, "DATA", data);
    put_str(&s, "--arch", o->arch);
    put_num(&s, "--size", (double)o->size);
    put_num(&s, "--bs", (double)o->bs);
    put_num(&s, "--epochs", (double)epochs);
    put_num(&s, "--lr", o->lr);
    put_num(&s, "--wd", o->wd);
    put_str(&s, "--schedule", o->schedule);
    if (!strcmp(o->schedule, "sgdr") || !strcmp(o->schedule, "clr")) put_num(&s, "--cycle-len", (double)o->cycle_len);
    if (!strcmp(o->schedule, "sgdr")) {
        put_num(&s, "--n-cycle", (double)o->n_cycle);
        put_num(&s, "--cycle-mult", (double)o->cycle_mult);
    }
    put_str(&s, "--norm", o->norm);
    put_num(&s, "--valid-pct", o->valid_pct);
    put_str(&s, "--skip-bad", o->skip_bad ? "yes" : "no");
    put_str(&s, "--layout", o->layout);
    put_num(&s, "--seed", (double)o->seed);
    put_str(&s, "--no-augment", o->no_augment ? "yes" : "no");
    if (!o->no_augment) {
        put_num(&s, "--max-rotate", o->max_rotate);
        put_num(&s, "--max-zoom", o->max_zoom);
        put_num(&s, "--max-warp", o->max_warp);
        put_num(&s, "--max-lighting", o->max_lighting);
        put_num(&s, "--p-affine", o->p_affine);
        put_num(&s, "--p-lighting", o->p_lighting);
        put_str(&s, "--no-flip", o->no_flip ? "yes" : "no");
    }
    return kiln_learner_set_run_settings(l, s.kv) ? vc_kfail(o, "fit") : 0;
}

/* After a divergence: what was kept, and where the last good state is. */
static void report_divergence(vopts *o, const char *p_ckpt)
{
    kiln_checkpoint_info info;
    if (kiln_checkpoint_read_info(p_ckpt, &info)) {
        fprintf(stderr, "%s: nothing was written over the model files in %s\n", o->cmd, o->out);
        return;
    }
    fprintf(stderr, "%s: nothing was written over the model files in %s; the last good state is %s (%s%lld of %lld "
                    "epochs done)\n%s: try a lower --lr%s\n", o->cmd, o->out, p_ckpt, info.epoch ? "" : "the start: ",
            (long long)info.epoch, (long long)info.n_epochs, o->cmd, o->skip_nan ? "" : ", or --on-nan skip");
}

int vc_fit(vopts *o, const char *data)
{
    if (o->snapshots < 0 || o->snapshots > 1000) return vc_fail(o, 2, "--snapshots must be in [0, 1000]");
    if (o->epochs < 1 || o->epochs > 100000) return vc_fail(o, 2, "--epochs must be in [1, 100000]");
    if (!(o->wd >= 0)) return vc_fail(o, 2, "--wd must be >= 0");
    const char *scheds[] = {"one-cycle", "sgdr", "clr", "const"};
    bool known = false;
    for (int i = 0; i < 4; i++) known |= !strcmp(o->schedule, scheds[i]);
    if (!known) return vc_fail(o, 2, "--schedule: '%s' is not one-cycle, sgdr, clr or const", o->schedule);
    char p_ckpt[4096];
    vc_path(p_ckpt, sizeof p_ckpt, o->out, "checkpoint.safetensors");
    if (o->resume && access(p_ckpt, R_OK) != 0)
        return vc_fail(o, 1, "--resume: no checkpoint %s to resume from", p_ckpt);
    session s;
    int rc = prepare_out(o);
    if (!rc) rc = session_begin(o, data, &s);
    else memset(&s, 0, sizeof s);
    kiln_vision_model_info probe = {0}; /* what model.json cannot hold (a non-UTF-8 class name) fails now */
    if (!rc && kiln_vision_model_info_from_data(s.d, &probe)) rc = vc_kfail(o, NULL);
    kiln_vision_model_info_free(&probe);
    fit_result r = {0};
    kiln_sched sched;
    bool interrupted = false, handler_set = false;
    struct sigaction sa_old;
    int64_t nb = s.d ? kiln_data_n_batches(s.d, KILN_DATA_SPLIT_TRAIN) : 0;
    if (!rc) rc = make_sched(o, nb, &sched, &r.epochs);
    if (!rc && o->snapshots > 0 && kiln_learner_add_snapshots(s.l, NULL)) rc = vc_kfail(o, "snapshots");
    if (!rc && kiln_learner_add_checkpointing(s.l, p_ckpt, 1)) rc = vc_kfail(o, "checkpoint");
    kiln_callback cb = {.name = "sigint", .begin_batch = interrupt_cb, .end_batch = interrupt_cb,
                        .user = &interrupted};
    if (!rc && kiln_learner_add_callback(s.l, &cb)) rc = vc_kfail(o, "fit");
    if (!rc) rc = set_run(o, data, s.l, r.epochs);
    if (!rc && o->resume) {
        kiln_checkpoint_info info;
        if (kiln_checkpoint_read_info(p_ckpt, &info)) rc = vc_kfail(o, "--resume");
    }
    if (rc) goto done;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    g_sigint = 0;
    handler_set = sigaction(SIGINT, &sa, &sa_old) == 0;
    fflush(stdout);
    double t0 = now_s();
    kiln_status fst = o->resume ? kiln_learner_resume(s.l, p_ckpt) : kiln_learner_fit(s.l, r.epochs, &sched);
    if (handler_set) sigaction(SIGINT, &sa_old, NULL);
    if (fst) {
        rc = vc_kfail(o, fst == KILN_STATUS_DIVERGED ? NULL : o->resume ? "--resume" : "fit");
        if (fst == KILN_STATUS_DIVERGED) report_divergence(o, p_ckpt);
        goto done;
    }
    int64_t skipped = kiln_learner_state(s.l)->n_skipped;
    if (skipped > 0)
        fprintf(stderr, "%s: warning: %lld batch(es) skipped for a non-finite loss or gradient (--on-nan skip)\n",
                o->cmd, (long long)skipped);
    int64_t bad_valid = kiln_learner_state(s.l)->n_valid_nonfinite;
    if (bad_valid > 0)
        fprintf(stderr, "%s: warning: the validation loss or a metric was non-finite in %lld epoch(s) (--on-nan skip)\n",
                o->cmd, (long long)bad_valid);
    if (interrupted) {
        fflush(stdout);
        /* the checkpoint is this run's: the callback wrote it at the fit's start */
        const char *ck = kiln_checkpointing_last_path(s.l);
        if (ck && access(ck, R_OK) == 0)
            fprintf(stderr, "%s: interrupted: resume with kiln vision fit %s --out %s [the same flags] --resume\n",
                    o->cmd, data, o->out);
        else
            fprintf(stderr, "%s: interrupted: no checkpoint of this run to resume from\n", o->cmd);
        rc = 130;
        goto done;
    }
    r.seconds = now_s() - t0;
    const kiln_recorder *rec = kiln_learner_recorder(s.l);
    int nm = kiln_learner_n_metrics(s.l);
    r.metrics = calloc((size_t)nm + 1, sizeof(double));
    kiln_epoch_record er;
    if (!r.metrics || kiln_recorder_epoch(rec, kiln_recorder_n_epochs(rec) - 1, &er)) {
        rc = vc_kfail(o, "fit");
        goto done;
    }
    r.train_loss = er.train_loss, r.valid_loss = er.valid_loss;
    memcpy(r.metrics, er.metrics, (size_t)nm * sizeof(double));
    double train_s = 0;
    for (int64_t e = 0; e < kiln_recorder_n_epochs(rec); e++)
        if (!kiln_recorder_epoch(rec, e, &er)) train_s += er.seconds;
    r.img_s = (double)(nb * o->bs * r.epochs) / (train_s > 0 ? train_s : r.seconds);
    if (o->quiet) {
        char t[32];
        printf("%lld epochs in %s: train_loss %.4f  valid_loss %.4f  %s %.4f\n", (long long)r.epochs,
               kiln_format_time(r.seconds, t, sizeof t), r.train_loss, r.valid_loss, kiln_learner_metric_name(s.l, 0),
               r.metrics[0]);
    }
    if ((rc = evaluate_extras(o, &s, &r))) goto done;
    rc = write_outputs(o, data, &s, &r);
done:
    free(r.metrics);
    free(r.tta_metrics);
    kiln_snapshot_eval_free(&r.ev);
    session_end(&s);
    return rc;
}
