/* Test-time augmentation (learn_tta.h): the combination fastai v2 makes (mean or max of the
 * augmented passes, lerp towards the plain pass by beta), checked by hand; and
 * kiln_learner_tta on a tiny IDX source with a transform that changes the training branch:
 * it equals the combination of get_preds under each vision TTA pass, is deterministic, leaves
 * the source back to normal; a source of the user's own gets TTA through kiln_data_ops.set_tta_pass
 * the same way, and a source without that op is refused. */
#include "util/ku.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

Test(tta, combine_mean_and_beta)
{
    const float plain[3] = {0.2f, 0.5f, 0.3f};
    const float passes[2][3] = {{0.6f, 0.2f, 0.2f}, {0.4f, 0.4f, 0.2f}}; /* mean 0.5, 0.3, 0.2 */
    float out[3];
    cr_assert_eq(kiln_tta_combine(plain, &passes[0][0], 2, 3, 0.25, false, out), KILN_STATUS_OK);
    const double want[3] = {0.75 * 0.5 + 0.25 * 0.2, 0.75 * 0.3 + 0.25 * 0.5, 0.75 * 0.2 + 0.25 * 0.3};
    /* f32 outputs of a few f32 products and sums vs the same in double: 1e-6 (u = 6e-8);
     * beta 1 returns the plain pass itself: 1e-7 */
    for (int i = 0; i < 3; i++) cr_expect_float_eq(out[i], want[i], 1e-6, "item %d: %g vs %g", i, out[i], want[i]);
    /* probabilities stay a distribution */
    cr_expect_float_eq(out[0] + out[1] + out[2], 1.0, 1e-6);
    /* beta 0: the augmented mean alone; beta 1: the plain pass */
    cr_assert_eq(kiln_tta_combine(plain, &passes[0][0], 2, 3, 0.0, false, out), KILN_STATUS_OK);
    cr_expect_float_eq(out[0], 0.5, 1e-6);
    cr_expect_float_eq(out[1], 0.3, 1e-6);
    cr_assert_eq(kiln_tta_combine(plain, &passes[0][0], 2, 3, 1.0, false, out), KILN_STATUS_OK);
    for (int i = 0; i < 3; i++) cr_expect_float_eq(out[i], plain[i], 1e-7);
}

Test(tta, combine_max)
{
    const float plain[4] = {0.1f, 0.9f, 0.5f, 0.0f};
    const float passes[3][4] = {{0.3f, 0.1f, 0.4f, 0.2f}, {0.7f, 0.2f, 0.1f, 0.0f}, {0.2f, 0.6f, 0.3f, 0.1f}};
    float out[4];
    cr_assert_eq(kiln_tta_combine(plain, &passes[0][0], 3, 4, 0.25, true, out), KILN_STATUS_OK);
    const double mx[4] = {0.7, 0.6, 0.4, 0.2};
    for (int i = 0; i < 4; i++) {
        double want = 0.75 * mx[i] + 0.25 * plain[i];
        cr_expect_float_eq(out[i], want, 1e-6, "item %d: %g vs %g", i, out[i], want);
    }
    /* one pass: mean = max = that pass; out may be plain itself */
    float inout[4];
    memcpy(inout, plain, sizeof inout);
    cr_assert_eq(kiln_tta_combine(inout, &passes[1][0], 1, 4, 0.5, false, inout), KILN_STATUS_OK);
    for (int i = 0; i < 4; i++) cr_expect_float_eq(inout[i], 0.5 * passes[1][i] + 0.5 * plain[i], 1e-6);
}

Test(tta, combine_rejects_bad_arguments)
{
    float a[2] = {0}, b[2] = {0}, o[2];
    cr_expect_eq(kiln_tta_combine(a, b, 0, 2, 0.25, false, o), KILN_STATUS_INVALID);
    ku_expect_error("n 0", "n = 0");
    cr_expect_eq(kiln_tta_combine(a, b, 1, 2, 1.5, false, o), KILN_STATUS_INVALID);
    ku_expect_error("beta", "beta 1.5");
    cr_expect_eq(kiln_tta_combine(a, b, 1, 2, NAN, false, o), KILN_STATUS_INVALID);
    cr_expect_eq(kiln_tta_combine(NULL, b, 1, 2, 0.25, false, o), KILN_STATUS_INVALID);
}

/* ---- the Learner path -------------------------------------------------------------------------- */

static char g_dir[64];

static void write_idx(const char *path, uint32_t magic, const uint32_t *dims, int nd, const uint8_t *data, size_t n)
{
    uint8_t hdr[16];
    for (int i = 0; i < 4; i++) hdr[i] = (uint8_t)(magic >> (24 - 8 * i));
    for (int d = 0; d < nd; d++)
        for (int i = 0; i < 4; i++) hdr[4 + 4 * d + i] = (uint8_t)(dims[d] >> (24 - 8 * i));
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    fwrite(hdr, 1, 4 + 4 * (size_t)nd, f);
    fwrite(data, 1, n, f);
    fclose(f);
}

/* n 16x16 images, labels i % 2: class 1 bright on the left, class 0 on the right. */
static void idx_pair(const char *pre, int n)
{
    enum { S = 16 };
    uint8_t *img = malloc((size_t)n * S * S), lab[64];
    for (int i = 0; i < n; i++) {
        lab[i] = (uint8_t)(i % 2);
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++)
                img[(size_t)i * S * S + y * S + x] = (uint8_t)(((x < S / 2) == (i % 2) ? 200 : 30) + (i * 7 + y) % 20);
    }
    char a[128], b[128];
    snprintf(a, sizeof a, "%s/%s-images-idx3-ubyte", g_dir, pre);
    snprintf(b, sizeof b, "%s/%s-labels-idx1-ubyte", g_dir, pre);
    write_idx(a, 0x803, (uint32_t[]){(uint32_t)n, S, S}, 3, img, (size_t)n * S * S);
    write_idx(b, 0x801, (uint32_t[]){(uint32_t)n}, 1, lab, (size_t)n);
    free(img);
}

/* Training branch only: mirrors the image left-right when the seed's draw says so, and
 * dims it by a seed-dependent factor, so passes differ from each other and from valid. */
static kiln_status test_tfm(void *user, float *img, int c, int h, int w, uint64_t seed, uint64_t counter, bool train)
{
    (void)user;
    if (!train) return KILN_STATUS_OK;
    float u = kiln_philox_uniform(seed, counter);
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < h; y++) {
            float *row = img + ((size_t)ch * h + y) * w;
            if (u < 0.5f)
                for (int x = 0; x < w / 2; x++) {
                    float t = row[x];
                    row[x] = row[w - 1 - x], row[w - 1 - x] = t;
                }
            for (int x = 0; x < w; x++) row[x] *= 0.6f + 0.4f * u;
        }
    return KILN_STATUS_OK;
}

static void setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/kiln_tta.XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL);
    idx_pair("train", 24);
    idx_pair("t10k", 10);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    (void)system(cmd);
}

Test(tta, learner_tta_matches_the_passes, .init = setup, .fini = teardown)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_vision_params vp = kiln_vision_default_params();
    vp.batch_size = 8, vp.valid_batch_size = 4, vp.tfm = test_tfm, vp.n_workers = 2;
    kiln_data *d = kiln_vision_open(g_dir, &vp);
    cr_assert(d, "%s", kiln_last_error());
    kiln_model *m = kiln_simple_cnn_new(1, 2);
    cr_assert(m && kiln_model_alloc(m, ctx) == KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_learner_params lp = kiln_learner_default_params();
    lp.progress = KILN_PROGRESS_STYLE_QUIET;
    kiln_learner *l = kiln_learner_new(ctx, m, d, NULL, &lp);
    cr_assert(l, "%s", kiln_last_error());
    kiln_metric acc = kiln_metric_make(KILN_METRIC_KIND_ACCURACY);
    cr_assert_eq(kiln_learner_add_metric(l, &acc), KILN_STATUS_OK);
    cr_assert_eq(kiln_learner_fit_one_cycle(l, 1, 0, 1e-2, NULL), KILN_STATUS_OK, "%s", kiln_last_error());

    kiln_preds t1, t2, plain, pass[3];
    cr_assert_eq(kiln_learner_tta(l, KILN_DATA_SPLIT_VALID, 3, 0.25, false, &t1), KILN_STATUS_OK, "%s",
                 kiln_last_error());
    cr_assert_eq(t1.n, 10);
    cr_assert_eq(t1.c, 2);
    kiln_vision_data *v = kiln_vision_data_of(d);
    cr_expect_eq(kiln_vision_data_tta_pass(v), -1, "the source is back to normal");
    /* by hand: the plain pass, then each TTA pass of the source */
    cr_assert_eq(kiln_learner_get_preds(l, KILN_DATA_SPLIT_VALID, &plain), KILN_STATUS_OK);
    float *all = malloc(sizeof(float) * 3 * 20);
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(kiln_vision_data_set_tta(v, k), KILN_STATUS_OK);
        cr_assert_eq(kiln_learner_get_preds(l, KILN_DATA_SPLIT_VALID, &pass[k]), KILN_STATUS_OK);
        memcpy(all + k * 20, pass[k].probs, sizeof(float) * 20);
    }
    cr_assert_eq(kiln_vision_data_set_tta(v, -1), KILN_STATUS_OK);
    bool differ = false;
    for (int i = 0; i < 20; i++) differ |= fabsf(pass[0].probs[i] - plain.probs[i]) > 1e-6f; /* above f32 noise */
    cr_expect(differ, "the augmented pass equals the plain one: the transform did not run on valid");
    float want[20];
    cr_assert_eq(kiln_tta_combine(plain.probs, all, 3, 20, 0.25, false, want), KILN_STATUS_OK);
    /* the same f32 combine on the same passes: 1e-6 only as a floor */
    for (int i = 0; i < 20; i++) cr_expect_float_eq(t1.probs[i], want[i], 1e-6, "prob %d", i);
    /* the same again (deterministic passes), and the loss is the loss of the mixed probs */
    cr_assert_eq(kiln_learner_tta(l, KILN_DATA_SPLIT_VALID, 3, 0.25, false, &t2), KILN_STATUS_OK);
    cr_expect_eq(memcmp(t1.probs, t2.probs, sizeof(float) * 20), 0, "TTA is not deterministic");
    double ce = 0;
    for (int i = 0; i < 10; i++) ce -= log(t1.probs[i * 2 + ((int64_t *)t1.targets)[i]]);
    /* the loss runs the mixed probabilities back through log() into the f32 cross-entropy
     * (rounding ~u*|log p| per item, ~1e-6): 1e-4 leaves a wide margin */
    cr_expect_float_eq(t1.loss, ce / 10, 1e-4, "loss %g vs %g", t1.loss, ce / 10);
    double sl, sm;
    cr_assert_eq(kiln_learner_score(l, &t1, &sl, &sm), KILN_STATUS_OK);
    cr_expect_float_eq(sl, t1.loss, 1e-6); /* the same computation again */
    cr_expect(sm >= 0 && sm <= 1);
    /* max */
    kiln_preds tm;
    cr_assert_eq(kiln_learner_tta(l, KILN_DATA_SPLIT_VALID, 3, 0.25, true, &tm), KILN_STATUS_OK);
    cr_assert_eq(kiln_tta_combine(plain.probs, all, 3, 20, 0.25, true, want), KILN_STATUS_OK);
    for (int i = 0; i < 20; i++) cr_expect_float_eq(tm.probs[i], want[i], 1e-6, "max prob %d", i);
    /* bad arguments */
    kiln_preds bad;
    cr_expect_eq(kiln_learner_tta(l, KILN_DATA_SPLIT_VALID, 0, 0.25, false, &bad), KILN_STATUS_INVALID);

    for (int k = 0; k < 3; k++) kiln_preds_free(&pass[k]);
    kiln_preds_free(&t1), kiln_preds_free(&t2), kiln_preds_free(&tm), kiln_preds_free(&plain);
    free(all);
    kiln_learner_free(l);
    kiln_model_free(m);
    kiln_data_free(d);
    ku_ctx_free(ctx);
}

/* A source of the user's own (wrapping a tensor source) whose TTA pass k scales x by k + 2:
 * kiln_learner_tta works through kiln_data_ops.set_tta_pass, not through vision. */
typedef struct scaled {
    kiln_data *inner;
    int pass;
} scaled;

static int64_t sc_items(void *st, kiln_data_split s) { return kiln_data_n_items(((scaled *)st)->inner, s); }
static int64_t sc_batches(void *st, kiln_data_split s) { return kiln_data_n_batches(((scaled *)st)->inner, s); }
static kiln_status sc_tta(void *st, int pass)
{
    ((scaled *)st)->pass = pass;
    return KILN_STATUS_OK;
}
static void sc_free(void *st)
{
    kiln_data_free(((scaled *)st)->inner);
    free(st);
}
static kiln_status sc_get(void *st, kiln_data_split s, int64_t i, kiln_ctx *ctx, kiln_tensor **x, kiln_tensor **y)
{
    scaled *sc = st;
    kiln_status r = kiln_data_get_batch(sc->inner, s, i, ctx, x, y);
    float *px = r ? NULL : (*x)->data; /* (B, 3), fresh in the arena */
    for (int64_t j = 0; px && sc->pass >= 0 && j < kiln_numel(*x); j++) px[j] *= (float)(sc->pass + 2);
    return r;
}

Test(tta, any_source_with_tta_passes)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_tensor *x = kiln_randn(ctx, 2, (int64_t[]){12, 3}, 0, 1); /* (12, 3) */
    kiln_tensor *y = kiln_zeros(ctx, KILN_DTYPE_I64, 1, (int64_t[]){12});
    for (int i = 0; i < 12; i++) ((int64_t *)y->data)[i] = i % 2;
    scaled *sc = calloc(1, sizeof *sc);
    sc->pass = -1;
    kiln_tensor_data_params tp = kiln_tensor_data_default_params();
    tp.batch_size = 5;
    cr_assert((sc->inner = kiln_tensor_data_new(x, y, x, y, &tp)), "%s", kiln_last_error());
    kiln_data_ops ops = {.n_items = sc_items, .n_batches = sc_batches, .get_batch = sc_get, .free = sc_free,
                         .set_tta_pass = sc_tta};
    kiln_data *d = kiln_data_new(&ops, sc);
    cr_assert(d && kiln_data_has_tta(d));
    kiln_model *m = kiln_mlp_new(3, 0, NULL, 2, 0, false);
    cr_assert(m && kiln_model_alloc(m, ctx) == KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_learner_params lp = kiln_learner_default_params();
    lp.progress = KILN_PROGRESS_STYLE_QUIET;
    kiln_learner *l = kiln_learner_new(ctx, m, d, NULL, &lp);
    cr_assert(l, "%s", kiln_last_error());
    cr_assert_eq(kiln_data_set_tta_pass(d, 1), KILN_STATUS_OK); /* left on: tta turns it off for the plain pass */
    kiln_preds t, plain, pass[2];
    cr_assert_eq(kiln_learner_tta(l, KILN_DATA_SPLIT_VALID, 2, 0.25, false, &t), KILN_STATUS_OK, "%s",
                 kiln_last_error());
    cr_expect_eq(sc->pass, -1, "the source is back to plain batches");
    cr_assert_eq(kiln_learner_get_preds(l, KILN_DATA_SPLIT_VALID, &plain), KILN_STATUS_OK);
    float all[2 * 24], want[24];
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(kiln_data_set_tta_pass(d, k), KILN_STATUS_OK);
        cr_assert_eq(kiln_learner_get_preds(l, KILN_DATA_SPLIT_VALID, &pass[k]), KILN_STATUS_OK);
        memcpy(all + k * 24, pass[k].probs, sizeof(float) * 24);
    }
    cr_assert_eq(kiln_data_set_tta_pass(d, -1), KILN_STATUS_OK);
    bool differ = false;
    for (int i = 0; i < 24; i++) differ |= fabsf(all[i] - plain.probs[i]) > 1e-6f;
    cr_expect(differ, "pass 0 equals the plain pass: the source's pass did not reach the batches");
    cr_assert_eq(kiln_tta_combine(plain.probs, all, 2, 24, 0.25, false, want), KILN_STATUS_OK);
    for (int i = 0; i < 24; i++) cr_expect_float_eq(t.probs[i], want[i], 1e-6, "prob %d", i); /* same f32 math */
    cr_expect_eq(kiln_data_set_tta_pass(d, -2), KILN_STATUS_INVALID);
    kiln_preds_free(&t), kiln_preds_free(&plain), kiln_preds_free(&pass[0]), kiln_preds_free(&pass[1]);
    kiln_learner_free(l);
    kiln_model_free(m);
    kiln_data_free(d);
    ku_ctx_free(ctx);
}

Test(tta, needs_a_source_with_tta_passes)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_tensor *x = kiln_zeros(ctx, KILN_DTYPE_F32, 2, (int64_t[]){8, 3});
    kiln_tensor *y = kiln_zeros(ctx, KILN_DTYPE_I64, 1, (int64_t[]){8});
    kiln_data *d = kiln_tensor_data_new(x, y, x, y, NULL);
    cr_assert(d, "%s", kiln_last_error());
    cr_expect(!kiln_data_has_tta(d));
    cr_expect_eq(kiln_data_set_tta_pass(d, 0), KILN_STATUS_UNSUPPORTED);
    ku_expect_error("no test-time augmentation", "a TTA pass on tensor data");
    kiln_model *m = kiln_mlp_new(3, 0, NULL, 2, 0, false);
    cr_assert(m && kiln_model_alloc(m, ctx) == KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_learner_params lp = kiln_learner_default_params();
    lp.progress = KILN_PROGRESS_STYLE_QUIET;
    kiln_learner *l = kiln_learner_new(ctx, m, d, NULL, &lp);
    cr_assert(l);
    kiln_preds p;
    cr_expect_eq(kiln_learner_tta(l, KILN_DATA_SPLIT_VALID, 4, 0.25, false, &p), KILN_STATUS_UNSUPPORTED);
    ku_expect_error("no test-time augmentation", "tta on tensor data");
    kiln_learner_free(l);
    kiln_model_free(m);
    kiln_data_free(d);
    ku_ctx_free(ctx);
}
