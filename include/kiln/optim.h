/* kiln optim: SGD and Adam/AdamW over the parameters of a kiln_store, with parameter groups
 * (fastai layer groups) that carry their own lr, momentum and weight decay, a per-parameter
 * "no weight decay" mark (fastai wd_bn_bias=False), frozen parameters, gradient clipping by
 * global norm, and access to the optimizer state for checkpoints.
 *
 * The update rules follow PyTorch 1.13 operation for operation (torch.optim.SGD, Adam, AdamW
 * with foreach=False, in f32; the hyper-parameter arithmetic in double as Python does), and
 * tests/test_optim.c compares ten steps of each against tensors PyTorch wrote.
 *
 * Ownership: an optimizer borrows its store (which must be allocated, kiln_store_alloc) and
 * must not outlive it. Its state (moments, momentum buffers, step counts) is owned by the
 * optimizer: flat f32 buffers with the same layout as the store's params buffer
 * (kiln_store_flat(KILN_STORE_PARAMS)), so a step is one loop per parameter.
 *
 * Parameters are named by their store index (kiln_store_at / kiln_store_is_param); indices of
 * buffers are rejected where a parameter is required.
 *
 * Skipped parameters: a step leaves a parameter and its state untouched when the parameter's
 * requires_grad is false (fastai freeze, which keeps BatchNorm trainable by leaving its
 * parameters' requires_grad on) or when its group is frozen (every parameter of the group,
 * BatchNorm included). Unlike PyTorch, kiln cannot tell a zero gradient from a missing one:
 * a trainable parameter that took no part in the loss still gets momentum and weight decay
 * (unless its step is sparse, kiln_optim_set_sparse below: an option for embedding tables). */
#ifndef KILN_OPTIM_H
#define KILN_OPTIM_H

#include "kiln/core.h"
#include "kiln/io.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_optim kiln_optim;

typedef enum kiln_optim_kind {
    KILN_OPTIM_KIND_SGD = 0,
    KILN_OPTIM_KIND_ADAM, /* Adam with L2 or AdamW with decoupled weight decay */
} kiln_optim_kind;

/* torch.optim.SGD:  g = grad + wd*p (L2);  buf = g on the first momentum step, else
 * buf = mom*buf + (1-dampening)*g;  g = nesterov ? g + mom*buf : buf;  p -= lr*g.
 * With decoupled_wd the L2 term is replaced by p *= 1 - lr*wd before the update (fastai's
 * SGD with decouple_wd=True). Momentum 0 skips the buffer (it is neither read nor changed). */
typedef struct kiln_sgd_params {
    double lr;           /* 0.01 (PyTorch has no default) */
    double momentum;     /* 0, in [0, 1) */
    double dampening;    /* 0, in [0, 1] */
    bool nesterov;       /* false; needs momentum > 0 and dampening 0 */
    double weight_decay; /* 0 */
    bool decoupled_wd;   /* false: L2, PyTorch SGD weight_decay */
    bool bn_bias_wd;     /* false: no weight decay on parameters marked no-wd (see below) */
} kiln_sgd_params;

/* torch.optim.Adam / AdamW, per parameter with its own step count t:
 *   p *= 1 - lr*wd (decoupled) | g = grad + wd*p (L2)
 *   m = beta1*m + (1-beta1)*g;  v = beta2*v + (1-beta2)*g*g
 *   p -= lr/(1-beta1^t) * m / (sqrt(v)/sqrt(1-beta2^t) + eps)
 * beta1 is the group's momentum (one-cycle moves it); bias correction uses its current value.
 * Defaults are fastai's Adam: betas (0.9, 0.99), eps 1e-5, wd 0.01 decoupled (true_wd). */
typedef struct kiln_adam_params {
    double lr;           /* 1e-3 */
    double beta1;        /* 0.9, in [0, 1) */
    double beta2;        /* 0.99, in [0, 1) */
    double eps;          /* 1e-5, >= 0 */
    double weight_decay; /* 0.01 */
    bool decoupled_wd;   /* true: AdamW; false: Adam with L2 */
    bool bn_bias_wd;     /* false: no weight decay on parameters marked no-wd (see below) */
} kiln_adam_params;

kiln_sgd_params kiln_sgd_default_params(void);
kiln_adam_params kiln_adam_default_params(void);

/* A new optimizer over every parameter of s (allocated). All parameters start in group 0,
 * whose lr/momentum/wd come from p; no parameter is marked no-wd. NULL + message on bad
 * parameters ("adam: beta1 1 outside [0, 1)"), an unallocated store or out of memory. */
kiln_optim *kiln_optim_new_sgd(kiln_store *s, const kiln_sgd_params *p);
kiln_optim *kiln_optim_new_adam(kiln_store *s, const kiln_adam_params *p);
void kiln_optim_free(kiln_optim *opt);
kiln_optim_kind kiln_optim_get_kind(const kiln_optim *opt);
const char *kiln_optim_kind_name(kiln_optim_kind k); /* "sgd", "adam" */
kiln_store *kiln_optim_store(const kiln_optim *opt);

/* ---- parameter groups (layer groups) ---------------------------------------------------- *
 * Group hyper-parameters; mom is SGD momentum or Adam beta1. A frozen group is skipped by
 * kiln_optim_step. Setters validate as the constructors do and take a group index or
 * KILN_OPTIM_ALL_GROUPS; an index out of range is INVALID ("optim: unknown group 3 (2 groups)"). */
#define KILN_OPTIM_ALL_GROUPS (-1)

typedef struct kiln_optim_group {
    double lr;
    double mom;
    double wd;
    bool frozen;
} kiln_optim_group;

int kiln_optim_n_groups(const kiln_optim *opt);
/* Appends a group with hyper-parameters h (NULL: a copy of group 0, not frozen); returns its
 * index, or -1 + message. */
int kiln_optim_add_group(kiln_optim *opt, const kiln_optim_group *h);
/* Puts one parameter (store index) in group g. */
kiln_status kiln_optim_set_group(kiln_optim *opt, size_t param_index, int g);
/* Sets the number of groups to n_groups (new ones copy group 0, dropped ones are forgotten)
 * and puts parameter i in group[i]; group has kiln_store_count entries, those of buffers are
 * ignored. Nothing changes on error. */
kiln_status kiln_optim_set_groups(kiln_optim *opt, int n_groups, const int *group);
/* Puts every parameter whose name starts with prefix in group g; INVALID when none does. */
kiln_status kiln_optim_set_group_by_prefix(kiln_optim *opt, const char *prefix, int g);
/* The group of a parameter, -1 + message for a bad index. */
int kiln_optim_group_of(const kiln_optim *opt, size_t param_index);
kiln_status kiln_optim_get_group(const kiln_optim *opt, int g, kiln_optim_group *out);
kiln_status kiln_optim_set_lr(kiln_optim *opt, int g, double lr);   /* lr >= 0 */
kiln_status kiln_optim_set_mom(kiln_optim *opt, int g, double mom); /* [0, 1) */
kiln_status kiln_optim_set_wd(kiln_optim *opt, int g, double wd);   /* >= 0 */
kiln_status kiln_optim_set_frozen(kiln_optim *opt, int g, bool frozen);

/* ---- no weight decay on BatchNorm parameters and biases (fastai wd_bn_bias=False) --------- *
 * While bn_bias_wd is false, a parameter marked no-wd gets no weight decay (neither L2 nor
 * decoupled); with bn_bias_wd true the marks are ignored. The caller marks parameters, either
 * one by one or with the name rule: a parameter is marked when
 * (a "word" below is the component itself or it followed by digits or "_...")
 *   - its last name component is the word "bias" ("fc.bias", "bias", LSTM "bias_ih_l0"), or
 *   - some component is the word "bn" ("bn1.weight", "layer1.0.bn2.bias", "bn_final.weight"),
 *   - or some component is the word "norm" ("norm.weight", "encoder.norm1.bias"),
 *   - or, with also_1d, it has at most one dimension (timm's rule; catches BatchNorm layers
 *     named by position, "downsample.1.weight" or fastai heads "1.2.weight").
 * The name rule only adds marks; it returns how many parameters are marked afterwards. */
kiln_status kiln_optim_set_no_wd(kiln_optim *opt, size_t param_index, bool no_wd);
bool kiln_optim_is_no_wd(const kiln_optim *opt, size_t param_index);
size_t kiln_optim_mark_no_wd_by_name(kiln_optim *opt, bool also_1d);
/* The name rule alone (no 1-D test), for callers that build their own marks. */
bool kiln_optim_name_is_no_wd(const char *name);

/* ---- stepping ---------------------------------------------------------------------------- */

/* One update of every trainable parameter from its ->grad. */
kiln_status kiln_optim_step(kiln_optim *opt);
/* Threads of the update loops. An optimizer belongs to no context: it starts with the
 * count a context with n_threads = 0 gets (OMP_NUM_THREADS if set, else all cores); give
 * it the context's count (kiln_ctx_threads) to keep a training run on that many. n = 0
 * means that default again. The result does not depend on the count. */
kiln_status kiln_optim_set_threads(kiln_optim *opt, int n);
int kiln_optim_threads(const kiln_optim *opt);
/* Zeroes the grads of the parameters with requires_grad (a frozen parameter's grad slice is
 * left as it is: kiln_store_zero_grad zeroes them all). */
void kiln_optim_zero_grad(kiln_optim *opt);
/* Forgets all state (moments, momentum buffers, step counts), as a new optimizer would have;
 * fastai v2 does this on freeze/unfreeze. Hyper-parameters, groups and marks are kept. */
void kiln_optim_clear_state(kiln_optim *opt);

/* torch.nn.utils.clip_grad_norm_(params, max_norm): the 2-norm of all gradients of
 * parameters with requires_grad, as if concatenated (summed in double, in fixed chunks so
 * the result does not depend on the thread count; threads: the default count, as a new
 * optimizer's); when coef = max_norm/(norm + 1e-6) is
 * below 1 (or NaN, as PyTorch's clamp gives) every such gradient is multiplied by (f32)coef.
 * total_norm (may be NULL) receives the norm before clipping. max_norm must be > 0. */
kiln_status kiln_clip_grad_norm(kiln_store *s, double max_norm, double *total_norm);

/* ---- sparse (lazy) Adam steps for embedding tables: an option, off by default ------------- *
 * kiln_optim_set_sparse(opt, i, true) gives parameter i (a store index, or
 * KILN_OPTIM_ALL_PARAMS: every parameter) the lazy step of torch.optim.SparseAdam / TF's
 * LazyAdam: a step updates only the rows (slices along the first dimension) that a gradient
 * reached since the last zero_grad. The store tracks them: kiln_embedding's backward lists the
 * rows its indices named; any other gradient into the parameter (a dense op, a tied decoder,
 * an embedding over a view of it) counts as every row, so such a parameter steps as dense Adam
 * does. Hence the application layer's one call,
 *     kiln_optim_set_sparse(opt, KILN_OPTIM_ALL_PARAMS, true);
 * right after creating the optimizer, makes lazy exactly the tables read by kiln_embedding
 * alone (collab's user / item factors and biases, a tabular model's embeddings) and leaves
 * every other parameter's step as it was.
 * How a lazy step differs from the dense Adam / AdamW step (the default, fastai's):
 *   - a row that got gradient takes exactly the dense update: weight decay (decoupled or L2),
 *     both moments, bias correction with the parameter's step count t, which counts every step
 *     of the parameter, not the steps that touched the row (as LazyAdam and SparseAdam do);
 *   - a row that got none does not change at all: no weight decay (dense AdamW shrinks it by
 *     1 - lr*wd), its moments are not decayed (dense: m *= beta1, v *= beta2), and it takes no
 *     step on its old momentum (dense moves it by -lr*m_hat/(sqrt(v_hat) + eps) even at a zero
 *     gradient). A parameter no gradient reached in a step does not change (t still counts);
 *   - so it equals the dense step bit for bit when every row gets gradient every step
 *     (tests/test_optim_sparse.c), and drifts from it as rows go untouched: with wd 0.1 a rarely
 *     seen item keeps its weights where dense AdamW would shrink them every step.
 * zero_grad zeroes only the listed rows (the others hold zeros already). The state (exp_avg,
 * exp_avg_sq, step) keeps the dense layout and saves and loads as before; the flag itself is
 * not state: set it again on an optimizer made to resume, and the run continues bit for bit.
 * Adam only (INVALID for SGD). Freeing the optimizer stops the tracking; one sparse optimizer
 * per store. */
#define KILN_OPTIM_ALL_PARAMS ((size_t)-1)
kiln_status kiln_optim_set_sparse(kiln_optim *opt, size_t param_index, bool sparse);
bool kiln_optim_is_sparse(const kiln_optim *opt, size_t param_index);

/* ---- ZeRO-1: the state of a range of the parameters only ------------------------------------ *
 * kiln_optim_set_shard(opt, lo, hi) makes the optimizer keep its f32 state (Adam's moments,
 * SGD's momentum buffer) for elements [lo, hi) of the store's flat params buffer only: buffers
 * of hi - lo floats instead of the params' count (DeepSpeed's stage 1, llm.c's zero_stage 1:
 * with N ranks each owning 1/N, the state per rank is cut by N). The state already held for
 * elements inside the new range is kept, the rest dropped (zeros, as a new optimizer's).
 * kiln_optim_step then updates only those elements: each trainable parameter intersected with
 * the range, with its group's hyper-parameters, giving on them bit for bit what the whole step
 * gives; the rest of the params are left as they are (another rank updates them, then the
 * ranks exchange the parts: kiln_comm_allgatherv_f32). The step counts ("step", one per store
 * entry) stay whole and count every step of the parameter on every shard alike, so every
 * shard of one run has the same counts. lo == 0, hi == the params' count is the plain
 * optimizer again (state outside the old range is zero). Refused (INVALID, naming the
 * parameter) while a parameter has the sparse step, and kiln_optim_set_sparse refuses a
 * sharded optimizer; an empty range (lo == hi) holds no state and updates nothing.
 * State access on a sharded optimizer: kiln_optim_state_at gives the f32 entries' parts
 * (numel hi - lo, element j of the params at data[j - lo]); kiln_optim_state_load takes the
 * part or the whole buffer (and keeps the part); a checkpoint (save_st / check_st / load_st)
 * always holds the whole state in the plain layout: check_st and load_st read a file's whole
 * buffers and keep the part, save_st refuses (STATE) until the whole state is back (the
 * learner's ZeRO gathers it to the rank that writes: include/kiln/learn.h). */
kiln_status kiln_optim_set_shard(kiln_optim *opt, size_t lo, size_t hi);
/* The range held, [*lo, *hi) (either may be NULL); whether it is a part (sharded). */
bool kiln_optim_shard(const kiln_optim *opt, size_t *lo, size_t *hi);
/* Elements of the store's params buffer (the whole range). */
size_t kiln_optim_numel(const kiln_optim *opt);

/* ---- state, for checkpoints --------------------------------------------------------------- *
 * SGD has "momentum_buffer", Adam "exp_avg" and "exp_avg_sq": f32, kiln_store_flat(PARAMS)
 * layout (numel = params numel). Both have "step": i64, one per store entry (kiln_store_count;
 * 0 for buffers): Adam's bias-correction step t; for SGD the number of steps that updated
 * the momentum buffer (0 = empty, so the next momentum step copies the gradient in, as
 * PyTorch does when momentum_buffer is None). Saving these entries and loading them into an
 * optimizer of the same kind over a store of the same layout (with the same hyper-parameters)
 * continues training bit for bit. */
typedef struct kiln_optim_state {
    const char *name;
    kiln_dtype dtype; /* KILN_DTYPE_F32 or KILN_DTYPE_I64 ("step") */
    void *data;       /* owned by the optimizer, writable; valid until kiln_optim_free */
    size_t numel;
} kiln_optim_state;

size_t kiln_optim_state_count(const kiln_optim *opt);
kiln_status kiln_optim_state_at(kiln_optim *opt, size_t i, kiln_optim_state *out);
/* Copies numel elements of dtype into the state entry called name, checking both (and that
 * steps are >= 0). INVALID + message naming the entry on any mismatch; nothing copied then. */
kiln_status kiln_optim_state_load(kiln_optim *opt, const char *name, kiln_dtype dtype,
                                  const void *data, size_t numel);

/* ---- the optimizer in a checkpoint (safetensors) -------------------------------------------- *
 * save_st adds, under prefix p ("optim"): tensors "<p>.<state name>" (the entries above,
 * borrowed until the writer saves) and metadata "<p>" = JSON {"kind": "adam", "groups":
 * [{"lr": .., "mom": .., "wd": .., "frozen": false}, ...]} (doubles exactly). check_st checks
 * a file's part against opt: the kind and the number of groups (INVALID), every group's
 * lr, mom and wd (required, in range; "frozen" defaults to false) and every state tensor's
 * dtype and size, steps >= 0; errors name the file and the key, unknown keys are ignored with
 * a warning. load_st checks, then copies the state and the groups' hyper-parameters into
 * opt; nothing changes on error. */
kiln_status kiln_optim_save_st(kiln_optim *opt, kiln_st_writer *w, const char *prefix);
kiln_status kiln_optim_check_st(const kiln_optim *opt, const kiln_st_file *f, const char *prefix);
kiln_status kiln_optim_load_st(kiln_optim *opt, const kiln_st_file *f, const char *prefix);

#ifdef __cplusplus
}
#endif
#endif
