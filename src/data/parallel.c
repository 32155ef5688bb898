/* The data loaders' parallel for (data_internal.h): POSIX threads taking item indices from a
 * shared atomic counter, for per-item work that is long and uneven, like checking or decoding
 * every image file of a source at construction. */
#include "data/data_internal.h"

#include <pthread.h>
#include <stdatomic.h>

#define MAX_THREADS 16

typedef struct pfor {
    void (*fn)(void *, int64_t);
    void *user;
    int64_t n;
    atomic_llong next;
} pfor;

static void *pfor_run(void *arg)
{
    pfor *p = arg;
    for (int64_t i; (i = atomic_fetch_add(&p->next, 1)) < p->n;) p->fn(p->user, i);
    return NULL;
}

void kiln__data_pthread_for(int n_threads, int64_t n, void (*fn)(void *user, int64_t i), void *user)
{
    pfor p = {.fn = fn, .user = user, .n = n};
    atomic_init(&p.next, 0);
    int nt = n_threads > MAX_THREADS ? MAX_THREADS : n_threads, started = 0;
    pthread_t th[MAX_THREADS];
    for (int t = 1; t < nt && t < n; t++, started++)
        if (pthread_create(&th[started], NULL, pfor_run, &p)) break;
    pfor_run(&p);
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
}
