/* bench/ops: kiln's single-op timings in the format of ../shared/reference/torch_ops.py
 * (copied as bench/torch_ops.py), so the two can be run back to back and compared.
 * Usage: bench_ops [THREADS] [SECONDS] [ops|resnet34|autograd|all|freeze|csv [PATH]|tabcsv [PATH]|text [DIR]|awd [off|drop|unfused]
 *                                      |tab [collab|collab-dense|collab-sparse|tabular]]
 * (default: ops; csv, text and freeze are not in all: csv times the CSV reader,
 * bench/bench_csv.c; text the tokenizer on ../shared/datasets, bench/bench_text.c; awd the
 * AWD-LSTM LM training step, bench/bench_awd.c; tab the collab and tabular steps of issue 12,
 * bench/bench_tab.c; freeze
 * the training steps of frozen models, bench/bench_freeze.c; autograd: the ops whose loops
 * moved into kernels, bench/bench_autograd.c). */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double g_secs = 3.0;

double kiln_bench_run(kiln_ctx *ctx, const char *name, kiln_bench_fn fn, void *user, double flops, double secs)
{
    if (secs <= 0) secs = g_secs;
    kiln_mark m = kiln_step_mark(ctx);
    for (int i = 0; i < 3; i++) {
        fn(ctx, user);
        kiln_step_rewind(ctx, m);
    }
    double t0 = now(), t;
    long k = 0;
    do {
        fn(ctx, user);
        kiln_step_rewind(ctx, m);
        k++;
        t = now();
    } while (t - t0 < secs);
    double dt = (t - t0) / (double)k;
    printf("%-44s %8.2f ms  %7.1f GFLOP/s\n", name, dt * 1e3, flops / dt / 1e9);
    fflush(stdout);
    return dt;
}


int main(int argc, char **argv)
{
    kiln_ctx_params p = kiln_ctx_default_params();
    p.n_threads = argc > 1 ? atoi(argv[1]) : 2;
    if (argc > 2) g_secs = atof(argv[2]);
    p.seed = 0;
    kiln_ctx *ctx = kiln_ctx_new(&p);
    if (!ctx) {
        fprintf(stderr, "bench_ops: %s\n", kiln_last_error());
        return 1;
    }
    printf("kiln %s, %d threads\n", KILN_VERSION_STRING, kiln_ctx_threads(ctx));
    const char *what = argc > 3 ? argv[3] : "ops";
    bool all = !strcmp(what, "all"), ops = all || !strcmp(what, "ops"), r34 = all || !strcmp(what, "resnet34"),
         ag = all || !strcmp(what, "autograd");
    if (!strcmp(what, "freeze")) {
        kiln_bench_freeze(ctx);
        printf("peak memory held by kiln: %.1f MB\n", (double)kiln_mem_peak_bytes() / 1e6);
        kiln_ctx_free(ctx);
        return 0;
    }
    if (!strcmp(what, "awd")) {
        kiln_bench_awd(ctx, argc > 4 ? argv[4] : NULL);
        kiln_ctx_free(ctx);
        return 0;
    }
    if (!strcmp(what, "tab")) {
        kiln_bench_tab(ctx, argc > 4 ? argv[4] : NULL);
        kiln_ctx_free(ctx);
        return 0;
    }
    if (!strcmp(what, "text")) {
        kiln_bench_text(argc > 4 ? argv[4] : NULL, kiln_ctx_threads(ctx));
        kiln_ctx_free(ctx);
        return 0;
    }
    if (!strcmp(what, "tabcsv")) {
        kiln_bench_tabcsv(argc > 4 ? argv[4] : NULL);
        kiln_ctx_free(ctx);
        return 0;
    }
    if (!strcmp(what, "csv")) {
        kiln_bench_csv(argc > 4 ? argv[4] : NULL);
        kiln_ctx_free(ctx);
        return 0;
    }
    if (!ops && !r34 && !ag) {
        fprintf(stderr, "bench_ops: unknown selection '%s' (ops, resnet34, autograd, all, freeze, csv, tabcsv, text, awd or tab)\n", what);
        kiln_ctx_free(ctx);
        return 2;
    }
    if (ops) {
        kiln_bench_dense(ctx);
        kiln_bench_conv(ctx);
        kiln_bench_rnn(ctx);
    }
    if (ag) kiln_bench_autograd(ctx);
    if (r34) kiln_bench_resnet34(ctx);
    printf("peak memory held by kiln: %.1f MB\n", (double)kiln_mem_peak_bytes() / 1e6);
    kiln_ctx_free(ctx);
    return 0;
}
