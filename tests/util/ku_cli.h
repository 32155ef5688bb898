/* Helpers for the end-to-end tests of the kiln binary (test_vision_cli, test_durable,
 * test_kill_resume): small image data sets written here (PNG folders with libspng, IDX
 * files) and running the binary as a child process. Failures fail the current Criterion
 * test. */
#ifndef KILN_TESTS_KU_CLI_H
#define KILN_TESTS_KU_CLI_H

#include "util/ku.h"

#include <stdint.h>
#include <sys/types.h>

/* Writes n bytes to path (plain stdio: test data, not kiln output). */
void ku_write_bytes(const char *path, const void *data, size_t n);
/* An 8-bit grey s x s PNG from px (s*s bytes). */
void ku_write_png(const char *path, int s, const uint8_t *px);
/* root/{train,valid}/{left,right}/NN.png: 2 classes x 12 grey 16x16 images (8 train, 4
 * valid each); "left" is bright on the left half, "right" on the right half. */
void ku_make_image_folder(const char *root);
/* An IDX file: big-endian magic and nd dims, then n bytes of data. */
void ku_write_idx(const char *path, uint32_t magic, const uint32_t *dims, int nd, const uint8_t *data, size_t n);
/* dir/<pre>-images-idx3-ubyte and -labels-idx1-ubyte: n (<= 64) 28x28 images of 3 classes. */
void ku_make_idx(const char *dir, const char *pre, int n);

/* Starts `bin argv[1..]` (argv[0] is ignored, argv NULL-terminated) with stdout and stderr
 * to the files out and err (NULL: /dev/null); the child's pid. */
pid_t ku_spawn(const char *bin, char *const argv[], const char *out, const char *err);
/* Waits for pid: its exit status, or 128 + the signal that ended it. */
int ku_wait(pid_t pid);

#endif
