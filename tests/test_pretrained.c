/* Pretrained weights onto kiln's models (src/nn/load.c, load_report.c, models/resnet_load.c)
 * against tests/fixtures/pretrained*.{pth,safetensors} (gen_pretrained.py, PyTorch 1.13 and
 * torchvision 0.14):
 *  - torchvision-format files (.pth zip and legacy, and safetensors with the same keys) of a
 *    width-8 BasicBlock and a width-4 Bottleneck ResNet load into
 *    kiln_resnet_new and give PyTorch's eval logits; the body loads into a fastai vision model
 *    (fc dropped, the head from the fixture) and gives fastai's logits; 1- and 2-channel models
 *    get conv1 adapted (sum of RGB; first two x 1.5), checked on the weights and the logits;
 *  - the load report: missing, unexpected, mis-shaped and adapted keys, with and without strict
 *    (strict failures leave the model unchanged), the printed report and its caps, wrappers
 *    ("module.") stripped, files of which nothing maps (and timm's deep stem) refused clearly;
 *  - kiln_model_load_body: a kiln-exported vision model or simple-cnn into one with another
 *    head keeps the new head.
 * Tolerance for logits: |kiln - torch| <= 1e-5 + 1e-4 * |torch|: f32 on both sides, other
 * conv/GEMM kernels and summation orders through a few layers, logits of order 1. */
#include "util/ku.h"

#include "kiln/models.h"
#include "nn/nn_internal.h" /* num_batches_tracked of a module */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ATOL 1e-5
#define RTOL 1e-4
#define FIX(name) KILN_FIXTURE_DIR "/" name

static kiln_resnet_params basic_params(int64_t n_in)
{
    return (kiln_resnet_params){.block = KILN_RESNET_BLOCK_BASIC, .layers = {1, 1, 1, 1}, .width = 8, .n_in = n_in,
                                .n_classes = 5};
}

static kiln_model *alloc_or_die(kiln_model *m, kiln_ctx *ctx)
{
    cr_assert(m, "%s", kiln_last_error());
    cr_assert_eq(kiln_model_alloc(m, ctx), KILN_STATUS_OK, "%s", kiln_last_error());
    return m;
}

/* The fastai vision model of the fixture: the basic body (n_in channels), head for 3 classes. */
static kiln_model *vision_model(kiln_ctx *ctx, int64_t n_in)
{
    kiln_resnet_params rp = basic_params(n_in);
    kiln_vision_model_params vp = kiln_vision_model_default_params();
    vp.n_classes = 3;
    vp.lin_ftrs = 16;
    return alloc_or_die(kiln_vision_model_new(&rp, &vp), ctx);
}

static void expect_logits(kiln_ctx *ctx, kiln_model *m, kiln_st_file *f, const char *kase, const char *x_case)
{
    kiln_model_train(m, false);
    kiln_tensor *y = kiln_model_forward(m, ctx, ku_load(ctx, f, x_case, "x"));
    ku_expect_fixture(ctx, f, kase, "y", y, ATOL, RTOL);
}

/* BatchNorm modules under path prefix (NULL: all): one counter each. */
static size_t n_bn(kiln_model *m, const char *prefix)
{
    size_t n = 0;
    for (size_t i = 0; i < kiln_model_n_modules(m); i++) {
        kiln_module *mod = kiln_model_module_at(m, i);
        kiln_module_kind k = kiln_module_kind_of(mod);
        n += (k == KILN_MODULE_BATCH_NORM1D || k == KILN_MODULE_BATCH_NORM2D) &&
             (!prefix || !strncmp(kiln_module_path(mod), prefix, strlen(prefix)));
    }
    return n;
}

static const float *entry(kiln_model *m, const char *name)
{
    kiln_tensor *t = kiln_store_find(kiln_model_store(m), name);
    cr_assert(t, "no entry %s", name);
    return t->data;
}

/* ---- parity: whole ResNets and the vision model ---------------------------------------------------- */

Test(pretrained, torchvision_files_give_torchs_logits)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("pretrained");
    /* the same state dicts as torch.save writes them (zip and legacy) and as safetensors */
    const char *files[] = {FIX("pretrained_basic.pth"), FIX("pretrained_basic_legacy.pth"),
                           FIX("pretrained_basic.safetensors"), FIX("pretrained_bottle.pth"),
                           FIX("pretrained_bottle.safetensors")};
    for (int i = 0; i < 5; i++) {
        int k = i >= 3; /* bottleneck */
        kiln_resnet_params p = basic_params(3);
        if (k) p.block = KILN_RESNET_BLOCK_BOTTLENECK, p.width = 4;
        const char *kase = k ? "bottle" : "basic";
        /* plain kiln_model_load: the names are kiln's */
        kiln_model *m = alloc_or_die(kiln_resnet_new(&p), ctx);
        cr_assert_eq(kiln_model_load(m, files[i], true), KILN_STATUS_OK, "%s", kiln_last_error());
        expect_logits(ctx, m, f, kase, kase);
        cr_expect_eq(kiln_model_find(m, "layer1.0.bn1")->num_batches_tracked, 3, "num_batches_tracked read");
        kiln_model_free(m);

        /* with the report */
        m = alloc_or_die(kiln_resnet_new(&p), ctx);
        kiln_load_report r;
        cr_assert_eq(kiln_resnet_load_pretrained(m, files[i], true, &r), KILN_STATUS_OK, "%s", kiln_last_error());
        size_t n = kiln_store_count(kiln_model_store(m));
        cr_expect_eq(r.n_loaded, n);
        cr_expect_eq(r.n_model, n);
        cr_expect_eq(n_bn(m, NULL), k ? 17u : 12u);
        cr_expect_eq(r.n_file, n + n_bn(m, NULL), "every BatchNorm's counter is a key too");
        cr_expect_eq(r.n_counters, n_bn(m, NULL));
        cr_expect_not(kiln_load_report_has_problems(&r));
        cr_expect_eq(r.n_adapted + r.n_skipped, 0u);
        cr_expect_null(r.hint);
        expect_logits(ctx, m, f, kase, kase);
        kiln_load_report_free(&r);
        cr_expect_null(r.path, "free zeroes the report");
        kiln_model_free(m);
    }
    kiln_st_close(f);
    ku_ctx_free(ctx);
}

/* The body from path into the fixture's vision model (its head from the fixture): fastai's logits. */
static void vision_parity(kiln_ctx *ctx, kiln_st_file *f, const char *path)
{
    kiln_model *m = vision_model(ctx, 3);
    /* the head's fixed weights first (the body is missing there: not strict) */
    cr_assert_eq(kiln_model_load_st(m, f, "vision.head.", false), KILN_STATUS_OK, "%s", kiln_last_error());
    float head = entry(m, "1.4.weight")[0];
    kiln_load_report r;
    cr_assert_eq(kiln_vision_model_load_pretrained_report(m, path, true, &r), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(r.n_skipped, 2u, "fc.weight and fc.bias are left alone");
    cr_expect_eq(r.n_loaded, r.n_model);
    cr_expect_eq(r.n_counters, n_bn(m, "0."), "the body's counters");
    cr_expect_not(kiln_load_report_has_problems(&r));
    cr_expect_eq(entry(m, "1.4.weight")[0], head, "the head is untouched");
    kiln_load_report_free(&r);
    expect_logits(ctx, m, f, "vision", "basic");
    kiln_model_free(m);
}

Test(pretrained, the_body_loads_into_a_vision_model_with_fastais_logits)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("pretrained");
    vision_parity(ctx, f, FIX("pretrained_basic.pth"));
    vision_parity(ctx, f, FIX("pretrained_basic.safetensors"));
    kiln_st_close(f);
    ku_ctx_free(ctx);
}

Test(pretrained, first_conv_adapted_for_one_and_two_channels)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("pretrained");
    kiln_st_file *w = NULL;
    cr_assert_eq(kiln_st_open(FIX("pretrained_basic.safetensors"), &w), KILN_STATUS_OK, "%s", kiln_last_error());
    const float *rgb;
    cr_assert_eq(kiln_st_want(w, "conv1.weight", KILN_DTYPE_F32, 4, (int64_t[]){8, 3, 7, 7}, (const void **)&rgb),
                 KILN_STATUS_OK, "%s", kiln_last_error());
    for (int64_t n_in = 1; n_in <= 2; n_in++) {
        kiln_model *m = vision_model(ctx, n_in);
        cr_assert_eq(kiln_model_load_st(m, f, "vision.head.", false), KILN_STATUS_OK, "%s", kiln_last_error());
        kiln_load_report r;
        cr_assert_eq(kiln_vision_model_load_pretrained_report(m, FIX("pretrained_basic.pth"), true, &r), KILN_STATUS_OK,
                     "%s", kiln_last_error());
        cr_assert_eq(r.n_adapted, 1u);
        cr_expect_str_eq(r.adapted[0].key, "conv1.weight");
        cr_expect_str_eq(r.adapted[0].model_key, "0.0.weight");
        cr_expect_eq(r.adapted[0].file_shape[1], 3);
        cr_expect_eq(r.adapted[0].model_shape[1], n_in);
        cr_expect_eq(r.n_loaded, r.n_model, "the adapted conv counts as loaded");
        cr_expect_not(kiln_load_report_has_problems(&r), "an adaptation is no problem, even strict");
        kiln_load_report_free(&r);
        const float *got = entry(m, "0.0.weight");
        for (int64_t o = 0; o < 8; o++)
            for (int64_t j = 0; j < 49; j++) {
                const float *px = rgb + o * 147 + j;
                if (n_in == 1) {
                    /* a three-term f32 sum, maybe in another order: 1e-6 */
                    cr_assert_float_eq(got[o * 49 + j], px[0] + px[49] + px[98], 1e-6f);
                } else {
                    cr_assert_eq(got[(o * 2) * 49 + j], px[0] * 1.5f);
                    cr_assert_eq(got[(o * 2 + 1) * 49 + j], px[49] * 1.5f);
                }
            }
        expect_logits(ctx, m, f, n_in == 1 ? "vision_c1" : "vision_c2", n_in == 1 ? "vision_c1" : "vision_c2");
        kiln_model_free(m);
    }
    kiln_st_close(w);
    kiln_st_close(f);
    ku_ctx_free(ctx);
}

/* ---- the report -------------------------------------------------------------------------------------- */

typedef struct variant {
    const char *prefix;   /* put before every key ("module."), or NULL */
    const char *drop;     /* a key left out, or NULL */
    const char *reshape;  /* a key written with shape (3) instead, or NULL */
    int n_extra;          /* keys "extra.<i>.weight" (2) added */
    const char *rename_from, *rename_to; /* one key renamed, or NULL */
} variant;

/* The basic fixture's tensors, changed as v says, in a temp file at path. */
static void write_variant(const char *path, const variant *v)
{
    kiln_st_file *src = NULL;
    cr_assert_eq(kiln_st_open(FIX("pretrained_basic.safetensors"), &src), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_st_writer *w = kiln_st_writer_new();
    static const float three[3] = {1, 2, 3};
    char key[512];
    for (size_t j = 0; j < kiln_st_count(src); j++) {
        const char *name = kiln_st_name(src, j);
        if (v->drop && !strcmp(name, v->drop)) continue;
        if (v->rename_from && !strcmp(name, v->rename_from)) name = v->rename_to;
        snprintf(key, sizeof key, "%s%s", v->prefix ? v->prefix : "", name);
        kiln_dtype dt;
        int nd;
        int64_t shape[KILN_MAX_DIMS];
        const void *data;
        size_t nbytes;
        cr_assert_eq(kiln_st_info(src, kiln_st_name(src, j), &dt, &nd, shape, &data, &nbytes), KILN_STATUS_OK);
        if (v->reshape && !strcmp(name, v->reshape))
            kiln_st_writer_add_copy(w, key, KILN_DTYPE_F32, 1, (int64_t[]){3}, three);
        else
            kiln_st_writer_add_copy(w, key, dt, nd, shape, data);
    }
    for (int i = 0; i < v->n_extra; i++) {
        snprintf(key, sizeof key, "%sextra.%d.weight", v->prefix ? v->prefix : "", i);
        kiln_st_writer_add_copy(w, key, KILN_DTYPE_F32, 1, (int64_t[]){2}, three);
    }
    cr_assert_eq(kiln_st_writer_save(w, path), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_st_writer_free(w);
    kiln_st_close(src);
}

static char *tmp_path(char *buf, size_t n, const char *tag)
{
    snprintf(buf, n, "/tmp/kiln_test_pretrained_%d_%s.safetensors", (int)getpid(), tag);
    return buf;
}

/* Every parameter, buffer and counter of m, to check a failed load changed nothing. */
typedef struct snapshot {
    float *p, *b;
    size_t np, nb, nc;
    int64_t *c;
} snapshot;

static snapshot snap(kiln_model *m)
{
    snapshot s = {0};
    float *p = kiln_store_flat(kiln_model_store(m), KILN_STORE_PARAMS, &s.np);
    float *b = kiln_store_flat(kiln_model_store(m), KILN_STORE_BUFFERS, &s.nb);
    s.p = malloc(s.np * sizeof(float));
    s.b = malloc(s.nb * sizeof(float) + 1);
    s.nc = kiln_model_counters(m, NULL, 0);
    s.c = malloc(s.nc * sizeof(int64_t));
    cr_assert(s.p && s.b && s.c);
    memcpy(s.p, p, s.np * sizeof(float));
    memcpy(s.b, b, s.nb * sizeof(float));
    kiln_model_counters(m, s.c, s.nc);
    return s;
}

static bool unchanged(kiln_model *m, snapshot *s)
{
    snapshot now = snap(m);
    bool same = now.np == s->np && now.nb == s->nb && !memcmp(now.p, s->p, s->np * sizeof(float)) &&
                !memcmp(now.b, s->b, s->nb * sizeof(float)) && !memcmp(now.c, s->c, s->nc * sizeof(int64_t));
    free(now.p), free(now.b), free(now.c);
    return same;
}

static void snap_free(snapshot *s)
{
    free(s->p), free(s->b), free(s->c);
}

/* The report as kiln_load_report_print writes it (malloc'd). */
static char *printed(const kiln_load_report *r, int max_listed)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    cr_assert(out);
    kiln_load_report_print(r, out, max_listed);
    fclose(out);
    return buf;
}

static void expect_text(const char *text, const char *needle)
{
    cr_expect(strstr(text, needle), "the report\n%s\ndoes not say \"%s\"", text, needle);
}

Test(pretrained, report_names_missing_unexpected_and_misshaped_keys)
{
    kiln_ctx *ctx = ku_ctx();
    char path[256];
    tmp_path(path, sizeof path, "report");
    write_variant(path, &(variant){.drop = "layer1.0.bn1.running_var", .reshape = "layer2.0.conv1.weight", .n_extra = 1});
    kiln_st_file *w = NULL;
    cr_assert_eq(kiln_st_open(FIX("pretrained_basic.safetensors"), &w), KILN_STATUS_OK, "%s", kiln_last_error());

    /* strict: an error naming all three, the model unchanged */
    kiln_model *m = vision_model(ctx, 3);
    snapshot before = snap(m);
    kiln_load_report r;
    cr_expect_lt(kiln_vision_model_load_pretrained_report(m, path, true, &r), 0);
    ku_expect_error("missing keys (1): layer1.0.bn1.running_var (0.4.0.bn1.running_var)", "missing");
    ku_expect_error("unexpected keys (1): extra.0.weight", "unexpected");
    ku_expect_error("mis-shaped keys (1): layer2.0.conv1.weight has shape (3) in the file, (16, 8, 3, 3) in the model "
                    "(0.5.0.conv1.weight)",
                    "mis-shaped");
    cr_expect(unchanged(m, &before), "a strict failure leaves the model unchanged");
    cr_expect_eq(r.n_loaded, 0u);
    cr_assert_eq(r.n_missing, 1u);
    cr_expect_str_eq(r.missing[0].key, "layer1.0.bn1.running_var");
    cr_expect_str_eq(r.missing[0].model_key, "0.4.0.bn1.running_var");
    cr_assert_eq(r.n_unexpected, 1u);
    cr_expect_str_eq(r.unexpected[0].key, "extra.0.weight");
    cr_expect_null(r.unexpected[0].model_key);
    cr_assert_eq(r.n_mismatched, 1u);
    cr_expect_str_eq(r.mismatched[0].key, "layer2.0.conv1.weight");
    cr_expect_eq(r.mismatched[0].file_ndim, 1);
    cr_expect_eq(r.mismatched[0].file_shape[0], 3);
    cr_expect_eq(r.mismatched[0].model_ndim, 4);
    cr_expect_eq(r.mismatched[0].model_shape[0], 16);
    cr_expect(r.strict);
    kiln_load_report_free(&r);

    /* not strict: everything else loads, the three are reported */
    cr_assert_eq(kiln_vision_model_load_pretrained_report(m, path, false, &r), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(r.n_loaded, r.n_model - 2, "all but the missing and the mis-shaped key");
    cr_expect(kiln_load_report_has_problems(&r));
    cr_expect_eq(r.n_missing + r.n_unexpected + r.n_mismatched, 3u);
    const float *l4;
    cr_assert_eq(kiln_st_want(w, "layer4.0.conv2.weight", KILN_DTYPE_F32, 4, (int64_t[]){64, 64, 3, 3}, (const void **)&l4),
                 KILN_STATUS_OK);
    cr_expect_eq(memcmp(entry(m, "0.7.0.conv2.weight"), l4, 64 * 64 * 9 * sizeof(float)), 0, "layer4 loaded");
    kiln_tensor *mis = kiln_store_find(kiln_model_store(m), "0.5.0.conv1.weight");
    cr_expect_eq(memcmp(mis->data, before.p + (((float *)mis->data) - kiln_store_flat(kiln_model_store(m), KILN_STORE_PARAMS, NULL)),
                        (size_t)kiln_numel(mis) * sizeof(float)),
                 0, "the mis-shaped entry keeps its value");
    char *text = printed(&r, 0);
    expect_text(text, "loaded ");
    expect_text(text, "  missing keys (1): layer1.0.bn1.running_var (0.4.0.bn1.running_var)\n");
    expect_text(text, "  unexpected keys (1): extra.0.weight\n");
    expect_text(text, "  mis-shaped keys (1): layer2.0.conv1.weight has shape (3) in the file");
    expect_text(text, "(2 left alone on purpose)");
    free(text);
    kiln_load_report_free(&r);
    snap_free(&before);
    kiln_model_free(m);

    /* the printed lists are capped */
    write_variant(path, &(variant){.n_extra = 7});
    m = vision_model(ctx, 3);
    cr_assert_eq(kiln_vision_model_load_pretrained_report(m, path, false, &r), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(r.n_unexpected, 7u, "the report keeps every name");
    text = printed(&r, 3);
    expect_text(text, "unexpected keys (7): extra.0.weight, extra.1.weight, extra.2.weight, and 4 more\n");
    free(text);
    kiln_load_report_free(&r);
    kiln_model_free(m);
    kiln_st_close(w);
    unlink(path);
    ku_ctx_free(ctx);
}

Test(pretrained, wrappers_are_stripped)
{
    kiln_ctx *ctx = ku_ctx();
    char path[256];
    tmp_path(path, sizeof path, "wrap");
    const char *wrappers[] = {"module.", "model.", "module.model."};
    for (int k = 0; k < 3; k++) {
        write_variant(path, &(variant){.prefix = wrappers[k]});
        kiln_model *m = vision_model(ctx, 3);
        kiln_load_report r;
        cr_assert_eq(kiln_vision_model_load_pretrained_report(m, path, true, &r), KILN_STATUS_OK, "%s",
                     kiln_last_error());
        cr_expect_str_eq(r.stripped, wrappers[k]);
        cr_expect_eq(r.n_loaded, r.n_model);
        cr_expect_eq(r.n_skipped, 2u, "fc.* is still dropped");
        kiln_load_report_free(&r);
        kiln_model_free(m);
    }
    /* plain kiln_model_load strips them too */
    kiln_resnet_params p = basic_params(3);
    kiln_model *m = alloc_or_die(kiln_resnet_new(&p), ctx);
    cr_expect_eq(kiln_model_load(m, path, true), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_model_free(m);
    unlink(path);
    ku_ctx_free(ctx);
}

Test(pretrained, files_that_do_not_fit_are_refused_clearly)
{
    kiln_ctx *ctx = ku_ctx();
    char path[256];
    tmp_path(path, sizeof path, "nofit");
    kiln_model *m = vision_model(ctx, 3);
    snapshot before = snap(m);
    kiln_load_report r;

    /* nothing maps: an error even when not strict */
    kiln_model *mlp = alloc_or_die(kiln_mlp_new(4, 1, (int64_t[]){3}, 2, 0.0f, false), ctx);
    cr_assert_eq(kiln_model_save(mlp, path, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_model_free(mlp);
    cr_expect_lt(kiln_vision_model_load_pretrained_report(m, path, false, &r), 0);
    ku_expect_error("maps onto a ResNet body: is it a ResNet state dict?", "nothing maps");
    ku_expect_error(path, "names the file");
    cr_expect_eq(r.n_unexpected, 4u);
    kiln_load_report_free(&r);

    /* timm's deep stem: a report, a hint, no crash */
    write_variant(path, &(variant){.rename_from = "conv1.weight", .rename_to = "conv1.0.weight"});
    cr_expect_lt(kiln_vision_model_load_pretrained_report(m, path, true, &r), 0);
    ku_expect_error("unexpected keys (1): conv1.0.weight", "deep stem, strict");
    ku_expect_error("deep", "the hint");
    kiln_load_report_free(&r);
    cr_expect_eq(kiln_vision_model_load_pretrained_report(m, path, false, &r), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(r.n_missing, 1u);
    cr_expect(r.hint && strstr(r.hint, "deep"), "hint: %s", r.hint ? r.hint : "(none)");
    char *text = printed(&r, 0);
    expect_text(text, "  hint: its stem is a deep one");
    free(text);
    kiln_load_report_free(&r);

    /* timm's average-pool shortcuts (resnet*d) and SE blocks: hints too */
    const char *from[2] = {"layer2.0.downsample.1.weight", "layer1.0.bn2.bias"};
    const char *to[2] = {"layer2.0.downsample.2.weight", "layer1.0.se.fc1.bias"};
    const char *says[2] = {"average-pool", "SE"};
    for (int k = 0; k < 2; k++) {
        write_variant(path, &(variant){.rename_from = from[k], .rename_to = to[k]});
        cr_expect_eq(kiln_vision_model_load_pretrained_report(m, path, false, &r), KILN_STATUS_OK, "%s",
                     kiln_last_error());
        cr_expect(r.n_missing == 1 && r.n_unexpected == 1 && !strcmp(r.unexpected[0].key, to[k]), "%s", to[k]);
        cr_expect(r.hint && strstr(r.hint, says[k]), "hint: %s", r.hint ? r.hint : "(none)");
        kiln_load_report_free(&r);
    }
    kiln_model_free(m);

    /* a ResNet of another width: every key mis-shaped, so nothing loads, strict or not */
    m = vision_model(ctx, 3);
    kiln_resnet_params wide = basic_params(3);
    wide.width = 16;
    kiln_model *big = alloc_or_die(kiln_resnet_new(&wide), ctx);
    cr_assert_eq(kiln_model_save(big, path, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_model_free(big);
    snap_free(&before);
    before = snap(m);
    cr_expect_lt(kiln_vision_model_load_pretrained_report(m, path, false, &r), 0);
    ku_expect_error("nothing of", "width 16 into width 8");
    ku_expect_error("conv1.weight has shape (16, 3, 7, 7) in the file, (8, 3, 7, 7) in the model", "names the shapes");
    cr_expect(unchanged(m, &before));
    kiln_load_report_free(&r);

    /* a full ResNet of other classes, plain kiln_model_load: the report's words */
    kiln_resnet_params seven = basic_params(3);
    seven.n_classes = 7;
    kiln_model *rn = alloc_or_die(kiln_resnet_new(&seven), ctx);
    snap_free(&before);
    before = snap(rn);
    cr_expect_lt(kiln_model_load(rn, FIX("pretrained_basic.safetensors"), true), 0);
    ku_expect_error("mis-shaped keys (2): fc.bias has shape (5) in the file, (7) in the model, fc.weight has shape "
                    "(5, 64) in the file, (7, 64) in the model",
                    "fc of 5 classes into 7");
    cr_expect(unchanged(rn, &before));
    cr_expect_eq(kiln_model_load_report(rn, FIX("pretrained_basic.safetensors"), false, &r), KILN_STATUS_OK, "%s",
                 kiln_last_error());
    cr_expect_eq(r.n_loaded, r.n_model - 2);
    kiln_load_report_free(&r);
    snap_free(&before);
    kiln_model_free(rn);
    kiln_model_free(m);
    unlink(path);
    ku_ctx_free(ctx);
}

/* ---- kiln's own exported weights, head replaced --------------------------------------------------------- */

Test(pretrained, load_body_keeps_the_new_head)
{
    kiln_ctx *ctx = ku_ctx();
    char path[256];
    tmp_path(path, sizeof path, "body");
    for (int arch = 0; arch < 2; arch++) {
        kiln_model *src, *dst;
        if (arch == 0) {
            kiln_resnet_params rp = basic_params(1);
            kiln_vision_model_params vp = kiln_vision_model_default_params();
            vp.n_classes = 10;
            vp.lin_ftrs = 16;
            src = alloc_or_die(kiln_vision_model_new(&rp, &vp), ctx);
            vp.n_classes = 4;
            dst = alloc_or_die(kiln_vision_model_new(&rp, &vp), ctx);
        } else {
            src = alloc_or_die(kiln_simple_cnn_new(1, 10), ctx);
            dst = alloc_or_die(kiln_simple_cnn_new(1, 4), ctx);
        }
        /* a train-mode forward moves the running statistics and counters away from the init */
        int64_t hw = arch == 0 ? 32 : 28;
        cr_assert(kiln_model_forward(src, ctx, kiln_randn(ctx, 4, (int64_t[]){4, 1, hw, hw}, 0.0f, 1.0f)), "%s",
                  kiln_last_error());
        cr_assert_eq(kiln_model_save(src, path, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
        kiln_store *s = kiln_model_store(src), *d = kiln_model_store(dst);
        snapshot before = snap(dst);
        kiln_load_report r;
        cr_assert_eq(kiln_model_load_body(dst, path, -1, true, &r), KILN_STATUS_OK, "%s", kiln_last_error());
        cr_expect_gt(r.n_skipped, 0u, "the old head's keys are skipped");
        cr_expect_eq(r.n_loaded, r.n_model);
        cr_expect_not(kiln_load_report_has_problems(&r));
        int head = kiln_model_n_groups(dst) - 1;
        size_t n_head = 0;
        float *flat_before = before.p;
        float *flat_now = kiln_store_flat(d, KILN_STORE_PARAMS, NULL);
        for (size_t i = 0; i < kiln_store_count(d); i++) {
            kiln_tensor *t = kiln_store_at(d, i);
            size_t bytes = (size_t)kiln_numel(t) * sizeof(float);
            if (kiln_model_param_group(dst, i) == head) {
                n_head++;
                if (kiln_store_is_param(d, i))
                    cr_expect_eq(memcmp(t->data, flat_before + ((float *)t->data - flat_now), bytes), 0,
                                 "%s (head) keeps its init", t->name);
            } else {
                cr_expect_eq(memcmp(t->data, kiln_store_find(s, t->name)->data, bytes), 0, "%s loaded", t->name);
            }
        }
        cr_expect_gt(n_head, 0u);
        cr_expect_eq(r.n_model, kiln_store_count(d) - n_head);
        kiln_load_report_free(&r);

        /* strict: a body key missing from the file is an error, the model unchanged */
        snap_free(&before);
        before = snap(dst);
        kiln_st_file *sf = NULL;
        cr_assert_eq(kiln_st_open(path, &sf), KILN_STATUS_OK);
        kiln_st_writer *w = kiln_st_writer_new();
        const char *dropped = kiln_store_at(s, 1)->name;
        for (size_t j = 0; j < kiln_st_count(sf); j++) {
            const char *name = kiln_st_name(sf, j);
            if (!strcmp(name, dropped)) continue;
            kiln_dtype dt;
            int nd;
            int64_t shape[KILN_MAX_DIMS];
            const void *data;
            size_t nbytes;
            kiln_st_info(sf, name, &dt, &nd, shape, &data, &nbytes);
            kiln_st_writer_add_copy(w, name, dt, nd, shape, data);
        }
        char path2[256];
        tmp_path(path2, sizeof path2, "body2");
        cr_assert_eq(kiln_st_writer_save(w, path2), KILN_STATUS_OK, "%s", kiln_last_error());
        kiln_st_writer_free(w);
        kiln_st_close(sf);
        cr_expect_lt(kiln_model_load_body(dst, path2, -1, true, &r), 0);
        ku_expect_error(dropped, "names the missing key");
        ku_expect_error("model_load_body", "names the call");
        cr_expect(unchanged(dst, &before));
        kiln_load_report_free(&r);
        cr_expect_eq(kiln_model_load_body(dst, path2, -1, false, &r), KILN_STATUS_OK, "%s", kiln_last_error());
        cr_expect_eq(r.n_missing, 1u);
        kiln_load_report_free(&r);
        cr_expect_lt(kiln_model_load_body(dst, path2, 7, false, NULL), 0);
        ku_expect_error("head group 7", "no such group");
        unlink(path2);
        snap_free(&before);
        kiln_model_free(src);
        kiln_model_free(dst);
    }
    unlink(path);
    ku_ctx_free(ctx);
}
