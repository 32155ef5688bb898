/* Pretrained torchvision ResNet weights into the body of a fastai-style vision model: the
 * body is torchvision's children up to layer4 under positional names, so keys map one to
 * one ("conv1.weight" -> "0.0.weight", "layer1.0.conv1.weight" -> "0.4.0.conv1.weight") and
 * fc.* has no place. As kiln_model_load, everything is checked before anything is copied.
 * A model with n_in != 3 gets conv1 adapted from the RGB weights as fastai does. */
#include "nn/nn_internal.h"

#include "kiln/models.h"

#include <stdio.h>
#include <string.h>

#define NBT ".num_batches_tracked"
#define LIST_MAX 5 /* names listed per kind of problem before "..." */

/* torchvision prefix <-> body prefix */
static const char *const TV[6] = {"conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4."};
static const char *const BODY[6] = {"0.0.", "0.1.", "0.4.", "0.5.", "0.6.", "0.7."};

/* Replaces prefix from[i] of key by to[i]; false when no prefix matches or out is too small. */
static bool map_key(const char *key, const char *const *from, const char *const *to, char *out, size_t cap)
{
    if (!key || !out) return false;
    for (int i = 0; i < 6; i++) {
        size_t n = strlen(from[i]);
        if (strncmp(key, from[i], n) != 0 || !key[n]) continue;
        int w = snprintf(out, cap, "%s%s", to[i], key + n);
        return w > 0 && (size_t)w < cap;
    }
    return false;
}

bool kiln_resnet_body_key(const char *torchvision_key, char *out, size_t cap)
{
    return map_key(torchvision_key, TV, BODY, out, cap);
}

static bool is_bn(const kiln_module *m)
{
    return m->kind == KILN_MODULE_BATCH_NORM1D || m->kind == KILN_MODULE_BATCH_NORM2D;
}

typedef struct problems {
    char buf[400];
    size_t len;
    int count;
} problems;

static void note(problems *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(problems *l, const char *fmt, ...)
{
    if (++l->count > LIST_MAX) return;
    char item[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(item, sizeof item, fmt, ap);
    va_end(ap);
    int n = snprintf(l->buf + l->len, sizeof l->buf - l->len, "%s%s", l->count > 1 ? ", " : "", item);
    if (n > 0) l->len = l->len + (size_t)n < sizeof l->buf ? l->len + (size_t)n : sizeof l->buf - 1;
}

/* Is "<body key>" a num_batches_tracked of one of the model's BatchNorms? */
static kiln_module *nbt_owner(kiln_model *model, const char *key)
{
    size_t n = strlen(key), s = strlen(NBT);
    char path[512];
    if (n < s || n - s >= sizeof path || strcmp(key + n - s, NBT) != 0) return NULL;
    memcpy(path, key, n - s);
    path[n - s] = '\0';
    kiln_module *m = kiln_model_find(model, path);
    return m && is_bn(m) ? m : NULL;
}

/* fastai _load_pretrained_weights: w (O, n_in, kh, kw) from rgb (O, 3, kh, kw). */
static void adapt_first_conv(kiln_tensor *w, const float *rgb)
{
    int64_t o = w->shape[0], c = w->shape[1], k = w->shape[2] * w->shape[3];
    float *d = w->data;
    for (int64_t i = 0; i < o; i++) {
        const float *src = rgb + i * 3 * k;
        float *dst = d + i * c * k;
        for (int64_t j = 0; j < k; j++) {
            if (c == 1) {
                dst[j] = src[j] + src[k + j] + src[2 * k + j]; /* sum(dim=1, keepdim=True) */
            } else if (c == 2) {
                dst[j] = src[j] * 1.5f; /* weight[:, :2] * 3 / 2 */
                dst[k + j] = src[k + j] * 1.5f;
            } else {
                for (int64_t ch = 0; ch < c; ch++) dst[ch * k + j] = ch < 3 ? src[ch * k + j] : 0.0f;
            }
        }
    }
}

/* Is model entry t conv1's weight with n_in != 3 while the file has (O, 3, kh, kw)? */
static bool adaptable(const kiln_tensor *t, int nd, const int64_t *fshape)
{
    return strcmp(t->name, "0.0.weight") == 0 && t->ndim == 4 && nd == 4 && t->shape[1] != 3 && fshape[1] == 3 &&
           fshape[0] == t->shape[0] && fshape[2] == t->shape[2] && fshape[3] == t->shape[3];
}

static kiln_status load(kiln_model *model, const kiln_st_file *f, bool strict)
{
    problems missing = {0}, unexpected = {0}, mismatch = {0};
    char key[640], a[96], b[96];
    kiln_tensor *conv1 = NULL; /* set when conv1 needs adapting */
    size_t n = kiln_store_count(model->store), n_body = 0;
    for (size_t i = 0; i < n; i++) {
        kiln_tensor *t = kiln_store_at(model->store, i);
        if (strncmp(t->name, "0.", 2) != 0) continue; /* the head */
        n_body++;
        if (!map_key(t->name, BODY, TV, key, sizeof key)) {
            note(&mismatch, "%s has no torchvision name", t->name);
            continue;
        }
        kiln_dtype dt;
        int nd;
        int64_t shape[KILN_MAX_DIMS];
        const void *data;
        size_t nbytes;
        if (!kiln_st_has(f, key)) {
            note(&missing, "%s", key);
            continue;
        }
        if (kiln_st_info(f, key, &dt, &nd, shape, &data, &nbytes) < 0) return KILN_STATUS_INVALID;
        kiln_tensor ft;
        kiln_tensor_wrap(&ft, dt, nd, shape, NULL);
        if (dt != KILN_DTYPE_F32 && dt != KILN_DTYPE_F16 && dt != KILN_DTYPE_BF16)
            note(&mismatch, "%s is %s, expected a float type", key, kiln_dtype_name(dt));
        else if (adaptable(t, nd, shape))
            conv1 = t;
        else if (!kiln_same_shape(&ft, t))
            note(&mismatch, "%s has shape %s in the file, %s in the model (%s)", key, kiln_shape_str(&ft, a, sizeof a),
                 kiln_shape_str(t, b, sizeof b), t->name);
    }
    if (n_body == 0)
        return kiln__err(KILN_STATUS_INVALID, "vision_model_load_pretrained: the model has no body \"0.*\" parameters");
    for (size_t j = 0; j < kiln_st_count(f); j++) {
        const char *name = kiln_st_name(f, j);
        if (strncmp(name, "fc.", 3) == 0) continue;
        if (map_key(name, TV, BODY, key, sizeof key)) {
            if (kiln_store_find(model->store, key)) continue;
            kiln_module *bn = nbt_owner(model, key);
            if (bn) {
                kiln_dtype dt;
                int nd;
                int64_t shape[KILN_MAX_DIMS];
                const void *data;
                size_t nbytes;
                if (kiln_st_info(f, name, &dt, &nd, shape, &data, &nbytes) < 0) return KILN_STATUS_INVALID;
                if (dt != KILN_DTYPE_I64 || nbytes != sizeof(int64_t))
                    note(&mismatch, "%s must be one I64, got %s", name, kiln_dtype_name(dt));
                continue;
            }
        }
        note(&unexpected, "%s", name);
    }
    if (missing.count || mismatch.count || (strict && unexpected.count)) {
        char msg[1400];
        size_t len = 0;
        const problems *ls[3] = {&missing, &unexpected, &mismatch};
        const char *what[3] = {"missing keys", "unexpected keys", "size mismatch"};
        for (int k = 0; k < 3; k++) {
            if (!ls[k]->count || (k == 1 && !strict)) continue;
            int w = snprintf(msg + len, sizeof msg - len, "%s%s (%d): %s%s", len ? "; " : "", what[k], ls[k]->count,
                             ls[k]->buf, ls[k]->count > LIST_MAX ? ", ..." : "");
            if (w > 0) len = len + (size_t)w < sizeof msg ? len + (size_t)w : sizeof msg - 1;
        }
        return kiln__err(KILN_STATUS_INVALID, "vision_model_load_pretrained: %s: %s", kiln_st_path(f), msg);
    }

    /* Everything checked: copy. Only an allocation failure can stop it now, before any copy. */
    float *rgb = NULL;
    kiln_tensor tmp;
    if (conv1) {
        int64_t shape[4] = {conv1->shape[0], 3, conv1->shape[2], conv1->shape[3]};
        size_t bytes = (size_t)(shape[0] * 3 * shape[2] * shape[3]) * sizeof(float);
        if (!(rgb = malloc(bytes))) return kiln__err(KILN_STATUS_NOMEM, "vision_model_load_pretrained: out of memory");
        kiln_tensor_wrap(&tmp, KILN_DTYPE_F32, 4, shape, rgb);
        kiln_status st = kiln_st_load_into(f, "conv1.weight", &tmp);
        if (st < 0) {
            free(rgb);
            return st;
        }
    }
    kiln_status st = KILN_STATUS_OK;
    for (size_t i = 0; i < n && st == KILN_STATUS_OK; i++) {
        kiln_tensor *t = kiln_store_at(model->store, i);
        if (strncmp(t->name, "0.", 2) != 0) continue;
        if (t == conv1)
            adapt_first_conv(t, rgb);
        else if (map_key(t->name, BODY, TV, key, sizeof key))
            st = kiln_st_load_into(f, key, t);
    }
    free(rgb);
    for (size_t i = 0; i < model->n_mods && st == KILN_STATUS_OK; i++) {
        kiln_module *m = model->mods[i];
        char tv[600];
        int w = snprintf(key, sizeof key, "%s%s", m->path, NBT);
        if (!is_bn(m) || w < 0 || (size_t)w >= sizeof key || !map_key(key, BODY, TV, tv, sizeof tv) || !kiln_st_has(f, tv))
            continue;
        kiln_dtype dt;
        int nd;
        int64_t shape[KILN_MAX_DIMS];
        const void *data;
        size_t nbytes;
        if (kiln_st_info(f, tv, &dt, &nd, shape, &data, &nbytes) == KILN_STATUS_OK)
            memcpy(&m->num_batches_tracked, data, sizeof(int64_t));
    }
    return st;
}

kiln_status kiln_vision_model_load_pretrained(kiln_model *model, const char *path, bool strict)
{
    if (!model || !path) return kiln__err(KILN_STATUS_INVALID, "vision_model_load_pretrained: needs a model and a path");
    if (!model->allocated) return kiln__err(KILN_STATUS_STATE, "vision_model_load_pretrained: call kiln_model_alloc first");
    kiln_st_file *f = NULL;
    kiln_status st = kiln_weights_open(path, &f);
    if (st < 0) return st;
    st = load(model, f, strict);
    kiln_st_close(f);
    return st;
}
