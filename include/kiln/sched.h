/* kiln sched: learning-rate and momentum schedules as pure functions of the iteration.
 *
 * A schedule is a plain value (kiln_sched) made by one constructor per policy; the Learner,
 * `kiln schedule` and the plots all ask kiln_sched_at(&s, iter, &lr, &mom), so what is
 * plotted is what is trained. Iterations count training batches from 0; iteration i is the
 * batch that runs with the returned lr and momentum. Nothing is allocated; a kiln_sched can
 * be copied, saved and shared between threads.
 *
 * Each policy mirrors one reference implementation exactly (the tests compare with it):
 *   const         a constant lr
 *   exp           LR range test: start*(end/start)^(i/N) (fastai SchedExp; lr_find)
 *   sgdr          fastai v2 fit_sgdr, or fastai 0.7 CosAnneal with its warm-up
 *   cos_restarts  PyTorch CosineAnnealingWarmRestarts, stepped by (fractional) epoch
 *   clr           PyTorch CyclicLR (triangular, triangular2, exp_range; inverse momentum)
 *   one_cycle     fastai v2 fit_one_cycle, fastai v1 fit_one_cycle or PyTorch OneCycleLR
 *   stlr          slanted triangular LR (ULMFiT)
 *   step          lr*gamma^floor(iter/step)
 * and any of them can be wrapped in a linear warm-up (kiln_sched_warmup).
 *
 * Discriminative learning rates (kiln_lr_spread) and the lr_find helpers (loss smoothing,
 * the divergence test, suggestions) are pure functions over arrays, also here. */
#ifndef KILN_SCHED_H
#define KILN_SCHED_H

#include "kiln/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kiln_sched_policy {
    KILN_SCHED_POLICY_CONST = 0,
    KILN_SCHED_POLICY_EXP,
    KILN_SCHED_POLICY_SGDR,
    KILN_SCHED_POLICY_COS_RESTARTS,
    KILN_SCHED_POLICY_CLR,
    KILN_SCHED_POLICY_ONE_CYCLE,
    KILN_SCHED_POLICY_STLR,
    KILN_SCHED_POLICY_STEP,
    KILN_SCHED_POLICY_COUNT
} kiln_sched_policy;

/* "const", "exp", "sgdr", "cos-restarts", "clr", "one-cycle", "stlr", "step". */
const char *kiln_sched_policy_name(kiln_sched_policy p);
/* The inverse of kiln_sched_policy_name (INVALID + message for an unknown name). */
kiln_status kiln_sched_policy_parse(const char *name, kiln_sched_policy *out);

/* ---- per-policy parameters ------------------------------------------------------------ *
 * Every struct has a kiln_sched_<policy>_default_params(); `iters` is the number of
 * training iterations the schedule is meant for (kiln_sched_total). `mom` is the momentum
 * of policies that do not cycle it. */

typedef struct kiln_sched_const_params {
    double lr;     /* 1e-3 */
    double mom;    /* 0.9 */
    int64_t iters; /* 100 */
} kiln_sched_const_params;

typedef struct kiln_sched_exp_params {
    double start_lr, end_lr; /* 1e-7, 10 (fastai v1/v2 lr_find) */
    int64_t iters;           /* N = num_it, 100 */
    bool linear;             /* false; true: start + (end-start)*i/N (Lightning's linear mode) */
    double mom;              /* 0.9 */
} kiln_sched_exp_params;

/* SGDR: cycle k (0-based) lasts nb_k = iters_per_epoch*cycle_len*cycle_mult^k iterations and
 * anneals lr*(1+cos(pi*t/nb_k))/2 from lr to ~0 (no floor). fastai v2 fit_sgdr with
 * warmup07 = false (cycle_mult = 1 is allowed here; v2 divides by zero there); fastai 0.7
 * CosAnneal with warmup07 = true: iterations i < nb_k/20 run at lr/100 and still count
 * toward the cycle (so the first cycle skips the top of the cosine). */
typedef struct kiln_sched_sgdr_params {
    double lr;               /* peak lr, 1e-3 */
    int64_t iters_per_epoch; /* 100 */
    int n_cycle;             /* 3 */
    int cycle_len;           /* epochs in the first cycle, 1 */
    int cycle_mult;          /* 2 (fastai v2; 0.7's default was 1) */
    bool warmup07;           /* false */
    double mom;              /* 0.9 */
} kiln_sched_sgdr_params;

/* PyTorch CosineAnnealingWarmRestarts: lr = eta_min + (lr - eta_min)(1 + cos(pi*T_cur/T_i))/2
 * with T_0, T_i in epochs. Iteration i is at epoch i/iters_per_epoch (fractional, i.e.
 * scheduler.step(i/iters_per_epoch) before batch i, as fastai users call it) or, with
 * per_epoch, at floor(i/iters_per_epoch) (scheduler.step() once per epoch). For T_0 counted
 * in iterations (scheduler.step() per batch) use per_epoch with iters_per_epoch = 1. */
typedef struct kiln_sched_cos_restarts_params {
    double lr;               /* base lr, 1e-3 */
    int64_t t0;              /* T_0 epochs, 1 */
    int64_t t_mult;          /* T_mult >= 1, 2 */
    double eta_min;          /* 0 */
    int64_t iters_per_epoch; /* 100 */
    int64_t epochs;          /* 7 (three cycles 1+2+4) */
    bool per_epoch;          /* false */
    double mom;              /* 0.9 */
} kiln_sched_cos_restarts_params;

typedef enum kiln_clr_mode {
    KILN_CLR_MODE_TRIANGULAR = 0, /* scale 1 */
    KILN_CLR_MODE_TRIANGULAR2,    /* scale 1/2^(cycle-1) */
    KILN_CLR_MODE_EXP_RANGE,      /* scale gamma^iter */
} kiln_clr_mode;

/* PyTorch CyclicLR (scale_fn from the mode). With cycle_momentum the momentum moves
 * inversely to the lr between max_momentum (at base_lr) and base_momentum (at max_lr);
 * without it the momentum stays at max_momentum. */
typedef struct kiln_sched_clr_params {
    double base_lr, max_lr;       /* 1e-3, 6e-3 (Smith 2015, CIFAR-10) */
    double step_size_up;          /* iterations from base to max, 2000 */
    double step_size_down;        /* iterations back; 0 = step_size_up */
    kiln_clr_mode mode;           /* triangular */
    double gamma;                 /* exp_range only, 1.0 */
    bool cycle_momentum;          /* true */
    double base_momentum;         /* 0.8 */
    double max_momentum;          /* 0.9 */
    int64_t iters;                /* 0 = one cycle, ceil(step_size_up + step_size_down) */
} kiln_sched_clr_params;

typedef enum kiln_one_cycle_variant {
    KILN_ONE_CYCLE_VARIANT_FASTAI = 0, /* fastai v2 fit_one_cycle (per batch, pct_train) */
    KILN_ONE_CYCLE_VARIANT_FASTAI1,    /* fastai v1 OneCycleScheduler (a1 = int(n*pct)) */
    KILN_ONE_CYCLE_VARIANT_TORCH,      /* PyTorch OneCycleLR */
} kiln_one_cycle_variant;

/* One-cycle: lr rises from lr_max/div to lr_max during pct_start of the iterations, then
 * falls to the final lr; momentum moves moms[0] -> moms[1] -> moms[2] the opposite way.
 * final_div keeps each library's meaning: final lr = lr_max/final_div for fastai v2
 * (div_final, 1e5) and v1 (final_div, default div*1e4), initial_lr/final_div for PyTorch
 * (final_div_factor, 1e4). three_phase and linear (anneal_strategy='linear') are PyTorch
 * options; in three_phase the momentum phases are moms[0]->moms[1]->moms[2], then moms[2]. */
typedef struct kiln_sched_one_cycle_params {
    kiln_one_cycle_variant variant;
    double lr_max;     /* 1e-3 */
    int64_t iters;     /* n_epoch * iters_per_epoch (PyTorch total_steps), 100 */
    double pct_start;  /* 0.25 (fastai) / 0.3 (fastai1, torch) */
    double div;        /* 25 */
    double final_div;  /* 1e5 (fastai) / 0 = div*1e4 (fastai1) / 1e4 (torch) */
    double moms[3];    /* {0.95, 0.85, 0.95}; torch: {max_momentum, base_momentum, max} */
    bool cycle_momentum; /* true; false: momentum stays at moms[0] */
    bool three_phase;  /* torch only, false */
    bool linear;       /* torch only, false = cosine */
} kiln_sched_one_cycle_params;

/* The defaults of one variant (pct_start, final_div differ). */
kiln_sched_one_cycle_params kiln_sched_one_cycle_default_params(kiln_one_cycle_variant v);

/* ULMFiT slanted triangular LR over T = iters: cut = floor(T*cut_frac); p = t/cut before
 * the cut, 1 - (t-cut)/(cut*(1/cut_frac - 1)) after; lr = lr_max*(1 + p*(ratio-1))/ratio.
 * Past T the lr holds its value at T (lr_max/ratio when T*cut_frac is whole). */
typedef struct kiln_sched_stlr_params {
    double lr_max;   /* 0.01 */
    int64_t iters;   /* T, 1000 */
    double cut_frac; /* 0.1 */
    double ratio;    /* 32 */
    double mom;      /* 0.9 */
} kiln_sched_stlr_params;

typedef struct kiln_sched_step_params {
    double lr;     /* 0.1 */
    double gamma;  /* 0.1 */
    int64_t step;  /* iterations between decays, 30 */
    int64_t iters; /* 100 */
    double mom;    /* 0.9 */
} kiln_sched_step_params;

/* ---- the schedule --------------------------------------------------------------------- */

typedef struct kiln_sched {
    kiln_sched_policy policy;
    int64_t total;         /* iterations the schedule is meant for (>= 1) */
    int64_t warmup_iters;  /* linear warm-up length W (0 = none) */
    double warmup_start;   /* lr factor at iteration 0 of the warm-up */
    union {
        kiln_sched_const_params cnst;
        kiln_sched_exp_params exp;
        kiln_sched_sgdr_params sgdr;
        kiln_sched_cos_restarts_params cos_restarts;
        kiln_sched_clr_params clr;
        kiln_sched_one_cycle_params one_cycle;
        kiln_sched_stlr_params stlr;
        kiln_sched_step_params step;
    } p;
} kiln_sched;

kiln_sched_const_params kiln_sched_const_default_params(void);
kiln_sched_exp_params kiln_sched_exp_default_params(void);
kiln_sched_sgdr_params kiln_sched_sgdr_default_params(void);
kiln_sched_cos_restarts_params kiln_sched_cos_restarts_default_params(void);
kiln_sched_clr_params kiln_sched_clr_default_params(void);
kiln_sched_stlr_params kiln_sched_stlr_default_params(void);
kiln_sched_step_params kiln_sched_step_default_params(void);

/* Constructors: validate p and fill *s (no warm-up). INVALID + a message naming the policy,
 * field and value ("one-cycle: pct_start 1.5 outside [0, 1]") on bad parameters; *s is
 * untouched then. */
kiln_status kiln_sched_const(kiln_sched *s, const kiln_sched_const_params *p);
kiln_status kiln_sched_exp(kiln_sched *s, const kiln_sched_exp_params *p);
kiln_status kiln_sched_sgdr(kiln_sched *s, const kiln_sched_sgdr_params *p);
kiln_status kiln_sched_cos_restarts(kiln_sched *s, const kiln_sched_cos_restarts_params *p);
kiln_status kiln_sched_clr(kiln_sched *s, const kiln_sched_clr_params *p);
kiln_status kiln_sched_one_cycle(kiln_sched *s, const kiln_sched_one_cycle_params *p);
kiln_status kiln_sched_stlr(kiln_sched *s, const kiln_sched_stlr_params *p);
kiln_status kiln_sched_step(kiln_sched *s, const kiln_sched_step_params *p);

/* Wraps the schedule in a linear warm-up: for i < iters the lr is multiplied by
 * start + (1 - start)*i/iters (momentum unchanged); iters = 0 removes it. start in [0, 1]. */
kiln_status kiln_sched_warmup(kiln_sched *s, int64_t iters, double start);

/* lr and momentum (mom may be NULL) at iteration iter >= 0. Past kiln_sched_total the
 * cyclic policies (const, step, sgdr, cos-restarts, clr) go on; exp, one-cycle and stlr
 * hold their last value. INVALID for iter < 0 or an uninitialised schedule. */
kiln_status kiln_sched_at(const kiln_sched *s, int64_t iter, double *lr, double *mom);
/* Iterations the schedule is meant for: sgdr iters_per_epoch*kiln_sgdr_epochs(...). */
int64_t kiln_sched_total(const kiln_sched *s);
/* The cycle iteration iter belongs to: sgdr and cos-restarts restarts, clr cycles; 0 for
 * single-cycle policies. */
int64_t kiln_sched_cycle(const kiln_sched *s, int64_t iter);
/* True when iter is the last iteration of its cycle (the next one restarts) or the last
 * iteration of the schedule: the point where a snapshot ensemble saves the weights. */
bool kiln_sched_cycle_end(const kiln_sched *s, int64_t iter);
/* Epochs of n_cycle SGDR cycles: cycle_len*n for mult 1, else cycle_len*(mult^n-1)/(mult-1)
 * (fastai 0.7 sum_geom). -1 with a message on bad arguments or overflow. */
int64_t kiln_sgdr_epochs(int cycle_len, int cycle_mult, int n_cycle);

/* ---- the schedule as named keys (checkpoints) ------------------------------------------- *
 * JSON {"policy": "one-cycle", "total": N, "warmup_iters": W, "warmup_start": s,
 *       "params": {every field of the policy's params struct under its C name}}: doubles
 * exactly ("%.17g"), enums by name (variant "fastai" | "fastai1" | "torch", mode
 * "triangular" | "triangular2" | "exp_range"), moms as an array of 3. to_json returns
 * malloc'd text (free()), NULL + message for a schedule that was never built.
 * from_json rebuilds the schedule through its policy's constructor, which validates it as
 * for a new one (then the warm-up; "total", when given, must be what the parameters give).
 * A params field missing from the text takes its default when it is an option whose
 * default keeps the behaviour from before the option existed (exp linear, sgdr warmup07,
 * cos-restarts eta_min and per_epoch, clr mode, gamma and cycle_momentum, one-cycle variant,
 * cycle_momentum, three_phase and linear; and every field a later kiln adds); every other
 * field defines the schedule and is refused when missing. Errors are FORMAT and name the
 * key ("sched: params: \"lr_max\" is missing"); unknown keys are ignored with one warning. */
char *kiln_sched_to_json(const kiln_sched *s);
kiln_status kiln_sched_from_json(const char *json, kiln_sched *out);

/* ---- discriminative learning rates ---------------------------------------------------- */

/* Per-layer-group lrs, as fastai's lr_range/slice: lo > 0: slice(lo, hi) = geometric from lo
 * to hi (even_mults; out[0] = lo, out[n-1] = hi; n = 1 gives hi); lo == 0: slice(hi) =
 * [hi/10]*(n-1) + [hi]. out has n_groups elements. */
kiln_status kiln_lr_spread(double lo, double hi, int n_groups, double *out);
/* ULMFiT's ratio form: out[i] = hi / factor^(n_groups-1-i) (factor 2.6 in the paper). */
kiln_status kiln_lr_spread_factor(double hi, double factor, int n_groups, double *out);

/* ---- lr_find helpers ------------------------------------------------------------------ */

/* Debiased exponential moving average (fastai SmoothenValue / AvgSmoothLoss):
 * avg_k = beta*avg_{k-1} + (1-beta)*x_k, value_k = avg_k / (1 - beta^k). */
typedef struct kiln_ema {
    double beta;  /* 0.98 for lr_find */
    double avg;
    int64_t n;
} kiln_ema;
kiln_ema kiln_ema_init(double beta);
/* Adds x and returns the debiased average. */
double kiln_ema_add(kiln_ema *e, double x);
/* out[k] = the debiased average of x[0..k] (out may alias x). */
kiln_status kiln_ema_smooth(const double *x, int64_t n, double beta, double *out);

/* The range test stops when the smoothed loss is NaN, infinite or above 4 * the best so far. */
bool kiln_lr_find_diverged(double smooth_loss, double best_loss);

typedef enum kiln_lr_suggest {
    KILN_LR_SUGGEST_VALLEY = 0, /* fastai default: ~2/3 down the longest valley */
    KILN_LR_SUGGEST_MINIMUM,    /* lr at the minimum loss / 10 */
    KILN_LR_SUGGEST_STEEP,      /* lr where d loss / d log lr is most negative */
    KILN_LR_SUGGEST_SLIDE,      /* interval slide rule (lr_diff 15, thresh 0.005) */
    KILN_LR_SUGGEST_COUNT
} kiln_lr_suggest;

const char *kiln_lr_suggest_name(kiln_lr_suggest how); /* "valley", "minimum", ... */

/* A suggestion from a recorded range test, as fastai's Learner.lr_find: lrs and (smoothed)
 * losses hold the n recorded points; the first num_it/10 and the last 5 are dropped, then
 * everything from the first NaN or infinite loss on (one among the dropped first points
 * leaves nothing). *lr is the suggestion; *idx (may be NULL) indexes
 * lrs/losses at the point fastai marks on the plot (for minimum: the minimum itself).
 * INVALID when fewer than 2 points remain. */
kiln_status kiln_lr_suggest_lr(kiln_lr_suggest how, const double *lrs, const double *losses,
                               int64_t n, int64_t num_it, double *lr, int64_t *idx);

#ifdef __cplusplus
}
#endif
#endif
