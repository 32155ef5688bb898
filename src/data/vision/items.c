/* kiln_vision_items_new (vision.h): image files to predict on, as the valid split of a source
 * with no train split (fastai's test_dl). The files go through the same loader as a data
 * set's validation images: decode, resize, normalize, and TTA passes. */
#include "vision_internal.h"

#include <stdlib.h>
#include <string.h>

kiln_data *kiln_vision_items_new(const char *const *paths, int64_t n, const int64_t *labels,
                                 const char *const *classes, int n_classes, const kiln_vision_params *p)
{
    if (!paths || n < 1 || !classes || n_classes < 1 || !p)
        return kiln__errp(KILN_STATUS_INVALID, "vision_items_new: needs >= 1 path, >= 1 class and params");
    if (p->size < 1 || (p->n_channels != 1 && p->n_channels != 3))
        return kiln__errp(KILN_STATUS_INVALID, "vision_items_new: set params size (%d) and n_channels (%d: 1 or 3)",
                          p->size, p->n_channels);
    if (p->norm == KILN_VISION_NORM_DATASET)
        return kiln__errp(KILN_STATUS_INVALID, "vision_items_new: norm DATASET needs a train split: pass the "
                                               "model's stats as CUSTOM");
    kiln_vision_data *v = kiln__vision_alloc(n == 1 ? paths[0] : "items", p);
    if (!v) return NULL;
    v->items_only = true;
    kiln__vsplit *s = &v->s[KILN_DATA_SPLIT_VALID];
    kiln_status st = KILN_STATUS_OK;
    s->paths = calloc((size_t)n, sizeof *s->paths);
    s->labels = calloc((size_t)n, sizeof *s->labels);
    v->classes = calloc((size_t)n_classes, sizeof *v->classes);
    if (!s->paths || !s->labels || !v->classes) st = kiln__err(KILN_STATUS_NOMEM, "vision_items_new: out of memory");
    else s->n = n, v->n_classes = n_classes;
    for (int c = 0; !st && c < n_classes; c++)
        if (!classes[c] || !(v->classes[c] = kiln__vision_strdup(classes[c]))) st = KILN_STATUS_NOMEM;
    for (int64_t i = 0; !st && i < n; i++) {
        int64_t y = labels ? labels[i] : 0;
        if (y < 0 || y >= n_classes)
            st = kiln__err(KILN_STATUS_INVALID, "vision_items_new: label %lld of item %lld outside [0, %d)", (long long)y,
                           (long long)i, n_classes);
        else if (!paths[i] || !(s->paths[i] = kiln__vision_strdup(paths[i])))
            st = paths[i] ? KILN_STATUS_NOMEM : kiln__err(KILN_STATUS_INVALID, "vision_items_new: path %lld is NULL",
                                                          (long long)i);
        else s->labels[i] = y;
    }
    return kiln__vision_check_and_finish(v, st);
}
