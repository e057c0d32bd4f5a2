// comm.h - the collectives of data-parallel training: N processes (ranks), each with its share of every batch.
// MPI (Open MPI: mpirun starts the ranks, on one machine or several with a hostfile) moves CPU buffers and
// bootstraps NCCL, which moves GPU buffers (one GPU per rank). Built without MPI (make MPI=0) or started without
// mpirun, there is one rank and every collective is a copy: single-process training is the same code path.
// All collectives are blocking and in-place-safe where noted; every rank must call them in the same order.
#ifndef COMM_H
#define COMM_H

#include <stdbool.h>
#include <stddef.h>

#include "../tensor/device.h"

// Starts the ranks' connection (MPI_Init) when built with MPI; then rank / size are fixed for the process.
void comm_init(int *argc, char ***argv);
void comm_finalize(void);
int comm_rank(void);
int comm_size(void);
const char *comm_describe(void);   // "MPI, 2 ranks (NCCL on CUDA)" or "single process"

// The GPU bootstrap for NCCL (rank 0 makes the id, MPI broadcasts it); called once a CUDA device is chosen.
void comm_init_device(Device dev);
// Tests: while on, this process acts alone (size 1, rank 0, collectives are copies) inside an MPI job, so one job
// can compute the one-process reference of a data-parallel step.
void comm_set_single_process(bool on);

void comm_allreduce_sum(float *buf, long n, Device dev);              // in place, every rank gets the sum
void comm_allreduce_sum_host_double(double *buf, long n);            // host doubles (statistics), in place
// out (size * n) = every rank's in (n), in rank order
void comm_allgather(float *out, const float *in, long n, Device dev);
// out (n) = the sum over ranks of their in[rank * n .. rank * n + n)
void comm_reduce_scatter_sum(float *out, const float *in, long n, Device dev);
void comm_broadcast_host(void *buf, size_t bytes, int root);
void comm_barrier(void);
// One line on stderr, then every rank stops (MPI_Abort): a rank that fails must not leave the others waiting.
void comm_abort(const char *msg) __attribute__((noreturn));

#endif
