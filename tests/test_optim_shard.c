/* Tests of the sharded optimizer (ZeRO-1, kiln_optim_set_shard, include/kiln/optim.h):
 *   - shards whose ranges cover the store (cut inside tensors, an empty one, one of a single
 *     element), each over its own copy of the store like a rank, stepped from the same
 *     gradients and then given the others' ranges (an all-gather by hand), give the params of
 *     the unsharded optimizer bit for bit after every step, and their states laid end to end
 *     are its state: SGD with momentum (L2, nesterov) and AdamW, two groups with their own
 *     lr / wd, a no-wd mark, a frozen parameter and a frozen group, a parameter big enough for
 *     the threaded loop;
 *   - sharding after some unsharded steps keeps the state of the range; (0, P) is plain again;
 *     a move to an overlapping range keeps the overlap;
 *   - state access: state_at gives the part, state_load takes the part or the whole buffer,
 *     save_st refuses, load_st of a plain checkpoint keeps the range and goes on bit for bit;
 *   - bad calls (a range outside the params, the sparse step either way) by message. */
#include "util/ku.h"
#include "kiln/optim.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum { STEPS = 5, MAX_SHARDS = 5 };

typedef struct net {
    kiln_store *s;
    kiln_optim *opt;
    float *p, *g;
    size_t n;
} net;

/* Parameters of awkward sizes; "frozen.weight" has requires_grad off, "head.*" is group 1
 * (frozen when freeze_head). */
static void net_make(net *n, bool adam, bool freeze_head)
{
    n->s = kiln_store_new();
    kiln_tensor *t[6] = {
        kiln_store_param(n->s, "a.weight", 2, (int64_t[]){7, 13}),
        kiln_store_param(n->s, "a.bias", 1, (int64_t[]){13}),
        kiln_store_param(n->s, "big.weight", 2, (int64_t[]){200, 211}), /* over the threads' grain */
        kiln_store_param(n->s, "frozen.weight", 1, (int64_t[]){29}),
        kiln_store_param(n->s, "head.weight", 2, (int64_t[]){5, 37}),
        kiln_store_param(n->s, "head.bias", 1, (int64_t[]){5}),
    };
    for (int i = 0; i < 6; i++) cr_assert(t[i]);
    cr_assert(kiln_store_alloc(n->s) == KILN_STATUS_OK, "%s", kiln_last_error());
    n->p = kiln_store_flat(n->s, KILN_STORE_PARAMS, &n->n);
    n->g = kiln_store_flat(n->s, KILN_STORE_GRADS, NULL);
    for (size_t i = 0; i < n->n; i++) n->p[i] = kiln_philox_uniform(5, i) - 0.5f;
    t[3]->requires_grad = false;
    if (adam) {
        kiln_adam_params p = kiln_adam_default_params();
        p.lr = 3e-2, p.weight_decay = 0.05;
        n->opt = kiln_optim_new_adam(n->s, &p);
    } else {
        kiln_sgd_params p = kiln_sgd_default_params();
        p.lr = 0.1, p.momentum = 0.9, p.weight_decay = 1e-3, p.nesterov = true;
        n->opt = kiln_optim_new_sgd(n->s, &p);
    }
    cr_assert(n->opt, "%s", kiln_last_error());
    kiln_optim_set_threads(n->opt, 2);
    cr_assert(kiln_optim_add_group(n->opt, &(kiln_optim_group){.lr = adam ? 1e-2 : 0.05, .mom = 0.8, .wd = 0.2}) == 1);
    cr_assert(kiln_optim_set_group_by_prefix(n->opt, "head.", 1) == KILN_STATUS_OK);
    cr_assert(kiln_optim_mark_no_wd_by_name(n->opt, false) == 2); /* the biases */
    if (freeze_head) kiln_optim_set_frozen(n->opt, 1, true);
}

static void net_free(net *n)
{
    kiln_optim_free(n->opt);
    kiln_store_free(n->s);
}

/* Step k's gradients, the same in every copy. */
static void grads(net *n, int k)
{
    for (size_t i = 0; i < n->n; i++) n->g[i] = 0.3f * (kiln_philox_uniform(100 + (uint64_t)k, i) - 0.5f);
}

/* The f32 state entry k of opt (data and numel). */
static float *state(kiln_optim *opt, size_t k, size_t *numel)
{
    kiln_optim_state e;
    cr_assert(kiln_optim_state_at(opt, k, &e) == KILN_STATUS_OK);
    *numel = e.numel;
    return e.data;
}

/* Shards over cuts[0] = 0 < ... cuts[n_shards] = P against one plain optimizer, STEPS steps;
 * shard_after: plain steps before the shards are set (their state is kept). */
static void sharded_vs_plain(bool adam, bool freeze_head, const size_t *cuts, int n_shards, int shard_after)
{
    net ref, sh[MAX_SHARDS];
    net_make(&ref, adam, freeze_head);
    const size_t P = ref.n;
    for (int r = 0; r < n_shards; r++) net_make(&sh[r], adam, freeze_head);
    const char *who = adam ? "adamw" : "sgd";
    for (int k = 0; k < STEPS; k++) {
        if (k == shard_after)
            for (int r = 0; r < n_shards; r++) {
                size_t hi = r + 1 == n_shards ? P : cuts[r + 1];
                cr_assert(kiln_optim_set_shard(sh[r].opt, cuts[r], hi) == KILN_STATUS_OK, "%s", kiln_last_error());
                size_t lo2, hi2;
                cr_assert(kiln_optim_shard(sh[r].opt, &lo2, &hi2) == (hi - cuts[r] != P) && lo2 == cuts[r] && hi2 == hi);
            }
        grads(&ref, k);
        cr_assert(kiln_optim_step(ref.opt) == KILN_STATUS_OK);
        for (int r = 0; r < n_shards; r++) {
            grads(&sh[r], k);
            cr_assert(kiln_optim_step(sh[r].opt) == KILN_STATUS_OK);
        }
        /* the all-gather: each shard's range (every element before the shards exist) to every copy */
        for (int r = 0; r < n_shards; r++) {
            size_t lo = 0, hi = P;
            kiln_optim_shard(sh[r].opt, &lo, &hi);
            if (k < shard_after) continue;
            for (int q = 0; q < n_shards; q++)
                if (q != r) memcpy(sh[q].p + lo, sh[r].p + lo, (hi - lo) * sizeof(float));
        }
        for (int r = 0; r < n_shards; r++)
            cr_assert(!memcmp(sh[r].p, ref.p, P * sizeof(float)), "%s, %d shards: step %d: copy %d's params differ",
                      who, n_shards, k, r);
    }
    /* the parts of the state laid end to end are the plain state; the step counts are alike */
    for (size_t e = 0; e + 1 < kiln_optim_state_count(ref.opt); e++) {
        size_t np, nr;
        float *whole = state(ref.opt, e, &np);
        cr_assert(np == P);
        for (int r = 0; r < n_shards; r++) {
            size_t lo, hi;
            kiln_optim_shard(sh[r].opt, &lo, &hi);
            float *part = state(sh[r].opt, e, &nr);
            cr_assert(nr == hi - lo, "%s: shard %d holds %zu floats, its range %zu", who, r, nr, hi - lo);
            cr_assert(!memcmp(part, whole + lo, nr * sizeof(float)), "%s: shard %d's state %zu differs", who, r, e);
        }
    }
    kiln_optim_state sr, ss;
    kiln_optim_state_at(ref.opt, kiln_optim_state_count(ref.opt) - 1, &sr);
    for (int r = 0; r < n_shards; r++) {
        kiln_optim_state_at(sh[r].opt, kiln_optim_state_count(sh[r].opt) - 1, &ss);
        cr_assert(!strcmp(ss.name, "step") && ss.numel == sr.numel && !memcmp(ss.data, sr.data, sr.numel * 8),
                  "%s: shard %d's step counts differ", who, r);
    }
    /* (0, P): plain again; the state of its old range kept */
    size_t lo1, hi1, n0;
    kiln_optim_shard(sh[1].opt, &lo1, &hi1);
    cr_assert(kiln_optim_set_shard(sh[1].opt, 0, P) == KILN_STATUS_OK && !kiln_optim_shard(sh[1].opt, NULL, NULL));
    float *full = state(sh[1].opt, 0, &n0), *whole = state(ref.opt, 0, &n0);
    cr_assert(n0 == P && !memcmp(full + lo1, whole + lo1, (hi1 - lo1) * sizeof(float)));
    for (size_t i = 0; i < P; i++) cr_assert(full[i] == (i >= lo1 && i < hi1 ? whole[i] : 0.0f));
    for (int r = 0; r < n_shards; r++) net_free(&sh[r]);
    net_free(&ref);
}

/* P = 91 + 13 + 42200 + 29 + 185 + 5 = 42523 */
Test(optim_shard, sgd_two_shards_cut_in_a_tensor)
{
    sharded_vs_plain(false, false, (size_t[]){0, 20000}, 2, 0);
}

Test(optim_shard, sgd_five_shards_with_empty_and_single)
{
    /* cuts inside a.weight, at a.bias's end, an empty shard, a 1-element shard inside
     * frozen.weight's neighbourhood and one inside head.weight */
    sharded_vs_plain(false, true, (size_t[]){0, 50, 104, 104, 42305}, 5, 0);
    sharded_vs_plain(false, false, (size_t[]){0, 3, 42306, 42307, 42400}, 5, 2);
}

Test(optim_shard, adamw_shards)
{
    sharded_vs_plain(true, false, (size_t[]){0, 20000}, 2, 0);
    sharded_vs_plain(true, false, (size_t[]){0, 50, 104, 104, 42305}, 5, 0);
    sharded_vs_plain(true, true, (size_t[]){0, 7, 21264, 42400}, 4, 3); /* sharded after 3 plain steps */
}

Test(optim_shard, state_access_and_checkpoints)
{
    net a, b;
    net_make(&a, true, false);
    net_make(&b, true, false);
    const size_t P = a.n, lo = 1000, hi = 30000;
    for (int k = 0; k < 2; k++) {
        grads(&a, k);
        kiln_optim_step(a.opt);
    }
    char path[] = "/tmp/kiln_optim_shard_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    kiln_st_writer *w = kiln_st_writer_new();
    cr_assert(kiln_optim_save_st(a.opt, w, "optim") == KILN_STATUS_OK && kiln_st_writer_save(w, path) == KILN_STATUS_OK);
    kiln_st_writer_free(w);
    /* a sharded b reads its range of a's plain checkpoint (and a's params), then both go on */
    cr_assert(kiln_optim_set_shard(b.opt, lo, hi) == KILN_STATUS_OK);
    kiln_st_file *f = NULL;
    cr_assert(kiln_st_open(path, &f) == KILN_STATUS_OK);
    cr_assert(kiln_optim_check_st(b.opt, f, "optim") == KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert(kiln_optim_load_st(b.opt, f, "optim") == KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_st_close(f);
    unlink(path);
    memcpy(b.p, a.p, P * sizeof(float));
    for (int k = 2; k < 4; k++) {
        grads(&a, k), grads(&b, k);
        kiln_optim_step(a.opt), kiln_optim_step(b.opt);
        cr_assert(!memcmp(a.p + lo, b.p + lo, (hi - lo) * sizeof(float)), "step %d: the range differs", k);
    }
    size_t n;
    float *sa = state(a.opt, 1, &n), *sb = state(b.opt, 1, &n);
    cr_assert(n == hi - lo && !memcmp(sa + lo, sb, n * sizeof(float)));
    /* save_st refuses a part; state_load takes the part or the whole buffer */
    w = kiln_st_writer_new();
    cr_assert(kiln_optim_save_st(b.opt, w, "optim") == KILN_STATUS_STATE);
    ku_expect_error("gather the whole state first", "save_st of a shard");
    kiln_st_writer_free(w);
    cr_assert(kiln_optim_state_load(b.opt, "exp_avg", KILN_DTYPE_F32, state(a.opt, 0, &n), P) == KILN_STATUS_OK);
    cr_assert(!memcmp(state(b.opt, 0, &n), state(a.opt, 0, &n) + lo, (hi - lo) * sizeof(float)));
    cr_assert(kiln_optim_state_load(b.opt, "exp_avg", KILN_DTYPE_F32, sb, hi - lo) == KILN_STATUS_OK);
    cr_assert(kiln_optim_state_load(b.opt, "exp_avg", KILN_DTYPE_F32, sb, hi - lo + 1) == KILN_STATUS_INVALID);
    ku_expect_error("has 29000 elements, got 29001", "state_load of a wrong size");
    /* to an overlapping range that neither holds: [20000, 30000) kept, the rest zero */
    float keep[2] = {state(b.opt, 0, &n)[25000 - lo], state(b.opt, 1, &n)[29999 - lo]};
    cr_assert(keep[0] != 0.0f && keep[1] != 0.0f);
    cr_assert(kiln_optim_set_shard(b.opt, 20000, 40000) == KILN_STATUS_OK);
    cr_assert(state(b.opt, 0, &n)[5000] == keep[0] && state(b.opt, 1, &n)[9999] == keep[1] && n == 20000);
    cr_assert(state(b.opt, 0, &n)[10000] == 0.0f && state(b.opt, 1, &n)[19999] == 0.0f);
    kiln_optim_clear_state(b.opt);
    cr_assert(state(b.opt, 0, &n)[0] == 0.0f && n == 20000);
    net_free(&a);
    net_free(&b);
}

Test(optim_shard, bad_calls)
{
    net a;
    net_make(&a, true, false);
    cr_assert(kiln_optim_set_shard(NULL, 0, 1) == KILN_STATUS_INVALID);
    cr_assert(kiln_optim_set_shard(a.opt, 5, 4) == KILN_STATUS_INVALID);
    ku_expect_error("range [5, 4) not within the 42523 parameter elements", "lo > hi");
    cr_assert(kiln_optim_set_shard(a.opt, 0, a.n + 1) == KILN_STATUS_INVALID);
    cr_assert(kiln_optim_set_sparse(a.opt, 0, true) == KILN_STATUS_OK);
    cr_assert(kiln_optim_set_shard(a.opt, 0, 100) == KILN_STATUS_INVALID);
    ku_expect_error("'a.weight' has the sparse (lazy) step", "shard with a sparse parameter");
    cr_assert(kiln_optim_set_shard(a.opt, 0, a.n) == KILN_STATUS_OK); /* the whole range: plain */
    cr_assert(kiln_optim_set_sparse(a.opt, 0, false) == KILN_STATUS_OK);
    cr_assert(kiln_optim_set_shard(a.opt, 0, 100) == KILN_STATUS_OK);
    cr_assert(kiln_optim_set_sparse(a.opt, 1, true) == KILN_STATUS_INVALID);
    ku_expect_error("no sparse step on a sharded optimizer", "sparse on a shard");
    cr_assert(kiln_optim_numel(a.opt) == a.n);
    net_free(&a);
}
