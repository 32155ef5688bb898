/* The atomic writer (kiln_atomic_*, include/kiln/io.h) and every library writer on a full
 * disk: a write that cannot finish (missing or unwritable folder, a folder in the way, a full
 * disk) fails with an error naming the file and the cause, leaves the previous file byte for
 * byte and no temp file behind; the stale-temp cleaner removes only dead processes' temps.
 * The disk-full cases run on a small tmpfs; where mounting one is not permitted they are
 * skipped with a message saying so. */
#include "util/ku_disk.h"
#include "util/ku_learn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef __SANITIZE_ADDRESS__
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\n"; }
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
    snprintf(g_dir, sizeof g_dir, "/tmp/kiln_atomic.XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL);
}

static void teardown(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "chmod -R u+w '%s' 2>/dev/null; rm -rf '%s'", g_dir, g_dir);
    (void)system(cmd);
}
TestSuite(atomic, .init = setup, .fini = teardown);

static void write_ok(const char *path, const char *text)
{
    cr_assert(!kiln_atomic_write(path, text, strlen(text)), "%s", kiln_last_error());
}

/* the write must fail with an IO error whose message names path and mentions cause */
static void expect_write_fails(const char *path, const char *cause)
{
    cr_expect_eq(kiln_atomic_write(path, "new text\n", 9), KILN_STATUS_IO, "writing %s succeeded", path);
    cr_expect(strstr(kiln_last_error(), path), "'%s' does not name %s", kiln_last_error(), path);
    cr_expect(strstr(kiln_last_error(), cause), "'%s' does not say '%s'", kiln_last_error(), cause);
}

Test(atomic, writes_and_replaces)
{
    write_ok(P("a.txt"), "first\n");
    write_ok(P("a.txt"), "second, longer\n");
    ku_expect_same_file(P("a.txt"), (const unsigned char *)"second, longer\n", 15);
    cr_assert(!kiln_atomic_write(P("empty"), NULL, 0), "%s", kiln_last_error());
    ku_expect_same_file(P("empty"), (const unsigned char *)"", 0);
    ku_expect_no_temp(g_dir);
}

Test(atomic, bad_folders_and_a_folder_in_the_way)
{
    expect_write_fails(P("missing/a.txt"), "No such file or directory");
    write_ok(P("file"), "x");
    expect_write_fails(P("file/a.txt"), "Not a directory");
    cr_assert(mkdir(P("dir"), 0755) == 0);
    write_ok(P("dir/inside"), "kept");
    expect_write_fails(P("dir"), "folder");
    struct stat st;
    cr_expect(stat(P("dir/inside"), &st) == 0 && S_ISDIR(st.st_mode) == 0, "the folder's content changed");
    ku_expect_no_temp(g_dir);
}

/* Root may write into a 0555 folder, so a read-only mount stands in for it there. */
Test(atomic, unwritable_folder_keeps_the_old_file)
{
    cr_assert(mkdir(P("ro"), 0755) == 0);
    write_ok(P("ro/a.txt"), "old contents\n");
    bool mounted = false;
    if (geteuid() == 0) {
        if (mount(P("ro"), P("ro"), NULL, MS_BIND, NULL) != 0 ||
            mount(NULL, P("ro"), NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) != 0) {
            umount2(P("ro"), MNT_DETACH);
            cr_skip_test("root without permission to remount a folder read-only: unwritable-folder case skipped");
        }
        mounted = true;
    } else {
        cr_assert(chmod(P("ro"), 0555) == 0);
    }
    expect_write_fails(P("ro/a.txt"), mounted ? "Read-only file system" : "Permission denied");
    ku_expect_same_file(P("ro/a.txt"), (const unsigned char *)"old contents\n", 13);
    ku_expect_no_temp(P("ro"));
    if (mounted) umount2(P("ro"), MNT_DETACH);
}

Test(atomic, stream_commit_and_abort)
{
    write_ok(P("s.csv"), "old\n");
    kiln_atomic *a;
    cr_assert(!kiln_atomic_begin(P("s.csv"), &a), "%s", kiln_last_error());
    const char *tmp = kiln_atomic_temp_path(a);
    cr_expect(strstr(tmp, "s.csv.tmp."), "temp path %s", tmp);
    fprintf(kiln_atomic_stream(a), "half of a file");
    kiln_atomic_abort(a);
    ku_expect_same_file(P("s.csv"), (const unsigned char *)"old\n", 4);
    ku_expect_no_temp(g_dir);
    cr_assert(!kiln_atomic_begin(P("s.csv"), &a), "%s", kiln_last_error());
    for (int i = 0; i < 1000; i++) fprintf(kiln_atomic_stream(a), "%d\n", i);
    cr_assert(!kiln_atomic_commit(a), "%s", kiln_last_error());
    size_t n;
    unsigned char *b = ku_read_all(P("s.csv"), &n);
    cr_expect(n == 3890 && !memcmp(b + n - 4, "999\n", 4), "s.csv: %zu bytes", n);
    free(b);
    ku_expect_no_temp(g_dir);
}

Test(atomic, stale_temps_of_dead_processes_are_removed)
{
    pid_t child = fork();
    cr_assert(child >= 0);
    if (child == 0) _exit(0);
    cr_assert(waitpid(child, NULL, 0) == child); /* child's pid now names no process */
    char dead[64], live[64], own[64], dir[64];
    snprintf(dead, sizeof dead, "checkpoint.safetensors.tmp.%ld", (long)child);
    snprintf(live, sizeof live, "model.json.tmp.1"); /* pid 1 always lives */
    snprintf(own, sizeof own, "history.csv.tmp.%ld", (long)getpid());
    snprintf(dir, sizeof dir, "folder.tmp.%ld", (long)child);
    const char *keep[] = {live, own, "notes.tmp.12ab", "plain.txt", "x.tmp."};
    for (int i = 0; i < 5; i++) write_ok(P(keep[i]), "k");
    write_ok(P(dead), "half a checkpoint");
    cr_assert(mkdir(P(dir), 0755) == 0);
    int removed = -1;
    cr_assert(!kiln_atomic_clean_stale(g_dir, &removed), "%s", kiln_last_error());
    cr_expect_eq(removed, 1);
    cr_expect(access(P(dead), F_OK) != 0, "%s was not removed", dead);
    for (int i = 0; i < 5; i++) cr_expect(access(P(keep[i]), F_OK) == 0, "%s was removed", keep[i]);
    cr_expect(access(P(dir), F_OK) == 0, "the folder %s was removed", dir);
    cr_expect_eq(kiln_atomic_clean_stale(P("missing"), NULL), KILN_STATUS_IO);
}

/* ---- a full disk ------------------------------------------------------------------------------- */

static char g_disk[64];
static bool g_mounted;
static char g_why[256];

static void disk_setup(void)
{
    g_mounted = ku_tmpfs_mount(g_disk, sizeof g_disk, 1024, g_why, sizeof g_why);
}

static void disk_teardown(void) { ku_tmpfs_unmount(g_disk); }

static const char *D(const char *rel)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_disk, rel);
    return buf[k];
}

static void need_disk(void)
{
    if (!g_mounted) cr_skip_test("SKIP disk-full test: %s", g_why);
}

TestSuite(disk_full, .init = disk_setup, .fini = disk_teardown);

Test(disk_full, buffer_and_stream_writes_fail_and_keep_the_old_file)
{
    need_disk();
    write_ok(D("a.json"), "{\"old\": true}\n");
    ku_fill_disk(g_disk, 0);
    char big[20000];
    memset(big, 'x', sizeof big);
    cr_expect_eq(kiln_atomic_write(D("a.json"), big, sizeof big), KILN_STATUS_IO);
    cr_expect(strstr(kiln_last_error(), D("a.json")) && strstr(kiln_last_error(), "No space left on device"),
              "message: %s", kiln_last_error());
    ku_expect_same_file(D("a.json"), (const unsigned char *)"{\"old\": true}\n", 14);
    kiln_atomic *a;
    cr_assert(!kiln_atomic_begin(D("a.json"), &a), "%s", kiln_last_error());
    for (int i = 0; i < 5000; i++) fprintf(kiln_atomic_stream(a), "line %d\n", i);
    cr_expect_eq(kiln_atomic_commit(a), KILN_STATUS_IO);
    cr_expect(strstr(kiln_last_error(), "No space left on device"), "message: %s", kiln_last_error());
    ku_expect_same_file(D("a.json"), (const unsigned char *)"{\"old\": true}\n", 14);
    ku_expect_no_temp(g_disk);
}

/* Every file a Learner writes: model, checkpoint, history CSVs, lr_find CSV, plots. */
enum { N_WRITERS = 8 };
static const char *g_names[N_WRITERS] = {"model.safetensors", "checkpoint.safetensors", "history.csv", "batches.csv",
                                         "lr_find.csv", "losses.png", "lr.png", "lr_find.png"};

static kiln_status write_one(int i, ku_learn *f, const kiln_lr_find_result *r)
{
    kiln_recorder *rec = kiln_learner_recorder(f->learn);
    const char *path = D(g_names[i]);
    switch (i) {
    case 0: return kiln_model_save(f->model, path, NULL);
    case 1: return kiln_checkpoint_save(f->learn, path);
    case 2: return kiln_recorder_write_csv(rec, path);
    case 3: return kiln_recorder_write_batches_csv(rec, path);
    case 4: return kiln_lr_find_write_csv(r, path);
    case 5: return kiln_recorder_plot_losses(rec, path);
    case 6: return kiln_recorder_plot_lr(rec, path);
    default: return kiln_lr_find_plot(r, path, 5);
    }
}

/* Each file is written once with room, then again (after one more epoch: other bytes) on a
 * full disk, where each write must fail naming the file and leave the first version. The
 * plots get one free page: PLplot/cairo do not report the failed write, so this is the case
 * of a PNG cut after 4 KB behind a valid signature. */
Test(disk_full, every_learner_writer_keeps_the_old_file)
{
    need_disk();
    ku_learn f = ku_learn_new(&(ku_learn_params){.n_train = 256, .n_valid = 64, .batch_size = 32, .center = 2,
                                                 .noise = 1.5, .hidden = 16, .accuracy = true});
    kiln_lr_find_params lp = kiln_lr_find_default_params();
    lp.num_it = 20;
    kiln_lr_find_result r;
    cr_assert(!kiln_learner_lr_find(f.learn, &lp, &r), "%s", kiln_last_error());
    cr_assert(!kiln_learner_fit_one_cycle(f.learn, 1, 1e-2, 1e-2, NULL), "%s", kiln_last_error());
    int n = kiln_plot_available() ? N_WRITERS : 5;
    unsigned char *old[N_WRITERS] = {0};
    size_t old_n[N_WRITERS] = {0};
    for (int i = 0; i < n; i++) {
        cr_assert(!write_one(i, &f, &r), "%s: %s", g_names[i], kiln_last_error());
        old[i] = ku_read_all(D(g_names[i]), &old_n[i]);
    }
    cr_assert(!kiln_learner_fit_one_cycle(f.learn, 1, 1e-2, 1e-2, NULL), "%s", kiln_last_error());
    for (int64_t k = 0; k < r.n; k++) r.smooth_losses[k] *= 1.5; /* a different lr_find plot */
    for (int i = 0; i < n; i++) {
        ku_fill_disk(g_disk, i < 5 ? 0 : 4096); /* the small CSVs would fit in a free page */
        kiln_status st = write_one(i, &f, &r);
        cr_expect_neq(st, KILN_STATUS_OK, "%s was written on a full disk", g_names[i]);
        cr_expect(strstr(kiln_last_error(), D(g_names[i])), "%s: message '%s' does not name it", g_names[i],
                  kiln_last_error());
        ku_expect_same_file(D(g_names[i]), old[i], old_n[i]);
        free(old[i]);
    }
    ku_expect_no_temp(g_disk);
    kiln_lr_find_result_free(&r);
    ku_learn_free(&f);
}
