/* Transfer learning through the vision learner (kiln/apps.h, kiln_vision_learner_params
 * .pretrained) on a tiny IDX set made here (3 classes, 28x28 grey): a model exported on
 * classes {0, 1} gives its body to a learner for classes {2, 0}, whose head starts fresh;
 * the learner starts frozen (fastai freeze(): body weights do not move in training, BatchNorm
 * parameters do while train_bn is on, the head does); unfreeze / train_bn false change that;
 * a ResNet weights file with torchvision names loads into resnet18's body with conv1 adapted
 * to one channel and fc dropped, with the report; strict refuses what does not fit; the data
 * parameters follow a pretrained folder; a model trained on a class subset opens a source
 * with more classes (kiln_learner_open_data filters it); wrong folders and files are refused
 * naming the cause, and the constructor frees the data when it fails. */
#include "util/ku_cli.h"

#include "kiln/models.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef __SANITIZE_ADDRESS__
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\n"; }
#endif

#define F32(t) ((const float *)(t)->data)

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
    snprintf(g_dir, sizeof g_dir, "/tmp/kiln_transfer.XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL);
    cr_assert(mkdir(P("idx"), 0777) == 0);
    ku_make_idx(P("idx"), "train", 48);
    ku_make_idx(P("idx"), "t10k", 12);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    (void)system(cmd);
}
TestSuite(transfer, .init = setup, .fini = teardown);

/* g_dir/idx with classes (NULL: all), batches of 4, the loader on this thread, n_channels. */
static kiln_data *open_idx(const char *const *classes, int n_classes, int n_channels)
{
    kiln_vision_params vp = kiln_vision_default_params();
    vp.batch_size = 4;
    vp.n_workers = 0;
    vp.classes = classes;
    vp.n_classes = n_classes;
    vp.n_channels = n_channels;
    kiln_data *d = kiln_vision_dls_open(P("idx"), &vp, NULL);
    cr_assert(d, "%s", kiln_last_error());
    return d;
}

static kiln_vision_learner_params quiet_params(void)
{
    kiln_vision_learner_params lp = kiln_vision_learner_default_params();
    lp.learner.progress = KILN_PROGRESS_STYLE_QUIET;
    return lp;
}

/* An arch learner on classes {0, 1} trained one epoch and exported to g_dir/rel. */
static void export_pretrained(kiln_ctx *ctx, const char *arch, int n_channels, const char *rel)
{
    static const char *const cls[] = {"0", "1"};
    kiln_vision_learner_params lp = quiet_params();
    kiln_learner *l = kiln_vision_learner_new(ctx, open_idx(cls, 2, n_channels), arch, &lp);
    cr_assert(l, "%s", kiln_last_error());
    cr_assert(!kiln_learner_fit_one_cycle(l, 1, 1e-2, 1e-2, NULL), "%s", kiln_last_error());
    cr_assert(!kiln_learner_export(l, P(rel)), "%s", kiln_last_error());
    kiln_learner_free(l);
}

/* A copy of store entry i's values (numel into *n). */
static float *copy_entry(kiln_model *m, size_t i, int64_t *n)
{
    kiln_tensor *t = kiln_store_at(kiln_model_store(m), i);
    *n = kiln_numel(t);
    float *c = malloc((size_t)*n * sizeof *c);
    cr_assert(c);
    memcpy(c, F32(t), (size_t)*n * sizeof *c);
    return c;
}

static bool same_values(kiln_model *m, size_t i, const float *v, int64_t n)
{
    return !memcmp(F32(kiln_store_at(kiln_model_store(m), i)), v, (size_t)n * sizeof *v);
}

Test(transfer, folder_body_loads_head_fresh_and_training_moves_only_what_fastai_trains)
{
    kiln_ctx *ctx = ku_ctx();
    export_pretrained(ctx, "simple-cnn", 1, "pre");
    kiln_learner *src = kiln_learner_load(ctx, P("pre"));
    cr_assert(src, "%s", kiln_last_error());
    kiln_model *sm = kiln_learner_model(src);

    static const char *const cls[] = {"2", "0"};
    kiln_load_report rep = {0};
    kiln_vision_learner_params lp = quiet_params();
    lp.pretrained = P("pre");
    lp.report = &rep;
    kiln_learner *l = kiln_vision_learner_new(ctx, open_idx(cls, 2, 1), "simple-cnn", &lp);
    cr_assert(l, "%s", kiln_last_error());
    kiln_model *m = kiln_learner_model(l);
    kiln_store *s = kiln_model_store(m);
    size_t n = kiln_store_count(s);
    int head = kiln_model_n_groups(m) - 1;
    cr_expect_eq(kiln_model_frozen_to(m), head, "a pretrained learner starts frozen: freeze() = freeze_to(-1)");
    cr_expect(kiln_model_train_bn(m));

    /* the report: every body entry loaded, the head's keys left alone, nothing missing */
    size_t n_body = 0, n_head_keys = 0;
    for (size_t i = 0; i < n; i++) {
        bool is_head = kiln_model_param_group(m, i) == head;
        n_body += !is_head;
        n_head_keys += is_head;
    }
    cr_expect_eq(rep.n_loaded, n_body, "loaded %zu of %zu body entries", rep.n_loaded, n_body);
    cr_expect_eq(rep.n_missing + rep.n_unexpected + rep.n_mismatched, 0);
    cr_expect(rep.n_skipped >= n_head_keys, "head keys left alone: %zu (head entries %zu)", rep.n_skipped, n_head_keys);
    cr_expect(rep.path && strstr(rep.path, "pre/model.safetensors"), "report path %s", rep.path);
    kiln_load_report_free(&rep);

    /* body = the export's values; the head is not the export's (fresh for these classes) */
    float *before[128] = {0};
    int64_t nv[128];
    cr_assert(n <= 128);
    for (size_t i = 0; i < n; i++) {
        kiln_tensor *t = kiln_store_at(s, i);
        kiln_tensor *st = kiln_store_find(kiln_model_store(sm), t->name);
        cr_assert(st, "%s missing from the export", t->name);
        if (kiln_model_param_group(m, i) != head)
            cr_expect(!memcmp(F32(t), F32(st), (size_t)kiln_numel(t) * sizeof(float)),
                      "%s: body entry differs from the export's", t->name);
        else if (kiln_store_is_param(s, i) && kiln_numel(t) > 16)
            cr_expect(memcmp(F32(t), F32(st), (size_t)kiln_numel(t) * sizeof(float)),
                      "%s: the head must not come from the export", t->name);
        before[i] = copy_entry(m, i, &nv[i]);
    }

    /* frozen training: body weights stay bit for bit, BatchNorm parameters and the head move */
    cr_assert(!kiln_learner_fit_one_cycle(l, 1, 1e-2, 1e-2, NULL), "%s", kiln_last_error());
    int moved_bn = 0, moved_head = 0;
    for (size_t i = 0; i < n; i++) {
        kiln_param_info info;
        cr_assert(!kiln_model_param_info(m, i, &info));
        if (!info.is_param) continue;
        const char *name = kiln_store_at(s, i)->name;
        bool same = same_values(m, i, before[i], nv[i]);
        if (info.group == head) moved_head += !same;
        else if (info.is_bn) moved_bn += !same;
        else cr_expect(same, "%s (frozen body) changed in frozen training", name);
    }
    cr_expect(moved_bn > 0, "train_bn: the body's BatchNorm parameters train");
    cr_expect(moved_head > 0, "the head trains");
    for (size_t i = 0; i < n; i++) free(before[i]);
    kiln_learner_free(l);

    /* unfreeze: everything trains from the start; train_bn false: the body's BatchNorm is frozen */
    lp.report = NULL;
    lp.unfreeze = true;
    l = kiln_vision_learner_new(ctx, open_idx(cls, 2, 1), "simple-cnn", &lp);
    cr_assert(l, "%s", kiln_last_error());
    cr_expect_eq(kiln_model_frozen_to(kiln_learner_model(l)), 0);
    for (size_t i = 0; i < n; i++)
        if (kiln_store_is_param(kiln_model_store(kiln_learner_model(l)), i))
            cr_expect(kiln_store_at(kiln_model_store(kiln_learner_model(l)), i)->requires_grad);
    kiln_learner_free(l);
    lp.unfreeze = false;
    lp.train_bn = false;
    l = kiln_vision_learner_new(ctx, open_idx(cls, 2, 1), "simple-cnn", &lp);
    cr_assert(l, "%s", kiln_last_error());
    m = kiln_learner_model(l);
    cr_expect(!kiln_model_train_bn(m));
    for (size_t i = 0; i < n; i++) {
        kiln_param_info info;
        cr_assert(!kiln_model_param_info(m, i, &info));
        if (info.is_param)
            cr_expect_eq(kiln_store_at(kiln_model_store(m), i)->requires_grad, info.group == head,
                         "%s with train_bn off", kiln_store_at(kiln_model_store(m), i)->name);
    }
    kiln_learner_free(l);
    kiln_learner_free(src);
    ku_ctx_free(ctx);
}

Test(transfer, data_params_follow_a_pretrained_folder)
{
    kiln_ctx *ctx = ku_ctx();
    export_pretrained(ctx, "simple-cnn", 1, "pre");
    kiln_vision_model_info mi;
    cr_assert(!kiln_vision_model_info_read(P("pre/model.json"), &mi), "%s", kiln_last_error());
    kiln_vision_params vp = kiln_vision_default_params();
    cr_assert(!kiln_vision_pretrained_data_params(P("pre"), &vp), "%s", kiln_last_error());
    cr_expect_eq(vp.n_channels, 1);
    cr_expect_eq(vp.norm, KILN_VISION_NORM_CUSTOM);
    cr_expect_float_eq(vp.custom_stats.mean[0], mi.stats.mean[0], 0);
    cr_expect_float_eq(vp.custom_stats.std[0], mi.stats.std[0], 0);
    cr_expect(mi.stats.std[0] > 0 && mi.stats.std[0] != 1);
    kiln_vision_model_info_free(&mi);
    /* a weights file: nothing to follow */
    kiln_vision_params v2 = kiln_vision_default_params(), v0 = v2;
    cr_assert(!kiln_vision_pretrained_data_params(P("pre/model.safetensors"), &v2));
    cr_expect(v2.norm == v0.norm && v2.n_channels == v0.n_channels);
    /* a folder without model.json */
    cr_assert(mkdir(P("empty"), 0777) == 0);
    cr_expect_neq(kiln_vision_pretrained_data_params(P("empty"), &v2), KILN_STATUS_OK);
    cr_expect(strstr(kiln_last_error(), "model.json"), "%s", kiln_last_error());
    ku_ctx_free(ctx);
}

/* Refusals name the cause; each failing constructor frees the data it took (ASan/LSan). */
Test(transfer, wrong_folders_and_files_are_refused)
{
    kiln_ctx *ctx = ku_ctx();
    export_pretrained(ctx, "simple-cnn", 1, "pre");
    export_pretrained(ctx, "simple-cnn", 3, "pre3");
    static const char *const cls[] = {"2", "0"};
    kiln_vision_learner_params lp = quiet_params();
    struct {
        const char *pretrained, *arch, *needle;
    } cases[] = {
        {"pre", "simple-resnet", "is a simple-cnn; this learner is a simple-resnet"},
        {"pre3", "simple-cnn", "takes 3-channel images; the data has 1"},
        {"pre/model.safetensors", "simple-cnn", "a weights file loads into resnet18/34/50"},
        {"nothing", "simple-cnn", "nothing"},
        {"pre/model.json", "resnet18", "model.json"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        lp.pretrained = P(cases[k].pretrained);
        kiln_learner *l = kiln_vision_learner_new(ctx, open_idx(cls, 2, 1), cases[k].arch, &lp);
        cr_expect(!l, "%s into %s was accepted", cases[k].pretrained, cases[k].arch);
        kiln_learner_free(l);
        cr_expect(strstr(kiln_last_error(), cases[k].needle), "%s into %s: '%s' does not say '%s'", cases[k].pretrained,
                  cases[k].arch, kiln_last_error(), cases[k].needle);
    }
    ku_ctx_free(ctx);
}

/* A torchvision-named ResNet-18 state dict (saved by kiln_model_save from kiln_resnet18_new,
 * 3 channels, 1000 classes) into resnet18's body for 1-channel data: conv1 summed over RGB,
 * fc dropped, the head fresh; a ResNet-34 file loads its ResNet-18 part with the extra blocks
 * reported as unexpected, and strict refuses it naming them. */
Test(transfer, resnet_file_adapts_conv1_and_strict_refuses_extra_keys)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_model *tv = kiln_resnet18_new(3, 1000);
    cr_assert(tv && !kiln_model_alloc(tv, ctx), "%s", kiln_last_error());
    cr_assert(!kiln_model_save(tv, P("r18.safetensors"), NULL), "%s", kiln_last_error());
    kiln_model *tv34 = kiln_resnet34_new(3, 1000);
    cr_assert(tv34 && !kiln_model_alloc(tv34, ctx), "%s", kiln_last_error());
    cr_assert(!kiln_model_save(tv34, P("r34.safetensors"), NULL), "%s", kiln_last_error());
    kiln_model_free(tv34);

    static const char *const cls[] = {"2", "0", "1"};
    kiln_load_report rep = {0};
    kiln_vision_learner_params lp = quiet_params();
    lp.pretrained = P("r18.safetensors");
    lp.report = &rep;
    kiln_learner *l = kiln_vision_learner_new(ctx, open_idx(cls, 3, 1), "resnet18", &lp);
    cr_assert(l, "%s", kiln_last_error());
    kiln_model *m = kiln_learner_model(l);
    cr_expect_eq(rep.n_adapted, 1, "conv1 adapted to 1 channel");
    cr_expect_eq(rep.n_skipped, 2, "fc.weight and fc.bias left alone");
    cr_expect_eq(rep.n_missing + rep.n_unexpected + rep.n_mismatched, 0);
    cr_expect_eq(kiln_model_frozen_to(m), 2, "resnet: 3 groups, frozen to the head");
    /* conv1: (64, 1, 7, 7) = the file's (64, 3, 7, 7) summed over RGB */
    const float *w3 = F32(kiln_store_find(kiln_model_store(tv), "conv1.weight"));
    const float *w1 = F32(kiln_store_find(kiln_model_store(m), "0.0.weight"));
    float want[64 * 49];
    for (int o = 0; o < 64; o++)
        for (int k = 0; k < 49; k++) want[o * 49 + k] = w3[(o * 3 + 0) * 49 + k] + w3[(o * 3 + 1) * 49 + k] + w3[(o * 3 + 2) * 49 + k];
    ku_expect_arrays(w1, want, 64 * 49, 1e-6, 1e-6, "conv1 summed over RGB");
    const float *l4 = F32(kiln_store_find(kiln_model_store(tv), "layer4.1.conv2.weight"));
    const float *k4 = F32(kiln_store_find(kiln_model_store(m), "0.7.1.conv2.weight"));
    cr_expect(!memcmp(l4, k4, 512 * 512 * 9 * sizeof(float)), "layer4.1.conv2 copied");
    kiln_load_report_free(&rep);
    kiln_learner_free(l);
    kiln_model_free(tv);

    lp.pretrained = P("r34.safetensors");
    l = kiln_vision_learner_new(ctx, open_idx(cls, 3, 1), "resnet18", &lp);
    cr_assert(l, "%s", kiln_last_error());
    cr_expect(rep.n_unexpected > 0, "ResNet-34's extra blocks are unexpected in ResNet-18");
    cr_expect_eq(rep.n_missing + rep.n_mismatched, 0);
    kiln_load_report_free(&rep);
    kiln_learner_free(l);
    lp.strict = true;
    l = kiln_vision_learner_new(ctx, open_idx(cls, 3, 1), "resnet18", &lp);
    cr_expect(!l, "strict must refuse unexpected keys");
    cr_expect(strstr(kiln_last_error(), "layer1.2."), "%s", kiln_last_error());
    cr_expect(rep.n_unexpected > 0 && rep.strict);
    kiln_load_report_free(&rep);
    kiln_learner_free(l);
    ku_ctx_free(ctx);
}

/* A model trained on classes {2, 0} of a 3-class source opens that source whole (it is
 * filtered to the model's classes, in the model's order) to validate and interpret. */
Test(transfer, open_data_filters_a_source_with_more_classes)
{
    kiln_ctx *ctx = ku_ctx();
    static const char *const cls[] = {"2", "0"};
    kiln_vision_learner_params lp = quiet_params();
    kiln_learner *l = kiln_vision_learner_new(ctx, open_idx(cls, 2, 1), "simple-cnn", &lp);
    cr_assert(l, "%s", kiln_last_error());
    cr_assert(!kiln_learner_export(l, P("sub")), "%s", kiln_last_error());
    int64_t n_valid = kiln_data_n_items(kiln_learner_data(l), KILN_DATA_SPLIT_VALID);
    kiln_learner_free(l);

    l = kiln_learner_load(ctx, P("sub"));
    cr_assert(l, "%s", kiln_last_error());
    kiln_vision_params vp = kiln_vision_default_params();
    vp.batch_size = 4, vp.n_workers = 0;
    cr_assert(!kiln_learner_open_data(l, P("idx"), &vp, false), "%s", kiln_last_error());
    kiln_vision_data *v = kiln_vision_data_of(kiln_learner_data(l));
    cr_expect_eq(kiln_vision_data_n_classes(v), 2);
    cr_expect_str_eq(kiln_vision_data_class(v, 0), "2");
    cr_expect_str_eq(kiln_vision_data_class(v, 1), "0");
    cr_expect_eq(kiln_data_n_items(kiln_learner_data(l), KILN_DATA_SPLIT_VALID), n_valid);
    kiln_interp in;
    cr_assert(!kiln_learner_interpret(l, KILN_DATA_SPLIT_VALID, NULL, &in), "%s", kiln_last_error());
    kiln_interp_free(&in);
    kiln_learner_free(l);
    ku_ctx_free(ctx);
}
