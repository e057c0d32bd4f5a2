// comm.c - MPI and NCCL behind the calls of comm.h; one rank when built without MPI.
#include "comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef USE_MPI
#include <mpi.h>
#endif
#if defined(USE_MPI) && defined(USE_CUDA) && defined(USE_NCCL)
#include <cuda_runtime.h>
#include <nccl.h>
#define HAVE_NCCL 1
#endif

static int rank_id = 0, n_ranks = 1, world_rank = 0, world_size = 1;
static bool started;

#ifdef HAVE_NCCL
static ncclComm_t nccl;
static bool nccl_ready;
#define NCCL_OK(call) do { ncclResult_t r_ = (call); if (r_ != ncclSuccess) { \
    char m_[256]; snprintf(m_, sizeof m_, "%s:%d: NCCL error: %s", __FILE__, __LINE__, ncclGetErrorString(r_)); \
    comm_abort(m_); } } while (0)
#endif

#ifdef USE_MPI
#define MPI_OK(call) do { int r_ = (call); if (r_ != MPI_SUCCESS) { \
    char m_[256]; snprintf(m_, sizeof m_, "%s:%d: MPI error %d", __FILE__, __LINE__, r_); comm_abort(m_); } } while (0)
#endif

void comm_init(int *argc, char ***argv) {
    if (started) return;
    started = true;
#ifdef USE_MPI
    MPI_OK(MPI_Init(argc, argv));
    MPI_OK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
    MPI_OK(MPI_Comm_size(MPI_COMM_WORLD, &world_size));
    rank_id = world_rank;
    n_ranks = world_size;
#else
    (void)argc;
    (void)argv;
#endif
}

void comm_finalize(void) {
#ifdef HAVE_NCCL
    if (nccl_ready) ncclCommDestroy(nccl);
    nccl_ready = false;
#endif
#ifdef USE_MPI
    if (started) MPI_Finalize();
#endif
    started = false;
}

void comm_set_single_process(bool on) {
    rank_id = on ? 0 : world_rank;
    n_ranks = on ? 1 : world_size;
}

int comm_rank(void) { return rank_id; }
int comm_size(void) { return n_ranks; }

const char *comm_describe(void) {
    static char text[96];
#ifdef USE_MPI
    snprintf(text, sizeof text, "MPI, %d rank%s%s", n_ranks, n_ranks == 1 ? "" : "s",
#ifdef HAVE_NCCL
             nccl_ready ? " (NCCL on CUDA)" : ""
#else
             ""
#endif
    );
#else
    snprintf(text, sizeof text, "single process (built without MPI)");
#endif
    return text;
}

void comm_init_device(Device dev) {
#ifdef HAVE_NCCL
    if (dev != DEV_CUDA || n_ranks == 1 || nccl_ready) return;
    ncclUniqueId id;
    if (rank_id == 0) NCCL_OK(ncclGetUniqueId(&id));
    MPI_OK(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD));
    NCCL_OK(ncclCommInitRank(&nccl, n_ranks, id, rank_id));
    nccl_ready = true;
#else
    (void)dev;
#endif
}

void comm_abort(const char *msg) {
    fprintf(stderr, "%s\n", msg);
#ifdef USE_MPI
    if (started && world_size > 1) MPI_Abort(MPI_COMM_WORLD, 1);
#endif
    exit(1);
}

#ifdef USE_MPI
// a device buffer through host memory (MPI without NCCL)
static float *to_host(const float *buf, long n, Device dev) {
    float *h = xmalloc((size_t)n * sizeof(float));
    dev_copy(h, DEV_CPU, buf, dev, (size_t)n * sizeof(float));
    return h;
}
#endif

void comm_allreduce_sum(float *buf, long n, Device dev) {
    if (n_ranks == 1 || n == 0) return;
#ifdef HAVE_NCCL
    if (dev == DEV_CUDA && nccl_ready) { NCCL_OK(ncclAllReduce(buf, buf, (size_t)n, ncclFloat, ncclSum, nccl, 0)); return; }
#endif
#ifdef USE_MPI
    CHECK(n <= 0x7fffffffL, "all-reduce of %ld floats", n);
    if (dev == DEV_CPU) { MPI_OK(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD)); return; }
    float *h = to_host(buf, n, dev);
    MPI_OK(MPI_Allreduce(MPI_IN_PLACE, h, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
    dev_copy(buf, dev, h, DEV_CPU, (size_t)n * sizeof(float));
    free(h);
#endif
}

void comm_allreduce_sum_host_double(double *buf, long n) {
    if (n_ranks == 1 || n == 0) return;
#ifdef USE_MPI
    MPI_OK(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
#endif
}

void comm_allgather(float *out, const float *in, long n, Device dev) {
    if (n_ranks == 1) { dev_copy(out, dev, in, dev, (size_t)n * sizeof(float)); return; }
#ifdef HAVE_NCCL
    if (dev == DEV_CUDA && nccl_ready) { NCCL_OK(ncclAllGather(in, out, (size_t)n, ncclFloat, nccl, 0)); return; }
#endif
#ifdef USE_MPI
    CHECK(n * n_ranks <= 0x7fffffffL, "all-gather of %ld floats", n * n_ranks);
    if (dev == DEV_CPU) {
        MPI_OK(MPI_Allgather(in, (int)n, MPI_FLOAT, out, (int)n, MPI_FLOAT, MPI_COMM_WORLD));
        return;
    }
    float *h_in = to_host(in, n, dev), *h_out = xmalloc((size_t)n * n_ranks * sizeof(float));
    MPI_OK(MPI_Allgather(h_in, (int)n, MPI_FLOAT, h_out, (int)n, MPI_FLOAT, MPI_COMM_WORLD));
    dev_copy(out, dev, h_out, DEV_CPU, (size_t)n * n_ranks * sizeof(float));
    free(h_in);
    free(h_out);
#endif
}

void comm_reduce_scatter_sum(float *out, const float *in, long n, Device dev) {
    if (n_ranks == 1) { dev_copy(out, dev, in, dev, (size_t)n * sizeof(float)); return; }
#ifdef HAVE_NCCL
    if (dev == DEV_CUDA && nccl_ready) {
        NCCL_OK(ncclReduceScatter(in, out, (size_t)n, ncclFloat, ncclSum, nccl, 0));
        return;
    }
#endif
#ifdef USE_MPI
    CHECK(n * n_ranks <= 0x7fffffffL, "reduce-scatter of %ld floats", n * n_ranks);
    if (dev == DEV_CPU) {
        MPI_OK(MPI_Reduce_scatter_block(in, out, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
        return;
    }
    float *h_in = to_host(in, n * n_ranks, dev), *h_out = xmalloc((size_t)n * sizeof(float));
    MPI_OK(MPI_Reduce_scatter_block(h_in, h_out, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
    dev_copy(out, dev, h_out, DEV_CPU, (size_t)n * sizeof(float));
    free(h_in);
    free(h_out);
#endif
}

void comm_broadcast_host(void *buf, size_t bytes, int root) {
    if (n_ranks == 1) return;
#ifdef USE_MPI
    MPI_OK(MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, MPI_COMM_WORLD));
#else
    (void)buf; (void)bytes; (void)root;
#endif
}

void comm_barrier(void) {
#ifdef USE_MPI
    if (n_ranks > 1) MPI_OK(MPI_Barrier(MPI_COMM_WORLD));
#endif
}
