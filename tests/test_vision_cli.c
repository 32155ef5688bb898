/* End to end: runs the kiln binary (`kiln vision ...`, path from KILN_CLI_PATH, set in
 * cmake/vision_cli.cmake) on data made here: an image folder (2 classes x 12 grey 16x16 PNGs,
 * train/ and valid/) and a tiny IDX set. Checks what every subcommand prints and writes
 * (lr-find CSV/PNG; fit's model, model.json keys, history.csv header, metrics.json keys with
 * TTA and snapshot-ensemble entries, plots; predict's lines; show-batch and interpret files),
 * that no temp file is left, fit and predict with --arch simple-resnet on the IDX set, and
 * the bad-input paths: missing data, corrupt and truncated
 * images with and without --skip-bad, a bad IDX magic, bad flags, a broken model.json; and
 * issue 8's cases: a truncated / folder / oversized / 5 MiB model.json, non-finite or
 * fractional numbers in it, NaN weights, class-folder symlink loops, a non-UTF-8 class
 * folder, a ~4000-byte --out. Without PLplot the PNG checks are skipped. */
#include "util/ku_cli.h"
#include "util/ku_disk.h"
#include "kiln/models.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef __SANITIZE_ADDRESS__
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\n"; }
#endif

#ifndef KILN_CLI_PATH
#error "KILN_CLI_PATH must name the kiln binary (cmake/vision_cli.cmake)"
#endif

/* fast and deterministic: one compute thread, loader on the main thread */
#define FAST "--threads 1 --workers 0 --quiet"

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
    snprintf(g_dir, sizeof g_dir, "/tmp/kiln_vision_cli.XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL);
    ku_make_image_folder(P("img"));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    (void)system(cmd);
}
TestSuite(vision_cli, .init = setup, .fini = teardown);

/* ---- running kiln ------------------------------------------------------------------------------- */

/* `kiln <args>` (args may use %s for g_dir) with stdout/stderr in g_dir/out, g_dir/err. */
static int run(const char *args)
{
    static char cmd[16384], expanded[12288];
    snprintf(expanded, sizeof expanded, args, g_dir, g_dir, g_dir, g_dir, g_dir, g_dir);
    snprintf(cmd, sizeof cmd, "'%s' %s > '%s/out' 2> '%s/err'", KILN_CLI_PATH, expanded, g_dir, g_dir);
    int st = system(cmd);
    cr_assert(st != -1 && WIFEXITED(st), "could not run: %s", cmd);
    return WEXITSTATUS(st);
}

static void run_ok(const char *args)
{
    if (run(args) != 0) {
        char *err = ku_slurp(P("err"));
        cr_assert_fail("kiln %s failed: %s", args, err);
    }
}

static void expect_in(const char *file, const char *needle)
{
    char *s = ku_slurp(P(file));
    cr_expect(strstr(s, needle), "%s: '%s' does not mention '%s'", file, s, needle);
    free(s);
}

/* run() that must fail with status rc and name needle on stderr. */
static void run_fail(const char *args, int rc, const char *needle)
{
    int got = run(args);
    char *err = ku_slurp(P("err"));
    cr_expect_eq(got, rc, "kiln %s: exit %d, want %d (stderr: %s)", args, got, rc, err);
    cr_expect(strstr(err, needle), "kiln %s: stderr '%s' does not mention '%s'", args, err, needle);
    free(err);
}

static bool is_png(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    unsigned char h[8] = {0};
    size_t n = fread(h, 1, 8, f);
    fclose(f);
    return n == 8 && !memcmp(h, "\x89PNG\r\n\x1a\n", 8);
}

static void expect_png(const char *rel)
{
    if (kiln_plot_available()) cr_expect(is_png(P(rel)), "%s is not a PNG", rel);
}

static cJSON *json(const char *rel)
{
    char *s = ku_slurp(P(rel));
    cJSON *j = cJSON_Parse(s);
    cr_assert(j, "%s is not JSON: %s", rel, s);
    free(s);
    return j;
}

static double num(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(j, key);
    cr_assert(cJSON_IsNumber(v), "no number '%s'", key);
    return v->valuedouble;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* g_dir/idx: the tiny IDX set (48 train, 12 valid 28x28 images of 3 classes). */
static void make_idx_set(void)
{
    cr_assert(mkdir(P("idx"), 0777) == 0);
    ku_make_idx(P("idx"), "train", 48);
    ku_make_idx(P("idx"), "t10k", 12);
}

/* ---- tests ------------------------------------------------------------------------------------- */

Test(vision_cli, help_for_every_subcommand)
{
    run_ok("--help");
    expect_in("out", "vision");
    run_ok("vision --help");
    expect_in("out", "show-batch");
    const char *cmds[] = {"lr-find", "fit", "predict", "show-batch", "interpret"};
    for (int i = 0; i < 5; i++) {
        char a[64];
        snprintf(a, sizeof a, "vision %s --help", cmds[i]);
        run_ok(a);
        expect_in("out", "usage: kiln vision");
        expect_in("out", "--seed");
    }
    run_ok("vision fit --help");
    expect_in("out", "--snapshots");
    expect_in("out", "--schedule");
    expect_in("out", "--resume");
    /* each flag's default is read from the parser's own defaults, and the architecture list
     * from the library's registry */
    expect_in("out", "--bs B                     batch size (default: 128)");
    expect_in("out", "--lr X                     peak learning rate (fine-tune: base_lr, 2e-3 unless given) (default: 0.01)");
    expect_in("out", "--workers N                data loader threads (0: load on the main thread) (default: 2)");
    expect_in("out", "resnet50 (ResNet-50 + fastai head) (default: simple-cnn)");
    run_ok("vision show-batch --help");
    expect_in("out", "(default: 16)");
    run_ok("vision interpret --help");
    expect_in("out", "(default: 9)");
    run_fail("vision fit %s/img --out %s/x --arch vgg", 2, "--arch 'vgg' is not simple-cnn, simple-resnet, resnet18, resnet34 or resnet50");
}

/* fastai fine_tune through the shared driver: the frozen phase, then the unfrozen one. */
Test(vision_cli, fit_fine_tune_schedule)
{
    run_ok("vision fit %s/img --out %s/ft --bs 4 --epochs 1 --schedule fine-tune --freeze-epochs 1 " FAST);
    expect_in("out", "2 epochs in"); /* the frozen one and the unfrozen one */
    cr_expect(access(P("ft/model.safetensors"), F_OK) == 0, "fine-tune wrote no model");
    char *h = ku_slurp(P("ft/history.csv"));
    cr_expect_eq(count_lines(h), 3, "history.csv holds both phases: %s", h);
    free(h);
    run_fail("vision fit %s/img --out %s/ft --bs 4 --schedule fine-tune --resume " FAST, 1,
             "resume of a fine-tune run is not supported yet");
    run_fail("vision fit %s/img --out %s/x --schedule warmup", 2, "schedule 'warmup' is not one-cycle, sgdr, clr, const, fine-tune or ulmfit");
}

Test(vision_cli, lr_find_writes_its_files)
{
    run_ok("vision lr-find %s/img --out %s/lr --bs 4 --num-it 30 --threads 1");
    expect_in("out", "2 classes");
    expect_in("out", "model: simple-cnn");
    expect_in("out", "suggested lr");
    expect_in("out", "lr_find.csv");
    char *csv = ku_slurp(P("lr/lr_find.csv"));
    cr_expect(!strncmp(csv, "lr,loss,smooth_loss\n", 20), "lr_find.csv: %.40s", csv);
    cr_expect(count_lines(csv) >= 10);
    free(csv);
    expect_png("lr/lr_find.png");
    ku_expect_no_temp(P("lr"));
}

Test(vision_cli, fit_writes_every_file)
{
    run_ok("vision fit %s/img --out %s/run --bs 4 --epochs 2 --lr 3e-3 " FAST);
    expect_in("out", "epochs in");
    expect_in("out", "wrote");
    char *hist = ku_slurp(P("run/history.csv"));
    cr_expect(!strncmp(hist, "epoch,train_loss,valid_loss,accuracy,time\n", 42), "history.csv: %s", hist);
    cr_expect_eq(count_lines(hist), 3);
    free(hist);
    cJSON *m = json("run/model.json");
    cr_expect_str_eq(cJSON_GetObjectItem(m, "arch")->valuestring, "simple-cnn");
    cr_expect_eq(num(cJSON_GetObjectItem(m, "preprocessing"), "size"), 16);
    cr_expect_eq(num(cJSON_GetObjectItem(m, "preprocessing"), "n_in"), 1);
    const cJSON *cl = cJSON_GetObjectItem(m, "classes");
    cr_assert_eq(cJSON_GetArraySize(cl), 2);
    cr_expect_str_eq(cJSON_GetArrayItem(cl, 0)->valuestring, "left");
    cr_expect_str_eq(cJSON_GetArrayItem(cl, 1)->valuestring, "right");
    const cJSON *nm = cJSON_GetObjectItem(m, "normalization");
    cr_assert(nm && cJSON_GetArraySize(cJSON_GetObjectItem(nm, "mean")) == 1);
    cr_expect(cJSON_GetArrayItem(cJSON_GetObjectItem(nm, "std"), 0)->valuedouble > 0);
    cJSON_Delete(m);
    cJSON *r = json("run/metrics.json");
    cr_expect_eq(num(r, "epochs"), 2);
    double acc = num(r, "accuracy");
    cr_expect(acc >= 0 && acc <= 1);
    cr_expect(num(r, "valid_loss") > 0 && num(r, "train_loss") > 0 && num(r, "time_s") > 0);
    cr_expect(!cJSON_GetObjectItem(r, "tta") && !cJSON_GetObjectItem(r, "snapshot_ensemble"));
    cJSON_Delete(r);
    struct stat st;
    cr_expect(stat(P("run/model.safetensors"), &st) == 0 && st.st_size > 1000);
    expect_png("run/losses.png");
    expect_png("run/lr.png");
    ku_expect_no_temp(P("run"));
}

Test(vision_cli, fit_tta_and_snapshots_add_their_metrics)
{
    run_ok("vision fit %s/img --out %s/snap --bs 4 --lr 3e-3 --schedule sgdr --n-cycle 2 --cycle-len 1 "
           "--cycle-mult 1 --snapshots 2 --tta --threads 1 --workers 0");
    expect_in("out", "epoch     train_loss");
    expect_in("out", "snapshot ensemble (last 2 cycles): accuracy");
    expect_in("out", "tta (4 passes, beta 0.25): accuracy");
    cJSON *r = json("snap/metrics.json");
    cr_expect_eq(num(r, "epochs"), 2);
    const cJSON *t = cJSON_GetObjectItem(r, "tta"), *s = cJSON_GetObjectItem(r, "snapshot_ensemble");
    cr_assert(t && s, "metrics.json lacks tta or snapshot_ensemble");
    cr_expect_eq(num(t, "n"), 4);
    cr_expect_float_eq(num(t, "beta"), 0.25, 1e-12);
    cr_expect(num(t, "accuracy") >= 0 && num(t, "valid_loss") > 0);
    cr_expect_eq(num(s, "n"), 2);
    cr_expect(num(s, "accuracy") >= 0);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(s, "snapshots")), 2);
    cJSON_Delete(r);
}

/* The settings a checkpoint records are the flags as a user types them: the defaults of the
 * float augmentation knobs read "1.1", not 1.1000000238418579, so a checkpoint written by a
 * kiln whose defaults were double literals still resumes. */
Test(vision_cli, run_settings_hold_typed_defaults)
{
    run_ok("vision fit %s/img --out %s/set --bs 4 --epochs 1 " FAST);
    kiln_st_file *f;
    cr_assert_eq(kiln_st_open(P("set/checkpoint.safetensors"), &f), KILN_STATUS_OK, "%s", kiln_last_error());
    const char *s = kiln_st_metadata(f, "run_settings");
    cr_assert(s, "the checkpoint records no run settings");
    const char *want[] = {"--max-zoom=1.1\n", "--max-warp=0.2\n", "--max-lighting=0.2\n", "--p-affine=0.75\n",
                          "--max-rotate=10\n", "--lr=0.01\n", "--valid-pct=0.2\n"};
    for (int i = 0; i < 7; i++) cr_expect(strstr(s, want[i]), "run settings lack '%s':\n%s", want[i], s);
    kiln_st_close(f);
}

/* Every epoch end leaves DIR/checkpoint.safetensors; --resume on a finished run trains no more
 * and writes the same metrics; --resume without a checkpoint names the missing file. */
Test(vision_cli, fit_checkpoints_and_resume)
{
    run_ok("vision fit %s/img --out %s/rs --bs 4 --epochs 2 --lr 3e-3 --no-augment " FAST);
    struct stat st;
    cr_assert(stat(P("rs/checkpoint.safetensors"), &st) == 0 && st.st_size > 1000, "no checkpoint");
    cJSON *a = json("rs/metrics.json");
    double acc = num(a, "accuracy"), vl = num(a, "valid_loss");
    cJSON_Delete(a);
    char *hist = ku_slurp(P("rs/history.csv"));
    run_ok("vision fit %s/img --out %s/rs --bs 4 --epochs 2 --lr 3e-3 --no-augment --resume " FAST);
    cJSON *b = json("rs/metrics.json");
    cr_expect_eq(num(b, "epochs"), 2);
    cr_expect_float_eq(num(b, "accuracy"), acc, 1e-12);
    cr_expect_float_eq(num(b, "valid_loss"), vl, 1e-12);
    cJSON_Delete(b);
    char *hist2 = ku_slurp(P("rs/history.csv"));
    cr_expect_eq(count_lines(hist2), 3, "history.csv after resume: %s", hist2);
    cr_expect(!strncmp(hist, hist2, strlen("epoch,train_loss,valid_loss,accuracy,time\n")));
    free(hist);
    free(hist2);
    ku_expect_no_temp(P("rs"));
    run_fail("vision fit %s/img --out %s/rs --bs 4 --epochs 3 --lr 3e-3 --no-augment --resume " FAST, 1,
             "epochs");
    run_fail("vision fit %s/img --out %s/none --bs 4 --epochs 2 --resume " FAST, 1, "none/checkpoint.safetensors");
}

Test(vision_cli, predict_show_batch_interpret)
{
    run_ok("vision fit %s/img --out %s/m --bs 4 --epochs 3 --lr 1e-2 --no-augment " FAST);
    /* predict: one line per image, file first, a known class, a probability */
    run_ok("vision predict %s/m %s/img/valid/left/08.png %s/img/valid/right/09.png --threads 1");
    char *out = ku_slurp(P("out"));
    cr_expect_eq(count_lines(out), 2, "predict printed: %s", out);
    char *line = out;
    for (int i = 0; i < 2; i++) {
        char file[512], cls[64];
        double prob;
        cr_assert_eq(sscanf(line, "%511s %63s %lf", file, cls, &prob), 3, "line: %s", line);
        cr_expect(strstr(file, i ? "right/09.png" : "left/08.png"), "file %s", file);
        cr_expect(!strcmp(cls, "left") || !strcmp(cls, "right"), "class %s", cls);
        cr_expect(prob >= 0.5 && prob <= 1.0, "probability %g", prob);
        line = strchr(line, '\n') + 1;
    }
    free(out);
    run_ok("vision predict %s/m %s/img/valid/left/08.png --tta --threads 1");
    expect_in("out", "left/08.png");
    run_fail("vision predict %s/m %s/img/nothere.png", 1, "nothere.png");
    /* show-batch */
    run_ok("vision show-batch %s/img --out %s/sb/batch.png --n 8 " FAST);
    expect_png("sb/batch.png");
    /* interpret */
    run_ok("vision interpret %s/m %s/img --out %s/interp " FAST);
    char *cm = ku_slurp(P("interp/confusion_matrix.csv"));
    cr_expect(!strncmp(cm, "actual\\predicted,left,right\nleft,", 33), "confusion_matrix.csv: %s", cm);
    long a, b, c, d;
    cr_assert_eq(sscanf(cm, "actual\\predicted,left,right\nleft,%ld,%ld\nright,%ld,%ld", &a, &b, &c, &d), 4, "%s", cm);
    cr_expect_eq(a + b + c + d, 8);
    free(cm);
    char *tl = ku_slurp(P("interp/top_losses.csv"));
    cr_expect(!strncmp(tl, "rank,index,file,predicted,actual,loss,probability\n", 50), "%s", tl);
    cr_expect_eq(count_lines(tl), 9);
    free(tl);
    expect_png("interp/confusion_matrix.png");
    expect_png("interp/top_losses.png");
    ku_expect_no_temp(P("interp"));
    /* a broken model.json */
    ku_write_bytes(P("m/model.json"), "{\"format\": \"kiln-vision-model\", \"arch\": 3}", 42);
    run_fail("vision predict %s/m %s/img/valid/left/08.png", 1, "model.json");
}

/* fastai aug_transforms' knobs as flags: recorded in model.json, reused by predict --tta;
 * a model trained with --no-augment gets plain TTA passes and a warning; bad values fail. */
Test(vision_cli, augmentation_flags)
{
    run_ok("vision fit %s/img --out %s/a --bs 4 --epochs 1 --max-rotate 5 --max-warp 0 --max-lighting 0.1 "
           "--p-affine 0.5 --no-flip " FAST);
    cJSON *j = json("a/model.json");
    const cJSON *ag = cJSON_GetObjectItem(j, "augmentation");
    cr_assert(cJSON_IsObject(ag), "model.json has no augmentation object");
    cr_expect_float_eq(num(ag, "max_rotate"), 5.0, 1e-6);
    cr_expect_float_eq(num(ag, "max_warp"), 0.0, 1e-6);
    cr_expect_float_eq(num(ag, "max_lighting"), 0.1, 1e-6);
    cr_expect_float_eq(num(ag, "p_affine"), 0.5, 1e-6);
    cr_expect_float_eq(num(ag, "max_zoom"), 1.1, 1e-6);
    cr_expect(cJSON_IsFalse(cJSON_GetObjectItem(ag, "do_flip")), "do_flip should be false");
    cJSON_Delete(j);
    run_ok("vision predict %s/a %s/img/valid/left/08.png --tta --threads 1");
    expect_in("out", "left/08.png");
    run_ok("vision show-batch %s/img --out %s/a/batch.png --n 4 --max-rotate 30 --no-flip " FAST);
    expect_png("a/batch.png");
    /* no augmentation: "augmentation" is null, TTA warns that its passes are plain */
    run_ok("vision fit %s/img --out %s/na --bs 4 --epochs 1 --no-augment " FAST);
    j = json("na/model.json");
    cr_expect(cJSON_IsNull(cJSON_GetObjectItem(j, "augmentation")), "a --no-augment model records no augmentation");
    cJSON_Delete(j);
    run_ok("vision predict %s/na %s/img/valid/left/08.png --tta --threads 1");
    expect_in("err", "augmented passes equal the plain one");
    run_fail("vision fit %s/img --out %s/bad --max-zoom 0.5", 2, "max_zoom");
    run_fail("vision fit %s/img --out %s/bad --p-affine 2", 2, "p_affine");
    run_fail("vision fit %s/img --out %s/bad --max-rotate -1", 2, "max_rotate");
    /* a model.json whose augmentation is out of range (hand-edited) is refused, named */
    char *mj = ku_slurp(P("a/model.json"));
    char *at = strstr(mj, "\"p_affine\":");
    cr_assert(at, "no p_affine in %s", mj);
    char *edited = malloc(strlen(mj) + 16);
    snprintf(edited, strlen(mj) + 16, "%.*s\"p_affine\": 7.5,%s", (int)(at - mj), mj, strchr(at, ',') + 1);
    ku_write_bytes(P("a/model.json"), edited, strlen(edited));
    run_fail("vision predict %s/a %s/img/valid/left/08.png --tta", 1, "augmentation holds values out of range");
    free(edited);
    free(mj);
}

/* --layout: nchw and nhwc both train, and give the same first-step loss; a bad name fails.
 * Only the first step is compared: the layouts run different oneDNN kernels (which differ
 * again per ISA), so their rounding differs from the first convolution on, and training
 * amplifies it chaotically; whole-epoch losses agreed to 1e-4 on one CPU by chance and
 * differed by 5e-4 on an AVX2 EPYC. */
Test(vision_cli, layout_flag)
{
    double step0[2];
    const char *names[2] = {"nchw", "nhwc"};
    for (int k = 0; k < 2; k++) {
        char args[512], rel[64];
        snprintf(args, sizeof args, "vision fit %%s/img --out %%s/l%s --bs 4 --epochs 2 --no-augment --layout %s " FAST,
                 names[k], names[k]);
        run_ok(args);
        snprintf(rel, sizeof rel, "l%s/metrics.json", names[k]);
        cJSON *j = json(rel);
        double loss = num(j, "train_loss"), acc = num(j, "accuracy");
        cr_expect(loss > 0 && loss < 10, "%s: train loss %g", names[k], loss);
        cr_expect(acc >= 0 && acc <= 1, "%s: accuracy %g", names[k], acc);
        cJSON_Delete(j);
        /* lr-find's first row: the loss of the first batch under the initial weights */
        snprintf(args, sizeof args, "vision lr-find %%s/img --out %%s/f%s --bs 4 --num-it 30 --no-augment --layout %s " FAST,
                 names[k], names[k]);
        run_ok(args);
        snprintf(rel, sizeof rel, "f%s/lr_find.csv", names[k]);
        char *csv = ku_slurp(P(rel));
        double lr;
        cr_assert_eq(sscanf(strchr(csv, '\n') + 1, "%lf,%lf", &lr, &step0[k]), 2, "%s", csv);
        free(csv);
    }
    /* same weights, same batch, one forward: only the summation order differs (~1e-6
     * relative), magnified up to tenfold by train-mode BatchNorm over 4 images; 1e-4 */
    cr_expect(fabs(step0[0] - step0[1]) <= 1e-4 * fabs(step0[0]), "first-step loss nchw %.9g vs nhwc %.9g", step0[0],
              step0[1]);
    run_fail("vision fit %s/img --out %s/bad --layout nhcw", 2, "--layout must be auto, nhwc or nchw");
}

Test(vision_cli, idx_data)
{
    make_idx_set();
    run_ok("vision fit %s/idx --out %s/im --bs 8 --epochs 1 " FAST);
    cJSON *m = json("im/model.json");
    cr_expect_eq(num(cJSON_GetObjectItem(m, "preprocessing"), "size"), 28);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(m, "classes")), 3);
    cr_expect_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(m, "classes"), 2)->valuestring, "2");
    cJSON_Delete(m);
    run_ok("vision interpret %s/im %s/idx --out %s/ii --n 4 --tta " FAST);
    expect_in("out", "accuracy");
    char *tl = ku_slurp(P("ii/top_losses.csv"));
    cr_expect_eq(count_lines(tl), 5);
    free(tl);
    /* a wrong magic names the file */
    ku_write_idx(P("idx/t10k-labels-idx1-ubyte"), 0x802, (uint32_t[]){12}, 1, (const uint8_t *)"012012012012", 12);
    run_fail("vision fit %s/idx --out %s/bad --bs 8 " FAST, 1, "t10k-labels-idx1-ubyte");
    /* inconsistent counts: 12 valid images, 10 labels */
    ku_write_idx(P("idx/t10k-labels-idx1-ubyte"), 0x801, (uint32_t[]){10}, 1, (const uint8_t *)"0120120120", 10);
    run_fail("vision fit %s/idx --out %s/bad --bs 8 " FAST, 1, "t10k");
}

/* The fastai 2022 course ResNet (kiln_simple_resnet_new) end to end on the tiny IDX set. */
Test(vision_cli, simple_resnet_fit_and_predict)
{
    make_idx_set();
    run_ok("vision fit %s/idx --out %s/sr --arch simple-resnet --bs 8 --epochs 1 --threads 1 --workers 0");
    expect_in("out", "model: simple-resnet");
    cJSON *m = json("sr/model.json");
    cr_expect_str_eq(cJSON_GetObjectItem(m, "arch")->valuestring, "simple-resnet");
    cr_expect_eq(num(cJSON_GetObjectItem(m, "preprocessing"), "size"), 28);
    cr_expect_eq(num(cJSON_GetObjectItem(m, "preprocessing"), "n_in"), 1);
    cr_expect_eq(num(m, "n_params"), 1228404 - 7 * 258, "Linear(256, 3) + BatchNorm1d(3) instead of 10 classes");
    cJSON_Delete(m);
    struct stat st;
    cr_expect(stat(P("sr/model.safetensors"), &st) == 0 && st.st_size > 4 * 1200000, "1.2M f32 weights");
    /* predict reads an image file: write one of the IDX images as a 28x28 PNG */
    uint8_t px[784];
    for (int q = 0; q < 784; q++) px[q] = (uint8_t)((q % 28) / 10 == 1 ? 220 : (q * 7 + 1) % 30); /* class 1 */
    ku_write_png(P("one.png"), 28, px);
    run_ok("vision predict %s/sr %s/one.png --threads 1");
    char *out = ku_slurp(P("out"));
    char file[512], cls[64];
    double prob;
    cr_assert_eq(sscanf(out, "%511s %63s %lf", file, cls, &prob), 3, "predict printed: %s", out);
    cr_expect(strstr(file, "one.png"), "file %s", file);
    cr_expect(!strcmp(cls, "0") || !strcmp(cls, "1") || !strcmp(cls, "2"), "class %s", cls);
    cr_expect(prob >= 1.0 / 3 && prob <= 1.0, "probability %g", prob);
    free(out);
    run_fail("vision fit %s/img --out %s/x --arch simple-resnet --size 64 --bs 4 " FAST, 2, "simple-resnet takes");
}

Test(vision_cli, bad_input)
{
    /* missing data set / folder */
    run_fail("vision fit %s/nowhere --out %s/x " FAST, 1, "nowhere");
    run_fail("vision lr-find %s/nowhere --out %s/x", 1, "nowhere");
    /* usage errors */
    run_fail("vision fit %s/img " FAST, 2, "--out is required");
    run_fail("vision fit %s/img --out %s/x --epochz 3", 2, "unknown flag '--epochz'");
    run_fail("vision fit %s/img --out %s/x --lr abc", 2, "--lr: 'abc' is not a number");
    run_fail("vision predict %s/m x.png --epochs 3", 2, "--epochs does not apply to predict");
    run_fail("vision fit %s/img --out %s/x --arch vgg16 " FAST, 2, "vgg16");
    run_fail("vision fit %s/img --out %s/x --schedule cosine --bs 4 " FAST, 2, "cosine");
    run_fail("vision fit %s/img --out %s/x --size 64 --bs 4 " FAST, 2, "at most 32x32");
    run_fail("vision frobnicate", 2, "unknown command 'frobnicate'");
    run_fail("vision predict %s/nomodel x.png", 1, "nomodel/model.json");
    /* a file that is not an image: an error naming it, or a warning and a count with --skip-bad */
    ku_write_bytes(P("img/train/left/zz_bad.png"), "this is not a png at all", 24);
    run_fail("vision fit %s/img --out %s/x --bs 4 --epochs 1 " FAST, 1, "zz_bad.png");
    run_ok("vision fit %s/img --out %s/skip --bs 4 --epochs 1 --skip-bad " FAST);
    expect_in("err", "warning");
    expect_in("err", "zz_bad.png");
    expect_in("err", "1 bad image file(s) skipped");
    /* a truncated PNG (valid header, data cut): found while decoding */
    unlink(P("img/train/left/zz_bad.png"));
    char *png = ku_slurp(P("img/train/left/00.png"));
    struct stat st;
    cr_assert(stat(P("img/train/left/00.png"), &st) == 0);
    ku_write_bytes(P("img/train/left/zz_trunc.png"), png, (size_t)st.st_size / 2);
    free(png);
    run_fail("vision fit %s/img --out %s/x --bs 4 --epochs 1 " FAST, 1, "zz_trunc.png");
    run_ok("vision fit %s/img --out %s/skip2 --bs 4 --epochs 1 --skip-bad " FAST);
    expect_in("err", "zz_trunc.png");
    /* a missing split */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/nv' && cp -r '%s/img/train' '%s/nv/'", g_dir, g_dir, g_dir);
    cr_assert(system(cmd) == 0);
    run_fail("vision lr-find %s/nv --out %s/x --bs 4 " FAST, 1, "no valid/");
    /* an empty class folder */
    unlink(P("img/train/left/zz_trunc.png"));
    cr_assert(mkdir(P("img/train/empty"), 0777) == 0);
    run_fail("vision fit %s/img --out %s/x --bs 4 --epochs 1 " FAST, 1, "empty");
}

Test(vision_cli, resnet_and_csv_source)
{
    /* a ResNet-18 body + fastai head on a CSV of (name, label) with a random 25% valid split */
    char *csv = malloc(4096);
    size_t n = (size_t)snprintf(csv, 4096, "name,label\n");
    const char *cls[2] = {"left", "right"};
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < 12; i++)
            n += (size_t)snprintf(csv + n, 4096 - n, "%s/%s/%02d.png,%s\n", i < 8 ? "train" : "valid", cls[c], i, cls[c]);
    ku_write_bytes(P("img/labels.csv"), csv, n);
    free(csv);
    run_ok("vision fit %s/img/labels.csv --out %s/r18 --arch resnet18 --bs 6 --epochs 1 --valid-pct 0.25 " FAST);
    cJSON *m = json("r18/model.json");
    cr_expect_str_eq(cJSON_GetObjectItem(m, "arch")->valuestring, "resnet18");
    cr_expect_float_eq(num(cJSON_GetObjectItem(m, "training"), "valid_pct"), 0.25, 1e-12);
    cr_expect(num(m, "n_params") > 1e7);
    cJSON_Delete(m);
    run_ok("vision predict %s/r18 %s/img/valid/right/10.png --threads 1");
    expect_in("out", "right/10.png");
    run_ok("vision interpret %s/r18 %s/img/labels.csv --out %s/r18i --n 2 " FAST);
    expect_in("out", "accuracy");
    expect_in("out", "on 6 valid images");
}

/* ---- issue 8: model.json and outside input ----------------------------------------------------- */

/* DIR/model.safetensors of a fresh simple-cnn for 1x16x16 images and 2 classes (left, right)
 * and its model.json, made with the library (no training). With poison, one weight of the
 * first parameter is NaN; its name goes to bad_name. */
static void make_model_dir(const char *rel, bool poison, char *bad_name, size_t n)
{
    cr_assert(mkdir(P(rel), 0777) == 0);
    kiln_ctx_params cp = kiln_ctx_default_params();
    cp.n_threads = 1;
    kiln_ctx *ctx = kiln_ctx_new(&cp);
    kiln_model *m = kiln_simple_cnn_new(1, 2);
    cr_assert(ctx && m && kiln_model_alloc(m, ctx) == KILN_STATUS_OK, "%s", kiln_last_error());
    if (poison) {
        kiln_tensor *w = kiln_store_at(kiln_model_store(m), 0);
        ((float *)w->data)[3] = NAN;
        snprintf(bad_name, n, "%s", w->name);
    }
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", P(rel));
    cr_assert_eq(kiln_model_save(m, path, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    char *classes[] = {"left", "right"};
    kiln_vision_model_info mi = {.n_in = 1, .size = 16, .n_classes = 2, .classes = classes,
                                 .norm = KILN_VISION_NORM_DATASET, .valid_pct = 0.2, .seed = 42};
    snprintf(mi.arch, sizeof mi.arch, "simple-cnn");
    mi.stats.mean[0] = 0.45f, mi.stats.std[0] = 0.3f;
    snprintf(path, sizeof path, "%s/model.json", P(rel));
    cr_assert_eq(kiln_vision_model_info_write(path, &mi), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_model_free(m);
    kiln_ctx_free(ctx);
}

/* predict and interpret on DIR must both fail with status 1, naming needle. */
static void both_refuse(const char *dir, const char *needle)
{
    char a[256];
    snprintf(a, sizeof a, "vision predict %%s/%s %%s/img/valid/left/08.png --threads 1", dir);
    run_fail(a, 1, needle);
    snprintf(a, sizeof a, "vision interpret %%s/%s %%s/img --out %%s/interp_%s " FAST, dir, dir);
    run_fail(a, 1, needle);
}

/* A truncated model.json (the 11 bytes `{"format": `), a folder named model.json, a file over
 * the size limit: predict and interpret fail with a message (they crashed, printing the parse
 * error from freed memory); a valid 5 MiB model.json (cut at 4 MiB before) is read whole. */
Test(vision_cli, model_json_truncated_folder_or_huge)
{
    make_model_dir("m", false, NULL, 0);
    run_ok("vision predict %s/m %s/img/valid/left/08.png --threads 1");
    expect_in("out", "left/08.png");
    char *good = ku_slurp(P("m/model.json"));
    ku_write_bytes(P("m/model.json"), "{\"format\": ", 11);
    both_refuse("m", "model.json: not valid JSON: the text ends early (line 1, column 12)");
    unlink(P("m/model.json"));
    cr_assert(mkdir(P("m/model.json"), 0777) == 0);
    both_refuse("m", "model.json: it is a folder, not a file");
    rmdir(P("m/model.json"));
    FILE *f = fopen(P("m/model.json"), "wb");
    cr_assert(f && ftruncate(fileno(f), (off_t)(65 << 20)) == 0);
    fclose(f);
    both_refuse("m", "more than the limit of 64 MiB");
    /* 5 MiB: the same description with a long "data" value */
    size_t big = (size_t)5 << 20, gl = strlen(good);
    char *text = malloc(gl + big + 32), *brace = strrchr(good, '}');
    cr_assert(brace);
    size_t head = (size_t)(brace - good);
    memcpy(text, good, head);
    size_t k = head + (size_t)sprintf(text + head, ", \"note\": \"");
    memset(text + k, 'x', big);
    k += big;
    k += (size_t)sprintf(text + k, "\"}\n");
    ku_write_bytes(P("m/model.json"), text, k);
    run_ok("vision predict %s/m %s/img/valid/left/08.png --threads 1");
    expect_in("out", "left/08.png");
    expect_in("err", "unknown key \"note\" ignored");
    free(text);
    free(good);
}

/* Numbers in model.json are checked as numbers: inf, a fractional size, a seed beyond 2^53
 * are refused naming the key (inf gave class 0 with probability -nan; 28.9 became 28). */
Test(vision_cli, model_json_numbers_are_range_checked)
{
    make_model_dir("m", false, NULL, 0);
    const char *edits[][5] = {/* mean, std, size, seed, the message */
                              {"1e999", "0.3", "16", "42", "normalization.mean[0] is not a finite number"},
                              {"0.45", "0.3", "16.9", "42", "size must be an integer (it is 16.9)"},
                              {"0.45", "0.3", "16", "1e300", "seed is 1e+300, outside [0, 9007199254740992]"},
                              {"0.45", "0", "16", "42", "normalization.std[0] must be > 0"},
                              {"0.45", "0.3", "16", "42", NULL}};
    for (int i = 0; i < 5; i++) {
        char t[1024];
        snprintf(t, sizeof t,
                 "{\"format\": \"kiln-vision-model\", \"arch\": \"simple-cnn\", \"n_in\": 1, \"size\": %s,"
                 " \"classes\": [\"left\", \"right\"], \"normalization\": {\"mean\": [%s], \"std\": [%s]},"
                 " \"augment\": false, \"seed\": %s}",
                 edits[i][2], edits[i][0], edits[i][1], edits[i][3]);
        ku_write_bytes(P("m/model.json"), t, strlen(t));
        if (edits[i][4]) both_refuse("m", edits[i][4]);
        else run_ok("vision predict %s/m %s/img/valid/left/08.png --threads 1"); /* the control: it does run */
    }
}

/* Weights holding NaN: predict printed class 0 with probability -nan and exited 0. */
Test(vision_cli, nonfinite_weights_are_refused)
{
    char bad[128] = "";
    make_model_dir("nan", true, bad, sizeof bad);
    char needle[256];
    snprintf(needle, sizeof needle, "parameter '%s'", bad);
    both_refuse("nan", needle);
    both_refuse("nan", "holds NaN at element 3");
    expect_in("err", "model.safetensors");
}

/* A symlink loop or a dangling link among the class folders named an error (it dropped the
 * class silently); so does a dangling image link. */
Test(vision_cli, class_folder_symlinks_are_named)
{
    cr_assert(symlink("loop", P("img/train/loop")) == 0);
    run_fail("vision fit %s/img --out %s/x --bs 4 --epochs 1 " FAST, 1,
             "img/train/loop as a class folder: Too many levels of symbolic links");
    run_fail("vision show-batch %s/img --out %s/x/b.png --n 4 " FAST, 1, "img/train/loop");
    unlink(P("img/train/loop"));
    cr_assert(symlink("nowhere", P("img/valid/gone")) == 0);
    run_fail("vision fit %s/img --out %s/x --bs 4 --epochs 1 " FAST, 1,
             "img/valid/gone as a class folder: No such file or directory");
    unlink(P("img/valid/gone"));
    cr_assert(symlink("/nonexistent/x.png", P("img/train/left/zz.png")) == 0);
    run_fail("vision fit %s/img --out %s/x --bs 4 --epochs 1 " FAST, 1, "img/train/left/zz.png as an image");
}

/* A class folder named in Latin-1 cannot go into model.json (JSON is UTF-8; the raw bytes
 * made a file other readers reject): fit refuses before training, naming the name and byte. */
Test(vision_cli, non_utf8_class_folder_is_refused_before_training)
{
    cr_assert(rename(P("img/train/left"), P("img/train/caf\xe9")) == 0);
    cr_assert(rename(P("img/valid/left"), P("img/valid/caf\xe9")) == 0);
    run_fail("vision fit %s/img --out %s/u --bs 4 --epochs 1 --threads 1 --workers 0", 1,
             "(the folder name \"caf\\xE9\") is not valid UTF-8 at byte 3");
    char *out = ku_slurp(P("out"));
    cr_expect(!strstr(out, "epoch"), "it trained first: %s", out);
    free(out);
    struct stat st;
    cr_expect(stat(P("u/model.json"), &st) != 0, "a model.json was written");
}

/* A ~4000-byte --out: the message keeps its cause (it was cut inside the path); one too long
 * for its file names is refused up front instead of writing to cut names. */
Test(vision_cli, long_out_path_keeps_the_cause)
{
    char *longdir = malloc(4200), args[4400];
    int n = snprintf(longdir, 4200, "%s/", g_dir);
    memset(longdir + n, 'd', (size_t)(3990 - n));
    longdir[3990] = '\0';
    snprintf(args, sizeof args, "vision fit %%s/img --out %s --bs 4 --epochs 1 " FAST, longdir);
    run_fail(args, 1, ": File name too long");
    for (int k = n + 200; k < 4100; k += 201) longdir[k] = '/'; /* short components, 4099 bytes */
    memset(longdir + 3990, 'e', 109);
    longdir[4099] = '\0';
    snprintf(args, sizeof args, "vision fit %%s/img --out %s --bs 4 --epochs 1 " FAST, longdir);
    run_fail(args, 2, "--out is 4099 bytes long; at most 4000 are allowed");
    snprintf(args, sizeof args, "vision predict %s x.png", longdir);
    run_fail(args, 2, "DIR is 4099 bytes long");
    free(longdir);
}

/* ---- divergence and runs ---------------------------------------------------------------------- */

/* The whole file, for byte-for-byte comparisons (n gets its size). */
static char *slurp_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    cr_assert(b && fread(b, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void expect_same_bytes(const char *path, const char *before, size_t n, const char *what)
{
    size_t m;
    char *now = slurp_bytes(path, &m);
    cr_expect(m == n && !memcmp(now, before, n), "%s: %s was written over", what, path);
    free(now);
}

/* Every model.* tensor of a checkpoint is finite. */
static void expect_finite_checkpoint(const char *path)
{
    kiln_st_file *f;
    cr_assert(!kiln_st_open(path, &f), "%s", kiln_last_error());
    for (size_t i = 0; i < kiln_st_count(f); i++) {
        const char *name = kiln_st_name(f, i);
        kiln_dtype dt;
        int nd;
        int64_t shape[KILN_MAX_DIMS];
        const void *d;
        size_t nbytes;
        if (strncmp(name, "model.", 6) || kiln_st_info(f, name, &dt, &nd, shape, &d, &nbytes) || dt != KILN_DTYPE_F32)
            continue;
        for (size_t k = 0; k < nbytes / 4; k++) {
            float v;
            memcpy(&v, (const char *)d + 4 * k, 4);
            cr_assert(isfinite(v), "%s: %s[%zu] = %g", path, name, k, (double)v);
        }
    }
    kiln_st_close(f);
}

/* --lr 1e9 diverges: exit 1 naming the epoch and batch, the earlier run's model files stay as
 * they were byte for byte, the checkpoint left is this run's finite start; --resume with the
 * earlier run's flags is refused naming --lr, so the earlier run is never handed back. */
Test(vision_cli, fit_divergence_keeps_files_and_names_the_batch)
{
    run_ok("vision fit %s/img --out %s/dv --bs 4 --epochs 1 --lr 3e-3 --no-augment " FAST);
    size_t nm, nj;
    char *model = slurp_bytes(P("dv/model.safetensors"), &nm), *mjson = slurp_bytes(P("dv/model.json"), &nj);
    run_fail("vision fit %s/img --out %s/dv --bs 4 --epochs 2 --lr 1e9 --no-augment " FAST, 1, "fit diverged at epoch ");
    expect_in("err", ", batch ");
    expect_in("err", "the last good state is");
    expect_in("err", "--on-nan skip");
    expect_same_bytes(P("dv/model.safetensors"), model, nm, "divergence");
    expect_same_bytes(P("dv/model.json"), mjson, nj, "divergence");
    expect_finite_checkpoint(P("dv/checkpoint.safetensors"));
    ku_expect_no_temp(P("dv"));
    run_fail("vision fit %s/img --out %s/dv --bs 4 --epochs 2 --lr 3e-3 --no-augment --resume " FAST, 1,
             "--lr: 1000000000 then, 0.003 now");
    expect_same_bytes(P("dv/model.safetensors"), model, nm, "refused resume");
    /* skip: the non-finite batches are skipped and counted, the run goes on with finite weights */
    run_ok("vision fit %s/img --out %s/dv --bs 4 --epochs 2 --lr 1e9 --no-augment --on-nan skip " FAST);
    expect_in("err", "batch(es) skipped for a non-finite loss or gradient");
    expect_finite_checkpoint(P("dv/checkpoint.safetensors"));
    free(model);
    free(mjson);
    run_fail("vision fit %s/img --out %s/dv --on-nan maybe " FAST, 2, "--on-nan must be stop or skip");
    run_ok("vision fit --help");
    expect_in("out", "--on-nan");
}

/* --resume names every flag that differs from the checkpoint's run, old and new value. */
Test(vision_cli, resume_names_changed_flags)
{
    run_ok("vision fit %s/img --out %s/rc --bs 4 --epochs 2 --lr 1e-2 --no-augment " FAST);
    run_fail("vision fit %s/img --out %s/rc --bs 4 --epochs 2 --lr 0.5 --wd 0.3 --schedule const --no-augment "
             "--resume " FAST, 1, "--lr: 0.01 then, 0.5 now");
    expect_in("err", "--wd: 0.01 then, 0.3 now");
    expect_in("err", "--schedule: one-cycle then, const now");
    run_ok("vision fit %s/img --out %s/rc --bs 4 --epochs 2 --lr 1e-2 --no-augment --threads 2 --workers 1 --quiet "
           "--resume");
}

/* --classes and --train-per-class: the kept classes become the model's, in the order given
 * (names, indices or an index range), with N training images each; bad lists are refused. */
Test(vision_cli, class_subset_and_train_per_class)
{
    make_idx_set();
    run_ok("vision fit %s/idx --out %s/sub --classes 2,0 --train-per-class 5 --bs 4 --epochs 1 --threads 1 --workers 0");
    expect_in("out", "10 train / 8 valid images, 28x28x1, 2 classes");
    cJSON *m = json("sub/model.json");
    cJSON *cls = cJSON_GetObjectItem(m, "classes");
    cr_assert_eq(cJSON_GetArraySize(cls), 2);
    cr_expect_str_eq(cJSON_GetArrayItem(cls, 0)->valuestring, "2");
    cr_expect_str_eq(cJSON_GetArrayItem(cls, 1)->valuestring, "0");
    cJSON_Delete(m);
    run_ok("vision lr-find %s/idx --out %s/lf --classes 1-2 --num-it 12 --bs 4 --threads 1 --workers 0");
    expect_in("out", "32 train / 8 valid images, 28x28x1, 2 classes");
    run_fail("vision fit %s/idx --out %s/bad --classes 0,7 " FAST, 1, "'7'");
    expect_in("err", "'0', '1', '2'");
    run_fail("vision fit %s/idx --out %s/bad --classes 0,,1 " FAST, 2, "--classes");
    run_fail("vision fit %s/idx --out %s/bad --classes 2-1 " FAST, 2, "--classes");
    run_fail("vision fit %s/idx --out %s/bad --train-per-class -1 " FAST, 2, "--train-per-class");
    run_fail("vision predict %s/sub %s/x.png --classes 1", 2, "does not apply");
    run_ok("vision lr-find --help");
    expect_in("out", "--classes");
    expect_in("out", "--train-per-class");
}

/* Transfer learning from the CLI (issue 10): a model fitted on classes {0, 1} is the
 * --pretrained folder of a fit on classes {2, 0} (fine_tune by default, its arch and stats by
 * default; the load report and the frozen state printed); lr-find works on the frozen
 * learner; interpret opens the whole source for the subset model; --unfreeze trains every
 * layer and its settings are recorded (resume refuses a change); a torchvision-named
 * ResNet-18 file loads into resnet18 with conv1 adapted; misuse is refused by name. */
Test(vision_cli, pretrained_folder_and_file)
{
    make_idx_set();
    run_ok("vision fit %s/idx --out %s/pre --classes 0,1 --arch simple-resnet --bs 4 --epochs 1 --no-augment " FAST);
    run_ok("vision fit %s/idx --out %s/ft --classes 2,0 --pretrained %s/pre --bs 4 --epochs 1 --threads 1 --workers 0 "
           "--progress quiet");
    expect_in("out", "pre/model.safetensors: loaded ");
    expect_in("out", "left alone on purpose");
    expect_in("out", "body frozen; 3 layer groups, BatchNorm trains");
    expect_in("out", "model: simple-resnet");
    cJSON *m = json("ft/model.json");
    cr_expect_str_eq(cJSON_GetObjectItem(m, "arch")->valuestring, "simple-resnet");
    cr_expect_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(m, "classes"), 0)->valuestring, "2");
    cJSON_Delete(m);
    m = json("ft/metrics.json");
    cJSON_Delete(m);
    run_ok("vision lr-find %s/idx --out %s/lf --classes 2,0 --pretrained %s/pre --num-it 8 --bs 4 " FAST);
    cr_expect(access(P("lf/lr_find.csv"), F_OK) == 0);
    run_ok("vision interpret %s/ft %s/idx --out %s/fti --n 2 " FAST);
    expect_in("out", "on 8 valid images");

    run_ok("vision fit %s/idx --out %s/uf --classes 2,0 --pretrained %s/pre --unfreeze --bs 4 --epochs 1 --no-augment "
           "--threads 1 --workers 0 --progress quiet");
    expect_in("out", "(unfrozen; 3 layer groups)");
    run_fail("vision fit %s/idx --out %s/uf --classes 2,0 --pretrained %s/pre --unfreeze --no-train-bn --bs 4 "
             "--epochs 1 --no-augment --resume " FAST, 1, "--no-train-bn: no then, yes now");
    run_fail("vision fit %s/idx --out %s/uf --classes 2,1 --pretrained %s/pre --unfreeze --bs 4 --epochs 1 "
             "--no-augment --resume " FAST, 1, "--classes: 2,0 then, 2,1 now");

    run_fail("vision fit %s/idx --out %s/x --strict " FAST, 2, "--strict applies to --pretrained weights only");
    run_fail("vision fit %s/idx --out %s/x --no-train-bn " FAST, 2, "--no-train-bn applies to --pretrained");
    run_fail("vision fit %s/idx --out %s/x --pretrained %s/pre --unfreeze --schedule fine-tune " FAST, 2, "contradict");
    run_fail("vision fit %s/idx --out %s/x --pretrained %s/nothing " FAST, 1, "--pretrained");
    expect_in("err", "nothing");
    run_fail("vision fit %s/idx --out %s/x --pretrained %s/pre --arch simple-cnn --bs 4 " FAST, 1,
             "is a simple-resnet; this learner is a simple-cnn");
    run_fail("vision fit %s/idx --out %s/x --pretrained %s/pre/model.safetensors --bs 4 " FAST, 1,
             "a weights file loads into resnet18/34/50");

    /* a torchvision-named ResNet-18 state dict (3 channels, 1000 classes) into 1-channel data */
    kiln_ctx *ctx = ku_ctx();
    kiln_model *tv = kiln_resnet18_new(3, 1000);
    cr_assert(tv && !kiln_model_alloc(tv, ctx), "%s", kiln_last_error());
    cr_assert(!kiln_model_save(tv, P("r18.safetensors"), NULL), "%s", kiln_last_error());
    kiln_model_free(tv);
    ku_ctx_free(ctx);
    run_ok("vision fit %s/idx --out %s/r18 --arch resnet18 --pretrained %s/r18.safetensors --strict --bs 8 --epochs 1 "
           "--freeze-epochs 1 --lr-mult 10 --no-augment --threads 1 --workers 0 --progress quiet");
    expect_in("out", "r18.safetensors: loaded 100 of 100 tensors and 20 BatchNorm counters from its 122 keys");
    expect_in("out", "(2 left alone on purpose)");
    expect_in("out", "adapted");
    expect_in("out", "body frozen; 3 layer groups, BatchNorm trains");
}
