/* The checkpointing callback (include/kiln/learn_checkpoint.h, kiln_learner_add_checkpointing):
 * saves a checkpoint at the end of every n-th epoch and of the fit's last, to one file
 * overwritten each time or to one file per save named from a %d pattern. */
#include "learn_internal.h"
#include "kiln/learn_checkpoint.h"

#include <string.h>
#include <sys/stat.h>

typedef struct ckpt_cb {
    char *pre, *post; /* pattern: pre + number + post; file/dir: pre is the whole path */
    bool pattern, zero;
    int width, every;
    char *last;
} ckpt_cb;

static void ckpt_free(void *user)
{
    ckpt_cb *c = user;
    if (!c) return;
    free(c->pre), free(c->post), free(c->last);
    free(c);
}

/* Splits a pattern at its one %d / %Nd / %0Nd into pre and post; "%%" stands for "%". */
static kiln_status parse_pattern(ckpt_cb *c, const char *path)
{
    size_t n = strlen(path), k = 0, cut = 0;
    char *out = malloc(n + 1);
    if (!out) return kiln__err(KILN_STATUS_NOMEM, "add_checkpointing: out of memory");
    for (size_t i = 0; i < n; i++) {
        if (path[i] != '%' || path[i + 1] == '%') {
            out[k++] = path[i];
            i += path[i] == '%';
            continue;
        }
        size_t j = i + 1;
        int width = 0;
        while (path[j] >= '0' && path[j] <= '9' && width < 100) width = width * 10 + (path[j++] - '0');
        if (path[j] != 'd' || c->pattern) {
            free(out);
            return kiln__err(KILN_STATUS_INVALID, "add_checkpointing: path \"%s\": one %%d (or %%0Nd) at most, "
                             "other %% as %%%%", path);
        }
        c->pattern = true, c->zero = path[i + 1] == '0', c->width = width, cut = k;
        i = j;
    }
    out[k] = '\0';
    if (c->pattern) {
        if (!(c->post = strdup(out + cut)))
            return free(out), kiln__err(KILN_STATUS_NOMEM, "add_checkpointing: out of memory");
        out[cut] = '\0';
    }
    memcpy(c->pre, out, strlen(out) + 1); /* pre has room for the whole path */
    free(out);
    return KILN_STATUS_OK;
}

/* Writes the checkpoint path (malloc'd, taken; NULL: out of memory) and keeps it as the last one.
 * Every rank calls it: under ZeRO-1 the whole optimizer state is first gathered to rank 0 (a
 * collective) and dropped again after; the N ranks hold the same state and rank 0 writes it. */
static kiln_status write_ckpt(kiln_learner *l, ckpt_cb *c, char *path)
{
    kiln_status st = kiln__zero_gather(l);
    if (!st && kiln_learner_rank(l) == 0) {
        st = path ? kiln_checkpoint_save(l, path) : kiln__err(KILN_STATUS_NOMEM, "checkpointing: out of memory");
        kiln_status st2 = kiln__zero_reshard(l);
        if (!st) st = st2;
        if (!st) {
            free(c->last);
            c->last = path;
            path = NULL;
        }
    }
    free(path);
    return st;
}

/* A fit from epoch 0 with one overwritten file: the file becomes this run's at once (its
 * starting state), so a stale checkpoint of another run never stands for this one. */
static kiln_status ckpt_begin_fit(kiln_learner *l, void *user)
{
    ckpt_cb *c = user;
    if (c->pattern || l->st.epoch != 0) return KILN_STATUS_OK;
    return write_ckpt(l, c, strdup(c->pre));
}

static kiln_status ckpt_end_epoch(kiln_learner *l, void *user)
{
    ckpt_cb *c = user;
    int64_t done = l->st.epoch + 1;
    if (done % c->every != 0 && done != l->st.n_epochs) return KILN_STATUS_OK;
    size_t n = strlen(c->pre) + (c->post ? strlen(c->post) : 0) + 160;
    char *path = malloc(n);
    if (path && !c->pattern) snprintf(path, n, "%s", c->pre);
    else if (path && c->zero) snprintf(path, n, "%s%0*lld%s", c->pre, c->width, (long long)done, c->post);
    else if (path) snprintf(path, n, "%s%*lld%s", c->pre, c->width, (long long)done, c->post);
    return write_ckpt(l, c, path);
}

kiln_status kiln_learner_add_checkpointing(kiln_learner *l, const char *path, int every_n)
{
    if (!l || !path || !*path) return kiln__err(KILN_STATUS_INVALID, "add_checkpointing: needs a learner and a path");
    if (every_n < 1) return kiln__err(KILN_STATUS_INVALID, "add_checkpointing: every_n %d must be >= 1", every_n);
    if (kiln_learner_callback_user(l, "checkpointing"))
        return kiln__err(KILN_STATUS_STATE, "add_checkpointing: the learner already has a 'checkpointing' callback");
    ckpt_cb *c = calloc(1, sizeof *c);
    if (c) c->pre = malloc(strlen(path) + 32);
    if (!c || !c->pre) {
        ckpt_free(c);
        return kiln__err(KILN_STATUS_NOMEM, "add_checkpointing: out of memory");
    }
    c->every = every_n;
    kiln_status st = parse_pattern(c, path);
    struct stat sb;
    size_t m = st ? 0 : strlen(c->pre);
    bool slash = m && c->pre[m - 1] == '/';
    if (!st && !c->pattern && (slash || (stat(c->pre, &sb) == 0 && S_ISDIR(sb.st_mode))))
        strcat(c->pre, slash ? "checkpoint.safetensors" : "/checkpoint.safetensors");
    kiln_callback cb = {.name = "checkpointing", .begin_fit = ckpt_begin_fit, .end_epoch = ckpt_end_epoch, .user = c,
                        .free_user = ckpt_free};
    if (!st) st = kiln_learner_add_callback(l, &cb);
    if (st) ckpt_free(c);
    return st;
}

const char *kiln_checkpointing_last_path(kiln_learner *l)
{
    ckpt_cb *c = l ? kiln_learner_callback_user(l, "checkpointing") : NULL;
    return c ? c->last : NULL;
}
