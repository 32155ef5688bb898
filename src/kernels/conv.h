/* Kernel table of the conv family (see src/kernels/backend.h). */
#ifndef KILN_KERNELS_CONV_H
#define KILN_KERNELS_CONV_H

#include "kernels/backend.h"

struct kiln_conv_kernels {
    int reserved; /* placeholder until the family's kernels are added */
};

extern const kiln_conv_kernels kiln__cpu_conv;

#endif
