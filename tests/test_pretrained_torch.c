/* Full-size parity with PyTorch, both directions, with PyTorch run at test time by
 * tests/fixtures/gen_pretrained.py (so the 45-100 MB files are never committed):
 *  - torchvision's resnet18 / 34 / 50 with random weights (seeded) and random BatchNorm
 *    statistics, saved by torch.save; kiln loads the file into kiln_resnet18/34/50_new and
 *    gives PyTorch's eval logits for 2 images of 64x64;
 *  - kiln's saved weights of a kiln_resnet18_new and of a kiln_vision_model_new (random
 *    weights and BatchNorm statistics) load into torchvision.models.resnet18 and fastai's
 *    nn.Sequential(body, create_head(512, 10)) with strict=True and give kiln's logits there.
 * Each test skips with a message when /usr/bin/python3 cannot import torch and torchvision.
 * Tolerance: |kiln - torch| <= 1e-4 + 1e-4 * |torch|: f32 through 18 to 50 layers with other
 * conv kernels and summation orders, logits of order 1 (1000 classes). */
#include "util/ku.h"

#include "kiln/models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ATOL 1e-4
#define RTOL 1e-4
#define PY "/usr/bin/python3"
#define SCRIPT KILN_FIXTURE_DIR "/gen_pretrained.py"

static void need_torch(void)
{
    if (system(PY " -c 'import torch, torchvision' >/dev/null 2>&1") != 0)
        cr_skip_test("SKIP: " PY " cannot import torch and torchvision: full-size PyTorch parity not checked "
                     "(apt-get install python3-torch python3-torchvision)");
}

/* A fresh temp folder (removed by rm_dir). */
static char *tmp_dir(char *buf, size_t n)
{
    snprintf(buf, n, "/tmp/kiln_pretrained_torch_XXXXXX");
    cr_assert(mkdtemp(buf), "mkdtemp failed");
    return buf;
}

static void rm_dir(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

static void run(const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, PY " %s %s", SCRIPT, args);
    cr_assert_eq(system(cmd), 0, "failed: %s", cmd);
}

static kiln_tensor *load_tensor(kiln_ctx *ctx, const char *path, const char *name)
{
    kiln_st_file *f = NULL;
    cr_assert_eq(kiln_st_open(path, &f), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tensor *t = kiln_st_load(ctx, f, name);
    cr_assert(t, "%s", kiln_last_error());
    kiln_st_close(f);
    return t;
}

static kiln_tensor *eval_logits(kiln_ctx *ctx, kiln_model *m, kiln_tensor *x)
{
    kiln_model_train(m, false);
    kiln_tensor *y = kiln_model_forward(m, ctx, x);
    cr_assert(y, "%s", kiln_last_error());
    return y;
}

/* torchvision's file into kiln_resnetDEPTH_new: PyTorch's logits. */
static void torch_to_kiln(int depth)
{
    need_torch();
    kiln_ctx *ctx = ku_ctx();
    char dir[64], args[256], path[256], io[256];
    tmp_dir(dir, sizeof dir);
    snprintf(args, sizeof args, "full %s %d", dir, depth);
    run(args);
    snprintf(path, sizeof path, "%s/resnet%d.pth", dir, depth);
    snprintf(io, sizeof io, "%s/resnet%d_io.safetensors", dir, depth);
    kiln_model *m = depth == 18 ? kiln_resnet18_new(3, 1000) : depth == 34 ? kiln_resnet34_new(3, 1000)
                                                                            : kiln_resnet50_new(3, 1000);
    cr_assert(m, "%s", kiln_last_error());
    cr_assert_eq(kiln_model_alloc(m, ctx), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_load_report r;
    cr_assert_eq(kiln_resnet_load_pretrained(m, path, true, &r), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(r.n_loaded, kiln_store_count(kiln_model_store(m)));
    cr_expect_not(kiln_load_report_has_problems(&r));
    kiln_load_report_free(&r);
    kiln_tensor *y = eval_logits(ctx, m, load_tensor(ctx, io, "x"));
    ku_expect_close(y, load_tensor(ctx, io, "y"), ATOL, RTOL, "resnet logits");
    kiln_model_free(m);
    rm_dir(dir);
    ku_ctx_free(ctx);
}

Test(pretrained_torch, resnet18_torchvision_file_gives_torchs_logits) { torch_to_kiln(18); }
Test(pretrained_torch, resnet34_torchvision_file_gives_torchs_logits) { torch_to_kiln(34); }
Test(pretrained_torch, resnet50_torchvision_file_gives_torchs_logits) { torch_to_kiln(50); }

/* Random values in every BatchNorm's affine parameters and running statistics (as the
 * script's randomise_bn), and its counter. */
static void randomise_bn(kiln_ctx *ctx, kiln_model *m)
{
    for (size_t i = 0; i < kiln_model_n_modules(m); i++) {
        kiln_module *mod = kiln_model_module_at(m, i);
        kiln_module_kind k = kiln_module_kind_of(mod);
        if (k != KILN_MODULE_BATCH_NORM1D && k != KILN_MODULE_BATCH_NORM2D) continue;
        kiln_init_uniform(ctx, kiln_module_param(mod, "weight"), 0.5f, 1.5f);
        kiln_init_uniform(ctx, kiln_module_param(mod, "bias"), -0.5f, 0.5f);
        kiln_init_uniform(ctx, kiln_module_param(mod, "running_mean"), -0.5f, 0.5f);
        kiln_init_uniform(ctx, kiln_module_param(mod, "running_var"), 0.5f, 2.0f);
    }
    int64_t counters[1024];
    size_t n = kiln_model_counters(m, NULL, 0);
    cr_assert_leq(n, 1024u);
    for (size_t i = 0; i < n; i++) counters[i] = 5;
    cr_assert_eq(kiln_model_set_counters(m, counters, n), KILN_STATUS_OK);
}

/* kiln's saved weights into PyTorch's arch (strict=True there): kiln's logits. */
static void kiln_to_torch(kiln_model *m, const char *arch)
{
    need_torch();
    kiln_ctx *ctx = ku_ctx();
    cr_assert(m, "%s", kiln_last_error());
    cr_assert_eq(kiln_model_alloc(m, ctx), KILN_STATUS_OK, "%s", kiln_last_error());
    randomise_bn(ctx, m);
    char dir[64], weights[256], io[256], out[256], args[1024];
    tmp_dir(dir, sizeof dir);
    snprintf(weights, sizeof weights, "%s/weights.safetensors", dir);
    snprintf(io, sizeof io, "%s/io.safetensors", dir);
    snprintf(out, sizeof out, "%s/out.safetensors", dir);
    cr_assert_eq(kiln_model_save(m, weights, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tensor *x = kiln_randn(ctx, 4, (int64_t[]){2, 3, 64, 64}, 0.0f, 1.0f);
    cr_assert_eq(kiln_st_save(io, &(kiln_st_entry){"x", x}, 1, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tensor *y = eval_logits(ctx, m, x);
    snprintf(args, sizeof args, "eval %s %s %s %s", arch, weights, io, out);
    run(args);
    ku_expect_close(y, load_tensor(ctx, out, "y"), ATOL, RTOL, arch);
    kiln_model_free(m);
    rm_dir(dir);
    ku_ctx_free(ctx);
}

Test(pretrained_torch, kiln_resnet18_weights_load_strictly_in_torchvision)
{
    kiln_to_torch(kiln_resnet18_new(3, 1000), "resnet18");
}

Test(pretrained_torch, kiln_vision_model_weights_load_strictly_in_fastais_model)
{
    kiln_resnet_params rp = kiln_resnet_default_params(18);
    kiln_vision_model_params vp = kiln_vision_model_default_params();
    vp.n_classes = 10;
    kiln_to_torch(kiln_vision_model_new(&rp, &vp), "vision_resnet18");
}
