/* Fuzz target: checkpoints (src/learn/checkpoint.c) through the public calls a resume makes,
 * kiln_checkpoint_read_info and kiln_checkpoint_load, into a tiny learner (kf_learner.c) whose
 * seeds make_seeds.c writes. A failure must leave a message. */
#include "fuzz.h"
#include "kf_learner.h"

#include "kiln/learn_checkpoint.h"

#include <stdlib.h>

static kf_learn g_l;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_l.learn) {
        g_l = kf_learner_new();
        if (!g_l.learn) abort();
    }
    const char *path = kf_memfile(data, size);
    if (!path) abort();
    kiln_checkpoint_info info;
    kiln_clear_error();
    if (kiln_checkpoint_read_info(path, &info)) kf_refused("checkpoint_read_info");
    kiln_clear_error();
    if (kiln_checkpoint_load(g_l.learn, path, &info)) kf_refused("checkpoint_load");
    return 0;
}
