/* Fuzz target: IDX files (src/data/vision/idx.c), gzip or plain, read as an images file
 * (magic 0x803, 3 dims) and as a labels file (0x801, 1 dim). A success must give data of the
 * size the dims say; a failure must leave a message. */
#include "fuzz.h"

#include "data/vision/vision_internal.h"

#include <stdlib.h>

static void read_as(const char *path, uint32_t magic)
{
    int64_t dims[3];
    uint8_t *px = NULL;
    kiln_clear_error();
    if (kiln__vision_idx_read(path, magic, dims, &px)) {
        if (px) kf_bug("idx failed but returned data");
        kf_refused(magic == 0x803 ? "idx images" : "idx labels");
        return;
    }
    int64_t n = 1;
    for (int d = 0; d < (int)(magic & 0xff); d++) n *= dims[d];
    if (n > 0) px[n - 1] ^= 1; /* ASan: the buffer holds the dims' product */
    free(px);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = kf_memfile(data, size);
    if (!path) abort();
    read_as(path, 0x00000803u);
    read_as(path, 0x00000801u);
    return 0;
}
