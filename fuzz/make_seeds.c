/* Writes the small seed corpora of the fuzz targets, fuzz/corpus/<target>/, from kiln itself
 * and the image encoders it links: `make_seeds fuzz/corpus` (run by fuzz/run.sh --seeds; the
 * output is committed). Each seed is a few hundred bytes: valid files, and a few near misses. */
#include "kf_images.h"
#include "kf_learner.h"

#include "kiln/apps.h"
#include "kiln/learn_ext.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

static const char *g_root;

static void die(const char *what)
{
    fprintf(stderr, "make_seeds: %s: %s\n", what, kiln_last_error());
    exit(1);
}

static char *path_of(const char *target, const char *name)
{
    static char p[1024];
    snprintf(p, sizeof p, "%s/%s", g_root, target);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/%s/%s", g_root, target, name);
    return p;
}

static void put(const char *target, const char *name, const void *b, size_t n)
{
    FILE *f = fopen(path_of(target, name), "wb");
    if (!f || fwrite(b, 1, n, f) != n || fclose(f)) die(name);
}

static void idx_seeds(void)
{
    uint8_t img[16 + 2 * 3 * 2] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 2};
    for (int i = 16; i < (int)sizeof img; i++) img[i] = (uint8_t)(i * 37);
    put("idx", "images", img, sizeof img);
    uint8_t lab[8 + 3] = {0, 0, 8, 1, 0, 0, 0, 3, 1, 0, 2};
    put("idx", "labels", lab, sizeof lab);
    put("idx", "empty_images", (uint8_t[]){0, 0, 8, 3, 0, 0, 0, 0, 0, 0, 0, 28, 0, 0, 0, 28}, 16);
    gzFile gz = gzopen(path_of("idx", "images.gz"), "wb");
    if (!gz || gzwrite(gz, img, sizeof img) != (int)sizeof img || gzclose(gz) != Z_OK) die("images.gz");
}

static void csv_seeds(void)
{
    const char *s[] = {"name,label\na.png,cat\nb.jpg,dog\n",
                       "\xEF\xBB\xBFname,label,is_valid\r\na.png,cat,0\r\n\"b.jpg\",\"d\"\"og\",true\r\n",
                       "label,name\n\"x,\ny\",a.png\n\n7,b.jpg\n",
                       /* the reader alone: CR line ends, a CR in quotes, empty and ragged fields */
                       "a;b\r\"c\rd\",,\"\"\r\re,\"f\"\"\"\r\"g\"h,",
                       "name,label\na.png,\"unclosed\n"};
    char n[16];
    for (int i = 0; i < 5; i++) snprintf(n, sizeof n, "list%d.csv", i), put("csv", n, s[i], strlen(s[i]));
}

static void image_seeds(void)
{
    uint8_t px[5 * 3 * 3];
    for (int i = 0; i < (int)sizeof px; i++) px[i] = (uint8_t)(i * 29);
    const struct { const char *name; int w, h, c, jpeg; } im[] = {
        {"grey.png", 3, 2, 1, 0}, {"rgb.png", 5, 3, 3, 0}, {"grey.jpg", 3, 2, 1, 1}, {"rgb.jpg", 5, 3, 3, 1}};
    for (int i = 0; i < 4; i++) {
        uint8_t *b;
        size_t n;
        if ((im[i].jpeg ? kf_jpeg_encode : kf_png_encode)(px, im[i].w, im[i].h, im[i].c, &b, &n)) die(im[i].name);
        put("image", im[i].name, b, n);
        free(b);
    }
}

static void safetensors_seeds(kiln_ctx *ctx)
{
    kiln_tensor *a = kiln_empty(ctx, KILN_DTYPE_F32, 2, (int64_t[]){2, 3});
    kiln_tensor *b = kiln_empty(ctx, KILN_DTYPE_I64, 1, (int64_t[]){2});
    kiln_tensor *c = kiln_empty(ctx, KILN_DTYPE_U8, 1, (int64_t[]){0});
    if (!a || !b || !c) die("tensors");
    for (int i = 0; i < 6; i++) ((float *)a->data)[i] = (float)i - 2.5f;
    ((int64_t *)b->data)[0] = -1, ((int64_t *)b->data)[1] = 1ll << 40;
    kiln_st_entry e[] = {{"w", a}, {"n", b}, {"empty", c}};
    const char *meta[] = {"format", "pt", NULL};
    if (kiln_st_save(path_of("safetensors", "three.safetensors"), e, 3, meta)) die("safetensors");
    if (kiln_st_save(path_of("safetensors", "one.safetensors"), e, 1, NULL)) die("safetensors");
    const char h[] = "\x36\0\0\0\0\0\0\0{\"x\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2]}}\x00\x3c";
    put("safetensors", "f16.safetensors", h, sizeof h - 1);
}

static void checkpoint_seeds(void)
{
    kf_learn l = kf_learner_new();
    if (!l.learn) die("learner");
    if (kiln_checkpoint_save(l.learn, path_of("checkpoint", "fresh.safetensors"))) die("checkpoint");
    kiln_sched s;
    kiln_sched_const_params sp = kiln_sched_const_default_params();
    sp.iters = 2; /* one epoch of two batches */
    /* written at the end of the epoch, inside the fit: with the schedule */
    if (kiln_learner_add_checkpointing(l.learn, path_of("checkpoint", "infit.safetensors"), 1)) die("checkpointing");
    if (kiln_sched_const(&s, &sp) || kiln_learner_fit(l.learn, 1, &s)) die("fit");
    if (kiln_checkpoint_save(l.learn, path_of("checkpoint", "fit1.safetensors"))) die("checkpoint");
    kf_learner_free(&l);
}

static void modeljson_seeds(void)
{
    char *classes[3] = {"T-shirt/top", "caf\xc3\xa9", "7"};
    kiln_vision_model_info mi = {.arch = "simple-cnn", .n_in = 1, .size = 28, .n_classes = 2, .classes = classes,
                                 .norm = KILN_VISION_NORM_CUSTOM, .stats = {.mean = {0.286f}, .std = {0.353f}},
                                 .aug = kiln_augment_default_params(), .seed = 42, .valid_pct = 0.2,
                                 .n_params = 1234, .data = "fashion-mnist"};
    if (kiln_vision_model_info_write(path_of("modeljson", "grey.json"), &mi)) die("model.json");
    mi = (kiln_vision_model_info){.arch = "resnet18", .n_in = 3, .size = 64, .n_classes = 3, .classes = classes,
                                  .norm = KILN_VISION_NORM_NONE, .stats = {.std = {1, 1, 1}}, .augment = true,
                                  .aug = kiln_augment_default_params(), .seed = 9007199254740992ull};
    if (kiln_vision_model_info_write(path_of("modeljson", "rgb_augment.json"), &mi)) die("model.json");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR (fuzz/corpus)\n", argv[0]);
        return 2;
    }
    g_root = argv[1];
    mkdir(g_root, 0755);
    kiln_ctx_params cp = kiln_ctx_default_params();
    cp.arena_block_bytes = 1 << 20;
    kiln_ctx *ctx = kiln_ctx_new(&cp);
    if (!ctx) die("ctx");
    idx_seeds();
    csv_seeds();
    image_seeds();
    safetensors_seeds(ctx);
    checkpoint_seeds();
    modeljson_seeds();
    kiln_ctx_free(ctx);
    return 0;
}
