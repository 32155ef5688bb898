/* kill -9 and resume: `kiln vision fit` on a small image folder is killed with SIGKILL at
 * moments drawn from a fixed seed and, once, as soon as a checkpoint temp file appears; each
 * time it is started again with --resume (or afresh when no checkpoint was written yet)
 * until it finishes. The final model.safetensors must equal an uninterrupted run's byte for
 * byte: one compute thread and the loader on the main thread make a fit deterministic, and a
 * checkpoint holds everything an epoch depends on (src/learn/checkpoint.c). No temp file may
 * be left at the end: the next start removes what a killed write left.
 *
 * The kill moments follow the child's own progress, not the clock, so a loaded machine or a
 * sanitizer build (5-10x slower) moves them with it: a kill is aimed at "n epoch rows into
 * this start, plus a fraction of the last epoch's time seen" (n = 0: from the start; the
 * checkpoint is written right after each row, so short fractions land around its write).
 * A kill that comes too late (the fit already finished) is retried with the next draw; what
 * counts is 12 kills that landed in a running fit, each followed by a byte-identical result. */
#include "util/ku_cli.h"
#include "util/ku_disk.h"

#include <ctype.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef KILN_CLI_PATH
#error "KILN_CLI_PATH must name the kiln binary (cmake/vision_cli.cmake)"
#endif

enum { EPOCHS = 20, KILLS = 12, MAX_TRIES = 36 };

static char g_dir[64];

static const char *P(const char *rel)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, rel);
    return buf[k];
}

static void setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/kiln_kill.XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL);
    ku_make_image_folder(P("img"));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    (void)system(cmd);
}
TestSuite(kill_resume, .init = setup, .fini = teardown);

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Starts the fit into out (--resume when it left a checkpoint); its epoch table goes to
 * out.log (plain progress: one flushed row per epoch). */
static pid_t start_fit(const char *out)
{
    char ck[600], epochs[16];
    snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", out);
    snprintf(epochs, sizeof epochs, "%d", EPOCHS);
    bool resume = access(ck, F_OK) == 0;
    char *argv[] = {"kiln", "vision", "fit", (char *)P("img"), "--out", (char *)out, "--bs", "4", "--epochs", epochs,
                    "--lr", "3e-3", "--seed", "7", "--threads", "1", "--workers", "0", "--progress", "plain",
                    resume ? "--resume" : NULL, NULL};
    return ku_spawn(KILN_CLI_PATH, argv, P("out.log"), P("err.log"));
}

/* Asserts a fit that ended by itself succeeded (rc its exit status). */
static void expect_success(const char *out, int rc)
{
    if (rc != 0) {
        char *err = ku_slurp(P("err.log"));
        cr_assert_fail("fit into %s: exit %d: %s", out, rc, err);
    }
}

/* A waitpid status as ku_wait gives it: the exit status, or 128 + the signal. */
static int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

/* Runs the fit to its end; asserts it succeeds. */
static void finish_fit(const char *out) { expect_success(out, ku_wait(start_fit(out))); }

static bool has_checkpoint_temp(const char *dir)
{
    DIR *d = opendir(dir);
    bool found = false;
    for (struct dirent *e; d && !found && (e = readdir(d));) found = !strncmp(e->d_name, "checkpoint.safetensors.tmp.", 27);
    if (d) closedir(d);
    return found;
}

/* Epoch rows in the log so far: lines "<digits><spaces><number>" (the header starts with
 * "epoch", a progress line with "<done>/<total>"). */
static int count_rows(const char *log)
{
    FILE *f = fopen(log, "r");
    int rows = 0;
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        char *p = line;
        while (isdigit((unsigned char)*p)) p++;
        rows += p > line && *p == ' ';
    }
    if (f) fclose(f);
    return rows;
}

static uint64_t g_rs = 0x9e3779b97f4a7c15ull;
static double uniform(void) /* xorshift64*, fixed seed: the same kill targets every run */
{
    g_rs ^= g_rs >> 12, g_rs ^= g_rs << 25, g_rs ^= g_rs >> 27;
    return (double)((g_rs * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

typedef struct aim {
    int rows;        /* epoch rows this start prints before the delay begins */
    double frac;     /* delay as a fraction of the last epoch time seen */
} aim;

/* Starts a fit into out and kills it at the aim; true when the kill hit it running
 * (exit by SIGKILL), false when it had finished first (asserted successful). *epoch_s is
 * the time between the last two rows seen (updated). */
static bool kill_at(const char *out, aim a, double *epoch_s)
{
    pid_t pid = start_fit(out);
    double t_row = now_s();
    int rows = 0, status = 0;
    off_t size = -1;
    bool ended = false;
    while (rows < a.rows && !(ended = waitpid(pid, &status, WNOHANG) == pid)) {
        struct stat sb;
        if (stat(P("out.log"), &sb) == 0 && sb.st_size != size) {
            size = sb.st_size;
            int r = count_rows(P("out.log"));
            double t = now_s();
            if (r > rows) {
                if (rows > 0) *epoch_s = (t - t_row) / (r - rows);
                rows = r, t_row = t;
            }
        }
        usleep(500);
    }
    if (!ended) {
        double until = now_s() + a.frac * *epoch_s;
        while (now_s() < until && !(ended = waitpid(pid, &status, WNOHANG) == pid)) usleep(200);
    }
    if (ended) {
        expect_success(out, exit_code(status));
        return false;
    }
    kill(pid, SIGKILL);
    int rc = ku_wait(pid);
    if (rc != 128 + SIGKILL) expect_success(out, rc); /* it ended just before the signal */
    return rc == 128 + SIGKILL;
}

static void expect_result(const char *out, const unsigned char *ref, size_t ref_n)
{
    char model[640];
    snprintf(model, sizeof model, "%s/model.safetensors", out);
    ku_expect_same_file(model, ref, ref_n);
    ku_expect_no_temp(out);
}

Test(kill_resume, sigkill_anywhere_resumes_to_the_same_weights, .timeout = 500)
{
    double t0 = now_s();
    finish_fit(P("ref"));
    double t_run = now_s() - t0, epoch_s = t_run / EPOCHS;
    size_t ref_n;
    unsigned char *ref = ku_read_all(P("ref/model.safetensors"), &ref_n);

    /* runs killed twice each (then finished), until 12 kills have hit a running fit; each
     * aim is 0..6 rows into that start plus up to one epoch, so two kills leave most of the
     * 20 epochs to go and a late one means the machine stalled: draw again */
    int kills = 0, late = 0, runs = 0;
    for (int tries = 0; kills < KILLS && tries < MAX_TRIES; runs++) {
        char out[600];
        snprintf(out, sizeof out, "%s/k%d", g_dir, runs);
        bool finished = false;
        for (int i = 0; i < 2 && kills < KILLS && !finished; i++, tries++) {
            aim a = {.rows = (int)(uniform() * 7), .frac = uniform()};
            if (kill_at(out, a, &epoch_s)) kills++;
            else late++, finished = true;
        }
        if (!finished) finish_fit(out);
        expect_result(out, ref, ref_n);
    }
    cr_assert_eq(kills, KILLS, "only %d of %d tries killed a running fit (%d came after it finished; run %.2f s)",
                 kills, kills + late, late, t_run);

    /* killed while a checkpoint is being written: poll for its temp file */
    int caught = 0;
    bool done = false;
    for (int tries = 0; tries < 3 && !caught && !done; tries++) {
        pid_t pid = start_fit(P("ck"));
        int status = 0;
        bool ended = false;
        while (!has_checkpoint_temp(P("ck")) && !(ended = waitpid(pid, &status, WNOHANG) == pid)) usleep(100);
        if (ended) { /* finished between two looks: nothing to kill, the result is checked below */
            expect_success(P("ck"), exit_code(status));
            done = true;
            break;
        }
        kill(pid, SIGKILL);
        caught += ku_wait(pid) == 128 + SIGKILL && has_checkpoint_temp(P("ck"));
    }
    if (!done) finish_fit(P("ck"));
    expect_result(P("ck"), ref, ref_n);
    cr_log_info("run %.2f s; %d kills hit a running fit in %d runs (%d came late); %s a checkpoint write", t_run,
                kills, runs, late, caught ? "killed inside" : "never caught");
    free(ref);
}
