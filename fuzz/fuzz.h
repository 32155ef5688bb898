/* Shared by the libFuzzer targets in fuzz/ (see docs/fuzzing.md): kiln's readers take paths,
 * so each input is handed to them as a file. Every target defines LLVMFuzzerTestOneInput; the
 * same source links with libFuzzer (clang, KILN_FUZZ=ON) or with replay.c (any compiler), which
 * runs the committed seeds and regression inputs as a ctest test. */
#ifndef KILN_FUZZ_H
#define KILN_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes data to a file that lives in memory (memfd, reused by every call of one process) and
 * returns a path that opens it ("/proc/self/fd/N"); NULL when that fails. */
const char *kf_memfile(const uint8_t *data, size_t size);
/* One context for the process (one thread, 8 MiB arena blocks); the caller resets its arena. */
struct kiln_ctx *kf_ctx(void);
/* A fresh private directory under /tmp for this process (made once, removed at exit). */
const char *kf_tmpdir(void);
/* Writes data to dir/name; the path (static buffer) or NULL. */
const char *kf_write(const char *dir, const char *name, const uint8_t *data, size_t size);
/* A reader refused the input: abort() when it left no message (a bug); print the message when
 * KILN_FUZZ_VERBOSE is set (to see why a seed fails). */
void kf_refused(const char *what);
/* The reader broke its contract on this input: print why (and kiln's last message), abort. */
_Noreturn void kf_bug(const char *why);
/* Input is refused by the target (e.g. would make the reader open other files): skip it. */
#define KF_SKIP 0

#endif
