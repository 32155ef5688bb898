/* Shared by the op benchmarks: a timing loop in the style of ../shared/reference/torch_ops.py
 * (3 warm-up calls, then repeat for a fixed time) and one entry per op family.
 * Each family's file bench/bench_<family>.c defines its kiln_bench_<family>. */
#ifndef KILN_BENCH_H
#define KILN_BENCH_H

#include "kiln.h"

typedef void (*kiln_bench_fn)(kiln_ctx *ctx, void *user);
/* Runs fn repeatedly for about secs seconds (after 3 warm-ups), rewinding the step arena
 * after each call, prints "name  ms  GFLOP/s" like torch_ops.py and returns seconds/call. */
double kiln_bench_run(kiln_ctx *ctx, const char *name, kiln_bench_fn fn, void *user, double flops,
                      double secs);

void kiln_bench_dense(kiln_ctx *ctx);   /* matmul 1024^3; embedding + linear 400->20000 + xent */
void kiln_bench_conv(kiln_ctx *ctx);    /* conv3x3 64->64 32x32 bs64 fwd+bwd; batchnorm2d */
void kiln_bench_rnn(kiln_ctx *ctx);     /* lstm 1152->1152 seq70 bs32 fwd+bwd */
void kiln_bench_resnet34(kiln_ctx *ctx); /* resnet34 64px bs32 training steps, img/s */
void kiln_bench_csv(const char *path);  /* the CSV reader on ~100 MB, MB/s (path: NULL = a temp file) */
void kiln_bench_tabcsv(const char *path); /* tables: read + procs learn + apply on ~100 MB, MB/s */
void kiln_bench_autograd(kiln_ctx *ctx); /* ops whose loops moved into kernels (issue 9) */
void kiln_bench_freeze(kiln_ctx *ctx);   /* training steps unfrozen / frozen / frozen without train_bn */
void kiln_bench_awd(kiln_ctx *ctx, const char *which); /* the AWD-LSTM LM training step (twin: torch_throughput.py awd); which: off, drop, unfused or NULL (off, drop) */
void kiln_bench_text(const char *datasets, int max_threads); /* the tokenizer on Austen and fine foods, MB/s */
void kiln_bench_tab(kiln_ctx *ctx, const char *which); /* issue 12: collab dot-bias and tabular MLP steps (twin: torch_throughput.py collab tabular); which: collab, collab-dense, collab-sparse, tabular or NULL (all) */

#endif
