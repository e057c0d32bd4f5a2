// shape.cu - CUDA twins of ops/shape.c: batched transpose, the per-row location gather, and patch extraction.
// (reshape, detach, concat, repeat and dropout are built from copies and elementwise kernels in ops/shape.c.)
#include "../ops/shape.h"
#include "common.cuh"

#define TILE 32       // transpose tile edge
#define TILE_ROWS 8   // threadIdx.y extent: each thread moves TILE / TILE_ROWS elements of a tile
#define MAX_GRID_YZ 65535

// out (A, cols, rows)[a, c, r] (+)= in (A, rows, cols)[a, r, c], through a shared tile so that both the reads and
// the writes are coalesced; the +1 column avoids shared-memory bank conflicts. blockDim = (TILE, TILE_ROWS).
template <bool ACCUMULATE>
static __global__ void transpose_kernel(float *out, const float *in, int A, int rows, int cols) {
    __shared__ float tile[TILE][TILE + 1];
    int c0 = blockIdx.x * TILE;
    for (long a = blockIdx.z; a < A; a += gridDim.z) {                    // loops uniform per block:
        for (long r0 = (long)blockIdx.y * TILE; r0 < rows; r0 += (long)gridDim.y * TILE) {  // safe __syncthreads
            const float *src = in + a * rows * cols;
            float *dst = out + a * rows * cols;
            for (int j = threadIdx.y; j < TILE; j += TILE_ROWS) {
                long r = r0 + j;
                int c = c0 + threadIdx.x;
                if (r < rows && c < cols) tile[j][threadIdx.x] = src[r * cols + c];
            }
            __syncthreads();
            for (int j = threadIdx.y; j < TILE; j += TILE_ROWS) {
                int c = c0 + j;
                long r = r0 + threadIdx.x;
                if (c < cols && r < rows) {
                    if (ACCUMULATE) dst[(long)c * rows + r] += tile[threadIdx.x][j];
                    else dst[(long)c * rows + r] = tile[threadIdx.x][j];
                }
            }
            __syncthreads();  // the tile is refilled by the next iteration
        }
    }
}

template <bool ACCUMULATE>
static void transpose(float *out, const float *in, int A, int rows, int cols) {
    if ((long)A * rows * cols <= 0) return;
    long tiles_r = ((long)rows + TILE - 1) / TILE;
    dim3 grid((unsigned int)(((long)cols + TILE - 1) / TILE),
              (unsigned int)(tiles_r < MAX_GRID_YZ ? tiles_r : MAX_GRID_YZ),
              (unsigned int)(A < MAX_GRID_YZ ? A : MAX_GRID_YZ));  // rows and A beyond the caps: the kernel loops
    transpose_kernel<ACCUMULATE><<<grid, dim3(TILE, TILE_ROWS)>>>(out, in, A, rows, cols);
    LAUNCH_CHECK();
}

// out[a, n, m] = x[a, m, n];  x: (A, M, N), out: (A, N, M)
void transpose_forward_cuda(float *out, const float *x, int A, int M, int N) { transpose<false>(out, x, A, M, N); }

// dx[a, m, n] += dout[a, n, m]: the transpose of dout (A, N, M), accumulated
void transpose_backward_cuda(float *dx, const float *dout, int A, int M, int N) {
    if (!dx) return;
    transpose<true>(dx, dout, A, N, M);
}

// out[b, d] = x[b, d, idx[b]];  x: (B, D, S), idx: (B) on the device, out: (B, D). An index outside [0, S) (which
// the op layer rejects) reads nothing and gives 0 rather than touching memory out of bounds.
static __global__ void gather_location_forward_kernel(float *out, const float *x, const int *idx, int B, int D, int S) {
    GRID_STRIDE(t, (long)B * D) {
        int s = idx[t / D];
        out[t] = s >= 0 && s < S ? x[t * S + s] : 0.0f;
    }
}

void gather_location_forward_cuda(float *out, const float *x, const int *idx, int B, int D, int S) {
    if ((long)B * D <= 0) return;
    gather_location_forward_kernel<<<blocks_for((long)B * D), THREADS>>>(out, x, idx, B, D, S);
    LAUNCH_CHECK();
}

// dx[b, d, idx[b]] += dout[b, d]: every (b, d) owns its own element, so no two threads touch the same address
static __global__ void gather_location_backward_kernel(float *dx, const float *dout, const int *idx, int B, int D,
                                                       int S) {
    GRID_STRIDE(t, (long)B * D) {
        int s = idx[t / D];
        if (s >= 0 && s < S) dx[t * S + s] += dout[t];
    }
}

void gather_location_backward_cuda(float *dx, const float *dout, const int *idx, int B, int D, int S) {
    if (!dx || (long)B * D <= 0) return;
    gather_location_backward_kernel<<<blocks_for((long)B * D), THREADS>>>(dx, dout, idx, B, D, S);
    LAUNCH_CHECK();
}

// out: (B*G*G, C, P, P); x: (B, C, H, H); one thread per output element
static __global__ void extract_patches_forward_kernel(float *out, const float *x, int B, int C, int H, int P,
                                                      int stride, int G) {
    GRID_STRIDE(t, (long)B * G * G * C * P * P) {
        int px = (int)(t % P), py = (int)(t / P % P), c = (int)(t / ((long)P * P) % C);
        long q = t / ((long)P * P * C);
        int gj = (int)(q % G), gi = (int)(q / G % G);
        long b = q / ((long)G * G);
        out[t] = x[((b * C + c) * H + gi * stride + py) * H + gj * stride + px];
    }
}

void extract_patches_forward_cuda(float *out, const float *x, int B, int C, int H, int P, int stride) {
    int G = (H - P) / stride + 1;
    long n = (long)B * G * G * C * P * P;
    if (n <= 0) return;
    extract_patches_forward_kernel<<<blocks_for(n), THREADS>>>(out, x, B, C, H, P, stride, G);
    LAUNCH_CHECK();
}

// dx (B, C, H, H) += the gradients of every patch covering each pixel; one thread per pixel, a fixed order of sums
static __global__ void extract_patches_backward_kernel(float *dx, const float *dout, int B, int C, int H, int P,
                                                       int stride, int G) {
    GRID_STRIDE(t, (long)B * C * H * H) {
        int x = (int)(t % H), y = (int)(t / H % H);
        long bc = t / ((long)H * H), b = bc / C, c = bc % C;
        int gi_lo = y - P + 1 > 0 ? (y - P + 1 + stride - 1) / stride : 0, gi_hi = min(y / stride, G - 1);
        int gj_lo = x - P + 1 > 0 ? (x - P + 1 + stride - 1) / stride : 0, gj_hi = min(x / stride, G - 1);
        float sum = 0;
        for (int gi = gi_lo; gi <= gi_hi; gi++)
            for (int gj = gj_lo; gj <= gj_hi; gj++)
                sum += dout[((((b * G + gi) * G + gj) * C + c) * P + (y - gi * stride)) * P + (x - gj * stride)];
        dx[t] += sum;
    }
}

void extract_patches_backward_cuda(float *dx, const float *dout, int B, int C, int H, int P, int stride) {
    int G = (H - P) / stride + 1;
    long n = (long)B * C * H * H;
    if (!dx || n <= 0) return;
    extract_patches_backward_kernel<<<blocks_for(n), THREADS>>>(dx, dout, B, C, H, P, stride, G);
    LAUNCH_CHECK();
}
