/* fastai show_batch for vision data (kiln/apps.h): the first n training images of an epoch,
 * as the loader makes them (augmented when the data has a transform), in a labelled grid. */
#include "app_internal.h"

#include <stdlib.h>

kiln_status kiln_vision_show_batch(kiln_data *d, kiln_ctx *ctx, uint64_t seed, const char *path)
{
    kiln_vision_data *v = d ? kiln_vision_data_of(d) : NULL;
    if (!v || !ctx || !path) return kiln__err(KILN_STATUS_INVALID, "vision_show_batch: needs vision data, a context and a path");
    if (kiln_data_n_items(d, KILN_DATA_SPLIT_TRAIN) < 1)
        return kiln__err(KILN_STATUS_INVALID, "%s: no training images", kiln_vision_data_name(v));
    kiln_mark mk = kiln_step_mark(ctx);
    kiln_tensor *x = NULL, *y = NULL; /* x (B, C, S, S) normalized, y (B) i64 */
    kiln_status st = kiln_data_set_epoch(d, seed, 0);
    if (!st) st = kiln_data_get_batch(d, KILN_DATA_SPLIT_TRAIN, 0, ctx, &x, &y);
    if (st) {
        kiln__err_prefix(st, kiln_vision_data_name(v));
        kiln_step_rewind(ctx, mk);
        return st;
    }
    kiln_vision_stats s = kiln_vision_data_stats(v);
    int b = (int)x->shape[0];
    const char **labels = calloc((size_t)b, sizeof *labels);
    const int64_t *yy = y->data;
    for (int i = 0; labels && i < b; i++) labels[i] = kiln_vision_data_class(v, (int)yy[i]);
    st = labels ? kiln_image_grid_png(path, x->data, b, (int)x->shape[1], (int)x->shape[2], (int)x->shape[3], labels, 0,
                                      s.mean, s.std)
                : kiln__err(KILN_STATUS_NOMEM, "vision_show_batch: out of memory");
    free(labels);
    kiln_step_rewind(ctx, mk);
    return kiln__done(st);
}
