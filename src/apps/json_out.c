/* JSON files the application layer writes (model.json, metrics.json): a cJSON tree printed with
 * a final newline, and written atomically (temp file + fsync + rename, kiln/io.h). */
#include "app_internal.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

kiln_status kiln__json_text(cJSON *j, const char *who, char **text)
{
    char *s = j ? cJSON_Print(j) : NULL; /* NULL when building j ran out of memory */
    cJSON_Delete(j);
    size_t n = s ? strlen(s) : 0;
    char *t = s ? realloc(s, n + 2) : NULL;
    if (!t) {
        free(s);
        *text = NULL;
        return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", who);
    }
    memcpy(t + n, "\n", 2);
    *text = t;
    return KILN_STATUS_OK;
}

kiln_status kiln__json_write(cJSON *j, const char *path)
{
    char *text;
    kiln_status st = kiln__json_text(j, path, &text);
    if (!st) st = kiln_atomic_write(path, text, strlen(text));
    free(text);
    return st;
}
