/* Fuzz target: PyTorch checkpoints (src/io/pth.c, pth_zip.c, pth_legacy.c and the restricted
 * unpickler pickle.c) through kiln_weights_open, as kiln_model_load opens them, then every
 * tensor's info and load. A failed open must leave a message; an opened file must say it is a
 * .pth (a zip or legacy input is never handed to the safetensors reader) or safetensors, and
 * give back each tensor it lists with as many bytes as its shape needs. */
#include "fuzz.h"

#include "kiln.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kiln_ctx *ctx = kf_ctx();
    const char *path = kf_memfile(data, size);
    if (!path) abort();
    kiln_clear_error();
    kiln_st_file *f = NULL;
    if (kiln_weights_open(path, &f)) {
        kf_refused("weights_open");
        return 0;
    }
    const char *fmt = kiln_st_metadata(f, "format");
    bool pth = size >= 4 && (!memcmp(data, "PK\x03\x04", 4) || !memcmp(data, "\x80\x02\x8a\x0a", 4));
    if (pth && (!fmt || strcmp(fmt, "pth"))) kf_bug("a zip or legacy pickle input opened without format pth");
    for (size_t i = 0; i < kiln_st_count(f); i++) {
        const char *name = kiln_st_name(f, i);
        kiln_dtype dt;
        int nd;
        int64_t shape[KILN_MAX_DIMS];
        const void *bytes;
        size_t nbytes;
        if (!name || !kiln_st_has(f, name) || kiln_st_info(f, name, &dt, &nd, shape, &bytes, &nbytes))
            kf_bug("a listed tensor has no info");
        size_t numel = 1;
        for (int d = 0; d < nd; d++) numel *= (size_t)shape[d];
        if (numel * (size_t)kiln_dtype_size(dt) != nbytes) kf_bug("a tensor's bytes disagree with its shape");
        if (nbytes && nbytes <= (1u << 20)) {
            volatile unsigned char sink = ((const unsigned char *)bytes)[nbytes - 1]; /* ASan: inside the buffer */
            (void)sink;
            if (!kiln_st_load(ctx, f, name)) kf_bug("a listed tensor does not load");
        }
    }
    kiln_st_close(f);
    kiln_step_reset(ctx);
    return 0;
}
