/* kiln vision <lr-find|fit|predict|show-batch|interpret>: the dispatcher, the one flag table
 * (the common training flags of train.h and vision's own; its masks say which subcommands
 * read each flag; --help shows a subcommand's own with their real defaults), and the data
 * helpers the subcommands share (vision_cli.h). */
#include "subcmd.h"
#include "vision_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- flags ------------------------------------------------------------------------------------ */

#define O(f) offsetof(vopts, f)
static bool parse_classes(const char *value, void *opts);
#define DATA_CMDS (VC_LR_FIND | VC_FIT | VC_SHOW | VC_INTERP)
#define TRAIN_CMDS (VC_LR_FIND | VC_FIT)
/* vision's own flags; the common ones (train.h) are added in front of them */
static const cli_flag g_vision_flags[] = {
    {"--arch", "NAME", FLAG_STR, O(arch), TRAIN_CMDS, NULL /* from the registry: arch_help */, NULL, NULL},
    {"--size", "S", FLAG_INT, O(size), TRAIN_CMDS | VC_SHOW,
     "image side in pixels (0: IDX 28 native; folders: their common square size)", NULL, NULL},
    {"--no-augment", NULL, FLAG_BOOL, O(no_augment), TRAIN_CMDS | VC_SHOW,
     "no training augmentation (the benchmark recipe)", NULL, NULL},
    {"--max-rotate", "DEG", FLAG_DOUBLE, O(max_rotate), TRAIN_CMDS | VC_SHOW,
     "augmentation: rotation up to DEG degrees either way", NULL, NULL},
    {"--max-zoom", "F", FLAG_DOUBLE, O(max_zoom), TRAIN_CMDS | VC_SHOW, "augmentation: zoom up to F", NULL, NULL},
    {"--max-warp", "F", FLAG_DOUBLE, O(max_warp), TRAIN_CMDS | VC_SHOW, "augmentation: perspective warp magnitude",
     NULL, NULL},
    {"--max-lighting", "F", FLAG_DOUBLE, O(max_lighting), TRAIN_CMDS | VC_SHOW,
     "augmentation: brightness and contrast change", NULL, NULL},
    {"--p-affine", "P", FLAG_DOUBLE, O(p_affine), TRAIN_CMDS | VC_SHOW,
     "augmentation: probability of each of rotate, zoom, warp", NULL, NULL},
    {"--p-lighting", "P", FLAG_DOUBLE, O(p_lighting), TRAIN_CMDS | VC_SHOW,
     "augmentation: probability of each of brightness, contrast", NULL, NULL},
    {"--no-flip", NULL, FLAG_BOOL, O(no_flip), TRAIN_CMDS | VC_SHOW, "augmentation: no horizontal flips", NULL, NULL},
    {"--norm", "NAME", FLAG_STR, O(norm), TRAIN_CMDS,
     "dataset (the train split's mean/std) | imagenet | none", NULL, NULL},
    {"--valid-pct", "F", FLAG_DOUBLE, O(valid_pct), TRAIN_CMDS | VC_SHOW,
     "folders without train/ and valid/: random validation share (split seed 42)", NULL, NULL},
    {"--n", "N", FLAG_INT, O(n), VC_SHOW | VC_INTERP, "images shown (show-batch 16, interpret top losses 9)", NULL,
     NULL},
    {"--skip-bad", NULL, FLAG_BOOL, O(skip_bad), DATA_CMDS, "drop unreadable images with a warning instead of failing",
     NULL, NULL},
    {"--layout", "NAME", FLAG_STR, O(layout), TRAIN_CMDS | VC_PREDICT | VC_INTERP,
     "activations' memory layout: nhwc (channels-last) | nchw | auto (the architecture's choice: nhwc for "
     "simple-cnn and simple-resnet, else nchw)", NULL, NULL},
    {"--workers", "N", FLAG_INT, O(workers), DATA_CMDS, "data loader threads (0: load on the main thread)", NULL, NULL},
    {"--classes", "LIST", FLAG_CUSTOM, 0, TRAIN_CMDS | VC_SHOW,
     "keep only these classes, in this order (they become the model's classes): comma-separated class names, "
     "or the source's class indices (5, or a range 5-9: fashion-mnist 5-9 is Sandal..Ankle boot)",
     parse_classes, "a comma-separated list of class names or indices (A or A-B)"},
    {"--train-per-class", "N", FLAG_INT, O(train_per_class), TRAIN_CMDS | VC_SHOW,
     "keep at most N training images per class, picked at random with split seed 42 (0: all); validation "
     "keeps every image of the kept classes", NULL, NULL},
    {"--pretrained", "FILE|DIR", FLAG_STR, O(pretrained), TRAIN_CMDS,
     "start from pretrained weights, body frozen (fastai vision_learner): a folder a kiln fit wrote (its arch, "
     "channels and normalization; the head is made anew for these classes), or a ResNet .pth / .safetensors as "
     "torchvision and timm publish them (resnet18/34/50); fit then runs --schedule fine-tune", NULL, NULL},
    {"--strict", NULL, FLAG_BOOL, O(strict), TRAIN_CMDS,
     "--pretrained: a missing, unexpected or mis-shaped key is an error (default: reported, the rest loads)", NULL,
     NULL},
    {"--unfreeze", NULL, FLAG_BOOL, O(unfreeze), TRAIN_CMDS,
     "--pretrained: train every layer from the start (fit then runs --schedule one-cycle)", NULL, NULL},
    {"--no-train-bn", NULL, FLAG_BOOL, O(no_train_bn), TRAIN_CMDS,
     "--pretrained: the BatchNorm parameters of frozen layer groups stay frozen too (fastai train_bn=False)", NULL,
     NULL},
    {"--probs", NULL, FLAG_BOOL, O(probs), VC_PREDICT,
     "also print every class's probability (class=p, in the model's class order)", NULL, NULL},
};
#define N_VISION ((int)(sizeof g_vision_flags / sizeof g_vision_flags[0]))
#define MAX_FLAGS (TRAIN_MAX_FLAGS + N_VISION)

/* The whole table: the common flags mapped onto vision's subcommands, then vision's. */
static int make_flags(cli_flag *f)
{
    static char arch_help[512];
    unsigned map[TRAIN_N_KINDS] = {[TRAIN_LR_FIND] = VC_LR_FIND, [TRAIN_FIT] = VC_FIT,
                                   [TRAIN_EVAL] = VC_PREDICT | VC_INTERP, [TRAIN_DATA] = DATA_CMDS, [TRAIN_ALL] = VC_ALL};
    int n = train_flags(f, offsetof(vopts, t), map);
    memcpy(f + n, g_vision_flags, sizeof g_vision_flags);
    size_t k = 0;
    for (int i = 0; i < kiln_arch_count(); i++) {
        const kiln_arch *a = kiln_arch_at(i);
        k += (size_t)snprintf(arch_help + k, sizeof arch_help - k, "%s%s (%s)", i ? " | " : "", a->name, a->about);
    }
    f[n].help = arch_help; /* --arch: the registry's list */
    return n + N_VISION;
}

typedef cli_subcmd subcmd;

static const subcmd g_cmds[] = {
    {"lr-find", VC_LR_FIND, "kiln vision lr-find DATA --out DIR [flags]",
     "The LR range test (fastai lr_find): trains from 1e-7 to 10 over --num-it batches and\n"
     "writes DIR/lr_find.png and DIR/lr_find.csv; prints the suggested learning rates."},
    {"fit", VC_FIT, "kiln vision fit DATA --out DIR [flags]",
     "Trains a classifier the fast.ai way (AdamW, one-cycle, augmentation) and prints the epoch\n"
     "table; writes DIR/model.safetensors, model.json, history.csv, metrics.json, losses.png, lr.png."},
    {"predict", VC_PREDICT, "kiln vision predict DIR IMAGE... [--tta]",
     "Loads DIR/model.json and DIR/model.safetensors and prints, per image, the file, the most\n"
     "likely class and its probability."},
    {"show-batch", VC_SHOW, "kiln vision show-batch DATA --out FILE.png [flags]",
     "Draws a grid of (augmented) training images with their labels."},
    {"interpret", VC_INTERP, "kiln vision interpret DIR DATA --out DIR2 [flags]",
     "Evaluates the model of DIR on DATA's validation split: DIR2/confusion_matrix.png and .csv,\n"
     "DIR2/top_losses.png and .csv (predicted/actual/loss/probability of the actual class)."},
};
#define N_CMDS ((int)(sizeof g_cmds / sizeof g_cmds[0]))

static void vision_usage(FILE *f)
{
    fprintf(f, "usage: kiln vision <command> [args] (kiln vision <command> --help for each)\n\n"
               "Image classification the fast.ai way. DATA is 'fashion-mnist' (Debian package\n"
               "dataset-fashion-mnist), a folder of IDX files, an image folder (root/train/<class>/,\n"
               "root/valid/<class>/, or root/<class>/ split by --valid-pct) or a CSV of name,label.\n\n"
               "commands:\n");
    for (int i = 0; i < N_CMDS; i++) fprintf(f, "  %-11s %s\n", g_cmds[i].name, g_cmds[i].usage + 13 + strlen(g_cmds[i].name));
    fprintf(f, "\nexample:\n  kiln vision lr-find fashion-mnist --out runs/fm\n"
               "  kiln vision fit fashion-mnist --out runs/fm --epochs 3 --lr 1e-2\n");
}

/* A float default as the double a user would type ("1.1", not 1.100000023841858): flags are
 * doubles, and the run settings a checkpoint records (and --resume compares) print them. */
static double typed(float f)
{
    char b[32];
    snprintf(b, sizeof b, "%.7g", (double)f);
    return strtod(b, NULL);
}

int cmd_vision(int argc, char **argv);
int cmd_vision(int argc, char **argv)
{
    int rc;
    const subcmd *c = subcmd_find("vision", argc, argv, g_cmds, N_CMDS, vision_usage, &rc);
    if (!c) return rc;
    char prog[64];
    snprintf(prog, sizeof prog, "kiln vision %s", c->name);
    kiln_augment_params ad = kiln_augment_default_params();
    vopts o = {.t = train_defaults(), .arch = "simple-cnn", .norm = "dataset", .layout = "auto",
               .max_rotate = typed(ad.max_rotate), .max_zoom = typed(ad.max_zoom), .max_warp = typed(ad.max_warp),
               .max_lighting = typed(ad.max_lighting), .p_affine = typed(ad.p_affine),
               .p_lighting = typed(ad.p_lighting),
               .workers = kiln_vision_default_params().n_workers, .n = c->bit == VC_SHOW ? 16 : 9,
               .valid_pct = kiln_vision_default_params().valid_pct};
    o.t.cmd = prog;
    cli_flag flags[MAX_FLAGS];
    int n_flags = make_flags(flags);
    const vopts defaults = o;
    bool given[MAX_FLAGS] = {false};
    const char **pos = NULL;
    int n_pos = 0;
    rc = subcmd_parse(prog, c, flags, n_flags, VC_ALL, argc - 1, argv + 1, &o, &defaults, &o.t.help, given, &pos, &n_pos);
    if (rc) {
        rc = rc < 0 ? 0 : rc;
        goto done;
    }
    train_given(&o.t, flags, n_flags, given);
    o.given_arch = given[flags_index(flags, n_flags, "--arch")];
    o.given_norm = given[flags_index(flags, n_flags, "--norm")];
    if ((rc = vc_pretrained_flags(&o))) goto done;
    kiln_layout layout;
    const char *bad = train_check(&o.t);
    if (!bad)
        bad = o.size < 0 || o.size > 4096 ? "--size must be in [0, 4096]"
            : o.workers < 0 || o.workers > 64 ? "--workers must be in [0, 64]"
            : o.n < 1 || o.n > 1024 ? "--n must be in [1, 1024]"
            : o.train_per_class < 0 ? "--train-per-class must be >= 0"
            : kiln_layout_parse(o.layout, &layout) ? "--layout must be auto, nhwc or nchw"
            : !kiln_arch_find(o.arch) ? kiln_last_error() : NULL;
    kiln_augment_params ap = vc_augment_params(&o);
    if (!bad && kiln_augment_check_params(&ap)) bad = kiln_last_error();
    if (bad) {
        rc = cli_fail(prog, 2, "%s%s", strncmp(bad, "arch", 4) ? "" : "--", bad);
        goto done;
    }
    int want = c->bit == VC_INTERP ? 2 : 1;
    if (c->bit == VC_PREDICT ? n_pos < 2 : n_pos != want) {
        fprintf(stderr, "%s: %s (usage: %s)\n", prog,
                n_pos < want || c->bit == VC_PREDICT ? "missing arguments" : "too many arguments", c->usage);
        rc = 2;
        goto done;
    }
    if (c->bit != VC_PREDICT && !o.t.out) {
        rc = cli_fail(prog, 2, "--out is required (usage: %s)", c->usage);
        goto done;
    }
    /* file names are joined to --out and DIR in PATH_MAX buffers: refuse what would not fit
     * now, not a cut name (or the OS's refusal) after training */
    const char *longp = o.t.out && strlen(o.t.out) > CLI_DIR_MAX ? "--out"
                      : (c->bit & (VC_PREDICT | VC_INTERP)) && strlen(pos[0]) > CLI_DIR_MAX ? "DIR" : NULL;
    if (longp) {
        rc = cli_fail(prog, 2, "%s is %zu bytes long; at most %d are allowed (its file names must fit in PATH_MAX, 4096)",
                      longp, strlen(!strcmp(longp, "DIR") ? pos[0] : o.t.out), CLI_DIR_MAX);
        goto done;
    }
    switch (c->bit) {
    case VC_LR_FIND: rc = vc_lr_find(&o, pos[0]); break;
    case VC_FIT: rc = vc_fit(&o, pos[0]); break;
    case VC_PREDICT: rc = vc_predict(&o, n_pos - 1, pos + 1, pos[0]); break;
    case VC_SHOW: rc = vc_show_batch(&o, pos[0]); break;
    default: rc = vc_interpret(&o, pos[0], pos[1]); break;
    }
done:
    parse_classes(NULL, &o);
    free(pos);
    return rc;
}

/* --classes: "a,b,c" into o->classes; a token of digits A-B (A <= B) becomes A, A+1, .., B
 * (indices the library resolves against the source's classes). NULL frees the list. */
static bool parse_classes(const char *value, void *opts)
{
    vopts *o = opts;
    for (int i = 0; i < o->n_classes; i++) free(o->classes[i]);
    free(o->classes);
    o->classes = NULL, o->n_classes = 0;
    if (!value) return true;
    for (const char *t = value;; t++) {
        size_t n = strcspn(t, ",");
        char tok[256];
        unsigned a, b;
        int used = 0;
        if (n == 0 || n >= sizeof tok) return false;
        memcpy(tok, t, n), tok[n] = '\0';
        bool range = strspn(tok, "0123456789-") == n && sscanf(tok, "%u-%u%n", &a, &b, &used) == 2 && used == (int)n;
        if (range && (a > b || b - a > 65535)) return false;
        for (unsigned k = range ? a : 0; k <= (range ? b : 0); k++) {
            char **nc = realloc(o->classes, (size_t)(o->n_classes + 1) * sizeof *nc);
            if (!nc) return false;
            o->classes = nc;
            char num[16];
            snprintf(num, sizeof num, "%u", k);
            if (!(o->classes[o->n_classes] = strdup(range ? num : tok))) return false;
            o->n_classes++;
        }
        t += n;
        if (!*t) return true;
    }
}

/* ---- data ---------------------------------------------------------------------------------------- */

kiln_augment_params vc_augment_params(const vopts *o)
{
    kiln_augment_params p = kiln_augment_default_params();
    p.max_rotate = (float)o->max_rotate, p.max_zoom = (float)o->max_zoom, p.max_warp = (float)o->max_warp;
    p.max_lighting = (float)o->max_lighting, p.p_affine = (float)o->p_affine, p.p_lighting = (float)o->p_lighting;
    p.do_flip = !o->no_flip;
    return p;
}

kiln_vision_params vc_vision_params(const vopts *o, int64_t bs)
{
    kiln_vision_params vp = kiln_vision_default_params();
    vp.batch_size = bs;
    vp.size = (int)o->size;
    vp.valid_pct = o->valid_pct;
    vp.skip_bad = o->skip_bad;
    vp.n_workers = (int)o->workers;
    vp.classes = (const char *const *)o->classes;
    vp.n_classes = o->n_classes;
    vp.train_per_class = o->train_per_class;
    return vp;
}

void vc_data_summary(const vopts *o, kiln_data *d)
{
    kiln_vision_data *v = kiln_vision_data_of(d);
    if (o->skip_bad && kiln_vision_data_n_skipped(v))
        fprintf(stderr, "%s: warning: %lld bad image file(s) skipped\n", o->t.cmd, (long long)kiln_vision_data_n_skipped(v));
    if (o->t.quiet) return;
    int s = kiln_vision_data_size(v);
    printf("%s: %lld train / %lld valid images, %dx%dx%d, %d classes\n", kiln_vision_data_name(v),
           (long long)kiln_data_n_items(d, KILN_DATA_SPLIT_TRAIN), (long long)kiln_data_n_items(d, KILN_DATA_SPLIT_VALID),
           s, s, kiln_vision_data_n_channels(v), kiln_vision_data_n_classes(v));
    if (train_world() > 1) printf("(rank 0's shard of %d ranks; the table is the whole validation set's)\n", train_world());
}
