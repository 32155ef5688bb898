/* Counter-based RNG (Philox4x32-10, Salmon et al. 2011). A draw of n numbers reserves n
 * counters from the context; number i depends only on (seed, first + i), so the result is
 * the same whatever the thread count. The state as JSON, for checkpoints. */
#include "core/json.h"
#include "core/parallel.h"
#include "core/philox.h"

#include <math.h>

float kiln_philox_uniform(uint64_t seed, uint64_t counter)
{
    return kiln__philox_u01(kiln__philox(seed, counter).v[0]);
}

kiln_rng_state kiln_rng_get(const kiln_ctx *ctx) { return ctx->rng; }
void kiln_rng_set(kiln_ctx *ctx, kiln_rng_state s) { ctx->rng = s; }
void kiln_rng_seed(kiln_ctx *ctx, uint64_t seed) { ctx->rng = (kiln_rng_state){seed, 0}; }

char *kiln_rng_state_to_json(kiln_rng_state s)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o && kiln__json_add_u64(o, "seed", s.seed) && kiln__json_add_u64(o, "counter", s.counter);
    return kiln__json_finish("rng_state_to_json", o, ok);
}

kiln_status kiln_rng_state_from_json(const char *json, kiln_rng_state *out)
{
    static const char *const who = "rng state", *const known[] = {"seed", "counter", NULL};
    cJSON *o;
    kiln_rng_state s;
    kiln_status st = kiln__json_object(who, json, &o);
    if (!st && !(st = kiln__json_get_u64(who, o, "seed", true, &s.seed)) &&
        !(st = kiln__json_get_u64(who, o, "counter", true, &s.counter))) {
        kiln__json_warn_unknown(who, o, known);
        *out = s;
    }
    cJSON_Delete(o);
    return st;
}

uint64_t kiln_rng_take(kiln_ctx *ctx, uint64_t n)
{
    uint64_t first = ctx->rng.counter;
    ctx->rng.counter += n;
    return first;
}

void kiln_rng_uniform(kiln_ctx *ctx, float *out, size_t n, float lo, float hi)
{
    uint64_t first = kiln_rng_take(ctx, n), seed = ctx->rng.seed;
    KILN_PAR_FOR(ctx, 2 * (int64_t)n) /* a Philox draw per number */
    for (size_t i = 0; i < n; i++) out[i] = lo + (hi - lo) * kiln_philox_uniform(seed, first + i);
}

void kiln_rng_normal(kiln_ctx *ctx, float *out, size_t n, float mean, float std)
{
    uint64_t first = kiln_rng_take(ctx, n), seed = ctx->rng.seed;
    KILN_PAR_FOR(ctx, 4 * (int64_t)n) /* a Philox draw, a log, a sqrt and a cos */
    for (size_t i = 0; i < n; i++) {
        kiln__u32x4 r = kiln__philox(seed, first + i);
        double u1 = ((double)(r.v[0] >> 8) + 1.0) / 16777217.0; /* (0, 1]: log is finite */
        double u2 = (double)(r.v[1] >> 8) / 16777216.0;
        out[i] = mean + std * (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
    }
}
