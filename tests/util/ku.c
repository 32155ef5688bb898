/* Test helpers: see ku.h. */
#include "util/ku.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

int ku_threads(void)
{
    const char *e = getenv("OMP_NUM_THREADS");
    int n = e ? atoi(e) : 0;
    return n > 0 ? n : 2;
}

kiln_ctx *ku_ctx(void)
{
    kiln_ctx_params p = kiln_ctx_default_params();
    p.n_threads = ku_threads();
    p.seed = 1234;
    p.arena_block_bytes = 16 << 20;
    kiln_ctx *ctx = kiln_ctx_new(&p);
    cr_assert(ctx != NULL, "kiln_ctx_new failed: %s", kiln_last_error());
    return ctx;
}

void ku_ctx_free(kiln_ctx *ctx) { kiln_ctx_free(ctx); }

kiln_st_file *ku_fixture(const char *family)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.safetensors", KILN_FIXTURE_DIR, family);
    kiln_st_file *f = NULL;
    kiln_status st = kiln_st_open(path, &f);
    cr_assert(st == KILN_STATUS_OK && f, "cannot open fixture %s: %s", path, kiln_last_error());
    return f;
}

bool ku_has(kiln_st_file *f, const char *kase, const char *tensor)
{
    char name[256];
    snprintf(name, sizeof name, "%s.%s", kase, tensor);
    return kiln_st_has(f, name);
}

kiln_tensor *ku_load(kiln_ctx *ctx, kiln_st_file *f, const char *kase, const char *tensor)
{
    char name[256];
    snprintf(name, sizeof name, "%s.%s", kase, tensor);
    kiln_tensor *t = kiln_st_load(ctx, f, name);
    cr_assert(t != NULL, "fixture tensor %s missing: %s", name, kiln_last_error());
    return t;
}

kiln_tensor *ku_load_grad(kiln_ctx *ctx, kiln_st_file *f, const char *kase, const char *tensor)
{
    kiln_tensor *t = ku_load(ctx, f, kase, tensor);
    kiln_set_requires_grad(t, true);
    return t;
}

void ku_expect_close(const kiln_tensor *got, const kiln_tensor *want, double atol, double rtol, const char *what)
{
    char a[128], b[128];
    cr_assert(got != NULL, "%s: result is NULL (%s)", what, kiln_last_error());
    cr_assert(want != NULL, "%s: expected tensor is NULL", what);
    cr_assert(kiln_same_shape(got, want), "%s: shape %s, expected %s", what, kiln_shape_str(got, a, sizeof a),
              kiln_shape_str(want, b, sizeof b));
    int64_t n = kiln_numel(want), worst_i = -1;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double g = kiln_get_flat(got, i), w = kiln_get_flat(want, i);
        double err = fabs(g - w), tol = atol + rtol * fabs(w);
        if (!(err <= tol)) { /* also catches NaN */
            cr_assert_fail("%s: element %lld is %.8g, expected %.8g (|diff| %.3g > atol %.1g + rtol %.1g * |ref|)",
                           what, (long long)i, g, w, err, atol, rtol);
        }
        if (err > worst) {
            worst = err;
            worst_i = i;
        }
    }
    (void)worst_i;
}

void ku_expect_fixture(kiln_ctx *ctx, kiln_st_file *f, const char *kase, const char *tensor, const kiln_tensor *got,
                       double atol, double rtol)
{
    char what[256];
    snprintf(what, sizeof what, "%s.%s", kase, tensor);
    ku_expect_close(got, ku_load(ctx, f, kase, tensor), atol, rtol, what);
}

void ku_gradcheck(kiln_ctx *ctx, kiln_gradcheck_fn fn, kiln_tensor **inputs, int n, void *user, double eps,
                  double atol, double rtol, const char *what)
{
    kiln_gradcheck_params p = {.eps = eps, .atol = atol, .rtol = rtol};
    double used = 0;
    kiln_status st = kiln_gradcheck(ctx, fn, inputs, n, user, &p, &used);
    cr_assert(st == KILN_STATUS_OK, "%s: gradcheck failed: %s", what, kiln_last_error());
    if (getenv("KU_GRADCHECK_SURVEY")) {
        /* measuring tolerances: also the largest absolute error (atol 1, rtol 0) */
        kiln_gradcheck_params q = {.eps = eps, .atol = 1, .rtol = 0};
        double abs_err = 0;
        cr_assert(kiln_gradcheck(ctx, fn, inputs, n, user, &q, &abs_err) == KILN_STATUS_OK, "%s: %s", what,
                  kiln_last_error());
        printf("GRADCHECK %s: eps %g atol %g rtol %g | max abs err %.3g, uses %.3f of the tolerance\n", what, eps,
               atol, rtol, abs_err, used);
    }
}

void ku_expect_error(const char *needle, const char *what)
{
    const char *msg = kiln_last_error();
    cr_assert(msg && *msg, "%s: expected an error message, got none", what);
    cr_assert(strstr(msg, needle) != NULL, "%s: error message '%s' does not mention '%s'", what, msg, needle);
}

char *ku_replace(const char *s, const char *from, const char *to)
{
    const char *at = strstr(s, from);
    cr_assert(at, "\"%s\" not in %s", from, s);
    size_t n = strlen(s) - strlen(from) + strlen(to) + 1;
    char *out = malloc(n);
    cr_assert(out);
    snprintf(out, n, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
    return out;
}

char *ku_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    cr_assert(n >= 0, "cannot size %s", path);
    char *buf = malloc((size_t)n + 1);
    cr_assert(buf && fread(buf, 1, (size_t)n, f) == (size_t)n, "cannot read %s", path);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

float *ku_randn_buf(kiln_ctx *ctx, int64_t n)
{
    const int64_t s[1] = {n};
    kiln_tensor *t = kiln_randn(ctx, 1, s, 0.0f, 1.0f);
    cr_assert(t != NULL, "ku_randn_buf(%lld): %s", (long long)n, kiln_last_error());
    return t->data;
}

void ku_expect_arrays(const float *got, const float *want, int64_t n, double atol, double rtol, const char *what)
{
    for (int64_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]);
        if (!(err <= atol + rtol * fabs(want[i])))
            cr_assert_fail("%s: element %lld is %.8g, reference %.8g", what, (long long)i, got[i], want[i]);
    }
}
