/* kiln dist: the communicator data-parallel training runs on (issue 13). One small interface
 * over an existing engine: MPI (Debian's Open MPI) when kiln is built with it and the process
 * was started by mpirun / mpiexec, a single-process communicator otherwise (every collective a
 * no-op, rank 0 of 1), so a kiln without MPI behaves exactly as before. NCCL can serve a CUDA
 * backend behind the same calls later (llm.c's split: MPI starts the processes, NCCL reduces).
 *
 * Collectives are blocking and called by every rank in the same order. A failure on one rank
 * (an error return, a rank killed) makes the others fail too within a bounded time, with a
 * message naming the rank, rather than hang: kiln_comm_abort stops every rank; collectives
 * time out after timeout_s (kiln_comm_set_timeout) with KILN_STATUS_IO naming the call, the
 * rank and the seconds waited. After a collective has failed or timed out the communicator is
 * broken (the ranks may be at different calls): every later collective fails at once with
 * KILN_STATUS_STATE, and the caller should stop (kiln_comm_abort, or return and free).
 * Every collective but the accessors refuses a NULL communicator (KILN_STATUS_INVALID).
 * Under mpirun as root Open MPI wants `mpirun --allow-run-as-root --oversubscribe -np N`. */
#ifndef KILN_DIST_H
#define KILN_DIST_H

#include "kiln/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_comm kiln_comm;

/* Whether this kiln was built with MPI (the CMake option KILN_MPI). */
bool kiln_comm_mpi_built(void);

/* The world communicator: MPI_COMM_WORLD when built with MPI and launched by mpirun (Open
 * MPI's OMPI_COMM_WORLD_SIZE, or PMI_SIZE, in the environment), initialising MPI (thread level
 * FUNNELED) on the first call; else a single-process communicator. The same object on every
 * call; freed (and MPI finalised) by kiln_comm_free, after which a kiln that used MPI cannot
 * start it again (NULL + KILN_STATUS_STATE). MPI that the caller initialised is used, not
 * finalised. A program that never frees it has MPI finalised at exit. MPI_Finalize waits for
 * every rank; after a failure it is given timeout_s, then the process exits (status 1).
 * NULL + message when MPI fails to start. */
kiln_comm *kiln_comm_world(void);
/* A single-process communicator (rank 0 of 1), for tests and for a caller that wants none. */
kiln_comm *kiln_comm_single(void);
void kiln_comm_free(kiln_comm *c);

int kiln_comm_rank(const kiln_comm *c); /* 0 for NULL */
int kiln_comm_size(const kiln_comm *c); /* 1 for NULL */
const char *kiln_comm_name(const kiln_comm *c); /* "single", "mpi" */

/* Seconds a collective may wait for the other ranks before it fails (default 300; 0: forever;
 * negative, NaN or over 1e9: KILN_STATUS_INVALID). Per communicator. */
kiln_status kiln_comm_set_timeout(kiln_comm *c, double timeout_s);

/* In place, over every rank: buf[i] = sum over ranks of buf[i]. n may be 0 (buf may then be
 * NULL); every rank passes the same n. */
kiln_status kiln_comm_allreduce_sum_f32(kiln_comm *c, float *buf, size_t n);
kiln_status kiln_comm_allreduce_sum_f64(kiln_comm *c, double *buf, size_t n);
/* Non-blocking sum of a float buffer (one bucket of gradients, started as soon as backward has
 * filled it); kiln_comm_wait completes it and gives the request back (in any order; buf must
 * stay untouched until then). At most 64 in flight per communicator (the 65th:
 * KILN_STATUS_STATE). Requests still in flight are dropped by kiln_comm_free. */
typedef struct kiln_comm_req kiln_comm_req;
kiln_status kiln_comm_iallreduce_sum_f32(kiln_comm *c, float *buf, size_t n, kiln_comm_req **req);
kiln_status kiln_comm_wait(kiln_comm *c, kiln_comm_req *req);
/* Whether req has completed, without blocking (*done); when it has, the sum is in its buffer
 * and req is still to be given back with kiln_comm_wait (which then returns at once). Each call
 * also lets the engine move data: Open MPI progresses non-blocking collectives only inside MPI
 * calls, so a caller overlapping sums with its own work (backward) tests now and then. Fails
 * (with *done false) as kiln_comm_wait would: a broken communicator, an MPI error. No timeout:
 * the wait that follows has it. */
kiln_status kiln_comm_test(kiln_comm *c, kiln_comm_req *req, bool *done);
/* Each rank's part of one float buffer to every rank (MPI_Allgatherv; ZeRO-1's exchange of the
 * updated parameters): counts (size entries, the same on every rank) gives rank r's part,
 * counts[r] elements at offset counts[0] + ... + counts[r - 1] of `all` (which has the sum of
 * counts); mine is this rank's counts[rank] elements, anywhere, or at its own offset of all
 * (in place). Counts may be 0. Open MPI takes int counts: a sum over INT_MAX is INVALID. */
kiln_status kiln_comm_allgatherv_f32(kiln_comm *c, const float *mine, float *all, const size_t *counts);
/* The same into root's `all` only (MPI_Gatherv): the other ranks send mine, their `all` is not
 * read (may be NULL). */
kiln_status kiln_comm_gatherv_f32(kiln_comm *c, const float *mine, float *all, const size_t *counts, int root);
/* root's bytes into every rank's buf (root 0 to size - 1). */
kiln_status kiln_comm_bcast(kiln_comm *c, void *buf, size_t bytes, int root);
kiln_status kiln_comm_barrier(kiln_comm *c);
/* Every rank agrees on a status: the worst (most negative) of the ranks' st, and on a rank
 * whose own st was OK, an error message "rank R of N failed: <its message>" naming the lowest
 * rank with that status (its kiln_last_error(), cut at 1023 bytes). A failing rank keeps its
 * own message. Call it with st from every rank, e.g. after loading each rank's shard. */
kiln_status kiln_comm_agree(kiln_comm *c, kiln_status st);
/* Stops every rank (MPI_Abort, mpirun exits non-zero) after printing "kiln: rank R: why" on
 * stderr; returns only for a single-process communicator or NULL (then it does nothing). */
void kiln_comm_abort(kiln_comm *c, const char *why);

#ifdef __cplusplus
}
#endif
#endif
