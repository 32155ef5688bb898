/* Transfer learning for the vision learner (kiln/apps.h, kiln_vision_learner_params.pretrained):
 * a model a kiln export wrote (DIR: its body reused, its head left fresh for the new classes)
 * or a torchvision / timm ResNet file (.pth or .safetensors: body loaded, fc dropped, conv1
 * adapted to the data's channels), then fastai's freeze() unless asked to train everything. */
#include "app_internal.h"

#include "kiln/models.h"

#include <string.h>
#include <sys/stat.h>

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* DIR/model.json into *mi (free it after, also on failure). */
static kiln_status read_info(const char *dir, kiln_vision_model_info *mi)
{
    char path[4096];
    kiln_status st = kiln__path(path, sizeof path, dir, "model.json");
    if (!st) st = kiln_vision_model_info_read(path, mi);
    return st ? kiln__err_prefix(st, "pretrained") : KILN_STATUS_OK;
}

kiln_status kiln_vision_pretrained_data_params(const char *pretrained, kiln_vision_params *vp)
{
    if (!pretrained || !vp) return kiln__err(KILN_STATUS_INVALID, "vision_pretrained_data_params: NULL argument");
    if (!is_dir(pretrained)) return KILN_STATUS_OK;
    kiln_vision_model_info mi;
    kiln_status st = read_info(pretrained, &mi);
    if (!st) {
        vp->n_channels = mi.n_in;
        vp->norm = mi.norm == KILN_VISION_NORM_NONE ? KILN_VISION_NORM_NONE : KILN_VISION_NORM_CUSTOM;
        vp->custom_stats = mi.stats;
    }
    kiln_vision_model_info_free(&mi);
    return st;
}

/* DIR: a kiln export of arch with n_in channels; all but the last layer group loads. */
static kiln_status load_dir(kiln_model *m, const char *dir, const char *arch, int n_in, bool strict,
                            kiln_load_report *report)
{
    kiln_vision_model_info mi;
    kiln_status st = read_info(dir, &mi);
    if (!st && strcmp(mi.arch, arch))
        st = kiln__err(KILN_STATUS_INVALID, "pretrained %s is a %s; this learner is a %s (use --arch %s)", dir, mi.arch,
                       arch, mi.arch);
    else if (!st && mi.n_in != n_in)
        st = kiln__err(KILN_STATUS_INVALID, "pretrained %s takes %d-channel images; the data has %d (open it with "
                       "kiln_vision_pretrained_data_params)", dir, mi.n_in, n_in);
    kiln_vision_model_info_free(&mi);
    char path[4096];
    if (!st) st = kiln__path(path, sizeof path, dir, "model.safetensors");
    if (!st) st = kiln_model_load_body(m, path, kiln_model_n_groups(m) - 1, strict, report);
    return st;
}

kiln_status kiln__vision_load_pretrained(kiln_model *m, const char *arch, int n_in, const kiln_vision_learner_params *p)
{
    const char *src = p->pretrained;
    kiln_status st;
    if (is_dir(src)) st = load_dir(m, src, arch, n_in, p->strict, p->report);
    else if (strncmp(arch, "resnet", 6))
        st = kiln__err(KILN_STATUS_INVALID, "pretrained %s: a weights file loads into resnet18/34/50 (torchvision / timm "
                       "names); %s takes a folder a kiln export wrote", src, arch);
    else st = kiln_vision_model_load_pretrained_report(m, src, p->strict, p->report);
    return st;
}

kiln_status kiln__vision_pretrained_freeze(kiln_learner *l, const kiln_vision_learner_params *p)
{
    kiln_status st = kiln_learner_set_train_bn(l, p->train_bn);
    if (!st && p->pretrained && !p->unfreeze) st = kiln_learner_freeze(l);
    return st;
}
