// conv.c - 2-D convolution by im2col + GEMM, average pooling, reflection and channel padding: CPU kernels, then
// the autograd ops. Legend: N batch, C/Co channels in/out, H, W input size, K kernel, Ho, Wo output size, P = Ho*Wo.
//
// Images are processed in groups of G: the im2col columns of G images sit side by side, so one GEMM
// w (Co, C*K*K) x col (C*K*K, G*P) covers the group. Small output maps (P = 1, 9, 25) would otherwise give one
// matrix-vector product per image. Threads split the batch by groups (see conv_plan). G depends only on the shapes
// and the thread count, so sums run in the same order on every call with the same threads.
// Two cases need no im2col. A kernel that covers the whole unpadded input (1x1 maps, or 3x3 -> 1x1): the batch is
// one (N, C*K*K) x (C*K*K, Co) GEMM. 1x1 stride-1 unpadded convolutions: on big maps (G = 1) each image is a GEMM
// on x itself, and in between the group's columns are a plain channel-major copy.
#include "conv.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../tensor/device.h"
#include "elementwise.h"
#include "linalg.h"
#include "ops.h"

// GEMMs get up to this many columns (whole images) when the batch allows, the im2col buffer kept under the float cap
#define CONV_TARGET_COLS 1024L
#define CONV_MAX_WORKSPACE_FLOATS (4L << 20)

static int conv_group_size(int N, long ckk, long P) {
    long g = CONV_TARGET_COLS / P;  // rounded down: maps of 513+ pixels are one image per GEMM, with no layout copies
    long cap = CONV_MAX_WORKSPACE_FLOATS / (ckk * P);
    if (g > cap) g = cap;
    if (g > N) g = N;
    return g < 1 ? 1 : (int)g;
}

// col: (C*K*K, G*P), row (c, ki, kj), column g*P + oh*Wo + ow; x: G images (C, H, W); zero outside the image.
// Unpadded on small output maps (Wo < 8: the model's 7x7 maps and below): every column j reads x at
// at[j] + (c*H + ki)*W + kj, so with the offsets at[] of the window corners computed once, each row is one gather
// loop over all G*P columns instead of G*Ho loops of 1-7 floats, which had cost as much as the GEMM. Rows of 8+
// floats copy faster as rows.
static void gather(float *restrict dst, const float *restrict src, const int *restrict at, long n) {
    for (long j = 0; j < n; j++) dst[j] = src[at[j]];
}

static void im2col(float *col, const float *x, int G, int C, int H, int W, int K, int stride, int pad, int Ho,
                   int Wo) {
    long P = (long)Ho * Wo, rows = (long)C * K * K, cols = G * P;
    if (pad == 0 && Wo < 8 && (long)G * C * H * W <= INT_MAX) {  // offsets fit an int
        int *at = xmalloc((size_t)cols * sizeof(int));  // at[g*P + oh*Wo + ow]: the window corner's offset in x
        for (long j = 0; j < cols; j++) {
            long g = j / P, oh = j % P / Wo, ow = j % Wo;
            at[j] = (int)((g * C * H + oh * stride) * W + ow * stride);
        }
        #pragma omp parallel for if (rows * cols > PARALLEL_MIN_WORK)
        for (long r = 0; r < rows; r++) {
            gather(col + r * cols, x + ((r / (K * K)) * H + r / K % K) * W + r % K, at, cols);
        }
        free(at);
        return;
    }
    #pragma omp parallel for if (rows * cols > PARALLEL_MIN_WORK)
    for (long r = 0; r < rows; r++) {
        int c = (int)(r / (K * K)), ki = (int)(r / K % K), kj = (int)(r % K);
        for (int g = 0; g < G; g++) {
            const float *plane = x + ((long)g * C + c) * H * W;
            float *dst = col + r * cols + g * P;
            for (int oh = 0; oh < Ho; oh++) {
                int ih = oh * stride - pad + ki;
                float *row = dst + (long)oh * Wo;
                if (ih < 0 || ih >= H) { memset(row, 0, (size_t)Wo * sizeof(float)); continue; }
                const float *in_row = plane + (long)ih * W;
                if (pad == 0 && stride == 1)  // a loop, not memcpy: the compiler vectorises these rows of 8+ floats
                    for (int ow = 0; ow < Wo; ow++) row[ow] = in_row[kj + ow];
                else if (pad == 0 && stride == 2)  // a constant stride lets the compiler vectorise the gather
                    for (int ow = 0; ow < Wo; ow++) row[ow] = in_row[2 * ow + kj];
                else
                    for (int ow = 0; ow < Wo; ow++) {
                        int iw = ow * stride - pad + kj;
                        row[ow] = iw >= 0 && iw < W ? in_row[iw] : 0.0f;
                    }
            }
        }
    }
}

// dx (G images, C, H, W) += the columns of dcol (C*K*K, G*P) added back onto the pixels they were read from.
// Each (image, channel) plane is summed by one thread in a fixed order.
static void col2im_add(float *dx, const float *dcol, int G, int C, int H, int W, int K, int stride, int pad, int Ho,
                       int Wo) {
    long P = (long)Ho * Wo, cols = G * P, planes = (long)G * C;
    #pragma omp parallel for if (planes * K * K * P > PARALLEL_MIN_WORK)
    for (long gc = 0; gc < planes; gc++) {
        int g = (int)(gc / C), c = (int)(gc % C);
        float *plane = dx + gc * H * W;
        for (int ki = 0; ki < K; ki++) {
            for (int kj = 0; kj < K; kj++) {
                const float *src = dcol + (((long)c * K + ki) * K + kj) * cols + g * P;
                for (int oh = 0; oh < Ho; oh++) {
                    int ih = oh * stride - pad + ki;
                    if (ih < 0 || ih >= H) continue;
                    float *out_row = plane + (long)ih * W;
                    const float *s = src + (long)oh * Wo;
                    if (pad == 0) {  // no bounds to check
                        for (int ow = 0; ow < Wo; ow++) out_row[ow * stride + kj] += s[ow];
                        continue;
                    }
                    for (int ow = 0; ow < Wo; ow++) {
                        int iw = ow * stride - pad + kj;
                        if (iw >= 0 && iw < W) out_row[iw] += s[ow];
                    }
                }
            }
        }
    }
}

// The convolution's epilogue, while the GEMM's result is still in cache: out (G, Co, P) = relu?(gemm + b + residual)
// with gemm in group layout grp (Co, G*P), or already in out (batch layout) when grp is NULL. b, residual may be NULL;
// residual (G, Cr, P) is added to the first Cr channels (Cr = Co: out's shape).
static void conv_epilogue(float *out, const float *grp, const float *b, const float *residual, int Cr, bool relu,
                          int G, int Co, long P) {
    if (!grp && !b && !residual && !relu) return;
    #pragma omp parallel for if ((long)G * Co * P > PARALLEL_MIN_WORK)
    for (long gc = 0; gc < (long)G * Co; gc++) {
        long g = gc / Co, co = gc % Co;
        const float *src = grp ? grp + (co * G + g) * P : out + gc * P;
        const float *res = residual && co < Cr ? residual + (g * Cr + co) * P : NULL;
        float *dst = out + gc * P, bias = b ? b[co] : 0.0f;
        for (long p = 0; p < P; p++) {
            float v = src[p];
            if (b) v += bias;
            if (res) v += res[p];
            dst[p] = relu ? (v > 0.0f ? v : 0.0f) : v;
        }
    }
}

// group layout (Co, G*P) <- batch layout (G, C, P)
static void batch_to_group(float *grp, const float *x, int G, int C, long P) {
    #pragma omp parallel for if ((long)G * C * P > PARALLEL_MIN_WORK)
    for (long gc = 0; gc < (long)G * C; gc++) {
        long g = gc / C, c = gc % C;
        memcpy(grp + (c * G + g) * P, x + gc * P, (size_t)P * sizeof(float));
    }
}

static void group_add_to_batch(float *dx, const float *grp, int G, int C, long P) {
    #pragma omp parallel for if ((long)G * C * P > PARALLEL_MIN_WORK)
    for (long gc = 0; gc < (long)G * C; gc++) {
        long g = gc / C, c = gc % C;
        const float *src = grp + (c * G + g) * P;
        float *dst = dx + gc * P;
        for (long p = 0; p < P; p++) dst[p] += src[p];
    }
}

// How a call splits the batch: each of `threads` threads takes a contiguous share of the images and runs them in
// groups of G with its own workspace. Inside the parallel region every OpenBLAS call runs on its calling thread
// alone, so a small convolution pays one thread fork/join per call instead of one per GEMM, and im2col / col2im run
// in parallel too. Splitting needs every thread to get enough columns (output pixels) to pay for its own dw buffer
// in backward; otherwise one thread walks the groups and each GEMM uses all threads. 128 columns rather than 256
// split batch 32's 3x3 maps too: forward +4-5% (tiny), +2-4% (cifar-small), training +0-2%, in interleaved runs.
#define CONV_SPLIT_MIN_COLS 128L
// In backward each thread of a split sums its own dw part (Co, C*K*K), zeroed first and added up after: passes over
// memory that the split's smaller GEMMs must pay for. With more than this many dw floats per column of a thread, one
// thread walks the groups instead (cifar-small's 3x3 on 5x5 maps, batch 64: 288 columns per thread for a 2.4M-float
// dw, backward 23.8-28.4 -> 23.9-25.7 ms over 5 interleaved pairs, 0.70-0.75 -> 0.82-0.85 of sgemm on its shapes;
// the shapes that keep splitting measured no better unsplit).
#define CONV_SPLIT_MAX_DW_PER_COL 4096L
typedef struct { int G, threads; } ConvPlan;

// dw_floats: the size of the weight gradient each thread of a split would sum on its own (0 in forward)
static ConvPlan conv_plan(int N, long ckk, long P, long dw_floats) {
    int T = engine_threads();
    ConvPlan p = {conv_group_size(N, ckk, P), 1};
    long cols = T > 1 ? (long)(N / T) * P : 0;  // a thread's output columns
    if (T > 1 && cols >= CONV_SPLIT_MIN_COLS && dw_floats <= CONV_SPLIT_MAX_DW_PER_COL * cols) {
        int share = (N + T - 1) / T, groups = (share + p.G - 1) / p.G;
        p.G = (share + groups - 1) / groups;  // equal groups within the busiest share
        p.threads = T;
    }
    return p;
}

// images [*lo, *hi) of thread t of T
static void thread_share(int N, int T, int t, int *lo, int *hi) {
    *lo = (int)((long)N * t / T);
    *hi = (int)((long)N * (t + 1) / T);
}

// One workspace for every CPU convolution, grown to the largest call so far and kept for the next: no allocation
// per call.
static float *conv_workspace(size_t bytes) {
    static float *buf;
    static size_t capacity;
    if (bytes > capacity) {
        free(buf);
        buf = xmalloc(bytes);
        capacity = bytes;
    }
    return buf;
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

// threads in the current team: the runtime may give fewer than asked (e.g. when called inside another region)
static int team_size(void) {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

// out: (N, Co, Ho, Wo) = relu?(conv(x) + b + residual); x: (N, C, H, W); w: (Co, C*K*K); b: (Co), residual:
// (N, Cr, Ho, Wo) added to the first Cr channels; b, residual may be NULL. Each thread applies the epilogue to its
// own images right after their GEMM.
void conv2d_forward_cpu(float *out, const float *x, const float *w, const float *b, const float *residual, int Cr,
                        bool relu, int N, int C, int H, int W, int Co, int K, int stride, int pad) {
    int Ho = (H + 2 * pad - K) / stride + 1, Wo = (W + 2 * pad - K) / stride + 1;
    long P = (long)Ho * Wo, ckk = (long)C * K * K;
    bool pointwise = K == 1 && stride == 1 && pad == 0;  // x itself is the column matrix, no im2col
    if (pad == 0 && K == H && K == W) {  // one output pixel per image: each image is its own (C*K*K) column
        gemm_cpu(false, true, N, Co, (int)ckk, 1.0f, x, w, 0.0f, out);  // (N, Co) = x (N, C*K*K) w^T
        conv_epilogue(out, NULL, b, residual, Cr, relu, N, Co, 1);
    } else {
        ConvPlan plan = conv_plan(N, ckk, P, 0);
        long per_thread = (ckk + Co) * plan.G * P;  // column buffer + output in group layout
        float *ws = conv_workspace((size_t)(per_thread * plan.threads) * sizeof(float));
        #pragma omp parallel num_threads(plan.threads) if (plan.threads > 1)
        {
            int lo, hi;
            thread_share(N, team_size(), thread_id(), &lo, &hi);
            float *col = ws + thread_id() * per_thread, *grp = col + ckk * plan.G * P;
            for (int n0 = lo; n0 < hi; n0 += plan.G) {
                int g = hi - n0 < plan.G ? hi - n0 : plan.G;
                const float *xg = x + (long)n0 * C * H * W, *cols = col;
                if (pointwise && g == 1) cols = xg;  // one image (C, P) is already its column matrix
                else if (pointwise) batch_to_group(col, xg, g, C, P);
                else im2col(col, xg, g, C, H, W, K, stride, pad, Ho, Wo);
                float *dst = g > 1 ? grp : out + (long)n0 * Co * P;  // one image: its output plane is the group layout
                gemm_cpu(false, false, Co, (int)(g * P), (int)ckk, 1.0f, w, cols, 0.0f, dst);
                conv_epilogue(out + (long)n0 * Co * P, g > 1 ? grp : NULL, b,
                              residual ? residual + (long)n0 * Cr * P : NULL, Cr, relu, g, Co, P);
            }
        }
    }
}

// Accumulates dx (N, C, H, W), dw (Co, C*K*K), db (Co). Each thread sums its groups' dw in batch order into its
// own buffer; the buffers are then added in thread order, so the result depends on the thread count only.
void conv2d_backward_cpu(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w, int N,
                         int C, int H, int W, int Co, int K, int stride, int pad) {
    int Ho = (H + 2 * pad - K) / stride + 1, Wo = (W + 2 * pad - K) / stride + 1;
    long P = (long)Ho * Wo, ckk = (long)C * K * K;
    bool pointwise = K == 1 && stride == 1 && pad == 0;
    if (db) bias_backward_cpu(db, dout, N, Co, (int)P);
    if (!dx && !dw) return;
    if (pad == 0 && K == H && K == W) {
        if (dw) gemm_cpu(true, false, Co, (int)ckk, N, 1.0f, dout, x, 1.0f, dw);   // (Co, C*K*K) += dout^T x
        if (dx) gemm_cpu(false, false, N, (int)ckk, Co, 1.0f, dout, w, 1.0f, dx);  // (N, C*K*K) += dout w
        return;
    }
    ConvPlan plan = conv_plan(N, ckk, P, dw ? Co * ckk : 0);
    bool own_dw = dw && plan.threads > 1;  // per-thread dw partial sums
    long per_thread = (ckk + Co) * plan.G * P + (own_dw ? Co * ckk : 0);
    float *ws = conv_workspace((size_t)(per_thread * plan.threads) * sizeof(float));
    int team = 1;
    #pragma omp parallel num_threads(plan.threads) if (plan.threads > 1)
    {
        #pragma omp single
        team = team_size();
        int lo, hi;
        thread_share(N, team, thread_id(), &lo, &hi);
        float *my_dw = own_dw ? ws + thread_id() * per_thread : dw;
        float *col = ws + thread_id() * per_thread + (own_dw ? Co * ckk : 0), *grp = col + ckk * plan.G * P;
        if (own_dw) memset(my_dw, 0, (size_t)(Co * ckk) * sizeof(float));
        for (int n0 = lo; n0 < hi; n0 += plan.G) {
            int g = hi - n0 < plan.G ? hi - n0 : plan.G;
            const float *dout_g = dout + (long)n0 * Co * P;
            if (g > 1) { batch_to_group(grp, dout_g, g, Co, P); dout_g = grp; }
            const float *xg = x + (long)n0 * C * H * W;
            if (dw) {  // (Co, C*K*K) += dout_g (Co, g*P) col^T
                const float *cols = col;
                if (pointwise && g == 1) cols = xg;
                else if (pointwise) batch_to_group(col, xg, g, C, P);
                else im2col(col, xg, g, C, H, W, K, stride, pad, Ho, Wo);
                gemm_cpu(false, true, Co, (int)ckk, (int)(g * P), 1.0f, dout_g, cols, 1.0f, my_dw);
            }
            if (dx) {  // dcol (C*K*K, g*P) = w^T dout_g, reusing the column buffer
                float *dxg = dx + (long)n0 * C * H * W;
                if (pointwise && g == 1) { gemm_cpu(true, false, C, (int)P, Co, 1.0f, w, dout_g, 1.0f, dxg); continue; }
                gemm_cpu(true, false, (int)ckk, (int)(g * P), Co, 1.0f, w, dout_g, 0.0f, col);
                if (pointwise) group_add_to_batch(dxg, col, g, C, P);
                else col2im_add(dxg, col, g, C, H, W, K, stride, pad, Ho, Wo);
            }
        }
    }
    if (own_dw) {  // one parallel pass adds the parts in thread order (each element's sum as in a loop over parts)
        #pragma omp parallel for if (Co * ckk > PARALLEL_MIN_WORK)
        for (long i = 0; i < Co * ckk; i++)
            for (int t = 0; t < team; t++) dw[i] += ws[t * per_thread + i];
    }
}

// Pooling is separable: a K x K window sum is K-column sums added K at a time. The maps are small (3x3 to 30x30), so
// loops over one output row would run 1-14 iterations; instead a chunk of whole planes, contiguous in memory, is
// treated as one flat array z: colsum[q] = z[q] + z[q + W] + ... (K rows), win[q] = colsum[q] + ... + colsum[q + K - 1],
// both long vectorised loops over q, and an output is win at its window's top-left corner. Positions whose window
// would cross a row or plane edge are computed and never read. Every output is summed in the same order as a loop
// over its window's columns of row sums, in any chunking. One thread per chunk.
#define POOL_CHUNK_FLOATS 4096L  // a chunk's colsum and win stay in L1/L2

typedef struct { long planes_per_chunk, chunks, span; } PoolChunks;

static PoolChunks pool_chunks(long planes, int H, int W) {
    long hw = (long)H * W, per = POOL_CHUNK_FLOATS / hw;
    if (per < 1) per = 1;
    return (PoolChunks){per, (planes + per - 1) / per, per * hw};
}

// out: (N, C, Ho, Wo) mean of each K x K window; x: (N, C, H, W)
void avgpool2d_forward_cpu(float *out, const float *x, int N, int C, int H, int W, int K, int stride) {
    int Ho = (H - K) / stride + 1, Wo = (W - K) / stride + 1;
    long planes = (long)N * C, hw = (long)H * W;
    float inv_area = 1.0f / (float)(K * K);
    PoolChunks pc = pool_chunks(planes, H, W);
    #pragma omp parallel if (planes * hw * 2 * K > PARALLEL_MIN_WORK)
    {
        float *colsum = xmalloc((size_t)pc.span * sizeof(float)), *win = xmalloc((size_t)pc.span * sizeof(float));
        #pragma omp for
        for (long ch = 0; ch < pc.chunks; ch++) {
            long p0 = ch * pc.planes_per_chunk, np = planes - p0 < pc.planes_per_chunk ? planes - p0 : pc.planes_per_chunk;
            const float *z = x + p0 * hw;
            long L = np * hw, Lc = L - (long)(K - 1) * W, Lw = Lc - (K - 1);  // valid lengths of colsum, win
            for (long q = 0; q < Lc; q++) colsum[q] = z[q];
            for (int i = 1; i < K; i++)
                for (long q = 0; q < Lc; q++) colsum[q] += z[q + (long)i * W];
            for (long q = 0; q < Lw; q++) win[q] = colsum[q];
            for (int j = 1; j < K; j++)
                for (long q = 0; q < Lw; q++) win[q] += colsum[q + j];
            for (long p = 0; p < np; p++) {
                float *op = out + (p0 + p) * Ho * Wo;
                const float *wp = win + p * hw;
                for (int oh = 0; oh < Ho; oh++)
                    for (int ow = 0; ow < Wo; ow++) op[oh * Wo + ow] = wp[(long)oh * stride * W + ow * stride] * inv_area;
            }
        }
        free(colsum);
        free(win);
    }
}

// dx += dout / K^2 over each window; overlapping windows (stride < K) add up. The transpose of the forward, chunk by
// chunk: spread each output's share at its window's corner, add it to the window's K columns, then to its K rows.
void avgpool2d_backward_cpu(float *dx, const float *dout, int N, int C, int H, int W, int K, int stride) {
    int Ho = (H - K) / stride + 1, Wo = (W - K) / stride + 1;
    long planes = (long)N * C, hw = (long)H * W;
    float inv_area = 1.0f / (float)(K * K);
    PoolChunks pc = pool_chunks(planes, H, W);
    #pragma omp parallel if (planes * hw * 2 * K > PARALLEL_MIN_WORK)
    {
        float *corner = xmalloc((size_t)pc.span * sizeof(float)), *colsum = xmalloc((size_t)pc.span * sizeof(float));
        #pragma omp for
        for (long ch = 0; ch < pc.chunks; ch++) {
            long p0 = ch * pc.planes_per_chunk, np = planes - p0 < pc.planes_per_chunk ? planes - p0 : pc.planes_per_chunk;
            float *z = dx + p0 * hw;
            long L = np * hw, Lc = L - (long)(K - 1) * W, Lw = Lc - (K - 1);
            memset(corner, 0, (size_t)Lw * sizeof(float));
            for (long p = 0; p < np; p++) {
                const float *dp = dout + (p0 + p) * Ho * Wo;
                float *cp = corner + p * hw;
                for (int oh = 0; oh < Ho; oh++)
                    for (int ow = 0; ow < Wo; ow++) cp[(long)oh * stride * W + ow * stride] = dp[oh * Wo + ow] * inv_area;
            }
            // colsum[q] = sum over j < K of corner[q - j]: what column q of a window row receives
            memset(colsum, 0, (size_t)Lc * sizeof(float));
            for (int j = 0; j < K; j++)
                for (long q = 0; q < Lw; q++) colsum[q + j] += corner[q];
            for (int i = 0; i < K; i++)
                for (long q = 0; q < Lc; q++) z[q + (long)i * W] += colsum[q];
        }
        free(corner);
        free(colsum);
    }
}

// index into [0, L) of position v in [-pad, L + pad): mirrored about the edge without repeating it
static inline int reflect_index(int v, int L) { return v < 0 ? -v : v >= L ? 2 * (L - 1) - v : v; }

// out: (N, C, H + 2p, W + 2p); x: (N, C, H, W)
void reflect_pad2d_forward_cpu(float *out, const float *x, int N, int C, int H, int W, int pad) {
    int Hp = H + 2 * pad, Wp = W + 2 * pad;
    long planes = (long)N * C;
    #pragma omp parallel for if (planes * Hp * Wp > PARALLEL_MIN_WORK)
    for (long p = 0; p < planes; p++) {
        const float *xp = x + p * H * W;
        float *op = out + p * Hp * Wp;
        for (int i = 0; i < Hp; i++) {
            const float *src = xp + (long)reflect_index(i - pad, H) * W;
            for (int j = 0; j < Wp; j++) op[(long)i * Wp + j] = src[reflect_index(j - pad, W)];
        }
    }
}

// dx += every padded position's gradient at the pixel it copies; one thread per plane
void reflect_pad2d_backward_cpu(float *dx, const float *dout, int N, int C, int H, int W, int pad) {
    int Hp = H + 2 * pad, Wp = W + 2 * pad;
    long planes = (long)N * C;
    #pragma omp parallel for if (planes * Hp * Wp > PARALLEL_MIN_WORK)
    for (long p = 0; p < planes; p++) {
        float *dxp = dx + p * H * W;
        const float *dp = dout + p * Hp * Wp;
        for (int i = 0; i < Hp; i++) {
            float *dst = dxp + (long)reflect_index(i - pad, H) * W;
            for (int j = 0; j < Wp; j++) dst[reflect_index(j - pad, W)] += dp[(long)i * Wp + j];
        }
    }
}

// out: (N, Co, S); x: (N, C, S)
void channel_pad_forward_cpu(float *out, const float *x, int N, int C, int Co, int S) {
    #pragma omp parallel for if ((long)N * Co * S > PARALLEL_MIN_WORK)
    for (int n = 0; n < N; n++) {
        memcpy(out + (long)n * Co * S, x + (long)n * C * S, (size_t)C * S * sizeof(float));
        memset(out + ((long)n * Co + C) * S, 0, (size_t)(Co - C) * S * sizeof(float));
    }
}

void channel_pad_backward_cpu(float *dx, const float *dout, int N, int C, int Co, int S) {
    long per_image = (long)C * S;
    #pragma omp parallel for if (N * per_image > PARALLEL_MIN_WORK)
    for (int n = 0; n < N; n++) {
        const float *d = dout + (long)n * Co * S;
        float *dxn = dx + n * per_image;
        for (long i = 0; i < per_image; i++) dxn[i] += d[i];
    }
}

// ---- autograd ops ----

// conv2d with its epilogue: out = relu?(conv(x) + b + residual). Folding the residual add and the ReLU into the
// convolution leaves one tensor on the tape where there were two or three, which is most of what a residual
// encoder keeps for backward. The CPU kernel applies the epilogue to each group of images right after its GEMM, while
// the result is in cache; the CUDA kernel runs the elementwise kernels after the convolution.
// A residual unit's shortcut as the residual: s (N, Cs, Hs, Ws) average-pooled by k with stride `stride` (k = 1,
// stride 1: s itself), added to the output's first Cs channels (zero channels appended up to Co). The pooled map is
// made for the epilogue and freed at once; the backward pools the output's gradient back. Nothing of it stays alive
// until the backward (at cifar-small batch 128 the pooled and padded maps were 6% of the tensors alive at the peak),
// and the CPU makes no padded copy (the op's forward 3.5-4.0 -> 3.1-3.5 ms per tiny batch-32 step without it).
typedef struct { int k, stride, C, H, W; } Shortcut;

// in: x, w, b, residual (b and residual may be NULL); residual is the shortcut's input s when sc.k > 0
typedef struct { int N, C, H, W, Co, K, stride, pad; bool relu; Shortcut sc; } ConvArgs;

// the shortcut's pooled map (N, Cs, P), from the device's pool; the caller frees it. NULL when k = 1, stride 1: the
// epilogue reads s itself.
static float *shortcut_forward(const Tensor *s, Shortcut sc, long P) {
    if (sc.k == 1 && sc.stride == 1) return NULL;
    Device dev = s->device;
    float *pooled = dev_alloc(dev, (size_t)s->shape[0] * sc.C * P * sizeof(float));
    KERNEL(dev, avgpool2d_forward)(pooled, s->data, s->shape[0], sc.C, sc.H, sc.W, sc.k, sc.stride);
    return pooled;
}

// ds += the shortcut's share of dz (N, Co, P): its first Cs channels, pooled back
static void shortcut_backward(float *ds, const float *dz, Device dev, int N, Shortcut sc, int Co, long P) {
    if (sc.k == 1 && sc.stride == 1) { KERNEL(dev, channel_pad_backward)(ds, dz, N, sc.C, Co, (int)P); return; }
    size_t bytes = (size_t)N * sc.C * P * sizeof(float);
    float *dpooled = dev_alloc(dev, bytes);
    dev_zero(dev, dpooled, bytes);
    KERNEL(dev, channel_pad_backward)(dpooled, dz, N, sc.C, Co, (int)P);
    KERNEL(dev, avgpool2d_backward)(ds, dpooled, N, sc.C, sc.H, sc.W, sc.k, sc.stride);
    dev_free(dev, dpooled, bytes);
}

static void conv2d_backward_node(Node *n) {
    Tensor *x = n->in[0], *w = n->in[1], *out = n->out;
    const ConvArgs *a = n->args;
    // ReLU: zero the gradient where out <= 0, in place - out's gradient is freed as soon as this node returns
    if (a->relu) KERNEL(out->device, relu_mask)(out->grad, out->data, out->numel);
    const float *dz = out->grad;  // now d(loss)/d(conv(x) + b + residual)
    float *dres = input_grad(n, 3);
    if (dres && a->sc.k) shortcut_backward(dres, dz, out->device, a->N, a->sc, a->Co, out->numel / ((long)a->N * a->Co));
    else if (dres) KERNEL(out->device, axpy)(dres, dz, 1.0f, out->numel);
    KERNEL(x->device, conv2d_backward)(input_grad(n, 0), input_grad(n, 1), input_grad(n, 2), dz, x->data, w->data,
                                       a->N, a->C, a->H, a->W, a->Co, a->K, a->stride, a->pad);
}

// sc: NULL, or how `residual` becomes the residual (see Shortcut)
static Tensor *conv2d_fused(const char *name, Tensor *x, Tensor *w, Tensor *b, int stride, int pad,
                            Tensor *residual, const Shortcut *sc, bool relu) {
    CHECK(x->ndim == 4, "%s: x must be (N, C, H, W), got %d dims", name, x->ndim);
    CHECK(w->ndim == 4 && w->shape[2] == w->shape[3], "%s: w must be (Co, C, K, K)", name);
    int N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], Co = w->shape[0], K = w->shape[2];
    CHECK(w->shape[1] == C, "%s: x has %d channels but w expects %d", name, C, w->shape[1]);
    CHECK(!b || b->numel == Co, "%s: bias has %ld values for %d output channels", name, b ? b->numel : 0, Co);
    CHECK(stride >= 1 && pad >= 0, "%s: stride %d must be >= 1 and pad %d >= 0", name, stride, pad);
    CHECK(H + 2 * pad >= K && W + 2 * pad >= K,
          "%s: %dx%d kernel larger than the %dx%d input padded by %d (output would be empty)", name, K, K, H, W, pad);
    CHECK(x->device == w->device && (!b || b->device == x->device) && (!residual || residual->device == x->device),
          "%s: operands on different devices", name);
    int Ho = (H + 2 * pad - K) / stride + 1, Wo = (W + 2 * pad - K) / stride + 1;
    Tensor *out = tape_tensor(x->device, SHAPE(N, Co, Ho, Wo));
    long P = (long)Ho * Wo;
    const float *res = residual ? residual->data : NULL;
    float *pooled = NULL;
    int Cr = Co;  // the residual's channels: the shortcut's are zero-extended to Co by the epilogue
    if (sc) {
        pooled = shortcut_forward(residual, *sc, P);
        if (pooled) res = pooled;
        Cr = sc->C;
    } else {
        CHECK(!residual || tensor_same_shape(residual, out),
              "%s: residual shape differs from the (%d, %d, %d, %d) output", name, N, Co, Ho, Wo);
    }
    KERNEL(x->device, conv2d_forward)(out->data, x->data, w->data, b ? b->data : NULL, res, Cr, relu, N, C, H, W, Co,
                                      K, stride, pad);
    dev_free(x->device, pooled, (size_t)N * Cr * P * sizeof(float));
    Tensor *in[4] = {x, w, b, residual};
    ConvArgs args = {.N = N, .C = C, .H = H, .W = W, .Co = Co, .K = K, .stride = stride, .pad = pad, .relu = relu,
                     .sc = sc ? *sc : (Shortcut){0}};
    Node *n = tape_record(name, conv2d_backward_node, out, 4, in, &args, sizeof args);
    if (n) n->flops = 2.0 * N * Co * Ho * Wo * C * K * K;   // the GEMM's multiply-adds; the epilogue is not counted
    return out;
}

Tensor *op_conv2d(Tensor *x, Tensor *w, Tensor *b, int stride, int pad) {
    return conv2d_fused("conv2d", x, w, b, stride, pad, NULL, NULL, false);
}

Tensor *op_conv2d_relu(Tensor *x, Tensor *w, Tensor *b, int stride, int pad) {
    return conv2d_fused("conv2d_relu", x, w, b, stride, pad, NULL, NULL, true);
}

Tensor *op_conv2d_add(Tensor *x, Tensor *w, Tensor *b, int stride, int pad, Tensor *residual) {
    return conv2d_fused("conv2d_add", x, w, b, stride, pad, residual, NULL, false);
}

Tensor *op_conv2d_add_shortcut(Tensor *x, Tensor *w, Tensor *b, int stride, int pad, Tensor *s, int k,
                               int s_stride) {
    CHECK(x->ndim == 4 && w->ndim == 4, "conv2d_add_shortcut: x and w must be 4-d");
    CHECK(s->ndim == 4 && s->shape[0] == x->shape[0], "conv2d_add_shortcut: s must be (N, C, H, W) with x's N = %d",
          x->shape[0]);
    CHECK(k >= 1 && s_stride >= 1 && s->shape[2] >= k && s->shape[3] >= k,
          "conv2d_add_shortcut: pooling window %d (stride %d) does not fit the %dx%d shortcut", k, s_stride,
          s->shape[2], s->shape[3]);
    Shortcut sc = {.k = k, .stride = s_stride, .C = s->shape[1], .H = s->shape[2], .W = s->shape[3]};
    int Hs = (sc.H - k) / s_stride + 1, Ws = (sc.W - k) / s_stride + 1;
    int Ho = (x->shape[2] + 2 * pad - w->shape[2]) / stride + 1, Wo = (x->shape[3] + 2 * pad - w->shape[3]) / stride + 1;
    CHECK(Hs == Ho && Ws == Wo && sc.C <= w->shape[0],
          "conv2d_add_shortcut: the shortcut pools to (%d, %d, %d), the output is (%d, %d, %d)", sc.C, Hs, Ws,
          w->shape[0], Ho, Wo);
    if (k == 1 && s_stride == 1 && sc.C == w->shape[0]) return op_conv2d_add(x, w, b, stride, pad, s);
    return conv2d_fused("conv2d_add_shortcut", x, w, b, stride, pad, s, &sc, false);
}

typedef struct { int N, C, H, W, K, stride; } PoolArgs;

static void avgpool2d_backward_node(Node *n) {
    const PoolArgs *a = n->args;
    KERNEL(n->out->device, avgpool2d_backward)(input_grad(n, 0), n->out->grad, a->N, a->C, a->H, a->W, a->K,
                                               a->stride);
}

Tensor *op_avgpool2d(Tensor *x, int k, int stride) {
    CHECK(x->ndim == 4, "avgpool2d: x must be (N, C, H, W), got %d dims", x->ndim);
    int N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    CHECK(k >= 1 && stride >= 1, "avgpool2d: kernel %d and stride %d must be >= 1", k, stride);
    CHECK(H >= k && W >= k, "avgpool2d: %dx%d window larger than the %dx%d input", k, k, H, W);
    int Ho = (H - k) / stride + 1, Wo = (W - k) / stride + 1;
    Tensor *out = tape_tensor(x->device, SHAPE(N, C, Ho, Wo));
    KERNEL(x->device, avgpool2d_forward)(out->data, x->data, N, C, H, W, k, stride);
    PoolArgs args = {.N = N, .C = C, .H = H, .W = W, .K = k, .stride = stride};
    Node *n = tape_record("avgpool2d", avgpool2d_backward_node, out, 1, &x, &args, sizeof args);
    if (n) n->flops = (double)out->numel * k * k;
    return out;
}

typedef struct { int N, C, H, W, pad; } ReflectPadArgs;

static void reflect_pad2d_backward_node(Node *n) {
    const ReflectPadArgs *a = n->args;
    KERNEL(n->out->device, reflect_pad2d_backward)(input_grad(n, 0), n->out->grad, a->N, a->C, a->H, a->W, a->pad);
}

Tensor *op_reflect_pad2d(Tensor *x, int pad) {
    CHECK(x->ndim == 4, "reflect_pad2d: x must be (N, C, H, W), got %d dims", x->ndim);
    int N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    CHECK(pad >= 0 && pad < H && pad < W, "reflect_pad2d: pad %d must be >= 0 and below the input size %dx%d", pad,
          H, W);
    Tensor *out = tape_tensor(x->device, SHAPE(N, C, H + 2 * pad, W + 2 * pad));
    KERNEL(x->device, reflect_pad2d_forward)(out->data, x->data, N, C, H, W, pad);
    ReflectPadArgs args = {.N = N, .C = C, .H = H, .W = W, .pad = pad};
    tape_record("reflect_pad2d", reflect_pad2d_backward_node, out, 1, &x, &args, sizeof args);
    return out;
}

// x: (N, C, S) padded to (N, Co, S)
typedef struct { int N, C, Co, S; } ChannelPadArgs;

static void channel_pad_backward_node(Node *n) {
    const ChannelPadArgs *a = n->args;
    KERNEL(n->out->device, channel_pad_backward)(input_grad(n, 0), n->out->grad, a->N, a->C, a->Co, a->S);
}

Tensor *op_channel_pad(Tensor *x, int channels_out) {
    CHECK(x->ndim >= 2, "channel_pad: x must be (N, C, ...), got %d dims", x->ndim);
    int N = x->shape[0], C = x->shape[1];
    CHECK(channels_out >= C, "channel_pad: cannot pad %d channels down to %d", C, channels_out);
    int S = (int)(x->numel / ((long)N * C));
    int shape[TENSOR_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[1] = channels_out;
    Tensor *out = tape_tensor(x->device, x->ndim, shape);
    KERNEL(x->device, channel_pad_forward)(out->data, x->data, N, C, channels_out, S);
    ChannelPadArgs args = {.N = N, .C = C, .Co = channels_out, .S = S};
    tape_record("channel_pad", channel_pad_backward_node, out, 1, &x, &args, sizeof args);
    return out;
}
