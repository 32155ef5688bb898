/* oneDNN plumbing shared by the CPU kernels: the engine and stream of a context, and a
 * macro that turns a failed dnnl call into a kiln error naming the op. */
#ifndef KILN_KERNELS_CPU_DNNL_UTIL_H
#define KILN_KERNELS_CPU_DNNL_UTIL_H

#include "core/internal.h"

#include <oneapi/dnnl/dnnl.h>

dnnl_engine_t kiln__dnnl_engine(kiln_ctx *ctx);
dnnl_stream_t kiln__dnnl_stream(kiln_ctx *ctx);
const char *kiln__dnnl_status_str(dnnl_status_t s);

#define KILN_DNNL(op, call)                                                                   \
    do {                                                                                      \
        dnnl_status_t s_ = (call);                                                            \
        if (s_ != dnnl_success)                                                               \
            return kiln__err(KILN_STATUS_BACKEND, "%s: oneDNN %s failed: %s", (op), #call,   \
                             kiln__dnnl_status_str(s_));                                      \
    } while (0)

#endif
