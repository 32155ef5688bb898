/* The vision source shared by every kind (IDX, folder, CSV): params, the per-item pipeline
 * (pixels in [0, 1] -> resize -> transform hook -> normalization), the data set's statistics,
 * the file check at construction (skip_bad), kiln_vision_open's name resolution, and the
 * accessors. The threads that run the pipeline are in loader.c. */
#include "data/vision/vision_internal.h"
#include "data/data_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

kiln_vision_params kiln_vision_default_params(void)
{
    return (kiln_vision_params){.batch_size = 64, .shuffle = true, .drop_last = true,
                                .resize = KILN_VISION_RESIZE_CROP, .norm = KILN_VISION_NORM_DATASET,
                                .stats_items = 1024, .train_dir = "train", .valid_dir = "valid",
                                .valid_pct = 0.2, .split_seed = 42, .csv_name_col = "name",
                                .csv_label_col = "label", .max_pixels = KILN_VISION_MAX_PIXELS,
                                .n_workers = 2, .prefetch = 4, .rank = 0, .world = 1};
}

kiln_vision_stats kiln_vision_imagenet_stats(void)
{
    return (kiln_vision_stats){.mean = {0.485f, 0.456f, 0.406f}, .std = {0.229f, 0.224f, 0.225f}};
}

kiln_status kiln_vision_normalize(float *x, int64_t n, int c, int64_t hw, const kiln_vision_stats *s)
{
    if (!x || !s || c < 1 || c > 3) return kiln__err(KILN_STATUS_INVALID, "vision_normalize: bad arguments (c = %d)", c);
    for (int k = 0; k < c; k++)
        if (!(s->std[k] > 0))
            return kiln__err(KILN_STATUS_INVALID, "vision_normalize: std[%d] = %g must be > 0", k, s->std[k]);
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < c; k++) {
            float *p = x + ((size_t)i * c + k) * hw, m = s->mean[k], sd = s->std[k];
            for (int64_t j = 0; j < hw; j++) p[j] = (p[j] - m) / sd; /* division, as torch does */
        }
    return KILN_STATUS_OK;
}

/* 2^40 counters per epoch, 2^39 per split, 256 per item: up to 2^31 items per split. */
uint64_t kiln_vision_item_counter(int64_t epoch, kiln_data_split split, int64_t item)
{
    return ((uint64_t)epoch << 40) | ((uint64_t)split << 39) | ((uint64_t)item * KILN_VISION_TFM_COUNTERS);
}

char *kiln__vision_strdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d) kiln__err(KILN_STATUS_NOMEM, "vision: out of memory");
    return d;
}

/* ---- construction ---------------------------------------------------------------------------- */

kiln_vision_data *kiln__vision_alloc(const char *name, const kiln_vision_params *p)
{
    kiln_vision_params d = kiln_vision_default_params(), q = p ? *p : d;
    if (!q.train_dir) q.train_dir = d.train_dir;
    if (!q.valid_dir) q.valid_dir = d.valid_dir;
    if (!q.csv_name_col) q.csv_name_col = d.csv_name_col;
    if (!q.csv_label_col) q.csv_label_col = d.csv_label_col;
    if (!q.max_pixels) q.max_pixels = d.max_pixels;
    const char *bad = q.batch_size < 1 ? "batch_size must be >= 1"
                    : q.valid_batch_size < 0 ? "valid_batch_size must be >= 0"
                    : q.size < 0 || q.size > 8192 ? "size must be in [0, 8192]"
                    : q.n_channels != 0 && q.n_channels != 1 && q.n_channels != 3 ? "n_channels must be 0, 1 or 3"
                    : q.resize != KILN_VISION_RESIZE_CROP && q.resize != KILN_VISION_RESIZE_SQUISH ? "unknown resize mode"
                    : q.norm < KILN_VISION_NORM_DATASET || q.norm > KILN_VISION_NORM_NONE ? "unknown norm"
                    : !(q.valid_pct >= 0 && q.valid_pct < 1) ? "valid_pct must be in [0, 1)"
                    : q.n_workers < 0 || q.n_workers > 64 ? "n_workers must be in [0, 64]"
                    : q.prefetch < 0 || q.prefetch > 64 ? "prefetch must be in [0, 64]"
                    : q.stats_items < 0 ? "stats_items must be >= 0"
                    : q.max_pixels < 0 ? "max_pixels must be >= 0 (0: KILN_VISION_MAX_PIXELS)"
                    : q.n_classes < 0 || (q.n_classes > 0) != (q.classes != NULL)
                        ? "classes and n_classes go together (n_classes >= 1 with a class list, 0 without)"
                    : q.train_per_class < 0 || q.valid_per_class < 0 ? "train_per_class and valid_per_class must be >= 0"
                    : q.world < 1 ? "world must be >= 1"
                    : q.rank < 0 || q.rank >= q.world ? "rank must be in [0, world)"
                    : NULL;
    if (bad) return kiln__errp(KILN_STATUS_INVALID, "vision: %s: %s", name, bad);
    kiln_vision_data *v = calloc(1, sizeof *v);
    if (!v) return kiln__errp(KILN_STATUS_NOMEM, "vision: out of memory");
    v->p = q; /* its strings are the caller's: kiln__vision_finish drops them */
    v->size = q.size;
    v->tta_pass = -1;
    if (!(v->name = kiln__vision_strdup(name))) {
        free(v);
        return NULL;
    }
    return v;
}

void kiln__vision_destroy(kiln_vision_data *v)
{
    if (!v) return;
    kiln_prefetch_free(v->loader);
    for (int k = 0; k < 2; k++) {
        kiln__vsplit *s = &v->s[k];
        for (int64_t i = 0; s->paths && i < s->n; i++) free(s->paths[i]);
        free(s->paths), free(s->labels), free(s->pixels);
    }
    for (int c = 0; c < v->n_classes && v->classes; c++) free(v->classes[c]);
    free(v->classes), free(v->perm), free(v->order), free(v->name);
    if (v->magic == KILN__VISION_MAGIC && v->p.tfm_user_free) v->p.tfm_user_free(v->p.tfm_user); /* complete */
    v->magic = 0;
    free(v);
}

/* ---- file check ------------------------------------------------------------------------------ */

typedef struct check_job {
    const kiln__vsplit *s;
    bool full;
    int64_t max_pixels;
    kiln_status *st;   /* (n) */
    kiln__vprobe *pr;  /* (n) */
} check_job;

static kiln_status check_file(const char *path, bool full, int64_t max_pixels, kiln__vprobe *pr)
{
    if (!full) return kiln__vision_probe(path, max_pixels, pr);
    kiln__vimage im;
    kiln_status st = kiln__vision_decode(path, 0, max_pixels, &im);
    if (!st) *pr = (kiln__vprobe){.h = im.h, .w = im.w, .grey = im.c == 1};
    kiln__vimage_free(&im);
    return st;
}

static void check_one(void *user, int64_t i)
{
    check_job *j = user;
    j->st[i] = check_file(j->s->paths[i], j->full, j->max_pixels, &j->pr[i]);
}

kiln_status kiln__vision_check_files(kiln_vision_data *v, bool *grey_all)
{
    *grey_all = true;
    int ch = -1, cw = -1;
    const char *first = NULL, *odd = NULL;
    for (int k = 0; k < 2; k++) {
        kiln__vsplit *s = &v->s[k];
        if (!s->n) continue;
        check_job j = {.s = s, .full = v->p.skip_bad, .max_pixels = v->p.max_pixels, .st = malloc((size_t)s->n * sizeof *j.st),
                       .pr = malloc((size_t)s->n * sizeof *j.pr)};
        if (!j.st || !j.pr) {
            free(j.st), free(j.pr);
            return kiln__err(KILN_STATUS_NOMEM, "vision: out of memory checking %lld files", (long long)s->n);
        }
        kiln__data_pthread_for(v->p.n_workers > 1 ? v->p.n_workers : 1, s->n, check_one, &j);
        int64_t kept = 0;
        for (int64_t i = 0; i < s->n; i++) {
            if (j.st[i]) {
                kiln__vprobe tmp;
                kiln_status st = check_file(s->paths[i], j.full, j.max_pixels, &tmp); /* again, for the message here */
                if (!st) st = kiln__err(j.st[i], "vision: %s failed to decode on a worker thread", s->paths[i]);
                if (!v->p.skip_bad || st == KILN_STATUS_NOMEM) {
                    free(j.st), free(j.pr);
                    return st;
                }
                fprintf(stderr, "kiln: warning: skipping a bad image: %s\n", kiln_last_error());
                v->n_skipped++;
                free(s->paths[i]);
                continue;
            }
            const kiln__vprobe *pr = &j.pr[i];
            *grey_all = *grey_all && pr->grey;
            if (ch < 0) ch = pr->h, cw = pr->w, first = s->paths[i];
            else if ((pr->h != ch || pr->w != cw) && !odd) odd = s->paths[i];
            s->paths[kept] = s->paths[i];
            s->labels[kept] = s->labels[i];
            kept++;
        }
        s->n = kept;
        free(j.st), free(j.pr);
        kiln_clear_error();
        if (v->size == 0 && (odd || ch != cw)) {
            return kiln__err(KILN_STATUS_INVALID,
                             "vision: %s: images differ in size or are not square (%s is %dx%d%s%s): set params.size",
                             v->name, first, cw, ch, odd ? ", unlike " : "", odd ? odd : "");
        }
    }
    if (v->size == 0 && ch > 0) v->size = ch;
    return KILN_STATUS_OK;
}

/* ---- the item pipeline ------------------------------------------------------------------------ */

kiln_status kiln__vision_make_item(const kiln_vision_data *v, kiln_data_split split, int64_t i, int tfm,
                                   uint64_t seed, int64_t epoch, bool normalize, float *out)
{
    const kiln__vsplit *s = &v->s[split];
    const int S = v->size, C = v->c;
    const size_t hw = (size_t)S * S;
    kiln_status st = KILN_STATUS_OK;
    if (s->pixels) {
        const int h = v->idx_h, w = v->idx_w;
        const uint8_t *src = s->pixels + (size_t)i * h * w; /* (h, w) */
        if (h == S && w == S) {
            for (size_t q = 0; q < hw; q++) out[q] = src[q] / 255.0f;
        } else {
            float *tmp = malloc((size_t)h * w * sizeof *tmp);
            if (!tmp) return kiln__err(KILN_STATUS_NOMEM, "vision: out of memory resizing an IDX image");
            for (size_t q = 0; q < (size_t)h * w; q++) tmp[q] = src[q] / 255.0f;
            st = kiln__vision_resize(tmp, h, w, 1, S, v->p.resize, out);
            free(tmp);
            if (st) return st;
        }
        for (int k = 1; k < C; k++) memcpy(out + k * hw, out, hw * sizeof *out);
    } else {
        kiln__vimage im;
        if ((st = kiln__vision_decode(s->paths[i], C, v->p.max_pixels, &im))) return st;
        if (im.h == S && im.w == S) {
            for (size_t q = 0; q < hw; q++)
                for (int k = 0; k < C; k++) out[k * hw + q] = im.px[q * C + k];
        } else {
            st = kiln__vision_resize(im.px, im.h, im.w, C, S, v->p.resize, out);
        }
        kiln__vimage_free(&im);
        if (st) return st;
    }
    if (tfm && v->p.tfm) {
        kiln_clear_error();
        st = v->p.tfm(v->p.tfm_user, out, C, S, S, seed, kiln_vision_item_counter(epoch, split, i),
                      tfm == KILN__TFM_TRAIN || split == KILN_DATA_SPLIT_TRAIN);
        if (st) {
            char m[768]; /* the message buffer is about to be rewritten */
            snprintf(m, sizeof m, "%s", *kiln_last_error() ? kiln_last_error() : kiln_status_name(st));
            return kiln__err(st, "vision: the transform failed on %s item %lld: %s", kiln_data_split_name(split),
                             (long long)i, m);
        }
    }
    return normalize ? kiln_vision_normalize(out, 1, C, (int64_t)hw, &v->stats) : KILN_STATUS_OK;
}

/* ---- data set statistics ------------------------------------------------------------------------ */

typedef struct stats_job {
    const kiln_vision_data *v;
    int64_t n, k;       /* k of the n train items, evenly spaced */
    double *sums;       /* (k, C, 2): sum, sum of squares */
    kiln_status *st;    /* (k) */
} stats_job;

static void stats_one(void *user, int64_t j)
{
    stats_job *sj = user;
    const kiln_vision_data *v = sj->v;
    size_t hw = (size_t)v->size * v->size;
    float *img = malloc(hw * v->c * sizeof *img); /* (C, S, S) */
    int64_t item = j * sj->n / sj->k;
    sj->st[j] = img ? kiln__vision_make_item(v, KILN_DATA_SPLIT_TRAIN, item, false, 0, 0, false, img) : KILN_STATUS_NOMEM;
    for (int c = 0; c < v->c && !sj->st[j]; c++) {
        double s = 0, s2 = 0;
        for (size_t q = 0; q < hw; q++) s += img[c * hw + q], s2 += (double)img[c * hw + q] * img[c * hw + q];
        sj->sums[(j * v->c + c) * 2] = s;
        sj->sums[(j * v->c + c) * 2 + 1] = s2;
    }
    free(img);
}

/* Mean and unbiased std (torch's x.std()) of the train pixels, per channel; IDX images at their
 * own size are counted exactly from a histogram of the bytes. Sums are combined in item order,
 * so the stats do not depend on the thread count. */
static kiln_status dataset_stats(kiln_vision_data *v)
{
    const kiln__vsplit *s = &v->s[KILN_DATA_SPLIT_TRAIN];
    double sum[3] = {0}, sum2[3] = {0}, count;
    if (s->pixels && v->idx_h == v->size && v->idx_w == v->size) {
        int64_t hist[256] = {0}, np = s->n * v->idx_h * v->idx_w;
        for (int64_t q = 0; q < np; q++) hist[s->pixels[q]]++;
        for (int b = 0; b < 256; b++) {
            double x = b / 255.0f; /* the float the loader makes */
            for (int c = 0; c < v->c; c++) sum[c] += hist[b] * x, sum2[c] += hist[b] * x * x;
        }
        count = (double)np;
    } else {
        bool all = s->pixels || !v->p.stats_items || v->p.stats_items > s->n;
        stats_job j = {.v = v, .n = s->n, .k = all ? s->n : v->p.stats_items};
        j.sums = calloc((size_t)j.k * v->c * 2, sizeof *j.sums);
        j.st = calloc((size_t)j.k, sizeof *j.st);
        if (!j.sums || !j.st) {
            free(j.sums), free(j.st);
            return kiln__err(KILN_STATUS_NOMEM, "vision: out of memory for the data set's stats");
        }
        kiln__data_pthread_for(v->p.n_workers > 1 ? v->p.n_workers : 1, j.k, stats_one, &j);
        kiln_status st = KILN_STATUS_OK;
        for (int64_t q = 0; q < j.k && !st; q++) {
            if (j.st[q]) { /* again on this thread for the message */
                float *img = malloc((size_t)v->size * v->size * v->c * sizeof *img);
                st = img ? kiln__vision_make_item(v, KILN_DATA_SPLIT_TRAIN, q * j.n / j.k, false, 0, 0, false, img)
                         : kiln__err(KILN_STATUS_NOMEM, "vision: out of memory");
                if (!st) st = kiln__err(j.st[q], "vision: %s: item %lld failed on a worker thread", v->name, (long long)q);
                free(img);
            }
            for (int c = 0; c < v->c && !st; c++)
                sum[c] += j.sums[(q * v->c + c) * 2], sum2[c] += j.sums[(q * v->c + c) * 2 + 1];
        }
        free(j.sums), free(j.st);
        if (st) return st;
        count = (double)j.k * v->size * v->size;
    }
    for (int c = 0; c < v->c; c++) {
        double m = sum[c] / count, var = count > 1 ? (sum2[c] - sum[c] * m) / (count - 1) : 0;
        double sd = var > 0 ? sqrt(var) : 0;
        v->stats.mean[c] = (float)m;
        v->stats.std[c] = sd > 1e-6 ? (float)sd : 1.0f; /* constant images: leave the scale alone */
    }
    return KILN_STATUS_OK;
}

kiln_data *kiln__vision_finish(kiln_vision_data *v, bool grey_all)
{
    kiln_status st = KILN_STATUS_OK;
    v->p.train_dir = v->p.valid_dir = v->p.csv_name_col = v->p.csv_label_col = v->p.csv_valid_col = NULL;
    v->c = v->p.n_channels ? v->p.n_channels : grey_all ? 1 : 3;
    const kiln__vsplit *tr = &v->s[KILN_DATA_SPLIT_TRAIN];
    if (tr->n == 0 && !v->items_only)
        st = kiln__err(KILN_STATUS_FORMAT, "vision: %s: the train split has no images", v->name);
    else if (v->size == 0) st = kiln__err(KILN_STATUS_INVALID, "vision: %s: set params.size", v->name);
    else if (v->p.norm == KILN_VISION_NORM_IMAGENET && v->c != 3)
        st = kiln__err(KILN_STATUS_INVALID, "vision: %s: ImageNet stats need 3 channels, the data has %d (set "
                       "params.n_channels = 3)", v->name, v->c);
    if (!st) {
        switch (v->p.norm) {
        case KILN_VISION_NORM_DATASET: st = dataset_stats(v); break;
        case KILN_VISION_NORM_IMAGENET: v->stats = kiln_vision_imagenet_stats(); break;
        case KILN_VISION_NORM_CUSTOM: v->stats = v->p.custom_stats; break;
        case KILN_VISION_NORM_NONE: v->stats = (kiln_vision_stats){.std = {1, 1, 1}}; break;
        }
        for (int c = 0; c < v->c && !st; c++)
            if (!(v->stats.std[c] > 0))
                st = kiln__err(KILN_STATUS_INVALID, "vision: std[%d] = %g must be > 0", c, v->stats.std[c]);
    }
    for (int k = 0; k < 2; k++)
        v->n_shard[k] = kiln_data_shard(v->s[k].n, v->p.rank, v->p.world, k == KILN_DATA_SPLIT_TRAIN, NULL, NULL);
    if (!st && (!(v->perm = malloc((size_t)(tr->n ? tr->n : 1) * sizeof *v->perm)) ||
                !(v->order = malloc((size_t)(v->n_shard[0] ? v->n_shard[0] : 1) * sizeof *v->order))))
        st = kiln__err(KILN_STATUS_NOMEM, "vision: out of memory");
    for (int64_t i = 0; !st && i < tr->n; i++) v->perm[i] = i;
    if (!st) kiln_data_shard(tr->n, v->p.rank, v->p.world, true, v->perm, v->order);
    if (!st && !(v->loader = kiln__vloader_new(v))) st = KILN_STATUS_NOMEM;
    if (st) {
        kiln__vision_destroy(v);
        return NULL;
    }
    v->magic = KILN__VISION_MAGIC;
    return kiln_data_new(&kiln__vision_ops, v);
}

kiln_data *kiln__vision_check_and_finish(kiln_vision_data *v, kiln_status st)
{
    bool grey_all = false;
    if (!st) st = kiln__vision_subset(v);
    if (!st) st = kiln__vision_check_files(v, &grey_all);
    if (st) {
        kiln__vision_destroy(v);
        return NULL;
    }
    return kiln__vision_finish(v, grey_all);
}

/* ---- kiln_vision_open ------------------------------------------------------------------------- */

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* dir/base or dir/base.gz, whichever exists, into out. */
static bool find_idx(const char *dir, const char *base, char *out, size_t n)
{
    snprintf(out, n, "%s/%s.gz", dir, base);
    if (file_exists(out)) return true;
    snprintf(out, n, "%s/%s", dir, base);
    return file_exists(out);
}

kiln_data *kiln_vision_open(const char *source, const kiln_vision_params *p)
{
    if (!source) return kiln__errp(KILN_STATUS_INVALID, "vision_open: source is NULL");
    const char *dir = source, *name = source;
    struct stat st;
    if (!strcmp(source, "fashion-mnist")) {
        dir = FASHION_MNIST_DIR;
        if (stat(dir, &st) != 0)
            return kiln__errp(KILN_STATUS_IO, "vision_open: fashion-mnist: %s not found: install the Debian package "
                              "dataset-fashion-mnist (scripts/get-data.sh)", dir);
    }
    char ti[4096], tl[4096], vi[4096], vl[4096];
    if (find_idx(dir, "train-images-idx3-ubyte", ti, sizeof ti)) {
        if (!find_idx(dir, "train-labels-idx1-ubyte", tl, sizeof tl))
            return kiln__errp(KILN_STATUS_IO, "vision_open: %s has %s but no train-labels-idx1-ubyte[.gz]", dir, ti);
        bool valid = find_idx(dir, "t10k-images-idx3-ubyte", vi, sizeof vi);
        if (valid && !find_idx(dir, "t10k-labels-idx1-ubyte", vl, sizeof vl))
            return kiln__errp(KILN_STATUS_IO, "vision_open: %s has %s but no t10k-labels-idx1-ubyte[.gz]", dir, vi);
        return kiln__vision_idx_named(name, ti, tl, valid ? vi : NULL, valid ? vl : NULL, p);
    }
    if (dir != source)
        return kiln__errp(KILN_STATUS_IO, "vision_open: %s: no train-images-idx3-ubyte[.gz] in %s", name, dir);
    if (stat(source, &st) != 0)
        return kiln__errp(KILN_STATUS_IO, "vision_open: %s: no such data set, folder or file", source);
    if (S_ISDIR(st.st_mode)) return kiln_vision_folder_new(source, p);
    size_t n = strlen(source);
    if (n > 4 && !strcasecmp(source + n - 4, ".csv")) return kiln_vision_csv_new(source, p);
    return kiln__errp(KILN_STATUS_INVALID, "vision_open: %s: not a data set name, a folder or a .csv file", source);
}

/* ---- accessors ----------------------------------------------------------------------------------- */

kiln_vision_data *kiln_vision_data_of(kiln_data *d)
{
    kiln_vision_data *v = d ? kiln_data_state(d) : NULL;
    if (!v || v->magic != KILN__VISION_MAGIC)
        return kiln__errp(KILN_STATUS_INVALID, "vision_data_of: the data is not a vision source");
    return v;
}

const char *kiln_vision_data_name(const kiln_vision_data *v) { return v ? v->name : NULL; }
int kiln_vision_data_n_classes(const kiln_vision_data *v) { return v ? v->n_classes : 0; }
int kiln_vision_data_n_channels(const kiln_vision_data *v) { return v ? v->c : 0; }
int kiln_vision_data_size(const kiln_vision_data *v) { return v ? v->size : 0; }
int64_t kiln_vision_data_n_skipped(const kiln_vision_data *v) { return v ? v->n_skipped : 0; }

const char *kiln_vision_data_class(const kiln_vision_data *v, int i)
{
    return v && i >= 0 && i < v->n_classes ? v->classes[i] : NULL;
}

const kiln_vision_params *kiln_vision_data_params(const kiln_vision_data *v) { return v ? &v->p : NULL; }

kiln_vision_stats kiln_vision_data_stats(const kiln_vision_data *v)
{
    return v ? v->stats : (kiln_vision_stats){.std = {1, 1, 1}};
}

static bool in_range(const kiln_vision_data *v, kiln_data_split split, int64_t i)
{
    return v && (split == KILN_DATA_SPLIT_TRAIN || split == KILN_DATA_SPLIT_VALID) && i >= 0 && i < v->s[split].n;
}

int64_t kiln_vision_data_label(const kiln_vision_data *v, kiln_data_split split, int64_t i)
{
    return in_range(v, split, i) ? v->s[split].labels[i] : -1;
}

const char *kiln_vision_data_path(const kiln_vision_data *v, kiln_data_split split, int64_t i)
{
    return in_range(v, split, i) && v->s[split].paths ? v->s[split].paths[i] : NULL;
}

kiln_status kiln_vision_data_item(const kiln_vision_data *v, kiln_data_split split, int64_t i, bool normalize,
                                  float *out)
{
    if (!out || !in_range(v, split, i))
        return kiln__err(KILN_STATUS_INVALID, "vision_data_item: %s item %lld out of range or NULL argument",
                         kiln_data_split_name(split), (long long)i);
    return kiln__vision_make_item(v, split, i, false, 0, 0, normalize, out);
}
