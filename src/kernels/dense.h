/* Kernel table of the dense family (see src/kernels/backend.h). */
#ifndef KILN_KERNELS_DENSE_H
#define KILN_KERNELS_DENSE_H

#include "kernels/backend.h"

struct kiln_dense_kernels {
    int reserved; /* placeholder until the family's kernels are added */
};

extern const kiln_dense_kernels kiln__cpu_dense;

#endif
