/* Text tables (kiln_text_csv_read): texts and labels from a CSV with quoted fields and line
 * breaks, classes sorted, and every kind of bad input the text issue lists refused with the
 * file and line: unbalanced quotes, a missing column, an empty file, an empty text or label,
 * a label column with one class. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/ku.h"

static char g_dir[] = "/tmp/kiln_text_csv_XXXXXX";
static bool g_made; /* not "ends in X": mkdtemp's six random characters may end in X too */

static const char *write_csv(const char *name, const char *body)
{
    static char path[256];
    if (!g_made) cr_assert_not_null(mkdtemp(g_dir));
    g_made = true;
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fwrite(body, 1, strlen(body), f);
    fclose(f);
    return path;
}

static void cleanup(void)
{
    if (!g_made) return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    (void)system(cmd);
}
TestSuite(text_csv, .fini = cleanup);

Test(text_csv, reads_texts_labels_and_sorted_classes)
{
    const char *p = write_csv("ok.csv", "\"review\",\"score\"\n"
                                        "\"Great, really \"\"great\"\" stuff\",\"great\"\n"
                                        "\"two\nlines <br />here\",\"other\"\n"
                                        "caf\xc3\xa9 \xff bad byte,great\n");
    kiln_text_table t;
    cr_assert_eq(kiln_text_csv_read(p, "review", "score", true, &t), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(t.n, 3);
    cr_expect_str_eq(t.text[0], "Great, really \"great\" stuff");
    cr_expect_str_eq(t.text[1], "two\nlines <br />here");
    cr_expect_eq(t.line[2], 5, "row 3 starts on line 5 (row 2 holds a quoted line break)");
    cr_assert_eq(t.n_classes, 2);
    cr_expect_str_eq(t.classes[0], "great");
    cr_expect_str_eq(t.classes[1], "other");
    cr_expect_eq(t.y[0], 0);
    cr_expect_eq(t.y[1], 1);
    cr_expect_eq(t.y[2], 0);
    /* the invalid byte reaches the tokenizer, which replaces and counts it */
    kiln_tokens tok;
    cr_assert_eq(kiln_text_tokenize(t.text[2], t.text_len[2], &tok), KILN_STATUS_OK);
    cr_expect_eq(tok.n_replaced, 1);
    kiln_tokens_free(&tok);
    kiln_text_table_free(&t);
    cr_assert_eq(kiln_text_csv_read(p, "review", NULL, false, &t), KILN_STATUS_OK);
    cr_expect_null(t.y);
    cr_expect_eq(t.n_classes, 0);
    kiln_text_table_free(&t);
}

Test(text_csv, bad_input_names_file_and_line)
{
    static const struct { const char *name, *body, *label, *needle; bool two; } bad[] = {
        {"quotes.csv", "review,score\n\"fine\",great\n\"never closed,great\nmore,other\n", "score", "quotes.csv", false},
        {"nocol.csv", "text,label\nhello,a\n", "score", "no text column \"review\" (its columns: \"text\", \"label\")", false},
        {"nolabel.csv", "review,label\nhello,a\n", "score", "no label column \"score\" (its columns: \"review\", \"label\")", false},
        {"empty.csv", "", "score", "empty.csv", false},
        {"header_only.csv", "review,score\n", "score", "header_only.csv: no rows after the header", false},
        {"emptydoc.csv", "review,score\nfine,great\n,other\n", "score", "emptydoc.csv line 3: the text (column \"review\") is empty", false},
        {"emptylabel.csv", "review,score\nfine,great\nalso fine,\n", "score", "emptylabel.csv line 3: the label (column \"score\") is empty", false},
        {"oneclass.csv", "review,score\na,great\nb,great\n", "score", "has one class (\"great\") in 2 rows", true},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        const char *p = write_csv(bad[k].name, bad[k].body);
        kiln_text_table t;
        cr_expect_lt(kiln_text_csv_read(p, "review", bad[k].label, bad[k].two, &t), 0, "%s was accepted", bad[k].name);
        ku_expect_error(bad[k].needle, bad[k].name);
        cr_expect_eq(t.n, 0, "%s: the table is left empty", bad[k].name);
    }
    /* the one-class file is fine when two classes are not needed (a test set may have one) */
    kiln_text_table t;
    cr_expect_eq(kiln_text_csv_read(write_csv("oneclass.csv", "review,score\na,great\n"), "review", "score", false, &t), 0);
    kiln_text_table_free(&t);
}
