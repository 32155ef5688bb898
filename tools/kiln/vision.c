/* kiln vision <lr-find|fit|predict|show-batch|interpret>: the dispatcher, the one flag table
 * (its masks say which subcommands read each flag; --help shows a subcommand's own), and the
 * helpers the subcommands share (vision_cli.h): data, models, learner, files, model.json. */
#include "flags.h"
#include "vision_cli.h"
#include "kiln/models.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- flags ------------------------------------------------------------------------------------ */

#define O(f) offsetof(vopts, f)
#define DATA_CMDS (VC_LR_FIND | VC_FIT | VC_SHOW | VC_INTERP)
#define TRAIN_CMDS (VC_LR_FIND | VC_FIT)
static const kiln_flag g_flags[] = {
    {"--out", "DIR", KILN_FLAG_STR, O(out), VC_LR_FIND | VC_FIT | VC_SHOW | VC_INTERP,
     "output folder, created if missing (show-batch: the PNG file)", NULL, NULL},
    {"--arch", "NAME", KILN_FLAG_STR, O(arch), TRAIN_CMDS,
     "simple-cnn (fastai lesson 7) | simple-resnet (fastai 2022 part 2) | resnet18 | resnet34 | resnet50 "
     "(+ fastai head) (simple-cnn)", NULL, NULL},
    {"--size", "S", KILN_FLAG_INT, O(size), TRAIN_CMDS | VC_SHOW,
     "image side in pixels (IDX: 28 native; folders: their common square size)", NULL, NULL},
    {"--bs", "B", KILN_FLAG_INT, O(bs), TRAIN_CMDS | VC_INTERP, "batch size (128)", NULL, NULL},
    {"--epochs", "E", KILN_FLAG_INT, O(epochs), VC_FIT,
     "epochs (3; sgdr: the cycles' sum; clr: n-cycle x cycle-len)", NULL, NULL},
    {"--lr", "X", KILN_FLAG_DOUBLE, O(lr), VC_FIT, "peak learning rate (1e-2)", NULL, NULL},
    {"--resume", NULL, KILN_FLAG_BOOL, O(resume), VC_FIT,
     "go on from DIR/checkpoint.safetensors (saved at the start and every epoch end) with the same flags "
     "(a flag that shapes training and differs is refused by name)", NULL, NULL},
    {"--on-nan", "POLICY", KILN_FLAG_STR, O(on_nan), VC_FIT,
     "a NaN/infinite loss or gradient: stop (exit 1, the last good checkpoint and model files kept) | "
     "skip (skip that batch; stop after 10 in a row) (stop)", NULL, NULL},
    {"--schedule", "NAME", KILN_FLAG_STR, O(schedule), VC_FIT,
     "one-cycle (fastai v2) | sgdr | clr (triangular, lr/25 .. lr) | const (one-cycle)", NULL, NULL},
    {"--n-cycle", "N", KILN_FLAG_INT, O(n_cycle), VC_FIT, "sgdr, clr: number of cycles (sgdr 3; clr epochs/cycle-len)",
     NULL, NULL},
    {"--cycle-len", "N", KILN_FLAG_INT, O(cycle_len), VC_FIT, "sgdr, clr: epochs in the first cycle (1)", NULL, NULL},
    {"--cycle-mult", "N", KILN_FLAG_INT, O(cycle_mult), VC_FIT, "sgdr: cycle length multiplier (2)", NULL, NULL},
    {"--snapshots", "M", KILN_FLAG_INT, O(snapshots), VC_FIT,
     "keep the weights at each cycle end; report the ensemble of the last M (0: off)", NULL, NULL},
    {"--tta", NULL, KILN_FLAG_BOOL, O(tta), VC_FIT | VC_PREDICT | VC_INTERP,
     "test-time augmentation: n augmented passes mixed with the plain one (fastai v2)", NULL, NULL},
    {"--tta-n", "N", KILN_FLAG_INT, O(tta_n), VC_FIT | VC_PREDICT | VC_INTERP, "TTA passes (4)", NULL, NULL},
    {"--tta-beta", "F", KILN_FLAG_DOUBLE, O(tta_beta), VC_FIT | VC_PREDICT | VC_INTERP,
     "TTA weight of the plain pass (0.25)", NULL, NULL},
    {"--tta-max", NULL, KILN_FLAG_BOOL, O(tta_max), VC_FIT | VC_PREDICT | VC_INTERP,
     "TTA: elementwise max of the passes instead of their mean", NULL, NULL},
    {"--wd", "W", KILN_FLAG_DOUBLE, O(wd), TRAIN_CMDS, "AdamW weight decay (1e-2; none on BatchNorm and biases)",
     NULL, NULL},
    {"--no-augment", NULL, KILN_FLAG_BOOL, O(no_augment), TRAIN_CMDS | VC_SHOW,
     "no training augmentation (the benchmark recipe)", NULL, NULL},
    {"--max-rotate", "DEG", KILN_FLAG_DOUBLE, O(max_rotate), TRAIN_CMDS | VC_SHOW,
     "augmentation: rotation up to DEG degrees either way (10)", NULL, NULL},
    {"--max-zoom", "F", KILN_FLAG_DOUBLE, O(max_zoom), TRAIN_CMDS | VC_SHOW, "augmentation: zoom up to F (1.1)", NULL,
     NULL},
    {"--max-warp", "F", KILN_FLAG_DOUBLE, O(max_warp), TRAIN_CMDS | VC_SHOW,
     "augmentation: perspective warp magnitude (0.2)", NULL, NULL},
    {"--max-lighting", "F", KILN_FLAG_DOUBLE, O(max_lighting), TRAIN_CMDS | VC_SHOW,
     "augmentation: brightness and contrast change (0.2)", NULL, NULL},
    {"--p-affine", "P", KILN_FLAG_DOUBLE, O(p_affine), TRAIN_CMDS | VC_SHOW,
     "augmentation: probability of each of rotate, zoom, warp (0.75)", NULL, NULL},
    {"--p-lighting", "P", KILN_FLAG_DOUBLE, O(p_lighting), TRAIN_CMDS | VC_SHOW,
     "augmentation: probability of each of brightness, contrast (0.75)", NULL, NULL},
    {"--no-flip", NULL, KILN_FLAG_BOOL, O(no_flip), TRAIN_CMDS | VC_SHOW, "augmentation: no horizontal flips",
     NULL, NULL},
    {"--norm", "NAME", KILN_FLAG_STR, O(norm), TRAIN_CMDS,
     "dataset (the train split's mean/std) | imagenet | none (dataset)", NULL, NULL},
    {"--valid-pct", "F", KILN_FLAG_DOUBLE, O(valid_pct), TRAIN_CMDS | VC_SHOW,
     "folders without train/ and valid/: random validation share (0.2, seed 42)", NULL, NULL},
    {"--num-it", "N", KILN_FLAG_INT, O(num_it), VC_LR_FIND, "iterations of the range test (100)", NULL, NULL},
    {"--n", "N", KILN_FLAG_INT, O(n), VC_SHOW | VC_INTERP, "images shown (show-batch 16, interpret top losses 9)",
     NULL, NULL},
    {"--skip-bad", NULL, KILN_FLAG_BOOL, O(skip_bad), DATA_CMDS,
     "drop unreadable images with a warning instead of failing", NULL, NULL},
    {"--layout", "NAME", KILN_FLAG_STR, O(layout), TRAIN_CMDS | VC_PREDICT | VC_INTERP,
     "activations' memory layout: nhwc (channels-last) | nchw | auto (nhwc for simple-cnn and "
     "simple-resnet, else nchw)",
     NULL, NULL},
    {"--seed", "N", KILN_FLAG_INT, O(seed), VC_ALL, "seed of weights, shuffling and augmentation (42)", NULL, NULL},
    {"--threads", "T", KILN_FLAG_INT, O(threads), VC_ALL, "compute threads (0: OMP_NUM_THREADS or all cores)", NULL, NULL},
    {"--workers", "N", KILN_FLAG_INT, O(workers), DATA_CMDS, "data loader threads (2; 0: load on the main thread)",
     NULL, NULL},
    {"--progress", "NAME", KILN_FLAG_STR, O(progress), TRAIN_CMDS,
     "auto (a bar on a terminal, plain lines otherwise) | bar | plain | quiet (auto)", NULL, NULL},
    {"--quiet", NULL, KILN_FLAG_BOOL, O(quiet), VC_ALL, "print only the final summary", NULL, NULL},
    {"--help", NULL, KILN_FLAG_BOOL, O(help), VC_ALL, "print this help and exit", NULL, NULL},
};
#define N_FLAGS ((int)(sizeof g_flags / sizeof g_flags[0]))

typedef struct subcmd {
    const char *name;
    unsigned bit;
    const char *usage, *about;
} subcmd;

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

static void cmd_usage(FILE *f, const subcmd *c)
{
    fprintf(f, "usage: %s\n\n%s\n\nflags:\n", c->usage, c->about);
    kiln_flags_print(f, g_flags, N_FLAGS, c->bit, VC_ALL, NULL);
}

int kiln_cmd_vision(int argc, char **argv)
{
    if (argc < 2) {
        vision_usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        vision_usage(stdout);
        return 0;
    }
    const subcmd *c = NULL;
    for (int i = 0; i < N_CMDS; i++)
        if (!strcmp(argv[1], g_cmds[i].name))
            c = &g_cmds[i];
    if (!c) {
        fprintf(stderr, "kiln vision: unknown command '%s' (lr-find, fit, predict, show-batch, interpret)\n", argv[1]);
        return 2;
    }
    char prog[64];
    snprintf(prog, sizeof prog, "kiln vision %s", c->name);
    vopts o = {.cmd = prog, .arch = "simple-cnn", .schedule = "one-cycle", .norm = "dataset", .progress = "auto", .layout = "auto", .on_nan = "stop",
               .max_rotate = 10, .max_zoom = 1.1, .max_warp = 0.2, .max_lighting = 0.2, .p_affine = 0.75,
               .p_lighting = 0.75,
               .bs = 128,
               .epochs = 3, .n_cycle = 3, .cycle_len = 1, .cycle_mult = 2, .seed = 42, .workers = 2,
               .num_it = 100, .n = c->bit == VC_SHOW ? 16 : 9, .tta_n = 4, .lr = 1e-2, .wd = 1e-2,
               .valid_pct = 0.2, .tta_beta = 0.25};
    bool given[N_FLAGS] = {false};
    const char **pos = calloc((size_t)argc + 1, sizeof *pos);
    if (!pos) return vc_fail(&o, 1, "out of memory");
    int n_pos = 0, rc = kiln_flags_parse(prog, g_flags, N_FLAGS, argc - 1, argv + 1, &o, given, pos, argc, &n_pos);
    if (rc) goto done;
    if (o.help) {
        cmd_usage(stdout, c);
        goto done;
    }
    for (int k = 0; k < N_FLAGS; k++)
        if (given[k] && !(g_flags[k].mask & c->bit)) {
            rc = vc_fail(&o, 2, "%s does not apply to %s (see %s --help)", g_flags[k].name, c->name, prog);
            goto done;
        }
    o.given_epochs = given[kiln_flags_index(g_flags, N_FLAGS, "--epochs")];
    o.given_n_cycle = given[kiln_flags_index(g_flags, N_FLAGS, "--n-cycle")];
    o.given_bs = given[kiln_flags_index(g_flags, N_FLAGS, "--bs")];
    o.given_size = given[kiln_flags_index(g_flags, N_FLAGS, "--size")];
    const char *bad = o.bs < 1 || o.bs > 65536 ? "--bs must be in [1, 65536]"
                    : o.size < 0 || o.size > 4096 ? "--size must be in [0, 4096]"
                    : o.threads < 0 || o.threads > 1024 ? "--threads must be in [0, 1024]"
                    : o.workers < 0 || o.workers > 64 ? "--workers must be in [0, 64]"
                    : o.tta_n < 1 || o.tta_n > 64 ? "--tta-n must be in [1, 64]"
                    : !(o.tta_beta >= 0 && o.tta_beta <= 1) ? "--tta-beta must be in [0, 1]"
                    : o.n < 1 || o.n > 1024 ? "--n must be in [1, 1024]"
                    : o.seed < 0 || o.seed > ((int64_t)1 << 53) ? "--seed must be in [0, 2^53]"
                    : strcmp(o.progress, "auto") && strcmp(o.progress, "bar") && strcmp(o.progress, "plain") &&
                              strcmp(o.progress, "quiet")
                        ? "--progress must be auto, bar, plain or quiet"
                    : strcmp(o.layout, "auto") && strcmp(o.layout, "nhwc") && strcmp(o.layout, "nchw")
                        ? "--layout must be auto, nhwc or nchw"
                    : strcmp(o.on_nan, "stop") && strcmp(o.on_nan, "skip") ? "--on-nan must be stop or skip" : NULL;
    o.skip_nan = !strcmp(o.on_nan, "skip");
    kiln_augment_params ap = vc_augment_params(&o);
    if (!bad && kiln_augment_check_params(&ap)) bad = kiln_last_error();
    if (bad) {
        rc = vc_fail(&o, 2, "%s", bad);
        goto done;
    }
    int want = c->bit == VC_INTERP ? 2 : 1;
    if (c->bit == VC_PREDICT ? n_pos < 2 : n_pos != want) {
        fprintf(stderr, "%s: %s (usage: %s)\n", prog,
                n_pos < want || c->bit == VC_PREDICT ? "missing arguments" : "too many arguments", c->usage);
        rc = 2;
        goto done;
    }
    if (c->bit != VC_PREDICT && !o.out) {
        rc = vc_fail(&o, 2, "--out is required (usage: %s)", c->usage);
        goto done;
    }
    /* file names are joined to --out and DIR in PATH_MAX buffers: refuse what would not fit
     * now, not a cut name (or the OS's refusal) after training */
    const char *longp = o.out && strlen(o.out) > VC_DIR_MAX ? "--out"
                      : (c->bit & (VC_PREDICT | VC_INTERP)) && strlen(pos[0]) > VC_DIR_MAX ? "DIR" : NULL;
    if (longp) {
        rc = vc_fail(&o, 2, "%s is %zu bytes long; at most %d are allowed (its file names must fit in PATH_MAX, 4096)",
                     longp, strlen(!strcmp(longp, "DIR") ? pos[0] : o.out), VC_DIR_MAX);
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
    free(pos);
    return rc;
}

/* ---- messages, files ---------------------------------------------------------------------------- */

int vc_fail(const vopts *o, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    fprintf(stderr, "%s: ", o->cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return rc;
}

int vc_kfail(const vopts *o, const char *what)
{
    return vc_fail(o, 1, "%s%s%s", what ? what : "", what ? ": " : "", kiln_last_error());
}

const char *vc_path(char *buf, size_t n, const char *dir, const char *name)
{
    size_t dl = strlen(dir);
    snprintf(buf, n, "%s%s%s", dir, dl && dir[dl - 1] == '/' ? "" : "/", name);
    return buf;
}

int vc_mkdirs(const vopts *o, const char *dir)
{
    char p[4096];
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1;; s++) {
        char ch = *s;
        if (ch == '/' || ch == '\0') {
            *s = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) return vc_fail(o, 1, "cannot create %s: %s", p, strerror(errno));
            *s = ch;
        }
        if (!ch) break;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return vc_fail(o, 1, "%s is not a folder", dir);
    return 0;
}

int vc_write_atomic(const vopts *o, const char *path, const char *text)
{
    return kiln_atomic_write(path, text, strlen(text)) ? vc_kfail(o, NULL) : 0;
}

/* ---- data, model, learner ----------------------------------------------------------------------- */

kiln_augment_params vc_augment_params(const vopts *o)
{
    kiln_augment_params p = kiln_augment_default_params();
    p.max_rotate = (float)o->max_rotate, p.max_zoom = (float)o->max_zoom, p.max_warp = (float)o->max_warp;
    p.max_lighting = (float)o->max_lighting, p.p_affine = (float)o->p_affine, p.p_lighting = (float)o->p_lighting;
    p.do_flip = !o->no_flip;
    return p;
}

kiln_data *vc_open_data(const vopts *o, const char *data, int n_channels, const kiln_vision_stats *custom,
                        kiln_vision_norm norm, const kiln_augment_params *aug, int64_t bs, bool summary)
{
    kiln_vision_params vp = kiln_vision_default_params();
    vp.batch_size = bs;
    vp.size = (int)o->size;
    vp.n_channels = n_channels;
    vp.norm = norm;
    if (custom) vp.custom_stats = *custom;
    vp.valid_pct = o->valid_pct;
    vp.skip_bad = o->skip_bad;
    vp.n_workers = (int)o->workers;
    vp.tfm = aug ? kiln_augment_tfm : NULL;
    vp.tfm_user = (void *)aug;
    kiln_data *d = kiln_vision_open(data, &vp);
    if (!d) {
        vc_fail(o, 1, "%s", kiln_last_error());
        return NULL;
    }
    kiln_vision_data *v = kiln_vision_data_of(d);
    int64_t nt = kiln_data_n_items(d, KILN_DATA_SPLIT_TRAIN), nv = kiln_data_n_items(d, KILN_DATA_SPLIT_VALID);
    if (o->skip_bad && kiln_vision_data_n_skipped(v))
        fprintf(stderr, "%s: warning: %lld bad image file(s) skipped\n", o->cmd,
                (long long)kiln_vision_data_n_skipped(v));
    if (summary && !o->quiet) {
        int s = kiln_vision_data_size(v);
        printf("%s: %lld train / %lld valid images, %dx%dx%d, %d classes\n", kiln_vision_data_name(v), (long long)nt,
               (long long)nv, s, s, kiln_vision_data_n_channels(v), kiln_vision_data_n_classes(v));
    }
    return d;
}

kiln_ctx *vc_ctx_new(const vopts *o)
{
    kiln_ctx_params cp = kiln_ctx_default_params();
    cp.n_threads = (int)o->threads;
    cp.seed = (uint64_t)o->seed;
    kiln_ctx *ctx = kiln_ctx_new(&cp);
    if (!ctx) vc_kfail(o, "context");
    return ctx;
}

kiln_model *vc_model_new(const vopts *o, const char *arch, int n_in, int size, int n_classes, kiln_ctx *ctx,
                         char *desc, size_t desc_n)
{
    kiln_model *m = NULL;
    if (!strcmp(arch, "simple-cnn") || !strcmp(arch, "simple-resnet")) {
        int s = size;
        for (int i = 0; i < 5; i++) s = (s + 1) / 2; /* five stride-2 stages down to 1x1 */
        if (s != 1) {
            vc_fail(o, 2, "--arch %s takes images of at most 32x32 (these are %dx%d): use --size 28 or a resnet",
                    arch, size, size);
            return NULL;
        }
        bool cnn = !strcmp(arch, "simple-cnn");
        m = cnn ? kiln_simple_cnn_new(n_in, n_classes) : kiln_simple_resnet_new(n_in, n_classes);
        snprintf(desc, desc_n, cnn ? "simple-cnn (fastai lesson 7)" : "simple-resnet (fastai 2022 part 2)");
    } else if (!strcmp(arch, "resnet18") || !strcmp(arch, "resnet34") || !strcmp(arch, "resnet50")) {
        kiln_resnet_params body = kiln_resnet_default_params(atoi(arch + 6));
        body.n_in = n_in;
        kiln_vision_model_params hp = kiln_vision_model_default_params();
        hp.n_classes = n_classes;
        hp.frozen = false; /* trained from scratch: every layer trains */
        m = kiln_vision_model_new(&body, &hp);
        snprintf(desc, desc_n, "%s + fastai head (from scratch)", arch);
    } else {
        vc_fail(o, 2, "--arch: '%s' is not simple-cnn, simple-resnet, resnet18, resnet34 or resnet50", arch);
        return NULL;
    }
    if (!m || kiln_model_alloc(m, ctx) != KILN_STATUS_OK) {
        vc_kfail(o, arch);
        kiln_model_free(m);
        return NULL;
    }
    /* auto: nhwc for simple-cnn, where it measured faster (docs/benchmarks.md: its small
     * convs, 1.5x an epoch), and simple-resnet, built of conv, batch norm and adds only so
     * nothing reorders; the ResNets keep nchw (nhwc measured slower for them). */
    bool nhwc = !strcmp(o->layout, "nhwc") ||
                (!strcmp(o->layout, "auto") && (!strcmp(arch, "simple-cnn") || !strcmp(arch, "simple-resnet")));
    kiln_model_set_channels_last(m, nhwc);
    return m;
}

kiln_learner *vc_learner_new(const vopts *o, kiln_ctx *ctx, kiln_model *m, kiln_data *d, kiln_optim **opt)
{
    kiln_adam_params ap = kiln_adam_default_params();
    ap.weight_decay = o->wd;
    *opt = kiln_optim_new_adam(kiln_model_store(m), &ap);
    if (!*opt) {
        vc_kfail(o, "optimizer");
        return NULL;
    }
    kiln_learner_params lp = kiln_learner_default_params();
    lp.seed = (uint64_t)o->seed;
    lp.progress = o->quiet || !strcmp(o->progress, "quiet") ? KILN_PROGRESS_STYLE_QUIET
                : !strcmp(o->progress, "bar")                 ? KILN_PROGRESS_STYLE_BAR
                : !strcmp(o->progress, "plain")               ? KILN_PROGRESS_STYLE_LINES
                                                              : KILN_PROGRESS_STYLE_AUTO;
    lp.on_nan = o->skip_nan ? KILN_NAN_POLICY_SKIP : KILN_NAN_POLICY_STOP;
    kiln_learner *l = kiln_learner_new(ctx, m, d, *opt, &lp);
    kiln_metric acc = kiln_metric_make(KILN_METRIC_KIND_ACCURACY);
    if (!l || kiln_learner_add_metric(l, &acc) != KILN_STATUS_OK) {
        vc_kfail(o, "learner");
        kiln_learner_free(l);
        kiln_optim_free(*opt);
        *opt = NULL;
        return NULL;
    }
    return l;
}
