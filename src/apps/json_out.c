/* JSON files of the application layer: what it writes (model.json, metrics.json, a cJSON tree
 * printed with a final newline, written atomically: temp file + fsync + rename, kiln/io.h), and
 * a model.json it reads back, its task checked. */
#include "app_internal.h"
#include "core/json.h"

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

kiln_status kiln__read_model_json(const char *dir, const char *want, char *path, size_t cap, cJSON **out)
{
    *out = NULL;
    char *text = NULL;
    size_t n = 0;
    const char *task = NULL;
    kiln_status st = kiln__path(path, cap, dir, "model.json");
    if (!st) st = kiln__read_file(path, (size_t)16 << 20, &text, &n);
    char *z = st ? NULL : realloc(text, n + 1); /* NUL-terminated for the parser */
    if (!st && !z) st = kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", path);
    if (z) z[n] = 0, text = z;
    if (!st) st = kiln__json_object(path, text, out);
    free(text);
    if (!st) st = kiln__json_get_str(path, *out, "task", true, &task);
    if (!st && want && strcmp(task, want))
        st = kiln__err(KILN_STATUS_FORMAT, "%s: task is not \"%s\" (it is \"%s\": not a model of that task)", path,
                       want, task);
    if (st) {
        cJSON_Delete(*out);
        *out = NULL;
    }
    return st;
}
