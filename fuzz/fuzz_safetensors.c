/* Fuzz target: safetensors files (src/io/safetensors_read.c, _load.c) through kiln_st_open,
 * then every tensor's info and load and the metadata, as a model load would. A failed open
 * must leave a message; an opened file must give back each tensor it lists. */
#include "fuzz.h"

#include "kiln.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kiln_ctx *ctx = kf_ctx();
    const char *path = kf_memfile(data, size);
    if (!path) abort();
    kiln_clear_error();
    kiln_st_file *f = NULL;
    if (kiln_st_open(path, &f)) {
        kf_refused("st_open");
        return 0;
    }
    (void)kiln_st_metadata(f, "format");
    for (size_t i = 0; i < kiln_st_count(f); i++) {
        const char *name = kiln_st_name(f, i);
        kiln_dtype dt;
        int nd;
        int64_t shape[KILN_MAX_DIMS];
        const void *bytes;
        size_t nbytes;
        if (!name || !kiln_st_has(f, name) || kiln_st_info(f, name, &dt, &nd, shape, &bytes, &nbytes))
            kf_bug("a listed tensor has no info");
        if (nbytes <= (1u << 20) && !kiln_st_load(ctx, f, name)) kf_bug("a listed tensor does not load");
    }
    kiln_st_close(f);
    kiln_step_reset(ctx);
    return 0;
}
