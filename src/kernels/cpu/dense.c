/* CPU kernels of the dense family. */
#include "kernels/dense.h"

const kiln_dense_kernels kiln__cpu_dense = {0};
