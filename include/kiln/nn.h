/* kiln nn: models made of modules with named parameters, the same names as PyTorch state
 * dicts ("layer1.0.conv1.weight"), so torch weights load and kiln weights load in torch.
 *
 * A kiln_model owns a kiln_store (parameters, gradients, buffers), a tree of modules, the
 * train/eval flag and the layer groups used for freezing and discriminative learning rates.
 * Building has two phases, as the store requires:
 *   1. kiln_model_new(), then constructors (kiln_nn_linear(parent, name, ...), ...) add
 *      modules under a parent and declare their parameters and buffers;
 *   2. kiln_model_alloc(model, ctx) allocates the store and initialises every module with
 *      the context's RNG exactly as PyTorch's reset_parameters does (distributions, not bits).
 * Constructors return NULL with a message on bad input; a NULL parent makes them return
 * NULL too, so a builder can check once: kiln_model_alloc fails with the first message.
 *
 * Modules and their names belong to the model and live until kiln_model_free. The root
 * module is a Sequential with path "" (its children are "0", "1", ... as in torch's
 * nn.Sequential); kiln_module_set_forward turns it (or any container) into a custom module.
 *
 * Shapes: NCHW for images, (B, T, C) for batch-first sequences, (N, C) for features. */
#ifndef KILN_NN_H
#define KILN_NN_H

#include "kiln/core.h"
#include "kiln/io.h"
#include "kiln/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_model kiln_model;
typedef struct kiln_module kiln_module;

/* A module's forward: returns a new tensor in the step arena, or NULL with a message. */
typedef kiln_tensor *(*kiln_forward_fn)(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x);

typedef enum kiln_module_kind {
    KILN_MODULE_SEQUENTIAL = 0,
    KILN_MODULE_CUSTOM,          /* user forward over its children */
    KILN_MODULE_LINEAR,
    KILN_MODULE_CONV2D,
    KILN_MODULE_BATCH_NORM1D,
    KILN_MODULE_BATCH_NORM2D,
    KILN_MODULE_EMBEDDING,
    KILN_MODULE_LSTM,
    KILN_MODULE_DROPOUT,
    KILN_MODULE_RELU,
    KILN_MODULE_FLATTEN,
    KILN_MODULE_MAX_POOL2D,
    KILN_MODULE_AVG_POOL2D,
    KILN_MODULE_ADAPTIVE_AVG_POOL2D,
    KILN_MODULE_ADAPTIVE_MAX_POOL2D,
    KILN_MODULE_ADAPTIVE_CONCAT_POOL2D,
} kiln_module_kind;

/* ---- model ----------------------------------------------------------------------------- */

kiln_model *kiln_model_new(void); /* NULL + message on failure; starts in train mode */
void kiln_model_free(kiln_model *model);
kiln_module *kiln_model_root(kiln_model *model);
/* Allocates the store and initialises all modules in declaration order. Fails (STATE) if
 * called twice, or with the first constructor error if building failed. */
kiln_status kiln_model_alloc(kiln_model *model, kiln_ctx *ctx);
bool kiln_model_allocated(const kiln_model *model);
kiln_store *kiln_model_store(kiln_model *model); /* parameters in declaration order */
void kiln_model_zero_grad(kiln_model *model);
/* Train mode: BatchNorm uses batch statistics and updates running ones, Dropout is active.
 * Eval mode: running statistics, no dropout. */
void kiln_model_train(kiln_model *model, bool train);
bool kiln_model_training(const kiln_model *model);
kiln_tensor *kiln_model_forward(kiln_model *model, kiln_ctx *ctx, kiln_tensor *x);
/* Channels-last mode (as model.to(memory_format=torch.channels_last) plus the input's
 * .to(channels_last)): 4-D f32 inputs are stored NHWC before the first module, and the
 * conv / batch norm / elementwise layers keep that layout, which saves oneDNN's reorders
 * around every convolution. Results match the default layout up to float rounding. */
void kiln_model_set_channels_last(kiln_model *model, bool on);
bool kiln_model_channels_last(const kiln_model *model);
/* Parameter count: all parameters, or only those with requires_grad (sum p.numel()). */
int64_t kiln_model_n_params(const kiln_model *model, bool trainable_only);
/* The module at a dotted path ("" is the root); NULL when there is none (no message). */
kiln_module *kiln_model_find(kiln_model *model, const char *path);
/* Modules in declaration order (pre-order: a container before its children). */
size_t kiln_model_n_modules(const kiln_model *model);
kiln_module *kiln_model_module_at(kiln_model *model, size_t i);
/* Prints a table of modules (path, type, output shape, parameter count, layer group) and
 * of parameters (name, shape, count, group, trainable). With ctx and x (one input batch),
 * runs one forward in eval mode without gradients to fill the output shapes, then
 * restores the mode, the running statistics and the step arena. */
kiln_status kiln_model_summary(kiln_model *model, kiln_ctx *ctx, kiln_tensor *x, FILE *out);

/* ---- layer groups and freezing (fastai) ---------------------------------------------------- *
 * Every parameter has a layer group (0 by default, one group). Groups follow declaration
 * order: kiln_model_split(model, n, first_paths) makes n groups, first_paths[0..n-2] naming
 * the module that starts groups 1..n-1 (e.g. {"6", "8"} for three groups). Or assign a
 * subtree with kiln_module_set_group. */
kiln_status kiln_model_split(kiln_model *model, int n_groups, const char *const *first_paths);
kiln_status kiln_module_set_group(kiln_module *m, int group);
int kiln_model_n_groups(const kiln_model *model);

typedef struct kiln_param_info {
    int group;                 /* layer group */
    bool is_param;             /* false for buffers (running statistics) */
    bool is_bn;                /* belongs to a BatchNorm: trained when frozen (train_bn), no wd */
    bool is_bias;              /* "bias", "bias_ih_l0", ...: no weight decay in fastai */
    const kiln_module *module; /* its owner */
} kiln_param_info;
/* Info on store entry i (index as kiln_store_at). INVALID when out of range. */
kiln_status kiln_model_param_info(const kiln_model *model, size_t i, kiln_param_info *out);
int kiln_model_param_group(const kiln_model *model, size_t i); /* -1 when out of range */

/* freeze_to(n): parameters of groups < n stop requiring grad, except BatchNorm parameters
 * while train_bn is on (the default, as fastai); the others require grad. n < 0 counts from
 * the end as Python slicing does; n is clamped to [0, n_groups]. A frozen parameter's grad
 * slice is left alone (no gradient is computed for it, the optimizer's zero_grad skips it);
 * one that becomes trainable gets its grad slice zeroed. The optimizer state is the
 * learner's business: kiln_learner_freeze_to (kiln/learn.h) also clears it, as fastai v2. */
kiln_status kiln_model_freeze_to(kiln_model *model, int n);
kiln_status kiln_model_freeze(kiln_model *model);   /* freeze_to(-1): all but the last group */
kiln_status kiln_model_unfreeze(kiln_model *model); /* freeze_to(0) */
/* The n of the last freeze_to after clamping, in [0, n_groups]; 0 when never frozen. */
int kiln_model_frozen_to(const kiln_model *model);
/* train_bn (default on): BatchNorm parameters of frozen groups keep training. Changing it on
 * a frozen model applies at once (freeze_to(kiln_model_frozen_to) again). */
void kiln_model_set_train_bn(kiln_model *model, bool train_bn);
bool kiln_model_train_bn(const kiln_model *model);

/* ---- state dicts (safetensors, PyTorch names) ----------------------------------------- *
 * Keys are parameter and buffer names; BatchNorm's num_batches_tracked is written as an
 * I64 scalar and read when present (optional). Loading checks every key before copying any
 * (kiln_model_load_mapped below): with strict, a missing, unexpected or mis-shaped key is an
 * error naming them and the model is left unchanged; without strict, every key that matches
 * loads and the rest is reported (kiln_model_load_report). A file of which no key loads is an
 * error either way. F16/BF16 become f32. A wrapper every key of the file has ("module." from
 * DataParallel, "model.") and no key of the model has is stripped. */
kiln_status kiln_model_load(kiln_model *model, const char *path, bool strict);
/* INVALID when a parameter or buffer (running statistics) holds a NaN or an infinity,
 * naming the first such tensor and element (kiln_store_first_nonfinite): a model whose
 * training diverged, refused before it predicts `nan` for everything. */
kiln_status kiln_model_check_finite(kiln_model *model);
/* From an open file, reading keys "<prefix><name>" (prefix may be NULL); keys that do not
 * start with prefix are left alone (not unexpected). */
kiln_status kiln_model_load_st(kiln_model *model, const kiln_st_file *f, const char *prefix, bool strict);

/* ---- loading weights under other names, with a report -------------------------------------- *
 * What a load found, filled by the loaders below whether they succeed or not (zeroed first,
 * so free a report with kiln_load_report_free before passing it to another load). Each list holds every key, in the file's order (missing
 * keys: the model's order):
 *   missing     model entries (not skipped) that no key of the file gives;
 *   unexpected  keys of the file that map onto nothing in the model (keys dropped on purpose,
 *               as torchvision's fc.* when loading a body, and keys onto skipped entries are
 *               only counted in n_skipped);
 *   mismatched  keys that map onto an entry of another shape (or hold no float type);
 *   adapted     the first conv's weight, (O, 3, kh, kw) in the file, adapted to the model's
 *               (O, n_in, kh, kw) as fastai (n_in 1: sum over RGB; 2: the first two x 1.5;
 *               more: RGB then zeros). */
typedef struct kiln_load_key {
    char *key;                      /* the file's name; for a missing key the name the file would
                                       use (kiln_load_params.name), else the model's */
    char *model_key;                /* the model's name; NULL for an unexpected key */
    kiln_dtype dtype;               /* mismatched, adapted: the file's dtype */
    int file_ndim, model_ndim;      /* mismatched, adapted: both shapes */
    int64_t file_shape[KILN_MAX_DIMS], model_shape[KILN_MAX_DIMS];
} kiln_load_key;

typedef struct kiln_load_report {
    char *path;                     /* the file */
    char *stripped;                 /* wrapper removed from every key ("module."), or NULL */
    const char *hint;               /* a likely cause (static text) when keys do not fit, or NULL */
    bool strict;                    /* the load was strict */
    size_t n_file;                  /* tensors in the file */
    size_t n_model;                 /* model entries the load was for (not skipped) */
    size_t n_loaded;                /* entries copied, adapted ones included (0 when it failed) */
    size_t n_counters;              /* BatchNorm num_batches_tracked read */
    size_t n_skipped;               /* keys of the file left alone on purpose */
    size_t n_missing, n_unexpected, n_mismatched, n_adapted;
    kiln_load_key *missing, *unexpected, *mismatched, *adapted;
} kiln_load_report;

/* Frees the lists and zeroes r (NULL is fine). */
void kiln_load_report_free(kiln_load_report *r);
/* Prints r readably to out: a summary line, then each non-empty list, max_listed names each
 * (0: 10), "and N more" after them, then the hint. */
void kiln_load_report_print(const kiln_load_report *r, FILE *out, int max_listed);
/* True when r has a missing, unexpected or mis-shaped key (what strict refuses). */
bool kiln_load_report_has_problems(const kiln_load_report *r);

typedef enum kiln_key_map {
    KILN_KEY_UNMAPPED = 0, /* maps onto nothing: an unexpected key */
    KILN_KEY_MAPPED,       /* out holds the model's key */
    KILN_KEY_DROPPED,      /* left alone on purpose (fc.* for a body): counted in n_skipped */
} kiln_key_map;

typedef struct kiln_load_params {
    /* file key (wrapper stripped) -> model key in out (cap bytes). NULL: the same name. */
    kiln_key_map (*map)(const char *key, char *out, size_t cap, void *user);
    /* model key -> the name the file would use, for naming missing keys; NULL: the model's. */
    bool (*name)(const char *model_key, char *out, size_t cap, void *user);
    /* true: leave store entry i (kiln_store_at) as it is and ignore the file's key for it (a
       new head). A BatchNorm's counter follows the module's first entry. NULL: none. */
    bool (*skip)(const kiln_model *model, size_t i, void *user);
    /* a likely cause to report when keys do not fit (static text), or NULL, from the file and
       the report's lists; n_loadable: the entries that would load. NULL: none. */
    const char *(*hint)(const kiln_st_file *f, const kiln_load_report *r, size_t n_loadable, void *user);
    void *user;                     /* passed to the four functions */
    bool strict;                    /* any missing, unexpected or mis-shaped key fails */
    bool adapt_first_conv;          /* the first Conv2d (not skipped) may come from RGB weights */
    bool strip_wrappers;            /* "module." / "model." on every key and on no model key */
    const char *caller;             /* message prefix: "model_load" when NULL */
    const char *target;             /* "a ResNet body": "no key of FILE maps onto <target>";
                                       NULL: "the model" */
} kiln_load_params;
kiln_load_params kiln_load_default_params(void); /* same names, not strict, strip wrappers */

/* Loads what f holds into model as p says, filling report (may be NULL). Checks every key
 * before copying any: on an error the model is unchanged and the message names the keys. */
kiln_status kiln_model_load_mapped(kiln_model *model, const kiln_st_file *f, const kiln_load_params *p,
                                   kiln_load_report *report);
/* The same from a file: safetensors or a PyTorch .pth (kiln_weights_open tells them apart). */
kiln_status kiln_model_load_mapped_file(kiln_model *model, const char *path, const kiln_load_params *p,
                                        kiln_load_report *report);
/* kiln_model_load with a report (may be NULL). */
kiln_status kiln_model_load_report(kiln_model *model, const char *path, bool strict, kiln_load_report *report);
/* Weights a kiln model of the same arch saved (kiln_model_save, a learner's export) into all
 * of model but its head: the entries of layer group head_group (kiln_model_param_group; -1:
 * the last group) keep their values, so a model built for other classes starts from another's
 * body. The file's keys for the head are skipped; a missing, unexpected or mis-shaped key of
 * the rest is reported (report may be NULL) or, with strict, an error. */
kiln_status kiln_model_load_body(kiln_model *model, const char *path, int head_group, bool strict,
                                 kiln_load_report *report);
/* meta: NULL or a NULL-terminated list of key, value, ... (see kiln_st_save). */
kiln_status kiln_model_save(kiln_model *model, const char *path, const char *const *meta);
/* Adds the state dict to a writer as "<prefix><name>" (prefix may be NULL), the tensors
 * borrowed until it saves: what kiln_model_save writes, as one part of a larger file. */
kiln_status kiln_model_save_st(kiln_model *model, kiln_st_writer *w, const char *prefix);

/* BatchNorm's num_batches_tracked of every module in module order (0 for modules other
 * than BatchNorm): copies min(count, cap) into out (may be NULL) and returns the count.
 * set_counters puts them back (n must be that count: INVALID otherwise). */
size_t kiln_model_counters(const kiln_model *model, int64_t *out, size_t cap);
kiln_status kiln_model_set_counters(kiln_model *model, const int64_t *in, size_t n);

/* ---- modules ------------------------------------------------------------------------------ *
 * Constructors add a module under parent with the given name (NULL: the next index, "0",
 * "1", ... as nn.Sequential). Names must be unique among siblings and have no '.'. */

kiln_module *kiln_nn_sequential(kiln_module *parent, const char *name);
/* A container whose forward is fn; type names it in summaries ("BasicBlock"). user_bytes
 * of user are copied into the module (kiln_module_user), so they live with it. */
kiln_module *kiln_nn_custom(kiln_module *parent, const char *name, const char *type, kiln_forward_fn fn,
                            const void *user, size_t user_bytes);
/* Turns a Sequential or custom container (the root too) into a custom module. */
kiln_status kiln_module_set_forward(kiln_module *m, const char *type, kiln_forward_fn fn, const void *user,
                                    size_t user_bytes);

/* x (..., in) -> (..., out). weight (out, in), bias (out): U(+-1/sqrt(in)). */
kiln_module *kiln_nn_linear(kiln_module *parent, const char *name, int64_t in, int64_t out, bool bias);
/* x (N, in, H, W) -> (N, out, OH, OW). weight (out, in/groups, kh, kw), bias (out):
 * U(+-1/sqrt(fan_in)), fan_in = in/groups*kh*kw. p NULL = kiln_conv2d_default_params(). */
kiln_module *kiln_nn_conv2d(kiln_module *parent, const char *name, int64_t in, int64_t out, int kh, int kw,
                            const kiln_conv2d_params *p, bool bias);

typedef struct kiln_bn_params {
    float momentum; /* 0.1 */
    float eps;      /* 1e-5 */
    bool affine;    /* true: weight (C) = 1, bias (C) = 0 */
} kiln_bn_params;
kiln_bn_params kiln_bn_default_params(void);
/* BatchNorm1d: x (N, C) or (N, C, L); BatchNorm2d: x (N, C, H, W). Buffers running_mean
 * (C) = 0, running_var (C) = 1. p NULL = defaults. */
kiln_module *kiln_nn_batch_norm1d(kiln_module *parent, const char *name, int64_t c, const kiln_bn_params *p);
kiln_module *kiln_nn_batch_norm2d(kiln_module *parent, const char *name, int64_t c, const kiln_bn_params *p);
/* torch.nn.SyncBatchNorm.convert_sync_batchnorm for data-parallel training (kiln/dist.h):
 * every BatchNorm1d / BatchNorm2d module of model (those it has now) computes its
 * training-mode statistics over the batches of all ranks of c (kiln_sync_batch_norm(_relu)),
 * so every rank must run each training-mode forward and backward of the model together, as a
 * data-parallel learner does. c NULL or of one rank: per-rank statistics again
 * (kiln_batch_norm, bit for bit). Eval mode is unchanged (running statistics). c must
 * outlive the model's training forwards. NULL model: INVALID. */
kiln_status kiln_model_sync_batchnorm(kiln_model *model, kiln_comm *c);

/* idx (any shape, I64/I32) -> (idx..., dim). weight (n, dim): N(0, 1). */
kiln_module *kiln_nn_embedding(kiln_module *parent, const char *name, int64_t n, int64_t dim);

/* One batch-first LSTM layer as torch.nn.LSTM(input, hidden, batch_first=True): weights
 * weight_ih_l0 (4H, I), weight_hh_l0 (4H, H), bias_ih_l0, bias_hh_l0 (4H), all
 * U(+-1/sqrt(H)). The plain forward maps x (B, T, I) -> y (B, T, H) from zero state. */
kiln_module *kiln_nn_lstm(kiln_module *parent, const char *name, int64_t input, int64_t hidden, bool bias);
/* With explicit state: h0, c0 (B, H) or NULL for zeros; hn, cn (B, H) written when not NULL. */
kiln_tensor *kiln_lstm_module_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *h0,
                                      kiln_tensor *c0, kiln_tensor **hn, kiln_tensor **cn);

kiln_module *kiln_nn_dropout(kiln_module *parent, const char *name, float p); /* train mode only */
kiln_module *kiln_nn_relu(kiln_module *parent, const char *name);
kiln_module *kiln_nn_flatten(kiln_module *parent, const char *name); /* (N, ...) -> (N, prod) */
/* p NULL: kernel 2, stride 2 (nn.MaxPool2d(2)). */
kiln_module *kiln_nn_max_pool2d(kiln_module *parent, const char *name, const kiln_pool2d_params *p);
kiln_module *kiln_nn_avg_pool2d(kiln_module *parent, const char *name, const kiln_pool2d_params *p);
/* x (N, C, H, W) -> (N, C, oh, ow). */
kiln_module *kiln_nn_adaptive_avg_pool2d(kiln_module *parent, const char *name, int oh, int ow);
kiln_module *kiln_nn_adaptive_max_pool2d(kiln_module *parent, const char *name, int oh, int ow);
/* fastai AdaptiveConcatPool2d: x (N, C, H, W) -> (N, 2C, size, size), cat([max, avg], 1). */
kiln_module *kiln_nn_adaptive_concat_pool2d(kiln_module *parent, const char *name, int size);

/* Runs m's forward (checks the model is allocated). On failure the message gains
 * " [in <type> '<path>']" from the innermost module. Records the output shape. */
kiln_tensor *kiln_module_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x);
const char *kiln_module_path(const kiln_module *m); /* "layer1.0.conv1"; "" for the root */
const char *kiln_module_name(const kiln_module *m); /* last path component */
const char *kiln_module_type(const kiln_module *m); /* PyTorch class name: "Conv2d" */
kiln_module_kind kiln_module_kind_of(const kiln_module *m);
kiln_model *kiln_module_model(kiln_module *m);
bool kiln_module_training(const kiln_module *m);
int kiln_module_n_children(const kiln_module *m);
kiln_module *kiln_module_child_at(kiln_module *m, int i);
kiln_module *kiln_module_child(kiln_module *m, const char *name); /* NULL + message if absent */
/* A parameter or buffer by local name ("weight", "running_mean"); NULL if absent. */
kiln_tensor *kiln_module_param(kiln_module *m, const char *name);
void *kiln_module_user(kiln_module *m); /* custom modules' copied user data, else NULL */

/* ---- initialisation (after kiln_model_alloc; t contiguous f32) ------------------------------ */
kiln_status kiln_init_uniform(kiln_ctx *ctx, kiln_tensor *t, float lo, float hi);
kiln_status kiln_init_normal(kiln_ctx *ctx, kiln_tensor *t, float mean, float std);
kiln_status kiln_init_constant(kiln_tensor *t, float value);
/* fan_in = shape[1] * prod(shape[2:]), fan_out = shape[0] * prod(shape[2:]) as PyTorch. */
int64_t kiln_init_fan(const kiln_tensor *t, bool fan_out);
/* torch.nn.init.kaiming_normal_(t, a, mode, 'leaky_relu'): N(0, gain/sqrt(fan)),
 * gain = sqrt(2 / (1 + a^2)). a = 0 is the ReLU default fastai uses for heads. */
kiln_status kiln_init_kaiming_normal(kiln_ctx *ctx, kiln_tensor *t, float a, bool fan_out);
/* kaiming_uniform_: U(+-gain*sqrt(3/fan)). */
kiln_status kiln_init_kaiming_uniform(kiln_ctx *ctx, kiln_tensor *t, float a, bool fan_out);
/* fastai apply_init(m, kaiming_normal_): for every Linear, Conv2d and Embedding in m's
 * subtree (BatchNorm skipped), weight kaiming_normal_ (a = 0, fan_in), bias 0. */
kiln_status kiln_module_init_kaiming(kiln_module *m, kiln_ctx *ctx);

/* ---- model builders (src/nn/models/) ---------------------------------------------------------- */
/* The fastai lesson-7 ResNet-ish net for 28x28 images, the net of
 * /work/shared/reference/torch_fmnist.py with the same module names:
 *   Sequential(conv(n_in, 8), Res(8), conv(8, 16), Res(16), conv(16, 32), Res(32),
 *              conv(32, 16), Res(16), Conv2d(16, n_out, 3, 2, 1), BatchNorm2d(n_out), Flatten())
 * conv(ni, nf) = Sequential(Conv2d(ni, nf, 3, 2, 1, bias=False), BatchNorm2d(nf), ReLU());
 * Res(nf): x + c2(c1(x)), c1 and c2 = conv(nf, nf) with stride 1.
 * x (N, n_in, 28, 28) -> (N, n_out). Three layer groups: "0".."3", "4".."5", and the head
 * "6".."10" (the last conv stage with the classifier conv: what a pretrained learner makes anew).
 * Not allocated: call kiln_model_alloc. */
kiln_model *kiln_simple_cnn_new(int64_t n_in, int64_t n_out);
/* The fastai 2022 course's (part 2) ResNet for 28x28 images, with a 1x1 stride-2 conv (no
 * AvgPool2d) on downsampling shortcuts so it stays channels-last end to end:
 *   Sequential(ResBlock(n_in, 8, 1), ResBlock(8, 16, 2), ResBlock(16, 32, 2), ResBlock(32, 64, 2),
 *              ResBlock(64, 128, 2), ResBlock(128, 256, 2), Flatten(), Linear(256, n_out, bias=False),
 *              BatchNorm1d(n_out))
 * ResBlock(ni, nf, s): relu(convs(x) + idconv(x)), convs = Sequential(Conv2d(ni, nf, 3, 1, 1),
 * BatchNorm2d(nf), ReLU(), Conv2d(nf, nf, 3, s, 1), BatchNorm2d(nf)) and idconv =
 * Sequential(Conv2d(ni, nf, 1, s, 0), BatchNorm2d(nf)) or the identity when ni == nf and s == 1;
 * no conv or Linear has a bias. Keys "0.convs.0.weight", "1.idconv.1.running_mean", "7.weight".
 * x (N, n_in, H, W), H, W <= 32 -> (N, n_out). Three layer groups: "0".."2", "3".."4", and the
 * head "5".."8" (the last stride-2 block with the classifier: what a pretrained learner makes
 * anew; src/nn/models/simple_resnet.c says why).
 * Not allocated: call kiln_model_alloc. */
kiln_model *kiln_simple_resnet_new(int64_t n_in, int64_t n_out);
/* A small MLP for tests: for each hidden size h: Linear(prev, h), [BatchNorm1d(h) if bn],
 * ReLU, [Dropout(p) if p > 0]; then Linear(prev, n_out). x (N, n_in) -> (N, n_out).
 * Two layer groups: everything but the last Linear, and the last Linear. Not allocated. */
kiln_model *kiln_mlp_new(int64_t n_in, int n_hidden, const int64_t *hidden, int64_t n_out, float p, bool bn);

#ifdef __cplusplus
}
#endif
#endif
