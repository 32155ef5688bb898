/* kiln apps, vision: the description kept beside a trained vision model's weights so that it
 * can be loaded again and used on new inputs (kiln_learner_export / kiln_learner_load in
 * kiln/apps.h write and read it; these calls are the lower level).
 *
 * DIR/model.json describes DIR/model.safetensors: the architecture, input channels
 * and image size, the class names (in label order), the normalization and the training
 * augmentation (what test-time augmentation repeats). `kiln vision fit` writes it and
 * `predict` / `interpret` read it; a C program can do the same with these calls. Reading is
 * strict: every key is checked (type, finite, range, integral where it counts) and an error
 * names the file and the key ("model.json: normalization.std[0] must be > 0"); unknown keys
 * are accepted with a warning on stderr, so newer files still load. */
#ifndef KILN_VISION_MODEL_H
#define KILN_VISION_MODEL_H

#include "kiln/augment.h"
#include "kiln/core.h"
#include "kiln/data.h"
#include "kiln/vision.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- vision: model.json ------------------------------------------------------------------ */

#define KILN_VISION_MODEL_FORMAT "kiln-vision-model" /* files before format_version 1 (still read) */
#define KILN_MODEL_FORMAT "kiln-model"                /* every task's model.json */
#define KILN_MODEL_FORMAT_VERSION 1                   /* the newest this kiln reads and writes */
/* model.json files larger than this are refused (an error naming the limit, never a cut). */
#define KILN_VISION_MODEL_INFO_MAX_BYTES ((size_t)64 << 20)
/* Integers kept in JSON numbers (seed, n_params) must be at most 2^53 to stay exact. */
#define KILN_VISION_MODEL_MAX_INT 9007199254740992.0

typedef struct kiln_vision_model_info {
    char arch[32];            /* "simple-cnn", "resnet18", ... (the CLI's --arch names) */
    int n_in;                 /* input channels: 1 or 3 */
    int size;                 /* image side in pixels, [1, 4096] */
    int n_classes;            /* >= 1 */
    char **classes;           /* (n_classes) distinct non-empty UTF-8 names, owned */
    kiln_vision_norm norm;    /* NONE or CUSTOM after reading (stats hold the numbers) */
    kiln_vision_stats stats;  /* first n_in entries: mean finite, std finite and > 0 */
    bool augment;             /* trained with augmentation */
    kiln_augment_params aug;  /* that augmentation (TTA repeats it); defaults when absent */
    uint64_t seed;            /* the fit's seed, <= 2^53 (42 when absent) */
    double valid_pct;         /* the random validation share, [0, 1) (0.2 when absent) */
    int64_t n_params;         /* trainable parameters, informational */
    char *data;               /* the data set the model was trained on, owned; may be NULL;
                                 written with U+FFFD for bytes that are not UTF-8 */
} kiln_vision_model_info;

/* Reads path into *info (zeroed first; free with kiln_vision_model_info_free, also after an
 * error). FORMAT with a message naming path and the key at fault; IO when the file cannot be
 * read or is a folder; FORMAT when it is larger than KILN_VISION_MODEL_INFO_MAX_BYTES. */
kiln_status kiln_vision_model_info_read(const char *path, kiln_vision_model_info *info);
/* The same from len bytes of text (need not be NUL-terminated); name labels the messages
 * ("model.json" when NULL). */
kiln_status kiln_vision_model_info_parse(const char *text, size_t len, const char *name,
                                         kiln_vision_model_info *info);
/* Checks info as the reader would (the writer calls it): INVALID naming the field. A class
 * name that is not UTF-8 (a folder name in another encoding) is refused with the byte offset:
 * JSON holds only UTF-8, and a silently re-encoded name would not match the folder again. */
kiln_status kiln_vision_model_info_check(const kiln_vision_model_info *info);
/* The JSON text of info (malloc'd, ends in a newline) into *text, after the check. */
kiln_status kiln_vision_model_info_format(const kiln_vision_model_info *info, char **text);
/* Writes path atomically (temp file, fsync, rename). */
kiln_status kiln_vision_model_info_write(const char *path, const kiln_vision_model_info *info);
/* Fills n_in, size, n_classes, classes and stats from a vision data set (kiln_vision_open);
 * the other fields are left as they are. */
kiln_status kiln_vision_model_info_from_data(kiln_data *d, kiln_vision_model_info *info);
/* Frees classes and data and zeroes them; safe on a zeroed or partly filled info. */
void kiln_vision_model_info_free(kiln_vision_model_info *info);

#ifdef __cplusplus
}
#endif
#endif
