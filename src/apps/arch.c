/* The architecture registry (kiln/apps.h): one list of the models kiln builds by name, used
 * by the vision learner, model.json, and the CLI's --help and error messages. */
#include "kiln/apps.h"

#include "core/internal.h"
#include "kiln/models.h"

#include <stdio.h>
#include <string.h>

static kiln_model *make_simple_cnn(int n_in, int n_classes) { return kiln_simple_cnn_new(n_in, n_classes); }
static kiln_model *make_simple_resnet(int n_in, int n_classes) { return kiln_simple_resnet_new(n_in, n_classes); }

/* A ResNet body + the fastai head, trained from scratch (every layer trains). */
static kiln_model *make_resnet(int depth, int n_in, int n_classes)
{
    kiln_resnet_params body = kiln_resnet_default_params(depth);
    body.n_in = n_in;
    kiln_vision_model_params hp = kiln_vision_model_default_params();
    hp.n_classes = n_classes;
    hp.frozen = false;
    return kiln_vision_model_new(&body, &hp);
}
static kiln_model *make_resnet18(int n_in, int n_classes) { return make_resnet(18, n_in, n_classes); }
static kiln_model *make_resnet34(int n_in, int n_classes) { return make_resnet(34, n_in, n_classes); }
static kiln_model *make_resnet50(int n_in, int n_classes) { return make_resnet(50, n_in, n_classes); }

/* nhwc: channels-last measured faster for simple-cnn (its small convs, 1.5x an epoch,
 * docs/benchmarks.md) and costs nothing for simple-resnet (conv, batch norm and adds only,
 * nothing reorders); the ResNets measured slower in it. max_size 32: five stride-2 stages
 * down to 1x1. */
static const kiln_arch g_archs[] = {
    {"simple-cnn", "fastai lesson 7", 32, true, make_simple_cnn},
    {"simple-resnet", "fastai 2022 part 2", 32, true, make_simple_resnet},
    {"resnet18", "ResNet-18 + fastai head", 0, false, make_resnet18},
    {"resnet34", "ResNet-34 + fastai head", 0, false, make_resnet34},
    {"resnet50", "ResNet-50 + fastai head", 0, false, make_resnet50},
};
#define N_ARCHS ((int)(sizeof g_archs / sizeof g_archs[0]))

int kiln_arch_count(void) { return N_ARCHS; }

const kiln_arch *kiln_arch_at(int i) { return i >= 0 && i < N_ARCHS ? &g_archs[i] : NULL; }

const char *kiln_arch_names(void)
{
    static char names[256];
    if (!names[0]) {
        size_t n = 0;
        for (int i = 0; i < N_ARCHS; i++)
            n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", i == 0 ? "" : i == N_ARCHS - 1 ? " or " : ", ",
                                  g_archs[i].name);
    }
    return names;
}

const kiln_arch *kiln_arch_find(const char *name)
{
    for (int i = 0; name && i < N_ARCHS; i++)
        if (!strcmp(g_archs[i].name, name)) return &g_archs[i];
    return kiln__errp(KILN_STATUS_INVALID, "arch '%s' is not %s", name ? name : "(null)", kiln_arch_names());
}

kiln_status kiln_layout_parse(const char *name, kiln_layout *out)
{
    static const char *const names[] = {"auto", "nchw", "nhwc"};
    for (int i = 0; i < 3; i++)
        if (name && !strcmp(name, names[i])) {
            *out = (kiln_layout)i;
            return KILN_STATUS_OK;
        }
    return kiln__err(KILN_STATUS_INVALID, "layout '%s' is not auto, nchw or nhwc", name ? name : "(null)");
}

kiln_model *kiln_arch_model_new(const kiln_arch *a, kiln_ctx *ctx, int n_in, int size, int n_classes,
                                kiln_layout layout)
{
    if (!a || !ctx) return kiln__errp(KILN_STATUS_INVALID, "arch_model_new: NULL argument");
    if (a->max_size && size > a->max_size)
        return kiln__errp(KILN_STATUS_INVALID, "%s takes images of at most %dx%d (these are %dx%d): use size 28 or a resnet",
                          a->name, a->max_size, a->max_size, size, size);
    if (n_in < 1 || n_classes < 1 || size < 1)
        return kiln__errp(KILN_STATUS_INVALID, "%s: n_in %d, size %d, n_classes %d must be >= 1", a->name, n_in, size,
                          n_classes);
    kiln_model *m = a->make(n_in, n_classes);
    if (!m || kiln_model_alloc(m, ctx) != KILN_STATUS_OK) {
        kiln__err_prefix(kiln_last_status(), a->name);
        kiln_model_free(m);
        return NULL;
    }
    kiln_model_set_channels_last(m, layout == KILN_LAYOUT_NHWC || (layout == KILN_LAYOUT_AUTO && a->nhwc));
    return m;
}
