/* Pretrained ResNet weights (torchvision's names, which timm's ResNets share) into kiln's
 * ResNets: into the body of a fastai-style vision model, whose children up to layer4 have
 * positional names ("conv1.weight" -> "0.0.weight", "layer1.0.conv1.weight" ->
 * "0.4.0.conv1.weight") and where fc.* has no place, or into a whole kiln_resnet_new model
 * (the same names). Both go through kiln_model_load_mapped: checked before copying, reported,
 * conv1 adapted for n_in != 3, and a hint when the file is another ResNet family. */
#include "nn/nn_internal.h"

#include "kiln/models.h"

#include <stdio.h>
#include <string.h>

/* torchvision prefix <-> body prefix */
static const char *const TV[6] = {"conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4."};
static const char *const BODY[6] = {"0.0.", "0.1.", "0.4.", "0.5.", "0.6.", "0.7."};

/* Replaces prefix from[i] of key by to[i]; false when no prefix matches or out is too small. */
static bool map_key(const char *key, const char *const *from, const char *const *to, char *out, size_t cap)
{
    if (!key || !out) return false;
    for (int i = 0; i < 6; i++) {
        size_t n = strlen(from[i]);
        if (strncmp(key, from[i], n) != 0 || !key[n]) continue;
        int w = snprintf(out, cap, "%s%s", to[i], key + n);
        return w > 0 && (size_t)w < cap;
    }
    return false;
}

bool kiln_resnet_body_key(const char *torchvision_key, char *out, size_t cap)
{
    return map_key(torchvision_key, TV, BODY, out, cap);
}

static kiln_key_map tv_to_body(const char *key, char *out, size_t cap, void *user)
{
    if (strncmp(key, "fc.", 3) == 0) return KILN_KEY_DROPPED; /* the classifier: the head is new */
    return map_key(key, TV, BODY, out, cap) ? KILN_KEY_MAPPED : KILN_KEY_UNMAPPED;
}

static bool body_to_tv(const char *model_key, char *out, size_t cap, void *user)
{
    return map_key(model_key, BODY, TV, out, cap);
}

static bool not_body(const kiln_model *model, size_t i, void *user)
{
    return strncmp(kiln_store_at(model->store, i)->name, "0.", 2) != 0;
}

static bool has_prefix(const kiln_st_file *f, const char *prefix)
{
    size_t n = strlen(prefix);
    for (size_t j = 0; j < kiln_st_count(f); j++)
        if (strncmp(kiln_st_name(f, j), prefix, n) == 0) return true;
    return false;
}

static bool has_infix(const kiln_st_file *f, const char *part)
{
    for (size_t j = 0; j < kiln_st_count(f); j++)
        if (strstr(kiln_st_name(f, j), part)) return true;
    return false;
}

/* Why a file's keys may not fit a torchvision-style ResNet. */
static const char *resnet_hint(const kiln_st_file *f, const kiln_load_report *r, size_t n_loadable, void *user)
{
    const bool body = user != NULL;
    if (has_infix(f, "conv1.0.weight") || has_infix(f, "conv1.1.weight"))
        return "its stem is a deep one (conv1.0, conv1.1, ...: timm's resnet*c / resnet*d / resnet*s); kiln's ResNets "
               "are torchvision's v1.5 with one 7x7 conv1: use a plain resnet18/34/50 file";
    if (has_infix(f, "downsample.2.weight"))
        return "its shortcuts average-pool before the 1x1 conv (downsample.1 / downsample.2: timm's resnet*d); kiln's "
               "ResNets are torchvision's v1.5 (downsample.0 conv, downsample.1 BatchNorm)";
    if (has_infix(f, ".se.") || has_infix(f, ".attn."))
        return "its blocks have attention modules (se / attn: timm's SE / ECA ResNets), which kiln's ResNets do not have";
    if (body && has_prefix(f, "0.0.") && has_prefix(f, "1."))
        return "it has kiln's vision-model names (0.* body, 1.* head): load a model kiln exported with "
               "kiln_model_load_body (--pretrained DIR)";
    if (!n_loadable && r->n_mismatched)
        return "its layers have other shapes: a ResNet of another width, depth or block (resnet50 weights into a "
               "resnet34?)";
    if (!n_loadable) return "is it a ResNet state dict?";
    return NULL;
}

kiln_status kiln_vision_model_load_pretrained_report(kiln_model *model, const char *path, bool strict,
                                                     kiln_load_report *report)
{
    kiln_load_params p = kiln_load_default_params();
    p.map = tv_to_body;
    p.name = body_to_tv;
    p.skip = not_body;
    p.hint = resnet_hint;
    p.user = (void *)"body";
    p.strict = strict;
    p.adapt_first_conv = true;
    p.caller = "vision_model_load_pretrained";
    p.target = "a ResNet body";
    return kiln_model_load_mapped_file(model, path, &p, report);
}

kiln_status kiln_vision_model_load_pretrained(kiln_model *model, const char *path, bool strict)
{
    return kiln_vision_model_load_pretrained_report(model, path, strict, NULL);
}

kiln_status kiln_resnet_load_pretrained(kiln_model *model, const char *path, bool strict, kiln_load_report *report)
{
    kiln_load_params p = kiln_load_default_params();
    p.hint = resnet_hint;
    p.strict = strict;
    p.adapt_first_conv = true;
    p.caller = "resnet_load_pretrained";
    p.target = "a ResNet";
    return kiln_model_load_mapped_file(model, path, &p, report);
}
