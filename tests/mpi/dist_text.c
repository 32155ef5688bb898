/* Data-parallel text (issue 13), run by ctest under
 * `mpiexec --allow-run-as-root --oversubscribe -np 2` (cmake/dist_learn.cmake, only when kiln
 * is built with MPI): an AWD-LSTM language model with every dropout 0 (so the ranks' own dropout
 * streams do not matter) on made token ids, through kiln_text_lm_learner_new:
 *   - every rank trains on its bs / N rows of each global batch of BS rows (kiln_lm_data_params
 *     rank, world; variable bptt) under the world communicator, AdamW one-cycle over 3 epochs;
 *     rank 0 then trains the same model alone with BS rows under kiln_comm_single;
 *   - the ranks' weights must be equal bit for bit, the N-rank weights within atol 2e-6 + rtol
 *     2e-5 of the one-process weights, the validation loss and accuracy within 1e-5 (relative);
 *   - and, so that the check can fail: N ranks that all read rank 0's rows (the sum of the
 *     wrong gradients) must end further than that from the one-process weights.
 * Why the tolerance: as in dist_learn.c, one process takes the mean over BS rows in one
 * reduction, N ranks each over BS / N rows, summed and scaled by 1/N: gradients differ in their
 * last bits (~1e-7 relative); the loss (cross-entropy, AR and TAR) is a mean over equal counts
 * on every rank, so the average of the ranks' losses is the global loss exactly in real numbers.
 * Exit status 0 when every check passes on every rank. */
#include "kiln.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* under AddressSanitizer: Open MPI's leaks at exit are in MCA components it has dlclose'd,
 * named (and suppressed by tests/lsan.supp) only with the full unwinder */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "fast_unwind_on_malloc=0"; }

enum { N_WORDS = 31, N_TRAIN = 160, N_VALID = 12, BS = 8, BPTT = 12, EPOCHS = 3 };

static int g_fail, g_rank;

#define CHECK(cond, ...)                                                                        \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "dist_text: rank %d: FAIL %s:%d: ", g_rank, __FILE__, __LINE__);    \
            fprintf(stderr, __VA_ARGS__);                                                       \
            fputc('\n', stderr);                                                                \
            g_fail = 1;                                                                         \
        }                                                                                       \
    } while (0)

typedef struct docs {
    int64_t *ids[N_TRAIN + N_VALID], len[N_TRAIN + N_VALID];
} docs;

/* documents of 20..45 ids from a made-up grammar: xxbos, then each word followed by one of two
 * successors (a pattern a model learns), from a fixed LCG */
static void make_docs(docs *d)
{
    uint64_t s = 12345;
    for (int i = 0; i < N_TRAIN + N_VALID; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        d->len[i] = 20 + (int64_t)(s >> 40) % 26;
        d->ids[i] = malloc((size_t)d->len[i] * sizeof(int64_t));
        d->ids[i][0] = KILN_TOK_BOS;
        int64_t w = (int64_t)(s >> 20) % N_WORDS;
        for (int64_t k = 1; k < d->len[i]; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            w = (w * 7 + ((s >> 33) & 1 ? 3 : 11)) % N_WORDS;
            d->ids[i][k] = KILN_TOK_N_SPECIAL + w;
        }
    }
}

typedef struct result {
    float *w;
    size_t n_w;
    double vloss, vacc;
} result;

/* One fit on comm: this rank's rows of BS (or, with same_rows, rank 0's rows on every rank). */
static int run(kiln_comm *comm, const docs *dd, const kiln_vocab *v, bool same_rows, result *r)
{
    int world = kiln_comm_size(comm), rank = kiln_comm_rank(comm);
    kiln_lm_data_params dp = kiln_lm_data_default_params();
    dp.bs = BS, dp.bptt = BPTT, dp.rank = same_rows ? 0 : rank, dp.world = world;
    int64_t V = kiln_vocab_size(v);
    kiln_data *d = kiln_lm_data_new((const int64_t *const *)dd->ids, dd->len, N_TRAIN,
                                    (const int64_t *const *)dd->ids + N_TRAIN, dd->len + N_TRAIN, N_VALID, V, &dp);
    kiln_ctx_params cp = kiln_ctx_default_params();
    cp.n_threads = 1, cp.seed = 7;
    kiln_ctx *ctx = kiln_ctx_new(&cp);
    kiln_awd_lstm_params cfg = kiln_awd_lstm_lm_config(V, 0.0f); /* every dropout 0 */
    cfg.emb = 16, cfg.hid = 24;
    kiln_text_lm_learner_params lp = kiln_text_lm_learner_default_params();
    lp.config = &cfg, lp.drop_mult = 0.0f;
    lp.learner.progress = KILN_PROGRESS_STYLE_QUIET, lp.learner.seed = 3;
    if (!ctx) kiln_data_free(d), d = NULL;
    kiln_learner *l = d ? kiln_text_lm_learner_new(ctx, d, v, &lp) : NULL; /* takes d */
    if (!l) {
        fprintf(stderr, "dist_text: rank %d: setup: %s\n", rank, kiln_last_error());
        kiln_ctx_free(ctx);
        return 1;
    }
    double met[2] = {NAN, NAN};
    kiln_status st = kiln_learner_set_comm(l, comm);
    if (!st) st = kiln_learner_fit_one_cycle(l, EPOCHS, 0, 3e-2, NULL);
    if (!st) st = kiln_learner_validate(l, KILN_DATA_SPLIT_VALID, &r->vloss, met);
    if (st) fprintf(stderr, "dist_text: rank %d: %s\n", rank, kiln_last_error());
    r->vacc = met[0];
    size_t np;
    const float *p = kiln_store_flat(kiln_model_store(kiln_learner_model(l)), KILN_STORE_PARAMS, &np);
    r->w = malloc(np * sizeof *r->w), r->n_w = np;
    memcpy(r->w, p, np * sizeof *p);
    kiln_learner_free(l);
    kiln_ctx_free(ctx);
    return st ? 1 : 0;
}

/* The largest |a - b| - (atol + rtol |b|) over the weights (<= 0: within tolerance), *maxabs
 * the largest |a - b|. */
static double excess(const result *a, const result *b, double atol, double rtol, double *maxabs)
{
    double worst = -INFINITY;
    *maxabs = 0;
    for (size_t i = 0; i < a->n_w && i < b->n_w; i++) {
        double diff = fabs((double)a->w[i] - (double)b->w[i]);
        worst = fmax(worst, diff - (atol + rtol * fabs((double)b->w[i])));
        *maxabs = fmax(*maxabs, diff);
    }
    return worst;
}

int main(void)
{
    kiln_comm *c = kiln_comm_world();
    if (!c) {
        fprintf(stderr, "dist_text: %s\n", kiln_last_error());
        return 1;
    }
    g_rank = kiln_comm_rank(c);
    int world = kiln_comm_size(c);
    kiln_comm_set_timeout(c, 120);
    setvbuf(stdout, NULL, _IONBF, 0);
    docs dd;
    make_docs(&dd);
    const char *tok[KILN_TOK_N_SPECIAL + N_WORDS];
    char names[N_WORDS][8];
    for (int i = 0; i < KILN_TOK_N_SPECIAL; i++) tok[i] = kiln_text_special(i);
    for (int i = 0; i < N_WORDS; i++) snprintf(names[i], sizeof names[i], "w%d", i), tok[KILN_TOK_N_SPECIAL + i] = names[i];
    kiln_vocab *v = NULL;
    CHECK(!kiln_vocab_from_list(tok, KILN_TOK_N_SPECIAL + N_WORDS, &v), "vocabulary: %s", kiln_last_error());
    if (g_rank == 0) printf("dist_text: %d rank(s) over %s\n", world, kiln_comm_name(c));
    result rn = {0}, rw = {0}, r1 = {0};
    CHECK(v && run(c, &dd, v, false, &rn) == 0, "the %d-rank run failed", world);
    /* every rank's weights equal rank 0's bit for bit */
    float *w0 = malloc(rn.n_w * sizeof *w0);
    memcpy(w0, rn.w, rn.n_w * sizeof *w0);
    kiln_comm_bcast(c, w0, rn.n_w * sizeof *w0, 0);
    CHECK(!memcmp(w0, rn.w, rn.n_w * sizeof *w0), "this rank's weights differ from rank 0's");
    free(w0);
    CHECK(world == 1 || run(c, &dd, v, true, &rw) == 0, "the %d-rank run on rank 0's rows failed", world);
    if (g_rank == 0) {
        kiln_comm *one = kiln_comm_single();
        CHECK(run(one, &dd, v, false, &r1) == 0, "the one-process run failed");
        kiln_comm_free(one);
        double maxabs, worst = excess(&rn, &r1, 2e-6, 2e-5, &maxabs);
        printf("dist_text: AdamW one-cycle, %d epochs: max |w_N - w_1| = %.3g over %zu weights; valid loss %.9g vs "
               "%.9g, accuracy %.6f vs %.6f\n", EPOCHS, maxabs, rn.n_w, rn.vloss, r1.vloss, rn.vacc, r1.vacc);
        CHECK(rn.n_w == r1.n_w && worst <= 0, "the %d-rank weights are further than atol 2e-6 + rtol 2e-5 from one "
              "process's (by %.3g)", world, worst);
        CHECK(fabs(rn.vloss - r1.vloss) <= 1e-5 * fabs(r1.vloss), "valid loss %.9g vs %.9g", rn.vloss, r1.vloss);
        CHECK(fabs(rn.vacc - r1.vacc) <= 1e-5, "accuracy %.9g vs %.9g", rn.vacc, r1.vacc);
        if (world > 1) { /* the control: the wrong rows are caught */
            double wrong_max, wrong = excess(&rw, &r1, 2e-6, 2e-5, &wrong_max);
            printf("dist_text: control, every rank on rank 0's rows: max |w - w_1| = %.3g\n", wrong_max);
            CHECK(wrong > 0, "ranks that all read rank 0's rows came within tolerance (%.3g): the check cannot fail",
                  wrong_max);
        }
    }
    free(rn.w), free(rw.w), free(r1.w);
    for (int i = 0; i < N_TRAIN + N_VALID; i++) free(dd.ids[i]);
    kiln_vocab_free(v);
    double bad = g_fail;
    kiln_comm_allreduce_sum_f64(c, &bad, 1);
    if (g_rank == 0) printf("dist_text: %s\n", bad > 0 ? "FAILED" : "all checks passed");
    kiln_comm_free(c);
    return bad > 0 ? 1 : 0;
}
