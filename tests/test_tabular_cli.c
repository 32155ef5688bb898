/* End to end: `kiln tabular` and `kiln collab` (path from KILN_CLI_PATH) on small tables written
 * here: fit writes the model, its procs and the training record; predict, recommend and export
 * work from the folder; lr-find writes its plot data; bad input is refused with a message naming
 * the file, line or flag and exit status 1 (runtime) or 2 (usage). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/ku.h"

#ifndef KILN_CLI_PATH
#error "KILN_CLI_PATH must name the kiln binary (cmake/vision_cli.cmake)"
#endif

#define FAST "--threads 1 --quiet"

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
    snprintf(g_dir, sizeof g_dir, "/tmp/kiln_tab_cli.XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL);
    FILE *f = fopen(P("houses.csv"), "wb");
    cr_assert_not_null(f);
    fprintf(f, "area,\"kind, of house\",sold,price\n");
    for (int i = 0; i < 300; i++) {
        double area = 50 + (i * 37) % 150;
        const char *kind = i % 3 == 0 ? "flat" : i % 3 == 1 ? "\"big\" house" : "cottage";
        fprintf(f, "%g,\"%s\",2020-%02d-%02d,%g\n", area, i % 3 == 1 ? "\"\"big\"\" house" : kind, 1 + i % 12,
                1 + i % 28, 1000 * area * (i % 3 == 1 ? 1.5 : 1.0) + 5000 * (i % 12));
    }
    fclose(f);
    f = fopen(P("ratings.csv"), "wb");
    cr_assert_not_null(f);
    fprintf(f, "userId,movieId,rating\n");
    for (int u = 0; u < 20; u++)
        for (int k = 0; k < 15; k++) fprintf(f, "%d,%d,%.1f\n", u, (u * 3 + k * 7) % 30, 1 + ((u + k) % 9) * 0.5);
    fclose(f);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    (void)system(cmd);
}
TestSuite(tabular_cli, .init = setup, .fini = teardown);

/* `kiln <args>` (args may use %s for g_dir, up to 4 times) with stdout/stderr in g_dir/out, err */
static int run(const char *args)
{
    static char cmd[8192], expanded[6144];
    snprintf(expanded, sizeof expanded, args, g_dir, g_dir, g_dir, g_dir);
    snprintf(cmd, sizeof cmd, "'%s' %s > '%s/out' 2> '%s/err'", KILN_CLI_PATH, expanded, g_dir, g_dir);
    int st = system(cmd);
    cr_assert(st != -1 && WIFEXITED(st), "could not run: %s", cmd);
    return WEXITSTATUS(st);
}

static void expect_in(const char *file, const char *needle)
{
    char *s = ku_slurp(P(file));
    cr_assert(strstr(s, needle), "%s lacks \"%s\":\n%s", file, needle, s);
    free(s);
}

static int lines(const char *file)
{
    char *s = ku_slurp(P(file));
    int n = 0;
    for (char *p = s; *p; p++) n += *p == '\n';
    free(s);
    return n;
}

Test(tabular_cli, fit_then_predict_a_regression)
{
    cr_assert_eq(run("tabular fit %s/houses.csv --target price --log-target --epochs 3 --layers 16,8 --out %s/m " FAST), 0, "%s",
                 ku_slurp(P("err")));
    static const char *files[] = {"m/model.safetensors", "m/model.json", "m/procs.json", "m/history.csv", "m/metrics.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) cr_assert_eq(access(P(files[i]), R_OK), 0, "%s missing", files[i]);
    cr_assert_eq(lines("m/history.csv"), 4);
    expect_in("m/history.csv", "rmse");
    expect_in("m/model.json", "\"task\":\t\"tabular\"");
    expect_in("m/model.json", "\"layers\":\t[16, 8]");
    /* the quoted column name, the date parts */
    expect_in("m/procs.json", "kind, of house");
    expect_in("m/procs.json", "soldYear");
    cr_assert_eq(run("tabular predict %s/m %s/houses.csv --out %s/preds.csv " FAST), 0, "%s", ku_slurp(P("err")));
    cr_assert_eq(lines("preds.csv"), 301);
    expect_in("preds.csv", "row,price\n1,");
    cr_assert_eq(run("tabular predict %s/m %s/houses.csv"), 0, "%s", ku_slurp(P("err")));
    cr_assert_eq(lines("out"), 301); /* to standard output without --out */
}

Test(tabular_cli, classification_writes_interpretation)
{
    cr_assert_eq(run("tabular fit %s/houses.csv --target \"kind, of house\" --epochs 2 --out %s/c " FAST), 0, "%s",
                 ku_slurp(P("err")));
    expect_in("c/history.csv", "accuracy");
    expect_in("c/model.json", "\"classes\"");
    cr_assert_eq(access(P("c/confusion_matrix.csv"), R_OK), 0);
    cr_assert_eq(access(P("c/top_losses.csv"), R_OK), 0);
    cr_assert_eq(run("tabular predict %s/c %s/houses.csv --out %s/p.csv " FAST), 0, "%s", ku_slurp(P("err")));
    expect_in("p.csv", "p_\"\"big\"\" house"); /* a class name with a quote, quoted in the header */
}

Test(tabular_cli, lr_find_writes_its_curve)
{
    cr_assert_eq(run("tabular lr-find %s/houses.csv --target price --out %s/lr --num-it 30 " FAST), 0, "%s", ku_slurp(P("err")));
    cr_assert_eq(access(P("lr/lr_find.csv"), R_OK), 0);
    cr_assert_eq(run("collab lr-find %s/ratings.csv --out %s/clr --num-it 30 " FAST), 0, "%s", ku_slurp(P("err")));
    cr_assert_eq(access(P("clr/lr_find.csv"), R_OK), 0);
}

Test(tabular_cli, collab_fit_predict_recommend_export)
{
    cr_assert_eq(run("collab fit %s/ratings.csv --factors 4 --epochs 3 --bs 16 --out %s/cf " FAST), 0, "%s", ku_slurp(P("err")));
    expect_in("cf/model.json", "\"task\":\t\"collab\"");
    expect_in("cf/history.csv", "rmse");
    cr_assert_eq(lines("cf/seen.csv"), 1 + 240); /* 80% of the 300 ratings */
    FILE *f = fopen(P("pairs.csv"), "wb");
    fprintf(f, "userId,movieId\n3,0\n4,7\n");
    fclose(f);
    cr_assert_eq(run("collab predict %s/cf %s/pairs.csv"), 0, "%s", ku_slurp(P("err")));
    expect_in("out", "userId,movieId,rating\n3,0,");
    cr_assert_eq(run("collab recommend %s/cf --user 3 --n 4"), 0, "%s", ku_slurp(P("err")));
    cr_assert_eq(lines("out"), 4);
    expect_in("out", "1\t");
    cr_assert_eq(run("collab export %s/cf --out %s/tables " FAST), 0, "%s", ku_slurp(P("err")));
    cr_assert_eq(lines("tables/users.csv"), 21);
    cr_assert_eq(lines("tables/items.csv"), 31);
    expect_in("tables/items.csv", "id,bias,f0,f1,f2,f3\n");
    cr_assert_eq(run("collab export %s/cf --out %s/tables2"), 0, "%s", ku_slurp(P("err")));
    expect_in("out", "most liked items (bias): ");
    expect_in("out", "least liked items (bias): ");
}

Test(tabular_cli, bad_input_is_refused_by_name)
{
    cr_assert_eq(run("tabular fit %s/houses.csv --out %s/x"), 2);
    expect_in("err", "--target is required");
    cr_assert_eq(run("tabular fit %s/houses.csv --target price --layers 10,x --out %s/x"), 2);
    expect_in("err", "--layers");
    cr_assert_eq(run("tabular fit %s/houses.csv --target price --ps 0.1 --out %s/x"), 2);
    expect_in("err", "--ps needs one dropout per layer");
    cr_assert_eq(run("tabular fit %s/houses.csv --target nope --out %s/x " FAST), 1);
    expect_in("err", "nope");
    cr_assert_eq(run("tabular fit %s/nofile.csv --target price --out %s/x " FAST), 1);
    expect_in("err", "nofile.csv");
    FILE *f = fopen(P("ragged.csv"), "wb");
    fprintf(f, "a,b,price\n1,2,3\n4,5\n");
    fclose(f);
    cr_assert_eq(run("tabular fit %s/ragged.csv --target price --out %s/x " FAST), 1);
    expect_in("err", "ragged.csv:3");
    cr_assert_eq(run("collab recommend %s/nodir --user 3"), 1);
    expect_in("err", "nodir");
    cr_assert_eq(run("collab fit %s/ratings.csv --factors 4 --epochs 1 --out %s/cf1 " FAST), 0, "%s", ku_slurp(P("err")));
    cr_assert_eq(run("collab recommend %s/cf1 --user 999"), 1);
    expect_in("err", "user '999' is not known");
    cr_assert_eq(run("collab recommend %s/cf1"), 2);
    expect_in("err", "--user ID is required");
    f = fopen(P("pairs.csv"), "wb");
    fprintf(f, "userId,movieId\n3,0\n3,12345\n");
    fclose(f);
    cr_assert_eq(run("collab predict %s/cf1 %s/pairs.csv"), 1);
    expect_in("err", "pairs.csv:3: movieId '12345' is not known");
    cr_assert_eq(run("collab fit %s/ratings.csv --layers 8 --out %s/x"), 2);
    expect_in("err", "--layers applies to --nn");
    cr_assert_eq(run("tabular predict %s/cf1 %s/houses.csv"), 1); /* a collab model, the houses' columns */
    expect_in("err", "userId");
}
