/* kiln dist internals: the communicator object and the small table of operations an engine
 * fills (comm.c: the single process; comm_mpi.c: Open MPI; NCCL later). comm.c checks the
 * arguments and the request pool once, so an engine only moves data. Not API. */
#ifndef KILN_DIST_INTERNAL_H
#define KILN_DIST_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "kiln/dist.h"

#define KILN_COMM_MAX_REQS 64
/* The failing rank's message that kiln_comm_agree sends to the others (bytes, NUL included). */
#define KILN_COMM_MSG_BYTES 1024

struct kiln_comm_req {
    kiln_comm *owner;
    bool busy;
    void *impl; /* the engine's state of this request (MPI: its MPI_Requests) */
};

typedef enum kiln__comm_dtype { KILN__COMM_F32, KILN__COMM_F64 } kiln__comm_dtype;

/* One engine. Every call gets checked arguments (buf non-NULL when n > 0, root in range, a
 * request of this communicator) and names itself with `op` in its errors. */
typedef struct kiln__comm_ops {
    const char *name;
    kiln_status (*allreduce_sum)(kiln_comm *c, const char *op, void *buf, size_t n, kiln__comm_dtype t);
    kiln_status (*iallreduce_sum_f32)(kiln_comm *c, const char *op, float *buf, size_t n, kiln_comm_req *r);
    kiln_status (*wait)(kiln_comm *c, const char *op, kiln_comm_req *r);
    kiln_status (*test)(kiln_comm *c, const char *op, kiln_comm_req *r, bool *done);
    /* Rank r's counts[r] elements to offset displs[r] of `all` on root, or on every rank when
     * root is -1; a receiving rank's own part is already in place (comm.c puts it there), a
     * sending one's is `mine`. total is the sum of counts. */
    kiln_status (*gatherv_f32)(kiln_comm *c, const char *op, const float *mine, float *all, const size_t *counts,
                               const size_t *displs, size_t total, int root);
    kiln_status (*bcast)(kiln_comm *c, const char *op, void *buf, size_t bytes, int root);
    kiln_status (*barrier)(kiln_comm *c, const char *op);
    /* Sets *worst to the most negative st over the ranks and *first to the lowest rank that has
     * it, and when *worst is an error, msg (KILN_COMM_MSG_BYTES) to that rank's message (mine
     * in, theirs out). */
    kiln_status (*agree)(kiln_comm *c, const char *op, kiln_status st, char *msg, kiln_status *worst, int *first);
    void (*abort)(kiln_comm *c, const char *why); /* does not return */
    void (*free)(kiln_comm *c);                   /* the engine's part; comm.c frees the object */
} kiln__comm_ops;

struct kiln_comm {
    const kiln__comm_ops *ops;
    int rank, size;
    double timeout_s; /* 0: wait forever */
    /* Set by the first collective that failed or timed out: the others' state is unknown (a
     * collective may still be pending), so every later collective fails with this message. */
    bool broken;
    char broken_msg[512];
    kiln_comm_req reqs[KILN_COMM_MAX_REQS];
    void *impl; /* the engine's state */
};

#ifdef KILN_HAVE_MPI
/* The MPI world communicator when this process was started by mpirun (or MPI is already
 * initialised); NULL without an error when it was not (*launched false); NULL + message when
 * MPI fails to start. */
kiln_comm *kiln__comm_mpi_world(bool *launched);
#endif

/* Marks c broken with the thread's current message and returns st. */
kiln_status kiln__comm_break(kiln_comm *c, kiln_status st);

#endif
