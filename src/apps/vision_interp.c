/* Vision's part of classification interpretation (include/kiln/interp.h): fastai's
 * plot_top_losses, the images of the top losses as a labelled PNG grid. */
#include "kiln/augment.h"
#include "kiln/interp.h"

#include <stdio.h>
#include <stdlib.h>

#define GRID_MAX 1024 /* images kiln_image_grid_png draws at most */
#define LABEL "%s/%s\n%.2f / %.2f" /* fastai: predicted/actual, loss / probability of actual */

/* it must describe split of v: same classes, same items, the same actual class per item. */
static kiln_status check_split(const kiln_vision_data *v, kiln_data_split split, const kiln_interp *it,
                               const char *path)
{
    static const char *fn = "kiln_vision_plot_top_losses";
    int nc = kiln_vision_data_n_classes(v);
    if (it->c != nc)
        return kiln_error(KILN_STATUS_INVALID, "%s: %s: the interpretation has %d classes, the data %d", fn, path,
                          it->c, nc);
    if (kiln_vision_data_label(v, split, it->n - 1) < 0 || kiln_vision_data_label(v, split, it->n) >= 0)
        return kiln_error(KILN_STATUS_INVALID, "%s: %s: the interpretation has %lld items, not the split's count", fn,
                          path, (long long)it->n);
    return KILN_STATUS_OK;
}

kiln_status kiln_vision_plot_top_losses(const kiln_vision_data *v, kiln_data_split split, const kiln_interp *it,
                                        int64_t k, const char *const *classes, const char *path)
{
    static const char *fn = "kiln_vision_plot_top_losses";
    if (!v || !path || !*path) return kiln_error(KILN_STATUS_INVALID, "%s: data or path is NULL", fn);
    if (kiln_interp_top_losses(it, 0, NULL) < 0) return kiln_last_status(); /* checks it */
    kiln_status st = check_split(v, split, it, path);
    if (st) return st;
    if (k > it->n) k = it->n;
    if (k < 1 || k > GRID_MAX)
        return kiln_error(KILN_STATUS_INVALID, "%s: %s: k = %lld (need 1 to %d: the images go in one grid)", fn, path,
                          (long long)k, GRID_MAX);
    int64_t *idx = malloc(sizeof *idx * (size_t)k);
    if (!idx) return kiln_error(KILN_STATUS_NOMEM, "%s: %s: out of memory", fn, path);
    int b = (int)k; /* in [1, GRID_MAX] */
    if (kiln_interp_top_losses(it, k, idx) != k) st = kiln_last_status();
    int c = kiln_vision_data_n_channels(v), s = kiln_vision_data_size(v);
    size_t per = (size_t)c * (size_t)s * (size_t)s;
    float *imgs = st ? NULL : malloc(sizeof *imgs * per * (size_t)b);
    char **lab = st ? NULL : calloc((size_t)b, sizeof *lab);
    if (!st && (!imgs || !lab)) st = kiln_error(KILN_STATUS_NOMEM, "%s: %s: out of memory for %d images", fn, path,
                                                b);
    for (int r = 0; !st && r < b; r++) {
        int64_t i = idx[r];
        if (kiln_vision_data_label(v, split, i) != it->actual[i]) {
            st = kiln_error(KILN_STATUS_INVALID, "%s: %s: item %lld: the interpretation's class %d is not the data's %lld",
                            fn, path, (long long)i, it->actual[i], (long long)kiln_vision_data_label(v, split, i));
            break;
        }
        if ((st = kiln_vision_data_item(v, split, i, false, imgs + per * (size_t)r))) break;
        int p = it->pred[i], a = it->actual[i];
        const char *pn = classes && classes[p] ? classes[p] : kiln_vision_data_class(v, p);
        const char *an = classes && classes[a] ? classes[a] : kiln_vision_data_class(v, a);
        /* on two lines so that long class names fit the cell */
        int len = snprintf(NULL, 0, LABEL, pn, an, it->loss[i], (double)it->p_actual[i]);
        if (len < 0 || !(lab[r] = malloc((size_t)len + 1))) {
            st = kiln_error(KILN_STATUS_NOMEM, "%s: %s: out of memory", fn, path);
            break;
        }
        snprintf(lab[r], (size_t)len + 1, LABEL, pn, an, it->loss[i], (double)it->p_actual[i]);
    }
    if (!st) st = kiln_image_grid_png(path, imgs, b, c, s, s, (const char *const *)lab, 0, NULL, NULL);
    for (int r = 0; lab && r < b; r++) free(lab[r]);
    free(lab);
    free(imgs);
    free(idx);
    return st;
}
