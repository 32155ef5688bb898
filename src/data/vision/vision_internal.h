/* Internal to the vision data sources (src/data/vision/): the source's layout, image decoding
 * and resizing, the IDX reader, the background loader. Names start with kiln__ and are
 * not API. The augmentation code does not depend on this header (it sees only the hook). */
#ifndef KILN_DATA_VISION_INTERNAL_H
#define KILN_DATA_VISION_INTERNAL_H

#include "core/internal.h"
#include "kiln/vision.h"

#include <stdint.h>

#define KILN__VISION_MAGIC 0x4b56534eu /* "KVSN": marks a kiln_vision_data state */

/* One split's items: labels always; file paths for folder/CSV sources, pixels for IDX. */
typedef struct kiln__vsplit {
    int64_t n;
    int64_t *labels;  /* (n) class indices */
    char **paths;     /* (n) file paths, or NULL */
    uint8_t *pixels;  /* (n, idx_h, idx_w) u8, or NULL */
} kiln__vsplit;

struct kiln_vision_data {
    uint32_t magic;
    char *name;
    kiln_vision_params p;     /* a copy; its strings are not used after construction */
    int n_classes;
    char **classes;           /* (n_classes) */
    int c, size;              /* batch images are (c, size, size) */
    int idx_h, idx_w;         /* IDX item size (0 for files) */
    kiln_vision_stats stats;  /* applied by the loader */
    int64_t n_skipped;
    kiln__vsplit s[2];        /* indexed by kiln_data_split */
    int64_t *perm;            /* (s[TRAIN].n) train order of the current epoch, whole split */
    int64_t *order;           /* (n_shard[TRAIN]) the items of this rank's train batches: its
                                 shard of perm (kiln_data_shard; perm itself when world is 1) */
    int64_t n_shard[2];       /* items this rank reads per split (s[k].n when world is 1); valid
                                 position j is item p.rank + j * p.world */
    uint64_t seed;            /* from the last set_epoch */
    int64_t epoch;
    bool epoch_set;           /* set_epoch was called */
    int tta_pass;             /* kiln_vision_data_set_tta: -1 off, else the TTA pass (loader.c) */
    bool items_only;          /* kiln_vision_items_new: a valid split of items, no train split */
    kiln_prefetch *loader;    /* the batches' ring (loader.c); NULL until the source is complete */
};

/* ---- decoding (image.c) ------------------------------------------------------------------- */

/* A decoded image: px (h, w, c) f32 in [0, 1], malloc'd. */
typedef struct kiln__vimage {
    float *px;
    int h, w, c;
} kiln__vimage;

/* What a file's header says. */
typedef struct kiln__vprobe {
    int h, w;
    bool grey;
} kiln__vprobe;

/* Reads and decodes a PNG or JPEG; want_c 1 or 3 converts channels, 0 keeps the file's own
 * (1 if grey else 3); images of more than max_pixels pixels are refused from their header.
 * Errors (message names the file): IO, FORMAT, NOMEM. */
kiln_status kiln__vision_decode(const char *path, int want_c, int64_t max_pixels, kiln__vimage *out);
/* Reads just enough of a file to check it is a PNG or JPEG and learn its size (checked
 * against max_pixels). */
kiln_status kiln__vision_probe(const char *path, int64_t max_pixels, kiln__vprobe *out);
void kiln__vimage_free(kiln__vimage *im);
/* Reads a whole file into a malloc'd buffer (what names the caller in messages). */
kiln_status kiln__vision_read_file(const char *what, const char *path, unsigned char **buf, size_t *len);

/* ---- resizing (resize.c) ------------------------------------------------------------------ */

/* Where an (h, w) image lands for an output (size, size): it is resized to (rh, rw) and the
 * window starting at (oy, ox) is kept. torchvision Resize(size) + CenterCrop(size) for CROP. */
void kiln__vision_geometry(int h, int w, int size, kiln_vision_resize mode, int *rh, int *rw, int *oy, int *ox);
/* src (h, w, c) -> dst (c, size, size), bilinear with PIL's antialiasing, in float. */
kiln_status kiln__vision_resize(const float *src, int h, int w, int c, int size, kiln_vision_resize mode,
                                float *dst);

/* ---- IDX (idx.c) -------------------------------------------------------------------------- */

/* Reads an IDX file, gzip or plain. want_magic 0x00000803 (u8, 3 dims) or 0x00000801 (u8, 1
 * dim); dims (ndim = want_magic & 0xff) and data (prod dims bytes, malloc'd) out. */
kiln_status kiln__vision_idx_read(const char *path, uint32_t want_magic, int64_t *dims, uint8_t **data);
/* kiln_vision_idx_new under a name ("fashion-mnist" also names its classes). */
kiln_data *kiln__vision_idx_named(const char *name, const char *train_images, const char *train_labels,
                                  const char *valid_images, const char *valid_labels, const kiln_vision_params *p);

/* ---- sources (vision.c, folder.c) --------------------------------------------------------- */

/* A fresh source with params checked and copied; NULL + message on failure. */
kiln_vision_data *kiln__vision_alloc(const char *name, const kiln_vision_params *p);
void kiln__vision_destroy(kiln_vision_data *v);
/* Completes v (channels, size, stats, order, loader) and wraps it; v is owned by the call
 * (freed on failure). grey_all: every image is grey (for n_channels 0). */
kiln_data *kiln__vision_finish(kiln_vision_data *v, bool grey_all);
/* The end of a file-list source's construction: when st (the construction so far) is OK,
 * checks its files (kiln__vision_check_files) and completes it (kiln__vision_finish); on an
 * error destroys v. NULL + message on failure. */
kiln_data *kiln__vision_check_and_finish(kiln_vision_data *v, kiln_status st);
/* Checks every file of a folder/CSV source (skip_bad: decodes and drops bad ones, with a
 * warning each); sets *grey_all and, when p.size is 0, v->size from a common square size. */
kiln_status kiln__vision_check_files(kiln_vision_data *v, bool *grey_all);
/* Item i of split into out (c, size, size): pixels in [0, 1], then the transform (with seed
 * and epoch; tfm: KILN__TFM_NONE, KILN__TFM_SPLIT the split's own branch (train = the split is
 * train), KILN__TFM_TRAIN the training branch whatever the split: TTA), then normalization
 * (when normalize). Thread-safe: reads v only. */
enum { KILN__TFM_NONE = 0, KILN__TFM_SPLIT = 1, KILN__TFM_TRAIN = 2 };
kiln_status kiln__vision_make_item(const kiln_vision_data *v, kiln_data_split split, int64_t i, int tfm,
                                   uint64_t seed, int64_t epoch, bool normalize, float *out);
/* Applies params.classes, train_per_class and valid_per_class to v's item lists and classes
 * (subset.c); clears params.classes. Errors: INVALID (an unknown or repeated class), NOMEM. */
kiln_status kiln__vision_subset(kiln_vision_data *v);
/* strdup that counts as an allocation failure message. */
char *kiln__vision_strdup(const char *s);

/* ---- loader (loader.c) -------------------------------------------------------------------- */

/* The prefetch ring of v (which must be complete): p.n_workers threads, p.prefetch slots;
 * NULL + message on failure. Freed with kiln_prefetch_free. */
kiln_prefetch *kiln__vloader_new(kiln_vision_data *v);
extern const kiln_data_ops kiln__vision_ops;

#endif
