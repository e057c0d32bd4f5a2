// conv.cu - CUDA twins of ops/conv.c. Legend: N batch, C/Co channels in/out, H, W input size, K kernel size,
// Ho, Wo output size, P = Ho*Wo output positions, R = C*K*K rows of the im2col matrix, nb images in a chunk.
// Convolution is im2col + one cuBLAS GEMM per chunk of images (a 1x1 stride-1 unpadded conv is a plain batched
// GEMM on x itself). Gradient sums over images are GEMM reductions or fixed-order gathers: no atomics.
#include "../ops/conv.h"
#include "../ops/elementwise.h"
#include "../ops/linalg.h"
#include "common.cuh"
#include "tuning.h"

static long workspace_limit = 1L << 25;
static bool use_tf32;   // TF32 for every GEMM of this file (engine_set_tf32)

void conv_cuda_set_workspace_limit(long floats) { workspace_limit = floats > 0 ? floats : 1; }
long conv_cuda_workspace_limit(void) { return workspace_limit; }
void conv_cuda_set_tf32(bool on) { use_tf32 = on; }
bool conv_cuda_tf32(void) { return use_tf32; }

// images per chunk so that the chunk's scratch fits the workspace limit (at least one image)
static int images_per_chunk(int N, long floats_per_image) {
    long fit = workspace_limit / floats_per_image;
    return (int)(fit < 1 ? 1 : fit > N ? N : fit);
}

// col: (R, nb, P), x: (nb, C, H, W). col[r, b, p] = x[b, c, oh*stride - pad + kh, ow*stride - pad + kw], zero
// outside the image, with r = (c*K + kh)*K + kw (the layout of w's rows) and p = oh*Wo + ow.
static __global__ void im2col_kernel(float *col, const float *x, int nb, int C, int H, int W, int K, int stride,
                                     int pad, int Ho, int Wo) {
    long P = (long)Ho * Wo;
    GRID_STRIDE(t, (long)C * K * K * nb * P) {
        long p = t % P, rest = t / P;
        long b = rest % nb, r = rest / nb;
        int kw = (int)(r % K), kh = (int)(r / K % K), c = (int)(r / ((long)K * K));
        int h = (int)(p / Wo) * stride - pad + kh, w = (int)(p % Wo) * stride - pad + kw;
        col[t] = h >= 0 && h < H && w >= 0 && w < W ? x[((b * C + c) * H + h) * W + w] : 0.0f;
    }
}

static void im2col(float *col, const float *x, int nb, int C, int H, int W, int K, int stride, int pad, int Ho,
                   int Wo) {
    im2col_kernel<<<blocks_for((long)C * K * K * nb * Ho * Wo), THREADS>>>(col, x, nb, C, H, W, K, stride, pad, Ho,
                                                                           Wo);
    LAUNCH_CHECK();
}

// dx: (nb, C, H, W) += every dcol (R, nb, P) entry im2col read from that pixel, gathered per pixel in (kh, kw) order
static __global__ void col2im_add_kernel(float *dx, const float *dcol, int nb, int C, int H, int W, int K, int stride,
                                         int pad, int Ho, int Wo) {
    long P = (long)Ho * Wo;
    GRID_STRIDE(t, (long)nb * C * H * W) {
        int w = (int)(t % W), h = (int)(t / W % H), c = (int)(t / ((long)W * H) % C);
        long b = t / ((long)W * H * C);
        float s = 0.0f;
        for (int kh = 0; kh < K; kh++) {
            int oh_stride = h + pad - kh;  // = oh * stride when this kernel row reads pixel row h
            if (oh_stride < 0 || oh_stride % stride != 0 || oh_stride / stride >= Ho) continue;
            for (int kw = 0; kw < K; kw++) {
                int ow_stride = w + pad - kw;
                if (ow_stride < 0 || ow_stride % stride != 0 || ow_stride / stride >= Wo) continue;
                long r = ((long)c * K + kh) * K + kw;
                s += dcol[(r * nb + b) * P + (long)(oh_stride / stride) * Wo + ow_stride / stride];
            }
        }
        dx[t] += s;
    }
}

// out (B, A, S)[b, a, s] = in (A, B, S)[a, b, s] (+ bias[a] when bias is given): swaps the two outer dims
static __global__ void swap_outer_kernel(float *out, const float *in, const float *bias, long A, long B, long S) {
    GRID_STRIDE(t, A * B * S) {
        long s = t % S, rest = t / S, a = rest % A, b = rest / A;
        float v = in[(a * B + b) * S + s];
        out[t] = bias ? v + bias[a] : v;
    }
}

static void swap_outer(float *out, const float *in, const float *bias, long A, long B, long S) {
    swap_outer_kernel<<<blocks_for(A * B * S), THREADS>>>(out, in, bias, A, B, S);
    LAUNCH_CHECK();
}

static bool is_plain_gemm(int K, int stride, int pad) { return K == 1 && stride == 1 && pad == 0; }

// out = conv(x) + b: (N, Co, Ho, Wo); x: (N, C, H, W); w: (Co, C, K, K) = (Co, R); b: (Co) or NULL
static void conv2d_cuda(float *out, const float *x, const float *w, const float *b, int N, int C, int H, int W,
                        int Co, int K, int stride, int pad) {
    int Ho = (H + 2 * pad - K) / stride + 1, Wo = (W + 2 * pad - K) / stride + 1;
    if (N <= 0 || Co <= 0 || Ho <= 0 || Wo <= 0) return;
    int P = Ho * Wo, R = C * K * K;
    if (is_plain_gemm(K, stride, pad)) {
        // out_n (Co, P) = w (Co, C) x_n (C, P) for every image n
        gemm_rowmajor_batched(false, false, Co, P, C, 1.0f, w, C, 0, x, P, (long)C * P, 0.0f, out, P, (long)Co * P, N,
                              use_tf32);
        bias_forward_cuda(out, b, N, Co, P);
        return;
    }
    int nb = images_per_chunk(N, (long)(R + Co) * P);
    size_t bytes = (size_t)nb * (R + Co) * P * sizeof(float);
    float *col = (float *)scratch_alloc(bytes);     // (R, nb, P)
    float *out_cm = col + (size_t)nb * R * P;        // (Co, nb, P): the GEMM's channel-major result
    for (int n0 = 0; n0 < N; n0 += nb) {
        int cur = N - n0 < nb ? N - n0 : nb;
        im2col(col, x + (long)n0 * C * H * W, cur, C, H, W, K, stride, pad, Ho, Wo);
        gemm_rowmajor(false, false, Co, cur * P, R, 1.0f, w, col, 0.0f, out_cm, use_tf32);  // (Co, R) x (R, cur*P)
        swap_outer(out + (long)n0 * Co * P, out_cm, b, Co, cur, P);             // -> (cur, Co, P) + bias
    }
    scratch_free(col, bytes);
}

// out = relu?(conv(x) + b + residual); residual: (N, Cr, Ho, Wo) added to the first Cr channels, or NULL. The
// epilogue runs as the elementwise kernels, after the convolution; a residual with fewer channels is zero-extended
// to out's shape in scratch first.
void conv2d_forward_cuda(float *out, const float *x, const float *w, const float *b, const float *residual, int Cr,
                         bool relu, int N, int C, int H, int W, int Co, int K, int stride, int pad) {
    conv2d_cuda(out, x, w, b, N, C, H, W, Co, K, stride, pad);
    int P = ((H + 2 * pad - K) / stride + 1) * ((W + 2 * pad - K) / stride + 1);
    long n = (long)N * Co * P;
    if (n <= 0) return;
    if (residual && Cr < Co) {
        size_t bytes = (size_t)n * sizeof(float);
        float *padded = (float *)scratch_alloc(bytes);
        channel_pad_forward_cuda(padded, residual, N, Cr, Co, P);
        binary_forward_cuda(BINARY_ADD, out, out, padded, n);
        scratch_free(padded, bytes);
    } else if (residual) {
        binary_forward_cuda(BINARY_ADD, out, out, residual, n);
    }
    if (relu) unary_forward_cuda(UNARY_RELU, out, out, n);
}

// accumulates dx (N, C, H, W), dw (Co, R), db (Co); each may be NULL. dout: (N, Co, Ho, Wo)
void conv2d_backward_cuda(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w, int N,
                          int C, int H, int W, int Co, int K, int stride, int pad) {
    int Ho = (H + 2 * pad - K) / stride + 1, Wo = (W + 2 * pad - K) / stride + 1;
    if (N <= 0 || Co <= 0 || Ho <= 0 || Wo <= 0) return;
    int P = Ho * Wo, R = C * K * K;
    if (db) bias_backward_cuda(db, dout, N, Co, P);
    bool dx_by_chunks = dx != NULL;
    if (dx && is_plain_gemm(K, stride, pad)) {
        // dx_n (C, P) += w^T (C, Co) dout_n (Co, P) for every image n, straight into dx
        gemm_rowmajor_batched(true, false, C, P, Co, 1.0f, w, C, 0, dout, P, (long)Co * P, 1.0f, dx, P, (long)C * P,
                              N, use_tf32);
        dx_by_chunks = false;
    }
    if (!dx_by_chunks && !dw) return;
    int nb = images_per_chunk(N, (long)(R + Co) * P);
    size_t bytes = (size_t)nb * (R + Co) * P * sizeof(float);
    float *col = (float *)scratch_alloc(bytes);     // (R, nb, P): im2col of x, then d(col)
    float *dout_cm = col + (size_t)nb * R * P;       // (Co, nb, P)
    for (int n0 = 0; n0 < N; n0 += nb) {
        int cur = N - n0 < nb ? N - n0 : nb;
        swap_outer(dout_cm, dout + (long)n0 * Co * P, NULL, cur, Co, P);  // (cur, Co, P) -> (Co, cur, P)
        if (dw) {
            // dw (Co, R) += dout_cm (Co, cur*P) col^T (cur*P, R): the sum over this chunk's images and positions
            im2col(col, x + (long)n0 * C * H * W, cur, C, H, W, K, stride, pad, Ho, Wo);
            gemm_rowmajor(false, true, Co, R, cur * P, 1.0f, dout_cm, col, 1.0f, dw, use_tf32);
        }
        if (dx_by_chunks) {
            // dcol (R, cur*P) = w^T (R, Co) dout_cm (Co, cur*P), then folded back onto the pixels
            gemm_rowmajor(true, false, R, cur * P, Co, 1.0f, w, dout_cm, 0.0f, col, use_tf32);
            col2im_add_kernel<<<blocks_for((long)cur * C * H * W), THREADS>>>(dx + (long)n0 * C * H * W, col, cur, C,
                                                                              H, W, K, stride, pad, Ho, Wo);
            LAUNCH_CHECK();
        }
    }
    scratch_free(col, bytes);
}

// ---- average pooling, no padding: out (N, C, Ho, Wo), Ho = (H - K) / stride + 1 ----
static __global__ void avgpool2d_forward_kernel(float *out, const float *x, long NC, int H, int W, int K, int stride,
                                                int Ho, int Wo) {
    GRID_STRIDE(t, NC * Ho * Wo) {
        int ow = (int)(t % Wo), oh = (int)(t / Wo % Ho);
        const float *window = x + t / ((long)Ho * Wo) * H * W + (long)oh * stride * W + (long)ow * stride;
        float s = 0.0f;
        for (int kh = 0; kh < K; kh++)
            for (int kw = 0; kw < K; kw++) s += window[(long)kh * W + kw];
        out[t] = s / (float)(K * K);
    }
}

void avgpool2d_forward_cuda(float *out, const float *x, int N, int C, int H, int W, int K, int stride) {
    int Ho = (H - K) / stride + 1, Wo = (W - K) / stride + 1;
    long NC = (long)N * C;
    if (NC <= 0 || Ho <= 0 || Wo <= 0) return;
    avgpool2d_forward_kernel<<<blocks_for(NC * Ho * Wo), THREADS>>>(out, x, NC, H, W, K, stride, Ho, Wo);
    LAUNCH_CHECK();
}

// dx (N, C, H, W) += sum of dout over the windows that contain the pixel, / (K*K); pixels past the last window get 0
static __global__ void avgpool2d_backward_kernel(float *dx, const float *dout, long NC, int H, int W, int K,
                                                 int stride, int Ho, int Wo) {
    GRID_STRIDE(t, NC * H * W) {
        int w = (int)(t % W), h = (int)(t / W % H);
        const float *d = dout + t / ((long)H * W) * Ho * Wo;
        // windows oh with oh*stride <= h <= oh*stride + K - 1
        int oh_lo = h - K + 1 <= 0 ? 0 : (h - K + stride) / stride, oh_hi = min(h / stride, Ho - 1);
        int ow_lo = w - K + 1 <= 0 ? 0 : (w - K + stride) / stride, ow_hi = min(w / stride, Wo - 1);
        float s = 0.0f;
        for (int oh = oh_lo; oh <= oh_hi; oh++)
            for (int ow = ow_lo; ow <= ow_hi; ow++) s += d[(long)oh * Wo + ow];
        dx[t] += s / (float)(K * K);
    }
}

void avgpool2d_backward_cuda(float *dx, const float *dout, int N, int C, int H, int W, int K, int stride) {
    int Ho = (H - K) / stride + 1, Wo = (W - K) / stride + 1;
    long NC = (long)N * C;
    if (!dx || NC <= 0 || Ho <= 0 || Wo <= 0) return;
    avgpool2d_backward_kernel<<<blocks_for(NC * H * W), THREADS>>>(dx, dout, NC, H, W, K, stride, Ho, Wo);
    LAUNCH_CHECK();
}

// ---- reflection padding (torch ReflectionPad2d): out (N, C, H + 2p, W + 2p), requires p < H, p < W ----
// padded coordinate q reads input coordinate reflect(q - pad): -i -> i, n - 1 + i -> n - 1 - i
static __device__ __forceinline__ int reflect_index(int i, int n) { return i < 0 ? -i : i >= n ? 2 * n - 2 - i : i; }

static __global__ void reflect_pad2d_forward_kernel(float *out, const float *x, long NC, int H, int W, int pad) {
    int Hp = H + 2 * pad, Wp = W + 2 * pad;
    GRID_STRIDE(t, NC * Hp * Wp) {
        int q_w = (int)(t % Wp), q_h = (int)(t / Wp % Hp);
        long nc = t / ((long)Hp * Wp);
        out[t] = x[(nc * H + reflect_index(q_h - pad, H)) * W + reflect_index(q_w - pad, W)];
    }
}

void reflect_pad2d_forward_cuda(float *out, const float *x, int N, int C, int H, int W, int pad) {
    long NC = (long)N * C;
    if (NC <= 0 || H <= 0 || W <= 0) return;
    reflect_pad2d_forward_kernel<<<blocks_for(NC * (H + 2 * pad) * (W + 2 * pad)), THREADS>>>(out, x, NC, H, W, pad);
    LAUNCH_CHECK();
}

// The padded coordinates (1 to 3 of them) whose reflection is input coordinate i of a side of n: i itself, its
// mirror before the start (padded index -i) when 1 <= i <= pad, its mirror past the end (2n - 2 - i) when
// n - 1 - pad <= i <= n - 2. Returned in padded coordinates (+ pad).
static __device__ __forceinline__ int reflect_sources(int i, int n, int pad, int *src) {
    int count = 0;
    src[count++] = i + pad;
    if (i >= 1 && i <= pad) src[count++] = pad - i;
    if (i >= n - 1 - pad && i <= n - 2) src[count++] = 2 * n - 2 - i + pad;
    return count;
}

// dx (N, C, H, W) += the dout entries of every padded position that copied the pixel (gathered, no atomics)
static __global__ void reflect_pad2d_backward_kernel(float *dx, const float *dout, long NC, int H, int W, int pad) {
    int Hp = H + 2 * pad, Wp = W + 2 * pad;
    GRID_STRIDE(t, NC * H * W) {
        int w = (int)(t % W), h = (int)(t / W % H);
        const float *d = dout + t / ((long)H * W) * Hp * Wp;
        int rows[3], cols[3];
        int n_rows = reflect_sources(h, H, pad, rows), n_cols = reflect_sources(w, W, pad, cols);
        float s = 0.0f;
        for (int i = 0; i < n_rows; i++)
            for (int j = 0; j < n_cols; j++) s += d[(long)rows[i] * Wp + cols[j]];
        dx[t] += s;
    }
}

void reflect_pad2d_backward_cuda(float *dx, const float *dout, int N, int C, int H, int W, int pad) {
    long NC = (long)N * C;
    if (!dx || NC <= 0 || H <= 0 || W <= 0) return;
    reflect_pad2d_backward_kernel<<<blocks_for(NC * H * W), THREADS>>>(dx, dout, NC, H, W, pad);
    LAUNCH_CHECK();
}

// ---- channel zero-padding: out (N, Co, S), channels [0, C) from x (N, C, S), [C, Co) zero ----
static __global__ void channel_pad_forward_kernel(float *out, const float *x, int C, int Co, long S, long total) {
    GRID_STRIDE(t, total) {
        long s = t % S, rest = t / S, co = rest % Co, n = rest / Co;
        out[t] = co < C ? x[(n * C + co) * S + s] : 0.0f;
    }
}

void channel_pad_forward_cuda(float *out, const float *x, int N, int C, int Co, int S) {
    long total = (long)N * Co * S;
    if (total <= 0) return;
    channel_pad_forward_kernel<<<blocks_for(total), THREADS>>>(out, x, C, Co, S, total);
    LAUNCH_CHECK();
}

// dx (N, C, S) += dout[:, :C, :]
static __global__ void channel_pad_backward_kernel(float *dx, const float *dout, int C, int Co, long S, long total) {
    GRID_STRIDE(t, total) {
        long s = t % S, rest = t / S, c = rest % C, n = rest / C;
        dx[t] += dout[(n * Co + c) * S + s];
    }
}

void channel_pad_backward_cuda(float *dx, const float *dout, int N, int C, int Co, int S) {
    long total = (long)N * C * S;
    if (!dx || total <= 0) return;
    channel_pad_backward_kernel<<<blocks_for(total), THREADS>>>(dx, dout, C, Co, S, total);
    LAUNCH_CHECK();
}
