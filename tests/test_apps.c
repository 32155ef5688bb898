/* The application layer (kiln/apps.h) on a small image folder made here: the architecture
 * registry; a vision learner trained by the shared driver writes every file; export / load
 * gives the same predictions; kiln_learner_predict on files equals the validation split's
 * predictions, plain and with TTA, one at a time or many; `kiln vision predict --probs`
 * prints the library's numbers; a model exported by an earlier kiln (tests/data/models/) still
 * loads and predicts what it did; recipes check their fields; bad use is refused by name. */
#include "util/ku_cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef __SANITIZE_ADDRESS__
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\n"; }
#endif

static char g_dir[64];

static const char *P(const char *rel)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, rel);
    return buf[k];
}

static void setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/kiln_apps.XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL);
    ku_make_image_folder(P("img"));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    (void)system(cmd);
}
TestSuite(apps, .init = setup, .fini = teardown);

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Small and deterministic: batches of 4, the loader on this thread. */
static kiln_vision_params small_params(void)
{
    kiln_vision_params vp = kiln_vision_default_params();
    vp.batch_size = 4;
    vp.n_workers = 0;
    return vp;
}

/* A simple-cnn learner on g_dir/img with fastai's augmentation. */
static kiln_learner *make_learner(kiln_ctx *ctx)
{
    kiln_vision_params vp = small_params();
    kiln_augment_params aug = kiln_augment_default_params();
    kiln_data *d = kiln_vision_dls_open(P("img"), &vp, &aug);
    cr_assert(d, "%s", kiln_last_error());
    kiln_vision_learner_params lp = kiln_vision_learner_default_params();
    lp.learner.progress = KILN_PROGRESS_STYLE_QUIET;
    kiln_learner *l = kiln_vision_learner_new(ctx, d, "simple-cnn", &lp);
    cr_assert(l, "%s", kiln_last_error());
    return l;
}

static void expect_preds_eq(const kiln_preds *a, const kiln_preds *b, double tol, const char *what)
{
    cr_assert_eq(a->n, b->n, "%s: %lld vs %lld items", what, (long long)a->n, (long long)b->n);
    cr_assert_eq(a->c, b->c, "%s: %lld vs %lld classes", what, (long long)a->c, (long long)b->c);
    ku_expect_arrays(a->probs, b->probs, a->n * a->c, tol, 0, what);
}

/* ---- the architecture registry -------------------------------------------------------------- */

Test(apps, arch_registry_is_one_list)
{
    cr_expect_eq(kiln_arch_count(), 5);
    cr_expect_str_eq(kiln_arch_names(), "simple-cnn, simple-resnet, resnet18, resnet34 or resnet50");
    for (int i = 0; i < kiln_arch_count(); i++) {
        const kiln_arch *a = kiln_arch_at(i);
        cr_expect_eq(kiln_arch_find(a->name), a, "%s is not found by name", a->name);
    }
    cr_expect_null(kiln_arch_at(5));
    cr_expect_null(kiln_arch_find("vgg16"));
    ku_expect_error("arch 'vgg16' is not simple-cnn, simple-resnet, resnet18, resnet34 or resnet50", "unknown arch");
    cr_expect_eq(kiln_last_status(), KILN_STATUS_INVALID);
    kiln_ctx *ctx = ku_ctx();
    cr_expect_null(kiln_arch_model_new(kiln_arch_find("simple-cnn"), ctx, 1, 64, 10, KILN_LAYOUT_AUTO));
    ku_expect_error("simple-cnn takes images of at most 32x32 (these are 64x64)", "too large for simple-cnn");
    kiln_model *m = kiln_arch_model_new(kiln_arch_find("simple-cnn"), ctx, 1, 28, 10, KILN_LAYOUT_AUTO);
    cr_assert(m, "%s", kiln_last_error());
    cr_expect(kiln_model_channels_last(m), "auto runs simple-cnn channels-last");
    kiln_model_free(m);
    m = kiln_arch_model_new(kiln_arch_find("resnet18"), ctx, 3, 32, 4, KILN_LAYOUT_AUTO);
    cr_assert(m, "%s", kiln_last_error());
    cr_expect_not(kiln_model_channels_last(m), "auto runs the ResNets nchw");
    kiln_model_free(m);
    ku_ctx_free(ctx);
}

/* ---- train, export, load, predict ----------------------------------------------------------- */

Test(apps, train_export_load_predict_agree)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_learner *l = make_learner(ctx);
    cr_expect_str_eq(kiln_learner_task(l), "vision");
    cr_expect_eq(kiln_learner_n_classes(l), 2);
    kiln_train_params tp = kiln_train_default_params();
    tp.recipe.epochs = 2;
    tp.out = P("m");
    tp.tta.tta = true, tp.tta.tta_n = 2;
    kiln_train_result r;
    cr_assert_eq(kiln_learner_train(l, &tp, &r), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(r.epochs, 2);
    cr_expect(r.tta && isfinite(r.tta_loss), "TTA was evaluated");
    cr_expect(r.items_per_s > 0);
    const char *files[] = {"m/model.safetensors", "m/model.json", "m/history.csv", "m/metrics.json",
                           "m/checkpoint.safetensors"};
    for (int i = 0; i < 5; i++) cr_expect(exists(P(files[i])), "%s was not written", files[i]);
    if (kiln_plot_available()) cr_expect(exists(P("m/losses.png")) && exists(P("m/lr.png")));
    kiln_train_result_free(&r);

    /* the trained learner's validation predictions ... */
    kiln_preds a;
    cr_assert_eq(kiln_learner_predict_split(l, KILN_DATA_SPLIT_VALID, NULL, &a), KILN_STATUS_OK, "%s", kiln_last_error());
    /* ... are the loaded learner's, on the same data opened as its model.json says */
    kiln_learner *l2 = kiln_learner_load(ctx, P("m"));
    cr_assert(l2, "%s", kiln_last_error());
    cr_expect_null(kiln_learner_data(l2), "a loaded learner has no data");
    kiln_vision_params vp = small_params();
    cr_assert_eq(kiln_learner_open_data(l2, P("img"), &vp, true), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_preds b;
    cr_assert_eq(kiln_learner_predict_split(l2, KILN_DATA_SPLIT_VALID, NULL, &b), KILN_STATUS_OK, "%s", kiln_last_error());
    expect_preds_eq(&a, &b, 1e-6, "loaded vs trained");

    /* predictions on the validation files, in order, all at once and one at a time */
    kiln_vision_data *v = kiln_vision_data_of(kiln_learner_data(l2));
    int64_t n = b.n;
    const char **items = malloc(sizeof *items * (size_t)n);
    for (int64_t i = 0; i < n; i++) items[i] = kiln_vision_data_path(v, KILN_DATA_SPLIT_VALID, i);
    kiln_preds c;
    cr_assert_eq(kiln_learner_predict(l2, items, n, NULL, &c), KILN_STATUS_OK, "%s", kiln_last_error());
    expect_preds_eq(&b, &c, 1e-6, "predict(files) vs the valid split");
    for (int64_t i = 0; i < n; i++) {
        kiln_preds one;
        cr_assert_eq(kiln_learner_predict(l2, items + i, 1, NULL, &one), KILN_STATUS_OK, "%s", kiln_last_error());
        cr_assert_eq(one.n, 1);
        ku_expect_arrays(one.probs, b.probs + i * b.c, b.c, 1e-6, 0, items[i]);
        kiln_preds_free(&one);
    }
    /* with TTA: item i is augmented as item i of the validation split */
    kiln_predict_params tta = kiln_predict_default_params();
    tta.tta = true, tta.tta_n = 3;
    kiln_preds d, e;
    cr_assert_eq(kiln_learner_predict_split(l2, KILN_DATA_SPLIT_VALID, &tta, &d), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_learner_predict(l2, items, n, &tta, &e), KILN_STATUS_OK, "%s", kiln_last_error());
    expect_preds_eq(&d, &e, 1e-6, "TTA: predict(files) vs the valid split");
    double diff = 0;
    for (int64_t i = 0; i < d.n * d.c; i++) diff = fmax(diff, fabs(d.probs[i] - b.probs[i]));
    cr_expect_gt(diff, 1e-4, "TTA passes changed nothing: the augmentation was not applied");
    /* the learner keeps its own data after predicting on files */
    cr_expect_eq(kiln_learner_data(l2) != NULL && kiln_vision_data_of(kiln_learner_data(l2)) == v, true);

    /* interpretation of the same predictions */
    kiln_interp it;
    cr_assert_eq(kiln_learner_interpret(l2, KILN_DATA_SPLIT_VALID, NULL, &it), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(it.n, n);
    int64_t total = 0;
    for (int k = 0; k < 4; k++) total += it.confusion[k];
    cr_expect_eq(total, n);
    kiln_interp_free(&it);

    free(items);
    kiln_preds_free(&a), kiln_preds_free(&b), kiln_preds_free(&c), kiln_preds_free(&d), kiln_preds_free(&e);
    kiln_learner_free(l2);
    kiln_learner_free(l);
    ku_ctx_free(ctx);
}

/* The CLI's numbers are the library's: `kiln vision predict --probs` on a validation file
 * prints the probabilities kiln_learner_predict_split gives that item. */
Test(apps, cli_predict_prints_the_library_probabilities)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' vision fit '%s' --out '%s' --bs 4 --epochs 1 --threads 1 --workers 0 --quiet "
             "> /dev/null 2>&1", KILN_CLI_PATH, P("img"), P("m"));
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    kiln_ctx *ctx = ku_ctx();
    kiln_learner *l = kiln_learner_load(ctx, P("m"));
    cr_assert(l, "%s", kiln_last_error());
    kiln_vision_params vp = small_params();
    cr_assert_eq(kiln_learner_open_data(l, P("img"), &vp, false), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_preds p;
    cr_assert_eq(kiln_learner_predict_split(l, KILN_DATA_SPLIT_VALID, NULL, &p), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_vision_data *v = kiln_vision_data_of(kiln_learner_data(l));
    for (int64_t i = 0; i < p.n; i += 3) {
        const char *file = kiln_vision_data_path(v, KILN_DATA_SPLIT_VALID, i);
        snprintf(cmd, sizeof cmd, "'%s' vision predict '%s' '%s' --probs --threads 1 > '%s' 2>&1", KILN_CLI_PATH, P("m"),
                 file, P("out"));
        cr_assert_eq(system(cmd), 0, "%s", cmd);
        char *out = ku_slurp(P("out"));
        for (int k = 0; k < p.c; k++) {
            char key[64];
            snprintf(key, sizeof key, " %s=", kiln_learner_classes(l)[k]);
            const char *at = strstr(out, key);
            cr_assert(at, "no %s in '%s'", key, out);
            double got = strtod(at + strlen(key), NULL);
            cr_expect(fabs(got - p.probs[i * p.c + k]) <= 1e-6, "%s class %d: CLI %.9g, library %.9g", file, k, got,
                      (double)p.probs[i * p.c + k]);
        }
        free(out);
    }
    kiln_preds_free(&p);
    kiln_learner_free(l);
    ku_ctx_free(ctx);
}

/* ---- models exported by earlier kilns -------------------------------------------------------- */

/* tests/data/models/v1 was exported by this layer (format_version 1) and legacy/ holds the
 * same weights with the model.json kiln wrote before it ("kiln-vision-model"); both must load
 * and give sample.png the probabilities recorded when they were made (expected.txt). A later
 * kiln that adds fields must keep this test green. */
Test(apps, committed_models_still_load)
{
    kiln_ctx *ctx = ku_ctx();
    const char *dirs[] = {KILN_TEST_DATA "/models/v1", KILN_TEST_DATA "/models/legacy"};
    char *want = ku_slurp(KILN_TEST_DATA "/models/expected.txt");
    float expect[2];
    cr_assert_eq(sscanf(want, "%f %f", &expect[0], &expect[1]), 2, "expected.txt: %s", want);
    free(want);
    for (int i = 0; i < 2; i++) {
        kiln_learner *l = kiln_learner_load(ctx, dirs[i]);
        cr_assert(l, "%s: %s", dirs[i], kiln_last_error());
        const char *item = KILN_TEST_DATA "/models/sample.png";
        kiln_preds p;
        cr_assert_eq(kiln_learner_predict(l, &item, 1, NULL, &p), KILN_STATUS_OK, "%s", kiln_last_error());
        ku_expect_arrays(p.probs, expect, 2, 1e-5, 0, dirs[i]);
        kiln_preds_free(&p);
        kiln_learner_free(l);
    }
    ku_ctx_free(ctx);
}

/* KILN_APPS_REGEN=DIR build/test_apps --filter 'apps/regen*' writes DIR/v1 (and the sample and
 * expected probabilities) from a fresh 1-epoch fit; tests/data/models/README says how legacy/
 * was derived. Skipped otherwise. */
Test(apps, regen_committed_models)
{
    const char *out = getenv("KILN_APPS_REGEN");
    if (!out) return;
    kiln_ctx *ctx = ku_ctx();
    kiln_learner *l = make_learner(ctx);
    cr_assert_eq(kiln_learner_fit_one_cycle(l, 1, 0, 1e-2, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    char dir[1024], cmd[2200];
    snprintf(dir, sizeof dir, "%s/v1", out);
    cr_assert_eq(kiln_learner_export(l, dir), KILN_STATUS_OK, "%s", kiln_last_error());
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/sample.png'", P("img/valid/left/08.png"), out);
    cr_assert_eq(system(cmd), 0);
    kiln_learner *l2 = kiln_learner_load(ctx, dir);
    cr_assert(l2, "%s", kiln_last_error());
    char item[1100];
    snprintf(item, sizeof item, "%s/sample.png", out);
    const char *items[] = {item};
    kiln_preds p;
    cr_assert_eq(kiln_learner_predict(l2, items, 1, NULL, &p), KILN_STATUS_OK, "%s", kiln_last_error());
    char path[1100];
    snprintf(path, sizeof path, "%s/expected.txt", out);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fprintf(f, "%.9g %.9g\n", p.probs[0], p.probs[1]);
    fclose(f);
    kiln_preds_free(&p);
    kiln_learner_free(l2);
    kiln_learner_free(l);
    ku_ctx_free(ctx);
}

/* ---- recipes ----------------------------------------------------------------------------------- */

Test(apps, recipes_check_their_fields)
{
    int64_t e;
    kiln_recipe r = kiln_recipe_make(KILN_RECIPE_SGDR);
    cr_assert_eq(kiln_recipe_epochs(&r, &e), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(e, 7, "sgdr 3 cycles of 1, 2, 4 epochs");
    r.epochs = 5;
    cr_expect_eq(kiln_recipe_epochs(&r, &e), KILN_STATUS_INVALID);
    ku_expect_error("sgdr: epochs 5 differs from the cycles' 7 epochs", "sgdr epochs");
    r = kiln_recipe_make(KILN_RECIPE_CLR);
    r.epochs = 6, r.cycle_len = 2;
    cr_assert_eq(kiln_recipe_epochs(&r, &e), KILN_STATUS_OK);
    cr_expect_eq(e, 6);
    r.epochs = 1;
    cr_expect_eq(kiln_recipe_epochs(&r, &e), KILN_STATUS_INVALID);
    ku_expect_error("clr: epochs 1 is shorter than one cycle of cycle_len 2", "clr too short");
    r = kiln_recipe_make(KILN_RECIPE_ONE_CYCLE);
    r.lr = 0;
    cr_expect_eq(kiln_recipe_epochs(&r, &e), KILN_STATUS_INVALID);
    ku_expect_error("one-cycle: lr 0 must be > 0", "lr 0");
    kiln_recipe_kind k;
    cr_expect_eq(kiln_recipe_parse("fine-tune", &k), KILN_STATUS_OK);
    cr_expect_eq(k, KILN_RECIPE_FINE_TUNE);
    cr_expect_eq(kiln_recipe_parse("warmup", &k), KILN_STATUS_INVALID);
    ku_expect_error("schedule 'warmup' is not one-cycle, sgdr, clr, const, fine-tune or ulmfit", "unknown recipe");
}

/* fastai fine_tune: a frozen phase (freeze_epochs) then the unfrozen one, each a one-cycle;
 * the recorder holds both, the frozen one peaking at base_lr, the unfrozen one at base_lr / 2. */
Test(apps, fine_tune_runs_both_phases)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_learner *l = make_learner(ctx);
    cr_assert_eq(kiln_learner_fine_tune(l, 1, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    const kiln_recorder *rec = kiln_learner_recorder(l);
    int64_t nb = kiln_recorder_n_batches(rec);
    cr_assert_gt(nb, 0);
    cr_assert_eq(kiln_recorder_n_epochs(rec), 2, "the frozen epoch and the unfrozen one");
    cr_assert_eq(nb % 2, 0);
    const double *lrs = kiln_recorder_lrs(rec, kiln_recorder_n_groups(rec) - 1);
    double peak[2] = {0, 0};
    for (int64_t i = 0; i < nb; i++) peak[i >= nb / 2] = fmax(peak[i >= nb / 2], lrs[i]);
    cr_expect(peak[0] > 1.5e-3 && peak[0] <= 2e-3, "the frozen phase warms up to base_lr = 2e-3, not %g", peak[0]);
    cr_expect(fabs(peak[1] - 1e-3) < 1e-4, "the unfrozen phase peaks at base_lr / 2 = 1e-3, not %g", peak[1]);
    kiln_learner_free(l);
    ku_ctx_free(ctx);
}

/* ---- bad use ----------------------------------------------------------------------------------- */

Test(apps, bad_use_is_refused_by_name)
{
    kiln_ctx *ctx = ku_ctx();
    /* a learner not made by a task's constructor cannot be exported */
    kiln_learner *l = make_learner(ctx);
    kiln_train_params tp = kiln_train_default_params();
    kiln_train_result r;
    cr_expect_eq(kiln_learner_train(l, &tp, &r), KILN_STATUS_INVALID);
    ku_expect_error("out (the output folder) is required", "train without out");
    cr_expect_eq(kiln_learner_export(l, P("e")), KILN_STATUS_OK, "%s", kiln_last_error());
    /* missing folder, newer format, another task's classes */
    cr_expect_null(kiln_learner_load(ctx, P("nothere")));
    ku_expect_error("nothere/model.json", "missing model");
    char *mj = ku_slurp(P("e/model.json"));
    char *at = strstr(mj, "\"format_version\":\t1");
    cr_assert(at, "no format_version in %s", mj);
    at[strlen("\"format_version\":\t")] = '7';
    ku_write_bytes(P("e/model.json"), mj, strlen(mj));
    free(mj);
    cr_expect_null(kiln_learner_load(ctx, P("e")));
    ku_expect_error("format_version 7 is newer than this kiln reads (1): update kiln", "newer format");
    /* predict names an unreadable file */
    const char *bad = P("img/nothere.png");
    kiln_preds p;
    cr_expect_neq(kiln_learner_predict(l, &bad, 1, NULL, &p), KILN_STATUS_OK);
    ku_expect_error("nothere.png", "missing image");
    kiln_learner_free(l);
    /* one class: refused, and the data freed with the error (ASan's leak check) */
    const char *csv = "name,label\nimg/train/left/00.png,left\nimg/train/left/01.png,left\n";
    ku_write_bytes(P("one.csv"), csv, strlen(csv));
    kiln_vision_params vp = small_params();
    vp.batch_size = 1;
    vp.valid_pct = 0;
    kiln_data *d = kiln_vision_dls_open(P("one.csv"), &vp, NULL);
    cr_assert(d, "%s", kiln_last_error());
    cr_expect_null(kiln_vision_learner_new(ctx, d, "simple-cnn", NULL));
    ku_expect_error("1 class(es); a classifier needs at least 2", "one class");
    /* a plain learner has no task */
    kiln_model *m = kiln_arch_model_new(kiln_arch_find("simple-cnn"), ctx, 1, 16, 2, KILN_LAYOUT_AUTO);
    kiln_learner *pl = kiln_learner_new(ctx, m, NULL, NULL, NULL);
    cr_assert(pl, "%s", kiln_last_error());
    cr_expect_null(kiln_learner_task(pl));
    cr_expect_eq(kiln_learner_export(pl, P("x")), KILN_STATUS_STATE);
    ku_expect_error("not made by a task's constructor", "plain learner export");
    cr_expect_eq(kiln_learner_fit_one_cycle(pl, 1, 0, 1e-2, NULL), KILN_STATUS_STATE);
    ku_expect_error("the learner has no data", "fit without data");
    kiln_learner_free(pl);
    kiln_model_free(m);
    ku_ctx_free(ctx);
}

/* A message does not outlive the call that failed: the next call that succeeds clears it. */
Test(apps, success_clears_the_last_error)
{
    kiln_ctx *ctx = ku_ctx();
    cr_expect_null(kiln_learner_load(ctx, P("nothere")));
    cr_expect_neq(kiln_last_status(), KILN_STATUS_OK);
    kiln_learner *l = kiln_learner_load(ctx, KILN_TEST_DATA "/models/v1");
    cr_assert(l, "%s", kiln_last_error());
    cr_expect_str_eq(kiln_last_error(), "", "load succeeded but left '%s'", kiln_last_error());
    cr_expect_eq(kiln_last_status(), KILN_STATUS_OK);
    const char *bad = P("nothere.png"), *good = KILN_TEST_DATA "/models/sample.png";
    kiln_preds p;
    cr_expect_neq(kiln_learner_predict(l, &bad, 1, NULL, &p), KILN_STATUS_OK);
    cr_expect_eq(kiln_learner_predict(l, &good, 1, NULL, &p), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_str_eq(kiln_last_error(), "", "predict succeeded but left '%s'", kiln_last_error());
    kiln_preds_free(&p);
    kiln_learner_free(l);
    ku_ctx_free(ctx);
}

/* The optimizer belongs to no context: a learner sets it to its context's thread count, so
 * `--threads 1` keeps the optimizer step on one thread too. */
Test(apps, learner_runs_its_optimizer_on_its_context_threads)
{
    kiln_ctx_params cp = kiln_ctx_default_params();
    cp.n_threads = 1;
    kiln_ctx *ctx = kiln_ctx_new(&cp);
    cr_assert(ctx, "%s", kiln_last_error());
    kiln_learner *l = make_learner(ctx);
    cr_expect_eq(kiln_optim_threads(kiln_learner_optim(l)), 1);
    kiln_learner_free(l);
    kiln_ctx_free(ctx);
}
