/* Test helpers shared by every kiln test: a context per test, fixture loading from
 * tests/fixtures/<family>.safetensors (written by tests/fixtures/gen_<family>.py with
 * PyTorch), tolerance comparison and the finite-difference check. All helpers fail the
 * current Criterion test (cr_assert) with a message naming the tensor on mismatch.
 *
 * Fixture naming: "<case>.<tensor>", e.g. "conv_s2.x", "conv_s2.w", "conv_s2.y" (output),
 * "conv_s2.gy" (upstream gradient passed to y.backward(gy)), "conv_s2.grad.x" (dL/dx). */
#ifndef KILN_TESTS_KU_H
#define KILN_TESTS_KU_H

#include <criterion/criterion.h>

#include "kiln.h"

/* The compute threads a test uses: OMP_NUM_THREADS when set (so tools/cpu-matrix.sh's
 * 1-thread runs run on 1 thread), else 2. */
int ku_threads(void);
/* A fresh context (ku_threads() threads, seed 1234); free with ku_ctx_free. */
kiln_ctx *ku_ctx(void);
void ku_ctx_free(kiln_ctx *ctx);

/* Opens tests/fixtures/<family>.safetensors (asserts on failure). */
kiln_st_file *ku_fixture(const char *family);
/* Loads "<case>.<tensor>" into the arena (asserts it exists). */
kiln_tensor *ku_load(kiln_ctx *ctx, kiln_st_file *f, const char *kase, const char *tensor);
/* Same and marks it requires_grad. */
kiln_tensor *ku_load_grad(kiln_ctx *ctx, kiln_st_file *f, const char *kase, const char *tensor);
bool ku_has(kiln_st_file *f, const char *kase, const char *tensor);

/* Asserts got is not NULL (else prints kiln_last_error), has want's shape, and every
 * element satisfies |got - want| <= atol + rtol * |want|. what names the check. */
void ku_expect_close(const kiln_tensor *got, const kiln_tensor *want, double atol, double rtol,
                     const char *what);
/* Compares got with fixture "<case>.<tensor>". */
void ku_expect_fixture(kiln_ctx *ctx, kiln_st_file *f, const char *kase, const char *tensor,
                       const kiln_tensor *got, double atol, double rtol);
/* Runs kiln_gradcheck with the given tolerances and asserts it passes; with KU_GRADCHECK_SURVEY
 * set it also prints the largest absolute error and the share of the tolerance used. */
void ku_gradcheck(kiln_ctx *ctx, kiln_gradcheck_fn fn, kiln_tensor **inputs, int n, void *user,
                  double eps, double atol, double rtol, const char *what);
/* Asserts |got[i] - want[i]| <= atol + rtol * |want[i]| for every i < n (NaN fails). */
void ku_expect_arrays(const float *got, const float *want, int64_t n, double atol, double rtol, const char *what);
/* n standard-normal floats from ctx's RNG in the step arena (asserts on failure). */
float *ku_randn_buf(kiln_ctx *ctx, int64_t n);
/* The whole file at path, NUL-terminated, malloc'd (caller frees); asserts it opens. */
char *ku_slurp(const char *path);
/* A copy of s with its first `from` replaced by `to` (malloc'd; asserts from is there). */
char *ku_replace(const char *s, const char *from, const char *to);
/* Asserts a kiln call failed (NULL / status < 0) and that the message contains needle. */
void ku_expect_error(const char *needle, const char *what);

#endif
