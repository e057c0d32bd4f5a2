// reduce.cu - CUDA twins of ops/reduce.c: sum over the middle dimension of (outer, dim, inner).
// Deterministic: every output is summed by a fixed split of its dim elements into chunks (chosen from the shape
// alone), each chunk by a fixed thread tree, in double like the CPU; the chunk partials are then added in order.
#include "../ops/reduce.h"
#include "common.cuh"

#define ROW_CHUNK 4096      // inner == 1: elements of a contiguous row one warp sums into one partial
#define COLUMN_CHUNK 256    // inner > 1: elements along dim one thread sums into one partial
#define MANY_COLUMNS 16384  // inner > 1 with at least this many outputs: one thread sums a whole column

// inner == 1, x: (rows, dim). One warp per (row, chunk) task; task = row * chunks + chunk.
// With one chunk the warp writes the output; otherwise partial[task].
static __global__ void sum_rows_kernel(float *out, double *partial, const float *x, long rows, long dim, long chunks) {
    long warp = ((long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    long warps_in_grid = ((long)gridDim.x * blockDim.x) >> 5;
    int lane = threadIdx.x & 31;
    for (long task = warp; task < rows * chunks; task += warps_in_grid) {  // uniform per warp
        long row = task / chunks, chunk = task % chunks;
        long begin = chunk * ROW_CHUNK, end = min(dim, begin + ROW_CHUNK);
        const float *xr = x + row * dim;
        double s = 0;
        for (long k = begin + lane; k < end; k += 32) s += xr[k];
        s = warp_sum(s);
        if (lane == 0) {
            if (chunks == 1) out[row] = (float)s;
            else partial[task] = s;
        }
    }
}

// inner > 1, x: (outer, dim, inner). One thread per (chunk, o, i); neighbouring threads read neighbouring i.
// Output r = o * inner + i; with one chunk the thread writes out[r], otherwise partial[chunk * rows + r].
static __global__ void sum_columns_kernel(float *out, double *partial, const float *x, long outer, long dim,
                                          long inner, long chunk_len, long chunks) {
    long rows = outer * inner;
    GRID_STRIDE(t, rows * chunks) {
        long chunk = t / rows, r = t % rows, o = r / inner, i = r % inner;
        long begin = chunk * chunk_len, end = min(dim, begin + chunk_len);
        double s = 0;
        for (long k = begin; k < end; k++) s += x[(o * dim + k) * inner + i];
        if (chunks == 1) out[r] = (float)s;
        else partial[t] = s;
    }
}

// out[r] = sum over c < chunks of partial[r * row_stride + c * chunk_stride], in order of c
static __global__ void sum_partials_kernel(float *out, const double *partial, long rows, long chunks, long row_stride,
                                           long chunk_stride) {
    GRID_STRIDE(r, rows) {
        double s = 0;
        for (long c = 0; c < chunks; c++) s += partial[r * row_stride + c * chunk_stride];
        out[r] = (float)s;
    }
}

// out[o, i] = sum_k x[o, k, i];  x: (outer, dim, inner), out: (outer, inner)
void reduce_sum_forward_cuda(float *out, const float *x, long outer, long dim, long inner) {
    long rows = outer * inner;
    if (rows <= 0) return;
    if (dim <= 0) {  // an empty sum is zero
        CUDA_CHECK(cudaMemsetAsync(out, 0, (size_t)rows * sizeof(float), 0));
        return;
    }
    // inner == 1: rows are contiguous, split into ROW_CHUNK pieces, partial[row * chunks + chunk].
    // inner > 1: columns split into chunk_len pieces (whole columns when there are many), partial[chunk * rows + r].
    long chunk_len = inner == 1 ? ROW_CHUNK : rows >= MANY_COLUMNS ? dim : COLUMN_CHUNK;
    long chunks = (dim + chunk_len - 1) / chunk_len;
    long row_stride = inner == 1 ? chunks : 1, chunk_stride = inner == 1 ? 1 : rows;
    size_t partial_bytes = (size_t)(rows * chunks) * sizeof(double);
    double *partial = chunks > 1 ? (double *)scratch_alloc(partial_bytes) : NULL;
    if (inner == 1)
        sum_rows_kernel<<<blocks_for(rows * chunks * 32), THREADS>>>(out, partial, x, rows, dim, chunks);
    else
        sum_columns_kernel<<<blocks_for(rows * chunks), THREADS>>>(out, partial, x, outer, dim, inner, chunk_len,
                                                                    chunks);
    LAUNCH_CHECK();
    if (partial) {
        sum_partials_kernel<<<blocks_for(rows), THREADS>>>(out, partial, rows, chunks, row_stride, chunk_stride);
        LAUNCH_CHECK();
        scratch_free(partial, partial_bytes);
    }
}

// dx[o, k, i] += dout[o, i]
static __global__ void sum_backward_kernel(float *dx, const float *dout, long outer, long dim, long inner) {
    GRID_STRIDE(t, outer * dim * inner) {
        long i = t % inner, o = t / (dim * inner);
        dx[t] += dout[o * inner + i];
    }
}

void reduce_sum_backward_cuda(float *dx, const float *dout, long outer, long dim, long inner) {
    long n = outer * dim * inner;
    if (!dx || n <= 0) return;
    sum_backward_kernel<<<blocks_for(n), THREADS>>>(dx, dout, outer, dim, inner);
    LAUNCH_CHECK();
}
