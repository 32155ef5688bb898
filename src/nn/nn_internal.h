/* Internal to src/nn: the layout of models and modules and the helpers constructors use to
 * add a module to the tree and declare its parameters. Names start with kiln__nn_. */
#ifndef KILN_NN_INTERNAL_H
#define KILN_NN_INTERNAL_H

#include "core/internal.h"
#include "kiln/nn.h"

typedef kiln_status (*kiln__nn_init_fn)(kiln_module *m, kiln_ctx *ctx);

struct kiln_module {
    kiln_module_kind kind;
    char *type;                  /* "Conv2d" (owned copy) */
    char *path;                  /* "layer1.0.conv1", "" for the root */
    const char *name;            /* points into path: the last component */
    kiln_model *model;
    kiln_module *parent;
    kiln_module **child;
    int n_child, cap_child;
    kiln_forward_fn forward;
    kiln__nn_init_fn init;       /* runs at kiln_model_alloc, may be NULL */
    size_t index;                /* in model->mods (declaration order) */
    size_t first_entry;          /* store count when the module was declared */

    /* parameters and buffers, NULL when absent (LSTM: weight = weight_ih_l0, bias = bias_ih_l0) */
    kiln_tensor *weight, *bias, *weight_hh, *bias_hh;
    kiln_tensor *running_mean, *running_var;
    int64_t num_batches_tracked; /* BatchNorm: train-mode forwards, saved as torch does */

    /* configuration (which fields mean something depends on kind) */
    int64_t in, out;             /* Linear in/out, Conv2d channels, BN C, Embedding n/dim, LSTM I/H */
    int kh, kw;
    kiln_conv2d_params conv;
    kiln_pool2d_params pool;
    int oh, ow;
    float p;                     /* Dropout */
    kiln_bn_params bn;
    kiln_comm *comm;             /* BatchNorm: statistics over its ranks (kiln_model_sync_batchnorm), else NULL */

    void *user;                  /* custom: copy of the user data */
    size_t user_bytes;
    void *state;                 /* what a module keeps between forwards (an RNN's hidden state) */
    void (*state_free)(void *state);

    int out_ndim;                /* shape of the last output, -1 before any forward */
    int64_t out_shape[KILN_MAX_DIMS];
};

struct kiln_model {
    kiln_store *store;
    kiln_module *root;
    kiln_module **mods;          /* declaration order */
    size_t n_mods, cap_mods;
    kiln_module **owner;         /* per store entry */
    int *group;                  /* per store entry */
    size_t cap_entries;
    int n_groups;
    int frozen_to;               /* the last freeze_to, in [0, n_groups] (0: not frozen) */
    bool allocated, training, train_bn;
    bool channels_last;          /* 4-D inputs are converted to channels-last (NHWC) */
    kiln_status build_status;    /* first constructor failure, OK when none */
    char build_msg[1024];
};

/* Adds a module under parent (NULL name: the next index). NULL + message on error; the
 * model remembers the first failure for kiln_model_alloc. */
kiln_module *kiln__nn_add(kiln_module *parent, const char *name, kiln_module_kind kind, const char *type,
                          kiln_forward_fn forward, kiln__nn_init_fn init);
/* Declares "<path>.<local>" in the store as a parameter (or buffer) owned by m. */
kiln_tensor *kiln__nn_param(kiln_module *m, const char *local, int ndim, const int64_t *shape, bool buffer);
/* Records a constructor failure (the current message) in the model and returns NULL. */
void *kiln__nn_fail(kiln_model *model);
/* Sets the message, records it as the model's first failure and returns NULL. */
void *kiln__nn_err(kiln_model *model, kiln_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* True when m's subtree contains sub (m itself included). */
bool kiln__nn_contains(const kiln_module *m, const kiln_module *sub);
/* BatchNorm1d/2d module m's forward (train flag, running statistics, momentum, eps, affine
 * or not); relu: relu(bn(x)) as one op (kiln_batch_norm_relu). */
kiln_tensor *kiln__nn_batch_norm_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x, bool relu);
/* Sequential's forward: the children in order, a BatchNorm directly followed by a ReLU as
 * one fused op. */
kiln_tensor *kiln__nn_sequential_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x);
/* Appends a copy of *k (its names copied) to a report list; NOMEM with a message. */
kiln_status kiln__load_report_add(kiln_load_key **list, size_t *n, const kiln_load_key *k);
/* The report's missing, unexpected, mis-shaped and adapted lists on out, max_listed names
 * each: "; "-separated on one line (an error message) or one indented line each. */
void kiln__load_report_lists(const kiln_load_report *r, FILE *out, int max_listed, bool one_line);
/* Frees one module (not its children). */
void kiln__nn_module_free(kiln_module *m);

/* models/head.c: fastai v2's BatchNorm(nf, ndim=1) init (its heads' and LinBnDrop's): weight 1,
 * bias 1e-3, running statistics as PyTorch's. A kiln_module init. */
kiln_status kiln__bn_init_fastai(kiln_module *m, kiln_ctx *ctx);

#endif
