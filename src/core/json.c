/* The JSON vocabulary of checkpoint parts (src/core/json.h): exact doubles and 64-bit values
 * on the way out, typed lookups that name the key on the way in. cJSON does the syntax. */
#include "core/json.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

cJSON *kiln__json_f64(double v)
{
    if (!isfinite(v)) return cJSON_CreateString(isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", v);
    return cJSON_CreateRaw(buf);
}

static bool add(cJSON *o, const char *key, cJSON *item)
{
    if (item && cJSON_AddItemToObject(o, key, item)) return true;
    cJSON_Delete(item);
    return false;
}

bool kiln__json_add_f64(cJSON *o, const char *key, double v) { return add(o, key, kiln__json_f64(v)); }

bool kiln__json_add_i64(cJSON *o, const char *key, int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    return add(o, key, cJSON_CreateRaw(buf));
}

bool kiln__json_add_u64(cJSON *o, const char *key, uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return add(o, key, cJSON_CreateString(buf));
}

char *kiln__json_finish(const char *who, cJSON *o, bool ok)
{
    char *txt = ok && o ? cJSON_PrintUnformatted(o) : NULL, *out = txt ? strdup(txt) : NULL;
    cJSON_free(txt);
    cJSON_Delete(o);
    return out ? out : kiln__errp(KILN_STATUS_NOMEM, "%s: out of memory", who);
}

kiln_status kiln__json_object(const char *who, const char *text, cJSON **out)
{
    *out = NULL;
    if (!text) return kiln__err(KILN_STATUS_FORMAT, "%s is missing", who);
    cJSON *o = cJSON_Parse(text);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return kiln__err(KILN_STATUS_FORMAT, "%s: not a JSON object", who);
    }
    *out = o;
    return KILN_STATUS_OK;
}

/* The member, or NULL; FORMAT when missing and required (*st). */
static const cJSON *member(const char *who, const cJSON *o, const char *key, bool required, kiln_status *st)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *st = !v && required ? kiln__err(KILN_STATUS_FORMAT, "%s: \"%s\" is missing", who, key) : KILN_STATUS_OK;
    return v;
}

kiln_status kiln__json_f64_of(const char *who, const char *key, int i, const cJSON *v, double *out)
{
    const char *s = cJSON_IsString(v) ? v->valuestring : NULL;
    if (cJSON_IsNumber(v)) *out = v->valuedouble;
    else if (s && !strcmp(s, "nan")) *out = NAN;
    else if (s && (!strcmp(s, "inf") || !strcmp(s, "-inf"))) *out = s[0] == '-' ? -INFINITY : INFINITY;
    else if (i < 0) return kiln__err(KILN_STATUS_FORMAT, "%s: \"%s\" is not a number", who, key);
    else return kiln__err(KILN_STATUS_FORMAT, "%s: \"%s\"[%d] is not a number", who, key, i);
    return KILN_STATUS_OK;
}

kiln_status kiln__json_get_f64(const char *who, const cJSON *o, const char *key, bool required, double *out)
{
    kiln_status st;
    const cJSON *v = member(who, o, key, required, &st);
    return v ? kiln__json_f64_of(who, key, -1, v, out) : st;
}

#define MAX_EXACT 9007199254740992.0 /* 2^53 */

kiln_status kiln__json_get_i64(const char *who, const cJSON *o, const char *key, bool required, int64_t *out)
{
    kiln_status st;
    const cJSON *v = member(who, o, key, required, &st);
    if (!v) return st;
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || d != floor(d) || fabs(d) > MAX_EXACT)
        return kiln__err(KILN_STATUS_FORMAT, "%s: \"%s\" is not an integer", who, key);
    *out = (int64_t)d;
    return KILN_STATUS_OK;
}

kiln_status kiln__json_get_u64(const char *who, const cJSON *o, const char *key, bool required, uint64_t *out)
{
    kiln_status st;
    const cJSON *v = member(who, o, key, required, &st);
    if (!v) return st;
    const char *s = cJSON_IsString(v) ? v->valuestring : NULL;
    if (s && *s >= '0' && *s <= '9') {
        char *end;
        errno = 0;
        unsigned long long u = strtoull(s, &end, 10);
        if (!*end && !errno) {
            *out = (uint64_t)u;
            return KILN_STATUS_OK;
        }
    } else if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= MAX_EXACT &&
               v->valuedouble == floor(v->valuedouble)) {
        *out = (uint64_t)v->valuedouble;
        return KILN_STATUS_OK;
    }
    return kiln__err(KILN_STATUS_FORMAT, "%s: \"%s\" is not an unsigned 64-bit integer", who, key);
}

kiln_status kiln__json_get_bool(const char *who, const cJSON *o, const char *key, bool required, bool *out)
{
    kiln_status st;
    const cJSON *v = member(who, o, key, required, &st);
    if (!v) return st;
    if (!cJSON_IsBool(v)) return kiln__err(KILN_STATUS_FORMAT, "%s: \"%s\" is not true or false", who, key);
    *out = cJSON_IsTrue(v);
    return KILN_STATUS_OK;
}

kiln_status kiln__json_get_str(const char *who, const cJSON *o, const char *key, bool required, const char **out)
{
    kiln_status st;
    const cJSON *v = member(who, o, key, required, &st);
    if (!v) return st;
    if (!cJSON_IsString(v) || !v->valuestring)
        return kiln__err(KILN_STATUS_FORMAT, "%s: \"%s\" is not a string", who, key);
    *out = v->valuestring;
    return KILN_STATUS_OK;
}

kiln_status kiln__json_get_node(const char *who, const cJSON *o, const char *key, bool required, bool obj,
                                const cJSON **out)
{
    kiln_status st;
    const cJSON *v = member(who, o, key, required, &st);
    *out = NULL;
    if (!v) return st;
    if (obj ? !cJSON_IsObject(v) : !cJSON_IsArray(v))
        return kiln__err(KILN_STATUS_FORMAT, "%s: \"%s\" is not %s", who, key, obj ? "an object" : "an array");
    *out = v;
    return KILN_STATUS_OK;
}

const char *kiln__json_quote(const char *s, char *buf, size_t cap)
{
    size_t j = 0;
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
        if (j + (plain ? 1 : 4) + 4 > cap) {
            memcpy(buf + j, "...", 4);
            return buf;
        }
        if (plain) buf[j++] = (char)c;
        else j += (size_t)snprintf(buf + j, cap - j, "\\x%02X", c);
    }
    buf[j] = '\0';
    return buf;
}

void kiln__json_warn_unknown(const char *who, const cJSON *o, const char *const *known)
{
    char q[80];
    const char *first = NULL;
    int n = 0;
    for (const cJSON *a = o ? o->child : NULL; a; a = a->next) {
        bool ok = false;
        for (int q = 0; known[q] && !ok; q++) ok = a->string && !strcmp(known[q], a->string);
        if (!ok && !n++) first = a->string ? a->string : "";
    }
    if (n == 1) kiln__warn("%s: unknown key \"%s\" ignored", who, kiln__json_quote(first, q, sizeof q));
    else if (n > 1)
        kiln__warn("%s: unknown key \"%s\" and %d more ignored", who, kiln__json_quote(first, q, sizeof q), n - 1);
}
