/* kiln_backward's hooks (autograd.h kiln_backward_hooks), which the data-parallel learner starts
 * its bucket sums from: leaf_ready reports each leaf that requires grad once, only after the
 * last node reading it has run (its gradient then equals the final one bit for bit), in the
 * order leaves finish; tick runs after every node; an error from a hook ends the backward. */
#include "util/ku.h"

#include <string.h>

static kiln_ctx *ctx;
static void setup(void) { ctx = ku_ctx(); }
static void teardown(void) { ku_ctx_free(ctx); }
TestSuite(backward_hooks, .init = setup, .fini = teardown);

enum { N = 6, MAX_CALLS = 8 };

typedef struct seen {
    int n_ready, n_ticks, fail_at_tick;
    kiln_tensor *who[MAX_CALLS];
    float grad[MAX_CALLS][N]; /* each reported leaf's gradient when it was reported */
    bool had_grad[MAX_CALLS];
} seen;

static kiln_status on_ready(void *user, kiln_tensor *t)
{
    seen *s = user;
    cr_assert_lt(s->n_ready, MAX_CALLS, "too many leaf_ready calls");
    s->who[s->n_ready] = t;
    s->had_grad[s->n_ready] = t->grad != NULL;
    if (t->grad) memcpy(s->grad[s->n_ready], t->grad->data, N * sizeof(float));
    s->n_ready++;
    return KILN_STATUS_OK;
}

static kiln_status on_tick(void *user)
{
    seen *s = user;
    if (++s->n_ticks == s->fail_at_tick) return kiln_error(KILN_STATUS_IO, "tick %d: injected", s->n_ticks);
    return KILN_STATUS_OK;
}

static kiln_tensor *leaf(float base, bool grad)
{
    kiln_tensor *t = kiln_empty(ctx, KILN_DTYPE_F32, 1, (int64_t[]){N}); /* (N) */
    cr_assert_not_null(t);
    for (int i = 0; i < N; i++) ((float *)t->data)[i] = base + 0.25f * (float)i;
    kiln_set_requires_grad(t, grad);
    return t;
}

/* loss = sum((x * w1 + w2) * w1): w1 is read by the first and the third node, w2 by the
 * second, x needs no gradient and `unused` is read by none. 4 nodes. */
static kiln_tensor *graph(kiln_tensor *x, kiln_tensor *w1, kiln_tensor *w2)
{
    kiln_tensor *a = kiln_mul(ctx, x, w1), *c = kiln_add(ctx, a, w2), *d = kiln_mul(ctx, c, w1);
    return kiln_sum(ctx, d);
}

Test(backward_hooks, leaves_reported_once_when_final)
{
    kiln_tensor *x = leaf(0.5f, false), *w1 = leaf(-1.0f, true), *w2 = leaf(2.0f, true), *unused = leaf(3.0f, true);
    kiln_tensor *loss = graph(x, w1, w2);
    seen s = {0};
    kiln_set_backward_hooks(ctx, &(kiln_backward_hooks){.leaf_ready = on_ready, .tick = on_tick, .user = &s});
    cr_assert_eq(kiln_backward(ctx, loss), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_set_backward_hooks(ctx, NULL);
    cr_assert_eq(s.n_ticks, 4, "tick after each of the 4 nodes: %d", s.n_ticks);
    cr_assert_eq(s.n_ready, 2, "two leaves need a gradient and are read: %d reports", s.n_ready);
    /* w2's only reader (the add) runs before the first mul, w1's last reader */
    cr_assert(s.who[0] == w2 && s.who[1] == w1, "order: w2 then w1");
    for (int k = 0; k < 2; k++) {
        cr_assert(s.had_grad[k], "report %d: no gradient yet", k);
        cr_assert(!memcmp(s.grad[k], s.who[k]->grad->data, N * sizeof(float)),
                  "report %d: the gradient changed after it was reported final", k);
    }
    /* the values themselves: d loss / d w1 = 2 x w1 + w2, d loss / d w2 = w1 */
    for (int i = 0; i < N; i++) {
        float xv = ((float *)x->data)[i], a = ((float *)w1->data)[i], b = ((float *)w2->data)[i];
        cr_assert_float_eq(((float *)w1->grad->data)[i], 2 * xv * a + b, 1e-6f);
        cr_assert_float_eq(((float *)w2->grad->data)[i], a, 1e-6f);
    }
    cr_assert_null(unused->grad);
}

Test(backward_hooks, none_set_means_no_calls_and_same_gradients)
{
    kiln_tensor *x = leaf(0.5f, false), *w1 = leaf(-1.0f, true), *w2 = leaf(2.0f, true);
    seen s = {0};
    kiln_set_backward_hooks(ctx, &(kiln_backward_hooks){.leaf_ready = on_ready, .tick = on_tick, .user = &s});
    cr_assert_eq(kiln_backward(ctx, graph(x, w1, w2)), KILN_STATUS_OK, "%s", kiln_last_error());
    float g1[N], g2[N];
    memcpy(g1, w1->grad->data, sizeof g1), memcpy(g2, w2->grad->data, sizeof g2);
    kiln_set_backward_hooks(ctx, NULL);
    kiln_tensor *v1 = leaf(-1.0f, true), *v2 = leaf(2.0f, true);
    int before = s.n_ready + s.n_ticks;
    cr_assert_eq(kiln_backward(ctx, graph(x, v1, v2)), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(s.n_ready + s.n_ticks, before, "hooks called after they were cleared");
    cr_assert(!memcmp(g1, v1->grad->data, sizeof g1) && !memcmp(g2, v2->grad->data, sizeof g2),
              "the hooks changed the gradients");
}

Test(backward_hooks, hook_error_ends_backward)
{
    kiln_tensor *x = leaf(0.5f, false), *w1 = leaf(-1.0f, true), *w2 = leaf(2.0f, true);
    seen s = {.fail_at_tick = 2};
    kiln_set_backward_hooks(ctx, &(kiln_backward_hooks){.leaf_ready = on_ready, .tick = on_tick, .user = &s});
    kiln_status st = kiln_backward(ctx, graph(x, w1, w2));
    kiln_set_backward_hooks(ctx, NULL);
    cr_assert_eq(st, KILN_STATUS_IO, "status %d", (int)st);
    cr_assert(strstr(kiln_last_error(), "injected"), "message: %s", kiln_last_error());
    cr_assert_eq(s.n_ticks, 2, "the walk went on after the failing tick: %d", s.n_ticks);
    cr_assert_eq(s.n_ready, 0, "w2 is reported at the third node, after the failing tick: %d", s.n_ready);
}
