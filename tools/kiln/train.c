/* The CLI's shared training driver (train.h): common flags, their checks, lr-find and fit on
 * a task's learner through the library (kiln_learner_lr_find, kiln_learner_train), SIGINT,
 * and what the user reads (the suggestions, warnings, the TTA / snapshot lines, the files). */
#include "train.h"

#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- flags ------------------------------------------------------------------------------- */

#define O(f) offsetof(train_opts, f)
#define K(k) (1u << (k))
static const cli_flag g_common[] = {
    {"--out", "DIR", FLAG_STR, O(out), K(TRAIN_DATA), "output folder, created if missing (show-batch: the PNG file)",
     NULL, NULL},
    {"--bs", "B", FLAG_INT, O(bs), K(TRAIN_LR_FIND) | K(TRAIN_FIT) | K(TRAIN_EVAL), "batch size", NULL, NULL},
    {"--epochs", "E", FLAG_INT, O(epochs), K(TRAIN_FIT),
     "epochs (sgdr: the cycles' sum; clr: n-cycle x cycle-len; fine-tune, ulmfit: after the frozen ones)", NULL, NULL},
    {"--lr", "X", FLAG_DOUBLE, O(lr), K(TRAIN_FIT), "peak learning rate (fine-tune: base_lr, 2e-3 unless given)", NULL,
     NULL},
    {"--schedule", "NAME", FLAG_STR, O(schedule), K(TRAIN_FIT),
     "one-cycle (fastai v2) | sgdr | clr (triangular, lr/25 .. lr) | const | fine-tune (fastai: frozen body, then "
     "all with discriminative lrs) | ulmfit (gradual unfreezing: the last group, the last two, three, then all, at "
     "lr, lr/2, lr/4, lr/20, each spread over the groups by --lr-mult, momentum 0.8-0.7)", NULL, NULL},
    {"--n-cycle", "N", FLAG_INT, O(n_cycle), K(TRAIN_FIT), "sgdr, clr: number of cycles (clr: epochs/cycle-len unless given)",
     NULL, NULL},
    {"--cycle-len", "N", FLAG_INT, O(cycle_len), K(TRAIN_FIT), "sgdr, clr: epochs in the first cycle", NULL, NULL},
    {"--cycle-mult", "N", FLAG_INT, O(cycle_mult), K(TRAIN_FIT), "sgdr: cycle length multiplier", NULL, NULL},
    {"--freeze-epochs", "N", FLAG_INT, O(freeze_epochs), K(TRAIN_FIT),
     "fine-tune: epochs with the body frozen; ulmfit: epochs of each partly frozen phase", NULL, NULL},
    {"--lr-mult", "M", FLAG_DOUBLE, O(lr_mult), K(TRAIN_FIT),
     "fine-tune: the unfrozen phase trains the first layer group at lr/2/M up to the head at lr/2 (fastai's "
     "slice(lr/2/M, lr/2)); ulmfit: every phase spreads its lr so (default 2.6^4 = 45.7)", NULL, NULL},
    {"--snapshots", "M", FLAG_INT, O(snapshots), K(TRAIN_FIT),
     "keep the weights at each cycle end; report the ensemble of the last M (0: off)", NULL, NULL},
    {"--resume", NULL, FLAG_BOOL, O(resume), K(TRAIN_FIT),
     "go on from DIR/checkpoint.safetensors (saved at the start and every epoch end) with the same flags "
     "(a flag that shapes training and differs is refused by name)", NULL, NULL},
    {"--on-nan", "POLICY", FLAG_STR, O(on_nan), K(TRAIN_FIT),
     "a NaN/infinite loss or gradient: stop (exit 1, the last good checkpoint and model files kept) | "
     "skip (skip that batch; stop after 10 in a row)", NULL, NULL},
    {"--tta", NULL, FLAG_BOOL, O(tta), K(TRAIN_FIT) | K(TRAIN_EVAL),
     "test-time augmentation: n augmented passes mixed with the plain one (fastai v2)", NULL, NULL},
    {"--tta-n", "N", FLAG_INT, O(tta_n), K(TRAIN_FIT) | K(TRAIN_EVAL), "TTA passes", NULL, NULL},
    {"--tta-beta", "F", FLAG_DOUBLE, O(tta_beta), K(TRAIN_FIT) | K(TRAIN_EVAL), "TTA weight of the plain pass", NULL,
     NULL},
    {"--tta-max", NULL, FLAG_BOOL, O(tta_max), K(TRAIN_FIT) | K(TRAIN_EVAL),
     "TTA: elementwise max of the passes instead of their mean", NULL, NULL},
    {"--wd", "W", FLAG_DOUBLE, O(wd), K(TRAIN_LR_FIND) | K(TRAIN_FIT),
     "AdamW weight decay (none on BatchNorm and biases)", NULL, NULL},
    {"--num-it", "N", FLAG_INT, O(num_it), K(TRAIN_LR_FIND), "iterations of the range test", NULL, NULL},
    {"--sync-bn", NULL, FLAG_BOOL, O(sync_bn), K(TRAIN_LR_FIND) | K(TRAIN_FIT),
     "data-parallel (mpiexec -np N): BatchNorm statistics over every rank's batch together, --bs items "
     "(SyncBatchNorm), not each rank's --bs/N; a no-op in one process", NULL, NULL},
    {"--seed", "N", FLAG_INT, O(seed), K(TRAIN_ALL), "seed of weights, shuffling and augmentation", NULL, NULL},
    {"--threads", "T", FLAG_INT, O(threads), K(TRAIN_ALL), "compute threads (0: OMP_NUM_THREADS or all cores)", NULL,
     NULL},
    {"--bucket-kb", "K", FLAG_INT, O(bucket_kb), K(TRAIN_LR_FIND) | K(TRAIN_FIT),
     "data-parallel (mpiexec -np N): gradients are averaged over ranks in buckets of at most K KiB", NULL, NULL},
    {"--no-overlap", NULL, FLAG_BOOL, O(no_overlap), K(TRAIN_LR_FIND) | K(TRAIN_FIT),
     "data-parallel: start the bucket sums after backward instead of during it (DDP's overlap)", NULL, NULL},
    {"--zero", NULL, FLAG_BOOL, O(zero), K(TRAIN_LR_FIND) | K(TRAIN_FIT),
     "data-parallel: shard the optimizer state over the ranks (ZeRO-1)", NULL, NULL},
    {"--progress", "NAME", FLAG_STR, O(progress), K(TRAIN_LR_FIND) | K(TRAIN_FIT),
     "auto (a bar on a terminal, plain lines otherwise) | bar | plain | quiet", NULL, NULL},
    {"--quiet", NULL, FLAG_BOOL, O(quiet), K(TRAIN_ALL), "print only the final summary", NULL, NULL},
    {"--help", NULL, FLAG_BOOL, O(help), K(TRAIN_ALL), "print this help and exit", NULL, NULL},
};
#define N_COMMON ((int)(sizeof g_common / sizeof g_common[0]))
_Static_assert(N_COMMON <= TRAIN_MAX_FLAGS, "raise TRAIN_MAX_FLAGS");

train_opts train_defaults(void)
{
    kiln_recipe oc = kiln_recipe_make(KILN_RECIPE_ONE_CYCLE), sg = kiln_recipe_make(KILN_RECIPE_SGDR);
    kiln_predict_params pp = kiln_predict_default_params();
    return (train_opts){.schedule = "one-cycle", .progress = "auto", .on_nan = "stop", .bs = 128, .epochs = oc.epochs,
                        .n_cycle = sg.n_cycle, .cycle_len = oc.cycle_len, .cycle_mult = oc.cycle_mult,
                        .freeze_epochs = kiln_recipe_make(KILN_RECIPE_FINE_TUNE).freeze_epochs, .seed = 42,
                        .lr_mult = kiln_recipe_make(KILN_RECIPE_FINE_TUNE).lr_mult,
                        .num_it = kiln_lr_find_default_params().num_it, .tta_n = pp.tta_n, .lr = oc.lr,
                        .wd = kiln_vision_learner_default_params().wd, .tta_beta = pp.tta_beta,
                        .bucket_kb = (int64_t)(KILN_LEARNER_DIST_BUCKET_BYTES >> 10)};
}

int train_flags(cli_flag *dst, size_t base, const unsigned map[TRAIN_N_KINDS])
{
    for (int i = 0; i < N_COMMON; i++) {
        dst[i] = g_common[i];
        dst[i].off += base;
        dst[i].mask = 0;
        for (int k = 0; k < TRAIN_N_KINDS; k++)
            if (g_common[i].mask & K(k)) dst[i].mask |= map[k];
    }
    return N_COMMON;
}

void train_given(train_opts *t, const cli_flag *flags, int n_flags, const bool *given)
{
    t->given_epochs = given[flags_index(flags, n_flags, "--epochs")];
    t->given_n_cycle = given[flags_index(flags, n_flags, "--n-cycle")];
    t->given_lr = given[flags_index(flags, n_flags, "--lr")];
    t->given_schedule = given[flags_index(flags, n_flags, "--schedule")];
    t->given_lr_mult = given[flags_index(flags, n_flags, "--lr-mult")];
}

const char *train_check(const train_opts *t)
{
    return t->bs < 1 || t->bs > 65536 ? "--bs must be in [1, 65536]"
         : t->threads < 0 || t->threads > 1024 ? "--threads must be in [0, 1024]"
         : t->bucket_kb < 1 || t->bucket_kb > (1 << 20) ? "--bucket-kb must be in [1, 1048576]"
         : t->tta_n < 1 || t->tta_n > 64 ? "--tta-n must be in [1, 64]"
         : !(t->tta_beta >= 0 && t->tta_beta <= 1) ? "--tta-beta must be in [0, 1]"
         : t->seed < 0 || t->seed > ((int64_t)1 << 53) ? "--seed must be in [0, 2^53]"
         : t->snapshots < 0 || t->snapshots > 1000 ? "--snapshots must be in [0, 1000]"
         : t->epochs < 1 || t->epochs > 100000 ? "--epochs must be in [1, 100000]"
         : t->num_it < 2 || t->num_it > 100000 ? "--num-it must be in [2, 100000]"
         : !(t->wd >= 0) ? "--wd must be >= 0"
         : !(t->lr > 0) ? "--lr must be > 0"
         : !(t->lr_mult > 0) ? "--lr-mult must be > 0"
         : t->freeze_epochs < 0 || t->freeze_epochs > 100000 ? "--freeze-epochs must be in [0, 100000]"
         : strcmp(t->progress, "auto") && strcmp(t->progress, "bar") && strcmp(t->progress, "plain") &&
                   strcmp(t->progress, "quiet")
             ? "--progress must be auto, bar, plain or quiet"
         : strcmp(t->on_nan, "stop") && strcmp(t->on_nan, "skip") ? "--on-nan must be stop or skip" : NULL;
}

/* ---- messages, context, learner --------------------------------------------------------------- */

int cli_fail(const char *cmd, int rc, const char *fmt, ...)
{
    if (train_rank() != 0) return rc; /* N ranks: the errors are agreed, rank 0 says it once */
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    fprintf(stderr, "%s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return rc;
}

const char *cli_path(char *buf, size_t n, const char *dir, const char *name)
{
    size_t dl = strlen(dir);
    snprintf(buf, n, "%s%s%s", dir, dl && dir[dl - 1] == '/' ? "" : "/", name);
    return buf;
}

/* ---- data-parallel (issue 13) ------------------------------------------------------------------ */

static kiln_comm *g_comm;

static void comm_free(void) { kiln_comm_free(g_comm); }

kiln_comm *train_comm(void)
{
    if (g_comm) return g_comm;
    g_comm = kiln_comm_world(); /* MPI when started by mpirun / mpiexec, else one process */
    if (!g_comm) return NULL;
    atexit(comm_free);
    if (kiln_comm_rank(g_comm) != 0 && !freopen("/dev/null", "w", stdout)) { /* rank 0 prints */
    }
    return g_comm;
}

int train_rank(void) { return g_comm ? kiln_comm_rank(g_comm) : 0; }
int train_world(void) { return g_comm ? kiln_comm_size(g_comm) : 1; }
int64_t train_rank_bs(const train_opts *t) { return t->bs / train_world(); }

/* --zero: rank 0's optimizer state against the whole (f32 buffers; the step counts are whole)
 * and its time in the parameter all-gathers. */
static void print_zero(kiln_learner *l, int64_t steps)
{
    kiln_optim *opt = kiln_learner_optim(l);
    size_t lo, hi, bufs = 0;
    if (!opt || !kiln_optim_shard(opt, &lo, &hi)) return;
    for (size_t i = 0; i < kiln_optim_state_count(opt); i++) {
        kiln_optim_state e;
        bufs += !kiln_optim_state_at(opt, i, &e) && e.dtype == KILN_DTYPE_F32;
    }
    printf("ZeRO-1: optimizer state %.1f MB on rank 0 (%zu buffer%s of %zu floats; %.1f MB without --zero); "
           "%.3f ms a step in the parameter all-gather (part of the above)\n",
           4e-6 * (double)(bufs * (hi - lo)), bufs, bufs == 1 ? "" : "s", hi - lo,
           4e-6 * (double)(bufs * kiln_optim_numel(opt)),
           steps ? 1e3 * kiln_learner_dist_zero_seconds(l) / (double)steps : 0.0);
}

int train_set_comm(const train_opts *t, kiln_learner *l)
{
    if (kiln_learner_set_comm(l, train_comm()) ||
        kiln_learner_set_dist_buckets(l, (size_t)t->bucket_kb << 10, !t->no_overlap) ||
        kiln_learner_set_dist_zero(l, t->zero))
        return cli_kfail(t->cmd, NULL);
    if (t->sync_bn && kiln_model_sync_batchnorm(kiln_learner_model(l), train_comm()))
        return cli_kfail(t->cmd, "--sync-bn");
    return 0;
}

int cli_kfail(const char *cmd, const char *what)
{
    return cli_fail(cmd, 1, "%s%s%s", what ? what : "", what ? ": " : "", kiln_last_error());
}

kiln_ctx *train_ctx_new(const train_opts *t)
{
    kiln_ctx_params cp = kiln_ctx_default_params();
    cp.n_threads = (int)t->threads;
    cp.seed = (uint64_t)t->seed;
    if (!train_comm()) {
        cli_kfail(t->cmd, "MPI");
        return NULL;
    }
    if (t->bs % train_world() != 0) { /* the same global batch whatever N: B / N per rank */
        cli_fail(t->cmd, 2, "--bs %lld is not divisible by the %d ranks (each rank takes --bs / ranks)",
                 (long long)t->bs, train_world());
        return NULL;
    }
    kiln_ctx *ctx = kiln_ctx_new(&cp);
    if (!ctx) cli_kfail(t->cmd, "context");
    return ctx;
}

kiln_learner_params train_learner_params(const train_opts *t)
{
    kiln_learner_params lp = kiln_learner_default_params();
    lp.seed = (uint64_t)t->seed;
    lp.progress = t->quiet || !strcmp(t->progress, "quiet") ? KILN_PROGRESS_STYLE_QUIET
                : !strcmp(t->progress, "bar")                 ? KILN_PROGRESS_STYLE_BAR
                : !strcmp(t->progress, "plain")               ? KILN_PROGRESS_STYLE_LINES
                                                              : KILN_PROGRESS_STYLE_AUTO;
    lp.on_nan = !strcmp(t->on_nan, "skip") ? KILN_NAN_POLICY_SKIP : KILN_NAN_POLICY_STOP;
    return lp;
}

int train_recipe(const train_opts *t, kiln_recipe *r)
{
    kiln_recipe_kind kind;
    if (kiln_recipe_parse(t->schedule, &kind)) return cli_fail(t->cmd, 2, "--%s", kiln_last_error());
    *r = kiln_recipe_make(kind);
    if (kind != KILN_RECIPE_FINE_TUNE || t->given_lr) r->lr = t->lr; /* fine-tune's base_lr: 2e-3 */
    r->epochs = t->epochs;
    r->cycle_len = t->cycle_len, r->cycle_mult = t->cycle_mult, r->freeze_epochs = t->freeze_epochs;
    r->lr_mult = kind == KILN_RECIPE_ULMFIT && !t->given_lr_mult ? r->lr_mult : t->lr_mult; /* ulmfit: 2.6^4 */
    if (kind == KILN_RECIPE_SGDR) {
        r->n_cycle = t->n_cycle;
        if (!t->given_epochs) r->epochs = 0; /* the cycles' sum */
    }
    if (kind == KILN_RECIPE_CLR) {
        r->n_cycle = t->given_n_cycle ? t->n_cycle : 0;
        if (t->given_n_cycle && !t->given_epochs) r->epochs = 0; /* n_cycle x cycle_len */
    }
    int64_t e;
    if (kiln_recipe_epochs(r, &e)) return cli_fail(t->cmd, 2, "%s", kiln_last_error());
    return 0;
}

/* ---- settings -------------------------------------------------------------------------------- */

void train_settings_str(train_settings *s, const char *key, const char *v)
{
    if (s->n >= 48) return;
    s->kv[2 * s->n] = key, s->kv[2 * s->n + 1] = v, s->kv[2 * s->n + 2] = NULL;
    s->n++;
}

void train_settings_num(train_settings *s, const char *key, double v)
{
    if (s->n >= 48) return;
    char *b = s->val[s->n];
    snprintf(b, sizeof s->val[0], "%.15g", v); /* the shortest text that reads back as v */
    if (strtod(b, NULL) != v) snprintf(b, sizeof s->val[0], "%.17g", v);
    train_settings_str(s, key, b);
}

/* The common flags that shape training, after the task's. Not recorded: threads, workers,
 * progress, evaluation (--tta*, --snapshots) and --on-nan, which a resume may change. */
static void common_settings(const train_opts *t, const kiln_recipe *r, train_settings *s)
{
    int64_t epochs = 0;
    kiln_recipe_epochs(r, &epochs);
    train_settings_num(s, "--bs", (double)t->bs);
    train_settings_num(s, "--epochs", (double)epochs);
    train_settings_num(s, "--lr", r->lr);
    train_settings_num(s, "--wd", t->wd);
    train_settings_str(s, "--schedule", t->schedule);
    if (r->kind == KILN_RECIPE_SGDR || r->kind == KILN_RECIPE_CLR) train_settings_num(s, "--cycle-len", (double)t->cycle_len);
    if (r->kind == KILN_RECIPE_SGDR) {
        train_settings_num(s, "--n-cycle", (double)t->n_cycle);
        train_settings_num(s, "--cycle-mult", (double)t->cycle_mult);
    }
    if (r->kind == KILN_RECIPE_FINE_TUNE || r->kind == KILN_RECIPE_ULMFIT) {
        train_settings_num(s, "--freeze-epochs", (double)t->freeze_epochs);
        train_settings_num(s, "--lr-mult", r->lr_mult);
    }
    train_settings_num(s, "--seed", (double)t->seed);
    if (t->sync_bn && train_world() > 1) train_settings_str(s, "--sync-bn", "1"); /* one process: no effect */
}

/* ---- lr-find ----------------------------------------------------------------------------------- */

int train_prepare_out(const train_opts *t)
{
    int removed = 0;
    if (kiln_mkdirs(t->out) || kiln_atomic_clean_stale(t->out, &removed)) return cli_kfail(t->cmd, NULL);
    if (removed && !t->quiet)
        fprintf(stderr, "%s: removed %d temp file(s) a killed run left in %s\n", t->cmd, removed, t->out);
    return 0;
}

int train_lr_find(const train_opts *t, kiln_learner *l)
{
    int rc0 = train_set_comm(t, l);
    if (rc0) return rc0;
    rc0 = train_rank() == 0 ? train_prepare_out(t) : 0; /* rank 0 writes */
    if (rc0) return rc0;
    char png[4096], csv[4096];
    kiln_lr_find_params p = kiln_lr_find_default_params();
    p.num_it = t->num_it;
    cli_path(csv, sizeof csv, t->out, "lr_find.csv");
    cli_path(png, sizeof png, t->out, "lr_find.png");
    p.csv_path = csv;
    bool plots = kiln_plot_available();
    p.plot_path = plots ? png : NULL;
    kiln_lr_find_result r;
    kiln_status st = kiln_learner_lr_find(l, &p, &r);
    if (st && !r.lrs) return cli_kfail(t->cmd, "lr_find");
    int rc = st ? cli_kfail(t->cmd, "lr_find") : 0;
    if (t->quiet && !isnan(r.lr))
        printf("suggested lr (valley): %.1e   minimum/10: %.1e   steepest: %.1e\n", r.lr,
               r.suggestions[KILN_LR_SUGGEST_MINIMUM], r.suggestions[KILN_LR_SUGGEST_STEEP]);
    if (!plots && train_rank() == 0)
        fprintf(stderr, "%s: warning: no lr_find.png: this kiln was built without PLplot\n", t->cmd);
    if (!st) printf("wrote %s%s%s\n", plots ? png : "", plots ? ", " : "", csv);
    kiln_lr_find_result_free(&r);
    return rc;
}

/* ---- fit ----------------------------------------------------------------------------------------- */

/* Ctrl-C: the handler only raises the flag; the driver's callback sees it at the next batch
 * boundary and stops the fit, so the last epoch-end checkpoint stands. */
static volatile sig_atomic_t g_sigint;

static void on_sigint(int sig)
{
    (void)sig;
    g_sigint = 1;
}

/* What the user reads after training: warnings, snapshot ensemble, TTA. */
static void report(const train_opts *t, kiln_learner *l, const kiln_train_result *r)
{
    if (train_rank() != 0) return;
    const char *mname = kiln_learner_metric_name(l, 0);
    if (r->n_skipped > 0)
        fprintf(stderr, "%s: warning: %lld batch(es) skipped for a non-finite loss or gradient (--on-nan skip)\n", t->cmd,
                (long long)r->n_skipped);
    if (r->n_valid_nonfinite > 0)
        fprintf(stderr, "%s: warning: the validation loss or a metric was non-finite in %lld epoch(s) (--on-nan skip)\n",
                t->cmd, (long long)r->n_valid_nonfinite);
    if (t->quiet) {
        char tm[32];
        printf("%lld epochs in %s: train_loss %.4f  valid_loss %.4f  %s %.4f\n", (long long)r->epochs,
               kiln_format_time(r->seconds, tm, sizeof tm), r->train_loss, r->valid_loss, mname, r->metrics[0]);
    }
    bool no_valid = kiln_data_n_items(kiln_learner_data(l), KILN_DATA_SPLIT_VALID) < 1;
    if ((t->snapshots > 0 || t->tta) && no_valid)
        fprintf(stderr, "%s: warning: no validation images: no %s\n", t->cmd,
                t->tta && t->snapshots > 0 ? "TTA or snapshot ensemble" : t->tta ? "TTA" : "snapshot ensemble");
    if (r->snap.n > 0) {
        if (!t->quiet) kiln_snapshot_eval_print(l, &r->snap, stdout);
        if (t->snapshots > kiln_snapshot_count(l))
            fprintf(stderr, "%s: warning: --snapshots %lld: only %d cycle(s) ended; the ensemble uses %d\n", t->cmd,
                    (long long)t->snapshots, kiln_snapshot_count(l), r->snap.n);
        printf("snapshot ensemble (last %d cycles): %s %.4f (final weights %.4f)\n", r->snap.n, mname,
               r->snap.ens_metrics[0], r->metrics[0]);
    }
    if (r->tta) {
        const kiln_vision_model_info *mi = kiln_learner_vision_info(l);
        if (mi && !mi->augment)
            fprintf(stderr, "%s: warning: --tta with --no-augment: the augmented passes equal the plain one\n", t->cmd);
        printf("tta (%lld passes, beta %g%s): %s %.4f (plain %.4f)   valid_loss %.4f (plain %.4f)\n",
               (long long)t->tta_n, t->tta_beta, t->tta_max ? ", max" : "", mname, r->tta_metrics[0], r->metrics[0],
               r->tta_loss, r->valid_loss);
    }
}

int train_fit(const train_opts *t, kiln_learner *l, const char *data, train_settings *task)
{
    kiln_train_params p = kiln_train_default_params();
    int rc = train_recipe(t, &p.recipe);
    if (rc) return rc;
    if ((rc = train_set_comm(t, l))) return rc;
    common_settings(t, &p.recipe, task);
    p.out = t->out;
    p.resume = t->resume;
    p.snapshots = (int)t->snapshots;
    p.tta.tta = t->tta, p.tta.tta_n = (int)t->tta_n, p.tta.tta_beta = t->tta_beta, p.tta.tta_max = t->tta_max;
    p.settings = task->kv;
    p.stop = &g_sigint;
    p.data_name = data;
    struct sigaction sa, sa_old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    g_sigint = 0;
    bool handler_set = sigaction(SIGINT, &sa, &sa_old) == 0;
    fflush(stdout);
    kiln_train_result r;
    kiln_status st = kiln_learner_train(l, &p, &r);
    if (handler_set) sigaction(SIGINT, &sa_old, NULL);
    if (train_rank() != 0) { /* rank 0 reports; an error (agreed) is every rank's exit status */
        rc = st ? 1 : r.interrupted ? 130 : 0;
        kiln_train_result_free(&r);
        return rc;
    }
    if (r.n_stale_removed && !t->quiet)
        fprintf(stderr, "%s: removed %d temp file(s) a killed run left in %s\n", t->cmd, r.n_stale_removed, t->out);
    if (st) {
        rc = cli_kfail(t->cmd, st == KILN_STATUS_DIVERGED ? NULL : t->resume ? "--resume" : "fit");
        if (st == KILN_STATUS_DIVERGED)
            fprintf(stderr, "%s: try a lower --lr%s\n", t->cmd, strcmp(t->on_nan, "skip") ? ", or --on-nan skip" : "");
    } else if (r.interrupted) {
        fflush(stdout);
        const char *ck = kiln_checkpointing_last_path(l); /* this run's: written at the fit's start */
        if (ck && access(ck, R_OK) == 0)
            fprintf(stderr, "%s: interrupted: resume with %s %s --out %s [the same flags] --resume\n", t->cmd, t->cmd,
                    data, t->out);
        else
            fprintf(stderr, "%s: interrupted: no checkpoint of this run to resume from\n", t->cmd);
        rc = 130;
    } else {
        report(t, l, &r);
        if (train_world() > 1) { /* rank 0's wait in the step's sums: communication + the slower rank */
            double secs;
            int64_t steps, buckets, early;
            kiln_learner_dist_stats(l, &secs, &steps);
            kiln_learner_dist_buckets(l, &buckets, &early);
            printf("data-parallel: %d ranks, global batch %lld (%lld a rank); %.3f ms a step waiting in the "
                   "all-reduce (%lld steps; %.1f gradient buckets a step, %.0f%% started during backward)\n",
                   train_world(), (long long)t->bs, (long long)train_rank_bs(t),
                   steps ? 1e3 * secs / (double)steps : 0.0, (long long)steps,
                   steps ? (double)buckets / (double)steps : 0.0, buckets ? 100.0 * (double)early / (double)buckets : 0.0);
            print_zero(l, steps);
        }
        char pm[4096];
        printf("wrote %s, model.json, history.csv, metrics.json%s\n", cli_path(pm, sizeof pm, t->out, "model.safetensors"),
               r.plots ? ", losses.png, lr.png" : "");
        if (!r.plots) fprintf(stderr, "%s: warning: no losses.png, lr.png: this kiln was built without PLplot\n", t->cmd);
    }
    kiln_train_result_free(&r);
    return rc;
}
