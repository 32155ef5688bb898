/* Classification interpretation (include/kiln/interp.h) on hand-made predictions whose
 * confusion matrix, most confused pairs, top losses, accuracy and CSV text are worked out
 * here by hand; bad input; atomic files; and the vision top-losses grid on a small image
 * folder made in the test, compared byte for byte with the grid drawn directly. */
#include "util/ku.h"
#include "util/ku_cli.h"
#include "util/ku_disk.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[64];

static void setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/kiln_interp.XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    (void)system(cmd);
}

static const char *in_dir(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

/* Nine items of three classes. Item: target, probabilities -> predicted (p of actual):
 *   0: 0 [.7 .2 .1] -> 0 (.7)     3: 1 [.6 .3 .1] -> 0 (.3)     6: 2 [.5 .2 .3] -> 0 (.3)
 *   1: 0 [.2 .5 .3] -> 1 (.2)     4: 1 [.1 .8 .1] -> 1 (.8)     7: 1 [0 .5 .5]  -> 1 (.5, tie: first)
 *   2: 0 [.1 .3 .6] -> 2 (.1)     5: 2 [.4 .4 .2] -> 0 (.2, tie: first)
 *   8: 0 [0 1 0]    -> 1 (0: loss -log(1e-30))
 * confusion (row actual): [1 2 1; 1 2 0; 2 0 0], 3 correct of 9. */
static float g_probs[9 * 3] = {.7f, .2f, .1f, .2f, .5f, .3f, .1f, .3f, .6f, .6f, .3f, .1f, .1f, .8f,
                               .1f, .4f, .4f, .2f, .5f, .2f, .3f, 0.f, .5f, .5f, 0.f, 1.f, 0.f};
static int64_t g_targets[9] = {0, 0, 0, 1, 1, 2, 2, 1, 0};
static const char *const g_classes[3] = {"cat", "dog, big", "say \"hi\""};

static kiln_preds preds(void)
{
    return (kiln_preds){.probs = g_probs, .targets = g_targets, .target_dtype = KILN_DTYPE_I64, .n = 9, .c = 3, .k = 1};
}

static kiln_interp interp(void)
{
    kiln_preds p = preds();
    kiln_interp it;
    cr_assert_eq(kiln_interp_from_preds(&p, &it), KILN_STATUS_OK, "%s", kiln_last_error());
    return it;
}

Test(interp, confusion_accuracy_and_items)
{
    kiln_interp it = interp();
    cr_assert_eq(it.n, 9);
    cr_assert_eq(it.c, 3);
    static const int64_t cm[9] = {1, 2, 1, 1, 2, 0, 2, 0, 0};
    for (int k = 0; k < 9; k++) cr_expect_eq(it.confusion[k], cm[k], "confusion[%d][%d]", k / 3, k % 3);
    static const int pred[9] = {0, 1, 2, 0, 1, 0, 0, 1, 1};
    static const float pa[9] = {.7f, .2f, .1f, .3f, .8f, .2f, .3f, .5f, 0.f};
    for (int i = 0; i < 9; i++) {
        cr_expect_eq(it.pred[i], pred[i], "pred[%d]", i);
        cr_expect_eq(it.actual[i], (int)g_targets[i], "actual[%d]", i);
        cr_expect_eq(it.p_actual[i], pa[i], "p_actual[%d]", i);
        double want = -log(i == 8 ? 1e-30 : (double)pa[i]);
        cr_expect_eq(it.loss[i], want, "loss[%d] = %.17g, want %.17g", i, it.loss[i], want);
    }
    cr_expect_eq(it.n_correct, 3);
    cr_expect_eq(it.accuracy, 3.0 / 9.0);
    kiln_interp_free(&it);
    cr_expect_null(it.confusion);
    cr_expect_eq(it.n, 0);
    kiln_interp_free(&it); /* twice is safe */
}

static void expect_pairs(const kiln_confused *got, const kiln_confused *want, int n, const char *what)
{
    for (int k = 0; k < n; k++)
        cr_expect(got[k].actual == want[k].actual && got[k].predicted == want[k].predicted &&
                      got[k].count == want[k].count,
                  "%s: pair %d is (%d, %d, %lld), want (%d, %d, %lld)", what, k, got[k].actual, got[k].predicted,
                  (long long)got[k].count, want[k].actual, want[k].predicted, (long long)want[k].count);
}

Test(interp, most_confused_order_ties_and_min_val)
{
    kiln_interp it = interp();
    kiln_confused out[8];
    int total = -1;
    /* counts 2, 2, 1, 1: ties by actual, then predicted */
    static const kiln_confused all[6] = {{0, 1, 2}, {2, 0, 2}, {0, 2, 1}, {1, 0, 1}, {1, 2, 0}, {2, 1, 0}};
    cr_assert_eq(kiln_interp_most_confused(&it, 1, out, 8, &total), 4);
    cr_expect_eq(total, 4);
    expect_pairs(out, all, 4, "min_val 1");
    cr_assert_eq(kiln_interp_most_confused(&it, 2, out, 8, &total), 2);
    cr_expect_eq(total, 2);
    expect_pairs(out, all, 2, "min_val 2");
    cr_expect_eq(kiln_interp_most_confused(&it, 3, out, 8, &total), 0);
    cr_expect_eq(total, 0);
    /* fastai: min_val 0 lists the pairs never confused too, after the others */
    cr_assert_eq(kiln_interp_most_confused(&it, 0, out, 8, &total), 6);
    cr_expect_eq(total, 6);
    expect_pairs(out, all, 6, "min_val 0");
    /* at most max written, the total still counted */
    memset(out, 0, sizeof out);
    cr_assert_eq(kiln_interp_most_confused(&it, 1, out, 3, &total), 3);
    cr_expect_eq(total, 4);
    expect_pairs(out, all, 3, "max 3");
    cr_expect_eq(out[3].count, 0, "nothing past max");
    cr_expect_eq(kiln_interp_most_confused(&it, 1, NULL, 0, &total), 0);
    cr_expect_eq(total, 4, "counting only");
    cr_expect_eq(kiln_interp_most_confused(&it, 1, out, 8, NULL), 4);
    cr_expect_eq(kiln_interp_most_confused(&it, 1, NULL, 2, &total), -1);
    ku_expect_error("most_confused", "out NULL with max 2");
    cr_expect_eq(kiln_interp_most_confused(NULL, 1, out, 8, &total), -1);
    ku_expect_error("kiln_interp_from_preds", "NULL interp");
    kiln_interp_free(&it);
}

Test(interp, top_losses_order_and_ties)
{
    kiln_interp it = interp();
    /* losses: 8 (p 0), 2 (.1), 1 and 5 (.2, tie: lower index first), 3 and 6 (.3), 7, 0, 4 */
    static const int64_t want[9] = {8, 2, 1, 5, 3, 6, 7, 0, 4};
    int64_t idx[12];
    cr_assert_eq(kiln_interp_top_losses(&it, 9, idx), 9);
    for (int r = 0; r < 9; r++) cr_expect_eq(idx[r], want[r], "rank %d: item %lld, want %lld", r, (long long)idx[r],
                                             (long long)want[r]);
    memset(idx, 0xff, sizeof idx);
    cr_assert_eq(kiln_interp_top_losses(&it, 3, idx), 3);
    for (int r = 0; r < 3; r++) cr_expect_eq(idx[r], want[r]);
    cr_expect_eq(idx[3], -1, "nothing past k");
    cr_assert_eq(kiln_interp_top_losses(&it, 12, idx), 9, "k > n gives n");
    cr_expect_eq(kiln_interp_top_losses(&it, 0, NULL), 0);
    cr_expect_eq(kiln_interp_top_losses(&it, -1, idx), -1);
    ku_expect_error("k = -1", "negative k");
    kiln_interp_free(&it);
}

static void expect_error_zeroed(kiln_preds *p, const char *needle, const char *what)
{
    kiln_interp it;
    memset(&it, 0x5a, sizeof it);
    cr_expect_eq(kiln_interp_from_preds(p, &it), KILN_STATUS_INVALID, "%s: accepted", what);
    ku_expect_error(needle, what);
    cr_expect(it.n == 0 && it.c == 0 && !it.confusion && !it.pred && !it.loss, "%s: out not zeroed", what);
}

Test(interp, bad_input_names_the_item)
{
    kiln_preds p = preds();
    int64_t y[9];
    float pr[27];
    memcpy(y, g_targets, sizeof y);
    memcpy(pr, g_probs, sizeof pr);
    p.targets = y, p.probs = pr;
    y[4] = 3;
    expect_error_zeroed(&p, "item 4: target 3 is not a class index in [0, 3)", "target too large");
    y[4] = -1;
    expect_error_zeroed(&p, "item 4: target -1 is not a class index in [0, 3)", "negative target");
    y[4] = 1;
    pr[5 * 3 + 1] = NAN;
    expect_error_zeroed(&p, "item 5: probability of class 1 is nan", "NaN probability");
    pr[5 * 3 + 1] = INFINITY;
    expect_error_zeroed(&p, "item 5: probability of class 1 is inf", "infinite probability");
    pr[5 * 3 + 1] = .4f;
    p.c = 0;
    expect_error_zeroed(&p, "0 classes", "c = 0");
    p.c = 3, p.n = 0;
    expect_error_zeroed(&p, "0 items", "n = 0");
    p.n = 9, p.target_dtype = KILN_DTYPE_F32;
    expect_error_zeroed(&p, "1 i64 class index", "f32 targets");
    p.target_dtype = KILN_DTYPE_I64, p.k = 2;
    expect_error_zeroed(&p, "targets are 2 i64 per item", "two targets per item");
    p.k = 1, p.probs = NULL;
    expect_error_zeroed(&p, "probs or targets is NULL", "no probs");
    expect_error_zeroed(NULL, "preds is NULL", "no preds");
    p.probs = pr;
    kiln_interp it;
    cr_expect_eq(kiln_interp_from_preds(&p, &it), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_interp_free(&it);
}

static void expect_file(const char *path, const char *want)
{
    char *got = ku_slurp(path);
    cr_expect_str_eq(got, want, "%s", path);
    free(got);
}

Test(interp, confusion_csv, .init = setup, .fini = teardown)
{
    kiln_interp it = interp();
    const char *path = in_dir("confusion_matrix.csv");
    ku_write_bytes(path, "an older and longer file that must be replaced whole\n", 53);
    cr_assert_eq(kiln_interp_write_confusion_csv(&it, g_classes, path), KILN_STATUS_OK, "%s", kiln_last_error());
    expect_file(path, "actual\\predicted,cat,\"dog, big\",\"say \"\"hi\"\"\"\n"
                      "cat,1,2,1\n"
                      "\"dog, big\",1,2,0\n"
                      "\"say \"\"hi\"\"\",2,0,0\n");
    /* no names: classes by index */
    cr_assert_eq(kiln_interp_write_confusion_csv(&it, NULL, path), KILN_STATUS_OK, "%s", kiln_last_error());
    expect_file(path, "actual\\predicted,0,1,2\n0,1,2,1\n1,1,2,0\n2,2,0,0\n");
    ku_expect_no_temp(g_dir);
    /* a folder that is not there: an error naming the file, nothing written */
    cr_expect_eq(kiln_interp_write_confusion_csv(&it, g_classes, in_dir("missing/cm.csv")), KILN_STATUS_IO);
    ku_expect_error("missing/cm.csv", "missing folder");
    ku_expect_no_temp(g_dir);
    kiln_interp bad = {0};
    cr_expect_eq(kiln_interp_write_confusion_csv(&bad, g_classes, path), KILN_STATUS_INVALID);
    ku_expect_error("not an interpretation", "zeroed interp");
    kiln_interp_free(&it);
}

static const char *item_name(void *user, int64_t i)
{
    const char *const *names = user;
    return names[i];
}

Test(interp, top_losses_csv, .init = setup, .fini = teardown)
{
    kiln_interp it = interp();
    static const char *const names[9] = {"i0.png", NULL, "x,y.png", "i3.png", "i4.png", "q\"t.png",
                                         "i6.png", "i7.png", "i8.png"};
    const char *path = in_dir("top_losses.csv");
    cr_assert_eq(kiln_interp_write_top_losses_csv(&it, 4, g_classes, item_name, (void *)names, path), KILN_STATUS_OK,
                 "%s", kiln_last_error());
    /* losses: -log(1e-30), -log(.1f), -log(.2f) twice (float probabilities, printed %.9g) */
    expect_file(path, "rank,index,file,predicted,actual,loss,probability\n"
                      "1,8,i8.png,\"dog, big\",cat,69.0775528,0\n"
                      "2,2,\"x,y.png\",\"say \"\"hi\"\"\",cat,2.30258508,0.100000001\n"
                      "3,1,,\"dog, big\",cat,1.6094379,0.200000003\n"
                      "4,5,\"q\"\"t.png\",cat,\"say \"\"hi\"\"\",1.6094379,0.200000003\n");
    /* no names, no item_name; k past n gives every item */
    cr_assert_eq(kiln_interp_write_top_losses_csv(&it, 100, NULL, NULL, NULL, path), KILN_STATUS_OK, "%s",
                 kiln_last_error());
    expect_file(path, "rank,index,file,predicted,actual,loss,probability\n"
                      "1,8,,1,0,69.0775528,0\n"
                      "2,2,,2,0,2.30258508,0.100000001\n"
                      "3,1,,1,0,1.6094379,0.200000003\n"
                      "4,5,,0,2,1.6094379,0.200000003\n"
                      "5,3,,0,1,1.20397276,0.300000012\n"
                      "6,6,,0,2,1.20397276,0.300000012\n"
                      "7,7,,1,1,0.693147181,0.5\n"
                      "8,0,,0,0,0.356674961,0.699999988\n"
                      "9,4,,1,1,0.223143536,0.800000012\n");
    cr_assert_eq(kiln_interp_write_top_losses_csv(&it, 0, NULL, NULL, NULL, path), KILN_STATUS_OK);
    expect_file(path, "rank,index,file,predicted,actual,loss,probability\n");
    ku_expect_no_temp(g_dir);
    cr_expect_eq(kiln_interp_write_top_losses_csv(&it, -2, NULL, NULL, NULL, path), KILN_STATUS_INVALID);
    ku_expect_error("k = -2", "negative k");
    expect_file(path, "rank,index,file,predicted,actual,loss,probability\n");
    kiln_interp_free(&it);
}

static void expect_png(const char *path)
{
    size_t n = 0;
    unsigned char *b = ku_read_all(path, &n);
    cr_expect(n > 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8), "%s is not a PNG", path);
    free(b);
}

Test(interp, confusion_png, .init = setup, .fini = teardown)
{
    kiln_interp it = interp();
    const char *path = in_dir("confusion_matrix.png");
    kiln_status st = kiln_interp_plot_confusion(&it, g_classes, "accuracy 0.3333", path);
    if (!kiln_plot_available()) {
        cr_expect_eq(st, KILN_STATUS_UNSUPPORTED, "without PLplot");
        cr_expect(access(path, F_OK) != 0, "nothing written");
    } else {
        cr_assert_eq(st, KILN_STATUS_OK, "%s", kiln_last_error());
        expect_png(path);
        cr_assert_eq(kiln_interp_plot_confusion(&it, NULL, NULL, path), KILN_STATUS_OK, "%s", kiln_last_error());
        expect_png(path);
    }
    ku_expect_no_temp(g_dir);
    kiln_interp_free(&it);
}

/* ---- vision: the top-losses grid -------------------------------------------------------- */

/* The valid split of ku_make_image_folder (left 08..11, right 08..11: items 0-3 class 0,
 * 4-7 class 1) with probability q[i] of the actual class. */
static kiln_data *open_folder(kiln_vision_data **v)
{
    char root[128];
    snprintf(root, sizeof root, "%s/ds", g_dir);
    ku_make_image_folder(root);
    kiln_vision_params vp = kiln_vision_default_params();
    vp.size = 16, vp.n_workers = 0, vp.batch_size = 4;
    kiln_data *d = kiln_vision_open(root, &vp);
    cr_assert(d, "%s", kiln_last_error());
    cr_assert_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_VALID), 8);
    *v = kiln_vision_data_of(d);
    for (int i = 0; i < 8; i++) cr_assert_eq(kiln_vision_data_label(*v, KILN_DATA_SPLIT_VALID, i), i / 4);
    return d;
}

static const float g_q[8] = {.9f, .1f, .6f, .3f, .8f, .2f, .7f, .4f};

static void vision_interp(int64_t n, const int64_t *y, kiln_interp *it)
{
    float pr[16];
    for (int i = 0; i < n; i++) pr[i * 2 + y[i]] = g_q[i], pr[i * 2 + 1 - y[i]] = 1 - g_q[i];
    kiln_preds p = {.probs = pr, .targets = (void *)y, .target_dtype = KILN_DTYPE_I64, .n = n, .c = 2, .k = 1};
    cr_assert_eq(kiln_interp_from_preds(&p, it), KILN_STATUS_OK, "%s", kiln_last_error());
}

Test(interp, vision_top_losses_grid, .init = setup, .fini = teardown)
{
    kiln_vision_data *v;
    kiln_data *d = open_folder(&v);
    static const int64_t y[8] = {0, 0, 0, 0, 1, 1, 1, 1};
    kiln_interp it;
    vision_interp(8, y, &it);
    const char *path = in_dir("top_losses.png");
    kiln_status st = kiln_vision_plot_top_losses(v, KILN_DATA_SPLIT_VALID, &it, 3, NULL, path);
    if (!kiln_plot_available()) {
        cr_expect_eq(st, KILN_STATUS_UNSUPPORTED, "without PLplot");
    } else {
        cr_assert_eq(st, KILN_STATUS_OK, "%s", kiln_last_error());
        /* the same grid drawn directly: items 1 (q .1), 5 (.2), 3 (.3), fastai's labels */
        static const int64_t top[3] = {1, 5, 3};
        static const char *const labels[3] = {"right/left\n2.30 / 0.10", "left/right\n1.61 / 0.20",
                                              "right/left\n1.20 / 0.30"};
        float imgs[3 * 16 * 16];
        for (int r = 0; r < 3; r++)
            cr_assert_eq(kiln_vision_data_item(v, KILN_DATA_SPLIT_VALID, top[r], false, imgs + r * 256),
                         KILN_STATUS_OK);
        const char *ref = in_dir("ref.png");
        cr_assert_eq(kiln_image_grid_png(ref, imgs, 3, 1, 16, 16, labels, 0, NULL, NULL), KILN_STATUS_OK, "%s",
                     kiln_last_error());
        size_t n = 0;
        unsigned char *want = ku_read_all(ref, &n);
        ku_expect_same_file(path, want, n);
        free(want);
        /* the caller's class names */
        static const char *const names[2] = {"L", "R"};
        cr_assert_eq(kiln_vision_plot_top_losses(v, KILN_DATA_SPLIT_VALID, &it, 20, names, path), KILN_STATUS_OK,
                     "%s", kiln_last_error());
        expect_png(path);
    }
    ku_expect_no_temp(g_dir);
    kiln_interp_free(&it);
    kiln_data_free(d);
}

Test(interp, vision_top_losses_checks_the_split, .init = setup, .fini = teardown)
{
    kiln_vision_data *v;
    kiln_data *d = open_folder(&v);
    const char *path = in_dir("top_losses.png");
    kiln_interp it;
    static const int64_t y[8] = {0, 0, 0, 0, 1, 1, 1, 1};
    vision_interp(7, y, &it); /* one item short */
    cr_expect_eq(kiln_vision_plot_top_losses(v, KILN_DATA_SPLIT_VALID, &it, 3, NULL, path), KILN_STATUS_INVALID);
    ku_expect_error("has 7 items", "item count");
    kiln_interp_free(&it);
    static const int64_t wrong[8] = {0, 1, 0, 0, 1, 1, 1, 1}; /* item 1 is class 0 */
    vision_interp(8, wrong, &it);
    cr_expect_eq(kiln_vision_plot_top_losses(v, KILN_DATA_SPLIT_VALID, &it, 3, NULL, path), KILN_STATUS_INVALID);
    ku_expect_error("item 1: the interpretation's class 1 is not the data's 0", "wrong label");
    cr_expect_eq(kiln_vision_plot_top_losses(v, KILN_DATA_SPLIT_VALID, &it, 0, NULL, path), KILN_STATUS_INVALID);
    ku_expect_error("k = 0", "k = 0");
    cr_expect_eq(kiln_vision_plot_top_losses(v, KILN_DATA_SPLIT_VALID, NULL, 3, NULL, path), KILN_STATUS_INVALID);
    ku_expect_error("not an interpretation", "NULL interp");
    cr_expect(access(path, F_OK) != 0, "nothing written");
    ku_expect_no_temp(g_dir);
    kiln_interp_free(&it);
    kiln_data_free(d);
}
