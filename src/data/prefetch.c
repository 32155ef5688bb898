/* The prefetch ring (include/kiln/data.h): batch slots filled by background threads
 * (pthreads) with the source's make callback while the model trains, like darknet's load
 * thread. A slot goes FREE -> PENDING (scheduled: split, batch) -> BUSY (a worker runs make)
 * -> DONE -> HELD (the consumer reads it) -> FREE. The cursor (cur_split, cur_batch) is where
 * scheduling goes on; a request the ring did not foresee bumps the generation, which frees
 * the scheduled slots and marks the ones being made as stale (freed when their make returns).
 * Workers take the oldest pending slot first, so batches are made in the order asked for. */
#include "core/internal.h"
#include "kiln/data.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

typedef enum slot_state { SLOT_FREE = 0, SLOT_PENDING, SLOT_BUSY, SLOT_DONE, SLOT_HELD } slot_state;

typedef struct pslot {
    slot_state state;
    uint64_t gen;          /* ring generation when scheduled; stale when it differs */
    uint64_t seq;          /* schedule order */
    kiln_data_split split;
    int64_t batch;
    void *x, *y;           /* (x_bytes), (y_bytes) */
    kiln_status st;        /* make's result and message */
    char err[1024];
} pslot;

struct kiln_prefetch {
    kiln_prefetch_params p;
    kiln_prefetch_make_fn make;
    void *user;
    pthread_mutex_t mu;
    pthread_cond_t work;   /* to workers: a slot is pending, or stop */
    pthread_cond_t done;   /* to the consumer: a slot is done, free again or no longer busy */
    pthread_t *threads;
    int n_threads;
    bool stop, sync_ok;    /* sync_ok: mu and the conds exist */
    pslot *slots;
    int n_slots;
    uint64_t gen, seq;
    bool cursor_on;
    kiln_data_split cur_split;
    int64_t cur_batch;
    pslot *held;
};

/* ---- scheduling (all under mu) ------------------------------------------------------------- */

static pslot *find(kiln_prefetch *r, kiln_data_split split, int64_t b)
{
    for (int k = 0; k < r->n_slots; k++) {
        pslot *s = &r->slots[k];
        if ((s->state == SLOT_PENDING || s->state == SLOT_BUSY || s->state == SLOT_DONE) && s->gen == r->gen &&
            s->split == split && s->batch == b)
            return s;
    }
    return NULL;
}

/* Drops every scheduled batch; slots being made finish and are then freed as stale. */
static void invalidate(kiln_prefetch *r)
{
    r->gen++;
    for (int k = 0; k < r->n_slots; k++)
        if (r->slots[k].state == SLOT_PENDING || r->slots[k].state == SLOT_DONE) r->slots[k].state = SLOT_FREE;
}

static void fill(kiln_prefetch *r)
{
    bool any = false;
    while (r->cursor_on) {
        if (r->cur_batch >= r->p.n_batches[r->cur_split]) {
            if (r->cur_split == KILN_DATA_SPLIT_TRAIN) {
                r->cur_split = KILN_DATA_SPLIT_VALID;
                r->cur_batch = 0;
                continue;
            }
            r->cursor_on = false;
            break;
        }
        pslot *s = NULL;
        for (int k = 0; k < r->n_slots && !s; k++)
            if (r->slots[k].state == SLOT_FREE) s = &r->slots[k];
        if (!s) break;
        s->split = r->cur_split;
        s->batch = r->cur_batch++;
        s->gen = r->gen;
        s->seq = r->seq++;
        s->state = SLOT_PENDING;
        any = true;
    }
    if (any) pthread_cond_broadcast(&r->work);
}

static void restart_at(kiln_prefetch *r, kiln_data_split split, int64_t b)
{
    invalidate(r);
    r->cursor_on = true;
    r->cur_split = split;
    r->cur_batch = b;
    fill(r);
}

/* Runs make for slot s (without the lock: the slot's job does not change while it is busy). */
static void run(kiln_prefetch *r, pslot *s)
{
    kiln_clear_error();
    s->st = r->make(r->user, s->split, s->batch, s->x, s->y);
    if (s->st) snprintf(s->err, sizeof s->err, "%s", *kiln_last_error() ? kiln_last_error() : "make gave no message");
}

static void *worker(void *arg)
{
    kiln_prefetch *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        pslot *s = NULL;
        while (!r->stop) {
            for (int k = 0; k < r->n_slots; k++)
                if (r->slots[k].state == SLOT_PENDING && (!s || r->slots[k].seq < s->seq)) s = &r->slots[k];
            if (s) break;
            pthread_cond_wait(&r->work, &r->mu);
        }
        if (r->stop) break;
        s->state = SLOT_BUSY;
        pthread_mutex_unlock(&r->mu);
        run(r, s);
        pthread_mutex_lock(&r->mu);
        if (s->gen != r->gen) {
            s->state = SLOT_FREE;
            fill(r);
        } else {
            s->state = SLOT_DONE;
        }
        pthread_cond_broadcast(&r->done);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---- the consumer -------------------------------------------------------------------------- */

void kiln_prefetch_release(kiln_prefetch *r)
{
    if (!r || !r->held) return;
    if (r->n_threads) pthread_mutex_lock(&r->mu);
    r->held->state = SLOT_FREE;
    r->held = NULL;
    if (r->n_threads) {
        fill(r);
        pthread_mutex_unlock(&r->mu);
    }
}

kiln_status kiln_prefetch_get(kiln_prefetch *r, kiln_data_split split, int64_t batch, const void **x, const void **y)
{
    if (!r || !x || !y) return kiln_error(KILN_STATUS_INVALID, "prefetch_get: NULL argument");
    kiln_prefetch_release(r);
    if ((split != KILN_DATA_SPLIT_TRAIN && split != KILN_DATA_SPLIT_VALID) || batch < 0 ||
        batch >= r->p.n_batches[split])
        return kiln_error(KILN_STATUS_INVALID, "prefetch: %s batch %lld out of range", kiln_data_split_name(split),
                          (long long)batch);
    pslot *s;
    if (!r->n_threads) { /* synchronous: the caller's thread makes the batch */
        s = &r->slots[0];
        s->split = split;
        s->batch = batch;
        run(r, s);
        s->state = SLOT_HELD;
    } else {
        pthread_mutex_lock(&r->mu);
        if (!(s = find(r, split, batch))) {
            restart_at(r, split, batch);
            while (!(s = find(r, split, batch))) { /* every slot busy with stale work: wait for one */
                pthread_cond_wait(&r->done, &r->mu);
                fill(r);
            }
        }
        while (s->state != SLOT_DONE) pthread_cond_wait(&r->done, &r->mu);
        s->state = SLOT_HELD;
        pthread_mutex_unlock(&r->mu);
    }
    r->held = s;
    if (s->st) {
        kiln_status st = kiln_error(s->st, "prefetch: %s batch %lld: %s", kiln_data_split_name(split), (long long)batch,
                                    s->err);
        kiln_prefetch_release(r);
        return st;
    }
    *x = s->x;
    *y = s->y;
    return KILN_STATUS_OK;
}

void kiln_prefetch_pause(kiln_prefetch *r)
{
    if (!r || !r->n_threads) return;
    pthread_mutex_lock(&r->mu);
    invalidate(r);
    r->cursor_on = false;
    for (;;) {
        bool busy = false;
        for (int k = 0; k < r->n_slots; k++) busy |= r->slots[k].state == SLOT_BUSY;
        if (!busy) break;
        pthread_cond_wait(&r->done, &r->mu);
    }
    pthread_mutex_unlock(&r->mu);
}

void kiln_prefetch_seek(kiln_prefetch *r, kiln_data_split split, int64_t batch)
{
    if (!r || !r->n_threads || (split != KILN_DATA_SPLIT_TRAIN && split != KILN_DATA_SPLIT_VALID) || batch < 0)
        return;
    pthread_mutex_lock(&r->mu);
    restart_at(r, split, batch);
    pthread_mutex_unlock(&r->mu);
}

/* ---- lifetime ------------------------------------------------------------------------------ */

kiln_prefetch *kiln_prefetch_new(const kiln_prefetch_params *p, kiln_prefetch_make_fn make, void *user)
{
    if (!p || !make) return kiln__errp(KILN_STATUS_INVALID, "prefetch_new: NULL params or make");
    if (p->n_workers < 0 || p->n_workers > 64 || p->n_slots < 0 || p->n_slots > 64 || p->n_batches[0] < 0 ||
        p->n_batches[1] < 0)
        return kiln__errp(KILN_STATUS_INVALID,
                          "prefetch_new: n_workers %d, n_slots %d must be in [0, 64], batch counts >= 0", p->n_workers,
                          p->n_slots);
    kiln_prefetch *r = calloc(1, sizeof *r);
    if (!r) return kiln__errp(KILN_STATUS_NOMEM, "prefetch: out of memory");
    r->p = *p;
    r->make = make;
    r->user = user;
    r->n_slots = p->n_workers == 0 ? 1 : p->n_slots > 2 ? p->n_slots : 2;
    bool ok = (r->slots = calloc((size_t)r->n_slots, sizeof *r->slots)) != NULL;
    for (int k = 0; ok && k < r->n_slots; k++)
        ok = (r->slots[k].x = malloc(p->x_bytes ? p->x_bytes : 1)) && (r->slots[k].y = malloc(p->y_bytes ? p->y_bytes : 1));
    if (ok && p->n_workers > 0) ok = (r->threads = calloc((size_t)p->n_workers, sizeof *r->threads)) != NULL;
    if (!ok) {
        kiln_prefetch_free(r);
        return kiln__errp(KILN_STATUS_NOMEM, "prefetch: out of memory for %d batches of %zu + %zu bytes", p->n_slots,
                          p->x_bytes, p->y_bytes);
    }
    if (p->n_workers > 0) {
        pthread_mutex_init(&r->mu, NULL);
        pthread_cond_init(&r->work, NULL);
        pthread_cond_init(&r->done, NULL);
        r->sync_ok = true;
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        for (int t = 0; ok && t < p->n_workers; t++)
            if ((ok = !pthread_create(&r->threads[t], NULL, worker, r))) r->n_threads++;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (!ok) {
            kiln_prefetch_free(r);
            return kiln__errp(KILN_STATUS_NOMEM, "prefetch: cannot start %d threads", p->n_workers);
        }
    }
    return r;
}

void kiln_prefetch_free(kiln_prefetch *r)
{
    if (!r) return;
    if (r->sync_ok) {
        pthread_mutex_lock(&r->mu);
        r->stop = true;
        pthread_cond_broadcast(&r->work);
        pthread_mutex_unlock(&r->mu);
        for (int t = 0; t < r->n_threads; t++) pthread_join(r->threads[t], NULL);
        pthread_cond_destroy(&r->work);
        pthread_cond_destroy(&r->done);
        pthread_mutex_destroy(&r->mu);
    }
    free(r->threads);
    for (int k = 0; r->slots && k < r->n_slots; k++) free(r->slots[k].x), free(r->slots[k].y);
    free(r->slots);
    free(r);
}
