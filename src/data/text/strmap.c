/* A string -> int64 hash map (open addressing, FNV-1a, keys copied) for counting tokens and
 * looking up vocabulary ids. */
#include "data/text/text_internal.h"

#include <stdlib.h>
#include <string.h>

struct kiln__strmap {
    char **key;
    int64_t *val;
    size_t cap, n; /* cap a power of two, n <= cap / 2 */
};

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

kiln__strmap *kiln__strmap_new(void)
{
    kiln__strmap *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->cap = 1024;
    m->key = calloc(m->cap, sizeof *m->key);
    m->val = calloc(m->cap, sizeof *m->val);
    if (!m->key || !m->val) {
        kiln__strmap_free(m);
        return NULL;
    }
    return m;
}

void kiln__strmap_free(kiln__strmap *m)
{
    if (!m) return;
    if (m->key)
        for (size_t i = 0; i < m->cap; i++) free(m->key[i]);
    free(m->key);
    free(m->val);
    free(m);
}

static size_t find(char *const *key, size_t cap, const char *k)
{
    size_t i = (size_t)hash(k) & (cap - 1);
    while (key[i] && strcmp(key[i], k)) i = (i + 1) & (cap - 1);
    return i;
}

static bool grow(kiln__strmap *m)
{
    size_t cap = m->cap * 2;
    char **key = calloc(cap, sizeof *key);
    int64_t *val = calloc(cap, sizeof *val);
    if (!key || !val) {
        free(key);
        free(val);
        return false;
    }
    for (size_t i = 0; i < m->cap; i++)
        if (m->key[i]) {
            size_t j = find(key, cap, m->key[i]);
            key[j] = m->key[i];
            val[j] = m->val[i];
        }
    free(m->key);
    free(m->val);
    m->key = key;
    m->val = val;
    m->cap = cap;
    return true;
}

int64_t *kiln__strmap_slot(kiln__strmap *m, const char *k, int64_t init, bool *inserted)
{
    if (inserted) *inserted = false;
    size_t i = find(m->key, m->cap, k);
    if (m->key[i]) return &m->val[i];
    if ((m->n + 1) * 2 > m->cap) {
        if (!grow(m)) return NULL;
        i = find(m->key, m->cap, k);
    }
    m->key[i] = strdup(k);
    if (!m->key[i]) return NULL;
    m->val[i] = init;
    m->n++;
    if (inserted) *inserted = true;
    return &m->val[i];
}

int64_t kiln__strmap_get(const kiln__strmap *m, const char *k)
{
    size_t i = find(m->key, m->cap, k);
    return m->key[i] ? m->val[i] : -1;
}
