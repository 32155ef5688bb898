/* End to end: `kiln text lm` and `kiln text lr-find` (path from KILN_CLI_PATH) on small corpora
 * written here: a text file of paragraphs, a folder of .txt files and a CSV column; the files a
 * fit writes and what they hold (perplexity in the epoch table and history, the vocabulary, a
 * text-lm model.json); bad input refused with a message naming the file or flag and exit
 * status 1 (runtime) or 2 (usage). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/ku.h"

#ifndef KILN_CLI_PATH
#error "KILN_CLI_PATH must name the kiln binary (cmake/vision_cli.cmake)"
#endif

#define FAST "--threads 1 --config small --bs 4 --bptt 10 --quiet"

static char g_dir[64];

static const char *P(const char *rel)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, rel);
    return buf[k];
}

static void write_file(const char *rel, const char *text)
{
    FILE *f = fopen(P(rel), "wb");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

/* paragraphs of a small made-up story */
static void write_story(const char *rel, int n, int shift)
{
    static const char *words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "Emma", "said", "that", "it", "was",
                                  "very", "good", "of", "him", "to", "come", "here", "today"};
    FILE *f = fopen(P(rel), "wb");
    cr_assert_not_null(f);
    for (int p = 0; p < n; p++) {
        for (int w = 0; w < 40; w++) fprintf(f, "%s%s", words[(p * 7 + w * 3 + shift) % 20], w % 10 == 9 ? ".\n" : " ");
        fputs("\n", f);
    }
    fclose(f);
}

static void setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/kiln_text_cli.XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL);
    write_story("story.txt", 60, 0);
    cr_assert_eq(mkdir(P("books"), 0755), 0);
    write_story("books/a.txt", 30, 1);
    write_story("books/b.txt", 30, 2);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    (void)system(cmd);
}
TestSuite(text_cli, .init = setup, .fini = teardown);

/* `kiln <args>` (args may use %s for g_dir, up to 4 times) with stdout/stderr in g_dir/out, err */
static int run(const char *args)
{
    static char cmd[16384], expanded[12288];
    snprintf(expanded, sizeof expanded, args, g_dir, g_dir, g_dir, g_dir);
    snprintf(cmd, sizeof cmd, "'%s' %s > '%s/out' 2> '%s/err'", KILN_CLI_PATH, expanded, g_dir, g_dir);
    int st = system(cmd);
    cr_assert(st != -1 && WIFEXITED(st), "could not run: %s", cmd);
    return WEXITSTATUS(st);
}

static void expect_in(const char *rel, const char *needle)
{
    char *s = ku_slurp(P(rel));
    cr_expect(strstr(s, needle) != NULL, "%s does not contain '%s':\n%s", rel, needle, s);
    free(s);
}

Test(text_cli, lm_on_a_text_file_writes_the_model_vocabulary_and_history)
{
    int rc = run("text lm %s/story.txt --epochs 2 --lr 1e-2 --out %s/lm " FAST);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, ku_slurp(P("err")));
    expect_in("lm/history.csv", "perplexity");
    expect_in("lm/model.json", "\"text-lm\"");
    expect_in("lm/vocab.txt", "xxunk\nxxpad\nxxbos\n");
    expect_in("lm/vocab.txt", "\nemma\n");
    expect_in("lm/metrics.json", "perplexity");
    cr_expect_eq(access(P("lm/model.safetensors"), R_OK), 0);
    /* a folder of .txt files and a CSV column */
    rc = run("text lm %s/books --epochs 1 --out %s/lm2 " FAST);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, ku_slurp(P("err")));
    write_file("reviews.csv", "review,score\n\"I loved it, really.\",great\n\"Not good at all!\",other\n"
                              "\"The cat sat on the mat and it was very good.\",great\n\"Emma said that it was good.\",great\n"
                              "\"Very good of him to come here today.\",great\n\"It was not very good.\",other\n"
                              "\"The mat was good.\",great\n\"Him? Never again.\",other\n\"A cat, a mat.\",great\n"
                              "\"Today it was good.\",great\n");
    rc = run("text lm %s/reviews.csv --text-col review --valid-pct 0.2 --epochs 1 --bs 2 --out %s/lm3 --threads 1 "
             "--config small --bptt 5 --min-freq 1 --quiet");
    cr_assert_eq(rc, 0, "exit %d: %s", rc, ku_slurp(P("err")));
    /* ULMFiT step 2: fine-tune the first LM on another corpus */
    rc = run("text lm %s/books --pretrained %s/lm --epochs 1 --out %s/ft --threads 1 --bs 4 --bptt 10 --progress plain");
    cr_assert_eq(rc, 0, "exit %d: %s", rc, ku_slurp(P("err")));
    expect_in("out", "pretrained: ");
    expect_in("out", "vocabulary entries known to it");
    cr_expect_eq(run("text lm %s/books --pretrained %s/nothing --out %s/ft2 " FAST), 1);
    expect_in("err", "nothing/model.json");
    rc = run("text lr-find %s/story.txt --out %s/lrf --num-it 12 " FAST);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, ku_slurp(P("err")));
    cr_expect_eq(access(P("lrf/lr_find.csv"), R_OK), 0);
    /* generation from the saved language model: greedy is deterministic, sampling follows the seed */
    rc = run("text generate %s/lm \"Emma said\" --words 6 --temperature 0");
    cr_assert_eq(rc, 0, "exit %d: %s", rc, ku_slurp(P("err")));
    char *g1 = ku_slurp(P("out"));
    cr_expect(!strncmp(g1, "Emma said ", 10), "the prompt, decoded, starts the text: %s", g1);
    cr_expect_eq(run("text generate %s/lm \"Emma said\" --words 6 --temperature 0"), 0);
    char *g2 = ku_slurp(P("out"));
    cr_expect_str_eq(g1, g2);
    cr_expect_eq(run("text generate %s/lm \"Emma said\" --words 6 --seed 7"), 0);
    free(g2);
    g2 = ku_slurp(P("out"));
    cr_expect_eq(run("text generate %s/lm \"Emma said\" --words 6 --seed 7"), 0);
    char *g3 = ku_slurp(P("out"));
    cr_expect_str_eq(g2, g3, "the same seed, the same text");
    free(g1), free(g2), free(g3);
    cr_expect_eq(run("text generate %s/lm \"zzqx wvvq\""), 1);
    expect_in("err", "none of its 2 word(s) is in the model's vocabulary");
    cr_expect_eq(run("text generate %s/lm"), 2);
    expect_in("err", "missing PROMPT");
    cr_expect_eq(run("text generate %s/lm \"Emma\" --words -1"), 2);
    expect_in("err", "--words must be in");
    cr_expect_eq(run("text generate %s/lm \"Emma\" --epochs 3"), 2);
    expect_in("err", "--epochs does not apply to generate");
    cr_expect_eq(run("text generate %s/nothing \"Emma\""), 1);
    expect_in("err", "nothing/model.json");
}

Test(text_cli, bad_input_is_refused_clearly)
{
    cr_expect_eq(run("text lm %s/missing.txt --out %s/x " FAST), 1);
    expect_in("err", "missing.txt");
    write_file("empty.txt", "\n\n  \n");
    cr_expect_eq(run("text lm %s/empty.txt --out %s/x " FAST), 1);
    expect_in("err", "empty.txt: no text");
    write_file("bad.csv", "review,score\nfine,great\n");
    cr_expect_eq(run("text lm %s/bad.csv --text-col text --out %s/x " FAST), 1);
    expect_in("err", "no text column \"text\" (its columns: \"review\", \"score\")");
    write_file("quotes.csv", "text\n\"never closed\nmore\n");
    cr_expect_eq(run("text lm %s/quotes.csv --out %s/x " FAST), 1);
    expect_in("err", "quotes.csv");
    cr_expect_eq(run("text lm %s/story.txt --out %s/x " FAST " --config huge"), 2);
    expect_in("err", "--config must be paper or small");
    cr_expect_eq(run("text lm --out %s/x " FAST), 2);
    expect_in("err", "missing SOURCE");
    cr_expect_eq(run("text lm %s/story.txt " FAST), 2);
    expect_in("err", "--out is required");
    cr_expect_eq(run("text lm %s/story.txt --out %s/x --valid-pct 1.5 " FAST), 2);
    cr_expect_eq(run("text frobnicate"), 2);
    expect_in("err", "unknown command");
    cr_expect_eq(run("text lm --help"), 0);
    expect_in("out", "--text-col");
}

static void write_reviews(const char *rel, int n, unsigned seed)
{
    static const char *fill[] = {"the", "coffee", "tasted", "and", "it", "was", "really", "for", "me", "box"};
    static const char *pos[] = {"great", "good", "lovely"}, *neg[] = {"bad", "awful", "stale"};
    FILE *f = fopen(P(rel), "wb");
    cr_assert_not_null(f);
    fprintf(f, "review,score\n");
    for (int i = 0; i < n; i++) {
        fputc('"', f);
        for (int w = 0; w < 10; w++) {
            seed = seed * 1103515245u + 12345u;
            fprintf(f, "%s ", w == 4 ? (i % 2 ? neg : pos)[(seed >> 16) % 3] : fill[(seed >> 16) % 10]);
        }
        fprintf(f, "\",%s\n", i % 2 ? "other" : "great");
    }
    fclose(f);
}

Test(text_cli, fit_a_classifier_from_scratch_and_from_a_language_model)
{
    write_reviews("train.csv", 96, 1);
    write_reviews("valid.csv", 32, 2);
    int rc = run("text fit %s/train.csv --valid %s/valid.csv --text-col review --label-col score --epochs 2 --out %s/c "
                 "--threads 1 --config small --bs 16 --min-freq 1 --quiet");
    cr_assert_eq(rc, 0, "exit %d: %s", rc, ku_slurp(P("err")));
    expect_in("c/model.json", "\"text-clas\"");
    expect_in("c/model.json", "\"great\"");
    expect_in("c/history.csv", "accuracy");
    /* interpretation as in vision: the confusion matrix and the top losses with their texts */
    expect_in("c/confusion_matrix.csv", "actual\\predicted,great,other\n");
    expect_in("c/top_losses.csv", "rank,index,file,predicted,actual,loss,probability\n1,");
    /* predict: texts as arguments, a file of lines, a CSV column; bad calls */
    rc = run("text predict %s/c \"the coffee was great\" \"awful and stale\"");
    cr_assert_eq(rc, 0, "exit %d: %s", rc, ku_slurp(P("err")));
    expect_in("out", "\tthe coffee was great\n");
    write_file("lines.txt", "it was great\nbad box\n");
    cr_assert_eq(run("text predict %s/c --file %s/lines.txt"), 0, "%s", ku_slurp(P("err")));
    expect_in("out", "\tbad box\n");
    cr_assert_eq(run("text predict %s/c --file %s/valid.csv --text-col review"), 0, "%s", ku_slurp(P("err")));
    cr_expect_eq(run("text predict %s/nothing \"x\""), 1);
    expect_in("err", "nothing/model.json");
    cr_expect_eq(run("text predict %s/c"), 2);
    expect_in("err", "no text");
    /* ULMFiT: a language model on the texts, then the classifier on its encoder (fine-tune) */
    rc = run("text lm %s/train.csv --text-col review --epochs 1 --out %s/lm " FAST " --min-freq 1");
    cr_assert_eq(rc, 0, "exit %d: %s", rc, ku_slurp(P("err")));
    rc = run("text fit %s/train.csv --text-col review --label-col score --lm %s/lm --epochs 1 --out %s/u --threads 1 "
             "--bs 16 --progress plain");
    cr_assert_eq(rc, 0, "exit %d: %s", rc, ku_slurp(P("err")));
    expect_in("out", "body frozen");
    expect_in("out", "(the language model's)");
    /* ULMFiT's gradual unfreezing: the small encoder's 5 groups, so three partly frozen epochs and
     * the unfrozen one, all in history.csv */
    char *h = ku_slurp(P("u/history.csv"));
    int lines = 0;
    for (const char *c = h; *c; c++) lines += *c == '\n';
    cr_expect_eq(lines, 5, "a header and 4 epochs: %s", h);
    free(h);
    /* the classifier's lr-find, on the encoder (frozen) and from scratch */
    rc = run("text lr-find %s/train.csv --text-col review --label-col score --lm %s/lm --out %s/lrc --num-it 8 --bs 16 "
             "--threads 1 --quiet");
    cr_assert_eq(rc, 0, "exit %d: %s", rc, ku_slurp(P("err")));
    expect_in("lrc/lr_find.csv", "lr,loss");
    cr_expect_eq(run("text lr-find %s/train.csv --text-col review --lm %s/lm --out %s/x --quiet"), 2);
    expect_in("err", "--lm applies to the classifier's lr-find: give --label-col too");
    /* a classifier is not a language model */
    cr_expect_eq(run("text generate %s/u \"great\""), 1);
    expect_in("err", "task is not \"text-lm\"");
    /* bad input */
    cr_expect_eq(run("text fit %s/train.csv --text-col review --label-col stars --out %s/x --quiet"), 1);
    expect_in("err", "no label column \"stars\"");
    cr_expect_eq(run("text fit %s/train.csv --text-col review --label-col score --lm %s/nothing --out %s/x --quiet"), 1);
    expect_in("err", "nothing/vocab.txt");
    cr_expect_eq(run("text fit %s/train.csv %s/valid.csv --text-col review --label-col score --out %s/x --quiet"), 2);
    expect_in("err", "one TRAIN.csv expected");
}
