/* The CLI's shared training driver (tools/kiln/train.c): the flags every task's lr-find and
 * fit take (out, bs, epochs, lr, schedule and its cycles, snapshots, wd, seed, threads,
 * progress, resume, on-nan, TTA, sync-bn), their checks, and the two commands themselves on a learner
 * that the task built: lr-find (kiln_learner_lr_find) and fit (kiln_learner_train, with
 * SIGINT stopping at the next batch and the results printed). A task (vision.c) adds only
 * its data flags and its learner constructor. Messages go to stderr as "<cmd>: ...";
 * functions return an exit status (0, 1 runtime, 2 usage, 130 interrupted). */
#ifndef CLI_TRAIN_H
#define CLI_TRAIN_H

#include "flags.h"
#include "kiln.h"

typedef struct train_opts {
    const char *cmd; /* "kiln vision fit": message prefix */
    const char *out, *schedule, *progress, *on_nan;
    int64_t bs, epochs, n_cycle, cycle_len, cycle_mult, freeze_epochs, snapshots, seed, threads, num_it, tta_n;
    double lr, wd, tta_beta, lr_mult;
    bool tta, tta_max, quiet, help, resume, sync_bn;
    bool given_epochs, given_n_cycle, given_lr, given_schedule, given_lr_mult; /* from the parser's `given` (train_given) */
    int64_t bucket_kb; /* data-parallel gradient buckets (KiB) */
    bool no_overlap;   /* data-parallel: bucket sums after backward */
    bool zero;         /* data-parallel: ZeRO-1, the optimizer state sharded over the ranks */
} train_opts;

/* Which of a task's subcommands read a common flag: bit k of this enum maps to map[k]. */
enum { TRAIN_LR_FIND = 0, TRAIN_FIT, TRAIN_EVAL /* predict, interpret: TTA */, TRAIN_DATA /* reads data */,
       TRAIN_ALL, TRAIN_N_KINDS };
#define TRAIN_MAX_FLAGS 32

/* The defaults every task starts from. */
train_opts train_defaults(void);
/* Appends the common flags to dst (room for TRAIN_MAX_FLAGS), their offsets moved by base
 * (offsetof the train_opts in the task's options struct) and masks mapped through map;
 * returns how many. */
int train_flags(cli_flag *dst, size_t base, const unsigned map[TRAIN_N_KINDS]);
/* Sets given_* from the parser's given[] over flags. */
void train_given(train_opts *t, const cli_flag *flags, int n_flags, const bool *given);
/* Range checks of the common flags: NULL or what is wrong ("--bs must be in [1, 65536]"). */
const char *train_check(const train_opts *t);

int cli_fail(const char *cmd, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* cli_fail(cmd, 1, "<what>: <kiln_last_error()>") (no "what: " when what is NULL). */
int cli_kfail(const char *cmd, const char *what);

/* dir/name into buf (the caller has checked that dir is at most CLI_DIR_MAX bytes). */
const char *cli_path(char *buf, size_t n, const char *dir, const char *name);
/* The longest --out or model DIR taken: the file names joined to it fit in 4096 bytes. */
#define CLI_DIR_MAX 4000

/* Data-parallel (issue 13): the world communicator (MPI under mpirun / mpiexec, else one
 * process; made on the first call, freed at exit; rank > 0's stdout goes to /dev/null), this
 * process's rank and the number of ranks, and the per-rank batch --bs / ranks. */
kiln_comm *train_comm(void);
int train_rank(void);
int train_world(void);
int64_t train_rank_bs(const train_opts *t);
/* The world communicator on the learner, with --bucket-kb, --no-overlap, --zero and --sync-bn's
 * BatchNorm over it; 0 or the exit status after a message. */
int train_set_comm(const train_opts *t, kiln_learner *l);
/* A context with --threads and --seed; NULL after a message (also: MPI failed to start, or
 * --bs is not divisible by the ranks). */
kiln_ctx *train_ctx_new(const train_opts *t);
/* The learner parameters the flags ask for (seed, progress, on-nan). */
kiln_learner_params train_learner_params(const train_opts *t);
/* The fit recipe the flags ask for; 2 after a message when they do not make one. */
int train_recipe(const train_opts *t, kiln_recipe *r);

/* "key", "value" pairs of the settings that shape training (resume refuses a change). */
typedef struct train_settings {
    const char *kv[2 * 48 + 1]; /* key, value, ..., NULL */
    char val[48][48];
    int n;
} train_settings;
void train_settings_str(train_settings *s, const char *key, const char *v);
void train_settings_num(train_settings *s, const char *key, double v);

/* --out made if missing, without the temp files a killed kiln left there (one line says how
 * many went). 0 or 1 after a message. */
int train_prepare_out(const train_opts *t);
/* lr-find: out/lr_find.png and .csv, the suggestions printed. */
int train_lr_find(const train_opts *t, kiln_learner *l);
/* fit: kiln_learner_train into --out with the recipe, checkpoints, snapshots, TTA; task
 * settings are recorded beside the common ones; data names the data in messages. */
int train_fit(const train_opts *t, kiln_learner *l, const char *data, train_settings *task);

#endif
