/* `kiln vision lr-find` and `fit` on a full disk (a small tmpfs as --out; the data lives
 * elsewhere): each exits non-zero naming the file and the cause, says "wrote" about
 * nothing, and leaves the files of the previous run byte for byte and no temp file. Where
 * mounting a tmpfs is not permitted the tests are skipped with a message saying so. */
#include "util/ku_cli.h"
#include "util/ku_disk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef KILN_CLI_PATH
#error "KILN_CLI_PATH must name the kiln binary (cmake/vision_cli.cmake)"
#endif

#ifdef __SANITIZE_ADDRESS__
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\n"; }
#endif

static char g_dir[64], g_disk[64], g_why[256];
static bool g_mounted;

static const char *P(const char *base, const char *rel)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", base, rel);
    return buf[k];
}

static void setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/kiln_dfcli.XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL);
    ku_make_image_folder(P(g_dir, "img"));
    g_mounted = ku_tmpfs_mount(g_disk, sizeof g_disk, 1024, g_why, sizeof g_why);
}

static void teardown(void)
{
    ku_tmpfs_unmount(g_disk);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    (void)system(cmd);
}
TestSuite(disk_full_cli, .init = setup, .fini = teardown);

/* kiln vision <cmd> img --out <disk> ...: its exit status; stdout/stderr in g_dir/out, err */
static int run(const char *cmd, const char *epochs)
{
    char *lr[] = {"kiln", "vision", (char *)cmd, (char *)P(g_dir, "img"), "--out", g_disk, "--bs", "4", "--num-it", "30",
                  "--threads", "1", "--workers", "0", NULL};
    char *fit[] = {"kiln", "vision", (char *)cmd, (char *)P(g_dir, "img"), "--out", g_disk, "--bs", "4", "--epochs",
                   (char *)epochs, "--threads", "1", "--workers", "0", "--quiet", NULL};
    return ku_wait(ku_spawn(KILN_CLI_PATH, strcmp(cmd, "fit") ? lr : fit, P(g_dir, "out"), P(g_dir, "err")));
}

static void expect_failed_cleanly(int rc, const char *file, const char *cause)
{
    char *out = ku_slurp(P(g_dir, "out")), *err = ku_slurp(P(g_dir, "err"));
    cr_expect_neq(rc, 0, "exit 0 on a full disk (stdout: %s)", out);
    cr_expect(!strstr(out, "wrote"), "stdout says it wrote: %s", out);
    cr_expect(strstr(err, file) && strstr(err, cause), "stderr does not name %s and '%s': %s", file, cause, err);
    free(out);
    free(err);
    ku_expect_no_temp(g_disk);
}

/* The CSV fits in the free page, the PNG does not: the case where cairo's failed write went
 * unnoticed and lr-find said "wrote lr_find.png". */
Test(disk_full_cli, lr_find_png_on_a_full_disk)
{
    if (!g_mounted) cr_skip_test("SKIP disk-full CLI test: %s", g_why);
    if (!kiln_plot_available()) cr_skip_test("SKIP: this kiln has no PLplot, so lr-find writes no PNG");
    cr_assert_eq(run("lr-find", NULL), 0, "lr-find with room failed: %s", ku_slurp(P(g_dir, "err")));
    size_t n;
    unsigned char *png = ku_read_all(P(g_disk, "lr_find.png"), &n);
    ku_fill_disk(g_disk, 8192);
    expect_failed_cleanly(run("lr-find", NULL), "lr_find.png", "incomplete PNG");
    ku_expect_same_file(P(g_disk, "lr_find.png"), png, n);
    free(png);
}

/* The second fit (one more epoch: other weights) cannot write its first checkpoint. */
Test(disk_full_cli, fit_on_a_full_disk_keeps_the_last_run)
{
    if (!g_mounted) cr_skip_test("SKIP disk-full CLI test: %s", g_why);
    cr_assert_eq(run("fit", "2"), 0, "fit with room failed: %s", ku_slurp(P(g_dir, "err")));
    const char *files[] = {"model.safetensors", "checkpoint.safetensors", "model.json", "history.csv", "metrics.json"};
    unsigned char *old[5];
    size_t old_n[5];
    for (int i = 0; i < 5; i++) old[i] = ku_read_all(P(g_disk, files[i]), &old_n[i]);
    ku_fill_disk(g_disk, 0);
    expect_failed_cleanly(run("fit", "3"), "checkpoint.safetensors", "No space left on device");
    for (int i = 0; i < 5; i++) {
        ku_expect_same_file(P(g_disk, files[i]), old[i], old_n[i]);
        free(old[i]);
    }
}
