/* Fuzz target: PNG and JPEG through kiln's image path (src/data/vision/image.c: libspng,
 * libturbojpeg, then the resize in resize.c), as predict and the loader use it: probe the
 * header, then decode to (C, 16, 16). The pixel cap is 2^20 here so a claimed huge image is
 * refused as in use, without the fuzzer's memory limit taking it for a leak or a crash. */
#include "fuzz.h"

#include "data/vision/vision_internal.h"

#include <stdlib.h>

#define FUZZ_MAX_PIXELS ((int64_t)1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kiln_ctx *ctx = kf_ctx();
    const char *path = kf_memfile(data, size);
    if (!path) abort();
    kiln_clear_error();
    kiln__vprobe pr;
    bool probed = !kiln__vision_probe(path, FUZZ_MAX_PIXELS, &pr);
    if (!probed) kf_refused("probe");
    if (probed && (pr.h < 1 || pr.w < 1 || (int64_t)pr.h * pr.w > FUZZ_MAX_PIXELS))
        kf_bug("probe gave a size out of range");
    kiln_clear_error();
    kiln_tensor *t = kiln_vision_image_load_ex(ctx, path, 0, 16, KILN_VISION_RESIZE_CROP, FUZZ_MAX_PIXELS);
    if (!t) kf_refused("image_load");
    if (t && (t->ndim != 3 || t->shape[1] != 16 || t->shape[2] != 16)) kf_bug("image of the wrong shape");
    kiln_step_reset(ctx);
    return 0;
}
