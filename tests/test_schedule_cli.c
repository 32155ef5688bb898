/* End to end: runs the kiln binary (`kiln schedule ...`, path from KILN_CLI_PATH, set in
 * cmake/sched.cmake) and checks every printed line against kiln_sched_at on the same
 * parameters (%.9g, so 1e-8 relative), the PNG it writes (magic bytes, no temp file left),
 * the exit status and stderr of bad flags, numbers and parameters; plus the plot API
 * (kiln_plot_lines / kiln_plot_panels) directly. Without PLplot the PNG checks are skipped. */
#include "util/ku.h"
#include "kiln/report.h"
#include "kiln/sched.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef __SANITIZE_ADDRESS__
/* fontconfig (under cairo/pango) keeps its caches until exit; not ours to free */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\n"; }
#endif

#ifndef KILN_CLI_PATH
#error "KILN_CLI_PATH must name the kiln binary (cmake/sched.cmake)"
#endif

static char g_dir[64];
static void setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/kiln_sched_cli.XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL);
}
static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    (void)system(cmd);
}
TestSuite(schedule_cli, .init = setup, .fini = teardown);

/* Runs `kiln <args>` with stdout and stderr in g_dir/out, g_dir/err; returns the exit code. */
static int run(const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' %s > '%s/out' 2> '%s/err'", KILN_CLI_PATH, args, g_dir, g_dir);
    int st = system(cmd);
    cr_assert(st != -1 && WIFEXITED(st), "could not run: %s", cmd);
    return WEXITSTATUS(st);
}

static char *slurp(const char *name);

/* run() that must succeed; stderr goes into the failure message. */
static void run_ok(const char *args)
{
    if (run(args) != 0) {
        char *err = slurp("err");
        cr_assert_fail("kiln %s failed: %s", args, err);
    }
}

/* Contents of g_dir/<name> (malloc'ed, NUL-terminated). */
static char *slurp(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    return ku_slurp(path);
}

/* Every line of g_dir/out against s: header, then total lines "iter lr mom". */
static void expect_lines(const kiln_sched *s)
{
    char path[256];
    snprintf(path, sizeof path, "%s/out", g_dir);
    FILE *f = fopen(path, "r");
    cr_assert(f);
    char line[256];
    cr_assert(fgets(line, sizeof line, f) && !strcmp(line, "iter lr mom\n"), "header line: '%s'", line);
    int64_t n = 0;
    while (fgets(line, sizeof line, f)) {
        long long it;
        double lr, mom, want_lr, want_mom;
        cr_assert_eq(sscanf(line, "%lld %lf %lf", &it, &lr, &mom), 3, "line %lld: '%s'", (long long)n, line);
        cr_assert_eq(it, n, "iteration numbers run 0, 1, 2, ...");
        cr_assert_eq(kiln_sched_at(s, it, &want_lr, &want_mom), KILN_STATUS_OK);
        cr_assert(fabs(lr - want_lr) <= 1e-8 * fabs(want_lr), "iter %lld: lr %.9g, library %.9g", it, lr, want_lr);
        cr_assert(fabs(mom - want_mom) <= 1e-8 * fabs(want_mom), "iter %lld: mom %.9g, library %.9g", it, mom,
                  want_mom);
        n++;
    }
    fclose(f);
    cr_assert_eq(n, kiln_sched_total(s), "%lld lines, schedule has %lld iterations", (long long)n,
                 (long long)kiln_sched_total(s));
}

static void expect_png(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s was not written", path);
    unsigned char head[8] = {0};
    size_t got = fread(head, 1, 8, f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    cr_assert(got == 8 && !memcmp(head, "\x89PNG\r\n\x1a\n", 8), "%s is not a PNG", path);
    cr_assert(size > 1000, "%s is only %ld bytes", path, size);
    /* atomic write: nothing but finished files in the directory */
    DIR *d = opendir(g_dir);
    for (struct dirent *e; (e = readdir(d));)
        cr_assert(!strstr(e->d_name, ".tmp."), "temp file %s left behind", e->d_name);
    closedir(d);
}

Test(schedule_cli, sgdr_lines_and_plot)
{
    bool plot = kiln_plot_available();
    char args[512];
    snprintf(args, sizeof args, "schedule sgdr --lr 0.1 --iters-per-epoch 100 --n-cycle 3 --cycle-len 1 "
                                "--cycle-mult 2 %s%s%s", plot ? "--plot '" : "", plot ? g_dir : "", plot ? "/sgdr.png'" : "");
    run_ok(args);
    kiln_sched_sgdr_params p = kiln_sched_sgdr_default_params();
    p.lr = 0.1, p.iters_per_epoch = 100, p.n_cycle = 3, p.cycle_len = 1, p.cycle_mult = 2;
    kiln_sched s;
    cr_assert_eq(kiln_sched_sgdr(&s, &p), KILN_STATUS_OK);
    expect_lines(&s);
    char *out = slurp("out");
    cr_assert(!strncmp(out, "iter lr mom\n0 0.1 0.9\n1 0.099975328 0.9\n", 39), "docs/cli.md's first lines: %.60s", out);
    free(out);
    if (plot)
        expect_png("sgdr.png");
}

Test(schedule_cli, one_cycle_torch_with_warmup)
{
    run_ok("schedule one-cycle --variant torch --lr 0.01 --iters-per-epoch 50 --epochs 7 --three-phase "
           "--anneal linear --moms 0.9,0.8 --warmup 30 --warmup-start 0.1");
    kiln_sched_one_cycle_params p = kiln_sched_one_cycle_default_params(KILN_ONE_CYCLE_VARIANT_TORCH);
    p.lr_max = 0.01, p.iters = 350, p.three_phase = true, p.linear = true;
    p.moms[0] = 0.9, p.moms[1] = 0.8, p.moms[2] = 0.9;
    kiln_sched s;
    cr_assert_eq(kiln_sched_one_cycle(&s, &p), KILN_STATUS_OK);
    cr_assert_eq(kiln_sched_warmup(&s, 30, 0.1), KILN_STATUS_OK);
    expect_lines(&s);
}

Test(schedule_cli, clr_and_cos_restarts_and_exp)
{
    run_ok("schedule clr --base-lr 1e-4 --lr 1e-2 --step-size-up 30 --step-size-down 70 --mode triangular2 "
           "--n-cycle 3");
    kiln_sched_clr_params c = kiln_sched_clr_default_params();
    c.base_lr = 1e-4, c.max_lr = 1e-2, c.step_size_up = 30, c.step_size_down = 70, c.mode = KILN_CLR_MODE_TRIANGULAR2;
    c.iters = 300;
    kiln_sched s;
    cr_assert_eq(kiln_sched_clr(&s, &c), KILN_STATUS_OK);
    expect_lines(&s);

    run_ok("schedule cos-restarts --lr 0.05 --iters-per-epoch 40 --cycle-len 2 --cycle-mult 2 --n-cycle 3 "
           "--eta-min 1e-3");
    kiln_sched_cos_restarts_params r = kiln_sched_cos_restarts_default_params();
    r.lr = 0.05, r.iters_per_epoch = 40, r.t0 = 2, r.t_mult = 2, r.epochs = 14, r.eta_min = 1e-3;
    cr_assert_eq(kiln_sched_cos_restarts(&s, &r), KILN_STATUS_OK);
    expect_lines(&s);

    bool plot = kiln_plot_available();
    char args[256];
    snprintf(args, sizeof args, "schedule exp --iters 120 %s%s%s", plot ? "--plot '" : "", plot ? g_dir : "",
             plot ? "/exp.png'" : "");
    run_ok(args);
    kiln_sched_exp_params e = kiln_sched_exp_default_params();
    e.iters = 120;
    cr_assert_eq(kiln_sched_exp(&s, &e), KILN_STATUS_OK);
    expect_lines(&s);
    if (plot)
        expect_png("exp.png");
}

static void expect_stderr(const char *needle)
{
    char *err = slurp("err");
    cr_assert(strstr(err, needle), "stderr '%s' does not mention '%s'", err, needle);
    free(err);
}

Test(schedule_cli, errors_and_help)
{
    cr_assert_eq(run("schedule sgdr --cycle-mul 2"), 2);
    expect_stderr("unknown flag '--cycle-mul'");
    cr_assert_eq(run("schedule sgdr --lr abc"), 2);
    expect_stderr("--lr: 'abc' is not a number");
    cr_assert_eq(run("schedule sgdr --n-cycle 2.5"), 2);
    expect_stderr("--n-cycle: '2.5' is not an integer");
    cr_assert_eq(run("schedule sgdr --lr"), 2);
    expect_stderr("--lr needs a value");
    cr_assert_eq(run("schedule one-cycle --pct-start 1.5"), 2);
    expect_stderr("one-cycle: pct_start 1.5 outside [0, 1]");
    cr_assert_eq(run("schedule cosine"), 2);
    expect_stderr("unknown policy 'cosine'");
    cr_assert_eq(run("schedule one-cycle --variant fastai2"), 2);
    expect_stderr("--variant: 'fastai2'");
    cr_assert_eq(run("schedule"), 2);
    cr_assert_eq(run("schedule const --gamma 0.5 --iters 3"), 0);
    expect_stderr("--gamma does not apply to const");
    cr_assert_eq(run("schedule --help"), 0);
    char *out = slurp("out");
    cr_assert(strstr(out, "--cycle-mult") && strstr(out, "--three-phase") && strstr(out, "one-cycle"), "help: %s", out);
    free(out);
    cr_assert_eq(run("--help"), 0);
    out = slurp("out");
    cr_assert(strstr(out, "schedule"), "kiln --help lists schedule");
    free(out);
    if (kiln_plot_available()) {
        cr_assert_eq(run("schedule const --iters 5 --plot /nonexistent-dir/x.png"), 1);
        expect_stderr("/nonexistent-dir/x.png");
    }
}

/* ---- the plot API --------------------------------------------------------------------- */

Test(schedule_cli, plot_api)
{
    if (!kiln_plot_available()) {
        char path[256];
        snprintf(path, sizeof path, "%s/none.png", g_dir);
        kiln_plot_series s = {.y = (double[]){1, 2}, .n = 2};
        cr_assert_eq(kiln_plot_lines(path, "t", "x", "y", false, false, &s, 1), KILN_STATUS_UNSUPPORTED);
        cr_skip_test("built without PLplot");
    }
    /* an lr_find-like plot: log x, a NaN gap, a marker series, a legend */
    double lr[100], loss[100];
    for (int i = 0; i < 100; i++) {
        lr[i] = 1e-7 * pow(1e8, i / 100.0);
        loss[i] = 2.3 - 1.6 / (1 + exp(-2 * (log10(lr[i]) + 3))) + 0.05 * exp(5 * (log10(lr[i]) + 1));
    }
    loss[50] = NAN;
    double sx[2] = {lr[40], lr[60]}, sy[2] = {loss[40], loss[60]};
    kiln_plot_series series[2] = {
        {.label = "smoothed loss", .x = lr, .y = loss, .n = 100},
        {.label = "suggestions", .x = sx, .y = sy, .n = 2, .style = KILN_PLOT_STYLE_POINTS},
    };
    char path[256];
    snprintf(path, sizeof path, "%s/lr_find.png", g_dir);
    cr_assert_eq(kiln_plot_lines(path, "lr_find", "learning rate", "loss", true, false, series, 2), KILN_STATUS_OK,
                 "%s", kiln_last_error());
    expect_png("lr_find.png");
    /* rewriting replaces the file atomically */
    cr_assert_eq(kiln_plot_lines(path, "again", "x", "y", false, false, series, 1), KILN_STATUS_OK);
    expect_png("lr_find.png");
    /* errors are values */
    cr_assert_eq(kiln_plot_lines("/nonexistent-dir/p.png", "t", "x", "y", false, false, series, 1), KILN_STATUS_IO);
    ku_expect_error("/nonexistent-dir/p.png", "bad directory");
    kiln_plot_series bad = {.y = NULL, .n = 3};
    cr_assert_eq(kiln_plot_lines(path, "t", "x", "y", false, false, &bad, 1), KILN_STATUS_INVALID);
    ku_expect_error("no data", "missing y");
    /* nothing drawable (all NaN / non-positive on a log axis) still makes an empty frame */
    double z[3] = {0, -1, NAN};
    kiln_plot_series empty = {.y = z, .n = 3};
    cr_assert_eq(kiln_plot_lines(path, "empty", "x", "y", false, true, &empty, 1), KILN_STATUS_OK, "%s",
                 kiln_last_error());
}
