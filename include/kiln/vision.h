/* kiln vision data: image classification sources that plug into kiln_data (data.h).
 *
 *   sources        IDX files (MNIST family, gzip or plain), "fashion-mnist" by name, image
 *                  folders (root/train/<class>/, root/valid/<class>/, or root/<class>/ with a
 *                  seeded random validation split) and CSV files of (file name, label).
 *   loader         background threads (pthreads) decode, resize, transform and normalize the
 *                  next batches while the model trains; get_batch copies a ready batch into the
 *                  step arena. Batches are x (B, C, H, W) f32 and y (B) i64 class indices.
 *   normalization  (x - mean) / std per channel, with the data set's own stats (computed on
 *                  the train split, [0, 1] pixels) or ImageNet's.
 *
 * Images are NCHW, pixels in [0, 1] before normalization. PNG (libspng) and JPEG
 * (libturbojpeg), grey or colour; grey is replicated to 3 channels when the data set is colour,
 * alpha is dropped, 16-bit PNG is scaled by 1/65535. Resizing is bilinear with PIL's
 * antialiasing (what torchvision's Resize does on PIL images).
 *
 * Determinism: the train order of epoch e is kiln_data_permutation(seed, e, n) (see
 * kiln_data_set_epoch), and a transform's randomness comes only from (seed, item_counter), a
 * pure function of (epoch, split, item index); batches are the same whatever the thread count
 * or timing. With params.world > 1 the loader hands out rank's shard of each split (data.h,
 * kiln_data_shard); an item is transformed the same way whichever rank reads it. The loader assumes one consumer thread (the one calling kiln_data_get_batch). */
#ifndef KILN_VISION_H
#define KILN_VISION_H

#include "kiln/core.h"
#include "kiln/data.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- images ------------------------------------------------------------------------------ */

typedef enum kiln_vision_resize {
    KILN_VISION_RESIZE_CROP = 0, /* shorter side to size, then centre crop (Resize + CenterCrop) */
    KILN_VISION_RESIZE_SQUISH,   /* both sides to size; the aspect ratio is not kept */
} kiln_vision_resize;

/* The default cap on an image's pixels (width x height), checked from the file's header before
 * anything is decoded: 2^26, about PIL's MAX_IMAGE_PIXELS (89,478,485), 8192x8192. Decoding
 * takes about 16 bytes per pixel (1 GiB at the cap), once per loader worker. */
#define KILN_VISION_MAX_PIXELS ((int64_t)1 << 26)

/* Reads a PNG or JPEG file (format from its bytes, not its name) into (C, size, size) f32 in
 * [0, 1] in ctx's step arena. n_channels: 1 or 3 (0 = the file's own: 1 if grey, else 3);
 * size 0 keeps the file's size (C, H, W). Images of more than KILN_VISION_MAX_PIXELS pixels
 * are refused. NULL + message naming the file on failure. */
kiln_tensor *kiln_vision_image_load(kiln_ctx *ctx, const char *path, int n_channels, int size,
                                    kiln_vision_resize resize);
/* The same with the pixel cap given (>= 1): larger images are refused (FORMAT, the message
 * names the file and its size) before decoding. */
kiln_tensor *kiln_vision_image_load_ex(kiln_ctx *ctx, const char *path, int n_channels, int size,
                                       kiln_vision_resize resize, int64_t max_pixels);

/* ---- normalization ----------------------------------------------------------------------- */

typedef enum kiln_vision_norm {
    KILN_VISION_NORM_DATASET = 0, /* mean/std of the train split (computed at construction) */
    KILN_VISION_NORM_IMAGENET,    /* 0.485, 0.456, 0.406 / 0.229, 0.224, 0.225 (3 channels) */
    KILN_VISION_NORM_CUSTOM,      /* params.custom_stats */
    KILN_VISION_NORM_NONE,        /* pixels stay in [0, 1] */
} kiln_vision_norm;

/* Per-channel statistics; the first n_channels entries are used. */
typedef struct kiln_vision_stats {
    float mean[3];
    float std[3];
} kiln_vision_stats;

kiln_vision_stats kiln_vision_imagenet_stats(void);
/* x (N, C, H, W) in place: x = (x - mean[c]) / std[c]. INVALID when c is not 1..3 or a std <= 0. */
kiln_status kiln_vision_normalize(float *x, int64_t n, int c, int64_t hw, const kiln_vision_stats *s);

/* ---- sources and loader ------------------------------------------------------------------ */

/* Per-item transform (augmentation), run by the loader threads on each image before
 * normalization. img (C, H, W) holds pixels in [0, 1] and is changed in place (same shape).
 * The transform's randomness must come only from kiln_philox_uniform(seed, item_counter + k)
 * for k < KILN_VISION_TFM_COUNTERS: item_counter is a pure function of (epoch, split, item
 * index in the data set) and seed is the one given to kiln_data_set_epoch. train is false for
 * the valid split. Return OK, or an error status with a message (kiln_error). Must be
 * thread-safe (it runs on several threads at once, user is shared). */
typedef kiln_status (*kiln_vision_tfm_fn)(void *user, float *img, int c, int h, int w, uint64_t seed,
                                          uint64_t item_counter, bool train);
#define KILN_VISION_TFM_COUNTERS 256
/* The item_counter a transform gets (exposed for tests and for a Learner's TTA). */
uint64_t kiln_vision_item_counter(int64_t epoch, kiln_data_split split, int64_t item);

typedef struct kiln_vision_params {
    /* batches */
    int64_t batch_size;       /* 64 */
    int64_t valid_batch_size; /* 0 = batch_size */
    bool shuffle;             /* true: train order from kiln_data_set_epoch */
    bool drop_last;           /* true: drop the short last train batch (valid keeps every item) */
    int rank, world;          /* 0, 1: this process reads its shard of world (data.h,
                                 kiln_data_shard): the epoch's train order padded and interleaved,
                                 the valid split interleaved without padding, TTA passes too;
                                 kiln_data_n_items / _n_batches count the shard; the data set's
                                 stats, labels and paths stay the whole splits'. INVALID unless
                                 0 <= rank < world */
    /* images */
    int size;                 /* output side in pixels; 0 = native (IDX: 28); folders need it */
    kiln_vision_resize resize;/* KILN_VISION_RESIZE_CROP */
    int n_channels;           /* 0 = the data's own (1 if every image is grey, else 3); 1; 3 */
    kiln_vision_norm norm;    /* KILN_VISION_NORM_DATASET */
    kiln_vision_stats custom_stats; /* for KILN_VISION_NORM_CUSTOM */
    int64_t stats_items;      /* folders: train items (evenly spaced) for the data set's stats;
                                 0 = all. IDX always uses every train item. 1024 */
    /* folders and CSV */
    const char *train_dir;    /* "train" */
    const char *valid_dir;    /* "valid" */
    double valid_pct;         /* 0.2: valid share when there is no train/valid layout */
    uint64_t split_seed;      /* 42: seed of that random split */
    const char *csv_name_col; /* "name": column of file names, relative to the CSV's folder */
    const char *csv_label_col;/* "label": column of class names */
    const char *csv_valid_col;/* NULL: random split; else a column of 1/0 true/false (is_valid) */
    bool skip_bad;            /* false: a bad image is an error naming it. true: every image is
                                 decoded once at construction; bad ones are dropped with a
                                 warning on stderr and counted (kiln_vision_data_n_skipped) */
    int64_t max_pixels;       /* images whose header gives more pixels (w x h) are refused (bad
                                 images, above) before decoding; KILN_VISION_MAX_PIXELS; 0 = that */
    /* class subset and per-class limits (every source kind; applied before the file check
     * and the data set's stats, which are computed on the kept train items) */
    const char *const *classes; /* NULL: every class of the source; else the n_classes classes
                                 to keep, in this order: they become the data's classes and label
                                 numbering (label i is classes[i]); items of other classes are
                                 dropped from both splits. An entry that is not a class name of
                                 the source but a decimal number k names the source's class k
                                 ("5" is Fashion-MNIST's "Sandal"). An unknown class or one
                                 listed twice is an error naming it and the source's classes */
    int n_classes;            /* entries in classes (0 with classes NULL) */
    int64_t train_per_class;  /* 0: every train item; N: at most N train items per class, chosen
                                 at random with split_seed (deterministic), kept in data order */
    int64_t valid_per_class;  /* the same for the valid split; 0: every valid item */
    /* loader */
    int n_workers;            /* background threads: 2; 0 = decode in get_batch on the caller */
    int prefetch;             /* batches prepared ahead: 4 */
    kiln_vision_tfm_fn tfm;   /* NULL = none */
    void *tfm_user;
    void (*tfm_user_free)(void *tfm_user); /* NULL; else called on tfm_user when the data is
                                 freed: the data owns it once made (a constructor that fails
                                 leaves it to the caller) */
} kiln_vision_params;

kiln_vision_params kiln_vision_default_params(void);

/* source: "fashion-mnist" (/usr/share/datasets/fashion-mnist, from the Debian package
 * dataset-fashion-mnist; its test split serves as valid), a folder holding IDX files
 * (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-... for valid), an image
 * folder, or a .csv file. NULL + message on failure. */
kiln_data *kiln_vision_open(const char *source, const kiln_vision_params *p);

/* IDX files, gzip or plain (detected): images magic 0x00000803 (N, H, W) u8, labels
 * 0x00000801 (N) u8. The valid pair may be NULL (no valid split). Decoded once into memory;
 * classes are "0".."max label". */
kiln_data *kiln_vision_idx_new(const char *train_images, const char *train_labels, const char *valid_images,
                               const char *valid_labels, const kiln_vision_params *p);

/* root/<train_dir>/<class>/ and root/<valid_dir>/<class>/, or root/<class>/ split by
 * valid_pct and split_seed. Classes sorted by name (torchvision ImageFolder); files sorted by
 * name; .png .jpg .jpeg (any case) are images, other files and dot-files are ignored. */
kiln_data *kiln_vision_folder_new(const char *root, const kiln_vision_params *p);

/* A CSV (RFC 4180, header row) of file names and class labels. */
kiln_data *kiln_vision_csv_new(const char *csv_path, const kiln_vision_params *p);

/* n image files as the valid split of a source without a train split, for prediction
 * (fastai's test_dl): classes (n_classes names) and labels (n, NULL: all 0) as given;
 * p->size and p->n_channels must be set, p->norm must not be DATASET (there is no train
 * split to measure: pass the model's stats as CUSTOM, or NONE). Each file is checked now (an
 * error names it). */
kiln_data *kiln_vision_items_new(const char *const *paths, int64_t n, const int64_t *labels,
                                 const char *const *classes, int n_classes, const kiln_vision_params *p);

/* ---- what a vision source holds ---------------------------------------------------------- */

typedef struct kiln_vision_data kiln_vision_data;

/* The vision source inside d; NULL + message when d is not one. Lives as long as d. */
kiln_vision_data *kiln_vision_data_of(kiln_data *d);
const char *kiln_vision_data_name(const kiln_vision_data *v); /* "fashion-mnist", the path */
int kiln_vision_data_n_classes(const kiln_vision_data *v);
const char *kiln_vision_data_class(const kiln_vision_data *v, int i); /* NULL out of range */
int kiln_vision_data_n_channels(const kiln_vision_data *v);
int kiln_vision_data_size(const kiln_vision_data *v); /* H = W of every batch image */
/* The params it was made with (file and column names and classes are NULL after construction
 * (n_classes is 0; the kept classes are kiln_vision_data_class); tfm and tfm_user are the
 * transform's). */
const kiln_vision_params *kiln_vision_data_params(const kiln_vision_data *v);
/* The stats batches are normalized with (mean 0, std 1 for KILN_VISION_NORM_NONE). */
kiln_vision_stats kiln_vision_data_stats(const kiln_vision_data *v);
/* Images dropped at construction because skip_bad was set. */
int64_t kiln_vision_data_n_skipped(const kiln_vision_data *v);
/* Label of item i of a split (data set order, not shuffled); -1 when out of range. */
int64_t kiln_vision_data_label(const kiln_vision_data *v, kiln_data_split split, int64_t i);
/* File of item i; NULL for IDX sources or out of range. */
const char *kiln_vision_data_path(const kiln_vision_data *v, kiln_data_split split, int64_t i);
/* Test-time augmentation (the Learner's kiln_learner_tta): pass >= 0 makes every batch asked
 * for from now on, of either split, run the transform's training branch (train = true) with
 * seed kiln_vision_tta_seed(seed of the last kiln_data_set_epoch, pass) and the item
 * counters of epoch 0, so pass k of a split is the same images whatever the thread count;
 * -1 goes back to normal (valid: the validation branch). The train order is unchanged.
 * Prepared batches are dropped when the setting changes. INVALID for other sources. The
 * source's kiln_data_set_tta_pass (data.h) is this call. */
kiln_status kiln_vision_data_set_tta(kiln_vision_data *v, int pass);
int kiln_vision_data_tta_pass(const kiln_vision_data *v); /* -1 when off */
/* The transform seed of TTA pass `pass` (>= 0) under seed: a fixed mix of the two. */
uint64_t kiln_vision_tta_seed(uint64_t seed, int pass);
/* Item i as the loader makes it, without the transform: out (C, size, size), normalized when
 * normalize is true. Runs on the calling thread. */
kiln_status kiln_vision_data_item(const kiln_vision_data *v, kiln_data_split split, int64_t i, bool normalize,
                                  float *out);

#ifdef __cplusplus
}
#endif
#endif
