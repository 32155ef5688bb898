/* Text tokenizer and vocabulary (kiln/text.h): fastai's rules and the Treebank split against
 * tests/fixtures/text_tokens.json (tests/fixtures/gen_text.py runs fastai's regexes and NLTK),
 * invalid UTF-8 replaced and counted, many documents on threads giving the same tokens, and
 * fastai's make_vocab: order, min_freq, max_vocab, specials, padding, unknown words, and the
 * saved file with its errors. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/ku.h"

static cJSON *cases(void)
{
    char *s = ku_slurp(KILN_FIXTURE_DIR "/text_tokens.json");
    cJSON *j = cJSON_Parse(s);
    free(s);
    cr_assert(j && cJSON_IsArray(j) && cJSON_GetArraySize(j) > 30, "text_tokens.json does not parse");
    return j;
}

static void expect_tokens(const kiln_tokens *got, const cJSON *want, const char *text, const char *what)
{
    int n = cJSON_GetArraySize(want);
    char g[4096] = "", w[4096] = "";
    for (int64_t i = 0; i < got->n; i++) snprintf(g + strlen(g), sizeof g - strlen(g), "[%s]", got->tok[i]);
    for (int i = 0; i < n; i++)
        snprintf(w + strlen(w), sizeof w - strlen(w), "[%s]", cJSON_GetArrayItem(want, i)->valuestring);
    cr_expect_str_eq(g, w, "%s of \"%s\":\n got  %s\n want %s", what, text, g, w);
    cr_expect_eq(got->n, n);
}

Test(text, rules_match_fastai)
{
    cJSON *j = cases();
    cJSON *c;
    cJSON_ArrayForEach(c, j)
    {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        const char *want = cJSON_GetObjectItem(c, "rules")->valuestring;
        char *got = NULL;
        int64_t rep = -1;
        cr_assert_eq(kiln_text_rules(text, strlen(text), &got, &rep), KILN_STATUS_OK, "%s", kiln_last_error());
        cr_expect_str_eq(got, want, "rules of \"%s\":\n got  \"%s\"\n want \"%s\"", text, got, want);
        cr_expect_eq(rep, 0);
        free(got);
    }
    cJSON_Delete(j);
}

Test(text, tokens_match_fastai_rules_and_treebank)
{
    cJSON *j = cases();
    cJSON *c;
    cJSON_ArrayForEach(c, j)
    {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        kiln_tokens t;
        cr_assert_eq(kiln_text_tokenize(text, strlen(text), &t), KILN_STATUS_OK, "%s", kiln_last_error());
        expect_tokens(&t, cJSON_GetObjectItem(c, "tokens"), text, "tokens");
        kiln_tokens_free(&t);
        cr_assert_eq(kiln_text_split(text, strlen(text), &t), KILN_STATUS_OK, "%s", kiln_last_error());
        expect_tokens(&t, cJSON_GetObjectItem(c, "split"), text, "split");
        kiln_tokens_free(&t);
    }
    cJSON_Delete(j);
}

/* kiln's documented period rule, beside NLTK's: every chunk's final period is split off (NLTK
 * splits only the text's last), abbreviations keep theirs; quotes are " */
Test(text, period_and_quote_rules)
{
    const char *text = "I saw it. Then the U.S. team, Mr. Li and ``Bo'' left.";
    const char *want[] = {"I", "saw", "it", ".", "Then", "the", "U.S.", "team", ",", "Mr.", "Li", "and",
                          "\"", "Bo", "\"", "left", "."};
    kiln_tokens t;
    cr_assert_eq(kiln_text_split(text, strlen(text), &t), KILN_STATUS_OK);
    cr_assert_eq(t.n, (int64_t)(sizeof want / sizeof want[0]), "%lld tokens", (long long)t.n);
    for (int64_t i = 0; i < t.n; i++) cr_expect_str_eq(t.tok[i], want[i], "token %lld", (long long)i);
    kiln_tokens_free(&t);
}

Test(text, invalid_utf8_is_replaced_and_counted)
{
    /* a lone continuation byte, a truncated 3-byte sequence, an overlong '/', a NUL, a surrogate */
    const char text[] = "ok \x80 bad\xe2\x82 x\xc0\xaf y\0z \xed\xa0\x80!";
    kiln_tokens t;
    cr_assert_eq(kiln_text_tokenize(text, sizeof text - 1, &t), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(t.n_replaced, 1 + 2 + 2 + 1 + 3, "replaced %lld bytes", (long long)t.n_replaced);
    char all[512] = "";
    for (int64_t i = 0; i < t.n; i++) {
        cr_expect_gt(strlen(t.tok[i]), 0);
        strcat(all, t.tok[i]);
        strcat(all, "|");
    }
    /* the surrogate's three U+FFFD are a repeated character to fastai's replace_rep */
    cr_expect_str_eq(all, "xxbos|ok|\xef\xbf\xbd|bad\xef\xbf\xbd\xef\xbf\xbd|x\xef\xbf\xbd\xef\xbf\xbd|y\xef\xbf\xbdz|"
                          "xxrep|3|\xef\xbf\xbd|!|", "%s", all);
    kiln_tokens_free(&t);
    char *r = NULL;
    int64_t rep = 0;
    cr_assert_eq(kiln_text_rules(text, sizeof text - 1, &r, &rep), KILN_STATUS_OK);
    cr_expect_eq(rep, 9);
    cr_expect(strstr(r, "y\xef\xbf\xbdz") != NULL, "%s", r);
    free(r);
}

Test(text, empty_and_whitespace_documents)
{
    kiln_tokens t;
    cr_assert_eq(kiln_text_tokenize("", 0, &t), KILN_STATUS_OK);
    cr_expect_eq(t.n, 1);
    cr_expect_str_eq(t.tok[0], "xxbos");
    kiln_tokens_free(&t);
    cr_assert_eq(kiln_text_split(" \t\n ", 4, &t), KILN_STATUS_OK);
    cr_expect_eq(t.n, 0);
    kiln_tokens_free(&t);
    kiln_tokens_free(NULL);
}

Test(text, many_on_threads_equal_one_by_one)
{
    cJSON *j = cases();
    int n = cJSON_GetArraySize(j) * 5;
    const char **texts = malloc((size_t)n * sizeof *texts);
    for (int i = 0; i < n; i++)
        texts[i] = cJSON_GetObjectItem(cJSON_GetArrayItem(j, i % cJSON_GetArraySize(j)), "text")->valuestring;
    kiln_tokens *a = calloc((size_t)n, sizeof *a), *b = calloc((size_t)n, sizeof *b);
    cr_assert_eq(kiln_text_tokenize_many(texts, NULL, n, 4, a), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_text_tokenize_many(texts, NULL, n, 1, b), KILN_STATUS_OK);
    for (int i = 0; i < n; i++) {
        kiln_tokens one;
        cr_assert_eq(kiln_text_tokenize(texts[i], strlen(texts[i]), &one), KILN_STATUS_OK);
        cr_assert_eq(a[i].n, one.n, "document %d", i);
        cr_assert_eq(b[i].n, one.n, "document %d", i);
        for (int64_t k = 0; k < one.n; k++) {
            cr_expect_str_eq(a[i].tok[k], one.tok[k]);
            cr_expect_str_eq(b[i].tok[k], one.tok[k]);
        }
        kiln_tokens_free(&one);
        kiln_tokens_free(&a[i]);
        kiln_tokens_free(&b[i]);
    }
    free(a);
    free(b);
    free(texts);
    cJSON_Delete(j);
}

/* documents from space-separated strings, through kiln_text_split */
/* fastai's decode_spec_tokens, joined with spaces; tokenize then decode gives the text back but
 * for spaces around punctuation and a one-letter capital */
Test(text, decode_undoes_the_rules)
{
    const char *toks[] = {"xxbos", "xxmaj", "émile", "said", "xxup", "stop", "xxrep", "4", "!", "xxwrep", "3", "very",
                          "good", "xxpad", "xxmaj", "xxup", "ok", "xxrep", "x", "y", "xxmaj"};
    char *out = NULL;
    cr_assert_eq(kiln_text_decode(toks, 21, &out), KILN_STATUS_OK);
    cr_expect_str_eq(out, "Émile said STOP !!!! very very very good OK y");
    free(out);
    kiln_tokens t;
    const char *text = "I LOVED it!!! Really, really, really good.";
    cr_assert_eq(kiln_text_tokenize(text, strlen(text), &t), KILN_STATUS_OK);
    cr_assert_eq(kiln_text_decode((const char *const *)t.tok, t.n, &out), KILN_STATUS_OK);
    cr_expect_str_eq(out, "i LOVED it !!! Really , really , really good ."); /* fastai marks no one-letter capital */
    free(out);
    kiln_tokens_free(&t);
    cr_assert_eq(kiln_text_decode(NULL, 0, &out), KILN_STATUS_OK);
    cr_expect_str_eq(out, "");
    free(out);
    cr_expect_eq(kiln_text_decode(NULL, 2, &out), KILN_STATUS_INVALID);
}

static kiln_tokens *docs_of(const char *const *s, int n)
{
    kiln_tokens *d = calloc((size_t)n, sizeof *d);
    for (int i = 0; i < n; i++) cr_assert_eq(kiln_text_split(s[i], strlen(s[i]), &d[i]), KILN_STATUS_OK);
    return d;
}

static void free_docs(kiln_tokens *d, int n)
{
    for (int i = 0; i < n; i++) kiln_tokens_free(&d[i]);
    free(d);
}

Test(vocab, make_vocab_order_min_freq_specials_padding)
{
    /* counts: b 4, a 4 (a seen first), c 3, xxmaj 3 (a special: moved to its place), d 2, e 1 */
    const char *s[] = {"a b c xxmaj", "b a d c", "a b xxmaj e", "b c a d xxmaj"};
    kiln_tokens *d = docs_of(s, 4);
    kiln_vocab *v;
    cr_assert_eq(kiln_vocab_build(d, 4, NULL, &v), KILN_STATUS_OK, "%s", kiln_last_error());
    const char *want[] = {"xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj",
                          "a", "b", "c", "xxfake", "xxfake", "xxfake", "xxfake"};
    cr_assert_eq(kiln_vocab_size(v), 16);
    for (int i = 0; i < 16; i++) cr_expect_str_eq(kiln_vocab_token(v, i), want[i], "id %d", i);
    cr_expect_eq(kiln_vocab_id(v, "a"), 9);
    cr_expect_eq(kiln_vocab_id(v, "c"), 11);
    cr_expect_eq(kiln_vocab_id(v, "d"), KILN_TOK_UNK, "d is used twice, under min_freq 3");
    cr_expect_eq(kiln_vocab_id(v, "xxfake"), KILN_TOK_UNK);
    cr_expect_eq(kiln_vocab_id(v, "xxpad"), KILN_TOK_PAD);
    cr_expect_null(kiln_vocab_token(v, 16));
    int64_t ids[4], unk = -1;
    cr_expect_eq(d[1].n, 4);
    kiln_vocab_numericalize(v, &d[1], ids, &unk);
    cr_expect_eq(ids[0], 10);
    cr_expect_eq(ids[1], 9);
    cr_expect_eq(ids[2], KILN_TOK_UNK);
    cr_expect_eq(ids[3], 11);
    cr_expect_eq(unk, 1);
    kiln_vocab_free(v);
    /* min_freq 1, max_vocab 12: most_common(12) then the specials in front, cut at 12, padded */
    kiln_vocab_params p = {.max_vocab = 12, .min_freq = 1};
    cr_assert_eq(kiln_vocab_build(d, 4, &p, &v), KILN_STATUS_OK);
    cr_expect_eq(kiln_vocab_size(v), 16);
    cr_expect_str_eq(kiln_vocab_token(v, 11), "c");
    cr_expect_str_eq(kiln_vocab_token(v, 12), "xxfake");
    kiln_vocab_free(v);
    p = (kiln_vocab_params){.max_vocab = 5, .min_freq = 1};
    cr_expect_eq(kiln_vocab_build(d, 4, &p, &v), KILN_STATUS_INVALID);
    free_docs(d, 4);
}

Test(vocab, save_load_roundtrip_and_bad_files)
{
    const char *s[] = {"la la la le le le caf\xc3\xa9 caf\xc3\xa9 caf\xc3\xa9"};
    kiln_tokens *d = docs_of(s, 1);
    kiln_vocab *v, *w;
    cr_assert_eq(kiln_vocab_build(d, 1, NULL, &v), KILN_STATUS_OK);
    char dir[] = "/tmp/kiln_vocab_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    cr_assert_eq(kiln_vocab_save(v, path), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_vocab_load(path, &w), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_vocab_size(w), kiln_vocab_size(v));
    for (int64_t i = 0; i < kiln_vocab_size(v); i++) cr_expect_str_eq(kiln_vocab_token(w, i), kiln_vocab_token(v, i));
    cr_expect_eq(kiln_vocab_id(w, "caf\xc3\xa9"), kiln_vocab_id(v, "caf\xc3\xa9"));
    cr_expect_neq(kiln_vocab_id(w, "caf\xc3\xa9"), KILN_TOK_UNK);
    kiln_vocab_free(w);
    kiln_vocab_free(v);
    free_docs(d, 1);

    static const char specials[] = "xxunk\nxxpad\nxxbos\nxxeos\nxxfld\nxxrep\nxxwrep\nxxup\nxxmaj\n";
    static const struct { const char *tail, *needle; } bad[] = {
        {"a\n\nb\n", "line 11: an empty line"},
        {"a\nb c\n", "line 11: whitespace inside a token"},
        {"a\nb\na\n", "token \"a\" on line 12 is also on line 10"},
        {"a\n\xff\n", "line 11: invalid UTF-8"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        FILE *f = fopen(path, "wb");
        fprintf(f, "%s%s", specials, bad[k].tail);
        fclose(f);
        cr_expect_lt(kiln_vocab_load(path, &w), 0, "case %zu loaded", k);
        ku_expect_error(bad[k].needle, "bad vocabulary");
        ku_expect_error(path, "bad vocabulary names the file");
    }
    FILE *f = fopen(path, "wb");
    fprintf(f, "xxpad\nxxunk\n");
    fclose(f);
    cr_expect_lt(kiln_vocab_load(path, &w), 0);
    ku_expect_error("expected the special token \"xxunk\" (line 1)", "specials out of order");
    cr_expect_lt(kiln_vocab_load("/nonexistent/vocab.txt", &w), 0);
    ku_expect_error("/nonexistent/vocab.txt", "missing file");
    unlink(path);
    rmdir(dir);
}

Test(vocab, match_embeds_copies_known_rows_and_gives_new_ones_the_mean)
{
    const char *old_s[] = {"xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj",
                           "cat", "dog", "fish", "xxfake", "xxfake", "xxfake", "xxfake"};
    const char *new_s[] = {"xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj",
                           "dog", "bird", "cat", "xxfake", "xxfake", "xxfake", "xxfake"};
    kiln_vocab *o, *n;
    cr_assert_eq(kiln_vocab_from_list(old_s, 16, &o), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_vocab_from_list(new_s, 16, &n), KILN_STATUS_OK);
    float ow[16 * 2], nw[16 * 2], mean[2] = {0, 0};
    for (int i = 0; i < 16; i++) {
        ow[2 * i] = (float)i;
        ow[2 * i + 1] = (float)(i * i) * 0.5f;
        mean[0] += ow[2 * i] / 16;
        mean[1] += ow[2 * i + 1] / 16;
    }
    int64_t copied = -1;
    cr_assert_eq(kiln_vocab_match_embeds(o, ow, n, 2, nw, &copied), KILN_STATUS_OK);
    cr_expect_eq(copied, 11, "9 specials + dog + cat");
    for (int i = 0; i < 9; i++) cr_expect_eq(nw[2 * i + 1], ow[2 * i + 1], "special %d", i);
    cr_expect_eq(nw[2 * 9], ow[2 * 10], "dog");
    cr_expect_eq(nw[2 * 11 + 1], ow[2 * 9 + 1], "cat");
    for (int i = 10; i < 16; i += (i == 10 ? 2 : 1)) {
        cr_expect_float_eq(nw[2 * i], mean[0], 1e-5, "row %d gets the mean", i);
        cr_expect_float_eq(nw[2 * i + 1], mean[1], 1e-5, "row %d gets the mean", i);
    }
    float ob[16], nb[16];
    for (int i = 0; i < 16; i++) ob[i] = (float)-i;
    cr_assert_eq(kiln_vocab_match_embeds(o, ob, n, 1, nb, NULL), KILN_STATUS_OK);
    cr_expect_eq(nb[11], -9.0f, "the bias of cat");
    cr_expect_lt(kiln_vocab_match_embeds(o, ob, n, 0, nb, NULL), 0);
    kiln_vocab_free(o);
    kiln_vocab_free(n);
}
