/* Data-parallel learner equivalence (issue 13), run by ctest under
 * `mpiexec --allow-run-as-root --oversubscribe -np 2` (cmake/dist_learn.cmake, only when kiln
 * is built with MPI). A BatchNorm-free, dropout-free MLP on made tensor data:
 *   - every rank trains with per-rank batch B/N on its shard (kiln_tensor_data_params rank,
 *     world) under the world communicator; rank 0 then trains the same model alone with
 *     batch B under kiln_comm_single; for SGD (momentum) and AdamW, each with one-cycle over
 *     4 epochs, the final weights must agree within atol 2e-6 + rtol 2e-5 (see below; 2 ranks on Open MPI 4.1: 1.2e-7 at most), the
 *     validation loss and accuracy within 1e-5 (relative), and the ranks' weights bit for bit;
 *   - the N-rank run checkpoints every epoch (rank 0 writes ck<epoch>.safetensors); a fresh
 *     N-rank learner resumes from the first one and must end with the same weights as the
 *     uninterrupted run (bit for bit: the same steps in the same order);
 *   - ZeRO-1 (kiln_learner_set_dist_zero): the same N-rank runs with the optimizer state sharded
 *     over the ranks end with the plain N-rank run's weights bit for bit, hold about P/N
 *     floats a state buffer on each rank, write checkpoints whose optimizer tensors are the
 *     plain run's bit for bit, and a ZeRO resume of either run's checkpoint (and a plain
 *     resume of the ZeRO one) ends where the uninterrupted run does;
 *   - a failure on the last rank only (an error in a callback, a stop request, a NaN input
 *     under on_nan skip and under stop) ends every rank alike: the same status and recorded
 *     batches, equal weights, and the error message naming the rank that failed.
 * Why that tolerance: one process computes the gradient of the mean over B rows in one
 * reduction; N ranks each the mean over B/N rows, then sum them and scale by 1/N, so the
 * gradients differ in the last bits (float sums in another order, ~1e-7 relative), and 24
 * steps of a 0.3 (SGD) / 0.03 (AdamW) peak lr carry that into the weights; AdamW divides by
 * sqrt(v), which can magnify a difference in a tiny gradient element. A wrong average (a
 * missing 1/N, a rank's bucket left out, shards that differ from the one-process batches)
 * moves weights by 1e-2 and more.
 * `dist_learn --make-idx DIR` writes the tiny IDX set the CLI test (dist_cli.sh) trains on.
 * Exit status 0 when every check passes on every rank. */
#include "kiln.h"
#include "util/ku_cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

enum { N_IN = 8, N_HID = 32, N_OUT = 4, N_TRAIN = 96, N_VALID = 40, BATCH = 16, EPOCHS = 4 };

static int g_fail, g_rank;
#define MPI_TEST_NAME "dist_learn"
#include "mpi_check.h"

/* x (n, N_IN) f32 and y (n) i64: the class is the argmax of 4 fixed projections plus noise. */
static void make_rows(int64_t n, uint64_t seed, float *x, int64_t *y)
{
    for (int64_t i = 0; i < n; i++) {
        for (int j = 0; j < N_IN; j++)
            x[i * N_IN + j] = 2.0f * kiln_philox_uniform(seed, (uint64_t)(i * N_IN + j)) - 1.0f;
        float best = -1e9f;
        for (int c = 0; c < N_OUT; c++) {
            float s = x[i * N_IN + c] - 0.5f * x[i * N_IN + (c + 3) % N_IN];
            if (s > best) best = s, y[i] = c;
        }
    }
}

/* Failure injection on the last rank (g_mode): 0 none; 1 an error in begin_batch of epoch 1,
 * batch 2; 2 stop_training there; 3 a NaN in its input there (with on_nan skip); 4 the same NaN
 * under on_nan stop; 5 a backward that fails there (after_loss swaps in a loss cut from the
 * graph), after the other ranks' bucket sums have started; after the step's loss sum, where
 * the ranks' flags are agreed again: 6 stop_training in end_batch (a SIGINT seen by one rank),
 * 7 skip_batch in after_backward, 8 an error in after_step. */
static int g_mode;
/* The gradient buckets (0: the learner's default), whether their sums overlap backward, and
 * the MLP's hidden layers (N_HID wide). */
static size_t g_bucket_bytes;
static bool g_overlap = true;
static int g_hidden = 1;
/* SGDR with 3 cycles of 1 epoch and a snapshot at each cycle end, then the ensemble's scores
 * and kiln_learner_score of get_preds (each rank's shard, summed over ranks). */
static bool g_snap;
static bool g_bn; /* BatchNorm1d after each hidden Linear (per-rank batch statistics) */
static bool g_zero; /* ZeRO-1: the optimizer state sharded over the ranks */

static kiln_status inject(kiln_learner *l, void *user)
{
    kiln_comm *c = user;
    kiln_fit_state *s = kiln_learner_state(l);
    if (!g_mode || kiln_comm_rank(c) != kiln_comm_size(c) - 1 || s->epoch != 1 || s->batch != 2) return KILN_STATUS_OK;
    if (g_mode == 1) return kiln_error(KILN_STATUS_IO, "injected: this rank's batch could not be read");
    if (g_mode == 2) s->stop_training = true;
    if (g_mode == 3 || g_mode == 4) ((float *)s->x->data)[0] = NAN;
    return KILN_STATUS_OK;
}

static bool victim(kiln_learner *l, kiln_comm *c, int mode)
{
    kiln_fit_state *s = kiln_learner_state(l);
    return g_mode == mode && kiln_comm_rank(c) == kiln_comm_size(c) - 1 && s->epoch == 1 && s->batch == 2;
}

static kiln_status inject_late(kiln_learner *l, void *user)
{
    kiln_fit_state *s = kiln_learner_state(l);
    if (victim(l, user, 6)) s->stop_training = true;
    if (victim(l, user, 7)) s->skip_batch = true;
    if (victim(l, user, 8)) return kiln_error(KILN_STATUS_IO, "injected: after_step failed");
    return KILN_STATUS_OK;
}

static kiln_status inject_loss(kiln_learner *l, void *user)
{
    kiln_comm *c = user;
    kiln_fit_state *s = kiln_learner_state(l);
    if (g_mode != 5 || kiln_comm_rank(c) != kiln_comm_size(c) - 1 || s->epoch != 1 || s->batch != 2) return KILN_STATUS_OK;
    s->loss = kiln_detach(kiln_learner_ctx(l), s->loss);
    return KILN_STATUS_OK;
}

typedef struct result {
    float *w;  /* (n_w) final parameters */
    size_t n_w;
    float *b;  /* (n_b) final buffers (running statistics) */
    size_t n_b;
    double vloss, vacc;
    kiln_status fit_st;  /* the fit's status, its message and the batches it recorded */
    char msg[1024];
    int64_t iters, n_skipped;
    int64_t buckets, early; /* bucket sums, and those started during backward */
    size_t state_floats;    /* floats of each f32 optimizer state buffer this rank holds after the fit */
    double snap_loss[3], ens_loss, ens_acc, score_loss, score_acc; /* g_snap */
} result;

/* One training run on comm with per-rank batch BATCH / world. ckpt: checkpoint pattern or
 * NULL; resume: a checkpoint to go on from (NULL: fit from the start). */
static int run(kiln_comm *comm, bool adam, const char *ckpt, const char *resume, result *r)
{
    int world = kiln_comm_size(comm), rank = kiln_comm_rank(comm);
    kiln_ctx_params cp = kiln_ctx_default_params();
    cp.n_threads = 1, cp.seed = 7;
    kiln_ctx *ctx = kiln_ctx_new(&cp);
    float xt[N_TRAIN * N_IN], xv[N_VALID * N_IN];
    int64_t yt[N_TRAIN], yv[N_VALID];
    make_rows(N_TRAIN, 11, xt, yt);
    make_rows(N_VALID, 12, xv, yv);
    kiln_tensor Xt, Yt, Xv, Yv;
    kiln_tensor_wrap(&Xt, KILN_DTYPE_F32, 2, (int64_t[]){N_TRAIN, N_IN}, xt);
    kiln_tensor_wrap(&Yt, KILN_DTYPE_I64, 1, (int64_t[]){N_TRAIN}, yt);
    kiln_tensor_wrap(&Xv, KILN_DTYPE_F32, 2, (int64_t[]){N_VALID, N_IN}, xv);
    kiln_tensor_wrap(&Yv, KILN_DTYPE_I64, 1, (int64_t[]){N_VALID}, yv);
    kiln_tensor_data_params dp = kiln_tensor_data_default_params();
    dp.batch_size = BATCH / world, dp.valid_batch_size = 7; /* uneven valid batches on purpose */
    dp.rank = rank, dp.world = world;
    kiln_data *d = kiln_tensor_data_new(&Xt, &Yt, &Xv, &Yv, &dp);
    int64_t hid[64];
    for (int i = 0; i < g_hidden; i++) hid[i] = N_HID;
    kiln_model *m = kiln_mlp_new(N_IN, g_hidden, hid, N_OUT, 0.0f, g_bn);
    if (!ctx || !d || !m || kiln_model_alloc(m, ctx)) {
        fprintf(stderr, "dist_learn: setup: %s\n", kiln_last_error());
        return 1;
    }
    /* the same start on every rank and in the one-process run (fit start also broadcasts) */
    size_t np;
    float *p = kiln_store_flat(kiln_model_store(m), KILN_STORE_PARAMS, &np);
    for (size_t i = 0; i < np; i++) p[i] = 0.4f * (kiln_philox_uniform(99, i) - 0.5f);
    kiln_optim *opt;
    if (adam) {
        kiln_adam_params ap = kiln_adam_default_params(); /* decoupled wd 0.01: AdamW */
        opt = kiln_optim_new_adam(kiln_model_store(m), &ap);
    } else {
        kiln_sgd_params sp = kiln_sgd_default_params();
        sp.momentum = 0.9, sp.weight_decay = 1e-4;
        opt = kiln_optim_new_sgd(kiln_model_store(m), &sp);
    }
    kiln_learner_params lp = kiln_learner_default_params();
    lp.progress = KILN_PROGRESS_STYLE_QUIET;
    lp.sched_mom = true;
    lp.on_nan = g_mode == 3 ? KILN_NAN_POLICY_SKIP : KILN_NAN_POLICY_STOP;
    kiln_learner *l = kiln_learner_new(ctx, m, d, opt, &lp);
    kiln_metric acc = kiln_metric_make(KILN_METRIC_KIND_ACCURACY);
    kiln_status st = l ? kiln_learner_add_metric(l, &acc) : KILN_STATUS_NOMEM;
    if (!st) st = kiln_learner_set_comm(l, comm);
    if (!st) st = kiln_learner_set_dist_buckets(l, g_bucket_bytes ? g_bucket_bytes : KILN_LEARNER_DIST_BUCKET_BYTES,
                                                g_overlap);
    kiln_callback cb = {.name = "inject", .begin_batch = inject, .after_loss = inject_loss, .user = comm};
    if (g_mode == 6) cb.end_batch = inject_late;
    if (g_mode == 7) cb.after_backward = inject_late;
    if (g_mode == 8) cb.after_step = inject_late;
    if (!st && g_mode) st = kiln_learner_add_callback(l, &cb);
    if (!st && g_zero) st = kiln_learner_set_dist_zero(l, true);
    if (!st && ckpt) st = kiln_learner_add_checkpointing(l, ckpt, 1);
    if (!st && resume) st = kiln_learner_resume(l, resume);
    if (!st && g_snap) {
        kiln_sched_sgdr_params sp = kiln_sched_sgdr_default_params();
        sp.lr = adam ? 0.03 : 0.3, sp.iters_per_epoch = kiln_data_n_batches(d, KILN_DATA_SPLIT_TRAIN);
        sp.n_cycle = 3, sp.cycle_len = 1, sp.cycle_mult = 1;
        kiln_sched sch;
        st = kiln_sched_sgdr(&sch, &sp);
        if (!st) st = kiln_learner_add_snapshots(l, NULL);
        if (!st) st = kiln_learner_fit(l, 3, &sch);
        kiln_snapshot_eval ev = {0};
        if (!st) st = kiln_snapshot_evaluate(l, KILN_DATA_SPLIT_VALID, 3, &ev);
        if (!st) {
            memcpy(r->snap_loss, ev.losses, sizeof r->snap_loss);
            r->ens_loss = ev.ens_loss, r->ens_acc = ev.ens_metrics[0];
        }
        kiln_snapshot_eval_free(&ev);
        kiln_preds pr = {0};
        if (!st) st = kiln_learner_get_preds(l, KILN_DATA_SPLIT_VALID, &pr);
        if (!st) st = kiln_learner_score(l, &pr, &r->score_loss, &r->score_acc);
        kiln_preds_free(&pr);
    } else if (!st && !resume) {
        st = kiln_learner_fit_one_cycle(l, EPOCHS, 0, adam ? 0.03 : 0.3, NULL);
    }
    r->fit_st = st;
    r->iters = kiln_recorder_n_batches(kiln_learner_recorder(l));
    r->n_skipped = kiln_learner_state(l)->n_skipped;
    kiln_learner_dist_buckets(l, &r->buckets, &r->early);
    for (size_t i = 0; i < kiln_optim_state_count(opt); i++) {
        kiln_optim_state e;
        if (!kiln_optim_state_at(opt, i, &e) && e.dtype == KILN_DTYPE_F32) r->state_floats = e.numel;
    }
    snprintf(r->msg, sizeof r->msg, "%s", st ? kiln_last_error() : "");
    double met = NAN;
    if (!st) st = kiln_learner_validate(l, KILN_DATA_SPLIT_VALID, &r->vloss, &met);
    r->vacc = met;
    if (st && !g_mode) fprintf(stderr, "dist_learn: rank %d: %s\n", rank, kiln_last_error());
    p = kiln_store_flat(kiln_model_store(m), KILN_STORE_PARAMS, &np);
    r->w = malloc(np * sizeof *r->w), r->n_w = np;
    memcpy(r->w, p, np * sizeof *p);
    size_t nbuf = 0;
    const float *bf = kiln_store_flat(kiln_model_store(m), KILN_STORE_BUFFERS, &nbuf);
    r->b = malloc((nbuf ? nbuf : 1) * sizeof *r->b), r->n_b = nbuf;
    if (nbuf) memcpy(r->b, bf, nbuf * sizeof *bf);
    kiln_learner_free(l);
    kiln_optim_free(opt);
    kiln_model_free(m);
    kiln_data_free(d);
    kiln_ctx_free(ctx);
    return st ? 1 : 0;
}

/* Every rank's weights equal rank 0's bit for bit. */
static void same_on_ranks(kiln_comm *c, const result *r, const char *what)
{
    float *w0 = malloc(r->n_w * sizeof *w0);
    memcpy(w0, r->w, r->n_w * sizeof *w0);
    kiln_comm_bcast(c, w0, r->n_w * sizeof *w0, 0);
    CHECK(!memcmp(w0, r->w, r->n_w * sizeof *w0), "%s: this rank's weights differ from rank 0's", what);
    free(w0);
}

static void compare(const char *what, const result *a, const result *b, double atol, double rtol)
{
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < a->n_w; i++) {
        double d = fabs((double)a->w[i] - (double)b->w[i]) - (atol + rtol * fabs((double)b->w[i]));
        if (d > worst) worst = d, at = i;
    }
    double maxabs = 0;
    for (size_t i = 0; i < a->n_w; i++) maxabs = fmax(maxabs, fabs((double)a->w[i] - (double)b->w[i]));
    printf("dist_learn: %s: max |w_N - w_1| = %.3g over %zu weights; valid loss %.9g vs %.9g, accuracy %.6f vs %.6f\n",
           what, maxabs, a->n_w, a->vloss, b->vloss, a->vacc, b->vacc);
    CHECK(worst == 0, "%s: weight %zu: %.9g vs %.9g (atol %g rtol %g)", what, at, a->w[at], b->w[at], atol, rtol);
    CHECK(fabs(a->vloss - b->vloss) <= 1e-5 * fabs(b->vloss), "%s: valid loss %.9g vs %.9g", what, a->vloss, b->vloss);
    CHECK(fabs(a->vacc - b->vacc) <= 1e-9, "%s: accuracy %.9g vs %.9g", what, a->vacc, b->vacc);
}

/* The optimizer tensors of two checkpoints are equal bit for bit (rank 0 reads both). */
static void same_optim_tensors(const char *a, const char *b)
{
    kiln_st_file *fa = NULL, *fb = NULL;
    CHECK(!kiln_st_open(a, &fa) && !kiln_st_open(b, &fb), "cannot open %s or %s: %s", a, b, kiln_last_error());
    int n = 0;
    for (size_t i = 0; fa && fb && i < kiln_st_count(fa); i++) {
        const char *name = kiln_st_name(fa, i);
        if (strncmp(name, "optim.", 6)) continue;
        kiln_dtype da, db;
        int nda, ndb;
        int64_t sa[KILN_MAX_DIMS], sb[KILN_MAX_DIMS];
        const void *pa, *pb;
        size_t na, nb;
        CHECK(!kiln_st_info(fa, name, &da, &nda, sa, &pa, &na) && !kiln_st_info(fb, name, &db, &ndb, sb, &pb, &nb) &&
                  na == nb && !memcmp(pa, pb, na),
              "%s: tensor %s differs from %s's", b, name, a);
        n++;
    }
    CHECK(n >= 2, "%s: %d optimizer tensors", a, n);
    kiln_st_close(fa), kiln_st_close(fb);
}

/* ZeRO-1 against the plain N-rank run rn of the same optimizer (its checkpoints in dir). */
static void check_zero(kiln_comm *c, bool adam, const char *dir, const result *rn)
{
    const char *name = adam ? "AdamW one-cycle, ZeRO-1" : "SGD one-cycle, ZeRO-1";
    int world = kiln_comm_size(c);
    char pat[300], zck1[300], ck1[300];
    snprintf(pat, sizeof pat, "%s/%s_zck%%d.safetensors", dir, adam ? "adam" : "sgd");
    snprintf(zck1, sizeof zck1, "%s/%s_zck1.safetensors", dir, adam ? "adam" : "sgd");
    snprintf(ck1, sizeof ck1, "%s/%s_ck1.safetensors", dir, adam ? "adam" : "sgd");
    result rz = {0}, rr[3] = {{0}};
    g_zero = true;
    CHECK(run(c, adam, pat, NULL, &rz) == 0, "%s: the %d-rank run failed", name, world);
    same_on_ranks(c, &rz, name);
    CHECK(rz.n_w == rn->n_w && !memcmp(rz.w, rn->w, rn->n_w * sizeof *rn->w),
          "%s: the weights differ from the plain %d-rank run's", name, world);
    CHECK(rz.vloss == rn->vloss, "%s: valid loss %.9g vs %.9g", name, rz.vloss, rn->vloss);
    /* about P/N floats a buffer on every rank (ranges start on 16 floats) */
    size_t P = rn->state_floats, want = P / (size_t)world;
    CHECK(rn->state_floats == rn->n_w, "plain run: %zu floats of state, %zu params", rn->state_floats, rn->n_w);
    CHECK(world == 1 ? rz.state_floats == P : rz.state_floats + 16 >= want && rz.state_floats <= want + 16,
          "%s: %zu floats a state buffer on rank %d, want about %zu / %d", name, rz.state_floats, g_rank, P, world);
    /* a ZeRO resume of the ZeRO checkpoint and of the plain one, a plain resume of the ZeRO one */
    const char *from[3] = {zck1, ck1, zck1};
    for (int k = 0; k < 3; k++) {
        g_zero = k < 2;
        CHECK(run(c, adam, NULL, from[k], &rr[k]) == 0, "%s: resume %d failed", name, k);
        CHECK(rr[k].n_w == rn->n_w && !memcmp(rr[k].w, rn->w, rn->n_w * sizeof *rn->w),
              "%s: %s resume from %s: the weights differ from the uninterrupted run", name, g_zero ? "a ZeRO" : "a plain",
              from[k]);
    }
    g_zero = false;
    if (g_rank == 0) {
        for (int e = 1; e <= EPOCHS; e++) {
            char a[300], b[300];
            snprintf(a, sizeof a, "%s/%s_ck%d.safetensors", dir, adam ? "adam" : "sgd", e);
            snprintf(b, sizeof b, "%s/%s_zck%d.safetensors", dir, adam ? "adam" : "sgd", e);
            same_optim_tensors(a, b);
        }
        printf("dist_learn: %s: weights and checkpoints' optimizer state equal to the plain run's; %zu of %zu floats "
               "a state buffer on rank 0\n", name, rz.state_floats, P);
    }
    kiln_comm_barrier(c);
    free(rz.w), free(rz.b);
    for (int k = 0; k < 3; k++) free(rr[k].w), free(rr[k].b);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--make-idx")) {
        mkdir(argv[2], 0777);
        ku_make_idx(argv[2], "train", 48);
        ku_make_idx(argv[2], "t10k", 12);
        return 0;
    }
    kiln_comm *c = kiln_comm_world();
    if (!c) {
        fprintf(stderr, "dist_learn: %s\n", kiln_last_error());
        return 1;
    }
    g_rank = kiln_comm_rank(c);
    int world = kiln_comm_size(c);
    kiln_comm_set_timeout(c, 120);
    setvbuf(stdout, NULL, _IONBF, 0);
    if (g_rank == 0) printf("dist_learn: %d rank(s) over %s\n", world, kiln_comm_name(c));
    /* a folder every rank names the same: rank 0 makes it */
    char dir[256] = "";
    if (g_rank == 0) {
        snprintf(dir, sizeof dir, "/tmp/kiln_dist_learn_XXXXXX");
        if (!mkdtemp(dir)) dir[0] = '\0';
    }
    kiln_comm_bcast(c, dir, sizeof dir, 0);
    CHECK(dir[0], "no temp folder");
    for (int adam = 0; adam < 2 && dir[0]; adam++) {
        const char *name = adam ? "AdamW one-cycle" : "SGD one-cycle";
        char pat[300], ck1[300];
        snprintf(pat, sizeof pat, "%s/%s_ck%%d.safetensors", dir, adam ? "adam" : "sgd");
        snprintf(ck1, sizeof ck1, "%s/%s_ck1.safetensors", dir, adam ? "adam" : "sgd");
        result rn = {0}, r1 = {0}, rr = {0};
        CHECK(run(c, adam, pat, NULL, &rn) == 0, "%s: the %d-rank run failed", name, world);
        same_on_ranks(c, &rn, name);
        /* resume from the end of epoch 1 on every rank: the same end as without a break */
        CHECK(run(c, adam, NULL, ck1, &rr) == 0, "%s: the %d-rank resume failed", name, world);
        CHECK(rr.n_w == rn.n_w && !memcmp(rr.w, rn.w, rn.n_w * sizeof *rn.w),
              "%s: resumed from %s, the weights differ from the uninterrupted run", name, ck1);
        CHECK(rr.vloss == rn.vloss, "%s: resumed valid loss %.9g vs %.9g", name, rr.vloss, rn.vloss);
        if (g_rank == 0) {
            kiln_comm *one = kiln_comm_single();
            CHECK(run(one, adam, NULL, NULL, &r1) == 0, "%s: the one-process run failed", name);
            kiln_comm_free(one);
            compare(name, &rn, &r1, 2e-6, 2e-5);
        }
        kiln_comm_barrier(c);
        check_zero(c, adam, dir, &rn);
        free(rn.w), free(r1.w), free(rr.w), free(rn.b), free(r1.b), free(rr.b);
    }
    /* failures on the last rank only: every rank must end the same way, and soon */
    /* buckets of one parameter each (4 bytes: every gradient is larger), 40 hidden layers: 82
     * sums a step, more than the 48 the learner keeps in flight; with overlap every one starts
     * during backward (the first layer's, the last to finish, when its linear node has run) */
    g_bucket_bytes = 4, g_hidden = 40;
    for (int ov = 1; ov >= 0 && dir[0]; ov--) {
        g_overlap = ov;
        const char *name = ov ? "82 buckets, overlapped" : "82 buckets, after backward";
        result rn = {0}, r1 = {0};
        CHECK(run(c, true, NULL, NULL, &rn) == 0, "%s: the %d-rank run failed", name, world);
        same_on_ranks(c, &rn, name);
        int64_t steps = EPOCHS * (N_TRAIN / BATCH);
        if (world > 1) {
            CHECK(rn.buckets == 82 * steps, "%s: %lld bucket sums, want %lld", name, (long long)rn.buckets,
                  (long long)(82 * steps));
            CHECK(ov ? rn.early == rn.buckets : rn.early == 0,
                  "%s: %lld of %lld sums started during backward", name, (long long)rn.early, (long long)rn.buckets);
        }
        if (g_rank == 0) {
            kiln_comm *one = kiln_comm_single();
            CHECK(run(one, true, NULL, NULL, &r1) == 0, "%s: the one-process run failed", name);
            kiln_comm_free(one);
            compare(name, &rn, &r1, 2e-6, 2e-5);
            printf("dist_learn: %s: %lld of %lld sums started during backward\n", name, (long long)rn.early,
                   (long long)rn.buckets);
        }
        kiln_comm_barrier(c);
        free(rn.w), free(r1.w), free(rn.b), free(r1.b);
    }
    g_bucket_bytes = 0, g_hidden = 1, g_overlap = true;
    /* snapshots and scores over the valid shards (40 items: 20 a rank) against one process */
    g_snap = true;
    if (dir[0]) {
        result rn = {0}, r1 = {0};
        CHECK(run(c, true, NULL, NULL, &rn) == 0, "snapshots: the %d-rank run failed", world);
        if (g_rank == 0) {
            kiln_comm *one = kiln_comm_single();
            CHECK(run(one, true, NULL, NULL, &r1) == 0, "snapshots: the one-process run failed");
            kiln_comm_free(one);
            compare("SGDR + 3 snapshots", &rn, &r1, 2e-6, 2e-5);
            for (int i = 0; i < 3; i++)
                CHECK(fabs(rn.snap_loss[i] - r1.snap_loss[i]) <= 1e-5 * fabs(r1.snap_loss[i]),
                      "snapshot %d: valid loss %.9g vs %.9g", i, rn.snap_loss[i], r1.snap_loss[i]);
            CHECK(fabs(rn.ens_loss - r1.ens_loss) <= 1e-5 * fabs(r1.ens_loss) && rn.ens_acc == r1.ens_acc,
                  "ensemble: loss %.9g vs %.9g, accuracy %.6f vs %.6f", rn.ens_loss, r1.ens_loss, rn.ens_acc, r1.ens_acc);
            CHECK(fabs(rn.score_loss - r1.score_loss) <= 1e-5 * fabs(r1.score_loss) && rn.score_acc == r1.score_acc,
                  "learner_score: loss %.9g vs %.9g, accuracy %.6f vs %.6f", rn.score_loss, r1.score_loss,
                  rn.score_acc, r1.score_acc);
            CHECK(fabs(rn.score_loss - rn.vloss) <= 1e-5 * fabs(rn.vloss), "score of get_preds %.9g vs validate %.9g",
                  rn.score_loss, rn.vloss);
            printf("dist_learn: snapshots: losses %.6f %.6f %.6f, ensemble %.6f (accuracy %.3f) vs one process "
                   "%.6f %.6f %.6f, %.6f (%.3f)\n", rn.snap_loss[0], rn.snap_loss[1], rn.snap_loss[2], rn.ens_loss,
                   rn.ens_acc, r1.snap_loss[0], r1.snap_loss[1], r1.snap_loss[2], r1.ens_loss, r1.ens_acc);
        }
        kiln_comm_barrier(c);
        free(rn.w), free(r1.w), free(rn.b), free(r1.b);
    }
    g_snap = false;
    /* BatchNorm: each rank's running statistics follow its own half batches during the epoch;
     * every validation and the end of the fit see rank 0's on every rank (one model's table
     * and checkpoint) */
    g_bn = true;
    if (dir[0]) {
        result rb = {0};
        CHECK(run(c, true, NULL, NULL, &rb) == 0, "BatchNorm: the %d-rank run failed", world);
        same_on_ranks(c, &rb, "BatchNorm MLP");
        float *b0 = malloc(rb.n_b * sizeof *b0);
        memcpy(b0, rb.b, rb.n_b * sizeof *b0);
        kiln_comm_bcast(c, b0, rb.n_b * sizeof *b0, 0);
        CHECK(rb.n_b > 0 && !memcmp(b0, rb.b, rb.n_b * sizeof *b0),
              "BatchNorm: this rank's running statistics differ from rank 0's after the fit");
        double v = rb.vloss, v0 = rb.vloss;
        kiln_comm_bcast(c, &v0, sizeof v0, 0);
        CHECK(v == v0, "BatchNorm: valid loss %.9g here, %.9g on rank 0", v, v0);
        free(b0), free(rb.w), free(rb.b);
    }
    g_bn = false;
    for (g_mode = 1; g_mode <= 8 && dir[0] && world > 1; g_mode++) {
        result rf = {0};
        run(c, false, NULL, NULL, &rf);
        same_on_ranks(c, &rf, "after a failure on one rank");
        double v[2] = {(double)rf.fit_st, (double)rf.iters}, mn[2];
        memcpy(mn, v, sizeof v);
        kiln_comm_allreduce_sum_f64(c, mn, 2);
        /* (an error in after_step comes after the other ranks recorded the batch: statuses only) */
        CHECK(mn[0] == world * v[0] && (g_mode == 8 || mn[1] == world * v[1]),
              "mode %d: the ranks ended differently (status %d, %lld batches recorded here)", g_mode, (int)rf.fit_st,
              (long long)rf.iters);
        if (g_mode == 1 || g_mode == 4 || g_mode == 5 || g_mode == 8)
            CHECK(rf.fit_st != KILN_STATUS_OK && (g_rank == world - 1 || strstr(rf.msg, "rank 1")),
                  "mode %d: the error does not name rank %d: '%s'", g_mode, world - 1, rf.msg);
        if (g_mode == 1) CHECK(strstr(rf.msg, "injected") != NULL, "the failing rank's message is lost: '%s'", rf.msg);
        if (g_mode == 2) CHECK(!rf.fit_st && rf.iters == 6 + 2, "stop: %lld batches recorded, want 8", (long long)rf.iters);
        if (g_mode == 3) CHECK(!rf.fit_st && rf.n_skipped == 1, "skip: %lld skipped, want 1", (long long)rf.n_skipped);
        if (g_mode == 4) CHECK(rf.fit_st == KILN_STATUS_DIVERGED, "NaN under stop: status %d", (int)rf.fit_st);
        if (g_mode == 5)
            CHECK(rf.fit_st != KILN_STATUS_OK && rf.iters == 6 + 2 && strstr(rf.msg, "does not require grad"),
                  "a failed backward on one rank: status %d after %lld batches: '%s'", (int)rf.fit_st,
                  (long long)rf.iters, rf.msg);
        if (g_mode == 6) CHECK(!rf.fit_st && rf.iters == 6 + 3, "stop in end_batch: %lld batches, want 9", (long long)rf.iters);
        if (g_mode == 7) CHECK(!rf.fit_st && rf.iters == 24 - 1, "skip in after_backward: %lld batches, want 23",
                               (long long)rf.iters);
        if (g_mode == 8)
            CHECK(rf.fit_st == KILN_STATUS_IO && strstr(rf.msg, "after_step failed"), "after_step error: %d '%s'",
                  (int)rf.fit_st, rf.msg);
        if (g_rank == 0)
            printf("dist_learn: failure mode %d on rank %d: status %d on every rank, %lld batches; %.160s\n", g_mode,
                   world - 1, (int)rf.fit_st, (long long)rf.iters, rf.msg);
        free(rf.w), free(rf.b);
    }
    g_mode = 0;
    /* every rank's verdict */
    double bad = g_fail;
    kiln_comm_allreduce_sum_f64(c, &bad, 1);
    if (g_rank == 0) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (dir[0] && system(cmd) != 0) fprintf(stderr, "dist_learn: could not remove %s\n", dir);
        printf("dist_learn: %s\n", bad > 0 ? "FAILED" : "all checks passed");
        fflush(stdout);
    }
    kiln_comm_free(c);
    return bad > 0 ? 1 : 0;
}
