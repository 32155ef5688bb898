/* The vision loader: a ring of batch slots filled by background threads (pthreads) while the
 * model trains, like darknet's load thread. The consumer (kiln_data_get_batch) asks for batch i
 * of a split; the loader keeps the next `prefetch` batches of that split (then of valid, after
 * the last train batch: the Learner validates next) scheduled, and a ready batch is copied into
 * the step arena. A request the ring did not foresee (another split, a jump, a new epoch)
 * drops the scheduled batches (a generation counter marks the ones being worked on as stale)
 * and starts again from the request.
 *
 * Determinism: a slot records its job (split, item indices, seed, epoch) when it is scheduled,
 * and a batch's content depends only on that job, never on which thread ran it or when. The
 * train order is kiln_data_permutation(seed, epoch), written by set_epoch on the consumer
 * thread; workers never read it. One consumer thread is assumed.
 *
 * TTA (kiln_vision_data_set_tta): while a pass is set, jobs scheduled from then on run the
 * transform's training branch on either split, with the pass's own seed and epoch-0 counters;
 * switching drops the scheduled batches as a jump does. */
#include "data/vision/vision_internal.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>

typedef enum slot_state { SLOT_FREE = 0, SLOT_PENDING, SLOT_BUSY, SLOT_DONE } slot_state;

typedef struct vslot {
    slot_state state;
    uint64_t gen;          /* loader generation when scheduled; stale when it differs */
    uint64_t seq;          /* schedule order: workers take the oldest pending slot first */
    kiln_data_split split;
    int64_t batch, n;      /* batch index and its item count */
    int64_t *items;        /* (bs_max) data set indices of the batch's items */
    uint64_t seed;
    int64_t epoch;
    int tfm;               /* KILN__TFM_SPLIT, or KILN__TFM_TRAIN during a TTA pass */
    float *x;              /* (bs_max, C, S, S) */
    int64_t *y;            /* (bs_max) */
    kiln_status st;
    char err[1024];
} vslot;

struct kiln__vloader {
    kiln_vision_data *v;
    pthread_mutex_t mu;
    pthread_cond_t work;   /* to workers: a slot is pending, or stop */
    pthread_cond_t done;   /* to the consumer: a slot is done or free again */
    pthread_t *threads;
    int n_threads;
    bool stop;
    vslot *slots;
    int n_slots;
    int64_t bs_max;
    uint64_t gen, seq;
    bool cursor_on;        /* scheduling continues at (cur_split, cur_batch) */
    kiln_data_split cur_split;
    int64_t cur_batch;
    bool epoch_set;
};

static int64_t bs_of(const kiln_vision_data *v, kiln_data_split split)
{
    return split == KILN_DATA_SPLIT_VALID && v->p.valid_batch_size > 0 ? v->p.valid_batch_size : v->p.batch_size;
}

static int64_t nb_of(const kiln_vision_data *v, kiln_data_split split)
{
    int64_t n = v->s[split].n, bs = bs_of(v, split);
    if (split == KILN_DATA_SPLIT_TRAIN && v->p.drop_last) return n / bs;
    return (n + bs - 1) / bs;
}

/* ---- the job ------------------------------------------------------------------------------ */

static void set_job(const kiln_vision_data *v, vslot *s, kiln_data_split split, int64_t b)
{
    int64_t bs = bs_of(v, split), start = b * bs, n = v->s[split].n - start;
    s->split = split;
    s->batch = b;
    s->n = n < bs ? n : bs;
    for (int64_t r = 0; r < s->n; r++)
        s->items[r] = split == KILN_DATA_SPLIT_TRAIN ? v->order[start + r] : start + r;
    s->seed = v->seed;
    s->epoch = v->epoch;
    s->tfm = KILN__TFM_SPLIT;
    if (v->tta_pass >= 0) {
        s->seed = kiln_vision_tta_seed(v->seed, v->tta_pass);
        s->epoch = 0;
        s->tfm = KILN__TFM_TRAIN;
    }
}

static void run_job(const kiln_vision_data *v, vslot *s)
{
    size_t item = (size_t)v->c * v->size * v->size;
    s->st = KILN_STATUS_OK;
    s->err[0] = '\0';
    for (int64_t r = 0; r < s->n; r++) {
        kiln_status st = kiln__vision_make_item(v, s->split, s->items[r], s->tfm, s->seed, s->epoch, true,
                                                s->x + (size_t)r * item);
        if (st) {
            s->st = st;
            snprintf(s->err, sizeof s->err, "%s", kiln_last_error());
            return;
        }
        s->y[r] = v->s[s->split].labels[s->items[r]];
    }
}

/* ---- scheduling (all under mu) ------------------------------------------------------------ */

static vslot *find(kiln__vloader *L, kiln_data_split split, int64_t b)
{
    for (int k = 0; k < L->n_slots; k++) {
        vslot *s = &L->slots[k];
        if (s->state != SLOT_FREE && s->gen == L->gen && s->split == split && s->batch == b) return s;
    }
    return NULL;
}

/* Drops every scheduled batch; slots being worked on finish and are then freed as stale. */
static void invalidate(kiln__vloader *L)
{
    L->gen++;
    for (int k = 0; k < L->n_slots; k++)
        if (L->slots[k].state == SLOT_PENDING || L->slots[k].state == SLOT_DONE) L->slots[k].state = SLOT_FREE;
}

static void fill(kiln__vloader *L)
{
    bool any = false;
    while (L->cursor_on) {
        if (L->cur_batch >= nb_of(L->v, L->cur_split)) {
            if (L->cur_split == KILN_DATA_SPLIT_TRAIN) {
                L->cur_split = KILN_DATA_SPLIT_VALID;
                L->cur_batch = 0;
                continue;
            }
            L->cursor_on = false;
            break;
        }
        vslot *s = NULL;
        for (int k = 0; k < L->n_slots && !s; k++)
            if (L->slots[k].state == SLOT_FREE) s = &L->slots[k];
        if (!s) break;
        set_job(L->v, s, L->cur_split, L->cur_batch++);
        s->gen = L->gen;
        s->seq = L->seq++;
        s->state = SLOT_PENDING;
        any = true;
    }
    if (any) pthread_cond_broadcast(&L->work);
}

static void restart_at(kiln__vloader *L, kiln_data_split split, int64_t b)
{
    invalidate(L);
    L->cursor_on = true;
    L->cur_split = split;
    L->cur_batch = b;
    fill(L);
}

static void *worker(void *arg)
{
    kiln__vloader *L = arg;
    pthread_mutex_lock(&L->mu);
    for (;;) {
        vslot *s = NULL;
        while (!L->stop) {
            for (int k = 0; k < L->n_slots; k++)
                if (L->slots[k].state == SLOT_PENDING && (!s || L->slots[k].seq < s->seq)) s = &L->slots[k];
            if (s) break;
            pthread_cond_wait(&L->work, &L->mu);
        }
        if (L->stop) break;
        s->state = SLOT_BUSY;
        pthread_mutex_unlock(&L->mu);
        run_job(L->v, s); /* the job fields do not change while the slot is busy */
        pthread_mutex_lock(&L->mu);
        if (s->gen != L->gen) {
            s->state = SLOT_FREE;
            fill(L);
        } else {
            s->state = SLOT_DONE;
        }
        pthread_cond_broadcast(&L->done);
    }
    pthread_mutex_unlock(&L->mu);
    return NULL;
}

/* ---- kiln_data_ops --------------------------------------------------------------------------- */

static int64_t op_items(void *state, kiln_data_split split) { return ((kiln_vision_data *)state)->s[split].n; }
static int64_t op_batches(void *state, kiln_data_split split) { return nb_of(state, split); }

static kiln_status op_set_epoch(void *state, uint64_t seed, int64_t epoch)
{
    kiln_vision_data *v = state;
    kiln__vloader *L = v->loader;
    if (L->n_threads) pthread_mutex_lock(&L->mu);
    if (!L->epoch_set || seed != v->seed || epoch != v->epoch) {
        v->seed = seed;
        v->epoch = epoch;
        if (v->p.shuffle) kiln_data_permutation(seed, epoch, v->s[KILN_DATA_SPLIT_TRAIN].n, v->order);
        L->epoch_set = true;
        if (L->n_threads) restart_at(L, KILN_DATA_SPLIT_TRAIN, 0);
    }
    if (L->n_threads) pthread_mutex_unlock(&L->mu);
    return KILN_STATUS_OK;
}

/* Copies slot s into the arena (called without the lock: only the consumer touches DONE slots). */
static kiln_status copy_out(const kiln_vision_data *v, const vslot *s, kiln_ctx *ctx, kiln_tensor **x,
                            kiln_tensor **y)
{
    if (s->st) return kiln__err(s->st, "%s", s->err);
    kiln_tensor *bx = kiln_empty(ctx, KILN_DTYPE_F32, 4, (int64_t[]){s->n, v->c, v->size, v->size}); /* (B,C,S,S) */
    kiln_tensor *by = kiln_empty(ctx, KILN_DTYPE_I64, 1, (int64_t[]){s->n});                        /* (B) */
    if (!bx || !by) return KILN_STATUS_NOMEM;
    memcpy(bx->data, s->x, (size_t)s->n * v->c * v->size * v->size * sizeof(float));
    memcpy(by->data, s->y, (size_t)s->n * sizeof(int64_t));
    *x = bx;
    *y = by;
    return KILN_STATUS_OK;
}

static kiln_status op_get_batch(void *state, kiln_data_split split, int64_t i, kiln_ctx *ctx, kiln_tensor **x,
                                kiln_tensor **y)
{
    kiln_vision_data *v = state;
    kiln__vloader *L = v->loader;
    if (!L->n_threads) { /* synchronous: the caller's thread does the work */
        vslot *s = &L->slots[0];
        set_job(v, s, split, i);
        run_job(v, s);
        return copy_out(v, s, ctx, x, y);
    }
    pthread_mutex_lock(&L->mu);
    vslot *s = find(L, split, i);
    if (!s) {
        restart_at(L, split, i);
        while (!(s = find(L, split, i))) { /* every slot busy with stale work: wait for one */
            pthread_cond_wait(&L->done, &L->mu);
            fill(L);
        }
    }
    while (s->state != SLOT_DONE) pthread_cond_wait(&L->done, &L->mu);
    pthread_mutex_unlock(&L->mu);
    kiln_status st = copy_out(v, s, ctx, x, y);
    pthread_mutex_lock(&L->mu);
    s->state = SLOT_FREE;
    fill(L);
    pthread_mutex_unlock(&L->mu);
    return st;
}

static void op_free(void *state) { kiln__vision_destroy(state); }

/* ---- TTA switch ------------------------------------------------------------------------------ */

uint64_t kiln_vision_tta_seed(uint64_t seed, int pass)
{
    /* splitmix64 of the seed and the pass: passes get unrelated Philox keys */
    uint64_t z = seed + 0x9e3779b97f4a7c15ull * (uint64_t)(pass + 1) + 0x7474610000000000ull; /* "tta" */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

kiln_status kiln_vision_data_set_tta(kiln_vision_data *v, int pass)
{
    if (!v || v->magic != KILN__VISION_MAGIC || !v->loader)
        return kiln__err(KILN_STATUS_INVALID, "vision_data_set_tta: not a vision source");
    if (pass < -1) return kiln__err(KILN_STATUS_INVALID, "vision_data_set_tta: pass %d (use -1 for off)", pass);
    kiln__vloader *L = v->loader;
    if (L->n_threads) pthread_mutex_lock(&L->mu);
    if (v->tta_pass != pass) {
        v->tta_pass = pass;
        if (L->n_threads) {
            invalidate(L); /* the next get_batch restarts the ring with the new setting */
            L->cursor_on = false;
        }
    }
    if (L->n_threads) pthread_mutex_unlock(&L->mu);
    return KILN_STATUS_OK;
}

int kiln_vision_data_tta_pass(const kiln_vision_data *v) { return v ? v->tta_pass : -1; }

const kiln_data_ops kiln__vision_ops = {.n_items = op_items, .n_batches = op_batches, .set_epoch = op_set_epoch,
                                        .get_batch = op_get_batch, .free = op_free};

/* ---- lifetime ------------------------------------------------------------------------------- */

static void free_slots(kiln__vloader *L)
{
    for (int k = 0; k < L->n_slots && L->slots; k++) free(L->slots[k].items), free(L->slots[k].x), free(L->slots[k].y);
    free(L->slots);
}

kiln__vloader *kiln__vloader_new(kiln_vision_data *v)
{
    kiln__vloader *L = calloc(1, sizeof *L);
    if (!L) return kiln__errp(KILN_STATUS_NOMEM, "vision loader: out of memory");
    L->v = v;
    L->bs_max = v->p.batch_size > v->p.valid_batch_size ? v->p.batch_size : v->p.valid_batch_size;
    L->n_slots = v->p.n_workers == 0 ? 1 : v->p.prefetch > 1 ? v->p.prefetch : 2;
    L->slots = calloc((size_t)L->n_slots, sizeof *L->slots);
    size_t item = (size_t)v->c * v->size * v->size;
    for (int k = 0; L->slots && k < L->n_slots; k++) {
        vslot *s = &L->slots[k];
        s->items = malloc((size_t)L->bs_max * sizeof *s->items);
        s->x = malloc((size_t)L->bs_max * item * sizeof *s->x);
        s->y = malloc((size_t)L->bs_max * sizeof *s->y);
        if (!s->items || !s->x || !s->y) break;
    }
    if (!L->slots || !L->slots[L->n_slots - 1].y ||
        (v->p.n_workers > 0 && !(L->threads = calloc((size_t)v->p.n_workers, sizeof *L->threads)))) {
        long long bs = (long long)L->bs_max;
        int ns = L->n_slots;
        free_slots(L);
        free(L);
        return kiln__errp(KILN_STATUS_NOMEM, "vision loader: out of memory for %d batches of %lld images", ns, bs);
    }
    if (v->p.n_workers > 0) {
        pthread_mutex_init(&L->mu, NULL);
        pthread_cond_init(&L->work, NULL);
        pthread_cond_init(&L->done, NULL);
        /* workers take no signals: Ctrl-C handlers run on the main thread */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        bool ok = true;
        for (int t = 0; ok && t < v->p.n_workers; t++)
            if ((ok = !pthread_create(&L->threads[t], NULL, worker, L))) L->n_threads++;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (!ok) {
            kiln__vloader_free(L);
            return kiln__errp(KILN_STATUS_NOMEM, "vision loader: cannot start %d threads", v->p.n_workers);
        }
    }
    return L;
}

void kiln__vloader_free(kiln__vloader *l)
{
    if (!l) return;
    if (l->threads) {
        pthread_mutex_lock(&l->mu);
        l->stop = true;
        pthread_cond_broadcast(&l->work);
        pthread_mutex_unlock(&l->mu);
        for (int t = 0; t < l->n_threads; t++) pthread_join(l->threads[t], NULL);
        pthread_cond_destroy(&l->work);
        pthread_cond_destroy(&l->done);
        pthread_mutex_destroy(&l->mu);
        free(l->threads);
    }
    free_slots(l);
    free(l);
}
