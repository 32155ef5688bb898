/* Internal to src/optim: the optimizer's layout, shared by optim.c (construction, groups,
 * marks, state access) and step.c (the update loops and gradient clipping). */
#ifndef KILN_OPTIM_INTERNAL_H
#define KILN_OPTIM_INTERNAL_H

#include "core/internal.h"
#include "kiln/optim.h"

#define KILN__OPTIM_MAX_STATE 2 /* flat f32 state buffers: Adam's two moments */

struct kiln_optim {
    kiln_optim_kind kind;
    int n_threads;         /* threads of the update loops (kiln_optim_set_threads) */
    kiln_store *store;
    size_t n;              /* store entries (kiln_store_count) */
    size_t numel;          /* elements of the store's params buffer */
    float *params, *grads; /* the store's flat buffers */
    /* per store entry; t[i] is NULL for buffers */
    kiln_tensor **t;
    size_t *off, *len;     /* offset and numel within the params buffer */
    int *group;
    bool *no_wd;
    bool *sparse;          /* the lazy step of kiln_optim_set_sparse (rows tracked by the store) */
    int64_t *step;
    /* groups */
    kiln_optim_group *groups;
    int n_groups, cap_groups;
    /* hyper-parameters shared by all groups */
    double dampening;      /* SGD */
    bool nesterov;         /* SGD */
    double beta2, eps;     /* Adam */
    bool decoupled_wd, bn_bias_wd;
    /* flat state buffers, params layout, of elements [lo, hi) of the params buffer only
     * (kiln_optim_set_shard, ZeRO-1; [0, numel) unless sharded): element j of the params
     * buffer has its state at state[k][j - lo] */
    size_t lo, hi;
    int n_state;
    float *state[KILN__OPTIM_MAX_STATE];
    const char *state_name[KILN__OPTIM_MAX_STATE];
};

/* One update's scalars, formed in double and rounded where PyTorch rounds them (step.c). */
typedef struct kiln__sgd_h {
    float neg_lr;   /* -lr */
    float decay;    /* 1 - lr*wd (decoupled) */
    float l2;       /* wd (coupled) */
    float mom;      /* momentum */
    float damp1;    /* 1 - dampening */
    bool decoupled, use_l2, use_mom, first, nesterov;
} kiln__sgd_h;

typedef struct kiln__adam_h {
    float decay;        /* 1 - lr*wd (decoupled) */
    float l2;           /* wd (coupled) */
    float b1, omb1;     /* beta1, 1 - beta1 */
    float b2, omb2;     /* beta2, 1 - beta2 */
    float bc2_sqrt;     /* sqrt(1 - beta2^t) */
    float eps;
    float neg_step;     /* -lr / (1 - beta1^t) */
    bool decoupled, use_l2;
} kiln__adam_h;

/* The element loops over n contiguous elements (step_loops.c, vectorised, one thread). */
void kiln__sgd_run(float *restrict p, const float *restrict g, float *restrict buf, int64_t n, const kiln__sgd_h *h);
void kiln__adam_run(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, int64_t n,
                    const kiln__adam_h *h);

/* Whether the state holds a part of the params buffer only (kiln_optim_set_shard). */
static inline bool kiln__optim_sharded(const kiln_optim *opt) { return opt->lo != 0 || opt->hi != opt->numel; }

/* Bytes of a state buffer of n elements (one float at least, so an empty one is allocated). */
static inline size_t kiln__optim_state_bytes(size_t n) { return (n ? n : 1) * sizeof(float); }

/* Validation of one hyper-parameter; `who` starts the message ("sgd", "adam", "optim"). */
kiln_status kiln__optim_check_lr(const char *who, double lr);
kiln_status kiln__optim_check_mom(const char *who, const char *field, double mom);
kiln_status kiln__optim_check_wd(const char *who, double wd);

#endif
