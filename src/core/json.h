/* Internal to libkiln: the small JSON vocabulary of the named-key parts of checkpoints (the
 * schedule, the optimizer's groups, the recorder, the RNG; src/core/json.c). Writing keeps
 * every double bit for bit ("%.17g" text; NaN and infinities as the strings "nan", "inf",
 * "-inf") and 64-bit unsigned values as decimal strings (a JSON number is a double).
 * Reading names the key at fault: "<who>: \"key\" is missing" / "... is not a number". */
#ifndef KILN_CORE_JSON_H
#define KILN_CORE_JSON_H

#include "core/internal.h"

#include <cjson/cJSON.h>

/* ---- writing: false when out of memory (the caller reports it) ---- */
cJSON *kiln__json_f64(double v);
bool kiln__json_add_f64(cJSON *o, const char *key, double v);
bool kiln__json_add_i64(cJSON *o, const char *key, int64_t v);
bool kiln__json_add_u64(cJSON *o, const char *key, uint64_t v);
/* o as compact text (malloc'd, free()), then deletes o; NULL + NOMEM message (who) when out
 * of memory or ok is false. */
char *kiln__json_finish(const char *who, cJSON *o, bool ok);

/* ---- reading ---- */
/* text parsed as a JSON object (*out; cJSON_Delete it); FORMAT naming who otherwise. */
kiln_status kiln__json_object(const char *who, const char *text, cJSON **out);
/* Member key of o into *out. Missing: OK with *out untouched unless required (FORMAT
 * "is missing"); the wrong type: FORMAT. i64 takes integral numbers up to 2^53, u64 a
 * decimal string or such a number. */
kiln_status kiln__json_get_f64(const char *who, const cJSON *o, const char *key, bool required, double *out);
kiln_status kiln__json_get_i64(const char *who, const cJSON *o, const char *key, bool required, int64_t *out);
kiln_status kiln__json_get_u64(const char *who, const cJSON *o, const char *key, bool required, uint64_t *out);
kiln_status kiln__json_get_bool(const char *who, const cJSON *o, const char *key, bool required, bool *out);
kiln_status kiln__json_get_str(const char *who, const cJSON *o, const char *key, bool required, const char **out);
/* A member that must be an array (or object with obj) when present; *out NULL when absent. */
kiln_status kiln__json_get_node(const char *who, const cJSON *o, const char *key, bool required, bool obj,
                                const cJSON **out);
/* Element v (named "key[i]" in messages) as a double. */
kiln_status kiln__json_f64_of(const char *who, const char *key, int i, const cJSON *v, double *out);
/* s as printable ASCII for a message (a key or value read from a file): bytes outside
 * 0x20..0x7E, '"' and '\\' as \xNN, cut with "..." to fit cap (>= 8). Returns buf. */
const char *kiln__json_quote(const char *s, char *buf, size_t cap);
/* One warning naming the first member of o not in known (NULL-terminated) and how many more. */
void kiln__json_warn_unknown(const char *who, const cJSON *o, const char *const *known);

#endif
