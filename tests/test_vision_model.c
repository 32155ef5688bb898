/* model.json in the library (kiln/vision_model.h): the older flat layout ("kiln-vision-model",
 * BASE below) and the common one every task shares ("kiln-model", format_version 1, V1) are
 * read with every field; each
 * bad value (not finite, out of range, not an integer, wrong type, repeated or empty class,
 * repeated key, trailing text, a NUL byte, invalid UTF-8) is refused with a message naming the
 * key; every truncation of a valid file is refused; files over the 64 MiB limit and folders
 * are refused by read, a 5 MiB one is read whole; the writer's output is strict JSON (cJSON +
 * a UTF-8 check of our own here) that reads back the same, and a class name that is not UTF-8
 * is refused with its byte offset (a data path's bad bytes become U+FFFD). */
#include "util/ku.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[64];

static const char *P(const char *rel)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, rel);
    return buf[k];
}

static void setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/kiln_vision_model.XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    (void)system(cmd);
}
TestSuite(vision_model, .init = setup, .fini = teardown);

static const char *const BASE =
    "{\"format\": \"kiln-vision-model\", \"version\": 1, \"arch\": \"simple-cnn\", \"n_in\": 3, \"size\": 28,\n"
    " \"resize\": \"crop\", \"n_classes\": 2, \"classes\": [\"cat\", \"dog\"],\n"
    " \"normalization\": {\"kind\": \"dataset\", \"mean\": [0.5, 0.4, 0.3], \"std\": [0.2, 0.25, 0.3]},\n"
    " \"augment\": true, \"augmentation\": {\"do_flip\": false, \"max_rotate\": 5, \"max_zoom\": 1.1, \"max_warp\": 0.2,\n"
    " \"max_lighting\": 0.1, \"p_affine\": 0.5, \"p_lighting\": 0.75},\n"
    " \"seed\": 7, \"valid_pct\": 0.25, \"n_params\": 1234, \"data\": \"pets\"}\n";

/* BASE with its first `from` replaced by `to` (malloc'd). */
static char *with(const char *from, const char *to) { return ku_replace(BASE, from, to); }

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

Test(vision_model, reads_every_field)
{
    kiln_vision_model_info mi;
    cr_assert_eq(kiln_vision_model_info_parse(BASE, strlen(BASE), "m.json", &mi), KILN_STATUS_OK, "%s",
                 kiln_last_error());
    cr_expect_str_eq(mi.arch, "simple-cnn");
    cr_expect_eq(mi.n_in, 3);
    cr_expect_eq(mi.size, 28);
    cr_assert_eq(mi.n_classes, 2);
    cr_expect_str_eq(mi.classes[0], "cat");
    cr_expect_str_eq(mi.classes[1], "dog");
    cr_expect_eq(mi.norm, KILN_VISION_NORM_CUSTOM);
    cr_expect_float_eq(mi.stats.mean[2], 0.3f, 1e-7);
    cr_expect_float_eq(mi.stats.std[1], 0.25f, 1e-7);
    cr_expect(mi.augment && !mi.aug.do_flip);
    cr_expect_float_eq(mi.aug.max_rotate, 5.0f, 1e-7);
    cr_expect_float_eq(mi.aug.p_affine, 0.5f, 1e-7);
    cr_expect_eq(mi.seed, 7);
    cr_expect_float_eq(mi.valid_pct, 0.25, 1e-12);
    cr_expect_eq(mi.n_params, 1234);
    cr_expect_str_eq(mi.data, "pets");
    kiln_vision_model_info_free(&mi);
    cr_expect_null(mi.classes);
}

/* Files from before version/augmentation/seed/valid_pct existed get the defaults; an unknown
 * key (a newer kiln's) is accepted with a warning. */
Test(vision_model, optional_keys_default_unknown_keys_accepted)
{
    const char *old = "{\"format\": \"kiln-vision-model\", \"arch\": \"resnet18\", \"n_in\": 1, \"size\": 64,"
                      " \"classes\": [\"a\", \"b\", \"c\"], \"normalization\": {\"mean\": [0.1], \"std\": [0.3]},"
                      " \"colour\": \"red\"}";
    kiln_vision_model_info mi;
    fflush(stderr);
    int saved = dup(2), fd = open(P("err"), O_CREAT | O_WRONLY | O_TRUNC, 0644);
    cr_assert(saved >= 0 && fd >= 0 && dup2(fd, 2) == 2);
    kiln_status st = kiln_vision_model_info_parse(old, strlen(old), NULL, &mi);
    fflush(stderr);
    dup2(saved, 2);
    close(fd), close(saved);
    cr_assert_eq(st, KILN_STATUS_OK, "%s", kiln_last_error());
    char *err = ku_slurp(P("err"));
    cr_expect(strstr(err, "kiln: warning: model.json: unknown key \"colour\" ignored"), "stderr: %s", err);
    free(err);
    cr_expect_eq(mi.n_classes, 3);
    cr_expect_eq(mi.seed, 42);
    cr_expect_float_eq(mi.valid_pct, 0.2, 1e-12);
    cr_expect(mi.augment);
    kiln_augment_params d = kiln_augment_default_params();
    cr_expect_float_eq(mi.aug.max_zoom, d.max_zoom, 1e-7);
    cr_expect_null(mi.data);
    kiln_vision_model_info_free(&mi);
}

typedef struct bad_case {
    const char *from, *to, *needle;
} bad_case;

/* Each edit of BASE is refused (FORMAT) with a message that names the key. */
Test(vision_model, bad_values_are_refused_by_key)
{
    const bad_case cases[] = {
        {"[0.5, 0.4", "[1e999, 0.4", "normalization.mean[0] is not a finite number"},
        {"[0.5, 0.4", "[-1e999, 0.4", "normalization.mean[0] is not a finite number"},
        {"[0.5, 0.4", "[1e300, 0.4", "normalization.mean[0] is 1e+300, too large for a 32-bit float"},
        {"0.25, 0.3]", "0, 0.3]", "normalization.std[1] must be > 0"},
        {"0.25, 0.3]", "-0.25, 0.3]", "normalization.std[1] must be > 0"},
        {"0.25, 0.3]", "1e-60, 0.3]", "normalization.std[1] must be > 0"}, /* 0 as a float */
        {"0.25, 0.3]", "1e999, 0.3]", "normalization.std[1] is not a finite number"},
        {"0.25, 0.3]", "\"0.25\", 0.3]", "normalization.std[1] is not a number"},
        {"[0.2, 0.25, 0.3]", "[0.2, 0.25]", "normalization.std is not an array of n_in (3) numbers"},
        {"\"kind\": \"dataset\"", "\"kind\": \"zca\"", "normalization.kind"},
        {"\"normalization\": {", "\"normalisation\": {\"x\": 1}, \"n\": {", "normalization is not an object"},
        {"\"size\": 28", "\"size\": 28.9", "size must be an integer (it is 28.9"},
        {"\"size\": 28", "\"size\": 0", "size is 0, outside [1, 4096]"},
        {"\"size\": 28", "\"size\": 1e999", "size is not a finite number"},
        {"\"size\": 28", "\"size\": 4097", "size is 4097, outside"},
        {"\"n_in\": 3", "\"n_in\": 2", "n_in is 2"},
        {"\"n_in\": 3", "\"n_in\": 1", "normalization.mean is not an array of n_in (1) numbers"},
        {"\"n_in\": 3", "\"n_in\": true", "n_in is not a number"},
        {"\"seed\": 7", "\"seed\": 1e300", "seed is 1e+300, outside [0, 9007199254740992]"},
        {"\"seed\": 7", "\"seed\": 9007199254740994", "seed is 9007199254740994, outside"},
        {"\"seed\": 7", "\"seed\": -1", "seed is -1, outside"},
        {"\"seed\": 7", "\"seed\": 7.5", "seed must be an integer"},
        {"\"seed\": 7", "\"seed\": \"7\"", "seed is not a number"},
        {"\"n_params\": 1234", "\"n_params\": -5", "n_params is -5"},
        {"\"valid_pct\": 0.25", "\"valid_pct\": 1", "valid_pct is 1"},
        {"\"valid_pct\": 0.25", "\"valid_pct\": 1e999", "valid_pct is not a finite number"},
        {"\"n_classes\": 2", "\"n_classes\": 3", "n_classes is 3 but classes holds 2 names"},
        {"\"n_classes\": 2", "\"n_classes\": 2.5", "n_classes must be an integer"},
        {"[\"cat\", \"dog\"]", "[]", "classes is not a non-empty array"},
        {"[\"cat\", \"dog\"]", "\"cat\"", "classes is not a non-empty array"},
        {"[\"cat\", \"dog\"]", "[\"cat\", \"cat\"]", "classes[1] repeats classes[0] (\"cat\")"},
        {"[\"cat\", \"dog\"]", "[\"cat\", \"\"]", "classes[1] is empty"},
        {"[\"cat\", \"dog\"]", "[\"cat\", 7]", "classes[1] is not a string"},
        {"\"p_affine\": 0.5", "\"p_affine\": 7.5", "augmentation holds values out of range (augment: p_affine"},
        {"\"max_rotate\": 5", "\"max_rotate\": 1e999", "augmentation.max_rotate is not a finite number"},
        {"\"max_zoom\": 1.1", "\"max_zoom\": 1e300", "augmentation.max_zoom is 1e+300, too large"},
        {"\"do_flip\": false", "\"do_flip\": 0", "augmentation.do_flip is not true or false"},
        {"\"augment\": true", "\"augment\": \"yes\"", "augment is not true or false"},
        {"\"augmentation\": {", "\"augmentation\": [], \"x\": {", "augmentation is not an object"},
        {"\"kiln-vision-model\"", "\"kiln-text-model\"", "format is not \"kiln-model\" (nor the older \"kiln-vision-model\")"},
        {"\"version\": 1", "\"version\": 2", "version is 2, outside [1, 1]"},
        {"\"arch\": \"simple-cnn\"", "\"arch\": 3", "arch is not a string"},
        {"\"arch\": \"simple-cnn\"", "\"arch\": \"\"", "arch must be 1 to 31 bytes long"},
        {"\"arch\": \"simple-cnn\", ", "", "arch is missing"},
        {"\"resize\": \"crop\"", "\"resize\": \"squish\"", "resize is not \"crop\""},
        {"\"data\": \"pets\"", "\"data\": 5", "data is not a string"},
        {"\"data\": \"pets\"", "\"data\": \"pets\", \"seed\": 8", "key \"seed\" appears twice"},
        {"\"kind\": \"dataset\"", "\"kind\": \"dataset\", \"kind\": \"none\"", "key normalization.\"kind\" appears twice"},
        {"\"pets\"}", "\"pets\"} {}", "not valid JSON at line 6, column 66 (near '{}"},
        {"\"pets\"}", "\"pets\"", "not valid JSON: the text ends early"},
        {"\"pets\"", "\"p\xff" "ets\"", "not valid UTF-8 at line 6, column 60"},
        {"\"pets\"", "\"p\xed\xa0\x80" "ets\"", "not valid UTF-8"}, /* an encoded surrogate */
        {"\"pets\"", "\"p\xc0\xae" "ets\"", "not valid UTF-8"},     /* overlong */
        {"{\"format\"", "[{\"format\"", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = with(cases[i].from, cases[i].to);
        kiln_vision_model_info mi;
        kiln_status st = kiln_vision_model_info_parse(text, strlen(text), "dir/model.json", &mi);
        cr_expect_eq(st, KILN_STATUS_FORMAT, "case %zu (%s): status %d, want FORMAT", i, cases[i].to, st);
        cr_expect(strstr(kiln_last_error(), "dir/model.json: "), "case %zu: '%s' does not name the file", i,
                  kiln_last_error());
        cr_expect(strstr(kiln_last_error(), cases[i].needle), "case %zu (%s): '%s' does not mention '%s'", i,
                  cases[i].to, kiln_last_error(), cases[i].needle);
        cr_expect_null(mi.classes, "case %zu: classes left allocated after an error", i);
        kiln_vision_model_info_free(&mi);
        free(text);
    }
}

/* The case: the 11 bytes `{"format": ` (and every other cut of a valid file) are
 * refused with a message, never a crash; so is a NUL byte inside. */
Test(vision_model, every_truncation_is_refused)
{
    size_t n = strlen(BASE) - 1; /* without its final line break */
    char *buf = malloc(n);
    for (size_t k = 0; k < n; k++) {
        memcpy(buf, BASE, k); /* exactly k bytes, no terminator: the parser must stay inside */
        kiln_vision_model_info mi;
        kiln_status st = kiln_vision_model_info_parse(k ? buf : NULL, k, NULL, &mi);
        cr_assert_neq(st, KILN_STATUS_OK, "a cut after %zu bytes was accepted", k);
        cr_assert(*kiln_last_error(), "no message for a cut after %zu bytes", k);
        kiln_vision_model_info_free(&mi);
    }
    free(buf);
    kiln_vision_model_info mi;
    cr_expect_eq(kiln_vision_model_info_parse("{\"format\": ", 11, NULL, &mi), KILN_STATUS_FORMAT);
    ku_expect_error("model.json: not valid JSON: the text ends early (line 1, column 12)", "11 bytes");
    cr_expect_eq(kiln_vision_model_info_parse(BASE, strlen(BASE) + 1, NULL, &mi), KILN_STATUS_FORMAT);
    ku_expect_error("a NUL byte at line 7, column 1", "NUL byte");
}

Test(vision_model, read_refuses_folders_missing_and_huge_files)
{
    kiln_vision_model_info mi;
    cr_assert(mkdir(P("model.json"), 0777) == 0);
    cr_expect_eq(kiln_vision_model_info_read(P("model.json"), &mi), KILN_STATUS_IO);
    ku_expect_error("model.json: it is a folder, not a file", "folder");
    cr_expect_eq(kiln_vision_model_info_read(P("nothere.json"), &mi), KILN_STATUS_IO);
    ku_expect_error("nothere.json: No such file", "missing");
    /* one byte over the limit (a sparse file: nothing is read) */
    int fd = open(P("huge.json"), O_CREAT | O_WRONLY, 0644);
    cr_assert(fd >= 0 && ftruncate(fd, (off_t)KILN_VISION_MODEL_INFO_MAX_BYTES + 1) == 0);
    close(fd);
    cr_expect_eq(kiln_vision_model_info_read(P("huge.json"), &mi), KILN_STATUS_FORMAT);
    ku_expect_error("more than the limit of 64 MiB", "huge");
    cr_expect_null(mi.classes);
}

/* A valid 5 MiB file (above the old silent 4 MiB cut) is read whole. */
Test(vision_model, read_takes_a_5_mib_file_whole)
{
    size_t big = (size_t)5 << 20;
    char *data = malloc(big + 1);
    memset(data, 'd', big);
    data[big] = '\0';
    char *tail = malloc(big + 32);
    snprintf(tail, big + 32, "\"data\": \"%s\"", data);
    char *text = with("\"data\": \"pets\"", tail);
    write_file(P("model.json"), text, strlen(text));
    kiln_vision_model_info mi;
    cr_assert_eq(kiln_vision_model_info_read(P("model.json"), &mi), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(strlen(mi.data), big);
    cr_expect_eq(mi.n_classes, 2);
    kiln_vision_model_info_free(&mi);
    free(text);
    free(tail);
    free(data);
}

/* Strict UTF-8, written here independently of the library's check. */
static bool utf8_strict(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t c = s[i], cp;
        int len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (!len || i + (size_t)len > n) return false;
        cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
        for (int k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += (size_t)len;
    }
    return true;
}

static kiln_vision_model_info sample(char **classes, int n)
{
    kiln_vision_model_info mi = {.n_in = 1, .size = 16, .n_classes = n, .classes = classes,
                                 .norm = KILN_VISION_NORM_DATASET, .augment = true, .seed = 9007199254740992ull,
                                 .valid_pct = 0.1, .n_params = 99, .data = "runs/data"};
    snprintf(mi.arch, sizeof mi.arch, "simple-resnet");
    mi.stats.mean[0] = 0.1234567f, mi.stats.std[0] = 3.5e-3f;
    mi.aug = kiln_augment_default_params();
    mi.aug.max_rotate = 12.5f;
    return mi;
}

/* Written model.json is strict JSON (cJSON parses it, every byte is valid UTF-8) and reads
 * back field for field, with names holding quotes, backslashes, line breaks and non-ASCII. */
Test(vision_model, write_round_trips_as_strict_json)
{
    char *names[] = {"caf\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac", "a \"quoted\" \\ name", "two\nlines", "\xf0\x9f\x90\x88"};
    kiln_vision_model_info mi = sample(names, 5);
    cr_assert_eq(kiln_vision_model_info_write(P("model.json"), &mi), KILN_STATUS_OK, "%s", kiln_last_error());
    char *text = ku_slurp(P("model.json"));
    size_t n = strlen(text);
    cr_expect(utf8_strict((const unsigned char *)text, n), "model.json is not strict UTF-8");
    cJSON *j = cJSON_ParseWithLength(text, n);
    cr_assert(j, "model.json is not JSON: %s", text);
    cr_expect_str_eq(cJSON_GetObjectItem(j, "format")->valuestring, "kiln-model");
    cr_expect_eq(cJSON_GetObjectItem(j, "format_version")->valuedouble, 1);
    cr_expect_str_eq(cJSON_GetObjectItem(j, "task")->valuestring, "vision");
    cr_expect_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "training"), "seed")->valuedouble, 9007199254740992.0);
    cJSON_Delete(j);
    free(text);
    kiln_vision_model_info back;
    cr_assert_eq(kiln_vision_model_info_read(P("model.json"), &back), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_str_eq(back.arch, "simple-resnet");
    cr_expect_eq(back.n_in, 1);
    cr_expect_eq(back.size, 16);
    cr_assert_eq(back.n_classes, 5);
    for (int i = 0; i < 5; i++) cr_expect_str_eq(back.classes[i], names[i]);
    cr_expect_eq(back.stats.mean[0], mi.stats.mean[0], "floats round-trip exactly");
    cr_expect_eq(back.stats.std[0], mi.stats.std[0]);
    cr_expect_eq(back.aug.max_rotate, 12.5f);
    cr_expect_eq(back.seed, 9007199254740992ull);
    cr_expect_float_eq(back.valid_pct, 0.1, 1e-15);
    cr_expect_eq(back.n_params, 99);
    cr_expect_str_eq(back.data, "runs/data");
    kiln_vision_model_info_free(&back);
    struct stat st;
    cr_expect(stat(P("model.json.tmp"), &st) != 0, "no temp file left");
}

/* A class folder name in Latin-1 ("caf\xE9") cannot go into JSON: refused, naming the name and
 * the byte, and nothing is written. So are repeated names, an oversized seed, a bad std. */
Test(vision_model, write_refuses_what_it_could_not_read_back)
{
    char *names[] = {"ok", "caf\xe9"};
    kiln_vision_model_info mi = sample(names, 2);
    cr_expect_eq(kiln_vision_model_info_write(P("model.json"), &mi), KILN_STATUS_INVALID);
    ku_expect_error("classes[1] (the folder name \"caf\\xE9\") is not valid UTF-8 at byte 3", "latin-1 name");
    struct stat st;
    cr_expect(stat(P("model.json"), &st) != 0, "model.json written despite the error");
    char *dup[] = {"x", "x"};
    mi = sample(dup, 2);
    cr_expect_eq(kiln_vision_model_info_check(&mi), KILN_STATUS_INVALID);
    ku_expect_error("classes[1] repeats classes[0]", "repeat");
    char *fine[] = {"x", "y"};
    mi = sample(fine, 2);
    mi.seed = 9007199254740993ull;
    cr_expect_eq(kiln_vision_model_info_check(&mi), KILN_STATUS_INVALID);
    ku_expect_error("seed 9007199254740993 is above 2^53", "seed");
    mi = sample(fine, 2);
    mi.stats.std[0] = NAN;
    cr_expect_eq(kiln_vision_model_info_check(&mi), KILN_STATUS_INVALID);
    ku_expect_error("normalization.std[0] must be finite and > 0", "std");
}

/* "data" only records where the model came from: a path that is not UTF-8 is written with
 * U+FFFD for its bad bytes (and a warning), so the file stays valid JSON. */
Test(vision_model, write_replaces_bad_bytes_in_data)
{
    char *fine[] = {"x", "y"};
    kiln_vision_model_info mi = sample(fine, 2);
    mi.data = "d\xff/caf\xe9s\xc3";
    cr_assert_eq(kiln_vision_model_info_write(P("model.json"), &mi), KILN_STATUS_OK, "%s", kiln_last_error());
    char *text = ku_slurp(P("model.json"));
    cr_expect(utf8_strict((const unsigned char *)text, strlen(text)), "model.json is not strict UTF-8");
    free(text);
    kiln_vision_model_info back;
    cr_assert_eq(kiln_vision_model_info_read(P("model.json"), &back), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_str_eq(back.data, "d\xef\xbf\xbd/caf\xef\xbf\xbds\xef\xbf\xbd");
    kiln_vision_model_info_free(&back);
}

/* ---- the common layout (format "kiln-model", format_version 1) ---------------------------- */

static const char *const V1 =
    "{\"format\": \"kiln-model\", \"format_version\": 1, \"task\": \"vision\", \"arch\": \"simple-cnn\",\n"
    " \"n_params\": 1234, \"n_classes\": 2, \"classes\": [\"cat\", \"dog\"],\n"
    " \"normalization\": {\"kind\": \"dataset\", \"mean\": [0.5, 0.4, 0.3], \"std\": [0.2, 0.25, 0.3]},\n"
    " \"preprocessing\": {\"n_in\": 3, \"size\": 28, \"resize\": \"crop\"},\n"
    " \"augmentation\": {\"do_flip\": false, \"max_rotate\": 5, \"max_zoom\": 1.1, \"max_warp\": 0.2,\n"
    " \"max_lighting\": 0.1, \"p_affine\": 0.5, \"p_lighting\": 0.75},\n"
    " \"training\": {\"seed\": 7, \"valid_pct\": 0.25, \"data\": \"pets\"}, \"vision\": {}}\n";

static char *v1_with(const char *from, const char *to) { return ku_replace(V1, from, to); }

/* Both layouts describe the same model: every field reads the same. */
Test(vision_model, common_layout_reads_as_the_older_one)
{
    kiln_vision_model_info a, b;
    cr_assert_eq(kiln_vision_model_info_parse(V1, strlen(V1), NULL, &a), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_vision_model_info_parse(BASE, strlen(BASE), NULL, &b), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_str_eq(a.arch, b.arch);
    cr_expect_eq(a.n_in, 3);
    cr_expect_eq(a.size, 28);
    cr_expect_eq(a.n_classes, 2);
    cr_expect_str_eq(a.classes[1], "dog");
    cr_expect(a.augment && b.augment);
    cr_expect_eq(a.aug.max_rotate, 5.0f);
    cr_expect_eq(a.aug.do_flip, false);
    cr_expect_eq(memcmp(&a.stats, &b.stats, sizeof a.stats), 0);
    cr_expect_eq(a.seed, 7);
    cr_expect_float_eq(a.valid_pct, 0.25, 1e-15);
    cr_expect_eq(a.n_params, 1234);
    cr_expect_str_eq(a.data, "pets");
    kiln_vision_model_info_free(&a);
    kiln_vision_model_info_free(&b);
    /* augmentation null: a model trained without; training absent: the defaults */
    char *t = v1_with("\"augmentation\": {\"do_flip\": false, \"max_rotate\": 5, \"max_zoom\": 1.1, \"max_warp\": 0.2,\n"
                      " \"max_lighting\": 0.1, \"p_affine\": 0.5, \"p_lighting\": 0.75},\n"
                      " \"training\": {\"seed\": 7, \"valid_pct\": 0.25, \"data\": \"pets\"}, ",
                      "\"augmentation\": null, ");
    cr_assert_eq(kiln_vision_model_info_parse(t, strlen(t), NULL, &a), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_not(a.augment);
    cr_expect_eq(a.seed, 42);
    cr_expect_float_eq(a.valid_pct, 0.2, 1e-15);
    cr_expect_null(a.data);
    kiln_vision_model_info_free(&a);
    free(t);
}

/* A field a later kiln adds (at the top, in a part, in the task's part) warns and loads; a
 * newer format_version, another task, a missing part or a bad value is refused by key. */
Test(vision_model, common_layout_refuses_by_key_and_takes_new_fields)
{
    const char *later[] = {"\"vision\": {\"crop_pct\": 0.9}", "\"vision\": {}, \"label_smoothing\": 0.1"};
    for (int i = 0; i < 2; i++) {
        char *t = v1_with("\"vision\": {}", later[i]);
        kiln_vision_model_info mi;
        cr_expect_eq(kiln_vision_model_info_parse(t, strlen(t), NULL, &mi), KILN_STATUS_OK, "%s: %s", later[i],
                     kiln_last_error());
        kiln_vision_model_info_free(&mi);
        free(t);
    }
    const struct {
        const char *from, *to, *needle;
    } cases[] = {
        {"\"format_version\": 1", "\"format_version\": 2", "format_version 2 is newer than this kiln reads (1)"},
        {"\"format_version\": 1, ", "", "format_version is missing"},
        {"\"format_version\": 1", "\"format_version\": 0", "format_version is 0, outside"},
        {"\"task\": \"vision\"", "\"task\": \"text\"", "task \"text\" is not one this kiln knows"},
        {"\"task\": \"vision\", ", "", "task is missing"},
        {"\"preprocessing\": {\"n_in\": 3, \"size\": 28, \"resize\": \"crop\"},\n", "", "preprocessing is missing"},
        {"\"n_in\": 3", "\"n_in\": 2", "preprocessing.n_in is 2"},
        {"\"size\": 28", "\"size\": 0", "preprocessing.size is 0, outside [1, 4096]"},
        {"\"size\": 28, ", "", "preprocessing.size is missing"},
        {"\"seed\": 7", "\"seed\": -1", "training.seed is -1, outside"},
        {"\"valid_pct\": 0.25", "\"valid_pct\": 1", "training.valid_pct is 1"},
        {"\"training\": {", "\"training\": [], \"x\": {", "training is not an object"},
        {"\"vision\": {}", "\"vision\": 3", "vision is not an object"},
        {"\"std\": [0.2, 0.25, 0.3]", "\"std\": [0.2, 0, 0.3]", "normalization.std[1] must be > 0"},
        {"\"augmentation\": {", "\"x\": {", "augmentation is missing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = v1_with(cases[i].from, cases[i].to);
        kiln_vision_model_info mi;
        cr_expect_eq(kiln_vision_model_info_parse(t, strlen(t), "d/model.json", &mi), KILN_STATUS_FORMAT,
                     "case %zu (%s)", i, cases[i].to);
        cr_expect(strstr(kiln_last_error(), cases[i].needle), "case %zu: '%s' does not mention '%s'", i,
                  kiln_last_error(), cases[i].needle);
        cr_expect_null(mi.classes);
        kiln_vision_model_info_free(&mi);
        free(t);
    }
}
