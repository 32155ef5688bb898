/* What the MPI test programs (tests/mpi/, the C ones) share: CHECK(cond, fmt, ...), which prints
 * "<MPI_TEST_NAME>: rank R: FAIL file:line: message" on stderr and sets g_fail (the program
 * defines MPI_TEST_NAME before including this, and the ints g_fail and g_rank), and the
 * AddressSanitizer options Open MPI needs. Include it once per program. */
#ifndef KILN_TESTS_MPI_CHECK_H
#define KILN_TESTS_MPI_CHECK_H

#include <stdio.h>

/* under AddressSanitizer: Open MPI's leaks at exit are in MCA components it has dlclose'd,
 * named (and suppressed by tests/lsan.supp) only with the full unwinder */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "fast_unwind_on_malloc=0"; }

#define CHECK(cond, ...)                                                                         \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, MPI_TEST_NAME ": rank %d: FAIL %s:%d: ", g_rank, __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                                                        \
            fputc('\n', stderr);                                                                 \
            g_fail = 1;                                                                          \
        }                                                                                        \
    } while (0)

#endif
