/* Runs (include/kiln/learn_checkpoint.h): the random id a fresh fit gets, the settings that shape
 * training ("key=value" lines, e.g. a CLI's flags) that checkpoints record, and the check
 * that a resume goes on with the same settings as the run that wrote the checkpoint. */
#include "learn_internal.h"
#include "kiln/learn_checkpoint.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* splitmix64: spreads a weak seed (time, pid, address) when /dev/urandom is not there. */
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void kiln__run_new_id(kiln_learner *l)
{
    uint64_t r[2] = {0, 0};
    FILE *f = fopen("/dev/urandom", "rb");
    bool ok = f && fread(r, sizeof r, 1, f) == 1;
    if (f) fclose(f);
    if (!ok) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r[0] = mix((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
        r[1] = mix(r[0] ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)l);
    }
    snprintf(l->run_id, sizeof l->run_id, "%016llx%016llx", (unsigned long long)r[0], (unsigned long long)r[1]);
}

const char *kiln_learner_run_id(const kiln_learner *l) { return l ? l->run_id : ""; }

const char *kiln_learner_run_settings(const kiln_learner *l) { return l ? l->run_settings : NULL; }

kiln_status kiln_learner_set_run_settings(kiln_learner *l, const char *const *kv)
{
    if (!l) return kiln__err(KILN_STATUS_INVALID, "learner_set_run_settings: learner is NULL");
    if (l->in_fit) return kiln__err(KILN_STATUS_STATE, "learner_set_run_settings: not during a fit");
    size_t n = 1;
    for (size_t i = 0; kv && kv[i]; i += 2) {
        const char *k = kv[i], *v = kv[i + 1];
        if (!v) return kiln__err(KILN_STATUS_INVALID, "learner_set_run_settings: key '%s' has no value", k);
        if (!*k || strpbrk(k, "=\n") || strchr(v, '\n'))
            return kiln__err(KILN_STATUS_INVALID,
                             "learner_set_run_settings: '%s' = '%s': keys need no '=' and neither a newline", k, v);
        for (size_t j = 0; j < i; j += 2)
            if (!strcmp(kv[j], k)) return kiln__err(KILN_STATUS_INVALID, "learner_set_run_settings: '%s' twice", k);
        n += strlen(k) + strlen(v) + 2;
    }
    char *s = NULL;
    if (kv && kv[0]) {
        if (!(s = malloc(n))) return kiln__err(KILN_STATUS_NOMEM, "learner_set_run_settings: out of memory");
        s[0] = '\0';
        for (size_t i = 0; kv[i]; i += 2) strcat(strcat(strcat(strcat(s, kv[i]), "="), kv[i + 1]), "\n");
    }
    free(l->run_settings);
    l->run_settings = s;
    return KILN_STATUS_OK;
}

/* The value of key in "k=v\n" lines into buf (NULL when absent). */
static const char *lookup(const char *lines, const char *key, size_t klen, char *buf, size_t n)
{
    for (const char *p = lines; p && *p;) {
        const char *eol = strchr(p, '\n'), *eq = strchr(p, '=');
        if (!eol) eol = p + strlen(p);
        if (eq && eq < eol && (size_t)(eq - p) == klen && !strncmp(p, key, klen)) {
            snprintf(buf, n, "%.*s", (int)(eol - eq - 1), eq + 1);
            return buf;
        }
        p = *eol ? eol + 1 : eol;
    }
    return NULL;
}

/* Appends "key: A then, B now" for every key of `from` whose value in a and b differ
 * (keys only in b are found by the second call with from = b). */
static void diff_keys(const char *from, const char *a, const char *b, bool skip_in_a, char *out, size_t cap,
                      int *count)
{
    char va[512], vb[512], key[256];
    for (const char *p = from; p && *p;) {
        const char *eol = strchr(p, '\n'), *eq = strchr(p, '=');
        if (!eol) eol = p + strlen(p);
        if (eq && eq < eol) {
            size_t kl = (size_t)(eq - p);
            snprintf(key, sizeof key, "%.*s", (int)kl, p);
            const char *x = lookup(a, key, kl, va, sizeof va), *y = lookup(b, key, kl, vb, sizeof vb);
            /* data-parallel runs record "ranks" (kiln_learner_train); a run without it had one */
            if (!strcmp(key, "ranks")) x = x ? x : "1", y = y ? y : "1";
            bool differ = !x || !y || strcmp(x, y) != 0;
            if (differ && !(skip_in_a && x)) {
                size_t len = strlen(out);
                snprintf(out + len, cap - len, "%s%s: %s then, %s now", (*count)++ ? "; " : "", key,
                         x ? x : "(not set)", y ? y : "(not set)");
            }
        }
        p = *eol ? eol + 1 : eol;
    }
}

kiln_status kiln__run_check(const kiln_learner *l, const char *path, const char *saved_id, const char *saved)
{
    if (!l->run_settings) return KILN_STATUS_OK; /* nothing declared: nothing to check */
    if (!saved_id || !*saved_id || !saved)
        return kiln__err(KILN_STATUS_INVALID,
                         "learner_resume: %s records no run id or settings (written by an older kiln): they cannot "
                         "be checked against these; start a fresh fit", path);
    char diff[900] = "";
    int count = 0;
    diff_keys(saved, saved, l->run_settings, false, diff, sizeof diff, &count);
    diff_keys(l->run_settings, saved, l->run_settings, true, diff, sizeof diff, &count);
    if (!count) return KILN_STATUS_OK;
    return kiln__err(KILN_STATUS_INVALID,
                     "learner_resume: %s belongs to run %s, whose settings differ in %d: %s (resume with the same "
                     "settings, or start a fresh fit)", path, saved_id, count, diff);
}
