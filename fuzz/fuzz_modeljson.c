/* Fuzz target: model.json, the description of an exported vision model that predict and
 * interpret read (src/apps/vision_model.c), through kiln_vision_model_info_read as they call
 * it. What it accepts must pass the writer's own check and read back the same after
 * kiln_vision_model_info_format (the strict-JSON round trip). A failure must leave a message. */
#include "fuzz.h"

#include "kiln/apps.h"

#include <stdlib.h>
#include <string.h>

static bool same(const kiln_vision_model_info *a, const kiln_vision_model_info *b)
{
    if (strcmp(a->arch, b->arch) || a->n_in != b->n_in || a->size != b->size || a->n_classes != b->n_classes ||
        a->norm != b->norm || a->augment != b->augment || a->seed != b->seed || a->n_params != b->n_params ||
        memcmp(&a->stats, &b->stats, sizeof a->stats) || strcmp(a->data ? a->data : "", b->data ? b->data : ""))
        return false; /* "data" absent is written as "" */
    for (int c = 0; c < a->n_classes; c++)
        if (strcmp(a->classes[c], b->classes[c])) return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = kf_memfile(data, size);
    if (!path) abort();
    kiln_vision_model_info info, again;
    kiln_clear_error();
    if (kiln_vision_model_info_read(path, &info)) {
        kf_refused("model_info_read");
        kiln_vision_model_info_free(&info);
        return 0;
    }
    char *text = NULL;
    if (kiln_vision_model_info_format(&info, &text)) kf_bug("a model.json read fine but does not format back");
    if (kiln_vision_model_info_parse(text, strlen(text), "round trip", &again)) kf_bug("formatted text not read back");
    if (!same(&info, &again)) kf_bug("read back differs");
    free(text);
    kiln_vision_model_info_free(&info);
    kiln_vision_model_info_free(&again);
    return 0;
}
