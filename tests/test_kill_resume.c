/* kill -9 and resume: `kiln vision fit` on a small image folder is killed with SIGKILL at
 * moments drawn from a fixed seed (inside epochs, around the checkpoint writes) and, once,
 * as soon as a checkpoint temp file appears; each time it is started again with --resume
 * (or afresh when no checkpoint was written yet) until it finishes. The final
 * model.safetensors must equal an uninterrupted run's byte for byte: one compute thread and
 * the loader on the main thread make a fit deterministic, and a checkpoint holds everything
 * an epoch depends on (src/learn/checkpoint.c). No temp file may be left at the end: the
 * next start removes what a killed write left. */
#include "util/ku_cli.h"
#include "util/ku_disk.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef KILN_CLI_PATH
#error "KILN_CLI_PATH must name the kiln binary (cmake/vision_cli.cmake)"
#endif

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

/* Starts the fit into out (--resume when it left a checkpoint). */
static pid_t start_fit(const char *out)
{
    char ck[600];
    snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", out);
    bool resume = access(ck, F_OK) == 0;
    char *argv[] = {"kiln", "vision", "fit", (char *)P("img"), "--out", (char *)out, "--bs", "4", "--epochs", "20",
                    "--lr", "3e-3", "--seed", "7", "--threads", "1", "--workers", "0", "--quiet",
                    resume ? "--resume" : NULL, NULL};
    return ku_spawn(KILN_CLI_PATH, argv, P("out.log"), P("err.log"));
}

/* Runs the fit to its end; asserts it succeeds. */
static void finish_fit(const char *out)
{
    int rc = ku_wait(start_fit(out));
    if (rc != 0) {
        char *err = ku_slurp(P("err.log"));
        cr_assert_fail("fit into %s: exit %d: %s", out, rc, err);
    }
}

static bool has_checkpoint_temp(const char *dir)
{
    DIR *d = opendir(dir);
    bool found = false;
    for (struct dirent *e; d && !found && (e = readdir(d));) found = !strncmp(e->d_name, "checkpoint.safetensors.tmp.", 27);
    if (d) closedir(d);
    return found;
}

static uint64_t g_rs = 0x9e3779b97f4a7c15ull;
static double uniform(void) /* xorshift64*, fixed seed: the same kill moments every run */
{
    g_rs ^= g_rs >> 12, g_rs ^= g_rs << 25, g_rs ^= g_rs >> 27;
    return (double)((g_rs * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

Test(kill_resume, sigkill_anywhere_resumes_to_the_same_weights, .timeout = 300)
{
    double t0 = now_s();
    finish_fit(P("ref"));
    double t_run = now_s() - t0;
    size_t ref_n;
    unsigned char *ref = ku_read_all(P("ref/model.safetensors"), &ref_n);

    /* six runs, each killed twice at uniform moments over a whole run's time, then finished */
    int kills = 0;
    for (int k = 0; k < 6; k++) {
        char out[600];
        snprintf(out, sizeof out, "%s/k%d", g_dir, k);
        for (int i = 0; i < 2; i++) {
            pid_t pid = start_fit(out);
            usleep((useconds_t)(uniform() * t_run * 1e6));
            kill(pid, SIGKILL);
            kills += ku_wait(pid) == 128 + SIGKILL;
        }
        finish_fit(out);
        ku_expect_same_file(strcat(out, "/model.safetensors"), ref, ref_n);
        out[strlen(out) - strlen("/model.safetensors")] = '\0';
        ku_expect_no_temp(out);
    }
    cr_expect(kills >= 6, "only %d of 12 runs were still going when killed (run time %.2f s)", kills, t_run);

    /* killed while a checkpoint is being written: poll for its temp file */
    int caught = 0;
    for (int tries = 0; tries < 3 && !caught; tries++) {
        pid_t pid = start_fit(P("ck"));
        while (!has_checkpoint_temp(P("ck")) && waitpid(pid, NULL, WNOHANG) == 0) usleep(100);
        kill(pid, SIGKILL);
        caught += ku_wait(pid) == 128 + SIGKILL && has_checkpoint_temp(P("ck"));
    }
    finish_fit(P("ck"));
    ku_expect_same_file(P("ck/model.safetensors"), ref, ref_n);
    ku_expect_no_temp(P("ck"));
    cr_log_info("run %.2f s; %d of 12 random kills hit a running fit; %s a checkpoint write", t_run, kills,
                caught ? "killed inside" : "never caught");
    free(ref);
}
