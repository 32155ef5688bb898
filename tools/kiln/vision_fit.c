/* kiln vision lr-find and kiln vision fit: the data and the learner from the flags
 * (kiln_vision_dls_open, kiln_vision_learner_new, from --pretrained weights when given), then
 * the shared training driver (train.c: kiln_learner_lr_find / kiln_learner_train). */
#include "vision_cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* "1,234,567" */
static const char *commas(int64_t v, char *buf, size_t n)
{
    char raw[32];
    snprintf(raw, sizeof raw, "%lld", (long long)v);
    size_t len = strlen(raw), j = 0;
    for (size_t i = 0; i < len && j + 2 < n; i++) {
        if (i && (len - i) % 3 == 0) buf[j++] = ',';
        buf[j++] = raw[i];
    }
    buf[j] = '\0';
    return buf;
}

int vc_pretrained_flags(vopts *o)
{
    const char *needs = o->strict ? "--strict" : o->unfreeze ? "--unfreeze" : o->no_train_bn ? "--no-train-bn" : NULL;
    if (!o->pretrained) {
        if (needs) return cli_fail(o->t.cmd, 2, "%s applies to --pretrained weights only", needs);
        return 0;
    }
    if (o->unfreeze && o->t.given_schedule && !strcmp(o->t.schedule, "fine-tune"))
        return cli_fail(o->t.cmd, 2, "--unfreeze and --schedule fine-tune contradict each other (fine-tune starts "
                        "frozen): drop one");
    if (!o->t.given_schedule) o->t.schedule = o->unfreeze ? "one-cycle" : "fine-tune";
    struct stat st;
    if (stat(o->pretrained, &st) != 0) return cli_fail(o->t.cmd, 1, "--pretrained %s: %s", o->pretrained, strerror(errno));
    if (S_ISDIR(st.st_mode) && !o->given_arch) { /* a kiln export: its arch unless --arch says otherwise */
        static char arch[32];
        kiln_vision_model_info mi;
        char path[4096];
        kiln_status s = kiln_vision_model_info_read(cli_path(path, sizeof path, o->pretrained, "model.json"), &mi);
        if (!s) snprintf(arch, sizeof arch, "%s", mi.arch);
        kiln_vision_model_info_free(&mi);
        if (s) return cli_kfail(o->t.cmd, "--pretrained");
        o->arch = arch;
    }
    return 0;
}

/* The data parameters the flags ask for: --norm, or a pretrained folder's normalization. */
static int data_params(vopts *o, const char *data, kiln_vision_params *vp)
{
    *vp = vc_vision_params(o, train_rank_bs(&o->t)); /* N ranks: each its shard, --bs / N a rank */
    if (!train_comm()) return cli_kfail(o->t.cmd, "MPI");
    vp->batch_size = train_rank_bs(&o->t), vp->rank = train_rank(), vp->world = train_world();
    if (!strcmp(o->norm, "dataset")) vp->norm = KILN_VISION_NORM_DATASET;
    else if (!strcmp(o->norm, "imagenet")) vp->norm = KILN_VISION_NORM_IMAGENET;
    else if (!strcmp(o->norm, "none")) vp->norm = KILN_VISION_NORM_NONE;
    else return cli_fail(o->t.cmd, 2, "--norm: '%s' is not dataset, imagenet or none", o->norm);
    if (vp->norm == KILN_VISION_NORM_IMAGENET) {
        if (!strcmp(data, "fashion-mnist"))
            return cli_fail(o->t.cmd, 2, "--norm imagenet needs colour images (fashion-mnist is grey)");
        vp->n_channels = 3; /* imagenet stats are 3 channels: ask the source for colour */
    }
    if (o->pretrained) { /* a folder: its channels, and its stats unless --norm is given */
        kiln_vision_params given = *vp;
        if (kiln_vision_pretrained_data_params(o->pretrained, vp)) return cli_kfail(o->t.cmd, "--pretrained");
        if (o->given_norm) vp->norm = given.norm, vp->custom_stats = given.custom_stats;
    }
    return 0;
}

/* The load report and how much of the model trains. */
static void print_pretrained(const vopts *o, kiln_learner *l, const kiln_load_report *r)
{
    if (o->t.quiet) return;
    kiln_load_report_print(r, stdout, 10);
    kiln_model *m = kiln_learner_model(l);
    char a[32], b[32];
    int fz = kiln_model_frozen_to(m);
    printf("pretrained: %s of %s parameters train (%s; %d layer groups%s)\n",
           commas(kiln_model_n_params(m, true), a, sizeof a), commas(kiln_model_n_params(m, false), b, sizeof b),
           fz ? "body frozen" : "unfrozen", kiln_model_n_groups(m),
           fz && kiln_model_train_bn(m) ? ", BatchNorm trains" : "");
}

/* The learner lr-find and fit train: data opened with the flags' norm and augmentation. */
static int make_learner(vopts *o, const char *data, kiln_ctx *ctx, kiln_learner **out)
{
    *out = NULL;
    kiln_vision_params vp;
    int rc = data_params(o, data, &vp);
    if (rc) return rc;
    kiln_augment_params aug = vc_augment_params(o);
    kiln_data *d = kiln_vision_dls_open(data, &vp, o->no_augment ? NULL : &aug);
    if (!d) return cli_fail(o->t.cmd, 1, "%s", kiln_last_error());
    vc_data_summary(o, d);
    kiln_vision_learner_params lp = kiln_vision_learner_default_params();
    lp.wd = o->t.wd;
    lp.learner = train_learner_params(&o->t);
    kiln_layout_parse(o->layout, &lp.layout);
    kiln_load_report report = {0};
    lp.pretrained = o->pretrained, lp.strict = o->strict, lp.unfreeze = o->unfreeze, lp.train_bn = !o->no_train_bn;
    lp.report = &report;
    kiln_learner *l = kiln_vision_learner_new(ctx, d, o->arch, &lp); /* takes d */
    if (!l) { /* an arch that cannot take the images is a usage error (use --size or a resnet) */
        rc = cli_fail(o->t.cmd, strstr(kiln_last_error(), "takes images of at most") ? 2 : 1, "%s", kiln_last_error());
        if (o->pretrained && report.path && kiln_load_report_has_problems(&report))
            kiln_load_report_print(&report, stderr, 10);
        kiln_load_report_free(&report);
        return rc;
    }
    if (!o->t.quiet) {
        const kiln_arch *a = kiln_arch_find(o->arch);
        char n[32];
        printf("model: %s (%s), %s parameters\n", a->name, a->about,
               commas(kiln_model_n_params(kiln_learner_model(l), false), n, sizeof n));
    }
    if (o->pretrained) print_pretrained(o, l, &report);
    kiln_load_report_free(&report);
    fflush(stdout);
    *out = l;
    return 0;
}

/* lr-find and fit: context, learner, then run(o, l, data). */
static int with_learner(vopts *o, const char *data, int (*run)(vopts *o, kiln_learner *l, const char *data))
{
    kiln_ctx *ctx = train_ctx_new(&o->t);
    if (!ctx) return 1;
    kiln_learner *l;
    int rc = make_learner(o, data, ctx, &l);
    if (!rc) rc = run(o, l, data);
    kiln_learner_free(l);
    kiln_ctx_free(ctx);
    return rc;
}

static int run_lr_find(vopts *o, kiln_learner *l, const char *data)
{
    (void)data;
    return train_lr_find(&o->t, l);
}

/* The flags that shape training besides the common ones, recorded in every checkpoint of the
 * run: --resume refuses one whose value differs, by name. */
static int run_fit(vopts *o, kiln_learner *l, const char *data)
{
    train_settings s = {.n = 0};
    train_settings_str(&s, "DATA", data);
    train_settings_str(&s, "--arch", o->arch);
    train_settings_num(&s, "--size", (double)o->size);
    train_settings_str(&s, "--norm", o->norm);
    train_settings_num(&s, "--valid-pct", o->valid_pct);
    train_settings_str(&s, "--skip-bad", o->skip_bad ? "yes" : "no");
    train_settings_str(&s, "--layout", o->layout);
    train_settings_str(&s, "--no-augment", o->no_augment ? "yes" : "no");
    if (!o->no_augment) {
        train_settings_num(&s, "--max-rotate", o->max_rotate);
        train_settings_num(&s, "--max-zoom", o->max_zoom);
        train_settings_num(&s, "--max-warp", o->max_warp);
        train_settings_num(&s, "--max-lighting", o->max_lighting);
        train_settings_num(&s, "--p-affine", o->p_affine);
        train_settings_num(&s, "--p-lighting", o->p_lighting);
        train_settings_str(&s, "--no-flip", o->no_flip ? "yes" : "no");
    }
    char classes[48] = "all";
    for (int i = 0, k = 0; i < o->n_classes && k < (int)sizeof classes - 1; i++) /* as given, cut at 47 bytes */
        k += snprintf(classes + k, sizeof classes - (size_t)k, "%s%s", i ? "," : "", o->classes[i]);
    train_settings_str(&s, "--classes", classes);
    train_settings_num(&s, "--train-per-class", (double)o->train_per_class);
    if (o->pretrained) {
        train_settings_str(&s, "--pretrained", o->pretrained);
        train_settings_str(&s, "--unfreeze", o->unfreeze ? "yes" : "no");
        train_settings_str(&s, "--no-train-bn", o->no_train_bn ? "yes" : "no");
    }
    return train_fit(&o->t, l, data, &s);
}

int vc_lr_find(vopts *o, const char *data) { return with_learner(o, data, run_lr_find); }

int vc_fit(vopts *o, const char *data)
{
    kiln_recipe r;
    int rc = train_recipe(&o->t, &r); /* a bad schedule is a usage error before any data is read */
    if (rc) return rc;
    char ck[4096];
    if (o->t.resume && access(cli_path(ck, sizeof ck, o->t.out, "checkpoint.safetensors"), R_OK) != 0)
        return cli_fail(o->t.cmd, 1, "--resume: no checkpoint %s to resume from", ck);
    return with_learner(o, data, run_fit);
}
